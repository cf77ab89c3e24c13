//! The plan `--dry-run` prints: what the strategy will do, in what order,
//! and the floor of serving capacity it keeps.

use rollout_compose::ProxyKind;
use rollout_core::analysis::AnalysisRules;
use rollout_core::strategy::{Hold, Plan, TrafficLayout};
use rollout_core::{format_duration, Revision, StrategyKind, UpdateConfig};
use serde::Serialize;
use std::fmt::Write as _;

/// A plan as a person (or a script, in JSON) reads it.
#[derive(Debug, Clone, Serialize)]
pub struct PlanView {
    /// The strategy.
    pub strategy: StrategyKind,
    /// What serves now, as far as is known.
    pub from: Option<Revision>,
    /// How many instances serve now.
    pub current_instances: usize,
    /// Where the current instances came from (`engine`, or an assumption).
    pub current_source: String,
    /// The proxy service; `None` when the service has none in front.
    pub proxy: Option<String>,
    /// Which proxy it is (nginx unless said; left out of the JSON then).
    #[serde(skip_serializing_if = "ProxyKind::is_nginx")]
    pub proxy_kind: ProxyKind,
    /// The upstream (nginx) or backend (HAProxy), if known.
    pub upstream: Option<String>,
    /// Rolling: how many slots each round replaces (workers at once).
    pub rounds: Vec<usize>,
    /// Never fewer healthy, routed instances than this during the update.
    pub capacity_floor: usize,
    /// The same during a rollback (rolling: its own order and parallelism).
    pub rollback_floor: usize,
    /// Canary: the share of requests on the new revision at each step.
    pub weights: Vec<u32>,
    /// The rules a canary's steps, a rolling update's monitor windows and
    /// the window after a blue-green switch are judged by; `None`, no
    /// analysis.
    pub analysis: Option<AnalysisRules>,
    /// The plan the strategy gets.
    pub plan: Plan,
}

impl PlanView {
    /// The view of `plan` run by `strategy`.
    pub fn new(strategy: StrategyKind, plan: &Plan) -> Self {
        let slots = plan.replicas;
        let workers = plan.update.workers(slots);
        let mut rounds = Vec::new();
        if strategy == StrategyKind::Rolling {
            let mut left = slots;
            while left > 0 {
                let n = workers.min(left);
                rounds.push(n);
                left -= n;
            }
        }
        let weights = match strategy {
            StrategyKind::Canary => plan.canary.steps.iter().map(|s| s.percent).collect(),
            StrategyKind::BlueGreen => vec![100],
            StrategyKind::Rolling => Vec::new(),
        };
        Self {
            strategy,
            from: None,
            current_instances: 0,
            current_source: String::new(),
            proxy: None,
            proxy_kind: ProxyKind::Nginx,
            upstream: None,
            rounds,
            capacity_floor: strategy.update_floor(plan),
            rollback_floor: strategy.rollback_floor(plan),
            weights,
            analysis: None,
            plan: plan.clone(),
        }
    }

