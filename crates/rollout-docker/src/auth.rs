//! The credentials a pull sends to a registry, found as the docker CLI
//! finds them in its config file (`config.json` of `--config`, else
//! `DOCKER_CONFIG`, else `~/.docker`).
//!
//! For a registry host, the docker CLI asks, in this order: the credential
//! helper `credHelpers` names for that host, else the store `credsStore`
//! names for every host, else the `auths` entry of the host (its `auth` is
//! base64 of `user:password`, or an `identitytoken`). A helper is the
//! program `docker-credential-NAME`, asked with `get` and the server
//! address on its standard input; it answers `{"ServerURL", "Username",
//! "Secret"}` (a `Username` of `<token>` means the secret is an identity
//! token). A helper or an entry that knows nothing of the host means an
//! anonymous pull, as for the CLI.
//!
//! Secrets are never printed: errors name the file, the host or the
//! helper, never what they hold, and [`Credentials`]'s `Debug` hides them.

use serde::Deserialize;
use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use tokio::io::AsyncWriteExt;

/// The server address Docker Hub's credentials are kept under.
pub const DOCKER_HUB_ADDRESS: &str = "https://index.docker.io/v1/";
/// The registry host of references without one (`app:latest`).
pub const DOCKER_HUB: &str = "docker.io";

/// What a pull authenticates with.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Credentials {
    /// The user name (empty with an identity token).
    pub username: String,
    /// The password.
    pub password: String,
    /// An identity token (a helper's `<token>` answer, or `identitytoken`).
    pub identity_token: String,
    /// The server address the credentials were found under.
    pub server: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("server", &self.server)
            .finish_non_exhaustive()
    }
}

/// The credentials of a registry could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot read the credentials for {registry}: {reason}\nhint: check {where_}, or log in again with docker login {registry}")]
pub struct AuthError {
    /// The registry host.
    pub registry: String,
    /// Where they were looked for (the file, or the helper program).
    pub where_: String,
    /// What went wrong (never a secret).
    pub reason: String,
}

/// The parts of `config.json` that say where credentials are.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct AuthConfig {
    /// `auths`: by server address.
    #[serde(default)]
    pub auths: HashMap<String, AuthEntry>,
    /// `credsStore`: the helper for every registry.
    #[serde(default, rename = "credsStore")]
    pub creds_store: Option<String>,
    /// `credHelpers`: a helper per registry host.
    #[serde(default, rename = "credHelpers")]
    pub cred_helpers: HashMap<String, String>,
    /// The file it was read from (for messages).
    #[serde(skip)]
    pub path: PathBuf,
}

/// One `auths` entry.
#[derive(Clone, Default, Deserialize)]
pub struct AuthEntry {
    /// base64 of `user:password`.
    #[serde(default)]
    pub auth: Option<String>,
    /// An identity token, when the login gave one.
    #[serde(default)]
    pub identitytoken: Option<String>,
}

impl fmt::Debug for AuthEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthEntry").finish_non_exhaustive()
    }
}

/// Where credentials for a registry come from, once the config is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// Ask the program `docker-credential-NAME`.
    Helper(String),
    /// From the config file itself.
    Inline(Credentials),
    /// Nowhere: pull anonymously.
    Anonymous,
}

/// The docker CLI's config directory: `--config`, else `DOCKER_CONFIG`,
/// else `$HOME/.docker`.
pub fn config_dir(config_flag: Option<&Path>) -> Option<PathBuf> {
    let var = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty());
    match (config_flag, var("DOCKER_CONFIG"), var("HOME")) {
        (Some(dir), _, _) => Some(dir.to_path_buf()),
        (None, Some(dir), _) => Some(PathBuf::from(dir)),
        (None, None, Some(home)) => Some(Path::new(&home).join(".docker")),
        (None, None, None) => None,
    }
}

