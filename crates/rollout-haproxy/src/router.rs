//! The HAProxy traffic router: server slots changed live through the runtime
//! API, each change read back, and drains measured per server.
//!
//! # One change, step by step
//!
//! [`apply`](HaproxyRouter::apply) reads the backend's slots (`show servers
//! state`), and plans before it sends anything:
//!
//! - every address of a target to set goes to a slot: the active slot that
//!   already has it (a new weight when it differs), else a draining or
//!   free slot that still has it (made ready again: a switch-back costs two
//!   commands), else a free slot (`set server B/S addr IP port P`, `set
//!   weight`, `set server B/S state ready`);
//! - every active slot whose address belongs to a target to remove is
//!   drained (`state drain`: it keeps its sessions and takes no new ones).
//!
//! A slot is free when it is in maintenance, or draining with no session
//! left. A plan that needs more free slots than there are is refused with
//! [`HaproxyError::NoFreeSlot`] before any command. Commands then go in the
//! order that never leaves the backend with fewer servers than it needs:
//! additions and weights first, drains last. A refused command, or a read
//! back that does not show what the plan wanted, undoes every slot touched
//! (address, weight and state as they were), so that on error nothing
//! changed.
//!
//! No command reloads HAProxy, so its connections (client keep-alive
//! included) are never closed by a change.
//!
//! # Drain
//!
//! [`drain`](HaproxyRouter::drain) polls `show stat` until every slot the
//! change drained has no current session (`scur` 0), bounded by the
//! timeout. A slot given to another target in the meantime is no longer
//! waited for. A ticket this router did not issue (a resumed run) waits for
//! the draining slots whose address belongs to the removed targets.
//!
//! A drained slot takes no new session unless persistence sends it one
//! (`cookie`, `stick`, `use-server`, `force-persist`, `persist` in the
//! backend or in `defaults`). Without persistence, putting it in maintenance
//! (which frees it, and stops HAProxy's checks of an address about to go)
//! is kept off the rollout's critical path: the next
//! [`apply`](HaproxyRouter::apply) does it in the batch it sends anyway,
//! under the proxy lock and only for a slot still draining at the same
//! address, and [`settle`](TrafficRouter::settle), as the run ends, does it
//! for what no later change took (a run cut before either leaves the slot
//! draining with no session, which a later change counts as free). With
//! persistence, the drain does it before it returns, so that no sticky
//! session reaches an instance about to be stopped.
//!
//! # Limits
//!
//! - One HAProxy process per router (no replicas yet).
//! - Servers of the backend other than its `server-template` slots are left
//!   alone and are not routes.
//! - Weights go up to 256, HAProxy's largest.

use crate::channel::{AtRest, RuntimeChannel};
use crate::command::{AdminState, Command, Name, Weight};
use crate::config::HaproxyConfig;
use crate::error::HaproxyError;
use crate::lock::RuntimeLock;
use crate::resolve::Resolve;
use crate::state::{parse_servers_state, parse_stat_sessions, Mode, ServerState};
use async_trait::async_trait;
use rollout_core::error::RouterError;
use rollout_core::router::{DrainReport, DrainTicket, Route, RouteChange, Target, TrafficRouter};
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Mutex;

/// How often a drain reads the sessions.
const POLL: Duration = Duration::from_millis(50);

/// A traffic router for one backend of one HAProxy.
pub struct HaproxyRouter {
    name: String,
    channel: Arc<dyn RuntimeChannel>,
    resolver: Arc<dyn Resolve>,
    backend: Name,
    slots: Vec<Name>,
    services: Vec<String>,
    lock: Option<Arc<dyn RuntimeLock>>,
    /// The backend has persistence: drained slots are freed before the
    /// drain returns.
    persists: bool,
    inner: Mutex<Inner>,
    /// The last answer to `show servers state`, and when it was read: what
    /// [`TrafficRouter::routes`] reads while it is fresh (a view outside the
    /// proxy lock is a snapshot in any case; every change re-reads under it).
    seen: std::sync::Mutex<Option<(Instant, String)>>,
}

/// How long a read of the slots answers `routes` (the views a run takes as
/// it opens come within it, one exec instead of one each).
const FRESH: Duration = Duration::from_millis(500);

