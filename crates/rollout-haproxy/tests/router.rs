//! The HAProxy router against a real haproxy on loopback.
//!
//! Every test starts Debian's `/usr/sbin/haproxy` in the foreground with a
//! config in a temporary directory (its stats socket there too, and a TCP
//! admin socket on 127.0.0.1), in front of small HTTP backends served by
//! this process on 127.0.0.2, 127.0.0.3, ... (one port shared by all, as
//! containers share a port), and drives it through the router over the
//! direct channels. They always run, and fail when haproxy is not
//! installed.

use rollout_core::error::RouterError;
use rollout_core::model::InstanceId;
use rollout_core::router::{DrainTicket, Route, RouteChange, Target, TrafficRouter};
use rollout_haproxy::command::{AdminState, Command as Cmd, Name};
use rollout_haproxy::state::{parse_servers_state, Mode};
use rollout_haproxy::{
    HaproxyConfig, HaproxyRouter, RuntimeChannel, StaticResolver, TcpChannel, UnixChannel,
};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Semaphore};
use tokio::task::JoinHandle;

const HAPROXY: &str = "/usr/sbin/haproxy";

fn require_haproxy() {
    assert!(
        Path::new(HAPROXY).is_file(),
        "{HAPROXY} is missing: the router tests run a real haproxy\nhint: apt-get install haproxy (`cargo xtask setup` and CI install it)"
    );
}

// ---------------------------------------------------------------- backends

/// A tiny HTTP server answering its name; `/hold` answers only when
/// released, after saying on `held` that it holds a request.
struct Backend {
    ip: String,
    release: Arc<Semaphore>,
    held: mpsc::UnboundedReceiver<()>,
    task: JoinHandle<()>,
}

impl Backend {
    fn target(&self) -> Target {
        Target::instance(InstanceId::from(self.ip.as_str()), self.ip.clone())
    }

    fn route(&self, weight: u32) -> Route {
        Route {
            target: self.target(),
            weight,
        }
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn serve(listener: TcpListener, name: &'static str) -> Backend {
    let release = Arc::new(Semaphore::new(0));
    let (held_tx, held) = mpsc::unbounded_channel();
    let ip = listener.local_addr().unwrap().ip().to_string();
    let task = {
        let release = release.clone();
        tokio::spawn(async move {
            loop {
                let Ok((mut conn, _)) = listener.accept().await else {
                    continue;
                };
                let release = release.clone();
                let held_tx = held_tx.clone();
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < 65536 {
                        match conn.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    if buf.starts_with(b"GET /hold ") {
                        let _ = held_tx.send(());
                        if let Ok(permit) = release.acquire().await {
                            permit.forget();
                        }
                    }
                    let response = format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{name}",
                        name.len()
                    );
                    let _ = conn.write_all(response.as_bytes()).await;
                    let _ = conn.shutdown().await;
                });
            }
        })
    };
    Backend {
        ip,
        release,
        held,
        task,
    }
}

/// Backends named `names` on 127.0.0.2, 127.0.0.3, ..., all on one port.
async fn backends(names: &[&'static str]) -> (u16, Vec<Backend>) {
    'attempt: for _ in 0..50 {
        let first = TcpListener::bind("127.0.0.2:0").await.unwrap();
        let port = first.local_addr().unwrap().port();
        let mut listeners = vec![first];
        for i in 1..names.len() {
            match TcpListener::bind(format!("127.0.0.{}:{port}", i + 2)).await {
                Ok(l) => listeners.push(l),
                Err(_) => continue 'attempt,
            }
        }
        let list = listeners
            .into_iter()
            .zip(names)
            .map(|(l, name)| serve(l, name))
            .collect();
        return (port, list);
    }
    panic!("no port free on 127.0.0.2-{}", names.len() + 1);
}

// ----------------------------------------------------------------- clients

/// One client connection to haproxy, kept alive across requests.
struct Client {
    reader: BufReader<TcpStream>,
}

impl Client {
    async fn connect(port: u16) -> Client {
        let stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        Client {
            reader: BufReader::new(stream),
        }
    }

