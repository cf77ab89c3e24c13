//! Finding and loading a project the way `docker compose` and
//! `docker-compose` do.

use crate::envfile::parse_env_file;
use crate::error::ComposeError;
use crate::extends;
use crate::interpolate::{interpolate, Env};
use crate::merge::merge;
use crate::model::{parse_ext, parse_service, RolloutExt, Service};
use crate::read::{self, join};
use crate::yaml::{self, Node, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Which Compose tool the project is used with. They agree on the file
/// format; they differ in the default file names, in how a project name is
/// checked, in container names and in how they are called (`rollout-docker`
/// runs the one the operator has).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum Flavour {
    /// `docker-compose` 1.x (Python; 1.29 here): every project name is
    /// normalised (lowercase, only `[a-z0-9_-]` kept; 1.21 and later keep
    /// `-` and `_`), the top-level `name` is not read, `docker-compose.yml`
    /// is looked for before `compose.yaml`, containers are
    /// `project_service_1`.
    V1,
    /// `docker compose` 2.x (the docker CLI plugin): a name given with `-p`, `COMPOSE_PROJECT_NAME`
    /// or `name:` must already be valid; one taken from the directory is
    /// normalised and loses leading `-` and `_`; containers are
    /// `project-service-1`.
    #[default]
    V2,
}

impl Flavour {
    /// The file names looked for, in order, when no file is given.
    pub fn default_files(self) -> &'static [&'static str] {
        match self {
            // docker-compose 1.29, compose/config/config.py SUPPORTED_FILENAMES.
            Flavour::V1 => &[
                "docker-compose.yml",
                "docker-compose.yaml",
                "compose.yml",
                "compose.yaml",
            ],
            Flavour::V2 => &[
                "compose.yaml",
                "compose.yml",
                "docker-compose.yaml",
                "docker-compose.yml",
            ],
        }
    }

    /// The override file names merged after a default file, first found wins.
    pub fn override_files(self) -> &'static [&'static str] {
        match self {
            Flavour::V1 => &[
                "docker-compose.override.yml",
                "docker-compose.override.yaml",
                "compose.override.yml",
                "compose.override.yaml",
            ],
            Flavour::V2 => &[
                "compose.override.yaml",
                "compose.override.yml",
                "docker-compose.override.yaml",
                "docker-compose.override.yml",
            ],
        }
    }

    /// The separator in container names.
    pub fn separator(self) -> char {
        match self {
            Flavour::V1 => '_',
            Flavour::V2 => '-',
        }
    }

    /// How an operator types the tool: `docker-compose` or `docker compose`.
    pub fn command(self) -> &'static str {
        match self {
            Flavour::V1 => "docker-compose",
            Flavour::V2 => "docker compose",
        }
    }

    /// The name the tool gives the `index`th (1-based) container of a service.
    pub fn container_name(self, project: &str, service: &str, index: usize) -> String {
        let s = self.separator();
        format!("{project}{s}{service}{s}{index}")
    }
}

/// Normalises a project name as `flavour` does for a name taken from the
/// directory: lowercase, only `[a-z0-9_-]` kept (and, for v2, leading `-`
/// and `_` dropped).
pub fn normalize_project_name(name: &str, flavour: Flavour) -> String {
    let kept: String = name
        .to_lowercase()
        .chars()
        .filter(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_' || *c == '-')
        .collect();
    match flavour {
        Flavour::V1 => kept,
        Flavour::V2 => kept.trim_start_matches(['-', '_']).to_string(),
    }
}

/// The name each Compose tool gives the same project: the two differ where
/// their rules do (v2 reads the `name` field and refuses a `-p` that v1
/// would normalise; a directory name loses leading `-` and `_` under v2
/// only; v1 finds `docker-compose.yml` before `compose.yaml`). `None`: that
/// tool cannot load the project.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProjectNames {
    /// The name under `docker-compose` 1.x.
    pub v1: Option<String>,
    /// The name under `docker compose` 2.x.
    pub v2: Option<String>,
}

impl ProjectNames {
    /// Loads the project under both tools' rules (`options.flavour` is
    /// ignored) and keeps the names.
    pub fn load(options: &LoadOptions) -> ProjectNames {
        let name = |flavour| {
            Project::load(&LoadOptions {
                flavour,
                ..options.clone()
            })
            .ok()
            .map(|p| p.name)
        };
        ProjectNames {
            v1: name(Flavour::V1),
            v2: name(Flavour::V2),
        }
    }

    /// The name under `flavour`'s rules.
    pub fn of(&self, flavour: Flavour) -> Option<&str> {
        match flavour {
            Flavour::V1 => self.v1.as_deref(),
            Flavour::V2 => self.v2.as_deref(),
        }
    }

