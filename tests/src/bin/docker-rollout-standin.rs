//! A stand-in for the `docker-rollout` plugin: it answers the Docker CLI's metadata call as a
//! plugin must, and otherwise prints what it was called with (argv and the `DOCKER_CLI_PLUGIN_*`
//! environment) as one JSON object on stdout, then exits with `STANDIN_EXIT` (default 0). The
//! harness's tests use it to show that `docker --config DIR rollout ...` reaches the installed
//! binary with the operator's arguments, before and apart from the real plugin.

use std::process::ExitCode;

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().collect();
    if argv.get(1).map(String::as_str) == Some("docker-cli-plugin-metadata") {
        println!(
            "{}",
            serde_json::json!({
                "SchemaVersion": "0.1.0",
                "Vendor": "rollout tests",
                "Version": env!("CARGO_PKG_VERSION"),
                "ShortDescription": "stand-in for docker-rollout (test harness)",
            })
        );
        return ExitCode::SUCCESS;
    }
    let env: serde_json::Map<String, serde_json::Value> = std::env::vars()
        .filter(|(k, _)| k.starts_with("DOCKER_CLI_PLUGIN"))
        .map(|(k, v)| (k, v.into()))
        .collect();
    println!("{}", serde_json::json!({ "argv": argv, "env": env }));
    let code = std::env::var("STANDIN_EXIT")
        .ok()
        .and_then(|c| c.parse::<u8>().ok())
        .unwrap_or(0);
    ExitCode::from(code)
}
