//! `rollout-haproxy-relay SOCKET COMMAND...`: sends each command line to
//! HAProxy's runtime API on the unix socket `SOCKET`, one connection each,
//! in order, and copies the answers to standard output. With one command
//! the answer is copied as it came; with several, each answer is followed
//! by a NUL byte (which HAProxy's text never holds), so that a router sends
//! a whole change and its read-back in one exec.
//!
//! # Why it exists
//!
//! The stats socket of an HAProxy in a container is a path inside that
//! container, which the plugin on the host cannot open. The plugin reaches
//! it by `docker exec` of this relay with an argv (never a shell string):
//! the image is built `FROM scratch`, has no `socat`, and busybox's `nc`
//! has no unix sockets. The relay is std only and linked statically, so it
//! runs in any image.
//!
//! # What it refuses
//!
//! A command with a line break or a `;` (HAProxy chains commands with `;`)
//! is refused with exit 2 before anything is sent: each argument is one
//! command. A socket that cannot be reached exits 1 (after the answers of
//! the commands before it); an answer that does not come within 10 s exits
//! 3. HAProxy's refusals are answers (exit 0): the caller judges them.
//!
//! # A kept session
//!
//! `--serve SOCKET` stays: it reads batches on standard input (command
//! lines, then an empty line) and answers each command with a frame: a
//! status byte (`0` answered, `1` the socket failed, `2` refused, `3` no
//! answer in time), the answer or the reason, and a NUL. A batch stops at
//! its first frame that is not `0`. It first writes the frame `0` + [`HELLO`]
//! (so a caller tells it from a relay that predates it, which takes
//! `--serve` for a socket path, fails to reach it and ends) and ends at the end of its input. A run keeps one such session
//! per HAProxy and pays one exec for the whole run instead of one per change
//! and per drain poll.
//!
//! # The state at rest
//!
//! `--keep SOCKET BACKEND SLOTS HOST:PORT:WEIGHT...` keeps a backend's state
//! at rest in the container, and `--start COMMAND...` (the image's
//! entrypoint) runs `COMMAND` with a replayer beside it that puts the kept
//! states back into a restarted HAProxy: see [`rest`].

mod dns;
mod rest;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::process::ExitCode;
use std::time::Duration;

/// How long the relay waits for HAProxy's answer.
const TIMEOUT: Duration = Duration::from_secs(10);

/// What `--serve` says first.
const HELLO: &str = "rollout-haproxy-relay serve 1";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("--keep") => return keep(&args[1..]),
        Some("--start") => return start(&args[1..]),
        Some("--replay") => rest::replay(),
        Some("--serve") => return serve(&args[1..]),
        _ => {}
    }
    let Some((socket, commands)) = args.split_first().filter(|(_, c)| !c.is_empty()) else {
        eprintln!("usage: rollout-haproxy-relay SOCKET COMMAND...");
        return ExitCode::from(2);
    };
    for command in commands {
        if let Err(why) = check(command) {
            eprintln!("rollout-haproxy-relay: refused {command:?}: {why}");
            return ExitCode::from(2);
        }
    }
    match relay_all(socket, commands, &mut std::io::stdout().lock()) {
        Ok(()) => ExitCode::SUCCESS,
        Err((command, e))
            if matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ) =>
        {
            eprintln!(
                "rollout-haproxy-relay: no answer from {socket} to {command:?} within {} s",
                TIMEOUT.as_secs()
            );
            ExitCode::from(3)
        }
        Err((_, e)) => {
            eprintln!("rollout-haproxy-relay: {socket}: {e}");
            ExitCode::from(1)
        }
    }
}

/// `--serve SOCKET`: a kept session (see the crate's documentation).
fn serve(args: &[String]) -> ExitCode {
    let [socket] = args else {
        eprintln!("usage: rollout-haproxy-relay --serve SOCKET");
        return ExitCode::from(2);
    };
    let mut input = std::io::stdin().lock();
    let mut out = std::io::stdout().lock();
    match serve_on(socket, &mut input, &mut out) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rollout-haproxy-relay: --serve: {e}");
            ExitCode::from(1)
        }
    }
}

