//! Crash recovery: the commit's journal beside the live file, and what
//! [`NginxRouter::open`] repairs after a run killed during a commit.
//!
//! Writing the live file in place cannot be atomic, so every commit first
//! saves the previous and the new bytes beside it (see "A run killed during
//! a commit" in the router's documentation). This room names those files,
//! reads them back when a router opens (a torn live file gets its previous
//! bytes back), reloads each replica that had a journal, and removes the
//! journal, also once a commit is known good. It is a room of its own
//! because it runs at another time than the rest: once, before the router
//! is ready, on files a process that is gone left behind.

use super::commit::refusal;
use super::{
    edit, read_live, unreachable, NginxRouter, NginxRouterOptions, CANDIDATE_SUFFIX, NEXT_SUFFIX,
    PREVIOUS_SUFFIX, SET_ASIDE_SUFFIX,
};
use crate::proxy::{Proxy, ProxyError};
use rollout_core::error::RouterError;

/// What [`recover_files`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Recovery {
    /// A commit was under way, and the live file holds the previous bytes.
    Unchanged,
    /// The live file was torn; its previous bytes are back.
    Restored,
    /// The live file holds the whole validated change, which may not have
    /// been reloaded.
    Written,
    /// A person changed the file since: it is left alone, `nginx -t`
    /// accepts it, and the journal was moved aside. The words say which
    /// upstream lines differ from what the killed run wrote.
    HandEdited(String),
}

/// What recovery found in one proxy: each journal's verdict, and the
/// journal files to remove once the replica is reloaded.
#[derive(Debug, Default)]
pub(super) struct Found {
    verdicts: Vec<Recovery>,
    journals: Vec<String>,
    /// The tags of the journals kept in the proxy's [`JournalStore`](crate::proxy::JournalStore).
    kept: Vec<String>,
}

/// Finishes, in the files of every proxy, what a commit cut by a crash left
/// (see [`recover_files`]); returns what each replica that had a journal
/// needs, for [`NginxRouter::finish_recovery`] once the router is open.
/// Runs under the proxy lock: every journal found belongs to a run that
/// is gone (a run writes one only while it holds the lock, and removes it
/// before giving the lock back).
pub(super) async fn recover_all(
    options: &NginxRouterOptions,
    proxies: &[Proxy],
) -> Result<Vec<(usize, Found)>, RouterError> {
    let mut found_all = Vec::new();
    for (index, proxy) in proxies.iter().enumerate() {
        let found = recover_files(options, proxy).await?;
        if !found.verdicts.is_empty() {
            found_all.push((index, found));
        }
    }
    Ok(found_all)
}

impl NginxRouter {
    /// Reloads each replica whose journal it repaired or kept, says so in
    /// [`recovered`](Self::recovered) (with a warning for a person's edit,
    /// which is neither reloaded nor touched), and removes the journal.
    pub(super) async fn finish_recovery(
        &mut self,
        found: Vec<(usize, Found)>,
    ) -> Result<(), RouterError> {
        let path = self.options.live_path().to_string();
        for (index, found) in found {
            let name = self.replicas[index].proxy.name.clone();
            let mut reload = None;
            for verdict in &found.verdicts {
                let what = match verdict {
                    Recovery::Restored => format!(
                        "{path} was cut by an interrupted write; its previous bytes were put back"
                    ),
                    Recovery::Written => {
                        format!("an interrupted change was written whole to {path}")
                    }
                    Recovery::Unchanged => {
                        format!("an interrupted change had left {path} as it was")
                    }
                    Recovery::HandEdited(words) => {
                        self.recovered.push(format!("{name}: warning: {words}"));
                        continue;
                    }
                };
                reload = Some(what);
            }
            // Which config a master runs is unknown after a cut commit (a
            // replica may have taken it, another not): reload each replica
            // that had a journal, with the file now known good.
            if let Some(what) = reload {
                let replica = &self.replicas[index];
                if let Err(e) = self.reload(replica).await {
                    return Err(RouterError::Reload(format!(
                        "{name}: {what}, and reloading it failed: {e}"
                    )));
                }
                self.recovered
                    .push(format!("{name}: {what}, and nginx was reloaded with it"));
            }
            let proxy = &self.replicas[index].proxy;
            // The previous bytes first: a lone `next` means nothing.
            for journal in &found.journals {
                proxy.files.remove(journal).await.map_err(unreachable)?;
            }
            if let Some(store) = &proxy.journal {
                for tag in &found.kept {
                    store.remove(&path, tag).await.map_err(unreachable)?;
                }
            }
        }
        Ok(())
    }

