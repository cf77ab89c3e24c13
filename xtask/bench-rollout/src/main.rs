//! `cargo xtask bench rollout`: the three ways to update six replicas, side by side, under the
//! same load, in one run.
//!
//! Each method gets a fresh copy of the seed's stack (six `rollout-demo:v1` replicas behind
//! nginx, the seed's `update_config`: parallelism 2, delay 10s, failure_action rollback,
//! monitor 30s, max_failure_ratio 0.3) and the same load (250 requests per second, 5 % slow
//! GETs of 2 s, 5 % POSTs, 20 % on new connections), 15 s of steady state, then the update to
//! v2: the naive `down` then `up`, the Compose recreate (`up -d` with the new image), and
//! `docker rollout app` through the real docker CLI. Printed per method: failed requests,
//! upstream errors in nginx's log, stale keep-alive retries, and the p99 latency of each
//! request class during the update against the steady-state p99 of the same run.
//!
//! For `docker rollout`, also its overhead: its wall time minus what the settings and the app
//! impose on the critical path. Imposed: for each round of `parallelism` slots, the longest of
//! (the drained instance's last in-flight request, from the moment the tool unrouted it to the
//! moment the load generator got that instance's last answer, by the answers' instance names;
//! plus the new instance's own time to healthy, from the engine's `start` event to its
//! `health_status: healthy` event), the delays between rounds, and the final monitor window.

use rollout_core::router::Target;
use rollout_core::Event;
use rollout_e2e::haproxy::haproxy_project;
use rollout_e2e::load::{mix, wait_ok};
use rollout_e2e::{
    blue_green_example, docker, images, require_engine, require_images, wait_http,
    workspace_binary, Clock, DemoStack, Ended, PluginDir, Project, Running, NGINX_IMAGE,
};
use rollout_load::{Class, Report};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const SEED_UPDATE: &str = "services:\n  app:\n    deploy:\n      update_config:\n        parallelism: 2\n        delay: 10s\n        failure_action: rollback\n        monitor: 30s\n        max_failure_ratio: 0.3\n";
const PARALLELISM: usize = 2;
const DELAY_S: f64 = 10.0;
const MONITOR_S: f64 = 30.0;
const STEADY: Duration = Duration::from_secs(15);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Method {
    DownUp,
    Recreate,
    Rollout,
    /// `docker rollout` with HAProxy in front instead of nginx (`--proxy haproxy`).
    RolloutHaproxy,
}

impl Method {
    fn name(self) -> &'static str {
        match self {
            Method::DownUp => "down/up",
            Method::Recreate => "compose recreate",
            Method::Rollout => "docker rollout",
            Method::RolloutHaproxy => "rollout (haproxy)",
        }
    }
}

/// The engine's events of a project: (unix ms, container id, what).
struct EngineEvents {
    child: Child,
    seen: Arc<Mutex<Vec<(u64, String, String)>>>,
}

impl EngineEvents {
    fn start(project: &str) -> EngineEvents {
        let mut child = docker()
            .args([
                "events",
                "--filter",
                &format!("label=com.docker.compose.project={project}"),
                "--filter",
                "type=container",
                "--format",
                "{{json .}}",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("docker events runs");
        let out = child.stdout.take().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s = seen.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) else {
                    continue;
                };
                let ms = v["timeNano"].as_u64().unwrap_or(0) / 1_000_000;
                let id = v["id"].as_str().unwrap_or_default().to_string();
                let what = v["status"].as_str().unwrap_or_default().to_string();
                s.lock().unwrap().push((ms, id, what));
            }
        });
        // docker events needs a moment to subscribe.
        std::thread::sleep(Duration::from_millis(500));
        EngineEvents { child, seen }
    }

    fn stop(mut self) -> Vec<(u64, String, String)> {
        let _ = self.child.kill();
        let _ = self.child.wait();
        std::thread::sleep(Duration::from_millis(100));
        self.seen.lock().unwrap().clone()
    }

    /// Seconds from `start` to `health_status: healthy` of container `id`.
    fn time_to_healthy(seen: &[(u64, String, String)], id: &str) -> Option<f64> {
        let start = seen
            .iter()
            .find(|(_, i, w)| i.starts_with(id) && w == "start")?
            .0;
        let healthy = seen
            .iter()
            .find(|(ms, i, w)| i.starts_with(id) && w == "health_status: healthy" && *ms >= start)?
            .0;
        Some((healthy - start) as f64 / 1000.0)
    }
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// What one method showed.
struct Figures {
    method: Method,
    wall_s: f64,
    failed: u64,
    upstream_errors: u64,
    stale_retries: u64,
    /// (class, steady p99 ms, update p99 ms, requests during the update).
    p99: Vec<(Class, f64, f64, u64)>,
    overhead: Option<Overhead>,
    exit: Option<i32>,
}