    /// The plan in words, one fact per line.
    pub fn text(&self) -> String {
        let p = &self.plan;
        let mut s = String::new();
        let _ = writeln!(s, "plan: roll out {} with {}", p.service, self.strategy);
        let from = match &self.from {
            Some(r) => revision(r),
            None => "nothing".to_string(),
        };
        let _ = writeln!(
            s,
            "  now:       {from} on {} instance{} ({})",
            self.current_instances,
            plural(self.current_instances),
            self.current_source
        );
        let _ = writeln!(s, "  target:    {}", revision(&p.target));
        let _ = writeln!(s, "  replicas:  {}", p.replicas);
        match &p.layout {
            TrafficLayout::Single => {}
            TrafficLayout::Colours { other, stop_other } => {
                let _ = writeln!(
                    s,
                    "  colours:   {} becomes live, {} {}",
                    p.service.service,
                    other.service,
                    if *stop_other {
                        "is stopped once it is drained"
                    } else {
                        "keeps running for an instant switch-back"
                    }
                );
            }
        }
        if let Some(proxy) = &self.proxy {
            let (kind, block) = match self.proxy_kind {
                ProxyKind::Nginx => ("nginx", "upstream"),
                ProxyKind::Haproxy => ("HAProxy", "backend"),
            };
            let _ = writeln!(
                s,
                "  proxy:     {kind} service {proxy}, {block} {}",
                self.upstream
                    .as_deref()
                    .unwrap_or("(found when the proxy is read)")
            );
        } else {
            let _ = writeln!(
                s,
                "  proxy:     none in front: no traffic to route or drain (old instances stop on their stop signal)"
            );
        }
        match self.strategy {
            StrategyKind::Rolling => {
                let _ = writeln!(s, "  update:    {}", pace(&p.update));
                let _ = writeln!(
                    s,
                    "  rounds:    {} ({} slot{} at a time)",
                    self.rounds
                        .iter()
                        .map(|n| n.to_string())
                        .collect::<Vec<_>>()
                        .join(" + "),
                    p.update.workers(p.replicas),
                    plural(p.update.workers(p.replicas))
                );
                let _ = writeln!(s, "  rollback:  {}", pace(&p.rollback));
                if let Some(rules) = &self.analysis {
                    let _ = writeln!(
                        s,
                        "  analysis:  each monitor window, {}",
                        analysis_line(Some(rules))
                    );
                }
            }
            StrategyKind::Canary => {
                let steps: Vec<String> = p
                    .canary
                    .steps
                    .iter()
                    .map(|st| match st.hold {
                        Hold::For(d) if d.is_zero() => format!("{}%", st.percent),
                        Hold::For(d) => format!("{}% for {}", st.percent, format_duration(d)),
                        Hold::UntilPromoted => format!("{}% until promoted", st.percent),
                    })
                    .collect();
                let _ = writeln!(s, "  weights:   {}", steps.join(" -> "));
                let _ = writeln!(s, "  analysis:  {}", analysis_line(self.analysis.as_ref()));
            }
            StrategyKind::BlueGreen => {
                let _ = writeln!(
                    s,
                    "  switch:    every new instance healthy, then 100% of requests in one reload"
                );
                if let Some(rules) = &self.analysis {
                    let _ = writeln!(s, "  analysis:  {}", switch_analysis(p, rules));
                }
            }
        }
        let _ = writeln!(
            s,
            "  capacity:  never fewer than {} healthy, routed instance{}{}",
            self.capacity_floor,
            plural(self.capacity_floor),
            if self.rollback_floor != self.capacity_floor {
                format!(" ({} during a rollback)", self.rollback_floor)
            } else {
                String::new()
            }
        );
        let _ = writeln!(
            s,
            "  timeouts:  start {}, drain {}, stop grace {}",
            format_duration(p.timeouts.start),
            format_duration(p.timeouts.drain),
            format_duration(p.timeouts.stop_grace)
        );
        s
    }
}

/// What judges a canary's steps, in one line: the rules, or that nothing
/// does (today's behaviour without rules: a step passes when its hold ends).
pub fn analysis_line(rules: Option<&AnalysisRules>) -> String {
    match rules {
        Some(r) if r.reads_proxy_log() => format!("from the proxy's own access log: {r}"),
        Some(r) => format!("from Prometheus: {r}"),
        None => "none configured: each step passes when its hold ends, whatever the new revision answers (rules: x-rollout.analysis, or --max-error-rate / --max-p99 / --prometheus-query)".to_string(),
    }
}

/// When and by what a blue-green switch is judged: every second of the
/// monitor window after it, switched back on a failing verdict.
pub fn switch_analysis(p: &Plan, rules: &AnalysisRules) -> String {
    if p.update.monitor.is_zero() {
        return "none: the monitor window is 0s, so nothing is judged after the switch (set deploy.update_config.monitor)".to_string();
    }
    format!(
        "every second of the {} monitor window after the switch (switched back on a failing verdict), {}",
        format_duration(p.update.monitor),
        analysis_line(Some(rules))
    )
}

fn pace(u: &UpdateConfig) -> String {
    format!(
        "parallelism {}, {}, delay {}, failure_action {}, monitor {}, max_failure_ratio {}",
        u.parallelism,
        u.order,
        format_duration(u.delay),
        u.failure_action,
        format_duration(u.monitor),
        u.max_failure_ratio
    )
}

fn revision(r: &Revision) -> String {
    let short: String = r.id.chars().take(12).collect();
    if r.image.is_empty() {
        format!("revision {short}")
    } else {
        format!("{} ({short})", r.image)
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}
