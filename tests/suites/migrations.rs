//! `docker rollout SERVICE --migrate DIR --database URL` end to end (issue 15, item 4): the
//! seed's users/email migration in its three phases around a real rollout, against a real
//! PostgreSQL server (Debian's, started by the test on a loopback port; the plugin reaches it
//! from the host).
//!
//! - A rolling update under the standard load: expand is applied before the first new
//!   container exists, backfill and contract after the rollout, no request fails, and the
//!   URL's password is never printed.
//! - Blue-green with the two colours of `examples/blue-green`: after `docker rollout green`
//!   the old colour still runs, so contract is deferred with the reason (exit 0, contract not
//!   applied); once blue is stopped, the next `--migrate` rollout of green (nothing to roll)
//!   runs it.
//! - The same users/email change with the apps in database mode (the demo app through
//!   tokio-postgres, reaching the test's server on the host's docker0 address): v1 keeps
//!   inserting users after expand, v2 rolls out and writes emails, backfill fills the rest,
//!   contract sets NOT NULL, under the standard load (whose POSTs insert) with no failed
//!   request; the rollout's JSON events carry the migration phases.

#[path = "../../crates/rollout-migrate/tests/support/mod.rs"]
mod pg;

use rollout_core::Event;
use rollout_e2e::load::{self, wait_ok};
use rollout_e2e::verdict::{assert_clean, publish};
use rollout_e2e::{
    blue_green_example, images, require_engine, require_images, run_ok, run_rollout, Clock,
    DemoStack, Ended, PluginDir, Project, Rig, NGINX_IMAGE, ROLLOUT_TIMEOUT,
};
use std::process::Command;
use std::time::Duration;

const SUITE: &str = "migrations";

const QUICK: &str = "services:\n  app:\n    deploy:\n      update_config:\n        parallelism: 1\n        order: start-first\n        failure_action: rollback\n        monitor: 1s\n      rollback_config:\n        parallelism: 1\n        monitor: 1s\n";

/// The seed's example: v2 writes and reads `email`; the old revision ignores it.
const FILES: &[(&str, &str)] = &[
    (
        "0001_add_email.sql",
        "-- rollout: phase=expand\nALTER TABLE users ADD COLUMN email text;\n",
    ),
    (
        "0002_fill_email.sql",
        "-- rollout: phase=backfill\n-- rollout: batch size=500\n\
         -- rollout: remaining SELECT count(*) FROM users WHERE email IS NULL\n\
         UPDATE users SET email = name || '@example.invalid'\n\
         WHERE id > $1 AND id <= (SELECT max(id) FROM (SELECT id FROM users WHERE id > $1 ORDER BY id LIMIT $2) b)\n\
         RETURNING id;\n",
    ),
    (
        "0003_email_not_null.sql",
        "-- rollout: phase=contract\n-- rollout: no-transaction\n\
         ALTER TABLE users ADD CONSTRAINT users_email_nn CHECK (email IS NOT NULL) NOT VALID;\n\
         ALTER TABLE users VALIDATE CONSTRAINT users_email_nn;\n\
         ALTER TABLE users ALTER COLUMN email SET NOT NULL;\n\
         ALTER TABLE users DROP CONSTRAINT users_email_nn;\n",
    ),
];

