//! The tool's own access log for one upstream, arranged beside the
//! operator's logging while a canary runs and removed at rest.
//!
//! A canary is judged by what the proxy saw: which server answered, with
//! what status, how fast. nginx writes that only to an access log, and the
//! operator's own log has a format of the operator's choosing (often without
//! `$upstream_addr`). So while traffic is split, the config carries a
//! `log_format` and `access_log` lines of the tool's own; at rest it is as
//! the operator wrote it, byte for byte.
//!
//! The rule that makes this delicate is nginx's inheritance of
//! `access_log`: a level (http, server, location, `if`, `limit_except`)
//! that has any `access_log` of its own inherits none from above, and a
//! config with none at all logs to the path nginx was built with. An added
//! line must not change where the operator's requests are logged, so for
//! each `proxy_pass` to the upstream, [`arrange`] looks for the innermost
//! level that has the operator's `access_log` lines (the ones in effect):
//!
//! - found, logging somewhere: the tool's line goes beside them, at that
//!   level (what inherits from it inherits both);
//! - found, `access_log off`: the tool's line goes in the `proxy_pass`'s own
//!   block, which then logs only to the tool's file, as before to nothing (if
//!   that block is the one saying `off`, nothing can be added there:
//!   [`LogError::Off`]);
//! - none: nginx's built-in log is in effect, and would be lost as soon as
//!   any `access_log` appears; so the tool's line goes into `http`, with the
//!   built-in one written out beside it (`access_log PATH combined;`, PATH
//!   given by the caller from `nginx -V`).
//!
//! The `log_format` goes first in `http`, since nginx resolves a format's
//! name when it reads the `access_log` line. Every line the tool adds is a
//! whole line ending in [`MARKER`] (so that a person reading the file mid
//! canary knows what it is); [`remove`] takes out exactly those lines, which
//! gives the operator's bytes back. Blocks whose closing brace (or, for
//! `http`, whose first statement) does not start a line of its own are
//! refused ([`LogError::Layout`]) rather than edited inline.

use crate::tree::{ConfFile, Directive};
use crate::upstream::{indent_of, indent_unit, line_ending, line_start, quote_arg, EditError};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// The start of the comment that ends every line the tool adds, and by
/// which [`remove`] knows them: [`marker`] for one upstream's lines,
/// [`SHARED_MARKER`] for nginx's built-in log written out beside them.
pub const MARKER: &str = "# docker-rollout: canary analysis log";

/// The comment of the built-in log's line, which the canaries of several
/// upstreams behind one proxy share: it goes with the last of them.
pub const SHARED_MARKER: &str =
    "# docker-rollout: canary analysis log: nginx's built-in log kept, removed at rest";

/// The comment that ends the lines of `upstream`'s log.
pub fn marker(upstream: &str) -> String {
    format!("{MARKER} of {upstream}, removed at rest")
}

/// Whose a line the tool added is.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Owner {
    /// One upstream's (its format, its log).
    Upstream(String),
    /// The built-in log's line, shared.
    Shared,
}

/// The fields of the tool's log line, tab-separated, in this order: the
/// request's end time (`$msec`), `$status`, `$request_time`,
/// `$upstream_addr`, `$upstream_status`, `$upstream_response_time` (the
/// last three are lists when nginx tried several servers).
pub const FORMAT: &str =
    "$msec\t$status\t$request_time\t$upstream_addr\t$upstream_status\t$upstream_response_time";

/// Where the tool's log for one upstream goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricsLog {
    /// The log file as the proxy sees it.
    pub path: String,
    /// nginx's built-in access log (`--http-log-path` of `nginx -V`), written
    /// out when the operator's config names none.
    pub default_log: String,
}

