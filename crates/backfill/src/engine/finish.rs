//! The end of a run: the job's state from how the workers ended, and, when every range is
//! done, the verification of ranges whose worker died before verifying them.

use sqlx::{AssertSqlSafe, PgConnection};

use super::{Context, Outcome, bind_all, ride_out, texts};
use crate::error::BackfillError;
use crate::event::Event;
use crate::job::Action;
use crate::lifecycle::{JobState, RunEnd, WorkerEnd, on_end};
use crate::sql::JobSql;
use crate::verify::count_remaining;

/// Turns the workers' ends into the run's outcome, recording the job's state.
pub(super) async fn finish(
    conn: &mut PgConnection,
    ctx: &Context<'_>,
    ends: Vec<Result<WorkerEnd, BackfillError>>,
    events: &mut dyn FnMut(Event),
) -> Result<Outcome, BackfillError> {
    let (jobs, name) = (ctx.jobs, &ctx.job.name);
    let finished = match ends.into_iter().collect::<Result<Vec<WorkerEnd>, _>>() {
        Ok(finished) => finished,
        Err(error) => {
            // Whatever stopped the workers is on the job's row: status shows it, and the job
            // is not left `running` with nobody working on it.
            let text = error.to_string();
            record_failure(conn, ctx, &error, &text).await;
            return Err(error);
        }
    };
    let marking = |state: JobState| format!("marking job {name} {state}");
    match on_end(&finished) {
        RunEnd::Cancelled => {
            ride_out(conn, ctx, &marking(JobState::Cancelled), async |conn| {
                jobs.set_state(conn, name, JobState::Cancelled, None).await
            })
            .await?;
            return Ok(Outcome::Cancelled);
        }
        RunEnd::Paused => {
            ride_out(conn, ctx, &marking(JobState::Paused), async |conn| {
                jobs.set_state(conn, name, JobState::Paused, None).await
            })
            .await?;
            return Ok(Outcome::Paused);
        }
        RunEnd::Stopped { limit } => {
            ride_out(conn, ctx, &marking(JobState::Stopped), async |conn| {
                jobs.set_state_if_idle(conn, name, JobState::Stopped).await
            })
            .await?;
            return Ok(match &ctx.deadline {
                Some(deadline) if limit => Outcome::LimitReached {
                    reason: deadline.reason.clone(),
                },
                _ => Outcome::Interrupted,
            });
        }
        RunEnd::AllDone => {}
    }
    complete(conn, ctx, events).await
}

/// Longest a run that already waited `connect_wait` for the database spends recording why it
/// stops: the exit stays bounded by `connect_wait` (and this).
const LAST_TRY: std::time::Duration = std::time::Duration::from_secs(2);

/// Records the failure on the job's row. When the database is what failed (away longer than
/// `connect_wait`), one short try on a new connection, not a second wait; when even that
/// fails, the log says plainly that the row could not be updated.
async fn record_failure(
    conn: &mut PgConnection,
    ctx: &Context<'_>,
    error: &BackfillError,
    text: &str,
) {
    let (jobs, name) = (ctx.jobs, &ctx.job.name);
    let recorded = if database_away(error) {
        tokio::time::timeout(LAST_TRY, async {
            let mut settings = ctx.settings.connect.clone();
            settings.attempts = 1;
            settings.wait = std::time::Duration::ZERO;
            settings.connect_timeout = LAST_TRY;
            let mut fresh = crate::session::connect(&settings).await.ok()?;
            jobs.fail_if_idle(&mut fresh, name, text).await.ok()
        })
        .await
        .ok()
        .flatten()
        .is_some()
    } else {
        ride_out(conn, ctx, "recording the job's failure", async |conn| {
            jobs.fail_if_idle(conn, name, text).await
        })
        .await
        .is_ok()
    };
    if !recorded {
        tracing::error!(
            job = %name,
            "the failure could not be recorded on the job's row (the database cannot be \
             reached): `sluice-backfill status` shows the job as it was until a run takes it \
             over; run the same command again once the database is back"
        );
    }
}

/// Whether the run failed because the database stayed away.
fn database_away(error: &BackfillError) -> bool {
    match error {
        BackfillError::Db(sluice_common::db::DbError::Unreachable { .. }) => true,
        BackfillError::Query { error, .. } => {
            sluice_common::retry::classify(error)
                == Some(sluice_common::retry::Transient::ConnectionLost)
        }
        _ => false,
    }
}

