//! Statistics of one revision over a sliding window: pure arithmetic.

use crate::logline::LogLine;
use std::collections::BTreeMap;

/// One attempt, as the window keeps it.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Sample {
    at: f64,
    failed: bool,
    seconds: f64,
}

/// What a revision did in a window.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Stats {
    /// Attempts it received.
    pub requests: u64,
    /// Of those, failed (5xx, or no answer).
    pub errors: u64,
    /// Latency percentiles, in seconds (0 with no request).
    pub p50: f64,
    /// 95th percentile.
    pub p95: f64,
    /// 99th percentile.
    pub p99: f64,
}

impl Stats {
    /// errors / requests, 0 with no request.
    pub fn error_rate(&self) -> f64 {
        if self.requests == 0 {
            0.0
        } else {
            self.errors as f64 / self.requests as f64
        }
    }
}

/// The nearest-rank percentile `q` (0 to 1) of sorted `v`.
pub fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Attempts per revision, kept for as long as the window is long.
#[derive(Debug, Default)]
pub struct Window {
    samples: BTreeMap<String, Vec<Sample>>,
}

impl Window {
    /// Adds the attempts of `line` whose address `revision_of` knows
    /// (attempts at servers of no known revision are not counted).
    pub fn add(&mut self, line: &LogLine, revision_of: impl Fn(&str) -> Option<String>) {
        for a in &line.attempts {
            let Some(rev) = revision_of(&a.addr) else {
                continue;
            };
            self.samples.entry(rev).or_default().push(Sample {
                at: line.at,
                failed: a.failed(),
                seconds: a.seconds.unwrap_or(line.request_time),
            });
        }
    }

    /// Forgets what ended before `since` (seconds since the epoch).
    pub fn forget_before(&mut self, since: f64) {
        for v in self.samples.values_mut() {
            v.retain(|s| s.at >= since);
        }
        self.samples.retain(|_, v| !v.is_empty());
    }

    /// The statistics of `revision` from `since` on.
    pub fn stats(&self, revision: &str, since: f64) -> Stats {
        self.stats_where(since, |r| r == revision)
    }

    /// The statistics of every revision but `revision` from `since` on.
    pub fn stats_except(&self, revision: &str, since: f64) -> Stats {
        self.stats_where(since, |r| r != revision)
    }

    fn stats_where(&self, since: f64, keep: impl Fn(&str) -> bool) -> Stats {
        let mut lat = Vec::new();
        let mut errors = 0;
        for (_, v) in self.samples.iter().filter(|(r, _)| keep(r)) {
            for s in v.iter().filter(|s| s.at >= since) {
                lat.push(s.seconds);
                errors += u64::from(s.failed);
            }
        }
        lat.sort_by(f64::total_cmp);
        Stats {
            requests: lat.len() as u64,
            errors,
            p50: percentile(&lat, 0.50),
            p95: percentile(&lat, 0.95),
            p99: percentile(&lat, 0.99),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logline::parse;

    #[test]
    fn nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 0.5), 50.0);
        assert_eq!(percentile(&v, 0.99), 99.0);
        assert_eq!(percentile(&v, 1.0), 100.0);
        assert_eq!(percentile(&[7.0], 0.99), 7.0);
        assert_eq!(percentile(&[], 0.5), 0.0);
    }

    #[test]
    fn per_revision_and_sliding() {
        let rev = |a: &str| match a {
            "10.0.0.1:80" => Some("v1".to_string()),
            "10.0.0.2:80" => Some("v2".to_string()),
            _ => None,
        };
        let mut w = Window::default();
        for i in 0..100 {
            let (addr, status) = if i % 5 == 0 {
                ("10.0.0.2:80", if i % 10 == 0 { 500 } else { 200 })
            } else {
                ("10.0.0.1:80", 200)
            };
            let line = format!("{}\t{status}\t0.01\t{addr}\t{status}\t0.{:03}", 100 + i, i);
            w.add(&parse(&line).unwrap(), rev);
        }
        // An attempt at an unknown server is not counted.
        w.add(&parse("150\t200\t0.1\t10.9.9.9:80\t200\t0.1").unwrap(), rev);
        let v2 = w.stats("v2", 0.0);
        assert_eq!((v2.requests, v2.errors), (20, 10));
        assert_eq!(v2.error_rate(), 0.5);
        let v1 = w.stats_except("v2", 0.0);
        assert_eq!((v1.requests, v1.errors), (80, 0));
        assert_eq!(v1.p99, 0.099);
        assert_eq!(v1.p50, 0.049);
        // The window slides: only what ended from 150 on.
        let late = w.stats("v2", 150.0);
        assert_eq!(late.requests, 10);
        w.forget_before(190.0);
        assert_eq!(w.stats("v2", 0.0).requests, 2);
    }
}