impl MetricsLog {
    /// A log at `path`, refusing what could be read as anything but a file
    /// name (nginx expands `$` in log paths; control characters and `;`
    /// have no place in one).
    pub fn new(path: &str, default_log: &str) -> Result<Self, LogError> {
        for p in [path, default_log] {
            if p.is_empty()
                || p.bytes()
                    .any(|b| b.is_ascii_control() || matches!(b, b'$' | b';' | b'{' | b'}'))
            {
                return Err(LogError::Path { path: p.into() });
            }
        }
        Ok(Self {
            path: path.into(),
            default_log: default_log.into(),
        })
    }
}

/// Why the tool's log cannot be arranged.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// No `proxy_pass` of the file sends to the upstream.
    #[error("{}: no proxy_pass sends requests to upstream \"{upstream}\"", file.display())]
    NotProxied {
        /// The file.
        file: PathBuf,
        /// The upstream.
        upstream: String,
    },
    /// The `proxy_pass` is not inside an `http` block of this file.
    #[error("{}: the proxy_pass to \"{upstream}\" is not inside an http block of this file", file.display())]
    NoHttp {
        /// The file.
        file: PathBuf,
        /// The upstream.
        upstream: String,
    },
    /// The operator's `access_log off` is in the block of the `proxy_pass`.
    #[error("{}:{line}: access_log off in the block that proxies to \"{upstream}\": a log of the tool's own there would be switched off too", file.display())]
    Off {
        /// The file.
        file: PathBuf,
        /// The line of `access_log off`.
        line: u32,
        /// The upstream.
        upstream: String,
    },
    /// A block the tool would add a line to is written on one line.
    #[error("{}:{line}: {why}: the tool adds its log lines as whole lines", file.display())]
    Layout {
        /// The file.
        file: PathBuf,
        /// The line of the block.
        line: u32,
        /// What is in the way.
        why: String,
    },
    /// A log path that is not a plain file name.
    #[error(
        "log path {path:?} is not a plain file name (no '$', ';', braces or control characters)"
    )]
    Path {
        /// The path.
        path: String,
    },
    /// The edit did not read back (a bug of this crate).
    #[error(transparent)]
    Edit(#[from] EditError),
}

/// The `log_format` name of the tool's log for `upstream`.
pub fn format_name(upstream: &str) -> String {
    format!("rollout_{upstream}")
}

/// Whose line `d` is, when the tool added it (followed on its line by a
/// marker comment).
fn owner(file: &ConfFile, d: &Directive<'_>) -> Option<Owner> {
    let src = file.source();
    let end = d.span().end;
    let rest = &src[end..];
    let line = memchr::memchr(b'\n', rest).map_or(rest, |p| &rest[..p]);
    let text = String::from_utf8_lossy(line);
    let text = text.trim();
    if text == SHARED_MARKER {
        return Some(Owner::Shared);
    }
    text.strip_prefix(MARKER)?
        .strip_prefix(" of ")?
        .strip_suffix(", removed at rest")
        .map(|u| Owner::Upstream(u.to_string()))
}

/// Whether the file holds lines the tool added for `upstream`.
pub fn has_tool_lines(file: &ConfFile, upstream: &str) -> bool {
    let mine = Some(Owner::Upstream(upstream.to_string()));
    file.walk().iter().any(|(_, d)| owner(file, d) == mine)
}

/// `file` without the lines the tool added for `upstream`, and without the
/// built-in log's line when no other upstream's log shares its block: with
/// no other canary running, the operator's bytes.
pub fn remove(file: &ConfFile, upstream: &str) -> Result<ConfFile, LogError> {
    let walk = file.walk();
    let block_of = |parents: &Vec<Directive<'_>>| parents.last().map(|p| p.span().start);
    let others: Vec<Option<usize>> = walk
        .iter()
        .filter(|(_, d)| matches!(owner(file, d), Some(Owner::Upstream(u)) if u != upstream))
        .map(|(parents, _)| block_of(parents))
        .collect();
    let splices: Vec<_> = walk
        .iter()
        .filter(|(parents, d)| match owner(file, d) {
            Some(Owner::Upstream(u)) => u == upstream,
            Some(Owner::Shared) => !others.contains(&block_of(parents)),
            None => false,
        })
        .map(|(_, d)| (file.line_removal(d.span()), Vec::new()))
        .collect();
    if splices.is_empty() {
        return Ok(file.clone());
    }
    Ok(file.splice(splices)?)
}

