//! `docker rollout`: a Docker CLI plugin (and the standalone `docker-rollout`).
//!
//! The binary is thin: it parses docker's argv ([`cli`]), answers the
//! metadata call, loads the Compose project, connects the crates that do
//! the work ([`live`]: the Docker backend, the nginx router over the proxy
//! container, the journal kept with the engine, the strategy) and renders
//! the strategy's events ([`output`]). `--dry-run` runs the same strategy
//! on the in-memory mock instead ([`dry`]). Ctrl-C, SIGTERM and the docker
//! CLI closing the plugin socket become the strategy's cancel levels
//! ([`drive`]).
//!
//! `docker rollout init SERVICE` puts nginx in front of a service that has
//! no proxy yet ([`init`]: an override file and an nginx config).
//!
//! Output: progress and messages on stderr; with `--output json`, one event
//! envelope per line on stdout and a summary line at the end. Exit codes
//! are those of `rollout_core::exit`.

mod analysis;
mod around;
mod cli;
mod complete;
mod contract;
mod drive;
mod dry;
mod environ;
mod fail;
mod haproxy;
mod hooks;
mod init;
mod live;
mod migrate;
mod output;
mod plan;
mod promote;
mod socket;
mod steer;
mod swarm;
mod swarm_colours;
mod undo;
mod unlock;
mod verbs;

use cli::{Invocation, RolloutRequest};
use drive::Interrupt;
use fail::Fail;
use output::Summary;
use rollout_core::journal::Journal;
use rollout_core::strategy::{Cancel, RolloutContext, TrafficLayout};
use rollout_core::{exit, Outcome, Revision, Word};
use std::io::Write;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

fn main() {
    let request = match cli::parse_env() {
        Ok(Invocation::Metadata) => {
            println!("{}", cli::metadata_json());
            return;
        }
        Ok(Invocation::Rollout(request)) => *request,
        Ok(Invocation::Migrate(request)) => std::process::exit(migrate::run(*request)),
        Ok(Invocation::Init(request)) => std::process::exit(run_init(&request)),
        Ok(Invocation::Verb(request)) => std::process::exit(run_verb(*request)),
        Ok(Invocation::Complete(args)) => std::process::exit(complete::run(args)),
        Err(e) => e.exit(),
    };
    std::process::exit(run(request));
}

/// A runtime on this thread for a verb that waits on one thing at a time;
/// the exit code after saying why when it cannot start.
fn current_thread_runtime() -> Result<tokio::runtime::Runtime, i32> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            let _ = writeln!(std::io::stderr(), "error: cannot start the runtime: {e}");
            exit::UNEXPECTED
        })
}

/// `docker rollout init`: writes files, rolls nothing out ([`init`]).
fn run_init(req: &cli::InitRequest) -> i32 {
    let rt = match current_thread_runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    match rt.block_on(init::run(req)) {
        Ok(code) => code,
        Err(f) => {
            let _ = writeln!(std::io::stderr(), "error: {}", f.message);
            f.code
        }
    }
}

