//! Where the engine is: resolved exactly as the docker CLI resolves it for
//! itself, because a plugin is not told.
//!
//! The docker CLI runs a plugin with its own argv (global flags included)
//! and environment, but sets neither `DOCKER_HOST` nor `DOCKER_CONTEXT`: the
//! plugin must find the engine the way the CLI would have
//! (`cli/command/cli.go`, `resolveContextName`):
//!
//! 1. `--context NAME` (with `-H` too is an error, as in the CLI);
//! 2. `-H/--host` (once only): the default context with that host;
//! 3. `DOCKER_HOST`: the default context with that host;
//! 4. `DOCKER_CONTEXT`;
//! 5. `currentContext` in `config.json` of the config directory (`--config`,
//!    else `DOCKER_CONFIG`, else `~/.docker`);
//! 6. the default context: `unix:///var/run/docker.sock`.
//!
//! A named context is the file `contexts/meta/<sha256(name)>/meta.json` of
//! the config directory (its `Endpoints.docker.Host` and `SkipTLSVerify`),
//! with TLS material in `contexts/tls/<sha256(name)>/docker/{ca,cert,key}.pem`.
//! The default context takes TLS from `--tls`, `--tlsverify` and the
//! certificate flags, whose defaults come from `DOCKER_TLS_VERIFY` and
//! `DOCKER_CERT_PATH`.
//!
//! This module only reads files and returns a plain [`Endpoint`]; connecting
//! (bollard for `unix://` and `tcp://`, `docker system dial-stdio` for
//! `ssh://` and TLS) is the caller's choice. It can be deleted once bollard
//! resolves contexts and the plugin's flags itself.

use sha2::{Digest, Sha256};
use std::fmt;
use std::path::{Path, PathBuf};

/// The default engine socket on Unix.
pub const DEFAULT_UNIX_SOCKET: &str = "/var/run/docker.sock";

/// The docker CLI's global flags that choose the engine (given before the
/// plugin's name: `docker --context prod rollout app`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GlobalFlags {
    /// `--config DIR`.
    pub config: Option<PathBuf>,
    /// `-c/--context NAME`.
    pub context: Option<String>,
    /// `-H/--host` (repeatable on the command line; only one is accepted).
    pub hosts: Vec<String>,
    /// `--tls`.
    pub tls: bool,
    /// `--tlsverify` (`Some(false)` when given as `--tlsverify=false`).
    pub tls_verify: Option<bool>,
    /// `--tlscacert`.
    pub tls_ca_cert: Option<PathBuf>,
    /// `--tlscert`.
    pub tls_cert: Option<PathBuf>,
    /// `--tlskey`.
    pub tls_key: Option<PathBuf>,
}

/// How the engine is reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Host {
    /// A unix socket at this path.
    Unix(PathBuf),
    /// TCP, plain or with TLS (see [`Endpoint::tls`]).
    Tcp {
        /// Host name or address (IPv6 without brackets).
        host: String,
        /// Port.
        port: u16,
    },
    /// A Windows named pipe.
    Npipe(String),
    /// An `ssh://` URL: reach it through `docker system dial-stdio`.
    Ssh(String),
}

impl Host {
    /// The host as a Docker URL (`unix:///var/run/docker.sock`, `tcp://h:2376`).
    pub fn url(&self) -> String {
        match self {
            Host::Unix(p) => format!("unix://{}", p.display()),
            Host::Tcp { host, port } if host.contains(':') => format!("tcp://[{host}]:{port}"),
            Host::Tcp { host, port } => format!("tcp://{host}:{port}"),
            Host::Npipe(p) => format!("npipe://{p}"),
            Host::Ssh(url) => url.clone(),
        }
    }
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.url())
    }
}

/// TLS settings: the files to use (absent ones are not used) and whether
/// the server's certificate is checked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tls {
    /// CA certificate.
    pub ca: Option<PathBuf>,
    /// Client certificate.
    pub cert: Option<PathBuf>,
    /// Client key.
    pub key: Option<PathBuf>,
    /// Do not verify the server's certificate.
    pub skip_verify: bool,
}

