//! The operator's hooks around a live rollout, wired in one place
//! (`rollout-hooks` runs them; this room says when, and what a failure
//! means for the exit code).
//!
//! - `pre`: after the engine, the proxy and the target revision are known
//!   and before the strategy runs, so before anything changes. A failure
//!   (exit code other than 0, a signal, a timeout, a program that cannot
//!   start) refuses the rollout: exit 2, the hook's output (its last 4 KiB)
//!   in the message, the webhook told.
//! - `post` after a rollout that ended with exit code 0, `on-failure` after
//!   one that ended otherwise, or that failed after `pre` and before the
//!   strategy launched anything (a migration's expand phase): a failure is
//!   a warning, never a change of the exit code.
//! - The webhook hears `pre` (sent in the background while the rollout runs),
//!   the refusal, and the end; not delivered is a warning.
//!
//! Messages go to stderr: stdout carries only data (`--output json`).

use crate::fail::Fail;
use rollout_compose::Settings;
use rollout_core::{exit, Outcome, Revision};
use rollout_hooks::{Delivered, Message, NotDelivered, Runner, Subject};
use std::io::Write;
use std::path::Path;
use tokio::task::JoinHandle;

/// The hooks of one live rollout.
pub struct Hooks {
    runner: Runner,
    subject: Subject,
    /// The `pre` message on its way to the webhook.
    notice: Option<JoinHandle<Option<Result<Delivered, NotDelivered>>>>,
}

impl Hooks {
    /// The hooks the settings name, run from the project's directory;
    /// `None` when there are none.
    pub fn new(prepared: &crate::live::Prepared, target: &Revision) -> Option<Hooks> {
        Self::of(&prepared.settings, &prepared.project.directory, target)
    }

    /// [`Hooks::new`] from the settings and the directory.
    fn of(settings: &Settings, dir: &Path, target: &Revision) -> Option<Hooks> {
        if settings.hooks.is_empty() {
            return None;
        }
        Some(Hooks {
            runner: Runner::new(settings.hooks.clone(), dir),
            subject: Subject {
                service: settings.service.clone(),
                strategy: settings.strategy.to_string(),
                from: None,
                to: target.clone(),
            },
            notice: None,
        })
    }

    /// Runs the `pre` hook; its failure refuses the rollout (exit 2), with
    /// the webhook told why.
    pub async fn pre(&mut self) -> Result<(), Fail> {
        let message = Message::pre(&self.subject);
        if let Some(result) = self.runner.command(&message).await {
            match result {
                Ok(ran) => say(&format!(
                    "note: pre hook {:?} exited 0 in {:.1}s",
                    ran.argv[0],
                    ran.elapsed.as_secs_f64()
                )),
                Err(e) => {
                    let why = format!("{e}\nnothing was changed");
                    let refused = Message::refused(&self.subject, &e.headline(), &why);
                    report_webhook(self.runner.notify(&refused).await);
                    return Err(Fail {
                        code: exit::BAD_INPUT,
                        message: why,
                    });
                }
            }
        }
        if self.runner.hooks.webhook.is_some() {
            let runner = self.runner.clone();
            self.notice = Some(tokio::spawn(async move { runner.notify(&message).await }));
        }
        Ok(())
    }

    /// After the rollout: `post` (exit `code` 0) or `on-failure`, then the webhook (having
    /// waited for the `pre` notice, so the receiver hears them in order).
    /// Failures are warnings.
    pub async fn after(
        &mut self,
        outcome: &Outcome,
        code: i32,
        elapsed: f64,
        from: Option<Revision>,
    ) {
        self.subject.from = from;
        let message = Message::ended(&self.subject, outcome, code, elapsed);
        self.send(&message).await;
    }

    /// The rollout failed after `pre` and before the strategy launched
    /// anything (its migrations' expand phase, or an interruption then):
    /// `on-failure` and the webhook hear it as they hear any other failure,
    /// with `failure`'s exit code and message. Failures are warnings.
    pub async fn failed_before_launch(&mut self, failure: &Fail, elapsed: f64) {
        let headline = failure.message.lines().next().unwrap_or_default();
        let message = Message::not_launched(
            &self.subject,
            headline,
            &failure.message,
            failure.code,
            elapsed,
        );
        self.send(&message).await;
    }

    /// Runs the command hook of `message` and tells the webhook, after the
    /// `pre` notice (so the receiver hears them in order).
    async fn send(&mut self, message: &Message) {
        if let Some(result) = self.runner.command(message).await {
            match result {
                Ok(ran) => say(&format!(
                    "note: {} hook {:?} exited 0 in {:.1}s",
                    message.hook,
                    ran.argv[0],
                    ran.elapsed.as_secs_f64()
                )),
                Err(e) => say(&format!("warning: {e}")),
            }
        }
        if let Some(notice) = self.notice.take() {
            report_webhook(notice.await.ok().flatten());
        }
        report_webhook(self.runner.notify(message).await);
    }
}

