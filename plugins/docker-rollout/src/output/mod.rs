//! Output: everything a person or a program sees of a rollout.
//!
//! The strategies only send [`rollout_core::Event`]s; how they look is
//! decided here, in one room with three doors behind one trait, [`Sink`]:
//!
//! - [`Json`]: one versioned envelope per event on stdout, then a summary
//!   (`--output json`; data, so stdout);
//! - [`Text`]: one line per state change, like `kubectl rollout status`
//!   (progress is not data, so stderr);
//! - [`Live`]: a block in the shape of `docker service update`, redrawn in
//!   place on a terminal.
//!
//! Every door hears everything a run has to say (events, notes, a report,
//! data, the summary) and shows what is its to show, so a caller never
//! asks which door is open and a new event is taught to the doors alone.
//! [`setup`] picks the door once, from the request and the terminal;
//! [`Renderer`] is what the caller holds: the door, the clock, and the
//! counts for the summary. The words the text doors share are in `style`.

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

use crate::cli::OutputFormat;
use rollout_core::strategy::Plan;
use rollout_core::{Event, InstanceId};
use std::ffi::OsString;
use std::io::{IsTerminal, Write};
use tokio::time::Instant;

/// One door of the output: what it does with each thing a run says. What
/// a door does not show, it ignores (the default methods).
pub trait Sink {
    /// One event, `t` seconds after the start.
    fn event(&mut self, t: f64, event: &Event);

    /// Names an instance by its host (container name) rather than its id.
    fn know_host(&mut self, _id: InstanceId, _host: &str) {}

    /// Counts `n` instances that already ran the target revision, healthy,
    /// when the rollout started (a resumed run).
    fn already_new(&mut self, _n: usize) {}

    /// A free-form line for people (notes of the wiring); JSON carries only
    /// events.
    fn note(&mut self, _t: f64, _text: &str) {}

    /// Called every so often while the rollout runs; `quiet` is how long a
    /// wait may go unmentioned before it is said again.
    fn tick(&mut self, _t: f64, _quiet: f64) {}

    /// Text for people, written as it is, with no time stamp (the dry
    /// run's plan and its report).
    fn report(&mut self, _text: &str) {}

    /// A JSON line for programs other than an event (the dry run's plan).
    fn data(&mut self, _value: &serde_json::Value) {}

    /// The run's summary, the last thing written.
    fn summary(&mut self, _summary: &Summary) {}
}

/// The output of one run: its door, the counts for the summary, and the
/// clock every time stamp is read on.
pub struct Renderer {
    sink: Box<dyn Sink>,
    tally: Tally,
    /// When the rollout started (on the clock the strategy runs on).
    start: Instant,
}

impl Renderer {
    /// A renderer through `sink`, starting its clock now.
    pub fn new(sink: Box<dyn Sink>) -> Self {
        Self {
            sink,
            tally: Tally::default(),
            start: Instant::now(),
        }
    }

    /// Seconds since the start.
    pub fn t(&self) -> f64 {
        self.start.elapsed().as_secs_f64()
    }

    /// What the events so far did, counted.
    pub fn tally(&self) -> &Tally {
        &self.tally
    }

    /// Counts and shows one event.
    pub fn event(&mut self, event: &Event) {
        let t = self.t();
        self.tally.count(event);
        self.sink.event(t, event);
    }

    /// See [`Sink::know_host`].
    pub fn know_host(&mut self, id: InstanceId, host: &str) {
        self.sink.know_host(id, host);
    }

    /// See [`Sink::already_new`].
    pub fn already_new(&mut self, n: usize) {
        self.sink.already_new(n);
    }

    /// See [`Sink::note`].
    pub fn note(&mut self, text: &str) {
        let t = self.t();
        self.sink.note(t, text);
    }

    /// See [`Sink::tick`].
    pub fn tick(&mut self, quiet: f64) {
        let t = self.t();
        self.sink.tick(t, quiet);
    }

    /// See [`Sink::report`].
    pub fn report(&mut self, text: &str) {
        self.sink.report(text);
    }

    /// See [`Sink::data`].
    pub fn data(&mut self, value: &serde_json::Value) {
        self.sink.data(value);
    }

    /// See [`Sink::summary`].
    pub fn summary(&mut self, summary: &Summary) {
        self.sink.summary(summary);
    }
}

/// Which door a run's output leaves by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Door {
    /// [`Json`].
    Json,
    /// [`Text`], coloured or not.
    Text {
        /// Whether lines are coloured.
        colour: bool,
    },
    /// [`Live`] on a terminal this wide.
    Live {
        /// Whether lines are coloured.
        colour: bool,
        /// The terminal's width in columns.
        width: usize,
    },
}

impl Door {
    /// The door for a rollout: JSON when asked for; else the live block
    /// when people's stream is a terminal that does not turn it off, and
    /// lines when it is not.
    pub fn pick(format: OutputFormat, people: &Terminal) -> Self {
        match format {
            OutputFormat::Json => Door::Json,
            OutputFormat::Text if people.live() => Door::Live {
                colour: people.colour(),
                width: people.width(),
            },
            OutputFormat::Text => Door::Text {
                colour: people.colour(),
            },
        }
    }

