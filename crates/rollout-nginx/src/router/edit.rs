//! The bridge to the crate's parser and upstream editor: the only place
//! that reads or rewrites config text.
//!
//! The rest of the router handles bytes, files and processes; what a config
//! says (the upstream's servers, the `pid` directive) and every change to it
//! (a route change applied to the upstream, the operator's parameters copied
//! to new lines) come from here, in the router's own error type. It is a
//! room of its own so that the router's protocol reads without nginx syntax
//! in it, and so that the `upstream` module stays the one writer of config
//! text.

use crate::tree::ConfFile;
use crate::upstream::{Address, EditError, Param};
use rollout_core::error::RouterError;
use rollout_core::router::RouteChange;
use std::collections::HashSet;

/// One `server` line of the upstream, as the router needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Server {
    pub host: String,
    pub port: Option<u16>,
    pub weight: u32,
    pub down: bool,
}

fn parse(bytes: &[u8], path: &str) -> Result<ConfFile, RouterError> {
    ConfFile::parse(path, bytes.to_vec()).map_err(|e| {
        RouterError::Config(format!(
            "{e}\nhint: the router edits only a config that nginx itself would read"
        ))
    })
}

/// The editor's refusals are validation failures with a file and line;
/// a missing upstream is bad input.
fn refused(e: EditError) -> RouterError {
    match e {
        EditError::Refused {
            upstream,
            file,
            line,
            server,
            reason,
        } => RouterError::Invalid {
            location: format!("{}:{line}", file.display()),
            message: format!("upstream \"{upstream}\": server {server}: {reason}"),
        },
        EditError::NoPrimary {
            upstream,
            file,
            line,
        } => RouterError::Invalid {
            location: format!("{}:{line}", file.display()),
            message: format!(
                "upstream \"{upstream}\" would have no primary server (nginx: no servers in upstream)"
            ),
        },
        e @ (EditError::Internal { .. } | EditError::Reparse(_) | EditError::Create { .. }) => {
            RouterError::Other(e.to_string())
        }
        e => RouterError::Config(e.to_string()),
    }
}

/// The servers of `upstream` in `bytes` (the file at `path`).
pub(super) fn servers(
    bytes: &[u8],
    path: &str,
    upstream: &str,
) -> Result<Vec<Server>, RouterError> {
    let file = parse(bytes, path)?;
    let up = file.upstream(upstream).map_err(refused)?;
    Ok(up
        .servers
        .iter()
        .map(|line| {
            let address = &line.server.address;
            Server {
                host: address
                    .host()
                    .map(str::to_string)
                    .unwrap_or_else(|| address.to_string()),
                port: address.port(),
                weight: line.server.weight(),
                down: line.server.is_down(),
            }
        })
        .collect())
}

/// `bytes` with `change` applied to `upstream`: removed hosts lose their
/// line, set ones get their weight or a new line `host:port`; the rest of
/// the file stays byte for byte.
///
/// A new line copies the parameters of the upstream's first server line
/// as it was before the change, other than `weight`, `backup`, `down` and
/// `service=` (which belong to one line): the operator's `max_fails=3
/// fail_timeout=5s` on `server app:8000` then goes to the instance lines
/// of a rollout, and back to the service line at rest.
pub(super) fn apply(
    bytes: &[u8],
    path: &str,
    upstream: &str,
    change: &RouteChange,
    port: u16,
) -> Result<Vec<u8>, RouterError> {
    let file = parse(bytes, path)?;
    let up = file.upstream(upstream).map_err(refused)?;
    let template: Vec<Param> = up
        .servers
        .first()
        .map(|line| {
            line.server
                .params
                .iter()
                .filter(|p| {
                    !matches!(
                        p,
                        Param::Weight(_) | Param::Backup | Param::Down | Param::Service(_)
                    )
                })
                .cloned()
                .collect()
        })
        .unwrap_or_default();
    let before: HashSet<&Address> = up.servers.iter().map(|l| &l.server.address).collect();
    let edited = file
        .apply_route_change(upstream, change, port)
        .map_err(refused)?;
    if template.is_empty() {
        return Ok(edited.source().to_vec());
    }
    let mut servers = edited.upstream(upstream).map_err(refused)?.server_set();
    let mut added = false;
    for server in servers.iter_mut().filter(|s| !before.contains(&s.address)) {
        let weight = server.weight();
        server.params = template.clone();
        server.set_weight(weight);
        added = true;
    }
    if !added {
        return Ok(edited.source().to_vec());
    }
    let templated = edited.set_servers(upstream, &servers).map_err(refused)?;
    Ok(templated.source().to_vec())
}

