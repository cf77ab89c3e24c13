//! The standby approach of `PLAN.md`: a rolling update of a stack's service on a swarm, with
//! the verified drain before any task with traffic is stopped.
//!
//! 1. A standby copy of the home service's serving spec (`STACK_S--standby`, no network
//!    alias, so the service's name never resolves to it) runs as many tasks as the capacity
//!    floor needs; once they run (healthy: Swarm says `running` only then) they take the
//!    traffic and the home's tasks are unrouted and drained.
//! 2. Swarm's native update of the home service, with the operator's `update_config` and
//!    `rollback_config` mapped by [`crate::update`]. Each new task that runs is routed, and
//!    one standby task unrouted for it, a batch in one change (a task that runs waits up to
//!    1 s for the rest of its batch still starting); the run does not wait for that drain (the
//!    task keeps running), so Swarm's next batch is routed as soon as it runs.
//! 3. Completed or rolled back, and the service's name resolves to its serving tasks only
//!    in every replica of the proxy (or, where the proxy cannot say, the replaced tasks have
//!    stopped; [`crate::steps::wait_routable`]): the upstream goes back to the routes it had
//!    (that name); the standby's tasks are drained,
//!    by that change's ticket and by the ones not waited for (within one drain timeout), and
//!    the standby is removed. The new tasks that change takes off the list need no drain:
//!    they go on serving behind the name, and nothing stops them.
//!    Exit 0, or 3 after Swarm's automatic rollback; 4 when Swarm paused, 5 when its rollback
//!    paused (the standby keeps serving, and a rerun resumes).
//!
//! The standby's labels are the run's lock and journal ([`crate::record`]): a second run is
//! busy, and a rerun after a killed run takes the standby over and resumes.

use crate::api::{lingering, wanted, ApiError, SwarmApi, TaskInfo};
use crate::checks::{
    dnsrr_replicas, image_of, proxy_tasks, shared_network, spec_of, swarm_configs, version_of,
    wanted_replicas, ProxyTask, StackView,
};
use crate::record::{Record, HOLDER_LABEL};
use crate::stack;
use crate::status::UpdateState;
use crate::steps::{
    change_and_drain, change_and_drain_of, change_only, down_nodes, drain_pending, fingerprint,
    outcome_of, status_moved, wait_routable, wait_serving,
};
pub use crate::steps::{Say, Tell};
use crate::update;
use bollard::models::{
    NetworkAttachmentConfig, Service, ServiceSpec, ServiceSpecMode, ServiceSpecModeReplicated,
};
use rollout_core::config::{RollbackConfig, UpdateConfig};
use rollout_core::event::{Event, Outcome};
use rollout_core::exit;
use rollout_core::journal::Liveness;
use rollout_core::model::{Revision, ServiceRef};
use rollout_core::router::{DrainTicket, Route, RouteChange, Target, TrafficRouter};
use rollout_core::InstanceId;
use rollout_docker::lock::judge;
use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

/// The label that marks a standby service, valued with its home service's name.
pub const STANDBY_LABEL: &str = "io.rollout.standby-of";

/// How long new tasks that serve wait, unrouted, for the rest of their batch to serve.
const BATCH_WAIT: Duration = Duration::from_secs(1);

/// The label Swarm puts on a task's container: the service's name.
pub const SERVICE_NAME_LABEL: &str = "com.docker.swarm.service.name";

/// A rollout that could not start or did not finish, with its exit code.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct SwarmFail {
    /// `rollout_core::exit`'s code.
    pub code: i32,
    /// What happened, and a hint where there is one.
    pub message: String,
}

impl SwarmFail {
    pub(crate) fn bad_input(message: impl Into<String>) -> Self {
        Self {
            code: exit::BAD_INPUT,
            message: message.into(),
        }
    }

    pub(crate) fn unexpected(message: impl Into<String>) -> Self {
        Self {
            code: exit::UNEXPECTED,
            message: message.into(),
        }
    }
}

impl From<ApiError> for SwarmFail {
    fn from(e: ApiError) -> Self {
        Self {
            code: exit::UNREACHABLE,
            message: e.to_string(),
        }
    }
}

impl From<rollout_core::error::RouterError> for SwarmFail {
    fn from(e: rollout_core::error::RouterError) -> Self {
        Self::unexpected(e.to_string())
    }
}

