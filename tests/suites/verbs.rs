//! The operator's verbs end to end, under the strategies suite's load: `status` of a canary
//! from another process (its step, its weights), `abort` of a paused canary (no process runs:
//! the abort rolls it back itself) and of a running one (told through the engine), `history`
//! of what ran, and the bad input of each. Every abort returns all traffic to v1 with no
//! failed request. `undo` after a completed rolling update returns every replica to v1
//! (launched from the saved spec) with no failed request, and `history` shows it. `promote`
//! takes a paused canary to its next step, and `--full` to 100 %, with no failed request.
//! `pause` holds a canary running in another process at its step for longer than its hold (the
//! weights stay), `resume` lets it complete; `promote` of a running canary moves it on before
//! its hold ends, and `--full` to 100 %; each with no failed request.

use rollout_e2e::load::{self as loads, mix, wait_ok};
use rollout_e2e::nginx::stderr_upstream_errors;
use rollout_e2e::verdict::{assert_clean_during, publish};
use rollout_e2e::{
    images, require_engine, require_images, run_rollout, wait_http, workspace_binary, Clock,
    DemoStack, PluginDir, Project, Rig, Running, NGINX_IMAGE, ROLLOUT_TIMEOUT, SEED_NGINX_CONF,
};
use rollout_load::{LoadHandle, Report};
use serde_json::Value;
use std::path::Path;
use std::process::Output;
use std::time::Duration;

const SUITE: &str = "verbs";
const LIMIT: Duration = Duration::from_secs(180);

/// The canary example with `canary` (YAML under green's `x-rollout.canary`), up, blue
/// serving, and the load running.
fn canary_under_load(slug: &str, canary: &str) -> (Project, PluginDir, LoadHandle, String) {
    require_engine();
    require_images(&[images::V1, images::V2, NGINX_IMAGE]);
    let plugins = PluginDir::install(&workspace_binary("docker-rollout", "docker-rollout"));
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/canary");
    let mut p = Project::new(slug);
    p.copy_from(&example);
    let label = p.name().to_string();
    p.write(
        "compose.override.yaml",
        &format!(
            "services:\n  nginx:\n    labels:\n      io.rollout.test: {label}\n  blue:\n    labels:\n      io.rollout.test: {label}\n  green:\n    labels:\n      io.rollout.test: {label}\n    x-rollout:\n      strategy: canary\n      canary:\n{canary}"
        ),
    );
    p.set_env(
        "NGINX_PORT",
        &format!("127.0.0.1:{}", rollout_e2e::free_port()),
    );
    let conf = p.read("nginx.conf");
    p.up();
    p.wait_healthy("blue", 3, Duration::from_secs(60));
    p.wait_healthy("green", 3, Duration::from_secs(60));
    wait_http(p.port("nginx", 80), "/", Duration::from_secs(30), |a| {
        a.status == 200 && a.version.as_deref() == Some("v1")
    });
    let mut c = p.load_config("nginx");
    mix(&mut c, Duration::from_secs(300));
    let load = LoadHandle::start(c).unwrap();
    wait_ok(&load, 750, Duration::from_secs(30));
    (p, plugins, load, conf)
}

