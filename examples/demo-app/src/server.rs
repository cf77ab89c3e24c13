//! The server: accept loop, connections with keep-alive, the endpoints and the fault switches.

use crate::db::{self, Db};
use crate::http::{self, Head};
use crate::{OnSigterm, Options};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::{mpsc, watch};

/// An idle keep-alive connection is closed after this long.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// A request head or body must arrive within this long once it has begun.
const READ_TIMEOUT: Duration = Duration::from_secs(30);

struct State {
    options: Options,
    instance: String,
    started: Instant,
    /// Requests counted toward the error rate.
    counted: AtomicU64,
    /// Answers by status, for `/metrics` (health checks and scrapes not counted).
    answered: Mutex<BTreeMap<u16, u64>>,
    /// Database mode.
    db: Option<Db>,
    /// Users inserted by `/submit`, for their names.
    inserted: AtomicU64,
}

impl State {
    fn healthy(&self) -> bool {
        if self.options.health_fail {
            return false;
        }
        match self.options.unhealthy_after_ms {
            Some(ms) => self.started.elapsed() < Duration::from_millis(ms),
            None => true,
        }
    }

    /// Whether this request gets a 500: the n-th request fails when the running total of
    /// `rate * n` crosses an integer, so the share is exact and evenly spread.
    fn inject_error(&self) -> bool {
        let rate = self.options.error_rate;
        if rate <= 0.0 {
            return false;
        }
        let n = self.counted.fetch_add(1, Ordering::Relaxed) as f64;
        ((n + 1.0) * rate).floor() > (n * rate).floor()
    }
}

/// The instance name: the flag, else the host name (the container's short id under Docker).
fn instance_name(options: &Options) -> String {
    if let Some(name) = &options.instance {
        return name.clone();
    }
    if let Ok(name) = std::env::var("HOSTNAME") {
        if !name.is_empty() {
            return name;
        }
    }
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".into())
}

/// Runs the server until SIGTERM or SIGINT.
pub async fn serve(options: Options) -> Result<(), String> {
    let started = Instant::now();
    let instance = instance_name(&options);
    let version = options.app_version.clone();
    if options.crash_on_start {
        eprintln!("demo-app {version} on {instance}: crashing on start as asked");
        std::process::exit(1);
    }
    let mut term =
        signal(SignalKind::terminate()).map_err(|e| format!("cannot watch SIGTERM: {e}"))?;
    let mut int =
        signal(SignalKind::interrupt()).map_err(|e| format!("cannot watch SIGINT: {e}"))?;
    if let Some(ms) = options.crash_after_ms {
        let (version, instance) = (version.clone(), instance.clone());
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            eprintln!("demo-app {version} on {instance}: crashing after {ms} ms as asked");
            std::process::exit(1);
        });
    }
    if options.start_delay_ms > 0 {
        eprintln!(
            "demo-app {version} on {instance}: starting slowly, listening in {} ms",
            options.start_delay_ms
        );
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(options.start_delay_ms)) => {}
            _ = term.recv() => return exit_on_signal("SIGTERM during the slow start"),
            _ = int.recv() => return exit_on_signal("SIGINT during the slow start"),
        }
    }
    let addr = (options.bind, options.port);
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|e| format!("cannot listen on {}:{}: {e}", options.bind, options.port))?;
    let on_sigterm = options.on_sigterm;
    let drain_timeout = Duration::from_millis(options.drain_timeout_ms);
    eprintln!(
        "demo-app {version} on {instance}: listening on {}:{} (on SIGTERM: {})",
        options.bind,
        options.port,
        match on_sigterm {
            OnSigterm::Drain => "drain",
            OnSigterm::Exit => "exit at once",
        }
    );
    let db = match &options.database_url {
        Some(url) => {
            let db = Db::parse(url, options.users_email)?;
            eprintln!(
                "demo-app {version} on {instance}: users in {} ({})",
                db.target(),
                if db.with_email() {
                    "with email"
                } else {
                    "without email"
                }
            );
            Some(db)
        }
        None => None,
    };
    let state = Arc::new(State {
        options,
        instance,
        started,
        counted: AtomicU64::new(0),
        answered: Mutex::default(),
        db,
        inserted: AtomicU64::new(0),
    });
    let worker = state.options.work_unit_ms.map(|ms| {
        let who = format!("demo-app {version} on {}: worker", state.instance);
        let (stop_tx, stop_rx) = watch::channel(false);
        let task = tokio::spawn(work(Duration::from_millis(ms), who.clone(), stop_rx));
        (who, stop_tx, task)
    });
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    // Every connection task holds a sender; recv() returns None once all have finished.
    let (alive_tx, mut alive_rx) = mpsc::channel::<()>(1);
    let signal_name = loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let state = state.clone();
                    let shutdown = shutdown_rx.clone();
                    let alive = alive_tx.clone();
                    tokio::spawn(async move {
                        connection(stream, state, shutdown).await;
                        drop(alive);
                    });
                }
                Err(e) => {
                    // Out of descriptors and the like: back off briefly instead of spinning.
                    eprintln!("demo-app: accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            },
            _ = term.recv() => break "SIGTERM",
            _ = int.recv() => break "SIGINT",
        }
    };
    if let Some((who, stop_tx, task)) = worker {
        eprintln!("{who}: {signal_name}: finishing the unit at hand");
        let _ = stop_tx.send(true);
        let units = task.await.unwrap_or(0);
        eprintln!("{who}: stopped after {units} units");
    }
    if on_sigterm == OnSigterm::Exit {
        return exit_on_signal(signal_name);
    }
    eprintln!("demo-app {version}: {signal_name}: draining (at most {drain_timeout:?})");
    drop(listener);
    let _ = shutdown_tx.send(true);
    drop(alive_tx);
    let drained = tokio::select! {
        done = tokio::time::timeout(drain_timeout, alive_rx.recv()) => done.is_ok(),
        // A second signal while draining cuts it short.
        _ = term.recv() => false,
        _ = int.recv() => false,
    };
    if drained {
        eprintln!("demo-app {version}: drained, exiting");
        Ok(())
    } else {
        eprintln!("demo-app {version}: requests still in flight, exiting anyway");
        std::process::exit(1);
    }
}

