//! Which upstream routes a service: the one whose servers name it.
//!
//! An operator's config names the service in one `upstream` block (`server
//! app:8000;` at rest), or, in the middle of a rollout, containers of it by
//! the names Compose gives them (`shop_app_3` for docker-compose 1,
//! `shop-app-3` for Compose 2). With two colours taking turns, the upstream
//! names whichever colour is live. Exactly one upstream must match: none or
//! several is a config the tool cannot use without being told which.

use crate::tree::ConfFile;

/// No single upstream of a config names the service.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RoutingError {
    /// No upstream names the service or one of its containers.
    #[error("no upstream in {path} names {} (upstreams: {})", .names.join(" or "), listed(.upstreams))]
    NoUpstream {
        /// The config file.
        path: String,
        /// The service names looked for.
        names: Vec<String>,
        /// Every upstream of the file, in order.
        upstreams: Vec<String>,
    },
    /// Several upstreams name it.
    #[error("several upstreams in {path} name {}: {}", .names.join(" or "), .found.join(", "))]
    Several {
        /// The config file.
        path: String,
        /// The service names looked for.
        names: Vec<String>,
        /// The upstreams that name one of them.
        found: Vec<String>,
    },
}

fn listed(upstreams: &[String]) -> String {
    if upstreams.is_empty() {
        "none".to_string()
    } else {
        upstreams.join(", ")
    }
}

impl ConfFile {
    /// The one upstream of this file whose servers name one of `names` (the
    /// service, or its other colour) or a container of it in Compose
    /// project `project`.
    pub fn upstream_routing(
        &self,
        project: &str,
        names: &[String],
    ) -> Result<String, RoutingError> {
        let all = self.upstream_names();
        let matches_name = |host: &str| {
            names.iter().any(|n| {
                host == n
                    || host.starts_with(&format!("{project}_{n}_"))
                    || host.starts_with(&format!("{project}-{n}-"))
            })
        };
        let found: Vec<String> = all
            .iter()
            .filter(|u| {
                self.upstream(u).is_ok_and(|up| {
                    up.servers
                        .iter()
                        .any(|s| s.server.address.host().is_some_and(matches_name))
                })
            })
            .cloned()
            .collect();
        let path = self.path().display().to_string();
        match found.len() {
            1 => Ok(found.into_iter().next().unwrap_or_default()),
            0 => Err(RoutingError::NoUpstream {
                path,
                names: names.to_vec(),
                upstreams: all,
            }),
            _ => Err(RoutingError::Several {
                path,
                names: names.to_vec(),
                found,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEED: &str = "events {}\n\nhttp {\n    upstream backend {\n        server app:8000;\n    }\n    upstream other {\n        server api:9000;\n    }\n    server {\n        listen 80;\n        location / {\n            proxy_pass http://backend;\n        }\n    }\n}\n";

    fn routing(conf: &str, names: &[&str]) -> Result<String, RoutingError> {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        ConfFile::parse("/etc/nginx/nginx.conf", conf.as_bytes().to_vec())
            .unwrap()
            .upstream_routing("shop", &names)
    }

    #[test]
    fn the_upstream_naming_the_service_or_its_containers() {
        assert_eq!(routing(SEED, &["app"]).unwrap(), "backend");
        let v1 = SEED.replace("server app:8000;", "server shop_app_3:8000;");
        assert_eq!(routing(&v1, &["app"]).unwrap(), "backend");
        let v2 = SEED.replace("server app:8000;", "server shop-app-3:8000;");
        assert_eq!(routing(&v2, &["app"]).unwrap(), "backend");
        // Another project's container of the same service is not ours.
        let elsewhere = SEED.replace("server app:8000;", "server blog-app-3:8000;");
        assert!(routing(&elsewhere, &["app"]).is_err());
        let bg = SEED.replace("server app:8000;", "server blue:8000;");
        assert_eq!(routing(&bg, &["green", "blue"]).unwrap(), "backend");
    }

    #[test]
    fn none_or_several_say_what_the_file_has() {
        assert_eq!(
            routing(SEED, &["web"]).unwrap_err(),
            RoutingError::NoUpstream {
                path: "/etc/nginx/nginx.conf".into(),
                names: vec!["web".into()],
                upstreams: vec!["backend".into(), "other".into()],
            }
        );
        assert_eq!(
            routing("events {}\n", &["web", "api"])
                .unwrap_err()
                .to_string(),
            "no upstream in /etc/nginx/nginx.conf names web or api (upstreams: none)"
        );
        let two = SEED.replace("server api:9000;", "server app:9000;");
        assert_eq!(
            routing(&two, &["app"]).unwrap_err().to_string(),
            "several upstreams in /etc/nginx/nginx.conf name app: backend, other"
        );
    }
}
