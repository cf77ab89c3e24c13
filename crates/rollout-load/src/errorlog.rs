//! Upstream errors in nginx's error log.
//!
//! nginx retries many upstream failures on another server (`proxy_next_upstream`), so the
//! client never sees them; each one still means traffic went where it should not have gone.
//! This module reads the log over a run's window and sorts the lines into the kinds DESIGN.md
//! names: `connect() failed`, `no live upstreams`, `upstream timed out` and `upstream
//! prematurely closed`, plus any other error-level line about an upstream.

use crate::LoadError;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

/// Where the proxy's error log is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ErrorLogSource {
    /// A file on this machine, for example nginx's log folder bind-mounted from the host. The
    /// bytes appended during the run are read (the whole file, filtered by time, if it was
    /// replaced), so the file survives the proxy container being recreated.
    File(PathBuf),
    /// A file inside a running container, read with `docker exec CONTAINER cat PATH` at the
    /// end of the run and filtered by time (one-second resolution).
    Container {
        /// Container name or id.
        container: String,
        /// The log inside it, for example `/var/log/nginx/error.log`.
        path: String,
    },
}

/// The kind of an upstream error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UpstreamErrorKind {
    /// `connect() failed (111: Connection refused) while connecting to upstream` and the like.
    ConnectFailed,
    /// `no live upstreams while connecting to upstream`.
    NoLiveUpstreams,
    /// `upstream timed out`.
    TimedOut,
    /// `upstream prematurely closed connection`.
    PrematurelyClosed,
    /// Any other error-level line that names an upstream (`recv() failed ... from upstream`).
    Other,
}

impl UpstreamErrorKind {
    /// The phrase of the log this kind stands for.
    pub fn phrase(self) -> &'static str {
        match self {
            UpstreamErrorKind::ConnectFailed => "connect() failed",
            UpstreamErrorKind::NoLiveUpstreams => "no live upstreams",
            UpstreamErrorKind::TimedOut => "upstream timed out",
            UpstreamErrorKind::PrematurelyClosed => "upstream prematurely closed",
            UpstreamErrorKind::Other => "other upstream error",
        }
    }
}

/// One upstream error line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UpstreamError {
    /// Seconds since the start of the run (from the line's timestamp, whole seconds), if the
    /// line had one.
    pub t: Option<f64>,
    /// Its kind.
    pub kind: UpstreamErrorKind,
    /// The line as nginx wrote it.
    pub line: String,
}

/// The upstream errors of a run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct UpstreamErrors {
    /// Whether a log was read at all (false: the count is unknown, not zero).
    pub read: bool,
    /// How many lines.
    pub total: u64,
    /// How many of each kind.
    pub by_kind: BTreeMap<UpstreamErrorKind, u64>,
    /// The lines.
    pub errors: Vec<UpstreamError>,
}

impl UpstreamErrors {
    /// Sorts `text` (log lines) into upstream errors, with times relative to `start_unix`.
    pub fn from_lines(text: &str, start_unix: f64) -> UpstreamErrors {
        let mut out = UpstreamErrors {
            read: true,
            ..UpstreamErrors::default()
        };
        for line in text.lines() {
            if let Some(kind) = classify(line) {
                out.total += 1;
                *out.by_kind.entry(kind).or_default() += 1;
                out.errors.push(UpstreamError {
                    t: timestamp(line).map(|s| s as f64 - start_unix.floor()),
                    kind,
                    line: line.to_string(),
                });
            }
        }
        out
    }

    /// How many errors of `kind`.
    pub fn count(&self, kind: UpstreamErrorKind) -> u64 {
        self.by_kind.get(&kind).copied().unwrap_or(0)
    }
}

