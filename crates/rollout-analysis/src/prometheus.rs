//! [`PrometheusAnalysis`]: a canary judged by PromQL queries asked of a
//! Prometheus server over HTTP (`GET /api/v1/query`), each with the highest
//! value that passes.
//!
//! A query with no sample (the metric is not scraped yet, or a rate over no
//! requests gives NaN) is "too few" to judge, under the rules' inconclusive
//! policy; a server that cannot be reached, or that refuses the query, is
//! inconclusive too, with its words: a canary is never promoted on a verdict
//! nobody gave, and the step's hold still bounds the wait.

use crate::judge::{Streak, WindowVerdict};
use async_trait::async_trait;
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use rollout_core::analysis::{AnalysisRules, MetricQuery, PrometheusRules};
use rollout_core::strategy::{Analysis, Plan, Verdict};
use serde_json::Value;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::sync::Mutex;

/// How long one query may take, connection included.
const QUERY_TIMEOUT: Duration = Duration::from_secs(5);
/// The largest answer read.
const MAX_ANSWER: usize = 1 << 20;

/// What one query said.
#[derive(Debug, Clone, PartialEq)]
pub enum Reading {
    /// The highest sample of the result.
    Value(f64),
    /// No sample, or only NaN.
    NoData,
}

/// The canary analysis of PromQL queries.
pub struct PrometheusAnalysis {
    server: PrometheusRules,
    rules: AnalysisRules,
    streak: Mutex<Streak>,
}

impl PrometheusAnalysis {
    /// An analysis asking `server` its queries, with `rules`' inconclusive
    /// policy and failing windows.
    pub fn new(server: PrometheusRules, rules: AnalysisRules) -> Self {
        Self {
            server,
            rules,
            streak: Mutex::new(Streak::default()),
        }
    }

    /// Every query, judged: the first over its limit fails the window, a
    /// query without data makes it too few.
    pub async fn window(&self) -> Result<WindowVerdict, String> {
        let mut too_few = None;
        for q in &self.server.queries {
            match read(&self.server.url, &q.query).await? {
                Reading::Value(v) if v > q.max => {
                    return Ok(WindowVerdict::Fail(format!(
                        "Prometheus: {} = {} is above {}",
                        q.query,
                        shown(v),
                        q.max
                    )))
                }
                Reading::Value(_) => {}
                Reading::NoData => {
                    too_few.get_or_insert_with(|| {
                        format!(
                            "Prometheus: {} has no data yet (a sum over no series is empty, not 0: a share of errors is written (sum(ERRORS) or vector(0)) / sum(ALL))",
                            q.query
                        )
                    });
                }
            }
        }
        Ok(too_few.map_or(WindowVerdict::Pass, WindowVerdict::TooFew))
    }

    /// The queries, as the plan shows them.
    pub fn queries(&self) -> &[MetricQuery] {
        &self.server.queries
    }
}

#[async_trait]
impl Analysis for PrometheusAnalysis {
    async fn judge(&self, _plan: &Plan, _step: usize, _percent: u32) -> Verdict {
        match self.window().await {
            Ok(w) => self.streak.lock().await.next(&self.rules, w),
            Err(e) => Verdict::Inconclusive(e),
        }
    }
}

