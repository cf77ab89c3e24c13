//! A stack deployed on the two-node [`Swarm`] for the Swarm backend's tests and bench: the
//! demo app's four tasks (`endpoint_mode: dnsrr`, the routing mesh needs IPVS, which these
//! machines lack) on both nodes behind nginx on the manager (published in host
//! mode), the seed's `update_config` (delay and monitor shortened for the rollout runs),
//! `docker rollout --stack` and Swarm's own `docker service update` run under load through
//! nginx, and everything undone in order when dropped.

use crate::load::{mix, wait_ok};
use crate::nginx::{ConfigSnapshot, ConfigWatch};
use crate::swarm::Swarm;
use crate::verdict::publish;
use crate::{
    docker, free_port, images, run_ok, run_rollout, wait_http, Clock, Ended, PluginDir, Project,
    DEMO_PORT, NGINX_IMAGE, SEED_NGINX_CONF,
};
use rollout_load::{ErrorLogSource, LoadConfig, LoadHandle, Report};
use std::process::Command;
use std::time::{Duration, Instant};

/// The stack file: four demo app tasks, two per node at most, and nginx on the manager
/// published in host mode (no routing mesh).
pub fn stack_file(port: u16) -> String {
    format!(
        "version: \"3.8\"\n\
         services:\n\
         \x20 app:\n\
         \x20   image: {v1}\n\
         \x20   networks: [front]\n\
         \x20   deploy:\n\
         \x20     replicas: 4\n\
         \x20     endpoint_mode: dnsrr\n\
         \x20     update_config:\n\
         \x20       parallelism: 2\n\
         \x20       delay: 10s\n\
         \x20       failure_action: rollback\n\
         \x20       monitor: 30s\n\
         \x20       max_failure_ratio: 0.3\n\
         \x20       order: start-first\n\
         \x20     rollback_config:\n\
         \x20       parallelism: 0\n\
         \x20       delay: 1500ms\n\
         \x20       failure_action: continue\n\
         \x20       monitor: 7s\n\
         \x20       max_failure_ratio: 0.25\n\
         \x20     placement:\n\
         \x20       max_replicas_per_node: 2\n\
         \x20 nginx:\n\
         \x20   image: {NGINX_IMAGE}\n\
         \x20   networks: [front]\n\
         \x20   volumes:\n\
         \x20     - ./nginx.conf:/etc/nginx/nginx.conf:ro\n\
         \x20   ports:\n\
         \x20     - {{target: 80, published: {port}, protocol: tcp, mode: host}}\n\
         \x20   deploy:\n\
         \x20     placement:\n\
         \x20       constraints: [node.role == manager]\n\
         networks:\n\
         \x20 front:\n\
         \x20   driver: overlay\n",
        v1 = images::V1,
    )
}

/// `file` without its nginx service: the app and the network, deployed first (nginx
/// resolves `app` once, at start, so the app's tasks must run by then).
pub fn app_only(file: &str) -> String {
    file.split("  nginx:\n")
        .next()
        .map(|head| format!("{head}networks:\n  front:\n    driver: overlay\n"))
        .unwrap()
}

/// The seed's nginx config, proxying to the demo app's port.
pub fn seed_conf() -> String {
    SEED_NGINX_CONF.replace("server app:8000;", &format!("server app:{DEMO_PORT};"))
}

/// The nodes the running tasks of `service` are on.
pub fn task_nodes(service: &str) -> Vec<String> {
    let out = run_ok(docker().args([
        "service",
        "ps",
        service,
        "--filter",
        "desired-state=running",
        "--no-trunc",
        "--format",
        "{{.ID}}",
    ]));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|task| {
            let out = run_ok(docker().args([
                "inspect",
                "--type",
                "task",
                "--format",
                "{{.Status.State}} {{.NodeID}}",
                task.trim(),
            ]));
            String::from_utf8_lossy(&out.stdout).trim().to_string()
        })
        .collect()
}

