//! What the rollout keeps with the engine for a project, outside Compose: the never-started
//! containers the Docker backend holds its lock, its journal and the saved specs of revisions
//! in (labelled `io.rollout.project`, so that `docker compose ps` and `down` ignore them, and
//! removed with the [`crate::Project`] by that label).

use crate::engine::{docker, run_ok};
use crate::project::Project;

/// A never-started container the Docker backend keeps state in.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Keeper {
    /// `lock`, `journal`, `revision` (the saved spec of a revision, the way back to it),
    /// `history` (an entry of `docker rollout history`), and the proxy's `proxyjournal`.
    pub kind: String,
    /// Its name.
    pub name: String,
    /// Its state (`created`: never started).
    pub state: String,
}

/// The keeper containers of the project named `project`, sorted by kind and name, but for the
/// history: its entries (the last 20 rollouts per service, `docker rollout history`) are kept
/// on purpose, and the verbs suite reads them through the plugin.
pub fn keepers(project: &str) -> Vec<Keeper> {
    let mut k = all_keepers(project);
    k.retain(|k| k.kind != "history");
    k
}

/// Every keeper container of the project named `project`, the history's too.
pub fn all_keepers(project: &str) -> Vec<Keeper> {
    let out = run_ok(docker().args([
        "ps",
        "--all",
        "--filter",
        &format!("label=io.rollout.project={project}"),
        "--format",
        "{{.Label \"io.rollout.kind\"}}\t{{.Names}}\t{{.State}}",
    ]));
    let mut k: Vec<Keeper> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            (f.len() == 3).then(|| Keeper {
                kind: f[0].into(),
                name: f[1].into(),
                state: f[2].into(),
            })
        })
        .collect();
    k.sort();
    k
}

/// The names of the lock and journal records of a project: none may be left when a rollout
/// ended in a final state (completed, rolled back, no change).
pub fn rollout_leftovers(p: &Project) -> Vec<String> {
    keepers(p.name())
        .into_iter()
        .filter(|k| k.kind != "revision")
        .map(|k| k.name)
        .collect()
}
