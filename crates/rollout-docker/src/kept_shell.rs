//! Kept shells in an nginx proxy container: a `sh` started once by exec,
//! its standard input and output held attached, that runs each command the
//! router sends and answers with its exit code and output, instead of one
//! exec per command.
//!
//! An exec costs a few engine calls and a process start through the
//! container runtime (about 45 ms here); a command through a kept shell
//! costs a write, a fork in the container and a read. A route change runs
//! `nginx -t`, the reload and the checks of its workers, and a drain polls
//! the old workers: five or more commands per slot, all on the critical
//! path of a rollout.
//!
//! The protocol needs nothing but a POSIX shell, `mktemp`, `wc` and `cat`,
//! which every nginx image has:
//! - a command is its arguments, one per line, each led by `p`, with `c`
//!   lines continuing the argument before after a newline, then an empty
//!   line. No argument is ever pasted into shell code: the shell collects
//!   them into its positional parameters and runs `"$@"`, with its standard
//!   input from `/dev/null`;
//! - a command may carry its standard input after its arguments: lines led
//!   by `i` (the first) and `j` (each after a newline), which the shell keeps
//!   in a file of its own private folder for the command to read (else its
//!   input is `/dev/null`). File contents travel so ([`as_input`]): never as
//!   arguments, which anyone on the host may read in the process table;
//! - the answer is `R CODE OUT ERR` on a line, then `OUT` bytes of standard
//!   output and `ERR` bytes of standard error; 125 with nothing run when the
//!   shell could not keep the input.
//!
//! A shell ends at the end of its input: when the run lets it go
//! ([`KeptShells::close`], from the store's `settle`), and when the run
//! dies (the engine closes the input of an exec whose client is gone).
//! Input cut short inside a command runs nothing. A proxy whose shell
//! cannot start (no `sh`, no writable temporary folder) is reached by one
//! exec per command, as before.

use crate::engine::Engine;
use bollard::container::LogOutput;
use bollard::exec::StartExecResults;
use bollard::models::ExecConfig;
use futures::{FutureExt, Stream, StreamExt};
use rollout_nginx::proxy::ExecOutput;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;
use tokio::io::{AsyncWrite, AsyncWriteExt};

/// The first line of the shell's program, which names it in the
/// container's process table (`docker top`).
pub const MARK: &str = "# rollout kept shell";

/// The shell's program (`sh -c SCRIPT`); see the module documentation.
/// `exec` in a subshell runs the program itself, never a builtin of the
/// kept shell of the same name (as an exec would); its variables are
/// `rk_`-prefixed, so as not to change a container's own.
const SCRIPT: &str = r#"# rollout kept shell
rk_d=$(mktemp -d 2>/dev/null) || exit 3
trap 'rm -rf -- "$rk_d"' EXIT
trap 'exit 1' HUP INT TERM PIPE
echo 'rollout-shell 1'
while :; do
  set --
  rk_n=
  rk_h=
  while :; do
    IFS= read -r rk_a || exit 0
    case $rk_a in
      '') [ -z "$rk_n" ] || set -- "$@" "$rk_v"; break ;;
      p*) [ -z "$rk_n" ] || set -- "$@" "$rk_v"; rk_v=${rk_a#p}; rk_n=1 ;;
      c*) rk_v="$rk_v
${rk_a#c}" ;;
      i*) rk_i=${rk_a#i}; rk_h=1 ;;
      j*) rk_i="$rk_i
${rk_a#j}" ;;
      *) exit 4 ;;
    esac
  done
  rk_f=/dev/null
  [ -z "$rk_h" ] || { rk_f=$rk_d/i; printf %s "$rk_i" >"$rk_f"; } || rk_f=
  rk_i=
  if [ -n "$rk_f" ]; then
    (exec "$@") <"$rk_f" >"$rk_d/o" 2>"$rk_d/e"
    rk_s=$?
  else
    rk_s=125
    : >"$rk_d/o"
    echo "rollout kept shell: the command's input could not be kept" >"$rk_d/e"
  fi
  [ -z "$rk_h" ] || : >"$rk_d/i"
  rk_o=$(wc -c <"$rk_d/o")
  rk_e=$(wc -c <"$rk_d/e")
  echo "R $rk_s $((rk_o)) $((rk_e))"
  cat "$rk_d/o" "$rk_d/e"