fn shown(v: f64) -> String {
    let s = format!("{v:.4}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// Asks `url` (`http://HOST:PORT[/PREFIX]`) for `query` now.
pub async fn read(url: &str, query: &str) -> Result<Reading, String> {
    let (status, body) = tokio::time::timeout(QUERY_TIMEOUT, get(url, query))
        .await
        .map_err(|_| format!("Prometheus at {url} did not answer within {QUERY_TIMEOUT:?}"))??;
    let doc: Value = serde_json::from_slice(&body)
        .map_err(|e| format!("Prometheus at {url} answered {status} with what is not JSON: {e}"))?;
    if doc["status"] != "success" {
        return Err(format!(
            "Prometheus at {url} refused {query:?} ({status}): {}",
            doc["error"].as_str().unwrap_or("no reason given")
        ));
    }
    reading(&doc["data"]).map_err(|e| format!("Prometheus at {url}, {query:?}: {e}"))
}

/// The highest sample of a query's `data` (a vector or a scalar).
pub fn reading(data: &Value) -> Result<Reading, String> {
    let number = |pair: &Value| -> Result<f64, String> {
        pair.get(1)
            .and_then(Value::as_str)
            .and_then(|s| s.parse::<f64>().ok())
            .ok_or_else(|| format!("a sample is not [time, \"number\"]: {pair}"))
    };
    let samples: Vec<f64> = match data["resultType"].as_str() {
        Some("vector") => data["result"]
            .as_array()
            .ok_or("a vector without a result list")?
            .iter()
            .map(|s| number(&s["value"]))
            .collect::<Result<_, _>>()?,
        Some("scalar") => vec![number(&data["result"])?],
        Some(other) => {
            return Err(format!(
                "the result is a {other}; write a query that gives an instant vector or a scalar"
            ))
        }
        None => return Err("the answer has no resultType".into()),
    };
    Ok(samples
        .into_iter()
        .filter(|v| !v.is_nan())
        .reduce(f64::max)
        .map_or(Reading::NoData, Reading::Value))
}

/// `GET PREFIX/api/v1/query?query=...` on `url`: the status and the body.
async fn get(url: &str, query: &str) -> Result<(u16, Vec<u8>), String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or("not an http:// address")?;
    let (authority, prefix) = match rest.split_once('/') {
        Some((a, p)) => (a, format!("/{}", p.trim_end_matches('/'))),
        None => (rest, String::new()),
    };
    let dial = if authority.starts_with('[') {
        if authority.contains("]:") {
            authority.to_string()
        } else {
            format!("{authority}:80")
        }
    } else if authority.contains(':') {
        authority.to_string()
    } else {
        format!("{authority}:80")
    };
    let unreachable = |e: String| format!("cannot reach Prometheus at {url}: {e}");
    let stream = TcpStream::connect(&dial)
        .await
        .map_err(|e| unreachable(e.to_string()))?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| unreachable(e.to_string()))?;
    tokio::spawn(connection);
    let request = hyper::Request::get(format!("{prefix}/api/v1/query?query={}", encode(query)))
        .header("host", authority)
        .header("accept", "application/json")
        .body(Empty::<Bytes>::new())
        .map_err(|e| e.to_string())?;
    let answer = sender
        .send_request(request)
        .await
        .map_err(|e| unreachable(e.to_string()))?;
    let status = answer.status().as_u16();
    let body = http_body_util::Limited::new(answer.into_body(), MAX_ANSWER)
        .collect()
        .await
        .map_err(|e| unreachable(e.to_string()))?
        .to_bytes();
    Ok((status, body.to_vec()))
}

/// Percent-encodes everything but RFC 3986's unreserved characters.
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn queries_are_sent_percent_encoded() {
        assert_eq!(
            encode("sum(rate(x{a=\"b c\"}[1m]))"),
            "sum%28rate%28x%7Ba%3D%22b%20c%22%7D%5B1m%5D%29%29"
        );
        assert_eq!(encode("é"), "%C3%A9");
    }

    #[test]
    fn readings_of_vectors_and_scalars() {
        let vector = |values: &[&str]| json!({"resultType": "vector", "result": values.iter().map(|v| json!({"metric": {}, "value": [1.5, v]})).collect::<Vec<_>>()});
        assert_eq!(reading(&vector(&["0.1", "0.3"])), Ok(Reading::Value(0.3)));
        assert_eq!(reading(&vector(&[])), Ok(Reading::NoData));
        assert_eq!(reading(&vector(&["NaN"])), Ok(Reading::NoData));
        assert_eq!(reading(&vector(&["NaN", "2"])), Ok(Reading::Value(2.0)));
        assert_eq!(
            reading(&json!({"resultType": "scalar", "result": [1.5, "7"]})),
            Ok(Reading::Value(7.0))
        );
        let e = reading(&json!({"resultType": "matrix", "result": []})).unwrap_err();
        assert!(e.contains("instant vector"), "{e}");
        assert!(reading(&json!({"resultType": "vector", "result": [{"value": [1, 2]}]})).is_err());
    }

    #[test]
    fn numbers_as_a_person_reads_them() {
        assert_eq!(shown(0.2), "0.2");
        assert_eq!(shown(0.123456), "0.1235");
        assert_eq!(shown(3.0), "3");
    }
}