#[derive(Default)]
struct Inner {
    generation: u64,
    /// The slots each applied change drained, until its drain.
    draining: BTreeMap<u64, Vec<Drained>>,
    /// The state at rest last kept through the channel.
    kept: Option<AtRest>,
    /// Slots drained to the end, to put in maintenance with the next change.
    to_free: Vec<Drained>,
}

#[derive(Debug, Clone)]
struct Drained {
    server: Name,
    addr: SocketAddr,
}

/// One slot as read, with its name checked.
#[derive(Debug, Clone)]
struct Slot {
    name: Name,
    state: ServerState,
}

impl Slot {
    fn addr(&self) -> SocketAddr {
        SocketAddr::new(self.state.addr, self.state.port)
    }
}

/// What the plan does to a slot.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Step {
    /// Give a free slot an address and weight, and make it ready.
    Assign { addr: SocketAddr, weight: Weight },
    /// Make a slot that has the address ready again, with this weight.
    Revive { weight: Weight },
    /// Change an active slot's weight.
    Reweight { weight: Weight },
    /// Drain an active slot.
    Drain,
    /// Put a slot that drained to the end in maintenance.
    Free,
}

impl HaproxyRouter {
    /// A router for `backend` of the HAProxy named `name`, whose config is
    /// `config` and whose runtime API `channel` reaches. Checks that the
    /// config has an admin stats socket and server slots in the backend,
    /// and that the running HAProxy has those slots.
    pub async fn open(
        name: impl Into<String>,
        config: &HaproxyConfig,
        backend: &str,
        channel: Arc<dyn RuntimeChannel>,
        resolver: Arc<dyn Resolve>,
    ) -> Result<Self, RouterError> {
        let backend = Name::new("backend", backend)?;
        config.admin_socket()?;
        let persists = config.persists(&backend);
        let slots = config
            .slots(&backend)?
            .iter()
            .map(|s| Name::new("server", s))
            .collect::<Result<Vec<_>, _>>()?;
        let router = Self {
            name: name.into(),
            channel,
            resolver,
            backend,
            slots,
            services: Vec::new(),
            lock: None,
            persists,
            inner: Mutex::new(Inner::default()),
            seen: std::sync::Mutex::new(None),
        };
        router.read_slots().await?;
        Ok(router)
    }

    /// The same, reading a service of `services` back as routed by its name
    /// when every address the resolver gives it is in an active slot, all
    /// of one weight (the state at rest the strategies look for); other
    /// active slots read back as instances.
    pub fn with_services(mut self, services: Vec<String>) -> Self {
        self.services = services;
        self
    }

    /// The same, making every change of the running HAProxy's state (each
    /// apply, and each freeing of drained slots) under `lock`.
    pub fn with_lock(mut self, lock: Arc<dyn RuntimeLock>) -> Self {
        self.lock = Some(lock);
        self
    }

    async fn take_lock(&self) -> Result<(), RouterError> {
        match &self.lock {
            Some(lock) => lock.acquire().await,
            None => Ok(()),
        }
    }

    async fn give_back(&self) {
        if let Some(lock) = &self.lock {
            lock.release().await;
        }
    }

    /// The backend's slot names, in the config's order.
    pub fn slots(&self) -> impl Iterator<Item = &str> {
        self.slots.iter().map(Name::as_str)
    }

    async fn send(&self, command: &Command) -> Result<String, HaproxyError> {
        let answer = self.channel.send(command).await?;
        if command.accepts(&answer) {
            Ok(answer)
        } else {
            Err(HaproxyError::Refused {
                command: command.to_string(),
                answer: answer.trim().to_string(),
            })
        }
    }

