//! The docker CLI's plugin socket: its closing means "cancel".
//!
//! When the docker CLI runs a plugin it listens on a socket and passes its
//! address in `DOCKER_CLI_PLUGIN_SOCKET`: on Linux an abstract unix socket
//! written `@docker_cli_<hex>`, elsewhere a path. The plugin connects; when
//! the CLI gets SIGINT or SIGTERM and its stdout is not a terminal, it
//! closes the connection instead of signalling the plugin, so EOF on the
//! socket is the plugin's Ctrl-C (invariant 6: abort at the next safe point
//! and roll back). On a terminal the plugin gets the signal itself.
//!
//! Nothing is ever sent on the socket; reading it only waits for EOF.

use std::io::{self, Read};
use std::os::unix::net::UnixStream;
use std::thread::JoinHandle;

/// The variable the docker CLI sets to the socket's address.
pub const SOCKET_ENV: &str = "DOCKER_CLI_PLUGIN_SOCKET";

/// Connects to the plugin socket at `addr`: `@name` is an abstract socket
/// (Linux), anything else a path.
pub fn connect(addr: &str) -> io::Result<UnixStream> {
    if let Some(name) = addr.strip_prefix('@') {
        #[cfg(target_os = "linux")]
        {
            use std::os::linux::net::SocketAddrExt;
            let sa = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())?;
            return UnixStream::connect_addr(&sa);
        }
        #[cfg(not(target_os = "linux"))]
        {
            let _ = name;
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "abstract unix sockets exist only on Linux",
            ));
        }
    }
    UnixStream::connect(addr)
}

/// Connects to the socket named by `DOCKER_CLI_PLUGIN_SOCKET`, if set.
pub fn connect_from_env() -> io::Result<Option<UnixStream>> {
    match std::env::var(SOCKET_ENV) {
        Ok(addr) if !addr.is_empty() => connect(&addr).map(Some),
        _ => Ok(None),
    }
}

/// Calls `on_close` once, from a thread of its own, when the CLI closes
/// `stream` (EOF) or it fails. The thread holds the connection open until
/// then, which is what the CLI expects of a running plugin.
pub fn on_close(
    mut stream: UnixStream,
    on_close: impl FnOnce() + Send + 'static,
) -> JoinHandle<()> {
    std::thread::Builder::new()
        .name("plugin-socket".to_string())
        .spawn(move || {
            let mut buf = [0u8; 64];
            loop {
                match stream.read(&mut buf) {
                    Ok(0) => break,
                    Ok(_) => continue,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(_) => break,
                }
            }
            on_close();
        })
        .expect("spawning a thread at start-up")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixListener;
    use std::sync::mpsc;
    use std::time::Duration;

    fn listener(abstract_socket: bool) -> (UnixListener, String, Option<std::path::PathBuf>) {
        let name = format!("rollout-test-{}-{}", std::process::id(), abstract_socket);
        if abstract_socket {
            use std::os::linux::net::SocketAddrExt;
            let sa = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
            (
                UnixListener::bind_addr(&sa).unwrap(),
                format!("@{name}"),
                None,
            )
        } else {
            let path = std::env::temp_dir().join(format!("{name}.sock"));
            let _ = std::fs::remove_file(&path);
            let l = UnixListener::bind(&path).unwrap();
            (l, path.to_string_lossy().into_owned(), Some(path))
        }
    }

    fn eof_cancels(abstract_socket: bool) {
        let (l, addr, path) = listener(abstract_socket);
        let stream = connect(&addr).unwrap();
        let (cli_side, _) = l.accept().unwrap();
        let (tx, rx) = mpsc::channel();
        let handle = on_close(stream, move || tx.send(()).unwrap());
        // Still open: no cancel.
        assert!(rx.recv_timeout(Duration::from_millis(100)).is_err());
        drop(cli_side);
        rx.recv_timeout(Duration::from_secs(10))
            .expect("EOF on the plugin socket must cancel");
        handle.join().unwrap();
        if let Some(p) = path {
            let _ = std::fs::remove_file(p);
        }
    }

    #[test]
    fn eof_on_an_abstract_socket_cancels() {
        eof_cancels(true);
    }

    #[test]
    fn eof_on_a_path_socket_cancels() {
        eof_cancels(false);
    }

    #[test]
    fn connecting_to_nothing_fails() {
        assert!(connect("@rollout-test-nobody-listens").is_err());
        assert!(connect("/nonexistent/rollout.sock").is_err());
    }
}
