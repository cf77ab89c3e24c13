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
//!    file beside the live one (`nginx.conf.rollout-candidate`: same
//!    directory, so relative includes resolve the same; a name that a
//!    `*.conf` glob cannot pick up), and run `nginx -t -q -c CANDIDATE` in
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
//! previous bytes as `LIVE.rollout-previous` and the new ones as
//! `LIVE.rollout-next` (written in that order, removed in that order, so a
//! lone `next` means nothing), and removes them once every replica is known
//! good. [`open`](NginxRouter::open) finishes what a killed run left: a live
//! file that is neither was torn, and gets the previous bytes back (no master
//! loaded it: a reload comes only after a complete write); a live file with
//! the whole new bytes was validated and is kept. Then every replica that had
//! a journal is reloaded, since which config its master runs is not known
//! (a replica may have taken the change, another not), and the journal goes.
//! [`NginxRouter::recovered`] says what was done. The journal lives with the
//! proxy, as the design wants of every journal.
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
//! reload. If the master's own id or start time changed, nginx was
//! restarted under us, and that is an error too. When
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
//! children recorded before its reload have all exited.
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

use crate::proxy::{ExecOutput, Proxy, ProxyError};
use async_trait::async_trait;
use rollout_core::error::RouterError;
use rollout_core::model::InstanceId;
use rollout_core::router::{DrainReport, DrainTicket, Route, RouteChange, Target, TrafficRouter};
use std::collections::{BTreeMap, HashSet};
use std::time::Duration;
use tokio::sync::Mutex;
use tokio::time::Instant;

/// The name of the candidate file: the live file's name with this appended.
pub const CANDIDATE_SUFFIX: &str = ".rollout-candidate";

/// The journal of a commit under way: the live file's previous bytes.
pub const PREVIOUS_SUFFIX: &str = ".rollout-previous";

/// The journal of a commit under way: the bytes being written.
pub const NEXT_SUFFIX: &str = ".rollout-next";

/// How many applied changes keep their worker sets for a later drain.
const KEPT_TICKETS: usize = 64;

/// A shell function `snap PIDFILE` that prints the master (`M pid start
/// state`) and each of its children (`C pid start state ` then the raw
/// command line, whose arguments nginx overwrote with its title), and
/// leaves their number in `n` and their ids in `L` (`A` for those not
/// shutting down). The children come from the kernel's list of
/// the master's children where it has one (Linux 3.5 and later with
/// `CONFIG_PROC_CHILDREN`), else from a scan of `/proc`; each one's parent is
/// checked either way. Returns 3: no pid file; 4: the master is not running.
macro_rules! snap_function {
    () => {
        r#"child() {
  s=
  { read -r s < "/proc/$1/stat"; } 2>/dev/null || return 0
  r=${s##*) }
  set -- "$1" $r
  [ "$3" = "$m" ] || return 0
  printf 'C %s %s %s ' "$1" "${21}" "$2"
  cat "/proc/$1/cmdline" 2>/dev/null
  printf '\n'
  n=$((n+1))
  L="$L $1"
  t=
  { read -r t < "/proc/$1/cmdline"; } 2>/dev/null
  case $t in *"shutting down"*) ;; *) A="$A $1";; esac
}
snap() {
  m=
  { read -r m < "$1"; } 2>/dev/null || return 3
  case $m in ''|*[!0-9]*) return 3;; esac
  s=
  { read -r s < "/proc/$m/stat"; } 2>/dev/null || return 4
  r=${s##*) }
  set -- $r
  printf 'M %s %s %s\n' "$m" "${20}" "$1"
  n=0
  A=
  L=
  if [ -r "/proc/$m/task/$m/children" ]; then
    k=
    { read -r k < "/proc/$m/task/$m/children"; } 2>/dev/null
    for c in $k; do child "$c"; done
  else
    for d in /proc/[0-9]*; do child "${d#/proc/}"; done
  fi
}
"#
    };
}

/// Prints the master and its children (see `snap_function`); `$1` is the
/// pid file. Exit 3: no pid file; exit 4: the master is not running.
const PROCESS_SCRIPT: &str = concat!(snap_function!(), r#"snap "$1""#, "\n");

/// One round trip for a reload: the process table before (as
/// [`PROCESS_SCRIPT`]; exit 5 when the master has no children, before
/// anything is signalled), a line `=`, then `SIGHUP` to the master (what
/// `nginx -s reload` sends, without parsing the config again: the candidate
/// was just tested), a line `= CODE` with the signal's exit code, and the
/// table again once the reload took: a new child, and every child that was
/// active shutting down or gone (nginx tells them 100 ms after starting the
/// new ones). Checked every 10 ms for at most a
/// second, or a fixed pause where the kernel has no list of children; the
/// router reads the table itself and keeps polling when it did not take yet.
/// Files after the pid file (the commit's journal, when this replica is the
/// only one) are removed once the reload is seen to take, and a line `J`
/// before the second table says so.
const RELOAD_SCRIPT: &str = concat!(
    snap_function!(),
    r#"f=$1
shift
snap "$f" || exit $?
[ "$n" -gt 0 ] || exit 5
old=$L
active=$A
ok=0
echo =
kill -HUP "$m" >&2
echo "= $?"
if [ -r "/proc/$m/task/$m/children" ]; then
  i=0
  while [ "$i" -lt 100 ]; do
    i=$((i+1))
    sleep 0.01 2>/dev/null || break
    k=
    { read -r k < "/proc/$m/task/$m/children"; } 2>/dev/null
    fresh=0
    for c in $k; do
      case " $old " in *" $c "*) ;; *) fresh=$((fresh+1));; esac
    done
    [ "$fresh" -gt 0 ] || continue
    quiet=1
    for c in $active; do
      t=
      { read -r t < "/proc/$c/cmdline"; } 2>/dev/null
      case $t in ''|*"shutting down"*) ;; *) quiet=0;; esac
    done
    [ "$quiet" -eq 1 ] && ok=1 && break
  done
else
  sleep 0.12 2>/dev/null
fi
if [ "$ok" = 1 ] && [ "$#" -gt 0 ]; then
  rm -f -- "$@" 2>/dev/null && echo J
fi
snap "$f"
exit 0
"#
);

/// Waits in the proxy until none of the processes given as `PID:START`
/// after `$1` runs any more (a pid of another start time is another
/// process), checking every 20 ms for at most `$1` rounds, then prints those
/// still running, one per line. A `sleep` without fractions ends the wait
/// at once, and the router asks again. One command per drain instead of one
/// per look: each exec costs the proxy's host a process start.
const WAIT_SCRIPT: &str = r#"alive() {
  s=
  { read -r s < "/proc/$1/stat"; } 2>/dev/null || return 1
  r=${s##*) }
  set -- "$1" "$2" $r
  [ "$3" != Z ] && [ "$3" != X ] && [ "${22}" = "$2" ]
}
n=$1
shift
while :; do
  left=0
  for w in "$@"; do
    alive "${w%:*}" "${w#*:}" && left=$((left+1))
  done
  [ "$left" -eq 0 ] && break
  n=$((n-1))
  [ "$n" -gt 0 ] || break
  sleep 0.02 2>/dev/null || break
done
for w in "$@"; do
  alive "${w%:*}" "${w#*:}" && echo "$w"
done
exit 0
"#;

/// Runs the command after the four file arguments (`nginx -t -c FILE`),
/// removes the first two (the candidate, and the candidate main file or the
/// candidate again) whatever it said, the last two (the journal) when it
/// failed, and exits with its code. A candidate that cannot be removed is
/// left to the next one, written over it.
const TEST_SCRIPT: &str = r#"a=$1 b=$2 c=$3 d=$4
shift 4
"$@"
s=$?
rm -f -- "$a" "$b" 2>/dev/null
[ "$s" -eq 0 ] || rm -f -- "$c" "$d" 2>/dev/null
exit $s
"#;

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
        }
    }

    /// The live file: the one that holds the upstream, edited and written
    /// in place.
    pub fn live_path(&self) -> &str {
        self.upstream_file.as_deref().unwrap_or(&self.config_path)
    }

    /// The candidate file beside the live one.
    pub fn candidate_path(&self) -> String {
        format!("{}{CANDIDATE_SUFFIX}", self.live_path())
    }
}

/// One process of the proxy, known by id and start time.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Proc {
    pid: u32,
    /// Clock ticks since boot (`/proc/PID/stat` field 22).
    start: u64,
    /// `R`, `S`, `Z`, ...
    state: char,
    /// The title nginx gave it (`nginx: worker process`).
    title: String,
}

impl Proc {
    fn key(&self) -> (u32, u64) {
        (self.pid, self.start)
    }

