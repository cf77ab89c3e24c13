//! The wiring of a real rollout: the Compose project, the engine, the
//! operator's Compose tool, the nginx proxy container(s), the journal kept
//! with the engine, and the strategy.
//!
//! Everything here only connects crates; the decisions are theirs. What is
//! checked before anything changes (so that it can exit 2 or 6 with nothing
//! touched): the project and the service (bad input), the engine
//! (unreachable), the Compose tool (the one that made the project's
//! containers, which must be installed: rollout-docker decides) and its
//! config hash, the proxy service and its containers, the nginx config and
//! its upstream. A service with no proxy in front is wired without them.
//! Before the target revision is formed, the image is built or pulled as the
//! settings ask ([`make_ready`]), so that a new image under the same tag is
//! what the rollout goes to.

use crate::cli::{DockerGlobals, RolloutRequest};
use crate::dry::Current;
use crate::fail::Fail;
use crate::output::Prelude;
use rollout_compose::{Flavour, Project, ProjectNames, ProxyKind, Settings};
use rollout_core::analysis::AnalysisRules;
use rollout_core::journal::{Journal, Liveness};
use rollout_core::strategy::{Analysis, TrafficLayout, Verifier};
use rollout_core::{Backend, Event, InstanceId, ServiceRef, StrategyKind, TrafficRouter};
use rollout_docker::compose::project_containers;
use rollout_docker::{
    ensure_image, ComposeCli, DockerBackend, DockerCli, DockerJournal, DockerProxyLock, Engine,
    GlobalFlags, HealthProbe, ProxyContainer, PullProgress, Reference, ToolChoice, ToolLookup,
};
use rollout_nginx::proxy::Proxy;
use rollout_nginx::router::{NginxRouter, NginxRouterOptions, ProxyLocking};
use rollout_nginx::verify::ProxyVerifier;
use rollout_nginx::{ConfFile, RoutingError};
use rollout_strategies::NoTraffic;
use std::ffi::OsString;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// The nginx config path when `x-rollout.proxy_config` does not say.
pub const DEFAULT_NGINX_CONF: &str = "/etc/nginx/nginx.conf";

/// The project and the service's settings, read before anything else.
pub struct Prepared {
    /// The project as the Compose tool sees it.
    pub project: Project,
    /// The service's settings with the command line's overrides.
    pub settings: Settings,
    /// Which Compose tool the project is used with, and why.
    pub compose: ToolChoice,
    /// Warnings for the operator (printed before the rollout).
    pub warnings: Vec<String>,
}

/// The name each Compose tool gives the project (their rules differ).
pub fn project_names(req: &RolloutRequest) -> ProjectNames {
    ProjectNames::load(&req.compose.load_options(Flavour::default()))
}

/// Where the docker CLI that ran the plugin finds the Compose tools.
pub fn tool_lookup(g: &DockerGlobals) -> ToolLookup {
    let program = std::env::var_os(crate::cli::PLUGIN_ENV).unwrap_or_else(|| "docker".into());
    ToolLookup::new(g.config.as_deref(), program, docker_args(g))
}

/// The Compose tool for the project (rollout-docker decides): the one that
/// made its running containers, read from `engine`. Without an engine, what
/// is installed decides, and when nothing is, the choice is provisional (the
/// engine may show a tool that made the containers, and the refusal then
/// names it). A refusal is bad input; nothing changed.
pub async fn choose_compose(
    req: &RolloutRequest,
    names: &ProjectNames,
    engine: Option<&Engine>,
) -> Result<ToolChoice, Fail> {
    let made = match engine {
        Some(engine) => project_containers(engine, names).await?,
        None => Vec::new(),
    };
    match rollout_docker::choose_tool(names, &made, &tool_lookup(&req.docker)).await {
        Ok(choice) => Ok(choice),
        Err(refusal) => match (engine, ToolChoice::provisional(&refusal)) {
            (None, Some(provisional)) => Ok(provisional),
            _ => Err(Fail::bad_input(refusal.to_string())),
        },
    }
}

