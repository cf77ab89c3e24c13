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
            let labels = c.labels.clone().unwrap_or_default();
            let image = created_from(engine, &c).await?;
            found.push(Running {
                container: c
                    .names
                    .and_then(|n| n.into_iter().next())
                    .map(|n| n.trim_start_matches('/').to_string())
                    .unwrap_or_default(),
                service: labels.get(labels::SERVICE).cloned().unwrap_or_default(),
                image,
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

/// The image reference `c` was created from. The list shows the image's id
/// instead (`sha256:...`) once its tag has moved to another image (an old
/// container of `app:latest` after a pull); the container's own config
/// still names the reference, which is what tells its repository.
async fn created_from(
    engine: &Engine,
    c: &bollard::models::ContainerSummary,
) -> Result<String, BackendError> {
    let listed = c.image.clone().unwrap_or_default();
    if !listed.starts_with("sha256:") {
        return Ok(listed);
    }
    let Some(id) = c.id.as_deref() else {
        return Ok(listed);
    };
    match engine.docker().inspect_container(id, None).await {
        Ok(inspected) => Ok(inspected
            .config
            .and_then(|config| config.image)
            .unwrap_or(listed)),
        // Gone since the list: it runs no more.
        Err(e) if crate::engine::status(&e) == Some(404) => Ok(listed),
        Err(e) => Err(engine.error(e)),
    }
}
