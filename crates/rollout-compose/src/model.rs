//! The typed view of a service: the fields a rollout reads, and nothing
//! else (Compose itself keeps the rest).

use crate::error::{ComposeError, Pos};
use crate::read::{self, join, Result};
use crate::yaml::{Node, Value};
use rollout_core::analysis::{
    parse_limit, parse_prometheus_url, parse_rate, AnalysisRules, Inconclusive, LatencyLimit,
    MetricQuery, PrometheusRules,
};
use rollout_core::config::{failure_ratio, RATIO_EXPECTED};
use rollout_core::strategy::{CanaryConfig, CanaryStep, Hold, Verification};
use rollout_core::word::{each, either, Word};
use rollout_core::{FailureAction, PullPolicy, RollbackConfig, StrategyKind, UpdateConfig};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

/// One service of the project, as the merged files define it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Service {
    /// The service's name.
    pub name: String,
    /// Where its definition starts.
    #[serde(skip)]
    pub pos: Pos,
    /// `image`, if written.
    pub image: Option<String>,
    /// Whether it has a `build` section (its image is then built by Compose).
    pub build: bool,
    /// `pull_policy`, if written: `always`, `missing` (or `if_not_present`),
    /// `never`; `build` is read as `never` with [`Service::build_always`];
    /// `daily`, `weekly` and `every_<duration>` as `missing` (when the image
    /// was last pulled is not known here).
    pub pull_policy: Option<PullPolicy>,
    /// `pull_policy: build`: the image is built before every rollout.
    pub build_always: bool,
    /// `deploy.replicas`, or `scale`; 1 when neither is written.
    pub replicas: u64,
    /// `deploy.update_config`, with Swarm's default for each absent field.
    pub update_config: UpdateConfig,
    /// `deploy.rollback_config`, with Swarm's default for each absent field.
    pub rollback_config: RollbackConfig,
    /// `healthcheck`, if written (else the image's applies).
    pub healthcheck: Option<Healthcheck>,
    /// `stop_grace_period`, if written (the engine's default is 10 s).
    #[serde(with = "rollout_core::duration::serde_duration_opt")]
    pub stop_grace_period: Option<Duration>,
    /// `ports`.
    pub ports: Vec<Port>,
    /// `volumes`.
    pub volumes: Vec<Mount>,
    /// `container_name`, if written.
    pub container_name: Option<String>,
    /// `depends_on`, by service name.
    pub depends_on: BTreeMap<String, Dependency>,
    /// `profiles`; empty means always active.
    pub profiles: Vec<String>,
    /// The service's own `x-rollout` (the project's is applied later, in
    /// [`Settings`](crate::Settings)).
    pub rollout: RolloutExt,
}

impl Service {
    /// Why old and new instances of this service cannot run side by side:
    /// a fixed host port or a `container_name` (empty when they can).
    pub fn side_by_side_conflicts(&self) -> Vec<String> {
        let mut why = Vec::new();
        if let Some(name) = &self.container_name {
            why.push(format!("container_name {name:?} allows one container only"));
        }
        for p in self.ports.iter().filter(|p| p.fixed_host_port()) {
            why.push(format!(
                "host port {} is published (ports at {}:{})",
                p.published.as_deref().unwrap_or_default(),
                p.pos.file,
                p.pos.line
            ));
        }
        why
    }
}

/// A `healthcheck` section.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Healthcheck {
    /// `test`; `None` keeps the image's command.
    pub test: Option<HealthTest>,
    /// `interval`.
    #[serde(with = "rollout_core::duration::serde_duration_opt")]
    pub interval: Option<Duration>,
    /// `timeout`.
    #[serde(with = "rollout_core::duration::serde_duration_opt")]
    pub timeout: Option<Duration>,
    /// `retries`.
    pub retries: Option<u64>,
    /// `start_period`.
    #[serde(with = "rollout_core::duration::serde_duration_opt")]
    pub start_period: Option<Duration>,
    /// `disable: true` (or `test: ["NONE"]`).
    pub disable: bool,
}

/// A health check command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum HealthTest {
    /// `["CMD", args...]`: run directly.
    Cmd(Vec<String>),
    /// A string, or `["CMD-SHELL", "..."]`: run with the container's shell.
    Shell(String),
}

/// One entry of `ports`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Port {
    /// The container port or range (`8000`, `8000-8010`).
    pub target: String,
    /// The host port or range; `None` or empty means an ephemeral one.
    pub published: Option<String>,
    /// The host address, if given.
    pub host_ip: Option<String>,
    /// `tcp` (default), `udp` or `sctp`.
    pub protocol: String,
    /// Where it was written.
    #[serde(skip)]
    pub pos: Pos,
}

