//! The job's pulse, read by each process every `load_check_interval`: every process's
//! committed totals (for progress and ETA) and how many processes share the job's rate limit.

use sluice_common::db;
use sluice_common::retry::{Transient, classify};
use sqlx::PgConnection;
use tokio::sync::{mpsc, watch};

use super::Context;
use crate::event::Event;

/// Rows of a job scanned and updated, by every process and run.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Totals {
    pub scanned: u64,
    pub updated: u64,
}

/// Every `load_check_interval` until `stop`: reads the job's totals (every process's
/// committed batches) for progress and ETA, and keeps this process's share of the job's
/// `max_rows_per_second` in step with the number of processes holding its ranges.
pub(super) async fn pulse(
    conn: &mut PgConnection,
    ctx: &Context<'_>,
    events: mpsc::UnboundedSender<Event>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            () = tokio::time::sleep(ctx.load_settings.check_interval) => {}
            _ = stop.changed() => return,
        }
        match ctx.jobs.load(conn, &ctx.job.name).await {
            Ok(Some(row)) => {
                let _ = events.send(Event::JobTotals {
                    rows_scanned: u64::try_from(row.rows_scanned).unwrap_or(0),
                    rows_updated: u64::try_from(row.rows_updated).unwrap_or(0),
                });
            }
            Ok(None) => {}
            Err(error) => {
                tracing::warn!(
                    "reading job {}'s progress: {}; progress shows this process's batches only",
                    ctx.job.name,
                    db::explain(&error)
                );
                // A restarted server closed the connection: the pulse takes a new one.
                if classify(&error) == Some(Transient::ConnectionLost)
                    && let Ok(fresh) = super::guarded_connection(ctx.settings, ctx.job).await
                {
                    *conn = fresh;
                }
            }
        }
        if ctx.throttle.is_limited() {
            share_rate(conn, ctx).await;
        }
    }
}

/// Takes this process's share of the job's `max_rows_per_second`: the limit is the job's,
/// not each pod's.
async fn share_rate(conn: &mut PgConnection, ctx: &Context<'_>) {
    let job = &ctx.job.name;
    match ctx
        .jobs
        .ranges()
        .other_processes(conn, job, &ctx.process)
        .await
    {
        Ok(others) => {
            let processes = u32::try_from(others).unwrap_or(u32::MAX).saturating_add(1);
            if let Some(rate) = ctx.throttle.share(processes) {
                tracing::info!(
                    job = %job,
                    processes,
                    "max_rows_per_second {} shared by {processes} process(es) running job {job}: this one writes up to {rate} rows/s",
                    ctx.job.pacing.max_rows_per_second
                );
            }
        }
        Err(error) => tracing::warn!(
            "reading which processes share job {job}'s max_rows_per_second: {}; keeping the last share",
            db::explain(&error)
        ),
    }
}
