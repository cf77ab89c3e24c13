//! The proxy traits against a real container whose config is a single file
//! bind-mounted read-only, as in the seed.
//!
//! Run with `cargo xtask e2e`, or
//! `cargo test -p rollout-docker --test proxy -- --ignored`.

mod common;

use common::Project;
use rollout_core::ServiceRef;
use rollout_docker::ProxyContainer;
use rollout_nginx::proxy::{ConfigStore, ProxyError, ProxyExec};
use std::os::unix::fs::MetadataExt;
use std::process::Command;

fn argv(words: &[&str]) -> Vec<String> {
    words.iter().map(|w| w.to_string()).collect()
}

/// A container of the test image with `conf` mounted read-only at
/// `/etc/nginx/nginx.conf`, labelled for the project's cleanup.
fn proxy_container(project: &Project, conf: &std::path::Path) -> String {
    proxy_container_of(project, conf, common::IMAGE)
}

fn proxy_container_of(project: &Project, conf: &std::path::Path, image: &str) -> String {
    common::run(Command::new("docker").args([
        "run",
        "-d",
        "--init",
        "--label",
        &format!("{}={}", common::TEST_LABEL, project.name),
        "--name",
        &format!("{}-proxy", project.name),
        "-v",
        &format!("{}:/etc/nginx/nginx.conf:ro", conf.display()),
        image,
    ]))
    .trim()
    .to_string()
}

