//! The rules a canary is judged by: [`AnalysisRules`], as `x-rollout.analysis`
//! and the command line write them.
//!
//! They are plain values here so that the Compose loader can read them and
//! an [`Analysis`](crate::Analysis) of any provider (the proxy's own log
//! today) can apply them; the judging itself lives with the provider.

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
        }
    }
}

impl AnalysisRules {
    /// Whether any threshold is set: without one there is nothing to judge.
    pub fn judges(&self) -> bool {
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
}
