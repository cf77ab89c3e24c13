//! The simulated engine and proxy: [`MockCluster`].

use crate::timeline::{Change, Entry, RevCounts, Timeline};
use async_trait::async_trait;
use rollout_core::backend::{Diagnostics, Failure};
use rollout_core::config::Timeouts;
use rollout_core::router::{DrainReport, DrainTicket};
use rollout_core::{
    Backend, BackendError, Health, Instance, InstanceId, InstanceState, Revision, Route,
    RouteChange, RouterError, ServiceRef, Target, TrafficRouter,
};
use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::time::Instant;

/// Faults injected into every instance of one revision (or only the first
/// few launched, see [`Faults::only_first`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Faults {
    /// How long after launch the health check passes (a slow start is a
    /// long one). Default 2 s.
    pub start_delay: Duration,
    /// The launch itself fails; no instance is left behind.
    pub launch_fails: bool,
    /// The health check fails at `start_delay` instead of passing; the
    /// process keeps running, unhealthy.
    pub never_healthy: bool,
    /// The process exits this long after launch.
    pub crash_after: Option<Duration>,
    /// The health check turns failing this long after it first passed (an
    /// instance that dies during the monitor window).
    pub unhealthy_after: Option<Duration>,
    /// Share of requests that fail, 0.0 to 1.0, as an analysis would measure
    /// it while the revision gets traffic. Applies to every instance.
    pub error_rate: f64,
    /// Apply the instance faults above (the start delay included) only to
    /// the first `n` instances of the revision launched; later ones are
    /// healthy after the default 2 s.
    pub only_first: Option<usize>,
}

impl Default for Faults {
    fn default() -> Self {
        Self {
            start_delay: Duration::from_secs(2),
            launch_fails: false,
            never_healthy: false,
            crash_after: None,
            unhealthy_after: None,
            error_rate: 0.0,
            only_first: None,
        }
    }
}

impl Faults {
    /// No fault: healthy 2 s after launch.
    pub fn healthy() -> Self {
        Self::default()
    }
    /// The health check never passes.
    pub fn never_healthy() -> Self {
        Self {
            never_healthy: true,
            ..Self::default()
        }
    }
    /// Healthy only after `d`.
    pub fn slow_start(d: Duration) -> Self {
        Self {
            start_delay: d,
            ..Self::default()
        }
    }
    /// The process exits `d` after launch.
    pub fn crash_after(d: Duration) -> Self {
        Self {
            crash_after: Some(d),
            ..Self::default()
        }
    }
    /// Turns unhealthy `d` after first passing its health check.
    pub fn unhealthy_after(d: Duration) -> Self {
        Self {
            unhealthy_after: Some(d),
            ..Self::default()
        }
    }
    /// Cannot be launched at all.
    pub fn launch_fails() -> Self {
        Self {
            launch_fails: true,
            ..Self::default()
        }
    }
    /// Healthy, but `rate` of its requests fail.
    pub fn error_rate(rate: f64) -> Self {
        Self {
            error_rate: rate,
            ..Self::default()
        }
    }
    /// Only the first `n` instances launched get the instance faults.
    pub fn only_first(mut self, n: usize) -> Self {
        self.only_first = Some(n);
        self
    }
}

/// The simulated requests in flight to routed instances.
///
/// A routed instance always has requests in flight. When it leaves the
/// routes, the last of them finishes `short` later, or `long` later for one
/// instance in `long_every` (a slow download, a long POST): a drain must wait
/// that long, and a stop before then cuts requests, which the timeline
/// counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestModel {
    /// How long the last short request runs after unrouting.
    pub short: Duration,
    /// How long the last long request runs after unrouting.
    pub long: Duration,
    /// One instance in this many carries a long request (0: none).
    pub long_every: usize,
}

impl Default for RequestModel {
    fn default() -> Self {
        Self {
            short: Duration::from_millis(200),
            long: Duration::from_secs(5),
            long_every: 3,
        }
    }
}

