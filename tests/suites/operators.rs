//! What operators expect (DESIGN.md): the Compose project stays coherent after a rollout
//! (`ps`, `up -d`, `down`, `down` then `up`); a second rollout of a service that is being
//! rolled out is refused with who holds it and since when; a rollout to the revision
//! already serving changes nothing (not even nginx's processes), and a new image under the
//! tag already serving is rolled out (its post hook and webhook hearing it), then nothing
//! changes; a service with host ports
//! falls back to stop-first with a warning, or is refused where that would leave nothing
//! serving.
//!
//! Under the same load as every rollout test (250 requests per second through nginx, slow
//! GETs, POSTs, keep-alive and new connections; the app exiting at once on SIGTERM), through
//! the real docker CLI.

use rollout_e2e::keepers::{keepers, rollout_leftovers};
use rollout_e2e::load::{self, wait_ok};
use rollout_e2e::nginx::nginx_procs;
use rollout_e2e::verdict::{assert_answered_before_unrouted, assert_clean, publish};
use rollout_e2e::{
    docker, free_port, image_id, images, require_images, run_ok, run_rollout, wait_http, Clock,
    DemoStack, Project, Rig, Tag, ROLLOUT_TIMEOUT, SEED_NGINX_CONF,
};
use std::collections::BTreeSet;
use std::time::Duration;

/// The name the reports of this suite carry.
const SUITE: &str = "operators";

const QUICK: &str = "services:\n  app:\n    deploy:\n      update_config:\n        parallelism: 1\n        order: start-first\n        failure_action: rollback\n        monitor: 1s\n      rollback_config:\n        parallelism: 1\n        monitor: 1s\n";

fn ids(containers: &[rollout_e2e::Container]) -> BTreeSet<String> {
    containers.iter().map(|c| c.id.clone()).collect()
}

/// The app's running container ids as the Compose tool lists them (`ps -q app`).
fn compose_ps_ids(p: &Project) -> BTreeSet<String> {
    let out = p.compose(&["ps", "-q", "app"]);
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(String::from)
        .collect()
}

/// Item 7: after a rollout to v2, `docker-compose ps` lists the new containers, `up -d`
/// leaves them as they are (same ids, under load, nothing failed), `down` removes
/// everything, and `down` then `up` brings the project back with nginx serving v2.
#[test]
#[ignore = "needs docker: run with cargo xtask e2e"]
fn compose_stays_coherent_after_a_rollout() {
    let mut s = Rig::up(
        "coherent",
        DemoStack::new(images::V1, 3),
        QUICK,
        &[images::V2],
    );
    let before = s.app();
    let load = load::standard(&s.p, Duration::from_secs(170));
    wait_ok(&load, 750, Duration::from_secs(30));
    s.p.set_env("APP_IMAGE", images::V2);
    let run = s.rollout(&load, &["--output", "json"]);
    assert_eq!(run.code, Some(0), "{}", run.transcript());
    assert_eq!(run.outcome_name(), "completed");
    let app = s.app();
    assert_eq!(app.len(), 3, "{app:#?}");
    assert!(app
        .iter()
        .all(|c| c.image == images::V2 && c.state == "running"));
    // `ps` lists exactly the new containers under the service.
    assert_eq!(compose_ps_ids(&s.p), ids(&app));
    let listed = String::from_utf8_lossy(&s.p.compose(&["ps", "app"]).stdout).into_owned();
    for c in &app {
        assert!(listed.contains(&c.name), "{} not in ps:\n{listed}", c.name);
    }
    assert_eq!(s.p.read("nginx.conf"), SEED_NGINX_CONF);
    // `up -d` recreates nothing, under the load.
    load.mark("up-start");
    let up = s.p.compose(&["up", "-d"]);
    load.mark("up-end");
    let said = String::from_utf8_lossy(&up.stderr).into_owned();
    assert_eq!(rollout_e2e::creations(&said), Vec::<&str>::new(), "{said}");
    assert_eq!(
        ids(&s.app()),
        ids(&app),
        "up -d changed the containers:\n{said}"
    );
    wait_ok(&load, 500, Duration::from_secs(30));
    let report = load.stop().unwrap();
    publish(SUITE, "coherent", &report, &[&run]);
    assert_clean(&report);
    assert_answered_before_unrouted(&report, &run, &before);
    let after = report.window(report.mark("rollout-end").unwrap(), report.duration_s);
    assert_eq!(after.versions.keys().collect::<Vec<_>>(), ["v2"]);
    assert_eq!(report.between("up-start", "up-end").unwrap().failed, 0);
    // `down` removes every container of the project, the rollout's included; what the
    // rollout keeps outside Compose is only never-started records of revisions.
    s.p.down();
    assert_eq!(s.p.containers(None), Vec::new());
    assert_eq!(Project::leftovers(s.p.name()), Vec::<String>::new());
    assert_eq!(rollout_leftovers(&s.p), Vec::<String>::new());
    let keepers = keepers(s.p.name());
    eprintln!("after down, the rollout keeps: {keepers:?}");
    assert!(
        keepers
            .iter()
            .all(|k| k.kind == "revision" && k.state == "created"),
        "{keepers:?}"
    );
    // `down` then `up`: the project comes back on v2 with nginx serving it.
    s.p.up();
    s.p.wait_healthy("app", 3, Duration::from_secs(60));
    let answer = wait_http(s.p.port("nginx", 80), "/", Duration::from_secs(30), |a| {
        a.status == 200
    });
    assert_eq!(answer.version.as_deref(), Some("v2"));
    assert_eq!(s.p.running_images("app"), [images::V2; 3]);
}

