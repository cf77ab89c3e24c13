//! The wiring of a rollout behind HAProxy: the proxy container, its
//! `haproxy.cfg` read from the container (its bind mount), the backend that
//! routes the service, and rollout-haproxy's router over the runtime API,
//! reached by exec of the relay in the container (rollout-docker's
//! `ExecChannel`) with container addresses from rollout-docker's
//! `DockerResolver`.
//!
//! What is checked before anything changes (exit 2 or 6, nothing touched):
//! the proxy runs (one container: the router drives one HAProxy process),
//! the config has an admin stats socket on a unix path and the backend has
//! `server-template` slots (rollout-haproxy's errors say what to add), and
//! the running HAProxy has those slots.
//!
//! A backend with no server at all (an HAProxy just started: slots are
//! filled only through the runtime API) is given the service's running
//! instances first, the state at rest, once the target revision is known
//! and its image is there; a note says so.

use crate::cli::RolloutRequest;
use crate::fail::Fail;
use crate::live::{compose_cli, known_instances, Known, Prepared, Wired};
use rollout_core::error::RouterError;
use rollout_core::router::{Route, RouteChange, Target};
use rollout_core::strategy::{TrafficLayout, Verifier};
use rollout_core::{ServiceRef, TrafficRouter};
use rollout_docker::{
    DockerBackend, DockerJournal, DockerResolver, Engine, ExecChannel, HealthProbe, ProxyContainer,
};
use rollout_haproxy::config::SocketAddress;
use rollout_haproxy::{HaproxyConfig, HaproxyRouter, RuntimeLock};
use rollout_nginx::router::ProxyLocking;
use rollout_nginx::verify::ProxyVerifier;
use std::sync::Arc;
use std::time::Duration;

/// The proxy lock nginx's router takes (kept with the engine, keyed by
/// project, proxy service and config path), taken around every change of
/// the HAProxy's runtime state: rollouts of other services behind the same
/// HAProxy (or the other colour) wait for each other's changes.
struct HaproxyLock {
    locking: ProxyLocking,
    key: String,
}

#[async_trait::async_trait]
impl RuntimeLock for HaproxyLock {
    async fn acquire(&self) -> Result<(), RouterError> {
        self.locking.take(&self.key).await
    }

    async fn release(&self) {
        self.locking.give_back(&self.key).await;
    }
}

/// The config path when `x-rollout.proxy_config` does not say (Debian's,
/// and the `rollout-haproxy` image's).
pub const DEFAULT_HAPROXY_CFG: &str = "/etc/haproxy/haproxy.cfg";

/// The backend that routes the service: `x-rollout.upstream`, else the one
/// named after the service (or its other colour), else the config's one
/// backend with server slots.
pub fn find_backend(
    config: &HaproxyConfig,
    named: Option<&str>,
    names: &[String],
) -> Result<String, Fail> {
    if let Some(name) = named {
        return Ok(name.to_string());
    }
    if let Some((name, _)) = config
        .backends
        .iter()
        .find(|(b, _)| names.iter().any(|n| n == b))
    {
        return Ok(name.clone());
    }
    let with_slots: Vec<&str> = config
        .backends
        .iter()
        .filter(|(_, t)| !t.is_empty())
        .map(|(b, _)| b.as_str())
        .collect();
    match with_slots.as_slice() {
        [one] => Ok(one.to_string()),
        [] => Err(Fail::bad_input(format!(
            "{} has no backend with a `server-template`: instances are added without a reload only into server slots\nhint: add `backend {} ... server-template {} 1-10 0.0.0.0:0 disabled` (at least twice as many slots as the service has instances)",
            config.file, names[0], names[0]
        ))),
        several => Err(Fail::bad_input(format!(
            "{} has several backends with server slots ({}), and none is named {}\nhint: say which with x-rollout.upstream",
            config.file,
            several.join(", "),
            names[0]
        ))),
    }
}

