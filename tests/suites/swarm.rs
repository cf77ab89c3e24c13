//! The swarm the Swarm backend's tests run on, shown to work on this machine: a worker engine
//! in a network namespace of the test's own joins the host's engine, a stack of the demo app
//! (`endpoint_mode: dnsrr`, the routing mesh needs IPVS, which these machines lack) spreads
//! over both nodes, and nginx on the manager serves from the tasks of both through the overlay
//! network. The stack's `update_config` and `rollback_config` (the seed's values) are what
//! Swarm holds after `docker stack deploy`, field for field as `rollout-swarm` maps them from
//! our reading of the same file. Afterwards the engine is out of the swarm again and the
//! namespace is gone.
//!
//! Then `docker rollout --stack` under load through nginx (250 requests per second, slow
//! GETs, POSTs, keep-alive and new connections; the app exiting at once on SIGTERM): the
//! seed's rolling update; an update to a never-healthy image that Swarm rolls back; and 3 s
//! GETs and POSTs in flight, with Swarm's own `docker service update` under the same
//! `update_config` run first in the same test and its failed requests printed beside ours; and
//! a run killed mid-update, a second run meanwhile busy, and a rerun that resumes it.

use rollout_core::Event;
use rollout_e2e::nginx::ConfigSnapshot;
use rollout_e2e::swarm::Swarm;
use rollout_e2e::swarm_stack::{
    app_only, colours_stack_file, failed_by_class, long_requests, resolving_conf,
    rollout_stack_file, run_plain, seed_conf, stack_file, swarm_with, wait_running, Deployed,
    Stack,
};
use rollout_e2e::verdict::{assert_clean_during, assert_no_failure};
use rollout_e2e::{
    docker, free_port, images, require_engine, require_images, run_ok, run_rollout, wait_http,
    workspace_binary, PluginDir, Project, Running, Whom, NGINX_IMAGE,
};
use rollout_load::{LoadConfig, LoadHandle};
use rollout_swarm::update::{self, ServiceSpecUpdateConfig};
use serde_json::Value;
use std::collections::BTreeSet;
use std::process::Command;
use std::time::{Duration, Instant};

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
    project.write("nginx.conf", &seed_conf());
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
    project.write("app-only.yaml", &app_only(&stack_file(port)));
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

/// The config changed during the run, and nginx never routed to fewer than `floor` tasks
/// (the service's name, at rest, covers all of them).
fn assert_floor(snaps: &[ConfigSnapshot], floor: usize) {
    assert!(
        snaps.len() > 2,
        "the config changed during the run: {snaps:?}"
    );
    for snap in snaps {
        let hosts = snap.hosts();
        assert!(
            hosts.iter().any(|h| h == "app") || hosts.len() >= floor,
            "nginx routed to fewer than the floor's {floor} tasks at {:.2}s: {:?}",
            snap.at,
            snap.servers
        );
    }
}

fn plugin() -> PluginDir {
    PluginDir::install(&workspace_binary("docker-rollout", "docker-rollout"))
}