/// The kind of upstream error a log line reports, if it reports one.
pub fn classify(line: &str) -> Option<UpstreamErrorKind> {
    let error_level = ["[error]", "[crit]", "[alert]", "[emerg]"]
        .iter()
        .any(|l| line.contains(l));
    if !error_level {
        return None;
    }
    if line.contains("no live upstreams") {
        Some(UpstreamErrorKind::NoLiveUpstreams)
    } else if line.contains("upstream timed out") {
        Some(UpstreamErrorKind::TimedOut)
    } else if line.contains("upstream prematurely closed") {
        Some(UpstreamErrorKind::PrematurelyClosed)
    } else if line.contains("connect() failed") {
        Some(UpstreamErrorKind::ConnectFailed)
    } else if line.contains("upstream") {
        Some(UpstreamErrorKind::Other)
    } else {
        None
    }
}

/// The Unix time of a line that starts with nginx's `YYYY/MM/DD HH:MM:SS` (read as UTC, which
/// is what a container without a time zone writes).
pub fn timestamp(line: &str) -> Option<i64> {
    let b = line.as_bytes();
    if b.len() < 19 || b[4] != b'/' || b[7] != b'/' || b[10] != b' ' || b[13] != b':' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| line.get(r)?.parse::<i64>().ok();
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, s) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || s > 60 {
        return None;
    }
    Some(days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + s)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Seconds since the Unix epoch, now.
pub(crate) fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// The position of a log at the start of a run.
#[derive(Debug)]
pub(crate) enum LogStart {
    /// The file's length then (0 when it did not exist yet).
    File(u64),
    /// Nothing to remember: the window is by time.
    Container,
}

impl ErrorLogSource {
    pub(crate) fn begin(&self) -> LogStart {
        match self {
            ErrorLogSource::File(path) => {
                LogStart::File(std::fs::metadata(path).map(|m| m.len()).unwrap_or(0))
            }
            ErrorLogSource::Container { .. } => LogStart::Container,
        }
    }

