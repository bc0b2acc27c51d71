//! What a run checks before it records anything: that the batch statement is valid SQL on this
//! table (`set` and `where` are the job author's), that the `throttle_query` answers, and that
//! every replica whose lag it must watch can be read. A guard the operator asked for that
//! cannot work stops the run at its start (exit 3), rather than leave the job running blind
//! or persisted as failed for a typo.

use std::time::Duration;

use sluice_common::db::{self, ConnectSettings, Endpoint};
use sluice_common::redact::SecretUrl;
use sluice_common::retry::classify;
use sqlx::{AssertSqlSafe, Connection, PgConnection};

use crate::catalog::Target;
use crate::error::{BackfillError, ReplicaProblem};
use crate::job::Job;
use crate::load;
use crate::sql::JobSql;

/// `set` and `where` as PostgreSQL reads them: the batch's UPDATE is prepared and explained
/// (not run) in a transaction that is rolled back, so a syntax error, an unknown column or a
/// second statement is found before the job is registered.
pub async fn check_statement(
    conn: &mut PgConnection,
    job: &Job,
    sql: &JobSql,
    spec: &str,
) -> Result<(), BackfillError> {
    let invalid = |problem: String| BackfillError::Statement {
        job: job.name.clone(),
        problem,
        spec: spec.to_owned(),
    };
    // Guarded here too: through a transaction pooler the session has no guards.
    let mut tx = conn
        .begin_with(AssertSqlSafe(crate::session::begin_guarded(job)))
        .await
        .map_err(BackfillError::query("checking the batch statement"))?;
    let explain = job.key.iter().fold(
        sqlx::query(AssertSqlSafe(format!("EXPLAIN {}", sql.batch))),
        |q, _| q.bind(None::<String>),
    );
    let outcome = explain.fetch_all(&mut *tx).await;
    let _ = tx.rollback().await;
    match outcome {
        Ok(_) => Ok(()),
        // EXPLAIN locks the table like the batch will: a lock held elsewhere (or a lost
        // connection) says nothing about the statement, and the batches' own retries handle
        // it.
        Err(e) if classify(&e).is_some() => {
            tracing::debug!(job = %job.name, "the batch statement could not be checked now: {}", db::explain(&e));
            Ok(())
        }
        Err(e) => Err(invalid(db::explain(&e))),
    }
}

/// Row-level security that applies to the job's role on its table (or a copy's target): the
/// batches would change only the rows its policies show, and verification, which reads
/// through the same policies, would call the job done. Refused at start.
pub async fn check_row_security(
    conn: &mut PgConnection,
    job: &Job,
    target: &Target,
) -> Result<(), BackfillError> {
    let mut tables = vec![target.table.to_string()];
    if let Some(copy) = &target.copy {
        tables.push(copy.table.to_string());
    }
    for table in tables {
        // The owner is exempt unless FORCE; superusers and BYPASSRLS roles always are.
        let applies: Option<(bool, String)> = sqlx::query_as(
            "SELECT c.relrowsecurity \
                    AND (c.relforcerowsecurity OR NOT pg_has_role(current_user, c.relowner, 'USAGE')) \
                    AND NOT r.rolsuper AND NOT r.rolbypassrls, \
                    current_user::text \
             FROM pg_class c, pg_roles r WHERE c.oid = $1::regclass AND r.rolname = current_user",
        )
        .bind(&table)
        .fetch_optional(&mut *conn)
        .await
        .map_err(BackfillError::query(format!("reading the row security of {table}")))?;
        if let Some((true, role)) = applies {
            return Err(BackfillError::RowSecurity {
                job: job.name.clone(),
                table,
                role,
            });
        }
    }
    Ok(())
}

/// The `throttle_query` answers one boolean, read-only.
pub async fn check_throttle_query(
    conn: &mut PgConnection,
    job: &Job,
    spec: &str,
) -> Result<(), BackfillError> {
    let Some(query) = &job.load.throttle_query else {
        return Ok(());
    };
    match load::try_throttle_query(conn, query).await {
        Ok(_) => Ok(()),
        // The database went away, not the query: the start is tried again.
        Err(load::ThrottleProblem::Query(error)) if classify(&error).is_some() => {
            Err(BackfillError::Query {
                what: "trying the throttle_query".to_owned(),
                error,
            })
        }
        Err(problem) => Err(BackfillError::ThrottleQuery {
            job: job.name.clone(),
            problem: problem.to_string(),
            spec: spec.to_owned(),
        }),
    }
}

/// Every replica answers its lag query. Replicas without `max_replication_lag` are not
/// watched at all, and the run says so instead of ignoring them silently.
pub async fn check_replicas(
    connect: &ConnectSettings,
    job: &Job,
    replicas: &[SecretUrl],
) -> Result<(), BackfillError> {
    if replicas.is_empty() {
        return Ok(());
    }
    if job.load.max_replication_lag.is_none() {
        tracing::warn!(
            job = %job.name,
            "--replica-url is ignored: job {} sets no max_replication_lag, so replication lag \
             is not watched; set max_replication_lag in its spec (or --max-replication-lag) to \
             watch it",
            job.name
        );
        return Ok(());
    }
    for url in replicas {
        let settings = ConnectSettings {
            endpoint: Endpoint::Url(url.clone()),
            application_name: "sluice-backfill lag".to_owned(),
            connect_timeout: connect.connect_timeout.min(Duration::from_secs(10)),
            ..connect.clone()
        };
        let unusable = |problem: ReplicaProblem| BackfillError::Replica {
            job: job.name.clone(),
            url: url.redacted(),
            problem: Box::new(problem),
        };
        let mut conn = crate::session::connect(&settings)
            .await
            .map_err(|e| unusable(ReplicaProblem::Connect(e)))?;
        let lag = load::read_replica_lag(&mut conn).await;
        let _ = conn.close().await;
        lag.map_err(|e| unusable(ReplicaProblem::Query(e)))?;
    }
    Ok(())
}