impl Port {
    /// Whether a fixed host port is published (two containers cannot both
    /// bind it).
    pub fn fixed_host_port(&self) -> bool {
        self.published.as_deref().is_some_and(|p| !p.is_empty())
    }
}

/// What a mount mounts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum MountKind {
    /// A host path.
    Bind,
    /// A named or anonymous volume.
    Volume,
    /// A tmpfs.
    Tmpfs,
    /// Anything else (`npipe`, `cluster`, `image`).
    Other,
}

/// One entry of `volumes`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Mount {
    /// Its kind.
    pub kind: MountKind,
    /// For a bind, the host path made absolute against the project
    /// directory; for a volume, its name (`None` when anonymous).
    pub source: Option<String>,
    /// The path in the container.
    pub target: String,
    /// Mounted read-only.
    pub read_only: bool,
    /// Where it was written.
    #[serde(skip)]
    pub pos: Pos,
}

/// One entry of `depends_on`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Dependency {
    /// `service_started` (default), `service_healthy` or
    /// `service_completed_successfully`.
    pub condition: String,
    /// `required` (default true).
    pub required: bool,
}

/// The `x-rollout` extension: what Compose has no field for. Every field is
/// optional; a service's own extension wins over the project's, field by
/// field.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct RolloutExt {
    /// `strategy`: rolling, blue-green or canary.
    pub strategy: Option<StrategyKind>,
    /// `proxy`: the nginx service in front.
    pub proxy: Option<String>,
    /// `proxy_config`: the path of the config file inside the proxy.
    pub proxy_config: Option<String>,
    /// `upstream`: the nginx upstream's name.
    pub upstream: Option<String>,
    /// `port`: the port the service listens on, behind the proxy.
    pub port: Option<u16>,
    /// `colours`: the two services that take turns behind the proxy.
    pub colours: Option<(String, String)>,
    /// `canary.steps` (and `canary.hold`, the default hold).
    pub canary: Option<CanaryConfig>,
    /// `start_timeout`: how long a new instance may take to be healthy.
    #[serde(with = "rollout_core::duration::serde_duration_opt")]
    pub start_timeout: Option<Duration>,
    /// `drain_timeout`: how long a drain may take.
    #[serde(with = "rollout_core::duration::serde_duration_opt")]
    pub drain_timeout: Option<Duration>,
    /// `health`: the tool's own HTTP probe, for images without a health check.
    pub health: Option<Verification>,
    /// `verify`: a request each new instance must answer before the switch.
    pub verify: Option<Verification>,
    /// `stop_old`: stop the other colour once this one is live.
    pub stop_old: Option<bool>,
    /// `keep_old_for`: how long to keep the old set after a blue-green switch.
    #[serde(with = "rollout_core::duration::serde_duration_opt")]
    pub keep_old_for: Option<Duration>,
    /// `hooks`: commands run around the rollout, and the webhook told.
    pub hooks: Option<rollout_core::hooks::Hooks>,
    /// `analysis`: the rules a canary step is judged by.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub analysis: Option<AnalysisRules>,
}

impl RolloutExt {
    /// `self` with each absent field taken from `fallback`.
    pub fn or(&self, fallback: &RolloutExt) -> RolloutExt {
        RolloutExt {
            strategy: self.strategy.or(fallback.strategy),
            proxy: self.proxy.clone().or_else(|| fallback.proxy.clone()),
            proxy_config: self
                .proxy_config
                .clone()
                .or_else(|| fallback.proxy_config.clone()),
            upstream: self.upstream.clone().or_else(|| fallback.upstream.clone()),
            port: self.port.or(fallback.port),
            colours: self.colours.clone().or_else(|| fallback.colours.clone()),
            canary: self.canary.clone().or_else(|| fallback.canary.clone()),
            start_timeout: self.start_timeout.or(fallback.start_timeout),
            drain_timeout: self.drain_timeout.or(fallback.drain_timeout),
            health: self.health.clone().or_else(|| fallback.health.clone()),
            verify: self.verify.clone().or_else(|| fallback.verify.clone()),
            stop_old: self.stop_old.or(fallback.stop_old),
            keep_old_for: self.keep_old_for.or(fallback.keep_old_for),
            hooks: match (&self.hooks, &fallback.hooks) {
                (Some(own), Some(project)) => Some(own.or(project)),
                (own, project) => own.clone().or_else(|| project.clone()),
            },
            analysis: self.analysis.clone().or_else(|| fallback.analysis.clone()),
        }
    }
}

