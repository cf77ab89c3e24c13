//! The rolling update, with Swarm's meaning of `update_config`.

use crate::held::Held;
use crate::ops::{target_of, Gate, Opening, Ops, Res, View, FINISHED_ROLLBACK};
use crate::BlueGreen;
use async_trait::async_trait;
use rollout_core::backend::Failure;
use rollout_core::config::{FailureAction, Order, UpdateConfig};
use rollout_core::journal::Phase;
use rollout_core::router::DrainTicket;
use rollout_core::strategy::{CancelLevel, TrafficLayout, Verdict};
use rollout_core::{
    Event, Instance, InstanceId, Outcome, Plan, Revision, RolloutContext, Route, RouteChange,
    Strategy,
};
use rollout_core::{StrategyKind, Word};
use serde_json::json;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
use tokio::sync::Notify;
use tokio::time::Instant;

/// Replaces instances a few at a time, as `docker service update` does.
///
/// Swarm's rules, kept exactly (see `rollout_core::config`):
/// - `parallelism` is the number of workers (0: one per slot); each worker
///   takes a slot, replaces it, waits `delay`, and takes the next: workers
///   are not synchronised in batches;
/// - a slot's new instance is routed only once healthy; `start-first`
///   routes the new instance and takes the old one out in the same change,
///   `stop-first` takes the old one out, drains and stops it first;
/// - an old instance is always unrouted, drained, then stopped and removed;
/// - a failure counts when an instance this update launched fails before it
///   is healthy, or within `monitor` of becoming healthy; each once;
/// - the action fires when failures over all slots to update is strictly
///   greater than `max_failure_ratio`: `pause` stops dispatching (exit 4),
///   `rollback` rolls every slot back with `rollback_config` and the same
///   protocol (exit 3; a rollback that fails in turn pauses, exit 5),
///   `continue` goes on;
/// - after the last slot, failures are watched until the last monitor
///   window closes (at most `monitor`, or `delay + 1s` when the delay is not
///   shorter: swarmkit#3003).
///
/// Where Swarm would leave a worker waiting forever on a start, the start
/// timeout counts a failure. The two-colour layout has no slots to roll:
/// there the rolling strategy switches colours as [`BlueGreen`] does.
#[derive(Debug, Clone, Copy, Default)]
pub struct Rolling;

/// How one pass of workers ended.
enum End {
    Done {
        failures: usize,
        slots: usize,
        /// The failures this pass counted: slot (1-based), instance, why.
        failed: Vec<(usize, InstanceId, Failure)>,
    },
    Crossed(String),
    Cancelled(CancelLevel),
}

/// The end of a start-first slot, left to run beside the worker's delay:
/// the old instance is out of the routes already (its ticket says which
/// change took it out); it is drained, then stopped and removed.
struct Tail {
    ticket: DrainTicket,
    old: Instance,
}

/// One slot: an outdated instance to retire, a new one to launch, or both.
struct Slot {
    old: Option<Instance>,
    old_routed: bool,
    launch: bool,
}

struct Shared {
    next: AtomicUsize,
    failures: AtomicUsize,
    stop: Mutex<Option<String>>,
    /// Instances in their monitor window: id, end of the window, slot.
    watch: Mutex<Vec<(InstanceId, Instant, usize)>>,
    /// Failures counted by this pass: slot (1-based), instance, why.
    failed: Mutex<Vec<(usize, InstanceId, Failure)>>,
    notify: Notify,
    workers_done: AtomicBool,
    /// When the final watch ends: set when the last worker finishes, to
    /// `final_watch()` later (swarmkit#3003).
    final_deadline: Mutex<Option<Instant>>,
    /// Routed, ready instances of the service, as this pass changes them.
    serving: AtomicUsize,
    /// Slots being replaced now.
    active: AtomicUsize,
    /// Slots among them waiting for capacity.
    waiting: AtomicUsize,
    /// Failed instances the monitor left in the routes because nothing else
    /// was routed; the next change that routes a new instance takes them
    /// out, and the pass retires them.
    kept: Mutex<Vec<Instance>>,
    /// Raised whenever `serving` grows or a slot ends.
    capacity: Notify,
}

#[async_trait]
impl Strategy for Rolling {
    fn name(&self) -> &str {
        StrategyKind::Rolling.as_str()
    }

