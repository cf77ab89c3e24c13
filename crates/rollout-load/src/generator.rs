//! Starting requests on schedule, recording how each ended, and the handle a test holds while
//! the load runs.

use crate::client::{self, Conn, ExchangeError, Failure, Pool};
use crate::config::{Class, LoadConfig, Mixer};
use crate::errorlog::{unix_now, UpstreamErrors};
use crate::report::{Mark, Outcome, Record, Report};
use crate::LoadError;
use std::io::ErrorKind;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, Notify};

/// Live counters of a running load.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Progress {
    /// Requests started.
    pub sent: u64,
    /// Requests finished with a 2xx answer.
    pub ok: u64,
    /// Requests finished as failures.
    pub failed: u64,
}

/// State shared by the scheduler, the requests and the handle.
#[derive(Debug)]
struct Control {
    started: Instant,
    stop: AtomicBool,
    wake: Notify,
    marks: Mutex<Vec<Mark>>,
    sent: AtomicU64,
    ok: AtomicU64,
    failed: AtomicU64,
    idle_closed: AtomicU64,
    skipped: AtomicU64,
    in_flight: AtomicUsize,
}

impl Control {
    fn new() -> Arc<Control> {
        Arc::new(Control {
            started: Instant::now(),
            stop: AtomicBool::new(false),
            wake: Notify::new(),
            marks: Mutex::new(Vec::new()),
            sent: AtomicU64::new(0),
            ok: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            idle_closed: AtomicU64::new(0),
            skipped: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
        })
    }

    fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
        self.wake.notify_one();
    }

    fn mark(&self, name: &str) -> f64 {
        let t = self.started.elapsed().as_secs_f64();
        self.marks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(Mark {
                name: name.to_string(),
                t,
            });
        t
    }

    fn progress(&self) -> Progress {
        Progress {
            sent: self.sent.load(Ordering::Relaxed),
            ok: self.ok.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
        }
    }
}

/// Runs the load in the caller's tokio runtime until its duration or request count is reached,
/// and returns the report.
pub async fn run(config: LoadConfig) -> Result<Report, LoadError> {
    config.validate()?;
    generate(config, Control::new()).await
}

/// A load running on its own thread (with its own runtime), for tests that drive Compose with
/// blocking commands meanwhile. Dropping the handle stops the load and waits for it.
#[derive(Debug)]
pub struct LoadHandle {
    control: Arc<Control>,
    thread: Option<JoinHandle<Result<Report, LoadError>>>,
}

impl LoadHandle {
    /// Starts the load in the background.
    pub fn start(config: LoadConfig) -> Result<LoadHandle, LoadError> {
        config.validate()?;
        let control = Control::new();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("rollout-load")
            .enable_all()
            .build()
            .map_err(LoadError::Start)?;
        let c = control.clone();
        let thread = std::thread::Builder::new()
            .name("rollout-load".into())
            .spawn(move || runtime.block_on(generate(config, c)))
            .map_err(LoadError::Start)?;
        Ok(LoadHandle {
            control,
            thread: Some(thread),
        })
    }

    /// Marks this instant on the run's clock under `name`; returns its time in seconds since
    /// the start of the run.
    pub fn mark(&self, name: &str) -> f64 {
        self.control.mark(name)
    }

    /// Time since the start of the run.
    pub fn elapsed(&self) -> Duration {
        self.control.started.elapsed()
    }

    /// The counters so far.
    pub fn progress(&self) -> Progress {
        self.control.progress()
    }

    /// Whether the load has ended by itself (duration or count reached).
    pub fn is_finished(&self) -> bool {
        self.thread.as_ref().is_none_or(|t| t.is_finished())
    }

    /// Stops starting requests, waits for the ones in flight (each is bounded by its timeout),
    /// reads the proxy's error log and returns the report.
    pub fn stop(mut self) -> Result<Report, LoadError> {
        self.control.stop();
        self.join()
    }

    /// Waits until the load ends by itself and returns the report.
    pub fn wait(mut self) -> Result<Report, LoadError> {
        self.join()
    }

    fn join(&mut self) -> Result<Report, LoadError> {
        match self.thread.take() {
            Some(t) => t.join().map_err(|_| LoadError::Panicked)?,
            None => Err(LoadError::Panicked),
        }
    }
}

impl Drop for LoadHandle {
    fn drop(&mut self) {
        if let Some(t) = self.thread.take() {
            self.control.stop();
            let _ = t.join();
        }
    }
}

/// The bytes of a request.
fn request_bytes(config: &LoadConfig, class: Class, fresh: bool, seq: u64) -> Vec<u8> {
    let connection = if fresh { "close" } else { "keep-alive" };
    let host = &config.host;
    match class {
        Class::Fast => format!(
            "GET / HTTP/1.1\r\nHost: {host}\r\nUser-Agent: rollout-load\r\nConnection: {connection}\r\n\r\n"
        ),
        Class::Slow => format!(
            "GET /slow?ms={} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: rollout-load\r\nConnection: {connection}\r\n\r\n",
            config.slow.as_millis()
        ),
        Class::Post => {
            let body = format!("{{\"seq\":{seq}}}");
            format!(
                "POST /submit?ms={} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: rollout-load\r\nConnection: {connection}\r\n\
                 Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                config.post_delay.as_millis(),
                body.len()
            )
        }
    }
    .into_bytes()
}

