//! A service's rollout settings in `rollout-core`'s types, and the
//! command-line overrides on top of them.

use crate::error::ComposeError;
use crate::project::{Flavour, Project};
use rollout_core::analysis::{
    AnalysisRules, Inconclusive, LatencyLimit, MetricQuery, PrometheusRules,
};
use rollout_core::config::{failure_ratio, Timeouts, RATIO_EXPECTED};
use rollout_core::strategy::{
    BlueGreenConfig, CanaryConfig, CanaryStep, Hold, Plan, TrafficLayout, Verification,
};
use rollout_core::{
    FailureAction, Order, PullPolicy, Revision, RollbackConfig, ServiceRef, StrategyKind,
    UpdateConfig,
};
use serde::Serialize;
use std::time::Duration;

/// Everything the Compose files say about rolling out one service, with
/// the project's `x-rollout` under the service's and the defaults filled in.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Settings {
    /// The service, in its project.
    pub service: ServiceRef,
    /// The image new instances start from: the one the files name, or, for
    /// a service with `build:` and no `image:`, the one its Compose tool
    /// builds for it (`<project>-<service>` under v2, `<project>_<service>`
    /// under v1, see [`built_image`]); `None` when neither is written.
    pub image: Option<String>,
    /// Whether the service has a `build:` section (`--build` needs one).
    pub buildable: bool,
    /// Whether the image is the one Compose builds for the service (it has
    /// `build:` and no `image:`): it is built, never pulled.
    pub built: bool,
    /// When the image is pulled before the rollout: `--pull`, else the
    /// service's `pull_policy`, else `missing`.
    pub pull: PullPolicy,
    /// Whether the Compose tool builds the service's image first
    /// (`--build`, or `pull_policy: build`).
    pub build: bool,
    /// Desired replicas.
    pub replicas: usize,
    /// The strategy: `x-rollout.strategy`, else blue-green for a colour of
    /// a two-colour layout, else rolling.
    pub strategy: StrategyKind,
    /// `deploy.update_config`.
    pub update: UpdateConfig,
    /// `deploy.rollback_config`.
    pub rollback: RollbackConfig,
    /// Start and drain timeouts (`x-rollout`) and `stop_grace_period`.
    pub timeouts: Timeouts,
    /// Canary steps (`x-rollout.canary`, else 10/25/50/75/100 % holding 30 s).
    pub canary: CanaryConfig,
    /// Blue-green settings (`x-rollout.verify`, `keep_old_for`).
    pub blue_green: BlueGreenConfig,
    /// One service, or two colours taking turns (`x-rollout.colours`, or
    /// services named `blue` and `green`, as in the seed).
    pub layout: TrafficLayout,
    /// The proxy service: `x-rollout.proxy`, else the one service named
    /// `nginx` or running an nginx image, else `None`: the service has no
    /// proxy in front and is rolled out without traffic routing (see
    /// [`Settings::resolve`]).
    pub proxy: Option<String>,
    /// What kind of proxy [`Settings::proxy`] is: HAProxy when the service
    /// is named `haproxy` or runs an haproxy image, else nginx (not written
    /// out for nginx, so that earlier outputs stay as they were).
    #[serde(skip_serializing_if = "ProxyKind::is_nginx")]
    pub proxy_kind: ProxyKind,
    /// The nginx services found when several could be the proxy and none is
    /// named with `x-rollout.proxy` (a rollout is refused then); else empty.
    pub proxy_candidates: Vec<String>,
    /// The service's `ports` entries, where each was written: clients reach
    /// its instances directly through them.
    pub published_ports: Vec<String>,
    /// The proxy's config path (`x-rollout.proxy_config`), if set.
    pub proxy_config: Option<String>,
    /// The upstream's name (`x-rollout.upstream`), if set.
    pub upstream: Option<String>,
    /// The port behind the proxy (`x-rollout.port`), if set.
    pub port: Option<u16>,
    /// The tool's own HTTP health probe (`x-rollout.health`), if set.
    pub health_probe: Option<Verification>,
    /// Why old and new instances cannot run side by side (host ports,
    /// `container_name`); empty when they can.
    pub side_by_side_conflicts: Vec<String>,
    /// The hooks (`x-rollout.hooks`, the service's over the project's,
    /// field by field; the `--hook-*` and `--webhook` flags on top).
    pub hooks: rollout_core::hooks::Hooks,
    /// The rules canary steps are judged by (`x-rollout.analysis` and the
    /// `--max-error-rate` family of flags); `None`: no analysis, every step
    /// passes once its hold is over.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub analysis: Option<AnalysisRules>,
}