/// [`crate::live::wire`] for a service behind HAProxy.
pub async fn wire(
    p: &Prepared,
    req: &RolloutRequest,
    engine: Engine,
    proxy_service: String,
) -> Result<Wired, Fail> {
    let settings = &p.settings;
    let judged = crate::live::judged_strategy(settings.strategy);
    let rules = settings.analysis.as_ref().filter(|_| judged);
    if rules.is_some_and(|r| r.reads_proxy_log()) {
        // The error rate and p99 come from the log nginx writes; HAProxy's
        // would need a reader of its own. Prometheus queries need no log.
        return Err(Fail::bad_input(format!(
            "the analysis of a {} rollout by error rate or p99 (x-rollout.analysis or --max-error-rate ...) reads the proxy's access log, which is built for nginx only; {} is behind HAProxy\nhint: judge it with Prometheus queries (x-rollout.analysis.prometheus or --prometheus-query), leave the rules out, or put nginx in front",
            settings.strategy,
            settings.service.service
        )));
    }
    let analysis = rules.and_then(|r| crate::analysis::with_prometheus(r, None));
    let project = &p.project.name;
    let image = settings.image.clone().unwrap_or_default();
    let mut backend = DockerBackend::new(engine.clone(), compose_cli(p, req));
    let config_path = settings
        .proxy_config
        .clone()
        .unwrap_or_else(|| DEFAULT_HAPROXY_CFG.to_string());
    let mut names = vec![settings.service.service.clone()];
    let mut services = vec![settings.service.clone()];
    if let TrafficLayout::Colours { other, .. } = &settings.layout {
        names.push(other.service.clone());
        services.push(other.clone());
    }
    let needs_port = settings.health_probe.is_some() || settings.blue_green.verify.is_some();
    if needs_port && settings.port.is_none() {
        return Err(Fail::bad_input(
            "behind HAProxy, x-rollout.health and x-rollout.verify need the port behind the proxy\nhint: set x-rollout.port",
        ));
    }
    let open_router = async {
        let proxies =
            ProxyContainer::of_service(&engine, &ServiceRef::new(project, &proxy_service)).await?;
        let [proxy] = proxies.as_slice() else {
            return Err(Fail::bad_input(format!(
                "the HAProxy service {proxy_service} runs {} containers, and the router drives one HAProxy process\nhint: run one replica of {proxy_service}",
                proxies.len()
            )));
        };
        let text = proxy.files.read(&config_path).await.map_err(|e| {
            Fail::unreachable(format!(
                "cannot read the haproxy config of {}: {e}\nhint: set x-rollout.proxy_config to the file haproxy is started with",
                proxy.name
            ))
        })?;
        let config = HaproxyConfig::parse(&config_path, &String::from_utf8_lossy(&text))
            .map_err(|e| Fail::bad_input(e.to_string()))?;
        let socket = config
            .admin_socket()
            .map_err(|e| Fail::bad_input(e.to_string()))?;
        let SocketAddress::Unix(path) = &socket.address else {
            return Err(Fail::bad_input(format!(
                "{}:{}: the admin stats socket is not a unix path, and the router reaches the runtime API through a unix socket in the proxy container\nhint: add `stats socket /run/haproxy/admin.sock mode 600 level admin` to the global section",
                config.file, socket.line
            )));
        };
        let name = find_backend(&config, settings.upstream.as_deref(), &names)?;
        let locking = crate::live::proxy_locking(
            &engine,
            project,
            &proxy_service,
            req,
            "waiting for the proxy: another rollout changes its servers",
        );
        let channel = ExecChannel::new(proxy.exec.clone(), proxy.name.clone(), path.clone())
            .keeping(engine.clone());
        let resolver = DockerResolver::new(engine.clone(), project, &proxy.name, settings.port)
            .await
            .map_err(|e| Fail::unreachable(e.to_string()))?;
        let router = HaproxyRouter::open(
            proxy.name.clone(),
            &config,
            &name,
            Arc::new(channel),
            Arc::new(resolver),
        )
        .await?
        .with_services(names.clone())
        .with_lock(Arc::new(HaproxyLock {
            locking,
            key: config_path.clone(),
        }));
        Ok::<_, Fail>((router, proxy.clone(), name))
    };
    let (opened, target) = tokio::join!(
        open_router,
        backend.compose_revision(&settings.service, &image)
    );
    let (router, proxy, backend_name) = opened?;
    let target = target?;
    let port = settings.port.unwrap_or_default();
    if let Some(check) = &settings.health_probe {
        backend = backend.with_probe(
            settings.service.service.clone(),
            HealthProbe {
                verifier: Arc::new(ProxyVerifier::new(proxy.clone(), port)),
                check: check.clone(),
                interval: Duration::from_secs(1),
            },
        );
    }
    backend.check_image(&image).await?;
    let backend = Arc::new(backend);
    let Known {
        hosts,
        already_new,
        left_alone,
    } = known_instances(&backend, &services, settings, &target).await?;
    let mut notes = left_alone;
    if matches!(settings.layout, TrafficLayout::Single) && router.routes().await?.is_empty() {
        let service = Target::Service {
            name: settings.service.service.clone(),
        };
        if !hosts.is_empty() {
            router
                .apply(&RouteChange {
                    set: vec![Route {
                        target: service,
                        weight: 1,
                    }],
                    remove: Vec::new(),
                })
                .await?;
            notes.push(format!(
                "haproxy backend {backend_name} in {} had no server: the {} running instances of {} were routed first (HAProxy's slots are filled only through its runtime API)",
                proxy.name,
                hosts.len(),
                settings.service.service
            ));
        }
    }
    let verifier: Option<Arc<dyn Verifier>> = settings
        .blue_green
        .verify
        .as_ref()
        .map(|_| Arc::new(ProxyVerifier::new(proxy, port)) as Arc<dyn Verifier>);
    let router: Arc<dyn TrafficRouter> = Arc::new(router);
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
        proxy: Some((proxy_service, backend_name)),
        analysis,
        analysis_rules: rules.cloned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const CFG: &str = "global\n    stats socket /run/haproxy/admin.sock mode 600 level admin\nbackend web\n    server-template app 1-10 0.0.0.0:0 disabled\nbackend api\n    server s1 10.0.0.1:80\n";

    #[test]
    fn the_backend_is_named_or_named_after_the_service_or_the_one_with_slots() {
        let config = HaproxyConfig::parse("haproxy.cfg", CFG).unwrap();
        let app = ["app".to_string()];
        assert_eq!(find_backend(&config, None, &app).unwrap(), "web");
        assert_eq!(find_backend(&config, Some("x"), &app).unwrap(), "x");
        assert_eq!(
            find_backend(&config, None, &["api".to_string()]).unwrap(),
            "api"
        );
        let two = format!("{CFG}backend other\n    server-template o 1-4 0.0.0.0:0 disabled\n");
        let config = HaproxyConfig::parse("haproxy.cfg", &two).unwrap();
        let e = find_backend(&config, None, &app).unwrap_err();
        assert_eq!(e.code, 2);
        assert!(
            e.message
                .contains("several backends with server slots (web, other)"),
            "{}",
            e.message
        );
    }
}
