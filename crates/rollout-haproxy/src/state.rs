//! Reading HAProxy's answers: `show servers state` and `show stat`, as pure
//! functions of the text.
//!
//! Both answers start with a header line naming their columns, and columns
//! are found by those names, not by position, so that a version that adds a
//! column does not shift what is read. `show servers state` (format 1) gives
//! each server's address, port, weight and administrative state bits;
//! `show stat` (CSV) gives each server's current sessions (`scur`), what a
//! drain waits on.

use crate::error::HaproxyError;
use std::collections::BTreeMap;
use std::net::IpAddr;

/// The administrative state of a slot, from the bits of `srv_admin_state`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Takes traffic (none of the maintenance or drain bits).
    Active,
    /// Keeps its sessions, takes no new ones (`FDRAIN` or `IDRAIN`).
    Drain,
    /// In maintenance (forced, inherited, or a resolution or hostname
    /// failure): a free slot.
    Maint,
}

// srv_admin_state bits (HAProxy's include/haproxy/server-t.h). CMAINT (0x04)
// only records that the config said `disabled` and stays set after the
// slot is made ready, so it does not count.
const FMAINT: u32 = 0x01;
const IMAINT: u32 = 0x02;
const FDRAIN: u32 = 0x08;
const IDRAIN: u32 = 0x10;
const RMAINT: u32 = 0x20;
const HMAINT: u32 = 0x40;

impl Mode {
    /// The mode that `srv_admin_state` bits mean.
    pub fn from_bits(bits: u32) -> Self {
        if bits & (FMAINT | IMAINT | RMAINT | HMAINT) != 0 {
            Mode::Maint
        } else if bits & (FDRAIN | IDRAIN) != 0 {
            Mode::Drain
        } else {
            Mode::Active
        }
    }
}

/// One server of a backend, as `show servers state` tells it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerState {
    /// Its name (`s1`).
    pub name: String,
    /// Its address.
    pub addr: IpAddr,
    /// Its port (0 for a slot never given one).
    pub port: u16,
    /// `srv_op_state`: 0 stopped, 1 starting, 2 running, 3 stopping.
    pub op_state: u8,
    /// `srv_admin_state`, the raw bits.
    pub admin_bits: u32,
    /// Its weight as set by the user or the runtime API (`srv_uweight`).
    pub weight: u32,
}

impl ServerState {
    /// What the administrative bits mean.
    pub fn mode(&self) -> Mode {
        Mode::from_bits(self.admin_bits)
    }
}

/// Parses the answer to `show servers state BACKEND`: one [`ServerState`]
/// per server, in HAProxy's order.
pub fn parse_servers_state(answer: &str) -> Result<Vec<ServerState>, HaproxyError> {
    let bad = |reason: String| HaproxyError::Answer {
        command: "show servers state".into(),
        reason,
    };
    let mut lines = answer.lines().filter(|l| !l.trim().is_empty());
    match lines.next().map(str::trim) {
        Some("1") => {}
        Some(other) => {
            return Err(bad(format!(
                "expected format version 1 on the first line, got `{}`",
                other.escape_debug()
            )))
        }
        None => return Err(bad("empty answer".into())),
    }
    let header = lines
        .next()
        .and_then(|l| l.strip_prefix('#'))
        .ok_or_else(|| bad("no `#` header line".into()))?;
    let columns: Vec<&str> = header.split_whitespace().collect();
    let column = |name: &str| {
        columns
            .iter()
            .position(|c| *c == name)
            .ok_or_else(|| bad(format!("no column {name}")))
    };
    let (c_name, c_addr, c_op, c_admin, c_weight, c_port) = (
        column("srv_name")?,
        column("srv_addr")?,
        column("srv_op_state")?,
        column("srv_admin_state")?,
        column("srv_uweight")?,
        column("srv_port")?,
    );
    let mut servers = Vec::new();
    for (i, line) in lines.enumerate() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let field = |c: usize| {
            fields
                .get(c)
                .copied()
                .ok_or_else(|| bad(format!("row {} has {} fields", i + 1, fields.len())))
        };
        let number = |c: usize, what: &str| -> Result<u32, HaproxyError> {
            let text = field(c)?;
            text.parse()
                .map_err(|_| bad(format!("row {}: {what} `{text}` is not a number", i + 1)))
        };
        let addr_text = field(c_addr)?;
        let addr = addr_text
            .parse()
            .map_err(|_| bad(format!("row {}: `{addr_text}` is not an address", i + 1)))?;
        let port = number(c_port, "port")?;
        servers.push(ServerState {
            name: field(c_name)?.to_string(),
            addr,
            port: u16::try_from(port).map_err(|_| bad(format!("row {}: port {port}", i + 1)))?,
            op_state: u8::try_from(number(c_op, "srv_op_state")?).unwrap_or(u8::MAX),
            admin_bits: number(c_admin, "srv_admin_state")?,
            weight: number(c_weight, "srv_uweight")?,
        });
    }
    Ok(servers)
}