/// Item 8: a second rollout of the service while one runs is refused, naming the holder
/// and since when, and changes nothing; the first goes on to the end.
#[test]
#[ignore = "needs docker: run with cargo xtask e2e"]
fn a_second_concurrent_rollout_is_refused_with_holder_and_since() {
    let slow = QUICK.replace(
        "        parallelism: 1\n        order: start-first",
        "        parallelism: 1\n        delay: 2s\n        order: start-first",
    );
    let mut s = Rig::up(
        "concurrent",
        DemoStack::new(images::V1, 3),
        &slow,
        &[images::V2],
    );
    let before = s.app();
    let load = load::standard(&s.p, Duration::from_secs(170));
    wait_ok(&load, 750, Duration::from_secs(30));
    s.p.set_env("APP_IMAGE", images::V2);
    load.mark("rollout-start");
    let mut first = s.spawn(&load, &["--output", "json"]);
    first.wait_event("instance-launched", Duration::from_secs(60));
    // The plugin runs as a child of the docker CLI (forked by any of its threads): the
    // holder must name that process.
    let cli = first.cli_pid();
    let plugin_pids: Vec<String> = std::fs::read_dir(format!("/proc/{cli}/task"))
        .map(|tasks| {
            tasks
                .filter_map(Result::ok)
                .filter_map(|t| std::fs::read_to_string(t.path().join("children")).ok())
                .flat_map(|c| c.split_whitespace().map(String::from).collect::<Vec<_>>())
                .collect()
        })
        .unwrap_or_default();
    let second = run_rollout(
        s.command(&["--output", "json"]),
        Clock::of(&load),
        Duration::from_secs(60),
    );
    let first = first.wait_since_start(ROLLOUT_TIMEOUT);
    load.mark("rollout-end");
    wait_ok(&load, 500, Duration::from_secs(30));
    let report = load.stop().unwrap();
    publish(SUITE, "concurrent", &report, &[&first, &second]);
    assert_clean(&report);
    assert_answered_before_unrouted(&report, &first, &before);
    // The second: refused, with who and since when, having touched nothing.
    // Busy: exit 7, nothing changed (DESIGN.md).
    assert_eq!(second.code, Some(7), "{}", second.transcript());
    assert_eq!(second.outcome_name(), "busy");
    let why = second.named("finished")[0].json["outcome"]["detail"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        why.contains(&format!(
            "a rollout of {}/app is already running: held by ",
            s.p.name()
        )),
        "{why}"
    );
    let holder_and_since = why.split("held by ").nth(1).unwrap();
    let (holder, since) = holder_and_since
        .split_once(" since ")
        .unwrap_or_else(|| panic!("no since: {why}"));
    assert!(
        holder.contains('@') && holder.contains(" pid "),
        "holder {holder:?}"
    );
    // `USER@HOST pid N started T boot B`.
    let holder_pid = holder
        .split(" pid ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .unwrap_or_else(|| panic!("no pid in holder {holder:?}"));
    assert!(
        plugin_pids.iter().any(|p| p == holder_pid),
        "the holder {holder:?} is not the first rollout's plugin process ({plugin_pids:?})"
    );
    let since = since.lines().next().unwrap();
    let b = since.as_bytes();
    assert!(
        b.len() >= 20 && b[4] == b'-' && b[10] == b'T' && b[13] == b':',
        "since is not a time: {since:?}"
    );
    assert!(why.contains("\nhint: "), "{why}");
    for name in ["rollout-started", "instance-launched", "traffic-changed"] {
        assert!(
            second.named(name).is_empty(),
            "the refused run did {name}:\n{}",
            second.transcript()
        );
    }
    // The first went on to the end.
    assert_eq!(first.code, Some(0), "{}", first.transcript());
    assert_eq!(first.outcome_name(), "completed");
    assert_eq!(s.p.running_images("app"), [images::V2; 3]);
    assert_eq!(s.app().len(), 3);
    assert_eq!(s.p.read("nginx.conf"), SEED_NGINX_CONF);
    assert_eq!(rollout_leftovers(&s.p), Vec::<String>::new());
}

/// Item 8: a rollout to the revision already serving is a no-op: exit 0, same containers,
/// the nginx config byte for byte, nginx's master and workers the same processes (no
/// reload, which would close keep-alive connections: no stale retry either).
#[test]
#[ignore = "needs docker: run with cargo xtask e2e"]
fn a_rollout_to_the_serving_revision_changes_nothing() {
    let s = Rig::up("noop", DemoStack::new(images::V1, 3), QUICK, &[]);
    let nginx = s.p.running("nginx");
    let procs_before = nginx_procs(&nginx.id);
    assert!(procs_before.master.is_some() && procs_before.workers.len() == 2);
    let before = s.app();
    let conf_before = s.p.read("nginx.conf");
    let load = load::standard(&s.p, Duration::from_secs(170));
    wait_ok(&load, 750, Duration::from_secs(30));
    let run = s.rollout(&load, &["--output", "json"]);
    wait_ok(&load, 500, Duration::from_secs(30));
    let report = load.stop().unwrap();
    publish(SUITE, "noop", &report, &[&run]);
    assert_clean(&report);
    assert_eq!(run.code, Some(0), "{}", run.transcript());
    assert_eq!(run.outcome_name(), "no-change", "{}", run.transcript());
    for name in ["instance-launched", "traffic-changed", "instance-stopped"] {
        assert!(run.named(name).is_empty(), "{}", run.transcript());
    }
    assert_eq!(s.app(), before);
    assert_eq!(s.p.read("nginx.conf"), conf_before);
    assert_eq!(nginx_procs(&nginx.id), procs_before, "nginx was reloaded");
    assert_eq!(
        report.stale_retries, 0,
        "keep-alive connections were closed"
    );
    assert_eq!(report.versions.keys().collect::<Vec<_>>(), ["v1"]);
    assert_eq!(rollout_leftovers(&s.p), Vec::<String>::new());
}

/// Issue 11, item 3: a new image under the tag the Compose file names is a new revision
/// (what `docker compose up -d` would recreate for, under either Compose tool: v2's config
/// hash covers the reference only). v1 tagged `rollout-demo:latest` serves; the tag moves
/// to v2 (as a `build` or `pull` would move it); `docker rollout app` under load rolls it
/// out with no failed request, every answer afterwards from v2, the events naming the tag
/// and both image ids; run again, it is a no-op that says so in those words.
#[test]
#[ignore = "needs docker: run with cargo xtask e2e"]
fn a_new_image_under_the_same_tag_is_rolled_out_then_a_second_run_is_a_no_op() {
    require_images(&[images::V1, images::V2]);
    let (v1, v2) = (image_id(images::V1), image_id(images::V2));
    assert_ne!(v1, v2);
    let latest = Tag::point("rollout-demo:latest", images::V1);
    let s = Rig::up("same-tag", DemoStack::new(latest.name(), 3), QUICK, &[]);
    let before = s.app();
    let load = load::standard(&s.p, Duration::from_secs(170));
    wait_ok(&load, 750, Duration::from_secs(30));
    latest.move_to(images::V2);
    // Issue 14, item 4: a post hook and the webhook hear the rollout (a receiver on loopback).
    s.p.write("hooks/post.sh", "cat > post.json\n");
    let (port, bodies) = webhook_receiver();
    let webhook = format!("http://127.0.0.1:{port}/rollout/T0K3N");
    let run = s.rollout(
        &load,
        &[
            "--output",
            "json",
            "--hook-post",
            "sh hooks/post.sh",
            "--webhook",
            &webhook,
        ],
    );
    load.mark("first-end");
    assert_eq!(run.code, Some(0), "{}", run.transcript());
    assert_eq!(run.outcome_name(), "completed", "{}", run.transcript());
    assert!(
        run.stderr.contains("note: post hook \"sh\" exited 0"),
        "{}",
        run.stderr
    );
    let post: serde_json::Value = serde_json::from_str(&s.p.read("post.json")).unwrap();
    assert_eq!(post["hook"], "post");
    assert_eq!(post["outcome"]["outcome"], "completed");
    assert_eq!(post["event"]["event"], "finished");
    assert_eq!(post["from"]["image_id"], v1.as_str(), "{post}");
    assert_eq!(post["to"]["image_id"], v2.as_str(), "{post}");
    let heard: Vec<serde_json::Value> = bodies
        .lock()
        .unwrap()
        .iter()
        .map(|b| serde_json::from_str(b).unwrap())
        .collect();
    assert_eq!(heard.len(), 2, "{heard:?}");
    assert_eq!(
        (&heard[0]["hook"], &heard[1]["hook"]),
        (&"pre".into(), &"post".into())
    );
    let text = heard[1]["text"].as_str().unwrap();
    let said = format!("{}/app: rolled out rollout-demo:latest in ", s.p.name());
    assert!(text.starts_with(&said), "{text}");
    assert!(!run.stderr.contains("T0K3N"), "{}", run.stderr);
    let started = run
        .events
        .iter()
        .find_map(|e| match &e.event {
            rollout_core::Event::RolloutStarted { from, to, .. } => {
                Some((from.clone(), to.clone()))
            }
            _ => None,
        })
        .expect("a rollout-started event");
    let (from, to) = (started.0.expect("a revision it started from"), started.1);
    assert_eq!(
        (to.image.as_str(), to.image_id.as_deref()),
        (latest.name(), Some(v2.as_str()))
    );
    assert_eq!(
        (from.image.as_str(), from.image_id.as_deref()),
        (latest.name(), Some(v1.as_str()))
    );
    assert_ne!(from.id, to.id);
    assert_eq!(
        run.summary_object()["to"]["image_id"],
        v2.as_str(),
        "{}",
        run.transcript()
    );
    let app = s.app();
    assert_eq!(app.len(), 3, "{app:#?}");
    assert!(ids(&app).is_disjoint(&ids(&before)), "{app:#?}");
    for c in &app {
        let runs = run_ok(docker().args(["container", "inspect", "--format", "{{.Image}}", &c.id]));
        let runs = String::from_utf8_lossy(&runs.stdout).trim().to_string();
        assert_eq!((c.state.as_str(), runs), ("running", v2.clone()), "{c:?}");
    }
    let unrouted: BTreeSet<String> = run.unrouted().into_iter().map(|(h, _)| h).collect();
    let old_names: BTreeSet<String> = before.iter().map(|c| c.name.clone()).collect();
    assert!(old_names.is_subset(&unrouted), "{unrouted:?}");
    // Run again: the same image under the same tag is the revision serving.
    let again = s.rollout(&load, &[]);
    assert_eq!(again.code, Some(0), "{}", again.stderr);
    let short = &v2["sha256:".len().."sha256:".len() + 12];
    assert!(
        again.stderr.contains(&format!(
            "nothing to do: {}/app already runs rollout-demo:latest (sha256:{short}…)",
            s.p.name()
        )),
        "{}",
        again.stderr
    );
    assert_eq!(s.app(), app);
    wait_ok(&load, 500, Duration::from_secs(30));
    let report = load.stop().unwrap();
    publish(SUITE, "same-tag", &report, &[&run, &again]);
    assert_clean(&report);
    assert_answered_before_unrouted(&report, &run, &before);
    let after = report.window(report.mark("first-end").unwrap(), report.duration_s);
    assert_eq!(after.versions.keys().collect::<Vec<_>>(), ["v2"]);
    assert_eq!(rollout_leftovers(&s.p), Vec::<String>::new());
}

/// A webhook receiver on 127.0.0.1 (a thread answering 204): its port, and the bodies of
/// the POSTs it got, in order.
fn webhook_receiver() -> (u16, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let bodies = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = bodies.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { return };
            let mut data = Vec::new();
            let mut buf = [0u8; 4096];
            let body = loop {
                let n = conn.read(&mut buf).unwrap_or(0);
                data.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&data).to_string();
                if let Some((head, body)) = text.split_once("\r\n\r\n") {
                    let len: usize = head
                        .lines()
                        .find_map(|l| l.strip_prefix("Content-Length: "))
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(0);
                    if body.len() >= len {
                        assert!(head.starts_with("POST /rollout/T0K3N HTTP/1.1"), "{head}");
                        break body.to_string();
                    }
                }
                if n == 0 {
                    break String::new();
                }
            };
            log.lock().unwrap().push(body);
            let _ = conn.write_all(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n");
        }
    });
    (port, bodies)
}

