//! `cargo xtask bench swarm`: Swarm's own `docker service update` and `docker rollout --stack`
//! of the same stack, under the same load, side by side, on a real two-node swarm.
//!
//! Each run deploys two fresh stacks of the demo app on one swarm (four tasks, `endpoint_mode:
//! dnsrr`, placed by Swarm on either node; the seed's `update_config` with a delay of 1 s and a monitor
//! of 2 s, start-first; the app exits at once on SIGTERM) behind nginx on the manager, and
//! updates each from v1 to v2 under the end-to-end load (250 requests per second) with 3 s GETs
//! and POSTs in flight (5 % each):
//!
//! - Swarm's own update, nginx re-resolving the service's tasks every second (its best case:
//!   the seed's config resolves them once, at start, and could not follow Swarm's new tasks);
//! - `docker rollout --stack` behind the seed's config, with `--output json`.
//!
//! Printed per run: wall time, failed requests by class, upstream errors, the fast GETs' p99
//! during the update against before it, and for ours where the time went (from its events).
//! The overhead is what the tool adds beyond what the settings and the app impose, as `cargo
//! xtask bench rollout` counts it: our wall time minus Swarm's own update alone in the same
//! run (its batches, delays and monitor, the new tasks' start), the standby's start (Swarm schedules it,
//! the app starts and passes its health check), and the two drains on the critical path, before
//! Swarm's update and after it (requests in flight, up to 3 s). The standby's tasks unrouted
//! in between are drained after the last one, within its wait.
//!
//! Swarm's own update counts by Swarm's clock, its update status's start to its completion:
//! its updater waits `delay` after every batch, the last one too, then watches for failures
//! for `monitor`, and only then says completed (swarmkit's `updater.go`). `docker service
//! update` returns before that, while the status still says updating and a failure would still
//! roll the update back; a rollout that reports Swarm's verdict (exit 3 after its rollback)
//! waits for it. The share with the CLI's wall instead is printed beside it, and the time from
//! the CLI's return to Swarm's completion.
//! Target: under 10 % of the wall time (median of the runs), and 0 failed requests where
//! Swarm's own update fails some.

use rollout_core::Event;
use rollout_e2e::load::wait_ok;
use rollout_e2e::swarm_stack::{
    long_requests, resolving_conf, rollout_stack_file, run_plain, seed_conf, swarm_with, Deployed,
};
use rollout_e2e::{
    images, require_engine, require_images, run_rollout, workspace_binary, Clock, Ended, PluginDir,
    NGINX_IMAGE,
};
use rollout_load::{Class, LoadHandle, Report};
use std::time::Duration;

const OVERHEAD_TARGET_PCT: f64 = 10.0;

/// One update's figures.
struct Figures {
    tool: &'static str,
    exit: Option<i32>,
    wall_s: f64,
    failed: [u64; 3],
    upstream_errors: u64,
    p99_steady_ms: f64,
    p99_during_ms: f64,
    /// Ours only: where the time went.
    ours: Option<Ours>,
    /// The update by Swarm's own clock: its status's start to its completion (seconds).
    swarm_clock: Option<f64>,
    /// Swarm's own update only: its status when the CLI returned, and how long after that
    /// Swarm said the update was over (seconds; negative: before).
    at_return: Option<(String, f64)>,
}

/// Where `docker rollout --stack` spent its time, from its events (seconds).
struct Ours {
    /// Before its first event: the process, the checks, the proxy opened, the standby
    /// created.
    before: f64,
    /// After its last event: the proxy's writer let go, the process's end.
    after: f64,
    /// Start to the standby's tasks healthy.
    standby_up: f64,
    /// Healthy to the home's tasks drained: the change and the first drain.
    first_change: f64,
    /// Its drain alone.
    first_drain: f64,
    /// The home drained to the change back at rest: Swarm's update, the new tasks routed and
    /// the standby's unrouted batch by batch as Swarm goes, the replaced tasks' end.
    swarms_part: f64,
    /// The change back at rest to the end of its drain and of the earlier ones not waited for.
    last_change: f64,
    /// Its drain alone.
    last_drain: f64,
    /// The standby removed, to the end.
    end: f64,
    /// Traffic changes.
    changes: usize,
    /// Whether the run went back at rest on the proxy's DNS answer (the service's name gives
    /// the serving tasks only) before Swarm's replaced tasks had stopped.
    rest_on_dns: bool,
}

