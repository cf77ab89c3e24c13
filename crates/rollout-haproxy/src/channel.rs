//! How a command reaches HAProxy's runtime API: one small trait, and two
//! implementations over a socket reached directly.
//!
//! The runtime API is a line protocol: a client sends one command line and
//! HAProxy answers with text that ends with an empty line; in its default
//! (non-interactive) mode it then closes the connection. A
//! [`RuntimeChannel`] sends one [`Command`] (never a string: see
//! [`crate::command`]) and gives back the answer without that empty line.
//!
//! [`UnixChannel`] (a `stats socket /path`) and [`TcpChannel`] (a `stats
//! socket ipv4@IP:PORT`) connect directly, one connection per command: what
//! the crate's tests use against a local haproxy, and what a host that can
//! reach the socket uses. A proxy in a container that the host cannot reach
//! gets another implementation of the same trait (an exec of a relay in the
//! container, or a TCP admin port the operator publishes on loopback); the
//! router does not change.

use crate::command::{Command, Name, Weight};
use async_trait::async_trait;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// The runtime API could not be reached, or did not answer in time.
#[derive(Debug, thiserror::Error)]
pub enum ChannelError {
    /// No connection, or it broke.
    #[error("cannot reach haproxy's runtime API at {at}: {reason}")]
    Io {
        /// The socket.
        at: String,
        /// What went wrong.
        reason: String,
    },
    /// No complete answer within the limit.
    #[error("haproxy's runtime API at {at} did not answer `{command}` within {millis} ms")]
    Timeout {
        /// The socket.
        at: String,
        /// The command sent.
        command: String,
        /// The limit.
        millis: u128,
    },
    /// The answer grew past the limit (a runaway or wrong peer).
    #[error("the answer of haproxy's runtime API at {at} to `{command}` passed {limit} bytes")]
    TooLong {
        /// The socket.
        at: String,
        /// The command sent.
        command: String,
        /// The limit.
        limit: usize,
    },
}

/// Sends one runtime API command and reads its answer.
#[async_trait]
pub trait RuntimeChannel: Send + Sync {
    /// Sends `command` as one line and returns the answer, without the empty
    /// line that ends it. A refusal is an answer, not an error: the caller
    /// judges it with [`Command::accepts`].
    async fn send(&self, command: &Command) -> Result<String, ChannelError>;

    /// Sends `commands` in order and returns their answers in the same
    /// order, as [`RuntimeChannel::send`] would one by one (which is what
    /// this default does). A channel with a cost per call (an exec) sends
    /// them in one. Every command is sent even when HAProxy refuses an
    /// earlier one: the caller judges the answers, and undoes all of them.
    async fn send_all(&self, commands: &[Command]) -> Result<Vec<String>, ChannelError> {
        let mut answers = Vec::with_capacity(commands.len());
        for command in commands {
            answers.push(self.send(command).await?);
        }
        Ok(answers)
    }

    /// Keeps `rest`, a backend's state at rest, beside the HAProxy, so that
    /// it gets it back when it restarts (an HAProxy forgets at each start
    /// what its runtime API was told). `Ok(false)` when this channel has
    /// nowhere to keep it (this default: a socket reached directly; the
    /// operator's HAProxy then waits for the next run after a restart).
    async fn keep_rest(&self, rest: &AtRest) -> Result<bool, ChannelError> {
        let _ = rest;
        Ok(false)
    }

    /// Where it leads, for messages (`unix:/run/haproxy/admin.sock`).
    fn describe(&self) -> String;

    /// Lets go of what the channel keeps open for a run (a kept relay), as
    /// the run ends; a later call opens it again. Nothing by default.
    async fn close(&self) {}
}

/// A backend's state at rest: every route names a service, whose running
/// instances fill the slots (a restarted HAProxy is given them by name, so
/// that instances with new addresses are found where they are now).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AtRest {
    /// The backend.
    pub backend: Name,
    /// Its `server-template` slots, in the config's order.
    pub slots: Vec<Name>,
    /// Each service at rest: its name (a host name its instances answer
    /// to), the port behind the proxy, the weight of each instance.
    pub routes: Vec<(String, u16, Weight)>,
}

impl AtRest {
    /// The arguments the relay's `--keep` takes after the socket: the
    /// backend, the slots comma-separated, `HOST:PORT:WEIGHT` per route.
    pub fn relay_args(&self) -> Vec<String> {
        let mut args = vec![
            self.backend.to_string(),
            self.slots
                .iter()
                .map(Name::as_str)
                .collect::<Vec<_>>()
                .join(","),
        ];
        args.extend(
            self.routes
                .iter()
                .map(|(host, port, weight)| format!("{host}:{port}:{}", weight.get())),
        );
        args
    }
}

