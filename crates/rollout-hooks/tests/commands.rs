//! Command hooks as real processes: sh scripts in a temporary directory,
//! checked for what they receive (stdin, environment, working directory),
//! how their exit is read, and that a timeout kills the whole process
//! group by its pid.

use rollout_core::hooks::{CommandHook, Hooks, Phase};
use rollout_core::{Outcome, Revision, ServiceRef};
use rollout_hooks::command::{self, OUTPUT_MAX};
use rollout_hooks::{HookError, Message, Runner, Setting, Subject};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// A directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "rollout-hooks-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("hooks")).unwrap();
        TempDir(dir)
    }

    /// Writes an executable sh script at `hooks/NAME`.
    fn script(&self, name: &str, body: &str) -> String {
        let path = self.0.join("hooks").join(name);
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        format!("./hooks/{name}")
    }

    fn read(&self, name: &str) -> String {
        std::fs::read_to_string(self.0.join(name)).unwrap()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn subject() -> Subject {
    Subject {
        service: ServiceRef::new("shop", "app"),
        strategy: "rolling".into(),
        from: None,
        to: Revision::new("b@sha256:2", "app:v2"),
    }
}

fn hook(argv: &[&str]) -> CommandHook {
    CommandHook {
        argv: argv.iter().map(|s| s.to_string()).collect(),
        timeout: None,
    }
}

fn setting(dir: &Path) -> Setting {
    Setting {
        dir: dir.to_path_buf(),
        inherited: vec![("PATH".into(), "/usr/bin:/bin".into())],
    }
}

#[tokio::test]
async fn a_hook_gets_the_message_on_stdin_and_names_in_its_environment() {
    let dir = TempDir::new();
    // The operator's environment: a variable passed on by name, and one
    // that a Compose file would interpolate into a container's environment.
    std::env::set_var("CHAT_CHANNEL", "ops");
    std::env::set_var("API_TOKEN", "s3cr3t-do-not-leak");
    let prog = dir.script(
        "post.sh",
        "cat > stdin.json\nenv > env.txt\npwd > pwd.txt\necho posted",
    );
    let hooks = Hooks {
        post: Some(hook(&[&prog, "--flag", "two words"])),
        pass_env: vec!["CHAT_CHANNEL".into()],
        ..Default::default()
    };
    let runner = Runner::new(hooks, &dir.0);
    let mut s = subject();
    s.from = Some(Revision::new("a@sha256:1", "app:v1"));
    let m = Message::ended(&s, &Outcome::Completed, 0, 3.0);
    let ran = runner.command(&m).await.unwrap().unwrap();
    assert_eq!(ran.output, "posted\n");
    assert_eq!(ran.argv, [prog.as_str(), "--flag", "two words"]);

    let stdin: serde_json::Value = serde_json::from_str(&dir.read("stdin.json")).unwrap();
    assert_eq!(stdin["hook"], "post");
    assert_eq!(stdin["service"], "app");
    assert_eq!(stdin["event"]["event"], "finished");
    assert_eq!(stdin["text"], m.text);

    let env = dir.read("env.txt");
    for line in [
        "ROLLOUT_HOOK=post",
        "ROLLOUT_PROJECT=shop",
        "ROLLOUT_SERVICE=app",
        "ROLLOUT_STRATEGY=rolling",
        "ROLLOUT_IMAGE=app:v2",
        "ROLLOUT_FROM_IMAGE=app:v1",
        "ROLLOUT_OUTCOME=completed",
        "ROLLOUT_EXIT_CODE=0",
        "CHAT_CHANNEL=ops",
    ] {
        assert!(env.lines().any(|l| l == line), "{line} not in:\n{env}");
    }
    assert!(env.lines().any(|l| l.starts_with("PATH=")), "{env}");
    assert!(!env.contains("s3cr3t"), "{env}");
    assert!(!env.contains("API_TOKEN"), "{env}");
    // It ran in the project's directory.
    let pwd = dir.read("pwd.txt");
    assert_eq!(
        Path::new(pwd.trim()).canonicalize().unwrap(),
        dir.0.canonicalize().unwrap()
    );
}

#[tokio::test]
async fn a_failing_hook_reports_its_exit_code_and_the_end_of_its_output() {
    let dir = TempDir::new();
    let prog = dir.script(
        "pre.sh",
        "echo checking\necho 'change freeze until Monday' >&2\nexit 3",
    );
    let m = Message::pre(&subject());
    let e = command::run(
        Phase::Pre,
        &hook(&[&prog]),
        Duration::from_secs(10),
        &setting(&dir.0),
        &m,
    )
    .await
    .unwrap_err();
    assert!(matches!(e, HookError::Failed { .. }), "{e:?}");
    assert_eq!(
        e.to_string(),
        format!(
            "the pre hook {prog:?} exited 3; its output:\nchecking\nchange freeze until Monday"
        )
    );

    // A long output is cut to its last 4 KiB, from a whole line.
    let prog = dir.script(
        "loud.sh",
        "i=0\nwhile [ $i -lt 3000 ]; do echo \"line $i\"; i=$((i+1)); done\nexit 1",
    );
    let e = command::run(
        Phase::Pre,
        &hook(&[&prog]),
        Duration::from_secs(10),
        &setting(&dir.0),
        &m,
    )
    .await
    .unwrap_err();
    let out = e.output().unwrap();
    assert!(out.len() <= OUTPUT_MAX + 60, "{}", out.len());
    assert!(
        out.starts_with("[… earlier output cut; the last 4096 bytes]\nline "),
        "{out}"
    );
    assert!(out.ends_with("line 2999\n"), "{out}");

    // A program that is not there.
    let e = command::run(
        Phase::Pre,
        &hook(&["./hooks/missing.sh"]),
        Duration::from_secs(10),
        &setting(&dir.0),
        &m,
    )
    .await
    .unwrap_err();
    assert!(matches!(e, HookError::Spawn { .. }), "{e:?}");
    assert!(
        e.to_string()
            .starts_with("the pre hook \"./hooks/missing.sh\" could not be started: "),
        "{e}"
    );

    // A hook that never reads its stdin and exits 0 succeeded.
    let e = command::run(
        Phase::Pre,
        &hook(&["true"]),
        Duration::from_secs(10),
        &setting(&dir.0),
        &m,
    )
    .await;
    assert!(e.is_ok(), "{e:?}");
}

/// The state letter of a process in /proc (`Z` for a zombie), `None` when
/// it is gone.
fn state(pid: i32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?.1.trim().chars().next()
}

#[tokio::test]
async fn a_hook_past_its_timeout_is_killed_with_what_it_started() {
    let dir = TempDir::new();
    // The hook starts a child in the background, records both pids, and
    // waits far longer than its timeout.
    let prog = dir.script(
        "slow.sh",
        "sleep 300 &\necho $! > child.pid\necho $$ > hook.pid\necho waiting\nsleep 300",
    );
    let m = Message::pre(&subject());
    let started = Instant::now();
    let e = command::run(
        Phase::Pre,
        &hook(&[&prog]),
        Duration::from_millis(700),
        &setting(&dir.0),
        &m,
    )
    .await
    .unwrap_err();
    let took = started.elapsed();
    assert!(took < Duration::from_secs(5), "{took:?}");
    let HookError::TimedOut {
        pid, ref output, ..
    } = e
    else {
        panic!("{e:?}");
    };
    assert_eq!(output, "waiting\n");
    let hook_pid: i32 = dir.read("hook.pid").trim().parse().unwrap();
    let child_pid: i32 = dir.read("child.pid").trim().parse().unwrap();
    assert_eq!(pid, hook_pid);
    assert!(
        e.to_string().contains(&format!(
            "ran longer than 700ms and was killed (its process group, pid {pid})"
        )),
        "{e}"
    );
    // Killed and reaped (the hook), or killed and waiting for init to reap
    // it (its child): neither runs.
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let hook_state = state(hook_pid);
        let child_state = state(child_pid);
        let ended = |s: Option<char>| matches!(s, None | Some('Z') | Some('X'));
        if ended(hook_state) && ended(child_state) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "still running: hook {hook_state:?}, child {child_state:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_hook_dropped_by_an_interrupted_caller_is_killed() {
    let dir = TempDir::new();
    let prog = dir.script("slow.sh", "echo $$ > hook.pid\nsleep 300");
    let m = Message::pre(&subject());
    let h = hook(&[&prog]);
    let s = setting(&dir.0);
    let run = command::run(Phase::Pre, &h, Duration::from_secs(60), &s, &m);
    // The caller gives up after 500 ms (as an interrupt would).
    assert!(tokio::time::timeout(Duration::from_millis(500), run)
        .await
        .is_err());
    let pid: i32 = dir.read("hook.pid").trim().parse().unwrap();
    let deadline = Instant::now() + Duration::from_secs(3);
    while !matches!(state(pid), None | Some('Z') | Some('X')) {
        assert!(Instant::now() < deadline, "the hook {pid} still runs");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
