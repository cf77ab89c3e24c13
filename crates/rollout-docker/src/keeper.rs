//! Never-started containers: how we keep state with the engine.
//!
//! A container that is created and never started costs no process, survives
//! engine restarts, can be found by label from any client of the engine, and
//! its creation under a fixed name is atomic (the engine answers 409 to the
//! second one). Its labels are immutable, which suits records written once.
//! It carries no Compose project label and runs with network mode `none`, so
//! `docker compose ps`, `up` and `down` never see it.
//!
//! It needs an image; no registry can be reached and the operator's images
//! come and go, so we import a one-file image of our own from a tar built
//! here ([`KEEPER_IMAGE`]), when a create finds it missing. Caveat: `docker container prune` removes created
//! containers too; `--filter label!=io.rollout.kind` keeps ours.

use crate::engine::{status, Engine};
use crate::labels;
use crate::tar;
use bollard::models::ContainerSummary;
use bollard::models::{ContainerCreateBody, HostConfig};
use bollard::query_parameters::{
    CreateContainerOptions, CreateImageOptions, RemoveContainerOptions,
};
use futures::StreamExt;
use rollout_core::BackendError;
use std::collections::HashMap;

/// The image of our never-started containers (one empty marker file).
pub const KEEPER_IMAGE: &str = "rollout-keeper:1";
const KEEPER_CMD: &str = "/rollout-keeper";

/// Imports [`KEEPER_IMAGE`] unless it is there.
async fn ensure_image(engine: &Engine) -> Result<(), BackendError> {
    match engine.docker().inspect_image(KEEPER_IMAGE).await {
        Ok(_) => return Ok(()),
        Err(e) if status(&e) == Some(404) => {}
        Err(e) => return Err(engine.error(e)),
    }
    let archive = tar::single_file(
        KEEPER_CMD.trim_start_matches('/'),
        b"rollout keeps state in containers of this image; they are never started\n",
        0o644,
    )
    .map_err(BackendError::Other)?;
    let (repo, tag) = KEEPER_IMAGE
        .split_once(':')
        .unwrap_or((KEEPER_IMAGE, "latest"));
    let options = CreateImageOptions {
        from_src: Some("-".into()),
        repo: Some(repo.into()),
        tag: Some(tag.into()),
        ..Default::default()
    };
    let mut progress = engine.docker().create_image(
        Some(options),
        Some(bollard::body_full(archive.into())),
        None,
    );
    while let Some(item) = progress.next().await {
        item.map_err(|e| engine.error(e))?;
    }
    Ok(())
}

/// What creating a keeper under a fixed name gave.
#[derive(Debug)]
pub(crate) enum Created {
    /// It is ours.
    Ours,
    /// The name is taken.
    Taken,
}

/// Creates a never-started container `name` with `labels` (and `env`, kept
/// where the engine keeps a container's environment).
pub(crate) async fn create(
    engine: &Engine,
    name: &str,
    image: &str,
    mut labels: HashMap<String, String>,
    env: Vec<String>,
) -> Result<Created, BackendError> {
    // A container inherits its image's labels, and Compose 2 labels the
    // images it builds with their project and service: a keeper made from
    // such an image (a saved spec pins its revision's image) would be taken
    // for one of the service's containers by Compose and by the backend.
    // Blank values override the inherited ones and match no project.
    for key in [labels::PROJECT, labels::SERVICE] {
        labels.entry(key.to_string()).or_default();
    }
    let body = ContainerCreateBody {
        image: Some(image.to_string()),
        cmd: Some(vec![KEEPER_CMD.to_string()]),
        entrypoint: Some(vec![]),
        env: Some(env),
        labels: Some(labels),
        network_disabled: Some(true),
        host_config: Some(HostConfig {
            network_mode: Some("none".into()),
            ..Default::default()
        }),
        ..Default::default()
    };
    let options = CreateContainerOptions {
        name: Some(name.to_string()),
        ..Default::default()
    };
    // The keeper image is imported when a create finds it missing (on an
    // engine that never had it, or after someone removed it) rather than
    // looked up before each create: that look was a round trip on the way of
    // every lock and record.
    let mut imported = false;
    loop {
        match engine
            .docker()
            .create_container(Some(options.clone()), body.clone())
            .await
        {
            Ok(_) => return Ok(Created::Ours),
            Err(e) if status(&e) == Some(409) => return Ok(Created::Taken),
            Err(e) if status(&e) == Some(404) && image == KEEPER_IMAGE && !imported => {
                ensure_image(engine).await?;
                imported = true;
            }
            Err(e) => return Err(engine.error(e)),
        }
    }
}

