//! The rollout's story replayed from its events: which instances nginx routed after each
//! traffic change, when each old instance left the routes, and which ones the proxy's config
//! file named at a moment (an instance by its name, or the running instances of a service by
//! the service's name).

use crate::nginx::ConfigSnapshot;
use crate::project::Container;
use crate::run::Ended;
use rollout_core::event::Event;
use rollout_core::router::Target;
use std::collections::{BTreeMap, BTreeSet};

/// An instance as the replay knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Known {
    /// Full container id.
    pub id: String,
    /// Its name (what nginx resolves).
    pub host: String,
    /// Its Compose service.
    pub service: String,
}

/// The routes after one traffic change, resolved to instances.
#[derive(Debug, Clone)]
pub struct Span {
    /// Load-clock seconds of the change (when its event arrived).
    pub from: f64,
    /// When the next change came (or the rollout returned).
    pub to: f64,
    /// The router's generation.
    pub generation: u64,
    /// Full ids of the instances routed, directly or through their service's name.
    pub routed: BTreeSet<String>,
}

/// What the replay of one rollout's events gives.
#[derive(Debug, Clone, Default)]
pub struct Replay {
    /// The routed set after each change, in order.
    pub spans: Vec<Span>,
    /// When each instance left the routes (first time), by full id.
    pub unrouted: BTreeMap<String, f64>,
    /// Instances that left the routes and came back later in the same rollout.
    pub rerouted: Vec<String>,
    /// Every instance known by the end: the ones given, then the launched ones.
    pub known: Vec<Known>,
    /// When each instance ran, by full id: from its launch event (the given ones: always) to
    /// its stop or removal event (or never).
    pub alive: BTreeMap<String, (f64, f64)>,
}

impl Replay {
    /// The instance with this host name.
    pub fn by_host(&self, host: &str) -> Option<&Known> {
        self.known.iter().find(|k| k.host == host)
    }

    /// The instances a server host of the proxy's config stood for at `at`: the instance of
    /// that name, or the running instances of the service of that name.
    pub fn resolve_host(&self, host: &str, at: f64) -> Option<BTreeSet<String>> {
        if let Some(k) = self.by_host(host) {
            return Some(BTreeSet::from([k.id.clone()]));
        }
        let ids: BTreeSet<String> = self
            .known
            .iter()
            .filter(|k| k.service == host)
            .filter(|k| {
                self.alive
                    .get(&k.id)
                    .is_some_and(|(from, to)| *from <= at && at < *to)
            })
            .map(|k| k.id.clone())
            .collect();
        (!ids.is_empty()).then_some(ids)
    }

    /// When each instance first left the routes as the proxy's config file showed them: the
    /// time the first version without it was read, after one with it.
    pub fn unrouted_in_config(&self, snaps: &[ConfigSnapshot]) -> BTreeMap<String, f64> {
        let mut out = BTreeMap::new();
        let mut before: BTreeSet<String> = BTreeSet::new();
        for s in snaps {
            let now: BTreeSet<String> = s
                .hosts()
                .iter()
                .filter_map(|h| self.resolve_host(h, s.at))
                .flatten()
                .collect();
            for id in before.difference(&now) {
                out.entry(id.clone()).or_insert(s.at);
            }
            before = now;
        }
        out
    }
}

