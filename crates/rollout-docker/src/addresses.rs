//! Which revision an address in nginx's log belongs to: rollout-analysis's
//! [`Addresses`] from the engine's account of the containers' networks.
//!
//! nginx resolves a `server` line naming a container to the container's
//! address on the project network and logs that address, never the name;
//! the engine knows both. A room of its own because it is the one bridge
//! between the backend and the analysis.

use crate::DockerBackend;
use async_trait::async_trait;
use rollout_analysis::Addresses;
use rollout_core::{Plan, ServiceRef};
use std::collections::BTreeMap;
use std::sync::Arc;

/// The addresses of the containers of some services (a service, or both
/// colours of a pair), each with the revision it runs.
pub struct ContainerAddresses {
    backend: Arc<DockerBackend>,
    services: Vec<ServiceRef>,
}

impl ContainerAddresses {
    /// The addresses of `services`' containers, as `backend` sees them.
    pub fn new(backend: Arc<DockerBackend>, services: Vec<ServiceRef>) -> Self {
        Self { backend, services }
    }
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

/// The addresses, IPv4 and global IPv6, of a container's endpoints on its
/// networks (the empty ones the engine reports for a family left out).
pub(crate) fn endpoint_ips<'a>(
    endpoints: impl IntoIterator<Item = &'a bollard::models::EndpointSettings>,
) -> impl Iterator<Item = &'a str> {
    endpoints
        .into_iter()
        .flat_map(|e| [&e.ip_address, &e.global_ipv6_address])
        .flatten()
        .map(String::as_str)
        .filter(|ip| !ip.is_empty())
}
