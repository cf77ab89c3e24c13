//! Where new instances come from: the Compose tool for the first of the
//! revision the Compose file names, copies of a container of the revision
//! (or of its saved spec) for every other.

use super::injected::{self, Injected};
use super::inspect::{
    container_label, inspected_instance, inspected_revision, number_of, revision_of, short,
    summary_state, to_instance,
};
use super::{revision, DockerBackend, REVISION_KIND};
use crate::engine::status;
use crate::keeper::{self, Created};
use crate::labels;
use crate::spec::{container_name, Spec};
use bollard::models::{ContainerInspectResponse, NetworkConnectRequest};
use bollard::query_parameters::{CreateContainerOptions, RemoveContainerOptions};
use rollout_core::backend::Backend;
use rollout_core::{BackendError, Instance, InstanceId, InstanceState, Revision, ServiceRef};
use std::collections::HashSet;

/// A container a launch made and has not started yet.
pub(super) struct Made {
    /// Its id.
    pub id: String,
    /// Its name, for messages.
    pub name: String,
}

impl DockerBackend {
    /// The first instances of the revision the Compose file names: the
    /// Compose tool creates them (and starts nothing, so an exited
    /// container of the service, maybe an operator's, stays as it is), then
    /// each is made again from its own create config with the tool's label
    /// ([`labels::LAUNCHED`]), under the same name and number, ready to
    /// start ([`DockerBackend::start_created`]).
    pub(super) async fn launch_with_compose(
        &self,
        service: &ServiceRef,
        revision: &Revision,
        count: usize,
    ) -> Result<Vec<Made>, BackendError> {
        let launch_error = |reason: String| BackendError::Launch {
            service: service.to_string(),
            reason,
        };
        self.check_image(&revision.image).await?;
        // Compose counts every container of the service toward the scale,
        // the ones left alone included.
        let before = self.containers(service).await?;
        let before_ids: HashSet<String> = before.iter().filter_map(|c| c.id.clone()).collect();
        let stopped_before: HashSet<String> = before
            .iter()
            .filter(|c| summary_state(c) != InstanceState::Running)
            .filter_map(|c| c.id.clone())
            .filter(|id| !self.gate.is_starting(id))
            .collect();
        let total = before.len() + count;
        let ran = self.compose.create_more(&service.service, total).await;
        let after = self.containers(service).await?;
        // Asked to start nothing; should a Compose tool start a stopped
        // container all the same, it is stopped again.
        for c in &after {
            let Some(id) = &c.id else { continue };
            if stopped_before.contains(id) && summary_state(c) == InstanceState::Running {
                let _ = self.stop_quietly(id).await;
            }
        }
        let mut made: Vec<Instance> = after
            .iter()
            .filter(|c| c.id.as_ref().is_some_and(|id| !before_ids.contains(id)))
            .map(|c| to_instance(c, service))
            .collect();
        made.sort_by_key(|i| number_of(&i.host));
        let wrong = made.iter().filter(|i| i.revision != revision.id).count();
        let problem = match ran {
            Err(e) => Some(e.to_string()),
            Ok(()) if made.len() != count => Some(format!(
                "Compose created {} containers where {count} were asked for",
                made.len()
            )),
            Ok(()) if wrong > 0 => Some(format!(
                "Compose created containers of another revision than {}\nhint: the Compose files changed during the rollout, or the image tag {} was moved to another image",
                revision::name_part(&revision.id),
                revision.image
            )),
            Ok(()) => None,
        };
        if let Some(reason) = problem {
            for i in &made {
                let _ = self.remove_forcibly(&i.id.0).await;
            }
            return Err(launch_error(reason));
        }
        let mut launched: Vec<Made> = Vec::new();
        for (k, i) in made.iter().enumerate() {
            match self.remade_with_label(service, revision, &i.id).await {
                Ok(created) => launched.push(created),
                Err(e) => {
                    for gone in launched
                        .iter()
                        .map(|c| &c.id)
                        .chain(made[k..].iter().map(|i| &i.id.0))
                    {
                        let _ = self.remove_forcibly(gone).await;
                    }
                    return Err(e);
                }
            }
        }
        Ok(launched)
    }

