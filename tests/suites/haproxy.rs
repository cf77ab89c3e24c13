//! HAProxy in front (issue 16): `docker rollout` changes the backend's server slots through
//! HAProxy's runtime API, reached by exec of the relay in the `rollout-haproxy:2.6` image,
//! with no reload.
//!
//! Under the same load as every rollout test (250 requests per second through the proxy,
//! slow GETs of 3 s, POSTs, keep-alive and new connections; the app exiting at once on
//! SIGTERM), through the real docker CLI: rolling; blue-green and the switch back; canary
//! with each step's share counted from the answers; a never-healthy version rolled back;
//! SIGKILL of the plugin mid-rollout, then the run that resumes. Each asserts 0 failed
//! requests and 0 stale keep-alive retries (HAProxy is never reloaded, so no client
//! connection is closed), and the servers in service as HAProxy itself reports them
//! (`show servers state`) after the change.

use rollout_core::{Event, Outcome};
use rollout_e2e::haproxy::{
    addresses, draining, haproxy_load, haproxy_project, routed, KEPT_RELAY,
};
use rollout_e2e::load::wait_ok;
use rollout_e2e::run::alive;
use rollout_e2e::verdict::{assert_every_class_answered, assert_rate, publish};
use rollout_e2e::{
    images, run_rollout, wait_http, workspace_binary, Clock, Ended, ExecWatch, PluginDir, Project,
    Running, Whom, ROLLOUT_TIMEOUT,
};
use rollout_load::Report;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// The name the reports of this suite carry.
const SUITE: &str = "haproxy";

/// The load's bound (each test stops it much earlier).
const LOAD_MAX: Duration = Duration::from_secs(240);

fn plugin() -> PluginDir {
    PluginDir::install(&workspace_binary("docker-rollout", "docker-rollout"))
}

/// `docker rollout ARGS --output json` of `p`, to its end.
fn rollout(p: &Project, plugins: &PluginDir, args: &[&str], clock: Clock) -> Ended {
    let mut cmd = p.rollout_command(plugins);
    cmd.args(args).args(["--output", "json"]);
    run_rollout(cmd, clock, ROLLOUT_TIMEOUT)
}

/// The verdict of every test: no failed request, no stale keep-alive retry (no connection
/// closed under a client), the client kept up, every class of request answered.
fn assert_clean(report: &Report) {
    assert_eq!(report.failed, 0, "failed requests: {:?}", report.failures);
    assert_eq!(report.stale_retries, 0, "stale keep-alive retries");
    assert_eq!(report.skipped, 0, "the client could not keep up");
    assert_every_class_answered(report);
}

fn assert_code(run: &Ended, code: i32) {
    assert_eq!(
        run.code,
        Some(code),
        "stderr:\n{}\nevents:\n{}",
        run.stderr,
        run.transcript()
    );
}

/// Every address of `service` in service at weight `weight`, and nothing else.
fn assert_routed_only(p: &Project, backend: &str, service: &str, what: &str) {
    let state = routed(p, backend);
    let want = addresses(p, service);
    assert_eq!(
        state.keys().cloned().collect::<BTreeSet<_>>(),
        want,
        "{what}: HAProxy's servers in service {state:?}, {service} is {want:?}"
    );
}

/// Answers by version of the requests that started in `[from, to)`.
fn versions(report: &Report, from: f64, to: f64) -> BTreeMap<String, u64> {
    let mut by = BTreeMap::new();
    for r in &report.requests {
        if r.t >= from && r.t < to && !r.failed() {
            if let Some(v) = &r.version {
                *by.entry(v.clone()).or_default() += 1;
            }
        }
    }
    by
}

fn keys(m: &BTreeMap<String, u64>) -> Vec<&str> {
    m.keys().map(String::as_str).collect()
}

