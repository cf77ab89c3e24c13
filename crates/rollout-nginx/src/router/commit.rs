//! One change in two phases: prepare every replica (edit, upload the
//! candidate with the commit's journal, `nginx -t`), then commit each in turn
//! (write in place, reload, check), putting back every replica already done
//! when one fails.
//!
//! This is [`TrafficRouter::apply`](rollout_core::router::TrafficRouter::apply)
//! for nginx (see "One change, step by step" in the router's documentation).
//! It is a room of its own because it is the router's protocol for changing
//! a live config, and the place where a failure's message is put together:
//! what nginx refused, what was put back, what could not be.

use super::procs::{took, Proc};
use super::{edit, read_live, unreachable, NginxRouter, Replica, WaitSet};
use crate::proxy::{ExecOutput, ProxyError};
use rollout_core::error::RouterError;
use rollout_core::router::{DrainTicket, RouteChange, Target};

/// How many applied changes keep their worker sets for a later drain.
const KEPT_TICKETS: usize = 64;

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

impl NginxRouter {
    /// [`TrafficRouter::apply`](rollout_core::router::TrafficRouter::apply):
    /// prepares every replica, then commits each; see the module
    /// documentation.
    pub(super) async fn apply_change(
        &self,
        change: &RouteChange,
    ) -> Result<DrainTicket, RouterError> {
        let mut state = self.state.lock().await;
        // Phase 1: every replica validates its candidate, nothing written.
        // Each one that will change also holds the commit's journal then.
        let mut commits: Vec<(usize, Vec<u8>, Vec<u8>)> = Vec::new();
        // Whether the tool's access log comes or goes with this change:
        // then every worker must run it before the change is done.
        let mut logging = false;
        for (index, replica) in self.replicas.iter().enumerate() {
            match self.prepare(replica, change).await {
                Ok((live, Some(next), logs)) => {
                    logging |= logs;
                    commits.push((index, live, next));
                }
                Ok((_, None, _)) => {}
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
        // A journal kept in a store is removed there, after the reload.
        let single = [self.names.previous.as_str(), self.names.next.as_str()];
        let beside = |(index, _, _): &(usize, Vec<u8>, Vec<u8>)| {
            self.replicas[*index].proxy.journal.is_none()
        };
        let in_reload: &[&str] = if commits.len() == 1 && commits.iter().all(beside) {
            &single
        } else {
            &[]
        };
        let mut forgotten = !in_reload.is_empty();
        // A change that takes no server out is live once the new workers
        // run: nothing waits on the old ones being told to quit. Unless it
        // brings or takes away the tool's access log, whose judged window
        // must hold every request from the change on.
        let early = change.remove.is_empty() && !logging;
        for (index, live, next) in &commits {
            match self
                .commit(&self.replicas[*index], live, next, in_reload, early)
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
        // Drained per instance only while every server left names one
        // instance: a service name may resolve to the removed instance's
        // address, to which the new workers then connect too.
        let path = self.options.live_path();
        let by_instance = commits.iter().all(|(_, _, next)| {
            edit::servers(next, path, &self.options.upstream).is_ok_and(|servers| {
                servers.iter().all(|s| {
                    matches!(
                        super::target_of(&s.host, &self.options.services),
                        Target::Instance { .. }
                    )
                })
            })
        });
        if by_instance {
            state.by_instance.insert(generation);
        }
        state.pending.insert(generation, waits);
        while state.pending.len() > KEPT_TICKETS {
            if let Some((gone, _)) = state.pending.pop_first() {
                state.by_instance.remove(&gone);
            }
        }
        Ok(DrainTicket {
            generation,
            removed: change.remove.clone(),
        })
    }

    /// Edits, writes the candidate and validates it in one replica; returns
    /// the live bytes and the candidate's (`None` when nothing changes), and
    /// whether the tool's access log changes with it.
    async fn prepare(
        &self,
        replica: &Replica,
        change: &RouteChange,
    ) -> Result<(Vec<u8>, Option<Vec<u8>>, bool), RouterError> {
        let path = self.options.live_path();
        let live = read_live(&replica.proxy, path).await?;
        let routed = edit::apply(&live, path, &self.options.upstream, change, self.port)?;
        let edited = edit::metrics_log(
            &routed,
            path,
            &self.options.upstream,
            &self.options.services,
            self.metrics_log.as_ref(),
            self.keep_log.load(std::sync::atomic::Ordering::SeqCst),
        )?;
        if edited == live {
            return Ok((live, None, false));
        }
        let candidate = self.names.candidate.clone();
        let files = &replica.proxy.files;
        // With the upstream in an included file, nginx -t reads a candidate
        // main file beside the main one, which includes the candidate.
        let main = &self.options.config_path;
        let main_candidate = self.names.main_candidate.clone();
        let candidate_main = match &self.options.upstream_file {
            None => None,
            Some(_) => Some(self.candidate_main(replica, &candidate).await?),
        };
        // One upload brings the candidate (and the candidate main file) and,
        // without a journal store, the commit's journal, which must be in
        // every replica before any live file is written; one command tests
        // the candidate and removes it, and that journal too when nginx
        // refuses the candidate. A round trip to the proxy each is what an
        // apply costs.
        let (journal_previous, journal_next) = (&self.names.previous, &self.names.next);
        let tested_file = match &candidate_main {
            None => candidate.clone(),
            Some(_) => main_candidate.clone(),
        };
        let mut upload: Vec<(&str, &[u8])> = vec![(&candidate, &edited)];
        if let Some(bytes) = &candidate_main {
            upload.push((&main_candidate, bytes));
        }
        // A journal kept in a store is saved while the candidate is
        // uploaded and tested (and removed when nginx refuses it), still
        // before any live file is written.
        let store = replica.proxy.journal.as_ref();
        if store.is_none() {
            upload.push((journal_previous, &live));
            upload.push((journal_next, &edited));
        }
        let mut argv: Vec<String> = [
            "sh",
            "-c",
            TEST_SCRIPT,
            "sh",
            &candidate,
            &tested_file,
            journal_previous,
            journal_next,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        argv.extend(self.nginx_argv(replica, &["-t", "-q", "-c", &tested_file]));
        let renames = [(main_candidate.as_str(), main.as_str()), (&candidate, path)];
        let test = async {
            if let Err(e) = files.write_new_all(&upload).await {
                let all: Vec<&str> = upload.iter().map(|(p, _)| *p).collect();
                let _ = files.remove_all(&all).await;
                return Err(unreachable(e));
            }
            self.run(replica, &argv).await
        };
        // The store gets ready for the commit's write meanwhile (the
        // Docker backend starts its writer with a run's first change).
        let test = async {
            let (tested, _) = tokio::join!(test, files.ready(path));
            tested
        };
        let tested = match store {
            None => test.await?,
            Some(store) => {
                let save = store.save(path, &self.tag, &live, &edited);
                let (tested, saved) = tokio::join!(test, save);
                if matches!(&tested, Ok(out) if out.success()) {
                    saved.map_err(unreachable)?;
                } else if saved.is_ok() {
                    // A journal left by a failed removal holds the live
                    // bytes as its previous ones: the next open finds the
                    // file unchanged, reloads it and removes the journal.
                    // Until then it stands in the way of this run's next
                    // save, which the error says.
                    if let Err(e) = store.remove(path, &self.tag).await {
                        return Err(append(
                            match tested {
                                Ok(out) => refusal(&out, &renames, path, &replica.proxy.name),
                                Err(t) => t,
                            },
                            &format!(
                                "\nthe journal of the refused change could not be removed: {e}"
                            ),
                        ));
                    }
                }
                tested?
            }
        };
        if !tested.success() {
            return Err(refusal(&tested, &renames, path, &replica.proxy.name));
        }
        let logs = edited != routed;
        Ok((live, Some(edited), logs))
    }

    /// Writes `bytes` into the live file of one replica, reloads it and
    /// checks that the reload took (with `early`, for a change that takes
    /// no server out, as soon as the new workers run); returns the children
    /// before the reload.
    /// On failure the previous bytes are back in the file, unless the error
    /// says they could not be put back (`Failed::restored` false).
    async fn commit(
        &self,
        replica: &Replica,
        previous: &[u8],
        bytes: &[u8],
        journal: &[&str],
        early: bool,
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
        let reloaded = match self.signal_reload(replica, journal, early).await {
            Ok((table, true, removed)) => {
                before = Some(table);
                forgot = removed;
                Ok(())
            }
            Ok((table, false, removed)) => {
                let waited = self.await_reload(replica, &table, early).await;
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
                Ok(now) if took(before, &now, early) == Some(true) => {
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
}

/// A commit that failed, and whether the replica is back where it was.
struct Failed {
    restored: bool,
    error: RouterError,
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
pub(super) fn refusal(
    out: &ExecOutput,
    renames: &[(&str, &str)],
    live: &str,
    proxy: &str,
) -> RouterError {
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
