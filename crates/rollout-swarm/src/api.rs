//! What the Swarm backend asks a manager, through rollout-docker's [`Engine`] (so the same
//! `DOCKER_HOST`, contexts and TLS as on one engine).
//!
//! bollard's `Task` model has no `NetworksAttachments`, where the engine says each task's
//! overlay address, so tasks are read as JSON ([`SwarmApi::tasks`]): the request goes through
//! the engine's own connection, its path set by a request modifier on a clone of the client.

use bollard::models::{Service, ServiceSpec};
use bollard::query_parameters::{ListServicesOptions, UpdateServiceOptionsBuilder};
use futures::StreamExt;
use rollout_docker::Engine;
use serde_json::Value;
use std::collections::HashMap;

/// The engine failed, or said something the backend cannot use.
#[derive(Debug, thiserror::Error)]
#[error("{what}: {reason}")]
pub struct ApiError {
    /// What was asked (`list the services of stack shop`).
    pub what: String,
    /// The engine's words.
    pub reason: String,
}

fn api_error(what: impl Into<String>, e: impl std::fmt::Display) -> ApiError {
    ApiError {
        what: what.into(),
        reason: e.to_string(),
    }
}

/// One task as the backend needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskInfo {
    /// The task's id.
    pub id: String,
    /// Its node.
    pub node: String,
    /// Its state (`running`, `starting`, `failed`, ...).
    pub state: String,
    /// The state Swarm wants for it (`running`, `shutdown`).
    pub desired: String,
    /// The image of its spec (as Swarm pinned it).
    pub image: String,
    /// Its address on each network, by network id, without the prefix length.
    pub addresses: HashMap<String, String>,
    /// Whether its node is `ready`. A node cut off from the managers keeps its tasks'
    /// last reported state (`running`) until Swarm gives up on them, so only this tells that
    /// they cannot be reached.
    pub node_ready: bool,
    /// Its node's hostname (its id when the node is not known), to name it to people.
    pub node_name: String,
    /// Its slot in a replicated service (0 when it has none).
    pub slot: u64,
    /// Its container's id on its node (empty until it has one).
    pub container: String,
}

/// One node as the backend needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeInfo {
    /// The node's id.
    pub id: String,
    /// Its hostname.
    pub hostname: String,
    /// Its address as the managers see it.
    pub addr: String,
    /// Whether Swarm says it is `ready` (not `down`, `disconnected` or `unknown`).
    pub ready: bool,
}

impl NodeInfo {
    /// How people are told of it: its hostname and address (nodes of one machine share a
    /// hostname), or its id when Swarm knows neither.
    pub fn name(&self) -> String {
        match (self.hostname.is_empty(), self.addr.is_empty()) {
            (false, false) => format!("{} at {}", self.hostname, self.addr),
            (false, true) => self.hostname.clone(),
            (true, false) => format!("{} at {}", self.id, self.addr),
            (true, true) => self.id.clone(),
        }
    }

    fn from_json(v: &Value) -> Option<NodeInfo> {
        let s = |v: &Value| v.as_str().unwrap_or_default().to_string();
        Some(NodeInfo {
            id: v["ID"].as_str()?.to_string(),
            hostname: s(&v["Description"]["Hostname"]),
            addr: s(&v["Status"]["Addr"]),
            ready: v["Status"]["State"].as_str() == Some("ready"),
        })
    }
}

/// Task states after which a task's container no longer runs.
const TERMINAL: &[&str] = &[
    "complete", "shutdown", "failed", "rejected", "remove", "orphaned",
];

impl TaskInfo {
    /// Whether its spec runs `image` (as written, or pinned to a digest by Swarm).
    pub fn image_is(&self, image: &str) -> bool {
        self.image == image
            || self
                .image
                .strip_prefix(image)
                .is_some_and(|rest| rest.starts_with('@'))
    }

    /// Whether its last state is an end (its container no longer runs).
    pub fn ended(&self) -> bool {
        TERMINAL.contains(&self.state.as_str())
    }