/// The rolling layout behind HAProxy, v1 to v2 under load: exit 0, no failed request, and
/// HAProxy's own `show servers state` routes exactly the new containers.
#[test]
#[ignore = "needs docker: run with cargo xtask e2e"]
fn rolling_behind_haproxy_fails_no_request() {
    let mut p = haproxy_project(
        "haproxy-rolling",
        "  app:\n    image: ${APP_IMAGE}\n    deploy:\n      replicas: 3\n      update_config:\n        parallelism: 1\n        order: start-first\n        failure_action: rollback\n        monitor: 1s\n",
        &[images::V1, images::V2],
    );
    p.set_env("APP_IMAGE", images::V1);
    p.up();
    p.wait_healthy("app", 3, Duration::from_secs(60));
    let plugins = plugin();
    // HAProxy starts with empty slots: the first run routes the running v1 instances, and
    // is otherwise a no-op.
    let first = rollout(&p, &plugins, &["app"], Clock::start());
    assert_code(&first, 0);
    assert_routed_only(&p, "app", "app", "after the first run");

    let load = haproxy_load(&p, LOAD_MAX);
    wait_ok(&load, 750, Duration::from_secs(30));
    p.set_env("APP_IMAGE", images::V2);
    load.mark("rollout-start");
    let execs = ExecWatch::start(&p, "haproxy");
    let run = rollout(&p, &plugins, &["app"], Clock::of(&load));
    let execs = execs.count();
    load.mark("rollout-end");
    std::thread::sleep(Duration::from_secs(1));
    let report = load.stop().unwrap();
    publish(SUITE, "rolling", &report, &[&run]);
    assert_code(&run, 0);
    assert_eq!(run.outcome_name(), "completed");
    assert_clean(&report);
    let (start, end) = (
        report.mark("rollout-start").unwrap(),
        report.mark("rollout-end").unwrap(),
    );
    assert_rate(&report, start, end, "during the rollout");
    let app = p.containers(Some("app"));
    assert_eq!(app.len(), 3, "{app:#?}");
    assert!(app
        .iter()
        .all(|c| c.image == images::V2 && c.state == "running"));
    assert_routed_only(&p, "app", "app", "after the rollout");
    // The last old instance drained after the last change: the run's end freed its slot.
    let left = draining(&p, "app");
    assert!(
        left.is_empty(),
        "slots left draining after the run: {left:?}"
    );
    // Every change, read-back and drain poll went through one kept relay, which the run's
    // end let go: by exec each would be one (about 30 for this rollout).
    p.assert_sessions_let_go("haproxy", &KEPT_RELAY, execs, 4);
}

/// Two colours of two replicas each behind backend `app`; `green` may carry more YAML.
fn colours(slug: &str, green_extra: &str) -> Project {
    let p = haproxy_project(
        slug,
        &format!("  blue:\n    image: {}\n    deploy:\n      replicas: 2\n  green:\n    image: {}\n    deploy:\n      replicas: 2\n{green_extra}", images::V1, images::V2),
        &[images::V1, images::V2],
    );
    p.up();
    p.wait_healthy("blue", 2, Duration::from_secs(60));
    p.wait_healthy("green", 2, Duration::from_secs(60));
    p
}

/// Blue-green behind HAProxy: blue routed first (HAProxy starts with empty slots), then
/// `docker rollout green` and `docker rollout blue` under load: each exits 0, only the
/// colour switched to answers after its return, HAProxy's servers in service are exactly
/// that colour's containers, and the switch back (from the command to the first answer of
/// the old colour) is printed.
#[test]
#[ignore = "needs docker: run with cargo xtask e2e"]
fn blue_green_behind_haproxy_switches_and_back() {
    let p = colours("haproxy-blue-green", "");
    let plugins = plugin();
    let first = rollout(&p, &plugins, &["blue"], Clock::start());
    assert_code(&first, 0);
    assert_routed_only(&p, "app", "blue", "after routing blue");
    let blue = p.containers(Some("blue"));
    let green = p.containers(Some("green"));

    let load = haproxy_load(&p, LOAD_MAX);
    wait_ok(&load, 750, Duration::from_secs(30));
    let clock = Clock::of(&load);
    let to_green = rollout(&p, &plugins, &["green"], clock);
    assert_code(&to_green, 0);
    assert_routed_only(&p, "app", "green", "after the switch to green");
    wait_ok(&load, 750, Duration::from_secs(30));
    let to_blue = rollout(&p, &plugins, &["blue"], clock);
    assert_code(&to_blue, 0);
    assert_routed_only(&p, "app", "blue", "after the switch back");
    wait_ok(&load, 750, Duration::from_secs(30));
    let report = load.stop().unwrap();
    publish(SUITE, "blue-green", &report, &[&to_green, &to_blue]);
    assert_clean(&report);
    assert_eq!(to_green.outcome(), Some(Outcome::Completed));
    assert_eq!(to_blue.outcome(), Some(Outcome::Completed));

    let before = versions(&report, 0.0, to_green.started_at);
    let between = versions(&report, to_green.returned_at, to_blue.started_at);
    let after = versions(&report, to_blue.returned_at, f64::INFINITY);
    assert_eq!(keys(&before), ["v1"], "before the switch: {before:?}");
    assert_eq!(keys(&between), ["v2"], "between the switches: {between:?}");
    assert_eq!(keys(&after), ["v1"], "after the switch back: {after:?}");
    assert!(after["v1"] > 500, "too little load after the switch back");
    let first_blue = report
        .requests
        .iter()
        .filter(|r| r.t >= to_blue.started_at && r.version.as_deref() == Some("v1"))
        .map(|r| r.end())
        .fold(f64::INFINITY, f64::min);
    eprintln!(
        "SWITCH BACK: the first answer from blue {:.3}s after `docker rollout blue` was run (it returned after {:.3}s)",
        first_blue - to_blue.started_at,
        to_blue.returned_at - to_blue.started_at
    );
    // The same containers of both colours, still running.
    let ids = |cs: &[rollout_e2e::Container]| -> BTreeSet<String> {
        cs.iter().map(|c| c.id.clone()).collect()
    };
    assert_eq!(ids(&p.containers(Some("blue"))), ids(&blue));
    assert_eq!(ids(&p.containers(Some("green"))), ids(&green));
}

