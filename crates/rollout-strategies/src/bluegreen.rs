//! Blue-green: a full new set beside the old one, one switch.

use crate::canary::{remember_verdict, JUDGE_EVERY};
use crate::held::Held;
use crate::ops::{service_target, target_of, Gate, Opening, Ops, Res, FINISHED_ROLLBACK};
use async_trait::async_trait;
use rollout_core::backend::Failure;
use rollout_core::journal::Phase;
use rollout_core::router::DrainTicket;
use rollout_core::strategy::{CancelLevel, TrafficLayout, Verdict};
use rollout_core::{
    Event, Instance, InstanceId, InstanceState, Outcome, Plan, RolloutContext, Route, RouteChange,
    ServiceRef, Strategy,
};
use rollout_core::{StrategyKind, Word};
use serde_json::json;
use std::time::Duration;
use tokio::time::Instant;

/// Launches the whole new set beside the old one, gates it on health (and
/// on the optional verification request to each new instance), switches all
/// traffic in one change, watches the new set for `update.monitor` while the
/// old set drains (the drain is reported as soon as it ends), keeps the old
/// set for `blue_green.keep_old_for` so that a failure switches back at
/// once, then removes it.
///
/// Any failure of a new instance before or during the monitor window sends
/// traffic back to the old set and removes the new one (exit 3):
/// `failure_action` and `max_failure_ratio` pace rolling updates, and a
/// blue-green switch has nothing to pace.
///
/// With an [`Analysis`](rollout_core::Analysis) in the context, the monitor
/// window also asks it every [`JUDGE_EVERY`] (step 1, at 100 %): a `Fail`
/// switches back as a failure does, with the verdict's numbers in the
/// message (exit 3); a window still inconclusive at its end pauses the
/// rollout (exit 4), the old set kept, as a canary's hold does. The router
/// is asked to keep measuring the traffic from before the switch to the end
/// ([`TrafficRouter::keep_measuring`](rollout_core::TrafficRouter::keep_measuring)):
/// the switch to the other colour is at rest at once.
///
/// In the single layout the service runs both sets side by side and is
/// routed by name again at the end (`keep_old_for: None` means no wait).
/// In the two-colour layout ([`TrafficLayout::Colours`]) the plan's service
/// is the colour made live: its instances are launched or replaced while it
/// is idle, the upstream moves from the other colour's name to this one's,
/// and the other colour keeps running for an instant switch-back unless
/// `stop_other` is set.
#[derive(Debug, Clone, Copy, Default)]
pub struct BlueGreen;

#[async_trait]
impl Strategy for BlueGreen {
    fn name(&self) -> &str {
        StrategyKind::BlueGreen.as_str()
    }

    async fn run(&self, ctx: &RolloutContext, plan: &Plan) -> Outcome {
        if let Some(refused) = crate::ops::refuse_without_traffic(ctx, StrategyKind::BlueGreen) {
            return refused;
        }
        if plan.blue_green.verify.is_some() && ctx.verifier.is_none() {
            let outcome = Outcome::Failed(
                "blue_green.verify is set but no verifier was given\nhint: pass a Verifier in the rollout context".into(),
            );
            ctx.events.send(Event::Finished {
                outcome: outcome.clone(),
            });
            return outcome;
        }
        let ops = match Ops::begin(ctx, plan, StrategyKind::BlueGreen).await {
            Ok(o) => o,
            Err(outcome) => return outcome,
        };
        let outcome = match &plan.layout {
            TrafficLayout::Single => single(&ops).await,
            TrafficLayout::Colours { other, stop_other } => colours(&ops, other, *stop_other).await,
        };
        ops.end(outcome).await
    }
}

