//! The checks every swarm run makes before it changes anything: the engine is a manager, the
//! stack and its services exist, a service nginx routes to is in `dnsrr` mode and replicated,
//! it shares a network with nginx, and every nginx task runs, on a ready node. Each refusal is
//! bad input naming what is missing (exit 2), or unreachable (exit 6).

use crate::api::{NodeInfo, SwarmApi};
use crate::stack;
use crate::standby::{SwarmFail, STANDBY_SUFFIX};
use crate::update::{self, ServiceSpecRollbackConfig, ServiceSpecUpdateConfig};
use bollard::models::{EndpointSpecModeEnum, Service, ServiceSpec};
use rollout_core::config::{RollbackConfig, UpdateConfig};
use std::collections::BTreeSet;

pub(crate) fn spec_of(s: &Service) -> ServiceSpec {
    s.spec.clone().unwrap_or_default()
}

pub(crate) fn image_of(spec: &ServiceSpec) -> String {
    spec.task_template
        .as_ref()
        .and_then(|t| t.container_spec.as_ref())
        .and_then(|c| c.image.clone())
        .unwrap_or_default()
}

pub(crate) fn networks_of(spec: &ServiceSpec) -> Vec<String> {
    spec.task_template
        .as_ref()
        .and_then(|t| t.networks.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|n| n.target.clone())
        .collect()
}

/// The version a service was read at (an update must name it).
pub(crate) fn version_of(s: &Service) -> u64 {
    s.version.as_ref().and_then(|v| v.index).unwrap_or(0)
}

/// The tasks a replicated service's spec wants.
pub(crate) fn wanted_replicas(s: &Service) -> Option<usize> {
    spec_of(s)
        .mode
        .and_then(|m| m.replicated)
        .map(|r| usize::try_from(r.replicas.unwrap_or(1)).unwrap_or(0))
}

/// A stack's services as one manager sees them.
pub(crate) struct StackView {
    stack: String,
    services: Vec<Service>,
}

impl StackView {
    /// The services of `stack`; refused when the engine is no manager or no service carries
    /// the stack's label.
    pub(crate) async fn read(api: &SwarmApi, stack: &str) -> Result<StackView, SwarmFail> {
        if !api.is_manager().await? {
            return Err(SwarmFail::bad_input(format!(
                "--stack {stack}: the engine at {} is not a manager of an active swarm\nhint: run the rollout against a manager (docker context, DOCKER_HOST)",
                api.engine().endpoint()
            )));
        }
        let services = api.stack_services(stack).await?;
        if services.is_empty() {
            return Err(SwarmFail::bad_input(format!(
                "no stack {stack}: no service carries the label {}\nhint: docker stack ls",
                stack::label_filter(stack)
            )));
        }
        Ok(StackView {
            stack: stack.to_string(),
            services,
        })
    }

    fn get(&self, compose: &str) -> Option<Service> {
        let wanted = stack::service_name(&self.stack, compose);
        self.services
            .iter()
            .find(|s| spec_of(s).name.as_deref() == Some(wanted.as_str()))
            .cloned()
    }