/// What the operator asked for.
#[derive(Debug, Clone)]
pub struct Request {
    /// The stack (`docker stack deploy ... NAME`).
    pub stack: String,
    /// The Compose service to update.
    pub service: String,
    /// The Compose service of the nginx in front of it.
    pub proxy: String,
    /// The image the Compose file names now.
    pub image: String,
    /// `deploy.update_config` (with the command line's overrides).
    pub update: UpdateConfig,
    /// `deploy.rollback_config`.
    pub rollback: RollbackConfig,
    /// How long a task may take to run (healthy).
    pub start_timeout: Duration,
    /// How long requests in flight may take after an unroute.
    pub drain_timeout: Duration,
    /// This run, as the holder of the standby (`Holder`'s writing).
    pub holder: String,
    /// nginx's upstream the service is routed through, kept on the standby for a rerun;
    /// empty until the caller has found it (after [`find`], which may take it from the
    /// standby an earlier run left).
    pub upstream: String,
}

/// The stack's services as found on the swarm, checked.
#[derive(Debug, Clone)]
pub struct Found {
    /// The home service (`STACK_S`).
    pub home: Service,
    /// Its name.
    pub home_name: String,
    /// The standby's name.
    pub standby_name: String,
    /// Desired replicas of the home.
    pub replicas: usize,
    /// The network the proxy reaches the home's tasks on (its id).
    pub network: String,
    /// The image that serves now: the home's, or a left standby's.
    pub current_image: String,
    /// The proxy service's name (`STACK_nginx`).
    pub proxy_name: String,
    /// The proxy's tasks, on this manager or other nodes.
    pub proxy_tasks: Vec<ProxyTask>,
    /// Swarm's `UpdateConfig` and `RollbackConfig` the native update will carry.
    pub swarm_update: update::ServiceSpecUpdateConfig,
    /// The same for rollbacks.
    pub swarm_rollback: update::ServiceSpecRollbackConfig,
    /// The standby an earlier run left, which this one resumes.
    pub left: Option<Left>,
}

/// A standby left by a run that did not finish (killed, or stopped with the standby serving),
/// free to be taken over.
#[derive(Debug, Clone)]
pub struct Left {
    /// The standby service, at the version it was read.
    pub standby: Service,
    /// What the earlier run kept on it.
    pub record: Record,
}

/// Finds and checks the stack's services; nothing is changed. A refusal is bad input (exit 2)
/// naming what is missing, busy (exit 7) when another run holds the standby, or unreachable
/// (exit 6) when the engine does not answer.
pub async fn find(api: &SwarmApi, req: &Request) -> Result<Found, SwarmFail> {
    let view = StackView::read(api, &req.stack).await?;
    let home = view.service(&req.service)?;
    let proxy = view.proxy(&req.proxy, &req.service)?;
    let home_name = stack::service_name(&req.stack, &req.service);
    let spec = spec_of(&home);
    let replicas = dnsrr_replicas(&home, &req.service)?;
    let network = shared_network(&home, &proxy)?;
    let standby_name = format!("{home_name}{STANDBY_SUFFIX}");
    let left = match api.service(&standby_name).await? {
        Some(standby) => Some(left_by_earlier_run(
            standby,
            &standby_name,
            &home_name,
            req,
        )?),
        None => None,
    };
    let (swarm_update, swarm_rollback) = swarm_configs(&req.update, &req.rollback)?;
    let proxy_name = stack::service_name(&req.stack, &req.proxy);
    let proxy_tasks = proxy_tasks(api, &proxy_name).await?;
    Ok(Found {
        // What serves: the standby's spec once an earlier run left one (the home's may name
        // the image that run asked for already).
        current_image: left
            .as_ref()
            .map_or_else(|| image_of(&spec), |l| image_of(&spec_of(&l.standby))),
        home,
        home_name,
        standby_name,
        replicas,
        network,
        proxy_name,
        proxy_tasks,
        swarm_update,
        swarm_rollback,
        left,
    })
}

/// The standby an earlier run left, when this run may take it over and resume: it is a
/// standby of `home_name` with its record, and no run holds it, or its holder is proven dead
/// from here. Busy (exit 7) when its holder runs or cannot be judged from this machine; bad
/// input when the service of that name is not a standby of ours.
fn left_by_earlier_run(
    standby: Service,
    standby_name: &str,
    home_name: &str,
    req: &Request,
) -> Result<Left, SwarmFail> {
    let labels = spec_of(&standby).labels.unwrap_or_default();
    if labels.get(STANDBY_LABEL).map(String::as_str) != Some(home_name) {
        return Err(SwarmFail::bad_input(format!(
            "a service {standby_name} exists and is not a standby of {home_name} (no label {STANDBY_LABEL}={home_name}): its name is the one the rollout needs\nhint: rename or remove that service"
        )));
    }
    let record = Record::read(&labels).map_err(|e| {
        SwarmFail::bad_input(format!(
            "{standby_name} exists: an earlier rollout of {home_name} did not finish, and its record cannot be read ({e})\nhint: check that nginx routes to {home_name}, then docker service rm {standby_name}"
        ))
    })?;
    if let Some(holder) = &record.holder {
        let busy = |why: &str| SwarmFail {
            code: exit::BUSY,
            message: format!(
                "{standby_name} is held by {holder} since {}: {why}",
                record.since
            ),
        };
        match judge(holder, &req.holder) {
            Liveness::Dead => {}
            Liveness::Alive => return Err(busy("another rollout of this service runs")),
            Liveness::Unknown => return Err(busy(&format!(
                "that run is not on this machine, and whether it still runs cannot be told from here\nhint: run the rollout again where that one ran; or, once sure it is gone, docker service update --label-rm {HOLDER_LABEL} {standby_name} and run it again"
            ))),
        }
    }
    Ok(Left { standby, record })
}