/// A canary step given on the command line (`50` or `50:1m`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StepOverride {
    /// Percent of requests to the new revision.
    pub percent: u32,
    /// Its hold, when the step names one.
    pub hold: Option<Hold>,
}

/// Command-line settings that win over the Compose files. `None` keeps
/// what the files say.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Overrides {
    /// `--strategy`.
    pub strategy: Option<StrategyKind>,
    /// `--parallelism`.
    pub parallelism: Option<u64>,
    /// `--delay`.
    pub delay: Option<Duration>,
    /// `--failure-action`.
    pub failure_action: Option<FailureAction>,
    /// `--monitor`.
    pub monitor: Option<Duration>,
    /// `--max-failure-ratio`.
    pub max_failure_ratio: Option<f32>,
    /// `--order`.
    pub order: Option<Order>,
    /// `--start-timeout`.
    pub start_timeout: Option<Duration>,
    /// `--drain-timeout`.
    pub drain_timeout: Option<Duration>,
    /// `--canary-steps`: percents, each with its own hold or none.
    pub canary_steps: Option<Vec<StepOverride>>,
    /// `--canary-hold`: the hold of the steps that name none (with
    /// `--canary-steps`), or of every configured step (alone).
    pub canary_hold: Option<Hold>,
    /// `--stop-old`.
    pub stop_old: Option<bool>,
    /// `--pull`.
    pub pull: Option<PullPolicy>,
    /// `--build`.
    pub build: Option<bool>,
    /// `--hook-pre`, `--hook-post`, `--hook-on-failure`, `--hook-timeout`,
    /// `--webhook`: each wins over its field of `x-rollout.hooks`.
    pub hooks: rollout_core::hooks::Hooks,
    /// `--max-error-rate`.
    pub max_error_rate: Option<f64>,
    /// `--max-p99`.
    pub max_p99: Option<LatencyLimit>,
    /// `--min-requests`.
    pub min_requests: Option<u64>,
    /// `--inconclusive`.
    pub inconclusive: Option<Inconclusive>,
    /// `--failing-windows`.
    pub failing_windows: Option<u32>,
    /// `--analysis-window`.
    pub analysis_window: Option<Duration>,
    /// `--prometheus`: the server the queries are asked of (checked).
    pub prometheus_url: Option<String>,
    /// `--prometheus-query` (repeated): they replace the configured queries.
    pub prometheus_queries: Vec<MetricQuery>,
}

