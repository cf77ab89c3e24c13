//! Killing, interrupting and refusing: the pieces the interruption and bad-input tests share.
//!
//! The interruption tests must stop `docker rollout` at a precise point of its protocol (just
//! after a launch, just after a config write, in the middle of a drain, in the middle of a
//! rollback), and the only honest way to know where it is, is what it says: its `--output
//! json` events. [`Running`] starts the command in the background, reads its event lines as
//! they come (each stamped with the time it was read), and lets the test wait for an event,
//! then signal the plugin process (found as the docker CLI's child), the docker CLI alone, or
//! the whole process group as a terminal's Ctrl-C does.
//!
//! What is left behind after a kill is the other half of each test: the never-started
//! containers the Docker backend keeps its lock, journal and saved revisions in ([`keepers`],
//! removed with the [`crate::Project`] by their `io.rollout.project` label), the
//! nginx config inside the proxy ([`nginx_test`]) and nginx's process ids ([`nginx_pids`]: a
//! reload changes the workers' ids even when it changes no byte).

use crate::{docker, run_ok, Project};
use rollout_core::event::{Envelope, Event, Outcome};
use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// One event line, with when it was read (seconds since [`Running::spawn`]).
#[derive(Debug, Clone)]
pub struct Line {
    /// Seconds since the command was started, when the line was read.
    pub at: f64,
    /// The event.
    pub event: Event,
}

/// How a `docker rollout` run ended.
#[derive(Debug)]
pub struct Ended {
    /// The docker CLI's exit code (`None`: ended by a signal).
    pub code: Option<i32>,
    /// Every event, in order (also those a test waited for).
    pub events: Vec<Line>,
    /// The summary line, if one came.
    pub summary: Option<serde_json::Value>,
    /// Its stderr.
    pub stderr: String,
    /// Seconds from start to end.
    pub elapsed: f64,
}

impl Ended {
    /// The outcome of the `finished` event, if one came.
    pub fn outcome(&self) -> Option<Outcome> {
        self.events.iter().find_map(|l| match &l.event {
            Event::Finished { outcome } => Some(outcome.clone()),
            _ => None,
        })
    }

    /// Whether an event matches `pred`.
    pub fn has(&self, pred: impl Fn(&Event) -> bool) -> bool {
        self.events.iter().any(|l| pred(&l.event))
    }

    /// The events one per line, for failure messages.
    pub fn transcript(&self) -> String {
        transcript(&self.events)
    }
}

/// The events one per line.
pub fn transcript(events: &[Line]) -> String {
    events
        .iter()
        .map(|l| {
            format!(
                "{:>8.3} {}\n",
                l.at,
                serde_json::to_string(&l.event).unwrap_or_default()
            )
        })
        .collect()
}

enum Msg {
    Event(Line),
    Summary(serde_json::Value),
    Garbage(String),
}