/// Launches up to `replicas` ready instances of the target (counting those
/// already there), gated on health. `Err(Some(reason))`: a failure, already
/// reported; `Err(None)`: cancelled.
pub(crate) async fn launch_set(
    ops: &Ops<'_>,
    ready: Vec<Instance>,
    want: usize,
) -> Res<Result<Vec<Instance>, Option<String>>> {
    let plan = ops.plan;
    let mut new = ready;
    let need = want.saturating_sub(new.len());
    let mut launched = Vec::with_capacity(need);
    let mut first_failure: Option<(InstanceId, Failure)> = None;
    for _ in 0..need {
        match ops.launch(&plan.service, &plan.target).await? {
            Ok(i) => launched.push(i),
            Err(f) => {
                first_failure = Some((InstanceId(format!("{}:launch", plan.service)), f));
                break;
            }
        }
    }
    let gates =
        futures::future::join_all(launched.iter().map(|i| ops.gate(i, CancelLevel::Abort))).await;
    let mut failures = 0;
    let mut cancelled = false;
    if let Some((id, f)) = &first_failure {
        failures += 1;
        ops.failure_counted(id, f.clone(), failures, want).await;
    }
    for (i, g) in launched.into_iter().zip(gates) {
        match g? {
            Gate::Healthy => new.push(i),
            Gate::Failed(f) => {
                failures += 1;
                ops.failure_counted(&i.id, f.clone(), failures, want).await;
                first_failure.get_or_insert((i.id.clone(), f));
            }
            Gate::Cancelled => cancelled = true,
        }
    }
    if let Some((id, f)) = first_failure {
        return Ok(Err(Some(format!(
            "{failures} of {want} new instances failed; first {id}: {f}"
        ))));
    }
    if cancelled {
        return Ok(Err(None));
    }
    Ok(Ok(new))
}

/// Sends the verification request to each new instance, when configured.
pub(crate) async fn verify_all(ops: &Ops<'_>, new: &[Instance]) -> Option<String> {
    let (Some(check), Some(verifier)) = (&ops.plan.blue_green.verify, &ops.ctx.verifier) else {
        return None;
    };
    for i in new {
        if let Err(why) = verifier.verify(i, check).await {
            return Some(format!("verification of {} failed: {why}", i.host));
        }
    }
    None
}

/// Waits `d` unless cancelled; `Some(level)` when cancelled.
pub(crate) async fn hold(ops: &Ops<'_>, d: Duration) -> Option<CancelLevel> {
    if d.is_zero() {
        return None;
    }
    tokio::select! {
            biased;
        _ = tokio::time::sleep(d) => None,
        _ = ops.ctx.cancel.reached(CancelLevel::Abort) => Some(ops.ctx.cancel.level()),
    }
}

/// How a watched window ended, when nothing stopped it.
pub(crate) enum Watched {
    /// No failure, and the last verdict (if any analysis) passed.
    Passed,
    /// The analysis was still inconclusive at the end of the window: why.
    Inconclusive(String),
}

/// Watches `new` for `within` after the switch, and, when an analysis
/// judges the rollout, asks it every [`JUDGE_EVERY`] as a canary step's
/// hold does: a failing verdict undoes the switch within about that of the
/// verdict being possible. `Ok(Err(..))` on a failure, a failing verdict or
/// a cancel.
pub(crate) async fn watch(
    ops: &Ops<'_>,
    new: &[Instance],
    within: Duration,
) -> Res<Result<Watched, Stop>> {
    if within.is_zero() || new.is_empty() {
        return Ok(Ok(Watched::Passed));
    }
    let plan = ops.plan;
    let ids: Vec<InstanceId> = new.iter().map(|i| i.id.clone()).collect();
    let deadline = Instant::now() + within;
    let every = match ops.ctx.analysis {
        Some(_) => JUDGE_EVERY,
        None => within,
    };
    let mut last = Watched::Passed;
    loop {
        let now = Instant::now();
        if deadline > now {
            let slice = (deadline - now).min(every);
            tokio::select! {
                biased;
                r = ops.ctx.backend.watch_failures(&ids, slice) => {
                    if let Some((id, f)) = r? {
                        ops.failure_counted(&id, f.clone(), 1, new.len()).await;
                        return Ok(Err(Stop::Failed(format!(
                            "{id} failed during the monitor window: {f}"
                        ))));
                    }
                }
                _ = ops.ctx.cancel.reached(CancelLevel::Abort) => {
                    return Ok(Err(Stop::Cancelled(ops.ctx.cancel.level())));
                }
            }
        }
        if let Some(a) = &ops.ctx.analysis {
            // The switch is the one step, at 100 %.
            let v = a.judge(plan, 1, 100).await;
            ops.ctx.events.send(Event::Analysis {
                step: 1,
                verdict: v.clone(),
            });
            remember_verdict(ops, 1, 100, &v).await?;
            last = match v {
                Verdict::Fail(r) => {
                    return Ok(Err(Stop::Failed(format!(
                        "analysis failed after the switch: {r}"
                    ))))
                }
                Verdict::Pass => Watched::Passed,
                Verdict::Inconclusive(r) => Watched::Inconclusive(r),
            };
        }
        if Instant::now() >= deadline {
            return Ok(Ok(last));
        }
    }
}

