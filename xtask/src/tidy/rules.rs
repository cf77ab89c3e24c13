//! The rules `cargo xtask tidy` enforces. The architecture's invariants are
//! data at the top of this file, next to the ARCHITECTURE.md sentence each
//! one checks; change them together.

use super::manifest::{Dep, DepKind};
use super::{Kind, Package, Workspace};
use std::collections::BTreeSet;
use std::fmt;

/// "`rollout-core` does no I/O": it names none of these paths outside its
/// tests…
const NO_IO_CRATE: &str = "rollout-core";
const IO_PATHS: &[&str] = &[
    "std::fs",
    "std::net",
    "std::process",
    "tokio::fs",
    "tokio::net",
    "tokio::process",
    "bollard",
];
/// …and depends on none of these crates, nor asks tokio for these features
/// itself (features the workspace's tokio entry turns on are not its own).
const IO_CRATES: &[&str] = &[
    "bollard",
    "hyper",
    "hyper-util",
    "reqwest",
    "tempfile",
    "mio",
    "socket2",
];
const IO_TOKIO_FEATURES: &[&str] = &[
    "fs", "net", "process", "io-std", "io-util", "signal", "full",
];

/// "Strategies never name a backend or a proxy": no dependency on these and
/// no path into them outside dev-dependencies and tests.
const BACKEND_BLIND_CRATE: &str = "rollout-strategies";
const BACKENDS: &[&str] = &[
    "rollout-docker",
    "rollout-nginx",
    "rollout-haproxy",
    "rollout-mock",
    "rollout-swarm",
    "bollard",
];

/// "rollout-migrate knows the database, not the deploy": the rollout calls
/// it, never the other way, so it depends on and names none of these outside
/// dev-dependencies and tests (rollout-core is its only crate of ours).
const MIGRATE_CRATE: &str = "rollout-migrate";
const DEPLOY_CRATES: &[&str] = &[
    "rollout-docker",
    "rollout-nginx",
    "rollout-haproxy",
    "rollout-compose",
    "rollout-strategies",
    "rollout-mock",
    "rollout-swarm",
    "bollard",
];

/// "No other crate imports bollard": only the engine's backends talk to Docker,
/// `rollout-docker` (one engine) and `rollout-swarm` (a swarm's managers).
const DOCKER_CRATES: &[&str] = &["rollout-docker", "rollout-swarm"];
/// How findings name them.
const DOCKER_CRATES_SAID: &str = "rollout-docker and rollout-swarm";
const DOCKER_API: &str = "bollard";

/// "No rollout logic lives here": the plugin implements none of the traits a
/// rollout runs on; their implementations belong to the crates that own them.
const PLUGIN_CRATE: &str = "docker-rollout";
const RUNTIME_TRAITS: &[&str] = &[
    "Backend",
    "TrafficRouter",
    "Journal",
    "ConfigStore",
    "ProxyExec",
    "RuntimeChannel",
    "Verifier",
    "Analysis",
    "Addresses",
];

/// House rule: no source file outside tests passes this many lines.
pub const MAX_LINES: usize = 1_200;

/// Dependencies a crate uses without naming them in a path (through a
/// macro, say): `(package, dependency key, why)`. Keep it short.
const USED_WITHOUT_A_PATH: &[(&str, &str, &str)] = &[
    (
        "rollout-migrate",
        "squawk-parser",
        "pinned to squawk-syntax's version: its caret requirement would take a release that needs a newer rustc",
    ),
    (
        "rollout-migrate",
        "squawk-lexer",
        "pinned to squawk-syntax's version, as squawk-parser",
    ),
    (
        "rollout-migrate",
        "squawk-line-index",
        "pinned to squawk-linter's version, as squawk-parser",
    ),
];

/// One broken rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// `layering`, `unused-dependency`, `file-length` or `missing-docs`.
    pub rule: &'static str,
    /// From the workspace root.
    pub file: String,
    /// 1-based.
    pub line: usize,
    /// What is wrong and what the rule wants.
    pub message: String,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}: {}: {}",
            self.file, self.line, self.rule, self.message
        )
    }
}

/// Every rule over the workspace, in a stable order.
pub fn check(ws: &Workspace) -> Vec<Finding> {
    let mut out = Vec::new();
    layering(ws, &mut out);
    unused_dependencies(ws, &mut out);
    file_length(ws, &mut out);
    missing_docs(ws, &mut out);
    out
}

