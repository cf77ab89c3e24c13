//! Compose's `deploy.update_config` and `rollback_config` as Swarm's `UpdateConfig` and
//! `RollbackConfig`, field by field, where the Swarm backend drives Swarm's native update:
//!
//! | Compose (ours)      | Swarm                     | note |
//! |---------------------|---------------------------|------|
//! | `parallelism`       | `Parallelism`             | 0 is all at once in both |
//! | `delay`             | `Delay` (ns)              | |
//! | `failure_action`    | `FailureAction`           | `rollback` only in `UpdateConfig`; a `rollback_config` asking for it is refused |
//! | `monitor`           | `Monitor` (ns)            | Swarm reads 0 as "unset" and waits its default 5 s: 0 is sent as 1 ns, which waits for nothing, as 0 means |
//! | `max_failure_ratio` | `MaxFailureRatio`         | sent as the decimal the operator wrote (0.1, not 0.10000000149) |
//! | `order`             | `Order`                   | |
//!
//! Read back ([`from_swarm_update`]), a field Swarm left out takes Swarm's default, which is
//! also ours, and a value no Compose file could hold (a negative count or duration) is an
//! error naming the field.

pub use bollard::models::{
    ServiceSpecRollbackConfig, ServiceSpecRollbackConfigFailureActionEnum,
    ServiceSpecRollbackConfigOrderEnum, ServiceSpecUpdateConfig,
    ServiceSpecUpdateConfigFailureActionEnum, ServiceSpecUpdateConfigOrderEnum,
};
use rollout_core::config::{FailureAction, Order, RollbackConfig, UpdateConfig};
use std::time::Duration;

/// A value Swarm cannot hold, or one read from Swarm that Compose cannot.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{field}: {problem}")]
pub struct SpecError {
    /// The field, as the Compose file names it (`rollback_config.failure_action`).
    pub field: String,
    /// What is wrong with its value.
    pub problem: String,
}

fn error(section: &str, field: &str, problem: impl Into<String>) -> SpecError {
    SpecError {
        field: format!("{section}.{field}"),
        problem: problem.into(),
    }
}

/// The fields both of Swarm's configs have, in Swarm's units.
struct Common {
    parallelism: i64,
    delay: i64,
    monitor: i64,
    max_failure_ratio: f64,
}

fn nanos(section: &str, field: &str, d: Duration) -> Result<i64, SpecError> {
    i64::try_from(d.as_nanos()).map_err(|_| error(section, field, "too long for Swarm"))
}

fn common(section: &str, c: &UpdateConfig) -> Result<Common, SpecError> {
    let parallelism = i64::try_from(c.parallelism)
        .map_err(|_| error(section, "parallelism", "too large for Swarm"))?;
    // Swarm takes a monitor of 0 for "unset" and waits 5 s; 1 ns waits for nothing.
    let monitor = nanos(section, "monitor", c.monitor)?.max(1);
    let max_failure_ratio = c
        .max_failure_ratio
        .to_string()
        .parse::<f64>()
        .map_err(|_| error(section, "max_failure_ratio", "not a number"))?;
    Ok(Common {
        parallelism,
        delay: nanos(section, "delay", c.delay)?,
        monitor,
        max_failure_ratio,
    })
}

/// `update_config` as Swarm's `UpdateConfig`, every field set.
pub fn to_swarm_update(c: &UpdateConfig) -> Result<ServiceSpecUpdateConfig, SpecError> {
    let Common {
        parallelism,
        delay,
        monitor,
        max_failure_ratio,
    } = common("update_config", c)?;
    Ok(ServiceSpecUpdateConfig {
        parallelism: Some(parallelism),
        delay: Some(delay),
        failure_action: Some(match c.failure_action {
            FailureAction::Pause => ServiceSpecUpdateConfigFailureActionEnum::PAUSE,
            FailureAction::Continue => ServiceSpecUpdateConfigFailureActionEnum::CONTINUE,
            FailureAction::Rollback => ServiceSpecUpdateConfigFailureActionEnum::ROLLBACK,
        }),
        monitor: Some(monitor),
        max_failure_ratio: Some(max_failure_ratio),
        order: Some(match c.order {
            Order::StopFirst => ServiceSpecUpdateConfigOrderEnum::STOP_FIRST,
            Order::StartFirst => ServiceSpecUpdateConfigOrderEnum::START_FIRST,
        }),
    })
}

/// `rollback_config` as Swarm's `RollbackConfig`, every field set. Swarm cannot roll a
/// rollback back: `failure_action: rollback` is refused.
pub fn to_swarm_rollback(c: &RollbackConfig) -> Result<ServiceSpecRollbackConfig, SpecError> {
    let Common {
        parallelism,
        delay,
        monitor,
        max_failure_ratio,
    } = common("rollback_config", c)?;
    Ok(ServiceSpecRollbackConfig {
        parallelism: Some(parallelism),
        delay: Some(delay),
        failure_action: Some(match c.failure_action {
            FailureAction::Pause => ServiceSpecRollbackConfigFailureActionEnum::PAUSE,
            FailureAction::Continue => ServiceSpecRollbackConfigFailureActionEnum::CONTINUE,
            FailureAction::Rollback => {
                return Err(error(
                    "rollback_config",
                    "failure_action",
                    "Swarm cannot roll a rollback back: use pause or continue",
                ))
            }
        }),
        monitor: Some(monitor),
        max_failure_ratio: Some(max_failure_ratio),
        order: Some(match c.order {
            Order::StopFirst => ServiceSpecRollbackConfigOrderEnum::STOP_FIRST,
            Order::StartFirst => ServiceSpecRollbackConfigOrderEnum::START_FIRST,
        }),
    })
}

