//! The Compose tool that made the project is the one the rollout uses (issue 19). Each test
//! runs with the run's tool ([`ComposeTool::detect`]: `cargo xtask e2e` runs this suite once
//! under `docker compose` and once under `docker-compose`), on a machine where both are
//! installed: the plugin must not take the other one just because it is installed too.
//!
//! - Up with the tool, `docker rollout app` under load (nothing fails), the new containers are
//!   the tool's own (its names, its version label), a second `docker rollout app` is a no-op,
//!   and `up -d` with the same tool afterwards creates and recreates nothing.
//! - A project whose containers that tool made, with the tool hidden from the docker CLI and
//!   the plugin (as if it were not installed), is refused with exit 2 and what to do, and
//!   nothing changes.
//! - A project whose containers both tools made (one more replica added by the other tool) is
//!   refused with exit 2, both tools' containers named, and nothing changes.

use rollout_e2e::keepers::{keepers, rollout_leftovers};
use rollout_e2e::load::{self, wait_ok};
use rollout_e2e::verdict::{assert_answered_before_unrouted, assert_clean, publish};
use rollout_e2e::{
    creations, images, run_rollout, Clock, ComposeTool, DemoStack, Rig, ROLLOUT_TIMEOUT,
    SEED_NGINX_CONF,
};
use std::collections::BTreeSet;
use std::time::Duration;

/// The name the reports of this suite carry.
const SUITE: &str = "compose-tools";

const QUICK: &str = "services:\n  app:\n    deploy:\n      update_config:\n        parallelism: 1\n        order: start-first\n        failure_action: rollback\n        monitor: 1s\n      rollback_config:\n        parallelism: 1\n        monitor: 1s\n";

fn ids(containers: &[rollout_e2e::Container]) -> BTreeSet<String> {
    containers.iter().map(|c| c.id.clone()).collect()
}

/// Panics unless every container of the project was made by `tool` (its version label).
fn assert_made_by(s: &Rig, tool: ComposeTool) {
    let versions = s.p.compose_versions();
    assert!(!versions.is_empty(), "the project has no container");
    for (name, version) in &versions {
        assert!(
            tool.made(version),
            "{name} carries com.docker.compose.version={version:?}, not {}'s: {versions:?}",
            tool.name()
        );
    }
}

