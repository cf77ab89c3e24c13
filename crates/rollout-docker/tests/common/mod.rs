//! What the engine tests share: the test image, a throw-away Compose project
//! that removes everything it created (by label) when dropped, also after a
//! panic, and helpers to run docker and Compose.

#![allow(dead_code)]

use rollout_docker::{ComposeCli, DockerBackend, DockerJournal, Engine};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The test image: a static busybox FROM scratch serving `/www` with httpd on
/// port 8000, and a HEALTHCHECK that fetches `/` with busybox wget.
pub const IMAGE: &str = "rollout-docker-test:1";
/// [`IMAGE`] with a `/tmp`, where kept shells can start (in [`IMAGE`] each command is an
/// exec).
pub const IMAGE_TMP: &str = "rollout-docker-test:1-tmp";
/// The label on everything the tests create.
pub const TEST_LABEL: &str = "io.rollout.test";

/// Runs a command, panicking with its output when it fails.
pub fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| {
        panic!("cannot run {cmd:?}: {e}\nthese tests need docker and a Compose tool (docker compose or docker-compose)")
    });
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Builds [`IMAGE`] once per test process.
pub fn image() {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("rollout-docker-image-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("www")).unwrap();
        let busybox = Path::new("/bin/busybox");
        assert!(
            busybox.exists(),
            "/bin/busybox is missing\nhint: apt-get install busybox-static"
        );
        std::fs::copy(busybox, dir.join("busybox")).unwrap();
        std::fs::write(dir.join("www/index.html"), "ok\n").unwrap();
        std::fs::write(
            dir.join("Dockerfile"),
            r#"FROM scratch
COPY busybox /bin/busybox
RUN ["/bin/busybox", "--install", "-s", "/bin"]
COPY www /www
HEALTHCHECK --interval=1s --timeout=2s --retries=2 CMD ["wget", "-q", "-O", "/dev/null", "http://127.0.0.1:8000/"]
CMD ["httpd", "-f", "-p", "8000", "-h", "/www"]
"#,
        )
        .unwrap();
        run(Command::new("docker")
            .env("DOCKER_BUILDKIT", "0")
            .args(["build", "-q", "--label", &format!("{TEST_LABEL}=rollout-docker"), "-t", IMAGE])
            .arg(&dir));
        std::fs::write(
            dir.join("Dockerfile"),
            format!("FROM {IMAGE}\nRUN [\"/bin/busybox\", \"mkdir\", \"-m\", \"1777\", \"/tmp\"]\n"),
        )
        .unwrap();
        run(Command::new("docker")
            .env("DOCKER_BUILDKIT", "0")
            .args(["build", "-q", "--label", &format!("{TEST_LABEL}=rollout-docker"), "-t", IMAGE_TMP])
            .arg(&dir));
        let _ = std::fs::remove_dir_all(&dir);
    });
}

/// Whether this run's Compose tool is Compose 2 (`docker compose`): as
/// `cargo xtask e2e` says in `ROLLOUT_E2E_COMPOSE` (`v1` or `v2`), else
/// docker-compose where it is installed, else Compose 2.
pub fn compose_v2() -> bool {
    match std::env::var("ROLLOUT_E2E_COMPOSE").ok().as_deref() {
        Some("v2") => true,
        Some("v1") => false,
        _ => Command::new("docker-compose")
            .arg("version")
            .output()
            .map(|o| !o.status.success())
            .unwrap_or(true),
    }
}

/// The Compose command line of this run's tool.
pub fn compose_command() -> Command {
    if compose_v2() {
        let mut c = Command::new("docker");
        c.arg("compose");
        c
    } else {
        Command::new("docker-compose")
    }
}

/// The engine the docker CLI would use here.
pub async fn engine() -> Engine {
    let host =
        std::env::var("DOCKER_HOST").unwrap_or_else(|_| "unix:///var/run/docker.sock".into());
    Engine::connect(&host).await.unwrap_or_else(|e| {
        panic!("{e}\nthese tests need a Docker engine: run them with cargo xtask e2e")
    })
}

/// A Compose project in a temporary folder, removed with all it created
/// when dropped.
pub struct Project {
    pub name: String,
    pub dir: PathBuf,
}

impl Project {
    /// A project named after the test, with the services every test picks
    /// from (only the ones it brings up run).
    pub fn new(test: &str) -> Self {
        image();
        let name = format!(
            "rdt{}{}",
            test.chars()
                .filter(|c| c.is_ascii_alphanumeric())
                .take(12)
                .collect::<String>(),
            std::process::id()
        )
        .to_lowercase();
        let dir = std::env::temp_dir().join(&name);
        std::fs::create_dir_all(dir.join("www")).unwrap();
        std::fs::write(dir.join("www/index.html"), "project\n").unwrap();
        let compose = COMPOSE.replace("TESTNAME", &name).replace("IMAGE", IMAGE);
        std::fs::write(dir.join("docker-compose.yml"), compose).unwrap();
        let project = Self { name, dir };
        project.set_version(1);
        project.down();
        project
    }