/// One value (or row) of `sql`, through Debian's psql.
fn psql(pg: &pg::Pg, sql: &str) -> String {
    let out = run_ok(Command::new("psql").arg(pg.url("postgres")).args([
        "-v",
        "ON_ERROR_STOP=1",
        "-Atc",
        sql,
    ]));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A server with the v1 table: 2000 users without email.
fn database() -> (pg::Pg, pg::Folder) {
    let pg = pg::Pg::start();
    psql(
        &pg,
        "CREATE TABLE users (id bigserial PRIMARY KEY, name text NOT NULL); \
         INSERT INTO users (name) SELECT 'user' || g FROM generate_series(1, 2000) g",
    );
    (pg, pg::Folder::new(FILES))
}

/// The phase of each file applied, in version order (`expand,backfill,contract`).
fn applied(pg: &pg::Pg) -> String {
    psql(
        pg,
        "SELECT coalesce(string_agg(phase, ',' ORDER BY version), '') FROM rollout.migrations WHERE status = 'applied'",
    )
}

fn migrate_args<'a>(dir: &'a pg::Folder, url: &'a str) -> Vec<&'a str> {
    vec!["--migrate", dir.path.to_str().unwrap(), "--database", url]
}

fn assert_no_password(run: &Ended) {
    let all = format!("{}\n{}", run.transcript(), run.stderr);
    assert!(
        !all.contains("secret-password"),
        "the password was printed:\n{all}"
    );
}

#[test]
#[ignore = "needs docker: run with cargo xtask e2e"]
fn a_rolling_update_runs_expand_before_it_and_backfill_and_contract_after_it() {
    let (pg, dir) = database();
    let url = pg.url("postgres");
    let mut s = Rig::up(
        "migrate-rolling",
        DemoStack::new(images::V1, 2),
        QUICK,
        &[images::V2],
    );
    let before: Vec<String> = s.app().into_iter().map(|c| c.id).collect();
    let load = load::standard(&s.p, Duration::from_secs(120));
    wait_ok(&load, 500, Duration::from_secs(30));
    s.p.set_env("APP_IMAGE", images::V2);
    let mut args = vec!["--output", "json"];
    args.extend(migrate_args(&dir, &url));
    let run = s.rollout(&load, &args);
    wait_ok(&load, 250, Duration::from_secs(30));
    let report = load.stop().unwrap();
    publish(SUITE, "rolling", &report, &[&run]);
    assert_eq!(run.code, Some(0), "{}\n{}", run.transcript(), run.stderr);
    assert_eq!(run.outcome_name(), "completed", "{}", run.transcript());
    assert_clean(&report);
    assert_no_password(&run);
    assert_eq!(applied(&pg), "expand,backfill,contract", "{}", run.stderr);
    // Expand finished before the first new container was created.
    let new: Vec<String> = s
        .app()
        .into_iter()
        .map(|c| c.id)
        .filter(|id| !before.contains(id))
        .collect();
    assert_eq!(new.len(), 2);
    for id in &new {
        let created = run_ok(Command::new("docker").args(["inspect", "-f", "{{.Created}}", id]));
        let created = String::from_utf8_lossy(&created.stdout).into_owned();
        let first = psql(
            &pg,
            &format!(
                "SELECT finished_at < '{}'::timestamptz FROM rollout.migrations WHERE version = 1",
                created.trim()
            ),
        );
        assert_eq!(
            first, "t",
            "expand finished after {id} was created ({created})"
        );
    }
    // Every row was filled, and the column is required now.
    assert_eq!(
        psql(&pg, "SELECT count(*) FROM users WHERE email IS NULL"),
        "0"
    );
    assert_eq!(
        psql(
            &pg,
            "SELECT attnotnull FROM pg_attribute WHERE attrelid = 'users'::regclass AND attname = 'email'"
        ),
        "t"
    );
    let e = run.stderr.find("migrate: expand").expect("expand said");
    let c = run.stderr.find("migrate: contract").expect("contract said");
    assert!(e < c, "{}", run.stderr);
}

/// `docker rollout COLOUR --migrate ...` of the blue-green example, not under load.
fn colour(p: &Project, plugins: &PluginDir, colour: &str, extra: &[&str]) -> Ended {
    let mut cmd = p.rollout_command(plugins);
    cmd.arg(colour).args(["--output", "json"]).args(extra);
    run_rollout(cmd, Clock::start(), ROLLOUT_TIMEOUT)
}

#[test]
#[ignore = "needs docker: run with cargo xtask e2e"]
fn contract_waits_while_the_old_colour_runs_and_runs_with_the_next_release() {
    require_engine();
    require_images(&[images::V1, images::V2, NGINX_IMAGE]);
    let (pg, dir) = database();
    let url = pg.url("postgres");
    let plugins = PluginDir::install(&rollout_e2e::workspace_binary(
        "docker-rollout",
        "docker-rollout",
    ));
    let p = blue_green_example("migrate-blue-green", 1);
    let run = colour(&p, &plugins, "green", &migrate_args(&dir, &url));
    assert_eq!(run.code, Some(0), "{}\n{}", run.transcript(), run.stderr);
    assert_no_password(&run);
    assert!(run.stderr.contains("contract deferred"), "{}", run.stderr);
    assert!(
        run.stderr.contains("blue"),
        "the old colour is named: {}",
        run.stderr
    );
    assert_eq!(applied(&pg), "expand,backfill");
    // The operator stops the old colour; the next release (nothing to roll here) contracts.
    p.compose(&["stop", "blue"]);
    let next = colour(&p, &plugins, "green", &migrate_args(&dir, &url));
    assert_eq!(next.code, Some(0), "{}\n{}", next.transcript(), next.stderr);
    assert_eq!(applied(&pg), "expand,backfill,contract", "{}", next.stderr);
}

/// The apps write: `DEMO_DATABASE_URL` points them at `pg` (the host's docker0 address).
#[test]
#[ignore = "needs docker: run with cargo xtask e2e"]
fn apps_that_write_keep_writing_through_expand_rollout_backfill_and_contract() {
    let pg = pg::Pg::start_for_containers();
    psql(
        &pg,
        "CREATE TABLE users (id bigserial PRIMARY KEY, name text NOT NULL, \
         created_at timestamptz NOT NULL DEFAULT clock_timestamp()); \
         INSERT INTO users (name) SELECT 'user' || g FROM generate_series(1, 2000) g",
    );
    let dir = pg::Folder::new(FILES);
    let url = pg.url("postgres");
    let mut stack = DemoStack::new(images::V1, 2);
    stack
        .app_env
        .push(("DEMO_DATABASE_URL".into(), pg.container_url("postgres")));
    let mut s = Rig::up("migrate-writers", stack, QUICK, &[images::V2]);
    let load = load::standard(&s.p, Duration::from_secs(120));
    wait_ok(&load, 500, Duration::from_secs(30));
    let inserted = |prefix: &str| {
        psql(
            &pg,
            &format!("SELECT count(*) FROM users WHERE name LIKE '{prefix}-%'"),
        )
        .parse::<u64>()
        .unwrap()
    };
    assert!(inserted("v1") > 0, "v1 inserts under the load");
    s.p.set_env("APP_IMAGE", images::V2);
    let mut args = vec!["--output", "json"];
    args.extend(migrate_args(&dir, &url));
    let run = s.rollout(&load, &args);
    wait_ok(&load, 250, Duration::from_secs(30));
    let report = load.stop().unwrap();
    publish(SUITE, "writers", &report, &[&run]);
    assert_eq!(run.code, Some(0), "{}\n{}", run.transcript(), run.stderr);
    assert_eq!(run.outcome_name(), "completed", "{}", run.transcript());
    assert_clean(&report);
    assert_no_password(&run);
    assert_eq!(applied(&pg), "expand,backfill,contract", "{}", run.stderr);
    // v1 kept inserting (without email) after expand added the column.
    let v1_after_expand = psql(
        &pg,
        "SELECT count(*) FROM users WHERE name LIKE 'v1-%' AND created_at > \
         (SELECT finished_at FROM rollout.migrations WHERE version = 1)",
    );
    eprintln!(
        "users: v1 inserted {} (after expand {v1_after_expand}), v2 inserted {}",
        inserted("v1"),
        inserted("v2")
    );
    assert_ne!(v1_after_expand, "0", "v1 inserted nothing after expand");
    // v2 wrote its own emails; the backfill filled every other row the same way.
    assert!(inserted("v2") > 0, "v2 inserts under the load");
    assert_eq!(
        psql(
            &pg,
            "SELECT count(*) FROM users WHERE email IS DISTINCT FROM name || '@example.invalid'"
        ),
        "0"
    );
    assert_eq!(
        psql(
            &pg,
            "SELECT attnotnull FROM pg_attribute WHERE attrelid = 'users'::regclass AND attname = 'email'"
        ),
        "t"
    );
    // The phases are events of the rollout's JSON stream, with their counts.
    let phases: Vec<String> = run
        .events
        .iter()
        .filter_map(|e| match &e.event {
            Event::MigrationStarted { phase, .. } => Some(format!("{phase} started")),
            Event::MigrationFinished {
                phase,
                applied,
                rows,
                ..
            } => Some(format!("{phase} finished ({applied} applied, {rows} rows)")),
            _ => None,
        })
        .collect();
    eprintln!("migration events: {phases:?}");
    assert_eq!(phases.len(), 6, "{}", run.transcript());
    assert_eq!(phases[0], "expand started");
    assert_eq!(phases[1], "expand finished (1 applied, 0 rows)");
    assert!(
        phases[3].starts_with("backfill finished (1 applied, "),
        "{phases:?}"
    );
    assert_eq!(phases[5], "contract finished (1 applied, 0 rows)");
    // The backfill's progress: a rate, and an ETA from the file's `remaining` count.
    let progress: Vec<(i64, f64, Option<f64>)> = run
        .events
        .iter()
        .filter_map(|e| match &e.event {
            Event::MigrationProgress {
                rows,
                rows_per_second,
                eta_secs,
                ..
            } => Some((*rows, *rows_per_second, *eta_secs)),
            _ => None,
        })
        .collect();
    eprintln!("backfill progress (rows, rows/s, eta s): {progress:?}");
    assert!(!progress.is_empty(), "{}", run.transcript());
    assert!(progress
        .iter()
        .all(|(_, rate, eta)| *rate > 0.0 && eta.is_some()));
}
