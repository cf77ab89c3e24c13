//! Live progress on a terminal, in the shape of `docker service update`.
//!
//! When stderr is a terminal, a block is drawn below the log and redrawn in
//! place on every event (cursor up, clear to the end of the screen, draw):
//!
//! ```text
//! overall progress: 2 out of 6 tasks
//! 1/6: routed    [====================>]  app_7 (old app_1 removed)
//! 2/6: starting  [======>              ]  app_8 (old app_2 removed)
//! 3/6: new       [>                    ]
//! canary: 20% of requests to the new revision
//! verify: Waiting 30 seconds to verify that tasks are stable...
//! rollback: 1 of 2 slots failed, more than max_failure_ratio 0
//! ```
//!
//! Lines that must stay (the start, notes, failures with their logs, the
//! outcome) are written above the block, so the scrollback keeps them. The
//! plain one-line-per-change [`super::Text`] stays the door for anything
//! that is not a terminal, and for `ROLLOUT_NO_PROGRESS`.

use super::style::{outcome_line, stamp, stamped, started_line, Tone};
use super::Sink;
use rollout_core::router::Target;
use rollout_core::strategy::{Plan, StrategyKind};
use rollout_core::{Event, InstanceId, Outcome};
use std::collections::HashMap;
use std::io::Write;

/// Where one instance is, in the order the block shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Starting,
    Healthy,
    Routed,
    Failed,
    Draining,
    Drained,
    Stopped,
    Removed,
}

impl State {
    fn word(self) -> &'static str {
        match self {
            State::Starting => "starting",
            State::Healthy => "healthy",
            State::Routed => "routed",
            State::Failed => "failed",
            State::Draining => "draining",
            State::Drained => "drained",
            State::Stopped => "stopped",
            State::Removed => "removed",
        }
    }

    /// How far along the new instance's way (new, starting, healthy,
    /// routed) the bar is filled, out of 3.
    fn step(self) -> usize {
        match self {
            State::Starting => 1,
            State::Healthy => 2,
            State::Routed => 3,
            _ => 0,
        }
    }

    /// Whether the instance no longer runs (or serves).
    fn gone(self) -> bool {
        matches!(
            self,
            State::Failed | State::Drained | State::Stopped | State::Removed
        )
    }
}

#[derive(Debug, Clone, Default)]
struct Slot {
    new: Option<(InstanceId, State)>,
    old: Option<(InstanceId, State)>,
    /// The old instance was launched by this run (a rollback put the
    /// previous revision back).
    restored: bool,
}

const BAR: usize = 20;

/// Draws the live block on a terminal.
pub struct Live<W: Write> {
    out: W,
    colour: bool,
    width: usize,
    /// The built-in strategy the rollout runs, if it is one (a custom one names itself).
    kind: Option<StrategyKind>,
    plan: Plan,
    hosts: HashMap<InstanceId, String>,
    slots: Vec<Slot>,
    rolling_back: bool,
    canary: Option<String>,
    verify: Option<(String, f64, Option<f64>)>,
    rollback: Vec<String>,
    /// Lines of the block on screen now (to go up over them).
    drawn: usize,
}

impl<W: Write> Live<W> {
    /// A block for a rollout of `plan` with `strategy`, written to `out`
    /// (a terminal `width` columns wide; lines are cut to fit so that the
    /// cursor arithmetic holds).
    pub fn new(out: W, colour: bool, width: usize, strategy: &str, plan: &Plan) -> Self {
        Self {
            out,
            colour,
            width: width.max(20),
            kind: strategy.parse().ok(),
            plan: plan.clone(),
            hosts: HashMap::new(),
            slots: vec![Slot::default(); plan.replicas],
            rolling_back: false,
            canary: None,
            verify: None,
            rollback: Vec::new(),
            drawn: 0,
        }
    }

    /// The host without its `project_` prefix, so that a row fits a line.
    fn name(&self, id: &InstanceId) -> String {
        let prefix = format!("{}_", self.plan.service.project);
        match self.hosts.get(id) {
            Some(h) => h.strip_prefix(&prefix).unwrap_or(h).to_string(),
            None if id.0.starts_with("already-new-") => "(already new)".to_string(),
            None => id.0.chars().take(12).collect(),
        }
    }