/// What chose the endpoint, for messages such as "cannot reach the engine
/// at ... (from DOCKER_HOST)".
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// `--context`.
    ContextFlag,
    /// `-H/--host`.
    HostFlag,
    /// `DOCKER_HOST`.
    HostEnv,
    /// `DOCKER_CONTEXT`.
    ContextEnv,
    /// `currentContext` of this config file.
    ConfigFile(PathBuf),
    /// Nothing: the default.
    Default,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::ContextFlag => f.write_str("--context"),
            Origin::HostFlag => f.write_str("-H"),
            Origin::HostEnv => f.write_str("DOCKER_HOST"),
            Origin::ContextEnv => f.write_str("DOCKER_CONTEXT"),
            Origin::ConfigFile(p) => write!(f, "currentContext in {}", p.display()),
            Origin::Default => f.write_str("the default"),
        }
    }
}

/// Where the engine is, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// The context's name (`default` when none was named).
    pub context: String,
    /// What chose it.
    pub origin: Origin,
    /// How to reach it.
    pub host: Host,
    /// TLS, when used.
    pub tls: Option<Tls>,
    /// What the CLI would only warn about (an unreadable config.json).
    pub warnings: Vec<String>,
}

/// The endpoint cannot be resolved. Nothing was contacted.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EndpointError {
    /// `--context` and `-H` together.
    #[error("conflicting options: either specify --host or --context, not both")]
    ContextAndHost,
    /// `-H` given more than once.
    #[error("specify only one -H\nhint: a plugin talks to one engine at a time")]
    SeveralHosts,
    /// A host that does not parse.
    #[error("invalid host {host:?} (from {origin}): {why}")]
    InvalidHost {
        /// The host as given.
        host: String,
        /// Where it came from.
        origin: String,
        /// What is wrong.
        why: String,
    },
    /// A context name the CLI would refuse.
    #[error("invalid context name {name:?} (from {origin}): names are letters, digits and _.+-, starting with a letter or digit")]
    InvalidContextName {
        /// The name.
        name: String,
        /// Where it came from.
        origin: Origin,
    },
    /// No such context in the config directory.
    #[error("context {name:?} (from {origin}) does not exist: no {}\nhint: `docker context ls` lists the contexts", meta.display())]
    NoSuchContext {
        /// The name.
        name: String,
        /// Where it came from.
        origin: Origin,
        /// The metadata file looked for.
        meta: PathBuf,
    },
    /// A context's metadata cannot be read or has no docker endpoint.
    #[error("context {name:?}: {}: {why}", meta.display())]
    BadContext {
        /// The name.
        name: String,
        /// The metadata file.
        meta: PathBuf,
        /// What is wrong.
        why: String,
    },
    /// A TLS file that must be there is not.
    #[error("tls file {} ({what}) cannot be read: {why}", path.display())]
    TlsFile {
        /// The file.
        path: PathBuf,
        /// Which one (`--tlscacert`).
        what: &'static str,
        /// Why.
        why: String,
    },
    /// No home directory and no `DOCKER_CONFIG` to find the config in.
    #[error("cannot find the docker config directory: neither DOCKER_CONFIG nor HOME is set\nhint: pass --config DIR")]
    NoConfigDir,
}

/// Resolves the endpoint from `flags` and the process environment.
pub fn resolve(flags: &GlobalFlags) -> Result<Endpoint, EndpointError> {
    resolve_with(flags, |k| std::env::var(k).ok())
}

