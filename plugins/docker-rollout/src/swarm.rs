//! `docker rollout --stack NAME SERVICE`: the service is one of a Swarm stack, updated by
//! rollout-swarm's standby approach (a standby copy of the serving spec takes the traffic,
//! Swarm's native update replaces the home service's tasks, each new task routed as it runs).
//! This module only wires it: the Compose file's settings, the manager's connection, the
//! nginx router over the proxy's task containers (on that manager, or on other nodes through
//! the engines `--swarm-node` names), and the output: progress lines on stderr, and with
//! `--output json` the run's events and a summary on stdout.

use crate::cli::OutputFormat;
use crate::cli::RolloutRequest;
use crate::drive::Interrupt;
use crate::fail::Fail;
use crate::live;
use crate::output::{Json, Renderer, Sink, Summary, Tally};
use rollout_compose::{Flavour, Project, ProxyKind, Settings};
use rollout_core::event::{Event, EventSink, Outcome};
use rollout_core::exit;
use rollout_core::strategy::StrategyKind;
use rollout_core::Revision;
use rollout_core::TrafficRouter;
use rollout_docker::ProxyContainer;
use rollout_nginx::proxy::Proxy;
use rollout_nginx::router::{NginxRouter, NginxRouterOptions};
use rollout_swarm::api::SwarmApi;
use rollout_swarm::standby::{self, Request, SwarmFail, Tell};
use rollout_swarm::ProxyTask;
use std::collections::HashMap;
use std::io::Write;
use tokio::sync::mpsc;

pub(crate) fn fail(e: SwarmFail) -> Fail {
    Fail {
        code: e.code,
        message: e.message,
    }
}

pub(crate) fn say(line: &str) {
    let _ = writeln!(std::io::stderr(), "{line}");
}

/// What the Compose file says of the stack's service and its nginx.
struct FromFile {
    request: Request,
    upstream: Option<String>,
    config: Option<String>,
    port: Option<u16>,
}

/// The settings the Compose file gives the stack's service, with its nginx service and its
/// image; bad input when it has no image or no nginx in front.
pub(crate) fn settings_of(
    req: &RolloutRequest,
    stack: &str,
) -> Result<(Settings, String, String), Fail> {
    let bad = |e: &dyn std::fmt::Display| Fail::bad_input(e.to_string());
    let project =
        Project::load(&req.compose.load_options(Flavour::default())).map_err(|e| bad(&e))?;
    let mut settings = project.settings(&req.service).map_err(|e| bad(&e))?;
    settings.apply(&req.overrides).map_err(|e| bad(&e))?;
    for w in settings.resolve().map_err(|e| bad(&e))? {
        say(&format!("warning: {w}"));
    }
    let proxy = match (&settings.proxy, settings.proxy_kind) {
        (None, _) => {
            return Err(Fail::bad_input(format!(
                "--stack {stack}: {} has no nginx service in front of it in the Compose file\nhint: add an nginx service whose upstream names {}, or name it with x-rollout.proxy",
                req.service, req.service
            )))
        }
        (Some(p), ProxyKind::Haproxy) => {
            return Err(Fail::bad_input(format!(
                "--stack {stack}: the proxy {p} is HAProxy, which the Swarm backend does not drive yet (nginx only)"
            )))
        }
        (Some(p), _) => p.clone(),
    };
    // What a Compose run does and a swarm run does not do yet is refused, not skipped: each
    // would let the rollout go on with less than the operator asked for.
    let strategy = settings.strategy;
    let unsupported = [
        (
            settings.blue_green.verify.is_some() && strategy == StrategyKind::BlueGreen,
            "x-rollout.blue_green.verify",
        ),
        (settings.health_probe.is_some(), "x-rollout.health"),
        (
            settings.analysis.is_some() && strategy != StrategyKind::Rolling,
            "the canary analysis (x-rollout.analysis, --max-error-rate and the like)",
        ),
        (
            !settings.hooks.is_empty(),
            "hooks (x-rollout.hooks, --hook-*, --webhook)",
        ),
    ];
    if let Some((_, what)) = unsupported.iter().find(|(set, _)| *set) {
        return Err(Fail::bad_input(format!(
            "--stack {stack}: {what} is not supported on a swarm yet"
        )));
    }
    let image = settings.image.clone().ok_or_else(|| {
        Fail::bad_input(format!(
            "--stack {stack}: service {} names no image (a stack's service runs a pushed image)",
            req.service
        ))
    })?;
    Ok((settings, proxy, image))
}

