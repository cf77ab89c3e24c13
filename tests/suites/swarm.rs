//! The swarm the Swarm backend's tests run on, shown to work on this machine: a worker engine
//! in a network namespace of the test's own joins the host's engine, a stack of the demo app
//! (`endpoint_mode: dnsrr`, the routing mesh needs IPVS, which these machines lack) spreads
//! over both nodes, and nginx on the manager serves from the tasks of both through the overlay
//! network. Afterwards the engine is out of the swarm again and the namespace is gone.

use rollout_e2e::swarm::Swarm;
use rollout_e2e::{
    docker, free_port, images, require_engine, require_images, run_ok, wait_http, Project,
    DEMO_PORT, NGINX_IMAGE, SEED_NGINX_CONF,
};
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