    /// The names, each once.
    pub fn distinct(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.v1.iter().chain(&self.v2).map(String::as_str).collect();
        names.dedup();
        names
    }
}

/// How to find the project: the `docker compose` flags and the environment.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// `-f`, in order; empty means `COMPOSE_FILE`, else the default names.
    pub files: Vec<PathBuf>,
    /// `-p`.
    pub project_name: Option<String>,
    /// `--project-directory`.
    pub project_directory: Option<PathBuf>,
    /// `--env-file`, in order; empty means `.env` in the project directory.
    pub env_files: Vec<PathBuf>,
    /// `--profile`; empty means `COMPOSE_PROFILES`.
    pub profiles: Vec<String>,
    /// Where relative paths start; `None` is the current directory.
    pub working_dir: Option<PathBuf>,
    /// The process environment; `None` reads the real one.
    pub environment: Option<Env>,
    /// Which Compose tool's rules to follow.
    pub flavour: Flavour,
}

/// A loaded project: its name, files and services.
#[derive(Debug, Clone)]
pub struct Project {
    /// The project name, as the `com.docker.compose.project` label holds it.
    pub name: String,
    /// The project directory (relative paths in the files start here).
    pub directory: PathBuf,
    /// The files merged, in order.
    pub files: Vec<PathBuf>,
    /// The active profiles.
    pub profiles: Vec<String>,
    /// Every service, by name, active or not.
    pub services: BTreeMap<String, Service>,
    /// The project's own `x-rollout`.
    pub rollout: RolloutExt,
    /// What a user should know but that did not stop the load (unset
    /// variables, several default files).
    pub warnings: Vec<String>,
    /// The rules followed.
    pub flavour: Flavour,
    /// The variables interpolated from (process environment over env file),
    /// to hand to the Compose tool when it is run for this project.
    pub environment: Env,
    tree: Node,
}

