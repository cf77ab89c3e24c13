//! `extends`: a service that starts from another service's definition.
//!
//! ```yaml
//! services:
//!   web-green:
//!     extends:
//!       file: compose.yaml   # optional: the same file when absent
//!       service: web
//!     ports: !reset []
//! ```
//!
//! Compose resolves `extends` in each file on its own, before the files
//! are merged: a service named without `file` must be in the same file (an
//! override cannot extend a service of the base file that way; Compose 2
//! then says the service has no image). The extended service is itself
//! resolved first (chains are followed, a cycle is an error naming it), then
//! the extending service is merged over it by the same rules as an
//! override file ([`crate::merge`]), without its `extends` key. Relative
//! paths of a service taken from a file in another folder (its build
//! context, env files and bind-mount sources) are made absolute from that
//! folder, as Compose does.
//!
//! Every error names the `extends` value's file, line and column.

use crate::error::ComposeError;
use crate::merge::merge_service;
use crate::read::{self, join};
use crate::yaml::{Entry, Node, Scalar, Value};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Longest chain of `extends` followed (Compose files need two or three).
const MAX_CHAIN: usize = 32;

/// Reads another Compose file (parsed, checked to be a mapping, and
/// interpolated as the project's own files are).
pub(crate) type ReadFile<'a> = dyn FnMut(&Path) -> Result<Node, ComposeError> + 'a;

/// Resolves every `extends` of the file `path`, whose tree is `tree`.
pub(crate) fn resolve(
    tree: &mut Node,
    path: &Path,
    read_file: &mut ReadFile<'_>,
) -> Result<(), ComposeError> {
    let Some(services) = tree.get("services") else {
        return Ok(());
    };
    let names: Vec<String> = read::map(services, "services")?
        .iter()
        .filter(|e| e.value.get("extends").is_some())
        .map(|e| e.key.clone())
        .collect();
    if names.is_empty() {
        return Ok(());
    }
    let mut resolver = Resolver {
        files: HashMap::new(),
        read_file,
    };
    resolver.files.insert(path.to_path_buf(), tree.clone());
    let mut resolved = Vec::new();
    for name in names {
        let node = resolver.service(path, &name, &mut Vec::new())?;
        resolved.push((name, node));
    }
    if let Some(Entry {
        value: Node {
            value: Value::Map(entries),
            ..
        },
        ..
    }) = map_entry_mut(tree, "services")
    {
        for (name, node) in resolved {
            if let Some(e) = entries.iter_mut().find(|e| e.key == name) {
                e.value = node;
            }
        }
    }
    Ok(())
}

fn map_entry_mut<'a>(node: &'a mut Node, key: &str) -> Option<&'a mut Entry> {
    match &mut node.value {
        Value::Map(entries) => entries.iter_mut().find(|e| e.key == key),
        _ => None,
    }
}

struct Resolver<'r, 'a> {
    /// Trees read so far, by path (each file is read once).
    files: HashMap<PathBuf, Node>,
    read_file: &'r mut ReadFile<'a>,
}

impl Resolver<'_, '_> {
    fn tree(&mut self, path: &Path) -> Result<&Node, ComposeError> {
        if !self.files.contains_key(path) {
            let tree = (self.read_file)(path)?;
            self.files.insert(path.to_path_buf(), tree);
        }
        Ok(&self.files[path])
    }