impl Project {
    /// The rollout settings of `service`, or an error listing the services.
    pub fn settings(&self, service: &str) -> Result<Settings, ComposeError> {
        let svc = self.service(service)?;
        let ext = svc.rollout.or(&self.rollout);
        let colours = ext.colours.clone().or_else(|| {
            (self.services.contains_key("blue") && self.services.contains_key("green"))
                .then(|| ("blue".to_string(), "green".to_string()))
        });
        let other = colours.as_ref().and_then(|(a, b)| {
            if a == service {
                Some(b.clone())
            } else if b == service {
                Some(a.clone())
            } else {
                None
            }
        });
        let layout = match &other {
            Some(other) => TrafficLayout::Colours {
                other: ServiceRef::new(&self.name, other),
                stop_other: ext.stop_old.unwrap_or(false),
            },
            None => TrafficLayout::Single,
        };
        let strategy = ext.strategy.unwrap_or(match layout {
            TrafficLayout::Colours { .. } => StrategyKind::BlueGreen,
            TrafficLayout::Single => StrategyKind::Rolling,
        });
        let defaults = Timeouts::default();
        let mut proxy_candidates = Vec::new();
        let proxy = ext.proxy.clone().or_else(|| {
            let candidates: Vec<&String> = self
                .services
                .iter()
                .filter(|(name, s)| {
                    name.as_str() != service
                        && Some(name.as_str()) != other.as_deref()
                        && proxy_kind_of(name, s.image.as_deref()).is_some()
                })
                .map(|(name, _)| name)
                .collect();
            match candidates.as_slice() {
                [one] => Some((*one).clone()),
                several => {
                    proxy_candidates = several.iter().map(|s| (*s).clone()).collect();
                    proxy_candidates.sort();
                    None
                }
            }
        });
        let proxy_kind = proxy
            .as_deref()
            .and_then(|p| {
                let image = self.services.get(p).and_then(|s| s.image.as_deref());
                proxy_kind_of(p, image)
            })
            .unwrap_or_default();
        Ok(Settings {
            service: ServiceRef::new(&self.name, service),
            image: svc.image.clone().or_else(|| {
                svc.build
                    .then(|| built_image(self.flavour, &self.name, service))
            }),
            buildable: svc.build,
            built: svc.build && svc.image.is_none(),
            pull: svc.pull_policy.unwrap_or_default(),
            build: svc.build_always && svc.build,
            replicas: usize::try_from(svc.replicas).unwrap_or(usize::MAX),
            strategy,
            update: svc.update_config.clone(),
            rollback: svc.rollback_config.clone(),
            timeouts: Timeouts {
                start: ext.start_timeout.unwrap_or(defaults.start),
                drain: ext.drain_timeout.unwrap_or(defaults.drain),
                stop_grace: svc.stop_grace_period.unwrap_or(defaults.stop_grace),
            },
            canary: ext.canary.clone().unwrap_or_default(),
            blue_green: BlueGreenConfig {
                verify: ext.verify.clone(),
                keep_old_for: ext.keep_old_for,
            },
            layout,
            proxy,
            proxy_kind,
            proxy_candidates,
            published_ports: svc
                .ports
                .iter()
                .map(|p| {
                    let host = p.published.as_deref().filter(|h| !h.is_empty());
                    let mapping = match host {
                        Some(h) => format!("{h}:{}", p.target),
                        None => p.target.clone(),
                    };
                    format!("{mapping} (ports at {}:{})", p.pos.file, p.pos.line)
                })
                .collect(),
            proxy_config: ext.proxy_config.clone(),
            upstream: ext.upstream.clone(),
            port: ext.port,
            health_probe: ext.health.clone(),
            side_by_side_conflicts: svc.side_by_side_conflicts(),
            hooks: ext.hooks.clone().unwrap_or_default(),
            analysis: ext.analysis.clone(),
        })
    }
}

impl Settings {
    /// The analysis flags over `x-rollout.analysis`, field by field; flags
    /// with no rules configured start from the defaults, and rules without
    /// a threshold are refused.
    fn apply_analysis(&mut self, o: &Overrides) -> Result<(), ComposeError> {
        let given = o.max_error_rate.is_some()
            || o.max_p99.is_some()
            || o.min_requests.is_some()
            || o.inconclusive.is_some()
            || o.failing_windows.is_some()
            || o.analysis_window.is_some()
            || o.prometheus_url.is_some()
            || !o.prometheus_queries.is_empty();
        if !given {
            return Ok(());
        }
        let mut rules = self.analysis.clone().unwrap_or_default();
        if let Some(r) = o.max_error_rate {
            rules.max_error_rate = Some(r);
        }
        if let Some(l) = o.max_p99 {
            rules.max_p99 = Some(l);
        }
        if let Some(n) = o.min_requests {
            rules.min_requests = n;
        }
        if let Some(i) = o.inconclusive {
            rules.inconclusive = i;
        }
        if let Some(n) = o.failing_windows {
            if n == 0 {
                return Err(ComposeError::Override {
                    flag: "--failing-windows",
                    message: "must be at least 1".to_string(),
                });
            }
            rules.failing_windows = n;
        }
        if let Some(w) = o.analysis_window {
            if w.is_zero() {
                return Err(ComposeError::Override {
                    flag: "--analysis-window",
                    message: "must be longer than 0s".to_string(),
                });
            }
            rules.window = w;
        }
        if o.prometheus_url.is_some() || !o.prometheus_queries.is_empty() {
            let configured = rules.prometheus.take();
            let url = o
                .prometheus_url
                .clone()
                .or_else(|| configured.as_ref().map(|p| p.url.clone()))
                .ok_or_else(|| ComposeError::Override {
                    flag: "--prometheus-query",
                    message: "needs --prometheus URL (or x-rollout.analysis.prometheus.url): the server to ask".to_string(),
                })?;
            let queries = if o.prometheus_queries.is_empty() {
                configured.map(|p| p.queries).unwrap_or_default()
            } else {
                o.prometheus_queries.clone()
            };
            if queries.is_empty() {
                return Err(ComposeError::Override {
                    flag: "--prometheus",
                    message: "needs at least one --prometheus-query 'QUERY <= MAX' (or x-rollout.analysis.prometheus.queries)".to_string(),
                });
            }
            rules.prometheus = Some(PrometheusRules { url, queries });
        }
        if !rules.judges() {
            return Err(ComposeError::Override {
                flag: "--max-error-rate",
                message: "the analysis flags need a threshold: --max-error-rate, --max-p99 or --prometheus-query (or x-rollout.analysis)".to_string(),
            });
        }
        self.analysis = Some(rules);
        Ok(())
    }
}