struct Overhead {
    imposed_s: f64,
    healthy_s: Vec<f64>,
    drains_s: Vec<f64>,
    /// Where the tool's own time went, summed over the slots (not the critical path).
    breakdown: Vec<(&'static str, f64)>,
}

/// The seed's six replicas and `update_config` behind the `rollout-haproxy:2.6` image with
/// the example's config, routed by a first `docker rollout app` (HAProxy starts with empty
/// slots).
fn haproxy_stack(slug: &str, plugins: &PluginDir) -> Project {
    let app = "  app:\n    image: ${APP_IMAGE:-rollout-demo:v1}\n    deploy:\n      replicas: 6\n      update_config:\n        parallelism: 2\n        delay: 10s\n        failure_action: rollback\n        monitor: 30s\n        max_failure_ratio: 0.3\n";
    let p = haproxy_project(slug, app, &[images::V1, images::V2]);
    p.up();
    p.wait_healthy("app", 6, Duration::from_secs(90));
    let mut cmd = p.rollout_command(plugins);
    cmd.args(["app", "--output", "json"]);
    let first = Running::spawn(cmd, Clock::start(), false).wait(Duration::from_secs(120));
    assert_eq!(
        first.code,
        Some(0),
        "routing the v1 instances: {}",
        first.stderr
    );
    p
}

/// Where the load goes: the proxy's container address (no userland proxy in the
/// measurement), except for down/up, which recreates nginx: its published port.
fn target(p: &Project, method: Method) -> std::net::SocketAddr {
    match method {
        Method::DownUp => p.port("nginx", 80),
        Method::RolloutHaproxy => p.container_address("haproxy", 80),
        _ => p.container_address("nginx", 80),
    }
}

fn run_one(method: Method, plugins: &PluginDir) -> Figures {
    let slug = format!("bench-{}", method.name().replace(['/', ' ', '(', ')'], "-"));
    let mut p = if method == Method::RolloutHaproxy {
        haproxy_stack(&slug, plugins)
    } else {
        let p = Project::new(&slug);
        DemoStack::new(images::V1, 6).write_to(&p);
        p.write("docker-compose.override.yml", SEED_UPDATE);
        p.up();
        p.wait_healthy("app", 6, Duration::from_secs(90));
        p
    };
    let at = target(&p, method);
    wait_http(at, "/", Duration::from_secs(30), |a| a.status == 200);
    let bench_mix = |c: &mut rollout_load::LoadConfig| {
        mix(c, Duration::from_secs(600));
        c.post_delay = Duration::from_millis(100);
    };
    let load = match method {
        Method::DownUp => p.start_load_published(bench_mix),
        Method::RolloutHaproxy => {
            let mut c = rollout_load::LoadConfig::new(at);
            bench_mix(&mut c);
            rollout_load::LoadHandle::start(c).expect("the load starts")
        }
        _ => p.start_load(bench_mix),
    };
    wait_ok(&load, 750, Duration::from_secs(30));
    let steady_from = load.mark("steady-start");
    std::thread::sleep(STEADY);
    let engine = EngineEvents::start(p.name());
    let start = load.mark("update-start");
    let start_unix = unix_ms();
    p.set_env("APP_IMAGE", images::V2);
    let mut rollout = None;
    match method {
        Method::DownUp => {
            p.down();
            p.up();
        }
        Method::Recreate => {
            p.compose(&["up", "-d"]);
        }
        Method::Rollout | Method::RolloutHaproxy => {
            let mut cmd = p.rollout_command(plugins);
            cmd.args(["app", "--output", "json"]);
            // Stamped from the rollout's start (the `update-start` mark).
            let ended = Running::spawn(cmd, Clock::start(), false).wait(Duration::from_secs(400));
            rollout = Some(ended);
        }
    }
    let end = load.mark("update-end");
    wait_http(target(&p, method), "/", Duration::from_secs(60), |a| {
        a.version.as_deref() == Some("v2")
    });
    let recovered = load.mark("serving-v2");
    wait_ok(&load, 1000, Duration::from_secs(30));
    let seen = engine.stop();
    let report = load.stop().unwrap();
    let to = recovered.max(end) + 2.0;
    let w = report.window(start, to);
    let p99 = Class::ALL
        .iter()
        .map(|&c| {
            let steady = report.class_stats(c, steady_from, start);
            let during = report.class_stats(c, start, end.max(start + 1.0));
            (c, steady.p99_ms, during.p99_ms, during.sent)
        })
        .collect();
    let mut figures = Figures {
        method,
        wall_s: end - start,
        failed: w.failed,
        upstream_errors: w.upstream_errors,
        stale_retries: w.retried,
        p99,
        overhead: None,
        exit: None,
    };
    if let Some(r) = &rollout {
        figures.exit = r.code;
        eprintln!(
            "docker rollout: exit {:?}\n{}{}",
            r.code,
            r.transcript(),
            r.stderr
        );
        figures.wall_s = r.elapsed();
        figures.overhead = Some(overhead(r, &report, start, start_unix, &seen));
    }
    figures
}

/// The instances the rollout stopped, and when each stopped getting traffic (seconds on the
/// event clock): the first traffic change after which it is neither routed by its own line
/// nor through the service name. The bench's stack starts routed by name, so an instance can
/// leave the routes by being left out when the name is replaced by instance lines.
fn unrouted_times(r: &Ended) -> (Vec<&str>, BTreeMap<String, f64>) {
    let stopped: Vec<&str> = r
        .events
        .iter()
        .filter_map(|l| match &l.event {
            Event::InstanceStopped { instance } => Some(instance.0.as_str()),
            _ => None,
        })
        .collect();
    let mut by_name = true;
    let mut direct: std::collections::HashSet<String> = std::collections::HashSet::new();
    let mut out = BTreeMap::new();
    for l in &r.events {
        let Event::TrafficChanged { set, removed, .. } = &l.event else {
            continue;
        };
        let before: Vec<bool> = stopped
            .iter()
            .map(|id| by_name || direct.contains(*id))
            .collect();
        for t in removed {
            match t {
                Target::Instance { id, .. } => {
                    direct.remove(&id.0);
                }
                Target::Service { .. } => by_name = false,
            }
        }
        for route in set {
            match &route.target {
                Target::Instance { id, .. } => {
                    direct.insert(id.0.clone());
                }
                Target::Service { .. } => by_name = true,
            }
        }
        for (id, was) in stopped.iter().zip(before) {
            let now = by_name || direct.contains(*id);
            if was && !now && !out.contains_key(*id) {
                out.insert(id.to_string(), l.at);
            }
        }
    }
    (stopped, out)
}

/// What the settings and the app impose on the critical path of a rollout.
fn overhead(
    r: &Ended,
    report: &Report,
    start: f64,
    start_unix: u64,
    seen: &[(u64, String, String)],
) -> Overhead {
    // The event lines are stamped from the rollout's start, which is `start` on the load
    // clock (within the time it takes to spawn a process).
    // Only instances that were then stopped were drained: at the end the service is routed
    // by name again and its new instances leave the explicit list, still routed.
    let (stopped, unrouted_at) = unrouted_times(r);
    let mut drains = Vec::new();
    for id in &stopped {
        if let Some(at) = unrouted_at.get(*id) {
            let unrouted = start + at;
            let short: String = id.chars().take(12).collect();
            let last = report.instances.get(&short).map_or(unrouted, |s| s.last);
            drains.push((unrouted, (last - unrouted).max(0.0)));
        }
    }
    drains.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut launches: Vec<(f64, f64)> = r
        .events
        .iter()
        .filter_map(|l| match &l.event {
            Event::InstanceLaunched { instance, .. } => Some((
                l.at,
                EngineEvents::time_to_healthy(seen, &instance.0).unwrap_or(0.0),
            )),
            _ => None,
        })
        .collect();
    launches.sort_by(|a, b| a.0.total_cmp(&b.0));
    let slots = drains.len().max(launches.len());
    let rounds = slots.div_ceil(PARALLELISM);
    let mut imposed = 0.0;
    for round in 0..rounds {
        let mut longest: f64 = 0.0;
        for k in round * PARALLELISM..((round + 1) * PARALLELISM).min(slots) {
            let d = drains.get(k).map_or(0.0, |d| d.1);
            let h = launches.get(k).map_or(0.0, |l| l.1);
            longest = longest.max(d + h);
        }
        imposed += longest;
    }
    imposed += DELAY_S * rounds.saturating_sub(1) as f64 + MONITOR_S;
    Overhead {
        imposed_s: imposed,
        healthy_s: launches.iter().map(|l| l.1).collect(),
        drains_s: drains.iter().map(|d| d.1).collect(),
        breakdown: breakdown(r, report, start, start_unix, seen),
    }
}

/// The tool's own time per phase, summed over the slots, from its events and the engine's:
/// launching (the engine's `create` of an instance back to the end of the slot's previous
/// step is not known, so: `create` to the launch event), noticing health (the engine's
/// healthy to the tool's), routing (healthy to the traffic change naming it), draining
/// beyond the instance's own last request, and retiring (drained to removed).
fn breakdown(
    r: &Ended,
    report: &Report,
    start: f64,
    start_unix: u64,
    seen: &[(u64, String, String)],
) -> Vec<(&'static str, f64)> {
    let engine_t = |id: &str, what: &str| {
        seen.iter()
            .find(|(_, i, w)| i.starts_with(id) && w == what)
            .map(|(ms, _, _)| (*ms as f64 - start_unix as f64) / 1000.0)
    };
    let at = |pred: &dyn Fn(&Event) -> bool| r.events.iter().find(|l| pred(&l.event)).map(|l| l.at);
    let (_, unrouted_at) = unrouted_times(r);
    let (mut launch, mut notice, mut route, mut drain, mut retire) = (0.0, 0.0, 0.0, 0.0, 0.0);
    for l in &r.events {
        match &l.event {
            Event::InstanceLaunched { instance, .. } => {
                let id = instance.0.as_str();
                if let Some(c) = engine_t(id, "create") {
                    launch += (l.at - c).max(0.0);
                }
                let healthy =
                    at(&|e| matches!(e, Event::InstanceHealthy { instance: i } if i.0 == id));
                if let (Some(h), Some(eh)) = (healthy, engine_t(id, "health_status: healthy")) {
                    notice += (h - eh).max(0.0);
                    let routed = at(&|e| {
                        matches!(e, Event::TrafficChanged { set, .. }
                        if set.iter().any(|r| matches!(&r.target, Target::Instance { id: x, .. } if x.0 == id)))
                    });
                    if let Some(rt) = routed {
                        route += (rt - h).max(0.0);
                    }
                }
            }
            Event::Drained {
                removed,
                report: dr,
            } => {
                for t in removed {
                    if let Target::Instance { id, .. } = t {
                        let id = id.0.as_str();
                        let unrouted = unrouted_at.get(id).copied();
                        if let Some(u) = unrouted {
                            let short: String = id.chars().take(12).collect();
                            let last =
                                report.instances.get(&short).map_or(start + u, |s| s.last) - start;
                            drain += (l.at - last.max(u)).max(0.0);
                        }
                        let removed_at = at(
                            &|e| matches!(e, Event::InstanceRemoved { instance } if instance.0 == id),
                        );
                        if let Some(rm) = removed_at {
                            retire += (rm - l.at).max(0.0);
                        }
                    }
                }
                let _ = dr;
            }
            _ => {}
        }
    }
    vec![
        ("launch (create to launched)", launch),
        ("noticing health", notice),
        ("routing (healthy to traffic change)", route),
        ("draining past the last request", drain),
        ("retiring (drained to removed)", retire),
    ]
}

/// The switch back of a blue-green pair (two replicas each) behind `proxy` under the same
/// load: `docker rollout green`, then `docker rollout blue`; seconds from that command's
/// start to the end of the first answer blue gave to a request sent after it, for each of
/// `rounds` green-then-blue pairs on the same stack. Also the stale keep-alive retries over
/// all the switches.
fn switch_back(proxy: &str, plugins: &PluginDir, rounds: usize) -> (Vec<f64>, u64) {
    let slug = format!("bench-switch-{proxy}");
    let p = if proxy == "haproxy" {
        let colours = format!(
            "  blue:\n    image: {}\n    deploy:\n      replicas: 2\n  green:\n    image: {}\n    deploy:\n      replicas: 2\n",
            images::V1,
            images::V2
        );
        let p = haproxy_project(&slug, &colours, &[images::V1, images::V2]);
        p.up();
        p.wait_healthy("blue", 2, Duration::from_secs(60));
        p.wait_healthy("green", 2, Duration::from_secs(60));
        p
    } else {
        blue_green_example(&slug, 2)
    };
    let rollout = |service: &str, clock: Clock| {
        let mut cmd = p.rollout_command(plugins);
        cmd.args([service, "--output", "json"]);
        let r = Running::spawn(cmd, clock, false).wait(Duration::from_secs(120));
        assert_eq!(r.code, Some(0), "docker rollout {service}: {}", r.stderr);
        r
    };
    if proxy == "haproxy" {
        // HAProxy starts with empty slots: blue is routed first.
        rollout("blue", Clock::start());
    }
    let mut c = rollout_load::LoadConfig::new(p.container_address(proxy, 80));
    mix(&mut c, Duration::from_secs(300));
    c.post_delay = Duration::from_millis(100);
    let load = rollout_load::LoadHandle::start(c).expect("the load starts");
    wait_ok(&load, 750, Duration::from_secs(30));
    let mut backs = Vec::new();
    for _ in 0..rounds {
        rollout("green", Clock::of(&load));
        wait_ok(&load, 750, Duration::from_secs(30));
        backs.push(rollout("blue", Clock::of(&load)).started_at);
        wait_ok(&load, 750, Duration::from_secs(30));
    }
    let report = load.stop().unwrap();
    let seconds = backs
        .iter()
        .map(|&at| {
            let first_blue = report
                .requests
                .iter()
                .filter(|r| r.t >= at && r.version.as_deref() == Some("v1"))
                .map(|r| r.end())
                .fold(f64::INFINITY, f64::min);
            first_blue - at
        })
        .collect();
    (seconds, report.stale_retries)
}

/// `--switch-back-only`: three switch-backs behind nginx and behind HAProxy, each one, and
/// the median per proxy.
fn switch_back_only(plugins: &PluginDir) {
    for proxy in ["nginx", "haproxy"] {
        eprintln!("bench rollout: switch back behind {proxy} x3 ...");
        let (mut s, stale) = switch_back(proxy, plugins, 3);
        let each: Vec<String> = s.iter().map(|v| format!("{v:.3}")).collect();
        s.sort_by(f64::total_cmp);
        println!(
            "switch back behind {proxy} (blue-green, 2 + 2 replicas): median {:.3}s of [{}] from `docker rollout blue` to blue's first answer; {stale} stale keep-alive retries over all switches",
            s[1],
            each.join(", ")
        );
    }
}

/// The overhead line of a `docker rollout` run: its wall time against what the settings
/// and the app impose. Returns the overhead's share of the wall time, in percent.
fn print_overhead(ours: &Figures) -> f64 {
    let o = ours.overhead.as_ref().unwrap();
    let overhead = ours.wall_s - o.imposed_s;
    let share = overhead / ours.wall_s * 100.0;
    let round = |v: &[f64]| {
        v.iter()
            .map(|h| (h * 100.0).round() / 100.0)
            .collect::<Vec<_>>()
    };
    println!(
        "{}: exit {:?}; wall {:.1}s, imposed {:.1}s (time to healthy {:?} s; drains {:?} s; delays {DELAY_S}s x {}; monitor {MONITOR_S}s), overhead {:.1}s = {:.1} % of wall time",
        ours.method.name(),
        ours.exit,
        ours.wall_s,
        o.imposed_s,
        round(&o.healthy_s),
        round(&o.drains_s),
        (o.healthy_s.len().max(o.drains_s.len()))
            .div_ceil(PARALLELISM)
            .saturating_sub(1),
        overhead,
        share
    );
    println!(
        "  where the tool's own time went (summed over slots, 2 run at once): {}",
        o.breakdown
            .iter()
            .map(|(what, s)| format!("{what} {s:.1}s"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    share
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let with_haproxy = match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        [] => false,
        ["--proxy", "haproxy"] => true,
        ["--switch-back-only"] => {
            require_engine();
            require_images(&[images::V1, images::V2, NGINX_IMAGE]);
            let bin = workspace_binary("docker-rollout", "docker-rollout");
            switch_back_only(&PluginDir::install(&bin));
            return;
        }
        other => {
            eprintln!("bench-rollout: unknown arguments {other:?} (only `--proxy haproxy` or `--switch-back-only`)");
            std::process::exit(2);
        }
    };
    require_engine();
    require_images(&[images::V1, images::V2, NGINX_IMAGE]);
    let plugins = PluginDir::install(&workspace_binary("docker-rollout", "docker-rollout"));
    let mut methods = vec![Method::DownUp, Method::Recreate, Method::Rollout];
    if with_haproxy {
        methods.push(Method::RolloutHaproxy);
    }
    let mut all = Vec::new();
    for m in methods {
        eprintln!("bench rollout: {} ...", m.name());
        all.push(run_one(m, &plugins));
    }
    let mut switches = Vec::new();
    if with_haproxy {
        for proxy in ["nginx", "haproxy"] {
            eprintln!("bench rollout: switch back behind {proxy} ...");
            let (s, stale) = switch_back(proxy, &plugins, 1);
            switches.push((proxy, (s[0], stale)));
        }
    }
    println!(
        "bench rollout: 6 replicas v1 -> v2, seed's update_config (parallelism 2, delay 10s, monitor 30s), load 250 req/s (5 % slow GETs of 2 s, 5 % POSTs, 20 % new connections), 15 s steady state first"
    );
    println!(
        "{:<18} {:>7} {:>7} {:>9} {:>6}  p99 ms steady -> update (fast | slow | post)",
        "method", "wall s", "failed", "upstream", "stale"
    );
    for f in &all {
        let p: Vec<String> = f
            .p99
            .iter()
            .map(|(_, s, d, _)| format!("{s:.1} -> {d:.1}"))
            .collect();
        println!(
            "{:<18} {:>7.1} {:>7} {:>9} {:>6}  {}",
            f.method.name(),
            f.wall_s,
            f.failed,
            f.upstream_errors,
            f.stale_retries,
            p.join(" | ")
        );
    }
    let verdict = |ok: bool| if ok { "met" } else { "MISSED" };
    for ours in all.iter().filter(|f| f.overhead.is_some()) {
        let share = print_overhead(ours);
        let fast = ours.p99.iter().find(|p| p.0 == Class::Fast).unwrap();
        let ratio = fast.2 / fast.1;
        println!(
            "  targets: 0 failed: {} ({}); 0 upstream errors: {} ({}); overhead under 10 %: {} ({share:.1} %); fast p99 within 1.2x steady: {} ({ratio:.2}x)",
            verdict(ours.failed == 0),
            ours.failed,
            verdict(ours.upstream_errors == 0),
            ours.upstream_errors,
            verdict(share < 10.0),
            verdict(ratio <= 1.2)
        );
    }
    for (proxy, (seconds, stale)) in &switches {
        println!(
            "switch back behind {proxy} (blue-green, 2 + 2 replicas): {seconds:.3}s from `docker rollout blue` to blue's first answer; {stale} stale keep-alive retries over both switches"
        );
    }
}
