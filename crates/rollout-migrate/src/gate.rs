//! The contract gate: may the contract files run now?
//!
//! Contract is the point of no return: it breaks the old revision. It runs
//! only when every earlier expand and backfill file is applied and no
//! consumer of the database runs an older revision. Which containers run
//! which revision is the rollout's knowledge, not this crate's: the caller
//! passes them in (one-off containers, such as a migration runner, left
//! out), and this function decides.

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