/// `docker rollout status|history|abort|undo|promote|pause|resume`
/// ([`verbs`], [`undo`], [`promote`], [`steer`]).
fn run_verb(req: cli::VerbRequest) -> i32 {
    let rt = match current_thread_runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    // `undo` and `promote` check, then run the rollout path (a running
    // canary promoted is told instead).
    if matches!(req.verb, cli::Verb::Undo | cli::Verb::Promote { .. }) {
        let back = rt.block_on(async {
            let checked = async {
                match req.verb {
                    cli::Verb::Promote { full, timeout } => promote::prepare(&req, full, timeout)
                        .await
                        .map(|told| told.map_or(Then::Run(None), Then::Exit)),
                    _ => undo::target(&req).await.map(|r| Then::Run(Some(r))),
                }
            };
            tokio::select! {
                r = checked => r,
                _ = tokio::signal::ctrl_c() => Err(Fail {
                    code: exit::INTERRUPTED,
                    message: "interrupted before anything was changed".into(),
                }),
            }
        });
        drop(rt);
        return match back {
            Ok(Then::Run(back)) => run_to(req.rollout, back),
            Ok(Then::Exit(code)) => code,
            Err(f) => {
                let _ = writeln!(std::io::stderr(), "error: {}", f.message);
                f.code
            }
        };
    }
    let done = match req.verb {
        cli::Verb::Abort { timeout } => rt.block_on(async {
            tokio::select! {
                r = verbs::abort(&req, timeout) => r.map(|plan| match plan {
                    verbs::AbortPlan::Told(code) => Some(code),
                    verbs::AbortPlan::RollBack => None,
                }),
                _ = tokio::signal::ctrl_c() => Err(Fail {
                    code: exit::INTERRUPTED,
                    message: "interrupted: a request left for a running rollout stays until it acts on it".into(),
                }),
            }
        }),
        cli::Verb::Pause { timeout } | cli::Verb::Resume { timeout } => rt.block_on(async {
            let steered = async {
                match req.verb {
                    cli::Verb::Pause { .. } => steer::pause(&req, timeout).await,
                    _ => steer::resume(&req, timeout).await,
                }
            };
            tokio::select! {
                r = steered => r.map(Some),
                _ = tokio::signal::ctrl_c() => Err(Fail {
                    code: exit::INTERRUPTED,
                    message: "interrupted: a request left for a running rollout stays until it acts on it".into(),
                }),
            }
        }),
        _ => rt.block_on(async {
            tokio::select! {
                r = verbs::run(&req) => r.map(Some),
                // `status --watch` ends here.
                _ = tokio::signal::ctrl_c() => Ok(Some(exit::SUCCESS)),
            }
        }),
    };
    drop(rt);
    match done {
        Ok(Some(code)) => code,
        Ok(None) => {
            // The journal says rolling back: the rollout path finishes it
            // with the same protocol as after a crash (exit 3 there: the old
            // revision serves, which is what abort asked for).
            let code = run(req.rollout);
            if code == exit::ROLLED_BACK {
                let _ = writeln!(std::io::stderr(), "aborted: the old revision serves");
                exit::SUCCESS
            } else {
                code
            }
        }
        Err(f) => {
            let _ = writeln!(std::io::stderr(), "error: {}", f.message);
            f.code
        }
    }
}

/// What a verb that checks first goes on with.
enum Then {
    /// The rollout path, to the Compose file's revision or to this one.
    Run(Option<rollout_core::Revision>),
    /// Nothing more: the exit code.
    Exit(i32),
}

fn run(req: RolloutRequest) -> i32 {
    run_to(req, None)
}

/// A rollout to the revision the Compose file names, or with `undo` to
/// that revision (`docker rollout undo`, launched from its saved spec).
fn run_to(req: RolloutRequest, undo: Option<rollout_core::Revision>) -> i32 {
    let (itx, irx) = mpsc::unbounded_channel();
    // The docker CLI closes its socket on Ctrl-C when stdout is not a
    // terminal: that is our Ctrl-C.
    if let Ok(Some(stream)) = socket::connect_from_env() {
        let tx = itx.clone();
        socket::on_close(stream, move || {
            let _ = tx.send(Interrupt::SocketClosed);
        });
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "error: cannot start the runtime: {e}");
            return exit::UNEXPECTED;
        }
    };
    let format = req.output;
    let dry = req.dry_run;
    rt.block_on(async move {
        listen_for_signals(itx.clone());
        match rollout(req, irx, itx, undo).await {
            Ok(code) => code,
            Err(f) => {
                let _ = writeln!(std::io::stderr(), "error: {}", f.message);
                output::not_started(format, dry, f.code, &f.message);
                f.code
            }
        }
    })
}

/// SIGINT and SIGTERM each send one [`Interrupt::Signal`].
fn listen_for_signals(tx: mpsc::UnboundedSender<Interrupt>) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut int), Ok(mut term)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        return;
    };
    tokio::spawn(async move {
        loop {
            tokio::select! {
                Some(()) = int.recv() => {}
                Some(()) = term.recv() => {}
                else => return,
            }
            if tx.send(Interrupt::Signal).is_err() {
                return;
            }
        }
    });
}

/// Waits for `fut`, or fails with exit 130 at the first interrupt: before
/// the strategy runs, nothing has changed and there is nothing to undo.
async fn or_interrupted<T>(
    irx: &mut mpsc::UnboundedReceiver<Interrupt>,
    fut: impl std::future::Future<Output = Result<T, Fail>>,
) -> Result<T, Fail> {
    tokio::select! {
        r = fut => r,
        Some(_) = irx.recv() => Err(Fail {
            code: exit::INTERRUPTED,
            message: "interrupted before anything was changed".to_string(),
        }),
    }
}

