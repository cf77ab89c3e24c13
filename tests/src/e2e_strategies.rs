//! A rollout through the real CLI, read back on the load generator's clock.
//!
//! The strategy tests (`tests/strategies.rs`) must show more than "no request failed": that
//! every old instance was still answering right up to the moment the tool took it out of
//! nginx (otherwise a test whose old instances got no traffic would pass for nothing), and
//! that the proxy kept enough healthy instances routed at every moment of the rollout. Both
//! need the tool's events and the proxy's config on the same clock as the load's requests:
//!
//! - [`LoadClock`] maps this process's monotonic clock onto the run's seconds
//!   ([`rollout_load::Record::t`]);
//! - [`run_rollout`] runs `docker rollout ... --output json`, and stamps each JSON event line
//!   with the load clock as it arrives (the plugin flushes each line as the event happens);
//! - [`ConfigWatch`] reads the proxy's bind-mounted config file every few milliseconds and keeps
//!   every distinct version of the upstream's servers, stamped the same way: the proxy's side
//!   of the story, independent of what the tool says it did;
//! - [`replay`] plays the `traffic-changed` events over the instances the tool launched and
//!   removed, giving the set of instances routed after each change and the moment each old
//!   instance left the routes;
//! - [`Answers`] indexes the load report's requests by the instance that answered them
//!   (`X-Demo-Instance`, the container's short id).

use crate::Container;
use rollout_core::event::{Envelope, Event};
use rollout_core::router::Target;
use rollout_load::{LoadHandle, Report};
use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The load generator's clock, readable from any thread.
#[derive(Debug, Clone, Copy)]
pub struct LoadClock {
    base: Instant,
    base_load: f64,
}

impl LoadClock {
    /// The clock of `load`'s run.
    pub fn of(load: &LoadHandle) -> LoadClock {
        let base = Instant::now();
        LoadClock {
            base,
            base_load: load.elapsed().as_secs_f64(),
        }
    }

    /// Seconds since the start of the load run, now.
    pub fn now(&self) -> f64 {
        self.base_load + self.base.elapsed().as_secs_f64()
    }
}

/// One event of the rollout, with the load-clock time its line arrived.
#[derive(Debug, Clone)]
pub struct Stamped {
    /// Load-clock seconds when the line was read.
    pub at: f64,
    /// The envelope's own `t` (seconds since the rollout started).
    pub t: f64,
    /// The event.
    pub event: Event,
}

/// What a `docker rollout --output json` run printed and how it ended.
#[derive(Debug)]
pub struct RolloutRun {
    /// The exit code (None: killed by a signal).
    pub code: Option<i32>,
    /// Every event, in order.
    pub events: Vec<Stamped>,
    /// The summary line, if one came.
    pub summary: Option<serde_json::Value>,
    /// What it wrote on stderr.
    pub stderr: String,
    /// Load-clock seconds when the command was started.
    pub started_at: f64,
    /// Load-clock seconds when it returned.
    pub returned_at: f64,
}

impl RolloutRun {
    /// Seconds from start to return.
    pub fn elapsed(&self) -> f64 {
        self.returned_at - self.started_at
    }

    /// The `traffic-changed` events.
    pub fn traffic_changes(&self) -> impl Iterator<Item = &Stamped> {
        self.events
            .iter()
            .filter(|e| matches!(e.event, Event::TrafficChanged { .. }))
    }

    /// The events as the plugin printed them, one per line (for failure messages).
    pub fn transcript(&self) -> String {
        let mut s = String::new();
        for e in &self.events {
            s.push_str(&format!(
                "{:>8.3} (t {:>7.3}) {}\n",
                e.at,
                e.t,
                serde_json::to_string(&e.event).unwrap_or_default()
            ));
        }
        s
    }
}