    /// The door for a report of a simulated clock (a dry run): JSON or
    /// lines, never the live block.
    pub fn report(format: OutputFormat, colour: bool) -> Self {
        match format {
            OutputFormat::Json => Door::Json,
            OutputFormat::Text => Door::Text { colour },
        }
    }

    /// A renderer through this door for a rollout of `plan` with
    /// `strategy`, writing to `out`.
    pub fn open(self, out: impl Write + 'static, strategy: &str, plan: &Plan) -> Renderer {
        Renderer::new(match self {
            Door::Json => Box::new(Json::new(out)),
            Door::Text { colour } => Box::new(Text::new(out, colour, strategy, plan)),
            Door::Live { colour, width } => Box::new(Live::new(out, colour, width, strategy, plan)),
        })
    }
}

/// An output stream as the environment describes it: whether it is a
/// terminal, and the variables that turn terminal features off.
#[derive(Debug, Clone, Default)]
pub struct Terminal {
    /// Whether the stream is a terminal.
    pub is_terminal: bool,
    /// `NO_COLOR`: colour off when set and not empty (no-color.org).
    pub no_color: Option<OsString>,
    /// `ROLLOUT_NO_PROGRESS`: the live block off when set and not empty
    /// (`NO_COLOR` only turns colour off).
    pub no_progress: Option<OsString>,
    /// `COLUMNS`: the terminal's width.
    pub columns: Option<String>,
}

impl Terminal {
    /// Stderr, where people's output goes during a rollout.
    pub fn stderr() -> Self {
        Self::read(std::io::stderr().is_terminal())
    }

    /// Stdout, where a dry run's report goes.
    pub fn stdout() -> Self {
        Self::read(std::io::stdout().is_terminal())
    }

    fn read(is_terminal: bool) -> Self {
        Self {
            is_terminal,
            no_color: std::env::var_os("NO_COLOR"),
            no_progress: std::env::var_os("ROLLOUT_NO_PROGRESS"),
            columns: std::env::var("COLUMNS").ok(),
        }
    }

    /// Whether lines are coloured.
    pub fn colour(&self) -> bool {
        on_terminal_unless(self.is_terminal, self.no_color.as_deref())
    }

    /// Whether the live block is drawn.
    pub fn live(&self) -> bool {
        on_terminal_unless(self.is_terminal, self.no_progress.as_deref())
    }

    /// The width in columns, 80 when `COLUMNS` does not say.
    pub fn width(&self) -> usize {
        self.columns
            .as_deref()
            .and_then(|c| c.parse().ok())
            .unwrap_or(80)
    }
}

/// Sets the output of a rollout up, once: the door picked from the
/// requested format and stderr (see [`Door::pick`]); JSON goes to stdout,
/// everything for people to stderr.
pub fn setup(format: OutputFormat, strategy: &str, plan: &Plan) -> Renderer {
    let door = Door::pick(format, &Terminal::stderr());
    let out: Box<dyn Write> = match door {
        Door::Json => Box::new(std::io::stdout()),
        Door::Text { .. } | Door::Live { .. } => Box::new(std::io::stderr()),
    };
    door.open(out, strategy, plan)
}

/// Reports a run that never started: with `--output json`, its summary on
/// stdout (the error itself goes to stderr in every format, by the caller).
pub fn not_started(format: OutputFormat, dry_run: bool, exit_code: i32, error: &str) {
    if format == OutputFormat::Json {
        Json::new(std::io::stdout()).summary(&Summary::not_started(dry_run, exit_code, error));
    }
}

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

    #[test]
    fn the_door_is_picked_from_the_format_and_the_terminal() {
        let tty = Terminal {
            is_terminal: true,
            columns: Some("132".into()),
            ..Default::default()
        };
        assert_eq!(Door::pick(OutputFormat::Json, &tty), Door::Json);
        assert_eq!(
            Door::pick(OutputFormat::Text, &tty),
            Door::Live {
                colour: true,
                width: 132
            }
        );
        let no_progress = Terminal {
            no_progress: Some("1".into()),
            ..tty.clone()
        };
        assert_eq!(
            Door::pick(OutputFormat::Text, &no_progress),
            Door::Text { colour: true }
        );
        // NO_COLOR turns colour off, not the live block.
        let no_color = Terminal {
            no_color: Some("1".into()),
            columns: None,
            ..tty.clone()
        };
        assert_eq!(
            Door::pick(OutputFormat::Text, &no_color),
            Door::Live {
                colour: false,
                width: 80
            }
        );
        assert_eq!(
            Door::pick(OutputFormat::Text, &Terminal::default()),
            Door::Text { colour: false }
        );
        assert_eq!(
            Door::report(OutputFormat::Text, true),
            Door::Text { colour: true }
        );
    }
}