/// `docker rollout ARGS` in the project, to its end.
fn verb(p: &Project, plugins: &PluginDir, args: &[&str]) -> Output {
    let mut cmd = p.rollout_command(plugins);
    cmd.args(args);
    let out = cmd.output().unwrap();
    eprintln!(
        "$ docker rollout {}\nexit {:?}\n{}{}",
        args.join(" "),
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn json_lines(out: &Output) -> Vec<Value> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

/// The load stopped, its upstream errors read, the report published; 0 failed requests and
/// 0 upstream errors asserted, blue serving and the operator's config theirs again.
fn finish(p: &Project, load: LoadHandle, slug: &str, conf: &str) -> Report {
    let report = finish_serving(p, load, slug, "v1");
    assert_eq!(p.read("nginx.conf"), conf, "the operator's config at rest");
    report
}

/// The load stopped, its upstream errors read, the report published; 0 failed requests and
/// 0 upstream errors asserted, `version` serving.
fn finish_serving(p: &Project, load: LoadHandle, slug: &str, version: &str) -> Report {
    let nginx = p.containers(Some("nginx")).into_iter().next().unwrap();
    wait_ok(&load, 750, Duration::from_secs(30));
    let mut report = load.stop().unwrap();
    report.upstream_errors = stderr_upstream_errors(&nginx.id, &report);
    publish(SUITE, slug, &report, &[]);
    eprintln!(
        "LOAD: {} requests sent, {} failed, {} keep-alive retries, {} upstream errors",
        report.sent, report.failed, report.stale_retries, report.upstream_errors.total
    );
    assert_eq!(report.failed, 0, "failed requests");
    assert_eq!(report.upstream_errors.total, 0, "upstream errors");
    wait_http(p.port("nginx", 80), "/", Duration::from_secs(10), |a| {
        a.status == 200 && a.version.as_deref() == Some(version)
    });
    report
}

/// `status --output json` of green.
fn status_of(p: &Project, plugins: &PluginDir) -> Value {
    let out = verb(p, plugins, &["status", "green", "--output", "json"]);
    assert_eq!(out.status.code(), Some(0));
    json_lines(&out).remove(0)
}

/// The share of green's requests to v2 that `status` reads from the proxy, once it is `want`
/// (within 10 s: the journal says a step began before its weights are applied).
fn wait_v2_share(p: &Project, plugins: &PluginDir, want: f64) -> Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let s = status_of(p, plugins);
        if s["traffic"]["rollout-demo:v2"].as_f64().unwrap_or(0.0) == want
            || std::time::Instant::now() >= deadline
        {
            assert_eq!(s["traffic"]["rollout-demo:v2"], want, "{s:#}");
            return s;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// The weights the rollout's events changed to, in order.
fn weights_of(events: &[rollout_e2e::Stamped]) -> Vec<u64> {
    events
        .iter()
        .filter(|e| e.json["event"] == "weights-changed")
        .filter_map(|e| e.json["new_percent"].as_u64())
        .collect()
}

#[test]
#[ignore = "needs docker: run with cargo xtask e2e"]
fn status_of_a_paused_canary_then_abort_returns_all_traffic_to_v1() {
    let slug = "verbs-paused-abort";
    let (p, plugins, load, conf) = canary_under_load(
        slug,
        "        steps: [25, 100]\n        hold: until-promoted\n",
    );
    // Bad input first: nothing to abort, an unknown service (exit 2, nothing changed).
    let none = verb(&p, &plugins, &["abort", "green"]);
    assert_eq!(none.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&none.stderr).contains("nothing to abort"));
    let unknown = verb(&p, &plugins, &["status", "nosuch"]);
    assert_eq!(unknown.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("nosuch"));

    // The canary pauses at its first step (25 %), exit 4.
    let mut cmd = p.rollout_command(&plugins);
    cmd.args(["green", "--output", "json"]);
    let paused = run_rollout(cmd, Clock::of(&load), LIMIT);
    assert_eq!(paused.code, Some(4), "{}", paused.transcript());

    // Status from another process: the step, the weights, no process.
    let out = verb(&p, &plugins, &["status", "green", "--output", "json"]);
    assert_eq!(out.status.code(), Some(0));
    let s = &json_lines(&out)[0];
    assert_eq!(s["rollout"]["phase"], "paused", "{s:#}");
    assert_eq!(s["rollout"]["canary_step"], 1, "{s:#}");
    assert_eq!(s["rollout"]["process"]["state"], "none", "{s:#}");
    assert_eq!(s["traffic"]["rollout-demo:v2"], 25.0, "{s:#}");
    assert_eq!(s["traffic"]["rollout-demo:v1"], 75.0, "{s:#}");
    assert_eq!(s["instances"].as_array().unwrap().len(), 6, "{s:#}");
    let text = verb(&p, &plugins, &["status", "green"]);
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("paused at canary step 1"), "{text}");
    assert!(text.contains("rollout-demo:v2 25%"), "{text}");

    // Abort: no process runs, so the abort rolls back itself.
    let aborted = verb(&p, &plugins, &["abort", "green"]);
    assert_eq!(aborted.status.code(), Some(0));
    let s = &json_lines(&verb(
        &p,
        &plugins,
        &["status", "green", "--output", "json"],
    ))[0];
    assert!(s["rollout"].is_null(), "{s:#}");
    assert_eq!(s["traffic"]["rollout-demo:v1"], 100.0, "{s:#}");

    // History: the abort's rollback, then the pause; newest first.
    let h = json_lines(&verb(
        &p,
        &plugins,
        &["history", "green", "--output", "json"],
    ));
    assert_eq!(h.len(), 2, "{h:#?}");
    assert_eq!(h[0]["outcome"]["outcome"], "rolled-back", "{h:#?}");
    assert_eq!(h[0]["exit_code"], 3);
    assert_eq!(h[1]["outcome"]["outcome"], "paused", "{h:#?}");
    assert_eq!(h[1]["exit_code"], 4);
    assert_eq!(h[1]["to"]["image"], "rollout-demo:v2");
    let lines = verb(&p, &plugins, &["history", "green", "--limit", "1"]);
    assert_eq!(String::from_utf8_lossy(&lines.stdout).lines().count(), 1);
    // Nothing left to abort.
    assert_eq!(
        verb(&p, &plugins, &["abort", "green"]).status.code(),
        Some(2)
    );
    finish(&p, load, slug, &conf);
}

#[test]
#[ignore = "needs docker: run with cargo xtask e2e"]
fn abort_from_another_shell_rolls_a_running_canary_back() {
    let slug = "verbs-running-abort";
    let (p, plugins, load, conf) =
        canary_under_load(slug, "        steps: [25, 50, 100]\n        hold: 60s\n");
    let mut cmd = p.rollout_command(&plugins);
    cmd.args(["green", "--output", "json"]);
    let mut running = Running::spawn(cmd, Clock::of(&load), false);
    running.wait_for("the first step", LIMIT, |e| {
        matches!(e, rollout_core::Event::StepPaused { .. })
    });
    // Status while it runs: step 1, run by a live process.
    let s = &json_lines(&verb(
        &p,
        &plugins,
        &["status", "green", "--output", "json"],
    ))[0];
    assert_eq!(s["rollout"]["process"]["state"], "running", "{s:#}");
    assert_eq!(s["rollout"]["canary_step"], 1, "{s:#}");
    assert_eq!(s["traffic"]["rollout-demo:v2"], 25.0, "{s:#}");
    let aborted = verb(&p, &plugins, &["abort", "green"]);
    assert_eq!(aborted.status.code(), Some(0));
    let run = running.wait(LIMIT);
    // The running rollout heard it as an interrupt: rolled back, exit 130.
    assert_eq!(run.code, Some(130), "{}", run.transcript());
    assert!(
        run.stderr.contains("`docker rollout abort` asked"),
        "{}",
        run.stderr
    );
    let s = &json_lines(&verb(
        &p,
        &plugins,
        &["status", "green", "--output", "json"],
    ))[0];
    assert!(s["rollout"].is_null(), "{s:#}");
    assert_eq!(s["traffic"]["rollout-demo:v1"], 100.0, "{s:#}");
    assert_eq!(s["last"]["exit_code"], 130, "{s:#}");
    finish(&p, load, slug, &conf);
}

#[test]
#[ignore = "needs docker: run with cargo xtask e2e"]
fn the_docker_cli_completes_verbs_services_and_flag_values() {
    let plugins = PluginDir::install(&workspace_binary("docker-rollout", "docker-rollout"));
    let p = Project::new("verbs-complete");
    p.write(
        "compose.yaml",
        "services:\n  web:\n    image: rollout-demo:v1\n  worker:\n    image: rollout-demo:v1\n",
    );
    let complete = |words: &[&str]| -> Vec<String> {
        let out = plugins
            .docker()
            .current_dir(p.dir())
            .arg("__complete")
            .args(words)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        eprintln!("$ docker __complete {}\n{text}", words.join(" "));
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        text.lines().map(String::from).collect()
    };
    let first = complete(&["rollout", ""]);
    for v in ["status", "pause", "resume", "promote"] {
        assert!(first.iter().any(|l| l.starts_with(v)), "{v}: {first:?}");
    }
    assert!(
        first.iter().any(|l| l == "web") && first.iter().any(|l| l == "worker"),
        "{first:?}"
    );
    assert_eq!(first.last().map(String::as_str), Some(":4"));
    assert_eq!(
        complete(&["rollout", "status", "w"]),
        vec!["web", "worker", ":4"]
    );
    assert_eq!(complete(&["rollout", "pause", "we"]), vec!["web", ":4"]);
    assert_eq!(
        complete(&["rollout", "web", "--output", ""]),
        vec!["text", "json", ":4"]
    );
    let flags = complete(&["rollout", "web", "--dry"]);
    assert_eq!(flags, vec!["--dry-run", ":4"]);
}

/// Three replicas, one at a time, start-first, short monitor windows.
const QUICK: &str = "services:\n  app:\n    deploy:\n      update_config:\n        parallelism: 1\n        order: start-first\n        failure_action: rollback\n        monitor: 1s\n      rollback_config:\n        parallelism: 1\n        monitor: 1s\n";

#[test]
#[ignore = "needs docker: run with cargo xtask e2e"]
fn undo_after_a_completed_rolling_update_returns_every_replica_to_v1() {
    let slug = "verbs-undo";
    let mut s = Rig::up(slug, DemoStack::new(images::V1, 3), QUICK, &[images::V2]);
    let undo = |s: &Rig| {
        let mut cmd = s.p.rollout_command(&s.plugins);
        cmd.args(["undo", "app", "--output", "json"]);
        cmd
    };
    // Nothing to undo yet: exit 2, nothing changed.
    let before = s.app();
    let none = verb(&s.p, &s.plugins, &["undo", "app"]);
    assert_eq!(none.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&none.stderr).contains("nothing to undo"));
    assert_eq!(s.app(), before);

    let load = loads::standard(&s.p, Duration::from_secs(170));
    wait_ok(&load, 750, Duration::from_secs(30));
    s.p.set_env("APP_IMAGE", images::V2);
    let run = s.rollout(&load, &["--output", "json"]);
    assert_eq!(run.code, Some(0), "{}", run.transcript());
    assert_eq!(s.p.running_images("app"), [images::V2; 3]);
    wait_ok(&load, 500, Duration::from_secs(30));

    // Undo, under the same load: every replica back to v1, the Compose file untouched.
    load.mark("undo-start");
    let undone = run_rollout(undo(&s), Clock::of(&load), ROLLOUT_TIMEOUT);
    load.mark("undo-end");
    assert_eq!(undone.code, Some(0), "{}", undone.transcript());
    assert_eq!(undone.outcome_name(), "completed", "{}", undone.stderr);
    assert!(undone.stderr.contains("undo: back to"), "{}", undone.stderr);
    assert_eq!(s.p.running_images("app"), [images::V1; 3]);
    assert_eq!(s.p.read("nginx.conf"), SEED_NGINX_CONF);
    wait_ok(&load, 500, Duration::from_secs(30));
    let report = load.stop().unwrap();
    publish(SUITE, slug, &report, &[&run, &undone]);
    eprintln!(
        "LOAD: {} requests sent, {} failed, {} keep-alive retries, {} upstream errors",
        report.sent, report.failed, report.stale_retries, report.upstream_errors.total
    );
    assert_clean_during(&report, &[&run, &undone]);
    let after = report.window(report.mark("undo-end").unwrap() + 0.5, report.duration_s);
    assert_eq!(after.versions.keys().collect::<Vec<_>>(), ["v1"]);

    // History: the undo (v2 -> v1), then the rollout (v1 -> v2).
    let h = json_lines(&verb(
        &s.p,
        &s.plugins,
        &["history", "app", "--output", "json"],
    ));
    assert_eq!(h.len(), 2, "{h:#?}");
    assert_eq!(h[0]["undo"], true, "{h:#?}");
    assert_eq!(h[0]["outcome"]["outcome"], "completed", "{h:#?}");
    assert_eq!(h[0]["from"]["image"], images::V2, "{h:#?}");
    assert_eq!(h[0]["to"]["image"], images::V1, "{h:#?}");
    assert!(h[1].get("undo").is_none(), "{h:#?}");
    assert_eq!(h[1]["to"]["image"], images::V2, "{h:#?}");
    let text = verb(&s.p, &s.plugins, &["history", "app", "--limit", "1"]);
    assert!(String::from_utf8_lossy(&text.stdout).contains(" undo "));
}