/// `docker rollout app` to v2, which must be refused as bad input (exit 2) changing nothing:
/// the same containers in the same states, the same config, nothing kept. Returns its stderr
/// and its `error:` line.
fn refused_changing_nothing(s: &mut Rig, situation: &str) -> (String, String) {
    let containers = s.p.containers(None);
    let kept = keepers(s.p.name());
    s.p.set_env("APP_IMAGE", images::V2);
    let out = s.command(&[]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    eprintln!("docker rollout app, {situation}, said:\n{stderr}");
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    let error = stderr
        .lines()
        .find(|l| l.starts_with("error: "))
        .unwrap_or_else(|| panic!("no error line:\n{stderr}"))
        .to_string();
    assert_eq!(s.p.containers(None), containers);
    assert_eq!(s.p.read("nginx.conf"), SEED_NGINX_CONF);
    assert_eq!(keepers(s.p.name()), kept);
    (stderr, error)
}

#[test]
#[ignore = "needs docker: run with cargo xtask e2e"]
fn the_tool_that_made_the_project_rolls_it_out_and_up_leaves_it_alone() {
    let tool = ComposeTool::detect();
    let mut s = Rig::up(
        "tool-rollout",
        DemoStack::new(images::V1, 3),
        QUICK,
        &[images::V2],
    );
    assert_eq!(s.p.tool(), &tool);
    assert_made_by(&s, tool);
    let before = s.app();
    let load = load::standard(&s.p, Duration::from_secs(170));
    wait_ok(&load, 750, Duration::from_secs(30));
    s.p.set_env("APP_IMAGE", images::V2);
    let run = s.rollout(&load, &["--output", "json"]);
    assert_eq!(run.code, Some(0), "{}", run.transcript());
    assert_eq!(run.outcome_name(), "completed", "{}", run.transcript());
    let app = s.app();
    assert_eq!(app.len(), 3, "{app:#?}");
    let sep = tool.separator();
    let prefix = format!("{}{sep}app{sep}", s.p.name());
    for c in &app {
        assert_eq!(
            (c.image.as_str(), c.state.as_str()),
            (images::V2, "running")
        );
        assert!(
            c.name.starts_with(&prefix),
            "{} is not named as {} names containers ({prefix}N)",
            c.name,
            tool.name()
        );
    }
    assert_made_by(&s, tool);
    assert_eq!(s.p.read("nginx.conf"), SEED_NGINX_CONF);

    // Again: the service already runs what the file names.
    load.mark("again-start");
    let again = run_rollout(
        s.command(&["--output", "json"]),
        Clock::of(&load),
        ROLLOUT_TIMEOUT,
    );
    load.mark("again-end");
    assert_eq!(again.code, Some(0), "{}", again.transcript());
    assert_eq!(again.outcome_name(), "no-change", "{}", again.transcript());
    for name in ["instance-launched", "traffic-changed", "instance-stopped"] {
        assert!(again.named(name).is_empty(), "{}", again.transcript());
    }
    assert_eq!(s.app(), app);

    // `up -d` with the same tool creates and recreates nothing, under the load.
    load.mark("up-start");
    let up = s.p.compose(&["up", "-d"]);
    load.mark("up-end");
    let said = String::from_utf8_lossy(&up.stderr).into_owned();
    assert_eq!(creations(&said), Vec::<&str>::new(), "{said}");
    assert_eq!(
        ids(&s.app()),
        ids(&app),
        "{} up -d changed the containers:\n{said}",
        tool.name()
    );
    wait_ok(&load, 500, Duration::from_secs(30));
    let report = load.stop().unwrap();
    publish(
        SUITE,
        &format!("rollout-{}", tool.short()),
        &report,
        &[&run, &again],
    );
    assert_clean(&report);
    assert_answered_before_unrouted(&report, &run, &before);
    let after = report.window(report.mark("rollout-end").unwrap(), report.duration_s);
    assert_eq!(after.versions.keys().collect::<Vec<_>>(), ["v2"]);
    for (from, to) in [("again-start", "again-end"), ("up-start", "up-end")] {
        assert_eq!(report.between(from, to).unwrap().failed, 0, "{from}");
    }
    assert_eq!(rollout_leftovers(&s.p), Vec::<String>::new());
}

#[test]
#[ignore = "needs docker: run with cargo xtask e2e"]
fn a_project_made_by_a_tool_that_is_not_installed_is_refused() {
    let tool = ComposeTool::detect();
    let mut s = Rig::up(
        "tool-missing",
        DemoStack::new(images::V1, 2),
        QUICK,
        &[images::V2],
    );
    assert_made_by(&s, tool);
    s.plugins.hide(tool);
    if tool == ComposeTool::V2 {
        let out = s
            .plugins
            .docker()
            .args(["compose", "version"])
            .output()
            .unwrap();
        assert!(
            !out.status.success(),
            "docker compose still works with the plugin hidden"
        );
    }
    let (stderr, error) = refused_changing_nothing(&mut s, &format!("{} hidden", tool.name()));
    assert!(
        error.starts_with(&format!(
            "error: the running containers of project {} (",
            s.p.name()
        )),
        "{stderr}"
    );
    assert!(
        error.contains(&format!("({}), which is not installed here", tool.name())),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("\nhint: install {}", tool.name())),
        "{stderr}"
    );
    assert_made_by(&s, tool);
}

#[test]
#[ignore = "needs docker: run with cargo xtask e2e"]
fn a_project_made_by_both_tools_is_refused() {
    let tool = ComposeTool::detect();
    let other = match tool {
        ComposeTool::V1 => ComposeTool::V2,
        ComposeTool::V2 => ComposeTool::V1,
    };
    if !ComposeTool::works_or_is_not_expected(other) {
        // Only a machine with both tools can make such a project; CI has both (and this
        // passes here only when `cargo xtask e2e` found the machine without the other tool).
        eprintln!(
            "not run: {} is not installed, and this run expects it not to be",
            other.name()
        );
        return;
    }
    let mut s = Rig::up(
        "tool-both",
        DemoStack::new(images::V1, 2),
        QUICK,
        &[images::V2],
    );
    assert_made_by(&s, tool);
    // The other tool adds a third replica beside the first tool's two, recreating nothing.
    let added =
        s.p.compose_command_with(other)
            .args([
                "up",
                "-d",
                "--no-deps",
                "--no-recreate",
                "--scale",
                "app=3",
                "app",
            ])
            .output()
            .unwrap();
    assert!(
        added.status.success(),
        "{} up --scale app=3 failed:\n{}",
        other.name(),
        String::from_utf8_lossy(&added.stderr)
    );
    let versions = s.p.compose_versions();
    assert!(
        versions.iter().any(|(_, v)| tool.made(v)) && versions.iter().any(|(_, v)| other.made(v)),
        "the project is not made by both tools: {versions:?}"
    );
    let containers = s.p.containers(None);
    let (stderr, error) = refused_changing_nothing(&mut s, "project made by both tools");
    assert!(
        error.starts_with(&format!(
            "error: the running containers of project {} were made by both Compose tools: ",
            s.p.name()
        )),
        "{stderr}"
    );
    for c in &containers {
        assert!(error.contains(&c.name), "{} is not named: {stderr}", c.name);
    }
    assert!(
        stderr.contains("\nhint: bring the project under one tool first"),
        "{stderr}"
    );
}