const EXT_KEYS: &[&str] = &[
    "strategy",
    "proxy",
    "proxy_config",
    "upstream",
    "port",
    "colours",
    "canary",
    "start_timeout",
    "drain_timeout",
    "health",
    "verify",
    "stop_old",
    "keep_old_for",
    "hooks",
    "analysis",
];

/// Reads an `x-rollout` mapping at `path`.
pub(crate) fn parse_ext(node: &Node, path: &str) -> Result<RolloutExt> {
    let entries = read::map(node, path)?;
    read::only_keys(entries, path, EXT_KEYS)?;
    let mut ext = RolloutExt::default();
    for e in entries {
        let p = join(path, &e.key);
        let v = &e.value;
        if v.is_null() {
            continue;
        }
        match e.key.as_str() {
            "strategy" => {
                let s = read::string(v, &p)?;
                ext.strategy = Some(s.parse::<StrategyKind>().map_err(|e| {
                    let m = format!(
                        "unknown strategy {s:?}; strategies are {}",
                        each(&e.accepted)
                    );
                    ComposeError::field(&v.pos, &p, m)
                })?);
            }
            "proxy" => ext.proxy = Some(read::string(v, &p)?),
            "proxy_config" => ext.proxy_config = Some(read::string(v, &p)?),
            "upstream" => ext.upstream = Some(read::string(v, &p)?),
            "port" => ext.port = Some(read::port(v, &p)?),
            "colours" => {
                let list = read::string_list(v, &p)?;
                match <[String; 2]>::try_from(list) {
                    Ok([a, b]) if a != b => ext.colours = Some((a, b)),
                    _ => {
                        return Err(read::expected(
                            v,
                            &p,
                            "a list of two different service names",
                        ))
                    }
                }
            }
            "canary" => ext.canary = Some(parse_canary(v, &p)?),
            "start_timeout" => ext.start_timeout = Some(positive(v, &p)?),
            "drain_timeout" => ext.drain_timeout = Some(read::duration(v, &p)?),
            "health" => ext.health = Some(parse_verification(v, &p)?),
            "verify" => ext.verify = Some(parse_verification(v, &p)?),
            "stop_old" => ext.stop_old = Some(read::boolean(v, &p)?),
            "keep_old_for" => ext.keep_old_for = Some(read::duration(v, &p)?),
            "hooks" => ext.hooks = Some(crate::hooks::parse_hooks(v, &p)?),
            "analysis" => ext.analysis = Some(parse_analysis(v, &p, &e.key_pos)?),
            _ => {}
        }
    }
    Ok(ext)
}

/// `x-rollout.analysis`: at least one threshold (`max_error_rate`,
/// `max_p99`), and what a verdict needs.
fn parse_analysis(node: &Node, path: &str, key: &Pos) -> Result<AnalysisRules> {
    let entries = read::map(node, path)?;
    read::only_keys(
        entries,
        path,
        &[
            "max_error_rate",
            "max_p99",
            "min_requests",
            "inconclusive",
            "failing_windows",
            "window",
            "prometheus",
        ],
    )?;
    let mut rules = AnalysisRules::default();
    for e in entries {
        let p = join(path, &e.key);
        let v = &e.value;
        if v.is_null() {
            continue;
        }
        let text = || read::string(v, &p);
        match e.key.as_str() {
            "max_error_rate" => {
                rules.max_error_rate =
                    Some(parse_rate(&text()?).map_err(|m| ComposeError::field(&v.pos, &p, m))?)
            }
            "max_p99" => {
                rules.max_p99 = Some(
                    text()?
                        .parse::<LatencyLimit>()
                        .map_err(|m| ComposeError::field(&v.pos, &p, m))?,
                )
            }
            "min_requests" => rules.min_requests = read::uint(v, &p)?,
            "inconclusive" => rules.inconclusive = read::word::<Inconclusive>(v, &p)?,
            "failing_windows" => {
                let n = read::uint(v, &p)?;
                rules.failing_windows = u32::try_from(n)
                    .ok()
                    .filter(|n| *n >= 1)
                    .ok_or_else(|| read::expected(v, &p, "a count of at least 1"))?;
            }
            "window" => rules.window = positive(v, &p)?,
            "prometheus" => rules.prometheus = Some(parse_prometheus(v, &p, &e.key_pos)?),
            _ => {}
        }
    }
    if !rules.judges() {
        return Err(ComposeError::field(
            key,
            path,
            "needs a threshold: max_error_rate (such as 5%), max_p99 (such as 500ms or 1.5x) or prometheus queries",
        ));
    }
    Ok(rules)
}

