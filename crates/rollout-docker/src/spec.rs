//! What it takes to create another container like an existing one.
//!
//! Rolling back launches the *old* revision, which the Compose file no longer
//! names, so Compose cannot create it. Before the last instance of a revision
//! is stopped, the backend saves its create-config (the `Config`,
//! `HostConfig` and network endpoints that `inspect` shows) and later creates
//! new containers from it, with the same Compose labels and config hash, so
//! that Compose sees them as members of the service.
//!
//! The saved spec never holds the environment: that stays in the `Env` of
//! the never-started container that keeps the spec (see
//! [`crate::backend`]), exactly as visible as the original container's was,
//! and is never printed.

use crate::labels;
use bollard::models::{
    ContainerConfig, ContainerCreateBody, ContainerInspectResponse, EndpointSettings, HostConfig,
    NetworkingConfig,
};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};

/// The create-config of a container, without its environment.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Spec {
    /// The image as Compose named it (`app:v1`).
    pub image_name: String,
    /// The image id it ran, which the spec pins.
    pub image_id: String,
    /// `Config` with `Env` taken out.
    pub config: ContainerConfig,
    /// `HostConfig` as created.
    pub host_config: HostConfig,
    /// The networks it was attached to, with their aliases.
    pub networks: BTreeMap<String, EndpointSettings>,
}

impl Spec {
    /// The spec of an inspected container, and its environment apart.
    pub fn from_inspect(c: &ContainerInspectResponse) -> Result<(Spec, Vec<String>), String> {
        let mut config = c.config.clone().ok_or("inspect shows no Config")?;
        let host_config = c.host_config.clone().ok_or("inspect shows no HostConfig")?;
        let env = config.env.take().unwrap_or_default();
        let short_id: String =
            c.id.as_deref()
                .unwrap_or_default()
                .chars()
                .take(12)
                .collect();
        let name = c
            .name
            .as_deref()
            .unwrap_or_default()
            .trim_start_matches('/');
        let networks = c
            .network_settings
            .as_ref()
            .and_then(|n| n.networks.clone())
            .unwrap_or_default()
            .into_iter()
            .map(|(net, ep)| (net, reusable_endpoint(ep, &short_id, name)))
            .collect();
        // Compose's hostname for a container defaults to its short id; a copy
        // gets its own.
        if config.hostname.as_deref() == Some(short_id.as_str()) {
            config.hostname = None;
        }
        let image_name = config.image.clone().unwrap_or_default();
        Ok((
            Spec {
                image_id: c.image.clone().unwrap_or_else(|| image_name.clone()),
                image_name,
                config,
                host_config,
                networks,
            },
            env,
        ))
    }

    /// Whether a container of this spec takes a port of its host: one its
    /// predecessor must have given back before it starts.
    pub fn publishes_ports(&self) -> bool {
        self.host_config.publish_all_ports == Some(true)
            || self.host_config.port_bindings.as_ref().is_some_and(|b| {
                b.values()
                    .flatten()
                    .flatten()
                    .any(|p| p.host_port.as_deref().is_some_and(|h| !h.is_empty()))
            })
    }

