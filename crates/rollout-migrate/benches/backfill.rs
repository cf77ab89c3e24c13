//! `cargo xtask bench migrate`: a 1,000,000-row backfill in bounded batches
//! (the runner) against the same change as one UPDATE, in one run, on a
//! throwaway PostgreSQL: wall time, the longest wait a concurrent writer saw
//! (single-row UPDATEs of random rows, one every few milliseconds), the
//! longest batch, and the WAL written (`pg_current_wal_lsn` before and after).
//!
//! `ROLLOUT_BENCH_ROWS` changes the row count (for a quick look).

#[path = "../tests/support/mod.rs"]
mod support;

use rollout_migrate::{DbTarget, Event, Migrations, Phase, RunOptions};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::{Folder, Pg};
use tokio_postgres::{Client, NoTls};

const BATCH: i64 = 5_000;

struct Figures {
    time: Duration,
    longest_wait: Duration,
    writes: u64,
    longest_batch: Option<Duration>,
    wal: i64,
}

async fn client(pg: &Pg) -> Client {
    let url = format!("{}?application_name=bench", pg.url("postgres"));
    let (client, conn) = tokio_postgres::connect(&url, NoTls).await.unwrap();
    tokio::spawn(conn);
    client
}

async fn wal(c: &Client) -> String {
    c.query_one("SELECT pg_current_wal_lsn()::text", &[])
        .await
        .unwrap()
        .get(0)
}

/// Single-row updates of random rows of `table` until `stop`: the longest
/// one and how many.
async fn writer(
    c: Client,
    table: &'static str,
    rows: i64,
    stop: Arc<AtomicBool>,
) -> (Duration, u64) {
    let sql = format!("UPDATE {table} SET name = name WHERE id = $1");
    let stmt = c.prepare(&sql).await.unwrap();
    let (mut longest, mut n) = (Duration::ZERO, 0u64);
    let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
    while !stop.load(Ordering::Relaxed) {
        // xorshift: a spread of rows, no dependency.
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let id = (seed % rows as u64) as i64 + 1;
        let t = Instant::now();
        c.execute(&stmt, &[&id]).await.unwrap();
        longest = longest.max(t.elapsed());
        n += 1;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    (longest, n)
}

async fn measure<F, Fut>(pg: &Pg, table: &'static str, rows: i64, work: F) -> Figures
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Option<Duration>>,
{
    let c = client(pg).await;
    c.batch_execute("CHECKPOINT").await.unwrap();
    let before = wal(&c).await;
    let stop = Arc::new(AtomicBool::new(false));
    let w = tokio::spawn(writer(client(pg).await, table, rows, stop.clone()));
    tokio::time::sleep(Duration::from_millis(200)).await;
    let t = Instant::now();
    let longest_batch = work().await;
    let time = t.elapsed();
    stop.store(true, Ordering::Relaxed);
    let (longest_wait, writes) = w.await.unwrap();
    let after = wal(&c).await;
    let wal: i64 = c
        .query_one(
            "SELECT pg_wal_lsn_diff($1::text::pg_lsn, $2::text::pg_lsn)::bigint",
            &[&after, &before],
        )
        .await
        .unwrap()
        .get(0);
    Figures {
        time,
        longest_wait,
        writes,
        longest_batch,
        wal,
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let rows: i64 = std::env::var("ROLLOUT_BENCH_ROWS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(1_000_000);
    eprintln!("starting PostgreSQL and loading {rows} rows into two tables...");
    let pg = Pg::start();
    let c = client(&pg).await;
    for t in ["batched", "single"] {
        c.batch_execute(&format!(
            "CREATE TABLE {t} (id bigint PRIMARY KEY, name text NOT NULL, email text);
             INSERT INTO {t} (id, name) SELECT g, 'user' || g FROM generate_series(1, {rows}) g;"
        ))
        .await
        .unwrap();
        c.batch_execute(&format!("VACUUM ANALYZE {t}"))
            .await
            .unwrap();
    }

    let dir = Folder::new(&[(
        "1_fill.sql",
        &format!(
            "-- rollout: phase=backfill\n-- rollout: batch size={BATCH}\n\
             UPDATE batched SET email = name || '@example.invalid'\n\
             WHERE id > $1 AND id <= (SELECT max(id) FROM (SELECT id FROM batched WHERE id > $1 ORDER BY id LIMIT $2) b)\n\
             RETURNING id;\n"
        ),
    )]);
    let url = pg.url("postgres");
    let batched = measure(&pg, "batched", rows, || async {
        let migrations = Migrations::load(&dir.path).unwrap();
        let mut db = DbTarget::parse(&url).unwrap().connect().await.unwrap();
        let mut last = Instant::now();
        let mut longest = Duration::ZERO;
        let mut progress = |e: &Event| {
            if let Event::Batch { .. } = e {
                longest = longest.max(last.elapsed());
                last = Instant::now();
            }
        };
        let options = RunOptions {
            statement_timeout: Duration::from_secs(600),
            ..RunOptions::default()
        };
        db.apply(&migrations, Phase::Backfill, &options, &mut progress)
            .await
            .unwrap();
        Some(longest)
    })
    .await;
    let single = measure(&pg, "single", rows, || async {
        let c = client(&pg).await;
        c.batch_execute("UPDATE single SET email = name || '@example.invalid'")
            .await
            .unwrap();
        None
    })
    .await;

    println!("backfill of {rows} rows, a writer updating one random row every 5 ms meanwhile");
    println!(
        "{:<34} {:>18} {:>18}",
        "",
        format!("batches of {BATCH}"),
        "one UPDATE"
    );
    let ms = |d: Duration| format!("{:.0} ms", d.as_secs_f64() * 1000.0);
    println!(
        "{:<34} {:>18} {:>18}",
        "time",
        ms(batched.time),
        ms(single.time)
    );
    println!(
        "{:<34} {:>18} {:>18}",
        "longest wait of the writer",
        ms(batched.longest_wait),
        ms(single.longest_wait)
    );
    println!(
        "{:<34} {:>18} {:>18}",
        "longest batch (the writer's bound)",
        batched.longest_batch.map(ms).unwrap_or_default(),
        ms(single.time)
    );
    println!(
        "{:<34} {:>18} {:>18}",
        "writer's updates", batched.writes, single.writes
    );
    let mib = |b: i64| format!("{:.1} MiB", b as f64 / 1048576.0);
    println!(
        "{:<34} {:>18} {:>18}",
        "WAL written",
        mib(batched.wal),
        mib(single.wal)
    );
}