impl Project {
    /// Finds and loads the project as `docker compose` would with `options`.
    pub fn load(options: &LoadOptions) -> Result<Project, ComposeError> {
        let wd = match &options.working_dir {
            Some(d) => d.clone(),
            None => std::env::current_dir().map_err(|source| ComposeError::Io {
                path: PathBuf::from("."),
                source,
            })?,
        };
        let process: Env = match &options.environment {
            Some(e) => e.clone(),
            None => std::env::vars().collect(),
        };
        let explicit_dir = options.project_directory.as_ref().map(|d| wd.join(d));
        let mut warnings = Vec::new();

        // The environment that finds the files: the env file beside the
        // working (or project) directory, under the process environment.
        let discovery_dir = explicit_dir.clone().unwrap_or_else(|| wd.clone());
        let env_files: Vec<PathBuf> = options.env_files.iter().map(|f| wd.join(f)).collect();
        let mut env = environment(&env_files, &discovery_dir, &process)?;

        let mut warnings_files = Vec::new();
        let files = find_files(options, &wd, &env, &mut warnings_files)?;
        warnings.extend(warnings_files);
        let directory = match (explicit_dir, files.first()) {
            (Some(d), _) => d,
            (None, Some((_, first))) => first
                .parent()
                .map(Path::to_path_buf)
                .unwrap_or_else(|| wd.clone()),
            (None, None) => return Err(ComposeError::NoComposeFile { dir: discovery_dir }),
        };
        if env_files.is_empty() && directory != discovery_dir {
            env = environment(&env_files, &directory, &process)?;
        }

        let mut merged: Option<Node> = None;
        for (display, path) in &files {
            let mut tree = read_tree(display, path, &env, &mut warnings)?;
            let mut read_other =
                |other: &Path| read_tree(&self::display(&wd, other), other, &env, &mut warnings);
            extends::resolve(&mut tree, path, &mut read_other)?;
            merged = Some(match merged {
                None => tree,
                Some(base) => merge(base, tree),
            });
        }
        let Some(tree) = merged else {
            return Err(ComposeError::NoComposeFile { dir: directory });
        };
        let name = project_name(options, &env, &tree, &directory)?;
        let profiles = if options.profiles.is_empty() {
            env.get("COMPOSE_PROFILES")
                .map(|p| {
                    p.split(',')
                        .map(str::trim)
                        .filter(|p| !p.is_empty())
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default()
        } else {
            options.profiles.clone()
        };

        let mut services = BTreeMap::new();
        if let Some(node) = tree.get("services") {
            for e in read::map(node, "services")? {
                services.insert(e.key.clone(), parse_service(&e.key, &e.value, &directory)?);
            }
        }
        let rollout = match tree.get("x-rollout") {
            Some(node) => parse_ext(node, "x-rollout")?,
            None => Default::default(),
        };
        let project = Project {
            name,
            directory,
            files: files.into_iter().map(|(_, p)| p).collect(),
            profiles,
            services,
            rollout,
            warnings,
            flavour: options.flavour,
            environment: env,
            tree,
        };
        project.check_references()?;
        Ok(project)
    }

    /// The merged, interpolated tree, for fields this crate does not read.
    pub fn tree(&self) -> &Node {
        &self.tree
    }

    /// The service `name`, or an error listing the project's services.
    pub fn service(&self, name: &str) -> Result<&Service, ComposeError> {
        self.services
            .get(name)
            .ok_or_else(|| ComposeError::UnknownService {
                name: name.to_string(),
                project: self.name.clone(),
                known: self.services.keys().cloned().collect(),
            })
    }

    /// Whether `service` is enabled by the active profiles (a service with
    /// no profiles always is; `*` enables every profile). A service named on
    /// the command line is enabled whatever its profiles, as in Compose.
    pub fn is_active(&self, service: &str) -> bool {
        self.services.get(service).is_some_and(|s| {
            s.profiles.is_empty()
                || self
                    .profiles
                    .iter()
                    .any(|p| p == "*" || s.profiles.contains(p))
        })
    }

    /// The names of the enabled services, sorted.
    pub fn active_services(&self) -> Vec<&str> {
        self.services
            .keys()
            .filter(|s| self.is_active(s))
            .map(String::as_str)
            .collect()
    }

    /// Every `x-rollout` field naming a service (`proxy`, `colours`) must
    /// name one of the project.
    fn check_references(&self) -> Result<(), ComposeError> {
        let mut places: Vec<(String, &Node)> = Vec::new();
        if let Some(x) = self.tree.get("x-rollout") {
            places.push(("x-rollout".to_string(), x));
        }
        if let Some(services) = self.tree.get("services").and_then(Node::as_map) {
            for e in services {
                if let Some(x) = e.value.get("x-rollout") {
                    places.push((format!("services.{}.x-rollout", e.key), x));
                }
            }
        }
        for (path, x) in places {
            let mut refs: Vec<(String, &Node)> = Vec::new();
            if let Some(p) = x.get("proxy").filter(|p| !p.is_null()) {
                refs.push((join(&path, "proxy"), p));
            }
            if let Some(items) = x.get("colours").and_then(Node::as_seq) {
                for (i, item) in items.iter().enumerate() {
                    refs.push((format!("{}[{i}]", join(&path, "colours")), item));
                }
            }
            for (p, node) in refs {
                let name = node.as_str().unwrap_or_default();
                if !self.services.contains_key(name) {
                    return Err(ComposeError::field(
                        &node.pos,
                        &p,
                        format!(
                            "no service {name:?} in the project; its services are: {}",
                            self.services.keys().cloned().collect::<Vec<_>>().join(", ")
                        ),
                    ));
                }
            }
        }
        Ok(())
    }
}

/// The process environment over the env files (or `dir/.env` when none is
/// given and it exists).
fn environment(env_files: &[PathBuf], dir: &Path, process: &Env) -> Result<Env, ComposeError> {
    let mut env = Env::new();
    let default = dir.join(".env");
    let (files, required): (Vec<PathBuf>, bool) = if env_files.is_empty() {
        (vec![default], false)
    } else {
        (env_files.to_vec(), true)
    };
    for path in files {
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if !required && e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(source) => return Err(ComposeError::Io { path, source }),
        };
        let mut seen = env.clone();
        seen.extend(process.iter().map(|(k, v)| (k.clone(), v.clone())));
        env.extend(parse_env_file(&path, &text, &seen)?);
    }
    env.extend(process.iter().map(|(k, v)| (k.clone(), v.clone())));
    Ok(env)
}

/// The files to merge, each with the name errors give it.
fn find_files(
    options: &LoadOptions,
    wd: &Path,
    env: &Env,
    warnings: &mut Vec<String>,
) -> Result<Vec<(String, PathBuf)>, ComposeError> {
    if !options.files.is_empty() {
        return Ok(options
            .files
            .iter()
            .map(|f| (f.display().to_string(), wd.join(f)))
            .collect());
    }
    if let Some(list) = env.get("COMPOSE_FILE").filter(|l| !l.is_empty()) {
        let sep = env
            .get("COMPOSE_PATH_SEPARATOR")
            .filter(|s| !s.is_empty())
            .map(String::as_str)
            .unwrap_or(if cfg!(windows) { ";" } else { ":" });
        let files: Vec<(String, PathBuf)> = list
            .split(sep)
            .filter(|f| !f.is_empty())
            .map(|f| (f.to_string(), wd.join(f)))
            .collect();
        if !files.is_empty() {
            return Ok(files);
        }
    }
    let start = options
        .project_directory
        .as_ref()
        .map(|d| wd.join(d))
        .unwrap_or_else(|| wd.to_path_buf());
    let mut dir = Some(start.as_path());
    while let Some(d) = dir {
        let found: Vec<&str> = options
            .flavour
            .default_files()
            .iter()
            .copied()
            .filter(|f| d.join(f).is_file())
            .collect();
        if let Some(first) = found.first() {
            if found.len() > 1 {
                warnings.push(format!(
                    "found multiple config files with supported names: {}; using {first}",
                    found.join(", ")
                ));
            }
            let mut files = vec![(display(wd, &d.join(first)), d.join(first))];
            if let Some(o) = options
                .flavour
                .override_files()
                .iter()
                .find(|f| d.join(f).is_file())
            {
                files.push((display(wd, &d.join(o)), d.join(o)));
            }
            return Ok(files);
        }
        dir = d.parent();
    }
    Err(ComposeError::NoComposeFile { dir: start })
}

/// `path` relative to `wd` when below it.
fn display(wd: &Path, path: &Path) -> String {
    path.strip_prefix(wd).unwrap_or(path).display().to_string()
}

fn project_name(
    options: &LoadOptions,
    env: &Env,
    tree: &Node,
    directory: &Path,
) -> Result<String, ComposeError> {
    let flavour = options.flavour;
    let given: Option<(String, &'static str)> = options
        .project_name
        .clone()
        .filter(|n| !n.is_empty())
        .map(|n| (n, "-p"))
        .or_else(|| {
            env.get("COMPOSE_PROJECT_NAME")
                .filter(|n| !n.is_empty())
                .map(|n| (n.clone(), "COMPOSE_PROJECT_NAME"))
        })
        .or_else(|| match flavour {
            Flavour::V1 => None,
            Flavour::V2 => tree
                .get("name")
                .and_then(Node::as_str)
                .filter(|n| !n.is_empty())
                .map(|n| (n.to_string(), "the name field")),
        });
    let (name, origin) = match given {
        Some((name, origin)) => match flavour {
            Flavour::V1 => (normalize_project_name(&name, flavour), origin),
            Flavour::V2 => {
                let valid = name
                    .chars()
                    .next()
                    .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
                    && normalize_project_name(&name, flavour) == name;
                if !valid {
                    return Err(ComposeError::ProjectName {
                        name,
                        origin,
                        why: "it must be lowercase letters, digits, dashes and underscores, starting with a letter or digit",
                    });
                }
                (name, origin)
            }
        },
        None => {
            let base = directory
                .file_name()
                .map(|b| b.to_string_lossy().into_owned())
                .unwrap_or_default();
            (
                normalize_project_name(&base, flavour),
                "the project directory",
            )
        }
    };
    if name.is_empty() {
        return Err(ComposeError::ProjectName {
            name,
            origin,
            why: "nothing is left of it once normalised",
        });
    }
    Ok(name)
}

/// One Compose file: read, parsed (a mapping at the top), interpolated.
fn read_tree(
    display: &str,
    path: &Path,
    env: &Env,
    warnings: &mut Vec<String>,
) -> Result<Node, ComposeError> {
    let text = std::fs::read_to_string(path).map_err(|source| ComposeError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let mut tree = yaml::parse(Arc::from(display), &text)?;
    if !matches!(tree.value, Value::Map(_)) {
        return Err(read::expected(
            &tree,
            "(top level)",
            "a mapping with services",
        ));
    }
    interpolate_tree(&mut tree, &mut String::new(), env, warnings)?;
    Ok(tree)
}

/// Interpolates every scalar value (not the keys), naming the field on error.
fn interpolate_tree(
    node: &mut Node,
    path: &mut String,
    env: &Env,
    warnings: &mut Vec<String>,
) -> Result<(), ComposeError> {
    let pos = node.pos.clone();
    match &mut node.value {
        Value::Null => Ok(()),
        Value::Scalar(s) => {
            s.text = interpolate(&s.text, env, warnings)
                .map_err(|m| ComposeError::field(&pos, path, m))?;
            Ok(())
        }
        Value::Seq(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                interpolate_tree(item, path, env, warnings)?;
                path.truncate(len);
            }
            Ok(())
        }
        Value::Map(entries) => {
            for e in entries.iter_mut() {
                let len = path.len();
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(&e.key);
                interpolate_tree(&mut e.value, path, env, warnings)?;
                path.truncate(len);
            }
            Ok(())
        }
    }
}
