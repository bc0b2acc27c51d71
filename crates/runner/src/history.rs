//! sluice's own tables, and every query against them.
//!
//! - `migrations`: one row per applied migration, written in the migration's own transaction.
//! - `migration_progress`: how far a no-transaction migration got, statement by statement,
//!   so a failed or interrupted one resumes at the statement that did not finish.
//! - `audit`: append-only (a trigger refuses UPDATE and DELETE): every apply, revert and
//!   failure, with the database role, client address, program and actor.
//! - `repeatables`: Flyway's repeatable migrations, one row per description.

mod approvals;
mod repeatables;

pub use repeatables::AppliedRepeatable;
use repeatables::RepeatableRow;

use crate::event::Direction;
use crate::source::Migration;
use chrono::{DateTime, Utc};
use futures_util::TryStreamExt;
use sluice_common::db;
use sluice_common::ident::{Ident, quote_literal};
use sqlx::postgres::PgRow;
use sqlx::{AssertSqlSafe, FromRow, PgConnection, Row};

/// A row of `migrations`.
#[derive(Debug, Clone, Default, PartialEq, Eq, sqlx::FromRow)]
pub struct Applied {
    pub version: i64,
    pub name: String,
    pub checksum: String,
    pub no_transaction: bool,
    pub applied_at: Option<DateTime<Utc>>,
    pub duration_ms: i64,
    pub applied_by_role: String,
    pub applied_by_host: Option<String>,
    pub applied_by_program: Option<String>,
    pub actor: Option<String>,
}

/// A result set's rows as `T`s (none when the statement was not sent).
fn decode<T: for<'r> FromRow<'r, PgRow>>(rows: Option<&Vec<PgRow>>) -> Result<Vec<T>, sqlx::Error> {
    rows.map_or(Ok(Vec::new()), |rows| {
        rows.iter().map(T::from_row).collect()
    })
}

/// Which of sluice's tables exist, and whether the role shadows its schema.
#[derive(Debug, Clone, Copy, Default)]
pub struct Found {
    /// The migrations, progress and audit tables.
    pub tables: bool,
    /// The repeatables table (added later: an older install lacks it until its next run).
    pub repeatables: bool,
    pub role_shadows_schema: bool,
}

/// Every row of the history.
#[derive(Debug, Clone, Default)]
pub struct Rows {
    pub applied: Vec<Applied>,
    pub partial: Vec<Partial>,
    pub repeatables: Vec<AppliedRepeatable>,
    /// Every approval (`sluice approve`), oldest first.
    pub approvals: Vec<crate::approval::Approval>,
}

/// A row of `migration_progress`: a no-transaction migration that has not finished.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Partial {
    pub version: i64,
    pub name: String,
    pub checksum: String,
    pub statements_done: i32,
    pub statements_total: i32,
    /// `prefix_checksum` of the statements that ran.
    pub done_checksum: String,
    pub last_error: Option<String>,
}

/// Who is running: the program and the optional `--actor`. The database role and client
/// address are taken by the server itself.
#[derive(Debug, Clone)]
pub struct Who {
    pub program: String,
    pub actor: Option<String>,
}

/// What is being recorded about one migration.
#[derive(Debug, Clone, Copy)]
pub struct Record<'a> {
    pub version: i64,
    pub name: &'a str,
    pub checksum: &'a str,
    pub no_transaction: bool,
    pub duration_ms: i64,
    pub who: &'a Who,
}

impl<'r> Record<'r> {
    /// The record of `migration` (its up file's checksum and transaction mode), run by `who`.
    pub fn new(migration: &'r Migration, who: &'r Who, duration_ms: i64) -> Self {
        Self {
            version: migration.version,
            name: &migration.name,
            checksum: &migration.up.checksum,
            no_transaction: !migration.up.mode().is_atomic(),
            duration_ms,
            who,
        }
    }
}

/// How long a run took, as its history row says.
#[derive(Debug, Clone, Copy)]
pub enum Took {
    /// As the runner measured it.
    Ms(i64),
    /// `before_ms` (earlier attempts) and the time since the server received the message the
    /// row is written in: the whole file ran in that message.
    ThisMessage { before_ms: i64 },
}

