//! The client semantics against small local servers that misbehave on purpose: the one retry
//! on a stale keep-alive connection (GET only), refused connections, timeouts, non-2xx
//! answers, the mix of classes and connections, and the bounds in count and time.

use rollout_load::{run, Class, LoadConfig, LoadHandle, Outcome};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[derive(Clone, Copy, PartialEq)]
enum Behaviour {
    /// Answer every request, keep-alive.
    Normal,
    /// Read the second request on a connection, then close it without answering (the race a
    /// proxy reload causes).
    CloseOnSecondRequest,
    /// Never answer.
    Silent,
    /// Answer 502.
    BadGateway,
}

struct Server {
    addr: SocketAddr,
    connections: Arc<AtomicU64>,
}

async fn serve_conn(mut s: TcpStream, behaviour: Behaviour, n: u64) {
    let mut buf = Vec::new();
    let mut served = 0u64;
    loop {
        let end = loop {
            if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break p + 4;
            }
            let mut chunk = [0u8; 4096];
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(k) => buf.extend_from_slice(&chunk[..k]),
            }
        };
        let head = String::from_utf8_lossy(&buf[..end]).to_lowercase();
        let len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length: "))
            .map(|v| v.trim().parse().unwrap())
            .unwrap_or(0);
        while buf.len() < end + len {
            let mut chunk = [0u8; 4096];
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(k) => buf.extend_from_slice(&chunk[..k]),
            }
        }
        buf.drain(..end + len);
        served += 1;
        let close = head.contains("connection: close");
        let status = match behaviour {
            Behaviour::Silent => {
                tokio::time::sleep(Duration::from_secs(30)).await;
                return;
            }
            Behaviour::CloseOnSecondRequest if served == 2 => return,
            Behaviour::BadGateway => "502 Bad Gateway",
            _ => "200 OK",
        };
        if head.starts_with("get /slow") {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let answer = format!(
            "HTTP/1.1 {status}\r\nContent-Length: 2\r\nX-Demo-Version: v1\r\nX-Demo-Instance: conn-{n}\r\n\r\nok"
        );
        if s.write_all(answer.as_bytes()).await.is_err() || close {
            return;
        }
    }
}

impl Server {
    async fn start(behaviour: Behaviour) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let connections = Arc::new(AtomicU64::new(0));
        let count = connections.clone();
        tokio::spawn(async move {
            while let Ok((s, _)) = listener.accept().await {
                let n = count.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(serve_conn(s, behaviour, n));
            }
        });
        Server { addr, connections }
    }
}

/// `n` requests, one at a time in practice (20 per second against an instant server), all on
/// keep-alive connections unless asked.
fn sequential(addr: SocketAddr, n: u64) -> LoadConfig {
    let mut c = LoadConfig::new(addr);
    c.rate = 20;
    c.max_requests = Some(n);
    c.duration = Duration::from_secs(10);
    c.slow_share = 0.0;
    c.post_share = 0.0;
    c.new_connection_share = 0.0;
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_alive_connections_are_reused() {
    let server = Server::start(Behaviour::Normal).await;
    let report = run(sequential(server.addr, 10)).await.unwrap();
    assert_eq!((report.sent, report.ok, report.failed), (10, 10, 0));
    assert_eq!(server.connections.load(Ordering::SeqCst), 1);
    assert_eq!(report.versions.get("v1"), Some(&10));
    assert_eq!(report.instances.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_get_on_a_stale_connection_is_retried_once_and_counted_apart() {
    let server = Server::start(Behaviour::CloseOnSecondRequest).await;
    let report = run(sequential(server.addr, 10)).await.unwrap();
    // Every request but the first meets a connection closed under it, and succeeds on a new one.
    assert_eq!(report.failed, 0, "{report}");
    assert_eq!(report.stale_retries, 9, "{report}");
    assert_eq!(report.requests.iter().filter(|r| r.retried).count(), 9);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_post_on_a_stale_connection_is_not_retried() {
    let server = Server::start(Behaviour::CloseOnSecondRequest).await;
    let mut config = sequential(server.addr, 10);
    config.post_share = 1.0;
    let report = run(config).await.unwrap();
    assert_eq!(report.stale_retries, 0, "{report}");
    // Each failure leaves a fresh connection for the next POST, whose own second request fails.
    assert_eq!(report.failed, 5, "{report}");
    assert_eq!(report.failures.get(&Outcome::Closed), Some(&5));
    assert!(report.requests.iter().all(|r| r.class == Class::Post));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_connections_fail() {
    let addr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let report = run(sequential(addr, 5)).await.unwrap();
    assert_eq!(report.failed, 5);
    assert_eq!(report.failures.get(&Outcome::Refused), Some(&5));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silence_is_a_timeout_after_the_grace() {
    let server = Server::start(Behaviour::Silent).await;
    let mut config = sequential(server.addr, 3);
    config.timeout_grace = Duration::from_millis(300);
    let report = run(config).await.unwrap();
    assert_eq!(report.failures.get(&Outcome::Timeout), Some(&3), "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_non_2xx_answer_is_a_failure_with_its_status() {
    let server = Server::start(Behaviour::BadGateway).await;
    let report = run(sequential(server.addr, 4)).await.unwrap();
    assert_eq!(report.failures.get(&Outcome::Status), Some(&4));
    assert!(report.requests.iter().all(|r| r.status == Some(502)));
    assert!(
        report.versions.is_empty(),
        "failed answers are not counted as versions"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mix_has_the_asked_shares() {
    let server = Server::start(Behaviour::Normal).await;
    let mut config = LoadConfig::new(server.addr);
    config.rate = 400;
    config.max_requests = Some(200);
    config.slow_share = 0.1;
    config.slow = Duration::from_millis(100);
    config.post_share = 0.1;
    config.new_connection_share = 0.25;
    let report = run(config).await.unwrap();
    assert_eq!(report.sent, 200);
    assert_eq!(report.failed, 0, "{report}");
    assert_eq!(report.classes[&Class::Slow].sent, 20);
    assert_eq!(report.classes[&Class::Post].sent, 20);
    assert_eq!(report.requests.iter().filter(|r| r.fresh).count(), 50);
    // Every new connection was opened for one request; keep-alive ones were shared.
    assert!(server.connections.load(Ordering::SeqCst) >= 50);
}

#[test]
fn a_handle_runs_in_the_background_and_stops_with_a_report() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let server = rt.block_on(Server::start(Behaviour::Normal));
    let mut config = LoadConfig::new(server.addr);
    config.rate = 200;
    config.duration = Duration::from_secs(60);
    config.slow_share = 0.0;
    let handle = LoadHandle::start(config).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while handle.progress().ok < 50 {
        assert!(std::time::Instant::now() < deadline, "no progress");
        std::thread::sleep(Duration::from_millis(10));
    }
    let t = handle.mark("halfway");
    let report = handle.stop().unwrap();
    assert!(report.sent >= 50);
    assert_eq!(report.failed, 0);
    assert_eq!(report.mark("halfway"), Some(t));
    // Stopped long before its 60 s.
    assert!(report.duration_s < 30.0);
}
