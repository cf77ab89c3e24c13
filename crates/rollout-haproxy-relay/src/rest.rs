//! The state at rest of a backend, kept in the container so that a restarted
//! HAProxy gets it back without waiting for the next `docker rollout`.
//!
//! `--keep SOCKET BACKEND SLOTS ROUTE...` (run by the plugin, by exec, each
//! time a change leaves the backend at rest) writes one file per backend in
//! [`REST_DIR`]: the stats socket, the backend, its `server-template` slots
//! (comma-separated) and each route at rest as `HOST:PORT:WEIGHT`, where
//! `HOST` is a service's name (resolved again at each start, so a host whose
//! containers came back with other addresses is routed where they are now).
//!
//! `--start COMMAND...` (the image's entrypoint) starts a replayer, then
//! becomes `COMMAND` (HAProxy, which stays the container's main process and
//! gets its signals). The replayer waits for each kept backend's socket,
//! resolves its routes, and fills the slots only when every slot is still in
//! maintenance, as HAProxy starts them: a backend a rollout already changed
//! is left alone, so the tool stays the one writer of the slots. It then
//! stays asleep: HAProxy reaps no child, and a replayer that exited would be
//! left as a zombie.

use crate::dns;
use crate::relay;
use std::net::Ipv4Addr;
use std::path::Path;
use std::time::{Duration, Instant};

/// Where the states at rest are kept, one file per backend.
pub const REST_DIR: &str = "/var/lib/rollout-haproxy";

/// How long the replayer waits for the socket and for the routes' names.
const PATIENCE: Duration = Duration::from_secs(60);

/// The first line of a kept file.
const MAGIC: &str = "rollout-haproxy-relay at-rest 1";

/// One backend's state at rest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub socket: String,
    pub backend: String,
    pub slots: Vec<String>,
    pub routes: Vec<RestRoute>,
}

/// A name the backend's servers are at rest, its port and weight.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestRoute {
    pub host: String,
    pub port: u16,
    pub weight: u32,
}

/// A backend, server or host name: HAProxy's name characters, no path.
fn check_name(what: &str, name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(format!("{what} {name:?} is not a name"))
    }
}

impl Record {
    /// The record `--keep` is given: socket, backend, slots, routes.
    pub fn from_args(args: &[String]) -> Result<Self, String> {
        let [socket, backend, slots, routes @ ..] = args else {
            return Err(
                "usage: rollout-haproxy-relay --keep SOCKET BACKEND SLOTS HOST:PORT:WEIGHT..."
                    .into(),
            );
        };
        if !socket.starts_with('/') || socket.contains(['\n', '\0']) {
            return Err(format!("socket {socket:?} is not an absolute path"));
        }
        check_name("backend", backend)?;
        let slots: Vec<String> = slots.split(',').map(str::to_string).collect();
        for slot in &slots {
            check_name("server", slot)?;
        }
        let routes = routes
            .iter()
            .map(|r| {
                let bad = || format!("route {r:?} is not HOST:PORT:WEIGHT");
                let mut parts = r.split(':');
                let (Some(host), Some(port), Some(weight), None) =
                    (parts.next(), parts.next(), parts.next(), parts.next())
                else {
                    return Err(bad());
                };
                check_name("host", host)?;
                Ok(RestRoute {
                    host: host.to_string(),
                    port: port.parse().map_err(|_| bad())?,
                    weight: weight.parse().ok().filter(|w| *w <= 256).ok_or_else(bad)?,
                })
            })
            .collect::<Result<Vec<_>, String>>()?;
        Ok(Self {
            socket: socket.clone(),
            backend: backend.clone(),
            slots,
            routes,
        })
    }

    /// The file's text.
    pub fn to_text(&self) -> String {
        let mut text = format!(
            "{MAGIC}\nsocket {}\nbackend {}\nslots {}\n",
            self.socket,
            self.backend,
            self.slots.join(",")
        );
        for r in &self.routes {
            text.push_str(&format!("route {}:{}:{}\n", r.host, r.port, r.weight));
        }
        text
    }

