//! Canary analysis end to end: the real plugin, engine, nginx and load (the strategies
//! suite's mix: 250 requests per second, POSTs, new connections), with a v2 whose health check
//! passes while it answers badly. The canary must be judged from the proxy's own log and
//! rolled back at its first step, with the figure in the message and exit 3; the failed
//! requests must be only those the bad canary answered, and the operator's nginx config must be
//! byte for byte what it was.

use rollout_e2e::load::{mix, wait_ok};
use rollout_e2e::nginx::stderr_upstream_errors;
use rollout_e2e::verdict::publish;
use rollout_e2e::{
    canary_example, images, require_engine, require_images, run_rollout, wait_http,
    workspace_binary, Clock, Ended, PluginDir, Project, NGINX_IMAGE,
};
use rollout_load::{LoadHandle, Report};
use std::time::Duration;

const SUITE: &str = "analysis";

const ROLLOUT_LIMIT: Duration = Duration::from_secs(240);

/// The canary example with green (v2) given `green_env` and the analysis rules `rules`
/// (YAML under `x-rollout.analysis`; `PROMETHEUS_URL` in them is replaced by the address of a
/// Prometheus server started for the test, scraping the project's containers), rolled out
/// under load with `slow_share` slow GETs: the run and the load's report, once the
/// configuration is checked to be the operator's again and blue to serve.
fn judged_canary(slug: &str, green_env: &str, rules: &str, slow_share: f64) -> (Ended, Report) {
    require_engine();
    require_images(&[images::V1, images::V2, NGINX_IMAGE]);
    let plugins = PluginDir::install(&workspace_binary("docker-rollout", "docker-rollout"));
    let (p, original_conf, _prometheus) = canary_example(slug, green_env, rules, "20s");
    let nginx = p.containers(Some("nginx")).into_iter().next().unwrap();
    let mut c = p.load_config("nginx");
    c.error_log = None;
    mix(&mut c, Duration::from_secs(360));
    c.slow_share = slow_share;
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
    publish(SUITE, slug, &report, &[&run]);

    // Rolled back at the first step (10 %), exit 3.
    assert_eq!(run.code, Some(3), "{}\n{}", run.transcript(), run.stderr);
    let weights: Vec<u32> = run
        .events
        .iter()
        .filter_map(|e| match &e.event {
            rollout_core::Event::WeightsChanged { new_percent } => Some(*new_percent),
            _ => None,
        })
        .collect();
    assert_eq!(weights, vec![10], "{}", run.transcript());
    assert_eq!(report.upstream_errors.total, 0);
    // Blue serves everything again, and the operator's config is theirs again.
    wait_http(p.port("nginx", 80), "/", Duration::from_secs(10), |a| {
        a.status == 200 && a.version.as_deref() == Some("v1")
    });
    assert_eq!(p.read("nginx.conf"), original_conf);
    (run, report)
}

