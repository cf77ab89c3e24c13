//! Writing a new nginx config, for a project that has no proxy yet
//! (`docker rollout init`).
//!
//! A config is written the way the rest of the crate edits one: never by
//! pasting strings into a template. The statements are a typed tree
//! ([`Stmt`]) whose every word is quoted by [`quote_arg`] when nginx's
//! tokenizer would not read it back as that one word; the text is printed
//! from that tree, parsed again by [`ConfFile::parse`], and the parsed
//! tree must be the tree that was printed ([`Stmt::read_file`]). The
//! upstream is added by [`ConfFile::create_upstream`], which validates its
//! servers as every edit does, and the whole file is checked once more.
//!
//! What [`proxy_config`] writes, for one upstream in front of a service:
//!
//! - `events {}` and an `http` block with one `server` listening on the
//!   proxy's port;
//! - `upstream NAME { server HOST:PORT; }`: the service by its name, as
//!   the tool's routers expect at rest;
//! - `location /` passing to it over HTTP/1.1 with the usual forwarding
//!   headers, short connect and bounded read/send timeouts, and
//!   `proxy_next_upstream error timeout http_502 http_503 http_504` with a
//!   bound on tries and time: nginx passes a request to the next server
//!   only while nothing was sent to the client and, without
//!   `non_idempotent`, never for POST, LOCK or PATCH, so only idempotent
//!   requests are retried;
//! - when the service's health check names an HTTP path, `location =
//!   PATH` for it, passed to the same upstream with access logging off.

use crate::tree::{ConfFile, Directive, Item, Items};
use crate::upstream::{quote_arg, EditError, Server};
use std::path::PathBuf;

/// One statement of a config being written: a directive with its
/// arguments, ending in `;` or, with a block, in `{ ... }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stmt {
    /// The directive's name.
    pub name: String,
    /// Its arguments, as values (quoted when printed if nginx needs it).
    pub args: Vec<String>,
    /// Its block, for `events`, `http`, `server`, `location`, `upstream`.
    pub block: Option<Vec<Stmt>>,
}

impl Stmt {
    /// `name args...;`
    pub fn simple<S: Into<String>>(name: &str, args: impl IntoIterator<Item = S>) -> Stmt {
        Stmt {
            name: name.into(),
            args: args.into_iter().map(Into::into).collect(),
            block: None,
        }
    }

    /// `name args... { children }`
    pub fn block<S: Into<String>>(
        name: &str,
        args: impl IntoIterator<Item = S>,
        children: Vec<Stmt>,
    ) -> Stmt {
        Stmt {
            name: name.into(),
            args: args.into_iter().map(Into::into).collect(),
            block: Some(children),
        }
    }

    /// The statements of a parsed file, values decoded and comments left
    /// out: what nginx reads from it.
    pub fn read_file(file: &ConfFile) -> Vec<Stmt> {
        read_items(file.items())
    }

    fn print_into(&self, depth: usize, out: &mut String) {
        let indent = "    ".repeat(depth);
        out.push_str(&indent);
        out.push_str(&word(&self.name));
        for a in &self.args {
            out.push(' ');
            out.push_str(&word(a));
        }
        match &self.block {
            None => out.push_str(";\n"),
            Some(children) if children.is_empty() => out.push_str(" {}\n"),
            Some(children) => {
                out.push_str(" {\n");
                print_list(children, depth + 1, out);
                out.push_str(&indent);
                out.push_str("}\n");
            }
        }
    }
}

/// `s` as one nginx word: a lone variable (`$host`) as it is, anything else
/// through [`quote_arg`] (nginx expands variables in quotes too; bare reads
/// as people write it).
fn word(s: &str) -> String {
    let variable = s.strip_prefix('$').is_some_and(|name| {
        name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
            && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
    });
    if variable {
        s.to_string()
    } else {
        quote_arg(s)
    }
}

/// Prints `stmts`, a blank line between a block and what follows it.
fn print_list(stmts: &[Stmt], depth: usize, out: &mut String) {
    for (i, s) in stmts.iter().enumerate() {
        if i > 0 && (s.block.is_some() || stmts[i - 1].block.is_some()) {
            out.push('\n');
        }
        s.print_into(depth, out);
    }
}

