//! The operator's verbs: `docker rollout status`, `history` and `abort`
//! (`pause`, `resume` and `promote` of a running canary are `steer.rs`).
//!
//! They read what the engine keeps (the journal, the lock, the history; see
//! rollout-docker's `journal` and `history`), the service's containers and
//! the proxy's config, so they work from any shell, while a rollout runs in
//! another and after it crashed. `abort` tells a running rollout through a
//! request kept with the engine, which it polls; with no rollout running it
//! marks the journal as rolling back and runs the rollout path, which
//! finishes a rollback as it would after a crash (same protocol).

use crate::cli::{OutputFormat, Verb, VerbRequest};
use crate::fail::Fail;
use crate::live;
use rollout_compose::ProxyKind;
use rollout_core::journal::{HistoryEntry, Journal, JournalRecord, Liveness, Phase};
use rollout_core::strategy::TrafficLayout;
use rollout_core::{exit, Backend, Instance, Outcome, ServiceRef};
use rollout_docker::{history, DockerBackend, DockerJournal, Engine, ProxyContainer};
use serde::Serialize;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::io::Write;
use std::time::Duration;

/// The service, its project read and the engine reached: what every verb
/// starts from. An unknown service is bad input (exit 2) before the engine
/// is asked.
pub(crate) struct Scene {
    pub(crate) prepared: live::Prepared,
    pub(crate) engine: Engine,
    pub(crate) service: ServiceRef,
}

pub(crate) async fn scene(req: &VerbRequest) -> Result<Scene, Fail> {
    let r = &req.rollout;
    let names = live::project_names(r);
    let prepared = live::prepare(r, live::choose_compose(r, &names, None).await?)?;
    let engine = live::connect(&r.docker).await?;
    let prepared = live::settle_compose(r, &names, &engine, prepared).await?;
    let service = prepared.settings.service.clone();
    Ok(Scene {
        prepared,
        engine,
        service,
    })
}

/// `docker rollout status|history`; `abort` is [`abort`] (it may roll out).
pub async fn run(req: &VerbRequest) -> Result<i32, Fail> {
    let scene = scene(req).await?;
    match &req.verb {
        Verb::Status { watch, count } => status(req, &scene, *watch, *count).await,
        Verb::History { limit } => history_verb(req, &scene, *limit).await,
        Verb::Abort { .. }
        | Verb::Undo
        | Verb::Promote { .. }
        | Verb::Pause { .. }
        | Verb::Resume { .. } => Err(Fail::unexpected(
            "abort, undo, promote, pause and resume are run by main",
        )),
    }
}

/// One instance as `status` shows it.
#[derive(Debug, Serialize)]
struct InstanceView {
    host: String,
    id: String,
    service: String,
    revision: String,
    image: Option<String>,
    image_id: Option<String>,
    state: Value,
    health: Value,
}

/// One server of the upstream, with the revision of its instance.
#[derive(Debug, Serialize)]
struct ServerView {
    server: String,
    weight: u32,
    revision: Option<String>,
}

/// Where a service stands.
#[derive(Debug, Serialize)]
struct Status {
    service: String,
    instances: Vec<InstanceView>,
    proxy: Option<Value>,
    /// Share of the upstream's weight per image (revision), in percent.
    traffic: BTreeMap<String, f64>,
    rollout: Option<Value>,
    last: Option<HistoryEntry>,
}

async fn status(
    req: &VerbRequest,
    scene: &Scene,
    watch: Option<Duration>,
    count: Option<u32>,
) -> Result<i32, Fail> {
    let mut printed = 0u32;
    loop {
        let s = gather(req, scene).await?;
        let mut out = std::io::stdout();
        match req.rollout.output {
            OutputFormat::Json => {
                let _ = writeln!(out, "{}", serde_json::to_string(&s).unwrap_or_default());
            }
            OutputFormat::Text => {
                if printed > 0 {
                    let _ = writeln!(out);
                }
                let _ = write!(out, "{}", render(&s));
            }
        }
        let _ = out.flush();
        printed += 1;
        match watch {
            Some(every) if count.is_none_or(|c| printed < c) => tokio::time::sleep(every).await,
            _ => return Ok(exit::SUCCESS),
        }
    }
}

