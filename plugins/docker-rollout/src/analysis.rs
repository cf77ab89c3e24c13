//! The canary analysis of a live rollout, wired: rollout-analysis reads the
//! tool's own log from the proxy containers, and the Docker backend says
//! which revision each address in it serves.
//!
//! Without rules (`x-rollout.analysis`, `--max-error-rate`, `--max-p99`)
//! nothing is wired: no log is arranged and every step passes when its hold
//! ends, as before; the plan and the first notes say so.

use async_trait::async_trait;
use rollout_analysis::{Addresses, ProxyLogAnalysis};
use rollout_core::analysis::AnalysisRules;
use rollout_core::strategy::Analysis;
use rollout_core::{Plan, ServiceRef};
use rollout_docker::DockerBackend;
use rollout_nginx::proxy::Proxy;
use std::collections::BTreeMap;
use std::sync::Arc;

/// Where the proxy writes the tool's log for `upstream` (a folder every
/// nginx image has; the file is the tool's alone).
pub fn log_path(upstream: &str) -> String {
    format!("/var/log/nginx/rollout-{upstream}.log")
}

/// Addresses of the service's containers (and of the other colour's), by
/// the engine's account of their networks.
struct ContainerAddresses {
    backend: Arc<DockerBackend>,
    services: Vec<ServiceRef>,
}

#[async_trait]
impl Addresses for ContainerAddresses {
    async fn revisions(&self, _plan: &Plan) -> Result<BTreeMap<String, String>, String> {
        let mut all = BTreeMap::new();
        for s in &self.services {
            let found = self.backend.addresses(s).await.map_err(|e| e.to_string())?;
            all.extend(found);
        }
        Ok(all)
    }
}

/// The analysis of a canary of `services` (the rolled one first) behind
/// `proxies`, judged by `rules`.
pub fn proxy_log(
    proxies: Vec<Proxy>,
    upstream: &str,
    backend: Arc<DockerBackend>,
    services: Vec<ServiceRef>,
    rules: AnalysisRules,
) -> Arc<dyn Analysis> {
    let addresses = Arc::new(ContainerAddresses { backend, services });
    Arc::new(ProxyLogAnalysis::new(
        proxies,
        log_path(upstream),
        addresses,
        rules,
    ))
}
