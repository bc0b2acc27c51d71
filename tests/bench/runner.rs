//! Benchmark: the runner against psql on the same files.
//!
//! 1. 500 one-statement migrations applied and reverted by `sluice up` / `sluice down`, next to
//!    psql running each file in its own transaction in one session (the floor for one durable
//!    commit per migration, which is what sluice promises) and `psql --single-transaction` (one
//!    commit for everything); once with durable commits, once with commits that do not wait
//!    for the disk, where what is left is the protocol and the programs themselves.
//! 2. A no-op `up` and `status` on those 500 applied migrations.
//! 3. 10,000 migrations: `validate`, `status`, `check`, `baseline`, and the peak memory of
//!    `status --json` next to the table view's (measured with `/usr/bin/time` when present).
//!
//! Run with `cargo bench -p sluice-tests --bench runner` (uses `DATABASE_URL`, or starts a
//! throwaway server with PostgreSQL's default durability). `SLUICE_BENCH_BIN` runs another
//! `sluice` binary (an older build, to compare). Prints medians of several rounds.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use sluice_tests::{TestDb, bin};

const MIGRATIONS: usize = 500;
const MANY: usize = 10_000;
const ROUNDS: usize = 5;

fn write_migrations(dir: &Path, count: usize) {
    std::fs::create_dir_all(dir).unwrap();
    for n in 1..=count {
        let stem = dir.join(format!("{n:05}_table_{n}"));
        std::fs::write(
            stem.with_extension("up.sql"),
            format!("CREATE TABLE t_{n} (id bigint PRIMARY KEY, name text NOT NULL);\n"),
        )
        .unwrap();
        std::fs::write(
            stem.with_extension("down.sql"),
            format!("DROP TABLE t_{n};\n"),
        )
        .unwrap();
    }
}

/// psql's input that runs each of `files` in a transaction of its own, in one session.
fn one_transaction_per_file(files: &[PathBuf]) -> String {
    files
        .iter()
        .map(|f| format!("BEGIN;\n\\i {}\nCOMMIT;\n", f.display()))
        .collect()
}

fn files(dir: &Path, suffix: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(suffix))
        .collect();
    files.sort();
    files
}

fn timed(command: &mut Command) -> Duration {
    let started = Instant::now();
    let output = command.output().expect("run the command");
    let elapsed = started.elapsed();
    assert!(
        output.status.success(),
        "{command:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    elapsed
}

/// psql on `db` running `script` (written to a file: psql reads `\\i` lines from it).
fn psql(db: &TestDb, script: &str) -> Command {
    let path = std::env::temp_dir().join(format!("sluice-bench-{}.sql", fastrand::u64(..)));
    std::fs::write(&path, script).unwrap();
    let mut command = db.psql();
    command.arg("-f").arg(path);
    command
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn sluice_binary() -> PathBuf {
    std::env::var_os("SLUICE_BENCH_BIN").map_or_else(bin::sluice, PathBuf::from)
}

fn sluice(url: &str, dir: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(sluice_binary());
    command
        .args(args)
        .arg("-q")
        .env("DATABASE_URL", url)
        .env("SLUICE_MIGRATIONS", dir);
    command
}

/// Peak resident memory of `command` in KiB, from GNU time.
fn peak_kib(command: &Command) -> Option<u64> {
    if !Path::new("/usr/bin/time").exists() {
        return None;
    }
    let mut timed = Command::new("/usr/bin/time");
    timed.args(["-f", "%M"]).arg(command.get_program());
    timed.args(command.get_args());
    for (key, value) in command.get_envs() {
        if let Some(value) = value {
            timed.env(key, value);
        }
    }
    let output = timed.output().ok()?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    stderr.lines().last()?.trim().parse().ok()
}

fn row(label: &str, time: Duration, floor: Option<Duration>) {
    match floor {
        Some(floor) => println!(
            "  {label:<44} {:>9.1} ms   {:.2}x",
            ms(time),
            time.as_secs_f64() / floor.as_secs_f64()
        ),
        None => println!("  {label:<44} {:>9.1} ms", ms(time)),
    }
}

/// A fresh database; with `no_wait`, its commits do not wait for the WAL to reach the disk
/// (`synchronous_commit = off`), which leaves what the runner itself costs per migration.
async fn database(no_wait: bool) -> TestDb {
    let db = TestDb::new().await;
    if no_wait {
        let mut conn = db.connect().await;
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "ALTER DATABASE \"{}\" SET synchronous_commit = off",
            db.name
        )))
        .execute(&mut conn)
        .await
        .unwrap();
    }
    db
}

