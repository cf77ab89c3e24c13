//! Drain: wait until nothing is in flight any more to the servers a change
//! removed: until the workers that ran before its reload are clear of them
//! by their connections (`conns.rs`), else until they have exited.
//!
//! Old workers keep proxying the requests they hold and exit when the last
//! one ends (see "Drain" in the router's documentation). The drain watches
//! them in the proxy, one command per round rather than one exec per look,
//! and names each process it waited for. It is a room of its own because it
//! runs apart from the change it drains: later, often much later, and
//! possibly for a ticket an earlier run of the program issued.

use super::conns::Mode;
use super::procs::Proc;
use super::{NginxRouter, WaitSet};
use rollout_core::error::RouterError;
use rollout_core::router::{DrainReport, DrainTicket};
use std::collections::HashSet;
use std::time::Duration;
use tokio::time::Instant;

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

impl NginxRouter {
    /// [`TrafficRouter::drain`](rollout_core::router::TrafficRouter::drain):
    /// waits for the workers recorded when `ticket` was applied, or, for a
    /// ticket this process did not apply, for every worker shutting down.
    pub(super) async fn wait_drained(
        &self,
        ticket: &DrainTicket,
        timeout: Duration,
    ) -> Result<DrainReport, RouterError> {
        let started = Instant::now();
        if ticket.removed.is_empty() {
            return Ok(DrainReport::default());
        }
        let (known, by_instance) = {
            let state = self.state.lock().await;
            (
                state.pending.get(&ticket.generation).cloned(),
                state.by_instance.contains(&ticket.generation),
            )
        };
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
        let waited_for: Vec<(usize, String)> = waits
            .iter()
            .flat_map(|(index, procs)| procs.iter().map(move |p| (*index, label(*index, p))))
            .collect();
        let deadline = started + timeout;
        // A change this process applied is drained per removed instance
        // where its connections prove it (`conns.rs`); a ticket of another
        // run's waits for whole workers.
        let removed = match by_instance {
            true => self.removed_addresses(&ticket.removed).await,
            false => None,
        };
        let mut left = waits;
        // The replicas whose last look went by connections, and those whose
        // last look found them clear: a table read while sockets come and
        // go may skip one, so it takes two clear looks in a row. The second
        // follows the first at once: it is another read of the tables all
        // the same, and a poll interval more would only add to the drain.
        let mut by_connections = HashSet::new();
        let mut clear_once = HashSet::new();
        loop {
            let asked = Instant::now();
            let mut still = Vec::new();
            let mut looked = false;
            let mut confirm = false;
            for (index, procs) in left {
                let mode = match &removed {
                    Some(_) => self.mode(index, &procs).await,
                    None => Mode::Exit(String::new()),
                };
                let seen = match (&mode, &removed) {
                    (Mode::Connections(user), Some(ips)) => {
                        self.look(index, user, &procs, ips).await
                    }
                    _ => None,
                };
                let running = match seen {
                    Some(held) => {
                        looked = true;
                        by_connections.insert(index);
                        match (held.is_empty(), clear_once.insert(index)) {
                            (true, true) => {
                                confirm = true;
                                procs
                            }
                            (true, false) => held,
                            (false, _) => {
                                clear_once.remove(&index);
                                held
                            }
                        }
                    }
                    None => {
                        by_connections.remove(&index);
                        self.wait_exit(index, procs, deadline).await?
                    }
                };
                if !running.is_empty() {
                    still.push((index, running));
                }
            }
            left = still;
            if left.is_empty() || Instant::now() >= deadline {
                break;
            }
            // After a replica's first clear look, the second one comes at once.
            if looked && !confirm {
                tokio::time::sleep(self.options.poll_interval).await;
            } else if !looked && asked.elapsed() < Duration::from_millis(100) {
                // A proxy that could not wait in place answered at once.
                tokio::time::sleep(self.options.poll_interval.max(Duration::from_millis(100)))
                    .await;
            }
        }
        // Each worker of a replica drained by its connections is named so.
        let waited_for = waited_for
            .into_iter()
            .map(|(index, label)| match by_connections.contains(&index) {
                true => format!("{label}, clear of the removed instance(s) by its connections"),
                false => label,
            })
            .collect();
        let cut: Vec<String> = left
            .iter()
            .flat_map(|(index, procs)| procs.iter().map(move |p| label(*index, p)))
            .collect();
        // Drained for good once the workers are gone. One drained by their
        // connections stays: a strategy may drain the change's other
        // removed instances under the same generation. A timed-out ticket
        // stays too, to be waited on again.
        if cut.is_empty() && by_connections.is_empty() {
            let mut state = self.state.lock().await;
            state.pending.remove(&ticket.generation);
            state.by_instance.remove(&ticket.generation);
        }
        Ok(DrainReport {
            waited_for,
            elapsed: started.elapsed(),
            timed_out: !cut.is_empty(),
            cut,
        })
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
        argv.extend(procs.iter().map(Proc::arg));
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
            .filter(|p| running.contains(p.arg().as_str()))
            .collect())
    }
}
