//! Hooks and alerts around a rollout: what an operator asked to run, and to
//! be told, before and after.
//!
//! Why a crate of its own: running an operator's programs and talking to an
//! HTTP receiver are I/O that neither `rollout-core` (which only says, in
//! `rollout_core::hooks`, what to run) nor the thin plugin should hold, and
//! another tool driving rollouts can reuse them as they are.
//!
//! Three moments ([`Phase`]): `pre` before anything changes, `post` after a
//! rollout that ended with exit code 0, `on-failure` after one that ended
//! any other way. At each, the [`Message`] (one JSON object) goes to the
//! moment's command hook on its stdin ([`command`]) and to the webhook as a
//! POST ([`webhook`]). What a failure means is the caller's rule (a failing
//! `pre` hook refuses the rollout; anything else is a warning); this crate
//! runs, bounds and reports.
//!
//! **Invariant:** a message carries names, revisions, the outcome and the
//! tool's own words, never an environment value; a command hook's
//! environment is cleared but for a fixed list and the names the operator
//! passes on; no command is run through a shell.
#![deny(missing_docs)]

pub mod command;
pub mod message;
pub mod webhook;

pub use command::{HookError, Ran, Setting};
pub use message::{Message, Subject};
pub use rollout_core::hooks::{Hooks, Phase};
pub use webhook::{Delivered, NotDelivered};

/// The hooks of one rollout, ready to run.
#[derive(Debug, Clone)]
pub struct Runner {
    /// What is configured.
    pub hooks: Hooks,
    /// Where commands run and what environment they get.
    pub setting: Setting,
}

impl Runner {
    /// Hooks run from `dir` (the Compose project's directory), with the
    /// environment [`Setting::from_process`] passes on.
    pub fn new(hooks: Hooks, dir: &std::path::Path) -> Self {
        let setting = Setting::from_process(dir, &hooks.pass_env);
        Runner { hooks, setting }
    }

    /// Runs the command hook of `message.hook`, if one is configured.
    pub async fn command(&self, message: &Message) -> Option<Result<Ran, HookError>> {
        let phase = message.hook;
        let hook = self.hooks.command(phase)?;
        let timeout = self.hooks.timeout_of(hook);
        Some(command::run(phase, hook, timeout, &self.setting, message).await)
    }

    /// Sends `message` to the webhook, if one is configured.
    pub async fn notify(&self, message: &Message) -> Option<Result<Delivered, NotDelivered>> {
        let webhook = self.hooks.webhook.as_ref()?;
        Some(webhook::send(webhook, &message.to_json()).await)
    }
}