    /// Removes the journal of a commit whose replicas are all known good.
    pub(super) async fn forget_journal(&self, commits: &[(usize, Vec<u8>, Vec<u8>)]) {
        for (index, _, _) in commits {
            let proxy = &self.replicas[*index].proxy;
            if let Some(store) = &proxy.journal {
                let _ = store.remove(self.options.live_path(), &self.tag).await;
                continue;
            }
            let files = &proxy.files;
            // What is left over is found by the next `open`, which sees a
            // live file equal to one of the two and only reloads.
            let _ = files
                .remove_all(&[&self.names.previous, &self.names.next])
                .await;
        }
    }
}

/// Lists the regular files whose names start with `$1`, one a line (the
/// journals or candidates of every run, whatever its tag: `$1` is quoted,
/// only `*` is a pattern).
const JOURNALS_SCRIPT: &str =
    r#"for f in "$1"*; do [ -f "$f" ] && printf '%s\n' "$f"; done; exit 0"#;

/// Whether `live` is what an interrupted in-place write of `next` over
/// `previous` can leave: the first bytes of `next`, then the rest of
/// `previous` from there (the writer writes from the start and sets the
/// length last). `previous` and `next` themselves are such files too.
pub fn torn(live: &[u8], previous: &[u8], next: &[u8]) -> bool {
    if live.len() < previous.len() {
        // The length is set last: a write never shortens the file early.
        return false;
    }
    if live.len() > previous.len() {
        // Past the previous end only new bytes can be.
        return next.starts_with(live);
    }
    let common = live.iter().zip(next).take_while(|(a, b)| a == b).count();
    live[common..] == previous[common..]
}

/// The `server` lines of the upstream that differ between what a killed run
/// wrote (`next`) and what the file holds now, for a person to read.
fn differing_lines(live: &[u8], next: &[u8], path: &str, upstream: &str) -> String {
    let show = |bytes: &[u8]| -> Result<Vec<String>, RouterError> {
        Ok(edit::servers(bytes, path, upstream)?
            .into_iter()
            .map(|s| {
                let mut line = format!("server {}", s.host);
                if let Some(port) = s.port {
                    line.push_str(&format!(":{port}"));
                }
                if s.weight != 1 {
                    line.push_str(&format!(" weight={}", s.weight));
                }
                if s.down {
                    line.push_str(" down");
                }
                line
            })
            .collect())
    };
    let (now, wrote) = match (show(live), show(next)) {
        (Ok(now), Ok(wrote)) => (now, wrote),
        (Err(e), _) | (_, Err(e)) => {
            return format!("\n  (the upstream \"{upstream}\" cannot be compared: {e})")
        }
    };
    let mut out = String::new();
    for line in wrote.iter().filter(|l| !now.contains(l)) {
        out.push_str(&format!("\n  - {line};   (written by the interrupted run)"));
    }
    for line in now.iter().filter(|l| !wrote.contains(l)) {
        out.push_str(&format!("\n  + {line};   (in the file now)"));
    }
    if out.is_empty() {
        out = format!("\n  (upstream \"{upstream}\" is the same; the edit is elsewhere)");
    }
    out
}