#[test]
#[ignore = "needs docker: run with cargo xtask e2e"]
fn a_canary_answering_5xx_to_a_fifth_is_rolled_back_at_its_first_step() {
    let (run, report) = judged_canary(
        "analysis-canary-5xx",
        "DEMO_ERROR_RATE: \"0.2\"",
        "        max_error_rate: 5%\n        min_requests: 20\n",
        0.05,
    );
    let outcome = format!("{:?}", run.outcome());
    assert!(
        outcome.contains("analysis failed at 10%: error rate"),
        "{outcome}\n{}",
        run.transcript()
    );
    // The failed requests are the bad canary's answers, and only those.
    let failed: Vec<_> = report.failures().collect();
    let by_canary = failed
        .iter()
        .filter(|r| r.status == Some(500) && r.version.as_deref() == Some("v2"))
        .count();
    let after_return = failed.iter().filter(|r| r.t > run.returned_at).count();
    eprintln!(
        "FAILED: {} requests of {} sent, {} of them v2's 500s, {} after the rollout returned; rollout {:.1}s; {outcome}",
        failed.len(),
        report.sent,
        by_canary,
        after_return,
        run.elapsed(),
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
}

#[test]
#[ignore = "needs docker: run with cargo xtask e2e"]
fn a_canary_800ms_slower_is_rolled_back_on_its_p99() {
    // No deliberately slow requests in this load: they would make both revisions' p99 slow.
    let (run, report) = judged_canary(
        "analysis-canary-slow",
        "DEMO_LATENCY_MS: \"800\"",
        "        max_p99: 1.5x\n        min_requests: 20\n",
        0.0,
    );
    let outcome = format!("{:?}", run.outcome());
    eprintln!(
        "FAILED: {} requests of {} sent; rollout {:.1}s; {outcome}",
        report.failed,
        report.sent,
        run.elapsed()
    );
    assert!(
        outcome.contains("analysis failed at 10%: p99"),
        "{outcome}\n{}",
        run.transcript()
    );
    assert_eq!(report.failed, 0, "slow answers are still answers");
}

#[test]
#[ignore = "needs docker: run with cargo xtask e2e"]
fn a_canary_judged_by_a_prometheus_query_is_rolled_back_at_its_first_step() {
    // The share of v2's answers that are 5xx, from the demo app's own counters as a real
    // Prometheus scraped them; no log rule at all.
    let rules = "        inconclusive: hold\n        prometheus:\n          url: PROMETHEUS_URL\n          queries:\n            - query: '(sum(demo_responses_total{version=\"v2\",status=~\"5..\"}) or vector(0)) / sum(demo_responses_total{version=\"v2\"})'\n              max: 0.05\n";
    let (run, report) = judged_canary(
        "analysis-canary-prometheus",
        "DEMO_ERROR_RATE: \"0.2\"",
        rules,
        0.05,
    );
    let outcome = format!("{:?}", run.outcome());
    eprintln!(
        "FAILED: {} requests of {} sent; rollout {:.1}s; {outcome}",
        report.failed,
        report.sent,
        run.elapsed()
    );
    assert!(
        outcome.contains("analysis failed at 10%: Prometheus:")
            && outcome.contains("is above 0.05"),
        "{outcome}\n{}",
        run.transcript()
    );
    let failed: Vec<_> = report.failures().collect();
    assert!(
        failed
            .iter()
            .all(|r| r.status == Some(500) && r.version.as_deref() == Some("v2")),
        "failures that are not v2's 500s: {failed:#?}"
    );
}

#[test]
#[ignore = "needs docker: run with cargo xtask e2e"]
fn a_rolling_update_whose_new_instances_answer_5xx_is_rolled_back_in_their_monitor_window() {
    require_engine();
    require_images(&[images::V1, images::V2, NGINX_IMAGE]);
    let plugins = PluginDir::install(&workspace_binary("docker-rollout", "docker-rollout"));
    // The seed's rolling example (parallelism 2, failure_action rollback, max_failure_ratio
    // 0.3), with a shorter delay and monitor window.
    let mut p = Project::new("analysis-rolling-5xx");
    p.copy_from(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/rolling"));
    let label = p.name().to_string();
    let labels = format!(
        "services:\n  nginx:\n    labels:\n      io.rollout.test: {label}\n  app:\n    labels:\n      io.rollout.test: {label}\n"
    );
    p.write("compose.override.yaml", &labels);
    p.set_env(
        "NGINX_PORT",
        &format!("127.0.0.1:{}", rollout_e2e::free_port()),
    );
    p.up();
    let old = p.wait_healthy("app", 6, Duration::from_secs(60));
    wait_http(p.port("nginx", 80), "/", Duration::from_secs(30), |a| {
        a.status == 200 && a.version.as_deref() == Some("v1")
    });
    let original_conf = p.read("nginx.conf");
    let nginx = p.containers(Some("nginx")).into_iter().next().unwrap();
    // v2 answers 500 to a fifth of its requests while its health check passes.
    p.write(
        "compose.override.yaml",
        &format!(
            "{labels}    environment:\n      DEMO_ERROR_RATE: \"0.2\"\n    deploy:\n      update_config:\n        delay: 2s\n        monitor: 10s\n    x-rollout:\n      analysis:\n        max_error_rate: 5%\n        min_requests: 20\n        window: 10s\n"
        ),
    );
    p.set_env("APP_VERSION", "v2");
    let mut c = p.load_config("nginx");
    c.error_log = None;
    mix(&mut c, Duration::from_secs(240));
    let load = LoadHandle::start(c).unwrap();
    wait_ok(&load, 750, Duration::from_secs(30));
    let clock = Clock::of(&load);
    let mut cmd = p.rollout_command(&plugins);
    cmd.args(["app", "--output", "json"]);
    let run = run_rollout(cmd, clock, ROLLOUT_LIMIT);
    wait_ok(&load, 750, Duration::from_secs(30));
    let mut report = load.stop().unwrap();
    report.upstream_errors = stderr_upstream_errors(&nginx.id, &report);
    publish(SUITE, "analysis-rolling-5xx", &report, &[&run]);

    let outcome = format!("{:?}", run.outcome());
    let failed: Vec<_> = report.failures().collect();
    eprintln!(
        "FAILED: {} requests of {} sent; rollout {:.1}s; {outcome}",
        failed.len(),
        report.sent,
        run.elapsed()
    );
    // The first two new instances fail their window (2 of 6 > 0.3): rolled back, exit 3.
    assert_eq!(run.code, Some(3), "{}\n{}", run.transcript(), run.stderr);
    assert!(
        outcome.contains("analysis failed: error rate"),
        "{outcome}\n{}",
        run.transcript()
    );
    assert!(
        failed
            .iter()
            .all(|r| r.status == Some(500) && r.version.as_deref() == Some("v2")),
        "failures that are not v2's 500s: {failed:#?}"
    );
    assert_eq!(report.upstream_errors.total, 0);
    // Six v1 replicas serve again, and the config is the operator's.
    let now = p.wait_healthy("app", 6, Duration::from_secs(60));
    assert!(now.iter().all(|c| c.image == "rollout-demo:v1"), "{now:#?}");
    assert_eq!(old.len(), 6);
    wait_http(p.port("nginx", 80), "/", Duration::from_secs(10), |a| {
        a.status == 200 && a.version.as_deref() == Some("v1")
    });
    assert_eq!(p.read("nginx.conf"), original_conf);
}
