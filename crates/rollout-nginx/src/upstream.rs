//! Reading and rewriting the `server` lines of an `upstream` block.
//!
//! This is the only part of the crate that changes a config, and it changes
//! as little as it can: the `server` lines it must touch, nothing else. A
//! kept server line stays byte for byte; a reweighted one is rewritten with
//! its other parameters as they were spelt; a removed one disappears with its
//! line (and a comment on that line); added lines copy the indentation of
//! the block's own server lines (or of its other lines, or the file's indent
//! unit) and the file's line ending. After every edit the file is parsed
//! again and the result checked against what was asked, so an edit never
//! returns a config this crate cannot read back.
//!
//! What nginx would refuse is refused here first, with the file and line:
//! `weight` below 1, `backup` in an upstream balanced by `hash`, `ip_hash`
//! or `random`, a set without a primary (non-backup) server, `resolve`
//! without a `zone` or without a `resolver`. Values cannot inject anything:
//! host names are letters, digits, `.`, `-` and `_` (or an IP address),
//! ports are numbers, weights are integers, and any other argument this
//! module writes is quoted when nginx's tokenizer would otherwise split it.
//!
//! # Example
//!
//! ```
//! use rollout_core::model::InstanceId;
//! use rollout_core::router::{Route, RouteChange, Target};
//! use rollout_nginx::upstream::Server;
//! use rollout_nginx::ConfFile;
//!
//! let src = b"http {\n    upstream app {\n        server app:8000;\n    }\n}\n";
//! let file = ConfFile::parse("nginx.conf", src.to_vec())?;
//!
//! // Read: the servers with their parameters, in order.
//! let up = file.upstream("app")?;
//! assert_eq!(up.servers[0].server.to_string(), "app:8000");
//! let port = up.servers[0].server.address.port().unwrap_or(80);
//!
//! // During a rollout: route to two containers by name, the service out.
//! let change = RouteChange {
//!     set: vec![
//!         Route { target: Target::instance(InstanceId::from("c1"), "app-1"), weight: 1 },
//!         Route { target: Target::instance(InstanceId::from("c2"), "app-2"), weight: 3 },
//!     ],
//!     remove: vec![Target::Service { name: "app".into() }],
//! };
//! let during = file.apply_route_change("app", &change, port)?;
//! assert_eq!(
//!     during.source(),
//!     b"http {\n    upstream app {\n        server app-1:8000;\n        server app-2:8000 weight=3;\n    }\n}\n"
//! );
//!
//! // At rest: the service again, as the operator wrote it.
//! let rest = during.set_servers("app", &[Server::parse("app:8000")?])?;
//! assert_eq!(rest.source(), &src[..]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use crate::error::ParseError;
use crate::tree::{ConfFile, Directive, Word};
use rollout_core::router::{RouteChange, Target};
use std::fmt;
use std::ops::Range;
use std::path::PathBuf;

/// Where a server sends requests.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Address {
    /// `host[:port]`, `ip[:port]` or `[ipv6]:port`.
    Inet {
        /// The host name or address (IPv6 without brackets).
        host: String,
        /// The port, when written (nginx's default is 80).
        port: Option<u16>,
    },
    /// `unix:/path`.
    Unix(String),
}

impl Address {
    /// A checked `host:port`: the host is a name of letters, digits, `.`,
    /// `-` and `_`, or an IPv4 or IPv6 address.
    ///
    /// # Errors
    /// [`EditError::InvalidHost`] for anything else.
    pub fn inet(host: &str, port: u16) -> Result<Address, EditError> {
        check_host(host)?;
        if port == 0 {
            return Err(EditError::InvalidPort { value: "0".into() });
        }
        Ok(Address::Inet {
            host: host.to_string(),
            port: Some(port),
        })
    }

    /// Reads an address as nginx writes it (`app:8000`, `[::1]:80`,
    /// `unix:/run/app.sock`, `app`), checking the host and port.
    ///
    /// # Errors
    /// [`EditError::InvalidHost`] or [`EditError::InvalidPort`].
    pub fn parse(s: &str) -> Result<Address, EditError> {
        let a = Address::read(s);
        match &a {
            Address::Inet { host, .. } => check_host(host)?,
            Address::Unix(path) => {
                if path.is_empty() || path.bytes().any(|b| b.is_ascii_whitespace() || b == b';') {
                    return Err(EditError::InvalidHost { host: s.into() });
                }
            }
        }
        if let Address::Inet { port: None, .. } = a {
            // `host:abc` reads as a host containing ':' and fails above;
            // nothing else to check.
        }
        Ok(a)
    }