/// `prepared` with the Compose tool the project's running containers name;
/// loaded again when that tool's rules differ from the one it was read with.
pub async fn settle_compose(
    req: &RolloutRequest,
    names: &ProjectNames,
    engine: &Engine,
    prepared: Prepared,
) -> Result<Prepared, Fail> {
    let compose = choose_compose(req, names, Some(engine)).await?;
    if compose.flavour == prepared.compose.flavour {
        let mut warnings = prepared.warnings;
        warnings.extend(compose.warnings.iter().cloned());
        return Ok(Prepared {
            compose,
            warnings,
            ..prepared
        });
    }
    prepare(req, compose)
}

/// Loads the project and the service's settings by the rules of the
/// Compose tool `compose`; every error is bad input.
pub fn prepare(req: &RolloutRequest, compose: ToolChoice) -> Result<Prepared, Fail> {
    let flavour = compose.flavour;
    let project = Project::load(&req.compose.load_options(flavour))
        .map_err(|e| Fail::bad_input(e.to_string()))?;
    let mut settings = project
        .settings(&req.service)
        .map_err(|e| Fail::bad_input(e.to_string()))?;
    settings
        .apply(&req.overrides)
        .map_err(|e| Fail::bad_input(e.to_string()))?;
    let mut warnings = project.warnings.clone();
    warnings.extend(
        settings
            .resolve()
            .map_err(|e| Fail::bad_input(e.to_string()))?,
    );
    warnings.extend(compose.warnings.iter().cloned());
    Ok(Prepared {
        project,
        settings,
        compose,
        warnings,
    })
}

/// The docker CLI's global flags again, for child `docker` commands.
pub fn docker_args(g: &DockerGlobals) -> Vec<OsString> {
    let mut a: Vec<OsString> = Vec::new();
    if let Some(c) = &g.config {
        a.push("--config".into());
        a.push(c.clone().into());
    }
    if let Some(c) = &g.context {
        a.push("--context".into());
        a.push(c.into());
    }
    for h in &g.hosts {
        a.push("--host".into());
        a.push(h.into());
    }
    if g.tls {
        a.push("--tls".into());
    }
    if let Some(v) = g.tls_verify {
        a.push(format!("--tlsverify={v}").into());
    }
    for (flag, path) in [
        ("--tlscacert", &g.tls_ca_cert),
        ("--tlscert", &g.tls_cert),
        ("--tlskey", &g.tls_key),
    ] {
        if let Some(p) = path {
            a.push(flag.into());
            a.push(p.clone().into());
        }
    }
    a
}

/// Connects to the engine the docker CLI would use, negotiating the API
/// version. Exit 6 when it cannot be reached.
pub async fn connect(g: &DockerGlobals) -> Result<Engine, Fail> {
    let flags = GlobalFlags {
        config: g.config.clone(),
        context: g.context.clone(),
        hosts: g.hosts.clone(),
        tls: g.tls,
        tls_verify: g.tls_verify,
        tls_ca_cert: g.tls_ca_cert.clone(),
        tls_cert: g.tls_cert.clone(),
        tls_key: g.tls_key.clone(),
    };
    let endpoint = rollout_docker::resolve(&flags).map_err(|e| Fail::bad_input(e.to_string()))?;
    let program = std::env::var_os(crate::cli::PLUGIN_ENV).unwrap_or_else(|| "docker".into());
    let cli = DockerCli::new(program, docker_args(g));
    Engine::connect_to(&endpoint, Some(&cli))
        .await
        .map_err(Fail::from)
}

fn absolute(p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        std::env::current_dir()
            .map(|d| d.join(p))
            .unwrap_or_else(|_| p.to_path_buf())
    }
}

/// The operator's Compose tool on this project: the same files, name,
/// env files and profiles, run in the project directory.
pub fn compose_cli(p: &Prepared, req: &RolloutRequest) -> ComposeCli {
    let mut c = match p.compose.flavour {
        Flavour::V1 => ComposeCli::v1(),
        Flavour::V2 => ComposeCli::v2(docker_args(&req.docker)),
    };
    for f in &p.project.files {
        c = c.file(absolute(f));
    }
    c = c.project_name(&p.project.name);
    for e in &req.compose.env_files {
        c = c.env_file(absolute(e));
    }
    for prof in &p.project.profiles {
        c = c.profile(prof);
    }
    c.current_dir(&p.project.directory)
}

