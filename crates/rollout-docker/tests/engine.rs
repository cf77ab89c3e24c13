//! The Docker backend and journal against the real engine and docker-compose.
//!
//! Each test brings up its own Compose project (labelled, removed when the
//! test ends, also on panic). Run with `cargo xtask e2e`, or
//! `cargo test -p rollout-docker --test engine -- --ignored`.

mod common;

use common::Project;
use rollout_core::backend::Failure;
use rollout_core::config::Timeouts;
use rollout_core::journal::{JournalRecord, Phase, Step};
use rollout_core::{
    Backend, BackendError, Health, InstanceState, Journal, JournalError, Revision, ServiceRef,
};
use std::process::Command;
use std::time::{Duration, Instant};

fn timeouts(start_secs: u64) -> Timeouts {
    Timeouts {
        start: Duration::from_secs(start_secs),
        ..Timeouts::default()
    }
}

fn inspect(id: &str, format: &str) -> String {
    common::run(Command::new("docker").args(["inspect", "-f", format, id]))
        .trim()
        .to_string()
}

#[tokio::test]
#[ignore = "needs docker: run with cargo xtask e2e"]
async fn launch_through_compose_keeps_the_project_coherent_and_rollback_recreates_the_old_revision()
{
    let project = Project::new("launch");
    project.compose_run(&["up", "-d", "web"]);
    let service = ServiceRef::new(&project.name, "web");

    let backend = project.backend().await;
    let v1 = backend
        .compose_revision(&service, common::IMAGE)
        .await
        .unwrap();
    let old = backend.instances(&service).await.unwrap();
    assert_eq!(old.len(), 2, "{old:?}");
    for (i, instance) in old.iter().enumerate() {
        assert_eq!(instance.revision, v1.id);
        assert_eq!(instance.host, project.container("web", i + 1));
        assert_eq!(instance.state, InstanceState::Running);
        assert_eq!(instance.service, service);
    }
    for instance in &old {
        assert_eq!(
            backend
                .wait_healthy(&instance.id, &timeouts(30))
                .await
                .unwrap(),
            Ok(())
        );
    }
    let listed = backend.instances(&service).await.unwrap();
    assert!(
        listed.iter().all(|i| i.health == Health::Healthy),
        "{listed:?}"
    );

    // The file now names revision 2.
    project.set_version(2);
    let backend = project.backend().await;
    let v2 = backend
        .compose_revision(&service, common::IMAGE)
        .await
        .unwrap();
    assert_ne!(v1.id, v2.id);
    let t = Instant::now();
    let new = backend.launch(&service, &v2, 2).await.unwrap();
    eprintln!(
        "timing: launch of 2 through docker-compose: {:?}",
        t.elapsed()
    );
    assert_eq!(new.len(), 2);
    for (i, instance) in new.iter().enumerate() {
        assert_eq!(instance.revision, v2.id);
        assert_eq!(instance.host, project.container("web", i + 3));
        // Every network of the service, also under Compose v1 (which connects all but the
        // first only when it starts a container itself).
        let back = inspect(
            &instance.id.0,
            &format!(
                "{{{{json (index .NetworkSettings.Networks \"{}_back\").Aliases}}}}",
                project.name
            ),
        );
        assert!(
            back.contains("\"web-back\"") && back.contains("\"web\""),
            "the second network of a new instance: {back}"
        );
        assert_eq!(
            backend
                .wait_healthy(&instance.id, &timeouts(30))
                .await
                .unwrap(),
            Ok(())
        );
    }
    let mut all: Vec<String> = old.iter().chain(&new).map(|i| i.id.0.clone()).collect();
    all.sort();
    assert_eq!(
        project.ps("web"),
        all,
        "docker-compose ps lists old and new"
    );

    // Retire the old ones; the first stop saves revision 1's spec. A
    // launch between a stop and its remove must not bring the stopped one
    // back (Compose starts the stopped containers of a service it scales).
    backend
        .stop(&old[0].id, Duration::from_secs(5))
        .await
        .unwrap();
    let extra = backend.launch(&service, &v2, 1).await.unwrap();
    assert_eq!(extra.len(), 1);
    assert_eq!(inspect(&old[0].id.0, "{{.State.Running}}"), "false");
    backend
        .stop(&extra[0].id, Duration::from_secs(5))
        .await
        .unwrap();
    backend.remove(&extra[0].id).await.unwrap();
    for instance in &old {
        backend
            .stop(&instance.id, Duration::from_secs(5))
            .await
            .unwrap();
        backend.remove(&instance.id).await.unwrap();
    }
    let mut kept: Vec<String> = new.iter().map(|i| i.id.0.clone()).collect();
    kept.sort();
    assert_eq!(project.ps("web"), kept);

    // A later `up -d` leaves the new containers as they are.
    project.compose_run(&["up", "-d", "web"]);
    assert_eq!(project.ps("web"), kept, "up -d recreated containers");

    // Rolling back creates revision 1 again, from the saved spec.
    let t = Instant::now();
    let back = backend.launch(&service, &v1, 1).await.unwrap();
    eprintln!("timing: launch of 1 from a saved spec: {:?}", t.elapsed());
    assert_eq!(back.len(), 1);
    let b = &back[0];
    assert_eq!(b.revision, v1.id);
    assert_eq!(b.host, project.container("web", 5));
    assert_eq!(
        backend.wait_healthy(&b.id, &timeouts(30)).await.unwrap(),
        Ok(())
    );
    let mounts = inspect(
        &b.id.0,
        "{{range .Mounts}}{{.Destination}}={{.Type}} {{end}}",
    );
    assert!(
        mounts.contains("/srv/www=bind") && mounts.contains("/data=volume"),
        "the old revision's mounts: {mounts}"
    );
    let volume = inspect(
        &b.id.0,
        "{{range .Mounts}}{{if eq .Destination \"/data\"}}{{.Name}}{{end}}{{end}}",
    );
    assert_eq!(
        volume,
        format!("{}_data", project.name),
        "the project's named volume"
    );
    let env = inspect(&b.id.0, "{{json .Config.Env}}");
    assert!(
        env.contains("VERSION=1"),
        "the old revision's environment: {env}"
    );
    let aliases = inspect(
        &b.id.0,
        &format!(
            "{{{{json (index .NetworkSettings.Networks \"{}_default\").Aliases}}}}",
            project.name
        ),
    );
    assert!(
        aliases.contains("\"web\""),
        "service alias on the project network: {aliases}"
    );
    assert_eq!(
        inspect(
            &b.id.0,
            "{{index .Config.Labels \"com.docker.compose.container-number\"}}"
        ),
        "5"
    );
    let back_aliases = inspect(
        &b.id.0,
        &format!(
            "{{{{json (index .NetworkSettings.Networks \"{}_back\").Aliases}}}}",
            project.name
        ),
    );
    assert!(
        back_aliases.contains("\"web-back\"") && back_aliases.contains("\"web\""),
        "the second network, connected before start: {back_aliases}"
    );
    let mut with_back = kept.clone();
    with_back.push(b.id.0.clone());
    with_back.sort();
    assert_eq!(
        project.ps("web"),
        with_back,
        "compose sees the recreated container"
    );

    // A revision nothing is known of cannot be launched.
    let unknown = Revision::new("0123456789abcdef", common::IMAGE);
    let err = backend.launch(&service, &unknown, 1).await.unwrap_err();
    assert!(matches!(err, BackendError::Launch { .. }), "{err}");
    assert!(err.to_string().contains("hint:"), "{err}");
    assert_eq!(
        backend.instances(&service).await.unwrap().len(),
        3,
        "nothing half-made left"
    );

    // Once the rollback has retired revision 2 and the file names revision
    // 1 again, Compose takes the copy as its own: `up -d` keeps it.
    for id in &kept {
        let id = rollout_core::InstanceId(id.clone());
        backend.stop(&id, Duration::from_secs(5)).await.unwrap();
        backend.remove(&id).await.unwrap();
    }
    project.set_version(1);
    project.compose_run(&["up", "-d", "--scale", "web=1", "web"]);
    assert_eq!(
        project.ps("web"),
        vec![b.id.0.clone()],
        "compose recreated the copy"
    );

    // `down` removes every container of the service, copies included.
    project.compose_run(&["down", "--timeout", "1"]);
    assert!(backend.instances(&service).await.unwrap().is_empty());
}

