//! What the demo app's process tests share: an app on a free loopback port,
//! killed when dropped, and a reader of one response.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_demo-app");

/// A demo app on a free port, killed when dropped.
pub struct App {
    pub child: Child,
    pub port: u16,
    /// A slow start announced itself and refused connections before it listened.
    pub refused_before: bool,
}

impl App {
    pub fn start(args: &[&str]) -> App {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut child = Command::new(BIN)
            .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
            .args(["--instance", "test-1"])
            .args(args)
            .stderr(Stdio::piped())
            .spawn()
            .expect("demo-app starts");
        // The app says when it listens.
        let mut stderr = BufReader::new(child.stderr.take().unwrap());
        let mut lines = Vec::new();
        let mut refused_before = false;
        loop {
            let mut line = String::new();
            assert!(
                stderr.read_line(&mut line).unwrap() > 0,
                "demo-app ended: {lines:?}"
            );
            if line.contains("listening on") {
                break;
            }
            if line.contains("starting slowly") {
                refused_before = TcpStream::connect(("127.0.0.1", port)).is_err();
            }
            lines.push(line);
        }
        std::thread::spawn(move || std::io::copy(&mut stderr, &mut std::io::sink()));
        App {
            child,
            port,
            refused_before,
        }
    }

    pub fn connect(&self) -> TcpStream {
        let s = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s
    }

    pub fn signal(&self, name: &str) {
        let ok = Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -{name} failed");
    }

    pub fn wait_exit(&mut self) -> i32 {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code().expect("exited with a code");
            }
            assert!(Instant::now() < deadline, "demo-app did not exit");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for App {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Reads one response (head and content-length body) from `s`.
pub fn read_response(s: &mut TcpStream) -> std::io::Result<(u16, String, String)> {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        if s.read(&mut byte)? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.push(byte[0]);
    }
    let head = String::from_utf8(buf).unwrap();
    let status = head[9..12].parse().unwrap();
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("Content-Length: "))
        .unwrap()
        .parse()
        .unwrap();
    let mut body = vec![0u8; len];
    s.read_exact(&mut body)?;
    Ok((status, head, String::from_utf8(body).unwrap()))
}