    /// Reads a file's text back.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut lines = text.lines();
        if lines.next() != Some(MAGIC) {
            return Err(format!("its first line is not `{MAGIC}`"));
        }
        let mut args = Vec::new();
        for (key, line) in ["socket", "backend", "slots"]
            .into_iter()
            .zip(lines.by_ref())
        {
            let value = line
                .strip_prefix(key)
                .and_then(|v| v.strip_prefix(' '))
                .ok_or_else(|| format!("expected `{key} ...`, got {line:?}"))?;
            args.push(value.to_string());
        }
        for line in lines {
            let route = line
                .strip_prefix("route ")
                .ok_or_else(|| format!("expected `route ...`, got {line:?}"))?;
            args.push(route.to_string());
        }
        Self::from_args(&args)
    }

    /// Writes the record to its file in `dir` (a new file renamed over the
    /// old one, so that a reader never sees half of it).
    pub fn keep(&self, dir: &Path) -> std::io::Result<()> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join(&self.backend);
        let tmp = dir.join(format!(".{}.{}", self.backend, std::process::id()));
        std::fs::write(&tmp, self.to_text())?;
        std::fs::rename(&tmp, &path)
    }
}

/// The commands that put the routes at rest into the slots of `record`,
/// given the addresses of each route and `state`, the answer to `show
/// servers state BACKEND`; `None` when a slot is not in maintenance (a
/// rollout, or anyone, changed the backend since HAProxy started).
pub fn replay_commands(
    record: &Record,
    state: &str,
    addrs: &[Vec<Ipv4Addr>],
) -> Option<Vec<String>> {
    const MAINT: u32 = 0x01 | 0x02 | 0x20 | 0x40;
    let mut lines = state.lines().filter(|l| !l.trim().is_empty());
    if lines.next()?.trim() != "1" {
        return None;
    }
    let header: Vec<&str> = lines
        .next()?
        .strip_prefix('#')?
        .split_whitespace()
        .collect();
    let name_at = header.iter().position(|c| *c == "srv_name")?;
    let admin_at = header.iter().position(|c| *c == "srv_admin_state")?;
    let mut seen = 0;
    for line in lines {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let name = *fields.get(name_at)?;
        if record.slots.iter().any(|s| s == name) {
            let admin: u32 = fields.get(admin_at)?.parse().ok()?;
            if admin & MAINT == 0 {
                return None;
            }
            seen += 1;
        }
    }
    if seen != record.slots.len() {
        return None;
    }
    let b = &record.backend;
    let mut slots = record.slots.iter();
    let mut commands = Vec::new();
    for (route, ips) in record.routes.iter().zip(addrs) {
        for ip in ips {
            let Some(s) = slots.next() else {
                return Some(commands);
            };
            commands.push(format!("set server {b}/{s} addr {ip} port {}", route.port));
            commands.push(format!("set server {b}/{s} weight {}", route.weight));
            commands.push(format!("set server {b}/{s} state ready"));
        }
    }
    Some(commands)
}

/// The kept records, by backend name.
fn kept(dir: &Path) -> Vec<Record> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut paths: Vec<_> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| !n.to_string_lossy().starts_with('.'))
        })
        .collect();
    paths.sort();
    paths
        .into_iter()
        .filter_map(|path| {
            let read = std::fs::read_to_string(&path).map_err(|e| e.to_string());
            match read.and_then(|text| Record::parse(&text)) {
                Ok(record) => Some(record),
                Err(why) => {
                    eprintln!("rollout-haproxy-relay: ignored {}: {why}", path.display());
                    None
                }
            }
        })
        .collect()
}