/// One instance as a test sees it in a full snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceView {
    /// What the backend reports.
    pub instance: Instance,
    /// Its weight in the routes (direct plus resolved service route), 0 when
    /// unrouted.
    pub weight: u32,
    /// Requests still in flight after it left the routes.
    pub draining: bool,
    /// Removed already (kept in snapshots for the record).
    pub removed: bool,
    /// Struck by an injected fault (crashed, unhealthy, never healthy, or
    /// not healthy within the start timeout a strategy waited with).
    pub struck: bool,
}

const EV_HEALTH: u8 = 0;
const EV_CRASH: u8 = 1;
const EV_UNHEALTHY: u8 = 2;
const EV_DRAINED: u8 = 3;

#[derive(Debug)]
struct Inst {
    id: InstanceId,
    host: String,
    svc: usize,
    rev: usize,
    state: InstanceState,
    health: Health,
    launched: Instant,
    /// The health check's verdict is due then (pass, or fail with the fault).
    health_at: Option<Instant>,
    health_fails: bool,
    crash_at: Option<Instant>,
    unhealthy_after: Option<Duration>,
    unhealthy_at: Option<Instant>,
    failure: Option<Failure>,
    direct: Option<u32>,
    covered: Option<u32>,
    drain_until: Option<Instant>,
    long_requests: bool,
    removed: bool,
    timed_out: bool,
}

impl Inst {
    fn ready(&self) -> bool {
        self.state == InstanceState::Running && self.health == Health::Healthy
    }
    fn routed(&self) -> bool {
        self.direct.is_some() || self.covered.is_some()
    }
    fn weight(&self) -> u32 {
        self.direct.unwrap_or(0) + self.covered.unwrap_or(0)
    }
}

#[derive(Debug)]
struct State {
    start: Instant,
    requests: RequestModel,
    record_sets: bool,
    services: Vec<ServiceRef>,
    svc_index: HashMap<ServiceRef, usize>,
    svc_by_name: HashMap<String, usize>,
    svc_members: Vec<Vec<usize>>,
    svc_launched: Vec<usize>,
    revs: Vec<String>,
    rev_index: HashMap<String, usize>,
    faults: Vec<Faults>,
    rev_launched: Vec<usize>,
    counts: Vec<RevCounts>,
    insts: Vec<Inst>,
    svc_routes: BTreeMap<String, u32>,
    covered: Vec<usize>,
    generation: u64,
    heap: BinaryHeap<Reverse<(Instant, u64, usize, u8)>>,
    seq: u64,
    timeline: Timeline,
}

impl State {
    fn rev(&mut self, id: &str) -> usize {
        if let Some(&i) = self.rev_index.get(id) {
            return i;
        }
        let i = self.revs.len();
        self.revs.push(id.to_string());
        self.rev_index.insert(id.to_string(), i);
        self.faults.push(Faults::default());
        self.rev_launched.push(0);
        self.counts.push(RevCounts::default());
        self.timeline.revisions.push(id.to_string());
        i
    }

    fn svc(&mut self, s: &ServiceRef) -> usize {
        if let Some(&i) = self.svc_index.get(s) {
            return i;
        }
        let i = self.services.len();
        self.services.push(s.clone());
        self.svc_index.insert(s.clone(), i);
        self.svc_by_name.insert(s.service.clone(), i);
        self.svc_members.push(Vec::new());
        self.svc_launched.push(0);
        i
    }

    fn find(&self, id: &InstanceId) -> Result<usize, BackendError> {
        let idx =
            id.0.strip_prefix('m')
                .and_then(|n| n.parse::<usize>().ok())
                .filter(|&n| n < self.insts.len() && !self.insts[n].removed)
                .ok_or_else(|| BackendError::NoSuchInstance(id.clone()))?;
        Ok(idx)
    }

    fn schedule(&mut self, at: Instant, idx: usize, kind: u8) {
        self.seq += 1;
        self.heap.push(Reverse((at, self.seq, idx, kind)));
    }

