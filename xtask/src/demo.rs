//! `cargo xtask demo [--quick] [--release]`: a real rollout under load.
//!
//! Installs what it needs from the host when it is missing (Debian's nginx,
//! busybox-static and docker-compose through `apt-get`, as `cargo xtask
//! test` does, saying which and why), builds the images and the plugin,
//! brings up `examples/rolling` (six v1 replicas behind nginx) under a
//! unique project name on a free port of 127.0.0.1, sends load through
//! nginx with `rollout-load`, and runs
//! `APP_VERSION=v2 docker rollout app` through the real docker CLI with the
//! plugin installed into a temporary `DOCKER_CONFIG`. Then it prints what
//! the load saw (requests sent, failed, stale retries, upstream errors, the
//! versions that answered over time), the rollout's own timeline, and the
//! final state, and removes everything it created, also when a step failed.
//!
//! The example's own values (parallelism 2, delay 10s, monitor 30s) are
//! used unless `--quick` shortens the delay and the monitor window on the
//! command line (the example file is never changed).

use crate::install::{install_into, target_dir};
use crate::util::{cargo, ensure_debian_packages, root, run as run_cmd, show, HOST_PACKAGES};
use anyhow::{bail, Context, Result};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Requests per second through nginx.
const RATE: u32 = 250;

/// Entry point of this task.
pub fn run(args: &[String]) -> Result<()> {
    let mut quick = false;
    let mut release = false;
    for a in args {
        match a.as_str() {
            "--quick" => quick = true,
            "--release" => release = true,
            other => {
                bail!("unknown argument {other:?}\nusage: cargo xtask demo [--quick] [--release]")
            }
        }
    }
    // A fresh machine has Docker and Rust only: the images and the demo need Debian's
    // nginx, a static busybox and Compose, installed as `cargo xtask test` installs them.
    ensure_debian_packages(HOST_PACKAGES)?;
    crate::images::run(&[])?;
    let mut build = cargo();
    build.args(["build", "-p", "docker-rollout", "-p", "rollout-load"]);
    if release {
        build.arg("--release");
    }
    run_cmd(&mut build)?;
    let bins = target_dir().join(if release { "release" } else { "debug" });
    let compose = compose_tool()?;

    let mut demo = Demo::create(compose)?;
    eprintln!(
        "\n== demo project {} in {} (nginx on 127.0.0.1:{})",
        demo.project,
        demo.dir.display(),
        demo.port
    );
    let result = demo.play(&bins, quick);
    drop(demo);
    result
}

