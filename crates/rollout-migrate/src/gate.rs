//! The contract gate: may the contract files run now?
//!
//! Contract is the point of no return: it breaks the old revision. It runs
//! only when every earlier expand and backfill file is applied and no
//! consumer of the database runs an older revision. Which containers run
//! which revision is the rollout's knowledge, not this crate's: the caller
//! passes them in (one-off containers, such as a migration runner, left
//! out), and this function decides.
//!
//! Which containers are consumers is decided here too, from what the caller
//! saw running in the project ([`consumers`]): every container of the
//! services rolled out (the service and its other blue-green colour), and
//! every container of another service that runs the same image repository
//! (a worker or a scheduler started from the app's image). One-off
//! containers (`docker compose run`: a migration runner, a console) are
//! excepted, as are containers that do not run. A consumer runs an older
//! revision when its image id differs from the target's: the schema is
//! used by the code, and the code is the image. (The backend's revision id
//! also holds the service's config hash, which differs from one service to
//! the next and changes with settings the schema does not care about, so
//! it cannot be compared across services.)

use crate::files::Phase;
use crate::state::{prerequisites, FileStatus};

/// A container of a service that uses the database, and the revision it runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Consumer {
    /// Its name.
    pub container: String,
    /// Its revision (the backend's id).
    pub revision: String,
}

/// A container seen running in the Compose project, as [`consumers`] reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    /// Its name.
    pub container: String,
    /// Its service.
    pub service: String,
    /// The image reference it was created from (`app:v1`).
    pub image: String,
    /// The image id it runs (`sha256:...`).
    pub image_id: String,
    /// A one-off container (`docker compose run`): never a consumer.
    pub oneoff: bool,
    /// Its process runs (a created or exited container serves nothing).
    pub running: bool,
}

/// What contract is for: the revision rolled out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The services whose containers always count (the one rolled out, its
    /// other blue-green colour).
    pub services: Vec<String>,
    /// The image reference of the revision rolled out (`app:v2`): other
    /// services of the same repository (`app`) count too.
    pub image: String,
    /// The image id of the revision rolled out.
    pub image_id: String,
}

/// The repository of an image reference: without its tag or digest
/// (`registry:5000/app:v2` is `registry:5000/app`).
pub fn repository(image: &str) -> &str {
    let image = image.split('@').next().unwrap_or(image);
    let name_start = image.rfind('/').map_or(0, |i| i + 1);
    match image[name_start..].rfind(':') {
        Some(colon) => &image[..name_start + colon],
        None => image,
    }
}

/// The consumers among `seen` and the revision each runs, for
/// [`contract_gate`]: a consumer running the target's image id is given the
/// target's revision (`target_revision`), any other its image and short id.
pub fn consumers(seen: &[Seen], target: &Target, target_revision: &str) -> Vec<Consumer> {
    let repo = repository(&target.image);
    seen.iter()
        .filter(|c| c.running && !c.oneoff)
        .filter(|c| {
            target.services.contains(&c.service)
                || (!target.image_id.is_empty() && c.image_id == target.image_id)
                || (!c.image.starts_with("sha256:") && repository(&c.image) == repo)
        })
        .map(|c| Consumer {
            container: c.container.clone(),
            revision: if !target.image_id.is_empty() && c.image_id == target.image_id {
                target_revision.to_string()
            } else {
                let short: String = c
                    .image_id
                    .trim_start_matches("sha256:")
                    .chars()
                    .take(12)
                    .collect();
                format!("{} ({short}) of service {}", c.image, c.service)
            },
        })
        .collect()
}

/// Why contract cannot run yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// An expand or backfill file before a pending contract file is not applied.
    Pending {
        /// The contract file.
        contract: String,
        /// The file it waits for.
        waits_for: String,
    },
    /// A container still runs an older revision.
    OldRevision(Consumer),
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::Pending {
                contract,
                waits_for,
            } => {
                write!(f, "{contract} waits for {waits_for}, which is not applied")
            }
            Refusal::OldRevision(c) => write!(
                f,
                "container {} still runs revision {}",
                c.container, c.revision
            ),
        }
    }
}

/// The answer: which contract files may run, or every reason they may not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ContractGate {
    /// Nothing to contract.
    Nothing,
    /// These pending contract files may run (by version and name).
    Open(Vec<String>),
    /// Contract must wait; every reason is listed.
    Refused(Vec<Refusal>),
}

