//! A strategy of your own, outside `rollout-strategies`: one instance at a
//! time, and a smoke request to each new instance (through the context's
//! [`Verifier`]) before it gets any traffic. It runs on the in-memory mock
//! on tokio's paused clock, then prints what the mock saw and what the
//! invariant checker says about it.
//!
//! ```text
//! cargo run -p custom-strategy
//! ```
//!
//! Everything it uses is public API: the traits of `rollout-core` and the
//! mock of `rollout-mock`. The same strategy runs unchanged against the
//! Docker backend and the nginx router.

use async_trait::async_trait;
use rollout_core::strategy::{Verification, Verifier};
use rollout_core::{
    Event, Instance, Outcome, Plan, Revision, RolloutContext, Route, RouteChange, ServiceRef,
    Strategy, Target,
};
use rollout_mock::check::{check_end, check_timeline, EndState};
use rollout_mock::{Faults, MockCluster, MockVerifier};
use std::sync::Arc;

/// One at a time, start-first, with a smoke request before each routing
/// change. Any failure puts the old instance back and stops (exit 3).
struct SmokeOneByOne {
    smoke: Verification,
}

fn target(i: &Instance) -> Target {
    Target::instance(i.id.clone(), i.host.clone())
}

impl SmokeOneByOne {
    async fn replace_all(&self, ctx: &RolloutContext, plan: &Plan) -> Result<Outcome, String> {
        let (b, r) = (&ctx.backend, &ctx.router);
        let old = b
            .instances(&plan.service)
            .await
            .map_err(|e| e.to_string())?;
        if !old.is_empty() && old.iter().all(|i| i.revision == plan.target.id) {
            return Ok(Outcome::NoChange);
        }
        // During the rollout, route by instance: the proxy would resolve the
        // service name to new instances before they are ready.
        let name = Target::Service {
            name: plan.service.service.clone(),
        };
        let to_instances = RouteChange {
            set: old
                .iter()
                .filter(|i| i.is_ready())
                .map(|i| Route {
                    target: target(i),
                    weight: 1,
                })
                .collect(),
            remove: vec![name.clone()],
        };
        r.apply(&to_instances).await.map_err(|e| e.to_string())?;
        for o in &old {
            let new = b
                .launch(&plan.service, &plan.target, 1)
                .await
                .map_err(|e| e.to_string())?
                .remove(0);
            let healthy = b
                .wait_healthy(&new.id, &plan.timeouts)
                .await
                .map_err(|e| e.to_string())?;
            let smoke = match (&healthy, &ctx.verifier) {
                (Ok(()), Some(v)) => v.verify(&new, &self.smoke).await,
                (Ok(()), None) => Ok(()),
                (Err(f), _) => Err(f.to_string()),
            };
            if let Err(why) = smoke {
                // Never routed: stop and remove it, and leave the old one.
                b.stop(&new.id, plan.timeouts.stop_grace)
                    .await
                    .map_err(|e| e.to_string())?;
                b.remove(&new.id).await.map_err(|e| e.to_string())?;
                self.at_rest(ctx, plan).await?;
                return Ok(Outcome::RolledBack(format!("{}: {why}", new.host)));
            }
            ctx.events.send(Event::InstanceHealthy {
                instance: new.id.clone(),
            });
            // One change: the new instance in, the old one out.
            let ticket = r
                .apply(&RouteChange {
                    set: vec![Route {
                        target: target(&new),
                        weight: 1,
                    }],
                    remove: vec![target(o)],
                })
                .await
                .map_err(|e| e.to_string())?;
            let report = r
                .drain(&ticket, plan.timeouts.drain)
                .await
                .map_err(|e| e.to_string())?;
            ctx.events.send(Event::Drained {
                removed: ticket.removed.clone(),
                report,
            });
            b.stop(&o.id, plan.timeouts.stop_grace)
                .await
                .map_err(|e| e.to_string())?;
            b.remove(&o.id).await.map_err(|e| e.to_string())?;
        }
        self.at_rest(ctx, plan).await?;
        Ok(Outcome::Completed)
    }

