//! nginx as the tests see it from outside the tool: its processes in the proxy container (a
//! reload replaces the workers even when it changes no byte, and a drain names workers that
//! must have been nginx's), `nginx -t` on the live config, the files the router may leave
//! beside it, the upstream's servers in the config file (read, and watched during a run on the
//! load's clock: the proxy's side of the story, independent of what the tool says it did),
//! and the error log a config without `error_log` sends to the container's stderr.

use crate::engine::{docker, run_ok};
use crate::load::Clock;
use crate::project::Project;
use rollout_load::Report;
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// nginx's master and worker processes in a container, with the process ids the container
/// sees (as the router names them), read with busybox `ps` in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NginxProcs {
    /// The master's pid.
    pub master: Option<u32>,
    /// Worker pids (including old ones still shutting down).
    pub workers: BTreeSet<u32>,
}

/// The nginx processes of container `id`.
pub fn nginx_procs(id: &str) -> NginxProcs {
    let out = run_ok(&mut ps_in(id));
    parse_ps(&String::from_utf8_lossy(&out.stdout))
}

/// busybox `ps` in container `id`, with the pid and the whole command line of each process.
fn ps_in(id: &str) -> Command {
    let mut cmd = docker();
    cmd.args(["exec", id, "ps", "-o", "pid,args"]);
    cmd
}

