//! The three strategies end to end: the real `docker rollout` plugin through the real docker
//! CLI, on the real engine, with real load (250 requests per second, 5 % slow GETs of 2 s,
//! 5 % POSTs, 20 % on new connections) through a real nginx, and the demo app in its
//! exit-at-once mode, so that only the tool's own drain can save the requests in flight.
//!
//! Each test asserts zero failed requests and zero upstream errors in nginx's log; that every
//! old instance answered in the second before the traffic change that took it out (the
//! `traffic-changed` JSON events lined up with the load's per-instance answers, on one
//! clock), so that the zero means something; the versions that answered before, during and
//! after; the exit code; the final containers; and the final nginx config, which names the
//! service again at rest. The rolling tests also watch the proxy's config file during the
//! rollout and check the capacity floor there and in the events, with every routed instance
//! seen answering.

use rollout_core::router::Target;
use rollout_e2e::load::{mix, wait_ok};
use rollout_e2e::nginx::{stderr_upstream_errors, upstream_servers, ConfigSnapshot, ConfigWatch};
use rollout_e2e::replay::{replay, Replay};
use rollout_e2e::verdict::{assert_clean_during, assert_last_second, publish, Answers, Bounds};
use rollout_e2e::{
    images, require_engine, require_images, run_rollout, wait_http, workspace_binary, Clock,
    Container, DemoStack, Ended, ExecWatch, PluginDir, Project, Rig, NGINX_IMAGE,
};
use rollout_load::{LoadHandle, Report};
use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

/// The name the reports of this suite carry.
const SUITE: &str = "strategies";

/// Longest a rollout may run before the test kills it.
const ROLLOUT_LIMIT: Duration = Duration::from_secs(240);

/// Slack for "started after it was unrouted": the event's line arrives after the reload took.
const SLACK: f64 = 0.2;

fn bounds(until: f64) -> Bounds {
    Bounds {
        slack: SLACK,
        until,
    }
}

fn plugin() -> PluginDir {
    PluginDir::install(&workspace_binary("docker-rollout", "docker-rollout"))
}

/// The load every test runs: the default mix, bounded at 6 minutes (stopped much earlier).
fn load_mix(c: &mut rollout_load::LoadConfig) {
    mix(c, Duration::from_secs(360));
    c.post_delay = Duration::from_millis(100);
}

fn print_snaps(snaps: &[ConfigSnapshot]) {
    eprintln!("config versions seen: {}", snaps.len());
    for s in snaps {
        eprintln!("  {:>8.3} {}", s.at, s.servers.join(", "));
    }
}