    /// The upstream errors written between `start_unix` and `end_unix`.
    pub(crate) async fn collect(
        &self,
        start: &LogStart,
        start_unix: f64,
        end_unix: f64,
    ) -> Result<UpstreamErrors, LoadError> {
        let in_window = |text: &str| -> String {
            let (from, to) = (start_unix.floor() as i64, end_unix.ceil() as i64);
            text.lines()
                .filter(|l| timestamp(l).is_some_and(|t| t >= from && t <= to))
                .fold(String::new(), |mut acc, l| {
                    acc.push_str(l);
                    acc.push('\n');
                    acc
                })
        };
        let text = match (self, start) {
            (ErrorLogSource::File(path), LogStart::File(offset)) => {
                let read_err = |source| LoadError::ErrorLogFile {
                    path: path.clone(),
                    source,
                };
                let bytes = match tokio::fs::read(path).await {
                    Ok(b) => b,
                    // nginx never started during the run: nothing was logged.
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound && *offset == 0 => {
                        Vec::new()
                    }
                    Err(e) => return Err(read_err(e)),
                };
                let offset = *offset as usize;
                if bytes.len() >= offset {
                    String::from_utf8_lossy(&bytes[offset..]).into_owned()
                } else {
                    // Replaced during the run: fall back to the time window.
                    in_window(&String::from_utf8_lossy(&bytes))
                }
            }
            (ErrorLogSource::Container { container, path }, _) => {
                let out = tokio::process::Command::new("docker")
                    .args(["exec", container, "cat", path])
                    .output()
                    .await
                    .map_err(|e| LoadError::ErrorLogContainer {
                        container: container.clone(),
                        path: path.clone(),
                        detail: e.to_string(),
                    })?;
                if !out.status.success() {
                    return Err(LoadError::ErrorLogContainer {
                        container: container.clone(),
                        path: path.clone(),
                        detail: String::from_utf8_lossy(&out.stderr).trim().to_string(),
                    });
                }
                in_window(&String::from_utf8_lossy(&out.stdout))
            }
            (ErrorLogSource::File(_), LogStart::Container) => String::new(),
        };
        Ok(UpstreamErrors::from_lines(&text, start_unix))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOG: &str = "\
2026/11/28 08:20:01 [error] 31#31: *123 connect() failed (111: Connection refused) while connecting to upstream, client: 172.18.0.1, server: , request: \"GET / HTTP/1.1\", upstream: \"http://172.18.0.3:8000/\", host: \"localhost\"
2026/11/28 08:20:02 [error] 31#31: *124 no live upstreams while connecting to upstream, client: 172.18.0.1
2026/11/28 08:20:02 [error] 32#32: *130 upstream prematurely closed connection while reading response header from upstream
2026/11/28 08:20:03 [error] 32#32: *131 upstream timed out (110: Connection timed out) while reading response header from upstream
2026/11/28 08:20:03 [error] 32#32: *132 recv() failed (104: Connection reset by peer) while reading response header from upstream
2026/11/28 08:20:04 [warn] 32#32: *133 an upstream response is buffered to a temporary file
2026/11/28 08:20:04 [notice] 1#1: signal process started
2026/11/28 08:20:05 [error] 32#32: *134 open() \"/usr/share/nginx/html/x\" failed (2: No such file or directory)
";

    #[test]
    fn sorts_lines_into_kinds() {
        let start = timestamp(LOG).unwrap() as f64;
        let e = UpstreamErrors::from_lines(LOG, start);
        assert!(e.read);
        assert_eq!(e.total, 5);
        assert_eq!(e.count(UpstreamErrorKind::ConnectFailed), 1);
        assert_eq!(e.count(UpstreamErrorKind::NoLiveUpstreams), 1);
        assert_eq!(e.count(UpstreamErrorKind::PrematurelyClosed), 1);
        assert_eq!(e.count(UpstreamErrorKind::TimedOut), 1);
        assert_eq!(e.count(UpstreamErrorKind::Other), 1);
        assert_eq!(e.errors[0].t, Some(0.0));
        assert_eq!(e.errors[4].t, Some(2.0));
    }

    #[test]
    fn reads_nginx_timestamps_as_utc() {
        assert_eq!(timestamp("1970/01/01 00:00:00 [error]"), Some(0));
        assert_eq!(timestamp("2000/03/01 00:00:01 x"), Some(951_868_801));
        assert_eq!(timestamp("2026/11/28 08:20:01 x"), Some(1_795_854_001));
        assert_eq!(timestamp("not a time"), None);
        assert_eq!(timestamp("2026/13/28 08:20:01 x"), None);
    }

    #[tokio::test]
    async fn a_file_is_read_from_where_it_was_at_the_start() {
        let dir = std::env::temp_dir().join(format!("rollout-load-log-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("error.log");
        let lines: Vec<&str> = LOG.lines().collect();
        std::fs::write(&path, format!("{}\n", lines[0])).unwrap();
        let source = ErrorLogSource::File(path.clone());
        let start = source.begin();
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        use std::io::Write;
        writeln!(f, "{}", lines[1]).unwrap();
        let t0 = timestamp(LOG).unwrap() as f64;
        let e = source.collect(&start, t0, t0 + 10.0).await.unwrap();
        assert_eq!(e.total, 1);
        assert_eq!(e.count(UpstreamErrorKind::NoLiveUpstreams), 1);
        // Replaced by a shorter file: the time window decides.
        std::fs::write(&path, format!("{}\n", lines[3])).unwrap();
        let e = source.collect(&start, t0 + 2.0, t0 + 3.0).await.unwrap();
        assert_eq!(e.count(UpstreamErrorKind::TimedOut), 1);
        let e = source.collect(&start, t0 + 5.0, t0 + 9.0).await.unwrap();
        assert_eq!(e.total, 0);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn an_unreadable_file_is_an_error_not_zero() {
        let source = ErrorLogSource::File("/nonexistent/dir/error.log".into());
        let start = LogStart::File(10);
        let err = source.collect(&start, 0.0, 1.0).await.unwrap_err();
        assert!(
            err.to_string().contains("/nonexistent/dir/error.log"),
            "{err}"
        );
    }
}
