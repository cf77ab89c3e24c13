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

/// A running server; stopped (by pid) and removed on drop.
pub struct Pg {
    child: Child,
    dir: PathBuf,
    /// Its port on 127.0.0.1.
    pub port: u16,
}

impl Pg {
    /// Starts a server of its own.
    pub fn start() -> Pg {
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
                "listen_addresses=127.0.0.1",
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
        let pg = Pg { child, dir, port };
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