    /// Whether it runs (and, with a health check, is healthy: Swarm reports `running` only
    /// then), Swarm wants it to, and its node is ready (a task on a node cut off cannot be
    /// reached, whatever its last state).
    pub fn serving(&self) -> bool {
        self.state == "running" && self.desired == "running" && self.node_ready
    }

    fn from_json(v: &Value) -> Option<TaskInfo> {
        let s = |v: &Value| v.as_str().unwrap_or_default().to_string();
        let mut addresses = HashMap::new();
        for a in v["NetworksAttachments"].as_array().into_iter().flatten() {
            let network = s(&a["Network"]["ID"]);
            if let Some(addr) = a["Addresses"].as_array().and_then(|x| x.first()) {
                let addr = s(addr);
                let ip = addr.split('/').next().unwrap_or_default().to_string();
                if !ip.is_empty() {
                    addresses.insert(network, ip);
                }
            }
        }
        Some(TaskInfo {
            id: v["ID"].as_str()?.to_string(),
            node: s(&v["NodeID"]),
            state: s(&v["Status"]["State"]),
            desired: s(&v["DesiredState"]),
            image: s(&v["Spec"]["ContainerSpec"]["Image"]),
            addresses,
            node_ready: true,
            node_name: s(&v["NodeID"]),
            slot: v["Slot"].as_u64().unwrap_or(0),
            container: s(&v["Status"]["ContainerStatus"]["ContainerID"]),
        })
    }
}

/// Of every task of a service ([`SwarmApi::all_tasks`]), those Swarm wants running: what
/// [`SwarmApi::tasks`] lists, without asking the engine again.
pub fn wanted(all: &[TaskInfo]) -> Vec<TaskInfo> {
    all.iter()
        .filter(|t| t.desired == "running")
        .cloned()
        .collect()
}

/// Of every task of a service, how many Swarm no longer wants but that have not stopped yet,
/// on ready nodes: what [`SwarmApi::lingering_tasks`] counts, without asking the engine again.
pub fn lingering(all: &[TaskInfo]) -> usize {
    all.iter()
        .filter(|t| t.node_ready && t.desired != "running" && !t.ended())
        .count()
}

/// Percent-encodes a query value (everything but unreserved characters).
fn encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A manager of the swarm.
#[derive(Debug, Clone)]
pub struct SwarmApi {
    engine: Engine,
}

/// The placeholder path a raw request is built on and then rewritten from.
const RAW_PLACEHOLDER: &str = "/containers/rollout-raw-request/export";

impl SwarmApi {
    /// The manager `engine` is connected to.
    pub fn new(engine: Engine) -> Self {
        Self { engine }
    }

    /// The engine's connection.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// `GET path_and_query` as JSON, through the engine's own connection.
    async fn get_json(&self, path_and_query: &str, what: &str) -> Result<Value, ApiError> {
        let target = path_and_query.to_string();
        let docker = self
            .engine
            .docker()
            .clone()
            .with_request_modifier(move |mut req| {
                let uri = req.uri().to_string();
                if let Some(i) = uri.find(RAW_PLACEHOLDER) {
                    if let Ok(new) = format!("{}{}", &uri[..i], target).parse() {
                        *req.uri_mut() = new;
                    }
                }
                req
            });
        let mut stream = docker.export_container("rollout-raw-request");
        let mut body = Vec::new();
        while let Some(chunk) = stream.next().await {
            body.extend_from_slice(&chunk.map_err(|e| api_error(what, e))?);
        }
        serde_json::from_slice(&body).map_err(|e| api_error(what, e))
    }

    /// The engine's own view of its swarm.
    async fn swarm_info(&self) -> Result<bollard::models::SwarmInfo, ApiError> {
        let info = self
            .engine
            .docker()
            .info()
            .await
            .map_err(|e| api_error("read the engine's info", e))?;
        Ok(info.swarm.unwrap_or_default())
    }

