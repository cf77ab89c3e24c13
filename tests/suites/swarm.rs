//! The swarm the Swarm backend's tests run on, shown to work on this machine: a worker engine
//! in a network namespace of the test's own joins the host's engine, a stack of the demo app
//! (`endpoint_mode: dnsrr`, the routing mesh needs IPVS, which these machines lack) spreads
//! over both nodes, and nginx on the manager serves from the tasks of both through the overlay
//! network. The stack's `update_config` and `rollback_config` (the seed's values) are what
//! Swarm holds after `docker stack deploy`, field for field as `rollout-swarm` maps them from
//! our reading of the same file. Afterwards the engine is out of the swarm again and the
//! namespace is gone.

use rollout_e2e::swarm::Swarm;
use rollout_e2e::{
    docker, free_port, images, require_engine, require_images, run_ok, wait_http, Project,
    DEMO_PORT, NGINX_IMAGE, SEED_NGINX_CONF,
};
use rollout_swarm::update::{self, ServiceSpecUpdateConfig};
use serde_json::Value;
use std::collections::BTreeSet;
use std::process::Command;
use std::time::{Duration, Instant};

/// The stack file: four demo app tasks, two per node at most, and nginx on the manager
/// published in host mode (no routing mesh).
fn stack_file(port: u16) -> String {
    format!(
        "version: \"3.8\"\n\
         services:\n\
         \x20 app:\n\
         \x20   image: {v1}\n\
         \x20   networks: [front]\n\
         \x20   deploy:\n\
         \x20     replicas: 4\n\
         \x20     endpoint_mode: dnsrr\n\
         \x20     update_config:\n\
         \x20       parallelism: 2\n\
         \x20       delay: 10s\n\
         \x20       failure_action: rollback\n\
         \x20       monitor: 30s\n\
         \x20       max_failure_ratio: 0.3\n\
         \x20       order: start-first\n\
         \x20     rollback_config:\n\
         \x20       parallelism: 0\n\
         \x20       delay: 1500ms\n\
         \x20       failure_action: continue\n\
         \x20       monitor: 7s\n\
         \x20       max_failure_ratio: 0.25\n\
         \x20     placement:\n\
         \x20       max_replicas_per_node: 2\n\
         \x20 nginx:\n\
         \x20   image: {NGINX_IMAGE}\n\
         \x20   networks: [front]\n\
         \x20   volumes:\n\
         \x20     - ./nginx.conf:/etc/nginx/nginx.conf:ro\n\
         \x20   ports:\n\
         \x20     - {{target: 80, published: {port}, protocol: tcp, mode: host}}\n\
         \x20   deploy:\n\
         \x20     placement:\n\
         \x20       constraints: [node.role == manager]\n\
         networks:\n\
         \x20 front:\n\
         \x20   driver: overlay\n",
        v1 = images::V1,
    )
}

/// The nodes the running tasks of `service` are on.
fn task_nodes(service: &str) -> Vec<String> {
    let out = run_ok(docker().args([
        "service",
        "ps",
        service,
        "--filter",
        "desired-state=running",
        "--no-trunc",
        "--format",
        "{{.ID}}",
    ]));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|task| {
            let out = run_ok(docker().args([
                "inspect",
                "--type",
                "task",
                "--format",
                "{{.Status.State}} {{.NodeID}}",
                task.trim(),
            ]));
            String::from_utf8_lossy(&out.stdout).trim().to_string()
        })
        .collect()
}

