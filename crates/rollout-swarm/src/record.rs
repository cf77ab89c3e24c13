//! A swarm rollout's lock and journal, kept with the swarm: the standby service's labels.
//!
//! The standby (`STACK_S--standby`) exists from the run's first change to its last, so it is
//! where the run keeps what a rerun needs, visible from any manager:
//!
//! - **The lock.** Creating the standby is the test-and-set (Swarm refuses a second service of
//!   the name). Its holder label says who runs the rollout, written as
//!   [`Holder`](rollout_core::journal::Holder) writes it; a run that ends with the standby left
//!   (Swarm paused, an error) takes the label off, which lets it go. A holder proven dead from
//!   here (same host and boot, its process gone) is taken over by updating the standby's labels
//!   at the version read: Swarm refuses an update at a stale version, so two reruns cannot both
//!   take it.
//! - **The journal.** What the run cannot read back once it has changed things: nginx's
//!   upstream it edits and its routes at rest (the servers before the standby took the
//!   traffic; mid-rollout the upstream names task addresses only), the ids of the home's
//!   tasks before Swarm's update (a task not among them is new, even when the image's tag is the
//!   same), and the image asked for.
//!
//! Service labels are not the tasks' labels: writing them restarts no task.

use rollout_core::router::Route;
use std::collections::{BTreeSet, HashMap};

/// The holder of the run (absent: no run holds it).
pub const HOLDER_LABEL: &str = "io.rollout.holder";
/// Since when (RFC 3339).
pub const SINCE_LABEL: &str = "io.rollout.since";
/// nginx's routes at rest, as JSON.
pub const AT_REST_LABEL: &str = "io.rollout.at-rest";
/// The ids of the home's tasks before the update, comma-separated.
pub const HOME_BEFORE_LABEL: &str = "io.rollout.home-tasks-before";
/// The image the run updates the home to.
pub const IMAGE_LABEL: &str = "io.rollout.image";
/// nginx's upstream the run edits (mid-rollout it names task addresses, not the service).
pub const UPSTREAM_LABEL: &str = "io.rollout.upstream";

/// What a run keeps on its standby.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Who runs it; `None` once a run let it go.
    pub holder: Option<String>,
    /// Since when it is held.
    pub since: String,
    /// nginx's routes before the standby took the traffic.
    pub at_rest: Vec<Route>,
    /// The home's task ids before the update.
    pub home_before: BTreeSet<String>,
    /// The image asked for.
    pub image: String,
    /// nginx's upstream.
    pub upstream: String,
}

impl Record {
    /// Writes the record into `labels` (a holder of `None` takes the label off).
    pub fn write(&self, labels: &mut HashMap<String, String>) {
        match &self.holder {
            Some(h) => labels.insert(HOLDER_LABEL.into(), h.clone()),
            None => labels.remove(HOLDER_LABEL),
        };
        labels.insert(SINCE_LABEL.into(), self.since.clone());
        let at_rest = serde_json::to_string(&self.at_rest).unwrap_or_else(|_| "[]".into());
        labels.insert(AT_REST_LABEL.into(), at_rest);
        let before: Vec<&str> = self.home_before.iter().map(String::as_str).collect();
        labels.insert(HOME_BEFORE_LABEL.into(), before.join(","));
        labels.insert(IMAGE_LABEL.into(), self.image.clone());
        labels.insert(UPSTREAM_LABEL.into(), self.upstream.clone());
    }

    /// Reads a record from a standby's labels; the label that is missing or unreadable.
    pub fn read(labels: &HashMap<String, String>) -> Result<Record, String> {
        let get = |key: &str| {
            labels
                .get(key)
                .cloned()
                .ok_or_else(|| format!("no label {key}"))
        };
        let at_rest: Vec<Route> = serde_json::from_str(&get(AT_REST_LABEL)?)
            .map_err(|e| format!("label {AT_REST_LABEL}: {e}"))?;
        let home_before = get(HOME_BEFORE_LABEL)?
            .split(',')
            .filter(|id| !id.is_empty())
            .map(str::to_string)
            .collect();
        Ok(Record {
            holder: labels.get(HOLDER_LABEL).cloned(),
            since: get(SINCE_LABEL)?,
            at_rest,
            home_before,
            image: get(IMAGE_LABEL)?,
            upstream: get(UPSTREAM_LABEL)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rollout_core::router::Target;
    use rollout_core::InstanceId;

    fn record() -> Record {
        Record {
            holder: Some("ops@box pid 42".into()),
            since: "2026-12-06T08:00:00Z".into(),
            at_rest: vec![Route {
                target: Target::instance(InstanceId("app".into()), "app:8000"),
                weight: 1,
            }],
            home_before: ["t1".to_string(), "t2".to_string()].into(),
            image: "app:v2".into(),
            upstream: "backend".into(),
        }
    }

    #[test]
    fn a_record_reads_back_as_written_beside_other_labels() {
        let mut labels = HashMap::from([("com.docker.stack.namespace".into(), "shop".into())]);
        record().write(&mut labels);
        assert_eq!(Record::read(&labels).unwrap(), record());
        assert_eq!(labels["com.docker.stack.namespace"], "shop");
    }

    #[test]
    fn letting_go_takes_the_holder_off_and_keeps_the_journal() {
        let mut labels = HashMap::new();
        record().write(&mut labels);
        let released = Record {
            holder: None,
            ..record()
        };
        released.write(&mut labels);
        assert!(!labels.contains_key(HOLDER_LABEL));
        assert_eq!(Record::read(&labels).unwrap(), released);
    }

    #[test]
    fn a_standby_without_a_journal_says_which_label_is_missing() {
        let mut labels = HashMap::new();
        record().write(&mut labels);
        labels.remove(AT_REST_LABEL);
        assert_eq!(
            Record::read(&labels).unwrap_err(),
            format!("no label {AT_REST_LABEL}")
        );
        labels.insert(AT_REST_LABEL.into(), "{".into());
        assert!(Record::read(&labels).unwrap_err().contains(AT_REST_LABEL));
    }
}
