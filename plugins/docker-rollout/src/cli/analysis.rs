//! The analysis flags (`--max-error-rate` and the rest, `--prometheus`,
//! `--prometheus-query`): each wins over its field of `x-rollout.analysis`.

use super::{positive_duration, word};
use clap::Args;
use rollout_compose::Overrides;
use rollout_core::analysis::{Inconclusive, LatencyLimit, MetricQuery};
use std::time::Duration;

/// How a canary's steps and a rolling update's monitor windows are judged.
#[derive(Debug, Args)]
#[command(next_help_heading = "Analysis (canary steps, rolling monitor windows)")]
pub(super) struct AnalysisFlags {
    /// the highest error rate of the new revision (5% or 0.05).
    #[arg(long, value_name = "RATE", value_parser = rate)]
    max_error_rate: Option<f64>,
    /// the highest p99 latency, absolute (500ms) or relative to the old revision (1.5x).
    #[arg(long, value_name = "LIMIT", value_parser = latency)]
    max_p99: Option<LatencyLimit>,
    /// requests to the new revision a verdict needs (default 20).
    #[arg(long, value_name = "N")]
    min_requests: Option<u64>,
    /// what a window with fewer requests does (default hold).
    #[arg(long, value_parser = word::<Inconclusive>())]
    inconclusive: Option<Inconclusive>,
    /// failing windows in a row that abort the canary (default 1).
    #[arg(long, value_name = "N")]
    failing_windows: Option<u32>,
    /// the sliding window judged (default 30s).
    #[arg(long, value_name = "DURATION", value_parser = positive_duration)]
    analysis_window: Option<Duration>,
    /// the Prometheus server --prometheus-query asks (http://HOST:PORT).
    #[arg(long, value_name = "URL", value_parser = rollout_core::analysis::parse_prometheus_url)]
    prometheus: Option<String>,
    /// a PromQL query and the highest value that passes, 'QUERY <= MAX' (repeatable; all must pass).
    #[arg(long = "prometheus-query", value_name = "QUERY <= MAX", value_parser = metric_query)]
    prometheus_queries: Vec<MetricQuery>,
}

impl AnalysisFlags {
    /// Puts the flags given into `o`.
    pub(super) fn apply(self, o: &mut Overrides) {
        o.max_error_rate = self.max_error_rate;
        o.max_p99 = self.max_p99;
        o.min_requests = self.min_requests;
        o.inconclusive = self.inconclusive;
        o.failing_windows = self.failing_windows;
        o.analysis_window = self.analysis_window;
        o.prometheus_url = self.prometheus;
        o.prometheus_queries = self.prometheus_queries;
    }
}

fn metric_query(s: &str) -> Result<MetricQuery, String> {
    s.parse()
}

fn rate(s: &str) -> Result<f64, String> {
    rollout_core::analysis::parse_rate(s)
}

fn latency(s: &str) -> Result<LatencyLimit, String> {
    s.parse()
}
