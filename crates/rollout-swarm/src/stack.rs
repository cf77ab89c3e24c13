//! A stack's services as `docker stack deploy -c compose.yaml NAME` makes them: each Compose
//! service `S` becomes the Swarm service `NAME_S`, labelled
//! `com.docker.stack.namespace=NAME` (as are the stack's networks, configs and secrets).

/// The label `docker stack deploy` puts on everything of a stack, valued with its name.
pub const NAMESPACE_LABEL: &str = "com.docker.stack.namespace";

/// The label with the image the Compose file named (before Swarm pins it to a digest).
pub const IMAGE_LABEL: &str = "com.docker.stack.image";

/// The Swarm service name of Compose service `service` in stack `stack`.
pub fn service_name(stack: &str, service: &str) -> String {
    format!("{stack}_{service}")
}

/// The Compose service name of `swarm_name` when it belongs to `stack`, else `None`.
pub fn compose_service<'a>(stack: &str, swarm_name: &'a str) -> Option<&'a str> {
    swarm_name
        .strip_prefix(stack)?
        .strip_prefix('_')
        .filter(|s| !s.is_empty())
}

/// The engine filter that lists the services of `stack` (`label=...`), for
/// `GET /services?filters=...`.
pub fn label_filter(stack: &str) -> String {
    format!("{NAMESPACE_LABEL}={stack}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_go_both_ways() {
        assert_eq!(service_name("shop", "web"), "shop_web");
        assert_eq!(compose_service("shop", "shop_web"), Some("web"));
        assert_eq!(compose_service("shop", "shop_web_2"), Some("web_2"));
    }

    #[test]
    fn a_service_of_another_stack_is_not_ours() {
        assert_eq!(compose_service("shop", "shopping_web"), None);
        assert_eq!(compose_service("shop", "shop_"), None);
        assert_eq!(compose_service("shop", "web"), None);
        assert_eq!(label_filter("shop"), "com.docker.stack.namespace=shop");
    }
}
