//! Many random rollouts: random strategy, config, fault and Ctrl-C. The
//! outcome is whatever it is; the invariants must hold at every change and
//! the end state must be the one the outcome names.

mod common;
use common::*;
use rollout_core::config::{FailureAction, Order};
use rollout_core::strategy::{CanaryStep, Cancel, Hold};
use rollout_core::{Outcome, Strategy};
use rollout_mock::{ErrorRateAnalysis, Faults};
use rollout_strategies::{BlueGreen, Canary, Rolling};
use std::sync::Arc;
use std::time::Duration;

/// A small deterministic generator (xorshift), so a failure names its seed.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn secs(&mut self, n: u64) -> Duration {
        Duration::from_secs(self.below(n))
    }
}

fn fault(r: &mut Rng) -> Faults {
    let f = match r.below(8) {
        0 | 1 => Faults::healthy(),
        2 => Faults::never_healthy(),
        3 => Faults::crash_after(Duration::from_secs(1 + r.below(12))),
        4 => Faults::unhealthy_after(Duration::from_secs(r.below(8))),
        5 => Faults::launch_fails(),
        6 => Faults::slow_start(Duration::from_secs(1 + r.below(100))),
        _ => Faults::error_rate(0.5),
    };
    if r.below(2) == 0 {
        f.only_first(r.below(4) as usize)
    } else {
        f
    }
}

#[tokio::test(start_paused = true)]
async fn random_rollouts_keep_the_invariants() {
    // ROLLOUT_RANDOM_SEEDS=5000 for a longer search.
    let seeds: u64 = std::env::var("ROLLOUT_RANDOM_SEEDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300);
    let mut problems = Vec::new();
    let trace = std::env::var("ROLLOUT_RANDOM_TRACE").is_ok();
    for seed in 1..=seeds {
        let only: Option<u64> = std::env::var("ROLLOUT_RANDOM_ONLY")
            .ok()
            .and_then(|v| v.parse().ok());
        if only.is_some_and(|o| o != seed) {
            continue;
        }
        let mut r = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let replicas = 1 + r.below(6) as usize;
        let colours = r.below(4) == 0;
        let (mut e, layout) = if colours {
            let (e, l) = colours_env(replicas, r.below(2) == 0);
            (e, Some(l))
        } else {
            (env(replicas), None)
        };
        let f = fault(&mut r);
        if trace {
            eprintln!("seed {seed}: fault {f:?}");
        }
        e.mock.set_faults(NEW, f);
        e.analysis = Some(Arc::new(ErrorRateAnalysis {
            mock: e.mock.clone(),
            max_rate: 0.1,
        }));
        let mut p = plan(&e, replicas);
        if let Some(l) = layout {
            p.layout = l;
        }
        for cfg in [&mut p.update, &mut p.rollback] {
            cfg.parallelism = r.below(4);
            cfg.delay = r.secs(4);
            cfg.monitor = r.secs(8);
            cfg.order = if r.below(2) == 0 {
                Order::StartFirst
            } else {
                Order::StopFirst
            };
            cfg.max_failure_ratio = [0.0, 0.3, 0.5][r.below(3) as usize];
            cfg.failure_action = [
                FailureAction::Pause,
                FailureAction::Continue,
                FailureAction::Rollback,
            ][r.below(3) as usize];
        }
        p.canary.steps = vec![
            CanaryStep {
                percent: 20,
                hold: Hold::For(r.secs(20)),
            },
            CanaryStep {
                percent: 60,
                hold: Hold::For(r.secs(20)),
            },
        ];
        p.blue_green.keep_old_for = Some(r.secs(20));
        let strategy: &dyn Strategy = match r.below(3) {
            0 => &Rolling,
            1 => &BlueGreen,
            _ => &Canary,
        };
        let name = if colours && strategy.name() == "rolling" {
            "blue-green"
        } else {
            strategy.name()
        };
        let presses = if r.below(4) == 0 {
            1 + r.below(2) as usize
        } else {
            0
        };
        let at = r.secs(40);
        let (handle, cancel) = if presses > 0 {
            Cancel::new()
        } else {
            (Cancel::new().0, Cancel::never())
        };
        let (ctx, _rx) = ctx(&e, cancel);
        let press = async {
            if presses > 0 {
                tokio::time::sleep(at).await;
                for _ in 0..presses {
                    handle.escalate();
                }
            }
            std::future::pending::<()>().await
        };
        if trace {
            eprintln!("seed {seed}: {name} replicas {replicas} colours {colours} presses {presses} at {at:?}\n{p:#?}");
        }
        let o = tokio::select! {
            o = tokio::time::timeout(Duration::from_secs(36_000), strategy.run(&ctx, &p)) => match o {
                Ok(o) => o,
                Err(_) => {
                    let tl = e.mock.with_timeline(|t| t.render(0));
                    panic!("seed {seed}: still running after ten simulated hours\n{tl}");
                }
            },
            _ = press => unreachable!(),
        };
        let v = violations(&e, &p, name, &o);
        if !v.is_empty() && trace {
            eprintln!("{}", e.mock.with_timeline(|t| t.render(0)));
        }
        if !v.is_empty() {
            problems.push(format!(
                "seed {seed} ({name}, {replicas} replicas, colours {colours}): {o:?}\n  {}",
                v.join("\n  ")
            ));
        }
        if e.journal.holder(&e.service).is_some() {
            problems.push(format!("seed {seed}: lock left held after {o:?}"));
        }
        let kept = e.journal.record(&e.service).is_some();
        let should_keep = matches!(
            o,
            Outcome::Paused(_)
                | Outcome::Interrupted(false)
                | Outcome::RollbackFailed(_)
                | Outcome::Failed(_)
        );
        if kept != should_keep {
            problems.push(format!("seed {seed}: journal kept {kept} after {o:?}"));
        }
    }
    assert!(
        problems.is_empty(),
        "{} of {seeds}:\n{}",
        problems.len(),
        problems.join("\n")
    );
}