    /// Sets `VERSION` in `.env`: each value is another revision of `app`.
    pub fn set_version(&self, v: u32) {
        std::fs::write(self.dir.join(".env"), format!("VERSION={v}\n")).unwrap();
    }

    /// The Compose command for this project.
    pub fn compose(&self) -> ComposeCli {
        let cli = if compose_v2() {
            ComposeCli::v2(Vec::<String>::new())
        } else {
            ComposeCli::v1()
        };
        cli.file(self.dir.join("docker-compose.yml"))
            .project_name(&self.name)
            .current_dir(&self.dir)
    }

    /// Runs the run's Compose tool on the project with `args`.
    pub fn compose_run(&self, args: &[&str]) -> String {
        run(compose_command()
            .current_dir(&self.dir)
            .args(["-p", &self.name])
            .args(args))
    }

    /// The name the run's Compose tool gives replica `n` of `service`
    /// (`P_S_N` under docker-compose 1.x, `P-S-N` under Compose 2).
    pub fn container(&self, service: &str, n: usize) -> String {
        let sep = if compose_v2() { '-' } else { '_' };
        format!("{}{sep}{service}{sep}{n}", self.name)
    }

    /// The labels the library puts on what it creates for this test.
    pub fn labels(&self) -> HashMap<String, String> {
        HashMap::from([(TEST_LABEL.to_string(), self.name.clone())])
    }

    pub async fn backend(&self) -> DockerBackend {
        DockerBackend::new(engine().await, self.compose()).with_labels(self.labels())
    }

    pub async fn journal(&self) -> DockerJournal {
        DockerJournal::new(engine().await).with_labels(self.labels())
    }

    /// Container ids of a service, as `docker-compose ps -q` lists them.
    pub fn ps(&self, service: &str) -> Vec<String> {
        let mut ids: Vec<String> = self
            .compose_run(&["ps", "-q", service])
            .lines()
            .map(|l| l.trim().to_string())
            .filter(|l| !l.is_empty())
            .collect();
        ids.sort();
        ids
    }

    fn down(&self) {
        let _ = compose_command()
            .current_dir(&self.dir)
            .args(["-p", &self.name, "down", "-v", "--timeout", "1"])
            .output();
        let label = format!("label={TEST_LABEL}={}", self.name);
        if let Ok(out) = Command::new("docker")
            .args(["ps", "-aq", "--filter", &label])
            .output()
        {
            for id in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                let _ = Command::new("docker").args(["rm", "-f", id]).output();
            }
        }
        if let Ok(out) = Command::new("docker")
            .args(["network", "ls", "-q", "--filter", &label])
            .output()
        {
            for id in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                let _ = Command::new("docker").args(["network", "rm", id]).output();
            }
        }
        if let Ok(out) = Command::new("docker")
            .args(["volume", "ls", "-q", "--filter", &label])
            .output()
        {
            for name in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                let _ = Command::new("docker").args(["volume", "rm", name]).output();
            }
        }
    }
}

impl Drop for Project {
    fn drop(&mut self) {
        self.down();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Services: `app` (healthy once httpd answers), `web` (the same with two
/// replicas in the file), `sick` (its check always
/// fails), `slow` (its first check is an hour away), `crash` (exits 3 after
/// a second), `plain` (no healthcheck), `stubborn` (ignores SIGTERM).
const COMPOSE: &str = r#"version: "3.8"
x-common: &common
  image: IMAGE
  init: true
  labels: {io.rollout.test: TESTNAME}
services:
  app:
    <<: *common
    environment: {VERSION: "${VERSION}", SECRET: hunter2}
  web:
    <<: *common
    environment: {VERSION: "${VERSION}"}
    deploy: {replicas: 2}
    volumes: ["./www:/srv/www:ro", "data:/data"]
    networks:
      default: {}
      back: {aliases: [web-back]}
  sick:
    <<: *common
    healthcheck: {test: ["CMD", "false"], interval: 1s, timeout: 1s, retries: 1}
  slow:
    <<: *common
    healthcheck: {test: ["CMD", "true"], interval: 1h}
  crash:
    <<: *common
    environment: {SECRET: hunter2}
    command: ["sh", "-c", "echo boom; echo oops >&2; sleep 1; exit 3"]
  plain:
    <<: *common
    healthcheck: {disable: true}
  late:
    <<: *common
    command: ["sh", "-c", "sleep 3; touch /ready; exec httpd -f -p 8000 -h /www"]
    healthcheck: {test: ["CMD", "test", "-e", "/ready"], interval: 500ms, timeout: 1s, retries: 1, start_period: 20s}
  stubborn:
    <<: *common
    command: ["sh", "-c", "trap '' TERM; exec httpd -f -p 8000 -h /www"]
networks:
  default:
    labels: {io.rollout.test: TESTNAME}
  back:
    labels: {io.rollout.test: TESTNAME}
volumes:
  data:
    labels: {io.rollout.test: TESTNAME}
"#;