/// Watches `new` for `within` while what the switch took out drains, and
/// reports the drain (the `Drained` event, with the router's report) as
/// soon as it ends, as a rolling slot does; the watch goes on for the rest
/// of its window. `Ok(Ok(..))` when the window passed and the drain
/// ended; a failure, a failing verdict or a cancel stops both (the switch
/// is undone then).
pub(crate) async fn watch_draining(
    ops: &Ops<'_>,
    new: &[Instance],
    within: Duration,
    ticket: &DrainTicket,
) -> Res<Result<Watched, Stop>> {
    let drain = ops.drain(ticket);
    let watching = watch(ops, new, within);
    tokio::pin!(drain, watching);
    let mut drained = false;
    loop {
        tokio::select! {
            biased;
            w = &mut watching => {
                return match w? {
                    Ok(watched) => {
                        if !drained {
                            drain.await?;
                        }
                        Ok(Ok(watched))
                    }
                    Err(stop) => Ok(Err(stop)),
                };
            }
            d = &mut drain, if !drained => {
                d?;
                drained = true;
            }
        }
    }
}

/// The outcome of a window the analysis could not judge to its end: the
/// rollout pauses (exit 4) as a canary step does, the old set kept for an
/// instant switch-back; the next run watches a window again.
pub(crate) fn inconclusive(ops: &Ops<'_>, why: &str) -> Outcome {
    Outcome::Paused(format!(
        "{} is live on {}, and the analysis after the switch is still inconclusive at the end of the monitor window ({why})\nhint: run the rollout again to judge it for another window, or `docker rollout abort {}` to switch back",
        ops.plan.service,
        ops.plan.target,
        ops.plan.service.service
    ))
}

/// Holds before the switch while the operator's pause is on (`docker
/// rollout pause`), watching the new set; `Err` when it must stop (a new
/// instance failed, or the operator's abort).
async fn hold_before_switch(ops: &Ops<'_>, new: &[Instance]) -> Res<Result<(), Stop>> {
    let ids: Vec<InstanceId> = new.iter().map(|i| i.id.clone()).collect();
    let at = "before the switch";
    Ok(
        match ops
            .hold_while_paused(at, &ids, CancelLevel::Abort, || false)
            .await?
        {
            Held::Go | Held::Stopped => Ok(()),
            Held::Cancelled(level) => Err(Stop::Cancelled(level)),
            Held::Failed(id, f) => {
                ops.failure_counted(&id, f.clone(), 1, new.len()).await;
                Err(Stop::Failed(format!("{id} failed before the switch: {f}")))
            }
        },
    )
}

/// Why a switch is being undone.
pub(crate) enum Stop {
    Failed(String),
    Cancelled(CancelLevel),
}

/// Turns a stop into the outcome, reverting when that is what it asks.
pub(crate) async fn stop_to_outcome(ops: &Ops<'_>, stop: Stop) -> Outcome {
    match stop {
        Stop::Failed(reason) => revert(ops, reason, false).await,
        Stop::Cancelled(CancelLevel::Halt) => Outcome::Interrupted(false),
        Stop::Cancelled(_) => revert(ops, "interrupted".into(), true).await,
    }
}

/// Sends all traffic back to the old set and removes the new one, with the
/// same protocol (route, drain, stop, remove).
pub(crate) async fn revert(ops: &Ops<'_>, reason: String, interrupted: bool) -> Outcome {
    ops.stop_measuring();
    let r = match &ops.plan.layout {
        TrafficLayout::Single => revert_single(ops, &reason).await,
        TrafficLayout::Colours { other, .. } => revert_colours(ops, other, &reason).await,
    };
    match r {
        Ok(Some(failed)) => Outcome::RollbackFailed(format!("{reason}; {failed}")),
        Ok(None) if interrupted => Outcome::Interrupted(true),
        Ok(None) => Outcome::RolledBack(reason),
        Err(e) => Outcome::RollbackFailed(format!("{reason}; then the rollback failed: {e}")),
    }
}

