//! `cargo xtask tidy`: the structure ARCHITECTURE.md describes, checked.
//!
//! It reads the workspace's `Cargo.toml` files and Rust sources (pure file
//! reading: no cargo, no compiler, well under a second) and fails, naming
//! the rule and the file and line, when:
//!
//! - a crate depends on another in a direction ARCHITECTURE.md forbids
//!   (`layering`, see [`rules`] for the table);
//! - a workspace dependency is used by no member, or a member declares a
//!   dependency its sources never name (`unused-dependency`);
//! - a source file outside tests passes 1,200 lines (`file-length`);
//! - a library crate's root does not deny missing docs (`missing-docs`).
//!
//! `cargo xtask test` runs it before the lint gate. Model: rust-analyzer's
//! `xtask/src/tidy.rs`.

mod manifest;
mod rules;
mod scan;

use crate::util::root;
use anyhow::{bail, Context, Result};
use manifest::Manifest;
use scan::Scan;
use std::path::{Path, PathBuf};

/// Where a source file sits in its package.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The library or binaries (`src/`): the code others run.
    Library,
    /// Tests: a `tests/` folder, a `[[test]]` target, a `#[cfg(test)]` file.
    Test,
    /// Examples, benches, build scripts: dev targets other than tests.
    Dev,
}

/// One Rust source file, read.
#[derive(Debug)]
pub struct SourceFile {
    /// Relative to its package's folder, with `/`.
    pub path: String,
    /// What it is for.
    pub kind: Kind,
    /// Its number of lines.
    pub lines: usize,
    /// What it names.
    pub scan: Scan,
}

/// One member of the workspace.
#[derive(Debug)]
pub struct Package {
    /// Relative to the workspace root, with `/`.
    pub dir: String,
    /// `[package] name`.
    pub name: String,
    /// Its manifest.
    pub manifest: Manifest,
    /// Its Rust sources.
    pub files: Vec<SourceFile>,
}

impl Package {
    /// A package from its manifest and its sources (paths relative to
    /// `dir`); in memory, so that the rules can be tested on small inputs.
    pub fn new(dir: &str, manifest: &str, files: &[(String, String)]) -> Result<Package, String> {
        let manifest = manifest::parse(manifest).map_err(|e| format!("{dir}/Cargo.toml: {e}"))?;
        let name = manifest
            .package
            .clone()
            .ok_or(format!("{dir}/Cargo.toml: no [package] name"))?;
        let mut files: Vec<SourceFile> = files
            .iter()
            .map(|(path, text)| {
                let scan = scan::scan(text);
                let kind = if path.starts_with("tests/")
                    || manifest.test_paths.iter().any(|t| t == path)
                    || scan.all_test
                {
                    Kind::Test
                } else if path.starts_with("src/") || manifest.lib_path.as_ref() == Some(path) {
                    Kind::Library
                } else {
                    Kind::Dev
                };
                SourceFile {
                    path: path.clone(),
                    kind,
                    lines: text.lines().count(),
                    scan,
                }
            })
            .collect();
        // `#[cfg(test)] mod name;` puts a whole file (or folder) in the tests.
        let test_dirs: Vec<String> = files
            .iter()
            .filter(|f| f.kind == Kind::Library)
            .flat_map(|f| {
                let (parent, file) = f.path.rsplit_once('/').unwrap_or(("", &f.path));
                let stem = file.trim_end_matches(".rs");
                let base = if matches!(file, "mod.rs" | "lib.rs" | "main.rs") {
                    parent.to_string()
                } else {
                    format!("{parent}/{stem}")
                };
                f.scan
                    .test_modules
                    .iter()
                    .map(move |m| format!("{base}/{m}"))
            })
            .collect();
        for f in &mut files {
            if test_dirs
                .iter()
                .any(|d| f.path == format!("{d}.rs") || f.path.starts_with(&format!("{d}/")))
            {
                f.kind = Kind::Test;
            }
        }
        Ok(Package {
            dir: dir.to_string(),
            name,
            manifest,
            files,
        })
    }

    /// A file's path from the workspace root.
    pub fn path_of(&self, file: &str) -> String {
        format!("{}/{file}", self.dir)
    }
}

/// The workspace, read.
#[derive(Debug)]
pub struct Workspace {
    /// The root manifest.
    pub manifest: Manifest,
    /// Its members.
    pub packages: Vec<Package>,
}

/// `cargo xtask tidy`.
pub fn run(args: &[String]) -> Result<()> {
    if let Some(a) = args.first() {
        bail!("tidy takes no arguments (got {a:?})");
    }
    let root = root();
    let ws = load(&root)?;
    let findings = rules::check(&ws);
    for f in &findings {
        println!("{f}");
    }
    let files: usize = ws.packages.iter().map(|p| p.files.len()).sum();
    if !findings.is_empty() {
        bail!(
            "tidy: {} problem(s) in {} members, {files} files (rules: xtask/src/tidy/rules.rs)",
            findings.len(),
            ws.packages.len()
        );
    }
    eprintln!("tidy: ok ({} members, {files} files)", ws.packages.len());
    Ok(())
}

