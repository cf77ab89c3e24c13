//! The demo app: a tiny HTTP/1.1 server that end-to-end tests, the demo and the benchmarks roll
//! out. It answers with its version and the name of the instance that answered, so that a load
//! generator in front of a proxy can tell which revision and which container served each
//! request, and it has switches for every fault a rollout must survive or detect.
//!
//! It is written by hand on tokio (no HTTP framework) because it must be linked statically and
//! run in a `FROM scratch` image, and because the fault switches need control over the
//! connection itself: whether an idle keep-alive connection is closed on SIGTERM, whether the
//! process dies with requests in flight. The image has no curl, so the binary is its own health
//! probe: `demo-app healthcheck` asks `/health` on 127.0.0.1 and exits 0 or 1, which is what the
//! image's `HEALTHCHECK` runs.
//!
//! Every switch is a flag and an environment variable (`DEMO_*`), so that a Compose file can
//! turn faults on with `environment:` and the images can be variants of one binary.
//!
//! With `DEMO_DATABASE_URL` it keeps users in PostgreSQL (module `db`): the app of the seed's
//! users/email schema change, v1 without `email`, v2 (`DEMO_USERS_EMAIL`) with it.
//!
//! With `DEMO_WORK_UNIT_MS` it is also a queue worker (a service no proxy routes): it works in
//! units, logs each, and on SIGTERM finishes the unit at hand before it exits.

mod db;
mod http;
mod server;

use clap::{Parser, Subcommand, ValueEnum};
use std::net::IpAddr;
use std::process::ExitCode;
use std::time::Duration;

/// Command line and environment.
#[derive(Debug, Parser)]
#[command(
    name = "demo-app",
    version,
    about = "A tiny HTTP server with fault switches, for rollout tests"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    options: Options,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve HTTP (the default).
    Serve,
    /// Ask GET /health on 127.0.0.1 and exit 0 when it answers 200, 1 otherwise (the image's
    /// HEALTHCHECK).
    Healthcheck {
        /// Give up after this many milliseconds.
        #[arg(long, default_value_t = 2000)]
        timeout_ms: u64,
    },
}

/// What to do on SIGTERM (and SIGINT).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OnSigterm {
    /// Stop accepting, close idle keep-alive connections, finish the requests in flight, exit 0.
    Drain,
    /// Exit at once with code 143, cutting the requests in flight, as many real apps do.
    Exit,
}

/// The switches of the server.
#[derive(Debug, Clone, clap::Args)]
pub struct Options {
    /// Port to listen on.
    #[arg(long, env = "DEMO_PORT", default_value_t = 8000, global = true)]
    pub port: u16,
    /// Address to listen on.
    #[arg(long, env = "DEMO_BIND", default_value = "0.0.0.0")]
    pub bind: IpAddr,
    /// The version this instance answers with.
    #[arg(long = "app-version", env = "DEMO_VERSION", default_value = "v1")]
    pub app_version: String,
    /// The instance name it answers with (default: the host name, which Docker sets to the
    /// container's short id).
    #[arg(long, env = "DEMO_INSTANCE")]
    pub instance: Option<String>,
    /// Slow start: wait this long before listening.
    #[arg(long, env = "DEMO_START_DELAY_MS", default_value_t = 0)]
    pub start_delay_ms: u64,
    /// /health always answers 503.
    #[arg(long, env = "DEMO_HEALTH_FAIL")]
    pub health_fail: bool,
    /// /health answers 503 from this long after start on (healthy first, unhealthy later).
    #[arg(long, env = "DEMO_UNHEALTHY_AFTER_MS")]
    pub unhealthy_after_ms: Option<u64>,
    /// Exit with code 1 at once, before listening.
    #[arg(long, env = "DEMO_CRASH_ON_START")]
    pub crash_on_start: bool,
    /// Exit with code 1 this long after start.
    #[arg(long, env = "DEMO_CRASH_AFTER_MS")]
    pub crash_after_ms: Option<u64>,
    /// Share of requests (0 to 1, health excluded) answered 500, spread evenly.
    #[arg(long, env = "DEMO_ERROR_RATE", default_value_t = 0.0)]
    pub error_rate: f64,
    /// Latency added to every answer but /health.
    #[arg(long, env = "DEMO_LATENCY_MS", default_value_t = 0)]
    pub latency_ms: u64,
    /// What to do on SIGTERM and SIGINT.
    #[arg(long, env = "DEMO_ON_SIGTERM", value_enum, default_value_t = OnSigterm::Drain)]
    pub on_sigterm: OnSigterm,
    /// In drain mode, give up waiting for requests in flight after this long.
    #[arg(long, env = "DEMO_DRAIN_TIMEOUT_MS", default_value_t = 30_000)]
    pub drain_timeout_ms: u64,
    /// Also run as a queue worker: one unit of work of this many milliseconds after another,
    /// each logged. On SIGTERM (or SIGINT) the unit at hand is finished and logged before the
    /// server does what `--on-sigterm` says. The HTTP server keeps answering `/health`.
    #[arg(long, env = "DEMO_WORK_UNIT_MS")]
    pub work_unit_ms: Option<u64>,
    /// Upper bound for `/slow?ms=N` and `/submit?ms=N`.
    #[arg(long, env = "DEMO_MAX_SLOW_MS", default_value_t = 120_000)]
    pub max_slow_ms: u64,
    /// Database mode: keep users in this PostgreSQL (`postgresql://user:password@host:port/db`,
    /// a numeric host in a scratch image). `POST /users?name=N` and every `POST /submit`
    /// insert a user, `GET /users?id=N` reads one, `/health` needs the database. The value
    /// is never printed.
    #[arg(long, env = "DEMO_DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// In database mode, write and read the users' `email` (the seed's v2; v1 never names it).
    #[arg(long, env = "DEMO_USERS_EMAIL")]
    pub users_email: bool,
}

impl Options {
    fn check(&self) -> Result<(), String> {
        if !(0.0..=1.0).contains(&self.error_rate) {
            return Err(format!(
                "error rate {} is out of range: expected a share from 0 to 1",
                self.error_rate
            ));
        }
        if let Some(url) = &self.database_url {
            db::Db::parse(url, self.users_email)?;
        }
        Ok(())
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Healthcheck { timeout_ms }) => {
            match http::probe_health(cli.options.port, Duration::from_millis(timeout_ms)) {
                Ok(status) if status == 200 => {
                    println!("healthy: /health answered {status}");
                    ExitCode::SUCCESS
                }
                Ok(status) => {
                    println!("unhealthy: /health answered {status}");
                    ExitCode::FAILURE
                }
                Err(e) => {
                    println!("unhealthy: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Some(Command::Serve) | None => {
            if let Err(e) = cli.options.check() {
                eprintln!("demo-app: {e}");
                return ExitCode::from(2);
            }
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("demo-app: cannot start the runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            match runtime.block_on(server::serve(cli.options)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("demo-app: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}
