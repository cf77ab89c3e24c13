//! How nginx reads an `include`: the one resolver and the one glob matcher
//! of the crate.
//!
//! Two parts of the crate ask what an `include` loads: [`Config`] follows
//! includes from a [`Source`], and the traffic router asks whether an include
//! of the main file loads the upstream file, or would load one of the files
//! the router writes beside it. Both must give nginx's answer, so both ask
//! here.
//!
//! nginx (`ngx_conf_include`) takes a relative pattern against the main
//! config's directory (its conf prefix), not the including file's; a pattern
//! with `*`, `?` or `[` anywhere in it is a glob, expanded with glob(3):
//! matches sorted, none at all is fine, and a wildcard never matches a `/`
//! or the leading `.` of a name. A plain path that cannot be opened is an
//! error on the include's line.
//!
//! [`Config`]: crate::Config

use crate::config::Source;
use crate::tree::{ConfFile, Directive};
use std::io;
use std::path::{Path, PathBuf};

/// An `include`'s argument made absolute against the main file's directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Pattern(PathBuf);

impl Pattern {
    /// `arg` (an include's argument) taken against the directory of the
    /// main file `main`, as nginx does.
    pub(crate) fn new(main: &Path, arg: &[u8]) -> Self {
        let prefix = main.parent().unwrap_or(Path::new(""));
        Pattern(prefix.join(bytes_to_path(arg)))
    }

    /// The pattern as a path.
    pub(crate) fn path(&self) -> &Path {
        &self.0
    }

    /// The pattern as text (lossy where it is not UTF-8).
    pub(crate) fn text(&self) -> String {
        self.0.to_string_lossy().into_owned()
    }

    fn bytes(&self) -> &[u8] {
        self.0.as_os_str().as_encoded_bytes()
    }

    /// Whether nginx expands it as a glob.
    pub(crate) fn is_glob(&self) -> bool {
        has_magic(self.bytes())
    }

    /// Whether nginx would load `file` through this include: the same path
    /// for a plain one, a match for a glob.
    pub(crate) fn loads(&self, file: &Path) -> bool {
        let file = file.as_os_str().as_encoded_bytes();
        if self.is_glob() {
            glob_match(self.bytes(), file)
        } else {
            self.bytes() == file
        }
    }

    /// The files it names in `source` now, or nginx's reason for refusing
    /// it (a plain path that cannot be read).
    pub(crate) fn expand(&self, source: &dyn Source) -> Result<Vec<PathBuf>, String> {
        let pattern = self.path();
        if !self.is_glob() {
            return match source.read(pattern) {
                Ok(_) => Ok(vec![pattern.to_path_buf()]),
                Err(e) => Err(os_reason(&e)),
            };
        }
        // Expand component by component, like glob(3).
        let mut current: Vec<PathBuf> = vec![PathBuf::new()];
        for comp in pattern.components() {
            let c = comp.as_os_str();
            let cb = c.as_encoded_bytes();
            if !has_magic(cb) {
                for p in &mut current {
                    p.push(c);
                }
                continue;
            }
            let mut nextv = Vec::new();
            for dir in &current {
                let listing = if dir.as_os_str().is_empty() {
                    source.list_dir(Path::new("."))
                } else {
                    source.list_dir(dir)
                };
                let Ok(mut names) = listing else { continue };
                names.sort();
                for n in names {
                    if glob_match(cb, n.as_encoded_bytes()) {
                        nextv.push(dir.join(&n));
                    }
                }
            }
            current = nextv;
        }
        // Only files that read (glob(3) would list directories too, and nginx
        // would then fail on them; a directory match is rare enough to skip).
        current.retain(|p| source.list_dir(p).is_err());
        current.sort();
        Ok(current)
    }
}

/// The `include` directives of `file` (at any depth, in order) that have an
/// argument, each with its pattern taken against the directory of the main
/// file `main` (every file's includes are, not only the main file's).
pub(crate) fn includes<'f>(file: &'f ConfFile, main: &Path) -> Vec<(Directive<'f>, Pattern)> {
    file.walk()
        .into_iter()
        .filter(|(_, d)| d.name().value().as_ref() == b"include")
        .filter_map(|(_, d)| {
            let pattern = Pattern::new(main, &d.args().next()?.value());
            Some((d, pattern))
        })
        .collect()
}

#[cfg(unix)]
fn bytes_to_path(b: &[u8]) -> PathBuf {
    use std::os::unix::ffi::OsStrExt;
    PathBuf::from(std::ffi::OsStr::from_bytes(b))
}

#[cfg(not(unix))]
fn bytes_to_path(b: &[u8]) -> PathBuf {
    PathBuf::from(String::from_utf8_lossy(b).into_owned())
}

/// Whether nginx takes an include's argument as a glob.
fn has_magic(s: &[u8]) -> bool {
    s.iter().any(|b| matches!(b, b'*' | b'?' | b'['))
}

/// The reason a file cannot be opened, as nginx words it (`2: No such file
/// or directory`).
fn os_reason(e: &io::Error) -> String {
    match e.raw_os_error() {
        Some(code) => {
            let msg = e.to_string();
            let text = msg.split(" (os error").next().unwrap_or(&msg);
            format!("{code}: {text}")
        }
        None => e.to_string(),
    }
}