done
"#;

/// What the shell says first.
const HELLO: &str = "rollout-shell 1";
/// How long a shell may take to say hello.
const HELLO_WAIT: Duration = Duration::from_secs(5);
/// Kept shells per container: commands that overlap (a drain's poll beside
/// another slot's route change) each get one; beyond this, an exec.
const MOST: usize = 3;
/// Opens that fail before the container is reached by exec only.
const OPEN_TRIES: usize = 3;

type Output = Pin<Box<dyn Stream<Item = Result<LogOutput, bollard::errors::Error>> + Send>>;

/// The most bytes, and lines, a command's input may have ([`as_input`]).
/// The shell reads its input a byte at a time and joins its lines one by
/// one, so the cost grows with both; a config is far smaller.
const INPUT_MOST: usize = 65_536;
const INPUT_LINES_MOST: usize = 2_000;

/// A file's bytes as a command's standard input through a kept shell, when
/// they can be: text (UTF-8, no NUL byte) under [`INPUT_MOST`] bytes and
/// [`INPUT_LINES_MOST`] lines. They cost no upload through the engine's
/// archive API (which unpacks in a process of its own, about a tenth of a
/// second here). Anything else goes by upload.
pub(crate) fn as_input(bytes: &[u8]) -> Option<&str> {
    if bytes.len() > INPUT_MOST
        || bytes.contains(&0)
        || bytes.iter().filter(|b| **b == b'\n').count() >= INPUT_LINES_MOST
    {
        return None;
    }
    std::str::from_utf8(bytes).ok()
}

/// Why a command did not run through a kept shell.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum NotRun {
    /// Nothing was sent: the caller runs it by exec.
    Unsent,
    /// It was sent and got no answer: whether it ran is not known, so it
    /// is not run again.
    Unanswered(Unanswered),
}

/// Why a command sent to a kept shell got no answer.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Unanswered {
    /// The shell broke before it answered.
    Broken(String),
    /// No answer within the time given; the shell is let go (it ends once
    /// the command does).
    Timeout,
}

fn broken(reason: String) -> NotRun {
    NotRun::Unanswered(Unanswered::Broken(reason))
}

/// The kept shells of one container, for the run.
#[derive(Default)]
pub(crate) struct KeptShells {
    /// The user they run as (a numeric uid); the container's own when
    /// `None`.
    user: Option<String>,
    idle: Mutex<Vec<Shell>>,
    /// Shells open, idle or in use.
    open: AtomicUsize,
    /// Set once a shell cannot be had here: every command goes by exec.
    off: AtomicBool,
    failed_opens: AtomicUsize,
}

impl std::fmt::Debug for KeptShells {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeptShells")
            .field("user", &self.user)
            .field("open", &self.open.load(Ordering::SeqCst))
            .field("off", &self.off.load(Ordering::SeqCst))
            .finish()
    }
}

impl KeptShells {
    /// Kept shells that run as `user` (a numeric uid) rather than as the
    /// container's user.
    pub(crate) fn as_user(user: &str) -> Self {
        Self {
            user: Some(user.to_string()),
            ..Self::default()
        }
    }

    /// Runs `argv` through a kept shell of `container`, opening one when
    /// none is idle (at most [`MOST`]).
    pub(crate) async fn run(
        &self,
        engine: &Engine,
        container: &str,
        argv: &[String],
        timeout: Duration,
    ) -> Result<ExecOutput, NotRun> {
        self.run_fed(engine, container, argv, None, timeout).await
    }

