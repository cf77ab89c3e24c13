//! The drain per removed instance: the old workers' connections, read from
//! the proxy's own tables, instead of waiting for the workers to exit.
//!
//! An old worker exits only when its last request ends, including its slow
//! requests to instances that stay: waiting for it holds the removed
//! instance's stop (and, with stop-first, the next launch) for as long as
//! the slowest of them. What the drain needs is narrower: that nothing in
//! flight can still reach the removed instance. This room proves it from
//! the proxy's network namespace, in rounds, and says when it cannot:
//!
//! 1. **No live connection to the removed instance.** No socket in the
//!    proxy's `/proc/net/tcp` and `tcp6` that the proxy still holds
//!    (established, connecting, or closed by the peer only) goes to one of
//!    its addresses. The new workers' config does not name it, so any such
//!    socket is an old worker's, whoever holds it.
//! 2. **No request of an old worker still to be sent.** A request whose
//!    upstream is not chosen yet (its header or body still being read, as
//!    `proxy_request_buffering on` does) may pick the removed instance,
//!    which the old workers' config still names. Each old worker's open
//!    sockets are listed (`/proc/PID/fd`, readable only by the worker's own
//!    user: the command runs as that user) and must hold no more client
//!    connections (on a port some socket listens on) than upstream ones.
//!    A request has at most one upstream connection at a time unless the
//!    config sends subrequests beside it or keeps idle upstream connections
//!    ([`screen`] refuses those), so equal counts mean that every client
//!    connection has its request's upstream connection.
//!
//! When a worker's files cannot be listed, the config fails the screen, or
//! an address of the removed instance is unknown, the drain waits for the
//! workers to exit (`drain.rs`), as before.
//!
//! What stays outside the proof: a request whose upstream fails after the
//! proof, retried by its old worker (`proxy_next_upstream`) to the removed
//! instance once it is stopped, gets "connection refused" or "no route"
//! there and goes on to the next server; and a pipelined HTTP/1.1 request
//! read behind one in flight (rare in practice: browsers do not pipeline).

use super::procs::Proc;
use super::NginxRouter;
use crate::tree::ConfFile;
use rollout_core::router::Target;
use std::collections::{BTreeSet, HashSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// How a replica's old workers are waited for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Mode {
    /// By their connections, read as this user (`UID:GID`).
    Connections(String),
    /// Until they exit, and why not by their connections.
    Exit(String),
}

impl NginxRouter {
    /// The addresses of every target `removed` names; `None` when one is
    /// not known (a service name, a host the proxy's engine cannot find).
    pub(super) async fn removed_addresses(&self, removed: &[Target]) -> Option<HashSet<IpAddr>> {
        let mut all = HashSet::new();
        for target in removed {
            let Target::Instance { host, .. } = target else {
                return None;
            };
            if let Ok(ip) = host.parse::<IpAddr>() {
                all.insert(ip);
                continue;
            }
            // Every replica's engine is asked and every answer kept (a
            // swarm's proxies run on several engines): a superset only
            // makes the drain wait longer.
            let mut found = false;
            for replica in &self.replicas {
                if let Some(ips) = replica.proxy.exec.addresses_of(host).await {
                    found = true;
                    all.extend(ips);
                }
            }
            if !found {
                return None;
            }
        }
        Some(all)
    }

    /// How replica `index`'s old workers `procs` are waited for: decided
    /// once per run and replica (the config is screened with `nginx -T`,
    /// the workers' user read from their status).
    pub(super) async fn mode(&self, index: usize, procs: &[Proc]) -> Mode {
        if let Some(mode) = self.state.lock().await.modes.get(&index) {
            return mode.clone();
        }
        let replica = &self.replicas[index];
        let dump = self
            .run(replica, &self.nginx_argv(replica, &["-T", "-q"]))
            .await;
        let screened = match dump {
            Ok(out) if out.success() => screen(&out.stdout),
            Ok(out) => Err(format!("nginx -T failed: {}", out.message())),
            Err(e) => Err(e.to_string()),
        };
        let mode = match screened {
            Err(why) => Mode::Exit(why),
            Ok(()) => {
                let mut argv: Vec<String> = ["sh", "-c", OWNER_SCRIPT, "sh"]
                    .iter()
                    .map(|s| s.to_string())
                    .collect();
                argv.extend(procs.iter().map(Proc::arg));
                match self.run(replica, &argv).await {
                    Ok(out) => {
                        let user = String::from_utf8_lossy(&out.stdout).trim().to_string();
                        let numeric =
                            |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
                        match user.split_once(':') {
                            Some((u, g)) if numeric(u) && numeric(g) => Mode::Connections(user),
                            // Every worker gone already: decided next time.
                            _ if user.is_empty() => return Mode::Exit(String::new()),
                            _ => Mode::Exit(format!("the workers' user reads {user:?}")),
                        }
                    }
                    Err(e) => Mode::Exit(e.to_string()),
                }
            }
        };
        self.state.lock().await.modes.insert(index, mode.clone());
        mode
    }

