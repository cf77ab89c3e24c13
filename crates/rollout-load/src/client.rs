//! A minimal HTTP/1.1 client: one request and its answer on a connection, and a pool of idle
//! keep-alive connections that are checked before reuse.

use std::io::ErrorKind;
use std::net::SocketAddr;
use std::sync::Mutex;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Longest answer head we read.
const MAX_HEAD: usize = 64 * 1024;
/// Largest answer body we read.
const MAX_BODY: usize = 16 * 1024 * 1024;
/// Idle connections kept for reuse.
const MAX_IDLE: usize = 256;

/// An open connection and the bytes read past the last answer.
#[derive(Debug)]
pub(crate) struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
    /// Answers already read on it: above 0 it is a reused keep-alive connection.
    pub(crate) uses: u32,
}

/// The answer to a request.
#[derive(Debug)]
pub(crate) struct Answer {
    pub(crate) status: u16,
    pub(crate) version: Option<String>,
    pub(crate) instance: Option<String>,
    /// The connection may carry another request.
    pub(crate) keep_alive: bool,
}

/// Why an exchange failed.
#[derive(Debug)]
pub(crate) enum Failure {
    /// The connection could not be opened.
    Connect(std::io::Error),
    /// Reading or writing failed.
    Io(std::io::Error),
    /// The server closed the connection before the whole answer came.
    Closed,
    /// The answer was not HTTP/1.1 as we know it.
    Protocol(String),
}

/// A failed exchange: why, and whether any byte of the answer had arrived.
#[derive(Debug)]
pub(crate) struct ExchangeError {
    pub(crate) failure: Failure,
    pub(crate) got_bytes: bool,
}

impl ExchangeError {
    /// The connection was closed or reset before any byte of the answer came: the case in
    /// which a client retries an idempotent request sent on a reused connection.
    pub(crate) fn closed_before_answer(&self) -> bool {
        !self.got_bytes
            && match &self.failure {
                Failure::Closed => true,
                Failure::Io(e) => matches!(
                    e.kind(),
                    ErrorKind::ConnectionReset
                        | ErrorKind::BrokenPipe
                        | ErrorKind::ConnectionAborted
                ),
                Failure::Connect(_) | Failure::Protocol(_) => false,
            }
    }
}

