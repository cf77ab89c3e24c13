//! A real Prometheus server (Debian's `prometheus`) on a loopback port, for the canary
//! analysis's Prometheus provider: it scrapes fixed targets, or the running containers of a
//! Compose project as they come and go (file-based discovery, fed by a thread of the test from
//! the engine, as an operator's discovery would be).
//!
//! Killed, and its folder removed, when dropped; the feeding thread is bounded by the drop.

use crate::engine::docker;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// Where Debian's package puts the server.
pub const PROMETHEUS: &str = "/usr/bin/prometheus";

/// A Prometheus server scraping every second.
pub struct Prometheus {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    dir: PathBuf,
    feeder: Option<(Arc<AtomicBool>, JoinHandle<()>)>,
}

impl Prometheus {
    /// A server scraping `targets` (`HOST:PORT`).
    pub fn scraping(targets: &[String]) -> Prometheus {
        let list: Vec<String> = targets.iter().map(|t| format!("'{t}'")).collect();
        Self::start(&format!(
            "static_configs:\n      - targets: [{}]",
            list.join(", ")
        ))
    }

    /// A server scraping port `port` of every running container of Compose project `project`,
    /// on its address in the project's networks; the list is refreshed every 500 ms.
    pub fn scraping_project(project: &str, port: u16) -> Prometheus {
        let mut server = Self::start(
            "file_sd_configs:\n      - files: ['targets.json']\n        refresh_interval: 1s",
        );
        let file = server.dir.join("targets.json");
        let stop = Arc::new(AtomicBool::new(false));
        let project = project.to_string();
        let stopped = stop.clone();
        let thread = std::thread::spawn(move || {
            while !stopped.load(Ordering::SeqCst) {
                write_targets(&file, &project_targets(&project, port));
                std::thread::sleep(Duration::from_millis(500));
            }
        });
        server.feeder = Some((stop, thread));
        server
    }

    fn start(targets: &str) -> Prometheus {
        assert!(
            Path::new(PROMETHEUS).exists(),
            "{PROMETHEUS} is missing\nhint: cargo xtask setup (installs Debian's prometheus)"
        );
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "rollout-prometheus-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        write_targets(&dir.join("targets.json"), &[]);
        let config = format!(
            "global: {{scrape_interval: 1s, evaluation_interval: 1s, scrape_timeout: 1s}}\n\
             scrape_configs:\n  - job_name: demo\n    {targets}\n"
        );
        std::fs::write(dir.join("prometheus.yml"), config).unwrap();
        let port = crate::free_port();
        let child = Command::new(PROMETHEUS)
            .current_dir(&dir)
            .arg(format!(
                "--config.file={}",
                dir.join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("prometheus starts");
        let server = Prometheus {
            child,
            url: format!("http://127.0.0.1:{port}"),
            dir,
            feeder: None,
        };
        crate::wait_http(
            SocketAddr::from(([127, 0, 0, 1], port)),
            "/-/ready",
            Duration::from_secs(30),
            |a| a.status == 200,
        );
        server
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        if let Some((stop, thread)) = self.feeder.take() {
            stop.store(true, Ordering::SeqCst);
            let _ = thread.join();
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `ADDRESS:port` of every running container of `project`, on each of its networks.
fn project_targets(project: &str, port: u16) -> Vec<String> {
    let Ok(out) = docker()
        .args(["ps", "--quiet", "--no-trunc", "--filter"])
        .arg(format!("label=com.docker.compose.project={project}"))
        .output()
    else {
        return Vec::new();
    };
    let ids: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(str::to_string)
        .collect();
    if ids.is_empty() {
        return Vec::new();
    }
    let Ok(out) = docker()
        .args([
            "inspect",
            "--format",
            "{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}",
        ])
        .args(&ids)
        .output()
    else {
        return Vec::new();
    };
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(|ip| format!("{ip}:{port}"))
        .collect()
}

/// Replaces the discovery file whole (written beside, then renamed: Prometheus never reads
/// half a list).
fn write_targets(file: &Path, targets: &[String]) {
    let list: Vec<String> = targets.iter().map(|t| format!("\"{t}\"")).collect();
    let text = format!("[{{\"targets\": [{}]}}]\n", list.join(", "));
    let part = file.with_extension("part");
    if std::fs::write(&part, text).is_ok() {
        let _ = std::fs::rename(&part, file);
    }
}
