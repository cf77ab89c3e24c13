//! A service with no proxy in front (issue 11, item 8): a queue worker with no ports and no
//! nginx in its project is rolled out without traffic routing.
//!
//! The worker is the demo app with `DEMO_WORK_UNIT_MS`: it works in units and logs each, and
//! on SIGTERM finishes the unit at hand, logs it, and exits 0. While `docker rollout worker`
//! runs, the test samples the engine for the worker's running and healthy containers, follows
//! the logs of every old container (a follower keeps what the container said even after the
//! rollout removes it) and watches the engine's `die` events for their exit codes.

use rollout_e2e::{
    docker, images, require_images, run_rollout, workspace_binary, Clock, PluginDir, Project,
    ROLLOUT_TIMEOUT,
};
use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Three workers, replaced one at a time, start-first: never fewer than three healthy.
fn compose(project: &str) -> String {
    format!(
        "# written by the workers suite\n\
         services:\n\
         \x20 worker:\n\
         \x20   image: ${{WORKER_IMAGE}}\n\
         \x20   environment:\n\
         \x20     DEMO_WORK_UNIT_MS: \"1500\"\n\
         \x20     DEMO_ON_SIGTERM: drain\n\
         \x20   stop_grace_period: 5s\n\
         \x20   deploy:\n\
         \x20     replicas: 3\n\
         \x20     update_config:\n\
         \x20       parallelism: 1\n\
         \x20       order: start-first\n\
         \x20       failure_action: rollback\n\
         \x20       monitor: 1s\n\
         \x20   labels:\n\
         \x20     io.rollout.test: {project}\n\
         networks:\n\
         \x20 default:\n\
         \x20   labels:\n\
         \x20     io.rollout.test: {project}\n"
    )
}

/// Samples the running and the healthy workers until stopped (at most 2,000 samples).
struct Sampler {
    stop: Arc<AtomicBool>,
    handle: JoinHandle<Vec<(usize, usize)>>,
}

impl Sampler {
    fn start(p: &Project) -> Sampler {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let name = p.name().to_string();
        let handle = std::thread::spawn(move || {
            let p = ProjectName(name);
            let mut samples = Vec::new();
            while !flag.load(Ordering::SeqCst) && samples.len() < 2_000 {
                let running = p.count(&["status=running"]);
                let healthy = p.count(&["status=running", "health=healthy"]);
                samples.push((running, healthy));
                std::thread::sleep(Duration::from_millis(50));
            }
            samples
        });
        Sampler { stop, handle }
    }

    /// The samples: (running, healthy).
    fn stop(self) -> Vec<(usize, usize)> {
        self.stop.store(true, Ordering::SeqCst);
        self.handle.join().expect("the sampler ran")
    }
}

/// A project's name, for a thread that must not own the project.
struct ProjectName(String);

impl ProjectName {
    fn count(&self, filters: &[&str]) -> usize {
        let mut ps = docker();
        ps.args(["ps", "--quiet", "--filter"])
            .arg(format!("label=com.docker.compose.project={}", self.0))
            .args(["--filter", "label=com.docker.compose.service=worker"]);
        for f in filters {
            ps.args(["--filter", f]);
        }
        let out = ps.output().expect("docker ps runs");
        String::from_utf8_lossy(&out.stdout).lines().count()
    }
}

/// `docker logs --follow` of one container, read as it comes.
struct Follower {
    child: Child,
    said: Arc<Mutex<String>>,
    readers: Vec<JoinHandle<()>>,
}

impl Follower {
    fn start(id: &str) -> Follower {
        let mut child = docker()
            .args(["logs", "--follow", id])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("docker logs runs");
        let said = Arc::new(Mutex::new(String::new()));
        let mut readers = Vec::new();
        let out: Box<dyn Read + Send> = Box::new(child.stdout.take().expect("piped stdout"));
        let err: Box<dyn Read + Send> = Box::new(child.stderr.take().expect("piped stderr"));
        for stream in [out, err] {
            let said = said.clone();
            readers.push(std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    let mut s = said.lock().unwrap();
                    s.push_str(&line);
                    s.push('\n');
                }
            }));
        }
        Follower {
            child,
            said,
            readers,
        }
    }

    /// What the container said, once it stopped (at most `timeout` from now).
    fn finish(mut self, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        while self
            .child
            .try_wait()
            .expect("wait for docker logs")
            .is_none()
        {
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        for r in self.readers {
            let _ = r.join();
        }
        let said = self.said.lock().unwrap().clone();
        said
    }
}

/// The engine's `die` events of the project's containers: container id and exit code.
struct Deaths {
    child: Child,
    reader: JoinHandle<Vec<(String, String)>>,
}

