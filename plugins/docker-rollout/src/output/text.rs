//! The line text door: one line per state change, like `kubectl rollout
//! status`, for people (on stderr, or a dry run's report on stdout) when
//! the live block is not drawn.
//!
//! Every line that starts a wait says what it waits for and for how long
//! at most, and [`Sink::tick`] repeats it when a wait drags on, so that a
//! silent terminal never means a hung tool.

use super::style::{launched_revision, outcome_line, stamp, stamped, started_line, Tone};
use super::Sink;
use rollout_core::router::{DrainReport, Target};
use rollout_core::strategy::{Plan, StrategyKind, Verdict};
use rollout_core::{format_duration, Event, InstanceId, Outcome, Revision};
use std::collections::{BTreeSet, HashMap};
use std::io::Write;
use std::time::Duration;

/// Writes one line per state change, like `kubectl rollout status`.
pub struct Text<W: Write> {
    out: W,
    colour: bool,
    /// The built-in strategy the rollout runs, if it is one (a custom one names itself).
    kind: Option<StrategyKind>,
    plan: Plan,
    /// The revision the rollout started from, once it said so.
    from: Option<Revision>,
    hosts: HashMap<InstanceId, String>,
    new_instances: BTreeSet<InstanceId>,
    new_healthy: usize,
    slots: usize,
    /// What the rollout waits for now, and since when (`t`), for [`Sink::tick`].
    waiting: Option<(String, f64)>,
    last_line: f64,
}

impl<W: Write> Text<W> {
    /// The door for a rollout of `plan` with `strategy`, writing to `out`.
    pub fn new(out: W, colour: bool, strategy: &str, plan: &Plan) -> Self {
        Self {
            out,
            colour,
            kind: strategy.parse().ok(),
            plan: plan.clone(),
            from: None,
            hosts: HashMap::new(),
            new_instances: BTreeSet::new(),
            new_healthy: 0,
            slots: plan.replicas,
            waiting: None,
            last_line: 0.0,
        }
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
        let stamp = if self.colour {
            format!("\x1b[2m{}\x1b[0m", stamp(t))
        } else {
            stamp(t)
        };
        stamped(&mut self.out, &stamp, tone.paint(self.colour), text);
        let _ = self.out.flush();
    }

    fn wait(&mut self, t: f64, what: String) {
        self.line(t, Tone::Dim, &format!("waiting for {what}"));
        self.waiting = Some((what, t));
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

impl<W: Write> Sink for Text<W> {
    fn event(&mut self, t: f64, event: &Event) {
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
                self.from = from.clone();
                let text = started_line(
                    service,
                    strategy,
                    (from.as_ref(), to),
                    &format!(", {slots} instance{}", plural(*slots)),
                    *resumed,
                );
                self.line(t, Tone::Plain, &text);
                if strategy.parse() == Ok(StrategyKind::Rolling) {
                    let u = &self.plan.update;
                    let pace = format!(
                        "{} at a time, {}, {} between slots, failure_action {}",
                        if u.parallelism == 0 {
                            "all".to_string()
                        } else {
                            u.parallelism.to_string()
                        },
                        u.order,
                        format_duration(u.delay),
                        u.failure_action,
                    );
                    self.line(t, Tone::Dim, &pace);
                }
            }
            Event::BatchStarted { index, size } => {
                let text = if self.kind == Some(StrategyKind::Canary) && *size == 0 {
                    format!("canary step {index}")
                } else if self.kind == Some(StrategyKind::Canary) {
                    format!(
                        "canary step {index}: launching {size} instance{}",
                        plural(*size)
                    )
                } else if *size == 1 && self.kind == Some(StrategyKind::Rolling) {
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
                let words = launched_revision(revision, &self.plan.target, self.from.as_ref());
                self.line(t, Tone::Plain, &format!("launched {host} of {words}"));
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
                if self.kind == Some(StrategyKind::Rolling)
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
            Event::Paused { reason, at } => {
                self.line(
                    t,
                    Tone::Warn,
                    &format!("paused by the {reason} at {at}: failures and the analysis are still watched"),
                );
                let service = self.plan.service.service.clone();
                self.wait(t, format!("`docker rollout resume {service}`"));
            }
            Event::Resumed { reason, held_secs } => {
                self.waiting = None;
                self.line(
                    t,
                    Tone::Plain,
                    &format!(
                        "resumed by the {reason} after {}",
                        format_duration(Duration::from_secs_f64(held_secs.round()))
                    ),
                );
            }
            Event::Promoted { step, full } => {
                self.waiting = None;
                let to = if *full {
                    "straight to the last step"
                } else {
                    "on to the next step"
                };
                self.line(
                    t,
                    Tone::Plain,
                    &format!("step {step} promoted by the operator: {to}"),
                );
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

    /// They count in the progress of new instances.
    fn already_new(&mut self, n: usize) {
        self.new_healthy = n;
    }

    fn know_host(&mut self, id: InstanceId, host: &str) {
        self.hosts.insert(id, host.to_string());
    }

    /// When nothing was printed for `quiet`, says again what the rollout
    /// waits for.
    fn tick(&mut self, t: f64, quiet: f64) {
        if t - self.last_line < quiet {
            return;
        }
        let text = match &self.waiting {
            Some((what, since)) => format!("still waiting for {what} ({:.0}s so far)", t - since),
            None => "still working".to_string(),
        };
        self.line(t, Tone::Dim, &text);
    }

    fn report(&mut self, text: &str) {
        let _ = write!(self.out, "{text}");
        let _ = self.out.flush();
    }

    fn note(&mut self, t: f64, text: &str) {
        self.line(t, Tone::Warn, text);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::fixtures::{events, plan};

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
}
