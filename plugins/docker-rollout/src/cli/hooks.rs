//! The hook flags: each wins over its field of `x-rollout.hooks`. A command
//! given on the command line is one string, split into argv as the Compose
//! file's string form is (rollout-core's `split_argv`: quotes group words,
//! nothing is expanded, shell characters are refused).

use clap::Args;
use rollout_core::hooks::{split_argv, CommandHook, Hooks, Webhook, WebhookUrl};
use rollout_core::hooks::{DEFAULT_WEBHOOK_RETRIES, DEFAULT_WEBHOOK_TIMEOUT};
use std::time::Duration;

/// Flags of the hooks and the webhook.
#[derive(Debug, Args)]
#[command(next_help_heading = "Hooks (x-rollout.hooks)")]
pub(super) struct HookFlags {
    /// Command run before anything changes; its failure stops the rollout (exit 2).
    #[arg(long, value_name = "COMMAND", value_parser = command)]
    hook_pre: Option<CommandHook>,
    /// Command run after a rollout that ended with exit code 0.
    #[arg(long, value_name = "COMMAND", value_parser = command)]
    hook_post: Option<CommandHook>,
    /// Command run after a rollout that ended otherwise (rolled back, paused, failed, interrupted).
    #[arg(long, value_name = "COMMAND", value_parser = command)]
    hook_on_failure: Option<CommandHook>,
    /// How long a command hook may run before it is killed (default 30s).
    #[arg(long, value_name = "DURATION", value_parser = super::positive_duration)]
    hook_timeout: Option<Duration>,
    /// http:// URL told of each moment with a JSON POST (https is not supported yet).
    #[arg(long, value_name = "URL", value_parser = webhook)]
    webhook: Option<Webhook>,
}

impl HookFlags {
    /// The hooks the flags give (absent fields keep the Compose file's).
    pub(super) fn into_hooks(self) -> Hooks {
        Hooks {
            pre: self.hook_pre,
            post: self.hook_post,
            on_failure: self.hook_on_failure,
            timeout: self.hook_timeout,
            pass_env: Vec::new(),
            webhook: self.webhook,
        }
    }
}

fn command(s: &str) -> Result<CommandHook, String> {
    Ok(CommandHook {
        argv: split_argv(s).map_err(|e| e.to_string())?,
        timeout: None,
    })
}

fn webhook(s: &str) -> Result<Webhook, String> {
    Ok(Webhook {
        url: WebhookUrl::parse(s.trim()).map_err(|e| e.to_string())?,
        timeout: DEFAULT_WEBHOOK_TIMEOUT,
        retries: DEFAULT_WEBHOOK_RETRIES,
    })
}

#[cfg(test)]
mod tests {
    use crate::cli::{parse, Invocation};
    use std::ffi::OsString;
    use std::time::Duration;

    fn parsed(args: &[&str]) -> Result<crate::cli::RolloutRequest, clap::Error> {
        let argv: Vec<OsString> = std::iter::once("docker-rollout")
            .chain(args.iter().copied())
            .map(OsString::from)
            .collect();
        match parse(argv, false)? {
            Invocation::Rollout(r) => Ok(*r),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn hook_flags_are_split_into_argv_and_checked() {
        let r = parsed(&[
            "app",
            "--hook-pre",
            "./hooks/check.sh --strict 'two words'",
            "--hook-post",
            "notify done",
            "--hook-on-failure",
            "page",
            "--hook-timeout",
            "45s",
            "--webhook",
            "http://127.0.0.1:9000/rollout",
        ])
        .unwrap();
        let h = &r.overrides.hooks;
        assert_eq!(
            h.pre.as_ref().unwrap().argv,
            ["./hooks/check.sh", "--strict", "two words"]
        );
        assert_eq!(h.post.as_ref().unwrap().argv, ["notify", "done"]);
        assert_eq!(h.on_failure.as_ref().unwrap().argv, ["page"]);
        assert_eq!(h.timeout, Some(Duration::from_secs(45)));
        assert_eq!(h.webhook.as_ref().unwrap().url.port, 9000);
        assert!(parsed(&["app"]).unwrap().overrides.hooks.is_empty());

        for (args, says) in [
            (&["app", "--hook-pre", "a | b"][..], "needs a shell"),
            (&["app", "--hook-post", "  "][..], "the command is empty"),
            (&["app", "--webhook", "https://x/y"][..], "needs TLS"),
            (&["app", "--hook-timeout", "0s"][..], "--hook-timeout"),
        ] {
            let e = parsed(args).unwrap_err();
            assert_eq!(e.exit_code(), 2, "{args:?}");
            assert!(e.to_string().contains(says), "{args:?}: {e}");
        }
    }
}
