//! What the router needs to know from the operator's `haproxy.cfg`, read and
//! never rewritten: where the stats socket is, and the backend's server
//! slots.
//!
//! The reader is line-based, as HAProxy's own is: a section starts with its
//! keyword at the start of a line (`global`, `defaults`, `backend NAME`,
//! ...), `#` starts a comment, words are split on blanks. Only the lines the
//! router needs are understood; everything else is skipped.

use crate::command::Name;
use crate::error::HaproxyError;
use std::net::SocketAddr;

/// Where a `stats socket` listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SocketAddress {
    /// A unix socket path, as the proxy sees it.
    Unix(String),
    /// A TCP address (`ipv4@IP:PORT`, `ipv6@[IP]:PORT` or `IP:PORT`).
    Tcp(SocketAddr),
    /// Anything else (`abns@`, `fd@`, an address with a host name), kept as
    /// written.
    Other(String),
}

/// One `stats socket` line of the `global` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatsSocket {
    /// Where it listens.
    pub address: SocketAddress,
    /// Its `level`, when written. The router asks for `level admin`
    /// written out: the default has changed between versions, and only
    /// `admin` may change a server's address.
    pub level: Option<String>,
    /// Its line in the file.
    pub line: usize,
}

/// One `server-template PREFIX COUNT ...` line of a backend: slots named
/// `PREFIX1` to `PREFIXn` (or `PREFIXa` to `PREFIXb` for a range `a-b`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerTemplate {
    /// The name prefix.
    pub prefix: String,
    /// The first number.
    pub first: u32,
    /// The last number.
    pub last: u32,
    /// Its line in the file.
    pub line: usize,
}

impl ServerTemplate {
    /// The names of its slots, in order.
    pub fn slots(&self) -> impl Iterator<Item = String> + '_ {
        (self.first..=self.last).map(move |i| format!("{}{i}", self.prefix))
    }

    /// How many slots it has.
    pub fn count(&self) -> u32 {
        self.last.saturating_sub(self.first) + 1
    }
}

/// What the router reads from `haproxy.cfg`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HaproxyConfig {
    /// The file's name, for messages.
    pub file: String,
    /// The `stats socket` lines of `global`.
    pub stats_sockets: Vec<StatsSocket>,
    /// Backends (and `listen` sections) by name, with their templates.
    pub backends: Vec<(String, Vec<ServerTemplate>)>,
    /// Where a persistence directive is (`cookie`, `stick`, `use-server`,
    /// `force-persist`, `persist`): the backend or listen section's name, or
    /// `None` for `defaults` (every backend after it), and the line.
    /// Persistence sends a session to a draining server.
    pub persistence: Vec<(Option<String>, usize)>,
}

/// Directives that can send a request to a server in `drain` state.
const PERSISTENCE: &[&str] = &["cookie", "stick", "use-server", "force-persist", "persist"];

/// Section keywords of haproxy.cfg (a line starting with one opens a section).
const SECTIONS: &[&str] = &[
    "global",
    "defaults",
    "frontend",
    "backend",
    "listen",
    "resolvers",
    "peers",
    "userlist",
    "program",
    "http-errors",
    "ring",
    "mailers",
    "cache",
    "fcgi-app",
    "crt-store",
    "traces",
];

