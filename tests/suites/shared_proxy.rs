//! One proxy, many rollouts, end to end: the real `docker rollout` plugin through the real
//! docker CLI, on the real engine, under real load through one real nginx.
//!
//! - two services (`web` and `api`, one upstream each in one `nginx.conf`) rolled out at
//!   once: both finish, no request fails, and the final config routes both by name (their
//!   config edits waited for each other under the proxy lock instead of failing);
//! - `docker rollout green` and `docker rollout blue` started together: one waits for the
//!   other and then runs, and the config ends as the later one leaves it;
//! - a journal left beside the config by a killed run, and a person's edit made since: the edit
//!   is left alone, with a warning, and the rollout goes on;
//! - a lock left by a SIGKILLed run is shown and released by `docker rollout unlock --force`;
//!   a second rollout of a service while one runs is refused with exit 7 (busy), and so is an
//!   unlock of a holder alive on this machine.

use rollout_core::Event;
use rollout_e2e::keepers::keepers;
use rollout_e2e::load::{mix, wait_ok};
use rollout_e2e::nginx::{stderr_upstream_errors, upstream_servers};
use rollout_e2e::run::{Running, Whom};
use rollout_e2e::verdict::{assert_clean_during, assert_no_failure, publish};
use rollout_e2e::{
    blue_green_example, images, require_engine, require_images, run_rollout, wait_http,
    workspace_binary, Clock, Container, Ended, PluginDir, Project, NGINX_IMAGE,
};
use rollout_load::{Class, LoadConfig, LoadHandle, Report};
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

/// The name the reports of this suite carry.
const SUITE: &str = "shared_proxy";

/// Longest a rollout may run before the test kills it.
const LIMIT: Duration = Duration::from_secs(240);

fn plugin() -> PluginDir {
    PluginDir::install(&workspace_binary("docker-rollout", "docker-rollout"))
}

/// One nginx in front of two services, one upstream each, in one file: `web` on port 80 and
/// `api` on port 81.
const TWO_UPSTREAMS: &str = "\
user www-data;
worker_processes 2;
error_log /var/log/nginx/error.log warn;
pid /run/nginx.pid;

events {
    worker_connections 1024;
}

http {
    access_log off;

    upstream web {
        server web:8000;
    }

    upstream api {
        server api:8000;
    }

    server {
        listen 80;
        location / {
            proxy_pass http://web;
        }
    }

    server {
        listen 81;
        location / {
            proxy_pass http://api;
        }
    }
}
";

/// The services `web` and `api` (two replicas of the demo app each, start-first, a short
/// monitor) behind one nginx with [`TWO_UPSTREAMS`], up and answering on both ports.
fn two_services(slug: &str) -> Project {
    require_engine();
    require_images(&[images::V1, images::V2, NGINX_IMAGE]);
    let p = Project::new(slug);
    let name = p.name().to_string();
    let app = |svc: &str, var: &str| {
        format!(
            "  {svc}:\n    image: ${{{var}:-{v1}}}\n    deploy:\n      replicas: 2\n      update_config:\n        order: start-first\n        monitor: 1s\n    labels:\n      io.rollout.test: {name}\n",
            v1 = images::V1
        )
    };
    let yaml = format!(
        "services:\n{}{}  nginx:\n    image: {NGINX_IMAGE}\n    volumes:\n      - ./nginx.conf:/etc/nginx/nginx.conf:ro\n      - ./nginx-logs:/var/log/nginx\n    depends_on:\n      - web\n      - api\n    labels:\n      io.rollout.test: {name}\nnetworks:\n  default:\n    labels:\n      io.rollout.test: {name}\n",
        app("web", "WEB_IMAGE"),
        app("api", "API_IMAGE"),
    );
    p.write("docker-compose.yml", &yaml);
    p.write("nginx.conf", TWO_UPSTREAMS);
    std::fs::create_dir_all(p.dir().join("nginx-logs")).unwrap();
    p.up();
    p.wait_healthy("web", 2, Duration::from_secs(60));
    p.wait_healthy("api", 2, Duration::from_secs(60));
    for port in [80, 81] {
        wait_http(
            p.container_address("nginx", port),
            "/",
            Duration::from_secs(30),
            |a| a.status == 200,
        );
    }
    p
}

