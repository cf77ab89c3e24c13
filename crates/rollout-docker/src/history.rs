//! The history of a service's rollouts and the requests an operator sends
//! to a running one, kept with the engine.
//!
//! Both are never-started containers ([`crate::keeper`]), found by label
//! from any client of the engine, like the journal:
//!
//! - an entry of the history is `rollout-history.PROJECT.SERVICE.SEQ`, its
//!   [`HistoryEntry`] as JSON in a label; the process that ran the rollout
//!   writes it at the end, and only the last [`KEEP`] stay;
//! - a request is `rollout-request.PROJECT.SERVICE` (one at a time; its
//!   creation under that name is atomic), with what is asked (`abort`) in a
//!   label. The rollout that runs polls for it and takes it (removes it)
//!   when it acts on it.

use crate::engine::Engine;
use crate::keeper::{self, Created, KEEPER_IMAGE};
use crate::labels;
use rollout_core::journal::HistoryEntry;
use rollout_core::{BackendError, ServiceRef};

/// How many entries of a service's history are kept.
pub const KEEP: usize = 20;

const HISTORY: &str = "history";
const REQUEST: &str = "request";
/// The label with the sequence number of an entry.
const SEQ: &str = "io.rollout.seq";
/// The label with what a request asks.
const ASK: &str = "io.rollout.ask";

/// Appends `entry` to its service's history and drops the entries past
/// [`KEEP`].
pub async fn append(engine: &Engine, entry: &HistoryEntry) -> Result<(), BackendError> {
    let service = &entry.service;
    let json =
        serde_json::to_string(entry).map_err(|e| BackendError::Other(format!("{service}: {e}")))?;
    let mut seq = entries(engine, service)
        .await?
        .first()
        .map_or(1, |(seq, _, _)| seq + 1);
    // Two rollouts of one service never end at once (the lock); a name
    // taken anyway moves on to the next number.
    for _ in 0..5 {
        let mut l = keeper::base_labels(
            HISTORY,
            &service.project,
            &service.service,
            &Default::default(),
        );
        l.insert(SEQ.into(), seq.to_string());
        l.insert(labels::RECORD.into(), json.clone());
        let name = format!(
            "rollout-history.{}.{}.{seq}",
            service.project, service.service
        );
        match keeper::create(engine, &name, KEEPER_IMAGE, l, vec![]).await? {
            Created::Ours => break,
            Created::Taken => seq += 1,
        }
    }
    for (_, id, _) in entries(engine, service).await?.into_iter().skip(KEEP) {
        keeper::remove(engine, &id).await?;
    }
    Ok(())
}

/// The history of `service`, newest first (an entry that does not parse,
/// from another version, is left out).
pub async fn list(
    engine: &Engine,
    service: &ServiceRef,
) -> Result<Vec<HistoryEntry>, BackendError> {
    Ok(entries(engine, service)
        .await?
        .into_iter()
        .filter_map(|(_, _, json)| serde_json::from_str(&json?).ok())
        .collect())
}

/// The sequence number of `service`'s newest entry (0 with none), to tell
/// later the entries written since.
pub async fn newest(engine: &Engine, service: &ServiceRef) -> Result<u64, BackendError> {
    Ok(entries(engine, service).await?.first().map_or(0, |e| e.0))
}

/// The newest entry of `service` written after the one numbered `seq` (see
/// [`newest`]), if one was (that parses).
pub async fn since(
    engine: &Engine,
    service: &ServiceRef,
    seq: u64,
) -> Result<Option<HistoryEntry>, BackendError> {
    Ok(entries(engine, service)
        .await?
        .into_iter()
        .filter(|e| e.0 > seq)
        .find_map(|(_, _, json)| serde_json::from_str(&json?).ok()))
}

/// (sequence, container id, record) of each entry, newest first.
async fn entries(
    engine: &Engine,
    service: &ServiceRef,
) -> Result<Vec<(u64, String, Option<String>)>, BackendError> {
    let found = keeper::list(engine, HISTORY, &service.project, &service.service).await?;
    let mut all: Vec<(u64, String, Option<String>)> = found
        .into_iter()
        .filter_map(|c| {
            let l = c.labels.unwrap_or_default();
            let seq = l.get(SEQ)?.parse().ok()?;
            Some((seq, c.id?, l.get(labels::RECORD).cloned()))
        })
        .collect();
    all.sort_by_key(|e| std::cmp::Reverse(e.0));
    Ok(all)
}

/// Removes every entry of `service`'s history (a test's clean-up, or a
/// person's).
pub async fn forget(engine: &Engine, service: &ServiceRef) -> Result<(), BackendError> {
    for (_, id, _) in entries(engine, service).await? {
        keeper::remove(engine, &id).await?;
    }
    Ok(())
}

fn request_name(service: &ServiceRef) -> String {
    format!("rollout-request.{}.{}", service.project, service.service)
}

/// Leaves the request `ask` (`abort`) for the rollout of `service`; `false`
/// when a request is there already (it is left as it is).
pub async fn request(
    engine: &Engine,
    service: &ServiceRef,
    ask: &str,
) -> Result<bool, BackendError> {
    let mut l = keeper::base_labels(
        REQUEST,
        &service.project,
        &service.service,
        &Default::default(),
    );
    l.insert(ASK.into(), ask.into());
    Ok(matches!(
        keeper::create(engine, &request_name(service), KEEPER_IMAGE, l, vec![]).await?,
        Created::Ours
    ))
}

/// The request waiting for the rollout of `service`, if any.
pub async fn pending(
    engine: &Engine,
    service: &ServiceRef,
) -> Result<Option<String>, BackendError> {
    let found = keeper::list(engine, REQUEST, &service.project, &service.service).await?;
    Ok(found
        .into_iter()
        .find_map(|c| c.labels.unwrap_or_default().get(ASK).cloned()))
}

/// Takes (removes) the request of `service`: it is being acted on, or it
/// is withdrawn.
pub async fn take_request(engine: &Engine, service: &ServiceRef) -> Result<(), BackendError> {
    keeper::remove(engine, &request_name(service)).await
}
