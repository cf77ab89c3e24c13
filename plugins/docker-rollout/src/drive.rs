//! Runs a strategy, renders its events as they come, and turns the
//! operator's Ctrl-C (or the docker CLI closing the plugin socket) into the
//! strategy's cancellation levels.

use crate::output::Renderer;
use rollout_core::event::EventSink;
use rollout_core::strategy::{Cancel, CancelHandle, CancelLevel, Plan, RolloutContext};
use rollout_core::{Event, Outcome, Strategy};
use std::io::Write;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;

/// What asks a live rollout to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interrupt {
    /// SIGINT or SIGTERM.
    Signal,
    /// The docker CLI closed the plugin socket.
    SocketClosed,
    /// `docker rollout abort` asked, from another process.
    Requested,
}

/// Runs `strategy` on `ctx` (whose event sink and cancel signal this
/// function makes), rendering events as they arrive. With `interrupts`,
/// each interrupt raises the cancel level (abort and roll back, then halt)
/// and says so on stderr; every `tick` of quiet the renderer repeats what
/// the rollout waits for.
pub async fn run(
    strategy: Arc<dyn Strategy>,
    mut ctx: RolloutContext,
    plan: Plan,
    renderer: &mut Renderer,
    mut interrupts: Option<mpsc::UnboundedReceiver<Interrupt>>,
    tick: Option<Duration>,
) -> Outcome {
    let (sink, mut rx) = EventSink::channel();
    let (handle, cancel): (CancelHandle, Cancel) = Cancel::new();
    ctx.events = sink;
    ctx.cancel = cancel;
    let task = tokio::spawn(async move { strategy.run(&ctx, &plan).await });
    let mut ticker = tick.map(|d| tokio::time::interval_at(Instant::now() + d, d));
    let mut last_outcome: Option<Outcome> = None;
    let mut level = CancelLevel::None;
    // One Ctrl-C can arrive twice: a terminal signals the whole process
    // group, and the docker CLI, whose stdout is not a terminal, also closes
    // the plugin socket. The other kind within this long of a counted
    // interrupt is that same Ctrl-C, not a second one.
    const SAME_CTRL_C: Duration = Duration::from_secs(2);
    let mut unpaired: Option<(Interrupt, Instant)> = None;
    loop {
        tokio::select! {
            biased;
            event = rx.recv() => match event {
                Some(event) => {
                    if let Event::Finished { outcome } = &event {
                        last_outcome = Some(outcome.clone());
                    }
                    renderer.event(&event);
                }
                None => break,
            },
            Some(why) = async {
                match interrupts.as_mut() {
                    Some(rx) => rx.recv().await,
                    None => std::future::pending().await,
                }
            } => {
                if let Some((kind, at)) = unpaired.take() {
                    if kind != why && at.elapsed() < SAME_CTRL_C {
                        continue;
                    }
                }
                unpaired = Some((why, Instant::now()));
                let before = level;
                if level != CancelLevel::Halt {
                    level = handle.escalate();
                }
                let cause = match why {
                    Interrupt::Signal => "interrupt",
                    Interrupt::SocketClosed => "the docker CLI closed the plugin socket",
                    Interrupt::Requested => "`docker rollout abort` asked",
                };
                let text = match (before, level) {
                    (CancelLevel::None, CancelLevel::Abort) => format!("{cause}: stopping at the next safe point and rolling back what was started\nhint: interrupt again to stop at the next safe point without rolling back"),
                    (_, CancelLevel::Halt) if before != CancelLevel::Halt => format!("{cause}: stopping at the next safe point without rolling back"),
                    _ => format!("{cause}: already stopping at the next safe point; stopping anywhere else could leave the service half-changed"),
                };
                let t = renderer.t();
                // Interrupt notes go to stderr in every output mode.
                let mut err = std::io::stderr();
                let _ = writeln!(err, "{t:>7.1}s  {}", text.replace('\n', "\n           "));
            },
            _ = async {
                match ticker.as_mut() {
                    Some(i) => { i.tick().await; }
                    None => std::future::pending::<()>().await,
                }
            } => {
                renderer.tick(tick.map(|d| d.as_secs_f64() * 3.0).unwrap_or(30.0));
            },
        }
    }
    match task.await {
        Ok(outcome) => outcome,
        Err(e) => {
            last_outcome.unwrap_or_else(|| Outcome::Failed(format!("the strategy panicked: {e}")))
        }
    }
}
