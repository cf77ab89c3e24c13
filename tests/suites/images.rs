//! Where the image a rollout goes to comes from (issue 11, items 4 and 5): pulled from a real
//! registry (Debian's distribution 2.8 on a loopback port) before the target revision is
//! formed, with `--pull always`; a pull that cannot be done (an unknown tag, a registry that is
//! down) refused with the image and registry named, exit 2 or 6, nothing changed; and a service
//! with `build:` and no `image:` rolled out to the image its Compose tool built for it, after
//! `compose build app` or with `--build`.
//!
//! Under the same load as every rollout test (250 requests per second through nginx, slow
//! GETs, POSTs, keep-alive and new connections; the app exiting at once on SIGTERM), through
//! the real docker CLI.

use rollout_e2e::keepers::rollout_leftovers;
use rollout_e2e::load::{self, wait_ok};
use rollout_e2e::verdict::{assert_answered_before_unrouted, assert_clean, publish};
use rollout_e2e::{
    docker, image_id, images, require_engine, require_images, run_ok, Container, DemoStack,
    Project, Registry, Rig,
};
use std::collections::BTreeSet;
use std::time::Duration;

/// The name the reports of this suite carry.
const SUITE: &str = "images";

const QUICK: &str = "services:\n  app:\n    deploy:\n      update_config:\n        parallelism: 1\n        order: start-first\n        failure_action: rollback\n        monitor: 1s\n      rollback_config:\n        parallelism: 1\n        monitor: 1s\n";

fn ids(containers: &[Container]) -> BTreeSet<String> {
    containers.iter().map(|c| c.id.clone()).collect()
}

/// The image id each container runs, with its state.
fn running_images(containers: &[Container]) -> Vec<(String, String)> {
    containers
        .iter()
        .map(|c| {
            let out =
                run_ok(docker().args(["container", "inspect", "--format", "{{.Image}}", &c.id]));
            (
                c.state.clone(),
                String::from_utf8_lossy(&out.stdout).trim().to_string(),
            )
        })
        .collect()
}

/// Item 4: v1 pushed to the registry as `127.0.0.1:PORT/app:latest` serves; v2 is pushed
/// under the same tag, and the engine's tag is put back on v1 (so only the registry has v2
/// under that name). `docker rollout app` with the default policy (`missing`: the engine has
/// an image under the tag) pulls nothing and changes nothing; `--pull always` pulls v2 (its
/// progress in `image-pull` events naming the registry) and rolls it out under load with no
/// failed request, every answer afterwards from v2.
#[test]
#[ignore = "needs docker: run with cargo xtask e2e"]
fn a_new_image_pushed_under_the_running_tag_is_pulled_and_rolled_out() {
    require_engine();
    require_images(&[images::V1, images::V2]);
    let (v1, v2) = (image_id(images::V1), image_id(images::V2));
    let mut registry = Registry::start();
    let latest = registry.reference("app:latest");
    registry.push(images::V1, &latest);
    let s = Rig::up("pull", DemoStack::new(&latest, 3), QUICK, &[]);
    let before = s.app();
    let load = load::standard(&s.p, Duration::from_secs(170));
    wait_ok(&load, 750, Duration::from_secs(30));
    registry.push(images::V2, &latest);
    registry.tag(images::V1, &latest);
    assert_eq!(image_id(&latest), v1);

    let missing = s.rollout(&load, &["--output", "json"]);
    assert_eq!(missing.code, Some(0), "{}", missing.transcript());
    assert_eq!(missing.outcome_name(), "no-change", "{}", missing.stderr);
    assert!(
        missing.named("image-pull").is_empty(),
        "{}",
        missing.transcript()
    );
    assert_eq!(ids(&s.app()), ids(&before));

    let run = s.rollout(&load, &["--pull", "always", "--output", "json"]);
    load.mark("pulled-end");
    assert_eq!(run.code, Some(0), "{}\n{}", run.transcript(), run.stderr);
    assert_eq!(run.outcome_name(), "completed", "{}", run.transcript());
    let pulls = run.named("image-pull");
    assert!(!pulls.is_empty(), "{}", run.transcript());
    for p in &pulls {
        assert_eq!(p.json["image"], latest.as_str(), "{}", p.json);
        assert_eq!(p.json["registry"], registry.host().as_str(), "{}", p.json);
    }
    let first_pull = pulls[0].at;
    let started = run.named("rollout-started");
    assert!(
        started.len() == 1 && started[0].at >= first_pull,
        "the pull comes before the rollout: {}",
        run.transcript()
    );
    assert_eq!(
        started[0].json["to"]["image_id"],
        v2.as_str(),
        "{}",
        run.transcript()
    );
    assert_eq!(image_id(&latest), v2);
    let app = s.app();
    assert_eq!(app.len(), 3, "{app:#?}");
    assert!(ids(&app).is_disjoint(&ids(&before)), "{app:#?}");
    for (state, image) in running_images(&app) {
        assert_eq!((state.as_str(), image.as_str()), ("running", v2.as_str()));
    }
    wait_ok(&load, 500, Duration::from_secs(30));
    let report = load.stop().unwrap();
    publish(SUITE, "pull-always", &report, &[&missing, &run]);
    assert_clean(&report);
    assert_answered_before_unrouted(&report, &run, &before);
    let after = report.window(report.mark("pulled-end").unwrap(), report.duration_s);
    assert_eq!(after.versions.keys().collect::<Vec<_>>(), ["v2"]);
    assert_eq!(rollout_leftovers(&s.p), Vec::<String>::new());
}