    fn find(&self, id: &InstanceId) -> Option<(usize, bool)> {
        self.slots.iter().enumerate().find_map(|(i, s)| {
            if s.new.as_ref().is_some_and(|(n, _)| n == id) {
                Some((i, true))
            } else if s.old.as_ref().is_some_and(|(o, _)| o == id) {
                Some((i, false))
            } else {
                None
            }
        })
    }

    /// Sets the state of `id`; an instance not seen yet is the old one of
    /// the first slot that has none.
    fn set(&mut self, id: &InstanceId, state: State) {
        let (i, new) = match self.find(id) {
            Some(found) => found,
            None => {
                let i = match self.slots.iter().position(|s| s.old.is_none()) {
                    Some(i) => i,
                    None => {
                        self.slots.push(Slot::default());
                        self.slots.len() - 1
                    }
                };
                (i, false)
            }
        };
        let cell = if new {
            &mut self.slots[i].new
        } else {
            &mut self.slots[i].old
        };
        *cell = Some((id.clone(), state));
    }

    fn launched(&mut self, id: &InstanceId, is_new: bool) {
        if self.find(id).is_some() {
            self.set(id, State::Starting);
            return;
        }
        let free = |s: &Slot| {
            if is_new {
                s.new.is_none()
            } else {
                s.old.as_ref().is_none_or(|(_, st)| st.gone())
            }
        };
        // The previous revision goes back first where the new one is gone.
        let replaced = |s: &Slot| free(s) && s.new.as_ref().is_none_or(|(_, st)| st.gone());
        let spot = match is_new {
            true => self.slots.iter().position(free),
            false => self
                .slots
                .iter()
                .position(replaced)
                .or_else(|| self.slots.iter().position(free)),
        };
        let i = match spot {
            Some(i) => i,
            None => {
                self.slots.push(Slot::default());
                self.slots.len() - 1
            }
        };
        let slot = &mut self.slots[i];
        if is_new {
            slot.new = Some((id.clone(), State::Starting));
        } else {
            slot.old = Some((id.clone(), State::Starting));
            slot.restored = true;
        }
    }

    fn new_routed(&self) -> usize {
        self.slots
            .iter()
            .filter(|s| s.new.as_ref().is_some_and(|(_, st)| *st == State::Routed))
            .count()
    }

    fn new_healthy(&self) -> usize {
        self.slots
            .iter()
            .filter(|s| {
                s.new
                    .as_ref()
                    .is_some_and(|(_, st)| matches!(st, State::Healthy | State::Routed))
            })
            .count()
    }

    /// The block, line by line.
    pub fn frame(&self, t: f64) -> Vec<String> {
        let total = self.slots.len();
        let mut lines = Vec::new();
        if self.rolling_back {
            let restored = self
                .slots
                .iter()
                .filter(|s| s.new.as_ref().is_none_or(|(_, st)| st.gone()))
                .count();
            lines.push(format!(
                "overall progress: rolling back update: {restored} out of {total} tasks"
            ));
        } else {
            lines.push(format!(
                "overall progress: {} out of {total} tasks",
                self.new_routed()
            ));
        }
        for (i, slot) in self.slots.iter().enumerate() {
            let (word, step) = match &slot.new {
                Some((_, st)) => (st.word(), st.step()),
                None => ("new", 0),
            };
            let fill = step * BAR / 3;
            let bar = if fill >= BAR {
                format!("{}>", "=".repeat(BAR))
            } else {
                format!("{}>{}", "=".repeat(fill), " ".repeat(BAR - fill))
            };
            let mut row = format!("{}/{total}: {word:<9} [{bar}]", i + 1);
            let new = slot.new.as_ref().map(|(id, _)| self.name(id));
            let old = slot.old.as_ref().map(|(id, st)| {
                let which = if slot.restored {
                    "previous revision"
                } else {
                    "old"
                };
                format!("{which} {} {}", self.name(id), st.word())
            });
            match (new, old) {
                (Some(n), Some(o)) => row.push_str(&format!("  {n} ({o})")),
                (Some(n), None) => row.push_str(&format!("  {n}")),
                (None, Some(o)) => row.push_str(&format!("  ({o})")),
                (None, None) => {}
            }
            lines.push(row);
        }
        if let Some(c) = &self.canary {
            lines.push(format!("canary: {c}"));
        }
        if let Some((text, since, secs)) = &self.verify {
            let text = match secs {
                Some(s) => {
                    let left = (s - (t - since)).max(0.0).ceil();
                    format!("Waiting {left:.0} seconds to verify that tasks are stable...")
                }
                None => text.clone(),
            };
            lines.push(format!("verify: {text}"));
        }
        for r in &self.rollback {
            lines.push(format!("rollback: {r}"));
        }
        lines
    }