#[test]
#[ignore = "needs docker: run with cargo xtask e2e"]
fn promote_takes_a_paused_canary_a_step_on_then_in_full_to_100() {
    let slug = "verbs-promote";
    let (p, plugins, load, _conf) = canary_under_load(
        slug,
        "        steps: [25, 50, 75, 100]\n        hold: until-promoted\n",
    );
    let none = verb(&p, &plugins, &["promote", "green"]);
    assert_eq!(none.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&none.stderr).contains("nothing to promote"));
    let mut cmd = p.rollout_command(&plugins);
    cmd.args(["green", "--output", "json"]);
    let paused = run_rollout(cmd, Clock::of(&load), LIMIT);
    assert_eq!(paused.code, Some(4), "{}", paused.transcript());
    let traffic = |p: &Project| {
        let s = &json_lines(&verb(p, &plugins, &["status", "green", "--output", "json"]))[0];
        s["traffic"]["rollout-demo:v2"].as_f64().unwrap_or(0.0)
    };
    assert_eq!(traffic(&p), 25.0);
    // One step on: it holds again at 50 %.
    let step = verb(&p, &plugins, &["promote", "green"]);
    assert_eq!(step.status.code(), Some(4));
    assert_eq!(traffic(&p), 50.0);
    // In full: straight to 100 %, completed.
    let full = verb(
        &p,
        &plugins,
        &["promote", "green", "--full", "--output", "json"],
    );
    assert_eq!(full.status.code(), Some(0));
    let weights: Vec<u64> = json_lines(&full)
        .iter()
        .filter(|e| e["event"] == "weights-changed")
        .filter_map(|e| e["new_percent"].as_u64())
        .collect();
    assert_eq!(weights, [100], "no step held between");
    assert_eq!(traffic(&p), 100.0);
    assert_eq!(
        verb(&p, &plugins, &["promote", "green"]).status.code(),
        Some(2),
        "nothing left to promote"
    );
    let nginx = p.containers(Some("nginx")).into_iter().next().unwrap();
    wait_ok(&load, 750, Duration::from_secs(30));
    let mut report = load.stop().unwrap();
    report.upstream_errors = stderr_upstream_errors(&nginx.id, &report);
    publish(SUITE, slug, &report, &[&paused]);
    eprintln!(
        "LOAD: {} requests sent, {} failed, {} keep-alive retries, {} upstream errors",
        report.sent, report.failed, report.stale_retries, report.upstream_errors.total
    );
    assert_eq!(report.failed, 0, "failed requests");
    assert_eq!(report.upstream_errors.total, 0, "upstream errors");
    wait_http(p.port("nginx", 80), "/", Duration::from_secs(10), |a| {
        a.status == 200 && a.version.as_deref() == Some("v2")
    });
}

