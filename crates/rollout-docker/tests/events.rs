//! The engine's event stream dropping under a rollout (an idle timeout in a
//! proxy between us and the engine, an ssh hiccup): health waits and
//! failure watches resubscribe, or poll, and still see what happens.
//!
//! The tests reach the engine over TCP on loopback through a forwarder of
//! their own that cuts every event stream that passes it.

mod common;

use common::Project;
use rollout_core::backend::Failure;
use rollout_core::config::Timeouts;
use rollout_core::{Backend, ServiceRef};
use rollout_docker::{DockerBackend, Engine};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, UnixStream};

/// What the forwarder does to a connection that asks for `/events`.
#[derive(Clone, Copy)]
enum Cut {
    /// Closes it this long after the request.
    After(Duration),
    /// Closes it at once, before the engine answers.
    AtOnce,
}

/// A TCP-to-unix-socket forwarder in front of the engine that cuts event
/// streams; counts the streams it cut.
struct Forwarder {
    port: u16,
    cut: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Forwarder {
    async fn start(how: Cut) -> Self {
        let socket = std::env::var("DOCKER_HOST")
            .ok()
            .and_then(|h| h.strip_prefix("unix://").map(str::to_string))
            .unwrap_or_else(|| "/var/run/docker.sock".into());
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let cut = Arc::new(AtomicUsize::new(0));
        let counter = cut.clone();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let socket = socket.clone();
                let counter = counter.clone();
                tokio::spawn(async move {
                    let Ok(engine) = UnixStream::connect(&socket).await else {
                        return;
                    };
                    forward(client, engine, how, counter).await;
                });
            }
        });
        Self { port, cut, task }
    }

    async fn backend(&self, project: &Project) -> DockerBackend {
        let engine = Engine::connect(&format!("tcp://127.0.0.1:{}", self.port))
            .await
            .unwrap();
        DockerBackend::new(engine, project.compose()).with_labels(project.labels())
    }

    fn streams_cut(&self) -> usize {
        self.cut.load(Ordering::SeqCst)
    }
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Copies bytes both ways until either side closes, or until the cut is due
/// once the client asked for events.
async fn forward(
    client: tokio::net::TcpStream,
    engine: UnixStream,
    how: Cut,
    counter: Arc<AtomicUsize>,
) {
    let (mut client_read, mut client_write) = client.into_split();
    let (mut engine_read, mut engine_write) = engine.into_split();
    let (asked_tx, mut asked) = tokio::sync::mpsc::channel::<()>(1);
    let upstream = async move {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let n = match client_read.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            if buf[..n].windows(8).any(|w| w == b"/events?") {
                let _ = asked_tx.try_send(());
            }
            if engine_write.write_all(&buf[..n]).await.is_err() {
                return;
            }
        }
    };
    let downstream = async move {
        let _ = tokio::io::copy(&mut engine_read, &mut client_write).await;
    };
    let cutter = async move {
        if asked.recv().await.is_none() {
            std::future::pending::<()>().await;
        }
        if let Cut::After(wait) = how {
            tokio::time::sleep(wait).await;
        }
        counter.fetch_add(1, Ordering::SeqCst);
    };
    // Whichever ends first ends the connection: both halves are dropped.
    tokio::select! {
        _ = upstream => {}
        _ = downstream => {}
        _ = cutter => {}
    }
}

fn timeouts(start_secs: u64) -> Timeouts {
    Timeouts {
        start: Duration::from_secs(start_secs),
        ..Timeouts::default()
    }
}

async fn one(backend: &DockerBackend, project: &Project, name: &str) -> rollout_core::InstanceId {
    let found = backend
        .instances(&ServiceRef::new(&project.name, name))
        .await
        .unwrap();
    assert_eq!(found.len(), 1, "{name}: {found:?}");
    found[0].id.clone()
}

/// `late` turns healthy 3 s after it starts and `crash` exits 3 after 1 s;
/// through a forwarder that cuts (`how`) every event stream, both are seen.
async fn seen_through(how: Cut, test: &str) -> usize {
    let project = Project::new(test);
    let forwarder = Forwarder::start(how).await;
    let backend = forwarder.backend(&project).await;
    project.compose_run(&["up", "-d", "late"]);
    let late = one(&backend, &project, "late").await;
    assert_eq!(
        backend.wait_healthy(&late, &timeouts(30)).await.unwrap(),
        Ok(()),
        "late"
    );
    project.compose_run(&["up", "-d", "crash"]);
    let crash = one(&backend, &project, "crash").await;
    let seen = backend
        .watch_failures(std::slice::from_ref(&crash), Duration::from_secs(30))
        .await
        .unwrap();
    match seen {
        Some((id, Failure::Exited(why))) => {
            assert_eq!(id, crash);
            assert!(why.contains("exit code 3"), "{why}");
        }
        other => panic!("crash: {other:?}"),
    }
    forwarder.streams_cut()
}

#[tokio::test]
#[ignore = "needs docker: run with cargo xtask e2e"]
async fn event_streams_cut_after_a_while_are_resubscribed() {
    let cut = seen_through(Cut::After(Duration::from_millis(400)), "evcut").await;
    // `late` needs 3 s to be healthy: its stream was cut several times.
    assert!(cut >= 3, "only {cut} event streams were cut");
}

#[tokio::test]
#[ignore = "needs docker: run with cargo xtask e2e"]
async fn event_streams_that_never_answer_fall_back_to_polling() {
    let cut = seen_through(Cut::AtOnce, "evnone").await;
    assert!(cut >= 3, "only {cut} event streams were cut");
}
