//! Blue-green and canary on a swarm: the seed's two colour services of one stack behind the
//! stack's nginx service.
//!
//! The colour to make live has no traffic, so Swarm's own update of it is safe as it is:
//!
//! 1. Swarm's native update of the idle colour to the image the Compose file names (and to its
//!    `deploy.replicas`), with the operator's `update_config` and `rollback_config`. When Swarm
//!    rolls it back (a never-healthy image), nothing was switched: the live colour serves on,
//!    exit 3. When it pauses, exit 4.
//! 2. Once every task of the colour serves and no replaced task still runs, its name resolves
//!    to those tasks only (Swarm's DNS lists a task once it runs, healthy), so nginx names the
//!    colour's service, as the operator's config does at rest.
//! 3. Blue-green: one change moves the upstream to the colour, and its drain is waited for.
//!    Canary: the upstream names both colours with the step's weights (scaled by the colours'
//!    task counts, so that the shares are the step's however many tasks each runs), each step
//!    held for its time; then the colour alone. A task of the colour that stops serving during
//!    a hold or the monitor window after the last change switches nginx back to the other
//!    colour: exit 3.
//! 4. The other colour keeps running, for an instant switch-back (`docker rollout OTHER`).
//!
//! Two runs on the pair are one at a time: a run holds a service of no task
//! (`STACK_A--colours-lock`, `A` the first colour by name), created as the test-and-set and
//! removed at the end; a holder proven dead from here is taken over.

use crate::api::SwarmApi;
use crate::checks::{
    dnsrr_replicas, image_of, proxy_tasks, shared_network, spec_of, swarm_configs, version_of,
    ProxyTask, StackView,
};
use crate::record::{HOLDER_LABEL, SINCE_LABEL};
use crate::stack;
use crate::standby::SwarmFail;
use crate::status::UpdateState;
use crate::steps::{change_and_drain, states, wait_routable, wait_serving, Tell};
use crate::update;
use bollard::models::{
    Service, ServiceSpec, ServiceSpecMode, ServiceSpecModeReplicated, TaskSpec,
    TaskSpecContainerSpec,
};
use rollout_core::config::{RollbackConfig, UpdateConfig};
use rollout_core::event::{Event, Outcome};
use rollout_core::exit;
use rollout_core::journal::Liveness;
use rollout_core::model::{Revision, ServiceRef};
use rollout_core::router::{Route, RouteChange, Target, TrafficRouter};
use rollout_core::strategy::{CanaryStep, Hold};
use rollout_core::InstanceId;
use rollout_docker::lock::judge;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// How the traffic moves to the colour.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Shift {
    /// All at once.
    BlueGreen,
    /// Step by step, with these steps' shares and holds.
    Canary(Vec<CanaryStep>),
}

impl Shift {
    /// The strategy's name, as events and summaries say it.
    pub fn name(&self) -> &'static str {
        match self {
            Shift::BlueGreen => "blue-green",
            Shift::Canary(_) => "canary",
        }
    }
}

/// What the operator asked for.
#[derive(Debug, Clone)]
pub struct ColoursRequest {
    /// The stack.
    pub stack: String,
    /// The colour to make live (a Compose service).
    pub colour: String,
    /// The other colour.
    pub other: String,
    /// The Compose service of the nginx in front of both.
    pub proxy: String,
    /// The image the Compose file names for the colour.
    pub image: String,
    /// The colour's `deploy.replicas`.
    pub replicas: usize,
    /// `deploy.update_config` (Swarm's update of the idle colour; its monitor is the window
    /// after the last change).
    pub update: UpdateConfig,
    /// `deploy.rollback_config`.
    pub rollback: RollbackConfig,
    /// How long a task may take to run (healthy).
    pub start_timeout: Duration,
    /// How long requests in flight may take after a change.
    pub drain_timeout: Duration,
    /// This run, as the lock's holder (`Holder`'s writing).
    pub holder: String,
    /// Blue-green or canary.
    pub shift: Shift,
}