impl HaproxyConfig {
    /// Reads `text`, the content of the file named `file`.
    pub fn parse(file: &str, text: &str) -> Result<Self, HaproxyError> {
        let mut config = HaproxyConfig {
            file: file.to_string(),
            ..Default::default()
        };
        // The section the current line is in: its keyword, and the index of
        // its entry in `backends` for a backend or listen section.
        let mut section = "";
        let mut backend: Option<usize> = None;
        for (i, raw) in text.lines().enumerate() {
            let line = i + 1;
            let code = raw.split('#').next().unwrap_or("");
            let words: Vec<&str> = code.split_whitespace().collect();
            let Some(first) = words.first() else { continue };
            let opens = !raw.starts_with([' ', '\t']) && SECTIONS.contains(first);
            if opens {
                section = SECTIONS.iter().find(|s| *s == first).copied().unwrap_or("");
                backend = None;
                if matches!(section, "backend" | "listen") {
                    if let Some(name) = words.get(1) {
                        config.backends.push((name.to_string(), Vec::new()));
                        backend = Some(config.backends.len() - 1);
                    }
                }
                continue;
            }
            match (section, words.as_slice()) {
                ("global", ["stats", "socket", address, rest @ ..]) => {
                    let level = rest
                        .windows(2)
                        .find(|w| w[0] == "level")
                        .map(|w| w[1].to_string());
                    config.stats_sockets.push(StatsSocket {
                        address: socket_address(address),
                        level,
                        line,
                    });
                }
                ("defaults" | "backend" | "listen", [word, ..]) if PERSISTENCE.contains(word) => {
                    let name = backend.map(|at| config.backends[at].0.clone());
                    config.persistence.push((name, line));
                }
                (_, ["server-template", prefix, count, ..]) => {
                    let Some(at) = backend else { continue };
                    let (first, last) =
                        template_range(count).ok_or_else(|| HaproxyError::Config {
                            location: format!("{file}:{line}"),
                            message: format!(
                                "server-template count `{}` is neither N nor LOW-HIGH",
                                count.escape_debug()
                            ),
                        })?;
                    config.backends[at].1.push(ServerTemplate {
                        prefix: prefix.to_string(),
                        first,
                        last,
                        line,
                    });
                }
                _ => {}
            }
        }
        Ok(config)
    }

    /// Whether sessions can reach a draining server of `backend` through
    /// persistence (a directive of its own or of a `defaults` section).
    pub fn persists(&self, backend: &Name) -> bool {
        self.persistence
            .iter()
            .any(|(of, _)| of.as_deref().is_none_or(|b| b == backend.as_str()))
    }

    /// The stats socket the router uses: the first one with `level admin`
    /// written out.
    pub fn admin_socket(&self) -> Result<&StatsSocket, HaproxyError> {
        if let Some(admin) = self
            .stats_sockets
            .iter()
            .find(|s| s.level.as_deref() == Some("admin"))
        {
            return Ok(admin);
        }
        match self.stats_sockets.first() {
            None => Err(HaproxyError::NoStatsSocket {
                file: self.file.clone(),
            }),
            Some(socket) => Err(HaproxyError::StatsLevel {
                location: format!("{}:{}", self.file, socket.line),
                level: socket.level.clone().unwrap_or_else(|| "(default)".into()),
            }),
        }
    }

    /// The server slots of `backend`: the names of every slot of its
    /// `server-template` lines.
    pub fn slots(&self, backend: &Name) -> Result<Vec<String>, HaproxyError> {
        let (_, templates) = self
            .backends
            .iter()
            .find(|(name, _)| name == backend.as_str())
            .ok_or_else(|| HaproxyError::NoBackend {
                file: self.file.clone(),
                backend: backend.to_string(),
            })?;
        if templates.is_empty() {
            return Err(HaproxyError::NoTemplate {
                file: self.file.clone(),
                backend: backend.to_string(),
            });
        }
        Ok(templates.iter().flat_map(|t| t.slots()).collect())
    }
}

fn socket_address(text: &str) -> SocketAddress {
    let tcp = |rest: &str| {
        rest.parse::<SocketAddr>()
            .map(SocketAddress::Tcp)
            .unwrap_or_else(|_| SocketAddress::Other(text.to_string()))
    };
    if let Some(path) = text.strip_prefix("unix@") {
        SocketAddress::Unix(path.to_string())
    } else if let Some(rest) = text
        .strip_prefix("ipv4@")
        .or_else(|| text.strip_prefix("ipv6@"))
    {
        tcp(rest)
    } else if text.starts_with('/') || text.starts_with('.') {
        SocketAddress::Unix(text.to_string())
    } else if text.contains('@') {
        SocketAddress::Other(text.to_string())
    } else {
        tcp(text)
    }
}

