//! The worked example of expand → dual-write → backfill → contract, end to end, on a fresh
//! database: the project's own `migrations/` and `jobs/` against a realistic `accounts` table
//! under live application traffic. Used by the `sluice-demo` binary (the README's main
//! command) and by the integration tests.

mod traffic;

use sluice_runner::migrator::Execution;
use std::path::{Path, PathBuf};
use std::time::Duration;

use sluice_backfill::engine::{self, EngineSettings, Outcome, RunOptions};
use sluice_backfill::job::{Job, Overrides};
use sluice_common::db::ConnectSettings;
use sluice_common::ident::Ident;
use sluice_common::redact::SecretUrl;
use sluice_common::shutdown::Shutdown;
use sluice_runner::error::RunnerError;
use sluice_runner::guard::Guards;
use sluice_runner::history::Who;
use sluice_runner::migrator::{Migrator, RunnerSettings};
use sqlx::{AssertSqlSafe, Connection, PgConnection};

pub use traffic::{Shape, TrafficReport};

/// The example's migrations, by version.
pub const CREATE_ACCOUNTS: i64 = 20_261_101_090_000;
pub const EXPAND: i64 = 20_261_102_090_000;
/// The example's backfill job.
pub const JOB: &str = "accounts_email_normalized";

/// How to run the example.
#[derive(Debug, Clone)]
pub struct Options {
    /// Accounts to seed before the change.
    pub rows: i64,
    /// Concurrent application writers.
    pub writers: usize,
    /// The directory holding `migrations/` and `jobs/`.
    pub project: PathBuf,
    /// Overrides for the job's pacing (the tests make batches smaller).
    pub overrides: Overrides,
}

/// Something to tell the person watching.
#[derive(Debug, Clone)]
pub enum Step {
    Say(String),
    Backfill(sluice_backfill::event::Event),
}