/// Bad input (hooks among it: not run on a swarm yet) and `--dry-run` against the swarm change
/// nothing; then the seed's rolling
/// update (delay and monitor shortened) of the stack's app from v1 to v2 under load through
/// nginx: the standby takes the traffic, Swarm replaces the tasks, 0 failed requests, every
/// task on v2, the standby gone, nginx's config back at rest.
#[test]
#[ignore = "needs docker: run with cargo xtask e2e"]
fn a_stacks_service_is_updated_by_swarm_behind_a_drained_standby_with_no_failed_request() {
    require_engine();
    require_images(&[images::V1, images::V2, NGINX_IMAGE]);
    let plugins = plugin();
    let (d, before, conf_before) = Deployed::to_update("swarm-rolling", images::V2);
    let name = d.stack.0.clone();
    for (args, says) in [
        (vec!["--stack", "nosuch", "app"], "no stack nosuch"),
        (vec!["--stack", &name, "nope"], "no service \"nope\""),
        // Hooks are not run on a swarm yet: refused, not skipped.
        (
            vec!["--stack", &name, "app", "--hook-pre", "true"],
            "hooks (x-rollout.hooks, --hook-*, --webhook) is not supported on a swarm yet",
        ),
    ] {
        let out = d.rollout(&plugins, &args).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
    }
    let dry = d
        .rollout(&plugins, &["--stack", &name, "app", "--dry-run"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&dry.stdout);
    assert_eq!(
        dry.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&dry.stderr)
    );
    assert!(
        stdout.contains(&format!("{name}_app--standby")) && stdout.contains(images::V2),
        "the plan names the standby and the new image: {stdout}"
    );
    assert!(stdout.contains("parallelism 2"), "{stdout}");
    // In JSON, stdout is the summary alone; the plan goes to people, on stderr.
    let dry_json = d
        .rollout(
            &plugins,
            &["--stack", &name, "app", "--dry-run", "--output", "json"],
        )
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&dry_json.stdout);
    assert_eq!(dry_json.status.code(), Some(0), "{stdout}");
    let lines: Vec<Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert_eq!(lines.len(), 1, "{stdout}");
    assert_eq!(lines[0]["summary"]["dry_run"], true, "{stdout}");
    assert_eq!(lines[0]["summary"]["to"]["image"], images::V2, "{stdout}");
    assert!(String::from_utf8_lossy(&dry_json.stderr).contains("--standby"));
    // Without --stack: the stack named as the Compose project is found.
    let found = d
        .rollout(&plugins, &["-p", &name, "app", "--dry-run"])
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&found.stdout),
        String::from_utf8_lossy(&found.stderr),
    );
    assert_eq!(found.status.code(), Some(0), "{stdout}{stderr}");
    assert!(
        stderr.contains(&format!("the Swarm stack {name} runs on this engine"))
            && stdout.contains(&format!("{name}_app--standby")),
        "the stack was not found from the project: {stdout}{stderr}"
    );
    // A container of a Compose project of the same name beside the stack: not clear which one,
    // refused.
    let beside = run_ok(docker().args([
        "run",
        "-d",
        "--label",
        &format!("com.docker.compose.project={name}"),
        "--label",
        &format!("io.rollout.test={name}"),
        images::V1,
    ]));
    let beside = String::from_utf8_lossy(&beside.stdout).trim().to_string();
    let unclear = d
        .rollout(&plugins, &["-p", &name, "app", "--dry-run"])
        .output()
        .unwrap();
    run_ok(docker().args(["rm", "-f", &beside]));
    let stderr = String::from_utf8_lossy(&unclear.stderr);
    assert_eq!(unclear.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("which one to roll out is not clear") && stderr.contains("--stack"),
        "{stderr}"
    );
    assert_eq!(d.services(), before, "nothing changed");
    assert!(d
        .task_images("app")
        .iter()
        .all(|t| t.starts_with(images::V1)));
    assert_eq!(d.project.read("nginx.conf"), conf_before);

    let (run, snaps, report) = d.under_load("rolling", |_| {}, d.stack_rollout(&plugins));
    assert_eq!(run.code, Some(0), "docker rollout failed:\n{}", run.stderr);
    assert_no_failure(&report);
    assert_floor(&snaps, 4);
    d.assert_settled_on(images::V2, 4, &before);
    assert_eq!(
        d.project.read("nginx.conf"),
        conf_before,
        "nginx's config is back at rest"
    );
    for _ in 0..8 {
        let answer = wait_http(d.addr(), "/", Duration::from_secs(10), |a| a.status == 200);
        assert_eq!(answer.version.as_deref(), Some("v2"));
    }
}

/// An update to a never-healthy image: Swarm's monitor fails it and Swarm rolls back
/// (`failure_action: rollback`); the standby serves throughout, so nginx never routes to fewer
/// than the floor's four tasks (or to the service's name, at rest), no request fails, the
/// plugin exits 3 (where `docker service update` says 0), every task runs v1 again and the
/// standby is gone.
#[test]
#[ignore = "needs docker: run with cargo xtask e2e"]
fn a_never_healthy_image_is_rolled_back_by_swarm_exit_3_with_the_standby_serving() {
    require_engine();
    require_images(&[images::V1, images::V2_UNHEALTHY, NGINX_IMAGE]);
    let plugins = plugin();
    let (d, before, conf_before) = Deployed::to_update("swarm-rollback", images::V2_UNHEALTHY);
    let cmd = d.rollout(
        &plugins,
        &["--stack", &d.stack.0, "app", "--output", "json"],
    );
    let (run, snaps, report) = d.under_load(
        "rollback",
        |_| {},
        |clock| run_rollout(cmd, clock, Duration::from_secs(240)),
    );
    assert_eq!(
        run.code,
        Some(3),
        "exit 3 after Swarm's rollback:\n{}",
        run.stderr
    );
    assert!(run.stderr.contains("rolled"), "{}", run.stderr);
    // --output json: the events of a Compose rollout, the outcome and the summary.
    assert!(
        run.has(|e| matches!(e, Event::RollbackStarted { .. })),
        "{}",
        run.transcript()
    );
    assert_eq!(run.outcome_name(), "rolled-back", "{}", run.transcript());
    let summary = run.summary.as_ref().expect("a summary line");
    assert_eq!(summary["summary"]["exit_code"], 3, "{summary}");
    assert_eq!(
        summary["summary"]["counts"]["rolled_back"], true,
        "{summary}"
    );
    assert_no_failure(&report);
    assert_floor(&snaps, 4);
    d.assert_settled_on(images::V1, 4, &before);
    assert_eq!(
        d.project.read("nginx.conf"),
        conf_before,
        "nginx back at rest"
    );
}