impl Took {
    fn sql(self) -> String {
        match self {
            Self::Ms(ms) => format!("{ms}::bigint"),
            Self::ThisMessage { before_ms } => format!(
                "{before_ms} + (extract(epoch FROM clock_timestamp() - statement_timestamp()) * 1000)::bigint"
            ),
        }
    }
}

/// A record's values as SQL literals.
struct Literals {
    version: i64,
    name: String,
    checksum: String,
    program: String,
    actor: String,
}

impl Literals {
    fn of(record: &Record<'_>) -> Self {
        Self {
            version: record.version,
            name: quote_literal(record.name),
            checksum: quote_literal(record.checksum),
            program: quote_literal(&record.who.program),
            actor: optional_literal(record.who.actor.as_deref()),
        }
    }
}

/// A literal, or `NULL`.
fn optional_literal(value: Option<&str>) -> String {
    value.map_or_else(|| "NULL".to_owned(), quote_literal)
}

/// The audit actions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Apply,
    Revert,
    Fail,
    Backup,
    SkipLint,
    Verify,
    Approve,
}

impl Action {
    fn as_str(self) -> &'static str {
        match self {
            Self::Apply => "apply",
            Self::Revert => "revert",
            Self::Fail => "fail",
            Self::Backup => "backup",
            Self::SkipLint => "skip-lint",
            Self::Verify => "verify",
            Self::Approve => "approve",
        }
    }
}

/// The history tables of one schema, with their SQL prepared once.
#[derive(Debug, Clone)]
pub struct History {
    schema: Ident,
    migrations: String,
    progress: String,
    audit: String,
    repeatables: String,
}

impl History {
    pub fn new(schema: Ident) -> Self {
        let table = |name: &str| {
            format!(
                "{}.{}",
                schema.quoted(),
                Ident::new(name).expect("valid").quoted()
            )
        };
        Self {
            migrations: table("migrations"),
            progress: table("migration_progress"),
            audit: table("audit"),
            repeatables: table("repeatables"),
            schema,
        }
    }

    pub fn schema(&self) -> &Ident {
        &self.schema
    }

    /// The qualified name of the history table, for messages and dry runs.
    pub fn migrations_table(&self) -> &str {
        &self.migrations
    }

    pub fn audit_table(&self) -> &str {
        &self.audit
    }

    /// Which of the tables exist (a dry run or `status` must not create them), in one simple
    /// query: the first of two round trips that read the whole history.
    pub async fn found(&self, conn: &mut PgConnection) -> Result<Found, sqlx::Error> {
        let exists = |table: &str| format!("to_regclass({}) IS NOT NULL", quote_literal(table));
        let row = sqlx::raw_sql(AssertSqlSafe(format!(
            "SELECT {} AND {} AND {}, {}, current_user = {} AND current_setting('search_path') LIKE '%$user%'",
            exists(&self.migrations),
            exists(&self.progress),
            exists(&self.audit),
            exists(&self.repeatables),
            quote_literal(self.schema.as_str()),
        )))
        .fetch_one(conn)
        .await?;
        Ok(Found {
            tables: row.try_get(0)?,
            repeatables: row.try_get(1)?,
            role_shadows_schema: row.try_get(2)?,
        })
    }

