//! Verification of a done range: the rows in it that still match `where`, counted in bounded
//! chunks. Used by the worker that finishes a range and by the run that completes the job.

use sqlx::{AssertSqlSafe, PgConnection};

use crate::job::Job;
use crate::keytext::{bind_all, texts};
use crate::sql::JobSql;

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
    // Each chunk's query is costed high enough for JIT, whose compilation (tens of ms) costs
    // more than the bounded query it speeds up. Callers run this in a transaction of its own
    // ([`crate::session::ride_out`]), which the setting must not outlive.
    sqlx::raw_sql("SET LOCAL jit = off")
        .execute(&mut *conn)
        .await?;
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
