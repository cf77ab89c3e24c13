//! The environment variables `docker rollout` reads, as `--help` lists
//! them. A test reads the sources of the plugin and of the crates it is
//! made of, and fails when one reads a variable this list does not name,
//! so the list cannot fall behind the code.

/// The end of `--help`: every environment variable the plugin reads.
pub const ENVIRONMENT: &str = "\
Environment:
  ROLLOUT_COMPOSE          Compose tool: v1 or docker-compose, v2 or \"docker compose\"
                           (default: the tool that made the project's containers; for a
                           project that runs nothing, docker compose, else docker-compose)
  ROLLOUT_NO_PROGRESS      when set and not empty: one line per change, no live progress
  NO_COLOR                 when set and not empty: no colour (wins over CLICOLOR_FORCE)
  CLICOLOR_FORCE           when set, not empty and not 0: colour even off a terminal
  CLICOLOR                 0: no colour on a terminal
  COMPOSE_FILE, COMPOSE_PATH_SEPARATOR, COMPOSE_PROJECT_NAME, COMPOSE_PROFILES
                           the project, as docker compose reads them (flags win)
  DOCKER_HOST, DOCKER_CONTEXT, DOCKER_CONFIG, DOCKER_TLS_VERIFY, DOCKER_CERT_PATH
                           the engine, as the docker CLI reads them (flags win)
  ROLLOUT_DATABASE_URL     docker rollout migrate: the database when --database is not given
                           (its password is never printed)
  HOME                     where the docker config is when DOCKER_CONFIG is not set
  USER, HOSTNAME           who holds a rollout's lock (shown to a second rollout and unlock)
  PATH, HOME, USER, LOGNAME, LANG, LC_ALL, LC_CTYPE, LC_MESSAGES, TZ, TMPDIR, DOCKER_*
                           passed on to command hooks, with the names in x-rollout.hooks.pass_env;
                           nothing else of the environment is (hooks get ROLLOUT_HOOK, ROLLOUT_SERVICE, ...)
  DOCKER_CLI_PLUGIN_ORIGINAL_CLI_COMMAND, DOCKER_CLI_PLUGIN_SOCKET
                           set by the docker CLI when it runs the plugin
The live progress takes its width from the terminal itself (80 columns when it does not say).";

#[cfg(test)]
mod tests {
    use super::ENVIRONMENT;
    use std::collections::BTreeSet;
    use std::path::{Path, PathBuf};

    /// The `src` folders of the plugin and of the workspace crates its
    /// manifest names.
    fn source_dirs() -> Vec<PathBuf> {
        let plugin = Path::new(env!("CARGO_MANIFEST_DIR"));
        let manifest = std::fs::read_to_string(plugin.join("Cargo.toml")).unwrap();
        let workspace = plugin.parent().and_then(Path::parent).unwrap();
        let mut dirs = vec![plugin.join("src")];
        for line in manifest.lines() {
            if let Some(name) = line.split('.').next().filter(|n| n.starts_with("rollout-")) {
                dirs.push(workspace.join("crates").join(name).join("src"));
            }
        }
        dirs
    }

    fn rust_files(dir: &Path, into: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                rust_files(&path, into);
            } else if path.extension().is_some_and(|e| e == "rs") {
                into.push(path);
            }
        }
    }

    /// The name at the start of `rest` when it is an environment
    /// variable's (capitals, digits and `_`), up to the closing quote.
    fn name_at(rest: &str) -> Option<&str> {
        let end = rest.find('"')?;
        let name = &rest[..end];
        let ok = !name.is_empty()
            && name.starts_with(|c: char| c.is_ascii_uppercase())
            && name
                .chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
        ok.then_some(name)
    }

    /// The variables a source reads: `env::var("X")`, `env::var_os("X")`,
    /// `var("X")` and `get("X")` over an environment map, and
    /// `env::var(CONST)` with `const CONST: &str = "X"` in the same file.
    fn variables_read(source: &str) -> BTreeSet<String> {
        let mut found = BTreeSet::new();
        for opening in ["var(\"", "var_os(\"", "get(\""] {
            for (at, _) in source.match_indices(opening) {
                if let Some(name) = name_at(&source[at + opening.len()..]) {
                    found.insert(name.to_string());
                }
            }
        }
        for opening in ["env::var(", "env::var_os("] {
            for (at, _) in source.match_indices(opening) {
                let rest = &source[at + opening.len()..];
                let ident: String = rest
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                let constant = format!("const {ident}: &str = \"");
                if let Some(def) = source.find(&constant) {
                    if let Some(name) = name_at(&source[def + constant.len()..]) {
                        found.insert(name.to_string());
                    }
                }
            }
        }
        found
    }

    #[test]
    fn the_scan_sees_every_way_a_variable_is_read() {
        let source = "const SOCKET_ENV: &str = \"DOCKER_CLI_PLUGIN_SOCKET\";\n\
                      std::env::var(SOCKET_ENV); std::env::var_os(\"NO_COLOR\");\n\
                      var(\"DOCKER_HOST\"); env.get(\"COMPOSE_FILE\"); labels.get(\"exitCode\");";
        let names: Vec<String> = variables_read(source).into_iter().collect();
        assert_eq!(
            names,
            [
                "COMPOSE_FILE",
                "DOCKER_CLI_PLUGIN_SOCKET",
                "DOCKER_HOST",
                "NO_COLOR"
            ]
        );
    }

    #[test]
    fn help_lists_every_environment_variable_the_plugin_reads() {
        let mut files = Vec::new();
        for dir in source_dirs() {
            rust_files(&dir, &mut files);
        }
        let mut read = BTreeSet::new();
        // This file names variables in its own test of the scan. A file's unit tests (its
        // `#[cfg(test)]` module, last by convention) are not the plugin reading its
        // environment: a test may ask `CI` whether it must not skip.
        for f in files.iter().filter(|f| !f.ends_with("src/environ.rs")) {
            let text = std::fs::read_to_string(f).unwrap();
            let code = text
                .split("\n#[cfg(test)]\nmod tests")
                .next()
                .unwrap_or_default();
            read.extend(variables_read(code));
        }
        for expected in [
            "ROLLOUT_COMPOSE",
            "ROLLOUT_NO_PROGRESS",
            "NO_COLOR",
            "CLICOLOR_FORCE",
        ] {
            assert!(
                read.contains(expected),
                "the scan missed {expected}: {read:?}"
            );
        }
        let listed: BTreeSet<&str> = ENVIRONMENT
            .split(|c: char| !(c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'))
            .collect();
        let missing: Vec<&String> = read
            .iter()
            .filter(|n| !listed.contains(n.as_str()))
            .collect();
        assert!(
            missing.is_empty(),
            "read by the code but not listed in --help (environ.rs): {missing:?}"
        );
    }
}
