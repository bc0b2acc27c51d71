//! sluice through PgBouncer, started by the tests (issue "Where production runs", point 1).
//!
//! In transaction pooling mode every transaction of a client may run on another server
//! connection: the runner, whose session lock and statements must stay in one session, refuses
//! at once (exit 3) and leaves nothing behind; the backfill, which keeps nothing in a session,
//! runs its job exactly once while an application's session through the same pooler keeps its
//! own settings. In session pooling mode both work as on a direct connection.

use std::process::Command;
use std::time::{Duration, Instant};

use sluice_common::db::{self, ConnectSettings, Pooling};
use sluice_common::exit;
use sluice_common::redact::SecretUrl;
use sluice_migrate::{Database, Embedded, Error, Migrator};
use sluice_tests::{PoolMode, Pooler, Project, Run};
use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, PgConnection, Row};

static GATED: Embedded = sluice_migrate::embed_migrations!("embedded/gated");

const ROWS: i64 = 30_000;

fn pooler(project: &Project, mode: PoolMode, pool_size: u32) -> Pooler {
    Pooler::start(&project.db.url, mode, pool_size)
        .unwrap_or_else(|e| panic!("cannot start PgBouncer: {e}"))
}

/// `command` with its database URL through the pooler.
fn through(command: &mut Command, url: &str) -> Run {
    Run(command.env("DATABASE_URL", url).output().expect("run"))
}

fn write_migrations(project: &Project) {
    project.write(
        "1_items.sql",
        "CREATE TABLE items (id bigint PRIMARY KEY, n int NOT NULL DEFAULT 0);",
    );
    project.write("2_tags.sql", "CREATE TABLE tags (id bigint PRIMARY KEY);");
    project.write(
        "3_index.sql",
        "-- sluice:no-transaction\nCREATE INDEX CONCURRENTLY items_n ON items (n);",
    );
}

/// Four `sluice up` at once through `url`.
fn four_ups(project: &Project, url: &str) -> Vec<Run> {
    let children: Vec<_> = (0..4)
        .map(|_| {
            project
                .sluice()
                .arg("up")
                .env("DATABASE_URL", url)
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("spawn sluice up")
        })
        .collect();
    children
        .into_iter()
        .map(|child| Run(child.wait_with_output().expect("wait for sluice up")))
        .collect()
}

#[tokio::test]
async fn the_runner_refuses_a_transaction_pooler_before_it_runs_anything() {
    let project = Project::new().await;
    write_migrations(&project);
    let pgbouncer = pooler(&project, PoolMode::Transaction, 2);
    let url = pgbouncer.url(&project.db.url);

    for run in four_ups(&project, &url) {
        run.expect_code(exit::INVALID_INPUT);
        let stderr = run.stderr();
        assert!(
            stderr.contains("connection pooler in transaction pooling mode")
                && stderr.contains("Nothing was run")
                && stderr.contains("reaches PostgreSQL directly")
                && stderr.contains("SLUICE_DIRECT_URL"),
            "{stderr}"
        );
        assert!(!stderr.contains("throwaway-pw"), "password shown: {stderr}");
    }
    for command in [&["status"][..], &["validate"], &["down", "--to", "0"]] {
        let run = through(project.sluice().args(command), &url);
        if command != ["validate"] {
            run.expect_code(exit::INVALID_INPUT);
        }
    }
    assert_eq!(
        project
            .db
            .scalar("SELECT count(*) FROM pg_namespace WHERE nspname = 'sluice'")
            .await,
        0,
        "nothing was created through the pooler"
    );
    assert_eq!(
        project
            .db
            .scalar("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'")
            .await,
        0,
        "no lock left on a pooled server connection"
    );

    // The embedded migrator, given a pool through the same pooler, refuses the same way.
    let options = Database::from_url(&url).unwrap();
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(2)
        .connect_lazy_with(options.connect_options().clone());
    let error = Migrator::new(&GATED).unwrap().run(&pool).await.unwrap_err();
    assert!(matches!(error, Error::Database(_)), "{error:?}");
    assert_eq!(error.exit_code(), exit::INVALID_INPUT, "{error}");
    assert!(error.to_string().contains("transaction pooling"), "{error}");

    // The embedder is told what an embedder can do, not the command line's variables.
    assert!(
        error
            .to_string()
            .contains("a pool whose connections reach PostgreSQL directly")
            && !error.to_string().contains("SLUICE_DIRECT_URL"),
        "{error}"
    );

    // The remedy the message names works: with DATABASE_URL still naming the pooler (as the
    // application's does), SLUICE_DIRECT_URL applies every migration once, and `config`
    // shows where each URL came from without the password.
    let direct = || {
        let mut command = project.sluice();
        command.env("SLUICE_DIRECT_URL", &project.db.url);
        command
    };
    let config = through(direct().arg("config"), &url);
    config.expect_code(exit::OK);
    assert!(
        config
            .stdout()
            .lines()
            .any(|line| line.starts_with("direct_url") && line.ends_with("(environment)")),
        "{}",
        config.stdout()
    );
    assert!(
        !config.stdout().contains("throwaway-pw"),
        "{}",
        config.stdout()
    );
    through(direct().arg("up"), &url).expect_code(exit::OK);
    assert_eq!(
        project
            .db
            .scalar("SELECT count(*) FROM sluice.migrations")
            .await,
        3
    );
}