/// Reads the workspace under `root`.
fn load(root: &Path) -> Result<Workspace> {
    let text = read(&root.join("Cargo.toml"))?;
    let manifest = manifest::parse(&text).map_err(|e| anyhow::anyhow!("Cargo.toml: {e}"))?;
    let mut packages = Vec::new();
    for member in expand_members(root, &manifest.members)? {
        let dir = root.join(&member);
        let mut files = Vec::new();
        rust_files(&dir, &dir, &mut files)?;
        files.sort();
        let sources = files
            .into_iter()
            .map(|rel| {
                let text = read(&dir.join(&rel))?;
                Ok((rel, text))
            })
            .collect::<Result<Vec<_>>>()?;
        let manifest = read(&dir.join("Cargo.toml"))?;
        packages.push(Package::new(&member, &manifest, &sources).map_err(anyhow::Error::msg)?);
    }
    Ok(Workspace { manifest, packages })
}

/// The members, with `dir/*` globs expanded to the folders with a manifest.
fn expand_members(root: &Path, members: &[String]) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for m in members {
        match m.strip_suffix("/*") {
            Some(parent) => {
                let mut found: Vec<String> = std::fs::read_dir(root.join(parent))
                    .with_context(|| format!("cannot list {parent}"))?
                    .filter_map(|e| e.ok())
                    .filter(|e| e.path().join("Cargo.toml").is_file())
                    .map(|e| format!("{parent}/{}", e.file_name().to_string_lossy()))
                    .collect();
                found.sort();
                out.extend(found);
            }
            None => out.push(m.clone()),
        }
    }
    Ok(out)
}

/// Every `.rs` file under `dir`, relative to `base`, leaving out build
/// output, hidden folders and packages of their own.
fn rust_files(base: &Path, dir: &Path, out: &mut Vec<String>) -> Result<()> {
    let entries =
        std::fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))?;
    for e in entries {
        let e = e?;
        let path: PathBuf = e.path();
        let name = e.file_name().to_string_lossy().into_owned();
        if e.file_type()?.is_dir() {
            if name == "target" || name.starts_with('.') || path.join("Cargo.toml").is_file() {
                continue;
            }
            rust_files(base, &path, out)?;
        } else if name.ends_with(".rs") {
            let rel = path.strip_prefix(base).expect("under base");
            let rel: Vec<String> = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            out.push(rel.join("/"));
        }
    }
    Ok(())
}

fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(p, t)| (p.to_string(), t.to_string()))
            .collect()
    }

    #[test]
    fn files_are_sorted_into_library_test_and_dev_code() {
        let p = Package::new(
            "crates/x",
            "[package]\nname = \"x\"\n[[test]]\nname = \"suite\"\npath = \"suites/main.rs\"\n",
            &files(&[
                ("src/lib.rs", "#[cfg(test)]\nmod tests;\npub mod a;\n"),
                ("src/tests.rs", ""),
                ("src/a.rs", "#[cfg(test)]\nmod checks;\n"),
                ("src/a/checks/more.rs", ""),
                ("src/only.rs", "#![cfg(test)]\n"),
                ("tests/it.rs", ""),
                ("suites/main.rs", ""),
                ("examples/demo.rs", ""),
                ("build.rs", ""),
            ]),
        )
        .unwrap();
        let kinds: Vec<(&str, Kind)> = p.files.iter().map(|f| (f.path.as_str(), f.kind)).collect();
        assert_eq!(
            kinds,
            [
                ("src/lib.rs", Kind::Library),
                ("src/tests.rs", Kind::Test),
                ("src/a.rs", Kind::Library),
                ("src/a/checks/more.rs", Kind::Test),
                ("src/only.rs", Kind::Test),
                ("tests/it.rs", Kind::Test),
                ("suites/main.rs", Kind::Test),
                ("examples/demo.rs", Kind::Dev),
                ("build.rs", Kind::Dev),
            ]
        );
        assert_eq!(p.path_of("src/a.rs"), "crates/x/src/a.rs");
    }

    #[test]
    fn the_workspace_on_disk_is_read() {
        let ws = load(&root()).unwrap();
        let names: Vec<&str> = ws.packages.iter().map(|p| p.name.as_str()).collect();
        assert!(
            names.contains(&"rollout-core") && names.contains(&"xtask"),
            "{names:?}"
        );
        let xtask = ws.packages.iter().find(|p| p.name == "xtask").unwrap();
        assert!(xtask.files.iter().any(|f| f.path == "src/tidy/mod.rs"));
    }
}