    /// [`KeptShells::run`] with `input` as the command's standard input
    /// (text that [`as_input`] took).
    pub(crate) async fn run_fed(
        &self,
        engine: &Engine,
        container: &str,
        argv: &[String],
        input: Option<&str>,
        timeout: Duration,
    ) -> Result<ExecOutput, NotRun> {
        if self.off.load(Ordering::SeqCst)
            || input.is_some_and(|text| text.contains('\0'))
            || argv.first().is_none_or(|program| program.is_empty())
            || argv.iter().any(|a| a.contains('\0'))
        {
            return Err(NotRun::Unsent);
        }
        // An idle shell whose exec has ended (the container stopped or was
        // recreated meanwhile) is let go; the command goes to a new one.
        let idle = loop {
            let Some(mut shell) = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop() else {
                break None;
            };
            if !shell.ended() {
                break Some(shell);
            }
            self.open.fetch_sub(1, Ordering::SeqCst);
        };
        // Counted as open from here: out of the pool for the exchange, and
        // uncounted however the call ends (a call dropped half way drops
        // the shell with it, so that no later call reads this one's
        // answer), unless the shell goes back to the pool.
        let mut shell = match idle {
            Some(shell) => shell,
            None => {
                if self.open.fetch_add(1, Ordering::SeqCst) >= MOST {
                    self.open.fetch_sub(1, Ordering::SeqCst);
                    return Err(NotRun::Unsent);
                }
                let _gone = Gone(&self.open);
                let opened = Shell::open(
                    engine,
                    container,
                    self.user.as_deref(),
                    timeout.min(HELLO_WAIT),
                )
                .await;
                match opened {
                    Ok(shell) => {
                        std::mem::forget(_gone);
                        shell
                    }
                    Err(Opened::Unsupported) => {
                        self.off.store(true, Ordering::SeqCst);
                        return Err(NotRun::Unsent);
                    }
                    Err(Opened::Failed) => {
                        if self.failed_opens.fetch_add(1, Ordering::SeqCst) + 1 >= OPEN_TRIES {
                            self.off.store(true, Ordering::SeqCst);
                        }
                        return Err(NotRun::Unsent);
                    }
                }
            }
        };
        let gone = Gone(&self.open);
        match tokio::time::timeout(timeout, shell.run(argv, input)).await {
            // A shell with bytes past the answer is out of step: let go.
            Ok(Ok(out)) if shell.pending.is_empty() => {
                std::mem::forget(gone);
                self.idle
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(shell);
                Ok(out)
            }
            Ok(Ok(out)) => {
                shell.close().await;
                Ok(out)
            }
            Ok(Err(e)) => {
                shell.close().await;
                Err(e)
            }
            Err(_) => {
                shell.close().await;
                Err(NotRun::Unanswered(Unanswered::Timeout))
            }
        }
    }

    /// Lets every idle shell go: each ends at the end of its input.
    pub(crate) async fn close(&self) {
        let idle = std::mem::take(&mut *self.idle.lock().unwrap_or_else(|e| e.into_inner()));
        for shell in idle {
            self.open.fetch_sub(1, Ordering::SeqCst);
            shell.close().await;
        }
    }
}

/// Counts a shell that leaves the pool, however the call ends.
struct Gone<'a>(&'a AtomicUsize);

impl Drop for Gone<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

enum Opened {
    /// The container has no shell that runs the script: exec from now on.
    Unsupported,
    /// The engine failed this time.
    Failed,
}

/// One kept shell.
struct Shell {
    input: Pin<Box<dyn AsyncWrite + Send>>,
    output: Output,
    /// Standard output read past the last whole answer.
    pending: Vec<u8>,
}

