//! The value parsers of the command line's flags: durations, ratios, canary steps, and
//! `--swarm-node`'s `NODE=ENGINE`.

use rollout_compose::StepOverride;
use rollout_core::config::{failure_ratio, RATIO_EXPECTED};
use rollout_core::parse_duration;
use rollout_core::strategy::Hold;
use std::time::Duration;

/// `StepOverride`s, wrapped so clap keeps the list as one value.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Steps(pub(super) Vec<StepOverride>);

pub(super) fn duration(s: &str) -> Result<Duration, String> {
    parse_duration(s).map_err(|e| e.to_string())
}

/// `NODE=ENGINE` of `--swarm-node`, both sides non-empty.
pub(super) fn node_engine(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((node, engine)) if !node.trim().is_empty() && !engine.trim().is_empty() => {
            Ok((node.trim().to_string(), engine.trim().to_string()))
        }
        _ => Err(format!(
            "{s:?}: expected NODE=ENGINE (a node's id, hostname or address, then a docker context or a host URL such as ssh://admin@node2)"
        )),
    }
}

pub(super) fn positive_duration(s: &str) -> Result<Duration, String> {
    let d = duration(s)?;
    if d.is_zero() {
        return Err("must be longer than 0s".to_string());
    }
    Ok(d)
}

pub(super) fn ratio(s: &str) -> Result<f32, String> {
    s.parse::<f32>()
        .ok()
        .and_then(|r| failure_ratio(r.into()))
        .ok_or_else(|| format!("expected {RATIO_EXPECTED}, found {s:?}"))
}

pub(super) fn hold(s: &str) -> Result<Hold, String> {
    if s == "until-promoted" {
        return Ok(Hold::UntilPromoted);
    }
    duration(s)
        .map(Hold::For)
        .map_err(|e| format!("{e}, or write until-promoted"))
}

pub(super) fn canary_steps(s: &str) -> Result<Steps, String> {
    let mut steps = Vec::new();
    for part in s.split(',') {
        let part = part.trim();
        let (percent, step_hold) = match part.split_once(':') {
            Some((p, h)) => (p, Some(hold(h)?)),
            None => (part, None),
        };
        let percent = percent
            .trim_end_matches('%')
            .parse::<u32>()
            .ok()
            .filter(|p| (1..=100).contains(p))
            .ok_or_else(|| format!("a step must be a percent from 1 to 100, found {part:?}"))?;
        steps.push(StepOverride {
            percent,
            hold: step_hold,
        });
    }
    let checked: Vec<_> = steps
        .iter()
        .map(|s| rollout_core::strategy::CanaryStep {
            percent: s.percent,
            hold: s.hold.unwrap_or(Hold::UntilPromoted),
        })
        .collect();
    rollout_compose::check_steps(&checked)?;
    Ok(Steps(steps))
}