/// `x-rollout.analysis.prometheus`: `url` and at least one of `queries`,
/// each `{query, max}`.
fn parse_prometheus(node: &Node, path: &str, key: &Pos) -> Result<PrometheusRules> {
    let entries = read::map(node, path)?;
    read::only_keys(entries, path, &["url", "queries"])?;
    let mut url = None;
    let mut queries = Vec::new();
    for e in entries {
        let p = join(path, &e.key);
        let v = &e.value;
        match e.key.as_str() {
            "url" => {
                url = Some(
                    parse_prometheus_url(&read::string(v, &p)?)
                        .map_err(|m| ComposeError::field(&v.pos, &p, m))?,
                )
            }
            "queries" => {
                let Value::Seq(items) = &v.value else {
                    return Err(read::expected(v, &p, "a list of {query, max}"));
                };
                for (i, item) in items.iter().enumerate() {
                    let ip = format!("{p}[{i}]");
                    let fields = read::map(item, &ip)?;
                    read::only_keys(fields, &ip, &["query", "max"])?;
                    let (Some(query), Some(max)) = (item.get("query"), item.get("max")) else {
                        return Err(read::expected(item, &ip, "a query and its max"));
                    };
                    let qp = join(&ip, "query");
                    let query = read::string(query, &qp)?;
                    if query.trim().is_empty() {
                        return Err(read::expected(item, &qp, "a PromQL query"));
                    }
                    let mp = join(&ip, "max");
                    let max = read::float(max, &mp).and_then(|m| {
                        parse_limit(&m.to_string())
                            .map_err(|e| ComposeError::field(&max.pos, &mp, e))
                    })?;
                    queries.push(MetricQuery { query, max });
                }
            }
            _ => {}
        }
    }
    let Some(url) = url else {
        return Err(ComposeError::field(
            key,
            path,
            "needs url: the Prometheus server, such as http://127.0.0.1:9090",
        ));
    };
    if queries.is_empty() {
        return Err(ComposeError::field(
            key,
            path,
            "needs queries: a list of {query, max}",
        ));
    }
    Ok(PrometheusRules { url, queries })
}

fn positive(node: &Node, path: &str) -> Result<Duration> {
    let d = read::duration(node, path)?;
    if d.is_zero() {
        return Err(ComposeError::field(
            &node.pos,
            path,
            "must be longer than 0s",
        ));
    }
    Ok(d)
}

fn parse_canary(node: &Node, path: &str) -> Result<CanaryConfig> {
    let entries = read::map(node, path)?;
    read::only_keys(entries, path, &["steps", "hold"])?;
    let default_hold = match node.get("hold") {
        Some(h) if !h.is_null() => parse_hold(h, &join(path, "hold"))?,
        _ => CanaryConfig::default().steps[0].hold,
    };
    let Some(steps_node) = node.get("steps").filter(|s| !s.is_null()) else {
        let mut config = CanaryConfig::default();
        for step in &mut config.steps {
            step.hold = default_hold;
        }
        return Ok(config);
    };
    let steps_path = join(path, "steps");
    let Some(items) = steps_node.as_seq() else {
        return Err(read::expected(steps_node, &steps_path, "a list of steps"));
    };
    let mut steps = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let p = format!("{steps_path}[{i}]");
        let (percent_node, hold) = match &item.value {
            Value::Map(entries) => {
                read::only_keys(entries, &p, &["percent", "hold"])?;
                let percent = item
                    .get("percent")
                    .ok_or_else(|| ComposeError::field(&item.pos, &p, "a step needs a percent"))?;
                let hold = match item.get("hold") {
                    Some(h) if !h.is_null() => parse_hold(h, &join(&p, "hold"))?,
                    _ => default_hold,
                };
                (percent, hold)
            }
            _ => (item, default_hold),
        };
        let percent = parse_percent(percent_node, &p)?;
        if let Some(prev) = steps.last().map(|s: &CanaryStep| s.percent) {
            if percent <= prev {
                return Err(ComposeError::field(
                    &percent_node.pos,
                    &p,
                    format!("steps must increase, found {percent} after {prev}"),
                ));
            }
        }
        steps.push(CanaryStep { percent, hold });
    }
    match steps.last() {
        None => Err(ComposeError::field(
            &steps_node.pos,
            &steps_path,
            "needs at least one step",
        )),
        Some(last) if last.percent != 100 => Err(ComposeError::field(
            &steps_node.pos,
            &steps_path,
            format!("the last step must be 100, found {}", last.percent),
        )),
        Some(_) => Ok(CanaryConfig { steps }),
    }
}