/// Opens a new connection.
pub(crate) async fn connect(target: SocketAddr) -> Result<Conn, ExchangeError> {
    let stream = TcpStream::connect(target)
        .await
        .map_err(|e| ExchangeError {
            failure: Failure::Connect(e),
            got_bytes: false,
        })?;
    let _ = stream.set_nodelay(true);
    Ok(Conn {
        stream,
        buf: Vec::with_capacity(1024),
        uses: 0,
    })
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

impl Conn {
    /// Whether the peer has closed (or sent something unasked on) this idle connection.
    fn is_stale(&self) -> bool {
        let mut probe = [0u8; 1];
        !matches!(self.stream.try_read(&mut probe), Err(e) if e.kind() == ErrorKind::WouldBlock)
    }

    async fn fill(&mut self, got_bytes: &mut bool) -> Result<(), ExchangeError> {
        let mut chunk = [0u8; 16 * 1024];
        match self.stream.read(&mut chunk).await {
            Ok(0) => Err(ExchangeError {
                failure: Failure::Closed,
                got_bytes: *got_bytes,
            }),
            Ok(n) => {
                *got_bytes = true;
                self.buf.extend_from_slice(&chunk[..n]);
                Ok(())
            }
            Err(e) => Err(ExchangeError {
                failure: Failure::Io(e),
                got_bytes: *got_bytes,
            }),
        }
    }

    /// Sends `request` and reads its answer.
    pub(crate) async fn exchange(&mut self, request: &[u8]) -> Result<Answer, ExchangeError> {
        let mut got_bytes = false;
        if let Err(e) = self.stream.write_all(request).await {
            return Err(ExchangeError {
                failure: Failure::Io(e),
                got_bytes,
            });
        }
        let protocol = |why: String| ExchangeError {
            failure: Failure::Protocol(why),
            got_bytes: true,
        };
        let head_end = loop {
            if let Some(p) = find(&self.buf, b"\r\n\r\n") {
                break p + 4;
            }
            if self.buf.len() > MAX_HEAD {
                return Err(protocol("answer head too long".into()));
            }
            self.fill(&mut got_bytes).await?;
        };
        let head = String::from_utf8_lossy(&self.buf[..head_end]).into_owned();
        self.buf.drain(..head_end);
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap_or_default();
        let mut parts = status_line.splitn(3, ' ');
        let http11 = match parts.next() {
            Some("HTTP/1.1") => true,
            Some("HTTP/1.0") => false,
            _ => return Err(protocol(format!("bad status line {status_line:?}"))),
        };
        let status: u16 = parts
            .next()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| protocol(format!("bad status line {status_line:?}")))?;
        let mut answer = Answer {
            status,
            version: None,
            instance: None,
            keep_alive: http11,
        };
        let mut length: Option<usize> = None;
        let mut chunked = false;
        for line in lines.filter(|l| !l.is_empty()) {
            let Some((name, value)) = line.split_once(':') else {
                return Err(protocol(format!("bad header line {line:?}")));
            };
            let value = value.trim();
            if name.eq_ignore_ascii_case("content-length") {
                length = Some(
                    value
                        .parse()
                        .map_err(|_| protocol(format!("bad content-length {value:?}")))?,
                );
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                chunked = value.to_ascii_lowercase().contains("chunked");
            } else if name.eq_ignore_ascii_case("connection") {
                let v = value.to_ascii_lowercase();
                if v.contains("close") {
                    answer.keep_alive = false;
                } else if v.contains("keep-alive") {
                    answer.keep_alive = true;
                }
            } else if name.eq_ignore_ascii_case("x-demo-version") {
                answer.version = Some(value.to_string());
            } else if name.eq_ignore_ascii_case("x-demo-instance") {
                answer.instance = Some(value.to_string());
            }
        }
        let no_body = status == 204 || status == 304 || (100..200).contains(&status);
        if no_body {
        } else if chunked {
            self.read_chunked(&mut got_bytes).await?;
        } else if let Some(len) = length {
            if len > MAX_BODY {
                return Err(protocol(format!("body of {len} bytes is too large")));
            }
            while self.buf.len() < len {
                self.fill(&mut got_bytes).await?;
            }
            self.buf.drain(..len);
        } else {
            // Delimited by the end of the connection.
            answer.keep_alive = false;
            loop {
                match self.fill(&mut got_bytes).await {
                    Ok(()) if self.buf.len() > MAX_BODY => {
                        return Err(protocol("body too large".into()))
                    }
                    Ok(()) => {}
                    Err(ExchangeError {
                        failure: Failure::Closed,
                        ..
                    }) => break,
                    Err(e) => return Err(e),
                }
            }
            self.buf.clear();
        }
        if !self.buf.is_empty() {
            // Bytes nobody asked for: do not reuse the connection.
            answer.keep_alive = false;
        }
        self.uses += 1;
        Ok(answer)
    }

    async fn read_chunked(&mut self, got_bytes: &mut bool) -> Result<(), ExchangeError> {
        let protocol = |why: &str| ExchangeError {
            failure: Failure::Protocol(why.into()),
            got_bytes: true,
        };
        let mut total = 0usize;
        loop {
            let line_end = loop {
                if let Some(p) = find(&self.buf, b"\r\n") {
                    break p;
                }
                self.fill(got_bytes).await?;
            };
            let size_text = String::from_utf8_lossy(&self.buf[..line_end]).into_owned();
            let size_hex = size_text.split(';').next().unwrap_or_default().trim();
            let size =
                usize::from_str_radix(size_hex, 16).map_err(|_| protocol("bad chunk size"))?;
            self.buf.drain(..line_end + 2);
            total += size;
            if total > MAX_BODY {
                return Err(protocol("chunked body too large"));
            }
            if size == 0 {
                // Trailers, up to the blank line.
                loop {
                    if let Some(p) = find(&self.buf, b"\r\n") {
                        let empty = p == 0;
                        self.buf.drain(..p + 2);
                        if empty {
                            return Ok(());
                        }
                    } else {
                        self.fill(got_bytes).await?;
                    }
                }
            }
            while self.buf.len() < size + 2 {
                self.fill(got_bytes).await?;
            }
            self.buf.drain(..size + 2);
        }
    }
}

/// Idle keep-alive connections, most recently used first.
#[derive(Debug, Default)]
pub(crate) struct Pool {
    idle: Mutex<Vec<Conn>>,
}

impl Pool {
    /// A live idle connection, if there is one, and how many closed ones were dropped on the
    /// way (a client notices those before it sends, as hyper's pool does).
    pub(crate) fn take(&self) -> (Option<Conn>, u64) {
        let mut dropped = 0;
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        while let Some(conn) = idle.pop() {
            if conn.is_stale() {
                dropped += 1;
                continue;
            }
            return (Some(conn), dropped);
        }
        (None, dropped)
    }

    /// Returns a connection after a keep-alive answer.
    pub(crate) fn put(&self, conn: Conn) {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < MAX_IDLE {
            idle.push(conn);
        }
    }

    /// Closes every idle connection.
    pub(crate) fn clear(&self) {
        self.idle.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }
}
