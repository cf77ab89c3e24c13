//! Shell completion through the docker CLI's plugin protocol.
//!
//! The docker CLI completes `docker rollout <TAB>` by running the plugin as
//! `docker-rollout __complete rollout ARGS... WORD` (cobra's hidden
//! completion command): the plugin prints one candidate per line, then a
//! line `:N` with cobra's directive (4: no file completion; 0: the shell's
//! default, files). Candidates: the verbs and the project's services for the
//! first word, the services after a verb, the flags for a word starting with
//! `-`, and the values of flags that take one of a few words.

use std::ffi::OsString;
use std::io::Write;

/// Cobra's hidden command name.
pub const COMPLETE: &str = "__complete";

/// Cobra's directives.
const NO_FILES: u8 = 4;
const FILES: u8 = 0;

/// The verbs offered for the first word.
const VERBS: &[(&str, &str)] = &[
    ("status", "where a service stands"),
    ("history", "a service's last rollouts"),
    ("abort", "back to the old revision"),
    ("undo", "back to the revision before the last rollout"),
    ("promote", "a canary on to its next step (--full: to 100 %)"),
    ("pause", "hold a running rollout at its next safe point"),
    ("resume", "let a rollout held by pause go on"),
    ("unlock", "release a service's lock"),
    ("init", "put nginx in front of a service"),
    ("migrate", "schema migrations in phases"),
];

/// Flags whose value is a file or folder.
const PATH_FLAGS: &[&str] = &[
    "-f",
    "--file",
    "--env-file",
    "--project-directory",
    "--migrate",
    "--config",
    "--tlscacert",
    "--tlscert",
    "--tlskey",
];

/// The values of flags that take one of a few words.
fn values(flag: &str) -> Option<Vec<&'static str>> {
    use rollout_core::Word;
    Some(match flag {
        "--output" => vec!["text", "json"],
        "--strategy" => rollout_core::StrategyKind::spellings().collect(),
        "--order" => rollout_core::Order::spellings().collect(),
        "--failure-action" => rollout_core::FailureAction::spellings().collect(),
        _ => return None,
    })
}

/// Candidates for the last of `words` (the word under the cursor, maybe
/// empty), given the project's `services` and the flags of the command;
/// the directive last.
pub fn candidates(words: &[String], services: &[String], flags: &[String]) -> (Vec<String>, u8) {
    let (current, before) = match words.split_last() {
        Some((c, b)) => (c.as_str(), b),
        None => ("", &[][..]),
    };
    let prefixed = |all: Vec<String>| -> Vec<String> {
        all.into_iter().filter(|c| c.starts_with(current)).collect()
    };
    if let Some(prev) = before.last() {
        if PATH_FLAGS.contains(&prev.as_str()) {
            return (Vec::new(), FILES);
        }
        if let Some(v) = values(prev) {
            return (
                prefixed(v.into_iter().map(String::from).collect()),
                NO_FILES,
            );
        }
    }
    if current.starts_with('-') {
        return (prefixed(flags.to_vec()), NO_FILES);
    }
    // The positional words so far (a flag's value is skipped when the flag
    // takes one, which its spelling in `flags` cannot tell: the common ones
    // are listed).
    let mut positional = Vec::new();
    let mut i = 0;
    while i < before.len() {
        let w = &before[i];
        if w.starts_with('-') {
            let takes = PATH_FLAGS.contains(&w.as_str())
                || values(w).is_some()
                || matches!(
                    w.as_str(),
                    "-p" | "--project-name"
                        | "--profile"
                        | "--limit"
                        | "--interval"
                        | "--count"
                        | "--timeout"
                        | "--lock-timeout"
                        | "--database"
                        | "--migrate-lock-timeout"
                        | "--migrate-attempts"
                        | "-c"
                        | "--context"
                        | "-H"
                        | "--host"
                );
            i += if takes && !w.contains('=') { 2 } else { 1 };
            continue;
        }
        positional.push(w.as_str());
        i += 1;
    }
    let services: Vec<String> = services.to_vec();
    match positional.as_slice() {
        [] => {
            let mut all: Vec<String> = VERBS.iter().map(|(v, d)| format!("{v}\t{d}")).collect();
            all.extend(services);
            (
                all.into_iter().filter(|c| c.starts_with(current)).collect(),
                NO_FILES,
            )
        }
        [verb]
            if [
                "status", "history", "abort", "undo", "promote", "pause", "resume", "unlock",
                "init",
            ]
            .contains(verb) =>
        {
            (prefixed(services), NO_FILES)
        }
        [verb] if *verb == "migrate" => (
            prefixed(vec!["lint".into(), "status".into(), "apply".into()]),
            NO_FILES,
        ),
        _ => (Vec::new(), NO_FILES),
    }
}

