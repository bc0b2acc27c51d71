//! `plan` and `run --dry-run`: what a job would do, without doing any of it.

use sqlx::{AssertSqlSafe, Connection, Row};

use crate::catalog;
use crate::context::EngineSettings;
use crate::error::BackfillError;
use crate::job::Job;
use crate::load;
use crate::sql::{JobSql, LeaseOf, Progress};
use crate::state::{JobRow, Jobs};

/// What a job would do.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Plan {
    pub job: String,
    /// What each batch does: `update`, `delete`, or `copy into <table> (<columns>)`.
    pub action: String,
    pub table: String,
    pub key: Vec<String>,
    pub key_types: Vec<String>,
    pub index: String,
    pub min_key: Option<Vec<String>>,
    pub max_key: Option<Vec<String>>,
    pub estimated_rows: i64,
    pub estimated_batches: i64,
    pub batch_size: u32,
    /// The statements of every batch, in order, with their parameters named.
    pub batch_sql: Vec<String>,
    /// EXPLAIN of the first batch's statement.
    pub explain: Vec<String>,
    /// The job's recorded progress, when it has run before.
    pub recorded: Option<JobRow>,
    /// What the `throttle_query` answers now, or why it does not work.
    pub throttle_query: Option<String>,
}

/// Plans `job` against the database. Reads only: nothing is created or written.
pub async fn plan(settings: &EngineSettings, job: &Job) -> Result<Plan, BackfillError> {
    job.refuse_schema(&settings.schema)?;
    let mut conn = crate::session::connect(&settings.connect).await?;
    let target = catalog::inspect(&mut conn, job).await?;
    let jobs = Jobs::new(settings.schema.clone());
    let sql = JobSql::new(job, &target, jobs.table(), jobs.ranges().table());
    // A statement PostgreSQL refuses is the spec's fault (exit 3), as it is for `run`.
    crate::preflight::check_statement(&mut conn, job, &sql, &crate::context::spec_path(job))
        .await?;
    let recorded = if jobs
        .exists(&mut conn)
        .await
        .map_err(BackfillError::query("looking for the jobs table"))?
    {
        jobs.load(&mut conn, &job.name)
            .await
            .map_err(BackfillError::query("reading the job"))?
    } else {
        None
    };
    let max_key = one_key(&mut conn, &sql.max_key).await?;
    let min_key = one_key(&mut conn, &sql.min_key).await?;
    let explain = match &max_key {
        Some(upper) => explain_first_batch(&mut conn, &sql, upper, job.pacing.batch_size).await?,
        None => vec!["(the table is empty: the job would complete at once)".to_owned()],
    };
    let throttle_query = match &job.load.throttle_query {
        Some(query) => Some(match load::try_throttle_query(&mut conn, query).await {
            Ok(Some(true)) => "returns true now: a run would wait".to_owned(),
            Ok(_) => "returns false now".to_owned(),
            Err(problem) => format!("does not work, a run would stop at its start: {problem}"),
        }),
        None => None,
    };
    let _ = conn.close().await;
    let batch = i64::from(job.pacing.batch_size);
    let action = match &target.copy {
        Some(copy) => format!(
            "copy into {} ({}), on conflict {}",
            copy.table,
            copy.columns
                .iter()
                .map(|c| c.quoted())
                .collect::<Vec<_>>()
                .join(", "),
            match copy.on_conflict {
                crate::job::OnConflict::Skip => "skip",
                crate::job::OnConflict::Update => "update",
            }
        ),
        None => job.action.name().to_owned(),
    };
    Ok(Plan {
        job: job.name.clone(),
        action,
        table: job.table.to_string(),
        key: job.key.iter().map(|k| k.as_str().to_owned()).collect(),
        key_types: target.key.iter().map(|k| k.type_name.clone()).collect(),
        index: target.index.clone(),
        min_key,
        max_key,
        estimated_rows: target.estimated_rows,
        estimated_batches: (target.estimated_rows + batch - 1) / batch,
        batch_size: job.pacing.batch_size,
        batch_sql: batch_statements(job, &sql),
        explain,
        recorded,
        throttle_query,
    })
}