    fn erase(&mut self) {
        if self.drawn > 0 {
            let _ = write!(self.out, "\x1b[{}A\r\x1b[J", self.drawn);
            self.drawn = 0;
        }
    }

    fn draw(&mut self, t: f64) {
        self.erase();
        let lines = self.frame(t);
        for l in &lines {
            let cut: String = l.chars().take(self.width - 1).collect();
            let _ = writeln!(self.out, "{cut}");
        }
        self.drawn = lines.len();
        let _ = self.out.flush();
    }

    /// Writes `text` above the block, where it stays. Unlike a text line,
    /// its time stamp is never faint.
    fn log(&mut self, t: f64, tone: Tone, text: &str) {
        self.erase();
        stamped(&mut self.out, &stamp(t), tone.paint(self.colour), text);
    }

    /// Redraws (the verify countdown moves with the clock); the block has
    /// no quiet waits to repeat.
    pub fn tick(&mut self, t: f64) {
        if self.drawn > 0 {
            self.draw(t);
        }
    }
}

impl<W: Write> Sink for Live<W> {
    fn event(&mut self, t: f64, event: &Event) {
        match event {
            Event::RolloutStarted {
                service,
                strategy,
                from,
                to,
                slots,
                resumed,
            } => {
                if *slots > self.slots.len() {
                    self.slots.resize(*slots, Slot::default());
                }
                let text = started_line(service, strategy, (from.as_ref(), to), "", *resumed);
                self.log(t, Tone::Plain, &text);
            }
            Event::InstanceLaunched {
                instance,
                host,
                revision,
            } => {
                self.hosts.insert(instance.clone(), host.clone());
                let is_new = *revision == self.plan.target.id;
                self.launched(instance, is_new);
            }
            Event::InstanceHealthy { instance } => {
                self.set(instance, State::Healthy);
                if self.kind == Some(StrategyKind::Rolling)
                    && !self.rolling_back
                    && self.new_healthy() == self.slots.len()
                {
                    let watch = self.plan.update.final_watch().as_secs_f64();
                    if watch > 0.0 {
                        self.verify = Some((String::new(), t, Some(watch)));
                    }
                }
            }
            Event::TrafficChanged { set, removed, .. } => {
                let by_service = set
                    .iter()
                    .any(|r| matches!(&r.target, Target::Service { name } if *name == self.plan.service.service));
                for r in set {
                    if let Target::Instance { id, host } = &r.target {
                        if !host.is_empty() {
                            self.hosts.insert(id.clone(), host.clone());
                        }
                        if self.find(id).is_some() {
                            self.set(id, State::Routed);
                        }
                    }
                }
                if by_service {
                    for s in &mut self.slots {
                        for (_, st) in s.new.iter_mut().chain(s.old.iter_mut()) {
                            if *st == State::Healthy {
                                *st = State::Routed;
                            }
                        }
                    }
                } else {
                    for r in removed {
                        if let Target::Instance { id, host } = r {
                            if !host.is_empty() {
                                self.hosts.insert(id.clone(), host.clone());
                            }
                            self.set(id, State::Draining);
                        }
                    }
                }
            }
            Event::Drained { removed, .. } => {
                for r in removed {
                    if let Target::Instance { id, .. } = r {
                        if self.find(id).is_some() {
                            self.set(id, State::Drained);
                        }
                    }
                }
            }
            Event::InstanceStopped { instance } => self.set(instance, State::Stopped),
            Event::InstanceRemoved { instance } => self.set(instance, State::Removed),
            Event::WeightsChanged { new_percent } => {
                self.canary = Some(format!(
                    "{new_percent}% of requests to the new revision [{}]",
                    percent_bar(*new_percent)
                ));
            }
            Event::StepPaused { step, for_secs } => {
                let hold = match for_secs {
                    Some(s) => format!("holding for {s:.0}s"),
                    None => "holding until promoted".to_string(),
                };
                let base = self.canary.clone().unwrap_or_default();
                let base = base.split(" (step").next().unwrap_or_default().to_string();
                self.canary = Some(format!("{base} (step {step} {hold})"));
            }
            Event::Paused { reason, at } => {
                self.log(
                    t,
                    Tone::Warn,
                    &format!(
                        "paused by the {reason} at {at} (`docker rollout resume {}` goes on)",
                        self.plan.service.service
                    ),
                );
            }
            Event::Resumed { reason, held_secs } => {
                self.log(
                    t,
                    Tone::Plain,
                    &format!("resumed by the {reason} after {held_secs:.0}s"),
                );
            }
            Event::Promoted { step, full } => {
                let to = if *full {
                    "to the last step"
                } else {
                    "to the next step"
                };
                self.log(
                    t,
                    Tone::Plain,
                    &format!("step {step} promoted by the operator, {to}"),
                );
            }
            Event::Analysis { step, verdict } => {
                self.log(
                    t,
                    Tone::Plain,
                    &format!("step {step}: analysis {verdict:?}"),
                );
            }
            Event::FailureCounted {
                instance,
                failure,
                failures,
                slots,
                diagnostics,
            } => {
                self.set(instance, State::Failed);
                let mut text = format!(
                    "{} failed: {failure} ({failures} of {slots} slots failed)",
                    self.name(instance)
                );
                for l in &diagnostics.last_logs {
                    text.push_str(&format!("\n  log: {l}"));
                }
                for l in &diagnostics.health_log {
                    text.push_str(&format!("\n  health: {l}"));
                }
                self.log(t, Tone::Bad, &text);
            }
            Event::RollbackStarted { reason } => {
                self.rolling_back = true;
                self.verify = None;
                self.rollback.push(reason.clone());
            }
            Event::Finished { outcome } => {
                self.verify = match outcome {
                    Outcome::Completed => {
                        Some((format!("Service {} converged", self.plan.service), t, None))
                    }
                    _ => None,
                };
                if let Outcome::RolledBack(_) = outcome {
                    self.rollback.push("rollback completed".to_string());
                }
                self.draw(t);
                // The block stays as it is; the outcome goes below it.
                self.drawn = 0;
                let (tone, text) = outcome_line(&self.plan, outcome);
                self.log(t, tone, &text);
                let _ = self.out.flush();
                return;
            }
            _ => {}
        }
        self.draw(t);
    }