#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error(transparent)]
    Runner(#[from] RunnerError),
    #[error(transparent)]
    Backfill(#[from] sluice_backfill::error::BackfillError),
    #[error(transparent)]
    Job(#[from] sluice_backfill::job::JobError),
    #[error("{what}: {}", sluice_common::db::explain(.error))]
    Sql {
        what: &'static str,
        error: sqlx::Error,
    },
    #[error("{0}")]
    Unexpected(String),
}

fn sql(what: &'static str) -> impl FnOnce(sqlx::Error) -> DemoError {
    move |error| DemoError::Sql { what, error }
}

/// What happened, and the checks that prove nothing was lost.
#[derive(Debug, Clone)]
pub struct Report {
    pub seeded: i64,
    pub rows_after: i64,
    pub backfilled: u64,
    pub traffic: TrafficReport,
    /// `up` stopped at the contract migration before the backfill (exit code 8).
    pub gate_held: bool,
    pub gate_message: String,
    /// Rows whose email_normalized is not lower(email), or NULL.
    pub wrong_rows: i64,
    pub null_rows: i64,
    pub not_null_enforced: bool,
    pub trigger_dropped: bool,
    /// The guard the application's statements are measured against.
    pub lock_timeout: Duration,
}

impl Report {
    /// Every check passed.
    pub fn ok(&self) -> bool {
        self.gate_held
            && self.wrong_rows == 0
            && self.null_rows == 0
            && self.not_null_enforced
            && self.trigger_dropped
            && self.traffic.errors.is_empty()
            && self.traffic.slowest <= self.lock_timeout
            && self.rows_after
                == self.seeded + i64::try_from(self.traffic.inserts).unwrap_or(i64::MAX)
    }

    /// The summary printed at the end.
    pub fn render(&self) -> String {
        let check = |ok: bool| if ok { "ok  " } else { "FAIL" };
        let inserted = i64::try_from(self.traffic.inserts).unwrap_or(i64::MAX);
        let mut out = String::from("\nsummary\n");
        out += &format!("  rows before the change           {}\n", self.seeded);
        out += &format!(
            "  rows inserted by the application {} (and {} updates) while it ran\n",
            self.traffic.inserts, self.traffic.updates
        );
        out += &format!("  rows after                       {}\n", self.rows_after);
        out += &format!("  rows filled by the backfill      {}\n", self.backfilled);
        out += &format!(
            "  [{}] no row lost: {} + {} = {}\n",
            check(self.rows_after == self.seeded + inserted),
            self.seeded,
            inserted,
            self.rows_after
        );
        out += &format!(
            "  [{}] the contract waited for the backfill (exit 8): {}\n",
            check(self.gate_held),
            self.gate_message
        );
        out += &format!(
            "  [{}] every row has email_normalized = lower(email): {} wrong, {} NULL\n",
            check(self.wrong_rows == 0 && self.null_rows == 0),
            self.wrong_rows,
            self.null_rows
        );
        out += &format!(
            "  [{}] email_normalized is NOT NULL; the sync trigger is gone\n",
            check(self.not_null_enforced && self.trigger_dropped)
        );
        out += &format!(
            "  [{}] application writers saw {} error(s)\n",
            check(self.traffic.errors.is_empty()),
            self.traffic.errors.len()
        );
        out += &format!(
            "  [{}] slowest application statement {}ms (lock_timeout {}ms)\n",
            check(self.traffic.slowest <= self.lock_timeout),
            self.traffic.slowest.as_millis(),
            self.lock_timeout.as_millis()
        );
        for error in &self.traffic.errors {
            out += &format!("         {error}\n");
        }
        out
    }
}

/// Runs the example on the database at `url` (which must exist and be empty).
pub async fn run(
    url: &str,
    options: &Options,
    shutdown: &Shutdown,
    say: &mut dyn FnMut(Step),
) -> Result<Report, DemoError> {
    let connect = ConnectSettings::new(SecretUrl::new(url), "sluice-demo");
    let schema = Ident::new("sluice").expect("valid");
    let migrator = Migrator::load(runner_settings(&connect, &schema, &options.project))?;
    let mut app = PgConnection::connect(url)
        .await
        .map_err(sql("connecting"))?;
    let guards = Guards::default();

    say(Step::Say(
        "1. the application's table as it is today".into(),
    ));
    up(&migrator, Some(CREATE_ACCOUNTS), shutdown, say).await?;
    seed(&mut app, options.rows).await?;
    say(Step::Say(format!("   seeded {} accounts", options.rows)));

    say(Step::Say(
        "2. expand: add email_normalized and the trigger that keeps it in sync".into(),
    ));
    up(&migrator, Some(EXPAND), shutdown, say).await?;

    say(Step::Say(
        "3. the contract step is gated on the backfill:".into(),
    ));
    let gate = migrator
        .up(None, Execution::Apply, shutdown, &mut |_| {})
        .await;
    let (gate_held, gate_message) = match gate {
        Err(error @ RunnerError::Blocked { .. }) => (true, error.to_string()),
        Err(other) => return Err(other.into()),
        Ok(_) => (
            false,
            "`sluice up` applied the contract before the backfill".to_owned(),
        ),
    };
    say(Step::Say(format!(
        "   sluice up: {gate_message} (exit {})",
        sluice_common::exit::BLOCKED
    )));

    say(Step::Say(format!(
        "4. {} application writers start inserting and updating (old shape)",
        options.writers
    )));
    let traffic = traffic::Traffic::start(url, options.writers, options.rows)
        .await
        .map_err(sql("starting the writers"))?;

    say(Step::Say(
        "5. backfill the rows that existed before the trigger".into(),
    ));
    let job = Job::load(
        &options.project.join("jobs").join(format!("{JOB}.toml")),
        &options.overrides,
    )?;
    let settings = EngineSettings {
        connect: connect.clone(),
        schema: schema.clone(),
        who: sluice_backfill::audit::Who {
            program: "sluice-demo".to_owned(),
            actor: None,
        },
    };
    let outcome = engine::run(
        &settings,
        &job,
        &RunOptions::default(),
        shutdown,
        &mut |e| say(Step::Backfill(e)),
    )
    .await;
    let backfilled = match outcome {
        Ok(Outcome::Completed { rows_updated, .. }) => rows_updated,
        Ok(other) => {
            let _ = traffic.stop().await;
            return Err(DemoError::Unexpected(format!(
                "the backfill did not complete: {other:?}"
            )));
        }
        Err(error) => {
            let _ = traffic.stop().await;
            return Err(error.into());
        }
    };

    say(Step::Say(
        "6. deploy: the application now writes email_normalized itself".into(),
    ));
    traffic.deploy(Shape::New);
    tokio::time::sleep(Duration::from_millis(300)).await;

    say(Step::Say(
        "7. contract: NOT NULL (CHECK NOT VALID, VALIDATE, SET NOT NULL), drop the trigger".into(),
    ));
    let contract = up(&migrator, None, shutdown, say).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let traffic = traffic.stop().await;
    contract?;

    let checks = verify(&mut app).await?;
    let _ = app.close().await;
    Ok(Report {
        seeded: options.rows,
        rows_after: checks.rows,
        backfilled,
        traffic,
        gate_held,
        gate_message,
        wrong_rows: checks.wrong,
        null_rows: checks.nulls,
        not_null_enforced: checks.not_null,
        trigger_dropped: !checks.trigger,
        lock_timeout: guards.lock_timeout.max(job.guards.lock_timeout),
    })
}

fn runner_settings(connect: &ConnectSettings, schema: &Ident, project: &Path) -> RunnerSettings {
    let who = Who {
        program: format!("sluice-demo {}", env!("CARGO_PKG_VERSION")),
        actor: Some("demo".into()),
    };
    RunnerSettings {
        // The demo shows `up` as the program runs it: linted first.
        lint_gate: true,
        ..RunnerSettings::new(
            connect.clone(),
            schema.clone(),
            project.join("migrations"),
            who,
        )
    }
}

async fn up(
    migrator: &Migrator,
    to: Option<i64>,
    shutdown: &Shutdown,
    say: &mut dyn FnMut(Step),
) -> Result<(), DemoError> {
    let report = migrator
        .up(to, Execution::Apply, shutdown, &mut |_| {})
        .await?;
    for done in &report.migrations {
        say(Step::Say(format!(
            "   sluice up: applied {} ({}ms)",
            done.id, done.duration_ms
        )));
    }
    Ok(())
}

async fn seed(app: &mut PgConnection, rows: i64) -> Result<(), DemoError> {
    sqlx::query(
        "INSERT INTO accounts (email, display_name, created_at) \
         SELECT format('User%s@Example.COM', g), 'user ' || g, now() - g * interval '1 minute' \
         FROM generate_series(1, $1) g",
    )
    .bind(rows)
    .execute(&mut *app)
    .await
    .map_err(sql("seeding accounts"))?;
    sqlx::raw_sql("ANALYZE accounts")
        .execute(app)
        .await
        .map_err(sql("analysing accounts"))?;
    Ok(())
}

struct Checks {
    rows: i64,
    wrong: i64,
    nulls: i64,
    not_null: bool,
    trigger: bool,
}

async fn verify(app: &mut PgConnection) -> Result<Checks, DemoError> {
    let (rows, wrong, nulls): (i64, i64, i64) = sqlx::query_as(
        "SELECT count(*), count(*) FILTER (WHERE email_normalized IS DISTINCT FROM lower(email)), \
                count(*) FILTER (WHERE email_normalized IS NULL) FROM accounts",
    )
    .fetch_one(&mut *app)
    .await
    .map_err(sql("checking the rows"))?;
    let (not_null, trigger): (bool, bool) = sqlx::query_as(AssertSqlSafe(
        "SELECT (SELECT attnotnull FROM pg_attribute WHERE attrelid = 'accounts'::regclass AND attname = 'email_normalized'), \
                EXISTS (SELECT 1 FROM pg_trigger WHERE tgrelid = 'accounts'::regclass AND tgname = 'accounts_email_normalized_sync')",
    ))
    .fetch_one(&mut *app)
    .await
    .map_err(sql("checking the schema"))?;
    Ok(Checks {
        rows,
        wrong,
        nulls,
        not_null,
        trigger,
    })
}