    async fn run(&self, ctx: &RolloutContext, plan: &Plan) -> Outcome {
        if let TrafficLayout::Colours { .. } = plan.layout {
            return BlueGreen.run(ctx, plan).await;
        }
        let ops = match Ops::begin(ctx, plan, StrategyKind::Rolling).await {
            Ok(o) => o,
            Err(outcome) => return outcome,
        };
        let outcome = body(&ops).await;
        ops.end(outcome).await
    }
}

async fn body(ops: &Ops<'_>) -> Outcome {
    let plan = ops.plan;
    match ops.open_single().await {
        Opening::FinishRollback => return rollback(ops, FINISHED_ROLLBACK.into(), false).await,
        Opening::End(outcome) => return outcome,
        Opening::Update => {}
    }
    match roll(ops, Some(&plan.target), &plan.update, false).await {
        Err(e) => Outcome::Failed(e.to_string()),
        Ok(End::Done { failures: 0, .. }) => Outcome::Completed,
        Ok(End::Done {
            failures,
            slots,
            failed,
        }) => Outcome::CompletedWithFailures(with_failures(ops, failures, slots, &failed).await),
        Ok(End::Crossed(reason)) => match plan.update.failure_action {
            FailureAction::Rollback => rollback(ops, reason, false).await,
            _ => Outcome::Paused(format!(
                "{reason}\nhint: fix the revision and run the rollout again; the journal keeps {} as the rollback target",
                ops.from.as_ref().map_or("nothing".into(), |r| r.id.clone())
            )),
        },
        Ok(End::Cancelled(CancelLevel::Halt)) => Outcome::Interrupted(false),
        Ok(End::Cancelled(_)) => rollback(ops, "interrupted".into(), true).await,
    }
}

/// What a rollout that completed with failures did: how many slots failed
/// against max_failure_ratio and what failure_action did about it, which
/// slots failed and why, and what the service runs now.
async fn with_failures(
    ops: &Ops<'_>,
    failures: usize,
    slots: usize,
    failed: &[(usize, InstanceId, Failure)],
) -> String {
    let plan = ops.plan;
    let cfg = &plan.update;
    let action = cfg.failure_action;
    let ratio = cfg.max_failure_ratio;
    let mut msg = if !cfg.ratio_crossed(failures, slots) {
        format!(
            "{failures} of {slots} slots failed, within max_failure_ratio {ratio}, so failure_action {action} did not fire"
        )
    } else if cfg.failure_action == FailureAction::Continue {
        format!(
            "{failures} of {slots} slots failed, above max_failure_ratio {ratio}, and failure_action continue went on"
        )
    } else {
        format!("{failures} of {slots} slots failed, above max_failure_ratio {ratio}")
    };
    let mut what: Vec<String> = failed
        .iter()
        .map(|(slot, id, f)| format!("slot {slot} ({id}: {f})"))
        .collect();
    if failures > failed.len() {
        what.push(format!("{} in an earlier run", failures - failed.len()));
    }
    if !what.is_empty() {
        msg.push_str(&format!("; failed: {}", what.join(", ")));
    }
    match ops.view(&plan.service).await {
        Ok(view) => {
            let t = &plan.target.id;
            let mut new = 0;
            let mut others: std::collections::BTreeMap<&str, usize> = Default::default();
            let mut running = 0;
            for i in view.running() {
                running += 1;
                if i.revision == *t {
                    new += 1;
                } else {
                    *others.entry(i.revision.as_str()).or_default() += 1;
                }
            }
            msg.push_str(&format!(
                "; left: {new} of {} instances run {}",
                plan.replicas, plan.target
            ));
            for (rev, n) in others {
                let short: String = rev.chars().take(12).collect();
                let verb = if n == 1 { "runs" } else { "run" };
                msg.push_str(&format!(", {n} still {verb} {short}"));
            }
            if running < plan.replicas {
                msg.push_str(&format!(", {} missing", plan.replicas - running));
            }
        }
        Err(e) => msg.push_str(&format!("; cannot tell what is left: {e}")),
    }
    msg
}

