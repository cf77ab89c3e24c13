//! HAProxy seen from outside the tool: a Compose project with the `rollout-haproxy:2.6` image
//! in front (the example's `haproxy.cfg`), the load through it, and HAProxy's own runtime
//! state (`show servers state`), read through the relay in its container.

use crate::engine::{docker, require_engine, require_images};
use crate::load::mix;
use crate::project::Project;
use rollout_haproxy::state::{parse_servers_state, Mode};
use rollout_load::{LoadConfig, LoadHandle};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// The HAProxy image `cargo xtask images` builds.
pub const HAPROXY_IMAGE: &str = "rollout-haproxy:2.6";

/// The example's config: an admin stats socket and twelve slots in backend `app`.
pub const EXAMPLE_HAPROXY_CFG: &str = include_str!("../../examples/haproxy/haproxy.cfg");

/// The relay in the image, and the socket the example's config declares.
const RELAY: &str = "/usr/local/bin/rollout-haproxy-relay";
const SOCKET: &str = "/run/haproxy/admin.sock";

/// A project of `services` (YAML under `services:`, indented by two spaces) behind a service
/// `haproxy` with the example's config, brought up. `images` are the app images it needs.
pub fn haproxy_project(slug: &str, services: &str, images: &[&str]) -> Project {
    require_engine();
    let mut all = vec![HAPROXY_IMAGE];
    all.extend_from_slice(images);
    require_images(&all);
    let p = Project::new(slug);
    p.write(
        "docker-compose.yml",
        &format!(
            "services:\n  haproxy:\n    image: {HAPROXY_IMAGE}\n    volumes:\n      - ./haproxy.cfg:/etc/haproxy/haproxy.cfg:ro\n    labels:\n      io.rollout.test: {}\n{services}",
            p.name()
        ),
    );
    p.write("haproxy.cfg", EXAMPLE_HAPROXY_CFG);
    p
}

/// The load of every rollout test on the project's haproxy (its container address): the
/// standard mix with slow GETs and POSTs both held 3 s (in flight on an app that exits at
/// once on SIGTERM: each drain must wait them out), bounded to `max`.
pub fn haproxy_load(p: &Project, max: Duration) -> LoadHandle {
    let mut config = LoadConfig::new(p.container_address("haproxy", 80));
    mix(&mut config, max);
    config.slow = Duration::from_secs(3);
    config.post_delay = Duration::from_secs(3);
    LoadHandle::start(config).unwrap_or_else(|e| panic!("cannot start the load: {e}"))
}

/// One runtime API command on the running haproxy of `p`, by the relay; its answer.
pub fn runtime(p: &Project, command: &str) -> String {
    let haproxy = p.running("haproxy");
    let out = docker()
        .args(["exec", &haproxy.name, RELAY, SOCKET, command])
        .output()
        .unwrap();
    assert!(out.status.success(), "{command}: {out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The servers of `backend` in service, from HAProxy's own `show servers state`: address to
/// weight (a slot from a `disabled` template keeps its configured-maintenance bit when
/// ready, which the router's parser reads as active).
pub fn routed(p: &Project, backend: &str) -> BTreeMap<String, u32> {
    let answer = runtime(p, &format!("show servers state {backend}"));
    parse_servers_state(&answer)
        .unwrap_or_else(|e| panic!("{e}: {answer}"))
        .into_iter()
        .filter(|s| s.mode() == Mode::Active)
        .map(|s| (s.addr.to_string(), s.weight))
        .collect()
}

/// The slots of `backend` HAProxy shows draining (`server:address`): none once a run has
/// ended, as the router frees drained slots with its next change or as the run ends.
pub fn draining(p: &Project, backend: &str) -> Vec<String> {
    let answer = runtime(p, &format!("show servers state {backend}"));
    parse_servers_state(&answer)
        .unwrap_or_else(|e| panic!("{e}: {answer}"))
        .into_iter()
        .filter(|s| s.mode() == Mode::Drain)
        .map(|s| format!("{}:{}", s.name, s.addr))
        .collect()
}

/// The addresses of the containers of `service` on their (one) network.
pub fn addresses(p: &Project, service: &str) -> BTreeSet<String> {
    p.containers(Some(service))
        .iter()
        .map(|c| {
            let out = docker()
                .args([
                    "inspect",
                    "--format",
                    "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
                    &c.id,
                ])
                .output()
                .unwrap();
            String::from_utf8_lossy(&out.stdout).trim().to_string()
        })
        .collect()
}

/// The kept relays (`rollout-haproxy-relay --serve`, one per run) in the haproxy of `p`.
pub const KEPT_RELAY: [&str; 2] = [RELAY, "--serve"];
