//! The protocol steps every strategy shares, each journaled before it is
//! taken and reported as an event after: launch, health gate, route, drain,
//! retire, and the moves between "routed by service name at rest" and
//! "routed by instance during a rollout".

mod retire;

use crate::StrategyError;
use rollout_core::backend::Failure;
use rollout_core::journal::{JournalRecord, Phase, Step};
use rollout_core::router::{DrainReport, DrainTicket};
use rollout_core::strategy::CancelLevel;
use rollout_core::StrategyKind;
use rollout_core::{BackendError, JournalError};
use rollout_core::{
    Event, Instance, InstanceId, InstanceState, Outcome, Plan, Revision, RolloutContext, Route,
    RouteChange, Target,
};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

pub(crate) type Res<T> = Result<T, StrategyError>;

/// The route target of an instance.
pub(crate) fn target_of(i: &Instance) -> Target {
    Target::instance(i.id.clone(), i.host.clone())
}

/// The route of a whole service by name.
pub(crate) fn service_target(name: &str) -> Target {
    Target::Service {
        name: name.to_string(),
    }
}

/// Who takes the lock: user, host and process, as a person would look for it,
/// and what proves later whether that process still runs: its start time and
/// the machine's boot id (`USER@HOST pid N started T boot B`, a
/// [`Holder`](rollout_core::journal::Holder)). The host is the kernel's host
/// name; a later run of the same host and boot can tell that the holder died
/// (its pid gone, or taken by a process started at another time).
pub fn lock_holder() -> String {
    this_process().to_string()
}

/// This process as a lock [`Holder`](rollout_core::journal::Holder).
pub fn this_process() -> rollout_core::journal::Holder {
    let pid = std::process::id();
    rollout_core::journal::Holder {
        user: std::env::var("USER").unwrap_or_else(|_| "unknown".into()),
        host: this_host(),
        pid,
        start: process_start(pid),
        boot: boot_id(),
    }
}

/// When process `pid` of this machine started, in clock ticks after boot
/// (`/proc/PID/stat`, field 22), or `None` when there is no such process.
pub fn process_start(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold anything.
    let after = &stat[stat.rfind(')')? + 1..];
    after.split_whitespace().nth(19)?.parse().ok()
}

/// This machine's boot id (`/proc/sys/kernel/random/boot_id`): another
/// after every boot, and another on every machine.
pub fn boot_id() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .ok()
        .map(|b| b.trim().to_string())
        .filter(|b| !b.is_empty())
}

/// This machine's host name: the kernel's, else `$HOSTNAME`, else `localhost`.
pub(crate) fn this_host() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "localhost".into())
}

/// A strategy that moves traffic (blue-green, canary) given a router that
/// carries none ([`crate::NoTraffic`]) ends here, before anything changes.
pub(crate) fn refuse_without_traffic(
    ctx: &RolloutContext,
    strategy: StrategyKind,
) -> Option<Outcome> {
    if ctx.router.carries_traffic() {
        return None;
    }
    let outcome = Outcome::Failed(format!(
        "{strategy} moves traffic, and the router carries none (no proxy in front of the service)\nhint: use the rolling strategy, or put a proxy in front of the service"
    ));
    ctx.events.send(Event::Finished {
        outcome: outcome.clone(),
    });
    Some(outcome)
}

/// How a health gate ended.
pub(crate) enum Gate {
    Healthy,
    Failed(Failure),
    Cancelled,
}

/// What the backend and the router hold for one service, read at once.
pub(crate) struct View {
    pub instances: Vec<Instance>,
    pub routes: Vec<Route>,
    direct: HashMap<InstanceId, u32>,
}

impl View {
    pub fn new(instances: Vec<Instance>, routes: Vec<Route>) -> Self {
        let direct = routes
            .iter()
            .filter_map(|r| match &r.target {
                Target::Instance { id, .. } => Some((id.clone(), r.weight)),
                Target::Service { .. } => None,
            })
            .collect();
        Self {
            instances,
            routes,
            direct,
        }
    }

    /// The view once `change` is applied, with only the running instances
    /// (those [`Ops::remove_exited`] keeps).
    pub fn after(&self, change: &RouteChange) -> View {
        let mut routes: Vec<Route> = self
            .routes
            .iter()
            .filter(|r| !change.remove.contains(&r.target))
            .cloned()
            .collect();
        for set in &change.set {
            match routes.iter_mut().find(|r| r.target == set.target) {
                Some(r) => r.weight = set.weight,
                None => routes.push(set.clone()),
            }
        }
        View::new(self.running().cloned().collect(), routes)
    }

