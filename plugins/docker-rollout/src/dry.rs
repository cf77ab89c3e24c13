//! `--dry-run`: the plan, and the rollout simulated on `rollout-mock`'s
//! paused clock with the instances the service runs now. Nothing is
//! written anywhere: the engine, when reachable, is only read.

use crate::cli::OutputFormat;
use crate::drive;
use crate::output::{Door, Summary};
use crate::plan::PlanView;
use rollout_core::strategy::{Plan, TrafficLayout};
use rollout_core::{Instance, InstanceState, Revision, Strategy};
use rollout_mock::MockCluster;
use std::collections::BTreeMap;
use std::io::Write;
use std::sync::Arc;

/// What runs now, as the engine said or as assumed.
#[derive(Debug, Clone, Default)]
pub struct Current {
    /// The instances of the service rolled out.
    pub service: Vec<Instance>,
    /// The instances of the other colour (two-colour layout).
    pub other: Vec<Instance>,
    /// Where this came from, for the plan (`read from the engine`, or why
    /// it is assumed).
    pub source: String,
    /// True when nothing was read: the service is assumed to run `replicas`
    /// instances of an older revision, routed.
    pub assumed: bool,
}

/// The revision most running instances run.
fn majority(instances: &[Instance]) -> Option<(String, usize)> {
    let mut by: BTreeMap<&str, usize> = BTreeMap::new();
    for i in instances
        .iter()
        .filter(|i| i.state == InstanceState::Running)
    {
        *by.entry(i.revision.as_str()).or_default() += 1;
    }
    by.into_iter()
        .max_by_key(|(_, n)| *n)
        .map(|(r, n)| (r.to_string(), n))
}

fn groups(instances: &[Instance]) -> BTreeMap<String, usize> {
    let mut by = BTreeMap::new();
    for i in instances
        .iter()
        .filter(|i| i.state == InstanceState::Running)
    {
        *by.entry(i.revision.clone()).or_default() += 1;
    }
    by
}

