//! Pulling the image a rollout goes to, through the engine (`POST
//! /images/create`), before the target revision is formed: the revision is
//! the config hash and the image id the reference resolves to, so a pull
//! that moves the tag is what makes a new image the target.
//!
//! Whether to pull is the policy's ([`PullPolicy`]); the credentials are
//! the docker config's ([`crate::auth`]); progress goes to the caller, one
//! [`PullProgress`] per state a layer reaches (not per byte). A failure
//! says which image and which registry, and what kind it is, so that the
//! caller can exit with the code DESIGN.md gives: no such image (bad input),
//! a registry that cannot be reached, a registry that refuses us.

use crate::auth::{self, AuthError, Credentials};
use crate::engine::{status, Engine};
use bollard::auth::DockerCredentials;
use bollard::errors::Error as BollardError;
use bollard::query_parameters::CreateImageOptions;
use futures::StreamExt;
use rollout_core::{BackendError, PullPolicy};
use std::collections::HashMap;
use std::path::Path;

/// An image reference, split as the engine's pull API takes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    /// The registry host (`127.0.0.1:5000`; `docker.io` when the reference
    /// names none).
    pub registry: String,
    /// The repository with its registry, as written (`127.0.0.1:5000/app`).
    pub name: String,
    /// The tag or digest (`latest` when the reference names neither).
    pub tag: String,
}

impl Reference {
    /// Splits `image` by the docker CLI's rules: the first path component
    /// is a registry when it has a `.` or a `:` or is `localhost`; a
    /// digest follows `@`; a tag is the last `:` after the last `/`.
    pub fn parse(image: &str) -> Reference {
        let (name, tag) = match image.split_once('@') {
            Some((name, digest)) => (name.to_string(), digest.to_string()),
            None => {
                let slash = image.rfind('/').map_or(0, |i| i + 1);
                match image[slash..].rfind(':') {
                    Some(colon) => (
                        image[..slash + colon].to_string(),
                        image[slash + colon + 1..].to_string(),
                    ),
                    None => (image.to_string(), "latest".to_string()),
                }
            }
        };
        let registry = match name.split_once('/') {
            Some((first, _))
                if first.contains('.') || first.contains(':') || first == "localhost" =>
            {
                first.to_string()
            }
            _ => auth::DOCKER_HUB.to_string(),
        };
        Reference {
            registry,
            name,
            tag,
        }
    }
}

/// One state a pull reached: a layer's (`Pulling fs layer`, `Download
/// complete`, `Pull complete`), or the pull's own (`Pulling from app`,
/// `Digest: sha256:...`, `Status: Downloaded newer image for ...`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullProgress {
    /// The layer, when the state is a layer's.
    pub layer: Option<String>,
    /// What the engine said.
    pub status: String,
}

/// What [`ensure_image`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pulled {
    /// It pulled the image.
    Pulled,
    /// The policy did not ask for a pull.
    NotAsked,
}