/// Resolves the endpoint from `flags` and the variables `env` gives
/// (`DOCKER_HOST`, `DOCKER_CONTEXT`, `DOCKER_CONFIG`, `DOCKER_TLS_VERIFY`,
/// `DOCKER_CERT_PATH`, `HOME`).
pub fn resolve_with(
    flags: &GlobalFlags,
    env: impl Fn(&str) -> Option<String>,
) -> Result<Endpoint, EndpointError> {
    let var = |k: &str| env(k).filter(|v| !v.is_empty());
    if flags.context.as_deref().is_some_and(|c| !c.is_empty()) && !flags.hosts.is_empty() {
        return Err(EndpointError::ContextAndHost);
    }
    if flags.hosts.len() > 1 {
        return Err(EndpointError::SeveralHosts);
    }
    let config_dir = match (&flags.config, var("DOCKER_CONFIG"), var("HOME")) {
        (Some(dir), _, _) => Some(dir.clone()),
        (None, Some(dir), _) => Some(PathBuf::from(dir)),
        (None, None, Some(home)) => Some(Path::new(&home).join(".docker")),
        (None, None, None) => None,
    };
    let mut warnings = Vec::new();

    let named = if let Some(c) = flags.context.clone().filter(|c| !c.is_empty()) {
        Some((c, Origin::ContextFlag))
    } else if !flags.hosts.is_empty() || var("DOCKER_HOST").is_some() {
        None
    } else if let Some(c) = var("DOCKER_CONTEXT") {
        Some((c, Origin::ContextEnv))
    } else if let Some(dir) = &config_dir {
        current_context(&dir.join("config.json"), &mut warnings)
    } else {
        None
    };

    match named {
        Some((name, origin)) if name != "default" => {
            if !valid_context_name(&name) {
                return Err(EndpointError::InvalidContextName { name, origin });
            }
            let dir = config_dir.ok_or(EndpointError::NoConfigDir)?;
            let mut ep = named_context(&dir, &name, origin)?;
            ep.warnings = warnings;
            Ok(ep)
        }
        named => {
            let origin_of_default = named.map(|(_, o)| o);
            let (raw, origin) = match (flags.hosts.first(), var("DOCKER_HOST")) {
                (Some(h), _) => (Some(h.clone()), Origin::HostFlag),
                (None, Some(h)) => (Some(h), Origin::HostEnv),
                (None, None) => (None, origin_of_default.unwrap_or(Origin::Default)),
            };
            let tls = default_tls(flags, &var, config_dir.as_deref())?;
            let host = match raw {
                Some(h) => {
                    parse_host(&h, tls.is_some()).map_err(|why| EndpointError::InvalidHost {
                        host: h.clone(),
                        origin: origin.to_string(),
                        why,
                    })?
                }
                None => Host::Unix(PathBuf::from(DEFAULT_UNIX_SOCKET)),
            };
            Ok(Endpoint {
                context: "default".to_string(),
                origin,
                host,
                tls,
                warnings,
            })
        }
    }
}

/// `currentContext` of config.json, if the file exists and names one. A
/// file that does not parse is a warning, as for the CLI.
fn current_context(path: &Path, warnings: &mut Vec<String>) -> Option<(String, Origin)> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => {
            warnings.push(format!("error loading config file {}: {e}", path.display()));
            return None;
        }
    };
    match serde_json::from_str::<serde_json::Value>(&text) {
        Ok(v) => v
            .get("currentContext")
            .and_then(|c| c.as_str())
            .filter(|c| !c.is_empty())
            .map(|c| (c.to_string(), Origin::ConfigFile(path.to_path_buf()))),
        Err(e) => {
            warnings.push(format!("error loading config file {}: {e}", path.display()));
            None
        }
    }
}

/// The hex SHA-256 of a context's name: its directory under `contexts/`.
pub fn context_dir_name(name: &str) -> String {
    Sha256::digest(name.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn valid_context_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphanumeric())
        && name.len() >= 2
        && chars.all(|c| c.is_ascii_alphanumeric() || "_.+-".contains(c))
}