    /// The stack's services, as a refusal lists them (the tool's standbys left out).
    fn names(&self) -> String {
        self.services
            .iter()
            .filter_map(|s| spec_of(s).name)
            .filter(|n| !n.ends_with(STANDBY_SUFFIX))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The stack's service `compose`.
    pub(crate) fn service(&self, compose: &str) -> Result<Service, SwarmFail> {
        self.get(compose).ok_or_else(|| {
            SwarmFail::bad_input(format!(
                "stack {} has no service {compose} (its services: {})",
                self.stack,
                self.names()
            ))
        })
    }

    /// The stack's nginx service `proxy`, in front of `front_of`.
    pub(crate) fn proxy(&self, proxy: &str, front_of: &str) -> Result<Service, SwarmFail> {
        self.get(proxy).ok_or_else(|| {
            SwarmFail::bad_input(format!(
                "stack {} has no nginx service {proxy} in front of {front_of} (its services: {})\nhint: add an nginx service to the stack, or name it with x-rollout.proxy",
                self.stack,
                self.names()
            ))
        })
    }
}

/// The tasks `service` (the Compose service `compose`) wants, once it is checked to be reached
/// task by task (`dnsrr`) and replicated.
pub(crate) fn dnsrr_replicas(service: &Service, compose: &str) -> Result<usize, SwarmFail> {
    let spec = spec_of(service);
    let name = spec.name.clone().unwrap_or_default();
    let mode = spec.endpoint_spec.as_ref().and_then(|e| e.mode);
    if mode != Some(EndpointSpecModeEnum::DNSRR) {
        return Err(SwarmFail::bad_input(format!(
            "service {name} uses the routing mesh (endpoint_mode: vip): nginx could not reach, nor drain, its tasks one by one\nhint: set deploy.endpoint_mode: dnsrr on {compose} and deploy the stack again"
        )));
    }
    wanted_replicas(service).ok_or_else(|| {
        SwarmFail::bad_input(format!(
            "service {name} is not replicated (global mode is not supported yet)"
        ))
    })
}

/// The network (its id) on which `proxy` reaches the tasks of `service`.
pub(crate) fn shared_network(service: &Service, proxy: &Service) -> Result<String, SwarmFail> {
    let shared: BTreeSet<String> = networks_of(&spec_of(proxy)).into_iter().collect();
    networks_of(&spec_of(service))
        .into_iter()
        .find(|n| shared.contains(n))
        .ok_or_else(|| {
            SwarmFail::bad_input(format!(
                "services {} and {} share no network: nginx cannot reach the tasks",
                spec_of(service).name.unwrap_or_default(),
                spec_of(proxy).name.unwrap_or_default()
            ))
        })
}

/// One task of the proxy service: the router edits and checks its config through its node's
/// engine (this manager's, or one the operator names for its node).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyTask {
    /// Its container's id on its node.
    pub container: String,
    /// Its node.
    pub node: NodeInfo,
    /// Whether that node is the manager the run talks to.
    pub here: bool,
}

/// The proxy service's tasks, every one of which must run on a ready node.
pub(crate) async fn proxy_tasks(
    api: &SwarmApi,
    proxy_name: &str,
) -> Result<Vec<ProxyTask>, SwarmFail> {
    let tasks = api.tasks(proxy_name).await?;
    if tasks.is_empty() {
        return Err(SwarmFail::bad_input(format!(
            "{proxy_name}: no task wanted running: nginx must run before its traffic is moved"
        )));
    }
    let here = api.node_id().await?;
    let nodes = api.nodes().await?;
    let mut found = Vec::new();
    for t in tasks {
        let node = nodes.iter().find(|n| n.id == t.node).cloned();
        let Some(node) = node.filter(|_| t.serving() && !t.container.is_empty()) else {
            return Err(SwarmFail::bad_input(format!(
                "{proxy_name}: task {} is {} on node {}{}: every nginx task must run, on a ready node, before its traffic is moved\nhint: docker service ps {proxy_name}",
                t.id,
                t.state,
                t.node_name,
                if t.node_ready { "" } else { " (not ready)" }
            )));
        };
        found.push(ProxyTask {
            here: node.id == here,
            container: t.container,
            node,
        });
    }
    Ok(found)
}

/// Swarm's `UpdateConfig` and `RollbackConfig` for the file's; what Swarm cannot express is
/// bad input naming the field.
pub(crate) fn swarm_configs(
    update: &UpdateConfig,
    rollback: &RollbackConfig,
) -> Result<(ServiceSpecUpdateConfig, ServiceSpecRollbackConfig), SwarmFail> {
    let bad = |e: update::SpecError| SwarmFail::bad_input(e.to_string());
    Ok((
        update::to_swarm_update(update).map_err(bad)?,
        update::to_swarm_rollback(rollback).map_err(bad)?,
    ))
}
