//! How the router reaches a proxy: two small traits, and their local
//! implementation.
//!
//! The [`NginxRouter`](crate::router::NginxRouter) never talks to Docker or
//! to a process table itself. It asks a [`ProxyExec`] to run a command in the
//! proxy (an argument vector, never a shell line built from input), and a
//! [`ConfigStore`] to read and write the configuration file the proxy reads.
//! A proxy in a container gets both from the Docker backend (exec, and the
//! bind-mounted file); an nginx on this machine gets them from [`LocalExec`]
//! and [`LocalFiles`], which the crate's own tests use against Debian's
//! `/usr/sbin/nginx` on loopback.
//!
//! Paths are strings as the proxy sees them (`/etc/nginx/nginx.conf` inside a
//! container), not host paths: only the implementation knows how a proxy
//! path maps to something it can reach.

use async_trait::async_trait;
use std::fmt;
use std::io::ErrorKind;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

/// What a command run in the proxy gave back.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ExecOutput {
    /// The exit code; a process ended by a signal reports `128 + signal`, as a
    /// shell would.
    pub code: i32,
    /// What it wrote to standard output.
    pub stdout: Vec<u8>,
    /// What it wrote to standard error.
    pub stderr: Vec<u8>,
}

impl ExecOutput {
    /// Whether the command exited with 0.
    pub fn success(&self) -> bool {
        self.code == 0
    }

    /// Standard error, then standard output, as text with invalid UTF-8
    /// replaced, trimmed: what a person needs to read when the command failed.
    pub fn message(&self) -> String {
        let mut text = String::from_utf8_lossy(&self.stderr).trim().to_string();
        let out = String::from_utf8_lossy(&self.stdout);
        let out = out.trim();
        if !out.is_empty() {
            if !text.is_empty() {
                text.push('\n');
            }
            text.push_str(out);
        }
        text
    }
}

/// The proxy could not be reached, or a file in it could not be read or
/// written. A command that ran and failed is not an error: it is an
/// [`ExecOutput`] with a non-zero code.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// The command could not be started (no such program, no such container).
    #[error("cannot run {program} in {proxy}: {reason}")]
    Exec {
        /// Which proxy.
        proxy: String,
        /// `argv[0]`.
        program: String,
        /// What went wrong.
        reason: String,
    },
    /// The command did not finish in time; it was killed.
    #[error("{program} in {proxy} did not finish within {seconds} s and was killed")]
    Timeout {
        /// Which proxy.
        proxy: String,
        /// `argv[0]`.
        program: String,
        /// The limit.
        seconds: u64,
    },
    /// The file does not exist.
    #[error("{path} does not exist in {proxy}")]
    Missing {
        /// Which proxy.
        proxy: String,
        /// The path as the proxy sees it.
        path: String,
    },
    /// A file could not be read, written or removed.
    #[error("cannot {action} {path} in {proxy}: {reason}")]
    File {
        /// Which proxy.
        proxy: String,
        /// `read`, `write`, `remove`.
        action: &'static str,
        /// The path as the proxy sees it.
        path: String,
        /// What went wrong.
        reason: String,
    },
}

/// Runs a command in the proxy.
///
/// `argv[0]` is the program, looked up on the proxy's `PATH`; the rest are
/// its arguments, passed as they are, never parsed by a shell (an
/// implementation may relay them through one that runs the program with
/// them untouched, as the Docker backend's kept shell does). The call
/// returns when the command has exited; implementations bound it in time.
#[async_trait]
pub trait ProxyExec: Send + Sync {
    /// Runs `argv` and returns its exit code and output.
    async fn exec(&self, argv: &[String]) -> Result<ExecOutput, ProxyError>;

    /// Runs `argv` as the proxy's user `user` (`UID:GID` in numbers): the only way
    /// into the open files of nginx's workers, which a process of another
    /// user cannot list without `CAP_SYS_PTRACE` (not granted to containers
    /// by default). [`ProxyError::Exec`] by default: the drain then waits for
    /// whole workers (see "Drain" in the router's documentation).
    async fn exec_as(&self, user: &str, argv: &[String]) -> Result<ExecOutput, ProxyError> {
        let _ = user;
        Err(ProxyError::Exec {
            proxy: "the proxy".to_string(),
            program: argv.first().cloned().unwrap_or_default(),
            reason: "running as another user is not supported here".to_string(),
        })
    }

    /// The addresses the proxy's nginx reaches `host` at (a container's
    /// name, as an upstream's `server` line names it), as far as what runs
    /// the proxy knows them; `None` when it does not (the drain then waits
    /// for whole workers). A superset is fine: an address that is not the
    /// host's only makes the drain wait longer.
    async fn addresses_of(&self, host: &str) -> Option<Vec<std::net::IpAddr>> {
        let _ = host;
        None
    }
}