/// Rolls every slot back to the journal's `from` with `rollback_config`.
async fn rollback(ops: &Ops<'_>, reason: String, interrupted: bool) -> Outcome {
    let plan = ops.plan;
    if let Err(e) = ops.set_phase(Phase::RollingBack).await {
        return Outcome::RollbackFailed(e.to_string());
    }
    ops.ctx.events.send(Event::RollbackStarted {
        reason: reason.clone(),
    });
    match roll(ops, ops.from.as_ref(), &plan.rollback, true).await {
        Err(e) => Outcome::RollbackFailed(format!("{reason}; then the rollback failed: {e}")),
        Ok(End::Done { .. }) if interrupted => Outcome::Interrupted(true),
        Ok(End::Done { failures: 0, .. }) => Outcome::RolledBack(reason),
        Ok(End::Done { failures, .. }) => Outcome::RolledBack(format!(
            "{reason}; the rollback went on past {failures} failures"
        )),
        Ok(End::Crossed(r)) => Outcome::RollbackFailed(format!(
            "{reason}; then the rollback paused: {r}\nhint: a rollback is never rolled back; look at the instances and run the rollout again"
        )),
        Ok(End::Cancelled(_)) => Outcome::Interrupted(false),
    }
}

/// One pass: converge the service on `target` (`None`: no instance at all).
async fn roll(
    ops: &Ops<'_>,
    target: Option<&Revision>,
    cfg: &UpdateConfig,
    rolling_back: bool,
) -> Res<End> {
    let plan = ops.plan;
    let level = if rolling_back {
        CancelLevel::Halt
    } else {
        CancelLevel::Abort
    };
    let tid = target.map(|t| t.id.as_str());
    let view = ops.view(&plan.service).await?;
    // The service moves to per-instance routes, and with stop-first the
    // first round's old instances leave them in the same change: one reload
    // where there would be one per worker more.
    let mut change = ops.normalize_change(&view, tid, 1, true);
    let after = view.after(&change);
    let (slots, leftovers) = plan_slots(&after, tid, plan.replicas);
    let mut serving = after
        .running()
        .filter(|i| i.is_ready() && after.is_routed(i))
        .count();
    let first_out = if cfg.order == Order::StopFirst {
        let floor = cfg.stop_first_floor(plan.replicas, slots.len());
        first_round_out(&slots, cfg.workers(slots.len()), floor, serving)
    } else {
        Vec::new()
    };
    let mut left_out = Vec::new();
    for &k in &first_out {
        if let Some(old) = &slots[k].old {
            // Routed by name until now: left out of the per-instance routes
            // (and reported as taken out).
            let target = target_of(old);
            let before = change.set.len();
            change.set.retain(|r| r.target != target);
            if change.set.len() == before {
                change.remove.push(target);
            } else {
                left_out.push(target);
            }
        }
    }
    serving -= first_out.len();
    let ticket = ops.route_showing(change, left_out).await?;
    let pre_unrouted = first_out
        .iter()
        .filter_map(|&k| {
            let old = slots[k].old.as_ref()?;
            let removed = vec![target_of(old)];
            let ticket = match &ticket {
                Some(t) => DrainTicket {
                    generation: t.generation,
                    removed,
                },
                None => DrainTicket::unknown(removed),
            };
            Some((k, ticket))
        })
        .collect();
    ops.remove_exited(&view).await?;
    // Instances of the target left unready by an earlier run: not routed
    // (normalize took them out), so a drain and a stop are enough.
    ops.unroute_and_retire(&leftovers, false).await?;

    let total = if rolling_back {
        slots.len()
    } else {
        let stored = ops
            .state("slots")
            .and_then(|v| v.as_u64())
            .map(|v| v as usize);
        match stored {
            Some(n) if ops.resumed => n.max(slots.len()),
            _ => {
                ops.set_state("slots", json!(slots.len())).await?;
                slots.len()
            }
        }
    };
    // Failures carry over a crash (each counted once), not a pause: running
    // again after a pause is a new attempt, as `docker service update` is.
    let carried = if rolling_back || ops.resumed_phase == Some(Phase::Paused) {
        0
    } else {
        ops.state("failures").and_then(|v| v.as_u64()).unwrap_or(0) as usize
    };
    let shared = Shared {
        next: AtomicUsize::new(0),
        failures: AtomicUsize::new(carried),
        stop: Mutex::new(None),
        watch: Mutex::new(Vec::new()),
        failed: Mutex::new(Vec::new()),
        notify: Notify::new(),
        workers_done: AtomicBool::new(false),
        final_deadline: Mutex::new(None),
        serving: AtomicUsize::new(serving),
        active: AtomicUsize::new(0),
        waiting: AtomicUsize::new(0),
        kept: Mutex::new(Vec::new()),
        capacity: Notify::new(),
    };
    let ctx = Pass {
        ops,
        target,
        cfg,
        rolling_back,
        level,
        total: total.max(1),
        slots,
        shared,
        unrouting: tokio::sync::Mutex::new(()),
        pre_unrouted: Mutex::new(pre_unrouted),
    };
    if !ctx.slots.is_empty() {
        let workers = cfg.workers(ctx.slots.len());
        let run_workers = async {
            let results = futures::future::join_all((0..workers).map(|_| ctx.worker())).await;
            *ctx.shared
                .final_deadline
                .lock()
                .unwrap_or_else(|e| e.into_inner()) = Some(Instant::now() + cfg.final_watch());
            ctx.shared.workers_done.store(true, Ordering::SeqCst);
            ctx.shared.notify.notify_one();
            results.into_iter().collect::<Res<Vec<()>>>()
        };
        let (w, m) = tokio::join!(run_workers, ctx.monitor());
        w?;
        m?;
    }
    // Failed instances still in the routes because they were the last ones
    // there: out now, when anything else serves.
    let kept = std::mem::take(&mut *ctx.shared.kept.lock().unwrap_or_else(|e| e.into_inner()));
    if !kept.is_empty() {
        let view = ops.view(&plan.service).await?;
        let serving = view
            .running()
            .filter(|i| i.is_ready() && view.is_routed(i) && !kept.iter().any(|k| k.id == i.id))
            .count();
        if serving > 0 {
            ops.unroute_and_retire(&kept, true).await?;
        }
    }
    let failures = ctx.shared.failures.load(Ordering::SeqCst);
    if let Some(reason) = ctx
        .shared
        .stop
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .take()
    {
        return Ok(End::Crossed(reason));
    }
    let cancel = ops.ctx.cancel.level();
    if cancel >= level {
        return Ok(End::Cancelled(cancel));
    }
    if let Some(t) = tid {
        if !ops.settle(t).await? {
            // failure_action continue can leave every slot on the old
            // revision: at rest on that one, not named by container.
            let view = ops.view(&plan.service).await?;
            let first = view.running().next().map(|i| i.revision.clone());
            if let Some(rev) = first {
                ops.settle(&rev).await?;
            }
        }
    }
    let mut failed =
        std::mem::take(&mut *ctx.shared.failed.lock().unwrap_or_else(|e| e.into_inner()));
    failed.sort_by_key(|(slot, _, _)| *slot);
    Ok(End::Done {
        failures,
        slots: total,
        failed,
    })
}