/// Replays `run`'s traffic changes. `initial` are the project's containers before the
/// rollout (all services), `routes` the upstream's targets before it (for the seed, one
/// [`Target::Service`]).
pub fn replay(initial: &[Container], routes: &[Target], run: &Ended) -> Replay {
    let mut known: Vec<Known> = initial
        .iter()
        .map(|c| Known {
            id: c.id.clone(),
            host: c.name.clone(),
            service: c.service.clone(),
        })
        .collect();
    let mut running: BTreeSet<String> = initial
        .iter()
        .filter(|c| c.state == "running")
        .map(|c| c.id.clone())
        .collect();
    let mut alive: BTreeMap<String, (f64, f64)> = running
        .iter()
        .map(|id| (id.clone(), (f64::NEG_INFINITY, f64::INFINITY)))
        .collect();
    let mut targets: Vec<Target> = routes.to_vec();
    let mut service = String::new();
    let mut out = Replay::default();
    let mut before: BTreeSet<String> = BTreeSet::new();
    let resolve = |targets: &[Target], known: &[Known], running: &BTreeSet<String>| {
        let mut set = BTreeSet::new();
        for t in targets {
            match t {
                Target::Instance { id, .. } => {
                    set.insert(id.0.clone());
                }
                Target::Service { name } => set.extend(
                    known
                        .iter()
                        .filter(|k| &k.service == name && running.contains(&k.id))
                        .map(|k| k.id.clone()),
                ),
            }
        }
        set
    };
    let mut first = true;
    for e in &run.events {
        match &e.event {
            Event::RolloutStarted { service: s, .. } => service = s.service.clone(),
            Event::InstanceLaunched { instance, host, .. } => {
                known.push(Known {
                    id: instance.0.clone(),
                    host: host.clone(),
                    service: service.clone(),
                });
                running.insert(instance.0.clone());
                alive.insert(instance.0.clone(), (e.at, f64::INFINITY));
            }
            Event::InstanceStopped { instance } | Event::InstanceRemoved { instance } => {
                running.remove(&instance.0);
                if let Some((_, to)) = alive.get_mut(&instance.0) {
                    *to = to.min(e.at);
                }
            }
            Event::TrafficChanged {
                generation,
                set,
                removed,
            } => {
                if first {
                    before = resolve(&targets, &known, &running);
                    first = false;
                }
                targets.retain(|t| !removed.contains(t) && !set.iter().any(|r| &r.target == t));
                targets.extend(set.iter().map(|r| r.target.clone()));
                let now = resolve(&targets, &known, &running);
                for id in before.difference(&now) {
                    out.unrouted.entry(id.clone()).or_insert(e.at);
                }
                for id in now.difference(&before) {
                    if out.unrouted.contains_key(id) {
                        out.rerouted.push(id.clone());
                    }
                }
                if let Some(last) = out.spans.last_mut() {
                    last.to = e.at;
                }
                out.spans.push(Span {
                    from: e.at,
                    to: run.returned_at,
                    generation: *generation,
                    routed: now.clone(),
                });
                before = now;
            }
            _ => {}
        }
    }
    out.known = known;
    out.alive = alive;
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run::Stamped;

    fn stamped(at: f64, event: Event) -> Stamped {
        Stamped::new(at, at, event)
    }

    #[test]
    fn replay_resolves_service_routes_and_finds_when_each_left() {
        use rollout_core::model::InstanceId;
        use rollout_core::router::Route;
        let c = |id: &str, name: &str| Container {
            id: id.into(),
            name: name.into(),
            image: "i".into(),
            state: "running".into(),
            health: "healthy".into(),
            service: "app".into(),
        };
        let initial = vec![c("aaa", "p_app_1"), c("bbb", "p_app_2")];
        let inst = |id: &str, host: &str| Target::instance(InstanceId(id.into()), host);
        let svc = Target::Service { name: "app".into() };
        let events = vec![
            stamped(
                1.0,
                Event::InstanceLaunched {
                    instance: InstanceId("ccc".into()),
                    host: "p_app_3".into(),
                    revision: "r".into(),
                },
            ),
            stamped(
                2.0,
                Event::TrafficChanged {
                    generation: 1,
                    set: vec![
                        Route {
                            target: inst("aaa", "p_app_1"),
                            weight: 1,
                        },
                        Route {
                            target: inst("bbb", "p_app_2"),
                            weight: 1,
                        },
                        Route {
                            target: inst("ccc", "p_app_3"),
                            weight: 1,
                        },
                    ],
                    removed: vec![svc.clone()],
                },
            ),
            stamped(
                3.0,
                Event::TrafficChanged {
                    generation: 2,
                    set: vec![],
                    removed: vec![inst("aaa", "p_app_1")],
                },
            ),
            stamped(
                3.5,
                Event::InstanceRemoved {
                    instance: InstanceId("aaa".into()),
                },
            ),
        ];
        let run = Ended {
            code: Some(0),
            events,
            summary: None,
            stderr: String::new(),
            started_at: 0.5,
            returned_at: 4.0,
        };
        let r = replay(&initial, &[svc], &run);
        assert_eq!(r.spans.len(), 2);
        assert_eq!(r.spans[0].routed.len(), 3);
        assert_eq!((r.spans[0].from, r.spans[0].to), (2.0, 3.0));
        assert_eq!(r.spans[1].routed.len(), 2);
        assert_eq!(r.spans[1].to, 4.0);
        assert_eq!(r.unrouted.get("aaa"), Some(&3.0));
        assert!(!r.unrouted.contains_key("bbb"));
        assert!(r.rerouted.is_empty());
        assert_eq!(r.by_host("p_app_3").unwrap().id, "ccc");
    }
}
