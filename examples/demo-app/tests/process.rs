//! The demo app as a process: keep-alive, the health probe subcommand, and what SIGTERM does
//! with a request in flight in each mode.

mod common;

use common::{read_response, App, BIN};
use std::io::{Read, Write};
use std::process::Command;
use std::time::{Duration, Instant};

#[test]
fn answers_several_requests_on_one_connection_with_version_and_instance() {
    let app = App::start(&["--app-version", "v7"]);
    let mut s = app.connect();
    for path in ["/", "/health", "/slow?ms=10"] {
        write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let (status, head, body) = read_response(&mut s).unwrap();
        assert_eq!(status, 200, "{path}: {head}");
        assert!(head.contains("X-Demo-Version: v7\r\n"), "{head}");
        assert!(head.contains("X-Demo-Instance: test-1\r\n"), "{head}");
        assert!(body.contains("\"version\":\"v7\""), "{body}");
    }
    write!(s, "POST /submit HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc").unwrap();
    let (status, _, body) = read_response(&mut s).unwrap();
    assert_eq!(status, 200);
    assert!(body.contains("\"received\":3"), "{body}");
}

#[test]
fn healthcheck_subcommand_follows_the_health_endpoint() {
    let good = App::start(&[]);
    let port = good.port.to_string();
    let ok = Command::new(BIN)
        .args(["--port", &port, "healthcheck"])
        .output()
        .unwrap();
    assert!(ok.status.success(), "{ok:?}");
    let bad = App::start(&["--health-fail"]);
    let port = bad.port.to_string();
    let out = Command::new(BIN)
        .args(["--port", &port, "healthcheck"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("503"));
    drop(bad);
    let gone = Command::new(BIN)
        .args(["--port", &port, "healthcheck"])
        .output()
        .unwrap();
    assert_eq!(gone.status.code(), Some(1), "{gone:?}");
}

#[test]
fn error_rate_answers_500_on_that_share() {
    let app = App::start(&["--error-rate", "0.5"]);
    let mut s = app.connect();
    let mut errors = 0;
    for _ in 0..10 {
        write!(s, "GET / HTTP/1.1\r\n\r\n").unwrap();
        if read_response(&mut s).unwrap().0 == 500 {
            errors += 1;
        }
    }
    assert_eq!(errors, 5);
}

#[test]
fn drain_mode_finishes_the_request_in_flight_and_closes_idle_connections() {
    let mut app = App::start(&["--on-sigterm", "drain"]);
    let mut idle = app.connect();
    write!(idle, "GET / HTTP/1.1\r\n\r\n").unwrap();
    read_response(&mut idle).unwrap();
    let mut busy = app.connect();
    write!(busy, "GET /slow?ms=700 HTTP/1.1\r\n\r\n").unwrap();
    std::thread::sleep(Duration::from_millis(150));
    app.signal("TERM");
    let (status, head, _) = read_response(&mut busy).unwrap();
    assert_eq!(status, 200);
    assert!(head.contains("Connection: close"), "{head}");
    let mut rest = Vec::new();
    assert_eq!(
        idle.read_to_end(&mut rest).unwrap(),
        0,
        "idle connection closed"
    );
    assert_eq!(app.wait_exit(), 0);
}

#[test]
fn exit_mode_cuts_the_request_in_flight() {
    let mut app = App::start(&["--on-sigterm", "exit"]);
    let mut busy = app.connect();
    write!(busy, "GET /slow?ms=2000 HTTP/1.1\r\n\r\n").unwrap();
    std::thread::sleep(Duration::from_millis(150));
    app.signal("TERM");
    assert!(
        read_response(&mut busy).is_err(),
        "the slow request must be cut"
    );
    assert_eq!(app.wait_exit(), 143);
}

#[test]
fn crash_switches_exit_with_1() {
    let out = Command::new(BIN)
        .args(["--crash-on-start", "--port", "1"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("crashing on start"));
    let mut app = App::start(&["--crash-after-ms", "200"]);
    assert_eq!(app.wait_exit(), 1);
}

#[test]
fn slow_start_refuses_connections_until_it_listens() {
    let started = Instant::now();
    let app = App::start(&["--start-delay-ms", "400"]);
    assert!(
        app.refused_before,
        "no refused connection during the slow start"
    );
    assert!(started.elapsed() >= Duration::from_millis(400));
    let mut s = app.connect();
    write!(s, "GET / HTTP/1.1\r\n\r\n").unwrap();
    assert_eq!(read_response(&mut s).unwrap().0, 200);
}