/// The stop-first slots (0-based) whose old instance can leave the routes
/// before any worker starts: the first `workers` slots that replace a
/// ready, routed instance, as long as what serves stays above the capacity
/// `floor` (desired minus workers, as [`Pass::reserve`] keeps it) and is
/// never the last instance.
fn first_round_out(slots: &[Slot], workers: usize, floor: usize, serving: usize) -> Vec<usize> {
    let mut left = serving;
    let mut out = Vec::new();
    for (k, slot) in slots.iter().enumerate().take(workers) {
        let Some(old) = &slot.old else { break };
        if !(slot.launch && slot.old_routed && old.is_ready()) || left <= floor.max(1) {
            break;
        }
        left -= 1;
        out.push(k);
    }
    out
}

/// Pairs outdated instances with launches. Unready outdated instances go
/// first among the pairs (retiring them costs no capacity), routed ones
/// last.
fn plan_slots(view: &View, target: Option<&str>, replicas: usize) -> (Vec<Slot>, Vec<Instance>) {
    let mut leftovers = Vec::new();
    let mut outdated: Vec<(Instance, bool)> = Vec::new();
    let mut ready_new = 0;
    for i in view.running() {
        if Some(i.revision.as_str()) == target {
            if i.is_ready() {
                ready_new += 1;
            } else {
                leftovers.push(i.clone());
            }
        } else {
            outdated.push((i.clone(), view.is_routed(i)));
        }
    }
    outdated.sort_by_key(|(i, routed)| (i.is_ready(), *routed));
    let launches = if target.is_some() {
        replicas.saturating_sub(ready_new)
    } else {
        0
    };
    // Slots that only add an instance come first (a service short of its
    // count, or a run resumed after a crash, gets its capacity back before
    // anything is taken out); then old and new paired; slots that only take
    // an instance out (scaling down) last.
    let paired = launches.min(outdated.len());
    let mut slots: Vec<Slot> = Vec::with_capacity(launches.max(outdated.len()));
    for _ in paired..launches {
        slots.push(Slot {
            old: None,
            old_routed: false,
            launch: true,
        });
    }
    for (k, (old, old_routed)) in outdated.into_iter().enumerate() {
        slots.push(Slot {
            old: Some(old),
            old_routed,
            launch: k < paired,
        });
    }
    (slots, leftovers)
}