    /// Sends `batch` in one call of the channel; `Err` at the first answer
    /// HAProxy refused (every command was sent all the same).
    async fn send_batch(&self, batch: Vec<Command>) -> Result<Vec<String>, HaproxyError> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let answers = self.channel.send_all(&batch).await?;
        if answers.len() != batch.len() {
            return Err(HaproxyError::Refused {
                command: batch[answers.len().min(batch.len() - 1)].to_string(),
                answer: format!("{} answers to {} commands", answers.len(), batch.len()),
            });
        }
        match batch.iter().zip(&answers).find(|(c, a)| !c.accepts(a)) {
            Some((command, answer)) => Err(HaproxyError::Refused {
                command: command.to_string(),
                answer: answer.trim().to_string(),
            }),
            None => Ok(answers),
        }
    }

    /// The backend's template slots as HAProxy shows them, in config order.
    async fn read_slots(&self) -> Result<Vec<Slot>, HaproxyError> {
        let answer = self.send(&self.show_state()).await?;
        let slots = self.slots_from(&answer)?;
        self.saw(Some(answer));
        Ok(slots)
    }

    /// Remembers `answer` (to `show servers state`) as the slots now, or
    /// forgets what was seen (`None`: they are changing).
    fn saw(&self, answer: Option<String>) {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        *seen = answer.map(|a| (Instant::now(), a));
    }

    /// The slots as last read when that is fresh, else read now.
    async fn fresh_slots(&self) -> Result<Vec<Slot>, HaproxyError> {
        let seen = {
            let seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
            seen.as_ref()
                .filter(|(at, _)| at.elapsed() < FRESH)
                .map(|(_, a)| a.clone())
        };
        match seen {
            Some(answer) => self.slots_from(&answer),
            None => self.read_slots().await,
        }
    }

    /// `show servers state` of the backend.
    fn show_state(&self) -> Command {
        Command::ShowServersState {
            backend: self.backend.clone(),
        }
    }

    /// The template slots in `answer` (to `show servers state`), in config order.
    fn slots_from(&self, answer: &str) -> Result<Vec<Slot>, HaproxyError> {
        let mut live: BTreeMap<String, ServerState> = parse_servers_state(answer)?
            .into_iter()
            .map(|s| (s.name.clone(), s))
            .collect();
        self.slots
            .iter()
            .map(|name| {
                live.remove(name.as_str())
                    .map(|state| Slot {
                        name: name.clone(),
                        state,
                    })
                    .ok_or_else(|| HaproxyError::SlotMissing {
                        backend: self.backend.to_string(),
                        server: name.to_string(),
                    })
            })
            .collect()
    }

    async fn read_sessions(&self) -> Result<BTreeMap<String, u64>, HaproxyError> {
        let answer = self
            .send(&Command::ShowStat {
                backend: self.backend.clone(),
            })
            .await?;
        parse_stat_sessions(&answer)
    }

    fn set_state(&self, server: &Name, state: AdminState) -> Command {
        Command::SetState {
            backend: self.backend.clone(),
            server: server.clone(),
            state,
        }
    }

    fn set_weight(&self, server: &Name, weight: Weight) -> Command {
        Command::SetWeight {
            backend: self.backend.clone(),
            server: server.clone(),
            weight,
        }
    }

    fn set_addr(&self, server: &Name, addr: SocketAddr) -> Command {
        Command::SetAddr {
            backend: self.backend.clone(),
            server: server.clone(),
            addr: addr.ip(),
            port: addr.port(),
        }
    }

    /// The commands of one step.
    fn commands(&self, server: &Name, step: &Step) -> Vec<Command> {
        match step {
            Step::Assign { addr, weight } => vec![
                self.set_addr(server, *addr),
                self.set_weight(server, *weight),
                self.set_state(server, AdminState::Ready),
            ],
            Step::Revive { weight } => vec![
                self.set_weight(server, *weight),
                self.set_state(server, AdminState::Ready),
            ],
            Step::Reweight { weight } => vec![self.set_weight(server, *weight)],
            Step::Drain => vec![self.set_state(server, AdminState::Drain)],
            Step::Free => vec![self.set_state(server, AdminState::Maint)],
        }
    }

    /// The commands that put a slot back as it was.
    fn undo(&self, slot: &Slot) -> Vec<Command> {
        let state = match slot.state.mode() {
            Mode::Active => AdminState::Ready,
            Mode::Drain => AdminState::Drain,
            Mode::Maint => AdminState::Maint,
        };
        let mut commands = vec![self.set_state(&slot.name, state)];
        if let Ok(weight) = Weight::new(slot.state.weight) {
            commands.push(self.set_weight(&slot.name, weight));
        }
        // A slot that took no traffic gets its address back after it is
        // out again; one that did is given it first.
        let addr = self.set_addr(&slot.name, slot.addr());
        if state == AdminState::Maint {
            commands.push(addr);
        } else {
            commands.insert(0, addr);
        }
        commands
    }

    /// The addresses of a target to remove: what the resolver says it has
    /// now, and any slot address that it identifies as that target (an
    /// instance already gone resolves to nothing).
    async fn addresses_of_removed(&self, target: &Target, slots: &[Slot]) -> BTreeSet<SocketAddr> {
        let mut addrs: BTreeSet<SocketAddr> = self
            .resolver
            .resolve(target)
            .await
            .map(|a| a.into_iter().collect())
            .unwrap_or_default();
        for slot in slots {
            if slot.state.mode() != Mode::Maint
                && self.resolver.identify(slot.addr()).await == *target
            {
                addrs.insert(slot.addr());
            }
        }
        addrs
    }

    /// Plans `change` over `slots`: the step of each slot it touches.
    async fn plan(
        &self,
        change: &RouteChange,
        slots: &[Slot],
        to_free: &[Drained],
    ) -> Result<BTreeMap<usize, Step>, HaproxyError> {
        let mut steps: BTreeMap<usize, Step> = BTreeMap::new();
        let mut wanted: Vec<(SocketAddr, Weight)> = Vec::new();
        for route in &change.set {
            let weight = Weight::new(route.weight)?;
            if weight.get() == 0 {
                return Err(HaproxyError::Config {
                    location: "route change".into(),
                    message: format!(
                        "{} has weight 0: remove the target instead",
                        route.target.host()
                    ),
                });
            }
            for addr in self.resolver.resolve(&route.target).await? {
                // One slot per address: a target named twice, or two
                // targets sharing an instance, keep the last weight.
                wanted.retain(|(a, _)| *a != addr);
                wanted.push((addr, weight));
            }
        }
        let mut unplaced = Vec::new();
        for (addr, weight) in wanted {
            let mode_at = |mode: Mode| {
                slots.iter().enumerate().position(|(i, s)| {
                    s.state.mode() == mode && s.addr() == addr && !steps.contains_key(&i)
                })
            };
            // An active slot with the address is claimed even when its
            // weight stays (dropped from the plan below), so that a remove
            // of the same address does not drain it.
            if let Some(i) = mode_at(Mode::Active) {
                steps.insert(i, Step::Reweight { weight });
            } else if let Some(i) = mode_at(Mode::Drain).or_else(|| mode_at(Mode::Maint)) {
                steps.insert(i, Step::Revive { weight });
            } else {
                unplaced.push((addr, weight));
            }
        }
        for target in &change.remove {
            let addrs = self.addresses_of_removed(target, slots).await;
            for (i, slot) in slots.iter().enumerate() {
                if slot.state.mode() == Mode::Active
                    && addrs.contains(&slot.addr())
                    && !steps.contains_key(&i)
                {
                    steps.insert(i, Step::Drain);
                }
            }
        }
        if !unplaced.is_empty() {
            // Free: in maintenance, or drained to the end by this router
            // (freed with this change unless it takes them).
            let drained: BTreeSet<usize> = Self::still_drained(slots, to_free).collect();
            let mut free: Vec<usize> = (0..slots.len())
                .filter(|i| {
                    !steps.contains_key(i)
                        && (slots[*i].state.mode() == Mode::Maint || drained.contains(i))
                })
                .collect();
            if free.len() < unplaced.len() {
                // Draining slots with no session left are free too.
                let sessions = self.read_sessions().await?;
                free.extend((0..slots.len()).filter(|i| {
                    !steps.contains_key(i)
                        && !drained.contains(i)
                        && slots[*i].state.mode() == Mode::Drain
                        && sessions.get(slots[*i].name.as_str()) == Some(&0)
                }));
            }
            if free.len() < unplaced.len() {
                return Err(HaproxyError::NoFreeSlot {
                    backend: self.backend.to_string(),
                    needed: unplaced.len(),
                    free: free.len(),
                    total: slots.len(),
                });
            }
            for ((addr, weight), i) in unplaced.into_iter().zip(free) {
                steps.insert(i, Step::Assign { addr, weight });
            }
        }
        // Slots an earlier drain emptied go to maintenance with this change,
        // unless it gave them a use again.
        for i in Self::still_drained(slots, to_free) {
            steps.entry(i).or_insert(Step::Free);
        }
        // A claimed slot whose weight stays is no step at all.
        steps.retain(|i, step| match step {
            Step::Reweight { weight } => slots[*i].state.weight != weight.get(),
            _ => true,
        });
        Ok(steps)
    }

    /// The slots of `to_free` still draining at the address they drained at
    /// (one given another address since is someone else's now).
    fn still_drained<'a>(
        slots: &'a [Slot],
        to_free: &'a [Drained],
    ) -> impl Iterator<Item = usize> + 'a {
        (0..slots.len()).filter(move |i| {
            let slot = &slots[*i];
            slot.state.mode() == Mode::Drain
                && to_free
                    .iter()
                    .any(|d| d.server == slot.name && d.addr == slot.addr())
        })
    }

    /// What a slot should show after its step: address, weight, mode.
    fn expected(slot: &Slot, step: &Step) -> (SocketAddr, u32, Mode) {
        match step {
            Step::Assign { addr, weight } => (*addr, weight.get(), Mode::Active),
            Step::Revive { weight } | Step::Reweight { weight } => {
                (slot.addr(), weight.get(), Mode::Active)
            }
            Step::Drain => (slot.addr(), slot.state.weight, Mode::Drain),
            Step::Free => (slot.addr(), slot.state.weight, Mode::Maint),
        }
    }

    /// Sends the steps' commands in two batches (one call of the channel
    /// each: one exec through a relay): the additions (and the frees, which
    /// move no request) first, then, only when HAProxy took every one of
    /// them, the drains and the read-back; a change that drains nothing is
    /// one batch, read-back included. On any failure undoes every slot the
    /// batches touched.
    async fn execute(
        &self,
        slots: &[Slot],
        steps: &BTreeMap<usize, Step>,
    ) -> Result<(), HaproxyError> {
        let additions: Vec<usize> = steps
            .iter()
            .filter(|(_, s)| **s != Step::Drain)
            .map(|(i, _)| *i)
            .collect();
        let read_back = |answers: Result<Vec<String>, HaproxyError>| {
            let state = answers?.pop().unwrap_or_default();
            self.verify(slots, steps, &state)?;
            self.saw(Some(state));
            Ok(())
        };
        let drains: Vec<usize> = steps
            .iter()
            .filter(|(_, s)| **s == Step::Drain)
            .map(|(i, _)| *i)
            .collect();
        let batch = |of: &[usize]| -> Vec<Command> {
            of.iter()
                .flat_map(|i| self.commands(&slots[*i].name, &steps[i]))
                .collect()
        };
        let mut touched = additions.clone();
        self.saw(None);
        let mut first = batch(&additions);
        let outcome = if drains.is_empty() {
            first.push(self.show_state());
            read_back(self.send_batch(first).await)
        } else {
            match self.send_batch(first).await {
                Ok(_) => {
                    touched.extend(&drains);
                    let mut last = batch(&drains);
                    last.push(self.show_state());
                    read_back(self.send_batch(last).await)
                }
                Err(e) => Err(e),
            }
        };
        let Err(cause) = outcome else {
            return Ok(());
        };
        let mut torn = Vec::new();
        for i in touched.iter().rev() {
            for command in self.undo(&slots[*i]) {
                if self.send(&command).await.is_err() {
                    torn.push(format!("{}/{}", self.backend, slots[*i].name));
                    break;
                }
            }
        }
        if torn.is_empty() {
            Err(cause)
        } else {
            Err(HaproxyError::Torn {
                cause: Box::new(cause),
                backend: self.backend.to_string(),
                servers: torn.join(", "),
            })
        }
    }

    /// The slots in `state` (the answer to `show servers state` sent after
    /// the steps) show what the steps asked for.
    fn verify(
        &self,
        slots: &[Slot],
        steps: &BTreeMap<usize, Step>,
        state: &str,
    ) -> Result<(), HaproxyError> {
        let now = self.slots_from(state)?;
        for (i, step) in steps {
            let (addr, weight, mode) = Self::expected(&slots[*i], step);
            let seen = &now[*i];
            if seen.addr() != addr || seen.state.weight != weight || seen.state.mode() != mode {
                return Err(HaproxyError::Verify {
                    server: format!("{}/{}", self.backend, seen.name),
                    expected: format!("{addr} weight {weight} {mode:?}"),
                    found: format!(
                        "{} weight {} {:?}",
                        seen.addr(),
                        seen.state.weight,
                        seen.state.mode()
                    ),
                });
            }
        }
        Ok(())
    }

    /// The state at rest that `steps` leave `slots` in: every route `change`
    /// sets names a service, and every server in service after it is one of
    /// their instances; `None` otherwise (or when a service has none).
    async fn at_rest(
        &self,
        change: &RouteChange,
        slots: &[Slot],
        steps: &BTreeMap<usize, Step>,
    ) -> Option<AtRest> {
        if change.set.is_empty() {
            return None;
        }
        let mut routes = Vec::new();
        let mut theirs = BTreeSet::new();
        for route in &change.set {
            let Target::Service { name } = &route.target else {
                return None;
            };
            Name::new("host", name)
                .ok()
                .filter(|_| !name.contains(':'))?;
            let addrs = self.resolver.resolve(&route.target).await.ok()?;
            let port = addrs.first()?.port();
            theirs.extend(addrs);
            routes.push((name.clone(), port, Weight::new(route.weight).ok()?));
        }
        let mut active = slots.iter().enumerate().filter_map(|(i, slot)| {
            let (addr, _, mode) = match steps.get(&i) {
                Some(step) => Self::expected(slot, step),
                None => (slot.addr(), slot.state.weight, slot.state.mode()),
            };
            (mode == Mode::Active).then_some(addr)
        });
        active.all(|a| theirs.contains(&a)).then(|| AtRest {
            backend: self.backend.clone(),
            slots: self.slots.clone(),
            routes,
        })
    }

    /// The draining slots whose address belongs to one of `removed`.
    async fn draining_for(&self, removed: &[Target]) -> Result<Vec<Drained>, HaproxyError> {
        let slots = self.read_slots().await?;
        let mut out = Vec::new();
        for target in removed {
            let addrs = self.addresses_of_removed(target, &slots).await;
            for slot in &slots {
                if slot.state.mode() == Mode::Drain && addrs.contains(&slot.addr()) {
                    out.push(Drained {
                        server: slot.name.clone(),
                        addr: slot.addr(),
                    });
                }
            }
        }
        Ok(out)
    }

    /// Of `watch`, those still draining at their address, with their sessions.
    async fn still_draining(&self, watch: &[Drained]) -> Result<Vec<(Drained, u64)>, HaproxyError> {
        // One call of the channel (one exec through a relay) per poll.
        let answers = self
            .send_batch(vec![
                self.show_state(),
                Command::ShowStat {
                    backend: self.backend.clone(),
                },
            ])
            .await?;
        let slots = self.slots_from(&answers[0])?;
        let sessions = parse_stat_sessions(&answers[1])?;
        Ok(watch
            .iter()
            .filter(|d| {
                slots.iter().any(|s| {
                    s.name == d.server && s.addr() == d.addr && s.state.mode() == Mode::Drain
                })
            })
            .map(|d| {
                let scur = sessions.get(d.server.as_str()).copied().unwrap_or(0);
                (d.clone(), scur)
            })
            .collect())
    }

    fn describe(&self, d: &Drained) -> String {
        format!(
            "haproxy server {}/{} ({}) in {}",
            self.backend, d.server, d.addr, self.name
        )
    }

    async fn drain_slots(
        &self,
        watch: Vec<Drained>,
        timeout: Duration,
    ) -> Result<DrainReport, RouterError> {
        let start = tokio::time::Instant::now();
        let mut report = DrainReport {
            waited_for: watch.iter().map(|d| self.describe(d)).collect(),
            ..Default::default()
        };
        loop {
            let left = self.still_draining(&watch).await?;
            let busy: Vec<&(Drained, u64)> = left.iter().filter(|(_, n)| *n > 0).collect();
            if busy.is_empty() {
                break;
            }
            if start.elapsed() >= timeout {
                report.timed_out = true;
                report.cut = busy
                    .iter()
                    .map(|(d, n)| format!("{} sessions on {}", n, self.describe(d)))
                    .collect();
                break;
            }
            tokio::time::sleep(POLL.min(timeout.saturating_sub(start.elapsed()))).await;
        }
        // The slots are freed with the next change, or as the run ends; at
        // once when persistence could still send them a session.
        self.inner.lock().await.to_free.extend(watch);
        if self.persists {
            self.free_drained().await?;
        }
        report.elapsed = start.elapsed();
        Ok(report)
    }
}