/// Answers the batches read from `input` until it ends.
fn serve_on(
    socket: &str,
    input: &mut impl std::io::BufRead,
    out: &mut impl Write,
) -> std::io::Result<()> {
    frame(out, b'0', HELLO.as_bytes())?;
    out.flush()?;
    loop {
        // A batch runs only once its empty line has come: input cut short
        // (the caller died half way through a write) runs nothing of it.
        let mut batch = Vec::new();
        loop {
            let mut line = String::new();
            if input.read_line(&mut line)? == 0 || !line.ends_with('\n') {
                return Ok(());
            }
            let line = line.trim_end_matches(['\n', '\r']);
            if line.is_empty() {
                break;
            }
            batch.push(line.to_string());
        }
        for command in &batch {
            if let Err(why) = check(command) {
                frame(out, b'2', format!("refused {command:?}: {why}").as_bytes())?;
                break;
            }
            let mut answer = Vec::new();
            match relay(socket, command, &mut answer) {
                Ok(()) => frame(out, b'0', &answer)?,
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    let why = format!(
                        "no answer from {socket} to {command:?} within {} s",
                        TIMEOUT.as_secs()
                    );
                    frame(out, b'3', why.as_bytes())?;
                    break;
                }
                Err(e) => {
                    frame(out, b'1', format!("{socket}: {e}").as_bytes())?;
                    break;
                }
            }
        }
        out.flush()?;
    }
}

/// One frame of `--serve`: the status byte, the text (never a NUL: HAProxy's
/// answers hold none, and one in a reason is dropped), a NUL.
fn frame(out: &mut impl Write, status: u8, text: &[u8]) -> std::io::Result<()> {
    out.write_all(&[status])?;
    let clean: Vec<u8> = text.iter().copied().filter(|b| *b != 0).collect();
    out.write_all(&clean)?;
    out.write_all(b"\0")
}

/// `--keep`: writes the record of a backend's state at rest.
fn keep(args: &[String]) -> ExitCode {
    let record = match rest::Record::from_args(args) {
        Ok(record) => record,
        Err(why) => {
            eprintln!("rollout-haproxy-relay: --keep: {why}");
            return ExitCode::from(2);
        }
    };
    match record.keep(std::path::Path::new(rest::REST_DIR)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!(
                "rollout-haproxy-relay: cannot keep the state at rest in {}: {e}",
                rest::REST_DIR
            );
            ExitCode::from(1)
        }
    }
}

/// `--start COMMAND...`: starts the replayer, then becomes `COMMAND`, so that
/// HAProxy keeps the process (the container's main one) and its signals.
fn start(command: &[String]) -> ExitCode {
    let Some((program, args)) = command.split_first() else {
        eprintln!("usage: rollout-haproxy-relay --start COMMAND...");
        return ExitCode::from(2);
    };
    match std::env::current_exe() {
        Ok(me) => {
            if let Err(e) = std::process::Command::new(me).arg("--replay").spawn() {
                eprintln!(
                    "rollout-haproxy-relay: no replayer ({e}): the state at rest is not restored"
                );
            }
        }
        Err(e) => {
            eprintln!("rollout-haproxy-relay: no replayer ({e}): the state at rest is not restored")
        }
    }
    let e = std::process::Command::new(program).args(args).exec();
    eprintln!("rollout-haproxy-relay: cannot run {program}: {e}");
    ExitCode::from(127)
}

/// Relays each of `commands` in order; with several, each answer is
/// followed by a NUL. Stops at the first that fails, saying which.
fn relay_all<'a>(
    socket: &str,
    commands: &'a [String],
    out: &mut impl Write,
) -> Result<(), (&'a str, std::io::Error)> {
    for command in commands {
        relay(socket, command, out)
            .and_then(|()| {
                if commands.len() > 1 {
                    out.write_all(b"\0")?;
                }
                out.flush()
            })
            .map_err(|e| (command.as_str(), e))?;
    }
    Ok(())
}

/// One command line, nothing that would make it several.
fn check(command: &str) -> Result<(), &'static str> {
    if command.trim().is_empty() {
        return Err("the command is empty");
    }
    if command.contains(['\n', '\r', ';', '\0']) {
        return Err("a command holds no line break, `;` or NUL");
    }
    Ok(())
}

