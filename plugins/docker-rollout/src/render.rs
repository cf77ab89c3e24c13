//! How a rollout's events look: one line per state change (text), or one
//! JSON envelope per event and a final summary (`--output json`).
//!
//! The strategies only send [`Event`]s; everything a person reads is
//! decided here. Text goes to stderr (progress is not data), JSON to stdout
//! (it is). Every line that starts a wait says what it waits for and for
//! how long at most, and [`Text::tick`] repeats it when a wait drags on, so
//! that a silent terminal never means a hung tool.

use rollout_core::event::{Envelope, EVENT_SCHEMA_VERSION};
use rollout_core::router::{DrainReport, Target};
use rollout_core::strategy::{Plan, TrafficLayout, Verdict};
use rollout_core::{format_duration, Event, InstanceId, Outcome, Revision};
use serde::Serialize;
use std::collections::{BTreeSet, HashMap};
use std::io::Write;
use std::time::Duration;

/// What a run did, counted from its events, for the final summary.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Tally {
    /// Instances launched.
    pub launched: usize,
    /// Instances that passed their health check.
    pub healthy: usize,
    /// Traffic changes applied (one proxy reload each).
    pub traffic_changes: usize,
    /// Drains waited for.
    pub drains: usize,
    /// Drains that ran out of time (requests were cut).
    pub drains_timed_out: usize,
    /// Instances stopped.
    pub stopped: usize,
    /// Instances removed.
    pub removed: usize,
    /// Failures counted toward max_failure_ratio.
    pub failures: usize,
    /// Whether a rollback ran.
    pub rolled_back: bool,
}

impl Tally {
    /// Counts one event.
    pub fn count(&mut self, event: &Event) {
        match event {
            Event::InstanceLaunched { .. } => self.launched += 1,
            Event::InstanceHealthy { .. } => self.healthy += 1,
            Event::TrafficChanged { .. } => self.traffic_changes += 1,
            Event::Drained { report, .. } => {
                self.drains += 1;
                if report.timed_out {
                    self.drains_timed_out += 1;
                }
            }
            Event::InstanceStopped { .. } => self.stopped += 1,
            Event::InstanceRemoved { .. } => self.removed += 1,
            Event::FailureCounted { .. } => self.failures += 1,
            Event::RollbackStarted { .. } => self.rolled_back = true,
            _ => {}
        }
    }
}

/// The last line of `--output json`: `{"v":1,"summary":{...}}`.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    /// `project/service`.
    pub service: Option<String>,
    /// The strategy's name.
    pub strategy: Option<String>,
    /// Whether this was `--dry-run` (nothing was touched).
    pub dry_run: bool,
    /// How the rollout ended; `None` when it never started.
    pub outcome: Option<Outcome>,
    /// The process's exit code.
    pub exit_code: i32,
    /// Why it never started (bad input, unreachable engine), if so.
    pub error: Option<String>,
    /// Seconds from start to end (simulated for a dry run).
    pub elapsed_secs: f64,
    /// The revision that served before.
    pub from: Option<Revision>,
    /// The revision rolled out.
    pub to: Option<Revision>,
    /// What the run did.
    pub counts: Tally,
}

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

    /// One event, `t` seconds after the start.
    pub fn event(&mut self, t: f64, event: &Event) {
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

    /// The final summary line.
    pub fn summary(&mut self, summary: &Summary) {
        let line = SummaryLine {
            v: EVENT_SCHEMA_VERSION,
            summary,
        };
        if let Ok(line) = serde_json::to_string(&line) {
            let _ = writeln!(self.out, "{line}");
            let _ = self.out.flush();
        }
    }

    /// Any other JSON line (the dry run's plan).
    pub fn value(&mut self, value: &serde_json::Value) {
        let _ = writeln!(self.out, "{value}");
        let _ = self.out.flush();
    }
}

fn round_ms(t: f64) -> f64 {
    (t * 1000.0).round() / 1000.0
}

