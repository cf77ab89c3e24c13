//! rollout-nginx's router driving a real nginx container through
//! [`ProxyContainer`]: exec for `nginx -t` and the reload, the candidate
//! uploaded into the container, the live file written in place on the host
//! of its single-file read-only mount, as in the seed.
//!
//! Needs the `rollout-nginx:1.22` image (`cargo xtask images`). Run with
//! `cargo xtask e2e`, or
//! `cargo test -p rollout-docker --test nginx -- --ignored`.

mod common;

use common::Project;
use rollout_core::router::{Route, RouteChange, Target, TrafficRouter};
use rollout_core::{Backend, RouterError, ServiceRef};
use rollout_docker::ProxyContainer;
use rollout_nginx::proxy::ProxyExec;
use rollout_nginx::router::{NginxRouter, NginxRouterOptions};
use std::os::unix::fs::MetadataExt;
use std::process::Command;
use std::time::Duration;

const NGINX_IMAGE: &str = "rollout-nginx:1.22";

const NGINX_CONF: &str = "events {}
http {
    upstream backend {
        server app:8000;
    }
    server {
        listen 80;
        location / {
            proxy_pass http://backend;
        }
    }
}
";

fn nginx_image() {
    let out = Command::new("docker")
        .args(["image", "inspect", "-f", "{{.Id}}", NGINX_IMAGE])
        .output()
        .expect("docker");
    assert!(
        out.status.success(),
        "{NGINX_IMAGE} is missing\nhint: cargo xtask images (cargo xtask e2e builds it)"
    );
}

/// Fetches `/` through the proxy from inside the project's network.
async fn through_proxy(from: &ProxyContainer, proxy_host: &str) -> (i32, String) {
    let argv: Vec<String> = ["wget", "-q", "-O", "-", &format!("http://{proxy_host}/")]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let out = from.exec(&argv).await.unwrap();
    (out.code, String::from_utf8_lossy(&out.stdout).into_owned())
}

