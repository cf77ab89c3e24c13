//! The plugin under a real pseudo-terminal of a given size (`script` from
//! util-linux gives it one; `stty` sizes it): the live progress takes its
//! width from the terminal itself, never from `$COLUMNS`, and colour
//! follows `NO_COLOR` and `CLICOLOR_FORCE`. Docker's `--debug` makes the
//! plugin say which door its output takes and how wide it is, before it
//! looks for the project (so no project and no engine are needed: the run
//! then stops with exit 2).

use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};

/// An empty folder of its own, so that no Compose file is found by chance.
struct Empty(PathBuf);

impl Empty {
    fn new() -> Empty {
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "docker-rollout-tty-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        Empty(dir)
    }
}

impl Drop for Empty {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs `docker-rollout --debug app` in a pseudo-terminal `columns` wide,
/// with `env` set (and `COLUMNS=200`, which must not matter); returns what
/// the terminal showed.
fn in_terminal(columns: u16, env: &[(&str, &str)]) -> String {
    let bin = env!("CARGO_BIN_EXE_docker-rollout");
    let inner = format!("stty cols {columns} rows 12 && exec {bin} --debug app");
    let dir = Empty::new();
    let mut cmd = Command::new("script");
    cmd.args(["--quiet", "--return", "--command", &inner, "/dev/null"])
        .current_dir(&dir.0)
        .env("COLUMNS", "200")
        .env("DOCKER_HOST", "unix:///nonexistent/rollout-test.sock")
        .env_remove("NO_COLOR")
        .env_remove("CLICOLOR_FORCE")
        .env_remove("CLICOLOR")
        .env_remove("ROLLOUT_NO_PROGRESS")
        .env_remove("COMPOSE_FILE")
        .env_remove("DOCKER_CLI_PLUGIN_ORIGINAL_CLI_COMMAND")
        .stdin(std::process::Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out: Output = cmd.output().unwrap_or_else(|e| {
        panic!("cannot run script (util-linux): {e}\nhint: apt-get install util-linux")
    });
    let shown = String::from_utf8_lossy(&out.stdout).replace('\r', "");
    assert_eq!(
        out.status.code(),
        Some(2),
        "no project here: exit 2\n{shown}"
    );
    shown
}

fn debug_line(shown: &str) -> &str {
    shown
        .lines()
        .find(|l| l.starts_with("debug: output: "))
        .unwrap_or_else(|| panic!("no debug line:\n{shown}"))
}

#[test]
fn the_live_width_is_the_terminals_not_columns() {
    let shown = in_terminal(37, &[]);
    assert_eq!(
        debug_line(&shown),
        "debug: output: live progress on stderr, 37 columns (from the terminal), colour on"
    );
    let shown = in_terminal(61, &[]);
    assert!(
        debug_line(&shown).contains(", 61 columns (from the terminal)"),
        "{shown}"
    );
}

#[test]
fn no_color_and_no_progress_are_honoured_in_a_terminal() {
    let shown = in_terminal(37, &[("NO_COLOR", "1"), ("CLICOLOR_FORCE", "1")]);
    assert_eq!(
        debug_line(&shown),
        "debug: output: live progress on stderr, 37 columns (from the terminal), colour off"
    );
    let shown = in_terminal(37, &[("ROLLOUT_NO_PROGRESS", "1")]);
    assert_eq!(
        debug_line(&shown),
        "debug: output: one line per change on stderr, colour on"
    );
}

#[test]
fn clicolor_force_colours_a_pipe() {
    let dir = Empty::new();
    let run = |force: Option<&str>| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_docker-rollout"));
        cmd.args(["--debug", "app"])
            .current_dir(&dir.0)
            .env("DOCKER_HOST", "unix:///nonexistent/rollout-test.sock")
            .env_remove("NO_COLOR")
            .env_remove("CLICOLOR_FORCE")
            .env_remove("DOCKER_CLI_PLUGIN_ORIGINAL_CLI_COMMAND");
        if let Some(v) = force {
            cmd.env("CLICOLOR_FORCE", v);
        }
        let out = cmd.output().unwrap();
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    assert!(
        run(None).contains("debug: output: one line per change on stderr, colour off"),
        "{}",
        run(None)
    );
    assert!(
        run(Some("1")).contains("debug: output: one line per change on stderr, colour on"),
        "{}",
        run(Some("1"))
    );
}