/// Whether a terminal-only feature is on: the output is a terminal and its
/// off switch (an environment variable's value) is unset or empty. Colour
/// with `NO_COLOR` (no-color.org); live progress with `ROLLOUT_NO_PROGRESS`
/// (`NO_COLOR` only turns colour off; `--output json` never gets there).
pub fn on_terminal_unless(is_terminal: bool, off: Option<&std::ffi::OsStr>) -> bool {
    is_terminal && off.is_none_or(|v| v.is_empty())
}

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

/// Writes one line per state change, like `kubectl rollout status`.
pub struct Text<W: Write> {
    out: W,
    colour: bool,
    strategy: String,
    plan: Plan,
    hosts: HashMap<InstanceId, String>,
    new_instances: BTreeSet<InstanceId>,
    new_healthy: usize,
    slots: usize,
    /// What the rollout waits for now, and since when (`t`), for [`Text::tick`].
    waiting: Option<(String, f64)>,
    last_line: f64,
}

impl<W: Write> Text<W> {
    /// A renderer of a rollout of `plan` with `strategy`, writing to `out`.
    pub fn new(out: W, colour: bool, strategy: &str, plan: &Plan) -> Self {
        Self {
            out,
            colour,
            strategy: strategy.to_string(),
            plan: plan.clone(),
            hosts: HashMap::new(),
            new_instances: BTreeSet::new(),
            new_healthy: 0,
            slots: plan.replicas,
            waiting: None,
            last_line: 0.0,
        }
    }

    /// Counts instances that already ran the target revision, healthy,
    /// when the rollout started (a resumed run), in the progress of new
    /// instances.
    pub fn already_new(&mut self, n: usize) {
        self.new_healthy = n;
    }

    /// Names an instance by its host (container name) rather than its id.
    pub fn know_host(&mut self, id: InstanceId, host: impl Into<String>) {
        self.hosts.insert(id, host.into());
    }

    fn name(&self, id: &InstanceId) -> String {
        match self.hosts.get(id) {
            Some(h) => h.clone(),
            None => id.0.chars().take(12).collect(),
        }
    }

    fn target(&self, t: &Target) -> String {
        match t {
            Target::Instance { id, host } => {
                if host.is_empty() {
                    self.name(id)
                } else {
                    host.clone()
                }
            }
            Target::Service { name } => format!("service {name}"),
        }
    }

    fn line(&mut self, t: f64, tone: Tone, text: &str) {
        self.last_line = t;
        let stamp = format!("{t:>7.1}s");
        let (on, off) = match (self.colour, tone) {
            (false, _) | (_, Tone::Plain) => ("", ""),
            (true, Tone::Good) => ("\x1b[32m", "\x1b[0m"),
            (true, Tone::Warn) => ("\x1b[33m", "\x1b[0m"),
            (true, Tone::Bad) => ("\x1b[31m", "\x1b[0m"),
            (true, Tone::Dim) => ("\x1b[2m", "\x1b[0m"),
        };
        let stamp = if self.colour {
            format!("\x1b[2m{stamp}\x1b[0m")
        } else {
            stamp
        };
        let mut first = true;
        for part in text.lines() {
            let _ = if first {
                writeln!(self.out, "{stamp}  {on}{part}{off}")
            } else {
                writeln!(self.out, "{:>8}    {on}{part}{off}", "")
            };
            first = false;
        }
        let _ = self.out.flush();
    }

    fn wait(&mut self, t: f64, what: String) {
        self.line(t, Tone::Dim, &format!("waiting for {what}"));
        self.waiting = Some((what, t));
    }

    /// Called now and then with the time: when nothing was printed for
    /// `quiet`, says again what the rollout waits for.
    pub fn tick(&mut self, t: f64, quiet: f64) {
        if t - self.last_line < quiet {
            return;
        }
        let text = match &self.waiting {
            Some((what, since)) => format!("still waiting for {what} ({:.0}s so far)", t - since),
            None => "still working".to_string(),
        };
        self.line(t, Tone::Dim, &text);
    }