/// The image a Compose tool builds for a service that has `build:` and no
/// `image:`: `<project>-<service>` under Compose 2 (`GetImageNameOrDefault`),
/// `<project>_<service>` under 1.29 (`Service.image_name`, which drops the
/// project name's leading `_` and `-`).
pub fn built_image(flavour: Flavour, project: &str, service: &str) -> String {
    match flavour {
        Flavour::V1 => format!("{}_{service}", project.trim_start_matches(['_', '-'])),
        Flavour::V2 => format!("{project}-{service}"),
    }
}

/// The two proxies the plugin routes through.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ProxyKind {
    /// nginx: its config's upstream is rewritten and reloaded.
    #[default]
    Nginx,
    /// HAProxy: a backend's server slots are changed through its runtime API.
    Haproxy,
}

impl ProxyKind {
    /// Whether it is nginx (the default).
    pub fn is_nginx(&self) -> bool {
        *self == ProxyKind::Nginx
    }
}

/// The proxy a service is, by its name or its image; `None` for neither.
fn proxy_kind_of(name: &str, image: Option<&str>) -> Option<ProxyKind> {
    let is = |proxy: &str| name == proxy || image.is_some_and(|i| is_image_of(i, proxy));
    if is("nginx") {
        Some(ProxyKind::Nginx)
    } else if is("haproxy") {
        Some(ProxyKind::Haproxy)
    } else {
        None
    }
}

/// Whether `image` is one of `proxy`: `nginx`, `nginx:1.22`, `library/nginx`,
/// `registry/x/nginx:alpine`, and local tags such as `rollout-nginx:test`
/// (the same for `haproxy`).
fn is_image_of(image: &str, proxy: &str) -> bool {
    let name = image.split(['@']).next().unwrap_or(image);
    let last = name.rsplit('/').next().unwrap_or(name);
    let repo = last.split(':').next().unwrap_or(last);
    repo == proxy
        || repo.strip_suffix(proxy).is_some_and(|r| r.ends_with('-'))
        || repo.strip_prefix(proxy).is_some_and(|r| r.starts_with('-'))
}