/// 3 s GETs and POSTs in flight through nginx, the app exiting at once on SIGTERM, the same
/// `update_config` (the seed's, delay and monitor shortened, start-first): first Swarm's own
/// `docker service update --image` (nginx re-resolving the tasks, [`resolving_conf`]), whose
/// failed requests are printed, not judged; then `docker rollout --stack` on a fresh stack
/// of the same swarm behind the seed's nginx: exit 0, no failed request, no upstream error,
/// the floor kept, every task on v2.
#[test]
#[ignore = "needs docker: run with cargo xtask e2e"]
fn long_requests_in_flight_survive_a_stack_rollout_swarms_own_update_is_printed_beside() {
    require_engine();
    require_images(&[images::V1, images::V2, NGINX_IMAGE]);
    let plugins = plugin();
    let swarms = Deployed::on(
        Some(swarm_with(&[images::V2])),
        "swarm-long-native",
        &resolving_conf(),
    );
    let update = swarms.swarms_own_update(images::V2);
    let (native, _, native_report) =
        swarms.under_load("long-requests-swarm-update", long_requests, |clock| {
            run_plain(update, clock)
        });
    assert_eq!(native.code, Some(0), "{}", native.stderr);
    assert!(
        swarms
            .task_images("app")
            .iter()
            .all(|t| t.starts_with(images::V2)),
        "Swarm's update ran to its end: {:?}",
        swarms.task_images("app")
    );

    let ours = Deployed::on(None, "swarm-long-ours", &seed_conf());
    let before = ours.services();
    ours.project
        .write("stack.yaml", &rollout_stack_file(ours.port, images::V2));
    let (run, snaps, report) =
        ours.under_load("long-requests", long_requests, ours.stack_rollout(&plugins));
    eprintln!(
        "FIGURES swarm long-requests side by side: docker service update failed {} ({}) upstream_errors {} in {:.1}s; docker rollout --stack failed {} ({}) upstream_errors {} in {:.1}s",
        native_report.failed,
        failed_by_class(&native_report),
        native_report.upstream_errors.total,
        native.elapsed(),
        report.failed,
        failed_by_class(&report),
        report.upstream_errors.total,
        run.elapsed()
    );
    assert_eq!(run.code, Some(0), "docker rollout failed:\n{}", run.stderr);
    assert_clean_during(&report, &[&run]);
    assert_floor(&snaps, 4);
    ours.assert_settled_on(images::V2, 4, &before);
}