    /// Text written as it is, with no time stamp.
    pub fn raw(&mut self, text: &str) {
        let _ = write!(self.out, "{text}");
        let _ = self.out.flush();
    }

    /// Any free-form line (warnings and notes of the wiring).
    pub fn note(&mut self, t: f64, text: &str) {
        self.line(t, Tone::Warn, text);
    }

    /// One event, `t` seconds after the start.
    pub fn event(&mut self, t: f64, event: &Event) {
        let timeouts = self.plan.timeouts.clone();
        match event {
            Event::RolloutStarted {
                service,
                strategy,
                from,
                to,
                slots,
                resumed,
            } => {
                self.slots = *slots;
                let from = match from {
                    Some(r) => rev(r),
                    None => "nothing running".to_string(),
                };
                let mut text = format!(
                    "rolling out {service} with {strategy}: {from} -> {}, {slots} instance{}",
                    rev(to),
                    plural(*slots)
                );
                if *resumed {
                    text.push_str(" (resuming the rollout an earlier run left unfinished)");
                }
                self.line(t, Tone::Plain, &text);
                if strategy == "rolling" {
                    let u = &self.plan.update;
                    let pace = format!(
                        "{} at a time, {}, {} between slots, failure_action {}",
                        if u.parallelism == 0 {
                            "all".to_string()
                        } else {
                            u.parallelism.to_string()
                        },
                        kebab(&u.order),
                        format_duration(u.delay),
                        kebab(&u.failure_action),
                    );
                    self.line(t, Tone::Dim, &pace);
                }
            }
            Event::BatchStarted { index, size } => {
                let text = if self.strategy == "canary" && *size == 0 {
                    format!("canary step {index}")
                } else if self.strategy == "canary" {
                    format!(
                        "canary step {index}: launching {size} instance{}",
                        plural(*size)
                    )
                } else if *size == 1 && self.strategy == "rolling" {
                    format!("slot {index} of {}", self.slots)
                } else {
                    format!("batch {index}: {size} instance{}", plural(*size))
                };
                self.line(t, Tone::Plain, &text);
            }
            Event::InstanceLaunched {
                instance,
                host,
                revision,
            } => {
                self.hosts.insert(instance.clone(), host.clone());
                if *revision == self.plan.target.id {
                    self.new_instances.insert(instance.clone());
                }
                let short: String = revision.chars().take(12).collect();
                self.line(
                    t,
                    Tone::Plain,
                    &format!("launched {host} (revision {short})"),
                );
                self.wait(
                    t,
                    format!(
                        "{host} to be healthy (at most {})",
                        format_duration(timeouts.start)
                    ),
                );
            }
            Event::InstanceHealthy { instance } => {
                let name = self.name(instance);
                let text = if self.new_instances.contains(instance) && self.new_healthy < self.slots
                {
                    self.new_healthy += 1;
                    format!(
                        "{name} is healthy ({} of {} new instances healthy)",
                        self.new_healthy, self.slots
                    )
                } else {
                    format!("{name} is healthy")
                };
                self.waiting = None;
                self.line(t, Tone::Good, &text);
                if self.strategy == "rolling"
                    && self.new_healthy == self.slots
                    && self.new_instances.contains(instance)
                {
                    let watch = self.plan.update.final_watch();
                    if !watch.is_zero() {
                        self.wait(
                            t,
                            format!(
                                "failures of the new instances (monitor window, at most {})",
                                format_duration(watch)
                            ),
                        );
                    }
                }
            }
            Event::TrafficChanged {
                generation,
                set,
                removed,
            } => {
                for t in set.iter().map(|r| &r.target).chain(removed.iter()) {
                    if let Target::Instance { id, host } = t {
                        if !host.is_empty() {
                            self.hosts.insert(id.clone(), host.clone());
                        }
                    }
                }
                let mut parts: Vec<String> = set
                    .iter()
                    .map(|r| {
                        if r.weight == 1 {
                            format!("+{}", self.target(&r.target))
                        } else {
                            format!("+{} (weight {})", self.target(&r.target), r.weight)
                        }
                    })
                    .collect();
                parts.extend(removed.iter().map(|r| format!("-{}", self.target(r))));
                self.line(
                    t,
                    Tone::Plain,
                    &format!("traffic (generation {generation}): {}", parts.join(", ")),
                );
                // Instances replaced by their own service's route keep their
                // traffic: there is nothing to drain then.
                let by_service = set
                    .iter()
                    .any(|r| matches!(r.target, Target::Service { .. }));
                let instances: Vec<String> = removed
                    .iter()
                    .filter(|r| matches!(r, Target::Instance { .. }))
                    .map(|r| self.target(r))
                    .collect();
                if !instances.is_empty() && !by_service {
                    self.wait(
                        t,
                        format!(
                            "requests in flight to {} to finish (at most {})",
                            instances.join(", "),
                            format_duration(timeouts.drain)
                        ),
                    );
                }
            }
            Event::Drained { removed, report } => {
                let names: Vec<String> = removed.iter().map(|r| self.target(r)).collect();
                self.waiting = None;
                self.drained(t, &names, report);
            }
            Event::InstanceStopped { instance } => {
                let name = self.name(instance);
                self.line(t, Tone::Plain, &format!("stopped {name}"));
            }
            Event::InstanceRemoved { instance } => {
                let name = self.name(instance);
                self.line(t, Tone::Plain, &format!("removed {name}"));
            }
            Event::WeightsChanged { new_percent } => {
                self.line(
                    t,
                    Tone::Plain,
                    &format!("{new_percent}% of requests now go to the new revision"),
                );
            }
            Event::StepPaused { step, for_secs } => match for_secs {
                Some(s) => self.wait(
                    t,
                    format!(
                        "the hold of step {step} to end ({})",
                        format_duration(Duration::from_secs_f64(*s))
                    ),
                ),
                None => {
                    self.waiting = None;
                    self.line(
                        t,
                        Tone::Warn,
                        &format!("step {step} holds until promoted: pausing here (run docker rollout again to go on)"),
                    )
                }
            },
            Event::Analysis { step, verdict } => {
                let (tone, text) = match verdict {
                    Verdict::Pass => (Tone::Good, format!("step {step}: analysis passed")),
                    Verdict::Fail(why) => {
                        (Tone::Bad, format!("step {step}: analysis failed: {why}"))
                    }
                    Verdict::Inconclusive(why) => (
                        Tone::Dim,
                        format!("step {step}: analysis inconclusive: {why}"),
                    ),
                };
                self.line(t, tone, &text);
            }
            Event::FailureCounted {
                instance,
                failure,
                failures,
                slots,
                diagnostics,
            } => {
                let name = self.name(instance);
                let mut text = format!(
                    "{name} failed: {failure} ({failures} of {slots} slots failed, max_failure_ratio {})",
                    self.plan.update.max_failure_ratio
                );
                if !diagnostics.last_logs.is_empty() {
                    text.push_str("\nlast log lines:");
                    for l in &diagnostics.last_logs {
                        text.push_str(&format!("\n  {l}"));
                    }
                }
                if !diagnostics.health_log.is_empty() {
                    text.push_str("\nhealth check output:");
                    for l in &diagnostics.health_log {
                        text.push_str(&format!("\n  {l}"));
                    }
                }
                self.waiting = None;
                self.line(t, Tone::Bad, &text);
            }
            Event::RollbackStarted { reason } => {
                self.waiting = None;
                self.line(t, Tone::Warn, &format!("rolling back: {reason}"));
            }
            Event::Finished { outcome } => {
                self.waiting = None;
                let (tone, text) = self.outcome(outcome);
                self.line(t, tone, &text);
            }
            other => {
                // An event newer than this renderer: show its JSON.
                let text = serde_json::to_string(other).unwrap_or_default();
                self.line(t, Tone::Dim, &text);
            }
        }
    }

