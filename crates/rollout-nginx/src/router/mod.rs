//! The nginx traffic router: edit the upstream, validate, write in place,
//! reload, check that the reload took, and wait until drained.
//!
//! [`NginxRouter`] implements the core crate's
//! [`TrafficRouter`] for one upstream
//! block of the operator's own config, in one or several proxy replicas.
//! It reaches each replica through the two traits of [`crate::proxy`], so the
//! same code drives an nginx container (the Docker backend implements the
//! traits) and an nginx on this machine (the crate's tests).
//!
//! # One change, step by step
//!
//! [`apply`](NginxRouter::apply) runs in two phases so that a change either
//! reaches every replica or none.
//!
//! 1. *Prepare, for every replica.* Read the live file, edit the upstream
//!    with the crate's upstream editor (only its `server` lines change, the
//!    rest of the file stays byte for byte), write the result as a candidate
//!    file beside the live one (`nginx.conf.rollout-candidate.TAG`, TAG
//!    this run's own ([`NginxRouter::tag`]): same directory, so relative
//!    includes resolve the same; a name that a `*.conf` glob cannot pick
//!    up, and that no other run writes or removes), and run `nginx -t -q -c CANDIDATE` in
//!    the proxy. When the upstream lives in a file the main file includes
//!    ([`NginxRouterOptions::upstream_file`], the official image's
//!    `conf.d/default.conf`), nginx -t reads a candidate main file instead:
//!    the main file with the `include` that loads the upstream file turned
//!    into includes of the candidate and of the other files its glob matches
//!    now, in nginx's order, on the same line. Candidates are removed
//!    whatever the answer ([`open`](NginxRouter::open) refuses an `include`
//!    that would load one of the router's own files, candidates or journal,
//!    with the live config). A refusal stops here with
//!    [`RouterError::Invalid`] naming the file and line (the live file's
//!    name when the error is in a candidate): nothing has been written,
//!    nothing reloaded. So does a refusal of the editor itself (no primary
//!    server left, a weight of 0), before nginx is asked.
//! 2. *Commit, for every replica in turn.* Record the master process and its
//!    children, journal the previous and the new bytes in two files beside
//!    the live one (below), write the live file **in place** (a single-file
//!    bind mount pins the inode: a rename would never reach the container),
//!    run `nginx -c MAIN -s reload`, and check that the reload took (below).
//!    If anything fails after the write, the previous bytes go back into the
//!    live file, and the replicas already reloaded are written back and
//!    reloaded again, so that no replica is left on a config that the
//!    others refused.
//!
//! # A run killed during a commit
//!
//! Writing in place cannot be atomic, so a run killed during the write could
//! leave a torn file that nginx would refuse at its next start. Before the
//! first write, the commit saves, in every replica about to take it, the
//! previous bytes as `LIVE.rollout-previous.TAG` and the new ones as
//! `LIVE.rollout-next.TAG` (written in that order, removed in that order, so
//! a lone `next` means nothing), and removes them once every replica is known
//! good. [`open`](NginxRouter::open) finishes what a killed run left, for
//! every journal it finds (any run's tag): a live file that an interrupted
//! in-place write can have left (the start of the new bytes over the rest of
//! the previous ones) gets the previous bytes back (no master loaded it: a
//! reload comes only after a complete write); a live file with the whole new
//! bytes was validated and is kept. Anything else is a person's edit made
//! since: it is left alone, the journal is moved aside
//! (`LIVE.rollout-set-aside.TIME.previous` and `.next`), a warning in
//! [`NginxRouter::recovered`] names the upstream lines that differ, and the
//! router opens if `nginx -t` accepts the config ([`RouterError::Invalid`]
//! with nginx's words if not). Then every replica whose journal was kept or
//! repaired is reloaded, since which config its master runs is not known
//! (a replica may have taken the change, another not), and the journal goes.
//! [`NginxRouter::recovered`] says what was done. The journal lives with the
//! proxy, as the design wants of every journal: beside the live file, or,
//! for a proxy with a [`JournalStore`](crate::proxy::JournalStore), in that
//! store (saved while `nginx -t` tests the candidate, removed when it
//! refuses it, before any write),
//! where a proxy that is recreated, or that a torn file keeps from starting,
//! does not lose it. Open finds the journals of both places.
//!
//! # Several rollouts behind one proxy
//!
//! A router opened with [`NginxRouter::open_locked`] holds the proxy lock
//! ([`crate::proxy::ProxyLock`], keyed by the live file) around every
//! apply and around the recovery of [`open_locked`](NginxRouter::open_locked),
//! waiting for another holder up to [`ProxyLocking::timeout`] and telling
//! [`ProxyLocking::on_wait`] who it waits for. Since an apply reads the live
//! file once it holds the lock, two routers on one file (rollouts of two
//! services, one upstream each) compose their edits; each run's files have
//! its own tag, so neither tests, writes or removes the other's.
//!
//! # Did the reload take?
//!
//! `nginx -s reload` only sends `SIGHUP` to the master; it exits 0 even when
//! the master then refuses the new config (a port already in use, a log
//! file it cannot open, anything `nginx -t` does not try). The master
//! reports that only in its error log, at a level an operator may have
//! filtered out. The router looks at the process table instead, which says
//! it without ambiguity. On a reload that takes, the master starts a new set
//! of workers and asks the old ones to quit; on one it refuses, it keeps
//! its old workers and starts none. So the router records the master's
//! children before the reload, each by process id *and* start time (so that
//! a recycled id cannot pass for the old process), and after the reload it
//! polls until both hold: at least one child exists that was not there
//! before, and every child that was there before has exited or calls
//! itself `worker process is shutting down`. The second condition keeps a
//! worker that crashed and was respawned by the master from passing for a
//! reload. The master tells the old workers to quit 100 ms after it starts
//! the new ones, a pause in place of knowing that they run; the reload
//! command knows, and tells them itself (`SIGQUIT`, the master's graceful
//! stop) as soon as the master runs at least as many new children as it
//! had active ones and all of those still run. If the master's own id or start time changed, nginx was
//! restarted under us, and that is an error too. A change that takes no
//! server out (an instance added, a weight moved) is confirmed sooner: once
//! the master runs at least as many new children as it had active ones,
//! and all of those still run. That is the reload accepted; the old
//! workers are left to the master's own signal 100 ms later, and nothing
//! waits on that since no drain follows such a change (a crash-respawn shows one new child and one
//! old one gone, and passes only by the full condition). A change that
//! brings or takes away the tool's access log is not: a judged window must
//! hold every request from the change on. When
//! [`NginxRouterOptions::reload_timeout`] passes first, the reload did not
//! take: the previous bytes go back (the master still runs them), and if a
//! late look shows that the reload took after all, the restored file is
//! reloaded too so that the file and the running config agree.
//!
//! The process table is read with one constant POSIX `sh` script run in the
//! proxy (`/proc/PID/stat` and `/proc/PID/cmdline` of the master's
//! children, the master's id read from its pid file, which reaches the
//! script as an argument, never as script text). The proxy needs `sh` and
//! `cat` and a `/proc` of its own process namespace, which Debian's and the
//! official nginx images have.
//!
//! # Drain
//!
//! Old workers keep proxying the requests they hold to the servers the old
//! config named, and exit when the last one ends (nginx closes their idle
//! keep-alive connections at once). So a change is drained when the
//! children recorded before its reload have all exited, or sooner, when
//! each of them is proven clear of the removed instances by the proxy's
//! own connection tables: no connection to them left, and no request
//! still to be sent upstream (`conns.rs`, with the configs and proxies
//! where that cannot be proven; those wait for the exits).
//! [`drain`](NginxRouter::drain) polls for that, bounded by its timeout, and
//! names each process it waited for (`nginx worker 4711 in nginx-1`); at the
//! timeout the ones still running are reported as cut. A ticket from an
//! earlier run of the program (a resumed rollout, or
//! `DrainTicket::unknown`) is not in memory; the drain then waits for every
//! worker that is shutting down, which are all older than the last reload.
//!
//! # Routes
//!
//! A `server` line names a [`Target::Service`] when its host is one of
//! [`NginxRouterOptions::services`], and a [`Target::Instance`] otherwise,
//! whose id is the host (a container name is also a handle the Docker engine
//! accepts). New lines use the port of the operator's own line
//! (`server app:8000;` gives 8000) unless [`NginxRouterOptions::port`] sets
//! one, and the parameters of the upstream's first line other than `weight`,
//! `backup`, `down` and `service=` (so `max_fails=3 fail_timeout=5s` on the
//! operator's service line goes to the instance lines during a rollout and
//! comes back with the service line at rest). Servers marked `down` get no
//! traffic and are not routes.
//!
//! # Limits
//!
//! - The upstream is in the main file or in a file the main file includes
//!   itself; deeper includes are refused at [`open`](NginxRouter::open).
//! - The candidate and the journal are written beside the live file, so its
//!   directory must be writable in the proxy: true for the seed's
//!   single-file mount (the directory is the container's own), not for a
//!   read-only directory mount.
//! - A glob `include` is listed by the proxy's shell, so a pattern with
//!   spaces in it is not supported.
//! - `master_process off` (no workers) cannot be verified and is refused.

