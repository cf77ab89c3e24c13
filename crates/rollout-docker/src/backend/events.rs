//! The engine's `die` and `health_status` events: health and failures are
//! seen when they happen, not polled.

use super::DockerBackend;
use crate::labels;
use bollard::models::EventMessage;
use bollard::query_parameters::EventsOptions;
use futures::{Stream, StreamExt};
use std::collections::HashMap;
use std::pin::Pin;
use std::time::Duration;
use tokio::time::Instant;

/// Which containers' events to ask the engine for.
pub(super) enum Scope {
    /// These, by id.
    Containers(Vec<String>),
    /// Every container of this Compose project.
    Project(String),
}

pub(super) enum Seen {
    Healthy,
    Unhealthy,
    Died,
}

pub(super) fn classify(event: &EventMessage) -> Option<Seen> {
    match event.action.as_deref()?.trim() {
        "die" => Some(Seen::Died),
        "health_status: healthy" => Some(Seen::Healthy),
        "health_status: unhealthy" => Some(Seen::Unhealthy),
        _ => None,
    }
}

/// What a [`Subscription`] gives next.
pub(super) enum Next {
    /// An event, in the engine's order.
    Event(EventMessage),
    /// The stream dropped and was resubscribed from the last event's time.
    /// Events in between are replayed by the new stream, but a state change
    /// the engine did not keep may be missed: the caller inspects what it
    /// watches again (with a dropping stream this is a poll, once per
    /// resubscription, at most [`MAX_BACKOFF`] apart).
    Gap,
}

/// The longest pause between two subscriptions when the stream keeps
/// dropping at once.
const MAX_BACKOFF: Duration = Duration::from_secs(2);
/// A stream that lived this long before dropping was healthy: the next
/// resubscription does not wait.
const HEALTHY_STREAM: Duration = Duration::from_secs(5);

type EventStream = Pin<Box<dyn Stream<Item = Result<EventMessage, bollard::errors::Error>> + Send>>;

/// `die` and `health_status` events of some containers, from a point in
/// engine time on, that survive the stream dropping: an idle timeout in a
/// proxy between us and the engine, an ssh hiccup, bollard's own request
/// timeout. The engine stays the judge of whether it is gone: every gap
/// makes the caller inspect, and an engine that does not answer fails that.
pub(super) struct Subscription<'a> {
    backend: &'a DockerBackend,
    scope: Scope,
    /// Engine time of the last event seen (or the starting point).
    since: String,
    stream: EventStream,
    subscribed_at: Instant,
    /// Drops in a row, each soon after its subscription.
    quick_drops: u32,
}

impl<'a> Subscription<'a> {
    /// Subscribes to `scope`'s events from `since` (engine time,
    /// `SECONDS.NANOS`).
    pub(super) fn new(backend: &'a DockerBackend, scope: Scope, since: String) -> Self {
        let stream = subscribe(backend, &scope, &since);
        Self {
            backend,
            scope,
            since,
            stream,
            subscribed_at: Instant::now(),
            quick_drops: 0,
        }
    }

    /// The next event or gap before `deadline`; `None` once the deadline
    /// has passed.
    pub(super) async fn next(&mut self, deadline: Instant) -> Option<Next> {
        match tokio::time::timeout_at(deadline, self.stream.next()).await {
            Err(_) => None,
            Ok(Some(Ok(event))) => {
                if let Some(at) = event.time_nano {
                    self.since = engine_time(at);
                }
                Some(Next::Event(event))
            }
            // Ended or broke: both mean this stream is over, not that the
            // engine is (the caller's inspect tells that).
            Ok(None) | Ok(Some(Err(_))) => {
                if self.subscribed_at.elapsed() >= HEALTHY_STREAM {
                    self.quick_drops = 0;
                }
                let pause = backoff(self.quick_drops);
                self.quick_drops += 1;
                if tokio::time::timeout_at(deadline, tokio::time::sleep(pause))
                    .await
                    .is_err()
                {
                    return None;
                }
                self.stream = subscribe(self.backend, &self.scope, &self.since);
                self.subscribed_at = Instant::now();
                Some(Next::Gap)
            }
        }
    }
}

/// The pause before resubscribing after `quick_drops` drops in a row: none
/// after a stream that lived, then doubling from 100 ms up to
/// [`MAX_BACKOFF`].
fn backoff(quick_drops: u32) -> Duration {
    if quick_drops == 0 {
        return Duration::ZERO;
    }
    Duration::from_millis(100u64.saturating_mul(1 << (quick_drops - 1).min(8))).min(MAX_BACKOFF)
}

/// An event's `timeNano` as the engine's `since` takes it.
fn engine_time(nanos: i64) -> String {
    format!("{}.{:09}", nanos / 1_000_000_000, nanos % 1_000_000_000)
}

/// A stream of `die` and `health_status` events of `scope` from `since`.
fn subscribe(backend: &DockerBackend, scope: &Scope, since: &str) -> EventStream {
    let (key, values) = match scope {
        Scope::Containers(ids) => ("container".to_string(), ids.clone()),
        Scope::Project(project) => (
            "label".to_string(),
            vec![format!("{}={project}", labels::PROJECT)],
        ),
    };
    let filters = HashMap::from([
        ("type".to_string(), vec!["container".to_string()]),
        (key, values),
        (
            "event".to_string(),
            vec!["die".to_string(), "health_status".to_string()],
        ),
    ]);
    let options = EventsOptions {
        since: Some(since.to_string()),
        until: None,
        filters: Some(filters),
    };
    Box::pin(backend.engine.docker().events(Some(options)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use bollard::models::EventActor;

    #[test]
    fn events_are_read_as_docker_writes_them() {
        let event = |action: &str| EventMessage {
            action: Some(action.into()),
            actor: Some(EventActor::default()),
            ..Default::default()
        };
        assert!(matches!(
            classify(&event("health_status: healthy")),
            Some(Seen::Healthy)
        ));
        assert!(matches!(
            classify(&event("health_status: unhealthy")),
            Some(Seen::Unhealthy)
        ));
        assert!(matches!(classify(&event("die")), Some(Seen::Died)));
        assert!(classify(&event("exec_start: wget")).is_none());
    }

    #[test]
    fn resubscription_backs_off_only_when_streams_drop_at_once() {
        assert_eq!(backoff(0), Duration::ZERO);
        assert_eq!(backoff(1), Duration::from_millis(100));
        assert_eq!(backoff(2), Duration::from_millis(200));
        assert_eq!(backoff(4), Duration::from_millis(800));
        assert_eq!(backoff(5), Duration::from_millis(1600));
        assert_eq!(backoff(6), MAX_BACKOFF);
        assert_eq!(backoff(u32::MAX), MAX_BACKOFF);
    }

    #[test]
    fn a_resubscription_starts_at_the_last_events_time() {
        assert_eq!(
            engine_time(1_700_000_000_123_456_789),
            "1700000000.123456789"
        );
        assert_eq!(engine_time(5), "0.000000005");
    }
}