impl Shell {
    /// Starts the shell and waits up to `wait` for its hello; a shell slow
    /// to start counts as one that cannot be had (the command goes by exec).
    async fn open(
        engine: &Engine,
        container: &str,
        user: Option<&str>,
        wait: Duration,
    ) -> Result<Shell, Opened> {
        let cmd = ["sh", "-c", SCRIPT].map(String::from).to_vec();
        let (input, output) = attach(engine, container, cmd, user)
            .await
            .map_err(|_| Opened::Failed)?;
        let mut shell = Shell {
            input,
            output,
            pending: Vec::new(),
        };
        match tokio::time::timeout(wait, shell.line()).await {
            Ok(Ok(hello)) if hello == HELLO => Ok(shell),
            Ok(_) | Err(_) => Err(Opened::Unsupported),
        }
    }

    async fn run(&mut self, argv: &[String], input: Option<&str>) -> Result<ExecOutput, NotRun> {
        let request = encode(argv, input);
        // A write that failed reached the shell in part at most, and the
        // shell, let go, runs nothing from input cut short. A flush that
        // failed may have come after the whole command went through.
        self.input
            .write_all(&request)
            .await
            .map_err(|_| NotRun::Unsent)?;
        self.input
            .flush()
            .await
            .map_err(|e| broken(format!("writing to the kept shell: {e}")))?;
        let header = self.line().await.map_err(broken)?;
        let (code, out, err) = parse_header(&header)
            .ok_or_else(|| broken(format!("the shell answered {header:?}")))?;
        let stdout = self.bytes(out).await.map_err(broken)?;
        let stderr = self.bytes(err).await.map_err(broken)?;
        Ok(ExecOutput {
            code,
            stdout,
            stderr,
        })
    }

    async fn close(mut self) {
        let _ = self.input.shutdown().await;
    }

    /// Whether its output has ended already, looking without waiting; an
    /// idle shell that wrote anything is out of step and counts as ended.
    fn ended(&mut self) -> bool {
        loop {
            match self.output.next().now_or_never() {
                None => return false,
                Some(None | Some(Err(_))) => return true,
                Some(Some(Ok(LogOutput::StdOut { .. } | LogOutput::Console { .. }))) => {
                    return true
                }
                Some(Some(Ok(_))) => {}
            }
        }
    }

    /// The next line of standard output, without its newline.
    async fn line(&mut self) -> Result<String, String> {
        loop {
            if let Some(end) = self.pending.iter().position(|b| *b == b'\n') {
                let raw: Vec<u8> = self.pending.drain(..=end).collect();
                return Ok(String::from_utf8_lossy(&raw[..end]).into_owned());
            }
            self.more().await?;
        }
    }

    /// The next `n` bytes of standard output.
    async fn bytes(&mut self, n: usize) -> Result<Vec<u8>, String> {
        while self.pending.len() < n {
            self.more().await?;
        }
        Ok(self.pending.drain(..n).collect())
    }

    async fn more(&mut self) -> Result<(), String> {
        loop {
            match self.output.next().await {
                Some(Ok(LogOutput::StdOut { message } | LogOutput::Console { message })) => {
                    self.pending.extend_from_slice(&message);
                    return Ok(());
                }
                // The shell's own complaints; a command's go to its file.
                Some(Ok(LogOutput::StdErr { .. } | LogOutput::StdIn { .. })) => {}
                Some(Err(e)) => return Err(format!("reading the kept shell: {e}")),
                None => return Err("the kept shell ended".into()),
            }
        }
    }
}

/// Starts `cmd` in `container` by exec with its standard input attached;
/// returns its input and its output.
pub(crate) async fn attach(
    engine: &Engine,
    container: &str,
    cmd: Vec<String>,
    user: Option<&str>,
) -> Result<(Pin<Box<dyn AsyncWrite + Send>>, Output), String> {
    let docker = engine.docker();
    let config = ExecConfig {
        cmd: Some(cmd),
        user: user.map(str::to_string),
        attach_stdin: Some(true),
        attach_stdout: Some(true),
        attach_stderr: Some(true),
        tty: Some(false),
        ..Default::default()
    };
    let created = docker
        .create_exec(container, config)
        .await
        .map_err(|e| engine.error(e).to_string())?;
    let started = docker
        .start_exec(&created.id, None)
        .await
        .map_err(|e| engine.error(e).to_string())?;
    match started {
        StartExecResults::Attached { output, input } => Ok((input, output)),
        StartExecResults::Detached => Err("the engine did not attach to the command".into()),
    }
}

