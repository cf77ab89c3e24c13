//! Running one command hook: its argv (never a shell line), the message as
//! JSON on its stdin, a cleared environment with a few names passed on,
//! its output kept (the last [`OUTPUT_MAX`] bytes, stdout and stderr
//! together, for a message), and a timeout after which its whole process
//! group is killed, by the hook's pid.
//!
//! The hook runs in a process group of its own, so that a timeout also ends
//! what it started (a `sleep` under `sh`), and so that the terminal's
//! Ctrl-C reaches `docker rollout`, which decides: dropping a running
//! [`run`] (the caller was interrupted) kills the group too.

use crate::message::Message;
use rollout_core::hooks::{CommandHook, Phase};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;

/// How much of a hook's output is kept: its last 4 KiB.
pub const OUTPUT_MAX: usize = 4096;

/// How long the output of a hook that has exited is still read: what it
/// left running in the background may hold its pipes open.
const OUTPUT_GRACE: Duration = Duration::from_millis(500);

/// The environment variables of the operator every hook gets (when set):
/// what finding programs, files, the locale and the engine needs. Nothing
/// else of the operator's environment is passed on unless named in
/// `pass_env`: it may hold the values a Compose file interpolates into a
/// container's environment.
pub const PASSED_ON: &[&str] = &[
    "PATH",
    "HOME",
    "USER",
    "LOGNAME",
    "LANG",
    "LC_ALL",
    "LC_CTYPE",
    "LC_MESSAGES",
    "TZ",
    "TMPDIR",
    "DOCKER_HOST",
    "DOCKER_CONTEXT",
    "DOCKER_CONFIG",
    "DOCKER_CERT_PATH",
    "DOCKER_TLS_VERIFY",
];

/// Where and with what environment hooks run.
#[derive(Debug, Clone, Default)]
pub struct Setting {
    /// The working directory (the Compose project's directory); a relative
    /// `argv[0]` with a `/` is taken from here.
    pub dir: PathBuf,
    /// The operator's variables passed on: [`PASSED_ON`] and `pass_env`,
    /// those that are set.
    pub inherited: Vec<(OsString, OsString)>,
}

impl Setting {
    /// Runs in `dir`, passing on [`PASSED_ON`] and `pass_env` from this
    /// process's environment.
    pub fn from_process(dir: &Path, pass_env: &[String]) -> Self {
        let wanted = |name: &str| PASSED_ON.contains(&name) || pass_env.iter().any(|n| n == name);
        let inherited = std::env::vars_os()
            .filter(|(k, _)| k.to_str().is_some_and(wanted))
            .collect();
        Setting {
            dir: dir.to_path_buf(),
            inherited,
        }
    }
}

/// A hook that ran and exited 0.
#[derive(Debug, Clone, PartialEq)]
pub struct Ran {
    /// Its argv.
    pub argv: Vec<String>,
    /// How long it took.
    pub elapsed: Duration,
    /// The last [`OUTPUT_MAX`] bytes of its output.
    pub output: String,
}

/// A hook that did not run, failed, or ran out of time.
#[derive(Debug, thiserror::Error)]
pub enum HookError {
    /// It could not be started.
    #[error("the {phase} hook {program:?} could not be started: {source}")]
    Spawn {
        /// Which hook.
        phase: Phase,
        /// `argv[0]`.
        program: String,
        /// Why.
        source: std::io::Error,
    },
    /// It exited with a code other than 0, or was ended by a signal.
    #[error("the {phase} hook {program:?} {how}{}", output_block(.output))]
    Failed {
        /// Which hook.
        phase: Phase,
        /// `argv[0]`.
        program: String,
        /// `exited 1`, `was ended by signal 9`.
        how: String,
        /// The last [`OUTPUT_MAX`] bytes of its output.
        output: String,
    },
    /// It ran longer than its timeout and was killed.
    #[error("the {phase} hook {program:?} ran longer than {} and was killed (its process group, pid {pid}){}", rollout_core::format_duration(*.timeout), output_block(.output))]
    TimedOut {
        /// Which hook.
        phase: Phase,
        /// `argv[0]`.
        program: String,
        /// Its timeout.
        timeout: Duration,
        /// The pid (and process group) that was killed.
        pid: i32,
        /// The last [`OUTPUT_MAX`] bytes of its output.
        output: String,
    },
}

