//! What load to send.

use crate::errorlog::ErrorLogSource;
use crate::LoadError;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::time::Duration;

/// The kind of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Class {
    /// `GET /`: answered at once.
    Fast,
    /// `GET /slow?ms=N`: answered after [`LoadConfig::slow`].
    Slow,
    /// `POST /submit?ms=N` with a small JSON body: not idempotent, never retried.
    Post,
}

impl Class {
    /// Every class, in report order.
    pub const ALL: [Class; 3] = [Class::Fast, Class::Slow, Class::Post];

    /// The lower-case name used in reports.
    pub fn name(self) -> &'static str {
        match self {
            Class::Fast => "fast",
            Class::Slow => "slow",
            Class::Post => "post",
        }
    }

    /// Whether a client may send it again on its own (RFC 9110 §9.2.2).
    pub fn idempotent(self) -> bool {
        self != Class::Post
    }
}

/// The load: where, how fast, for how long, and which mix.
#[derive(Debug, Clone)]
pub struct LoadConfig {
    /// The proxy (or app) to load, for example `127.0.0.1:32768`.
    pub target: SocketAddr,
    /// The `Host` header.
    pub host: String,
    /// Requests started per second (open loop).
    pub rate: u32,
    /// The run stops starting requests after this long (bounded in time).
    pub duration: Duration,
    /// ... or after this many requests, whichever comes first (bounded in count).
    pub max_requests: Option<u64>,
    /// Share of slow GETs (0 to 1).
    pub slow_share: f64,
    /// How long a slow GET takes at the server.
    pub slow: Duration,
    /// Share of POSTs (0 to 1).
    pub post_share: f64,
    /// How long a POST takes at the server (0 for an instant answer).
    pub post_delay: Duration,
    /// Share of requests sent on a new connection (with `Connection: close`); the others
    /// reuse pooled keep-alive connections.
    pub new_connection_share: f64,
    /// A request fails with a timeout this long after its expected duration.
    pub timeout_grace: Duration,
    /// Requests in flight above which the generator skips a request rather than queue it
    /// (skips are reported: they mean the client, not the server, was the limit).
    pub max_in_flight: usize,
    /// Width of a timeline bucket.
    pub bucket: Duration,
    /// The proxy's error log, for the upstream errors during the run.
    pub error_log: Option<ErrorLogSource>,
}

impl LoadConfig {
    /// The default mix against `target`: 250 requests per second for 30 s, 5 % slow GETs of
    /// 2 s, 5 % POSTs, 20 % on new connections.
    pub fn new(target: SocketAddr) -> LoadConfig {
        LoadConfig {
            target,
            host: "localhost".into(),
            rate: 250,
            duration: Duration::from_secs(30),
            max_requests: None,
            slow_share: 0.05,
            slow: Duration::from_secs(2),
            post_share: 0.05,
            post_delay: Duration::ZERO,
            new_connection_share: 0.2,
            timeout_grace: Duration::from_secs(5),
            max_in_flight: 2000,
            bucket: Duration::from_secs(1),
            error_log: None,
        }
    }

    /// Checks the values before a run.
    pub fn validate(&self) -> Result<(), LoadError> {
        let share = |name: &str, v: f64| {
            if (0.0..=1.0).contains(&v) {
                Ok(())
            } else {
                Err(LoadError::Config(format!(
                    "{name} {v} is out of range: expected a share from 0 to 1"
                )))
            }
        };
        share("slow share", self.slow_share)?;
        share("post share", self.post_share)?;
        share("new connection share", self.new_connection_share)?;
        if self.slow_share + self.post_share > 1.0 {
            return Err(LoadError::Config(format!(
                "slow share {} and post share {} add up to more than 1",
                self.slow_share, self.post_share
            )));
        }
        if self.rate == 0 || self.rate > 100_000 {
            return Err(LoadError::Config(format!(
                "rate {} is out of range: expected 1 to 100000 requests per second",
                self.rate
            )));
        }
        if self.duration.is_zero() {
            return Err(LoadError::Config("duration is zero".into()));
        }
        if self.bucket < Duration::from_millis(10) {
            return Err(LoadError::Config(format!(
                "timeline bucket {:?} is shorter than 10 ms",
                self.bucket
            )));
        }
        if self.max_in_flight == 0 {
            return Err(LoadError::Config("max in flight is zero".into()));
        }
        Ok(())
    }

    /// How long a request of `class` is expected to take at the server.
    pub fn expected(&self, class: Class) -> Duration {
        match class {
            Class::Fast => Duration::ZERO,
            Class::Slow => self.slow,
            Class::Post => self.post_delay,
        }
    }
}

/// Spreads classes and connection kinds evenly by accumulating shares (in parts per million,
/// so that no rounding drifts), so that a run of N requests has exactly the asked shares
/// (slow rounded down, POST rounded to nearest: it starts half a step in, so that it rarely
/// meets a slow request on the same turn) and no randomness to explain.
#[derive(Debug)]
pub(crate) struct Mixer {
    slow: u64,
    post: u64,
    fresh: u64,
}

const MILLION: u64 = 1_000_000;

fn ppm(share: f64) -> u64 {
    (share * MILLION as f64).round() as u64
}

impl Default for Mixer {
    fn default() -> Mixer {
        Mixer {
            slow: 0,
            post: MILLION / 2,
            fresh: 0,
        }
    }
}

impl Mixer {
    /// The class and whether to use a new connection, for the next request.
    pub(crate) fn next(&mut self, config: &LoadConfig) -> (Class, bool) {
        self.slow += ppm(config.slow_share);
        self.post += ppm(config.post_share);
        self.fresh += ppm(config.new_connection_share);
        let class = if self.slow >= MILLION {
            self.slow -= MILLION;
            Class::Slow
        } else if self.post >= MILLION {
            self.post -= MILLION;
            Class::Post
        } else {
            Class::Fast
        };
        let fresh = self.fresh >= MILLION;
        if fresh {
            self.fresh -= MILLION;
        }
        (class, fresh)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> LoadConfig {
        LoadConfig::new("127.0.0.1:1".parse().unwrap())
    }

    #[test]
    fn mixer_gives_the_asked_shares() {
        let mut c = config();
        c.slow_share = 0.1;
        c.post_share = 0.2;
        c.new_connection_share = 0.25;
        let mut m = Mixer::default();
        let picks: Vec<_> = (0..100).map(|_| m.next(&c)).collect();
        let count = |k: Class| picks.iter().filter(|(c, _)| *c == k).count();
        assert_eq!(count(Class::Slow), 10);
        assert_eq!(count(Class::Post), 20);
        assert_eq!(count(Class::Fast), 70);
        assert_eq!(picks.iter().filter(|(_, fresh)| *fresh).count(), 25);
    }

    #[test]
    fn validation_rejects_out_of_range_values() {
        let mut c = config();
        assert!(c.validate().is_ok());
        c.slow_share = 1.5;
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("slow share 1.5"));
        let mut c = config();
        c.slow_share = 0.6;
        c.post_share = 0.6;
        assert!(c.validate().is_err());
        let mut c = config();
        c.rate = 0;
        assert!(c.validate().is_err());
    }

    #[test]
    fn only_post_is_not_idempotent() {
        assert!(Class::Fast.idempotent() && Class::Slow.idempotent());
        assert!(!Class::Post.idempotent());
    }
}
