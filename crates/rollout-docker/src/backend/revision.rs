//! What a revision is on the Docker engine: what Compose would recreate a
//! container for.
//!
//! Compose recreates a service's containers when the config hash of the
//! service differs from their `com.docker.compose.config-hash` label, or
//! when the image the service's image reference resolves to is another one
//! than they run: Compose 2's hash covers the reference only (it compares
//! the image apart), Compose 1.29's happens to cover the image id too. So
//! a revision's id here is both, `<config-hash>@<image-id>`, and it is
//! formed in one place ([`form`]) for every path that names one: the
//! instances (a container's label and the image it runs), the target (the
//! Compose tool's `config --hash` and the image the reference resolves to
//! on the engine now), copies made through the API and saved specs (their
//! labels and the image they pin), and so the journal, which stores the
//! ids it was given. A new image under an unchanged tag is a new revision;
//! the same image id under the same config is the same one (a no-op).

/// The revision id of a container of config hash `config_hash` running the
/// image `image_id`: `<config-hash>@<image-id>`, or the hash alone when the
/// image id is unknown (an image Compose has yet to build).
pub(crate) fn form(config_hash: &str, image_id: &str) -> String {
    if image_id.is_empty() {
        config_hash.to_string()
    } else {
        format!("{config_hash}@{image_id}")
    }
}

/// The image id a revision id carries, if it carries one.
pub(crate) fn image_id_of(revision: &str) -> Option<&str> {
    revision.split_once('@').map(|(_, image)| image)
}

/// The config hash a revision id carries.
pub(crate) fn config_hash_of(revision: &str) -> &str {
    revision.split_once('@').map_or(revision, |(hash, _)| hash)
}

/// What tells a revision apart in a container name: the first 12
/// characters of the config hash and, when there is one, of the image id
/// (`3f2a9c1b7d0e.ab12cd34ef56`).
pub(crate) fn name_part(revision: &str) -> String {
    let short = |s: &str| -> String { s.trim_start_matches("sha256:").chars().take(12).collect() };
    match image_id_of(revision) {
        Some(image) => format!("{}.{}", short(config_hash_of(revision)), short(image)),
        None => short(revision),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HASH: &str = "3f2a9c1b7d0e5a6b";
    const OLD: &str = "sha256:ab12cd34ef5600000000";
    const NEW: &str = "sha256:cd34ef56ab1200000000";

    #[test]
    fn a_new_image_under_the_same_config_is_another_revision() {
        assert_ne!(form(HASH, OLD), form(HASH, NEW));
        assert_eq!(form(HASH, OLD), form(HASH, OLD));
        assert_ne!(form(HASH, OLD), form("77aa00", OLD));
    }

    #[test]
    fn the_parts_come_back_out() {
        let id = form(HASH, NEW);
        assert_eq!(id, format!("{HASH}@{NEW}"));
        assert_eq!(config_hash_of(&id), HASH);
        assert_eq!(image_id_of(&id), Some(NEW));
        assert_eq!(form(HASH, ""), HASH);
        assert_eq!(image_id_of(HASH), None);
        assert_eq!(config_hash_of(HASH), HASH);
    }

    #[test]
    fn names_of_two_images_under_one_config_differ() {
        assert_eq!(name_part(&form(HASH, OLD)), "3f2a9c1b7d0e.ab12cd34ef56");
        assert_eq!(name_part(&form(HASH, NEW)), "3f2a9c1b7d0e.cd34ef56ab12");
        assert_eq!(name_part(HASH), "3f2a9c1b7d0e");
    }
}
