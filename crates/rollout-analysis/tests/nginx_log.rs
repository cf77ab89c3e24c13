//! Canary analysis against a real nginx on loopback.
//!
//! Debian's `/usr/sbin/nginx` runs in a temporary prefix directory in front
//! of two backends served by this process: v1 on 127.0.0.2 answering 200,
//! v2 on 127.0.0.3 (same port) answering 500 to every fifth request. The
//! router arranges the tool's log while the canary splits traffic, load is
//! sent, the analysis reads the log through the proxy traits, and the end of
//! the canary gives the operator's bytes back. It always runs, and fails
//! when nginx is not installed.

use rollout_analysis::{FixedAddresses, ProxyLogAnalysis};
use rollout_core::analysis::AnalysisRules;
use rollout_core::model::{InstanceId, Revision, ServiceRef};
use rollout_core::router::{Route, RouteChange, Target, TrafficRouter};
use rollout_core::strategy::{Analysis, Plan, Verdict};
use rollout_nginx::accesslog::marker;
use rollout_nginx::proxy::{LocalExec, LocalFiles, Proxy};
use rollout_nginx::router::{NginxRouter, NginxRouterOptions};
use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

const NGINX: &str = "/usr/sbin/nginx";

fn require_nginx() {
    assert!(
        Path::new(NGINX).is_file(),
        "{NGINX} is missing: the analysis test runs a real nginx\nhint: apt-get install nginx (CI installs it; cargo xtask setup)"
    );
}

/// A tiny HTTP server: 500 to every `fail_every`-th request (0: never).
struct Backend {
    task: JoinHandle<()>,
    served: Arc<AtomicU64>,
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn serve(listener: TcpListener, fail_every: u64) -> Backend {
    let served = Arc::new(AtomicU64::new(0));
    let count = served.clone();
    let task = tokio::spawn(async move {
        loop {
            let Ok((mut conn, _)) = listener.accept().await else {
                continue;
            };
            let n = count.fetch_add(1, Ordering::Relaxed) + 1;
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < 65536 {
                    match conn.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(k) => buf.extend_from_slice(&chunk[..k]),
                    }
                }
                let status = if fail_every > 0 && n % fail_every == 0 {
                    "500 Internal Server Error"
                } else {
                    "200 OK"
                };
                let response = format!(
                    "HTTP/1.1 {status}\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
                );
                let _ = conn.write_all(response.as_bytes()).await;
                let _ = conn.shutdown().await;
            });
        }
    });
    Backend { task, served }
}

/// v1 on 127.0.0.2 and v2 on 127.0.0.3, one port.
async fn backends() -> (u16, Backend, Backend) {
    for _ in 0..50 {
        let a = TcpListener::bind("127.0.0.2:0").await.unwrap();
        let port = a.local_addr().unwrap().port();
        if let Ok(b) = TcpListener::bind(format!("127.0.0.3:{port}")).await {
            return (port, serve(a, 0), serve(b, 5));
        }
    }
    panic!("no port free on both 127.0.0.2 and 127.0.0.3");
}

