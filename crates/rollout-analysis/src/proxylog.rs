//! [`ProxyLogAnalysis`]: the [`Analysis`] that reads the tool's access log
//! from the proxy replicas and judges the window by the rules.
//!
//! This is the only room of the crate that does I/O: it runs `tail` in
//! each proxy (through rollout-nginx's `ProxyExec`, so a container and a
//! local nginx are read alike), from where it stopped the time before, and
//! asks an [`Addresses`] which revision each upstream address serves (nginx
//! logs the address it resolved the server line to, never the name).

use crate::judge::{self, Streak};
use crate::logline;
use crate::window::{Stats, Window};
use async_trait::async_trait;
use rollout_core::analysis::AnalysisRules;
use rollout_core::strategy::{Analysis, Verdict};
use rollout_core::Plan;
use rollout_nginx::proxy::Proxy;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};
use tokio::sync::Mutex;

/// Which revision each server address of the upstream serves now.
#[async_trait]
pub trait Addresses: Send + Sync {
    /// Address (an IP, no port) → revision id, for the plan's service (and
    /// its other colour). An error is said in the verdict.
    async fn revisions(&self, plan: &Plan) -> Result<BTreeMap<String, String>, String>;
}

/// Fixed addresses: for an nginx whose servers are addresses already (the
/// tests), or a caller that knows them.
#[derive(Debug, Clone, Default)]
pub struct FixedAddresses(pub BTreeMap<String, String>);

#[async_trait]
impl Addresses for FixedAddresses {
    async fn revisions(&self, _plan: &Plan) -> Result<BTreeMap<String, String>, String> {
        Ok(self.0.clone())
    }
}

/// The host part of a logged address: `10.0.0.2:80` → `10.0.0.2`,
/// `[::1]:80` → `::1`.
pub fn host_of(addr: &str) -> &str {
    if let Some(rest) = addr.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    addr.rsplit_once(':').map_or(addr, |(h, _)| h)
}

#[derive(Default)]
struct State {
    /// Per replica, the bytes read so far.
    offsets: Vec<u64>,
    window: Window,
    streak: Streak,
    last: Option<(Stats, Stats)>,
}

/// Judges canary steps from the tool's access log in the proxies.
pub struct ProxyLogAnalysis {
    proxies: Vec<Proxy>,
    path: String,
    addresses: Arc<dyn Addresses>,
    rules: AnalysisRules,
    state: Mutex<State>,
}

impl ProxyLogAnalysis {
    /// Reads `path` (as the proxies see it: the router's
    /// `metrics_log`) in every replica of `proxies`.
    pub fn new(
        proxies: Vec<Proxy>,
        path: impl Into<String>,
        addresses: Arc<dyn Addresses>,
        rules: AnalysisRules,
    ) -> Self {
        let n = proxies.len();
        Self {
            proxies,
            path: path.into(),
            addresses,
            rules,
            state: Mutex::new(State {
                offsets: vec![0; n],
                ..State::default()
            }),
        }
    }

    /// The rules it judges by.
    pub fn rules(&self) -> &AnalysisRules {
        &self.rules
    }

    /// The new and old revisions' statistics at the last judgement.
    pub async fn last_stats(&self) -> Option<(Stats, Stats)> {
        self.state.lock().await.last.clone()
    }

    /// The log's new whole lines in replica `i` since `offset`, and how far
    /// they reach; a log that is not there yet (no step arranged it) reads
    /// as empty, and one shorter than before (rotated) is read from its start.
    async fn read_new(&self, i: usize, offset: u64) -> Result<(Vec<u8>, u64), String> {
        let p = &self.proxies[i];
        let argv = |from: u64| {
            vec![
                "tail".to_string(),
                "-c".to_string(),
                format!("+{}", from + 1),
                self.path.clone(),
            ]
        };
        let out = p
            .exec
            .exec(&argv(offset))
            .await
            .map_err(|e| format!("cannot read {} in {}: {e}", self.path, p.name))?;
        if !out.success() {
            return Ok((Vec::new(), offset));
        }
        let mut bytes = out.stdout;
        let mut start = offset;
        if bytes.is_empty() && offset > 0 {
            // Shorter than what was read: a new file, read from its start.
            let size = p
                .exec
                .exec(&["wc".to_string(), "-c".to_string(), self.path.clone()])
                .await
                .ok()
                .and_then(|o| {
                    String::from_utf8_lossy(&o.stdout)
                        .split_whitespace()
                        .next()
                        .and_then(|n| n.parse::<u64>().ok())
                });
            if size.is_some_and(|s| s < offset) {
                start = 0;
                bytes = p
                    .exec
                    .exec(&argv(0))
                    .await
                    .map(|o| o.stdout)
                    .unwrap_or_default();
            }
        }
        // Only whole lines: a line nginx is still writing is read next time.
        let whole = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |p| p + 1);
        bytes.truncate(whole);
        let end = start + whole as u64;
        Ok((bytes, end))
    }
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

#[async_trait]
impl Analysis for ProxyLogAnalysis {
    async fn judge(&self, plan: &Plan, _step: usize, _percent: u32) -> Verdict {
        let revisions = match self.addresses.revisions(plan).await {
            Ok(r) => r,
            Err(e) => return Verdict::Inconclusive(format!("cannot tell revisions apart: {e}")),
        };
        let mut state = self.state.lock().await;
        for i in 0..self.proxies.len() {
            let (bytes, end) = match self.read_new(i, state.offsets[i]).await {
                Ok(r) => r,
                Err(e) => return Verdict::Inconclusive(e),
            };
            state.offsets[i] = end;
            for line in String::from_utf8_lossy(&bytes).lines() {
                if let Some(l) = logline::parse(line) {
                    state
                        .window
                        .add(&l, |addr| revisions.get(host_of(addr)).cloned());
                }
            }
        }
        let since = now() - self.rules.window.as_secs_f64();
        state.window.forget_before(since);
        let target = plan.target.id.as_str();
        let new = state.window.stats(target, since);
        let old = state.window.stats_except(target, since);
        let w = judge::window(&self.rules, &new, &old);
        state.last = Some((new, old));
        let rules = self.rules.clone();
        state.streak.next(&rules, w)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_of_logged_addresses() {
        assert_eq!(host_of("10.0.0.2:80"), "10.0.0.2");
        assert_eq!(host_of("[::1]:8000"), "::1");
        assert_eq!(host_of("unix:/run/app.sock"), "unix");
    }
}
