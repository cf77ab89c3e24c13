//! A real two-node swarm on one machine: the engine the tests run on is the manager, and a
//! second Docker engine, started by the test in a network namespace of its own, joins it as a
//! worker.
//!
//! The worker is `dockerd` with its own data-root, exec-root, pidfile, socket and an empty
//! config file (the host's `daemon.json` names the host's data-root), entered into the
//! namespace with `nsenter --net` only: `ip netns exec` would also remount `/sys`, hiding the
//! cgroup mounts dockerd needs. A veth pair joins the namespace to the host on addresses of
//! the test's own (`10.213.0.0/24` by default), the manager advertises the host side, the
//! worker the other, and overlay networks carry traffic between them over VXLAN. Images
//! reach the worker by `docker save | docker load` ([`Swarm::share_image`]), and the worker
//! runs with `DOCKER_SERVICE_PREFER_OFFLINE_IMAGE=1` so that Swarm does not try to pull them
//! from a registry it cannot reach.
//!
//! Everything is undone when the [`Swarm`] is dropped, also during a panic's unwinding: both
//! nodes leave the swarm (the manager was not in one before: [`Swarm::two_nodes`] refuses to
//! start otherwise, so that a test never takes over a swarm it did not make), the worker
//! engine is stopped by its pid, and the namespace, the veth pair and the engine's folders
//! are removed.

use crate::engine::{docker, run_ok};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The subnet of the veth pair, unless `ROLLOUT_E2E_SWARM_SUBNET` names another `/24` prefix
/// (three octets, such as `10.213.0`).
const DEFAULT_SUBNET: &str = "10.213.0";

/// A swarm of the host's engine (manager) and a worker engine in a network namespace.
#[derive(Debug)]
pub struct Swarm {
    worker: Option<Worker>,
    manager_joined: bool,
    manager_addr: String,
}

/// The worker engine and what was made for it.
#[derive(Debug)]
struct Worker {
    namespace: String,
    host_link: String,
    dir: PathBuf,
    dockerd: Child,
    addr: String,
}

impl Worker {
    fn socket(&self) -> PathBuf {
        self.dir.join("docker.sock")
    }
}

/// `ip ARGS`, panicking with its words when it fails.
fn ip(args: &[&str]) {
    run_ok(Command::new("ip").args(args));
}

