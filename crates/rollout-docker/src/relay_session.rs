//! A kept session with the HAProxy relay (`rollout-haproxy-relay --serve`):
//! one exec for a whole run, its standard input and output held attached,
//! instead of one exec per batch of runtime API commands.
//!
//! An exec costs a few engine calls and a process start (about 45 ms here);
//! a batch through a kept session costs a write and a read on a connection
//! the engine already holds. A run sends a change's batch, its read-back and
//! every drain poll this way. The session ends when its input closes: when
//! the run lets it go ([`Session::close`]), and when the run dies (the engine
//! closes the input of an exec whose client is gone).

use crate::engine::Engine;
use crate::kept_shell::attach;
use bollard::container::LogOutput;
use futures::{Stream, StreamExt};
use std::pin::Pin;
use std::time::Duration;
use tokio::io::{AsyncWrite, AsyncWriteExt};

/// What `--serve` says first.
const HELLO: &[u8] = b"rollout-haproxy-relay serve 1";

/// How long a session may take to say hello.
const HELLO_WAIT: Duration = Duration::from_secs(5);
/// How long a batch may take per command: the relay gives up on HAProxy
/// after 10 s per command itself, so it answers first.
const PER_COMMAND_WAIT: Duration = Duration::from_secs(10);
/// And beyond that, for the whole batch.
const BATCH_MARGIN: Duration = Duration::from_secs(5);

type Output = Pin<Box<dyn Stream<Item = Result<LogOutput, bollard::errors::Error>> + Send>>;

/// One frame of the relay's answer.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame {
    /// HAProxy's answer (`0`).
    Answer(String),
    /// The relay could not send it: the socket failed (`1`) or the command
    /// was refused (`2`); the rest of the batch was not sent.
    Failed(String),
    /// No answer within the relay's time (`3`); the rest was not sent.
    Timeout(String),
}

/// Why a session could not be had or used.
#[derive(Debug)]
pub enum SessionError {
    /// The relay in the image predates `--serve` (it ended, or answered
    /// something else than the hello): the caller goes on with one exec per
    /// batch.
    Unsupported(String),
    /// The exec could not be made, or the session broke (its output ended,
    /// a write failed, no answer in time): what was sent may or may not have
    /// reached HAProxy.
    Broken(String),
}

impl std::fmt::Display for SessionError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SessionError::Unsupported(why) | SessionError::Broken(why) => f.write_str(why),
        }
    }
}

/// A kept relay in a proxy container.
pub struct Session {
    input: Pin<Box<dyn AsyncWrite + Send>>,
    output: Output,
    /// Bytes read past the last whole frame.
    pending: Vec<u8>,
    /// What the relay printed on standard error, for messages.
    stderr: Vec<u8>,
}

impl Session {
    /// Starts `relay --serve socket` in `container` and waits for its hello.
    pub async fn open(
        engine: &Engine,
        container: &str,
        relay: &str,
        socket: &str,
    ) -> Result<Session, SessionError> {
        let unsupported = |why: String| SessionError::Unsupported(why);
        let cmd = vec![relay.into(), "--serve".into(), socket.into()];
        let (input, output) = attach(engine, container, cmd, None)
            .await
            .map_err(SessionError::Broken)?;
        let mut session = Session {
            input,
            output,
            pending: Vec::new(),
            stderr: Vec::new(),
        };
        // A relay from before `--serve` takes it for a socket path: it fails
        // to connect and ends, or answers something else.
        match tokio::time::timeout(HELLO_WAIT, session.frame()).await {
            Ok(Ok(Frame::Answer(hello))) if hello.as_bytes() == HELLO => Ok(session),
            Ok(Ok(other)) => Err(unsupported(format!("the relay said {other:?}"))),
            Ok(Err(e)) => Err(unsupported(e.to_string())),
            Err(_) => Err(SessionError::Broken(format!(
                "the relay said nothing within {} s",
                HELLO_WAIT.as_secs()
            ))),
        }
    }