async fn get(port: u16) -> u16 {
    let mut conn = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    conn.write_all(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut response = Vec::new();
    conn.read_to_end(&mut response).await.unwrap();
    String::from_utf8_lossy(&response)
        .get(9..12)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn make_dir(path: &Path) {
    std::fs::create_dir_all(path).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// A running nginx master, stopped by its process id when dropped.
struct Nginx {
    prefix: PathBuf,
    master: u32,
}

impl Nginx {
    fn start(prefix: &Path, conf: &Path) -> Nginx {
        require_nginx();
        make_dir(&prefix.join("tmp"));
        make_dir(&prefix.join("logs"));
        let out = Command::new(NGINX)
            .args(["-e", "stderr", "-p"])
            .arg(prefix)
            .arg("-c")
            .arg(conf)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "nginx did not start: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let pid_file = prefix.join("nginx.pid");
        for _ in 0..100 {
            if let Some(pid) = std::fs::read_to_string(&pid_file)
                .ok()
                .and_then(|s| s.trim().parse().ok())
            {
                return Nginx {
                    prefix: prefix.to_path_buf(),
                    master: pid,
                };
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("nginx wrote no pid file");
    }

    fn proxy(&self) -> Proxy {
        let command = vec![
            NGINX.to_string(),
            "-e".into(),
            "stderr".into(),
            "-p".into(),
            format!("{}/", self.prefix.display()),
        ];
        Proxy::new(
            "nginx-1",
            Arc::new(LocalExec::new("nginx-1")),
            Arc::new(LocalFiles::new("nginx-1")),
        )
        .with_nginx(command)
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.master.to_string()])
            .status();
        for _ in 0..100 {
            if !Path::new(&format!("/proc/{}", self.master)).exists() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = Command::new("kill")
            .args(["-KILL", &self.master.to_string()])
            .status();
    }
}

/// The operator's config: a log of their own at http level, upstream
/// `backend` naming v1, a front on `front`.
fn config(dir: &Path, front: u16, port: u16) -> String {
    let d = dir.display();
    format!(
        "worker_processes 2;\n\
         pid {d}/nginx.pid;\n\
         error_log {d}/error.log;\n\
         events {{\n    worker_connections 512;\n}}\n\
         http {{\n\
         \x20   log_format main '$remote_addr [$time_local] \"$request\" $status';\n\
         \x20   access_log {d}/operator.log main;\n\
         \x20   client_body_temp_path {d}/tmp/body;\n\
         \x20   proxy_temp_path {d}/tmp/proxy;\n\
         \x20   fastcgi_temp_path {d}/tmp/fastcgi;\n\
         \x20   uwsgi_temp_path {d}/tmp/uwsgi;\n\
         \x20   scgi_temp_path {d}/tmp/scgi;\n\
         \x20   upstream backend {{\n\
         \x20       server 127.0.0.2:{port};\n\
         \x20   }}\n\
         \x20   server {{\n\
         \x20       listen 127.0.0.1:{front};\n\
         \x20       location / {{\n\
         \x20           proxy_pass http://backend;\n\
         \x20       }}\n\
         \x20   }}\n\
         }}\n"
    )
}

fn lines(path: &Path) -> usize {
    std::fs::read_to_string(path)
        .map(|s| s.lines().count())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_canary_answering_500_to_a_fifth_fails_with_its_rate() {
    require_nginx();
    let (port, v1, v2) = backends().await;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    make_dir(&root);
    let front = free_port();
    let conf = root.join("nginx.conf");
    let original = config(&root, front, port);
    std::fs::write(&conf, &original).unwrap();
    let nginx = Nginx::start(&root, &conf);
    let metrics = root.join("logs/rollout-backend.log");

    let mut options = NginxRouterOptions::new("backend", conf.display().to_string());
    // v1's line is the service line the operator wrote.
    options.services = vec!["127.0.0.2".into()];
    options.metrics_log = Some(metrics.display().to_string());
    let router = NginxRouter::open(options, vec![nginx.proxy()])
        .await
        .unwrap();
    assert_eq!(std::fs::read_to_string(&conf).unwrap(), original);

    // The canary step: v2 beside v1, a fifth of the requests.
    let v2_target = Target::instance(InstanceId::from("127.0.0.3"), "127.0.0.3");
    let step = RouteChange {
        set: vec![
            Route {
                target: Target::Service {
                    name: "127.0.0.2".into(),
                },
                weight: 4,
            },
            Route {
                target: v2_target.clone(),
                weight: 1,
            },
        ],
        remove: vec![],
    };
    router.apply(&step).await.unwrap();
    let during = std::fs::read_to_string(&conf).unwrap();
    assert!(during.contains(&marker("backend")), "{during}");
    assert!(
        during.contains(&format!(
            "    access_log {}/operator.log main;\n",
            root.display()
        )),
        "the operator's log stays: {during}"
    );

    let sent = 500;
    let mut answered_500 = 0;
    for _ in 0..sent {
        if get(front).await == 500 {
            answered_500 += 1;
        }
    }
    let (n1, n2) = (
        v1.served.load(Ordering::Relaxed),
        v2.served.load(Ordering::Relaxed),
    );
    assert_eq!(n1 + n2, sent);
    assert_eq!(answered_500, n2 / 5, "v2 fails every fifth of its requests");

    let plan = Plan::new(
        ServiceRef::new("shop", "app"),
        Revision::new("v2", "app:2"),
        1,
    );
    let addresses = FixedAddresses(BTreeMap::from([
        ("127.0.0.2".to_string(), "v1".to_string()),
        ("127.0.0.3".to_string(), "v2".to_string()),
    ]));
    let rules = AnalysisRules {
        max_error_rate: Some(0.05),
        min_requests: 20,
        ..AnalysisRules::default()
    };
    let analysis = ProxyLogAnalysis::new(
        vec![nginx.proxy()],
        metrics.display().to_string(),
        Arc::new(addresses),
        rules,
    );
    // nginx writes a log line when the request ends; all have ended.
    let verdict = analysis.judge(&plan, 1, 20).await;
    let (new, old) = analysis.last_stats().await.unwrap();
    eprintln!(
        "v2: {} requests, {} errors ({:.1}%), p50 {:.1} ms p99 {:.1} ms; v1: {} requests, {} errors, p99 {:.1} ms",
        new.requests,
        new.errors,
        new.error_rate() * 100.0,
        new.p50 * 1000.0,
        new.p99 * 1000.0,
        old.requests,
        old.errors,
        old.p99 * 1000.0
    );
    assert_eq!(new.requests, n2);
    assert_eq!(old.requests, n1);
    assert_eq!(new.errors, answered_500);
    assert_eq!(old.errors, 0);
    assert!(
        (new.error_rate() - 0.20).abs() < 0.02,
        "v2's error rate {}",
        new.error_rate()
    );
    let expected = format!(
        "error rate {:.1}% ({} of {} requests) above 5.0%",
        new.error_rate() * 100.0,
        new.errors,
        new.requests
    );
    assert_eq!(verdict, Verdict::Fail(expected));
    // The operator's own log saw every request too.
    assert_eq!(lines(&root.join("operator.log")), sent as usize);
    // A second judgement reads only what is new: the same window.
    analysis.judge(&plan, 1, 20).await;
    assert_eq!(analysis.last_stats().await.unwrap().0.requests, n2);

    // The end of the canary (back to v1, as after an abort) removes the log
    // in the same change: the operator's bytes again.
    let back = RouteChange {
        set: vec![Route {
            target: Target::Service {
                name: "127.0.0.2".into(),
            },
            weight: 1,
        }],
        remove: vec![v2_target],
    };
    router.apply(&back).await.unwrap();
    assert_eq!(std::fs::read_to_string(&conf).unwrap(), original);
    let written = lines(&metrics);
    for _ in 0..20 {
        assert_eq!(get(front).await, 200);
    }
    assert_eq!(lines(&metrics), written, "no line once at rest");
    drop(nginx);
}

#[tokio::test]
async fn a_config_the_log_cannot_be_arranged_in_is_refused_at_open() {
    require_nginx();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    make_dir(&root);
    let conf = root.join("nginx.conf");
    let original = config(&root, free_port(), 9).replace(
        "proxy_pass http://backend;\n",
        "proxy_pass http://backend;\n            access_log off;\n",
    );
    std::fs::write(&conf, &original).unwrap();
    let nginx = Nginx::start(&root, &conf);
    let mut options = NginxRouterOptions::new("backend", conf.display().to_string());
    options.metrics_log = Some(root.join("m.log").display().to_string());
    let e = NginxRouter::open(options, vec![nginx.proxy()])
        .await
        .unwrap_err();
    assert!(e.to_string().contains("access_log off"), "{e}");
    assert_eq!(std::fs::read_to_string(&conf).unwrap(), original);
}