/// The standby run's request from the Compose file's settings ([`settings_of`]).
fn request(
    req: &RolloutRequest,
    stack: &str,
    (settings, proxy, image): (Settings, String, String),
) -> FromFile {
    FromFile {
        request: Request {
            stack: stack.to_string(),
            service: req.service.clone(),
            proxy,
            image,
            update: settings.update.clone(),
            rollback: settings.rollback.clone(),
            start_timeout: settings.timeouts.start,
            drain_timeout: settings.timeouts.drain,
            holder: rollout_strategies::lock_holder(),
            upstream: String::new(),
        },
        upstream: settings.upstream.clone(),
        config: settings.proxy_config.clone(),
        port: settings.port,
    }
}

/// The Swarm stack named as the Compose file's project, when one runs on this engine (a swarm
/// manager) and no container of a Compose project of that name does: its service is rolled
/// out through Swarm, as with `--stack NAME` (`docker stack deploy -c compose.yaml NAME` names
/// the stack, `-p NAME` or the file's `name:` the project). `None` sends the run down the
/// Compose path, which says what is wrong with a file that does not load or an engine that
/// cannot be reached. A stack and running containers of one name are refused: which one to roll
/// out is not clear.
pub async fn stack_of_project(req: &RolloutRequest) -> Result<Option<String>, Fail> {
    let Ok(project) = Project::load(&req.compose.load_options(Flavour::default())) else {
        return Ok(None);
    };
    let Ok(engine) = live::connect(&req.docker).await else {
        return Ok(None);
    };
    let api = SwarmApi::new(engine.clone());
    if !api.is_manager().await.unwrap_or(false) {
        return Ok(None);
    }
    let name = project.name;
    if api
        .stack_services(&name)
        .await
        .unwrap_or_default()
        .is_empty()
    {
        return Ok(None);
    }
    let compose = rollout_docker::running::running(&engine, &[&name]).await?;
    if !compose.is_empty() {
        return Err(Fail::bad_input(format!(
            "both a Swarm stack {name} and {} running container(s) of the Compose project {name} are on this engine: which one to roll out is not clear\nhint: --stack {name} rolls out the stack's service; -p NAME names another Compose project",
            compose.len()
        )));
    }
    say(&format!(
        "the Swarm stack {name} runs on this engine: {} is rolled out through Swarm (as with --stack {name})",
        req.service
    ));
    Ok(Some(name))
}

/// What a run needs once the stack is checked and nginx's config is open.
struct Ready {
    request: Request,
    found: standby::Found,
    api: SwarmApi,
    router: NginxRouter,
}

/// Runs the rollout (or prints its plan with `--dry-run`); the exit code. An interrupt during
/// the checks and the proxy's opening ends the run. Once the run itself started (it creates
/// the standby first), a cut run is not rolled back (a rerun resumes it): a first interrupt is
/// only reported and the run goes on; a second one cuts it, lets its locks and the standby go,
/// and says what serves. Once the run said how it ended, interrupts are not heard.
pub async fn run(
    req: &RolloutRequest,
    stack: &str,
    irx: &mut mpsc::UnboundedReceiver<Interrupt>,
) -> Result<i32, Fail> {
    let from_file = settings_of(req, stack)?;
    if let Some(colours) = crate::swarm_colours::of(req, stack, &from_file)? {
        return crate::swarm_colours::run(req, stack, colours, irx).await;
    }
    let from_file = request(req, stack, from_file);
    match crate::or_interrupted(irx, prepare(req, stack, from_file)).await? {
        Some(ready) => drive(req, stack, ready, irx).await,
        None => Ok(exit::SUCCESS),
    }
}

/// The checks, the plan of a dry run (`None` then), and nginx's config opened.
async fn prepare(
    req: &RolloutRequest,
    stack: &str,
    from_file: FromFile,
) -> Result<Option<Ready>, Fail> {
    let json = req.output == OutputFormat::Json;
    let FromFile {
        mut request,
        upstream,
        config,
        port,
    } = from_file;
    let engine = live::connect(&req.docker).await?;
    let api = SwarmApi::new(engine.clone());
    let found = standby::find(&api, &request).await.map_err(fail)?;
    check_named(req, &found.proxy_tasks)?;
    if req.dry_run {
        let plan = standby::plan(&found, &request);
        if json {
            // The plan is for people; programs get the summary.
            say(&plan);
            let summary = summary_of(&request, &found, true, None, Tally::default(), 0.0);
            Json::new(std::io::stdout()).summary(&summary);
        } else {
            println!("{plan}");
            println!("dry run: nothing was changed");
        }
        return Ok(None);
    }
    // The upstream the Compose file names; else the one a left standby's run kept (mid-rollout
    // it names task addresses, not the service); else the one naming the service.
    let kept = found.left.as_ref().map(|l| l.record.upstream.clone());
    let (router, upstream) = open_router(
        &engine,
        req,
        stack,
        &found.proxy_tasks,
        RouterFromFile {
            proxy: &request.proxy,
            upstream: upstream.or(kept),
            config,
            port,
            services: vec![req.service.clone()],
        },
    )
    .await?;
    request.upstream = upstream;
    Ok(Some(Ready {
        request,
        found,
        api,
        router,
    }))
}