#[test]
#[ignore = "needs docker: run with cargo xtask e2e"]
fn pause_holds_a_running_canary_past_its_hold_and_resume_completes_it() {
    let slug = "verbs-pause-resume";
    let (p, plugins, load, _conf) =
        canary_under_load(slug, "        steps: [25, 50, 100]\n        hold: 6s\n");
    // Bad input first: nothing runs (exit 2, nothing changed).
    for v in ["pause", "resume"] {
        let none = verb(&p, &plugins, &[v, "green"]);
        assert_eq!(none.status.code(), Some(2), "{v}");
        assert!(String::from_utf8_lossy(&none.stderr).contains(&format!("nothing to {v}")));
    }
    let mut cmd = p.rollout_command(&plugins);
    cmd.args(["green", "--output", "json"]);
    let mut running = Running::spawn(cmd, Clock::of(&load), false);
    let step1 = running.wait_for("the first step", LIMIT, |e| {
        matches!(e, rollout_core::Event::StepPaused { step: 1, .. })
    });
    // Running, not paused: nothing to resume.
    let not_paused = verb(&p, &plugins, &["resume", "green"]);
    assert_eq!(not_paused.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&not_paused.stderr).contains("not paused"));

    let paused = verb(&p, &plugins, &["pause", "green", "--output", "json"]);
    assert_eq!(paused.status.code(), Some(0));
    let answer = &json_lines(&paused)[0];
    assert_eq!(answer["paused"], true, "{answer}");
    assert_eq!(answer["at"], "canary step 1 at 25%", "{answer}");
    let held = running.wait_for("the pause", Duration::from_secs(10), |e| {
        matches!(e, rollout_core::Event::Paused { .. })
    });
    assert_eq!(held.json["reason"], "operator");
    let s = status_of(&p, &plugins);
    assert_eq!(s["rollout"]["paused"]["by"], "operator", "{s:#}");
    assert_eq!(
        s["rollout"]["paused"]["at"], "canary step 1 at 25%",
        "{s:#}"
    );
    assert_eq!(s["rollout"]["canary_step"], 1, "{s:#}");
    assert_eq!(s["rollout"]["process"]["state"], "running", "{s:#}");
    assert_eq!(s["traffic"]["rollout-demo:v2"], 25.0, "{s:#}");
    let text = verb(&p, &plugins, &["status", "green"]);
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains("paused by the operator at canary step 1 at 25%"),
        "{text}"
    );
    let again = verb(&p, &plugins, &["pause", "green"]);
    assert_eq!(again.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&again.stderr).contains("paused already"));

    // Longer than the 6 s hold: still at 25 %, still paused.
    std::thread::sleep(Duration::from_secs(9));
    let s = status_of(&p, &plugins);
    assert_eq!(s["traffic"]["rollout-demo:v2"], 25.0, "{s:#}");
    assert_eq!(s["rollout"]["paused"]["by"], "operator", "{s:#}");
    running.drain();
    assert_eq!(weights_of(running.events()), [25], "no step while paused");

    let resumed = verb(&p, &plugins, &["resume", "green"]);
    assert_eq!(resumed.status.code(), Some(0));
    let run = running.wait(LIMIT);
    assert_eq!(run.code, Some(0), "{}", run.transcript());
    assert_eq!(run.outcome_name(), "completed");
    assert_eq!(weights_of(&run.events), [25, 50, 100]);
    let paused_ev = &run.named("paused")[0];
    let resumed_ev = &run.named("resumed")[0];
    let held_secs = resumed_ev.json["held_secs"].as_f64().unwrap();
    assert!(held_secs >= 9.0, "held {held_secs}s");
    // The hold went on where it stopped: what was left of it after the resume.
    let left = 6.0 - (paused_ev.rollout_t - step1.rollout_t);
    let step2 = run
        .events
        .iter()
        .find(|e| e.json["event"] == "weights-changed" && e.json["new_percent"] == 50)
        .unwrap();
    let after = step2.rollout_t - resumed_ev.rollout_t;
    assert!(
        after >= left - 0.5 && after <= left + 3.0,
        "step 2 {after:.1}s after the resume, {left:.1}s of the hold left"
    );
    let s = status_of(&p, &plugins);
    assert!(s["rollout"].is_null(), "{s:#}");
    assert_eq!(s["traffic"]["rollout-demo:v2"], 100.0, "{s:#}");
    finish_serving(&p, load, slug, "v2");
}

