//! Bad input, end to end: the real `docker rollout` plugin through the real docker CLI, on a
//! running stack under real load (250 requests per second, slow GETs, POSTs, keep-alive and
//! new connections), with the demo app in its exit-at-once mode.
//!
//! Each mistake an operator makes (an unknown service, a Compose file that does not parse, an
//! image that does not exist, a proxy that is not running, an nginx config without the
//! upstream that routes the service or that does not parse, flags out of range, a `pre` hook
//! that fails or runs past its timeout) must end with
//! a clear message on stderr (`error: ...`, naming what is wrong, a file and line where there
//! is one) and exit code 2 (bad input) or 6 (unreachable), and must change nothing: the same
//! containers in the same states, the nginx config byte for byte, nginx's process ids (a
//! needless reload changes no byte but replaces the workers and closes keep-alive
//! connections), and no lock or journal left with the engine. The load sees no failed
//! request and no upstream error throughout.

use rollout_e2e::keepers::{keepers, Keeper};
use rollout_e2e::load::{self, wait_ok};
use rollout_e2e::nginx::{nginx_procs, NginxProcs};
use rollout_e2e::verdict::{assert_no_failure, publish};
use rollout_e2e::{images, run_rollout, Clock, DemoStack, PluginDir, Project, Rig};
use std::process::Command;
use std::time::Duration;

/// What must not change.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Snapshot {
    containers: Vec<(String, String, String)>,
    conf: Vec<u8>,
    nginx: Option<NginxProcs>,
    keepers: Vec<Keeper>,
}

fn snapshot(p: &Project, nginx_running: bool) -> Snapshot {
    Snapshot {
        containers: p
            .containers(None)
            .into_iter()
            .map(|c| (c.id, c.image, c.state))
            .collect(),
        conf: std::fs::read(p.dir().join("nginx.conf")).unwrap(),
        nginx: nginx_running.then(|| nginx_procs(&p.running("nginx").id)),
        keepers: keepers(p.name()),
    }
}

/// Runs `cmd` to its end (killed and failed after 60 s); returns the exit code and stderr.
fn run(cmd: Command) -> (Option<i32>, String) {
    let ended = run_rollout(cmd, Clock::start(), Duration::from_secs(60));
    (ended.code, ended.stderr)
}

struct Case<'a> {
    name: &'a str,
    args: &'a [&'a str],
    code: i32,
    /// Every one of these must be in stderr.
    says: &'a [&'a str],
}

/// Runs `case`, checks its exit code and message, and that nothing changed.
fn check(
    p: &Project,
    plugins: &PluginDir,
    case: &Case,
    nginx_running: bool,
    results: &mut Vec<String>,
) {
    let before = snapshot(p, nginx_running);
    let mut cmd = p.rollout_command(plugins);
    cmd.args(case.args);
    let (code, stderr) = run(cmd);
    eprintln!("--- {}: exit {code:?}\n{stderr}", case.name);
    assert_eq!(code, Some(case.code), "{}: {stderr}", case.name);
    assert!(
        stderr.lines().any(|l| l.starts_with("error: ")),
        "{}: no error line: {stderr}",
        case.name
    );
    for s in case.says {
        assert!(
            stderr.contains(s),
            "{}: the message does not say {s:?}: {stderr}",
            case.name
        );
    }
    assert!(!stderr.contains("panicked"), "{}: {stderr}", case.name);
    let after = snapshot(p, nginx_running);
    assert_eq!(after, before, "{}: something changed", case.name);
    results.push(format!(
        "{}: exit {}, nothing changed",
        case.name, case.code
    ));
}