struct Pass<'p, 'o> {
    ops: &'p Ops<'o>,
    target: Option<&'p Revision>,
    cfg: &'p UpdateConfig,
    rolling_back: bool,
    level: CancelLevel,
    total: usize,
    slots: Vec<Slot>,
    shared: Shared,
    /// Held while deciding to take an instance out of the routes and
    /// applying it, so that two removals (a stop-first slot and the
    /// monitor) never each count the other's instance as still serving and
    /// leave nothing routed.
    unrouting: tokio::sync::Mutex<()>,
    /// Stop-first slots (0-based) whose old instance left the routes with
    /// the first change of the pass, and the ticket to drain it.
    pre_unrouted: Mutex<std::collections::HashMap<usize, DrainTicket>>,
}

impl Pass<'_, '_> {
    fn stopped(&self) -> bool {
        self.shared
            .stop
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some()
            || self.ops.ctx.cancel.level() >= self.level
    }

    async fn worker(&self) -> Res<()> {
        loop {
            if self.stopped() {
                return Ok(());
            }
            // The operator's pause holds here, before the next slot starts
            // (slots in flight finish; the monitor goes on). A rollback is
            // never held.
            let next = self.shared.next.load(Ordering::SeqCst);
            if !self.rolling_back && next < self.slots.len() {
                let at = format!("before slot {} of {}", next + 1, self.slots.len());
                let held = self
                    .ops
                    .hold_while_paused(&at, &[], self.level, || self.stopped())
                    .await?;
                if !matches!(held, Held::Go) {
                    return Ok(());
                }
            }
            let k = self.shared.next.fetch_add(1, Ordering::SeqCst);
            if k >= self.slots.len() {
                return Ok(());
            }
            self.ops.ctx.events.send(Event::BatchStarted {
                index: k + 1,
                size: 1,
            });
            let tail = self.slot(k + 1, &self.slots[k]).await?;
            let more = self.shared.next.load(Ordering::SeqCst) < self.slots.len();
            // The old instance of a start-first slot is out of the routes:
            // its drain, stop and removal run beside the delay, not before
            // it (as Swarm's updater does not wait for the old task's
            // shutdown). The next slot starts when both are over, so that a
            // worker has one old instance in hand at most, and the pass
            // ends only once every old instance is gone.
            let retired = async {
                match tail {
                    Some(t) => self.finish(t).await,
                    None => Ok(()),
                }
            };
            let delay = async {
                if more && !self.cfg.delay.is_zero() {
                    tokio::select! {
                    biased;
                        _ = tokio::time::sleep(self.cfg.delay) => {}
                        _ = self.ops.ctx.cancel.reached(self.level) => {}
                    }
                }
            };
            let (retired, ()) = tokio::join!(retired, delay);
            retired?;
        }
    }

    /// Drains and retires the old instance of a start-first slot.
    async fn finish(&self, tail: Tail) -> Res<()> {
        self.ops.drain(&tail.ticket).await?;
        self.ops.retire(std::slice::from_ref(&tail.old)).await
    }

    /// Counts a failure of an instance this pass launched, and stops the
    /// dispatch when the ratio is crossed.
    async fn count(&self, slot: usize, id: &InstanceId, failure: Failure) -> Res<()> {
        let failures = self.shared.failures.fetch_add(1, Ordering::SeqCst) + 1;
        self.shared
            .failed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((slot, id.clone(), failure.clone()));
        self.ops
            .failure_counted(id, failure.clone(), failures, self.total)
            .await;
        if !self.rolling_back {
            self.ops.set_state("failures", json!(failures)).await?;
        }
        let acts = self.cfg.failure_action != FailureAction::Continue;
        if acts && self.cfg.ratio_crossed(failures, self.total) {
            let what = if self.rolling_back {
                "rollback"
            } else {
                "update"
            };
            let mut stop = self.shared.stop.lock().unwrap_or_else(|e| e.into_inner());
            stop.get_or_insert(format!(
                "{what} stopped after {failures} failed of {} slots (max_failure_ratio {}): {id} {failure}",
                self.total, self.cfg.max_failure_ratio
            ));
        }
        Ok(())
    }