/// Our containers of `kind` about `project`/`service`, newest first.
pub(crate) async fn list(
    engine: &Engine,
    kind: &str,
    project: &str,
    service: &str,
) -> Result<Vec<ContainerSummary>, BackendError> {
    let filters = HashMap::from([(
        "label".to_string(),
        vec![
            format!("{}={kind}", labels::KIND),
            format!("{}={project}", labels::OUR_PROJECT),
            format!("{}={service}", labels::OUR_SERVICE),
        ],
    )]);
    let mut found = engine.list_containers(filters, true).await?;
    found.sort_by_key(|c| std::cmp::Reverse(c.created.unwrap_or(0)));
    Ok(found)
}

/// Removes a keeper; one already gone is fine. A keeper made from an image that declares a
/// `VOLUME` (a saved spec or a retiring marker uses the app's image) got an anonymous volume at
/// create: it goes with the keeper, which never mounts anything else.
pub(crate) async fn remove(engine: &Engine, id: &str) -> Result<(), BackendError> {
    let options = RemoveContainerOptions {
        force: true,
        v: true,
        ..Default::default()
    };
    match engine.docker().remove_container(id, Some(options)).await {
        Ok(()) => Ok(()),
        Err(e) if status(&e) == Some(404) => Ok(()),
        Err(e) => Err(engine.error(e)),
    }
}

/// The labels every keeper about `project`/`service` carries.
pub(crate) fn base_labels(
    kind: &str,
    project: &str,
    service: &str,
    extra: &HashMap<String, String>,
) -> HashMap<String, String> {
    let mut l = extra.clone();
    l.insert(labels::KIND.into(), kind.into());
    l.insert(labels::OUR_PROJECT.into(), project.into());
    l.insert(labels::OUR_SERVICE.into(), service.into());
    l
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    fn docker(args: &[&str]) -> std::process::Output {
        Command::new("docker")
            .args(args)
            .output()
            .expect("the docker CLI runs")
    }

    /// A keeper made from an app image with a `VOLUME` leaves no anonymous volume behind.
    #[tokio::test]
    #[ignore = "needs docker: run with cargo xtask e2e"]
    async fn a_keeper_of_an_image_with_a_volume_takes_its_volume_with_it() {
        let host =
            std::env::var("DOCKER_HOST").unwrap_or_else(|_| "unix:///var/run/docker.sock".into());
        let engine = Engine::connect(&host)
            .await
            .unwrap_or_else(|e| panic!("{e}\nthis test needs a Docker engine"));
        let tag = format!("rollout-keeper-volume:{}", std::process::id());
        let dir =
            std::env::temp_dir().join(format!("rollout-keeper-volume-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("f"), "x").unwrap();
        std::fs::write(
            dir.join("Dockerfile"),
            "FROM scratch\nCOPY f /f\nVOLUME /data\n",
        )
        .unwrap();
        let built = docker(&["build", "-q", "-t", &tag, dir.to_str().unwrap()]);
        assert!(
            built.status.success(),
            "{}",
            String::from_utf8_lossy(&built.stderr)
        );
        let name = format!("rollout-keeper-volume-test-{}", std::process::id());
        let made = create(&engine, &name, &tag, HashMap::new(), vec![]).await;
        assert!(matches!(made, Ok(Created::Ours)), "{made:?}");
        let mounts = docker(&["inspect", "-f", "{{range .Mounts}}{{.Name}} {{end}}", &name]);
        let volume = String::from_utf8_lossy(&mounts.stdout).trim().to_string();
        assert!(
            !volume.is_empty(),
            "the image's VOLUME gave the keeper a volume"
        );
        remove(&engine, &name).await.unwrap();
        let left = docker(&["volume", "inspect", &volume]);
        let _ = docker(&["volume", "rm", &volume]);
        let _ = docker(&["rmi", &tag]);
        let _ = std::fs::remove_dir_all(&dir);
        assert!(!left.status.success(), "volume {volume} was left behind");
    }
}
