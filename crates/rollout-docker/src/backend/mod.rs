//! [`DockerBackend`]: the instances of a Compose service as containers of one
//! engine.
//!
//! Rooms: what a revision is (`revision`: the config hash and the image id,
//! what Compose would recreate for), where new instances come from
//! (`launch`), the launch gate that keeps Compose's scaling honest
//! (`gate`), the engine's events (`events`) and what a container's
//! inspection says (`inspect`).

mod events;
mod gate;
mod injected;
mod inspect;
mod launch;
mod revision;

pub use gate::RETIRE_WAIT;

use crate::compose::ComposeCli;
use crate::engine::{parse_rfc3339_nanos, status, Engine};
use crate::keeper;
use crate::labels;
use crate::spec::Spec;
use async_trait::async_trait;
use bollard::models::{ContainerInspectResponse, ContainerSummary, HealthStatusEnum};
use bollard::query_parameters::{LogsOptions, RemoveContainerOptions, StopContainerOptions};
use events::{classify, Next, Scope, Seen, Subscription};
use futures::StreamExt;
use gate::LaunchGate;
use inspect::{
    container_label, exit_failure, has_healthcheck, health_log, health_status, inspected_instance,
    is_ours_to_manage, is_running, number_of, revision_of, to_instance,
};
use rollout_core::backend::{Diagnostics, Failure};
use rollout_core::config::Timeouts;
use rollout_core::strategy::{Verification, Verifier};
use rollout_core::{Backend, BackendError, Instance, InstanceId, Revision, ServiceRef};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

/// How many log lines a failure report carries.
const LOG_LINES: usize = 30;
/// The kind of our never-started containers that keep a revision's spec.
const REVISION_KIND: &str = "revision";

/// The kind of our never-started containers that mark a container the tool
/// did not launch, which it is stopping in order to remove it.
const RETIRING_KIND: &str = "retiring";

/// The name of the `retiring` keeper of container `id` of
/// `project`/`service`.
fn retiring_name(project: &str, service: &str, id: &str) -> String {
    format!(
        "rollout-retiring.{project}.{service}.{}",
        inspect::short(id)
    )
}

/// The project and service of an inspected container of a Compose service
/// that does not carry the tool's [`labels::LAUNCHED`].
fn unlabelled_member(c: &ContainerInspectResponse) -> Option<(String, String)> {
    let l = c.config.as_ref()?.labels.as_ref()?;
    if l.get(labels::LAUNCHED).is_some_and(|v| v == "true") {
        return None;
    }
    Some((
        l.get(labels::PROJECT)?.clone(),
        l.get(labels::SERVICE)?.clone(),
    ))
}

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
/// Instances are the containers labelled with the project and service that
/// are the tool's to manage: the running ones, and the stopped ones it
/// launched (an operator's exited container is left alone); the
/// revision of one is what Compose would recreate it for: its
/// `com.docker.compose.config-hash` label and the image id it runs
/// (`<config-hash>@<image-id>`); its host is its container name, which
/// Docker's DNS resolves on the project's networks.
///
/// The first instance of the revision the Compose file names is created by
/// the operator's Compose tool (`up --no-start --no-deps --no-recreate
/// --scale`), so the project stays what Compose itself would have made, and
/// made again from that create config with the tool's label
/// ([`labels::LAUNCHED`]) before it starts.
/// Every other launch (later instances of that revision, a rollback) creates
/// copies of a container of the revision, or of the spec saved when its last
/// instance was stopped: the same create config, labels and config hash.
pub struct DockerBackend {
    engine: Engine,
    compose: ComposeCli,
    gate: LaunchGate,
    compose_hashes: Mutex<HashMap<String, String>>,
    /// The revision id of the Compose file's revision, by service, as
    /// [`DockerBackend::compose_revision`] formed it last.
    compose_targets: Mutex<HashMap<String, String>>,
    unsaved: Mutex<HashMap<String, String>>,
    /// Saved specs this process made or found, by keeper name.
    saved: Mutex<HashSet<String>>,
    /// What copies of a revision are made from (spec, environment, image
    /// reference), by revision, once read.
    copies: Mutex<HashMap<String, CopySource>>,
    /// Files the Compose tool copied into the first instance of a revision (see
    /// `injected.rs`), by revision: copies made by this process get them too.
    injected: Mutex<HashMap<String, Vec<injected::Injected>>>,
    probes: HashMap<String, HealthProbe>,
    extra_labels: HashMap<String, String>,
    /// Stop calls the engine is still finishing (its network teardown),
    /// by instance, for instances whose process has exited: their removal
    /// waits for them.
    stopping: Mutex<HashMap<String, StopCall>>,
}

