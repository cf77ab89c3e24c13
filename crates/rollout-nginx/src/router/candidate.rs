//! The main file's includes, as the router needs them: which ones load the
//! upstream file, the candidate main file that loads the candidate instead
//! (so that `nginx -t` checks the edit in the config nginx really reads),
//! and the check, when a router opens, that no include would load one of the
//! router's own files.
//!
//! Only needed when the upstream lives in a file the main file includes
//! ([`NginxRouterOptions::upstream_file`](super::NginxRouterOptions::upstream_file)).
//! It is a room of its own because it is about the main file, not the live
//! one: nothing else in the router reads the main file's includes. What an
//! include loads is the crate's include resolver's answer (`crate::include`),
//! the one [`Config`](crate::Config) follows too; only the listing of a glob
//! is done here, by the proxy's shell, in one command.

use super::{read_live, Names, NginxRouter, NginxRouterOptions, Replica};
use crate::include;
use crate::proxy::Proxy;
use crate::tree::ConfFile;
use rollout_core::error::RouterError;
use std::ops::Range;
use std::path::Path;

impl NginxRouter {
    /// The main file with the includes that load the upstream file turned
    /// into includes of `candidate` (and, for a glob, of every other file it
    /// matches now, in nginx's order), each on the line it was on.
    pub(super) async fn candidate_main(
        &self,
        replica: &Replica,
        candidate: &str,
    ) -> Result<Vec<u8>, RouterError> {
        let main_path = &self.options.config_path;
        let target = self.options.live_path();
        let main = read_live(&replica.proxy, main_path).await?;
        let sites = sites(&main, main_path, target)?;
        let mut lists = Vec::with_capacity(sites.len());
        for site in &sites {
            let files = if site.glob {
                let argv: Vec<String> = ["sh", "-c", GLOB_SCRIPT, "sh", &site.pattern]
                    .iter()
                    .map(|s| s.to_string())
                    .collect();
                let out = self.run(replica, &argv).await?;
                if !out.success() {
                    return Err(RouterError::Unreachable(format!(
                        "cannot list {} in {}: {}",
                        site.pattern,
                        replica.proxy.name,
                        out.message()
                    )));
                }
                matches(&out.stdout)
            } else {
                vec![target.to_string()]
            };
            lists.push(
                files
                    .into_iter()
                    .map(|f| {
                        if f == target {
                            candidate.to_string()
                        } else {
                            f
                        }
                    })
                    .collect(),
            );
        }
        Ok(rewrite(&main, &sites, &lists))
    }
}

/// Checks that the main file loads the upstream file when that is another
/// file, and that no `include` of the main file would load one of the
/// router's own files beside the live one (a candidate or a journal).
pub(super) async fn check_includes(
    options: &NginxRouterOptions,
    names: &Names,
    proxy: &Proxy,
) -> Result<(), RouterError> {
    let main_path = &options.config_path;
    let main = read_live(proxy, main_path).await?;
    if let Some(target) = &options.upstream_file {
        sites(&main, main_path, target)?;
    }
    for own in [
        &names.candidate,
        &names.previous,
        &names.next,
        &names.main_candidate,
    ] {
        if let Some(pattern) = loaders(&main, main_path, own).first() {
            return Err(RouterError::Config(format!(
                "{main_path}: include {pattern} would also load {own}, a file the router writes beside the live one\nhint: narrow the include, for example to *.conf"
            )));
        }
    }
    Ok(())
}

/// Lists the regular files a glob matches, one a line; `$1` is the
/// pattern, expanded by the shell as nginx's glob(3) would (no
/// `/` matched by `*`, `?` or `[...]`).
const GLOB_SCRIPT: &str = r#"for f in $1; do [ -f "$f" ] && printf '%s\n' "$f"; done; exit 0"#;

/// One `include` of the main file that loads the upstream file.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Site {
    /// The directive's bytes, name to `;`.
    pub span: Range<usize>,
    /// Its argument made absolute against the main file's directory.
    pub pattern: String,
    /// Whether it is a glob.
    pub glob: bool,
    /// How many line ends the directive spans (kept, so that lines keep
    /// their numbers).
    pub newlines: usize,
}

/// The `include` directives of `main` (at any depth) that load `target`,
/// in order. None is an error: the upstream file must be included by
/// the main file itself.
fn sites(main: &[u8], main_path: &str, target: &str) -> Result<Vec<Site>, RouterError> {
    let file = ConfFile::parse(main_path, main.to_vec())
        .map_err(|e| RouterError::Config(e.to_string()))?;
    let mut sites = Vec::new();
    for (d, pattern) in include::includes(&file, Path::new(main_path)) {
        if pattern.loads(Path::new(target)) {
            let span = d.span();
            let newlines = main[span.clone()].iter().filter(|&&b| b == b'\n').count();
            sites.push(Site {
                span,
                pattern: pattern.text(),
                glob: pattern.is_glob(),
                newlines,
            });
        }
    }
    if sites.is_empty() {
        return Err(RouterError::Config(format!(
            "{main_path} does not include {target}\nhint: the upstream file must be included by the main file itself, not through another included file"
        )));
    }
    Ok(sites)
}