/// The worker: units of `unit` one after another until `stop`, each finished once begun.
/// Returns how many were done.
async fn work(unit: Duration, who: String, mut stop: watch::Receiver<bool>) -> u64 {
    let mut done = 0;
    eprintln!("{who}: working in units of {unit:?}");
    while !*stop.borrow_and_update() {
        tokio::time::sleep(unit).await;
        done += 1;
        eprintln!("{who}: unit {done} done");
    }
    done
}

fn exit_on_signal(what: &str) -> Result<(), String> {
    eprintln!("demo-app: {what}: exiting at once");
    std::process::exit(143);
}

/// Reads one more chunk into `buf`; false on EOF or error.
async fn fill(stream: &mut TcpStream, buf: &mut Vec<u8>) -> bool {
    let mut chunk = [0u8; 8192];
    match stream.read(&mut chunk).await {
        Ok(0) | Err(_) => false,
        Ok(n) => {
            buf.extend_from_slice(&chunk[..n]);
            true
        }
    }
}

async fn connection(mut stream: TcpStream, state: Arc<State>, mut shutdown: watch::Receiver<bool>) {
    let _ = stream.set_nodelay(true);
    let mut buf: Vec<u8> = Vec::with_capacity(4096);
    loop {
        // Wait for a complete head. While no byte of the next request has come, the
        // connection is idle: a drain or the idle timeout closes it.
        let end = loop {
            if let Some(end) = http::head_end(&buf) {
                break end;
            }
            if buf.len() > http::MAX_HEAD {
                let _ = write(&mut stream, &state, 431, "{}", true).await;
                return;
            }
            let more = if buf.is_empty() {
                tokio::select! {
                    more = tokio::time::timeout(IDLE_TIMEOUT, fill(&mut stream, &mut buf)) => {
                        more.unwrap_or(false)
                    }
                    _ = shutdown.wait_for(|down| *down) => false,
                }
            } else {
                tokio::time::timeout(READ_TIMEOUT, fill(&mut stream, &mut buf))
                    .await
                    .unwrap_or(false)
            };
            if !more {
                return;
            }
        };
        let head = match http::parse_head(&buf[..end]) {
            Ok(head) => head,
            Err(http::BadRequest(why)) => {
                let body = format!("{{\"error\":{}}}", http::json_str(why));
                let _ = write(&mut stream, &state, 400, &body, true).await;
                return;
            }
        };
        buf.drain(..end);
        if head.chunked {
            let _ = write(&mut stream, &state, 501, "{}", true).await;
            return;
        }
        if head.content_length > http::MAX_BODY {
            let _ = write(&mut stream, &state, 413, "{}", true).await;
            return;
        }
        while buf.len() < head.content_length {
            let more = tokio::time::timeout(READ_TIMEOUT, fill(&mut stream, &mut buf))
                .await
                .unwrap_or(false);
            if !more {
                return;
            }
        }
        let body_len = head.content_length;
        buf.drain(..body_len);
        let (status, body) = answer(&head, body_len, &state).await;
        let close = head.close || *shutdown.borrow();
        if write(&mut stream, &state, status, &body, close)
            .await
            .is_err()
            || close
        {
            let _ = stream.shutdown().await;
            return;
        }
    }
}

