//! Canary: traffic stepped to the new revision, judged at every step.

use crate::bluegreen::{
    colour_at_rest, launch_set, note_existed, only, prepare_colour, revert, stop_colour,
    stop_to_outcome, Stop,
};
use crate::ops::{service_target, target_of, Ops, Res, FINISHED_ROLLBACK};
use async_trait::async_trait;
use rollout_core::journal::Phase;
use rollout_core::router::DrainTicket;
use rollout_core::strategy::{CanaryStep, CancelLevel, Hold, TrafficLayout, Verdict};
use rollout_core::{
    Event, Instance, InstanceId, Outcome, Plan, RolloutContext, Route, RouteChange, ServiceRef,
    Strategy,
};
use rollout_core::{StrategyKind, Word};
use serde_json::json;
use std::time::Duration;
use tokio::time::Instant;

/// The weight of each old instance while a canary runs in the single
/// layout; new instances get a multiple of it, so that the share of
/// requests is right to about one part in this many.
pub const OLD_WEIGHT: u32 = 20;

/// Steps traffic to the new revision (by default 10, 25, 50, 75, 100 %),
/// holding at each step and asking the [`Analysis`](rollout_core::Analysis)
/// during the hold.
///
/// - Single layout: at `p` % the service runs `ceil(p × replicas / 100)`
///   new instances beside all the old ones, weighted so that they get `p` %
///   of requests (nginx weights are integers of at least 1: the old
///   instances weigh [`OLD_WEIGHT`] each). At 100 % the old ones are taken
///   out, drained and removed, and the service is routed by name again.
/// - Two-colour layout: the whole new colour is launched first; the steps
///   weight the two colour names against each other; at 100 % the other
///   colour leaves the upstream (and is stopped with `stop_other`).
///
/// A hold of [`Hold::UntilPromoted`] pauses the rollout (exit 4); the next
/// run promotes that step and goes on from the journal. A `Fail` verdict, a
/// failed new instance, or Ctrl-C returns all traffic to the old set and
/// removes the canary (exit 3, or 130 for Ctrl-C). An analysis still
/// inconclusive at the end of a hold pauses the rollout rather than guess.
#[derive(Debug, Clone, Copy, Default)]
pub struct Canary;

#[async_trait]
impl Strategy for Canary {
    fn name(&self) -> &str {
        StrategyKind::Canary.as_str()
    }

    async fn run(&self, ctx: &RolloutContext, plan: &Plan) -> Outcome {
        if let Some(refused) = crate::ops::refuse_without_traffic(ctx, StrategyKind::Canary) {
            return refused;
        }
        let ops = match Ops::begin(ctx, plan, StrategyKind::Canary).await {
            Ok(o) => o,
            Err(outcome) => return outcome,
        };
        let outcome = if ops.finishing_rollback() {
            revert(&ops, FINISHED_ROLLBACK.into(), false).await
        } else {
            match body(&ops).await {
                Ok(o) => o,
                Err(e) => Outcome::Failed(e.to_string()),
            }
        };
        ops.end(outcome).await
    }
}