/// A `docker rollout --output json` running in the background.
pub struct Running {
    child: Child,
    start: Instant,
    rx: Receiver<Msg>,
    seen: Vec<Line>,
    summary: Option<serde_json::Value>,
    garbage: Vec<String>,
    stderr: Option<JoinHandle<String>>,
    reader: Option<JoinHandle<()>>,
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

impl Running {
    /// Starts `cmd` (a `docker rollout ...` command) with `--output json`, piped stdout and
    /// stderr and no stdin. With `own_group`, in a process group of its own (its id is the
    /// CLI's pid), as a shell starts a foreground job.
    pub fn spawn(mut cmd: Command, own_group: bool) -> Running {
        use std::os::unix::process::CommandExt;
        cmd.args(["--output", "json"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if own_group {
            cmd.process_group(0);
        }
        let start = Instant::now();
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run docker rollout: {e}"));
        let stdout = child.stdout.take().expect("piped stdout");
        let mut stderr = child.stderr.take().expect("piped stderr");
        let (tx, rx) = mpsc::channel();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let at = start.elapsed().as_secs_f64();
                let msg = match serde_json::from_str::<serde_json::Value>(&line) {
                    Ok(v) if v.get("summary").is_some() => Msg::Summary(v),
                    Ok(v) => match serde_json::from_value::<Envelope>(v) {
                        Ok(env) => Msg::Event(Line {
                            at,
                            event: env.event,
                        }),
                        Err(_) => Msg::Garbage(line),
                    },
                    Err(_) => Msg::Garbage(line),
                };
                if tx.send(msg).is_err() {
                    return;
                }
            }
        });
        let stderr = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = stderr.read_to_string(&mut s);
            s
        });
        Running {
            child,
            start,
            rx,
            seen: Vec::new(),
            summary: None,
            garbage: Vec::new(),
            stderr: Some(stderr),
            reader: Some(reader),
        }
    }

    /// Seconds since the start.
    pub fn now(&self) -> f64 {
        self.start.elapsed().as_secs_f64()
    }

    /// The events read so far.
    pub fn events(&self) -> &[Line] {
        &self.seen
    }

    fn take(&mut self, msg: Msg) -> Option<Line> {
        match msg {
            Msg::Event(l) => {
                self.seen.push(l.clone());
                Some(l)
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

    /// Waits for the next event matching `pred` (events before it are kept); panics with the
    /// transcript when the command ends or `timeout` passes first.
    pub fn wait_for(
        &mut self,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&Event) -> bool,
    ) -> Line {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(msg) => {
                    if let Some(l) = self.take(msg) {
                        if pred(&l.event) {
                            return l;
                        }
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    let _ = self.child.kill();
                    panic!(
                        "no {what} event within {timeout:?}; events:\n{}",
                        transcript(&self.seen)
                    );
                }
                Err(RecvTimeoutError::Disconnected) => {
                    let _ = self.child.wait();
                    let err = self
                        .stderr
                        .take()
                        .and_then(|t| t.join().ok())
                        .unwrap_or_default();
                    panic!(
                        "docker rollout ended before a {what} event; events:\n{}stderr:\n{err}",
                        transcript(&self.seen)
                    );
                }
            }
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

    /// Waits for the command to end (killing it after `timeout`, then panicking).
    pub fn wait(mut self, timeout: Duration) -> Ended {
        let deadline = Instant::now() + timeout;
        let status = loop {
            if let Some(s) = self.child.try_wait().expect("wait for docker rollout") {
                break s;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                let err = self
                    .stderr
                    .take()
                    .and_then(|t| t.join().ok())
                    .unwrap_or_default();
                panic!(
                    "docker rollout did not end within {timeout:?}; events:\n{}stderr:\n{err}",
                    transcript(&self.seen)
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let elapsed = self.now();
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
        while let Ok(msg) = self.rx.try_recv() {
            self.take(msg);
        }
        let stderr = self
            .stderr
            .take()
            .and_then(|t| t.join().ok())
            .unwrap_or_default();
        assert!(
            self.garbage.is_empty(),
            "--output json printed lines that are not events: {:?}\nstderr:\n{stderr}",
            self.garbage
        );
        Ended {
            code: status.code(),
            events: std::mem::take(&mut self.seen),
            summary: self.summary.take(),
            stderr,
            elapsed,
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

/// A never-started container the Docker backend keeps state in.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Keeper {
    /// `lock`, `journal` or `revision`.
    pub kind: String,
    /// Its name.
    pub name: String,
}

/// The keeper containers of `project` (label `io.rollout.project`).
pub fn keepers(project: &str) -> Vec<Keeper> {
    let out = run_ok(docker().args([
        "ps",
        "--all",
        "--filter",
        &format!("label=io.rollout.project={project}"),
        "--format",
        "{{.Label \"io.rollout.kind\"}}\t{{.Names}}",
    ]));
    let mut k: Vec<Keeper> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let (kind, name) = l.split_once('\t')?;
            Some(Keeper {
                kind: kind.into(),
                name: name.into(),
            })
        })
        .collect();
    k.sort();
    k
}

/// The process ids inside the running container of `service` (nginx: the master and its
/// workers), sorted. A reload replaces the workers, so a changed list means one happened.
pub fn nginx_pids(p: &Project, service: &str) -> Vec<u32> {
    let c = p
        .containers(Some(service))
        .into_iter()
        .find(|c| c.state == "running")
        .unwrap_or_else(|| panic!("{service} has no running container"));
    let out = run_ok(docker().args(["top", &c.id, "-o", "pid"]));
    let mut pids: Vec<u32> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .skip(1)
        .filter_map(|l| l.trim().parse().ok())
        .collect();
    pids.sort();
    pids
}

/// `nginx -t` in the running container of `service`: `Ok` with its output when the live
/// config is valid, else `Err` with it.
pub fn nginx_test(p: &Project, service: &str) -> Result<String, String> {
    let c = p
        .containers(Some(service))
        .into_iter()
        .find(|c| c.state == "running")
        .unwrap_or_else(|| panic!("{service} has no running container"));
    let out = docker()
        .args(["exec", &c.id, "nginx", "-t"])
        .output()
        .expect("docker exec runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if out.status.success() {
        Ok(text)
    } else {
        Err(text)
    }
}

/// Files the nginx router may leave beside the live config (`.rollout-candidate`,
/// `.rollout-previous`, `.rollout-next`) that exist in the proxy container now.
pub fn router_leftovers(p: &Project, service: &str, live: &str) -> Vec<String> {
    let c = p
        .containers(Some(service))
        .into_iter()
        .find(|c| c.state == "running")
        .unwrap_or_else(|| panic!("{service} has no running container"));
    [".rollout-candidate", ".rollout-previous", ".rollout-next"]
        .iter()
        .map(|s| format!("{live}{s}"))
        .filter(|f| {
            docker()
                .args(["exec", &c.id, "test", "-e", f])
                .output()
                .is_ok_and(|o| o.status.success())
        })
        .collect()
}
