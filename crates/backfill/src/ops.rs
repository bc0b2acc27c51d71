//! Operator commands on recorded jobs: status, pause, resume, cancel.

use crate::ranges::Lease;
use sluice_common::db;
use sluice_common::ident::Ident;
use sqlx::{Connection, PgConnection};

use crate::engine::EngineSettings;
use crate::error::BackfillError;
use crate::lifecycle::{self, Decision, Request};
use crate::state::{JobRow, Jobs, states};

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
    let rate = throughput(
        scanned,
        row.work_seconds + row.throttled_seconds,
        leases.len(),
    );
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

/// Rows per second of a job: `worker_seconds` adds up every worker's time, working and
/// throttled (a rate limit or a pause is part of how fast the job really goes), and the job
/// advances at the sum of its `workers`' rates. `None` before anything was done.
fn throughput(rows: f64, worker_seconds: f64, workers: usize) -> Option<f64> {
    #[expect(clippy::cast_precision_loss, reason = "a worker count is small")]
    let workers = workers.max(1) as f64;
    (worker_seconds > 0.0 && rows > 0.0).then(|| rows / worker_seconds * workers)
}

/// Records an operator's request as [`lifecycle::decide`] rules, and says what it did; a
/// pause or resume of a cancelled job is refused (it never runs again).
pub async fn request(
    settings: &EngineSettings,
    name: &str,
    request: Request,
) -> Result<&'static str, BackfillError> {
    let what = format!("recording the {} request", request.verb());
    let (mut conn, jobs, exists) = open_jobs(settings).await?;
    if !exists {
        return Err(BackfillError::UnknownJob(name.to_owned()));
    }
    let mut tx = conn
        .begin()
        .await
        .map_err(BackfillError::query(what.clone()))?;
    let (state, pending) = jobs
        .lock_control(&mut tx, name)
        .await
        .map_err(BackfillError::query(what.clone()))?
        .ok_or_else(|| BackfillError::UnknownJob(name.to_owned()))?;
    let says = match lifecycle::decide(&state, &pending, request) {
        Decision::Cancelled => {
            return Err(BackfillError::Cancelled {
                job: name.to_owned(),
            });
        }
        Decision::Nothing(says) => says,
        Decision::Record {
            control,
            state,
            says,
        } => {
            jobs.record_request(&mut tx, name, control, state)
                .await
                .map_err(BackfillError::query(what.clone()))?;
            says
        }
    };
    tx.commit().await.map_err(BackfillError::query(what))?;
    let _ = conn.close().await;
    Ok(says)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throughput_counts_throttled_time_and_adds_up_workers() {
        // 10,000 rows in 2 s working + 8 s throttled by one worker: 1,000 rows/s.
        assert_eq!(throughput(10_000.0, 10.0, 1), Some(1000.0));
        // Two workers, each 5 s: the job advances at 2,000 rows/s.
        assert_eq!(throughput(10_000.0, 10.0, 2), Some(2000.0));
        // No live lease (between runs): counted as one worker.
        assert_eq!(throughput(10_000.0, 10.0, 0), Some(1000.0));
        assert_eq!(throughput(0.0, 10.0, 1), None);
        assert_eq!(throughput(10.0, 0.0, 1), None);
    }
}
