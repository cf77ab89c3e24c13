//! The load every run sends, and the load's clock that every other observation is put on.
//!
//! A test's claims compare moments: an instance's last answer against the instant the tool
//! took it out of nginx, a request in flight against a drain. The load generator stamps its
//! requests in seconds since its run started ([`rollout_load::Record::t`]); [`Clock`] gives the
//! same seconds to any other thread of the test (the plugin's event lines, the proxy's config
//! file), so that everything lines up on one axis.

use crate::project::Project;
use rollout_load::{LoadConfig, LoadHandle};
use std::time::{Duration, Instant};

/// Seconds since a fixed instant, readable from any thread: the load's clock
/// ([`Clock::of`]), or one that starts now ([`Clock::start`]).
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    origin: Instant,
}

impl Clock {
    /// The clock of `load`'s run: seconds since the load started.
    pub fn of(load: &LoadHandle) -> Clock {
        Clock {
            origin: Instant::now() - load.elapsed(),
        }
    }

    /// A clock that reads 0 now.
    pub fn start() -> Clock {
        Clock {
            origin: Instant::now(),
        }
    }

    /// Seconds on this clock, now.
    pub fn now(&self) -> f64 {
        self.origin.elapsed().as_secs_f64()
    }
}

/// The mix every run under load sends: 250 requests per second, 5 % slow GETs of 2 s, 5 %
/// POSTs, 20 % on new connections, the rest keep-alive GETs, bounded to `max` (the test stops
/// it earlier). A test that needs other slow requests or a POST delay sets them after.
pub fn mix(config: &mut LoadConfig, max: Duration) {
    config.rate = 250;
    config.duration = max;
    config.slow_share = 0.05;
    config.slow = Duration::from_secs(2);
    config.post_share = 0.05;
    config.new_connection_share = 0.2;
}

/// Starts [`mix`] bounded to `max` on `p`'s nginx ([`Project::start_load`]).
pub fn standard(p: &Project, max: Duration) -> LoadHandle {
    p.start_load(|c| mix(c, max))
}

/// Waits until the load has `n` more successful answers than now; panics after `timeout`.
pub fn wait_ok(load: &LoadHandle, n: u64, timeout: Duration) {
    let target = load.progress().ok + n;
    let deadline = Instant::now() + timeout;
    while load.progress().ok < target {
        assert!(
            Instant::now() < deadline,
            "the load did not get {n} more successful answers within {timeout:?}: {:?}",
            load.progress()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mix_is_the_documented_one() {
        let mut c = LoadConfig::new("127.0.0.1:1".parse().unwrap());
        mix(&mut c, Duration::from_secs(9));
        assert_eq!(c.rate, 250);
        assert_eq!(c.duration, Duration::from_secs(9));
        assert_eq!(
            (c.slow_share, c.post_share, c.new_connection_share),
            (0.05, 0.05, 0.2)
        );
        assert_eq!(c.slow, Duration::from_secs(2));
        assert_eq!(c.post_delay, Duration::ZERO, "the default POST delay stays");
    }
}
