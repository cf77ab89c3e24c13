//! The record a rollout keeps of itself, so that a killed run can be finished.
//!
//! A strategy saves what a resumed run needs (the rollback target, the phase,
//! its own state) before it acts on it; the step under way is there for
//! people, and the built-in strategies save it in the background. After a
//! crash the next run reads the record, looks at what the backend and the
//! router actually hold, and converges: a rollout goes on toward `to`, an
//! interrupted rollback runs to its end. The record lives with the engine
//! (the Docker backend keeps it in labels or a volume), not on the client.

use crate::error::JournalError;
use crate::model::{Revision, ServiceRef};
use crate::router::{DrainTicket, RouteChange};
use async_trait::async_trait;
use serde::{Deserialize, Serialize};

/// Which way the rollout is going.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    /// Toward `to`.
    Updating,
    /// Back toward `from`, with the rollback config.
    RollingBack,
    /// Stopped by failure_action pause or an indefinite canary step; the next
    /// run continues toward `to`.
    Paused,
}

/// The operation a rollout is about to take.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "op")]
pub enum Step {
    /// Launch instances of a revision.
    Launch {
        /// The revision's id.
        revision: String,
        /// How many.
        count: usize,
    },
    /// Change the routes.
    Route {
        /// The change.
        change: RouteChange,
    },
    /// Wait for a drain.
    Drain {
        /// What is drained.
        ticket: DrainTicket,
    },
    /// Stop and remove instances.
    Retire {
        /// Their ids.
        instances: Vec<String>,
    },
    /// Anything a strategy needs to note (a canary step index).
    Note {
        /// Free-form, strategy-defined.
        detail: serde_json::Value,
    },
}

/// The whole record of one service's rollout.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JournalRecord {
    /// Unique per rollout.
    pub rollout_id: String,
    /// The service.
    pub service: ServiceRef,
    /// The strategy's name.
    pub strategy: String,
    /// The revision serving before the first attempt; the rollback target.
    pub from: Option<Revision>,
    /// The revision the rollout goes to.
    pub to: Revision,
    /// Which way it goes.
    pub phase: Phase,
    /// The step under way, or last taken (saved in the background: after a
    /// crash it may lag the steps parallel workers took; no resume reads it).
    pub step: Option<Step>,
    /// Strategy-defined state (which canary step, failures counted so far).
    #[serde(default)]
    pub state: serde_json::Value,
}

/// One finished rollout of a service, as `docker rollout history` lists it.
///
/// Written by the process that ran the rollout, once its outcome is known,
/// and kept with the engine beside the journal (the last few per service).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryEntry {
    /// The service.
    pub service: ServiceRef,
    /// The strategy's name.
    pub strategy: String,
    /// When it started, seconds since the Unix epoch.
    pub started: u64,
    /// When it ended, seconds since the Unix epoch.
    pub finished: u64,
    /// The revision that served before, when known.
    pub from: Option<Revision>,
    /// The revision it went to.
    pub to: Option<Revision>,
    /// How it ended.
    pub outcome: crate::event::Outcome,
    /// Traffic changes applied (one proxy reload each).
    pub steps: usize,
    /// Instances launched.
    pub launched: usize,
    /// Instances removed.
    pub removed: usize,
    /// The process's exit code.
    pub exit_code: i32,
    /// Run by `docker rollout undo`: back to the `from` of the last
    /// completed rollout, launched from its saved spec.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub undo: bool,
}

/// Stores journal records and the per-service lock.
#[async_trait]
pub trait Journal: Send + Sync {
    /// Takes the per-service lock for `holder` (`user@host pid 123`), or says
    /// who holds it and since when.
    async fn lock(&self, service: &ServiceRef, holder: &str) -> Result<(), JournalError>;

    /// Gives the lock back.
    async fn unlock(&self, service: &ServiceRef) -> Result<(), JournalError>;

    /// The record of an unfinished rollout of `service`, if any.
    async fn load(&self, service: &ServiceRef) -> Result<Option<JournalRecord>, JournalError>;

    /// Replaces the record.
    async fn save(&self, record: &JournalRecord) -> Result<(), JournalError>;

    /// Deletes the record: the rollout is over.
    async fn clear(&self, service: &ServiceRef) -> Result<(), JournalError>;
}

/// Who holds a lock, as its record says: `USER@HOST pid N started T boot B`
/// (`started` and `boot` are left out when unknown; an older record has
/// neither). The start time (clock ticks after boot, `/proc/PID/stat`) and
/// the boot id (`/proc/sys/kernel/random/boot_id`) are what can prove the
/// holder dead: a pid alone may have been reused, a host name alone may be
/// another machine's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    /// The user who ran it.
    pub user: String,
    /// The kernel's host name where it ran.
    pub host: String,
    /// Its process id.
    pub pid: u32,
    /// When that process started, in clock ticks after boot.
    pub start: Option<u64>,
    /// The boot id of its machine.
    pub boot: Option<String>,
}