    /// Adds (`sign` 1) or takes away (`sign` -1) an instance's share of the
    /// current counts.
    fn tally(&mut self, idx: usize, sign: i64) {
        let i = &self.insts[idx];
        let (running, ready, routed, draining) = (
            i.state == InstanceState::Running,
            i.ready(),
            i.routed(),
            i.drain_until.is_some(),
        );
        let w = i64::from(i.weight());
        let c = &mut self.counts[i.rev];
        let add = |v: &mut u32, on: bool| {
            if on {
                *v = (i64::from(*v) + sign) as u32;
            }
        };
        add(&mut c.running, running);
        add(&mut c.ready, ready);
        add(&mut c.routed, routed);
        add(&mut c.routed_ready, routed && ready);
        add(&mut c.draining, draining);
        c.weight = (c.weight as i64 + sign * w) as u64;
    }

    /// Changes one instance, keeping the counts and the drain model right.
    fn mutate(&mut self, idx: usize, now: Instant, f: impl FnOnce(&mut Inst)) {
        self.tally(idx, -1);
        let was_routed = self.insts[idx].routed();
        f(&mut self.insts[idx]);
        let requests = self.requests;
        let i = &mut self.insts[idx];
        let routed = i.routed();
        let mut drain_event = None;
        if !was_routed && routed {
            i.drain_until = None;
            if !i.ready() {
                self.counts[i.rev].joined_unready += 1;
            }
        } else if was_routed && !routed && i.state == InstanceState::Running {
            let len = if i.long_requests {
                requests.long
            } else {
                requests.short
            };
            let until = now + len;
            i.drain_until = Some(until);
            drain_event = Some(until);
        }
        if i.state != InstanceState::Running {
            i.drain_until = None;
        }
        self.tally(idx, 1);
        if let Some(until) = drain_event {
            self.schedule(until, idx, EV_DRAINED);
        }
    }

    fn record(&mut self, at: Instant, change: Change) {
        let routed_set = self.record_sets.then(|| {
            self.insts
                .iter()
                .filter(|i| i.routed() && !i.removed)
                .map(|i| (i.id.clone(), i.weight()))
                .collect()
        });
        self.timeline.entries.push(Entry {
            at: at - self.start,
            change,
            counts: self.counts.clone(),
            routed_set,
        });
    }

    /// Plays every scheduled transition due by `now`, each at its own time.
    fn advance(&mut self, now: Instant) {
        while let Some(Reverse((at, _, idx, kind))) = self.heap.peek().copied() {
            if at > now {
                break;
            }
            self.heap.pop();
            let i = &self.insts[idx];
            let id = i.id.clone();
            match kind {
                EV_HEALTH if i.state == InstanceState::Running && i.health == Health::Starting => {
                    if i.health_fails {
                        let rev = i.rev;
                        self.mutate(idx, at, |i| {
                            i.health = Health::Unhealthy;
                            i.health_at = None;
                            i.failure = Some(Failure::Unhealthy(
                                "health check failed (mock fault: never healthy)".into(),
                            ));
                        });
                        self.counts[rev].faults += 1;
                        self.record(at, Change::Unhealthy(id));
                    } else {
                        let later = i.unhealthy_after;
                        self.mutate(idx, at, |i| {
                            i.health = Health::Healthy;
                            i.health_at = None;
                            i.unhealthy_at = later.map(|d| at + d);
                        });
                        if let Some(d) = later {
                            self.schedule(at + d, idx, EV_UNHEALTHY);
                        }
                        self.record(at, Change::Healthy(id));
                    }
                }
                EV_CRASH if i.state == InstanceState::Running => {
                    let rev = i.rev;
                    self.mutate(idx, at, |i| {
                        i.state = InstanceState::Exited;
                        i.crash_at = None;
                        i.failure = Some(Failure::Exited("exit code 1 (mock fault: crash)".into()));
                    });
                    self.counts[rev].faults += 1;
                    self.record(at, Change::Crashed(id));
                }
                EV_UNHEALTHY
                    if i.state == InstanceState::Running && i.health == Health::Healthy =>
                {
                    let rev = i.rev;
                    self.mutate(idx, at, |i| {
                        i.health = Health::Unhealthy;
                        i.unhealthy_at = None;
                        i.failure = Some(Failure::Unhealthy(
                            "health check failed (mock fault: unhealthy later)".into(),
                        ));
                    });
                    self.counts[rev].faults += 1;
                    self.record(at, Change::Unhealthy(id));
                }
                EV_DRAINED if i.drain_until == Some(at) => {
                    self.mutate(idx, at, |i| i.drain_until = None);
                    self.record(at, Change::Drained(id));
                }
                _ => {}
            }
        }
    }

