//! The contract gate's view of the engine: which containers of the Compose
//! project run, and which revision `docker rollout migrate contract SERVICE`
//! contracts for. The decision itself is rollout-migrate's
//! ([`rollout_migrate::gate`]): every container of the services named (and
//! a rollout's other colour) and of the other services of the same image
//! repository must run the target's image id; one-off containers
//! (`docker compose run`) are excepted.

use crate::cli::ContractScope;
use crate::fail::Fail;
use rollout_compose::{Flavour, ProjectNames};
use rollout_core::exit;
use rollout_docker::running::Running;
use rollout_docker::Engine;
use rollout_migrate::gate::{consumers, contract_gate, ContractGate, Seen, Target};
use rollout_migrate::{FileStatus, MigrateError};

/// rollout-migrate's error with its exit code.
impl From<MigrateError> for Fail {
    fn from(e: MigrateError) -> Self {
        Fail {
            code: e.exit_code(),
            message: e.to_string(),
        }
    }
}

/// The running containers of `projects`, one-off ones marked.
pub async fn running(engine: &Engine, projects: &[&str]) -> Result<Vec<Running>, Fail> {
    rollout_docker::running::running(engine, projects)
        .await
        .map_err(|e| {
            let f = Fail::from(e);
            Fail {
                message: format!("cannot list the project's containers for the contract gate: {f}"),
                ..f
            }
        })
}

/// What the gate reads of each container.
pub fn seen(running: &[Running]) -> Vec<Seen> {
    running
        .iter()
        .map(|r| Seen {
            container: r.container.clone(),
            service: r.service.clone(),
            image: r.image.clone(),
            image_id: r.image_id.clone(),
            oneoff: r.oneoff,
            running: true,
        })
        .collect()
}

/// The gate's answer for `target`, given each file's state.
pub fn decide(status: &[FileStatus], running: &[Running], target: &Target) -> ContractGate {
    let found = consumers(&seen(running), target, &target.image_id);
    contract_gate(status, &target.image_id, &found)
}

/// The target of `docker rollout migrate contract SERVICE...`: the image the
/// newest running container of the first SERVICE runs (after a completed
/// rollout, every one of them runs it). Bad input when it runs none.
pub fn target_of(scope: &ContractScope, running: &[Running]) -> Result<Target, Fail> {
    let Some(first) = scope.services.first() else {
        return Err(Fail::bad_input(
            "the contract gate needs the service that runs the new revision",
        ));
    };
    let newest = running
        .iter()
        .filter(|r| !r.oneoff && &r.service == first)
        .max_by_key(|r| r.created)
        .ok_or_else(|| {
            Fail::bad_input(format!(
                "no container of service {first} runs in the project: name the service that runs the new revision"
            ))
        })?;
    Ok(Target {
        services: scope.services.clone(),
        image: newest.image.clone(),
        image_id: newest.image_id.clone(),
    })
}

/// The project names `scope` reads to (by each Compose tool's rules).
pub fn project_names(scope: &ContractScope) -> ProjectNames {
    ProjectNames::load(&scope.compose.load_options(Flavour::default()))
}

/// The refusal: exit 7 (the state of the containers, not the input, holds
/// contract back; nothing was changed), each reason on its line.
pub fn refused(reasons: &[rollout_migrate::gate::Refusal], dir: &std::path::Path) -> Fail {
    let lines: Vec<String> = reasons.iter().map(|r| format!("  {r}")).collect();
    Fail {
        code: exit::BUSY,
        message: format!(
            "contract refused, nothing changed: the old revision may still use what it removes:\n{}\nhint: once they are gone (stopped, or rolled out to the new image), run `docker rollout migrate contract {} SERVICE` again, or let the next --migrate rollout run it",
            lines.join("\n"),
            dir.display()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::ComposeArgs;

    fn running(
        container: &str,
        service: &str,
        image_id: &str,
        created: i64,
        oneoff: bool,
    ) -> Running {
        Running {
            container: container.into(),
            service: service.into(),
            image: format!("app:{image_id}"),
            image_id: image_id.into(),
            oneoff,
            created,
        }
    }

    #[test]
    fn the_target_is_the_newest_container_of_the_first_service() {
        let scope = ContractScope {
            services: vec!["green".into(), "blue".into()],
            compose: ComposeArgs::default(),
        };
        let all = [
            running("p-green-1", "green", "v1", 10, false),
            running("p-green-2", "green", "v2", 20, false),
            // A newer one-off of the service is not the target.
            running("p-green-run-1", "green", "v3", 30, true),
            running("p-blue-1", "blue", "v1", 5, false),
        ];
        let t = target_of(&scope, &all).unwrap();
        assert_eq!((t.image.as_str(), t.image_id.as_str()), ("app:v2", "v2"));
        assert_eq!(t.services, ["green", "blue"]);
        let none = ContractScope {
            services: vec!["worker".into()],
            compose: ComposeArgs::default(),
        };
        let f = target_of(&none, &all).unwrap_err();
        assert_eq!(f.code, exit::BAD_INPUT);
        assert!(f.message.contains("no container of service worker"), "{f}");
    }
}