    fn alive(&self) -> bool {
        !matches!(self.state, 'Z' | 'X' | 'x')
    }

    fn shutting_down(&self) -> bool {
        self.title.contains("shutting down")
    }
}

/// The master and its children at one moment.
#[derive(Debug, Clone)]
struct Procs {
    master: Proc,
    children: Vec<Proc>,
}

impl Procs {
    fn live_children(&self) -> impl Iterator<Item = &Proc> {
        self.children.iter().filter(|p| p.alive())
    }

    #[cfg(test)]
    fn has(&self, key: (u32, u64)) -> bool {
        self.live_children().any(|p| p.key() == key)
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

/// What [`recover_files`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Recovery {
    /// No commit was under way.
    Clean,
    /// A commit was under way, and the live file holds the previous bytes.
    Unchanged,
    /// The live file was torn; its previous bytes are back.
    Restored,
    /// The live file holds the whole validated change, which may not have
    /// been reloaded.
    Written,
}

#[derive(Default)]
struct State {
    generation: u64,
    pending: BTreeMap<u64, WaitSet>,
}

/// Routes traffic by editing one upstream of nginx configs and reloading
/// them: see the [module documentation](self).
pub struct NginxRouter {
    options: NginxRouterOptions,
    port: u16,
    replicas: Vec<Replica>,
    state: Mutex<State>,
    recovered: Vec<String>,
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
    pub async fn open(
        options: NginxRouterOptions,
        proxies: Vec<Proxy>,
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
        let mut to_reload = Vec::new();
        for (index, proxy) in proxies.iter().enumerate() {
            let found = recover_files(&options, proxy).await?;
            if found != Recovery::Clean {
                to_reload.push((index, found));
            }
        }
        let live = read_live(&proxies[0], options.live_path()).await?;
        let servers = edit::servers(&live, options.live_path(), &options.upstream).map_err(
            |e| match e {
                RouterError::Config(m) if m.starts_with("no upstream") => RouterError::Config(format!(
                    "{m}\nhint: an upstream in a file that the main file includes is found when that file is named as the upstream file"
                )),
                e => e,
            },
        )?;
        check_includes(&options, &proxies[0]).await?;
        let port = match options.port {
            Some(port) => port,
            None => servers.iter().find_map(|s| s.port).unwrap_or(80),
        };
        let mut replicas = Vec::with_capacity(proxies.len());
        for proxy in proxies {
            let pid_file = match (&proxy.pid_file, &options.pid_file) {
                (Some(path), _) | (None, Some(path)) => path.clone(),
                (None, None) => find_pid_file(&options, &proxy).await?,
            };
            replicas.push(Replica { proxy, pid_file });
        }
        let mut router = Self {
            options,
            port,
            replicas,
            state: Mutex::new(State::default()),
            recovered: Vec::new(),
        };
        // Which config a master runs is unknown after a cut commit (a
        // replica may have taken it, another not): reload each replica
        // that had a journal, with the file now known good.
        let touched: Vec<usize> = to_reload.iter().map(|(index, _)| *index).collect();
        for (index, found) in to_reload {
            let replica = &router.replicas[index];
            let (name, path) = (&replica.proxy.name, router.options.live_path());
            let what = match found {
                Recovery::Restored => format!(
                    "{path} was cut by an interrupted write; its previous bytes were put back"
                ),
                Recovery::Written => format!("an interrupted change was written whole to {path}"),
                _ => format!("an interrupted change had left {path} as it was"),
            };
            if let Err(e) = router.reload(replica).await {
                return Err(RouterError::Reload(format!(
                    "{name}: {what}, and reloading it failed: {e}"
                )));
            }
            router
                .recovered
                .push(format!("{name}: {what}, and nginx was reloaded with it"));
        }
        let (journal_previous, journal_next) = journal_paths(router.options.live_path());
        for index in touched {
            let files = &router.replicas[index].proxy.files;
            // The previous bytes first: a lone `next` means nothing.
            files.remove(&journal_previous).await.map_err(unreachable)?;
            files.remove(&journal_next).await.map_err(unreachable)?;
        }
        Ok(router)
    }