/// A stack whose app publishes `ports` on the host.
fn with_ports(replicas: u32, ports: &str) -> DemoStack {
    let mut d = DemoStack::new(images::V1, replicas);
    d.app_extra = format!("    ports:\n      - \"{ports}\"\n");
    d
}

/// Item 8: with host ports, old and new instances cannot run side by side: the rollout
/// (asked for start-first) warns and goes stop-first: each old instance is unrouted,
/// drained and removed before its replacement starts; nothing fails.
#[test]
#[ignore = "needs docker: run with cargo xtask e2e"]
fn host_ports_fall_back_to_stop_first_with_a_warning() {
    let base = free_port();
    let range = format!("127.0.0.1:{base}-{}:8000", base + 3);
    let mut s = Rig::up("host-ports", with_ports(2, &range), QUICK, &[images::V2]);
    let before = s.app();
    let load = load::standard(&s.p, Duration::from_secs(170));
    wait_ok(&load, 750, Duration::from_secs(30));
    s.p.set_env("APP_IMAGE", images::V2);
    let run = s.rollout(&load, &["--output", "json"]);
    wait_ok(&load, 500, Duration::from_secs(30));
    let report = load.stop().unwrap();
    publish(SUITE, "host-ports", &report, &[&run]);
    assert_clean(&report);
    assert_answered_before_unrouted(&report, &run, &before);
    assert_eq!(run.code, Some(0), "{}", run.transcript());
    let warning = run
        .stderr
        .lines()
        .find(|l| l.starts_with("warning: "))
        .unwrap_or_else(|| panic!("no warning:\n{}", run.stderr));
    assert!(
        warning.contains("cannot run old and new instances side by side")
            && warning.contains("host port")
            && warning.contains("falling back to stop-first"),
        "{warning}"
    );
    // Stop-first: every launch comes after an old instance was removed, and the service
    // never ran more instances than asked.
    let removed: Vec<f64> = run
        .named("instance-removed")
        .iter()
        .filter(|e| before.iter().any(|c| e.json["instance"] == c.id.as_str()))
        .map(|e| e.at)
        .collect();
    let launched: Vec<f64> = run
        .named("instance-launched")
        .iter()
        .map(|e| e.at)
        .collect();
    assert_eq!(removed.len(), 2, "{}", run.transcript());
    assert_eq!(launched.len(), 2, "{}", run.transcript());
    for (k, t) in launched.iter().enumerate() {
        assert!(
            removed[k] <= *t,
            "launch {k} before the removal of an old instance\n{}",
            run.transcript()
        );
    }
    assert_eq!(s.p.running_images("app"), [images::V2; 2]);
    assert_eq!(s.app().len(), 2);
    assert_eq!(s.p.read("nginx.conf"), SEED_NGINX_CONF);
    assert_eq!(rollout_leftovers(&s.p), Vec::<String>::new());
}

