//! The webhook: one JSON POST over plain HTTP/1.1, with a timeout per
//! request and a bounded number of retries.
//!
//! A request is small and the answer's status line is all that is read, so
//! a client of a few dozen lines over a TCP stream does it (no HTTP stack:
//! a POST with `Content-Length` and `Connection: close`). `https://` is
//! refused when the URL is read (rollout-core's `WebhookUrl`): TLS would
//! need a crypto stack. The URL's path is never shown: it often holds the
//! receiver's token.

use rollout_core::hooks::{Webhook, WebhookUrl};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The pause before the first retry; each later one doubles it.
const FIRST_PAUSE: Duration = Duration::from_millis(250);

/// The most of an answer read to find its status line.
const HEAD_MAX: usize = 8192;

/// What the receiver said, once it said 2xx.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivered {
    /// The HTTP status.
    pub status: u16,
    /// Requests sent (1 when the first one was taken).
    pub attempts: u32,
}

/// Why one request failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Attempt {
    /// The host name did not resolve, or the connection was refused.
    #[error("cannot connect: {0}")]
    Connect(String),
    /// No answer within the timeout.
    #[error("no answer within {}", rollout_core::format_duration(*.0))]
    Timeout(Duration),
    /// The connection broke, or the answer was not HTTP.
    #[error("{0}")]
    Broken(String),
    /// The receiver answered with a status other than 2xx.
    #[error("the receiver answered {0}")]
    Status(u16),
}

impl Attempt {
    /// Whether trying again may help: not for a status that says the
    /// request itself is wrong (4xx other than 408 and 429, a redirect).
    fn retryable(&self) -> bool {
        match self {
            Attempt::Status(s) => matches!(s, 408 | 429 | 500..=599),
            _ => true,
        }
    }
}

/// The webhook was not delivered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the webhook {url} was not delivered after {attempts} attempt{}: {last}", if *.attempts == 1 { "" } else { "s" })]
pub struct NotDelivered {
    /// The URL, its path hidden.
    pub url: String,
    /// Requests sent.
    pub attempts: u32,
    /// Why the last one failed.
    pub last: Attempt,
}

/// POSTs `body` (JSON) to the webhook, trying again after a failure that
/// may pass, up to `webhook.retries` times.
pub async fn send(webhook: &Webhook, body: &str) -> Result<Delivered, NotDelivered> {
    let mut attempts = 0;
    let mut pause = FIRST_PAUSE;
    loop {
        attempts += 1;
        match post(&webhook.url, body, webhook.timeout).await {
            Ok(status) => return Ok(Delivered { status, attempts }),
            Err(last) if !last.retryable() || attempts > webhook.retries => {
                return Err(NotDelivered {
                    url: webhook.url.redacted(),
                    attempts,
                    last,
                })
            }
            Err(_) => {
                tokio::time::sleep(pause).await;
                pause *= 2;
            }
        }
    }
}

/// One POST, bounded by `timeout` from the connection to the status line.
pub async fn post(url: &WebhookUrl, body: &str, timeout: Duration) -> Result<u16, Attempt> {
    match tokio::time::timeout(timeout, exchange(url, body)).await {
        Ok(r) => r,
        Err(_) => Err(Attempt::Timeout(timeout)),
    }
}

async fn exchange(url: &WebhookUrl, body: &str) -> Result<u16, Attempt> {
    let mut stream = connect(url).await?;
    let request = format!(
        "POST {target} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: docker-rollout/{version}\r\nContent-Type: application/json\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n",
        target = url.target,
        host = url.authority(),
        version = env!("CARGO_PKG_VERSION"),
        len = body.len(),
    );
    let broken = |e: std::io::Error| Attempt::Broken(format!("the connection broke: {e}"));
    stream.write_all(request.as_bytes()).await.map_err(broken)?;
    stream.write_all(body.as_bytes()).await.map_err(broken)?;
    stream.flush().await.map_err(broken)?;
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(2).any(|w| w == b"\r\n") && head.len() < HEAD_MAX {
        let n = stream.read(&mut buf).await.map_err(broken)?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    let status = status_of(&head).ok_or_else(|| {
        Attempt::Broken(if head.is_empty() {
            "the receiver closed the connection without answering".to_string()
        } else {
            "the answer is not HTTP".to_string()
        })
    })?;
    if (200..300).contains(&status) {
        Ok(status)
    } else {
        Err(Attempt::Status(status))
    }
}

async fn connect(url: &WebhookUrl) -> Result<TcpStream, Attempt> {
    let addrs = tokio::net::lookup_host((url.host.as_str(), url.port))
        .await
        .map_err(|e| Attempt::Connect(format!("{}: {e}", url.host)))?;
    let mut last = Attempt::Connect(format!("{} resolves to no address", url.host));
    for addr in addrs {
        match TcpStream::connect(addr).await {
            Ok(s) => return Ok(s),
            Err(e) => last = Attempt::Connect(format!("{addr}: {e}")),
        }
    }
    Err(last)
}

/// The status of `HTTP/1.x NNN ...`.
fn status_of(head: &[u8]) -> Option<u16> {
    let line = head.split(|b| *b == b'\n').next()?;
    let line = std::str::from_utf8(line).ok()?;
    let mut words = line.split_whitespace();
    if !words.next()?.starts_with("HTTP/1.") {
        return None;
    }
    words
        .next()?
        .parse()
        .ok()
        .filter(|s| (100..600).contains(s))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_status_line_is_read_and_anything_else_refused() {
        assert_eq!(status_of(b"HTTP/1.1 204 No Content\r\n\r\n"), Some(204));
        assert_eq!(status_of(b"HTTP/1.0 503\r\n"), Some(503));
        assert_eq!(status_of(b"SSH-2.0-OpenSSH\r\n"), None);
        assert_eq!(status_of(b"HTTP/1.1 abc\r\n"), None);
        assert_eq!(status_of(b""), None);
        assert!(Attempt::Status(503).retryable());
        assert!(Attempt::Status(429).retryable());
        assert!(!Attempt::Status(404).retryable());
        assert!(!Attempt::Status(301).retryable());
        assert!(Attempt::Connect("x".into()).retryable());
    }
}
