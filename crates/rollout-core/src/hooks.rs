//! What an operator asks to be told, and to run, around a rollout: the
//! configuration of hooks, as data.
//!
//! Three command hooks (`pre`, `post`, `on_failure`) and one webhook. A
//! command is an argv list, never shell text: a hook written as one string
//! is split into words here ([`split_argv`]: whitespace separates, single and
//! double quotes group, a backslash escapes), and a string that would need a
//! shell (`|`, `;`, `&`, `<`, `>`, `$`, a backtick, parentheses, outside
//! quotes) is refused rather than passed on as a literal word: write
//! `["sh", "-c", "..."]` to ask for a shell explicitly. The webhook speaks
//! plain `http://` only ([`WebhookUrl`]): TLS would need a crypto stack the
//! tool does not build in. Running them is `rollout-hooks`' job; this module
//! only says what to run, so that the Compose loader and the command line
//! read into the same types.

use crate::word::Word;
use std::time::Duration;

/// How long a command hook may run when nothing else is said.
pub const DEFAULT_HOOK_TIMEOUT: Duration = Duration::from_secs(30);

/// How long one webhook request may take when nothing else is said.
pub const DEFAULT_WEBHOOK_TIMEOUT: Duration = Duration::from_secs(5);

/// How many times a webhook request is tried again after a failure when
/// nothing else is said.
pub const DEFAULT_WEBHOOK_RETRIES: u32 = 2;

/// The most retries a webhook may ask for: a rollout's end should not wait
/// on a receiver that is down for long.
pub const MAX_WEBHOOK_RETRIES: u32 = 5;

/// The moment a hook is run at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Phase {
    /// Before anything changes; a failing `pre` hook stops the rollout.
    Pre,
    /// After the rollout ended with exit code 0.
    Post,
    /// After the rollout ended any other way (rolled back, paused, failed,
    /// interrupted, busy).
    OnFailure,
}

impl Word for Phase {
    const ALL: &'static [Self] = &[Phase::Pre, Phase::Post, Phase::OnFailure];

    fn as_str(self) -> &'static str {
        match self {
            Phase::Pre => "pre",
            Phase::Post => "post",
            Phase::OnFailure => "on-failure",
        }
    }
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl serde::Serialize for Phase {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// One command hook: a program and its arguments, and how long it may run.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CommandHook {
    /// The program (`argv[0]`; a relative path with a `/` is taken from the
    /// project directory, a bare name from `PATH`) and its arguments.
    pub argv: Vec<String>,
    /// Its own timeout; `None` takes [`Hooks::timeout`].
    #[serde(with = "crate::duration::serde_duration_opt")]
    pub timeout: Option<Duration>,
}

/// The webhook: where to POST, how long to wait, how often to try again.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Webhook {
    /// The receiver.
    pub url: WebhookUrl,
    /// One request's timeout (connect, send, status line).
    #[serde(with = "crate::duration::serde_duration")]
    pub timeout: Duration,
    /// Retries after a failed request (connection refused, timeout, 5xx or
    /// 429), with a short growing pause between them.
    pub retries: u32,
}

/// Every hook of a service. Every field is optional, so the same type is
/// what a Compose file says, what the command line says, and their merge
/// ([`Hooks::or`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Hooks {
    /// Run before anything changes.
    pub pre: Option<CommandHook>,
    /// Run after a rollout that ended with exit code 0.
    pub post: Option<CommandHook>,
    /// Run after a rollout that ended otherwise.
    pub on_failure: Option<CommandHook>,
    /// The timeout of a command hook that names none; `None`:
    /// [`DEFAULT_HOOK_TIMEOUT`].
    #[serde(with = "crate::duration::serde_duration_opt")]
    pub timeout: Option<Duration>,
    /// Names of the operator's environment variables passed on to command
    /// hooks besides the few every hook gets (the environment is otherwise
    /// cleared: it may hold what a Compose file interpolates into a
    /// container's environment).
    pub pass_env: Vec<String>,
    /// The webhook, if any.
    pub webhook: Option<Webhook>,
}

impl Hooks {
    /// `self` with each absent field taken from `fallback` (`pass_env`:
    /// both lists).
    pub fn or(&self, fallback: &Hooks) -> Hooks {
        let mut pass_env = self.pass_env.clone();
        for name in &fallback.pass_env {
            if !pass_env.contains(name) {
                pass_env.push(name.clone());
            }
        }
        Hooks {
            pre: self.pre.clone().or_else(|| fallback.pre.clone()),
            post: self.post.clone().or_else(|| fallback.post.clone()),
            on_failure: self
                .on_failure
                .clone()
                .or_else(|| fallback.on_failure.clone()),
            timeout: self.timeout.or(fallback.timeout),
            pass_env,
            webhook: self.webhook.clone().or_else(|| fallback.webhook.clone()),
        }
    }

