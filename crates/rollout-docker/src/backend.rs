//! [`DockerBackend`]: the instances of a Compose service as containers of one
//! engine.

use crate::compose::ComposeCli;
use crate::engine::{parse_rfc3339_nanos, status, Engine};
use crate::keeper::{self, Created};
use crate::labels;
use crate::spec::{container_name, Spec};
use async_trait::async_trait;
use bollard::models::{
    ContainerInspectResponse, ContainerStateStatusEnum, ContainerSummary, EventMessage,
    HealthStatusEnum, NetworkConnectRequest,
};
use bollard::query_parameters::{
    CreateContainerOptions, EventsOptions, ListContainersOptions, LogsOptions,
    RemoveContainerOptions, StopContainerOptions,
};
use futures::{Stream, StreamExt};
use rollout_core::backend::{Diagnostics, Failure};
use rollout_core::config::Timeouts;
use rollout_core::strategy::{Verification, Verifier};
use rollout_core::{
    Backend, BackendError, Health, Instance, InstanceId, InstanceState, Revision, ServiceRef,
};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

/// How many log lines a failure report carries.
const LOG_LINES: usize = 30;
/// The kind of our never-started containers that keep a revision's spec.
const REVISION_KIND: &str = "revision";

/// The tool's own HTTP probe, for a service whose image has no healthcheck
/// (`x-rollout.probe`): sent by `verifier` from inside the project's network
/// every `interval` until it passes or the start timeout runs out.
#[derive(Clone)]
pub struct HealthProbe {
    /// Sends the request (for example by exec in the proxy).
    pub verifier: Arc<dyn Verifier>,
    /// What to ask and what to expect.
    pub check: Verification,
    /// Pause between two attempts.
    pub interval: Duration,
}

impl std::fmt::Debug for HealthProbe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HealthProbe")
            .field("check", &self.check)
            .field("interval", &self.interval)
            .finish()
    }
}

/// What copies of a revision are made from: its spec, its environment and
/// the image reference to create from.
type CopySource = (Spec, Vec<String>, String);

/// A [`Backend`] over the Docker engine for the services of one Compose
/// project.
///
/// Instances are the containers labelled with the project and service; the
/// revision of one is its `com.docker.compose.config-hash` label and its host
/// is its container name, which Docker's DNS resolves on the project's
/// networks.
///
/// The first instance of the revision the Compose file names is launched
/// through the operator's Compose tool (`up -d --no-deps --no-recreate
/// --scale`), so the project stays what Compose itself would have made.
/// Every other launch (later instances of that revision, a rollback) creates
/// copies of a container of the revision, or of the spec saved when its last
/// instance was stopped: the same create config, labels and config hash.
pub struct DockerBackend {
    engine: Engine,
    compose: ComposeCli,
    launching: tokio::sync::Mutex<()>,
    compose_hashes: Mutex<HashMap<String, String>>,
    unsaved: Mutex<HashMap<String, String>>,
    /// Saved specs this process made or found, by keeper name.
    saved: Mutex<HashSet<String>>,
    /// What copies of a revision are made from (spec, environment, image
    /// reference), by revision, once read.
    copies: Mutex<HashMap<String, CopySource>>,
    probes: HashMap<String, HealthProbe>,
    extra_labels: HashMap<String, String>,
}

impl std::fmt::Debug for DockerBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DockerBackend")
            .field("endpoint", &self.engine.endpoint())
            .field("compose", &self.compose)
            .finish()
    }
}

impl DockerBackend {
    /// A backend on `engine` that creates new instances with `compose` (the
    /// operator's Compose command with the project's `-f`, `-p`,
    /// `--env-file` and `--profile`).
    pub fn new(engine: Engine, compose: ComposeCli) -> Self {
        Self {
            engine,
            compose,
            launching: tokio::sync::Mutex::new(()),
            compose_hashes: Mutex::new(HashMap::new()),
            unsaved: Mutex::new(HashMap::new()),
            saved: Mutex::new(HashSet::new()),
            copies: Mutex::new(HashMap::new()),
            probes: HashMap::new(),
            extra_labels: HashMap::new(),
        }
    }

