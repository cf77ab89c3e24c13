//! A blue-green switch judged by the analysis in its monitor window: a bad
//! new set is switched back at its first failing verdict (exit 3, the
//! numbers in the message) to the very old instances, kept running for
//! that; a good one passes every judgement; a window still inconclusive at
//! its end pauses (exit 4) as a canary step does. The router is asked to
//! keep measuring from before the switch to the end of the run, and let go
//! before the switch back.

mod common;
use async_trait::async_trait;
use common::*;
use rollout_core::journal::Phase;
use rollout_core::router::{DrainReport, DrainTicket};
use rollout_core::strategy::{Cancel, Verdict};
use rollout_core::{
    exit, Analysis, Event, Outcome, Plan, RolloutContext, Route, RouteChange, RouterError,
    Strategy, TrafficRouter,
};
use rollout_mock::{ErrorRateAnalysis, Faults, MockCluster};
use rollout_strategies::BlueGreen;
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Both layouts: `app` with its old set beside the new one (kept for a
/// minute after the switch), and the seed's two colours with blue stopped
/// once green is live.
fn layouts() -> Vec<(&'static str, Env, Plan)> {
    let e = env(4);
    let mut single = plan(&e, 4);
    single.blue_green.keep_old_for = Some(Duration::from_secs(60));
    let (c, layout) = colours_env(4, true);
    let mut colours = plan(&c, 4);
    colours.layout = layout;
    vec![("single", e, single), ("colours", c, colours)]
}

fn judged_by_error_rate(e: &mut Env) {
    e.analysis = Some(Arc::new(ErrorRateAnalysis {
        mock: e.mock.clone(),
        max_rate: 0.1,
    }));
}

/// The running, not removed instances of revision `rev`.
fn running(e: &Env, rev: &str) -> BTreeSet<String> {
    e.mock
        .snapshot()
        .into_iter()
        .filter(|v| v.instance.revision == rev && !v.removed)
        .map(|v| v.instance.id.0)
        .collect()
}

fn verdicts(events: &[Event]) -> Vec<(usize, Verdict)> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Analysis { step, verdict } => Some((*step, verdict.clone())),
            _ => None,
        })
        .collect()
}

#[tokio::test(start_paused = true)]
async fn a_new_set_answering_errors_is_switched_back_at_its_first_failing_verdict() {
    for (name, mut e, p) in layouts() {
        e.mock.set_faults(NEW, Faults::error_rate(0.5));
        judged_by_error_rate(&mut e);
        let old = running(&e, OLD);
        let (o, events) = run(&BlueGreen, &e, &p).await;
        let Outcome::RolledBack(msg) = &o else {
            panic!("{name}: {o:?}")
        };
        assert_eq!(o.exit_code(), exit::ROLLED_BACK);
        assert_eq!(
            msg, "analysis failed after the switch: error rate 50.0% above 10.0%",
            "{name}"
        );
        // Judged once after the switch (a second after it): that verdict failed.
        let v = verdicts(&events);
        assert_eq!(v.len(), 1, "{name}: {v:?}");
        assert!(matches!(v[0], (1, Verdict::Fail(_))), "{name}: {v:?}");
        let switched = events
            .iter()
            .position(|e| matches!(e, Event::WeightsChanged { new_percent: 100 }))
            .expect("switched");
        let back = events
            .iter()
            .position(|e| matches!(e, Event::RollbackStarted { .. }))
            .expect("switched back");
        assert!(switched < back, "{name}");
        // The very old instances serve again: none was stopped in the window.
        assert_eq!(running(&e, OLD), old, "{name}");
        assert!(
            running(&e, NEW).is_empty(),
            "{name}: the new set is removed"
        );
        assert_eq!(e.mock.share(OLD), 100.0, "{name}");
        assert_clean(&e, &p, "blue-green", &o);
        assert!(e.journal.record(&e.service).is_none(), "{name}");
    }
}

#[tokio::test(start_paused = true)]
async fn a_healthy_new_set_passes_every_judgement_of_its_window() {
    for (name, mut e, p) in layouts() {
        judged_by_error_rate(&mut e);
        let (o, events) = run(&BlueGreen, &e, &p).await;
        assert_eq!(o, Outcome::Completed, "{name}");
        let v = verdicts(&events);
        // The 5 s monitor window, judged every second.
        assert_eq!(v.len(), 5, "{name}: {v:?}");
        assert!(v.iter().all(|x| *x == (1, Verdict::Pass)), "{name}: {v:?}");
        assert_eq!(e.mock.share(NEW), 100.0, "{name}");
        assert_clean(&e, &p, "blue-green", &o);
    }
}

/// Has no data until told otherwise.
struct Unsure(Mutex<bool>);