async fn gather(req: &VerbRequest, scene: &Scene) -> Result<Status, Fail> {
    let settings = &scene.prepared.settings;
    let backend = DockerBackend::new(
        scene.engine.clone(),
        live::compose_cli(&scene.prepared, &req.rollout),
    );
    let mut services = vec![settings.service.clone()];
    if let TrafficLayout::Colours { other, .. } = &settings.layout {
        services.push(other.clone());
    }
    let mut instances: Vec<Instance> = Vec::new();
    for s in &services {
        instances.extend(backend.instances(s).await?);
    }
    // Each revision described once (its image and image id).
    let mut described: BTreeMap<String, rollout_core::Revision> = BTreeMap::new();
    for i in &instances {
        if !described.contains_key(&i.revision) {
            if let Ok(r) = backend.describe(&i.service, &i.revision).await {
                described.insert(i.revision.clone(), r);
            }
        }
    }
    let views: Vec<InstanceView> = instances
        .iter()
        .map(|i| {
            let r = described.get(&i.revision);
            InstanceView {
                host: i.host.clone(),
                id: i.id.0.chars().take(12).collect(),
                service: i.service.service.clone(),
                revision: i.revision.clone(),
                image: r.map(|r| r.image.clone()),
                image_id: r.and_then(|r| r.image_id.clone()),
                state: json!(i.state),
                health: json!(i.health),
            }
        })
        .collect();
    let (proxy, traffic) = weights(scene, &instances, &described).await;
    let journal = DockerJournal::new(scene.engine.clone());
    let record = journal.load(&scene.service).await?;
    let holder = journal.holder(&scene.service).await?;
    let rollout = record.map(|r| rollout_view(&r, holder.as_ref()));
    let last = history::list(&scene.engine, &scene.service)
        .await
        .map_err(Fail::from)?
        .into_iter()
        .next();
    Ok(Status {
        service: scene.service.to_string(),
        instances: views,
        proxy,
        traffic,
        rollout,
        last,
    })
}

/// The upstream's servers and weights as the proxy's live config says,
/// and the share of each image. Behind HAProxy, or when the file cannot be
/// read, the reason instead.
async fn weights(
    scene: &Scene,
    instances: &[Instance],
    described: &BTreeMap<String, rollout_core::Revision>,
) -> (Option<Value>, BTreeMap<String, f64>) {
    let settings = &scene.prepared.settings;
    let mut traffic = BTreeMap::new();
    let Some(proxy) = &settings.proxy else {
        return (None, traffic);
    };
    if settings.proxy_kind == ProxyKind::Haproxy {
        return (
            Some(json!({ "service": proxy, "note": "weights are not read behind HAProxy" })),
            traffic,
        );
    }
    let path = settings
        .proxy_config
        .clone()
        .unwrap_or_else(|| live::DEFAULT_NGINX_CONF.to_string());
    let read = async {
        let proxies = ProxyContainer::of_service(
            &scene.engine,
            &ServiceRef::new(&scene.service.project, proxy),
        )
        .await
        .map_err(|e| e.to_string())?;
        let live = proxies[0]
            .files
            .read(&path)
            .await
            .map_err(|e| e.to_string())?;
        let mut names = vec![settings.service.service.clone()];
        if let TrafficLayout::Colours { other, .. } = &settings.layout {
            names.push(other.service.clone());
        }
        let upstream = match &settings.upstream {
            Some(u) => u.clone(),
            None => live::find_upstream(&live, &path, &scene.service.project, &names)
                .map_err(|f| f.message)?,
        };
        let file = rollout_nginx::ConfFile::parse(&path, live).map_err(|e| e.to_string())?;
        let servers = file
            .upstream(&upstream)
            .map_err(|e| e.to_string())?
            .server_set();
        Ok::<_, String>((upstream, servers))
    };
    match read.await {
        Err(why) => (
            Some(json!({ "service": proxy, "note": format!("weights not read: {why}") })),
            traffic,
        ),
        Ok((upstream, servers)) => {
            let mut list = Vec::new();
            let mut total = 0u64;
            let mut by_image: BTreeMap<String, u64> = BTreeMap::new();
            for s in servers.iter().filter(|s| !s.is_down() && !s.is_backup()) {
                let host = s.address.host().unwrap_or_default().to_string();
                // A server is an instance (its container name) or a
                // service's name (all of that service's instances).
                let revision = instances
                    .iter()
                    .find(|i| i.host == host)
                    .or_else(|| instances.iter().find(|i| i.service.service == host))
                    .map(|i| i.revision.clone());
                let image = revision.as_ref().map(|r| {
                    described
                        .get(r)
                        .map_or_else(|| r.clone(), |d| d.image.clone())
                });
                total += u64::from(s.weight());
                *by_image
                    .entry(image.unwrap_or_else(|| host.clone()))
                    .or_default() += u64::from(s.weight());
                list.push(ServerView {
                    server: s.address.to_string(),
                    weight: s.weight(),
                    revision,
                });
            }
            for (image, w) in by_image {
                let share = if total == 0 {
                    0.0
                } else {
                    (w as f64 * 1000.0 / total as f64).round() / 10.0
                };
                traffic.insert(image, share);
            }
            (
                Some(json!({ "service": proxy, "upstream": upstream, "servers": list })),
                traffic,
            )
        }
    }
}