    fn view(&self, idx: usize) -> Instance {
        let i = &self.insts[idx];
        Instance {
            id: i.id.clone(),
            host: i.host.clone(),
            service: self.services[i.svc].clone(),
            revision: self.revs[i.rev].clone(),
            state: i.state,
            health: i.health,
        }
    }

    fn create(&mut self, svc: usize, rev: usize, now: Instant, ready_now: bool) -> usize {
        let idx = self.insts.len();
        self.svc_launched[svc] += 1;
        let n = self.svc_launched[svc];
        let nth = self.rev_launched[rev];
        self.rev_launched[rev] += 1;
        let f = self.faults[rev].clone();
        let faulty = !ready_now && f.only_first.is_none_or(|k| nth < k);
        let s = &self.services[svc];
        let long_every = self.requests.long_every;
        self.insts.push(Inst {
            id: InstanceId(format!("m{idx}")),
            host: format!("{}-{}-{n}", s.project, s.service),
            svc,
            rev,
            state: InstanceState::Running,
            health: if ready_now {
                Health::Healthy
            } else {
                Health::Starting
            },
            launched: now,
            health_at: (!ready_now).then_some(
                now + if faulty {
                    f.start_delay
                } else {
                    Faults::default().start_delay
                },
            ),
            health_fails: faulty && f.never_healthy,
            crash_at: if faulty {
                f.crash_after.map(|d| now + d)
            } else {
                None
            },
            unhealthy_after: if faulty { f.unhealthy_after } else { None },
            unhealthy_at: None,
            failure: None,
            direct: None,
            covered: None,
            drain_until: None,
            long_requests: long_every > 0 && idx % long_every == 0,
            removed: false,
            timed_out: false,
        });
        self.svc_members[svc].push(idx);
        self.tally(idx, 1);
        if let Some(at) = self.insts[idx].health_at {
            self.schedule(at, idx, EV_HEALTH);
        }
        if let Some(at) = self.insts[idx].crash_at {
            self.schedule(at, idx, EV_CRASH);
        }
        idx
    }