    /// Uses `probe` to tell when instances of `service` (the Compose service
    /// name) are healthy, when their image has no healthcheck.
    pub fn with_probe(mut self, service: impl Into<String>, probe: HealthProbe) -> Self {
        self.probes.insert(service.into(), probe);
        self
    }

    /// Puts `labels` on the never-started containers the backend creates to
    /// keep revision specs (tests label everything they create).
    pub fn with_labels(mut self, labels: HashMap<String, String>) -> Self {
        self.extra_labels = labels;
        self
    }

    /// The engine.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// `Ok` when `image` exists on the engine (or is empty: Compose builds
    /// it), [`BackendError::MissingImage`] when it does not: nothing is ever
    /// pulled, so a caller checks this before changing anything.
    pub async fn check_image(&self, image: &str) -> Result<(), BackendError> {
        if image.is_empty() {
            return Ok(());
        }
        match self.engine.docker().inspect_image(image).await {
            Ok(_) => Ok(()),
            Err(e) if status(&e) == Some(404) => Err(BackendError::MissingImage {
                image: image.to_string(),
            }),
            Err(e) => Err(self.engine.error(e)),
        }
    }

    /// The revision the Compose file names for `service` now: its config
    /// hash as the Compose tool computes it (`config --hash`), with `image`
    /// for display.
    pub async fn compose_revision(
        &self,
        service: &ServiceRef,
        image: &str,
    ) -> Result<Revision, BackendError> {
        Ok(Revision::new(self.compose_hash(service).await?, image))
    }

    async fn compose_hash(&self, service: &ServiceRef) -> Result<String, BackendError> {
        if let Some(hash) = self.cached_hash(&service.service) {
            return Ok(hash);
        }
        let hash = self
            .compose
            .config_hash(&service.service)
            .await
            .map_err(|e| BackendError::Launch {
                service: service.to_string(),
                reason: e.to_string(),
            })?;
        self.compose_hashes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(service.service.clone(), hash.clone());
        Ok(hash)
    }

    fn copy_of(&self, revision: &str) -> Option<CopySource> {
        self.copies
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(revision)
            .cloned()
    }

