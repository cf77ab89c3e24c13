//! What a hook receives: one JSON object per moment, the same for a command
//! (on its stdin) and for the webhook (as the POST body).
//!
//! ```json
//! {"v":1,"hook":"on-failure","text":"shop/app: rollout to app:v2 failed and was rolled back: …",
//!  "project":"shop","service":"app","strategy":"rolling","from":{…},"to":{…},
//!  "outcome":{"outcome":"rolled-back","detail":"…"},"exit_code":3,"elapsed_secs":41.2,
//!  "event":{"v":1,"t":41.2,"event":"finished","outcome":{…}}}
//! ```
//!
//! `text` is one line for people, as chat tools show a webhook's `text`.
//! `event` is the rollout's own `finished` event in the envelope of
//! `--output json` (absent before the rollout has run). What a message is
//! made of is chosen, never copied from elsewhere: names, revisions
//! (image and ids), the outcome and the tool's own messages. It carries no
//! environment value of any container or of the operator.

use rollout_core::event::{Envelope, EVENT_SCHEMA_VERSION};
use rollout_core::hooks::Phase;
use rollout_core::{Event, Outcome, Revision, ServiceRef};
use serde::Serialize;

/// The longest `text`, in characters: a chat line, not a report.
pub const TEXT_MAX: usize = 300;

/// The rollout a message is about.
#[derive(Debug, Clone, PartialEq)]
pub struct Subject {
    /// The service, in its project.
    pub service: ServiceRef,
    /// The strategy's name.
    pub strategy: String,
    /// What ran before, once the rollout has said.
    pub from: Option<Revision>,
    /// What the rollout goes to.
    pub to: Revision,
}

/// One message to the hooks.
#[derive(Debug, Clone, Serialize)]
pub struct Message {
    /// The schema's version: rollout-core's event schema version.
    pub v: u32,
    /// The moment: `pre`, `post` or `on-failure`.
    pub hook: Phase,
    /// One line for people.
    pub text: String,
    /// The Compose project.
    pub project: String,
    /// The service.
    pub service: String,
    /// The strategy's name.
    pub strategy: String,
    /// What ran before, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<Revision>,
    /// What the rollout goes to.
    pub to: Revision,
    /// How the rollout ended (`post`, `on-failure`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outcome: Option<Outcome>,
    /// The exit code `docker rollout` ends with (after the rollout, or 2
    /// when the `pre` hook refused it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// Seconds the rollout took.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub elapsed_secs: Option<f64>,
    /// Why the rollout did not start (the `pre` hook refused it, or what
    /// failed before anything was launched).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The rollout's `finished` event, as `--output json` prints it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event: Option<Envelope>,
}

impl Message {
    fn base(hook: Phase, subject: &Subject, text: String) -> Self {
        Message {
            v: EVENT_SCHEMA_VERSION,
            hook,
            text: one_line(&text),
            project: subject.service.project.clone(),
            service: subject.service.service.clone(),
            strategy: subject.strategy.clone(),
            from: subject.from.clone(),
            to: subject.to.clone(),
            outcome: None,
            exit_code: None,
            elapsed_secs: None,
            error: None,
            event: None,
        }
    }

    /// Before anything changes.
    pub fn pre(subject: &Subject) -> Self {
        let text = format!(
            "{}: rolling out {} ({})",
            subject.service, subject.to.image, subject.strategy
        );
        Self::base(Phase::Pre, subject, text)
    }

    /// The `pre` hook refused the rollout (exit 2, nothing changed): what
    /// happened in one line (`headline`) and in full (`why`, with the hook's
    /// output); for the webhook only.
    pub fn refused(subject: &Subject, headline: &str, why: &str) -> Self {
        let text = format!(
            "{}: rollout to {} not started: {headline}",
            subject.service, subject.to.image
        );
        let mut m = Self::base(Phase::Pre, subject, text);
        m.exit_code = Some(rollout_core::exit::BAD_INPUT);
        m.error = Some(why.to_string());
        m
    }

    /// The rollout failed after `pre` and before the strategy launched
    /// anything (a migration's expand phase, say): `on-failure`, with the
    /// outcome `failed`, the exit code `docker rollout` ends with, and the
    /// error in one line (`headline`) and in full (`why`).
    pub fn not_launched(
        subject: &Subject,
        headline: &str,
        why: &str,
        code: i32,
        elapsed: f64,
    ) -> Self {
        let text = format!(
            "{}: rollout to {} failed before anything was launched: {headline} (exit {code})",
            subject.service, subject.to.image
        );
        let mut m = Self::base(Phase::OnFailure, subject, text);
        m.outcome = Some(Outcome::Failed(headline.to_string()));
        m.exit_code = Some(code);
        m.elapsed_secs = Some((elapsed * 1000.0).round() / 1000.0);
        m.error = Some(why.to_string());
        m
    }