/// What the Compose file says of nginx in front of a stack's service.
pub(crate) struct RouterFromFile<'a> {
    /// nginx's Compose service.
    pub proxy: &'a str,
    /// The upstream, when the file (or a run's record) names it.
    pub upstream: Option<String>,
    /// nginx's config file, when not the default.
    pub config: Option<String>,
    /// The port the service's tasks listen on.
    pub port: Option<u16>,
    /// The Compose services the upstream names at rest.
    pub services: Vec<String>,
}

/// The engine of each proxy task's node and the task's container: this manager's engine, or
/// the one `--swarm-node` names for the node (by id, hostname or address), connected once per
/// node and checked to be that node's.
async fn proxy_engines(
    engine: &rollout_docker::Engine,
    req: &RolloutRequest,
    tasks: &[ProxyTask],
) -> Result<Vec<(rollout_docker::Engine, String)>, Fail> {
    let mut by_node: HashMap<String, rollout_docker::Engine> = HashMap::new();
    let mut out = Vec::new();
    for t in tasks {
        let known = if t.here {
            Some(engine.clone())
        } else {
            by_node.get(&t.node.id).cloned()
        };
        if let Some(e) = known {
            let name = container_name(&e, &t.container).await?;
            out.push((e, name));
            continue;
        }
        let n = &t.node;
        let (key, target) = named_engine(req, t)?;
        let mut g = req.docker.clone();
        if target.contains("://") {
            g.hosts = vec![target.clone()];
            g.context = None;
        } else {
            // A context carries its own endpoint and TLS.
            g = crate::cli::DockerGlobals {
                config: g.config,
                context: Some(target.clone()),
                ..Default::default()
            };
        }
        let node_engine = live::connect(&g).await?;
        let id = SwarmApi::new(node_engine.clone())
            .node_id()
            .await
            .map_err(|e| Fail::unreachable(e.to_string()))?;
        if id != n.id {
            return Err(Fail::bad_input(format!(
                "--swarm-node {key}={target}: that engine is node {}, not node {} ({}) where the nginx task runs\nhint: name the node by its id or address (nodes of one machine can share a hostname)",
                if id.is_empty() { "of no swarm" } else { &id },
                n.id,
                n.name()
            )));
        }
        by_node.insert(n.id.clone(), node_engine.clone());
        let name = container_name(&node_engine, &t.container).await?;
        out.push((node_engine, name));
    }
    Ok(out)
}

/// The `--swarm-node` naming the node of proxy task `t` (by its id, hostname or address);
/// bad input when none does. Every proxy task not on this manager needs one, dry run or not.
pub(crate) fn named_engine<'a>(
    req: &'a RolloutRequest,
    t: &ProxyTask,
) -> Result<(&'a String, &'a String), Fail> {
    let n = &t.node;
    req.swarm_nodes
        .iter()
        .find(|(key, _)| [&n.id, &n.hostname, &n.addr].contains(&key))
        .map(|(k, v)| (k, v))
        .ok_or_else(|| {
            Fail::bad_input(format!(
                "an nginx task runs on node {} (id {}), not on the manager this run talks to, and no --swarm-node names that node's engine: its config is edited and its workers watched through it\nhint: --swarm-node {}=ENGINE (a docker context for that node, or a host URL such as ssh://admin@{})",
                n.name(),
                n.id,
                if n.addr.is_empty() { &n.id } else { &n.addr },
                if n.addr.is_empty() { "NODE" } else { &n.addr },
            ))
        })
}

/// Every proxy task off this manager has its node's engine named (what a dry run can check
/// without connecting).
pub(crate) fn check_named(req: &RolloutRequest, tasks: &[ProxyTask]) -> Result<(), Fail> {
    for t in tasks.iter().filter(|t| !t.here) {
        named_engine(req, t)?;
    }
    Ok(())
}