/// The standard mix on `port` of nginx, bounded at 6 minutes (stopped much earlier); the load
/// on port 80 reads nginx's error log (one reader is enough: the log is the proxy's).
fn load_on(p: &Project, port: u16) -> LoadHandle {
    let mut c = if port == 80 {
        p.load_config("nginx")
    } else {
        let mut c = LoadConfig::new(p.container_address("nginx", port));
        c.error_log = None;
        c
    };
    mix(&mut c, Duration::from_secs(360));
    c.post_delay = Duration::from_millis(100);
    LoadHandle::start(c).unwrap_or_else(|e| panic!("cannot start the load: {e}"))
}

/// `docker rollout SERVICE --output json`, started now.
fn start(p: &Project, plugins: &PluginDir, service: &str, clock: Clock) -> Running {
    let mut cmd = p.rollout_command(plugins);
    cmd.args([service, "--output", "json"]);
    Running::spawn(cmd, clock, false)
}

fn counts(what: &str, r: &Report) {
    eprintln!(
        "{what}: {} requests, {} failed, {} upstream errors",
        r.sent, r.failed, r.upstream_errors.total
    );
}

fn assert_exit(run: &Ended, code: i32, what: &str) {
    assert_eq!(
        run.code,
        Some(code),
        "{what}: exit {:?}\n{}\nstderr:\n{}",
        run.code,
        run.transcript(),
        run.stderr
    );
}

#[test]
#[ignore = "needs docker: run with cargo xtask e2e"]
fn two_services_behind_one_nginx_roll_out_at_once() {
    let plugins = plugin();
    let mut p = two_services("shared-two-services");
    let (web_load, api_load) = (load_on(&p, 80), load_on(&p, 81));
    wait_ok(&web_load, 500, Duration::from_secs(30));
    wait_ok(&api_load, 500, Duration::from_secs(30));
    let clock = Clock::of(&web_load);
    p.set_env("WEB_IMAGE", images::V2);
    p.set_env("API_IMAGE", images::V2);
    let web = start(&p, &plugins, "web", clock);
    let api = start(&p, &plugins, "api", clock);
    let (web, api) = (web.wait(LIMIT), api.wait(LIMIT));
    wait_ok(&web_load, 250, Duration::from_secs(30));
    let web_report = web_load.stop().unwrap();
    let mut api_report = api_load.stop().unwrap();
    // The proxy's log was read once, by the web load, over a window that holds the api's.
    api_report.upstream_errors = web_report.upstream_errors.clone();
    publish(SUITE, "two-services-web", &web_report, &[&web]);
    publish(SUITE, "two-services-api", &api_report, &[&api]);
    counts("web", &web_report);
    counts("api", &api_report);
    assert_exit(&web, 0, "web");
    assert_exit(&api, 0, "api");
    assert_clean_during(&web_report, &[&web, &api]);
    assert_clean_during(&api_report, &[&web, &api]);
    let conf = p.read("nginx.conf");
    assert_eq!(upstream_servers(&conf, "web").unwrap(), vec!["web:8000"]);
    assert_eq!(upstream_servers(&conf, "api").unwrap(), vec!["api:8000"]);
    assert_eq!(
        conf, TWO_UPSTREAMS,
        "at rest the file is the operator's again"
    );
    for svc in ["web", "api"] {
        assert_eq!(
            p.running_images(svc),
            vec![images::V2.to_string(); 2],
            "{svc}"
        );
    }
    assert_eq!(
        rollout_e2e::keepers::rollout_leftovers(&p),
        Vec::<String>::new()
    );
}