/// Decides whether the pending contract files may run, given the state of
/// each file ([`crate::Database::status`]), the revision being rolled out,
/// and the consumers that run now.
pub fn contract_gate(status: &[FileStatus], target: &str, running: &[Consumer]) -> ContractGate {
    let pending: Vec<&FileStatus> = status
        .iter()
        .filter(|s| s.file.phase == Phase::Contract && !s.is_applied())
        .collect();
    if pending.is_empty() {
        return ContractGate::Nothing;
    }
    let mut refusals = Vec::new();
    for p in &pending {
        for m in prerequisites(&p.file, status) {
            refusals.push(Refusal::Pending {
                contract: format!("{}_{}", p.file.version, p.file.name),
                waits_for: format!("{}_{} ({})", m.file.version, m.file.name, m.file.phase),
            });
        }
    }
    refusals.extend(
        running
            .iter()
            .filter(|c| c.revision != target)
            .cloned()
            .map(Refusal::OldRevision),
    );
    if refusals.is_empty() {
        ContractGate::Open(
            pending
                .iter()
                .map(|p| format!("{}_{}", p.file.version, p.file.name))
                .collect(),
        )
    } else {
        ContractGate::Refused(refusals)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::files::parse_file;
    use crate::state::FileState;
    use std::path::Path;

    fn status(name: &str, phase: &str, state: FileState) -> FileStatus {
        let file = parse_file(
            Path::new(name),
            format!("-- rollout: phase={phase}\nSELECT 1;\n").as_bytes(),
        )
        .unwrap()
        .unwrap();
        FileStatus {
            file,
            state,
            release: None,
            rows_done: 0,
            cursor: None,
        }
    }

    fn consumer(c: &str, r: &str) -> Consumer {
        Consumer {
            container: c.into(),
            revision: r.into(),
        }
    }

    fn seen(container: &str, service: &str, image: &str, id: &str) -> Seen {
        Seen {
            container: container.into(),
            service: service.into(),
            image: image.into(),
            image_id: id.into(),
            oneoff: false,
            running: true,
        }
    }

    #[test]
    fn repositories_drop_the_tag_and_digest_only() {
        assert_eq!(repository("app:v2"), "app");
        assert_eq!(repository("app"), "app");
        assert_eq!(
            repository("registry:5000/team/app:v2"),
            "registry:5000/team/app"
        );
        assert_eq!(repository("registry:5000/app"), "registry:5000/app");
        assert_eq!(repository("app:v2@sha256:ab12"), "app");
    }

    #[test]
    fn consumers_are_the_colours_and_the_services_of_the_same_image() {
        let target = Target {
            services: vec!["green".into(), "blue".into()],
            image: "shop/app:v2".into(),
            image_id: "sha256:2222".into(),
        };
        let mut oneoff = seen("p-blue-run-1", "blue", "shop/app:v1", "sha256:1111");
        oneoff.oneoff = true;
        let mut stopped = seen("p-worker-2", "worker", "shop/app:v1", "sha256:1111");
        stopped.running = false;
        let all = [
            seen("p-green-1", "green", "shop/app:v2", "sha256:2222"),
            seen("p-blue-1", "blue", "shop/app:v1", "sha256:1111"),
            // A worker started from the app's image, an older tag.
            seen("p-worker-1", "worker", "shop/app:v1", "sha256:1111"),
            // The same image under another name is the target's.
            seen("p-cron-1", "cron", "mirror/app:latest", "sha256:2222"),
            // Not a consumer: another repository.
            seen("p-nginx-1", "nginx", "nginx:1.27", "sha256:9999"),
            oneoff,
            stopped,
        ];
        let found = consumers(&all, &target, "h@sha256:2222");
        let names: Vec<&str> = found.iter().map(|c| c.container.as_str()).collect();
        assert_eq!(names, ["p-green-1", "p-blue-1", "p-worker-1", "p-cron-1"]);
        assert_eq!(found[0].revision, "h@sha256:2222");
        assert_eq!(found[3].revision, "h@sha256:2222");
        assert_eq!(found[2].revision, "shop/app:v1 (1111) of service worker");
        let status = [
            status("5_add.sql", "expand", FileState::Applied),
            status("7_nn.sql", "contract", FileState::Pending),
        ];
        let ContractGate::Refused(reasons) = contract_gate(&status, "h@sha256:2222", &found) else {
            panic!("the v1 blue and worker hold contract back");
        };
        let named: Vec<String> = reasons.iter().map(|r| r.to_string()).collect();
        assert_eq!(
            named,
            [
                "container p-blue-1 still runs revision shop/app:v1 (1111) of service blue",
                "container p-worker-1 still runs revision shop/app:v1 (1111) of service worker",
            ]
        );
        // Blue and the worker gone, the one-off of the old image left: contract opens.
        let left = [
            all[0].clone(),
            all[3].clone(),
            all[4].clone(),
            all[5].clone(),
        ];
        assert_eq!(
            contract_gate(
                &status,
                "h@sha256:2222",
                &consumers(&left, &target, "h@sha256:2222")
            ),
            ContractGate::Open(vec!["7_nn".into()])
        );
    }

    #[test]
    fn contract_waits_for_earlier_phases_and_old_revisions() {
        let all = [
            status("5_add.sql", "expand", FileState::Applied),
            status("6_fill.sql", "backfill", FileState::Running),
            status("7_nn.sql", "contract", FileState::Pending),
        ];
        let gate = contract_gate(
            &all,
            "v2",
            &[consumer("app-1", "v2"), consumer("app-2", "v1")],
        );
        assert_eq!(
            gate,
            ContractGate::Refused(vec![
                Refusal::Pending {
                    contract: "7_nn".into(),
                    waits_for: "6_fill (backfill)".into()
                },
                Refusal::OldRevision(consumer("app-2", "v1")),
            ])
        );
        let all = [
            status("5_add.sql", "expand", FileState::Applied),
            status("6_fill.sql", "backfill", FileState::Applied),
            status("7_nn.sql", "contract", FileState::Pending),
            // A later release's expand does not hold contract back.
            status("8_next.sql", "expand", FileState::Pending),
        ];
        assert_eq!(
            contract_gate(&all, "v2", &[consumer("app-1", "v2")]),
            ContractGate::Open(vec!["7_nn".into()])
        );
        assert_eq!(contract_gate(&all[..2], "v2", &[]), ContractGate::Nothing);
    }
}