async fn rollout(
    req: RolloutRequest,
    mut irx: mpsc::UnboundedReceiver<Interrupt>,
    itx: mpsc::UnboundedSender<Interrupt>,
    undo: Option<rollout_core::Revision>,
) -> Result<i32, Fail> {
    if let Some(force) = req.unlock {
        return or_interrupted(&mut irx, unlock::unlock(&req, force)).await;
    }
    let stack = match req.stack.clone() {
        Some(stack) => Some(stack),
        None => or_interrupted(&mut irx, swarm::stack_of_project(&req)).await?,
    };
    if let Some(stack) = stack {
        // A Swarm stack: rollout-swarm's standby approach, which hears interrupts itself.
        return swarm::run(&req, &stack, &mut irx).await;
    }
    if let Some((node, engine)) = req.swarm_nodes.first() {
        return Err(Fail::bad_input(format!(
            "--swarm-node {node}={engine}: the service is not one of a Swarm stack (no --stack, and no stack named as the project runs): the flag names the engine of a swarm node where nginx runs"
        )));
    }
    if req.docker.debug && !req.dry_run {
        // Which door progress takes, and whose width it uses, is otherwise
        // invisible until a rollout draws it.
        let people = output::Terminal::stderr();
        let door = output::Door::pick(req.output, &people);
        let _ = writeln!(
            std::io::stderr(),
            "debug: output: {}",
            door.describe(&people)
        );
    }
    // Bad input is found before the engine is asked: the project read by
    // the rules of the tool chosen were it running nothing yet. Once the
    // engine says which tool made its containers, it is read again if that
    // tool's rules differ.
    let names = live::project_names(&req);
    let prepared = live::prepare(&req, live::choose_compose(&req, &names, None).await?)?;
    // The migration folder and URL are read before anything changes too.
    let around = match &req.migrate {
        Some(spec) if !req.dry_run => Some(around::Around::load(
            spec,
            prepared.settings.image.as_deref().unwrap_or(&req.service),
        )?),
        _ => None,
    };
    let strategy: Arc<dyn rollout_core::Strategy> =
        Arc::from(rollout_strategies::built_in(prepared.settings.strategy));
    if req.dry_run {
        return dry_run(&req, &names, prepared, strategy, &mut irx).await;
    }
    let engine = or_interrupted(&mut irx, live::connect(&req.docker)).await?;
    let prepared = or_interrupted(
        &mut irx,
        live::settle_compose(&req, &names, &engine, prepared),
    )
    .await?;
    warn(&prepared.warnings);
    // The image is pulled or built before the target revision is formed
    // from it (the id the reference resolves to is part of the revision).
    let mut prelude = output::Prelude::new(req.output, output::Terminal::stderr().colour());
    or_interrupted(
        &mut irx,
        live::make_ready(&prepared, &req, &engine, &mut prelude),
    )
    .await?;
    let settings = &prepared.settings;
    let strategy_name = settings.strategy.as_str();
    // The two colours of a blue-green pair share one lock besides their
    // own: rollouts of the pair run one after the other.
    let pair = live::colour_pair(settings);
    let pair_journal = rollout_docker::DockerJournal::new(engine.clone());
    if let Some(pair) = &pair {
        or_interrupted(
            &mut irx,
            live::wait_pair(&pair_journal, &settings.service, pair, req.lock_timeout),
        )
        .await?;
    }
    let kept = engine.clone();
    let wired = match or_interrupted(&mut irx, live::wire(&prepared, &req, engine)).await {
        Ok(wired) => match &undo {
            Some(back) => or_interrupted(&mut irx, live::retarget(wired, settings, back)).await?,
            None => wired,
        },
        Err(f) => {
            if let Some(pair) = &pair {
                let _ = pair_journal.unlock(pair).await;
            }
            return Err(f);
        }
    };
    // The operator's hooks: `pre` before the strategy changes anything (its
    // failure refuses the rollout, exit 2), `post` or `on-failure` after.
    let mut hooks = hooks::Hooks::new(&prepared, &wired.target);
    if let Some(h) = hooks.as_mut() {
        if let Err(f) = or_interrupted(&mut irx, h.pre()).await {
            if let Some(pair) = &pair {
                let _ = pair_journal.unlock(pair).await;
            }
            return Err(f);
        }
    }
    let plan = settings.plan(wired.target.clone());
    let mut renderer = output::setup(req.output, strategy_name, &plan);
    renderer.already_new(wired.already_new);
    for (id, host) in &wired.hosts {
        renderer.know_host(id.clone(), host);
    }
    for n in &wired.notes {
        let _ = writeln!(std::io::stderr(), "note: {n}");
    }
    renderer.note(&match &wired.proxy {
        Some((service, upstream)) => match prepared.settings.proxy_kind {
            rollout_compose::ProxyKind::Nginx => format!(
                "proxy: nginx service {service}, upstream {upstream}; engine {}",
                wired.endpoint
            ),
            rollout_compose::ProxyKind::Haproxy => format!(
                "proxy: haproxy service {service}, backend {upstream} (runtime API, no reload); engine {}",
                wired.endpoint
            ),
        },
        None => format!("proxy: none; engine {}", wired.endpoint),
    });
    renderer.note(&format!("compose: {}", prepared.compose));
    match (settings.strategy, wired.analysis_rules.as_ref()) {
        (rollout_core::StrategyKind::BlueGreen, Some(rules)) => renderer.note(&format!(
            "analysis: {}",
            plan::switch_analysis(&plan, rules)
        )),
        (rollout_core::StrategyKind::Canary, rules)
        | (rollout_core::StrategyKind::Rolling, rules @ Some(_)) => {
            renderer.note(&format!("analysis: {}", plan::analysis_line(rules)))
        }
        _ => {}
    }
    if let Some(around) = &around {
        // Expand before anything starts: the new revision needs it, and
        // the old one ignores what it adds.
        if let Err(f) = or_interrupted(&mut irx, around.expand(&mut renderer)).await {
            if let Some(pair) = &pair {
                let _ = pair_journal.unlock(pair).await;
            }
            // Nothing was launched, but `pre` ran: `on-failure` and the
            // webhook hear this failure like any other.
            if let Some(h) = hooks.as_mut() {
                h.failed_before_launch(&f, renderer.t()).await;
            }
            return Err(f);
        }
    }
    let (steer_handle, steer) = rollout_core::Steer::new();
    let ctx = RolloutContext {
        backend: wired.backend.clone(),
        router: wired.router.clone(),
        journal: wired.journal.clone(),
        analysis: wired.analysis.clone(),
        verifier: wired.verifier.clone(),
        events: rollout_core::event::EventSink::discard(),
        cancel: Cancel::never(),
        steer,
    };
    // `docker rollout abort|pause|resume|promote` from another shell leaves
    // a request with the engine: one left by an earlier run is stale.
    let _ = rollout_docker::history::take_request(&kept, &settings.service).await;
    let requests = verbs::listen(kept.clone(), settings.service.clone(), itx, steer_handle);
    let started = verbs::now();
    let outcome = drive::run(
        strategy,
        ctx,
        plan.clone(),
        &mut renderer,
        Some(irx),
        Some(Duration::from_secs(5)),
    )
    .await;
    requests.abort();
    // Replaced journal generations are removed in the background: gone
    // before the process is (one left behind would be harmless).
    wired.docker_journal.flush().await;
    if let Some(pair) = &pair {
        let _ = pair_journal.unlock(pair).await;
    }
    let mut code = outcome.exit_code();
    if let Some(around) = &around {
        if matches!(outcome, Outcome::Completed | Outcome::NoChange) {
            let mut services = vec![settings.service.service.clone()];
            if let TrafficLayout::Colours { other, .. } = &settings.layout {
                services.push(other.service.clone());
            }
            let target = rollout_migrate::gate::Target {
                services,
                image: plan.target.image.clone(),
                // Unknown, no container matches it: contract is deferred.
                image_id: plan.target.image_id.clone().unwrap_or_default(),
            };
            match around
                .after(
                    &kept,
                    &[settings.service.project.as_str()],
                    &target,
                    &mut renderer,
                )
                .await
            {
                // On stderr with the phases' progress, whatever the output
                // format (a JSON stream carries no notes).
                Ok(notes) => {
                    for n in &notes {
                        let _ = writeln!(std::io::stderr(), "note: {n}");
                    }
                }
                Err(f) => {
                    let _ = writeln!(
                        std::io::stderr(),
                        "error: migrate after the rollout: {}",
                        f.message
                    );
                    code = f.code;
                }
            }
        } else {
            let _ = writeln!(
                std::io::stderr(),
                "note: migrate: the rollout did not complete: backfill and contract did not run (expand stays: the old revision ignores it)"
            );
        }
    }
    let elapsed = renderer.t();
    let summary = Summary::finished(
        &plan,
        strategy_name,
        &outcome,
        elapsed,
        renderer.tally().clone(),
    );
    renderer.summary(&summary);
    if !matches!(outcome, Outcome::Busy(_) | Outcome::NoChange) {
        let tally = renderer.tally();
        let entry = rollout_core::journal::HistoryEntry {
            service: settings.service.clone(),
            strategy: strategy_name.to_string(),
            started,
            finished: verbs::now(),
            from: renderer.from().cloned(),
            to: Some(plan.target.clone()),
            outcome: outcome.clone(),
            steps: tally.traffic_changes,
            launched: tally.launched,
            removed: tally.removed,
            exit_code: code,
            undo: undo.is_some(),
        };
        verbs::record(&kept, entry).await;
    }
    if let Some(h) = hooks.as_mut() {
        h.after(&outcome, code, elapsed, renderer.from().cloned())
            .await;
    }
    Ok(code)
}