/// Reads and writes the configuration file the proxy reads.
///
/// `path` is the file as the proxy sees it. The live file is written **in
/// place** (same inode: a single-file bind mount pins the inode, so a file
/// renamed over it would never be seen by the proxy); the candidate is a new
/// file beside it, validated and then removed.
#[async_trait]
pub trait ConfigStore: Send + Sync {
    /// The bytes of the file; [`ProxyError::Missing`] when there is none.
    async fn read(&self, path: &str) -> Result<Vec<u8>, ProxyError>;

    /// Replaces the content of an existing file in place, keeping its inode,
    /// owner and mode; fails when the file does not exist.
    async fn write_in_place(&self, path: &str, bytes: &[u8]) -> Result<(), ProxyError>;

    /// Creates (or truncates) a file and writes `bytes` to it, readable by
    /// the proxy's nginx (used for the candidate beside the live file).
    async fn write_new(&self, path: &str, bytes: &[u8]) -> Result<(), ProxyError>;

    /// Removes a file; a file that is already gone is not an error.
    async fn remove(&self, path: &str) -> Result<(), ProxyError>;

    /// Gets ready to write `path` in place, so that the first write does
    /// not wait for it (the Docker backend starts its writer container);
    /// nothing by default. A failure here fails no write: the write tries
    /// its own way.
    async fn ready(&self, _path: &str) -> Result<(), ProxyError> {
        Ok(())
    }

    /// Lets go of what the store keeps for a run's writes (the Docker
    /// backend's writer container), as the run ends; nothing by default.
    async fn settle(&self) -> Result<(), ProxyError> {
        Ok(())
    }

    /// Creates several files as [`ConfigStore::write_new`] does, at once
    /// where the store can (one upload into a container rather than one
    /// each); stops at the first failure.
    async fn write_new_all(&self, files: &[(&str, &[u8])]) -> Result<(), ProxyError> {
        for (path, bytes) in files {
            self.write_new(path, bytes).await?;
        }
        Ok(())
    }

    /// Removes several files, at once where the store can (one command in
    /// a container rather than one each); stops at the first failure.
    async fn remove_all(&self, paths: &[&str]) -> Result<(), ProxyError> {
        for path in paths {
            self.remove(path).await?;
        }
        Ok(())
    }
}

/// A commit's journal kept in one store: the previous and the new bytes of
/// the live file, under the run's tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeptCommit {
    /// The tag of the run that saved it.
    pub tag: String,
    /// The live file's bytes before the commit.
    pub previous: Vec<u8>,
    /// The bytes the commit writes.
    pub next: Vec<u8>,
}

/// Keeps a commit's journal where the proxy cannot lose it: a proxy that is
/// recreated, or that cannot start because its live file was cut by a
/// killed run, still has its previous bytes there (the Docker backend keeps
/// them with the engine). A proxy without one keeps its journal beside the
/// live file, in the proxy's own files.
#[async_trait]
pub trait JournalStore: Send + Sync {
    /// Saves the previous and the new bytes of `path` under `tag`, whole
    /// (a journal that was cut is not listed).
    async fn save(
        &self,
        path: &str,
        tag: &str,
        previous: &[u8],
        next: &[u8],
    ) -> Result<(), ProxyError>;

    /// Every journal of `path` saved and not removed or set aside.
    async fn list(&self, path: &str) -> Result<Vec<KeptCommit>, ProxyError>;

    /// Removes the journal of `path` saved under `tag`; one already gone is
    /// not an error.
    async fn remove(&self, path: &str, tag: &str) -> Result<(), ProxyError>;

    /// Keeps the journal under `tag` for a person to read, where no later
    /// [`list`](Self::list) finds it (`stamp`: seconds since the epoch).
    async fn set_aside(&self, path: &str, tag: &str, stamp: u64) -> Result<(), ProxyError>;
}

/// One proxy replica: its name for messages, and how to reach it.
#[derive(Clone)]
pub struct Proxy {
    /// How people call it (`nginx-1`, a container name).
    pub name: String,
    /// Runs commands in it.
    pub exec: Arc<dyn ProxyExec>,
    /// Reads and writes the files it reads.
    pub files: Arc<dyn ConfigStore>,
    /// Its master's pid file, when it differs from what the router's options
    /// or the config say (a replica started with `-g "pid ...;"`).
    pub pid_file: Option<String>,
    /// Its nginx command, when it differs from the router's options (a
    /// replica with its own binary or prefix directory,
    /// `["/usr/sbin/nginx", "-p", "/srv/proxy/"]`).
    pub nginx: Option<Vec<String>>,
    /// Where its commits' journals are kept, when not beside the live file.
    pub journal: Option<Arc<dyn JournalStore>>,
}

