//! `docker rollout --stack NAME COLOUR` for the seed's two colour services of a stack (blue
//! and green, or `x-rollout.colours`) under blue-green or canary: rollout-swarm's colours run,
//! wired as the standby run is ([`crate::swarm`]): the Compose file's settings, nginx's router
//! over the proxy's tasks (on any node), progress on stderr, events and a summary on stdout
//! with `--output json`. An interrupt ends the run at its next step (a canary goes back to the
//! other colour); nothing of it is left for a rerun to resume.

use crate::cli::{OutputFormat, RolloutRequest};
use crate::drive::Interrupt;
use crate::fail::Fail;
use crate::live;
use crate::output::{Json, Sink};
use crate::swarm::{fail, open_router, say, stamped, summary, RouterFromFile, Shown};
use rollout_compose::Settings;
use rollout_core::event::EventSink;
use rollout_core::strategy::{StrategyKind, TrafficLayout};
use rollout_core::TrafficRouter;
use rollout_swarm::api::SwarmApi;
use rollout_swarm::colours::{self, ColoursRequest, Shift};
use rollout_swarm::standby::Tell;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::sync::mpsc;

/// What the file says beyond the run's request: nginx's upstream, config and port.
pub struct Colours {
    request: ColoursRequest,
    upstream: Option<String>,
    config: Option<String>,
    port: Option<u16>,
}

/// The colours run the Compose file asks for: its service is one of two colours and the
/// strategy is blue-green or canary; `None` for any other (the standby run's).
pub fn of(
    req: &RolloutRequest,
    stack: &str,
    (settings, proxy, image): &(Settings, String, String),
) -> Result<Option<Colours>, Fail> {
    let TrafficLayout::Colours { other, stop_other } = &settings.layout else {
        return Ok(None);
    };
    let shift = match settings.strategy {
        StrategyKind::Rolling => return Ok(None),
        StrategyKind::BlueGreen => Shift::BlueGreen,
        StrategyKind::Canary => Shift::Canary(settings.canary.steps.clone()),
    };
    if *stop_other {
        return Err(Fail::bad_input(format!(
            "--stack {stack}: stopping the other colour (--stop-old, x-rollout.stop_old) is not supported on a swarm yet\nhint: once {} is live and you are confident, docker service scale {}={}",
            req.service,
            rollout_swarm::stack::service_name(stack, &other.service),
            0
        )));
    }
    Ok(Some(Colours {
        request: ColoursRequest {
            stack: stack.to_string(),
            colour: req.service.clone(),
            other: other.service.clone(),
            proxy: proxy.clone(),
            image: image.clone(),
            replicas: settings.replicas,
            update: settings.update.clone(),
            rollback: settings.rollback.clone(),
            start_timeout: settings.timeouts.start,
            drain_timeout: settings.timeouts.drain,
            holder: rollout_strategies::lock_holder(),
            shift,
        },
        upstream: settings.upstream.clone(),
        config: settings.proxy_config.clone(),
        port: settings.port,
    }))
}

/// Runs the colours run (or prints its plan with `--dry-run`); the exit code.
pub async fn run(
    req: &RolloutRequest,
    stack: &str,
    colours: Colours,
    irx: &mut mpsc::UnboundedReceiver<Interrupt>,
) -> Result<i32, Fail> {
    let json = req.output == OutputFormat::Json;
    let Colours {
        request,
        upstream,
        config,
        port,
    } = colours;
    let engine = live::connect(&req.docker).await?;
    let api = SwarmApi::new(engine.clone());
    let pair = crate::or_interrupted(irx, async {
        colours::find(&api, &request).await.map_err(fail)
    })
    .await?;
    let strategy = request.shift.name();
    let service = format!("{stack}/{}", request.colour);
    let images = (pair.other_image.as_str(), request.image.as_str());
    let plan = colours::plan(&pair, &request);
    crate::swarm::check_named(req, &pair.proxy_tasks)?;
    if req.dry_run {
        if json {
            say(&plan);
            let s = summary(
                service,
                strategy,
                images,
                true,
                None,
                Default::default(),
                0.0,
            );
            Json::new(std::io::stdout()).summary(&s);
        } else {
            println!("{plan}");
            println!("dry run: nothing was changed");
        }
        return Ok(rollout_core::exit::SUCCESS);
    }
    let (router, _) = crate::or_interrupted(
        irx,
        open_router(
            &engine,
            req,
            stack,
            &pair.proxy_tasks,
            RouterFromFile {
                proxy: &request.proxy,
                upstream,
                config,
                port,
                services: vec![request.colour.clone(), request.other.clone()],
            },
        ),
    )
    .await?;
    say(&plan);
    let started = std::time::Instant::now();
    let stamped = stamped(started);
    let (sink, mut rx) = EventSink::channel();
    let mut shown = Shown::new(json);
    let tell = Tell {
        say: &stamped,
        events: &sink,
    };
    let stop = AtomicBool::new(false);
    let ran = {
        let run = colours::run(&api, &pair, &request, &router, tell, &stop);
        tokio::pin!(run);
        loop {
            tokio::select! {
                ran = &mut run => break ran,
                Some(event) = rx.recv() => shown.show(event),
                Some(_) = irx.recv() => {
                    if !stop.swap(true, Ordering::SeqCst) {
                        say("interrupted: the run ends at its next step (a canary goes back to the other colour first)");
                    }
                }
            }
        }
    };
    while let Ok(event) = rx.try_recv() {
        shown.show(event);
    }
    if let Err(e) = router.settle().await {
        say(&format!("note: the proxy's writer was not removed: {e}"));
    }
    shown.end(ran, |outcome, counts| {
        summary(
            service,
            strategy,
            images,
            false,
            outcome,
            counts,
            started.elapsed().as_secs_f64(),
        )
    })
}
