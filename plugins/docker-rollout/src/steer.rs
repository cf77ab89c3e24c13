//! `docker rollout pause|resume SERVICE`, and `promote` of a canary that
//! runs in another process: the operator steering a running rollout.
//!
//! They go the way `abort` goes: a request kept with the engine
//! (`rollout_docker::history::request`), which the running rollout polls
//! every half second (`verbs::listen`) and turns into its strategy's
//! steering ([`rollout_core::Steer`]). The verb then waits, up to
//! `--timeout`, for the rollout to say it acted, in the journal it keeps
//! with the engine: the state `paused` (rollout-strategies' `PAUSED`) set
//! when it holds and removed when it goes on, the canary's `step` moved on
//! after a promotion (`promote: "full"` after one in full). A rollout that
//! ends first is reported with its history entry.
//!
//! Refused before anything is asked (exit 2): no rollout of the service,
//! none running (a canary paused at an `until-promoted` step is paused
//! already: `promote` takes it on), a rollback (never held), `resume` of a
//! rollout not held, `promote` of one that is not a canary. A request the
//! rollout does not take in time is withdrawn (exit 7, nothing changed); a
//! pause it took but could not hold at yet (a rolling slot in flight) is
//! withdrawn by a resume (exit 7).

use crate::cli::{OutputFormat, VerbRequest};
use crate::fail::Fail;
use crate::verbs::{history_line, scene, Scene};
use rollout_core::journal::{Journal, JournalRecord, Liveness, Phase};
use rollout_core::{exit, ServiceRef, StrategyKind};
use rollout_docker::{history, DockerJournal, Engine};
use rollout_strategies::{PAUSED, PROMOTE};
use serde_json::{json, Value};
use std::io::Write;
use std::time::Duration;
use tokio::time::Instant;

/// What an operator asks of a running rollout, as the request kept with the
/// engine spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ask {
    /// Roll back (`docker rollout abort`).
    Abort,
    /// Hold at the next safe point.
    Pause,
    /// Go on after a pause.
    Resume,
    /// A canary's step on (`full`: to the last step).
    Promote {
        /// `--full`.
        full: bool,
    },
}

impl Ask {
    /// The request's word.
    pub fn word(self) -> &'static str {
        match self {
            Ask::Abort => "abort",
            Ask::Pause => "pause",
            Ask::Resume => "resume",
            Ask::Promote { full: false } => "promote",
            Ask::Promote { full: true } => "promote-full",
        }
    }

    /// The request of a word; `None` for one this version does not know.
    pub fn parse(word: &str) -> Option<Ask> {
        [
            Ask::Abort,
            Ask::Pause,
            Ask::Resume,
            Ask::Promote { full: false },
            Ask::Promote { full: true },
        ]
        .into_iter()
        .find(|a| a.word() == word)
    }
}

/// How long a request waits for another one, not yet taken, to go.
const QUEUE_WAIT: Duration = Duration::from_secs(10);
/// How often the journal is read while waiting.
const POLL: Duration = Duration::from_millis(500);

/// Leaves `ask` for the rollout of `service`. One request waits at a time:
/// another one not taken yet is waited for (the rollout takes one every
/// half second), then this one is refused (exit 7).
pub async fn send(engine: &Engine, service: &ServiceRef, ask: Ask) -> Result<(), Fail> {
    let start = Instant::now();
    loop {
        if history::request(engine, service, ask.word())
            .await
            .map_err(Fail::from)?
        {
            return Ok(());
        }
        if start.elapsed() >= QUEUE_WAIT {
            let waiting = history::pending(engine, service)
                .await
                .map_err(Fail::from)?
                .unwrap_or_default();
            return Err(Fail {
                code: exit::BUSY,
                message: format!(
                    "another request to the rollout of {service} ({waiting:?}) has waited {}s without being taken; nothing was asked",
                    QUEUE_WAIT.as_secs()
                ),
            });
        }
        tokio::time::sleep(POLL).await;
    }
}