/// nginx's processes in the output of [`ps_in`] (the first line is the header).
fn parse_ps(text: &str) -> NginxProcs {
    let mut procs = NginxProcs {
        master: None,
        workers: BTreeSet::new(),
    };
    for line in text.lines().skip(1) {
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

/// Every nginx worker pid seen while it runs, polled (a few times a second) with `ps` in the
/// container, so that a test can check that the workers a drain names were nginx's.
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
                if let Ok(o) = ps_in(&id).output() {
                    let now = parse_ps(&String::from_utf8_lossy(&o.stdout)).workers;
                    w.lock().unwrap().extend(now);
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

/// `nginx -t` in the running container of `service`: `Ok` with its output when the live
/// config is valid, else `Err` with it.
pub fn nginx_test(p: &Project, service: &str) -> Result<String, String> {
    let c = p.running(service);
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

/// Files the nginx router may leave beside the live config (`.rollout-candidate.TAG`,
/// `.rollout-previous.TAG`, `.rollout-next.TAG`, of any run) that exist in the proxy container
/// now.
pub fn router_leftovers(p: &Project, service: &str, live: &str) -> Vec<String> {
    let c = p.running(service);
    let script = r#"for f in "$1".rollout-candidate* "$1".rollout-previous* "$1".rollout-next*; do [ -e "$f" ] && printf '%s\n' "$f"; done; true"#;
    let out = docker()
        .args(["exec", &c.id, "sh", "-c", script, "sh", live])
        .output()
        .expect("docker exec");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

/// The servers of `upstream NAME { ... }` in an nginx config, each as written after `server`
/// (`app:8000`, `blue:8000 weight=90`); comments are dropped. `None` when there is no such
/// upstream.
pub fn upstream_servers(conf: &str, name: &str) -> Option<Vec<String>> {
    let text: String = conf
        .lines()
        .map(|l| l.split('#').next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n");
    let mut rest = text.as_str();
    loop {
        let at = rest.find("upstream")?;
        let after = &rest[at + "upstream".len()..];
        let mut words = after.split_whitespace();
        if words.next() == Some(name)
            && after.trim_start()[name.len()..]
                .trim_start()
                .starts_with('{')
        {
            let open = after.find('{')?;
            let body = &after[open + 1..];
            let close = body.find('}')?;
            return Some(
                body[..close]
                    .split(';')
                    .map(str::trim)
                    .filter_map(|s| s.strip_prefix("server"))
                    .filter(|s| s.starts_with(char::is_whitespace))
                    .map(|s| s.split_whitespace().collect::<Vec<_>>().join(" "))
                    .collect(),
            );
        }
        rest = after;
    }
}

/// One version of the upstream as the proxy's config file had it.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigSnapshot {
    /// Load-clock seconds when it was first seen.
    pub at: f64,
    /// Its servers ([`upstream_servers`]).
    pub servers: Vec<String>,
}

impl ConfigSnapshot {
    /// The host of each server (`app` of `app:8000 weight=3`).
    pub fn hosts(&self) -> Vec<String> {
        self.servers
            .iter()
            .map(|s| {
                let addr = s.split_whitespace().next().unwrap_or("");
                addr.rsplit_once(':').map_or(addr, |(h, _)| h).to_string()
            })
            .collect()
    }
}

/// Watches the proxy's config file (on the host: the seed bind-mounts it) in the background.
#[derive(Debug)]
pub struct ConfigWatch {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<Vec<ConfigSnapshot>>>,
}

impl ConfigWatch {
    /// Starts reading `path` every 10 ms, keeping each distinct version of `upstream`'s servers.
    pub fn start(path: PathBuf, upstream: &str, clock: Clock) -> ConfigWatch {
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let upstream = upstream.to_string();
        let thread = std::thread::spawn(move || {
            let mut seen: Vec<ConfigSnapshot> = Vec::new();
            let mut pending: Option<(f64, Vec<String>)> = None;
            // Bounded: the test stops it, and at worst it ends after 15 minutes.
            let limit = Instant::now() + Duration::from_secs(900);
            while !s.load(Ordering::SeqCst) && Instant::now() < limit {
                let at = clock.now();
                if let Ok(text) = std::fs::read_to_string(&path) {
                    // A file caught in the middle of an in-place write may lack the upstream
                    // or its end: keep only whole ones.
                    // A version counts once read twice in a row (10 ms apart), stamped when
                    // first read: a read racing the in-place write can see a mix of two.
                    if let Some(servers) = upstream_servers(&text, &upstream) {
                        match pending.take() {
                            Some((first, p)) if p == servers => {
                                if !servers.is_empty()
                                    && seen.last().is_none_or(|l| l.servers != servers)
                                {
                                    seen.push(ConfigSnapshot { at: first, servers });
                                }
                                pending = Some((first, p));
                            }
                            _ => pending = Some((at, servers)),
                        }
                    }
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            seen
        });
        ConfigWatch {
            stop,
            thread: Some(thread),
        }
    }

    /// Stops and returns the versions seen, in order.
    pub fn stop(mut self) -> Vec<ConfigSnapshot> {
        self.stop.store(true, Ordering::SeqCst);
        self.thread
            .take()
            .map(|t| t.join().expect("config watch thread"))
            .unwrap_or_default()
    }
}

impl Drop for ConfigWatch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// The nginx error log written to the container's stderr (Debian's nginx logs there when its
/// config names no error_log, as the examples' configs do), as upstream errors on the load's
/// clock. Call it before the project is removed.
pub fn stderr_upstream_errors(container: &str, report: &Report) -> rollout_load::UpstreamErrors {
    let out = run_ok(docker().args(["logs", container]));
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    let lines: Vec<&str> = text.lines().collect();
    eprintln!(
        "nginx's log ({} lines, last 40):\n{}",
        lines.len(),
        lines[lines.len().saturating_sub(40)..].join("\n")
    );
    rollout_load::UpstreamErrors::from_lines(&text, report.started_unix_ms as f64 / 1000.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_servers_reads_the_named_block_only() {
        let conf = "http {\n  upstream other { server x:1; }\n  upstream backend {\n    server blue:8000 weight=90; # 90%\n    server  green:8000   weight=10;\n  }\n}\n";
        assert_eq!(
            upstream_servers(conf, "backend").unwrap(),
            vec!["blue:8000 weight=90", "green:8000 weight=10"]
        );
        assert_eq!(upstream_servers(conf, "other").unwrap(), vec!["x:1"]);
        assert!(upstream_servers(conf, "back").is_none());
        let snap = ConfigSnapshot {
            at: 0.0,
            servers: upstream_servers(conf, "backend").unwrap(),
        };
        assert_eq!(snap.hosts(), vec!["blue", "green"]);
    }
}
