//! What a run says before its rollout starts, while the target is being
//! made ready: the image pulled from its registry (one `image-pull` event
//! per state a layer reaches) or built by the Compose tool. The rollout's
//! own door needs the plan, and the plan needs the target, which the pull
//! decides; so these go out through the door's format alone: JSON envelopes
//! on stdout with `--output json`, else one line each on stderr (before the
//! live block is drawn).

use super::json::Json;
use super::style::{stamp, stamped, Tone};
use super::Sink;
use crate::cli::OutputFormat;
use rollout_core::Event;
use std::io::Write;
use tokio::time::Instant;

/// The output before the rollout: JSON events, or lines for people.
pub struct Prelude {
    json: Option<Json<Box<dyn Write + Send>>>,
    people: Box<dyn Write + Send>,
    colour: bool,
    start: Instant,
}

impl Prelude {
    /// The prelude of a run in `format`; lines are coloured when `colour`.
    pub fn new(format: OutputFormat, colour: bool) -> Self {
        Self::to(
            format,
            colour,
            Box::new(std::io::stdout()),
            Box::new(std::io::stderr()),
        )
    }

    /// Writes events to `data` (JSON) and lines to `people`.
    fn to(
        format: OutputFormat,
        colour: bool,
        data: Box<dyn Write + Send>,
        people: Box<dyn Write + Send>,
    ) -> Self {
        Self {
            json: (format == OutputFormat::Json).then(|| Json::new(data)),
            people,
            colour,
            start: Instant::now(),
        }
    }

    /// One event: a JSON envelope, or a line.
    pub fn event(&mut self, event: &Event) {
        let t = self.start.elapsed().as_secs_f64();
        match &mut self.json {
            Some(json) => json.event(t, event),
            None => {
                let text = match event {
                    Event::ImagePull {
                        image,
                        layer,
                        status,
                        ..
                    } => match layer {
                        Some(layer) => format!("pull {image}: {layer}: {status}"),
                        None => format!("pull {image}: {status}"),
                    },
                    other => serde_json::to_string(other).unwrap_or_default(),
                };
                self.line(t, Tone::Dim, &text);
            }
        }
    }

    /// A line for people (never in JSON, which carries only events).
    pub fn note(&mut self, text: &str) {
        let t = self.start.elapsed().as_secs_f64();
        self.line(t, Tone::Warn, text);
    }

    fn line(&mut self, t: f64, tone: Tone, text: &str) {
        let stamp = stamp(t);
        stamped(&mut self.people, &stamp, tone.paint(self.colour), text);
        let _ = self.people.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// A writer whose bytes the test reads back.
    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Shared {
        fn text(&self) -> String {
            String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
        }
    }

    fn pull(layer: Option<&str>, status: &str) -> Event {
        Event::ImagePull {
            image: "127.0.0.1:5000/app:latest".into(),
            registry: "127.0.0.1:5000".into(),
            layer: layer.map(String::from),
            status: status.into(),
        }
    }

    #[test]
    fn a_pull_is_json_events_or_lines_for_people() {
        let (data, people) = (Shared::default(), Shared::default());
        let mut p = Prelude::to(
            OutputFormat::Json,
            false,
            Box::new(data.clone()),
            Box::new(people.clone()),
        );
        p.event(&pull(Some("3f2a9c1b7d0e"), "Pull complete"));
        p.note("pulling the image");
        let line: serde_json::Value = serde_json::from_str(data.text().trim()).unwrap();
        assert_eq!(line["v"], 1);
        assert_eq!(line["event"], "image-pull");
        assert_eq!(line["registry"], "127.0.0.1:5000");
        assert_eq!(line["layer"], "3f2a9c1b7d0e");
        assert_eq!(line["status"], "Pull complete");
        assert!(
            people.text().ends_with("pulling the image\n"),
            "{}",
            people.text()
        );

        let (data, people) = (Shared::default(), Shared::default());
        let mut p = Prelude::to(
            OutputFormat::Text,
            false,
            Box::new(data.clone()),
            Box::new(people.clone()),
        );
        p.event(&pull(Some("3f2a9c1b7d0e"), "Download complete"));
        p.event(&pull(None, "Status: Downloaded newer image"));
        assert_eq!(data.text(), "");
        let said = people.text();
        let lines: Vec<&str> = said.lines().map(|l| l.trim_start()).collect();
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert!(
            lines[0]
                .ends_with("s  pull 127.0.0.1:5000/app:latest: 3f2a9c1b7d0e: Download complete"),
            "{lines:?}"
        );
        assert!(
            lines[1].ends_with("s  pull 127.0.0.1:5000/app:latest: Status: Downloaded newer image"),
            "{lines:?}"
        );
    }
}