impl Deaths {
    fn watch(p: &Project) -> Deaths {
        let mut child = docker()
            .args([
                "events",
                "--filter",
                "type=container",
                "--filter",
                "event=die",
            ])
            .arg("--filter")
            .arg(format!("label=com.docker.compose.project={}", p.name()))
            .args([
                "--format",
                "{{.Actor.ID}} {{index .Actor.Attributes \"exitCode\"}}",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("docker events runs");
        let out = child.stdout.take().expect("piped stdout");
        let reader = std::thread::spawn(move || {
            BufReader::new(out)
                .lines()
                .map_while(Result::ok)
                .filter_map(|l| {
                    let (id, code) = l.split_once(' ')?;
                    Some((id.to_string(), code.to_string()))
                })
                .collect()
        });
        Deaths { child, reader }
    }

    fn stop(mut self) -> Vec<(String, String)> {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.reader.join().expect("the events reader ran")
    }
}

#[test]
#[ignore = "needs docker: run with cargo xtask e2e"]
fn a_worker_with_no_proxy_is_rolled_one_at_a_time_each_old_one_finishing_its_work() {
    require_images(&[images::V1, images::V2]);
    let mut p = Project::new("workers");
    p.write("compose.yaml", &compose(p.name()));
    p.set_env("WORKER_IMAGE", images::V1);
    p.up();
    let old = p.wait_healthy("worker", 3, Duration::from_secs(60));
    let plugins = PluginDir::install(&workspace_binary("docker-rollout", "docker-rollout"));

    let deaths = Deaths::watch(&p);
    let followers: Vec<(String, Follower)> = old
        .iter()
        .map(|c| (c.id.clone(), Follower::start(&c.id)))
        .collect();
    // Let the followers and the event watch attach before anything stops.
    std::thread::sleep(Duration::from_millis(500));
    let sampler = Sampler::start(&p);
    p.set_env("WORKER_IMAGE", images::V2);
    let mut cmd = p.rollout_command(&plugins);
    cmd.args(["worker", "--output", "json"]);
    let run = run_rollout(cmd, Clock::start(), ROLLOUT_TIMEOUT);
    let samples = sampler.stop();
    let said: Vec<(String, String)> = followers
        .into_iter()
        .map(|(id, f)| (id, f.finish(Duration::from_secs(10))))
        .collect();
    let deaths = deaths.stop();
    eprintln!("docker rollout worker said on stderr:\n{}", run.stderr);

    assert_eq!(run.code, Some(0), "{}", run.transcript());
    assert_eq!(run.outcome_name(), "completed", "{}", run.transcript());
    let notes: Vec<&str> = run
        .stderr
        .lines()
        .filter(|l| l.contains("no traffic to route or drain"))
        .collect();
    assert_eq!(
        notes,
        ["note: no proxy in front of worker: no traffic to route or drain; each old instance is sent its stop signal and given its stop_grace_period (5s) to finish its work"],
        "{}",
        run.stderr
    );
    for name in ["traffic-changed", "drained"] {
        assert!(run.named(name).is_empty(), "{}", run.transcript());
    }
    assert_eq!(
        run.named("instance-stopped").len(),
        3,
        "{}",
        run.transcript()
    );

    // Every instance runs the new revision, and the old ones are gone.
    let now = p.wait_healthy("worker", 3, Duration::from_secs(10));
    for c in &now {
        assert_eq!(c.image, images::V2, "{now:#?}");
    }
    let all = p.containers(Some("worker"));
    assert_eq!(all.len(), 3, "old containers are left: {all:#?}");

    // The floor: start-first with parallelism 1 never runs fewer than three healthy workers,
    // and never more than one extra.
    assert!(samples.len() >= 10, "only {} samples", samples.len());
    let fewest_healthy = samples.iter().map(|s| s.1).min().unwrap();
    let most_running = samples.iter().map(|s| s.0).max().unwrap();
    eprintln!(
        "{} samples of (running, healthy): fewest healthy {fewest_healthy}, most running {most_running}",
        samples.len()
    );
    assert!(fewest_healthy >= 3, "under the floor: {samples:?}");
    assert!(most_running <= 4, "more than one extra worker: {samples:?}");
    assert!(
        samples.iter().any(|s| s.0 == 4),
        "no new worker ran beside the old ones: {samples:?}"
    );

    // Each old worker stopped through its own SIGTERM handling: it said so, finished its
    // unit, and exited 0 (a kill at the end of the grace period would be 137).
    for (id, logs) in &said {
        assert!(
            logs.contains("worker: SIGTERM: finishing the unit at hand"),
            "{id} did not log its SIGTERM:\n{logs}"
        );
        assert!(
            logs.contains("worker: stopped after"),
            "{id} did not finish its unit:\n{logs}"
        );
        let codes: Vec<&str> = deaths
            .iter()
            .filter(|(d, _)| d == id)
            .map(|(_, c)| c.as_str())
            .collect();
        assert_eq!(codes, ["0"], "{id}: die events {deaths:?}");
    }

    // Again: nothing to do.
    let mut cmd = p.rollout_command(&plugins);
    cmd.args(["worker", "--output", "json"]);
    let again = run_rollout(cmd, Clock::start(), ROLLOUT_TIMEOUT);
    assert_eq!(again.code, Some(0), "{}", again.transcript());
    assert_eq!(again.outcome_name(), "no-change", "{}", again.transcript());
    assert_eq!(p.containers(Some("worker")), all);
}