    /// Creates the schema and tables if they are missing (a schema from before a table was
    /// added gets it). Call under the runner lock.
    pub async fn ensure(&self, conn: &mut PgConnection) -> Result<Found, sqlx::Error> {
        let found = self.found(conn).await?;
        if found.role_shadows_schema {
            // With the default `search_path` (`"$user", public`), a role named like sluice's
            // schema creates its unqualified objects in that schema: almost certainly not
            // what the migrations mean.
            tracing::warn!(
                schema = self.schema.as_str(),
                "the database role has the same name as sluice's schema, and search_path starts \
                 with \"$user\": unqualified objects in migrations will be created in schema {} \
                 instead of public; pick another --schema or set the role's search_path",
                self.schema
            );
        }
        if found.tables && found.repeatables {
            return Ok(found);
        }
        // CREATE SCHEMA IF NOT EXISTS needs CREATE on the database even when the schema is
        // there: a DBA may create it for a role that has no such right (least privilege).
        let schema_exists: bool =
            sqlx::query_scalar("SELECT EXISTS (SELECT FROM pg_namespace WHERE nspname = $1)")
                .bind(self.schema.as_str())
                .fetch_one(&mut *conn)
                .await?;
        let created = sqlx::raw_sql(AssertSqlSafe(self.ddl(!schema_exists)))
            .execute(&mut *conn)
            .await;
        if created.is_err() {
            // The DDL runs in one transaction: leave the lock's connection usable.
            db::end_failed_transaction(conn).await;
        }
        created.map(|_| Found {
            tables: true,
            repeatables: true,
            ..found
        })
    }

    /// Everything the history says, in one round trip once `found` says which tables there are
    /// (none: sluice never ran here).
    pub async fn read(&self, conn: &mut PgConnection, found: Found) -> Result<Rows, sqlx::Error> {
        if !found.tables {
            return Ok(Rows::default());
        }
        let mut sql = format!(
            "SELECT version, name, checksum, no_transaction, applied_at, duration_ms, \
                    applied_by_role, applied_by_host, applied_by_program, actor \
             FROM {} ORDER BY version;
             SELECT version, name, checksum, statements_done, statements_total, done_checksum, last_error \
             FROM {} ORDER BY version;
             {}",
            self.migrations,
            self.progress,
            self.approvals_sql()
        );
        if found.repeatables {
            sql.push_str(&format!(
                ";\nSELECT description, checksum, applied_at, duration_ms, applied_by_role, \
                        applied_by_program, actor \
                 FROM {} ORDER BY description",
                self.repeatables
            ));
        }
        // Each statement's rows, then its completion.
        let mut sets: Vec<Vec<PgRow>> = vec![Vec::new()];
        let mut results = sqlx::raw_sql(AssertSqlSafe(sql)).fetch_many(conn);
        while let Some(item) = results.try_next().await? {
            match item {
                sqlx::Either::Left(_) => sets.push(Vec::new()),
                sqlx::Either::Right(row) => sets.last_mut().expect("one set at least").push(row),
            }
        }
        Ok(Rows {
            applied: decode(sets.first())?,
            partial: decode(sets.get(1))?,
            approvals: approvals::decode(sets.get(2))?,
            repeatables: decode(sets.get(3))?,
        })
    }

