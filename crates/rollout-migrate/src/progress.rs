//! The arithmetic of a long backfill's progress: rows per second and the time left.
//!
//! The rate is this run's (rows filled since it started over the time since it started),
//! not the file's: a backfill resumed after a kill must not count the rows of the run that
//! died as done in no time. The time left needs the rows left, which only the file can say
//! (`-- rollout: remaining SQL`, counted once before the first batch); without it there is a
//! rate and no ETA.

use std::time::Duration;

/// Where a backfill stands after a batch.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Progress {
    /// Rows per second in this run.
    pub rows_per_second: f64,
    /// Rows still to fill, when known.
    pub remaining: Option<i64>,
    /// Time left at this rate, when the rows left are known and the rate is not zero.
    pub eta: Option<Duration>,
}

/// The progress of a run that filled `rows_this_run` rows in `elapsed`, of a backfill that
/// had `remaining_at_start` rows to fill when this run began (if the file counts them).
pub fn progress(
    rows_this_run: u64,
    elapsed: Duration,
    remaining_at_start: Option<i64>,
) -> Progress {
    let secs = elapsed.as_secs_f64();
    let rows_per_second = if secs > 0.0 {
        rows_this_run as f64 / secs
    } else {
        0.0
    };
    // Rows written by the app meanwhile can make the batches fill more than counted.
    let remaining = remaining_at_start.map(|r| (r - rows_this_run as i64).max(0));
    let eta = match remaining {
        Some(0) => Some(Duration::ZERO),
        Some(r) if rows_per_second > 0.0 => {
            Duration::try_from_secs_f64(r as f64 / rows_per_second).ok()
        }
        _ => None,
    };
    Progress {
        rows_per_second,
        remaining,
        eta,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_and_eta_come_from_this_run() {
        let p = progress(5_000, Duration::from_secs(2), Some(20_000));
        assert_eq!(p.rows_per_second, 2_500.0);
        assert_eq!(p.remaining, Some(15_000));
        assert_eq!(p.eta, Some(Duration::from_secs(6)));
    }

    #[test]
    fn no_eta_without_a_count_or_a_rate() {
        let p = progress(5_000, Duration::from_secs(2), None);
        assert_eq!(
            (p.rows_per_second, p.remaining, p.eta),
            (2_500.0, None, None)
        );
        let p = progress(0, Duration::ZERO, Some(10));
        assert_eq!(
            (p.rows_per_second, p.remaining, p.eta),
            (0.0, Some(10), None)
        );
    }

    #[test]
    fn more_rows_than_counted_means_done_not_negative() {
        let p = progress(1_200, Duration::from_millis(500), Some(1_000));
        assert_eq!(p.rows_per_second, 2_400.0);
        assert_eq!((p.remaining, p.eta), (Some(0), Some(Duration::ZERO)));
    }
}
