//! The plugin as a process: arguments in, exit codes and output out. None
//! of these needs an engine: the engine is pointed at a socket that does
//! not exist, which is itself a case (exit 6).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const NOWHERE: &str = "unix:///nonexistent/rollout-test.sock";

struct Dir(PathBuf);

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn project(name: &str, compose: &str) -> Dir {
    let dir =
        std::env::temp_dir().join(format!("docker-rollout-cli-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("compose.yaml"), compose).unwrap();
    std::fs::write(
        dir.join("nginx.conf"),
        "events {}\nhttp {\n    upstream backend {\n        server app:8000;\n    }\n}\n",
    )
    .unwrap();
    Dir(dir)
}

const SEED: &str = "services:\n  nginx:\n    image: rollout-nginx:1.22\n    volumes:\n      - ./nginx.conf:/etc/nginx/nginx.conf:ro\n  app:\n    image: rollout-demo:v2\n    deploy:\n      replicas: 4\n      update_config:\n        parallelism: 2\n        delay: 10s\n";

fn plugin(dir: &Path, args: &[&str], as_plugin: bool) -> Output {
    plugin_with(dir, args, as_plugin, &[])
}

/// [`plugin`] with more variables set (over the ones it sets).
fn plugin_with(dir: &Path, args: &[&str], as_plugin: bool, env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_docker-rollout"));
    c.current_dir(dir)
        .args(args)
        .env("DOCKER_HOST", NOWHERE)
        .env("ROLLOUT_COMPOSE", "v1")
        .env("NO_COLOR", "1")
        .env_remove("DOCKER_CONTEXT")
        .env_remove("COMPOSE_FILE")
        .env_remove("COMPOSE_PROJECT_NAME")
        .env_remove("DOCKER_CLI_PLUGIN_SOCKET");
    if as_plugin {
        c.env("DOCKER_CLI_PLUGIN_ORIGINAL_CLI_COMMAND", "docker");
    } else {
        c.env_remove("DOCKER_CLI_PLUGIN_ORIGINAL_CLI_COMMAND");
    }
    c.envs(env.iter().copied());
    c.output().unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn metadata_is_json_and_needs_no_engine() {
    let dir = project("meta", SEED);
    for as_plugin in [false, true] {
        let out = plugin(&dir.0, &["docker-cli-plugin-metadata"], as_plugin);
        assert_eq!(out.status.code(), Some(0));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["SchemaVersion"], "0.1.0");
        assert_eq!(v["Vendor"], "rollout");
        assert!(out.stderr.is_empty(), "{}", text(&out.stderr));
    }
}

#[test]
fn usage_errors_exit_2() {
    let dir = project("usage", SEED);
    for args in [
        &["app", "--parallelism", "-1"][..],
        &[][..],
        &["app", "--strategy", "big-bang"][..],
        &["app", "--canary-steps", "10,50"][..],
        &["app", "--prometheus", "https://prom:9090"][..],
        &["app", "--prometheus-query", "sum(errors)"][..],
    ] {
        let out = plugin(&dir.0, args, false);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?}: {}",
            text(&out.stderr)
        );
    }
}

#[test]
fn bad_input_exits_2_before_the_engine_is_contacted() {
    let dir = project("bad", SEED);
    // Unknown service: the engine (unreachable here) is never asked.
    let out = plugin(&dir.0, &["web"], false);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(err.starts_with("error: "), "{err}");
    assert!(err.contains("web"), "{err}");

    // A malformed file is named with its line.
    let broken = project("broken", "services:\n  app:\n    image: [unclosed\n");
    let out = plugin(&broken.0, &["app"], false);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(err.contains("compose.yaml"), "{err}");

    // No proxy in front of the service, and a strategy that moves traffic:
    // a hint says what to do instead.
    let alone = project("alone", "services:\n  app:\n    image: rollout-demo:v2\n");
    let out = plugin(&alone.0, &["--strategy", "canary", "app"], false);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(err.contains("no proxy is in front of"), "{err}");
    assert!(err.contains("canary moves its traffic"), "{err}");
    assert!(
        err.contains("\nhint: roll it out with --strategy rolling"),
        "{err}"
    );
}

#[test]
fn a_compose_tool_that_cannot_be_used_exits_2_before_the_engine_is_contacted() {
    let dir = project("tool", SEED);
    let out = plugin_with(&dir.0, &["app"], false, &[("ROLLOUT_COMPOSE", "v3")]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(
        err.starts_with("error: ROLLOUT_COMPOSE=\"v3\" names no Compose tool\nhint: "),
        "{err}"
    );
    // docker-compose asked for, and not on PATH.
    let out = plugin_with(&dir.0, &["app"], false, &[("PATH", "/nonexistent")]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(
        err.starts_with(
            "error: ROLLOUT_COMPOSE=v1 asks for docker-compose, which is not installed: no docker-compose on PATH\nhint: "
        ),
        "{err}"
    );
    assert!(!err.contains("cannot reach the engine"), "{err}");
}

#[test]
fn an_unreachable_engine_exits_6() {
    let dir = project("unreachable", SEED);
    let out = plugin(&dir.0, &["app"], false);
    assert_eq!(out.status.code(), Some(6), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(err.contains("cannot reach the engine"), "{err}");
    assert!(err.contains("/nonexistent/rollout-test.sock"), "{err}");
    assert!(out.stdout.is_empty(), "text mode keeps stdout for data");

    // As a plugin, docker's -H before the plugin's name wins over DOCKER_HOST.
    let out = plugin(
        &dir.0,
        &["-H", "unix:///nonexistent/other.sock", "rollout", "app"],
        true,
    );
    assert_eq!(out.status.code(), Some(6));
    assert!(text(&out.stderr).contains("/nonexistent/other.sock"));

    // In JSON, the last line of stdout says why and with which code.
    let out = plugin(&dir.0, &["app", "--output", "json"], false);
    assert_eq!(out.status.code(), Some(6));
    let last: serde_json::Value =
        serde_json::from_str(text(&out.stdout).lines().last().unwrap()).unwrap();
    assert_eq!(last["v"], 1);
    assert_eq!(last["summary"]["exit_code"], 6);
    assert!(last["summary"]["outcome"].is_null());
    assert!(last["summary"]["error"]
        .as_str()
        .unwrap()
        .contains("cannot reach the engine"));
}

#[test]
fn dry_run_prints_the_plan_without_an_engine() {
    let dir = project("dry", SEED);
    let out = plugin(
        &dir.0,
        &["app", "--dry-run", "--order", "start-first"],
        false,
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let s = text(&out.stdout);
    assert!(s.contains("plan: roll out "), "{s}");
    assert!(s.contains("assumed: the engine was not read"), "{s}");
    assert!(s.contains("rounds:    2 + 2 (2 slots at a time)"), "{s}");
    assert!(
        s.contains("capacity:  never fewer than 4 healthy, routed instances (3 during a rollback)"),
        "{s}"
    );
    assert!(s.contains("rollout complete"), "{s}");
    assert!(s.contains("invariants 1, 2 and 4 held"), "{s}");
}