/// The pair as found on the swarm, checked.
#[derive(Debug, Clone)]
pub struct Pair {
    /// The colour's Swarm service name.
    pub colour_name: String,
    /// The other colour's.
    pub other_name: String,
    /// The network nginx reaches the colour's tasks on.
    pub network: String,
    /// The image the colour's spec names now.
    pub colour_image: String,
    /// The tasks its spec wants now.
    pub colour_replicas: usize,
    /// The image the other colour's spec names.
    pub other_image: String,
    /// The proxy service's name.
    pub proxy_name: String,
    /// The proxy's tasks, on this manager or other nodes.
    pub proxy_tasks: Vec<ProxyTask>,
    /// Swarm's `UpdateConfig` for the colour's update.
    pub swarm_update: update::ServiceSpecUpdateConfig,
    /// Its `RollbackConfig`.
    pub swarm_rollback: update::ServiceSpecRollbackConfig,
    /// The service that is the pair's lock.
    pub lock_name: String,
}

impl Pair {
    /// Whether Swarm must update the colour before it takes traffic (an image `docker stack
    /// deploy` pinned to a digest is the image the file names).
    pub fn needs_update(&self, req: &ColoursRequest) -> bool {
        !same_image(&self.colour_image, &req.image) || self.colour_replicas != req.replicas
    }
}

/// Whether a spec's `image` is `wanted`, as written or pinned to a digest.
fn same_image(image: &str, wanted: &str) -> bool {
    image == wanted
        || image
            .strip_prefix(wanted)
            .is_some_and(|rest| rest.starts_with('@'))
}

/// What is appended to the first colour's name for the pair's lock.
pub const LOCK_SUFFIX: &str = "--colours-lock";

/// Finds and checks the pair; nothing is changed. Busy (exit 7) when a live run holds it.
pub async fn find(api: &SwarmApi, req: &ColoursRequest) -> Result<Pair, SwarmFail> {
    let view = StackView::read(api, &req.stack).await?;
    let colour = view.service(&req.colour)?;
    let other = view.service(&req.other)?;
    let proxy = view.proxy(&req.proxy, &req.colour)?;
    dnsrr_replicas(&colour, &req.colour)?;
    dnsrr_replicas(&other, &req.other)?;
    let network = shared_network(&colour, &proxy)?;
    shared_network(&other, &proxy)?;
    if req.replicas == 0 {
        return Err(SwarmFail::bad_input(format!(
            "{}: deploy.replicas is 0: the colour to make live needs tasks",
            req.colour
        )));
    }
    if let Shift::Canary(steps) = &req.shift {
        if let Some(i) = steps.iter().position(|s| s.hold == Hold::UntilPromoted) {
            return Err(SwarmFail::bad_input(format!(
                "x-rollout.canary.steps[{i}]: hold until-promoted is not supported on a swarm yet (a stack's canary holds for a time)\nhint: give the step a hold such as 30s"
            )));
        }
    }
    let (swarm_update, swarm_rollback) = swarm_configs(&req.update, &req.rollback)?;
    let proxy_name = stack::service_name(&req.stack, &req.proxy);
    let proxy_tasks = proxy_tasks(api, &proxy_name).await?;
    let first = req.colour.as_str().min(req.other.as_str());
    let lock_name = format!("{}{LOCK_SUFFIX}", stack::service_name(&req.stack, first));
    if let Some(lock) = api.service(&lock_name).await? {
        held_by_other(&lock, &lock_name, req)?;
    }
    Ok(Pair {
        colour_name: stack::service_name(&req.stack, &req.colour),
        other_name: stack::service_name(&req.stack, &req.other),
        network,
        colour_image: image_of(&spec_of(&colour)),
        colour_replicas: crate::checks::wanted_replicas(&colour).unwrap_or(0),
        other_image: image_of(&spec_of(&other)),
        proxy_name,
        proxy_tasks,
        swarm_update,
        swarm_rollback,
        lock_name,
    })
}