/// A stack rollout holds its standby: a second run while the first runs is busy (exit 7) and
/// changes nothing. The first is killed (SIGKILL) once Swarm's new tasks are being routed;
/// Swarm's update goes on without it, the standby serving. A rerun takes the standby over
/// from the dead run and is cut by two interrupts (exit 130, the JSON outcome `interrupted`,
/// the standby let go with its journal kept). A last run takes the let-go standby over and
/// resumes: exit 0, no failed request under load from the first run's start to the last run's
/// end, the floor kept, every task on v2, the standby gone and nginx's config back at rest (the
/// routes the first run kept on the standby).
#[test]
#[ignore = "needs docker: run with cargo xtask e2e"]
fn a_killed_stack_rollout_is_resumed_by_a_rerun_and_a_second_run_meanwhile_is_busy() {
    require_engine();
    require_images(&[images::V1, images::V2, NGINX_IMAGE]);
    let plugins = plugin();
    let (d, before, conf_before) = Deployed::to_update("swarm-resume", images::V2);
    let args = ["--stack", d.stack.0.as_str(), "app"];
    let (rerun, snaps, report) = d.under_load(
        "killed-and-resumed",
        |_| {},
        |clock| {
            let mut first = Running::spawn(d.rollout(&plugins, &args), clock, false);
            first.wait_stderr("new task(s) routed", Duration::from_secs(120));
            let second = d.rollout(&plugins, &args).output().unwrap();
            let stderr = String::from_utf8_lossy(&second.stderr);
            assert_eq!(
                second.status.code(),
                Some(7),
                "a second run is busy: {stderr}"
            );
            assert!(
                stderr.contains("another rollout of this service runs"),
                "{stderr}"
            );
            let plugin_pid = first.plugin_pid();
            first.signal("KILL", Whom::Plugin);
            let first = first.wait(Duration::from_secs(30));
            assert_ne!(first.code, Some(0), "{}", first.stderr);
            assert!(
                !std::path::Path::new(&format!("/proc/{plugin_pid}")).exists(),
                "the plugin survived SIGKILL"
            );
            assert!(
                d.services().iter().any(|s| s.ends_with("--standby")),
                "the killed run's standby serves: {:?}",
                d.services()
            );
            // A rerun takes the standby over, and is cut by two interrupts: the first is only
            // reported, the second cuts it between two steps and lets the standby go.
            let mut cut = d.rollout(&plugins, &args);
            cut.args(["--output", "json"]);
            let mut cut = Running::spawn(cut, clock, false);
            cut.wait_stderr("resuming the rollout of", Duration::from_secs(60));
            cut.signal("INT", Whom::Plugin);
            cut.wait_stderr("it goes on", Duration::from_secs(10));
            cut.signal("INT", Whom::Plugin);
            let cut = cut.wait(Duration::from_secs(30));
            assert_eq!(cut.code, Some(130), "{}", cut.stderr);
            assert!(
                cut.stderr.contains("docker rollout again resumes"),
                "{}",
                cut.stderr
            );
            assert_eq!(cut.outcome_name(), "interrupted", "{}", cut.transcript());
            let summary = cut.summary.as_ref().expect("a summary line");
            assert_eq!(summary["summary"]["exit_code"], 130, "{summary}");
            let out = run_ok(docker().args([
                "service",
                "inspect",
                &format!("{}--standby", d.service("app")),
                "--format",
                "{{json .Spec.Labels}}",
            ]));
            let labels: Value = serde_json::from_slice(&out.stdout).unwrap();
            assert!(
                labels.get("io.rollout.holder").is_none()
                    && labels.get("io.rollout.at-rest").is_some(),
                "the cut run let the standby go and kept its journal: {labels}"
            );
            let mut rerun = d.rollout(&plugins, &args);
            rerun.args(["--output", "json"]);
            run_rollout(rerun, clock, Duration::from_secs(240))
        },
    );
    assert!(
        rerun.stderr.contains("left by a run that let it go"),
        "the last run took over a standby let go: {}",
        rerun.stderr
    );
    assert_eq!(rerun.code, Some(0), "the rerun failed:\n{}", rerun.stderr);
    assert!(
        rerun.stderr.contains("resuming the rollout of"),
        "the rerun took the standby over: {}",
        rerun.stderr
    );
    // --output json: a resumed start, the traffic changes and their drains, a summary.
    assert!(
        rerun.has(|e| matches!(e, Event::RolloutStarted { resumed: true, .. })),
        "{}",
        rerun.transcript()
    );
    let changes = rerun.named("traffic-changed").len();
    assert!(changes >= 2, "{}", rerun.transcript());
    assert_eq!(
        rerun.named("drained").len(),
        changes,
        "{}",
        rerun.transcript()
    );
    assert_eq!(rerun.outcome_name(), "completed");
    let summary = rerun.summary.as_ref().expect("a summary line");
    assert_eq!(summary["summary"]["exit_code"], 0, "{summary}");
    assert_eq!(
        summary["summary"]["counts"]["traffic_changes"], changes,
        "{summary}"
    );
    assert!(
        rerun
            .stderr
            .contains(&format!("{} -> {}", images::V1, images::V2)),
        "the rerun's plan names what serves (the standby's image): {}",
        rerun.stderr
    );
    assert_no_failure(&report);
    assert_floor(&snaps, 4);
    d.assert_settled_on(images::V2, 4, &before);
    assert_eq!(
        d.project.read("nginx.conf"),
        conf_before,
        "nginx's config is back at rest"
    );
}

