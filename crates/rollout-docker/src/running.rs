//! The containers that run in a Compose project, with their service and
//! image: what the contract gate of the migrations reads to find the
//! consumers of the database (`docker rollout migrate contract`).

use crate::engine::Engine;
use crate::labels;
use rollout_core::BackendError;
use std::collections::HashMap;

/// A running container of a project.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Running {
    /// Its name.
    pub container: String,
    /// Its Compose service.
    pub service: String,
    /// The image reference it was created from.
    pub image: String,
    /// The image id it runs.
    pub image_id: String,
    /// Labelled as a one-off container (`docker compose run`).
    pub oneoff: bool,
    /// When it was created (seconds since the epoch).
    pub created: i64,
}

/// The running containers labelled with one of `projects` (one-off
/// containers included, marked).
pub async fn running(engine: &Engine, projects: &[&str]) -> Result<Vec<Running>, BackendError> {
    let mut found = Vec::new();
    for project in projects {
        let filters = HashMap::from([(
            "label".to_string(),
            vec![format!("{}={project}", labels::PROJECT)],
        )]);
        for c in engine.list_containers(filters, false).await? {
            let labels = c.labels.unwrap_or_default();
            found.push(Running {
                container: c
                    .names
                    .and_then(|n| n.into_iter().next())
                    .map(|n| n.trim_start_matches('/').to_string())
                    .unwrap_or_default(),
                service: labels.get(labels::SERVICE).cloned().unwrap_or_default(),
                image: c.image.unwrap_or_default(),
                image_id: c.image_id.unwrap_or_default(),
                oneoff: labels
                    .get(labels::ONEOFF)
                    .is_some_and(|v| v.eq_ignore_ascii_case("true")),
                created: c.created.unwrap_or_default(),
            });
        }
    }
    Ok(found)
}