/// The Compose tool on this machine: `docker-compose` (v1) or `docker compose`.
fn compose_tool() -> Result<Vec<String>> {
    if crate::util::have("docker-compose") {
        return Ok(vec!["docker-compose".into()]);
    }
    let v2 = Command::new("docker")
        .args(["compose", "version"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if v2 {
        return Ok(vec!["docker".into(), "compose".into()]);
    }
    bail!("neither docker-compose nor docker compose is installed")
}

/// The demo's project: its folder, name and port. Dropping it removes all.
struct Demo {
    dir: PathBuf,
    project: String,
    port: u16,
    compose: Vec<String>,
    load: Option<Child>,
}

impl Demo {
    fn create(compose: Vec<String>) -> Result<Demo> {
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() % 1_000_000)
            .unwrap_or(0);
        let project = format!("rolloutdemo{}x{stamp}", std::process::id());
        let dir = std::env::temp_dir().join(&project);
        std::fs::create_dir_all(dir.join("docker-config/cli-plugins"))?;
        let example = root().join("examples/rolling");
        for f in ["compose.yaml", "nginx.conf"] {
            std::fs::copy(example.join(f), dir.join(f))
                .with_context(|| format!("cannot copy examples/rolling/{f}"))?;
        }
        // Debian's nginx logs errors to stderr unless told otherwise; the
        // load generator counts upstream errors from a log file, so the
        // demo's copy (only) names one.
        let conf = std::fs::read_to_string(dir.join("nginx.conf"))?;
        std::fs::write(
            dir.join("nginx.conf"),
            format!("error_log /var/log/nginx/error.log warn;\n{conf}"),
        )?;
        // Labels only, so that everything the demo makes can be found and
        // removed by label; the example's settings stay as they are.
        std::fs::write(
            dir.join("compose.override.yaml"),
            format!(
                "services:\n  nginx:\n    labels:\n      io.rollout.test: {project}\n  app:\n    labels:\n      io.rollout.test: {project}\n"
            ),
        )?;
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        Ok(Demo {
            dir,
            project,
            port,
            compose,
            load: None,
        })
    }

    /// A command run in the project folder with the project's environment.
    fn command(&self, program: &str) -> Command {
        let mut c = Command::new(program);
        c.current_dir(&self.dir)
            .env("COMPOSE_PROJECT_NAME", &self.project)
            .env("NGINX_PORT", format!("127.0.0.1:{}", self.port))
            .env_remove("COMPOSE_FILE")
            .env_remove("APP_VERSION");
        c
    }

    fn compose(&self) -> Command {
        let mut c = self.command(&self.compose[0]);
        c.args(&self.compose[1..]);
        c
    }

    fn play(&mut self, bins: &Path, quick: bool) -> Result<()> {
        run_cmd(self.compose().args(["up", "-d"]))?;
        self.wait_ready(Duration::from_secs(120))?;
        let plugin = install_into(
            &bins.join("docker-rollout"),
            &self.dir.join("docker-config/cli-plugins"),
        )?;
        eprintln!("== plugin installed at {}", plugin.display());

        let load_json = self.dir.join("load.json");
        let load_log = self.dir.join("load.log");
        let nginx = if self.compose[0] == "docker-compose" {
            format!("{}_nginx_1", self.project)
        } else {
            format!("{}-nginx-1", self.project)
        };
        let mut load = self.command(bins.join("rollout-load").to_str().unwrap_or("rollout-load"));
        load.args([
            &format!("127.0.0.1:{}", self.port),
            "--rate",
            &RATE.to_string(),
            "--duration",
            "15m",
            "--error-log-container",
            &nginx,
            "--timeline",
            "--strict",
            "--json",
        ])
        .arg(&load_json)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&load_log)?);
        eprintln!("$ {}", show(&load));
        let child = load.spawn().context("cannot start rollout-load")?;
        let pid = child.id();
        // Held by the demo, so that Drop stops it when a step fails.
        self.load = Some(child);
        eprintln!("== load: {RATE} requests/s through nginx (5% slow 2s GETs, 5% POSTs, 20% new connections); 5s of v1 first");
        std::thread::sleep(Duration::from_secs(5));

        let mut rollout = self.command("docker");
        rollout
            .arg("--config")
            .arg(self.dir.join("docker-config"))
            .args(["rollout", "app"])
            .env("APP_VERSION", "v2");
        if quick {
            rollout.args(["--delay", "2s", "--monitor", "5s"]);
            eprintln!("== --quick: delay 2s and monitor 5s given on the command line (the example file says 10s and 30s)");
        } else {
            eprintln!("== the example's own update_config: parallelism 2, delay 10s, monitor 30s, failure_action rollback");
        }
        eprintln!("$ APP_VERSION=v2 {}", show(&rollout));
        rollout.stdout(Stdio::inherit()).stderr(Stdio::piped());
        let started = Instant::now();
        let mut child = rollout.spawn().context("cannot run docker rollout")?;
        let mut lines = Vec::new();
        if let Some(err) = child.stderr.take() {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                eprintln!("  | {line}");
                lines.push(line);
            }
        }
        let status = child.wait()?;
        let took = started.elapsed();
        eprintln!(
            "== docker rollout exited {status} after {:.1}s; 3s more of load on v2",
            took.as_secs_f64()
        );
        std::thread::sleep(Duration::from_secs(3));

        // SIGINT ends rollout-load early with its report.
        let _ = Command::new("kill")
            .args(["-INT", &pid.to_string()])
            .status();
        let load_status = match self.load.take() {
            Some(mut c) => wait_bounded(&mut c, Duration::from_secs(60))?,
            None => None,
        };
        let mut report = String::new();
        std::fs::File::open(&load_log)?.read_to_string(&mut report)?;

        let mut out = std::io::stdout();
        writeln!(
            out,
            "\n==================== load through nginx ===================="
        )?;
        write!(out, "{report}")?;
        writeln!(
            out,
            "\n==================== rollout timeline ===================="
        )?;
        for l in &lines {
            writeln!(out, "{l}")?;
        }
        writeln!(
            out,
            "\n==================== final state ===================="
        )?;
        out.flush()?;
        let _ = run_cmd(self.compose().arg("ps"));
        let conf = std::fs::read_to_string(self.dir.join("nginx.conf"))?;
        writeln!(out, "nginx.conf upstream after the rollout:")?;
        for l in conf
            .lines()
            .filter(|l| l.contains("server ") || l.contains("upstream"))
        {
            writeln!(out, "  {}", l.trim())?;
        }
        writeln!(
            out,
            "\n== demo result: docker rollout {status}, rollout-load {}",
            match load_status {
                Some(s) => s.to_string(),
                None => "did not stop".to_string(),
            }
        )?;
        if !status.success() {
            bail!("docker rollout failed: {status}");
        }
        match load_status {
            Some(s) if s.success() => Ok(()),
            Some(s) => bail!(
                "rollout-load --strict: requests failed or nginx logged upstream errors ({s})"
            ),
            None => bail!("rollout-load did not stop within 60s"),
        }
    }

    /// Waits until the six replicas are healthy and nginx answers 200.
    fn wait_ready(&self, limit: Duration) -> Result<()> {
        eprintln!(
            "== waiting for 6 healthy app containers and nginx answering 200 (at most {}s)",
            limit.as_secs()
        );
        let until = Instant::now() + limit;
        loop {
            let healthy = Command::new("docker")
                .args(["ps", "-q", "--filter"])
                .arg(format!("label=com.docker.compose.project={}", self.project))
                .args([
                    "--filter",
                    "label=com.docker.compose.service=app",
                    "--filter",
                    "health=healthy",
                ])
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).lines().count())
                .unwrap_or(0);
            if healthy >= 6 && http_ok(self.port) {
                return Ok(());
            }
            if Instant::now() > until {
                bail!(
                    "the demo project was not ready within {}s ({healthy} healthy app containers)",
                    limit.as_secs()
                );
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }
}