    /// Whether the engine is a manager of an active swarm.
    pub async fn is_manager(&self) -> Result<bool, ApiError> {
        Ok(self.swarm_info().await?.control_available == Some(true))
    }

    /// The node id of the engine this talks to (empty when it is in no swarm).
    pub async fn node_id(&self) -> Result<String, ApiError> {
        Ok(self.swarm_info().await?.node_id.unwrap_or_default())
    }

    /// The services of `stack` (by its label).
    pub async fn stack_services(&self, stack: &str) -> Result<Vec<Service>, ApiError> {
        let options = ListServicesOptions {
            filters: Some(HashMap::from([(
                "label".to_string(),
                vec![crate::stack::label_filter(stack)],
            )])),
            ..Default::default()
        };
        self.engine
            .docker()
            .list_services(Some(options))
            .await
            .map_err(|e| api_error(format!("list the services of stack {stack}"), e))
    }

    /// The service `name`, `None` when there is none.
    pub async fn service(&self, name: &str) -> Result<Option<Service>, ApiError> {
        match self.engine.docker().inspect_service(name, None).await {
            Ok(s) => Ok(Some(s)),
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => Ok(None),
            Err(e) => Err(api_error(format!("inspect service {name}"), e)),
        }
    }

    /// The tasks of service `name` that Swarm wants running, with their addresses.
    pub async fn tasks(&self, name: &str) -> Result<Vec<TaskInfo>, ApiError> {
        self.tasks_where(
            serde_json::json!({ "service": [name], "desired-state": ["running"] }),
            name,
        )
        .await
    }

    /// Every task of service `name` Swarm still keeps, whatever its desired state.
    pub async fn all_tasks(&self, name: &str) -> Result<Vec<TaskInfo>, ApiError> {
        self.tasks_where(serde_json::json!({ "service": [name] }), name)
            .await
    }

    /// How many tasks of service `name` Swarm no longer wants but that have not stopped yet,
    /// on ready nodes (a task on a node cut off cannot be seen to stop, nor reached).
    pub async fn lingering_tasks(&self, name: &str) -> Result<usize, ApiError> {
        Ok(lingering(&self.all_tasks(name).await?))
    }

    /// The swarm's nodes.
    pub async fn nodes(&self) -> Result<Vec<NodeInfo>, ApiError> {
        let what = "list the swarm's nodes";
        let v = self.get_json("/nodes", what).await?;
        let list = v
            .as_array()
            .ok_or_else(|| api_error(what, "the engine did not answer a list"))?;
        Ok(list.iter().filter_map(NodeInfo::from_json).collect())
    }

    async fn tasks_where(&self, filters: Value, name: &str) -> Result<Vec<TaskInfo>, ApiError> {
        let path = format!("/tasks?filters={}", encode(&filters.to_string()));
        let what = format!("list the tasks of service {name}");
        let v = self.get_json(&path, &what).await?;
        let list = v
            .as_array()
            .ok_or_else(|| api_error(&what, "the engine did not answer a list"))?;
        let mut tasks: Vec<TaskInfo> = list.iter().filter_map(TaskInfo::from_json).collect();
        // Read after the tasks: a node that went down in between is seen down already.
        let nodes = self.nodes().await?;
        for t in &mut tasks {
            match nodes.iter().find(|n| n.id == t.node) {
                Some(n) => {
                    t.node_ready = n.ready;
                    t.node_name = n.name();
                }
                // Not yet placed: no node to judge (it does not run anyway).
                None => t.node_ready = t.node.is_empty(),
            }
        }
        Ok(tasks)
    }

    /// Creates a service; its id.
    pub async fn create(&self, spec: ServiceSpec) -> Result<String, ApiError> {
        let name = spec.name.clone().unwrap_or_default();
        let created = self
            .engine
            .docker()
            .create_service(spec, None)
            .await
            .map_err(|e| api_error(format!("create service {name}"), e))?;
        Ok(created.id.unwrap_or(name))
    }