/// Answers the completion request `args` (after `__complete`) on stdout.
pub fn run(args: Vec<OsString>) -> i32 {
    let mut words: Vec<String> = args
        .into_iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    // The docker CLI names the plugin first.
    if words.first().is_some_and(|w| w == "rollout") {
        words.remove(0);
    }
    let services = project_services(&words);
    let mut flags: Vec<String> = Vec::new();
    for a in crate::cli::command().get_arguments() {
        if a.is_hide_set() {
            continue;
        }
        if let Some(l) = a.get_long() {
            flags.push(format!("--{l}"));
        }
    }
    flags.extend(["--watch", "--interval", "--count", "--limit", "--timeout"].map(String::from));
    flags.sort();
    flags.dedup();
    let (list, directive) = candidates(&words, &services, &flags);
    let mut out = std::io::stdout().lock();
    for c in list {
        let _ = writeln!(out, "{c}");
    }
    let _ = writeln!(out, ":{directive}");
    0
}

/// The services of the project the words name (`-f`, `-p`), or of the
/// current folder; none when it does not load.
fn project_services(words: &[String]) -> Vec<String> {
    let mut options = rollout_compose::LoadOptions::default();
    let mut it = words.iter();
    while let Some(w) = it.next() {
        match w.as_str() {
            "-f" | "--file" => options.files.extend(it.next().map(Into::into)),
            "-p" | "--project-name" => options.project_name = it.next().cloned(),
            "--project-directory" => options.project_directory = it.next().map(Into::into),
            "--env-file" => options.env_files.extend(it.next().map(Into::into)),
            "--profile" => options.profiles.extend(it.next().cloned()),
            _ => {}
        }
    }
    rollout_compose::Project::load(&options)
        .map(|p| p.services.keys().cloned().collect())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn complete(line: &str) -> (Vec<String>, u8) {
        let mut words: Vec<String> = line.split(' ').map(String::from).collect();
        if line.is_empty() {
            words = vec![String::new()];
        }
        let services = vec!["app".to_string(), "nginx".to_string()];
        let flags = vec!["--output".to_string(), "--strategy".to_string()];
        candidates(&words, &services, &flags)
    }

    #[test]
    fn the_first_word_is_a_verb_or_a_service() {
        let (c, d) = complete("");
        assert!(
            c.contains(&"status\twhere a service stands".to_string()),
            "{c:?}"
        );
        assert!(c.contains(&"app".to_string()));
        assert_eq!(d, NO_FILES);
        let (c, _) = complete("a");
        assert_eq!(c, vec!["abort\tback to the old revision", "app"]);
        let (c, _) = complete("-p shop st");
        assert_eq!(c, vec!["status\twhere a service stands"]);
        let (c, _) = complete("p");
        assert_eq!(
            c,
            vec![
                "promote\ta canary on to its next step (--full: to 100 %)",
                "pause\thold a running rollout at its next safe point"
            ]
        );
        assert_eq!(
            complete("re").0,
            vec!["resume\tlet a rollout held by pause go on"]
        );
    }

    #[test]
    fn after_a_verb_come_services_and_flag_values_are_offered() {
        assert_eq!(complete("status n").0, vec!["nginx"]);
        assert_eq!(complete("pause ").0, vec!["app", "nginx"]);
        assert_eq!(complete("-p shop resume a").0, vec!["app"]);
        assert_eq!(complete("promote --timeout 1m a").0, vec!["app"]);
        assert_eq!(complete("migrate ").0, vec!["lint", "status", "apply"]);
        assert_eq!(complete("app --output j").0, vec!["json"]);
        assert_eq!(
            complete("app --strategy ").0,
            vec!["rolling", "blue-green", "canary"]
        );
        assert_eq!(complete("app --st").0, vec!["--strategy"]);
        assert_eq!(complete("app -f "), (vec![], FILES));
        assert_eq!(complete("app ").0, Vec::<String>::new());
    }
}
