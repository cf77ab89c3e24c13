//! A real image registry for the pull tests: Debian's `docker-registry` (distribution 2.8),
//! started by the test as a process on a loopback port with its storage in a temporary folder,
//! and ended by its pid when dropped (also during a panic's unwinding). The engine trusts
//! registries on 127.0.0.0/8 over plain HTTP, so `127.0.0.1:PORT/app:latest` needs no TLS.

use crate::engine::{docker, run_ok};
use crate::http::wait_http;
use crate::stack::free_port;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Where Debian's package puts the registry.
pub const REGISTRY_PROGRAM: &str = "/usr/bin/docker-registry";

/// A registry process on `127.0.0.1:PORT`.
#[derive(Debug)]
pub struct Registry {
    child: Option<Child>,
    port: u16,
    dir: PathBuf,
    /// Tags this registry's users made on the engine, removed on drop.
    tags: Vec<String>,
}

impl Registry {
    /// Starts a registry on a free loopback port and waits (10 s at most) until it answers
    /// `GET /v2/` with 200. Panics, saying how to install it, when the program is missing.
    pub fn start() -> Registry {
        assert!(
            std::path::Path::new(REGISTRY_PROGRAM).exists(),
            "{REGISTRY_PROGRAM} is missing: the pull tests need Debian's docker-registry\nhint: cargo xtask setup (or apt-get install docker-registry)"
        );
        let port = free_port();
        let dir =
            std::env::temp_dir().join(format!("rollout-registry-{}-{port}", std::process::id()));
        std::fs::create_dir_all(dir.join("storage")).unwrap();
        let config = dir.join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n",
                dir.join("storage").display()
            ),
        )
        .unwrap();
        let child = Command::new(REGISTRY_PROGRAM)
            .arg("serve")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {REGISTRY_PROGRAM}: {e}"));
        let registry = Registry {
            child: Some(child),
            port,
            dir,
            tags: Vec::new(),
        };
        wait_http(registry.addr(), "/v2/", Duration::from_secs(10), |a| {
            a.status == 200
        });
        registry
    }

    fn addr(&self) -> std::net::SocketAddr {
        ([127, 0, 0, 1], self.port).into()
    }

    /// `127.0.0.1:PORT`.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// `127.0.0.1:PORT/NAME` (`app:latest` gives `127.0.0.1:PORT/app:latest`).
    pub fn reference(&self, name: &str) -> String {
        format!("{}/{name}", self.host())
    }

    /// Tags the local image `local` as `reference` and pushes it; the tag stays on the
    /// engine (until moved, or until the registry is dropped).
    pub fn push(&mut self, local: &str, reference: &str) {
        self.tag(local, reference);
        run_ok(docker().args(["push", "--quiet", reference]));
    }

    /// Points the engine's tag `reference` at the local image `local`, without pushing.
    pub fn tag(&mut self, local: &str, reference: &str) {
        run_ok(docker().args(["tag", local, reference]));
        if !self.tags.iter().any(|t| t == reference) {
            self.tags.push(reference.to_string());
        }
    }

    /// Ends the registry process (by its pid): from now on it cannot be reached.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.stop();
        for t in &self.tags {
            let _ = docker().args(["image", "rm", t]).output();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