/// What is appended to the home's name for the standby.
pub const STANDBY_SUFFIX: &str = "--standby";

/// The plan as people read it (`--dry-run`, and the start of a run).
pub fn plan(found: &Found, req: &Request) -> String {
    let floor = req.update.capacity_floor(found.replicas).max(1);
    let u = &found.swarm_update;
    let r = &found.swarm_rollback;
    let ns = |v: Option<i64>| Duration::from_nanos(v.unwrap_or(0).max(0) as u64);
    let resume = match &found.left {
        Some(left) => format!(
            "0. resumes the rollout left by {} (since {}, to {}): its standby {} is taken over, nginx's routes at rest are the ones it kept; steps already done are checked, not redone\n",
            left.record.holder.as_deref().unwrap_or("a run that let it go"),
            left.record.since,
            left.record.image,
            found.standby_name
        ),
        None => String::new(),
    };
    format!(
        "swarm rollout of {home} (stack {stack}): {n} task(s), {from} -> {to}\n{resume}\
         1. standby {standby}: {floor} task(s) of {from} (the capacity floor), routed in nginx ({proxy}, {proxies} task(s)); the tasks of {home} unrouted and drained\n\
         2. Swarm's update of {home}: parallelism {p}, delay {d:?}, monitor {m:?}, failure_action {fa}, max_failure_ratio {ratio}, order {order}; rollback: parallelism {rp}, delay {rd:?}, monitor {rm:?}, failure_action {rfa}, order {rorder}\n\
         \x20  each new task routed once it runs, one standby task unrouted for it (drained before the standby goes)\n\
         3. nginx back to its routes at rest, the standby drained and removed",
        home = found.home_name,
        stack = req.stack,
        n = found.replicas,
        from = found.current_image,
        to = req.image,
        standby = found.standby_name,
        proxy = found.proxy_name,
        proxies = found.proxy_tasks.len(),
        p = u.parallelism.unwrap_or(1),
        d = ns(u.delay),
        m = ns(u.monitor),
        fa = u.failure_action.map(|a| a.to_string()).unwrap_or_default(),
        ratio = u.max_failure_ratio.unwrap_or(0.0),
        order = u.order.map(|o| o.to_string()).unwrap_or_default(),
        rp = r.parallelism.unwrap_or(1),
        rd = ns(r.delay),
        rm = ns(r.monitor),
        rfa = r.failure_action.map(|a| a.to_string()).unwrap_or_default(),
        rorder = r.order.map(|o| o.to_string()).unwrap_or_default(),
    )
}

/// The route of a task: its address on the proxy's network.
fn route(addr: &str) -> Route {
    Route {
        target: Target::instance(InstanceId(addr.to_string()), addr),
        weight: 1,
    }
}

fn target(addr: &str) -> Target {
    route(addr).target
}

/// The standby's spec: the home's serving spec, `replicas` tasks, no network alias (the
/// service's name must not resolve to it), labelled as the tool's.
fn standby_spec(found: &Found, replicas: usize) -> ServiceSpec {
    let mut spec = spec_of(&found.home);
    spec.name = Some(found.standby_name.clone());
    spec.labels
        .get_or_insert_with(HashMap::new)
        .insert(STANDBY_LABEL.to_string(), found.home_name.clone());
    spec.mode = Some(ServiceSpecMode {
        replicated: Some(ServiceSpecModeReplicated {
            replicas: Some(replicas as i64),
        }),
        ..Default::default()
    });
    if let Some(t) = spec.task_template.as_mut() {
        if let Some(networks) = t.networks.as_mut() {
            *networks = networks
                .iter()
                .map(|n| NetworkAttachmentConfig {
                    target: n.target.clone(),
                    aliases: None,
                    driver_opts: n.driver_opts.clone(),
                })
                .collect();
        }
    }
    spec
}