async fn write(
    stream: &mut TcpStream,
    state: &State,
    status: u16,
    body: &str,
    close: bool,
) -> std::io::Result<()> {
    let bytes = http::response(
        status,
        &state.options.app_version,
        &state.instance,
        body,
        close,
    );
    stream.write_all(&bytes).await
}

/// The sleep a `ms=N` query asks for, bounded.
fn asked_sleep(head: &Head, state: &State) -> Result<Duration, String> {
    match http::query_param(&head.query, "ms") {
        None => Ok(Duration::ZERO),
        Some(v) => {
            let ms: u64 = v.parse().map_err(|_| format!("ms={v} is not a number"))?;
            if ms > state.options.max_slow_ms {
                return Err(format!(
                    "ms={ms} is above the limit of {}",
                    state.options.max_slow_ms
                ));
            }
            Ok(Duration::from_millis(ms))
        }
    }
}

/// The answer to one request, counted by status for `/metrics` (but for
/// `/health` and `/metrics` themselves).
async fn answer(head: &Head, body_len: usize, state: &State) -> (u16, String) {
    if head.path == "/metrics" && head.method == "GET" {
        return (200, metrics(state));
    }
    let (status, body) = respond(head, body_len, state).await;
    if head.path != "/health" {
        let mut answered = state.answered.lock().unwrap_or_else(|p| p.into_inner());
        *answered.entry(status).or_default() += 1;
    }
    (status, body)
}

/// The answers so far in Prometheus's text format: `demo_responses_total`
/// by version and status, which a Prometheus server scrapes and a canary
/// analysis queries.
fn metrics(state: &State) -> String {
    let version = prometheus_label(&state.options.app_version);
    let mut out = String::from(
        "# HELP demo_responses_total Answers by status (health checks and scrapes not counted).\n\
         # TYPE demo_responses_total counter\n",
    );
    let answered = state.answered.lock().unwrap_or_else(|p| p.into_inner());
    for (status, n) in answered.iter() {
        out.push_str(&format!(
            "demo_responses_total{{version=\"{version}\",status=\"{status}\"}} {n}\n"
        ));
    }
    out
}

