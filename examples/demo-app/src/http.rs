//! Just enough HTTP/1.1 for the demo app: request heads with a content length, keep-alive, and
//! the health probe the image's HEALTHCHECK runs.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::time::Duration;

/// Longest request head the server accepts.
pub const MAX_HEAD: usize = 16 * 1024;
/// Largest request body the server accepts.
pub const MAX_BODY: usize = 1024 * 1024;

/// A parsed request head.
#[derive(Debug, PartialEq, Eq)]
pub struct Head {
    pub method: String,
    pub path: String,
    pub query: String,
    pub content_length: usize,
    /// The client asked to close after this request (or spoke HTTP/1.0 without keep-alive).
    pub close: bool,
    pub chunked: bool,
}

/// Why a head could not be read.
#[derive(Debug, PartialEq, Eq)]
pub struct BadRequest(pub &'static str);

/// Where the head ends (index after the blank line), if it is complete.
pub fn head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|p| p + 4)
}

/// Parses a complete head (up to and including the blank line).
pub fn parse_head(raw: &[u8]) -> Result<Head, BadRequest> {
    let text = std::str::from_utf8(raw).map_err(|_| BadRequest("head is not utf-8"))?;
    let mut lines = text.split("\r\n");
    let request_line = lines.next().ok_or(BadRequest("empty head"))?;
    let mut parts = request_line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(BadRequest("malformed request line"));
    };
    let http10 = match version {
        "HTTP/1.1" => false,
        "HTTP/1.0" => true,
        _ => return Err(BadRequest("unsupported http version")),
    };
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let mut head = Head {
        method: method.to_string(),
        path: path.to_string(),
        query: query.to_string(),
        content_length: 0,
        close: http10,
        chunked: false,
    };
    for line in lines.filter(|l| !l.is_empty()) {
        let (name, value) = line.split_once(':').ok_or(BadRequest("malformed header"))?;
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            head.content_length = value
                .parse()
                .map_err(|_| BadRequest("bad content-length"))?;
        } else if name.eq_ignore_ascii_case("connection") {
            for token in value.split(',').map(str::trim) {
                if token.eq_ignore_ascii_case("close") {
                    head.close = true;
                } else if token.eq_ignore_ascii_case("keep-alive") {
                    head.close = false;
                }
            }
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            head.chunked = !value.eq_ignore_ascii_case("identity");
        }
    }
    Ok(head)
}

/// The value of `key` in a query string such as `ms=200&x=1`.
pub fn query_param<'a>(query: &'a str, key: &str) -> Option<&'a str> {
    query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v)
}

/// The reason phrase of the statuses the app sends.
pub fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        413 => "Payload Too Large",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        _ => "Unknown",
    }
}

/// Serializes a response with the version and instance headers.
pub fn response(status: u16, version: &str, instance: &str, body: &str, close: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(256 + body.len());
    // write! on a Vec cannot fail
    let _ = write!(
        out,
        "HTTP/1.1 {status} {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
         X-Demo-Version: {version}\r\nX-Demo-Instance: {instance}\r\nConnection: {}\r\n\r\n{body}",
        reason(status),
        body.len(),
        if close { "close" } else { "keep-alive" },
    );
    out
}

/// A JSON string literal.
pub fn json_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// GET /health on 127.0.0.1:`port`; the status it answered.
pub fn probe_health(port: u16, timeout: Duration) -> Result<u16, String> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut stream = TcpStream::connect_timeout(&addr, timeout)
        .map_err(|e| format!("cannot connect to {addr}: {e}"))?;
    stream
        .set_read_timeout(Some(timeout))
        .and_then(|()| stream.set_write_timeout(Some(timeout)))
        .map_err(|e| format!("cannot set timeouts: {e}"))?;
    stream
        .write_all(b"GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .map_err(|e| format!("cannot send the request to {addr}: {e}"))?;
    let mut answer = Vec::new();
    let mut buf = [0u8; 1024];
    while !answer.windows(2).any(|w| w == b"\r\n") && answer.len() < 4096 {
        let n = stream
            .read(&mut buf)
            .map_err(|e| format!("cannot read the answer from {addr}: {e}"))?;
        if n == 0 {
            break;
        }
        answer.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&answer);
    let status_line = text.lines().next().unwrap_or_default();
    status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("no http status in the answer {status_line:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_keep_alive_get() {
        let raw = b"GET /slow?ms=200 HTTP/1.1\r\nHost: x\r\n\r\n";
        let head = parse_head(raw).unwrap();
        assert_eq!(head.method, "GET");
        assert_eq!(head.path, "/slow");
        assert_eq!(query_param(&head.query, "ms"), Some("200"));
        assert!(!head.close);
        assert_eq!(head.content_length, 0);
    }

    #[test]
    fn http10_closes_unless_asked_to_keep_alive() {
        let head = parse_head(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n").unwrap();
        assert!(head.close);
        let head = parse_head(b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n").unwrap();
        assert!(!head.close);
    }

    #[test]
    fn reads_content_length_and_close() {
        let raw = b"POST /submit HTTP/1.1\r\ncontent-length: 12\r\nConnection: close\r\n\r\n";
        let head = parse_head(raw).unwrap();
        assert_eq!(head.content_length, 12);
        assert!(head.close);
    }

    #[test]
    fn rejects_garbage() {
        assert!(parse_head(b"HELLO\r\n\r\n").is_err());
        assert!(parse_head(b"GET / HTTP/2\r\n\r\n").is_err());
        assert!(parse_head(b"POST / HTTP/1.1\r\nContent-Length: x\r\n\r\n").is_err());
    }

    #[test]
    fn finds_the_end_of_a_head() {
        assert_eq!(head_end(b"GET / HTTP/1.1\r\n\r\nrest"), Some(18));
        assert_eq!(head_end(b"GET / HTTP/1.1\r\n"), None);
    }

    #[test]
    fn response_carries_version_instance_and_length() {
        let r = String::from_utf8(response(200, "v2", "abc", "{}", false)).unwrap();
        assert!(r.starts_with("HTTP/1.1 200 OK\r\n"));
        assert!(r.contains("X-Demo-Version: v2\r\n"));
        assert!(r.contains("X-Demo-Instance: abc\r\n"));
        assert!(r.contains("Content-Length: 2\r\n"));
        assert!(r.contains("Connection: keep-alive\r\n"));
        assert!(r.ends_with("\r\n\r\n{}"));
    }

    #[test]
    fn escapes_json() {
        assert_eq!(json_str("a\"b\\c\n"), "\"a\\\"b\\\\c\\u000a\"");
    }
}