#[tokio::test]
#[ignore = "needs docker: run with cargo xtask e2e"]
async fn exec_reports_exit_codes_and_output() {
    let project = Project::new("pexec");
    let conf = project.dir.join("nginx.conf");
    std::fs::write(&conf, "events {}\n").unwrap();
    let id = proxy_container(&project, &conf);
    let proxy = ProxyContainer::new(common::engine().await, &id);

    let out = proxy
        .exec(&argv(&["cat", "/etc/nginx/nginx.conf"]))
        .await
        .unwrap();
    assert_eq!(out.code, 0);
    assert_eq!(out.stdout, b"events {}\n");

    let out = proxy
        .exec(&argv(&["sh", "-c", "echo out; echo err >&2; exit 3"]))
        .await
        .unwrap();
    assert_eq!(
        out.code, 3,
        "the exit code comes from the exec, not the stream"
    );
    assert_eq!(out.stdout, b"out\n");
    assert_eq!(out.stderr, b"err\n");

    let out = proxy.exec(&argv(&["no-such-program"])).await;
    match out {
        Ok(out) => assert_ne!(out.code, 0, "{out:?}"),
        Err(ProxyError::Exec { .. }) => {}
        Err(e) => panic!("{e}"),
    }

    // A proxy that is not running cannot be reached.
    common::run(Command::new("docker").args(["stop", "-t", "1", &id]));
    match proxy.exec(&argv(&["true"])).await {
        Err(ProxyError::Exec { reason, .. }) => {
            assert!(
                reason.contains("not running") && reason.contains("hint:"),
                "{reason}"
            )
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
#[ignore = "needs docker: run with cargo xtask e2e"]
async fn a_single_file_read_only_mount_is_written_in_place_on_the_host() {
    let project = Project::new("pfile");
    let conf = project.dir.join("nginx.conf");
    std::fs::write(&conf, "events {}\nhttp {}\n").unwrap();
    let inode = std::fs::metadata(&conf).unwrap().ino();
    // An image with a /tmp: kept shells, in the proxy and in its writer.
    let id = proxy_container_of(&project, &conf, common::IMAGE_TMP);
    let proxy = ProxyContainer::new(common::engine().await, &id);

    assert_eq!(
        proxy.read("/etc/nginx/nginx.conf").await.unwrap(),
        b"events {}\nhttp {}\n"
    );

    // The candidate goes beside it, inside the container.
    let candidate = b"events {}\nhttp { upstream app { server a:80; } }\n";
    proxy
        .write_new("/etc/nginx/nginx.conf.next", candidate)
        .await
        .unwrap();
    let out = proxy
        .exec(&argv(&["cat", "/etc/nginx/nginx.conf.next"]))
        .await
        .unwrap();
    assert_eq!(out.stdout, candidate);
    assert_eq!(
        proxy.read("/etc/nginx/nginx.conf.next").await.unwrap(),
        candidate
    );
    // Text goes as a kept shell's input, anything else by upload (the engine says
    // `extract-to-dir` for each): both come back byte for byte, a new file with mode 644,
    // and a file written over is whole.
    let proxy_uploads = |since: &str| uploads(&format!("container={id}"), since);
    let odd = "a\n\n  b  \n\r\n\\ %s -n é\n\nno final newline";
    let binary: Vec<u8> = (0..=255u8).chain(*b"\0tail\n").collect();
    let long = "x".repeat(70_000);
    let lines = "l\n".repeat(2_500);
    let text: [(&str, &[u8]); 2] = [
        ("/etc/nginx/rollout-test.odd", odd.as_bytes()),
        ("/etc/nginx/rollout-test.conf", b"server { listen 80; }\n"),
    ];
    let other: [(&str, &[u8]); 3] = [
        ("/etc/nginx/rollout-test.bin", &binary),
        ("/etc/nginx/rollout-test.long", long.as_bytes()),
        ("/etc/nginx/rollout-test.lines", lines.as_bytes()),
    ];
    for (path, bytes) in text.iter().chain(&other) {
        proxy.remove(path).await.unwrap();
        let since = now();
        proxy.write_new(path, bytes).await.unwrap();
        let uploaded = proxy_uploads(&since);
        match text.iter().any(|(p, _)| p == path) {
            true => assert_eq!(uploaded, 0, "{path} went by upload"),
            false => assert!(uploaded >= 1, "{path} did not go by upload"),
        }
        assert_eq!(&proxy.read(path).await.unwrap(), bytes, "{path}");
        let mode = proxy
            .exec(&argv(&["stat", "-c", "%a", path]))
            .await
            .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&mode.stdout).trim(),
            "644",
            "{path}"
        );
        let over = b"over this\n".repeat(20_000);
        proxy.write_new(path, &over).await.unwrap();
        proxy.write_new(path, bytes).await.unwrap();
        assert_eq!(
            &proxy.read(path).await.unwrap(),
            bytes,
            "{path} over a longer file"
        );
    }
    let since = now();
    proxy.write_new_all(&text).await.unwrap();
    assert_eq!(proxy_uploads(&since), 0);
    let all: Vec<(&str, &[u8])> = text.iter().chain(&other).copied().collect();
    proxy.write_new_all(&all).await.unwrap();
    for (path, bytes) in &all {
        assert_eq!(&proxy.read(path).await.unwrap(), bytes, "{path}");
    }
    let paths: Vec<&str> = all.iter().map(|(p, _)| *p).collect();
    proxy.remove_all(&paths).await.unwrap();

    // The live file: same inode on the host, and the container sees it.
    proxy
        .write_in_place("/etc/nginx/nginx.conf", candidate)
        .await
        .unwrap();
    assert_eq!(std::fs::metadata(&conf).unwrap().ino(), inode);
    assert_eq!(std::fs::read(&conf).unwrap(), candidate);
    let seen = proxy
        .exec(&argv(&["cat", "/etc/nginx/nginx.conf"]))
        .await
        .unwrap();
    assert_eq!(seen.stdout, candidate);
    // Text reaches the writer as its kept shell's input; other bytes are uploaded to it:
    // the same file either way.
    let writer_uploads = |since: &str| uploads("label=io.rollout.kind=proxywrite", since);
    let since = now();
    proxy
        .write_in_place("/etc/nginx/nginx.conf", odd.as_bytes())
        .await
        .unwrap();
    assert_eq!(writer_uploads(&since), 0);
    assert_eq!(std::fs::read(&conf).unwrap(), odd.as_bytes());
    let since = now();
    let with_nul = b"events {}\n# \0\xff\n".to_vec();
    proxy
        .write_in_place("/etc/nginx/nginx.conf", &with_nul)
        .await
        .unwrap();
    assert!(writer_uploads(&since) >= 1);
    assert_eq!(std::fs::read(&conf).unwrap(), with_nul);
    assert_eq!(std::fs::metadata(&conf).unwrap().ino(), inode);
    // Shorter content leaves no tail of the old.
    proxy
        .write_in_place("/etc/nginx/nginx.conf", b"events {}\n")
        .await
        .unwrap();
    assert_eq!(
        proxy.read("/etc/nginx/nginx.conf").await.unwrap(),
        b"events {}\n"
    );
    // Both writes went through one writer, kept running for the run; the end of the run
    // removes it.
    let writers = || {
        common::run(Command::new("docker").args([
            "ps",
            "-a",
            "--filter",
            "label=io.rollout.kind=proxywrite",
            "--filter",
            &format!("label=io.rollout.proxy={}-proxy", project.name),
            "--format",
            "{{.ID}} {{.State}}",
        ]))
        .lines()
        .map(str::to_string)
        .collect::<Vec<_>>()
    };
    let kept = writers();
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert!(kept[0].ends_with(" running"), "{kept:?}");
    proxy.settle().await.unwrap();
    assert_eq!(writers(), Vec::<String>::new());
    // A run that ends without letting go (killed) closes the writer's input: it exits by
    // itself, for the next run to remove.
    {
        let cut = ProxyContainer::new(common::engine().await, &id);
        cut.write_in_place("/etc/nginx/nginx.conf", b"events {}\n")
            .await
            .unwrap();
        assert_eq!(writers().len(), 1);
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let left = writers();
        if left.iter().all(|w| w.ends_with(" exited")) {
            for w in &left {
                let id = w.split(' ').next().unwrap();
                common::run(Command::new("docker").args(["rm", id]));
            }
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "a writer outlived its run: {left:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }

    proxy.remove("/etc/nginx/nginx.conf.next").await.unwrap();
    proxy.remove("/etc/nginx/nginx.conf.next").await.unwrap();
    let gone = proxy
        .exec(&argv(&["test", "-e", "/etc/nginx/nginx.conf.next"]))
        .await
        .unwrap();
    assert_eq!(gone.code, 1);

    // A file on no mount would be lost on recreate: refused with a hint.
    match proxy.write_in_place("/www/index.html", b"x").await {
        Err(ProxyError::File { reason, .. }) => {
            assert!(
                reason.contains("not on a mount") && reason.contains("hint:"),
                "{reason}"
            )
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(proxy.read("/www/index.html").await.unwrap(), b"ok\n");
}

#[tokio::test]
#[ignore = "needs docker: run with cargo xtask e2e"]
async fn the_proxies_of_a_service_are_its_running_containers() {
    let project = Project::new("pservice");
    project.compose_run(&["up", "-d", "--scale", "app=2", "app"]);
    let engine = common::engine().await;
    let proxies = ProxyContainer::of_service(&engine, &ServiceRef::new(&project.name, "app"))
        .await
        .unwrap();
    let names: Vec<&str> = proxies.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(
        names,
        vec![project.container("app", 1), project.container("app", 2)]
    );
    for p in &proxies {
        let out = p
            .exec
            .exec(&argv(&["cat", "/www/index.html"]))
            .await
            .unwrap();
        assert_eq!(out.stdout, b"ok\n");
    }
    let err = ProxyContainer::of_service(&engine, &ServiceRef::new(&project.name, "nginx"))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("hint:"), "{err}");
}

/// Issue 12, item 2: the repair of a stopped proxy (its file torn by a killed run) is made
/// under the proxy lock. While another rollout holds the lock, `revive` waits for it and,
/// once its wait runs out, fails naming the holder, the proxy left stopped; once the lock
/// is free, it starts the proxy and gives the lock back.
#[tokio::test]
#[ignore = "needs docker: run with cargo xtask e2e"]
async fn a_stopped_proxy_is_revived_under_the_proxy_lock() {
    use rollout_docker::{revive, DockerProxyLock, EngineJournal};
    use rollout_nginx::proxy::{JournalStore, ProxyLock};
    use rollout_nginx::router::ProxyLocking;
    use std::sync::Arc;
    use std::time::Duration;

    let project = Project::new("previve");
    let service = ServiceRef::new(&project.name, "proxy");
    let name = format!("{}-proxy-1", project.name);
    common::run(Command::new("docker").args([
        "create",
        "--init",
        "--label",
        &format!("{}={}", common::TEST_LABEL, project.name),
        "--label",
        &format!("com.docker.compose.project={}", project.name),
        "--label",
        "com.docker.compose.service=proxy",
        "--name",
        &name,
        common::IMAGE,
    ]));
    let engine = common::engine().await;
    let path = "/etc/nginx/nginx.conf";
    // A journal keeps short text in its labels (one create, no upload) and other bytes in
    // files: both come back whole, under their tags.
    let journal = EngineJournal::new(engine.clone(), &service, &name).with_labels(project.labels());
    let since = now();
    let cases: [(&str, &str, &[u8], &[u8]); 2] = [
        ("/x.bin", "bytes", b"\xff\x00 not text", b"next"),
        ("/x.conf", "text", b"a {}\n", b"b {}\n"),
    ];
    for (file, tag, previous, next) in cases {
        journal.save(file, tag, previous, next).await.unwrap();
    }
    for (file, tag, previous, next) in cases {
        let kept = journal.list(file).await.unwrap();
        assert_eq!(kept.len(), 1, "{file}");
        let k = &kept[0];
        assert_eq!(
            (k.tag.as_str(), k.previous.as_slice(), k.next.as_slice()),
            (tag, previous, next)
        );
    }
    let journals = format!("label={}={}", common::TEST_LABEL, project.name);
    assert_eq!(
        uploads(&journals, &since),
        1,
        "only the bytes that are not text are uploaded"
    );
    journal.remove("/x.bin", "bytes").await.unwrap();
    journal.remove("/x.conf", "text").await.unwrap();
    assert!(journal.list("/x.conf").await.unwrap().is_empty());

    // A commit that a killed run left journaled.
    journal
        .save(path, "killed", b"events {}\n", b"events { }\n")
        .await
        .unwrap();
    let store = Arc::new(
        DockerProxyLock::new(engine.clone(), &project.name, "proxy").with_labels(project.labels()),
    );
    assert!(store
        .try_lock(path, "other@host pid 1")
        .await
        .unwrap()
        .is_none());
    let mut locking = ProxyLocking::new(store.clone(), "me@host pid 2");
    locking.timeout = Duration::from_millis(600);
    locking.poll = Duration::from_millis(100);
    let state = || {
        common::run(Command::new("docker").args(["inspect", "-f", "{{.State.Status}}", &name]))
            .trim()
            .to_string()
    };

    let e = revive(&engine, &service, path, Some(&locking))
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("locked by other@host pid 1"), "{e}");
    assert_eq!(state(), "created", "repaired without the lock");

    store.unlock(path).await.unwrap();
    let notes = revive(&engine, &service, path, Some(&locking))
        .await
        .unwrap();
    assert!(
        notes.iter().any(|n| n.contains("it was started")),
        "{notes:?}"
    );
    assert_eq!(state(), "running");
    // The lock was given back.
    assert!(store.try_lock(path, "third").await.unwrap().is_none());
    store.unlock(path).await.unwrap();
}

/// Now, as `docker events` takes it.
fn now() -> String {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    format!("{}.{:09}", t.as_secs(), t.subsec_nanos())
}

/// How many uploads into a container (`extract-to-dir`) the engine saw since `since`, of
/// the containers `filter` picks.
fn uploads(filter: &str, since: &str) -> usize {
    let until = now();
    common::run(Command::new("docker").args([
        "events",
        "--since",
        since,
        "--until",
        &until,
        "--filter",
        "event=extract-to-dir",
        "--filter",
        filter,
        "--format",
        "{{.Action}}",
    ]))
    .lines()
    .count()
}