#[tokio::test]
async fn session_pooling_keeps_working_for_the_runner_and_the_backfill() {
    let project = Project::new().await;
    write_migrations(&project);
    let pgbouncer = pooler(&project, PoolMode::Session, 8);
    let url = pgbouncer.url(&project.db.url);

    let runs = four_ups(&project, &url);
    for run in &runs {
        assert!(
            matches!(run.code(), Some(0 | 5)),
            "each `up` applies or waits for the lock: {}",
            run.stderr()
        );
    }
    through(project.sluice().arg("up"), &url).expect_code(exit::OK);
    let applied: Vec<(i64, i64)> = sqlx::query_as(
        "SELECT version, count(*) FROM sluice.migrations GROUP BY version ORDER BY version",
    )
    .fetch_all(&mut project.db.connect().await)
    .await
    .unwrap();
    assert_eq!(applied, vec![(1, 1), (2, 1), (3, 1)], "each migration once");

    fill(&project, 5_000).await;
    write_job(&project);
    through(project.backfill().args(["run", "bump"]), &url).expect_code(exit::OK);
    assert_eq!(counts_of_n(&project).await, vec![(1, 5_000)]);
}

#[tokio::test]
async fn a_backfill_through_a_transaction_pooler_runs_once_and_leaks_no_setting() {
    let project = Project::new().await;
    write_migrations(&project);
    project.run(&["up"]).expect_code(exit::OK);
    fill(&project, ROWS).await;
    write_job(&project);
    // Three server connections for three workers, the load monitor, the pace probe and an
    // application: they must share, so each transaction may land anywhere.
    let pgbouncer = pooler(&project, PoolMode::Transaction, 3);
    let url = pgbouncer.url(&project.db.url);

    let mut job = project
        .backfill()
        .args(["run", "bump", "--workers", "3"])
        .env("DATABASE_URL", &url)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn the backfill");
    let seen = application_settings_while(&url, &mut job).await;
    let run = Run(job.wait_with_output().expect("wait for the backfill"));
    run.expect_code(exit::OK);
    assert!(
        run.stdout().contains("completed and verified"),
        "{}",
        run.stdout()
    );
    assert_eq!(
        counts_of_n(&project).await,
        vec![(1, ROWS)],
        "every row exactly once"
    );
    assert!(
        seen.samples > 20,
        "the application sampled while the job ran"
    );
    assert_eq!(
        seen.foreign,
        Vec::<String>::new(),
        "the application's session saw the job's settings"
    );
    let status = through(project.backfill().args(["status", "bump"]), &url);
    status.expect_code(exit::OK);
    assert!(status.stdout().contains("completed"), "{}", status.stdout());
    let log = pgbouncer.log();
    assert!(
        !log.contains("already exists") && !log.contains("does not exist"),
        "{log}"
    );
}