/// The name of container `id` on `engine` (what messages show), or its id when it has none.
async fn container_name(engine: &rollout_docker::Engine, id: &str) -> Result<String, Fail> {
    let c = engine
        .docker()
        .inspect_container(id, None)
        .await
        .map_err(|e| {
            Fail::unreachable(format!(
                "inspect nginx's container {id} on {}: {e}",
                engine.endpoint()
            ))
        })?;
    Ok(c.name
        .map(|n| n.trim_start_matches('/').to_string())
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| id.to_string()))
}

/// nginx's router over the proxy's `tasks` (on any node, [`proxy_engines`]), its upstream found
/// (the one naming `services` when the file names none), locked against other rollouts'
/// changes to the same config; the upstream's name.
pub(crate) async fn open_router(
    engine: &rollout_docker::Engine,
    req: &RolloutRequest,
    stack: &str,
    tasks: &[ProxyTask],
    file: RouterFromFile<'_>,
) -> Result<(NginxRouter, String), Fail> {
    let config_path = file
        .config
        .unwrap_or_else(|| live::DEFAULT_NGINX_CONF.to_string());
    let containers = proxy_engines(engine, req, tasks).await?;
    // The config writers a killed run left (they exit once it is gone).
    for (e, c) in &containers {
        rollout_docker::remove_dead_writers_of(e, c).await?;
    }
    let proxies: Vec<Proxy> = containers
        .into_iter()
        .map(|(e, c)| ProxyContainer::new(e, c).proxy())
        .collect();
    let upstream = match file.upstream {
        Some(u) => u,
        None => {
            let live = proxies[0].files.read(&config_path).await.map_err(|e| {
                Fail::unreachable(format!(
                    "cannot read the nginx config of {}: {e}\nhint: set x-rollout.proxy_config to the file nginx is started with",
                    proxies[0].name
                ))
            })?;
            live::find_upstream(&live, &config_path, stack, &file.services)?
        }
    };
    let mut options = NginxRouterOptions::new(&upstream, &config_path);
    options.services = file.services;
    options.port = file.port;
    let locking = live::proxy_locking(
        engine,
        stack,
        file.proxy,
        req,
        "waiting for the proxy config: another rollout changes it",
    );
    let router = NginxRouter::open_locked(options, proxies, locking).await?;
    for note in router.recovered() {
        say(note);
    }
    Ok((router, upstream))
}

/// The run itself, its events rendered as they come (`--output json`), interrupts heard.
async fn drive(
    req: &RolloutRequest,
    stack: &str,
    ready: Ready,
    irx: &mut mpsc::UnboundedReceiver<Interrupt>,
) -> Result<i32, Fail> {
    let Ready {
        request,
        found,
        api,
        router,
    } = ready;
    let json = req.output == OutputFormat::Json;
    say(&standby::plan(&found, &request));
    let started = std::time::Instant::now();
    let stamped = stamped(started);
    let (sink, mut rx) = EventSink::channel();
    let mut shown = Shown::new(json);
    let mut show = |event: Event| shown.show(event);
    let tell = Tell {
        say: &stamped,
        events: &sink,
    };
    // Whether the run said how it ended: after that it only lets its standby go, and is not
    // cut any more.
    let mut finished = false;
    // `None`: cut by a second interrupt.
    let ran = {
        let run = standby::run(&api, &found, &request, &router, tell);
        tokio::pin!(run);
        let mut asked = 0;
        loop {
            tokio::select! {
                ran = &mut run => break Some(ran),
                Some(event) = rx.recv() => {
                    finished |= matches!(event, Event::Finished { .. });
                    show(event);
                }
                Some(_) = irx.recv() => {
                    asked += 1;
                    if finished {
                        continue;
                    }
                    if asked > 1 {
                        break None;
                    }
                    say("a --stack rollout is not rolled back when cut (nginx may route to the standby and to new tasks): it goes on; interrupt again to cut it, and run it again to resume it");
                }
            }
        }
    };
    while let Ok(event) = rx.try_recv() {
        finished |= matches!(event, Event::Finished { .. });
        show(event);
    }
    let ran = match ran {
        Some(ran) => ran,
        None => {
            // The run was dropped where it waited, maybe inside a change to nginx's config
            // holding the proxy's lock: the lock is let go (the next run's router repairs a
            // torn change from its journal), and so is the standby, for the rerun.
            // Bounded: the operator asked twice to stop, and an engine that hangs must not
            // keep the process.
            let bound = std::time::Duration::from_secs(15);
            let released = tokio::time::timeout(
                bound,
                rollout_docker::lock::release_locks_of(api.engine(), stack, &request.holder),
            )
            .await;
            match released {
                Ok(Ok(released)) if !released.is_empty() => say(&format!(
                    "the cut run's lock(s) let go: {}",
                    released.join(", ")
                )),
                Ok(Ok(_)) => {}
                Ok(Err(e)) => say(&format!(
                    "note: the cut run's proxy lock could not be let go ({e}); the next run on this machine takes it over"
                )),
                Err(_) => say("note: the engine did not answer in 15s: the cut run's proxy lock may be left; the next run on this machine takes it over"),
            }
            match tokio::time::timeout(bound, standby::let_go(&api, &found, &request)).await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => say(&format!(
                    "note: {} could not be let go ({}); a rerun on this machine takes it over once this process is gone",
                    found.standby_name, e.message
                )),
                Err(_) => say(&format!(
                    "note: the engine did not answer in 15s: {} may still name this run; a rerun on this machine takes it over once this process is gone",
                    found.standby_name
                )),
            }
            if !finished {
                show(Event::Finished {
                    outcome: Outcome::Interrupted(false),
                });
            }
            Err(SwarmFail {
                code: exit::INTERRUPTED,
                message: format!(
                    "interrupted: the standby {} may be carrying the traffic; docker rollout again resumes the rollout (do not remove the standby by hand before nginx's upstream routes to the tasks of {} again)",
                    found.standby_name, found.home_name
                ),
            })
        }
    };
    // The proxy's writer, kept for the run's writes, goes whatever the outcome.
    if let Err(e) = router.settle().await {
        say(&format!("note: the proxy's writer was not removed: {e}"));
    }
    shown.end(ran, |outcome, counts| {
        summary_of(
            &request,
            &found,
            false,
            outcome,
            counts,
            started.elapsed().as_secs_f64(),
        )
    })
}

