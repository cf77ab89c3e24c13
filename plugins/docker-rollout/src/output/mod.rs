//! Output: everything a person or a program sees of a rollout.
//!
//! The strategies only send [`rollout_core::Event`]s; how they look is
//! decided here, behind three doors: [`Json`] (one versioned envelope per
//! event on stdout, then a summary: data), [`Text`] (one line per state
//! change on stderr: progress is not data) and [`Live`] (a block redrawn in
//! place on a terminal). The words they share are in `style`.

mod json;
mod live;
mod style;
mod summary;
mod text;

#[cfg(test)]
mod fixtures;

pub use json::Json;
pub use live::Live;
pub use summary::{Summary, Tally};
pub use text::Text;

/// Whether a terminal-only feature is on: the output is a terminal and its
/// off switch (an environment variable's value) is unset or empty. Colour
/// with `NO_COLOR` (no-color.org); live progress with `ROLLOUT_NO_PROGRESS`
/// (`NO_COLOR` only turns colour off; `--output json` never gets there).
pub fn on_terminal_unless(is_terminal: bool, off: Option<&std::ffi::OsStr>) -> bool {
    is_terminal && off.is_none_or(|v| v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terminal_features_need_a_terminal_and_no_off_switch() {
        use std::ffi::OsStr;
        assert!(on_terminal_unless(true, None));
        assert!(on_terminal_unless(true, Some(OsStr::new(""))));
        assert!(!on_terminal_unless(true, Some(OsStr::new("1"))));
        assert!(!on_terminal_unless(false, None));
    }
}
