//! The process table: how the router sees nginx's master and its workers.
//!
//! `nginx -s reload` exits 0 even when the master refuses the new config;
//! the process table says whether a reload took without ambiguity (see "Did
//! the reload take?" in the router's documentation). This room reads the
//! table with one constant POSIX `sh` script run in the proxy, signals a
//! reload and watches it take, and finds the master's pid file. It is a room
//! of its own because the scripts, the format they print and its parser
//! change together, and because it is where the router learns about
//! processes: the rest of the router only holds the [`Proc`]s it returns
//! (the drain waits for them to exit).

use super::{edit, read_live, unreachable, NginxRouter, NginxRouterOptions, Replica};
use crate::proxy::{ExecOutput, Proxy};
use rollout_core::error::RouterError;
use std::collections::HashSet;
use tokio::time::Instant;

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
/// active shutting down or gone. The master tells them to quit 100 ms after
/// it starts the new ones, a pause in place of knowing that they run; the
/// script knows, and tells them itself (`SIGQUIT`, the master's own
/// graceful stop; the master's quit command reaches them later over its
/// channel and finds them shutting down) as soon as the master runs at least as
/// many new children as it had active ones while all of those still run,
/// as its children (see [`started_anew`]). New workers that run but have
/// not yet entered their event loop lose nothing: the listening sockets
/// are the master's, and a connection waits in their queue. With `$1` = 1
/// (a change that takes no server out) the reload took then, and the old
/// workers are left to the master. Checked every 10 ms for at most a
/// second, or a fixed pause where the kernel has no list of children; the
/// router reads the table itself and keeps polling when it did not take yet.
/// Files after the pid file (the commit's journal, when this replica is the
/// only one) are removed once the reload is seen to take, and a line `J`
/// before the second table says so.
const RELOAD_SCRIPT: &str = concat!(
    snap_function!(),
    r#"ours() {
  s=
  { read -r s < "/proc/$1/stat"; } 2>/dev/null || return 1
  r=${s##*) }
  set -- $r
  case $1 in Z*|X*|x*) return 1;; esac
  [ "$2" = "$m" ]
}
early=$1
f=$2
shift 2
snap "$f" || exit $?
[ "$n" -gt 0 ] || exit 5
old=$L
active=$A
nact=0
for c in $active; do nact=$((nact+1)); done
ok=0
told=0
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
    if [ "$fresh" -ge "$nact" ]; then
      all=1
      for c in $active; do ours "$c" || all=0; done
      if [ "$all" -eq 1 ]; then
        [ "$early" = 1 ] && ok=1 && break
        if [ "$told" = 0 ]; then
          told=1
          for c in $active; do ours "$c" && kill -QUIT "$c" 2>/dev/null; done
        fi
      fi
    fi
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

/// One process of the proxy, known by id and start time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Proc {
    pub(super) pid: u32,
    /// Clock ticks since boot (`/proc/PID/stat` field 22).
    pub(super) start: u64,
    /// `R`, `S`, `Z`, ...
    pub(super) state: char,
    /// The title nginx gave it (`nginx: worker process`).
    pub(super) title: String,
}

impl Proc {
    /// `PID:START`, as the proxy-side scripts take it.
    pub(super) fn arg(&self) -> String {
        format!("{}:{}", self.pid, self.start)
    }

    pub(super) fn key(&self) -> (u32, u64) {
        (self.pid, self.start)
    }

    pub(super) fn alive(&self) -> bool {
        !matches!(self.state, 'Z' | 'X' | 'x')
    }

    pub(super) fn shutting_down(&self) -> bool {
        self.title.contains("shutting down")
    }
}

/// The master and its children at one moment.
#[derive(Debug, Clone)]
pub(super) struct Procs {
    pub(super) master: Proc,
    pub(super) children: Vec<Proc>,
}

impl Procs {
    pub(super) fn live_children(&self) -> impl Iterator<Item = &Proc> {
        self.children.iter().filter(|p| p.alive())
    }

    #[cfg(test)]
    fn has(&self, key: (u32, u64)) -> bool {
        self.live_children().any(|p| p.key() == key)
    }
}

