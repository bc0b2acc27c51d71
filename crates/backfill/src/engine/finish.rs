//! The end of a run: the job's state from how the workers ended, and, when every range is
//! done, the verification of ranges whose worker died before verifying them.

use sqlx::{AssertSqlSafe, PgConnection};

use super::{Context, Outcome, bind_all, ride_out, texts};
use crate::error::BackfillError;
use crate::event::Event;
use crate::job::Job;
use crate::sql::JobSql;
use crate::state::states;
use crate::worker::WorkerEnd;

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
            let _ = ride_out(conn, ctx, "recording the job's failure", async |conn| {
                jobs.fail_if_idle(conn, name, &text).await
            })
            .await;
            return Err(error);
        }
    };
    let has = |end: WorkerEnd| finished.contains(&end);
    let marking = |state: &str| format!("marking job {name} {state}");
    if has(WorkerEnd::Cancelled) {
        ride_out(conn, ctx, &marking(states::CANCELLED), async |conn| {
            jobs.set_state(conn, name, states::CANCELLED, None).await
        })
        .await?;
        return Ok(Outcome::Cancelled);
    }
    if has(WorkerEnd::Paused) {
        ride_out(conn, ctx, &marking(states::PAUSED), async |conn| {
            jobs.set_state(conn, name, states::PAUSED, None).await
        })
        .await?;
        return Ok(Outcome::Paused);
    }
    if has(WorkerEnd::Interrupted) || has(WorkerEnd::Deadline) || has(WorkerEnd::Stopped) {
        ride_out(conn, ctx, &marking(states::STOPPED), async |conn| {
            jobs.set_state_if_idle(conn, name, states::STOPPED).await
        })
        .await?;
        return Ok(match &ctx.deadline {
            Some(deadline) if has(WorkerEnd::Deadline) => Outcome::LimitReached {
                reason: deadline.reason.clone(),
            },
            _ => Outcome::Interrupted,
        });
    }
    complete(conn, ctx, events).await
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
            .set_state(conn, &job.name, states::FAILED, Some(&error.to_string()))
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
        let error = BackfillError::Unverified {
            job: job.name.clone(),
            remaining,
            first_key,
            spec: ctx.spec_path(),
        };
        let _ = jobs
            .set_state(conn, &job.name, states::FAILED, Some(&error.to_string()))
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

/// Rows in (lower, upper] still matching `where`, counted in bounded chunks so that no
/// single query runs long. 0 without a `where`.
pub(crate) async fn count_remaining(
    conn: &mut PgConnection,
    sql: &JobSql,
    job: &Job,
    mut lower: Option<Vec<String>>,
    upper: &[String],
) -> Result<u64, sqlx::Error> {
    let (Some(count_first), Some(count_from)) = (&sql.count_remaining, &sql.count_remaining_from)
    else {
        return Ok(0);
    };
    let chunk = i64::from(job.pacing.max_batch_size)
        .saturating_mul(10)
        .max(1);
    let mut total = 0u64;
    loop {
        let end_query = match &lower {
            None => sqlx::query(AssertSqlSafe(sql.end_key.clone())),
            Some(l) => bind_all(sqlx::query(AssertSqlSafe(sql.end_key_from.clone())), l),
        };
        let end = match bind_all(end_query, upper)
            .bind(chunk - 1)
            .fetch_optional(&mut *conn)
            .await?
        {
            Some(row) => texts(&row)?,
            None => upper.to_vec(),
        };
        let count_query = match &lower {
            None => sqlx::query_scalar::<_, i64>(AssertSqlSafe(count_first.clone())),
            Some(l) => l.iter().fold(
                sqlx::query_scalar::<_, i64>(AssertSqlSafe(count_from.clone())),
                |q, v| q.bind(v.clone()),
            ),
        };
        let count = end
            .iter()
            .fold(count_query, |q, v| q.bind(v.clone()))
            .fetch_one(&mut *conn)
            .await?;
        total += u64::try_from(count).unwrap_or(0);
        if end.as_slice() == upper {
            return Ok(total);
        }
        lower = Some(end);
    }
}

/// The first key up to `upper` still matching `where`, for the verification error.
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
