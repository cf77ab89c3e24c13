//! The real `RolloutContext`, built from the crates alone.
//!
//! The README says: swap the in-memory mock for `rollout_docker::DockerBackend`
//! and `rollout_nginx::router::NginxRouter` and the same code updates real
//! containers. This is that swap, with nothing from the plugin: the Compose
//! project read by `rollout-compose`, the engine found as the docker CLI
//! finds it, the Compose tool that made the project (the one its running
//! containers name; what is installed when it runs nothing yet), the
//! backend (whose launch gate keeps Compose's scaling honest),
//! the nginx router over the proxy service's containers, a journal kept with
//! the engine, and the strategy the Compose file names.
//!
//! ```text
//! cargo run -p live-context -- [-f FILE]... [-p PROJECT] SERVICE [--run]
//! ```
//!
//! It prints the plan and what the context sees now (instances and routes),
//! and changes nothing unless `--run` is given (then the rollout runs, as
//! `docker rollout SERVICE` would, with one JSON event per line). With no
//! engine reachable it says so and runs the same plan on the mock instead,
//! as `docker rollout --dry-run` does.

use rollout_compose::{Flavour, LoadOptions, Project, ProjectNames, Settings};
use rollout_core::event::EventSink;
use rollout_core::strategy::{Cancel, TrafficLayout};
use rollout_core::{Plan, Revision, RolloutContext, ServiceRef, Strategy};
use rollout_docker::{
    ComposeCli, DockerBackend, DockerCli, DockerJournal, Engine, GlobalFlags, HealthProbe,
    ProxyContainer, ToolLookup,
};
use rollout_mock::{MemoryJournal, MockCluster};
use rollout_nginx::router::{NginxRouter, NginxRouterOptions};
use rollout_nginx::verify::ProxyVerifier;
use rollout_nginx::ConfFile;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// What the command line asks for.
#[derive(Default)]
struct Args {
    files: Vec<PathBuf>,
    project: Option<String>,
    service: String,
    run: bool,
}

fn args() -> Result<Args, String> {
    let mut a = Args::default();
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "-f" | "--file" => a.files.push(it.next().ok_or("-f needs a file")?.into()),
            "-p" | "--project-name" => a.project = Some(it.next().ok_or("-p needs a name")?),
            "--run" => a.run = true,
            s if s.starts_with('-') => return Err(format!("unknown flag {s}")),
            s if a.service.is_empty() => a.service = s.to_string(),
            s => return Err(format!("one service only, found {s} too")),
        }
    }
    if a.service.is_empty() {
        return Err("usage: live-context [-f FILE]... [-p PROJECT] SERVICE [--run]".into());
    }
    Ok(a)
}

fn main() {
    let code = match args() {
        Err(e) => {
            eprintln!("error: {e}");
            2
        }
        Ok(args) => {
            // A current-thread runtime: the mock needs one to pause its clock.
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a tokio runtime");
            rt.block_on(run(args)).unwrap_or_else(|e| {
                eprintln!("error: {e}");
                1
            })
        }
    };
    std::process::exit(code);
}

