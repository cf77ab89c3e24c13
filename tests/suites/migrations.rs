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
//! - The same apps in blue-green (both colours writing to the database): after `docker
//!   rollout green` blue still runs v1, so contract is refused with the container named and
//!   deferred, the column stays nullable and the writes keep succeeding; once blue is stopped
//!   `docker rollout migrate apply --phase contract` runs it, still under the load.
//! - A backfill killed halfway (SIGKILL to the plugin after a few `migration-progress`
//!   events) resumes from its checkpoint with the next run: the state table kept the cursor,
//!   the next run's first batch starts after it, and every row is filled exactly once.
//! - A long transaction holding a lock on `users`: expand retries within its lock timeout;
//!   never released within the attempts, the rollout exits 7 (busy) with nothing of the new
//!   revision launched and the `on-failure` hook told; released after a retry, expand goes
//!   through and the rollout completes.

#[path = "../../crates/rollout-migrate/tests/support/mod.rs"]
mod pg;

use rollout_core::Event;
use rollout_e2e::load::{self, wait_ok};
use rollout_e2e::nginx::stderr_upstream_errors;
use rollout_e2e::verdict::{assert_clean, assert_clean_during, publish};
use rollout_e2e::{
    blue_green_example, blue_green_example_with, images, require_engine, require_images, run_ok,
    run_rollout, Clock, DemoStack, Ended, PluginDir, Project, Rig, Whom, NGINX_IMAGE,
    ROLLOUT_TIMEOUT,
};
use rollout_load::LoadHandle;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

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

/// A server the apps reach too (the host's docker0 address) with the v1 users table: `rows`
/// users without email, `created_at` saying when each was written.
fn users_for_apps(rows: u32) -> pg::Pg {
    let pg = pg::Pg::start_for_containers();
    psql(
        &pg,
        &format!(
            "CREATE TABLE users (id bigserial PRIMARY KEY, name text NOT NULL, \
             created_at timestamptz NOT NULL DEFAULT clock_timestamp()); \
             INSERT INTO users (name) SELECT 'user' || g FROM generate_series(1, {rows}) g"
        ),
    );
    pg
}

/// Users the apps inserted under the load: `v1-…` or `v2-…`.
fn inserted(pg: &pg::Pg, prefix: &str) -> u64 {
    psql(
        pg,
        &format!("SELECT count(*) FROM users WHERE name LIKE '{prefix}-%'"),
    )
    .parse()
    .unwrap()
}

/// Whether `users.email` is NOT NULL (`t`), nullable (`f`), or absent (empty).
fn email_required(pg: &pg::Pg) -> String {
    psql(
        pg,
        "SELECT attnotnull FROM pg_attribute WHERE attrelid = 'users'::regclass AND attname = 'email' AND NOT attisdropped",
    )
}

/// The apps write: the demo app in database mode (`DEMO_DATABASE_URL` pointing at its
/// server), v1 with 2 replicas behind nginx, the migration folder of `files`, and the
/// standard load (whose POSTs insert) running, v1 seen inserting.
struct Writers {
    pg: pg::Pg,
    dir: pg::Folder,
    url: String,
    s: Rig,
}

impl Writers {
    /// `rows` users before anything; `override_yaml` as [`Rig::up`] takes it.
    fn up(
        slug: &str,
        rows: u32,
        files: &[(&str, &str)],
        override_yaml: &str,
    ) -> (Writers, LoadHandle) {
        let pg = users_for_apps(rows);
        let dir = pg::Folder::new(files);
        let url = pg.url("postgres");
        let mut stack = DemoStack::new(images::V1, 2);
        stack
            .app_env
            .push(("DEMO_DATABASE_URL".into(), pg.container_url("postgres")));
        let s = Rig::up(slug, stack, override_yaml, &[images::V2]);
        let load = load::standard(&s.p, Duration::from_secs(120));
        wait_ok(&load, 500, Duration::from_secs(30));
        assert!(inserted(&pg, "v1") > 0, "v1 inserts under the load");
        (Writers { pg, dir, url, s }, load)
    }