// The rooms, each opening with what it does and why it stands apart:
// `commit` (apply's two phases), `drain` (waiting for the old workers),
// `conns` (proving them clear of the removed instances by their connections),
// `procs` (the process table, reloads and the pid file), `recovery` (the
// commit's journal and what `open` repairs), `edit` (the bridge to the parser
// and the upstream editor), `candidate` (the main file's includes and the
// candidate main file).
mod candidate;
#[cfg(test)]
mod canned;
mod commit;
mod conns;
mod drain;
mod edit;
mod lock;
mod procs;
mod recovery;
mod resolve;

pub use lock::{OnWait, ProxyLocking};
pub use recovery::torn;

use crate::proxy::{ExecOutput, Proxy, ProxyError};
use async_trait::async_trait;
use procs::Proc;
use rollout_core::error::RouterError;
use rollout_core::model::InstanceId;
use rollout_core::router::{DrainReport, DrainTicket, Route, RouteChange, Target, TrafficRouter};
use std::collections::BTreeMap;
use std::time::Duration;
use tokio::sync::Mutex;

/// The name of the candidate file: the live file's name with this appended,
/// then the run's tag (`.TAG`, see [`NginxRouter::tag`]).
pub const CANDIDATE_SUFFIX: &str = ".rollout-candidate";