    /// The command hook of `phase`, if configured.
    pub fn command(&self, phase: Phase) -> Option<&CommandHook> {
        match phase {
            Phase::Pre => self.pre.as_ref(),
            Phase::Post => self.post.as_ref(),
            Phase::OnFailure => self.on_failure.as_ref(),
        }
    }

    /// How long `hook` may run.
    pub fn timeout_of(&self, hook: &CommandHook) -> Duration {
        hook.timeout
            .or(self.timeout)
            .unwrap_or(DEFAULT_HOOK_TIMEOUT)
    }

    /// Whether nothing is configured.
    pub fn is_empty(&self) -> bool {
        self.pre.is_none()
            && self.post.is_none()
            && self.on_failure.is_none()
            && self.webhook.is_none()
    }
}

/// Why a command written as one string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ArgvError {
    /// Nothing but whitespace.
    #[error("the command is empty")]
    Empty,
    /// A quote opened and never closed.
    #[error("a {0} quote is not closed")]
    Unclosed(char),
    /// A trailing backslash escapes nothing.
    #[error("a backslash at the end escapes nothing")]
    TrailingBackslash,
    /// A character only a shell gives a meaning to, outside quotes.
    #[error("{0:?} outside quotes needs a shell, and hooks run no shell\nhint: write the hook as a list, [\"sh\", \"-c\", \"...\"], to run a shell explicitly")]
    NeedsShell(char),
}

/// The characters a shell would give a meaning to: refused outside quotes,
/// so a shell line is never run as words that mean something else.
const SHELL_ONLY: &[char] = &['|', '&', ';', '<', '>', '(', ')', '$', '`', '*', '?', '~'];

/// Splits a command written as one string into argv: whitespace separates
/// words; `'...'` keeps everything literally; `"..."` keeps everything but
/// `\"` and `\\`; a backslash outside quotes keeps the next character. No
/// expansion of any kind happens, and [`SHELL_ONLY`] characters outside
/// quotes are refused.
pub fn split_argv(line: &str) -> Result<Vec<String>, ArgvError> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => word.push(c),
                        None => return Err(ArgvError::Unclosed('\'')),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c @ ('"' | '\\')) => word.push(c),
                            Some(c) => {
                                word.push('\\');
                                word.push(c);
                            }
                            None => return Err(ArgvError::Unclosed('"')),
                        },
                        Some(c) => word.push(c),
                        None => return Err(ArgvError::Unclosed('"')),
                    }
                }
            }
            '\\' => {
                in_word = true;
                match chars.next() {
                    Some(c) => word.push(c),
                    None => return Err(ArgvError::TrailingBackslash),
                }
            }
            c if SHELL_ONLY.contains(&c) => return Err(ArgvError::NeedsShell(c)),
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    if in_word {
        words.push(word);
    }
    if words.is_empty() {
        return Err(ArgvError::Empty);
    }
    Ok(words)
}

/// Checks an argv given as a list: at least the program, no empty program,
/// no NUL byte (which no argv can carry).
pub fn check_argv(argv: &[String]) -> Result<(), ArgvError> {
    match argv.first() {
        None => Err(ArgvError::Empty),
        Some(p) if p.trim().is_empty() => Err(ArgvError::Empty),
        _ if argv.iter().any(|a| a.contains('\0')) => Err(ArgvError::NeedsShell('\0')),
        _ => Ok(()),
    }
}

/// A webhook URL the tool can reach: `http://HOST[:PORT][/PATH][?QUERY]`.
///
/// The path and query often carry the receiver's token (chat tools' incoming
/// webhooks do), so [`WebhookUrl::redacted`] is what messages show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookUrl {
    /// The host name or address (an IPv6 address without its brackets).
    pub host: String,
    /// The port (80 when the URL names none).
    pub port: u16,
    /// The request target: the path and query, `/` when empty.
    pub target: String,
}

impl serde::Serialize for WebhookUrl {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.redacted())
    }
}

