//! The engine's `die` and `health_status` events: health and failures are
//! seen when they happen, not polled.

use super::DockerBackend;
use crate::labels;
use bollard::models::EventMessage;
use bollard::query_parameters::EventsOptions;
use futures::{Stream, StreamExt};
use rollout_core::BackendError;
use std::collections::HashMap;
use tokio::time::Instant;

/// Which containers' events to ask the engine for.
pub(super) enum Scope {
    /// These, by id.
    Containers(Vec<String>),
    /// Every container of this Compose project.
    Project(String),
}

pub(super) enum Seen {
    Healthy,
    Unhealthy,
    Died,
}

pub(super) fn classify(event: &EventMessage) -> Option<Seen> {
    match event.action.as_deref()?.trim() {
        "die" => Some(Seen::Died),
        "health_status: healthy" => Some(Seen::Healthy),
        "health_status: unhealthy" => Some(Seen::Unhealthy),
        _ => None,
    }
}

impl DockerBackend {
    /// A stream of `die` and `health_status` events of `ids`, from `since`
    /// (engine time) on.
    pub(super) fn events(
        &self,
        scope: Scope,
        since: String,
    ) -> impl Stream<Item = Result<EventMessage, bollard::errors::Error>> + Unpin {
        let (key, values) = match scope {
            Scope::Containers(ids) => ("container".to_string(), ids),
            Scope::Project(project) => (
                "label".to_string(),
                vec![format!("{}={project}", labels::PROJECT)],
            ),
        };
        let filters = HashMap::from([
            ("type".to_string(), vec!["container".to_string()]),
            (key, values),
            (
                "event".to_string(),
                vec!["die".to_string(), "health_status".to_string()],
            ),
        ]);
        let options = EventsOptions {
            since: Some(since),
            until: None,
            filters: Some(filters),
        };
        Box::pin(self.engine.docker().events(Some(options)))
    }

    /// The next event of `events` before `deadline`; `None` once the
    /// deadline has passed. The stream ending means the engine is gone.
    pub(super) async fn next_event(
        &self,
        events: &mut (impl Stream<Item = Result<EventMessage, bollard::errors::Error>> + Unpin),
        deadline: Instant,
    ) -> Result<Option<EventMessage>, BackendError> {
        match tokio::time::timeout_at(deadline, events.next()).await {
            Err(_) => Ok(None),
            Ok(None) => Err(BackendError::Unreachable {
                endpoint: self.engine.endpoint().to_string(),
                reason: "the engine closed its event stream".into(),
            }),
            Ok(Some(Err(e))) => Err(self.engine.error(e)),
            Ok(Some(Ok(event))) => Ok(Some(event)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bollard::models::EventActor;

    #[test]
    fn events_are_read_as_docker_writes_them() {
        let event = |action: &str| EventMessage {
            action: Some(action.into()),
            actor: Some(EventActor::default()),
            ..Default::default()
        };
        assert!(matches!(
            classify(&event("health_status: healthy")),
            Some(Seen::Healthy)
        ));
        assert!(matches!(
            classify(&event("health_status: unhealthy")),
            Some(Seen::Unhealthy)
        ));
        assert!(matches!(classify(&event("die")), Some(Seen::Died)));
        assert!(classify(&event("exec_start: wget")).is_none());
    }
}