/// The journal of a commit under way: the live file's previous bytes (the
/// live file's name, this, and the run's tag).
pub const PREVIOUS_SUFFIX: &str = ".rollout-previous";

/// The journal of a commit under way: the bytes being written (the live
/// file's name, this, and the run's tag).
pub const NEXT_SUFFIX: &str = ".rollout-next";

/// A journal that recovery found beside a file a person had edited since is
/// moved aside under the live file's name, this, and a time stamp.
pub const SET_ASIDE_SUFFIX: &str = ".rollout-set-aside";

/// The names of one run's own files beside the live one: unique per run, so
/// that two runs never test, write or remove each other's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Names {
    /// The candidate live file.
    pub candidate: String,
    /// The candidate main file (used when the upstream file is another).
    pub main_candidate: String,
    /// The journal's previous bytes.
    pub previous: String,
    /// The journal's new bytes.
    pub next: String,
}

impl Names {
    fn new(options: &NginxRouterOptions, tag: &str) -> Self {
        let live = options.live_path();
        Self {
            candidate: format!("{live}{CANDIDATE_SUFFIX}.{tag}"),
            main_candidate: format!("{}{CANDIDATE_SUFFIX}.{tag}", options.config_path),
            previous: format!("{live}{PREVIOUS_SUFFIX}.{tag}"),
            next: format!("{live}{NEXT_SUFFIX}.{tag}"),
        }
    }
}

/// A tag no other run has: this process and the time it was made, in hex
/// (letters, digits and `-`, nothing a glob or a shell reads).
fn run_tag() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static MADE: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let n = MADE.fetch_add(1, Ordering::Relaxed);
    format!("{:x}-{nanos:x}-{n}", std::process::id())
}