fn name_is(d: &Directive<'_>, name: &[u8]) -> bool {
    d.name().value().as_ref() == name
}

/// Whether `proxy_pass`'s argument sends to upstream `upstream`.
fn proxies_to(d: &Directive<'_>, upstream: &str) -> bool {
    let Some(arg) = d.args().next() else {
        return false;
    };
    let v = arg.value_lossy();
    let rest = v
        .strip_prefix("http://")
        .or_else(|| v.strip_prefix("https://"));
    rest.is_some_and(|r| r.split(['/', '?']).next() == Some(upstream))
}

/// The operator's `access_log` lines directly in `block` (not the tool's,
/// of any upstream).
fn own_logs<'a>(file: &ConfFile, block: &Directive<'a>) -> Vec<Directive<'a>> {
    block
        .block()
        .map(|items| {
            items
                .directives()
                .filter(|c| name_is(c, b"access_log") && owner(file, c).is_none())
                .collect()
        })
        .unwrap_or_default()
}

/// Whether `block` already has the built-in log's line (another upstream's
/// canary wrote it).
fn has_shared(file: &ConfFile, block: &Directive<'_>) -> bool {
    block.block().is_some_and(|items| {
        items
            .directives()
            .any(|c| owner(file, &c) == Some(Owner::Shared))
    })
}

/// What one block gets.
#[derive(Default)]
struct Adds {
    line: u32,
    tool: bool,
    default: bool,
}