/// Every `include` pattern of `main` (made absolute) that would load
/// `path`: a file of the router's own beside the live one must match
/// none, or nginx would load it.
fn loaders(main: &[u8], main_path: &str, path: &str) -> Vec<String> {
    let Ok(file) = ConfFile::parse(main_path, main.to_vec()) else {
        return Vec::new();
    };
    include::includes(&file, Path::new(main_path))
        .into_iter()
        .filter(|(_, pattern)| pattern.loads(Path::new(path)))
        .map(|(_, pattern)| pattern.text())
        .collect()
}

/// The files [`GLOB_SCRIPT`] printed, in nginx's order (bytes, as
/// glob(3) sorts them in the C locale nginx runs in).
fn matches(out: &[u8]) -> Vec<String> {
    let mut files: Vec<String> = String::from_utf8_lossy(out)
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect();
    files.sort();
    files.dedup();
    files
}

/// `main` with each site replaced by `include FILE;` for each of its
/// files, on the site's line, followed by the line ends it spanned.
fn rewrite(main: &[u8], sites: &[Site], lists: &[Vec<String>]) -> Vec<u8> {
    let mut out = Vec::with_capacity(main.len() + 256);
    let mut at = 0;
    for (site, files) in sites.iter().zip(lists) {
        out.extend_from_slice(&main[at..site.span.start]);
        let includes: Vec<String> = files
            .iter()
            .map(|f| format!("include {};", crate::upstream::quote_arg(f)))
            .collect();
        if includes.is_empty() {
            // Nothing matches any more: an empty statement keeps the
            // file's shape.
            out.push(b';');
        }
        out.extend_from_slice(includes.join(" ").as_bytes());
        out.extend(std::iter::repeat_n(b'\n', site.newlines));
        at = site.span.end;
    }
    out.extend_from_slice(&main[at..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::router::candidate;

    #[test]
    fn the_candidate_main_includes_the_candidate_on_the_same_lines() {
        let main = b"events {}\nhttp {\n    include mime.types;\n    include conf.d/*.conf;\n    include\n      /srv/app.inc;\n    server { listen 80; }\n}\n";
        let sites =
            candidate::sites(main, "/etc/nginx/nginx.conf", "/etc/nginx/conf.d/app.conf").unwrap();
        assert_eq!(sites.len(), 1);
        assert!(sites[0].glob);
        assert_eq!(sites[0].pattern, "/etc/nginx/conf.d/*.conf");
        let lists = vec![vec![
            "/etc/nginx/conf.d/a b.conf".to_string(),
            "/etc/nginx/conf.d/app.conf.rollout-candidate".to_string(),
        ]];
        let out = String::from_utf8(candidate::rewrite(main, &sites, &lists)).unwrap();
        assert_eq!(
            out,
            "events {}\nhttp {\n    include mime.types;\n    include \"/etc/nginx/conf.d/a b.conf\"; include /etc/nginx/conf.d/app.conf.rollout-candidate;\n    include\n      /srv/app.inc;\n    server { listen 80; }\n}\n"
        );
        // A literal include spanning two lines keeps both.
        let sites = candidate::sites(main, "/etc/nginx/nginx.conf", "/srv/app.inc").unwrap();
        assert_eq!(sites[0].newlines, 1);
        let out = candidate::rewrite(main, &sites, &[vec!["/srv/app.inc.c".to_string()]]);
        let out = String::from_utf8(out).unwrap();
        assert!(
            out.contains("    include /srv/app.inc.c;\n\n    server"),
            "{out}"
        );
        assert_eq!(
            out.lines().count(),
            String::from_utf8_lossy(main).lines().count()
        );
        // Not included by the main file itself: refused.
        assert!(matches!(
            candidate::sites(main, "/etc/nginx/nginx.conf", "/etc/nginx/other/x.conf"),
            Err(RouterError::Config(_))
        ));
        assert_eq!(
            candidate::loaders(
                b"include /etc/nginx/*;",
                "/etc/nginx/nginx.conf",
                "/etc/nginx/nginx.conf.rollout-next"
            ),
            vec!["/etc/nginx/*".to_string()]
        );
        assert_eq!(candidate::matches(b"/b\n/a\n\n/a\n"), vec!["/a", "/b"]);
    }
}