/// Item 4: a pull that cannot be done changes nothing. An unknown tag in a registry that
/// answers: exit 2, naming the image and the registry; the same registry down: exit 6, naming
/// them. The same containers run, and nginx.conf is byte for byte what it was.
#[test]
#[ignore = "needs docker: run with cargo xtask e2e"]
fn a_pull_that_cannot_be_done_changes_nothing() {
    require_engine();
    require_images(&[images::V1]);
    let mut registry = Registry::start();
    let latest = registry.reference("app:latest");
    registry.push(images::V1, &latest);
    let mut s = Rig::up("pull-bad", DemoStack::new(&latest, 2), QUICK, &[]);
    let before = s.app();
    let conf = s.p.read("nginx.conf");
    let host = registry.host();

    let unknown = registry.reference("app:no-such-tag");
    s.p.set_env("APP_IMAGE", &unknown);
    let out = s.command(&["--pull", "always"]).output().unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{said}");
    assert!(
        said.contains(&format!("no image {unknown} in the registry {host}")),
        "{said}"
    );
    assert_eq!(ids(&s.app()), ids(&before));
    assert_eq!(s.p.read("nginx.conf"), conf);

    registry.stop();
    s.p.set_env("APP_IMAGE", &latest);
    let out = s.command(&["--pull", "always"]).output().unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(6), "{said}");
    assert!(
        said.contains(&format!(
            "the registry {host} cannot be reached to pull {latest}"
        )),
        "{said}"
    );
    assert_eq!(ids(&s.app()), ids(&before));
    for c in s.app() {
        assert_eq!(c.state, "running", "{c:?}");
    }
    assert_eq!(s.p.read("nginx.conf"), conf);
    assert_eq!(rollout_leftovers(&s.p), Vec::<String>::new());
}

/// The image a test's Compose tool builds for the project's app; removed when dropped.
struct Built(String);

impl Drop for Built {
    fn drop(&mut self) {
        let _ = docker().args(["image", "rm", &self.0]).output();
    }
}

/// A build context in the project's folder `app/`: the demo app binary (taken out of the v1
/// image, so nothing is pulled or compiled) in a scratch image that answers as `version`.
fn write_context(p: &Project, version: &str) {
    let dir = p.dir().join("app");
    std::fs::create_dir_all(&dir).unwrap();
    if !dir.join("demo-app").exists() {
        let out = run_ok(docker().args(["create", images::V1]));
        let id = String::from_utf8_lossy(&out.stdout).trim().to_string();
        let copied = docker()
            .args(["cp", &format!("{id}:/demo-app")])
            .arg(dir.join("demo-app"))
            .output();
        let _ = docker().args(["rm", &id]).output();
        assert!(
            copied.unwrap().status.success(),
            "cannot copy the demo app out of v1"
        );
    }
    p.write(
        "app/Dockerfile",
        &format!(
            "FROM scratch\nCOPY demo-app /demo-app\nENV DEMO_PORT=8000 DEMO_ON_SIGTERM=exit DEMO_VERSION={version}\nLABEL io.rollout.test={project}\nEXPOSE 8000\nHEALTHCHECK --interval=1s --timeout=2s --start-period=60s --retries=3 CMD [\"/demo-app\", \"healthcheck\"]\nENTRYPOINT [\"/demo-app\"]\n",
            project = p.name()
        ),
    );
}

