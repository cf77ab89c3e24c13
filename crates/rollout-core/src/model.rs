//! What a rollout works on: services, revisions and instances.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A service of a project, as the operator names it (`app`, `green`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ServiceRef {
    /// The Compose project (`com.docker.compose.project`).
    pub project: String,
    /// The service name (`com.docker.compose.service`).
    pub service: String,
}

impl ServiceRef {
    /// A service of a project.
    pub fn new(project: impl Into<String>, service: impl Into<String>) -> Self {
        Self {
            project: project.into(),
            service: service.into(),
        }
    }
}

impl fmt::Display for ServiceRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.project, self.service)
    }
}

/// One version of a service's specification: what its instances run.
///
/// Two instances run the same revision when their `id`s are equal. The id is
/// whatever the backend uses to tell specifications apart (for Compose, the
/// config hash that `docker compose config --hash` prints together with the
/// image id the service's image reference resolves to, since a new image
/// under the same tag is a new revision); `image` and `image_id` are kept
/// for people reading progress.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Revision {
    /// Identity of the specification.
    pub id: String,
    /// The image the specification runs, for display (`app:latest`).
    pub image: String,
    /// The image id that `image` resolved to when the revision was formed
    /// (`sha256:...`), when the backend knows it; for display.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_id: Option<String>,
}

impl Revision {
    /// A revision with this id and image.
    pub fn new(id: impl Into<String>, image: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            image: image.into(),
            image_id: None,
        }
    }

    /// The same revision, with the image id its image resolved to.
    pub fn with_image_id(mut self, image_id: impl Into<String>) -> Self {
        self.image_id = Some(image_id.into());
        self
    }
}

impl fmt::Display for Revision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let short: String = self.id.chars().take(12).collect();
        write!(f, "{} ({short})", self.image)
    }
}

/// The backend's handle of an instance (a container id, a mock number).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct InstanceId(pub String);

impl fmt::Display for InstanceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for InstanceId {
    fn from(s: &str) -> Self {
        Self(s.to_string())
    }
}

/// Whether the instance's process runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum InstanceState {
    /// Created, not started yet.
    Created,
    /// Its process runs.
    Running,
    /// Its process ended (stopped, crashed or exited by itself).
    Exited,
}

/// What the instance's health check says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Health {
    /// The check has not passed yet.
    Starting,
    /// The last checks passed.
    Healthy,
    /// The checks failed.
    Unhealthy,
    /// The instance has no way to tell its health.
    None,
}

/// An instance of a service as the backend sees it now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Instance {
    /// The backend's handle.
    pub id: InstanceId,
    /// A name people and DNS know it by (a container name such as
    /// `shop-app-3`). The traffic router routes to `host` and a port of its own.
    pub host: String,
    /// The service it belongs to.
    pub service: ServiceRef,
    /// The revision's id it runs.
    pub revision: String,
    /// Its process state.
    pub state: InstanceState,
    /// Its health.
    pub health: Health,
}

impl Instance {
    /// Running and healthy: may receive traffic.
    pub fn is_ready(&self) -> bool {
        self.state == InstanceState::Running && self.health == Health::Healthy
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_image_id_is_an_added_field_old_json_still_reads() {
        // What schema 1 wrote before revisions carried an image id.
        let old: Revision = serde_json::from_str(r#"{"id":"3f2a","image":"app:v1"}"#).unwrap();
        assert_eq!(old, Revision::new("3f2a", "app:v1"));
        assert_eq!(
            serde_json::to_string(&old).unwrap(),
            r#"{"id":"3f2a","image":"app:v1"}"#
        );
        let new = Revision::new("3f2a@sha256:cd34", "app:latest").with_image_id("sha256:cd34");
        let json = serde_json::to_string(&new).unwrap();
        assert_eq!(
            json,
            r#"{"id":"3f2a@sha256:cd34","image":"app:latest","image_id":"sha256:cd34"}"#
        );
        assert_eq!(serde_json::from_str::<Revision>(&json).unwrap(), new);
    }
}
