//! Reaching an engine through the docker CLI: `docker system dial-stdio`.
//!
//! TLS and `ssh://` endpoints (and Docker Desktop's contexts) need a TLS
//! stack or an ssh client; the docker CLI already has both, and its
//! `system dial-stdio` command turns one connection to the engine into its
//! own standard input and output. Each request here spawns one such child
//! (as the Go plugin framework does with `DOCKER_CLI_PLUGIN_USE_DIAL_STDIO`)
//! and speaks HTTP/1.1 over its pipes; upgraded connections (exec, attach)
//! keep the child until they are dropped. No crypto crate is compiled in.

use bollard::errors::Error as BollardError;
use bollard::{BollardRequest, Docker};
use hyper_util::rt::TokioIo;
use std::ffi::OsString;
use std::io;
use std::process::Stdio;
use std::sync::Arc;

/// The docker CLI and the global flags to reach the engine with
/// (`--context prod`, `-H ssh://...`, `--tlsverify ...`): what the docker
/// CLI passed before the plugin's name.
#[derive(Debug, Clone)]
pub struct DockerCli {
    /// The program (`docker`, or `$DOCKER_CLI_PLUGIN_ORIGINAL_CLI_COMMAND`).
    pub program: OsString,
    /// Its global flags.
    pub global_args: Vec<OsString>,
}

impl DockerCli {
    /// `docker` on the `PATH` with these global flags.
    pub fn new<I, S>(program: impl Into<OsString>, global_args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        Self {
            program: program.into(),
            global_args: global_args.into_iter().map(Into::into).collect(),
        }
    }
}

/// A bollard client whose every connection is a `docker system dial-stdio`.
pub(crate) fn client(cli: &DockerCli) -> Result<Docker, BollardError> {
    let cli = Arc::new(cli.clone());
    let transport = move |request: BollardRequest| {
        let cli = cli.clone();
        async move { send(&cli, request).await.map_err(BollardError::from) }
    };
    Docker::connect_with_custom_transport(
        transport,
        Some("http://docker.invalid"),
        120,
        bollard::API_DEFAULT_VERSION,
    )
}

async fn send(
    cli: &DockerCli,
    mut request: BollardRequest,
) -> io::Result<hyper::Response<hyper::body::Incoming>> {
    // A bare connection sends what it is given: the engine wants a Host
    // header and takes the path in origin form, as the CLI sends it.
    if !request.headers().contains_key(hyper::header::HOST) {
        request.headers_mut().insert(
            hyper::header::HOST,
            hyper::header::HeaderValue::from_static("docker"),
        );
    }
    let origin_form = request
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "/".into());
    *request.uri_mut() = origin_form.parse().map_err(io::Error::other)?;
    let mut command = tokio::process::Command::new(&cli.program);
    command
        .args(&cli.global_args)
        .args(["system", "dial-stdio"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    // Out of the terminal's foreground group: a Ctrl-C is the rollout's to
    // handle, and it still needs the engine to roll back.
    #[cfg(unix)]
    command.process_group(0);
    let mut child = command.spawn()?;
    let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
        return Err(io::Error::other("docker system dial-stdio gave no pipes"));
    };
    let io = TokioIo::new(tokio::io::join(stdout, stdin));
    let (mut sender, connection) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(io::Error::other)?;
    tokio::spawn(async move {
        // The child ends when its standard input closes, which happens when
        // the connection (or the upgraded stream) is dropped; waiting here
        // reaps it.
        let _ = connection.with_upgrades().await;
        let _ = child.wait().await;
    });
    sender.send_request(request).await.map_err(io::Error::other)
}
