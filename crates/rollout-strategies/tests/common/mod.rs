//! The test bed: a seeded mock, a context, and the invariant checks every
//! test runs after a rollout.
#![allow(dead_code)]

use rollout_core::event::EventSink;
use rollout_core::strategy::{Cancel, TrafficLayout};
use rollout_core::StrategyKind;
use rollout_core::{
    Analysis, Event, Outcome, Plan, Revision, RolloutContext, ServiceRef, Strategy,
};
use rollout_mock::check::{check_end_from, check_timeline, EndState};
use rollout_mock::{MemoryJournal, MockCluster, MockVerifier};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc::UnboundedReceiver;

pub const OLD: &str = "rev-old";
pub const NEW: &str = "rev-new";

pub struct Env {
    pub mock: Arc<MockCluster>,
    pub journal: Arc<MemoryJournal>,
    pub service: ServiceRef,
    pub mark: usize,
    pub from: Option<String>,
    pub analysis: Option<Arc<dyn Analysis>>,
    pub verifier: Option<Arc<MockVerifier>>,
}

/// A service `app` with `replicas` healthy instances of OLD, routed by name.
pub fn env(replicas: usize) -> Env {
    let mock = MockCluster::new();
    let service = ServiceRef::new("shop", "app");
    mock.add_service(&service);
    if replicas > 0 {
        mock.seed(&service, OLD, replicas, true);
    }
    let mark = mock.mark();
    Env {
        mock,
        journal: Arc::new(MemoryJournal::new()),
        service,
        mark,
        from: (replicas > 0).then(|| OLD.to_string()),
        analysis: None,
        verifier: None,
    }
}

/// The seed's two colours: `blue` live on OLD, `green` idle and empty.
pub fn colours_env(replicas: usize, stop_other: bool) -> (Env, TrafficLayout) {
    let mock = MockCluster::new();
    let blue = ServiceRef::new("shop", "blue");
    let green = ServiceRef::new("shop", "green");
    mock.add_service(&green);
    mock.seed(&blue, OLD, replicas, true);
    let mark = mock.mark();
    (
        Env {
            mock,
            journal: Arc::new(MemoryJournal::new()),
            service: green,
            mark,
            from: Some(OLD.to_string()),
            analysis: None,
            verifier: None,
        },
        TrafficLayout::Colours {
            other: blue,
            stop_other,
        },
    )
}

pub fn plan(env: &Env, replicas: usize) -> Plan {
    let mut p = Plan::new(env.service.clone(), Revision::new(NEW, "app:2"), replicas);
    p.update.monitor = Duration::from_secs(5);
    p
}

pub fn ctx(env: &Env, cancel: Cancel) -> (RolloutContext, UnboundedReceiver<Event>) {
    let (events, rx) = EventSink::channel();
    (
        RolloutContext {
            journal: env.journal.clone(),
            analysis: env.analysis.clone(),
            verifier: env
                .verifier
                .clone()
                .map(|v| v as Arc<dyn rollout_core::strategy::Verifier>),
            events,
            cancel,
            ..env.mock.context()
        },
        rx,
    )
}

/// Runs to the end with no cancel.
pub async fn run(strategy: &dyn Strategy, env: &Env, plan: &Plan) -> (Outcome, Vec<Event>) {
    let (ctx, mut rx) = ctx(env, Cancel::never());
    let outcome = strategy.run(&ctx, plan).await;
    drop(ctx);
    let mut events = Vec::new();
    while let Ok(e) = rx.try_recv() {
        events.push(e);
    }
    (outcome, events)
}

/// Every invariant over the whole run, and the end state for `outcome`.
pub fn violations(env: &Env, plan: &Plan, strategy: &str, outcome: &Outcome) -> Vec<String> {
    let kind: StrategyKind = strategy.parse().expect("a built-in strategy's name");
    let floor = kind.floor(plan);
    let mut v: Vec<String> = env
        .mock
        .with_timeline(|t| check_timeline(t, env.mark, floor))
        .iter()
        .map(|v| v.to_string())
        .collect();
    let want = EndState {
        service: &env.service,
        layout: &plan.layout,
        replicas: plan.replicas,
        from: env.from.as_deref(),
        to: &plan.target.id,
    };
    v.extend(
        check_end_from(&env.mock, &want, outcome, env.mark)
            .iter()
            .map(|v| v.to_string()),
    );
    v
}

pub fn assert_clean(env: &Env, plan: &Plan, strategy: &str, outcome: &Outcome) {
    let v = violations(env, plan, strategy, outcome);
    if !v.is_empty() {
        let tl = env
            .mock
            .with_timeline(|t| t.render(env.mark.saturating_sub(1)));
        panic!(
            "{} violation(s) for {strategy} ending {outcome:?}:\n{}\ntimeline:\n{tl}",
            v.len(),
            v.join("\n")
        );
    }
}

/// What a test's journal does before each save ([`HookedJournal`]): wait, record, or refuse.
#[async_trait::async_trait]
pub trait SaveHook: Send + Sync {
    /// Runs before `r` is stored; an error is the save's.
    async fn before_save(
        &self,
        r: &rollout_core::journal::JournalRecord,
    ) -> Result<(), rollout_core::JournalError>;
}

/// A journal in memory whose saves go through `hook` first.
pub struct HookedJournal<H> {
    pub inner: MemoryJournal,
    pub hook: H,
}

impl<H> HookedJournal<H> {
    pub fn new(hook: H) -> Arc<Self> {
        Arc::new(Self {
            inner: MemoryJournal::new(),
            hook,
        })
    }
}

#[async_trait::async_trait]
impl<H: SaveHook> rollout_core::Journal for HookedJournal<H> {
    async fn lock(&self, s: &ServiceRef, h: &str) -> Result<(), rollout_core::JournalError> {
        self.inner.lock(s, h).await
    }
    async fn unlock(&self, s: &ServiceRef) -> Result<(), rollout_core::JournalError> {
        self.inner.unlock(s).await
    }
    async fn load(
        &self,
        s: &ServiceRef,
    ) -> Result<Option<rollout_core::journal::JournalRecord>, rollout_core::JournalError> {
        self.inner.load(s).await
    }
    async fn save(
        &self,
        r: &rollout_core::journal::JournalRecord,
    ) -> Result<(), rollout_core::JournalError> {
        self.hook.before_save(r).await?;
        self.inner.save(r).await
    }
    async fn clear(&self, s: &ServiceRef) -> Result<(), rollout_core::JournalError> {
        self.inner.clear(s).await
    }
}