/// Prints the plan and the simulated rollout to `out`; returns the exit
/// code the rollout would end with.
pub fn run(
    strategy: Arc<dyn Strategy>,
    plan: &Plan,
    mut view: PlanView,
    current: Current,
    output: OutputFormat,
    colour: bool,
    out: impl Write + Send + 'static,
) -> i32 {
    let assumed_rev = "current";
    let (live, other) = match &plan.layout {
        TrafficLayout::Single => (plan.service.clone(), None),
        TrafficLayout::Colours { other, .. } => (other.clone(), Some(other.clone())),
    };
    let serving = if other.is_some() {
        current.other.clone()
    } else {
        current.service.clone()
    };
    if current.assumed {
        view.from = Some(Revision::new(assumed_rev, ""));
        view.current_instances = plan.replicas;
    } else {
        view.from = majority(&serving).map(|(r, _)| Revision::new(r, ""));
        view.current_instances = serving
            .iter()
            .filter(|i| i.state == InstanceState::Running)
            .count();
    }
    view.current_source = current.source.clone();
    let plan = plan.clone();
    // A service with no proxy in front runs with the router that routes
    // nothing, as it would live; the mock only runs its instances.
    let routed = view.proxy.is_some();
    // The mock runs on a paused clock of its own: a current-thread runtime
    // on a thread of its own, apart from the runtime of a live rollout.
    let worker = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .expect("a current-thread runtime");
        rt.block_on(async move {
            let mock = MockCluster::new();
            mock.add_service(&plan.service);
            if current.assumed {
                mock.seed(&live, assumed_rev, plan.replicas, routed);
            } else {
                for (rev, n) in groups(&serving) {
                    mock.seed(&live, &rev, n, routed);
                }
                if other.is_some() {
                    for (rev, n) in groups(&current.service) {
                        mock.seed(&plan.service, &rev, n, false);
                    }
                }
            }
            let mark = mock.mark();
            let mut ctx = mock.context();
            if !routed {
                ctx.router = Arc::new(rollout_strategies::NoTraffic::new(&plan.service.service));
            }
            let name = strategy.name().to_string();
            let mut renderer = Door::report(output, colour).open(out, &name, &plan);
            renderer.data(&serde_json::json!({ "v": rollout_core::event::EVENT_SCHEMA_VERSION, "plan": view }));
            renderer.report(&format!(
                "{}\nsimulated rollout (rollout-mock, simulated clock; nothing was changed):\n",
                view.text()
            ));
            for i in current.service.iter().chain(current.other.iter()) {
                renderer.know_host(i.id.clone(), &i.host);
            }
            let outcome = drive::run(strategy, ctx, plan.clone(), &mut renderer, None, None).await;
            let elapsed = renderer.t();
            let floor = view.strategy.floor(&plan);
            let violations: Vec<String> = if routed {
                mock.with_timeline(|tl| rollout_mock::check::check_timeline(tl, mark, floor))
                    .iter()
                    .map(|v| v.to_string())
                    .collect()
            } else {
                // Nothing is routed: what serves is what runs and is healthy.
                let fewest = mock.with_timeline(|tl| {
                    tl.entries
                        .iter()
                        .skip(mark)
                        .map(|e| e.counts.iter().map(|c| c.ready as usize).sum::<usize>())
                        .min()
                });
                match fewest {
                    Some(n) if n < floor => vec![format!(
                        "invariant 4 broken: {n} ready instances, under the floor {floor}"
                    )],
                    _ => Vec::new(),
                }
            };
            let capacity = mock.with_timeline(|tl| tl.render(mark));
            let code = outcome.exit_code();
            // Each door shows its own: the report for people, the summary
            // for programs.
            let mut text = format!(
                "\ncapacity over time, as the mock saw it (per revision: ready/routed/draining, weight):\n{capacity}"
            );
            if violations.is_empty() && !routed {
                text.push_str(&format!(
                    "no proxy in front: no traffic to route or drain; never fewer than {floor} ready instances in the simulation\n"
                ));
            } else if violations.is_empty() {
                text.push_str(&format!(
                    "invariants 1, 2 and 4 held in the simulation (floor {floor})\n"
                ));
            } else {
                for v in &violations {
                    text.push_str(&format!("{v}\n"));
                }
            }
            text.push_str(&format!(
                "simulated duration {elapsed:.1}s; the rollout would exit {code}\n"
            ));
            renderer.report(&text);
            let summary = Summary {
                dry_run: true,
                from: view.from.clone(),
                ..Summary::finished(&plan, &name, &outcome, elapsed, renderer.tally().clone())
            };
            renderer.summary(&summary);
            code
        })
    });
    worker.join().unwrap_or(rollout_core::exit::UNEXPECTED)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rollout_compose::{Flavour, LoadOptions, Overrides, Project};
    use rollout_core::StrategyKind;
    use std::path::PathBuf;
    use std::sync::Mutex;

    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);

    impl Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn example(name: &str, overrides: &Overrides) -> (Plan, PlanView, Arc<dyn Strategy>) {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../../examples")
            .join(name);
        let project = Project::load(&LoadOptions {
            files: vec![dir.join("compose.yaml")],
            project_name: Some("shop".into()),
            flavour: Flavour::V1,
            ..Default::default()
        })
        .unwrap();
        let service = if name == "rolling" || name == "haproxy" {
            "app"
        } else {
            "green"
        };
        let mut settings = project.settings(service).unwrap();
        settings.apply(overrides).unwrap();
        let image = settings.image.clone().unwrap();
        let plan = settings.plan(Revision::new("new", image));
        let strategy: Arc<dyn Strategy> =
            Arc::from(rollout_strategies::built_in(settings.strategy));
        let mut view = PlanView::new(settings.strategy, &plan);
        view.proxy = settings.proxy.clone();
        view.proxy_kind = settings.proxy_kind;
        view.analysis = settings.analysis.clone();
        (plan, view, strategy)
    }

    #[test]
    fn a_plan_behind_haproxy_names_haproxy_and_its_backend() {
        let (plan, view, strategy) = example("haproxy", &Overrides::default());
        let out = plan_text(strategy, &plan, view);
        assert!(
            out.contains(
                "  proxy:     HAProxy service haproxy, backend (found when the proxy is read)\n"
            ),
            "{out}"
        );
        assert!(!out.to_lowercase().contains("nginx"), "{out}");
    }

    #[test]
    fn a_canary_plan_says_what_judges_its_steps() {
        let canary = Overrides {
            strategy: Some(rollout_core::StrategyKind::Canary),
            ..Default::default()
        };
        let (_, view, _) = example("blue-green", &canary);
        let text = view.text();
        assert!(
            text.contains("  analysis:  none configured: each step passes when its hold ends"),
            "{text}"
        );
        let judged = Overrides {
            max_error_rate: Some(0.05),
            ..canary.clone()
        };
        let (_, view, _) = example("blue-green", &judged);
        let text = view.text();
        assert!(
            text.contains("  analysis:  from the proxy's own access log: error rate <= 5.0%; verdict after 20 requests in 30s (else hold), abort after 1 failing window\n"),
            "{text}"
        );
        let prometheus = Overrides {
            prometheus_url: Some("http://127.0.0.1:9090".into()),
            prometheus_queries: vec!["sum(errors) <= 0.5".parse().unwrap()],
            ..canary
        };
        let (_, view, _) = example("blue-green", &prometheus);
        let text = view.text();
        assert!(
            text.contains("  analysis:  from Prometheus: sum(errors) <= 0.5 (Prometheus at http://127.0.0.1:9090); "),
            "{text}"
        );
    }

    #[test]
    fn a_blue_green_plan_says_what_judges_the_window_after_its_switch() {
        let (_, view, _) = example("blue-green", &Overrides::default());
        let text = view.text();
        assert!(!text.contains("analysis:"), "{text}");
        let judged = Overrides {
            max_error_rate: Some(0.05),
            max_p99: Some(rollout_core::analysis::LatencyLimit::Absolute(
                std::time::Duration::from_millis(250),
            )),
            monitor: Some(std::time::Duration::from_secs(20)),
            ..Default::default()
        };
        let (plan, view, strategy) = example("blue-green", &judged);
        let text = view.text();
        assert!(
            text.contains("  analysis:  every second of the 20s monitor window after the switch (switched back on a failing verdict), from the proxy's own access log: error rate <= 5.0%, p99 <= 250ms; verdict after 20 requests in 30s (else hold), abort after 1 failing window\n"),
            "{text}"
        );
        // The dry run prints the same plan.
        let out = plan_text(strategy, &plan, view);
        assert!(out.contains("20s monitor window after the switch"), "{out}");
        let off = Overrides {
            monitor: Some(std::time::Duration::ZERO),
            ..judged
        };
        let (_, view, _) = example("blue-green", &off);
        let text = view.text();
        assert!(
            text.contains("  analysis:  none: the monitor window is 0s, so nothing is judged after the switch"),
            "{text}"
        );
    }

    /// The text a dry run of `plan` prints, which must exit 0.
    fn plan_text(strategy: Arc<dyn Strategy>, plan: &Plan, view: PlanView) -> String {
        let buf = Buf::default();
        let code = run(
            strategy,
            plan,
            view,
            assumed(),
            OutputFormat::Text,
            false,
            buf.clone(),
        );
        assert_eq!(code, 0);
        let out = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        out
    }

    fn assumed() -> Current {
        Current {
            source: "assumed: the engine was not read".into(),
            assumed: true,
            ..Default::default()
        }
    }

    #[test]
    fn the_seed_rolling_plan_and_its_simulation() {
        let (plan, view, strategy) = example("rolling", &Overrides::default());
        let out = plan_text(strategy, &plan, view);
        assert!(
            out.contains("rounds:    2 + 2 + 2 (2 slots at a time)"),
            "{out}"
        );
        assert!(
            out.contains("capacity:  never fewer than 4 healthy, routed instances"),
            "{out}"
        );
        assert!(
            out.contains("invariants 1, 2 and 4 held in the simulation (floor 4)"),
            "{out}"
        );
        insta::assert_snapshot!("dry_run_rolling_seed", out);
    }

    #[test]
    fn a_worker_with_no_proxy_is_simulated_without_traffic() {
        let (mut plan, _, strategy) = example("rolling", &Overrides::default());
        plan.update.order = rollout_core::Order::StartFirst;
        let mut view = PlanView::new(StrategyKind::Rolling, &plan);
        view.proxy = None;
        let out = plan_text(strategy, &plan, view);
        assert!(
            out.contains("proxy:     none in front: no traffic to route or drain"),
            "{out}"
        );
        assert!(!out.contains("traffic (generation"), "{out}");
        assert!(
            out.contains("no proxy in front: no traffic to route or drain; never fewer than 5 ready instances in the simulation"),
            "{out}"
        );
    }

    #[test]
    fn a_canary_dry_run_in_json_has_the_plan_the_weights_and_a_summary() {
        let o = Overrides {
            strategy: Some(StrategyKind::Canary),
            ..Default::default()
        };
        let (plan, view, strategy) = example("canary", &o);
        let buf = Buf::default();
        let code = run(
            strategy,
            &plan,
            view,
            assumed(),
            OutputFormat::Json,
            false,
            buf.clone(),
        );
        assert_eq!(code, 0);
        let out = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<serde_json::Value> = out
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines[0]["plan"]["strategy"], "canary");
        assert_eq!(
            lines[0]["plan"]["weights"],
            serde_json::json!([10, 25, 50, 75, 100])
        );
        let weights: Vec<u64> = lines
            .iter()
            .filter(|l| l["event"] == "weights-changed")
            .map(|l| l["new_percent"].as_u64().unwrap())
            .collect();
        assert_eq!(weights.last(), Some(&100), "{out}");
        assert!(weights.windows(2).all(|w| w[0] < w[1]), "{weights:?}");
        let last = lines.last().unwrap();
        assert_eq!(last["summary"]["dry_run"], true);
        assert_eq!(last["summary"]["exit_code"], 0);
        assert_eq!(last["summary"]["outcome"]["outcome"], "completed");
        // The holds were simulated, not slept: 4 holds of 30s at least.
        assert!(
            last["summary"]["elapsed_secs"].as_f64().unwrap() >= 120.0,
            "{last}"
        );
    }
}