    /// The service `name` of the file `path` with its own `extends`
    /// resolved; `chain` holds the services being resolved above it.
    fn service(
        &mut self,
        path: &Path,
        name: &str,
        chain: &mut Vec<(PathBuf, String)>,
    ) -> Result<Node, ComposeError> {
        let field = format!("services.{name}");
        let tree = self.tree(path)?;
        let Some(node) = tree.get("services").and_then(|s| s.get(name)).cloned() else {
            // The callers looked first.
            return Err(ComposeError::UnknownService {
                name: name.to_string(),
                project: path.display().to_string(),
                known: Vec::new(),
            });
        };
        let Some(extends) = node.get("extends").cloned() else {
            return Ok(node);
        };
        let at = join(&field, "extends");
        let (file, base) = target(&extends, &at)?;
        let base_path = match &file {
            Some(f) => path.parent().unwrap_or(Path::new(".")).join(f),
            None => path.to_path_buf(),
        };
        let link = (base_path.clone(), base.clone());
        let here = (path.to_path_buf(), name.to_string());
        if chain.len() >= MAX_CHAIN || chain.contains(&link) || link == here {
            let mut names: Vec<String> = chain.iter().map(|(_, s)| s.clone()).collect();
            names.push(name.to_string());
            names.push(base.clone());
            return Err(ComposeError::field(
                &extends.pos,
                &at,
                format!("goes round in a circle: {}", names.join(" -> ")),
            ));
        }
        let base_tree = match self.tree(&base_path) {
            Ok(tree) => tree,
            Err(ComposeError::Io { path: p, source }) => {
                return Err(ComposeError::field(
                    &extends.pos,
                    &at,
                    format!("cannot read {}: {source}", p.display()),
                ));
            }
            Err(e) => return Err(e),
        };
        if base_tree
            .get("services")
            .and_then(|s| s.get(&base))
            .is_none()
        {
            return Err(missing(base_tree, &base_path, &base, &extends, &at));
        }
        chain.push(here);
        let base_node = self.service(&base_path, &base, chain)?;
        chain.pop();
        let base_dir = base_path.parent().unwrap_or(Path::new("."));
        let base_node = if base_dir != path.parent().unwrap_or(Path::new(".")) {
            rebase(base_node, base_dir)
        } else {
            base_node
        };
        let mut own = node;
        if let Value::Map(entries) = &mut own.value {
            entries.retain(|e| e.key != "extends");
        }
        Ok(merge_service(name, base_node, own))
    }
}

/// `extends: web` or `extends: {service: web, file: other.yaml}`.
fn target(node: &Node, at: &str) -> Result<(Option<String>, String), ComposeError> {
    if let Some(service) = node.as_str() {
        return Ok((None, non_empty(node, at, service)?));
    }
    let entries = read::map(node, at)?;
    read::only_keys(entries, at, &["service", "file"])?;
    let service = match node.get("service") {
        Some(s) => non_empty(
            s,
            &join(at, "service"),
            &read::string(s, &join(at, "service"))?,
        )?,
        None => {
            return Err(ComposeError::field(
                &node.pos,
                at,
                "names no service (add service: NAME)",
            ))
        }
    };
    let file = match node.get("file") {
        Some(f) => Some(non_empty(
            f,
            &join(at, "file"),
            &read::string(f, &join(at, "file"))?,
        )?),
        None => None,
    };
    Ok((file, service))
}

fn non_empty(node: &Node, at: &str, text: &str) -> Result<String, ComposeError> {
    if text.is_empty() {
        return Err(ComposeError::field(&node.pos, at, "is empty"));
    }
    Ok(text.to_string())
}

fn missing(tree: &Node, path: &Path, name: &str, extends: &Node, at: &str) -> ComposeError {
    let names: Vec<String> = tree
        .get("services")
        .and_then(Node::as_map)
        .map(|m| m.iter().map(|e| e.key.clone()).collect())
        .unwrap_or_default();
    ComposeError::Field {
        pos: extends.pos.clone(),
        path: at.to_string(),
        message: format!(
            "names service {name:?}, which {} does not define (it defines: {})",
            path.display(),
            if names.is_empty() {
                "none".to_string()
            } else {
                names.join(", ")
            }
        ),
    }
}