/// The seed's blue-green layout (LEVEL 3) and canary weights (LEVEL 4) as two colour services
/// of one stack on the two-node swarm, behind the stack's nginx, under load with 3 s GETs and
/// POSTs (the app exiting at once on SIGTERM), from one load's start to its end:
/// 1. a lock on the pair held by a run elsewhere: busy (exit 7), nothing changed; `--dry-run`
///    plans Swarm's update of green and changes nothing;
/// 2. `docker rollout --stack S green`: Swarm updates the idle green to v2, then nginx names
///    green (exit 0, every green task on v2); the file then naming another image for the live
///    green is refused (exit 2, nothing changed);
/// 3. `docker rollout --stack S blue`: the switch back, at once, to the same blue tasks (no
///    update), nginx's config byte for byte as before;
/// 4. a never-healthy image for green: Swarm rolls green back, nothing is switched, exit 3;
///    under `--failure-action pause` Swarm pauses instead, exit 4, and a rerun is refused
///    (exit 4) with `docker service rollback` as the hint;
/// 5. `--strategy canary`: nginx weights blue and green 75/25 then 50/50, then green alone,
///    with `weights-changed` events;
///
/// and no request failed, and the pair's lock is gone.
#[test]
#[ignore = "needs docker: run with cargo xtask e2e"]
fn blue_green_switch_back_and_canary_between_two_colours_of_a_stack() {
    require_engine();
    require_images(&[images::V1, images::V2, images::V2_UNHEALTHY, NGINX_IMAGE]);
    let plugins = plugin();
    let d = Deployed::colours("swarm-colours", &[images::V2, images::V2_UNHEALTHY]);
    let services = d.services();
    let conf_blue = d.project.read("nginx.conf");
    let stack = d.stack.0.clone();
    let green_file = |image: &str| {
        d.project
            .write("stack.yaml", &colours_stack_file(d.port, images::V1, image))
    };
    green_file(images::V2);
    // A run of the pair held elsewhere: busy, nothing changed.
    let lock = format!("{}--colours-lock", d.service("blue"));
    run_ok(docker().args([
        "service",
        "create",
        "--detach",
        "--no-resolve-image",
        "--name",
        &lock,
        "--label",
        "io.rollout.holder=a run on another machine",
        "--replicas",
        "0",
        images::V1,
    ]));
    let busy = d
        .rollout(&plugins, &["--stack", &stack, "green"])
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&busy.stderr);
    assert_eq!(busy.status.code(), Some(7), "{said}");
    assert!(
        said.contains(&format!("docker service rm {lock}")),
        "{said}"
    );
    assert!(d
        .task_images("green")
        .iter()
        .all(|t| t.starts_with(images::V1)));
    run_ok(docker().args(["service", "rm", &lock]));
    let dry = run_ok(&mut d.rollout(&plugins, &["--stack", &stack, "green", "--dry-run"]));
    let plan = String::from_utf8_lossy(&dry.stdout).to_string();
    assert!(
        plan.contains("Swarm's update of") && plan.contains("nothing was changed"),
        "{plan}"
    );
    assert_eq!(d.project.read("nginx.conf"), conf_blue);
    let go = |args: &[&str], clock| {
        let mut all = vec!["--stack", stack.as_str()];
        all.extend_from_slice(args);
        all.extend(["--output", "json"]);
        run_rollout(d.rollout(&plugins, &all), clock, Duration::from_secs(240))
    };
    let upstream = |colour: &str| format!("server {colour}:{}", rollout_e2e::DEMO_PORT);
    let (canary, _, report) = d.under_load("colours", long_requests, |clock| {
        let green = go(&["green"], clock);
        assert_eq!(green.code, Some(0), "{}", green.stderr);
        assert!(green.stderr.contains("Swarm updates"), "{}", green.stderr);
        let conf = d.project.read("nginx.conf");
        assert!(
            conf.contains(&upstream("green")) && !conf.contains(&upstream("blue")),
            "{conf}"
        );
        let images_now = d.task_images("green");
        assert!(
            images_now.len() == 2 && images_now.iter().all(|t| t.starts_with(images::V2)),
            "{images_now:?}"
        );
        // The live colour is not updated in place.
        green_file(images::V1);
        let refused = go(&["green"], clock);
        assert_eq!(refused.code, Some(2), "{}", refused.stderr);
        assert!(
            refused.stderr.contains("--strategy rolling"),
            "{}",
            refused.stderr
        );
        assert_eq!(d.project.read("nginx.conf"), conf);
        green_file(images::V2);
        let blue = go(&["blue"], clock);
        assert_eq!(blue.code, Some(0), "{}", blue.stderr);
        assert!(!blue.stderr.contains("Swarm updates"), "{}", blue.stderr);
        assert_eq!(d.project.read("nginx.conf"), conf_blue, "back to blue");
        green_file(images::V2_UNHEALTHY);
        let broken = go(&["green"], clock);
        assert_eq!(broken.code, Some(3), "{}", broken.stderr);
        assert_eq!(
            broken.outcome_name(),
            "rolled-back",
            "{}",
            broken.transcript()
        );
        assert_eq!(d.project.read("nginx.conf"), conf_blue, "nothing switched");
        // The same under failure_action pause: Swarm pauses, exit 4; a rerun finds green half
        // updated and says how to undo it, exit 4 again; undone, green is on v2 again.
        let paused = go(&["green", "--failure-action", "pause"], clock);
        assert_eq!(paused.code, Some(4), "{}", paused.stderr);
        assert_eq!(paused.outcome_name(), "paused", "{}", paused.transcript());
        let again = go(&["green"], clock);
        assert_eq!(again.code, Some(4), "{}", again.stderr);
        assert!(
            again
                .stderr
                .contains(&format!("docker service rollback {}", d.service("green"))),
            "{}",
            again.stderr
        );
        assert_eq!(d.project.read("nginx.conf"), conf_blue, "nothing switched");
        run_ok(docker().args(["service", "rollback", "--quiet", &d.service("green")]));
        green_file(images::V2);
        go(
            &[
                "green",
                "--strategy",
                "canary",
                "--canary-steps",
                "25,50,100",
                "--canary-hold",
                "1s",
            ],
            clock,
        )
    });
    assert_eq!(canary.code, Some(0), "{}", canary.stderr);
    let weights: Vec<u32> = canary
        .events
        .iter()
        .filter_map(|e| match &e.event {
            Event::WeightsChanged { new_percent } => Some(*new_percent),
            _ => None,
        })
        .collect();
    assert_eq!(weights, [25, 50, 100], "{}", canary.transcript());
    let conf = d.project.read("nginx.conf");
    assert!(
        conf.contains(&upstream("green")) && !conf.contains(&upstream("blue")),
        "{conf}"
    );
    assert_no_failure(&report);
    assert_eq!(d.services(), services);
    let left = docker()
        .args(["service", "inspect", &lock])
        .output()
        .unwrap();
    assert!(!left.status.success(), "the pair's lock {lock} is gone");
}

