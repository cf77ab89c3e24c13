//! What a run saw: every request, and the figures drawn from them.

use crate::config::Class;
use crate::errorlog::UpstreamErrors;
use crate::LoadError;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt::{self, Write as _};
use std::path::Path;

/// How a request ended, as a standard HTTP client would report it to its caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// A 2xx answer.
    Ok,
    /// An answer with another status.
    Status,
    /// No whole answer within the request's expected duration plus the grace.
    Timeout,
    /// The connection was refused.
    Refused,
    /// The connection could not be opened for another reason.
    Connect,
    /// The connection was reset (or the pipe broke).
    Reset,
    /// The connection was closed before the whole answer came.
    Closed,
    /// The answer was not HTTP as the client knows it.
    Protocol,
    /// Another I/O error.
    Io,
}

impl Outcome {
    /// The snake_case name used in reports.
    pub fn name(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Status => "status",
            Outcome::Timeout => "timeout",
            Outcome::Refused => "refused",
            Outcome::Connect => "connect",
            Outcome::Reset => "reset",
            Outcome::Closed => "closed",
            Outcome::Protocol => "protocol",
            Outcome::Io => "io",
        }
    }
}

/// One request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// Sequence number (0-based, in the order the requests were started).
    pub seq: u64,
    /// When it started, in seconds since the start of the run.
    pub t: f64,
    /// How long it took until the answer was complete or it failed, in milliseconds.
    pub ms: f64,
    /// Its class.
    pub class: Class,
    /// Sent on a new connection (not a pooled keep-alive one).
    pub fresh: bool,
    /// The status, if an answer came.
    pub status: Option<u16>,
    /// How it ended.
    pub outcome: Outcome,
    /// The version that answered (`X-Demo-Version`).
    pub version: Option<String>,
    /// The instance that answered (`X-Demo-Instance`).
    pub instance: Option<String>,
    /// It was sent again once on a new connection because its reused keep-alive connection was
    /// closed before any byte of the answer came.
    pub retried: bool,
    /// The error, for a failure that is not a status.
    pub error: Option<String>,
}

impl Record {
    /// Whether a client would have reported an error.
    pub fn failed(&self) -> bool {
        self.outcome != Outcome::Ok
    }

    /// When it ended, in seconds since the start of the run.
    pub fn end(&self) -> f64 {
        self.t + self.ms / 1000.0
    }
}

/// Latency and counts of one class of requests.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ClassStats {
    /// Requests started.
    pub sent: u64,
    /// 2xx answers.
    pub ok: u64,
    /// Failed requests.
    pub failed: u64,
    /// Stale keep-alive retries.
    pub retried: u64,
    /// Latency percentiles of the successful requests, in milliseconds (nearest rank).
    pub p50_ms: f64,
    /// 90th percentile.
    pub p90_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// Slowest.
    pub max_ms: f64,
}

/// Who answered as one instance.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct InstanceStats {
    /// Its version.
    pub version: Option<String>,
    /// Answers (of any status) it gave.
    pub answers: u64,
    /// When its first answer came, in seconds since the start of the run.
    pub first: f64,
    /// When its last answer came.
    pub last: f64,
}

/// A named instant the caller marked during the run (for example "update started").
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Mark {
    /// Its name.
    pub name: String,
    /// Seconds since the start of the run.
    pub t: f64,
}

/// One slice of the timeline, by the requests' start times.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Bucket {
    /// Start of the slice, in seconds since the start of the run.
    pub t: f64,
    /// Requests started in it.
    pub sent: u64,
    /// Of those, the successful ones.
    pub ok: u64,
    /// Of those, the failed ones.
    pub failed: u64,
    /// Of those, the ones retried on a stale connection.
    pub retried: u64,
    /// Requests started per second in it.
    pub rate: f64,
    /// Successful answers by version.
    pub versions: BTreeMap<String, u64>,
    /// Upstream errors logged in it (whole seconds: nginx's resolution).
    pub upstream_errors: u64,
}

/// Figures for a part of the run (for example the update, between two marks).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Window {
    /// From, in seconds since the start of the run.
    pub from: f64,
    /// To.
    pub to: f64,
    /// Requests started in it.
    pub sent: u64,
    /// Requests started per second in it.
    pub rate: f64,
    /// Successful ones.
    pub ok: u64,
    /// Failed ones.
    pub failed: u64,
    /// Stale retries.
    pub retried: u64,
    /// Successful answers by version.
    pub versions: BTreeMap<String, u64>,
    /// Upstream errors logged in it (whole seconds).
    pub upstream_errors: u64,
}

