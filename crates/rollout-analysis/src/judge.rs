//! The rules applied to one window, and the count of failing windows in a
//! row that turns a failing window into an abort: pure functions.

use crate::window::Stats;
use rollout_core::analysis::{AnalysisRules, Inconclusive, LatencyLimit};
use rollout_core::duration::format_duration;
use rollout_core::strategy::Verdict;

/// What one window says, before the count of windows in a row.
#[derive(Debug, Clone, PartialEq)]
pub enum WindowVerdict {
    /// Within every limit.
    Pass,
    /// Over a limit: why, with the numbers.
    Fail(String),
    /// Too few requests to say.
    TooFew(String),
}

fn ms(seconds: f64) -> String {
    format!("{:.0} ms", seconds * 1000.0)
}

/// Judges the new revision's `new` statistics (and the old ones', `old`,
/// for a relative latency limit) by `rules`.
pub fn window(rules: &AnalysisRules, new: &Stats, old: &Stats) -> WindowVerdict {
    if new.requests < rules.min_requests.max(1) {
        return WindowVerdict::TooFew(format!(
            "{} request{} reached the new revision in the last {}, a verdict needs {}",
            new.requests,
            if new.requests == 1 { "" } else { "s" },
            format_duration(rules.window),
            rules.min_requests.max(1)
        ));
    }
    let mut over = Vec::new();
    if let Some(max) = rules.max_error_rate {
        if new.error_rate() > max {
            over.push(format!(
                "error rate {:.1}% ({} of {} requests) above {:.1}%",
                new.error_rate() * 100.0,
                new.errors,
                new.requests,
                max * 100.0
            ));
        }
    }
    match rules.max_p99 {
        Some(LatencyLimit::Absolute(d)) if new.p99 > d.as_secs_f64() => {
            over.push(format!("p99 {} above {}", ms(new.p99), format_duration(d)));
        }
        // Compared with the old revision only when it had enough requests
        // in the same window to have a p99 worth the name.
        Some(LatencyLimit::Relative(f))
            if old.requests >= rules.min_requests.max(1) && new.p99 > f * old.p99 =>
        {
            over.push(format!(
                "p99 {} above {f}x the old revision's {}",
                ms(new.p99),
                ms(old.p99)
            ));
        }
        _ => {}
    }
    if over.is_empty() {
        WindowVerdict::Pass
    } else {
        WindowVerdict::Fail(over.join("; "))
    }
}

/// Failing windows in a row, turned into verdicts.
#[derive(Debug, Clone, Default)]
pub struct Streak {
    failing: u32,
}

impl Streak {
    /// The verdict after `w`: `Fail` once `rules.failing_windows` windows in
    /// a row failed (a window with too few requests counts as failing under
    /// the `fail` policy), `Inconclusive` for a failing window before that
    /// or too few requests under `hold`, `Pass` otherwise (which ends the
    /// streak).
    pub fn next(&mut self, rules: &AnalysisRules, w: WindowVerdict) -> Verdict {
        let failing = match w {
            WindowVerdict::Pass => {
                self.failing = 0;
                return Verdict::Pass;
            }
            WindowVerdict::TooFew(r) if rules.inconclusive == Inconclusive::Hold => {
                return Verdict::Inconclusive(r)
            }
            WindowVerdict::TooFew(r) | WindowVerdict::Fail(r) => r,
        };
        self.failing += 1;
        let need = rules.failing_windows.max(1);
        if self.failing >= need {
            Verdict::Fail(failing)
        } else {
            Verdict::Inconclusive(format!(
                "failing window {} of {need}: {failing}",
                self.failing
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn stats(requests: u64, errors: u64, p99: f64) -> Stats {
        Stats {
            requests,
            errors,
            p50: p99 / 2.0,
            p95: p99,
            p99,
        }
    }

    fn rules() -> AnalysisRules {
        AnalysisRules {
            max_error_rate: Some(0.05),
            max_p99: Some(LatencyLimit::Absolute(Duration::from_millis(500))),
            min_requests: 20,
            ..Default::default()
        }
    }

    #[test]
    fn the_rate_and_the_latency_are_in_the_words() {
        let old = stats(400, 0, 0.010);
        assert_eq!(
            window(&rules(), &stats(100, 5, 0.1), &old),
            WindowVerdict::Pass
        );
        assert_eq!(
            window(&rules(), &stats(100, 21, 0.9), &old),
            WindowVerdict::Fail(
                "error rate 21.0% (21 of 100 requests) above 5.0%; p99 900 ms above 500ms".into()
            )
        );
        assert_eq!(
            window(&rules(), &stats(19, 19, 0.9), &old),
            WindowVerdict::TooFew(
                "19 requests reached the new revision in the last 30s, a verdict needs 20".into()
            )
        );
    }

    #[test]
    fn a_relative_limit_needs_old_requests_in_the_same_window() {
        let r = AnalysisRules {
            max_error_rate: None,
            max_p99: Some(LatencyLimit::Relative(1.5)),
            ..rules()
        };
        let new = stats(100, 0, 0.040);
        assert_eq!(
            window(&r, &new, &stats(100, 0, 0.020)),
            WindowVerdict::Fail("p99 40 ms above 1.5x the old revision's 20 ms".into())
        );
        assert_eq!(window(&r, &new, &stats(100, 0, 0.030)), WindowVerdict::Pass);
        assert_eq!(window(&r, &new, &stats(3, 0, 0.001)), WindowVerdict::Pass);
    }

    #[test]
    fn windows_in_a_row() {
        let r = AnalysisRules {
            failing_windows: 2,
            ..rules()
        };
        let bad = || WindowVerdict::Fail("error rate 20.0%".into());
        let mut s = Streak::default();
        assert_eq!(
            s.next(&r, bad()),
            Verdict::Inconclusive("failing window 1 of 2: error rate 20.0%".into())
        );
        assert_eq!(s.next(&r, WindowVerdict::Pass), Verdict::Pass);
        assert!(matches!(s.next(&r, bad()), Verdict::Inconclusive(_)));
        assert_eq!(s.next(&r, bad()), Verdict::Fail("error rate 20.0%".into()));
        // Too few requests: hold waits, fail counts.
        let few = || WindowVerdict::TooFew("3 requests".into());
        let mut s = Streak::default();
        assert_eq!(
            s.next(&rules(), few()),
            Verdict::Inconclusive("3 requests".into())
        );
        let strict = AnalysisRules {
            inconclusive: Inconclusive::Fail,
            ..rules()
        };
        assert_eq!(s.next(&strict, few()), Verdict::Fail("3 requests".into()));
    }
}