    fn know_host(&mut self, id: InstanceId, host: &str) {
        self.hosts.insert(id, host.to_string());
    }

    /// Their slots show routed.
    fn already_new(&mut self, n: usize) {
        for (i, slot) in self.slots.iter_mut().take(n).enumerate() {
            slot.new = Some((InstanceId(format!("already-new-{i}")), State::Routed));
        }
    }

    /// Kept above the block.
    fn note(&mut self, t: f64, text: &str) {
        self.log(t, Tone::Warn, text);
        self.draw(t);
    }

    fn tick(&mut self, t: f64, _quiet: f64) {
        Live::tick(self, t);
    }
}

fn percent_bar(p: u32) -> String {
    let fill = (p.min(100) as usize) * BAR / 100;
    format!("{}{}", "#".repeat(fill), ".".repeat(BAR - fill))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rollout_core::backend::{Diagnostics, Failure};
    use rollout_core::router::{DrainReport, Route};
    use rollout_core::{FailureAction, Revision, ServiceRef};
    use std::time::Duration;

    const NEW: &str = "9c1b7d0e5a3f44";

    fn plan() -> Plan {
        let mut p = Plan::new(
            ServiceRef::new("shop", "app"),
            Revision::new(NEW, "rollout-demo:v2"),
            2,
        );
        p.update.parallelism = 1;
        p.update.failure_action = FailureAction::Rollback;
        p.update.monitor = Duration::from_secs(30);
        p
    }

    fn id(n: &str) -> InstanceId {
        InstanceId(format!("id-{n}"))
    }

    fn inst(n: &str) -> Target {
        Target::instance(id(n), n)
    }

    fn started() -> Event {
        Event::RolloutStarted {
            service: ServiceRef::new("shop", "app"),
            strategy: "rolling".into(),
            from: Some(Revision::new("3f2a9c1b7d0e88", "")),
            to: plan().target,
            slots: 2,
            resumed: false,
        }
    }

    /// Slot `n` of a stop-first rolling update: `old` out and gone, `new`
    /// launched and healthy (routing it is left to the caller).
    fn slot(old: &str, new: &str) -> Vec<Event> {
        vec![
            Event::TrafficChanged {
                generation: 2,
                set: vec![],
                removed: vec![inst(old)],
            },
            Event::Drained {
                removed: vec![inst(old)],
                report: DrainReport {
                    waited_for: vec![],
                    elapsed: Duration::from_millis(10),
                    timed_out: false,
                    cut: vec![],
                },
            },
            Event::InstanceStopped { instance: id(old) },
            Event::InstanceRemoved { instance: id(old) },
            Event::InstanceLaunched {
                instance: id(new),
                host: new.into(),
                revision: NEW.into(),
            },
            Event::InstanceHealthy { instance: id(new) },
        ]
    }

    fn routed(new: &str) -> Event {
        Event::TrafficChanged {
            generation: 3,
            set: vec![Route {
                target: inst(new),
                weight: 1,
            }],
            removed: vec![],
        }
    }

    /// What a terminal shows after `bytes`: handles `\n`, `\r`, cursor up
    /// (`ESC [ n A`) and clear to the end of the screen (`ESC [ J`); any
    /// other escape fails the test.
    fn screen(bytes: &[u8]) -> String {
        let text = String::from_utf8(bytes.to_vec()).unwrap();
        let mut rows: Vec<String> = vec![String::new()];
        let mut row = 0usize;
        let mut chars = text.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '\n' => {
                    row += 1;
                    if row == rows.len() {
                        rows.push(String::new());
                    }
                }
                '\r' => {}
                '\x1b' => {
                    assert_eq!(chars.next(), Some('['), "{text:?}");
                    let mut n = String::new();
                    while let Some(d) = chars.peek().filter(|d| d.is_ascii_digit()) {
                        n.push(*d);
                        chars.next();
                    }
                    match chars.next() {
                        Some('A') => row -= n.parse::<usize>().unwrap_or(1),
                        Some('J') => {
                            rows.truncate(row + 1);
                            rows[row].clear();
                        }
                        other => panic!("unexpected escape {other:?} in {text:?}"),
                    }
                }
                c => rows[row].push(c),
            }
        }
        rows.join("\n")
    }

    fn run(events: &[(f64, Event)]) -> Vec<u8> {
        let mut out = Vec::new();
        {
            let mut live = Live::new(&mut out, false, 120, "rolling", &plan());
            live.know_host(id("shop_app_1"), "shop_app_1");
            live.know_host(id("shop_app_2"), "shop_app_2");
            for (t, e) in events {
                live.event(*t, e);
            }
        }
        out
    }

    /// The start, and the first slot replaced and its new instance routed.
    fn first_slot_routed() -> Vec<(f64, Event)> {
        let mut ev = vec![(0.0, started())];
        ev.extend(
            slot("shop_app_1", "shop_app_3")
                .into_iter()
                .map(|e| (1.0, e)),
        );
        ev.push((2.0, routed("shop_app_3")));
        ev
    }

    fn success() -> Vec<(f64, Event)> {
        let mut ev = first_slot_routed();
        ev.extend(
            slot("shop_app_2", "shop_app_4")
                .into_iter()
                .map(|e| (3.0, e)),
        );
        ev.push((4.0, routed("shop_app_4")));
        ev
    }

    #[test]
    fn the_block_counts_routed_slots_and_shows_each_slot() {
        let ev = success();
        // Mid-way: slot 1 done, slot 2's old instance is draining.
        let mid = screen(&run(&ev[..9]));
        assert_eq!(
            mid,
            "    0.0s  rolling out shop/app with rolling: revision 3f2a9c1b7d0e -> rollout-demo:v2 (9c1b7d0e5a3f)\n\
             overall progress: 1 out of 2 tasks\n\
             1/2: routed    [====================>]  app_3 (old app_1 removed)\n\
             2/2: new       [>                    ]  (old app_2 draining)\n"
        );
        let end = screen(&run(&ev));
        assert!(
            end.contains("overall progress: 2 out of 2 tasks\n"),
            "{end}"
        );
        assert!(
            end.contains("2/2: routed    [====================>]  app_4 (old app_2 removed)\n"),
            "{end}"
        );
    }

    #[test]
    fn the_monitor_window_shows_a_verify_line_that_counts_down() {
        let mut ev = success();
        let mut out = Vec::new();
        {
            let mut live = Live::new(&mut out, false, 120, "rolling", &plan());
            for (t, e) in ev.drain(..) {
                live.event(t, &e);
            }
            // Both new instances were healthy at t=3.0; the window is 30s.
            live.tick(13.0);
        }
        let s = screen(&out);
        assert!(
            s.ends_with("verify: Waiting 20 seconds to verify that tasks are stable...\n"),
            "{s}"
        );
        let mut out2 = Vec::new();
        {
            let mut live = Live::new(&mut out2, false, 120, "rolling", &plan());
            for (t, e) in success() {
                live.event(t, &e);
            }
            live.event(
                33.0,
                &Event::Finished {
                    outcome: Outcome::Completed,
                },
            );
        }
        let s = screen(&out2);
        assert!(s.contains("verify: Service shop/app converged\n"), "{s}");
        assert!(
            s.ends_with(
                "   33.0s  rollout complete: every instance of shop/app runs rollout-demo:v2 (9c1b7d0e5a3f)\n"
            ),
            "{s}"
        );
    }

    #[test]
    fn a_rollback_shows_rollback_lines_and_keeps_the_failure_above() {
        let mut ev = first_slot_routed();
        let mut second = slot("shop_app_2", "shop_app_4");
        second.pop(); // never healthy
        ev.extend(second.into_iter().map(|e| (3.0, e)));
        ev.push((
            63.0,
            Event::FailureCounted {
                instance: id("shop_app_4"),
                failure: Failure::StartTimeout,
                failures: 1,
                slots: 2,
                diagnostics: Diagnostics {
                    last_logs: vec!["listening on :8000".into()],
                    health_log: vec![],
                },
            },
        ));
        ev.push((
            63.1,
            Event::RollbackStarted {
                reason: "1 of 2 slots failed, more than max_failure_ratio 0".into(),
            },
        ));
        ev.push((
            64.0,
            Event::TrafficChanged {
                generation: 4,
                set: vec![],
                removed: vec![inst("shop_app_3")],
            },
        ));
        ev.push((
            65.0,
            Event::InstanceRemoved {
                instance: id("shop_app_4"),
            },
        ));
        ev.push((
            66.0,
            Event::InstanceLaunched {
                instance: id("shop_app_5"),
                host: "shop_app_5".into(),
                revision: "3f2a9c1b7d0e88".into(),
            },
        ));
        ev.push((
            67.0,
            Event::InstanceHealthy {
                instance: id("shop_app_5"),
            },
        ));
        let s = screen(&run(&ev));
        assert!(
            s.contains("   63.0s  app_4 failed: "),
            "the failure stays above the block: {s}"
        );
        assert!(
            s.contains("\n              log: listening on :8000\n"),
            "{s}"
        );
        assert!(
            s.contains("overall progress: rolling back update: 1 out of 2 tasks\n"),
            "slot 2 runs no new instance any more, slot 1 still does: {s}"
        );
        assert!(
            s.contains("1/2: draining  [>                    ]  app_3 (old app_1 removed)\n"),
            "{s}"
        );
        assert!(
            s.contains(
                "2/2: removed   [>                    ]  app_4 (previous revision app_5 healthy)\n"
            ),
            "{s}"
        );
        assert!(
            s.ends_with("rollback: 1 of 2 slots failed, more than max_failure_ratio 0\n"),
            "{s}"
        );
    }

    #[test]
    fn canary_weights_get_a_row() {
        let mut out = Vec::new();
        {
            let mut live = Live::new(&mut out, false, 120, "canary", &plan());
            live.event(0.0, &started());
            live.event(1.0, &Event::WeightsChanged { new_percent: 25 });
            live.event(
                1.0,
                &Event::StepPaused {
                    step: 1,
                    for_secs: Some(30.0),
                },
            );
        }
        let s = screen(&out);
        assert!(
            s.ends_with("canary: 25% of requests to the new revision [#####...............] (step 1 holding for 30s)\n"),
            "{s}"
        );
    }

    #[test]
    fn frames_are_redrawn_in_place_with_cursor_up_and_clear() {
        let ev = success();
        let out = run(&ev[..3]);
        let visible = String::from_utf8(out)
            .unwrap()
            .replace('\x1b', "<ESC>")
            .replace('\r', "<CR>");
        insta::assert_snapshot!("live_frames_first_events", visible);
    }

    #[test]
    fn lines_are_cut_to_the_terminal_width() {
        let mut out = Vec::new();
        {
            let mut live = Live::new(&mut out, false, 30, "rolling", &plan());
            live.event(1.0, &slot("shop_app_1", "shop_app_3")[4]);
        }
        let s = screen(&out);
        for l in s.lines() {
            assert!(l.chars().count() < 30, "{l:?}");
        }
        assert!(s.contains("1/2: starting  [======>"), "{s}");
    }
}
