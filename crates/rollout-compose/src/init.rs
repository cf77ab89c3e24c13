//! `docker rollout init`: what to add to a project whose service has no
//! proxy yet, as a Compose override file.
//!
//! The most common Compose layout publishes the web service's port
//! directly (`ports: ["80:8000"]`). [`plan`] reads such a service and says
//! how to put nginx in front of it: which port the service serves HTTP on,
//! which host port the proxy takes over, the health check's path if it
//! names one, and the override file that does it. The override is built as
//! a typed structure and serialized by serde_yaml; nothing read from the
//! project is pasted into it as text (ports are numbers, a host address is
//! parsed as one, names are the project's own service names).
//!
//! The published ports move from the service to the proxy. Removing a
//! list from an earlier file needs Compose's `!reset` tag, which Compose 2
//! reads (2.24 and later) and docker-compose 1.29 does not: 1.29 merges an
//! override's `ports` into the earlier file's (keyed by target, host port,
//! address and protocol) and has no way to remove one, and its YAML loader
//! refuses unknown tags. So for 1.29 a service that publishes a fixed host
//! port is refused ([`InitError::PortsInBaseV1`]), naming each `ports`
//! entry to delete from the Compose file; run again with `--port` (and
//! `--proxy-port`) once they are gone.
//!
//! The nginx config itself is rollout-nginx's (`generate`); this module
//! says what it must contain ([`InitPlan`]). Writing the files is the
//! caller's: this crate reads files only.

use crate::error::ComposeError;
use crate::model::{HealthTest, Port};
use crate::project::{Flavour, Project};
use rollout_core::StrategyKind;
use serde::Serialize;
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

/// The override's file name unless `-o` names another.
pub const DEFAULT_OVERRIDE: &str = "compose.rollout.yaml";
/// The nginx config's file name, beside the override.
pub const NGINX_CONF: &str = "nginx.conf";
/// The proxy's service name.
pub const PROXY_SERVICE: &str = "nginx";
/// The proxy's image unless `--proxy-image` names another.
pub const DEFAULT_PROXY_IMAGE: &str = "nginx:stable";
/// Where the config is mounted in the proxy (nginx's default path).
pub const PROXY_CONF_PATH: &str = "/etc/nginx/nginx.conf";
/// The port nginx listens on inside its container.
pub const PROXY_LISTEN: u16 = 80;

/// What `docker rollout init` was asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitOptions {
    /// The service to put behind the proxy.
    pub service: String,
    /// `--port`: the port the service serves HTTP on (its container port).
    pub port: Option<u16>,
    /// `--proxy-port`: the host port the proxy publishes.
    pub proxy_port: Option<u16>,
    /// `--strategy`.
    pub strategy: StrategyKind,
    /// `--proxy-image`.
    pub proxy_image: String,
    /// `-o`: the override's file name (a plain name, written beside the
    /// Compose file).
    pub override_name: String,
}

/// What `init` writes and says, decided from the project.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitPlan {
    /// The service behind the proxy.
    pub service: String,
    /// The folder the files go to: the first Compose file's.
    pub dir: PathBuf,
    /// The override file to write.
    pub override_path: PathBuf,
    /// The nginx config to write.
    pub nginx_conf_path: PathBuf,
    /// The service's HTTP port, which the upstream names.
    pub port: u16,
    /// The host port the proxy publishes.
    pub proxy_port: u16,
    /// The host address the proxy's port is bound to, if the service's was.
    pub host_ip: Option<IpAddr>,
    /// The HTTP path of the service's health check, if it names one.
    pub health_path: Option<String>,
    /// The override's text.
    pub override_yaml: String,
    /// The Compose files to use from now on (the project's, then the
    /// override), for the next commands.
    pub files: Vec<PathBuf>,
    /// Things the operator should know (ports no longer published).
    pub notes: Vec<String>,
    /// For blue-green, the second colour the override adds (`SERVICE-green`,
    /// which `extends` the service); the service itself is the first.
    pub colour: Option<String>,
}