impl Settings {
    /// Applies command-line overrides, checking what the flags' own parsing
    /// cannot (a ratio above 1, canary steps that do not increase to 100).
    pub fn apply(&mut self, o: &Overrides) -> Result<(), ComposeError> {
        if let Some(s) = o.strategy {
            self.strategy = s;
        }
        if let Some(p) = o.parallelism {
            self.update.parallelism = p;
        }
        if let Some(d) = o.delay {
            self.update.delay = d;
        }
        if let Some(a) = o.failure_action {
            self.update.failure_action = a;
        }
        if let Some(m) = o.monitor {
            self.update.monitor = m;
        }
        if let Some(r) = o.max_failure_ratio {
            self.update.max_failure_ratio =
                failure_ratio(r.into()).ok_or_else(|| ComposeError::Override {
                    flag: "--max-failure-ratio",
                    message: format!("expected {RATIO_EXPECTED}, found {r}"),
                })?;
        }
        if let Some(order) = o.order {
            self.update.order = order;
        }
        if let Some(t) = o.start_timeout {
            if t.is_zero() {
                return Err(ComposeError::Override {
                    flag: "--start-timeout",
                    message: "must be longer than 0s".to_string(),
                });
            }
            self.timeouts.start = t;
        }
        if let Some(t) = o.drain_timeout {
            self.timeouts.drain = t;
        }
        if let Some(given) = &o.canary_steps {
            // Steps without a hold take --canary-hold, else the hold the
            // configuration gives its first step (x-rollout.canary.hold or 30s).
            let default_hold = o
                .canary_hold
                .or_else(|| self.canary.steps.first().map(|s| s.hold))
                .unwrap_or(Hold::For(Duration::from_secs(30)));
            let steps: Vec<CanaryStep> = given
                .iter()
                .map(|s| CanaryStep {
                    percent: s.percent,
                    hold: s.hold.unwrap_or(default_hold),
                })
                .collect();
            check_steps(&steps).map_err(|message| ComposeError::Override {
                flag: "--canary-steps",
                message,
            })?;
            self.canary = CanaryConfig { steps };
        } else if let Some(hold) = o.canary_hold {
            for step in &mut self.canary.steps {
                step.hold = hold;
            }
        }
        self.apply_analysis(o)?;
        if let Some(pull) = o.pull {
            self.pull = pull;
        }
        self.hooks = o.hooks.or(&self.hooks);
        if let Some(build) = o.build {
            self.build = build;
        }
        if self.build && !self.buildable {
            return Err(ComposeError::Override {
                flag: "--build",
                message: format!(
                    "{} has no build section to build its image from",
                    self.service
                ),
            });
        }
        if let Some(stop) = o.stop_old {
            if let TrafficLayout::Colours { stop_other, .. } = &mut self.layout {
                *stop_other = stop;
            }
        }
        Ok(())
    }

    /// Settles what the service's Compose definition forces on a rollout,
    /// after the overrides: a rollout needs an image; a service
    /// with host ports or a `container_name` cannot run old and new
    /// instances side by side, so a rolling update falls back to stop-first
    /// (and its rollback too), and is refused when stop-first would leave no
    /// replica serving, as is a strategy that needs both sets at once.
    ///
    /// A service with no proxy in front (no `x-rollout.proxy`, no nginx
    /// service in the project) takes no requests through one: a queue
    /// worker, a scheduler. It is rolled out without traffic routing
    /// ([`Settings::routed`] is false), which only the rolling strategy of a
    /// single service can do; blue-green, canary, two colours and the
    /// tool's own probe (sent from inside the proxy) are refused, and so is
    /// a service that publishes ports, whose clients would reach instances
    /// the tool cannot take out of traffic before stopping them. Several
    /// nginx services with none named are refused too: one of them may
    /// route the service. Returns the warnings for the operator.
    pub fn resolve(&mut self) -> Result<Vec<String>, ComposeError> {
        let mut warnings = Vec::new();
        if self.proxy.is_none() {
            self.check_unrouted()?;
        }
        if self.image.is_none() {
            return Err(ComposeError::NoImage {
                service: self.service.clone(),
            });
        }
        if self.side_by_side_conflicts.is_empty() || self.layout != TrafficLayout::Single {
            return Ok(warnings);
        }
        let why = self.side_by_side_conflicts.join("; ");
        if self.strategy != StrategyKind::Rolling {
            return Err(ComposeError::NotSideBySide {
                service: self.service.clone(),
                why,
                strategy: self.strategy,
            });
        }
        let workers = self.update.workers(self.replicas);
        if self.update.order == Order::StartFirst {
            warnings.push(format!(
                "{} cannot run old and new instances side by side ({why}): falling back to stop-first",
                self.service
            ));
            self.update.order = Order::StopFirst;
        }
        if self.rollback.order == Order::StartFirst {
            self.rollback.order = Order::StopFirst;
        }
        if workers >= self.replicas {
            return Err(ComposeError::NoneServing {
                service: self.service.clone(),
                why,
                replicas: self.replicas,
            });
        }
        Ok(warnings)
    }

    /// Whether the service's traffic goes through a proxy; `false` for a
    /// service with no proxy in front, rolled out without traffic routing.
    pub fn routed(&self) -> bool {
        self.proxy.is_some()
    }