/// Issue 17's drain per instance, where it matters most: one nginx in front of `web` and
/// `api`, with `api` answering 12 s GETs all the time, so that nginx's old workers always
/// hold requests to `api` for up to 12 s after a reload. Rolling `web` (the app exits at once
/// on SIGTERM) with 3 s GETs and POSTs in flight to each replaced instance: every drain ends
/// by the old workers' connections while they still proxy an `api` request started before
/// the unroute (waiting for them to exit would have waited for it), and every `web` request
/// in flight to a replaced instance is answered, which a drain that ended too early would
/// have cut (the instance is stopped right after it).
#[test]
#[ignore = "needs docker: run with cargo xtask e2e"]
fn a_drain_per_instance_ends_before_the_old_workers_and_cuts_nothing() {
    let plugins = plugin();
    let mut p = two_services("shared-drain-per-instance");
    let before = p.containers(Some("web"));
    let mut web = p.load_config("nginx");
    mix(&mut web, Duration::from_secs(180));
    web.slow = Duration::from_secs(3);
    web.post_delay = Duration::from_secs(3);
    let web_load = LoadHandle::start(web).unwrap_or_else(|e| panic!("cannot start the load: {e}"));
    let mut api = LoadConfig::new(p.container_address("nginx", 81));
    api.error_log = None;
    mix(&mut api, Duration::from_secs(180));
    api.rate = 10;
    api.slow_share = 0.5;
    api.slow = Duration::from_secs(12);
    api.post_share = 0.0;
    let api_load = LoadHandle::start(api).unwrap_or_else(|e| panic!("cannot start the load: {e}"));
    // 12 s requests to api in flight before the rollout begins.
    std::thread::sleep(Duration::from_secs(13));
    wait_ok(&web_load, 300, Duration::from_secs(30));
    let clock = Clock::of(&web_load);
    // api's report times plus this are web's clock.
    let api_offset = clock.now() - Clock::of(&api_load).now();
    p.set_env("WEB_IMAGE", images::V2);
    let run = start(&p, &plugins, "web", clock).wait(LIMIT);
    wait_ok(&web_load, 250, Duration::from_secs(30));
    let web_report = web_load.stop().unwrap();
    let mut api_report = api_load.stop().unwrap();
    api_report.upstream_errors = web_report.upstream_errors.clone();
    publish(SUITE, "drain-per-instance-web", &web_report, &[&run]);
    publish(SUITE, "drain-per-instance-api", &api_report, &[&run]);
    counts("web", &web_report);
    counts("api", &api_report);
    assert_exit(&run, 0, "web");
    assert_clean_during(&web_report, &[&run]);
    assert_no_failure(&api_report);
    for old in &before {
        let short = &old.id[..12];
        let t = run.unrouted_at(&old.name);
        let drained = run.drained_of(&old.name);
        let waited = drained.json["report"]["waited_for"].to_string();
        assert!(
            waited.contains("by its connections") && drained.json["report"]["timed_out"] == false,
            "{} not drained by connections: {}",
            old.name,
            drained.json
        );
        // Its requests in flight at the unroute: there were some, all answered.
        let in_flight: Vec<_> = web_report
            .requests
            .iter()
            .filter(|r| r.instance.as_deref() == Some(short) && r.t < t && r.end() > t)
            .filter(|r| r.class == Class::Slow || r.class == Class::Post)
            .collect();
        assert!(
            !in_flight.is_empty(),
            "no 3 s request in flight on {}",
            old.name
        );
        for r in &in_flight {
            assert!(!r.failed() && r.status == Some(200), "{r:?}");
        }
        // An api request the old workers held from before the unroute to after the drain.
        let held = api_report
            .requests
            .iter()
            .filter(|r| r.class == Class::Slow && !r.failed())
            .filter(|r| r.t + api_offset < t && r.end() + api_offset > drained.at + 0.5)
            .count();
        eprintln!(
            "figures drain-per-instance: {} unrouted at {t:.2}s with {} requests of 3 s in flight, drained at {:.2}s ({}), {held} api request(s) of 12 s from before the unroute still in flight then",
            old.name,
            in_flight.len(),
            drained.at,
            drained.json["report"]["elapsed"]
        );
        assert!(
            held > 0,
            "no api request outlived the drain of {}: the test shows nothing",
            old.name
        );
    }
    assert_eq!(
        p.read("nginx.conf"),
        TWO_UPSTREAMS,
        "at rest the file is the operator's again"
    );
    assert_eq!(p.running_images("web"), vec![images::V2.to_string(); 2]);
    assert_eq!(
        rollout_e2e::keepers::rollout_leftovers(&p),
        Vec::<String>::new()
    );
}