impl std::fmt::Debug for HaproxyRouter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HaproxyRouter")
            .field("name", &self.name)
            .field("channel", &self.channel.describe())
            .field("backend", &self.backend)
            .field("slots", &self.slots.len())
            .finish()
    }
}

#[async_trait]
impl TrafficRouter for HaproxyRouter {
    async fn routes(&self) -> Result<Vec<Route>, RouterError> {
        let slots = self.fresh_slots().await?;
        let mut routes: Vec<Route> = Vec::new();
        let mut active: BTreeMap<SocketAddr, u32> = slots
            .iter()
            .filter(|s| s.state.mode() == Mode::Active)
            .map(|s| (s.addr(), s.state.weight))
            .collect();
        for name in &self.services {
            let service = Target::Service { name: name.clone() };
            let Ok(addrs) = self.resolver.resolve(&service).await else {
                continue;
            };
            let weights: BTreeSet<Option<u32>> =
                addrs.iter().map(|a| active.get(a).copied()).collect();
            if let (false, [Some(weight)]) = (
                addrs.is_empty(),
                weights.into_iter().collect::<Vec<_>>().as_slice(),
            ) {
                for a in &addrs {
                    active.remove(a);
                }
                routes.push(Route {
                    target: service,
                    weight: *weight,
                });
            }
        }
        for slot in slots
            .iter()
            .filter(|s| s.state.mode() == Mode::Active && active.contains_key(&s.addr()))
        {
            let target = self.resolver.identify(slot.addr()).await;
            if !routes.iter().any(|r| r.target == target) {
                routes.push(Route {
                    target,
                    weight: slot.state.weight,
                });
            }
        }
        Ok(routes)
    }

