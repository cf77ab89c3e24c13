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
