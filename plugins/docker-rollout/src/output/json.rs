//! The JSON door (`--output json`): one versioned envelope per event on
//! stdout, as `rollout_core::event` defines it, then one summary line.
//! Nothing for people goes here; notes and reports stay on the other doors.

use super::summary::{round_ms, Summary};
use super::Sink;
use rollout_core::event::{Envelope, EVENT_SCHEMA_VERSION};
use rollout_core::Event;
use serde::Serialize;
use std::io::Write;

#[derive(Serialize)]
struct SummaryLine<'a> {
    v: u32,
    summary: &'a Summary,
}

/// Writes one JSON envelope per event, then the summary.
pub struct Json<W: Write> {
    out: W,
}

impl<W: Write> Json<W> {
    /// Writes to `out` (stdout).
    pub fn new(out: W) -> Self {
        Self { out }
    }
}

impl<W: Write> Sink for Json<W> {
    fn event(&mut self, t: f64, event: &Event) {
        let envelope = Envelope {
            v: EVENT_SCHEMA_VERSION,
            t: round_ms(t),
            event: event.clone(),
        };
        if let Ok(line) = serde_json::to_string(&envelope) {
            // A reader that went away loses nothing it needs.
            let _ = writeln!(self.out, "{line}");
            let _ = self.out.flush();
        }
    }

    fn summary(&mut self, summary: &Summary) {
        let line = SummaryLine {
            v: EVENT_SCHEMA_VERSION,
            summary,
        };
        if let Ok(line) = serde_json::to_string(&line) {
            let _ = writeln!(self.out, "{line}");
            let _ = self.out.flush();
        }
    }

    /// As it is, on a line of its own.
    fn data(&mut self, value: &serde_json::Value) {
        let _ = writeln!(self.out, "{value}");
        let _ = self.out.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::fixtures::{events, plan};
    use crate::output::summary::Tally;
    use rollout_core::Outcome;

    #[test]
    fn json_is_one_envelope_per_event_then_a_summary() {
        let mut out = Vec::new();
        let mut tally = Tally::default();
        {
            let mut j = Json::new(&mut out);
            for (at, e) in events() {
                tally.count(&e);
                j.event(at, &e);
            }
            j.summary(&Summary {
                service: Some("shop/app".into()),
                strategy: Some("rolling".into()),
                dry_run: false,
                outcome: Some(Outcome::RolledBack("x".into())),
                exit_code: 3,
                error: None,
                elapsed_secs: 95.0,
                from: None,
                to: Some(plan().target),
                counts: tally.clone(),
            });
        }
        let out = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), events().len() + 1);
        for (line, (at, e)) in lines.iter().zip(events()) {
            let env: Envelope = serde_json::from_str(line).unwrap();
            assert_eq!(env.v, EVENT_SCHEMA_VERSION);
            assert_eq!(env.t, at);
            assert_eq!(env.event, e);
        }
        let last: serde_json::Value = serde_json::from_str(lines.last().unwrap()).unwrap();
        assert_eq!(last["v"], 1);
        assert_eq!(last["summary"]["exit_code"], 3);
        assert_eq!(last["summary"]["outcome"]["outcome"], "rolled-back");
        assert_eq!(tally.launched, 2);
        assert_eq!(tally.failures, 1);
        assert_eq!(tally.drains_timed_out, 1);
        assert!(tally.rolled_back);
        insta::assert_snapshot!("json_rolling_with_rollback", out);
    }
}