    /// Direct routes by instance id.
    pub fn direct(&self) -> &HashMap<InstanceId, u32> {
        &self.direct
    }

    /// Whether the service is routed by name.
    pub fn service_routed(&self, name: &str) -> bool {
        self.routes
            .iter()
            .any(|r| matches!(&r.target, Target::Service { name: n } if n == name))
    }

    /// Whether `i` gets traffic now (directly or through its service name).
    pub fn is_routed(&self, i: &Instance) -> bool {
        self.direct.contains_key(&i.id)
            || (i.state == InstanceState::Running && self.service_routed(&i.service.service))
    }

    /// Running instances.
    pub fn running(&self) -> impl Iterator<Item = &Instance> {
        self.instances
            .iter()
            .filter(|i| i.state == InstanceState::Running)
    }

    /// Whether the service is at rest on `rev`: `replicas` ready instances of
    /// it, nothing else running, routed by name and by nothing else.
    pub fn at_rest(&self, name: &str, rev: &str, replicas: usize) -> bool {
        let all_new = self
            .instances
            .iter()
            .all(|i| i.revision == rev && i.is_ready());
        let ids: std::collections::HashSet<&InstanceId> =
            self.instances.iter().map(|i| &i.id).collect();
        let direct_here = self.direct().keys().any(|id| ids.contains(id));
        all_new && self.instances.len() == replicas && self.service_routed(name) && !direct_here
    }

    /// The old set of the single layout once traffic moved to `target`:
    /// every instance of another revision, and the ticket its drain waits
    /// for. A run resumed after the switch (no ticket, or one that took
    /// nothing out) cannot tell what is still in flight, and waits for all.
    pub fn old_set(
        &self,
        target: &str,
        ticket: Option<DrainTicket>,
    ) -> (Vec<Instance>, DrainTicket) {
        let old: Vec<Instance> = self
            .instances
            .iter()
            .filter(|i| i.revision != target)
            .cloned()
            .collect();
        let ticket = ticket
            .filter(|t| !t.removed.is_empty())
            .unwrap_or_else(|| DrainTicket::unknown(old.iter().map(target_of).collect()));
        (old, ticket)
    }
}

/// How a run opens, before the strategy's own steps.
pub(crate) enum Opening {
    /// An earlier run was rolling back: the strategy finishes that rollback
    /// (with [`FINISHED_ROLLBACK`] as its reason) and nothing else.
    FinishRollback,
    /// The run ends here with this outcome, nothing changed: the service is
    /// at rest on the target, or it could not be read.
    End(Outcome),
    /// The update goes on.
    Update,
}

/// The reason of a rollback that a later run finished.
pub(crate) const FINISHED_ROLLBACK: &str = "an interrupted rollback was finished";

/// The record as this run changes it, with a count of its changes.
pub(crate) struct Versioned {
    pub record: JournalRecord,
    /// Raised by every change.
    pub version: u64,
}

impl std::ops::Deref for Versioned {
    type Target = JournalRecord;
    fn deref(&self) -> &JournalRecord {
        &self.record
    }
}

/// One rollout's journal, events and protocol steps.
///
/// Parallel workers change the record and save it at once. Saves go one at
/// a time, and each stores the record as it is when its turn comes, so the
/// stored record never goes back to an older state (a save that took its
/// copy first but landed last would), and a change that an earlier save
/// carried already is not saved twice.
///
/// What a resumed run needs (the rollback target, the phase, the
/// strategy's state) is saved before the run goes on. The step about to be
/// taken is saved in the background once the journal holds this run's
/// record ([`Ops::note`]): a resumed run looks at what the backend and the
/// router hold, never at the step, which is there for people (`docker
/// rollout status`). A background save that fails fails the next step.
pub(crate) struct Ops<'a> {
    pub ctx: &'a RolloutContext,
    pub plan: &'a Plan,
    record: Arc<Mutex<Versioned>>,
    /// Held for the length of a save; the version the journal holds.
    saved: Arc<tokio::sync::Mutex<u64>>,
    /// The step notes being saved in the background, and the error of one
    /// that failed.
    behind: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    behind_failed: Arc<Mutex<Option<String>>>,
    /// Whether the journal holds a record of this run.
    stored: Arc<std::sync::atomic::AtomicBool>,
    /// Whether a journal record from an earlier run was found.
    pub resumed: bool,
    /// The phase the earlier run left.
    pub resumed_phase: Option<Phase>,
    /// The revision served before the first attempt.
    pub from: Option<Revision>,
    /// Whether [`Ops::measure`] asked the router to keep measuring: the end
    /// of the run then lets go and brings the config back to rest.
    measuring: std::sync::atomic::AtomicBool,
    /// Who holds by the operator's pause now ([`crate::held`]).
    pub(crate) holds: crate::held::Holds,
    /// The router readying its first change's needs
    /// ([`TrafficRouter::warm`]), awaited before it settles.
    ///
    /// [`TrafficRouter::warm`]: rollout_core::TrafficRouter::warm
    warming: Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// Removals of stopped instances under way ([`Ops::retire_behind`]),
    /// and the error of one that failed, until a view or the end says it.
    removing: tokio::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>,
    removal_failed: Arc<Mutex<Option<BackendError>>>,
}