    /// At rest, the proxy names the service again (every running instance
    /// is ready now), so that the project works without this tool.
    async fn at_rest(&self, ctx: &RolloutContext, plan: &Plan) -> Result<(), String> {
        let now = ctx
            .backend
            .instances(&plan.service)
            .await
            .map_err(|e| e.to_string())?;
        ctx.router
            .apply(&RouteChange {
                set: vec![Route {
                    target: Target::Service {
                        name: plan.service.service.clone(),
                    },
                    weight: 1,
                }],
                remove: now.iter().map(target).collect(),
            })
            .await
            .map_err(|e| e.to_string())?;
        Ok(())
    }
}

#[async_trait]
impl Strategy for SmokeOneByOne {
    fn name(&self) -> &str {
        "smoke-one-by-one"
    }

    async fn run(&self, ctx: &RolloutContext, plan: &Plan) -> Outcome {
        let holder = format!("custom-strategy pid {}", std::process::id());
        if let Err(e) = ctx.journal.lock(&plan.service, &holder).await {
            return Outcome::Failed(e.to_string());
        }
        let outcome = self
            .replace_all(ctx, plan)
            .await
            .unwrap_or_else(Outcome::Failed);
        let _ = ctx.journal.unlock(&plan.service).await;
        ctx.events.send(Event::Finished {
            outcome: outcome.clone(),
        });
        outcome
    }
}

/// Runs one rollout and prints it; `(outcome, whether the invariants held)`.
async fn rollout(mock: &Arc<MockCluster>, to: &str, from: &str) -> (Outcome, bool) {
    let service = ServiceRef::new("demo", "web");
    let verifier: Arc<dyn Verifier> = Arc::new(MockVerifier::new(mock.clone()));
    let ctx = RolloutContext {
        verifier: Some(verifier),
        ..mock.context()
    };
    let plan = Plan::new(service.clone(), Revision::new(to, format!("web:{to}")), 3);
    let strategy = SmokeOneByOne {
        smoke: Verification {
            path: "/health".into(),
            status: 200,
            body_contains: None,
        },
    };
    let mark = mock.mark();
    let outcome = strategy.run(&ctx, &plan).await;
    println!(
        "== rollout of {service} to {to} with {}: {outcome:?} (exit code {})",
        strategy.name(),
        outcome.exit_code()
    );
    print!("{}", mock.with_timeline(|t| t.render(mark)));
    let mut broken: Vec<String> = mock
        .with_timeline(|t| check_timeline(t, mark, plan.replicas))
        .iter()
        .map(|v| v.to_string())
        .collect();
    let end = EndState {
        service: &service,
        layout: &plan.layout,
        replicas: plan.replicas,
        from: Some(from),
        to,
    };
    broken.extend(
        check_end(mock, &end, &outcome)
            .iter()
            .map(|v| v.to_string()),
    );
    if broken.is_empty() {
        println!("invariants 1, 2, 4 and 5: kept at every change\n");
    } else {
        println!("invariants broken:\n{}\n", broken.join("\n"));
    }
    (outcome, broken.is_empty())
}

/// Two rollouts: v2 is fine; v3 answers the smoke request with errors.
async fn demo() -> Vec<(Outcome, bool)> {
    let mock = MockCluster::new();
    mock.seed(&ServiceRef::new("demo", "web"), "v1", 3, true);
    mock.set_faults("v3", Faults::error_rate(1.0));
    vec![
        rollout(&mock, "v2", "v1").await,
        rollout(&mock, "v3", "v2").await,
    ]
}

#[tokio::main(flavor = "current_thread", start_paused = true)]
async fn main() {
    if demo().await.iter().any(|(_, kept)| !kept) {
        std::process::exit(1);
    }
}

#[cfg(test)]
mod tests {
    #[tokio::test(start_paused = true)]
    async fn the_custom_strategy_keeps_the_invariants() {
        let runs = super::demo().await;
        assert_eq!(runs[0], (rollout_core::Outcome::Completed, true));
        assert!(matches!(runs[1].0, rollout_core::Outcome::RolledBack(_)));
        assert!(runs[1].1);
    }
}