/// A canary percent: `10` or `"10%"`, 1 to 100.
pub(crate) fn parse_percent(node: &Node, path: &str) -> Result<u32> {
    node.as_str()
        .map(|s| s.trim().trim_end_matches('%'))
        .and_then(|s| s.parse::<u32>().ok())
        .filter(|p| (1..=100).contains(p))
        .ok_or_else(|| read::expected(node, path, "a percent from 1 to 100"))
}

/// A hold: a duration or `until-promoted`.
pub(crate) fn parse_hold(node: &Node, path: &str) -> Result<Hold> {
    if node.as_str() == Some("until-promoted") {
        return Ok(Hold::UntilPromoted);
    }
    match read::duration(node, path) {
        Ok(d) => Ok(Hold::For(d)),
        Err(_) => Err(read::expected(
            node,
            path,
            "a duration such as 30s, or until-promoted",
        )),
    }
}

fn parse_verification(node: &Node, path: &str) -> Result<Verification> {
    let (path_node, status, body) = match &node.value {
        Value::Scalar(_) => (node, 200, None),
        Value::Map(entries) => {
            read::only_keys(entries, path, &["path", "status", "body_contains"])?;
            let path_node = node.get("path").ok_or_else(|| {
                ComposeError::field(&node.pos, path, "needs a path, such as /health")
            })?;
            let status = match node.get("status") {
                Some(s) => {
                    let p = join(path, "status");
                    let v = read::uint(s, &p)?;
                    if !(100..=599).contains(&v) {
                        return Err(read::expected(s, &p, "an HTTP status from 100 to 599"));
                    }
                    v as u16
                }
                None => 200,
            };
            let body = match node.get("body_contains") {
                Some(b) => read::opt_string(b, &join(path, "body_contains"))?,
                None => None,
            };
            (path_node, status, body)
        }
        _ => {
            return Err(read::expected(
                node,
                path,
                "a path such as /health, or a mapping",
            ))
        }
    };
    let p = if path_node.pos == node.pos {
        path.to_string()
    } else {
        join(path, "path")
    };
    let url_path = read::string(path_node, &p)?;
    if !url_path.starts_with('/') {
        return Err(read::expected(path_node, &p, "a path starting with /"));
    }
    Ok(Verification {
        path: url_path,
        status,
        body_contains: body,
    })
}

/// What `pull_policy` accepts, for its error.
const PULL_POLICY_EXPECTED: &str =
    "expected always, missing, if_not_present, never, build, daily, weekly or every_<duration>";

/// A Compose `pull_policy` as a rollout reads it, and whether it asks for a
/// build (`build`); `None` when Compose would refuse it too.
pub(crate) fn pull_policy(written: &str) -> Option<(PullPolicy, bool)> {
    Some(match written {
        "always" => (PullPolicy::Always, false),
        "missing" | "if_not_present" => (PullPolicy::Missing, false),
        "never" => (PullPolicy::Never, false),
        "build" => (PullPolicy::Never, true),
        "daily" | "weekly" => (PullPolicy::Missing, false),
        every
            if every
                .strip_prefix("every_")
                .is_some_and(|d| rollout_core::parse_duration(d).is_ok_and(|d| !d.is_zero())) =>
        {
            (PullPolicy::Missing, false)
        }
        _ => return None,
    })
}

