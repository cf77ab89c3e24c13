//! The runtime API commands the router sends, built only from checked parts.
//!
//! The runtime API reads one line of words; a name with a space, a `;`
//! (which separates commands on one line) or a newline in it would let input
//! become another command. So no command is ever built from a string:
//! [`Name`] admits only `[A-Za-z0-9_.:-]`, addresses are [`IpAddr`], ports
//! `u16` and weights at most [`MAX_WEIGHT`], and [`Command`] is an enum
//! whose text is written here and nowhere else.

use crate::error::HaproxyError;
use std::fmt;
use std::net::IpAddr;

/// HAProxy's largest server weight (`set weight` refuses more).
pub const MAX_WEIGHT: u32 = 256;

/// A backend or server name, checked to hold only `[A-Za-z0-9_.:-]`
/// (HAProxy's own rule for proxy and server names).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Name(String);

impl Name {
    /// `value` as a name of `what` (`backend`, `server`), or
    /// [`HaproxyError::InvalidName`].
    pub fn new(what: &'static str, value: &str) -> Result<Self, HaproxyError> {
        let ok = !value.is_empty()
            && value.len() <= 128
            && value
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b':' | b'-'));
        if ok {
            Ok(Self(value.to_string()))
        } else {
            Err(HaproxyError::InvalidName {
                what,
                value: value.escape_debug().to_string(),
            })
        }
    }

    /// The name as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What `set server ... state` sets (`ready` and `maint` do what `enable
/// server` and `disable server` do, and `drain` has no other spelling, so
/// the router uses this one command for all three).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdminState {
    /// Takes traffic.
    Ready,
    /// Keeps the sessions it has, takes no new ones.
    Drain,
    /// Out: the slot is free.
    Maint,
}

impl AdminState {
    fn word(self) -> &'static str {
        match self {
            AdminState::Ready => "ready",
            AdminState::Drain => "drain",
            AdminState::Maint => "maint",
        }
    }
}

/// A weight checked to be in HAProxy's range, 0 to [`MAX_WEIGHT`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Weight(u32);

impl Weight {
    /// `weight`, or [`HaproxyError::Weight`] above [`MAX_WEIGHT`].
    pub fn new(weight: u32) -> Result<Self, HaproxyError> {
        if weight <= MAX_WEIGHT {
            Ok(Self(weight))
        } else {
            Err(HaproxyError::Weight { weight })
        }
    }

    /// The number.
    pub fn get(self) -> u32 {
        self.0
    }
}

/// One runtime API command. Its [`Display`](fmt::Display) is the line sent,
/// without the newline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `show servers state BACKEND`.
    ShowServersState {
        /// The backend.
        backend: Name,
    },
    /// `show stat BACKEND 4 -1`: the CSV rows of the backend's servers.
    ShowStat {
        /// The backend.
        backend: Name,
    },
    /// `set server BACKEND/SERVER addr IP port PORT`.
    SetAddr {
        /// The backend.
        backend: Name,
        /// The slot.
        server: Name,
        /// The new address.
        addr: IpAddr,
        /// The new port.
        port: u16,
    },
    /// `set weight BACKEND/SERVER W`.
    SetWeight {
        /// The backend.
        backend: Name,
        /// The slot.
        server: Name,
        /// The new weight.
        weight: Weight,
    },
    /// `set server BACKEND/SERVER state ready|drain|maint`.
    SetState {
        /// The backend.
        backend: Name,
        /// The slot.
        server: Name,
        /// The new administrative state.
        state: AdminState,
    },
}

impl Command {
    /// Whether an answer to this command means success. The runtime API
    /// answers a setting command with nothing, or (for `addr`) with a
    /// sentence saying what changed; anything else is its refusal.
    pub fn accepts(&self, answer: &str) -> bool {
        let answer = answer.trim();
        match self {
            Command::ShowServersState { .. } | Command::ShowStat { .. } => {
                answer.starts_with('#') || answer.starts_with('1')
            }
            Command::SetAddr { .. } => {
                answer.is_empty()
                    || answer.starts_with("IP changed")
                    || answer.starts_with("no need to change")
                    || answer.starts_with("port changed")
            }
            _ => answer.is_empty(),
        }
    }
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Command::ShowServersState { backend } => write!(f, "show servers state {backend}"),
            Command::ShowStat { backend } => write!(f, "show stat {backend} 4 -1"),
            Command::SetAddr {
                backend,
                server,
                addr,
                port,
            } => write!(f, "set server {backend}/{server} addr {addr} port {port}"),
            Command::SetWeight {
                backend,
                server,
                weight,
            } => write!(f, "set weight {backend}/{server} {}", weight.get()),
            Command::SetState {
                backend,
                server,
                state,
            } => write!(f, "set server {backend}/{server} state {}", state.word()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> Name {
        Name::new("server", s).expect("valid")
    }

    #[test]
    fn names_admit_haproxy_characters_only() {
        for ok in ["app", "web_1", "a.b-c:d", "S9"] {
            assert!(Name::new("server", ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "a b",
            "a;show info",
            "a\nb",
            "a/b",
            "é",
            "a#b",
            &"x".repeat(129),
        ] {
            let err = Name::new("backend", bad).unwrap_err();
            assert!(err.to_string().starts_with("invalid backend name"), "{err}");
        }
    }

    #[test]
    fn weights_stop_at_256() {
        assert_eq!(Weight::new(256).unwrap().get(), 256);
        assert!(Weight::new(257).is_err());
    }

    #[test]
    fn lines_are_written_here() {
        let b = name("app");
        let s = name("s1");
        let cases = [
            (
                Command::SetAddr {
                    backend: b.clone(),
                    server: s.clone(),
                    addr: "::1".parse().unwrap(),
                    port: 8080,
                },
                "set server app/s1 addr ::1 port 8080",
            ),
            (
                Command::SetWeight {
                    backend: b.clone(),
                    server: s.clone(),
                    weight: Weight::new(3).unwrap(),
                },
                "set weight app/s1 3",
            ),
            (
                Command::SetState {
                    backend: b.clone(),
                    server: s.clone(),
                    state: AdminState::Drain,
                },
                "set server app/s1 state drain",
            ),
            (
                Command::ShowStat { backend: b.clone() },
                "show stat app 4 -1",
            ),
        ];
        for (command, line) in cases {
            assert_eq!(command.to_string(), line);
        }
    }

    #[test]
    fn refusals_are_told_from_answers() {
        let set = Command::SetAddr {
            backend: name("app"),
            server: name("s1"),
            addr: "127.0.0.1".parse().unwrap(),
            port: 1,
        };
        assert!(set.accepts(
            "IP changed from '0.0.0.0' to '127.0.0.21', port changed from '+0' to '9001' by 'stats socket command'\n"
        ));
        assert!(!set.accepts("No such server.\n"));
        let weight = Command::SetWeight {
            backend: name("app"),
            server: name("s1"),
            weight: Weight::new(1).unwrap(),
        };
        assert!(weight.accepts("\n"));
        assert!(!weight.accepts("Absolute weight can only be between 0 and 256 inclusive.\n"));
        let show = Command::ShowServersState { backend: name("x") };
        assert!(!show.accepts("Can't find backend.\n"));
    }
}