/// `file` with the tool's log for `upstream` arranged (any earlier tool
/// lines replaced): see the [module documentation](self) for where.
pub fn arrange(file: &ConfFile, upstream: &str, log: &MetricsLog) -> Result<ConfFile, LogError> {
    let clean = remove(file, upstream)?;
    let file = &clean;
    let name = format_name(upstream);
    let walk = file.walk();
    let passes: Vec<&(Vec<Directive<'_>>, Directive<'_>)> = walk
        .iter()
        .filter(|(_, d)| name_is(d, b"proxy_pass") && proxies_to(d, upstream))
        .collect();
    if passes.is_empty() {
        return Err(LogError::NotProxied {
            file: file.path().to_path_buf(),
            upstream: upstream.into(),
        });
    }
    let mut http: Option<Directive<'_>> = None;
    // Keyed by the block's start offset.
    let mut adds: BTreeMap<usize, (Directive<'_>, Adds)> = BTreeMap::new();
    let mut wanted: Vec<(Directive<'_>, bool)> = Vec::new();
    for (parents, _) in passes {
        let Some(h) = parents.iter().find(|p| name_is(p, b"http")) else {
            return Err(LogError::NoHttp {
                file: file.path().to_path_buf(),
                upstream: upstream.into(),
            });
        };
        http = Some(*h);
        let below: Vec<&Directive<'_>> = parents
            .iter()
            .skip_while(|p| !name_is(p, b"http"))
            .collect();
        let innermost = *below.last().expect("http at least");
        let effective = below.iter().rev().find_map(|b| {
            let logs = own_logs(file, b);
            (!logs.is_empty()).then_some((**b, logs))
        });
        match effective {
            None => wanted.push((*h, true)),
            Some((level, logs)) => {
                let off = logs.iter().find(|l| {
                    l.args()
                        .next()
                        .is_some_and(|a| a.value().as_ref() == b"off")
                });
                match off {
                    None => wanted.push((level, false)),
                    Some(off) if level.span() == innermost.span() => {
                        return Err(LogError::Off {
                            file: file.path().to_path_buf(),
                            line: off.line(),
                            upstream: upstream.into(),
                        })
                    }
                    Some(_) => wanted.push((*innermost, false)),
                }
            }
        }
    }
    for (b, default) in wanted {
        let e = adds.entry(b.span().start).or_insert_with(|| {
            (
                b,
                Adds {
                    line: b.line(),
                    ..Adds::default()
                },
            )
        });
        e.1.tool = true;
        e.1.default |= default;
    }
    let http = http.expect("at least one proxy_pass was found");
    let src = file.source();
    let eol = line_ending(src);
    let unit = indent_unit(src);
    let layout = |line: u32, why: &str| LogError::Layout {
        file: file.path().to_path_buf(),
        line,
        why: why.into(),
    };
    let alone = |at: usize| {
        src[line_start(src, at)..at]
            .iter()
            .all(|b| matches!(b, b' ' | b'\t'))
    };
    let mut splices = Vec::new();
    // The format first in http: its first statement must start a line.
    let first = http
        .block()
        .and_then(|b| b.directives().next())
        .ok_or_else(|| layout(http.line(), "the http block is empty"))?;
    if !alone(first.span().start) {
        return Err(layout(
            first.line(),
            "the http block's first statement does not start a line",
        ));
    }
    let indent = indent_of(src, first.span().start);
    let mark = marker(upstream);
    let format_line = format!(
        "{indent}log_format {name} {}; {mark}{eol}",
        quote_arg(FORMAT)
    );
    let at = line_start(src, first.span().start);
    splices.push((at..at, format_line.into_bytes()));
    for (block, a) in adds.values() {
        let close = block.span().end - 1;
        if !alone(close) {
            return Err(layout(
                a.line,
                &format!(
                    "the closing brace of the {} block does not start a line",
                    block.name().value_lossy()
                ),
            ));
        }
        let indent = format!("{}{unit}", indent_of(src, close));
        let mut text = String::new();
        if a.default && !has_shared(file, block) {
            text.push_str(&format!(
                "{indent}access_log {} combined; {SHARED_MARKER}{eol}",
                quote_arg(&log.default_log)
            ));
        }
        if a.tool {
            text.push_str(&format!(
                "{indent}access_log {} {name}; {mark}{eol}",
                quote_arg(&log.path)
            ));
        }
        let at = line_start(src, close);
        splices.push((at..at, text.into_bytes()));
    }
    Ok(file.splice(splices)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log() -> MetricsLog {
        MetricsLog::new(
            "/var/log/nginx/rollout-app.log",
            "/var/log/nginx/access.log",
        )
        .unwrap()
    }

    fn arranged(src: &str) -> String {
        let f = ConfFile::parse("nginx.conf", src.as_bytes().to_vec()).unwrap();
        let out = arrange(&f, "app", &log()).unwrap();
        // Removing gives the operator's bytes back, whatever was added.
        assert_eq!(remove(&out, "app").unwrap().source(), src.as_bytes());
        assert!(has_tool_lines(&out, "app"));
        String::from_utf8(out.source().to_vec()).unwrap()
    }

    const SEED: &str = "events {}\nhttp {\n    upstream app {\n        server app:8000;\n    }\n    server {\n        listen 80;\n        location / {\n            proxy_pass http://app;\n        }\n    }\n}\n";

    #[test]
    fn with_no_access_log_the_built_in_one_is_written_beside_ours() {
        let out = arranged(SEED);
        assert!(out.starts_with(&format!(
            "events {{}}\nhttp {{\n    log_format rollout_app \"$msec\\t$status\\t$request_time\\t$upstream_addr\\t$upstream_status\\t$upstream_response_time\"; {MARKER} of app, removed at rest\n    upstream app {{"
        )), "{out}");
        assert!(out.ends_with(&format!(
            "    }}\n    access_log /var/log/nginx/access.log combined; {SHARED_MARKER}\n    access_log /var/log/nginx/rollout-app.log rollout_app; {MARKER} of app, removed at rest\n}}\n"
        )), "{out}");
    }

    #[test]
    fn ours_goes_beside_the_operators_lines_in_effect() {
        // The server's line is in effect in the location: ours goes there,
        // not into the location (which would hide the operator's).
        let src = SEED.replace(
            "listen 80;\n",
            "listen 80;\n        access_log /var/log/app.log main;\n",
        );
        let out = arranged(&src);
        assert!(out.contains(&format!(
            "            proxy_pass http://app;\n        }}\n        access_log /var/log/nginx/rollout-app.log rollout_app; {MARKER} of app, removed at rest\n    }}\n}}\n"
        )), "{out}");
        assert!(!out.contains("combined"), "{out}");
    }

    #[test]
    fn an_operators_off_above_gets_ours_in_the_location_only() {
        let src = SEED.replace("listen 80;\n", "listen 80;\n        access_log off;\n");
        let out = arranged(&src);
        assert!(out.contains(&format!(
            "            proxy_pass http://app;\n            access_log /var/log/nginx/rollout-app.log rollout_app; {MARKER} of app, removed at rest\n        }}\n"
        )), "{out}");
        // Off in the very block: refused.
        let src = SEED.replace(
            "proxy_pass http://app;\n",
            "proxy_pass http://app;\n            access_log off;\n",
        );
        let f = ConfFile::parse("n.conf", src.into_bytes()).unwrap();
        let e = arrange(&f, "app", &log()).unwrap_err();
        assert!(matches!(e, LogError::Off { line: 10, .. }), "{e}");
    }

    #[test]
    fn refusals_name_the_file_and_line() {
        let f = ConfFile::parse(
            "n.conf",
            SEED.replace("http://app", "http://other").into_bytes(),
        )
        .unwrap();
        let e = arrange(&f, "app", &log()).unwrap_err();
        assert_eq!(
            e.to_string(),
            "n.conf: no proxy_pass sends requests to upstream \"app\""
        );
        let inline = "http {\n    upstream app { server a:1; }\n    server { access_log /l; location / { proxy_pass http://app/x; } }\n}\n";
        let f = ConfFile::parse("n.conf", inline.as_bytes().to_vec()).unwrap();
        let e = arrange(&f, "app", &log()).unwrap_err();
        assert!(matches!(e, LogError::Layout { line: 3, .. }), "{e}");
        assert!(MetricsLog::new("/x/$host.log", "/a").is_err());
        assert!(MetricsLog::new("/x/a;b", "/a").is_err());
    }

    #[test]
    fn arranging_twice_is_arranging_once() {
        let f = ConfFile::parse("n", SEED.as_bytes().to_vec()).unwrap();
        let once = arrange(&f, "app", &log()).unwrap();
        let twice = arrange(&once, "app", &log()).unwrap();
        assert_eq!(once.source(), twice.source());
        assert!(!has_tool_lines(&f, "app"));
    }

    #[test]
    fn two_canaries_behind_one_proxy_keep_each_others_lines() {
        let src = SEED.replace(
            "    server {\n",
            "    upstream api {\n        server api:9000;\n    }\n    server {\n        location /api {\n            proxy_pass http://api;\n        }\n",
        );
        let f = ConfFile::parse("n", src.clone().into_bytes()).unwrap();
        let api_log = MetricsLog::new(
            "/var/log/nginx/rollout-api.log",
            "/var/log/nginx/access.log",
        )
        .unwrap();
        let both = arrange(&arrange(&f, "app", &log()).unwrap(), "api", &api_log).unwrap();
        let text = String::from_utf8(both.source().to_vec()).unwrap();
        // One built-in log line, shared; each upstream's own lines.
        assert_eq!(text.matches("access.log combined").count(), 1, "{text}");
        assert!(has_tool_lines(&both, "app") && has_tool_lines(&both, "api"));
        // app's canary ends: api's lines and the shared one stay.
        let api_only = remove(&both, "app").unwrap();
        let text = String::from_utf8(api_only.source().to_vec()).unwrap();
        assert!(!has_tool_lines(&api_only, "app"), "{text}");
        assert!(
            text.contains("access.log combined") && text.contains("rollout_api;"),
            "{text}"
        );
        // api's ends too: the operator's bytes.
        assert_eq!(remove(&api_only, "api").unwrap().source(), src.as_bytes());
    }
}