/// Runs the rollout (see the module's doc), or resumes the one [`Found::left`] names; the exit
/// code. A run that ends with the standby still there (Swarm paused, an error) lets it go
/// (its holder label taken off), so that a rerun resumes it.
pub async fn run(
    api: &SwarmApi,
    found: &Found,
    req: &Request,
    router: &dyn TrafficRouter,
    tell: Tell<'_>,
) -> Result<i32, SwarmFail> {
    let (ran, note) = match run_held(api, found, req, router, tell).await {
        Ok(Ended::Code(code)) => (Ok(code), None),
        Ok(Ended::WithNote(code, note)) => (Ok(code), Some(note)),
        Err(e) => (Err(e), None),
    };
    let outcome = match (outcome_of(&ran, found), note) {
        (Outcome::Paused(_), Some(note)) => Outcome::Paused(note),
        (Outcome::RollbackFailed(_), Some(note)) => Outcome::RollbackFailed(note),
        (outcome, _) => outcome,
    };
    tell.event(Event::Finished { outcome });
    let done = matches!(ran, Ok(code) if code == exit::SUCCESS || code == exit::ROLLED_BACK);
    if !done {
        match let_go(api, found, req).await {
            Ok(true) => tell.say(&format!(
                "{} is left serving and let go: docker rollout again resumes the rollout",
                found.standby_name
            )),
            Ok(false) => {}
            Err(e) => tell.say(&format!(
                "note: {} could not be let go ({e}); a rerun on this machine takes it over once this process is gone",
                found.standby_name
            )),
        }
    }
    ran
}

/// Takes this run's holder label off the standby, if it is there and ours, so that a rerun
/// resumes the rollout; whether it did. [`run`] does it for a run that ends with the standby
/// left; a caller that cuts a run does it itself.
pub async fn let_go(api: &SwarmApi, found: &Found, req: &Request) -> Result<bool, SwarmFail> {
    let Some(standby) = api.service(&found.standby_name).await? else {
        return Ok(false);
    };
    let mut spec = spec_of(&standby);
    let labels = spec.labels.get_or_insert_with(HashMap::new);
    if labels.get(HOLDER_LABEL) != Some(&req.holder) {
        return Ok(false);
    }
    labels.remove(HOLDER_LABEL);
    api.update(&found.standby_name, version_of(&standby), spec)
        .await?;
    Ok(true)
}

/// The standby's tasks wanted, as its spec says.
fn replicas_of(s: &Service) -> usize {
    wanted_replicas(s).unwrap_or(1)
}

/// The standby's holder as it stands: `None` when there is no standby, `Some(None)` when no
/// run holds it.
async fn holder_of(api: &SwarmApi, found: &Found) -> Result<Option<Option<String>>, SwarmFail> {
    Ok(api.service(&found.standby_name).await?.map(|s| {
        spec_of(&s)
            .labels
            .and_then(|l| l.get(HOLDER_LABEL).cloned())
    }))
}

/// Busy: the standby was created, or taken over, by another run between this run's look and
/// its change.
fn raced(found: &Found) -> SwarmFail {
    SwarmFail {
        code: exit::BUSY,
        message: format!(
            "another rollout of {} took {} just now; nothing was changed",
            found.home_name, found.standby_name
        ),
    }
}

/// The standby this run holds: created with the run's record (the lock taken), or the
/// earlier run's taken over at the version it was read. The record and the standby's tasks
/// wanted.
async fn hold_standby(
    api: &SwarmApi,
    found: &Found,
    req: &Request,
    router: &dyn TrafficRouter,
    tell: Tell<'_>,
) -> Result<(Record, usize), SwarmFail> {
    let since = rollout_docker::engine::now_rfc3339();
    match &found.left {
        None => {
            let floor = req.update.capacity_floor(found.replicas).max(1);
            let record = Record {
                holder: Some(req.holder.clone()),
                since,
                at_rest: router.routes().await?,
                home_before: api
                    .tasks(&found.home_name)
                    .await?
                    .into_iter()
                    .map(|t| t.id)
                    .collect(),
                image: req.image.clone(),
                upstream: req.upstream.clone(),
            };
            let mut spec = standby_spec(found, floor);
            record.write(spec.labels.get_or_insert_with(HashMap::new));
            if let Err(e) = api.create(spec).await {
                // The create may have been made and its answer lost: ours if it carries us.
                match holder_of(api, found).await? {
                    Some(Some(h)) if h == req.holder => {}
                    Some(_) => return Err(raced(found)),
                    None => return Err(e.into()),
                }
            }
            tell.say(&format!(
                "standby {}: {floor} task(s) of {} starting",
                found.standby_name, found.current_image
            ));
            Ok((record, floor))
        }
        Some(left) => {
            let record = Record {
                holder: Some(req.holder.clone()),
                since,
                image: req.image.clone(),
                upstream: req.upstream.clone(),
                ..left.record.clone()
            };
            let mut spec = spec_of(&left.standby);
            record.write(spec.labels.get_or_insert_with(HashMap::new));
            if let Err(e) = api
                .update(&found.standby_name, version_of(&left.standby), spec)
                .await
            {
                // Ours if it carries us (the answer was lost); another run's if it carries
                // anyone else than the one taken over, or is gone.
                match holder_of(api, found).await? {
                    Some(Some(h)) if h == req.holder => {}
                    Some(h) if h == left.record.holder => return Err(e.into()),
                    _ => return Err(raced(found)),
                }
            }
            tell.say(&format!(
                "resuming the rollout of {} left by {} (since {}): its standby {} serves, nginx's routes at rest are the ones it kept",
                found.home_name,
                left.record.holder.as_deref().unwrap_or("a run that let it go"),
                left.record.since,
                found.standby_name
            ));
            Ok((record, replicas_of(&left.standby)))
        }
    }
}