/// Why a webhook URL was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    /// `https://`: needs TLS.
    #[error("https is not supported yet: sending it needs TLS, which the tool does not build in\nhint: use an http:// receiver (on loopback or a private network, a relay that forwards to the chat tool's https address)")]
    Https,
    /// Another scheme, or none.
    #[error("expected an http:// URL, found {0:?}")]
    Scheme(String),
    /// `user:password@` in the URL.
    #[error("credentials in the URL (user@host) are not supported\nhint: put the receiver's token in the path or query, as chat tools' webhooks do")]
    Userinfo,
    /// No host, or a host with characters no host name has.
    #[error("{0:?} is not a host name or address")]
    Host(String),
    /// A port that is not 1 to 65535.
    #[error("{0:?} is not a port from 1 to 65535")]
    Port(String),
    /// A space or control character in the path (it would break the request
    /// line, or add a header).
    #[error("the path has a space or control character; percent-encode it")]
    Path,
}

impl WebhookUrl {
    /// Parses and checks a URL.
    pub fn parse(url: &str) -> Result<Self, UrlError> {
        let Some(rest) = url.strip_prefix("http://") else {
            let lower = url.to_ascii_lowercase();
            if lower.starts_with("https://") {
                return Err(UrlError::Https);
            }
            if let Some(rest) = lower.strip_prefix("http://") {
                return Self::parse(&format!("http://{}", &url[url.len() - rest.len()..]));
            }
            return Err(UrlError::Scheme(url.to_string()));
        };
        let (authority, target) = match rest.find(['/', '?', '#']) {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        if authority.contains('@') {
            return Err(UrlError::Userinfo);
        }
        let target = target.split('#').next().unwrap_or_default();
        if target.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(UrlError::Path);
        }
        let target = match target {
            "" => "/".to_string(),
            t if t.starts_with('?') => format!("/{t}"),
            t => t.to_string(),
        };
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let Some((addr, after)) = v6.split_once(']') else {
                return Err(UrlError::Host(authority.to_string()));
            };
            let v6_chars = |c: char| c.is_ascii_hexdigit() || c == ':' || c == '.';
            if !addr.contains(':') || !addr.chars().all(v6_chars) {
                return Err(UrlError::Host(authority.to_string()));
            }
            let port = match after {
                "" => None,
                p => Some(
                    p.strip_prefix(':')
                        .ok_or_else(|| UrlError::Host(authority.to_string()))?,
                ),
            };
            (addr.to_string(), port)
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h.to_string(), Some(p)),
                None => (authority.to_string(), None),
            }
        };
        let valid_host = !host.is_empty()
            && (host.contains(':')
                || host
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.' || c == '_'));
        if !valid_host {
            return Err(UrlError::Host(host));
        }
        let port = match port {
            None => 80,
            Some(p) => p
                .parse::<u16>()
                .ok()
                .filter(|p| *p > 0)
                .ok_or_else(|| UrlError::Port(p.to_string()))?,
        };
        Ok(WebhookUrl { host, port, target })
    }

    /// `host:port` as the `Host` header and a connection take it.
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// The URL for messages: scheme, host and port, the path hidden (it may
    /// carry a token).
    pub fn redacted(&self) -> String {
        let hidden = if self.target == "/" { "/" } else { "/…" };
        format!("http://{}{hidden}", self.authority())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(s: &str) -> Vec<String> {
        split_argv(s).unwrap()
    }

    #[test]
    fn a_string_hook_is_split_into_words_with_quotes_and_no_expansion() {
        assert_eq!(
            split("./notify.sh --channel ops"),
            ["./notify.sh", "--channel", "ops"]
        );
        assert_eq!(split("  a   b\tc  "), ["a", "b", "c"]);
        assert_eq!(
            split("echo 'two words' \"and \\\"more\\\"\""),
            ["echo", "two words", "and \"more\""]
        );
        assert_eq!(split("echo '$HOME|x' \"a;b\""), ["echo", "$HOME|x", "a;b"]);
        assert_eq!(split("a\\ b ''"), ["a b", ""]);
        assert_eq!(split("x\"y\"'z'"), ["xyz"]);
        assert_eq!(split("\"a\\nb\""), ["a\\nb"]);
    }

    #[test]
    fn a_string_that_needs_a_shell_or_is_broken_is_refused() {
        assert_eq!(split_argv("   "), Err(ArgvError::Empty));
        assert_eq!(split_argv("echo 'x"), Err(ArgvError::Unclosed('\'')));
        assert_eq!(split_argv("echo \"x"), Err(ArgvError::Unclosed('"')));
        assert_eq!(split_argv("echo x\\"), Err(ArgvError::TrailingBackslash));
        for (line, c) in [
            ("a | b", '|'),
            ("a; b", ';'),
            ("a && b", '&'),
            ("a > f", '>'),
            ("echo $HOME", '$'),
            ("echo `id`", '`'),
            ("ls *.sh", '*'),
            ("cd ~", '~'),
        ] {
            let e = split_argv(line).unwrap_err();
            assert_eq!(e, ArgvError::NeedsShell(c), "{line}");
            assert!(e.to_string().contains("[\"sh\", \"-c\""), "{e}");
        }
        assert_eq!(check_argv(&[]), Err(ArgvError::Empty));
        assert_eq!(check_argv(&[" ".into()]), Err(ArgvError::Empty));
        assert!(check_argv(&["a".into(), "".into()]).is_ok());
    }

    #[test]
    fn only_plain_http_urls_are_taken_and_their_path_is_never_shown() {
        let u = WebhookUrl::parse("http://127.0.0.1:8080/hooks/T0K3N?x=1").unwrap();
        assert_eq!((u.host.as_str(), u.port), ("127.0.0.1", 8080));
        assert_eq!(u.target, "/hooks/T0K3N?x=1");
        assert_eq!(u.redacted(), "http://127.0.0.1:8080/…");
        assert!(!serde_json::to_string(&u).unwrap().contains("T0K3N"));
        let u = WebhookUrl::parse("HTTP://chat.internal").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.target.as_str()),
            ("chat.internal", 80, "/")
        );
        let u = WebhookUrl::parse("http://[::1]:9/x#frag").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.target.as_str()),
            ("::1", 9, "/x")
        );
        assert_eq!(u.authority(), "[::1]:9");
        assert_eq!(WebhookUrl::parse("http://h?q").unwrap().target, "/?q");
        assert_eq!(
            WebhookUrl::parse("https://hooks.slack.com/x"),
            Err(UrlError::Https)
        );
        assert!(UrlError::Https.to_string().contains("TLS"));
        assert!(matches!(
            WebhookUrl::parse("ftp://h"),
            Err(UrlError::Scheme(_))
        ));
        assert!(matches!(
            WebhookUrl::parse("hooks.internal/x"),
            Err(UrlError::Scheme(_))
        ));
        assert_eq!(WebhookUrl::parse("http://u:p@h/"), Err(UrlError::Userinfo));
        assert!(matches!(
            WebhookUrl::parse("http://:80/"),
            Err(UrlError::Host(_))
        ));
        assert!(matches!(
            WebhookUrl::parse("http://a b/"),
            Err(UrlError::Host(_))
        ));
        assert!(matches!(
            WebhookUrl::parse("http://h:0/"),
            Err(UrlError::Port(_))
        ));
        assert!(matches!(
            WebhookUrl::parse("http://h:99999/"),
            Err(UrlError::Port(_))
        ));
        assert_eq!(
            WebhookUrl::parse("http://h/a\r\nX-Evil: 1"),
            Err(UrlError::Path)
        );
        assert_eq!(WebhookUrl::parse("http://h/a b"), Err(UrlError::Path));
    }

    #[test]
    fn hooks_merge_field_by_field_and_timeouts_fall_back() {
        let hook = |p: &str| CommandHook {
            argv: vec![p.to_string()],
            timeout: None,
        };
        let service = Hooks {
            pre: Some(hook("svc-pre")),
            pass_env: vec!["A".into()],
            ..Default::default()
        };
        let project = Hooks {
            pre: Some(hook("proj-pre")),
            post: Some(CommandHook {
                timeout: Some(Duration::from_secs(3)),
                ..hook("proj-post")
            }),
            timeout: Some(Duration::from_secs(7)),
            pass_env: vec!["B".into(), "A".into()],
            ..Default::default()
        };
        let h = service.or(&project);
        assert_eq!(h.pre.as_ref().unwrap().argv, ["svc-pre"]);
        assert_eq!(h.post.as_ref().unwrap().argv, ["proj-post"]);
        assert_eq!(h.pass_env, ["A", "B"]);
        assert_eq!(
            h.timeout_of(h.pre.as_ref().unwrap()),
            Duration::from_secs(7)
        );
        assert_eq!(
            h.timeout_of(h.post.as_ref().unwrap()),
            Duration::from_secs(3)
        );
        assert_eq!(
            Hooks::default().timeout_of(&hook("x")),
            DEFAULT_HOOK_TIMEOUT
        );
        assert!(Hooks::default().is_empty());
        assert!(!h.is_empty());
        assert_eq!(h.command(Phase::OnFailure), None);
        assert_eq!(Phase::OnFailure.to_string(), "on-failure");
    }
}