fn outcome_of(e: &ExchangeError) -> (Outcome, String) {
    match &e.failure {
        Failure::Connect(io) if io.kind() == ErrorKind::ConnectionRefused => {
            (Outcome::Refused, format!("connect: {io}"))
        }
        Failure::Connect(io) => (Outcome::Connect, format!("connect: {io}")),
        Failure::Io(io)
            if matches!(
                io.kind(),
                ErrorKind::ConnectionReset | ErrorKind::BrokenPipe | ErrorKind::ConnectionAborted
            ) =>
        {
            (Outcome::Reset, io.to_string())
        }
        Failure::Io(io) => (Outcome::Io, io.to_string()),
        Failure::Closed => (
            Outcome::Closed,
            if e.got_bytes {
                "connection closed in the middle of the answer".into()
            } else {
                "connection closed before the answer".into()
            },
        ),
        Failure::Protocol(why) => (Outcome::Protocol, why.clone()),
    }
}

/// One request, with the stale-connection retry, within its deadline.
async fn one(
    config: Arc<LoadConfig>,
    pool: Arc<Pool>,
    control: Arc<Control>,
    seq: u64,
    class: Class,
    fresh: bool,
) -> Record {
    let t0 = Instant::now();
    let t = t0.duration_since(control.started).as_secs_f64();
    let request = request_bytes(&config, class, fresh, seq);
    let mut retried = false;
    let attempt = async {
        let mut conn: Conn = if fresh {
            client::connect(config.target).await?
        } else {
            let (pooled, dropped) = pool.take();
            control.idle_closed.fetch_add(dropped, Ordering::Relaxed);
            match pooled {
                Some(c) => c,
                None => client::connect(config.target).await?,
            }
        };
        let reused = conn.uses > 0;
        let answer = match conn.exchange(&request).await {
            Ok(a) => a,
            Err(e) if reused && class.idempotent() && e.closed_before_answer() => {
                retried = true;
                conn = client::connect(config.target).await?;
                conn.exchange(&request).await?
            }
            Err(e) => return Err(e),
        };
        if answer.keep_alive && !fresh {
            pool.put(conn);
        }
        Ok::<_, ExchangeError>(answer)
    };
    let deadline = config.expected(class) + config.timeout_grace;
    let result = tokio::time::timeout(deadline, attempt).await;
    let ms = t0.elapsed().as_secs_f64() * 1000.0;
    let mut record = Record {
        seq,
        t,
        ms,
        class,
        fresh,
        status: None,
        outcome: Outcome::Ok,
        version: None,
        instance: None,
        retried,
        error: None,
    };
    match result {
        Ok(Ok(answer)) => {
            record.status = Some(answer.status);
            record.version = answer.version;
            record.instance = answer.instance;
            if !(200..300).contains(&answer.status) {
                record.outcome = Outcome::Status;
            }
        }
        Ok(Err(e)) => {
            let (outcome, error) = outcome_of(&e);
            record.outcome = outcome;
            record.error = Some(error);
        }
        Err(_) => {
            record.outcome = Outcome::Timeout;
            record.error = Some(format!("no answer within {deadline:?}"));
        }
    }
    record
}

async fn generate(config: LoadConfig, control: Arc<Control>) -> Result<Report, LoadError> {
    let log_start = config.error_log.as_ref().map(|l| l.begin());
    let start_unix = unix_now();
    let started_unix_ms = (start_unix * 1000.0) as u64;
    let config = Arc::new(config);
    let pool = Arc::new(Pool::default());
    let (tx, mut rx) = mpsc::unbounded_channel::<Record>();
    let collector = tokio::spawn(async move {
        let mut records = Vec::new();
        while let Some(r) = rx.recv().await {
            records.push(r);
        }
        records
    });
    let interval = Duration::from_secs_f64(1.0 / f64::from(config.rate));
    let max = config.max_requests.unwrap_or(u64::MAX);
    let mut mixer = Mixer::default();
    let mut seq = 0u64;
    let mut skipped_seq = 0u64;
    let base = tokio::time::Instant::from_std(control.started);
    loop {
        let slot = seq + skipped_seq;
        let at = base + interval.mul_f64(slot as f64);
        if seq >= max
            || at.duration_since(base) >= config.duration
            || control.stop.load(Ordering::SeqCst)
        {
            break;
        }
        tokio::select! {
            _ = tokio::time::sleep_until(at) => {}
            _ = control.wake.notified() => continue,
        }
        if control.in_flight.load(Ordering::SeqCst) >= config.max_in_flight {
            skipped_seq += 1;
            control.skipped.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        let (class, fresh) = mixer.next(&config);
        control.in_flight.fetch_add(1, Ordering::SeqCst);
        control.sent.fetch_add(1, Ordering::Relaxed);
        let (config, pool, control, tx) =
            (config.clone(), pool.clone(), control.clone(), tx.clone());
        tokio::spawn(async move {
            let record = one(config, pool, control.clone(), seq, class, fresh).await;
            if record.failed() {
                control.failed.fetch_add(1, Ordering::Relaxed);
            } else {
                control.ok.fetch_add(1, Ordering::Relaxed);
            }
            control.in_flight.fetch_sub(1, Ordering::SeqCst);
            let _ = tx.send(record);
        });
        seq += 1;
    }
    drop(tx);
    // Every request is bounded by its deadline, so this ends.
    let records = collector.await.unwrap_or_default();
    pool.clear();
    let end_unix = unix_now();
    let upstream_errors = match (&config.error_log, &log_start) {
        (Some(source), Some(start)) => source.collect(start, start_unix, end_unix).await?,
        _ => UpstreamErrors::default(),
    };
    let marks = std::mem::take(&mut *control.marks.lock().unwrap_or_else(|p| p.into_inner()));
    let facts = Report {
        target: config.target.to_string(),
        started_unix_ms,
        rate_asked: config.rate,
        bucket_s: config.bucket.as_secs_f64(),
        idle_closed: control.idle_closed.load(Ordering::Relaxed),
        skipped: control.skipped.load(Ordering::Relaxed),
        marks,
        upstream_errors,
        ..Report::default()
    };
    Ok(Report::build(facts, records))
}
