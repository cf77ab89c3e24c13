//! The rules a canary is judged by: [`AnalysisRules`], as `x-rollout.analysis`
//! and the command line write them.
//!
//! They are plain values here so that the Compose loader can read them and
//! an [`Analysis`](crate::Analysis) of any provider (the proxy's own log, a
//! Prometheus server) can apply them; the judging itself lives with the
//! provider.

use crate::duration::{format_duration, parse_duration};
use crate::word::{UnknownWord, Word};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// What a window with too few requests to judge does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Inconclusive {
    /// Keep holding: the step's hold still bounds it (a canary still
    /// inconclusive at the end of a hold pauses, exit 4).
    #[default]
    Hold,
    /// Count the window as failing.
    Fail,
}

impl Word for Inconclusive {
    const ALL: &'static [Self] = &[Inconclusive::Hold, Inconclusive::Fail];

    fn as_str(self) -> &'static str {
        match self {
            Inconclusive::Hold => "hold",
            Inconclusive::Fail => "fail",
        }
    }
}

impl fmt::Display for Inconclusive {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

impl FromStr for Inconclusive {
    type Err = UnknownWord;

    fn from_str(s: &str) -> Result<Self, UnknownWord> {
        Self::parse_word(s)
    }
}

/// The highest p99 latency of the new revision that passes.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LatencyLimit {
    /// At most this long (`250ms`).
    Absolute(#[serde(with = "crate::duration::serde_duration")] Duration),
    /// At most this many times the old revision's p99 in the same window
    /// (`1.5x`).
    Relative(f64),
}

impl FromStr for LatencyLimit {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if let Some(n) = s.strip_suffix('x') {
            return match n.parse::<f64>() {
                Ok(f) if f.is_finite() && f >= 1.0 => Ok(LatencyLimit::Relative(f)),
                _ => Err(format!(
                    "{s:?} is not a factor of at least 1 (such as 1.5x)"
                )),
            };
        }
        match parse_duration(s) {
            Ok(d) if !d.is_zero() => Ok(LatencyLimit::Absolute(d)),
            _ => Err(format!(
                "{s:?} is neither a duration (such as 250ms) nor a factor of the old revision's p99 (such as 1.5x)"
            )),
        }
    }
}

impl fmt::Display for LatencyLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LatencyLimit::Absolute(d) => f.write_str(&format_duration(*d)),
            LatencyLimit::Relative(x) => write!(f, "{x}x the old revision's"),
        }
    }
}

/// A share of requests: `5%` or `0.05`, from 0 to 1.
pub fn parse_rate(s: &str) -> Result<f64, String> {
    let t = s.trim();
    let v = match t.strip_suffix('%') {
        Some(p) => p.trim().parse::<f64>().map(|p| p / 100.0),
        None => t.parse::<f64>(),
    };
    match v {
        Ok(v) if (0.0..=1.0).contains(&v) => Ok(v),
        _ => Err(format!(
            "{t:?} is not a share from 0% to 100% (such as 5% or 0.05)"
        )),
    }
}

/// How a canary step is judged from the requests the proxy saw.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AnalysisRules {
    /// The highest error rate (5xx answers and failed upstream attempts)
    /// of the new revision that passes.
    pub max_error_rate: Option<f64>,
    /// The highest p99 latency of the new revision that passes.
    pub max_p99: Option<LatencyLimit>,
    /// Fewer requests to the new revision in a window than this make the
    /// window inconclusive.
    pub min_requests: u64,
    /// What an inconclusive window does.
    pub inconclusive: Inconclusive,
    /// How many failing windows in a row abort the canary.
    pub failing_windows: u32,
    /// The sliding window each judgement looks at.
    #[serde(with = "crate::duration::serde_duration")]
    pub window: Duration,
    /// PromQL queries whose value must stay at or under a limit, asked of a
    /// Prometheus server at every judgement.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prometheus: Option<PrometheusRules>,
}

/// A Prometheus server and the queries a canary is judged by.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PrometheusRules {
    /// The server, `http://HOST:PORT` (a path prefix allowed), checked by
    /// [`parse_prometheus_url`].
    pub url: String,
    /// Every query must pass.
    pub queries: Vec<MetricQuery>,
}