/// A label value as the text format escapes it.
fn prometheus_label(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

async fn respond(head: &Head, body_len: usize, state: &State) -> (u16, String) {
    let o = &state.options;
    let base = |status: u16, extra: &str| {
        format!(
            "{{\"version\":{},\"instance\":{},\"path\":{},\"status\":{status}{extra}}}",
            http::json_str(&o.app_version),
            http::json_str(&state.instance),
            http::json_str(&head.path),
        )
    };
    if head.path == "/health" {
        let db_ready = match &state.db {
            Some(db) => db.ready().await,
            None => true,
        };
        let status = if state.healthy() && db_ready {
            200
        } else {
            503
        };
        return (status, base(status, ""));
    }
    if let (Some(db), "/users") = (&state.db, head.path.as_str()) {
        return users(head, db, &base).await;
    }
    let get = head.method == "GET";
    let sleep = match (head.path.as_str(), get, head.method == "POST") {
        ("/", true, _) => Duration::ZERO,
        ("/slow", true, _) | ("/submit", _, true) => match asked_sleep(head, state) {
            Ok(d) => d,
            Err(why) => {
                return (
                    400,
                    base(400, &format!(",\"error\":{}", http::json_str(&why))),
                )
            }
        },
        ("/" | "/slow", false, _) | ("/submit", _, false) => return (405, base(405, "")),
        _ => return (404, base(404, "")),
    };
    let total = sleep + Duration::from_millis(o.latency_ms);
    if !total.is_zero() {
        tokio::time::sleep(total).await;
    }
    if state.inject_error() {
        return (500, base(500, ",\"error\":\"injected\""));
    }
    if head.path == "/submit" {
        let mut extra = format!(",\"received\":{body_len}");
        if let Some(db) = &state.db {
            let n = state.inserted.fetch_add(1, Ordering::Relaxed) + 1;
            let name = format!("{}-{}-{n}", o.app_version, state.instance);
            match db.insert(&name).await {
                Ok(u) => extra.push_str(&db::user_json(&u)),
                Err(why) => return (500, base(500, &error_field(&why))),
            }
        }
        (200, base(200, &extra))
    } else {
        (200, base(200, ""))
    }
}

fn error_field(why: &str) -> String {
    format!(",\"error\":{}", http::json_str(why))
}

/// `POST /users?name=N` and `GET /users?id=N` in database mode.
async fn users(head: &Head, db: &Db, base: &(dyn Fn(u16, &str) -> String + Sync)) -> (u16, String) {
    let bad = |why: &str| (400, base(400, &error_field(why)));
    match head.method.as_str() {
        "POST" => {
            let name = match http::query_param(&head.query, "name") {
                Some(n) if !n.is_empty() && n.len() <= 100 => n,
                _ => return bad("name=N is required (1 to 100 characters)"),
            };
            match db.insert(name).await {
                Ok(u) => (200, base(200, &db::user_json(&u))),
                Err(why) => (500, base(500, &error_field(&why))),
            }
        }
        "GET" => {
            let id = match http::query_param(&head.query, "id").map(str::parse::<i64>) {
                Some(Ok(id)) => id,
                _ => return bad("id=N is required (a number)"),
            };
            match db.get(id).await {
                Ok(Some(u)) => (200, base(200, &db::user_json(&u))),
                Ok(None) => (404, base(404, "")),
                Err(why) => (500, base(500, &error_field(&why))),
            }
        }
        _ => (405, base(405, "")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn state(args: &[&str]) -> State {
        let mut argv = vec!["demo-app"];
        argv.extend_from_slice(args);
        let cli = crate::Cli::parse_from(argv);
        State {
            options: cli.options,
            instance: "test".into(),
            started: Instant::now(),
            counted: AtomicU64::new(0),
            answered: Mutex::default(),
            db: None,
            inserted: AtomicU64::new(0),
        }
    }

    #[test]
    fn error_rate_is_exact_and_spread() {
        let s = state(&["--error-rate", "0.25"]);
        let hits: Vec<bool> = (0..8).map(|_| s.inject_error()).collect();
        assert_eq!(hits, [false, false, false, true, false, false, false, true]);
        let none = state(&[]);
        assert!((0..100).all(|_| !none.inject_error()));
    }

    #[test]
    fn health_fails_when_asked() {
        assert!(state(&[]).healthy());
        assert!(!state(&["--health-fail"]).healthy());
        assert!(!state(&["--unhealthy-after-ms", "0"]).healthy());
        assert!(state(&["--unhealthy-after-ms", "60000"]).healthy());
    }

    #[tokio::test]
    async fn endpoints_answer_with_version_and_status() {
        let s = state(&["--app-version", "v9"]);
        let head = |raw: &str| http::parse_head(raw.as_bytes()).unwrap();
        let (status, body) = answer(&head("GET / HTTP/1.1\r\n\r\n"), 0, &s).await;
        assert_eq!(status, 200);
        assert!(body.contains("\"version\":\"v9\""), "{body}");
        let (status, body) = answer(&head("POST /submit HTTP/1.1\r\n\r\n"), 5, &s).await;
        assert_eq!((status, body.contains("\"received\":5")), (200, true));
        let (status, _) = answer(&head("POST / HTTP/1.1\r\n\r\n"), 0, &s).await;
        assert_eq!(status, 405);
        let (status, _) = answer(&head("GET /nope HTTP/1.1\r\n\r\n"), 0, &s).await;
        assert_eq!(status, 404);
        let (status, _) = answer(&head("GET /slow?ms=x HTTP/1.1\r\n\r\n"), 0, &s).await;
        assert_eq!(status, 400);
        let (status, _) = answer(&head("GET /slow?ms=999999999 HTTP/1.1\r\n\r\n"), 0, &s).await;
        assert_eq!(status, 400);
    }

    #[tokio::test]
    async fn metrics_count_answers_by_status() {
        let s = state(&["--app-version", "v\"2", "--error-rate", "0.5"]);
        let head = |raw: &str| http::parse_head(raw.as_bytes()).unwrap();
        for _ in 0..4 {
            answer(&head("GET / HTTP/1.1\r\n\r\n"), 0, &s).await;
        }
        answer(&head("GET /health HTTP/1.1\r\n\r\n"), 0, &s).await;
        answer(&head("GET /nope HTTP/1.1\r\n\r\n"), 0, &s).await;
        let (status, text) = answer(&head("GET /metrics HTTP/1.1\r\n\r\n"), 0, &s).await;
        assert_eq!(status, 200);
        let samples: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
        assert_eq!(
            samples,
            [
                r#"demo_responses_total{version="v\"2",status="200"} 2"#,
                r#"demo_responses_total{version="v\"2",status="404"} 1"#,
                r#"demo_responses_total{version="v\"2",status="500"} 2"#,
            ]
        );
    }
}