impl NginxRouter {
    /// Reads the master and its children.
    pub(super) async fn procs(&self, replica: &Replica) -> Result<Procs, RouterError> {
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

    /// Reads the process table, signals the reload and reads the table
    /// again, in one command ([`RELOAD_SCRIPT`]); returns the table before
    /// and, when the reload already took, nothing left to wait for.
    /// `early`: the change takes no server out, so new workers suffice
    /// ([`started_anew`]).
    pub(super) async fn signal_reload(
        &self,
        replica: &Replica,
        journal: &[&str],
        early: bool,
    ) -> Result<(Procs, bool, bool), RouterError> {
        let name = &replica.proxy.name;
        let flag = if early { "1" } else { "0" };
        let mut argv: Vec<String> = ["sh", "-c", RELOAD_SCRIPT, "sh", flag, &replica.pid_file]
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
        let took = parse_procs(after).is_some_and(|now| took(&before, &now, early) == Some(true));
        Ok((before, took, forgot))
    }

    /// Reloads one replica with what its live file holds and checks it.
    pub(super) async fn reload(&self, replica: &Replica) -> Result<(), RouterError> {
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
        self.await_reload(replica, &before, false).await
    }

    /// Polls the process table until the reload took ([`took`] with
    /// `early`), or fails at the reload timeout.
    pub(super) async fn await_reload(
        &self,
        replica: &Replica,
        before: &Procs,
        early: bool,
    ) -> Result<(), RouterError> {
        let name = &replica.proxy.name;
        let deadline = Instant::now() + self.options.reload_timeout;
        loop {
            let now = self.procs(replica).await?;
            match took(before, &now, early) {
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

/// Whether the reload took, as [`reload_took`], or with `early` (a change
/// that takes no server out) as soon as the master [`started_anew`].
pub(super) fn took(before: &Procs, now: &Procs, early: bool) -> Option<bool> {
    let full = reload_took(before, now)?;
    Some(full || (early && started_anew(before, now)))
}

/// Whether the master started a new set of children: at least as many new
/// ones as it had active ones before, while every one of those still runs.
/// That is a reload it accepted, before the master tells the old workers to
/// quit (it waits 100 ms for that; the reload command tells them at once
/// when the change takes a server out); a worker that crashed and was respawned
/// shows one new child and one old one gone, and passes only by the full
/// condition ([`reload_took`]: every old worker quitting). Enough for a change that takes no server out: nothing is
/// drained by it, and the old workers only lack the new servers for those
/// 100 ms.
pub(super) fn started_anew(before: &Procs, now: &Procs) -> bool {
    if now.master.key() != before.master.key() {
        return false;
    }
    let old: HashSet<(u32, u64)> = before.children.iter().map(Proc::key).collect();
    // Every child not shutting down, a dead one too (as the script counts
    // them): one that died before the signal runs no more, so a respawn of
    // it next to a refused reload never passes.
    let active: Vec<(u32, u64)> = before
        .children
        .iter()
        .filter(|p| !p.shutting_down())
        .map(Proc::key)
        .collect();
    let fresh = now
        .live_children()
        .filter(|p| !old.contains(&p.key()))
        .count();
    let all_run = active
        .iter()
        .all(|k| now.live_children().any(|p| p.key() == *k));
    fresh > 0 && fresh >= active.len() && all_run
}

/// `Some(true)` when the reload took, `Some(false)` when not (yet), `None`
/// when the master itself changed.
pub(super) fn reload_took(before: &Procs, now: &Procs) -> Option<bool> {
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
pub(super) async fn find_pid_file(
    options: &NginxRouterOptions,
    proxy: &Proxy,
) -> Result<String, RouterError> {
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

/// The access log nginx writes when a config names none: `--http-log-path`
/// of `nginx -V` (relative to the prefix, as a config's own paths are),
/// else nginx's own default.
pub(super) async fn built_access_log(
    options: &NginxRouterOptions,
    proxy: &Proxy,
) -> Result<String, RouterError> {
    let argv = proxy.nginx_argv(&options.nginx, &["-V"]);
    let out = proxy.exec.exec(&argv).await.map_err(unreachable)?;
    let text =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    Ok(text
        .split_whitespace()
        .find_map(|w| w.strip_prefix("--http-log-path="))
        .unwrap_or("logs/access.log")
        .to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::router::canned::Canned;

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
    fn a_change_that_takes_nothing_out_took_once_a_new_set_of_workers_runs() {
        let before = procs(vec![
            proc(11, 105, 'S', "nginx: worker process"),
            proc(12, 105, 'S', "nginx: worker process"),
            proc(9, 90, 'S', "nginx: worker process is shutting down"),
        ]);
        // New workers, old ones not yet told to quit: a new set started.
        let starting = procs(vec![
            proc(11, 105, 'S', "nginx: worker process"),
            proc(12, 105, 'S', "nginx: worker process"),
            proc(20, 300, 'S', "nginx: worker process"),
            proc(21, 300, 'S', "nginx: worker process"),
        ]);
        assert!(started_anew(&before, &starting));
        assert_eq!(took(&before, &starting, true), Some(true));
        assert_eq!(took(&before, &starting, false), Some(false));
        // Only one of two started yet: not yet.
        let mut half = starting.clone();
        half.children.pop();
        assert!(!started_anew(&before, &half));
        // One worker crashed and was respawned: one new, one old gone.
        let respawned = procs(vec![
            proc(11, 105, 'S', "nginx: worker process"),
            proc(12, 105, 'Z', "nginx: worker process"),
            proc(22, 300, 'S', "nginx: worker process"),
        ]);
        assert!(!started_anew(&before, &respawned));
        assert_eq!(took(&before, &respawned, true), Some(false));
        // A worker already dead when the signal went, respawned beside a
        // refused reload: one new child for one that died, not a new set.
        let dying = procs(vec![
            proc(11, 105, 'S', "nginx: worker process"),
            proc(12, 105, 'Z', "nginx: worker process"),
        ]);
        let refused = procs(vec![
            proc(11, 105, 'S', "nginx: worker process"),
            proc(23, 300, 'S', "nginx: worker process"),
        ]);
        assert!(!started_anew(&dying, &refused));
        assert_eq!(took(&dying, &refused, true), Some(false));
        // Nothing new, or another master.
        assert!(!started_anew(&before, &before));
        let mut restarted = starting.clone();
        restarted.master = proc(30, 500, 'S', "");
        assert!(!started_anew(&before, &restarted));
        assert_eq!(took(&before, &restarted, true), None);
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
}