/// Reads `services.<name>`.
pub(crate) fn parse_service(name: &str, node: &Node, project_dir: &Path) -> Result<Service> {
    let path = format!("services.{name}");
    let Value::Map(entries) = &node.value else {
        return Err(read::expected(node, &path, "a mapping"));
    };
    let mut s = Service {
        name: name.to_string(),
        pos: node.pos.clone(),
        image: None,
        build: false,
        pull_policy: None,
        build_always: false,
        replicas: 1,
        update_config: UpdateConfig::default(),
        rollback_config: RollbackConfig::default(),
        healthcheck: None,
        stop_grace_period: None,
        ports: Vec::new(),
        volumes: Vec::new(),
        container_name: None,
        depends_on: BTreeMap::new(),
        profiles: Vec::new(),
        rollout: RolloutExt::default(),
    };
    let mut replicas: Option<(u64, &Node)> = None;
    let mut scale: Option<(u64, &Node)> = None;
    for e in entries {
        let p = join(&path, &e.key);
        let v = &e.value;
        match e.key.as_str() {
            "image" => s.image = read::opt_string(v, &p)?,
            "build" => s.build = !v.is_null(),
            "pull_policy" if !v.is_null() => {
                let (policy, build) = pull_policy(&read::string(v, &p)?)
                    .ok_or_else(|| ComposeError::field(&v.pos, &p, PULL_POLICY_EXPECTED))?;
                s.pull_policy = Some(policy);
                s.build_always = build;
            }
            "scale" if !v.is_null() => scale = Some((read::uint(v, &p)?, v)),
            "deploy" => {
                let deploy = read::map(v, &p)?;
                for d in deploy {
                    let dp = join(&p, &d.key);
                    match d.key.as_str() {
                        "replicas" if !d.value.is_null() => {
                            replicas = Some((read::uint(&d.value, &dp)?, &d.value))
                        }
                        "update_config" => s.update_config = parse_update(&d.value, &dp, false)?,
                        "rollback_config" => s.rollback_config = parse_update(&d.value, &dp, true)?,
                        _ => {}
                    }
                }
            }
            "healthcheck" => s.healthcheck = parse_healthcheck(v, &p)?,
            "stop_grace_period" if !v.is_null() => {
                s.stop_grace_period = Some(read::duration(v, &p)?)
            }
            "ports" => s.ports = list(v, &p, parse_port)?,
            "volumes" => s.volumes = list(v, &p, |n, p| parse_mount(n, p, project_dir))?,
            "container_name" => s.container_name = read::opt_string(v, &p)?,
            "depends_on" => s.depends_on = parse_depends_on(v, &p)?,
            "profiles" => s.profiles = read::string_list(v, &p)?,
            "x-rollout" => s.rollout = parse_ext(v, &p)?,
            _ => {}
        }
    }
    match (replicas, scale) {
        (Some((r, _)), Some((sc, node))) if r != sc => {
            return Err(ComposeError::field(
                &node.pos,
                &join(&path, "scale"),
                format!("{sc} conflicts with deploy.replicas {r}\nhint: set only one of them"),
            ))
        }
        (Some((r, _)), _) | (None, Some((r, _))) => s.replicas = r,
        (None, None) => {}
    }
    Ok(s)
}

fn list<T>(node: &Node, path: &str, item: impl Fn(&Node, &str) -> Result<T>) -> Result<Vec<T>> {
    match &node.value {
        Value::Null => Ok(Vec::new()),
        Value::Seq(items) => items
            .iter()
            .enumerate()
            .map(|(i, n)| item(n, &format!("{path}[{i}]")))
            .collect(),
        _ => Err(read::expected(node, path, "a list")),
    }
}

fn parse_update(node: &Node, path: &str, rollback: bool) -> Result<UpdateConfig> {
    let entries = read::map(node, path)?;
    read::only_keys(
        entries,
        path,
        &[
            "parallelism",
            "delay",
            "failure_action",
            "monitor",
            "max_failure_ratio",
            "order",
        ],
    )?;
    let mut c = UpdateConfig::default();
    for e in entries {
        let p = join(path, &e.key);
        let v = &e.value;
        if v.is_null() {
            continue;
        }
        match e.key.as_str() {
            "parallelism" => c.parallelism = read::uint(v, &p)?,
            "delay" => c.delay = read::duration(v, &p)?,
            "monitor" => c.monitor = read::duration(v, &p)?,
            "max_failure_ratio" => {
                let r = read::float(v, &p)?;
                c.max_failure_ratio =
                    failure_ratio(r).ok_or_else(|| read::expected(v, &p, RATIO_EXPECTED))?;
            }
            "failure_action" => c.failure_action = failure_action(v, &p, rollback)?,
            "order" => c.order = read::word(v, &p)?,
            _ => {}
        }
    }
    Ok(c)
}

/// A `failure_action`. A rollback is never rolled back, so a rollback
/// config's list leaves `rollback` out.
fn failure_action(v: &Node, p: &str, rollback: bool) -> Result<FailureAction> {
    let action = read::word(v, p);
    if !rollback {
        return action;
    }
    match action {
        Ok(a) if a != FailureAction::Rollback => Ok(a),
        // Not a string at all: that error says so.
        Err(e) if read::string(v, p).is_err() => Err(e),
        _ => {
            let rollback = FailureAction::Rollback.as_str();
            let allowed: Vec<_> = FailureAction::spellings()
                .filter(|w| *w != rollback)
                .collect();
            let what = format!("{} (a rollback is not rolled back)", either(&allowed));
            Err(read::expected(v, p, &what))
        }
    }
}