fn ours_from_events(run: &Ended) -> Ours {
    let first = |name: &str| run.named(name).first().map_or(0.0, |e| e.rollout_t);
    let last = |name: &str| run.named(name).last().map_or(0.0, |e| e.rollout_t);
    let drain = |e: Option<&&rollout_e2e::Stamped>| match e.map(|e| &e.event) {
        Some(Event::Drained { report, .. }) => report.elapsed.as_secs_f64(),
        _ => 0.0,
    };
    let drained = run.named("drained");
    let (t0, t1, t2) = (
        first("rollout-started"),
        first("instance-healthy"),
        first("drained"),
    );
    let (t3, t4, t5) = (last("traffic-changed"), last("drained"), last("finished"));
    // The change back at rest is drained first; the drains of the changes made while Swarm
    // updated, which the run did not wait for then, follow it.
    let final_drain = drained.iter().find(|e| e.rollout_t >= t3);
    // The events' own times count from the plugin's renderer; the read times (`at`) are on
    // the load's clock, as the run's start and return are.
    let read = |name: &str, first: bool| {
        let all = run.named(name);
        let e = if first { all.first() } else { all.last() };
        e.map_or(run.started_at, |e| e.at)
    };
    Ours {
        before: read("rollout-started", true) - run.started_at,
        after: run.returned_at - read("finished", false),
        standby_up: t1 - t0,
        first_change: t2 - t1,
        first_drain: drain(drained.first()),
        swarms_part: t3 - t2,
        last_change: t4 - t3,
        last_drain: drain(final_drain),
        end: t5 - t4,
        changes: run.named("traffic-changed").len(),
        rest_on_dns: false,
    }
}

fn figures(tool: &'static str, run: &Ended, report: &Report) -> Figures {
    let failed = |c: Class| report.class_stats(c, 0.0, f64::INFINITY).failed;
    Figures {
        tool,
        exit: run.code,
        wall_s: run.elapsed(),
        failed: [
            failed(Class::Fast),
            failed(Class::Slow),
            failed(Class::Post),
        ],
        upstream_errors: report.upstream_errors.total,
        p99_steady_ms: report.class_stats(Class::Fast, 0.0, run.started_at).p99_ms,
        p99_during_ms: report
            .class_stats(Class::Fast, run.started_at, run.returned_at)
            .p99_ms,
        ours: None,
        swarm_clock: None,
        at_return: None,
    }
}

/// Swarm's own account of the service's last update, read from `docker service inspect`.
struct SwarmClock {
    /// `UpdateStatus.State` when read.
    state: String,
    /// `StartedAt` and `CompletedAt`, in Unix nanoseconds (0 when unset).
    started: i64,
    completed: i64,
}

impl SwarmClock {
    /// `None` when the service cannot be read or has no update status.
    fn read(service: &str) -> Option<SwarmClock> {
        let out = rollout_e2e::engine::docker()
            .args([
                "service",
                "inspect",
                "--format",
                "{{.UpdateStatus.State}} {{with .UpdateStatus.StartedAt}}{{.UnixNano}}{{else}}0{{end}} {{with .UpdateStatus.CompletedAt}}{{.UnixNano}}{{else}}0{{end}}",
                service,
            ])
            .output()
            .ok()?;
        let text = String::from_utf8_lossy(&out.stdout);
        let mut words = text.split_whitespace();
        let state = words.next()?.to_string();
        let mut nanos = words.map(|n| n.parse::<i64>().ok());
        Some(SwarmClock {
            state,
            started: nanos.next()??,
            completed: nanos.next()??,
        })
    }

    /// Reads until Swarm says the update completed, for at most `limit`; `None` when it did
    /// not (paused, rolled back, still going) or could not be read.
    fn when_completed(service: &str, limit: Duration) -> Option<SwarmClock> {
        let deadline = std::time::Instant::now() + limit;
        loop {
            if let Some(c) = SwarmClock::read(service).filter(|c| c.took().is_some()) {
                return Some(c);
            }
            if std::time::Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Start to completion, in seconds, once Swarm says completed.
    fn took(&self) -> Option<f64> {
        (self.state == "completed" && self.started > 0 && self.completed > self.started)
            .then(|| (self.completed - self.started) as f64 / 1e9)
    }
}

fn unix_nanos_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64)
}