async fn run(args: Args) -> Result<i32, String> {
    let mut options = LoadOptions {
        files: args.files.clone(),
        project_name: args.project.clone(),
        ..Default::default()
    };
    // The tool were the project running nothing yet; once the engine says
    // which tool made its containers, the project is read by that tool's
    // rules (the two name projects differently).
    let names = ProjectNames::load(&options);
    let lookup = ToolLookup::new(None, "docker", Vec::<String>::new());
    options.flavour = rollout_docker::choose_tool(&names, &[], &lookup)
        .await
        .map_err(|e| e.to_string())?
        .flavour;
    let project = Project::load(&options).map_err(|e| e.to_string())?;
    let mut settings = project.settings(&args.service).map_err(|e| e.to_string())?;
    for w in project
        .warnings
        .iter()
        .chain(&settings.resolve().map_err(|e| e.to_string())?)
    {
        eprintln!("warning: {w}");
    }
    let strategy: Arc<dyn Strategy> = Arc::from(rollout_strategies::built_in(settings.strategy));
    let endpoint = rollout_docker::resolve(&GlobalFlags::default()).map_err(|e| e.to_string())?;
    let cli = DockerCli::new("docker", Vec::<String>::new());
    let connected = tokio::time::timeout(
        Duration::from_secs(10),
        Engine::connect_to(&endpoint, Some(&cli)),
    )
    .await;
    let engine = match connected {
        Ok(Ok(engine)) => engine,
        Ok(Err(e)) => return on_the_mock(strategy, &settings, &e.to_string()).await,
        Err(_) => return on_the_mock(strategy, &settings, "no answer within 10s").await,
    };
    let made = rollout_docker::compose::project_containers(&engine, &names)
        .await
        .map_err(|e| e.to_string())?;
    let tool = rollout_docker::choose_tool(&names, &made, &lookup)
        .await
        .map_err(|e| e.to_string())?;
    let (project, settings) = if tool.flavour == options.flavour {
        (project, settings)
    } else {
        options.flavour = tool.flavour;
        let project = Project::load(&options).map_err(|e| e.to_string())?;
        let mut settings = project.settings(&args.service).map_err(|e| e.to_string())?;
        settings.resolve().map_err(|e| e.to_string())?;
        (project, settings)
    };
    let (ctx, plan) = live_context(&engine, &project, &settings).await?;
    println!("engine: {}", engine.endpoint());
    println!("compose: {tool}");
    print_plan(strategy.name(), &plan);
    for s in services(&settings) {
        for i in ctx.backend.instances(&s).await.map_err(|e| e.to_string())? {
            println!(
                "instance: {} {} {} {:?} {:?}",
                s.service, i.host, i.revision, i.state, i.health
            );
        }
    }
    for r in ctx.router.routes().await.map_err(|e| e.to_string())? {
        println!("route: {} weight {}", r.target.host(), r.weight);
    }
    if !args.run {
        println!("nothing changed (pass --run to roll out)");
        return Ok(0);
    }
    Ok(run_printing(strategy.as_ref(), ctx, &plan).await)
}

/// The service and its other colour, if any.
fn services(settings: &Settings) -> Vec<ServiceRef> {
    let mut all = vec![settings.service.clone()];
    if let TrafficLayout::Colours { other, .. } = &settings.layout {
        all.push(other.clone());
    }
    all
}

/// The real context: Docker backend, nginx router, Docker journal.
async fn live_context(
    engine: &Engine,
    project: &Project,
    settings: &Settings,
) -> Result<(RolloutContext, Plan), String> {
    let mut compose = match project.flavour {
        Flavour::V1 => ComposeCli::v1(),
        Flavour::V2 => ComposeCli::v2(Vec::<String>::new()),
    };
    // The Compose tool runs in the project directory: files by full path.
    let here = std::env::current_dir().map_err(|e| e.to_string())?;
    for f in &project.files {
        compose = compose.file(here.join(f));
    }
    compose = compose
        .project_name(&project.name)
        .current_dir(&project.directory);
    for p in &project.profiles {
        compose = compose.profile(p);
    }
    let image = settings.image.clone().unwrap_or_default();
    let mut backend = DockerBackend::new(engine.clone(), compose);
    let target = backend
        .compose_revision(&settings.service, &image)
        .await
        .map_err(|e| e.to_string())?;
    backend
        .check_image(&image)
        .await
        .map_err(|e| e.to_string())?;

    let Some(proxy) = settings.proxy.clone() else {
        // No proxy in front (a queue worker): rolled out without traffic routing.
        let ctx = RolloutContext {
            backend: Arc::new(backend),
            router: Arc::new(rollout_strategies::NoTraffic::new(
                &settings.service.service,
            )),
            journal: Arc::new(DockerJournal::new(engine.clone())),
            analysis: None,
            verifier: None,
            events: EventSink::discard(),
            cancel: Cancel::never(),
            steer: rollout_core::Steer::never(),
        };
        return Ok((ctx, settings.plan(target)));
    };
    let proxy_service = ServiceRef::new(&project.name, proxy);
    let proxies = ProxyContainer::of_service(engine, &proxy_service)
        .await
        .map_err(|e| e.to_string())?;
    let config = settings
        .proxy_config
        .clone()
        .unwrap_or_else(|| "/etc/nginx/nginx.conf".to_string());
    let names: Vec<String> = services(settings).into_iter().map(|s| s.service).collect();
    let upstream = match &settings.upstream {
        Some(u) => u.clone(),
        None => {
            let live = proxies[0]
                .files
                .read(&config)
                .await
                .map_err(|e| e.to_string())?;
            ConfFile::parse(&config, live)
                .map_err(|e| e.to_string())?
                .upstream_routing(&project.name, &names)
                .map_err(|e| e.to_string())?
        }
    };
    let mut options = NginxRouterOptions::new(&upstream, &config);
    options.services = names;
    options.port = settings.port;
    let first = proxies[0].clone();
    let router = NginxRouter::open(options, proxies)
        .await
        .map_err(|e| e.to_string())?;
    for note in router.recovered() {
        eprintln!("note: {note}");
    }
    let verifier = Arc::new(ProxyVerifier::new(first, router.port()));
    if let Some(check) = &settings.health_probe {
        backend = backend.with_probe(
            settings.service.service.clone(),
            HealthProbe {
                verifier: verifier.clone(),
                check: check.clone(),
                interval: Duration::from_secs(1),
            },
        );
    }
    let ctx = RolloutContext {
        backend: Arc::new(backend),
        router: Arc::new(router),
        journal: Arc::new(DockerJournal::new(engine.clone())),
        analysis: None,
        verifier: settings
            .blue_green
            .verify
            .as_ref()
            .map(|_| verifier as Arc<dyn rollout_core::strategy::Verifier>),
        events: EventSink::discard(),
        cancel: Cancel::never(),
        steer: rollout_core::Steer::never(),
    };
    Ok((ctx, settings.plan(target)))
}