/// Why `init` cannot front the service. Nothing was written; exit 2.
#[derive(Debug, thiserror::Error)]
pub enum InitError {
    /// The project could not be read, or has no such service.
    #[error(transparent)]
    Compose(#[from] ComposeError),
    /// A proxy is there already.
    #[error("the project has a proxy already (service {proxy:?}): nothing to add\nhint: run `docker rollout {service}`")]
    HasProxy {
        /// The service.
        service: String,
        /// The proxy service found.
        proxy: String,
    },
    /// Neither a port nor `--port`.
    #[error("service {service:?} publishes no port, so which port serves HTTP is unknown\nhint: add --port N (the port {service} listens on inside the project's network)")]
    NoPort {
        /// The service.
        service: String,
    },
    /// Only UDP (or SCTP) ports.
    #[error("service {service:?} publishes only {found}: nginx's HTTP proxy needs a TCP port\nhint: add --port N if {service} serves HTTP on a TCP port")]
    UdpOnly {
        /// The service.
        service: String,
        /// The ports found, such as `5353/udp`.
        found: String,
    },
    /// Several TCP ports and no way to tell the HTTP one.
    #[error("service {service:?} publishes several ports ({found}) and which one serves HTTP is unknown\nhint: add --port N (or x-rollout.port) naming the container port that serves HTTP")]
    SeveralPorts {
        /// The service.
        service: String,
        /// The container ports found.
        found: String,
    },
    /// docker-compose 1.29 cannot remove ports in an override.
    #[error("docker-compose 1.29 cannot remove a service's ports in an override file (it merges them with the Compose file's, and refuses the !reset tag Compose 2 reads), and {service:?} publishes {found}\nhint: delete {entries} from the Compose file, then run `docker rollout init {service} --port {port} --proxy-port {proxy_port}`; or use Compose 2.24 or later (ROLLOUT_COMPOSE=v2)")]
    PortsInBaseV1 {
        /// The service.
        service: String,
        /// The published ports.
        found: String,
        /// Where each is written (`compose.yaml:5`).
        entries: String,
        /// The HTTP port to pass with `--port`.
        port: u16,
        /// The host port to pass with `--proxy-port`.
        proxy_port: u16,
    },
    /// The second colour's name is a service already.
    #[error("blue-green needs a second colour service, {colour:?}, and the project has a service of that name already\nhint: remove or rename {colour:?}, or use --strategy canary (or rolling), which need no second service")]
    ColourTaken {
        /// The name taken.
        colour: String,
    },
    /// `-o` names a path, not a file name.
    #[error("-o {0:?}: expected a file name such as compose.rollout.yaml (it is written beside the Compose file)")]
    OverrideName(String),
    /// The override is the nginx config's name.
    #[error("-o {0:?}: that is the nginx config's name")]
    OverrideIsConf(String),
    /// A folder that cannot be written into a Compose file.
    #[error("{}: the project folder's path cannot be written into a Compose file (':' or not UTF-8)", .0.display())]
    Path(PathBuf),
    /// The YAML serializer failed (a bug).
    #[error("cannot write the override: {0}")]
    Yaml(String),
}

/// The override file, as Compose reads it.
#[derive(Debug, Serialize)]
struct OverrideFile {
    services: BTreeMap<String, ServiceOverride>,
}

#[derive(Debug, Default, Serialize)]
struct ServiceOverride {
    #[serde(skip_serializing_if = "Option::is_none")]
    extends: Option<Extends>,
    #[serde(skip_serializing_if = "Option::is_none")]
    image: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ports: Option<serde_yaml::Value>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    volumes: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    depends_on: Vec<String>,
    #[serde(rename = "x-rollout", skip_serializing_if = "Option::is_none")]
    rollout: Option<RolloutOverride>,
}

/// `extends: {file: compose.yaml, service: web}`.
#[derive(Debug, Clone, Serialize)]
struct Extends {
    file: String,
    service: String,
}

#[derive(Debug, Clone, Serialize)]
struct RolloutOverride {
    #[serde(skip_serializing_if = "Option::is_none")]
    strategy: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    colours: Option<[String; 2]>,
    proxy: String,
    upstream: String,
    port: u16,
}

/// Decides what `init` writes for `opts.service` of `project` (see the
/// module's documentation).
///
/// # Errors
/// [`InitError`]: the service cannot be fronted as it is, and what to add.
pub fn plan(project: &Project, opts: &InitOptions) -> Result<InitPlan, InitError> {
    let name = &opts.service;
    let svc = project.service(name)?;
    let settings = project.settings(name)?;
    if let Some(proxy) = settings.proxy {
        return Err(InitError::HasProxy {
            service: name.clone(),
            proxy,
        });
    }
    let override_name = &opts.override_name;
    if override_name.is_empty()
        || override_name.contains('/')
        || override_name == "."
        || override_name == ".."
    {
        return Err(InitError::OverrideName(override_name.clone()));
    }
    if override_name == NGINX_CONF {
        return Err(InitError::OverrideIsConf(override_name.clone()));
    }
    let (port, mapping) = http_port(name, &svc.ports, opts.port.or(settings.port))?;
    let published = mapping.and_then(|p| p.published.as_deref()?.parse::<u16>().ok());
    let proxy_port = opts.proxy_port.or(published).unwrap_or(80);
    let host_ip = mapping.and_then(|p| p.host_ip.as_deref()?.parse::<IpAddr>().ok());
    let fixed: Vec<&Port> = svc.ports.iter().filter(|p| p.fixed_host_port()).collect();
    if project.flavour == Flavour::V1 && !fixed.is_empty() {
        return Err(InitError::PortsInBaseV1 {
            service: name.clone(),
            found: fixed
                .iter()
                .map(|p| describe(p))
                .collect::<Vec<_>>()
                .join(", "),
            entries: fixed
                .iter()
                .map(|p| format!("the entry at {}:{}", p.pos.file, p.pos.line))
                .collect::<Vec<_>>()
                .join(", "),
            port,
            proxy_port,
        });
    }
    let mut notes = Vec::new();
    for p in svc
        .ports
        .iter()
        .filter(|p| !mapping.is_some_and(|m| std::ptr::eq(*p, m)))
    {
        notes.push(format!(
            "{name} no longer publishes {} (the override removes its ports; add them to the proxy or back to {name} if they are needed)",
            describe(p)
        ));
    }
    let health_path = svc.healthcheck.as_ref().and_then(|h| match &h.test {
        Some(HealthTest::Cmd(args)) => args.iter().find_map(|a| url_path(a)),
        Some(HealthTest::Shell(s)) => s.split_whitespace().find_map(url_path),
        None => None,
    });
    let first = project
        .files
        .first()
        .cloned()
        .unwrap_or_else(|| project.directory.join("compose.yaml"));
    let dir = first
        .parent()
        .map(Path::to_path_buf)
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or_else(|| project.directory.clone());
    let conf_source = if same_dir(&dir, &project.directory) {
        format!("./{NGINX_CONF}")
    } else {
        let abs = dir.join(NGINX_CONF);
        match abs.to_str() {
            Some(s) if !s.contains(':') => s.to_string(),
            _ => return Err(InitError::Path(dir.clone())),
        }
    };
    let colour = match opts.strategy {
        StrategyKind::BlueGreen => {
            let colour = format!("{name}{GREEN_SUFFIX}");
            if project.services.contains_key(&colour) {
                return Err(InitError::ColourTaken { colour });
            }
            let base = defining_file(project, name)?;
            let file = if base.parent().is_some_and(|p| same_dir(p, &dir)) {
                base.file_name().map(|f| f.to_string_lossy().into_owned())
            } else {
                base.to_str().map(str::to_string)
            }
            .ok_or_else(|| InitError::Path(base.clone()))?;
            if project.files.len() > 1 {
                notes.push(format!(
                    "{colour} extends {name} as {file} defines it: what later Compose files add to {name} is not copied to {colour} (add it to {colour} in the override if it is needed)"
                ));
            }
            Some((colour, file))
        }
        _ => None,
    };
    let front = Front {
        service: name,
        port,
        reset_ports: project.flavour == Flavour::V2 && !svc.ports.is_empty(),
        conf_source: &conf_source,
        colour: colour.as_ref().map(|(c, f)| (c.as_str(), f.as_str())),
    };
    let override_yaml = override_yaml(&front, opts, proxy_port, host_ip)?;
    let mut files = project.files.clone();
    let override_path = dir.join(override_name);
    if !files.contains(&override_path) {
        files.push(override_path.clone());
    }
    Ok(InitPlan {
        service: name.clone(),
        nginx_conf_path: dir.join(NGINX_CONF),
        override_path,
        dir,
        port,
        proxy_port,
        host_ip,
        health_path,
        override_yaml,
        files,
        notes,
        colour: colour.map(|(c, _)| c),
    })
}

/// The name of blue-green's second colour: the service's name and this.
pub const GREEN_SUFFIX: &str = "-green";

/// The first of the project's files that defines `service` (what the
/// second colour `extends`: Compose resolves it in that one file).
fn defining_file(project: &Project, service: &str) -> Result<PathBuf, InitError> {
    for path in &project.files {
        let text = std::fs::read_to_string(path).map_err(|source| ComposeError::Io {
            path: path.clone(),
            source,
        })?;
        let tree = crate::yaml::parse(std::sync::Arc::from(path.display().to_string()), &text)?;
        if tree.get("services").and_then(|s| s.get(service)).is_some() {
            return Ok(path.clone());
        }
    }
    Err(ComposeError::UnknownService {
        name: service.to_string(),
        project: project.name.clone(),
        known: project.services.keys().cloned().collect(),
    }
    .into())
}

fn same_dir(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

/// `8080:8000/tcp`, as a person writes it.
fn describe(p: &Port) -> String {
    let mut s = String::new();
    if let Some(ip) = &p.host_ip {
        s.push_str(ip);
        s.push(':');
    }
    if let Some(h) = p.published.as_deref().filter(|h| !h.is_empty()) {
        s.push_str(h);
        s.push(':');
    }
    s.push_str(&p.target);
    s.push('/');
    s.push_str(&p.protocol);
    s
}

/// The HTTP port and the `ports` entry it came from, if any.
fn http_port<'a>(
    service: &str,
    ports: &'a [Port],
    given: Option<u16>,
) -> Result<(u16, Option<&'a Port>), InitError> {
    let tcp: Vec<&Port> = ports.iter().filter(|p| p.protocol == "tcp").collect();
    if let Some(port) = given {
        let mapping = tcp
            .iter()
            .copied()
            .find(|p| p.target.parse::<u16>().ok() == Some(port));
        return Ok((port, mapping));
    }
    if ports.is_empty() {
        return Err(InitError::NoPort {
            service: service.into(),
        });
    }
    if tcp.is_empty() {
        return Err(InitError::UdpOnly {
            service: service.into(),
            found: ports.iter().map(describe).collect::<Vec<_>>().join(", "),
        });
    }
    let mut targets: Vec<&str> = tcp.iter().map(|p| p.target.as_str()).collect();
    targets.sort_unstable();
    targets.dedup();
    match targets.as_slice() {
        [one] => match one.parse::<u16>() {
            Ok(port) => Ok((port, tcp.iter().copied().find(|p| p.target == *one))),
            Err(_) => Err(InitError::SeveralPorts {
                service: service.into(),
                found: (*one).to_string(),
            }),
        },
        many => Err(InitError::SeveralPorts {
            service: service.into(),
            found: many.join(", "),
        }),
    }
}

/// The path of an `http://` or `https://` URL in `word`, if it is a plain
/// one other than `/`.
fn url_path(word: &str) -> Option<String> {
    let word = word.trim_matches(|c| matches!(c, '"' | '\''));
    let at = word
        .find("http://")
        .map(|i| i + 7)
        .or_else(|| word.find("https://").map(|i| i + 8))?;
    let rest = &word[at..];
    let path = &rest[rest.find('/')?..];
    let path = path.split(['?', '#']).next().unwrap_or_default();
    let plain = path.len() > 1
        && path
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'/' | b'_' | b'.' | b'-' | b'~'));
    plain.then(|| path.to_string())
}