async fn revert_single(ops: &Ops<'_>, reason: &str) -> Res<Option<String>> {
    let plan = ops.plan;
    ops.set_phase(Phase::RollingBack).await?;
    ops.ctx.events.send(Event::RollbackStarted {
        reason: reason.to_string(),
    });
    let view = ops.view(&plan.service).await?;
    let t = &plan.target.id;
    let direct = view.direct();
    let old_ready: Vec<&Instance> = view
        .running()
        .filter(|i| i.revision != *t && i.is_ready())
        .collect();
    if old_ready.is_empty() && ops.from.is_some() {
        return Ok(Some(
            "no ready instance of the old revision is left to switch back to".into(),
        ));
    }
    let mut change = RouteChange::default();
    let name = &plan.service.service;
    let by_name = view.service_routed(name);
    for i in &old_ready {
        if !direct.contains_key(&i.id) {
            change.set.push(Route {
                target: target_of(i),
                weight: 1,
            });
        }
    }
    let new: Vec<Instance> = view
        .instances
        .iter()
        .filter(|i| i.revision == *t)
        .cloned()
        .collect();
    for i in &new {
        if direct.contains_key(&i.id) {
            change.remove.push(target_of(i));
        }
    }
    if by_name {
        change.remove.push(service_target(name));
    }
    let ticket = ops.route(change).await?;
    let ticket =
        ticket.unwrap_or_else(|| DrainTicket::unknown(new.iter().map(target_of).collect()));
    ops.drain(&ticket).await?;
    ops.retire(&new).await?;
    if let Some(from) = &ops.from {
        ops.settle(&from.id).await?;
    }
    Ok(None)
}

async fn revert_colours(ops: &Ops<'_>, other: &ServiceRef, reason: &str) -> Res<Option<String>> {
    let plan = ops.plan;
    ops.set_phase(Phase::RollingBack).await?;
    ops.ctx.events.send(Event::RollbackStarted {
        reason: reason.to_string(),
    });
    let blue = ops.view(other).await?;
    if !blue.running().any(|i| i.is_ready()) {
        return Ok(Some(format!(
            "{other} has no ready instance to switch back to"
        )));
    }
    let mut change = RouteChange::default();
    let bname = service_target(&other.service);
    if !blue
        .routes
        .iter()
        .any(|r| r.target == bname && r.weight == 1)
    {
        change.set.push(Route {
            target: bname.clone(),
            weight: 1,
        });
    }
    for r in &blue.routes {
        if r.target != bname {
            change.remove.push(r.target.clone());
        }
    }
    let ticket = ops.route(change).await?;
    let green = ops.view(&plan.service).await?;
    // Only what this rollout launched goes: instances the colour ran before
    // it stay as they were (idle now), and what exited goes in any case.
    let existed = existed(ops);
    let new: Vec<Instance> = green
        .instances
        .iter()
        .filter(|i| {
            i.state != InstanceState::Running
                || (i.revision == plan.target.id && !existed.contains(&i.id.0))
        })
        .cloned()
        .collect();
    let ticket =
        ticket.unwrap_or_else(|| DrainTicket::unknown(vec![service_target(&plan.service.service)]));
    ops.drain(&ticket).await?;
    ops.retire(&new).await?;
    Ok(None)
}

async fn single(ops: &Ops<'_>) -> Outcome {
    match ops.open_single().await {
        Opening::FinishRollback => revert(ops, FINISHED_ROLLBACK.into(), false).await,
        Opening::End(outcome) => outcome,
        Opening::Update => match single_inner(ops).await {
            Ok(o) => o,
            Err(e) => Outcome::Failed(e.to_string()),
        },
    }
}

/// A run that goes on from a pause (the analysis was inconclusive at the
/// end of the last window) is updating again.
async fn resume_paused(ops: &Ops<'_>) -> Res<()> {
    if ops.resumed_phase == Some(Phase::Paused) {
        ops.set_phase(Phase::Updating).await?;
    }
    Ok(())
}

/// Whether traffic already moved to the target (a run resumed after the
/// switch): some target instance is routed and nothing else is.
fn switched(view: &crate::ops::View, target: &str) -> bool {
    let mut new_routed = false;
    for i in view.running() {
        if view.is_routed(i) {
            if i.revision == target {
                new_routed = true;
            } else {
                return false;
            }
        }
    }
    new_routed
}

