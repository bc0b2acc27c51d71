//! The contract between the backfill engine and the runner's contract-step gate: a job's
//! states and operator requests, and whether a migration that requires a job may run, with the
//! sentence that says why not. Both programs use this module, so neither depends on the other.
//!
//! The jobs and ranges tables are created and written by `sluice-backfill` alone; this module
//! only reads them, on the caller's connection.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use sqlx::{AssertSqlSafe, PgConnection};

use crate::ident::Ident;

/// A backfill job's state, as stored in `backfill_jobs.state`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    /// A worker is (or was, if it died) working on the job.
    Running,
    /// Stopped by a signal or a run limit; `run` resumes it.
    Stopped,
    Paused,
    /// Final: it never runs again.
    Cancelled,
    /// Stopped by an error (stored in `last_error`); `run` resumes it.
    Failed,
    Completed,
}

impl JobState {
    pub const ALL: [Self; 6] = [
        Self::Running,
        Self::Stopped,
        Self::Paused,
        Self::Cancelled,
        Self::Failed,
        Self::Completed,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Stopped => "stopped",
            Self::Paused => "paused",
            Self::Cancelled => "cancelled",
            Self::Failed => "failed",
            Self::Completed => "completed",
        }
    }
}

impl fmt::Display for JobState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for JobState {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|s| s.as_str() == text)
            .ok_or_else(|| format!("unknown backfill job state `{text}`"))
    }
}

/// An operator's standing request to a job's workers, as stored in `backfill_jobs.control`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Control {
    Run,
    Pause,
    Cancel,
}

impl Control {
    pub const ALL: [Self; 3] = [Self::Run, Self::Pause, Self::Cancel];

    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Run => "run",
            Self::Pause => "pause",
            Self::Cancel => "cancel",
        }
    }
}

impl fmt::Display for Control {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Control {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|c| c.as_str() == text)
            .ok_or_else(|| format!("unknown backfill control request `{text}`"))
    }
}

impl TryFrom<String> for JobState {
    type Error = String;

    fn try_from(text: String) -> Result<Self, String> {
        text.parse()
    }
}

impl TryFrom<String> for Control {
    type Error = String;

    fn try_from(text: String) -> Result<Self, String> {
        text.parse()
    }
}

/// What a gate sees of a job that is not complete.
#[derive(Debug, Clone, PartialEq)]
pub struct GateStatus {
    pub state: JobState,
    pub rows_scanned: i64,
    pub estimated_rows: i64,
    pub last_error: Option<String>,
    /// Workers holding a live lease on one of its ranges.
    pub workers: i64,
    /// Seconds to go at the job's rate, while it is unfinished and has a rate.
    pub eta_seconds: Option<f64>,
}

/// What a migration gated on a backfill job finds.
#[derive(Debug, Clone, PartialEq)]
pub enum Gate {
    /// Completed and verified with nothing left: the migration may run.
    Open,
    /// Why not: the job's status, or `None` when it never ran.
    Closed(Option<GateStatus>),
}

#[derive(sqlx::FromRow)]
struct GateRow {
    state: String,
    rows_scanned: i64,
    estimated_rows: i64,
    verified_remaining: Option<i64>,
    last_error: Option<String>,
    finished: bool,
    worker_seconds: f64,
    workers: i64,
}

/// Whether job `name` of `schema`'s jobs table is complete and verified.
pub async fn read_gate(
    conn: &mut PgConnection,
    schema: &Ident,
    name: &str,
) -> Result<Gate, sqlx::Error> {
    let jobs = format!("{}.\"backfill_jobs\"", schema.quoted());
    let ranges = format!("{}.\"backfill_ranges\"", schema.quoted());
    let exists: bool =
        sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL AND to_regclass($2) IS NOT NULL")
            .bind(&jobs)
            .bind(&ranges)
            .fetch_one(&mut *conn)
            .await?;
    if !exists {
        return Ok(Gate::Closed(None));
    }
    let row: Option<GateRow> = sqlx::query_as(AssertSqlSafe(format!(
        "SELECT j.state, j.rows_scanned + coalesce(r.rows_scanned, 0) AS rows_scanned, j.estimated_rows,
                CASE WHEN r.ranges > 0 AND r.unverified = 0 THEN r.remaining ELSE j.verified_remaining END
                    AS verified_remaining,
                j.last_error, j.finished_at IS NOT NULL AS finished,
                j.work_seconds + j.throttled_seconds + coalesce(r.worker_seconds, 0) AS worker_seconds,
                coalesce(r.workers, 0) AS workers
         FROM {jobs} j LEFT JOIN LATERAL (
             SELECT sum(rows_scanned)::bigint AS rows_scanned, count(*) AS ranges,
                    count(*) FILTER (WHERE verified_remaining IS NULL) AS unverified,
                    sum(verified_remaining)::bigint AS remaining,
                    sum(work_seconds + throttled_seconds) AS worker_seconds,
                    count(*) FILTER (WHERE state = 'pending' AND owner IS NOT NULL
                                       AND lease_until >= now()) AS workers
             FROM {ranges} WHERE job = j.name
         ) r ON true
         WHERE j.name = $1"
    )))
    .bind(name)
    .fetch_optional(conn)
    .await?;
    let Some(row) = row else {
        return Ok(Gate::Closed(None));
    };
    let state = row
        .state
        .parse()
        .map_err(|e: String| sqlx::Error::Decode(e.into()))?;
    Ok(gate_of(state, &row))
}