/// The seed's nginx config with what an operator whose nodes can drop off adds: a connect
/// timeout of 1 s (nginx's default is 60 s), so that a request sent to a task on a node cut
/// off goes to the next server (even a POST: it was never sent), and a read timeout of 6 s
/// (the slowest request of the load takes 2 s), so that a GET in flight to it is sent again.
fn cut_tolerant_conf() -> String {
    let conf = seed_conf().replace(
        "            proxy_pass http://backend;\n",
        "            proxy_pass http://backend;\n            proxy_connect_timeout 1s;\n            proxy_read_timeout 6s;\n",
    );
    assert!(conf.contains("proxy_connect_timeout"), "{conf}");
    conf
}

/// The worker node cut off (its veth down) one second into Swarm's update of the stack's app
/// under `docker rollout --stack`, under load through nginx ([`cut_tolerant_conf`]): the run
/// names the node, unroutes its tasks (the standby's and the new ones) and routes Swarm's
/// replacements of the standby's on the manager. Swarm's updater then waits on a task it had
/// placed on the node for as long as the node is cut off, so the run holds with the standby
/// serving (exit 4, outcome `paused` naming the node). With the worker back, a rerun resumes
/// and finishes (exit 0): every task on v2, the standby gone, nginx back at rest. No request
/// started after the cut failed: what failed was in flight to the node when it was cut, which
/// nginx cannot send elsewhere.
#[test]
#[ignore = "needs docker: run with cargo xtask e2e"]
fn a_worker_cut_off_mid_rollout_is_named_its_tasks_unrouted_and_a_rerun_finishes() {
    require_engine();
    require_images(&[images::V1, images::V2, NGINX_IMAGE]);
    let plugins = plugin();
    let conf = cut_tolerant_conf();
    let d = Deployed::on(Some(swarm_with(&[images::V2])), "swarm-cut", &conf);
    let before = d.services();
    d.project
        .write("stack.yaml", &rollout_stack_file(d.port, images::V2));
    let worker = d.swarm().node_ids()[1].clone();
    let on_worker = rollout_e2e::swarm_stack::task_nodes(&d.service("app"))
        .iter()
        .filter(|t| t.ends_with(&worker))
        .count();
    assert!(on_worker > 0, "no task of the app on the worker to cut off");
    let args = ["--stack", d.stack.0.as_str(), "app", "--output", "json"];
    let mut cut_at = 0.0;
    let mut first = None;
    let (rerun, _, report) = d.under_load(
        "worker-cut",
        |c| c.timeout_grace = Duration::from_secs(20),
        |clock| {
            let mut run = Running::spawn(d.rollout(&plugins, &args), clock, false);
            run.wait_stderr("Swarm updates", Duration::from_secs(120));
            std::thread::sleep(Duration::from_secs(1));
            cut_at = clock.now();
            d.swarm().cut_worker();
            first = Some(run.wait(Duration::from_secs(240)));
            d.swarm().reconnect_worker(Duration::from_secs(90));
            run_rollout(d.rollout(&plugins, &args), clock, Duration::from_secs(240))
        },
    );
    let first = first.expect("the first run ended");
    let cut_off = report
        .requests
        .iter()
        .filter(|r| r.failed())
        .filter(|r| r.t < cut_at && r.t + r.ms / 1000.0 > cut_at)
        .count();
    let after: Vec<String> = report
        .requests
        .iter()
        .filter(|r| r.failed() && r.t >= cut_at)
        .take(10)
        .map(|r| format!("{r:?}"))
        .collect();
    eprintln!(
        "FIGURES swarm worker cut off at {cut_at:.1}s: first run exit {:?} in {:.1}s, rerun exit {:?} in {:.1}s; {} requests, failed {} ({}), of them in flight to the node when it was cut {cut_off}; upstream errors {}",
        first.code,
        first.elapsed(),
        rerun.code,
        rerun.elapsed(),
        report.sent,
        report.failed,
        failed_by_class(&report),
        report.upstream_errors.total
    );
    eprintln!("the first run's stderr:\n{}", first.stderr);
    // nginx's upstream errors (each sent on to the next server) by kind, and the first of
    // those after the rerun started.
    eprintln!(
        "upstream errors by kind: {:?}",
        report.upstream_errors.by_kind
    );
    for e in report
        .upstream_errors
        .errors
        .iter()
        .filter(|e| e.t.is_some_and(|t| t >= rerun.started_at))
        .take(5)
    {
        eprintln!("  during the rerun: {}", e.line);
    }
    assert_eq!(first.code, Some(4), "{}", first.stderr);
    let addr = d.swarm().worker_addr().to_string();
    assert!(
        first.stderr.contains("is not ready") && first.stderr.contains(&addr),
        "the run names the node cut off ({addr}): {}",
        first.stderr
    );
    assert_eq!(first.outcome_name(), "paused", "{}", first.transcript());
    let finished = first.named("finished");
    let note = finished
        .last()
        .map(|f| f.json["outcome"]["detail"].to_string());
    assert!(
        note.as_deref()
            .is_some_and(|n| n.contains("has not moved for") && n.contains(&addr)),
        "the outcome says Swarm's update waits on the node: {note:?}"
    );
    assert_eq!(rerun.code, Some(0), "{}", rerun.stderr);
    assert!(
        rerun.stderr.contains("resuming the rollout of"),
        "{}",
        rerun.stderr
    );
    assert!(
        after.is_empty(),
        "requests started after the cut failed:\n{}",
        after.join("\n")
    );
    assert_eq!(
        report.failed as usize, cut_off,
        "every failed request was in flight when the node was cut"
    );
    assert_eq!(d.project.read("nginx.conf"), conf, "nginx is back at rest");
    d.assert_settled_on(images::V2, 4, &before);
}