/// The journal's record of a rollout run by a live process, or why there is
/// nothing to steer (exit 2).
async fn running(scene: &Scene, verb: &str) -> Result<JournalRecord, Fail> {
    let service = &scene.service;
    let name = &service.service;
    let journal = DockerJournal::new(scene.engine.clone());
    let record = journal.load(service).await?;
    let holder = journal.holder(service).await?;
    let here = rollout_strategies::lock_holder();
    let live = holder
        .as_ref()
        .is_some_and(|h| rollout_docker::lock::judge(&h.holder, &here) != Liveness::Dead);
    match record {
        None => Err(Fail::bad_input(format!(
            "nothing to {verb}: no rollout of {service} is under way\nhint: `docker rollout status {name}` shows where it stands"
        ))),
        Some(r) if !live && r.phase == Phase::Paused && r.strategy == "canary" => {
            Err(Fail::bad_input(format!(
                "nothing to {verb}: the canary of {service} to {} is paused at a step and no process runs it\nhint: `docker rollout promote {name}` takes it on, `docker rollout abort {name}` rolls it back",
                r.to.image
            )))
        }
        Some(r) if !live && r.phase == Phase::Paused => Err(Fail::bad_input(format!(
            "nothing to {verb}: the {} rollout of {service} to {} is paused and no process runs it\nhint: `docker rollout {name}` goes on, `docker rollout abort {name}` rolls it back",
            r.strategy, r.to.image
        ))),
        Some(r) if !live => Err(Fail::bad_input(format!(
            "nothing to {verb}: no process runs the rollout of {service} to {} (it was cut)\nhint: `docker rollout {name}` finishes it, `docker rollout abort {name}` rolls it back",
            r.to.image
        ))),
        Some(r) if r.phase == Phase::RollingBack => Err(Fail::bad_input(format!(
            "nothing to {verb}: the rollout of {service} is rolling back (a rollback is never held)"
        ))),
        Some(r) => Ok(r),
    }
}

/// What waiting for the rollout to act found.
enum Acted {
    /// The journal says it did.
    Yes(Box<JournalRecord>),
    /// The rollout ended first (its process gave the lock back).
    Ended,
    /// Not in time; whether the request was taken.
    Late { taken: bool },
}

/// Waits up to `timeout` for the journal of a running rollout to satisfy
/// `done`.
async fn acted(
    scene: &Scene,
    timeout: Duration,
    done: impl Fn(&JournalRecord) -> bool,
) -> Result<Acted, Fail> {
    let journal = DockerJournal::new(scene.engine.clone());
    let service = &scene.service;
    let start = Instant::now();
    loop {
        tokio::time::sleep(POLL).await;
        let record = journal.load(service).await?;
        if let Some(r) = record.filter(|r| done(r)) {
            return Ok(Acted::Yes(Box::new(r)));
        }
        if journal.holder(service).await?.is_none() {
            return Ok(Acted::Ended);
        }
        if start.elapsed() >= timeout {
            let taken = history::pending(&scene.engine, service)
                .await
                .map_err(Fail::from)?
                .is_none();
            return Ok(Acted::Late { taken });
        }
    }
}

/// The rollout ended before it acted: its history entry, and its exit code.
async fn ended(scene: &Scene, what: &str) -> Result<i32, Fail> {
    let last = history::list(&scene.engine, &scene.service)
        .await
        .map_err(Fail::from)?
        .into_iter()
        .next();
    let mut err = std::io::stderr();
    Ok(match last {
        Some(e) => {
            let _ = writeln!(err, "the rollout ended before {what}: {}", history_line(&e));
            e.exit_code
        }
        None => {
            let _ = writeln!(err, "the rollout ended before {what}");
            exit::UNEXPECTED
        }
    })
}

/// A request not taken in time is withdrawn: exit 7, nothing changed.
async fn not_taken(scene: &Scene, ask: Ask, timeout: Duration) -> Fail {
    let _ = history::take_request(&scene.engine, &scene.service).await;
    Fail {
        code: exit::BUSY,
        message: format!(
            "the rollout of {} did not take the request to {} in {}s: it is withdrawn, nothing was changed",
            scene.service,
            ask.word(),
            timeout.as_secs()
        ),
    }
}

/// Says what was done: a line on stderr, and with `--output json` an object
/// on stdout.
fn report(req: &VerbRequest, value: Value, text: &str) {
    let _ = writeln!(std::io::stderr(), "{text}");
    if req.rollout.output == OutputFormat::Json {
        let _ = writeln!(std::io::stdout(), "{value}");
    }
}