/// How an [`NginxRouter`] finds and drives its upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NginxRouterOptions {
    /// The upstream block's name (`backend`).
    pub upstream: String,
    /// The main config file as the proxy sees it (`/etc/nginx/nginx.conf`):
    /// the file nginx is started with, and the live file the router edits
    /// unless [`upstream_file`](Self::upstream_file) names another.
    pub config_path: String,
    /// The file that holds the upstream when it is not the main file: a file
    /// the main file includes directly (`/etc/nginx/conf.d/default.conf`
    /// through `include /etc/nginx/conf.d/*.conf;`, as the official image
    /// does). This file is then the live file that is edited and written in
    /// place, and the candidate is validated through a candidate main file
    /// that includes it instead.
    pub upstream_file: Option<String>,
    /// Hosts that name a whole service rather than one instance (`app`,
    /// `blue`, `green`).
    pub services: Vec<String>,
    /// The port of new `server` lines; `None` takes the port of the
    /// upstream's first server line that has one (80 when none has).
    pub port: Option<u16>,
    /// The nginx command in the proxy, before its arguments (`["nginx"]`;
    /// `["/usr/sbin/nginx", "-p", "/srv/proxy"]` for a prefix of its own).
    pub nginx: Vec<String>,
    /// The master's pid file as the proxy sees it; `None` takes the config's
    /// `pid` directive, else the path nginx was built with (`nginx -V`). A
    /// [`Proxy::pid_file`] overrides it for that proxy.
    pub pid_file: Option<String>,
    /// How long a reload may take before it counts as refused.
    pub reload_timeout: Duration,
    /// How often the process table is read while waiting.
    pub poll_interval: Duration,
    /// The tool's own access log for the upstream, as the proxy sees its
    /// path (`/var/log/nginx/rollout-backend.log`): arranged beside the
    /// operator's logging while the upstream's traffic is split (or while
    /// the strategy asks to keep measuring, [`TrafficRouter::keep_measuring`]),
    /// removed by the same change that brings it to rest
    /// ([`crate::accesslog`]). `None`
    /// adds none; lines an earlier run left are removed at rest either way.
    pub metrics_log: Option<String>,
}

impl NginxRouterOptions {
    /// Options for upstream `upstream` in `config_path`, with the defaults:
    /// no service names, the port of the existing servers, `nginx` on the
    /// proxy's `PATH`, a 10 s reload timeout, polling every 50 ms.
    pub fn new(upstream: impl Into<String>, config_path: impl Into<String>) -> Self {
        Self {
            upstream: upstream.into(),
            config_path: config_path.into(),
            upstream_file: None,
            services: Vec::new(),
            port: None,
            nginx: vec!["nginx".to_string()],
            pid_file: None,
            reload_timeout: Duration::from_secs(10),
            poll_interval: Duration::from_millis(50),
            metrics_log: None,
        }
    }

    /// The live file: the one that holds the upstream, edited and written
    /// in place.
    pub fn live_path(&self) -> &str {
        self.upstream_file.as_deref().unwrap_or(&self.config_path)
    }
}
/// One proxy as the router drives it.
struct Replica {
    proxy: Proxy,
    pid_file: String,
}

/// What a drain of one applied change waits for: per replica, the children
/// of the master before the reload.
type WaitSet = Vec<(usize, Vec<Proc>)>;

#[derive(Default)]
struct State {
    generation: u64,
    pending: BTreeMap<u64, WaitSet>,
    /// How each replica's old workers are waited for, once decided.
    modes: BTreeMap<usize, conns::Mode>,
    /// The pending changes whose drain may go by connections (`conns.rs`).
    by_instance: std::collections::BTreeSet<u64>,
}

/// Routes traffic by editing one upstream of nginx configs and reloading
/// them: see the [module documentation](self).
pub struct NginxRouter {
    options: NginxRouterOptions,
    port: u16,
    replicas: Vec<Replica>,
    state: Mutex<State>,
    recovered: Vec<String>,
    tag: String,
    names: Names,
    locking: Option<ProxyLocking>,
    /// Applies of this router, one at a time: they queue here rather than
    /// polling the proxy lock against each other.
    applying: Mutex<()>,
    /// The tool's log, with nginx's built-in path learnt at open.
    metrics_log: Option<crate::accesslog::MetricsLog>,
    /// Keep the tool's log even at rest ([`TrafficRouter::keep_measuring`]).
    keep_log: std::sync::atomic::AtomicBool,
    /// Which program answers [`TrafficRouter::resolve`] in the proxy
    /// (`resolve.rs`), learnt at the first ask.
    resolver: std::sync::atomic::AtomicU8,
}

