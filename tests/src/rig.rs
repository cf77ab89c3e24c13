//! The runner every rollout suite uses: a demo stack serving, the plugin under test installed,
//! and `docker rollout app ...` run under the load, its events on the load's clock between the
//! marks `rollout-start` and `rollout-end`, which the verdict ([`crate::verdict`]) reads.

use crate::engine::{require_engine, require_images};
use crate::load::Clock;
use crate::plugin::{workspace_binary, PluginDir};
use crate::project::{Container, Project};
use crate::run::{run_rollout, Ended, Running};
use crate::stack::{DemoStack, NGINX_IMAGE};
use rollout_load::LoadHandle;
use std::process::Command;
use std::time::Duration;

/// How long a test lets one rollout run.
pub const ROLLOUT_TIMEOUT: Duration = Duration::from_secs(150);

/// A project running a [`DemoStack`], healthy and serving through nginx, with the plugin
/// installed. Everything of the project, what the rollout kept with the engine included, is
/// removed when it is dropped.
pub struct Rig {
    /// The project.
    pub p: Project,
    /// The plugin under test.
    pub plugins: PluginDir,
}

impl Rig {
    /// Brings `stack` up in a new project named after `slug`, with `override_yaml` as
    /// `docker-compose.override.yml` ([`DemoStack::serve`]); `images` must exist besides the
    /// stack's own and nginx's.
    pub fn up(slug: &str, stack: DemoStack, override_yaml: &str, images: &[&str]) -> Rig {
        require_engine();
        Rig::up_in(Project::new(slug), stack, override_yaml, images)
    }

    /// [`Rig::up`] in a project made already (with the files of a build context written).
    pub fn up_in(p: Project, stack: DemoStack, override_yaml: &str, images: &[&str]) -> Rig {
        require_engine();
        let mut needed = vec![NGINX_IMAGE];
        if stack.build.is_none() {
            needed.push(stack.image.as_str());
        }
        needed.extend_from_slice(images);
        require_images(&needed);
        stack.serve(&p, override_yaml);
        let plugins = PluginDir::install(&workspace_binary("docker-rollout", "docker-rollout"));
        Rig { p, plugins }
    }

    /// `docker rollout app ARGS`, not started.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = self.p.rollout_command(&self.plugins);
        cmd.arg("app").args(args);
        cmd
    }

    /// Starts `docker rollout app ARGS` in the background, its lines stamped on `load`'s
    /// clock.
    pub fn spawn(&self, load: &LoadHandle, args: &[&str]) -> Running {
        Running::spawn(self.command(args), Clock::of(load), false)
    }

    /// Runs `docker rollout app ARGS` under `load`, between the marks `rollout-start` and
    /// `rollout-end` ([`ROLLOUT_TIMEOUT`] at most).
    pub fn rollout(&self, load: &LoadHandle, args: &[&str]) -> Ended {
        load.mark("rollout-start");
        let run = run_rollout(self.command(args), Clock::of(load), ROLLOUT_TIMEOUT);
        load.mark("rollout-end");
        run
    }

    /// The app's containers, all states.
    pub fn app(&self) -> Vec<Container> {
        self.p.containers(Some("app"))
    }
}
