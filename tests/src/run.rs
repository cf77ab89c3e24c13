//! `docker rollout` run as a child process, read back as it goes.
//!
//! The only honest way to know where a rollout is, is what it says: its `--output json`
//! events, which the plugin flushes one line each as they happen. [`Running`] starts the
//! command in the background and stamps each line on a [`Clock`] as it is read (the load's,
//! so that events line up with the requests; or one started with the run). A test can wait for
//! an event, then signal the plugin process (found as the docker CLI's child), the docker CLI
//! alone, or the whole process group as a terminal's Ctrl-C does; [`Running::wait`] gives the
//! [`Ended`] run: exit code, events, summary line and stderr. [`run_rollout`] does both in one.
//!
//! The caller adds `--output json` when it wants events: in text mode stdout stays empty and
//! stderr says what an operator reads. Every stdout line must be a version-1 event envelope or
//! the summary: anything else fails the run when it ends.

use crate::engine::run_ok;
use crate::load::Clock;
use rollout_core::event::{Envelope, Event, Outcome, EVENT_SCHEMA_VERSION};
use serde_json::Value;
use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// One event line of the plugin, stamped when it was read.
#[derive(Debug, Clone)]
pub struct Stamped {
    /// Seconds on the run's [`Clock`] when the line was read.
    pub at: f64,
    /// The envelope's own `t`: seconds since the rollout started, by the plugin's clock.
    pub rollout_t: f64,
    /// The event.
    pub event: Event,
    /// The line as printed.
    pub json: Value,
}

impl Stamped {
    /// An event read at `at` whose envelope says `rollout_t`.
    pub fn new(at: f64, rollout_t: f64, event: Event) -> Stamped {
        let json = serde_json::to_value(Envelope {
            v: EVENT_SCHEMA_VERSION,
            t: rollout_t,
            event: event.clone(),
        })
        .unwrap_or_default();
        Stamped {
            at,
            rollout_t,
            event,
            json,
        }
    }

    /// The `event` field (`traffic-changed`).
    pub fn name(&self) -> &str {
        self.json["event"].as_str().unwrap_or("")
    }
}

/// How a `docker rollout` run ended.
#[derive(Debug)]
pub struct Ended {
    /// The docker CLI's exit code (`None`: ended by a signal).
    pub code: Option<i32>,
    /// Every event, in order (also those a test waited for).
    pub events: Vec<Stamped>,
    /// The summary line (`{"v":1,"summary":{...}}`), if one came.
    pub summary: Option<Value>,
    /// What it wrote on stderr.
    pub stderr: String,
    /// Seconds on the run's clock when the command was started.
    pub started_at: f64,
    /// Seconds on the run's clock when it returned.
    pub returned_at: f64,
}

impl Ended {
    /// Seconds from start to return.
    pub fn elapsed(&self) -> f64 {
        self.returned_at - self.started_at
    }

    /// The outcome of the `finished` event, if one came.
    pub fn outcome(&self) -> Option<Outcome> {
        self.events.iter().find_map(|l| match &l.event {
            Event::Finished { outcome } => Some(outcome.clone()),
            _ => None,
        })
    }

