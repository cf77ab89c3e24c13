//! The demo app's `/metrics`, scraped by a real Prometheus server (Debian's
//! `prometheus`, started here on loopback), and the canary analysis's
//! Prometheus provider (rollout-analysis) judging the answers from it: a
//! revision answering 500 to a fifth of its requests fails a 5 % limit, a
//! healthy one passes, a query without data holds, and a server that cannot
//! be reached or refuses the query holds with its words.

mod common;

use common::{read_response, App};
use rollout_analysis::judge::WindowVerdict;
use rollout_analysis::prometheus::{read, Reading};
use rollout_analysis::PrometheusAnalysis;
use rollout_core::analysis::{AnalysisRules, MetricQuery, PrometheusRules};
use rollout_e2e::free_port;
use rollout_e2e::prometheus::Prometheus;
use std::io::Write;
use std::time::{Duration, Instant};

/// `n` GETs of `/` on one keep-alive connection; the statuses seen.
fn load(app: &App, n: usize) -> Vec<u16> {
    let mut s = app.connect();
    (0..n)
        .map(|_| {
            s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
            read_response(&mut s).unwrap().0
        })
        .collect()
}

/// The share of 5xx answers of `version`. A revision without a single 5xx
/// has no such series, and a sum over none is empty, not 0: `or vector(0)`.
fn error_share(version: &str) -> String {
    format!(
        "(sum(demo_responses_total{{version=\"{version}\",status=~\"5..\"}}) or vector(0)) / sum(demo_responses_total{{version=\"{version}\"}})"
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn a_canary_is_judged_from_the_demo_apps_metrics_through_prometheus() {
    let old = App::start(&["--app-version", "v1"]);
    let new = App::start(&["--app-version", "v2", "--error-rate", "0.2"]);
    let prometheus = Prometheus::scraping(&[
        format!("127.0.0.1:{}", old.port),
        format!("127.0.0.1:{}", new.port),
    ]);
    let sent_old = load(&old, 200);
    let sent_new = load(&new, 200);
    assert!(sent_old.iter().all(|s| *s == 200));
    assert_eq!(sent_new.iter().filter(|s| **s == 500).count(), 40);

    // Until both apps were scraped after the load, the total lags behind.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let total = read(&prometheus.url, "sum(demo_responses_total)").await;
        if total == Ok(Reading::Value(400.0)) {
            break;
        }
        assert!(Instant::now() < deadline, "not scraped in 30 s: {total:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let judged = |url: &str, queries: Vec<MetricQuery>| {
        PrometheusAnalysis::new(
            PrometheusRules {
                url: url.to_string(),
                queries,
            },
            AnalysisRules::default(),
        )
    };
    let limit = |query: String, max: f64| MetricQuery { query, max };

    // The new revision: 40 of 200 answers were 500s.
    let w = judged(&prometheus.url, vec![limit(error_share("v2"), 0.05)])
        .window()
        .await
        .unwrap();
    match w {
        WindowVerdict::Fail(why) => assert!(why.contains("= 0.2 is above 0.05"), "{why}"),
        other => panic!("v2: {other:?}"),
    }
    // The old revision, and the new one under a looser limit, pass.
    for (query, max) in [(error_share("v1"), 0.05), (error_share("v2"), 0.25)] {
        let w = judged(&prometheus.url, vec![limit(query.clone(), max)])
            .window()
            .await
            .unwrap();
        assert_eq!(w, WindowVerdict::Pass, "{query} <= {max}");
    }
    // Every query must pass: one failing among passing ones fails.
    let w = judged(
        &prometheus.url,
        vec![
            limit(error_share("v1"), 0.05),
            limit(error_share("v2"), 0.05),
        ],
    )
    .window()
    .await
    .unwrap();
    assert!(matches!(w, WindowVerdict::Fail(_)), "{w:?}");
    // Without `or vector(0)`, a revision with no 5xx at all has no data: the
    // answer says how to write it.
    let bare = "sum(demo_responses_total{version=\"v1\",status=~\"5..\"}) / sum(demo_responses_total{version=\"v1\"})";
    let w = judged(&prometheus.url, vec![limit(bare.into(), 0.05)])
        .window()
        .await
        .unwrap();
    match w {
        WindowVerdict::TooFew(why) => assert!(why.contains("or vector(0)"), "{why}"),
        other => panic!("bare: {other:?}"),
    }
    // A revision nobody has scraped yet: no data, too few to judge.
    let w = judged(&prometheus.url, vec![limit(error_share("v3"), 0.05)])
        .window()
        .await
        .unwrap();
    match w {
        WindowVerdict::TooFew(why) => assert!(why.contains("no data yet"), "{why}"),
        other => panic!("v3: {other:?}"),
    }
    // A query Prometheus cannot parse, and a server that is not there.
    let e = judged(&prometheus.url, vec![limit("sum(".into(), 1.0)])
        .window()
        .await
        .unwrap_err();
    assert!(e.contains("refused \"sum(\" (400)"), "{e}");
    let nobody = format!("http://127.0.0.1:{}", free_port());
    let e = judged(&nobody, vec![limit(error_share("v2"), 0.05)])
        .window()
        .await
        .unwrap_err();
    assert!(e.contains("cannot reach Prometheus at"), "{e}");
}
