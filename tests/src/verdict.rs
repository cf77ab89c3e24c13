//! The verdict of a run under load: no failed request, no upstream error in nginx's log, the
//! load real while the rollout ran (at least 200 requests per second, every class answered),
//! and every old instance answering right up to the moment the tool took it out of nginx
//! (otherwise a test whose old instances got no traffic would pass for nothing). And the
//! report of it all, printed for the test log and written as JSON beside the test binaries.

use crate::nginx::ConfigSnapshot;
use crate::project::Container;
use crate::replay::Replay;
use crate::run::Ended;
use rollout_load::Report;
use std::collections::BTreeMap;
use std::path::PathBuf;

/// No failed request, nginx's error log read and without upstream errors, and the client kept
/// up with the rate.
pub fn assert_no_failure(report: &Report) {
    let failures: Vec<String> = report
        .failures()
        .take(10)
        .map(|r| format!("{r:?}"))
        .collect();
    assert_eq!(
        report.failed,
        0,
        "failed requests ({:?}), first ones:\n{}",
        report.failures,
        failures.join("\n")
    );
    assert!(
        report.upstream_errors.read,
        "nginx's error log was not read"
    );
    assert_eq!(
        report.upstream_errors.total,
        0,
        "upstream errors in nginx's log:\n{}",
        report
            .upstream_errors
            .errors
            .iter()
            .map(|e| e.line.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert_eq!(report.skipped, 0, "the client could not keep up");
}

/// At least 200 requests per second were sent in `[from, to)` (`what` names the span).
pub fn assert_rate(report: &Report, from: f64, to: f64, what: &str) {
    let w = report.window(from, to);
    assert!(
        w.rate >= 200.0,
        "only {:.0} requests per second {what}",
        w.rate
    );
}

/// Every class of request (fast, slow, POST) was answered at least once in the run.
pub fn assert_every_class_answered(report: &Report) {
    for class in rollout_load::Class::ALL {
        assert!(
            report.classes.get(&class).is_some_and(|s| s.ok > 0),
            "no {} request succeeded",
            class.name()
        );
    }
}

/// [`assert_no_failure`], and the load was real between the marks `rollout-start` and
/// `rollout-end` (or in the 2 s after `rollout-start` when the run was shorter), every class
/// answered.
pub fn assert_clean(report: &Report) {
    assert_no_failure(report);
    let start = report
        .mark("rollout-start")
        .expect("the mark rollout-start");
    let end = report.mark("rollout-end").expect("the mark rollout-end");
    // A refused or no-op run ends within milliseconds: judge the rate over 2 s at least.
    assert_rate(report, start, end.max(start + 2.0), "during the rollout");
    assert_every_class_answered(report);
}

/// [`assert_no_failure`], and the load was real while each of `runs` ran (stamped on the
/// load's clock): at least 200 requests per second, every class answered.
pub fn assert_clean_during(report: &Report, runs: &[&Ended]) {
    assert_no_failure(report);
    for run in runs {
        assert_rate(
            report,
            run.started_at,
            run.returned_at.max(run.started_at + 1.0),
            "during a rollout",
        );
        for class in rollout_load::Class::ALL {
            let s = report.class_stats(class, run.started_at, run.returned_at);
            assert!(
                s.ok > 0,
                "no {} request answered during a rollout",
                class.name()
            );
        }
    }
}

/// Every instance a traffic change took out answered the load within its last second
/// before that change (otherwise the test proves nothing about it). `containers` are the
/// app's containers that existed (to map names to the short ids the app answers with).
pub fn assert_answered_before_unrouted(report: &Report, run: &Ended, containers: &[Container]) {
    for (host, t) in run.unrouted() {
        let Some(c) = containers.iter().find(|c| c.name == host) else {
            continue;
        };
        let short = &c.id[..12];
        let answered = report
            .requests
            .iter()
            .any(|r| r.instance.as_deref() == Some(short) && r.end() <= t && r.end() >= t - 1.0);
        assert!(
            answered,
            "{host} ({short}) did not answer within its last second before it was unrouted at {t:.2}s"
        );
    }
}

/// One answer of an instance: when its request started and ended (load clock).
#[derive(Debug, Clone, Copy)]
pub struct Answer {
    /// Start.
    pub start: f64,
    /// End.
    pub end: f64,
}

/// The successful answers of a load run by instance (`X-Demo-Instance`: a short id).
#[derive(Debug, Default)]
pub struct Answers {
    by_instance: BTreeMap<String, Vec<Answer>>,
}

impl Answers {
    /// Indexes `report`'s successful requests.
    pub fn of(report: &Report) -> Answers {
        let mut by_instance: BTreeMap<String, Vec<Answer>> = BTreeMap::new();
        for r in report.requests.iter().filter(|r| !r.failed()) {
            if let Some(i) = &r.instance {
                by_instance.entry(i.clone()).or_default().push(Answer {
                    start: r.t,
                    end: r.end(),
                });
            }
        }
        Answers { by_instance }
    }

    /// The answers of the container with full id `id` (matched by its short id).
    pub fn of_container(&self, id: &str) -> &[Answer] {
        self.by_instance
            .iter()
            .find(|(short, _)| !short.is_empty() && id.starts_with(short.as_str()))
            .map_or(&[], |(_, v)| v.as_slice())
    }
}

/// How one old instance ended its service, for the report and the assertions.
#[derive(Debug, Clone)]
pub struct LastSecond {
    /// Its name.
    pub host: String,
    /// When the traffic change that took it out arrived.
    pub unrouted: f64,
    /// Answers that ended in the second before that.
    pub answers_in_last_second: usize,
    /// When the proxy's config file stopped naming it (read before the reload: earlier).
    pub unrouted_in_config: f64,
    /// Answers to requests that started in the second before that.
    pub started_in_last_config_second: usize,
    /// Its last answer's end (the load report's `instances[..].last`).
    pub last_answer: f64,
    /// Answers to requests that started more than the slack after it was unrouted.
    pub answered_after: usize,
}

/// How [`assert_last_second`] reads the times.
#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    /// Requests that started this long after the event are not the in-flight ones.
    pub slack: f64,
    /// The end of the rollout's watch: requests that start later may go to the old instance
    /// again (a switch back), so they are not counted.
    pub until: f64,
}

/// Checks, for each instance of `old` (full ids): it answered requests that started in the
/// second before the proxy's config file stopped naming it (nginx reloads only after the
/// write, so it was routed then), and the load report's last answer of it is no earlier; the
/// config changed no later than the traffic-change event that took it out arrived; and it
/// answered no request that started more than `slack` seconds after that event (and before
/// `until`): the routes had changed by then. Panics with the whole table when one did not.
///
/// The unroute itself (the reload taking) lies between the config write and the event, which
/// comes once the router has seen the new workers: under a loaded machine that can take
/// seconds, so the answers that ended in the second before the event are printed, not
/// asserted.
pub fn assert_last_second(
    what: &str,
    old: &[String],
    replay: &Replay,
    snaps: &[ConfigSnapshot],
    (answers, report): (&Answers, &Report),
    Bounds { slack, until }: Bounds,
) -> Vec<LastSecond> {
    let in_config = replay.unrouted_in_config(snaps);
    let mut rows = Vec::new();
    let mut problems = Vec::new();
    for id in old {
        let host = replay
            .known
            .iter()
            .find(|k| &k.id == id)
            .map_or(id.clone(), |k| k.host.clone());
        let Some(&u) = replay.unrouted.get(id) else {
            problems.push(format!("{host} was never taken out of the routes"));
            continue;
        };
        let Some(&c) = in_config.get(id) else {
            problems.push(format!(
                "the proxy's config file never stopped routing {host} (versions seen: {})",
                snaps.len()
            ));
            continue;
        };
        let a = answers.of_container(id);
        let short: String = id.chars().take(12).collect();
        let last_answer = report
            .instances
            .get(&short)
            .map_or(f64::NEG_INFINITY, |i| i.last);
        let row = LastSecond {
            host: host.clone(),
            unrouted: u,
            answers_in_last_second: a.iter().filter(|x| x.end >= u - 1.0 && x.end <= u).count(),
            unrouted_in_config: c,
            started_in_last_config_second: a
                .iter()
                .filter(|x| x.start >= c - 1.0 && x.start < c)
                .count(),
            last_answer,
            answered_after: a
                .iter()
                .filter(|x| x.start > u + slack && x.start < until)
                .count(),
        };
        if row.started_in_last_config_second == 0 {
            problems.push(format!(
                "{host} answered no request that started in the second before the config file \
                 stopped naming it at {c:.3}s"
            ));
        }
        if c > u {
            problems.push(format!(
                "{host}: the config file still named it at {c:.3}s, after the event that took \
                 it out ({u:.3}s)"
            ));
        }
        if row.last_answer < c - 1.0 {
            problems.push(format!(
                "{host}: the load report's last answer {last_answer:.3}s is more than 1s before \
                 the config stopped naming it at {c:.3}s"
            ));
        }
        if row.answered_after > 0 {
            problems.push(format!(
                "{host} answered {} requests that started more than {slack}s after it was \
                 unrouted at {u:.3}s",
                row.answered_after
            ));
        }
        rows.push(row);
    }
    eprintln!(
        "{what}: old instances, unrouted (config file, event) vs their answers (load clock, s)"
    );
    for r in &rows {
        eprintln!(
            "  {:<40} config {:>8.3} (started in last second {:>3})  event {:>8.3} (ended in last second {:>3})  last answer {:>8.3}  started after event+{slack}s: {}",
            r.host,
            r.unrouted_in_config,
            r.started_in_last_config_second,
            r.unrouted,
            r.answers_in_last_second,
            r.last_answer,
            r.answered_after
        );
    }
    assert!(problems.is_empty(), "{what}:\n{}", problems.join("\n"));
    rows
}

/// Where the reports go: the target folder's `tmp/` (what cargo gives integration tests as
/// `CARGO_TARGET_TMPDIR`), found from the running executable (`target/PROFILE/deps/TEST`).
fn reports_dir() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.parent()?.parent()?.join("tmp")))
        .unwrap_or_else(std::env::temp_dir)
}

