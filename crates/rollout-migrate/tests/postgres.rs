//! The runner against a real PostgreSQL (Debian's server, started by the
//! tests on a loopback port: see `support`). Without PostgreSQL these tests
//! fail with a hint; they never skip.

mod support;

use rollout_migrate::{DbTarget, Event, FileState, MigrateError, Migrations, Phase, RunOptions};
use std::time::Duration;
use support::{Folder, Pg};
use tokio_postgres::{Client, NoTls};

/// A plain client for the test itself (its own application_name, so that
/// killing the runner's sessions leaves it alone).
async fn client(pg: &Pg) -> Client {
    let url = format!("{}?application_name=test", pg.url("postgres"));
    let (client, conn) = tokio_postgres::connect(&url, NoTls).await.unwrap();
    tokio::spawn(conn);
    client
}

fn options() -> RunOptions {
    RunOptions {
        release: "v2".into(),
        lock_timeout: Duration::from_millis(100),
        statement_timeout: Duration::from_secs(30),
        attempts: 20,
        backoff: Duration::from_millis(50),
    }
}

async fn apply(
    pg: &Pg,
    dir: &Folder,
    phase: Phase,
) -> Result<rollout_migrate::Applied, MigrateError> {
    apply_with(pg, dir, phase, &options(), &mut |_| {}).await
}

async fn apply_with(
    pg: &Pg,
    dir: &Folder,
    phase: Phase,
    options: &RunOptions,
    progress: &mut (dyn FnMut(&Event) + Send),
) -> Result<rollout_migrate::Applied, MigrateError> {
    let migrations = Migrations::load(&dir.path)?;
    let mut db = DbTarget::parse(&pg.url("postgres"))?.connect().await?;
    db.apply(&migrations, phase, options, progress).await
}

const USERS: &str = "CREATE TABLE users (id bigint PRIMARY KEY, name text NOT NULL, touched int NOT NULL DEFAULT 0);
INSERT INTO users (id, name) SELECT g, 'user' || g FROM generate_series(1, 3000) g;";

const EXPAND: &str = "-- rollout: phase=expand\nALTER TABLE users ADD COLUMN email text;\n";
const BACKFILL: &str = "-- rollout: phase=backfill\n-- rollout: batch size=500\n\
UPDATE users SET email = name || '@example.invalid', touched = touched + 1\n\
WHERE id > $1 AND id <= (SELECT max(id) FROM (SELECT id FROM users WHERE id > $1 ORDER BY id LIMIT $2) b)\n\
RETURNING id;\n";
const CONTRACT: &str = "-- rollout: phase=contract\n-- rollout: no-transaction\n\
ALTER TABLE users ADD CONSTRAINT users_email_nn CHECK (email IS NOT NULL) NOT VALID;\n\
ALTER TABLE users VALIDATE CONSTRAINT users_email_nn;\n\
ALTER TABLE users ALTER COLUMN email SET NOT NULL;\n\
ALTER TABLE users DROP CONSTRAINT users_email_nn;\n";