#[test]
#[ignore = "needs docker: run with cargo xtask e2e"]
fn promote_moves_a_running_canary_on_before_its_hold_ends_then_in_full_to_100() {
    let slug = "verbs-promote-running";
    let (p, plugins, load, _conf) = canary_under_load(
        slug,
        "        steps: [25, 50, 75, 100]\n        hold: 60s\n",
    );
    let mut cmd = p.rollout_command(&plugins);
    cmd.args(["green", "--output", "json"]);
    let mut running = Running::spawn(cmd, Clock::of(&load), false);
    running.wait_for("the first step", LIMIT, |e| {
        matches!(e, rollout_core::Event::StepPaused { step: 1, .. })
    });
    assert_eq!(status_of(&p, &plugins)["traffic"]["rollout-demo:v2"], 25.0);
    let step = verb(&p, &plugins, &["promote", "green"]);
    assert_eq!(step.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&step.stderr).contains("on to step 2"));
    let s = wait_v2_share(&p, &plugins, 50.0);
    assert_eq!(s["rollout"]["canary_step"], 2, "{s:#}");
    running.wait_for("the second step", Duration::from_secs(10), |e| {
        matches!(e, rollout_core::Event::StepPaused { step: 2, .. })
    });
    let full = verb(&p, &plugins, &["promote", "green", "--full"]);
    assert_eq!(full.status.code(), Some(0));
    let run = running.wait(LIMIT);
    assert_eq!(run.code, Some(0), "{}", run.transcript());
    assert_eq!(run.outcome_name(), "completed");
    assert_eq!(
        weights_of(&run.events),
        [25, 50, 100],
        "no step held between"
    );
    let promoted: Vec<(u64, bool)> = run
        .named("promoted")
        .iter()
        .map(|e| {
            (
                e.json["step"].as_u64().unwrap(),
                e.json["full"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(promoted, [(1, false), (2, true)]);
    assert!(
        run.elapsed() < 60.0,
        "{}s: less than one hold",
        run.elapsed()
    );
    let s = status_of(&p, &plugins);
    assert!(s["rollout"].is_null(), "{s:#}");
    assert_eq!(s["traffic"]["rollout-demo:v2"], 100.0, "{s:#}");
    let none = verb(&p, &plugins, &["promote", "green"]);
    assert_eq!(none.status.code(), Some(2), "nothing left to promote");
    finish_serving(&p, load, slug, "v2");
}