fn parse_healthcheck(node: &Node, path: &str) -> Result<Option<Healthcheck>> {
    if node.is_null() {
        return Ok(None);
    }
    let entries = read::map(node, path)?;
    let mut h = Healthcheck {
        test: None,
        interval: None,
        timeout: None,
        retries: None,
        start_period: None,
        disable: false,
    };
    let mut test_none = false;
    for e in entries {
        let p = join(path, &e.key);
        let v = &e.value;
        if v.is_null() {
            continue;
        }
        match e.key.as_str() {
            "test" => match &v.value {
                Value::Scalar(s) if !s.text.trim().is_empty() => {
                    h.test = Some(HealthTest::Shell(s.text.clone()))
                }
                Value::Seq(_) => {
                    let items = read::string_list(v, &p)?;
                    match items.split_first() {
                        Some((kind, rest)) if kind == "NONE" => {
                            test_none = true;
                            let _ = rest;
                        }
                        Some((kind, rest)) if kind == "CMD" && !rest.is_empty() => {
                            h.test = Some(HealthTest::Cmd(rest.to_vec()))
                        }
                        Some((kind, [cmd])) if kind == "CMD-SHELL" => {
                            h.test = Some(HealthTest::Shell(cmd.clone()))
                        }
                        _ => {
                            return Err(read::expected(
                                v,
                                &p,
                                "[\"CMD\", args...], [\"CMD-SHELL\", command] or [\"NONE\"]",
                            ))
                        }
                    }
                }
                _ => return Err(read::expected(v, &p, "a command string or list")),
            },
            "interval" => h.interval = Some(read::duration(v, &p)?),
            "timeout" => h.timeout = Some(read::duration(v, &p)?),
            "start_period" => h.start_period = Some(read::duration(v, &p)?),
            "retries" => h.retries = Some(read::uint(v, &p)?),
            "disable" => h.disable = read::boolean(v, &p)?,
            _ => {}
        }
    }
    if h.disable && h.test.is_some() {
        let at = node.get("disable").map_or(&node.pos, |d| &d.pos);
        return Err(ComposeError::field(
            at,
            &join(path, "disable"),
            "test and disable cannot both be set",
        ));
    }
    h.disable |= test_none;
    Ok(Some(h))
}

fn parse_port(node: &Node, path: &str) -> Result<Port> {
    let bad = |what: &str| read::expected(node, path, what);
    match &node.value {
        Value::Scalar(s) => {
            let text = s.text.trim();
            let (main, protocol) = match text.rsplit_once('/') {
                Some((m, p)) => (m, p.to_string()),
                None => (text, "tcp".to_string()),
            };
            let (host_ip, rest) = if let Some(bracketed) = main.strip_prefix('[') {
                let (ip, rest) = bracketed
                    .split_once("]:")
                    .ok_or_else(|| bad("a port such as 8000, 80:8000 or 127.0.0.1:80:8000"))?;
                (Some(ip.to_string()), rest)
            } else {
                (None, main)
            };
            let parts: Vec<&str> = rest.split(':').collect();
            let (ip, published, target) = match (host_ip, parts.as_slice()) {
                (None, [t]) => (None, None, *t),
                (None, [p, t]) => (None, Some(*p), *t),
                (None, [ip, p, t]) => (Some(ip.to_string()), Some(*p), *t),
                (Some(ip), [p, t]) => (Some(ip), Some(*p), *t),
                _ => return Err(bad("a port such as 8000, 80:8000 or 127.0.0.1:80:8000")),
            };
            let port_ok = |s: &str| valid_port_range(s);
            if !port_ok(target) || published.is_some_and(|p| !p.is_empty() && !port_ok(p)) {
                return Err(bad("a port such as 8000, 80:8000 or 127.0.0.1:80:8000"));
            }
            if !matches!(protocol.as_str(), "tcp" | "udp" | "sctp") {
                return Err(bad("a protocol of tcp, udp or sctp"));
            }
            Ok(Port {
                target: target.to_string(),
                published: published.map(str::to_string),
                host_ip: ip,
                protocol,
                pos: node.pos.clone(),
            })
        }
        Value::Map(_) => {
            let target_node = node
                .get("target")
                .ok_or_else(|| ComposeError::field(&node.pos, path, "a port needs a target"))?;
            let target = read::port(target_node, &join(path, "target"))?.to_string();
            let published = match node.get("published") {
                Some(p) if !p.is_null() => {
                    let text = read::string(p, &join(path, "published"))?;
                    if !text.is_empty() && !valid_port_range(&text) {
                        return Err(read::expected(
                            p,
                            &join(path, "published"),
                            "a port or range",
                        ));
                    }
                    Some(text)
                }
                _ => None,
            };
            let host_ip = match node.get("host_ip") {
                Some(h) => read::opt_string(h, &join(path, "host_ip"))?,
                None => None,
            };
            let protocol = match node.get("protocol") {
                Some(p) => {
                    read::opt_string(p, &join(path, "protocol"))?.unwrap_or_else(|| "tcp".into())
                }
                None => "tcp".to_string(),
            };
            Ok(Port {
                target,
                published,
                host_ip,
                protocol,
                pos: node.pos.clone(),
            })
        }
        _ => Err(bad("a port string or mapping")),
    }
}

