//! Files the Compose tool puts into a container between creating and starting it: Compose 2
//! copies `configs` given by `content:` or `environment:`, and `secrets` from the environment,
//! into the new container's filesystem. The tool makes the first instance of a revision again
//! with its label (see `launch.rs`), and a container made again from its create config would
//! lack them; so they are read from the never-started container first and put into the new one
//! before it starts. A never-started container's changes are exactly what was copied in.

use crate::engine::Engine;
use bollard::models::ChangeType;
use bollard::query_parameters::{DownloadFromContainerOptions, UploadToContainerOptions};
use futures::StreamExt;
use rollout_core::BackendError;

/// One path copied into a container: the archive of it, and the folder it is put into.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Injected {
    /// The folder the archive is unpacked into.
    pub(super) folder: String,
    /// A tar of the path (its last component at the archive's root).
    pub(super) archive: Vec<u8>,
}

/// The paths to carry over from a never-started container's changes: every added path whose
/// folder is not carried already (a carried folder's archive holds what is under it), and every
/// changed path with nothing changed under it (a file Compose replaced; a changed folder is
/// only the parent of an addition). Deletions cannot come from a copy and are left out. Nothing
/// at, under or above a mount point (`mounts`, the container's mount destinations) is carried
/// whole: reading it would read the volume or the host's folder, and writing it into the new
/// container would write them; an added folder above a mount point is carried path by path.
fn to_carry(changes: &[(String, ChangeType)], mounts: &[String]) -> Vec<String> {
    let under = |child: &str, parent: &str| {
        parent == "/"
            || child
                .strip_prefix(parent)
                .is_some_and(|rest| rest.starts_with('/'))
    };
    let touches_mount = |path: &str| {
        mounts
            .iter()
            .any(|m| m == path || under(path, m) || under(m, path))
    };
    // Folders before what is under them, so that a carried folder is known first.
    let mut sorted: Vec<&(String, ChangeType)> = changes.iter().collect();
    sorted.sort_by_key(|(path, _)| path.matches('/').count());
    let mut carried: Vec<String> = Vec::new();
    for (path, kind) in sorted {
        let in_carried = carried.iter().any(|c| under(path, c));
        let has_changes_below = changes.iter().any(|(p, _)| under(p, path));
        let carry = !in_carried
            && !touches_mount(path)
            && match kind {
                ChangeType::_1 => true,
                ChangeType::_0 => !has_changes_below,
                ChangeType::_2 => false,
            };
        if carry {
            carried.push(path.clone());
        }
    }
    carried
}

/// Reads what was copied into the never-started container `id`, whose mount destinations are
/// `mounts`.
pub(super) async fn read(
    engine: &Engine,
    id: &str,
    mounts: &[String],
) -> Result<Vec<Injected>, BackendError> {
    let changes = engine
        .docker()
        .container_changes(id)
        .await
        .map_err(|e| engine.error(e))?
        .unwrap_or_default();
    let changes: Vec<(String, ChangeType)> =
        changes.into_iter().map(|c| (c.path, c.kind)).collect();
    let mut out = Vec::new();
    for path in to_carry(&changes, mounts) {
        let folder = match path.rsplit_once('/') {
            Some(("", _)) | None => "/".to_string(),
            Some((folder, _)) => folder.to_string(),
        };
        let options = DownloadFromContainerOptions { path: path.clone() };
        let mut stream = engine.docker().download_from_container(id, Some(options));
        let mut archive = Vec::new();
        while let Some(chunk) = stream.next().await {
            archive.extend_from_slice(&chunk.map_err(|e| engine.error(e))?);
        }
        out.push(Injected { folder, archive });
    }
    Ok(out)
}

/// Puts `files` into the created, not yet started container `id`.
pub(super) async fn put(engine: &Engine, id: &str, files: &[Injected]) -> Result<(), String> {
    for f in files {
        let options = UploadToContainerOptions {
            path: f.folder.clone(),
            ..Default::default()
        };
        engine
            .docker()
            .upload_to_container(
                id,
                Some(options),
                bollard::body_full(f.archive.clone().into()),
            )
            .await
            .map_err(|e| format!("copying into {}: {}", f.folder, engine.error(e)))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn changes(list: &[(&str, u8)]) -> Vec<(String, ChangeType)> {
        list.iter()
            .map(|(p, k)| {
                let kind = match k {
                    0 => ChangeType::_0,
                    1 => ChangeType::_1,
                    _ => ChangeType::_2,
                };
                (p.to_string(), kind)
            })
            .collect()
    }

    #[test]
    fn added_files_and_replaced_files_are_carried_not_their_folders() {
        // A config added into an existing folder, a secret in a new folder, a file of the
        // image replaced, and a deletion.
        let list = changes(&[
            ("/etc", 0),
            ("/etc/greeting.txt", 1),
            ("/run", 0),
            ("/run/secrets", 1),
            ("/run/secrets/token", 1),
            ("/etc/app.conf", 0),
            ("/etc/gone", 2),
        ]);
        assert_eq!(
            to_carry(&list, &[]),
            ["/etc/greeting.txt", "/run/secrets", "/etc/app.conf"]
        );
        // `/etcetera` is not under `/etc`.
        let list = changes(&[("/etc", 0), ("/etc/x", 1), ("/etcetera", 1)]);
        assert_eq!(to_carry(&list, &[]), ["/etcetera", "/etc/x"]);
        assert!(to_carry(&[], &[]).is_empty());
    }

    #[test]
    fn nothing_at_under_or_above_a_mount_point_is_carried_whole() {
        // `/srv` is new and holds the mount point `/srv/www` (a bind mount) beside a config;
        // `/data` is a volume's mount point with a file Compose put in it.
        let list = changes(&[
            ("/srv", 1),
            ("/srv/www", 1),
            ("/srv/app.yaml", 1),
            ("/data", 1),
            ("/data/seed.json", 1),
        ]);
        let mounts = ["/srv/www".to_string(), "/data".to_string()];
        assert_eq!(to_carry(&list, &mounts), ["/srv/app.yaml"]);
        // A volume's mount point alone: nothing to carry.
        let list = changes(&[("/data", 1)]);
        assert!(to_carry(&list, &mounts).is_empty());
    }
}
