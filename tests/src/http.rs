//! Plain HTTP/1.1 GETs from the host, to see what a stack serves before and after a run.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// An HTTP answer read by [`wait_http`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpAnswer {
    /// The status.
    pub status: u16,
    /// `X-Demo-Version`, if present.
    pub version: Option<String>,
    /// `X-Demo-Instance` (the demo app's host name), if present.
    pub instance: Option<String>,
    /// The body.
    pub body: String,
}

fn get_once(addr: SocketAddr, path: &str) -> std::io::Result<HttpAnswer> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("no status in {head:?}")))?;
    let header = |name: &str| {
        head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
        })
    };
    Ok(HttpAnswer {
        status,
        version: header("x-demo-version"),
        instance: header("x-demo-instance"),
        body: body.to_string(),
    })
}

/// GETs `path` on `addr` until `accept` likes the answer, at most for `timeout`; panics with
/// the last answer or error otherwise.
pub fn wait_http(
    addr: SocketAddr,
    path: &str,
    timeout: Duration,
    accept: impl Fn(&HttpAnswer) -> bool,
) -> HttpAnswer {
    let deadline = Instant::now() + timeout;
    loop {
        let last = match get_once(addr, path) {
            Ok(a) if accept(&a) => return a,
            Ok(a) => format!("{a:?}"),
            Err(e) => e.to_string(),
        };
        assert!(
            Instant::now() < deadline,
            "http://{addr}{path} gave no acceptable answer within {timeout:?}; last: {last}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