/// The service `node` taken from a file in `dir`, with its relative paths
/// made absolute from there: `build` (or `build.context`), `env_file` and
/// the sources of bind mounts.
fn rebase(mut node: Node, dir: &Path) -> Node {
    let Value::Map(entries) = &mut node.value else {
        return node;
    };
    for e in entries.iter_mut() {
        match e.key.as_str() {
            "build" => match &mut e.value.value {
                Value::Scalar(s) => absolute(s, dir),
                Value::Map(build) => {
                    for b in build.iter_mut().filter(|b| b.key == "context") {
                        if let Value::Scalar(s) = &mut b.value.value {
                            absolute(s, dir);
                        }
                    }
                }
                _ => {}
            },
            "env_file" => match &mut e.value.value {
                Value::Scalar(s) => absolute(s, dir),
                Value::Seq(items) => {
                    for item in items {
                        match &mut item.value {
                            Value::Scalar(s) => absolute(s, dir),
                            Value::Map(m) => {
                                for p in m.iter_mut().filter(|p| p.key == "path") {
                                    if let Value::Scalar(s) = &mut p.value.value {
                                        absolute(s, dir);
                                    }
                                }
                            }
                            _ => {}
                        }
                    }
                }
                _ => {}
            },
            "volumes" => {
                if let Value::Seq(items) = &mut e.value.value {
                    for item in items {
                        rebase_volume(item, dir);
                    }
                }
            }
            _ => {}
        }
    }
    node
}

/// `./data:/data` or `{type: bind, source: ./data, ...}`.
fn rebase_volume(item: &mut Node, dir: &Path) {
    match &mut item.value {
        Value::Scalar(s) => {
            if let Some((source, rest)) = s.text.split_once(':') {
                if is_relative(source) {
                    let source = dir.join(source).display().to_string();
                    s.text = format!("{source}:{rest}");
                }
            }
        }
        Value::Map(m) => {
            let bind = m
                .iter()
                .any(|e| e.key == "type" && e.value.as_str() == Some("bind"));
            if bind {
                for e in m.iter_mut().filter(|e| e.key == "source") {
                    if let Value::Scalar(s) = &mut e.value.value {
                        if is_relative(&s.text) {
                            absolute(s, dir);
                        }
                    }
                }
            }
        }
        _ => {}
    }
}

fn is_relative(source: &str) -> bool {
    source == "." || source == ".." || source.starts_with("./") || source.starts_with("../")
}