fn unique_id(plan: &Plan) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{}-{}-{nanos:x}", plan.service, std::process::id())
}

/// The revision most running instances of `instances` run, other than `not`.
pub(crate) fn majority_revision<'i>(
    instances: impl Iterator<Item = &'i Instance>,
    not: &str,
) -> Option<Revision> {
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for i in instances {
        if i.state == InstanceState::Running && i.revision != not {
            *counts.entry(i.revision.as_str()).or_default() += 1;
        }
    }
    counts
        .into_iter()
        .max_by(|a, b| a.1.cmp(&b.1).then(b.0.cmp(a.0)))
        .map(|(id, _)| Revision::new(id, ""))
}

/// Saves the record unless the journal holds version `mine` or a later one
/// already; one save at a time, of the record as it is when its turn comes.
async fn save_from(
    record: &Mutex<Versioned>,
    saved: &tokio::sync::Mutex<u64>,
    journal: &dyn rollout_core::Journal,
    mine: u64,
) -> Result<(), JournalError> {
    let mut saved = saved.lock().await;
    if *saved >= mine {
        return Ok(());
    }
    let (latest, version) = {
        let r = record.lock().unwrap_or_else(|e| e.into_inner());
        (r.record.clone(), r.version)
    };
    journal.save(&latest).await?;
    *saved = version;
    Ok(())
}