fn users_email() -> Folder {
    Folder::new(&[
        ("0005_users_email.sql", EXPAND),
        ("0006_users_email_fill.sql", BACKFILL),
        ("0007_users_email_nn.sql", CONTRACT),
    ])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expand_backfill_contract_apply_in_order() {
    let pg = Pg::start();
    let c = client(&pg).await;
    c.batch_execute(USERS).await.unwrap();
    let dir = users_email();

    // Contract before backfill is refused, and changes nothing.
    let e = apply(&pg, &dir, Phase::Contract).await.unwrap_err();
    assert_eq!(e.exit_code(), 2, "{e}");
    assert!(e.to_string().contains("0007_users_email_nn.sql:1: this contract file cannot run before 5_users_email (expand), 6_users_email_fill (backfill)"), "{e}");

    let done = apply(&pg, &dir, Phase::Expand).await.unwrap();
    assert_eq!(done.files, ["5_users_email"]);
    // The old revision's INSERT (no email) still works after expand.
    c.execute("INSERT INTO users (id, name) VALUES (3001, 'old')", &[])
        .await
        .unwrap();

    let done = apply(&pg, &dir, Phase::Backfill).await.unwrap();
    assert_eq!(done.rows, 3001);
    let nulls: i64 = c
        .query_one("SELECT count(*) FROM users WHERE email IS NULL", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(nulls, 0);

    apply(&pg, &dir, Phase::Contract).await.unwrap();
    // Now the old INSERT fails: contract is what breaks old code.
    let e = c
        .execute("INSERT INTO users (id, name) VALUES (3002, 'old')", &[])
        .await
        .unwrap_err();
    assert!(
        e.to_string().contains("null value") || format!("{e:?}").contains("not-null"),
        "{e:?}"
    );

    let db = DbTarget::parse(&pg.url("postgres"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let status = db
        .status(&Migrations::load(&dir.path).unwrap())
        .await
        .unwrap();
    assert!(
        status.iter().all(|s| s.state == FileState::Applied),
        "{status:#?}"
    );
    assert_eq!(status[1].rows_done, 3001);
    assert_eq!(status[1].release.as_deref(), Some("v2"));
    // Applying again does nothing.
    assert_eq!(
        apply(&pg, &dir, Phase::Expand).await.unwrap().files.len(),
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_changed_after_apply_is_refused_and_nothing_runs() {
    let pg = Pg::start();
    let c = client(&pg).await;
    c.batch_execute(USERS).await.unwrap();
    let dir = users_email();
    apply(&pg, &dir, Phase::Expand).await.unwrap();
    dir.write("0005_users_email.sql", &format!("{EXPAND}-- tidied\n"));
    dir.write(
        "0008_more.sql",
        "-- rollout: phase=expand\nALTER TABLE users ADD COLUMN nick text;\n",
    );

    let e = apply(&pg, &dir, Phase::Expand).await.unwrap_err();
    assert_eq!(e.exit_code(), 2);
    let msg = e.to_string();
    assert!(
        msg.contains("0005_users_email.sql:1: the file changed after it was applied"),
        "{msg}"
    );
    let nick: bool = c
        .query_one("SELECT EXISTS (SELECT 1 FROM information_schema.columns WHERE table_name = 'users' AND column_name = 'nick')", &[])
        .await
        .unwrap()
        .get(0);
    assert!(!nick, "a later file ran despite the changed one");
    let db = DbTarget::parse(&pg.url("postgres"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let status = db
        .status(&Migrations::load(&dir.path).unwrap())
        .await
        .unwrap();
    assert!(
        matches!(status[0].state, FileState::Changed { .. }),
        "{status:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_run_is_refused_while_one_holds_the_lock() {
    let pg = Pg::start();
    let c = client(&pg).await;
    c.batch_execute(USERS).await.unwrap();
    let dir = users_email();
    let mut holder = DbTarget::parse(&pg.url("postgres"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    holder.lock().await.unwrap();

    let e = apply(&pg, &dir, Phase::Expand).await.unwrap_err();
    assert_eq!(e.exit_code(), 7, "{e}");
    let msg = e.to_string();
    assert!(
        msg.contains("another migration run holds the lock"),
        "{msg}"
    );
    assert!(msg.contains("\"rollout-migrate\""), "{msg}");
    assert!(!msg.contains("secret-password"), "{msg}");
    let email: bool = c
        .query_one("SELECT EXISTS (SELECT 1 FROM information_schema.columns WHERE table_name = 'users' AND column_name = 'email')", &[])
        .await
        .unwrap()
        .get(0);
    assert!(!email, "the refused run changed the schema");

    holder.unlock().await.unwrap();
    apply(&pg, &dir, Phase::Expand).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backfill_killed_halfway_resumes_from_its_cursor() {
    let pg = Pg::start();
    let c = client(&pg).await;
    c.batch_execute(USERS).await.unwrap();
    let dir = users_email();
    dir.write(
        "0006_users_email_fill.sql",
        &BACKFILL.replace("batch size=500", "batch size=100 pause=20ms"),
    );
    apply(&pg, &dir, Phase::Expand).await.unwrap();

    let url = pg.url("postgres");
    let run = tokio::spawn({
        let dir = dir.path.clone();
        async move {
            let migrations = Migrations::load(&dir).unwrap();
            let mut db = DbTarget::parse(&url).unwrap().connect().await.unwrap();
            db.apply(&migrations, Phase::Backfill, &options(), &mut |_| {})
                .await
        }
    });
    // Kill the runner's connection once a few batches committed.
    loop {
        let done: Option<i64> = c
            .query_opt(
                "SELECT rows_done FROM rollout.migrations WHERE version = 6",
                &[],
            )
            .await
            .ok()
            .flatten()
            .map(|r| r.get(0));
        if done.is_some_and(|d| d >= 500) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let killed: i64 = c
        .query_one(
            "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'rollout-migrate') k",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(killed, 1);
    let e = run.await.unwrap().unwrap_err();
    assert_eq!(e.exit_code(), 1, "{e}");

    let row = c
        .query_one(
            "SELECT status, rows_done, backfill_cursor FROM rollout.migrations WHERE version = 6",
            &[],
        )
        .await
        .unwrap();
    let (status, before, cursor): (String, i64, i64) = (row.get(0), row.get(1), row.get(2));
    assert_eq!(status, "running");
    assert!((500..3000).contains(&before), "{before}");
    assert_eq!(
        cursor, before,
        "ids are 1..=3000, so the cursor is the rows done"
    );

    let mut batches = Vec::new();
    let done = apply_with(&pg, &dir, Phase::Backfill, &options(), &mut |e| {
        if let Event::Batch { total, rows, .. } = e {
            batches.push((*total, *rows));
        }
    })
    .await
    .unwrap();
    assert_eq!(done.rows, 3000 - before);
    assert_eq!(
        batches[0],
        (before + 100, 100),
        "the resumed run starts after the cursor"
    );
    // Every row was changed exactly once: nothing before the cursor again.
    let wrong: i64 = c
        .query_one(
            "SELECT count(*) FROM users WHERE touched <> 1 OR email IS NULL",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(wrong, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expand_waits_for_a_lock_within_its_timeout_and_retries() {
    let pg = Pg::start();
    let c = client(&pg).await;
    c.batch_execute(USERS).await.unwrap();
    let dir = users_email();

    // A long transaction holds a lock on users that ALTER TABLE must wait for.
    let long = client(&pg).await;
    long.batch_execute("BEGIN; SELECT * FROM users LIMIT 1")
        .await
        .unwrap();

    // Too few attempts: the run gives up, naming the file and line, and
    // nothing is applied.
    let few = RunOptions {
        attempts: 2,
        ..options()
    };
    let e = apply_with(&pg, &dir, Phase::Expand, &few, &mut |_| {})
        .await
        .unwrap_err();
    assert_eq!(e.exit_code(), 7, "busy, as DESIGN.md's exit codes say");
    let msg = e.to_string();
    assert!(msg.contains("0005_users_email.sql:2: canceling statement due to lock timeout (SQLSTATE 55P03) (after 2 attempts)"), "{msg}");
    let status: String = c
        .query_one(
            "SELECT status FROM rollout.migrations WHERE version = 5",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(status, "failed");

    // Enough attempts: the transaction ends during the retries, and the run succeeds.
    let release = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(600)).await;
        long.batch_execute("COMMIT").await.unwrap();
    });
    let mut retries = 0;
    let done = apply_with(&pg, &dir, Phase::Expand, &options(), &mut |e| {
        if let Event::Retry { line, .. } = e {
            assert_eq!(*line, 2);
            retries += 1;
        }
    })
    .await
    .unwrap();
    release.await.unwrap();
    assert!(done.retries >= 1 && done.retries == retries, "{done:?}");
    assert_eq!(done.files, ["5_users_email"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_index_from_a_failed_concurrent_build_is_dropped_and_rebuilt() {
    let pg = Pg::start();
    let c = client(&pg).await;
    c.batch_execute(
        "CREATE TABLE t (id int PRIMARY KEY, code int); INSERT INTO t VALUES (1, 7), (2, 7);",
    )
    .await
    .unwrap();
    // A failed build leaves an INVALID index behind; IF NOT EXISTS alone would keep it.
    assert!(c
        .batch_execute("CREATE UNIQUE INDEX CONCURRENTLY t_code_key ON t (code)")
        .await
        .is_err());
    c.batch_execute("UPDATE t SET code = 8 WHERE id = 2")
        .await
        .unwrap();
    let dir = Folder::new(&[(
        "1_t_code.sql",
        "-- rollout: phase=expand\n-- rollout: no-transaction\nCREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS t_code_key ON t (code);\n",
    )]);
    let mut dropped = Vec::new();
    apply_with(&pg, &dir, Phase::Expand, &options(), &mut |e| {
        if let Event::DroppedInvalidIndex { index, .. } = e {
            dropped.push(index.clone());
        }
    })
    .await
    .unwrap();
    assert_eq!(dropped, ["t_code_key"]);
    let valid: bool = c
        .query_one(
            "SELECT indisvalid FROM pg_index WHERE indexrelid = 't_code_key'::regclass",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(valid);
}

#[tokio::test]
async fn an_unreachable_database_exits_6_without_its_password() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("postgres://app:secret-password@127.0.0.1:{port}/shop");
    let e = DbTarget::parse(&url).unwrap().connect().await.unwrap_err();
    assert_eq!(e.exit_code(), 6);
    let msg = e.to_string();
    assert!(
        msg.starts_with(&format!(
            "cannot reach the database postgres://app@127.0.0.1:{port}/shop: "
        )),
        "{msg}"
    );
    assert!(!msg.contains("secret-password"), "{msg}");
    let bad = DbTarget::parse("postgres://app:secret-password@[bad/shop").unwrap_err();
    assert_eq!(bad.exit_code(), 2);
    assert!(!bad.to_string().contains("secret-password"), "{bad}");
}
