//! One line of the tool's access log, read as a pure function.
//!
//! The format is [`rollout_nginx::accesslog::FORMAT`]: tab-separated `$msec`,
//! `$status`, `$request_time`, `$upstream_addr`, `$upstream_status`,
//! `$upstream_response_time`. The upstream fields are lists when nginx tried
//! several servers for one request (`10.0.0.2:80, 10.0.0.3:80`, and ` : `
//! after an internal redirect), with `-` where a value is missing; each
//! entry is one attempt, and it is attempts that are judged: a server that
//! failed and was retried elsewhere failed, even if the client never saw it.

/// One attempt of a request at one upstream server.
#[derive(Debug, Clone, PartialEq)]
pub struct Attempt {
    /// The server's address as nginx logged it (`172.18.0.5:8000`).
    pub addr: String,
    /// Its status; `None` when it sent none (connect failure, timeout).
    pub status: Option<u16>,
    /// How long it took, in seconds, when logged.
    pub seconds: Option<f64>,
}

impl Attempt {
    /// A failed attempt: a 5xx answer, or none at all.
    pub fn failed(&self) -> bool {
        self.status.is_none_or(|s| s >= 500)
    }
}

/// One request as the log recorded it.
#[derive(Debug, Clone, PartialEq)]
pub struct LogLine {
    /// When it ended, in seconds since the Unix epoch (`$msec`).
    pub at: f64,
    /// The status the client got.
    pub status: u16,
    /// The whole request's time, in seconds.
    pub request_time: f64,
    /// The servers tried, in order (none for a request nginx answered itself).
    pub attempts: Vec<Attempt>,
}

/// The entries of an upstream list field (`a, b : c`).
fn entries(field: &str) -> Vec<&str> {
    field.split([',', ':']).map(str::trim).collect::<Vec<_>>()
}

/// The addresses of `$upstream_addr`: split on `, ` and ` : ` only, since
/// an address has a `:` of its own (`10.0.0.2:80`, `unix:/s`).
fn addresses(field: &str) -> Vec<&str> {
    field
        .split(", ")
        .flat_map(|a| a.split(" : "))
        .map(str::trim)
        .collect()
}

/// Reads one line; `None` for a line that is not of the format (a line cut
/// by the reader, or written by something else), which is skipped.
pub fn parse(line: &str) -> Option<LogLine> {
    let f: Vec<&str> = line.trim_end_matches(['\r', '\n']).split('\t').collect();
    let [at, status, request_time, addr, ustatus, utime] = f[..] else {
        return None;
    };
    let at: f64 = at.parse().ok()?;
    let status: u16 = status.parse().ok()?;
    let request_time: f64 = request_time.parse().ok()?;
    let mut attempts = Vec::new();
    if addr != "-" {
        let statuses = entries(ustatus);
        let times = entries(utime);
        for (i, a) in addresses(addr).into_iter().enumerate() {
            if a.is_empty() || a == "-" {
                continue;
            }
            attempts.push(Attempt {
                addr: a.to_string(),
                status: statuses.get(i).and_then(|s| s.parse().ok()),
                seconds: times.get(i).and_then(|s| s.parse().ok()),
            });
        }
    }
    Some(LogLine {
        at,
        status,
        request_time,
        attempts,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plain_request() {
        let l = parse("1764786000.123\t200\t0.004\t172.18.0.5:8000\t200\t0.003\n").unwrap();
        assert_eq!(l.at, 1764786000.123);
        assert_eq!(l.status, 200);
        assert_eq!(
            l.attempts,
            vec![Attempt {
                addr: "172.18.0.5:8000".into(),
                status: Some(200),
                seconds: Some(0.003)
            }]
        );
        assert!(!l.attempts[0].failed());
    }

    #[test]
    fn a_retried_request_counts_both_attempts() {
        let l = parse("1.5\t200\t1.010\t10.0.0.2:80, 10.0.0.3:80\t502, 200\t1.000, 0.010").unwrap();
        assert_eq!(l.attempts.len(), 2);
        assert!(l.attempts[0].failed());
        assert_eq!(l.attempts[0].status, Some(502));
        assert!(!l.attempts[1].failed());
        // A connect failure has no status at all.
        let l = parse("1.5\t504\t5.0\t10.0.0.2:80\t-\t-").unwrap();
        assert!(l.attempts[0].failed());
        assert_eq!(l.attempts[0].seconds, None);
        // After an internal redirect.
        let l = parse("2\t200\t0.1\t10.0.0.2:80 : 10.0.0.3:80\t404 : 200\t0.05 : 0.05").unwrap();
        assert_eq!(l.attempts[1].addr, "10.0.0.3:80");
        assert_eq!(l.attempts[1].status, Some(200));
    }

    #[test]
    fn lines_of_another_shape_are_skipped() {
        assert_eq!(parse(""), None);
        assert_eq!(parse("127.0.0.1 - - [03/Dec/2026] \"GET /\" 200"), None);
        assert_eq!(parse("1.5\t200\t0.1\t10.0.0.2:80"), None);
        let l = parse("1.5\t503\t0.0\t-\t-\t-").unwrap();
        assert!(l.attempts.is_empty());
    }
}
