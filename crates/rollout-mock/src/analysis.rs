//! An [`Analysis`] and a [`Verifier`] that read the mock's faults.

use crate::cluster::MockCluster;
use async_trait::async_trait;
use rollout_core::strategy::{Verdict, Verification, Verifier};
use rollout_core::{Analysis, Instance, Plan};
use std::sync::Arc;

/// Judges a canary step by the error rate the mock reports for the plan's
/// target revision: fail above `max_rate`, inconclusive while the revision
/// gets no traffic.
#[derive(Debug, Clone)]
pub struct ErrorRateAnalysis {
    /// Where the rates come from.
    pub mock: Arc<MockCluster>,
    /// The highest error rate that passes, 0.0 to 1.0.
    pub max_rate: f64,
}

#[async_trait]
impl Analysis for ErrorRateAnalysis {
    async fn judge(&self, plan: &Plan, _step: usize, percent: u32) -> Verdict {
        match self.mock.observed_error_rate(&plan.target.id) {
            None => Verdict::Inconclusive(format!(
                "no request reached revision {} at {percent}%",
                plan.target.id
            )),
            Some(rate) if rate > self.max_rate => Verdict::Fail(format!(
                "error rate {:.1}% above {:.1}%",
                rate * 100.0,
                self.max_rate * 100.0
            )),
            Some(_) => Verdict::Pass,
        }
    }
}

/// Answers verification requests as an instance of a revision with an error
/// rate would: a revision whose error rate is 1.0 answers 500, every other
/// ready instance answers as the check expects. Counts the requests.
#[derive(Debug)]
pub struct MockVerifier {
    /// Where the faults come from.
    pub mock: Arc<MockCluster>,
    /// Verification requests sent so far.
    pub sent: std::sync::atomic::AtomicUsize,
}

impl MockVerifier {
    /// A verifier over `mock`.
    pub fn new(mock: Arc<MockCluster>) -> Self {
        Self {
            mock,
            sent: Default::default(),
        }
    }
}

#[async_trait]
impl Verifier for MockVerifier {
    async fn verify(&self, instance: &Instance, check: &Verification) -> Result<(), String> {
        self.sent.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let failing = self
            .mock
            .fault_error_rate(&instance.revision)
            .is_some_and(|r| r >= 1.0);
        if failing {
            Err(format!(
                "GET {} on {}: status 500, expected {}",
                check.path, instance.host, check.status
            ))
        } else {
            Ok(())
        }
    }
}