fn report_webhook(result: Option<Result<Delivered, NotDelivered>>) {
    if let Some(Err(e)) = result {
        say(&format!("warning: {e}"));
    }
}

fn say(line: &str) {
    let _ = writeln!(std::io::stderr(), "{line}");
}

#[cfg(test)]
mod tests {
    //! The wiring from a Compose file to what the hooks receive, with real
    //! processes and a receiver on 127.0.0.1: no environment value of a
    //! container reaches a hook, and a failing `pre` hook is exit 2.

    use super::*;
    use rollout_compose::{LoadOptions, Project};
    use std::collections::HashMap;
    use std::os::unix::fs::PermissionsExt;
    use std::path::PathBuf;
    use std::sync::{Arc, Mutex};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    const SECRET: &str = "s3cr3t-api-token-value";
    const LITERAL: &str = "hunter2-literal-password";

    struct Dir(PathBuf);

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// A receiver on 127.0.0.1 answering 204; the bodies it got.
    async fn receiver() -> (u16, Arc<Mutex<Vec<String>>>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let bodies = Arc::new(Mutex::new(Vec::new()));
        let log = bodies.clone();
        tokio::spawn(async move {
            loop {
                let (mut conn, _) = listener.accept().await.unwrap();
                let mut data = Vec::new();
                let mut buf = [0u8; 4096];
                loop {
                    let n = conn.read(&mut buf).await.unwrap();
                    data.extend_from_slice(&buf[..n]);
                    let text = String::from_utf8_lossy(&data).to_string();
                    if let Some((head, body)) = text.split_once("\r\n\r\n") {
                        let len: usize = head
                            .lines()
                            .find_map(|l| l.strip_prefix("Content-Length: "))
                            .unwrap()
                            .parse()
                            .unwrap();
                        if body.len() >= len {
                            log.lock().unwrap().push(body.to_string());
                            break;
                        }
                    }
                    assert!(n > 0);
                }
                let _ = conn
                    .write_all(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n")
                    .await;
            }
        });
        (port, bodies)
    }

    /// A project whose service has secrets in its environment, hooks that
    /// record what they get, and the webhook on `port`; `pre_exit` is the
    /// `pre` hook's exit code.
    fn project(port: u16, pre_exit: i32) -> (Dir, Settings) {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let dir = Dir(std::env::temp_dir().join(format!(
            "docker-rollout-hooks-{}-{pre_exit}-{}",
            std::process::id(),
            N.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
        )));
        let _ = std::fs::remove_dir_all(&dir.0);
        std::fs::create_dir_all(dir.0.join("hooks")).unwrap();
        let record = format!("cat > \"$ROLLOUT_HOOK.stdin\"\nenv > \"$ROLLOUT_HOOK.env\"\necho \"checked $ROLLOUT_SERVICE\"\nexit {pre_exit}\n");
        for (name, body) in [
            ("pre.sh", record.clone()),
            (
                "post.sh",
                record.replace(&format!("exit {pre_exit}"), "exit 0"),
            ),
            (
                "fail.sh",
                record.replace(&format!("exit {pre_exit}"), "exit 0"),
            ),
        ] {
            let path = dir.0.join("hooks").join(name);
            std::fs::write(&path, format!("#!/bin/sh\n{body}")).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        std::fs::write(
            dir.0.join("compose.yaml"),
            format!(
                "name: shop\nservices:\n  app:\n    image: app:v2\n    environment:\n      API_TOKEN: ${{API_TOKEN}}\n      DB_PASSWORD: {LITERAL}\n    x-rollout:\n      hooks:\n        pre: ./hooks/pre.sh\n        post: [./hooks/post.sh]\n        on_failure: ./hooks/fail.sh\n        webhook: http://127.0.0.1:{port}/rollout\n"
            ),
        )
        .unwrap();
        // The operator's shell exports the secret the file interpolates.
        std::env::set_var("API_TOKEN", SECRET);
        let env: HashMap<String, String> = std::env::vars().collect();
        let options = LoadOptions {
            working_dir: Some(dir.0.clone()),
            environment: Some(env),
            ..Default::default()
        };
        let settings = Project::load(&options).unwrap().settings("app").unwrap();
        (dir, settings)
    }

    fn everything_received(dir: &Path, bodies: &Mutex<Vec<String>>) -> String {
        let mut all = bodies.lock().unwrap().join("\n");
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_file() && path.extension().is_some_and(|e| e == "stdin" || e == "env") {
                all.push('\n');
                all.push_str(&std::fs::read_to_string(path).unwrap());
            }
        }
        all
    }

    #[tokio::test]
    async fn no_environment_value_of_a_container_reaches_a_hook() {
        let (port, bodies) = receiver().await;
        let (dir, settings) = project(port, 0);
        let target = Revision::new("h2@sha256:2", "app:v2");
        let mut around = Hooks::of(&settings, &dir.0, &target).unwrap();
        around.pre().await.unwrap();
        let from = Some(Revision::new("h1@sha256:1", "app:v1"));
        around
            .after(
                &Outcome::RolledBack("app-2 never became healthy".into()),
                3,
                9.0,
                from,
            )
            .await;
        let all = everything_received(&dir.0, &bodies);
        // The hooks ran and the webhook heard pre and the end.
        assert!(dir.0.join("pre.stdin").exists() && dir.0.join("on-failure.env").exists());
        assert!(!dir.0.join("post.stdin").exists());
        let got = bodies.lock().unwrap().clone();
        assert_eq!(got.len(), 2, "{got:?}");
        let hooks: Vec<String> = got
            .iter()
            .map(|b| serde_json::from_str::<serde_json::Value>(b).unwrap()["hook"].to_string())
            .collect();
        assert_eq!(hooks, ["\"pre\"", "\"on-failure\""]);
        assert!(all.contains("ROLLOUT_SERVICE=app"), "{all}");
        assert!(!all.contains(SECRET), "a secret reached a hook:\n{all}");
        assert!(!all.contains(LITERAL), "a secret reached a hook:\n{all}");
        assert!(!all.contains("API_TOKEN"), "{all}");
    }

    #[tokio::test]
    async fn a_failing_pre_hook_refuses_the_rollout_with_exit_2_and_its_output() {
        let (port, bodies) = receiver().await;
        let (dir, settings) = project(port, 1);
        let target = Revision::new("h2@sha256:2", "app:v2");
        let mut around = Hooks::of(&settings, &dir.0, &target).unwrap();
        let f = around.pre().await.unwrap_err();
        assert_eq!(f.code, 2);
        assert_eq!(
            f.message,
            "the pre hook \"./hooks/pre.sh\" exited 1; its output:\nchecked app\nnothing was changed"
        );
        let got = bodies.lock().unwrap().clone();
        assert_eq!(got.len(), 1, "{got:?}");
        let refusal: serde_json::Value = serde_json::from_str(&got[0]).unwrap();
        assert_eq!(refusal["hook"], "pre");
        assert_eq!(refusal["exit_code"], 2);
        assert_eq!(
            refusal["text"],
            "shop/app: rollout to app:v2 not started: the pre hook \"./hooks/pre.sh\" exited 1"
        );
        assert!(refusal["error"].as_str().unwrap().contains("checked app"));
        assert!(!everything_received(&dir.0, &bodies).contains(SECRET));
    }

    #[tokio::test]
    async fn a_failure_before_anything_launched_runs_on_failure_and_tells_the_webhook() {
        let (port, bodies) = receiver().await;
        let (dir, settings) = project(port, 0);
        let target = Revision::new("h2@sha256:2", "app:v2");
        let mut around = Hooks::of(&settings, &dir.0, &target).unwrap();
        around.pre().await.unwrap();
        // What a failing expand phase returns (rollout-migrate's error and exit code).
        let failure = Fail {
            code: 7,
            message: "db/0001_add_email.sql:2: canceling statement due to lock timeout (after 3 attempts)\nhint: a transaction holds a lock".into(),
        };
        around.failed_before_launch(&failure, 4.0).await;
        let stdin = std::fs::read_to_string(dir.0.join("on-failure.stdin"))
            .expect("the on-failure hook ran and got the message on its stdin");
        let got: serde_json::Value = serde_json::from_str(&stdin).unwrap();
        assert_eq!(got["hook"], "on-failure");
        assert_eq!(got["exit_code"], 7);
        assert_eq!(got["outcome"]["outcome"], "failed");
        assert_eq!(got["error"], failure.message.as_str());
        assert_eq!(
            got["text"],
            "shop/app: rollout to app:v2 failed before anything was launched: db/0001_add_email.sql:2: canceling statement due to lock timeout (after 3 attempts) (exit 7)"
        );
        let env = std::fs::read_to_string(dir.0.join("on-failure.env")).unwrap();
        assert!(env.contains("ROLLOUT_EXIT_CODE=7"), "{env}");
        assert!(!dir.0.join("post.stdin").exists());
        // The webhook heard pre, then the same failure.
        let got = bodies.lock().unwrap().clone();
        let hooks: Vec<(String, String)> = got
            .iter()
            .map(|b| {
                let v: serde_json::Value = serde_json::from_str(b).unwrap();
                (v["hook"].to_string(), v["exit_code"].to_string())
            })
            .collect();
        assert_eq!(
            hooks,
            [
                ("\"pre\"".to_string(), "null".to_string()),
                ("\"on-failure\"".to_string(), "7".to_string())
            ]
        );
        assert!(!everything_received(&dir.0, &bodies).contains(SECRET));
    }
}
