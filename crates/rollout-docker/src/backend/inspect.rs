//! What a container's list entry or inspection says, in rollout-core's
//! words: state, health, revision, failures.

use super::revision;
use crate::labels;
use bollard::models::{
    ContainerInspectResponse, ContainerStateStatusEnum, ContainerSummary, HealthStatusEnum,
};
use rollout_core::backend::Failure;
use rollout_core::{Health, Instance, InstanceId, InstanceState, ServiceRef};
use std::collections::HashSet;

pub(super) fn has_healthcheck(c: &ContainerInspectResponse) -> bool {
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

pub(super) fn health_status(c: &ContainerInspectResponse) -> Option<HealthStatusEnum> {
    c.state.as_ref()?.health.as_ref()?.status
}

pub(super) fn is_running(c: &ContainerInspectResponse) -> bool {
    c.state.as_ref().and_then(|s| s.running).unwrap_or(false)
}

pub(super) fn exit_failure(c: &ContainerInspectResponse) -> Failure {
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

pub(super) fn health_log(c: &ContainerInspectResponse) -> Vec<String> {
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

pub(super) fn container_label(c: &ContainerInspectResponse) -> String {
    c.name
        .as_deref()
        .map(|n| n.trim_start_matches('/').to_string())
        .unwrap_or_else(|| short(c.id.as_deref().unwrap_or_default()))
}

/// The revision a listed container runs: its Compose config hash and the
/// image id it runs ([`revision::form`]).
pub(super) fn revision_of(c: &ContainerSummary) -> String {
    let hash = c
        .labels
        .as_ref()
        .and_then(|l| l.get(labels::CONFIG_HASH))
        .map(String::as_str)
        .unwrap_or_default();
    revision::form(hash, c.image_id.as_deref().unwrap_or_default())
}

pub(super) fn summary_state(c: &ContainerSummary) -> InstanceState {
    use bollard::models::ContainerSummaryStateEnum as S;
    match c.state {
        Some(S::RUNNING) | Some(S::PAUSED) => InstanceState::Running,
        Some(S::CREATED) => InstanceState::Created,
        _ => InstanceState::Exited,
    }
}

/// Whether the tool launched the listed container: it carries
/// [`labels::LAUNCHED`].
pub(super) fn launched_by_us(c: &ContainerSummary) -> bool {
    c.labels
        .as_ref()
        .and_then(|l| l.get(labels::LAUNCHED))
        .is_some_and(|v| v == "true")
}

/// Whether a listed container of the service is the tool's to manage: a
/// running one (the serving revision, which a rollout replaces, whoever
/// made it), or a stopped one that it launched, or that it stopped itself
/// (`retiring`: the ids it was about to remove). Any other stopped
/// container (an operator's crashed one, kept for a post-mortem) is left
/// alone: never removed, started, counted or routed.
pub(super) fn is_ours_to_manage(c: &ContainerSummary, retiring: &HashSet<String>) -> bool {
    use bollard::models::ContainerSummaryStateEnum as S;
    // A container the engine is restarting (its restart policy, between
    // crashes) is serving as far as its owner is concerned: the rollout
    // replaces it as it does a running one.
    summary_state(c) == InstanceState::Running
        || c.state == Some(S::RESTARTING)
        || launched_by_us(c)
        || c.id.as_ref().is_some_and(|id| retiring.contains(id))
}

/// Health as `docker ps` prints it (`Up 3 seconds (healthy)`): engines
/// before API 1.52 give no health field in the list.
pub(super) fn summary_health(c: &ContainerSummary) -> Health {
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

pub(super) fn to_instance(c: &ContainerSummary, service: &ServiceRef) -> Instance {
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
        revision: revision_of(c),
        state: summary_state(c),
        health: summary_health(c),
    }
}

/// The revision an inspected container runs: its Compose config hash and the
/// image id it runs ([`revision::form`]), as [`revision_of`] forms it from
/// the list.
pub(super) fn inspected_revision(c: &ContainerInspectResponse) -> String {
    let hash = c
        .config
        .as_ref()
        .and_then(|c| c.labels.as_ref())
        .and_then(|l| l.get(labels::CONFIG_HASH))
        .map(String::as_str)
        .unwrap_or_default();
    revision::form(hash, c.image.as_deref().unwrap_or_default())
}

pub(super) fn inspected_instance(c: &ContainerInspectResponse, service: &ServiceRef) -> Instance {
    let revision = inspected_revision(c);
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
pub(super) fn number_of(host: &str) -> (u64, String) {
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

pub(super) fn short(id: &str) -> String {
    id.trim_start_matches("sha256:").chars().take(12).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use bollard::models::HealthConfig;
    use std::collections::HashMap;

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
    fn the_list_and_an_inspection_form_one_revision() {
        let labels = HashMap::from([(labels::CONFIG_HASH.to_string(), "3f2a9c".to_string())]);
        let listed = |image: &str| ContainerSummary {
            labels: Some(labels.clone()),
            image: Some("app:latest".into()),
            image_id: Some(image.into()),
            ..Default::default()
        };
        let inspected = ContainerInspectResponse {
            image: Some("sha256:ab12".into()),
            config: Some(bollard::models::ContainerConfig {
                image: Some("app:latest".into()),
                labels: Some(labels.clone()),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(revision_of(&listed("sha256:ab12")), "3f2a9c@sha256:ab12");
        assert_eq!(
            inspected_revision(&inspected),
            revision_of(&listed("sha256:ab12"))
        );
        // Same tag, same config, another image: another revision.
        assert_ne!(
            revision_of(&listed("sha256:cd34")),
            revision_of(&listed("sha256:ab12"))
        );
        let service = ServiceRef::new("shop", "app");
        assert_eq!(
            to_instance(&listed("sha256:ab12"), &service).revision,
            inspected_instance(&inspected, &service).revision
        );
    }

    #[test]
    fn a_stopped_container_the_tool_did_not_launch_is_left_alone() {
        use bollard::models::ContainerSummaryStateEnum as S;
        let listed = |id: &str, state: S, ours: bool| ContainerSummary {
            id: Some(id.into()),
            state: Some(state),
            labels: Some(HashMap::from_iter(
                ours.then(|| (labels::LAUNCHED.to_string(), "true".to_string())),
            )),
            ..Default::default()
        };
        let none = HashSet::new();
        // Running: the serving revision, replaced whoever made it.
        assert!(is_ours_to_manage(&listed("a", S::RUNNING, false), &none));
        assert!(is_ours_to_manage(&listed("b", S::RUNNING, true), &none));
        // Exited: the tool's own only.
        assert!(is_ours_to_manage(&listed("c", S::EXITED, true), &none));
        assert!(!is_ours_to_manage(&listed("d", S::EXITED, false), &none));
        assert!(!is_ours_to_manage(&listed("e", S::CREATED, false), &none));
        assert!(!is_ours_to_manage(&listed("f", S::DEAD, false), &none));
        // One its restart policy is bringing back between crashes serves: ours to replace.
        assert!(is_ours_to_manage(&listed("g", S::RESTARTING, false), &none));
        // One the tool stopped itself, killed before it removed it.
        let stopped = HashSet::from(["d".to_string()]);
        assert!(is_ours_to_manage(&listed("d", S::EXITED, false), &stopped));
        // Another value is no mark.
        let mut other = listed("g", S::EXITED, true);
        other
            .labels
            .as_mut()
            .unwrap()
            .insert(labels::LAUNCHED.into(), "false".into());
        assert!(!is_ours_to_manage(&other, &none));
    }

    #[test]
    fn replicas_sort_by_number() {
        let mut hosts = vec!["p_app_10", "p_app_2", "p_app_1"];
        hosts.sort_by_key(|h| number_of(h));
        assert_eq!(hosts, vec!["p_app_1", "p_app_2", "p_app_10"]);
    }
}