/// Prints the warnings for the operator on stderr.
fn warn(warnings: &[String]) {
    for w in warnings {
        let _ = writeln!(std::io::stderr(), "warning: {w}");
    }
}

async fn dry_run(
    req: &RolloutRequest,
    names: &rollout_compose::ProjectNames,
    prepared: live::Prepared,
    strategy: Arc<dyn rollout_core::Strategy>,
    irx: &mut mpsc::UnboundedReceiver<Interrupt>,
) -> Result<i32, Fail> {
    // Only reads: the instances that run now and the Compose config hash.
    let engine = or_interrupted(irx, async {
        Ok(
            match tokio::time::timeout(Duration::from_secs(10), live::connect(&req.docker)).await {
                Ok(r) => r,
                Err(_) => Err(Fail::unreachable("no answer within 10s")),
            },
        )
    })
    .await?;
    let prepared = match &engine {
        Ok(engine) => {
            or_interrupted(irx, live::settle_compose(req, names, engine, prepared)).await?
        }
        Err(_) => match &prepared.compose.reason {
            // Without the engine nothing can change the refusal.
            rollout_docker::compose::Reason::Provisional { refusal } => {
                return Err(Fail::bad_input(refusal.to_string()))
            }
            _ => prepared,
        },
    };
    warn(&prepared.warnings);
    let settings = &prepared.settings;
    let image = settings.image.clone().unwrap_or_default();
    let compose = live::compose_cli(&prepared, req);
    let (current, target) = match engine {
        Ok(engine) => {
            let current = live::current(&engine, compose.clone(), settings).await;
            let backend = rollout_docker::DockerBackend::new(engine, compose);
            let target = backend
                .compose_revision(&settings.service, &image)
                .await
                .unwrap_or_else(|_| Revision::new("new", &image));
            (current, target)
        }
        Err(e) => (
            dry::Current {
                source: format!(
                    "assumed: the engine was not read ({})",
                    e.message.lines().next().unwrap_or_default()
                ),
                assumed: true,
                ..Default::default()
            },
            Revision::new("new", &image),
        ),
    };
    let plan = settings.plan(target);
    let mut view = plan::PlanView::new(settings.strategy, &plan);
    view.proxy = settings.proxy.clone();
    view.proxy_kind = settings.proxy_kind;
    view.upstream = settings.upstream.clone();
    view.analysis = settings.analysis.clone();
    let format = req.output;
    let colour = output::Terminal::stdout().colour();
    let code = tokio::task::spawn_blocking(move || {
        dry::run(
            strategy,
            &plan,
            view,
            current,
            format,
            colour,
            std::io::stdout(),
        )
    })
    .await
    .unwrap_or(exit::UNEXPECTED);
    Ok(code)
}