async fn single_inner(ops: &Ops<'_>) -> Res<Outcome> {
    let plan = ops.plan;
    let t = plan.target.id.as_str();
    resume_paused(ops).await?;
    ops.measure().await?;
    let view = ops.view(&plan.service).await?;
    let mut ticket = None;
    if !switched(&view, t) {
        ops.normalize(&view, Some(t), 1, false).await?;
        ops.remove_exited(&view).await?;
        let view = ops.view(&plan.service).await?;
        let (ready, leftovers): (Vec<Instance>, Vec<Instance>) = view
            .running()
            .filter(|i| i.revision == t)
            .cloned()
            .partition(|i| i.is_ready());
        ops.unroute_and_retire(&leftovers, false).await?;
        let new = match launch_set(ops, ready, plan.replicas).await? {
            Ok(new) => new,
            Err(Some(reason)) => return Ok(revert(ops, reason, false).await),
            Err(None) => {
                return Ok(stop_to_outcome(ops, Stop::Cancelled(ops.ctx.cancel.level())).await)
            }
        };
        if let Some(reason) = verify_all(ops, &new).await {
            return Ok(revert(ops, reason, false).await);
        }
        if let Err(stop) = hold_before_switch(ops, &new).await? {
            return Ok(stop_to_outcome(ops, stop).await);
        }
        let direct = view.direct();
        let mut change = RouteChange::default();
        for i in &new {
            change.set.push(Route {
                target: target_of(i),
                weight: 1,
            });
        }
        for i in view.running() {
            if i.revision != t && direct.contains_key(&i.id) {
                change.remove.push(target_of(i));
            }
        }
        ticket = ops.route(change).await?;
        ops.ctx
            .events
            .send(Event::WeightsChanged { new_percent: 100 });
        ops.set_state("switched", json!(true)).await?;
    }
    let view = ops.view(&plan.service).await?;
    let new: Vec<Instance> = view
        .running()
        .filter(|i| i.revision == t)
        .cloned()
        .collect();
    // The old set drains while the new one is watched.
    let (old, ticket) = view.old_set(t, ticket);
    match watch_draining(ops, &new, plan.update.monitor, &ticket).await? {
        Ok(Watched::Passed) => {}
        Ok(Watched::Inconclusive(why)) => return Ok(inconclusive(ops, &why)),
        Err(stop) => return Ok(stop_to_outcome(ops, stop).await),
    }
    if let Some(level) = hold(ops, plan.blue_green.keep_old_for.unwrap_or_default()).await {
        return Ok(stop_to_outcome(ops, Stop::Cancelled(level)).await);
    }
    ops.retire_old(&old).await?;
    Ok(Outcome::Completed)
}

/// Whether the colour `green` is at rest on the target.
pub(crate) fn colour_at_rest(
    ops: &Ops<'_>,
    green: &crate::ops::View,
    blue_running: bool,
    stop_other: bool,
) -> bool {
    let plan = ops.plan;
    let gname = service_target(&plan.service.service);
    green.routes.len() == 1
        && green.routes[0].target == gname
        && green.instances.len() == plan.replicas
        && green
            .instances
            .iter()
            .all(|i| i.revision == plan.target.id && i.is_ready())
        && !(stop_other && blue_running)
}

async fn colours(ops: &Ops<'_>, other: &ServiceRef, stop_other: bool) -> Outcome {
    let plan = ops.plan;
    if ops.finishing_rollback() {
        return revert(ops, FINISHED_ROLLBACK.into(), false).await;
    }
    let r = async {
        let green = ops.view(&plan.service).await?;
        let blue = ops.view(other).await?;
        let blue_running = blue.running().next().is_some();
        if !ops.resumed && colour_at_rest(ops, &green, blue_running, stop_other) {
            return Ok(Outcome::NoChange);
        }
        ops.started(plan.replicas);
        colours_inner(ops, other, stop_other, green).await
    };
    match r.await {
        Ok(o) => o,
        Err(e) => Outcome::Failed(e.to_string()),
    }
}

/// The journal's key for the instances the colour made live ran before the
/// rollout launched anything.
const EXISTED: &str = "existed";

/// Notes, once per rollout and before anything is launched, which instances
/// the colour made live runs already, so that a rollback (in this run or a
/// later one, after a crash) removes only what the rollout launched.
pub(crate) async fn note_existed(ops: &Ops<'_>, green: &crate::ops::View) -> Res<()> {
    if ops.state(EXISTED).is_some() {
        return Ok(());
    }
    let ids: Vec<&str> = green.instances.iter().map(|i| i.id.0.as_str()).collect();
    ops.set_state(EXISTED, json!(ids)).await
}

/// The ids [`note_existed`] noted; empty when none were (a journal of an
/// earlier version: everything of the target is taken as launched).
fn existed(ops: &Ops<'_>) -> std::collections::HashSet<String> {
    ops.state(EXISTED)
        .and_then(|v| serde_json::from_value(v).ok())
        .unwrap_or_default()
}