/// The steps, ending at 100 %.
fn steps(plan: &Plan) -> Vec<CanaryStep> {
    let mut steps: Vec<CanaryStep> = plan
        .canary
        .steps
        .iter()
        .map(|s| CanaryStep {
            percent: s.percent.clamp(1, 100),
            hold: s.hold,
        })
        .collect();
    if steps.last().is_none_or(|s| s.percent < 100) {
        steps.push(CanaryStep {
            percent: 100,
            hold: Hold::For(Duration::ZERO),
        });
    }
    steps
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// The key of the canary's journal state that `docker rollout promote
/// --full` sets on a paused canary (`"full"`): the next run goes straight
/// to the last step.
pub const PROMOTE: &str = "promote";

/// How a hold ended.
enum HoldEnd {
    Pass,
    /// The operator promoted the step (`full`: to the last step).
    Promoted {
        full: bool,
    },
    Inconclusive(String),
    Stop(Stop),
}

async fn body(ops: &Ops<'_>) -> Res<Outcome> {
    let plan = ops.plan;
    let t = plan.target.id.as_str();
    let colours = match &plan.layout {
        TrafficLayout::Single => None,
        TrafficLayout::Colours { other, stop_other } => Some((other, *stop_other)),
    };
    let view = ops.view(&plan.service).await?;
    if !ops.resumed {
        let at_rest = match colours {
            None => view.at_rest(&plan.service.service, t, plan.replicas),
            Some((other, stop_other)) => {
                let blue = ops.view(other).await?;
                let blue_running = blue.running().next().is_some();
                colour_at_rest(ops, &view, blue_running, stop_other)
            }
        };
        if at_rest {
            return Ok(Outcome::NoChange);
        }
    }
    ops.started(plan.replicas);
    let steps = steps(plan);
    let mut start = ops
        .state("step")
        .and_then(|v| v.as_u64())
        .map_or(0, |v| v as usize);
    if ops.resumed_phase == Some(Phase::Paused) {
        // Running again after a pause promotes the step it paused at;
        // `docker rollout promote --full` (the journal's `promote`) the
        // whole way, to the last step.
        start += 1;
    }
    // Promoted in full (`promote --full` of a paused canary, or of a
    // running one before a crash): the last step, and no hold (the
    // operator decided).
    let mut full = ops
        .state(PROMOTE)
        .and_then(|v| v.as_str().map(String::from))
        == Some("full".into());
    if full {
        start = start.max(steps.len() - 1);
    }
    match colours {
        None => {
            ops.normalize(&view, Some(t), OLD_WEIGHT, false).await?;
            ops.remove_exited(&view).await?;
            let view = ops.view(&plan.service).await?;
            let leftovers: Vec<Instance> = view
                .running()
                .filter(|i| i.revision == t && !i.is_ready())
                .cloned()
                .collect();
            ops.unroute_and_retire(&leftovers, false).await?;
            if !view.running().any(|i| i.revision != t && i.is_ready()) {
                // Nothing old to compare with: straight to 100 %.
                start = start.max(steps.len() - 1);
            }
        }
        Some((other, _)) => {
            note_existed(ops, &view).await?;
            let live = view.service_routed(&plan.service.service)
                || view
                    .instances
                    .iter()
                    .any(|i| view.direct().contains_key(&i.id));
            let stale = view.running().any(|i| i.revision != t);
            if live && stale {
                return Ok(Outcome::Failed(format!(
                    "{} is live and runs another revision: the two-colour layout updates the idle colour\nhint: roll out {} first, then {}",
                    plan.service, other.service, plan.service.service
                )));
            }
            if !live || stale {
                match prepare_colour(ops, &view).await? {
                    Ok(_) => {}
                    Err(outcome) => return Ok(outcome),
                }
            }
            // The last step names the new colour alone, at rest: it is
            // judged on what it answers all the same.
            ops.measure().await?;
        }
    }
    let mut last_ticket = None;
    // Promotions of the running canary (`docker rollout promote`) acted on.
    let mut acted = ops.ctx.steer.now().promotions;
    let mut s = start;
    while let Some(step) = steps.get(s) {
        ops.set_phase(Phase::Updating).await?;
        ops.set_state("step", json!(s)).await?;
        let p = step.percent;
        let new = match colours {
            None => match step_single(ops, s, p).await? {
                Ok((new, ticket)) => {
                    last_ticket = ticket;
                    new
                }
                Err(outcome) => return Ok(outcome),
            },
            Some((other, _)) => match step_colours(ops, other, s, p).await? {
                Ok((new, ticket)) => {
                    last_ticket = ticket;
                    new
                }
                Err(outcome) => return Ok(outcome),
            },
        };
        ops.ctx
            .events
            .send(Event::WeightsChanged { new_percent: p });
        let end = match step.hold {
            _ if full => HoldEnd::Pass,
            Hold::For(d) => hold_for(ops, &new, d, s + 1, p, &mut acted).await?,
            // Promoted while it ran toward this step: on without pausing.
            Hold::UntilPromoted if ops.ctx.steer.now().promotion_since(acted).is_some() => {
                promoted(ops, s + 1, p, &mut acted).await?
            }
            Hold::UntilPromoted => {
                if let Some(a) = &ops.ctx.analysis {
                    let v = a.judge(plan, s + 1, p).await;
                    ops.ctx.events.send(Event::Analysis {
                        step: s + 1,
                        verdict: v.clone(),
                    });
                    remember_verdict(ops, s + 1, p, &v).await?;
                    if let Verdict::Fail(r) = v {
                        return Ok(
                            revert(ops, format!("analysis failed at {p}%: {r}"), false).await
                        );
                    }
                }
                ops.ctx.events.send(Event::StepPaused {
                    step: s + 1,
                    for_secs: None,
                });
                return Ok(Outcome::Paused(format!(
                    "canary step {} holds at {p}% until promoted\nhint: run the rollout again to promote it",
                    s + 1
                )));
            }
        };
        match end {
            HoldEnd::Pass => {}
            HoldEnd::Promoted { full: true } => {
                // Straight to the last step, holding at none between; kept
                // in the journal (the verb waits for it, and a run after a
                // crash goes on in full).
                full = true;
                ops.set_state(PROMOTE, json!("full")).await?;
                s = (s + 1).max(steps.len() - 1);
                continue;
            }
            HoldEnd::Promoted { full: false } => {}
            HoldEnd::Inconclusive(r) => {
                return Ok(Outcome::Paused(format!(
                    "canary step {} at {p}%: the analysis is still inconclusive ({r})\nhint: run the rollout again to promote it, or roll back",
                    s + 1
                )))
            }
            HoldEnd::Stop(stop) => return Ok(stop_to_outcome(ops, stop).await),
        }
        s += 1;
    }
    match colours {
        None => {
            let view = ops.view(&plan.service).await?;
            let (old, ticket) = view.old_set(t, last_ticket);
            ops.drain(&ticket).await?;
            ops.retire_old(&old).await?;
        }
        Some((other, stop_other)) => {
            if stop_other {
                stop_colour(ops, other, last_ticket).await?;
            }
        }
    }
    Ok(Outcome::Completed)
}

/// Single layout: enough new instances for `p` %, weighted.
async fn step_single(
    ops: &Ops<'_>,
    s: usize,
    p: u32,
) -> Res<Result<(Vec<Instance>, Option<DrainTicket>), Outcome>> {
    let plan = ops.plan;
    let t = plan.target.id.as_str();
    let r = plan.replicas.max(1);
    let want = if p >= 100 {
        r
    } else {
        (((p as usize) * r).div_ceil(100)).clamp(1, r)
    };
    let view = ops.view(&plan.service).await?;
    if let Some(outcome) = failed_between_steps(ops, &view, p).await {
        return Ok(Err(outcome));
    }
    let ready: Vec<Instance> = view
        .running()
        .filter(|i| i.revision == t && i.is_ready())
        .cloned()
        .collect();
    ops.ctx.events.send(Event::BatchStarted {
        index: s + 1,
        size: want.saturating_sub(ready.len()),
    });
    let new = match launch_set(ops, ready, want).await? {
        Ok(new) => new,
        Err(Some(reason)) => return Ok(Err(revert(ops, reason, false).await)),
        Err(None) => {
            return Ok(Err(stop_to_outcome(
                ops,
                Stop::Cancelled(ops.ctx.cancel.level()),
            )
            .await))
        }
    };
    let direct = view.direct();
    let old_routed: Vec<&Instance> = view
        .running()
        .filter(|i| i.revision != t && direct.contains_key(&i.id))
        .collect();
    let mut change = RouteChange::default();
    let w_new = if p >= 100 || old_routed.is_empty() {
        for i in &old_routed {
            change.remove.push(target_of(i));
        }
        1
    } else {
        let num = u64::from(OLD_WEIGHT) * u64::from(p) * old_routed.len() as u64;
        let den = u64::from(100 - p) * new.len() as u64;
        ((num + den / 2) / den).clamp(1, u64::from(u32::MAX / 2)) as u32
    };
    for i in &new {
        if direct.get(&i.id) != Some(&w_new) {
            change.set.push(Route {
                target: target_of(i),
                weight: w_new,
            });
        }
    }
    let ticket = ops.route(change).await?;
    Ok(Ok((new, ticket)))
}

/// Two-colour layout: weight the colour names against each other.
async fn step_colours(
    ops: &Ops<'_>,
    other: &ServiceRef,
    s: usize,
    p: u32,
) -> Res<Result<(Vec<Instance>, Option<DrainTicket>), Outcome>> {
    let plan = ops.plan;
    ops.ctx.events.send(Event::BatchStarted {
        index: s + 1,
        size: 0,
    });
    let green = ops.view(&plan.service).await?;
    if let Some(outcome) = failed_between_steps(ops, &green, p).await {
        return Ok(Err(outcome));
    }
    let new: Vec<Instance> = green.running().cloned().collect();
    let gname = &plan.service.service;
    let change = if p >= 100 {
        only(&green.routes, gname)
    } else {
        let blue = ops.view(other).await?;
        let nb = blue.running().filter(|i| i.is_ready()).count().max(1) as u64;
        let ng = new.len().max(1) as u64;
        // Each name's weight applies to every instance it resolves to.
        let (wg, wb) = (u64::from(p) * nb, u64::from(100 - p) * ng);
        let g = gcd(wg, wb).max(1);
        let (wg, wb) = ((wg / g) as u32, (wb / g) as u32);
        let mut change = RouteChange::default();
        for (name, w) in [(gname.as_str(), wg), (other.service.as_str(), wb)] {
            let t = service_target(name);
            if !green.routes.iter().any(|r| r.target == t && r.weight == w) {
                change.set.push(Route {
                    target: t,
                    weight: w,
                });
            }
        }
        change
    };
    let ticket = ops.route(change).await?;
    Ok(Ok((new, ticket)))
}

/// A new instance that failed since the last look (between two holds, where
/// no watch runs) fails the canary: it is counted, and traffic goes back.
async fn failed_between_steps(ops: &Ops<'_>, view: &crate::ops::View, p: u32) -> Option<Outcome> {
    let t = &ops.plan.target.id;
    let bad = view
        .instances
        .iter()
        .find(|i| i.revision == *t && !i.is_ready())?;
    let failure = match (bad.state, bad.health) {
        (rollout_core::InstanceState::Running, _) => {
            rollout_core::backend::Failure::Unhealthy("health check failing".into())
        }
        _ => rollout_core::backend::Failure::Exited("exited".into()),
    };
    ops.failure_counted(&bad.id, failure.clone(), 1, ops.plan.replicas)
        .await;
    Some(
        revert(
            ops,
            format!("{} failed before the {p}% step: {failure}", bad.host),
            false,
        )
        .await,
    )
}

/// How often a holding step asks the analysis.
pub const JUDGE_EVERY: Duration = Duration::from_secs(1);

/// A hold with no analysis and the operator's pause on waits this long at
/// most between looks at the failure watch.
const HELD_LOOK: Duration = Duration::from_secs(3600);

/// Holds a step for `d`, watching the new instances and asking the
/// analysis every [`JUDGE_EVERY`]: a bad canary is rolled back within about
/// that of its verdict being possible, whatever the hold.
///
/// The operator steers it meanwhile ([`Steer`](rollout_core::Steer)): a
/// pause stops the hold's clock (the watch and the analysis go on, a
/// failing verdict still rolls back) until resumed; a promotion past
/// `acted` ends the hold at once, after one more verdict (a failing one
/// rolls back before the step changes).
async fn hold_for(
    ops: &Ops<'_>,
    new: &[Instance],
    d: Duration,
    step: usize,
    p: u32,
    acted: &mut u64,
) -> Res<HoldEnd> {
    ops.ctx.events.send(Event::StepPaused {
        step,
        for_secs: Some(d.as_secs_f64()),
    });
    let interval = if ops.ctx.analysis.is_some() {
        JUDGE_EVERY
    } else {
        d
    };
    let ids: Vec<InstanceId> = new.iter().map(|i| i.id.clone()).collect();
    let at = format!("canary step {step} at {p}%");
    let mut last = HoldEnd::Pass;
    // The hold's clock: what is left of it, stopped while held.
    let mut left = d;
    let mut held = false;
    let mut judged = false;
    let end: Res<HoldEnd> = async {
        loop {
            let steering = ops.ctx.steer.now();
            if steering.promotion_since(*acted).is_some() {
                if held {
                    // A promotion lifts the pause.
                    held = false;
                    ops.hold_ends().await?;
                }
                return promoted(ops, step, p, acted).await;
            }
            if steering.paused && !held {
                held = true;
                ops.hold_begins(&at).await?;
            } else if !steering.paused && held {
                held = false;
                ops.hold_ends().await?;
            }
            if !held && left.is_zero() {
                if !judged {
                    if let Some(stop) = judge(ops, step, p, &mut last).await? {
                        return Ok(stop);
                    }
                }
                return Ok(last);
            }
            let wait = match (held, ops.ctx.analysis.is_some()) {
                (true, true) => interval,
                (true, false) => HELD_LOOK,
                (false, _) => left.min(interval),
            };
            let began = Instant::now();
            let timed_out = tokio::select! {
                biased;
                r = ops.ctx.backend.watch_failures(&ids, wait) => {
                    if let Some((id, f)) = r? {
                        ops.failure_counted(&id, f.clone(), 1, new.len()).await;
                        return Ok(HoldEnd::Stop(Stop::Failed(format!(
                            "{id} failed at the {p}% step: {f}"
                        ))));
                    }
                    true
                }
                _ = ops.ctx.cancel.reached(CancelLevel::Abort) => {
                    return Ok(HoldEnd::Stop(Stop::Cancelled(ops.ctx.cancel.level())));
                }
                _ = ops.ctx.steer.changed_from(steering) => false,
            };
            if !held {
                left = left.saturating_sub(began.elapsed());
            }
            if timed_out {
                judged = true;
                if let Some(stop) = judge(ops, step, p, &mut last).await? {
                    return Ok(stop);
                }
            }
        }
    }
    .await;
    if held {
        // Ended while held (a failure, an abort): the hold is over.
        ops.hold_ends().await?;
    }
    end
}

/// Asks the analysis (if any) about the step now: `Some` when it failed
/// (the canary stops), else `last` is the verdict.
async fn judge(ops: &Ops<'_>, step: usize, p: u32, last: &mut HoldEnd) -> Res<Option<HoldEnd>> {
    let Some(a) = &ops.ctx.analysis else {
        return Ok(None);
    };
    let v = a.judge(ops.plan, step, p).await;
    ops.ctx.events.send(Event::Analysis {
        step,
        verdict: v.clone(),
    });
    remember_verdict(ops, step, p, &v).await?;
    *last = match v {
        Verdict::Fail(r) => {
            return Ok(Some(HoldEnd::Stop(Stop::Failed(format!(
                "analysis failed at {p}%: {r}"
            )))))
        }
        Verdict::Pass => HoldEnd::Pass,
        Verdict::Inconclusive(r) => HoldEnd::Inconclusive(r),
    };
    Ok(None)
}

/// The operator promoted the running canary at `step`: one more verdict
/// (a failing one stops it before the step changes; an inconclusive one
/// does not hold it, the operator decided), then on.
async fn promoted(ops: &Ops<'_>, step: usize, p: u32, acted: &mut u64) -> Res<HoldEnd> {
    let steering = ops.ctx.steer.now();
    let full = steering.promotion_since(*acted).unwrap_or(false);
    *acted = steering.promotions;
    let mut last = HoldEnd::Pass;
    if let Some(stop) = judge(ops, step, p, &mut last).await? {
        return Ok(stop);
    }
    ops.ctx.events.send(Event::Promoted { step, full });
    Ok(HoldEnd::Promoted { full })
}

/// Keeps the last verdict in the journal for `docker rollout status`: saved
/// when the step or the kind of verdict changes, not at every judgement.
pub(crate) async fn remember_verdict(ops: &Ops<'_>, step: usize, p: u32, v: &Verdict) -> Res<()> {
    let value = json!({ "step": step, "percent": p, "judgement": v });
    ops.remember("verdict", value, |kept, new| {
        kept["step"] == new["step"] && kept["judgement"]["verdict"] == new["judgement"]["verdict"]
    })
    .await
}
