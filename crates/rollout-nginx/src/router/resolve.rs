//! What a service name resolves to inside the proxy, as nginx's next reload
//! will resolve a `server` line naming it
//! ([`TrafficRouter::resolve`](rollout_core::router::TrafficRouter::resolve)).
//!
//! nginx resolves a `server` host once, when it loads its config, through
//! the C library (`getaddrinfo`), which asks the container's resolver (on a
//! Docker network, the engine's own DNS at 127.0.0.11). So the proxy is
//! asked, not the machine the tool runs on: `getent ahosts NAME` goes the
//! same way nginx does (Debian's and the official images have it); where
//! it is missing, busybox's `nslookup NAME` asks the same DNS server (the
//! Alpine and scratch-built images have that). Which one works is learnt
//! once per router. The name reaches the program as an argument, never as
//! shell text, and only a DNS name gets that far.

use super::{NginxRouter, Replica};
use rollout_core::error::RouterError;
use std::collections::BTreeSet;
use std::net::IpAddr;
use std::sync::atomic::Ordering;

/// [`NginxRouter::resolver`]: `getent` works or is not tried yet.
const GETENT: u8 = 0;
/// `getent` is missing: busybox's `nslookup`.
const NSLOOKUP: u8 = 1;
/// Neither: the router cannot tell.
const NEITHER: u8 = 2;

/// What one program said about a name.
enum Answer {
    /// These addresses (empty: the name is not found).
    Addresses(BTreeSet<IpAddr>),
    /// The program cannot run in the proxy (exit 126 or 127).
    Missing,
    /// No answer this time (a timeout, an unexpected exit).
    Unknown,
}

impl NginxRouter {
    /// One answer per replica, or `None` when one of them could not say.
    pub(super) async fn resolve_name(
        &self,
        name: &str,
    ) -> Result<Option<Vec<BTreeSet<IpAddr>>>, RouterError> {
        if !is_dns_name(name) {
            return Err(RouterError::Config(format!(
                "cannot resolve {name:?} in the proxy: not a DNS name"
            )));
        }
        let mut answers = Vec::with_capacity(self.replicas.len());
        for replica in &self.replicas {
            match self.ask(replica, name).await? {
                Some(set) => answers.push(set),
                None => return Ok(None),
            }
        }
        Ok(Some(answers))
    }

    async fn ask(
        &self,
        replica: &Replica,
        name: &str,
    ) -> Result<Option<BTreeSet<IpAddr>>, RouterError> {
        loop {
            let tool = self.resolver.load(Ordering::SeqCst);
            let answer = match tool {
                GETENT => {
                    let out = self
                        .run(replica, &argv(&["getent", "ahosts", name]))
                        .await?;
                    match out.code {
                        0 => Answer::Addresses(getent_addresses(&out.stdout)),
                        // getent: "one or more keys were not found".
                        2 => Answer::Addresses(BTreeSet::new()),
                        126 | 127 => Answer::Missing,
                        _ => Answer::Unknown,
                    }
                }
                NSLOOKUP => {
                    let out = self.run(replica, &argv(&["nslookup", name])).await?;
                    let said = String::from_utf8_lossy(&out.stdout);
                    match out.code {
                        0 => Answer::Addresses(nslookup_addresses(&said)),
                        126 | 127 => Answer::Missing,
                        _ if said.contains("NXDOMAIN") => Answer::Addresses(BTreeSet::new()),
                        _ => Answer::Unknown,
                    }
                }
                _ => return Ok(None),
            };
            match answer {
                Answer::Addresses(set) => return Ok(Some(set)),
                Answer::Unknown => return Ok(None),
                Answer::Missing => {
                    let next = if tool == GETENT { NSLOOKUP } else { NEITHER };
                    self.resolver.store(next, Ordering::SeqCst);
                }
            }
        }
    }
}

fn argv(words: &[&str]) -> Vec<String> {
    words.iter().map(|w| w.to_string()).collect()
}

/// A host name as a `server` line may name it: labels of letters, digits,
/// `-` and `_` (Compose and Swarm allow it in service names) separated by
/// dots, none starting with `-` (no program may read it as an option).
fn is_dns_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

/// `getent ahosts`: one line per address and socket type, the address first.
fn getent_addresses(stdout: &[u8]) -> BTreeSet<IpAddr> {
    String::from_utf8_lossy(stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next()?.parse().ok())
        .collect()
}

/// busybox's `nslookup`: the server first (`Address:\t127.0.0.11:53`), then
/// for each answer a `Name:` line and its `Address: IP` lines (`Address 1:`
/// in older versions, with the address first).
fn nslookup_addresses(said: &str) -> BTreeSet<IpAddr> {
    let mut answers = false;
    let mut set = BTreeSet::new();
    for line in said.lines() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        if key.trim() == "Name" {
            answers = true;
        } else if answers && key.starts_with("Address") {
            if let Some(Ok(ip)) = value.split_whitespace().next().map(str::parse) {
                set.insert(ip);
            }
        }
    }
    set
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ips(list: &[&str]) -> BTreeSet<IpAddr> {
        list.iter().map(|s| s.parse().unwrap()).collect()
    }

    #[test]
    fn getent_lines_give_each_address_once() {
        let out = b"10.0.1.5        STREAM web\n10.0.1.5        DGRAM  \n10.0.1.5        RAW    \n10.0.1.7        STREAM \nfd00::7         STREAM \n";
        assert_eq!(
            getent_addresses(out),
            ips(&["10.0.1.5", "10.0.1.7", "fd00::7"])
        );
        assert!(getent_addresses(b"").is_empty());
    }

    #[test]
    fn nslookup_answers_leave_the_server_out() {
        // busybox 1.35 on a Docker network: the A and AAAA queries each say
        // "Non-authoritative answer", one Name/Address pair per address.
        let said = "Server:\t\t127.0.0.11\nAddress:\t127.0.0.11:53\n\nNon-authoritative answer:\n\nNon-authoritative answer:\nName:\tweb\nAddress: 172.18.0.2\nName:\tweb\nAddress: 172.18.0.3\n\n";
        assert_eq!(nslookup_addresses(said), ips(&["172.18.0.2", "172.18.0.3"]));
        // Older busybox: numbered addresses, and a server given without a port.
        let said = "Server:    127.0.0.11\nAddress 1: 127.0.0.11\n\nName:      web\nAddress 1: 10.0.0.4 web.1.abc.net\nAddress 2: 10.0.0.9\n";
        assert_eq!(nslookup_addresses(said), ips(&["10.0.0.4", "10.0.0.9"]));
        assert!(nslookup_addresses("** server can't find x: NXDOMAIN\n").is_empty());
    }

    #[test]
    fn only_dns_names_reach_the_proxy() {
        for good in ["web", "shop_web", "web.shop", "a-1"] {
            assert!(is_dns_name(good), "{good}");
        }
        for bad in ["", "-n", "web;id", "a..b", "web name", "$(id)", "web/x"] {
            assert!(!is_dns_name(bad), "{bad}");
        }
    }
}
