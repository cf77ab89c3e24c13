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
            Outcome::Busy(s) => (Tone::Bad, format!("busy, nothing changed: {s}")),
        }
}

/// `rollout-demo:v2 (3f2a9c1b7d0e)`, or the short id alone when the image
/// is not known; with the image id the backend resolved,
/// `rollout-demo:latest (sha256:cd34ef56ab12…)`.
pub(crate) fn rev(r: &Revision) -> String {
    let short = match &r.image_id {
        Some(image_id) => short_image(image_id),
        None => r.id.chars().take(12).collect(),
    };
    if r.image.is_empty() {
        format!("revision {short}")
    } else {
        format!("{} ({short})", r.image)
    }
}

/// The words for the revision of a launched instance: the target's or the
/// starting revision's ([`rev`]) when it is one of them, else `revision`
/// and the id's first twelve characters.
pub(crate) fn launched_revision(id: &str, target: &Revision, from: Option<&Revision>) -> String {
    match [Some(target), from]
        .into_iter()
        .flatten()
        .find(|r| r.id == id)
    {
        Some(known) if !known.image.is_empty() => rev(known),
        _ => format!("revision {}", id.chars().take(12).collect::<String>()),
    }
}

/// `sha256:ab12cd34ef56…`: an image id as people read it (Docker's twelve
/// hex digits).
pub(crate) fn short_image(id: &str) -> String {
    let hex = id.strip_prefix("sha256:").unwrap_or(id);
    let short: String = hex.chars().take(12).collect();
    let cut = if short.len() < hex.len() { "…" } else { "" };
    if id.starts_with("sha256:") {
        format!("sha256:{short}{cut}")
    } else {
        format!("{short}{cut}")
    }
}

/// `from -> to` as people read it: `app:latest (sha256:ab12… -> sha256:cd34…)`
/// when one tag moved to another image, else both revisions in full
/// (`app:v1 (…) -> app:v2 (…)`); the config's id where the image is the same.
pub(crate) fn transition(from: Option<&Revision>, to: &Revision) -> String {
    let Some(from) = from else {
        return format!("nothing running -> {}", rev(to));
    };
    match (&from.image_id, &to.image_id) {
        (Some(a), Some(b)) if a != b && from.image == to.image && !to.image.is_empty() => {
            format!("{} ({} -> {})", to.image, short_image(a), short_image(b))
        }
        // Same image, another config: the image ids would read as no change.
        (Some(a), Some(b)) if a == b => {
            let by_id = |r: &Revision| rev(&Revision::new(r.id.clone(), r.image.clone()));
            format!("{} -> {}", by_id(from), by_id(to))
        }
        _ => format!("{} -> {}", rev(from), rev(to)),
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
    let mut text = format!(
        "rolling out {service} with {strategy}: {}{detail}",
        transition(from, to)
    );
    if resumed {
        text.push_str(" (resuming the rollout an earlier run left unfinished)");
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    const OLD: &str = "sha256:ab12cd34ef5678901234567890";
    const NEW: &str = "sha256:cd34ef56ab1278901234567890";

    fn latest(id: &str, image_id: &str) -> Revision {
        Revision::new(format!("{id}@{image_id}"), "app:latest").with_image_id(image_id)
    }

    #[test]
    fn a_moved_tag_shows_the_tag_once_and_both_image_ids() {
        assert_eq!(
            transition(
                Some(&latest("3f2a9c1b7d0e55", OLD)),
                &latest("3f2a9c1b7d0e55", NEW)
            ),
            "app:latest (sha256:ab12cd34ef56… -> sha256:cd34ef56ab12…)"
        );
    }

    #[test]
    fn another_tag_shows_both_revisions() {
        let v1 = Revision::new(format!("77aa@{OLD}"), "app:v1").with_image_id(OLD);
        let v2 = Revision::new(format!("88bb@{NEW}"), "app:v2").with_image_id(NEW);
        assert_eq!(
            transition(Some(&v1), &v2),
            "app:v1 (sha256:ab12cd34ef56…) -> app:v2 (sha256:cd34ef56ab12…)"
        );
        assert_eq!(
            transition(None, &v2),
            "nothing running -> app:v2 (sha256:cd34ef56ab12…)"
        );
        // A revision the backend could not describe.
        let bare = Revision::new(format!("77aa00000000ff@{OLD}"), "");
        assert_eq!(
            transition(Some(&bare), &v2),
            "revision 77aa00000000 -> app:v2 (sha256:cd34ef56ab12…)"
        );
    }

    #[test]
    fn the_same_image_under_another_config_shows_the_configs() {
        assert_eq!(
            transition(
                Some(&latest("3f2a9c1b7d0e55", OLD)),
                &latest("9c1b7d0e5a3f44", OLD)
            ),
            "app:latest (3f2a9c1b7d0e) -> app:latest (9c1b7d0e5a3f)"
        );
    }

    #[test]
    fn short_image_ids_are_dockers_twelve_digits() {
        assert_eq!(short_image(OLD), "sha256:ab12cd34ef56…");
        assert_eq!(short_image("sha256:ab12"), "sha256:ab12");
        assert_eq!(short_image("ab12cd34ef5678"), "ab12cd34ef56…");
    }
}
