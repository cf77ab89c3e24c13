//! HAProxy in a container: rollout-haproxy's two seams, answered through
//! the engine.
//!
//! - [`ExecChannel`] is a [`RuntimeChannel`]: each runtime API command runs
//!   our static relay in the proxy container by exec, with an argv (the
//!   relay, the stats socket's path, the command line; never a shell
//!   string). The socket is a path inside the container, which this process
//!   cannot open; the relay ships in the `rollout-haproxy` image
//!   (`cargo xtask images`) at [`RELAY`].
//! - [`DockerResolver`] is a [`Resolve`]: a target's address is its
//!   container's IP on a network it shares with the proxy, at the port the
//!   operator names (`x-rollout.port`) or the one TCP port the container
//!   exposes; an address reads back as the project's container that has it.

use crate::engine::Engine;
use crate::labels;
use crate::relay_session::{Frame, Session, SessionError};
use async_trait::async_trait;
use bollard::models::{ContainerSummary, PortSummaryTypeEnum};
use rollout_core::model::InstanceId;
use rollout_core::router::Target;
use rollout_haproxy::command::Command;
use rollout_haproxy::{AtRest, ChannelError, HaproxyError, Resolve, RuntimeChannel};
use rollout_nginx::proxy::{ProxyError, ProxyExec};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Where the relay lies in the proxy image.
pub const RELAY: &str = "/usr/local/bin/rollout-haproxy-relay";

/// The runtime API of an HAProxy in a container, reached by exec of the
/// relay, or through one kept relay for the whole run
/// ([`ExecChannel::keeping`]).
pub struct ExecChannel {
    exec: Arc<dyn ProxyExec>,
    container: String,
    socket: String,
    kept: Option<Kept>,
}

/// The kept relay of a channel: opened at the first call, let go by
/// [`RuntimeChannel::close`]. A relay that cannot serve (an image from
/// before `--serve`) is not asked again: every call is an exec then.
struct Kept {
    engine: Engine,
    session: tokio::sync::Mutex<Option<Session>>,
    unsupported: AtomicBool,
    /// Opens that failed for want of the engine or the container.
    failed_opens: AtomicUsize,
}

/// How many failed opens of a kept relay make a channel go by exec for the
/// rest of the run.
const OPEN_TRIES: usize = 3;

impl ExecChannel {
    /// The stats socket at `socket` (a path in the container) of the
    /// container `container`, which `exec` runs commands in.
    pub fn new(
        exec: Arc<dyn ProxyExec>,
        container: impl Into<String>,
        socket: impl Into<String>,
    ) -> Self {
        Self {
            exec,
            container: container.into(),
            socket: socket.into(),
            kept: None,
        }
    }

    /// Sends through one kept relay (`--serve`) in the container, started
    /// through `engine` at the first call, instead of an exec per call.
    pub fn keeping(mut self, engine: Engine) -> Self {
        self.kept = Some(Kept {
            engine,
            session: tokio::sync::Mutex::new(None),
            unsupported: AtomicBool::new(false),
            failed_opens: AtomicUsize::new(0),
        });
        self
    }

