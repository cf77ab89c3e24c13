//! HAProxy in front (issue 16): `docker rollout app` changes the backend's server slots
//! through HAProxy's runtime API, reached by exec of the relay in the `rollout-haproxy:2.6`
//! image, with no reload.
//!
//! Under the same load as every rollout test (250 requests per second through the proxy,
//! slow GETs, POSTs, keep-alive and new connections; the app exiting at once on SIGTERM),
//! through the real docker CLI.

use rollout_e2e::load::{mix, wait_ok};
use rollout_e2e::verdict::{assert_every_class_answered, assert_rate, publish};
use rollout_e2e::{
    docker, images, require_engine, require_images, run_rollout, workspace_binary, Clock,
    PluginDir, Project, ROLLOUT_TIMEOUT,
};
use rollout_haproxy::state::{parse_servers_state, Mode};
use rollout_load::{LoadConfig, LoadHandle};
use std::collections::BTreeSet;
use std::time::Duration;

/// The name the reports of this suite carry.
const SUITE: &str = "haproxy";

/// The HAProxy image `cargo xtask images` builds.
const HAPROXY_IMAGE: &str = "rollout-haproxy:2.6";

/// The example's config: an admin stats socket and twelve slots in backend `app`.
const HAPROXY_CFG: &str = include_str!("../../examples/haproxy/haproxy.cfg");

/// The example's layout with three replicas, one at a time, start-first, a short monitor.
const COMPOSE: &str = "services:\n  haproxy:\n    image: rollout-haproxy:2.6\n    volumes:\n      - ./haproxy.cfg:/etc/haproxy/haproxy.cfg:ro\n    depends_on:\n      - app\n  app:\n    image: ${APP_IMAGE}\n    deploy:\n      replicas: 3\n      update_config:\n        parallelism: 1\n        order: start-first\n        failure_action: rollback\n        monitor: 1s\n";

/// `show servers state app` of the running haproxy, by the relay.
fn servers_state(p: &Project) -> String {
    let haproxy = p.running("haproxy");
    let out = docker()
        .args([
            "exec",
            &haproxy.name,
            "/usr/local/bin/rollout-haproxy-relay",
        ])
        .args(["/run/haproxy/admin.sock", "show servers state app"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The addresses of the slots in service, read by the router's own parser (a slot from a
/// `disabled` template keeps its configured-maintenance bit when ready).
fn active_addresses(state: &str) -> BTreeSet<String> {
    parse_servers_state(state)
        .unwrap()
        .into_iter()
        .filter(|s| s.mode() == Mode::Active)
        .map(|s| s.addr.to_string())
        .collect()
}

/// The IP of a container on its (one) network.
fn ip_of(name: &str) -> String {
    let out = docker()
        .args([
            "inspect",
            "--format",
            "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
            name,
        ])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Item 4, first case: the rolling layout behind HAProxy, v1 to v2 under load: exit 0, no
/// failed request, and HAProxy's own `show servers state` routes exactly the new containers.
#[test]
#[ignore = "needs docker: run with cargo xtask e2e"]
fn rolling_behind_haproxy_fails_no_request() {
    require_engine();
    require_images(&[HAPROXY_IMAGE, images::V1, images::V2]);
    let mut p = Project::new("haproxy-rolling");
    p.write("docker-compose.yml", COMPOSE);
    p.write("haproxy.cfg", HAPROXY_CFG);
    p.set_env("APP_IMAGE", images::V1);
    p.up();
    p.wait_healthy("app", 3, Duration::from_secs(60));
    let plugins = PluginDir::install(&workspace_binary("docker-rollout", "docker-rollout"));
    let rollout = |p: &Project, load: Clock| {
        let mut cmd = p.rollout_command(&plugins);
        cmd.args(["app", "--output", "json"]);
        run_rollout(cmd, load, ROLLOUT_TIMEOUT)
    };
    // HAProxy starts with empty slots: the first run routes the running v1 instances, and
    // is otherwise a no-op.
    let first = rollout(&p, Clock::start());
    assert_eq!(first.code, Some(0), "{}", first.transcript());
    let v1: BTreeSet<String> = p
        .containers(Some("app"))
        .iter()
        .map(|c| ip_of(&c.name))
        .collect();
    assert_eq!(active_addresses(&servers_state(&p)), v1);

    let mut config = LoadConfig::new(p.container_address("haproxy", 80));
    mix(&mut config, Duration::from_secs(170));
    let load = LoadHandle::start(config).unwrap();
    wait_ok(&load, 750, Duration::from_secs(30));
    p.set_env("APP_IMAGE", images::V2);
    load.mark("rollout-start");
    let run = rollout(&p, Clock::of(&load));
    load.mark("rollout-end");
    std::thread::sleep(Duration::from_secs(1));
    let report = load.stop().unwrap();
    publish(SUITE, "rolling", &report, &[&run]);
    assert_eq!(run.code, Some(0), "{}", run.transcript());
    assert_eq!(run.outcome_name(), "completed");
    // HAProxy has no nginx error log to read: the load's own counts, stale keep-alive
    // retries included, are the verdict.
    assert_eq!(report.failed, 0, "failed requests: {:?}", report.failures);
    assert_eq!(report.skipped, 0, "the client could not keep up");
    let (start, end) = (
        report.mark("rollout-start").unwrap(),
        report.mark("rollout-end").unwrap(),
    );
    // No connection closed under a client: HAProxy is never reloaded.
    assert_eq!(report.stale_retries, 0, "stale keep-alive retries");
    assert_rate(&report, start, end, "during the rollout");
    assert_every_class_answered(&report);
    let app = p.containers(Some("app"));
    assert_eq!(app.len(), 3, "{app:#?}");
    assert!(app
        .iter()
        .all(|c| c.image == images::V2 && c.state == "running"));
    let v2: BTreeSet<String> = app.iter().map(|c| ip_of(&c.name)).collect();
    let state = servers_state(&p);
    assert_eq!(active_addresses(&state), v2, "{state}");
}