    /// Makes the never-started container `made` (the Compose tool's) again
    /// from its create config with the tool's label, under its name and
    /// number, ready to start. Its spec is what later copies of the revision
    /// are made from.
    async fn remade_with_label(
        &self,
        service: &ServiceRef,
        revision: &Revision,
        made: &InstanceId,
    ) -> Result<Made, BackendError> {
        let c = self.inspect(made).await?;
        let name = container_label(&c);
        let number = c
            .config
            .as_ref()
            .and_then(|c| c.labels.as_ref())
            .and_then(|l| l.get(labels::CONTAINER_NUMBER))
            .and_then(|n| n.parse::<u32>().ok())
            .unwrap_or_else(|| number_of(&name).0.min(u32::MAX as u64) as u32);
        let (mut spec, env) = Spec::from_inspect(&c).map_err(BackendError::Other)?;
        if self.compose.flavour() == crate::compose::Flavour::V1 {
            self.networks_v1_connects_at_start(service, made, &mut spec)
                .await?;
        }
        let image = self.image_reference(&spec).await?;
        let mounts: Vec<String> = c
            .mounts
            .iter()
            .flatten()
            .filter_map(|m| m.destination.clone())
            .collect();
        let files = injected::read(&self.engine, &made.0, &mounts).await?;
        // Its anonymous volumes go with it: it never ran.
        let options = RemoveContainerOptions {
            force: true,
            v: true,
            ..Default::default()
        };
        match self
            .engine
            .docker()
            .remove_container(&made.0, Some(options))
            .await
        {
            Ok(()) => {}
            Err(e) if status(&e) == Some(404) => {}
            Err(e) => return Err(self.engine.error(e)),
        }
        let created = self
            .create_named(service, &spec, env.clone(), &image, &name, number, &files)
            .await?;
        self.injected
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(revision.id.clone(), files);
        self.copies
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(revision.id.clone(), (spec, env, image));
        Ok(created)
    }

    /// Compose v1 creates a container on its first network only and
    /// connects the others when it starts it, which `up --no-start` never
    /// does: the never-started container shows one network. The others are
    /// taken from a running container of the service (with their aliases,
    /// less the container's own), which Compose v1 started with all of
    /// them. A network that the new revision adds and no running container
    /// has yet is not known here (v1 names it only at start); a service
    /// with no running container keeps the one network.
    async fn networks_v1_connects_at_start(
        &self,
        service: &ServiceRef,
        made: &InstanceId,
        spec: &mut Spec,
    ) -> Result<(), BackendError> {
        let running = self
            .instances(service)
            .await?
            .into_iter()
            .find(|i| i.state == InstanceState::Running && i.id != *made);
        let Some(running) = running else {
            return Ok(());
        };
        let (theirs, _) =
            Spec::from_inspect(&self.inspect(&running.id).await?).map_err(BackendError::Other)?;
        for (network, endpoint) in theirs.networks {
            spec.networks.entry(network).or_insert(endpoint);
        }
        Ok(())
    }

