//! `cargo xtask bench analysis`: how fast a bad canary is rolled back, judged by the proxy's
//! own log and by a Prometheus query, side by side in one run.
//!
//! Each provider gets a fresh copy of `examples/canary` (three v1 replicas live, three v2
//! replicas answering 500 to a fifth of their requests while their health check passes), the
//! seed's steps (10, 25, 50, 75, 100 %, held 30 s each), the same limit (5xx share at most
//! 5 %) and the same load as the end-to-end suites (250 requests per second, POSTs, new
//! connections). Measured from the load generator's own records: from the first bad answer a
//! user received (the threshold is crossed from then on) to the start of the last request
//! that v2 answered (all traffic is on v1 after it), and the bad answers users received in
//! that time.

use rollout_core::Event;
use rollout_e2e::load::{mix, wait_ok};
use rollout_e2e::{
    canary_example, images, require_engine, require_images, run_rollout, workspace_binary, Clock,
    PluginDir, NGINX_IMAGE,
};
use rollout_load::LoadHandle;
use std::time::Duration;

const LOG_RULES: &str =
    "        max_error_rate: 5%\n        min_requests: 20\n        window: 10s\n";
const PROMETHEUS_RULES: &str = "        prometheus:\n          url: PROMETHEUS_URL\n          queries:\n            - query: '(sum(demo_responses_total{version=\"v2\",status=~\"5..\"}) or vector(0)) / sum(demo_responses_total{version=\"v2\"})'\n              max: 0.05\n";

struct Figures {
    provider: &'static str,
    exit: Option<i32>,
    /// First bad answer to the start of the last request v2 answered, seconds.
    to_old_s: f64,
    /// v2's 500s users received in that time.
    bad: usize,
    /// Requests sent in that time.
    sent: usize,
    /// From the first bad answer to the analysis's failing verdict, seconds.
    to_verdict_s: Option<f64>,
}

fn run_one(provider: &'static str, rules: &str, plugins: &PluginDir) -> Figures {
    let slug = format!("bench-analysis-{}", provider.replace(' ', "-"));
    let (p, _, _prometheus) = canary_example(
        &slug,
        "DEMO_ERROR_RATE: \"0.2\"",
        rules,
        "[10, 25, 50, 75, 100]",
        "30s",
    );
    let mut c = p.load_config("nginx");
    c.error_log = None;
    mix(&mut c, Duration::from_secs(300));
    let load = LoadHandle::start(c).unwrap();
    wait_ok(&load, 750, Duration::from_secs(30));
    let clock = Clock::of(&load);
    let mut cmd = p.rollout_command(plugins);
    cmd.args(["green", "--output", "json"]);
    let run = run_rollout(cmd, clock, Duration::from_secs(300));
    wait_ok(&load, 500, Duration::from_secs(30));
    let report = load.stop().unwrap();
    let bad_answers: Vec<f64> = report
        .requests
        .iter()
        .filter(|r| r.status == Some(500) && r.version.as_deref() == Some("v2"))
        .map(|r| r.end())
        .collect();
    let first_bad = bad_answers.iter().copied().fold(f64::INFINITY, f64::min);
    let last_v2 = report
        .requests
        .iter()
        .filter(|r| r.version.as_deref() == Some("v2"))
        .map(|r| r.t)
        .fold(f64::NEG_INFINITY, f64::max);
    let verdict_at = run.events.iter().find_map(|e| match &e.event {
        Event::Analysis {
            verdict: rollout_core::Verdict::Fail(_),
            ..
        } => Some(e.at),
        _ => None,
    });
    Figures {
        provider,
        exit: run.code,
        to_old_s: last_v2 - first_bad,
        bad: bad_answers.iter().filter(|t| **t <= last_v2 + 1e-9).count(),
        sent: report
            .requests
            .iter()
            .filter(|r| r.t >= first_bad && r.t <= last_v2)
            .count(),
        to_verdict_s: verdict_at.map(|t| t - first_bad),
    }
}

fn main() {
    require_engine();
    require_images(&[images::V1, images::V2, NGINX_IMAGE]);
    let plugins = PluginDir::install(&workspace_binary("docker-rollout", "docker-rollout"));
    let mut all = Vec::new();
    for (provider, rules) in [("proxy log", LOG_RULES), ("prometheus", PROMETHEUS_RULES)] {
        eprintln!("bench analysis: {provider} ...");
        all.push(run_one(provider, rules, &plugins));
    }
    println!(
        "bench analysis: canary of 3 v2 replicas answering 500 to 20 % (health check passing) behind nginx, steps 10/25/50/75/100 % held 30 s, limit 5xx share <= 5 %, load 250 req/s; judged every {:?}",
        rollout_strategies::JUDGE_EVERY
    );
    println!(
        "{:<12} {:>5} {:>26} {:>24} {:>22}",
        "provider",
        "exit",
        "first bad -> all on v1 s",
        "bad answers meanwhile",
        "first bad -> verdict s"
    );
    for f in &all {
        println!(
            "{:<12} {:>5} {:>26.2} {:>14} of {:<7} {:>22}",
            f.provider,
            f.exit.map_or("-".into(), |c| c.to_string()),
            f.to_old_s,
            f.bad,
            f.sent,
            f.to_verdict_s.map_or("-".into(), |s| format!("{s:.2}"))
        );
    }
    let verdict = |ok: bool| if ok { "met" } else { "MISSED" };
    for f in &all {
        println!(
            "target ({}): rolled back (exit 3): {}; all traffic on v1 under 2 s after the first bad answer: {} ({:.2} s)",
            f.provider,
            verdict(f.exit == Some(3)),
            verdict(f.to_old_s < 2.0),
            f.to_old_s
        );
    }
}