/// A command as the shell reads it; see the module documentation.
fn encode(argv: &[String], input: Option<&str>) -> Vec<u8> {
    let mut out = Vec::new();
    let mut lines = |text: &str, first: u8, next: u8| {
        for (k, line) in text.split('\n').enumerate() {
            out.push(if k == 0 { first } else { next });
            out.extend_from_slice(line.as_bytes());
            out.push(b'\n');
        }
    };
    for arg in argv {
        lines(arg, b'p', b'c');
    }
    if let Some(text) = input {
        lines(text, b'i', b'j');
    }
    out.push(b'\n');
    out
}

/// `R CODE OUT ERR`.
fn parse_header(line: &str) -> Option<(i32, usize, usize)> {
    let mut parts = line.strip_prefix("R ")?.split(' ');
    let code = parts.next()?.parse().ok()?;
    let out = parts.next()?.parse().ok()?;
    let err = parts.next()?.parse().ok()?;
    parts.next().is_none().then_some((code, out, err))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Stdio;
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};

    #[test]
    fn arguments_are_lines_and_newlines_continue_them() {
        assert!(SCRIPT.starts_with(&format!("{MARK}\n")));
        let argv = ["sh", "-c", "a\nb\n", "", "x y"].map(String::from);
        assert_eq!(
            String::from_utf8(encode(&argv, None)).unwrap(),
            "psh\np-c\npa\ncb\nc\np\npx y\n\n"
        );
        // The input after the arguments; an empty one is one empty line.
        let cat = ["cat".to_string()];
        assert_eq!(encode(&cat, Some("a\n\nb\n")), b"pcat\nia\nj\njb\nj\n\n");
        assert_eq!(encode(&cat, Some("")), b"pcat\ni\n\n");
        assert_eq!(parse_header("R 0 12 0"), Some((0, 12, 0)));
        assert_eq!(parse_header("R 127 0 30"), Some((127, 0, 30)));
        assert_eq!(parse_header("R 0 1"), None);
        assert_eq!(parse_header("R 0 1 2 3"), None);
        assert_eq!(parse_header("rollout-shell 1"), None);
    }

    #[test]
    fn only_text_under_the_limits_goes_as_input() {
        assert_eq!(as_input(b"a\n\tb\n"), Some("a\n\tb\n"));
        assert_eq!(as_input(b""), Some(""));
        assert_eq!(as_input(b"a\0b"), None);
        assert_eq!(as_input(&[0xff, b'a']), None);
        assert!(as_input(&vec![b'x'; INPUT_MOST]).is_some());
        assert_eq!(as_input(&vec![b'x'; INPUT_MOST + 1]), None);
        assert!(as_input("x\n".repeat(INPUT_LINES_MOST - 1).as_bytes()).is_some());
        assert_eq!(as_input("x\n".repeat(INPUT_LINES_MOST).as_bytes()), None);
    }

    /// The script itself, under this machine's `sh` and under busybox's
    /// (the shell of the test image's nginx): what a command gets as its
    /// arguments, its code and both outputs come back whole, and input cut
    /// short runs nothing.
    #[tokio::test]
    async fn the_script_runs_each_command_with_its_arguments_as_given() {
        script_under(&["sh"]).await;
        let busybox = std::path::Path::new("/bin/busybox");
        if busybox.exists() {
            script_under(&["/bin/busybox", "sh"]).await;
        } else {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "/bin/busybox is missing: cargo xtask setup installs it"
            );
            eprintln!("no /bin/busybox here: the script ran under sh only");
        }
    }

    async fn script_under(shell: &[&str]) {
        let mut child = tokio::process::Command::new(shell[0])
            .args(&shell[1..])
            .args(["-c", SCRIPT])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut input = child.stdin.take().unwrap();
        let mut output = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        output.read_line(&mut line).await.unwrap();
        assert_eq!(line, format!("{HELLO}\n"));
        let line = "    server app-1:8080 weight=3 max_fails=0;  # a \\ and trailing  \n";
        let big: String = line.repeat(INPUT_MOST / line.len());
        let big = as_input(big.as_bytes()).unwrap().to_string();
        let odd = "\r\n\\\n  \t lead and trail \t  \n%s -n p c i j é\n\n\nno final newline";
        let tricky = "  two  spaces, a 'quote', a \"double\", $HOME, `id`, \\n, a\nnewline\n";
        // The arguments, the input, then the code and both outputs expected.
        type Case<'a> = (Vec<String>, Option<&'a str>, i32, String, String);
        let cases: Vec<Case> = vec![
            (
                ["printf", "%s|", tricky, "", "last"]
                    .map(String::from)
                    .to_vec(),
                None,
                0,
                format!("{tricky}||last|"),
                String::new(),
            ),
            (
                ["sh", "-c", "echo out; echo err >&2; exit 7"]
                    .map(String::from)
                    .to_vec(),
                None,
                7,
                "out\n".into(),
                "err\n".into(),
            ),
            // The command's input is not the shell's: `cat` reads nothing.
            (vec!["cat".into()], None, 0, String::new(), String::new()),
            // A program, never a builtin of the kept shell: no `exit` there
            // (127, with the shell's own words), and the shell goes on.
            (
                vec!["exit".into(), "5".into()],
                None,
                127,
                String::new(),
                "*".into(),
            ),
            (vec!["true".into()], None, 0, String::new(), String::new()),
            // A file's bytes as the command's input (`as_input`): a config of
            // many lines near the most, and odd lines, back byte for byte;
            // none of it among the arguments.
            (
                vec!["cat".into()],
                Some(&big),
                0,
                big.clone(),
                String::new(),
            ),
            (vec!["cat".into()], Some(odd), 0, odd.into(), String::new()),
            (
                vec!["cat".into()],
                Some(""),
                0,
                String::new(),
                String::new(),
            ),
            (
                ["sh", "-c", "echo $#; wc -c"].map(String::from).to_vec(),
                Some("abc\n"),
                0,
                "0\n4\n".into(),
                String::new(),
            ),
            // The next command's input is its own again.
            (vec!["cat".into()], None, 0, String::new(), String::new()),
        ];
        for (argv, fed, code, stdout, stderr) in cases {
            input.write_all(&encode(&argv, fed)).await.unwrap();
            let mut header = String::new();
            output.read_line(&mut header).await.unwrap();
            let (got, out, err) = parse_header(header.trim_end()).unwrap();
            let mut body = vec![0; out + err];
            output.read_exact(&mut body).await.unwrap();
            assert_eq!(got, code, "{shell:?} {argv:?}");
            assert_eq!(
                String::from_utf8_lossy(&body[..out]),
                stdout,
                "{shell:?} {argv:?}"
            );
            let said = String::from_utf8_lossy(&body[out..]);
            if stderr == "*" {
                assert!(!said.is_empty(), "{shell:?} {argv:?}");
            } else {
                assert_eq!(said, stderr, "{shell:?} {argv:?}");
            }
        }
        let dir =
            std::env::temp_dir().join(format!("kept-shell-{}-{}", std::process::id(), shell.len()));
        let _ = std::fs::remove_dir_all(&dir);
        let cut = encode(&["mkdir".into(), dir.display().to_string()], Some("x"));
        input.write_all(&cut[..cut.len() - 1]).await.unwrap();
        drop(input);
        let mut rest = Vec::new();
        output.read_to_end(&mut rest).await.unwrap();
        assert!(rest.is_empty(), "{rest:?}");
        assert!(child.wait().await.unwrap().success());
        assert!(!dir.exists(), "{shell:?}: a command cut short ran");
    }
}