/// Runs `cmd` (a `docker rollout ...` command) with `--output json`, stamping its event lines
/// on `clock`; kills it after `timeout`.
pub fn run_rollout(mut cmd: Command, clock: LoadClock, timeout: Duration) -> RolloutRun {
    cmd.args(["--output", "json"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let started_at = clock.now();
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run docker rollout: {e}"));
    let stdout = child.stdout.take().expect("piped stdout");
    let mut stderr = child.stderr.take().expect("piped stderr");
    let reader = std::thread::spawn(move || {
        let mut lines = Vec::new();
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            lines.push((clock.now(), line));
        }
        lines
    });
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait for docker rollout") {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            let err = err_reader.join().unwrap_or_default();
            panic!("docker rollout did not return within {timeout:?}; stderr:\n{err}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let returned_at = clock.now();
    let lines = reader.join().expect("stdout reader");
    let stderr = err_reader.join().unwrap_or_default();
    let mut events = Vec::new();
    let mut summary = None;
    for (at, line) in lines {
        let value: serde_json::Value = serde_json::from_str(&line).unwrap_or_else(|e| {
            panic!("--output json printed a line that is not JSON ({e}): {line}\nstderr:\n{stderr}")
        });
        assert_eq!(value["v"], 1, "schema version of {line}");
        if value.get("summary").is_some() {
            summary = Some(value);
            continue;
        }
        let env: Envelope = serde_json::from_value(value)
            .unwrap_or_else(|e| panic!("not an event envelope ({e}): {line}"));
        events.push(Stamped {
            at,
            t: env.t,
            event: env.event,
        });
    }
    RolloutRun {
        code: status.code(),
        events,
        summary,
        stderr,
        started_at,
        returned_at,
    }
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
    pub fn start(path: PathBuf, upstream: &str, clock: LoadClock) -> ConfigWatch {
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

/// An instance as the replay knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Known {
    /// Full container id.
    pub id: String,
    /// Its name (what nginx resolves).
    pub host: String,
    /// Its Compose service.
    pub service: String,
}

/// The routes after one traffic change, resolved to instances.
#[derive(Debug, Clone)]
pub struct Span {
    /// Load-clock seconds of the change (when its event arrived).
    pub from: f64,
    /// When the next change came (or the rollout returned).
    pub to: f64,
    /// The router's generation.
    pub generation: u64,
    /// Full ids of the instances routed, directly or through their service's name.
    pub routed: BTreeSet<String>,
}

/// What the replay of one rollout's events gives.
#[derive(Debug, Clone, Default)]
pub struct Replay {
    /// The routed set after each change, in order.
    pub spans: Vec<Span>,
    /// When each instance left the routes (first time), by full id.
    pub unrouted: BTreeMap<String, f64>,
    /// Instances that left the routes and came back later in the same rollout.
    pub rerouted: Vec<String>,
    /// Every instance known by the end: the ones given, then the launched ones.
    pub known: Vec<Known>,
    /// When each instance ran, by full id: from its launch event (the given ones: always) to
    /// its stop or removal event (or never).
    pub alive: BTreeMap<String, (f64, f64)>,
}

impl Replay {
    /// The instance with this host name.
    pub fn by_host(&self, host: &str) -> Option<&Known> {
        self.known.iter().find(|k| k.host == host)
    }

    /// The instances a server host of the proxy's config stood for at `at`: the instance of
    /// that name, or the running instances of the service of that name.
    pub fn resolve_host(&self, host: &str, at: f64) -> Option<BTreeSet<String>> {
        if let Some(k) = self.by_host(host) {
            return Some(BTreeSet::from([k.id.clone()]));
        }
        let ids: BTreeSet<String> = self
            .known
            .iter()
            .filter(|k| k.service == host)
            .filter(|k| {
                self.alive
                    .get(&k.id)
                    .is_some_and(|(from, to)| *from <= at && at < *to)
            })
            .map(|k| k.id.clone())
            .collect();
        (!ids.is_empty()).then_some(ids)
    }

    /// When each instance first left the routes as the proxy's config file showed them: the
    /// time the first version without it was read, after one with it.
    pub fn unrouted_in_config(&self, snaps: &[ConfigSnapshot]) -> BTreeMap<String, f64> {
        let mut out = BTreeMap::new();
        let mut before: BTreeSet<String> = BTreeSet::new();
        for s in snaps {
            let now: BTreeSet<String> = s
                .hosts()
                .iter()
                .filter_map(|h| self.resolve_host(h, s.at))
                .flatten()
                .collect();
            for id in before.difference(&now) {
                out.entry(id.clone()).or_insert(s.at);
            }
            before = now;
        }
        out
    }
}

/// Replays `run`'s traffic changes. `initial` are the project's containers before the
/// rollout (all services), `routes` the upstream's targets before it (for the seed, one
/// [`Target::Service`]).
pub fn replay(initial: &[Container], routes: &[Target], run: &RolloutRun) -> Replay {
    let mut known: Vec<Known> = initial
        .iter()
        .map(|c| Known {
            id: c.id.clone(),
            host: c.name.clone(),
            service: c.service.clone(),
        })
        .collect();
    let mut running: BTreeSet<String> = initial
        .iter()
        .filter(|c| c.state == "running")
        .map(|c| c.id.clone())
        .collect();
    let mut alive: BTreeMap<String, (f64, f64)> = running
        .iter()
        .map(|id| (id.clone(), (f64::NEG_INFINITY, f64::INFINITY)))
        .collect();
    let mut targets: Vec<Target> = routes.to_vec();
    let mut service = String::new();
    let mut out = Replay::default();
    let mut before: BTreeSet<String> = BTreeSet::new();
    let resolve = |targets: &[Target], known: &[Known], running: &BTreeSet<String>| {
        let mut set = BTreeSet::new();
        for t in targets {
            match t {
                Target::Instance { id, .. } => {
                    set.insert(id.0.clone());
                }
                Target::Service { name } => set.extend(
                    known
                        .iter()
                        .filter(|k| &k.service == name && running.contains(&k.id))
                        .map(|k| k.id.clone()),
                ),
            }
        }
        set
    };
    let mut first = true;
    for e in &run.events {
        match &e.event {
            Event::RolloutStarted { service: s, .. } => service = s.service.clone(),
            Event::InstanceLaunched { instance, host, .. } => {
                known.push(Known {
                    id: instance.0.clone(),
                    host: host.clone(),
                    service: service.clone(),
                });
                running.insert(instance.0.clone());
                alive.insert(instance.0.clone(), (e.at, f64::INFINITY));
            }
            Event::InstanceStopped { instance } | Event::InstanceRemoved { instance } => {
                running.remove(&instance.0);
                if let Some((_, to)) = alive.get_mut(&instance.0) {
                    *to = to.min(e.at);
                }
            }
            Event::TrafficChanged {
                generation,
                set,
                removed,
            } => {
                if first {
                    before = resolve(&targets, &known, &running);
                    first = false;
                }
                targets.retain(|t| !removed.contains(t) && !set.iter().any(|r| &r.target == t));
                targets.extend(set.iter().map(|r| r.target.clone()));
                let now = resolve(&targets, &known, &running);
                for id in before.difference(&now) {
                    out.unrouted.entry(id.clone()).or_insert(e.at);
                }
                for id in now.difference(&before) {
                    if out.unrouted.contains_key(id) {
                        out.rerouted.push(id.clone());
                    }
                }
                if let Some(last) = out.spans.last_mut() {
                    last.to = e.at;
                }
                out.spans.push(Span {
                    from: e.at,
                    to: run.returned_at,
                    generation: *generation,
                    routed: now.clone(),
                });
                before = now;
            }
            _ => {}
        }
    }
    out.known = known;
    out.alive = alive;
    out
}

/// One answer of an instance: when its request started and ended (load clock).
#[derive(Debug, Clone, Copy)]
pub struct Answer {
    /// Start.
    pub start: f64,
    /// End.
    pub end: f64,
}

/// The successful answers of a load run by instance (`X-Demo-Instance`: a short id).
#[derive(Debug, Default)]
pub struct Answers {
    by_instance: BTreeMap<String, Vec<Answer>>,
}

impl Answers {
    /// Indexes `report`'s successful requests.
    pub fn of(report: &Report) -> Answers {
        let mut by_instance: BTreeMap<String, Vec<Answer>> = BTreeMap::new();
        for r in report.requests.iter().filter(|r| !r.failed()) {
            if let Some(i) = &r.instance {
                by_instance.entry(i.clone()).or_default().push(Answer {
                    start: r.t,
                    end: r.end(),
                });
            }
        }
        Answers { by_instance }
    }

    /// The answers of the container with full id `id` (matched by its short id).
    pub fn of_container(&self, id: &str) -> &[Answer] {
        self.by_instance
            .iter()
            .find(|(short, _)| !short.is_empty() && id.starts_with(short.as_str()))
            .map_or(&[], |(_, v)| v.as_slice())
    }
}

/// How one old instance ended its service, for the report and the assertions.
#[derive(Debug, Clone)]
pub struct LastSecond {
    /// Its name.
    pub host: String,
    /// When the traffic change that took it out arrived.
    pub unrouted: f64,
    /// Answers that ended in the second before that.
    pub answers_in_last_second: usize,
    /// When the proxy's config file stopped naming it (read before the reload: earlier).
    pub unrouted_in_config: f64,
    /// Answers to requests that started in the second before that.
    pub started_in_last_config_second: usize,
    /// Its last answer's end (the load report's `instances[..].last`).
    pub last_answer: f64,
    /// Answers to requests that started more than the slack after it was unrouted.
    pub answered_after: usize,
}

/// How [`assert_last_second`] reads the times.
#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    /// Requests that started this long after the event are not the in-flight ones.
    pub slack: f64,
    /// The end of the rollout's watch: requests that start later may go to the old instance
    /// again (a switch back), so they are not counted.
    pub until: f64,
}

/// Checks, for each instance of `old` (full ids): it answered requests that started in the
/// second before the proxy's config file stopped naming it (nginx reloads only after the
/// write, so it was routed then), and the load report's last answer of it is no earlier; the
/// config changed no later than the traffic-change event that took it out arrived; and it
/// answered no request that started more than `slack` seconds after that event (and before
/// `until`): the routes had changed by then. Panics with the whole table when one did not.
///
/// The unroute itself (the reload taking) lies between the config write and the event, which
/// comes once the router has seen the new workers: under a loaded machine that can take
/// seconds, so the answers that ended in the second before the event are printed, not
/// asserted.
pub fn assert_last_second(
    what: &str,
    old: &[String],
    replay: &Replay,
    snaps: &[ConfigSnapshot],
    (answers, report): (&Answers, &Report),
    Bounds { slack, until }: Bounds,
) -> Vec<LastSecond> {
    let in_config = replay.unrouted_in_config(snaps);
    let mut rows = Vec::new();
    let mut problems = Vec::new();
    for id in old {
        let host = replay
            .known
            .iter()
            .find(|k| &k.id == id)
            .map_or(id.clone(), |k| k.host.clone());
        let Some(&u) = replay.unrouted.get(id) else {
            problems.push(format!("{host} was never taken out of the routes"));
            continue;
        };
        let Some(&c) = in_config.get(id) else {
            problems.push(format!(
                "the proxy's config file never stopped routing {host} (versions seen: {})",
                snaps.len()
            ));
            continue;
        };
        let a = answers.of_container(id);
        let short: String = id.chars().take(12).collect();
        let last_answer = report
            .instances
            .get(&short)
            .map_or(f64::NEG_INFINITY, |i| i.last);
        let row = LastSecond {
            host: host.clone(),
            unrouted: u,
            answers_in_last_second: a.iter().filter(|x| x.end >= u - 1.0 && x.end <= u).count(),
            unrouted_in_config: c,
            started_in_last_config_second: a
                .iter()
                .filter(|x| x.start >= c - 1.0 && x.start < c)
                .count(),
            last_answer,
            answered_after: a
                .iter()
                .filter(|x| x.start > u + slack && x.start < until)
                .count(),
        };
        if row.started_in_last_config_second == 0 {
            problems.push(format!(
                "{host} answered no request that started in the second before the config file \
                 stopped naming it at {c:.3}s"
            ));
        }
        if c > u {
            problems.push(format!(
                "{host}: the config file still named it at {c:.3}s, after the event that took \
                 it out ({u:.3}s)"
            ));
        }
        if row.last_answer < c - 1.0 {
            problems.push(format!(
                "{host}: the load report's last answer {last_answer:.3}s is more than 1s before \
                 the config stopped naming it at {c:.3}s"
            ));
        }
        if row.answered_after > 0 {
            problems.push(format!(
                "{host} answered {} requests that started more than {slack}s after it was \
                 unrouted at {u:.3}s",
                row.answered_after
            ));
        }
        rows.push(row);
    }
    eprintln!(
        "{what}: old instances, unrouted (config file, event) vs their answers (load clock, s)"
    );
    for r in &rows {
        eprintln!(
            "  {:<40} config {:>8.3} (started in last second {:>3})  event {:>8.3} (ended in last second {:>3})  last answer {:>8.3}  started after event+{slack}s: {}",
            r.host,
            r.unrouted_in_config,
            r.started_in_last_config_second,
            r.unrouted,
            r.answers_in_last_second,
            r.last_answer,
            r.answered_after
        );
    }
    assert!(problems.is_empty(), "{what}:\n{}", problems.join("\n"));
    rows
}

/// The nginx error log written to the container's stderr (Debian's nginx logs there when its
/// config names no error_log, as the examples' configs do), as upstream errors on the load's
/// clock. Call it before the project is removed.
pub fn stderr_upstream_errors(container: &str, report: &Report) -> rollout_load::UpstreamErrors {
    let out = crate::run_ok(crate::docker().args(["logs", container]));
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

    fn stamped(at: f64, event: Event) -> Stamped {
        Stamped { at, t: at, event }
    }

    #[test]
    fn replay_resolves_service_routes_and_finds_when_each_left() {
        use rollout_core::model::InstanceId;
        use rollout_core::router::Route;
        let c = |id: &str, name: &str| Container {
            id: id.into(),
            name: name.into(),
            image: "i".into(),
            state: "running".into(),
            health: "healthy".into(),
            service: "app".into(),
        };
        let initial = vec![c("aaa", "p_app_1"), c("bbb", "p_app_2")];
        let inst = |id: &str, host: &str| Target::instance(InstanceId(id.into()), host);
        let svc = Target::Service { name: "app".into() };
        let events = vec![
            stamped(
                1.0,
                Event::InstanceLaunched {
                    instance: InstanceId("ccc".into()),
                    host: "p_app_3".into(),
                    revision: "r".into(),
                },
            ),
            stamped(
                2.0,
                Event::TrafficChanged {
                    generation: 1,
                    set: vec![
                        Route {
                            target: inst("aaa", "p_app_1"),
                            weight: 1,
                        },
                        Route {
                            target: inst("bbb", "p_app_2"),
                            weight: 1,
                        },
                        Route {
                            target: inst("ccc", "p_app_3"),
                            weight: 1,
                        },
                    ],
                    removed: vec![svc.clone()],
                },
            ),
            stamped(
                3.0,
                Event::TrafficChanged {
                    generation: 2,
                    set: vec![],
                    removed: vec![inst("aaa", "p_app_1")],
                },
            ),
            stamped(
                3.5,
                Event::InstanceRemoved {
                    instance: InstanceId("aaa".into()),
                },
            ),
        ];
        let run = RolloutRun {
            code: Some(0),
            events,
            summary: None,
            stderr: String::new(),
            started_at: 0.5,
            returned_at: 4.0,
        };
        let r = replay(&initial, &[svc], &run);
        assert_eq!(r.spans.len(), 2);
        assert_eq!(r.spans[0].routed.len(), 3);
        assert_eq!((r.spans[0].from, r.spans[0].to), (2.0, 3.0));
        assert_eq!(r.spans[1].routed.len(), 2);
        assert_eq!(r.spans[1].to, 4.0);
        assert_eq!(r.unrouted.get("aaa"), Some(&3.0));
        assert!(!r.unrouted.contains_key("bbb"));
        assert!(r.rerouted.is_empty());
        assert_eq!(r.by_host("p_app_3").unwrap().id, "ccc");
    }
}