impl HookError {
    /// What happened, in one line, without the output.
    pub fn headline(&self) -> String {
        match self {
            HookError::Spawn { .. } => self.to_string(),
            HookError::Failed {
                phase,
                program,
                how,
                ..
            } => format!("the {phase} hook {program:?} {how}"),
            HookError::TimedOut {
                phase,
                program,
                timeout,
                ..
            } => format!(
                "the {phase} hook {program:?} ran longer than {} and was killed",
                rollout_core::format_duration(*timeout)
            ),
        }
    }

    /// The output the hook printed, if it ran.
    pub fn output(&self) -> Option<&str> {
        match self {
            HookError::Spawn { .. } => None,
            HookError::Failed { output, .. } | HookError::TimedOut { output, .. } => Some(output),
        }
    }
}

fn output_block(output: &str) -> String {
    if output.trim().is_empty() {
        "; it printed nothing".to_string()
    } else {
        format!("; its output:\n{}", output.trim_end())
    }
}

/// Runs `hook` (the `phase` hook) with `message` on its stdin, for at
/// most `timeout`.
pub async fn run(
    phase: Phase,
    hook: &CommandHook,
    timeout: Duration,
    setting: &Setting,
    message: &Message,
) -> Result<Ran, HookError> {
    let started = Instant::now();
    let program = hook.argv.first().cloned().unwrap_or_default();
    let mut cmd = tokio::process::Command::new(resolve(&program, &setting.dir));
    cmd.args(&hook.argv[1..])
        .current_dir(&setting.dir)
        .env_clear()
        .envs(setting.inherited.iter().map(|(k, v)| (k, v)))
        .envs(variables(message))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    // A hook written a moment ago may be busy for a moment (`rollout_core::busy`).
    let mut child = rollout_core::busy::retry_busy(|| cmd.spawn())
        .await
        .map_err(|source| HookError::Spawn {
            phase,
            program: program.clone(),
            source,
        })?;
    let pid = child.id().and_then(|p| i32::try_from(p).ok()).unwrap_or(0);
    let mut group = Group { pid: Some(pid) };
    let tail = Arc::new(Mutex::new(Tail::default()));
    let readers = [
        child.stdout.take().map(|o| collect(o, tail.clone())),
        child.stderr.take().map(|e| collect(e, tail.clone())),
    ];
    if let Some(mut stdin) = child.stdin.take() {
        let body = format!("{}\n", message.to_json());
        // A hook that does not read its stdin has it closed under the
        // write; that is its choice, not a failure.
        tokio::spawn(async move {
            let _ = stdin.write_all(body.as_bytes()).await;
        });
    }
    let status = tokio::time::timeout(timeout, child.wait()).await;
    let timed_out = status.is_err();
    let status: Option<ExitStatus> = match status {
        Ok(s) => s.ok(),
        Err(_) => {
            group.kill();
            child.wait().await.ok()
        }
    };
    group.pid = None;
    for reader in readers.into_iter().flatten() {
        if tokio::time::timeout(OUTPUT_GRACE, reader).await.is_err() {
            // Something the hook left in the background holds the pipe.
        }
    }
    let output = tail.lock().map(|t| t.text()).unwrap_or_default();
    if timed_out {
        return Err(HookError::TimedOut {
            phase,
            program,
            timeout,
            pid,
            output,
        });
    }
    match status {
        Some(s) if s.success() => Ok(Ran {
            argv: hook.argv.clone(),
            elapsed: started.elapsed(),
            output,
        }),
        other => Err(HookError::Failed {
            phase,
            program,
            how: describe(other),
            output,
        }),
    }
}

/// `argv[0]` as run: a relative path with a `/` from the project's
/// directory (not from wherever `docker rollout` was started), a bare name
/// through `PATH`.
fn resolve(program: &str, dir: &Path) -> PathBuf {
    let p = Path::new(program);
    if program.contains('/') && p.is_relative() {
        dir.join(p)
    } else {
        p.to_path_buf()
    }
}