/// Busy when the lock's holder runs, or cannot be judged from here.
fn held_by_other(lock: &Service, lock_name: &str, req: &ColoursRequest) -> Result<(), SwarmFail> {
    let labels = spec_of(lock).labels.unwrap_or_default();
    let Some(holder) = labels.get(HOLDER_LABEL) else {
        return Ok(());
    };
    let since = labels.get(SINCE_LABEL).cloned().unwrap_or_default();
    let busy = |why: String| SwarmFail {
        code: exit::BUSY,
        message: format!("{lock_name} is held by {holder} since {since}: {why}"),
    };
    match judge(holder, &req.holder) {
        Liveness::Dead => Ok(()),
        Liveness::Alive => Err(busy(format!(
            "another rollout of {} and {} runs",
            req.colour, req.other
        ))),
        Liveness::Unknown => Err(busy(format!(
            "that run is not on this machine, and whether it still runs cannot be told from here\nhint: run the rollout again where that one ran; or, once sure it is gone, docker service rm {lock_name} and run it again"
        ))),
    }
}

/// The plan as people read it (`--dry-run`, and the start of a run).
pub fn plan(pair: &Pair, req: &ColoursRequest) -> String {
    let update = if pair.needs_update(req) {
        let u = &pair.swarm_update;
        format!(
            "1. Swarm's update of {colour} (no traffic on it): {from} x{n} -> {to} x{m}, parallelism {p}, order {order}, failure_action {fa}; rolled back by Swarm: nothing is switched, exit 3",
            colour = pair.colour_name,
            from = pair.colour_image,
            n = pair.colour_replicas,
            to = req.image,
            m = req.replicas,
            p = u.parallelism.unwrap_or(1),
            order = u.order.map(|o| o.to_string()).unwrap_or_default(),
            fa = u.failure_action.map(|a| a.to_string()).unwrap_or_default(),
        )
    } else {
        format!(
            "1. {} runs {} x{} already: no update",
            pair.colour_name, req.image, req.replicas
        )
    };
    let shift = match &req.shift {
        Shift::BlueGreen => format!(
            "3. nginx's upstream switched to {} at once, and drained",
            req.colour
        ),
        Shift::Canary(steps) => format!(
            "3. nginx's upstream weighted across {} and {}: {}",
            req.other,
            req.colour,
            steps
                .iter()
                .map(|s| match s.hold {
                    Hold::For(d) => format!("{}% for {d:?}", s.percent),
                    Hold::UntilPromoted => format!("{}% until promoted", s.percent),
                })
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    format!(
        "swarm {strategy} of stack {stack}: {colour} made live in nginx ({proxy}, {proxies} task(s)), {other} ({other_image}) left running for a switch-back\n{update}\n\
         2. every task of {colour} serving, none replaced still running\n{shift}\n\
         4. {colour}'s tasks watched for {monitor:?} (update_config.monitor): one that stops serving switches nginx back to {other}, exit 3",
        strategy = req.shift.name(),
        stack = req.stack,
        colour = pair.colour_name,
        other = pair.other_name,
        other_image = pair.other_image,
        proxy = pair.proxy_name,
        proxies = pair.proxy_tasks.len(),
        monitor = req.update.monitor,
    )
}

/// Runs the switch (see the module's doc); the exit code. `stop` asks the run to end at its
/// next step: before the first change nothing is switched (exit 130; Swarm's update of the
/// idle colour goes on); during a canary's steps nginx goes back to the other colour (130); in
/// the monitor window after the last change the window is cut short and the switch stays (0).
/// A switch back that fails is exit 5.
pub async fn run(
    api: &SwarmApi,
    pair: &Pair,
    req: &ColoursRequest,
    router: &dyn TrafficRouter,
    tell: Tell<'_>,
    stop: &AtomicBool,
) -> Result<i32, SwarmFail> {
    claim(api, pair, req, tell).await?;
    let ran = run_claimed(api, pair, req, router, tell, stop).await;
    tell.event(Event::Finished {
        outcome: match &ran {
            Ok((_, outcome)) => outcome.clone(),
            Err(e) => Outcome::Failed(e.message.clone()),
        },
    });
    if let Err(e) = release(api, pair, req).await {
        tell.say(&format!(
            "note: the lock {} was not removed ({}); a rerun on this machine takes it over",
            pair.lock_name, e.message
        ));
    }
    ran.map(|(code, _)| code)
}

/// How a run that ended with `code` reads as an outcome.
fn outcome_of(code: i32, pair: &Pair) -> Outcome {
    match code {
        exit::SUCCESS => Outcome::Completed,
        exit::ROLLED_BACK => Outcome::RolledBack(format!("{} serves", pair.other_name)),
        exit::PAUSED => Outcome::Paused(format!(
            "Swarm paused the update of {}; {} serves",
            pair.colour_name, pair.other_name
        )),
        exit::ROLLBACK_FAILED => Outcome::RollbackFailed(format!(
            "Swarm's rollback of {} stopped; {} serves",
            pair.colour_name, pair.other_name
        )),
        exit::INTERRUPTED => Outcome::Interrupted(false),
        code => Outcome::Failed(format!("exit {code}")),
    }
}

/// The lock: a service of no task, created (Swarm refuses a second of the name) or, when its
/// holder is proven dead, taken over at the version read.
async fn claim(
    api: &SwarmApi,
    pair: &Pair,
    req: &ColoursRequest,
    tell: Tell<'_>,
) -> Result<(), SwarmFail> {
    let labels = HashMap::from([
        (HOLDER_LABEL.to_string(), req.holder.clone()),
        (
            SINCE_LABEL.to_string(),
            rollout_docker::engine::now_rfc3339(),
        ),
    ]);
    let raced = || SwarmFail {
        code: exit::BUSY,
        message: format!(
            "another rollout of {} and {} took {} just now; nothing was changed",
            req.colour, req.other, pair.lock_name
        ),
    };
    let ours = |s: Option<Service>| {
        s.and_then(|s| spec_of(&s).labels)
            .and_then(|l| l.get(HOLDER_LABEL).cloned())
            == Some(req.holder.clone())
    };
    match api.service(&pair.lock_name).await? {
        None => {
            let spec = ServiceSpec {
                name: Some(pair.lock_name.clone()),
                labels: Some(labels),
                mode: Some(ServiceSpecMode {
                    replicated: Some(ServiceSpecModeReplicated { replicas: Some(0) }),
                    ..Default::default()
                }),
                task_template: Some(TaskSpec {
                    container_spec: Some(TaskSpecContainerSpec {
                        image: Some(pair.other_image.clone()),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            };
            if let Err(e) = api.create(spec).await {
                // The answer may have been lost: ours if it carries us.
                match api.service(&pair.lock_name).await? {
                    None => return Err(e.into()),
                    s if ours(s.clone()) => {}
                    _ => return Err(raced()),
                }
            }
        }
        Some(lock) => {
            held_by_other(&lock, &pair.lock_name, req)?;
            let mut spec = spec_of(&lock);
            spec.labels = Some(labels);
            if let Err(e) = api.update(&pair.lock_name, version_of(&lock), spec).await {
                let now = api.service(&pair.lock_name).await?;
                if now.is_none() {
                    return Err(e.into());
                }
                if !ours(now) {
                    return Err(raced());
                }
            }
            tell.say(&format!(
                "{} was left by a run that is gone: taken over",
                pair.lock_name
            ));
        }
    }
    Ok(())
}

/// Removes the lock if this run holds it.
async fn release(api: &SwarmApi, pair: &Pair, req: &ColoursRequest) -> Result<(), SwarmFail> {
    let Some(lock) = api.service(&pair.lock_name).await? else {
        return Ok(());
    };
    let holder = spec_of(&lock)
        .labels
        .and_then(|l| l.get(HOLDER_LABEL).cloned());
    if holder.as_deref() == Some(req.holder.as_str()) {
        api.remove(&pair.lock_name).await?;
    }
    Ok(())
}

fn stopped(stop: &AtomicBool) -> bool {
    stop.load(Ordering::SeqCst)
}

fn service(name: &str, weight: u32) -> Route {
    Route {
        target: Target::Service {
            name: name.to_string(),
        },
        weight,
    }
}

/// The change to `set`, everything else in `now` taken out.
fn only(set: Vec<Route>, now: &[Route]) -> RouteChange {
    let remove = now
        .iter()
        .map(|r| r.target.clone())
        .filter(|t| !set.iter().any(|s| &s.target == t))
        .collect();
    RouteChange { set, remove }
}

/// The weights of one step: `percent` of the requests to the colour's `colour_tasks`, the
/// rest to the other's `other_tasks` (nginx weighs each address a name resolves to).
pub fn step_weights(percent: u32, colour_tasks: usize, other_tasks: usize) -> (u32, u32) {
    let c = u64::from(percent.min(100)).saturating_mul(other_tasks.max(1) as u64);
    let o = u64::from(100 - percent.min(100)).saturating_mul(colour_tasks.max(1) as u64);
    let g = gcd(c, o).max(1);
    (
        u32::try_from(c / g).unwrap_or(u32::MAX),
        u32::try_from(o / g).unwrap_or(u32::MAX),
    )
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// What a run ended with: its exit code and its outcome.
type Ended = (i32, Outcome);

async fn run_claimed(
    api: &SwarmApi,
    pair: &Pair,
    req: &ColoursRequest,
    router: &dyn TrafficRouter,
    tell: Tell<'_>,
    stop: &AtomicBool,
) -> Result<Ended, SwarmFail> {
    let ended = |code: i32| Ok((code, outcome_of(code, pair)));
    let before = router.routes().await?;
    let live = vec![service(&req.colour, 1)];
    // Whether nginx may send to the colour now: any route that is not the other colour's
    // name or one of its tasks' addresses may be the colour (under another name, say).
    let other_tasks = api.tasks(&pair.other_name).await?;
    let routed = before.iter().any(|r| {
        let host = r.target.host();
        host != req.other
            && !other_tasks
                .iter()
                .any(|t| t.addresses.get(&pair.network).map(String::as_str) == Some(host))
    });
    let update = pair.needs_update(req);
    if before == live && !update {
        tell.say(&format!(
            "{} is live on {} already: nothing to change",
            pair.colour_name, req.image
        ));
        return Ok((exit::SUCCESS, Outcome::NoChange));
    }
    if routed && update {
        return Err(in_place(pair, req));
    }
    tell.event(Event::RolloutStarted {
        service: ServiceRef::new(&req.stack, &req.colour),
        strategy: req.shift.name().into(),
        from: Some(Revision::new(&pair.other_image, &pair.other_image)),
        to: Revision::new(&req.image, &req.image),
        slots: req.replicas,
        resumed: false,
    });
    // Swarm's update of the colour: asked for now, or one a cut run asked for, going on.
    // The outcome of an earlier update that is over (rolled back, say) is history.
    let state = match api.service(&pair.colour_name).await? {
        Some(s) => UpdateState::of(s.update_status.as_ref()),
        None => return Err(gone(pair)),
    };
    let going = state.in_progress();
    if !update
        && matches!(
            state,
            UpdateState::Paused(_) | UpdateState::RollbackPaused(_)
        )
    {
        // Swarm left the colour half updated: neither image serves it whole.
        tell.say(&format!(
            "Swarm's update of {} is stopped ({state:?}): nothing was switched\nhint: docker service rollback {}, then run the rollout again (it asks Swarm for the update anew)",
            pair.colour_name, pair.colour_name
        ));
        return ended(state.exit_code().unwrap_or(exit::PAUSED));
    }
    let mut update = update;
    if going && !update {
        // Asked for before this run (a cut run's update, an operator's rollback): waited for,
        // whatever its end, then the colour's spec is read again.
        tell.say(&format!(
            "Swarm's update of {} is going on ({state:?}): waiting for its end",
            pair.colour_name
        ));
        if let Some(code) = await_update(api, pair, req, tell, stop, false).await? {
            return ended(code);
        }
        let now = api
            .service(&pair.colour_name)
            .await?
            .ok_or_else(|| gone(pair))?;
        update = !same_image(&image_of(&spec_of(&now)), &req.image)
            || crate::checks::wanted_replicas(&now) != Some(req.replicas);
        if update && routed {
            return Err(in_place(pair, req));
        }
    }
    if update {
        ask_update(api, pair, req, tell).await?;
        if let Some(code) = await_update(api, pair, req, tell, stop, true).await? {
            return ended(code);
        }
    }
    let cut = || {
        tell.say("interrupted before any traffic change: nothing was switched");
        Ok((exit::INTERRUPTED, Outcome::Interrupted(true)))
    };
    if stopped(stop) {
        return cut();
    }
    // Settled: its replaced tasks stopped (no names to ask the proxy about: the switch
    // itself is what routes to the colour).
    wait_routable(
        api,
        router,
        tell,
        &pair.colour_name,
        &[],
        req.replicas,
        req.start_timeout,
    )
    .await?;
    let serving = wait_serving(
        api,
        &pair.colour_name,
        req.replicas,
        &pair.network,
        req.start_timeout,
    )
    .await?;
    let tasks = api.tasks(&pair.colour_name).await?;
    if tasks.len() != req.replicas {
        return Err(SwarmFail::unexpected(format!(
            "{}: {} task(s) wanted running, not {} ({}); nothing was switched",
            pair.colour_name,
            tasks.len(),
            req.replicas,
            states(&tasks)
        )));
    }
    if let Some(t) = tasks.iter().find(|t| !same_image(&t.image, &req.image)) {
        return Err(SwarmFail::unexpected(format!(
            "{}: task {} runs {}, not {}: Swarm's update did not end on the image; nothing was switched",
            pair.colour_name, t.id, t.image, req.image
        )));
    }
    if stopped(stop) {
        return cut();
    }
    for a in &serving {
        tell.event(Event::InstanceHealthy {
            instance: InstanceId(a.clone()),
        });
    }
    if let Shift::Canary(steps) = &req.shift {
        match canary_steps(api, pair, req, router, tell, stop, steps).await {
            Ok(None) => {}
            Ok(Some(why)) => {
                let reason = why.clone().unwrap_or_else(|| "interrupted".into());
                tell.event(Event::RollbackStarted { reason });
                if let Err(e) = switch_back(router, req, tell).await {
                    return Ok(back_failed(req, &e));
                }
                return Ok(match why {
                    Some(_) => (exit::ROLLED_BACK, outcome_of(exit::ROLLED_BACK, pair)),
                    None => (exit::INTERRUPTED, Outcome::Interrupted(true)),
                });
            }
            Err(e) => {
                // Whatever the steps left, the other colour takes the traffic back.
                if let Err(back) = switch_back(router, req, tell).await {
                    tell.say(&format!("error: {}", e.message));
                    return Ok(back_failed(req, &back));
                }
                return Err(e);
            }
        }
    }
    if stopped(stop) {
        return cut();
    }
    let now = router.routes().await?;
    change_and_drain(
        router,
        only(live.clone(), &now),
        req.drain_timeout,
        tell,
        &format!("nginx switched to {}", req.colour),
    )
    .await?;
    tell.event(Event::WeightsChanged { new_percent: 100 });
    if let Some(why) = watch(api, pair, req, req.update.monitor, stop).await? {
        tell.event(Event::RollbackStarted {
            reason: format!("after the switch: {why}"),
        });
        if let Err(e) = switch_back(router, req, tell).await {
            return Ok(back_failed(req, &e));
        }
        return ended(exit::ROLLED_BACK);
    }
    if stopped(stop) {
        tell.say(&format!(
            "interrupted in the monitor window: it is cut short, the switch to {} stays",
            req.colour
        ));
    }
    tell.say(&format!(
        "{} is live; {} keeps running for a switch-back (docker rollout {})",
        pair.colour_name, pair.other_name, req.other
    ));
    ended(exit::SUCCESS)
}

/// The refusal to update in place a colour nginx may send to.
fn in_place(pair: &Pair, req: &ColoursRequest) -> SwarmFail {
    SwarmFail::bad_input(format!(
        "{} may take traffic (nginx's upstream routes to more than {}) and its spec is not {} x{}: a switch makes the idle colour live, and updating this one in place would stop tasks with requests in flight\nhint: make {} live first (docker rollout {}), or update {} task by task with --strategy rolling",
        pair.colour_name, req.other, req.image, req.replicas, req.other, req.other, req.colour
    ))
}

/// A switch back that failed: nginx may still send to the colour, a person must look (exit 5).
fn back_failed(req: &ColoursRequest, e: &SwarmFail) -> Ended {
    (
        exit::ROLLBACK_FAILED,
        Outcome::RollbackFailed(format!(
            "nginx could not be switched back to {} ({}): it may still send to {}",
            req.other, e.message, req.colour
        )),
    )
}

/// nginx's upstream to the other colour alone, drained.
async fn switch_back(
    router: &dyn TrafficRouter,
    req: &ColoursRequest,
    tell: Tell<'_>,
) -> Result<(), SwarmFail> {
    let now = router.routes().await?;
    change_and_drain(
        router,
        only(vec![service(&req.other, 1)], &now),
        req.drain_timeout,
        tell,
        &format!("nginx switched back to {}", req.other),
    )
    .await
}

/// The canary's steps short of 100 %, each held while the colour's tasks are watched: `None`
/// when every step held, `Some(why)` when one failed (`Some(None)`: interrupted).
async fn canary_steps(
    api: &SwarmApi,
    pair: &Pair,
    req: &ColoursRequest,
    router: &dyn TrafficRouter,
    tell: Tell<'_>,
    stop: &AtomicBool,
    steps: &[CanaryStep],
) -> Result<Option<Option<String>>, SwarmFail> {
    let others = api
        .tasks(&pair.other_name)
        .await?
        .iter()
        .filter(|t| t.serving())
        .count();
    for (i, step) in steps.iter().filter(|s| s.percent < 100).enumerate() {
        if stopped(stop) {
            return Ok(Some(None));
        }
        let (c, o) = step_weights(step.percent, req.replicas, others);
        let now = router.routes().await?;
        let change = only(vec![service(&req.colour, c), service(&req.other, o)], &now);
        change_and_drain(
            router,
            change,
            req.drain_timeout,
            tell,
            &format!("canary step {}: {}% to {}", i + 1, step.percent, req.colour),
        )
        .await?;
        tell.event(Event::WeightsChanged {
            new_percent: step.percent,
        });
        let Hold::For(hold) = step.hold else {
            unreachable!("find refuses until-promoted")
        };
        tell.event(Event::StepPaused {
            step: i + 1,
            for_secs: Some(hold.as_secs_f64()),
        });
        if let Some(why) = watch(api, pair, req, hold, stop).await? {
            return Ok(Some(Some(format!("canary step {}: {why}", i + 1))));
        }
    }
    Ok(if stopped(stop) { Some(None) } else { None })
}

/// Asks Swarm to update the idle colour to the image and replicas the file names.
async fn ask_update(
    api: &SwarmApi,
    pair: &Pair,
    req: &ColoursRequest,
    tell: Tell<'_>,
) -> Result<(), SwarmFail> {
    let colour = api
        .service(&pair.colour_name)
        .await?
        .ok_or_else(|| gone(pair))?;
    let mut spec = spec_of(&colour);
    if let Some(c) = spec
        .task_template
        .as_mut()
        .and_then(|t| t.container_spec.as_mut())
    {
        c.image = Some(req.image.clone());
    }
    spec.mode = Some(ServiceSpecMode {
        replicated: Some(ServiceSpecModeReplicated {
            replicas: Some(req.replicas as i64),
        }),
        ..Default::default()
    });
    spec.update_config = Some(pair.swarm_update.clone());
    spec.rollback_config = Some(pair.swarm_rollback.clone());
    api.update(&pair.colour_name, version_of(&colour), spec)
        .await?;
    tell.say(&format!(
        "Swarm updates {} to {} x{} (no traffic on it)",
        pair.colour_name, req.image, req.replicas
    ));
    Ok(())
}

fn gone(pair: &Pair) -> SwarmFail {
    SwarmFail::unexpected(format!("{} was removed", pair.colour_name))
}

/// Waits for Swarm's update of the idle colour; the exit code when it did not complete
/// (rolled back: 3, paused: 4, its rollback paused: 5, interrupted: 130). An update this run
/// did not ask for (`ours` false) is only waited for: its end, whatever it is, is `None`.
async fn await_update(
    api: &SwarmApi,
    pair: &Pair,
    req: &ColoursRequest,
    tell: Tell<'_>,
    stop: &AtomicBool,
    ours: bool,
) -> Result<Option<i32>, SwarmFail> {
    let batches = req
        .replicas
        .div_ceil(req.update.parallelism.max(1) as usize)
        .max(1) as u32;
    let per_batch = req.update.delay + req.update.monitor + req.start_timeout;
    let started = Instant::now();
    // Swarm may roll back after its last batch: the rollback's time too.
    let deadline = started
        + per_batch * (batches + 1) * 2
        + req.rollback.delay * batches
        + Duration::from_secs(60);
    let mut rollback_told = false;
    loop {
        let service = api
            .service(&pair.colour_name)
            .await?
            .ok_or_else(|| gone(pair))?;
        let state = UpdateState::of(service.update_status.as_ref());
        if stopped(stop) {
            tell.say(&format!(
                "interrupted while Swarm updates {} (it goes on, with no traffic on it): nothing was switched",
                pair.colour_name
            ));
            return Ok(Some(exit::INTERRUPTED));
        }
        if ours && matches!(state, UpdateState::RollingBack(_)) && !rollback_told {
            rollback_told = true;
            tell.event(Event::RollbackStarted {
                reason: format!("Swarm rolls {} back: {state:?}", pair.colour_name),
            });
        }
        let tasks = api.tasks(&pair.colour_name).await?;
        match state.exit_code() {
            None => {}
            Some(_) if !ours => return Ok(None),
            Some(exit::SUCCESS) if state == UpdateState::None => {
                // Swarm clears the status when it takes a new spec and sets it once it starts
                // replacing tasks; a spec it had nothing to replace for (a scale alone, or no
                // update at all) leaves it clear.
                let on_image = tasks
                    .iter()
                    .filter(|t| t.serving() && same_image(&t.image, &req.image))
                    .count();
                // Exactly: a scale down Swarm has not applied yet leaves more.
                if on_image == req.replicas
                    && tasks.len() == req.replicas
                    && api.lingering_tasks(&pair.colour_name).await? == 0
                {
                    return Ok(None);
                }
            }
            Some(exit::SUCCESS) => return Ok(None),
            Some(code) => {
                tell.say(&format!(
                    "Swarm ended its update of {}: {state:?}; nothing was switched, {} serves",
                    pair.colour_name, pair.other_name
                ));
                return Ok(Some(code));
            }
        }
        if Instant::now() > deadline {
            return Err(SwarmFail::unexpected(format!(
                "Swarm's update of {} did not end in time ({state:?}; {}); nothing was switched, {} serves",
                pair.colour_name,
                states(&tasks),
                pair.other_name
            )));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Watches the colour's tasks for `window`: why it failed (a task that stopped serving), or
/// `None` when every one served throughout (or `stop` was asked).
async fn watch(
    api: &SwarmApi,
    pair: &Pair,
    req: &ColoursRequest,
    window: Duration,
    stop: &AtomicBool,
) -> Result<Option<String>, SwarmFail> {
    let end = Instant::now() + window;
    loop {
        let tasks = api.tasks(&pair.colour_name).await?;
        let serving = tasks
            .iter()
            .filter(|t| t.serving() && t.image_is(&req.image))
            .count();
        if serving < req.replicas {
            return Ok(Some(format!(
                "{} of {} task(s) of {} serving ({})",
                serving,
                req.replicas,
                pair.colour_name,
                states(&tasks)
            )));
        }
        if stopped(stop) || Instant::now() >= end {
            return Ok(None);
        }
        tokio::time::sleep(Duration::from_millis(250).min(end - Instant::now())).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_steps_weights_give_its_share_whatever_the_task_counts() {
        // 3 and 3 tasks: 10 % is 1 to 9 per address.
        assert_eq!(step_weights(10, 3, 3), (1, 9));
        // 2 new tasks, 4 old: per address 10*4 : 90*2 = 2 : 9; in all 4 : 36 = 10 %.
        assert_eq!(step_weights(10, 2, 4), (2, 9));
        let (c, o) = step_weights(25, 2, 4);
        assert_eq!(c * 2 * 100 / (c * 2 + o * 4), 25);
        assert_eq!(step_weights(50, 4, 4), (1, 1));
    }

    #[test]
    fn a_change_to_one_set_takes_out_everything_else() {
        let now = vec![service("blue", 9), service("green", 1)];
        let change = only(vec![service("green", 1)], &now);
        assert_eq!(
            change.remove,
            vec![Target::Service {
                name: "blue".into()
            }]
        );
        assert_eq!(change.set, vec![service("green", 1)]);
    }
}
