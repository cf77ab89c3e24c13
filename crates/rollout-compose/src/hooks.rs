//! `x-rollout.hooks`: the commands run around a rollout and the webhook
//! told about it, read into `rollout-core`'s [`Hooks`], each error naming
//! the file, line, column and field.
//!
//! ```yaml
//! x-rollout:
//!   hooks:
//!     pre: ["./hooks/check.sh", "--strict"]   # a list is the argv as written
//!     post: ./hooks/notify.sh done            # a string is split into words
//!     on_failure: {command: [./hooks/page.sh], timeout: 1m}
//!     timeout: 30s                            # for hooks that name none
//!     pass_env: [CHAT_TOKEN]                  # more of the environment for them
//!     webhook: http://chat-relay:8080/rollout # or {url: ..., timeout: 5s, retries: 2}
//! ```

use crate::error::ComposeError;
use crate::read::{self, join, Result};
use crate::yaml::{Node, Value};
use rollout_core::hooks::{
    check_argv, split_argv, CommandHook, Hooks, Webhook, WebhookUrl, DEFAULT_WEBHOOK_RETRIES,
    DEFAULT_WEBHOOK_TIMEOUT, MAX_WEBHOOK_RETRIES,
};

const HOOK_KEYS: &[&str] = &[
    "pre",
    "post",
    "on_failure",
    "timeout",
    "pass_env",
    "webhook",
];

/// Reads `x-rollout.hooks` at `path`.
pub(crate) fn parse_hooks(node: &Node, path: &str) -> Result<Hooks> {
    let entries = read::map(node, path)?;
    read::only_keys(entries, path, HOOK_KEYS)?;
    let mut hooks = Hooks::default();
    for e in entries {
        let p = join(path, &e.key);
        let v = &e.value;
        if v.is_null() {
            continue;
        }
        match e.key.as_str() {
            "pre" => hooks.pre = Some(command_hook(v, &p)?),
            "post" => hooks.post = Some(command_hook(v, &p)?),
            "on_failure" => hooks.on_failure = Some(command_hook(v, &p)?),
            "timeout" => hooks.timeout = Some(positive(v, &p)?),
            "pass_env" => {
                let names = read::string_list(v, &p)?;
                for (i, name) in names.iter().enumerate() {
                    if !env_name(name) {
                        let item = v.as_seq().and_then(|s| s.get(i)).unwrap_or(v);
                        return Err(read::expected(
                            item,
                            &format!("{p}[{i}]"),
                            "an environment variable's name (letters, digits, _)",
                        ));
                    }
                }
                hooks.pass_env = names;
            }
            "webhook" => hooks.webhook = Some(webhook(v, &p)?),
            _ => {}
        }
    }
    Ok(hooks)
}

/// A command hook: a list (the argv), a string (split into words), or a
/// mapping with `command` (either form) and `timeout`.
fn command_hook(node: &Node, path: &str) -> Result<CommandHook> {
    match &node.value {
        Value::Map(entries) => {
            read::only_keys(entries, path, &["command", "timeout"])?;
            let command = node
                .get("command")
                .filter(|c| !c.is_null())
                .ok_or_else(|| {
                    ComposeError::field(
                        &node.pos,
                        path,
                        "needs a command, such as [./hooks/check.sh]",
                    )
                })?;
            let timeout = match node.get("timeout").filter(|t| !t.is_null()) {
                Some(t) => Some(positive(t, &join(path, "timeout"))?),
                None => None,
            };
            Ok(CommandHook {
                argv: argv(command, &join(path, "command"))?,
                timeout,
            })
        }
        _ => Ok(CommandHook {
            argv: argv(node, path)?,
            timeout: None,
        }),
    }
}

