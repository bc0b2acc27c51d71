//! Starting a run: load the job, or register it with its key bounds and split its key space
//! into ranges; refuse a changed spec or a cancelled job.

use sluice_common::lock::lock_key;
use sqlx::postgres::PgRow;
use sqlx::{AssertSqlSafe, Connection, PgConnection};

use super::{RunOptions, bind_all, texts};
use crate::catalog::Target;
use crate::error::BackfillError;
use crate::job::Job;
use crate::lifecycle::{JobState, Refusal, Start, StartFacts, StartOptions, on_start};
use crate::split;
use crate::sql::JobSql;
use crate::state::{JobRow, Jobs, NewJob};

/// Loads the job's row, or registers the job with its key bounds and ranges; refuses a
/// changed spec or a cancelled job. `None` when it is already complete.
pub(super) async fn start(
    conn: &mut PgConnection,
    jobs: &Jobs,
    job: &Job,
    target: &Target,
    sql: &JobSql,
    options: &RunOptions,
) -> Result<Option<JobRow>, BackfillError> {
    let loaded = jobs
        .load(conn, &job.name)
        .await
        .map_err(BackfillError::query(format!("reading job {}", job.name)))?;
    let Some(row) = loaded else {
        register(conn, jobs, job, target, sql).await?;
        return jobs
            .load(conn, &job.name)
            .await
            .map_err(BackfillError::query("reading the job"));
    };
    let facts = StartFacts {
        state: row.state,
        control: row.control,
        same_identity: same_identity(&row, job),
        same_spec: row.spec_checksum == job.spec_checksum,
    };
    let choices = StartOptions {
        accept_spec_change: options.accept_spec_change,
        rescan: options.rescan,
    };
    let (accept_spec, rescan, paused) = match on_start(facts, choices) {
        Start::Refuse(refusal) => return Err(refused(refusal, &row, job)),
        Start::AlreadyCompleted => return Ok(None),
        Start::Go {
            accept_spec,
            rescan,
            paused,
        } => (accept_spec, rescan, paused),
    };
    if accept_spec {
        jobs.accept_spec(conn, &job.name, &job.spec_checksum)
            .await
            .map_err(BackfillError::query("recording the new spec"))?;
    }
    if rescan {
        jobs.rescan(conn, &job.name)
            .await
            .map_err(BackfillError::query("starting another pass"))?;
    }
    if let Some(upper) = &row.upper_bound {
        // A job started by an older sluice, or rescanned, has no ranges yet.
        let lower = if rescan { None } else { row.cursor.clone() };
        split_once(conn, jobs, job, sql, target, upper, lower).await?;
    }
    if !paused {
        jobs.set_state(conn, &job.name, JobState::Running, None)
            .await
            .map_err(BackfillError::query("marking the job running"))?;
    }
    jobs.load(conn, &job.name)
        .await
        .map_err(BackfillError::query("reading the job"))
}

/// A spec may change how rows change (with --accept-spec-change) but never which table and key
/// the job's recorded progress belongs to: a job moved to another table would skip the rows
/// below its cursor there and still report "completed and verified".
fn same_identity(row: &JobRow, job: &Job) -> bool {
    let keys: Vec<&str> = job.key.iter().map(|k| k.as_str()).collect();
    row.table_name == job.table.to_string() && row.key_columns == keys
}

/// The error for a refused start, naming what to do.
fn refused(refusal: Refusal, row: &JobRow, job: &Job) -> BackfillError {
    let name = job.name.clone();
    match refusal {
        Refusal::Cancelled => BackfillError::Cancelled { job: name },
        Refusal::SpecChanged => BackfillError::SpecChanged { job: name },
        Refusal::IdentityChanged => {
            let keys: Vec<&str> = job.key.iter().map(|k| k.as_str()).collect();
            BackfillError::IdentityChanged {
                job: name,
                was: format!("{} (key {})", row.table_name, row.key_columns.join(", ")),
                now: format!("{} (key {})", job.table, keys.join(", ")),
                spec: super::spec_path(job),
            }
        }
    }
}

/// Registers a new job with its key bounds and ranges in one transaction; when several
/// processes start it at once, one registers and the others wait for it and join.
async fn register(
    conn: &mut PgConnection,
    jobs: &Jobs,
    job: &Job,
    target: &Target,
    sql: &JobSql,
) -> Result<(), BackfillError> {
    let what = format!("registering job {}", job.name);
    // Guarded here too: through a transaction pooler the session has no guards.
    let mut tx = conn
        .begin_with(AssertSqlSafe(crate::session::begin_guarded(job)))
        .await
        .map_err(BackfillError::query(what.clone()))?;
    let upper = key_of(
        sqlx::query(AssertSqlSafe(sql.max_key.clone()))
            .fetch_optional(&mut *tx)
            .await,
        "capturing the key bounds",
    )?;
    let keys: Vec<String> = job.key.iter().map(|k| k.as_str().to_owned()).collect();
    let spec_path = job.path.as_ref().map(|p| p.display().to_string());
    let estimated_rows = match target.estimated_rows {
        known if known > 0 => known,
        _ => sampled_rows(&mut tx, target).await?,
    };
    let table_name = job.table.to_string();
    let new_job = NewJob {
        name: &job.name,
        action: job.action.name(),
        table_name: &table_name,
        key_columns: &keys,
        spec_checksum: &job.spec_checksum,
        spec_path: spec_path.as_deref(),
        upper_bound: upper.as_deref(),
        batch_size: job.pacing.batch_size,
        estimated_rows,
    };
    let registered = jobs
        .register(&mut tx, &new_job)
        .await
        .map_err(BackfillError::query(what.clone()))?;
    if registered && let Some(upper) = &upper {
        let splits = split_keys(&mut tx, sql, target, upper, job.parallel.ranges).await?;
        jobs.ranges()
            .create(&mut tx, &job.name, None, &splits, upper)
            .await
            .map_err(BackfillError::query(what.clone()))?;
    }
    tx.commit().await.map_err(BackfillError::query(what))
}