/// What an application's session through the pooler saw of the settings while `job` ran.
struct Seen {
    samples: usize,
    /// Settings the application never set: the job's guards or verification's.
    foreign: Vec<String>,
}

async fn application_settings_while(url: &str, job: &mut std::process::Child) -> Seen {
    let mut app = PgConnection::connect_with(&application(url))
        .await
        .expect("the application connects");
    let mut seen = Seen {
        samples: 0,
        foreign: Vec::new(),
    };
    let started = Instant::now();
    while job.try_wait().expect("the job's status").is_none() {
        assert!(
            started.elapsed() < Duration::from_secs(240),
            "the backfill did not end"
        );
        let row = sqlx::raw_sql(
            "SELECT current_setting('lock_timeout'), current_setting('statement_timeout'), \
             current_setting('jit')",
        )
        .fetch_one(&mut app)
        .await
        .expect("the application's query through the pooler");
        let settings: [String; 3] = [row.get(0), row.get(1), row.get(2)];
        if settings != ["0".to_owned(), "0".to_owned(), "on".to_owned()] {
            seen.foreign.push(settings.join(" "));
        }
        seen.samples += 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    seen
}

/// An application's connection through a stock PgBouncer, which refuses the driver's
/// `extra_float_digits` unless told to ignore it.
fn application(url: &str) -> PgConnectOptions {
    url.parse::<PgConnectOptions>()
        .expect("a URL")
        .extra_float_digits(None)
}

async fn fill(project: &Project, rows: i64) {
    project
        .db
        .exec(&format!(
            "INSERT INTO items (id) SELECT generate_series(1, {rows})"
        ))
        .await;
}

/// A job whose guards are distinctive, so a leak of them is seen; its `where` makes the
/// verification run (and set `jit`).
fn write_job(project: &Project) {
    project.job(
        "bump",
        "name = \"bump\"\ntable = \"items\"\nkey = [\"id\"]\n\
         set = \"n = n + 1 + length(pg_sleep(0.0001)::text)\"\nwhere = \"n = 0\"\n\
         batch_size = 250\nmin_batch_size = 250\nmax_batch_size = 250\n\
         lock_timeout = \"1234ms\"\nstatement_timeout = \"56s\"\npace = \"max\"\n",
    );
}

async fn counts_of_n(project: &Project) -> Vec<(i32, i64)> {
    sqlx::query_as("SELECT n, count(*) FROM items GROUP BY n ORDER BY n")
        .fetch_all(&mut project.db.connect().await)
        .await
        .unwrap()
}

/// The backfill's statements through a transaction pooler with one server connection and a
/// second client always waiting for it: between a statement's describe and its execution
/// (two round trips) the other client's simple queries run on that server connection and
/// destroy the unnamed statement, so the execution must bring its own (vendor/README.md).
#[tokio::test]
async fn a_statement_survives_another_client_between_its_describe_and_its_execution() {
    let project = Project::new().await;
    let pgbouncer = pooler(&project, PoolMode::Transaction, 1);
    let url = pgbouncer.url(&project.db.url);
    let settings = ConnectSettings {
        pooling: Pooling::Transaction,
        ..ConnectSettings::new(SecretUrl::new(url.clone()), "sluice test")
    };
    let mut ours = db::connect(&settings)
        .await
        .expect("connect through the pooler");
    let other = tokio::spawn(async move {
        let mut other = PgConnection::connect_with(&application(&url))
            .await
            .expect("the other client");
        for _ in 0..2_000 {
            sqlx::raw_sql("SELECT 1")
                .execute(&mut other)
                .await
                .expect("other client");
        }
    });
    let mut answered = 0;
    while !other.is_finished() {
        let (sum, text): (i64, String) = sqlx::query_as("SELECT $1::int8 + 1, $2::text")
            .bind(41_i64)
            .bind("kept")
            .fetch_one(&mut ours)
            .await
            .expect("a statement through the pooler");
        assert_eq!((sum, text.as_str()), (42, "kept"));
        answered += 1;
    }
    other.await.unwrap();
    assert!(
        answered > 50,
        "{answered} statements ran beside the other client"
    );
}
