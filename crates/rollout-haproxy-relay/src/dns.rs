//! A minimal DNS client: the IPv4 addresses of one name, asked of the first
//! `nameserver` of `/etc/resolv.conf` over UDP (in a container on a Compose
//! network, Docker's embedded resolver, which knows each service's running
//! containers by the service's name).
//!
//! The relay is linked statically, and glibc's resolver in a static binary
//! needs the shared NSS modules of the glibc it was built with, which the
//! image may not have; so the relay asks the resolver itself.

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::time::Duration;

/// How long one query waits for its answer.
const WAIT: Duration = Duration::from_secs(2);

/// The first `nameserver` of `resolv_conf`'s text.
pub fn nameserver(resolv_conf: &str) -> Option<SocketAddr> {
    resolv_conf.lines().find_map(|line| {
        let mut words = line.split_whitespace();
        (words.next() == Some("nameserver"))
            .then(|| words.next()?.parse::<std::net::IpAddr>().ok())
            .flatten()
            .map(|ip| SocketAddr::new(ip, 53))
    })
}

/// The A records of `name`, asked of `server`.
pub fn lookup(server: SocketAddr, name: &str, id: u16) -> std::io::Result<Vec<Ipv4Addr>> {
    let query = query(name, id)
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a host name"))?;
    let bind: SocketAddr = if server.is_ipv4() {
        "0.0.0.0:0".parse().expect("an address")
    } else {
        "[::]:0".parse().expect("an address")
    };
    let socket = UdpSocket::bind(bind)?;
    socket.set_read_timeout(Some(WAIT))?;
    socket.connect(server)?;
    socket.send(&query)?;
    let mut buf = [0u8; 4096];
    loop {
        let n = socket.recv(&mut buf)?;
        if let Some(addrs) = parse_answer(&buf[..n], id) {
            return Ok(addrs);
        }
    }
}

/// A recursive query for the A records of `name`, or `None` when `name` is
/// no host name.
fn query(name: &str, id: u16) -> Option<Vec<u8>> {
    let mut q = Vec::with_capacity(18 + name.len());
    q.extend_from_slice(&id.to_be_bytes());
    q.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.trim_end_matches('.').split('.') {
        if label.is_empty() || label.len() > 63 {
            return None;
        }
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.extend_from_slice(&[0, 0, 1, 0, 1]);
    Some(q)
}

/// The A records of the answer `msg` to query `id`; `None` when it is not
/// that answer; no records when the name has none.
fn parse_answer(msg: &[u8], id: u16) -> Option<Vec<Ipv4Addr>> {
    let u16_at = |at: usize| Some(u16::from_be_bytes([*msg.get(at)?, *msg.get(at + 1)?]));
    if u16_at(0)? != id || msg.get(2)? & 0x80 == 0 {
        return None;
    }
    let (questions, answers) = (u16_at(4)?, u16_at(6)?);
    let mut at = 12;
    for _ in 0..questions {
        at = skip_name(msg, at)? + 4;
    }
    let mut out = Vec::new();
    for _ in 0..answers {
        at = skip_name(msg, at)?;
        let (kind, class, len) = (u16_at(at)?, u16_at(at + 2)?, usize::from(u16_at(at + 8)?));
        let data = msg.get(at + 10..at + 10 + len)?;
        if kind == 1 && class == 1 && len == 4 {
            out.push(Ipv4Addr::new(data[0], data[1], data[2], data[3]));
        }
        at += 10 + len;
    }
    Some(out)
}

/// Where the name that starts at `at` ends.
fn skip_name(msg: &[u8], mut at: usize) -> Option<usize> {
    loop {
        let len = *msg.get(at)?;
        match len {
            0 => return Some(at + 1),
            l if l & 0xC0 == 0xC0 => return Some(at + 2),
            l => at += 1 + usize::from(l),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_nameserver_is_asked() {
        let conf = "search example\nnameserver 127.0.0.11\nnameserver 10.0.0.2\noptions ndots:0\n";
        assert_eq!(nameserver(conf), Some("127.0.0.11:53".parse().unwrap()));
        assert_eq!(nameserver("search x\n"), None);
    }

    #[test]
    fn an_answer_with_two_records_gives_both() {
        let q = query("app", 0x1234).unwrap();
        assert_eq!(&q[12..], b"\x03app\x00\x00\x01\x00\x01");
        let mut a = q.clone();
        a[2] = 0x81;
        a[3] = 0x80;
        a[7] = 2;
        for ip in [[172, 18, 0, 3], [172, 18, 0, 4]] {
            a.extend_from_slice(&[0xC0, 12, 0, 1, 0, 1, 0, 0, 2, 88, 0, 4]);
            a.extend_from_slice(&ip);
        }
        assert_eq!(
            parse_answer(&a, 0x1234),
            Some(vec![
                Ipv4Addr::new(172, 18, 0, 3),
                Ipv4Addr::new(172, 18, 0, 4)
            ])
        );
        // Another query's answer, or the query itself, is not the answer.
        assert_eq!(parse_answer(&a, 0x4321), None);
        assert_eq!(parse_answer(&q, 0x1234), None);
        assert!(query("a..b", 1).is_none());
    }
}
