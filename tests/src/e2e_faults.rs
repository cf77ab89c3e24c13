//! Helpers of the faults and operators tests (`tests/tests/faults.rs`,
//! `tests/tests/operators.rs`): the plugin run as a child process whose JSON events are
//! stamped on the load generator's clock as they arrive, nginx's processes as `ps` in the proxy
//! shows them, and the assertions every one of those tests makes (no failed request, no
//! upstream error, the load was real).

use crate::project::{Container, Project};
use crate::engine::{docker, require_engine, require_images, run_ok, wait_http};
use crate::plugin::{workspace_binary, PluginDir};
use crate::stack::{DemoStack, NGINX_IMAGE};
use rollout_load::{LoadHandle, Report};
use serde_json::Value;
use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// One JSON line of the plugin, with the time it was read on the load's clock (seconds since
/// the load started; negative before it).
#[derive(Debug, Clone)]
pub struct Stamped {
    /// Seconds on the load's clock when the line was read.
    pub t: f64,
    /// The line.
    pub json: Value,
}

impl Stamped {
    /// The `event` field (`traffic-changed`), or `""` for the summary.
    pub fn name(&self) -> &str {
        self.json["event"].as_str().unwrap_or("")
    }
}

/// Where the load's clock started, to stamp events on it.
pub fn origin_of(load: &LoadHandle) -> Instant {
    Instant::now() - load.elapsed()
}

/// A rollout running as a child process (`--output json`).
pub struct Running {
    child: Child,
    origin: Instant,
    lines: Arc<Mutex<Vec<Stamped>>>,
    stderr: Arc<Mutex<String>>,
    readers: Vec<JoinHandle<()>>,
    started: Instant,
}

/// A finished rollout.
#[derive(Debug)]
pub struct Finished {
    /// The exit code (`-1` when killed by a signal).
    pub code: i32,
    /// Every JSON line, stamped.
    pub lines: Vec<Stamped>,
    /// What it printed on stderr.
    pub stderr: String,
    /// Seconds it ran.
    pub secs: f64,
}

/// Starts `cmd` (a [`Project::rollout_command`] with its arguments), stamping each stdout line
/// on the clock that started at `origin`.
pub fn spawn_rollout(mut cmd: Command, origin: Instant) -> Running {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("docker rollout starts");
    let lines = Arc::new(Mutex::new(Vec::new()));
    let stderr = Arc::new(Mutex::new(String::new()));
    let out = child.stdout.take().unwrap();
    let err = child.stderr.take().unwrap();
    let l = lines.clone();
    let r1 = std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            let t = origin.elapsed().as_secs_f64();
            let json = serde_json::from_str(&line).unwrap_or_else(|e| {
                panic!("a stdout line of docker rollout is not JSON ({e}): {line}")
            });
            l.lock().unwrap().push(Stamped { t, json });
        }
    });
    let s = stderr.clone();
    let r2 = std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        let mut err = err;
        while let Ok(n) = err.read(&mut buf) {
            if n == 0 {
                break;
            }
            s.lock()
                .unwrap()
                .push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    });
    Running {
        child,
        origin,
        lines,
        stderr,
        readers: vec![r1, r2],
        started: Instant::now(),
    }
}