/// One PromQL query and the highest value of it that passes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricQuery {
    /// The PromQL expression, sent as it is written (URL-encoded).
    pub query: String,
    /// Every sample of the result must be at or under this.
    pub max: f64,
}

impl FromStr for MetricQuery {
    type Err = String;

    /// `QUERY <= MAX`, as `--prometheus-query` takes it (split at the last
    /// `<=`, so the query itself may hold one).
    fn from_str(s: &str) -> Result<Self, String> {
        let Some((query, max)) = s.rsplit_once("<=") else {
            return Err(format!(
                "{s:?} has no limit: write QUERY <= MAX (such as 'sum(rate(errors_total[1m])) <= 0.05')"
            ));
        };
        let query = query.trim();
        if query.is_empty() {
            return Err(format!("{s:?} has no query before <="));
        }
        let max = parse_limit(max.trim())?;
        Ok(MetricQuery {
            query: query.to_string(),
            max,
        })
    }
}

/// A query's limit: a finite number.
pub fn parse_limit(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() => Ok(v),
        _ => Err(format!("{s:?} is not a number (such as 0.05 or 250)")),
    }
}

/// A Prometheus server's address: `http://HOST[:PORT][/PREFIX]`, without a
/// query, credentials or spaces; returned without a trailing slash. HTTPS is
/// not spoken (the tool carries no TLS stack of its own).
pub fn parse_prometheus_url(s: &str) -> Result<String, String> {
    let t = s.trim();
    let hint = "such as http://127.0.0.1:9090";
    if t.starts_with("https://") {
        return Err(format!(
            "{t:?}: https is not supported; reach Prometheus over http ({hint}), for example through a local port"
        ));
    }
    let Some(rest) = t.strip_prefix("http://") else {
        return Err(format!("{t:?} is not an http:// address ({hint})"));
    };
    let (authority, _path) = rest.split_once('/').unwrap_or((rest, ""));
    let bad = |why: &str| Err(format!("{t:?}: {why} ({hint})"));
    if authority.is_empty() {
        return bad("no host");
    }
    if authority.contains('@') {
        // Not echoed: the address holds a password.
        return Err(format!(
            "credentials in the Prometheus address are not supported ({hint})"
        ));
    }
    if t.contains(['?', '#']) || t.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return bad("a query, fragment or space has no place in the server's address");
    }
    let (host, port) = match authority.strip_prefix('[') {
        Some(v6) => {
            let Some((host, after)) = v6.split_once(']') else {
                return bad("the [ of an IPv6 host is not closed");
            };
            match after {
                "" => (host, None),
                _ => match after.strip_prefix(':') {
                    Some(port) => (host, Some(port)),
                    None => return bad("only :PORT may follow an IPv6 host"),
                },
            }
        }
        None => match authority.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        },
    };
    if host.is_empty() {
        return bad("no host");
    }
    if port.is_some_and(|p| p.parse::<u16>().is_err()) {
        return bad("the port is not a number from 0 to 65535");
    }
    Ok(t.trim_end_matches('/').to_string())
}

impl Default for AnalysisRules {
    /// No threshold, 20 requests, hold, one failing window, 30 s.
    fn default() -> Self {
        Self {
            max_error_rate: None,
            max_p99: None,
            min_requests: 20,
            inconclusive: Inconclusive::Hold,
            failing_windows: 1,
            window: Duration::from_secs(30),
            prometheus: None,
        }
    }
}

impl AnalysisRules {
    /// Whether any threshold is set: without one there is nothing to judge.
    pub fn judges(&self) -> bool {
        self.reads_proxy_log() || self.prometheus.is_some()
    }

    /// Whether a threshold is judged from the proxy's own log (error rate,
    /// p99), so the log must be arranged.
    pub fn reads_proxy_log(&self) -> bool {
        self.max_error_rate.is_some() || self.max_p99.is_some()
    }
}