/// Prints statements as a config file, four spaces per level.
pub fn print(stmts: &[Stmt]) -> String {
    let mut out = String::new();
    print_list(stmts, 0, &mut out);
    out
}

fn read_items(items: Items<'_>) -> Vec<Stmt> {
    items
        .iter()
        .filter_map(|item| match item {
            Item::Directive(d) => Some(read_directive(&d)),
            Item::Comment(_) => None,
        })
        .collect()
}

fn read_directive(d: &Directive<'_>) -> Stmt {
    Stmt {
        name: d.name().value_lossy(),
        args: d.args().map(|w| w.value_lossy()).collect(),
        block: d.block().map(read_items),
    }
}

/// What [`proxy_config`] needs to know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxySpec {
    /// The upstream's name (the service's, by the tool's convention).
    pub upstream: String,
    /// Its servers at rest (`SERVICE:PORT`).
    pub servers: Vec<Server>,
    /// The port nginx listens on inside its container.
    pub listen: u16,
    /// The service's health check path, passed through with logging off.
    pub health_path: Option<String>,
}

/// Why a config could not be written. Nothing was written.
#[derive(Debug, thiserror::Error)]
pub enum GenerateError {
    /// The upstream's name or servers are what nginx would refuse.
    #[error(transparent)]
    Edit(#[from] EditError),
    /// The printed text did not parse back to the tree it was printed
    /// from (a bug of this crate, or a value nginx cannot hold).
    #[error("the generated config does not read back as written: {0}")]
    RoundTrip(String),
    /// A health path that is not a plain absolute path.
    #[error("health path {0:?}: expected an absolute path of letters, digits and / _ . - ~")]
    HealthPath(String),
}

/// The proxy timeouts and retry rules of every location passing to the
/// service (see the module's documentation).
fn proxy_rules(upstream: &str, read_timeout: &str) -> Vec<Stmt> {
    vec![
        Stmt::simple("proxy_pass", [format!("http://{upstream}")]),
        Stmt::simple("proxy_http_version", ["1.1"]),
        Stmt::simple("proxy_set_header", ["Connection", ""]),
        Stmt::simple("proxy_set_header", ["Host", "$host"]),
        Stmt::simple("proxy_set_header", ["X-Real-IP", "$remote_addr"]),
        Stmt::simple(
            "proxy_set_header",
            ["X-Forwarded-For", "$proxy_add_x_forwarded_for"],
        ),
        Stmt::simple("proxy_set_header", ["X-Forwarded-Proto", "$scheme"]),
        Stmt::simple("proxy_connect_timeout", ["2s"]),
        Stmt::simple("proxy_send_timeout", [read_timeout]),
        Stmt::simple("proxy_read_timeout", [read_timeout]),
        Stmt::simple(
            "proxy_next_upstream",
            ["error", "timeout", "http_502", "http_503", "http_504"],
        ),
        Stmt::simple("proxy_next_upstream_tries", ["3"]),
        Stmt::simple("proxy_next_upstream_timeout", ["10s"]),
    ]
}

/// Whether `p` is a plain absolute URL path (no quoting, no variables).
fn plain_path(p: &str) -> bool {
    p.starts_with('/')
        && p.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'/' | b'_' | b'.' | b'-' | b'~'))
}

/// The statements of [`proxy_config`]'s file, upstream included.
pub fn proxy_stmts(spec: &ProxySpec) -> Result<Vec<Stmt>, GenerateError> {
    let mut server = vec![Stmt::simple("listen", [spec.listen.to_string()])];
    if let Some(path) = &spec.health_path {
        if !plain_path(path) {
            return Err(GenerateError::HealthPath(path.clone()));
        }
        let mut rules = vec![Stmt::simple("access_log", ["off"])];
        rules.extend(proxy_rules(&spec.upstream, "10s"));
        server.push(Stmt::block("location", ["=", path.as_str()], rules));
    }
    server.push(Stmt::block(
        "location",
        ["/"],
        proxy_rules(&spec.upstream, "60s"),
    ));
    let upstream = Stmt::block(
        "upstream",
        [spec.upstream.as_str()],
        spec.servers
            .iter()
            .map(|s| Stmt {
                name: "server".into(),
                args: std::iter::once(s.address.to_string())
                    .chain(s.params.iter().map(|p| p.to_string()))
                    .collect(),
                block: None,
            })
            .collect(),
    );
    Ok(vec![
        Stmt::block("events", Vec::<String>::new(), vec![]),
        Stmt::block(
            "http",
            Vec::<String>::new(),
            vec![
                upstream,
                Stmt::block("server", Vec::<String>::new(), server),
            ],
        ),
    ])
}