/// The variables every hook gets about the rollout: names, never values
/// of anyone's environment.
pub fn variables(m: &Message) -> Vec<(&'static str, String)> {
    let mut vars = vec![
        ("ROLLOUT_HOOK", m.hook.to_string()),
        ("ROLLOUT_PROJECT", m.project.clone()),
        ("ROLLOUT_SERVICE", m.service.clone()),
        ("ROLLOUT_STRATEGY", m.strategy.clone()),
        ("ROLLOUT_IMAGE", m.to.image.clone()),
    ];
    if let Some(from) = &m.from {
        vars.push(("ROLLOUT_FROM_IMAGE", from.image.clone()));
    }
    if let Some(word) = m.outcome_word() {
        vars.push(("ROLLOUT_OUTCOME", word.to_string()));
    }
    if let Some(code) = m.exit_code {
        vars.push(("ROLLOUT_EXIT_CODE", code.to_string()));
    }
    vars
}

fn describe(status: Option<ExitStatus>) -> String {
    use std::os::unix::process::ExitStatusExt;
    match status {
        Some(s) => match (s.code(), s.signal()) {
            (Some(code), _) => format!("exited {code}"),
            (None, Some(sig)) => format!("was ended by signal {sig}"),
            (None, None) => "ended".to_string(),
        },
        None => "ended and its status could not be read".to_string(),
    }
}

/// The hook's process group, killed when dropped before it was reaped
/// (the caller was interrupted) or on timeout.
struct Group {
    pid: Option<i32>,
}

impl Group {
    fn kill(&mut self) {
        if let Some(pid) = self.pid.and_then(rustix::process::Pid::from_raw) {
            let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
        }
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Reads `from` to its end into `tail`.
fn collect(
    mut from: impl AsyncRead + Unpin + Send + 'static,
    tail: Arc<Mutex<Tail>>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut buf = [0u8; 4096];
        loop {
            match from.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    if let Ok(mut t) = tail.lock() {
                        t.push(&buf[..n]);
                    }
                }
            }
        }
    })
}

/// The last [`OUTPUT_MAX`] bytes written, and whether earlier ones were
/// dropped.
#[derive(Debug, Default)]
struct Tail {
    bytes: Vec<u8>,
    cut: bool,
}

impl Tail {
    fn push(&mut self, more: &[u8]) {
        self.bytes.extend_from_slice(more);
        if self.bytes.len() > OUTPUT_MAX {
            let drop = self.bytes.len() - OUTPUT_MAX;
            self.bytes.drain(..drop);
            self.cut = true;
        }
    }

    fn text(&self) -> String {
        let text = String::from_utf8_lossy(&self.bytes);
        if self.cut {
            // The cut may have split a line (or a character): start at
            // the next whole line when there is one.
            let whole = text.split_once('\n').map(|(_, rest)| rest).unwrap_or(&text);
            format!("[… earlier output cut; the last {OUTPUT_MAX} bytes]\n{whole}")
        } else {
            text.into_owned()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tail_keeps_the_last_bytes_from_a_whole_line() {
        let mut t = Tail::default();
        t.push(b"short\n");
        assert_eq!(t.text(), "short\n");
        for i in 0..1000 {
            t.push(format!("line {i}\n").as_bytes());
        }
        let text = t.text();
        assert!(text.starts_with("[… earlier output cut; the last 4096 bytes]\nline "));
        assert!(text.ends_with("line 999\n"));
        assert!(text.len() <= OUTPUT_MAX + 60);
    }

    #[test]
    fn a_relative_program_is_taken_from_the_project_directory() {
        let dir = Path::new("/srv/shop");
        assert_eq!(
            resolve("./hooks/pre.sh", dir),
            Path::new("/srv/shop/./hooks/pre.sh")
        );
        assert_eq!(
            resolve("hooks/pre.sh", dir),
            Path::new("/srv/shop/hooks/pre.sh")
        );
        assert_eq!(resolve("/usr/bin/true", dir), Path::new("/usr/bin/true"));
        assert_eq!(resolve("curl", dir), Path::new("curl"));
    }
}
