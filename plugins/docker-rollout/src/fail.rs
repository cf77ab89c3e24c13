//! Why a rollout could not start, with the exit code it means.

use rollout_core::{exit, BackendError, JournalError, RouterError};
use rollout_docker::{ProxyServiceError, PullError};
use std::fmt;

/// An error before (or around) the strategy's run, carrying its exit code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fail {
    /// The exit code of DESIGN.md.
    pub code: i32,
    /// What to print after `error: `.
    pub message: String,
}

impl Fail {
    /// Bad input: exit 2, nothing changed.
    pub fn bad_input(message: impl Into<String>) -> Self {
        Self {
            code: exit::BAD_INPUT,
            message: message.into(),
        }
    }

    /// The engine or the proxy cannot be reached: exit 6, nothing changed.
    pub fn unreachable(message: impl Into<String>) -> Self {
        Self {
            code: exit::UNREACHABLE,
            message: message.into(),
        }
    }

    /// Anything else: exit 1.
    pub fn unexpected(message: impl Into<String>) -> Self {
        Self {
            code: exit::UNEXPECTED,
            message: message.into(),
        }
    }
}

impl fmt::Display for Fail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl From<BackendError> for Fail {
    fn from(e: BackendError) -> Self {
        match e {
            BackendError::Unreachable { .. } => Fail::unreachable(e.to_string()),
            BackendError::MissingImage { .. } => Fail::bad_input(e.to_string()),
            // The Compose tool refusing the project (config --hash) is bad input.
            BackendError::Launch { .. } => Fail::bad_input(e.to_string()),
            e => Fail::unexpected(e.to_string()),
        }
    }
}

impl From<PullError> for Fail {
    fn from(e: PullError) -> Self {
        match e {
            PullError::NoSuchImage { .. }
            | PullError::Denied { .. }
            | PullError::Credentials(_) => Fail::bad_input(e.to_string()),
            PullError::Unreachable { .. } => Fail::unreachable(e.to_string()),
            PullError::Engine(e) => Fail::from(e),
            e => Fail::unexpected(e.to_string()),
        }
    }
}

impl From<ProxyServiceError> for Fail {
    fn from(e: ProxyServiceError) -> Self {
        match e {
            // The engine answered: the proxy is what cannot be reached.
            ProxyServiceError::NotRunning { .. } => Fail::unreachable(e.to_string()),
            ProxyServiceError::Engine(e) => Fail::from(e),
        }
    }
}

impl From<RouterError> for Fail {
    fn from(e: RouterError) -> Self {
        match e {
            RouterError::Unreachable(_) => Fail::unreachable(e.to_string()),
            RouterError::Config(_) | RouterError::Invalid { .. } => Fail::bad_input(e.to_string()),
            e => Fail::unexpected(e.to_string()),
        }
    }
}

impl From<JournalError> for Fail {
    fn from(e: JournalError) -> Self {
        match e {
            JournalError::Locked { .. } => Fail {
                code: exit::BUSY,
                message: e.to_string(),
            },
            e => Fail::unexpected(e.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_map_to_the_exit_codes_of_the_design() {
        let unreachable = BackendError::Unreachable {
            endpoint: "unix:///nowhere.sock".into(),
            reason: "connection refused".into(),
        };
        assert_eq!(Fail::from(unreachable).code, 6);
        assert_eq!(
            Fail::from(BackendError::MissingImage {
                image: "x:1".into()
            })
            .code,
            2
        );
        assert_eq!(Fail::from(RouterError::Unreachable("gone".into())).code, 6);
        assert_eq!(
            Fail::from(RouterError::Config("no upstream \"x\"".into())).code,
            2
        );
        assert_eq!(Fail::from(RouterError::Reload("refused".into())).code, 1);
        assert_eq!(Fail::from(JournalError::Storage("disk".into())).code, 1);
        let busy = JournalError::Locked {
            service: "shop/app".into(),
            holder: "ann@ci pid 7".into(),
            since: "2026-01-01T00:00:00Z".into(),
        };
        assert_eq!(Fail::from(busy).code, exit::BUSY);
        let pull = |kind: fn(String, String, String) -> PullError| {
            Fail::from(kind("r:5000/app:x".into(), "r:5000".into(), "said".into())).code
        };
        assert_eq!(
            pull(|image, registry, reason| PullError::NoSuchImage {
                image,
                registry,
                reason
            }),
            2
        );
        assert_eq!(
            pull(|image, registry, reason| PullError::Unreachable {
                image,
                registry,
                reason
            }),
            6
        );
        assert_eq!(
            pull(|image, registry, reason| PullError::Denied {
                image,
                registry,
                reason
            }),
            2
        );
        assert_eq!(
            pull(|image, registry, reason| PullError::Failed {
                image,
                registry,
                reason
            }),
            1
        );
        let stopped = Fail::from(ProxyServiceError::NotRunning {
            service: rollout_core::ServiceRef::new("shop", "nginx"),
        });
        assert_eq!(stopped.code, 6);
        assert_eq!(
            stopped.message,
            "the proxy is not running: no running container of the proxy service shop/nginx\nhint: start it with docker compose up -d nginx"
        );
    }
}