async fn apply_and_revert(dir: &Path, no_wait: bool) {
    let (ups, downs) = (files(dir, ".up.sql"), files(dir, ".down.sql"));
    let mut reversed = downs.clone();
    reversed.reverse();
    let mut t: [Vec<Duration>; 7] = Default::default();
    for _ in 0..ROUNDS {
        let db = database(no_wait).await;
        t[0].push(timed(&mut psql(&db, &one_transaction_per_file(&ups))));
        t[1].push(timed(&mut psql(&db, &one_transaction_per_file(&reversed))));
        let db = database(no_wait).await;
        let includes: String = ups
            .iter()
            .map(|f| format!("\\i {}\n", f.display()))
            .collect();
        let mut single = psql(&db, &includes);
        single.arg("--single-transaction");
        t[2].push(timed(&mut single));
        let db = database(no_wait).await;
        t[3].push(timed(&mut sluice(&db.url, dir, &["up"])));
        t[4].push(timed(&mut sluice(&db.url, dir, &["up"])));
        t[5].push(timed(&mut sluice(&db.url, dir, &["status"])));
        t[6].push(timed(&mut sluice(&db.url, dir, &["down", "--to", "0"])));
    }
    let [up_floor, down_floor, single, up, noop, status, down] = t.map(median);
    let commits = if no_wait {
        "commits not waiting for the disk (synchronous_commit = off)"
    } else {
        "durable commits"
    };
    println!("\n{MIGRATIONS} one-statement migrations, {commits}, medians of {ROUNDS} rounds");
    row("psql, a transaction per file, one session", up_floor, None);
    row(
        "psql --single-transaction (one commit)",
        single,
        Some(up_floor),
    );
    row("sluice up", up, Some(up_floor));
    row("psql, each down file in a transaction", down_floor, None);
    row("sluice down --to 0", down, Some(down_floor));
    row("sluice up (nothing to do)", noop, None);
    row("sluice status", status, None);
}

async fn many(dir: &Path) {
    let db = TestDb::new().await;
    let mut t: [Vec<Duration>; 3] = Default::default();
    for _ in 0..ROUNDS {
        t[0].push(timed(&mut sluice(&db.url, dir, &["validate"])));
        t[1].push(timed(&mut sluice(&db.url, dir, &["status"])));
        // Every migration pending: `check` exits 7, which is what it is timed for.
        let started = Instant::now();
        let _ = sluice(&db.url, dir, &["check"]).output();
        t[2].push(started.elapsed());
    }
    let mut baselines = Vec::new();
    for _ in 0..ROUNDS {
        let db = TestDb::new().await;
        let top = format!("{MANY}");
        baselines.push(timed(&mut sluice(
            &db.url,
            dir,
            &["baseline", "--version", &top],
        )));
    }
    let [validate, status, check] = t.map(median);
    println!("\n{MANY} migrations, medians of {ROUNDS} rounds");
    row("sluice validate", validate, None);
    row("sluice status (none applied)", status, None);
    row("sluice check (none applied)", check, None);
    row(&format!("sluice baseline {MANY}"), median(baselines), None);
    let table = peak_kib(&sluice(&db.url, dir, &["status"]));
    let json = peak_kib(&sluice(&db.url, dir, &["status", "--json"]));
    if let (Some(table), Some(json)) = (table, json) {
        println!("  peak memory: status {table} KiB, status --json {json} KiB");
    }
}

#[tokio::main]
async fn main() {
    sluice_tests::prefer_durable_server();
    let work = tempfile::tempdir().unwrap();
    let small = work.path().join("small");
    write_migrations(&small, MIGRATIONS);
    apply_and_revert(&small, false).await;
    apply_and_revert(&small, true).await;
    let large = work.path().join("large");
    write_migrations(&large, MANY);
    many(&large).await;
}