#[test]
#[ignore = "needs docker: run with cargo xtask e2e"]
fn bad_input_is_refused_with_exit_2_or_6_and_nothing_changes() {
    let override_yml = "services:\n  app:\n    deploy:\n      update_config:\n        parallelism: 2\n        delay: 1s\n        order: start-first\n        monitor: 2s\n";
    let Rig { mut p, plugins } = Rig::up(
        "bad-input",
        DemoStack::new(images::V1, 4),
        override_yml,
        &[images::V2],
    );
    let conf = p.read("nginx.conf");
    let load = load::standard(&p, Duration::from_secs(300));
    wait_ok(&load, 500, Duration::from_secs(30));
    // From here on the Compose file asks for v2: every case below would change something
    // if it got past its check.
    p.set_env("APP_IMAGE", images::V2);
    let mut results = Vec::new();

    check(
        &p,
        &plugins,
        &Case {
            name: "unknown service",
            args: &["nosuch"],
            code: 2,
            says: &["nosuch"],
        },
        true,
        &mut results,
    );

    for (name, args, says) in [
        (
            "--parallelism -1",
            &["app", "--parallelism", "-1"][..],
            "--parallelism",
        ),
        (
            "--max-failure-ratio 1.5",
            &["app", "--max-failure-ratio", "1.5"],
            "1.5",
        ),
        ("--delay 10 (no unit)", &["app", "--delay", "10"], "--delay"),
        (
            "--start-timeout 0s",
            &["app", "--start-timeout", "0s"],
            "longer than 0s",
        ),
        ("--order first", &["app", "--order", "first"], "--order"),
    ] {
        check(
            &p,
            &plugins,
            &Case {
                name,
                args,
                code: 2,
                says: &[says],
            },
            true,
            &mut results,
        );
    }

    // A `pre` hook that fails, or runs past its timeout, refuses the rollout before anything
    // changes, with the hook's output in the message (issue 14, item 4).
    p.write(
        "hooks/refuse.sh",
        "echo checking the change calendar\necho 'change freeze until Monday' >&2\nexit 1\n",
    );
    for (name, args, says) in [
        (
            "failing pre hook",
            &["app", "--hook-pre", "sh hooks/refuse.sh"][..],
            &[
                "the pre hook \"sh\" exited 1",
                "checking the change calendar",
                "change freeze until Monday",
                "nothing was changed",
            ][..],
        ),
        (
            "pre hook past its timeout",
            &["app", "--hook-pre", "sleep 30", "--hook-timeout", "1s"],
            &["ran longer than 1s and was killed", "nothing was changed"],
        ),
    ] {
        check(
            &p,
            &plugins,
            &Case {
                name,
                args,
                code: 2,
                says,
            },
            true,
            &mut results,
        );
    }

    // A Compose file that does not parse: the file and the line.
    p.write(
        "docker-compose.override.yml",
        "services:\n  app:\n    deploy:\n      update_config: [parallelism: 2\n        delay: 1s\n",
    );
    check(
        &p,
        &plugins,
        &Case {
            name: "malformed compose file",
            args: &["app"],
            code: 2,
            says: &["docker-compose.override.yml:"],
        },
        true,
        &mut results,
    );
    let (_, stderr) = run({
        let mut c = p.rollout_command(&plugins);
        c.arg("app");
        c
    });
    let at =
        stderr.find("docker-compose.override.yml:").unwrap() + "docker-compose.override.yml:".len();
    assert!(
        stderr[at..].starts_with(|c: char| c.is_ascii_digit()),
        "no line number after the file name: {stderr}"
    );
    p.write("docker-compose.override.yml", override_yml);

    // An image that does not exist (nothing can be pulled here).
    p.set_env("APP_IMAGE", "rollout-demo:no-such-tag");
    check(
        &p,
        &plugins,
        &Case {
            // Not pulled (`--pull never`): whether a pull reaches a registry depends on the
            // machine's network; the pulls have their own tests (the images suite).
            name: "missing image",
            args: &["app", "--pull", "never"],
            code: 2,
            says: &["rollout-demo:no-such-tag"],
        },
        true,
        &mut results,
    );
    p.set_env("APP_IMAGE", images::V2);

    // The config on disk changes (nginx keeps the one it loaded): no upstream names the
    // service.
    p.write(
        "nginx.conf",
        &conf.replace("server app:8000;", "server other:8000;"),
    );
    check(
        &p,
        &plugins,
        &Case {
            name: "nginx.conf without the service's upstream",
            args: &["app"],
            code: 2,
            says: &["no upstream", "nginx.conf"],
        },
        true,
        &mut results,
    );
    // A config that does not parse: a missing semicolon on line 14.
    let line = conf
        .lines()
        .position(|l| l.contains("server app:8000;"))
        .unwrap()
        + 1;
    p.write(
        "nginx.conf",
        &conf.replace("server app:8000;", "server app:8000"),
    );
    check(
        &p,
        &plugins,
        &Case {
            name: "nginx.conf that does not parse",
            args: &["app"],
            code: 2,
            says: &["nginx.conf"],
        },
        true,
        &mut results,
    );
    let (_, stderr) = run({
        let mut c = p.rollout_command(&plugins);
        c.arg("app");
        c
    });
    // The file and line once, right after `error: ` (nginx reports the token that ends the
    // directive: the `}` on the next line).
    assert!(
        stderr.contains(&format!("error: /etc/nginx/nginx.conf:{line}:"))
            || stderr.contains(&format!("error: /etc/nginx/nginx.conf:{}:", line + 1)),
        "the message does not give nginx.conf:{line}: {stderr}"
    );
    p.write("nginx.conf", &conf);

    // The load saw nothing of it.
    wait_ok(&load, 500, Duration::from_secs(30));
    let report = load.stop().unwrap();
    publish("bad-input", "load", &report, &[]);
    assert_no_failure(&report);

    // The proxy not running: unreachable, exit 6.
    p.compose(&["stop", "nginx"]);
    check(
        &p,
        &plugins,
        &Case {
            name: "proxy not running",
            args: &["app"],
            code: 6,
            says: &["nginx"],
        },
        false,
        &mut results,
    );
    // Nothing at all was ever changed: still v1 everywhere, no rollout left a trace.
    assert!(p
        .containers(Some("app"))
        .iter()
        .all(|c| c.image == images::V1 && c.state == "running"));
    assert!(keepers(p.name()).is_empty(), "{:?}", keepers(p.name()));
    eprintln!("FIGURES bad-input cases:\n  {}", results.join("\n  "));
}