impl Running {
    /// The child's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits (bounded) for the first event named `name`, and returns it.
    pub fn wait_event(&mut self, name: &str, timeout: Duration) -> Stamped {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(s) = self.lines.lock().unwrap().iter().find(|s| s.name() == name) {
                return s.clone();
            }
            let exited = self.child.try_wait().unwrap().is_some();
            assert!(
                !exited && Instant::now() < deadline,
                "no {name} event within {timeout:?} (exited: {exited}); stderr:\n{}",
                self.stderr.lock().unwrap()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits (bounded) for the end; kills it and panics after `timeout`.
    pub fn finish(mut self, timeout: Duration) -> Finished {
        let deadline = self.started + timeout;
        let status = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break s;
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!(
                    "docker rollout did not end within {timeout:?}; stderr:\n{}",
                    self.stderr.lock().unwrap()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        for r in self.readers.drain(..) {
            let _ = r.join();
        }
        let _ = self.origin;
        Finished {
            code: status.code().unwrap_or(-1),
            lines: std::mem::take(&mut *self.lines.lock().unwrap()),
            stderr: std::mem::take(&mut *self.stderr.lock().unwrap()),
            secs: self.started.elapsed().as_secs_f64(),
        }
    }
}

/// Runs `cmd` to its end (bounded by `timeout`).
pub fn run_rollout(cmd: Command, origin: Instant, timeout: Duration) -> Finished {
    spawn_rollout(cmd, origin).finish(timeout)
}

impl Finished {
    /// The events named `name`, in order.
    pub fn events(&self, name: &str) -> Vec<&Stamped> {
        self.lines.iter().filter(|s| s.name() == name).collect()
    }

    /// The summary line's `summary`.
    pub fn summary(&self) -> &Value {
        self.lines
            .iter()
            .rev()
            .find_map(|s| s.json.get("summary"))
            .unwrap_or_else(|| panic!("no summary line:\n{}", self.transcript()))
    }

    /// The outcome of the `finished` event (`completed`, `rolled-back`, ...).
    pub fn outcome(&self) -> String {
        let f = self.events("finished");
        let last = f
            .last()
            .unwrap_or_else(|| panic!("no finished event:\n{}", self.transcript()));
        last.json["outcome"]["outcome"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// Everything it printed, for assertion messages and the test log.
    pub fn transcript(&self) -> String {
        let mut s = format!("exit code {} after {:.1}s\n", self.code, self.secs);
        for l in &self.lines {
            s.push_str(&format!("[{:>7.2}] {}\n", l.t, l.json));
        }
        s.push_str("--- stderr\n");
        s.push_str(&self.stderr);
        s
    }

    /// The hosts (container names) that traffic changes took out, with the load time of
    /// the change.
    pub fn unrouted(&self) -> Vec<(String, f64)> {
        let mut out = Vec::new();
        for e in self.events("traffic-changed") {
            for r in e.json["removed"].as_array().into_iter().flatten() {
                if let Some(h) = r["host"].as_str() {
                    out.push((h.to_string(), e.t));
                }
            }
        }
        out
    }
}

/// nginx's master and worker processes in a container, with the process ids the container
/// sees (as the router names them), read with busybox `ps` in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NginxProcs {
    /// The master's pid (on the host).
    pub master: Option<u32>,
    /// Worker pids (including old ones still shutting down).
    pub workers: BTreeSet<u32>,
}

/// The nginx processes of container `id`.
pub fn nginx_procs(id: &str) -> NginxProcs {
    let out = run_ok(docker().args(["exec", id, "ps", "-o", "pid,args"]));
    let mut procs = NginxProcs {
        master: None,
        workers: BTreeSet::new(),
    };
    for line in String::from_utf8_lossy(&out.stdout).lines().skip(1) {
        let mut it = line.split_whitespace();
        let Some(pid) = it.next().and_then(|p| p.parse().ok()) else {
            continue;
        };
        let args = it.collect::<Vec<_>>().join(" ");
        if args.starts_with("nginx: master") {
            procs.master = Some(pid);
        } else if args.starts_with("nginx: worker") {
            procs.workers.insert(pid);
        }
    }
    procs
}

/// The running nginx container of a project.
pub fn nginx_container(p: &Project) -> Container {
    let all = p.containers(None);
    all.iter()
        .find(|c| c.service == "nginx" && c.state == "running")
        .cloned()
        .unwrap_or_else(|| panic!("nginx does not run: {all:#?}"))
}

/// Every nginx worker pid seen while it runs, polled (a few times a
/// second) with `ps` in the container, so that a test can check that the workers a drain names were nginx's.
pub struct WorkerWatch {
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<BTreeSet<u32>>>,
    thread: Option<JoinHandle<()>>,
}

impl WorkerWatch {
    /// Starts polling container `id`.
    pub fn start(id: &str) -> WorkerWatch {
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(Mutex::new(nginx_procs(id).workers));
        let (s, w, id) = (stop.clone(), seen.clone(), id.to_string());
        let thread = std::thread::spawn(move || {
            // Bounded: a test ends long before.
            let deadline = Instant::now() + Duration::from_secs(600);
            while !s.load(Ordering::SeqCst) && Instant::now() < deadline {
                if let Ok(o) = docker()
                    .args(["exec", &id, "ps", "-o", "pid,args"])
                    .output()
                {
                    for line in String::from_utf8_lossy(&o.stdout).lines() {
                        let mut it = line.split_whitespace();
                        let pid = it.next().and_then(|p| p.parse().ok());
                        if let (Some(pid), true) = (pid, line.contains("nginx: worker")) {
                            w.lock().unwrap().insert(pid);
                        }
                    }
                }
                std::thread::sleep(Duration::from_millis(150));
            }
        });
        WorkerWatch {
            stop,
            seen,
            thread: Some(thread),
        }
    }

    /// Stops polling and returns every worker pid seen.
    pub fn stop(mut self) -> BTreeSet<u32> {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for WorkerWatch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// The load of every faults test: 250 requests per second, 5 % slow GETs of 2 s, 5 % POSTs,
/// 20 % on new connections, bounded to `max` (the test stops it earlier).
pub fn standard_load(p: &Project, max: Duration) -> LoadHandle {
    p.start_load(|c| {
        c.rate = 250;
        c.duration = max;
        c.slow_share = 0.05;
        c.slow = Duration::from_secs(2);
        c.post_share = 0.05;
        c.new_connection_share = 0.2;
    })
}

/// Waits until the load has `n` more successful answers than now (bounded).
pub fn wait_ok(load: &LoadHandle, n: u64, timeout: Duration) {
    let target = load.progress().ok + n;
    let deadline = Instant::now() + timeout;
    while load.progress().ok < target {
        assert!(
            Instant::now() < deadline,
            "the load did not get {n} more successful answers within {timeout:?}: {:?}",
            load.progress()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Prints the load's report (summary, timeline) and the rollout's transcript, and writes
/// the report to the target folder as `faults-NAME.json`.
pub fn publish(name: &str, report: &Report, runs: &[&Finished]) {
    eprintln!("== {name}");
    for r in runs {
        eprint!("{}", r.transcript());
    }
    eprint!("{report}");
    eprint!("{}", report.timeline_text());
    if let Some(w) = report.between("rollout-start", "rollout-end") {
        eprintln!(
            "figures {name}: rollout window {:.2}s..{:.2}s: {} sent ({:.0} req/s), {} failed, {} stale retries, {} upstream errors",
            w.from, w.to, w.sent, w.rate, w.failed, w.retried, w.upstream_errors
        );
    }
    eprintln!(
        "figures {name}: whole run: {} sent, {} failed, {} stale retries, {} upstream errors, {} skipped",
        report.sent, report.failed, report.stale_retries, report.upstream_errors.total, report.skipped
    );
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("target")
        .join(format!("faults-{name}.json"));
    if report.write_json(&path).is_ok() {
        eprintln!("report: {}", path.display());
    }
}

/// No failed request, no upstream error in nginx's log, and the load was real (at least
/// 200 requests per second between the marks `rollout-start` and `rollout-end`, or in the
/// 2 s after `rollout-start` when the run was shorter; every class answered).
pub fn assert_clean(report: &Report) {
    assert_eq!(
        report.failed,
        0,
        "failed requests: {:?}\nfirst ones: {:#?}",
        report.failures,
        report.failures().take(5).collect::<Vec<_>>()
    );
    assert!(
        report.upstream_errors.read,
        "nginx's error log was not read"
    );
    assert_eq!(
        report.upstream_errors.total, 0,
        "upstream errors: {:#?}",
        report.upstream_errors.errors
    );
    assert_eq!(report.skipped, 0, "the client could not keep up");
    let start = report
        .mark("rollout-start")
        .expect("the mark rollout-start");
    let end = report.mark("rollout-end").expect("the mark rollout-end");
    // A refused or no-op run ends within milliseconds: judge the rate over 2 s at least.
    let w = report.window(start, end.max(start + 2.0));
    assert!(
        w.rate >= 200.0,
        "only {:.0} requests per second during the rollout",
        w.rate
    );
    for class in rollout_load::Class::ALL {
        assert!(
            report.classes[&class].ok > 0,
            "no {} request succeeded",
            class.name()
        );
    }
}

/// Every instance a traffic change took out answered the load within its last second
/// before that change (otherwise the test proves nothing about it). `containers` are the
/// app's containers that existed (to map names to the short ids the app answers with).
pub fn assert_answered_before_unrouted(report: &Report, run: &Finished, containers: &[Container]) {
    for (host, t) in run.unrouted() {
        let Some(c) = containers.iter().find(|c| c.name == host) else {
            continue;
        };
        let short = &c.id[..12];
        let answered = report
            .requests
            .iter()
            .any(|r| r.instance.as_deref() == Some(short) && r.end() <= t && r.end() >= t - 1.0);
        assert!(
            answered,
            "{host} ({short}) did not answer within its last second before it was unrouted at {t:.2}s"
        );
    }
}

/// The images of the running app containers, sorted.
pub fn running_images(p: &Project, service: &str) -> Vec<String> {
    let mut v: Vec<String> = p
        .containers(Some(service))
        .into_iter()
        .filter(|c| c.state == "running")
        .map(|c| c.image)
        .collect();
    v.sort();
    v
}

/// What the rollout keeps with the engine for a project, outside Compose (never-started
/// containers labelled `io.rollout.project`): `(name, kind, state)`, kind being `lock`,
/// `journal` or `revision` (the saved spec of a revision, the way back to it).
pub fn rollout_keepers(p: &Project) -> Vec<(String, String, String)> {
    let out = run_ok(docker().args([
        "ps",
        "--all",
        "--format",
        "{{.Names}}\t{{.Label \"io.rollout.kind\"}}\t{{.State}}",
        "--filter",
        &format!("label=io.rollout.project={}", p.name()),
    ]));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            (f.len() == 3).then(|| (f[0].to_string(), f[1].to_string(), f[2].to_string()))
        })
        .collect()
}

/// The lock and journal records of a project: none may be left when a rollout ended in a
/// final state (completed, rolled back, no change).
pub fn rollout_leftovers(p: &Project) -> Vec<String> {
    rollout_keepers(p)
        .into_iter()
        .filter(|(_, kind, _)| kind != "revision")
        .map(|(name, _, _)| name)
        .collect()
}

/// How long a test lets one rollout run.
pub const ROLLOUT_TIMEOUT: Duration = Duration::from_secs(150);

/// A project running `stack` (v1), healthy and serving through nginx, with `override_yaml`
/// as `docker-compose.override.yml` (read by Compose and by the plugin alike), and the
/// plugin installed. Removes what the rollout kept with the engine when dropped.
pub struct FaultStack {
    /// The project.
    pub p: Project,
    /// The plugin under test.
    pub plugins: PluginDir,
}

impl FaultStack {
    /// Brings `stack` up (`images` must exist besides v1 and nginx).
    pub fn new(slug: &str, stack: DemoStack, override_yaml: &str, images: &[&str]) -> FaultStack {
        require_engine();
        let mut needed = vec![stack.image.as_str(), NGINX_IMAGE];
        needed.extend_from_slice(images);
        require_images(&needed);
        let p = Project::new(slug);
        stack.write_to(&p);
        p.write("docker-compose.override.yml", override_yaml);
        p.up();
        p.wait_healthy("app", stack.replicas as usize, Duration::from_secs(60));
        wait_http(p.port("nginx", 80), "/", Duration::from_secs(30), |a| {
            a.status == 200
        });
        let plugins = PluginDir::install(&workspace_binary("docker-rollout", "docker-rollout"));
        FaultStack { p, plugins }
    }

    /// `docker rollout app ARGS`, not started.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = self.p.rollout_command(&self.plugins);
        cmd.arg("app").args(args);
        cmd
    }

    /// Runs `docker rollout app ARGS` under `load`, between the marks `rollout-start` and
    /// `rollout-end`.
    pub fn rollout(&self, load: &LoadHandle, args: &[&str]) -> Finished {
        load.mark("rollout-start");
        let run = run_rollout(self.command(args), origin_of(load), ROLLOUT_TIMEOUT);
        load.mark("rollout-end");
        run
    }

    /// The app's containers, all states.
    pub fn app(&self) -> Vec<Container> {
        self.p.containers(Some("app"))
    }
}