/// Finishes, in the files, what a commit cut by a crash left (every journal
/// beside the live file, whichever run wrote it):
/// - a live file equal to the previous bytes, or the new ones, is kept;
/// - a live file that an interrupted write can have left ([`torn`]) gets
///   the previous bytes back (no master loaded it: a reload comes only
///   after a complete write);
/// - anything else is a person's edit made since: it is left alone, the
///   journal is moved aside with a time stamp, and the router goes on if
///   `nginx -t` accepts the file (a refusal is [`RouterError::Invalid`]
///   with nginx's words).
///
/// The caller reloads, then removes the journal (replicas may share one
/// file, and so one journal).
async fn recover_files(options: &NginxRouterOptions, proxy: &Proxy) -> Result<Found, RouterError> {
    remove_candidates(options, proxy).await?;
    let path = options.live_path();
    let stem = format!("{path}{PREVIOUS_SUFFIX}");
    let journals = list_beside(proxy, &stem).await?;
    let mut found = Found::default();
    for journal_previous in journals {
        let tag = &journal_previous[stem.len()..];
        let journal_next = format!("{path}{NEXT_SUFFIX}{tag}");
        let previous = match read_if_there(proxy, &journal_previous).await? {
            Some(bytes) => bytes,
            // No previous bytes: no commit under way (they are written
            // first and removed first), whatever `next` says.
            None => continue,
        };
        let next = read_if_there(proxy, &journal_next).await?;
        match judge(options, proxy, &previous, next.as_deref()).await? {
            Recovery::HandEdited(words) => {
                set_aside(proxy, path, &journal_previous, &journal_next).await?;
                found.verdicts.push(Recovery::HandEdited(words));
            }
            verdict => {
                found.verdicts.push(verdict);
                found.journals.push(journal_previous);
                found.journals.push(journal_next);
            }
        }
    }
    if let Some(store) = &proxy.journal {
        for kept in store.list(path).await.map_err(unreachable)? {
            match judge(options, proxy, &kept.previous, Some(&kept.next)).await? {
                Recovery::HandEdited(words) => {
                    store
                        .set_aside(path, &kept.tag, now_stamp())
                        .await
                        .map_err(unreachable)?;
                    found.verdicts.push(Recovery::HandEdited(words));
                }
                verdict => {
                    found.verdicts.push(verdict);
                    found.kept.push(kept.tag);
                }
            }
        }
    }
    Ok(found)
}

/// What one journal says of the live file now, the torn file already
/// repaired (see [`recover_files`]).
async fn judge(
    options: &NginxRouterOptions,
    proxy: &Proxy,
    previous: &[u8],
    next: Option<&[u8]>,
) -> Result<Recovery, RouterError> {
    let path = options.live_path();
    let live = read_live(proxy, path).await?;
    Ok(if live == previous {
        Recovery::Unchanged
    } else if next == Some(&live[..]) {
        Recovery::Written
    } else if next.is_some_and(|n| torn(&live, previous, n)) {
        proxy
            .files
            .write_in_place(path, previous)
            .await
            .map_err(unreachable)?;
        Recovery::Restored
    } else {
        Recovery::HandEdited(hand_edit(options, proxy, &live, next).await?)
    })
}

