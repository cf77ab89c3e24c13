//! The seed's layout as files: the demo app behind nginx.

use crate::http::wait_http;
use crate::project::{Container, Project};
use std::fmt::Write as _;
use std::time::Duration;

/// The nginx image `cargo xtask images` builds.
pub const NGINX_IMAGE: &str = "rollout-nginx:1.22";

/// The seed's `nginx.conf` fragment wrapped in the blocks nginx requires, with the error log
/// on the bind-mounted log folder (`warn` level: upstream errors are `error`).
pub const SEED_NGINX_CONF: &str = "\
user www-data;
worker_processes 2;
error_log /var/log/nginx/error.log warn;
pid /run/nginx.pid;

events {
    worker_connections 1024;
}

http {
    access_log off;

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

/// The demo app service `app` (a number of replicas of one image) behind an nginx service
/// `nginx` that proxies to `app:8000`, published on a port of 127.0.0.1 picked at random when
/// the stack is made and then fixed in the file (so that it stays the same across `down` and
/// `up`, as the seed's `80:80` does), with its
/// config bind-mounted read-only as in the seed and its log folder bind-mounted from
/// `nginx-logs/`.
#[derive(Debug, Clone)]
pub struct DemoStack {
    /// The app's image (`${APP_IMAGE}` in the file, so an update is an environment change
    /// or a rewrite of the file).
    pub image: String,
    /// `deploy.replicas`.
    pub replicas: u32,
    /// Extra `environment:` of the app (DEMO_* switches).
    pub app_env: Vec<(String, String)>,
    /// The nginx config.
    pub nginx_conf: String,
    /// YAML appended under the `app` service (indented by four spaces), for example a
    /// `deploy.update_config` or an `x-rollout` block.
    pub app_extra: String,
    /// The host port nginx is published on (127.0.0.1 only).
    pub nginx_port: u16,
    /// A build context (a folder of the project) for an app with `build:` and no `image:`
    /// (then `image` is unused): Compose builds the app's image from it.
    pub build: Option<String>,
}

/// A port of 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port on 127.0.0.1")
}

impl DemoStack {
    /// `replicas` of `image` behind the seed's nginx config.
    pub fn new(image: &str, replicas: u32) -> DemoStack {
        DemoStack {
            image: image.into(),
            replicas,
            app_env: Vec::new(),
            nginx_conf: SEED_NGINX_CONF.into(),
            app_extra: String::new(),
            nginx_port: free_port(),
            build: None,
        }
    }

    /// `replicas` of an app built by Compose from the project's folder `context` (`build:`
    /// and no `image:`), behind the seed's nginx config.
    pub fn built(context: &str, replicas: u32) -> DemoStack {
        DemoStack {
            build: Some(context.into()),
            ..DemoStack::new("", replicas)
        }
    }

    /// The Compose file of the stack, labelled with the project's name.
    pub fn compose_yaml(&self, project: &str) -> String {
        let mut env = String::new();
        if !self.app_env.is_empty() {
            env.push_str("    environment:\n");
            for (k, v) in &self.app_env {
                let _ = writeln!(env, "      {k}: {v:?}");
            }
        }
        let source = match &self.build {
            Some(context) => format!("build: ./{context}"),
            None => format!("image: ${{APP_IMAGE:-{}}}", self.image),
        };
        format!(
            "# written by the rollout-e2e harness\n\
             services:\n\
             \x20 app:\n\
             \x20   {source}\n\
             \x20   deploy:\n\
             \x20     replicas: {replicas}\n\
             \x20   labels:\n\
             \x20     io.rollout.test: {project}\n\
             {env}{extra}\
             \x20 nginx:\n\
             \x20   image: {NGINX_IMAGE}\n\
             \x20   ports:\n\
             \x20     - \"127.0.0.1:{port}:80\"\n\
             \x20   volumes:\n\
             \x20     - ./nginx.conf:/etc/nginx/nginx.conf:ro\n\
             \x20     - ./nginx-logs:/var/log/nginx\n\
             \x20   depends_on:\n\
             \x20     - app\n\
             \x20   labels:\n\
             \x20     io.rollout.test: {project}\n\
             networks:\n\
             \x20 default:\n\
             \x20   labels:\n\
             \x20     io.rollout.test: {project}\n",
            replicas = self.replicas,
            extra = self.app_extra,
            port = self.nginx_port,
        )
    }