/// Item 8: one replica with a fixed host port: stop-first would leave nothing serving, so
/// the rollout is refused (exit 2) and nothing changes: containers, the nginx config byte
/// for byte, nginx's processes.
#[test]
#[ignore = "needs docker: run with cargo xtask e2e"]
fn a_single_replica_with_a_host_port_is_refused() {
    let port = format!("127.0.0.1:{}:8000", free_port());
    let mut s = Rig::up("host-port-one", with_ports(1, &port), QUICK, &[images::V2]);
    let nginx = s.p.running("nginx");
    let procs_before = nginx_procs(&nginx.id);
    let before = s.app();
    let load = load::standard(&s.p, Duration::from_secs(170));
    wait_ok(&load, 750, Duration::from_secs(30));
    s.p.set_env("APP_IMAGE", images::V2);
    let run = s.rollout(&load, &["--output", "json"]);
    wait_ok(&load, 500, Duration::from_secs(30));
    let report = load.stop().unwrap();
    publish(SUITE, "host-port-one", &report, &[&run]);
    assert_clean(&report);
    assert_eq!(run.code, Some(2), "{}", run.transcript());
    assert!(
        run.stderr
            .contains("cannot run old and new instances side by side")
            && run.stderr.contains("would leave none serving")
            && run.stderr.contains("\nhint: "),
        "{}",
        run.stderr
    );
    assert_eq!(run.summary_object()["exit_code"], 2);
    assert_eq!(s.app(), before);
    assert_eq!(s.p.read("nginx.conf"), SEED_NGINX_CONF);
    assert_eq!(nginx_procs(&nginx.id), procs_before, "nginx was reloaded");
    assert_eq!(report.versions.keys().collect::<Vec<_>>(), ["v1"]);
    assert!(keepers(s.p.name()).is_empty());
}