    /// After the rollout ended with `outcome`, `elapsed` seconds after it
    /// started, `docker rollout` exiting with `code` (the outcome's, unless
    /// what ran after the strategy failed): `post` for 0, `on-failure`
    /// otherwise.
    pub fn ended(subject: &Subject, outcome: &Outcome, code: i32, elapsed: f64) -> Self {
        let phase = if code == rollout_core::exit::SUCCESS {
            Phase::Post
        } else {
            Phase::OnFailure
        };
        let elapsed = (elapsed * 1000.0).round() / 1000.0;
        let mut text = ended_text(subject, outcome, elapsed);
        if code != outcome.exit_code() {
            text.push_str(&format!("; then failed after the rollout (exit {code})"));
        }
        let mut m = Self::base(phase, subject, text);
        m.outcome = Some(outcome.clone());
        m.exit_code = Some(code);
        m.elapsed_secs = Some(elapsed);
        m.event = Some(Envelope {
            v: EVENT_SCHEMA_VERSION,
            t: elapsed,
            event: Event::Finished {
                outcome: outcome.clone(),
            },
        });
        m
    }

    /// The JSON body: one object, no trailing newline.
    pub fn to_json(&self) -> String {
        // A message is strings, numbers and rollout-core's serializable
        // types: it cannot fail to serialize.
        serde_json::to_string(self).unwrap_or_else(|_| "{}".to_string())
    }

    /// The outcome's one word (`completed`, `rolled-back`, …), for the
    /// environment of a command hook.
    pub fn outcome_word(&self) -> Option<&'static str> {
        self.outcome.as_ref().map(|o| match o {
            Outcome::Completed => "completed",
            Outcome::NoChange => "no-change",
            Outcome::CompletedWithFailures(_) => "completed-with-failures",
            Outcome::RolledBack(_) => "rolled-back",
            Outcome::Paused(_) => "paused",
            Outcome::RollbackFailed(_) => "rollback-failed",
            Outcome::Interrupted(_) => "interrupted",
            Outcome::Failed(_) => "failed",
            Outcome::Busy(_) => "busy",
        })
    }
}

fn ended_text(s: &Subject, outcome: &Outcome, elapsed: f64) -> String {
    let svc = &s.service;
    let to = &s.to.image;
    let code = outcome.exit_code();
    let took = format!("{elapsed:.1}s");
    match outcome {
        Outcome::Completed => format!("{svc}: rolled out {to} in {took} ({})", s.strategy),
        Outcome::NoChange => format!("{svc}: already runs {to}, nothing changed"),
        Outcome::CompletedWithFailures(d) => {
            format!("{svc}: rolled out {to} in {took} with failures: {d}")
        }
        Outcome::RolledBack(d) => {
            format!("{svc}: rollout to {to} failed and was rolled back: {d} (exit {code})")
        }
        Outcome::Paused(d) => format!("{svc}: rollout to {to} paused: {d} (exit {code})"),
        Outcome::RollbackFailed(d) => format!(
            "{svc}: rollout to {to} failed and so did its rollback, a person must look: {d} (exit {code})"
        ),
        Outcome::Interrupted(true) => {
            format!("{svc}: rollout to {to} interrupted and rolled back (exit {code})")
        }
        Outcome::Interrupted(false) => format!(
            "{svc}: rollout to {to} interrupted and left where it stopped (exit {code})"
        ),
        Outcome::Failed(d) => format!("{svc}: rollout to {to} failed: {d} (exit {code})"),
        Outcome::Busy(d) => format!(
            "{svc}: rollout to {to} not started, another rollout holds the service: {d} (exit {code})"
        ),
    }
}