fn finding(rule: &'static str, file: String, line: usize, message: String) -> Finding {
    Finding {
        rule,
        file,
        line,
        message,
    }
}

/// The package a rule names; a rule whose crate is gone is itself a finding,
/// so that a rename cannot switch a rule off unnoticed.
fn package<'w>(ws: &'w Workspace, name: &str, out: &mut Vec<Finding>) -> Option<&'w Package> {
    let found = ws.packages.iter().find(|p| p.name == name);
    if found.is_none() {
        out.push(finding(
            "layering",
            "Cargo.toml".into(),
            1,
            format!("the architecture rules name `{name}`, which is no member of the workspace (update xtask/src/tidy/rules.rs)"),
        ));
    }
    found
}

/// The identifiers `krate` goes by in `pkg`'s code: its own, and the keys of
/// dependencies that rename it.
fn idents_of(pkg: &Package, krate: &str) -> BTreeSet<String> {
    let mut idents: BTreeSet<String> = [krate.replace('-', "_")].into();
    for d in &pkg.manifest.deps {
        if d.crate_name() == krate {
            idents.insert(d.ident());
        }
    }
    idents
}

/// Library code's paths that start with any of `prefixes` (in idents).
fn library_paths<'p>(
    pkg: &'p Package,
    prefixes: &'p [String],
    all_code: bool,
) -> impl Iterator<Item = (String, usize, String)> + 'p {
    pkg.files
        .iter()
        .filter(move |f| all_code || f.kind == Kind::Library)
        .flat_map(move |f| {
            f.scan
                .paths
                .iter()
                .filter(move |p| all_code || !p.in_test)
                .filter_map(move |p| {
                    prefixes
                        .iter()
                        .find(|x| p.starts_with(x))
                        .map(|_| (pkg.path_of(&f.path), p.line, p.segments.join("::")))
                })
        })
}

fn layering(ws: &Workspace, out: &mut Vec<Finding>) {
    let manifest_of = |p: &Package| p.path_of("Cargo.toml");
    let runtime = |d: &Dep| d.kind != DepKind::Dev;

    if let Some(core) = package(ws, NO_IO_CRATE, out) {
        for d in core.manifest.deps.iter().filter(|d| runtime(d)) {
            if IO_CRATES.contains(&d.crate_name()) {
                out.push(finding(
                    "layering",
                    manifest_of(core),
                    d.line,
                    format!(
                        "{NO_IO_CRATE} does no I/O, but depends on `{}`",
                        d.crate_name()
                    ),
                ));
            }
            if d.crate_name() == "tokio" {
                for f in d
                    .features
                    .iter()
                    .filter(|f| IO_TOKIO_FEATURES.contains(&f.as_str()))
                {
                    out.push(finding(
                        "layering",
                        manifest_of(core),
                        d.line,
                        format!("{NO_IO_CRATE} does no I/O, but asks tokio for its `{f}` feature"),
                    ));
                }
            }
        }
        let mut prefixes: Vec<String> = IO_PATHS.iter().map(|s| s.to_string()).collect();
        prefixes.extend(idents_of(core, DOCKER_API));
        for (file, line, path) in library_paths(core, &prefixes, false) {
            out.push(finding("layering", file, line, format!(
                "{NO_IO_CRATE} does no I/O, but names `{path}` (I/O belongs to the backend and router crates)"
            )));
        }
    }

    if let Some(strategies) = package(ws, BACKEND_BLIND_CRATE, out) {
        let mut prefixes = Vec::new();
        for backend in BACKENDS {
            prefixes.extend(idents_of(strategies, backend));
        }
        for d in strategies.manifest.deps.iter().filter(|d| runtime(d)) {
            if BACKENDS.contains(&d.crate_name()) {
                out.push(finding("layering", manifest_of(strategies), d.line, format!(
                    "{BACKEND_BLIND_CRATE} never names a backend or a proxy, but depends on `{}` (a dev-dependency is fine)",
                    d.crate_name()
                )));
            }
        }
        for (file, line, path) in library_paths(strategies, &prefixes, false) {
            out.push(finding("layering", file, line, format!(
                "{BACKEND_BLIND_CRATE} never names a backend or a proxy, but names `{path}` outside its tests (use rollout-core's traits)"
            )));
        }
    }

    if let Some(migrate) = package(ws, MIGRATE_CRATE, out) {
        let mut prefixes = Vec::new();
        for krate in DEPLOY_CRATES {
            prefixes.extend(idents_of(migrate, krate));
        }
        for d in migrate.manifest.deps.iter().filter(|d| runtime(d)) {
            if DEPLOY_CRATES.contains(&d.crate_name()) {
                out.push(finding("layering", manifest_of(migrate), d.line, format!(
                    "{MIGRATE_CRATE} knows the database, not the deploy, but depends on `{}` (the rollout calls the migrations, not the other way)",
                    d.crate_name()
                )));
            }
        }
        for (file, line, path) in library_paths(migrate, &prefixes, false) {
            out.push(finding("layering", file, line, format!(
                "{MIGRATE_CRATE} knows the database, not the deploy, but names `{path}` outside its tests"
            )));
        }
    }

    if package(ws, DOCKER_CRATES[0], out).is_some() {
        for pkg in ws
            .packages
            .iter()
            .filter(|p| !DOCKER_CRATES.contains(&p.name.as_str()))
        {
            for d in pkg
                .manifest
                .deps
                .iter()
                .filter(|d| d.crate_name() == DOCKER_API)
            {
                out.push(finding(
                    "layering",
                    manifest_of(pkg),
                    d.line,
                    format!(
                        "only {DOCKER_CRATES_SAID} talk to Docker, but {} depends on `{DOCKER_API}`",
                        pkg.name
                    ),
                ));
            }
            let prefixes: Vec<String> = idents_of(pkg, DOCKER_API).into_iter().collect();
            for (file, line, path) in library_paths(pkg, &prefixes, true) {
                out.push(finding(
                    "layering",
                    file,
                    line,
                    format!(
                        "only {DOCKER_CRATES_SAID} talk to Docker, but {} names `{path}`",
                        pkg.name
                    ),
                ));
            }
        }
    }

    if let Some(plugin) = package(ws, PLUGIN_CRATE, out) {
        for f in plugin.files.iter().filter(|f| f.kind == Kind::Library) {
            for i in f.scan.impls.iter().filter(|i| !i.in_test) {
                if RUNTIME_TRAITS.contains(&i.trait_name.as_str()) {
                    out.push(finding("layering", plugin.path_of(&f.path), i.line, format!(
                        "no rollout logic lives in the plugin, but it implements `{}` (move it to the crate that owns the fact)",
                        i.trait_name
                    )));
                }
            }
        }
    }
}