impl fmt::Display for AnalysisRules {
    /// One line for the plan: `error rate <= 5.0%, p99 <= 250ms; verdict after 20 requests in 30s (else hold), abort after 1 failing window`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut limits = Vec::new();
        if let Some(r) = self.max_error_rate {
            limits.push(format!("error rate <= {:.1}%", r * 100.0));
        }
        if let Some(l) = self.max_p99 {
            limits.push(format!("p99 <= {l}"));
        }
        if let Some(p) = &self.prometheus {
            for q in &p.queries {
                limits.push(format!(
                    "{} <= {} (Prometheus at {})",
                    q.query, q.max, p.url
                ));
            }
        }
        write!(
            f,
            "{}; verdict after {} requests in {} (else {}), abort after {} failing window{}",
            limits.join(", "),
            self.min_requests,
            format_duration(self.window),
            self.inconclusive,
            self.failing_windows,
            if self.failing_windows == 1 { "" } else { "s" }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spellings() {
        assert_eq!(parse_rate("5%"), Ok(0.05));
        assert_eq!(parse_rate("0.2"), Ok(0.2));
        assert!(parse_rate("120%").is_err());
        assert!(parse_rate("x").is_err());
        assert_eq!(
            "1.5x".parse::<LatencyLimit>(),
            Ok(LatencyLimit::Relative(1.5))
        );
        assert_eq!(
            "250ms".parse::<LatencyLimit>(),
            Ok(LatencyLimit::Absolute(Duration::from_millis(250)))
        );
        assert!("0.5x".parse::<LatencyLimit>().is_err());
        assert!("0s".parse::<LatencyLimit>().is_err());
        assert_eq!("fail".parse::<Inconclusive>(), Ok(Inconclusive::Fail));
        let rules = AnalysisRules {
            max_error_rate: Some(0.05),
            max_p99: Some(LatencyLimit::Relative(1.5)),
            ..Default::default()
        };
        assert!(rules.judges());
        assert!(!AnalysisRules::default().judges());
        assert_eq!(
            rules.to_string(),
            "error rate <= 5.0%, p99 <= 1.5x the old revision's; verdict after 20 requests in 30s (else hold), abort after 1 failing window"
        );
    }

    #[test]
    fn prometheus_queries_and_servers() {
        let q: MetricQuery = "sum(rate(x[1m])) <= 0.05".parse().unwrap();
        assert_eq!(q.query, "sum(rate(x[1m]))");
        assert_eq!(q.max, 0.05);
        // Split at the last <=: the query may compare too.
        let q: MetricQuery = "count(x <= 3) <= 2".parse().unwrap();
        assert_eq!((q.query.as_str(), q.max), ("count(x <= 3)", 2.0));
        assert!("sum(x)"
            .parse::<MetricQuery>()
            .unwrap_err()
            .contains("no limit"));
        assert!(" <= 1"
            .parse::<MetricQuery>()
            .unwrap_err()
            .contains("no query"));
        assert!("x <= NaN".parse::<MetricQuery>().is_err());
        assert!("x <= lots".parse::<MetricQuery>().is_err());

        assert_eq!(
            parse_prometheus_url("http://127.0.0.1:9090/").as_deref(),
            Ok("http://127.0.0.1:9090")
        );
        assert_eq!(
            parse_prometheus_url("http://[::1]:9090/prom").as_deref(),
            Ok("http://[::1]:9090/prom")
        );
        assert!(parse_prometheus_url("http://prom").is_ok());
        for (bad, why) in [
            ("https://prom:9090", "https is not supported"),
            ("prom:9090", "not an http://"),
            ("http://:9090", "no host"),
            ("http://prom:x", "port"),
            ("http://prom:99999", "port"),
            ("http://u:secret@prom", "credentials in the Prometheus"),
            ("http://prom/?q=1", "query"),
            ("http://[::1", "not closed"),
            ("http://prom/a b", "space"),
        ] {
            let e = parse_prometheus_url(bad).unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
            assert!(!e.contains("secret"), "{e}");
        }
        let rules = AnalysisRules {
            prometheus: Some(PrometheusRules {
                url: "http://127.0.0.1:9090".into(),
                queries: vec![MetricQuery {
                    query: "errors".into(),
                    max: 0.5,
                }],
            }),
            ..Default::default()
        };
        assert!(rules.judges());
        assert!(!rules.reads_proxy_log());
        assert!(rules
            .to_string()
            .starts_with("errors <= 0.5 (Prometheus at http://127.0.0.1:9090); "));
    }
}