    /// Waits until taking one more routed instance out keeps the capacity
    /// floor of stop-first (desired minus workers). A run resumed after a
    /// crash, or one that lost instances to failures, may start below it:
    /// then it waits for the slots in progress (which add capacity back),
    /// and proceeds alone when none is, so that the pass never deadlocks.
    async fn reserve(&self) {
        let floor = self
            .cfg
            .stop_first_floor(self.ops.plan.replicas, self.slots.len());
        let mut announced = false;
        loop {
            let wake = self.shared.capacity.notified();
            tokio::pin!(wake);
            wake.as_mut().enable();
            let serving = self.shared.serving.load(Ordering::SeqCst);
            // Alone: every other slot in progress is waiting here too, so
            // none of them will add capacity back.
            let others = self.shared.active.load(Ordering::SeqCst) - 1;
            let others_waiting =
                self.shared.waiting.load(Ordering::SeqCst) - usize::from(announced);
            if serving > floor || others == others_waiting {
                if announced {
                    self.shared.waiting.fetch_sub(1, Ordering::SeqCst);
                }
                self.shared
                    .serving
                    .store(serving.saturating_sub(1), Ordering::SeqCst);
                return;
            }
            if !announced {
                // Tell the other waiters; they may now be alone. This wakes
                // our own `wake` too: look again with a fresh one.
                announced = true;
                self.shared.waiting.fetch_add(1, Ordering::SeqCst);
                self.shared.capacity.notify_waiters();
                continue;
            }
            wake.await;
        }
    }

    fn released(&self, routed_new: bool) {
        if routed_new {
            self.shared.serving.fetch_add(1, Ordering::SeqCst);
        }
        self.shared.active.fetch_sub(1, Ordering::SeqCst);
        self.shared.capacity.notify_waiters();
    }