fn count(section: &str, field: &str, v: Option<i64>, default: u64) -> Result<u64, SpecError> {
    v.map_or(Ok(default), |v| {
        u64::try_from(v).map_err(|_| error(section, field, format!("{v} is negative")))
    })
}

fn duration(
    section: &str,
    field: &str,
    ns: Option<i64>,
    default: Duration,
) -> Result<Duration, SpecError> {
    match ns {
        None => Ok(default),
        Some(v) => u64::try_from(v)
            .map(Duration::from_nanos)
            .map_err(|_| error(section, field, format!("{v} ns is negative"))),
    }
}

/// A service's `UpdateConfig` as Compose's `update_config`; what Swarm left out is Swarm's
/// default (which is ours: `UpdateConfig::default()`).
pub fn from_swarm_update(c: Option<&ServiceSpecUpdateConfig>) -> Result<UpdateConfig, SpecError> {
    let d = UpdateConfig::default();
    let Some(c) = c else { return Ok(d) };
    let s = "update_config";
    let ratio = c.max_failure_ratio.unwrap_or(0.0);
    Ok(UpdateConfig {
        parallelism: count(s, "parallelism", c.parallelism, d.parallelism)?,
        delay: duration(s, "delay", c.delay, d.delay)?,
        failure_action: match c.failure_action {
            Some(ServiceSpecUpdateConfigFailureActionEnum::CONTINUE) => FailureAction::Continue,
            Some(ServiceSpecUpdateConfigFailureActionEnum::ROLLBACK) => FailureAction::Rollback,
            Some(ServiceSpecUpdateConfigFailureActionEnum::PAUSE)
            | Some(ServiceSpecUpdateConfigFailureActionEnum::EMPTY)
            | None => d.failure_action,
        },
        // Swarm's 0 (and absence) is its default of 5 s.
        monitor: match duration(s, "monitor", c.monitor, d.monitor)? {
            Duration::ZERO => d.monitor,
            m => m,
        },
        max_failure_ratio: rollout_core::config::failure_ratio(ratio)
            .ok_or_else(|| error(s, "max_failure_ratio", format!("{ratio} is not in 0..=1")))?,
        order: match c.order {
            Some(ServiceSpecUpdateConfigOrderEnum::START_FIRST) => Order::StartFirst,
            _ => d.order,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The seed's `update_config`, start-first.
    fn seed() -> UpdateConfig {
        UpdateConfig {
            parallelism: 2,
            delay: Duration::from_secs(10),
            failure_action: FailureAction::Rollback,
            monitor: Duration::from_secs(30),
            max_failure_ratio: 0.3,
            order: Order::StartFirst,
        }
    }

    #[test]
    fn the_seeds_update_config_is_swarms_field_for_field() {
        let s = to_swarm_update(&seed()).unwrap();
        assert_eq!(s.parallelism, Some(2));
        assert_eq!(s.delay, Some(10_000_000_000));
        assert_eq!(
            s.failure_action,
            Some(ServiceSpecUpdateConfigFailureActionEnum::ROLLBACK)
        );
        assert_eq!(s.monitor, Some(30_000_000_000));
        assert_eq!(
            s.max_failure_ratio,
            Some(0.3),
            "the decimal written, not f32's"
        );
        assert_eq!(s.order, Some(ServiceSpecUpdateConfigOrderEnum::START_FIRST));
        assert_eq!(from_swarm_update(Some(&s)).unwrap(), seed());
    }

    #[test]
    fn a_monitor_of_zero_does_not_become_swarms_five_seconds() {
        let c = UpdateConfig {
            monitor: Duration::ZERO,
            ..seed()
        };
        assert_eq!(to_swarm_update(&c).unwrap().monitor, Some(1));
        // Read back, Swarm's own 0 (unset) is its default.
        let s = ServiceSpecUpdateConfig {
            monitor: Some(0),
            ..Default::default()
        };
        assert_eq!(
            from_swarm_update(Some(&s)).unwrap().monitor,
            Duration::from_secs(5)
        );
    }

    #[test]
    fn what_swarm_leaves_out_is_its_default_and_ours() {
        assert_eq!(from_swarm_update(None).unwrap(), UpdateConfig::default());
        assert_eq!(
            from_swarm_update(Some(&ServiceSpecUpdateConfig::default())).unwrap(),
            UpdateConfig::default()
        );
    }

    #[test]
    fn a_rollback_config_cannot_roll_back() {
        let e = to_swarm_rollback(&seed()).unwrap_err();
        assert_eq!(e.field, "rollback_config.failure_action");
        let ok = to_swarm_rollback(&UpdateConfig {
            failure_action: FailureAction::Pause,
            ..seed()
        })
        .unwrap();
        assert_eq!(
            ok.failure_action,
            Some(ServiceSpecRollbackConfigFailureActionEnum::PAUSE)
        );
        assert_eq!(ok.parallelism, Some(2));
        assert_eq!(
            ok.order,
            Some(ServiceSpecRollbackConfigOrderEnum::START_FIRST)
        );
    }

    #[test]
    fn values_no_compose_file_could_hold_name_their_field() {
        let s = ServiceSpecUpdateConfig {
            delay: Some(-1),
            ..Default::default()
        };
        assert_eq!(
            from_swarm_update(Some(&s)).unwrap_err().to_string(),
            "update_config.delay: -1 ns is negative"
        );
        let s = ServiceSpecUpdateConfig {
            max_failure_ratio: Some(1.5),
            ..Default::default()
        };
        assert_eq!(
            from_swarm_update(Some(&s)).unwrap_err().field,
            "update_config.max_failure_ratio"
        );
        let huge = UpdateConfig {
            parallelism: u64::MAX,
            ..seed()
        };
        assert_eq!(
            to_swarm_update(&huge).unwrap_err().field,
            "update_config.parallelism"
        );
    }
}