fn named_context(dir: &Path, name: &str, origin: Origin) -> Result<Endpoint, EndpointError> {
    if !valid_context_name(name) {
        return Err(EndpointError::InvalidContextName {
            name: name.to_string(),
            origin,
        });
    }
    let id = context_dir_name(name);
    let meta = dir
        .join("contexts")
        .join("meta")
        .join(&id)
        .join("meta.json");
    let bad = |why: String| EndpointError::BadContext {
        name: name.to_string(),
        meta: meta.clone(),
        why,
    };
    let text = match std::fs::read_to_string(&meta) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(EndpointError::NoSuchContext {
                name: name.to_string(),
                origin,
                meta,
            })
        }
        Err(e) => return Err(bad(e.to_string())),
    };
    let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
    let docker = v
        .get("Endpoints")
        .and_then(|e| e.get("docker"))
        .ok_or_else(|| bad("it has no docker endpoint (Endpoints.docker)".to_string()))?;
    let raw = docker
        .get("Host")
        .and_then(|h| h.as_str())
        .filter(|h| !h.is_empty())
        .ok_or_else(|| bad("its docker endpoint has no Host".to_string()))?;
    let skip_verify = docker
        .get("SkipTLSVerify")
        .and_then(|s| s.as_bool())
        .unwrap_or(false);
    let tls_dir = dir.join("contexts").join("tls").join(&id).join("docker");
    let file = |f: &str| Some(tls_dir.join(f)).filter(|p| p.is_file());
    let files = (file("ca.pem"), file("cert.pem"), file("key.pem"));
    let tls = if files.0.is_some() || files.1.is_some() || files.2.is_some() || skip_verify {
        Some(Tls {
            ca: files.0,
            cert: files.1,
            key: files.2,
            skip_verify,
        })
    } else {
        None
    };
    let host = parse_host(raw, tls.is_some()).map_err(|why| EndpointError::InvalidHost {
        host: raw.to_string(),
        origin: format!("context {name:?}"),
        why,
    })?;
    Ok(Endpoint {
        context: name.to_string(),
        origin,
        host,
        tls,
        warnings: Vec::new(),
    })
}

/// TLS of the default context, from the flags and their environment
/// defaults (`DOCKER_TLS_VERIFY`, `DOCKER_CERT_PATH`, else the config dir).
fn default_tls(
    flags: &GlobalFlags,
    var: &impl Fn(&str) -> Option<String>,
    config_dir: Option<&Path>,
) -> Result<Option<Tls>, EndpointError> {
    let verify = flags
        .tls_verify
        .unwrap_or_else(|| var("DOCKER_TLS_VERIFY").is_some());
    let on = flags.tls || verify || flags.tls_verify.is_some();
    if !on {
        return Ok(None);
    }
    let cert_dir = var("DOCKER_CERT_PATH")
        .map(PathBuf::from)
        .or_else(|| config_dir.map(Path::to_path_buf));
    let pick = |given: &Option<PathBuf>, default: &str| -> (Option<PathBuf>, bool) {
        match given {
            Some(p) => (Some(p.clone()), true),
            None => (cert_dir.as_ref().map(|d| d.join(default)), false),
        }
    };
    let (ca, ca_given) = pick(&flags.tls_ca_cert, "ca.pem");
    let (cert, cert_given) = pick(&flags.tls_cert, "cert.pem");
    let (key, key_given) = pick(&flags.tls_key, "key.pem");
    // As the CLI: a default file that is not there is simply not used; a
    // file named on the command line must exist, and so must the CA when
    // the server is verified.
    let check = |path: Option<PathBuf>, required: bool, what: &'static str| match path {
        Some(p) if p.is_file() => Ok(Some(p)),
        Some(p) if required => Err(EndpointError::TlsFile {
            why: "no such file".to_string(),
            path: p,
            what,
        }),
        _ => Ok(None),
    };
    Ok(Some(Tls {
        ca: check(ca, ca_given || verify, "--tlscacert")?,
        cert: check(cert, cert_given, "--tlscert")?,
        key: check(key, key_given, "--tlskey")?,
        skip_verify: !verify,
    }))
}