/// The `retiring` keepers of `project` (the marks of containers the tool
/// stopped and has yet to remove).
fn retiring_keepers(project: &Project) -> Vec<String> {
    common::run(Command::new("docker").args([
        "ps",
        "-aq",
        "--filter",
        "label=io.rollout.kind=retiring",
        "--filter",
        &format!("label=io.rollout.project={}", project.name),
    ]))
    .split_whitespace()
    .map(String::from)
    .collect()
}

/// Issue 12, item 6: an exited container of the service that the tool did
/// not launch (an operator's crashed one, kept for a post-mortem) is left
/// alone: not listed as an instance, not started by a launch through the
/// Compose tool (which `up --scale` would do), not removed. What the tool
/// launches carries its label, through Compose and as a copy; a container
/// Compose made that the tool stopped is still the tool's to remove.
#[tokio::test]
#[ignore = "needs docker: run with cargo xtask e2e"]
async fn an_exited_container_the_tool_did_not_launch_is_left_alone() {
    let project = Project::new("alone");
    project.compose_run(&["up", "-d", "web"]);
    let service = ServiceRef::new(&project.name, "web");
    let crashed = project.container("web", 2);
    common::run(Command::new("docker").args(["kill", &crashed]));
    let crashed_id = inspect(&crashed, "{{.Id}}");
    let started = inspect(&crashed, "{{.State.StartedAt}}");
    assert_eq!(inspect(&crashed, "{{.State.Status}}"), "exited");

    let backend = project.backend().await;
    let old = backend.instances(&service).await.unwrap();
    assert_eq!(
        old.iter().map(|i| i.host.as_str()).collect::<Vec<_>>(),
        [project.container("web", 1)],
        "{old:?}"
    );
    assert_eq!(
        backend.left_alone(&service).await.unwrap(),
        std::slice::from_ref(&crashed)
    );

    // The file names revision 2: the first comes through Compose, the
    // next is a copy; both carry the label, and Compose started nothing.
    project.set_version(2);
    let backend = project.backend().await;
    let v2 = backend
        .compose_revision(&service, common::IMAGE)
        .await
        .unwrap();
    let through_compose = backend.launch(&service, &v2, 1).await.unwrap();
    let copy = backend.launch(&service, &v2, 1).await.unwrap();
    for (i, n) in [(&through_compose[0], 3), (&copy[0], 4)] {
        assert_eq!(i.host, project.container("web", n));
        assert_eq!(i.revision, v2.id);
        assert_eq!(
            inspect(&i.id.0, "{{index .Config.Labels \"io.rollout.launched\"}}"),
            "true"
        );
        assert_eq!(inspect(&i.id.0, "{{.State.Running}}"), "true");
        assert_eq!(
            backend.wait_healthy(&i.id, &timeouts(30)).await.unwrap(),
            Ok(())
        );
    }
    let env = inspect(&through_compose[0].id.0, "{{json .Config.Env}}");
    assert!(env.contains("VERSION=2"), "{env}");
    assert_eq!(inspect(&crashed, "{{.State.Status}}"), "exited");
    assert_eq!(inspect(&crashed, "{{.State.StartedAt}}"), started);
    // Compose takes the remade container for its own.
    assert!(project.ps("web").contains(&through_compose[0].id.0));

    // The old one, made by Compose, stopped: a keeper marks it as the
    // tool's, so a run interrupted here removes it on resume.
    backend
        .stop(&old[0].id, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(retiring_keepers(&project).len(), 1);
    let listed = backend.instances(&service).await.unwrap();
    assert!(
        listed
            .iter()
            .any(|i| i.id == old[0].id && i.state == InstanceState::Exited),
        "{listed:?}"
    );
    assert!(listed.iter().all(|i| i.host != crashed), "{listed:?}");
    backend.remove(&old[0].id).await.unwrap();
    assert_eq!(retiring_keepers(&project), Vec::<String>::new());

    // Left as it was: same container, still exited, never started again.
    assert_eq!(inspect(&crashed, "{{.Id}}"), crashed_id);
    assert_eq!(inspect(&crashed, "{{.State.Status}}"), "exited");
    assert_eq!(inspect(&crashed, "{{.State.StartedAt}}"), started);
    assert_eq!(backend.instances(&service).await.unwrap().len(), 2);
    assert_eq!(backend.left_alone(&service).await.unwrap(), [crashed]);
}

#[tokio::test]
#[ignore = "needs docker: run with cargo xtask e2e"]
async fn a_missing_image_is_refused_before_compose_runs() {
    let project = Project::new("missing");
    project.compose_run(&["up", "-d", "app"]);
    let service = ServiceRef::new(&project.name, "app");
    let backend = project.backend().await;
    // The revision names the image it resolves to, so an absent image is refused when the
    // target revision is formed, before the Compose tool is asked to launch anything.
    let err = backend
        .compose_revision(&service, "rollout-docker-test:absent")
        .await
        .unwrap_err();
    assert!(matches!(err, BackendError::MissingImage { .. }), "{err}");
    assert_eq!(backend.instances(&service).await.unwrap().len(), 1);
}

#[tokio::test]
#[ignore = "needs docker: run with cargo xtask e2e"]
async fn wait_healthy_ends_on_the_engines_events() {
    let project = Project::new("health");
    project.compose_run(&["up", "-d", "app", "sick", "slow", "crash", "plain"]);
    let backend = project.backend().await;
    let one = |name: &'static str| {
        let service = ServiceRef::new(&project.name, name);
        let backend = &backend;
        async move {
            let found = backend.instances(&service).await.unwrap();
            assert_eq!(found.len(), 1, "{name}: {found:?}");
            found.into_iter().next().unwrap()
        }
    };
    let app = one("app").await;
    let sick = one("sick").await;
    let slow = one("slow").await;
    // `crash` exits within a second: once it has, the backend lists it no
    // more (Compose made it, not the tool: it is left alone), so it is
    // taken by name.
    let crash_name = project.container("crash", 1);
    let crash_id = rollout_core::InstanceId(inspect(&crash_name, "{{.Id}}"));
    let plain = one("plain").await;

    assert_eq!(
        backend.wait_healthy(&app.id, &timeouts(30)).await.unwrap(),
        Ok(())
    );
    match backend.wait_healthy(&sick.id, &timeouts(30)).await.unwrap() {
        Err(Failure::Unhealthy(_)) => {}
        other => panic!("sick: {other:?}"),
    }
    assert_eq!(
        backend.wait_healthy(&slow.id, &timeouts(2)).await.unwrap(),
        Err(Failure::StartTimeout)
    );
    match backend
        .wait_healthy(&crash_id, &timeouts(30))
        .await
        .unwrap()
    {
        Err(Failure::Exited(why)) => assert!(why.contains("exit code 3"), "{why}"),
        other => panic!("crash: {other:?}"),
    }
    let crash = ServiceRef::new(&project.name, "crash");
    assert_eq!(backend.instances(&crash).await.unwrap(), vec![]);
    assert_eq!(backend.left_alone(&crash).await.unwrap(), [crash_name]);
    let err = backend
        .wait_healthy(&plain.id, &timeouts(30))
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("no healthcheck") && text.contains("hint:"),
        "{text}"
    );

    // What a person reads after a failed start: logs and health output,
    // never the environment.
    let d = backend.diagnostics(&crash_id).await.unwrap();
    assert!(d.last_logs.iter().any(|l| l.contains("boom")), "{d:?}");
    assert!(d.last_logs.iter().any(|l| l.contains("oops")), "{d:?}");
    assert!(!format!("{d:?}").contains("hunter2"));
    let d = backend.diagnostics(&sick.id).await.unwrap();
    assert!(!d.health_log.is_empty(), "{d:?}");
    assert!(
        d.health_log.iter().all(|l| l.starts_with("exit 1")),
        "{d:?}"
    );
}