/// The report of a run: counts, latency, versions, the timeline, the proxy's upstream errors
/// and every request.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// `host:port` that was loaded.
    pub target: String,
    /// Wall-clock start of the run, in milliseconds since the Unix epoch (to place a rollout's
    /// own timestamps on this run's clock).
    pub started_unix_ms: u64,
    /// From the first request's start to the end of the last one, in seconds.
    pub duration_s: f64,
    /// The rate asked for.
    pub rate_asked: u32,
    /// Requests started per second over the whole run.
    pub rate: f64,
    /// Requests started.
    pub sent: u64,
    /// Successful requests.
    pub ok: u64,
    /// Failed requests, after the one stale-connection retry.
    pub failed: u64,
    /// Requests retried once because their reused keep-alive connection was closed before any
    /// byte of the answer came (RFC 9112 §9.3.1): not failures, but each one is a connection
    /// the server closed under a client.
    pub stale_retries: u64,
    /// Idle pooled connections found closed by the server and dropped before reuse.
    pub idle_closed: u64,
    /// Requests not sent because too many were in flight (the client was the limit).
    pub skipped: u64,
    /// Failed requests by outcome.
    pub failures: BTreeMap<Outcome, u64>,
    /// Per class.
    pub classes: BTreeMap<Class, ClassStats>,
    /// Successful answers by version.
    pub versions: BTreeMap<String, u64>,
    /// Answers by instance.
    pub instances: BTreeMap<String, InstanceStats>,
    /// The proxy's upstream errors during the run.
    pub upstream_errors: UpstreamErrors,
    /// The caller's marks.
    pub marks: Vec<Mark>,
    /// Width of a timeline bucket, in seconds.
    pub bucket_s: f64,
    /// The timeline.
    pub timeline: Vec<Bucket>,
    /// Every request, in start order.
    pub requests: Vec<Record>,
}

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

impl Report {
    /// Builds the figures from the records; `facts` carries what the run knew besides them
    /// (target, start, rate asked, bucket, counters, marks, upstream errors).
    pub(crate) fn build(facts: Report, mut requests: Vec<Record>) -> Report {
        requests.sort_by_key(|r| r.seq);
        let bucket_s = facts.bucket_s;
        let mut report = Report {
            sent: requests.len() as u64,
            ..facts
        };
        let mut latencies: BTreeMap<Class, Vec<f64>> = BTreeMap::new();
        for r in &requests {
            report.duration_s = report.duration_s.max(r.end());
            let class = report.classes.entry(r.class).or_default();
            class.sent += 1;
            if r.retried {
                report.stale_retries += 1;
                class.retried += 1;
            }
            if r.failed() {
                report.failed += 1;
                class.failed += 1;
                *report.failures.entry(r.outcome).or_default() += 1;
            } else {
                report.ok += 1;
                class.ok += 1;
                latencies.entry(r.class).or_default().push(r.ms);
                if let Some(v) = &r.version {
                    *report.versions.entry(v.clone()).or_default() += 1;
                }
            }
            if let Some(name) = &r.instance {
                let end = r.end();
                let i = report
                    .instances
                    .entry(name.clone())
                    .or_insert_with(|| InstanceStats {
                        version: r.version.clone(),
                        answers: 0,
                        first: end,
                        last: end,
                    });
                i.answers += 1;
                i.first = i.first.min(end);
                i.last = i.last.max(end);
            }
        }
        for (class, mut ms) in latencies {
            ms.sort_by(f64::total_cmp);
            let s = report.classes.entry(class).or_default();
            s.p50_ms = percentile(&ms, 50.0);
            s.p90_ms = percentile(&ms, 90.0);
            s.p99_ms = percentile(&ms, 99.0);
            s.max_ms = ms.last().copied().unwrap_or(0.0);
        }
        let last_start = requests.last().map(|r| r.t).unwrap_or(0.0);
        if last_start > 0.0 {
            report.rate = report.sent as f64 / last_start.max(bucket_s);
        }
        let buckets = (last_start / bucket_s).floor() as usize + 1;
        report.timeline = (0..buckets)
            .map(|i| {
                let from = i as f64 * bucket_s;
                let w = report.window_of(&requests, from, from + bucket_s);
                Bucket {
                    t: from,
                    sent: w.sent,
                    ok: w.ok,
                    failed: w.failed,
                    retried: w.retried,
                    rate: w.rate,
                    versions: w.versions,
                    upstream_errors: w.upstream_errors,
                }
            })
            .collect();
        report.requests = requests;
        report
    }