    /// One look at replica `index`'s old workers `procs` through their
    /// connections: those not yet clear of `removed`, or `None` when the
    /// look cannot prove anything (the replica then waits for exits, for
    /// the rest of the run).
    pub(super) async fn look(
        &self,
        index: usize,
        user: &str,
        procs: &[Proc],
        removed: &HashSet<IpAddr>,
    ) -> Option<Vec<Proc>> {
        let replica = &self.replicas[index];
        let mut argv: Vec<String> = ["sh", "-c", CONN_SCRIPT, "sh"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        argv.extend(procs.iter().map(Proc::arg));
        let out = match replica.proxy.exec.exec_as(user, &argv).await {
            Ok(out) if out.success() => out,
            Ok(out) => return self.give_up(index, out.message()).await,
            Err(e) => return self.give_up(index, e.to_string()).await,
        };
        let look = parse(&out.stdout);
        let held = holding(&look, removed);
        if held.iter().any(|(_, why)| why.contains("cannot be read")) {
            return self
                .give_up(index, "the workers' files cannot be listed".to_string())
                .await;
        }
        let held: HashSet<&str> = held.iter().map(|(w, _)| w.as_str()).collect();
        Some(
            procs
                .iter()
                .filter(|p| held.contains(p.arg().as_str()))
                .cloned()
                .collect(),
        )
    }

    async fn give_up(&self, index: usize, why: String) -> Option<Vec<Proc>> {
        self.state.lock().await.modes.insert(index, Mode::Exit(why));
        None
    }
}

/// Run as the old workers' user, with `PID:START` arguments: for each one
/// still running, `W PID:START` then `ls -l` of its open files (or `E
/// PID:START` when they cannot be listed and it still runs; one that exited
/// meanwhile prints nothing), then `T` and the proxy's TCP tables, then `O`
/// and its other socket tables (Unix, UDP). The tables come after the
/// lists: a socket opened in between is not in any list, and rule 1 sees it
/// all the same. A worker's socket in no table at all (a client connection
/// reset by its peer, which the kernel no longer lists while nginx still
/// holds its request) counts as a client.
pub(super) const CONN_SCRIPT: &str = r#"alive() {
  s=
  { read -r s < "/proc/$1/stat"; } 2>/dev/null || return 1
  r=${s##*) }
  set -- "$1" "$2" $r
  [ "$3" != Z ] && [ "$3" != X ] && [ "${22}" = "$2" ]
}
for w in "$@"; do
  p=${w%:*}
  alive "$p" "${w#*:}" || continue
  f=$(ls -l "/proc/$p/fd" 2>/dev/null)
  case $f in
    *" -> "*) echo "W $w"; printf '%s\n' "$f";;
    *) alive "$p" "${w#*:}" && echo "E $w";;
  esac
done
echo T
cat /proc/net/tcp /proc/net/tcp6 2>/dev/null
echo O
cat /proc/net/unix /proc/net/udp /proc/net/udp6 2>/dev/null
exit 0
"#;

/// Run as the container's user with `PID:START` arguments: the real user
/// and group ids (`UID:GID`) of the first worker still running, from its
/// status file (readable by anyone).
pub(super) const OWNER_SCRIPT: &str = r#"for w in "$@"; do
  u= g=
  while read -r k a b; do
    case $k in Uid:) u=$a;; Gid:) g=$a;; esac
  done < "/proc/${w%:*}/status" 2>/dev/null || continue
  [ -n "$u" ] && [ -n "$g" ] && echo "$u:$g" && exit 0
done
exit 0
"#;