impl std::fmt::Debug for NginxRouter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NginxRouter")
            .field("options", &self.options)
            .field("port", &self.port)
            .field(
                "proxies",
                &self
                    .replicas
                    .iter()
                    .map(|r| r.proxy.name.as_str())
                    .collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl NginxRouter {
    /// A router for `options.upstream` in every one of `proxies` (at least
    /// one, each with its exec and config store).
    ///
    /// First finishes what a run killed during a commit left behind (see
    /// [`recovered`](Self::recovered)); then reads the first proxy's live
    /// config to check that the upstream is there and to learn the port of
    /// new server lines, and finds each proxy's pid file.
    ///
    /// Takes no lock: a router opened so must be the only writer of its
    /// config (see [`open_locked`](Self::open_locked)).
    pub async fn open(
        options: NginxRouterOptions,
        proxies: Vec<Proxy>,
    ) -> Result<Self, RouterError> {
        Self::open_with(options, proxies, None).await
    }

    /// As [`open`](Self::open), with every change to the config (and the
    /// recovery that opening runs) made under the proxy lock of `locking`,
    /// so that several rollouts behind one proxy compose their edits.
    pub async fn open_locked(
        options: NginxRouterOptions,
        proxies: Vec<Proxy>,
        locking: ProxyLocking,
    ) -> Result<Self, RouterError> {
        Self::open_with(options, proxies, Some(locking)).await
    }

    async fn open_with(
        options: NginxRouterOptions,
        proxies: Vec<Proxy>,
        locking: Option<ProxyLocking>,
    ) -> Result<Self, RouterError> {
        let path = options.live_path().to_string();
        lock::acquire(locking.as_ref(), &path).await?;
        let opened = Self::open_held(options, proxies, locking.clone()).await;
        lock::release(locking.as_ref(), &path).await;
        opened
    }

    /// [`open`](Self::open), with the proxy lock held.
    async fn open_held(
        options: NginxRouterOptions,
        proxies: Vec<Proxy>,
        locking: Option<ProxyLocking>,
    ) -> Result<Self, RouterError> {
        if proxies.is_empty() {
            return Err(RouterError::Config(format!(
                "no proxy to route upstream \"{}\" through",
                options.upstream
            )));
        }
        if options.nginx.is_empty() {
            return Err(RouterError::Config("the nginx command is empty".into()));
        }
        // A commit cut by a crash is finished first: a torn live file would
        // not even parse.
        let tag = run_tag();
        let names = Names::new(&options, &tag);
        let to_reload = recovery::recover_all(&options, &proxies).await?;
        let live = read_live(&proxies[0], options.live_path()).await?;
        let servers = edit::servers(&live, options.live_path(), &options.upstream).map_err(
            |e| match e {
                RouterError::Config(m) if m.starts_with("no upstream") => RouterError::Config(format!(
                    "{m}\nhint: an upstream in a file that the main file includes is found when that file is named as the upstream file"
                )),
                e => e,
            },
        )?;
        candidate::check_includes(&options, &names, &proxies[0]).await?;
        // The tool's log is checked before anything changes: a config it
        // cannot be arranged in is bad input, not a failed step.
        let metrics_log = match &options.metrics_log {
            None => None,
            Some(path) => {
                let built = procs::built_access_log(&options, &proxies[0]).await?;
                let log = crate::accesslog::MetricsLog::new(path, &built)
                    .map_err(|e| RouterError::Config(e.to_string()))?;
                edit::check_log(&live, options.live_path(), &options.upstream, &log)?;
                Some(log)
            }
        };
        let port = match options.port {
            Some(port) => port,
            None => servers.iter().find_map(|s| s.port).unwrap_or(80),
        };
        let mut replicas = Vec::with_capacity(proxies.len());
        for proxy in proxies {
            let pid_file = match (&proxy.pid_file, &options.pid_file) {
                (Some(path), _) | (None, Some(path)) => path.clone(),
                (None, None) => procs::find_pid_file(&options, &proxy).await?,
            };
            replicas.push(Replica { proxy, pid_file });
        }
        let mut router = Self {
            options,
            port,
            replicas,
            state: Mutex::new(State::default()),
            recovered: Vec::new(),
            tag,
            names,
            locking,
            applying: Mutex::new(()),
            metrics_log,
            keep_log: std::sync::atomic::AtomicBool::new(false),
            resolver: std::sync::atomic::AtomicU8::new(0),
        };
        router.finish_recovery(to_reload).await?;
        Ok(router)
    }

    /// What [`open`](Self::open) repaired after an earlier run was cut
    /// during a commit, in words for the operator (empty when nothing was).
    pub fn recovered(&self) -> &[String] {
        &self.recovered
    }

    /// This run's tag, the end of the names of its own files beside the live
    /// one (candidate and journal: `nginx.conf.rollout-candidate.TAG`).
    pub fn tag(&self) -> &str {
        &self.tag
    }

    /// The port new server lines get.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The options it was opened with.
    pub fn options(&self) -> &NginxRouterOptions {
        &self.options
    }

    /// The proxies it drives, in order.
    pub fn proxies(&self) -> impl Iterator<Item = &Proxy> {
        self.replicas.iter().map(|r| &r.proxy)
    }

    /// The master's process id in each proxy, and the ids of its children
    /// that serve the current config (workers and cache processes, not the
    /// workers shutting down after a reload), for logs and tests.
    pub async fn processes(&self) -> Result<Vec<(u32, Vec<u32>)>, RouterError> {
        let mut all = Vec::new();
        for replica in &self.replicas {
            let procs = self.procs(replica).await?;
            all.push((
                procs.master.pid,
                procs
                    .live_children()
                    .filter(|p| !p.shutting_down())
                    .map(|p| p.pid)
                    .collect(),
            ));
        }
        Ok(all)
    }

    fn nginx_argv(&self, replica: &Replica, args: &[&str]) -> Vec<String> {
        replica.proxy.nginx_argv(&self.options.nginx, args)
    }

    async fn run(&self, replica: &Replica, argv: &[String]) -> Result<ExecOutput, RouterError> {
        replica.proxy.exec.exec(argv).await.map_err(unreachable)
    }
}

#[async_trait]
impl TrafficRouter for NginxRouter {
    async fn routes(&self) -> Result<Vec<Route>, RouterError> {
        let path = self.options.live_path();
        let live = read_live(&self.replicas[0].proxy, path).await?;
        let servers = edit::servers(&live, path, &self.options.upstream)?;
        Ok(servers
            .into_iter()
            .filter(|s| !s.down)
            .map(|s| Route {
                target: target_of(&s.host, &self.options.services),
                weight: s.weight,
            })
            .collect())
    }

    async fn apply(&self, change: &RouteChange) -> Result<DrainTicket, RouterError> {
        let _one = self.applying.lock().await;
        let path = self.options.live_path();
        lock::acquire(self.locking.as_ref(), path).await?;
        let applied = self.apply_change(change).await;
        lock::release(self.locking.as_ref(), path).await;
        applied
    }

    async fn drain(
        &self,
        ticket: &DrainTicket,
        timeout: Duration,
    ) -> Result<DrainReport, RouterError> {
        self.wait_drained(ticket, timeout).await
    }

    fn keep_measuring(&self, on: bool) -> bool {
        if self.metrics_log.is_none() {
            return false;
        }
        self.keep_log.store(on, std::sync::atomic::Ordering::SeqCst);
        true
    }

    async fn resolve(
        &self,
        name: &str,
    ) -> Result<Option<Vec<std::collections::BTreeSet<std::net::IpAddr>>>, RouterError> {
        self.resolve_name(name).await
    }

    async fn warm(&self) {
        // Each replica's store readies its writer; one that cannot is
        // written some other way, and a write says what failed.
        let path = self.options.live_path();
        for r in &self.replicas {
            let _ = r.proxy.files.ready(path).await;
        }
    }

    async fn settle(&self) -> Result<(), RouterError> {
        let mut failed = Vec::new();
        for r in &self.replicas {
            if let Err(e) = r.proxy.files.settle().await {
                failed.push(format!("{}: {e}", r.proxy.name));
            }
        }
        if failed.is_empty() {
            Ok(())
        } else {
            Err(RouterError::Unreachable(failed.join("; ")))
        }
    }
}

async fn read_live(proxy: &Proxy, path: &str) -> Result<Vec<u8>, RouterError> {
    proxy.files.read(path).await.map_err(unreachable)
}

fn unreachable(e: ProxyError) -> RouterError {
    RouterError::Unreachable(e.to_string())
}

fn target_of(host: &str, services: &[String]) -> Target {
    if services.iter().any(|s| s == host) {
        Target::Service {
            name: host.to_string(),
        }
    } else {
        Target::Instance {
            id: InstanceId(host.to_string()),
            host: host.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_names_are_service_targets() {
        let services = vec!["app".to_string(), "green".to_string()];
        assert_eq!(
            target_of("green", &services),
            Target::Service {
                name: "green".into()
            }
        );
        assert_eq!(
            target_of("app-2", &services),
            Target::instance(InstanceId::from("app-2"), "app-2")
        );
    }
}
