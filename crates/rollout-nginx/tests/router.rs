//! The nginx router against a real nginx on loopback.
//!
//! Every test starts Debian's `/usr/sbin/nginx` in a prefix directory of its
//! own (a temporary directory), in front of small HTTP backends served by
//! this process on 127.0.0.2, 127.0.0.3, ... (one port shared by all of
//! them, as containers share a port), and drives it through the router with
//! the local implementations of the proxy traits. They always run, and fail
//! when nginx is not installed.

use rollout_core::error::RouterError;
use rollout_core::model::InstanceId;
use rollout_core::router::{DrainTicket, Route, RouteChange, Target, TrafficRouter};
use rollout_nginx::proxy::{
    ConfigStore, JournalStore, KeptCommit, LocalExec, LocalFiles, LocalLock, Proxy, ProxyError,
    ProxyLock,
};
use rollout_nginx::router::{
    NginxRouter, NginxRouterOptions, ProxyLocking, CANDIDATE_SUFFIX, NEXT_SUFFIX, PREVIOUS_SUFFIX,
    SET_ASIDE_SUFFIX,
};
use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Semaphore};
use tokio::task::JoinHandle;

const NGINX: &str = "/usr/sbin/nginx";

fn require_nginx() {
    assert!(
        Path::new(NGINX).is_file(),
        "{NGINX} is missing: the router tests run a real nginx\nhint: apt-get install nginx (CI installs it)"
    );
}

// ---------------------------------------------------------------- backends

/// A tiny HTTP server answering its name; `/hold` answers only when
/// released, after saying on `held` that it holds a request.
struct Backend {
    ip: String,
    served: Arc<AtomicU64>,
    release: Arc<Semaphore>,
    held: mpsc::UnboundedReceiver<()>,
    task: JoinHandle<()>,
}

impl Backend {
    /// Its route target. The router knows an instance by the host in its
    /// `server` line, so routes read back name the host as the id too (a
    /// container name is both).
    fn target(&self) -> Target {
        Target::instance(InstanceId::from(self.ip.as_str()), self.ip.clone())
    }

    fn route(&self, weight: u32) -> Route {
        Route {
            target: self.target(),
            weight,
        }
    }

    fn stop(&self) {
        self.task.abort();
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn serve(listener: TcpListener, name: &'static str) -> Backend {
    let served = Arc::new(AtomicU64::new(0));
    let release = Arc::new(Semaphore::new(0));
    let (held_tx, held) = mpsc::unbounded_channel();
    let ip = listener.local_addr().unwrap().ip().to_string();
    let task = {
        let served = served.clone();
        let release = release.clone();
        tokio::spawn(async move {
            loop {
                let Ok((mut conn, _)) = listener.accept().await else {
                    continue;
                };
                let served = served.clone();
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
                    let head = String::from_utf8_lossy(&buf);
                    if head.starts_with("GET /hold ") {
                        let _ = held_tx.send(());
                        if let Ok(permit) = release.acquire().await {
                            permit.forget();
                        }
                    }
                    let response = format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{name}",
                        name.len()
                    );
                    if conn.write_all(response.as_bytes()).await.is_ok() {
                        served.fetch_add(1, Ordering::Relaxed);
                    }
                    let _ = conn.shutdown().await;
                });
            }
        })
    };
    Backend {
        ip,
        served,
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

/// One GET through nginx: the status and the body, or what went wrong.
async fn get(port: u16, path: &str) -> Result<(u16, String), String> {
    let exchange = async {
        let mut conn = TcpStream::connect(("127.0.0.1", port))
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let request = format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
        conn.write_all(request.as_bytes())
            .await
            .map_err(|e| format!("write: {e}"))?;
        let mut response = Vec::new();
        conn.read_to_end(&mut response)
            .await
            .map_err(|e| format!("read: {e}"))?;
        let text = String::from_utf8_lossy(&response).into_owned();
        let status = text
            .get(9..12)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("no status line in {text:?}"))?;
        let body = text
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or_default();
        Ok((status, body))
    };
    tokio::time::timeout(Duration::from_secs(30), exchange)
        .await
        .map_err(|_| "timed out".to_string())?
}

