//! The webhook against a real HTTP receiver on 127.0.0.1, started by each
//! test: what arrives (method, path, headers, JSON body), retries, and the
//! failures that end in a warning.

use rollout_core::hooks::{Webhook, WebhookUrl};
use rollout_core::{Outcome, Revision, ServiceRef};
use rollout_hooks::webhook::{self, Attempt};
use rollout_hooks::{Message, Subject};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// One request as the receiver read it.
#[derive(Debug, Clone)]
struct Received {
    request_line: String,
    headers: Vec<(String, String)>,
    body: String,
}

impl Received {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// What the receiver answers to the n-th request: a status, or silence.
#[derive(Debug, Clone, Copy)]
enum Answer {
    Status(u16),
    Silence,
}

/// A receiver on 127.0.0.1 answering each request in turn with `answers`
/// (the last one repeats); every request it read is in `received`.
struct Receiver {
    port: u16,
    received: Arc<Mutex<Vec<Received>>>,
}

async fn receiver(answers: Vec<Answer>) -> Receiver {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let received = Arc::new(Mutex::new(Vec::new()));
    let log = received.clone();
    tokio::spawn(async move {
        let mut n = 0;
        loop {
            let (mut conn, _) = listener.accept().await.unwrap();
            let answer = answers[n.min(answers.len() - 1)];
            n += 1;
            let log = log.clone();
            tokio::spawn(async move {
                let mut data = Vec::new();
                let mut buf = [0u8; 4096];
                let head_end = loop {
                    let k = conn.read(&mut buf).await.unwrap();
                    assert!(k > 0, "the client closed before its headers ended");
                    data.extend_from_slice(&buf[..k]);
                    if let Some(i) = data.windows(4).position(|w| w == b"\r\n\r\n") {
                        break i;
                    }
                };
                let head = String::from_utf8(data[..head_end].to_vec()).unwrap();
                let mut lines = head.split("\r\n");
                let request_line = lines.next().unwrap().to_string();
                let headers: Vec<(String, String)> = lines
                    .map(|l| {
                        let (k, v) = l.split_once(':').unwrap();
                        (k.trim().to_string(), v.trim().to_string())
                    })
                    .collect();
                let len: usize = headers
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
                    .map(|(_, v)| v.parse().unwrap())
                    .unwrap_or(0);
                let mut body = data[head_end + 4..].to_vec();
                while body.len() < len {
                    let k = conn.read(&mut buf).await.unwrap();
                    assert!(k > 0);
                    body.extend_from_slice(&buf[..k]);
                }
                log.lock().unwrap().push(Received {
                    request_line,
                    headers,
                    body: String::from_utf8(body).unwrap(),
                });
                match answer {
                    Answer::Status(s) => {
                        let reply = format!(
                            "HTTP/1.1 {s} X\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
                        );
                        let _ = conn.write_all(reply.as_bytes()).await;
                    }
                    Answer::Silence => tokio::time::sleep(Duration::from_secs(60)).await,
                }
            });
        }
    });
    Receiver { port, received }
}

fn hook(port: u16, path: &str, timeout_ms: u64, retries: u32) -> Webhook {
    Webhook {
        url: WebhookUrl::parse(&format!("http://127.0.0.1:{port}{path}")).unwrap(),
        timeout: Duration::from_millis(timeout_ms),
        retries,
    }
}

fn message() -> Message {
    let subject = Subject {
        service: ServiceRef::new("shop", "app"),
        strategy: "canary".into(),
        from: Some(Revision::new("a@sha256:1", "app:v1")),
        to: Revision::new("b@sha256:2", "app:v2"),
    };
    Message::ended(
        &subject,
        &Outcome::RolledBack("the analysis failed at step 1".into()),
        3,
        7.5,
    )
}

#[tokio::test]
async fn the_webhook_is_a_json_post_with_the_event_and_a_text_line() {
    let r = receiver(vec![Answer::Status(200)]).await;
    let m = message();
    let sent = webhook::send(
        &hook(r.port, "/hooks/T0K3N?room=ops", 2000, 0),
        &m.to_json(),
    )
    .await
    .unwrap();
    assert_eq!((sent.status, sent.attempts), (200, 1));
    let got = r.received.lock().unwrap().clone();
    assert_eq!(got.len(), 1);
    let req = &got[0];
    assert_eq!(req.request_line, "POST /hooks/T0K3N?room=ops HTTP/1.1");
    assert_eq!(req.header("content-type"), Some("application/json"));
    assert_eq!(
        req.header("host"),
        Some(format!("127.0.0.1:{}", r.port).as_str())
    );
    assert_eq!(
        req.header("content-length"),
        Some(req.body.len().to_string().as_str())
    );
    assert!(req
        .header("user-agent")
        .unwrap()
        .starts_with("docker-rollout/"));
    let json: serde_json::Value = serde_json::from_str(&req.body).unwrap();
    assert_eq!(json["v"], 1);
    assert_eq!(json["hook"], "on-failure");
    assert_eq!(
        json["text"],
        "shop/app: rollout to app:v2 failed and was rolled back: the analysis failed at step 1 (exit 3)"
    );
    assert_eq!(json["service"], "app");
    assert_eq!(json["project"], "shop");
    assert_eq!(json["strategy"], "canary");
    assert_eq!(json["exit_code"], 3);
    assert_eq!(json["from"]["image"], "app:v1");
    assert_eq!(json["to"]["image"], "app:v2");
    assert_eq!(json["event"]["event"], "finished");
    assert_eq!(json["event"]["outcome"]["outcome"], "rolled-back");
}

#[tokio::test]
async fn a_failing_receiver_is_tried_again_a_bounded_number_of_times() {
    // 503, 503, then 204: delivered on the third request.
    let r = receiver(vec![
        Answer::Status(503),
        Answer::Status(503),
        Answer::Status(204),
    ])
    .await;
    let sent = webhook::send(&hook(r.port, "/", 2000, 2), "{}")
        .await
        .unwrap();
    assert_eq!((sent.status, sent.attempts), (204, 3));
    assert_eq!(r.received.lock().unwrap().len(), 3);

    // Always 500, one retry: two requests, then the warning.
    let r = receiver(vec![Answer::Status(500)]).await;
    let e = webhook::send(&hook(r.port, "/x/T0K3N", 2000, 1), "{}")
        .await
        .unwrap_err();
    assert_eq!((e.attempts, e.last.clone()), (2, Attempt::Status(500)));
    assert_eq!(r.received.lock().unwrap().len(), 2);
    let text = e.to_string();
    assert_eq!(
        text,
        format!("the webhook http://127.0.0.1:{}/… was not delivered after 2 attempts: the receiver answered 500", r.port)
    );
    assert!(!text.contains("T0K3N"));

    // 404 says the request is wrong: no retry.
    let r = receiver(vec![Answer::Status(404)]).await;
    let e = webhook::send(&hook(r.port, "/", 2000, 3), "{}")
        .await
        .unwrap_err();
    assert_eq!((e.attempts, e.last), (1, Attempt::Status(404)));
}

#[tokio::test]
async fn a_silent_or_absent_receiver_costs_at_most_the_timeouts() {
    let r = receiver(vec![Answer::Silence]).await;
    let started = Instant::now();
    let e = webhook::send(&hook(r.port, "/", 300, 1), "{}")
        .await
        .unwrap_err();
    let took = started.elapsed();
    assert_eq!(e.attempts, 2);
    assert_eq!(e.last, Attempt::Timeout(Duration::from_millis(300)));
    // Two timeouts and one pause of 250 ms, with room for a slow machine.
    assert!(took >= Duration::from_millis(850), "{took:?}");
    assert!(took < Duration::from_secs(3), "{took:?}");

    // A port nobody listens on.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let e = webhook::send(&hook(port, "/", 1000, 0), "{}")
        .await
        .unwrap_err();
    assert_eq!(e.attempts, 1);
    assert!(matches!(e.last, Attempt::Connect(_)), "{e}");
}