/// What the override puts in front of which service.
struct Front<'a> {
    service: &'a str,
    /// The service's HTTP port.
    port: u16,
    /// Whether the service's own `ports` are removed (`!reset`, Compose 2).
    reset_ports: bool,
    /// The nginx config's source path, as the proxy's volume names it.
    conf_source: &'a str,
    /// Blue-green's second colour and the file that defines the service.
    colour: Option<(&'a str, &'a str)>,
}

/// The override's text.
fn override_yaml(
    front: &Front<'_>,
    opts: &InitOptions,
    proxy_port: u16,
    host_ip: Option<IpAddr>,
) -> Result<String, InitError> {
    let service = front.service;
    let publish = match host_ip {
        Some(IpAddr::V4(ip)) => format!("{ip}:{proxy_port}:{PROXY_LISTEN}"),
        Some(IpAddr::V6(ip)) => format!("[{ip}]:{proxy_port}:{PROXY_LISTEN}"),
        None => format!("{proxy_port}:{PROXY_LISTEN}"),
    };
    let mut depends_on = vec![service.to_string()];
    depends_on.extend(front.colour.map(|(c, _)| c.to_string()));
    let proxy = ServiceOverride {
        image: Some(opts.proxy_image.clone()),
        ports: Some(serde_yaml::Value::Sequence(vec![publish.into()])),
        volumes: vec![format!("{}:{PROXY_CONF_PATH}:ro", front.conf_source)],
        depends_on,
        ..Default::default()
    };
    // Compose 2 removes the earlier file's list with `!reset`; for 1.29
    // `plan` has refused fixed host ports already, and ephemeral ones stay.
    let reset = || {
        front.reset_ports.then(|| {
            serde_yaml::Value::Tagged(Box::new(serde_yaml::value::TaggedValue {
                tag: serde_yaml::value::Tag::new("reset"),
                value: serde_yaml::Value::Sequence(Vec::new()),
            }))
        })
    };
    // Two colours take turns: blue-green is what their layout means, so
    // no strategy is written for them.
    let rollout = RolloutOverride {
        strategy: (opts.strategy != StrategyKind::Rolling && front.colour.is_none())
            .then(|| opts.strategy.to_string()),
        colours: front
            .colour
            .map(|(c, _)| [service.to_string(), c.to_string()]),
        proxy: PROXY_SERVICE.into(),
        upstream: service.into(),
        port: front.port,
    };
    let fronted = ServiceOverride {
        ports: reset(),
        rollout: Some(rollout.clone()),
        ..Default::default()
    };
    let mut services = BTreeMap::from([
        (PROXY_SERVICE.to_string(), proxy),
        (service.to_string(), fronted),
    ]);
    if let Some((colour, file)) = front.colour {
        services.insert(
            colour.to_string(),
            ServiceOverride {
                extends: Some(Extends {
                    file: file.to_string(),
                    service: service.to_string(),
                }),
                ports: reset(),
                rollout: Some(rollout),
                ..Default::default()
            },
        );
    }
    let body = serde_yaml::to_string(&OverrideFile { services })
        .map_err(|e| InitError::Yaml(e.to_string()))?;
    let colours = match front.colour {
        Some((colour, _)) => format!(
            "# Blue-green: {service} and {colour} take turns behind nginx. {colour}\n\
             # starts as a copy of {service}; to release, give it the new image here\n\
             # (image: ...) and run `docker rollout {colour}`; `docker rollout {service}`\n\
             # switches back.\n"
        ),
        None => String::new(),
    };
    Ok(format!(
        "# Written by `docker rollout init`: nginx in front of the service, which\n\
         # no longer publishes its ports itself. Use it after the project's own\n\
         # Compose files (-f ... -f this file, or COMPOSE_FILE).\n{colours}{body}"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::project::LoadOptions;

    fn load(dir: &Path, yaml: &str, flavour: Flavour) -> Project {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join("compose.yaml"), yaml).unwrap();
        Project::load(&LoadOptions {
            files: vec![dir.join("compose.yaml")],
            flavour,
            environment: Some(Default::default()),
            ..Default::default()
        })
        .unwrap()
    }

    fn opts() -> InitOptions {
        InitOptions {
            service: "web".into(),
            port: None,
            proxy_port: None,
            strategy: StrategyKind::Rolling,
            proxy_image: DEFAULT_PROXY_IMAGE.into(),
            override_name: DEFAULT_OVERRIDE.into(),
        }
    }

    fn tmp(name: &str) -> PathBuf {
        std::env::temp_dir().join(format!("rollout-init-{}-{name}", std::process::id()))
    }

    #[test]
    fn moves_the_published_port_to_the_proxy() {
        let dir = tmp("moves");
        let p = load(
            &dir,
            "services:\n  web:\n    image: app:v1\n    ports: [\"127.0.0.1:8080:8000\"]\n    healthcheck:\n      test: [\"CMD\", \"wget\", \"-q\", \"http://localhost:8000/healthz?x=1\"]\n",
            Flavour::V2,
        );
        let plan = plan(&p, &opts()).unwrap();
        assert_eq!((plan.port, plan.proxy_port), (8000, 8080));
        assert_eq!(plan.health_path.as_deref(), Some("/healthz"));
        assert_eq!(plan.override_path, dir.join(DEFAULT_OVERRIDE));
        let body = plan.override_yaml.split_once("services:").unwrap().1;
        assert_eq!(
            body,
            "\n  nginx:\n    image: nginx:stable\n    ports:\n    - 127.0.0.1:8080:80\n    volumes:\n    - ./nginx.conf:/etc/nginx/nginx.conf:ro\n    depends_on:\n    - web\n  web:\n    ports: !reset []\n    x-rollout:\n      proxy: nginx\n      upstream: web\n      port: 8000\n"
        );
        // The project with the override reads as init means it.
        std::fs::write(&plan.override_path, &plan.override_yaml).unwrap();
        let with = Project::load(&LoadOptions {
            files: plan.files.clone(),
            flavour: Flavour::V2,
            environment: Some(Default::default()),
            ..Default::default()
        })
        .unwrap();
        assert!(with.services["web"].ports.is_empty());
        let s = with.settings("web").unwrap();
        assert_eq!(s.proxy.as_deref(), Some("nginx"));
        assert_eq!((s.upstream.as_deref(), s.port), (Some("web"), Some(8000)));
        assert!(s.side_by_side_conflicts.is_empty());
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn strategy_and_options_are_written() {
        let dir = tmp("canary");
        let p = load(
            &dir,
            "services:\n  web:\n    image: app:v1\n    ports: [\"8000\"]\n",
            Flavour::V1,
        );
        let o = InitOptions {
            strategy: StrategyKind::Canary,
            proxy_port: Some(9000),
            proxy_image: "rollout-nginx:1.22".into(),
            ..opts()
        };
        let plan = plan(&p, &o).unwrap();
        assert_eq!(plan.proxy_port, 9000);
        // 1.29 reads no !reset; an ephemeral port stays (it does not conflict).
        assert!(!plan.override_yaml.contains("!reset"));
        assert!(plan.override_yaml.contains("strategy: canary\n"));
        assert!(plan.override_yaml.contains("image: rollout-nginx:1.22\n"));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn blue_green_adds_a_second_colour_that_extends_the_service() {
        for flavour in [Flavour::V2, Flavour::V1] {
            let dir = tmp(&format!("blue-green-{flavour:?}"));
            let ports = if flavour == Flavour::V2 {
                "8080:8000"
            } else {
                "8000"
            };
            let p = load(
                &dir,
                &format!("services:\n  web:\n    image: app:v1\n    ports: [\"{ports}\"]\n"),
                flavour,
            );
            let o = InitOptions {
                strategy: StrategyKind::BlueGreen,
                ..opts()
            };
            let plan = plan(&p, &o).unwrap();
            assert_eq!(plan.colour.as_deref(), Some("web-green"));
            let y = &plan.override_yaml;
            assert!(
                y.contains(
                    "  web-green:\n    extends:\n      file: compose.yaml\n      service: web\n"
                ),
                "{y}"
            );
            assert!(
                y.contains("colours:\n      - web\n      - web-green\n"),
                "{y}"
            );
            assert!(!y.contains("strategy:"), "the colours say blue-green: {y}");
            assert!(
                y.contains("depends_on:\n    - web\n    - web-green\n"),
                "{y}"
            );
            assert_eq!(
                y.matches("!reset").count(),
                if flavour == Flavour::V2 { 2 } else { 0 }
            );
            // Read back with the override, each colour knows the other.
            std::fs::write(dir.join("compose.rollout.yaml"), y).unwrap();
            let back = Project::load(&LoadOptions {
                files: vec![dir.join("compose.yaml"), dir.join("compose.rollout.yaml")],
                flavour,
                environment: Some(Default::default()),
                ..Default::default()
            })
            .unwrap();
            let green = back.settings("web-green").unwrap();
            assert_eq!(green.image.as_deref(), Some("app:v1"));
            assert_eq!(green.strategy, StrategyKind::BlueGreen);
            assert_eq!(green.proxy.as_deref(), Some("nginx"));
            assert_eq!(
                back.settings("web").unwrap().strategy,
                StrategyKind::BlueGreen
            );
            // A second run sees a proxy; a name taken is refused.
            assert!(matches!(plan_err(&back, &o), InitError::HasProxy { .. }));
            std::fs::remove_dir_all(dir).unwrap();
        }
        let dir = tmp("blue-green-taken");
        let p = load(
            &dir,
            "services:\n  web:\n    image: a\n    ports: [\"8000\"]\n  web-green:\n    image: b\n",
            Flavour::V2,
        );
        let o = InitOptions {
            strategy: StrategyKind::BlueGreen,
            ..opts()
        };
        let e = plan_err(&p, &o).to_string();
        assert!(e.contains("\"web-green\""), "{e}");
        std::fs::remove_dir_all(dir).unwrap();
    }

    fn plan_err(p: &Project, o: &InitOptions) -> InitError {
        plan(p, o).unwrap_err()
    }

    #[test]
    fn refusals_say_what_to_add() {
        let dir = tmp("refuse");
        let cases = [
            ("services:\n  web:\n    image: a\n", "publishes no port"),
            (
                "services:\n  web:\n    image: a\n    ports: [\"53:53/udp\"]\n",
                "only 53:53/udp",
            ),
            (
                "services:\n  web:\n    image: a\n    ports: [\"80:8000\", \"9090:9090\"]\n",
                "several ports (8000, 9090)",
            ),
            (
                "services:\n  web:\n    image: a\n  nginx:\n    image: nginx\n",
                "has a proxy already",
            ),
        ];
        for (yaml, want) in cases {
            let p = load(&dir, yaml, Flavour::V2);
            let e = plan(&p, &opts()).unwrap_err().to_string();
            assert!(e.contains(want), "{e}");
            assert!(e.contains("hint:"), "{e}");
        }
        let p = load(
            &dir,
            "services:\n  web:\n    image: a\n    ports: [\"80:8000\", \"9090:9090\"]\n",
            Flavour::V2,
        );
        let ok = plan(
            &p,
            &InitOptions {
                port: Some(8000),
                ..opts()
            },
        )
        .unwrap();
        assert_eq!(ok.proxy_port, 80);
        assert!(ok.notes[0].contains("9090:9090/tcp"), "{:?}", ok.notes);
        let v1 = load(
            &dir,
            "services:\n  web:\n    image: a\n    ports:\n      - \"80:8000\"\n",
            Flavour::V1,
        );
        let e = plan(&v1, &opts()).unwrap_err().to_string();
        assert!(e.contains("compose.yaml:5"), "{e}");
        assert!(e.contains("--port 8000 --proxy-port 80"), "{e}");
        for bad in ["", "a/b", "nginx.conf"] {
            let o = InitOptions {
                override_name: bad.into(),
                port: Some(8000),
                ..opts()
            };
            assert!(plan(&p, &o).is_err(), "{bad:?}");
        }
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn health_paths() {
        assert_eq!(
            url_path("http://localhost:8000/healthz").as_deref(),
            Some("/healthz")
        );
        assert_eq!(url_path("'https://127.0.0.1/up'").as_deref(), Some("/up"));
        assert_eq!(url_path("http://localhost:8000/"), None);
        assert_eq!(url_path("http://localhost:8000"), None);
        assert_eq!(url_path("http://x/$(id)"), None);
        assert_eq!(url_path("healthcheck"), None);
    }
}