    /// Sends `commands` through the kept relay: `None` when there is none
    /// to be had (the caller sends by exec). A session that breaks is let
    /// go, and the next call starts another.
    async fn through_kept(
        &self,
        commands: &[Command],
    ) -> Option<Result<Vec<String>, ChannelError>> {
        let kept = self.kept.as_ref()?;
        if kept.unsupported.load(Ordering::SeqCst) {
            return None;
        }
        let mut slot = kept.session.lock().await;
        // Out of the slot for the exchange: a call dropped half way (a drain
        // given up) drops the session with it, so that no later call reads
        // the answers meant for this one.
        let mut session = match slot.take() {
            Some(session) => session,
            None => match Session::open(&kept.engine, &self.container, RELAY, &self.socket).await {
                Ok(session) => session,
                Err(SessionError::Unsupported(_)) => {
                    kept.unsupported.store(true, Ordering::SeqCst);
                    return None;
                }
                // The engine or the container failed us this time: this
                // call goes by exec, the next tries again (a few times).
                Err(SessionError::Broken(_)) => {
                    if kept.failed_opens.fetch_add(1, Ordering::SeqCst) + 1 >= OPEN_TRIES {
                        kept.unsupported.store(true, Ordering::SeqCst);
                    }
                    return None;
                }
            },
        };
        let lines: Vec<String> = commands.iter().map(Command::to_string).collect();
        let frames = match session.batch(&lines).await {
            Ok(frames) => {
                *slot = Some(session);
                frames
            }
            Err(e) => {
                session.close().await;
                return Some(Err(self.io(e.to_string())));
            }
        };
        let mut answers = Vec::with_capacity(frames.len());
        for (frame, line) in frames.into_iter().zip(&lines) {
            match frame {
                Frame::Answer(text) => answers.push(answer_of(text.as_bytes())),
                Frame::Failed(why) => return Some(Err(self.io(why))),
                Frame::Timeout(_) => {
                    return Some(Err(ChannelError::Timeout {
                        at: self.describe(),
                        command: line.clone(),
                        millis: 10_000,
                    }))
                }
            }
        }
        if answers.len() != commands.len() {
            return Some(Err(self.io(format!(
                "the relay gave {} answers to {} commands",
                answers.len(),
                commands.len()
            ))));
        }
        Some(Ok(answers))
    }

    fn io(&self, reason: String) -> ChannelError {
        ChannelError::Io {
            at: self.describe(),
            reason,
        }
    }
}

/// The hint for a proxy image without the relay.
fn no_relay(container: &str) -> String {
    format!(
        "{container} has no {RELAY}, through which the stats socket is reached\nhint: run the proxy from an image that has it (cargo xtask images builds rollout-haproxy:2.6 with it)"
    )
}