#[test]
#[ignore = "needs docker: run with cargo xtask e2e"]
fn green_and_blue_started_together_run_one_after_the_other() {
    require_engine();
    require_images(&[images::V1, images::V2, NGINX_IMAGE]);
    let plugins = plugin();
    let p = blue_green_example("shared-blue-green", 3);
    let nginx: Container = p.containers(Some("nginx")).remove(0);
    let mut c = p.load_config("nginx");
    c.error_log = None;
    mix(&mut c, Duration::from_secs(360));
    c.post_delay = Duration::from_millis(100);
    let load = LoadHandle::start(c).unwrap();
    wait_ok(&load, 500, Duration::from_secs(30));
    let clock = Clock::of(&load);
    let green = start(&p, &plugins, "green", clock);
    std::thread::sleep(Duration::from_millis(200));
    let blue = start(&p, &plugins, "blue", clock);
    let (green, blue) = (green.wait(LIMIT), blue.wait(LIMIT));
    wait_ok(&load, 250, Duration::from_secs(30));
    let mut report = load.stop().unwrap();
    report.upstream_errors = stderr_upstream_errors(&nginx.id, &report);
    publish(SUITE, "green-and-blue", &report, &[&green, &blue]);
    counts("blue-green", &report);
    // DESIGN.md: rollouts of different services behind one proxy wait for each other; both
    // end as their own run says (here both succeed: exit 0).
    assert_exit(&green, 0, "green");
    assert_exit(&blue, 0, "blue");
    assert_no_failure(&report);
    let waited = |r: &Ended| r.stderr.contains("waiting for the other colour's rollout");
    assert!(
        waited(&green) != waited(&blue),
        "exactly one waits for the other:\ngreen:\n{}\nblue:\n{}",
        green.stderr,
        blue.stderr
    );
    let (first, later, later_name) = if waited(&blue) {
        (&green, &blue, "blue")
    } else {
        (&blue, &green, "green")
    };
    // The later one ran after the first had ended.
    let later_started = later
        .events
        .iter()
        .find(|e| matches!(e.event, Event::RolloutStarted { .. }))
        .map(|e| e.at);
    assert!(
        later_started.is_some_and(|t| t >= first.returned_at - 0.5),
        "the later rollout started at {later_started:?}, the first returned at {}",
        first.returned_at
    );
    let conf = p.read("nginx.conf");
    assert_eq!(
        upstream_servers(&conf, "backend").unwrap(),
        vec![format!("{later_name}:8000")],
        "the config is the later one's"
    );
}

/// Writes `bytes` to `path` inside container `id` (through its shell).
fn put(id: &str, path: &str, bytes: &[u8]) {
    let mut child = Command::new("docker")
        .args(["exec", "-i", id, "sh", "-c", "cat > \"$1\"", "sh", path])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(bytes).unwrap();
    assert!(
        child.wait().unwrap().success(),
        "cannot write {path} in {id}"
    );
}