/// The rollout under way or paused, as the journal and the lock say.
fn rollout_view(r: &JournalRecord, holder: Option<&rollout_docker::lock::HeldLock>) -> Value {
    let process = match holder {
        Some(h) => match rollout_docker::lock::judge(&h.holder, &rollout_strategies::lock_holder())
        {
            Liveness::Alive => json!({ "state": "running", "holder": h.holder, "since": h.since }),
            Liveness::Dead => json!({ "state": "gone", "holder": h.holder, "since": h.since }),
            Liveness::Unknown => {
                json!({ "state": "unknown", "holder": h.holder, "since": h.since })
            }
        },
        None => json!({ "state": "none" }),
    };
    json!({
        "rollout_id": r.rollout_id,
        "strategy": r.strategy,
        "from": r.from,
        "to": r.to,
        "phase": r.phase,
        "canary_step": r.state.get("step").and_then(Value::as_u64).map(|s| s + 1),
        "verdict": r.state.get("verdict"),
        // Held by `docker rollout pause`: by, since (seconds), at.
        "paused": r.state.get(rollout_strategies::PAUSED),
        "step": r.step,
        "process": process,
    })
}

fn revision_words(r: &Value) -> String {
    let image = r["image"].as_str().unwrap_or("?");
    let id: String = r["id"].as_str().unwrap_or("?").chars().take(12).collect();
    format!("{image} ({id})")
}