/// The instances that run now, read from the engine (for `--dry-run`).
pub async fn current(engine: &Engine, compose: ComposeCli, settings: &Settings) -> Current {
    let backend = DockerBackend::new(engine.clone(), compose);
    let service = backend
        .instances(&settings.service)
        .await
        .unwrap_or_default();
    let other = match &settings.layout {
        TrafficLayout::Colours { other, .. } => backend.instances(other).await.unwrap_or_default(),
        TrafficLayout::Single => Vec::new(),
    };
    Current {
        service,
        other,
        source: format!("read from the engine at {}", engine.endpoint()),
        assumed: false,
    }
}

/// Finds the upstream that routes the service (rollout-nginx decides which);
/// a config that does not parse, or no such upstream, is bad input.
pub fn find_upstream(
    conf: &[u8],
    path: &str,
    project: &str,
    names: &[String],
) -> Result<String, Fail> {
    let file = ConfFile::parse(path, conf.to_vec()).map_err(|e| {
        // The parser's message names the file and line already.
        let e = e.to_string();
        Fail::bad_input(if e.starts_with(path) {
            e
        } else {
            format!("{path}: {e}")
        })
    })?;
    file.upstream_routing(project, names).map_err(|e| {
        let hint = match &e {
            RoutingError::NoUpstream { names, .. } => format!(
                "route the service through an upstream block (upstream backend {{ server {}:PORT; }}), or set x-rollout.upstream",
                names[0]
            ),
            RoutingError::Several { .. } => "say which with x-rollout.upstream".to_string(),
        };
        Fail::bad_input(format!("{e}\nhint: {hint}"))
    })
}

/// How long `--build` lets the Compose tool build.
const BUILD_LIMIT: Duration = Duration::from_secs(30 * 60);

/// Makes the image the rollout goes to ready on the engine, before the
/// target revision is formed from it: built by the Compose tool when the
/// settings ask (`--build`, `pull_policy: build`), else pulled from its
/// registry when the pull policy asks (an image Compose builds is never
/// pulled). Progress goes to `prelude`. A build that fails, or an image
/// the registry does not have, is bad input (2); a registry that cannot be
/// reached is exit 6; nothing has changed in either case.
pub async fn make_ready(
    p: &Prepared,
    req: &RolloutRequest,
    engine: &Engine,
    prelude: &mut Prelude,
) -> Result<(), Fail> {
    let settings = &p.settings;
    let Some(image) = settings.image.clone() else {
        return Ok(());
    };
    let service = &settings.service.service;
    if settings.build {
        prelude.note(&format!(
            "building {image}: {} build {service}",
            p.compose.flavour.command()
        ));
        return compose_cli(p, req)
            .build(service, BUILD_LIMIT)
            .await
            .map_err(|e| {
                Fail::bad_input(format!(
                    "the image of {} was not built: {e}",
                    settings.service
                ))
            });
    }
    if settings.built {
        return Ok(());
    }
    let registry = Reference::parse(&image).registry;
    let config_dir = rollout_docker::auth::config_dir(req.docker.config.as_deref());
    let mut said = false;
    let mut progress = |step: PullProgress| {
        if !said {
            said = true;
            prelude.note(&format!(
                "pulling {image} from {registry} (pull policy {})",
                settings.pull
            ));
        }
        prelude.event(&Event::ImagePull {
            image: image.clone(),
            registry: registry.clone(),
            layer: step.layer,
            status: step.status,
        });
    };
    ensure_image(
        engine,
        &image,
        settings.pull,
        config_dir.as_deref(),
        &mut progress,
    )
    .await
    .map(|_| ())
    .map_err(Fail::from)
}