    async fn apply(&self, change: &RouteChange) -> Result<DrainTicket, RouterError> {
        let mut inner = self.inner.lock().await;
        // Read, plan and change under the proxy lock: another rollout behind
        // this HAProxy plans from the slots as this change left them.
        self.take_lock().await?;
        let Inner { kept, to_free, .. } = &mut *inner;
        let changed = async {
            let slots = self.read_slots().await?;
            let steps = self.plan(change, &slots, to_free).await?;
            self.execute(&slots, &steps).await?;
            // At rest, the state is kept beside the HAProxy for its next
            // start (still under the lock: the last change's state is the
            // one kept). Not keeping it fails nothing: a restart then waits
            // for the next run, as with a channel that cannot keep it.
            if let Some(rest) = self.at_rest(change, &slots, &steps).await {
                if kept.as_ref() != Some(&rest)
                    && matches!(self.channel.keep_rest(&rest).await, Ok(true))
                {
                    *kept = Some(rest);
                }
            }
            Ok::<_, RouterError>((slots, steps))
        }
        .await;
        self.give_back().await;
        let (slots, steps) = changed?;
        // Freed now, or given another use.
        inner.to_free.clear();
        inner.generation += 1;
        let generation = inner.generation;
        let drained = steps
            .iter()
            .filter(|(_, s)| **s == Step::Drain)
            .map(|(i, _)| Drained {
                server: slots[*i].name.clone(),
                addr: slots[*i].addr(),
            })
            .collect();
        inner.draining.insert(generation, drained);
        Ok(DrainTicket {
            generation,
            removed: change.remove.clone(),
        })
    }