    fn drained(&mut self, t: f64, names: &[String], report: &DrainReport) {
        let what = if report.waited_for.is_empty() {
            "nothing was in flight".to_string()
        } else {
            format!("waited for {}", report.waited_for.join(", "))
        };
        if report.timed_out {
            let cut = if report.cut.is_empty() {
                String::new()
            } else {
                format!("; cut: {}", report.cut.join(", "))
            };
            self.line(
                t,
                Tone::Bad,
                &format!(
                    "drain of {} ran out of time after {} ({what}){cut}",
                    names.join(", "),
                    secs(report.elapsed)
                ),
            );
        } else {
            self.line(
                t,
                Tone::Plain,
                &format!(
                    "drained {} in {} ({what})",
                    names.join(", "),
                    secs(report.elapsed)
                ),
            );
        }
    }

    fn outcome(&self, outcome: &Outcome) -> (Tone, String) {
        outcome_line(&self.plan, outcome)
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

/// A measured time: `0.09s`, `12.4s`.
fn secs(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s < 10.0 {
        format!("{s:.2}s")
    } else {
        format!("{s:.1}s")
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

/// The kebab-case name serde gives a unit variant.
fn kebab<T: Serialize>(v: &T) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rollout_core::backend::{Diagnostics, Failure};
    use rollout_core::router::Route;
    use rollout_core::strategy::Plan;
    use rollout_core::{FailureAction, ServiceRef};

    fn plan() -> Plan {
        let mut p = Plan::new(
            ServiceRef::new("shop", "app"),
            Revision::new("9c1b7d0e5a3f44", "rollout-demo:v2"),
            2,
        );
        p.update.parallelism = 1;
        p.update.delay = Duration::from_secs(10);
        p.update.failure_action = FailureAction::Rollback;
        p.update.monitor = Duration::from_secs(30);
        p
    }

    fn inst(n: &str) -> Target {
        Target::instance(InstanceId(format!("id-{n}")), n)
    }

    /// A rolling rollout of two slots whose second new instance fails,
    /// then rolls back.
    fn events() -> Vec<(f64, Event)> {
        let from = Revision::new("3f2a9c1b7d0e88", "");
        vec![
            (
                0.0,
                Event::RolloutStarted {
                    service: ServiceRef::new("shop", "app"),
                    strategy: "rolling".into(),
                    from: Some(from),
                    to: plan().target,
                    slots: 2,
                    resumed: false,
                },
            ),
            (
                0.2,
                Event::TrafficChanged {
                    generation: 1,
                    set: vec![
                        Route {
                            target: inst("shop_app_1"),
                            weight: 1,
                        },
                        Route {
                            target: inst("shop_app_2"),
                            weight: 1,
                        },
                    ],
                    removed: vec![Target::Service { name: "app".into() }],
                },
            ),
            (0.3, Event::BatchStarted { index: 1, size: 1 }),
            (
                0.5,
                Event::TrafficChanged {
                    generation: 2,
                    set: vec![],
                    removed: vec![inst("shop_app_1")],
                },
            ),
            (
                1.25,
                Event::Drained {
                    removed: vec![inst("shop_app_1")],
                    report: DrainReport {
                        waited_for: vec!["nginx worker 41 in shop_nginx_1".into()],
                        elapsed: Duration::from_millis(750),
                        timed_out: false,
                        cut: vec![],
                    },
                },
            ),
            (
                1.5,
                Event::InstanceStopped {
                    instance: InstanceId("id-shop_app_1".into()),
                },
            ),
            (
                1.6,
                Event::InstanceRemoved {
                    instance: InstanceId("id-shop_app_1".into()),
                },
            ),
            (
                4.0,
                Event::InstanceLaunched {
                    instance: InstanceId("id-shop_app_3".into()),
                    host: "shop_app_3".into(),
                    revision: "9c1b7d0e5a3f44".into(),
                },
            ),
            (
                5.0,
                Event::InstanceHealthy {
                    instance: InstanceId("id-shop_app_3".into()),
                },
            ),
            (
                5.5,
                Event::TrafficChanged {
                    generation: 3,
                    set: vec![Route {
                        target: inst("shop_app_3"),
                        weight: 1,
                    }],
                    removed: vec![],
                },
            ),
            (15.5, Event::BatchStarted { index: 2, size: 1 }),
            (
                18.0,
                Event::InstanceLaunched {
                    instance: InstanceId("id-shop_app_4".into()),
                    host: "shop_app_4".into(),
                    revision: "9c1b7d0e5a3f44".into(),
                },
            ),
            (
                78.0,
                Event::FailureCounted {
                    instance: InstanceId("id-shop_app_4".into()),
                    failure: Failure::StartTimeout,
                    failures: 1,
                    slots: 2,
                    diagnostics: Diagnostics {
                        last_logs: vec!["listening on :8000".into()],
                        health_log: vec!["GET /health: 503".into()],
                    },
                },
            ),
            (
                78.1,
                Event::RollbackStarted {
                    reason: "1 of 2 slots failed, more than max_failure_ratio 0".into(),
                },
            ),
            (
                90.0,
                Event::Drained {
                    removed: vec![inst("shop_app_3")],
                    report: DrainReport {
                        waited_for: vec!["nginx worker 57 in shop_nginx_1".into()],
                        elapsed: Duration::from_secs(30),
                        timed_out: true,
                        cut: vec!["nginx worker 57 in shop_nginx_1".into()],
                    },
                },
            ),
            (
                95.0,
                Event::Finished {
                    outcome: Outcome::RolledBack("shop_app_4 was not healthy within 1m".into()),
                },
            ),
        ]
    }

    fn text(colour: bool) -> String {
        let mut out = Vec::new();
        {
            let mut t = Text::new(&mut out, colour, "rolling", &plan());
            t.know_host(InstanceId("id-shop_app_1".into()), "shop_app_1");
            for (at, e) in events() {
                t.event(at, &e);
            }
        }
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn one_line_per_state_change_and_every_wait_bounded() {
        let out = text(false);
        assert!(!out.contains('\x1b'), "no colour asked: {out}");
        insta::assert_snapshot!("text_rolling_with_rollback", out);
    }

    #[test]
    fn colour_marks_health_and_failure_when_asked() {
        let out = text(true);
        assert!(out.contains("\x1b[32mshop_app_3 is healthy"), "{out}");
        assert!(out.contains("\x1b[31mshop_app_4 failed"), "{out}");
        assert!(out.contains("\x1b[33mrolling back"), "{out}");
    }

    #[test]
    fn terminal_features_need_a_terminal_and_no_off_switch() {
        use std::ffi::OsStr;
        assert!(on_terminal_unless(true, None));
        assert!(on_terminal_unless(true, Some(OsStr::new(""))));
        assert!(!on_terminal_unless(true, Some(OsStr::new("1"))));
        assert!(!on_terminal_unless(false, None));
    }

    #[test]
    fn a_quiet_wait_is_said_again() {
        let mut out = Vec::new();
        {
            let mut t = Text::new(&mut out, false, "rolling", &plan());
            let e = events();
            t.event(4.0, &e[7].1);
            t.tick(10.0, 15.0);
            t.tick(20.0, 15.0);
        }
        let out = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 3, "{out}");
        assert_eq!(
            lines[2],
            "   20.0s  still waiting for shop_app_3 to be healthy (at most 1m) (16s so far)"
        );
    }

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