    /// Updates service `name` at `version` to `spec` (Swarm's native update).
    pub async fn update(
        &self,
        name: &str,
        version: u64,
        spec: ServiceSpec,
    ) -> Result<(), ApiError> {
        let version = i32::try_from(version)
            .map_err(|_| api_error(format!("update service {name}"), "version too large"))?;
        let options = UpdateServiceOptionsBuilder::new().version(version).build();
        let answer = self
            .engine
            .docker()
            .update_service(name, spec, options, None)
            .await
            .map_err(|e| api_error(format!("update service {name}"), e))?;
        for warning in answer.warnings.unwrap_or_default() {
            eprintln!("warning: {name}: {warning}");
        }
        Ok(())
    }

    /// Removes service `name`; one already gone is not an error.
    pub async fn remove(&self, name: &str) -> Result<(), ApiError> {
        match self.engine.docker().delete_service(name).await {
            Ok(()) => Ok(()),
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => Ok(()),
            Err(e) => Err(api_error(format!("remove service {name}"), e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tasks_address_is_read_from_its_attachments() {
        let v = serde_json::json!({
            "ID": "t1", "NodeID": "n1", "DesiredState": "running",
            "Status": {"State": "running"},
            "Spec": {"ContainerSpec": {"Image": "app:v1@sha256:ab"}},
            "NetworksAttachments": [
                {"Network": {"ID": "ingress"}, "Addresses": ["10.0.0.3/24"]},
                {"Network": {"ID": "front"}, "Addresses": ["10.0.1.5/24"]}
            ]
        });
        let t = TaskInfo::from_json(&v).unwrap();
        assert_eq!(t.addresses["front"], "10.0.1.5");
        assert_eq!(t.addresses["ingress"], "10.0.0.3");
        assert!(t.serving());
        assert_eq!(t.image, "app:v1@sha256:ab");
        let cut_off = TaskInfo {
            node_ready: false,
            ..t
        };
        assert!(!cut_off.serving(), "a task on a node that is not ready");
    }

    #[test]
    fn a_node_is_ready_only_when_swarm_says_so() {
        let node = |state: &str| {
            serde_json::json!({
                "ID": "n1", "Description": {"Hostname": "box"},
                "Status": {"State": state, "Addr": "10.0.0.2"}
            })
        };
        let ready = NodeInfo::from_json(&node("ready")).unwrap();
        assert!(ready.ready);
        assert_eq!(ready.name(), "box at 10.0.0.2");
        for state in ["down", "disconnected", "unknown"] {
            assert!(!NodeInfo::from_json(&node(state)).unwrap().ready, "{state}");
        }
    }

    #[test]
    fn one_list_answers_which_tasks_are_wanted_and_which_linger() {
        let task = |id: &str, state: &str, desired: &str, node_ready: bool| {
            let v = serde_json::json!({
                "ID": id, "NodeID": "n1", "DesiredState": desired,
                "Status": {"State": state},
                "Spec": {"ContainerSpec": {"Image": "app:v2"}}
            });
            TaskInfo {
                node_ready,
                ..TaskInfo::from_json(&v).unwrap()
            }
        };
        let all = [
            task("new", "running", "running", true),
            task("starting", "starting", "running", true),
            // Replaced: told to stop, not stopped yet.
            task("old", "running", "shutdown", true),
            task("gone", "shutdown", "shutdown", true),
            // On a node cut off: it cannot be seen to stop.
            task("away", "running", "shutdown", false),
        ];
        let ids: Vec<String> = wanted(&all).into_iter().map(|t| t.id).collect();
        assert_eq!(ids, ["new", "starting"]);
        assert_eq!(lingering(&all), 1, "only the replaced task on a ready node");
        assert_eq!(lingering(&all[..2]), 0);
    }

    #[test]
    fn filters_are_percent_encoded() {
        assert_eq!(
            encode(r#"{"a":["b c"]}"#),
            "%7B%22a%22%3A%5B%22b%20c%22%5D%7D"
        );
    }
}