fn argv(node: &Node, path: &str) -> Result<Vec<String>> {
    let argv = match &node.value {
        Value::Scalar(s) => {
            split_argv(&s.text).map_err(|e| ComposeError::field(&node.pos, path, e.to_string()))?
        }
        Value::Seq(_) => read::string_list(node, path)?,
        _ => {
            return Err(read::expected(
                node,
                path,
                "a command: a list such as [./hooks/check.sh, --strict], or a string",
            ))
        }
    };
    check_argv(&argv).map_err(|e| ComposeError::field(&node.pos, path, e.to_string()))?;
    Ok(argv)
}

/// The webhook: a URL, or a mapping with `url`, `timeout` and `retries`.
fn webhook(node: &Node, path: &str) -> Result<Webhook> {
    let (url_node, url_path, timeout, retries) = match &node.value {
        Value::Scalar(_) => (
            node,
            path.to_string(),
            DEFAULT_WEBHOOK_TIMEOUT,
            DEFAULT_WEBHOOK_RETRIES,
        ),
        Value::Map(entries) => {
            read::only_keys(entries, path, &["url", "timeout", "retries"])?;
            let url = node.get("url").filter(|u| !u.is_null()).ok_or_else(|| {
                ComposeError::field(
                    &node.pos,
                    path,
                    "needs a url, such as http://relay:8080/rollout",
                )
            })?;
            let timeout = match node.get("timeout").filter(|t| !t.is_null()) {
                Some(t) => positive(t, &join(path, "timeout"))?,
                None => DEFAULT_WEBHOOK_TIMEOUT,
            };
            let retries = match node.get("retries").filter(|r| !r.is_null()) {
                Some(r) => {
                    let p = join(path, "retries");
                    let n = read::uint(r, &p)?;
                    if n > u64::from(MAX_WEBHOOK_RETRIES) {
                        return Err(read::expected(
                            r,
                            &p,
                            &format!("a number of retries from 0 to {MAX_WEBHOOK_RETRIES}"),
                        ));
                    }
                    n as u32
                }
                None => DEFAULT_WEBHOOK_RETRIES,
            };
            (url, join(path, "url"), timeout, retries)
        }
        _ => {
            return Err(read::expected(
                node,
                path,
                "a URL such as http://relay:8080/rollout, or a mapping",
            ))
        }
    };
    let text = read::string(url_node, &url_path)?;
    let url = WebhookUrl::parse(text.trim())
        .map_err(|e| ComposeError::field(&url_node.pos, &url_path, e.to_string()))?;
    Ok(Webhook {
        url,
        timeout,
        retries,
    })
}

fn positive(node: &Node, path: &str) -> Result<std::time::Duration> {
    let d = read::duration(node, path)?;
    if d.is_zero() {
        return Err(ComposeError::field(
            &node.pos,
            path,
            "must be longer than 0s",
        ));
    }
    Ok(d)
}

