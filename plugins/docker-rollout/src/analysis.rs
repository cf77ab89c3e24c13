//! The canary analysis of a live rollout, wired: rollout-analysis reads the
//! tool's own log from the proxy containers, and rollout-docker says which
//! revision each address in it serves.
//!
//! Without rules (`x-rollout.analysis`, `--max-error-rate`, `--max-p99`)
//! nothing is wired: no log is arranged and every step passes when its hold
//! ends, as before; the plan and the first notes say so.

use rollout_analysis::ProxyLogAnalysis;
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
