//! The connection to the engine, and what its errors mean to a rollout.

use crate::dial::DockerCli;
use crate::endpoint::{Endpoint, Host};
use bollard::errors::Error as BollardError;
use bollard::Docker;
use rollout_core::BackendError;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A connection to one engine, with the name it was reached by (for
/// messages) and the offset of the engine's clock from ours.
///
/// `bollard::Docker` is an `Arc` inside, so an `Engine` is cheap to clone
/// into every backend, journal and proxy handle.
#[derive(Debug, Clone)]
pub struct Engine {
    docker: Docker,
    endpoint: String,
    api_version: String,
    skew_nanos: i128,
}

impl Engine {
    /// Connects to `host` (`unix:///var/run/docker.sock`, `tcp://127.0.0.1:2375`),
    /// negotiates the API version (the engine may be older than the client)
    /// and checks that the engine answers.
    pub async fn connect(host: &str) -> Result<Self, BackendError> {
        let docker = Docker::connect_with_host(host).map_err(|e| BackendError::Unreachable {
            endpoint: host.to_string(),
            reason: e.to_string(),
        })?;
        Self::from_docker(docker, host).await
    }

    /// Connects to a resolved endpoint ([`crate::endpoint::resolve`]):
    /// `unix://` and plain `tcp://` directly; TLS and `ssh://` endpoints
    /// through `cli` (`docker <global flags> system dial-stdio`, see
    /// [`crate::dial`]), or refused with a hint when no CLI is given. The
    /// name in messages says what chose the endpoint
    /// (`unix:///var/run/docker.sock (context default, from DOCKER_HOST)`).
    pub async fn connect_to(
        endpoint: &Endpoint,
        cli: Option<&DockerCli>,
    ) -> Result<Self, BackendError> {
        let url = endpoint.host.url();
        let name = format!(
            "{url} (context {}, from {})",
            endpoint.context, endpoint.origin
        );
        let direct = match (&endpoint.host, &endpoint.tls) {
            (Host::Unix(_), _) | (Host::Npipe(_), _) => true,
            (Host::Tcp { .. }, None) => true,
            (Host::Tcp { .. }, Some(_)) | (Host::Ssh(_), _) => false,
        };
        if direct {
            let docker =
                Docker::connect_with_host(&url).map_err(|e| BackendError::Unreachable {
                    endpoint: name.clone(),
                    reason: e.to_string(),
                })?;
            return Self::from_docker(docker, &name).await;
        }
        match cli {
            Some(cli) => Self::connect_via_cli(cli, &name).await,
            None => Err(BackendError::Unreachable {
                endpoint: name,
                reason: "TLS and ssh endpoints are reached through the docker CLI, and none was given\nhint: install the docker CLI, or run the rollout on the engine's machine".into(),
            }),
        }
    }

    /// Connects through `docker <global flags> system dial-stdio`: the
    /// docker CLI does TLS, ssh and contexts; each request is one child.
    pub async fn connect_via_cli(cli: &DockerCli, name: &str) -> Result<Self, BackendError> {
        let docker = crate::dial::client(cli).map_err(|e| BackendError::Unreachable {
            endpoint: name.to_string(),
            reason: e.to_string(),
        })?;
        Self::from_docker(docker, name).await
    }

    /// Wraps a connected client, negotiating the API version and measuring
    /// the engine's clock. `endpoint` names it in messages.
    pub async fn from_docker(docker: Docker, endpoint: &str) -> Result<Self, BackendError> {
        let unreachable = |e: BollardError| BackendError::Unreachable {
            endpoint: endpoint.to_string(),
            reason: e.to_string(),
        };
        let docker = docker.negotiate_version().await.map_err(unreachable)?;
        let version = docker.version().await.map_err(unreachable)?;
        let info = docker.info().await.map_err(unreachable)?;
        let ours = now_nanos();
        let skew_nanos = info
            .system_time
            .as_deref()
            .and_then(parse_rfc3339_nanos)
            .map(|theirs| theirs - ours)
            .unwrap_or(0);
        Ok(Self {
            docker,
            endpoint: endpoint.to_string(),
            api_version: version.api_version.unwrap_or_default(),
            skew_nanos,
        })
    }

    /// The bollard client.
    pub fn docker(&self) -> &Docker {
        &self.docker
    }

    /// Where the engine was reached.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The engine's API version (`1.41` for Docker 20.10).
    pub fn api_version(&self) -> &str {
        &self.api_version
    }

    /// A client whose requests may take `limit` plus a margin: bollard bounds
    /// every request by 120 s, and a stop with a long grace answers only
    /// when the container has stopped.
    pub(crate) fn docker_for(&self, limit: Duration) -> Docker {
        let wanted = limit + Duration::from_secs(30);
        if wanted <= self.docker.timeout() {
            self.docker.clone()
        } else {
            self.docker.clone().with_timeout(wanted)
        }
    }

    /// The engine's clock now, minus `back`, as the `seconds.nanoseconds`
    /// form the events endpoint takes for `since`.
    pub(crate) fn engine_time_minus(&self, back: Duration) -> String {
        let at = now_nanos() + self.skew_nanos - back.as_nanos() as i128;
        let at = at.max(0);
        format!("{}.{:09}", at / 1_000_000_000, at % 1_000_000_000)
    }

    /// The containers `filters` select (the engine's own filters: `label`,
    /// `status`, `name`), stopped ones too when `all`.
    pub(crate) async fn list_containers(
        &self,
        filters: std::collections::HashMap<String, Vec<String>>,
        all: bool,
    ) -> Result<Vec<bollard::models::ContainerSummary>, BackendError> {
        let options = bollard::query_parameters::ListContainersOptions {
            all,
            filters: Some(filters),
            ..Default::default()
        };
        self.docker()
            .list_containers(Some(options))
            .await
            .map_err(|e| self.error(e))
    }

    /// Maps a bollard error to what a rollout reports.
    pub(crate) fn error(&self, e: BollardError) -> BackendError {
        match e {
            BollardError::DockerResponseServerError {
                status_code,
                message,
            } => BackendError::Other(format!("engine refused ({status_code}): {message}")),
            BollardError::RequestTimeoutError => BackendError::Unreachable {
                endpoint: self.endpoint.clone(),
                reason: "the request timed out".into(),
            },
            BollardError::IOError { .. }
            | BollardError::HyperLegacyError { .. }
            | BollardError::HyperResponseError { .. }
            | BollardError::HttpClientError { .. }
            | BollardError::SocketNotFoundError(_) => BackendError::Unreachable {
                endpoint: self.endpoint.clone(),
                reason: e.to_string(),
            },
            other => BackendError::Other(other.to_string()),
        }
    }
}

/// The HTTP status of an engine refusal, if `e` is one.
pub(crate) fn status(e: &BollardError) -> Option<u16> {
    match e {
        BollardError::DockerResponseServerError { status_code, .. } => Some(*status_code),
        _ => None,
    }
}

fn now_nanos() -> i128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i128)
        .unwrap_or(0)
}

