//! Operator commands on recorded jobs: status, pause, resume, cancel. (Whether a migration's
//! backfill gate is open is `sluice_common::backfill_gate`, which the runner reads too.)

use crate::ranges::Lease;
use sqlx::{Connection, PgConnection};

use crate::audit::Action;
use crate::context::EngineSettings;
use crate::error::BackfillError;
use crate::lifecycle::{self, Decision, Request};
use crate::state::{JobRow, Jobs};
use sluice_common::backfill_gate::throughput;

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
    /// The newest operator actions on the job (runs, pause, resume, cancel, reset), newest
    /// first.
    pub actions: Vec<Action>,
}

/// How many of a job's newest actions `status` shows.
const RECENT_ACTIONS: i64 = 5;

/// A connection, the jobs table, and whether it exists yet (operator commands create no
/// tables in a database that has none).
async fn open_jobs(settings: &EngineSettings) -> Result<(PgConnection, Jobs, bool), BackfillError> {
    let mut conn = crate::session::connect(&settings.connect).await?;
    let jobs = Jobs::new(settings.schema.clone());
    let exists = jobs
        .exists(&mut conn)
        .await
        .map_err(BackfillError::query("looking for the jobs table"))?;
    // Tables an older sluice-backfill created get what this one reads and writes (the audit
    // table); a database without any is left alone.
    if exists {
        jobs.ensure(&mut conn)
            .await
            .map_err(BackfillError::query(format!("updating {}", jobs.table())))?;
    }
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
        let actions = jobs
            .audit()
            .recent(&mut conn, &row.name, RECENT_ACTIONS)
            .await
            .map_err(BackfillError::query("reading the job's audit rows"))?;
        let mut status = with_rates(row, leases);
        status.actions = actions;
        statuses.push(status);
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
        i64::try_from(leases.len()).unwrap_or(i64::MAX),
    );
    let eta = rate
        .filter(|_| row.finished_at.is_none())
        .map(|r| ((estimated - scanned).max(0.0)) / r);
    JobStatus {
        row,
        leases,
        rows_per_second: rate,
        eta_seconds: eta,
        actions: Vec::new(),
    }
}

/// Forgets job `name`'s progress and ranges so that its next `run` starts from the beginning
/// (and, once complete, opens its gate again): the way to start over after a cancel. Refused
/// while a worker holds a live lease on one of its ranges; audited with what was forgotten.
pub async fn reset(settings: &EngineSettings, name: &str) -> Result<&'static str, BackfillError> {
    let what = "resetting the job";
    let (mut conn, jobs, exists) = open_jobs(settings).await?;
    let row = match exists {
        true => jobs
            .load(&mut conn, name)
            .await
            .map_err(BackfillError::query(what))?,
        false => None,
    };
    let Some(row) = row else {
        return Err(BackfillError::UnknownJob(name.to_owned()));
    };
    let mut tx = conn.begin().await.map_err(BackfillError::query(what))?;
    jobs.lock_control(&mut tx, name)
        .await
        .map_err(BackfillError::query(what))?;
    if !jobs
        .forget(&mut tx, name)
        .await
        .map_err(BackfillError::query(what))?
    {
        return Err(BackfillError::Busy {
            job: name.to_owned(),
        });
    }
    let detail = format!(
        "forgot a {} job: {} row(s) updated, {} scanned, {} of {} range(s) done",
        row.state, row.rows_updated, row.rows_scanned, row.ranges_done, row.ranges
    );
    jobs.audit()
        .record(&mut tx, name, "reset", &detail, &settings.who)
        .await
        .map_err(BackfillError::query(what))?;
    tx.commit().await.map_err(BackfillError::query(what))?;
    let _ = conn.close().await;
    Ok(
        "reset: its progress and ranges are forgotten; the next `sluice-backfill run` starts it from the beginning",
    )
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
    let says = match lifecycle::decide(state, pending, request) {
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
    jobs.audit()
        .record(&mut tx, name, request.verb(), says, &settings.who)
        .await
        .map_err(BackfillError::query(what.clone()))?;
    tx.commit().await.map_err(BackfillError::query(what))?;
    let _ = conn.close().await;
    Ok(says)
}