/// Waits until `service` has `count` tasks running; returns their node ids.
pub fn wait_running(service: &str, count: usize, timeout: Duration) -> Vec<String> {
    let deadline = Instant::now() + timeout;
    loop {
        let tasks = task_nodes(service);
        let running: Vec<String> = tasks
            .iter()
            .filter_map(|t| t.strip_prefix("running ").map(str::to_string))
            .collect();
        if running.len() == count {
            return running;
        }
        assert!(
            Instant::now() < deadline,
            "{service}: {count} tasks not running within {timeout:?}: {tasks:?}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// Removes the stack when dropped (before the swarm goes, as fields drop in order).
pub struct Stack(pub String);

impl Drop for Stack {
    fn drop(&mut self) {
        let _ = docker().args(["stack", "rm", &self.0]).output();
        // The overlay network goes once its tasks are gone.
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            let left = docker()
                .args(["network", "ls", "-q", "--filter"])
                .arg(format!("label=com.docker.stack.namespace={}", self.0))
                .output()
                .map(|o| !o.stdout.is_empty())
                .unwrap_or(false);
            if !left {
                break;
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

/// The stack a rollout test updates: four demo app tasks (`dnsrr`) placed by Swarm on either
/// node (the stack file's `max_replicas_per_node` left out), with the seed's `update_config` but a delay of 1 s and a monitor of 2 s, and the image's
/// health check with a start period of 2 s (so that a never-healthy task fails in seconds, not
/// after the image's 60 s), to keep the tests short; the app exits at once on SIGTERM (the
/// images' default, said here); nginx on the manager published in host mode.
pub fn rollout_stack_file(port: u16, image: &str) -> String {
    stack_file(port)
        .replace(
            &format!("    image: {}\n", images::V1),
            &format!(
                "    image: {image}\n    environment:\n      DEMO_ON_SIGTERM: exit\n    \
                 healthcheck:\n      start_period: 2s\n"
            ),
        )
        .replace("delay: 10s", "delay: 1s")
        .replace("monitor: 30s", "monitor: 2s")
        .replace("      placement:\n        max_replicas_per_node: 2\n", "")
}

/// The seed's blue-green layout as a stack: the app of [`rollout_stack_file`] twice, as
/// `blue` of `blue` and `green` of `green`, two tasks each, behind the same nginx.
pub fn colours_stack_file(port: u16, blue: &str, green: &str) -> String {
    let file = rollout_stack_file(port, images::V1).replace("replicas: 4", "replicas: 2");
    let (head, rest) = file.split_once("  app:\n").unwrap();
    let (app, tail) = rest.split_once("  nginx:\n").unwrap();
    let colour = |name: &str, image: &str| {
        format!(
            "  {name}:\n{}",
            app.replace(
                &format!("image: {}\n", images::V1),
                &format!("image: {image}\n")
            )
        )
    };
    format!(
        "{head}{}{}  nginx:\n{tail}",
        colour("blue", blue),
        colour("green", green)
    )
}

/// A two-node swarm with the v1 and nginx images and `extra_images` shared with the worker.
pub fn swarm_with(extra_images: &[&str]) -> Swarm {
    let swarm = Swarm::two_nodes();
    for image in [images::V1, NGINX_IMAGE].iter().chain(extra_images) {
        swarm.share_image(image);
    }
    swarm
}

/// A stack deployed on a two-node swarm, undone in order when dropped (the stack, then the
/// swarm if this stack made it, then the project's folder).
pub struct Deployed {
    /// The stack (its name is the project's).
    pub stack: Stack,
    /// Held for its drop when this stack made the swarm: the swarm is left after the stack is
    /// removed. `None` for a stack on the swarm of another, which must outlive it.
    _swarm: Option<Swarm>,
    /// The project's folder: the stack files and nginx's config.
    pub project: Project,
    /// nginx's published port on the manager.
    pub port: u16,
}

impl Deployed {
    /// A swarm, the images shared with the worker, and the stack on it behind the seed's
    /// nginx config ([`Deployed::on`]).
    pub fn new(slug: &str, extra_images: &[&str]) -> Deployed {
        Deployed::on(Some(swarm_with(extra_images)), slug, &seed_conf())
    }

    /// The stack of v1 on `swarm` (or, when `None`, on the swarm another [`Deployed`] holds)
    /// behind nginx with `nginx_conf`, the app first (the seed's nginx resolves `app` once, at
    /// start), nginx answering v1.
    pub fn on(swarm: Option<Swarm>, slug: &str, nginx_conf: &str) -> Deployed {
        Deployed::of_file(
            swarm,
            slug,
            nginx_conf,
            |port| rollout_stack_file(port, images::V1),
            &["app"],
            1,
        )
    }

    /// The seed's blue-green layout on a two-node swarm ([`colours_stack_file`]): blue and
    /// green both of v1, nginx's upstream naming blue; `extra_images` shared with the worker.
    pub fn colours(slug: &str, extra_images: &[&str]) -> Deployed {
        Deployed::of_file(
            Some(swarm_with(extra_images)),
            slug,
            &seed_conf().replace("server app:", "server blue:"),
            |port| colours_stack_file(port, images::V1, images::V1),
            &["blue", "green"],
            1,
        )
    }

    /// The stack of [`Deployed::on`] with nginx on both nodes: two tasks, one per node, each
    /// publishing the port on its node (host mode), the seed's config; `extra_images` shared.
    pub fn nginx_on_both_nodes(slug: &str, extra_images: &[&str]) -> Deployed {
        let both = |port| {
            let file = rollout_stack_file(port, images::V1);
            let on_manager = "      placement:\n        constraints: [node.role == manager]\n";
            assert!(file.contains(on_manager), "{file}");
            file.replace(
                on_manager,
                "      replicas: 2\n      placement:\n        max_replicas_per_node: 1\n",
            )
        };
        Deployed::of_file(
            Some(swarm_with(extra_images)),
            slug,
            &seed_conf(),
            both,
            &["app"],
            2,
        )
    }

    /// The stack `file(port)` deployed behind nginx (`nginx_tasks` of it) with `nginx_conf`, the `apps` first (nginx
    /// resolves their names once, at start), nginx answering v1.
    fn of_file(
        swarm: Option<Swarm>,
        slug: &str,
        nginx_conf: &str,
        file: impl FnOnce(u16) -> String,
        apps: &[&str],
        nginx_tasks: usize,
    ) -> Deployed {
        let project = Project::new(slug);
        let port = free_port();
        let stack = Stack(project.name().to_string());
        let file = file(port);
        project.write("app-only.yaml", &app_only(&file));
        project.write("stack.yaml", &file);
        project.write("nginx.conf", nginx_conf);
        let deployed = Deployed {
            stack,
            _swarm: swarm,
            project,
            port,
        };
        deployed.deploy("app-only.yaml");
        for app in apps {
            let replicas = if apps.len() == 1 { 4 } else { 2 };
            wait_running(&deployed.service(app), replicas, Duration::from_secs(60));
        }
        deployed.deploy("stack.yaml");
        wait_running(
            &deployed.service("nginx"),
            nginx_tasks,
            Duration::from_secs(60),
        );
        let answer = wait_http(deployed.addr(), "/", Duration::from_secs(30), |a| {
            a.status == 200
        });
        assert_eq!(answer.version.as_deref(), Some("v1"));
        deployed
    }

    /// The swarm this stack made.
    pub fn swarm(&self) -> &Swarm {
        self._swarm.as_ref().expect("this stack made its swarm")
    }

    /// A fresh stack of v1 on a two-node swarm of its own ([`Deployed::new`], `image`
    /// shared), its file then naming `image`: the stack, its services and nginx's config as
    /// they were before any update.
    pub fn to_update(slug: &str, image: &str) -> (Deployed, Vec<String>, String) {
        let d = Deployed::new(slug, &[image]);
        let services = d.services();
        let conf = d.project.read("nginx.conf");
        d.project
            .write("stack.yaml", &rollout_stack_file(d.port, image));
        (d, services, conf)
    }

    /// Swarm's own update of the app to `image`, as an operator runs it and waits for it
    /// (`docker service update --detach=false --image`).
    pub fn swarms_own_update(&self, image: &str) -> Command {
        let mut update = docker();
        update.args([
            "service",
            "update",
            "--detach=false",
            "--quiet",
            "--image",
            image,
            &self.service("app"),
        ]);
        update
    }

    /// `docker stack deploy -c FILE` of the stack, in the project's folder.
    pub fn deploy(&self, file: &str) {
        run_ok(
            Command::new("docker")
                .current_dir(self.project.dir())
                .args(["stack", "deploy", "-c", file, &self.stack.0]),
        );
    }

    /// The Swarm service of the Compose service `compose` (`STACK_compose`).
    pub fn service(&self, compose: &str) -> String {
        format!("{}_{compose}", self.stack.0)
    }

    /// nginx's address on the manager.
    pub fn addr(&self) -> std::net::SocketAddr {
        format!("127.0.0.1:{}", self.port).parse().unwrap()
    }

    /// `docker rollout --stack NAME -f stack.yaml ARGS...` in the project folder.
    pub fn rollout(&self, plugins: &PluginDir, args: &[&str]) -> Command {
        let mut cmd = plugins.docker();
        cmd.current_dir(self.project.dir())
            .args(["rollout", "-f", "stack.yaml"])
            .args(args);
        cmd
    }

    /// The images of the tasks of `service` that Swarm wants running.
    pub fn task_images(&self, service: &str) -> Vec<String> {
        let out = run_ok(docker().args([
            "service",
            "ps",
            &self.service(service),
            "--filter",
            "desired-state=running",
            "--format",
            "{{.Image}} {{.CurrentState}}",
        ]));
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| l.trim().to_string())
            .collect()
    }

    /// Every task of `app` Swarm wants running (`count` of them) runs `image`, and the
    /// standby is gone (the stack has the `services` it had before the run).
    pub fn assert_settled_on(&self, image: &str, count: usize, services: &[String]) {
        let images_now = self.task_images("app");
        assert_eq!(images_now.len(), count, "{images_now:?}");
        assert!(
            images_now
                .iter()
                .all(|t| t.starts_with(image) && t.contains("Running")),
            "every task runs {image}: {images_now:?}"
        );
        assert_eq!(self.services(), services, "the standby is gone");
    }

    /// The load on nginx ([`mix`], POSTs of 100 ms, then `tweak`), its error log read from
    /// nginx's container at the end, once it has run 4 s.
    pub fn start_load(&self, tweak: impl FnOnce(&mut LoadConfig)) -> LoadHandle {
        let out = run_ok(docker().args([
            "ps",
            "-q",
            "--filter",
            &format!(
                "label=com.docker.swarm.service.name={}",
                self.service("nginx")
            ),
        ]));
        let container = String::from_utf8_lossy(&out.stdout).trim().to_string();
        assert!(
            !container.is_empty(),
            "nginx's container runs on the manager"
        );
        let mut config = LoadConfig::new(self.addr());
        mix(&mut config, Duration::from_secs(300));
        config.post_delay = Duration::from_millis(100);
        tweak(&mut config);
        config.error_log = Some(ErrorLogSource::Container {
            container,
            path: "/var/log/nginx/error.log".into(),
        });
        let load = LoadHandle::start(config).unwrap_or_else(|e| panic!("cannot start load: {e}"));
        // 4 s of answers: slow GETs and POSTs in flight everywhere before the update begins.
        wait_ok(&load, 1000, Duration::from_secs(30));
        load
    }

    /// `docker rollout --stack NAME app`, run to its end on the clock it is given.
    pub fn stack_rollout(&self, plugins: &PluginDir) -> impl FnOnce(Clock) -> Ended {
        let cmd = self.rollout(plugins, &["--stack", &self.stack.0, "app"]);
        move |clock| run_rollout(cmd, clock, Duration::from_secs(240))
    }

    /// `update` ([`Deployed::stack_rollout`], or Swarm's own by [`run_plain`]) under the load
    /// ([`Deployed::start_load`] with `tweak`), with nginx's config watched: the run, the
    /// config's versions and the load's report, published as `swarm NAME`.
    pub fn under_load(
        &self,
        name: &str,
        tweak: impl FnOnce(&mut LoadConfig),
        update: impl FnOnce(Clock) -> Ended,
    ) -> (Ended, Vec<ConfigSnapshot>, Report) {
        let load = self.start_load(tweak);
        let watch = ConfigWatch::start(
            self.project.dir().join("nginx.conf"),
            "backend",
            Clock::of(&load),
        );
        let run = update(Clock::of(&load));
        wait_ok(&load, 250, Duration::from_secs(20));
        let snaps = watch.stop();
        let report = load.stop().unwrap();
        publish("swarm", name, &report, &[&run]);
        (run, snaps, report)
    }

    /// The services of the stack.
    pub fn services(&self) -> Vec<String> {
        let out = run_ok(docker().args([
            "service",
            "ls",
            "--format",
            "{{.Name}}",
            "--filter",
            &format!("label=com.docker.stack.namespace={}", self.stack.0),
        ]));
        let mut names: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_string)
            .collect();
        names.sort();
        names
    }
}

/// `cmd` (such as `docker service update`, which prints no events) run to its end, stamped on
/// `clock`: what it printed, both streams, is its `stderr`.
pub fn run_plain(mut cmd: Command, clock: Clock) -> Ended {
    let started_at = clock.now();
    let out = cmd.output().unwrap();
    Ended {
        code: out.status.code(),
        events: Vec::new(),
        summary: None,
        stderr: format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
        started_at,
        returned_at: clock.now(),
    }
}

/// nginx re-resolving `app` through Swarm's DNS at most a second late (a variable in
/// `proxy_pass`), so that it follows the tasks of Swarm's own update, which the seed's config
/// (resolved once, at start) cannot: the best nginx can do for Swarm alone. Swarm takes a
/// task out of its DNS before it stops it.
pub fn resolving_conf() -> String {
    let conf = SEED_NGINX_CONF
        .replace(
            "    upstream backend {\n        server app:8000;\n    }\n",
            "    resolver 127.0.0.11 valid=1s ipv6=off;\n",
        )
        .replace(
            "            proxy_pass http://backend;\n",
            &format!(
                "            set $app app;\n            proxy_pass http://$app:{DEMO_PORT};\n"
            ),
        );
    assert!(
        conf.contains("resolver") && conf.contains("$app:"),
        "the seed's config changed: {conf}"
    );
    conf
}

/// Slow GETs and POSTs of 3 s (5 % each) beside the fast GETs.
pub fn long_requests(config: &mut LoadConfig) {
    config.slow = Duration::from_secs(3);
    config.post_delay = Duration::from_secs(3);
}

/// The failed requests of `report` by class, for a FIGURES line.
pub fn failed_by_class(report: &Report) -> String {
    rollout_load::Class::ALL
        .iter()
        .map(|c| {
            let failed = report.classes.get(c).map_or(0, |s| s.failed);
            format!("{} {failed}", c.name())
        })
        .collect::<Vec<_>>()
        .join(", ")
}