fn log_refused(e: crate::accesslog::LogError) -> RouterError {
    RouterError::Config(format!(
        "{e}\nhint: canary analysis reads a log of the tool's own, arranged beside the operator's; without analysis rules none is needed"
    ))
}

/// Whether the tool's log can be arranged in `bytes` (checked at open).
pub(super) fn check_log(
    bytes: &[u8],
    path: &str,
    upstream: &str,
    log: &crate::accesslog::MetricsLog,
) -> Result<(), RouterError> {
    let file = parse(bytes, path)?;
    crate::accesslog::arrange(&file, upstream, log).map_err(log_refused)?;
    Ok(())
}

/// `bytes` (the config after a route change) with the tool's log arranged
/// while the upstream's traffic is split, or while `keep` (a new colour
/// judged after a blue-green switch), and without it at rest (so the
/// change that ends a canary also removes it, and lines a killed run left
/// go with the first change to rest). At rest means no server line names an
/// instance and at most one names a service (two colours weighted against
/// each other are a canary step).
pub(super) fn metrics_log(
    bytes: &[u8],
    path: &str,
    upstream: &str,
    services: &[String],
    log: Option<&crate::accesslog::MetricsLog>,
    keep: bool,
) -> Result<Vec<u8>, RouterError> {
    let file = parse(bytes, path)?;
    let up = file.upstream(upstream).map_err(refused)?;
    let hosts: Vec<String> = up
        .servers
        .iter()
        .filter(|l| !l.server.is_down())
        .map(|l| {
            let a = &l.server.address;
            a.host()
                .map(str::to_string)
                .unwrap_or_else(|| a.to_string())
        })
        .collect();
    let named = hosts.iter().filter(|h| services.contains(h)).count();
    let at_rest = named == hosts.len() && named <= 1 && !(keep && log.is_some());
    let out = match log {
        Some(log) if !at_rest => {
            crate::accesslog::arrange(&file, upstream, log).map_err(log_refused)?
        }
        _ if at_rest && crate::accesslog::has_tool_lines(&file, upstream) => {
            crate::accesslog::remove(&file, upstream).map_err(log_refused)?
        }
        _ => return Ok(bytes.to_vec()),
    };
    Ok(out.source().to_vec())
}

/// The main context's `pid` directive, when there is one.
pub(super) fn pid_directive(bytes: &[u8], path: &str) -> Result<Option<String>, RouterError> {
    let file = parse(bytes, path)?;
    let pid = file
        .items()
        .directives()
        .find(|d| d.name().value().as_ref() == b"pid")
        .and_then(|d| d.args().next())
        .map(|arg| arg.value_lossy());
    Ok(pid)
}

#[cfg(test)]
mod tests {
    use crate::router::edit;
    use rollout_core::error::RouterError;
    use rollout_core::model::InstanceId;
    use rollout_core::router::{Route, RouteChange, Target};