/// Waits until `service` has `count` tasks running; returns their node ids.
fn wait_running(service: &str, count: usize, timeout: Duration) -> Vec<String> {
    let deadline = Instant::now() + timeout;
    loop {
        let tasks = task_nodes(service);
        let running: Vec<String> = tasks
            .iter()
            .filter_map(|t| t.strip_prefix("running ").map(str::to_string))
            .collect();
        if running.len() == count {
            return running;
        }
        assert!(
            Instant::now() < deadline,
            "{service}: {count} tasks not running within {timeout:?}: {tasks:?}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// What `docker stack deploy` gave `service` for `update_config` and `rollback_config` is
/// what `rollout-swarm` maps our reading of the same file to, and reads back to it.
fn same_update_config_as_swarms(project: &Project, service: &str) {
    let loaded = rollout_compose::Project::load(&rollout_compose::LoadOptions {
        files: vec![project.dir().join("stack.yaml")],
        working_dir: Some(project.dir().to_path_buf()),
        ..Default::default()
    })
    .unwrap();
    let ours = loaded.settings("app").unwrap();
    let inspect = |field: &str| -> Value {
        let out = run_ok(docker().args([
            "service",
            "inspect",
            service,
            "--format",
            &format!("{{{{json .Spec.{field}}}}}"),
        ]));
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let swarms = inspect("UpdateConfig");
    same_fields(
        &serde_json::to_value(update::to_swarm_update(&ours.update).unwrap()).unwrap(),
        &swarms,
    );
    let read: ServiceSpecUpdateConfig = serde_json::from_value(swarms).unwrap();
    assert_eq!(update::from_swarm_update(Some(&read)).unwrap(), ours.update);
    same_fields(
        &serde_json::to_value(update::to_swarm_rollback(&ours.rollback).unwrap()).unwrap(),
        &inspect("RollbackConfig"),
    );
}

/// Every field of `ours` has Swarm's value, numbers compared as numbers (Swarm writes 0.3 as
/// 0.3 and 0 as 0); a field Swarm left out is 0 in ours (Swarm omits a zero delay).
fn same_fields(ours: &Value, swarms: &Value) {
    let ours = ours.as_object().unwrap();
    for (field, value) in ours {
        match swarms.get(field) {
            Some(theirs) if value.is_number() => {
                assert_eq!(
                    value.as_f64(),
                    theirs.as_f64(),
                    "{field}: ours {ours:?}, Swarm's {swarms}"
                )
            }
            Some(theirs) => assert_eq!(value, theirs, "{field}: ours {ours:?}, Swarm's {swarms}"),
            None => assert_eq!(
                value.as_f64(),
                Some(0.0),
                "{field}: Swarm has none, ours {value}"
            ),
        }
    }
    assert_eq!(
        swarms
            .as_object()
            .unwrap()
            .keys()
            .filter(|k| !ours.contains_key(*k))
            .count(),
        0,
        "Swarm holds a field we do not map: {swarms}"
    );
}

/// Removes the stack when dropped (before the swarm goes, as fields drop in order).
struct Stack(String);

impl Drop for Stack {
    fn drop(&mut self) {
        let _ = docker().args(["stack", "rm", &self.0]).output();
        // The overlay network goes once its tasks are gone.
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            let left = docker()
                .args(["network", "ls", "-q", "--filter"])
                .arg(format!("label=com.docker.stack.namespace={}", self.0))
                .output()
                .map(|o| !o.stdout.is_empty())
                .unwrap_or(false);
            if !left {
                break;
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

#[test]
#[ignore = "needs docker: run with cargo xtask e2e"]
fn a_worker_engine_joins_the_swarm_and_nginx_serves_tasks_of_both_nodes() {
    require_engine();
    require_images(&[images::V1, NGINX_IMAGE]);
    let project = Project::new("swarm-two-nodes");
    let swarm = Swarm::two_nodes();
    let nodes = swarm.node_ids();
    assert_eq!(nodes.len(), 2, "{nodes:?}");
    for image in [images::V1, NGINX_IMAGE] {
        swarm.share_image(image);
    }
    let port = free_port();
    project.write("stack.yaml", &stack_file(port));
    project.write(
        "nginx.conf",
        &SEED_NGINX_CONF.replace("server app:8000;", &format!("server app:{DEMO_PORT};")),
    );
    // nginx resolves `app` once, at start: the app's tasks run first.
    let name = project.name().to_string();
    let stack = Stack(name.clone());
    let deploy = |file: &str| {
        run_ok(
            Command::new("docker")
                .current_dir(project.dir())
                .args(["stack", "deploy", "-c", file, &stack.0]),
        );
    };
    project.write(
        "app-only.yaml",
        &stack_file(port)
            .split("  nginx:\n")
            .next()
            .map(|head| format!("{head}networks:\n  front:\n    driver: overlay\n"))
            .unwrap(),
    );
    deploy("app-only.yaml");
    let app_nodes: BTreeSet<String> =
        wait_running(&format!("{name}_app"), 4, Duration::from_secs(60))
            .into_iter()
            .collect();
    assert_eq!(
        app_nodes,
        nodes.iter().cloned().collect(),
        "the app's tasks are on both nodes"
    );
    same_update_config_as_swarms(&project, &format!("{name}_app"));
    deploy("stack.yaml");
    wait_running(&format!("{name}_nginx"), 1, Duration::from_secs(60));
    let addr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut instances = BTreeSet::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while instances.len() < 4 && Instant::now() < deadline {
        let answer = wait_http(addr, "/", Duration::from_secs(30), |a| a.status == 200);
        assert_eq!(answer.version.as_deref(), Some("v1"));
        instances.extend(answer.instance);
    }
    assert_eq!(
        instances.len(),
        4,
        "nginx on the manager reached every task, also those on the worker: {instances:?}"
    );
    drop(stack);
    drop(swarm);
    let out = run_ok(docker().args(["info", "--format", "{{.Swarm.LocalNodeState}}"]));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "inactive");
    let namespaces = run_ok(Command::new("ip").args(["netns", "list"]));
    assert!(
        !String::from_utf8_lossy(&namespaces.stdout).contains("rollout-swarm-"),
        "the namespace is gone"
    );
}
