//! The harness's plugin install, shown with the stand-in plugin: `docker --config DIR rollout
//! ...` must reach the installed binary through the real Docker CLI with the operator's
//! arguments, and its exit code must come back. Needs the `docker` CLI but not the engine, so
//! it always runs (and fails loudly when the CLI is missing).

use rollout_e2e::PluginDir;
use std::path::Path;
use std::process::Output;

const STANDIN: &str = env!("CARGO_BIN_EXE_docker-rollout-standin");

fn called_with(out: &Output) -> serde_json::Value {
    assert!(
        !out.stdout.is_empty(),
        "the plugin printed nothing; stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "not the stand-in's JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

fn argv(v: &serde_json::Value) -> Vec<String> {
    v["argv"]
        .as_array()
        .expect("argv")
        .iter()
        .map(|a| a.as_str().unwrap().to_string())
        .collect()
}

#[test]
fn docker_rollout_reaches_the_installed_plugin_with_the_operators_arguments() {
    let plugins = PluginDir::install(Path::new(STANDIN));
    let out = plugins
        .docker()
        .args([
            "rollout",
            "-f",
            "compose.yml",
            "--strategy",
            "canary",
            "app",
        ])
        .output()
        .expect("the docker CLI runs (hint: apt-get install docker.io)");
    assert!(out.status.success(), "{out:?}");
    let v = called_with(&out);
    let argv = argv(&v);
    assert_eq!(
        Path::new(&argv[0]),
        plugins.plugin_path("rollout"),
        "the installed copy ran"
    );
    // The Docker CLI passes its own global flags first, then the plugin's name and arguments.
    let at = argv
        .iter()
        .position(|a| a == "rollout")
        .expect("plugin name in argv");
    assert_eq!(
        &argv[at + 1..],
        ["-f", "compose.yml", "--strategy", "canary", "app"]
    );
    assert_eq!(v["env"]["DOCKER_CLI_PLUGIN_ORIGINAL_CLI_COMMAND"], "docker");
}

#[test]
fn global_flags_before_the_plugin_name_are_passed_through() {
    let plugins = PluginDir::install(Path::new(STANDIN));
    let out = plugins
        .docker()
        .args(["--log-level", "warn", "rollout", "app"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let argv = argv(&called_with(&out));
    let at = argv.iter().position(|a| a == "rollout").unwrap();
    assert!(argv[1..at].contains(&"--log-level".to_string()), "{argv:?}");
    assert_eq!(&argv[at + 1..], ["app"]);
}

#[test]
fn the_plugins_exit_code_comes_back_through_docker() {
    let plugins = PluginDir::install(Path::new(STANDIN));
    let status = plugins
        .docker()
        .args(["rollout", "app"])
        .env("STANDIN_EXIT", "4")
        .output()
        .unwrap()
        .status;
    assert_eq!(status.code(), Some(4));
}

#[test]
fn docker_lists_the_plugin_from_its_metadata() {
    let plugins = PluginDir::install(Path::new(STANDIN));
    let out = plugins.docker().arg("--help").output().unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(
        help.lines()
            .any(|l| l.contains("rollout*") && l.contains("stand-in for docker-rollout")),
        "docker --help does not list the plugin:\n{help}"
    );
}

#[test]
fn without_the_plugin_docker_does_not_know_rollout() {
    let plugins = PluginDir::install_as(Path::new(STANDIN), "other");
    let out = plugins.docker().args(["rollout", "app"]).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown command"));
}

#[test]
#[ignore = "needs docker: run with cargo xtask e2e"]
fn a_projects_rollout_command_names_the_project_and_runs_in_its_folder() {
    rollout_e2e::require_engine();
    let plugins = PluginDir::install(Path::new(STANDIN));
    let p = rollout_e2e::Project::new("rollout-command");
    p.write("docker-compose.yml", "services: {}\n");
    let out = p.rollout_command(&plugins).arg("app").output().unwrap();
    assert!(out.status.success(), "{out:?}");
    let argv = argv(&called_with(&out));
    let at = argv.iter().position(|a| a == "rollout").unwrap();
    assert_eq!(&argv[at + 1..], ["--project-name", p.name(), "app"]);
}