/// An engine stop call left to finish.
type StopCall = tokio::task::JoinHandle<Result<(), BackendError>>;

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
            gate: LaunchGate::default(),
            compose_hashes: Mutex::new(HashMap::new()),
            compose_targets: Mutex::new(HashMap::new()),
            unsaved: Mutex::new(HashMap::new()),
            saved: Mutex::new(HashSet::new()),
            copies: Mutex::new(HashMap::new()),
            injected: Mutex::new(HashMap::new()),
            stopping: Mutex::new(HashMap::new()),
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

    /// The addresses of `service`'s containers on their networks, each with
    /// the revision the container runs: what nginx logs as `$upstream_addr`
    /// for a server line naming the container (canary analysis tells
    /// revisions apart by them).
    pub async fn addresses(
        &self,
        service: &ServiceRef,
    ) -> Result<Vec<(String, String)>, BackendError> {
        let mut out = Vec::new();
        for c in self.members(service).await? {
            let revision = to_instance(&c, service).revision;
            let networks = c
                .network_settings
                .as_ref()
                .and_then(|n| n.networks.as_ref());
            for ip in crate::addresses::endpoint_ips(networks.into_iter().flat_map(|n| n.values()))
            {
                out.push((ip.to_string(), revision.clone()));
            }
        }
        Ok(out)
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
    /// hash as the Compose tool computes it (`config --hash`) and the id of
    /// the image `image` (the service's image reference) resolves to on the
    /// engine now, so that a new image under the same tag is a new revision
    /// and the same image is none. [`BackendError::MissingImage`] when the
    /// reference resolves to nothing; an empty `image` (Compose builds it)
    /// gives the hash alone. Later launches of this revision go through the
    /// Compose tool (the first) and copies of it.
    pub async fn compose_revision(
        &self,
        service: &ServiceRef,
        image: &str,
    ) -> Result<Revision, BackendError> {
        let (hash, image_id) = tokio::try_join!(self.compose_hash(service), self.image_id(image))?;
        let id = revision::form(&hash, image_id.as_deref().unwrap_or_default());
        self.compose_targets
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(service.service.clone(), id.clone());
        let target = Revision::new(id, image);
        Ok(match image_id {
            Some(image_id) => target.with_image_id(image_id),
            None => target,
        })
    }

    /// Whether revision `id` of `service` can be launched again: a
    /// container of it runs, or its spec was saved (`docker rollout undo`
    /// asks before it changes anything). `Err` when the engine cannot say.
    pub async fn can_launch(&self, service: &ServiceRef, id: &str) -> Result<bool, BackendError> {
        match self.spec_of(service, id).await {
            Ok(_) => Ok(true),
            Err(BackendError::Launch { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// The id of the image `image` names on the engine now (`None` for an
    /// empty reference).
    async fn image_id(&self, image: &str) -> Result<Option<String>, BackendError> {
        if image.is_empty() {
            return Ok(None);
        }
        match self.engine.docker().inspect_image(image).await {
            Ok(found) => Ok(found.id),
            Err(e) if status(&e) == Some(404) => Err(BackendError::MissingImage {
                image: image.to_string(),
            }),
            Err(e) => Err(self.engine.error(e)),
        }
    }

    /// Whether `revision` is the one the Compose file names for `service`:
    /// the one [`DockerBackend::compose_revision`] formed, or, when it was
    /// never asked, the one formed now from `revision`'s image reference.
    async fn is_compose_target(
        &self,
        service: &ServiceRef,
        revision: &Revision,
    ) -> Result<bool, BackendError> {
        let known = self
            .compose_targets
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&service.service)
            .cloned();
        Ok(match known {
            Some(id) => id == revision.id,
            None => self.compose_revision(service, &revision.image).await?.id == revision.id,
        })
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
        let found = self.engine.list_containers(filters, true).await?;
        Ok(found
            .into_iter()
            .filter(|c| {
                let oneoff = c.labels.as_ref().and_then(|l| l.get(labels::ONEOFF));
                !oneoff.is_some_and(|v| v.eq_ignore_ascii_case("true"))
            })
            .collect())
    }

    /// The containers of `service` that are the tool's to manage
    /// ([`is_ours_to_manage`]), and apart the ones it leaves alone.
    async fn sorted(
        &self,
        service: &ServiceRef,
    ) -> Result<(Vec<ContainerSummary>, Vec<ContainerSummary>), BackendError> {
        let all = self.containers(service).await?;
        if all.iter().all(|c| is_ours_to_manage(c, &HashSet::new())) {
            return Ok((all, Vec::new()));
        }
        let retiring = self.retiring(service, &all).await?;
        Ok(all
            .into_iter()
            .partition(|c| is_ours_to_manage(c, &retiring)))
    }

    /// The containers of `service` that are the tool's to manage: what
    /// [`Backend::instances`] lists, launches count and specs are read from.
    async fn members(&self, service: &ServiceRef) -> Result<Vec<ContainerSummary>, BackendError> {
        Ok(self.sorted(service).await?.0)
    }

    /// The names of the stopped containers of `service` that the tool did
    /// not launch (an operator's crashed one, kept for a post-mortem): it
    /// leaves them alone, and a rollout says so once.
    pub async fn left_alone(&self, service: &ServiceRef) -> Result<Vec<String>, BackendError> {
        let mut names: Vec<String> = self
            .sorted(service)
            .await?
            .1
            .iter()
            .map(|c| to_instance(c, service).host)
            .collect();
        names.sort_by_key(|n| number_of(n));
        Ok(names)
    }

    /// The ids of the containers of `service` (`all`) that the tool stopped
    /// and had yet to remove when it was interrupted (its `retiring`
    /// keepers); the keepers of containers that are gone are removed.
    async fn retiring(
        &self,
        service: &ServiceRef,
        all: &[ContainerSummary],
    ) -> Result<HashSet<String>, BackendError> {
        let ids: HashSet<&str> = all.iter().filter_map(|c| c.id.as_deref()).collect();
        let mut found = HashSet::new();
        let keepers = keeper::list(
            &self.engine,
            RETIRING_KIND,
            &service.project,
            &service.service,
        )
        .await?;
        for k in keepers {
            let about = k
                .labels
                .as_ref()
                .and_then(|l| l.get(labels::CONTAINER))
                .cloned()
                .unwrap_or_default();
            if ids.contains(about.as_str()) {
                found.insert(about);
            } else if let Some(id) = &k.id {
                // Housekeeping: its container is gone.
                let _ = keeper::remove(&self.engine, id).await;
            }
        }
        Ok(found)
    }

    async fn inspect(&self, id: &InstanceId) -> Result<ContainerInspectResponse, BackendError> {
        match self.engine.docker().inspect_container(&id.0, None).await {
            Ok(c) => Ok(c),
            Err(e) if status(&e) == Some(404) => Err(BackendError::NoSuchInstance(id.clone())),
            Err(e) => Err(self.engine.error(e)),
        }
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

    /// Counts and creates `count` containers of `revision`, not started.
    async fn create_instances(
        &self,
        service: &ServiceRef,
        revision: &Revision,
        count: usize,
    ) -> Result<Vec<launch::Made>, BackendError> {
        // The first instance of the revision the Compose file names comes
        // from the Compose tool; later ones are copies of a container of
        // it, with the same labels and config hash (so Compose takes them
        // for its own), made through the API in a tenth of the time.
        let compose_target = self.is_compose_target(service, revision).await?;
        let has_one = self.copy_of(&revision.id).is_some()
            || self
                .members(service)
                .await?
                .iter()
                .any(|c| revision_of(c) == revision.id);
        if compose_target && !has_one {
            self.launch_with_compose(service, revision, count).await
        } else if compose_target {
            // Nothing is ever pulled: the image the file names must be here.
            self.check_image(&revision.image).await?;
            self.launch_from_spec(service, revision, count).await
        } else {
            self.launch_from_spec(service, revision, count).await
        }
    }

    /// Stops an instance the gate knows is retiring; its revision's spec is
    /// saved first (the way back).
    async fn stop_retiring(
        &self,
        instance: &InstanceId,
        grace: Duration,
    ) -> Result<(), BackendError> {
        let c = self.inspect(instance).await?;
        // Stopping a drained instance must not wait on the way back: when
        // the spec cannot be saved (its image is gone), a later launch of
        // the revision says why.
        if let Err(e) = self.save_spec(&c).await {
            let revision = inspect::inspected_revision(&c);
            self.unsaved
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(revision, e.to_string());
        }
        // A container the tool did not launch carries no label of its own:
        // a keeper marks it as the tool's before it stops, so that a run
        // interrupted before the removal finishes it on resume instead of
        // leaving it alone as an operator's.
        if let Some((project, service)) = unlabelled_member(&c) {
            let mut keep =
                keeper::base_labels(RETIRING_KIND, &project, &service, &self.extra_labels);
            keep.insert(labels::CONTAINER.into(), c.id.clone().unwrap_or_default());
            let name = retiring_name(&project, &service, c.id.as_deref().unwrap_or_default());
            let image = c.image.clone().unwrap_or_default();
            keeper::create(&self.engine, &name, &image, keep, Vec::new()).await?;
        }
        let seconds = grace.as_millis().div_ceil(1000).min(i32::MAX as u128) as i32;
        let options = StopContainerOptions {
            t: Some(seconds),
            ..Default::default()
        };
        // The engine's stop call returns a tenth of a second or more after
        // the container's process exited (measured here; what the engine
        // finishes meanwhile is its own). The instance is stopped when its
        // process has exited (its `die` event): the call is left to finish,
        // and the removal, and a launch of a copy that takes a host port,
        // wait for it.
        let since = self.engine.engine_time_minus(Duration::ZERO);
        let full = c.id.clone().unwrap_or_else(|| instance.0.clone());
        let mut events = Subscription::new(self, Scope::Containers(vec![full]), since);
        let (docker, engine, id) = (
            self.engine.docker_for(grace),
            self.engine.clone(),
            instance.clone(),
        );
        let mut call = tokio::spawn(async move {
            match docker.stop_container(&id.0, Some(options)).await {
                Ok(()) => Ok(()),
                Err(e) if status(&e) == Some(404) => Err(BackendError::NoSuchInstance(id)),
                Err(e) => Err(engine.error(e)),
            }
        });
        let deadline = Instant::now() + grace + Duration::from_secs(60);
        loop {
            tokio::select! {
                done = &mut call => return joined(done),
                next = events.next(deadline) => match next {
                    // A `die` replayed from before the stop (a crash its
                    // restart policy followed) leaves it running.
                    Some(Next::Event(e))
                        if matches!(classify(&e), Some(Seen::Died))
                            && !self.inspect(instance).await.is_ok_and(|c| is_running(&c)) =>
                    {
                        self.stops().insert(instance.0.clone(), call);
                        return Ok(());
                    }
                    Some(_) => {}
                    None => return joined(call.await),
                },
            }
        }
    }

    /// Waits until the engine has finished every stop under way (at most
    /// two minutes: a stop call that hangs fails its removal).
    async fn finish_stops(&self) {
        let until = Instant::now() + Duration::from_secs(120);
        while self.stops().values().any(|c| !c.is_finished()) && Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    fn stops(&self) -> std::sync::MutexGuard<'_, HashMap<String, StopCall>> {
        self.stopping.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Removes a stopped instance, then the saved specs nobody needs.
    async fn remove_stopped(&self, instance: &InstanceId) -> Result<(), BackendError> {
        let call = self.stops().remove(&instance.0);
        if let Some(call) = call {
            joined(call.await)?;
        }
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
        if let Some((project, service)) = unlabelled_member(&c) {
            let name = retiring_name(&project, &service, c.id.as_deref().unwrap_or_default());
            // Housekeeping: a keeper left behind is removed with the next
            // listing that finds its container gone.
            let _ = keeper::remove(&self.engine, &name).await;
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

/// What a spawned engine call gave.
fn joined(
    done: Result<Result<(), BackendError>, tokio::task::JoinError>,
) -> Result<(), BackendError> {
    done.unwrap_or_else(|e| Err(BackendError::Other(format!("the stop call failed: {e}"))))
}

#[async_trait]
impl Backend for DockerBackend {
    async fn instances(&self, service: &ServiceRef) -> Result<Vec<Instance>, BackendError> {
        let mut found: Vec<Instance> = self
            .members(service)
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
        // One launch at a time, and none while an instance is retired: see
        // the gate. It is held while containers are counted and created;
        // starting them (most of a launch's time) needs no count.
        let created = {
            // A revision with a known spec is launched by copy, which
            // counts nothing (see the gate). One that takes a host port
            // waits for the stops under way to finish: a stopped instance
            // gives its port back with its network.
            let copy = self.copy_of(&revision.id);
            if copy
                .as_ref()
                .is_some_and(|(spec, _, _)| spec.publishes_ports())
            {
                self.finish_stops().await;
            }
            let _one = self.gate.launch(copy.is_none()).await;
            let created = self.create_instances(service, revision, count).await?;
            self.gate
                .starting(&created.iter().map(|c| c.id.clone()).collect::<Vec<_>>());
            created
        };
        let ids: Vec<String> = created.iter().map(|c| c.id.clone()).collect();
        let started = self.start_created(service, created).await;
        self.gate.started(&ids);
        started
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
        let mut events = Subscription::new(self, Scope::Containers(vec![id]), since);
        let deadline = Instant::now() + timeouts.start;
        loop {
            let seen = match events.next(deadline).await {
                None => return Ok(Err(Failure::StartTimeout)),
                Some(Next::Event(event)) => classify(&event),
                // The stream dropped: what it may have missed, inspect tells.
                Some(Next::Gap) => {
                    let c = self.inspect(instance).await?;
                    if !is_running(&c) {
                        Some(Seen::Died)
                    } else {
                        match health_status(&c) {
                            Some(HealthStatusEnum::HEALTHY) => Some(Seen::Healthy),
                            Some(HealthStatusEnum::UNHEALTHY) => Some(Seen::Unhealthy),
                            _ => None,
                        }
                    }
                }
            };
            match seen {
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
        let mut events = Subscription::new(self, scope, since);
        let deadline = Instant::now() + within;
        loop {
            let next = match events.next(deadline).await {
                None => return Ok(None),
                Some(Next::Event(event)) => event,
                // The stream dropped: what it may have missed, inspect tells.
                Some(Next::Gap) => {
                    for (_, id) in &full_ids {
                        let c = self.inspect(id).await?;
                        if !is_running(&c) {
                            return Ok(Some((id.clone(), exit_failure(&c))));
                        }
                        if health_status(&c) == Some(HealthStatusEnum::UNHEALTHY) {
                            return Ok(Some((id.clone(), self.unhealthy(id).await?)));
                        }
                    }
                    continue;
                }
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
        self.gate.retiring_begins(instance).await;
        let stopped = self.stop_retiring(instance, grace).await;
        if stopped.is_err() {
            self.gate.retired(instance);
        }
        stopped
    }

    async fn remove(&self, instance: &InstanceId) -> Result<(), BackendError> {
        let removed = self.remove_stopped(instance).await;
        self.gate.retired(instance);
        removed
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

    /// The image a revision's containers run (from one of them, or from its
    /// saved spec) and the image id its id carries.
    async fn describe(&self, service: &ServiceRef, id: &str) -> Result<Revision, BackendError> {
        let image = match self.spec_of(service, id).await {
            // A copy made after its tag moved names the image by id.
            Ok((spec, _)) if !spec.image_name.starts_with("sha256:") => spec.image_name,
            Ok(_) | Err(BackendError::Launch { .. }) => String::new(),
            Err(e) => return Err(e),
        };
        let described = Revision::new(id, image);
        Ok(match revision::image_id_of(id) {
            Some(image_id) => described.with_image_id(image_id),
            None => described,
        })
    }
}