/// A POSIX environment variable's name.
pub(crate) fn env_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn hooks(yaml: &str) -> Result<Hooks> {
        let tree = crate::yaml::parse("compose.yaml".into(), yaml).unwrap();
        parse_hooks(tree.get("hooks").unwrap(), "x-rollout.hooks")
    }

    fn message(yaml: &str) -> String {
        hooks(yaml).unwrap_err().to_string()
    }

    #[test]
    fn hooks_are_lists_strings_or_mappings() {
        let h = hooks(
            "hooks:\n  pre: [./check.sh, --strict, 'a b']\n  post: ./notify.sh \"rolled out\" ok\n  on_failure:\n    command: [./page.sh]\n    timeout: 1m\n  timeout: 10s\n  pass_env: [CHAT_TOKEN, _X1]\n  webhook: http://relay:8080/rollout/T0K3N\n",
        )
        .unwrap();
        assert_eq!(
            h.pre.as_ref().unwrap().argv,
            ["./check.sh", "--strict", "a b"]
        );
        assert_eq!(
            h.post.as_ref().unwrap().argv,
            ["./notify.sh", "rolled out", "ok"]
        );
        let f = h.on_failure.as_ref().unwrap();
        assert_eq!(
            (f.argv.as_slice(), f.timeout),
            (
                &["./page.sh".to_string()][..],
                Some(Duration::from_secs(60))
            )
        );
        assert_eq!(h.timeout, Some(Duration::from_secs(10)));
        assert_eq!(h.pass_env, ["CHAT_TOKEN", "_X1"]);
        let w = h.webhook.unwrap();
        assert_eq!(
            (w.url.port, w.url.target.as_str()),
            (8080, "/rollout/T0K3N")
        );
        assert_eq!(
            (w.timeout, w.retries),
            (DEFAULT_WEBHOOK_TIMEOUT, DEFAULT_WEBHOOK_RETRIES)
        );
        let w = hooks("hooks:\n  webhook: {url: 'http://127.0.0.1:9/', timeout: 2s, retries: 0}\n")
            .unwrap()
            .webhook
            .unwrap();
        assert_eq!((w.timeout, w.retries), (Duration::from_secs(2), 0));
        assert_eq!(hooks("hooks:\n").unwrap(), Hooks::default());
    }

    #[test]
    fn bad_hooks_are_refused_with_file_line_column_and_field() {
        assert_eq!(
            message("hooks:\n  pre: ./deploy.sh | tee log\n"),
            "compose.yaml:2:8: x-rollout.hooks.pre: '|' outside quotes needs a shell, and hooks run no shell\nhint: write the hook as a list, [\"sh\", \"-c\", \"...\"], to run a shell explicitly"
        );
        assert_eq!(
            message("hooks:\n  webhook: https://hooks.example/x\n"),
            "compose.yaml:2:12: x-rollout.hooks.webhook: https is not supported yet: sending it needs TLS, which the tool does not build in\nhint: use an http:// receiver (on loopback or a private network, a relay that forwards to the chat tool's https address)"
        );
        for (yaml, expected) in [
            ("hooks:\n  pre: []\n", "compose.yaml:2:8: x-rollout.hooks.pre: the command is empty"),
            ("hooks:\n  pre: \"echo 'x\"\n", "compose.yaml:2:8: x-rollout.hooks.pre: a ' quote is not closed"),
            ("hooks:\n  pre: {timeout: 5s}\n", "compose.yaml:2:8: x-rollout.hooks.pre: needs a command"),
            ("hooks:\n  pre: {command: [x], timeout: 0s}\n", "compose.yaml:2:32: x-rollout.hooks.pre.timeout: must be longer than 0s"),
            ("hooks:\n  pre: {command: x, shell: true}\n", "compose.yaml:2:21: x-rollout.hooks.pre.shell: unknown field"),
            ("hooks:\n  before: [x]\n", "compose.yaml:2:3: x-rollout.hooks.before: unknown field"),
            ("hooks:\n  timeout: soon\n", "compose.yaml:2:12: x-rollout.hooks.timeout"),
            ("hooks:\n  pass_env: [OK, 'NOT-A-NAME']\n", "compose.yaml:2:18: x-rollout.hooks.pass_env[1]: expected an environment variable's name"),
            ("hooks:\n  webhook: {url: 'http://h/', retries: 9}\n", "compose.yaml:2:40: x-rollout.hooks.webhook.retries: expected a number of retries from 0 to 5"),
            ("hooks:\n  webhook: {timeout: 1s}\n", "compose.yaml:2:12: x-rollout.hooks.webhook: needs a url"),
            ("hooks:\n  webhook: 'http://u:p@h/'\n", "compose.yaml:2:12: x-rollout.hooks.webhook: credentials in the URL"),
            ("hooks:\n  post: {command: {a: 1}}\n", "compose.yaml:2:19: x-rollout.hooks.post.command: expected a command"),
        ] {
            let m = message(yaml);
            assert!(m.starts_with(expected), "{yaml:?}\n  gave {m:?}\n  not {expected:?}");
        }
    }
}