/// No engine: the same plan on the mock, with `replicas` instances of the
/// revision that runs now, routed by name.
async fn on_the_mock(
    strategy: Arc<dyn Strategy>,
    settings: &Settings,
    why: &str,
) -> Result<i32, String> {
    println!(
        "engine: not reachable ({})",
        why.lines().next().unwrap_or(why)
    );
    println!("showing the plan on the in-memory mock instead");
    tokio::time::pause();
    let plan = settings.plan(Revision::new(
        "new",
        settings.image.clone().unwrap_or_default(),
    ));
    let mock = MockCluster::new();
    mock.add_service(&plan.service);
    match &plan.layout {
        TrafficLayout::Single => mock.seed(&plan.service, "current", plan.replicas, true),
        TrafficLayout::Colours { other, .. } => mock.seed(other, "current", plan.replicas, true),
    }
    let ctx = RolloutContext {
        backend: mock.clone(),
        router: mock.clone(),
        journal: Arc::new(MemoryJournal::new()),
        analysis: None,
        verifier: None,
        events: EventSink::discard(),
        cancel: Cancel::never(),
        steer: rollout_core::Steer::never(),
    };
    print_plan(strategy.name(), &plan);
    Ok(run_printing(strategy.as_ref(), ctx, &plan).await)
}

fn print_plan(strategy: &str, plan: &Plan) {
    println!("strategy: {strategy}");
    println!(
        "plan: {}",
        serde_json::to_string(plan).unwrap_or_else(|e| e.to_string())
    );
}

/// Runs `strategy` on `ctx`, printing one JSON event per line; returns the
/// exit code of the outcome.
async fn run_printing(strategy: &dyn Strategy, mut ctx: RolloutContext, plan: &Plan) -> i32 {
    let (events, mut rx) = EventSink::channel();
    ctx.events = events;
    let rollout = async move {
        let outcome = strategy.run(&ctx, plan).await;
        // The last sender goes with the context: the printing ends.
        drop(ctx);
        outcome
    };
    let print = async {
        while let Some(event) = rx.recv().await {
            println!(
                "event: {}",
                serde_json::to_string(&event).unwrap_or_else(|e| e.to_string())
            );
        }
    };
    let (outcome, ()) = tokio::join!(rollout, print);
    println!("outcome: {outcome:?}");
    outcome.exit_code()
}
