//! Canary analysis end to end: the real plugin, engine, nginx and load (the strategies
//! suite's mix: 250 requests per second, slow GETs, POSTs), with a v2 that answers 500 to a
//! fifth of its requests while its health check passes. The canary must be judged from the
//! proxy's own log and rolled back at its first step, with the error rate in the message and
//! exit 3; the failed requests must be only those the bad canary answered, and the operator's
//! nginx config must be byte for byte what it was.

use rollout_e2e::load::{mix, wait_ok};
use rollout_e2e::nginx::stderr_upstream_errors;
use rollout_e2e::verdict::publish;
use rollout_e2e::{
    images, require_engine, require_images, run_rollout, wait_http, workspace_binary, Clock,
    PluginDir, Project, NGINX_IMAGE,
};
use rollout_load::LoadHandle;
use std::path::Path;
use std::time::Duration;

const SUITE: &str = "analysis";

const ROLLOUT_LIMIT: Duration = Duration::from_secs(240);

#[test]
#[ignore = "needs docker: run with cargo xtask e2e"]
fn a_canary_answering_5xx_to_a_fifth_is_rolled_back_at_its_first_step() {
    require_engine();
    require_images(&[images::V1, images::V2, NGINX_IMAGE]);
    let plugins = PluginDir::install(&workspace_binary("docker-rollout", "docker-rollout"));
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/canary");
    let mut p = Project::new("analysis-canary-5xx");
    p.copy_from(&example);
    let label = p.name().to_string();
    // Green (v2) fails a fifth of its requests; its health check still passes.
    p.write(
        "compose.override.yaml",
        &format!(
            "services:\n  nginx:\n    labels:\n      io.rollout.test: {label}\n  blue:\n    labels:\n      io.rollout.test: {label}\n  green:\n    labels:\n      io.rollout.test: {label}\n    environment:\n      DEMO_ERROR_RATE: \"0.2\"\n    x-rollout:\n      strategy: canary\n      canary:\n        steps: [10, 25, 50, 75, 100]\n        hold: 20s\n      analysis:\n        max_error_rate: 5%\n        min_requests: 20\n"
        ),
    );
    p.set_env(
        "NGINX_PORT",
        &format!("127.0.0.1:{}", rollout_e2e::free_port()),
    );
    let original_conf = p.read("nginx.conf");
    p.up();
    p.wait_healthy("blue", 3, Duration::from_secs(60));
    p.wait_healthy("green", 3, Duration::from_secs(60));
    wait_http(p.port("nginx", 80), "/", Duration::from_secs(30), |a| {
        a.status == 200 && a.version.as_deref() == Some("v1")
    });
    let nginx = p.containers(Some("nginx")).into_iter().next().unwrap();
    let mut c = p.load_config("nginx");
    c.error_log = None;
    mix(&mut c, Duration::from_secs(360));
    c.post_delay = Duration::from_millis(100);
    let load = LoadHandle::start(c).unwrap();
    wait_ok(&load, 750, Duration::from_secs(30));
    let clock = Clock::of(&load);
    let mut cmd = p.rollout_command(&plugins);
    cmd.args(["green", "--output", "json"]);
    let run = run_rollout(cmd, clock, ROLLOUT_LIMIT);
    wait_ok(&load, 750, Duration::from_secs(30));
    let mut report = load.stop().unwrap();
    report.upstream_errors = stderr_upstream_errors(&nginx.id, &report);
    publish(SUITE, "canary-5xx", &report, &[&run]);

    // Rolled back at the first step (10 %), exit 3, the rate in the words.
    assert_eq!(run.code, Some(3), "{}\n{}", run.transcript(), run.stderr);
    let outcome = format!("{:?}", run.outcome());
    assert!(
        outcome.contains("analysis failed at 10%: error rate"),
        "{outcome}\n{}",
        run.transcript()
    );
    let weights: Vec<u32> = run
        .events
        .iter()
        .filter_map(|e| match &e.event {
            rollout_core::Event::WeightsChanged { new_percent } => Some(*new_percent),
            _ => None,
        })
        .collect();
    assert_eq!(weights, vec![10], "{}", run.transcript());

    // The failed requests are the bad canary's answers, and only those.
    let failed: Vec<_> = report.failures().collect();
    let by_canary = failed
        .iter()
        .filter(|r| r.status == Some(500) && r.version.as_deref() == Some("v2"))
        .count();
    let after_return = failed.iter().filter(|r| r.t > run.returned_at).count();
    eprintln!(
        "FAILED: {} requests of {} sent, {} of them v2's 500s, {} after the rollout returned; rollout {:.1}s; upstream errors {}",
        failed.len(),
        report.sent,
        by_canary,
        after_return,
        run.elapsed(),
        report.upstream_errors.total
    );
    assert!(by_canary > 0, "the bad canary answered no request");
    assert_eq!(
        by_canary,
        failed.len(),
        "failures that are not v2's 500s: {:#?}",
        failed
            .iter()
            .filter(|r| !(r.status == Some(500) && r.version.as_deref() == Some("v2")))
            .collect::<Vec<_>>()
    );
    assert_eq!(after_return, 0);
    assert_eq!(report.upstream_errors.total, 0);

    // Blue serves everything again, and the operator's config is theirs again.
    wait_http(p.port("nginx", 80), "/", Duration::from_secs(10), |a| {
        a.status == 200 && a.version.as_deref() == Some("v1")
    });
    assert_eq!(p.read("nginx.conf"), original_conf);
}
