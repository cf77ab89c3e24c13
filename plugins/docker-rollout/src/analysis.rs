//! The analysis of a live rollout (canary, rolling or blue-green), wired:
//! rollout-analysis reads the tool's own log from the proxy containers, and
//! rollout-docker says which revision each address in it serves.
//!
//! Prometheus queries (`x-rollout.analysis.prometheus`, `--prometheus-query`)
//! are asked of the server the operator names, beside the log or alone
//! (behind HAProxy, which writes no log the tool reads, they are the only
//! analysis).
//!
//! Without rules (`x-rollout.analysis`, `--max-error-rate`, `--max-p99`,
//! `--prometheus-query`) nothing is wired: no log is arranged and every
//! step passes when its hold ends, as before; the plan and the first notes
//! say so.

use rollout_analysis::{AllOf, PrometheusAnalysis, ProxyLogAnalysis};
use rollout_core::analysis::AnalysisRules;
use rollout_core::strategy::Analysis;
use rollout_core::ServiceRef;
use rollout_docker::{ContainerAddresses, DockerBackend};
use rollout_nginx::proxy::Proxy;
use std::sync::Arc;

/// Where the proxy writes the tool's log for `upstream` (a folder every
/// nginx image has; the file is the tool's alone).
pub fn log_path(upstream: &str) -> String {
    format!("/var/log/nginx/rollout-{upstream}.log")
}

/// The analysis of a canary of `services` (the rolled one, and the other
/// colour) behind `proxies`, judged by `rules`.
pub fn proxy_log(
    proxies: Vec<Proxy>,
    upstream: &str,
    backend: Arc<DockerBackend>,
    services: Vec<ServiceRef>,
    rules: AnalysisRules,
) -> Arc<dyn Analysis> {
    let addresses = Arc::new(ContainerAddresses::new(backend, services));
    Arc::new(ProxyLogAnalysis::new(
        proxies,
        log_path(upstream),
        addresses,
        rules,
    ))
}

/// The analysis `rules` ask for, with `log` (the proxy log's, built when
/// the rules have a log threshold): Prometheus's queries beside it, or
/// alone; `None` when nothing judges.
pub fn with_prometheus(
    rules: &AnalysisRules,
    log: Option<Arc<dyn Analysis>>,
) -> Option<Arc<dyn Analysis>> {
    let prometheus = rules.prometheus.clone().map(|server| {
        Arc::new(PrometheusAnalysis::new(server, rules.clone())) as Arc<dyn Analysis>
    });
    match (log, prometheus) {
        (Some(log), Some(prometheus)) => Some(Arc::new(AllOf(vec![log, prometheus]))),
        (one, None) | (None, one) => one,
    }
}