/// Parses the CSV answer to `show stat BACKEND 4 -1`: each server's current
/// sessions (`scur`) by server name. The `BACKEND` and `FRONTEND` summary
/// rows are left out.
pub fn parse_stat_sessions(answer: &str) -> Result<BTreeMap<String, u64>, HaproxyError> {
    let bad = |reason: String| HaproxyError::Answer {
        command: "show stat".into(),
        reason,
    };
    let mut lines = answer.lines().filter(|l| !l.trim().is_empty());
    let header = lines
        .next()
        .and_then(|l| l.strip_prefix("# "))
        .ok_or_else(|| bad("no `# ` header line".into()))?;
    let columns: Vec<&str> = header.split(',').collect();
    let column = |name: &str| {
        columns
            .iter()
            .position(|c| *c == name)
            .ok_or_else(|| bad(format!("no column {name}")))
    };
    let (c_name, c_scur) = (column("svname")?, column("scur")?);
    let mut sessions = BTreeMap::new();
    for (i, line) in lines.enumerate() {
        // Server names and numbers hold no comma or quote, so a plain split
        // reads every row the router needs; other rows are skipped whole.
        let fields: Vec<&str> = line.split(',').collect();
        let (Some(name), Some(scur)) = (fields.get(c_name), fields.get(c_scur)) else {
            return Err(bad(format!("row {} has {} fields", i + 1, fields.len())));
        };
        if matches!(*name, "BACKEND" | "FRONTEND") {
            continue;
        }
        let scur = scur
            .parse()
            .map_err(|_| bad(format!("row {}: scur `{scur}` is not a number", i + 1)))?;
        sessions.insert(name.to_string(), scur);
    }
    Ok(sessions)
}

#[cfg(test)]
mod tests {
    use super::*;

    // Captured from HAProxy 2.6.12 (Debian 12) with a `server-template s
    // 1-4 0.0.0.0:0 disabled`: s1 ready with weight 3, s2 draining, s3
    // given an IPv6 address and left in maintenance, s4 never used.
    const SERVERS_STATE: &str = include_str!("../tests/fixtures/servers_state.txt");
    const STAT: &str = include_str!("../tests/fixtures/stat.csv");

    #[test]
    fn servers_state_of_a_real_answer() {
        let servers = parse_servers_state(SERVERS_STATE).unwrap();
        let seen: Vec<_> = servers
            .iter()
            .map(|s| {
                (
                    s.name.as_str(),
                    s.addr.to_string(),
                    s.port,
                    s.weight,
                    s.mode(),
                )
            })
            .collect();
        assert_eq!(
            seen,
            [
                ("s1", "127.0.0.21".to_string(), 9001, 3, Mode::Active),
                ("s2", "127.0.0.22".to_string(), 9002, 2, Mode::Drain),
                ("s3", "::1".to_string(), 9003, 1, Mode::Maint),
                ("s4", "0.0.0.0".to_string(), 0, 1, Mode::Maint),
            ]
        );
        assert_eq!(servers[0].op_state, 2);
    }

    #[test]
    fn stat_sessions_of_a_real_answer() {
        let sessions = parse_stat_sessions(STAT).unwrap();
        assert_eq!(
            sessions.into_iter().collect::<Vec<_>>(),
            [
                ("s1".to_string(), 0),
                ("s2".to_string(), 0),
                ("s3".to_string(), 0),
                ("s4".to_string(), 0),
            ]
        );
    }

    #[test]
    fn scur_is_read_by_its_column() {
        let answer = "# pxname,svname,qcur,qmax,scur,smax\napp,s1,0,0,7,9\napp,BACKEND,0,0,7,9\n";
        assert_eq!(parse_stat_sessions(answer).unwrap()["s1"], 7);
        assert_eq!(parse_stat_sessions(answer).unwrap().len(), 1);
    }

    #[test]
    fn admin_bits() {
        assert_eq!(Mode::from_bits(4), Mode::Active); // CMAINT alone: enabled since
        assert_eq!(Mode::from_bits(12), Mode::Drain);
        assert_eq!(Mode::from_bits(5), Mode::Maint);
        assert_eq!(Mode::from_bits(0x20), Mode::Maint);
        assert_eq!(Mode::from_bits(0), Mode::Active);
    }

    #[test]
    fn refusals_and_garbage_are_errors() {
        for answer in [
            "Can't find backend.",
            "",
            "1\nno header",
            "1\n# srv_name\nx\n",
        ] {
            assert!(parse_servers_state(answer).is_err(), "{answer:?}");
        }
        for answer in [
            "No such proxy.",
            "# svname\nx\n",
            "# svname,scur\ns1,many\n",
        ] {
            assert!(parse_stat_sessions(answer).is_err(), "{answer:?}");
        }
    }
}