/// Every range is done: verifies any range whose worker died before verifying it, then
/// completes the job, or fails it when rows still match `where`.
async fn complete(
    conn: &mut PgConnection,
    ctx: &Context<'_>,
    events: &mut dyn FnMut(Event),
) -> Result<Outcome, BackfillError> {
    let (jobs, job) = (ctx.jobs, ctx.job);
    let unverified = ride_out(conn, ctx, "reading unverified ranges", async |conn| {
        jobs.ranges().unverified(conn, &job.name).await
    })
    .await?;
    for range in unverified {
        let remaining = ride_out(conn, ctx, "verifying a range", async |conn| {
            count_remaining(conn, ctx.sql, job, range.lower.clone(), &range.upper).await
        })
        .await?;
        let remaining = i64::try_from(remaining).unwrap_or(i64::MAX);
        ride_out(
            conn,
            ctx,
            "recording a range's verification",
            async |conn| {
                jobs.ranges()
                    .verified(conn, &job.name, range.range_no, remaining)
                    .await
            },
        )
        .await?;
    }
    let summary = ride_out(conn, ctx, "reading the job's ranges", async |conn| {
        jobs.ranges().summary(conn, &job.name).await
    })
    .await?;
    let null_keys: i64 = ride_out(conn, ctx, "counting rows with a NULL key", async |conn| {
        sqlx::query_scalar(AssertSqlSafe(ctx.sql.count_null_keys.clone()))
            .fetch_one(conn)
            .await
    })
    .await?;
    let remaining = u64::try_from(summary.rows_unverified).unwrap_or(0);
    events(Event::Verified {
        remaining: remaining + u64::try_from(null_keys).unwrap_or(0),
    });
    if null_keys > 0 {
        let error = BackfillError::NullKeys {
            job: job.name.clone(),
            rows: u64::try_from(null_keys).unwrap_or(0),
            table: job.table.to_string(),
            spec: ctx.spec_path(),
        };
        let _ = jobs
            .set_state(conn, &job.name, JobState::Failed, Some(&error.to_string()))
            .await;
        return Err(error);
    }
    if remaining > 0 {
        let upper = jobs
            .load(conn, &job.name)
            .await
            .ok()
            .flatten()
            .and_then(|r| r.upper_bound)
            .unwrap_or_default();
        let first_key = first_remaining(conn, ctx.sql, &upper)
            .await
            .unwrap_or_else(|_| "(unknown)".into());
        let (what, cause) = unverified_because(&job.action);
        let error = BackfillError::Unverified {
            job: job.name.clone(),
            remaining,
            what,
            first_key,
            cause,
            spec: ctx.spec_path(),
        };
        let _ = jobs
            .set_state(conn, &job.name, JobState::Failed, Some(&error.to_string()))
            .await;
        return Err(error);
    }
    if !ride_out(conn, ctx, "completing the job", async |conn| {
        jobs.complete_if_done(conn, &job.name).await
    })
    .await?
    {
        return Ok(Outcome::Interrupted);
    }
    let row = ride_out(conn, ctx, "reading the job", async |conn| {
        jobs.load(conn, &job.name).await
    })
    .await?;
    Ok(Outcome::Completed {
        rows_updated: row
            .as_ref()
            .map_or(0, |r| u64::try_from(r.rows_updated).unwrap_or(0)),
        batches: row
            .as_ref()
            .map_or(0, |r| u64::try_from(r.batches).unwrap_or(0)),
    })
}

/// What the rows verification found are, and what likely left them, by action.
fn unverified_because(action: &Action) -> (String, &'static str) {
    match action {
        Action::Update { .. } => (
            "still match `where`".to_owned(),
            "they changed after their batch, or `set` does not make `where` false for them \
             (is a dual-write trigger missing?)",
        ),
        Action::Delete => (
            "still match `where`".to_owned(),
            "they were written or changed after their batch passed (does the application still \
             write rows that match?)",
        ),
        Action::Copy(copy) => (
            format!("are not in {}", copy.into),
            "they were written after their batch without reaching the target (is the \
             mirroring trigger in place?), or were deleted from the target",
        ),
    }
}

/// The first key up to `upper` that verification finds, for the verification error.
async fn first_remaining(
    conn: &mut PgConnection,
    sql: &JobSql,
    upper: &[String],
) -> Result<String, sqlx::Error> {
    let Some(text) = &sql.first_remaining else {
        return Ok("(unknown)".to_owned());
    };
    let row = bind_all(sqlx::query(AssertSqlSafe(text.clone())), upper)
        .fetch_optional(conn)
        .await?;
    Ok(match row {
        Some(row) => format!("({})", texts(&row)?.join(", ")),
        None => "(unknown)".to_owned(),
    })
}