fn batch_statements(job: &Job, sql: &JobSql) -> Vec<String> {
    let k = job.key.len();
    let cursor: Vec<String> = (1..=k).map(|i| format!("<cursor {i}>")).collect();
    let end: Vec<String> = (1..=k).map(|i| format!("<last key {i}>")).collect();
    let upper: Vec<String> = (1..=k).map(|i| format!("<range upper {i}>")).collect();
    let lease = LeaseOf {
        job: &job.name,
        range_no: 0,
        owner: "<worker>",
        upper: &upper,
        cursor: Some(&cursor),
    };
    vec![
        format!(
            "-- the batch's last key (for a single integer key, computed instead: cursor + span):\n  \
             --   $1..${k} = cursor, ${}..${} = upper bound, ${} = batch size - 1",
            k + 1,
            2 * k,
            2 * k + 1
        ),
        format!("{};", sql.end_key_from),
        "-- the batch and its progress, in one transaction (two round trips):".to_owned(),
        format!(
            "BEGIN; SET LOCAL lock_timeout = '{}ms'; SET LOCAL statement_timeout = '{}ms';",
            job.guards.lock_timeout.as_millis(),
            job.guards.statement_timeout.as_millis()
        ),
        format!("{};", sql.batch_with(lease, Some(&cursor), &end)),
        sql.progress_and_commit(Progress {
            lease,
            cursor: &end,
            rows_updated: 0,
            rows_scanned: 0,
            last: false,
            lease_for: job.parallel.lease,
            throttled_seconds: 0.0,
        })
        .replace("+ 0,", "+ <n>,"),
    ]
}

async fn one_key(
    conn: &mut sqlx::PgConnection,
    sql: &str,
) -> Result<Option<Vec<String>>, BackfillError> {
    let row = sqlx::query(AssertSqlSafe(sql.to_owned()))
        .fetch_optional(&mut *conn)
        .await
        .map_err(BackfillError::query("reading key bounds"))?;
    row.map(|r| {
        (0..r.len())
            .map(|i| r.try_get::<String, _>(i))
            .collect::<Result<Vec<_>, _>>()
    })
    .transpose()
    .map_err(BackfillError::query("reading key bounds"))
}

/// EXPLAIN (without ANALYZE, so nothing runs) of the first batch, in a transaction that is
/// rolled back anyway.
async fn explain_first_batch(
    conn: &mut sqlx::PgConnection,
    sql: &JobSql,
    upper: &[String],
    batch_size: u32,
) -> Result<Vec<String>, BackfillError> {
    let what = "explaining the first batch";
    let mut tx = conn.begin().await.map_err(BackfillError::query(what))?;
    let end_query = upper
        .iter()
        .fold(sqlx::query(AssertSqlSafe(sql.end_key.clone())), |q, v| {
            q.bind(v.clone())
        });
    let end = match end_query
        .bind(i64::from(batch_size.saturating_sub(1)))
        .fetch_optional(&mut *tx)
        .await
        .map_err(BackfillError::query(what))?
    {
        Some(row) => (0..row.len())
            .map(|i| row.try_get::<String, _>(i))
            .collect::<Result<Vec<_>, _>>()
            .map_err(BackfillError::query(what))?,
        None => upper.to_vec(),
    };
    let explain = end.iter().fold(
        sqlx::query_scalar::<_, String>(AssertSqlSafe(format!("EXPLAIN {}", sql.batch))),
        |q, v| q.bind(v.clone()),
    );
    let lines = explain
        .fetch_all(&mut *tx)
        .await
        .map_err(BackfillError::query(what))?;
    let _ = tx.rollback().await;
    Ok(lines)
}