    /// Writes `docker-compose.yml`, `nginx.conf` and the log folder into `project`.
    pub fn write_to(&self, project: &Project) {
        project.write("docker-compose.yml", &self.compose_yaml(project.name()));
        project.write("nginx.conf", &self.nginx_conf);
        std::fs::create_dir_all(project.dir().join("nginx-logs")).unwrap();
    }

    /// Writes the stack into `project` (with `override_yaml`, when not empty, as
    /// `docker-compose.override.yml`: read by Compose and by the plugin alike), brings it up,
    /// and waits until every replica of the app is healthy (60 s at most) and nginx answers
    /// 200 on its published port (30 s at most). Returns the app's containers.
    pub fn serve(&self, project: &Project, override_yaml: &str) -> Vec<Container> {
        self.write_to(project);
        if !override_yaml.is_empty() {
            project.write("docker-compose.override.yml", override_yaml);
        }
        project.up();
        let app = project.wait_healthy("app", self.replicas as usize, Duration::from_secs(60));
        wait_http(
            project.port("nginx", 80),
            "/",
            Duration::from_secs(30),
            |a| a.status == 200,
        );
        app
    }
}

/// `examples/blue-green` in a new project named after `slug`, as an operator runs it: blue
/// (v1) live and green (v2), `replicas` each, every service labelled for the harness, nginx
/// on a free loopback port. Returns once both colours are healthy and nginx answers v1.
pub fn blue_green_example(slug: &str, replicas: u32) -> Project {
    blue_green_example_with(slug, replicas, &[])
}