/// Directives under which rule 2's count proves nothing: a request with
/// more than one upstream connection at once (subrequests beside it), idle
/// upstream connections kept open, several requests on one client
/// connection (HTTP/2, HTTP/3), or connections of the workers' own (OCSP).
/// Besides these, the screen refuses the scripting modules' directives
/// (`js_*`, `perl*`, any with `lua` in its name, `echo*`: they can send
/// subrequests and keep connections), SSI, clients on Unix sockets
/// (`listen unix:`) and `proxy_ignore_client_abort on` (a request whose
/// client is gone keeps its upstream connection).
const UNCOUNTABLE: &[&str] = &[
    "keepalive",
    "mirror",
    "auth_request",
    "add_before_body",
    "add_after_body",
    "post_action",
    "slice",
    "http2",
    "http3",
    "proxy_cache_background_update",
    "fastcgi_cache_background_update",
    "uwsgi_cache_background_update",
    "scgi_cache_background_update",
    "ssl_stapling",
    "ssl_ocsp",
];

/// Whether the whole config (as `nginx -T` prints it) lets the connection
/// count prove a drain; `Err` says why not, naming the file and line.
pub(super) fn screen(dump: &[u8]) -> Result<(), String> {
    const HEAD: &[u8] = b"# configuration file ";
    let mut sections: Vec<(String, Vec<u8>)> = Vec::new();
    for line in dump.split_inclusive(|b| *b == b'\n') {
        let trimmed = line.strip_suffix(b"\n").unwrap_or(line);
        if let Some(rest) = trimmed.strip_prefix(HEAD) {
            let name = rest.strip_suffix(b":").unwrap_or(rest);
            sections.push((String::from_utf8_lossy(name).into_owned(), Vec::new()));
        } else if let Some((_, bytes)) = sections.last_mut() {
            bytes.extend_from_slice(line);
        }
    }
    if sections.is_empty() {
        return Err("nginx -T printed no configuration file".to_string());
    }
    for (path, bytes) in sections {
        let file = ConfFile::parse(&path, bytes)
            .map_err(|e| format!("{path} does not parse here ({e})"))?;
        for (_, d) in file.walk() {
            let name = d.name().value_lossy();
            let args: Vec<String> = d.args().map(|a| a.value_lossy()).collect();
            let at = format!("{path}:{}", d.name().line());
            let listed = UNCOUNTABLE.contains(&name.as_str());
            let module = name.starts_with("js_")
                || name.starts_with("perl")
                || name.contains("lua")
                || name.starts_with("echo")
                || name == "ssi";
            if name == "proxy_ignore_client_abort" && args.first().is_some_and(|a| a == "on") {
                return Err(format!("{at}: proxy_ignore_client_abort on"));
            }
            if name == "ssi" && args.first().is_some_and(|a| a == "off") {
                continue;
            }
            if listed || module {
                return Err(format!("{at}: {name}"));
            }
            let unix = args.first().is_some_and(|a| a.starts_with("unix:"));
            if name == "listen" && (unix || args.iter().any(|a| a == "http2" || a == "quic")) {
                return Err(format!("{at}: listen ... {}", args.join(" ")));
            }
        }
    }
    Ok(())
}

/// One TCP socket of the proxy's tables.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Sock {
    local: (IpAddr, u16),
    remote: (IpAddr, u16),
    state: u8,
    inode: u64,
}

const ESTABLISHED: u8 = 0x01;
const SYN_SENT: u8 = 0x02;
const CLOSE_WAIT: u8 = 0x08;
const LISTEN: u8 = 0x0A;

impl Sock {
    /// Still held by a process: after its `close()` a socket lingers in
    /// other states, with no request left on it.
    fn held(&self) -> bool {
        matches!(self.state, ESTABLISHED | SYN_SENT | CLOSE_WAIT)
    }
}

/// What one round of [`CONN_SCRIPT`] saw.
#[derive(Debug, Default)]
pub(super) struct Look {
    /// The workers still running: `PID:START`, their socket inodes, and
    /// whether their files could be listed at all.
    workers: Vec<(String, Vec<u64>, bool)>,
    table: Vec<Sock>,
    /// The inodes of the other sockets (Unix, UDP).
    others: HashSet<u64>,
}