fn paused_at(r: &JournalRecord) -> Option<String> {
    let p = r.state.get(PAUSED)?;
    Some(p["at"].as_str().unwrap_or("a safe point").to_string())
}

/// `docker rollout pause SERVICE`.
pub async fn pause(req: &VerbRequest, timeout: Duration) -> Result<i32, Fail> {
    let scene = scene(req).await?;
    let service = &scene.service;
    let name = &service.service;
    let record = running(&scene, "pause").await?;
    if let Some(at) = paused_at(&record) {
        report(
            req,
            json!({ "service": service.to_string(), "asked": "pause", "paused": true, "at": at }),
            &format!("the rollout of {service} is paused already, at {at}\nhint: `docker rollout resume {name}` lets it go on"),
        );
        return Ok(exit::SUCCESS);
    }
    if let Some(why) = no_point_to_hold(&record) {
        return Err(Fail::bad_input(why));
    }
    send(&scene.engine, service, Ask::Pause).await?;
    let _ = writeln!(
        std::io::stderr(),
        "asked the {} rollout of {service} to hold at its next safe point; waiting up to {}s",
        record.strategy,
        timeout.as_secs()
    );
    match acted(&scene, timeout, |r| r.state.get(PAUSED).is_some()).await? {
        Acted::Yes(r) => {
            let at = paused_at(&r).unwrap_or_default();
            report(
                req,
                json!({ "service": service.to_string(), "asked": "pause", "paused": true, "at": at, "since": r.state[PAUSED]["since"] }),
                &format!("paused: the rollout of {service} holds at {at}; failures and the analysis are still watched\nhint: `docker rollout resume {name}` lets it go on, `docker rollout abort {name}` rolls it back"),
            );
            Ok(exit::SUCCESS)
        }
        Acted::Ended => ended(&scene, "it held").await,
        Acted::Late { taken: false } => Err(not_taken(&scene, Ask::Pause, timeout).await),
        Acted::Late { taken: true } => {
            // Heard, but no safe point reached yet: withdrawn, so that
            // nothing is left that this verb says it did not do.
            send(&scene.engine, service, Ask::Resume).await?;
            Err(Fail {
                code: exit::BUSY,
                message: format!(
                    "the rollout of {service} heard the pause but did not reach a point to hold at in {}s (a slot in flight?): the pause is withdrawn\nhint: try again with a longer --timeout",
                    timeout.as_secs()
                ),
            })
        }
    }
}

/// Why a running rollout can no longer be held: a blue-green rollout that has switched its
/// traffic only watches the new colour and drains the old one, with no safe point left, so a
/// pause is refused at once instead of waiting out its timeout.
fn no_point_to_hold(record: &JournalRecord) -> Option<String> {
    let switched = record.state.get("switched") == Some(&json!(true));
    (record.strategy == StrategyKind::BlueGreen.to_string() && switched).then(|| {
        let service = &record.service;
        format!(
            "nothing to pause: the blue-green rollout of {service} has switched its traffic already; it is watching the new colour and draining the old one\nhint: `docker rollout abort {}` switches back while the old colour still runs",
            service.service
        )
    })
}

/// `docker rollout resume SERVICE`.
pub async fn resume(req: &VerbRequest, timeout: Duration) -> Result<i32, Fail> {
    let scene = scene(req).await?;
    let service = &scene.service;
    let record = running(&scene, "resume").await?;
    let Some(at) = paused_at(&record) else {
        return Err(Fail::bad_input(format!(
            "nothing to resume: the {} rollout of {service} runs and is not paused\nhint: `docker rollout status {}` shows where it stands",
            record.strategy, service.service
        )));
    };
    send(&scene.engine, service, Ask::Resume).await?;
    match acted(&scene, timeout, |r| r.state.get(PAUSED).is_none()).await? {
        Acted::Yes(_) => {
            report(
                req,
                json!({ "service": service.to_string(), "asked": "resume", "paused": false, "at": at }),
                &format!("resumed: the rollout of {service} goes on from {at}"),
            );
            Ok(exit::SUCCESS)
        }
        Acted::Ended => ended(&scene, "it went on").await,
        Acted::Late { taken: false } => Err(not_taken(&scene, Ask::Resume, timeout).await),
        Acted::Late { taken: true } => Err(Fail {
            code: exit::BUSY,
            message: format!(
                "the rollout of {service} heard the resume but still says it holds after {}s\nhint: `docker rollout status {}` shows where it stands",
                timeout.as_secs(),
                service.service
            ),
        }),
    }
}