    /// Reads without checking (for lines already in a config).
    fn read(s: &str) -> Address {
        if let Some(path) = s.strip_prefix("unix:") {
            return Address::Unix(path.to_string());
        }
        if let Some(rest) = s.strip_prefix('[') {
            if let Some((v6, tail)) = rest.split_once(']') {
                let port = tail.strip_prefix(':').and_then(|p| p.parse().ok());
                return Address::Inet {
                    host: v6.to_string(),
                    port,
                };
            }
        }
        match s.rsplit_once(':') {
            Some((h, p))
                if !h.contains(':') && !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) =>
            {
                match p.parse::<u16>() {
                    Ok(port) => Address::Inet {
                        host: h.to_string(),
                        port: Some(port),
                    },
                    Err(_) => Address::Inet {
                        host: s.to_string(),
                        port: None,
                    },
                }
            }
            _ => Address::Inet {
                host: s.to_string(),
                port: None,
            },
        }
    }

    /// The host, for an inet address.
    pub fn host(&self) -> Option<&str> {
        match self {
            Address::Inet { host, .. } => Some(host),
            Address::Unix(_) => None,
        }
    }

    /// The port as written, for an inet address.
    pub fn port(&self) -> Option<u16> {
        match self {
            Address::Inet { port, .. } => *port,
            Address::Unix(_) => None,
        }
    }

    /// Whether this address is `host:port` (an absent port is 80, host names
    /// compare without case).
    pub fn is(&self, host: &str, port: u16) -> bool {
        match self {
            Address::Inet { host: h, port: p } => {
                h.eq_ignore_ascii_case(host) && p.unwrap_or(80) == port
            }
            Address::Unix(_) => false,
        }
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Address::Inet { host, port } => {
                if host.contains(':') {
                    write!(f, "[{host}]")?;
                } else {
                    f.write_str(host)?;
                }
                if let Some(p) = port {
                    write!(f, ":{p}")?;
                }
                Ok(())
            }
            Address::Unix(p) => write!(f, "unix:{p}"),
        }
    }
}

fn check_host(host: &str) -> Result<(), EditError> {
    let ok = if host.contains(':') {
        host.parse::<std::net::Ipv6Addr>().is_ok()
    } else {
        !host.is_empty()
            && host.len() <= 253
            && !host.starts_with(['-', '.'])
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
    };
    if ok {
        Ok(())
    } else {
        Err(EditError::InvalidHost { host: host.into() })
    }
}

/// A parameter of a `server` line, in the order written.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Param {
    /// `weight=N` (nginx: at least 1).
    Weight(u32),
    /// `max_fails=N`.
    MaxFails(u32),
    /// `fail_timeout=TIME`.
    FailTimeout(String),
    /// `max_conns=N`.
    MaxConns(u32),
    /// `backup`.
    Backup,
    /// `down`.
    Down,
    /// `resolve` (needs a `zone` and a `resolver`).
    Resolve,
    /// `service=NAME` (SRV lookups, with `resolve`).
    Service(String),
    /// `slow_start=TIME` (NGINX Plus).
    SlowStart(String),
    /// Anything else, kept verbatim as the value nginx read.
    Other(String),
}

impl Param {
    /// Reads one parameter as nginx stores it (after quote removal).
    pub fn read(s: &str) -> Param {
        let num = |v: &str| -> Option<u32> {
            (!v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
                .then(|| v.parse().ok())
                .flatten()
        };
        let (k, v) = match s.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (s, None),
        };
        let p = match (k, v) {
            ("weight", Some(v)) => num(v).map(Param::Weight),
            ("max_fails", Some(v)) => num(v).map(Param::MaxFails),
            ("max_conns", Some(v)) => num(v).map(Param::MaxConns),
            ("fail_timeout", Some(v)) => Some(Param::FailTimeout(v.into())),
            ("slow_start", Some(v)) => Some(Param::SlowStart(v.into())),
            ("service", Some(v)) => Some(Param::Service(v.into())),
            ("backup", None) => Some(Param::Backup),
            ("down", None) => Some(Param::Down),
            ("resolve", None) => Some(Param::Resolve),
            _ => None,
        };
        p.unwrap_or_else(|| Param::Other(s.to_string()))
    }
}

impl fmt::Display for Param {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Param::Weight(n) => write!(f, "weight={n}"),
            Param::MaxFails(n) => write!(f, "max_fails={n}"),
            Param::FailTimeout(t) => write!(f, "fail_timeout={t}"),
            Param::MaxConns(n) => write!(f, "max_conns={n}"),
            Param::Backup => f.write_str("backup"),
            Param::Down => f.write_str("down"),
            Param::Resolve => f.write_str("resolve"),
            Param::Service(s) => write!(f, "service={s}"),
            Param::SlowStart(t) => write!(f, "slow_start={t}"),
            Param::Other(s) => f.write_str(s),
        }
    }
}

