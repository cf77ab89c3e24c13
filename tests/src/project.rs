//! A Compose project that cleans up after itself.

use crate::engine::{docker, run_ok, ComposeTool};
use rollout_load::{ErrorLogSource, LoadConfig, LoadHandle};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A container of the project, as the engine sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Container {
    /// Full id.
    pub id: String,
    /// Name without the leading slash.
    pub name: String,
    /// The image as the container was created with it (`rollout-demo:v1`).
    pub image: String,
    /// `running`, `exited`, ...
    pub state: String,
    /// `healthy`, `unhealthy`, `starting`, or empty without a health check.
    pub health: String,
    /// The Compose service (`com.docker.compose.service`).
    pub service: String,
}

/// One Compose project in its own temporary folder, removed with everything it created when
/// dropped (also during a panic's unwinding).
#[derive(Debug)]
pub struct Project {
    name: String,
    dir: PathBuf,
    tool: ComposeTool,
    /// Extra environment for every Compose command.
    env: Vec<(String, String)>,
}

/// Counts the commands run (`exec_start`) in one container from the engine's event stream,
/// from [`ExecWatch::start`] to [`ExecWatch::count`]. A stream, not a query afterwards: the
/// engine keeps only its last 256 events for `docker events --since`, and the health checks
/// of a stack's containers push a rollout's out of them within a minute.
pub struct ExecWatch {
    child: Option<std::process::Child>,
}

impl ExecWatch {
    /// Watches the first running container of `service` of `p`.
    pub fn start(p: &Project, service: &str) -> ExecWatch {
        let c = p.running(service);
        let child = docker()
            .args([
                "events",
                "--since",
                &unix_now().to_string(),
                "--filter",
                &format!("container={}", c.id),
                "--filter",
                "event=exec_start",
                // One line per event: an action holds the command, newlines and all.
                "--format",
                "{{json .Action}}",
            ])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        ExecWatch { child: Some(child) }
    }

    /// The commands seen since the start (waiting half a second for the last ones).
    pub fn count(mut self) -> usize {
        std::thread::sleep(Duration::from_millis(500));
        let mut child = self.child.take().unwrap();
        let _ = child.kill();
        let out = child.wait_with_output().unwrap();
        String::from_utf8_lossy(&out.stdout).lines().count()
    }
}

impl Drop for ExecWatch {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Now, in whole seconds since the Unix epoch (as `docker events --since` takes it).
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

impl Project {
    /// A new, empty project named `re2e-<slug>-<unique>`, with the Compose tool of
    /// [`ComposeTool::detect`].
    pub fn new(slug: &str) -> Project {
        Project::with_tool(slug, ComposeTool::detect())
    }

