//! [`AllOf`]: a canary judged by several providers at once (the proxy's log
//! and Prometheus), which must all pass.

use async_trait::async_trait;
use rollout_core::strategy::{Analysis, Plan, Verdict};
use std::sync::Arc;

/// Every analysis is asked; the first failure fails, else the first
/// inconclusive holds, else it passes.
pub struct AllOf(pub Vec<Arc<dyn Analysis>>);

#[async_trait]
impl Analysis for AllOf {
    async fn judge(&self, plan: &Plan, step: usize, percent: u32) -> Verdict {
        let mut held = None;
        for a in &self.0 {
            match a.judge(plan, step, percent).await {
                Verdict::Pass => {}
                Verdict::Fail(why) => return Verdict::Fail(why),
                Verdict::Inconclusive(why) => {
                    held.get_or_insert(why);
                }
            }
        }
        held.map_or(Verdict::Pass, Verdict::Inconclusive)
    }
}