/// Why a pull failed; every kind names the image and the registry.
#[derive(Debug, thiserror::Error)]
pub enum PullError {
    /// The registry answered, and has no such image (or tag).
    #[error("no image {image} in the registry {registry}: {reason}\nhint: push it there, or correct the image in the Compose file")]
    NoSuchImage {
        /// The reference.
        image: String,
        /// The registry host.
        registry: String,
        /// What the engine said.
        reason: String,
    },
    /// The registry cannot be reached.
    #[error("the registry {registry} cannot be reached to pull {image}: {reason}\nhint: start the registry or check the network, or pass --pull never to roll out the image the engine has")]
    Unreachable {
        /// The reference.
        image: String,
        /// The registry host.
        registry: String,
        /// What the engine said.
        reason: String,
    },
    /// The registry refused the credentials (or asks for some).
    #[error("the registry {registry} refused to let {image} be pulled: {reason}\nhint: docker login {registry}")]
    Denied {
        /// The reference.
        image: String,
        /// The registry host.
        registry: String,
        /// What the engine said.
        reason: String,
    },
    /// The pull failed otherwise.
    #[error("pulling {image} from {registry} failed: {reason}")]
    Failed {
        /// The reference.
        image: String,
        /// The registry host.
        registry: String,
        /// What the engine said.
        reason: String,
    },
    /// The credentials could not be read.
    #[error(transparent)]
    Credentials(#[from] AuthError),
    /// The engine itself failed (unreachable, or refused otherwise).
    #[error(transparent)]
    Engine(#[from] BackendError),
}

/// What kind of failure the engine's message `reason` describes.
fn classify(reference: &Reference, image: &str, reason: String) -> PullError {
    let lower = reason.to_lowercase();
    let has = |words: &[&str]| words.iter().any(|w| lower.contains(w));
    let image = image.to_string();
    let registry = reference.registry.clone();
    if has(&[
        "manifest unknown",
        "not found",
        "does not exist",
        "name unknown",
    ]) {
        PullError::NoSuchImage {
            image,
            registry,
            reason,
        }
    } else if has(&[
        "dial tcp",
        "connection refused",
        "no such host",
        "i/o timeout",
        "timeout exceeded",
        "deadline exceeded",
        "connection reset",
        "no route to host",
        "network is unreachable",
        "server misbehaving",
        "tls handshake",
    ]) {
        PullError::Unreachable {
            image,
            registry,
            reason,
        }
    } else if has(&["unauthorized", "authentication required", "denied"]) {
        PullError::Denied {
            image,
            registry,
            reason,
        }
    } else {
        PullError::Failed {
            image,
            registry,
            reason,
        }
    }
}

/// Pulls `image` from its registry with `credentials`, telling `progress`
/// each state a layer reaches (once per state, not per byte).
pub async fn pull(
    engine: &Engine,
    image: &str,
    credentials: Option<Credentials>,
    progress: &mut (dyn FnMut(PullProgress) + Send),
) -> Result<(), PullError> {
    let reference = Reference::parse(image);
    let options = CreateImageOptions {
        from_image: Some(reference.name.clone()),
        tag: Some(reference.tag.clone()),
        ..Default::default()
    };
    let credentials = credentials.map(|c| DockerCredentials {
        username: Some(c.username).filter(|s| !s.is_empty()),
        password: Some(c.password).filter(|s| !s.is_empty()),
        identitytoken: Some(c.identity_token).filter(|s| !s.is_empty()),
        serveraddress: Some(c.server),
        ..Default::default()
    });
    let mut stream = engine
        .docker()
        .create_image(Some(options), None, credentials);
    let mut last: HashMap<Option<String>, String> = HashMap::new();
    while let Some(item) = stream.next().await {
        let info = match item {
            Ok(info) => info,
            Err(BollardError::DockerStreamError { error }) => {
                return Err(classify(&reference, image, error))
            }
            Err(e @ BollardError::DockerResponseServerError { .. }) => {
                let reason = match &e {
                    BollardError::DockerResponseServerError { message, .. } => message.clone(),
                    _ => e.to_string(),
                };
                return Err(match status(&e) {
                    Some(404) => PullError::NoSuchImage {
                        image: image.to_string(),
                        registry: reference.registry.clone(),
                        reason,
                    },
                    _ => classify(&reference, image, reason),
                });
            }
            Err(e) => return Err(PullError::Engine(engine.error(e))),
        };
        let Some(state) = info.status.filter(|s| !s.is_empty()) else {
            continue;
        };
        let layer = info.id.filter(|id| !id.is_empty() && *id != reference.tag);
        if last.get(&layer) == Some(&state) {
            continue;
        }
        last.insert(layer.clone(), state.clone());
        progress(PullProgress {
            layer,
            status: state,
        });
    }
    Ok(())
}

/// Pulls `image` when `policy` asks for it (for `missing`: when the engine
/// has no image under the reference), with the credentials of the docker
/// config in `config_dir`.
pub async fn ensure_image(
    engine: &Engine,
    image: &str,
    policy: PullPolicy,
    config_dir: Option<&Path>,
    progress: &mut (dyn FnMut(PullProgress) + Send),
) -> Result<Pulled, PullError> {
    let present = match policy {
        PullPolicy::Missing => match engine.docker().inspect_image(image).await {
            Ok(_) => true,
            Err(e) if status(&e) == Some(404) => false,
            Err(e) => return Err(PullError::Engine(engine.error(e))),
        },
        PullPolicy::Always | PullPolicy::Never => false,
    };
    if !policy.pulls(present) {
        return Ok(Pulled::NotAsked);
    }
    let registry = Reference::parse(image).registry;
    let credentials = auth::credentials_for(config_dir, &registry).await?;
    pull(engine, image, credentials, progress).await?;
    Ok(Pulled::Pulled)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(image: &str) -> (String, String, String) {
        let r = Reference::parse(image);
        (r.registry, r.name, r.tag)
    }

    #[test]
    fn references_split_as_the_docker_cli_splits_them() {
        let t = |a: &str, b: &str, c: &str| (a.to_string(), b.to_string(), c.to_string());
        assert_eq!(
            parts("127.0.0.1:5000/app:latest"),
            t("127.0.0.1:5000", "127.0.0.1:5000/app", "latest")
        );
        assert_eq!(
            parts("127.0.0.1:5000/app"),
            t("127.0.0.1:5000", "127.0.0.1:5000/app", "latest")
        );
        assert_eq!(parts("app:v2"), t("docker.io", "app", "v2"));
        assert_eq!(
            parts("library/nginx"),
            t("docker.io", "library/nginx", "latest")
        );
        assert_eq!(
            parts("localhost/team/app:1.2"),
            t("localhost", "localhost/team/app", "1.2")
        );
        assert_eq!(
            parts("reg.example/app@sha256:abcd"),
            t("reg.example", "reg.example/app", "sha256:abcd")
        );
    }

    #[test]
    fn failures_are_told_apart_by_what_the_engine_says() {
        let r = Reference::parse("127.0.0.1:5000/app:nope");
        let kind = |reason: &str| match classify(&r, "127.0.0.1:5000/app:nope", reason.into()) {
            PullError::NoSuchImage { .. } => "none",
            PullError::Unreachable { .. } => "unreachable",
            PullError::Denied { .. } => "denied",
            _ => "other",
        };
        assert_eq!(
            kind("manifest for 127.0.0.1:5000/app:nope not found: manifest unknown: manifest unknown"),
            "none"
        );
        assert_eq!(
            kind("Get \"http://127.0.0.1:5000/v2/\": dial tcp 127.0.0.1:5000: connect: connection refused"),
            "unreachable"
        );
        assert_eq!(
            kind("Head \"https://r/v2/app/manifests/x\": unauthorized: authentication required"),
            "denied"
        );
        assert_eq!(kind("disk full"), "other");
        let e = classify(&r, "127.0.0.1:5000/app:nope", "dial tcp: refused".into());
        assert!(
            e.to_string().starts_with(
                "the registry 127.0.0.1:5000 cannot be reached to pull 127.0.0.1:5000/app:nope: "
            ),
            "{e}"
        );
    }
}