    fn saved(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.saved.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn cached_hash(&self, service: &str) -> Option<String> {
        self.compose_hashes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(service)
            .cloned()
    }

    async fn containers(
        &self,
        service: &ServiceRef,
    ) -> Result<Vec<ContainerSummary>, BackendError> {
        let filters = HashMap::from([(
            "label".to_string(),
            vec![
                format!("{}={}", labels::PROJECT, service.project),
                format!("{}={}", labels::SERVICE, service.service),
            ],
        )]);
        let options = ListContainersOptions {
            all: true,
            filters: Some(filters),
            ..Default::default()
        };
        let found = self
            .engine
            .docker()
            .list_containers(Some(options))
            .await
            .map_err(|e| self.engine.error(e))?;
        Ok(found
            .into_iter()
            .filter(|c| {
                let oneoff = c.labels.as_ref().and_then(|l| l.get(labels::ONEOFF));
                !oneoff.is_some_and(|v| v.eq_ignore_ascii_case("true"))
            })
            .collect())
    }

    async fn inspect(&self, id: &InstanceId) -> Result<ContainerInspectResponse, BackendError> {
        match self.engine.docker().inspect_container(&id.0, None).await {
            Ok(c) => Ok(c),
            Err(e) if status(&e) == Some(404) => Err(BackendError::NoSuchInstance(id.clone())),
            Err(e) => Err(self.engine.error(e)),
        }
    }

    async fn launch_with_compose(
        &self,
        service: &ServiceRef,
        revision: &Revision,
        count: usize,
    ) -> Result<Vec<Instance>, BackendError> {
        let launch_error = |reason: String| BackendError::Launch {
            service: service.to_string(),
            reason,
        };
        self.check_image(&revision.image).await?;
        let before = self.containers(service).await?;
        let before_ids: HashSet<String> = before.iter().filter_map(|c| c.id.clone()).collect();
        let stopped_before: HashSet<String> = before
            .iter()
            .filter(|c| summary_state(c) != InstanceState::Running)
            .filter_map(|c| c.id.clone())
            .collect();
        let total = before.len() + count;
        let ran = self.compose.scale_up(&service.service, total).await;
        let after = self.containers(service).await?;
        // Compose starts every stopped container of the service it scales;
        // ours were stopped on purpose (retired, about to be removed).
        for c in &after {
            let Some(id) = &c.id else { continue };
            if stopped_before.contains(id) && summary_state(c) == InstanceState::Running {
                let _ = self.stop_quietly(id).await;
            }
        }
        let mut new: Vec<Instance> = after
            .iter()
            .filter(|c| c.id.as_ref().is_some_and(|id| !before_ids.contains(id)))
            .map(|c| to_instance(c, service))
            .collect();
        new.sort_by_key(|i| number_of(&i.host));
        let wrong = new.iter().filter(|i| i.revision != revision.id).count();
        let problem = match ran {
            Err(e) => Some(e.to_string()),
            Ok(()) if new.len() != count => Some(format!(
                "Compose created {} containers where {count} were asked for",
                new.len()
            )),
            Ok(()) if wrong > 0 => Some(format!(
                "Compose created containers of another revision than {}\nhint: the Compose files changed during the rollout",
                short(&revision.id)
            )),
            Ok(()) => None,
        };
        if let Some(reason) = problem {
            for i in &new {
                let _ = self.remove_forcibly(&i.id.0).await;
            }
            return Err(launch_error(reason));
        }
        Ok(new)
    }

    async fn launch_from_spec(
        &self,
        service: &ServiceRef,
        revision: &Revision,
        count: usize,
    ) -> Result<Vec<Instance>, BackendError> {
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
        let mut created: Vec<Instance> = Vec::new();
        for _ in 0..count {
            match self.create_copy(service, &spec, env.clone(), &image).await {
                Ok(instance) => created.push(instance),
                Err(e) => {
                    for i in &created {
                        let _ = self.remove_forcibly(&i.id.0).await;
                    }
                    return Err(e);
                }
            }
        }
        Ok(created)
    }

    async fn create_copy(
        &self,
        service: &ServiceRef,
        spec: &Spec,
        env: Vec<String>,
        image: &str,
    ) -> Result<Instance, BackendError> {
        let launch_error = |reason: String| BackendError::Launch {
            service: service.to_string(),
            reason,
        };
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
        let body = spec.create_body(env, number, image);
        let options = CreateContainerOptions {
            name: Some(name.clone()),
            ..Default::default()
        };
        let id = self
            .engine
            .docker()
            .create_container(Some(options), body)
            .await
            .map_err(|e| launch_error(format!("creating {name}: {}", self.engine.error(e))))?
            .id;
        let started = async {
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
            self.engine
                .docker()
                .start_container(&id, None)
                .await
                .map_err(|e| format!("starting {name}: {}", self.engine.error(e)))
        };
        if let Err(reason) = started.await {
            let _ = self.remove_forcibly(&id).await;
            return Err(launch_error(reason));
        }
        let c = self.inspect(&InstanceId(id)).await?;
        Ok(inspected_instance(&c, service))
    }

    /// The spec of `revision` (and its environment): from a container of it
    /// that still exists, else from the one saved when its last was stopped.
    async fn spec_of(
        &self,
        service: &ServiceRef,
        revision: &str,
    ) -> Result<(Spec, Vec<String>), BackendError> {
        let live = self
            .containers(service)
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
                    short(revision)
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
    async fn image_reference(&self, spec: &Spec) -> Result<String, BackendError> {
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
    async fn save_spec(&self, c: &ContainerInspectResponse) -> Result<(), BackendError> {
        let l = c
            .config
            .as_ref()
            .and_then(|c| c.labels.clone())
            .unwrap_or_default();
        let (Some(project), Some(service), Some(revision)) = (
            l.get(labels::PROJECT),
            l.get(labels::SERVICE),
            l.get(labels::CONFIG_HASH),
        ) else {
            return Ok(());
        };
        let (spec, env) = Spec::from_inspect(c).map_err(BackendError::Other)?;
        let json = serde_json::to_string(&spec).map_err(|e| BackendError::Other(e.to_string()))?;
        let mut keep = keeper::base_labels(REVISION_KIND, project, service, &self.extra_labels);
        keep.insert(labels::REVISION.into(), revision.clone());
        keep.insert(labels::SPEC.into(), json);
        let name = format!("rollout-revision.{project}.{service}.{}", short(revision));
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
    async fn prune_specs(&self, service: &ServiceRef) -> Result<(), BackendError> {
        let running: HashSet<String> = self
            .containers(service)
            .await?
            .iter()
            .map(|c| revision_of(c).to_string())
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

    async fn stop_quietly(&self, id: &str) -> Result<(), BackendError> {
        let options = StopContainerOptions {
            t: Some(10),
            ..Default::default()
        };
        self.engine
            .docker_for(Duration::from_secs(10))
            .stop_container(id, Some(options))
            .await
            .map_err(|e| self.engine.error(e))
    }

    async fn remove_forcibly(&self, id: &str) -> Result<(), BackendError> {
        let options = RemoveContainerOptions {
            force: true,
            ..Default::default()
        };
        match self
            .engine
            .docker()
            .remove_container(id, Some(options))
            .await
        {
            Ok(()) => Ok(()),
            Err(e) if status(&e) == Some(404) => Ok(()),
            Err(e) => Err(self.engine.error(e)),
        }
    }

    /// A stream of `die` and `health_status` events of `ids`, from `since`
    /// (engine time) on.
    fn events(
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

    async fn exited(&self, id: &InstanceId) -> Result<Failure, BackendError> {
        let c = self.inspect(id).await?;
        Ok(exit_failure(&c))
    }

    async fn unhealthy(&self, id: &InstanceId) -> Result<Failure, BackendError> {
        let c = self.inspect(id).await?;
        let log = health_log(&c);
        Ok(Failure::Unhealthy(
            log.last()
                .cloned()
                .unwrap_or_else(|| "the health check failed".into()),
        ))
    }

    async fn wait_with_probe(
        &self,
        c: &ContainerInspectResponse,
        probe: &HealthProbe,
        service: &ServiceRef,
        start: Duration,
    ) -> Result<Result<(), Failure>, BackendError> {
        let id = InstanceId(c.id.clone().unwrap_or_default());
        let instance = inspected_instance(c, service);
        let deadline = Instant::now() + start;
        let mut last = String::new();
        // A probe is a request, so it is repeated; the limits are the start
        // timeout and the number of attempts it allows.
        let attempts = (start.as_millis() / probe.interval.as_millis().max(1)).max(1) as usize + 1;
        for _ in 0..attempts {
            let now = self.inspect(&id).await?;
            if !is_running(&now) {
                return Ok(Err(exit_failure(&now)));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, probe.verifier.verify(&instance, &probe.check)).await {
                Ok(Ok(())) => return Ok(Ok(())),
                Ok(Err(why)) => last = why,
                Err(_) => break,
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            tokio::time::sleep(probe.interval.min(left)).await;
        }
        if !last.is_empty() {
            return Ok(Err(Failure::Unhealthy(format!(
                "probe {} did not pass within the start timeout: {last}",
                probe.check.path
            ))));
        }
        Ok(Err(Failure::StartTimeout))
    }
}

#[async_trait]
impl Backend for DockerBackend {
    async fn instances(&self, service: &ServiceRef) -> Result<Vec<Instance>, BackendError> {
        let mut found: Vec<Instance> = self
            .containers(service)
            .await?
            .iter()
            .map(|c| to_instance(c, service))
            .collect();
        found.sort_by_key(|i| number_of(&i.host));
        Ok(found)
    }

    async fn launch(
        &self,
        service: &ServiceRef,
        revision: &Revision,
        count: usize,
    ) -> Result<Vec<Instance>, BackendError> {
        if count == 0 {
            return Ok(Vec::new());
        }
        // One launch at a time: Compose scales to a total, so two at once
        // would each count the other's containers.
        let _one = self.launching.lock().await;
        // The first instance of the revision the Compose file names comes
        // from the Compose tool; later ones are copies of a container of
        // it, with the same labels and config hash (so Compose takes them
        // for its own), made through the API in a tenth of the time.
        let compose_hash = self.compose_hash(service).await?;
        let has_one = self.copy_of(&revision.id).is_some()
            || self
                .containers(service)
                .await?
                .iter()
                .any(|c| revision_of(c) == revision.id);
        if revision.id == compose_hash && !has_one {
            self.launch_with_compose(service, revision, count).await
        } else if revision.id == compose_hash {
            // Nothing is ever pulled: the image the file names must be here.
            self.check_image(&revision.image).await?;
            self.launch_from_spec(service, revision, count).await
        } else {
            self.launch_from_spec(service, revision, count).await
        }
    }

    async fn wait_healthy(
        &self,
        instance: &InstanceId,
        timeouts: &Timeouts,
    ) -> Result<Result<(), Failure>, BackendError> {
        let c = self.inspect(instance).await?;
        let labels_of = c
            .config
            .as_ref()
            .and_then(|c| c.labels.clone())
            .unwrap_or_default();
        let service = ServiceRef::new(
            labels_of.get(labels::PROJECT).cloned().unwrap_or_default(),
            labels_of.get(labels::SERVICE).cloned().unwrap_or_default(),
        );
        if !has_healthcheck(&c) {
            if let Some(probe) = self.probes.get(&service.service) {
                return self
                    .wait_with_probe(&c, probe, &service, timeouts.start)
                    .await;
            }
            return Err(BackendError::Other(format!(
                "{} ({}) has no healthcheck and no probe is configured, so nothing can tell when it is ready\nhint: add a healthcheck to the service (or a HEALTHCHECK to its image), or an x-rollout probe",
                container_label(&c),
                if service.service.is_empty() { "no service".to_string() } else { service.to_string() },
            )));
        }
        if !is_running(&c) {
            return Ok(Err(exit_failure(&c)));
        }
        match health_status(&c) {
            Some(HealthStatusEnum::HEALTHY) => return Ok(Ok(())),
            Some(HealthStatusEnum::UNHEALTHY) => return self.unhealthy(instance).await.map(Err),
            _ => {}
        }
        // Inspect said "starting", so no health event happened since the
        // start: replaying from the start misses nothing, whenever the
        // subscription takes hold.
        let since = c
            .state
            .as_ref()
            .and_then(|s| s.started_at.as_deref())
            .and_then(parse_rfc3339_nanos)
            .map(|n| format!("{}.{:09}", n / 1_000_000_000, n % 1_000_000_000))
            .unwrap_or_else(|| self.engine.engine_time_minus(Duration::from_secs(1)));
        let id = c.id.clone().unwrap_or_else(|| instance.0.clone());
        let mut events = self.events(Scope::Containers(vec![id]), since);
        let deadline = Instant::now() + timeouts.start;
        loop {
            let next = match tokio::time::timeout_at(deadline, events.next()).await {
                Err(_) => return Ok(Err(Failure::StartTimeout)),
                Ok(None) => {
                    return Err(BackendError::Unreachable {
                        endpoint: self.engine.endpoint().to_string(),
                        reason: "the engine closed its event stream".into(),
                    })
                }
                Ok(Some(Err(e))) => return Err(self.engine.error(e)),
                Ok(Some(Ok(event))) => event,
            };
            match classify(&next) {
                Some(Seen::Healthy) => return Ok(Ok(())),
                Some(Seen::Unhealthy) => return self.unhealthy(instance).await.map(Err),
                Some(Seen::Died) => return self.exited(instance).await.map(Err),
                None => {}
            }
        }
    }

    async fn watch_failures(
        &self,
        instances: &[InstanceId],
        within: Duration,
    ) -> Result<Option<(InstanceId, Failure)>, BackendError> {
        if instances.is_empty() {
            tokio::time::sleep(within).await;
            return Ok(None);
        }
        let since = self.engine.engine_time_minus(Duration::from_secs(1));
        let mut full_ids = Vec::new();
        let mut projects = HashSet::new();
        for id in instances {
            let c = self.inspect(id).await?;
            if !is_running(&c) {
                return Ok(Some((id.clone(), exit_failure(&c))));
            }
            if health_status(&c) == Some(HealthStatusEnum::UNHEALTHY) {
                return Ok(Some((id.clone(), self.unhealthy(id).await?)));
            }
            projects.insert(
                c.config
                    .as_ref()
                    .and_then(|c| c.labels.as_ref())
                    .and_then(|l| l.get(labels::PROJECT).cloned())
                    .unwrap_or_default(),
            );
            full_ids.push((c.id.clone().unwrap_or_else(|| id.0.clone()), id.clone()));
        }
        // Many instances of one project: filter by its label rather than
        // by a query string of thousands of ids, and pick ours here.
        let scope = match projects.iter().next() {
            Some(project) if projects.len() == 1 && !project.is_empty() && full_ids.len() > 1 => {
                Scope::Project(project.clone())
            }
            _ => Scope::Containers(full_ids.iter().map(|(full, _)| full.clone()).collect()),
        };
        let mut events = self.events(scope, since);
        let deadline = Instant::now() + within;
        loop {
            let next = match tokio::time::timeout_at(deadline, events.next()).await {
                Err(_) => return Ok(None),
                Ok(None) => {
                    return Err(BackendError::Unreachable {
                        endpoint: self.engine.endpoint().to_string(),
                        reason: "the engine closed its event stream".into(),
                    })
                }
                Ok(Some(Err(e))) => return Err(self.engine.error(e)),
                Ok(Some(Ok(event))) => event,
            };
            let actor = next
                .actor
                .as_ref()
                .and_then(|a| a.id.clone())
                .unwrap_or_default();
            let Some((_, id)) = full_ids.iter().find(|(full, _)| *full == actor) else {
                continue;
            };
            match classify(&next) {
                Some(Seen::Unhealthy) => return Ok(Some((id.clone(), self.unhealthy(id).await?))),
                Some(Seen::Died) => {
                    let code = next
                        .actor
                        .as_ref()
                        .and_then(|a| a.attributes.as_ref())
                        .and_then(|a| a.get("exitCode").cloned())
                        .unwrap_or_else(|| "?".into());
                    return Ok(Some((
                        id.clone(),
                        Failure::Exited(format!("exit code {code}")),
                    )));
                }
                Some(Seen::Healthy) | None => {}
            }
        }
    }

    async fn stop(&self, instance: &InstanceId, grace: Duration) -> Result<(), BackendError> {
        let c = self.inspect(instance).await?;
        // Stopping a drained instance must not wait on the way back: when
        // the spec cannot be saved (its image is gone), a later launch of
        // the revision says why.
        if let Err(e) = self.save_spec(&c).await {
            let revision = c
                .config
                .as_ref()
                .and_then(|c| c.labels.as_ref())
                .and_then(|l| l.get(labels::CONFIG_HASH).cloned())
                .unwrap_or_default();
            self.unsaved
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(revision, e.to_string());
        }
        let seconds = grace.as_millis().div_ceil(1000).min(i32::MAX as u128) as i32;
        let options = StopContainerOptions {
            t: Some(seconds),
            ..Default::default()
        };
        match self
            .engine
            .docker_for(grace)
            .stop_container(&instance.0, Some(options))
            .await
        {
            Ok(()) => Ok(()),
            Err(e) if status(&e) == Some(404) => {
                Err(BackendError::NoSuchInstance(instance.clone()))
            }
            Err(e) => Err(self.engine.error(e)),
        }
    }

    async fn remove(&self, instance: &InstanceId) -> Result<(), BackendError> {
        let c = self.inspect(instance).await?;
        if is_running(&c) {
            return Err(BackendError::Other(format!(
                "{} is still running; stop it first",
                container_label(&c)
            )));
        }
        let options = RemoveContainerOptions {
            force: false,
            ..Default::default()
        };
        match self
            .engine
            .docker()
            .remove_container(&instance.0, Some(options))
            .await
        {
            Ok(()) => {}
            Err(e) if status(&e) == Some(404) => {
                return Err(BackendError::NoSuchInstance(instance.clone()))
            }
            Err(e) => return Err(self.engine.error(e)),
        }
        let l = c.config.and_then(|c| c.labels).unwrap_or_default();
        if let (Some(project), Some(service)) = (l.get(labels::PROJECT), l.get(labels::SERVICE)) {
            // Housekeeping: the instance is gone whether or not it works.
            let _ = self
                .prune_specs(&ServiceRef::new(project.clone(), service.clone()))
                .await;
        }
        Ok(())
    }

    async fn diagnostics(&self, instance: &InstanceId) -> Result<Diagnostics, BackendError> {
        let c = self.inspect(instance).await?;
        let options = LogsOptions {
            stdout: true,
            stderr: true,
            tail: LOG_LINES.to_string(),
            ..Default::default()
        };
        let mut logs = self.engine.docker().logs(&instance.0, Some(options));
        let mut text = String::new();
        while let Some(chunk) = logs.next().await {
            match chunk {
                Ok(out) => text.push_str(&String::from_utf8_lossy(&out.into_bytes())),
                // A report of a failure should not fail for want of logs
                // (a logging driver that keeps none, for one).
                Err(e) => {
                    text.push_str(&format!("(no more logs: {})\n", self.engine.error(e)));
                    break;
                }
            }
        }
        let mut last_logs: Vec<String> = text.lines().map(str::to_string).collect();
        let cut = last_logs.len().saturating_sub(LOG_LINES);
        last_logs.drain(..cut);
        Ok(Diagnostics {
            last_logs,
            health_log: health_log(&c),
        })
    }
}

/// Which containers' events to ask the engine for.
enum Scope {
    /// These, by id.
    Containers(Vec<String>),
    /// Every container of this Compose project.
    Project(String),
}

enum Seen {
    Healthy,
    Unhealthy,
    Died,
}

fn classify(event: &EventMessage) -> Option<Seen> {
    match event.action.as_deref()?.trim() {
        "die" => Some(Seen::Died),
        "health_status: healthy" => Some(Seen::Healthy),
        "health_status: unhealthy" => Some(Seen::Unhealthy),
        _ => None,
    }
}

fn has_healthcheck(c: &ContainerInspectResponse) -> bool {
    let test = c
        .config
        .as_ref()
        .and_then(|c| c.healthcheck.as_ref())
        .and_then(|h| h.test.as_ref());
    match test {
        Some(t) => !t.is_empty() && t[0] != "NONE",
        // A healthcheck from the image shows in State.Health once started.
        None => c.state.as_ref().and_then(|s| s.health.as_ref()).is_some(),
    }
}

fn health_status(c: &ContainerInspectResponse) -> Option<HealthStatusEnum> {
    c.state.as_ref()?.health.as_ref()?.status
}

fn is_running(c: &ContainerInspectResponse) -> bool {
    c.state.as_ref().and_then(|s| s.running).unwrap_or(false)
}

fn exit_failure(c: &ContainerInspectResponse) -> Failure {
    let state = c.state.clone().unwrap_or_default();
    let mut what = match state.status {
        Some(ContainerStateStatusEnum::CREATED) => "it was never started".to_string(),
        _ => format!("exit code {}", state.exit_code.unwrap_or(-1)),
    };
    if state.oom_killed == Some(true) {
        what.push_str(", killed for lack of memory");
    }
    if let Some(error) = state.error.filter(|e| !e.is_empty()) {
        what.push_str(": ");
        what.push_str(&error);
    }
    Failure::Exited(what)
}

fn health_log(c: &ContainerInspectResponse) -> Vec<String> {
    c.state
        .as_ref()
        .and_then(|s| s.health.as_ref())
        .and_then(|h| h.log.as_ref())
        .map(|log| {
            log.iter()
                .map(|r| {
                    format!(
                        "exit {}: {}",
                        r.exit_code.unwrap_or(-1),
                        r.output.as_deref().unwrap_or_default().trim()
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

fn container_label(c: &ContainerInspectResponse) -> String {
    c.name
        .as_deref()
        .map(|n| n.trim_start_matches('/').to_string())
        .unwrap_or_else(|| short(c.id.as_deref().unwrap_or_default()))
}

fn revision_of(c: &ContainerSummary) -> &str {
    c.labels
        .as_ref()
        .and_then(|l| l.get(labels::CONFIG_HASH))
        .map(String::as_str)
        .unwrap_or_default()
}

fn summary_state(c: &ContainerSummary) -> InstanceState {
    use bollard::models::ContainerSummaryStateEnum as S;
    match c.state {
        Some(S::RUNNING) | Some(S::PAUSED) => InstanceState::Running,
        Some(S::CREATED) => InstanceState::Created,
        _ => InstanceState::Exited,
    }
}

/// Health as `docker ps` prints it (`Up 3 seconds (healthy)`): engines
/// before API 1.52 give no health field in the list.
fn summary_health(c: &ContainerSummary) -> Health {
    if summary_state(c) != InstanceState::Running {
        return Health::None;
    }
    let text = c.status.as_deref().unwrap_or_default();
    if text.contains("(healthy)") {
        Health::Healthy
    } else if text.contains("(unhealthy)") {
        Health::Unhealthy
    } else if text.contains("(health: starting)") {
        Health::Starting
    } else {
        Health::None
    }
}

fn to_instance(c: &ContainerSummary, service: &ServiceRef) -> Instance {
    let host = c
        .names
        .as_ref()
        .and_then(|n| n.first())
        .map(|n| n.trim_start_matches('/').to_string())
        .unwrap_or_default();
    Instance {
        id: InstanceId(c.id.clone().unwrap_or_default()),
        host,
        service: service.clone(),
        revision: revision_of(c).to_string(),
        state: summary_state(c),
        health: summary_health(c),
    }
}

fn inspected_instance(c: &ContainerInspectResponse, service: &ServiceRef) -> Instance {
    let revision = c
        .config
        .as_ref()
        .and_then(|c| c.labels.as_ref())
        .and_then(|l| l.get(labels::CONFIG_HASH).cloned())
        .unwrap_or_default();
    let health = match health_status(c) {
        Some(HealthStatusEnum::HEALTHY) => Health::Healthy,
        Some(HealthStatusEnum::UNHEALTHY) => Health::Unhealthy,
        Some(HealthStatusEnum::STARTING) => Health::Starting,
        _ => Health::None,
    };
    let state = match c.state.as_ref().and_then(|s| s.status) {
        Some(ContainerStateStatusEnum::RUNNING) | Some(ContainerStateStatusEnum::PAUSED) => {
            InstanceState::Running
        }
        Some(ContainerStateStatusEnum::CREATED) => InstanceState::Created,
        _ => InstanceState::Exited,
    };
    Instance {
        id: InstanceId(c.id.clone().unwrap_or_default()),
        host: container_label(c),
        service: service.clone(),
        revision,
        state,
        health,
    }
}

/// The replica number at the end of a Compose container name, for ordering.
fn number_of(host: &str) -> (u64, String) {
    let digits: String = host
        .chars()
        .rev()
        .take_while(char::is_ascii_digit)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    (digits.parse().unwrap_or(u64::MAX), host.to_string())
}

fn short(id: &str) -> String {
    id.trim_start_matches("sha256:").chars().take(12).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use bollard::models::{EventActor, HealthConfig};

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

    #[test]
    fn health_from_the_status_text_of_older_engines() {
        let summary = |status: &str| ContainerSummary {
            state: Some(bollard::models::ContainerSummaryStateEnum::RUNNING),
            status: Some(status.into()),
            ..Default::default()
        };
        assert_eq!(
            summary_health(&summary("Up 3 seconds (healthy)")),
            Health::Healthy
        );
        assert_eq!(
            summary_health(&summary("Up 1 second (health: starting)")),
            Health::Starting
        );
        assert_eq!(
            summary_health(&summary("Up 9 seconds (unhealthy)")),
            Health::Unhealthy
        );
        assert_eq!(summary_health(&summary("Up 2 hours")), Health::None);
    }

    #[test]
    fn a_none_test_is_no_healthcheck() {
        let with = |test: Vec<&str>| ContainerInspectResponse {
            config: Some(bollard::models::ContainerConfig {
                healthcheck: Some(HealthConfig {
                    test: Some(test.into_iter().map(String::from).collect()),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert!(!has_healthcheck(&with(vec!["NONE"])));
        assert!(has_healthcheck(&with(vec!["CMD", "true"])));
        assert!(!has_healthcheck(&ContainerInspectResponse::default()));
    }

    #[test]
    fn replicas_sort_by_number() {
        let mut hosts = vec!["p_app_10", "p_app_2", "p_app_1"];
        hosts.sort_by_key(|h| number_of(h));
        assert_eq!(hosts, vec!["p_app_1", "p_app_2", "p_app_10"]);
    }
}
