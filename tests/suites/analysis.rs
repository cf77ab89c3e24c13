//! Canary analysis end to end: the real plugin, engine, nginx and load (the strategies
//! suite's mix: 250 requests per second, POSTs, new connections), with a v2 whose health check
//! passes while it answers badly. The canary must be judged from the proxy's own log and
//! rolled back at its first step, with the figure in the message and exit 3; the failed
//! requests must be only those the bad canary answered, and the operator's nginx config must be
//! byte for byte what it was. A healthy canary passes every judgement of every step; a
//! blue-green switch to a bad green is judged in its monitor window and switched back to the
//! same blue, and a rolling update's monitor windows are judged too.

use rollout_core::strategy::Verdict;
use rollout_core::Event;
use rollout_e2e::load::{mix, wait_ok};
use rollout_e2e::nginx::stderr_upstream_errors;
use rollout_e2e::verdict::publish;
use rollout_e2e::{
    canary_example, images, judged_blue_green_example, require_engine, require_images, run_rollout,
    wait_http, workspace_binary, Clock, Ended, PluginDir, Project, NGINX_IMAGE,
};
use rollout_load::{LoadConfig, LoadHandle, Report};
use std::time::Duration;

const SUITE: &str = "analysis";

const ROLLOUT_LIMIT: Duration = Duration::from_secs(240);

/// `docker rollout SERVICE --output json` in `p` under the suite's load through its nginx
/// (the mix for up to 360 s, with `tune` applied): the run and the load's report, with
/// nginx's upstream errors, published under `slug`.
fn rollout_under_load(
    p: &Project,
    plugins: &PluginDir,
    service: &str,
    slug: &str,
    tune: impl FnOnce(&mut LoadConfig),
) -> (Ended, Report) {
    let nginx = p.containers(Some("nginx")).into_iter().next().unwrap();
    let mut c = p.load_config("nginx");
    c.error_log = None;
    mix(&mut c, Duration::from_secs(360));
    tune(&mut c);
    let load = LoadHandle::start(c).unwrap();
    wait_ok(&load, 750, Duration::from_secs(30));
    let clock = Clock::of(&load);
    let mut cmd = p.rollout_command(plugins);
    cmd.args([service, "--output", "json"]);
    let run = run_rollout(cmd, clock, ROLLOUT_LIMIT);
    wait_ok(&load, 750, Duration::from_secs(30));
    let mut report = load.stop().unwrap();
    report.upstream_errors = stderr_upstream_errors(&nginx.id, &report);
    publish(SUITE, slug, &report, &[&run]);
    (run, report)
}

/// Slow GETs at `share`, POSTs held 100 ms.
fn slow(share: f64) -> impl FnOnce(&mut LoadConfig) {
    move |c| {
        c.slow_share = share;
        c.post_delay = Duration::from_millis(100);
    }
}

