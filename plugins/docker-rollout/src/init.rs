//! `docker rollout init`: the wiring. rollout-compose decides what the
//! override holds (`rollout_compose::init`), rollout-nginx writes the
//! config (`rollout_nginx::generate`); this module picks the Compose tool
//! whose rules apply, writes the two files (never over existing ones
//! without `--force`, which keeps a `.bak`), or prints them with
//! `--dry-run`, and prints the next two commands.

use crate::cli::{ComposeArgs, InitRequest};
use crate::fail::Fail;
use crate::live;
use rollout_compose::init::{self, InitPlan, PROXY_LISTEN};
use rollout_compose::{Flavour, Project, ProjectNames};
use rollout_docker::compose::project_containers;
use rollout_nginx::generate::{proxy_config, ProxySpec};
use rollout_nginx::upstream::{Address, Server};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Runs `init`; the exit code, or why not (nothing written).
pub async fn run(req: &InitRequest) -> Result<i32, Fail> {
    let names = ProjectNames::load(&req.compose.load_options(Flavour::default()));
    let flavour = flavour(req, &names).await?;
    let project = Project::load(&req.compose.load_options(flavour))
        .map_err(|e| Fail::bad_input(e.to_string()))?;
    let plan = init::plan(&project, &req.options).map_err(|e| Fail::bad_input(e.to_string()))?;
    let servers = Address::inet(&plan.service, plan.port)
        .map(|a| vec![Server::new(a)])
        .map_err(|e| Fail::bad_input(e.to_string()))?;
    let conf = proxy_config(
        &ProxySpec {
            upstream: plan.service.clone(),
            servers,
            listen: PROXY_LISTEN,
            health_path: plan.health_path.clone(),
        },
        &plan.nginx_conf_path,
    )
    .map_err(|e| Fail::bad_input(e.to_string()))?;
    let files = [
        (
            plan.override_path.clone(),
            plan.override_yaml.clone().into_bytes(),
        ),
        (plan.nginx_conf_path.clone(), conf.print()),
    ];
    let mut err = std::io::stderr();
    for n in &plan.notes {
        let _ = writeln!(err, "warning: {n}");
    }
    let mut out = std::io::stdout().lock();
    if req.dry_run {
        for (path, bytes) in &files {
            let _ = writeln!(out, "# {}", shown(path).display());
            let _ = out.write_all(bytes);
            let _ = writeln!(out);
        }
    } else {
        write_files(&files, req.force)?;
        for (path, _) in &files {
            let _ = writeln!(out, "wrote {}", shown(path).display());
        }
    }
    let _ = writeln!(out, "next:");
    for line in next_commands(&plan, &req.compose, flavour) {
        let _ = writeln!(out, "  {line}");
    }
    Ok(rollout_core::exit::SUCCESS)
}

/// The Compose tool whose rules the files follow: the one that made the
/// project's running containers (when the engine answers), else what is
/// installed, as for a rollout (rollout-docker decides).
async fn flavour(req: &InitRequest, names: &ProjectNames) -> Result<Flavour, Fail> {
    let made = match tokio::time::timeout(Duration::from_secs(5), live::connect(&req.docker)).await
    {
        Ok(Ok(engine)) => project_containers(&engine, names).await.unwrap_or_default(),
        _ => Vec::new(),
    };
    let choice = rollout_docker::choose_tool(names, &made, &live::tool_lookup(&req.docker))
        .await
        .map_err(|e| Fail::bad_input(e.to_string()))?;
    for w in &choice.warnings {
        let _ = writeln!(std::io::stderr(), "warning: {w}");
    }
    Ok(choice.flavour)
}

