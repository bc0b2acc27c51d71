//! The job's pulse, read by each process every `load_check_interval`: every process's
//! committed totals (for progress and ETA).

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
/// committed batches) for progress and ETA.
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
    }
}