/// Reads [`CONN_SCRIPT`]'s output.
pub(super) fn parse(out: &[u8]) -> Look {
    let text = String::from_utf8_lossy(out);
    let mut look = Look::default();
    let (mut in_table, mut in_others) = (false, false);
    for line in text.lines() {
        if in_others {
            look.others.extend(other_inode(line));
        } else if line == "O" {
            in_others = true;
        } else if in_table {
            if let Some(sock) = table_line(line) {
                look.table.push(sock);
            }
        } else if line == "T" {
            in_table = true;
        } else if let Some(w) = line.strip_prefix("W ") {
            look.workers.push((w.to_string(), Vec::new(), false));
        } else if let Some(w) = line.strip_prefix("E ") {
            // Listed as unreadable: no proof for it.
            if let Some(worker) = look.workers.iter_mut().find(|(k, _, _)| k == w) {
                worker.1.clear();
                worker.2 = false;
            }
        } else if let Some((_, target)) = line.split_once(" -> ") {
            if let Some(worker) = look.workers.last_mut() {
                worker.2 = true;
                let inode: Option<u64> = target
                    .strip_prefix("socket:[")
                    .and_then(|r| r.strip_suffix(']'))
                    .and_then(|n| n.parse().ok());
                worker.1.extend(inode);
            }
        }
    }
    look
}

/// The inode of one line of `/proc/net/unix` (its 7th field) or `udp`,
/// `udp6` (its 10th); `None` for the headers.
fn other_inode(line: &str) -> Option<u64> {
    let f: Vec<&str> = line.split_whitespace().collect();
    let unix = f
        .first()
        .is_some_and(|n| n.len() > 1 && n.ends_with(':') && f.len() < 10);
    match f.as_slice() {
        _ if unix => f.get(6)?.parse().ok(),
        [first, ..] if first.ends_with(':') => f.get(9)?.parse().ok(),
        _ => None,
    }
}

/// One line of `/proc/net/tcp` or `tcp6`; `None` for the header.
fn table_line(line: &str) -> Option<Sock> {
    let f: Vec<&str> = line.split_whitespace().collect();
    if f.len() < 10 || !f[0].ends_with(':') {
        return None;
    }
    Some(Sock {
        local: endpoint(f[1])?,
        remote: endpoint(f[2])?,
        state: u8::from_str_radix(f[3], 16).ok()?,
        inode: f[9].parse().ok()?,
    })
}

/// `0100007F:0050` (IPv4) or 32 hex digits and a port (IPv6), each 32-bit
/// word printed as the number its bytes make in this machine's order. An IPv4 address
/// mapped into IPv6 is given as IPv4.
fn endpoint(s: &str) -> Option<(IpAddr, u16)> {
    let (addr, port) = s.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let words: Vec<u32> = (0..addr.len() / 8)
        .map(|i| u32::from_str_radix(&addr[i * 8..i * 8 + 8], 16))
        .collect::<Result<_, _>>()
        .ok()?;
    let ip = match words.as_slice() {
        [w] if addr.len() == 8 => IpAddr::V4(Ipv4Addr::from(w.to_ne_bytes())),
        [a, b, c, d] if addr.len() == 32 => {
            let mut bytes = [0u8; 16];
            for (i, w) in [a, b, c, d].into_iter().enumerate() {
                bytes[i * 4..i * 4 + 4].copy_from_slice(&w.to_ne_bytes());
            }
            let v6 = Ipv6Addr::from(bytes);
            v6.to_ipv4_mapped()
                .map(IpAddr::V4)
                .unwrap_or(IpAddr::V6(v6))
        }
        _ => return None,
    };
    Some((ip, port))
}