fn unused_dependencies(ws: &Workspace, out: &mut Vec<Finding>) {
    for wd in &ws.manifest.workspace_deps {
        let used = ws.packages.iter().any(|p| {
            p.manifest
                .deps
                .iter()
                .any(|d| d.from_workspace && d.key == wd.key)
        });
        if !used {
            out.push(finding(
                "unused-dependency",
                "Cargo.toml".into(),
                wd.line,
                format!(
                    "`{}` is a workspace dependency that no member uses (remove it)",
                    wd.key
                ),
            ));
        }
    }
    for pkg in &ws.packages {
        let heads: BTreeSet<&str> = pkg.files.iter().flat_map(|f| f.scan.heads()).collect();
        let deps = &pkg.manifest.deps;
        for d in deps {
            // A dev-dependency that repeats a dependency only adds features.
            let repeats = d.kind == DepKind::Dev
                && deps
                    .iter()
                    .any(|o| o.kind != DepKind::Dev && o.key == d.key);
            let excepted = USED_WITHOUT_A_PATH
                .iter()
                .any(|(p, k, _)| *p == pkg.name && *k == d.key);
            if repeats || excepted || heads.contains(d.ident().as_str()) {
                continue;
            }
            let table = match d.kind {
                DepKind::Normal => "dependencies",
                DepKind::Dev => "dev-dependencies",
                DepKind::Build => "build-dependencies",
            };
            out.push(finding("unused-dependency", pkg.path_of("Cargo.toml"), d.line, format!(
                "{} declares `{}` in [{table}], but its sources never name `{}` (remove it, or list it in USED_WITHOUT_A_PATH with a reason)",
                pkg.name, d.key, d.ident()
            )));
        }
    }
}

fn file_length(ws: &Workspace, out: &mut Vec<Finding>) {
    for pkg in &ws.packages {
        for f in pkg.files.iter().filter(|f| f.kind != Kind::Test) {
            if f.lines > MAX_LINES {
                out.push(finding("file-length", pkg.path_of(&f.path), MAX_LINES + 1, format!(
                    "{} lines; a source file outside tests has at most {MAX_LINES} (split it into modules)",
                    f.lines
                )));
            }
        }
    }
}