/// Nanoseconds since the epoch of an RFC 3339 time as the engine writes it
/// (`2026-11-28T08:12:10.123456789Z` or with a `+01:00` offset).
pub(crate) fn parse_rfc3339_nanos(text: &str) -> Option<i128> {
    let (date, rest) = text.split_once('T')?;
    let mut ymd = date.splitn(3, '-');
    let year: i64 = ymd.next()?.parse().ok()?;
    let month: i64 = ymd.next()?.parse().ok()?;
    let day: i64 = ymd.next()?.parse().ok()?;
    let zone_at = rest.find(['Z', 'z', '+', '-'])?;
    let (clock, zone) = rest.split_at(zone_at);
    let mut hms = clock.splitn(3, ':');
    let hour: i64 = hms.next()?.parse().ok()?;
    let minute: i64 = hms.next()?.parse().ok()?;
    let seconds = hms.next()?;
    let (whole, fraction) = seconds.split_once('.').unwrap_or((seconds, ""));
    let second: i64 = whole.parse().ok()?;
    let mut nanos: i64 = 0;
    for (i, c) in fraction.chars().take(9).enumerate() {
        nanos += i64::from(c.to_digit(10)?) * 10_i64.pow(8 - i as u32);
    }
    let offset_seconds = match zone.as_bytes().first()? {
        b'Z' | b'z' => 0,
        sign => {
            let (h, m) = zone[1..].split_once(':')?;
            let v = h.parse::<i64>().ok()? * 3600 + m.parse::<i64>().ok()? * 60;
            if *sign == b'-' {
                -v
            } else {
                v
            }
        }
    };
    let days = days_from_civil(year, month, day);
    let secs = days * 86_400 + hour * 3600 + minute * 60 + second - offset_seconds;
    Some(i128::from(secs) * 1_000_000_000 + i128::from(nanos))
}

/// `2026-11-28T08:12:10Z`: the UTC time now, to the second.
pub fn now_rfc3339() -> String {
    let secs = (now_nanos() / 1_000_000_000) as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// The date of a day count since 1970-01-01 (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
/// algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_as_the_engine_writes_it() {
        assert_eq!(parse_rfc3339_nanos("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            parse_rfc3339_nanos("2026-11-28T08:12:10.5Z"),
            Some(1_795_853_530_500_000_000)
        );
        assert_eq!(
            parse_rfc3339_nanos("2026-11-28T09:12:10.5+01:00"),
            parse_rfc3339_nanos("2026-11-28T08:12:10.5Z")
        );
        assert_eq!(
            parse_rfc3339_nanos("2000-03-01T00:00:00.000000001Z"),
            Some(951_868_800_000_000_001)
        );
        assert_eq!(parse_rfc3339_nanos("yesterday"), None);
    }

    #[test]
    fn a_long_grace_outlives_bollards_request_timeout() {
        let docker =
            Docker::connect_with_http("tcp://127.0.0.1:9", 120, bollard::API_DEFAULT_VERSION)
                .unwrap();
        let engine = Engine {
            docker,
            endpoint: "test".into(),
            api_version: "1.41".into(),
            skew_nanos: 0,
        };
        assert_eq!(
            engine.docker_for(Duration::from_secs(10)).timeout(),
            Duration::from_secs(120)
        );
        assert_eq!(
            engine.docker_for(Duration::from_secs(300)).timeout(),
            Duration::from_secs(330)
        );
        // The shared client keeps its own bound.
        assert_eq!(engine.docker().timeout(), Duration::from_secs(120));
    }

    #[test]
    fn now_round_trips() {
        let text = now_rfc3339();
        let parsed = parse_rfc3339_nanos(&text).unwrap();
        let diff = (now_nanos() - parsed).abs();
        assert!(diff < 5_000_000_000, "{text}");
        for days in [-1000_i64, 0, 59, 60, 11_016, 20_785] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
    }
}