    /// Applies a route change atomically: every touched instance goes from
    /// its old routing straight to its new one.
    fn apply(&mut self, change: &RouteChange, now: Instant) -> Result<DrainTicket, RouterError> {
        let mut direct: HashMap<usize, Option<u32>> = HashMap::new();
        let mut svc_routes = self.svc_routes.clone();
        for t in &change.remove {
            match t {
                Target::Instance { id, .. } => {
                    if let Ok(idx) = self.find(id) {
                        direct.insert(idx, None);
                    }
                }
                Target::Service { name } => {
                    svc_routes.remove(name);
                }
            }
        }
        for r in &change.set {
            if r.weight == 0 {
                return Err(RouterError::Invalid {
                    location: "mock upstream".into(),
                    message: format!(
                        "weight 0 for {}: remove the target instead",
                        r.target.host()
                    ),
                });
            }
            match &r.target {
                Target::Instance { id, host } => {
                    let idx = self.find(id).map_err(|_| RouterError::Invalid {
                        location: "mock upstream".into(),
                        message: format!("host not found in upstream \"{host}\""),
                    })?;
                    direct.insert(idx, Some(r.weight));
                }
                Target::Service { name } => {
                    if !self.svc_by_name.contains_key(name) {
                        return Err(RouterError::Config(format!(
                            "host not found in upstream \"{name}\": no such service"
                        )));
                    }
                    svc_routes.insert(name.clone(), r.weight);
                }
            }
        }
        // A reload resolves every service route again, to the instances
        // running at this moment, ready or not.
        let mut covered: HashMap<usize, u32> = HashMap::new();
        for (name, w) in &svc_routes {
            let svc = self.svc_by_name[name];
            for &idx in &self.svc_members[svc] {
                let i = &self.insts[idx];
                if !i.removed && i.state == InstanceState::Running {
                    covered.insert(idx, *w);
                }
            }
        }
        let mut touched: Vec<usize> = direct.keys().copied().collect();
        touched.extend(self.covered.iter().copied());
        touched.extend(covered.keys().copied());
        touched.sort_unstable();
        touched.dedup();
        for idx in touched {
            let d = direct.get(&idx).copied();
            let c = covered.get(&idx).copied();
            self.mutate(idx, now, |i| {
                if let Some(d) = d {
                    i.direct = d;
                }
                i.covered = c;
            });
        }
        self.covered = covered.keys().copied().collect();
        self.svc_routes = svc_routes;
        self.generation += 1;
        self.record(
            now,
            Change::Routed {
                generation: self.generation,
                set: change.set.len(),
                removed: change.remove.len(),
            },
        );
        Ok(DrainTicket {
            generation: self.generation,
            removed: change.remove.clone(),
        })
    }

    fn ticket_instances(&self, ticket: &DrainTicket) -> Vec<usize> {
        let mut out = Vec::new();
        for t in &ticket.removed {
            match t {
                Target::Instance { id, .. } => {
                    if let Ok(idx) = self.find(id) {
                        out.push(idx);
                    }
                }
                Target::Service { name } => {
                    if let Some(&svc) = self.svc_by_name.get(name) {
                        out.extend(self.svc_members[svc].iter().copied());
                    }
                }
            }
        }
        out
    }
}

/// An engine and a proxy in memory, on tokio's clock.
///
/// It implements [`Backend`] and [`TrafficRouter`]; hand the same `Arc` to
/// both fields of a [`RolloutContext`](rollout_core::RolloutContext). All its
/// waits are `tokio::time` sleeps to the next transition it knows is due, so
/// on a paused clock a rollout of ten simulated minutes takes milliseconds.
#[derive(Debug)]
pub struct MockCluster {
    state: Mutex<State>,
}

impl MockCluster {
    /// An empty cluster whose clock starts now.
    pub fn new() -> Arc<Self> {
        Self::with_requests(RequestModel::default())
    }