/// Whether `GET /` on 127.0.0.1:port answers 200.
fn http_ok(port: u16) -> bool {
    let Ok(mut s) =
        TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_secs(2))
    else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if s.write_all(b"GET / HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut buf = [0u8; 16];
    s.read(&mut buf).is_ok_and(|n| {
        buf[..n].starts_with(b"HTTP/1.1 200") || buf[..n].starts_with(b"HTTP/1.0 200")
    })
}

fn wait_bounded(c: &mut Child, limit: Duration) -> Result<Option<std::process::ExitStatus>> {
    let until = Instant::now() + limit;
    loop {
        if let Some(s) = c.try_wait()? {
            return Ok(Some(s));
        }
        if Instant::now() > until {
            let _ = c.kill();
            let _ = c.wait();
            return Ok(None);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        eprintln!("== cleaning up project {}", self.project);
        if let Some(mut c) = self.load.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = self
            .compose()
            .args(["down", "-v", "--remove-orphans", "-t", "2"])
            .stdout(Stdio::null())
            .status();
        // What Compose does not know: containers of the project left by a
        // failed step, and the rollout's own records of it (labelled with
        // its project).
        for label in [
            format!("com.docker.compose.project={}", self.project),
            format!("io.rollout.project={}", self.project),
            format!("io.rollout.test={}", self.project),
        ] {
            let ids = Command::new("docker")
                .args(["ps", "-aq", "--filter"])
                .arg(format!("label={label}"))
                .output()
                .map(|o| {
                    String::from_utf8_lossy(&o.stdout)
                        .split_whitespace()
                        .map(str::to_string)
                        .collect::<Vec<_>>()
                })
                .unwrap_or_default();
            if !ids.is_empty() {
                let _ = Command::new("docker")
                    .args(["rm", "-f"])
                    .args(&ids)
                    .stdout(Stdio::null())
                    .status();
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