/// Everything a live rollout runs with.
pub struct Wired {
    /// The backend (launches one at a time, never during a retirement).
    pub backend: Arc<dyn Backend>,
    /// Where the engine was reached, for messages.
    pub endpoint: String,
    /// The router (nginx or HAProxy).
    pub router: Arc<dyn TrafficRouter>,
    /// The journal, kept with the engine.
    pub journal: Arc<dyn Journal>,
    /// The same journal, to wait for its background removals before exit.
    pub docker_journal: DockerJournal,
    /// Blue-green's verification, if configured.
    pub verifier: Option<Arc<dyn Verifier>>,
    /// The target revision.
    pub target: rollout_core::Revision,
    /// Hosts of the instances that run now, for the renderer.
    pub hosts: Vec<(InstanceId, String)>,
    /// How many ready instances of the service already run the target.
    pub already_new: usize,
    /// Notes for the operator (what the router repaired on open).
    pub notes: Vec<String>,
    /// The proxy service and the upstream (nginx) or backend (HAProxy); `None` for a service with no
    /// proxy in front, rolled out without traffic routing.
    pub proxy: Option<(String, String)>,
    /// The analysis (a canary's steps, a rolling update's or a blue-green
    /// switch's monitor window), when rules are configured.
    pub analysis: Option<Arc<dyn Analysis>>,
    /// The rules it judges by.
    pub analysis_rules: Option<AnalysisRules>,
}

/// The note of a rollout with no proxy in front, one line: nothing to drain,
/// and what stops an old instance instead.
pub fn no_traffic_note(settings: &Settings) -> String {
    format!(
        "no proxy in front of {}: no traffic to route or drain; each old instance is sent its stop signal and given its stop_grace_period ({}) to finish its work",
        settings.service.service,
        rollout_core::duration::format_duration(settings.timeouts.stop_grace)
    )
}

/// The lock both colours of a blue-green pair take (`pair.BLUE.GREEN`, the
/// colours in order), or `None` for a single service.
pub fn colour_pair(settings: &Settings) -> Option<ServiceRef> {
    let TrafficLayout::Colours { other, .. } = &settings.layout else {
        return None;
    };
    let mut colours = [settings.service.service.as_str(), other.service.as_str()];
    colours.sort();
    Some(ServiceRef::new(
        &settings.service.project,
        format!("pair.{}.{}", colours[0], colours[1]),
    ))
}

/// Waits for the pair's lock (up to `timeout`, saying for whom), after
/// refusing at once, with exit 7, a second rollout of the very service.
pub async fn wait_pair(
    journal: &DockerJournal,
    service: &ServiceRef,
    pair: &ServiceRef,
    timeout: Duration,
) -> Result<(), Fail> {
    let here = rollout_strategies::lock_holder();
    if let Some(held) = journal.holder(service).await? {
        if rollout_docker::lock::judge(&held.holder, &here) != Liveness::Dead {
            return Err(rollout_core::JournalError::Locked {
                service: service.to_string(),
                holder: held.holder,
                since: held.since,
            }
            .into());
        }
    }
    journal
        .wait_lock(pair, &here, timeout, &|held| {
            let _ = writeln!(
                std::io::stderr(),
                "waiting for the other colour's rollout to end ({} since {})",
                held.holder,
                held.since
            );
        })
        .await?;
    Ok(())
}

