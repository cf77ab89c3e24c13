//! Who gets the requests.
//!
//! A router holds one weighted set of routes per rollout (one nginx
//! upstream). A change to it is a delta, applied in one atomic step (one
//! validated reload for nginx), so that replacing a few of 10,000 instances
//! costs a few entries, not 10,000.
//!
//! Routes name either one instance (its `host`, such as a container name) or
//! a whole service by name. A service route is resolved by the proxy when the
//! change is applied: it covers the instances of that service that are
//! running at that moment, ready or not, and keeps covering them until the
//! next change. Strategies therefore route by instance during a rollout and
//! name the service only at rest, when every running instance is ready
//! (DESIGN.md, "Traffic through nginx").

use crate::error::RouterError;
use crate::model::InstanceId;
use async_trait::async_trait;
use core::net::IpAddr; // an address as data: `core::net` does no I/O
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::time::Duration;

/// What a route points at.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum Target {
    /// One instance, by the host name the proxy resolves it by.
    Instance {
        /// The backend's handle.
        id: InstanceId,
        /// The name the proxy resolves (a container name).
        host: String,
    },
    /// Every running instance of a service, resolved when applied.
    Service {
        /// The service name as the operator's proxy config writes it.
        name: String,
    },
}

impl Target {
    /// The route of one instance.
    pub fn instance(id: InstanceId, host: impl Into<String>) -> Self {
        Target::Instance {
            id,
            host: host.into(),
        }
    }

    /// The name the proxy resolves.
    pub fn host(&self) -> &str {
        match self {
            Target::Instance { host, .. } => host,
            Target::Service { name } => name,
        }
    }
}

/// A target with its weight (at least 1; a target with no traffic is removed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Route {
    /// What it points at.
    pub target: Target,
    /// Its relative weight, 1 or more.
    pub weight: u32,
}

/// One atomic change: targets to add or reweight, and targets to take out.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteChange {
    /// Added, or reweighted when present.
    pub set: Vec<Route>,
    /// Taken out.
    pub remove: Vec<Target>,
}

impl RouteChange {
    /// Whether the change changes nothing.
    pub fn is_empty(&self) -> bool {
        self.set.is_empty() && self.remove.is_empty()
    }
}

/// Proof that a change was applied, to wait on for the drain of what it took
/// out. Routers keep what they need to know (nginx: the worker processes
/// running before the reload) under `generation`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DrainTicket {
    /// The router's count of applied changes, this one included.
    pub generation: u64,
    /// What the change took out.
    pub removed: Vec<Target>,
}

impl DrainTicket {
    /// A ticket for targets whose removal this run did not see: a run that
    /// resumes after a crash finds instances already out of the routes but
    /// does not know whether their requests have finished. `generation` 0
    /// means "unknown": a router waits for everything that may still be in
    /// flight to `removed`, whenever it was taken out (nginx: every worker
    /// process still shutting down).
    pub fn unknown(removed: Vec<Target>) -> Self {
        Self {
            generation: 0,
            removed,
        }
    }
}

/// What a drain waited for and how it ended.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DrainReport {
    /// What was waited for, in words a person can check (`nginx worker 4711`).
    pub waited_for: Vec<String>,
    /// How long it took.
    #[serde(with = "crate::duration::serde_duration")]
    pub elapsed: Duration,
    /// Whether the timeout ended it; what was still in flight then was cut.
    pub timed_out: bool,
    /// What was cut at the timeout, when the router can tell.
    pub cut: Vec<String>,
}

/// Sends requests to instances.
#[async_trait]
pub trait TrafficRouter: Send + Sync {
    /// The routes as they are now (read once when a rollout starts or resumes).
    async fn routes(&self) -> Result<Vec<Route>, RouterError>;

    /// Applies `change` in one step. When it returns, requests go only to the
    /// new set; requests already in flight to removed targets may still run.
    /// A change that removes nothing may return while some requests still
    /// go by the old routes, all of them in the new set (the added targets
    /// and moved weights then take a moment to reach every request).
    /// On error nothing changed.
    async fn apply(&self, change: &RouteChange) -> Result<DrainTicket, RouterError>;

    /// Waits until no request is in flight to what `ticket` removed, at most
    /// `timeout`. A ticket may come from [`DrainTicket::unknown`] (a resumed
    /// run): it names targets that may have left the routes at any earlier
    /// change, and may name targets that were never routed (nothing to wait
    /// for then).
    async fn drain(
        &self,
        ticket: &DrainTicket,
        timeout: Duration,
    ) -> Result<DrainReport, RouterError>;

    /// Whether requests travel through this router. `false` for a service
    /// with no proxy in front (a queue worker, a scheduler): its changes are
    /// the strategy's own bookkeeping, there is nothing in flight to drain,
    /// and strategies report no traffic change and no drain. An old
    /// instance then finishes its work through its own stop signal, within
    /// its grace period.
    fn carries_traffic(&self) -> bool {
        true
    }

    /// Keeps the router's own measure of the traffic on while `on`, even
    /// with the routes at rest: nginx's router, opened with the tool's
    /// access log, arranges that log while the upstream's traffic is split
    /// and removes it at rest; a blue-green switch to the other colour is at
    /// rest at once, yet the new colour must be judged for a window. Takes
    /// effect with the next change applied (an empty one brings the config
    /// in line, adding or removing the log); `false` lets the next change at
    /// rest remove it. Returns whether this router measures anything at all
    /// (the default: no, and nothing to bring in line).
    fn keep_measuring(&self, on: bool) -> bool {
        let _ = on;
        false
    }

    /// What the proxy's own resolver gives the service name `name` now, as
    /// its next reload would resolve a `server` line naming it: one set of
    /// addresses per replica of the proxy (empty when the name is not
    /// found there). `None` when this router cannot ask (the default), or
    /// could not get an answer this time: the caller then waits for what it
    /// needs by other means. A Swarm rollout asks before it routes a
    /// service back by its name, so as not to wait for the tasks Swarm
    /// replaced to stop once no proxy resolves the name to them any more.
    async fn resolve(&self, name: &str) -> Result<Option<Vec<BTreeSet<IpAddr>>>, RouterError> {
        let _ = name;
        Ok(None)
    }

    /// Readies what the router's first change will need, so that it is not
    /// on that change's path (nginx's router: the container that writes
    /// the proxy's file): called once a run holds its service's lock, and
    /// let go by [`TrafficRouter::settle`]. Nothing to ready by default. A
    /// failure here is the first change's to report, so none is returned.
    async fn warm(&self) {}

    /// Finishes the bookkeeping a router put off to keep it off a
    /// rollout's critical path (HAProxy's router frees drained server slots
    /// with its next change, or here): called once as a run ends, whatever
    /// its outcome. Nothing of it moves a request: a router that puts
    /// nothing off has nothing to do (the default).
    async fn settle(&self) -> Result<(), RouterError> {
        Ok(())
    }
}