    async fn drain(
        &self,
        ticket: &DrainTicket,
        timeout: Duration,
    ) -> Result<DrainReport, RouterError> {
        let known = {
            let mut inner = self.inner.lock().await;
            inner.draining.remove(&ticket.generation)
        };
        let watch = match known {
            Some(watch) if ticket.generation != 0 => watch,
            _ => self.draining_for(&ticket.removed).await?,
        };
        Ok(self.drain_slots(watch, timeout).await?)
    }

    async fn settle(&self) -> Result<(), RouterError> {
        let freed = self.free_drained().await;
        self.channel.close().await;
        freed
    }
}

impl HaproxyRouter {
    /// Puts the slots drained to the end in maintenance, under the proxy
    /// lock, as every change: still draining at the same address means
    /// still ours.
    async fn free_drained(&self) -> Result<(), RouterError> {
        let mut inner = self.inner.lock().await;
        if inner.to_free.is_empty() {
            return Ok(());
        }
        self.take_lock().await?;
        let freed = async {
            let slots = self.read_slots().await?;
            let maint: Vec<Command> = Self::still_drained(&slots, &inner.to_free)
                .map(|i| self.set_state(&slots[i].name, AdminState::Maint))
                .collect();
            self.saw(None);
            self.send_batch(maint).await?;
            Ok::<_, RouterError>(())
        }
        .await;
        self.give_back().await;
        freed?;
        inner.to_free.clear();
        Ok(())
    }
}