/// Item 5: a service with `build:` and no `image:` (the image its Compose tool builds for it,
/// `<project>-app` under v2, `<project>_app` under v1). The context changes to `b2`;
/// `compose build app` then `docker rollout app` rolls the new build out under load; the
/// context changes to `b3` and `docker rollout app --build` builds it first and rolls it out.
/// No failed request; every answer after each rollout from its build.
#[test]
#[ignore = "needs docker: run with cargo xtask e2e"]
fn a_build_only_service_is_rolled_out_to_the_image_compose_built() {
    require_engine();
    require_images(&[images::V1]);
    let p = Project::new("built");
    let built = Built(format!("{}{}app", p.name(), p.tool().separator()));
    write_context(&p, "b1");
    let s = Rig::up_in(p, DemoStack::built("app", 3), QUICK, &[]);
    let b1 = image_id(&built.0);
    let first = s.app();
    let load = load::standard(&s.p, Duration::from_secs(170));
    wait_ok(&load, 750, Duration::from_secs(30));

    write_context(&s.p, "b2");
    s.p.compose(&["build", "app"]);
    let b2 = image_id(&built.0);
    assert_ne!(b1, b2);
    let run = s.rollout(&load, &["--output", "json"]);
    load.mark("b2-end");
    assert_eq!(run.code, Some(0), "{}\n{}", run.transcript(), run.stderr);
    assert_eq!(run.outcome_name(), "completed", "{}", run.transcript());
    assert!(run.named("image-pull").is_empty(), "{}", run.transcript());
    let second = s.app();
    assert!(ids(&second).is_disjoint(&ids(&first)), "{second:#?}");
    for (state, image) in running_images(&second) {
        assert_eq!((state.as_str(), image.as_str()), ("running", b2.as_str()));
    }

    write_context(&s.p, "b3");
    load.mark("b3-start");
    let build = s.rollout(&load, &["--build", "--output", "json"]);
    load.mark("b3-end");
    assert_eq!(
        build.code,
        Some(0),
        "{}\n{}",
        build.transcript(),
        build.stderr
    );
    assert_eq!(build.outcome_name(), "completed", "{}", build.transcript());
    assert!(
        build.stderr.contains(&format!("building {}", built.0)),
        "{}",
        build.stderr
    );
    let b3 = image_id(&built.0);
    assert!(b3 != b2 && b3 != b1);
    let third = s.app();
    assert_eq!(third.len(), 3, "{third:#?}");
    for (state, image) in running_images(&third) {
        assert_eq!((state.as_str(), image.as_str()), ("running", b3.as_str()));
    }
    wait_ok(&load, 500, Duration::from_secs(30));
    let report = load.stop().unwrap();
    publish(SUITE, "build-only", &report, &[&run, &build]);
    assert_clean(&report);
    assert_answered_before_unrouted(&report, &run, &first);
    assert_answered_before_unrouted(&report, &build, &second);
    let between = report.window(
        report.mark("b2-end").unwrap(),
        report.mark("b3-start").unwrap(),
    );
    assert_eq!(between.versions.keys().collect::<Vec<_>>(), ["b2"]);
    let after = report.window(report.mark("b3-end").unwrap(), report.duration_s);
    assert_eq!(after.versions.keys().collect::<Vec<_>>(), ["b3"]);
    // The tool's own `up -d` finds the project as it would have made it.
    s.p.compose(&["up", "-d"]);
    assert_eq!(ids(&s.app()), ids(&third));
    assert_eq!(rollout_leftovers(&s.p), Vec::<String>::new());
}