/// nginx as two tasks, one on each node, each publishing the port on its node: the run and its
/// dry run are refused (exit 2, nothing changed) until `--swarm-node` names the worker's
/// engine, and when it names an engine that is not that node's. With it, the rolling update under load through
/// both nginx tasks at once: exit 0, no failed request through either, the floor kept in the
/// config, every task on v2, and both nginx tasks answering v2 (each was reloaded through its
/// own node's engine: nginx resolves the service's name only when it loads its config). Both
/// engines share this machine's disk, so both tasks bind-mount the same `nginx.conf`: the test
/// cannot tell the worker's copy was written through the worker's engine, only that its nginx
/// was checked and reloaded there.
#[test]
#[ignore = "needs docker: run with cargo xtask e2e"]
fn nginx_tasks_on_both_nodes_are_edited_through_each_nodes_engine() {
    require_engine();
    require_images(&[images::V1, images::V2, NGINX_IMAGE]);
    let plugins = plugin();
    let d = Deployed::nginx_on_both_nodes("swarm-two-nginx", &[images::V2]);
    let before = d.services();
    let conf = d.project.read("nginx.conf");
    d.project.write(
        "stack.yaml",
        &rollout_stack_file(d.port, images::V2).replace(
            "      placement:\n        constraints: [node.role == manager]\n",
            "      replicas: 2\n      placement:\n        max_replicas_per_node: 1\n",
        ),
    );
    let worker_nginx: std::net::SocketAddr = format!("{}:{}", d.swarm().worker_addr(), d.port)
        .parse()
        .unwrap();
    let answer = wait_http(worker_nginx, "/", Duration::from_secs(30), |a| {
        a.status == 200
    });
    assert_eq!(
        answer.version.as_deref(),
        Some("v1"),
        "the worker's nginx serves"
    );
    let addr = d.swarm().worker_addr().to_string();
    let manager_host =
        std::env::var("DOCKER_HOST").unwrap_or_else(|_| "unix:///var/run/docker.sock".into());
    for (extra, says) in [
        (vec![], "--swarm-node".to_string()),
        (vec!["--dry-run".to_string()], "--swarm-node".to_string()),
        (
            vec!["--swarm-node".to_string(), format!("{addr}={manager_host}")],
            "not node".to_string(),
        ),
    ] {
        let mut args = vec!["--stack".to_string(), d.stack.0.clone(), "app".to_string()];
        args.extend(extra);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = d.rollout(&plugins, &args).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(
            stderr.contains(&says) && stderr.contains(&addr),
            "{args:?}: {stderr}"
        );
    }
    assert_eq!(d.services(), before, "nothing changed");
    assert!(d
        .task_images("app")
        .iter()
        .all(|t| t.starts_with(images::V1)));
    assert_eq!(d.project.read("nginx.conf"), conf);

    let node = format!("{addr}={}", d.swarm().worker_host());
    let cmd = d.rollout(
        &plugins,
        &["--stack", &d.stack.0, "app", "--swarm-node", &node],
    );
    let mut through_worker = None;
    let (run, snaps, report) = d.under_load(
        "nginx-on-both-nodes",
        |_| {},
        |clock| {
            let mut config = LoadConfig::new(worker_nginx);
            rollout_e2e::load::mix(&mut config, Duration::from_secs(300));
            config.post_delay = Duration::from_millis(100);
            let load = LoadHandle::start(config).expect("load through the worker's nginx");
            rollout_e2e::load::wait_ok(&load, 500, Duration::from_secs(30));
            let run = run_rollout(cmd, clock, Duration::from_secs(240));
            rollout_e2e::load::wait_ok(&load, 250, Duration::from_secs(20));
            through_worker = Some(load.stop().expect("the worker's load report"));
            run
        },
    );
    let through_worker = through_worker.expect("the worker's load ran");
    eprintln!(
        "FIGURES swarm nginx on both nodes: docker rollout --stack exit {:?} in {:.1}s; through the manager's nginx {} requests, failed {}; through the worker's nginx {} requests, failed {} ({})",
        run.code,
        run.elapsed(),
        report.sent,
        report.failed,
        through_worker.sent,
        through_worker.failed,
        failed_by_class(&through_worker)
    );
    assert_eq!(run.code, Some(0), "docker rollout failed:\n{}", run.stderr);
    assert_no_failure(&report);
    assert_eq!(
        through_worker.failed,
        0,
        "failed through the worker's nginx: {:?}",
        through_worker.failures().take(5).collect::<Vec<_>>()
    );
    assert_floor(&snaps, 4);
    d.assert_settled_on(images::V2, 4, &before);
    assert_eq!(
        d.project.read("nginx.conf"),
        conf,
        "nginx's config is back at rest"
    );
    for to in [d.addr(), worker_nginx] {
        for _ in 0..4 {
            let answer = wait_http(to, "/", Duration::from_secs(10), |a| a.status == 200);
            assert_eq!(answer.version.as_deref(), Some("v2"), "{to}");
        }
    }
}