/// One line of at most [`TEXT_MAX`] characters: line breaks and other
/// control characters become spaces, runs of spaces one space.
pub fn one_line(text: &str) -> String {
    let mut out = String::with_capacity(text.len().min(TEXT_MAX + 4));
    let mut count = 0;
    let mut space = false;
    for c in text.trim().chars() {
        let c = if c.is_control() || c.is_whitespace() {
            ' '
        } else {
            c
        };
        if c == ' ' {
            if space {
                continue;
            }
            space = true;
        } else {
            space = false;
        }
        if count == TEXT_MAX {
            out.truncate(out.trim_end().len());
            out.push('…');
            return out;
        }
        out.push(c);
        count += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subject() -> Subject {
        Subject {
            service: ServiceRef::new("shop", "app"),
            strategy: "rolling".into(),
            from: Some(Revision::new("h1@sha256:1", "app:v1")),
            to: Revision::new("h2@sha256:2", "app:v2").with_image_id("sha256:2"),
        }
    }

    #[test]
    fn each_moment_has_its_phase_fields_and_one_line_of_text() {
        let pre = Message::pre(&subject());
        assert_eq!(pre.text, "shop/app: rolling out app:v2 (rolling)");
        let json: serde_json::Value = serde_json::from_str(&pre.to_json()).unwrap();
        assert_eq!(json["v"], 1);
        assert_eq!(json["hook"], "pre");
        assert_eq!(json["service"], "app");
        assert_eq!(json["project"], "shop");
        assert_eq!(json["to"]["image"], "app:v2");
        assert_eq!(json["to"]["image_id"], "sha256:2");
        for absent in ["outcome", "exit_code", "event", "error", "elapsed_secs"] {
            assert!(json.get(absent).is_none(), "{absent} in {json}");
        }

        let post = Message::ended(&subject(), &Outcome::Completed, 0, 41.23456);
        assert_eq!(post.hook, Phase::Post);
        assert_eq!(post.text, "shop/app: rolled out app:v2 in 41.2s (rolling)");
        let json: serde_json::Value = serde_json::from_str(&post.to_json()).unwrap();
        assert_eq!(json["outcome"]["outcome"], "completed");
        assert_eq!(json["exit_code"], 0);
        assert_eq!(json["elapsed_secs"], 41.235);
        assert_eq!(json["from"]["image"], "app:v1");
        // The rollout's own event, as --output json prints it.
        assert_eq!(json["event"]["v"], 1);
        assert_eq!(json["event"]["event"], "finished");
        assert_eq!(json["event"]["outcome"]["outcome"], "completed");
        let back: Envelope = serde_json::from_value(json["event"].clone()).unwrap();
        assert_eq!(
            back.event,
            Event::Finished {
                outcome: Outcome::Completed
            }
        );
        assert_eq!(post.outcome_word(), Some("completed"));

        let rolled = Message::ended(
            &subject(),
            &Outcome::RolledBack("app-3 never became healthy\nlast log: boom".into()),
            3,
            12.0,
        );
        assert_eq!(rolled.hook, Phase::OnFailure);
        assert_eq!(
            rolled.text,
            "shop/app: rollout to app:v2 failed and was rolled back: app-3 never became healthy last log: boom (exit 3)"
        );
        assert_eq!(rolled.exit_code, Some(3));
        for (outcome, phase) in [
            (Outcome::NoChange, Phase::Post),
            (Outcome::CompletedWithFailures("1 of 3".into()), Phase::Post),
            (Outcome::Paused("step 2".into()), Phase::OnFailure),
            (Outcome::RollbackFailed("x".into()), Phase::OnFailure),
            (Outcome::Interrupted(true), Phase::OnFailure),
            (Outcome::Failed("x".into()), Phase::OnFailure),
            (Outcome::Busy("x".into()), Phase::OnFailure),
        ] {
            let m = Message::ended(&subject(), &outcome, outcome.exit_code(), 1.0);
            assert_eq!(m.hook, phase, "{outcome:?}");
            assert!(!m.text.contains('\n'));
        }

        // A completed rollout whose aftermath failed (a migration) is a failure.
        let after = Message::ended(&subject(), &Outcome::Completed, 1, 2.0);
        assert_eq!((after.hook, after.exit_code), (Phase::OnFailure, Some(1)));
        assert_eq!(
            after.text,
            "shop/app: rolled out app:v2 in 2.0s (rolling); then failed after the rollout (exit 1)"
        );
        let refused = Message::refused(
            &subject(),
            "the pre hook ./check.sh exited 1",
            "the pre hook ./check.sh exited 1; its output:\nx",
        );
        assert_eq!(refused.hook, Phase::Pre);
        assert_eq!(refused.exit_code, Some(2));
        assert_eq!(
            refused.text,
            "shop/app: rollout to app:v2 not started: the pre hook ./check.sh exited 1"
        );
    }

    #[test]
    fn a_failure_before_anything_launched_is_on_failure_with_the_error() {
        let m = Message::not_launched(
            &subject(),
            "db/0001_add_email.sql:2: canceling statement due to lock timeout",
            "db/0001_add_email.sql:2: canceling statement due to lock timeout (after 3 attempts)\nhint: x",
            7,
            3.21049,
        );
        assert_eq!(m.hook, Phase::OnFailure);
        assert_eq!(
            m.text,
            "shop/app: rollout to app:v2 failed before anything was launched: db/0001_add_email.sql:2: canceling statement due to lock timeout (exit 7)"
        );
        let json: serde_json::Value = serde_json::from_str(&m.to_json()).unwrap();
        assert_eq!(json["hook"], "on-failure");
        assert_eq!(json["exit_code"], 7);
        assert_eq!(json["elapsed_secs"], 3.21);
        assert_eq!(json["outcome"]["outcome"], "failed");
        assert!(json["error"]
            .as_str()
            .unwrap()
            .contains("(after 3 attempts)\nhint: x"));
        assert!(json.get("event").is_none(), "the rollout never ran: {json}");
        assert_eq!(m.outcome_word(), Some("failed"));
    }

    #[test]
    fn text_is_one_bounded_line() {
        assert_eq!(one_line("  a\r\n\tb   c \u{7}d "), "a b c d");
        let long = "x".repeat(1000);
        let line = one_line(&long);
        assert_eq!(line.chars().count(), TEXT_MAX + 1);
        assert!(line.ends_with('…'));
        assert_eq!(one_line(&"é".repeat(TEXT_MAX)), "é".repeat(TEXT_MAX));
    }
}