    fn window_of(&self, requests: &[Record], from: f64, to: f64) -> Window {
        let mut w = Window {
            from,
            to,
            ..Window::default()
        };
        // Requests are sorted by start: find the slice.
        let lo = requests.partition_point(|r| r.t < from);
        let hi = requests.partition_point(|r| r.t < to);
        for r in &requests[lo..hi] {
            w.sent += 1;
            if r.retried {
                w.retried += 1;
            }
            if r.failed() {
                w.failed += 1;
            } else {
                w.ok += 1;
                if let Some(v) = &r.version {
                    *w.versions.entry(v.clone()).or_default() += 1;
                }
            }
        }
        if to > from {
            w.rate = w.sent as f64 / (to - from);
        }
        // Log lines have whole seconds: an error belongs to the window when its second does.
        w.upstream_errors = self
            .upstream_errors
            .errors
            .iter()
            .filter(|e| e.t.is_some_and(|t| t + 1.0 > from.floor() && t < to))
            .count() as u64;
        w
    }

    /// Figures for the requests started between `from` and `to` (seconds since the start).
    pub fn window(&self, from: f64, to: f64) -> Window {
        self.window_of(&self.requests, from, to)
    }

    /// Counts and latency percentiles of the `class` requests started between `from` and `to`
    /// (seconds since the start), for example the steady state before an update against the
    /// update itself.
    pub fn class_stats(&self, class: Class, from: f64, to: f64) -> ClassStats {
        let mut stats = ClassStats::default();
        let mut ms = Vec::new();
        for r in self
            .requests
            .iter()
            .filter(|r| r.class == class && r.t >= from && r.t < to)
        {
            stats.sent += 1;
            if r.retried {
                stats.retried += 1;
            }
            if r.failed() {
                stats.failed += 1;
            } else {
                stats.ok += 1;
                ms.push(r.ms);
            }
        }
        ms.sort_by(f64::total_cmp);
        stats.p50_ms = percentile(&ms, 50.0);
        stats.p90_ms = percentile(&ms, 90.0);
        stats.p99_ms = percentile(&ms, 99.0);
        stats.max_ms = ms.last().copied().unwrap_or(0.0);
        stats
    }

    /// The time of the first mark called `name`.
    pub fn mark(&self, name: &str) -> Option<f64> {
        self.marks.iter().find(|m| m.name == name).map(|m| m.t)
    }

    /// Figures between two marks, if both were set.
    pub fn between(&self, from_mark: &str, to_mark: &str) -> Option<Window> {
        Some(self.window(self.mark(from_mark)?, self.mark(to_mark)?))
    }

    /// The failed requests.
    pub fn failures(&self) -> impl Iterator<Item = &Record> {
        self.requests.iter().filter(|r| r.failed())
    }

    /// Seconds since the start of the run of a wall-clock instant (Unix milliseconds).
    pub fn at_unix_ms(&self, unix_ms: u64) -> f64 {
        (unix_ms as f64 - self.started_unix_ms as f64) / 1000.0
    }

    /// The report as pretty JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }

    /// Writes the JSON report to `path`.
    pub fn write_json(&self, path: &Path) -> Result<(), LoadError> {
        std::fs::write(path, self.to_json()).map_err(|source| LoadError::WriteReport {
            path: path.to_path_buf(),
            source,
        })
    }

    /// The timeline as text, one line per bucket.
    pub fn timeline_text(&self) -> String {
        let mut out = String::new();
        for b in &self.timeline {
            let versions: Vec<String> =
                b.versions.iter().map(|(v, n)| format!("{v} {n}")).collect();
            let marks: Vec<&str> = self
                .marks
                .iter()
                .filter(|m| m.t >= b.t && m.t < b.t + self.bucket_s)
                .map(|m| m.name.as_str())
                .collect();
            let _ = writeln!(
                out,
                "  {:>7.1}s {:>6.0} req/s  ok {:>5}  failed {:>4}  retried {:>3}  upstream errors {:>3}  {}{}",
                b.t,
                b.rate,
                b.ok,
                b.failed,
                b.retried,
                b.upstream_errors,
                versions.join(", "),
                if marks.is_empty() {
                    String::new()
                } else {
                    format!("  <- {}", marks.join(", "))
                }
            );
        }
        out
    }
}