/// Canary behind HAProxy, steps 20, 50, 100 held 4 s: at each step HAProxy's own weights
/// give green the step's share, and the answers counted per version in the step's window
/// match it within 5 points; at the end only green is in service.
#[test]
#[ignore = "needs docker: run with cargo xtask e2e"]
fn canary_behind_haproxy_steps_match_their_weights() {
    let p = colours(
        "haproxy-canary",
        "    x-rollout:\n      strategy: canary\n      canary:\n        steps: [20, 50, 100]\n        hold: 4s\n",
    );
    let plugins = plugin();
    let mut cmd = p.rollout_command(&plugins);
    cmd.args(["blue", "--strategy", "blue-green", "--output", "json"]);
    let first = run_rollout(cmd, Clock::start(), ROLLOUT_TIMEOUT);
    assert_code(&first, 0);
    assert_routed_only(&p, "app", "blue", "after routing blue");
    let blue = addresses(&p, "blue");
    let green = addresses(&p, "green");

    let load = haproxy_load(&p, LOAD_MAX);
    wait_ok(&load, 750, Duration::from_secs(30));
    let mut cmd = p.rollout_command(&plugins);
    cmd.args(["green", "--output", "json"]);
    let mut running = Running::spawn(cmd, Clock::of(&load), false);
    // HAProxy's weights at each step, read while the step holds.
    let mut stat_shares = Vec::new();
    for _ in 0..2 {
        let e = running.wait_for("weights-changed", ROLLOUT_TIMEOUT, |e| {
            matches!(e, Event::WeightsChanged { .. })
        });
        let Event::WeightsChanged { new_percent } = e.event else {
            unreachable!()
        };
        let state = routed(&p, "app");
        let weight = |of: &BTreeSet<String>| -> u32 {
            state
                .iter()
                .filter(|(a, _)| of.contains(*a))
                .map(|(_, w)| *w)
                .sum()
        };
        let (b, g) = (weight(&blue), weight(&green));
        assert_eq!(
            state.len(),
            blue.len() + green.len(),
            "step {new_percent}%: in service {state:?}"
        );
        let share = 100.0 * f64::from(g) / f64::from(b + g);
        eprintln!("STEP {new_percent:>3}%: HAProxy weights blue {b}, green {g}: {share:.1}%");
        stat_shares.push((new_percent, share));
    }
    let run = running.wait(ROLLOUT_TIMEOUT);
    assert_code(&run, 0);
    assert_routed_only(&p, "app", "green", "after the canary");
    wait_ok(&load, 750, Duration::from_secs(30));
    let report = load.stop().unwrap();
    publish(SUITE, "canary", &report, &[&run]);
    assert_clean(&report);
    assert_eq!(run.outcome(), Some(Outcome::Completed));

    let mut steps = Vec::new();
    let mut last_change = None;
    for e in &run.events {
        match &e.event {
            Event::TrafficChanged { .. } => last_change = Some(e.at),
            Event::WeightsChanged { new_percent } => steps.push((
                *new_percent,
                last_change.expect("a change before its weight"),
            )),
            _ => {}
        }
    }
    let percents: Vec<u32> = steps.iter().map(|s| s.0).collect();
    assert_eq!(percents, [20, 50, 100], "{}", run.transcript());
    let changes: Vec<f64> = run.traffic_changes().map(|e| e.at).collect();
    let mut problems = Vec::new();
    for (percent, share) in &stat_shares {
        if (share - f64::from(*percent)).abs() > 5.0 {
            problems.push(format!(
                "step {percent}%: HAProxy's weights give {share:.1}%"
            ));
        }
    }
    for (percent, from) in &steps {
        let to = changes
            .iter()
            .copied()
            .find(|t| t > from)
            .unwrap_or(run.returned_at)
            .min(run.returned_at);
        let w = versions(&report, *from, to);
        let (v1, v2) = (
            w.get("v1").copied().unwrap_or(0),
            w.get("v2").copied().unwrap_or(0),
        );
        let share = 100.0 * v2 as f64 / (v1 + v2).max(1) as f64;
        eprintln!(
            "STEP {percent:>3}%: {from:>7.2}s..{to:>7.2}s, {} answers (v1 {v1}, v2 {v2}), v2 share {share:.1}%",
            v1 + v2
        );
        if *percent < 100 && v1 + v2 < 500 {
            problems.push(format!("step {percent}%: only {} answers", v1 + v2));
        }
        if (share - f64::from(*percent)).abs() > 5.0 {
            problems.push(format!("step {percent}%: v2 answered {share:.1}%"));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    let after = versions(&report, run.returned_at, f64::INFINITY);
    assert_eq!(keys(&after), ["v2"], "after the canary: {after:?}");
}

/// The rolling layout of three replicas with `update` under `update_config` and `x_rollout`
/// under `x-rollout`, v1 running and routed, under load.
fn rolling_stage(slug: &str, update: &str, x_rollout: &str, image: &str) -> (Project, PluginDir) {
    let mut p = haproxy_project(
        slug,
        &format!("  app:\n    image: ${{APP_IMAGE}}\n    deploy:\n      replicas: 3\n      update_config:\n{update}    x-rollout:\n{x_rollout}"),
        &[images::V1, image],
    );
    p.set_env("APP_IMAGE", images::V1);
    p.up();
    p.wait_healthy("app", 3, Duration::from_secs(60));
    let plugins = plugin();
    let first = rollout(&p, &plugins, &["app"], Clock::start());
    assert_code(&first, 0);
    assert_routed_only(&p, "app", "app", "after the first run");
    (p, plugins)
}

/// A version that never becomes healthy behind HAProxy: rolled back automatically, exit 3,
/// only v1 answered, and HAProxy's servers in service are exactly the v1 containers left.
#[test]
#[ignore = "needs docker: run with cargo xtask e2e"]
fn never_healthy_behind_haproxy_rolls_back() {
    let (mut p, plugins) = rolling_stage(
        "haproxy-never-healthy",
        "        parallelism: 1\n        order: stop-first\n        failure_action: rollback\n        monitor: 1s\n        max_failure_ratio: 0\n",
        "      start_timeout: 5s\n",
        images::V2_UNHEALTHY,
    );
    let load = haproxy_load(&p, LOAD_MAX);
    wait_ok(&load, 750, Duration::from_secs(30));
    p.set_env("APP_IMAGE", images::V2_UNHEALTHY);
    let run = rollout(&p, &plugins, &["app"], Clock::of(&load));
    wait_ok(&load, 500, Duration::from_secs(30));
    let report = load.stop().unwrap();
    publish(SUITE, "never-healthy", &report, &[&run]);
    assert_code(&run, 3);
    assert_eq!(run.outcome_name(), "rolled-back", "{}", run.transcript());
    assert_clean(&report);
    assert_eq!(keys(&report.versions), ["v1"], "only v1 may answer");
    let app = p.containers(Some("app"));
    assert_eq!(app.len(), 3, "{app:#?}");
    assert!(
        app.iter()
            .all(|c| c.image == images::V1 && c.state == "running"),
        "{app:#?}"
    );
    assert_routed_only(&p, "app", "app", "after the rollback");
}

/// SIGKILL of the plugin right after its first traffic change behind HAProxy, then
/// `docker rollout app` again: it resumes from the journal and completes; no request failed
/// over the whole run; HAProxy's servers in service are exactly the v2 containers.
#[test]
#[ignore = "needs docker: run with cargo xtask e2e"]
fn sigkill_behind_haproxy_then_the_next_run_resumes() {
    let (mut p, plugins) = rolling_stage(
        "haproxy-kill-resume",
        "        parallelism: 1\n        delay: 1s\n        order: start-first\n        failure_action: rollback\n        monitor: 1s\n",
        "      start_timeout: 30s\n",
        images::V2,
    );
    let load = haproxy_load(&p, LOAD_MAX);
    wait_ok(&load, 750, Duration::from_secs(30));
    p.set_env("APP_IMAGE", images::V2);
    let mut cmd = p.rollout_command(&plugins);
    cmd.args(["app", "--output", "json"]);
    let mut first = Running::spawn(cmd, Clock::of(&load), false);
    first.wait_for("traffic-changed", ROLLOUT_TIMEOUT, |e| {
        matches!(e, Event::TrafficChanged { .. })
    });
    let plugin_pid = first.plugin_pid();
    first.signal("KILL", Whom::Plugin);
    let first = first.wait(Duration::from_secs(30));
    assert!(
        first.code != Some(0) && first.outcome().is_none(),
        "the killed run ended as if it finished: {:?}\n{}",
        first.code,
        first.transcript()
    );
    assert!(!alive(plugin_pid), "the plugin survived SIGKILL");
    // The killed run's kept relay ends with it: the engine closes its input.
    assert_eq!(
        p.processes_gone("haproxy", &KEPT_RELAY, Duration::from_secs(10)),
        0,
        "the killed run's kept relay still runs"
    );
    wait_ok(&load, 500, Duration::from_secs(30));
    let second = rollout(&p, &plugins, &["app"], Clock::of(&load));
    wait_ok(&load, 500, Duration::from_secs(30));
    let report = load.stop().unwrap();
    publish(SUITE, "kill-resume", &report, &[&first, &second]);
    assert_code(&second, 0);
    assert!(
        second.has(|e| matches!(e, Event::RolloutStarted { resumed: true, .. })),
        "the second run did not resume:\n{}",
        second.transcript()
    );
    assert_eq!(second.outcome(), Some(Outcome::Completed));
    assert_clean(&report);
    let app = p.containers(Some("app"));
    assert_eq!(app.len(), 3, "{app:#?}");
    assert!(
        app.iter()
            .all(|c| c.image == images::V2 && c.state == "running"),
        "{app:#?}"
    );
    assert_routed_only(&p, "app", "app", "after the resumed run");
}

/// A restarted HAProxy (`docker restart`) serves the routes at rest again by itself: each
/// change that left the backend at rest was kept in the container (the relay's `--keep`), and
/// the image's entrypoint replays it once HAProxy is up (the service's instances found by
/// name), with no run of the tool. HAProxy's servers in service are then the app's containers,
/// the replayer says so in the container's log, and a rollout that follows works under load
/// with no failed request.
#[test]
#[ignore = "needs docker: run with cargo xtask e2e"]
fn a_restarted_haproxy_serves_the_routes_at_rest_without_a_run() {
    let (mut p, plugins) = rolling_stage(
        "haproxy-restart",
        "        parallelism: 1\n        order: start-first\n        monitor: 1s\n",
        "      start_timeout: 30s\n",
        images::V2,
    );
    let haproxy = p.running("haproxy");
    rollout_e2e::run_ok(rollout_e2e::docker().args(["restart", "-t", "1", &haproxy.id]));
    let addr = p.container_address("haproxy", 80);
    wait_http(addr, "/", Duration::from_secs(30), |a| {
        a.status == 200 && a.version.as_deref() == Some("v1")
    });
    // The replayer says what it did once all its commands are sent (HAProxy may answer
    // after the first of them): its line is waited for, bounded.
    let said = "backend app: routed at rest again: app (3 addresses)";
    let mut logs = String::new();
    for _ in 0..100 {
        let out = rollout_e2e::docker()
            .args(["logs", &haproxy.id])
            .output()
            .unwrap();
        logs = String::from_utf8_lossy(&out.stderr).into_owned();
        if logs.contains(said) {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(logs.contains(said), "{logs}");
    assert_routed_only(&p, "app", "app", "after the restart, with no run");

    let load = haproxy_load(&p, LOAD_MAX);
    wait_ok(&load, 750, Duration::from_secs(30));
    p.set_env("APP_IMAGE", images::V2);
    let run = rollout(&p, &plugins, &["app"], Clock::of(&load));
    wait_ok(&load, 500, Duration::from_secs(30));
    let report = load.stop().unwrap();
    publish(SUITE, "restart", &report, &[&run]);
    assert_code(&run, 0);
    assert_eq!(run.outcome_name(), "completed", "{}", run.transcript());
    assert!(
        !run.stderr.contains("had no server"),
        "the run found the slots empty:\n{}",
        run.stderr
    );
    assert_clean(&report);
    assert_routed_only(
        &p,
        "app",
        "app",
        "after the rollout that followed the restart",
    );
}
