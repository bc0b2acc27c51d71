//! Benchmark: `sluice-backfill` filling `b = md5(a::text)` on a 2,000,000-row table, next to
//! (1) one plain UPDATE of the whole table and (2) a hand-written loop in one psql session
//! committing 10,000-row key ranges. Also sluice's longest batch and peak memory, at 200k and
//! 2M rows.
//!
//! Run with `cargo bench -p sluice-tests --bench backfill` (uses `DATABASE_URL`, or starts a
//! throwaway server with PostgreSQL's default durability). Prints medians of 3 rounds.
//! `cargo bench -p sluice-tests --bench backfill -- workers` instead measures one process with
//! 1, 2 and 4 workers on the same table; `-- actions` measures a delete job (half the rows) and
//! a copy job (into an empty twin) against psql loops doing the same in 10,000-row key ranges.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use sluice_tests::{TestDb, bin};

const ROWS: i64 = 2_000_000;
const SMALL_ROWS: i64 = 200_000;
const BATCH: i64 = 10_000;
const ROUNDS: usize = 3;

async fn table(db: &TestDb, rows: i64) {
    db.bench_table(rows).await;
}

fn timed(command: &mut Command) -> Duration {
    let started = Instant::now();
    let output = command.output().expect("run");
    assert!(
        output.status.success(),
        "{command:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    started.elapsed()
}

/// Runs `sluice-backfill`, returning its wall time, longest batch and peak RSS (KiB).
fn sluice(db: &TestDb, dir: &std::path::Path, workers: u32) -> (Duration, String, i64) {
    sluice_with(db, dir, workers, "set = \"b = md5(a::text)\"\n")
}

/// Runs a job on `t` whose action keys are `what`, with fixed 10k batches.
fn sluice_with(
    db: &TestDb,
    dir: &std::path::Path,
    workers: u32,
    what: &str,
) -> (Duration, String, i64) {
    std::fs::write(
        dir.join("fill.toml"),
        format!(
            "name = \"fill\"\ntable = \"t\"\nkey = [\"id\"]\n{what}\
             batch_size = {BATCH}\nmin_batch_size = {BATCH}\nmax_batch_size = {BATCH}\nstatement_timeout = \"5m\"\n"
        ),
    )
    .unwrap();
    let started = Instant::now();
    #[expect(
        clippy::zombie_processes,
        reason = "reaped by wait4 below, which also reads its peak memory"
    )]
    let mut child = Command::new(bin::sluice_backfill())
        .args(["-q", "run", "--workers", &workers.to_string()])
        .arg(dir.join("fill.toml"))
        .env("DATABASE_URL", &db.url)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Read the pipes on threads: the child is reaped below with wait4, not by std.
    let out = child
        .stdout
        .take()
        .map(|mut pipe| std::thread::spawn(move || read_all(&mut pipe)));
    let err = child
        .stderr
        .take()
        .map(|mut pipe| std::thread::spawn(move || read_all(&mut pipe)));
    let (status, max_rss_kib) = wait_with_rusage(child.id());
    let elapsed = started.elapsed();
    let stdout = out.and_then(|t| t.join().ok()).unwrap_or_default();
    let stderr = err.and_then(|t| t.join().ok()).unwrap_or_default();
    assert_eq!(status, 0, "sluice-backfill failed: {stderr}");
    let longest = stdout
        .split("longest batch ")
        .nth(1)
        .and_then(|s| s.split(';').next())
        .unwrap_or("?")
        .to_owned();
    (elapsed, longest, max_rss_kib)
}

fn read_all(pipe: &mut impl std::io::Read) -> String {
    let mut text = String::new();
    let _ = pipe.read_to_string(&mut text);
    text
}

/// wait4(2): the exit status and peak resident memory of a child.
fn wait_with_rusage(pid: u32) -> (i32, i64) {
    let pid = libc::pid_t::try_from(pid).unwrap();
    let mut status = 0;
    #[expect(
        unsafe_code,
        reason = "wait4(2) is the one way to read a child's peak memory"
    )]
    // SAFETY: `usage` is a plain C struct that wait4 fills in; zeroed is a valid value for it.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::wait4(pid, &mut status, 0, &mut usage);
        usage
    };
    (libc::WEXITSTATUS(status), usage.ru_maxrss)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

#[expect(clippy::cast_precision_loss, reason = "rates for a report")]
fn rate(rows: i64, d: Duration) -> f64 {
    rows as f64 / d.as_secs_f64()
}

/// Rows per second with 1, 2 and 4 workers in one process.
async fn workers() {
    let work = tempfile::tempdir().unwrap();
    println!(
        "backfill workers benchmark: {ROWS} rows, b = md5(a::text), 10k batches, medians of {ROUNDS} rounds"
    );
    for workers in [1, 2, 4] {
        let mut times = Vec::new();
        let mut peak = 0;
        for _ in 0..ROUNDS {
            let db = TestDb::new().await;
            table(&db, ROWS).await;
            let (elapsed, _, rss) = sluice(&db, work.path(), workers);
            times.push(elapsed);
            peak = peak.max(rss);
        }
        let time = median(times);
        println!(
            "  {workers} worker(s): {:>9.0} rows/s  ({:.1}s)  peak memory {peak} KiB",
            rate(ROWS, time),
            time.as_secs_f64()
        );
    }
}

