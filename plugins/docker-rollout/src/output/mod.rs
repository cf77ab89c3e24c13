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
//! counts for the summary. What a run says before the plan exists (the
//! image pulled or built first) goes out through [`Prelude`]. The words the text doors share are in `style`.

mod json;
mod live;
mod prelude;
mod style;
mod summary;
mod text;

#[cfg(test)]
mod fixtures;

pub use json::Json;
pub use live::Live;
pub use prelude::Prelude;
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
    /// What ran before, as the rollout's start said.
    from: Option<rollout_core::Revision>,
}

impl Renderer {
    /// A renderer through `sink`, starting its clock now.
    pub fn new(sink: Box<dyn Sink>) -> Self {
        Self {
            sink,
            tally: Tally::default(),
            start: Instant::now(),
            from: None,
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

    /// What ran before the rollout, once its start has said (for the hooks).
    pub fn from(&self) -> Option<&rollout_core::Revision> {
        self.from.as_ref()
    }

    /// Counts and shows one event.
    pub fn event(&mut self, event: &Event) {
        let t = self.t();
        self.tally.count(event);
        if let Event::RolloutStarted { from, .. } = event {
            self.from.clone_from(from);
        }
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

/// An output stream as the terminal and the environment describe it:
/// whether it is a terminal, how wide the terminal says it is, and the
/// variables that turn terminal features on or off.
#[derive(Debug, Clone, Default)]
pub struct Terminal {
    /// Whether the stream is a terminal.
    pub is_terminal: bool,
    /// The width the terminal reports (`TIOCGWINSZ`), when it reports one;
    /// `$COLUMNS` is not read: a shell sets it for itself and does not
    /// export it, and it goes stale when the window is resized.
    pub columns: Option<usize>,
    /// `NO_COLOR`: colour off when set and not empty (no-color.org), even
    /// with `CLICOLOR_FORCE`.
    pub no_color: Option<OsString>,
    /// `CLICOLOR_FORCE`: colour on, terminal or not, when set, not empty
    /// and not `0` (bixense.com/clicolors).
    pub clicolor_force: Option<OsString>,
    /// `CLICOLOR`: `0` turns colour off on a terminal (bixense.com/clicolors).
    pub clicolor: Option<OsString>,
    /// `ROLLOUT_NO_PROGRESS`: the live block off when set and not empty
    /// (`NO_COLOR` only turns colour off).
    pub no_progress: Option<OsString>,
}

/// The width the live block assumes when the terminal does not say.
pub const DEFAULT_WIDTH: usize = 80;

impl Terminal {
    /// Stderr, where people's output goes during a rollout.
    pub fn stderr() -> Self {
        let err = std::io::stderr();
        Self::read(err.is_terminal(), terminal_columns(&err))
    }

    /// Stdout, where a dry run's report goes.
    pub fn stdout() -> Self {
        let out = std::io::stdout();
        Self::read(out.is_terminal(), terminal_columns(&out))
    }

    fn read(is_terminal: bool, columns: Option<usize>) -> Self {
        Self {
            is_terminal,
            columns: columns.filter(|_| is_terminal),
            no_color: std::env::var_os("NO_COLOR"),
            clicolor_force: std::env::var_os("CLICOLOR_FORCE"),
            clicolor: std::env::var_os("CLICOLOR"),
            no_progress: std::env::var_os("ROLLOUT_NO_PROGRESS"),
        }
    }

    /// Whether lines are coloured: never with `NO_COLOR`; always with
    /// `CLICOLOR_FORCE`; else on a terminal, unless `CLICOLOR=0`.
    pub fn colour(&self) -> bool {
        if set(self.no_color.as_deref()) {
            return false;
        }
        if set(self.clicolor_force.as_deref())
            && self.clicolor_force.as_deref() != Some("0".as_ref())
        {
            return true;
        }
        self.is_terminal && self.clicolor.as_deref() != Some("0".as_ref())
    }

    /// Whether the live block is drawn.
    pub fn live(&self) -> bool {
        on_terminal_unless(self.is_terminal, self.no_progress.as_deref())
    }

    /// The width in columns: what the terminal reports, else
    /// [`DEFAULT_WIDTH`].
    pub fn width(&self) -> usize {
        self.columns.unwrap_or(DEFAULT_WIDTH)
    }
}

/// The columns of the terminal behind `stream`, when it is one and says
/// (a pseudo-terminal nobody sized reports 0).
fn terminal_columns(stream: &impl std::os::fd::AsFd) -> Option<usize> {
    rustix::termios::tcgetwinsize(stream)
        .ok()
        .map(|size| usize::from(size.ws_col))
        .filter(|&columns| columns > 0)
}

/// Whether an environment switch is on: set and not empty.
fn set(value: Option<&std::ffi::OsStr>) -> bool {
    value.is_some_and(|v| !v.is_empty())
}

impl Door {
    /// What this door is, in words, and where its width comes from
    /// (printed with docker's `--debug`).
    pub fn describe(&self, people: &Terminal) -> String {
        let colour = |on: bool| if on { "colour on" } else { "colour off" };
        match self {
            Door::Json => "JSON events on stdout".to_string(),
            Door::Text { colour: c } => format!("one line per change on stderr, {}", colour(*c)),
            Door::Live { colour: c, width } => format!(
                "live progress on stderr, {width} columns ({}), {}",
                if people.columns.is_some() {
                    "from the terminal"
                } else {
                    "the terminal does not say"
                },
                colour(*c)
            ),
        }
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
            columns: Some(132),
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
        // NO_COLOR turns colour off, not the live block; a terminal that does
        // not say its width gets 80 columns.
        let no_color = Terminal {
            no_color: Some("1".into()),
            columns: None,
            ..tty.clone()
        };
        assert_eq!(
            Door::pick(OutputFormat::Text, &no_color),
            Door::Live {
                colour: false,
                width: DEFAULT_WIDTH
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

    #[test]
    fn colour_follows_no_color_then_clicolor_force_then_the_terminal() {
        let with =
            |tty: bool, no_color: Option<&str>, force: Option<&str>, clicolor: Option<&str>| {
                Terminal {
                    is_terminal: tty,
                    no_color: no_color.map(Into::into),
                    clicolor_force: force.map(Into::into),
                    clicolor: clicolor.map(Into::into),
                    ..Default::default()
                }
                .colour()
            };
        assert!(with(true, None, None, None));
        assert!(!with(false, None, None, None));
        // CLICOLOR_FORCE colours a pipe too, unless it is 0 or empty.
        assert!(with(false, None, Some("1"), None));
        assert!(!with(false, None, Some("0"), None));
        assert!(!with(false, None, Some(""), None));
        // NO_COLOR wins over CLICOLOR_FORCE; an empty NO_COLOR is unset.
        assert!(!with(true, Some("1"), Some("1"), None));
        assert!(with(true, Some(""), None, None));
        // CLICOLOR=0 turns a terminal's colour off; CLICOLOR_FORCE still wins.
        assert!(!with(true, None, None, Some("0")));
        assert!(with(true, None, None, Some("1")));
        assert!(with(true, None, Some("1"), Some("0")));
    }

    #[test]
    fn the_width_comes_from_the_terminal_or_is_80() {
        let tty = |columns| Terminal {
            is_terminal: true,
            columns,
            ..Default::default()
        };
        assert_eq!(tty(Some(37)).width(), 37);
        assert_eq!(tty(None).width(), 80);
        assert_eq!(
            Door::pick(OutputFormat::Text, &tty(Some(37))).describe(&tty(Some(37))),
            "live progress on stderr, 37 columns (from the terminal), colour on"
        );
        assert_eq!(
            Door::pick(OutputFormat::Text, &tty(None)).describe(&tty(None)),
            "live progress on stderr, 80 columns (the terminal does not say), colour on"
        );
        // A stream that is no terminal reports no width (a test's stderr is a pipe).
        assert_eq!(terminal_columns(&tempfile_like()), None);
    }

    /// A stream that is certainly not a terminal.
    fn tempfile_like() -> std::fs::File {
        std::fs::File::open("/dev/null").unwrap()
    }
}