#[tokio::test]
#[ignore = "needs docker: run with cargo xtask e2e"]
async fn watch_failures_reports_a_death_and_is_quiet_otherwise() {
    let project = Project::new("watch");
    project.compose_run(&["up", "-d", "--scale", "app=3", "app"]);
    let service = ServiceRef::new(&project.name, "app");
    let backend = project.backend().await;
    let found = backend.instances(&service).await.unwrap();
    let all: Vec<_> = found.iter().map(|i| i.id.clone()).collect();
    assert_eq!(all.len(), 3);
    // Two are watched; the third, of the same project, dies first and must
    // not be reported.
    let ids = all[..2].to_vec();
    let bystander = all[2].clone();
    for id in &ids {
        assert_eq!(
            backend.wait_healthy(id, &timeouts(30)).await.unwrap(),
            Ok(())
        );
    }
    assert_eq!(
        backend
            .watch_failures(&ids, Duration::from_secs(2))
            .await
            .unwrap(),
        None
    );

    let victim = ids[1].clone();
    let killer = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(500)).await;
        common::run(Command::new("docker").args(["kill", "-s", "KILL", &bystander.0]));
        tokio::time::sleep(Duration::from_millis(700)).await;
        common::run(Command::new("docker").args(["kill", "-s", "KILL", &victim.0]));
    });
    let seen = backend
        .watch_failures(&ids, Duration::from_secs(30))
        .await
        .unwrap();
    killer.await.unwrap();
    match seen {
        Some((id, Failure::Exited(why))) => {
            assert_eq!(id, ids[1]);
            assert!(why.contains("137"), "{why}");
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
#[ignore = "needs docker: run with cargo xtask e2e"]
async fn stop_sends_the_stop_signal_then_kills_after_the_grace() {
    let project = Project::new("stop");
    project.compose_run(&["up", "-d", "app", "stubborn"]);
    let backend = project.backend().await;
    let app = backend
        .instances(&ServiceRef::new(&project.name, "app"))
        .await
        .unwrap();
    let stubborn = backend
        .instances(&ServiceRef::new(&project.name, "stubborn"))
        .await
        .unwrap();

    backend
        .stop(&app[0].id, Duration::from_secs(20))
        .await
        .unwrap();
    let code = inspect(&app[0].id.0, "{{.State.ExitCode}}");
    assert_ne!(code, "137", "httpd stops on SIGTERM well within its grace");

    backend
        .stop(&stubborn[0].id, Duration::from_secs(1))
        .await
        .unwrap();
    assert_eq!(
        inspect(&stubborn[0].id.0, "{{.State.ExitCode}}"),
        "137",
        "a process that ignores SIGTERM is killed after the grace"
    );

    backend.remove(&app[0].id).await.unwrap();
    assert!(backend
        .instances(&ServiceRef::new(&project.name, "app"))
        .await
        .unwrap()
        .is_empty());
    assert!(matches!(
        backend.remove(&app[0].id).await,
        Err(BackendError::NoSuchInstance(_))
    ));
}

#[tokio::test]
#[ignore = "needs docker: run with cargo xtask e2e"]
async fn a_running_instance_is_not_removed() {
    let project = Project::new("rmrunning");
    project.compose_run(&["up", "-d", "app"]);
    let backend = project.backend().await;
    let app = backend
        .instances(&ServiceRef::new(&project.name, "app"))
        .await
        .unwrap();
    let err = backend.remove(&app[0].id).await.unwrap_err();
    assert!(err.to_string().contains("still running"), "{err}");
    assert_eq!(inspect(&app[0].id.0, "{{.State.Running}}"), "true");
}

fn record(service: &ServiceRef, step: usize) -> JournalRecord {
    JournalRecord {
        rollout_id: "r-1".into(),
        service: service.clone(),
        strategy: "rolling".into(),
        from: Some(Revision::new("aaaa", "app:v1")),
        to: Revision::new("bbbb", "app:v2"),
        phase: Phase::Updating,
        step: Some(Step::Launch {
            revision: "bbbb".into(),
            count: step,
        }),
        state: serde_json::json!({ "done": step }),
    }
}

#[tokio::test]
#[ignore = "needs docker: run with cargo xtask e2e"]
async fn the_journal_lives_in_the_engine_and_its_lock_names_the_holder() {
    let project = Project::new("journal");
    let service = ServiceRef::new(&project.name, "app");
    let first = project.journal().await;
    // Another client of the same engine: shares nothing but the engine.
    let second = project.journal().await;

    // The keeper image is imported by the first create that finds it missing (nothing looks
    // for it before each create): untagged here, the lock still works and brings it back.
    common::run(Command::new("docker").args([
        "image",
        "rm",
        "-f",
        rollout_docker::keeper::KEEPER_IMAGE,
    ]));
    let has_keeper = || {
        Command::new("docker")
            .args(["image", "inspect", rollout_docker::keeper::KEEPER_IMAGE])
            .output()
            .unwrap()
            .status
            .success()
    };
    assert!(!has_keeper(), "the keeper image was not removed");
    first.lock(&service, "alice@host1 pid 11").await.unwrap();
    assert!(has_keeper(), "the keeper image was not imported again");
    match second.lock(&service, "bob@host2 pid 22").await {
        Err(JournalError::Locked {
            service: s,
            holder,
            since,
        }) => {
            assert_eq!(s, service.to_string());
            assert_eq!(holder, "alice@host1 pid 11");
            assert!(since.ends_with('Z') && since.len() == 20, "{since}");
        }
        other => panic!("second lock: {other:?}"),
    }

    assert_eq!(second.load(&service).await.unwrap(), None);
    let t = Instant::now();
    first.save(&record(&service, 1)).await.unwrap();
    first.save(&record(&service, 2)).await.unwrap();
    eprintln!("timing: journal save, twice: {:?}", t.elapsed());
    first.flush().await;
    let t = Instant::now();
    let loaded = second.load(&service).await.unwrap();
    eprintln!("timing: journal load: {:?}", t.elapsed());
    assert_eq!(loaded, Some(record(&service, 2)));
    assert_eq!(
        second.load(&service).await.unwrap(),
        Some(record(&service, 2))
    );
    let kept = common::run(Command::new("docker").args([
        "ps",
        "-aq",
        "--filter",
        "label=io.rollout.kind=journal",
        "--filter",
        &format!("label=io.rollout.project={}", project.name),
    ]));
    assert_eq!(kept.lines().count(), 1, "older generations are removed");
    // Compose does not see the journal.
    assert!(project.ps("app").is_empty());

    // Parallel workers of one strategy save at once.
    let saves = (10..16).map(|i| {
        let journal = first.clone();
        let r = record(&service, i);
        async move { journal.save(&r).await }
    });
    for saved in futures::future::join_all(saves).await {
        saved.unwrap();
    }
    first.flush().await;
    let last = second.load(&service).await.unwrap().unwrap();
    assert!(matches!(last.step, Some(Step::Launch { count, .. }) if (10..16).contains(&count)));

    let kept = common::run(Command::new("docker").args([
        "ps",
        "-aq",
        "--filter",
        "label=io.rollout.kind=journal",
        "--filter",
        &format!("label=io.rollout.project={}", project.name),
    ]));
    assert_eq!(
        kept.lines().count(),
        1,
        "one generation after parallel saves"
    );

    // Breaking a dead holder's lock: only while that holder still has it.
    assert!(!second
        .break_lock(&service, "carol@host3 pid 33")
        .await
        .unwrap());
    assert_eq!(
        second.holder(&service).await.unwrap().map(|h| h.holder),
        Some("alice@host1 pid 11".to_string())
    );
    assert!(second
        .break_lock(&service, "alice@host1 pid 11")
        .await
        .unwrap());
    assert_eq!(first.holder(&service).await.unwrap(), None);
    first.lock(&service, "alice@host1 pid 11").await.unwrap();

    second.clear(&service).await.unwrap();
    assert_eq!(first.load(&service).await.unwrap(), None);
    first.unlock(&service).await.unwrap();
    second.lock(&service, "bob@host2 pid 22").await.unwrap();
    assert_eq!(
        first.holder(&service).await.unwrap().map(|h| h.holder),
        Some("bob@host2 pid 22".to_string())
    );
    second.unlock(&service).await.unwrap();
    assert_eq!(first.holder(&service).await.unwrap(), None);
}

/// Probes an instance from another container of the project (as the tool
/// does from the proxy): busybox wget to the instance's container name.
struct WgetFrom(rollout_docker::ProxyContainer);

#[async_trait::async_trait]
impl rollout_core::strategy::Verifier for WgetFrom {
    async fn verify(
        &self,
        instance: &rollout_core::Instance,
        check: &rollout_core::strategy::Verification,
    ) -> Result<(), String> {
        use rollout_nginx::proxy::ProxyExec;
        let url = format!("http://{}:8000{}", instance.host, check.path);
        let argv: Vec<String> = ["wget", "-q", "-O", "-", &url]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let out = self.0.exec(&argv).await.map_err(|e| e.to_string())?;
        if out.success() {
            Ok(())
        } else {
            Err(out.message())
        }
    }
}

#[tokio::test]
#[ignore = "needs docker: run with cargo xtask e2e"]
async fn a_probe_stands_in_for_a_missing_healthcheck() {
    let project = Project::new("probe");
    project.compose_run(&["up", "-d", "app", "plain"]);
    let engine = common::engine().await;
    let app = project.container("app", 1);
    let probe = |path: &str| rollout_docker::HealthProbe {
        verifier: std::sync::Arc::new(WgetFrom(rollout_docker::ProxyContainer::new(
            engine.clone(),
            &app,
        ))),
        check: rollout_core::strategy::Verification {
            path: path.into(),
            status: 200,
            body_contains: None,
        },
        interval: Duration::from_millis(300),
    };
    let plain = ServiceRef::new(&project.name, "plain");
    let backend = project.backend().await.with_probe("plain", probe("/"));
    let found = backend.instances(&plain).await.unwrap();
    assert_eq!(found[0].health, Health::None);
    assert_eq!(
        backend
            .wait_healthy(&found[0].id, &timeouts(30))
            .await
            .unwrap(),
        Ok(())
    );

    let backend = project
        .backend()
        .await
        .with_probe("plain", probe("/missing"));
    match backend
        .wait_healthy(&found[0].id, &timeouts(2))
        .await
        .unwrap()
    {
        Err(Failure::Unhealthy(why)) => assert!(why.contains("/missing"), "{why}"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
#[ignore = "needs docker: run with cargo xtask e2e"]
async fn the_engine_is_reached_directly_or_through_the_docker_cli() {
    use rollout_docker::{DockerCli, Engine, GlobalFlags, ProxyContainer};
    use rollout_nginx::proxy::{ConfigStore, ProxyExec};

    // Resolved as the docker CLI would, from -H.
    let flags = GlobalFlags {
        hosts: vec!["unix:///var/run/docker.sock".into()],
        ..GlobalFlags::default()
    };
    let endpoint = rollout_docker::resolve(&flags).unwrap();
    let direct = Engine::connect_to(&endpoint, None).await.unwrap();
    assert_eq!(
        direct.api_version(),
        "1.41",
        "negotiated down to the engine's API"
    );
    assert!(
        direct.endpoint().contains("from -H"),
        "{}",
        direct.endpoint()
    );

    // An ssh endpoint needs the docker CLI.
    let ssh = GlobalFlags {
        hosts: vec!["ssh://nobody@127.0.0.1".into()],
        ..GlobalFlags::default()
    };
    let endpoint = rollout_docker::resolve(&ssh).unwrap();
    let err = Engine::connect_to(&endpoint, None).await.unwrap_err();
    assert!(
        matches!(err, BackendError::Unreachable { .. }) && err.to_string().contains("hint:"),
        "{err}"
    );

    // Through `docker --context default system dial-stdio`: plain calls,
    // request bodies (a journal record), archives and upgraded exec streams.
    let cli = DockerCli::new("docker", ["--context", "default"]);
    let via = Engine::connect_via_cli(&cli, "dial-stdio").await.unwrap();
    assert_eq!(via.api_version(), "1.41");
    let project = Project::new("dial");
    project.compose_run(&["up", "-d", "app"]);
    let service = ServiceRef::new(&project.name, "app");
    let journal = rollout_docker::DockerJournal::new(via.clone()).with_labels(project.labels());
    journal.lock(&service, "dial@here pid 1").await.unwrap();
    journal.save(&record(&service, 3)).await.unwrap();
    assert_eq!(
        journal.load(&service).await.unwrap(),
        Some(record(&service, 3))
    );
    journal.clear(&service).await.unwrap();
    journal.unlock(&service).await.unwrap();
    let backend = rollout_docker::DockerBackend::new(via.clone(), project.compose());
    let t = Instant::now();
    let app = backend.instances(&service).await.unwrap();
    eprintln!("timing: instances() through dial-stdio: {:?}", t.elapsed());
    let t = Instant::now();
    let same = rollout_docker::DockerBackend::new(direct.clone(), project.compose())
        .instances(&service)
        .await
        .unwrap();
    eprintln!("timing: instances() on the unix socket: {:?}", t.elapsed());
    assert_eq!(same, app);
    assert_eq!(app.len(), 1);
    assert_eq!(
        backend
            .wait_healthy(&app[0].id, &timeouts(30))
            .await
            .unwrap(),
        Ok(())
    );
    let proxy = ProxyContainer::new(via, &app[0].host);
    let out = proxy
        .exec(&["sh".to_string(), "-c".into(), "echo hi; exit 5".into()])
        .await
        .unwrap();
    assert_eq!((out.code, out.stdout.as_slice()), (5, b"hi\n".as_slice()));
    assert_eq!(proxy.read("/www/index.html").await.unwrap(), b"ok\n");
}

/// The contract gate's list of running containers names the image reference a container was
/// created from even after its tag left that image (the list then shows the image's id): an
/// old worker of `app:latest` still counts as a consumer of the repository.
#[tokio::test]
#[ignore = "needs docker: run with cargo xtask e2e"]
async fn a_running_container_whose_tag_moved_is_listed_with_its_reference() {
    common::image();
    let project = format!("rollout-moved-{}", std::process::id());
    let tag = format!("rollout-docker-test:moved-{}", std::process::id());
    common::run(Command::new("docker").args(["tag", common::IMAGE, &tag]));
    let id = common::run(Command::new("docker").args([
        "run",
        "-d",
        "--label",
        &format!("{}={project}", rollout_docker::labels::PROJECT),
        "--label",
        &format!("{}=worker", rollout_docker::labels::SERVICE),
        "--label",
        &format!("{}={project}", common::TEST_LABEL),
        &tag,
    ]));
    let id = id.trim().to_string();
    // The tag leaves the image: the engine's list now shows the image's id.
    common::run(Command::new("docker").args(["rmi", &tag]));
    let listed = common::run(Command::new("docker").args([
        "ps",
        "--filter",
        &format!("id={id}"),
        "--format",
        "{{.Image}}",
    ]));
    let engine = common::engine().await;
    let found = rollout_docker::running::running(&engine, &[project.as_str()]).await;
    common::run(Command::new("docker").args(["rm", "-f", &id]));
    let found = found.unwrap();
    assert_ne!(listed.trim(), tag, "the list no longer names the tag");
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].service, "worker");
    assert_eq!(found[0].image, tag);
}

/// Compose 2 copies a `configs` entry given by `content:` into a container after creating it.
/// The tool makes the first instance of a revision again with its label: the file must be
/// there in it, and in the copies made after it.
#[tokio::test]
#[ignore = "needs docker: run with cargo xtask e2e"]
async fn files_compose_copies_in_after_create_are_kept_when_the_tool_remakes_the_container() {
    assert!(
        common::compose_v2(),
        "this test needs Compose 2 (`configs` with `content:`); run it in the v2 pass"
    );
    let project = Project::new("injected");
    let compose = format!(
        "services:\n  app:\n    image: {}\n    init: true\n    labels: {{io.rollout.test: {}}}\n    environment: {{VERSION: \"${{VERSION}}\"}}\n    configs:\n      - source: greeting\n        target: /etc/greeting.txt\nconfigs:\n  greeting:\n    content: hello from compose\nnetworks:\n  default:\n    labels: {{io.rollout.test: {}}}\n",
        common::IMAGE,
        project.name,
        project.name
    );
    std::fs::write(project.dir.join("docker-compose.yml"), compose).unwrap();
    project.compose_run(&["up", "-d", "app"]);
    let service = ServiceRef::new(&project.name, "app");
    let greeting = |id: &str| {
        common::run(Command::new("docker").args(["exec", id, "cat", "/etc/greeting.txt"]))
    };
    assert_eq!(
        greeting(&project.container("app", 1)).trim(),
        "hello from compose"
    );

    project.set_version(2);
    let backend = project.backend().await;
    let v2 = backend
        .compose_revision(&service, common::IMAGE)
        .await
        .unwrap();
    let through_compose = backend.launch(&service, &v2, 1).await.unwrap();
    let copy = backend.launch(&service, &v2, 1).await.unwrap();
    for i in [&through_compose[0], &copy[0]] {
        assert_eq!(
            inspect(&i.id.0, "{{index .Config.Labels \"io.rollout.launched\"}}"),
            "true"
        );
        assert_eq!(
            greeting(&i.id.0).trim(),
            "hello from compose",
            "in {}",
            i.host
        );
    }
}