/// A `server` line's meaning: where, and how.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Server {
    /// Where.
    pub address: Address,
    /// Its parameters, in order.
    pub params: Vec<Param>,
}

impl Server {
    /// A server with no parameters.
    pub fn new(address: Address) -> Server {
        Server {
            address,
            params: Vec::new(),
        }
    }

    /// Reads `ADDRESS [PARAM...]` as in a server line without `server` and
    /// `;` (`"app:8000 weight=2 backup"`), checking the address.
    ///
    /// # Errors
    /// [`EditError::InvalidHost`] or [`EditError::InvalidPort`].
    pub fn parse(s: &str) -> Result<Server, EditError> {
        let mut parts = s.split_ascii_whitespace();
        let addr = parts
            .next()
            .ok_or(EditError::InvalidHost { host: s.into() })?;
        Ok(Server {
            address: Address::parse(addr)?,
            params: parts.map(Param::read).collect(),
        })
    }

    /// Its weight (1 when not written).
    pub fn weight(&self) -> u32 {
        self.params
            .iter()
            .find_map(|p| match p {
                Param::Weight(w) => Some(*w),
                _ => None,
            })
            .unwrap_or(1)
    }

    /// Sets `weight=N`, in place of the current one or appended. A weight of
    /// 1 (nginx's default) is left as it is when it is what the line says
    /// already, written or not, and otherwise written by dropping the
    /// `weight` parameter: a server reweighted back to 1 reads as the
    /// operator wrote it before (`server green:8000;`), not `weight=1`.
    pub fn set_weight(&mut self, weight: u32) {
        if weight == 1 {
            self.params
                .retain(|p| !matches!(p, Param::Weight(w) if *w != 1));
        } else if let Some(p) = self
            .params
            .iter_mut()
            .find(|p| matches!(p, Param::Weight(_)))
        {
            *p = Param::Weight(weight);
        } else {
            self.params.push(Param::Weight(weight));
        }
    }

    /// Whether it is marked `backup`.
    pub fn is_backup(&self) -> bool {
        self.params.contains(&Param::Backup)
    }

    /// Whether it is marked `down`.
    pub fn is_down(&self) -> bool {
        self.params.contains(&Param::Down)
    }

    /// Marks it `down` or not.
    pub fn set_down(&mut self, down: bool) {
        self.set_flag(Param::Down, down);
    }

    /// Marks it `backup` or not.
    pub fn set_backup(&mut self, backup: bool) {
        self.set_flag(Param::Backup, backup);
    }

    fn set_flag(&mut self, flag: Param, on: bool) {
        let has = self.params.contains(&flag);
        if on && !has {
            self.params.push(flag);
        } else if !on {
            self.params.retain(|p| *p != flag);
        }
    }

    /// The arguments of its `server` line, quoted where needed.
    fn args(&self) -> Vec<String> {
        std::iter::once(self.address.to_string())
            .chain(self.params.iter().map(|p| p.to_string()))
            .map(|a| quote_arg(&a))
            .collect()
    }
}

impl fmt::Display for Server {
    /// `ADDRESS PARAM...` as in the server line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.args().join(" "))
    }
}

/// A server as found in a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerLine {
    /// What it says.
    pub server: Server,
    /// 1-based line of `server`.
    pub line: u32,
    /// 1-based byte column of `server`.
    pub column: u32,
}

/// An `upstream` block as read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upstream {
    /// Its name.
    pub name: String,
    /// The file it is in.
    pub file: PathBuf,
    /// 1-based line of `upstream`.
    pub line: u32,
    /// The balancing directive, if any (`hash`, `ip_hash`, `random`,
    /// `least_conn`, ...).
    pub balancer: Option<String>,
    /// Whether it has a `zone`.
    pub zone: bool,
    /// Whether a `resolver` is in the block or in an enclosing one of this
    /// file; `None` when the upstream is not inside an `http` or `stream`
    /// block of this file (so the resolver may be elsewhere).
    pub resolver: Option<bool>,
    /// Its servers, in order.
    pub servers: Vec<ServerLine>,
}

impl Upstream {
    /// The servers, without positions.
    pub fn server_set(&self) -> Vec<Server> {
        self.servers.iter().map(|s| s.server.clone()).collect()
    }
}