/// A complete `nginx.conf` proxying to one upstream (see the module's
/// documentation), at `path`, checked to read back as the tree it was
/// printed from.
///
/// # Errors
/// [`GenerateError`]: a name or server nginx would refuse, a health path
/// that is not plain, or a tree that does not read back.
pub fn proxy_config(spec: &ProxySpec, path: impl Into<PathBuf>) -> Result<ConfFile, GenerateError> {
    let want = proxy_stmts(spec)?;
    // The skeleton first, then the upstream through the crate's editor.
    let mut skeleton = want.clone();
    if let Some(http) = skeleton[1].block.as_mut() {
        http.remove(0);
    }
    let text = print(&skeleton);
    let file = ConfFile::parse(path, text.into_bytes())
        .map_err(|e| GenerateError::RoundTrip(e.to_string()))?;
    if Stmt::read_file(&file) != skeleton {
        return Err(GenerateError::RoundTrip(
            "the skeleton reads back differently".into(),
        ));
    }
    let file = file.create_upstream(&spec.upstream, &spec.servers)?;
    let got = Stmt::read_file(&file);
    if got != want {
        return Err(GenerateError::RoundTrip(format!(
            "wanted {want:?}, read {got:?}"
        )));
    }
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(health: Option<&str>) -> ProxySpec {
        ProxySpec {
            upstream: "web".into(),
            servers: vec![Server::parse("web:8000").unwrap()],
            listen: 80,
            health_path: health.map(Into::into),
        }
    }

    #[test]
    fn reads_back_as_the_tree_and_prints_losslessly() {
        let file = proxy_config(&spec(Some("/healthz")), "nginx.conf").unwrap();
        let text = String::from_utf8(file.print()).unwrap();
        assert_eq!(file.print(), file.source());
        assert!(text.starts_with("events {}\n\nhttp {\n    upstream web {\n        server web:8000;\n    }\n\n    server {\n        listen 80;\n"));
        assert!(text.contains("        location = /healthz {\n            access_log off;\n"));
        assert!(text.contains("            proxy_set_header Connection \"\";\n"));
        assert!(text.contains("            proxy_set_header Host $host;\n"));
        assert!(text.contains(
            "            proxy_next_upstream error timeout http_502 http_503 http_504;\n"
        ));
        let again = ConfFile::parse("nginx.conf", file.print()).unwrap();
        assert_eq!(
            Stmt::read_file(&again),
            proxy_stmts(&spec(Some("/healthz"))).unwrap()
        );
        let up = again.upstream("web").unwrap();
        assert_eq!(up.server_set()[0].to_string(), "web:8000");
    }

    #[test]
    fn no_health_location_without_a_path() {
        let file = proxy_config(&spec(None), "nginx.conf").unwrap();
        let text = String::from_utf8(file.print()).unwrap();
        assert!(!text.contains("location ="));
        assert_eq!(text.matches("location").count(), 1);
    }

    #[test]
    fn refuses_what_could_inject() {
        let bad = proxy_config(&spec(Some("/x; deny all")), "nginx.conf").unwrap_err();
        assert!(matches!(bad, GenerateError::HealthPath(_)), "{bad}");
        let mut s = spec(None);
        s.upstream = "web;evil".into();
        let e = proxy_config(&s, "nginx.conf").unwrap_err();
        assert!(e.to_string().contains("letters, digits"), "{e}");
    }

    #[test]
    fn words_nginx_would_split_are_quoted() {
        let s = vec![Stmt::simple("add_header", ["X-A", "a b;c"])];
        let text = print(&s);
        assert_eq!(text, "add_header X-A \"a b;c\";\n");
        let f = ConfFile::parse("x", text.into_bytes()).unwrap();
        assert_eq!(Stmt::read_file(&f), s);
    }
}