/// A psql script running `statement` (with `{lo}` and `{hi}`) over 10k-row key ranges, each
/// range committed on its own.
fn range_script(path: &std::path::Path, statement: &str) {
    let script: String = (0..ROWS)
        .step_by(usize::try_from(BATCH).expect("a positive batch"))
        .map(|lo| {
            statement
                .replace("{lo}", &lo.to_string())
                .replace("{hi}", &(lo + BATCH).to_string())
                + "\n"
        })
        .collect();
    std::fs::write(path, script).unwrap();
}

/// Delete and copy jobs against psql loops doing the same, range by range.
async fn actions() {
    let work = tempfile::tempdir().unwrap();
    let delete_loop = work.path().join("delete.sql");
    range_script(
        &delete_loop,
        "DELETE FROM t WHERE id > {lo} AND id <= {hi} AND a % 2 = 0;",
    );
    let copy_loop = work.path().join("copy.sql");
    range_script(
        &copy_loop,
        "INSERT INTO t2 SELECT * FROM t WHERE id > {lo} AND id <= {hi} ON CONFLICT DO NOTHING;",
    );
    let twin = "CREATE TABLE t2 (LIKE t INCLUDING ALL)";
    let cases = [
        (
            "delete half the rows",
            &delete_loop,
            "action = \"delete\"\nwhere = \"a % 2 = 0\"\n",
            None,
        ),
        (
            "copy into an empty twin",
            &copy_loop,
            "action = \"copy\"\ninto = \"t2\"\n",
            Some(twin),
        ),
    ];
    println!("backfill actions benchmark: {ROWS} rows, 10k-row ranges, medians of {ROUNDS} rounds");
    for (what, script, spec, prepare) in cases {
        let (mut looped, mut ours, mut peak) = (Vec::new(), Vec::new(), 0);
        for _ in 0..ROUNDS {
            let db = TestDb::new().await;
            table(&db, ROWS).await;
            if let Some(sql) = prepare {
                db.exec(sql).await;
            }
            looped.push(timed(db.psql().arg("-f").arg(script)));
            drop(db);
            let db = TestDb::new().await;
            table(&db, ROWS).await;
            if let Some(sql) = prepare {
                db.exec(sql).await;
            }
            let (elapsed, _, rss) = sluice_with(&db, work.path(), 1, spec);
            ours.push(elapsed);
            peak = peak.max(rss);
        }
        let (looped, ours) = (median(looped), median(ours));
        println!(
            "  {what:<24} psql loop {:>9.0} keys/s ({:.1}s)   sluice-backfill {:>9.0} keys/s ({:.1}s)  {:.2}x  peak memory {peak} KiB",
            rate(ROWS, looped),
            looped.as_secs_f64(),
            rate(ROWS, ours),
            ours.as_secs_f64(),
            looped.as_secs_f64() / ours.as_secs_f64()
        );
    }
}

#[tokio::main]
async fn main() {
    sluice_tests::prefer_durable_server();
    if std::env::args().any(|a| a == "workers") {
        return workers().await;
    }
    if std::env::args().any(|a| a == "actions") {
        return actions().await;
    }
    let work = tempfile::tempdir().unwrap();
    let loop_file = work.path().join("loop.sql");
    sluice_tests::write_loop_script(&loop_file, ROWS, BATCH);

    let (mut plain, mut looped, mut ours) = (Vec::new(), Vec::new(), Vec::new());
    let mut longest = Vec::new();
    let mut peak_2m = 0;
    for round in 0..ROUNDS {
        eprintln!("round {} of {ROUNDS}...", round + 1);
        let db = TestDb::new().await;
        table(&db, ROWS).await;
        plain.push(timed(
            db.psql().args(["-c", "UPDATE t SET b = md5(a::text)"]),
        ));
        drop(db);

        let db = TestDb::new().await;
        table(&db, ROWS).await;
        looped.push(timed(db.psql().arg("-f").arg(&loop_file)));
        drop(db);

        let db = TestDb::new().await;
        table(&db, ROWS).await;
        let (elapsed, longest_batch, peak) = sluice(&db, work.path(), 1);
        ours.push(elapsed);
        longest.push(longest_batch);
        peak_2m = peak_2m.max(peak);
    }
    let small = TestDb::new().await;
    table(&small, SMALL_ROWS).await;
    let (_, _, peak_200k) = sluice(&small, work.path(), 1);

    let (plain, looped, ours) = (median(plain), median(looped), median(ours));
    println!("backfill benchmark: {ROWS} rows, b = md5(a::text), medians of {ROUNDS} rounds");
    println!(
        "  (1) one UPDATE of the whole table      {:>9.0} rows/s  ({:.1}s)",
        rate(ROWS, plain),
        plain.as_secs_f64()
    );
    println!(
        "  (2) psql loop, 10k-row ranges           {:>9.0} rows/s  ({:.1}s)",
        rate(ROWS, looped),
        looped.as_secs_f64()
    );
    println!(
        "  sluice-backfill, fixed 10k batches      {:>9.0} rows/s  ({:.1}s)  {:.2}x (2), {:.2}x (1)",
        rate(ROWS, ours),
        ours.as_secs_f64(),
        looped.as_secs_f64() / ours.as_secs_f64(),
        plain.as_secs_f64() / ours.as_secs_f64()
    );
    println!("  sluice longest batch per round: {}", longest.join(", "));
    println!(
        "  sluice peak memory: {} KiB at {SMALL_ROWS} rows, {} KiB at {ROWS} rows",
        peak_200k, peak_2m
    );
}