/// Creates the ranges of a job that has none (one process does, under a lock).
async fn split_once(
    conn: &mut PgConnection,
    jobs: &Jobs,
    job: &Job,
    sql: &JobSql,
    target: &Target,
    upper: &[String],
    lower: Option<Vec<String>>,
) -> Result<(), BackfillError> {
    let (name, ranges) = (job.name.as_str(), job.parallel.ranges);
    let what = format!("splitting job {name} into ranges");
    let mut tx = conn
        .begin_with(AssertSqlSafe(crate::session::begin_guarded(job)))
        .await
        .map_err(BackfillError::query(what.clone()))?;
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(lock_key(&format!("sluice:backfill-split:{name}")))
        .execute(&mut *tx)
        .await
        .map_err(BackfillError::query(what.clone()))?;
    let count = jobs
        .ranges()
        .count(&mut tx, name)
        .await
        .map_err(BackfillError::query(what.clone()))?;
    if count == 0 {
        // Resuming a job from before ranges: one range from where it stopped.
        let splits = match &lower {
            None => split_keys(&mut tx, sql, target, upper, ranges).await?,
            Some(_) => Vec::new(),
        };
        jobs.ranges()
            .create(&mut tx, name, lower.as_deref(), &splits, upper)
            .await
            .map_err(BackfillError::query(what.clone()))?;
    }
    tx.commit().await.map_err(BackfillError::query(what))
}

/// Split keys from a sample of the table's keys.
async fn split_keys(
    conn: &mut PgConnection,
    sql: &JobSql,
    target: &Target,
    upper: &[String],
    ranges: u32,
) -> Result<Vec<Vec<String>>, BackfillError> {
    if ranges <= 1 {
        return Ok(Vec::new());
    }
    let bytes = table_bytes(conn, target).await?;
    #[expect(
        clippy::cast_possible_truncation,
        reason = "a percentage fits a float4"
    )]
    let percent = split::sample_percent(target.estimated_rows, bytes, ranges) as f32;
    let rows = bind_all(
        sqlx::query(AssertSqlSafe(sql.split_keys.clone())).bind(percent),
        upper,
    )
    .bind(i64::from(ranges))
    .fetch_all(&mut *conn)
    .await
    .map_err(BackfillError::query("sampling keys to split the job"))?;
    rows.iter()
        .map(texts)
        .collect::<Result<Vec<_>, _>>()
        .map_err(BackfillError::query("sampling keys to split the job"))
}

async fn table_bytes(conn: &mut PgConnection, target: &Target) -> Result<i64, BackfillError> {
    sqlx::query_scalar("SELECT coalesce(pg_relation_size(to_regclass($1)), 0)")
        .bind(target.table.to_string())
        .fetch_one(conn)
        .await
        .map_err(BackfillError::query("measuring the table"))
}

/// The table's rows counted in a sample, for a table the planner has no estimate of (never
/// analysed), so that progress has a total and an ETA from the first batch: the whole table
/// up to 256 MiB (as the split samples it), else 1% of its pages.
async fn sampled_rows(conn: &mut PgConnection, target: &Target) -> Result<i64, BackfillError> {
    let bytes = table_bytes(conn, target).await?;
    #[expect(
        clippy::cast_possible_truncation,
        reason = "a percentage fits a float4"
    )]
    let percent = split::sample_percent(0, bytes, 1) as f32;
    sqlx::query_scalar(AssertSqlSafe(format!(
        "SELECT round(count(*) * 100 / $1::float8)::bigint FROM {} TABLESAMPLE SYSTEM ($1)",
        target.table
    )))
    .bind(percent)
    .fetch_one(conn)
    .await
    .map_err(BackfillError::query(
        "estimating the table's rows from a sample",
    ))
}

pub(super) fn key_of(
    result: Result<Option<PgRow>, sqlx::Error>,
    what: &str,
) -> Result<Option<Vec<String>>, BackfillError> {
    let row = result.map_err(BackfillError::query(what))?;
    row.map(|r| texts(&r))
        .transpose()
        .map_err(BackfillError::query(what))
}