/// Sends `command` as one line and copies the answer to `out` until HAProxy
/// closes the connection (it does after the answer, in non-interactive mode).
pub(crate) fn relay(socket: &str, command: &str, out: &mut impl Write) -> std::io::Result<()> {
    let mut stream = UnixStream::connect(socket)?;
    stream.set_read_timeout(Some(TIMEOUT))?;
    stream.set_write_timeout(Some(TIMEOUT))?;
    stream.write_all(format!("{command}\n").as_bytes())?;
    let mut chunk = [0u8; 16 * 1024];
    loop {
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            break;
        }
        out.write_all(&chunk[..n])?;
    }
    out.flush()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixListener;

    /// A fresh folder `tag-PID` with a listening socket `admin.sock` in it.
    fn socket_in(tag: &str) -> (std::path::PathBuf, std::path::PathBuf, UnixListener) {
        let dir = std::env::temp_dir().join(format!("{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("admin.sock");
        let _ = std::fs::remove_file(&path);
        let listener = UnixListener::bind(&path).unwrap();
        (dir, path, listener)
    }

    /// A stand-in for HAProxy on `listener`: takes one connection per answer,
    /// reads its command line and writes the answer; returns the lines read.
    fn fake_haproxy(
        listener: UnixListener,
        answers: Vec<&'static [u8]>,
    ) -> std::thread::JoinHandle<Vec<String>> {
        std::thread::spawn(move || {
            let mut lines = Vec::new();
            for answer in answers {
                let (mut conn, _) = listener.accept().unwrap();
                let mut line = Vec::new();
                let mut byte = [0u8; 1];
                while conn.read(&mut byte).unwrap() == 1 && byte[0] != b'\n' {
                    line.push(byte[0]);
                }
                conn.write_all(answer).unwrap();
                lines.push(String::from_utf8(line).unwrap());
            }
            lines
        })
    }

    #[test]
    fn one_line_only() {
        assert!(check("show servers state app").is_ok());
        assert!(check("show info; shutdown frontend f").is_err());
        assert!(check("show info\nshutdown frontend f").is_err());
        assert!(check("  ").is_err());
    }

    #[test]
    fn the_line_goes_out_and_the_answer_comes_back() {
        let (dir, path, listener) = socket_in("relay-test");
        let peer = fake_haproxy(listener, vec![b"1\n# be_id ...\n\n"]);
        let mut out = Vec::new();
        relay(path.to_str().unwrap(), "show servers state app", &mut out).unwrap();
        assert_eq!(out, b"1\n# be_id ...\n\n");
        assert_eq!(peer.join().unwrap(), ["show servers state app"]);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_kept_session_answers_batch_after_batch_and_stops_a_batch_at_a_failure() {
        let (dir, path, listener) = socket_in("relay-test-serve");
        let peer = fake_haproxy(
            listener,
            vec![&b"\n"[..], b"1\n# be_id\n\n", b"\n", b"Name: HAProxy\n\n"],
        );
        // Three batches; the third's second command is refused, so its
        // third is never sent.
        let input = "set server app/app1 state ready\nshow servers state app\n\n\
                     set weight app/app1 2\n\n\
                     show info\nshow info; shutdown frontend f\nshow stat\n\n";
        let socket = path.to_str().unwrap().to_string();
        let mut out = Vec::new();
        serve_on(&socket, &mut input.as_bytes(), &mut out).unwrap();
        assert_eq!(
            peer.join().unwrap(),
            [
                "set server app/app1 state ready",
                "show servers state app",
                "set weight app/app1 2",
                "show info"
            ]
        );
        let frames: Vec<&[u8]> = out.split(|b| *b == 0).collect();
        assert_eq!(frames[0], format!("0{HELLO}").as_bytes());
        assert_eq!(frames[1], b"0\n");
        assert_eq!(frames[2], b"01\n# be_id\n\n");
        assert_eq!(frames[3], b"0\n");
        assert_eq!(frames[4], b"0Name: HAProxy\n\n");
        assert!(
            frames[5].starts_with(b"2refused"),
            "{:?}",
            String::from_utf8_lossy(frames[5])
        );
        assert_eq!(frames[6..], [b""]);
        // A batch cut short (no empty line, or a last line with no line
        // break) runs nothing: no connection is made for it.
        let mut out = Vec::new();
        serve_on(&socket, &mut "show info\nshow in".as_bytes(), &mut out).unwrap();
        assert_eq!(out, format!("0{HELLO}\0").as_bytes());
        // A socket that is gone: the frame says so, and the session goes on.
        std::fs::remove_file(&path).unwrap();
        let mut out = Vec::new();
        serve_on(
            &socket,
            &mut "show info\n\nshow info\n\n".as_bytes(),
            &mut out,
        )
        .unwrap();
        let frames: Vec<&[u8]> = out.split(|b| *b == 0).collect();
        assert_eq!(frames.len(), 4, "{out:?}");
        assert!(frames[1].starts_with(b"1") && frames[2].starts_with(b"1"));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn several_commands_go_out_one_connection_each_and_their_answers_are_framed() {
        let (dir, path, listener) = socket_in("relay-test-all");
        let peer = fake_haproxy(listener, vec![&b"\n"[..], b"1\n# be_id\n\n"]);
        let commands = [
            "set server app/app1 state ready".to_string(),
            "show servers state app".to_string(),
        ];
        let mut out = Vec::new();
        relay_all(path.to_str().unwrap(), &commands, &mut out).unwrap();
        assert_eq!(out, b"\n\x001\n# be_id\n\n\x00");
        assert_eq!(peer.join().unwrap(), commands);
        // A socket that is gone stops the batch at its first command, named.
        std::fs::remove_file(&path).unwrap();
        let (failed, _) =
            relay_all(path.to_str().unwrap(), &commands, &mut Vec::new()).unwrap_err();
        assert_eq!(failed, "set server app/app1 state ready");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