/// Whether `t` is a task of the update: of the image asked for, and not among the home's
/// tasks before it.
fn of_the_update(t: &TaskInfo, record: &Record, req: &Request) -> bool {
    !record.home_before.contains(&t.id) && t.image_is(&req.image)
}

/// The home's tasks that serve the new image and did not run before the update (none while
/// Swarm rolls back): their addresses on the proxy's network.
fn serving_new(
    tasks: &[TaskInfo],
    record: &Record,
    req: &Request,
    network: &str,
    rolling_back: bool,
) -> BTreeSet<String> {
    let new = |t: &&TaskInfo| of_the_update(t, record, req);
    // Two new tasks Swarm wants in one slot (a node back after a cut off, whose task had been
    // replaced): Swarm stops one of them, so neither is routed until it has.
    let doubled = |t: &TaskInfo| {
        t.slot != 0
            && tasks
                .iter()
                .filter(new)
                .filter(|o| o.slot == t.slot && o.desired == "running")
                .count()
                > 1
    };
    tasks
        .iter()
        .filter(|t| t.serving() && !rolling_back)
        .filter(new)
        .filter(|t| !doubled(t))
        .filter_map(|t| t.addresses.get(network).cloned())
        .collect()
}

/// Whether `serving` new tasks not routed yet wait for the `starting` rest of their batch:
/// while any of it still starts, and for at most [`BATCH_WAIT`] after they were first held
/// (`seen`, kept by the caller and cleared once they go).
fn held_for_batch(
    serving: usize,
    starting: usize,
    seen: &mut Option<Instant>,
    now: Instant,
) -> bool {
    if serving == 0 || starting == 0 {
        *seen = None;
        return false;
    }
    if now.duration_since(*seen.get_or_insert(now)) < BATCH_WAIT {
        return true;
    }
    *seen = None;
    false
}

fn is_rolling_back(state: &UpdateState) -> bool {
    matches!(
        state,
        UpdateState::RollingBack(_) | UpdateState::RolledBack(_) | UpdateState::RollbackPaused(_)
    )
}