impl Proxy {
    /// A proxy named `name`, reached through `exec` and `files`.
    pub fn new(
        name: impl Into<String>,
        exec: Arc<dyn ProxyExec>,
        files: Arc<dyn ConfigStore>,
    ) -> Self {
        Self {
            name: name.into(),
            exec,
            files,
            pid_file: None,
            nginx: None,
            journal: None,
        }
    }

    /// The same proxy, whose commits' journals are kept in `journal`
    /// rather than beside the live file.
    pub fn with_journal(mut self, journal: Arc<dyn JournalStore>) -> Self {
        self.journal = Some(journal);
        self
    }

    /// The same proxy, whose master writes its id to `path`.
    pub fn with_pid_file(mut self, path: impl Into<String>) -> Self {
        self.pid_file = Some(path.into());
        self
    }

    /// The same proxy, whose nginx is run as `command` followed by the
    /// arguments, instead of the router's command.
    pub fn with_nginx(mut self, command: Vec<String>) -> Self {
        self.nginx = Some(command);
        self
    }

    /// The nginx command of this proxy: its own, else `default`.
    pub fn nginx_argv(&self, default: &[String], args: &[&str]) -> Vec<String> {
        let mut argv = match &self.nginx {
            Some(command) if !command.is_empty() => command.clone(),
            _ => default.to_vec(),
        };
        argv.extend(args.iter().map(|a| a.to_string()));
        argv
    }

    /// An nginx running on this machine, reached with [`LocalExec`] and
    /// [`LocalFiles`].
    pub fn local(name: impl Into<String>) -> Self {
        let name = name.into();
        Self {
            exec: Arc::new(LocalExec::new(name.clone())),
            files: Arc::new(LocalFiles::new(name.clone())),
            name,
            pid_file: None,
            nginx: None,
            journal: None,
        }
    }
}

impl fmt::Debug for Proxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Proxy").field("name", &self.name).finish()
    }
}

/// Runs commands on this machine, as child processes with no shell, killed
/// when they outlive a timeout (30 s unless set). A local nginx with its own
/// prefix directory gets its command from [`Proxy::with_nginx`].
#[derive(Debug, Clone)]
pub struct LocalExec {
    name: String,
    timeout: Duration,
}

impl LocalExec {
    /// Runs commands for the proxy named `name`.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            timeout: Duration::from_secs(30),
        }
    }

    /// The same, with another limit per command.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }
}

#[async_trait]
impl ProxyExec for LocalExec {
    async fn exec(&self, argv: &[String]) -> Result<ExecOutput, ProxyError> {
        let program = argv.first().cloned().unwrap_or_default();
        let exec_error = |reason: String| ProxyError::Exec {
            proxy: self.name.clone(),
            program: program.clone(),
            reason,
        };
        if program.is_empty() {
            return Err(exec_error("empty command".into()));
        }
        let full = argv;
        let child = tokio::process::Command::new(&full[0])
            .args(&full[1..])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| exec_error(e.to_string()))?;
        let output = match tokio::time::timeout(self.timeout, child.wait_with_output()).await {
            Ok(done) => done.map_err(|e| exec_error(e.to_string()))?,
            Err(_) => {
                return Err(ProxyError::Timeout {
                    proxy: self.name.clone(),
                    program,
                    seconds: self.timeout.as_secs(),
                })
            }
        };
        Ok(ExecOutput {
            code: exit_code(&output.status),
            stdout: output.stdout,
            stderr: output.stderr,
        })
    }
}

#[cfg(unix)]
fn exit_code(status: &std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(-1)
}

#[cfg(not(unix))]
fn exit_code(status: &std::process::ExitStatus) -> i32 {
    status.code().unwrap_or(-1)
}

/// Reads and writes files on this machine: proxy paths are host paths.
///
/// [`ConfigStore::write_in_place`] writes over the existing file and then
/// sets its length, so the inode stays and the file is never seen empty.
#[derive(Debug, Clone)]
pub struct LocalFiles {
    name: String,
}

impl LocalFiles {
    /// Files of the proxy named `name`.
    pub fn new(name: impl Into<String>) -> Self {
        Self { name: name.into() }
    }

    fn error(&self, action: &'static str, path: &str, e: std::io::Error) -> ProxyError {
        ProxyError::File {
            proxy: self.name.clone(),
            action,
            path: path.to_string(),
            reason: e.to_string(),
        }
    }
}

#[async_trait]
impl ConfigStore for LocalFiles {
    async fn read(&self, path: &str) -> Result<Vec<u8>, ProxyError> {
        tokio::fs::read(path).await.map_err(|e| match e.kind() {
            ErrorKind::NotFound => ProxyError::Missing {
                proxy: self.name.clone(),
                path: path.to_string(),
            },
            _ => self.error("read", path, e),
        })
    }