/// Sends one command, with retries until `deadline` while the socket is not
/// there yet (HAProxy starting).
fn ask(socket: &str, command: &str, deadline: Instant) -> std::io::Result<String> {
    loop {
        let mut out = Vec::new();
        match relay(socket, command, &mut out) {
            Ok(()) => return Ok(String::from_utf8_lossy(&out).into_owned()),
            Err(e) if Instant::now() >= deadline => return Err(e),
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

/// The addresses of each route, asked until every route has some or the
/// deadline passes.
fn resolve(routes: &[RestRoute], deadline: Instant) -> Vec<Vec<Ipv4Addr>> {
    let server = std::fs::read_to_string("/etc/resolv.conf")
        .ok()
        .and_then(|t| dns::nameserver(&t));
    let mut id = std::process::id() as u16;
    loop {
        let found: Vec<Vec<Ipv4Addr>> = routes
            .iter()
            .map(|r| {
                id = id.wrapping_add(1);
                let mut ips = server
                    .and_then(|s| dns::lookup(s, &r.host, id).ok())
                    .unwrap_or_default();
                ips.sort();
                ips
            })
            .collect();
        if found.iter().all(|ips| !ips.is_empty()) || Instant::now() >= deadline {
            return found;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Puts one kept backend back at rest, if HAProxy's slots are untouched.
fn replay_one(record: &Record) -> Result<String, String> {
    let deadline = Instant::now() + PATIENCE;
    let show = format!("show servers state {}", record.backend);
    ask(&record.socket, &show, deadline).map_err(|e| format!("{}: {e}", record.socket))?;
    let addrs = resolve(&record.routes, deadline);
    let state = ask(&record.socket, &show, deadline).map_err(|e| e.to_string())?;
    let Some(commands) = replay_commands(record, &state, &addrs) else {
        return Ok("left alone: its servers were already changed".into());
    };
    for command in &commands {
        let answer = ask(&record.socket, command, deadline).map_err(|e| e.to_string())?;
        if answer.trim().starts_with("No such") {
            return Err(format!("{command}: {}", answer.trim()));
        }
    }
    let routes: Vec<String> = record
        .routes
        .iter()
        .zip(&addrs)
        .map(|(r, ips)| format!("{} ({} addresses)", r.host, ips.len()))
        .collect();
    Ok(format!("routed at rest again: {}", routes.join(", ")))
}

/// The replayer's work: every kept backend back at rest, then asleep.
pub fn replay() -> ! {
    for record in kept(Path::new(REST_DIR)) {
        match replay_one(&record) {
            Ok(what) => eprintln!("rollout-haproxy-relay: backend {}: {what}", record.backend),
            Err(why) => eprintln!(
                "rollout-haproxy-relay: backend {} not restored: {why}",
                record.backend
            ),
        }
    }
    loop {
        std::thread::sleep(Duration::from_secs(24 * 3600));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    fn record() -> Record {
        Record::from_args(&args(&[
            "/run/haproxy/admin.sock",
            "app",
            "app1,app2,app3",
            "app:8000:1",
        ]))
        .unwrap()
    }

    #[test]
    fn a_record_reads_back_as_written_and_bad_ones_are_refused() {
        let r = record();
        assert_eq!(Record::parse(&r.to_text()).unwrap(), r);
        for bad in [
            &["run/admin.sock", "app", "a1", "app:1:1"][..],
            &["/s", "../etc", "a1"],
            &["/s", "app", "a1,a/2"],
            &["/s", "app", "a1", "app:80"],
            &["/s", "app", "a1", "app:80:257"],
            &["/s", "app"],
        ] {
            assert!(Record::from_args(&args(bad)).is_err(), "{bad:?}");
        }
        assert!(Record::parse("something else\n").is_err());
    }

    const FRESH: &str = "1\n# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight\n3 app 1 app1 0.0.0.0 0 5 1\n3 app 2 app2 0.0.0.0 0 5 1\n3 app 3 app3 0.0.0.0 0 5 1\n";

    #[test]
    fn fresh_slots_get_the_addresses_and_changed_ones_are_left_alone() {
        let r = record();
        let ips = vec![vec![
            Ipv4Addr::new(172, 18, 0, 3),
            Ipv4Addr::new(172, 18, 0, 4),
        ]];
        let commands = replay_commands(&r, FRESH, &ips).unwrap();
        assert_eq!(
            commands,
            [
                "set server app/app1 addr 172.18.0.3 port 8000",
                "set server app/app1 weight 1",
                "set server app/app1 state ready",
                "set server app/app2 addr 172.18.0.4 port 8000",
                "set server app/app2 weight 1",
                "set server app/app2 state ready",
            ]
        );
        let touched = FRESH.replace(
            "3 app 2 app2 0.0.0.0 0 5 1",
            "3 app 2 app2 172.18.0.9 2 0 1",
        );
        assert_eq!(replay_commands(&r, &touched, &ips), None);
        // More addresses than slots fill the slots.
        let many = vec![(1..=5).map(|i| Ipv4Addr::new(10, 0, 0, i)).collect()];
        assert_eq!(replay_commands(&r, FRESH, &many).unwrap().len(), 9);
        // A slot missing from the answer: not this config, left alone.
        assert_eq!(
            replay_commands(&r, "1\n# srv_name srv_admin_state\napp1 5\n", &ips),
            None
        );
    }
}