    /// The body that creates a copy named `name` with container number
    /// `number`, marked as launched by the tool ([`labels::LAUNCHED`]), attached at creation to its first network (API 1.41 takes
    /// one; the others are connected before start: see [`Spec::more_networks`]).
    /// `image` is the reference to create from (the name when it still
    /// points at the pinned id, else the id).
    pub fn create_body(&self, env: Vec<String>, number: u32, image: &str) -> ContainerCreateBody {
        let c = self.config.clone();
        let mut labels = c.labels.clone().unwrap_or_default();
        labels.insert(labels::CONTAINER_NUMBER.into(), number.to_string());
        labels.insert(labels::LAUNCHED.into(), "true".into());
        let mut host_config = self.host_config.clone();
        host_config.links = host_config.links.map(|links| {
            links
                .iter()
                .filter_map(|l| reusable_link(l))
                .collect::<Vec<_>>()
        });
        let first = self.primary_network();
        let endpoints_config = first.map(|(net, ep)| HashMap::from([(net.clone(), ep.clone())]));
        ContainerCreateBody {
            hostname: c.hostname,
            domainname: c.domainname,
            user: c.user,
            attach_stdin: Some(false),
            attach_stdout: Some(false),
            attach_stderr: Some(false),
            exposed_ports: c.exposed_ports,
            tty: c.tty,
            open_stdin: c.open_stdin,
            stdin_once: c.stdin_once,
            env: Some(env),
            cmd: c.cmd,
            healthcheck: c.healthcheck,
            args_escaped: c.args_escaped,
            image: Some(image.to_string()),
            volumes: c.volumes,
            working_dir: c.working_dir,
            entrypoint: c.entrypoint,
            network_disabled: c.network_disabled,
            on_build: None,
            labels: Some(labels),
            stop_signal: c.stop_signal,
            stop_timeout: c.stop_timeout,
            shell: c.shell,
            host_config: Some(host_config),
            networking_config: endpoints_config.map(|e| NetworkingConfig {
                endpoints_config: Some(e),
            }),
        }
    }

    /// The network named by the network mode (or the first by name).
    fn primary_network(&self) -> Option<(&String, &EndpointSettings)> {
        let mode = self.host_config.network_mode.as_deref().unwrap_or_default();
        self.networks
            .iter()
            .find(|(net, _)| net.as_str() == mode)
            .or_else(|| self.networks.iter().next())
    }

    /// The networks to connect after creation.
    pub fn more_networks(&self) -> Vec<(String, EndpointSettings)> {
        let first = self.primary_network().map(|(n, _)| n.clone());
        self.networks
            .iter()
            .filter(|(n, _)| Some(*n) != first.as_ref())
            .map(|(n, e)| (n.clone(), e.clone()))
            .collect()
    }
}

/// An endpoint as a new container can ask for it: the operator's aliases
/// and links, without what the engine assigned to the old one (ids,
/// addresses, its own name and short id as aliases).
fn reusable_endpoint(ep: EndpointSettings, short_id: &str, name: &str) -> EndpointSettings {
    EndpointSettings {
        ipam_config: ep.ipam_config,
        links: ep.links,
        aliases: ep.aliases.map(|a| {
            a.into_iter()
                .filter(|alias| alias != short_id && alias != name)
                .collect()
        }),
        driver_opts: ep.driver_opts,
        ..Default::default()
    }
}

/// Inspect shows links as `/target:/container/alias`; create takes
/// `target:alias`.
fn reusable_link(link: &str) -> Option<String> {
    let (target, alias) = link.split_once(':')?;
    let alias = alias.rsplit('/').next()?;
    Some(format!("{}:{alias}", target.trim_start_matches('/')))
}