#[tokio::test]
#[ignore = "needs docker: run with cargo xtask e2e"]
async fn the_nginx_router_drives_a_proxy_container() {
    nginx_image();
    let project = Project::new("nginx");
    let conf = project.dir.join("nginx.conf");
    std::fs::write(&conf, NGINX_CONF).unwrap();
    let inode = std::fs::metadata(&conf).unwrap().ino();
    std::fs::write(
        project.dir.join("docker-compose.override.yml"),
        format!(
            r#"version: "3.8"
services:
  nginx:
    image: {NGINX_IMAGE}
    labels: {{io.rollout.test: {name}}}
    volumes: ["./nginx.conf:/etc/nginx/nginx.conf:ro"]
    depends_on: [app]
"#,
            name = project.name
        ),
    )
    .unwrap();
    // The override is picked up next to docker-compose.yml.
    project.compose_run(&["up", "-d", "--scale", "app=2", "app", "nginx"]);

    let engine = common::engine().await;
    let backend = project.backend().await;
    let app = ServiceRef::new(&project.name, "app");
    let instances = backend.instances(&app).await.unwrap();
    assert_eq!(instances.len(), 2);
    for i in &instances {
        assert_eq!(
            backend
                .wait_healthy(
                    &i.id,
                    &rollout_core::config::Timeouts {
                        start: Duration::from_secs(30),
                        ..Default::default()
                    }
                )
                .await
                .unwrap(),
            Ok(())
        );
    }
    let proxies = ProxyContainer::of_service(&engine, &ServiceRef::new(&project.name, "nginx"))
        .await
        .unwrap();
    assert_eq!(proxies.len(), 1);
    let proxy_host = proxies[0].name.clone();
    let client = ProxyContainer::new(engine.clone(), &instances[0].host);
    assert_eq!(
        through_proxy(&client, &proxy_host).await,
        (0, "ok\n".into())
    );

    let mut options = NginxRouterOptions::new("backend", "/etc/nginx/nginx.conf");
    options.services = vec!["app".into()];
    let router = NginxRouter::open(options, proxies).await.unwrap();
    let routes = router.routes().await.unwrap();
    assert_eq!(
        routes,
        vec![Route {
            target: Target::Service { name: "app".into() },
            weight: 1
        }]
    );

    // Route by instance: validated in the container, written in place on
    // the host, reloaded.
    let by_instance = RouteChange {
        set: instances
            .iter()
            .map(|i| Route {
                target: Target::instance(i.id.clone(), &i.host),
                weight: 1,
            })
            .collect(),
        remove: vec![Target::Service { name: "app".into() }],
    };
    let ticket = router.apply(&by_instance).await.unwrap();
    let live = std::fs::read_to_string(&conf).unwrap();
    assert_eq!(std::fs::metadata(&conf).unwrap().ino(), inode, "same inode");
    for i in &instances {
        assert!(live.contains(&format!("server {}:8000", i.host)), "{live}");
    }
    assert!(!live.contains("server app:8000"), "{live}");
    let report = router
        .drain(&ticket, Duration::from_secs(20))
        .await
        .unwrap();
    assert!(!report.timed_out, "{report:?}");
    assert_eq!(
        through_proxy(&client, &proxy_host).await,
        (0, "ok\n".into())
    );

    // A change nginx refuses leaves the live file as it was.
    let before = std::fs::read(&conf).unwrap();
    let bad = RouteChange {
        set: vec![Route {
            target: Target::instance("nope".into(), "no-such-host.invalid"),
            weight: 1,
        }],
        remove: vec![],
    };
    match router.apply(&bad).await {
        Err(RouterError::Invalid { location, message }) => {
            assert!(location.contains("nginx.conf"), "{location}: {message}")
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(std::fs::read(&conf).unwrap(), before);
    assert_eq!(
        through_proxy(&client, &proxy_host).await,
        (0, "ok\n".into())
    );

    // At rest the config names the service again, as the operator wrote it.
    let at_rest = RouteChange {
        set: vec![Route {
            target: Target::Service { name: "app".into() },
            weight: 1,
        }],
        remove: instances
            .iter()
            .map(|i| Target::instance(i.id.clone(), &i.host))
            .collect(),
    };
    router.apply(&at_rest).await.unwrap();
    assert_eq!(std::fs::read_to_string(&conf).unwrap(), NGINX_CONF);
    assert_eq!(
        through_proxy(&client, &proxy_host).await,
        (0, "ok\n".into())
    );

    // What the service's name resolves to in the proxy, as nginx's next
    // reload takes it: first through getent (copied in from this machine:
    // Debian's nginx image has it, ours has not), then, with it gone again,
    // through busybox's nslookup, which the router falls back to.
    let mut addresses = std::collections::BTreeSet::new();
    let proxy = ProxyContainer::new(engine.clone(), &proxy_host);
    for i in &instances {
        addresses.extend(proxy.addresses_of(&i.host).await.unwrap());
    }
    assert_eq!(addresses.len(), 2, "{addresses:?}");
    common::run(Command::new("docker").args([
        "cp",
        "/usr/bin/getent",
        &format!("{proxy_host}:/bin/getent"),
    ]));
    for how in ["getent", "nslookup"] {
        let answers = router.resolve("app").await.unwrap();
        assert_eq!(answers, Some(vec![addresses.clone()]), "through {how}");
        let none = router.resolve("no-such-service").await.unwrap();
        assert_eq!(none, Some(vec![Default::default()]), "through {how}");
        common::run(Command::new("docker").args(["exec", &proxy_host, "rm", "-f", "/bin/getent"]));
    }
    match router.resolve("-app").await {
        Err(RouterError::Config(m)) => assert!(m.contains("not a DNS name"), "{m}"),
        other => panic!("{other:?}"),
    }

    // A proxy that is not running cannot be reached: exit code 6's class.
    common::run(Command::new("docker").args(["stop", "-t", "1", &proxy_host]));
    match router.apply(&by_instance).await {
        Err(RouterError::Unreachable(m)) => assert!(m.contains("not running"), "{m}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(std::fs::read_to_string(&conf).unwrap(), NGINX_CONF);
    // The end of the run removes the writer kept for its writes.
    router.settle().await.unwrap();
    let writers = common::run(Command::new("docker").args([
        "ps",
        "-aq",
        "--filter",
        "label=io.rollout.kind=proxywrite",
        "--filter",
        &format!("label=io.rollout.project={}", project.name),
    ]));
    assert_eq!(writers.trim(), "", "a writer outlived the run");
}