/// `docker inspect -f FORMAT ID`, trimmed.
fn inspect(id: &str, format: &str) -> String {
    let out = run_ok(docker().args(["inspect", "-f", format, id]));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Issue 12, item 6: nothing removed that the tool did not create. The app at 2 replicas in
/// the file, scaled to 3 by hand, and the third killed: an operator's crashed container, kept
/// for a post-mortem. A rollout to v2 under load leaves it as it was (the same container,
/// exited, never started again: `up --scale` would start it, both tools do), names it once
/// in its progress output, and replaces the 2 running ones with 2 that carry the tool's
/// label; nothing fails.
#[test]
#[ignore = "needs docker: run with cargo xtask e2e"]
fn an_operators_exited_container_is_left_alone_by_a_rollout() {
    let mut s = Rig::up(
        "postmortem",
        DemoStack::new(images::V1, 2),
        QUICK,
        &[images::V2],
    );
    s.p.compose(&[
        "up",
        "-d",
        "--no-deps",
        "--no-recreate",
        "--scale",
        "app=3",
        "app",
    ]);
    s.p.wait_healthy("app", 3, Duration::from_secs(60));
    let sep = s.p.tool().separator();
    let crashed = format!("{}{sep}app{sep}3", s.p.name());
    run_ok(docker().args(["kill", &crashed]));
    let crashed_id = inspect(&crashed, "{{.Id}}");
    let started = inspect(&crashed, "{{.State.StartedAt}}");
    assert_eq!(inspect(&crashed, "{{.State.Status}}"), "exited");
    let before = s.app();
    let load = load::standard(&s.p, Duration::from_secs(170));
    wait_ok(&load, 750, Duration::from_secs(30));
    s.p.set_env("APP_IMAGE", images::V2);
    let run = s.rollout(&load, &["--output", "json"]);
    wait_ok(&load, 500, Duration::from_secs(30));
    let report = load.stop().unwrap();
    publish(SUITE, "postmortem", &report, &[&run]);
    assert_eq!(run.code, Some(0), "{}\n{}", run.stderr, run.transcript());
    assert_eq!(run.outcome_name(), "completed");
    assert_clean(&report);
    // Named once, and nothing else of it shown.
    let said = format!("note: {crashed} (service app): left alone: not launched by rollout");
    assert_eq!(run.stderr.matches(&said).count(), 1, "{}", run.stderr);
    assert_eq!(run.stderr.matches(&crashed).count(), 1, "{}", run.stderr);
    // Left as it was.
    assert_eq!(inspect(&crashed, "{{.Id}}"), crashed_id);
    assert_eq!(inspect(&crashed, "{{.State.Status}}"), "exited");
    assert_eq!(inspect(&crashed, "{{.State.StartedAt}}"), started);
    // The 2 of the file replaced, by 2 of the tool's own.
    let app = s.app();
    let running: Vec<_> = app.iter().filter(|c| c.state == "running").collect();
    assert_eq!(running.len(), 2, "{app:#?}");
    for c in &running {
        assert_eq!(c.image, images::V2);
        assert!(
            before.iter().all(|b| b.id != c.id),
            "{c:?} was not replaced"
        );
        assert_eq!(
            inspect(&c.id, "{{index .Config.Labels \"io.rollout.launched\"}}"),
            "true",
            "{c:?}"
        );
    }
    assert_eq!(app.len(), 3, "{app:#?}");
    let after = report.window(report.mark("rollout-end").unwrap(), report.duration_s);
    assert_eq!(after.versions.keys().collect::<Vec<_>>(), ["v2"]);
}