    /// What [`open`](Self::open) repaired after an earlier run was cut
    /// during a commit, in words for the operator (empty when nothing was).
    pub fn recovered(&self) -> &[String] {
        &self.recovered
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

    /// Reads the master and its children.
    async fn procs(&self, replica: &Replica) -> Result<Procs, RouterError> {
        let argv: Vec<String> = ["sh", "-c", PROCESS_SCRIPT, "sh", &replica.pid_file]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let out = self.run(replica, &argv).await?;
        match out.code {
            0 => self.parse_table(replica, &out.stdout),
            code => Err(self.table_error(replica, code, &out)),
        }
    }

    fn parse_table(&self, replica: &Replica, out: &[u8]) -> Result<Procs, RouterError> {
        parse_procs(out).ok_or_else(|| {
            RouterError::Other(format!(
                "cannot read the process table of {}: unexpected output {:?}",
                replica.proxy.name,
                String::from_utf8_lossy(out)
            ))
        })
    }

    /// What a failed reading of the process table means.
    fn table_error(&self, replica: &Replica, code: i32, out: &ExecOutput) -> RouterError {
        let name = &replica.proxy.name;
        match code {
            3 => RouterError::Unreachable(format!(
                "nginx in {name} has no readable pid file {}\nhint: is nginx running there? set the pid file when it is not the one the config or the binary names",
                replica.pid_file
            )),
            4 => RouterError::Unreachable(format!(
                "the nginx master named by {} in {name} is not running",
                replica.pid_file
            )),
            _ => RouterError::Unreachable(format!(
                "cannot read the process table of {name}: {}\nhint: the proxy needs sh, cat and /proc",
                out.message()
            )),
        }
    }

    /// Waits in replica `index` until `procs` have exited, or at most 2 s
    /// (and not past `deadline`); returns those still running.
    async fn wait_exit(
        &self,
        index: usize,
        procs: Vec<Proc>,
        deadline: Instant,
    ) -> Result<Vec<Proc>, RouterError> {
        let replica = &self.replicas[index];
        let rounds = (deadline
            .saturating_duration_since(Instant::now())
            .as_millis()
            / 20)
            .clamp(1, 100)
            .to_string();
        let mut argv: Vec<String> = ["sh", "-c", WAIT_SCRIPT, "sh", &rounds]
            .iter()
            .map(|s| s.to_string())
            .collect();
        argv.extend(procs.iter().map(|p| format!("{}:{}", p.pid, p.start)));
        let out = self.run(replica, &argv).await?;
        if !out.success() {
            return Err(RouterError::Unreachable(format!(
                "cannot watch the old workers of {}: {}\nhint: the proxy needs sh and /proc",
                replica.proxy.name,
                out.message()
            )));
        }
        let text = String::from_utf8_lossy(&out.stdout);
        let running: HashSet<&str> = text.lines().map(str::trim).collect();
        Ok(procs
            .into_iter()
            .filter(|p| running.contains(format!("{}:{}", p.pid, p.start).as_str()))
            .collect())
    }

    /// Reads the process table, signals the reload and reads the table
    /// again, in one command ([`RELOAD_SCRIPT`]); returns the table before
    /// and, when the reload already took, nothing left to wait for.
    async fn signal_reload(
        &self,
        replica: &Replica,
        journal: &[&str],
    ) -> Result<(Procs, bool, bool), RouterError> {
        let name = &replica.proxy.name;
        let mut argv: Vec<String> = ["sh", "-c", RELOAD_SCRIPT, "sh", &replica.pid_file]
            .iter()
            .map(|s| s.to_string())
            .collect();
        argv.extend(journal.iter().map(|p| p.to_string()));
        let out = self.run(replica, &argv).await?;
        match out.code {
            0 => {}
            5 => {
                let master = parse_procs(&out.stdout).map(|p| p.master.pid);
                return Err(RouterError::Config(format!(
                    "nginx master {} in {name} has no worker processes\nhint: the router needs master_process on",
                    master.map_or_else(|| "?".into(), |p| p.to_string())
                )));
            }
            code => return Err(self.table_error(replica, code, &out)),
        }
        let (before, code, after) = split_reload_output(&out.stdout).ok_or_else(|| {
            RouterError::Other(format!(
                "cannot read the reload of {name}: unexpected output {:?}",
                String::from_utf8_lossy(&out.stdout)
            ))
        })?;
        let before = self.parse_table(replica, before)?;
        if code != 0 {
            return Err(RouterError::Reload(format!(
                "the reload signal to the nginx master {} in {name} failed with {code}: {}",
                before.master.pid,
                out.message()
            )));
        }
        let (forgot, after) = match after.strip_prefix(b"J\n") {
            Some(rest) => (true, rest),
            None => (false, after),
        };
        let took = parse_procs(after).is_some_and(|now| reload_took(&before, &now) == Some(true));
        Ok((before, took, forgot))
    }

    /// Edits, writes the candidate and validates it in one replica; returns
    /// the live bytes and the candidate's (`None` when nothing changes).
    async fn prepare(
        &self,
        replica: &Replica,
        change: &RouteChange,
    ) -> Result<(Vec<u8>, Option<Vec<u8>>), RouterError> {
        let path = self.options.live_path();
        let live = read_live(&replica.proxy, path).await?;
        let edited = edit::apply(&live, path, &self.options.upstream, change, self.port)?;
        if edited == live {
            return Ok((live, None));
        }
        let candidate = self.options.candidate_path();
        let files = &replica.proxy.files;
        // With the upstream in an included file, nginx -t reads a candidate
        // main file beside the main one, which includes the candidate.
        let main = &self.options.config_path;
        let main_candidate = format!("{main}{CANDIDATE_SUFFIX}");
        let candidate_main = match &self.options.upstream_file {
            None => None,
            Some(_) => Some(self.candidate_main(replica, &candidate).await?),
        };
        // One upload brings the candidate (and the candidate main file) and
        // the commit's journal, which must be in every replica before any
        // live file is written; one command tests the candidate and removes
        // it, and the journal too when nginx refuses the candidate. A round
        // trip to the proxy each is what an apply costs.
        let (journal_previous, journal_next) = journal_paths(path);
        let tested_file = match &candidate_main {
            None => candidate.clone(),
            Some(_) => main_candidate.clone(),
        };
        let mut upload: Vec<(&str, &[u8])> = vec![(&candidate, &edited)];
        if let Some(bytes) = &candidate_main {
            upload.push((&main_candidate, bytes));
        }
        upload.push((&journal_previous, &live));
        upload.push((&journal_next, &edited));
        if let Err(e) = files.write_new_all(&upload).await {
            let all: Vec<&str> = upload.iter().map(|(p, _)| *p).collect();
            let _ = files.remove_all(&all).await;
            return Err(unreachable(e));
        }
        let mut argv: Vec<String> = [
            "sh",
            "-c",
            TEST_SCRIPT,
            "sh",
            &candidate,
            &tested_file,
            &journal_previous,
            &journal_next,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        argv.extend(self.nginx_argv(replica, &["-t", "-q", "-c", &tested_file]));
        let tested = self.run(replica, &argv).await?;
        if !tested.success() {
            let renames = [(main_candidate.as_str(), main.as_str()), (&candidate, path)];
            return Err(refusal(&tested, &renames, path, &replica.proxy.name));
        }
        Ok((live, Some(edited)))
    }

    /// The main file with the includes that load the upstream file turned
    /// into includes of `candidate` (and, for a glob, of every other file it
    /// matches now, in nginx's order), each on the line it was on.
    async fn candidate_main(
        &self,
        replica: &Replica,
        candidate: &str,
    ) -> Result<Vec<u8>, RouterError> {
        let main_path = &self.options.config_path;
        let target = self.options.live_path();
        let main = read_live(&replica.proxy, main_path).await?;
        let sites = include::sites(&main, main_path, target)?;
        let mut lists = Vec::with_capacity(sites.len());
        for site in &sites {
            let files = if site.glob {
                let argv: Vec<String> = ["sh", "-c", include::GLOB_SCRIPT, "sh", &site.pattern]
                    .iter()
                    .map(|s| s.to_string())
                    .collect();
                let out = self.run(replica, &argv).await?;
                if !out.success() {
                    return Err(RouterError::Unreachable(format!(
                        "cannot list {} in {}: {}",
                        site.pattern,
                        replica.proxy.name,
                        out.message()
                    )));
                }
                include::matches(&out.stdout)
            } else {
                vec![target.to_string()]
            };
            lists.push(
                files
                    .into_iter()
                    .map(|f| {
                        if f == target {
                            candidate.to_string()
                        } else {
                            f
                        }
                    })
                    .collect(),
            );
        }
        Ok(include::rewrite(&main, &sites, &lists))
    }

    /// Writes `bytes` into the live file of one replica, reloads it and
    /// checks that the reload took; returns the children before the reload.
    /// On failure the previous bytes are back in the file, unless the error
    /// says they could not be put back (`Failed::restored` false).
    async fn commit(
        &self,
        replica: &Replica,
        previous: &[u8],
        bytes: &[u8],
        journal: &[&str],
    ) -> Result<(Vec<Proc>, bool), Failed> {
        let path = self.options.live_path();
        let files = &replica.proxy.files;
        let name = &replica.proxy.name;
        if let Err(e) = files.write_in_place(path, bytes).await {
            let restored = files.write_in_place(path, previous).await;
            return Err(Failed {
                restored: restored.is_ok(),
                error: RouterError::Other(format!("{e}{}", restored_note(name, path, restored))),
            });
        }
        // The table before the reload is read in the same command that
        // signals it: a master without workers is refused before the
        // signal, and the previous bytes go back below.
        let mut before = None;
        let mut forgot = false;
        let reloaded = match self.signal_reload(replica, journal).await {
            Ok((table, true, removed)) => {
                before = Some(table);
                forgot = removed;
                Ok(())
            }
            Ok((table, false, removed)) => {
                let waited = self.await_reload(replica, &table).await;
                before = Some(table);
                forgot = removed;
                waited
            }
            Err(e) => Err(e),
        };
        let e = match (reloaded, before.as_ref()) {
            (Ok(()), Some(before)) => return Ok((before.children.clone(), forgot)),
            (Ok(()), None) => unreachable!("a reload that took has a table before it"),
            (Err(e), _) => e,
        };
        let restored = files.write_in_place(path, previous).await;
        let mut good = restored.is_ok();
        let mut message = format!("{e}{}", restored_note(name, path, restored));
        match &before {
            // A reload that took after we stopped looking runs the bytes
            // just taken out of the file: reload the restored ones.
            Some(before) => match self.procs(replica).await {
                Ok(now) if reload_took(before, &now) == Some(true) => {
                    message.push_str(&format!(
                        "\nthe reload took late in {name}; reloading the previous config"
                    ));
                    if let Err(again) = self.reload(replica).await {
                        message.push_str(&format!(": {again}"));
                        good = false;
                    }
                }
                Ok(_) => {}
                Err(_) => good = false,
            },
            // Refused before the signal (a master without workers):
            // nothing was reloaded.
            None if matches!(e, RouterError::Config(_)) => {}
            // The command failed on the way: whether it signalled is not
            // known, so the journal stays for the next run to finish.
            None => good = false,
        }
        Err(Failed {
            restored: good,
            error: match e {
                RouterError::Reload(_) => RouterError::Reload(strip_prefix(&message)),
                RouterError::Unreachable(_) => RouterError::Unreachable(message),
                _ => RouterError::Other(message),
            },
        })
    }

    /// Reloads one replica with what its live file holds and checks it.
    async fn reload(&self, replica: &Replica) -> Result<(), RouterError> {
        let before = self.procs(replica).await?;
        let argv = self.nginx_argv(replica, &["-c", &self.options.config_path, "-s", "reload"]);
        let out = self.run(replica, &argv).await?;
        if !out.success() {
            return Err(RouterError::Reload(format!(
                "nginx -s reload in {} exited with {}: {}",
                replica.proxy.name,
                out.code,
                out.message()
            )));
        }
        self.await_reload(replica, &before).await
    }

    /// Polls the process table until the reload took, or fails at the
    /// reload timeout.
    async fn await_reload(&self, replica: &Replica, before: &Procs) -> Result<(), RouterError> {
        let name = &replica.proxy.name;
        let deadline = Instant::now() + self.options.reload_timeout;
        loop {
            let now = self.procs(replica).await?;
            match reload_took(before, &now) {
                Some(true) => return Ok(()),
                None => {
                    return Err(RouterError::Reload(format!(
                        "the nginx master in {name} changed from process {} to {}: nginx was restarted during the reload",
                        before.master.pid, now.master.pid
                    )))
                }
                Some(false) => {}
            }
            if Instant::now() >= deadline {
                let old: Vec<String> = before
                    .live_children()
                    .filter(|p| {
                        now.live_children()
                            .any(|q| q.key() == p.key() && !q.shutting_down())
                    })
                    .map(|p| p.pid.to_string())
                    .collect();
                return Err(RouterError::Reload(format!(
                    "nginx in {name} kept its previous configuration: {} s after the reload signal, master {} still runs its old workers ({})\nhint: the master refuses what nginx -t does not check, such as a port already in use or a log file it cannot open; its error log says which",
                    self.options.reload_timeout.as_secs_f64(),
                    now.master.pid,
                    old.join(", ")
                )));
            }
            tokio::time::sleep(self.options.poll_interval).await;
        }
    }

    /// Puts `previous` back into replicas that already took a change, and
    /// reloads them; returns what happened, for the error message, and
    /// whether every one of them is back.
    async fn roll_back(&self, done: &[(usize, Vec<u8>)]) -> (String, bool) {
        let mut notes = String::new();
        let mut all_back = true;
        for (index, previous) in done.iter().rev() {
            let replica = &self.replicas[*index];
            let name = &replica.proxy.name;
            let path = self.options.live_path();
            let result = match replica.proxy.files.write_in_place(path, previous).await {
                Ok(()) => self.reload(replica).await,
                Err(e) => Err(unreachable(e)),
            };
            match result {
                Ok(()) => notes.push_str(&format!("\n{name} was put back on its previous config")),
                Err(e) => {
                    all_back = false;
                    notes.push_str(&format!(
                        "\n{name} could not be put back on its previous config: {e}"
                    ))
                }
            }
        }
        (notes, all_back)
    }

    /// Removes the journal of a commit whose replicas are all known good.
    async fn forget_journal(&self, commits: &[(usize, Vec<u8>, Vec<u8>)]) {
        let (journal_previous, journal_next) = journal_paths(self.options.live_path());
        for (index, _, _) in commits {
            let files = &self.replicas[*index].proxy.files;
            // What is left over is found by the next `open`, which sees a
            // live file equal to one of the two and only reloads.
            let _ = files.remove_all(&[&journal_previous, &journal_next]).await;
        }
    }
}

/// A commit that failed, and whether the replica is back where it was.
struct Failed {
    restored: bool,
    error: RouterError,
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
        let mut state = self.state.lock().await;
        // Phase 1: every replica validates its candidate, nothing written.
        // Each one that will change also holds the commit's journal then.
        let mut commits: Vec<(usize, Vec<u8>, Vec<u8>)> = Vec::new();
        for (index, replica) in self.replicas.iter().enumerate() {
            match self.prepare(replica, change).await {
                Ok((live, Some(next))) => commits.push((index, live, next)),
                Ok((_, None)) => {}
                Err(e) => {
                    self.forget_journal(&commits).await;
                    return Err(e);
                }
            }
        }
        // Phase 2: write, reload and check each replica in turn; the
        // journal goes once every replica is known good.
        let mut done: Vec<(usize, Vec<u8>)> = Vec::new();
        let mut waits: WaitSet = Vec::new();
        // A single replica removes its journal in the reload's own command
        // once the reload took; with several, each keeps its journal until
        // every one is known good.
        let (journal_previous, journal_next) = journal_paths(self.options.live_path());
        let single = [journal_previous.as_str(), journal_next.as_str()];
        let in_reload: &[&str] = if commits.len() == 1 { &single } else { &[] };
        let mut forgotten = !in_reload.is_empty();
        for (index, live, next) in &commits {
            match self
                .commit(&self.replicas[*index], live, next, in_reload)
                .await
            {
                Ok((before, forgot)) => {
                    forgotten &= forgot;
                    waits.push((*index, before));
                    done.push((*index, live.clone()));
                }
                Err(failed) => {
                    let (notes, all_back) = self.roll_back(&done).await;
                    if failed.restored && all_back {
                        self.forget_journal(&commits).await;
                    }
                    return Err(append(failed.error, &notes));
                }
            }
        }
        if !forgotten {
            self.forget_journal(&commits).await;
        }
        state.generation += 1;
        let generation = state.generation;
        state.pending.insert(generation, waits);
        while state.pending.len() > KEPT_TICKETS {
            state.pending.pop_first();
        }
        Ok(DrainTicket {
            generation,
            removed: change.remove.clone(),
        })
    }

    async fn drain(
        &self,
        ticket: &DrainTicket,
        timeout: Duration,
    ) -> Result<DrainReport, RouterError> {
        let started = Instant::now();
        if ticket.removed.is_empty() {
            return Ok(DrainReport::default());
        }
        let known = self
            .state
            .lock()
            .await
            .pending
            .get(&ticket.generation)
            .cloned();
        let waits: WaitSet = match known {
            Some(waits) => waits,
            None => {
                // Not applied by this process: wait for every worker that is
                // shutting down, all of them older than the last reload.
                let mut waits = Vec::new();
                for (index, replica) in self.replicas.iter().enumerate() {
                    let procs = self.procs(replica).await?;
                    waits.push((
                        index,
                        procs
                            .live_children()
                            .filter(|p| p.shutting_down())
                            .cloned()
                            .collect(),
                    ));
                }
                waits
            }
        };
        let label = |index: usize, p: &Proc| {
            format!(
                "nginx worker {} in {}",
                p.pid, self.replicas[index].proxy.name
            )
        };
        let waited_for: Vec<String> = waits
            .iter()
            .flat_map(|(index, procs)| procs.iter().map(move |p| label(*index, p)))
            .collect();
        let deadline = started + timeout;
        let mut left = waits;
        loop {
            let asked = Instant::now();
            let mut still = Vec::new();
            for (index, procs) in left {
                let running = self.wait_exit(index, procs, deadline).await?;
                if !running.is_empty() {
                    still.push((index, running));
                }
            }
            left = still;
            if left.is_empty() || Instant::now() >= deadline {
                break;
            }
            // A proxy that could not wait in place answered at once.
            if asked.elapsed() < Duration::from_millis(100) {
                tokio::time::sleep(self.options.poll_interval.max(Duration::from_millis(100)))
                    .await;
            }
        }
        let cut: Vec<String> = left
            .iter()
            .flat_map(|(index, procs)| procs.iter().map(move |p| label(*index, p)))
            .collect();
        if cut.is_empty() {
            // Drained for good; a timed-out ticket stays, to be waited on again.
            self.state.lock().await.pending.remove(&ticket.generation);
        }
        Ok(DrainReport {
            waited_for,
            elapsed: started.elapsed(),
            timed_out: !cut.is_empty(),
            cut,
        })
    }
}

/// The three parts of [`RELOAD_SCRIPT`]'s output: the table before, the
/// reload's exit code, the table after (empty when it could not be read).
fn split_reload_output(out: &[u8]) -> Option<(&[u8], i32, &[u8])> {
    let mut at = 0;
    let mut before = None;
    for line in out.split_inclusive(|&b| b == b'\n') {
        let text = line.strip_suffix(b"\n").unwrap_or(line);
        if text == b"=" && before.is_none() {
            before = Some(&out[..at]);
        } else if let (Some(before), Some(code)) = (before, text.strip_prefix(b"= ")) {
            let code = std::str::from_utf8(code).ok()?.trim().parse().ok()?;
            return Some((before, code, &out[at + line.len()..]));
        }
        at += line.len();
    }
    None
}

/// `Some(true)` when the reload took, `Some(false)` when not (yet), `None`
/// when the master itself changed.
fn reload_took(before: &Procs, now: &Procs) -> Option<bool> {
    if now.master.key() != before.master.key() {
        return None;
    }
    let old: HashSet<(u32, u64)> = before.children.iter().map(Proc::key).collect();
    let fresh = now.live_children().any(|p| !old.contains(&p.key()));
    let old_active = now
        .live_children()
        .any(|p| old.contains(&p.key()) && !p.shutting_down());
    Some(fresh && !old_active)
}

/// Parses the output of [`PROCESS_SCRIPT`].
fn parse_procs(out: &[u8]) -> Option<Procs> {
    let mut master = None;
    let mut children = Vec::new();
    for line in out.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        let (kind, rest) = (line[0], line.get(2..)?);
        let mut fields = rest.splitn(4, |&b| b == b' ');
        let pid = std::str::from_utf8(fields.next()?).ok()?.parse().ok()?;
        let start = std::str::from_utf8(fields.next()?).ok()?.parse().ok()?;
        let state = *fields.next()?.first()? as char;
        let title = fields.next().unwrap_or_default();
        let title = String::from_utf8_lossy(title)
            .split('\0')
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
            .join(" ");
        let proc = Proc {
            pid,
            start,
            state,
            title,
        };
        match kind {
            b'M' => master = Some(proc),
            b'C' => children.push(proc),
            _ => return None,
        }
    }
    Some(Procs {
        master: master?,
        children,
    })
}

/// Finds the pid file: the config's `pid` directive, else the path the
/// binary was built with.
async fn find_pid_file(options: &NginxRouterOptions, proxy: &Proxy) -> Result<String, RouterError> {
    let live = read_live(proxy, &options.config_path).await?;
    let from_config = edit::pid_directive(&live, &options.config_path)?;
    let argv = proxy.nginx_argv(&options.nginx, &["-V"]);
    let needs_binary = from_config.as_deref().is_none_or(|p| !p.starts_with('/'));
    let built = if needs_binary {
        let out = proxy.exec.exec(&argv).await.map_err(unreachable)?;
        let text = String::from_utf8_lossy(&out.stderr).into_owned()
            + &String::from_utf8_lossy(&out.stdout);
        Some(text)
    } else {
        None
    };
    let configure = |key: &str| -> Option<String> {
        let text = built.as_deref()?;
        text.split_whitespace()
            .find_map(|w| w.strip_prefix(key))
            .map(str::to_string)
    };
    // `-p DIR` in the command overrides the built-in prefix.
    let prefix = options
        .nginx
        .windows(2)
        .find(|w| w[0] == "-p")
        .map(|w| w[1].clone())
        .or_else(|| configure("--prefix="))
        .unwrap_or_else(|| "/etc/nginx/".into());
    let path = from_config
        .or_else(|| configure("--pid-path="))
        .unwrap_or_else(|| "/run/nginx.pid".into());
    Ok(if path.starts_with('/') {
        path
    } else {
        format!("{}/{}", prefix.trim_end_matches('/'), path)
    })
}

/// Checks that the main file loads the upstream file when that is another
/// file, and that no `include` of the main file would load one of the
/// router's own files beside the live one (a candidate or a journal).
async fn check_includes(options: &NginxRouterOptions, proxy: &Proxy) -> Result<(), RouterError> {
    let main_path = &options.config_path;
    let main = read_live(proxy, main_path).await?;
    if let Some(target) = &options.upstream_file {
        include::sites(&main, main_path, target)?;
    }
    let (previous, next) = journal_paths(options.live_path());
    let main_candidate = format!("{main_path}{CANDIDATE_SUFFIX}");
    for own in [options.candidate_path(), previous, next, main_candidate] {
        if let Some(pattern) = include::loaders(&main, main_path, &own).first() {
            return Err(RouterError::Config(format!(
                "{main_path}: include {pattern} would also load {own}, a file the router writes beside the live one\nhint: narrow the include, for example to *.conf"
            )));
        }
    }
    Ok(())
}

/// The journal of a commit: the previous bytes and the new ones, beside the
/// live file.
fn journal_paths(live: &str) -> (String, String) {
    (
        format!("{live}{PREVIOUS_SUFFIX}"),
        format!("{live}{NEXT_SUFFIX}"),
    )
}

/// Finishes, in the files, what a commit cut by a crash left: a live file
/// that is neither the previous bytes nor the whole new ones was torn by the
/// write and gets the previous bytes back (no master loaded it: a reload
/// comes only after a complete write). The caller reloads, then removes the
/// journal (replicas may share one file, and so one journal).
async fn recover_files(
    options: &NginxRouterOptions,
    proxy: &Proxy,
) -> Result<Recovery, RouterError> {
    let path = options.live_path();
    let files = &proxy.files;
    let (journal_previous, journal_next) = journal_paths(path);
    let previous = match read_if_there(proxy, &journal_previous).await? {
        Some(bytes) => bytes,
        // No previous bytes: no commit under way (they are written first
        // and removed first), whatever `next` says.
        None => return Ok(Recovery::Clean),
    };
    let next = read_if_there(proxy, &journal_next).await?;
    let live = read_live(proxy, path).await?;
    let found = if live == previous {
        Recovery::Unchanged
    } else if next.as_deref() == Some(&live[..]) {
        Recovery::Written
    } else {
        files
            .write_in_place(path, &previous)
            .await
            .map_err(unreachable)?;
        Recovery::Restored
    };
    Ok(found)
}

/// The bytes of `path`, or `None` when it does not exist. A store that
/// reports a missing file as another error is asked again through exec
/// (`test -e`), so that only a file that is there and unreadable fails.
async fn read_if_there(proxy: &Proxy, path: &str) -> Result<Option<Vec<u8>>, RouterError> {
    match proxy.files.read(path).await {
        Ok(bytes) => Ok(Some(bytes)),
        Err(ProxyError::Missing { .. }) => Ok(None),
        Err(e) => {
            let argv: Vec<String> = ["test", "-e", path].iter().map(|s| s.to_string()).collect();
            match proxy.exec.exec(&argv).await {
                Ok(out) if out.code == 1 => Ok(None),
                _ => Err(unreachable(e)),
            }
        }
    }
}

async fn read_live(proxy: &Proxy, path: &str) -> Result<Vec<u8>, RouterError> {
    proxy.files.read(path).await.map_err(unreachable)
}

fn unreachable(e: ProxyError) -> RouterError {
    RouterError::Unreachable(e.to_string())
}

fn restored_note(name: &str, path: &str, restored: Result<(), ProxyError>) -> String {
    match restored {
        Ok(()) => format!("\nthe previous {path} was put back in {name}"),
        Err(e) => format!(
            "\nthe previous {path} could not be put back in {name}: {e}\nhint: the journal holds the previous bytes; the next rollout restores them"
        ),
    }
}

/// Drops the `proxy reload did not take: ` that the error's display adds, so
/// that wrapping a message again does not repeat it.
fn strip_prefix(message: &str) -> String {
    message
        .strip_prefix("proxy reload did not take: ")
        .unwrap_or(message)
        .to_string()
}

fn append(e: RouterError, notes: &str) -> RouterError {
    if notes.is_empty() {
        return e;
    }
    match e {
        RouterError::Reload(m) => RouterError::Reload(m + notes),
        RouterError::Unreachable(m) => RouterError::Unreachable(m + notes),
        RouterError::Config(m) => RouterError::Config(m + notes),
        RouterError::Other(m) => RouterError::Other(m + notes),
        RouterError::Invalid { location, message } => RouterError::Invalid {
            location,
            message: message + notes,
        },
    }
}

/// Turns the output of a failed `nginx -t` into [`RouterError::Invalid`],
/// naming the live file where nginx named the candidate.
fn refusal(out: &ExecOutput, renames: &[(&str, &str)], live: &str, proxy: &str) -> RouterError {
    let mut text = out.message();
    for (candidate, real) in renames {
        text = text.replace(candidate, real);
    }
    let line = text
        .lines()
        .find(|l| l.contains("[emerg]") || l.contains("[alert]") || l.contains("[crit]"))
        .or_else(|| text.lines().next())
        .unwrap_or("nginx -t failed")
        .to_string();
    let body = line.split_once("] ").map(|(_, m)| m).unwrap_or(&line);
    // nginx ends its message with ` in FILE:LINE`.
    let located = body.rsplit_once(" in ").and_then(|(message, at)| {
        let (file, number) = at.rsplit_once(':')?;
        number.parse::<u32>().ok()?;
        (!file.is_empty()).then(|| (message.to_string(), at.to_string()))
    });
    let (message, location) = match located {
        Some((message, location)) => (message, location),
        None => (body.to_string(), live.to_string()),
    };
    RouterError::Invalid {
        location,
        message: format!("{message} (nginx -t in {proxy})"),
    }
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

/// The bridge to the crate's parser and upstream editor: the only place
/// that reads or rewrites config text.
mod edit {
    use crate::tree::ConfFile;
    use crate::upstream::{Address, EditError, Param};
    use rollout_core::error::RouterError;
    use rollout_core::router::RouteChange;
    use std::collections::HashSet;

    /// One `server` line of the upstream, as the router needs it.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub(super) struct Server {
        pub host: String,
        pub port: Option<u16>,
        pub weight: u32,
        pub down: bool,
    }

    fn parse(bytes: &[u8], path: &str) -> Result<ConfFile, RouterError> {
        ConfFile::parse(path, bytes.to_vec()).map_err(|e| {
            RouterError::Config(format!(
                "{e}\nhint: the router edits only a config that nginx itself would read"
            ))
        })
    }

    /// The editor's refusals are validation failures with a file and line;
    /// a missing upstream is bad input.
    fn refused(e: EditError) -> RouterError {
        match e {
            EditError::Refused {
                upstream,
                file,
                line,
                server,
                reason,
            } => RouterError::Invalid {
                location: format!("{}:{line}", file.display()),
                message: format!("upstream \"{upstream}\": server {server}: {reason}"),
            },
            EditError::NoPrimary {
                upstream,
                file,
                line,
            } => RouterError::Invalid {
                location: format!("{}:{line}", file.display()),
                message: format!(
                    "upstream \"{upstream}\" would have no primary server (nginx: no servers in upstream)"
                ),
            },
            e @ (EditError::Internal { .. } | EditError::Reparse(_) | EditError::Create { .. }) => {
                RouterError::Other(e.to_string())
            }
            e => RouterError::Config(e.to_string()),
        }
    }

    /// The servers of `upstream` in `bytes` (the file at `path`).
    pub(super) fn servers(
        bytes: &[u8],
        path: &str,
        upstream: &str,
    ) -> Result<Vec<Server>, RouterError> {
        let file = parse(bytes, path)?;
        let up = file.upstream(upstream).map_err(refused)?;
        Ok(up
            .servers
            .iter()
            .map(|line| {
                let address = &line.server.address;
                Server {
                    host: address
                        .host()
                        .map(str::to_string)
                        .unwrap_or_else(|| address.to_string()),
                    port: address.port(),
                    weight: line.server.weight(),
                    down: line.server.is_down(),
                }
            })
            .collect())
    }

    /// `bytes` with `change` applied to `upstream`: removed hosts lose their
    /// line, set ones get their weight or a new line `host:port`; the rest of
    /// the file stays byte for byte.
    ///
    /// A new line copies the parameters of the upstream's first server line
    /// as it was before the change, other than `weight`, `backup`, `down` and
    /// `service=` (which belong to one line): the operator's `max_fails=3
    /// fail_timeout=5s` on `server app:8000` then goes to the instance lines
    /// of a rollout, and back to the service line at rest.
    pub(super) fn apply(
        bytes: &[u8],
        path: &str,
        upstream: &str,
        change: &RouteChange,
        port: u16,
    ) -> Result<Vec<u8>, RouterError> {
        let file = parse(bytes, path)?;
        let up = file.upstream(upstream).map_err(refused)?;
        let template: Vec<Param> = up
            .servers
            .first()
            .map(|line| {
                line.server
                    .params
                    .iter()
                    .filter(|p| {
                        !matches!(
                            p,
                            Param::Weight(_) | Param::Backup | Param::Down | Param::Service(_)
                        )
                    })
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        let before: HashSet<&Address> = up.servers.iter().map(|l| &l.server.address).collect();
        let edited = file
            .apply_route_change(upstream, change, port)
            .map_err(refused)?;
        if template.is_empty() {
            return Ok(edited.source().to_vec());
        }
        let mut servers = edited.upstream(upstream).map_err(refused)?.server_set();
        let mut added = false;
        for server in servers.iter_mut().filter(|s| !before.contains(&s.address)) {
            let weight = server.weight();
            server.params = template.clone();
            server.set_weight(weight);
            added = true;
        }
        if !added {
            return Ok(edited.source().to_vec());
        }
        let templated = edited.set_servers(upstream, &servers).map_err(refused)?;
        Ok(templated.source().to_vec())
    }

    /// The main context's `pid` directive, when there is one.
    pub(super) fn pid_directive(bytes: &[u8], path: &str) -> Result<Option<String>, RouterError> {
        let file = parse(bytes, path)?;
        let pid = file
            .items()
            .directives()
            .find(|d| d.name().value().as_ref() == b"pid")
            .and_then(|d| d.args().next())
            .map(|arg| arg.value_lossy());
        Ok(pid)
    }
}

/// Includes of the main file: which ones load the upstream file, and the
/// candidate main file that loads the candidate instead.
mod include {
    use crate::tree::ConfFile;
    use rollout_core::error::RouterError;
    use std::ops::Range;

    /// Lists the regular files a glob matches, one a line; `$1` is the
    /// pattern, expanded by the shell as nginx's glob(3) would (no
    /// `/` matched by `*`, `?` or `[...]`).
    pub(super) const GLOB_SCRIPT: &str =
        r#"for f in $1; do [ -f "$f" ] && printf '%s\n' "$f"; done; exit 0"#;

    /// One `include` of the main file that loads the upstream file.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub(super) struct Site {
        /// The directive's bytes, name to `;`.
        pub span: Range<usize>,
        /// Its argument made absolute against the main file's directory.
        pub pattern: String,
        /// Whether it is a glob.
        pub glob: bool,
        /// How many line ends the directive spans (kept, so that lines keep
        /// their numbers).
        pub newlines: usize,
    }

    pub(super) fn is_glob(pattern: &str) -> bool {
        pattern.contains(['*', '?', '['])
    }

    /// `path` made absolute against the directory of `main`, as nginx does
    /// with the arguments of `include`.
    pub(super) fn resolve(main: &str, path: &str) -> String {
        if path.starts_with('/') {
            return path.to_string();
        }
        let dir = main.rsplit_once('/').map_or("", |(dir, _)| dir);
        format!("{dir}/{path}")
    }

    /// The `include` directives of `main` (at any depth) that load `target`,
    /// in order. None is an error: the upstream file must be included by
    /// the main file itself.
    pub(super) fn sites(
        main: &[u8],
        main_path: &str,
        target: &str,
    ) -> Result<Vec<Site>, RouterError> {
        let file = ConfFile::parse(main_path, main.to_vec())
            .map_err(|e| RouterError::Config(e.to_string()))?;
        let mut sites = Vec::new();
        for (_, d) in file.walk() {
            if d.name().value().as_ref() != b"include" {
                continue;
            }
            let Some(arg) = d.args().next() else { continue };
            let pattern = resolve(main_path, &arg.value_lossy());
            let glob = is_glob(&pattern);
            let loads = if glob {
                glob_match(pattern.as_bytes(), target.as_bytes())
            } else {
                pattern == target
            };
            if loads {
                let span = d.span();
                let newlines = main[span.clone()].iter().filter(|&&b| b == b'\n').count();
                sites.push(Site {
                    span,
                    pattern,
                    glob,
                    newlines,
                });
            }
        }
        if sites.is_empty() {
            return Err(RouterError::Config(format!(
                "{main_path} does not include {target}\nhint: the upstream file must be included by the main file itself, not through another included file"
            )));
        }
        Ok(sites)
    }

    /// Every `include` pattern of `main` (made absolute) that would load
    /// `path`: a file of the router's own beside the live one must match
    /// none, or nginx would load it.
    pub(super) fn loaders(main: &[u8], main_path: &str, path: &str) -> Vec<String> {
        let Ok(file) = ConfFile::parse(main_path, main.to_vec()) else {
            return Vec::new();
        };
        file.walk()
            .into_iter()
            .filter(|(_, d)| d.name().value().as_ref() == b"include")
            .filter_map(|(_, d)| d.args().next())
            .map(|arg| resolve(main_path, &arg.value_lossy()))
            .filter(|pattern| {
                if is_glob(pattern) {
                    glob_match(pattern.as_bytes(), path.as_bytes())
                } else {
                    pattern == path
                }
            })
            .collect()
    }

    /// The files [`GLOB_SCRIPT`] printed, in nginx's order (bytes, as
    /// glob(3) sorts them in the C locale nginx runs in).
    pub(super) fn matches(out: &[u8]) -> Vec<String> {
        let mut files: Vec<String> = String::from_utf8_lossy(out)
            .lines()
            .filter(|l| !l.is_empty())
            .map(str::to_string)
            .collect();
        files.sort();
        files.dedup();
        files
    }

    /// `main` with each site replaced by `include FILE;` for each of its
    /// files, on the site's line, followed by the line ends it spanned.
    pub(super) fn rewrite(main: &[u8], sites: &[Site], lists: &[Vec<String>]) -> Vec<u8> {
        let mut out = Vec::with_capacity(main.len() + 256);
        let mut at = 0;
        for (site, files) in sites.iter().zip(lists) {
            out.extend_from_slice(&main[at..site.span.start]);
            let includes: Vec<String> = files
                .iter()
                .map(|f| format!("include {};", crate::upstream::quote_arg(f)))
                .collect();
            if includes.is_empty() {
                // Nothing matches any more: an empty statement keeps the
                // file's shape.
                out.push(b';');
            }
            out.extend_from_slice(includes.join(" ").as_bytes());
            out.extend(std::iter::repeat_n(b'\n', site.newlines));
            at = site.span.end;
        }
        out.extend_from_slice(&main[at..]);
        out
    }

    /// Whether `path` matches the glob `pattern` (`*`, `?`, `[...]` with
    /// ranges and `!`/`^`, none of them matching `/`).
    pub(super) fn glob_match(pattern: &[u8], path: &[u8]) -> bool {
        let (mut p, mut s) = (0, 0);
        let mut star: Option<(usize, usize)> = None;
        while s < path.len() {
            let step = match pattern.get(p) {
                Some(b'*') => {
                    star = Some((p, s));
                    p += 1;
                    continue;
                }
                Some(b'?') if path[s] != b'/' => Some(p + 1),
                Some(b'[') => class(pattern, p, path[s]),
                Some(&c) if c == path[s] => Some(p + 1),
                _ => None,
            };
            match step {
                Some(next) => {
                    p = next;
                    s += 1;
                }
                None => match star {
                    Some((sp, ss)) if path[ss] != b'/' => {
                        star = Some((sp, ss + 1));
                        p = sp + 1;
                        s = ss + 1;
                    }
                    _ => return false,
                },
            }
        }
        pattern[p..].iter().all(|&c| c == b'*')
    }

    /// Matches `c` against the class opening at `pattern[at]`; the index
    /// after the class when it matches.
    fn class(pattern: &[u8], at: usize, c: u8) -> Option<usize> {
        let mut i = at + 1;
        let negate = matches!(pattern.get(i), Some(b'!' | b'^'));
        if negate {
            i += 1;
        }
        let mut hit = false;
        let mut first = true;
        loop {
            let lo = *pattern.get(i)?;
            if lo == b']' && !first {
                break;
            }
            first = false;
            if pattern.get(i + 1) == Some(&b'-') && pattern.get(i + 2).is_some_and(|&h| h != b']') {
                let hi = pattern[i + 2];
                hit |= lo <= c && c <= hi;
                i += 3;
            } else {
                hit |= lo == c;
                i += 1;
            }
        }
        (hit != negate && c != b'/').then_some(i + 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proc(pid: u32, start: u64, state: char, title: &str) -> Proc {
        Proc {
            pid,
            start,
            state,
            title: title.into(),
        }
    }

    fn procs(children: Vec<Proc>) -> Procs {
        Procs {
            master: proc(10, 100, 'S', ""),
            children,
        }
    }

    #[test]
    fn the_process_table_is_read_with_titles_and_start_times() {
        let out = b"M 10 100 S\n\
            C 11 105 S nginx: worker process\0\0\0\0\n\
            C 12 106 S nginx: worker process is shutting down\0\0\n\
            C 13 107 Z \n";
        let p = parse_procs(out).unwrap();
        assert_eq!(p.master, proc(10, 100, 'S', ""));
        assert_eq!(
            p.children,
            vec![
                proc(11, 105, 'S', "nginx: worker process"),
                proc(12, 106, 'S', "nginx: worker process is shutting down"),
                proc(13, 107, 'Z', ""),
            ]
        );
        assert!(p.children[1].shutting_down() && !p.children[0].shutting_down());
        assert!(!p.children[2].alive(), "a zombie has exited");
        assert!(p.has((11, 105)) && !p.has((11, 999)) && !p.has((13, 107)));
        assert!(parse_procs(b"C 11 105 S x\n").is_none(), "no master line");
        assert!(parse_procs(b"M ten 100 S\n").is_none());
    }

    #[test]
    fn a_reload_took_only_when_new_workers_run_and_old_ones_quit() {
        let before = procs(vec![
            proc(11, 105, 'S', "nginx: worker process"),
            proc(12, 105, 'S', "nginx: worker process"),
        ]);
        // Nothing happened (yet, or the master refused).
        assert_eq!(reload_took(&before, &before), Some(false));
        // New workers, old ones shutting down or gone: it took.
        let took = procs(vec![
            proc(11, 105, 'S', "nginx: worker process is shutting down"),
            proc(20, 300, 'S', "nginx: worker process"),
            proc(21, 300, 'S', "nginx: worker process"),
        ]);
        assert_eq!(reload_took(&before, &took), Some(true));
        // New workers started, old ones not yet told to quit: not yet.
        let starting = procs(vec![
            proc(11, 105, 'S', "nginx: worker process"),
            proc(12, 105, 'S', "nginx: worker process"),
            proc(20, 300, 'S', "nginx: worker process"),
        ]);
        assert_eq!(reload_took(&before, &starting), Some(false));
        // A worker that crashed and was respawned is no reload.
        let respawned = procs(vec![
            proc(11, 105, 'S', "nginx: worker process"),
            proc(22, 300, 'S', "nginx: worker process"),
        ]);
        assert_eq!(reload_took(&before, &respawned), Some(false));
        // A recycled id with another start time is a new process.
        let recycled = procs(vec![proc(11, 400, 'S', "nginx: worker process")]);
        assert_eq!(reload_took(&before, &recycled), Some(true));
        // Another master: nginx was restarted.
        let mut restarted = took.clone();
        restarted.master = proc(30, 500, 'S', "");
        assert_eq!(reload_took(&before, &restarted), None);
    }

    #[test]
    fn a_refusal_names_the_live_file_not_the_candidate() {
        let out = ExecOutput {
            code: 1,
            stdout: Vec::new(),
            stderr: b"nginx: [emerg] host not found in upstream \"nope:8000\" in /etc/nginx/nginx.conf.rollout-candidate:12\n\
                      nginx: configuration file /etc/nginx/nginx.conf.rollout-candidate test failed\n"
                .to_vec(),
        };
        match refusal(
            &out,
            &[(
                "/etc/nginx/nginx.conf.rollout-candidate",
                "/etc/nginx/nginx.conf",
            )],
            "/etc/nginx/nginx.conf",
            "proxy-1",
        ) {
            RouterError::Invalid { location, message } => {
                assert_eq!(location, "/etc/nginx/nginx.conf:12");
                assert_eq!(
                    message,
                    "host not found in upstream \"nope:8000\" (nginx -t in proxy-1)"
                );
            }
            other => panic!("{other:?}"),
        }
        // No location in the message: the live file is named.
        let out = ExecOutput {
            code: 1,
            stdout: Vec::new(),
            stderr: b"nginx: [alert] could not open error log file\n".to_vec(),
        };
        match refusal(&out, &[("/c.rollout-candidate", "/c")], "/c", "p") {
            RouterError::Invalid { location, message } => {
                assert_eq!(location, "/c");
                assert!(
                    message.starts_with("could not open error log file"),
                    "{message}"
                );
            }
            other => panic!("{other:?}"),
        }
    }

    /// A proxy whose exec answers every command with `out`, and whose only
    /// file holds `config`.
    struct Canned {
        out: ExecOutput,
        config: Vec<u8>,
        calls: std::sync::Mutex<Vec<Vec<String>>>,
    }

    #[async_trait]
    impl crate::proxy::ProxyExec for Canned {
        async fn exec(&self, argv: &[String]) -> Result<ExecOutput, ProxyError> {
            self.calls.lock().unwrap().push(argv.to_vec());
            Ok(self.out.clone())
        }
    }

    #[async_trait]
    impl crate::proxy::ConfigStore for Canned {
        async fn read(&self, _: &str) -> Result<Vec<u8>, ProxyError> {
            Ok(self.config.clone())
        }
        async fn write_in_place(&self, path: &str, _: &[u8]) -> Result<(), ProxyError> {
            Err(ProxyError::File {
                proxy: "canned".into(),
                action: "write",
                path: path.into(),
                reason: "read-only".into(),
            })
        }
        async fn write_new(&self, path: &str, bytes: &[u8]) -> Result<(), ProxyError> {
            self.write_in_place(path, bytes).await
        }
        async fn remove(&self, _: &str) -> Result<(), ProxyError> {
            Ok(())
        }
    }

    async fn pid_file_of(config: &str, nginx: &[&str], version: &str) -> (String, usize) {
        let canned = std::sync::Arc::new(Canned {
            out: ExecOutput {
                code: 0,
                stdout: Vec::new(),
                stderr: version.as_bytes().to_vec(),
            },
            config: config.as_bytes().to_vec(),
            calls: Default::default(),
        });
        let proxy = Proxy::new("p", canned.clone(), canned.clone());
        let mut options = NginxRouterOptions::new("app", "/etc/nginx/nginx.conf");
        options.nginx = nginx.iter().map(|s| s.to_string()).collect();
        let found = find_pid_file(&options, &proxy).await.unwrap();
        let calls = canned.calls.lock().unwrap().len();
        (found, calls)
    }

    #[tokio::test]
    async fn the_pid_file_comes_from_the_config_else_from_the_binary() {
        let debian = "nginx version: nginx/1.22.1\nconfigure arguments: --with-cc-opt='-g -O2' \
                      --prefix=/usr/share/nginx --conf-path=/etc/nginx/nginx.conf \
                      --pid-path=/run/nginx.pid --modules-path=/usr/lib/nginx/modules\n";
        assert_eq!(
            pid_file_of("pid /var/run/x.pid;\n", &["nginx"], debian).await,
            ("/var/run/x.pid".into(), 0),
            "an absolute pid directive needs no question to the binary"
        );
        assert_eq!(
            pid_file_of("events {}\n", &["nginx"], debian).await,
            ("/run/nginx.pid".into(), 1)
        );
        assert_eq!(
            pid_file_of("pid logs/n.pid;\n", &["nginx"], debian).await,
            ("/usr/share/nginx/logs/n.pid".into(), 1)
        );
        assert_eq!(
            pid_file_of("pid logs/n.pid;\n", &["nginx", "-p", "/srv/p/"], debian).await,
            ("/srv/p/logs/n.pid".into(), 1)
        );
        assert_eq!(
            pid_file_of("events {}\n", &["nginx"], "nginx version: custom\n").await,
            ("/run/nginx.pid".into(), 1)
        );
    }

    #[test]
    fn globs_match_as_nginx_globs_do() {
        let m = |p: &str, s: &str| include::glob_match(p.as_bytes(), s.as_bytes());
        assert!(m(
            "/etc/nginx/conf.d/*.conf",
            "/etc/nginx/conf.d/default.conf"
        ));
        assert!(!m(
            "/etc/nginx/conf.d/*.conf",
            "/etc/nginx/conf.d/default.conf.rollout-candidate"
        ));
        assert!(m(
            "/etc/nginx/conf.d/*",
            "/etc/nginx/conf.d/default.conf.rollout-previous"
        ));
        assert!(
            !m("/etc/nginx/*.conf", "/etc/nginx/conf.d/x.conf"),
            "* stops at /"
        );
        assert!(m("/etc/nginx/*/x.conf", "/etc/nginx/conf.d/x.conf"));
        assert!(m("/a/?.conf", "/a/b.conf") && !m("/a/?.conf", "/a/bc.conf"));
        assert!(m("/a/[a-c].conf", "/a/b.conf") && !m("/a/[a-c].conf", "/a/d.conf"));
        assert!(m("/a/[!a-c].conf", "/a/d.conf") && !m("/a/[!a-c].conf", "/a/a.conf"));
        assert!(m("/a/[]x].conf", "/a/].conf"));
        assert!(!m("/a/[ab", "/a/a"), "an unclosed class matches nothing");
        assert!(m("/a/**", "/a/b") && m("/a/*", "/a/"));
    }

    #[test]
    fn the_candidate_main_includes_the_candidate_on_the_same_lines() {
        let main = b"events {}\nhttp {\n    include mime.types;\n    include conf.d/*.conf;\n    include\n      /srv/app.inc;\n    server { listen 80; }\n}\n";
        let sites =
            include::sites(main, "/etc/nginx/nginx.conf", "/etc/nginx/conf.d/app.conf").unwrap();
        assert_eq!(sites.len(), 1);
        assert!(sites[0].glob);
        assert_eq!(sites[0].pattern, "/etc/nginx/conf.d/*.conf");
        let lists = vec![vec![
            "/etc/nginx/conf.d/a b.conf".to_string(),
            "/etc/nginx/conf.d/app.conf.rollout-candidate".to_string(),
        ]];
        let out = String::from_utf8(include::rewrite(main, &sites, &lists)).unwrap();
        assert_eq!(
            out,
            "events {}\nhttp {\n    include mime.types;\n    include \"/etc/nginx/conf.d/a b.conf\"; include /etc/nginx/conf.d/app.conf.rollout-candidate;\n    include\n      /srv/app.inc;\n    server { listen 80; }\n}\n"
        );
        // A literal include spanning two lines keeps both.
        let sites = include::sites(main, "/etc/nginx/nginx.conf", "/srv/app.inc").unwrap();
        assert_eq!(sites[0].newlines, 1);
        let out = include::rewrite(main, &sites, &[vec!["/srv/app.inc.c".to_string()]]);
        let out = String::from_utf8(out).unwrap();
        assert!(
            out.contains("    include /srv/app.inc.c;\n\n    server"),
            "{out}"
        );
        assert_eq!(
            out.lines().count(),
            String::from_utf8_lossy(main).lines().count()
        );
        // Not included by the main file itself: refused.
        assert!(matches!(
            include::sites(main, "/etc/nginx/nginx.conf", "/etc/nginx/other/x.conf"),
            Err(RouterError::Config(_))
        ));
        assert_eq!(
            include::loaders(
                b"include /etc/nginx/*;",
                "/etc/nginx/nginx.conf",
                "/etc/nginx/nginx.conf.rollout-next"
            ),
            vec!["/etc/nginx/*".to_string()]
        );
        assert_eq!(include::matches(b"/b\n/a\n\n/a\n"), vec!["/a", "/b"]);
    }

    #[tokio::test]
    async fn a_store_that_cannot_say_missing_is_asked_again_through_exec() {
        let store = |code: i32| {
            let canned = std::sync::Arc::new(Canned {
                out: ExecOutput {
                    code,
                    ..Default::default()
                },
                config: Vec::new(),
                calls: Default::default(),
            });
            // Its read succeeds; a store whose read fails is below.
            (canned.clone(), canned)
        };
        struct Opaque;
        #[async_trait]
        impl crate::proxy::ConfigStore for Opaque {
            async fn read(&self, path: &str) -> Result<Vec<u8>, ProxyError> {
                Err(ProxyError::File {
                    proxy: "opaque".into(),
                    action: "read",
                    path: path.into(),
                    reason: "404".into(),
                })
            }
            async fn write_in_place(&self, _: &str, _: &[u8]) -> Result<(), ProxyError> {
                Ok(())
            }
            async fn write_new(&self, _: &str, _: &[u8]) -> Result<(), ProxyError> {
                Ok(())
            }
            async fn remove(&self, _: &str) -> Result<(), ProxyError> {
                Ok(())
            }
        }
        let (exec, _) = store(1);
        let absent = Proxy::new("p", exec.clone(), std::sync::Arc::new(Opaque));
        assert_eq!(read_if_there(&absent, "/x").await.unwrap(), None);
        assert_eq!(
            exec.calls.lock().unwrap().last().unwrap(),
            &vec!["test".to_string(), "-e".into(), "/x".into()]
        );
        let (exec, _) = store(0);
        let unreadable = Proxy::new("p", exec, std::sync::Arc::new(Opaque));
        assert!(matches!(
            read_if_there(&unreadable, "/x").await,
            Err(RouterError::Unreachable(_))
        ));
        let (exec, files) = store(1);
        let readable = Proxy::new("p", exec, files);
        assert_eq!(read_if_there(&readable, "/x").await.unwrap(), Some(vec![]));
    }

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

    #[test]
    fn edits_go_through_the_upstream_editor() {
        let src = b"http {\n    upstream app {\n        server app:8000;\n    }\n}\n";
        let servers = edit::servers(src, "nginx.conf", "app").unwrap();
        assert_eq!(
            servers,
            vec![edit::Server {
                host: "app".into(),
                port: Some(8000),
                weight: 1,
                down: false
            }]
        );
        let change = RouteChange {
            set: vec![Route {
                target: Target::instance(InstanceId::from("c1"), "app-1"),
                weight: 2,
            }],
            remove: vec![Target::Service { name: "app".into() }],
        };
        let edited = edit::apply(src, "nginx.conf", "app", &change, 8000).unwrap();
        assert_eq!(
            edited,
            b"http {\n    upstream app {\n        server app-1:8000 weight=2;\n    }\n}\n"
        );
        // New lines copy the first line's parameters, and the service line
        // comes back as the operator wrote it.
        let tuned = b"upstream app {\n    server app:8000 max_fails=3 fail_timeout=5s;\n}\n";
        let during = edit::apply(tuned, "n", "app", &change, 8000).unwrap();
        assert_eq!(
            String::from_utf8(during.clone()).unwrap(),
            "upstream app {\n    server app-1:8000 max_fails=3 fail_timeout=5s weight=2;\n}\n"
        );
        let back = RouteChange {
            set: vec![Route {
                target: Target::Service { name: "app".into() },
                weight: 1,
            }],
            remove: vec![Target::instance(InstanceId::from("c1"), "app-1")],
        };
        assert_eq!(
            edit::apply(&during, "n", "app", &back, 8000).unwrap(),
            tuned.to_vec()
        );
        let everything = RouteChange {
            set: vec![],
            remove: vec![Target::Service { name: "app".into() }],
        };
        match edit::apply(src, "nginx.conf", "app", &everything, 8000) {
            Err(RouterError::Invalid { location, .. }) => assert_eq!(location, "nginx.conf:2"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            edit::servers(src, "nginx.conf", "nope"),
            Err(RouterError::Config(_))
        ));
        assert!(matches!(
            edit::servers(b"http {", "nginx.conf", "app"),
            Err(RouterError::Config(_))
        ));
        assert_eq!(
            edit::pid_directive(b"pid /run/x.pid;\nhttp { pid no; }\n", "n").unwrap(),
            Some("/run/x.pid".into())
        );
        assert_eq!(edit::pid_directive(src, "n").unwrap(), None);
    }
}