/// The canary example with green (v2) given `green_env` and the analysis rules `rules`
/// (YAML under `x-rollout.analysis`; `PROMETHEUS_URL` in them is replaced by the address of a
/// Prometheus server started for the test, scraping the project's containers), rolled out
/// under load with `slow_share` slow GETs: the run and the load's report, once the
/// configuration is checked to be the operator's again and blue to serve.
fn judged_canary(slug: &str, green_env: &str, rules: &str, slow_share: f64) -> (Ended, Report) {
    require_engine();
    require_images(&[images::V1, images::V2, NGINX_IMAGE]);
    let plugins = PluginDir::install(&workspace_binary("docker-rollout", "docker-rollout"));
    let (p, original_conf, _prometheus) =
        canary_example(slug, green_env, rules, "[10, 25, 50, 75, 100]", "20s");
    let (run, report) = rollout_under_load(&p, &plugins, "green", slug, slow(slow_share));

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
    // v2 answers 500 to a fifth of its requests while its health check passes.
    p.write(
        "compose.override.yaml",
        &format!(
            "{labels}    environment:\n      DEMO_ERROR_RATE: \"0.2\"\n    deploy:\n      update_config:\n        delay: 2s\n        monitor: 10s\n    x-rollout:\n      analysis:\n        max_error_rate: 5%\n        min_requests: 20\n        window: 10s\n"
        ),
    );
    p.set_env("APP_VERSION", "v2");
    let (run, report) = rollout_under_load(&p, &plugins, "app", "analysis-rolling-5xx", |_| {});

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

/// The verdicts of a run's `analysis` events, with their step.
fn verdicts(run: &Ended) -> Vec<(usize, Verdict)> {
    run.events
        .iter()
        .filter_map(|e| match &e.event {
            Event::Analysis { step, verdict } => Some((*step, verdict.clone())),
            _ => None,
        })
        .collect()
}

/// The weights of a run's `weights-changed` events, in order.
fn weights(run: &Ended) -> Vec<u32> {
    run.events
        .iter()
        .filter_map(|e| match &e.event {
            Event::WeightsChanged { new_percent } => Some(*new_percent),
            _ => None,
        })
        .collect()
}

/// The versions that answered the requests started in `[from, to)`.
fn versions_between(report: &Report, from: f64, to: f64) -> std::collections::BTreeSet<String> {
    report
        .requests
        .iter()
        .filter(|r| r.t >= from && r.t < to && !r.failed())
        .filter_map(|r| r.version.clone())
        .collect()
}

#[test]
#[ignore = "needs docker: run with cargo xtask e2e"]
fn a_healthy_judged_canary_is_promoted_through_every_step() {
    require_engine();
    require_images(&[images::V1, images::V2, NGINX_IMAGE]);
    let plugins = PluginDir::install(&workspace_binary("docker-rollout", "docker-rollout"));
    let slug = "analysis-canary-healthy";
    // Error rate and an absolute p99 (a relative one would compare v2 at 100 % with a v1 that
    // no longer gets requests); 3 s holds, judged every second.
    let rules = "        max_error_rate: 5%\n        max_p99: 500ms\n        min_requests: 20\n        window: 10s\n";
    let (p, original_conf, _) =
        canary_example(slug, "DEMO_ERROR_RATE: \"0\"", rules, "[25, 50, 100]", "3s");
    let (run, report) = rollout_under_load(&p, &plugins, "green", slug, slow(0.0));

    let v = verdicts(&run);
    let by_version = |from: f64, to: f64| {
        let mut n = std::collections::BTreeMap::<String, u64>::new();
        for r in report.requests.iter().filter(|r| r.t >= from && r.t < to) {
            *n.entry(r.version.clone().unwrap_or_default()).or_default() += 1;
        }
        n
    };
    eprintln!(
        "SENT {} FAILED {}; during the rollout by version {:?}, after it {:?}; {} verdicts; rollout {:.1}s; {:?}",
        report.sent,
        report.failed,
        by_version(run.started_at, run.returned_at),
        by_version(run.returned_at, f64::INFINITY),
        v.len(),
        run.elapsed(),
        run.outcome()
    );
    assert_eq!(run.code, Some(0), "{}\n{}", run.transcript(), run.stderr);
    assert_eq!(weights(&run), vec![25, 50, 100], "{}", run.transcript());
    // Every step judged, every verdict a pass, in step order.
    let steps: Vec<usize> = v.iter().map(|(s, _)| *s).collect();
    for step in 1..=3 {
        assert!(steps.contains(&step), "step {step} not judged: {v:?}");
    }
    assert!(steps.windows(2).all(|w| w[0] <= w[1]), "{v:?}");
    assert!(
        v.iter().all(|(_, verdict)| *verdict == Verdict::Pass),
        "{v:?}"
    );
    assert_eq!(
        report.failed,
        0,
        "{:#?}",
        report.failures().collect::<Vec<_>>()
    );
    assert_eq!(report.upstream_errors.total, 0);
    // Both answered during the rollout; only v2 once it returned.
    let during = versions_between(&report, run.started_at, run.returned_at);
    assert!(during.contains("v1") && during.contains("v2"), "{during:?}");
    assert_eq!(
        versions_between(&report, run.returned_at + 1.0, f64::INFINITY),
        ["v2".to_string()].into_iter().collect()
    );
    wait_http(p.port("nginx", 80), "/", Duration::from_secs(10), |a| {
        a.status == 200 && a.version.as_deref() == Some("v2")
    });
    // At rest the upstream names green, and nothing else differs from what the operator wrote
    // (the tool's log lines gone).
    let conf = p.read("nginx.conf");
    assert!(!conf.contains("docker-rollout"), "{conf}");
    assert_eq!(
        conf,
        original_conf.replace("server blue:8000;", "server green:8000;")
    );
}

#[test]
#[ignore = "needs docker: run with cargo xtask e2e"]
fn a_blue_green_switch_to_a_green_answering_5xx_is_switched_back_to_the_same_blue() {
    require_engine();
    require_images(&[images::V1, images::V2, NGINX_IMAGE]);
    let plugins = PluginDir::install(&workspace_binary("docker-rollout", "docker-rollout"));
    let slug = "analysis-blue-green-5xx";
    let (p, original_conf, _) = judged_blue_green_example(
        slug,
        "DEMO_ERROR_RATE: \"0.2\"",
        "        max_error_rate: 5%\n        min_requests: 20\n        window: 10s\n",
        "10s",
    );
    let blue_before = p.containers(Some("blue"));
    let (run, report) = rollout_under_load(&p, &plugins, "green", slug, slow(0.05));

    let outcome = format!("{:?}", run.outcome());
    let failed: Vec<_> = report.failures().collect();
    let by_green = failed
        .iter()
        .filter(|r| r.status == Some(500) && r.version.as_deref() == Some("v2"))
        .count();
    let after_return = failed.iter().filter(|r| r.t > run.returned_at).count();
    let answered = |version: &str| {
        report
            .requests
            .iter()
            .filter(|r| r.version.as_deref() == Some(version))
            .count()
    };
    eprintln!(
        "FAILED: {} requests of {} sent, {} of them v2's 500s, {} after the rollout returned; answered by v1 {}, by v2 {}; rollout {:.1}s; {outcome}",
        failed.len(),
        report.sent,
        by_green,
        after_return,
        answered("v1"),
        answered("v2"),
        run.elapsed(),
    );
    // Switched (one change to 100 %), judged, switched back: exit 3 with the figure.
    assert_eq!(run.code, Some(3), "{}\n{}", run.transcript(), run.stderr);
    assert_eq!(weights(&run), vec![100], "{}", run.transcript());
    assert!(
        outcome.contains("analysis failed after the switch: error rate"),
        "{outcome}\n{}",
        run.transcript()
    );
    assert!(
        verdicts(&run)
            .iter()
            .any(|(step, v)| *step == 1 && matches!(v, Verdict::Fail(_))),
        "{}",
        run.transcript()
    );
    // The failed requests are green's 500s, and only those, all before the return.
    assert!(by_green > 0, "green answered no request");
    assert_eq!(
        by_green,
        failed.len(),
        "failures that are not v2's 500s: {:#?}",
        failed
            .iter()
            .filter(|r| !(r.status == Some(500) && r.version.as_deref() == Some("v2")))
            .collect::<Vec<_>>()
    );
    assert_eq!(after_return, 0);
    assert_eq!(report.upstream_errors.total, 0);
    // All traffic on blue again, served by the very containers blue had before.
    assert_eq!(
        versions_between(&report, run.returned_at, f64::INFINITY),
        ["v1".to_string()].into_iter().collect()
    );
    let blue_after = p.containers(Some("blue"));
    let ids = |cs: &[rollout_e2e::Container]| {
        cs.iter()
            .map(|c| c.id.clone())
            .collect::<std::collections::BTreeSet<_>>()
    };
    assert_eq!(ids(&blue_after), ids(&blue_before));
    wait_http(p.port("nginx", 80), "/", Duration::from_secs(10), |a| {
        a.status == 200 && a.version.as_deref() == Some("v1")
    });
    // At rest the config is the operator's, byte for byte (the tool's log lines gone).
    assert_eq!(p.read("nginx.conf"), original_conf);
}
