//! What the example shows without an engine: it says so, and runs the plan
//! the Compose file gives on the mock. Always runs (no engine is needed: the
//! engine is pointed at a socket that does not exist).

use std::path::PathBuf;
use std::process::{Command, Output};

/// A Compose project in a folder of its own, removed on drop.
struct Folder(PathBuf);

impl Folder {
    fn with_compose(name: &str, compose: &str) -> Folder {
        let dir = std::env::temp_dir().join(format!("live-context-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("compose.yaml"), compose).unwrap();
        Folder(dir)
    }

    fn run(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_live-context"))
            .args(args)
            .current_dir(&self.0)
            .env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
            .env_remove("DOCKER_CONTEXT")
            .env_remove("COMPOSE_FILE")
            .env_remove("COMPOSE_PROJECT_NAME")
            .env_remove("ROLLOUT_COMPOSE")
            .output()
            .unwrap()
    }
}

impl Drop for Folder {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

const SHOP: &str = "services:\n  app:\n    image: shop/app:2\n    deploy:\n      replicas: 3\n      update_config:\n        parallelism: 2\n        order: start-first\n  nginx:\n    image: nginx\n";

#[test]
fn without_an_engine_the_plan_runs_on_the_mock() {
    let f = Folder::with_compose("mock", SHOP);
    let out = f.run(&["-p", "shop", "app"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(
        lines[0].starts_with(
            "engine: not reachable (cannot reach the engine at unix:///nonexistent/docker.sock"
        ),
        "{stdout}"
    );
    assert_eq!(lines[1], "showing the plan on the in-memory mock instead");
    assert_eq!(lines[2], "strategy: rolling");
    let plan: serde_json::Value =
        serde_json::from_str(lines[3].strip_prefix("plan: ").unwrap()).unwrap();
    assert_eq!(plan["service"]["project"], "shop");
    assert_eq!(plan["replicas"], 3);
    assert_eq!(plan["target"]["image"], "shop/app:2");
    assert_eq!(plan["update"]["parallelism"], 2);
    assert_eq!(plan["update"]["order"], "start-first");
    let events: Vec<serde_json::Value> = lines
        .iter()
        .filter_map(|l| l.strip_prefix("event: "))
        .map(|e| serde_json::from_str(e).unwrap())
        .collect();
    assert_eq!(events[0]["event"], "rollout-started");
    let launched = events
        .iter()
        .filter(|e| e["event"] == "instance-launched")
        .count();
    assert_eq!(launched, 3, "{stdout}");
    assert_eq!(lines.last(), Some(&"outcome: Completed"));
}

#[test]
fn the_compose_file_decides_the_strategy_and_its_refusals() {
    let colours = "services:\n  blue:\n    image: shop/app:1\n  green:\n    image: shop/app:2\n  nginx:\n    image: nginx\n";
    let f = Folder::with_compose("colours", colours);
    let out = f.run(&["-p", "shop", "green"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains("\nstrategy: blue-green\n"), "{stdout}");
    assert!(stdout.ends_with("outcome: Completed\n"), "{stdout}");

    let pinned = "services:\n  app:\n    image: shop/app:2\n    container_name: the-app\n  nginx:\n    image: nginx\n";
    let f = Folder::with_compose("pinned", pinned);
    let out = f.run(&["-p", "shop", "app"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("would leave none serving"), "{stderr}");
    assert!(out.stdout.is_empty());

    let out = f.run(&[]);
    assert_eq!(out.status.code(), Some(2));
}
