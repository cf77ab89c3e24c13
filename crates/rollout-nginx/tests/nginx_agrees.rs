//! The editor's refusals and results against the real nginx (`nginx -t`):
//! what we refuse nginx refuses with the same words, and what we write
//! nginx accepts. Needs the `nginx` binary (Debian's package, installed by
//! `cargo xtask test`); fails loudly without it.

use rollout_nginx::upstream::{EditError, Server};
use rollout_nginx::ConfFile;
use std::path::PathBuf;
use std::process::Command;

fn nginx() -> PathBuf {
    for p in ["/usr/sbin/nginx", "/usr/bin/nginx"] {
        if std::path::Path::new(p).exists() {
            return p.into();
        }
    }
    panic!("nginx is not installed\nhint: apt-get install nginx (cargo xtask test does it)");
}

/// Runs `nginx -t` on `text`; Ok, or nginx's error line.
fn nginx_t(name: &str, text: &[u8]) -> Result<(), String> {
    let dir = std::env::temp_dir().join(format!("rollout-nginx-t-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let conf = dir.join("nginx.conf");
    let mut full = format!(
        "error_log {0}/error.log;\npid {0}/nginx.pid;\nevents {{}}\n",
        dir.display()
    )
    .into_bytes();
    full.extend_from_slice(text);
    std::fs::write(&conf, &full).unwrap();
    let out = Command::new(nginx())
        .arg("-t")
        .arg("-q")
        .arg("-p")
        .arg(&dir)
        .arg("-c")
        .arg(&conf)
        .output()
        .expect("nginx runs");
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

const BASE: &str = "http {
    access_log off;
    upstream app {
        ip_hash;
        server 127.0.0.1:8001;
    }
    upstream web {
        server 127.0.0.1:9001 max_fails=2;
        server 127.0.0.1:9002;
    }
    server {
        listen 127.0.0.1:18089;
        location /a { proxy_pass http://app; }
        location /w { proxy_pass http://web; }
    }
}
";

fn s(x: &str) -> Server {
    Server::parse(x).unwrap()
}

#[test]
fn what_we_refuse_nginx_refuses_in_the_same_words() {
    let file = ConfFile::parse("nginx.conf", BASE.as_bytes().to_vec()).unwrap();
    nginx_t("base", BASE.as_bytes()).expect("the fixture is valid for nginx");

    let cases: Vec<(&str, &str, Vec<Server>, &str)> = vec![
        (
            "weight0",
            "web",
            vec![s("127.0.0.1:9001 weight=0")],
            "invalid parameter \"weight=0\"",
        ),
        (
            "backup-ip-hash",
            "app",
            vec![s("127.0.0.1:8001"), s("127.0.0.1:8002 backup")],
            "balancing method does not support parameter \"backup\"",
        ),
        (
            "no-primary",
            "web",
            vec![s("127.0.0.1:9001 backup")],
            "no servers in upstream",
        ),
    ];
    for (name, upstream, servers, words) in cases {
        let ours = file.set_servers(upstream, &servers).unwrap_err();
        assert!(ours.to_string().contains(words), "{name}: ours: {ours}");
        // Force the same lines in by hand and ask nginx.
        let server_lines: String = servers.iter().map(|x| format!("server {x}; ")).collect();
        let forced = match upstream {
            "app" => BASE.replace("server 127.0.0.1:8001;", &server_lines),
            _ => BASE.replace(
                "server 127.0.0.1:9001 max_fails=2;\n        server 127.0.0.1:9002;",
                &server_lines,
            ),
        };
        let theirs = nginx_t(name, forced.as_bytes()).expect_err(name);
        assert!(theirs.contains(words), "{name}: nginx: {theirs}");
    }
    // Our own guard for hosts: nginx would read `a;b` as two statements.
    assert!(matches!(
        file.set_servers(
            "web",
            &[Server::new(rollout_nginx::upstream::Address::Inet {
                host: "x;deny".into(),
                port: Some(1)
            })]
        ),
        Err(EditError::InvalidHost { .. })
    ));
}

#[test]
fn what_we_write_nginx_accepts() {
    let file = ConfFile::parse("nginx.conf", BASE.as_bytes().to_vec()).unwrap();
    let mut set = file.upstream("web").unwrap().server_set();
    set[0].set_weight(5);
    set[1].set_down(true);
    set.push(s("127.0.0.1:9003 backup"));
    set.push(s("127.0.0.1:9004 max_conns=10 fail_timeout=3s"));
    let edited = file.set_servers("web", &set).unwrap();
    nginx_t("edited", edited.source()).expect("nginx accepts the edit");
    let created = edited
        .create_upstream("new", &[s("127.0.0.1:7000 weight=2")])
        .unwrap();
    nginx_t("created", created.source()).expect("nginx accepts a created upstream");
    let rest = created.set_servers("web", &[s("127.0.0.1:9001")]).unwrap();
    nginx_t("rest", rest.source()).expect("nginx accepts the rest form");
}

/// nginx's `[emerg] MESSAGE in FILE:LINE`, as (message, line).
fn emerg(stderr: &str) -> (String, u32) {
    let line = stderr
        .lines()
        .find(|l| l.contains("[emerg]"))
        .unwrap_or_else(|| panic!("no [emerg] in {stderr}"));
    let msg = line
        .split("]: ")
        .nth(1)
        .or_else(|| line.split("[emerg] ").nth(1))
        .unwrap();
    let msg = msg.split_once(": ").map_or(msg, |(pid, rest)| {
        if pid.chars().all(|c| c.is_ascii_digit() || c == '#') {
            rest
        } else {
            msg
        }
    });
    let (text, at) = msg.rsplit_once(" in ").unwrap();
    let n = at.rsplit(':').next().unwrap().trim().parse().unwrap();
    (text.to_string(), n)
}

#[test]
fn syntax_errors_match_nginx() {
    let long = "a".repeat(4096);
    let cases: Vec<String> = vec![
        "http {\n  log_format x \"a\"-b;\n}\n".into(),
        "http {\n  access_log off\n}\n".into(),
        "http {\n  access_log off;\n".into(),
        "http {\n  access_log".into(),
        ";".into(),
        "http {\n  map $a $b {\n    x {\n".into(),
        "http { access_log 'x'} }".into(),
        "http {\n  map $a $b {\n    a b c;\n  }\n}\n".into(),
        format!("http {{\n  access_log {long};\n}}\n"),
        format!("#{long}\n"),
        "http {\n  types {\n    text/html html;\n  }\n}\n}\n".into(),
    ];
    for (i, c) in cases.iter().enumerate() {
        let theirs = nginx_t(&format!("syntax{i}"), c.as_bytes()).expect_err(c);
        let (msg, line) = emerg(&theirs);
        // nginx_t puts three lines (error_log, pid, events) before the text.
        let ours = ConfFile::parse(
            "t.conf",
            format!("error_log x;\npid y;\nevents {{}}\n{c}").into_bytes(),
        )
        .expect_err(c);
        assert_eq!(
            (ours.message.as_str(), ours.line),
            (msg.as_str(), line),
            "{c:?}"
        );
    }
}

#[test]
fn what_init_generates_nginx_accepts() {
    use rollout_nginx::generate::{proxy_config, ProxySpec};
    let spec = ProxySpec {
        upstream: "web".into(),
        // nginx -t resolves the upstream's hosts: an address, not a service.
        servers: vec![s("127.0.0.1:8000")],
        listen: 18090,
        health_path: Some("/healthz".into()),
    };
    let file = proxy_config(&spec, "nginx.conf").unwrap();
    let dir = std::env::temp_dir().join(format!("rollout-nginx-t-{}-init", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let conf = dir.join("nginx.conf");
    let mut full = format!(
        "error_log {0}/error.log;\npid {0}/nginx.pid;\n",
        dir.display()
    )
    .into_bytes();
    full.extend_from_slice(&file.print());
    std::fs::write(&conf, &full).unwrap();
    let out = Command::new(nginx())
        .args(["-t", "-q", "-p"])
        .arg(&dir)
        .arg("-c")
        .arg(&conf)
        .output()
        .expect("nginx runs");
    assert!(
        out.status.success(),
        "nginx -t refused the generated config: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