    /// One GET on this connection: the status and body, or what went wrong
    /// (a closed connection included).
    async fn get(&mut self, path: &str) -> Result<(u16, String), String> {
        let exchange = async {
            let request = format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n");
            self.reader
                .get_mut()
                .write_all(request.as_bytes())
                .await
                .map_err(|e| format!("write: {e}"))?;
            let mut status_line = String::new();
            let n = self
                .reader
                .read_line(&mut status_line)
                .await
                .map_err(|e| format!("read: {e}"))?;
            if n == 0 {
                return Err("connection closed".to_string());
            }
            let status = status_line
                .get(9..12)
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| format!("no status line in {status_line:?}"))?;
            let mut length = 0usize;
            let mut close = false;
            loop {
                let mut line = String::new();
                self.reader
                    .read_line(&mut line)
                    .await
                    .map_err(|e| format!("read: {e}"))?;
                let line = line.trim_end();
                if line.is_empty() {
                    break;
                }
                let lower = line.to_ascii_lowercase();
                if let Some(v) = lower.strip_prefix("content-length:") {
                    length = v.trim().parse().map_err(|_| format!("bad length {line}"))?;
                }
                if lower.starts_with("connection:") && lower.contains("close") {
                    close = true;
                }
            }
            let mut body = vec![0u8; length];
            self.reader
                .read_exact(&mut body)
                .await
                .map_err(|e| format!("body: {e}"))?;
            if close {
                return Err("haproxy asked to close the connection".to_string());
            }
            Ok((status, String::from_utf8_lossy(&body).into_owned()))
        };
        tokio::time::timeout(Duration::from_secs(30), exchange)
            .await
            .map_err(|_| "timed out".to_string())?
    }
}

/// Requests on one kept-alive connection until told to stop (at most
/// `limit` of them): the answers counted by body, and the failures.
fn load(
    port: u16,
    stop: Arc<AtomicBool>,
    limit: u64,
) -> JoinHandle<(BTreeMap<String, u64>, Vec<String>)> {
    tokio::spawn(async move {
        let mut client = Client::connect(port).await;
        let mut answers = BTreeMap::new();
        let mut failures = Vec::new();
        for _ in 0..limit {
            if stop.load(Ordering::Relaxed) {
                break;
            }
            match client.get("/").await {
                Ok((200, body)) => *answers.entry(body).or_insert(0) += 1,
                Ok((status, body)) => failures.push(format!("{status} {body}")),
                Err(e) => {
                    // The connection is gone: that is the failure this
                    // measures, so stop here rather than reconnect.
                    failures.push(e);
                    break;
                }
            }
        }
        (answers, failures)
    })
}

// ----------------------------------------------------------------- haproxy

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A haproxy in the foreground, killed (by its own id) when dropped.
struct Haproxy {
    _dir: tempfile::TempDir,
    cfg: PathBuf,
    socket: PathBuf,
    admin: SocketAddr,
    port: u16,
    child: tokio::process::Child,
}

/// The test config: a frontend on 127.0.0.1:`port`, backend `app` with
/// `slots` server slots, and the stats sockets `sockets` writes (given the
/// unix path and the TCP address).
fn config(port: u16, slots: u32, sockets: &str) -> String {
    format!(
        "global
{sockets}
defaults
    mode http
    timeout connect 2s
    timeout client 30s
    timeout server 30s
    timeout http-keep-alive 30s

frontend fe
    bind 127.0.0.1:{port}
    default_backend app

backend app
    balance roundrobin
    server-template s 1-{slots} 0.0.0.0:0 disabled
"
    )
}

impl Haproxy {
    /// Starts haproxy with `slots` slots and both stats sockets.
    async fn start(slots: u32) -> Haproxy {
        Self::start_with(slots, true).await
    }