    #[test]
    fn edits_go_through_the_upstream_editor() {
        let src = b"http {\n    upstream app {\n        server app:8000;\n    }\n}\n";
        let servers = edit::servers(src, "nginx.conf", "app").unwrap();
        assert_eq!(
            servers,
            vec![edit::Server {
                host: "app".into(),
                port: Some(8000),
                weight: 1,
                down: false
            }]
        );
        let change = RouteChange {
            set: vec![Route {
                target: Target::instance(InstanceId::from("c1"), "app-1"),
                weight: 2,
            }],
            remove: vec![Target::Service { name: "app".into() }],
        };
        let edited = edit::apply(src, "nginx.conf", "app", &change, 8000).unwrap();
        assert_eq!(
            edited,
            b"http {\n    upstream app {\n        server app-1:8000 weight=2;\n    }\n}\n"
        );
        // New lines copy the first line's parameters, and the service line
        // comes back as the operator wrote it.
        let tuned = b"upstream app {\n    server app:8000 max_fails=3 fail_timeout=5s;\n}\n";
        let during = edit::apply(tuned, "n", "app", &change, 8000).unwrap();
        assert_eq!(
            String::from_utf8(during.clone()).unwrap(),
            "upstream app {\n    server app-1:8000 max_fails=3 fail_timeout=5s weight=2;\n}\n"
        );
        let back = RouteChange {
            set: vec![Route {
                target: Target::Service { name: "app".into() },
                weight: 1,
            }],
            remove: vec![Target::instance(InstanceId::from("c1"), "app-1")],
        };
        assert_eq!(
            edit::apply(&during, "n", "app", &back, 8000).unwrap(),
            tuned.to_vec()
        );
        let everything = RouteChange {
            set: vec![],
            remove: vec![Target::Service { name: "app".into() }],
        };
        match edit::apply(src, "nginx.conf", "app", &everything, 8000) {
            Err(RouterError::Invalid { location, .. }) => assert_eq!(location, "nginx.conf:2"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            edit::servers(src, "nginx.conf", "nope"),
            Err(RouterError::Config(_))
        ));
        assert!(matches!(
            edit::servers(b"http {", "nginx.conf", "app"),
            Err(RouterError::Config(_))
        ));
        assert_eq!(
            edit::pid_directive(b"pid /run/x.pid;\nhttp { pid no; }\n", "n").unwrap(),
            Some("/run/x.pid".into())
        );
        assert_eq!(edit::pid_directive(src, "n").unwrap(), None);
    }

    #[test]
    fn the_tool_log_is_there_while_traffic_is_split_and_gone_at_rest() {
        use crate::accesslog::{MetricsLog, MARKER};
        let log = MetricsLog::new(
            "/var/log/nginx/rollout-app.log",
            "/var/log/nginx/access.log",
        )
        .unwrap();
        let colours = ["green".to_string(), "blue".to_string()];
        let conf = |servers: &str| {
            format!(
                "http {{\n    upstream app {{\n{servers}    }}\n    server {{\n        location / {{\n            proxy_pass http://app;\n        }}\n    }}\n}}\n"
            )
        };
        let rest = conf("        server blue:8000;\n");
        // At rest: nothing added, with or without a log asked for.
        let out =
            edit::metrics_log(rest.as_bytes(), "n", "app", &colours, Some(&log), false).unwrap();
        assert_eq!(out, rest.as_bytes());
        // Two colours weighted against each other, or an instance line: split.
        for split in [
            conf("        server blue:8000 weight=9;\n        server green:8000;\n"),
            conf("        server app-1:8000;\n"),
        ] {
            let out = edit::metrics_log(split.as_bytes(), "n", "app", &colours, Some(&log), false)
                .unwrap();
            let text = String::from_utf8(out.clone()).unwrap();
            assert!(text.contains(MARKER), "{text}");
            // Without a log asked for, a split upstream keeps what is there.
            assert_eq!(
                edit::metrics_log(&out, "n", "app", &colours, None, false).unwrap(),
                out
            );
        }
        // Lines a run left are removed at rest, whatever this run's options.
        let split = conf("        server green:8000;\n        server blue:8000;\n");
        let during =
            edit::metrics_log(split.as_bytes(), "n", "app", &colours, Some(&log), false).unwrap();
        let left = String::from_utf8(during)
            .unwrap()
            .replace("        server green:8000;\n", "");
        assert_eq!(
            edit::metrics_log(left.as_bytes(), "n", "app", &colours, None, false).unwrap(),
            rest.as_bytes()
        );
        // Kept after a blue-green switch: one colour, yet measured; let go,
        // the same config comes back to the operator's.
        let switched = conf("        server green:8000;\n");
        let kept =
            edit::metrics_log(switched.as_bytes(), "n", "app", &colours, Some(&log), true).unwrap();
        let text = String::from_utf8(kept.clone()).unwrap();
        assert!(text.contains(MARKER), "{text}");
        assert_eq!(
            edit::metrics_log(&kept, "n", "app", &colours, Some(&log), true).unwrap(),
            kept,
            "arranged once"
        );
        assert_eq!(
            edit::metrics_log(&kept, "n", "app", &colours, Some(&log), false).unwrap(),
            switched.as_bytes()
        );
        // Keeping asks for nothing without a log of the tool's own.
        assert_eq!(
            edit::metrics_log(&kept, "n", "app", &colours, None, true).unwrap(),
            switched.as_bytes()
        );
    }
}