fn absolute(s: &mut Scalar, dir: &Path) {
    if !s.text.is_empty() && !Path::new(&s.text).is_absolute() && !s.text.contains("://") {
        s.text = dir.join(&s.text).display().to_string();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::yaml;
    use std::sync::Arc;

    fn parse(name: &str, text: &str) -> Node {
        yaml::parse(Arc::from(name), text).unwrap()
    }

    fn resolve_with(
        main: &str,
        others: &[(&str, &str)],
    ) -> Result<(Node, Vec<PathBuf>), ComposeError> {
        let mut tree = parse("compose.yaml", main);
        let mut read = Vec::new();
        let others: HashMap<PathBuf, Node> = others
            .iter()
            .map(|(p, t)| (PathBuf::from(p), parse(p, t)))
            .collect();
        let mut read_file = |p: &Path| {
            read.push(p.to_path_buf());
            others.get(p).cloned().ok_or_else(|| ComposeError::Io {
                path: p.to_path_buf(),
                source: std::io::Error::from(std::io::ErrorKind::NotFound),
            })
        };
        resolve(&mut tree, Path::new("/p/compose.yaml"), &mut read_file)?;
        Ok((tree, read))
    }

    fn field<'a>(tree: &'a Node, service: &str, key: &str) -> Option<&'a Node> {
        tree.get("services")?.get(service)?.get(key)
    }

    #[test]
    fn a_service_of_the_same_file_is_the_base_and_own_fields_win() {
        let (tree, read) = resolve_with(
            "services:\n  web:\n    image: app:1\n    environment: {A: '1', B: '2'}\n    ports: ['80:8000']\n  green:\n    extends: web\n    environment: {B: '3'}\n",
            &[],
        )
        .unwrap();
        assert!(read.is_empty());
        assert_eq!(
            field(&tree, "green", "image").unwrap().as_str(),
            Some("app:1")
        );
        let env = field(&tree, "green", "environment").unwrap();
        assert_eq!(env.get("A").unwrap().as_str(), Some("1"));
        assert_eq!(env.get("B").unwrap().as_str(), Some("3"));
        assert!(field(&tree, "green", "extends").is_none());
        // The base is left as it was.
        assert_eq!(
            field(&tree, "web", "environment")
                .unwrap()
                .get("B")
                .unwrap()
                .as_str(),
            Some("2")
        );
    }

    #[test]
    fn another_file_is_read_and_its_relative_paths_are_made_absolute() {
        let (tree, read) = resolve_with(
            "services:\n  green:\n    extends: {file: ../base/common.yaml, service: web}\n    image: app:2\n",
            &[(
                "/p/../base/common.yaml",
                "services:\n  web:\n    image: app:1\n    build: ./src\n    env_file: [.env]\n    volumes: ['./data:/data', 'named:/n', {type: bind, source: ./conf, target: /c}]\n",
            )],
        )
        .unwrap();
        assert_eq!(read, vec![PathBuf::from("/p/../base/common.yaml")]);
        assert_eq!(
            field(&tree, "green", "image").unwrap().as_str(),
            Some("app:2")
        );
        assert_eq!(
            field(&tree, "green", "build").unwrap().as_str(),
            Some("/p/../base/./src")
        );
        let vols = field(&tree, "green", "volumes").unwrap().as_seq().unwrap();
        assert_eq!(vols[0].as_str(), Some("/p/../base/./data:/data"));
        assert_eq!(vols[1].as_str(), Some("named:/n"));
        assert_eq!(
            vols[2].get("source").unwrap().as_str(),
            Some("/p/../base/./conf")
        );
        let env_file = field(&tree, "green", "env_file").unwrap().as_seq().unwrap();
        assert_eq!(env_file[0].as_str(), Some("/p/../base/.env"));
    }

    #[test]
    fn chains_are_followed_and_circles_are_named_where_written() {
        let (tree, _) = resolve_with(
            "services:\n  a:\n    image: x\n    stop_grace_period: 3s\n  b:\n    extends: a\n  c:\n    extends: {service: b}\n",
            &[],
        )
        .unwrap();
        assert_eq!(field(&tree, "c", "image").unwrap().as_str(), Some("x"));
        let err = resolve_with(
            "services:\n  a:\n    extends: b\n  b:\n    extends: a\n",
            &[],
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.starts_with("compose.yaml:5:14: services.b.extends:"),
            "{err}"
        );
        assert!(err.contains("circle: a -> b -> a"), "{err}");
        let err = resolve_with("services:\n  a:\n    extends: a\n", &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("circle"), "{err}");
    }

    #[test]
    fn bad_extends_values_say_what_and_where() {
        for (text, words) in [
            (
                "services:\n  a:\n    extends: nope\n",
                "which /p/compose.yaml does not define",
            ),
            (
                "services:\n  a:\n    extends: {file: x.yaml}\n",
                "compose.yaml:3:14: services.a.extends: names no service",
            ),
            (
                "services:\n  a:\n    extends: {service: b, files: x}\n",
                "files",
            ),
            (
                "services:\n  a:\n    extends: {file: gone.yaml, service: b}\n",
                "compose.yaml:3:14: services.a.extends: cannot read /p/gone.yaml",
            ),
            (
                "services:\n  a:\n    extends: ''\n",
                "services.a.extends: is empty",
            ),
        ] {
            let err = resolve_with(text, &[]).unwrap_err().to_string();
            assert!(err.contains(words), "{text}: {err}");
        }
    }
}
