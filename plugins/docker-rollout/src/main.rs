//! `docker rollout`: a Docker CLI plugin (and the standalone `docker-rollout`).
//!
//! For now it parses its arguments, answers the metadata call, loads the
//! Compose project and prints the request and the service's settings; the
//! wiring to the backend, router and strategies comes next.

mod cli;
mod socket;

use cli::Invocation;
use rollout_compose::{Flavor, Project};
use rollout_core::exit;

fn main() {
    let request = match cli::parse_env() {
        Ok(Invocation::Metadata) => {
            println!("{}", cli::metadata_json());
            return;
        }
        Ok(Invocation::Rollout(request)) => request,
        Err(e) => e.exit(),
    };
    // The docker CLI closes its socket on Ctrl-C when stdout is not a
    // terminal. Nothing has been started yet, so there is nothing to roll
    // back: exit at once.
    if let Ok(Some(stream)) = socket::connect_from_env() {
        socket::on_close(stream, || {
            eprintln!("interrupted: the docker CLI closed the plugin socket");
            std::process::exit(exit::INTERRUPTED);
        });
    }
    println!("{request:#?}");
    let settings = Project::load(&request.compose.load_options(Flavor::default()))
        .and_then(|p| p.settings(&request.service))
        .and_then(|mut s| s.apply(&request.overrides).map(|()| s));
    match settings {
        Ok(s) => println!("{s:#?}"),
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(exit::BAD_INPUT);
        }
    }
}