/// Parses a Docker host as the CLI does: `unix://PATH`, `tcp://HOST[:PORT]`
/// (port 2375, or 2376 with TLS), `npipe://PATH`, `ssh://...`, or a bare
/// `HOST:PORT` taken as tcp.
pub fn parse_host(raw: &str, tls: bool) -> Result<Host, String> {
    let raw = raw.trim();
    let default_port = if tls { 2376 } else { 2375 };
    let (scheme, rest) = match raw.split_once("://") {
        Some((s, r)) => (s.to_ascii_lowercase(), r),
        None => ("tcp".to_string(), raw),
    };
    match scheme.as_str() {
        "unix" => {
            if rest.is_empty() {
                Ok(Host::Unix(PathBuf::from(DEFAULT_UNIX_SOCKET)))
            } else if rest.starts_with('/') {
                Ok(Host::Unix(PathBuf::from(rest)))
            } else {
                Err(
                    "a unix socket path must be absolute, as in unix:///var/run/docker.sock"
                        .to_string(),
                )
            }
        }
        "npipe" => Ok(Host::Npipe(rest.to_string())),
        "ssh" => {
            if rest.is_empty() {
                Err("an ssh host needs a machine, as in ssh://user@host".to_string())
            } else {
                Ok(Host::Ssh(raw.to_string()))
            }
        }
        "tcp" => {
            let authority = rest.split(['/', '?']).next().unwrap_or_default();
            if rest.len() > authority.len() && rest[authority.len()..] != *"/" {
                return Err("a tcp host takes no path".to_string());
            }
            let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
                let (h, tail) = v6
                    .split_once(']')
                    .ok_or_else(|| "unclosed '[' in an IPv6 address".to_string())?;
                let port = match tail.strip_prefix(':') {
                    Some(p) => Some(p),
                    None if tail.is_empty() => None,
                    None => return Err("expected ':PORT' after the IPv6 address".to_string()),
                };
                (h.to_string(), port)
            } else {
                match authority.rsplit_once(':') {
                    Some((h, p)) => (h.to_string(), Some(p)),
                    None => (authority.to_string(), None),
                }
            };
            let port = match port {
                None | Some("") => default_port,
                Some(p) => p
                    .parse::<u16>()
                    .ok()
                    .filter(|p| *p > 0)
                    .ok_or_else(|| format!("invalid port {p:?}"))?,
            };
            let host = if host.is_empty() {
                "localhost".to_string()
            } else {
                host
            };
            Ok(Host::Tcp { host, port })
        }
        "fd" => Err("fd:// is for the daemon, not for a client".to_string()),
        other => Err(format!(
            "unknown scheme {other:?}; use unix://, tcp://, ssh:// or npipe://"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::sync::atomic::{AtomicUsize, Ordering};

    struct Dir(PathBuf);

    impl Dir {
        fn new() -> Dir {
            static N: AtomicUsize = AtomicUsize::new(0);
            let d = std::env::temp_dir().join(format!(
                "rollout-endpoint-{}-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::SeqCst)
            ));
            let _ = std::fs::remove_dir_all(&d);
            std::fs::create_dir_all(&d).unwrap();
            Dir(d)
        }

        fn write(&self, rel: &str, text: &str) -> PathBuf {
            let p = self.0.join(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(&p, text).unwrap();
            p
        }

        /// A context as `docker context create` stores it.
        fn context(&self, name: &str, host: &str, skip: bool, tls: &[&str]) {
            let id = context_dir_name(name);
            self.write(
                &format!("contexts/meta/{id}/meta.json"),
                &format!(
                    r#"{{"Name":"{name}","Metadata":{{}},"Endpoints":{{"docker":{{"Host":"{host}","SkipTLSVerify":{skip}}}}}}}"#
                ),
            );
            for f in tls {
                self.write(&format!("contexts/tls/{id}/docker/{f}"), "pem");
            }
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn run(flags: &GlobalFlags, env: &[(&str, &str)]) -> Result<Endpoint, EndpointError> {
        let env: HashMap<String, String> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        resolve_with(flags, |k| env.get(k).cloned())
    }

    fn home(d: &Dir) -> String {
        d.0.to_str().unwrap().to_string()
    }

    #[test]
    fn context_dir_is_sha256_of_the_name() {
        // `printf default | sha256sum`
        assert_eq!(
            context_dir_name("default"),
            "37a8eec1ce19687d132fe29051dca629d164e2c4958ba141d5f4133a33f0688f"
        );
    }

    #[test]
    fn nothing_set_is_the_default_socket() {
        let d = Dir::new();
        let ep = run(&GlobalFlags::default(), &[("HOME", &home(&d))]).unwrap();
        assert_eq!(ep.context, "default");
        assert_eq!(ep.origin, Origin::Default);
        assert_eq!(ep.host.url(), "unix:///var/run/docker.sock");
        assert_eq!(ep.tls, None);
    }

    #[test]
    fn the_order_of_the_docker_cli() {
        let d = Dir::new();
        d.context("flag", "tcp://flag:1", false, &[]);
        d.context("envctx", "tcp://envctx:2", false, &[]);
        d.context("current", "unix:///run/current.sock", false, &[]);
        d.write(".docker/config.json", r#"{"currentContext":"current"}"#);
        let cfg = d.0.join(".docker");
        // Contexts live in the config dir; use --config to point at `d`.
        let with_config = |mut f: GlobalFlags| {
            f.config = Some(d.0.clone());
            f
        };
        std::fs::copy(cfg.join("config.json"), d.0.join("config.json")).unwrap();
        let all_env = [
            ("DOCKER_HOST", "tcp://envhost:3"),
            ("DOCKER_CONTEXT", "envctx"),
        ];

        // 1. --context wins over everything.
        let f = with_config(GlobalFlags {
            context: Some("flag".into()),
            ..Default::default()
        });
        let ep = run(&f, &all_env).unwrap();
        assert_eq!(
            (ep.context.as_str(), ep.host.url()),
            ("flag", "tcp://flag:1".into())
        );
        assert_eq!(ep.origin, Origin::ContextFlag);

        // 2. -H: default context with that host, over DOCKER_HOST and DOCKER_CONTEXT.
        let f = with_config(GlobalFlags {
            hosts: vec!["tcp://hostflag:4".into()],
            ..Default::default()
        });
        let ep = run(&f, &all_env).unwrap();
        assert_eq!(
            (ep.context.as_str(), ep.host.url()),
            ("default", "tcp://hostflag:4".into())
        );
        assert_eq!(ep.origin, Origin::HostFlag);

        // 3. DOCKER_HOST over DOCKER_CONTEXT.
        let f = with_config(GlobalFlags::default());
        let ep = run(&f, &all_env).unwrap();
        assert_eq!(ep.host.url(), "tcp://envhost:3");
        assert_eq!(ep.origin, Origin::HostEnv);

        // 4. DOCKER_CONTEXT over config.json.
        let ep = run(&f, &[("DOCKER_CONTEXT", "envctx")]).unwrap();
        assert_eq!(ep.host.url(), "tcp://envctx:2");
        assert_eq!(ep.origin, Origin::ContextEnv);

        // 5. currentContext of config.json.
        let ep = run(&f, &[]).unwrap();
        assert_eq!(ep.host.url(), "unix:///run/current.sock");
        assert_eq!(ep.origin, Origin::ConfigFile(d.0.join("config.json")));

        // The config dir also comes from DOCKER_CONFIG, then HOME/.docker.
        let ep = run(&GlobalFlags::default(), &[("DOCKER_CONFIG", &home(&d))]).unwrap();
        assert_eq!(ep.context, "current");
        let e = run(&GlobalFlags::default(), &[("HOME", &home(&d))]).unwrap_err();
        assert!(
            matches!(&e, EndpointError::NoSuchContext { name, origin: Origin::ConfigFile(p), .. }
                if name == "current" && *p == cfg.join("config.json")),
            "read from HOME/.docker/config.json, contexts looked for beside it: {e}"
        );
    }

    #[test]
    fn context_named_default_uses_docker_host_rules() {
        let d = Dir::new();
        let f = GlobalFlags {
            context: Some("default".into()),
            config: Some(d.0.clone()),
            ..Default::default()
        };
        let ep = run(&f, &[]).unwrap();
        assert_eq!(ep.host.url(), "unix:///var/run/docker.sock");
        assert_eq!(ep.origin, Origin::ContextFlag);
    }

    #[test]
    fn context_tls_material_and_skip_verify() {
        let d = Dir::new();
        d.context(
            "prod",
            "tcp://prod.example:2376",
            false,
            &["ca.pem", "cert.pem", "key.pem"],
        );
        d.context("lax", "tcp://lax", true, &[]);
        let f = GlobalFlags {
            context: Some("prod".into()),
            config: Some(d.0.clone()),
            ..Default::default()
        };
        let ep = run(&f, &[]).unwrap();
        let tls = ep.tls.unwrap();
        let id = context_dir_name("prod");
        assert_eq!(
            tls.ca.unwrap(),
            d.0.join(format!("contexts/tls/{id}/docker/ca.pem"))
        );
        assert!(tls.cert.is_some() && tls.key.is_some());
        assert!(!tls.skip_verify);
        let f = GlobalFlags {
            context: Some("lax".into()),
            ..f
        };
        let ep = run(&f, &[]).unwrap();
        assert_eq!(ep.host.url(), "tcp://lax:2376", "TLS default port");
        assert_eq!(
            ep.tls,
            Some(Tls {
                skip_verify: true,
                ..Default::default()
            })
        );
    }

    #[test]
    fn default_context_tls_from_flags_and_environment() {
        let d = Dir::new();
        for f in ["ca.pem", "cert.pem", "key.pem"] {
            d.write(&format!("certs/{f}"), "pem");
        }
        let certs = d.0.join("certs");
        let env = [
            ("DOCKER_HOST", "tcp://10.0.0.1"),
            ("DOCKER_TLS_VERIFY", "1"),
            ("DOCKER_CERT_PATH", certs.to_str().unwrap()),
        ];
        let ep = run(&GlobalFlags::default(), &env).unwrap();
        assert_eq!(ep.host.url(), "tcp://10.0.0.1:2376");
        let tls = ep.tls.unwrap();
        assert_eq!(tls.ca, Some(certs.join("ca.pem")));
        assert_eq!(tls.key, Some(certs.join("key.pem")));
        assert!(!tls.skip_verify);

        // --tls alone: encrypted, not verified; missing default files are skipped.
        let f = GlobalFlags {
            tls: true,
            hosts: vec!["tcp://h".into()],
            config: Some(d.0.join("nowhere")),
            ..Default::default()
        };
        let ep = run(&f, &[]).unwrap();
        assert_eq!(
            ep.tls,
            Some(Tls {
                skip_verify: true,
                ..Default::default()
            })
        );

        // --tlsverify with no CA anywhere is an error naming the file.
        let f = GlobalFlags {
            tls_verify: Some(true),
            ..f
        };
        let e = run(&f, &[]).unwrap_err().to_string();
        assert!(
            e.starts_with("tls file ") && e.contains("ca.pem (--tlscacert)"),
            "{e}"
        );
        // A named file that is missing is an error too.
        let f = GlobalFlags {
            tls: true,
            tls_cert: Some(d.0.join("mine.pem")),
            hosts: vec!["tcp://h".into()],
            ..Default::default()
        };
        let e = run(&f, &[]).unwrap_err().to_string();
        assert!(e.contains("mine.pem (--tlscert) cannot be read"), "{e}");
    }

    #[test]
    fn errors_say_what_was_wrong() {
        let d = Dir::new();
        let cfg = Some(d.0.clone());
        let e = run(
            &GlobalFlags {
                context: Some("c".into()),
                hosts: vec!["tcp://h".into()],
                ..Default::default()
            },
            &[],
        )
        .unwrap_err();
        assert!(matches!(e, EndpointError::ContextAndHost));
        let e = run(
            &GlobalFlags {
                hosts: vec!["tcp://a".into(), "tcp://b".into()],
                ..Default::default()
            },
            &[],
        )
        .unwrap_err();
        assert!(matches!(e, EndpointError::SeveralHosts));
        let e = run(
            &GlobalFlags {
                config: cfg.clone(),
                ..Default::default()
            },
            &[("DOCKER_CONTEXT", "staging")],
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.starts_with("context \"staging\" (from DOCKER_CONTEXT) does not exist: no ")
                && e.contains(&context_dir_name("staging"))
                && e.ends_with("hint: `docker context ls` lists the contexts"),
            "{e}"
        );
        let e = run(&GlobalFlags::default(), &[("DOCKER_HOST", "http://x")])
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "invalid host \"http://x\" (from DOCKER_HOST): unknown scheme \"http\"; use unix://, tcp://, ssh:// or npipe://"
        );
        let e = run(
            &GlobalFlags {
                context: Some("../etc".into()),
                ..Default::default()
            },
            &[],
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.starts_with("invalid context name \"../etc\" (from --context)"),
            "{e}"
        );

        let id = context_dir_name("broken");
        d.write(
            &format!("contexts/meta/{id}/meta.json"),
            r#"{"Endpoints":{}}"#,
        );
        let e = run(
            &GlobalFlags {
                context: Some("broken".into()),
                config: cfg.clone(),
                ..Default::default()
            },
            &[],
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.ends_with("it has no docker endpoint (Endpoints.docker)"),
            "{e}"
        );

        let e = run(&GlobalFlags::default(), &[("DOCKER_CONTEXT", "x1")]).unwrap_err();
        assert!(matches!(e, EndpointError::NoConfigDir), "{e}");
        let ep = run(&GlobalFlags::default(), &[]).unwrap();
        assert_eq!(
            ep.host.url(),
            "unix:///var/run/docker.sock",
            "no HOME needed for the default"
        );
    }

    #[test]
    fn malformed_config_json_is_a_warning_as_in_the_cli() {
        let d = Dir::new();
        d.write("config.json", "{not json");
        let f = GlobalFlags {
            config: Some(d.0.clone()),
            ..Default::default()
        };
        let ep = run(&f, &[]).unwrap();
        assert_eq!(ep.context, "default");
        assert_eq!(ep.warnings.len(), 1);
        assert!(ep.warnings[0].starts_with("error loading config file "));
    }

    #[test]
    fn hosts_parse_as_the_cli_parses_them() {
        let p = |s: &str| parse_host(s, false).map(|h| h.url());
        assert_eq!(
            p("unix:///run/docker.sock").unwrap(),
            "unix:///run/docker.sock"
        );
        assert_eq!(p("unix://").unwrap(), "unix:///var/run/docker.sock");
        assert_eq!(p("tcp://1.2.3.4").unwrap(), "tcp://1.2.3.4:2375");
        assert_eq!(p("tcp://1.2.3.4:1234/").unwrap(), "tcp://1.2.3.4:1234");
        assert_eq!(p("1.2.3.4:99").unwrap(), "tcp://1.2.3.4:99");
        assert_eq!(p(":2375").unwrap(), "tcp://localhost:2375");
        assert_eq!(p("tcp://[::1]:5").unwrap(), "tcp://[::1]:5");
        assert_eq!(p("ssh://me@box").unwrap(), "ssh://me@box");
        assert_eq!(parse_host("tcp://h", true).unwrap().url(), "tcp://h:2376");
        assert!(p("tcp://h:0").is_err());
        assert!(p("tcp://h:x").is_err());
        assert!(p("tcp://h/path").is_err());
        assert!(p("unix://relative").is_err());
        assert!(p("fd://").is_err());
        assert!(p("ssh://").is_err());
    }
}
