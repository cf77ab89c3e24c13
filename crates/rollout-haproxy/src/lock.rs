//! The proxy lock, as the router takes it: once around every change of the
//! running HAProxy's state (an apply's read, plan, commands and read back;
//! the freeing of drained slots, put in maintenance), so that
//! two rollouts behind one HAProxy (two services, or the two colours of a
//! pair) never plan from the same slots at once and take the same free one.
//!
//! The store and the waiting are the caller's: the plugin gives the lock it
//! gives nginx's router (kept with the engine, keyed by project, proxy
//! service and config path; a holder proven gone is judged dead). A router
//! without a lock takes none (one process driving its own HAProxy, the
//! crate's tests).

use async_trait::async_trait;
use rollout_core::error::RouterError;

/// The lock of one HAProxy's runtime state.
#[async_trait]
pub trait RuntimeLock: Send + Sync {
    /// Takes it, waiting for another holder as long as the implementation
    /// allows; an error when it was not taken (nothing is changed then).
    async fn acquire(&self) -> Result<(), RouterError>;

    /// Gives it back. One that cannot be given back is left for its next
    /// taker to judge.
    async fn release(&self);
}
