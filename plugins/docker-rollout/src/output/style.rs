//! How lines for people look, whichever door they leave by: the time
//! stamp and its continuation lines, the colours, and the words for a
//! revision and for how a rollout ended. The line text door and the live
//! block both write through here, so a change of wording shows in both.

use rollout_core::strategy::{Plan, TrafficLayout};
use rollout_core::{Outcome, Revision, ServiceRef};
use std::io::Write;

/// How a line is coloured, when colour is on.
#[derive(Clone, Copy)]
pub(crate) enum Tone {
    /// No colour.
    Plain,
    /// Green.
    Good,
    /// Yellow.
    Warn,
    /// Red.
    Bad,
    /// Faint.
    Dim,
}

/// Resets the colour.
const RESET: &str = "\x1b[0m";

impl Tone {
    /// The escapes around a line in this tone: none without colour, and
    /// none for [`Tone::Plain`].
    pub(crate) fn paint(self, colour: bool) -> (&'static str, &'static str) {
        match (colour, self) {
            (false, _) | (_, Tone::Plain) => ("", ""),
            (true, Tone::Good) => ("\x1b[32m", RESET),
            (true, Tone::Warn) => ("\x1b[33m", RESET),
            (true, Tone::Bad) => ("\x1b[31m", RESET),
            (true, Tone::Dim) => ("\x1b[2m", RESET),
        }
    }
}

/// `   12.3s`: seconds since the start, as every line for people begins.
pub(crate) fn stamp(t: f64) -> String {
    format!("{t:>7.1}s")
}

/// Writes `text` after `stamp`, each of its lines between `on` and `off`;
/// the lines after the first are indented under the first one's text.
pub(crate) fn stamped(out: &mut impl Write, stamp: &str, (on, off): (&str, &str), text: &str) {
    for (i, part) in text.lines().enumerate() {
        let _ = if i == 0 {
            writeln!(out, "{stamp}  {on}{part}{off}")
        } else {
            writeln!(out, "{:>8}    {on}{part}{off}", "")
        };
    }
}

/// The last line of a rollout of `plan` that ended with `outcome`.
pub(crate) fn outcome_line(plan: &Plan, outcome: &Outcome) -> (Tone, String) {
    let service = &plan.service;
    let to = rev(&plan.target);
    match outcome {
            Outcome::Completed => (
                Tone::Good,
                match &plan.layout {
                    TrafficLayout::Colours { other, .. } => format!(
                        "rollout complete: {} is live on {to}; {} keeps running for a switch-back",
                        service.service, other.service
                    ),
                    TrafficLayout::Single => {
                        format!("rollout complete: every instance of {service} runs {to}")
                    }
                },
            ),
            Outcome::NoChange => (
                Tone::Good,
                format!("nothing to do: {service} already runs {to}"),
            ),
            Outcome::CompletedWithFailures(s) => (
                Tone::Warn,
                format!("rollout complete with failures: {s}"),
            ),
            Outcome::RolledBack(s) => (Tone::Warn, format!("rolled back: {s}")),
            Outcome::Paused(s) => (
                Tone::Warn,
                format!("paused: {s}\nhint: run docker rollout {} again to go on", service.service),
            ),
            Outcome::RollbackFailed(s) => (
                Tone::Bad,
                format!("the rollback failed: {s}\nhint: look at the service's containers and the nginx config; run docker rollout {} again to converge", service.service),
            ),
            Outcome::Interrupted(true) => (
                Tone::Warn,
                "interrupted: what was started was rolled back".to_string(),
            ),
            Outcome::Interrupted(false) => (
                Tone::Warn,
                format!("interrupted without rolling back: the service is left as it was at the last safe point\nhint: run docker rollout {} again to finish", service.service),
            ),
            Outcome::Failed(s) => (Tone::Bad, format!("failed: {s}")),
        }
}

/// `rollout-demo:v2 (3f2a9c1b7d0e)`, or the short id alone when the image
/// is not known.
pub(crate) fn rev(r: &Revision) -> String {
    let short: String = r.id.chars().take(12).collect();
    if r.image.is_empty() {
        format!("revision {short}")
    } else {
        format!("{} ({short})", r.image)
    }
}

/// The first line of a rollout, as both text doors write it: `rolling out shop/app with
/// rolling: image (id) -> image (id)`, then what `detail` adds, and a note when it resumes.
pub(crate) fn started_line(
    service: &ServiceRef,
    strategy: &str,
    (from, to): (Option<&Revision>, &Revision),
    detail: &str,
    resumed: bool,
) -> String {
    let from = from
        .map(rev)
        .unwrap_or_else(|| "nothing running".to_string());
    let mut text = format!(
        "rolling out {service} with {strategy}: {from} -> {}{detail}",
        rev(to)
    );
    if resumed {
        text.push_str(" (resuming the rollout an earlier run left unfinished)");
    }
    text
}