fn valid_port_range(s: &str) -> bool {
    let one = |p: &str| p.parse::<u16>().is_ok_and(|p| p > 0);
    match s.split_once('-') {
        Some((a, b)) => one(a) && one(b),
        None => one(s),
    }
}

fn parse_mount(node: &Node, path: &str, project_dir: &Path) -> Result<Mount> {
    match &node.value {
        Value::Scalar(s) => {
            let parts: Vec<&str> = s.text.split(':').collect();
            let (source, target, mode) = match parts.as_slice() {
                [t] => (None, *t, ""),
                [s, t] => (Some(*s), *t, ""),
                [s, t, m] => (Some(*s), *t, *m),
                _ => return Err(read::expected(node, path, "a volume such as ./src:/dst:ro")),
            };
            if target.is_empty() || !target.starts_with('/') {
                return Err(read::expected(
                    node,
                    path,
                    "a volume whose container path is absolute",
                ));
            }
            let (kind, source) = match source {
                None => (MountKind::Volume, None),
                Some(src) if is_host_path(src) => {
                    (MountKind::Bind, Some(resolve(project_dir, src)))
                }
                Some(src) => (MountKind::Volume, Some(src.to_string())),
            };
            Ok(Mount {
                kind,
                source,
                target: target.to_string(),
                read_only: mode.split(',').any(|m| m == "ro"),
                pos: node.pos.clone(),
            })
        }
        Value::Map(_) => {
            let kind = match node.get("type").and_then(Node::as_str) {
                Some("bind") => MountKind::Bind,
                Some("volume") | None => MountKind::Volume,
                Some("tmpfs") => MountKind::Tmpfs,
                Some(_) => MountKind::Other,
            };
            let target = node
                .get("target")
                .ok_or_else(|| ComposeError::field(&node.pos, path, "a volume needs a target"))
                .and_then(|t| read::string(t, &join(path, "target")))?;
            let source = match node.get("source") {
                Some(s) => read::opt_string(s, &join(path, "source"))?,
                None => None,
            };
            let source = match (kind, source) {
                (MountKind::Bind, Some(s)) => Some(resolve(project_dir, &s)),
                (_, s) => s,
            };
            let read_only = match node.get("read_only") {
                Some(r) => read::boolean(r, &join(path, "read_only"))?,
                None => false,
            };
            Ok(Mount {
                kind,
                source,
                target,
                read_only,
                pos: node.pos.clone(),
            })
        }
        _ => Err(read::expected(node, path, "a volume string or mapping")),
    }
}

fn is_host_path(src: &str) -> bool {
    src.starts_with('/') || src.starts_with('.') || src.starts_with('~')
}

/// `src` against the project directory, `.` and `..` folded away.
fn resolve(project_dir: &Path, src: &str) -> String {
    if src.starts_with('~') {
        return src.to_string();
    }
    let joined = project_dir.join(src);
    let mut out = PathBuf::new();
    for c in joined.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out.to_string_lossy().into_owned()
}

fn parse_depends_on(node: &Node, path: &str) -> Result<BTreeMap<String, Dependency>> {
    let mut out = BTreeMap::new();
    match &node.value {
        Value::Null => {}
        Value::Seq(_) => {
            for name in read::string_list(node, path)? {
                out.insert(
                    name,
                    Dependency {
                        condition: "service_started".to_string(),
                        required: true,
                    },
                );
            }
        }
        Value::Map(entries) => {
            for e in entries {
                let p = join(path, &e.key);
                let mut dep = Dependency {
                    condition: "service_started".to_string(),
                    required: true,
                };
                if let Some(c) = e.value.get("condition") {
                    let cp = join(&p, "condition");
                    dep.condition = read::string(c, &cp)?;
                    if !matches!(
                        dep.condition.as_str(),
                        "service_started" | "service_healthy" | "service_completed_successfully"
                    ) {
                        return Err(read::expected(
                            c,
                            &cp,
                            "service_started, service_healthy or service_completed_successfully",
                        ));
                    }
                }
                if let Some(r) = e.value.get("required") {
                    dep.required = read::boolean(r, &join(&p, "required"))?;
                }
                out.insert(e.key.clone(), dep);
            }
        }
        _ => return Err(read::expected(node, path, "a list or mapping of services")),
    }
    Ok(out)
}
