//! A throwaway PostgreSQL for the tests: Debian's server binaries, a
//! cluster in a temporary folder, listening on a loopback port, stopped by
//! its pid when the test ends.
//!
//! `initdb` runs once per test process into a template folder; each test
//! copies it and starts its own server, so tests are independent and run in
//! parallel. initdb and postgres refuse to run as root: as root, both run
//! as the `postgres` user through `setpriv` (which execs, so the pid we hold
//! is the server's own).
//!
//! Without PostgreSQL the tests fail, saying how to install it (`cargo
//! xtask setup`); they never skip.

#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The folder of Debian's server binaries (the newest version installed).
fn bin_dir() -> PathBuf {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    versions.retain(|v| v.join("bin/initdb").exists());
    versions.sort();
    match versions.pop() {
        Some(v) => v.join("bin"),
        None => panic!(
            "PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/initdb): these tests need a real server\nhint: run `cargo xtask setup` (or apt-get install postgresql)"
        ),
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// `program args`, as the postgres user when we are root.
fn as_server_user(program: &Path) -> Command {
    if is_root() {
        let mut c = Command::new("setpriv");
        c.args([
            "--reuid=postgres",
            "--regid=postgres",
            "--init-groups",
            "--",
        ]);
        c.arg(program);
        c
    } else {
        Command::new(program)
    }
}

fn own(path: &Path) {
    if is_root() {
        let ok = Command::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(path)
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        assert!(ok, "cannot chown {} to postgres", path.display());
    }
}

fn scratch(what: &str) -> PathBuf {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static N: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "rollout-migrate-{what}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The template cluster, made by initdb once and kept in cargo's temporary
/// folder of the target directory (`cargo clean` removes it). It is made in
/// a folder of this process and renamed into place, so two test processes
/// never see half of one.
fn template() -> &'static PathBuf {
    static TEMPLATE: OnceLock<PathBuf> = OnceLock::new();
    TEMPLATE.get_or_init(|| {
        let bin = bin_dir();
        let version = bin
            .parent()
            .and_then(|v| v.file_name())
            .map(|v| v.to_string_lossy().into_owned())
            .unwrap_or_default();
        let root = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
        let ready = root.join(format!("pg-template-{version}"));
        if ready.join("PG_VERSION").exists() {
            return ready;
        }
        let dir = root.join(format!("pg-template-{version}.{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        own(&dir);
        let out = as_server_user(&bin.join("initdb"))
            .arg("-D")
            .arg(&dir)
            .args([
                "-U",
                "postgres",
                "--auth=trust",
                "-N",
                "-E",
                "UTF8",
                "--locale=C",
            ])
            .stdout(Stdio::null())
            .output()
            .expect("initdb runs");
        assert!(
            out.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        if std::fs::rename(&dir, &ready).is_err() {
            // Another process was first.
            let _ = std::fs::remove_dir_all(&dir);
        }
        ready
    })
}

/// The host's address on Docker's default bridge (`docker0`), which containers of every
/// bridge network reach the host by.
pub fn docker0_address() -> String {
    let out = Command::new("ip")
        .args(["-4", "-o", "addr", "show", "docker0"])
        .output()
        .expect("ip runs");
    let text = String::from_utf8_lossy(&out.stdout);
    text.split_whitespace()
        .skip_while(|w| *w != "inet")
        .nth(1)
        .and_then(|cidr| cidr.split('/').next())
        .map(str::to_string)
        .unwrap_or_else(|| panic!("docker0 has no IPv4 address: {text:?}"))
}

/// The addresses Docker gives its bridge networks by default (its local address pools,
/// 172.17.0.0/16 to 172.31.0.0/16, then 192.168.0.0/20 slices): the only clients a server
/// for containers lets in, besides loopback.
pub const DOCKER_NETWORKS: &[&str] = &["172.16.0.0/12", "192.168.0.0/16"];

/// A running server; stopped (by pid) and removed on drop.
pub struct Pg {
    child: Child,
    dir: PathBuf,
    /// Its port on 127.0.0.1.
    pub port: u16,
    /// The host's address on docker0 it also listens on, for containers.
    pub bridge: Option<String>,
}

impl Pg {
    /// Starts a server of its own, on loopback only.
    pub fn start() -> Pg {
        Pg::start_with(None)
    }

    /// Starts a server that containers reach too: it listens on loopback and on the host's
    /// docker0 address, and its pg_hba.conf lets in [`DOCKER_NETWORKS`] (and nothing else
    /// beyond loopback).
    pub fn start_for_containers() -> Pg {
        Pg::start_with(Some(docker0_address()))
    }

    fn start_with(bridge: Option<String>) -> Pg {
        let bin = bin_dir();
        let template = template();
        let dir = scratch("cluster");
        let data = dir.join("data");
        let ok = Command::new("cp")
            .arg("-a")
            .arg(template)
            .arg(&data)
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        assert!(ok, "cannot copy the template cluster");
        let mut listen = String::from("127.0.0.1");
        if let Some(ip) = &bridge {
            listen = format!("127.0.0.1,{ip}");
            let hba = data.join("pg_hba.conf");
            let mut text = std::fs::read_to_string(&hba).unwrap();
            for net in DOCKER_NETWORKS {
                text.push_str(&format!("host all all {net} trust\n"));
            }
            std::fs::write(&hba, text).unwrap();
        }
        own(&dir);
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap();
        let child = as_server_user(&bin.join("postgres"))
            .arg("-D")
            .arg(&data)
            .args(["-p", &port.to_string(), "-k"])
            .arg(&dir)
            .args([
                "-c",
                &format!("listen_addresses={listen}"),
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "full_page_writes=off",
                "-c",
                "max_connections=40",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("postgres starts");
        let pg = Pg {
            child,
            dir,
            port,
            bridge,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "postgres did not listen on {port} within 20s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        // Listening comes a moment before accepting logins.
        let ready = bin.join("pg_isready");
        while !Command::new(&ready)
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &port.to_string(),
                "-U",
                "postgres",
                "-q",
            ])
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
        {
            assert!(
                Instant::now() < deadline,
                "postgres did not accept connections within 20s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        pg
    }

    /// The URL of database `db` (password included, to show it is never printed).
    pub fn url(&self, db: &str) -> String {
        format!(
            "postgres://postgres:secret-password@127.0.0.1:{}/{db}",
            self.port
        )
    }
}

impl Pg {
    /// The URL of database `db` for a container (the docker0 address; password included,
    /// to show it is never printed). Only for a server of [`Pg::start_for_containers`].
    pub fn container_url(&self, db: &str) -> String {
        let ip = self
            .bridge
            .as_deref()
            .expect("a server started with start_for_containers");
        format!(
            "postgres://postgres:secret-password@{ip}:{}/{db}",
            self.port
        )
    }

    /// The server's pid (to kill a client of it, find its backends, and the like).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Pg {
    fn drop(&mut self) {
        // SIGINT is PostgreSQL's fast shutdown.
        let _ = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match self.child.try_wait() {
                Ok(Some(_)) => break,
                _ if Instant::now() > deadline => {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    break;
                }
                _ => std::thread::sleep(Duration::from_millis(20)),
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A migration folder written from `(file name, text)` pairs; removed on drop.
pub struct Folder {
    /// Where.
    pub path: PathBuf,
}

impl Folder {
    /// Writes the files.
    pub fn new(files: &[(&str, &str)]) -> Folder {
        let path = scratch("files");
        for (name, text) in files {
            std::fs::write(path.join(name), text).unwrap();
        }
        Folder { path }
    }

    /// Writes (or rewrites) one file.
    pub fn write(&self, name: &str, text: &str) {
        std::fs::write(self.path.join(name), text).unwrap();
    }
}

impl Drop for Folder {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}
