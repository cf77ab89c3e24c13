//! The steps a swarm rollout ([`crate::standby`], [`crate::colours`]) is made of, below its
//! order: how it reports ([`Tell`]: lines for people, events for programs), route changes with
//! their drain waited for at once or later, and the waits for a service's tasks to serve or
//! settle, or for its update status to move.

use crate::api::{lingering, wanted, SwarmApi, TaskInfo};
use crate::standby::{Found, SwarmFail};
use crate::status::UpdateState;
use rollout_core::event::{Event, EventSink, Outcome};
use rollout_core::exit;
use rollout_core::router::{DrainReport, DrainTicket, RouteChange, Target, TrafficRouter};
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

/// Progress lines, for people.
pub type Say<'a> = &'a (dyn Fn(&str) + Send + Sync);

/// Where a run reports: lines for people, and the same events as a Compose rollout's for
/// programs (`--output json`; instances are the tasks' addresses).
#[derive(Clone, Copy)]
pub struct Tell<'a> {
    /// Progress lines.
    pub say: Say<'a>,
    /// Events.
    pub events: &'a EventSink,
}

impl Tell<'_> {
    pub(crate) fn say(&self, line: &str) {
        (self.say)(line);
    }

    pub(crate) fn event(&self, event: Event) {
        self.events.send(event);
    }

    /// A change applied, as an event.
    pub(crate) fn traffic(&self, ticket: &DrainTicket, change: &RouteChange) {
        self.event(Event::TrafficChanged {
            generation: ticket.generation,
            set: change.set.clone(),
            removed: ticket.removed.clone(),
        });
    }

    /// Its drain waited for, as an event.
    pub(crate) fn drained(&self, ticket: &DrainTicket, report: &DrainReport) {
        self.event(Event::Drained {
            removed: ticket.removed.clone(),
            report: report.clone(),
        });
    }
}

