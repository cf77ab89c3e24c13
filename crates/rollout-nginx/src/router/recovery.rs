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

use super::{
    read_live, unreachable, NginxRouter, NginxRouterOptions, NEXT_SUFFIX, PREVIOUS_SUFFIX,
};
use crate::proxy::{Proxy, ProxyError};
use rollout_core::error::RouterError;

/// What [`recover_files`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Recovery {
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

/// Finishes, in the files of every proxy, what a commit cut by a crash left
/// (see [`recover_files`]); returns the replicas that had a journal, to be
/// reloaded and cleaned by [`NginxRouter::finish_recovery`] once the router
/// is open.
pub(super) async fn recover_all(
    options: &NginxRouterOptions,
    proxies: &[Proxy],
) -> Result<Vec<(usize, Recovery)>, RouterError> {
    let mut to_reload = Vec::new();
    for (index, proxy) in proxies.iter().enumerate() {
        let found = recover_files(options, proxy).await?;
        if found != Recovery::Clean {
            to_reload.push((index, found));
        }
    }
    Ok(to_reload)
}

impl NginxRouter {
    /// Reloads each replica that had a journal, says so in
    /// [`recovered`](Self::recovered), and removes the journal.
    pub(super) async fn finish_recovery(
        &mut self,
        to_reload: Vec<(usize, Recovery)>,
    ) -> Result<(), RouterError> {
        // Which config a master runs is unknown after a cut commit (a
        // replica may have taken it, another not): reload each replica
        // that had a journal, with the file now known good.
        let touched: Vec<usize> = to_reload.iter().map(|(index, _)| *index).collect();
        for (index, found) in to_reload {
            let replica = &self.replicas[index];
            let (name, path) = (&replica.proxy.name, self.options.live_path());
            let what = match found {
                Recovery::Restored => format!(
                    "{path} was cut by an interrupted write; its previous bytes were put back"
                ),
                Recovery::Written => format!("an interrupted change was written whole to {path}"),
                _ => format!("an interrupted change had left {path} as it was"),
            };
            if let Err(e) = self.reload(replica).await {
                return Err(RouterError::Reload(format!(
                    "{name}: {what}, and reloading it failed: {e}"
                )));
            }
            self.recovered
                .push(format!("{name}: {what}, and nginx was reloaded with it"));
        }
        let (journal_previous, journal_next) = journal_paths(self.options.live_path());
        for index in touched {
            let files = &self.replicas[index].proxy.files;
            // The previous bytes first: a lone `next` means nothing.
            files.remove(&journal_previous).await.map_err(unreachable)?;
            files.remove(&journal_next).await.map_err(unreachable)?;
        }
        Ok(())
    }

    /// Removes the journal of a commit whose replicas are all known good.
    pub(super) async fn forget_journal(&self, commits: &[(usize, Vec<u8>, Vec<u8>)]) {
        let (journal_previous, journal_next) = journal_paths(self.options.live_path());
        for (index, _, _) in commits {
            let files = &self.replicas[*index].proxy.files;
            // What is left over is found by the next `open`, which sees a
            // live file equal to one of the two and only reloads.
            let _ = files.remove_all(&[&journal_previous, &journal_next]).await;
        }
    }
}

/// The journal of a commit: the previous bytes and the new ones, beside the
/// live file.
pub(super) fn journal_paths(live: &str) -> (String, String) {
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

#[cfg(test)]
mod tests {
    use super::*;
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