/// Connects every part. Nothing is changed unless the nginx router finds
/// a change an earlier run left half-done, which it finishes (and says so
/// in `notes`). A service with no proxy in front gets the router that
/// routes nothing (`rollout_strategies::NoTraffic`).
pub async fn wire(p: &Prepared, req: &RolloutRequest, engine: Engine) -> Result<Wired, Fail> {
    let settings = &p.settings;
    let Some(proxy_service) = settings.proxy.clone() else {
        return wire_unrouted(p, req, engine).await;
    };
    if settings.proxy_kind == ProxyKind::Haproxy {
        return crate::haproxy::wire(p, req, engine, proxy_service).await;
    }
    let project = &p.project.name;
    let compose = compose_cli(p, req);
    let image = settings.image.clone().unwrap_or_default();
    let mut backend = DockerBackend::new(engine.clone(), compose);
    let analysis_rules = settings
        .analysis
        .clone()
        .filter(|_| judged_strategy(settings.strategy));
    let config_path = settings
        .proxy_config
        .clone()
        .unwrap_or_else(|| DEFAULT_NGINX_CONF.to_string());
    let mut names = vec![settings.service.service.clone()];
    let mut services = vec![settings.service.clone()];
    if let TrafficLayout::Colours { other, .. } = &settings.layout {
        names.push(other.service.clone());
        services.push(other.clone());
    }
    // The Compose tool computes the target's config hash (a process start of
    // a few hundred milliseconds) while the proxy is found and opened.
    let open_router = async {
        let proxy_ref = ServiceRef::new(project, &proxy_service);
        // Every change of the proxy's config, and the recovery that opening
        // runs, holds the proxy's lock: rollouts of other services behind
        // this proxy wait for each other's edits.
        let locking = proxy_locking(
            &engine,
            project,
            &proxy_service,
            req,
            "waiting for the proxy config: another rollout changes it",
        );
        // A proxy that a killed run left unable to start (its file torn) is
        // repaired from the journal kept with the engine, under the proxy
        // lock, and started.
        let revived =
            rollout_docker::revive(&engine, &proxy_ref, &config_path, Some(&locking)).await?;
        for note in &revived {
            let _ = writeln!(std::io::stderr(), "{note}");
        }
        let proxies: Vec<Proxy> = ProxyContainer::of_service(&engine, &proxy_ref).await?;
        let upstream = match &settings.upstream {
            Some(u) => u.clone(),
            None => {
                let live = proxies[0].files.read(&config_path).await.map_err(|e| {
                Fail::unreachable(format!(
                    "cannot read the nginx config of {}: {e}\nhint: set x-rollout.proxy_config to the file nginx is started with",
                    proxies[0].name
                ))
            })?;
                find_upstream(&live, &config_path, project, &names)?
            }
        };
        let mut options = NginxRouterOptions::new(&upstream, &config_path);
        options.services = names.clone();
        options.port = settings.port;
        // The tool's log is arranged only for a rollout judged by its rules
        // (a canary, a rolling update, a blue-green switch).
        if analysis_rules
            .as_ref()
            .is_some_and(AnalysisRules::reads_proxy_log)
        {
            options.metrics_log = Some(crate::analysis::log_path(&upstream));
        }
        let probe_proxy = proxies[0].clone();
        let nginx = NginxRouter::open_locked(options, proxies, locking).await?;
        Ok::<_, Fail>((nginx, probe_proxy, upstream))
    };
    let (opened, target) = tokio::join!(
        open_router,
        backend.compose_revision(&settings.service, &image)
    );
    let (nginx, probe_proxy, upstream) = opened?;
    let target = target?;
    let mut notes = nginx.recovered().to_vec();
    let port = nginx.port();
    let log_proxies: Vec<Proxy> = nginx.proxies().cloned().collect();
    if let Some(check) = &settings.health_probe {
        backend = backend.with_probe(
            settings.service.service.clone(),
            HealthProbe {
                verifier: Arc::new(ProxyVerifier::new(probe_proxy.clone(), port)),
                check: check.clone(),
                interval: Duration::from_secs(1),
            },
        );
    }
    // The image was pulled or built (make_ready) before the target was
    // formed; one still missing is bad input, found before anything changes
    // (not at the first launch, with routes already moved).
    backend.check_image(&image).await?;
    let backend = Arc::new(backend);
    let Known {
        hosts,
        already_new,
        left_alone,
    } = known_instances(&backend, &services, settings, &target).await?;
    notes.extend(left_alone);
    let router: Arc<dyn TrafficRouter> = Arc::new(nginx);
    let verifier: Option<Arc<dyn Verifier>> = settings
        .blue_green
        .verify
        .as_ref()
        .map(|_| Arc::new(ProxyVerifier::new(probe_proxy, port)) as Arc<dyn Verifier>);
    let analysis = analysis_rules.as_ref().and_then(|rules| {
        let log = rules.reads_proxy_log().then(|| {
            crate::analysis::proxy_log(
                log_proxies,
                &upstream,
                backend.clone(),
                services,
                rules.clone(),
            )
        });
        crate::analysis::with_prometheus(rules, log)
    });
    let journal = DockerJournal::new(engine);
    Ok(Wired {
        endpoint: backend.engine().endpoint().to_string(),
        backend,
        router,
        journal: Arc::new(journal.clone()),
        docker_journal: journal,
        verifier,
        target,
        hosts,
        already_new,
        notes,
        proxy: Some((proxy_service, upstream)),
        analysis,
        analysis_rules,
    })
}