/// The files beside the live config in the container `id`.
fn beside_config(id: &str) -> Vec<String> {
    let out = Command::new("docker")
        .args(["exec", id, "ls", "/etc/nginx"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.starts_with("nginx.conf."))
        .map(str::to_string)
        .collect()
}

#[test]
#[ignore = "needs docker: run with cargo xtask e2e"]
fn a_hand_edit_after_a_killed_run_is_left_alone_and_the_rollout_goes_on() {
    let plugins = plugin();
    let mut p = two_services("shared-hand-edit");
    let nginx = p.running("nginx");
    // What a killed run left beside the file: its previous bytes and the ones it wrote.
    let wrote = TWO_UPSTREAMS.replace(
        "server web:8000;",
        "server gone-web-1:8000;\n        server gone-web-2:8000;",
    );
    put(
        &nginx.id,
        "/etc/nginx/nginx.conf.rollout-previous.dead",
        TWO_UPSTREAMS.as_bytes(),
    );
    put(
        &nginx.id,
        "/etc/nginx/nginx.conf.rollout-next.dead",
        wrote.as_bytes(),
    );
    // A person's edit since: a timeout, and a backup server for api.
    let edited = TWO_UPSTREAMS
        .replace(
            "    access_log off;\n",
            "    access_log off;\n    keepalive_timeout 30s;\n",
        )
        .replace(
            "server api:8000;",
            "server api:8000;\n        server api:8000 backup;",
        );
    p.write("nginx.conf", &edited);
    let load = load_on(&p, 80);
    wait_ok(&load, 500, Duration::from_secs(30));
    let clock = Clock::of(&load);
    p.set_env("WEB_IMAGE", images::V2);
    let mut cmd = p.rollout_command(&plugins);
    cmd.args(["web", "--output", "json"]);
    let run = run_rollout(cmd, clock, LIMIT);
    wait_ok(&load, 250, Duration::from_secs(30));
    let report = load.stop().unwrap();
    publish(SUITE, "hand-edit", &report, &[&run]);
    counts("hand edit", &report);
    assert_exit(&run, 0, "web after a hand edit");
    assert!(
        run.stderr.contains("changed by someone") && run.stderr.contains("warning"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("- server gone-web-1:8000;"),
        "{}",
        run.stderr
    );
    assert_clean_during(&report, &[&run]);
    // The person's edit stays; the rollout's own change is back at rest.
    assert_eq!(p.read("nginx.conf"), edited);
    let left = beside_config(&nginx.id);
    assert!(
        !left.iter().any(|f| f.contains(".rollout-previous")
            || f.contains(".rollout-next")
            || f.contains(".rollout-candidate")),
        "{left:?}"
    );
    assert_eq!(
        left.iter()
            .filter(|f| f.contains(".rollout-set-aside"))
            .count(),
        2,
        "the journal is set aside: {left:?}"
    );
}

#[test]
#[ignore = "needs docker: run with cargo xtask e2e"]
fn a_dead_holders_lock_is_released_by_unlock_and_a_second_rollout_is_busy() {
    let plugins = plugin();
    let mut p = two_services("shared-unlock");
    let load = load_on(&p, 80);
    wait_ok(&load, 500, Duration::from_secs(30));
    let clock = Clock::of(&load);
    p.set_env("WEB_IMAGE", images::V2);
    let lock = format!("rollout-lock.{}.web", p.name());
    let has_lock = || keepers(p.name()).iter().any(|k| k.name == lock);

    // A run killed after its first launch leaves its lock.
    let mut killed = start(&p, &plugins, "web", clock);
    killed.wait_for("instance-launched", LIMIT, |e| {
        matches!(e, Event::InstanceLaunched { .. })
    });
    killed.signal("KILL", Whom::Plugin);
    let killed = killed.wait(LIMIT);
    assert!(killed.code != Some(0), "{}", killed.transcript());
    assert!(
        has_lock(),
        "the killed run left no lock: {:?}",
        keepers(p.name())
    );

    let unlock = |force: bool| {
        let mut cmd = p.rollout_command(&plugins);
        cmd.args(["unlock", "web"]);
        if force {
            cmd.arg("--force");
        }
        cmd.stdin(Stdio::null()).output().unwrap()
    };
    // Without --force and without a terminal to ask on: refused, nothing changed.
    let asked = unlock(false);
    assert_eq!(asked.status.code(), Some(2), "{asked:?}");
    assert!(has_lock());
    let released = unlock(true);
    let said = String::from_utf8_lossy(&released.stderr);
    assert_eq!(released.status.code(), Some(0), "{said}");
    assert!(
        said.contains("is locked by") && said.contains("since"),
        "{said}"
    );
    assert!(said.contains("released the lock"), "{said}");
    assert!(!has_lock(), "{:?}", keepers(p.name()));

    // The next run finishes what the killed one started; a second one meanwhile is busy.
    let mut next = start(&p, &plugins, "web", clock);
    next.wait_for("rollout-started", LIMIT, |e| {
        matches!(e, Event::RolloutStarted { .. })
    });
    let mut cmd = p.rollout_command(&plugins);
    cmd.args(["web", "--output", "json"]);
    let second = run_rollout(cmd, clock, LIMIT);
    let alive = unlock(true);
    let next = next.wait(LIMIT);
    wait_ok(&load, 250, Duration::from_secs(30));
    let report = load.stop().unwrap();
    publish(SUITE, "unlock", &report, &[&killed, &next, &second]);
    counts("unlock", &report);
    assert_exit(&second, 7, "a second rollout of web");
    let busy = matches!(
        second.outcome(),
        Some(rollout_core::Outcome::Busy(ref m)) if m.contains("already running")
    );
    assert!(
        busy || second.stderr.contains("already running"),
        "{}\n{}",
        second.transcript(),
        second.stderr
    );
    assert_eq!(
        alive.status.code(),
        Some(7),
        "unlock of a live holder: {}",
        String::from_utf8_lossy(&alive.stderr)
    );
    assert_exit(&next, 0, "the run after unlock");
    assert_no_failure(&report);
    assert_eq!(p.running_images("web"), vec![images::V2.to_string(); 2]);
    assert!(!has_lock());
}

/// The state of container `id` (`running`, `exited`), or `gone`.
fn state_of(id: &str) -> String {
    let out = Command::new("docker")
        .args(["inspect", "--format", "{{.State.Status}}", id])
        .output()
        .unwrap();
    if !out.status.success() {
        return "gone".into();
    }
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Waits until container `id` is in one of `states`.
fn wait_state(id: &str, states: &[&str], timeout: Duration) -> String {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let s = state_of(id);
        if states.contains(&s.as_str()) {
            return s;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{id} is {s}, not {states:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
#[ignore = "needs docker: run with cargo xtask e2e"]
fn proxy_file_torn_by_a_kill_stops_nginx_and_the_next_run_repairs_it() {
    let plugins = plugin();
    let mut p = two_services("shared-torn-restart");
    let nginx = p.running("nginx");
    let conf = p.read("nginx.conf");
    let load = load_on(&p, 80);
    wait_ok(&load, 500, Duration::from_secs(30));
    let clock = Clock::of(&load);
    // The plugin writes the live file through a writer container it keeps for the run, after
    // the commit's journal was kept with the engine, and removes the journal only once nginx
    // has reloaded. The plugin is frozen as soon as the file on this host changes (the write
    // runs in the writer's own shell and ends on its own), then killed: its journal is left.
    p.set_env("WEB_IMAGE", images::V2);
    let first = start(&p, &plugins, "web", clock);
    let plugin_pid = first.plugin_pid();
    let until = std::time::Instant::now() + Duration::from_secs(120);
    while p.read("nginx.conf") == conf {
        assert!(
            std::time::Instant::now() < until,
            "no write of the live file within 120 s"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    let stopped = Command::new("kill")
        .args(["-STOP", &plugin_pid.to_string()])
        .status()
        .unwrap();
    assert!(stopped.success());
    std::thread::sleep(Duration::from_secs(1));
    first.signal("KILL", Whom::Plugin);
    let first = first.wait(Duration::from_secs(30));
    assert!(first.outcome().is_none(), "{}", first.transcript());
    let written = p.read("nginx.conf");
    assert!(
        written.len() > conf.len() && written != conf,
        "the first write did not land:\n{written}"
    );
    // A torn write: the start of the new bytes, cut before their end.
    let cut = conf.len() + (written.len() - conf.len()) / 2;
    p.write("nginx.conf", &written[..cut]);
    let restart = Command::new("docker")
        .args(["restart", "-t", "1", &nginx.id])
        .output()
        .unwrap();
    eprintln!(
        "docker restart: {:?} {}",
        restart.status.code(),
        String::from_utf8_lossy(&restart.stderr).trim()
    );
    let down = wait_state(&nginx.id, &["exited"], Duration::from_secs(30));
    eprintln!("the proxy after the restart: {down}");
    let mut cmd = p.rollout_command(&plugins);
    cmd.args(["web", "--output", "json"]);
    let second = run_rollout(cmd, clock, LIMIT);
    wait_ok(&load, 250, Duration::from_secs(30));
    let report = load.stop().unwrap();
    publish(SUITE, "torn-restart", &report, &[&first, &second]);
    counts("torn write and restart", &report);
    assert_exit(&second, 0, "web after the torn write");
    // Requests fail only while nginx is down (from the restart until the second run starts
    // it): from the second run's first traffic change on, none; no upstream error at all.
    assert_eq!(report.upstream_errors.total, 0, "upstream errors");
    let revived = second
        .traffic_changes()
        .next()
        .expect("the second run changed traffic")
        .at;
    for class in rollout_load::Class::ALL {
        let after = report.class_stats(class, revived, second.returned_at);
        eprintln!(
            "{} from the second run's first traffic change: {} sent, {} failed",
            class.name(),
            after.sent,
            after.failed
        );
        assert!(after.sent > 0 && after.failed == 0, "{}", class.name());
    }
    assert!(
        second.stderr.contains("previous bytes were put back")
            && second.stderr.contains("it was started"),
        "{}",
        second.stderr
    );
    assert_eq!(state_of(&nginx.id), "running");
    assert_eq!(p.read("nginx.conf"), conf, "the config ends at rest");
    let left: Vec<_> = keepers(p.name())
        .into_iter()
        .filter(|k| k.kind == "proxyjournal" || k.kind == "proxywrite")
        .collect();
    assert!(left.is_empty(), "{left:#?}");
    wait_http(
        p.container_address("nginx", 80),
        "/",
        Duration::from_secs(10),
        |a| a.status == 200,
    );
}

/// A TCP listener on a loopback port that forwards every connection to the engine's unix
/// socket: an engine reached as a remote one is (`DOCKER_HOST=tcp://127.0.0.1:PORT`).
fn engine_over_tcp() -> u16 {
    use std::net::{Shutdown, TcpListener};
    use std::os::unix::net::UnixStream;
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for tcp in listener.incoming().map_while(Result::ok) {
            let Ok(unix) = UnixStream::connect("/var/run/docker.sock") else {
                continue;
            };
            let (mut tcp_in, mut unix_out) = (tcp.try_clone().unwrap(), unix.try_clone().unwrap());
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut tcp_in, &mut unix_out);
                let _ = unix_out.shutdown(Shutdown::Write);
            });
            let (mut unix_in, mut tcp_out) = (unix, tcp);
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut unix_in, &mut tcp_out);
                let _ = tcp_out.shutdown(Shutdown::Write);
            });
        }
    });
    port
}