    /// What a rollout with no proxy in front cannot do (see
    /// [`Settings::resolve`]).
    fn check_unrouted(&self) -> Result<(), ComposeError> {
        let service = self.service.clone();
        if !self.proxy_candidates.is_empty() {
            return Err(ComposeError::SeveralProxies {
                service,
                candidates: self.proxy_candidates.clone(),
            });
        }
        let add = format!(
            "add an nginx service whose config has `upstream backend {{ server {}:PORT; }}` (see examples/rolling), or name it with x-rollout.proxy",
            self.service.service
        );
        let refuse = |why: String, hint: String| {
            Err(ComposeError::NeedsProxy {
                service: service.clone(),
                why,
                hint,
            })
        };
        if let TrafficLayout::Colours { other, .. } = &self.layout {
            return refuse(
                format!(
                    "its colours ({} and {}) take turns only through one",
                    self.service.service, other.service
                ),
                add,
            );
        }
        if self.strategy != StrategyKind::Rolling {
            return refuse(
                format!(
                    "{} moves its traffic through the proxy: without one there is nothing to switch or weigh",
                    self.strategy
                ),
                format!("roll it out with --strategy rolling (x-rollout.strategy: rolling), or {add}"),
            );
        }
        if self.health_probe.is_some() {
            return refuse(
                "x-rollout.health is a probe sent from inside the proxy".to_string(),
                format!("give the service a Compose healthcheck instead, or {add}"),
            );
        }
        if !self.published_ports.is_empty() {
            return refuse(
                format!(
                    "it publishes {}: clients reach its instances directly, so none could be taken out of traffic before it is stopped",
                    self.published_ports.join(", ")
                ),
                format!("publish the port on a proxy in front of it instead: {add}"),
            );
        }
        Ok(())
    }

    /// The plan a strategy runs to bring the service to `target` (whose id
    /// the backend computes: the Compose config hash).
    pub fn plan(&self, target: Revision) -> Plan {
        Plan {
            service: self.service.clone(),
            target,
            replicas: self.replicas,
            update: self.update.clone(),
            rollback: self.rollback.clone(),
            timeouts: self.timeouts.clone(),
            layout: self.layout.clone(),
            canary: self.canary.clone(),
            blue_green: self.blue_green.clone(),
        }
    }
}

/// Canary steps must be 1 to 100, increasing, and end at 100.
pub fn check_steps(steps: &[CanaryStep]) -> Result<(), String> {
    let mut prev = 0;
    for s in steps {
        if !(1..=100).contains(&s.percent) {
            return Err(format!("a step must be from 1 to 100, found {}", s.percent));
        }
        if s.percent <= prev {
            return Err(format!(
                "steps must increase, found {} after {prev}",
                s.percent
            ));
        }
        prev = s.percent;
    }
    if prev != 100 {
        return Err(format!("the last step must be 100, found {prev}"));
    }
    Ok(())
}

#[cfg(test)]
mod proxy_kind_tests {
    use super::*;

    #[test]
    fn a_proxy_is_known_by_its_name_or_its_image() {
        for image in [
            "nginx",
            "nginx:1.22",
            "library/nginx",
            "r.io/x/nginx:alpine",
        ] {
            assert_eq!(proxy_kind_of("web", Some(image)), Some(ProxyKind::Nginx));
        }
        assert_eq!(
            proxy_kind_of("lb", Some("rollout-nginx:1.22")),
            Some(ProxyKind::Nginx)
        );
        for image in [
            "haproxy:2.6",
            "rollout-haproxy:2.6",
            "haproxytech/haproxy-alpine",
        ] {
            assert_eq!(proxy_kind_of("lb", Some(image)), Some(ProxyKind::Haproxy));
        }
        assert_eq!(proxy_kind_of("haproxy", None), Some(ProxyKind::Haproxy));
        assert_eq!(
            proxy_kind_of("nginx", Some("custom:1")),
            Some(ProxyKind::Nginx)
        );
        assert_eq!(proxy_kind_of("app", Some("nginxish:1")), None);
        assert_eq!(proxy_kind_of("app", Some("rollout-demo:v1")), None);
    }
}