fn missing_docs(ws: &Workspace, out: &mut Vec<Finding>) {
    for pkg in &ws.packages {
        let root = pkg.manifest.lib_path.as_deref().unwrap_or("src/lib.rs");
        let Some(lib) = pkg.files.iter().find(|f| f.path == root) else {
            continue;
        };
        if !lib.scan.denies_missing_docs {
            out.push(finding("missing-docs", pkg.path_of(root), 1, format!(
                "{} is a library crate: its root must carry #![deny(missing_docs)], so that every public item has docs",
                pkg.name
            )));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tidy::manifest;

    /// A package: `name` in `dir`, `deps` as [dependencies] lines, then
    /// any further manifest text, and its files.
    fn pkg(dir: &str, name: &str, manifest: &str, files: &[(&str, &str)]) -> Package {
        let files: Vec<(String, String)> = files
            .iter()
            .map(|(p, t)| (p.to_string(), t.to_string()))
            .collect();
        Package::new(
            dir,
            &format!("[package]\nname = \"{name}\"\n{manifest}"),
            &files,
        )
        .unwrap()
    }

    const LIB: &str = "#![deny(missing_docs)]\n";

    /// A workspace that keeps every rule; `change` swaps one package.
    fn healthy() -> Vec<Package> {
        vec![
            pkg(
                "crates/rollout-core",
                "rollout-core",
                "[dependencies]\nserde.workspace = true\ntokio = { workspace = true, features = [\"sync\", \"time\"] }\n",
                &[("src/lib.rs", "#![deny(missing_docs)]\nuse serde::Serialize;\nuse tokio::sync::watch;\n")],
            ),
            pkg(
                "crates/rollout-strategies",
                "rollout-strategies",
                "[dependencies]\nrollout-core.workspace = true\n[dev-dependencies]\nrollout-mock.workspace = true\n",
                &[
                    ("src/lib.rs", "#![deny(missing_docs)]\nuse rollout_core::Strategy;\n#[cfg(test)]\nmod tests { use rollout_mock::MockCluster; }\n"),
                    ("tests/a.rs", "use rollout_mock::MockCluster;\n"),
                    ("examples/b.rs", "fn main() { rollout_mock::MockCluster::new(); }\n"),
                ],
            ),
            pkg(
                "crates/rollout-mock",
                "rollout-mock",
                "[dependencies]\nrollout-core.workspace = true\n",
                &[("src/lib.rs", "#![deny(missing_docs)]\nimpl rollout_core::Backend for M {}\n")],
            ),
            pkg(
                "crates/rollout-docker",
                "rollout-docker",
                "[dependencies]\nbollard.workspace = true\n",
                &[("src/lib.rs", "#![deny(missing_docs)]\nuse bollard::Docker;\nuse std::process::Command;\n")],
            ),
            pkg(
                "plugins/docker-rollout",
                "docker-rollout",
                "[dependencies]\nrollout-core.workspace = true\n",
                &[("src/main.rs", "use rollout_core::BackendError;\nimpl From<BackendError> for Fail {}\n")],
            ),
            pkg(
                "crates/rollout-migrate",
                "rollout-migrate",
                "[dependencies]\nrollout-core.workspace = true\n",
                &[("src/lib.rs", "#![deny(missing_docs)]\nuse rollout_core::exit;\n")],
            ),
        ]
    }

    const ROOT: &str = "[workspace]\nmembers = []\n[workspace.dependencies]\nrollout-core = { path = \"crates/rollout-core\" }\nrollout-mock = { path = \"crates/rollout-mock\" }\nserde = \"1\"\ntokio = \"1\"\nbollard = \"0.21\"\n";

    fn check_with(root: &str, change: Option<Package>) -> Vec<Finding> {
        let mut packages = healthy();
        if let Some(new) = change {
            match packages.iter_mut().find(|p| p.name == new.name) {
                Some(old) => *old = new,
                None => packages.push(new),
            }
        }
        check(&Workspace {
            manifest: manifest::parse(root).unwrap(),
            packages,
        })
    }

    fn only(findings: &[Finding]) -> String {
        assert_eq!(findings.len(), 1, "{findings:#?}");
        findings[0].to_string()
    }

    #[test]
    fn a_healthy_workspace_passes() {
        assert_eq!(check_with(ROOT, None), []);
    }

    #[test]
    fn core_doing_io_is_caught_in_code_and_in_its_manifest() {
        let f = check_with(ROOT, Some(pkg(
            "crates/rollout-core",
            "rollout-core",
            "[dependencies]\nserde.workspace = true\ntokio = { workspace = true, features = [\"sync\", \"fs\"] }\n[dev-dependencies]\ntempfile = \"3\"\n",
            &[
                ("src/lib.rs", "#![deny(missing_docs)]\nuse serde::Serialize;\nuse std::{fs, io};\n#[cfg(test)]\nmod tests { use std::net::TcpStream; }\n"),
                ("src/x.rs", "fn f() { tokio::process::Command::new(\"x\"); }\n"),
                ("tests/t.rs", "use tempfile::TempDir;\nuse std::process::Command;\n"),
            ],
        )));
        let f: Vec<String> = f.iter().map(|f| f.to_string()).collect();
        assert_eq!(f.len(), 3, "{f:#?}");
        assert!(f[0].starts_with("crates/rollout-core/Cargo.toml:5: layering: rollout-core does no I/O, but asks tokio for its `fs` feature"), "{f:#?}");
        assert!(f[1].starts_with("crates/rollout-core/src/lib.rs:3: layering: rollout-core does no I/O, but names `std::fs`"), "{f:#?}");
        assert!(f[2].starts_with("crates/rollout-core/src/x.rs:1: layering: rollout-core does no I/O, but names `tokio::process::Command::new`"), "{f:#?}");
    }

    #[test]
    fn strategies_naming_a_backend_are_caught() {
        let f = check_with(ROOT, Some(pkg(
            "crates/rollout-strategies",
            "rollout-strategies",
            "[dependencies]\nrollout-core.workspace = true\nrollout-mock.workspace = true\n",
            &[("src/lib.rs", "#![deny(missing_docs)]\nuse rollout_core::Strategy;\nfn f() { let _ = rollout_mock::MockCluster::new(); }\n")],
        )));
        let f: Vec<String> = f.iter().map(|f| f.to_string()).collect();
        assert_eq!(f.len(), 2, "{f:#?}");
        assert!(f[0].starts_with("crates/rollout-strategies/Cargo.toml:5: layering: rollout-strategies never names a backend or a proxy, but depends on `rollout-mock`"), "{f:#?}");
        assert!(f[1].starts_with("crates/rollout-strategies/src/lib.rs:3: layering: rollout-strategies never names a backend or a proxy, but names `rollout_mock::MockCluster::new`"), "{f:#?}");
    }

    #[test]
    fn migrations_naming_the_deploy_are_caught() {
        let f = check_with(ROOT, Some(pkg(
            "crates/rollout-migrate",
            "rollout-migrate",
            "[dependencies]\nrollout-core.workspace = true\nrollout-docker.workspace = true\n[dev-dependencies]\nrollout-mock.workspace = true\n",
            &[
                ("src/lib.rs", "#![deny(missing_docs)]\nuse rollout_core::exit;\nfn f() { rollout_docker::DockerBackend::new(); }\n"),
                ("tests/t.rs", "use rollout_mock::MockCluster;\n"),
            ],
        )));
        let f: Vec<String> = f.iter().map(|f| f.to_string()).collect();
        assert_eq!(f.len(), 2, "{f:#?}");
        assert!(f[0].starts_with("crates/rollout-migrate/Cargo.toml:5: layering: rollout-migrate knows the database, not the deploy, but depends on `rollout-docker`"), "{f:#?}");
        assert!(f[1].starts_with("crates/rollout-migrate/src/lib.rs:3: layering: rollout-migrate knows the database, not the deploy, but names `rollout_docker::DockerBackend::new`"), "{f:#?}");
    }

    #[test]
    fn bollard_outside_the_docker_crate_is_caught_even_in_tests() {
        let f = check_with(
            ROOT,
            Some(pkg(
                "tests",
                "rollout-e2e",
                "[dev-dependencies]\ndocker = { package = \"bollard\", version = \"0.21\" }\n",
                &[("tests/engine.rs", "use docker::Docker;\n")],
            )),
        );
        let f: Vec<String> = f.iter().map(|f| f.to_string()).collect();
        assert_eq!(f.len(), 2, "{f:#?}");
        assert!(f[0].starts_with("tests/Cargo.toml:4: layering: only rollout-docker and rollout-swarm talk to Docker, but rollout-e2e depends on `bollard`"), "{f:#?}");
        assert!(f[1].starts_with("tests/tests/engine.rs:1: layering: only rollout-docker and rollout-swarm talk to Docker, but rollout-e2e names `docker::Docker`"), "{f:#?}");
    }

    #[test]
    fn the_plugin_implementing_a_runtime_trait_is_caught() {
        let f = check_with(ROOT, Some(pkg(
            "plugins/docker-rollout",
            "docker-rollout",
            "[dependencies]\nrollout-core.workspace = true\n",
            &[("src/live.rs", "use rollout_core::Backend;\n\n#[async_trait]\nimpl Backend for CountedLaunches {}\n#[cfg(test)]\nmod tests { impl rollout_core::Journal for Fake {} }\n")],
        )));
        assert!(only(&f).starts_with("plugins/docker-rollout/src/live.rs:4: layering: no rollout logic lives in the plugin, but it implements `Backend`"));
    }

    #[test]
    fn a_rule_whose_crate_is_gone_says_so() {
        let mut packages = healthy();
        packages.retain(|p| p.name != "docker-rollout");
        let f = check(&Workspace {
            manifest: manifest::parse(ROOT).unwrap(),
            packages,
        });
        assert!(only(&f).contains("`docker-rollout`, which is no member"));
    }

    #[test]
    fn unused_dependencies_are_caught_in_the_workspace_and_in_members() {
        let root = format!("{ROOT}serde_yaml = \"0.9\"\n");
        let f = check_with(&root, Some(pkg(
            "crates/rollout-mock",
            "rollout-mock",
            "[dependencies]\nrollout-core.workspace = true\nserde_json.workspace = true\ntokio = { workspace = true, features = [\"sync\"] }\n[dev-dependencies]\ntokio = { workspace = true, features = [\"test-util\"] }\nfutures.workspace = true\nmockall.workspace = true\n",
            &[
                ("src/lib.rs", "#![deny(missing_docs)]\n//! `rollout_core::Backend`\n/// ```\n/// let c = tokio::sync::Notify::new();\n/// ```\npub struct M;\n"),
                ("tests/t.rs", "// futures::join!\nfn f() { let s = \"mockall::mock!\"; }\n#[test]\nfn g() { use mockall as _; }\n"),
            ],
        )));
        let f: Vec<String> = f.iter().map(|f| f.to_string()).collect();
        assert_eq!(f.len(), 3, "{f:#?}");
        assert!(f[0].starts_with("Cargo.toml:9: unused-dependency: `serde_yaml` is a workspace dependency that no member uses"), "{f:#?}");
        assert!(f[1].starts_with("crates/rollout-mock/Cargo.toml:5: unused-dependency: rollout-mock declares `serde_json` in [dependencies], but its sources never name `serde_json`"), "{f:#?}");
        assert!(f[2].starts_with("crates/rollout-mock/Cargo.toml:9: unused-dependency: rollout-mock declares `futures` in [dev-dependencies]"), "{f:#?}");
    }

    #[test]
    fn long_files_outside_tests_are_caught() {
        let long = "\n".repeat(MAX_LINES + 1);
        let just = "\n".repeat(MAX_LINES);
        let f = check_with(
            ROOT,
            Some(pkg(
                "crates/rollout-nginx",
                "rollout-nginx",
                "",
                &[
                    ("src/lib.rs", &format!("{LIB}{long}")),
                    ("src/ok.rs", &just),
                    ("tests/router.rs", &long),
                    ("examples/big.rs", &long),
                ],
            )),
        );
        let f: Vec<String> = f.iter().map(|f| f.to_string()).collect();
        assert_eq!(
            f,
            [
                "crates/rollout-nginx/src/lib.rs:1201: file-length: 1202 lines; a source file outside tests has at most 1200 (split it into modules)",
                "crates/rollout-nginx/examples/big.rs:1201: file-length: 1201 lines; a source file outside tests has at most 1200 (split it into modules)",
            ]
        );
    }

    #[test]
    fn a_library_root_without_deny_missing_docs_is_caught() {
        let f = check_with(
            ROOT,
            Some(pkg(
                "crates/rollout-load",
                "rollout-load",
                "[lib]\npath = \"src/load.rs\"\n",
                &[
                    ("src/load.rs", "#![warn(missing_docs)]\n"),
                    ("src/main.rs", "fn main() {}\n"),
                ],
            )),
        );
        assert_eq!(
            only(&f),
            "crates/rollout-load/src/load.rs:1: missing-docs: rollout-load is a library crate: its root must carry #![deny(missing_docs)], so that every public item has docs"
        );
    }
}