impl AuthConfig {
    /// Reads `config.json` of `dir`; an absent file is an empty config (as
    /// for the CLI), one that does not parse is an error for `registry`.
    pub fn load(dir: &Path, registry: &str) -> Result<AuthConfig, AuthError> {
        let path = dir.join("config.json");
        let text = match std::fs::read(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(AuthConfig {
                    path,
                    ..Default::default()
                })
            }
            Err(e) => {
                return Err(AuthError {
                    registry: registry.to_string(),
                    where_: path.display().to_string(),
                    reason: e.to_string(),
                })
            }
        };
        let mut config: AuthConfig = serde_json::from_slice(&text).map_err(|e| AuthError {
            registry: registry.to_string(),
            where_: path.display().to_string(),
            // serde_json's message names a line and column, not the value.
            reason: format!("it is not valid JSON ({e})"),
        })?;
        config.path = path;
        Ok(config)
    }

    /// Where the credentials of `registry` (a host, `docker.io` for Docker
    /// Hub) come from, in the docker CLI's order.
    pub fn source(&self, registry: &str) -> Result<Source, AuthError> {
        if let Some(helper) = self.cred_helpers.get(registry).filter(|h| !h.is_empty()) {
            return Ok(Source::Helper(helper.clone()));
        }
        if let Some(store) = self.creds_store.as_ref().filter(|s| !s.is_empty()) {
            return Ok(Source::Helper(store.clone()));
        }
        let Some((server, entry)) = self
            .auths
            .iter()
            .find(|(key, _)| host_of_key(key) == registry)
        else {
            return Ok(Source::Anonymous);
        };
        let err = |reason: &str| AuthError {
            registry: registry.to_string(),
            where_: format!("auths.{server:?} in {}", self.path.display()),
            reason: reason.to_string(),
        };
        let mut creds = Credentials {
            server: server.clone(),
            identity_token: entry.identitytoken.clone().unwrap_or_default(),
            ..Default::default()
        };
        if let Some(auth) = entry.auth.as_ref().filter(|a| !a.is_empty()) {
            let decoded =
                decode_base64(auth.trim()).ok_or_else(|| err("its auth is not base64"))?;
            let text = String::from_utf8(decoded).map_err(|_| err("its auth is not text"))?;
            let (user, pass) = text
                .split_once(':')
                .ok_or_else(|| err("its auth is not user:password"))?;
            creds.username = user.to_string();
            creds.password = pass.to_string();
        }
        if creds.username.is_empty() && creds.identity_token.is_empty() {
            return Ok(Source::Anonymous);
        }
        Ok(Source::Inline(creds))
    }
}

/// The server address a helper is asked about for `registry`.
pub fn server_address(registry: &str) -> String {
    if registry == DOCKER_HUB {
        DOCKER_HUB_ADDRESS.to_string()
    } else {
        registry.to_string()
    }
}

/// The registry host an `auths` key names: `https://index.docker.io/v1/`
/// is Docker Hub; `https://host:port/path` is `host:port`.
fn host_of_key(key: &str) -> String {
    let rest = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    let host = rest.split('/').next().unwrap_or(rest);
    match host {
        "index.docker.io" | "registry-1.docker.io" | "docker.io" => DOCKER_HUB.to_string(),
        other => other.to_string(),
    }
}

/// What a credential helper answers to `get`.
#[derive(Deserialize)]
struct HelperAnswer {
    #[serde(rename = "Username", default)]
    username: String,
    #[serde(rename = "Secret", default)]
    secret: String,
}

/// Asks `docker-credential-HELPER get` for `registry`'s credentials; `None`
/// when the helper knows none (it says so and exits non-zero, as for the
/// CLI: the pull goes on anonymously).
pub async fn ask_helper(helper: &str, registry: &str) -> Result<Option<Credentials>, AuthError> {
    ask_program(&format!("docker-credential-{helper}"), registry).await
}