/// `status` as text, on stdout.
fn render(s: &Status) -> String {
    let mut o = format!("service {}\n", s.service);
    if s.instances.is_empty() {
        o.push_str("  no containers\n");
    }
    for i in &s.instances {
        let image_id = i
            .image_id
            .as_deref()
            .map(|d| {
                d.trim_start_matches("sha256:")
                    .chars()
                    .take(12)
                    .collect::<String>()
            })
            .unwrap_or_else(|| "?".into());
        o.push_str(&format!(
            "  {:<24} revision {:<12} image {} id {}  {} {}\n",
            i.host,
            i.revision.chars().take(12).collect::<String>(),
            i.image.as_deref().unwrap_or("?"),
            image_id,
            i.state.as_str().unwrap_or("?"),
            i.health.as_str().unwrap_or("?"),
        ));
    }
    match &s.proxy {
        None => o.push_str("proxy: none\n"),
        Some(p) => {
            if let Some(note) = p["note"].as_str() {
                o.push_str(&format!(
                    "proxy {}: {note}\n",
                    p["service"].as_str().unwrap_or("?")
                ));
            } else {
                let servers: Vec<String> = p["servers"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|sv| {
                        format!(
                            "{} weight {}",
                            sv["server"].as_str().unwrap_or("?"),
                            sv["weight"]
                        )
                    })
                    .collect();
                o.push_str(&format!(
                    "proxy {}, upstream {}: {}\n",
                    p["service"].as_str().unwrap_or("?"),
                    p["upstream"].as_str().unwrap_or("?"),
                    servers.join(", ")
                ));
                let shares: Vec<String> =
                    s.traffic.iter().map(|(k, v)| format!("{k} {v}%")).collect();
                o.push_str(&format!("traffic: {}\n", shares.join(", ")));
            }
        }
    }
    match &s.rollout {
        None => o.push_str("rollout: none under way\n"),
        Some(r) => {
            let from = if r["from"].is_null() {
                "nothing".to_string()
            } else {
                revision_words(&r["from"])
            };
            o.push_str(&format!(
                "rollout: {} from {} to {}, {}",
                r["strategy"].as_str().unwrap_or("?"),
                from,
                revision_words(&r["to"]),
                r["phase"].as_str().unwrap_or("?"),
            ));
            if let Some(step) = r["canary_step"].as_u64() {
                o.push_str(&format!(" at canary step {step}"));
            }
            let held = &r["paused"];
            if held.is_object() {
                o.push_str(&format!(
                    ", paused by the {} at {} since {}",
                    held["by"].as_str().unwrap_or("operator"),
                    held["at"].as_str().unwrap_or("?"),
                    held["since"].as_u64().map_or("?".to_string(), when)
                ));
            }
            let process = &r["process"];
            o.push_str(&match process["state"].as_str() {
                Some("running") if held.is_object() => format!(
                    "; run by {} since {}: `docker rollout resume {}` lets it go on\n",
                    process["holder"].as_str().unwrap_or("?"),
                    process["since"].as_str().unwrap_or("?"),
                    s.service.rsplit('/').next().unwrap_or_default(),
                ),
                Some("running") => format!(
                    "; run by {} since {}\n",
                    process["holder"].as_str().unwrap_or("?"),
                    process["since"].as_str().unwrap_or("?")
                ),
                Some("gone") => "; its process is gone: the next `docker rollout` finishes it\n".into(),
                Some("unknown") => format!(
                    "; held by {} (cannot tell from here whether it runs)\n",
                    process["holder"].as_str().unwrap_or("?")
                ),
                _ if r["phase"] == "paused" => {
                    "; no process: `docker rollout` promotes it, `docker rollout abort` rolls it back\n".into()
                }
                _ => "; no process: the next `docker rollout` finishes it\n".into(),
            });
            if let Some(step) = r["step"].as_object() {
                o.push_str(&format!("  last step: {}\n", Value::Object(step.clone())));
            }
            let v = &r["verdict"];
            if !v.is_null() {
                let reason = v["judgement"]["reason"].as_str().unwrap_or("");
                o.push_str(&format!(
                    "  last verdict: {} at step {} ({}%){}{}\n",
                    v["judgement"]["verdict"].as_str().unwrap_or("?"),
                    v["step"],
                    v["percent"],
                    if reason.is_empty() { "" } else { ": " },
                    reason
                ));
            }
        }
    }
    if let Some(last) = &s.last {
        o.push_str(&format!("last rollout: {}\n", history_line(last)));
    }
    o
}

fn outcome_words(o: &Outcome) -> String {
    let v = json!(o);
    let kind = v["outcome"].as_str().unwrap_or("?").to_string();
    match v["detail"].as_str() {
        Some(d) => format!("{kind}: {}", d.lines().next().unwrap_or_default()),
        None => kind,
    }
}