/// [`blue_green_example`] with `env` added to the environment of both colours (values
/// single-quoted in the override file: a test's own values, not an operator's).
pub fn blue_green_example_with(slug: &str, replicas: u32, env: &[(&str, &str)]) -> Project {
    let mut p = Project::new(slug);
    p.copy_from(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/blue-green"));
    let mut o = String::from("services:\n");
    for s in ["blue", "green", "nginx"] {
        let _ = write!(
            o,
            "  {s}:\n    labels:\n      io.rollout.test: {}\n",
            p.name()
        );
        if s != "nginx" {
            let _ = write!(o, "    deploy:\n      replicas: {replicas}\n");
            if !env.is_empty() {
                o.push_str("    environment:\n");
                for (k, v) in env {
                    assert!(!v.contains('\''), "{k}: a quote in a test's value");
                    let _ = writeln!(o, "      {k}: '{v}'");
                }
            }
        }
    }
    p.write("compose.override.yaml", &o);
    p.set_env("NGINX_PORT", &format!("127.0.0.1:{}", free_port()));
    p.up();
    p.wait_healthy("blue", replicas as usize, Duration::from_secs(60));
    p.wait_healthy("green", replicas as usize, Duration::from_secs(60));
    wait_http(p.port("nginx", 80), "/", Duration::from_secs(30), |a| {
        a.status == 200 && a.version.as_deref() == Some("v1")
    });
    p
}

/// The port the demo app listens on in its image (and serves `/metrics` on).
pub const DEMO_PORT: u16 = 8000;

/// `examples/canary` set up for a judged canary: blue (v1) live, green (v2) given
/// `green_env` (a YAML line under `environment:`) and `x-rollout` canary `steps` (a YAML
/// flow list such as `[10, 25, 100]`) held `hold` each, with the analysis `rules` (YAML under
/// `x-rollout.analysis`, indented eight spaces; `PROMETHEUS_URL` in them is replaced by the
/// address of a Prometheus server started here, scraping the project's containers). Returns
/// once both colours are healthy and nginx answers v1, with the operator's `nginx.conf` as it
/// was and the server (kept running while held).
pub fn canary_example(
    slug: &str,
    green_env: &str,
    rules: &str,
    steps: &str,
    hold: &str,
) -> (Project, String, Option<crate::prometheus::Prometheus>) {
    judged_colours(
        slug,
        "canary",
        green_env,
        &format!(
            "    x-rollout:\n      strategy: canary\n      canary:\n        steps: {steps}\n        hold: {hold}\n      analysis:\n{rules}"
        ),
    )
}

/// `examples/blue-green` set up for a judged switch: blue (v1) live, green (v2) given
/// `green_env` and a `monitor` window after the switch (`deploy.update_config.monitor`),
/// judged by the analysis `rules` (as [`canary_example`] takes them). Returns as
/// [`canary_example`] does.
pub fn judged_blue_green_example(
    slug: &str,
    green_env: &str,
    rules: &str,
    monitor: &str,
) -> (Project, String, Option<crate::prometheus::Prometheus>) {
    judged_colours(
        slug,
        "blue-green",
        green_env,
        &format!(
            "    deploy:\n      update_config:\n        monitor: {monitor}\n    x-rollout:\n      analysis:\n{rules}"
        ),
    )
}

/// `examples/EXAMPLE` (one of the seed's two-colour layouts) with every service labelled for
/// the harness, nginx on a free loopback port, and green given `green_env` and then
/// `green_yaml` (lines under `green:`, indented four spaces; `PROMETHEUS_URL` in them is
/// replaced by the address of a Prometheus server started here). Up, both colours healthy,
/// nginx answering v1.
fn judged_colours(
    slug: &str,
    example: &str,
    green_env: &str,
    green_yaml: &str,
) -> (Project, String, Option<crate::prometheus::Prometheus>) {
    let mut p = Project::new(slug);
    p.copy_from(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../examples")
            .join(example),
    );
    let label = p.name().to_string();
    let prometheus = green_yaml
        .contains("PROMETHEUS_URL")
        .then(|| crate::prometheus::Prometheus::scraping_project(p.name(), DEMO_PORT));
    let green_yaml = match &prometheus {
        Some(server) => green_yaml.replace("PROMETHEUS_URL", &server.url),
        None => green_yaml.to_string(),
    };
    p.write(
        "compose.override.yaml",
        &format!(
            "services:\n  nginx:\n    labels:\n      io.rollout.test: {label}\n  blue:\n    labels:\n      io.rollout.test: {label}\n  green:\n    labels:\n      io.rollout.test: {label}\n    environment:\n      {green_env}\n{green_yaml}"
        ),
    );
    p.set_env("NGINX_PORT", &format!("127.0.0.1:{}", free_port()));
    let original_conf = p.read("nginx.conf");
    p.up();
    p.wait_healthy("blue", 3, Duration::from_secs(60));
    p.wait_healthy("green", 3, Duration::from_secs(60));
    wait_http(p.port("nginx", 80), "/", Duration::from_secs(30), |a| {
        a.status == 200 && a.version.as_deref() == Some("v1")
    });
    (p, original_conf, prometheus)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compose_file_has_the_seed_layout_and_labels() {
        let mut s = DemoStack::new("rollout-demo:v1", 6);
        s.app_env.push(("DEMO_LATENCY_MS".into(), "5".into()));
        let y = s.compose_yaml("re2e-x");
        assert!(y.contains("image: ${APP_IMAGE:-rollout-demo:v1}\n"), "{y}");
        assert!(y.contains("      replicas: 6\n"), "{y}");
        assert!(y.contains("      DEMO_LATENCY_MS: \"5\"\n"), "{y}");
        assert!(y.contains("./nginx.conf:/etc/nginx/nginx.conf:ro"));
        assert!(
            y.contains(&format!("\"127.0.0.1:{}:80\"", s.nginx_port)),
            "{y}"
        );
        assert_eq!(y.matches("io.rollout.test: re2e-x").count(), 3);
        assert!(SEED_NGINX_CONF.contains("server app:8000;"));
    }
}