fn template_range(count: &str) -> Option<(u32, u32)> {
    match count.split_once('-') {
        Some((low, high)) => {
            let (low, high) = (low.parse().ok()?, high.parse().ok()?);
            (low >= 1 && high >= low).then_some((low, high))
        }
        None => {
            let n: u32 = count.parse().ok()?;
            (n >= 1).then_some((1, n))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CFG: &str = "\
global
    log stdout format raw local0
    stats socket /run/haproxy/admin.sock mode 660 level admin # the router's
    stats socket ipv4@127.0.0.1:9999 level operator

defaults
    mode http

frontend fe
    bind :80
    default_backend app

backend app
    balance roundrobin
    server-template s 1-4 0.0.0.0:0 disabled
    server-template extra 2 0.0.0.0:0 disabled

backend static
    server web1 10.0.0.1:80
";

    fn name(s: &str) -> Name {
        Name::new("backend", s).unwrap()
    }

    #[test]
    fn the_admin_socket_and_the_slots() {
        let config = HaproxyConfig::parse("haproxy.cfg", CFG).unwrap();
        let socket = config.admin_socket().unwrap();
        assert_eq!(
            socket.address,
            SocketAddress::Unix("/run/haproxy/admin.sock".into())
        );
        assert_eq!(socket.line, 3);
        assert_eq!(
            config.stats_sockets[1].address,
            SocketAddress::Tcp("127.0.0.1:9999".parse().unwrap())
        );
        assert_eq!(
            config.slots(&name("app")).unwrap(),
            ["s1", "s2", "s3", "s4", "extra1", "extra2"]
        );
    }

    #[test]
    fn persistence_is_found_in_its_backend_or_in_defaults() {
        let text = "backend app\n  server-template s 2 a:80\n  cookie SRV insert\nbackend api\n  server-template s 2 b:80\n";
        let config = HaproxyConfig::parse("haproxy.cfg", text).unwrap();
        assert!(config.persists(&name("app")));
        assert!(!config.persists(&name("api")));
        assert_eq!(config.persistence, [(Some("app".to_string()), 3)]);
        let text = "defaults\n  stick on src\nbackend api\n  server-template s 2 b:80\n";
        let config = HaproxyConfig::parse("haproxy.cfg", text).unwrap();
        assert!(config.persists(&name("api")));
        // A comment is no directive.
        let text = "backend api\n  # cookie SRV insert\n  server-template s 2 b:80\n";
        let config = HaproxyConfig::parse("haproxy.cfg", text).unwrap();
        assert!(!config.persists(&name("api")));
    }

    #[test]
    fn what_is_missing_is_named_with_what_to_add() {
        let config = HaproxyConfig::parse(
            "haproxy.cfg",
            "global\n    daemon\nbackend app\n    server a 1.2.3.4:80\n",
        )
        .unwrap();
        let err = config.admin_socket().unwrap_err().to_string();
        assert!(err.contains("no `stats socket`"), "{err}");
        assert!(err.contains("hint: add `stats socket"), "{err}");
        let err = config.slots(&name("app")).unwrap_err().to_string();
        assert!(
            err.contains("backend app in haproxy.cfg has no `server-template`"),
            "{err}"
        );
        assert!(err.contains("hint: add `server-template"), "{err}");
        let err = config.slots(&name("web")).unwrap_err().to_string();
        assert!(err.contains("no backend web"), "{err}");
    }

    #[test]
    fn a_socket_without_admin_level_is_refused() {
        let config =
            HaproxyConfig::parse("h.cfg", "global\n  stats socket /s level operator\n").unwrap();
        let err = config.admin_socket().unwrap_err().to_string();
        assert!(
            err.contains("h.cfg:2") && err.contains("level admin"),
            "{err}"
        );
    }

    #[test]
    fn a_bad_template_count_names_its_line() {
        let err = HaproxyConfig::parse("h.cfg", "backend app\n  server-template s x 0.0.0.0:0\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("h.cfg:2"), "{err}");
        assert_eq!(template_range("3"), Some((1, 3)));
        assert_eq!(template_range("5-7"), Some((5, 7)));
        assert_eq!(template_range("7-5"), None);
        assert_eq!(template_range("0"), None);
    }
}