/// `docker rollout promote SERVICE [--full]` of a canary whose rollout runs
/// in another process (`record`, its journal): its step's hold ends now.
pub async fn promote_running(
    req: &VerbRequest,
    scene: &Scene,
    record: JournalRecord,
    full: bool,
    timeout: Duration,
) -> Result<i32, Fail> {
    let service = &scene.service;
    if record.strategy != "canary" {
        return Err(Fail::bad_input(format!(
            "nothing to promote: the rollout of {service} running is {}, not a canary (`docker rollout pause|resume {}` steer it)",
            record.strategy, service.service
        )));
    }
    if record.phase == Phase::RollingBack {
        return Err(Fail::bad_input(format!(
            "nothing to promote: the canary of {service} is rolling back"
        )));
    }
    let step = |r: &JournalRecord| r.state.get("step").and_then(Value::as_u64);
    let before = step(&record);
    let ask = Ask::Promote { full };
    send(&scene.engine, service, ask).await?;
    let _ = writeln!(
        std::io::stderr(),
        "asked the canary of {service} to end the hold of step {}{}; waiting up to {}s",
        before.map_or("?".to_string(), |s| (s + 1).to_string()),
        if full {
            " and go straight to 100 %"
        } else {
            ""
        },
        timeout.as_secs()
    );
    let moved = |r: &JournalRecord| {
        if full {
            r.state.get(PROMOTE).and_then(Value::as_str) == Some("full")
        } else {
            step(r) > before
        }
    };
    match acted(scene, timeout, moved).await? {
        Acted::Yes(r) => {
            let now = step(&r).map(|s| s + 1);
            report(
                req,
                json!({ "service": service.to_string(), "asked": ask.word(), "canary_step": now }),
                &format!(
                    "promoted: the canary of {service} is on to step {}{}",
                    now.map_or("?".to_string(), |s| s.to_string()),
                    if full { ", the last (100 %)" } else { "" }
                ),
            );
            Ok(exit::SUCCESS)
        }
        Acted::Ended => ended(scene, "it moved on").await,
        Acted::Late { taken: false } => Err(not_taken(scene, ask, timeout).await),
        Acted::Late { taken: true } => Err(Fail {
            code: exit::BUSY,
            message: format!(
                "the canary of {service} heard the promotion but has not moved on after {}s (it acts at its step's hold)\nhint: `docker rollout status {}` shows where it stands",
                timeout.as_secs(),
                service.service
            ),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rollout_core::Revision;

    #[test]
    fn each_request_has_one_word() {
        for ask in [
            Ask::Abort,
            Ask::Pause,
            Ask::Resume,
            Ask::Promote { full: false },
            Ask::Promote { full: true },
        ] {
            assert_eq!(Ask::parse(ask.word()), Some(ask));
        }
        // `abort` is what earlier versions left: still understood.
        assert_eq!(Ask::parse("abort"), Some(Ask::Abort));
        assert_eq!(Ask::parse("halt"), None);
    }

    fn record(strategy: &str, state: Value) -> JournalRecord {
        JournalRecord {
            rollout_id: "r1".into(),
            service: ServiceRef::new("shop", "web"),
            strategy: strategy.into(),
            from: Some(Revision::new("v1", "web:1")),
            to: Revision::new("v2", "web:2"),
            phase: Phase::Updating,
            step: None,
            state,
        }
    }

    #[test]
    fn a_blue_green_rollout_past_its_switch_cannot_be_paused() {
        let why =
            no_point_to_hold(&record("blue-green", json!({ "switched": true }))).expect("refused");
        assert!(why.contains("switched its traffic already"), "{why}");
        assert!(why.contains("docker rollout abort web"), "{why}");
        // Before the switch it holds; other strategies are not judged by this key.
        assert_eq!(no_point_to_hold(&record("blue-green", json!({}))), None);
        assert_eq!(
            no_point_to_hold(&record("canary", json!({ "switched": true }))),
            None
        );
    }
}