#[async_trait]
impl Analysis for Unsure {
    async fn judge(&self, _: &Plan, _: usize, _: u32) -> Verdict {
        if *self.0.lock().unwrap() {
            Verdict::Pass
        } else {
            Verdict::Inconclusive("3 requests reached the new revision".into())
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_window_still_inconclusive_pauses_with_the_old_set_kept_and_the_next_run_judges_again() {
    for (name, mut e, p) in layouts() {
        let unsure = Arc::new(Unsure(Mutex::new(false)));
        e.analysis = Some(unsure.clone());
        let old = running(&e, OLD);
        let (o, events) = run(&BlueGreen, &e, &p).await;
        let Outcome::Paused(msg) = &o else {
            panic!("{name}: {o:?}")
        };
        assert_eq!(o.exit_code(), exit::PAUSED);
        assert!(
            msg.contains("still inconclusive at the end of the monitor window (3 requests")
                && msg.contains("docker rollout abort"),
            "{name}: {msg}"
        );
        assert_eq!(verdicts(&events).len(), 5, "{name}");
        assert_eq!(e.mock.share(NEW), 100.0, "{name}: the switch stands");
        assert_eq!(running(&e, OLD), old, "{name}: the old set is kept");
        assert_eq!(
            e.journal.record(&e.service).unwrap().phase,
            Phase::Paused,
            "{name}"
        );
        // The next run judges another window, and this time it passes.
        *unsure.0.lock().unwrap() = true;
        let (o, events) = run(&BlueGreen, &e, &p).await;
        assert_eq!(o, Outcome::Completed, "{name}");
        assert!(
            matches!(events[0], Event::RolloutStarted { resumed: true, .. }),
            "{name}"
        );
        assert!(
            !events
                .iter()
                .any(|e| matches!(e, Event::WeightsChanged { .. })),
            "{name}: no second switch"
        );
        assert_eq!(verdicts(&events).len(), 5, "{name}");
        assert_clean(&e, &p, "blue-green", &o);
        assert!(e.journal.record(&e.service).is_none(), "{name}");
    }
}

/// What the router was asked, in order.
#[derive(Debug, Clone, PartialEq)]
enum Call {
    Keep(bool),
    /// An empty change (bringing the config in line).
    InLine,
    /// A change of the routes: whether it left the new colour alone.
    Change {
        green_only: bool,
    },
}

/// The mock's router, measuring, with every call written down.
struct Measuring {
    mock: Arc<MockCluster>,
    calls: Mutex<Vec<Call>>,
}

#[async_trait]
impl TrafficRouter for Measuring {
    async fn routes(&self) -> Result<Vec<Route>, RouterError> {
        self.mock.routes().await
    }
    async fn apply(&self, c: &RouteChange) -> Result<DrainTicket, RouterError> {
        let ticket = self.mock.apply(c).await?;
        let call = if c.is_empty() {
            Call::InLine
        } else {
            let routes = self.mock.routes().await?;
            Call::Change {
                green_only: routes.len() == 1 && routes[0].target.host() == "green",
            }
        };
        self.calls.lock().unwrap().push(call);
        Ok(ticket)
    }
    async fn drain(&self, t: &DrainTicket, d: Duration) -> Result<DrainReport, RouterError> {
        self.mock.drain(t, d).await
    }
    fn keep_measuring(&self, on: bool) -> bool {
        self.calls.lock().unwrap().push(Call::Keep(on));
        true
    }
}

async fn run_measured(e: &Env, p: &Plan) -> (Outcome, Vec<Call>) {
    let router = Arc::new(Measuring {
        mock: e.mock.clone(),
        calls: Mutex::new(Vec::new()),
    });
    let (ctx, _rx) = ctx(e, Cancel::never());
    let ctx = RolloutContext {
        router: router.clone(),
        ..ctx
    };
    let o = BlueGreen.run(&ctx, p).await;
    let calls = router.calls.lock().unwrap().clone();
    (o, calls)
}

#[tokio::test(start_paused = true)]
async fn the_router_measures_from_before_the_switch_to_the_end_of_the_run() {
    let green_live = Call::Change { green_only: true };
    let to_blue = Call::Change { green_only: false };
    // Passed: measured before the switch, let go and brought in line at the end.
    let (mut e, layout) = colours_env(2, false);
    judged_by_error_rate(&mut e);
    let mut p = plan(&e, 2);
    p.layout = layout;
    let (o, calls) = run_measured(&e, &p).await;
    assert_eq!(o, Outcome::Completed);
    assert_eq!(
        calls,
        [
            Call::Keep(true),
            Call::InLine,
            green_live.clone(),
            Call::Keep(false),
            Call::InLine
        ]
    );
    assert_clean(&e, &p, "blue-green", &o);

    // Failed: let go before the switch back, which is then the change to rest.
    let (mut e, _) = colours_env(2, false);
    e.mock.set_faults(NEW, Faults::error_rate(0.5));
    judged_by_error_rate(&mut e);
    let (o, calls) = run_measured(&e, &p).await;
    assert!(matches!(o, Outcome::RolledBack(_)), "{o:?}");
    let back = calls.iter().position(|c| *c == to_blue).expect("{calls:?}");
    assert_eq!(calls[back - 1], Call::Keep(false), "{calls:?}");
    assert_eq!(&calls[..3], [Call::Keep(true), Call::InLine, green_live]);
    assert_clean(&e, &p, "blue-green", &o);

    // Without an analysis nothing is measured.
    let (e, _) = colours_env(2, false);
    let (o, calls) = run_measured(&e, &p).await;
    assert_eq!(o, Outcome::Completed);
    assert_eq!(calls, [Call::Change { green_only: true }]);
}