impl fmt::Display for Report {
    /// The summary: counts, failures, latency per class, versions, upstream errors.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "load: {} requests in {:.1} s to {} ({:.0} req/s, {} asked)",
            self.sent, self.duration_s, self.target, self.rate, self.rate_asked
        )?;
        let failures: Vec<String> = self
            .failures
            .iter()
            .map(|(o, n)| format!("{} {n}", o.name()))
            .collect();
        writeln!(
            f,
            "  ok {}, failed {}{}, stale retries {}, idle closed {}, skipped {}",
            self.ok,
            self.failed,
            if failures.is_empty() {
                String::new()
            } else {
                format!(" ({})", failures.join(", "))
            },
            self.stale_retries,
            self.idle_closed,
            self.skipped
        )?;
        for (class, s) in &self.classes {
            writeln!(
                f,
                "  {:<4} sent {:>6}  failed {:>4}  p50 {:>8.1} ms  p90 {:>8.1} ms  p99 {:>8.1} ms  max {:>8.1} ms",
                class.name(),
                s.sent,
                s.failed,
                s.p50_ms,
                s.p90_ms,
                s.p99_ms,
                s.max_ms
            )?;
        }
        let versions: Vec<String> = self
            .versions
            .iter()
            .map(|(v, n)| format!("{v} {n}"))
            .collect();
        writeln!(
            f,
            "  versions: {} ({} instances answered)",
            if versions.is_empty() {
                "none".to_string()
            } else {
                versions.join(", ")
            },
            self.instances.len()
        )?;
        if self.upstream_errors.read {
            let kinds: Vec<String> = self
                .upstream_errors
                .by_kind
                .iter()
                .map(|(k, n)| format!("{} {n}", k.phrase()))
                .collect();
            writeln!(
                f,
                "  upstream errors: {}{}",
                self.upstream_errors.total,
                if kinds.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", kinds.join(", "))
                }
            )?;
        } else {
            writeln!(f, "  upstream errors: not read (no error log given)")?;
        }
        for m in &self.marks {
            writeln!(f, "  mark {:>7.2}s {}", m.t, m.name)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(seq: u64, t: f64, outcome: Outcome, version: &str) -> Record {
        Record {
            seq,
            t,
            ms: 10.0,
            class: if seq % 10 == 0 {
                Class::Slow
            } else {
                Class::Fast
            },
            fresh: false,
            status: Some(if outcome == Outcome::Ok { 200 } else { 502 }),
            outcome,
            version: Some(version.into()),
            instance: Some(format!("{version}-a")),
            retried: seq == 3,
            error: None,
        }
    }

    #[test]
    fn figures_come_from_the_records() {
        let records: Vec<Record> = (0..40)
            .map(|i| {
                let outcome = if i == 25 {
                    Outcome::Status
                } else {
                    Outcome::Ok
                };
                rec(i, i as f64 * 0.1, outcome, if i < 20 { "v1" } else { "v2" })
            })
            .collect();
        let marks = vec![
            Mark {
                name: "update".into(),
                t: 2.0,
            },
            Mark {
                name: "done".into(),
                t: 3.0,
            },
        ];
        let facts = Report {
            target: "x".into(),
            rate_asked: 10,
            bucket_s: 1.0,
            idle_closed: 2,
            marks,
            ..Report::default()
        };
        let r = Report::build(facts, records);
        assert_eq!((r.sent, r.ok, r.failed, r.stale_retries), (40, 39, 1, 1));
        assert_eq!(r.failures.get(&Outcome::Status), Some(&1));
        assert_eq!(r.versions.get("v1"), Some(&20));
        assert_eq!(r.versions.get("v2"), Some(&19));
        assert_eq!(r.classes[&Class::Slow].sent, 4);
        assert_eq!(r.timeline.len(), 4);
        assert_eq!(r.timeline[2].failed, 1);
        assert_eq!(r.timeline[0].versions.get("v1"), Some(&10));
        let w = r.between("update", "done").unwrap();
        assert_eq!((w.sent, w.failed, w.rate), (10, 1, 10.0));
        assert_eq!(r.instances["v1-a"].answers, 20);
        let fast = r.class_stats(Class::Fast, 2.0, 3.0);
        assert_eq!((fast.sent, fast.ok, fast.failed), (9, 8, 1));
        assert_eq!(fast.p99_ms, 10.0);
        assert_eq!(r.class_stats(Class::Slow, 0.0, 10.0).sent, 4);
        let text = r.to_string();
        assert!(text.contains("failed 1 (status 1)"), "{text}");
        assert!(r.timeline_text().contains("<- update"));
        let back: Report = serde_json::from_str(&r.to_json()).unwrap();
        assert_eq!((back.sent, back.failed), (r.sent, r.failed));
        assert_eq!(back.failures, r.failures);
        assert_eq!(back.classes.len(), 2);
        assert_eq!(back.requests.len(), 40);
    }

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), 50.0);
        assert_eq!(percentile(&v, 99.0), 99.0);
        assert_eq!(percentile(&v, 100.0), 100.0);
        assert_eq!(percentile(&[], 50.0), 0.0);
    }
}