/// Why an upstream could not be read or edited. Nothing was changed.
#[derive(Debug, thiserror::Error)]
pub enum EditError {
    /// No upstream of that name.
    #[error("no upstream {name:?} in {}\nhint: the name is the one after `upstream` in the nginx config", files.iter().map(|f| f.display().to_string()).collect::<Vec<_>>().join(", "))]
    NotFound {
        /// The name looked for.
        name: String,
        /// The files searched.
        files: Vec<PathBuf>,
    },
    /// Two upstreams of that name (nginx: `duplicate upstream`).
    #[error("{}:{line}: duplicate upstream {name:?} (first at {}:{first_line})", file.display(), first_file.display())]
    Duplicate {
        /// The name.
        name: String,
        /// The first.
        first_file: PathBuf,
        /// Its line.
        first_line: u32,
        /// The second.
        file: PathBuf,
        /// Its line.
        line: u32,
    },
    /// A host that is not a plain name or IP address.
    #[error(
        "invalid host {host:?}: a host is letters, digits, '.', '-' and '_', or an IP address"
    )]
    InvalidHost {
        /// What was given.
        host: String,
    },
    /// A port that is not 1 to 65535.
    #[error("invalid port {value:?}: a port is a number from 1 to 65535")]
    InvalidPort {
        /// What was given.
        value: String,
    },
    /// A `server` line nginx would refuse.
    #[error("{}:{line}: upstream {upstream:?}: server {server}: {reason}", file.display())]
    Refused {
        /// The upstream.
        upstream: String,
        /// Its file.
        file: PathBuf,
        /// The upstream's line.
        line: u32,
        /// The offending server (its line's arguments).
        server: String,
        /// nginx's objection.
        reason: String,
    },
    /// The set would leave no server that takes traffic.
    #[error("{}:{line}: upstream {upstream:?} would have no primary server (nginx: no servers in upstream)\nhint: keep one server without `backup`, or mark it `down` instead of removing it", file.display())]
    NoPrimary {
        /// The upstream.
        upstream: String,
        /// Its file.
        file: PathBuf,
        /// The upstream's line.
        line: u32,
    },
    /// The file has no place to put a new upstream, or the upstream exists.
    #[error("{}: cannot create upstream {name:?}: {reason}", file.display())]
    Create {
        /// The name.
        name: String,
        /// The file.
        file: PathBuf,
        /// Why.
        reason: String,
    },
    /// The edited file did not read back as asked (a bug of this crate).
    #[error("the edited {} does not read back as intended: {detail}", file.display())]
    Internal {
        /// The file.
        file: PathBuf,
        /// What differed.
        detail: String,
    },
    /// The edited file did not parse (a bug of this crate).
    #[error("the edited file does not parse: {0}")]
    Reparse(#[from] ParseError),
}