    /// `--output json --migrate DIR --database URL` and `extra`.
    fn args<'a>(&'a self, extra: &[&'a str]) -> Vec<&'a str> {
        let mut args = vec!["--output", "json"];
        args.extend(migrate_args(&self.dir, &self.url));
        args.extend_from_slice(extra);
        args
    }
}

/// The apps write: `DEMO_DATABASE_URL` points them at `pg` (the host's docker0 address).
#[test]
#[ignore = "needs docker: run with cargo xtask e2e"]
fn apps_that_write_keep_writing_through_expand_rollout_backfill_and_contract() {
    let (mut w, load) = Writers::up("migrate-writers", 2000, FILES, QUICK);
    w.s.p.set_env("APP_IMAGE", images::V2);
    let run = w.s.rollout(&load, &w.args(&[]));
    let pg = &w.pg;
    wait_ok(&load, 250, Duration::from_secs(30));
    let report = load.stop().unwrap();
    publish(SUITE, "writers", &report, &[&run]);
    assert_eq!(run.code, Some(0), "{}\n{}", run.transcript(), run.stderr);
    assert_eq!(run.outcome_name(), "completed", "{}", run.transcript());
    assert_clean(&report);
    assert_no_password(&run);
    assert_eq!(applied(pg), "expand,backfill,contract", "{}", run.stderr);
    // v1 kept inserting (without email) after expand added the column.
    let v1_after_expand = psql(
        pg,
        "SELECT count(*) FROM users WHERE name LIKE 'v1-%' AND created_at > \
         (SELECT finished_at FROM rollout.migrations WHERE version = 1)",
    );
    eprintln!(
        "users: v1 inserted {} (after expand {v1_after_expand}), v2 inserted {}",
        inserted(pg, "v1"),
        inserted(pg, "v2")
    );
    assert_ne!(v1_after_expand, "0", "v1 inserted nothing after expand");
    // v2 wrote its own emails; the backfill filled every other row the same way.
    assert!(inserted(pg, "v2") > 0, "v2 inserts under the load");
    assert_eq!(
        psql(
            pg,
            "SELECT count(*) FROM users WHERE email IS DISTINCT FROM name || '@example.invalid'"
        ),
        "0"
    );
    assert_eq!(email_required(pg), "t");
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

/// Rows whose email is not the one v2 and the backfill write (`0` once every row is filled).
fn misfilled(pg: &pg::Pg) -> String {
    psql(
        pg,
        "SELECT count(*) FROM users WHERE email IS DISTINCT FROM name || '@example.invalid'",
    )
}

/// Counts of the load's report, on one line for the test's log.
fn counts(what: &str, report: &rollout_load::Report) {
    eprintln!(
        "{what}: {} requests sent, {} failed, {} upstream errors",
        report.sent, report.failed, report.upstream_errors.total
    );
}

/// Both colours of `examples/blue-green` write to the database (blue v1, green v2); green
/// rolls out with `--migrate` under the load while blue stays for a switch back: contract
/// is refused and deferred, the column stays nullable, writes keep succeeding; with blue
/// stopped, `docker rollout migrate apply --phase contract` runs it.
#[test]
#[ignore = "needs docker: run with cargo xtask e2e"]
fn contract_is_refused_while_a_v1_writer_runs_and_runs_once_it_is_gone() {
    require_engine();
    require_images(&[images::V1, images::V2, NGINX_IMAGE]);
    let pg = users_for_apps(2000);
    let dir = pg::Folder::new(FILES);
    let url = pg.url("postgres");
    let app_url = pg.container_url("postgres");
    let plugins = PluginDir::install(&rollout_e2e::workspace_binary(
        "docker-rollout",
        "docker-rollout",
    ));
    let p = blue_green_example_with(
        "migrate-bg-writers",
        1,
        &[("DEMO_DATABASE_URL", app_url.as_str())],
    );
    let nginx = p.containers(Some("nginx")).remove(0);
    // nginx logs to its stderr in this example: read there once the load stopped.
    let mut config = p.load_config("nginx");
    config.error_log = None;
    load::mix(&mut config, Duration::from_secs(120));
    let load = LoadHandle::start(config).unwrap();
    wait_ok(&load, 500, Duration::from_secs(30));
    assert!(inserted(&pg, "v1") > 0, "blue (v1) inserts under the load");

    load.mark("rollout-start");
    let mut cmd = p.rollout_command(&plugins);
    cmd.arg("green").args(["--output", "json"]);
    cmd.args(migrate_args(&dir, &url));
    let run = run_rollout(cmd, Clock::of(&load), ROLLOUT_TIMEOUT);
    load.mark("rollout-end");
    assert_eq!(run.code, Some(0), "{}\n{}", run.transcript(), run.stderr);
    assert_eq!(run.outcome_name(), "completed", "{}", run.transcript());
    assert_no_password(&run);
    // Refused, with the reason and the v1 container named; deferred, not failed.
    assert!(
        run.stderr
            .contains("migrate: contract deferred, the old revision may still use what it removes"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("still runs revision") && run.stderr.contains("blue"),
        "the v1 container is named: {}",
        run.stderr
    );
    assert!(
        run.stderr.contains("docker rollout migrate contract"),
        "how to run it later: {}",
        run.stderr
    );
    assert_eq!(applied(&pg), "expand,backfill", "{}", run.stderr);
    assert_eq!(email_required(&pg), "f", "the column is still nullable");
    // Green serves and writes its emails; the load's writes keep succeeding.
    let v2_before = inserted(&pg, "v2");
    wait_ok(&load, 500, Duration::from_secs(30));
    assert!(
        inserted(&pg, "v2") > v2_before,
        "green (v2) inserts under the load"
    );

    // The verb's gate sees the v1 writer too: refused, busy (7), nothing changed.
    let contract = || {
        let out = plugins
            .docker()
            .current_dir(p.dir())
            .args(["rollout", "migrate", "contract"])
            .arg(&dir.path)
            .args(["green", "--project-name", p.name(), "--database", &url])
            .output()
            .unwrap();
        let said = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!said.contains("secret-password"), "{said}");
        (out.status.code(), said)
    };
    let blue = p.containers(Some("blue")).remove(0);
    let (code, said) = contract();
    assert_eq!(code, Some(7), "{said}");
    assert!(
        said.contains("contract refused, nothing changed")
            && said.contains(&format!("container {} still runs revision", blue.name)),
        "the v1 container is named: {said}"
    );
    assert_eq!(applied(&pg), "expand,backfill", "{said}");
    assert_eq!(email_required(&pg), "f", "the column is still nullable");
    // apply --phase contract goes through the same gate.
    let gated = plugins
        .docker()
        .args(["rollout", "migrate", "apply"])
        .arg(&dir.path)
        .args(["--phase", "contract", "--database", &url])
        .output()
        .unwrap();
    assert_eq!(gated.status.code(), Some(2), "{gated:?}");
    assert_eq!(email_required(&pg), "f");

    // The old colour is gone; a one-off container of the old image (`compose run`) is no
    // consumer: contract runs by the migrate verb, under the load.
    p.compose(&["stop", "blue"]);
    p.compose(&["run", "-d", "--no-deps", "blue"]);
    let oneoff: Vec<_> = p
        .containers(Some("blue"))
        .into_iter()
        .filter(|c| c.state == "running")
        .collect();
    assert_eq!(oneoff.len(), 1, "the one-off of blue runs: {oneoff:?}");
    assert!(oneoff[0].name.contains("-run-"), "{:?}", oneoff[0]);
    let (code, said) = contract();
    assert_eq!(code, Some(0), "{said}");
    assert!(!said.contains(&oneoff[0].name), "{said}");
    wait_ok(&load, 250, Duration::from_secs(30));
    let mut report = load.stop().unwrap();
    report.upstream_errors = stderr_upstream_errors(&nginx.id, &report);
    publish(SUITE, "contract-refused", &report, &[&run]);
    counts("contract refused, then run", &report);
    assert_clean(&report);
    assert_eq!(applied(&pg), "expand,backfill,contract", "{said}");
    assert_eq!(email_required(&pg), "t");
    assert_eq!(misfilled(&pg), "0");
    // Nothing left to contract: a second run says so and succeeds.
    let (code, said) = contract();
    assert_eq!(code, Some(0), "{said}");
    assert!(said.contains("no contract file is pending"), "{said}");
}

/// The `rows_done` and `backfill_cursor` of the backfill file, and its status.
fn backfill_state(pg: &pg::Pg) -> (String, i64, i64) {
    let row = psql(
        pg,
        "SELECT status || ',' || rows_done || ',' || backfill_cursor FROM rollout.migrations WHERE version = 2",
    );
    let mut f = row.split(',');
    let (Some(status), Some(rows), Some(cursor)) = (f.next(), f.next(), f.next()) else {
        panic!("no state row of the backfill: {row:?}");
    };
    (
        status.to_string(),
        rows.parse().unwrap(),
        cursor.parse().unwrap(),
    )
}

/// Waits until no connection of a rollout-migrate run is left on `pg` (a killed run's is
/// closed by the server once it sees the client gone).
fn wait_no_runner(pg: &pg::Pg) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while psql(
        pg,
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'rollout-migrate'",
    ) != "0"
    {
        assert!(
            Instant::now() < deadline,
            "the killed run's connection is still open after 10s"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The rows of each `migration-progress` event of `run`.
fn progress_rows(events: &[rollout_e2e::Stamped]) -> Vec<i64> {
    events
        .iter()
        .filter_map(|e| match &e.event {
            Event::MigrationProgress { rows, .. } => Some(*rows),
            _ => None,
        })
        .collect()
}

#[test]
#[ignore = "needs docker: run with cargo xtask e2e"]
fn a_backfill_killed_halfway_resumes_from_its_checkpoint() {
    const ROWS: u32 = 20_000;
    const BATCH: i64 = 250;
    let (mut w, load) = Writers::up("migrate-resume", ROWS, FILES, QUICK);
    // Batches of 250 with a pause: some 80 batches, a few seconds in all.
    w.dir.write(
        "0002_fill_email.sql",
        &FILES[1]
            .1
            .replace("batch size=500", &format!("batch size={BATCH} pause=40ms")),
    );
    w.s.p.set_env("APP_IMAGE", images::V2);
    load.mark("rollout-start");
    let mut first = w.s.spawn(&load, &w.args(&[]));
    first.wait_for(
        "migration-progress past 5000 rows",
        ROLLOUT_TIMEOUT,
        |e| matches!(e, Event::MigrationProgress { rows, .. } if *rows >= 5000),
    );
    first.signal("KILL", Whom::Plugin);
    let killed = first.wait(Duration::from_secs(30));
    assert_ne!(killed.code, Some(0), "{}", killed.stderr);
    wait_no_runner(&w.pg);
    let seen = progress_rows(&killed.events);
    let (status, before, cursor) = backfill_state(&w.pg);
    eprintln!(
        "killed at {before} rows (cursor {cursor}); its last progress event said {:?}",
        seen.last()
    );
    assert_eq!(status, "running", "the backfill is unfinished");
    assert!(
        before >= *seen.last().unwrap() && before < i64::from(ROWS),
        "the checkpoint ({before}) holds what the events reported, and not all"
    );
    assert!(cursor > 0);
    assert_eq!(applied(&w.pg), "expand");
    // Some rows are filled, the rest not yet.
    assert_ne!(
        psql(&w.pg, "SELECT count(*) FROM users WHERE email IS NULL"),
        "0"
    );

    // The next run (the service is on v2 already: nothing to roll) resumes it.
    let run = w.s.rollout(&load, &w.args(&[]));
    wait_ok(&load, 250, Duration::from_secs(30));
    let report = load.stop().unwrap();
    publish(SUITE, "resume", &report, &[&killed, &run]);
    counts("backfill killed and resumed", &report);
    assert_eq!(run.code, Some(0), "{}\n{}", run.transcript(), run.stderr);
    assert_clean(&report);
    let resumed = progress_rows(&run.events);
    eprintln!(
        "resumed: first progress events {:?}",
        &resumed[..resumed.len().min(3)]
    );
    assert_eq!(
        resumed.first(),
        Some(&(before + BATCH)),
        "the resumed run's first batch starts after the checkpoint, not from zero"
    );
    let rows_now = run
        .events
        .iter()
        .find_map(|e| match &e.event {
            Event::MigrationFinished { phase, rows, .. } if phase == "backfill" => Some(*rows),
            _ => None,
        })
        .expect("backfill finished");
    let (status, total, _) = backfill_state(&w.pg);
    assert_eq!(status, "applied");
    assert_eq!(
        total,
        before + rows_now,
        "no row counted twice: the two runs' rows add up"
    );
    assert!(rows_now < i64::from(ROWS), "{rows_now}");
    assert_eq!(applied(&w.pg), "expand,backfill,contract", "{}", run.stderr);
    assert_eq!(misfilled(&w.pg), "0", "every row filled");
    assert_eq!(email_required(&w.pg), "t");
}

/// A transaction of psql holding ACCESS SHARE on `users` (as a long report would): ALTER
/// TABLE waits for it. Released by terminating its backend (killing psql alone would leave
/// the backend sleeping with the lock until its `pg_sleep` ends).
struct LockHolder {
    child: Child,
    url: String,
    name: String,
}

impl LockHolder {
    fn hold(pg: &pg::Pg, name: &str) -> LockHolder {
        let url = pg.url("postgres");
        let child = Command::new("psql")
            .arg(&url)
            .env("PGAPPNAME", name)
            .args([
                "-v",
                "ON_ERROR_STOP=1",
                "-c",
                "BEGIN; LOCK TABLE users IN ACCESS SHARE MODE; SELECT pg_sleep(300)",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("psql runs");
        let holder = LockHolder {
            child,
            url,
            name: name.to_string(),
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while psql(
            pg,
            &format!(
                "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a USING (pid) \
                 WHERE a.application_name = '{name}' AND l.relation = 'users'::regclass AND l.granted"
            ),
        ) != "1"
        {
            assert!(Instant::now() < deadline, "psql did not take the lock");
            std::thread::sleep(Duration::from_millis(50));
        }
        holder
    }

    /// Ends the transaction: its backend terminated, so the lock is released.
    fn terminate(&self) -> String {
        let out = Command::new("psql")
            .arg(&self.url)
            .args(["-Atc"])
            .arg(format!(
                "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                 WHERE application_name = '{}') t",
                self.name
            ))
            .output();
        out.map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_default()
    }

    fn release(self) {
        assert_eq!(self.terminate(), "1", "one transaction held the lock");
    }
}

impl Drop for LockHolder {
    fn drop(&mut self) {
        self.terminate();
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// The `on-failure` hook writes what it receives on stdin to a file of the project.
const QUICK_WITH_HOOK: &str = "services:\n  app:\n    deploy:\n      update_config:\n        parallelism: 1\n        order: start-first\n        failure_action: rollback\n        monitor: 1s\n      rollback_config:\n        parallelism: 1\n        monitor: 1s\n    x-rollout:\n      hooks:\n        on_failure: [sh, -c, 'cat > on-failure.json']\n";

#[test]
#[ignore = "needs docker: run with cargo xtask e2e"]
fn a_held_lock_makes_expand_retry_and_give_up_or_go_through_once_released() {
    let (mut w, load) = Writers::up("migrate-lock", 2000, FILES, QUICK_WITH_HOOK);
    let ids = |w: &Writers| {
        let mut ids: Vec<String> = w.s.app().into_iter().map(|c| c.id).collect();
        ids.sort();
        ids
    };
    let before = ids(&w);
    w.s.p.set_env("APP_IMAGE", images::V2);

    // Never released within the attempts: busy (exit 7), nothing of v2 launched.
    let holder = LockHolder::hold(&w.pg, "lock-holder-1");
    let few = ["--migrate-lock-timeout", "300ms", "--migrate-attempts", "3"];
    let refused = w.s.rollout(&load, &w.args(&few));
    assert_eq!(
        refused.code,
        Some(7),
        "{}\n{}",
        refused.transcript(),
        refused.stderr
    );
    assert_no_password(&refused);
    for attempt in 1..=2 {
        let line = format!("1_add_email:2: lock not granted within 300ms (attempt {attempt} of 3)");
        assert!(
            refused.stderr.contains(&line),
            "{line:?} in:\n{}",
            refused.stderr
        );
    }
    assert!(
        refused
            .stderr
            .contains("0001_add_email.sql:2: canceling statement due to lock timeout (SQLSTATE 55P03) (after 3 attempts)"),
        "{}",
        refused.stderr
    );
    assert!(!refused.has(|e| matches!(e, Event::InstanceLaunched { .. })));
    assert_eq!(
        ids(&w),
        before,
        "the app's containers are the v1 ones, untouched"
    );
    assert_eq!(email_required(&w.pg), "", "expand did not apply");
    assert_eq!(
        psql(
            &w.pg,
            "SELECT status FROM rollout.migrations WHERE version = 1"
        ),
        "failed"
    );
    // The on-failure hook heard it, as the webhook would.
    let told: serde_json::Value = serde_json::from_str(&w.s.p.read("on-failure.json"))
        .expect("the on-failure hook ran with the message on its stdin");
    assert_eq!(told["hook"], "on-failure");
    assert_eq!(told["exit_code"], 7);
    assert!(
        told["text"]
            .as_str()
            .unwrap()
            .contains("failed before anything was launched"),
        "{told}"
    );
    holder.release();

    // Held again, released once a retry is reported: expand goes through, v2 rolls out.
    let holder = LockHolder::hold(&w.pg, "lock-holder-2");
    let wait = [
        "--migrate-lock-timeout",
        "300ms",
        "--migrate-attempts",
        "20",
    ];
    let mut running = w.s.spawn(&load, &w.args(&wait));
    running.wait_stderr(
        "1_add_email:2: lock not granted within 300ms (attempt 1 of 20)",
        Duration::from_secs(60),
    );
    holder.release();
    let run = running.wait(ROLLOUT_TIMEOUT);
    wait_ok(&load, 250, Duration::from_secs(30));
    let report = load.stop().unwrap();
    publish(SUITE, "held-lock", &report, &[&refused, &run]);
    counts("held lock: refused, then waited", &report);
    assert_eq!(run.code, Some(0), "{}\n{}", run.transcript(), run.stderr);
    assert_eq!(run.outcome_name(), "completed", "{}", run.transcript());
    assert_clean_during(&report, &[&refused, &run]);
    let retries = run
        .events
        .iter()
        .find_map(|e| match &e.event {
            Event::MigrationFinished { phase, retries, .. } if phase == "expand" => Some(*retries),
            _ => None,
        })
        .expect("expand finished");
    eprintln!("expand went through after {retries} lock retries");
    assert!(retries >= 1, "{}", run.stderr);
    assert_eq!(applied(&w.pg), "expand,backfill,contract", "{}", run.stderr);
    assert_eq!(misfilled(&w.pg), "0");
    assert!(w.s.app().iter().all(|c| !before.contains(&c.id)));
}
