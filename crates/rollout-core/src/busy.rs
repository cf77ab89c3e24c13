//! A program written a moment ago can be "busy" (`ETXTBSY`) for a moment:
//! a process forked elsewhere in this one still holds the writer's file
//! descriptor until its own `exec` closes it. Starting it is tried again
//! then, briefly, rather than taken for a program that cannot run.

use std::io::{ErrorKind, Result};
use std::time::Duration;

/// How many times a busy start is tried again, and how long apart.
const TRIES: u32 = 10;
const APART: Duration = Duration::from_millis(20);

/// Runs `start` (a process spawn), and again while it fails with
/// [`ErrorKind::ExecutableFileBusy`], every 20 ms, up to 10 more times.
pub async fn retry_busy<T>(mut start: impl FnMut() -> Result<T>) -> Result<T> {
    let mut tries = 0;
    loop {
        match start() {
            Err(e) if e.kind() == ErrorKind::ExecutableFileBusy && tries < TRIES => {
                tries += 1;
                tokio::time::sleep(APART).await;
            }
            done => return done,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_busy_start_is_tried_again_and_other_errors_are_not() {
        let mut calls = 0;
        let started = retry_busy(|| {
            calls += 1;
            match calls {
                1 | 2 => Err(ErrorKind::ExecutableFileBusy.into()),
                _ => Ok(calls),
            }
        })
        .await;
        assert_eq!(started.unwrap(), 3);
        let mut calls = 0;
        let busy = retry_busy(|| -> Result<()> {
            calls += 1;
            Err(ErrorKind::ExecutableFileBusy.into())
        })
        .await;
        assert_eq!(busy.unwrap_err().kind(), ErrorKind::ExecutableFileBusy);
        assert_eq!(calls, 11, "the first try and 10 more");
        let mut calls = 0;
        let denied = retry_busy(|| -> Result<()> {
            calls += 1;
            Err(ErrorKind::PermissionDenied.into())
        })
        .await;
        assert_eq!(denied.unwrap_err().kind(), ErrorKind::PermissionDenied);
        assert_eq!(calls, 1);
    }
}