/// [`ask_helper`] with the helper's program named.
async fn ask_program(program: &str, registry: &str) -> Result<Option<Credentials>, AuthError> {
    let err = |reason: String| AuthError {
        registry: registry.to_string(),
        where_: format!("the credential helper {program}"),
        reason,
    };
    let server = server_address(registry);
    let mut child = tokio::process::Command::new(program)
        .arg("get")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| err(format!("cannot run it: {e}")))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(server.as_bytes())
            .await
            .map_err(|e| err(format!("cannot write to it: {e}")))?;
    }
    let out = tokio::time::timeout(std::time::Duration::from_secs(30), child.wait_with_output())
        .await
        .map_err(|_| err("it did not answer within 30 s".to_string()))?
        .map_err(|e| err(e.to_string()))?;
    if !out.status.success() {
        // "credentials not found in native keychain": an anonymous pull.
        return Ok(None);
    }
    let answer: HelperAnswer = serde_json::from_slice(&out.stdout)
        .map_err(|_| err("its answer is not the JSON a helper gives".to_string()))?;
    let mut creds = Credentials {
        server,
        ..Default::default()
    };
    if answer.username == "<token>" {
        creds.identity_token = answer.secret;
    } else {
        creds.username = answer.username;
        creds.password = answer.secret;
    }
    Ok(Some(creds))
}

/// The credentials for `registry` from the config in `dir` (helpers asked
/// where it says), or `None` for an anonymous pull.
pub async fn credentials_for(
    dir: Option<&Path>,
    registry: &str,
) -> Result<Option<Credentials>, AuthError> {
    let Some(dir) = dir else {
        return Ok(None);
    };
    match AuthConfig::load(dir, registry)?.source(registry)? {
        Source::Anonymous => Ok(None),
        Source::Inline(c) => Ok(Some(c)),
        Source::Helper(h) => ask_helper(&h, registry).await,
    }
}