    /// Replaces one slot; returns the end of a start-first slot (the old
    /// instance's drain and retirement) for the worker to run beside its
    /// delay.
    async fn slot(&self, index: usize, slot: &Slot) -> Res<Option<Tail>> {
        let reserved = self.cfg.order == Order::StopFirst && slot.old_routed && slot.old.is_some();
        self.shared.active.fetch_add(1, Ordering::SeqCst);
        // Taken out with the pass's first change: capacity counted then.
        let pre = self
            .pre_unrouted
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&(index - 1));
        if let Some(ticket) = pre {
            let r = self.slot_inner(index, slot, true, Some(ticket)).await;
            self.released(matches!(r, Ok((true, _))));
            return r.map(|(_, tail)| tail);
        }
        if reserved {
            self.reserve().await;
        }
        // Stop-first never takes out the last ready instance that gets
        // traffic (instances that failed after they were routed may have left
        // it alone): that slot goes start-first, so that the service keeps
        // serving. The swap keeps the count of serving instances as it was.
        let mut swapped = false;
        let mut unrouted = None;
        if let (true, Some(old)) = (reserved && slot.launch, slot.old.as_ref()) {
            let _one = self.unrouting.lock().await;
            let taken_out = async {
                if self.last_serving(old).await? {
                    return Ok(None);
                }
                let out = vec![target_of(old)];
                let ticket = self
                    .ops
                    .route(RouteChange {
                        set: vec![],
                        remove: out.clone(),
                    })
                    .await?;
                Ok(Some(ticket.unwrap_or_else(|| DrainTicket::unknown(out))))
            };
            match taken_out.await {
                Ok(None) => swapped = true,
                Ok(Some(ticket)) => unrouted = Some(ticket),
                Err(e) => {
                    self.released(false);
                    return Err(e);
                }
            }
        }
        let stop_first = self.cfg.order == Order::StopFirst && !swapped;
        let r = self.slot_inner(index, slot, stop_first, unrouted).await;
        self.released(matches!(r, Ok((true, _))) || swapped);
        r.map(|(_, tail)| tail)
    }

    /// Whether `old` is the only ready instance of the service that gets
    /// traffic now.
    async fn last_serving(&self, old: &Instance) -> Res<bool> {
        let view = self.ops.view(&self.ops.plan.service).await?;
        let others = view
            .running()
            .filter(|i| i.id != old.id && i.is_ready() && view.is_routed(i))
            .count();
        Ok(others == 0)
    }

    /// Replaces one slot; `Ok((true, _))` when a new instance was routed
    /// (and added capacity), with the old instance's drain and retirement
    /// still to do when the slot went start-first. `unrouted` is the ticket
    /// of the old instance when [`Pass::slot`] took it out already.
    async fn slot_inner(
        &self,
        index: usize,
        slot: &Slot,
        stop_first: bool,
        unrouted: Option<DrainTicket>,
    ) -> Res<(bool, Option<Tail>)> {
        let ops = self.ops;
        let old = slot.old.as_ref();
        if stop_first || !slot.launch {
            if let Some(old) = old {
                match unrouted {
                    Some(ticket) => {
                        ops.drain(&ticket).await?;
                    }
                    None => {
                        ops.unroute_and_drain(std::slice::from_ref(old), slot.old_routed)
                            .await?
                    }
                }
                // The new instance starts once the old one has stopped; the
                // engine removes the old one meanwhile.
                match slot.launch && self.target.is_some() {
                    true => ops.retire_behind(old).await?,
                    false => ops.retire(std::slice::from_ref(old)).await?,
                }
                if !stop_first && slot.old_routed {
                    self.shared.serving.fetch_sub(1, Ordering::SeqCst);
                }
            }
        }
        let (true, Some(target)) = (slot.launch, self.target) else {
            return Ok((false, None));
        };
        let new = match ops.launch(&ops.plan.service, target).await? {
            Ok(i) => i,
            Err(f) => {
                let id = InstanceId(format!("{}:launch", ops.plan.service));
                self.count(index, &id, f).await?;
                return Ok((false, None));
            }
        };
        match ops.gate(&new, self.level).await? {
            Gate::Healthy => {}
            Gate::Failed(f) => {
                // Counted first, so that its logs are read before removal.
                self.count(index, &new.id, f).await?;
                ops.retire(std::slice::from_ref(&new)).await?;
                return Ok((false, None));
            }
            Gate::Cancelled => {
                ops.retire(std::slice::from_ref(&new)).await?;
                return Ok((false, None));
            }
        }
        let mut change = RouteChange {
            set: vec![Route {
                target: target_of(&new),
                weight: 1,
            }],
            remove: vec![],
        };
        let retire_old = !stop_first && old.is_some();
        if let (true, Some(old), true) = (retire_old, old, slot.old_routed) {
            change.remove.push(target_of(old));
        }
        let kept = std::mem::take(&mut *self.shared.kept.lock().unwrap_or_else(|e| e.into_inner()));
        change.remove.extend(kept.iter().map(target_of));
        let ticket = ops.route(change).await?;
        if !kept.is_empty() {
            let out = kept.iter().map(target_of).collect();
            ops.drain(&DrainTicket::unknown(out)).await?;
            ops.retire(&kept).await?;
        }
        if !self.cfg.monitor.is_zero() {
            self.shared
                .watch
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push((new.id.clone(), Instant::now() + self.cfg.monitor, index));
            self.shared.notify.notify_one();
        }
        if let (true, Some(old)) = (retire_old, old) {
            let ticket = ticket
                .filter(|_| slot.old_routed)
                .map(|mut t| {
                    t.removed.retain(|x| *x == target_of(old));
                    t
                })
                .unwrap_or_else(|| {
                    rollout_core::router::DrainTicket::unknown(vec![target_of(old)])
                });
            let tail = Tail {
                ticket,
                old: old.clone(),
            };
            // Start-first with an old instance that was out already: the new
            // one adds capacity.
            return Ok((!slot.old_routed, Some(tail)));
        }
        Ok((true, None))
    }

    /// Watches every instance this pass made live for its monitor window,
    /// and takes a failed one out of the routes.
    async fn monitor(&self) -> Res<()> {
        let ops = self.ops;
        loop {
            let done = self.shared.workers_done.load(Ordering::SeqCst);
            if self.stopped() {
                // Dispatch stopped: no more watching; wait for the workers
                // to reach their safe points.
                if done {
                    return Ok(());
                }
                self.shared.notify.notified().await;
                continue;
            }
            let now = Instant::now();
            let (ids, until) = {
                let mut w = self.shared.watch.lock().unwrap_or_else(|e| e.into_inner());
                // Each instance is watched for `monitor` from when it became
                // healthy, and no longer than the final watch after the last
                // slot: a failure of the last slots still counts even when
                // no delay follows them (swarmkit#3003).
                let fin = *self
                    .shared
                    .final_deadline
                    .lock()
                    .unwrap_or_else(|e| e.into_inner());
                for (_, until, _) in w.iter_mut() {
                    if let Some(fin) = fin {
                        *until = (*until).min(fin);
                    }
                }
                w.retain(|(_, until, _)| *until > now);
                let until = w.iter().map(|(_, u, _)| *u).min();
                (
                    w.iter().map(|(id, _, _)| id.clone()).collect::<Vec<_>>(),
                    until,
                )
            };
            let Some(until) = until else {
                if done {
                    return Ok(());
                }
                tokio::select! {
                biased;
                        _ = self.shared.notify.notified() => {}
                        _ = ops.ctx.cancel.reached(self.level) => {}
                    }
                continue;
            };
            // The analysis (when rules were given) judges the new revision
            // about every second while instances are in their window; a
            // failing verdict fails every one of them.
            let judge = ops.ctx.analysis.as_ref().filter(|_| !self.rolling_back);
            let within = match judge {
                Some(_) => (until - now).min(crate::canary::JUDGE_EVERY),
                None => until - now,
            };
            let failed = tokio::select! {
            biased;
                r = ops.ctx.backend.watch_failures(&ids, within) => r?,
                _ = self.shared.notify.notified() => None,
                _ = ops.ctx.cancel.reached(self.level) => None,
            };
            let failed = match (failed, judge) {
                (Some(one), _) => vec![one],
                (None, Some(analysis)) if !self.stopped() => {
                    let verdict = analysis.judge(ops.plan, 0, 0).await;
                    ops.ctx.events.send(Event::Analysis {
                        step: 0,
                        verdict: verdict.clone(),
                    });
                    match verdict {
                        Verdict::Fail(why) => ids
                            .iter()
                            .map(|id| (id.clone(), Failure::Analysis(why.clone())))
                            .collect(),
                        Verdict::Pass | Verdict::Inconclusive(_) => Vec::new(),
                    }
                }
                (None, _) => Vec::new(),
            };
            for (id, failure) in failed {
                self.monitor_failed(id, failure).await?;
            }
        }
    }

    /// An instance failed in its monitor window: counted, then taken out of
    /// the routes and removed (unless nothing else serves).
    async fn monitor_failed(&self, id: InstanceId, failure: Failure) -> Res<()> {
        let ops = self.ops;
        {
            let slot = {
                let mut w = self.shared.watch.lock().unwrap_or_else(|e| e.into_inner());
                let slot = w
                    .iter()
                    .find(|(i, _, _)| *i == id)
                    .map_or(0, |(_, _, s)| *s);
                w.retain(|(i, _, _)| *i != id);
                slot
            };
            // Take the failed instance out and remove it: it gets no more
            // traffic, and its slot is left for the next run (or the
            // rollback) to fill. Unless nothing else would get traffic: an
            // instance that fails its health check may still answer, and an
            // upstream with no server answers nothing; the next pass (or
            // the rollback) replaces it start-first.
            // A revision the analysis judged bad still answers, and each of
            // its instances counts toward the capacity floor: counted (the
            // failure action replaces them), not taken out.
            let judged = matches!(failure, Failure::Analysis(_));
            self.count(slot, &id, failure).await?;
            if judged {
                return Ok(());
            }
            let taken_out = {
                let _one = self.unrouting.lock().await;
                let view = ops.view(&ops.plan.service).await?;
                let others = view
                    .running()
                    .filter(|i| i.id != id && view.is_routed(i))
                    .count();
                match view.instances.iter().find(|i| i.id == id) {
                    Some(inst) if others > 0 => {
                        let out = vec![target_of(inst)];
                        let ticket = ops
                            .route(RouteChange {
                                set: vec![],
                                remove: out.clone(),
                            })
                            .await?
                            .unwrap_or_else(|| DrainTicket::unknown(out));
                        Some((inst.clone(), ticket))
                    }
                    Some(inst) => {
                        self.shared
                            .kept
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .push(inst.clone());
                        None
                    }
                    None => None,
                }
            };
            if let Some((inst, ticket)) = taken_out {
                ops.drain(&ticket).await?;
                ops.retire(std::slice::from_ref(&inst)).await?;
                let serving = &self.shared.serving;
                let _ = serving.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |v| {
                    Some(v.saturating_sub(1))
                });
            }
        }
        Ok(())
    }
}