/// The rollout with the standby held ([`run`]).
async fn run_held(
    api: &SwarmApi,
    found: &Found,
    req: &Request,
    router: &dyn TrafficRouter,
    tell: Tell<'_>,
) -> Result<Ended, SwarmFail> {
    let resuming = found.left.is_some();
    let (record, standby_count) = hold_standby(api, found, req, router, tell).await?;
    tell.event(Event::RolloutStarted {
        service: ServiceRef::new(&req.stack, &req.service),
        strategy: "rolling".into(),
        from: Some(Revision::new(&found.current_image, &found.current_image)),
        to: Revision::new(&req.image, &req.image),
        slots: found.replicas,
        resumed: resuming,
    });
    let at_rest = record.at_rest.clone();
    // 1. The standby takes the traffic.
    let standby = match wait_serving(
        api,
        &found.standby_name,
        standby_count,
        &found.network,
        req.start_timeout,
    )
    .await
    {
        Ok(s) => s,
        Err(e) if !resuming => {
            // Nothing was routed to it yet.
            api.remove(&found.standby_name).await?;
            return Err(e);
        }
        Err(e) => return Err(e),
    };
    if !resuming {
        for a in &standby {
            let instance = InstanceId(a.clone());
            tell.event(Event::InstanceLaunched {
                instance: instance.clone(),
                host: a.clone(),
                revision: found.current_image.clone(),
            });
            tell.event(Event::InstanceHealthy { instance });
        }
    }
    // A resumed run keeps the new tasks the earlier one routed, and takes out everything
    // else but the standby (the routes at rest, the home's old tasks).
    let mut routed_home: BTreeSet<String> = BTreeSet::new();
    let remove: Vec<Target> = if resuming {
        // Read now: Swarm may have started rolling back while the standby started.
        let home = api.service(&found.home_name).await?;
        let state = UpdateState::of(home.as_ref().and_then(|h| h.update_status.as_ref()));
        let tasks = api.tasks(&found.home_name).await?;
        let new = serving_new(
            &tasks,
            &record,
            req,
            &found.network,
            is_rolling_back(&state),
        );
        let now = router.routes().await?;
        routed_home = new
            .into_iter()
            .filter(|a| now.iter().any(|r| r.target == target(a)))
            .collect();
        let keep: Vec<Target> = standby
            .iter()
            .chain(&routed_home)
            .map(|a| target(a))
            .collect();
        now.into_iter()
            .map(|r| r.target)
            .filter(|t| !keep.contains(t))
            .collect()
    } else {
        at_rest.iter().map(|r| r.target.clone()).collect()
    };
    let change = RouteChange {
        set: standby.iter().map(|a| route(a)).collect(),
        remove,
    };
    let ticket = match router.apply(&change).await {
        Ok(ticket) => ticket,
        Err(e) if !resuming => {
            // The router changed nothing: the standby goes.
            api.remove(&found.standby_name).await?;
            return Err(e.into());
        }
        Err(e) => return Err(e.into()),
    };
    tell.traffic(&ticket, &change);
    let report = router.drain(&ticket, req.drain_timeout).await?;
    tell.drained(&ticket, &report);
    tell.say(&format!(
        "standby routed, {} unrouted: drained in {:.1}s{}",
        found.home_name,
        report.elapsed.as_secs_f64(),
        if report.timed_out { " (timed out)" } else { "" }
    ));
    // 2. Swarm's native update of the home service; a resumed run whose earlier one asked
    // for this image already leaves Swarm's update (going, done or rolled back) as it is.
    // Read now: Swarm moves the service's version whenever its update status changes, and the
    // run may have waited since `find` read it.
    let home = api.service(&found.home_name).await?.ok_or_else(|| {
        SwarmFail::unexpected(format!(
            "{} was removed during the rollout",
            found.home_name
        ))
    })?;
    let mut spec = spec_of(&home);
    let asked = resuming && image_of(&spec) == req.image;
    if let Some(c) = spec
        .task_template
        .as_mut()
        .and_then(|t| t.container_spec.as_mut())
    {
        c.image = Some(req.image.clone());
    }
    spec.update_config = Some(found.swarm_update.clone());
    spec.rollback_config = Some(found.swarm_rollback.clone());
    if asked {
        tell.say(&format!(
            "Swarm was asked to update {} to {} by the earlier run",
            found.home_name, req.image
        ));
    } else if let Err(e) = api.update(&found.home_name, version_of(&home), spec).await {
        // Swarm changed nothing: the home's tasks take the traffic back, the standby goes.
        let mut change = RouteChange {
            set: at_rest.clone(),
            remove: standby
                .iter()
                .chain(&routed_home)
                .map(|a| target(a))
                .collect(),
        };
        change.set.retain(|r| !change.remove.contains(&r.target));
        change_and_drain(router, change, req.drain_timeout, tell, "standby unrouted").await?;
        api.remove(&found.standby_name).await?;
        return Err(e.into());
    } else {
        tell.say(&format!(
            "Swarm updates {} to {}",
            found.home_name, req.image
        ));
    }
    let mut standby_routed: Vec<String> = standby.clone();
    let mut standby_out: Vec<String> = Vec::new();
    let mut told_down: BTreeSet<String> = BTreeSet::new();
    // Swarm's updater waits on a task it placed on a node that was then cut off for as long
    // as the node is: a rollout whose home's tasks have not moved for this long with a node
    // not ready holds, the standby serving, and says so.
    let stall = req.update.delay + req.update.monitor + Duration::from_secs(30);
    let mut moved = (Vec::new(), Instant::now());
    let batches = found
        .replicas
        .div_ceil(req.update.parallelism.max(1) as usize)
        .max(1) as u32;
    let per_batch = req.update.delay + req.update.monitor + req.start_timeout;
    let started = Instant::now();
    let deadline = started + per_batch * (batches + 1) + Duration::from_secs(60);
    let mut rollback_told = false;
    // The drains of the changes made while Swarm updates: what they took out (standby tasks,
    // new tasks Swarm stops anyway) is not stopped by this run before the standby goes, so
    // the loop does not wait for them and Swarm's next batch is routed as soon as it runs.
    let mut pending: Vec<DrainTicket> = Vec::new();
    // When new tasks that serve were first held for the rest of their batch.
    let mut batch_seen: Option<Instant> = None;
    let end = loop {
        let service = api.service(&found.home_name).await?.ok_or_else(|| {
            SwarmFail::unexpected(format!(
                "{} was removed during the rollout",
                found.home_name
            ))
        })?;
        let state = UpdateState::of(service.update_status.as_ref());
        if is_rolling_back(&state) && !rollback_told {
            rollback_told = true;
            tell.event(Event::RollbackStarted {
                reason: format!("Swarm rolls {} back: {state:?}", found.home_name),
            });
        }
        // Every task of each service, in one list each; those Swarm wants running are taken
        // from it: a look is five requests to the manager, not nine, while it updates.
        let all = api.all_tasks(&found.home_name).await?;
        let all_standby = api.all_tasks(&found.standby_name).await?;
        let (tasks, standby_tasks) = (wanted(&all), wanted(&all_standby));
        let down = down_nodes(&[&all, &all_standby]);
        // What Swarm's updater can wait on: a new task on a node not ready.
        let stuck = down_nodes(&[&all
            .iter()
            .filter(|t| of_the_update(t, &record, req))
            .cloned()
            .collect::<Vec<_>>()]);
        let now_tasks = fingerprint(&all);
        if now_tasks != moved.0 {
            moved = (now_tasks, Instant::now());
        }
        for node in down.difference(&told_down) {
            tell.say(&format!(
                "node {node} is not ready (down, or cut off from the managers): its tasks of {} and {} are unrouted, and Swarm's replacements for them routed once they run",
                found.home_name, found.standby_name
            ));
        }
        told_down.extend(down.iter().cloned());
        let serving_new = serving_new(
            &tasks,
            &record,
            req,
            &found.network,
            is_rolling_back(&state),
        );
        // Standby tasks that no longer serve (their node cut off) are lost: not routed again.
        let standby_serving: BTreeSet<String> = standby_tasks
            .iter()
            .filter(|t| t.serving())
            .filter_map(|t| t.addresses.get(&found.network).cloned())
            .collect();
        let mut lost: Vec<String> = standby_routed
            .iter()
            .filter(|a| !standby_serving.contains(*a))
            .cloned()
            .collect();
        standby_routed.retain(|a| standby_serving.contains(a));
        standby_out.retain(|a| standby_serving.contains(a));
        // Routed new tasks Swarm no longer serves (or will stop in a rollback) go, the
        // standby taking their traffic back.
        let gone: Vec<String> = routed_home.difference(&serving_new).cloned().collect();
        for g in &gone {
            routed_home.remove(g);
        }
        let mut back: Vec<String> = if gone.is_empty() {
            Vec::new()
        } else {
            std::mem::take(&mut standby_out)
        };
        // While the routed tasks are under the standby's count (standby tasks lost): the
        // standby's unrouted tasks that still serve first, then any other standby task that
        // serves (Swarm's replacements, or a task whose node is ready again).
        let short =
            standby_count.saturating_sub(routed_home.len() + standby_routed.len() + back.len());
        let again: Vec<String> = standby_out.drain(..short.min(standby_out.len())).collect();
        back.extend(again);
        let short =
            standby_count.saturating_sub(routed_home.len() + standby_routed.len() + back.len());
        let fresh: Vec<String> = standby_serving
            .iter()
            .filter(|a| {
                !standby_routed.contains(a) && !back.contains(a) && !standby_out.contains(a)
            })
            .take(short)
            .cloned()
            .collect();
        back.extend(fresh);
        standby_routed.extend(back.iter().cloned());
        lost.extend(gone);
        if !lost.is_empty() || !back.is_empty() {
            let change = RouteChange {
                set: back.iter().map(|a| route(a)).collect(),
                remove: lost.iter().map(|a| target(a)).collect(),
            };
            pending.extend(
                change_only(
                    router,
                    change,
                    tell,
                    &format!(
                        "{} task(s) unrouted (replaced, rolled back or on a node not ready), {} standby task(s) routed",
                        lost.len(),
                        back.len()
                    ),
                )
                .await?,
            );
        }
        let mut add: Vec<String> = serving_new.difference(&routed_home).cloned().collect();
        // Swarm starts a batch's tasks together, and a poll may see some of them run before
        // the others: those wait for the rest of the batch (at most `BATCH_WAIT`), so that a
        // batch is one change, one reload.
        let starting = tasks
            .iter()
            .filter(|t| of_the_update(t, &record, req) && t.desired == "running")
            .filter(|t| t.node_ready && !t.serving() && !t.ended())
            .count();
        if held_for_batch(add.len(), starting, &mut batch_seen, Instant::now()) {
            add.clear();
        }
        if !add.is_empty() {
            for a in &add {
                tell.event(Event::InstanceHealthy {
                    instance: InstanceId(a.clone()),
                });
            }
            let retire: Vec<String> = standby_routed
                .drain(..add.len().min(standby_routed.len()))
                .collect();
            let change = RouteChange {
                set: add.iter().map(|a| route(a)).collect(),
                remove: retire.iter().map(|a| target(a)).collect(),
            };
            pending.extend(
                change_only(
                    router,
                    change,
                    tell,
                    &format!(
                        "{} new task(s) routed, {} standby task(s) unrouted (drained before the standby goes)",
                        add.len(),
                        retire.len()
                    ),
                )
                .await?,
            );
            routed_home.extend(add);
            standby_out.extend(retire);
        }
        if !state.in_progress() && state != UpdateState::None {
            break state;
        }
        if !stuck.is_empty() && moved.1.elapsed() > stall {
            let nodes = stuck.into_iter().collect::<Vec<_>>().join(", ");
            let (what, code) = if is_rolling_back(&state) {
                ("rollback", exit::ROLLBACK_FAILED)
            } else {
                ("update", exit::PAUSED)
            };
            let note = format!(
                "Swarm's {what} of {} has not moved for {stall:?} with node(s) {nodes} not ready: it waits on a new task placed there; the standby {} keeps serving, and docker rollout again resumes once the node is back (or removed: docker node rm)",
                found.home_name, found.standby_name
            );
            tell.say(&note);
            return Ok(Ended::WithNote(code, note));
        }
        // Swarm clears the status when it takes the new spec and sets it once it starts
        // replacing tasks; a spec it had nothing to replace for leaves it clear.
        if state == UpdateState::None
            && started.elapsed() > Duration::from_secs(5)
            && tasks
                .iter()
                .filter(|t| t.serving() && t.image_is(&req.image))
                .count()
                >= found.replicas
            && lingering(&all) == 0
        {
            break UpdateState::Completed;
        }
        if Instant::now() > deadline {
            return Err(SwarmFail::unexpected(format!(
                "Swarm's update of {} did not end in time ({state:?}); the standby {} still serves",
                found.home_name, found.standby_name
            )));
        }
        if state == UpdateState::Updating && routed_home.len() >= found.replicas {
            // Every new task is routed: what is left is Swarm's delay after its last batch and
            // its monitor window (or a task it waits on), which only its status ends. The
            // status is read every 50 ms then, the tasks at the loop's pace, so that the change
            // back at rest follows the completion closely.
            status_moved(api, &found.home_name, &state, Duration::from_millis(250)).await?;
        } else {
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    };
    let code = end.exit_code().unwrap_or(exit::UNEXPECTED);
    if code == exit::PAUSED || code == exit::ROLLBACK_FAILED {
        tell.say(&format!(
            "Swarm stopped: {end:?}; the standby {} keeps serving (a rerun resumes)",
            found.standby_name
        ));
        return Ok(Ended::Code(code));
    }
    // 3. Back at rest: the home's old tasks gone, the service's name resolves to its tasks.
    let names: Vec<String> = at_rest
        .iter()
        .filter_map(|r| match &r.target {
            Target::Service { name } => Some(name.clone()),
            Target::Instance { .. } => None,
        })
        .collect();
    wait_routable(
        api,
        router,
        tell,
        &found.home_name,
        &names,
        found.replicas,
        req.start_timeout,
    )
    .await?;
    let mut remove: Vec<Target> = routed_home.iter().map(|a| target(a)).collect();
    remove.extend(standby_routed.iter().chain(&standby_out).map(|a| target(a)));
    let change = RouteChange {
        set: at_rest.clone(),
        remove,
    };
    // One drain timeout for this change's drain and the ones not waited for yet. This one
    // waits for the standby's tasks it takes out, which the run stops next; those taken out
    // earlier are drained by their own changes' tickets (`pending`), and the new tasks go on
    // serving behind the service's name.
    let stopping: Vec<Target> = standby_routed.iter().map(|a| target(a)).collect();
    let deadline = Instant::now() + req.drain_timeout;
    change_and_drain_of(
        router,
        change,
        &stopping,
        req.drain_timeout,
        tell,
        "nginx back at rest, standby unrouted",
    )
    .await?;
    let left = deadline.saturating_duration_since(Instant::now());
    drain_pending(router, pending, left, tell).await?;
    api.remove(&found.standby_name).await?;
    for a in standby_routed.iter().chain(&standby_out) {
        tell.event(Event::InstanceRemoved {
            instance: InstanceId(a.clone()),
        });
    }
    tell.say(&format!("standby {} removed", found.standby_name));
    match &end {
        UpdateState::RolledBack(m) => {
            tell.say(&format!("Swarm rolled {} back: {m}", found.home_name))
        }
        _ => tell.say(&format!("{} runs {}", found.home_name, req.image)),
    }
    Ok(Ended::Code(code))
}

/// How [`run_held`] ended: an exit code, with a note for the outcome when Swarm's update (or
/// rollback) was left waiting on a node not ready.
enum Ended {
    Code(i32),
    WithNote(i32, String),
}

#[cfg(test)]
mod tests;