/// Standard base64 (RFC 4648, with or without padding); `None` for
/// anything else.
fn decode_base64(text: &str) -> Option<Vec<u8>> {
    let value = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    let body = text.trim_end_matches('=');
    if text.len() - body.len() > 2 || body.len() % 4 == 1 {
        return None;
    }
    let mut out = Vec::with_capacity(body.len() * 3 / 4);
    for chunk in body.as_bytes().chunks(4) {
        let mut n = 0u32;
        for (i, c) in chunk.iter().enumerate() {
            n |= value(*c)? << (18 - 6 * i);
        }
        let bytes = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
        out.extend_from_slice(&bytes[..chunk.len() - 1]);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(json: &str) -> AuthConfig {
        let mut c: AuthConfig = serde_json::from_str(json).unwrap();
        c.path = PathBuf::from("/home/op/.docker/config.json");
        c
    }

    #[test]
    fn base64_decodes_as_rfc_4648_says() {
        assert_eq!(decode_base64("dXNlcjpwYXNz").unwrap(), b"user:pass");
        assert_eq!(decode_base64("YQ==").unwrap(), b"a");
        assert_eq!(decode_base64("YWI=").unwrap(), b"ab");
        assert_eq!(decode_base64("YWI").unwrap(), b"ab");
        assert_eq!(decode_base64("").unwrap(), b"");
        assert_eq!(decode_base64("a"), None);
        assert_eq!(decode_base64("dX*l"), None);
        assert_eq!(decode_base64("YQ==="), None);
    }

    #[test]
    fn auths_give_user_and_password_by_host() {
        let c = config(
            r#"{"auths":{"127.0.0.1:5000":{"auth":"dXNlcjpwYTpzcw=="},
                "https://index.docker.io/v1/":{"auth":"aHViOnNlY3JldA=="},
                "https://reg.example/v2/":{"identitytoken":"tok"}}}"#,
        );
        let Source::Inline(local) = c.source("127.0.0.1:5000").unwrap() else {
            panic!()
        };
        // Only the first colon separates: a password may hold one.
        assert_eq!(
            (local.username.as_str(), local.password.as_str()),
            ("user", "pa:ss")
        );
        let Source::Inline(hub) = c.source(DOCKER_HUB).unwrap() else {
            panic!()
        };
        assert_eq!(hub.username, "hub");
        assert_eq!(hub.server, DOCKER_HUB_ADDRESS);
        let Source::Inline(token) = c.source("reg.example").unwrap() else {
            panic!()
        };
        assert_eq!(token.identity_token, "tok");
        assert_eq!(c.source("other:5000").unwrap(), Source::Anonymous);
    }

    #[test]
    fn helpers_come_first_then_the_store() {
        let c = config(
            r#"{"auths":{"a.example":{"auth":"dTpw"}},"credsStore":"desktop","credHelpers":{"b.example":"pass"}}"#,
        );
        assert_eq!(
            c.source("b.example").unwrap(),
            Source::Helper("pass".into())
        );
        assert_eq!(
            c.source("a.example").unwrap(),
            Source::Helper("desktop".into())
        );
        assert_eq!(server_address(DOCKER_HUB), DOCKER_HUB_ADDRESS);
        assert_eq!(server_address("127.0.0.1:5000"), "127.0.0.1:5000");
    }

    #[test]
    fn a_bad_entry_names_where_and_never_the_secret() {
        let c = config(r#"{"auths":{"a.example":{"auth":"c2VjcmV0LXBhc3N3b3Jk"}}}"#);
        let e = c.source("a.example").unwrap_err().to_string();
        assert!(
            e.contains("auths.\"a.example\" in /home/op/.docker/config.json"),
            "{e}"
        );
        assert!(e.contains("not user:password"), "{e}");
        assert!(!e.contains("secret") && !e.contains("c2Vj"), "{e}");
        let c = config(r#"{"auths":{"a.example":{"auth":"!!"}}}"#);
        assert!(c
            .source("a.example")
            .unwrap_err()
            .to_string()
            .contains("not base64"));
        let shown = format!(
            "{:?}",
            Credentials {
                username: "u".into(),
                password: "hunter2".into(),
                ..Default::default()
            }
        );
        assert!(!shown.contains("hunter2"), "{shown}");
    }

    #[tokio::test]
    async fn a_helper_is_asked_about_the_server_on_its_stdin() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("rollout-helper-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let helper = dir.join("docker-credential-test");
        // Answers for the server it was asked about, knows nothing of others.
        std::fs::write(
            &helper,
            "#!/bin/sh\nread server\ncase \"$1 $server\" in\n\"get 127.0.0.1:5000\") echo '{\"ServerURL\":\"127.0.0.1:5000\",\"Username\":\"bot\",\"Secret\":\"s3\"}' ;;\n\"get https://index.docker.io/v1/\") echo '{\"Username\":\"<token>\",\"Secret\":\"t0k\"}' ;;\n*) echo 'credentials not found in native keychain'; exit 1 ;;\nesac\n",
        )
        .unwrap();
        std::fs::set_permissions(&helper, std::fs::Permissions::from_mode(0o755)).unwrap();
        let program = helper.to_str().unwrap();
        let found = ask_program(program, "127.0.0.1:5000")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            (found.username.as_str(), found.password.as_str()),
            ("bot", "s3")
        );
        let hub = ask_program(program, DOCKER_HUB).await.unwrap().unwrap();
        assert_eq!(
            (hub.identity_token.as_str(), hub.username.as_str()),
            ("t0k", "")
        );
        assert_eq!(ask_program(program, "x.example").await.unwrap(), None);
        let e = ask_program("/nonexistent/docker-credential-x", "x.example")
            .await
            .unwrap_err();
        assert!(e.to_string().contains("cannot run it"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn a_missing_config_is_an_anonymous_pull_and_a_broken_one_an_error() {
        let dir = std::env::temp_dir().join(format!("rollout-auth-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        assert_eq!(credentials_for(Some(&dir), "x.example").await, Ok(None));
        std::fs::write(dir.join("config.json"), "{\"auths\": ").unwrap();
        let e = credentials_for(Some(&dir), "x.example").await.unwrap_err();
        assert!(e.to_string().contains("is not valid JSON"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