/// An RFC 3339 UTC time of seconds since the epoch.
fn when(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Howard Hinnant's days-to-civil.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

pub(crate) fn history_line(e: &HistoryEntry) -> String {
    let rev = |r: &Option<rollout_core::Revision>| {
        r.as_ref().map_or("nothing".to_string(), |r| {
            format!(
                "{} ({})",
                r.image,
                r.id.chars().take(12).collect::<String>()
            )
        })
    };
    format!(
        "{} {}{} {}s from {} to {}: {}; {} traffic changes, {} launched, {} removed; exit {}",
        when(e.started),
        e.strategy,
        if e.undo { " undo" } else { "" },
        e.finished.saturating_sub(e.started),
        rev(&e.from),
        rev(&e.to),
        outcome_words(&e.outcome),
        e.steps,
        e.launched,
        e.removed,
        e.exit_code
    )
}

async fn history_verb(req: &VerbRequest, scene: &Scene, limit: usize) -> Result<i32, Fail> {
    let entries = history::list(&scene.engine, &scene.service)
        .await
        .map_err(Fail::from)?;
    let mut out = std::io::stdout();
    match req.rollout.output {
        OutputFormat::Json => {
            for e in entries.iter().take(limit) {
                let _ = writeln!(out, "{}", serde_json::to_string(e).unwrap_or_default());
            }
        }
        OutputFormat::Text => {
            if entries.is_empty() {
                let _ = writeln!(
                    std::io::stderr(),
                    "no rollout of {} is recorded (the last {} are kept)",
                    scene.service,
                    history::KEEP
                );
            }
            for e in entries.iter().take(limit) {
                let _ = writeln!(out, "{}", history_line(e));
            }
        }
    }
    Ok(exit::SUCCESS)
}

/// Records a finished rollout with the engine; a failure is a warning (the
/// rollout itself is over).
pub async fn record(engine: &Engine, entry: HistoryEntry) {
    if let Err(e) = history::append(engine, &entry).await {
        let _ = writeln!(
            std::io::stderr(),
            "warning: the rollout's history entry was not kept: {e}"
        );
    }
}

/// Seconds since the Unix epoch now.
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Polls the engine (every half second) for a request of `docker rollout
/// abort|pause|resume|promote` to the rollout of `service`, takes it
/// (removes it) and passes it on: `abort` as an interrupt (and stops
/// listening), the others as the strategy's steering. A request it does not
/// know (from a newer version) is taken and said.
pub fn listen(
    engine: Engine,
    service: ServiceRef,
    tx: tokio::sync::mpsc::UnboundedSender<crate::drive::Interrupt>,
    steer: rollout_core::SteerHandle,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_millis(500)).await;
            let Ok(Some(ask)) = history::pending(&engine, &service).await else {
                continue;
            };
            let _ = history::take_request(&engine, &service).await;
            match crate::steer::Ask::parse(&ask) {
                Some(crate::steer::Ask::Abort) => {
                    let _ = tx.send(crate::drive::Interrupt::Requested);
                    return;
                }
                Some(crate::steer::Ask::Pause) => steer.pause(),
                Some(crate::steer::Ask::Resume) => steer.resume(),
                Some(crate::steer::Ask::Promote { full }) => steer.promote(full),
                None => {
                    let _ = writeln!(
                        std::io::stderr(),
                        "warning: an unknown request to the rollout of {service} was ignored: {ask:?}"
                    );
                }
            }
        }
    })
}

/// What `abort` found to do.
pub enum AbortPlan {
    /// A running rollout was told and has finished: its exit code.
    Told(i32),
    /// No process runs: the journal now says rolling back; the rollout path
    /// finishes it.
    RollBack,
}

/// How long `abort` waits, once the rollout let its lock go, for the history
/// entry that says how it ended (written just after, or after the
/// migrations' after phase), beyond the time its process is seen alive.
const ENTRY_WAIT: Duration = Duration::from_secs(10);