/// [`wire`] for a service with no proxy in front (rollout-compose has
/// refused what needs one): the engine, the Compose tool and the journal,
/// and a router that routes nothing.
async fn wire_unrouted(p: &Prepared, req: &RolloutRequest, engine: Engine) -> Result<Wired, Fail> {
    let settings = &p.settings;
    let image = settings.image.clone().unwrap_or_default();
    let backend = DockerBackend::new(engine.clone(), compose_cli(p, req));
    let target = backend.compose_revision(&settings.service, &image).await?;
    backend.check_image(&image).await?;
    let backend = Arc::new(backend);
    let services = [settings.service.clone()];
    let Known {
        hosts,
        already_new,
        left_alone,
    } = known_instances(&backend, &services, settings, &target).await?;
    let journal = DockerJournal::new(engine);
    Ok(Wired {
        endpoint: backend.engine().endpoint().to_string(),
        backend,
        router: Arc::new(NoTraffic::new(&settings.service.service)),
        journal: Arc::new(journal.clone()),
        docker_journal: journal,
        verifier: None,
        target,
        hosts,
        already_new,
        notes: [vec![no_traffic_note(settings)], left_alone].concat(),
        proxy: None,
        analysis: None,
        analysis_rules: None,
    })
}

/// `wired` with `back` as its target instead of the revision the Compose
/// file names (`docker rollout undo`): the backend launches it from its
/// saved spec, and the rest of the rollout is the same.
pub async fn retarget(
    mut wired: Wired,
    settings: &Settings,
    back: &rollout_core::Revision,
) -> Result<Wired, Fail> {
    wired.already_new = wired
        .backend
        .instances(&settings.service)
        .await?
        .iter()
        .filter(|i| i.revision == back.id && i.is_ready())
        .count();
    wired.notes.push(format!(
        "undo: back to {} (revision {}) from its saved spec; the Compose file still names {}: a later `docker rollout {}` returns to it",
        back.image,
        back.id.chars().take(12).collect::<String>(),
        wired.target.image,
        settings.service.service
    ));
    wired.target = back.clone();
    Ok(wired)
}

/// What a rollout knows of `services` before it starts.
pub(crate) struct Known {
    /// The hosts of the instances that run now.
    pub hosts: Vec<(InstanceId, String)>,
    /// How many ready ones of the rolled service run the target already.
    pub already_new: usize,
    /// One note per stopped container the tool did not launch, which it
    /// leaves alone.
    pub left_alone: Vec<String>,
}

/// The hosts of the instances of `services` that run now, how many ready
/// ones of the rolled service run `target` already, and the stopped
/// containers the tool leaves alone (named, nothing else of them shown).
pub(crate) async fn known_instances(
    backend: &DockerBackend,
    services: &[ServiceRef],
    settings: &Settings,
    target: &rollout_core::Revision,
) -> Result<Known, Fail> {
    let mut known = Known {
        hosts: Vec::new(),
        already_new: 0,
        left_alone: Vec::new(),
    };
    for s in services {
        for i in backend.instances(s).await? {
            if s == &settings.service && i.revision == target.id && i.is_ready() {
                known.already_new += 1;
            }
            known.hosts.push((i.id, i.host));
        }
        for name in backend.left_alone(s).await? {
            known.left_alone.push(format!(
                "{name} (service {}): left alone: not launched by rollout (stopped; not removed, started, counted or routed)",
                s.service
            ));
        }
    }
    Ok(known)
}