    /// An empty cluster with a request model of its own.
    pub fn with_requests(requests: RequestModel) -> Arc<Self> {
        let start = Instant::now();
        let mut state = State {
            start,
            requests,
            record_sets: false,
            services: Vec::new(),
            svc_index: HashMap::new(),
            svc_by_name: HashMap::new(),
            svc_members: Vec::new(),
            svc_launched: Vec::new(),
            revs: Vec::new(),
            rev_index: HashMap::new(),
            faults: Vec::new(),
            rev_launched: Vec::new(),
            counts: Vec::new(),
            insts: Vec::new(),
            svc_routes: BTreeMap::new(),
            covered: Vec::new(),
            generation: 0,
            heap: BinaryHeap::new(),
            seq: 0,
            timeline: Timeline::default(),
        };
        state.record(start, Change::Start);
        Arc::new(Self {
            state: Mutex::new(state),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves a test failing anyway; the
        // state is still readable for its report.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn now_locked(&self) -> MutexGuard<'_, State> {
        let mut s = self.lock();
        s.advance(Instant::now());
        s
    }

    /// Sets the faults of every instance of `revision` launched from now on.
    pub fn set_faults(&self, revision: &str, faults: Faults) {
        let mut s = self.lock();
        let r = s.rev(revision);
        s.faults[r] = faults;
    }

    /// Records the full routed set in every entry from now on (costly; for
    /// tests that want to see exactly who was routed).
    pub fn record_sets(&self, on: bool) {
        self.lock().record_sets = on;
    }

    /// Starts `count` healthy instances of `revision` at once and, when
    /// `routed`, routes the service by name, as a project looks at rest.
    pub fn seed(&self, service: &ServiceRef, revision: &str, count: usize, routed: bool) {
        let now = Instant::now();
        let mut s = self.now_locked();
        let svc = s.svc(service);
        let rev = s.rev(revision);
        for _ in 0..count {
            let idx = s.create(svc, rev, now, true);
            let id = s.insts[idx].id.clone();
            s.record(now, Change::Launched(id));
        }
        if routed {
            let change = RouteChange {
                set: vec![Route {
                    target: Target::Service {
                        name: service.service.clone(),
                    },
                    weight: 1,
                }],
                remove: vec![],
            };
            s.apply(&change, now)
                .expect("seeding routes a known service");
        }
    }

    /// Registers a service with no instance, so that routes may name it.
    pub fn add_service(&self, service: &ServiceRef) {
        self.lock().svc(service);
    }

    /// The number of timeline entries so far: a mark to check from.
    pub fn mark(&self) -> usize {
        self.now_locked().timeline.entries.len()
    }

    /// A copy of the timeline (plays due transitions first).
    pub fn timeline(&self) -> Timeline {
        self.now_locked().timeline.clone()
    }

    /// Reads the timeline without copying it.
    pub fn with_timeline<R>(&self, f: impl FnOnce(&Timeline) -> R) -> R {
        f(&self.now_locked().timeline)
    }

    /// Every instance ever created, with its routing (a full set: O(n)).
    pub fn snapshot(&self) -> Vec<InstanceView> {
        let s = self.now_locked();
        (0..s.insts.len())
            .map(|idx| {
                let i = &s.insts[idx];
                InstanceView {
                    instance: s.view(idx),
                    weight: i.weight(),
                    draining: i.drain_until.is_some(),
                    removed: i.removed,
                    struck: i.failure.is_some() || i.timed_out,
                }
            })
            .collect()
    }

    /// The routes now, as the router reports them.
    pub fn route_table(&self) -> Vec<Route> {
        let s = self.now_locked();
        routes_of(&s)
    }

    /// Counts of one revision now.
    pub fn counts(&self, revision: &str) -> RevCounts {
        let s = self.now_locked();
        s.rev_index
            .get(revision)
            .map(|&r| s.counts[r])
            .unwrap_or_default()
    }

    /// The error rate an analysis would measure for `revision` now: its
    /// fault's rate while it gets traffic, `None` while it gets none.
    pub fn observed_error_rate(&self, revision: &str) -> Option<f64> {
        let s = self.now_locked();
        let &r = s.rev_index.get(revision)?;
        (s.counts[r].routed_ready > 0).then(|| s.faults[r].error_rate)
    }

    /// The error rate injected into `revision`, traffic or not.
    pub fn fault_error_rate(&self, revision: &str) -> Option<f64> {
        let s = self.lock();
        s.rev_index.get(revision).map(|&r| s.faults[r].error_rate)
    }

    /// Percent of the routed weight that goes to `revision` now.
    pub fn share(&self, revision: &str) -> f64 {
        let s = self.now_locked();
        let total: u64 = s.counts.iter().map(|c| c.weight).sum();
        match (s.rev_index.get(revision), total) {
            (Some(&r), t) if t > 0 => 100.0 * s.counts[r].weight as f64 / t as f64,
            _ => 0.0,
        }
    }

    /// Time since the cluster was created.
    pub fn elapsed(&self) -> Duration {
        Instant::now() - self.lock().start
    }
}

fn routes_of(s: &State) -> Vec<Route> {
    let mut out: Vec<Route> = s
        .insts
        .iter()
        .filter(|i| !i.removed)
        .filter_map(|i| {
            i.direct.map(|w| Route {
                target: Target::instance(i.id.clone(), i.host.clone()),
                weight: w,
            })
        })
        .collect();
    out.extend(s.svc_routes.iter().map(|(name, w)| Route {
        target: Target::Service { name: name.clone() },
        weight: *w,
    }));
    out
}

fn earliest(times: impl IntoIterator<Item = Option<Instant>>, deadline: Instant) -> Instant {
    times.into_iter().flatten().fold(deadline, Instant::min)
}

#[async_trait]
impl Backend for MockCluster {
    async fn instances(&self, service: &ServiceRef) -> Result<Vec<Instance>, BackendError> {
        let s = self.now_locked();
        let Some(&svc) = s.svc_index.get(service) else {
            return Ok(Vec::new());
        };
        Ok(s.svc_members[svc]
            .iter()
            .filter(|&&i| !s.insts[i].removed)
            .map(|&i| s.view(i))
            .collect())
    }

    async fn launch(
        &self,
        service: &ServiceRef,
        revision: &Revision,
        count: usize,
    ) -> Result<Vec<Instance>, BackendError> {
        let now = Instant::now();
        let mut s = self.now_locked();
        let svc = s.svc(service);
        let rev = s.rev(&revision.id);
        let mut out = Vec::with_capacity(count);
        for _ in 0..count {
            let f = &s.faults[rev];
            let nth = s.rev_launched[rev];
            if f.launch_fails && f.only_first.is_none_or(|k| nth < k) {
                s.rev_launched[rev] += 1;
                s.counts[rev].faults += 1;
                s.record(now, Change::LaunchFailed(revision.id.clone()));
                return Err(BackendError::Launch {
                    service: service.to_string(),
                    reason: format!("mock fault: revision {} cannot start", revision.id),
                });
            }
            let idx = s.create(svc, rev, now, false);
            let id = s.insts[idx].id.clone();
            s.record(now, Change::Launched(id));
            out.push(s.view(idx));
        }
        Ok(out)
    }

    async fn wait_healthy(
        &self,
        instance: &InstanceId,
        timeouts: &Timeouts,
    ) -> Result<Result<(), Failure>, BackendError> {
        loop {
            let next = {
                let mut s = self.now_locked();
                let i = &s.insts[s.find(instance)?];
                if i.ready() {
                    return Ok(Ok(()));
                }
                if let Some(f) = &i.failure {
                    return Ok(Err(f.clone()));
                }
                if i.state != InstanceState::Running {
                    return Ok(Err(Failure::Exited("stopped".into())));
                }
                let deadline = i.launched + timeouts.start;
                if Instant::now() >= deadline {
                    // The slow start was the fault: count it once, as the
                    // other faults are counted when they strike.
                    let (idx, rev) = (s.find(instance)?, i.rev);
                    if !s.insts[idx].timed_out {
                        s.insts[idx].timed_out = true;
                        s.counts[rev].faults += 1;
                    }
                    return Ok(Err(Failure::StartTimeout));
                }
                earliest([i.health_at, i.crash_at], deadline)
            };
            tokio::time::sleep_until(next).await;
        }
    }

    async fn watch_failures(
        &self,
        instances: &[InstanceId],
        within: Duration,
    ) -> Result<Option<(InstanceId, Failure)>, BackendError> {
        let deadline = Instant::now() + within;
        loop {
            let next = {
                let s = self.now_locked();
                let mut next = deadline;
                for id in instances {
                    let Ok(idx) = s.find(id) else { continue };
                    let i = &s.insts[idx];
                    if let Some(f) = &i.failure {
                        return Ok(Some((id.clone(), f.clone())));
                    }
                    next = earliest([i.crash_at, i.unhealthy_at, i.health_at], next);
                }
                if Instant::now() >= deadline {
                    return Ok(None);
                }
                next
            };
            tokio::time::sleep_until(next).await;
        }
    }

    async fn stop(&self, instance: &InstanceId, _grace: Duration) -> Result<(), BackendError> {
        let now = Instant::now();
        let mut s = self.now_locked();
        let idx = s.find(instance)?;
        let (routed, in_flight, rev) = {
            let i = &s.insts[idx];
            (i.routed(), i.drain_until.is_some(), i.rev)
        };
        if routed {
            s.counts[rev].stopped_routed += 1;
        } else if in_flight {
            s.counts[rev].stopped_in_flight += 1;
        }
        s.mutate(idx, now, |i| {
            i.state = InstanceState::Exited;
            i.health_at = None;
            i.crash_at = None;
            i.unhealthy_at = None;
        });
        s.record(now, Change::Stopped(instance.clone()));
        Ok(())
    }

    async fn remove(&self, instance: &InstanceId) -> Result<(), BackendError> {
        let now = Instant::now();
        let mut s = self.now_locked();
        let idx = s.find(instance)?;
        if s.insts[idx].state == InstanceState::Running {
            return Err(BackendError::Other(format!(
                "cannot remove running instance {instance}\nhint: stop it first"
            )));
        }
        s.mutate(idx, now, |i| {
            i.removed = true;
            i.direct = None;
            i.covered = None;
        });
        s.covered.retain(|&c| c != idx);
        s.record(now, Change::Removed(instance.clone()));
        Ok(())
    }

    async fn diagnostics(&self, instance: &InstanceId) -> Result<Diagnostics, BackendError> {
        let s = self.now_locked();
        let idx = s.find(instance)?;
        let i = &s.insts[idx];
        Ok(Diagnostics {
            last_logs: vec![format!(
                "mock {} running revision {}",
                i.host, s.revs[i.rev]
            )],
            health_log: i.failure.iter().map(|f| f.to_string()).collect(),
        })
    }
}

#[async_trait]
impl TrafficRouter for MockCluster {
    async fn routes(&self) -> Result<Vec<Route>, RouterError> {
        Ok(routes_of(&self.now_locked()))
    }

    async fn apply(&self, change: &RouteChange) -> Result<DrainTicket, RouterError> {
        let now = Instant::now();
        self.now_locked().apply(change, now)
    }

    async fn drain(
        &self,
        ticket: &DrainTicket,
        timeout: Duration,
    ) -> Result<DrainReport, RouterError> {
        let began = Instant::now();
        let deadline = began + timeout;
        let mut waited_for: Vec<String> = Vec::new();
        let mut first = true;
        loop {
            let next = {
                let mut s = self.now_locked();
                let idxs = s.ticket_instances(ticket);
                let pending: Vec<usize> = idxs
                    .into_iter()
                    .filter(|&i| s.insts[i].drain_until.is_some() && !s.insts[i].routed())
                    .collect();
                if first {
                    waited_for = pending
                        .iter()
                        .map(|&i| format!("requests in flight to {}", s.insts[i].host))
                        .collect();
                    first = false;
                }
                if pending.is_empty() {
                    return Ok(DrainReport {
                        waited_for,
                        elapsed: Instant::now() - began,
                        timed_out: false,
                        cut: Vec::new(),
                    });
                }
                let now = Instant::now();
                if now >= deadline {
                    let mut cut = Vec::new();
                    for idx in pending {
                        let (rev, id, host) = {
                            let i = &s.insts[idx];
                            (i.rev, i.id.clone(), i.host.clone())
                        };
                        s.counts[rev].drain_cut += 1;
                        s.mutate(idx, now, |i| i.drain_until = None);
                        s.record(now, Change::DrainCut(id));
                        cut.push(format!("requests in flight to {host}"));
                    }
                    return Ok(DrainReport {
                        waited_for,
                        elapsed: now - began,
                        timed_out: true,
                        cut,
                    });
                }
                earliest(pending.iter().map(|&i| s.insts[i].drain_until), deadline)
            };
            tokio::time::sleep_until(next).await;
        }
    }
}