/// What can be said of a lock's holder from where the question is asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Liveness {
    /// Proven gone: same host and boot, and its pid is gone or belongs to a
    /// process started at another time.
    Dead,
    /// Proven running: same host and boot, same pid and start time.
    Alive,
    /// Nothing proven: another machine, another boot, or a record without
    /// what it takes.
    Unknown,
}

impl Holder {
    /// Reads a holder as [`Display`](std::fmt::Display) writes it; `None`
    /// for anything else (a holder string of another writer).
    pub fn parse(text: &str) -> Option<Holder> {
        let (user_host, rest) = text.split_once(" pid ")?;
        let (user, host) = user_host.split_once('@')?;
        let mut words = rest.split_whitespace();
        let pid = words.next()?.parse().ok()?;
        let (mut start, mut boot) = (None, None);
        while let Some(key) = words.next() {
            let value = words.next()?;
            match key {
                "started" => start = Some(value.parse().ok()?),
                "boot" => boot = Some(value.to_string()),
                _ => return None,
            }
        }
        (!host.is_empty()).then(|| Holder {
            user: user.to_string(),
            host: host.to_string(),
            pid,
            start,
            boot,
        })
    }

    /// Judges this holder from `here` (the process asking, as
    /// [`Holder`]), given `start_of_pid`: the start time of the process
    /// with this holder's pid on the asking machine now, `None` when no
    /// process has that pid. Only the same host and the same boot id let
    /// anything be proven.
    pub fn liveness(&self, here: &Holder, start_of_pid: Option<u64>) -> Liveness {
        let same_boot = matches!((&self.boot, &here.boot), (Some(a), Some(b)) if a == b);
        if self.host != here.host || !same_boot {
            return Liveness::Unknown;
        }
        match (start_of_pid, self.start) {
            (None, _) => Liveness::Dead,
            (Some(now), Some(then)) if now != then => Liveness::Dead,
            (Some(_), Some(_)) => Liveness::Alive,
            // A process with that pid runs, and the record has no start
            // time to tell whether it is the same one.
            (Some(_), None) => Liveness::Unknown,
        }
    }
}

impl std::fmt::Display for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}@{} pid {}", self.user, self.host, self.pid)?;
        if let Some(start) = self.start {
            write!(f, " started {start}")?;
        }
        if let Some(boot) = &self.boot {
            write!(f, " boot {boot}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn holder(host: &str, pid: u32, start: Option<u64>, boot: Option<&str>) -> Holder {
        Holder {
            user: "ann".into(),
            host: host.into(),
            pid,
            start,
            boot: boot.map(str::to_string),
        }
    }

    #[test]
    fn a_holder_reads_back_as_written() {
        let h = holder("build-7", 4711, Some(123456), Some("0b1c-2d"));
        assert_eq!(
            h.to_string(),
            "ann@build-7 pid 4711 started 123456 boot 0b1c-2d"
        );
        assert_eq!(Holder::parse(&h.to_string()), Some(h));
        // An older record: user, host and pid only.
        let old = Holder::parse("bob@box pid 7").unwrap();
        assert_eq!((old.pid, old.start, old.boot), (7, None, None));
        assert_eq!(Holder::parse("custom-strategy pid 7"), None);
        assert_eq!(Holder::parse("ann@box pid x"), None);
        assert_eq!(Holder::parse("ann@box pid 7 colour red"), None);
    }

    #[test]
    fn only_the_same_host_and_boot_can_prove_a_holder_dead() {
        let here = holder("build-7", 1, Some(1), Some("boot-a"));
        let held = holder("build-7", 4711, Some(500), Some("boot-a"));
        assert_eq!(held.liveness(&here, None), Liveness::Dead);
        assert_eq!(
            held.liveness(&here, Some(900)),
            Liveness::Dead,
            "pid reused"
        );
        assert_eq!(held.liveness(&here, Some(500)), Liveness::Alive);
        let elsewhere = holder("other", 4711, Some(500), Some("boot-a"));
        assert_eq!(elsewhere.liveness(&here, None), Liveness::Unknown);
        let rebooted = holder("build-7", 4711, Some(500), Some("boot-b"));
        assert_eq!(rebooted.liveness(&here, None), Liveness::Unknown);
        let old = holder("build-7", 4711, None, None);
        assert_eq!(old.liveness(&here, None), Liveness::Unknown);
        let no_start = holder("build-7", 4711, None, Some("boot-a"));
        assert_eq!(no_start.liveness(&here, Some(3)), Liveness::Unknown);
        assert_eq!(no_start.liveness(&here, None), Liveness::Dead);
    }
}