/// What still holds the drain up in one round: the old workers not proven
/// clear of `removed`, as `PID:START` with the reason; empty when the
/// drain is done. Workers not in `look` have exited.
pub(super) fn holding(look: &Look, removed: &HashSet<IpAddr>) -> Vec<(String, String)> {
    let listening: BTreeSet<u16> = look
        .table
        .iter()
        .filter(|s| s.state == LISTEN)
        .map(|s| s.local.1)
        .collect();
    // Outgoing only: the removed instance's own calls through the proxy
    // come in on a listening port.
    let to_removed = look
        .table
        .iter()
        .find(|s| s.held() && removed.contains(&s.remote.0) && !listening.contains(&s.local.1));
    if let Some(s) = to_removed {
        let why = format!("a connection to {}:{} is open", s.remote.0, s.remote.1);
        return look
            .workers
            .iter()
            .map(|(w, _, _)| (w.clone(), why.clone()))
            .collect();
    }
    let tcp: HashSet<u64> = look.table.iter().map(|s| s.inode).collect();
    let mut held = Vec::new();
    for (w, inodes, listed) in &look.workers {
        if !listed || listening.is_empty() {
            held.push((w.clone(), "its connections cannot be read".to_string()));
            continue;
        }
        let mine: HashSet<u64> = inodes.iter().copied().collect();
        let socks = look.table.iter().filter(|s| mine.contains(&s.inode));
        // In no table: a client connection the kernel no longer lists.
        let unseen = mine
            .iter()
            .filter(|i| !tcp.contains(i) && !look.others.contains(i))
            .count();
        let (mut clients, mut upstreams) = (unseen, 0usize);
        for s in socks.filter(|s| s.state != LISTEN && s.held()) {
            if listening.contains(&s.local.1) {
                clients += 1;
            } else if matches!(s.state, ESTABLISHED | SYN_SENT) {
                upstreams += 1;
            }
        }
        if clients > upstreams {
            held.push((
                w.clone(),
                format!("{clients} client connection(s), {upstreams} upstream"),
            ));
        }
    }
    held
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode";

    /// A table line: local and remote as (IPv4, port), state, inode.
    fn row(local: ([u8; 4], u16), remote: ([u8; 4], u16), state: u8, inode: u64) -> String {
        let hex = |(ip, port): ([u8; 4], u16)| format!("{:08X}:{port:04X}", u32::from_ne_bytes(ip));
        format!(
            "   0: {} {} {state:02X} 00000000:00000000 00:00000000 00000000    33        0 {inode} 1 0 20 4 30 10 -1",
            hex(local),
            hex(remote)
        )
    }

    fn fd(n: u32, inode: u64) -> String {
        format!("lrwx------    1 www-data www-data        64 Dec  6 17:27 {n} -> socket:[{inode}]")
    }

    const PROXY: [u8; 4] = [172, 18, 0, 2];
    const CLIENT: [u8; 4] = [172, 18, 0, 1];
    const KEPT: [u8; 4] = [172, 18, 0, 5];
    const GONE: [u8; 4] = [172, 18, 0, 6];

    fn look(worker_fds: &[String], rows: &[String]) -> Look {
        let mut out = String::from(
            "W 41:100\nlrwx------    1 www-data www-data 64 Dec  6 17:27 0 -> /dev/null\n",
        );
        for f in worker_fds {
            out.push_str(f);
            out.push('\n');
        }
        out.push_str("T\n");
        out.push_str(HEADER);
        out.push('\n');
        out.push_str(&row(([0, 0, 0, 0], 80), ([0, 0, 0, 0], 0), LISTEN, 1));
        out.push('\n');
        for r in rows {
            out.push_str(r);
            out.push('\n');
        }
        parse(out.as_bytes())
    }

    fn gone() -> HashSet<IpAddr> {
        HashSet::from([IpAddr::from(GONE)])
    }

    #[test]
    fn the_tables_addresses_are_read_in_the_kernels_byte_order() {
        assert_eq!(
            endpoint("0100007F:0050"),
            Some((IpAddr::from([127, 0, 0, 1]), 80))
        );
        // ::ffff:192.168.0.6 in tcp6.
        assert_eq!(
            endpoint("0000000000000000FFFF00000600A8C0:1F40").map(|e| e.1),
            Some(8000)
        );
        assert_eq!(
            endpoint("0000000000000000FFFF00000600A8C0:1F40").map(|e| e.0),
            Some(IpAddr::from([192, 168, 0, 6]))
        );
        assert_eq!(endpoint("zz:0050"), None);
    }

    #[test]
    fn a_worker_whose_every_client_has_its_upstream_elsewhere_is_clear() {
        let l = look(
            &[fd(5, 10), fd(6, 11)],
            &[
                row((PROXY, 80), (CLIENT, 50000), ESTABLISHED, 10),
                row((PROXY, 40000), (KEPT, 8000), ESTABLISHED, 11),
            ],
        );
        assert_eq!(holding(&l, &gone()), vec![]);
    }

    #[test]
    fn a_request_not_yet_sent_upstream_holds_the_drain() {
        // Two clients (one still sending its body), one upstream connection.
        let l = look(
            &[fd(5, 10), fd(6, 11), fd(7, 12)],
            &[
                row((PROXY, 80), (CLIENT, 50000), ESTABLISHED, 10),
                row((PROXY, 80), (CLIENT, 50001), ESTABLISHED, 12),
                row((PROXY, 40000), (KEPT, 8000), ESTABLISHED, 11),
            ],
        );
        let held = holding(&l, &gone());
        assert_eq!(held.len(), 1);
        assert!(held[0].1.contains("2 client"), "{held:?}");
    }

    #[test]
    fn any_open_connection_to_the_removed_instance_holds_the_drain_whoever_holds_it() {
        // Not in the worker's list (opened after it was read): still seen.
        let l = look(&[], &[row((PROXY, 40001), (GONE, 8000), SYN_SENT, 99)]);
        let held = holding(&l, &gone());
        assert!(held[0].1.contains("172.18.0.6:8000"), "{held:?}");
        // Closed by the proxy and lingering: no request on it.
        let l = look(&[], &[row((PROXY, 40001), (GONE, 8000), 0x06, 0)]);
        assert_eq!(holding(&l, &gone()), vec![]);
    }

    #[test]
    fn a_socket_in_no_table_counts_as_a_client() {
        // A client reset by its peer is gone from the TCP table while nginx
        // still holds its request: one upstream connection for two clients.
        let mut l = look(
            &[fd(5, 10), fd(6, 11), fd(8, 13)],
            &[
                row((PROXY, 80), (CLIENT, 50000), ESTABLISHED, 10),
                row((PROXY, 40000), (KEPT, 8000), ESTABLISHED, 11),
            ],
        );
        assert_eq!(holding(&l, &gone()).len(), 1, "13 is in no table");
        // The channel to the master is a Unix socket: listed there.
        l.others.insert(13);
        assert_eq!(holding(&l, &gone()), vec![]);
        assert_eq!(
            other_inode("0000000000000000: 00000003 00000000 00000000 0001 03 566701"),
            Some(566701)
        );
        assert_eq!(
            other_inode("  123: 00000000:0044 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 23456 2 0000000000000000 0"),
            Some(23456)
        );
        assert_eq!(
            other_inode("Num       RefCount Protocol Flags    Type St Inode Path"),
            None
        );
    }

    #[test]
    fn the_removed_instances_own_calls_through_the_proxy_do_not_hold_the_drain() {
        let l = look(&[], &[row((PROXY, 80), (GONE, 41000), ESTABLISHED, 20)]);
        assert_eq!(holding(&l, &gone()), vec![]);
    }

    #[test]
    fn a_worker_whose_files_cannot_be_listed_is_not_clear() {
        let l = parse(b"W 41:100\nE 41:100\nT\n");
        assert_eq!(holding(&l, &gone()).len(), 1);
        // Listed, but no table of listening sockets to tell clients apart.
        let l = parse(b"W 41:100\nx -> /dev/null\nT\n");
        assert_eq!(holding(&l, &gone()).len(), 1);
        // Exited before the look: nothing holds.
        let l = parse(b"T\n");
        assert_eq!(holding(&l, &gone()), vec![]);
    }

    #[test]
    fn configs_with_subrequests_or_kept_connections_fail_the_screen() {
        let ok = b"# configuration file /etc/nginx/nginx.conf:\nevents {}\nhttp { upstream app { server app:8000; } server { listen 80; keepalive_timeout 5; location / { proxy_pass http://app; } } }\n";
        assert_eq!(screen(ok), Ok(()));
        let kept = b"# configuration file /etc/nginx/nginx.conf:\nevents {}\nhttp { include /etc/nginx/conf.d/a.conf; }\n\n# configuration file /etc/nginx/conf.d/a.conf:\nupstream app {\n  server app:8000;\n  keepalive 8;\n}\n";
        let e = screen(kept).unwrap_err();
        assert!(
            e.starts_with("/etc/nginx/conf.d/a.conf:3: keepalive"),
            "{e}"
        );
        let h2 = b"# configuration file /etc/nginx/nginx.conf:\nhttp { server { listen 443 ssl http2; } }\n";
        assert!(screen(h2).unwrap_err().contains("listen"));
        let mirror = b"# configuration file /etc/nginx/nginx.conf:\nhttp { server { location / { mirror /m; } } }\n";
        assert!(screen(mirror).unwrap_err().contains("mirror"));
        for refused in [
            "http { server { listen unix:/run/app.sock; } }",
            "http { proxy_ignore_client_abort on; }",
            "http { server { location / { content_by_lua_block { ngx.say(1) } } } }",
            "http { server { ssl_ocsp on; } }",
        ] {
            let dump = format!("# configuration file /etc/nginx/nginx.conf:\n{refused}\n");
            assert!(screen(dump.as_bytes()).is_err(), "{refused}");
        }
        let ssi_off = b"# configuration file /etc/nginx/nginx.conf:\nhttp { ssi off; }\n";
        assert_eq!(screen(ssi_off), Ok(()));
        assert!(screen(b"").is_err());
    }
}