/// The rollout exited 0 with a `completed` outcome in its events and its summary.
fn assert_completed(run: &Ended) {
    assert_eq!(
        run.code,
        Some(0),
        "docker rollout failed; stderr:\n{}\nevents:\n{}",
        run.stderr,
        run.transcript()
    );
    let finished: Vec<_> = run
        .events
        .iter()
        .filter_map(|e| match &e.event {
            rollout_core::Event::Finished { outcome } => Some(outcome.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(
        finished,
        vec![rollout_core::Outcome::Completed],
        "{}",
        run.transcript()
    );
    let summary = run.summary.as_ref().expect("a summary line");
    assert_eq!(summary["summary"]["exit_code"], 0, "{summary}");
}

/// Successful answers by version of the requests that started in `[from, to)`.
fn versions(report: &Report, from: f64, to: f64) -> BTreeSet<String> {
    report
        .requests
        .iter()
        .filter(|r| r.t >= from && r.t < to && !r.failed())
        .filter_map(|r| r.version.clone())
        .collect()
}

fn set(v: &[&str]) -> BTreeSet<String> {
    v.iter().map(|s| s.to_string()).collect()
}

/// Before the rollout (from `since`) only `old` answered, after it returned (until `until`)
/// only `new`, during it both.
fn assert_versions(report: &Report, run: &Ended, (since, until): (f64, f64), old: &str, new: &str) {
    // Requests that ended before the rollout started: answered by the old version only.
    let before: BTreeSet<String> = report
        .requests
        .iter()
        .filter(|r| r.t >= since && r.end() < run.started_at && !r.failed())
        .filter_map(|r| r.version.clone())
        .collect();
    assert_eq!(before, set(&[old]), "before the rollout");
    assert_eq!(
        versions(report, run.started_at, run.returned_at),
        set(&[old, new]),
        "during the rollout"
    );
    assert_eq!(
        versions(report, run.returned_at, until),
        set(&[new]),
        "after the rollout returned"
    );
}

/// For each set of routed instances in force over `[from, to)`: at least `floor` of them, and
/// (over spans long enough to tell) each one answered a request that started in the span.
/// Returns (spans checked for answers, fewest routed, most routed).
fn assert_floor(
    what: &str,
    spans: &[(f64, f64, BTreeSet<String>)],
    floor: usize,
    answers: &Answers,
) -> (usize, usize, usize) {
    let mut problems = Vec::new();
    let mut checked = 0;
    for (from, to, routed) in spans {
        if routed.len() < floor {
            problems.push(format!(
                "{} routed from {from:.3}s to {to:.3}s, fewer than {floor}",
                routed.len()
            ));
        }
        if to - from >= 0.8 {
            checked += 1;
            for id in routed {
                let answered = answers
                    .of_container(id)
                    .iter()
                    .any(|a| a.start >= from + 0.3 && a.start < *to);
                if !answered {
                    problems.push(format!(
                        "{} was routed from {from:.3}s to {to:.3}s but answered nothing",
                        &id[..12.min(id.len())]
                    ));
                }
            }
        }
    }
    let fewest = spans.iter().map(|s| s.2.len()).min().unwrap_or(0);
    let most = spans.iter().map(|s| s.2.len()).max().unwrap_or(0);
    eprintln!(
        "{what}: {} routed sets, fewest {fewest}, most {most}, {checked} long enough to see each instance answer",
        spans.len()
    );
    assert!(problems.is_empty(), "{what}:\n{}", problems.join("\n"));
    (checked, fewest, most)
}

/// The routed sets the events give, during the rollout.
fn event_spans(r: &Replay) -> Vec<(f64, f64, BTreeSet<String>)> {
    r.spans
        .iter()
        .map(|s| (s.from, s.to, s.routed.clone()))
        .collect()
}

/// The routed sets the proxy's config file gave, by instance name, between its first and
/// last versions (which name the service); every name must be an instance the replay knows.
fn config_spans(
    snaps: &[ConfigSnapshot],
    r: &Replay,
    service: &str,
    end: f64,
) -> Vec<(f64, f64, BTreeSet<String>)> {
    let mut spans = Vec::new();
    for (i, s) in snaps.iter().enumerate() {
        let hosts = s.hosts();
        if hosts == [service] {
            continue;
        }
        let ids: BTreeSet<String> = hosts
            .iter()
            .map(|h| {
                r.by_host(h)
                    .unwrap_or_else(|| {
                        panic!("the config routes {h}, an instance the rollout never named: {s:?}")
                    })
                    .id
                    .clone()
            })
            .collect();
        assert_eq!(ids.len(), hosts.len(), "a server twice in {s:?}");
        let to = snaps.get(i + 1).map_or(end, |n| n.at);
        spans.push((s.at, to, ids));
    }
    spans
}

/// The running containers of a service, with the image and health each must have.
fn assert_final(p: &Project, service: &str, image: &str, count: usize) -> Vec<Container> {
    let all = p.containers(Some(service));
    assert_eq!(all.len(), count, "{service}: {all:#?}");
    for c in &all {
        assert_eq!(
            (c.state.as_str(), c.health.as_str(), c.image.as_str()),
            ("running", "healthy", image),
            "{c:#?}"
        );
    }
    all
}

fn ids(cs: &[Container]) -> BTreeSet<String> {
    cs.iter().map(|c| c.id.clone()).collect()
}

// ---------------------------------------------------------------- rolling on the harness stack

/// Six v1 replicas behind the seed's nginx, with `update_config` in an override file.
fn rolling(slug: &str, order: &str, floor: usize) {
    let Rig { mut p, plugins } = Rig::up(
        slug,
        DemoStack::new(images::V1, 6),
        &format!(
            "services:\n  app:\n    deploy:\n      update_config:\n        parallelism: 2\n        delay: 1s\n        order: {order}\n        failure_action: rollback\n        monitor: 2s\n        max_failure_ratio: 0.3\n"
        ),
        &[images::V2],
    );
    let old = p.containers(Some("app"));
    let nginx_before = ids(&p.containers(Some("nginx")));
    let conf_before = p.read("nginx.conf");
    let initial = p.containers(None);

    let load = p.start_load(load_mix);
    wait_ok(&load, 750, Duration::from_secs(30));
    let clock = Clock::of(&load);
    let watch = ConfigWatch::start(p.dir().join("nginx.conf"), "backend", clock);
    p.set_env("APP_IMAGE", images::V2);
    let mut cmd = p.rollout_command(&plugins);
    cmd.args(["app", "--output", "json"]);
    let execs = ExecWatch::start(&p, "nginx");
    let run = run_rollout(cmd, clock, ROLLOUT_LIMIT);
    let execs = execs.count();
    wait_ok(&load, 750, Duration::from_secs(30));
    let snaps = watch.stop();
    let report = load.stop().unwrap();
    publish(SUITE, slug, &report, &[&run]);
    print_snaps(&snaps);

    assert_completed(&run);
    assert_clean_during(&report, &[&run]);
    assert_versions(&report, &run, (0.0, f64::INFINITY), "v1", "v2");

    let r = replay(&initial, &[Target::Service { name: "app".into() }], &run);
    assert!(
        r.rerouted.is_empty(),
        "instances routed again: {:?}",
        r.rerouted
    );
    let answers = Answers::of(&report);
    let old_ids: Vec<String> = old.iter().map(|c| c.id.clone()).collect();
    assert_last_second(
        slug,
        &old_ids,
        &r,
        &snaps,
        (&answers, &report),
        bounds(f64::INFINITY),
    );
    // Only the old ones left the routes: no new instance was unrouted on the way.
    assert_eq!(
        r.unrouted.keys().cloned().collect::<BTreeSet<_>>(),
        old_ids.iter().cloned().collect::<BTreeSet<_>>()
    );

    // The capacity floor, from the tool's events and from the proxy's own config file.
    let (checked, _, _) = assert_floor(
        &format!("{slug} (events)"),
        &event_spans(&r),
        floor,
        &answers,
    );
    assert!(
        checked >= 3,
        "too few routed sets lasted long enough to check"
    );
    assert_eq!(
        snaps.first().map(|s| s.hosts()),
        Some(vec!["app".to_string()])
    );
    assert_eq!(
        snaps.last().map(|s| s.hosts()),
        Some(vec!["app".to_string()])
    );
    let cspans = config_spans(&snaps, &r, "app", run.returned_at);
    assert!(
        cspans.len() >= 4,
        "the config file showed only {} versions routing by instance",
        cspans.len()
    );
    assert_floor(&format!("{slug} (config file)"), &cspans, floor, &answers);

    // The end state: six new containers, none of the old, the same nginx, the service named
    // again exactly as the operator wrote it.
    let new = assert_final(&p, "app", images::V2, 6);
    assert!(
        ids(&new).is_disjoint(&ids(&old)),
        "an old container is left"
    );
    assert_eq!(ids(&p.containers(Some("nginx"))), nginx_before);
    let conf = p.read("nginx.conf");
    assert_eq!(
        upstream_servers(&conf, "backend").unwrap(),
        vec!["app:8000"]
    );
    assert_eq!(
        conf, conf_before,
        "the config is not back to the operator's text"
    );
    // Every test, reload, check of the workers and drain poll went through the run's kept
    // shells in nginx (a few, for commands that overlap), which its end let go: by exec each
    // would be one (about 30 for this rollout).
    p.assert_sessions_let_go("nginx", &[rollout_docker::kept_shell::MARK], execs, 6);
    // nginx serves the new version with its config as it is now (a reload from the file).
    wait_http(p.port("nginx", 80), "/", Duration::from_secs(10), |a| {
        a.version.as_deref() == Some("v2")
    });
}

#[test]
#[ignore = "needs docker: run with cargo xtask e2e"]
fn rolling_start_first_keeps_all_six_routed() {
    rolling("strategies-start-first", "start-first", 6);
}

#[test]
#[ignore = "needs docker: run with cargo xtask e2e"]
fn rolling_stop_first_keeps_desired_minus_parallelism() {
    rolling("strategies-stop-first", "stop-first", 4);
}

// ---------------------------------------------------------------- the examples

/// An example of `examples/` copied into a fresh project, published on a free port of
/// 127.0.0.1 through the example's own `NGINX_PORT`, with only labels added in an override
/// file (so that everything made can be found and removed).
fn example(slug: &str, name: &str, services: &[&str], extra: &str) -> Project {
    require_engine();
    require_images(&[images::V1, images::V2, NGINX_IMAGE]);
    let mut p = Project::new(slug);
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("examples")
        .join(name);
    p.copy_from(&dir);
    let mut o = String::from("services:\n");
    for s in services {
        o.push_str(&format!(
            "  {s}:\n    labels:\n      io.rollout.test: {}\n",
            p.name()
        ));
    }
    o.push_str(extra);
    p.write("compose.override.yaml", &o);
    p.set_env(
        "NGINX_PORT",
        &format!("127.0.0.1:{}", rollout_e2e::free_port()),
    );
    p
}

/// The load on an example's nginx: its log is on the container's stderr (the example's config
/// names no error_log), read when the load stops.
fn example_load(p: &Project) -> LoadHandle {
    let mut c = p.load_config("nginx");
    c.error_log = None;
    load_mix(&mut c);
    LoadHandle::start(c).unwrap()
}

/// Stops the load and reads the upstream errors from the stderr of `nginx` (the proxy's
/// container before the rollouts), which must still be the project's only nginx container.
fn stop_example_load(load: LoadHandle, nginx: &Container) -> Report {
    let mut report = load.stop().unwrap();
    report.upstream_errors = stderr_upstream_errors(&nginx.id, &report);
    report
}

/// nginx is the same running container as before the rollouts.
fn assert_same_nginx(p: &Project, nginx: &Container) {
    let now = p.containers(Some("nginx"));
    assert_eq!(
        now.iter()
            .map(|c| (&c.id, c.state.as_str()))
            .collect::<Vec<_>>(),
        vec![(&nginx.id, "running")],
        "nginx is not the same running container as before the rollout: {now:#?}"
    );
}

/// The example's one nginx container.
fn the_nginx(p: &Project) -> Container {
    let all = p.containers(Some("nginx"));
    assert_eq!(all.len(), 1, "{all:#?}");
    all.into_iter().next().unwrap()
}

#[test]
#[ignore = "needs docker: run with cargo xtask e2e"]
fn rolling_with_the_seeds_own_values() {
    let plugins = plugin();
    let mut p = example("strategies-seed-rolling", "rolling", &["app", "nginx"], "");
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/rolling/compose.yaml");
    let original = std::fs::read_to_string(&file).unwrap();
    assert_eq!(p.read("compose.yaml"), original);
    for v in [
        "parallelism: 2",
        "delay: 10s",
        "monitor: 30s",
        "max_failure_ratio: 0.3",
    ] {
        assert!(original.contains(v), "the example lost the seed's {v}");
    }
    p.up();
    let old = p.wait_healthy("app", 6, Duration::from_secs(60));
    wait_http(p.port("nginx", 80), "/", Duration::from_secs(30), |a| {
        a.status == 200
    });
    let conf_before = p.read("nginx.conf");
    let initial = p.containers(None);
    let nginx = the_nginx(&p);
    let load = example_load(&p);
    wait_ok(&load, 750, Duration::from_secs(30));
    let clock = Clock::of(&load);
    let watch = ConfigWatch::start(p.dir().join("nginx.conf"), "backend", clock);
    p.set_env("APP_VERSION", "v2");
    let mut cmd = p.rollout_command(&plugins);
    cmd.args(["app", "--output", "json"]);
    let run = run_rollout(cmd, clock, ROLLOUT_LIMIT);
    wait_ok(&load, 750, Duration::from_secs(30));
    let snaps = watch.stop();
    let report = stop_example_load(load, &nginx);
    publish(SUITE, "seed-rolling", &report, &[&run]);
    assert_same_nginx(&p, &nginx);
    print_snaps(&snaps);

    assert_completed(&run);
    assert_clean_during(&report, &[&run]);
    assert_versions(&report, &run, (0.0, f64::INFINITY), "v1", "v2");
    let r = replay(&initial, &[Target::Service { name: "app".into() }], &run);
    let answers = Answers::of(&report);
    let old_ids: Vec<String> = old.iter().map(|c| c.id.clone()).collect();
    assert_last_second(
        "seed-rolling",
        &old_ids,
        &r,
        &snaps,
        (&answers, &report),
        bounds(f64::INFINITY),
    );
    // The seed sets no order: Swarm's default, stop-first, keeps 6 - 2 routed.
    assert_floor("seed-rolling (events)", &event_spans(&r), 4, &answers);
    let cspans = config_spans(&snaps, &r, "app", run.returned_at);
    assert_floor("seed-rolling (config file)", &cspans, 4, &answers);
    // Six new instances, each health-gated before it was routed.
    let batches = run
        .events
        .iter()
        .filter(|e| matches!(e.event, rollout_core::Event::InstanceHealthy { .. }))
        .count();
    assert_eq!(batches, 6, "{}", run.transcript());

    let new = assert_final(&p, "app", "rollout-demo:v2", 6);
    assert!(ids(&new).is_disjoint(&ids(&old)));
    let conf = p.read("nginx.conf");
    assert_eq!(
        upstream_servers(&conf, "backend").unwrap(),
        vec!["app:8000"]
    );
    assert_eq!(conf, conf_before);
}

#[test]
#[ignore = "needs docker: run with cargo xtask e2e"]
fn blue_green_switches_to_green_and_back_to_the_same_blue() {
    let plugins = plugin();
    let p = example(
        "strategies-blue-green",
        "blue-green",
        &["blue", "green", "nginx"],
        "",
    );
    p.up();
    let blue = p.wait_healthy("blue", 3, Duration::from_secs(60));
    let green = p.wait_healthy("green", 3, Duration::from_secs(60));
    wait_http(p.port("nginx", 80), "/", Duration::from_secs(30), |a| {
        a.status == 200 && a.version.as_deref() == Some("v1")
    });
    let conf_before = p.read("nginx.conf");
    assert_eq!(
        upstream_servers(&conf_before, "backend").unwrap(),
        vec!["blue:8000"]
    );
    let initial = p.containers(None);
    let nginx = the_nginx(&p);
    let load = example_load(&p);
    wait_ok(&load, 750, Duration::from_secs(30));
    let clock = Clock::of(&load);
    let watch = ConfigWatch::start(p.dir().join("nginx.conf"), "backend", clock);

    let mut cmd = p.rollout_command(&plugins);
    cmd.args(["green", "--output", "json"]);
    let to_green = run_rollout(cmd, clock, ROLLOUT_LIMIT);
    wait_ok(&load, 750, Duration::from_secs(30));
    let conf_green = p.read("nginx.conf");
    let between = p.containers(None);

    let mut cmd = p.rollout_command(&plugins);
    cmd.args(["blue", "--output", "json"]);
    let to_blue = run_rollout(cmd, clock, ROLLOUT_LIMIT);
    wait_ok(&load, 1250, Duration::from_secs(30));
    let snaps = watch.stop();
    let report = stop_example_load(load, &nginx);
    print_snaps(&snaps);
    publish(SUITE, "blue-green", &report, &[&to_green, &to_blue]);
    assert_same_nginx(&p, &nginx);

    assert_completed(&to_green);
    assert_completed(&to_blue);
    assert_clean_during(&report, &[&to_green, &to_blue]);
    assert_versions(&report, &to_green, (0.0, to_blue.started_at), "v1", "v2");
    // Between the two commands only green answered; after the second only blue.
    assert_eq!(
        versions(&report, to_green.returned_at, to_blue.started_at),
        set(&["v2"])
    );
    assert_versions(
        &report,
        &to_blue,
        (to_green.returned_at, f64::INFINITY),
        "v2",
        "v1",
    );

    let answers = Answers::of(&report);
    let blue_ids: Vec<String> = blue.iter().map(|c| c.id.clone()).collect();
    let green_ids: Vec<String> = green.iter().map(|c| c.id.clone()).collect();
    let r1 = replay(
        &initial,
        &[Target::Service {
            name: "blue".into(),
        }],
        &to_green,
    );
    assert_last_second(
        "to green",
        &blue_ids,
        &r1,
        &snaps,
        (&answers, &report),
        bounds(to_blue.started_at),
    );
    let r2 = replay(
        &between,
        &[Target::Service {
            name: "green".into(),
        }],
        &to_blue,
    );
    assert_last_second(
        "back to blue",
        &green_ids,
        &r2,
        &snaps,
        (&answers, &report),
        bounds(f64::INFINITY),
    );
    assert_eq!(
        upstream_servers(&conf_green, "backend").unwrap(),
        vec!["green:8000"]
    );

    // All traffic on blue within a second of the second command's return: every request that
    // started from then on was answered by one of the very containers blue had at the start.
    let blue_short: BTreeSet<String> = blue_ids.iter().map(|i| i[..12].to_string()).collect();
    let after: Vec<_> = report
        .requests
        .iter()
        .filter(|r| r.t >= to_blue.returned_at + 1.0)
        .collect();
    assert!(after.len() > 500, "too little load after the switch back");
    for r in &after {
        assert!(
            r.instance.as_ref().is_some_and(|i| blue_short.contains(i)),
            "a request {:.3}s after the return was answered by {:?}",
            r.t - to_blue.returned_at,
            r.instance
        );
    }
    let last_green = report
        .requests
        .iter()
        .filter(|r| r.version.as_deref() == Some("v2"))
        .map(|r| r.t)
        .fold(f64::NEG_INFINITY, f64::max);
    eprintln!(
        "switch back: the last request green answered started {:.3}s before `docker rollout blue` returned ({:.1}s after it was run)",
        to_blue.returned_at - last_green,
        last_green - to_blue.started_at
    );

    // The same containers, both colours still running, blue named again as written.
    let blue_after = assert_final(&p, "blue", "rollout-demo:v1", 3);
    assert_eq!(ids(&blue_after), ids(&blue), "blue's containers changed");
    let green_after = assert_final(&p, "green", "rollout-demo:v2", 3);
    assert_eq!(ids(&green_after), ids(&green), "green's containers changed");
    let conf = p.read("nginx.conf");
    assert_eq!(
        upstream_servers(&conf, "backend").unwrap(),
        vec!["blue:8000"]
    );
    assert_eq!(conf, conf_before);
}

#[test]
#[ignore = "needs docker: run with cargo xtask e2e"]
fn canary_steps_match_their_weights() {
    let plugins = plugin();
    // Shorter holds than the example's 30 s, in the override file.
    let p = example(
        "strategies-canary",
        "canary",
        &["blue", "nginx"],
        "  green:\n    labels:\n      io.rollout.test: LABEL\n    x-rollout:\n      strategy: canary\n      canary:\n        steps: [10, 25, 50, 75, 100]\n        hold: 6s\n",
    );
    let o = p.read("compose.override.yaml").replace("LABEL", p.name());
    p.write("compose.override.yaml", &o);
    p.up();
    let blue = p.wait_healthy("blue", 3, Duration::from_secs(60));
    let green = p.wait_healthy("green", 3, Duration::from_secs(60));
    wait_http(p.port("nginx", 80), "/", Duration::from_secs(30), |a| {
        a.status == 200 && a.version.as_deref() == Some("v1")
    });
    let initial = p.containers(None);
    let nginx = the_nginx(&p);
    let load = example_load(&p);
    wait_ok(&load, 750, Duration::from_secs(30));
    let clock = Clock::of(&load);
    let watch = ConfigWatch::start(p.dir().join("nginx.conf"), "backend", clock);
    let mut cmd = p.rollout_command(&plugins);
    cmd.args(["green", "--strategy", "canary", "--output", "json"]);
    let run = run_rollout(cmd, clock, ROLLOUT_LIMIT);
    wait_ok(&load, 750, Duration::from_secs(30));
    let snaps = watch.stop();
    let report = stop_example_load(load, &nginx);
    print_snaps(&snaps);
    publish(SUITE, "canary", &report, &[&run]);
    assert_same_nginx(&p, &nginx);

    assert_completed(&run);
    assert_clean_during(&report, &[&run]);
    assert_versions(&report, &run, (0.0, f64::INFINITY), "v1", "v2");

    // Each step's window: from its traffic change to the next one (or the return).
    let mut steps: Vec<(u32, f64)> = Vec::new();
    let mut last_change = None;
    for e in &run.events {
        match &e.event {
            rollout_core::Event::TrafficChanged { .. } => last_change = Some(e.at),
            rollout_core::Event::WeightsChanged { new_percent } => steps.push((
                *new_percent,
                last_change.expect("a change before its weight"),
            )),
            _ => {}
        }
    }
    let percents: Vec<u32> = steps.iter().map(|s| s.0).collect();
    assert_eq!(percents, vec![10, 25, 50, 75, 100], "{}", run.transcript());
    let changes: Vec<f64> = run.traffic_changes().map(|e| e.at).collect();
    let mut problems = Vec::new();
    for (p_new, from) in &steps {
        let to = changes
            .iter()
            .copied()
            .find(|t| *t > *from)
            .unwrap_or(run.returned_at)
            .min(run.returned_at);
        let w = report.window(*from, to);
        let v1 = w.versions.get("v1").copied().unwrap_or(0);
        let v2 = w.versions.get("v2").copied().unwrap_or(0);
        let share = 100.0 * v2 as f64 / (v1 + v2).max(1) as f64;
        eprintln!(
            "STEP {p_new:>3}%: {from:>7.2}s..{to:>7.2}s, {} answers, v2 share {share:.1}%",
            v1 + v2
        );
        if *p_new < 100 && v1 + v2 < 500 {
            problems.push(format!(
                "step {p_new}%: only {} answers in its hold",
                v1 + v2
            ));
        }
        if (share - f64::from(*p_new)).abs() > 5.0 {
            problems.push(format!("step {p_new}%: v2 share {share:.1}%"));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));

    let r = replay(
        &initial,
        &[Target::Service {
            name: "blue".into(),
        }],
        &run,
    );
    let answers = Answers::of(&report);
    let blue_ids: Vec<String> = blue.iter().map(|c| c.id.clone()).collect();
    assert_last_second(
        "canary",
        &blue_ids,
        &r,
        &snaps,
        (&answers, &report),
        bounds(f64::INFINITY),
    );

    // Blue is left running, unrouted; green (the same containers) serves; green named at rest.
    let blue_after = assert_final(&p, "blue", "rollout-demo:v1", 3);
    assert_eq!(ids(&blue_after), ids(&blue));
    let green_after = assert_final(&p, "green", "rollout-demo:v2", 3);
    assert_eq!(ids(&green_after), ids(&green));
    let conf = p.read("nginx.conf");
    assert_eq!(
        upstream_servers(&conf, "backend").unwrap(),
        vec!["green:8000"]
    );
}