/// Gets the idle colour ready: removes what it ran before and launches the
/// target set. `Ok(Err(outcome))` ends the rollout.
pub(crate) async fn prepare_colour(
    ops: &Ops<'_>,
    green: &crate::ops::View,
) -> Res<Result<Vec<Instance>, Outcome>> {
    let plan = ops.plan;
    let t = plan.target.id.as_str();
    ops.remove_exited(green).await?;
    let (ready, stale): (Vec<Instance>, Vec<Instance>) = green
        .running()
        .cloned()
        .partition(|i| i.revision == t && i.is_ready());
    ops.unroute_and_retire(&stale, false).await?;
    match launch_set(ops, ready, plan.replicas).await? {
        Ok(new) => match verify_all(ops, &new).await {
            Some(reason) => Ok(Err(revert(ops, reason, false).await)),
            None => Ok(Ok(new)),
        },
        Err(Some(reason)) => Ok(Err(revert(ops, reason, false).await)),
        Err(None) => Ok(Err(stop_to_outcome(
            ops,
            Stop::Cancelled(ops.ctx.cancel.level()),
        )
        .await)),
    }
}

/// Stops the other colour once this one is live (drained first).
pub(crate) async fn stop_colour(
    ops: &Ops<'_>,
    other: &ServiceRef,
    ticket: Option<DrainTicket>,
) -> Res<()> {
    let ticket =
        ticket.unwrap_or_else(|| DrainTicket::unknown(vec![service_target(&other.service)]));
    ops.drain(&ticket).await?;
    retire_colour(ops, other).await
}

/// Stops and removes every instance of the other colour, drained already.
pub(crate) async fn retire_colour(ops: &Ops<'_>, other: &ServiceRef) -> Res<()> {
    let blue = ops.view(other).await?;
    ops.retire(&blue.instances).await
}

/// The change that makes `green` the only route.
pub(crate) fn only(routes: &[Route], name: &str) -> RouteChange {
    let g = service_target(name);
    let mut change = RouteChange::default();
    if !routes.iter().any(|r| r.target == g && r.weight == 1) {
        change.set.push(Route {
            target: g.clone(),
            weight: 1,
        });
    }
    for r in routes {
        if r.target != g {
            change.remove.push(r.target.clone());
        }
    }
    change
}

async fn colours_inner(
    ops: &Ops<'_>,
    other: &ServiceRef,
    stop_other: bool,
    green: crate::ops::View,
) -> Res<Outcome> {
    let plan = ops.plan;
    let t = plan.target.id.as_str();
    let gname = &plan.service.service;
    note_existed(ops, &green).await?;
    let live = green.service_routed(gname)
        || green
            .instances
            .iter()
            .any(|i| green.direct().contains_key(&i.id));
    let all_target = green.running().all(|i| i.revision == t);
    let mut ticket = None;
    if live && !all_target {
        return Ok(Outcome::Failed(format!(
            "{} is live and runs another revision: the two-colour layout updates the idle colour\nhint: roll out {} first, then {}",
            plan.service, other.service, gname
        )));
    }
    let already = live
        && green
            .routes
            .iter()
            .all(|r| r.target == service_target(gname));
    resume_paused(ops).await?;
    ops.measure().await?;
    if !already {
        let new = match prepare_colour(ops, &green).await? {
            Ok(new) => new,
            Err(outcome) => return Ok(outcome),
        };
        if let Err(stop) = hold_before_switch(ops, &new).await? {
            return Ok(stop_to_outcome(ops, stop).await);
        }
        let routes = ops.routes(&[]).await?;
        ticket = ops.route(only(&routes, gname)).await?;
        ops.ctx
            .events
            .send(Event::WeightsChanged { new_percent: 100 });
        ops.set_state("switched", json!(true)).await?;
        let _ = new;
    }
    let green = ops.view(&plan.service).await?;
    let new: Vec<Instance> = green.running().cloned().collect();
    // The other colour drains while this one is watched (kept running or
    // not); a run resumed after the switch waits for all of it.
    let ticket =
        ticket.unwrap_or_else(|| DrainTicket::unknown(vec![service_target(&other.service)]));
    match watch_draining(ops, &new, plan.update.monitor, &ticket).await? {
        Ok(Watched::Passed) => {}
        Ok(Watched::Inconclusive(why)) => return Ok(inconclusive(ops, &why)),
        Err(stop) => return Ok(stop_to_outcome(ops, stop).await),
    }
    if stop_other {
        if let Some(level) = hold(ops, plan.blue_green.keep_old_for.unwrap_or_default()).await {
            return Ok(stop_to_outcome(ops, Stop::Cancelled(level)).await);
        }
        retire_colour(ops, other).await?;
    }
    Ok(Outcome::Completed)
}