/// Waits until `name` has `count` serving tasks; their addresses on `network`.
pub(crate) async fn wait_serving(
    api: &SwarmApi,
    name: &str,
    count: usize,
    network: &str,
    timeout: Duration,
) -> Result<Vec<String>, SwarmFail> {
    let deadline = Instant::now() + timeout;
    loop {
        let tasks = api.tasks(name).await?;
        let serving: Vec<String> = tasks
            .iter()
            .filter(|t| t.serving())
            .filter_map(|t| t.addresses.get(network).cloned())
            .collect();
        if serving.len() >= count {
            return Ok(serving);
        }
        if Instant::now() > deadline {
            return Err(SwarmFail::unexpected(format!(
                "{name}: {} of {count} task(s) running after {timeout:?} ({})",
                serving.len(),
                states(&tasks)
            )));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

pub(crate) fn states(tasks: &[TaskInfo]) -> String {
    let mut by: BTreeMap<&str, usize> = BTreeMap::new();
    for t in tasks {
        *by.entry(t.state.as_str()).or_default() += 1;
    }
    by.iter()
        .map(|(s, n)| format!("{n} {s}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Applies `change` and says so; its drain is waited for later ([`drain_pending`]): what it
/// took out keeps running until the standby goes. `None` for an empty change.
pub(crate) async fn change_only(
    router: &dyn TrafficRouter,
    change: RouteChange,
    tell: Tell<'_>,
    what: &str,
) -> Result<Option<DrainTicket>, SwarmFail> {
    if change.is_empty() {
        return Ok(None);
    }
    let ticket = router.apply(&change).await?;
    tell.traffic(&ticket, &change);
    tell.say(what);
    Ok(Some(ticket))
}

/// Waits for the drains of the changes [`change_only`] made, in order, all within one
/// `drain_timeout` (a worker still holding a request belongs to every later ticket too: a
/// timeout each would add up).
pub(crate) async fn drain_pending(
    router: &dyn TrafficRouter,
    pending: Vec<DrainTicket>,
    drain_timeout: Duration,
    tell: Tell<'_>,
) -> Result<(), SwarmFail> {
    let started = Instant::now();
    let deadline = started + drain_timeout;
    let mut timed_out = false;
    let count = pending.len();
    for ticket in pending {
        let left = deadline.saturating_duration_since(Instant::now());
        let report = router.drain(&ticket, left).await?;
        timed_out |= report.timed_out;
        tell.drained(&ticket, &report);
    }
    if count > 0 {
        tell.say(&format!(
            "the {count} earlier change(s)' unrouted tasks drained in {:.1}s more{}",
            started.elapsed().as_secs_f64(),
            if timed_out { " (timed out)" } else { "" }
        ));
    }
    Ok(())
}

/// Applies `change` and waits for its drain; says what was waited for.
pub(crate) async fn change_and_drain(
    router: &dyn TrafficRouter,
    change: RouteChange,
    drain_timeout: Duration,
    tell: Tell<'_>,
    what: &str,
) -> Result<(), SwarmFail> {
    let stopping = change.remove.clone();
    change_and_drain_of(router, change, &stopping, drain_timeout, tell, what).await
}

/// [`change_and_drain`], the drain waiting only for the removed targets in `stopping` (what
/// the run stops next). A target the change removes but that goes on serving behind a name
/// (a new task the service's name resolves to at rest) needs no drain: nothing stops it, and
/// the requests the old workers still hold to it end on their own.
pub(crate) async fn change_and_drain_of(
    router: &dyn TrafficRouter,
    change: RouteChange,
    stopping: &[Target],
    drain_timeout: Duration,
    tell: Tell<'_>,
    what: &str,
) -> Result<(), SwarmFail> {
    if change.is_empty() {
        return Ok(());
    }
    let mut ticket = router.apply(&change).await?;
    tell.traffic(&ticket, &change);
    ticket.removed.retain(|t| stopping.contains(t));
    let report = router.drain(&ticket, drain_timeout).await?;
    tell.drained(&ticket, &report);
    tell.say(&format!(
        "{what}: drained in {:.1}s{}",
        report.elapsed.as_secs_f64(),
        if report.timed_out {
            format!(" (timed out; cut: {})", report.cut.join(", "))
        } else {
            String::new()
        }
    ));
    Ok(())
}

/// How a run's result reads as a rollout's outcome (the events' last).
pub(crate) fn outcome_of(ran: &Result<i32, SwarmFail>, found: &Found) -> Outcome {
    let serving = || format!("the standby {} serves", found.standby_name);
    match ran {
        Ok(exit::SUCCESS) => Outcome::Completed,
        Ok(exit::ROLLED_BACK) => Outcome::RolledBack(format!(
            "Swarm rolled {} back to its previous spec",
            found.home_name
        )),
        Ok(exit::PAUSED) => Outcome::Paused(format!("Swarm paused the update; {}", serving())),
        Ok(exit::ROLLBACK_FAILED) => {
            Outcome::RollbackFailed(format!("Swarm's rollback stopped; {}", serving()))
        }
        Ok(code) => Outcome::Failed(format!("exit {code}")),
        Err(e) if e.code == exit::BUSY => Outcome::Busy(e.message.clone()),
        Err(e) => Outcome::Failed(e.message.clone()),
    }
}

/// Waits until `name` (a service of `replicas` tasks) can be routed by the service names
/// `names` again: `replicas` serving tasks, and either no other task still running (the tasks
/// an update replaced have stopped) or every replica of the proxy resolving each of `names` to
/// exactly the serving tasks. A task Swarm replaces leaves the service's DNS about two seconds
/// before its agent stops it (so that the other nodes hear of it first): once no proxy
/// resolves the name to it, nginx's reload at rest cannot pick it, and the run need not wait
/// for it to stop. With no `names`, or a router that cannot ask its proxy, the wait is for the
/// replaced tasks to stop: after a node comes back, a slot can also hold two running tasks for
/// a while, its own and the replacement, until Swarm shuts one down.
pub(crate) async fn wait_routable(
    api: &SwarmApi,
    router: &dyn TrafficRouter,
    tell: Tell<'_>,
    name: &str,
    names: &[String],
    replicas: usize,
    timeout: Duration,
) -> Result<(), SwarmFail> {
    let deadline = Instant::now() + timeout;
    // Whether the proxy can say; set off for good when it cannot.
    let mut ask = !names.is_empty();
    loop {
        let all = api.all_tasks(name).await?;
        let (wanted, lingering) = (wanted(&all), lingering(&all));
        let serving: Vec<&TaskInfo> = wanted.iter().filter(|t| t.serving()).collect();
        if serving.len() == replicas {
            if lingering == 0 {
                return Ok(());
            }
            let mut resolved = ask;
            for n in names {
                if !ask || !resolved {
                    break;
                }
                match router.resolve(n).await {
                    Ok(Some(answers)) => resolved = resolves_to_only(&answers, &serving),
                    // A shortcut only: without an answer the wait goes on as before.
                    Ok(None) | Err(_) => ask = false,
                }
            }
            if resolved && ask {
                tell.say(&format!(
                    "{} resolve(s) to the {replicas} serving task(s) only in every proxy: back at rest without waiting for {lingering} replaced task(s) to stop",
                    names.join(", ")
                ));
                return Ok(());
            }
        }
        if Instant::now() > deadline {
            return Err(SwarmFail::unexpected(format!(
                "{name}: not settled after {timeout:?} ({}; {lingering} replaced task(s) still running)",
                states(&wanted)
            )));
        }
        // The change back at rest waits on this: looked at closely (two requests a look).
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Whether every answer (one per proxy replica) holds an address of each of `serving` and no
/// other address.
pub(crate) fn resolves_to_only(
    answers: &[BTreeSet<std::net::IpAddr>],
    serving: &[&TaskInfo],
) -> bool {
    let addresses = |t: &TaskInfo| -> BTreeSet<std::net::IpAddr> {
        t.addresses
            .values()
            .filter_map(|a| a.parse().ok())
            .collect()
    };
    let each: Vec<BTreeSet<std::net::IpAddr>> = serving.iter().map(|t| addresses(t)).collect();
    let known: BTreeSet<std::net::IpAddr> = each.iter().flatten().copied().collect();
    !answers.is_empty()
        && answers
            .iter()
            .all(|answer| answer.is_subset(&known) && each.iter().all(|a| !a.is_disjoint(answer)))
}

/// The nodes, by name, that are not ready and hold tasks whose last state is not an end (a
/// task Swarm has given up on keeps its last state until its node is heard again).
pub(crate) fn down_nodes(lists: &[&[TaskInfo]]) -> BTreeSet<String> {
    lists
        .iter()
        .flat_map(|l| l.iter())
        .filter(|t| !t.node_ready && !t.node.is_empty() && !t.ended())
        .map(|t| t.node_name.clone())
        .collect()
}

/// What moves when Swarm's update does: each task's id and states, sorted.
pub(crate) fn fingerprint(tasks: &[TaskInfo]) -> Vec<(String, String, String)> {
    let mut v: Vec<_> = tasks
        .iter()
        .map(|t| (t.id.clone(), t.state.clone(), t.desired.clone()))
        .collect();
    v.sort();
    v
}

/// Waits up to `limit` for the update status of `service` to leave `state`, reading it every
/// 50 ms.
pub(crate) async fn status_moved(
    api: &SwarmApi,
    service: &str,
    state: &UpdateState,
    limit: Duration,
) -> Result<(), SwarmFail> {
    let until = Instant::now() + limit;
    while Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let now = api.service(service).await?;
        if UpdateState::of(now.as_ref().and_then(|s| s.update_status.as_ref())) != *state {
            return Ok(());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rollout_core::error::RouterError;
    use rollout_core::router::Route;
    use std::sync::Mutex;

    /// A router that applies anything and records what each drain was asked to wait for.
    #[derive(Default)]
    struct Recording {
        drained: Mutex<Vec<Vec<Target>>>,
    }

    #[async_trait::async_trait]
    impl TrafficRouter for Recording {
        async fn routes(&self) -> Result<Vec<Route>, RouterError> {
            Ok(Vec::new())
        }
        async fn apply(&self, change: &RouteChange) -> Result<DrainTicket, RouterError> {
            Ok(DrainTicket {
                generation: 7,
                removed: change.remove.clone(),
            })
        }
        async fn drain(
            &self,
            ticket: &DrainTicket,
            _timeout: Duration,
        ) -> Result<DrainReport, RouterError> {
            self.drained.lock().unwrap().push(ticket.removed.clone());
            Ok(DrainReport::default())
        }
    }

    fn serving(id: &str, addr: &str) -> TaskInfo {
        TaskInfo {
            id: id.into(),
            node: "n1".into(),
            state: "running".into(),
            desired: "running".into(),
            image: "app:v2".into(),
            addresses: [("front".to_string(), addr.to_string())].into(),
            node_ready: true,
            node_name: "box".into(),
            slot: 1,
            container: String::new(),
        }
    }

    #[test]
    fn a_name_is_routable_when_every_proxy_resolves_it_to_the_serving_tasks_only() {
        let (a, b) = (serving("a", "10.0.1.5"), serving("b", "10.0.1.6"));
        let tasks = [&a, &b];
        let set = |l: &[&str]| -> BTreeSet<std::net::IpAddr> {
            l.iter().map(|s| s.parse().unwrap()).collect()
        };
        let both = set(&["10.0.1.5", "10.0.1.6"]);
        assert!(resolves_to_only(&[both.clone(), both.clone()], &tasks));
        // A replaced task (10.0.1.4) still in one replica's answer: nginx there would pick it.
        let stale = set(&["10.0.1.4", "10.0.1.5", "10.0.1.6"]);
        assert!(!resolves_to_only(&[both.clone(), stale], &tasks));
        // A serving task not in the answer yet: wait for it too.
        assert!(!resolves_to_only(&[set(&["10.0.1.5"])], &tasks));
        // Not found, or no replica answered.
        assert!(!resolves_to_only(&[BTreeSet::new()], &tasks));
        assert!(!resolves_to_only(&[], &tasks));
    }

    fn task(addr: &str) -> Target {
        Target::instance(rollout_core::InstanceId(addr.to_string()), addr)
    }

    #[tokio::test]
    async fn the_change_back_at_rest_drains_only_what_the_run_stops_next() {
        let router = Recording::default();
        let (events, mut rx) = EventSink::channel();
        let say = |_: &str| {};
        let tell = Tell {
            say: &say,
            events: &events,
        };
        let (new, standby) = (task("10.0.1.7"), task("10.0.1.9"));
        let change = RouteChange {
            set: Vec::new(),
            remove: vec![new.clone(), standby.clone()],
        };
        let stopping = [standby.clone()];
        change_and_drain_of(
            &router,
            change.clone(),
            &stopping,
            Duration::from_secs(1),
            tell,
            "at rest",
        )
        .await
        .unwrap();
        // Both leave the list; only the standby's task, which is stopped next, is drained.
        match rx.try_recv().unwrap() {
            Event::TrafficChanged { removed, .. } => {
                assert_eq!(removed, [new.clone(), standby.clone()])
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(*router.drained.lock().unwrap(), [vec![standby.clone()]]);
        // Without a list of what stops, every removed target is drained, as before.
        change_and_drain(&router, change, Duration::from_secs(1), tell, "unrouted")
            .await
            .unwrap();
        assert_eq!(router.drained.lock().unwrap()[1], [new, standby]);
    }
}
