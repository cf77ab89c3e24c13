//! Verification and health-probe requests sent from inside the proxy.
//!
//! A request to an instance must travel the network nginx's own requests
//! travel (the project's network, where container names resolve), never the
//! host's. The proxy is already reachable through [`ProxyExec`], so the
//! request is a command run there: busybox `wget`, whose `-S` prints the
//! status lines on standard error. It lives here rather than with the Docker
//! backend because it needs nothing but the proxy traits: an nginx reached
//! with [`LocalExec`](crate::proxy::LocalExec) gets it too.

use crate::proxy::Proxy;
use async_trait::async_trait;
use rollout_core::strategy::{Verification, Verifier};
use rollout_core::Instance;

/// Sends a verification request from inside the proxy container (busybox
/// `wget`), so that it travels the project's network as nginx's requests do.
pub struct ProxyVerifier {
    proxy: Proxy,
    port: u16,
}

impl ProxyVerifier {
    /// Requests from `proxy` to instances on `port`.
    pub fn new(proxy: Proxy, port: u16) -> Self {
        Self { proxy, port }
    }
}

#[async_trait]
impl Verifier for ProxyVerifier {
    async fn verify(&self, instance: &Instance, check: &Verification) -> Result<(), String> {
        let url = format!("http://{}:{}{}", instance.host, self.port, check.path);
        let argv: Vec<String> = ["wget", "-q", "-S", "-T", "5", "-O", "-", &url]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let out = self
            .proxy
            .exec
            .exec(&argv)
            .await
            .map_err(|e| e.to_string())?;
        let headers = String::from_utf8_lossy(&out.stderr);
        let status = headers
            .lines()
            .filter_map(|l| {
                let l = l.trim();
                l.strip_prefix("HTTP/")
                    .and_then(|rest| rest.split_whitespace().nth(1))
                    .and_then(|code| code.parse::<u16>().ok())
            })
            .next_back();
        match status {
            Some(s) if s == check.status => {}
            Some(s) => return Err(format!("{url} answered {s}, expected {}", check.status)),
            None => return Err(format!("{url}: no answer ({})", out.message())),
        }
        if let Some(needle) = &check.body_contains {
            if !String::from_utf8_lossy(&out.stdout).contains(needle.as_str()) {
                return Err(format!("{url}: the body does not contain {needle:?}"));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::{ConfigStore, ExecOutput, ProxyError, ProxyExec};
    use rollout_core::{Health, InstanceId, InstanceState, ServiceRef};
    use std::sync::{Arc, Mutex};

    /// Answers every command with one output, and keeps the commands.
    struct Answers {
        out: ExecOutput,
        argv: Mutex<Vec<Vec<String>>>,
    }

    #[async_trait]
    impl ProxyExec for Answers {
        async fn exec(&self, argv: &[String]) -> Result<ExecOutput, ProxyError> {
            self.argv.lock().unwrap().push(argv.to_vec());
            Ok(self.out.clone())
        }
    }

    struct NoFiles;

    #[async_trait]
    impl ConfigStore for NoFiles {
        async fn read(&self, path: &str) -> Result<Vec<u8>, ProxyError> {
            Err(ProxyError::Missing {
                proxy: "nginx-1".into(),
                path: path.into(),
            })
        }
        async fn write_in_place(&self, _: &str, _: &[u8]) -> Result<(), ProxyError> {
            unreachable!()
        }
        async fn write_new(&self, _: &str, _: &[u8]) -> Result<(), ProxyError> {
            unreachable!()
        }
        async fn remove(&self, _: &str) -> Result<(), ProxyError> {
            unreachable!()
        }
    }

    fn verifier(code: i32, stdout: &str, stderr: &str) -> (ProxyVerifier, Arc<Answers>) {
        let answers = Arc::new(Answers {
            out: ExecOutput {
                code,
                stdout: stdout.as_bytes().to_vec(),
                stderr: stderr.as_bytes().to_vec(),
            },
            argv: Mutex::new(Vec::new()),
        });
        let proxy = Proxy::new("nginx-1", answers.clone(), Arc::new(NoFiles));
        (ProxyVerifier::new(proxy, 8000), answers)
    }

    fn instance() -> Instance {
        Instance {
            id: InstanceId("c0ffee".into()),
            host: "shop-app-2".into(),
            service: ServiceRef::new("shop", "app"),
            revision: "new".into(),
            state: InstanceState::Running,
            health: Health::Starting,
        }
    }

    fn check(status: u16, body: Option<&str>) -> Verification {
        Verification {
            path: "/health".into(),
            status,
            body_contains: body.map(str::to_string),
        }
    }

    #[tokio::test]
    async fn the_last_status_line_of_wget_decides() {
        // A redirect followed: the last status is the answer.
        let headers = "  HTTP/1.1 302 Found\n  Location: /ok\n  HTTP/1.1 200 OK\n";
        let (v, answers) = verifier(0, "ready\n", headers);
        v.verify(&instance(), &check(200, Some("ready")))
            .await
            .unwrap();
        assert_eq!(
            answers.argv.lock().unwrap()[0],
            [
                "wget",
                "-q",
                "-S",
                "-T",
                "5",
                "-O",
                "-",
                "http://shop-app-2:8000/health"
            ]
        );
        let e = v
            .verify(&instance(), &check(200, Some("healthy")))
            .await
            .unwrap_err();
        assert_eq!(
            e,
            "http://shop-app-2:8000/health: the body does not contain \"healthy\""
        );
    }

    #[tokio::test]
    async fn another_status_or_no_answer_is_a_failure_that_says_why() {
        let (v, _) = verifier(1, "", "  HTTP/1.1 503 Service Unavailable\n");
        let e = v.verify(&instance(), &check(200, None)).await.unwrap_err();
        assert_eq!(
            e,
            "http://shop-app-2:8000/health answered 503, expected 200"
        );
        let (v, _) = verifier(
            1,
            "",
            "wget: can't connect to remote host: Connection refused\n",
        );
        let e = v.verify(&instance(), &check(200, None)).await.unwrap_err();
        assert_eq!(
            e,
            "http://shop-app-2:8000/health: no answer (wget: can't connect to remote host: Connection refused)"
        );
    }
}