    async fn write_in_place(&self, path: &str, bytes: &[u8]) -> Result<(), ProxyError> {
        use tokio::io::AsyncWriteExt;
        let write = async {
            let mut file = tokio::fs::OpenOptions::new()
                .write(true)
                .open(PathBuf::from(path))
                .await?;
            file.write_all(bytes).await?;
            file.set_len(bytes.len() as u64).await?;
            file.sync_all().await
        };
        write.await.map_err(|e| self.error("write", path, e))
    }

    async fn write_new(&self, path: &str, bytes: &[u8]) -> Result<(), ProxyError> {
        use tokio::io::AsyncWriteExt;
        let write = async {
            let mut file = tokio::fs::File::create(PathBuf::from(path)).await?;
            file.write_all(bytes).await?;
            file.sync_all().await
        };
        write.await.map_err(|e| self.error("write", path, e))
    }

    async fn remove(&self, path: &str) -> Result<(), ProxyError> {
        match tokio::fs::remove_file(path).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
            Err(e) => Err(self.error("remove", path, e)),
        }
    }
}

/// Who holds a proxy lock and since when, as its store reads them back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockHolder {
    /// Who (`USER@HOST pid N ...`, as the taker wrote it).
    pub holder: String,
    /// Since when (RFC 3339, or whatever the store keeps).
    pub since: String,
}

/// The lock of one proxy's config: every change to the file (prepare,
/// commit, the reload's check, and the recovery of a killed run) holds it,
/// so that two rollouts behind one proxy never edit, test or write the file
/// at the same time.
///
/// The key is the config file as the proxy sees it; an implementation is
/// made for one proxy (the Docker backend's is keyed by project and proxy
/// service too). Taking it must be atomic (one create that fails when the
/// lock exists); the router waits and asks again itself.
#[async_trait]
pub trait ProxyLock: Send + Sync {
    /// Tries once to take the lock of `path` for `holder`: `Ok(None)` when
    /// taken, `Ok(Some(who))` when someone else holds it. An implementation
    /// may release a lock whose holder it can prove dead, and take it.
    async fn try_lock(&self, path: &str, holder: &str) -> Result<Option<LockHolder>, ProxyError>;

    /// Gives back the lock of `path`, held by this process.
    async fn unlock(&self, path: &str) -> Result<(), ProxyError>;
}

/// A [`ProxyLock`] of files on this machine: the lock of `path` is the file
/// `DIR/<path with / as _>.lock`, created with `O_EXCL` (atomic), holding
/// the holder and the time it was taken. It never judges a holder dead.
/// For an nginx on this machine and the crate's tests.
#[derive(Debug, Clone)]
pub struct LocalLock {
    dir: PathBuf,
}

impl LocalLock {
    /// Locks kept as files in `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    fn file(&self, path: &str) -> PathBuf {
        let name: String = path
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        self.dir.join(format!("{name}.lock"))
    }

    fn error(&self, action: &'static str, path: &str, e: std::io::Error) -> ProxyError {
        ProxyError::File {
            proxy: "local lock".into(),
            action,
            path: path.to_string(),
            reason: e.to_string(),
        }
    }
}

#[async_trait]
impl ProxyLock for LocalLock {
    async fn try_lock(&self, path: &str, holder: &str) -> Result<Option<LockHolder>, ProxyError> {
        use tokio::io::AsyncWriteExt;
        let file = self.file(path);
        let since = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        // A lock given back between our create and our read is tried again
        // (a few times: it is a race, not a wait).
        for _ in 0..3 {
            match tokio::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&file)
                .await
            {
                Ok(mut f) => {
                    let text = format!("{holder}\n{since}\n");
                    f.write_all(text.as_bytes())
                        .await
                        .map_err(|e| self.error("write", path, e))?;
                    return Ok(None);
                }
                Err(e) if e.kind() == ErrorKind::AlreadyExists => {
                    let text = match tokio::fs::read_to_string(&file).await {
                        Ok(text) => text,
                        Err(e) if e.kind() == ErrorKind::NotFound => continue,
                        Err(_) => String::new(),
                    };
                    // The taker writes after it creates: an empty file is a
                    // lock just taken.
                    let mut lines = text.lines();
                    return Ok(Some(LockHolder {
                        holder: lines.next().unwrap_or("someone").to_string(),
                        since: lines.next().unwrap_or("now").to_string(),
                    }));
                }
                Err(e) => return Err(self.error("lock", path, e)),
            }
        }
        Ok(Some(LockHolder {
            holder: "someone".to_string(),
            since: "now".to_string(),
        }))
    }

    async fn unlock(&self, path: &str) -> Result<(), ProxyError> {
        match tokio::fs::remove_file(self.file(path)).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
            Err(e) => Err(self.error("unlock", path, e)),
        }
    }
}