/// The manager's swarm state (`inactive`, `active`, ...).
fn swarm_state(cmd: &mut Command) -> String {
    let out = run_ok(cmd.args(["info", "--format", "{{.Swarm.LocalNodeState}}"]));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

impl Swarm {
    /// Makes the swarm: the namespace and its veth pair, the worker engine in it, the
    /// manager's `swarm init` and the worker's `swarm join`. Panics when the host's engine is
    /// already in a swarm, or when a step fails (with the worker engine's log).
    pub fn two_nodes() -> Swarm {
        let state = swarm_state(&mut docker());
        assert_eq!(
            state, "inactive",
            "the engine is already in a swarm ({state}): the swarm tests make their own and leave \
             it as they found it\nhint: docker swarm leave --force, if that swarm is not someone's"
        );
        let subnet =
            std::env::var("ROLLOUT_E2E_SWARM_SUBNET").unwrap_or_else(|_| DEFAULT_SUBNET.into());
        let pid = std::process::id();
        let namespace = format!("rollout-swarm-{pid}");
        let host_link = format!("rsw{pid}h");
        let ns_link = format!("rsw{pid}n");
        let manager_addr = format!("{subnet}.1");
        let worker_addr = format!("{subnet}.2");
        let mut swarm = Swarm {
            worker: None,
            manager_joined: false,
            manager_addr: manager_addr.clone(),
        };
        // From here on, Drop undoes whatever was made.
        ip(&["netns", "add", &namespace]);
        let dir = std::env::temp_dir().join(format!("rollout-swarm-{pid}"));
        std::fs::create_dir_all(dir.join("data")).unwrap();
        let config = dir.join("daemon.json");
        std::fs::write(&config, "{}").unwrap();
        let log = std::fs::File::create(dir.join("dockerd.log")).unwrap();
        let (driver, mtu) = host_engine_storage_and_mtu();
        let netns = format!("--net=/var/run/netns/{namespace}");
        let socket = format!("unix://{}", dir.join("docker.sock").display());
        ip(&[
            "link", "add", &host_link, "type", "veth", "peer", "name", &ns_link,
        ]);
        let dockerd = Command::new("nsenter")
            .arg(&netns)
            .arg("dockerd")
            .arg("--config-file")
            .arg(&config)
            .arg("--data-root")
            .arg(dir.join("data"))
            .arg("--exec-root")
            .arg(dir.join("exec"))
            .arg("--pidfile")
            .arg(dir.join("dockerd.pid"))
            .args(["-H", &socket, "--storage-driver", &driver, "--mtu", &mtu])
            .args(["--iptables=false", "--ip6tables=false"])
            // The worker reaches no registry (its images come by `docker save | docker
            // load`): without this, Swarm's executor tries a pull before every task and waits
            // for the namespace's DNS to time out (about 30 s a task).
            .env("DOCKER_SERVICE_PREFER_OFFLINE_IMAGE", "1")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start the worker's dockerd: {e}"));
        swarm.worker = Some(Worker {
            namespace: namespace.clone(),
            host_link: host_link.clone(),
            dir,
            dockerd,
            addr: worker_addr.clone(),
        });
        ip(&["link", "set", &ns_link, "netns", &namespace]);
        ip(&[
            "addr",
            "add",
            &format!("{manager_addr}/24"),
            "dev",
            &host_link,
        ]);
        ip(&["link", "set", &host_link, "up"]);
        for args in [
            vec!["addr", "add", &format!("{worker_addr}/24"), "dev", &ns_link],
            vec!["link", "set", &ns_link, "up"],
            vec!["link", "set", "lo", "up"],
            vec!["route", "add", "default", "via", &manager_addr],
        ] {
            let mut all = vec!["-n", &namespace];
            all.extend(args.iter().copied());
            ip(&all);
        }
        swarm.wait_worker_engine(Duration::from_secs(30));
        run_ok(docker().args([
            "swarm",
            "init",
            "--advertise-addr",
            &manager_addr,
            "--listen-addr",
            &format!("{manager_addr}:2377"),
        ]));
        swarm.manager_joined = true;
        let token = run_ok(docker().args(["swarm", "join-token", "-q", "worker"]));
        let token = String::from_utf8_lossy(&token.stdout).trim().to_string();
        run_ok(swarm.worker_docker().args([
            "swarm",
            "join",
            "--token",
            &token,
            "--advertise-addr",
            &worker_addr,
            &format!("{manager_addr}:2377"),
        ]));
        swarm.wait_nodes_ready(2, Duration::from_secs(30));
        swarm
    }

    /// The worker engine's host URL (`unix://` and its socket).
    pub fn worker_host(&self) -> String {
        let worker = self.worker.as_ref().expect("the worker engine runs");
        format!("unix://{}", worker.socket().display())
    }

    /// `docker` aimed at the worker engine.
    pub fn worker_docker(&self) -> Command {
        let worker = self.worker.as_ref().expect("the worker engine runs");
        let mut cmd = docker();
        cmd.arg("-H")
            .arg(format!("unix://{}", worker.socket().display()));
        cmd
    }

    /// Cuts the worker off the manager: the host's end of its veth pair down. Its engine
    /// and tasks go on, unreachable; [`Swarm::reconnect_worker`] undoes it.
    pub fn cut_worker(&self) {
        let worker = self.worker.as_ref().expect("the worker engine runs");
        ip(&["link", "set", &worker.host_link, "down"]);
    }

    /// The worker's link up again, and both nodes ready.
    pub fn reconnect_worker(&self, timeout: Duration) {
        let worker = self.worker.as_ref().expect("the worker engine runs");
        ip(&["link", "set", &worker.host_link, "up"]);
        self.wait_nodes_ready(2, timeout);
    }

    /// The manager's address on the veth pair (what the swarm advertises).
    pub fn manager_addr(&self) -> &str {
        &self.manager_addr
    }

    /// The worker's address in its namespace.
    pub fn worker_addr(&self) -> &str {
        &self.worker.as_ref().expect("the worker engine runs").addr
    }

    /// Copies `image` from the host's engine to the worker's (`docker save | docker load`).
    pub fn share_image(&self, image: &str) {
        let mut save = docker()
            .args(["save", image])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run docker save {image}: {e}"));
        let out = self
            .worker_docker()
            .arg("load")
            .stdin(save.stdout.take().unwrap())
            .output()
            .unwrap();
        assert!(save.wait().unwrap().success(), "docker save {image} failed");
        assert!(
            out.status.success(),
            "docker load of {image} into the worker failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// The node ids of the swarm, manager first.
    pub fn node_ids(&self) -> Vec<String> {
        let out = run_ok(docker().args(["node", "ls", "--format", "{{.ManagerStatus}} {{.ID}}"]));
        let mut rows: Vec<(bool, String)> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| {
                let (status, id) = l.trim().rsplit_once(' ').unwrap_or(("", l.trim()));
                (!id.is_empty()).then(|| (status.is_empty(), id.to_string()))
            })
            .collect();
        rows.sort();
        rows.into_iter().map(|(_, id)| id).collect()
    }

    fn wait_worker_engine(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let up = self
                .worker_docker()
                .args(["version", "--format", "{{.Server.Version}}"])
                .output()
                .map(|o| o.status.success())
                .unwrap_or(false);
            if up {
                return;
            }
            if Instant::now() > deadline {
                panic!(
                    "the worker's dockerd did not answer within {timeout:?}; its log ends:\n{}",
                    self.worker_log_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn wait_nodes_ready(&self, count: usize, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let out = run_ok(docker().args(["node", "ls", "--format", "{{.Status}}"]));
            let text = String::from_utf8_lossy(&out.stdout).to_string();
            if text.lines().filter(|l| l.trim() == "Ready").count() >= count {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{count} nodes not ready within {timeout:?}: {text}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn worker_log_tail(&self) -> String {
        let Some(worker) = &self.worker else {
            return String::new();
        };
        let log = std::fs::read_to_string(worker.dir.join("dockerd.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(15)..].join("\n")
    }
}

/// The host engine's storage driver and its default bridge's MTU, which the worker copies
/// (the driver that works on this filesystem, and an MTU that fits the host's links).
fn host_engine_storage_and_mtu() -> (String, String) {
    let out = run_ok(docker().args(["info", "--format", "{{.Driver}}"]));
    let driver = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let out = run_ok(docker().args([
        "network",
        "inspect",
        "bridge",
        "--format",
        "{{index .Options \"com.docker.network.driver.mtu\"}}",
    ]));
    let mtu = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let mtu = if mtu.parse::<u32>().is_ok() {
        mtu
    } else {
        "1500".into()
    };
    (driver, mtu)
}

/// Runs `cmd`, ignoring how it ends (for the undo steps, each of which must be tried).
fn try_run(cmd: &mut Command) {
    let _ = cmd.stdout(Stdio::null()).stderr(Stdio::null()).status();
}

impl Drop for Swarm {
    fn drop(&mut self) {
        if self.manager_joined {
            try_run(self.worker_docker().args(["swarm", "leave", "--force"]));
            try_run(docker().args(["swarm", "leave", "--force"]));
        }
        let Some(mut worker) = self.worker.take() else {
            return;
        };
        stop_dockerd(&mut worker);
        try_run(Command::new("ip").args(["link", "del", &worker.host_link]));
        try_run(Command::new("ip").args(["netns", "del", &worker.namespace]));
        remove_engine_dir(&worker.dir);
    }
}

/// SIGTERM to the worker engine (by the pid of the `nsenter` that became it), then SIGKILL
/// after 20 s.
fn stop_dockerd(worker: &mut Worker) {
    let pid = worker.dockerd.id().to_string();
    try_run(Command::new("kill").args(["-TERM", &pid]));
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = worker.dockerd.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = worker.dockerd.kill();
    let _ = worker.dockerd.wait();
}

/// Removes the worker engine's folders. Its containers' mounts are gone with the engine,
/// but a layer mount left by a killed engine is unmounted first so that nothing is removed
/// through it.
fn remove_engine_dir(dir: &Path) {
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    let prefix = dir.display().to_string();
    let mut points: Vec<&str> = mounts
        .lines()
        .filter_map(|l| l.split(' ').nth(1))
        .filter(|p| p.starts_with(&prefix))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.len()));
    for point in points {
        try_run(Command::new("umount").args(["-l", point]));
    }
    let _ = std::fs::remove_dir_all(dir);
}