/// The largest answer read (a `show stat` of a backend with thousands of
/// slots is well under it).
const ANSWER_LIMIT: usize = 16 * 1024 * 1024;

/// A stats socket on a unix path this process can open.
#[derive(Debug, Clone)]
pub struct UnixChannel {
    path: PathBuf,
    timeout: Duration,
}

impl UnixChannel {
    /// The socket at `path`, with 5 s per command.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            timeout: Duration::from_secs(5),
        }
    }

    /// The same, with another limit per command.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }
}

#[async_trait]
impl RuntimeChannel for UnixChannel {
    async fn send(&self, command: &Command) -> Result<String, ChannelError> {
        let at = self.describe();
        let exchange = async {
            let stream = tokio::net::UnixStream::connect(&self.path)
                .await
                .map_err(|e| io(&at, e))?;
            exchange(stream, command, &at).await
        };
        bounded(exchange, self.timeout, &at, command).await
    }

    fn describe(&self) -> String {
        format!("unix:{}", self.path.display())
    }
}

/// A stats socket on a TCP address this process can reach (`stats socket
/// ipv4@127.0.0.1:9999 level admin`).
#[derive(Debug, Clone)]
pub struct TcpChannel {
    addr: SocketAddr,
    timeout: Duration,
}

impl TcpChannel {
    /// The socket at `addr`, with 5 s per command.
    pub fn new(addr: SocketAddr) -> Self {
        Self {
            addr,
            timeout: Duration::from_secs(5),
        }
    }

    /// The same, with another limit per command.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }
}

#[async_trait]
impl RuntimeChannel for TcpChannel {
    async fn send(&self, command: &Command) -> Result<String, ChannelError> {
        let at = self.describe();
        let exchange = async {
            let stream = tokio::net::TcpStream::connect(self.addr)
                .await
                .map_err(|e| io(&at, e))?;
            exchange(stream, command, &at).await
        };
        bounded(exchange, self.timeout, &at, command).await
    }

    fn describe(&self) -> String {
        format!("tcp:{}", self.addr)
    }
}

fn io(at: &str, e: std::io::Error) -> ChannelError {
    ChannelError::Io {
        at: at.to_string(),
        reason: e.to_string(),
    }
}

async fn bounded(
    exchange: impl std::future::Future<Output = Result<String, ChannelError>>,
    timeout: Duration,
    at: &str,
    command: &Command,
) -> Result<String, ChannelError> {
    match tokio::time::timeout(timeout, exchange).await {
        Ok(answer) => answer,
        Err(_) => Err(ChannelError::Timeout {
            at: at.to_string(),
            command: command.to_string(),
            millis: timeout.as_millis(),
        }),
    }
}

/// Writes the line, then reads until HAProxy closes the connection (it does
/// after the empty line, in non-interactive mode) or the empty line comes.
async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    command: &Command,
    at: &str,
) -> Result<String, ChannelError> {
    let line = format!("{command}\n");
    stream
        .write_all(line.as_bytes())
        .await
        .map_err(|e| io(at, e))?;
    let mut answer = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        let n = stream.read(&mut chunk).await.map_err(|e| io(at, e))?;
        if n == 0 {
            break;
        }
        answer.extend_from_slice(&chunk[..n]);
        if answer.len() > ANSWER_LIMIT {
            return Err(ChannelError::TooLong {
                at: at.to_string(),
                command: command.to_string(),
                limit: ANSWER_LIMIT,
            });
        }
    }
    Ok(strip_end(&String::from_utf8_lossy(&answer)).to_string())
}

/// The answer without the empty line that ends it.
pub(crate) fn strip_end(answer: &str) -> &str {
    answer.strip_suffix("\n\n").unwrap_or(answer)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::Name;

    #[test]
    fn the_empty_line_is_not_part_of_the_answer() {
        assert_eq!(strip_end("No such server.\n\n"), "No such server.");
        assert_eq!(strip_end("\n"), "\n");
        assert_eq!(strip_end("a\nb\n\n"), "a\nb");
    }

    #[tokio::test]
    async fn a_command_goes_out_as_one_line_and_the_answer_comes_back() {
        let (client, mut server) = tokio::io::duplex(1024);
        let peer = tokio::spawn(async move {
            let mut got = Vec::new();
            let mut byte = [0u8; 1];
            while server.read(&mut byte).await.unwrap() == 1 {
                got.push(byte[0]);
                if byte[0] == b'\n' {
                    break;
                }
            }
            server.write_all(b"hello\n\n").await.unwrap();
            drop(server);
            got
        });
        let command = Command::ShowStat {
            backend: Name::new("backend", "app").unwrap(),
        };
        let answer = exchange(client, &command, "test").await.unwrap();
        assert_eq!(answer, "hello");
        assert_eq!(peer.await.unwrap(), b"show stat app 4 -1\n");
    }
}