/// Quotes `s` for nginx when its tokenizer would not read it back as one
/// word with this value.
pub fn quote_arg(s: &str) -> String {
    let plain = !s.is_empty()
        && !s.starts_with(['"', '\''])
        && !s.bytes().any(|b| {
            b.is_ascii_whitespace()
                || b.is_ascii_control()
                || matches!(b, b';' | b'{' | b'}' | b'#' | b'\\' | b'"' | b'\'' | b'$')
        });
    if plain {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

const BACKUP_REFUSED: &[&str] = &["hash", "ip_hash", "random"];

impl ConfFile {
    /// Finds the upstream `name` in this file.
    ///
    /// # Errors
    /// [`EditError::NotFound`], [`EditError::Duplicate`].
    pub fn upstream(&self, name: &str) -> Result<Upstream, EditError> {
        let d = self.find_upstream(name)?;
        Ok(self.read_upstream(&d.0, d.1))
    }

    /// The names of the upstream blocks of this file, in order.
    pub fn upstream_names(&self) -> Vec<String> {
        self.walk()
            .into_iter()
            .filter(|(_, d)| is_upstream(d))
            .filter_map(|(_, d)| d.args().next().map(|a| a.value_lossy()))
            .collect()
    }

    #[allow(clippy::type_complexity)]
    fn find_upstream(&self, name: &str) -> Result<(Vec<Directive<'_>>, Directive<'_>), EditError> {
        let mut found: Option<(Vec<Directive<'_>>, Directive<'_>)> = None;
        for (parents, d) in self.walk() {
            if !is_upstream(&d)
                || d.args().next().map(|a| a.value()).as_deref() != Some(name.as_bytes())
            {
                continue;
            }
            if let Some((_, first)) = &found {
                return Err(EditError::Duplicate {
                    name: name.into(),
                    first_file: self.path.clone(),
                    first_line: first.line(),
                    file: self.path.clone(),
                    line: d.line(),
                });
            }
            found = Some((parents, d));
        }
        found.ok_or_else(|| EditError::NotFound {
            name: name.into(),
            files: vec![self.path.clone()],
        })
    }

    fn read_upstream(&self, parents: &[Directive<'_>], d: Directive<'_>) -> Upstream {
        let block = d.block().expect("an upstream has a block");
        let mut balancer = None;
        let mut zone = false;
        let mut resolver = false;
        let mut servers = Vec::new();
        for c in block.directives() {
            match c.name().value().as_ref() {
                b"server" => servers.push(ServerLine {
                    server: server_of(&c),
                    line: c.line(),
                    column: c.column(),
                }),
                b"zone" => zone = true,
                b"resolver" => resolver = true,
                b"hash" | b"ip_hash" | b"random" | b"least_conn" | b"least_time" | b"sticky"
                | b"ntlm" => balancer = Some(c.name().value_lossy()),
                _ => {}
            }
        }
        let in_context = parents
            .iter()
            .any(|p| matches!(p.name().value().as_ref(), b"http" | b"stream"));
        let resolver = if resolver {
            Some(true)
        } else if in_context {
            Some(parents.iter().any(|p| {
                p.block().is_some_and(|b| {
                    b.directives()
                        .any(|x| x.name().value().as_ref() == b"resolver")
                })
            }))
        } else {
            None
        };
        Upstream {
            name: d.args().next().map(|a| a.value_lossy()).unwrap_or_default(),
            file: self.path.clone(),
            line: d.line(),
            balancer,
            zone,
            resolver,
            servers,
        }
    }

    /// Makes the servers of upstream `name` exactly `servers`, in that order
    /// where new, changing only the lines that differ.
    ///
    /// Existing lines are matched by address (in order, for repeated
    /// addresses): a match with the same parameters stays byte for byte, a
    /// match with other parameters is rewritten in place, an unmatched line
    /// is removed, and the servers left over are added after the last kept
    /// server line (or where the first removed one was).
    ///
    /// # Errors
    /// The upstream is missing or duplicated, or nginx would refuse the set.
    pub fn set_servers(&self, name: &str, servers: &[Server]) -> Result<ConfFile, EditError> {
        self.set_servers_with(name, servers, None)
    }

    /// [`ConfFile::set_servers`], with what the whole config says about a
    /// `resolver` when this file does not enclose the upstream in `http`.
    pub(crate) fn set_servers_with(
        &self,
        name: &str,
        servers: &[Server],
        resolver: Option<bool>,
    ) -> Result<ConfFile, EditError> {
        let (parents, d) = self.find_upstream(name)?;
        let mut up = self.read_upstream(&parents, d);
        if up.resolver.is_none() {
            up.resolver = resolver;
        }
        validate(&up, servers)?;
        let block = d.block().expect("an upstream has a block");
        let lines: Vec<Directive<'_>> = block
            .directives()
            .filter(|c| c.name().value().as_ref() == b"server")
            .collect();
        // Match wanted servers to existing lines by address, in order.
        let mut taken = vec![false; servers.len()];
        let mut plan: Vec<(Directive<'_>, Option<&Server>)> = Vec::new();
        for (line, current) in lines.iter().zip(&up.servers) {
            let m = servers
                .iter()
                .enumerate()
                .find(|(i, s)| !taken[*i] && s.address == current.server.address)
                .map(|(i, s)| {
                    taken[i] = true;
                    s
                });
            plan.push((*line, m));
        }
        let added: Vec<&Server> = servers
            .iter()
            .zip(&taken)
            .filter(|(_, t)| !**t)
            .map(|(s, _)| s)
            .collect();

        let eol = line_ending(&self.src);
        let indent = self.child_indent(&d, &lines);
        let mut splices: Vec<(Range<usize>, Vec<u8>)> = Vec::new();
        let mut added_text = Vec::new();
        for s in &added {
            added_text.extend_from_slice(indent.as_bytes());
            added_text.extend_from_slice(server_line(s).as_bytes());
            added_text.extend_from_slice(eol.as_bytes());
        }
        let last_kept = plan
            .iter()
            .rev()
            .find(|(_, m)| m.is_some())
            .map(|(l, _)| *l);
        let mut inserted = added.is_empty();
        if let Some(anchor) = last_kept {
            let end = anchor.span().end;
            let line_end = self.line_rest(end);
            if let Some(after) = line_end {
                splices.push((after..after, added_text.clone()));
            } else {
                let inline: Vec<u8> = added
                    .iter()
                    .flat_map(|s| format!(" {}", server_line(s)).into_bytes())
                    .collect();
                splices.push((end..end, inline));
            }
            inserted = true;
        }
        for (line, m) in &plan {
            match m {
                Some(s) if **s == server_of(line) => {}
                Some(s) => {
                    let span = line.span();
                    let mut text = b"server".to_vec();
                    let old: Vec<Word<'_>> = line.args().collect();
                    let old_params: Vec<(Param, &[u8])> = old[1..]
                        .iter()
                        .map(|w| (Param::read(&w.value_lossy()), w.raw()))
                        .collect();
                    text.push(b' ');
                    if s.address == Address::read(&old[0].value_lossy()) {
                        text.extend_from_slice(old[0].raw());
                    } else {
                        text.extend_from_slice(quote_arg(&s.address.to_string()).as_bytes());
                    }
                    for p in &s.params {
                        text.push(b' ');
                        match old_params.iter().find(|(op, _)| op == p) {
                            Some((_, raw)) => text.extend_from_slice(raw),
                            None => text.extend_from_slice(quote_arg(&p.to_string()).as_bytes()),
                        }
                    }
                    text.push(b';');
                    splices.push((span, text));
                }
                None => {
                    let range = self.line_removal(line.span());
                    if !inserted {
                        // The first removed line makes room for the new ones.
                        let whole_line = range.start == 0 || self.src[range.start - 1] == b'\n';
                        let text = if whole_line {
                            added_text.clone()
                        } else {
                            added
                                .iter()
                                .flat_map(|s| format!(" {}", server_line(s)).into_bytes())
                                .collect()
                        };
                        splices.push((range, text));
                        inserted = true;
                    } else {
                        splices.push((range, Vec::new()));
                    }
                }
            }
        }
        if !inserted {
            // No server lines at all: before the closing brace.
            let close = d.span().end - 1;
            let ls = line_start(&self.src, close);
            if self.src[ls..close]
                .iter()
                .all(|b| matches!(b, b' ' | b'\t'))
            {
                splices.push((ls..ls, added_text));
            } else {
                let mut t = eol.as_bytes().to_vec();
                t.extend_from_slice(&added_text);
                t.extend_from_slice(indent_of(&self.src, d.span().start).as_bytes());
                splices.push((close..close, t));
            }
        }
        let out = self.splice(splices)?;
        let check = out.upstream(name)?;
        let got = check.server_set();
        let mut want_sorted: Vec<String> = servers.iter().map(|s| s.to_string()).collect();
        let mut got_sorted: Vec<String> = got.iter().map(|s| s.to_string()).collect();
        want_sorted.sort();
        got_sorted.sort();
        if want_sorted != got_sorted {
            return Err(EditError::Internal {
                file: self.path.clone(),
                detail: format!("wanted {want_sorted:?}, got {got_sorted:?}"),
            });
        }
        Ok(out)
    }

    /// Applies a router change to upstream `name`: `set` adds `host:port`
    /// servers or sets the weight of those present (and clears their `down`),
    /// `remove` takes out the servers of those hosts on that port.
    ///
    /// # Errors
    /// As [`ConfFile::set_servers`], and [`EditError::InvalidHost`] for a
    /// target host that is not a plain name or address.
    pub fn apply_route_change(
        &self,
        name: &str,
        change: &RouteChange,
        port: u16,
    ) -> Result<ConfFile, EditError> {
        self.apply_route_change_with(name, change, port, None)
    }

    pub(crate) fn apply_route_change_with(
        &self,
        name: &str,
        change: &RouteChange,
        port: u16,
        resolver: Option<bool>,
    ) -> Result<ConfFile, EditError> {
        let up = self.upstream(name)?;
        let mut servers = up.server_set();
        let removes = |s: &Server, t: &Target| s.address.is(t.host(), port);
        servers.retain(|s| !change.remove.iter().any(|t| removes(s, t)));
        for route in &change.set {
            if route.weight == 0 {
                return Err(EditError::Refused {
                    upstream: name.into(),
                    file: self.path.clone(),
                    line: up.line,
                    server: format!("{}:{port}", route.target.host()),
                    reason: "invalid parameter \"weight=0\"".into(),
                });
            }
            let address = Address::inet(route.target.host(), port)?;
            let mut found = false;
            for s in servers
                .iter_mut()
                .filter(|s| s.address.is(route.target.host(), port))
            {
                s.set_weight(route.weight);
                s.set_down(false);
                found = true;
            }
            if !found {
                let mut s = Server::new(address);
                s.set_weight(route.weight);
                servers.push(s);
            }
        }
        self.set_servers_with(name, &servers, resolver)
    }

    /// Adds `upstream NAME { server ...; }` to this file: inside its `http`
    /// block (before the first `server` block there), or at the end of the
    /// file when it has no `http` block (a file included inside one).
    ///
    /// # Errors
    /// [`EditError::Create`] when the name exists or is not a plain name,
    /// and what nginx would refuse in `servers`.
    pub fn create_upstream(&self, name: &str, servers: &[Server]) -> Result<ConfFile, EditError> {
        let create = |reason: &str| EditError::Create {
            name: name.into(),
            file: self.path.clone(),
            reason: reason.into(),
        };
        if self.find_upstream(name).is_ok() {
            return Err(create("it exists"));
        }
        if name.is_empty()
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
        {
            return Err(create("a name is letters, digits, '.', '-' and '_'"));
        }
        let probe = Upstream {
            name: name.into(),
            file: self.path.clone(),
            line: 0,
            balancer: None,
            zone: false,
            resolver: None,
            servers: Vec::new(),
        };
        validate(&probe, servers)?;
        let eol = line_ending(&self.src);
        let unit = indent_unit(&self.src);
        let http = self
            .items()
            .directives()
            .find(|d| d.name().value().as_ref() == b"http" && d.block().is_some());
        let (at, base) = match http {
            Some(h) => {
                let base = format!("{}{unit}", indent_of(&self.src, h.span().start));
                let block = h.block().expect("checked");
                let first_server = block
                    .directives()
                    .find(|d| d.name().value().as_ref() == b"server" && d.block().is_some());
                match first_server {
                    Some(s) => (line_start(&self.src, s.span().start), base),
                    None => (line_start(&self.src, h.span().end - 1), base),
                }
            }
            None => (self.src.len(), String::new()),
        };
        let mut text = String::new();
        if at == self.src.len() && !self.src.is_empty() && !self.src.ends_with(b"\n") {
            text.push_str(eol);
        }
        text.push_str(&format!("{base}upstream {name} {{{eol}"));
        for s in servers {
            text.push_str(&format!("{base}{unit}{}{eol}", server_line(s)));
        }
        text.push_str(&format!("{base}}}{eol}"));
        if http.is_some() {
            text.push_str(eol);
        }
        let out = self.splice(vec![(at..at, text.into_bytes())])?;
        out.upstream(name)?;
        Ok(out)
    }

    pub(crate) fn splice(
        &self,
        mut splices: Vec<(Range<usize>, Vec<u8>)>,
    ) -> Result<ConfFile, EditError> {
        splices.sort_by_key(|(r, _)| (r.start, r.end));
        let mut out = Vec::with_capacity(self.src.len() + 256);
        let mut at = 0;
        for (r, text) in splices {
            if r.start < at {
                return Err(EditError::Internal {
                    file: self.path.clone(),
                    detail: "overlapping edits".into(),
                });
            }
            out.extend_from_slice(&self.src[at..r.start]);
            out.extend_from_slice(&text);
            at = r.end;
        }
        out.extend_from_slice(&self.src[at..]);
        Ok(ConfFile::parse(self.path.clone(), out)?)
    }

    /// The indentation for a server line in upstream `d`.
    fn child_indent(&self, d: &Directive<'_>, servers: &[Directive<'_>]) -> String {
        let own_line = |c: &Directive<'_>| {
            let s = c.span().start;
            self.src[line_start(&self.src, s)..s]
                .iter()
                .all(|b| matches!(b, b' ' | b'\t'))
        };
        if let Some(s) = servers.iter().find(|s| own_line(s)) {
            return indent_of(&self.src, s.span().start);
        }
        let block = d.block().expect("an upstream has a block");
        if let Some(c) = block.directives().find(|c| own_line(c)) {
            return indent_of(&self.src, c.span().start);
        }
        format!(
            "{}{}",
            indent_of(&self.src, d.span().start),
            indent_unit(&self.src)
        )
    }

    /// If only spaces, tabs and a comment follow `end` on its line, the
    /// offset just after that line's LF (or the end of the file).
    pub(crate) fn line_rest(&self, end: usize) -> Option<usize> {
        let mut i = end;
        while i < self.src.len() && matches!(self.src[i], b' ' | b'\t' | b'\r') {
            i += 1;
        }
        if i < self.src.len() && self.src[i] == b'#' {
            i = memchr::memchr(b'\n', &self.src[i..]).map_or(self.src.len(), |p| i + p);
        }
        match self.src.get(i) {
            None => Some(i),
            Some(b'\n') => Some(i + 1),
            _ => None,
        }
    }

    /// The bytes to delete to remove a directive: its whole line when it is
    /// alone on it (a comment after it included), else the directive and
    /// the blanks before it.
    pub(crate) fn line_removal(&self, span: Range<usize>) -> Range<usize> {
        let ls = line_start(&self.src, span.start);
        let alone_before = self.src[ls..span.start]
            .iter()
            .all(|b| matches!(b, b' ' | b'\t'));
        match self.line_rest(span.end) {
            Some(after) if alone_before => ls..after,
            _ => {
                let mut s = span.start;
                while s > 0 && matches!(self.src[s - 1], b' ' | b'\t') {
                    s -= 1;
                }
                s..span.end
            }
        }
    }
}

fn is_upstream(d: &Directive<'_>) -> bool {
    d.name().value().as_ref() == b"upstream" && d.block().is_some()
}

fn server_of(d: &Directive<'_>) -> Server {
    let mut args = d.args();
    let address = args.next().map(|a| Address::read(&a.value_lossy()));
    Server {
        address: address.unwrap_or(Address::Inet {
            host: String::new(),
            port: None,
        }),
        params: args.map(|a| Param::read(&a.value_lossy())).collect(),
    }
}

fn server_line(s: &Server) -> String {
    format!("server {s};")
}

/// Refuses what nginx would refuse in upstream `up` with servers `servers`.
fn validate(up: &Upstream, servers: &[Server]) -> Result<(), EditError> {
    let refuse = |s: &Server, reason: String| EditError::Refused {
        upstream: up.name.clone(),
        file: up.file.clone(),
        line: up.line,
        server: s.to_string(),
        reason,
    };
    for s in servers {
        match &s.address {
            Address::Inet { host, port } => {
                check_host(host)?;
                if *port == Some(0) {
                    return Err(EditError::InvalidPort { value: "0".into() });
                }
            }
            Address::Unix(p) if p.is_empty() => {
                return Err(refuse(s, "invalid address \"unix:\"".into()))
            }
            Address::Unix(_) => {}
        }
        for p in &s.params {
            match p {
                Param::Weight(0) => return Err(refuse(s, "invalid parameter \"weight=0\"".into())),
                Param::Backup => {
                    if let Some(b) = up
                        .balancer
                        .as_deref()
                        .filter(|b| BACKUP_REFUSED.contains(b))
                    {
                        return Err(refuse(
                            s,
                            format!(
                                "balancing method does not support parameter \"backup\" (the upstream uses {b})"
                            ),
                        ));
                    }
                }
                Param::Resolve => {
                    if !up.zone {
                        return Err(refuse(
                            s,
                            "resolving names at run time requires upstream in shared memory (add a `zone`)"
                                .into(),
                        ));
                    }
                    if up.resolver == Some(false) {
                        return Err(refuse(
                            s,
                            "no resolver defined to resolve names at run time (add a `resolver`)"
                                .into(),
                        ));
                    }
                }
                Param::FailTimeout(t) | Param::SlowStart(t) if !is_time(t) => {
                    return Err(refuse(s, format!("invalid parameter \"{p}\"")));
                }
                Param::Service(n) if check_host(n).is_err() => {
                    return Err(refuse(s, format!("invalid parameter \"{p}\"")));
                }
                _ => {}
            }
        }
    }
    if !servers.iter().any(|s| !s.is_backup()) {
        return Err(EditError::NoPrimary {
            upstream: up.name.clone(),
            file: up.file.clone(),
            line: up.line,
        });
    }
    Ok(())
}

/// nginx's time syntax: `30s`, `1m30s`, `500ms`, `10`.
fn is_time(t: &str) -> bool {
    let b = t.as_bytes();
    if b.is_empty() {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i == start {
            return false;
        }
        let unit_start = i;
        while i < b.len() && b[i].is_ascii_alphabetic() {
            i += 1;
        }
        if !matches!(
            &t[unit_start..i],
            "" | "ms" | "s" | "m" | "h" | "d" | "w" | "M" | "y"
        ) {
            return false;
        }
    }
    true
}

pub(crate) fn line_start(src: &[u8], at: usize) -> usize {
    memchr::memrchr(b'\n', &src[..at]).map_or(0, |p| p + 1)
}

pub(crate) fn indent_of(src: &[u8], at: usize) -> String {
    let ls = line_start(src, at);
    let n = src[ls..at]
        .iter()
        .take_while(|b| matches!(b, b' ' | b'\t'))
        .count();
    String::from_utf8_lossy(&src[ls..ls + n]).into_owned()
}

/// `"\r\n"` when the file's first line ends so, else `"\n"`.
pub(crate) fn line_ending(src: &[u8]) -> &'static str {
    match memchr::memchr(b'\n', src) {
        Some(p) if p > 0 && src[p - 1] == b'\r' => "\r\n",
        _ => "\n",
    }
}

/// The file's indent unit: a tab, or the smallest run of leading spaces.
pub(crate) fn indent_unit(src: &[u8]) -> String {
    let mut best: Option<usize> = None;
    for line in src.split(|&b| b == b'\n') {
        match line.first() {
            Some(b'\t') => return "\t".into(),
            Some(b' ') => {
                let n = line.iter().take_while(|&&b| b == b' ').count();
                if n < line.len() && best.is_none_or(|b| n < b) {
                    best = Some(n);
                }
            }
            _ => {}
        }
    }
    " ".repeat(best.unwrap_or(4))
}