impl<'a> Ops<'a> {
    /// Takes the lock, reads the journal, and works out the rollback target.
    /// `Err` carries the outcome to return at once (the lock is held by
    /// someone else, or the journal cannot be read).
    pub async fn begin(
        ctx: &'a RolloutContext,
        plan: &'a Plan,
        strategy: StrategyKind,
    ) -> Result<Ops<'a>, Outcome> {
        let fail = |e: String| {
            let outcome = Outcome::Failed(e);
            ctx.events.send(Event::Finished {
                outcome: outcome.clone(),
            });
            outcome
        };
        match ctx.journal.lock(&plan.service, &lock_holder()).await {
            Ok(()) => {}
            Err(e @ JournalError::Locked { .. }) => {
                let outcome = Outcome::Busy(e.to_string());
                ctx.events.send(Event::Finished {
                    outcome: outcome.clone(),
                });
                return Err(outcome);
            }
            Err(e) => return Err(fail(e.to_string())),
        }
        // The router readies its first change's needs while the journal is
        // read and the run is planned (the run's end lets them go).
        let router = ctx.router.clone();
        let warming = tokio::spawn(async move { router.warm().await });
        let cold = |warming: tokio::task::JoinHandle<()>| async move {
            let _ = warming.await;
            let _ = ctx.router.settle().await;
        };
        let found = match ctx.journal.load(&plan.service).await {
            Ok(r) => r,
            Err(e) => {
                cold(warming).await;
                let _ = ctx.journal.unlock(&plan.service).await;
                return Err(fail(e.to_string()));
            }
        };
        let from_service = match &plan.layout {
            rollout_core::strategy::TrafficLayout::Single => &plan.service,
            rollout_core::strategy::TrafficLayout::Colours { other, .. } => other,
        };
        let (record, resumed, resumed_phase) = match found {
            Some(mut r) => {
                // A journal from an earlier attempt keeps its `from`: a new
                // target does not lose the rollback target (moby#37693).
                let phase = (r.to == plan.target).then_some(r.phase);
                if r.to != plan.target {
                    r.to = plan.target.clone();
                    r.phase = Phase::Updating;
                    r.state = json!({});
                }
                // The operator's pause belongs to the process that held:
                // this run starts unheld.
                if let Some(o) = r.state.as_object_mut() {
                    o.remove(crate::held::PAUSED);
                }
                r.strategy = strategy.to_string();
                (r, true, phase)
            }
            None => {
                let from = match ctx.backend.instances(from_service).await {
                    Ok(list) => majority_revision(list.iter(), &plan.target.id),
                    Err(e) => {
                        cold(warming).await;
                        let _ = ctx.journal.unlock(&plan.service).await;
                        return Err(fail(e.to_string()));
                    }
                };
                // The instances name their revision by id alone; the backend
                // says what image that is, for people (a failure to say so
                // costs only the words).
                let from = match from {
                    Some(bare) => Some(
                        ctx.backend
                            .describe(from_service, &bare.id)
                            .await
                            .ok()
                            .filter(|r| r.id == bare.id)
                            .unwrap_or(bare),
                    ),
                    None => None,
                };
                (
                    JournalRecord {
                        rollout_id: unique_id(plan),
                        service: plan.service.clone(),
                        strategy: strategy.to_string(),
                        from,
                        to: plan.target.clone(),
                        phase: Phase::Updating,
                        step: None,
                        state: json!({}),
                    },
                    false,
                    None,
                )
            }
        };
        let from = record.from.clone();
        Ok(Ops {
            ctx,
            plan,
            record: Arc::new(Mutex::new(Versioned { record, version: 0 })),
            saved: Arc::new(tokio::sync::Mutex::new(0)),
            behind: Mutex::new(Vec::new()),
            behind_failed: Arc::new(Mutex::new(None)),
            stored: Arc::new(std::sync::atomic::AtomicBool::new(false)),
            resumed,
            resumed_phase,
            from,
            measuring: std::sync::atomic::AtomicBool::new(false),
            holds: Default::default(),
            warming: Mutex::new(Some(warming)),
            removing: tokio::sync::Mutex::new(Vec::new()),
            removal_failed: Arc::new(Mutex::new(None)),
        })
    }

    fn rec(&self) -> std::sync::MutexGuard<'_, Versioned> {
        self.record.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Changes the record with `f` and saves it: returns once the journal
    /// holds a record that carries this change.
    async fn update(
        &self,
        f: impl FnOnce(&mut JournalRecord),
    ) -> Result<(), rollout_core::JournalError> {
        if let Some(e) = self.behind_error() {
            return Err(JournalError::Storage(e));
        }
        let mine = {
            let mut r = self.rec();
            f(&mut r.record);
            r.version += 1;
            r.version
        };
        save_from(&self.record, &self.saved, &*self.ctx.journal, mine).await?;
        self.stored.store(true, std::sync::atomic::Ordering::SeqCst);
        Ok(())
    }

    /// Saves the record in the background, once the journal holds one of
    /// this run (before that, at once: the first save is what a resumed run
    /// finds). Fails with the error of an earlier background save.
    async fn update_behind(&self, f: impl FnOnce(&mut JournalRecord)) -> Res<()> {
        if let Some(e) = self.behind_error() {
            return Err(JournalError::Storage(e).into());
        }
        if !self.stored.load(std::sync::atomic::Ordering::SeqCst) {
            self.update(f).await?;
            return Ok(());
        }
        let mine = {
            let mut r = self.rec();
            f(&mut r.record);
            r.version += 1;
            r.version
        };
        let (record, saved, journal) = (
            self.record.clone(),
            self.saved.clone(),
            self.ctx.journal.clone(),
        );
        let failed = self.behind_failed.clone();
        let task = tokio::spawn(async move {
            if let Err(e) = save_from(&record, &saved, &*journal, mine).await {
                failed
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .get_or_insert(e.to_string());
            }
        });
        let mut behind = self.behind.lock().unwrap_or_else(|p| p.into_inner());
        behind.retain(|t| !t.is_finished());
        behind.push(task);
        Ok(())
    }

    fn behind_error(&self) -> Option<String> {
        self.behind_failed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Waits for the step notes still being saved.
    async fn behind_done(&self) {
        let tasks = std::mem::take(&mut *self.behind.lock().unwrap_or_else(|p| p.into_inner()));
        for t in tasks {
            let _ = t.await;
        }
    }

    /// Announces the rollout.
    pub fn started(&self, slots: usize) {
        self.ctx.events.send(Event::RolloutStarted {
            service: self.plan.service.clone(),
            strategy: self.rec().strategy.clone(),
            from: self.from.clone(),
            to: self.plan.target.clone(),
            slots,
            resumed: self.resumed,
        });
    }

    /// Whether this run finishes a rollback that an earlier run left under
    /// way; the run is announced then. See [`Opening::FinishRollback`].
    pub fn finishing_rollback(&self) -> bool {
        let finishing = self.resumed_phase == Some(Phase::RollingBack);
        if finishing {
            self.started(self.plan.replicas);
        }
        finishing
    }

    /// The opening of a run in the single layout: an interrupted rollback is
    /// finished first; a run that resumes nothing and finds the service at
    /// rest on the target changes nothing; any other run is announced and
    /// goes on.
    pub async fn open_single(&self) -> Opening {
        let plan = self.plan;
        if self.finishing_rollback() {
            return Opening::FinishRollback;
        }
        if !self.resumed {
            match self.view(&plan.service).await {
                Ok(v) if v.at_rest(&plan.service.service, &plan.target.id, plan.replicas) => {
                    return Opening::End(Outcome::NoChange)
                }
                Ok(_) => {}
                Err(e) => return Opening::End(Outcome::Failed(e.to_string())),
            }
        }
        self.started(plan.replicas);
        Opening::Update
    }

    /// Ends the run: the journal is cleared when the service is in a final
    /// state, kept (with its phase) when a later run has work to do; the lock
    /// is given back and the outcome reported.
    pub async fn end(&self, outcome: Outcome) -> Outcome {
        // No removal is left under way, and none failed unsaid.
        let outcome = match (self.removed_behind().await, outcome) {
            (Err(e), Outcome::Completed) => Outcome::CompletedWithFailures(format!(
                "{e}\nhint: the instance is stopped; the next rollout of the service removes it"
            )),
            (_, outcome) => outcome,
        };
        // No save of this run lands after the journal is cleared or the
        // lock given back.
        self.behind_done().await;
        let outcome = self.end_measuring(outcome).await;
        let outcome = self.settle_router(outcome).await;
        let keep = !matches!(
            &outcome,
            Outcome::Completed
                | Outcome::NoChange
                | Outcome::CompletedWithFailures(_)
                | Outcome::RolledBack(_)
                | Outcome::Interrupted(true)
        );
        let paused = matches!(outcome, Outcome::Paused(_));
        // A step note that failed to save in the background: the journal
        // refused this run's writes (another run wrote it, or it cannot be
        // written). It is left as it is, for the next run to judge.
        let journaled = if let Some(e) = self.behind_error() {
            Err(JournalError::Storage(e))
        } else if keep {
            self.update(|r| {
                if paused {
                    r.phase = Phase::Paused;
                }
            })
            .await
        } else {
            let _saving = self.saved.lock().await;
            self.ctx.journal.clear(&self.plan.service).await
        };
        let outcome = match (journaled, outcome) {
            (Err(e), Outcome::Completed | Outcome::NoChange) => Outcome::Failed(e.to_string()),
            (_, o) => o,
        };
        let _ = self.ctx.journal.unlock(&self.plan.service).await;
        self.ctx.events.send(Event::Finished {
            outcome: outcome.clone(),
        });
        outcome
    }

    /// Records the step about to be taken (in the background once the
    /// journal holds this run's record: see [`Ops`]).
    pub async fn note(&self, step: Step) -> Res<()> {
        self.update_behind(|r| r.step = Some(step)).await
    }

    /// Sets the phase and saves.
    pub async fn set_phase(&self, phase: Phase) -> Res<()> {
        self.update(|r| r.phase = phase).await?;
        Ok(())
    }

    /// A value of the strategy's state.
    pub fn state(&self, key: &str) -> Option<Value> {
        self.rec().state.get(key).cloned()
    }

    /// Keeps `value` under `key` of the strategy's state for people to read
    /// (`docker rollout status`), leaving the noted step as it is; saved
    /// only when `same` says it differs from what is kept (a journal save
    /// costs the engine a container).
    pub async fn remember(
        &self,
        key: &str,
        value: Value,
        same: impl Fn(&Value, &Value) -> bool,
    ) -> Res<()> {
        if self.state(key).is_some_and(|kept| same(&kept, &value)) {
            return Ok(());
        }
        self.update(|r| {
            if !r.state.is_object() {
                r.state = json!({});
            }
            r.state[key] = value;
        })
        .await?;
        Ok(())
    }

    /// Changes the strategy's state with `f` (an object) and saves it,
    /// leaving the noted step as it is.
    pub async fn update_state(&self, f: impl FnOnce(&mut Value)) -> Res<()> {
        self.update(|r| {
            if !r.state.is_object() {
                r.state = json!({});
            }
            f(&mut r.state);
        })
        .await?;
        Ok(())
    }

    /// Sets a value of the strategy's state and saves it.
    pub async fn set_state(&self, key: &str, value: Value) -> Res<()> {
        self.update(|r| {
            if !r.state.is_object() {
                r.state = json!({});
            }
            r.state[key] = value.clone();
            r.step = Some(Step::Note {
                detail: json!({ key: value }),
            });
        })
        .await?;
        Ok(())
    }

    /// The instances of a service and the routes.
    pub async fn view(&self, service: &rollout_core::ServiceRef) -> Res<View> {
        // A view never shows an instance half removed.
        self.removed_behind().await?;
        // Both asked at once: a view is on the path of every stop-first slot.
        let (instances, routes) = tokio::join!(
            self.ctx.backend.instances(service),
            self.ctx.router.routes()
        );
        let instances = instances?;
        let routes = self.named(routes?, &instances).await?;
        Ok(View::new(instances, routes))
    }

    /// The router's routes, each instance route naming the instance its
    /// host is as the backend knows it.
    ///
    /// A router may know instances only by the host its config names (nginx
    /// reads container names back from its file and reports them as ids);
    /// the backend knows them by its own ids (container ids). Strategies
    /// compare routes with instances by id (on resume above all), so a route
    /// takes the id of the instance of the plan's services with its host.
    /// `known` are instances at hand; the services are listed only when a
    /// routed host is not among them.
    pub async fn routes(&self, known: &[Instance]) -> Res<Vec<Route>> {
        let routes = self.ctx.router.routes().await?;
        self.named(routes, known).await
    }

    /// `routes` as [`Ops::routes`] returns them: each instance route naming
    /// the instance its host is as the backend knows it.
    async fn named(&self, mut routes: Vec<Route>, known: &[Instance]) -> Res<Vec<Route>> {
        let mut by_host: HashMap<&str, &InstanceId> =
            known.iter().map(|i| (i.host.as_str(), &i.id)).collect();
        let unknown = routes.iter().any(|r| {
            matches!(&r.target, Target::Instance { host, .. } if !by_host.contains_key(host.as_str()))
        });
        let mut listed = Vec::new();
        if unknown {
            let mut services = vec![&self.plan.service];
            if let rollout_core::strategy::TrafficLayout::Colours { other, .. } = &self.plan.layout
            {
                services.push(other);
            }
            for s in services {
                listed.extend(self.ctx.backend.instances(s).await?);
            }
            by_host = listed.iter().map(|i| (i.host.as_str(), &i.id)).collect();
        }
        for r in &mut routes {
            if let Target::Instance { id, host } = &mut r.target {
                if let Some(real) = by_host.get(host.as_str()) {
                    *id = (*real).clone();
                }
            }
        }
        Ok(routes)
    }

    /// Launches one instance of `rev`. `Ok(Err(_))` is a launch that failed
    /// as a task (counted), `Err` the backend failing.
    pub async fn launch(
        &self,
        service: &rollout_core::ServiceRef,
        rev: &Revision,
    ) -> Res<Result<Instance, Failure>> {
        self.note(Step::Launch {
            revision: rev.id.clone(),
            count: 1,
        })
        .await?;
        match self.ctx.backend.launch(service, rev, 1).await {
            Ok(mut list) => {
                let i = list.pop().ok_or_else(|| {
                    StrategyError::Backend(rollout_core::BackendError::Other(format!(
                        "launch of {service} returned no instance"
                    )))
                })?;
                self.ctx.events.send(Event::InstanceLaunched {
                    instance: i.id.clone(),
                    host: i.host.clone(),
                    revision: i.revision.clone(),
                });
                Ok(Ok(i))
            }
            Err(rollout_core::BackendError::Launch { reason, .. }) => {
                Ok(Err(Failure::LaunchFailed(reason)))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Waits for `i` to be healthy, within the start timeout, unless the
    /// operator's cancel reaches `level` first.
    pub async fn gate(&self, i: &Instance, level: CancelLevel) -> Res<Gate> {
        tokio::select! {
            biased;
            r = self.ctx.backend.wait_healthy(&i.id, &self.plan.timeouts) => match r? {
                Ok(()) => {
                    self.ctx.events.send(Event::InstanceHealthy { instance: i.id.clone() });
                    Ok(Gate::Healthy)
                }
                Err(f) => Ok(Gate::Failed(f)),
            },
            _ = self.ctx.cancel.reached(level) => Ok(Gate::Cancelled),
        }
    }

    /// Asks the router to keep measuring the traffic from now on, at rest
    /// too, when an analysis judges this rollout and the router measures
    /// (nginx opened with the tool's log): a blue-green switch to the other
    /// colour brings the upstream to rest at once, yet the new colour is
    /// judged for a window. The config is brought in line at once, so that
    /// the old revision's requests before the switch are in the window and
    /// a run resumed after the switch measures too. The end of the run lets
    /// go ([`Ops::end`]).
    pub async fn measure(&self) -> Res<()> {
        if self.ctx.analysis.is_none() || !self.ctx.router.keep_measuring(true) {
            return Ok(());
        }
        self.measuring
            .store(true, std::sync::atomic::Ordering::SeqCst);
        self.ctx.router.apply(&RouteChange::default()).await?;
        Ok(())
    }

    /// Lets the next change to rest remove what [`Ops::measure`] kept: the
    /// switch back of a failed rollout is one change, measure and all.
    pub fn stop_measuring(&self) {
        if self.measuring.load(std::sync::atomic::Ordering::SeqCst) {
            self.ctx.router.keep_measuring(false);
        }
    }

    /// Brings the config back to rest once a run that measured ends: what
    /// [`Ops::measure`] kept goes when the routes are at rest (one more
    /// change, empty but for that). Not after a second Ctrl-C (the next run
    /// resumes, measuring again). A completed run whose config cannot be
    /// brought back says so, exit 0 still: the traffic is where it should be.
    async fn end_measuring(&self, outcome: Outcome) -> Outcome {
        if !self.measuring.load(std::sync::atomic::Ordering::SeqCst)
            || outcome == Outcome::Interrupted(false)
        {
            return outcome;
        }
        self.ctx.router.keep_measuring(false);
        match (self.ctx.router.apply(&RouteChange::default()).await, outcome) {
            (Err(e), Outcome::Completed) => Outcome::CompletedWithFailures(format!(
                "the tool's access log could not be taken out of the proxy config: {e}\nhint: the next rollout of the service removes it"
            )),
            (_, outcome) => outcome,
        }
    }

    /// Lets the router finish what it put off ([`TrafficRouter::settle`]).
    /// Not after a second Ctrl-C: the operator wants out, and what is left
    /// moves no request. A completed run whose router cannot settle says
    /// so, as [`Ops::end_measuring`] does.
    ///
    /// [`TrafficRouter::settle`]: rollout_core::TrafficRouter::settle
    async fn settle_router(&self, outcome: Outcome) -> Outcome {
        if outcome == Outcome::Interrupted(false) {
            return outcome;
        }
        // What the router readies as the run begins is let go after it.
        let warming = self
            .warming
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(warming) = warming {
            let _ = warming.await;
        }
        match (self.ctx.router.settle().await, outcome) {
            (Err(e), Outcome::Completed) => Outcome::CompletedWithFailures(format!(
                "the proxy's bookkeeping after the drains was not finished: {e}\nhint: no request goes to what was drained; a later rollout through this proxy finishes it"
            )),
            (_, outcome) => outcome,
        }
    }

    /// Applies one route change (skipped when empty).
    pub async fn route(&self, change: RouteChange) -> Res<Option<DrainTicket>> {
        self.route_showing(change, Vec::new()).await
    }

    /// Applies one route change and reports `also_out` as taken out too:
    /// instances that got traffic through the service name and that the
    /// change leaves out of the per-instance routes replacing it.
    pub async fn route_showing(
        &self,
        change: RouteChange,
        also_out: Vec<Target>,
    ) -> Res<Option<DrainTicket>> {
        if change.is_empty() {
            return Ok(None);
        }
        self.note(Step::Route {
            change: change.clone(),
        })
        .await?;
        let ticket = self.ctx.router.apply(&change).await?;
        if !self.ctx.router.carries_traffic() {
            // Bookkeeping only: no request changed its way.
            return Ok(Some(ticket));
        }
        let mut removed = change.remove;
        for t in also_out {
            if !removed.contains(&t) {
                removed.push(t);
            }
        }
        self.ctx.events.send(Event::TrafficChanged {
            generation: ticket.generation,
            set: change.set,
            removed,
        });
        Ok(Some(ticket))
    }

    /// Waits for the drain of what `ticket` took out.
    pub async fn drain(&self, ticket: &DrainTicket) -> Res<DrainReport> {
        if ticket.removed.is_empty() || !self.ctx.router.carries_traffic() {
            return Ok(DrainReport::default());
        }
        self.note(Step::Drain {
            ticket: ticket.clone(),
        })
        .await?;
        let report = self
            .ctx
            .router
            .drain(ticket, self.plan.timeouts.drain)
            .await?;
        self.ctx.events.send(Event::Drained {
            removed: ticket.removed.clone(),
            report: report.clone(),
        });
        Ok(report)
    }

    /// Reports a counted failure, with what the instance left behind.
    pub async fn failure_counted(
        &self,
        instance: &InstanceId,
        failure: Failure,
        failures: usize,
        slots: usize,
    ) {
        let diagnostics = self
            .ctx
            .backend
            .diagnostics(instance)
            .await
            .unwrap_or_default();
        self.ctx.events.send(Event::FailureCounted {
            instance: instance.clone(),
            failure,
            failures,
            slots,
            diagnostics,
        });
    }

    /// Moves the service from its name to per-instance routes, so that
    /// instances launched from now on are not picked up by the proxy before
    /// they are ready. With `route_new`, also routes ready instances of
    /// `target` that an earlier run launched but did not route yet. Takes
    /// unready or vanished
    /// instances out, and sets the weight of the others to `other_weight`.
    /// Returns the ticket of what it took out.
    pub async fn normalize(
        &self,
        view: &View,
        target: Option<&str>,
        other_weight: u32,
        route_new: bool,
    ) -> Res<Option<DrainTicket>> {
        let change = self.normalize_change(view, target, other_weight, route_new);
        self.route(change).await
    }

    /// The change [`Ops::normalize`] applies, for a caller that adds to it
    /// before applying (one reload instead of two).
    pub fn normalize_change(
        &self,
        view: &View,
        target: Option<&str>,
        other_weight: u32,
        route_new: bool,
    ) -> RouteChange {
        let name = &self.plan.service.service;
        let by_name = view.service_routed(name);
        let direct = view.direct();
        let mut change = RouteChange::default();
        let mut known = std::collections::HashSet::new();
        let mut unready = Vec::new();
        for i in &view.instances {
            known.insert(&i.id);
            let routed_direct = direct.get(&i.id).copied();
            let routed = routed_direct.is_some() || (by_name && i.state == InstanceState::Running);
            let is_target = Some(i.revision.as_str()) == target;
            let want = if is_target { 1 } else { other_weight };
            if i.is_ready() {
                if (routed || (is_target && route_new)) && routed_direct.is_none() {
                    change.set.push(Route {
                        target: target_of(i),
                        weight: if routed { want } else { 1 },
                    });
                } else if routed_direct.is_some_and(|w| !is_target && w != want) {
                    change.set.push(Route {
                        target: target_of(i),
                        weight: want,
                    });
                }
            } else if routed_direct.is_some() {
                change.remove.push(target_of(i));
                unready.push(target_of(i));
            }
        }
        if by_name {
            change.remove.push(service_target(name));
        }
        // An upstream with no server answers nothing, and the proxy refuses
        // one: unready instances (which may still answer) stay routed while
        // nothing else would be.
        let kept = view
            .routes
            .iter()
            .filter(|r| !change.remove.contains(&r.target))
            .count();
        let added = change
            .set
            .iter()
            .filter(|s| !view.routes.iter().any(|r| r.target == s.target))
            .count();
        if kept + added == 0 {
            change.remove.retain(|t| !unready.contains(t));
        }
        if let rollout_core::strategy::TrafficLayout::Single = self.plan.layout {
            // In the single layout the upstream is the service's own: a
            // route to an instance that no longer exists would make the
            // proxy refuse its configuration.
            for r in &view.routes {
                if let Target::Instance { id, .. } = &r.target {
                    if !known.contains(id) && !change.remove.contains(&r.target) {
                        change.remove.push(r.target.clone());
                    }
                }
            }
        }
        change
    }

    /// Removes what exited and will not run again.
    pub async fn remove_exited(&self, view: &View) -> Res<()> {
        let exited: Vec<Instance> = view
            .instances
            .iter()
            .filter(|i| i.state != InstanceState::Running)
            .cloned()
            .collect();
        for i in &exited {
            self.ctx.backend.remove(&i.id).await?;
            self.ctx.events.send(Event::InstanceRemoved {
                instance: i.id.clone(),
            });
        }
        Ok(())
    }

    /// Stops and removes the old set of the single layout once it drained
    /// ([`View::old_set`]), and puts the service back at rest on its name.
    pub async fn retire_old(&self, old: &[Instance]) -> Res<()> {
        self.retire(old).await?;
        self.settle(&self.plan.target.id).await?;
        Ok(())
    }

    /// Puts the service back at rest on its name, when every running
    /// instance of it runs `rev` and is ready (DESIGN.md, "Traffic through
    /// nginx"). Returns whether it did.
    pub async fn settle(&self, rev: &str) -> Res<bool> {
        let service = &self.plan.service;
        let view = self.view(service).await?;
        let running: Vec<&Instance> = view.running().collect();
        if running.is_empty() || !running.iter().all(|i| i.revision == rev && i.is_ready()) {
            return Ok(false);
        }
        let mut change = RouteChange::default();
        let direct = view.direct();
        for i in &view.instances {
            if direct.contains_key(&i.id) {
                change.remove.push(target_of(i));
            }
        }
        let name = &service.service;
        let named = view
            .routes
            .iter()
            .find(|r| r.target == service_target(name));
        if named.is_none_or(|r| r.weight != 1) {
            change.set.push(Route {
                target: service_target(name),
                weight: 1,
            });
        }
        self.route(change).await?;
        Ok(true)
    }
}