/// Writes every file, or none: existing ones are refused without `force`;
/// with it, each is copied to `NAME.bak` first and then written in place
/// (a proxy that bind-mounts it keeps seeing it).
fn write_files(files: &[(PathBuf, Vec<u8>)], force: bool) -> Result<(), Fail> {
    let existing: Vec<&PathBuf> = files
        .iter()
        .map(|(p, _)| p)
        .filter(|p| p.exists())
        .collect();
    if !existing.is_empty() && !force {
        let list: Vec<String> = existing
            .iter()
            .map(|p| shown(p).display().to_string())
            .collect();
        return Err(Fail::bad_input(format!(
            "{} exist{}: nothing was written\nhint: --force replaces them (keeping each as NAME.bak); -o NAME writes the override under another name",
            list.join(", "),
            if list.len() == 1 { "s" } else { "" }
        )));
    }
    for p in &existing {
        let mut bak = p.as_os_str().to_owned();
        bak.push(".bak");
        std::fs::copy(p, &bak)
            .map_err(|e| Fail::unexpected(format!("cannot keep {} as .bak: {e}", p.display())))?;
    }
    for (path, bytes) in files {
        std::fs::write(path, bytes)
            .map_err(|e| Fail::unexpected(format!("cannot write {}: {e}", path.display())))?;
    }
    Ok(())
}

/// `path` relative to the working directory when it is below it.
fn shown(path: &Path) -> PathBuf {
    std::env::current_dir()
        .ok()
        .and_then(|cwd| path.strip_prefix(cwd).ok().map(Path::to_path_buf))
        .unwrap_or_else(|| path.to_path_buf())
}

/// `up -d` with the override, then the rollout, both with the project's
/// flags, each word quoted for a POSIX shell where it needs it. For
/// blue-green the rollout is the second colour's, once it has the new
/// image.
fn next_commands(plan: &InitPlan, compose: &ComposeArgs, flavour: Flavour) -> Vec<String> {
    let mut flags: Vec<String> = Vec::new();
    for f in &plan.files {
        flags.push("-f".into());
        flags.push(shell_word(&shown(f).display().to_string()));
    }
    if let Some(p) = &compose.project_name {
        flags.push("-p".into());
        flags.push(shell_word(p));
    }
    if let Some(d) = &compose.project_directory {
        flags.push("--project-directory".into());
        flags.push(shell_word(&d.display().to_string()));
    }
    for e in &compose.env_files {
        flags.push("--env-file".into());
        flags.push(shell_word(&e.display().to_string()));
    }
    for p in &compose.profiles {
        flags.push("--profile".into());
        flags.push(shell_word(p));
    }
    let flags = flags.join(" ");
    let up = format!("{} {flags} up -d", flavour.command());
    match &plan.colour {
        Some(colour) => vec![
            up,
            format!(
                "# give {colour} the new image (image: in {}), then:",
                shown(&plan.override_path).display()
            ),
            format!("docker rollout {flags} {}", shell_word(colour)),
        ],
        None => vec![
            up,
            format!("docker rollout {flags} {}", shell_word(&plan.service)),
        ],
    }
}

/// `s` as one word for a POSIX shell: as it is when plain, else in single
/// quotes.
fn shell_word(s: &str) -> String {
    let plain = !s.is_empty()
        && s.bytes().all(|b| {
            b.is_ascii_alphanumeric()
                || matches!(
                    b,
                    b'/' | b'.' | b'_' | b'-' | b':' | b'=' | b'@' | b'+' | b','
                )
        });
    if plain {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_words_are_quoted_where_needed() {
        assert_eq!(shell_word("compose.yaml"), "compose.yaml");
        assert_eq!(shell_word("my dir/c.yaml"), "'my dir/c.yaml'");
        assert_eq!(shell_word("it's"), "'it'\\''s'");
        assert_eq!(shell_word("$(id)"), "'$(id)'");
    }

    #[test]
    fn existing_files_are_refused_then_replaced_with_a_bak() {
        let dir = std::env::temp_dir().join(format!("rollout-init-write-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let a = dir.join("compose.rollout.yaml");
        let b = dir.join("nginx.conf");
        std::fs::write(&b, "old").unwrap();
        let files = [
            (a.clone(), b"new a".to_vec()),
            (b.clone(), b"new b".to_vec()),
        ];
        let e = write_files(&files, false).unwrap_err();
        assert_eq!(e.code, rollout_core::exit::BAD_INPUT);
        assert!(e.message.contains("nginx.conf exists"), "{}", e.message);
        assert!(!a.exists(), "nothing is written when one file exists");
        write_files(&files, true).unwrap();
        assert_eq!(std::fs::read(&b).unwrap(), b"new b");
        assert_eq!(std::fs::read(dir.join("nginx.conf.bak")).unwrap(), b"old");
        assert_eq!(std::fs::read(&a).unwrap(), b"new a");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