/// Seconds since the epoch, for the name of a journal set aside.
fn now_stamp() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Removes the candidate files a killed run left (beside the live file and
/// beside the main one). Recovery runs under the proxy lock and a run makes
/// a candidate only while it holds that lock, so every candidate found here
/// belongs to a run that is gone; nothing reads it again.
async fn remove_candidates(options: &NginxRouterOptions, proxy: &Proxy) -> Result<(), RouterError> {
    let mut stems = vec![format!("{}{CANDIDATE_SUFFIX}.", options.live_path())];
    let main = format!("{}{CANDIDATE_SUFFIX}.", options.config_path);
    if !stems.contains(&main) {
        stems.push(main);
    }
    let mut leftovers = Vec::new();
    for stem in &stems {
        leftovers.extend(list_beside(proxy, stem).await?);
    }
    if leftovers.is_empty() {
        return Ok(());
    }
    let leftovers: Vec<&str> = leftovers.iter().map(String::as_str).collect();
    proxy
        .files
        .remove_all(&leftovers)
        .await
        .map_err(unreachable)
}

/// The regular files in the proxy whose paths start with `stem`, sorted.
async fn list_beside(proxy: &Proxy, stem: &str) -> Result<Vec<String>, RouterError> {
    let argv: Vec<String> = ["sh", "-c", JOURNALS_SCRIPT, "sh", stem]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let listed = proxy.exec.exec(&argv).await.map_err(unreachable)?;
    if !listed.success() {
        return Err(RouterError::Unreachable(format!(
            "cannot list the files {stem}* in {}: {}",
            proxy.name,
            listed.message()
        )));
    }
    let mut found: Vec<String> = String::from_utf8_lossy(&listed.stdout)
        .lines()
        .filter(|l| l.starts_with(stem))
        .map(str::to_string)
        .collect();
    found.sort();
    Ok(found)
}

/// Checks a file a person edited after a run was killed: `nginx -t` must
/// accept the config as it is (else [`RouterError::Invalid`] with nginx's
/// words), and the words of the warning say which upstream lines differ.
async fn hand_edit(
    options: &NginxRouterOptions,
    proxy: &Proxy,
    live: &[u8],
    next: Option<&[u8]>,
) -> Result<String, RouterError> {
    let path = options.live_path();
    let main = &options.config_path;
    let argv = proxy.nginx_argv(&options.nginx, &["-t", "-q", "-c", main]);
    let tested = proxy.exec.exec(&argv).await.map_err(unreachable)?;
    if !tested.success() {
        return Err(refusal(&tested, &[], path, &proxy.name));
    }
    let lines = match next {
        Some(next) => differing_lines(live, next, path, &options.upstream),
        None => String::new(),
    };
    Ok(format!(
        "{path} was changed by someone after an interrupted rollout; it is left as it is (nginx -t accepts it) and the rollout's journal was set aside{lines}"
    ))
}

/// Moves a journal aside under a time-stamped name, so that no later
/// recovery reads it again and a person can still look at it.
async fn set_aside(
    proxy: &Proxy,
    path: &str,
    previous: &str,
    next: &str,
) -> Result<(), RouterError> {
    let stamp = now_stamp();
    let aside = format!("{path}{SET_ASIDE_SUFFIX}.{stamp}");
    // `next` may be absent; `previous` is there.
    let argv: Vec<String> = [
        "sh",
        "-c",
        r#"mv -f -- "$1" "$3.previous" && { [ ! -e "$2" ] || mv -f -- "$2" "$3.next"; }"#,
        "sh",
        previous,
        next,
        &aside,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let moved = proxy.exec.exec(&argv).await.map_err(unreachable)?;
    if !moved.success() {
        return Err(RouterError::Unreachable(format!(
            "cannot move the journal {previous} aside in {}: {}",
            proxy.name,
            moved.message()
        )));
    }
    Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_what_an_interrupted_write_leaves_is_torn() {
        let previous = b"upstream a { server app:8000; }\n";
        let next = b"upstream a { server app-1:8000; server app-2:8000; }\n";
        for k in 0..=next.len() {
            let mut live = next[..k].to_vec();
            if k < previous.len() {
                live.extend_from_slice(&previous[k..]);
            }
            assert!(torn(&live, previous, next), "cut at {k}");
        }
        // Shorter new bytes, written whole but not yet cut to length.
        let short = b"upstream a { }\n";
        let mut live = short.to_vec();
        live.extend_from_slice(&previous[short.len()..]);
        assert!(torn(&live, previous, short));
        // A person's edits: none of these.
        assert!(!torn(b"upstream a { server app:9000; }\n", previous, next));
        assert!(!torn(&next[..5], previous, next));
        let mut appended = previous.to_vec();
        appended.extend_from_slice(b"# note\n");
        assert!(!torn(&appended, previous, next));
    }

    #[test]
    fn a_hand_edit_is_told_by_its_upstream_lines() {
        let next = b"upstream backend { server app-1:8000; server app-2:8000; }\n";
        let live = b"upstream backend { server app-1:8000; server extra:9000 weight=2; }\n";
        let words = differing_lines(live, next, "/n.conf", "backend");
        assert!(words.contains("- server app-2:8000;"), "{words}");
        assert!(words.contains("+ server extra:9000 weight=2;"), "{words}");
        assert!(!words.contains("app-1"), "{words}");
    }
    use crate::proxy::ExecOutput;
    use crate::router::canned::Canned;
    use async_trait::async_trait;

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
}