    /// The outcome's name in the last `finished` event (`completed`, `rolled-back`, ...);
    /// panics when none came.
    pub fn outcome_name(&self) -> String {
        let f = self.named("finished");
        let last = f
            .last()
            .unwrap_or_else(|| panic!("no finished event:\n{}", self.transcript()));
        last.json["outcome"]["outcome"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// Whether an event matches `pred`.
    pub fn has(&self, pred: impl Fn(&Event) -> bool) -> bool {
        self.events.iter().any(|l| pred(&l.event))
    }

    /// The events named `name` (`instance-launched`), in order.
    pub fn named(&self, name: &str) -> Vec<&Stamped> {
        self.events.iter().filter(|s| s.name() == name).collect()
    }

    /// The `traffic-changed` events.
    pub fn traffic_changes(&self) -> impl Iterator<Item = &Stamped> {
        self.events
            .iter()
            .filter(|e| matches!(e.event, Event::TrafficChanged { .. }))
    }

    /// The summary line's `summary` object; panics when no summary came.
    pub fn summary_object(&self) -> &Value {
        self.summary
            .as_ref()
            .and_then(|s| s.get("summary"))
            .unwrap_or_else(|| panic!("no summary line:\n{}", self.transcript()))
    }

    /// The hosts (container names) that traffic changes took out, with the clock time of the
    /// change.
    pub fn unrouted(&self) -> Vec<(String, f64)> {
        let mut out = Vec::new();
        for e in self.named("traffic-changed") {
            for r in e.json["removed"].as_array().into_iter().flatten() {
                if let Some(h) = r["host"].as_str() {
                    out.push((h.to_string(), e.at));
                }
            }
        }
        out
    }

    /// The clock time of the traffic change that took `host` out; panics when none did.
    pub fn unrouted_at(&self, host: &str) -> f64 {
        self.unrouted()
            .into_iter()
            .find(|(h, _)| h == host)
            .map(|(_, t)| t)
            .unwrap_or_else(|| panic!("{host} was never unrouted\n{}", self.transcript()))
    }

    /// The `drained` event of a change that took `host` out; panics when none came.
    pub fn drained_of(&self, host: &str) -> &Stamped {
        self.named("drained")
            .into_iter()
            .find(|d| d.json["removed"].to_string().contains(host))
            .unwrap_or_else(|| panic!("no drained event for {host}\n{}", self.transcript()))
    }

    /// The events one per line, for failure messages.
    pub fn transcript(&self) -> String {
        transcript(&self.events)
    }
}

/// Events one per line: clock time, the rollout's own time, the event.
pub fn transcript(events: &[Stamped]) -> String {
    events
        .iter()
        .map(|e| {
            format!(
                "{:>8.3} (t {:>7.3}) {}\n",
                e.at,
                e.rollout_t,
                serde_json::to_string(&e.event).unwrap_or_default()
            )
        })
        .collect()
}

enum Msg {
    /// Boxed: an event is far larger than the other lines.
    Event(Box<Stamped>),
    Summary(Value),
    Garbage(String),
}

/// Which process a signal goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Whom {
    /// The plugin process (`docker-rollout`, the docker CLI's child).
    Plugin,
    /// The docker CLI process alone.
    Cli,
    /// The docker CLI's process group (the CLI and the plugin), as a terminal signals it.
    Group,
}

/// A `docker rollout` running in the background.
pub struct Running {
    child: Child,
    clock: Clock,
    spawned: Instant,
    started_at: f64,
    rx: Receiver<Msg>,
    seen: Vec<Stamped>,
    summary: Option<Value>,
    garbage: Vec<String>,
    stderr: Arc<Mutex<String>>,
    readers: Vec<JoinHandle<()>>,
}

impl Running {
    /// Starts `cmd` (a `docker rollout ...` command with its arguments) with piped stdout and
    /// stderr and no stdin, stamping its lines on `clock`. With `own_group`, in a process group
    /// of its own (its id is the CLI's pid), as a shell starts a foreground job.
    pub fn spawn(mut cmd: Command, clock: Clock, own_group: bool) -> Running {
        use std::os::unix::process::CommandExt;
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if own_group {
            cmd.process_group(0);
        }
        let started_at = clock.now();
        let spawned = Instant::now();
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run docker rollout: {e}"));
        let stdout = child.stdout.take().expect("piped stdout");
        let mut err = child.stderr.take().expect("piped stderr");
        let (tx, rx) = mpsc::channel();
        let out_reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(classify(clock.now(), line)).is_err() {
                    return;
                }
            }
        });
        let stderr = Arc::new(Mutex::new(String::new()));
        let s = stderr.clone();
        // Read as it comes, so that a test that gives up early can say what was printed.
        let err_reader = std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
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
            clock,
            spawned,
            started_at,
            rx,
            seen: Vec::new(),
            summary: None,
            garbage: Vec::new(),
            stderr,
            readers: vec![out_reader, err_reader],
        }
    }

    /// Seconds on the run's clock, now.
    pub fn now(&self) -> f64 {
        self.clock.now()
    }

    /// The events read so far.
    pub fn events(&self) -> &[Stamped] {
        &self.seen
    }

    fn take(&mut self, msg: Msg) -> Option<Stamped> {
        match msg {
            Msg::Event(l) => {
                self.seen.push((*l).clone());
                Some(*l)
            }
            Msg::Summary(v) => {
                self.summary = Some(v);
                None
            }
            Msg::Garbage(g) => {
                self.garbage.push(g);
                None
            }
        }
    }

    /// Reads the lines that already came, without waiting.
    pub fn drain(&mut self) {
        while let Ok(msg) = self.rx.try_recv() {
            self.take(msg);
        }
    }

    fn stderr_so_far(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Waits for the next event that `pred` accepts (events before it are kept); panics with
    /// the transcript when the command ends or `timeout` passes first.
    fn wait_until(
        &mut self,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&Stamped) -> bool,
    ) -> Stamped {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(msg) => {
                    if let Some(l) = self.take(msg) {
                        if pred(&l) {
                            return l;
                        }
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    let _ = self.child.kill();
                    panic!(
                        "no {what} event within {timeout:?}; events:\n{}stderr:\n{}",
                        transcript(&self.seen),
                        self.stderr_so_far()
                    );
                }
                Err(RecvTimeoutError::Disconnected) => {
                    let _ = self.child.wait();
                    for r in self.readers.drain(..) {
                        let _ = r.join();
                    }
                    panic!(
                        "docker rollout ended before a {what} event; events:\n{}stderr:\n{}",
                        transcript(&self.seen),
                        self.stderr_so_far()
                    );
                }
            }
        }
    }

    /// Waits for the next event matching `pred` (events before it are kept); panics with the
    /// transcript when the command ends or `timeout` passes first.
    pub fn wait_for(
        &mut self,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&Event) -> bool,
    ) -> Stamped {
        self.wait_until(what, timeout, |l| pred(&l.event))
    }

    /// Waits for the next event named `name` (`instance-launched`), as [`Running::wait_for`].
    pub fn wait_event(&mut self, name: &str, timeout: Duration) -> Stamped {
        self.wait_until(name, timeout, |l| l.name() == name)
    }

    /// Waits until the command's stderr holds `needle` (events read meanwhile are kept);
    /// panics with what it printed when it ends or `timeout` passes first.
    pub fn wait_stderr(&mut self, needle: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            self.drain();
            if self.stderr_so_far().contains(needle) {
                return;
            }
            let ended = self.child.try_wait().expect("wait for docker rollout");
            if ended.is_some() || Instant::now() > deadline {
                let _ = self.child.kill();
                panic!(
                    "no {needle:?} on stderr within {timeout:?} ({}); events:\n{}stderr:\n{}",
                    match ended {
                        Some(s) => format!("it ended: {s}"),
                        None => "still running".to_string(),
                    },
                    transcript(&self.seen),
                    self.stderr_so_far()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The docker CLI's process id (and its process group's, with `own_group`).
    pub fn cli_pid(&self) -> u32 {
        self.child.id()
    }

    /// The plugin's process id: the docker CLI's child named `docker-rollout`.
    pub fn plugin_pid(&self) -> u32 {
        let cli = self.cli_pid();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(pid) = child_named(cli, "docker-rollout") {
                return pid;
            }
            assert!(
                Instant::now() < deadline,
                "the docker CLI (pid {cli}) has no docker-rollout child"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends `signal` (`KILL`, `INT`, `TERM`) to `whom`.
    pub fn signal(&self, signal: &str, whom: Whom) {
        let target = match whom {
            Whom::Plugin => self.plugin_pid().to_string(),
            Whom::Cli => self.cli_pid().to_string(),
            Whom::Group => format!("-{}", self.cli_pid()),
        };
        run_ok(
            Command::new("kill")
                .arg(format!("-{signal}"))
                .arg("--")
                .arg(&target),
        );
    }

    /// Waits for the command to end, at most `timeout` from now (then kills it and panics).
    pub fn wait(self, timeout: Duration) -> Ended {
        let deadline = Instant::now() + timeout;
        self.wait_until_deadline(deadline, timeout)
    }

    /// [`Running::wait`], with `timeout` counted from the start of the command.
    pub fn wait_since_start(self, timeout: Duration) -> Ended {
        let deadline = self.spawned + timeout;
        self.wait_until_deadline(deadline, timeout)
    }

    fn wait_until_deadline(mut self, deadline: Instant, timeout: Duration) -> Ended {
        let status = loop {
            if let Some(s) = self.child.try_wait().expect("wait for docker rollout") {
                break s;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!(
                    "docker rollout did not end within {timeout:?}; events:\n{}stderr:\n{}",
                    transcript(&self.seen),
                    self.stderr_so_far()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let returned_at = self.now();
        for r in self.readers.drain(..) {
            let _ = r.join();
        }
        self.drain();
        let stderr = self.stderr_so_far();
        assert!(
            self.garbage.is_empty(),
            "docker rollout printed lines on stdout that are not version-{EVENT_SCHEMA_VERSION} \
             events or the summary: {:?}\nstderr:\n{stderr}",
            self.garbage
        );
        Ended {
            code: status.code(),
            events: std::mem::take(&mut self.seen),
            summary: self.summary.take(),
            stderr,
            started_at: self.started_at,
            returned_at,
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        // A test that panicked leaves no rollout running behind it.
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// What one stdout line read at `at` is.
fn classify(at: f64, line: String) -> Msg {
    let Ok(value) = serde_json::from_str::<Value>(&line) else {
        return Msg::Garbage(line);
    };
    if value["v"] != EVENT_SCHEMA_VERSION {
        return Msg::Garbage(line);
    }
    if value.get("summary").is_some() {
        return Msg::Summary(value);
    }
    match serde_json::from_value::<Envelope>(value.clone()) {
        Ok(env) => Msg::Event(Box::new(Stamped {
            at,
            rollout_t: env.t,
            event: env.event,
            json: value,
        })),
        Err(_) => Msg::Garbage(line),
    }
}

/// Runs `cmd` (a `docker rollout ...` command with its arguments) to its end, stamping its
/// lines on `clock`; kills it and panics after `timeout`.
pub fn run_rollout(cmd: Command, clock: Clock, timeout: Duration) -> Ended {
    Running::spawn(cmd, clock, false).wait(timeout)
}

/// The pid of a child of `parent` whose command name is `name`.
fn child_named(parent: u32, name: &str) -> Option<u32> {
    let dir = std::fs::read_dir("/proc").ok()?;
    for entry in dir.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // pid (comm) state ppid ...: comm may hold spaces, so split after the last ')'.
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let comm = &stat[open + 1..close];
        let ppid = stat[close + 1..]
            .split_whitespace()
            .nth(1)
            .and_then(|p| p.parse::<u32>().ok());
        if ppid == Some(parent) && comm == name {
            return Some(pid);
        }
    }
    None
}

/// Whether process `pid` still exists (a zombie counts as gone).
pub fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            s.rfind(')')
                .and_then(|c| s[c + 1..].split_whitespace().next().map(|st| st != "Z"))
                .unwrap_or(false)
        })
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stdout_lines_are_events_the_summary_or_garbage() {
        let event = r#"{"v":1,"t":0.5,"event":"instance-removed","instance":"abc"}"#;
        let Msg::Event(s) = classify(2.0, event.into()) else {
            panic!("not an event");
        };
        assert_eq!(
            (s.at, s.rollout_t, s.name()),
            (2.0, 0.5, "instance-removed")
        );
        assert!(matches!(s.event, Event::InstanceRemoved { .. }));
        let same = Stamped::new(2.0, 0.5, s.event.clone());
        assert_eq!(same.json, s.json);
        assert!(matches!(
            classify(0.0, r#"{"v":1,"summary":{"exit_code":0}}"#.into()),
            Msg::Summary(_)
        ));
        for garbage in [
            "rolling out app",
            r#"{"v":2,"t":0.5,"event":"instance-removed","instance":"abc"}"#,
            r#"{"v":1,"t":0.5,"event":"no-such-event"}"#,
        ] {
            assert!(
                matches!(classify(0.0, garbage.into()), Msg::Garbage(_)),
                "{garbage}"
            );
        }
    }
}