/// Whether glob(3), as nginx calls it, names `path` for `pattern`: `*`,
/// `?`, `[abc]`, `[a-z]`, `[!x]` (or `[^x]`), `\x`; no wildcard matches a
/// `/`, and a name's leading `.` is matched only by a `.` written at the
/// start of the pattern's name. A `[` without its `]` is a plain `[`. Works
/// on one name as well as on a whole path.
pub(crate) fn glob_match(pattern: &[u8], path: &[u8]) -> bool {
    let (mut p, mut s) = (0, 0);
    // The last `*`, and where in the path it stopped taking bytes.
    let mut star: Option<(usize, usize)> = None;
    while s < path.len() {
        let c = path[s];
        let hidden = c == b'.' && (s == 0 || path[s - 1] == b'/');
        let step = match pattern.get(p) {
            _ if hidden && pattern.get(p) != Some(&b'.') => None,
            Some(b'*') => {
                star = Some((p, s));
                p += 1;
                continue;
            }
            Some(b'?') if c != b'/' => Some(p + 1),
            Some(b'[') => match class(&pattern[p..], c) {
                Some((true, len)) if c != b'/' => Some(p + len),
                Some(_) => None,
                None => (c == b'[').then_some(p + 1),
            },
            Some(b'\\') if p + 1 < pattern.len() => (pattern[p + 1] == c).then_some(p + 2),
            Some(&b) => (b == c).then_some(p + 1),
            None => None,
        };
        match step {
            Some(next) => {
                p = next;
                s += 1;
            }
            // The `*` takes one more byte, unless that is a `/`.
            None => match star {
                Some((sp, ss)) if path[ss] != b'/' => {
                    star = Some((sp, ss + 1));
                    p = sp + 1;
                    s = ss + 1;
                }
                _ => return false,
            },
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

/// A `[...]` class at the start of `p`: whether `c` is in it, and its
/// length; `None` when it is not closed.
fn class(p: &[u8], c: u8) -> Option<(bool, usize)> {
    let mut i = 1;
    let negate = matches!(p.get(i), Some(b'!' | b'^'));
    if negate {
        i += 1;
    }
    let mut matched = false;
    let mut first = true;
    loop {
        let &lo = p.get(i)?;
        if lo == b']' && !first {
            return Some((matched != negate, i + 1));
        }
        first = false;
        if p.get(i + 1) == Some(&b'-') && p.get(i + 2).is_some_and(|&hi| hi != b']') {
            let hi = p[i + 2];
            matched |= lo <= c && c <= hi;
            i += 3;
        } else {
            matched |= lo == c;
            i += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_as_nginx_globs_do() {
        let m = |p: &str, s: &str| glob_match(p.as_bytes(), s.as_bytes());
        assert!(m(
            "/etc/nginx/conf.d/*.conf",
            "/etc/nginx/conf.d/default.conf"
        ));
        assert!(!m(
            "/etc/nginx/conf.d/*.conf",
            "/etc/nginx/conf.d/default.conf.rollout-candidate"
        ));
        assert!(m(
            "/etc/nginx/conf.d/*",
            "/etc/nginx/conf.d/default.conf.rollout-previous"
        ));
        assert!(
            !m("/etc/nginx/*.conf", "/etc/nginx/conf.d/x.conf"),
            "* stops at /"
        );
        assert!(m("/etc/nginx/*/x.conf", "/etc/nginx/conf.d/x.conf"));
        assert!(m("/a/?.conf", "/a/b.conf") && !m("/a/?.conf", "/a/bc.conf"));
        assert!(m("/a/[a-c].conf", "/a/b.conf") && !m("/a/[a-c].conf", "/a/d.conf"));
        assert!(m("/a/[!a-c].conf", "/a/d.conf") && !m("/a/[!a-c].conf", "/a/a.conf"));
        assert!(m("/a/[]x].conf", "/a/].conf"));
        assert!(!m("/a/[ab", "/a/a"), "an unclosed class matches nothing");
        assert!(m("/a/**", "/a/b") && m("/a/*", "/a/"));
    }

    #[test]
    fn globs_follow_glob3_where_the_two_old_matchers_differed() {
        let m = |p: &str, s: &str| glob_match(p.as_bytes(), s.as_bytes());
        // A backslash protects the next byte.
        assert!(m("/a/\\*.conf", "/a/*.conf") && !m("/a/\\*.conf", "/a/b.conf"));
        // A `[` that is never closed is a plain `[`.
        assert!(m("/a/[ab", "/a/[ab"));
        // A leading `.` is matched only by a `.` written there.
        assert!(!m("/a/*", "/a/.hidden") && !m("/a/?hidden", "/a/.hidden"));
        assert!(m("/a/.*", "/a/.hidden") && m("/a/b.*", "/a/b.c"));
        assert!(!m("/*/x", "/.d/x") && m("/.d/*", "/.d/x"));
    }

    #[test]
    fn patterns_are_taken_against_the_main_files_directory() {
        let main = Path::new("/etc/nginx/nginx.conf");
        let glob = Pattern::new(main, b"conf.d/*.conf");
        assert_eq!(glob.path(), Path::new("/etc/nginx/conf.d/*.conf"));
        assert!(glob.is_glob());
        assert!(glob.loads(Path::new("/etc/nginx/conf.d/app.conf")));
        assert!(!glob.loads(Path::new("/etc/nginx/conf.d/app.conf.rollout-next")));
        let plain = Pattern::new(main, b"/srv/app.inc");
        assert!(!plain.is_glob());
        assert!(plain.loads(Path::new("/srv/app.inc")) && !plain.loads(Path::new("/srv/app")));
        assert_eq!(
            Pattern::new(Path::new("nginx.conf"), b"x.conf").text(),
            "x.conf"
        );
    }
}