impl ExecChannel {
    /// Runs the relay with `lines` (one command each) and returns what it
    /// printed, or why it could not.
    async fn run_relay(&self, lines: &[String]) -> Result<Vec<u8>, ChannelError> {
        let mut argv = vec![RELAY.to_string(), self.socket.clone()];
        argv.extend(lines.iter().cloned());
        let out = match self.exec.exec(&argv).await {
            Ok(out) => out,
            Err(ProxyError::Timeout { seconds, .. }) => {
                return Err(ChannelError::Timeout {
                    at: self.describe(),
                    command: lines.join("; "),
                    millis: u128::from(seconds) * 1000,
                })
            }
            Err(e) => {
                let reason = e.to_string();
                return Err(self.io(if reason.contains("no such file or directory") {
                    no_relay(&self.container)
                } else {
                    reason
                }));
            }
        };
        match out.code {
            0 => Ok(out.stdout),
            126 | 127 => Err(self.io(no_relay(&self.container))),
            // A relay from before batches takes one command: usage, exit 2,
            // nothing sent.
            2 if lines.len() > 1
                && String::from_utf8_lossy(&out.stderr)
                    .contains("usage: rollout-haproxy-relay SOCKET COMMAND\n") =>
            {
                Err(ChannelError::Io {
                    at: self.describe(),
                    reason: ONE_AT_A_TIME.into(),
                })
            }
            code => Err(self.io(format!(
                "the relay exited with {code}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ))),
        }
    }
}

/// Why a batch went one command at a time: the image's relay predates batches.
const ONE_AT_A_TIME: &str = "the relay takes one command at a time";

/// An answer without the empty line that ends it.
fn answer_of(raw: &[u8]) -> String {
    let answer = String::from_utf8_lossy(raw);
    answer.strip_suffix("\n\n").unwrap_or(&answer).to_string()
}

#[async_trait]
impl RuntimeChannel for ExecChannel {
    async fn send(&self, command: &Command) -> Result<String, ChannelError> {
        if let Some(answers) = self.through_kept(std::slice::from_ref(command)).await {
            return answers?.pop().ok_or_else(|| self.io("no answer".into()));
        }
        let stdout = self.run_relay(&[command.to_string()]).await?;
        Ok(answer_of(&stdout))
    }

    /// All in one exec: the relay sends each command on its own connection,
    /// in order, and ends each answer with a NUL.
    async fn send_all(&self, commands: &[Command]) -> Result<Vec<String>, ChannelError> {
        if commands.is_empty() {
            return Ok(Vec::new());
        }
        if let Some(answers) = self.through_kept(commands).await {
            return answers;
        }
        if commands.len() < 2 {
            let mut answers = Vec::new();
            for command in commands {
                answers.push(self.send(command).await?);
            }
            return Ok(answers);
        }
        let lines: Vec<String> = commands.iter().map(Command::to_string).collect();
        let stdout = match self.run_relay(&lines).await {
            Err(ChannelError::Io { reason, .. }) if reason == ONE_AT_A_TIME => {
                let mut answers = Vec::new();
                for command in commands {
                    answers.push(self.send(command).await?);
                }
                return Ok(answers);
            }
            other => other?,
        };
        let mut answers: Vec<String> = stdout.split(|b| *b == 0).map(answer_of).collect();
        // The last answer's NUL leaves an empty piece after it.
        if answers.last().is_some_and(String::is_empty) {
            answers.pop();
        }
        if answers.len() != commands.len() {
            return Err(self.io(format!(
                "the relay gave {} answers to {} commands",
                answers.len(),
                commands.len()
            )));
        }
        Ok(answers)
    }

    /// By the relay's `--keep`, in the container (its own layer: it survives
    /// a restart of the container, not its re-creation), where the image's
    /// entrypoint (`--start`) finds it when HAProxy starts again. A relay
    /// from before `--keep` refuses it (exit 1 or 2): not kept.
    async fn keep_rest(&self, rest: &AtRest) -> Result<bool, ChannelError> {
        let mut argv = vec![RELAY.to_string(), "--keep".into(), self.socket.clone()];
        argv.extend(rest.relay_args());
        match self.exec.exec(&argv).await {
            Ok(out) => Ok(out.code == 0),
            Err(e) => Err(self.io(e.to_string())),
        }
    }

    fn describe(&self) -> String {
        format!("unix:{} in {}", self.socket, self.container)
    }

    /// Lets the kept relay go: it exits at the end of its input.
    async fn close(&self) {
        if let Some(kept) = &self.kept {
            if let Some(session) = kept.session.lock().await.take() {
                session.close().await;
            }
        }
    }
}

/// A running container of the project as the resolver sees it.
#[derive(Debug, Clone)]
struct Known {
    name: String,
    service: String,
    /// Its IP on the first network (by name) it shares with the proxy.
    ip: Option<IpAddr>,
    /// Its exposed TCP ports.
    ports: Vec<u16>,
}

/// How long a read of the project's containers answers `identify`.
const FRESH: Duration = Duration::from_millis(500);

/// Targets to addresses and back, from the engine's containers.
pub struct DockerResolver {
    engine: Engine,
    project: String,
    networks: Vec<String>,
    port: Option<u16>,
    cache: Mutex<Option<(Instant, Vec<Known>)>>,
}

impl DockerResolver {
    /// The resolver of `project`'s containers as the proxy container
    /// `proxy` reaches them; `port` is the port behind the proxy when the
    /// operator names it (else the one TCP port a container exposes).
    pub async fn new(
        engine: Engine,
        project: impl Into<String>,
        proxy: &str,
        port: Option<u16>,
    ) -> Result<Self, HaproxyError> {
        let inspected = engine
            .docker()
            .inspect_container(proxy, None)
            .await
            .map_err(|e| HaproxyError::Resolve {
                target: proxy.to_string(),
                reason: engine.error(e).to_string(),
            })?;
        let mut networks: Vec<String> = inspected
            .network_settings
            .and_then(|n| n.networks)
            .map(|n| n.into_keys().collect())
            .unwrap_or_default();
        networks.sort();
        Ok(Self {
            engine,
            project: project.into(),
            networks,
            port,
            cache: Mutex::new(None),
        })
    }

    /// The project's running containers, read now.
    async fn read(&self) -> Result<Vec<Known>, HaproxyError> {
        let filters = HashMap::from([
            (
                "label".to_string(),
                vec![format!("{}={}", labels::PROJECT, self.project)],
            ),
            ("status".to_string(), vec!["running".to_string()]),
        ]);
        let found = self
            .engine
            .list_containers(filters, false)
            .await
            .map_err(|e| HaproxyError::Resolve {
                target: format!("the containers of project {}", self.project),
                reason: e.to_string(),
            })?;
        let known: Vec<Known> = found.into_iter().filter_map(|c| self.known(c)).collect();
        *self.cache.lock().unwrap_or_else(|p| p.into_inner()) =
            Some((Instant::now(), known.clone()));
        Ok(known)
    }

    fn known(&self, c: ContainerSummary) -> Option<Known> {
        let name = c.names?.first()?.trim_start_matches('/').to_string();
        let service = c.labels?.get(labels::SERVICE)?.clone();
        let networks = c
            .network_settings
            .and_then(|n| n.networks)
            .unwrap_or_default();
        let ip = self.networks.iter().find_map(|net| {
            networks
                .get(net)?
                .ip_address
                .as_deref()?
                .parse::<IpAddr>()
                .ok()
        });
        let mut ports: Vec<u16> = c
            .ports
            .unwrap_or_default()
            .iter()
            .filter(|p| matches!(p.typ, Some(PortSummaryTypeEnum::TCP) | None))
            .map(|p| p.private_port)
            .collect();
        ports.sort_unstable();
        ports.dedup();
        Some(Known {
            name,
            service,
            ip,
            ports,
        })
    }

    fn address(&self, k: &Known) -> Result<SocketAddr, HaproxyError> {
        let error = |reason: String| HaproxyError::Resolve {
            target: k.name.clone(),
            reason,
        };
        let ip = k.ip.ok_or_else(|| {
            error(format!(
                "it shares no network with the proxy (the proxy is on {})\nhint: put the service and the proxy on one network",
                self.networks.join(", ")
            ))
        })?;
        let port = match (self.port, k.ports.as_slice()) {
            (Some(port), _) => port,
            (None, [one]) => *one,
            (None, ports) => {
                return Err(error(format!(
                    "its image exposes {} TCP ports, so the port behind the proxy is not known\nhint: set x-rollout.port",
                    ports.len()
                )))
            }
        };
        Ok(SocketAddr::new(ip, port))
    }
}

#[async_trait]
impl Resolve for DockerResolver {
    async fn resolve(&self, target: &Target) -> Result<Vec<SocketAddr>, HaproxyError> {
        let known = self.read().await?;
        match target {
            Target::Service { name } => known
                .iter()
                .filter(|k| &k.service == name)
                .map(|k| self.address(k))
                .collect(),
            Target::Instance { host, .. } => match known.iter().find(|k| &k.name == host) {
                Some(k) => Ok(vec![self.address(k)?]),
                None => Err(HaproxyError::Resolve {
                    target: host.clone(),
                    reason: format!("no running container of project {}", self.project),
                }),
            },
        }
    }

    async fn identify(&self, addr: SocketAddr) -> Target {
        let cached = self
            .cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .filter(|(at, _)| at.elapsed() < FRESH)
            .map(|(_, known)| known);
        let find = |known: &[Known]| {
            known
                .iter()
                .find(|k| k.ip == Some(addr.ip()))
                .map(|k| k.name.clone())
        };
        let mut name = cached.as_deref().and_then(find);
        if name.is_none() {
            name = self.read().await.ok().as_deref().and_then(find);
        }
        let host = name.unwrap_or_else(|| addr.to_string());
        Target::instance(InstanceId(host.clone()), host)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rollout_haproxy::command::Name;
    use rollout_nginx::proxy::ExecOutput;

    /// Records the argv and answers as told.
    struct Fake {
        argv: Mutex<Vec<String>>,
        code: i32,
    }

    #[async_trait]
    impl ProxyExec for Fake {
        async fn exec(&self, argv: &[String]) -> Result<ExecOutput, ProxyError> {
            *self.argv.lock().unwrap() = argv.to_vec();
            Ok(ExecOutput {
                code: self.code,
                stdout: b"1\n# be_id be_name\n\n".to_vec(),
                stderr: b"exec: not found".to_vec(),
            })
        }
    }

    fn show() -> Command {
        Command::ShowServersState {
            backend: Name::new("backend", "app").unwrap(),
        }
    }

    #[tokio::test]
    async fn one_command_is_one_argv_and_the_answer_loses_its_empty_line() {
        let fake = Arc::new(Fake {
            argv: Mutex::new(Vec::new()),
            code: 0,
        });
        let channel = ExecChannel::new(fake.clone(), "shop-haproxy-1", "/run/haproxy/admin.sock");
        assert_eq!(channel.send(&show()).await.unwrap(), "1\n# be_id be_name");
        assert_eq!(
            *fake.argv.lock().unwrap(),
            [RELAY, "/run/haproxy/admin.sock", "show servers state app"]
        );
        assert_eq!(
            channel.describe(),
            "unix:/run/haproxy/admin.sock in shop-haproxy-1"
        );
    }

    /// A relay as it runs in the image: `new` takes batches (NUL after each
    /// answer), an old one takes one command and says its usage otherwise.
    struct Relay {
        new: bool,
        calls: Mutex<Vec<Vec<String>>>,
    }

    #[async_trait]
    impl ProxyExec for Relay {
        async fn exec(&self, argv: &[String]) -> Result<ExecOutput, ProxyError> {
            self.calls.lock().unwrap().push(argv.to_vec());
            let commands = &argv[2..];
            let answer = |c: &String| format!("answer to {c}\n\n");
            Ok(match (commands.len(), self.new) {
                (1, _) => ExecOutput {
                    code: 0,
                    stdout: answer(&commands[0]).into_bytes(),
                    stderr: Vec::new(),
                },
                (_, true) => ExecOutput {
                    code: 0,
                    stdout: commands
                        .iter()
                        .flat_map(|c| format!("{}\0", answer(c)).into_bytes())
                        .collect(),
                    stderr: Vec::new(),
                },
                (_, false) => ExecOutput {
                    code: 2,
                    stdout: Vec::new(),
                    stderr: b"usage: rollout-haproxy-relay SOCKET COMMAND\n".to_vec(),
                },
            })
        }
    }

    fn weight(server: &str) -> Command {
        Command::SetWeight {
            backend: Name::new("backend", "app").unwrap(),
            server: Name::new("server", server).unwrap(),
            weight: rollout_haproxy::command::Weight::new(1).unwrap(),
        }
    }

    #[tokio::test]
    async fn a_batch_is_one_exec_and_an_old_relay_gets_it_one_command_at_a_time() {
        let batch = [weight("app1"), weight("app2"), show()];
        let want: Vec<String> = batch.iter().map(|c| format!("answer to {c}")).collect();
        for new in [true, false] {
            let relay = Arc::new(Relay {
                new,
                calls: Mutex::new(Vec::new()),
            });
            let channel =
                ExecChannel::new(relay.clone(), "shop-haproxy-1", "/run/haproxy/admin.sock");
            assert_eq!(
                channel.send_all(&batch).await.unwrap(),
                want,
                "new relay: {new}"
            );
            let calls = relay.calls.lock().unwrap();
            if new {
                assert_eq!(calls.len(), 1, "one exec: {calls:?}");
                assert_eq!(calls[0].len(), 2 + batch.len());
            } else {
                // The refused batch, then each command alone.
                assert_eq!(calls.len(), 1 + batch.len(), "{calls:?}");
                assert!(calls[1..].iter().all(|argv| argv.len() == 3));
            }
        }
    }

    #[tokio::test]
    async fn an_image_without_the_relay_says_so() {
        let fake = Arc::new(Fake {
            argv: Mutex::new(Vec::new()),
            code: 127,
        });
        let channel = ExecChannel::new(fake, "shop-haproxy-1", "/run/haproxy/admin.sock");
        let e = channel.send(&show()).await.unwrap_err().to_string();
        assert!(
            e.contains("has no /usr/local/bin/rollout-haproxy-relay"),
            "{e}"
        );
        assert!(
            e.contains("hint: run the proxy from an image that has it"),
            "{e}"
        );
    }
}