    pub(super) async fn launch_from_spec(
        &self,
        service: &ServiceRef,
        revision: &Revision,
        count: usize,
    ) -> Result<Vec<Made>, BackendError> {
        // The spec of a revision does not change: read once per process.
        let (spec, env, image) = match self.copy_of(&revision.id) {
            Some(known) => known,
            None => {
                let (spec, env) = self.spec_of(service, &revision.id).await?;
                let image = self.image_reference(&spec).await?;
                let known = (spec, env, image);
                self.copies
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(revision.id.clone(), known.clone());
                known
            }
        };
        let files = self
            .injected
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&revision.id)
            .cloned()
            .unwrap_or_default();
        let mut created: Vec<Made> = Vec::new();
        for _ in 0..count {
            match self
                .create_copy(service, &spec, env.clone(), &image, &files)
                .await
            {
                Ok(c) => created.push(c),
                Err(e) => {
                    for c in &created {
                        let _ = self.remove_forcibly(&c.id).await;
                    }
                    return Err(e);
                }
            }
        }
        Ok(created)
    }

    pub(super) async fn create_copy(
        &self,
        service: &ServiceRef,
        spec: &Spec,
        env: Vec<String>,
        image: &str,
        files: &[Injected],
    ) -> Result<Made, BackendError> {
        let existing = self.containers(service).await?;
        let number = existing
            .iter()
            .filter_map(|c| {
                c.labels
                    .as_ref()?
                    .get(labels::CONTAINER_NUMBER)?
                    .parse::<u32>()
                    .ok()
            })
            .max()
            .unwrap_or(0)
            + 1;
        let separator = existing
            .iter()
            .filter_map(|c| c.names.as_ref()?.first().cloned())
            .find_map(|n| {
                let n = n.trim_start_matches('/');
                let rest = n.strip_prefix(&service.project)?;
                rest.chars().next().filter(|c| *c == '_' || *c == '-')
            })
            .unwrap_or(self.compose.flavour().separator());
        let name = container_name(&service.project, &service.service, separator, number);
        self.create_named(service, spec, env, image, &name, number, files)
            .await
    }

    /// Creates container `name` (number `number`) of `service` from `spec`,
    /// puts `files` into it and connects its other networks, ready to start
    /// ([`DockerBackend::start_created`]); removed again when any of that
    /// fails.
    #[allow(clippy::too_many_arguments)]
    async fn create_named(
        &self,
        service: &ServiceRef,
        spec: &Spec,
        env: Vec<String>,
        image: &str,
        name: &str,
        number: u32,
        files: &[Injected],
    ) -> Result<Made, BackendError> {
        let launch_error = |reason: String| BackendError::Launch {
            service: service.to_string(),
            reason,
        };
        let body = spec.create_body(env, number, image);
        let options = CreateContainerOptions {
            name: Some(name.to_string()),
            ..Default::default()
        };
        let id = self
            .engine
            .docker()
            .create_container(Some(options), body)
            .await
            .map_err(|e| launch_error(format!("creating {name}: {}", self.engine.error(e))))?
            .id;
        let prepared = async {
            injected::put(&self.engine, &id, files).await?;
            for (network, endpoint) in spec.more_networks() {
                let request = NetworkConnectRequest {
                    container: id.clone(),
                    endpoint_config: Some(endpoint),
                };
                self.engine
                    .docker()
                    .connect_network(&network, request)
                    .await
                    .map_err(|e| {
                        format!("connecting {name} to {network}: {}", self.engine.error(e))
                    })?;
            }
            Ok::<_, String>(())
        };
        if let Err(reason) = prepared.await {
            let _ = self.remove_forcibly(&id).await;
            return Err(launch_error(reason));
        }
        Ok(Made {
            id,
            name: name.to_string(),
        })
    }

    /// Starts the containers `created` made, in order; when one fails to
    /// start, all of them are removed again (the ones started too: a launch
    /// of several is whole or nothing).
    pub(super) async fn start_created(
        &self,
        service: &ServiceRef,
        created: Vec<Made>,
    ) -> Result<Vec<Instance>, BackendError> {
        let mut started = Vec::new();
        for c in &created {
            let up = async {
                self.engine
                    .docker()
                    .start_container(&c.id, None)
                    .await
                    .map_err(|e| BackendError::Launch {
                        service: service.to_string(),
                        reason: format!("starting {}: {}", c.name, self.engine.error(e)),
                    })?;
                self.inspect(&InstanceId(c.id.clone())).await
            };
            match up.await {
                Ok(inspected) => started.push(inspected_instance(&inspected, service)),
                Err(e) => {
                    // Removed under the gate, as a retirement is: a launch
                    // that counts meanwhile would miss them.
                    let _one = self.gate.launch(true).await;
                    for gone in &created {
                        let _ = self.remove_forcibly(&gone.id).await;
                    }
                    return Err(e);
                }
            }
        }
        Ok(started)
    }

    /// The spec of `revision` (and its environment): from a container of it
    /// that still exists, else from the one saved when its last was stopped.
    pub(super) async fn spec_of(
        &self,
        service: &ServiceRef,
        revision: &str,
    ) -> Result<(Spec, Vec<String>), BackendError> {
        let live = self
            .members(service)
            .await?
            .into_iter()
            .find(|c| revision_of(c) == revision);
        if let Some(id) = live.and_then(|c| c.id) {
            let c = self.inspect(&InstanceId(id)).await?;
            return Spec::from_inspect(&c).map_err(BackendError::Other);
        }
        let saved = keeper::list(
            &self.engine,
            REVISION_KIND,
            &service.project,
            &service.service,
        )
        .await?
        .into_iter()
        .find(|c| {
            c.labels
                .as_ref()
                .and_then(|l| l.get(labels::REVISION))
                .is_some_and(|r| r == revision)
        });
        let Some(id) = saved.and_then(|c| c.id) else {
            let why = self
                .unsaved
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get(revision)
                .map(|e| format!(" (saving it failed: {e})"))
                .unwrap_or_default();
            return Err(BackendError::Launch {
                service: service.to_string(),
                reason: format!(
                    "no container of revision {} is left and no spec of it was saved{why}\nhint: revisions are saved when their instances are stopped by a rollout; set the Compose file back to that revision and run the rollout instead",
                    revision::name_part(revision)
                ),
            });
        };
        let keeper = self.inspect(&InstanceId(id)).await?;
        let config = keeper.config.unwrap_or_default();
        let json = config
            .labels
            .as_ref()
            .and_then(|l| l.get(labels::SPEC))
            .ok_or_else(|| {
                BackendError::Other(format!(
                    "the saved spec of revision {} has no content",
                    short(revision)
                ))
            })?;
        let spec: Spec = serde_json::from_str(json).map_err(|e| {
            BackendError::Other(format!(
                "the saved spec of revision {} does not parse: {e}",
                short(revision)
            ))
        })?;
        Ok((spec, config.env.unwrap_or_default()))
    }

    /// The image name when it still points at the spec's image, else the
    /// pinned id.
    pub(super) async fn image_reference(&self, spec: &Spec) -> Result<String, BackendError> {
        if let Ok(image) = self.engine.docker().inspect_image(&spec.image_name).await {
            if image.id.as_deref() == Some(spec.image_id.as_str()) {
                return Ok(spec.image_name.clone());
            }
        }
        match self.engine.docker().inspect_image(&spec.image_id).await {
            Ok(_) => Ok(spec.image_id.clone()),
            Err(e) if status(&e) == Some(404) => Err(BackendError::MissingImage {
                image: format!("{} ({})", spec.image_name, short(&spec.image_id)),
            }),
            Err(e) => Err(self.engine.error(e)),
        }
    }

    /// Saves the spec of the revision `c` runs, unless one is saved: the
    /// way back once its last instance is gone. The saved container pins the
    /// image by id and keeps the environment in its own `Env`.
    pub(super) async fn save_spec(&self, c: &ContainerInspectResponse) -> Result<(), BackendError> {
        let l = c
            .config
            .as_ref()
            .and_then(|c| c.labels.clone())
            .unwrap_or_default();
        let (Some(project), Some(service), Some(_)) = (
            l.get(labels::PROJECT),
            l.get(labels::SERVICE),
            l.get(labels::CONFIG_HASH),
        ) else {
            return Ok(());
        };
        // The spec pins the image id the container runs, so the saved
        // revision is the one its instances reported.
        let revision = &inspected_revision(c);
        let (spec, env) = Spec::from_inspect(c).map_err(BackendError::Other)?;
        let json = serde_json::to_string(&spec).map_err(|e| BackendError::Other(e.to_string()))?;
        let mut keep = keeper::base_labels(REVISION_KIND, project, service, &self.extra_labels);
        keep.insert(labels::REVISION.into(), revision.clone());
        keep.insert(labels::SPEC.into(), json);
        let name = format!(
            "rollout-revision.{project}.{service}.{}",
            revision::name_part(revision)
        );
        if self.saved().contains(&name) {
            return Ok(());
        }
        match keeper::create(&self.engine, &name, &spec.image_id, keep, env).await? {
            Created::Ours | Created::Taken => {
                self.saved().insert(name);
                Ok(())
            }
        }
    }

    /// Removes saved specs nobody needs: those of revisions with no
    /// container left, except the newest such (the way back).
    pub(super) async fn prune_specs(&self, service: &ServiceRef) -> Result<(), BackendError> {
        let running: HashSet<String> = self
            .members(service)
            .await?
            .iter()
            .map(revision_of)
            .collect();
        let saved = keeper::list(
            &self.engine,
            REVISION_KIND,
            &service.project,
            &service.service,
        )
        .await?;
        let mut kept_one = false;
        for c in saved {
            let revision = c
                .labels
                .as_ref()
                .and_then(|l| l.get(labels::REVISION))
                .cloned()
                .unwrap_or_default();
            if running.contains(&revision) {
                continue;
            }
            if !kept_one {
                kept_one = true;
                continue;
            }
            if let Some(id) = c.id {
                keeper::remove(&self.engine, &id).await?;
                // Which one went is not worth tracking: save again next time.
                self.saved().clear();
            }
        }
        Ok(())
    }
}