    /// Sends `lines` (one runtime API command each, checked by the caller)
    /// as one batch and reads its frames: one per command, fewer when one
    /// failed (the last is then the failure).
    pub async fn batch(&mut self, lines: &[String]) -> Result<Vec<Frame>, SessionError> {
        let mut text = String::new();
        for line in lines {
            if line.is_empty() || line.contains(['\n', '\r', '\0']) {
                return Err(SessionError::Broken(format!(
                    "{line:?} is not one command line"
                )));
            }
            text.push_str(line);
            text.push('\n');
        }
        text.push('\n');
        let exchange = async {
            self.input
                .write_all(text.as_bytes())
                .await
                .map_err(|e| SessionError::Broken(format!("writing to the relay: {e}")))?;
            self.input
                .flush()
                .await
                .map_err(|e| SessionError::Broken(format!("writing to the relay: {e}")))?;
            let mut frames = Vec::with_capacity(lines.len());
            while frames.len() < lines.len() {
                let frame = self.frame().await?;
                let last = !matches!(frame, Frame::Answer(_));
                frames.push(frame);
                if last {
                    break;
                }
            }
            Ok(frames)
        };
        let wait = PER_COMMAND_WAIT * lines.len().min(1000) as u32 + BATCH_MARGIN;
        match tokio::time::timeout(wait, exchange).await {
            Ok(done) => done,
            Err(_) => Err(SessionError::Broken(format!(
                "the relay did not answer within {} s",
                wait.as_secs()
            ))),
        }
    }

    /// Ends the session: the relay exits at the end of its input.
    pub async fn close(mut self) {
        let _ = self.input.shutdown().await;
    }

    /// The next whole frame.
    async fn frame(&mut self) -> Result<Frame, SessionError> {
        loop {
            if let Some(end) = self.pending.iter().position(|b| *b == 0) {
                let raw: Vec<u8> = self.pending.drain(..=end).collect();
                return Ok(parse_frame(&raw[..end]));
            }
            match self.output.next().await {
                Some(Ok(LogOutput::StdOut { message } | LogOutput::Console { message })) => {
                    self.pending.extend_from_slice(&message)
                }
                Some(Ok(LogOutput::StdErr { message })) => self.stderr.extend_from_slice(&message),
                Some(Ok(LogOutput::StdIn { .. })) => {}
                Some(Err(e)) => {
                    return Err(SessionError::Broken(format!("reading the relay: {e}")))
                }
                None => {
                    let said = String::from_utf8_lossy(&self.stderr).trim().to_string();
                    return Err(SessionError::Broken(if said.is_empty() {
                        "the relay ended".to_string()
                    } else {
                        format!("the relay ended: {said}")
                    }));
                }
            }
        }
    }
}

/// A frame without its NUL: the status byte, then the text.
fn parse_frame(raw: &[u8]) -> Frame {
    let text = String::from_utf8_lossy(raw.get(1..).unwrap_or_default()).to_string();
    match raw.first() {
        Some(b'0') => Frame::Answer(text),
        Some(b'3') => Frame::Timeout(text),
        Some(b'1' | b'2') => Frame::Failed(text),
        _ => Frame::Failed(format!("a frame the relay does not send: {text:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_read_as_the_relay_writes_them() {
        assert_eq!(
            parse_frame(b"01\n# be_id\n\n"),
            Frame::Answer("1\n# be_id\n\n".into())
        );
        assert_eq!(parse_frame(b"0"), Frame::Answer(String::new()));
        assert_eq!(
            parse_frame(b"1sock: gone"),
            Frame::Failed("sock: gone".into())
        );
        assert_eq!(parse_frame(b"2refused"), Frame::Failed("refused".into()));
        assert_eq!(parse_frame(b"3late"), Frame::Timeout("late".into()));
        assert!(matches!(parse_frame(b""), Frame::Failed(_)));
    }
}
