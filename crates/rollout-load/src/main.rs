//! `rollout-load`: the load generator as a command. Prints the summary and the timeline to
//! stderr, writes the JSON report where asked, and exits 1 with `--strict` when a request
//! failed or the proxy logged an upstream error.

use clap::Parser;
use rollout_load::{ErrorLogSource, LoadConfig, LoadHandle};
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Debug, Parser)]
#[command(
    name = "rollout-load",
    version,
    about = "HTTP load with a real client's failure semantics, for rollouts"
)]
struct Cli {
    /// Where to send the load: host:port or http://host:port.
    target: String,
    /// Requests started per second.
    #[arg(long, default_value_t = 250)]
    rate: u32,
    /// Stop after this long (for example 30s, 2m, 500ms).
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    duration: Duration,
    /// Stop after this many requests.
    #[arg(long)]
    requests: Option<u64>,
    /// Share of slow GETs (0 to 1).
    #[arg(long, default_value_t = 0.05)]
    slow_share: f64,
    /// How long a slow GET takes at the server.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    slow: Duration,
    /// Share of POSTs (0 to 1).
    #[arg(long, default_value_t = 0.05)]
    post_share: f64,
    /// How long a POST takes at the server.
    #[arg(long, default_value = "0s", value_parser = parse_duration)]
    post_delay: Duration,
    /// Share of requests on new connections (0 to 1).
    #[arg(long, default_value_t = 0.2)]
    new_connection_share: f64,
    /// The Host header.
    #[arg(long, default_value = "localhost")]
    host: String,
    /// nginx's error log on this machine.
    #[arg(long, conflicts_with = "error_log_container")]
    error_log: Option<PathBuf>,
    /// nginx's error log in a container: CONTAINER or CONTAINER:PATH (default path
    /// /var/log/nginx/error.log).
    #[arg(long)]
    error_log_container: Option<String>,
    /// Write the JSON report here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Print the timeline.
    #[arg(long)]
    timeline: bool,
    /// Exit 1 when a request failed or an upstream error was logged.
    #[arg(long)]
    strict: bool,
}

/// `30s`, `500ms`, `2m`, or plain seconds.
fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = s
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .map(|i| s.split_at(i))
        .unwrap_or((s, "s"));
    let n: f64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a duration: expected for example 30s or 500ms"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        _ => {
            return Err(format!(
                "unknown unit {unit:?} in {s:?}: expected ms, s or m"
            ))
        }
    };
    Duration::try_from_secs_f64(secs).map_err(|e| format!("{s:?}: {e}"))
}

fn resolve(target: &str) -> Result<SocketAddr, String> {
    let hostport = target
        .strip_prefix("http://")
        .unwrap_or(target)
        .trim_end_matches('/');
    hostport
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {hostport:?}: {e}"))?
        .next()
        .ok_or_else(|| format!("{hostport:?} resolves to no address"))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let target = match resolve(&cli.target) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let mut config = LoadConfig::new(target);
    config.rate = cli.rate;
    config.duration = cli.duration;
    config.max_requests = cli.requests;
    config.slow_share = cli.slow_share;
    config.slow = cli.slow;
    config.post_share = cli.post_share;
    config.post_delay = cli.post_delay;
    config.new_connection_share = cli.new_connection_share;
    config.host = cli.host;
    config.error_log = match (cli.error_log, cli.error_log_container) {
        (Some(path), _) => Some(ErrorLogSource::File(path)),
        (None, Some(c)) => {
            let (container, path) = c
                .split_once(':')
                .map(|(c, p)| (c.to_string(), p.to_string()))
                .unwrap_or((c, "/var/log/nginx/error.log".into()));
            Some(ErrorLogSource::Container { container, path })
        }
        (None, None) => None,
    };
    let handle = match LoadHandle::start(config) {
        Ok(h) => h,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    // Ctrl-C ends the run early, with a report.
    let ctrl_c = std::thread::spawn(|| {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build();
        if let Ok(rt) = rt {
            let _ = rt.block_on(tokio::signal::ctrl_c());
        }
    });
    while !handle.is_finished() && !ctrl_c.is_finished() {
        std::thread::sleep(Duration::from_millis(50));
    }
    let report = match handle.stop() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    eprint!("{report}");
    if cli.timeline {
        eprintln!("timeline ({} s buckets):", report.bucket_s);
        eprint!("{}", report.timeline_text());
    }
    if let Some(path) = cli.json {
        if let Err(e) = report.write_json(&path) {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
        eprintln!("report written to {}", path.display());
    }
    if cli.strict && (report.failed > 0 || report.upstream_errors.total > 0) {
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("7"), Ok(Duration::from_secs(7)));
        assert!(parse_duration("5h").is_err());
        assert!(parse_duration("x").is_err());
    }
}