    async fn start_with(slots: u32, with_sockets: bool) -> Haproxy {
        require_haproxy();
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("admin.sock");
        let admin: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let port = free_port();
        let sockets = if with_sockets {
            format!(
                "    stats socket {} mode 600 level admin\n    stats socket ipv4@{admin} level admin\n",
                socket.display()
            )
        } else {
            "    maxconn 100\n".to_string()
        };
        let cfg = dir.path().join("haproxy.cfg");
        std::fs::write(&cfg, config(port, slots, &sockets)).unwrap();
        let child = tokio::process::Command::new(HAPROXY)
            .arg("-db")
            .arg("-f")
            .arg(&cfg)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let mut haproxy = Haproxy {
            _dir: dir,
            cfg,
            socket,
            admin,
            port,
            child,
        };
        for _ in 0..100 {
            if TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
                return haproxy;
            }
            if let Ok(Some(status)) = haproxy.child.try_wait() {
                let mut err = String::new();
                if let Some(mut stderr) = haproxy.child.stderr.take() {
                    let _ = stderr.read_to_string(&mut err).await;
                }
                panic!("haproxy exited with {status}: {err}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("haproxy did not listen on 127.0.0.1:{port} within 5 s");
    }

    fn config(&self) -> HaproxyConfig {
        let text = std::fs::read_to_string(&self.cfg).unwrap();
        HaproxyConfig::parse(&self.cfg.display().to_string(), &text).unwrap()
    }

    fn unix(&self) -> Arc<dyn RuntimeChannel> {
        Arc::new(UnixChannel::new(&self.socket))
    }

    async fn router(&self, port: u16) -> HaproxyRouter {
        HaproxyRouter::open(
            "haproxy-test",
            &self.config(),
            "app",
            self.unix(),
            Arc::new(StaticResolver::new(port)),
        )
        .await
        .unwrap()
    }

    /// haproxy still runs as the same process.
    fn assert_same_process(&mut self, pid: u32) {
        assert_eq!(self.child.id(), Some(pid), "haproxy's process changed");
        assert!(matches!(self.child.try_wait(), Ok(None)), "haproxy exited");
    }

    /// The slots as `show servers state` shows them: name, address, port,
    /// weight, mode.
    async fn slots(&self) -> Vec<(String, String, u16, u32, Mode)> {
        let answer = self
            .unix()
            .send(&Cmd::ShowServersState {
                backend: Name::new("backend", "app").unwrap(),
            })
            .await
            .unwrap();
        parse_servers_state(&answer)
            .unwrap()
            .into_iter()
            .map(|s| {
                (
                    s.name.clone(),
                    s.addr.to_string(),
                    s.port,
                    s.weight,
                    s.mode(),
                )
            })
            .collect()
    }
}

fn set(routes: Vec<Route>) -> RouteChange {
    RouteChange {
        set: routes,
        remove: Vec::new(),
    }
}

fn weights(routes: &[Route]) -> Vec<(String, u32)> {
    let mut out: Vec<_> = routes
        .iter()
        .map(|r| (r.target.host().to_string(), r.weight))
        .collect();
    out.sort();
    out
}

// ------------------------------------------------------------------- tests

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_read_back_and_weights_are_honoured() {
    let (port, b) = backends(&["a", "b"]).await;
    let haproxy = Haproxy::start(4).await;
    let router = haproxy.router(port).await;
    assert_eq!(router.routes().await.unwrap(), []);

    router
        .apply(&set(vec![b[0].route(1), b[1].route(3)]))
        .await
        .unwrap();
    assert_eq!(
        weights(&router.routes().await.unwrap()),
        [(b[0].ip.clone(), 1), (b[1].ip.clone(), 3)]
    );
    // A router opened afresh (a resumed run) reads the same routes, over
    // the TCP admin socket this time.
    let fresh = HaproxyRouter::open(
        "haproxy-test",
        &haproxy.config(),
        "app",
        Arc::new(TcpChannel::new(haproxy.admin)),
        Arc::new(StaticResolver::new(port)),
    )
    .await
    .unwrap();
    assert_eq!(
        weights(&fresh.routes().await.unwrap()),
        [(b[0].ip.clone(), 1), (b[1].ip.clone(), 3)]
    );

    let (answers, failures) = load(haproxy.port, Arc::new(AtomicBool::new(false)), 400)
        .await
        .unwrap();
    assert!(failures.is_empty(), "{failures:?}");
    let (a, bb) = (answers["a"], answers["b"]);
    eprintln!("weights 1:3 over 400 requests: a {a}, b {bb}");
    assert_eq!(a + bb, 400);
    // Weighted round robin: 1:3, within a few requests.
    assert!((90..=110).contains(&a), "a answered {a} of 400, b {bb}");

    // Reweighted to 1:1.
    router.apply(&set(vec![b[1].route(1)])).await.unwrap();
    let (answers, _) = load(haproxy.port, Arc::new(AtomicBool::new(false)), 200)
        .await
        .unwrap();
    assert!((90..=110).contains(&answers["a"]), "{answers:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_under_keep_alive_load_fail_no_request_and_never_reload() {
    let (port, b) = backends(&["blue", "green"]).await;
    let mut haproxy = Haproxy::start(4).await;
    let pid = haproxy.child.id().unwrap();
    let router = haproxy.router(port).await;
    router.apply(&set(vec![b[0].route(1)])).await.unwrap();

    // A client that holds its connection idle across the changes.
    let mut idle = Client::connect(haproxy.port).await;
    assert_eq!(idle.get("/").await.unwrap(), (200, "blue".to_string()));

    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..4)
        .map(|_| load(haproxy.port, stop.clone(), 20_000))
        .collect();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut timings = Vec::new();
    for round in 0..3 {
        let (from, to) = if round % 2 == 0 {
            (&b[0], &b[1])
        } else {
            (&b[1], &b[0])
        };
        let started = std::time::Instant::now();
        let ticket = router
            .apply(&RouteChange {
                set: vec![to.route(1)],
                remove: vec![from.target()],
            })
            .await
            .unwrap();
        timings.push(started.elapsed());
        assert_eq!(
            weights(&router.routes().await.unwrap()),
            [(to.ip.clone(), 1)]
        );
        let report = router
            .drain(&ticket, Duration::from_secs(10))
            .await
            .unwrap();
        assert!(!report.timed_out, "{report:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    stop.store(true, Ordering::Relaxed);
    let mut total = 0;
    for client in clients {
        let (answers, failures) = client.await.unwrap();
        assert!(failures.is_empty(), "failed requests: {failures:?}");
        total += answers.values().sum::<u64>();
        assert!(
            answers.contains_key("blue") && answers.contains_key("green"),
            "{answers:?}"
        );
    }
    assert!(total > 100, "only {total} requests ran");
    // No reload: the same process, and the idle connection still works,
    // now answered by the colour routed last.
    haproxy.assert_same_process(pid);
    assert_eq!(idle.get("/").await.unwrap(), (200, "green".to_string()));
    eprintln!("{total} requests, 0 failed; apply took {timings:?}");
    for t in timings {
        assert!(t < Duration::from_secs(1), "an apply took {t:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_in_flight_to_a_drained_server_completes_before_drain_returns() {
    let (port, mut b) = backends(&["old", "new"]).await;
    let haproxy = Haproxy::start(4).await;
    let router = Arc::new(haproxy.router(port).await);
    router.apply(&set(vec![b[0].route(1)])).await.unwrap();

    let front = haproxy.port;
    let in_flight = tokio::spawn(async move { Client::connect(front).await.get("/hold").await });
    tokio::time::timeout(Duration::from_secs(5), b[0].held.recv())
        .await
        .expect("the request reached the old server")
        .unwrap();

    let ticket = router
        .apply(&RouteChange {
            set: vec![b[1].route(1)],
            remove: vec![b[0].target()],
        })
        .await
        .unwrap();
    // New requests go to the new server while the old one holds its request.
    let mut client = Client::connect(haproxy.port).await;
    for _ in 0..5 {
        assert_eq!(client.get("/").await.unwrap(), (200, "new".to_string()));
    }
    let drain = {
        let router = router.clone();
        let ticket = ticket.clone();
        tokio::spawn(async move { router.drain(&ticket, Duration::from_secs(20)).await })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !drain.is_finished(),
        "drain returned with a request in flight"
    );
    let slots = haproxy.slots().await;
    assert_eq!(slots[0].4, Mode::Drain, "{slots:?}");

    b[0].release.add_permits(1);
    assert_eq!(in_flight.await.unwrap().unwrap(), (200, "old".to_string()));
    let report = drain.await.unwrap().unwrap();
    assert!(!report.timed_out, "{report:?}");
    assert!(report.elapsed >= Duration::from_millis(500), "{report:?}");
    assert_eq!(report.waited_for.len(), 1, "{report:?}");
    assert!(report.waited_for[0].contains("app/s1"), "{report:?}");
    // The drained slot takes no new session and is freed off the critical
    // path: here as the run ends.
    assert_eq!(haproxy.slots().await[0].4, Mode::Drain);
    router.settle().await.unwrap();
    assert_eq!(haproxy.slots().await[0].4, Mode::Maint);

    // A drain that times out says what it cut.
    router
        .apply(&RouteChange {
            set: vec![b[0].route(1)],
            remove: vec![b[1].target()],
        })
        .await
        .unwrap();
    let front = haproxy.port;
    let held = tokio::spawn(async move { Client::connect(front).await.get("/hold").await });
    tokio::time::timeout(Duration::from_secs(5), b[0].held.recv())
        .await
        .expect("the request reached the server")
        .unwrap();
    let ticket = router
        .apply(&RouteChange {
            set: vec![b[1].route(1)],
            remove: vec![b[0].target()],
        })
        .await
        .unwrap();
    // A ticket this router did not issue (a resumed run) finds the slot too.
    let unknown = DrainTicket::unknown(ticket.removed.clone());
    let report = router
        .drain(&unknown, Duration::from_millis(300))
        .await
        .unwrap();
    assert!(report.timed_out, "{report:?}");
    assert_eq!(report.cut.len(), 1, "{report:?}");
    assert!(
        report.cut[0].starts_with("1 sessions on haproxy server app/"),
        "{report:?}"
    );
    b[0].release.add_permits(1);
    assert_eq!(held.await.unwrap().unwrap(), (200, "old".to_string()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_config_without_stats_socket_or_slots_is_refused_and_nothing_changes() {
    let (port, b) = backends(&["a", "b", "c"]).await;

    // No stats socket: refused at open, saying what to add.
    let bare = Haproxy::start_with(2, false).await;
    let err = HaproxyRouter::open(
        "haproxy-test",
        &bare.config(),
        "app",
        bare.unix(),
        Arc::new(StaticResolver::new(port)),
    )
    .await
    .unwrap_err();
    let RouterError::Config(message) = err else {
        panic!("not a config error: {err:?}")
    };
    assert!(message.contains("has no `stats socket`"), "{message}");
    assert!(message.contains("hint: add `stats socket"), "{message}");
    drop(bare);

    // A backend with no server-template: refused the same way.
    let haproxy = Haproxy::start(2).await;
    let no_template = HaproxyConfig::parse(
        "haproxy.cfg",
        &config(haproxy.port, 2, "    stats socket /x level admin\n").replace(
            "    server-template s 1-2 0.0.0.0:0 disabled\n",
            "    server web 127.0.0.2:80\n",
        ),
    )
    .unwrap();
    let err = HaproxyRouter::open(
        "haproxy-test",
        &no_template,
        "app",
        haproxy.unix(),
        Arc::new(StaticResolver::new(port)),
    )
    .await
    .unwrap_err();
    assert!(
        err.to_string().contains("hint: add `server-template app"),
        "{err}"
    );

    // A config on disk with more slots than the running haproxy has (edited,
    // not reloaded): refused, asking for the reload.
    let edited = HaproxyConfig::parse(
        "haproxy.cfg",
        &config(haproxy.port, 3, "    stats socket /x level admin\n"),
    )
    .unwrap();
    let err = HaproxyRouter::open(
        "haproxy-test",
        &edited,
        "app",
        haproxy.unix(),
        Arc::new(StaticResolver::new(port)),
    )
    .await
    .unwrap_err();
    assert!(
        err.to_string().contains(
            "the running haproxy has no server s3, which the config's `server-template` names"
        ),
        "{err}"
    );

    // Two slots, both taken: a third target is refused, nothing changed.
    let router = haproxy.router(port).await;
    router
        .apply(&set(vec![b[0].route(1), b[1].route(2)]))
        .await
        .unwrap();
    let before = haproxy.slots().await;
    let err = router.apply(&set(vec![b[2].route(1)])).await.unwrap_err();
    let RouterError::Config(message) = err else {
        panic!("not a config error: {err:?}")
    };
    assert!(
        message.contains("backend app has 0 free server slots of 2, and the change needs 1"),
        "{message}"
    );
    assert!(message.contains("nothing was changed"), "{message}");
    assert_eq!(haproxy.slots().await, before);
    // A blue-green switch on full slots is refused whole too: the new
    // target needs a slot before the old one is drained.
    let err = router
        .apply(&RouteChange {
            set: vec![b[2].route(1)],
            remove: vec![b[0].target()],
        })
        .await
        .unwrap_err();
    assert!(err.to_string().contains("free server slots"), "{err}");
    assert_eq!(haproxy.slots().await, before);

    // A weight HAProxy cannot take is refused before any command.
    let err = router.apply(&set(vec![b[0].route(300)])).await.unwrap_err();
    assert!(err.to_string().contains("weight 300"), "{err}");
    assert_eq!(haproxy.slots().await, before);
    assert_eq!(
        weights(&router.routes().await.unwrap()),
        [(b[0].ip.clone(), 1), (b[1].ip.clone(), 2)]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_switch_back_revives_the_drained_slot() {
    let (port, b) = backends(&["blue", "green"]).await;
    let haproxy = Haproxy::start(2).await;
    let router = haproxy.router(port).await;
    router.apply(&set(vec![b[0].route(1)])).await.unwrap();
    router
        .apply(&RouteChange {
            set: vec![b[1].route(1)],
            remove: vec![b[0].target()],
        })
        .await
        .unwrap();
    // Not drained yet: switching back takes blue's draining slot again,
    // with no free slot needed.
    router
        .apply(&RouteChange {
            set: vec![b[0].route(1)],
            remove: vec![b[1].target()],
        })
        .await
        .unwrap();
    let slots = haproxy.slots().await;
    assert_eq!(slots[0].1, b[0].ip);
    assert_eq!(slots[0].4, Mode::Active, "{slots:?}");
    assert_eq!(slots[1].4, Mode::Drain, "{slots:?}");
    let mut client = Client::connect(haproxy.port).await;
    assert_eq!(client.get("/").await.unwrap(), (200, "blue".to_string()));
}

/// A channel that answers a refusal, without sending it, to the commands
/// `refuse` picks, and passes the others to haproxy.
struct Refusing {
    inner: Arc<dyn RuntimeChannel>,
    refuse: fn(&Cmd) -> bool,
}

#[async_trait::async_trait]
impl RuntimeChannel for Refusing {
    async fn send(&self, command: &Cmd) -> Result<String, rollout_haproxy::ChannelError> {
        if (self.refuse)(command) {
            return Ok("Refused by the test.".to_string());
        }
        self.inner.send(command).await
    }

    fn describe(&self) -> String {
        format!("refusing {}", self.inner.describe())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_step_undoes_the_whole_change() {
    let (port, b) = backends(&["blue", "green", "grey"]).await;
    let haproxy = Haproxy::start(4).await;
    let router = haproxy.router(port).await;
    router
        .apply(&set(vec![b[0].route(2), b[2].route(1)]))
        .await
        .unwrap();
    let before = haproxy.slots().await;

    // The drain, the last step, is refused: green's slot, taken and made
    // ready first, and grey's new weight go back as they were.
    let refusing = HaproxyRouter::open(
        "haproxy-test",
        &haproxy.config(),
        "app",
        Arc::new(Refusing {
            inner: haproxy.unix(),
            refuse: |c| matches!(c, Cmd::SetState { state, .. } if *state == AdminState::Drain),
        }),
        Arc::new(StaticResolver::new(port)),
    )
    .await
    .unwrap();
    let err = refusing
        .apply(&RouteChange {
            set: vec![b[1].route(1), b[2].route(5)],
            remove: vec![b[0].target()],
        })
        .await
        .unwrap_err();
    let message = err.to_string();
    assert!(
        message.contains("haproxy refused `set server app/s1 state drain`: Refused by the test."),
        "{message}"
    );
    assert_eq!(haproxy.slots().await, before);
    let mut client = Client::connect(haproxy.port).await;
    for _ in 0..6 {
        let (status, body) = client.get("/").await.unwrap();
        assert_eq!(status, 200);
        assert_ne!(body, "green", "the undone slot took traffic");
    }

    // When the undo is refused too, the error says which slot may be left
    // as the change made it, and how to look.
    let torn = HaproxyRouter::open(
        "haproxy-test",
        &haproxy.config(),
        "app",
        Arc::new(Refusing {
            inner: haproxy.unix(),
            refuse: |c| match c {
                Cmd::SetState { state, .. } => *state == AdminState::Drain,
                Cmd::SetWeight { server, weight, .. } => {
                    server.as_str() == "s2" && weight.get() == 1
                }
                _ => false,
            },
        }),
        Arc::new(StaticResolver::new(port)),
    )
    .await
    .unwrap();
    let err = torn
        .apply(&RouteChange {
            set: vec![b[1].route(1), b[2].route(5)],
            remove: vec![b[0].target()],
        })
        .await
        .unwrap_err();
    let message = err.to_string();
    assert!(
        message.contains("undoing the change failed on app/s2"),
        "{message}"
    );
    assert!(
        message.contains("hint: look with `show servers state app`"),
        "{message}"
    );
    let after = haproxy.slots().await;
    assert_eq!(
        after[1].3, 5,
        "grey keeps the weight the undo could not put back"
    );
    assert_eq!(after[2], before[2], "green's slot was put back");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_whose_every_address_is_active_reads_back_by_its_name() {
    let (port, b) = backends(&["a", "b", "c"]).await;
    let haproxy = Haproxy::start(6).await;
    let addr =
        |i: usize| -> std::net::SocketAddr { format!("{}:{port}", b[i].ip).parse().unwrap() };
    let service = Target::Service { name: "app".into() };
    // As the Docker resolver: a service is its instances' addresses, and an
    // address reads back as its instance.
    struct Instances(Target, Vec<std::net::SocketAddr>, StaticResolver);
    #[async_trait::async_trait]
    impl rollout_haproxy::Resolve for Instances {
        async fn resolve(
            &self,
            target: &Target,
        ) -> Result<Vec<std::net::SocketAddr>, rollout_haproxy::HaproxyError> {
            if *target == self.0 {
                Ok(self.1.clone())
            } else {
                self.2.resolve(target).await
            }
        }
        async fn identify(&self, addr: std::net::SocketAddr) -> Target {
            self.2.identify(addr).await
        }
    }
    let resolver = Instances(
        service.clone(),
        vec![addr(0), addr(1)],
        StaticResolver::new(port),
    );
    let router = HaproxyRouter::open(
        "haproxy-test",
        &haproxy.config(),
        "app",
        haproxy.unix(),
        Arc::new(resolver),
    )
    .await
    .unwrap()
    .with_services(vec!["app".into()]);
    // One of the service's two addresses active: an instance, not the name.
    router.apply(&set(vec![b[0].route(1)])).await.unwrap();
    assert_eq!(router.routes().await.unwrap(), [b[0].route(1)]);
    // Both, at one weight, and one more instance: the name and the instance.
    router
        .apply(&set(vec![
            Route {
                target: service.clone(),
                weight: 1,
            },
            b[2].route(2),
        ]))
        .await
        .unwrap();
    let routes = router.routes().await.unwrap();
    assert_eq!(
        routes,
        [
            Route {
                target: service.clone(),
                weight: 1
            },
            b[2].route(2)
        ]
    );
    // Two weights among the service's addresses: instances again.
    router.apply(&set(vec![b[1].route(3)])).await.unwrap();
    assert_eq!(
        weights(&router.routes().await.unwrap()),
        [
            (b[0].ip.clone(), 1),
            (b[1].ip.clone(), 3),
            (b[2].ip.clone(), 2)
        ]
    );
}

/// A proxy lock of one permit, counting how often it was taken.
#[derive(Clone)]
struct TestLock {
    permit: Arc<Semaphore>,
    taken: Arc<std::sync::atomic::AtomicUsize>,
}

impl TestLock {
    fn new() -> Self {
        Self {
            permit: Arc::new(Semaphore::new(1)),
            taken: Arc::new(std::sync::atomic::AtomicUsize::new(0)),
        }
    }

    fn held(&self) -> bool {
        self.permit.available_permits() == 0
    }
}

#[async_trait::async_trait]
impl rollout_haproxy::RuntimeLock for TestLock {
    async fn acquire(&self) -> Result<(), RouterError> {
        self.permit.acquire().await.unwrap().forget();
        self.taken.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    async fn release(&self) {
        self.permit.add_permits(1);
    }
}

/// A channel that fails the test's flag when a command that changes
/// HAProxy's state is sent while the lock is not held.
struct Watching {
    inner: Arc<dyn RuntimeChannel>,
    lock: TestLock,
    unlocked: Arc<AtomicBool>,
}

#[async_trait::async_trait]
impl RuntimeChannel for Watching {
    async fn send(&self, command: &Cmd) -> Result<String, rollout_haproxy::ChannelError> {
        let reads = matches!(command, Cmd::ShowServersState { .. } | Cmd::ShowStat { .. });
        if !reads && !self.lock.held() {
            self.unlocked.store(true, Ordering::SeqCst);
        }
        self.inner.send(command).await
    }

    fn describe(&self) -> String {
        format!("watching {}", self.inner.describe())
    }
}

/// A backend with persistence (here `cookie`, read from the config) can still send a sticky
/// session to a draining server: its drain frees the slot before it returns, where one
/// without leaves that to the next change or the end of the run.
#[tokio::test]
async fn with_persistence_a_drain_frees_its_slot_before_it_returns() {
    let (port, b) = backends(&["old", "new"]).await;
    let haproxy = Haproxy::start(4).await;
    let mut config = haproxy.config();
    let text =
        std::fs::read_to_string(&haproxy.cfg).unwrap() + "    cookie SRV insert indirect nocache\n";
    config.persistence = HaproxyConfig::parse("haproxy.cfg", &text)
        .unwrap()
        .persistence;
    assert!(
        !config.persistence.is_empty(),
        "the test's config ends in backend app"
    );
    let router = HaproxyRouter::open(
        "haproxy-test",
        &config,
        "app",
        haproxy.unix(),
        Arc::new(StaticResolver::new(port)),
    )
    .await
    .unwrap();
    router.apply(&set(vec![b[0].route(1)])).await.unwrap();
    let ticket = router
        .apply(&RouteChange {
            set: vec![b[1].route(1)],
            remove: vec![b[0].target()],
        })
        .await
        .unwrap();
    router.drain(&ticket, Duration::from_secs(5)).await.unwrap();
    let slots = haproxy.slots().await;
    assert_eq!(slots[0].4, Mode::Maint, "{slots:?}");
    assert_eq!(slots[1].4, Mode::Active, "{slots:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_change_is_made_under_the_proxy_lock_and_waits_for_its_holder() {
    let (port, b) = backends(&["blue", "green"]).await;
    let haproxy = Haproxy::start(4).await;
    let lock = TestLock::new();
    let unlocked = Arc::new(AtomicBool::new(false));
    let router = Arc::new(
        HaproxyRouter::open(
            "haproxy-test",
            &haproxy.config(),
            "app",
            Arc::new(Watching {
                inner: haproxy.unix(),
                lock: lock.clone(),
                unlocked: unlocked.clone(),
            }),
            Arc::new(StaticResolver::new(port)),
        )
        .await
        .unwrap()
        .with_lock(Arc::new(lock.clone())),
    );
    router.apply(&set(vec![b[0].route(1)])).await.unwrap();
    assert!(!lock.held(), "the lock was kept after the change");

    // Another rollout holds the lock: the change waits for it, touching nothing.
    lock.permit.acquire().await.unwrap().forget();
    let r = router.clone();
    let change = RouteChange {
        set: vec![b[1].route(1)],
        remove: vec![b[0].target()],
    };
    let waiting = tokio::spawn(async move { r.apply(&change).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !waiting.is_finished(),
        "the change did not wait for the lock"
    );
    let slots = haproxy.slots().await;
    assert_eq!(slots[0].4, Mode::Active, "{slots:?}");
    assert!(
        slots[1..].iter().all(|s| s.4 == Mode::Maint),
        "a slot changed under another holder's lock: {slots:?}"
    );
    lock.permit.add_permits(1);
    let ticket = waiting.await.unwrap().unwrap();
    router.drain(&ticket, Duration::from_secs(5)).await.unwrap();
    let slots = haproxy.slots().await;
    assert_eq!(slots[0].4, Mode::Drain, "{slots:?}");
    // The next change frees the drained slot in its own batch, under its lock.
    router.apply(&set(vec![b[1].route(2)])).await.unwrap();
    let slots = haproxy.slots().await;
    assert_eq!(
        slots[0].4,
        Mode::Maint,
        "the drained slot was not freed: {slots:?}"
    );
    assert_eq!(
        (slots[1].1.as_str(), slots[1].4),
        (b[1].ip.as_str(), Mode::Active)
    );
    // Nothing is left for the end of the run.
    router.settle().await.unwrap();
    // Three applies, each under the lock, each given back.
    assert_eq!(lock.taken.load(Ordering::SeqCst), 3);
    assert!(!lock.held());
    assert!(
        !unlocked.load(Ordering::SeqCst),
        "a command that changes HAProxy was sent without the lock"
    );
}