/// The load on `d`'s nginx with 3 s GETs and POSTs, steady for 4 s.
fn load_on(d: &Deployed) -> LoadHandle {
    d.start_load(long_requests)
}

fn finish(load: LoadHandle) -> Report {
    wait_ok(&load, 250, Duration::from_secs(20));
    load.stop().expect("the load's report")
}

fn swarms_own(run: usize) -> Figures {
    let d = Deployed::on(None, &format!("bench-swarm-own-{run}"), &resolving_conf());
    let load = load_on(&d);
    let update = d.swarms_own_update(images::V2);
    let ended = run_plain(update, Clock::of(&load));
    let returned = unix_nanos_now();
    let at_return = SwarmClock::read(&d.service("app")).map(|c| c.state);
    let report = finish(load);
    let mut f = figures("docker service update", &ended, &report);
    let over = SwarmClock::when_completed(&d.service("app"), Duration::from_secs(30));
    f.swarm_clock = over.as_ref().and_then(SwarmClock::took);
    f.at_return = at_return.zip(over.map(|c| (c.completed - returned) as f64 / 1e9));
    f
}

fn ours(run: usize, plugins: &PluginDir) -> Figures {
    let d = Deployed::on(None, &format!("bench-swarm-ours-{run}"), &seed_conf());
    d.project
        .write("stack.yaml", &rollout_stack_file(d.port, images::V2));
    let load = load_on(&d);
    let cmd = d.rollout(plugins, &["--stack", &d.stack.0, "app", "--output", "json"]);
    let ended = run_rollout(cmd, Clock::of(&load), Duration::from_secs(240));
    let report = finish(load);
    if ended.code != Some(0) {
        eprintln!("docker rollout --stack failed:\n{}", ended.stderr);
    }
    let mut f = figures("docker rollout --stack", &ended, &report);
    let mut o = ours_from_events(&ended);
    // The run says so in its progress lines (`steps::wait_routable`).
    o.rest_on_dns = ended.stderr.contains("without waiting for");
    f.ours = Some(o);
    f.swarm_clock = SwarmClock::when_completed(&d.service("app"), Duration::from_secs(30))
        .and_then(|c| c.took());
    f
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

fn main() {
    let mut runs = 3;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match (
            a.as_str(),
            args.next().and_then(|n| n.parse::<usize>().ok()),
        ) {
            ("--runs", Some(n @ 1..=5)) => runs = n,
            _ => {
                eprintln!("bench swarm takes --runs N (1 to 5)");
                std::process::exit(2);
            }
        }
    }
    require_engine();
    require_images(&[images::V1, images::V2, NGINX_IMAGE]);
    let plugins = PluginDir::install(&workspace_binary("docker-rollout", "docker-rollout"));
    let _swarm = swarm_with(&[images::V2]);
    let mut pairs = Vec::new();
    for run in 1..=runs {
        eprintln!("bench swarm: run {run} of {runs}: Swarm's own update ...");
        let own = swarms_own(run);
        eprintln!("bench swarm: run {run} of {runs}: docker rollout --stack ...");
        let ours = ours(run, &plugins);
        pairs.push((own, ours));
    }
    println!(
        "bench swarm: 4 tasks of the demo app on a two-node swarm (dnsrr) behind nginx on the manager; update_config parallelism 2, delay 1s, monitor 2s, start-first, failure_action rollback; v1 -> v2 under 250 req/s with 3 s GETs and POSTs (5 % each), the app exiting at once on SIGTERM"
    );
    println!(
        "{:<4} {:<24} {:>5} {:>7} {:>26} {:>9} {:>28}",
        "run",
        "tool",
        "exit",
        "wall s",
        "failed (fast/slow/post)",
        "upstream",
        "fast p99 ms before -> during"
    );
    let mut shares = Vec::new();
    let mut cli_shares = Vec::new();
    let mut all_ours_clean = true;
    let mut swarms_failed = 0;
    for (i, (own, ours)) in pairs.iter().enumerate() {
        for f in [own, ours] {
            let failed: u64 = f.failed.iter().sum();
            println!(
                "{:<4} {:<24} {:>5} {:>7.1} {:>26} {:>9} {:>17.1} -> {:>7.1}",
                i + 1,
                f.tool,
                f.exit.map_or("-".into(), |c| c.to_string()),
                f.wall_s,
                format!("{failed} ({}/{}/{})", f.failed[0], f.failed[1], f.failed[2]),
                f.upstream_errors,
                f.p99_steady_ms,
                f.p99_during_ms
            );
        }
        swarms_failed += own.failed.iter().sum::<u64>();
        all_ours_clean &= ours.exit == Some(0)
            && ours.failed.iter().sum::<u64>() == 0
            && ours.upstream_errors == 0;
        let o = ours.ours.as_ref().expect("our figures");
        // Swarm's part of what is imposed: its update alone, start to completion by its own
        // clock. Its updater waits `delay` after every batch, the last one too, then watches
        // for failures for `monitor` before it says completed; its CLI returns earlier, while
        // the status still says updating and a failure would still roll the update back. A
        // rollout that reports Swarm's verdict waits for it. The share with the CLI's wall
        // instead is printed beside it.
        let Some(swarms) = own.swarm_clock else {
            eprintln!(
                "bench swarm: run {}: Swarm's own update has no completion on its clock (its status did not say completed within 30 s): no overhead can be told",
                i + 1
            );
            std::process::exit(1);
        };
        let rest = o.standby_up + o.first_drain + o.last_drain;
        let imposed = swarms + rest;
        let overhead = ours.wall_s - imposed;
        let share = overhead / ours.wall_s * 100.0;
        shares.push(share);
        let by_cli = (ours.wall_s - own.wall_s - rest) / ours.wall_s * 100.0;
        cli_shares.push(by_cli);
        println!(
            "     ours, step by step: before the first event {:.1}s, the standby's start {:.1}s, its change and the first drain {:.1}s (drain {:.1}s), Swarm's update with the new tasks routed {:.1}s (Swarm's own CLI took {:.1}s; back at rest on {}), the change back at rest and the drains {:.1}s (its own {:.1}s), the standby removed {:.1}s, after the last event {:.1}s; {} traffic change(s)",
            o.before,
            o.standby_up,
            o.first_change,
            o.first_drain,
            o.swarms_part,
            own.wall_s,
            if o.rest_on_dns {
                "the proxy's DNS answer"
            } else {
                "the replaced tasks' end"
            },
            o.last_change,
            o.last_drain,
            o.end,
            o.after,
            o.changes
        );
        let clock = |f: &Figures| f.swarm_clock.map_or("-".into(), |s| format!("{s:.1}s"));
        println!(
            "     Swarm's update by its own clock (status started to completed): {} alone, {} under ours",
            clock(own),
            clock(ours)
        );
        if let Some((state, later)) = &own.at_return {
            println!(
                "     Swarm's own CLI returned with the update {state}; Swarm said it was over {later:.1}s after the CLI returned"
            );
        }
        println!(
            "     ours: wall {:.1}s - imposed {imposed:.1}s (Swarm's own update by its clock {swarms:.1}s + the standby's start {:.1}s + the first and last drains {:.1}s) = overhead {overhead:.1}s, {share:.1} % of wall (by its CLI's wall {:.1}s instead: {by_cli:.1} %)",
            ours.wall_s,
            o.standby_up,
            o.first_drain + o.last_drain,
            own.wall_s
        );
    }
    let med = median(shares.clone());
    let verdict = |ok: bool| if ok { "met" } else { "MISSED" };
    println!(
        "docker rollout --stack: median over {runs} run(s): overhead {med:.1} % of wall time (target under {OVERHEAD_TARGET_PCT} %: {}); shares {:?}",
        verdict(med < OVERHEAD_TARGET_PCT),
        shares.iter().map(|s| (s * 10.0).round() / 10.0).collect::<Vec<_>>()
    );
    println!(
        "docker rollout --stack: with Swarm's part taken as its CLI's wall instead (the CLI returns before Swarm says completed): median {:.1} %; shares {:?}",
        median(cli_shares.clone()),
        cli_shares.iter().map(|s| (s * 10.0).round() / 10.0).collect::<Vec<_>>()
    );
    println!(
        "failed requests: docker rollout --stack 0 in every run: {}; Swarm's own update: {swarms_failed} in all runs",
        verdict(all_ours_clean)
    );
}
