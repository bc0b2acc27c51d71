//! Operator commands on recorded jobs: status, pause, resume, cancel.

use crate::ranges::Lease;
use sluice_common::db;
use sluice_common::ident::Ident;
use sqlx::{Connection, PgConnection};

use crate::engine::EngineSettings;
use crate::error::BackfillError;
use crate::state::{JobRow, Jobs, control, states};

/// A job's row and the workers holding leases on its ranges right now.
#[derive(Debug, Clone, serde::Serialize)]
pub struct JobStatus {
    #[serde(flatten)]
    pub row: JobRow,
    /// Live leases: which worker (`<host>/<pid>/w<n>`) works on which range.
    pub leases: Vec<Lease>,
    /// Rows scanned per second of working time (throttled time left out), all workers.
    pub rows_per_second: Option<f64>,
    /// Seconds to go at that rate, from the estimated row count.
    pub eta_seconds: Option<f64>,
}

/// A connection, the jobs table, and whether it exists yet (operator commands create nothing).
async fn open_jobs(settings: &EngineSettings) -> Result<(PgConnection, Jobs, bool), BackfillError> {
    let mut conn = db::connect(&settings.connect).await?;
    let jobs = Jobs::new(settings.schema.clone());
    let exists = jobs
        .exists(&mut conn)
        .await
        .map_err(BackfillError::query("looking for the jobs table"))?;
    Ok((conn, jobs, exists))
}

/// Jobs recorded in the database (one, when `name` is given).
pub async fn status(
    settings: &EngineSettings,
    name: Option<&str>,
) -> Result<Vec<JobStatus>, BackfillError> {
    let (mut conn, jobs, exists) = open_jobs(settings).await?;
    let rows = match (exists, name) {
        (false, Some(name)) => return Err(BackfillError::UnknownJob(name.to_owned())),
        (false, None) => Vec::new(),
        (true, Some(name)) => vec![
            jobs.load(&mut conn, name)
                .await
                .map_err(BackfillError::query("reading the job"))?
                .ok_or_else(|| BackfillError::UnknownJob(name.to_owned()))?,
        ],
        (true, None) => jobs
            .list(&mut conn)
            .await
            .map_err(BackfillError::query("listing jobs"))?,
    };
    let mut statuses = Vec::with_capacity(rows.len());
    for row in rows {
        let leases = jobs
            .ranges()
            .leases(&mut conn, &row.name)
            .await
            .map_err(BackfillError::query("reading the job's leases"))?;
        statuses.push(with_rates(row, leases));
    }
    let _ = conn.close().await;
    Ok(statuses)
}

fn with_rates(row: JobRow, leases: Vec<Lease>) -> JobStatus {
    #[expect(
        clippy::cast_precision_loss,
        reason = "row counts as rates need no exactness"
    )]
    let (scanned, estimated) = (row.rows_scanned as f64, row.estimated_rows as f64);
    // work_seconds adds up every worker's time; the job advances at the sum of their rates.
    #[expect(clippy::cast_precision_loss, reason = "a worker count is small")]
    let workers = leases.len().max(1) as f64;
    let rate =
        (row.work_seconds > 0.0 && scanned > 0.0).then(|| scanned / row.work_seconds * workers);
    let eta = rate
        .filter(|_| row.finished_at.is_none())
        .map(|r| ((estimated - scanned).max(0.0)) / r);
    JobStatus {
        row,
        leases,
        rows_per_second: rate,
        eta_seconds: eta,
    }
}

/// Records a pause, resume or cancel request for `name`.
pub async fn request(
    settings: &EngineSettings,
    name: &str,
    request: &str,
) -> Result<(), BackfillError> {
    debug_assert!([control::PAUSE, control::RUN, control::CANCEL].contains(&request));
    let (mut conn, jobs, exists) = open_jobs(settings).await?;
    let found = exists
        && jobs
            .request(&mut conn, name, request)
            .await
            .map_err(BackfillError::query("recording the request"))?;
    let _ = conn.close().await;
    if found {
        Ok(())
    } else {
        Err(BackfillError::UnknownJob(name.to_owned()))
    }
}

/// What a migration gated on a backfill job finds.
#[derive(Debug, Clone)]
pub enum Gate {
    /// Completed and verified: the migration may run.
    Open,
    /// Why not, for the message: the job's status, or `None` when it never ran.
    Closed(Option<Box<JobStatus>>),
}

/// Whether job `name` is complete and verified, read on the caller's connection.
pub async fn gate(
    conn: &mut PgConnection,
    schema: &Ident,
    name: &str,
) -> Result<Gate, sqlx::Error> {
    let jobs = Jobs::new(schema.clone());
    if !jobs.exists(conn).await? {
        return Ok(Gate::Closed(None));
    }
    let Some(row) = jobs.load(conn, name).await? else {
        return Ok(Gate::Closed(None));
    };
    if row.state == states::COMPLETED && row.verified_remaining == Some(0) {
        return Ok(Gate::Open);
    }
    let leases = jobs.ranges().leases(conn, name).await?;
    Ok(Gate::Closed(Some(Box::new(with_rates(row, leases)))))
}

/// One sentence on why a gate is closed and what to run.
pub fn gate_message(name: &str, status: Option<&JobStatus>) -> String {
    let Some(status) = status else {
        return format!("backfill job {name} has not run yet; run it: sluice-backfill run {name}");
    };
    let row = &status.row;
    let progress = format!(
        "{} of ~{} rows scanned",
        row.rows_scanned,
        row.estimated_rows.max(row.rows_scanned)
    );
    let eta = status
        .eta_seconds
        .map(|s| {
            format!(
                ", ETA {}",
                humantime::format_duration(std::time::Duration::from_secs_f64(s.round()))
            )
        })
        .unwrap_or_default();
    match (row.state.as_str(), status.leases.len()) {
        (states::RUNNING, workers) if workers > 0 => format!(
            "backfill job {name} is running ({workers} worker(s)): {progress}{eta}; wait for it to complete"
        ),
        (states::PAUSED, _) => format!(
            "backfill job {name} is paused at {progress}; continue it: sluice-backfill resume {name} && sluice-backfill run {name}"
        ),
        (states::CANCELLED, _) => format!(
            "backfill job {name} was cancelled at {progress}; the migration cannot run until a job of that name completes"
        ),
        (states::FAILED, _) => format!(
            "backfill job {name} failed at {progress}: {}; resume it: sluice-backfill run {name}",
            row.last_error.as_deref().unwrap_or("(no error recorded)")
        ),
        _ => format!(
            "backfill job {name} is {} at {progress}{eta}; resume it: sluice-backfill run {name}",
            row.state
        ),
    }
}