#[test]
#[ignore = "needs docker: run with cargo xtask e2e"]
fn proxy_file_on_a_remote_engine_is_edited_there_not_on_the_client() {
    let plugins = plugin();
    let mut p = two_services("shared-remote-engine");
    let conf_path = p.dir().join("nginx.conf");
    let conf = p.read("nginx.conf");
    // The client's own file at the same path: another file, in the plugin's mount namespace.
    let client_bytes = "# the client's file: never to be written\n";
    let client_file = p.dir().join("client-nginx.conf");
    std::fs::write(&client_file, client_bytes).unwrap();
    let port = engine_over_tcp();
    let load = load_on(&p, 80);
    wait_ok(&load, 500, Duration::from_secs(30));
    let clock = Clock::of(&load);
    p.set_env("WEB_IMAGE", images::V2);
    let rollout = p.rollout_command(&plugins);
    let mut cmd = Command::new("unshare");
    cmd.args([
        "--mount",
        "--propagation",
        "private",
        "sh",
        "-c",
        // Shows the client's view first, so the log says which file the client sees.
        r#"mount --bind "$1" "$2" && head -n 1 "$2" >&2 && shift 2 && exec "$@""#,
        "sh",
    ])
    .arg(&client_file)
    .arg(&conf_path)
    .arg(rollout.get_program())
    .args(rollout.get_args())
    .args(["web", "--output", "json"]);
    for (k, v) in rollout.get_envs() {
        match v {
            Some(v) => cmd.env(k, v),
            None => cmd.env_remove(k),
        };
    }
    cmd.env("DOCKER_HOST", format!("tcp://127.0.0.1:{port}"))
        .env_remove("DOCKER_CONTEXT");
    if let Some(dir) = rollout.get_current_dir() {
        cmd.current_dir(dir);
    }
    let mut running = Running::spawn(cmd, clock, false);
    // While it runs, the engine's file carries the rollout's edit at some point.
    let edited = running.wait_event("traffic-changed", LIMIT);
    let during = p.read("nginx.conf");
    let run = running.wait(LIMIT);
    wait_ok(&load, 250, Duration::from_secs(30));
    let report = load.stop().unwrap();
    publish(SUITE, "remote-engine", &report, &[&run]);
    counts("remote engine", &report);
    assert_exit(&run, 0, "web over tcp");
    assert!(
        run.stderr.contains("the client's file"),
        "the plugin did not see the client's file: {}",
        run.stderr
    );
    assert_no_failure(&report);
    assert_clean_during(&report, &[&run]);
    assert_eq!(
        std::fs::read_to_string(&client_file).unwrap(),
        client_bytes,
        "the client's file was written"
    );
    eprintln!("first change at {:.2} s", edited.at);
    assert!(
        during != conf && upstream_servers(&during, "web").unwrap() != vec!["web:8000"],
        "the engine's file was not edited during the rollout:\n{during}"
    );
    assert_eq!(p.read("nginx.conf"), conf, "the engine's file ends at rest");
}