/// The master's children once the ones that ran when `before` was read have
/// quit (shutting down or gone), waiting at most 2 s: a change that takes no
/// server out returns as soon as its new workers run, and nginx tells the
/// old ones to quit 100 ms later.
async fn after_old_quit(router: &NginxRouter, before: &[(u32, Vec<u32>)]) -> Vec<(u32, Vec<u32>)> {
    let deadline = std::time::Instant::now() + Duration::from_secs(2);
    loop {
        let now = router.processes().await.unwrap();
        let old_left = now
            .iter()
            .zip(before)
            .any(|(n, b)| n.1.iter().any(|pid| b.1.contains(pid)));
        if !old_left || std::time::Instant::now() >= deadline {
            return now;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `count` requests in a row, each answered 200: the bodies.
async fn bodies(port: u16, count: usize) -> Vec<String> {
    let mut all = Vec::new();
    for _ in 0..count {
        match get(port, "/").await {
            Ok((200, body)) => all.push(body),
            other => panic!("request through nginx failed: {other:?}"),
        }
    }
    all
}

// ------------------------------------------------------------------- nginx

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn make_dir(path: &Path) {
    std::fs::create_dir_all(path).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// A running nginx master, stopped (by its process id) when dropped.
struct Nginx {
    prefix: PathBuf,
    conf: PathBuf,
    pid_file: PathBuf,
    /// Extra arguments of every nginx command (`-g "pid ...;"`).
    extra: Vec<String>,
    master: u32,
}

impl Nginx {
    /// Starts nginx in `prefix` with the config `conf`.
    fn start(prefix: &Path, conf: &Path, pid_file: &Path, extra: Vec<String>) -> Nginx {
        require_nginx();
        make_dir(&prefix.join("tmp"));
        let log = std::fs::File::create(prefix.join("startup.log")).unwrap();
        let status = Command::new(NGINX)
            .args(["-e", "stderr", "-p"])
            .arg(prefix)
            .args(&extra)
            .arg("-c")
            .arg(conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .status()
            .unwrap();
        let startup = std::fs::read_to_string(prefix.join("startup.log")).unwrap_or_default();
        assert!(status.success(), "nginx did not start: {startup}");
        let mut master = None;
        for _ in 0..100 {
            if let Some(pid) = std::fs::read_to_string(pid_file)
                .ok()
                .and_then(|s| s.trim().parse().ok())
            {
                master = Some(pid);
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Nginx {
            prefix: prefix.to_path_buf(),
            conf: conf.to_path_buf(),
            pid_file: pid_file.to_path_buf(),
            extra,
            master: master.unwrap_or_else(|| panic!("nginx wrote no pid file: {startup}")),
        }
    }

    fn proxy(&self, name: &str) -> Proxy {
        let mut command: Vec<String> = [NGINX, "-e", "stderr", "-p"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        command.push(format!("{}/", self.prefix.display()));
        command.extend(self.extra.iter().cloned());
        let exec = LocalExec::new(name);
        Proxy::new(name, Arc::new(exec), Arc::new(LocalFiles::new(name))).with_nginx(command)
    }

    fn conf_path(&self) -> String {
        self.conf.display().to_string()
    }

    fn live(&self) -> Vec<u8> {
        std::fs::read(&self.conf).unwrap()
    }

    fn inode(&self) -> u64 {
        std::fs::metadata(&self.conf).unwrap().ino()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // Only the master this test started, by its id.
        let _ = Command::new("kill")
            .args(["-TERM", &self.master.to_string()])
            .status();
        for _ in 0..100 {
            if !Path::new(&format!("/proc/{}", self.master)).exists() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = Command::new("kill")
            .args(["-KILL", &self.master.to_string()])
            .status();
        let _ = &self.pid_file;
    }
}

/// The operator's config of one nginx: upstream `backend` with the server
/// lines given, a front on `front`, and an include of `conf.d/*.conf`.
fn config(dir: &Path, front: u16, servers: &str) -> String {
    let d = dir.display();
    format!(
        "# the operator's own config\n\
         worker_processes 2;\n\
         pid {d}/nginx.pid;\n\
         error_log {d}/error.log notice;\n\
         \n\
         events {{\n    worker_connections 512;\n}}\n\
         \n\
         http {{\n\
         \x20   access_log off;\n\
         \x20   client_body_temp_path {d}/tmp/body;\n\
         \x20   proxy_temp_path {d}/tmp/proxy;\n\
         \x20   fastcgi_temp_path {d}/tmp/fastcgi;\n\
         \x20   uwsgi_temp_path {d}/tmp/uwsgi;\n\
         \x20   scgi_temp_path {d}/tmp/scgi;\n\
         \x20   include {d}/conf.d/*.conf;\n\
         \n\
         \x20   upstream backend {{\n\
         {servers}\
         \x20   }}\n\
         \n\
         \x20   server {{\n\
         \x20       listen 127.0.0.1:{front};\n\
         \x20       location / {{\n\
         \x20           proxy_pass http://backend;  # the seed's layout\n\
         \x20       }}\n\
         \x20   }}\n\
         }}\n"
    )
}

/// One nginx in a temporary directory, its upstream on `backend` port
/// `port` with the servers given, and a router on it.
struct Single {
    router: NginxRouter,
    front: u16,
    /// Stopped before its directory is removed (fields drop in order).
    nginx: Nginx,
    _dir: tempfile::TempDir,
}

async fn single(port: u16, hosts: &[&str]) -> Single {
    require_nginx();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    make_dir(&root);
    make_dir(&root.join("conf.d"));
    let front = free_port();
    let servers: String = hosts
        .iter()
        .map(|h| format!("        server {h}:{port};\n"))
        .collect();
    let conf = root.join("nginx.conf");
    std::fs::write(&conf, config(&root, front, &servers)).unwrap();
    let nginx = Nginx::start(&root, &conf, &root.join("nginx.pid"), Vec::new());
    let router = open_router(&nginx).await.unwrap();
    workers_started(&router).await;
    Single {
        _dir: dir,
        nginx,
        front,
        router,
    }
}

/// A router on `nginx` with the default reload timeout (10 s).
async fn open_router(nginx: &Nginx) -> Result<NginxRouter, RouterError> {
    let options = NginxRouterOptions::new("backend", nginx.conf_path());
    NginxRouter::open(options, vec![nginx.proxy("nginx-1")]).await
}

/// Waits until every master has forked its workers (it writes its pid file
/// first).
async fn workers_started(router: &NginxRouter) {
    for _ in 0..200 {
        let all = router.processes().await.unwrap();
        if all.iter().all(|(_, workers)| !workers.is_empty()) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("nginx started no worker processes");
}

fn change(set: Vec<Route>, remove: Vec<Target>) -> RouteChange {
    RouteChange { set, remove }
}

/// Inserts `text` as a line after the first line that contains `after`;
/// returns its 1-based line number.
fn insert_line(path: &Path, after: &str, text: &str) -> usize {
    let old = std::fs::read_to_string(path).unwrap();
    let mut lines: Vec<&str> = old.split_inclusive('\n').collect();
    let at = lines.iter().position(|l| l.contains(after)).unwrap() + 1;
    let new_line = format!("{text}\n");
    lines.insert(at, &new_line);
    // In place, as an operator's editor would on a bind-mounted file.
    std::fs::write(path, lines.concat()).unwrap();
    at + 1
}

// ------------------------------------------------------------------- tests

#[derive(Default, Debug)]
struct Load {
    by: BTreeMap<String, u64>,
    failures: Vec<String>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn changes_under_continuous_load_fail_no_request() {
    let (port, backends) = backends(&["a", "b", "c"]).await;
    let [a, b, c] = &backends[..] else {
        unreachable!()
    };
    let s = single(port, &[&a.ip]).await;
    assert_eq!(
        s.router.port(),
        port,
        "the port comes from the operator's line"
    );
    assert_eq!(s.router.routes().await.unwrap(), vec![a.route(1)]);

    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<JoinHandle<Load>> = (0..4)
        .map(|_| {
            let stop = stop.clone();
            let front = s.front;
            tokio::spawn(async move {
                let mut load = Load::default();
                let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
                for _ in 0..100_000 {
                    if stop.load(Ordering::Relaxed) || tokio::time::Instant::now() > deadline {
                        break;
                    }
                    match get(front, "/").await {
                        Ok((200, body)) => *load.by.entry(body).or_default() += 1,
                        other => load.failures.push(format!("{other:?}")),
                    }
                }
                load
            })
        })
        .collect();
    let pause = || tokio::time::sleep(Duration::from_millis(300));

    pause().await;
    let started = std::time::Instant::now();
    s.router
        .apply(&change(vec![b.route(1)], vec![]))
        .await
        .unwrap();
    let one_apply = started.elapsed();
    pause().await;
    s.router
        .apply(&change(vec![a.route(1), b.route(3)], vec![]))
        .await
        .unwrap();
    pause().await;
    let ticket = s
        .router
        .apply(&change(vec![], vec![a.target()]))
        .await
        .unwrap();
    let report = s
        .router
        .drain(&ticket, Duration::from_secs(30))
        .await
        .unwrap();
    assert!(!report.timed_out, "{report:?}");
    a.stop();
    pause().await;
    let ticket = s
        .router
        .apply(&change(vec![c.route(2)], vec![b.target()]))
        .await
        .unwrap();
    let report = s
        .router
        .drain(&ticket, Duration::from_secs(30))
        .await
        .unwrap();
    assert!(!report.timed_out, "{report:?}");
    b.stop();
    pause().await;

    stop.store(true, Ordering::Relaxed);
    let mut total = Load::default();
    for client in clients {
        let load = client.await.unwrap();
        for (k, v) in load.by {
            *total.by.entry(k).or_default() += v;
        }
        total.failures.extend(load.failures);
    }
    assert!(
        total.failures.is_empty(),
        "{} failed requests: {:?}",
        total.failures.len(),
        &total.failures[..total.failures.len().min(5)]
    );
    for name in ["a", "b", "c"] {
        assert!(
            total.by.get(name).copied().unwrap_or(0) > 0,
            "{name} served nothing: {total:?}"
        );
    }
    assert_eq!(s.router.routes().await.unwrap(), vec![c.route(2)]);
    assert!(bodies(s.front, 10).await.iter().all(|b| b == "c"));
    eprintln!("served under load: {:?}", total.by);
    eprintln!("one apply (edit, nginx -t, write, reload, verified): {one_apply:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_request_in_flight_to_a_removed_backend_completes_and_the_drain_waits_for_its_worker() {
    let (port, mut backends) = backends(&["a", "b"]).await;
    let s = single(port, &[&backends[0].ip]).await;
    let (master, old_workers) = s.router.processes().await.unwrap()[0].clone();
    assert!(!old_workers.is_empty());

    // A request held by backend a, through nginx.
    let front = s.front;
    let slow = tokio::spawn(async move { get(front, "/hold").await });
    tokio::time::timeout(Duration::from_secs(10), backends[0].held.recv())
        .await
        .expect("the held request never reached backend a");

    let (a, b) = (&backends[0], &backends[1]);
    let ticket = s
        .router
        .apply(&change(vec![b.route(1)], vec![a.target()]))
        .await
        .unwrap();
    assert_eq!(ticket.removed, vec![a.target()]);
    // The router told the old workers to quit itself, once the new ones
    // ran, rather than waiting out the master's 100 ms pause (the master's
    // own quit command comes later, over its channel to each worker).
    let log = std::fs::read_to_string(s._dir.path().join("error.log")).unwrap();
    for pid in &old_workers {
        let told = log.lines().any(|l| {
            l.contains(&format!(" {pid}#{pid}: "))
                && l.split_once("signal 3 (SIGQUIT) received from ")
                    .and_then(|(_, from)| from.split(|c: char| !c.is_ascii_digit()).next())
                    .is_some_and(|from| from != master.to_string())
        });
        assert!(
            told,
            "old worker {pid} was not told to quit by the router:\n{log}"
        );
    }
    assert!(bodies(s.front, 10).await.iter().all(|body| body == "b"));
    assert!(!slow.is_finished(), "backend a still holds the request");

    // While a holds it, the drain cannot end: a short one times out and
    // names the old worker still running as cut.
    let report = s
        .router
        .drain(&ticket, Duration::from_millis(300))
        .await
        .unwrap();
    assert!(report.timed_out, "{report:?}");
    assert!(!report.cut.is_empty(), "{report:?}");
    for cut in &report.cut {
        let pid: u32 = cut.split(' ').nth(2).unwrap().parse().unwrap();
        assert!(
            old_workers.contains(&pid),
            "{cut} is not an old worker {old_workers:?}"
        );
    }

    // A resumed run (another router, a ticket it did not issue) waits for
    // every worker still shutting down: the same one.
    let resumed = open_router(&s.nginx).await.unwrap();
    let unknown = DrainTicket {
        generation: 0,
        removed: vec![a.target()],
    };
    let report = resumed
        .drain(&unknown, Duration::from_millis(300))
        .await
        .unwrap();
    assert!(report.timed_out, "{report:?}");
    assert!(!report.cut.is_empty(), "{report:?}");
    for cut in &report.cut {
        let pid: u32 = cut.split(' ').nth(2).unwrap().parse().unwrap();
        assert!(old_workers.contains(&pid), "{cut} {old_workers:?}");
    }

    // Released, the request completes with a's answer, and the drain ends
    // once the old workers have exited, naming each of them.
    let drain = {
        let release = a.release.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(200)).await;
            release.add_permits(1);
        })
    };
    let report = s
        .router
        .drain(&ticket, Duration::from_secs(30))
        .await
        .unwrap();
    drain.await.unwrap();
    assert!(!report.timed_out, "{report:?}");
    assert!(report.cut.is_empty());
    for pid in &old_workers {
        assert!(
            report
                .waited_for
                .contains(&format!("nginx worker {pid} in nginx-1")),
            "{pid} missing from {:?}",
            report.waited_for
        );
    }
    assert_eq!(slow.await.unwrap(), Ok((200, "a".to_string())));
    let now = s.router.processes().await.unwrap()[0].1.clone();
    assert!(now.iter().all(|pid| !old_workers.contains(pid)), "{now:?}");
    assert_eq!(backends[0].served.load(Ordering::Relaxed), 1);
    backends.clear();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_change_keeps_the_live_file_and_the_processes() {
    let (port, backends) = backends(&["a", "b"]).await;
    let (a, b) = (&backends[0], &backends[1]);
    let s = single(port, &[&a.ip]).await;
    let conf = s.nginx.conf.clone();

    // An error in the live file itself: named by its own path and line.
    let line = insert_line(&conf, "access_log off;", "    bogus_directive on;");
    let before = s.nginx.live();
    let inode = s.nginx.inode();
    let processes = s.router.processes().await.unwrap();
    match s.router.apply(&change(vec![b.route(1)], vec![])).await {
        Err(RouterError::Invalid { location, message }) => {
            assert_eq!(location, format!("{}:{line}", conf.display()));
            assert!(
                message.contains("unknown directive \"bogus_directive\""),
                "{message}"
            );
            assert!(!message.contains(CANDIDATE_SUFFIX), "{message}");
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert_eq!(s.nginx.live(), before, "the live file changed");
    assert_eq!(s.nginx.inode(), inode);
    assert_eq!(s.router.processes().await.unwrap(), processes);
    assert_eq!(own_files(&conf), Vec::<String>::new());
    assert!(bodies(s.front, 5).await.iter().all(|body| body == "a"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_include_is_named_and_nothing_changes() {
    let (port, backends) = backends(&["a", "b"]).await;
    let (a, b) = (&backends[0], &backends[1]);
    let s = single(port, &[&a.ip]).await;
    let broken = s.nginx.prefix.join("conf.d/broken.conf");
    std::fs::write(
        &broken,
        "# added after nginx started\nno_such_directive 1;\n",
    )
    .unwrap();
    let before = s.nginx.live();
    let processes = s.router.processes().await.unwrap();
    match s.router.apply(&change(vec![b.route(1)], vec![])).await {
        Err(RouterError::Invalid { location, message }) => {
            assert_eq!(location, format!("{}:2", broken.display()));
            assert!(message.contains("no_such_directive"), "{message}");
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert_eq!(s.nginx.live(), before);
    assert_eq!(s.router.processes().await.unwrap(), processes);
    assert!(bodies(s.front, 5).await.iter().all(|body| body == "a"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_editor_refuses_to_remove_the_last_server() {
    let (port, backends) = backends(&["a"]).await;
    let s = single(port, &[&backends[0].ip]).await;
    let before = s.nginx.live();
    let processes = s.router.processes().await.unwrap();
    let upstream_line = String::from_utf8(before.clone())
        .unwrap()
        .lines()
        .position(|l| l.contains("upstream backend {"))
        .unwrap()
        + 1;
    let at = format!("{}:{upstream_line}", s.nginx.conf_path());
    match s
        .router
        .apply(&change(vec![], vec![backends[0].target()]))
        .await
    {
        Err(RouterError::Invalid { location, message }) => {
            assert_eq!(location, at);
            assert!(message.contains("no primary server"), "{message}");
        }
        other => panic!("expected the editor to refuse, got {other:?}"),
    }
    // A weight of 0 is refused the same way (nginx: invalid parameter).
    match s
        .router
        .apply(&change(vec![backends[0].route(0)], vec![]))
        .await
    {
        Err(RouterError::Invalid { location, message }) => {
            assert_eq!(location, at);
            assert!(message.contains("weight=0"), "{message}");
        }
        other => panic!("expected the editor to refuse, got {other:?}"),
    }
    assert_eq!(s.nginx.live(), before);
    assert_eq!(s.router.processes().await.unwrap(), processes);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_the_master_refuses_is_detected_and_undone() {
    let (port, backends) = backends(&["a", "b"]).await;
    let (a, b) = (&backends[0], &backends[1]);
    let s = single(port, &[&a.ip]).await;
    // The operator added a server on a port that something else holds:
    // nginx -t does not bind, so only the master's reload fails.
    let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = held.local_addr().unwrap().port();
    insert_line(
        &s.nginx.conf,
        "include ",
        &format!("    server {{ listen 127.0.0.1:{taken}; return 204; }}"),
    );
    let before = s.nginx.live();
    let inode = s.nginx.inode();
    // A refused reload is seen only when the reload timeout runs out.
    let mut options = NginxRouterOptions::new("backend", s.nginx.conf_path());
    options.reload_timeout = Duration::from_secs(3);
    let router = NginxRouter::open(options, vec![s.nginx.proxy("nginx-1")])
        .await
        .unwrap();
    let processes = router.processes().await.unwrap();
    match router.apply(&change(vec![b.route(1)], vec![])).await {
        Err(RouterError::Reload(message)) => {
            assert!(
                message.contains("kept its previous configuration"),
                "{message}"
            );
            assert!(message.contains("was put back"), "{message}");
        }
        other => panic!("expected a reload that did not take, got {other:?}"),
    }
    assert_eq!(s.nginx.live(), before, "the previous bytes are back");
    assert_eq!(s.nginx.inode(), inode);
    journal_is_gone(&s);
    assert_eq!(router.processes().await.unwrap(), processes);
    assert!(bodies(s.front, 10).await.iter().all(|body| body == "a"));
    drop(held);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_live_file_is_written_in_place_and_only_the_upstream_changes() {
    let (port, backends) = backends(&["a", "b"]).await;
    let (a, b) = (&backends[0], &backends[1]);
    let s = single(port, &[&a.ip]).await;
    let original = s.nginx.live();
    let inode = s.nginx.inode();
    let processes = s.router.processes().await.unwrap();

    s.router
        .apply(&change(vec![b.route(2)], vec![]))
        .await
        .unwrap();
    assert_eq!(s.nginx.inode(), inode, "the inode a bind mount pins");
    let text = String::from_utf8(s.nginx.live()).unwrap();
    assert!(
        text.contains(&format!("server {}:{port} weight=2;", b.ip)),
        "{text}"
    );
    assert_eq!(
        s.router.routes().await.unwrap(),
        vec![a.route(1), b.route(2)]
    );
    // Nothing taken out: the change is done once the new workers run.
    let right_after = s.router.processes().await.unwrap();
    assert!(
        right_after[0]
            .1
            .iter()
            .any(|pid| !processes[0].1.contains(pid)),
        "new workers when the change returns: {right_after:?} {processes:?}"
    );
    let now = after_old_quit(&s.router, &processes).await;
    assert_eq!(now[0].0, processes[0].0, "same master");
    assert!(
        now[0].1.iter().all(|pid| !processes[0].1.contains(pid)),
        "new workers after the reload: {now:?} {processes:?}"
    );
    let served = bodies(s.front, 30).await;
    assert!(served.iter().any(|x| x == "b") && served.iter().any(|x| x == "a"));

    // The same change again changes nothing, so nginx is not reloaded (each
    // reload closes idle keep-alive connections).
    let written = s.nginx.live();
    let ticket = s
        .router
        .apply(&change(vec![b.route(2)], vec![]))
        .await
        .unwrap();
    assert_eq!(s.nginx.live(), written);
    assert_eq!(s.router.processes().await.unwrap(), now);
    assert_eq!(ticket.generation, 2);

    // Taking it out again gives the operator's file back byte for byte.
    let ticket = s
        .router
        .apply(&change(vec![], vec![b.target()]))
        .await
        .unwrap();
    s.router
        .drain(&ticket, Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(s.nginx.live(), original);
    assert_eq!(s.nginx.inode(), inode);
    assert_eq!(
        own_files(Path::new(&s.nginx.conf_path())),
        Vec::<String>::new()
    );
    journal_is_gone(&s);

    // The strategies hold it as a trait object.
    let shared: Arc<dyn TrafficRouter> = Arc::new(open_router(&s.nginx).await.unwrap());
    assert_eq!(shared.routes().await.unwrap(), vec![a.route(1)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_replica_is_reloaded_and_a_refusal_in_one_undoes_the_others() {
    require_nginx();
    let (port, backends) = backends(&["a", "b"]).await;
    let (a, b) = (&backends[0], &backends[1]);
    let r = Replicas::start(port, &a.ip);
    let router = r.router().await.unwrap();
    let (conf, front) = (r.conf.clone(), r.front);
    workers_started(&router).await;
    let first = router.processes().await.unwrap();
    assert_eq!(first.len(), 2);
    assert_ne!(first[0].0, first[1].0);

    let ticket = router
        .apply(&change(vec![b.route(1)], vec![a.target()]))
        .await
        .unwrap();
    let second = router.processes().await.unwrap();
    for (before, after) in first.iter().zip(&second) {
        assert_eq!(before.0, after.0);
        assert!(
            after.1.iter().all(|pid| !before.1.contains(pid)),
            "{first:?} {second:?}"
        );
    }
    let report = router
        .drain(&ticket, Duration::from_secs(30))
        .await
        .unwrap();
    let settled = router.processes().await.unwrap();
    assert!(report
        .waited_for
        .iter()
        .any(|w| w.ends_with("in replica-1")));
    assert!(report
        .waited_for
        .iter()
        .any(|w| w.ends_with("in replica-2")));
    assert!(bodies(front, 20).await.iter().all(|body| body == "b"));

    // A new listener on a free port: replica-1 takes it on its reload, so
    // replica-2's master cannot bind it and refuses; replica-1 is put back.
    let extra_port = free_port();
    insert_line(
        &conf,
        "access_log off;",
        &format!("    server {{ listen 127.0.0.1:{extra_port}; return 204; }}"),
    );
    let before = std::fs::read(&conf).unwrap();
    match router
        .apply(&change(vec![a.route(1)], vec![b.target()]))
        .await
    {
        Err(RouterError::Reload(message)) => {
            assert!(message.contains("replica-2"), "{message}");
            assert!(
                message.contains("replica-1 was put back on its previous config"),
                "{message}"
            );
        }
        other => panic!("expected replica-2 to refuse, got {other:?}"),
    }
    assert_eq!(std::fs::read(&conf).unwrap(), before);
    assert_eq!(own_files(&conf), Vec::<String>::new());
    let third = router.processes().await.unwrap();
    assert_eq!(third[1], settled[1], "replica-2 kept its workers");
    assert!(bodies(front, 20).await.iter().all(|body| body == "b"));
}

/// What a run killed while writing the live file leaves: the journal beside
/// it, and the live file torn (`torn`) or whole.
fn interrupted_commit(s: &Single, port: u16, torn: bool) -> (Vec<u8>, Vec<u8>) {
    let original = s.nginx.live();
    let text = String::from_utf8(original.clone()).unwrap();
    let line = format!("server 127.0.0.2:{port};");
    let next = text
        .replace(&line, &format!("{line}\n        server 127.0.0.3:{port};"))
        .into_bytes();
    assert_ne!(next, original);
    let conf = s.nginx.conf_path();
    std::fs::write(format!("{conf}{PREVIOUS_SUFFIX}"), &original).unwrap();
    std::fs::write(format!("{conf}{NEXT_SUFFIX}"), &next).unwrap();
    // An interrupted in-place write: the first bytes of the new config over
    // the previous one, whose length is set only at the end.
    let live = if torn {
        // Cut a few bytes past where the two start to differ.
        let differ = original
            .iter()
            .zip(&next)
            .take_while(|(a, b)| a == b)
            .count();
        let cut = differ + 5;
        assert!(cut < original.len());
        let mut live = next[..cut].to_vec();
        live.extend_from_slice(&original[cut..]);
        live
    } else {
        next.clone()
    };
    std::fs::write(&conf, live).unwrap();
    (original, next)
}

fn journal_is_gone(s: &Single) {
    let left = own_files(Path::new(&s.nginx.conf_path()));
    assert!(left.is_empty(), "left beside the live file: {left:?}");
}

/// The router's own files beside `conf` (candidates and journals of any run).
fn own_files(conf: &Path) -> Vec<String> {
    let name = conf.file_name().unwrap().to_string_lossy().to_string();
    let mut found: Vec<String> = std::fs::read_dir(conf.parent().unwrap())
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().to_string())
        .filter(|f| {
            [CANDIDATE_SUFFIX, PREVIOUS_SUFFIX, NEXT_SUFFIX]
                .iter()
                .any(|suffix| f.starts_with(&format!("{name}{suffix}")))
        })
        .collect();
    found.sort();
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_file_torn_by_a_crash_gets_its_previous_bytes_back_on_open() {
    let (port, backends) = backends(&["a", "b"]).await;
    let s = single(port, &[&backends[0].ip]).await;
    let processes = s.router.processes().await.unwrap();
    let inode = s.nginx.inode();
    let (original, _) = interrupted_commit(&s, port, true);
    // (A torn file would not even parse: open repairs it first.)
    let router = open_router(&s.nginx).await.unwrap();
    assert_eq!(router.recovered().len(), 1, "{:?}", router.recovered());
    let note = &router.recovered()[0];
    assert!(note.contains("previous bytes were put back"), "{note}");
    assert!(note.contains("reloaded"), "{note}");
    assert_eq!(s.nginx.live(), original);
    assert_eq!(s.nginx.inode(), inode);
    journal_is_gone(&s);
    let now = router.processes().await.unwrap();
    assert_eq!(now[0].0, processes[0].0);
    assert!(now[0].1.iter().all(|pid| !processes[0].1.contains(pid)));
    assert!(bodies(s.front, 5).await.iter().all(|body| body == "a"));
    // Opened again, there is nothing left to repair.
    assert!(open_router(&s.nginx).await.unwrap().recovered().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_written_but_not_reloaded_before_a_crash_is_reloaded_on_open() {
    let (port, backends) = backends(&["a", "b"]).await;
    let s = single(port, &[&backends[0].ip]).await;
    let processes = s.router.processes().await.unwrap();
    let (_, next) = interrupted_commit(&s, port, false);
    let router = open_router(&s.nginx).await.unwrap();
    assert_eq!(router.recovered().len(), 1, "{:?}", router.recovered());
    assert!(
        router.recovered()[0].contains("written whole"),
        "{:?}",
        router.recovered()
    );
    assert_eq!(s.nginx.live(), next);
    journal_is_gone(&s);
    let now = router.processes().await.unwrap();
    assert_eq!(now[0].0, processes[0].0);
    assert!(now[0].1.iter().all(|pid| !processes[0].1.contains(pid)));
    assert_eq!(
        router.routes().await.unwrap(),
        vec![backends[0].route(1), backends[1].route(1)]
    );
    let served = bodies(s.front, 20).await;
    assert!(served.iter().any(|x| x == "b"), "{served:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_candidate_of_a_run_killed_before_its_commit_is_removed_on_open() {
    let (port, backends) = backends(&["a"]).await;
    let s = single(port, &[&backends[0].ip]).await;
    let original = s.nginx.live();
    // A run killed while it tested its candidate: no journal yet, the live
    // file untouched, and its candidate (and a half-written one) beside it.
    let conf = s.nginx.conf_path();
    std::fs::write(format!("{conf}{CANDIDATE_SUFFIX}.dead-1"), &original).unwrap();
    std::fs::write(format!("{conf}{CANDIDATE_SUFFIX}.dead-2"), b"upstream").unwrap();
    // A file that only looks alike is not the router's and stays.
    let other = format!("{conf}.rollout-candidateX");
    std::fs::write(&other, b"keep").unwrap();
    let router = open_router(&s.nginx).await.unwrap();
    // Nothing to repair in the live file, so nothing to reload or tell.
    assert!(router.recovered().is_empty(), "{:?}", router.recovered());
    assert_eq!(s.nginx.live(), original);
    assert_eq!(
        own_files(Path::new(&conf)),
        vec!["nginx.conf.rollout-candidateX".to_string()]
    );
    assert_eq!(std::fs::read(&other).unwrap(), b"keep");
    assert!(bodies(s.front, 3).await.iter().all(|body| body == "a"));
}

/// Two nginx replicas reading one shared file (as the replicas of a Compose
/// service share a bind-mounted file), with a front port shared through
/// reuseport; each has a prefix directory and pid file of its own.
struct Replicas {
    conf: PathBuf,
    front: u16,
    nginx: Vec<Nginx>,
    _dir: tempfile::TempDir,
}

impl Replicas {
    fn start(port: u16, first_host: &str) -> Replicas {
        require_nginx();
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_path_buf();
        make_dir(&root);
        let front = free_port();
        let conf = root.join("nginx.conf");
        let text = format!(
            "worker_processes 1;\nerror_log error.log;\nevents {{ worker_connections 128; }}\n\
             http {{\n    access_log off;\n    client_body_temp_path tmp/body;\n    proxy_temp_path tmp/proxy;\n\
             \x20   fastcgi_temp_path tmp/fastcgi;\n    uwsgi_temp_path tmp/uwsgi;\n    scgi_temp_path tmp/scgi;\n\
             \x20   upstream backend {{\n        server {first_host}:{port};\n    }}\n\
             \x20   server {{\n        listen 127.0.0.1:{front} reuseport;\n        location / {{ proxy_pass http://backend; }}\n    }}\n}}\n"
        );
        std::fs::write(&conf, text).unwrap();
        let mut nginx = Vec::new();
        for n in 1..=2 {
            let prefix = root.join(format!("replica-{n}"));
            make_dir(&prefix);
            let pid = prefix.join("nginx.pid");
            let extra = vec!["-g".to_string(), format!("pid {};", pid.display())];
            nginx.push(Nginx::start(&prefix, &conf, &pid, extra));
        }
        Replicas {
            conf,
            front,
            nginx,
            _dir: dir,
        }
    }

    async fn router(&self) -> Result<NginxRouter, RouterError> {
        let proxies = self
            .nginx
            .iter()
            .enumerate()
            .map(|(i, n)| {
                n.proxy(&format!("replica-{}", i + 1))
                    .with_pid_file(n.pid_file.display().to_string())
            })
            .collect();
        let mut options = NginxRouterOptions::new("backend", self.conf.display().to_string());
        // A refused reload is seen only when this runs out.
        options.reload_timeout = Duration::from_secs(5);
        let router = NginxRouter::open(options, proxies).await?;
        workers_started(&router).await;
        Ok(router)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_between_two_replicas_is_finished_on_open() {
    let (port, backends) = backends(&["a", "b"]).await;
    let (a, b) = (&backends[0], &backends[1]);
    let r = Replicas::start(port, &a.ip);
    let router = r.router().await.unwrap();
    let first = router.processes().await.unwrap();

    // The killed run had written the shared file and reloaded replica-1,
    // not replica-2; its journal is beside the file.
    let original = std::fs::read(&r.conf).unwrap();
    let next = String::from_utf8(original.clone())
        .unwrap()
        .replace(
            &format!("server {}:{port};", a.ip),
            &format!("server {}:{port};", b.ip),
        )
        .into_bytes();
    assert_ne!(next, original);
    let conf = r.conf.display().to_string();
    std::fs::write(format!("{conf}{PREVIOUS_SUFFIX}"), &original).unwrap();
    std::fs::write(format!("{conf}{NEXT_SUFFIX}"), &next).unwrap();
    std::fs::write(&r.conf, &next).unwrap();
    let n1 = &r.nginx[0];
    let status = Command::new(NGINX)
        .args(["-e", "stderr", "-p"])
        .arg(&n1.prefix)
        .args(&n1.extra)
        .arg("-c")
        .arg(&r.conf)
        .args(["-s", "reload"])
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    for _ in 0..200 {
        let now = router.processes().await.unwrap();
        if now[0].1.iter().all(|pid| !first[0].1.contains(pid)) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }

    let resumed = r.router().await.unwrap();
    assert_eq!(resumed.recovered().len(), 2, "{:?}", resumed.recovered());
    assert!(resumed.recovered()[1].starts_with("replica-2: "));
    let after = resumed.processes().await.unwrap();
    assert_eq!(after[1].0, first[1].0);
    assert!(
        after[1].1.iter().all(|pid| !first[1].1.contains(pid)),
        "replica-2 was reloaded: {first:?} {after:?}"
    );
    assert_eq!(std::fs::read(&r.conf).unwrap(), next);
    assert_eq!(own_files(&r.conf), Vec::<String>::new());
    assert!(bodies(r.front, 20).await.iter().all(|body| body == "b"));
}

/// nginx whose main file includes `conf.d/*.conf` (as the official image's
/// does) and whose upstream lives in `conf.d/app.conf`; the router is
/// opened with that file as the upstream file.
async fn included(port: u16, host: &str) -> (Single, PathBuf) {
    require_nginx();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    make_dir(&root);
    make_dir(&root.join("conf.d"));
    let front = free_port();
    let whole = config(&root, front, &format!("        server {host}:{port};\n"));
    let start = whole.find("    upstream backend {").unwrap();
    let end = start + whole[start..].find("    }\n").unwrap() + "    }\n".len();
    let main = format!("{}{}", &whole[..start], &whole[end..]);
    let conf = root.join("nginx.conf");
    std::fs::write(&conf, main).unwrap();
    let app = root.join("conf.d/app.conf");
    std::fs::write(
        &app,
        format!("# the operator's upstream\nupstream backend {{\n    server {host}:{port};\n}}\n"),
    )
    .unwrap();
    let nginx = Nginx::start(&root, &conf, &root.join("nginx.pid"), Vec::new());
    let router = open_included(&nginx, &app).await.unwrap();
    workers_started(&router).await;
    (
        Single {
            _dir: dir,
            nginx,
            front,
            router,
        },
        app,
    )
}

async fn open_included(nginx: &Nginx, upstream_file: &Path) -> Result<NginxRouter, RouterError> {
    let mut options = NginxRouterOptions::new("backend", nginx.conf_path());
    options.upstream_file = Some(upstream_file.display().to_string());
    NginxRouter::open(options, vec![nginx.proxy("nginx-1")]).await
}

fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_in_an_included_file_is_edited_there_and_validated_through_the_main_file() {
    let (port, backends) = backends(&["a", "b"]).await;
    let (a, b) = (&backends[0], &backends[1]);
    let (s, app) = included(port, &a.ip).await;
    let conf_d = app.parent().unwrap().to_path_buf();
    assert_eq!(s.router.port(), port);
    assert_eq!(s.router.routes().await.unwrap(), vec![a.route(1)]);
    let main = s.nginx.live();
    let inode = std::fs::metadata(&app).unwrap().ino();
    std::fs::write(conf_d.join("other.conf"), "# another file of the glob\n").unwrap();

    let before = s.router.processes().await.unwrap();
    s.router
        .apply(&change(vec![b.route(1)], vec![]))
        .await
        .unwrap();
    after_old_quit(&s.router, &before).await;
    let text = std::fs::read_to_string(&app).unwrap();
    assert!(
        text.contains(&format!("    server {}:{port};\n", b.ip)),
        "{text}"
    );
    assert_eq!(s.nginx.live(), main, "the main file is not touched");
    assert_eq!(std::fs::metadata(&app).unwrap().ino(), inode);
    assert_eq!(listing(&conf_d), vec!["app.conf", "other.conf"]);
    assert_eq!(
        listing(&s.nginx.prefix)
            .iter()
            .filter(|n| n.starts_with("nginx.conf"))
            .collect::<Vec<_>>(),
        vec!["nginx.conf"]
    );
    let served = bodies(s.front, 30).await;
    assert!(served.iter().any(|x| x == "a") && served.iter().any(|x| x == "b"));

    // The candidate is checked with the glob's other files: one broken
    // there is named, and nothing changes.
    std::fs::write(conf_d.join("other.conf"), "unknown_thing on;\n").unwrap();
    let before = std::fs::read(&app).unwrap();
    let processes = s.router.processes().await.unwrap();
    match s.router.apply(&change(vec![], vec![a.target()])).await {
        Err(RouterError::Invalid { location, message }) => {
            assert_eq!(
                location,
                format!("{}:1", conf_d.join("other.conf").display())
            );
            assert!(message.contains("unknown_thing"), "{message}");
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert_eq!(std::fs::read(&app).unwrap(), before);
    assert_eq!(s.router.processes().await.unwrap(), processes);
    std::fs::remove_file(conf_d.join("other.conf")).unwrap();

    // An error in the upstream file is named by its own path and line.
    let line = insert_line(&app, "upstream backend {", "    bogus_in_upstream 1;");
    match s.router.apply(&change(vec![], vec![a.target()])).await {
        Err(RouterError::Invalid { location, .. }) => {
            assert_eq!(location, format!("{}:{line}", app.display()));
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    let fixed: String = std::fs::read_to_string(&app)
        .unwrap()
        .lines()
        .filter(|l| !l.contains("bogus_in_upstream"))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&app, fixed).unwrap();

    let ticket = s
        .router
        .apply(&change(vec![], vec![a.target()]))
        .await
        .unwrap();
    let report = s
        .router
        .drain(&ticket, Duration::from_secs(30))
        .await
        .unwrap();
    assert!(
        !report.timed_out && !report.waited_for.is_empty(),
        "{report:?}"
    );
    assert!(bodies(s.front, 10).await.iter().all(|x| x == "b"));
    assert_eq!(listing(&conf_d), vec!["app.conf"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_include_that_would_load_the_routers_own_files_is_refused() {
    let (port, backends) = backends(&["a"]).await;
    let (s, app) = included(port, &backends[0].ip).await;
    // The operator widens the glob to every file of conf.d.
    let main = String::from_utf8(s.nginx.live()).unwrap();
    let wide = main.replace("/conf.d/*.conf;", "/conf.d/*;");
    assert_ne!(wide, main);
    std::fs::write(&s.nginx.conf, wide).unwrap();
    match open_included(&s.nginx, &app).await {
        Err(RouterError::Config(message)) => {
            assert!(message.contains("would also load"), "{message}");
            assert!(message.contains("hint: narrow the include"), "{message}");
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    // An upstream file the main file does not include is refused too.
    let stray = s.nginx.prefix.join("stray.conf");
    std::fs::write(&stray, "upstream backend { server 127.0.0.2:1; }\n").unwrap();
    std::fs::write(&s.nginx.conf, main).unwrap();
    match open_included(&s.nginx, &stray).await {
        Err(RouterError::Config(message)) => {
            assert!(message.contains("does not include"), "{message}")
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
}

// ------------------------------------------------- one config, many rollouts

/// A config store that records every file written: the candidates nginx -t
/// was asked about, and every write of the live file.
struct Recording {
    inner: LocalFiles,
    candidates: std::sync::Mutex<Vec<Vec<u8>>>,
    committed: std::sync::Mutex<Vec<Vec<u8>>>,
}

#[async_trait::async_trait]
impl ConfigStore for Recording {
    async fn read(&self, path: &str) -> Result<Vec<u8>, ProxyError> {
        self.inner.read(path).await
    }
    async fn write_in_place(&self, path: &str, bytes: &[u8]) -> Result<(), ProxyError> {
        self.committed.lock().unwrap().push(bytes.to_vec());
        self.inner.write_in_place(path, bytes).await
    }
    async fn write_new(&self, path: &str, bytes: &[u8]) -> Result<(), ProxyError> {
        if path.contains(CANDIDATE_SUFFIX) {
            self.candidates.lock().unwrap().push(bytes.to_vec());
        }
        self.inner.write_new(path, bytes).await
    }
    async fn remove(&self, path: &str) -> Result<(), ProxyError> {
        self.inner.remove(path).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_routers_on_one_config_compose_their_edits_under_the_proxy_lock() {
    require_nginx();
    let (port, backends) = backends(&["w1", "w2", "a1", "a2"]).await;
    let [w1, w2, a1, a2] = &backends[..] else {
        unreachable!()
    };
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    make_dir(&root);
    make_dir(&root.join("conf.d"));
    let (web_front, api_front) = (free_port(), free_port());
    // One file, two upstreams: `web` and `api`, each with a front of its own.
    let text = config(&root, web_front, &format!("        server {}:{port};\n", w1.ip))
        .replace("upstream backend", "upstream web")
        .replace("proxy_pass http://backend;", "proxy_pass http://web;")
        .replace(
            "    server {\n",
            &format!(
                "    upstream api {{\n        server {}:{port};\n    }}\n\n    server {{\n        listen 127.0.0.1:{api_front};\n        location / {{ proxy_pass http://api; }}\n    }}\n\n    server {{\n",
                a1.ip
            ),
        );
    let conf = root.join("nginx.conf");
    std::fs::write(&conf, &text).unwrap();
    let nginx = Nginx::start(&root, &conf, &root.join("nginx.pid"), Vec::new());
    let store = Arc::new(Recording {
        inner: LocalFiles::new("nginx-1"),
        candidates: Default::default(),
        committed: Default::default(),
    });
    let locks = tempfile::tempdir().unwrap();
    let lock: Arc<dyn ProxyLock> = Arc::new(LocalLock::new(locks.path()));
    let waited = Arc::new(AtomicU64::new(0));
    let open = |upstream: &str, holder: &str| {
        let mut options = NginxRouterOptions::new(upstream, nginx.conf_path());
        options.services = vec![upstream.to_string()];
        let proxy = nginx.proxy("nginx-1");
        let proxy = Proxy::new("nginx-1", proxy.exec.clone(), store.clone())
            .with_nginx(proxy.nginx.clone().unwrap());
        let mut locking = ProxyLocking::new(lock.clone(), holder);
        locking.poll = Duration::from_millis(5);
        let waited = waited.clone();
        locking.on_wait = Arc::new(move |_| {
            waited.fetch_add(1, Ordering::Relaxed);
        });
        NginxRouter::open_locked(options, vec![proxy], locking)
    };
    let web = Arc::new(open("web", "web@test pid 1").await.unwrap());
    let api = Arc::new(open("api", "api@test pid 2").await.unwrap());
    assert_ne!(web.tag(), api.tag(), "each run names its own files");
    workers_started(&web).await;

    // Each router moves its upstream back and forth between its two
    // backends, both at once; the last change of each sets the second.
    let flip = |router: Arc<NginxRouter>, one: Target, two: Target| {
        tokio::spawn(async move {
            for i in 0..6 {
                let (set, gone) = if i % 2 == 0 {
                    (two.clone(), one.clone())
                } else {
                    (one.clone(), two.clone())
                };
                let set = vec![Route {
                    target: set,
                    weight: 1,
                }];
                router.apply(&change(set, vec![gone])).await.unwrap();
            }
        })
    };
    let (w, a) = (
        flip(web.clone(), w1.target(), w2.target()),
        flip(api.clone(), a1.target(), a2.target()),
    );
    w.await.unwrap();
    a.await.unwrap();

    // Both edits survived: each upstream ends on its first backend (six
    // flips), and the other upstream's lines are there too.
    assert_eq!(web.routes().await.unwrap(), vec![w1.route(1)]);
    assert_eq!(api.routes().await.unwrap(), vec![a1.route(1)]);
    assert!(bodies(web_front, 5).await.iter().all(|b| b == "w1"));
    assert!(bodies(api_front, 5).await.iter().all(|b| b == "a1"));
    // Every committed file is one that nginx -t accepted as a candidate,
    // and nginx -t accepts it again now.
    let candidates = store.candidates.lock().unwrap().clone();
    let committed = store.committed.lock().unwrap().clone();
    assert_eq!(committed.len(), 12, "one write per change, none put back");
    let check = root.join("check.conf");
    for bytes in &committed {
        assert!(
            candidates.contains(bytes),
            "a committed file was never tested"
        );
        std::fs::write(&check, bytes).unwrap();
        let out = Command::new(NGINX)
            .args(["-e", "stderr", "-t", "-q", "-p"])
            .arg(format!("{}/", root.display()))
            .arg("-c")
            .arg(&check)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert_eq!(own_files(&conf), Vec::<String>::new());
    assert!(
        waited.load(Ordering::Relaxed) > 0,
        "the two never waited for each other: the test shows nothing"
    );
    drop(web);
    drop(api);
    drop(nginx);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hand_edit_after_a_crash_is_left_alone_with_a_warning() {
    let (port, backends) = backends(&["a", "b"]).await;
    let s = single(port, &[&backends[0].ip]).await;
    let (original, _) = interrupted_commit(&s, port, false);
    // A person edits the file after the crash: a third server line.
    let conf = PathBuf::from(s.nginx.conf_path());
    let edited = String::from_utf8(original.clone())
        .unwrap()
        .replace(
            &format!("server {}:{port};", backends[0].ip),
            &format!(
                "server {}:{port};\n        server 127.0.0.9:{port} down;",
                backends[0].ip
            ),
        )
        .into_bytes();
    std::fs::write(&conf, &edited).unwrap();
    let router = open_router(&s.nginx).await.unwrap();
    assert_eq!(s.nginx.live(), edited, "the person's edit stays");
    let notes = router.recovered().join("\n");
    assert!(notes.contains("warning"), "{notes}");
    assert!(notes.contains("changed by someone"), "{notes}");
    assert!(notes.contains("+ server 127.0.0.9"), "{notes}");
    assert!(notes.contains("- server 127.0.0.3"), "{notes}");
    journal_is_gone(&s);
    let aside: Vec<_> = std::fs::read_dir(conf.parent().unwrap())
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().to_string())
        .filter(|f| f.contains(SET_ASIDE_SUFFIX))
        .collect();
    assert_eq!(aside.len(), 2, "{aside:?}");
    // The rollout goes on from the file as it is.
    router
        .apply(&change(
            vec![backends[1].route(1)],
            vec![backends[0].target()],
        ))
        .await
        .unwrap();
    let live = String::from_utf8(s.nginx.live()).unwrap();
    assert!(live.contains("127.0.0.9"), "{live}");

    // A hand edit nginx refuses stops the router, in nginx's words.
    let original = s.nginx.live();
    let mut next = original.clone();
    next.extend_from_slice(b"# the killed run's\n");
    let path = s.nginx.conf_path();
    std::fs::write(format!("{path}{PREVIOUS_SUFFIX}.dead"), &original).unwrap();
    std::fs::write(format!("{path}{NEXT_SUFFIX}.dead"), &next).unwrap();
    let broken = String::from_utf8(original).unwrap().replace(
        "access_log off;",
        "access_log off;\n    no_such_directive on;",
    );
    std::fs::write(&conf, broken).unwrap();
    match open_router(&s.nginx).await {
        Err(RouterError::Invalid { location, message }) => {
            assert!(location.starts_with(&s.nginx.conf_path()), "{location}");
            assert!(message.contains("no_such_directive"), "{message}");
        }
        other => panic!("expected nginx's refusal, got {other:?}"),
    }
}

/// A journal store in memory, counting saves: what the Docker backend keeps with the engine.
#[derive(Default)]
struct MemoryJournal {
    kept: std::sync::Mutex<Vec<(String, KeptCommit)>>,
    saves: AtomicU64,
}

#[async_trait::async_trait]
impl JournalStore for MemoryJournal {
    async fn save(
        &self,
        path: &str,
        tag: &str,
        previous: &[u8],
        next: &[u8],
    ) -> Result<(), ProxyError> {
        self.saves.fetch_add(1, Ordering::SeqCst);
        self.kept.lock().unwrap().push((
            path.into(),
            KeptCommit {
                tag: tag.into(),
                previous: previous.into(),
                next: next.into(),
            },
        ));
        Ok(())
    }
    async fn list(&self, path: &str) -> Result<Vec<KeptCommit>, ProxyError> {
        let kept = self.kept.lock().unwrap();
        Ok(kept
            .iter()
            .filter(|(p, _)| p == path)
            .map(|(_, k)| k.clone())
            .collect())
    }
    async fn remove(&self, path: &str, tag: &str) -> Result<(), ProxyError> {
        self.kept
            .lock()
            .unwrap()
            .retain(|(p, k)| !(p == path && k.tag == tag));
        Ok(())
    }
    async fn set_aside(&self, path: &str, tag: &str, _: u64) -> Result<(), ProxyError> {
        self.remove(path, tag).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_journal_kept_in_a_store_is_saved_for_each_commit_and_repairs_a_torn_file() {
    let (port, backends) = backends(&["a", "b"]).await;
    let s = single(port, &[&backends[0].ip]).await;
    let store = Arc::new(MemoryJournal::default());
    let open = || async {
        let options = NginxRouterOptions::new("backend", s.nginx.conf_path());
        let proxy = s.nginx.proxy("nginx-1").with_journal(store.clone());
        NginxRouter::open(options, vec![proxy]).await
    };
    // A commit saves its journal in the store, nothing beside the file, and removes it.
    let router = open().await.unwrap();
    router
        .apply(&change(vec![backends[1].route(1)], vec![]))
        .await
        .unwrap();
    assert_eq!(store.saves.load(Ordering::SeqCst), 1);
    assert!(store.kept.lock().unwrap().is_empty());
    assert!(own_files(Path::new(&s.nginx.conf_path())).is_empty());
    // A change nginx refuses: its journal, saved while nginx tested it, is gone again, and
    // the run's next change saves its own under the same tag.
    let conf = s.nginx.conf.clone();
    let line = insert_line(&conf, "access_log off;", "    bogus_directive on;");
    let before = s.nginx.live();
    match router
        .apply(&change(vec![], vec![backends[1].target()]))
        .await
    {
        Err(RouterError::Invalid { location, .. }) => {
            assert_eq!(location, format!("{}:{line}", conf.display()))
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert_eq!(s.nginx.live(), before);
    assert_eq!(store.saves.load(Ordering::SeqCst), 2);
    assert!(store.kept.lock().unwrap().is_empty());
    let fixed = String::from_utf8(before)
        .unwrap()
        .replace("    bogus_directive on;\n", "");
    std::fs::write(&conf, fixed).unwrap();
    router
        .apply(&change(vec![], vec![backends[1].target()]))
        .await
        .unwrap();
    assert_eq!(store.saves.load(Ordering::SeqCst), 3);
    assert!(store.kept.lock().unwrap().is_empty());
    // A torn file with its journal only in the store: open puts the previous bytes back.
    let original = s.nginx.live();
    let next = String::from_utf8(original.clone())
        .unwrap()
        .replace(
            "upstream backend {",
            "upstream backend {\n        server 127.0.0.9:1;",
        )
        .into_bytes();
    store
        .save(&s.nginx.conf_path(), "dead", &original, &next)
        .await
        .unwrap();
    let cut = original.len() + 3;
    std::fs::write(s.nginx.conf_path(), &next[..cut]).unwrap();
    let router = open().await.unwrap();
    assert!(
        router.recovered()[0].contains("previous bytes were put back"),
        "{:?}",
        router.recovered()
    );
    assert_eq!(s.nginx.live(), original);
    assert!(store.kept.lock().unwrap().is_empty());
}