/// Each progress line with the seconds since `started`, on stderr.
pub(crate) fn stamped(started: std::time::Instant) -> impl Fn(&str) + Send + Sync {
    move |line: &str| say(&format!("{:>6.1}s {line}", started.elapsed().as_secs_f64()))
}

/// A swarm run's events as they come: written with `--output json`, the outcome kept for its
/// summary.
pub(crate) struct Shown {
    json: bool,
    renderer: Renderer,
    outcome: Option<Outcome>,
}

impl Shown {
    pub(crate) fn new(json: bool) -> Self {
        Self {
            json,
            renderer: Renderer::new(Box::new(Json::new(std::io::stdout()))),
            outcome: None,
        }
    }

    pub(crate) fn show(&mut self, event: Event) {
        if let Event::Finished { outcome } = &event {
            self.outcome = Some(outcome.clone());
        }
        if self.json {
            self.renderer.event(&event);
        }
    }

    /// The run's end: with `--output json`, its summary (made by `summary` from the outcome
    /// and the counts), the error said on stderr and written in it; the exit code.
    pub(crate) fn end(
        mut self,
        ran: Result<i32, SwarmFail>,
        summary: impl FnOnce(Option<Outcome>, Tally) -> Summary,
    ) -> Result<i32, Fail> {
        if !self.json {
            return ran.map_err(fail);
        }
        let code = match &ran {
            Ok(code) => *code,
            Err(e) => {
                say(&format!("error: {}", e.message));
                e.code
            }
        };
        let mut s = summary(self.outcome.take(), self.renderer.tally().clone());
        s.exit_code = code;
        s.error = ran.err().map(|e| e.message);
        self.renderer.summary(&s);
        Ok(code)
    }
}

/// The summary line of `--output json` for a swarm run.
fn summary_of(
    request: &Request,
    found: &standby::Found,
    dry_run: bool,
    outcome: Option<Outcome>,
    counts: Tally,
    elapsed: f64,
) -> Summary {
    summary(
        format!("{}/{}", request.stack, request.service),
        "rolling",
        (&found.current_image, &request.image),
        dry_run,
        outcome,
        counts,
        elapsed,
    )
}

/// The summary line of `--output json` for any swarm run: the service, the strategy, the
/// images from and to.
pub(crate) fn summary(
    service: String,
    strategy: &str,
    (from, to): (&str, &str),
    dry_run: bool,
    outcome: Option<Outcome>,
    counts: Tally,
    elapsed: f64,
) -> Summary {
    Summary {
        service: Some(service),
        strategy: Some(strategy.into()),
        dry_run,
        exit_code: outcome.as_ref().map_or(exit::SUCCESS, Outcome::exit_code),
        outcome,
        error: None,
        elapsed_secs: (elapsed * 1000.0).round() / 1000.0,
        from: Some(Revision::new(from, from)),
        to: Some(Revision::new(to, to)),
        counts,
    }
}