/// Prints the load's report (summary, timeline, the windows between the marks
/// `rollout-start`/`rollout-end` and `update-start`/`update-end`), each run's window, events
/// and stderr (stamped on the load's clock), and one `FIGURES` line; writes the report as
/// `SUITE-NAME.json` to the target folder's `tmp/`.
pub fn publish(suite: &str, name: &str, report: &Report, runs: &[&Ended]) {
    eprintln!("== {suite}: {name}");
    eprint!("{report}");
    eprintln!("timeline ({} s buckets):", report.bucket_s);
    eprint!("{}", report.timeline_text());
    for (from, to) in [
        ("rollout-start", "rollout-end"),
        ("update-start", "update-end"),
    ] {
        if let Some(w) = report.between(from, to) {
            eprintln!(
                "{from}..{to} {:.2}s..{:.2}s: {} sent ({:.0} req/s), {} failed, {} stale retries, {} upstream errors",
                w.from, w.to, w.sent, w.rate, w.failed, w.retried, w.upstream_errors
            );
        }
    }
    for (i, run) in runs.iter().enumerate() {
        let w = report.window(run.started_at, run.returned_at);
        eprintln!(
            "rollout {}: exit {:?}, {:.1}s ({:.2}s..{:.2}s); during it {} sent ({:.0} req/s), {} failed, {} stale retries, {} upstream errors",
            i + 1,
            run.code,
            run.elapsed(),
            run.started_at,
            run.returned_at,
            w.sent,
            w.rate,
            w.failed,
            w.retried,
            w.upstream_errors
        );
        eprint!("{}", run.transcript());
        eprintln!("--- stderr\n{}", run.stderr);
    }
    eprintln!(
        "FIGURES {suite} {name}: requests {} ({:.0} req/s) failed {} stale_retries {} upstream_errors {} (read {}) skipped {} elapsed {}",
        report.sent,
        report.rate,
        report.failed,
        report.stale_retries,
        report.upstream_errors.total,
        report.upstream_errors.read,
        report.skipped,
        runs.iter()
            .map(|r| format!("{:.1}s", r.elapsed()))
            .collect::<Vec<_>>()
            .join(" + ")
    );
    let dir = reports_dir();
    let path = dir.join(format!("{suite}-{name}.json"));
    match std::fs::create_dir_all(&dir).and_then(|()| {
        report
            .write_json(&path)
            .map_err(|e| std::io::Error::other(e.to_string()))
    }) {
        Ok(()) => eprintln!("report: {}", path.display()),
        Err(e) => eprintln!("report not written to {}: {e}", path.display()),
    }
}