    /// A new, empty project driven by `tool`.
    pub fn with_tool(slug: &str, tool: ComposeTool) -> Project {
        crate::require_engine();
        let slug: String = slug
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_lowercase()
                } else {
                    '-'
                }
            })
            .collect();
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let name = format!(
            "re2e-{slug}-{}-{}-{:05}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::SeqCst),
            nanos % 100_000
        );
        let dir = std::env::temp_dir().join(&name);
        std::fs::create_dir_all(&dir)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
        Project {
            name,
            dir,
            tool,
            env: Vec::new(),
        }
    }

    /// The project name (`-p`), also the value of the `io.rollout.test` label.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The project folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The Compose tool it runs.
    pub fn tool(&self) -> &ComposeTool {
        &self.tool
    }

    /// Sets a variable in the environment of every Compose command (interpolated as `${VAR}`).
    pub fn set_env(&mut self, key: &str, value: &str) {
        self.env.retain(|(k, _)| k != key);
        self.env.push((key.into(), value.into()));
    }

    /// Writes a file of the project (creating folders).
    pub fn write(&self, rel: &str, contents: &str) {
        let path = self.dir.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        std::fs::write(&path, contents)
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
    }

    /// Reads a file of the project.
    pub fn read(&self, rel: &str) -> String {
        let path = self.dir.join(rel);
        std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
    }

    /// A Compose command in the project folder with `-p NAME`, as an operator runs it.
    pub fn compose_command(&self) -> Command {
        self.compose_command_with(self.tool)
    }

    /// The same command with another tool (for a project touched by both tools).
    pub fn compose_command_with(&self, tool: ComposeTool) -> Command {
        let mut cmd = tool.command();
        cmd.current_dir(&self.dir)
            .args(["--project-name", &self.name])
            .envs(self.env.iter().map(|(k, v)| (k, v)));
        cmd
    }

    /// Runs a Compose command; panics with its output unless it exits 0.
    pub fn compose(&self, args: &[&str]) -> Output {
        run_ok(self.compose_command().args(args))
    }

    /// Runs a Compose command and returns its output whatever the exit status.
    pub fn try_compose(&self, args: &[&str]) -> Output {
        self.compose_command()
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", self.tool.name()))
    }

    /// `up -d`.
    pub fn up(&self) {
        self.compose(&["up", "-d"]);
    }

    /// `down` (containers and network; volumes too).
    pub fn down(&self) {
        self.compose(&["down", "--volumes", "--timeout", "10"]);
    }

    /// Where `service` publishes `container_port` on the host.
    pub fn port(&self, service: &str, container_port: u16) -> SocketAddr {
        let out = self.compose(&["port", service, &container_port.to_string()]);
        let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
        text.parse().unwrap_or_else(|e| {
            panic!("{service} publishes {container_port} at {text:?}, not an address: {e}")
        })
    }

    /// The `com.docker.compose.version` labels of the project's containers (all states), with
    /// the container names: which Compose tool made each.
    pub fn compose_versions(&self) -> Vec<(String, String)> {
        let ids: Vec<String> = self.containers(None).into_iter().map(|c| c.id).collect();
        if ids.is_empty() {
            return Vec::new();
        }
        let out = run_ok(
            docker()
                .args([
                    "inspect",
                    "--format",
                    "{{.Name}}\t{{index .Config.Labels \"com.docker.compose.version\"}}",
                ])
                .args(&ids),
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.split_once('\t'))
            .map(|(n, v)| (n.trim_start_matches('/').to_string(), v.to_string()))
            .collect()
    }

    /// The project's containers (all states), optionally of one service, by Compose labels.
    pub fn containers(&self, service: Option<&str>) -> Vec<Container> {
        let mut ps = docker();
        ps.args(["ps", "--all", "--quiet", "--no-trunc", "--filter"])
            .arg(format!("label=com.docker.compose.project={}", self.name));
        if let Some(s) = service {
            ps.arg("--filter")
                .arg(format!("label=com.docker.compose.service={s}"));
        }
        let ids = String::from_utf8_lossy(&run_ok(&mut ps).stdout).into_owned();
        let ids: Vec<&str> = ids.split_whitespace().collect();
        if ids.is_empty() {
            return Vec::new();
        }
        let format = "{{.Id}}\t{{.Name}}\t{{.Config.Image}}\t{{.State.Status}}\t\
                      {{with index .State \"Health\"}}{{.Status}}{{end}}\t\
                      {{index .Config.Labels \"com.docker.compose.service\"}}";
        // A container can vanish between ps and inspect: ignore the failure, keep the others.
        let out = docker()
            .args(["inspect", "--format", format])
            .args(&ids)
            .output()
            .expect("docker inspect runs");
        let mut containers: Vec<Container> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| {
                let f: Vec<&str> = l.split('\t').collect();
                (f.len() == 6).then(|| Container {
                    id: f[0].into(),
                    name: f[1].trim_start_matches('/').into(),
                    image: f[2].into(),
                    state: f[3].into(),
                    health: f[4].into(),
                    service: f[5].into(),
                })
            })
            .collect();
        containers.sort_by(|a, b| a.name.cmp(&b.name));
        containers
    }

    /// The first running container of `service`; panics when it has none.
    pub fn running(&self, service: &str) -> Container {
        self.containers(Some(service))
            .into_iter()
            .find(|c| c.state == "running")
            .unwrap_or_else(|| panic!("{service} has no running container"))
    }

    /// The processes of the first running container of `service` whose command line holds
    /// every one of `marks`, as the host's process table shows them (`docker top`): the kept
    /// sessions a run opens in its proxy (HAProxy's relay, nginx's shells), none once the run
    /// has ended or has been killed (their input closes with it).
    pub fn processes_with(&self, service: &str, marks: &[&str]) -> usize {
        let c = self.running(service);
        let out = docker()
            .args(["top", &c.id, "-eo", "pid,args"])
            .output()
            .unwrap();
        assert!(out.status.success(), "docker top: {out:?}");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| marks.iter().all(|m| l.contains(m)))
            .count()
    }

    /// Waits up to `within` for no process of [`Project::processes_with`] to be left; how
    /// many are.
    pub fn processes_gone(&self, service: &str, marks: &[&str], within: Duration) -> usize {
        let until = Instant::now() + within;
        loop {
            let left = self.processes_with(service, marks);
            if left == 0 || Instant::now() >= until {
                return left;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Checks what a run that ended did in the proxy `service`: no kept session of its
    /// ([`Project::processes_with`] `marks`) outlived it (within 5 s), and at most `most`
    /// commands ran there by exec (`execs`, from an [`ExecWatch`] over the run).
    pub fn assert_sessions_let_go(&self, service: &str, marks: &[&str], execs: usize, most: usize) {
        assert_eq!(
            self.processes_gone(service, marks, Duration::from_secs(5)),
            0,
            "a kept session in {service} outlived the run"
        );
        eprintln!("{execs} commands run by exec in {service} during the rollout");
        assert!(
            execs <= most,
            "{execs} commands run by exec in {service} during the rollout"
        );
    }

    /// The images of the running containers of `service`, sorted.
    pub fn running_images(&self, service: &str) -> Vec<String> {
        let mut v: Vec<String> = self
            .containers(Some(service))
            .into_iter()
            .filter(|c| c.state == "running")
            .map(|c| c.image)
            .collect();
        v.sort();
        v
    }

    /// Waits until `service` has exactly `count` running containers that are healthy (or
    /// running, for images without a health check); panics after `timeout` with what it saw.
    pub fn wait_healthy(&self, service: &str, count: usize, timeout: Duration) -> Vec<Container> {
        let deadline = Instant::now() + timeout;
        loop {
            let running: Vec<Container> = self
                .containers(Some(service))
                .into_iter()
                .filter(|c| c.state == "running")
                .collect();
            if running.len() == count
                && running
                    .iter()
                    .all(|c| c.health == "healthy" || c.health.is_empty())
            {
                return running;
            }
            assert!(
                Instant::now() < deadline,
                "{service} did not get {count} healthy containers within {timeout:?}: {running:#?}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The host path of nginx's error log for a [`crate::DemoStack`] (its log folder is
    /// bind-mounted from the project folder).
    pub fn nginx_error_log(&self) -> PathBuf {
        self.dir.join("nginx-logs").join("error.log")
    }

    /// The address of the running container of `service` on the project's network, with
    /// `port`: reached from this machine through the network's bridge, as a load balancer in
    /// front of the host would reach it, without Docker's userland proxy of the published
    /// port in between (a process of its own that, on this 2-core machine under load, was
    /// seen closing new connections unanswered while nginx logged nothing).
    pub fn container_address(&self, service: &str, port: u16) -> SocketAddr {
        let c = self.running(service);
        let out = run_ok(docker().args([
            "inspect",
            "--format",
            "{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}",
            &c.id,
        ]));
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let ip = text
            .split_whitespace()
            .next()
            .unwrap_or_else(|| panic!("{service} ({}) has no address on a network", c.name));
        let ip: std::net::IpAddr = ip
            .parse()
            .unwrap_or_else(|e| panic!("{service} has address {ip:?}, not an IP: {e}"));
        SocketAddr::new(ip, port)
    }

    /// A load configuration aimed at port 80 of the running container of `proxy_service`
    /// ([`Project::container_address`]), reading the upstream errors from
    /// [`Project::nginx_error_log`]. The address is fixed when the load starts: a load that
    /// must outlive the proxy's container (`down` then `up`) uses
    /// [`Project::load_config_published`].
    pub fn load_config(&self, proxy_service: &str) -> LoadConfig {
        let mut config = LoadConfig::new(self.container_address(proxy_service, 80));
        config.error_log = Some(ErrorLogSource::File(self.nginx_error_log()));
        config
    }

    /// The same, aimed at the port 80 of `proxy_service` published on 127.0.0.1 (which stays
    /// when its container is recreated).
    pub fn load_config_published(&self, proxy_service: &str) -> LoadConfig {
        let mut config = LoadConfig::new(self.port(proxy_service, 80));
        config.error_log = Some(ErrorLogSource::File(self.nginx_error_log()));
        config
    }

    /// Starts load on the stack's nginx in the background: the default mix (250 requests per
    /// second, slow GETs and POSTs, keep-alive and new connections), changed by `tweak`.
    pub fn start_load(&self, tweak: impl FnOnce(&mut LoadConfig)) -> LoadHandle {
        let mut config = self.load_config("nginx");
        tweak(&mut config);
        LoadHandle::start(config).unwrap_or_else(|e| panic!("cannot start the load: {e}"))
    }

    /// [`Project::start_load`] through the published port, for a load that outlives nginx's
    /// container.
    pub fn start_load_published(&self, tweak: impl FnOnce(&mut LoadConfig)) -> LoadHandle {
        let mut config = self.load_config_published("nginx");
        tweak(&mut config);
        LoadHandle::start(config).unwrap_or_else(|e| panic!("cannot start the load: {e}"))
    }

    /// nginx's error log inside the first container of `service` (read with `docker exec ...
    /// cat` at the end of a load run), for stacks that do not bind-mount the log folder. Its
    /// lines are lost if that container is recreated during the run.
    pub fn container_error_log(&self, service: &str) -> ErrorLogSource {
        let c = self.running(service);
        ErrorLogSource::Container {
            container: c.id,
            path: "/var/log/nginx/error.log".into(),
        }
    }

    /// Copies the files of `from` (for example one of `examples/`) into the project folder.
    pub fn copy_from(&self, from: &Path) {
        fn copy(from: &Path, to: &Path) {
            std::fs::create_dir_all(to).unwrap();
            let entries = std::fs::read_dir(from)
                .unwrap_or_else(|e| panic!("cannot read {}: {e}", from.display()));
            for entry in entries.map(Result::unwrap) {
                let target = to.join(entry.file_name());
                if entry.file_type().unwrap().is_dir() {
                    copy(&entry.path(), &target);
                } else {
                    std::fs::copy(entry.path(), &target)
                        .unwrap_or_else(|e| panic!("cannot copy {}: {e}", entry.path().display()));
                }
            }
        }
        copy(from, &self.dir);
    }

    /// `docker --config DIR rollout --project-name NAME` in the project folder, with the
    /// project's environment: the plugin under test through the real Docker CLI. Add the
    /// rollout's own arguments and run it. `ROLLOUT_COMPOSE` is not passed on (unless the
    /// project sets it): the plugin finds the tool that made the project itself.
    pub fn rollout_command(&self, plugins: &crate::PluginDir) -> Command {
        let mut cmd = plugins.docker();
        cmd.current_dir(&self.dir)
            .args(["rollout", "--project-name", &self.name])
            .env_remove("ROLLOUT_COMPOSE")
            .envs(self.env.iter().map(|(k, v)| (k, v)));
        cmd
    }

    /// Removes everything of the project: `down` with volumes and orphans, then whatever still
    /// carries the project's labels (containers a tool made outside Compose, networks,
    /// volumes), and what the rollout keeps with the engine for it (the never-started lock,
    /// journal and saved-revision containers, labelled `io.rollout.project`, which `down`
    /// leaves by design). Called on drop; safe to call twice.
    pub fn clean(&self) {
        let _ = self
            .compose_command()
            .args(["down", "--volumes", "--remove-orphans", "--timeout", "1"])
            .output();
        for label in [
            format!("label=com.docker.compose.project={}", self.name),
            format!("label=io.rollout.test={}", self.name),
            format!("label=io.rollout.project={}", self.name),
        ] {
            let ids = |kind: &[&str]| -> Vec<String> {
                docker()
                    .args(kind)
                    .args(["--quiet", "--filter", &label])
                    .output()
                    .map(|o| {
                        String::from_utf8_lossy(&o.stdout)
                            .split_whitespace()
                            .map(String::from)
                            .collect()
                    })
                    .unwrap_or_default()
            };
            let containers = ids(&["ps", "--all"]);
            if !containers.is_empty() {
                let _ = docker()
                    .args(["rm", "--force", "--volumes"])
                    .args(&containers)
                    .output();
            }
            let networks = ids(&["network", "ls"]);
            if !networks.is_empty() {
                let _ = docker().args(["network", "rm"]).args(&networks).output();
            }
            let volumes = ids(&["volume", "ls"]);
            if !volumes.is_empty() {
                let _ = docker()
                    .args(["volume", "rm", "--force"])
                    .args(&volumes)
                    .output();
            }
        }
    }

    /// What is left of the project on the engine: containers, networks and volumes with its
    /// labels (empty after [`Project::clean`]).
    pub fn leftovers(name: &str) -> Vec<String> {
        let mut left = Vec::new();
        for label in [
            format!("label=com.docker.compose.project={name}"),
            format!("label=io.rollout.test={name}"),
        ] {
            for kind in [&["ps", "--all"][..], &["network", "ls"], &["volume", "ls"]] {
                let out = run_ok(docker().args(kind).args(["--quiet", "--filter", &label]));
                left.extend(
                    String::from_utf8_lossy(&out.stdout)
                        .split_whitespace()
                        .map(|id| format!("{} {id}", kind[0])),
                );
            }
        }
        left
    }
}

impl Drop for Project {
    fn drop(&mut self) {
        self.clean();
        if std::env::var_os("ROLLOUT_E2E_KEEP").is_none() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}