/// The newest history entry of `service` after the one numbered `before`
/// (the run's own: runs of one service hold its lock in turn), waiting for
/// it while the run's process `holder` is seen alive (up to `timeout`), and
/// [`ENTRY_WAIT`] more.
async fn ended_entry(
    engine: &Engine,
    service: &ServiceRef,
    before: u64,
    holder: &str,
    timeout: Duration,
) -> Result<Option<HistoryEntry>, Fail> {
    let start = tokio::time::Instant::now();
    let here = rollout_strategies::lock_holder();
    let mut last_alive = start;
    loop {
        if let Some(e) = history::since(engine, service, before)
            .await
            .map_err(Fail::from)?
        {
            return Ok(Some(e));
        }
        if rollout_docker::lock::judge(holder, &here) == Liveness::Alive {
            last_alive = tokio::time::Instant::now();
        }
        if last_alive.elapsed() >= ENTRY_WAIT || start.elapsed() >= timeout + ENTRY_WAIT {
            return Ok(None);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// `docker rollout abort`: nothing to abort is bad input (exit 2); a
/// rollout running elsewhere is asked to roll back and waited for; one
/// paused or left by a crash is marked rolling back for the caller to run.
pub async fn abort(req: &VerbRequest, timeout: Duration) -> Result<AbortPlan, Fail> {
    let scene = scene(req).await?;
    let journal = DockerJournal::new(scene.engine.clone());
    let service = &scene.service;
    // A run appends its history entry after it lets the lock go: the entry
    // that tells how the run asked to abort ended is the first after this
    // one (read before the lock, which the run may let go at any moment).
    let before = history::newest(&scene.engine, service)
        .await
        .map_err(Fail::from)?;
    let Some(mut record) = journal.load(service).await? else {
        return Err(Fail::bad_input(format!(
            "nothing to abort: no rollout of {service} is under way or paused\nhint: `docker rollout history {}` shows what ran; to go back after a finished rollout, name the previous image in the Compose file and run `docker rollout` again",
            service.service
        )));
    };
    let mut err = std::io::stderr();
    if let Some(held) = journal.holder(service).await? {
        let here = rollout_strategies::lock_holder();
        if rollout_docker::lock::judge(&held.holder, &here) != Liveness::Dead {
            crate::steer::send(&scene.engine, service, crate::steer::Ask::Abort).await?;
            let _ = writeln!(
                err,
                "asked the rollout of {service} run by {} to roll back; waiting up to {}s",
                held.holder,
                timeout.as_secs()
            );
            let start = tokio::time::Instant::now();
            while journal.holder(service).await?.is_some() {
                if start.elapsed() >= timeout {
                    let _ = history::take_request(&scene.engine, service).await;
                    return Err(Fail {
                        code: exit::BUSY,
                        message: format!(
                            "the rollout of {service} still runs after {}s: the request is withdrawn\nhint: interrupt it where it runs (Ctrl-C rolls it back)",
                            timeout.as_secs()
                        ),
                    });
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            let _ = history::take_request(&scene.engine, service).await;
            let last = ended_entry(&scene.engine, service, before, &held.holder, timeout).await?;
            let code = match &last {
                Some(e)
                    if matches!(
                        e.outcome,
                        Outcome::Interrupted(true) | Outcome::RolledBack(_)
                    ) =>
                {
                    let _ = writeln!(err, "aborted: {}", history_line(e));
                    exit::SUCCESS
                }
                Some(e) => {
                    let _ = writeln!(err, "the rollout ended otherwise: {}", history_line(e));
                    e.exit_code
                }
                None => {
                    let _ = writeln!(
                        err,
                        "the rollout of {service} let its lock go but wrote no history entry within {}s of its end: it may have been killed\nhint: `docker rollout history {}` and `docker rollout status {}` tell where it stands",
                        ENTRY_WAIT.as_secs(),
                        service.service,
                        service.service
                    );
                    exit::UNEXPECTED
                }
            };
            return Ok(AbortPlan::Told(code));
        }
    }
    // No process: mark the record rolling back under the lock; the rollout
    // path finishes the rollback as after a crash.
    let holder = rollout_strategies::lock_holder();
    journal.lock(service, &holder).await?;
    record.phase = Phase::RollingBack;
    let saved = journal.save(&record).await;
    journal.flush().await;
    journal.unlock(service).await?;
    saved?;
    let _ = writeln!(
        err,
        "rolling {service} back to {}",
        record
            .from
            .as_ref()
            .map_or("its old revision".to_string(), |r| r.image.clone())
    );
    Ok(AbortPlan::RollBack)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_read_as_utc() {
        assert_eq!(when(0), "1970-01-01T00:00:00Z");
        assert_eq!(when(1_796_400_000), "2026-12-04T16:00:00Z");
        assert_eq!(when(951_782_400), "2000-02-29T00:00:00Z");
    }

    #[test]
    fn a_history_line_says_when_from_to_outcome_and_exit() {
        let e = HistoryEntry {
            service: ServiceRef::new("shop", "app"),
            strategy: "canary".into(),
            started: 0,
            finished: 12,
            from: Some(rollout_core::Revision::new("aaaa", "app:v1")),
            to: Some(rollout_core::Revision::new("bbbb", "app:v2")),
            outcome: Outcome::RolledBack("analysis failed at 10%: error rate 20%\nmore".into()),
            steps: 3,
            launched: 1,
            removed: 1,
            exit_code: 3,
            undo: false,
        };
        let line = history_line(&e);
        assert_eq!(line, "1970-01-01T00:00:00Z canary 12s from app:v1 (aaaa) to app:v2 (bbbb): rolled-back: analysis failed at 10%: error rate 20%; 3 traffic changes, 1 launched, 1 removed; exit 3");
    }
}
