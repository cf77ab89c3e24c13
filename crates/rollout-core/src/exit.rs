//! Exit codes of `docker rollout`, one constant per meaning (DESIGN.md).
//!
//! These are part of the machine-readable contract: scripts and CI branch on
//! them. They do not change within a major version of the event schema.

/// The rollout succeeded, or there was nothing to change.
pub const SUCCESS: i32 = 0;
/// An unexpected error.
pub const UNEXPECTED: i32 = 1;
/// Usage error or bad input; nothing was changed.
pub const BAD_INPUT: i32 = 2;
/// The rollout failed and was rolled back automatically: the old revision serves.
pub const ROLLED_BACK: i32 = 3;
/// Paused (failure_action pause, or an indefinite canary step); the journal
/// says where, and the next run continues.
pub const PAUSED: i32 = 4;
/// The rollback itself failed: a person must look.
pub const ROLLBACK_FAILED: i32 = 5;
/// The engine or the proxy cannot be reached; nothing was changed.
pub const UNREACHABLE: i32 = 6;
/// Busy: another run holds the lock (of the service, of the proxy's config
/// past `--lock-timeout`, or of the database's migrations); nothing was
/// changed.
pub const BUSY: i32 = 7;
/// Interrupted by Ctrl-C (or the Docker CLI closing the plugin socket) and
/// rolled back.
pub const INTERRUPTED: i32 = 130;