    fn ddl(&self, create_schema: bool) -> String {
        let schema = self.schema.quoted();
        let create_schema = if create_schema {
            format!("CREATE SCHEMA IF NOT EXISTS {schema};")
        } else {
            String::new()
        };
        let (migrations, progress, audit) = (&self.migrations, &self.progress, &self.audit);
        let repeatables = self.repeatables_ddl();
        let audit_literal = quote_literal(audit);
        format!(
            "BEGIN;
{create_schema}
CREATE TABLE IF NOT EXISTS {migrations} (
    version bigint PRIMARY KEY,
    name text NOT NULL,
    checksum text NOT NULL,
    no_transaction boolean NOT NULL DEFAULT false,
    applied_at timestamptz NOT NULL DEFAULT now(),
    duration_ms bigint NOT NULL,
    applied_by_role text NOT NULL DEFAULT current_user,
    applied_by_host text DEFAULT host(inet_client_addr()),
    applied_by_program text,
    actor text
);
CREATE TABLE IF NOT EXISTS {progress} (
    version bigint PRIMARY KEY,
    name text NOT NULL,
    checksum text NOT NULL,
    statements_done integer NOT NULL,
    statements_total integer NOT NULL,
    done_checksum text NOT NULL DEFAULT '',
    started_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    last_error text
);
{repeatables}
CREATE TABLE IF NOT EXISTS {audit} (
    id bigserial PRIMARY KEY,
    at timestamptz NOT NULL DEFAULT clock_timestamp(),
    action text NOT NULL,
    version bigint,
    name text,
    checksum text,
    duration_ms bigint,
    detail text,
    role text NOT NULL DEFAULT current_user,
    client_addr text DEFAULT host(inet_client_addr()),
    program text,
    actor text
);
CREATE OR REPLACE FUNCTION {schema}.audit_is_append_only() RETURNS trigger
    LANGUAGE plpgsql AS $sluice$
BEGIN
    RAISE EXCEPTION 'the sluice audit table is append-only';
END
$sluice$;
DO $sluice$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_trigger
                   WHERE tgname = 'audit_is_append_only' AND tgrelid = {audit_literal}::regclass) THEN
        CREATE TRIGGER audit_is_append_only BEFORE UPDATE OR DELETE ON {audit}
            FOR EACH ROW EXECUTE FUNCTION {schema}.audit_is_append_only();
    END IF;
END
$sluice$;
COMMIT;"
        )
    }

    /// Records `record` as run in `direction` (its history row and audit row; an applied
    /// migration's progress row cleared), in the transaction of `conn` when it has one.
    pub async fn record(
        &self,
        conn: &mut PgConnection,
        direction: Direction,
        record: Record<'_>,
    ) -> Result<(), sqlx::Error> {
        let sql = self.record_sql(direction, &record, Took::Ms(record.duration_ms));
        sqlx::raw_sql(AssertSqlSafe(sql))
            .execute(conn)
            .await
            .map(drop)
    }

    /// The one statement that records `record` as run in `direction`, every value inline, so
    /// that it travels in the same message as the file it records.
    pub fn record_sql(&self, direction: Direction, record: &Record<'_>, took: Took) -> String {
        let values = Literals::of(record);
        let Literals {
            version,
            name,
            checksum,
            program,
            actor,
        } = &values;
        let took = format!("WITH took AS (SELECT {} AS ms)", took.sql());
        match direction {
            Direction::Up => format!(
                "{took}, applied AS (
                     INSERT INTO {m} (version, name, checksum, no_transaction, duration_ms, applied_by_program, actor)
                     SELECT {version}, {name}, {checksum}, {no_transaction}, ms, {program}, {actor} FROM took
                 ), cleared AS (
                     DELETE FROM {p} WHERE version = {version}
                 )
                 INSERT INTO {a} (action, version, name, checksum, duration_ms, program, actor)
                 SELECT 'apply', {version}, {name}, {checksum}, ms, {program}, {actor} FROM took",
                m = self.migrations,
                p = self.progress,
                a = self.audit,
                no_transaction = record.no_transaction,
            ),
            Direction::Down => format!(
                "{took}, reverted AS (DELETE FROM {m} WHERE version = {version})
                 INSERT INTO {a} (action, version, name, checksum, duration_ms, program, actor)
                 SELECT 'revert', {version}, {name}, {checksum}, ms, {program}, {actor} FROM took",
                m = self.migrations,
                a = self.audit,
            ),
            Direction::Repeat => self.repeatable_sql(&took, record, &RepeatableRow::applied(record)),
        }
    }

    /// Audits a migration stopped on request (SIGTERM, `--max-runtime`) while a statement ran.
    pub async fn record_interrupted(
        &self,
        conn: &mut PgConnection,
        record: Record<'_>,
        detail: &str,
    ) -> Result<(), sqlx::Error> {
        sqlx::query(AssertSqlSafe(format!(
            "INSERT INTO {} (action, version, name, checksum, duration_ms, detail, program, actor)
             VALUES ('interrupt', $1, $2, $3, 0, $4, $5, $6)",
            self.audit
        )))
        .bind(record.version)
        .bind(record.name)
        .bind(record.checksum)
        .bind(detail)
        .bind(&record.who.program)
        .bind(&record.who.actor)
        .execute(conn)
        .await
        .map(drop)
    }

    /// Audits a failure, after the failed transaction has rolled back.
    pub async fn record_failure(
        &self,
        conn: &mut PgConnection,
        record: Record<'_>,
        action: Action,
        detail: &str,
    ) -> Result<(), sqlx::Error> {
        sqlx::query(AssertSqlSafe(format!(
            "INSERT INTO {} (action, version, name, checksum, duration_ms, detail, program, actor)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            self.audit
        )))
        .bind(format!("{}-{}", Action::Fail.as_str(), action.as_str()))
        .bind(record.version)
        .bind(record.name)
        .bind(record.checksum)
        .bind(record.duration_ms)
        .bind(detail)
        .bind(&record.who.program)
        .bind(&record.who.actor)
        .execute(conn)
        .await?;
        Ok(())
    }

    /// Records migrations as applied without running them (`baseline`), each with its audit
    /// row: one statement, so that all of them are recorded or none.
    pub async fn record_baseline(
        &self,
        conn: &mut PgConnection,
        records: &[Record<'_>],
        who: &Who,
    ) -> Result<(), sqlx::Error> {
        let column = |f: fn(&Record<'_>) -> String| records.iter().map(f).collect::<Vec<_>>();
        let versions: Vec<i64> = records.iter().map(|r| r.version).collect();
        let no_transaction: Vec<bool> = records.iter().map(|r| r.no_transaction).collect();
        sqlx::query(AssertSqlSafe(format!(
            "WITH rows AS (
                 SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::boolean[])
                     WITH ORDINALITY AS r (version, name, checksum, no_transaction, n)
             ), applied AS (
                 INSERT INTO {m} (version, name, checksum, no_transaction, duration_ms, applied_by_program, actor)
                 SELECT version, name, checksum, no_transaction, 0, $5, $6 FROM rows
             )
             INSERT INTO {a} (action, version, name, checksum, duration_ms, detail, program, actor)
             SELECT 'baseline', version, name, checksum, 0, 'recorded as applied without running it', $5, $6
             FROM rows ORDER BY n",
            m = self.migrations,
            a = self.audit
        )))
        .bind(versions)
        .bind(column(|r| r.name.to_owned()))
        .bind(column(|r| r.checksum.to_owned()))
        .bind(no_transaction)
        .bind(&who.program)
        .bind(&who.actor)
        .execute(conn)
        .await?;
        Ok(())
    }

    /// Accepts the current checksum of an applied migration whose file was edited on purpose,
    /// with an audit row carrying both checksums, the reason and the actor. Returns the old
    /// checksum, or `None` when the version is not applied.
    pub async fn accept_checksum(
        &self,
        conn: &mut PgConnection,
        version: i64,
        checksum: &str,
        reason: &str,
        who: &Who,
    ) -> Result<Option<String>, sqlx::Error> {
        sqlx::query_scalar(AssertSqlSafe(format!(
            "WITH old AS (SELECT name, checksum FROM {m} WHERE version = $1 FOR UPDATE),
                  changed AS (UPDATE {m} SET checksum = $2 WHERE version = $1),
                  audited AS (
                      INSERT INTO {a} (action, version, name, checksum, detail, program, actor)
                      SELECT 'repair', $1, old.name, $2,
                             format('accepted checksum %s (was %s): %s', $2, old.checksum, $3), $4, $5
                      FROM old
                  )
             SELECT checksum FROM old",
            m = self.migrations,
            a = self.audit
        )))
        .bind(version)
        .bind(checksum)
        .bind(reason)
        .bind(&who.program)
        .bind(&who.actor)
        .fetch_optional(conn)
        .await
    }

    /// Records a migration another tool applied, keeping its time, with an audit row.
    pub async fn record_imported(
        &self,
        conn: &mut PgConnection,
        record: Record<'_>,
        applied_at: Option<DateTime<Utc>>,
        tool: &str,
    ) -> Result<(), sqlx::Error> {
        sqlx::query(AssertSqlSafe(format!(
            "WITH applied AS (
                 INSERT INTO {m} (version, name, checksum, no_transaction, applied_at, duration_ms, applied_by_program, actor)
                 VALUES ($1, $2, $3, $4, coalesce($5, now()), $6, $7, $8)
             )
             INSERT INTO {a} (action, version, name, checksum, duration_ms, detail, program, actor)
             VALUES ('import', $1, $2, $3, $6, $9, $10, $8)",
            m = self.migrations,
            a = self.audit
        )))
        .bind(record.version)
        .bind(record.name)
        .bind(record.checksum)
        .bind(record.no_transaction)
        .bind(applied_at)
        .bind(record.duration_ms)
        .bind(format!("{tool} (imported)"))
        .bind(&record.who.actor)
        .bind(format!("imported from {tool}'s history"))
        .bind(&record.who.program)
        .execute(conn)
        .await?;
        Ok(())
    }

    /// Audits a backup taken before applying.
    pub async fn record_backup(
        &self,
        conn: &mut PgConnection,
        who: &Who,
        detail: &str,
    ) -> Result<(), sqlx::Error> {
        self.record_event(conn, Action::Backup, who, detail).await
    }

    /// Audits a run that applied migrations despite blocking lint findings.
    pub async fn record_skip_lint(
        &self,
        conn: &mut PgConnection,
        who: &Who,
        detail: &str,
    ) -> Result<(), sqlx::Error> {
        self.record_event(conn, Action::SkipLint, who, detail).await
    }

    /// Audits the result of a post-apply verification check.
    pub async fn record_check(
        &self,
        conn: &mut PgConnection,
        who: &Who,
        detail: &str,
    ) -> Result<(), sqlx::Error> {
        self.record_event(conn, Action::Verify, who, detail).await
    }

    /// An audit row about the run rather than one migration.
    async fn record_event(
        &self,
        conn: &mut PgConnection,
        action: Action,
        who: &Who,
        detail: &str,
    ) -> Result<(), sqlx::Error> {
        sqlx::query(AssertSqlSafe(format!(
            "INSERT INTO {} (action, detail, program, actor) VALUES ($1, $2, $3, $4)",
            self.audit
        )))
        .bind(action.as_str())
        .bind(detail)
        .bind(&who.program)
        .bind(&who.actor)
        .execute(conn)
        .await?;
        Ok(())
    }

    /// Marks a no-transaction migration as started (or keeps its progress when resuming), so
    /// a crash leaves a visible mark.
    pub async fn start_partial(
        &self,
        conn: &mut PgConnection,
        record: Record<'_>,
        total: i32,
    ) -> Result<(), sqlx::Error> {
        sqlx::query(AssertSqlSafe(format!(
            "INSERT INTO {} (version, name, checksum, statements_done, statements_total)
             VALUES ($1, $2, $3, 0, $4)
             ON CONFLICT (version) DO UPDATE SET updated_at = now()",
            self.progress
        )))
        .bind(record.version)
        .bind(record.name)
        .bind(record.checksum)
        .bind(total)
        .execute(conn)
        .await?;
        Ok(())
    }

    /// Records that the first `done` statements of a no-transaction migration have run.
    pub async fn advance_partial(
        &self,
        conn: &mut PgConnection,
        version: i64,
        done: i32,
        done_checksum: &str,
    ) -> Result<(), sqlx::Error> {
        sqlx::query(AssertSqlSafe(format!(
            "UPDATE {} SET statements_done = $2, done_checksum = $3, updated_at = now(), last_error = NULL \
             WHERE version = $1",
            self.progress
        )))
        .bind(version)
        .bind(done)
        .bind(done_checksum)
        .execute(conn)
        .await?;
        Ok(())
    }

    /// Stores the error that stopped a no-transaction migration.
    pub async fn partial_failed(
        &self,
        conn: &mut PgConnection,
        version: i64,
        error: &str,
    ) -> Result<(), sqlx::Error> {
        sqlx::query(AssertSqlSafe(format!(
            "UPDATE {} SET last_error = $2, updated_at = now() WHERE version = $1",
            self.progress
        )))
        .bind(version)
        .bind(error)
        .execute(conn)
        .await?;
        Ok(())
    }
}