fn gate_of(state: JobState, row: &GateRow) -> Gate {
    if state == JobState::Completed && row.verified_remaining == Some(0) {
        return Gate::Open;
    }
    #[expect(
        clippy::cast_precision_loss,
        reason = "row counts as rates need no exactness"
    )]
    let (scanned, estimated) = (row.rows_scanned as f64, row.estimated_rows as f64);
    let eta_seconds = throughput(scanned, row.worker_seconds, row.workers)
        .filter(|_| !row.finished)
        .map(|rate| (estimated - scanned).max(0.0) / rate);
    Gate::Closed(Some(GateStatus {
        state,
        rows_scanned: row.rows_scanned,
        estimated_rows: row.estimated_rows,
        last_error: row.last_error.clone(),
        workers: row.workers,
        eta_seconds,
    }))
}

/// Rows per second of a job: `worker_seconds` adds up every worker's time, working and
/// throttled (a rate limit or a pause is part of how fast the job really goes), and the job
/// advances at the sum of its `workers`' rates. `None` before anything was done.
pub fn throughput(rows: f64, worker_seconds: f64, workers: i64) -> Option<f64> {
    #[expect(clippy::cast_precision_loss, reason = "a worker count is small")]
    let workers = workers.max(1) as f64;
    (worker_seconds > 0.0 && rows > 0.0).then(|| rows / worker_seconds * workers)
}

/// A backfill job a migration waits for, with its progress (`None`: it never ran).
#[derive(Debug, Clone, PartialEq)]
pub struct ClosedGate {
    pub job: String,
    pub status: Option<GateStatus>,
}

impl fmt::Display for ClosedGate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&gate_message(&self.job, self.status.as_ref()))
    }
}

/// One sentence on why a gate is closed and what to run.
pub fn gate_message(name: &str, status: Option<&GateStatus>) -> String {
    let Some(status) = status else {
        return format!("backfill job {name} has not run yet; run it: sluice-backfill run {name}");
    };
    let progress = format!(
        "{} of ~{} rows scanned",
        status.rows_scanned,
        status.estimated_rows.max(status.rows_scanned)
    );
    let eta = status
        .eta_seconds
        .map(|s| {
            format!(
                ", ETA {}",
                humantime::format_duration(Duration::from_secs_f64(s.round()))
            )
        })
        .unwrap_or_default();
    match (status.state, status.workers) {
        (JobState::Running, workers) if workers > 0 => format!(
            "backfill job {name} is running ({workers} worker(s)): {progress}{eta}; wait for it to complete"
        ),
        (JobState::Paused, _) => format!(
            "backfill job {name} is paused at {progress}; continue it: sluice-backfill resume {name} && sluice-backfill run {name}"
        ),
        (JobState::Cancelled, _) => format!(
            "backfill job {name} was cancelled at {progress}; start it over: sluice-backfill reset {name} && sluice-backfill run {name}"
        ),
        (JobState::Failed, _) => format!(
            "backfill job {name} failed at {progress}: {}; resume it: sluice-backfill run {name}",
            status
                .last_error
                .as_deref()
                .unwrap_or("(no error recorded)")
        ),
        (state, _) => format!(
            "backfill job {name} is {state} at {progress}{eta}; resume it: sluice-backfill run {name}"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(state: &str, verified_remaining: Option<i64>, workers: i64) -> GateRow {
        GateRow {
            state: state.to_owned(),
            rows_scanned: 400,
            estimated_rows: 1000,
            verified_remaining,
            last_error: Some("boom".to_owned()),
            finished: false,
            worker_seconds: 2.0,
            workers,
        }
    }

    #[test]
    fn states_and_requests_round_trip_through_their_stored_text() {
        for state in JobState::ALL {
            assert_eq!(state.as_str().parse::<JobState>(), Ok(state));
        }
        for control in Control::ALL {
            assert_eq!(control.as_str().parse::<Control>(), Ok(control));
        }
        assert!("done".parse::<JobState>().is_err());
    }

    #[test]
    fn only_a_completed_and_verified_job_opens_the_gate() {
        let open = row("completed", Some(0), 0);
        assert_eq!(gate_of(JobState::Completed, &open), Gate::Open);
        let unverified = row("completed", None, 0);
        assert!(matches!(
            gate_of(JobState::Completed, &unverified),
            Gate::Closed(_)
        ));
        let left = row("completed", Some(3), 0);
        assert!(matches!(
            gate_of(JobState::Completed, &left),
            Gate::Closed(_)
        ));
    }

    #[test]
    fn a_closed_gate_says_what_to_run() {
        let Gate::Closed(Some(running)) = gate_of(JobState::Running, &row("running", None, 2))
        else {
            panic!("closed expected");
        };
        let text = gate_message("fill", Some(&running));
        assert!(
            text.contains("running (2 worker(s)): 400 of ~1000 rows scanned, ETA"),
            "{text}"
        );
        let Gate::Closed(Some(failed)) = gate_of(JobState::Failed, &row("failed", None, 0)) else {
            panic!("closed expected");
        };
        assert!(
            gate_message("fill", Some(&failed))
                .contains("failed at 400 of ~1000 rows scanned: boom")
        );
        assert!(gate_message("fill", None).contains("sluice-backfill run fill"));
    }

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