/// The name Compose would give container `number` of `service`.
pub(crate) fn container_name(project: &str, service: &str, separator: char, number: u32) -> String {
    format!("{project}{separator}{service}{separator}{number}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use bollard::models::NetworkSettings;

    fn inspected() -> ContainerInspectResponse {
        ContainerInspectResponse {
            id: Some("0123456789abcdef0123".into()),
            name: Some("/shop_app_1".into()),
            image: Some("sha256:feed".into()),
            config: Some(ContainerConfig {
                hostname: Some("0123456789ab".into()),
                image: Some("app:v1".into()),
                env: Some(vec!["SECRET=hunter2".into()]),
                labels: Some(HashMap::from([
                    (labels::PROJECT.to_string(), "shop".to_string()),
                    (labels::CONTAINER_NUMBER.to_string(), "1".to_string()),
                ])),
                ..Default::default()
            }),
            host_config: Some(HostConfig {
                network_mode: Some("shop_default".into()),
                links: Some(vec!["/shop_db_1:/shop_app_1/db".into()]),
                ..Default::default()
            }),
            network_settings: Some(NetworkSettings {
                networks: Some(HashMap::from([
                    (
                        "shop_default".to_string(),
                        EndpointSettings {
                            aliases: Some(vec![
                                "app".into(),
                                "0123456789ab".into(),
                                "shop_app_1".into(),
                            ]),
                            ip_address: Some("172.18.0.5".into()),
                            mac_address: Some("02:42:ac:12:00:05".into()),
                            network_id: Some("n1".into()),
                            ..Default::default()
                        },
                    ),
                    (
                        "shop_back".to_string(),
                        EndpointSettings {
                            aliases: Some(vec!["app".into()]),
                            ..Default::default()
                        },
                    ),
                ])),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn a_spec_publishes_ports_only_with_a_host_port() {
        let (mut spec, _) = Spec::from_inspect(&inspected()).unwrap();
        assert!(!spec.publishes_ports());
        let binding = |host: Option<&str>| bollard::models::PortBinding {
            host_ip: None,
            host_port: host.map(str::to_string),
        };
        // A port the engine picks for the container alone is no host port.
        spec.host_config.port_bindings = Some(HashMap::from([(
            "80/tcp".to_string(),
            Some(vec![binding(Some(""))]),
        )]));
        assert!(!spec.publishes_ports());
        spec.host_config.port_bindings = Some(HashMap::from([(
            "80/tcp".to_string(),
            Some(vec![binding(Some("8000"))]),
        )]));
        assert!(spec.publishes_ports());
        spec.host_config.port_bindings = None;
        spec.host_config.publish_all_ports = Some(true);
        assert!(spec.publishes_ports());
    }

    #[test]
    fn the_spec_keeps_no_environment_and_no_engine_assigned_fields() {
        let (spec, env) = Spec::from_inspect(&inspected()).unwrap();
        assert_eq!(env, vec!["SECRET=hunter2".to_string()]);
        let json = serde_json::to_string(&spec).unwrap();
        assert!(!json.contains("hunter2"), "{json}");
        assert!(!json.contains("172.18.0.5"));
        assert!(!json.contains("02:42"));
        assert_eq!(spec.config.hostname, None);
        assert_eq!(spec.image_id, "sha256:feed");
        assert_eq!(
            spec.networks["shop_default"].aliases,
            Some(vec!["app".to_string()])
        );
    }

    #[test]
    fn a_copy_gets_its_number_its_env_and_one_network_at_create() {
        let (spec, env) = Spec::from_inspect(&inspected()).unwrap();
        let body = spec.create_body(env, 7, "app:v1");
        let labels = body.labels.unwrap();
        assert_eq!(labels[labels::CONTAINER_NUMBER], "7");
        assert_eq!(labels[labels::PROJECT], "shop");
        // The tool's mark: the copy is its own to remove once it exited.
        assert_eq!(labels[labels::LAUNCHED], "true");
        assert!(!spec
            .config
            .labels
            .as_ref()
            .unwrap()
            .contains_key(labels::LAUNCHED));
        assert_eq!(body.env.unwrap(), vec!["SECRET=hunter2".to_string()]);
        let endpoints = body.networking_config.unwrap().endpoints_config.unwrap();
        assert_eq!(endpoints.keys().collect::<Vec<_>>(), vec!["shop_default"]);
        assert_eq!(
            body.host_config.unwrap().links.unwrap(),
            vec!["shop_db_1:db".to_string()]
        );
        let more = spec.more_networks();
        assert_eq!(more.len(), 1);
        assert_eq!(more[0].0, "shop_back");
    }

    #[test]
    fn names_follow_the_compose_flavour() {
        assert_eq!(container_name("shop", "app", '_', 3), "shop_app_3");
        assert_eq!(container_name("shop", "app", '-', 3), "shop-app-3");
    }
}