/// The strategies an analysis judges: a canary's steps, a rolling update's
/// monitor windows (a failing verdict fails every instance in its window,
/// toward `max_failure_ratio`), and the monitor window after a blue-green
/// switch (a failing verdict switches back).
pub fn judged_strategy(kind: StrategyKind) -> bool {
    matches!(
        kind,
        StrategyKind::Canary | StrategyKind::Rolling | StrategyKind::BlueGreen
    )
}

/// The lock every change of one proxy is made under (keyed by project and
/// proxy service), waited for at most `--lock-timeout`, saying `waiting`
/// and who holds it while it waits.
pub fn proxy_locking(
    engine: &Engine,
    project: &str,
    proxy_service: &str,
    req: &RolloutRequest,
    waiting: &'static str,
) -> ProxyLocking {
    let lock = DockerProxyLock::new(engine.clone(), project, proxy_service);
    let mut locking = ProxyLocking::new(Arc::new(lock), rollout_strategies::lock_holder());
    locking.timeout = req.lock_timeout;
    locking.on_wait = Arc::new(move |held| {
        let _ = writeln!(
            std::io::stderr(),
            "{waiting} ({} since {})",
            held.holder,
            held.since
        );
    });
    locking
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEED: &str = "events {}\n\nhttp {\n    upstream backend {\n        server app:8000;\n    }\n    upstream other {\n        server api:9000;\n    }\n    server {\n        listen 80;\n        location / {\n            proxy_pass http://backend;\n        }\n    }\n}\n";

    #[test]
    fn the_upstream_is_the_one_naming_the_service() {
        let names = ["app".to_string()];
        assert_eq!(
            find_upstream(SEED.as_bytes(), "/etc/nginx/nginx.conf", "shop", &names).unwrap(),
            "backend"
        );
        // Mid-rollout, the upstream names containers of the service.
        let mid = SEED.replace("server app:8000;", "server shop_app_3:8000;");
        assert_eq!(
            find_upstream(mid.as_bytes(), "/etc/nginx/nginx.conf", "shop", &names).unwrap(),
            "backend"
        );
        // The other colour is what the upstream names before a blue-green switch.
        let colours = ["green".to_string(), "blue".to_string()];
        let bg = SEED.replace("server app:8000;", "server blue:8000;");
        assert_eq!(
            find_upstream(bg.as_bytes(), "/etc/nginx/nginx.conf", "shop", &colours).unwrap(),
            "backend"
        );
    }

    #[test]
    fn no_or_several_upstreams_are_bad_input_with_a_hint() {
        let names = ["web".to_string()];
        let e =
            find_upstream(SEED.as_bytes(), "/etc/nginx/nginx.conf", "shop", &names).unwrap_err();
        assert_eq!(e.code, 2);
        assert!(
            e.message.contains(
                "no upstream in /etc/nginx/nginx.conf names web (upstreams: backend, other)"
            ),
            "{}",
            e.message
        );
        assert!(e.message.contains("\nhint: "), "{}", e.message);
        let two = SEED.replace("server api:9000;", "server app:9000;");
        let e = find_upstream(
            two.as_bytes(),
            "/etc/nginx/nginx.conf",
            "shop",
            &["app".to_string()],
        )
        .unwrap_err();
        assert_eq!(e.code, 2);
        assert!(e.message.contains("several upstreams"), "{}", e.message);
        let e = find_upstream(b"http { upstream x {", "/n.conf", "shop", &names).unwrap_err();
        assert_eq!(e.code, 2);
        assert!(e.message.starts_with("/n.conf"), "{}", e.message);
    }

    #[test]
    fn docker_flags_are_passed_on_to_child_docker_commands() {
        let g = DockerGlobals {
            config: Some("/cfg".into()),
            context: Some("prod".into()),
            tls_verify: Some(true),
            ..Default::default()
        };
        let args: Vec<String> = docker_args(&g)
            .into_iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            args,
            ["--config", "/cfg", "--context", "prod", "--tlsverify=true"]
        );
    }
}
