//! Runs migrations on a scratch database the way sluice runs them, and for those traced
//! records, after each statement, the locks its session holds (`pg_locks`) and what it
//! rewrote or built (`pg_class.relfilenode`, new indexes).
//!
//! A statement that PostgreSQL refuses inside a transaction (`CREATE INDEX CONCURRENTLY`) runs
//! on its own while a second session watches its locks, and a third holds a snapshot open for
//! a moment: a concurrent build waits for older snapshots, so its lock is there to be seen.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use sluice_common::db::{self, ConnectSettings, DbError};
use sluice_common::shutdown::Shutdown;
use sqlx::{AssertSqlSafe, Connection, PgConnection};

use super::sizes::{self, Rates};
use super::{Blocks, Held, Lock, Observed, RULE, Trace, Traced, Work, judge};
use crate::event::Direction;
use crate::guard::Timeouts;
use crate::migrator::RunnerSettings;
use crate::scratch::{Scratch, ScratchError, ScratchServer};
use crate::script::{Control, RunMode, Statement};
use crate::source::Migration;
use crate::steps::{self, Step};

/// The guards the plan carries; the scratch session keeps its own (a ten-minute statement
/// timeout), and nothing else runs there to wait for.
const SCRATCH_TIMEOUTS: Timeouts = Timeouts {
    lock_timeout: Duration::from_secs(600),
    statement_timeout: Duration::from_secs(600),
};

#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    #[error(transparent)]
    Scratch(#[from] ScratchError),
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("{what} failed: {}", db::explain(.error))]
    Query { what: String, error: sqlx::Error },
    #[error(
        "migration {migration} failed on the scratch database at line {line}: {message}; nothing \
         was run on the real database"
    )]
    Failed {
        migration: String,
        line: usize,
        message: String,
    },
    #[error(
        "interrupted: the statement in flight was ended and the scratch database dropped; \
         nothing was run on the real database"
    )]
    Interrupted,
    #[error("{0}; nothing was traced")]
    Invalid(String),
}

impl TraceError {
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Scratch(e) => e.exit_code(),
            Self::Db(e) => e.exit_code(),
            Self::Query { .. } | Self::Failed { .. } => sluice_common::exit::FAILED,
            Self::Interrupted => sluice_common::exit::INTERRUPTED,
            Self::Invalid(_) => sluice_common::exit::INVALID_INPUT,
        }
    }
}

fn query(what: &str) -> impl FnOnce(sqlx::Error) -> TraceError {
    let what = what.to_owned();
    move |error| TraceError::Query { what, error }
}

/// Traces `targets` (versions, in order) among `files`: every file up to the last target is
/// applied on a scratch database made on `server` (and dropped), the targets statement by
/// statement under observation; then each is judged against the real database of `real`
/// (catalog statistics only). A shutdown ends the statement in flight at once (the scratch
/// database is dropped under it). `on_scratch` hears where the scratch database is, before
/// anything runs there.
pub async fn run(
    files: &[Migration],
    targets: &BTreeSet<i64>,
    server: &ScratchServer,
    real: &RunnerSettings,
    max_rows: i64,
    shutdown: &Shutdown,
    on_scratch: &mut dyn FnMut(&str),
) -> Result<Trace, TraceError> {
    let last = targets.iter().max().copied().unwrap_or(i64::MIN);
    // A file that does not parse is bad input, found before a scratch server is started.
    for migration in files.iter().filter(|m| m.version <= last) {
        migration
            .up
            .analyse()
            .map_err(|e| TraceError::Invalid(e.to_string()))?;
    }
    let runs = files
        .iter()
        .filter(|m| m.version <= last)
        .map(|m| (m.up.path.as_path(), m.up.sql.as_str()));
    let scratch = Scratch::create(real, "trace", server, runs).await?;
    let place = scratch.place.clone();
    on_scratch(&place);
    let observed = tokio::select! {
        observed = observe_all(files, targets, &scratch.settings.connect) => Some(observed),
        () = shutdown.requested() => None,
    };
    if let Err(problem) = scratch.drop().await {
        tracing::warn!("{problem}");
    }
    let (rates, observed) = observed.ok_or(TraceError::Interrupted)??;
    let real = &real.connect;
    let relations: Vec<String> = observed
        .iter()
        .flat_map(|(_, statements)| statements)
        .flat_map(|o| {
            o.locks
                .iter()
                .map(|l| l.relation.clone())
                .chain(o.work.iter().map(|w| w.relation().to_owned()))
        })
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let mut conn = db::connect(real).await?;
    let sizes = sizes::real_sizes(&mut conn, &relations)
        .await
        .map_err(query(
            "reading table sizes from the real database's catalog",
        ))?;
    let _ = conn.close().await;
    let migrations = observed
        .into_iter()
        .map(|(migration, statements)| {
            let approved = migration
                .up
                .directives
                .approvals
                .iter()
                .any(|a| a.rule == RULE);
            Traced {
                id: migration.id(),
                file: migration.up.path.display().to_string(),
                runs: migration.up.mode().describe(),
                statements: judge(statements, &sizes, &rates, max_rows, approved),
            }
        })
        .collect();
    Ok(Trace {
        migrations,
        max_rows,
        rates,
        scratch: place,
    })
}

type ObservedMigration<'m> = (&'m Migration, Vec<Observed>);

async fn observe_all<'m>(
    files: &'m [Migration],
    targets: &BTreeSet<i64>,
    scratch: &ConnectSettings,
) -> Result<(Rates, Vec<ObservedMigration<'m>>), TraceError> {
    let last = targets.iter().max().copied().unwrap_or(i64::MIN);
    let mut session = Session::open(scratch).await?;
    let rates = sizes::measure(&mut session.conn).await.map_err(query(
        "measuring the scratch server's scan and rewrite rates",
    ))?;
    let mut traced = Vec::new();
    for migration in files.iter().filter(|m| m.version <= last) {
        migration.up.analyse().map_err(|e| TraceError::Failed {
            migration: migration.id(),
            line: 1,
            message: e.to_string(),
        })?;
        let watch = targets.contains(&migration.version);
        let statements = session.apply(migration, watch).await?;
        if watch {
            traced.push((migration, statements));
        }
    }
    let _ = session.conn.close().await;
    Ok((rates, traced))
}

/// The scratch session, with what watching needs.
struct Session<'s> {
    conn: PgConnection,
    pid: i32,
    settings: &'s ConnectSettings,
}

/// A relation's storage, to see rewrites and new indexes.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
struct Storage {
    oid: i64,
    name: String,
    relkind: String,
    relfilenode: i64,
    /// For an index, its table.
    table: Option<String>,
}

impl<'s> Session<'s> {
    async fn open(settings: &'s ConnectSettings) -> Result<Self, TraceError> {
        let mut conn = db::connect(settings).await?;
        // A migration that hangs on the scratch server must not hang the trace.
        sqlx::raw_sql("SET statement_timeout = '10min'")
            .execute(&mut conn)
            .await
            .map_err(query("configuring the scratch session"))?;
        let pid = sqlx::query_scalar("SELECT pg_backend_pid()")
            .fetch_one(&mut conn)
            .await
            .map_err(query("configuring the scratch session"))?;
        Ok(Self {
            conn,
            pid,
            settings,
        })
    }

    /// Applies `migration` as sluice would; with `watch`, observes each statement.
    async fn apply(
        &mut self,
        migration: &Migration,
        watch: bool,
    ) -> Result<Vec<Observed>, TraceError> {
        let script = &migration.up;
        let fail = |line: usize, error: &sqlx::Error| TraceError::Failed {
            migration: migration.id(),
            line,
            message: db::explain(error),
        };
        // The plan `up` runs: the trace replays its transaction and statements on the
        // scratch server; the session reset, guards and history are the runner's own.
        let plan = steps::plan(script, Direction::Up, 0, SCRATCH_TIMEOUTS).map_err(|e| {
            TraceError::Failed {
                migration: migration.id(),
                line: 1,
                message: e.to_string(),
            }
        })?;
        let atomic = script.mode().is_atomic();
        let mut observed = Vec::new();
        let (mut in_block, mut held) = (false, BTreeSet::new());
        for step in plan {
            let statement = match step {
                Step::Begin(_) => {
                    self.exec("BEGIN").await.map_err(|e| fail(1, &e))?;
                    continue;
                }
                Step::Commit => {
                    self.exec("COMMIT").await.map_err(|e| fail(1, &e))?;
                    continue;
                }
                Step::Run { statement, .. } => statement,
                _ => continue,
            };
            let seen = match statement.control {
                _ if atomic => {
                    self.in_transaction(statement, watch, &mut held, Held::Transaction)
                        .await
                }
                Control::Begin | Control::Commit | Control::Other => {
                    in_block = statement.control == Control::Begin;
                    held.clear();
                    self.exec(&statement.sql).await.map(|()| None)
                }
                _ if in_block => {
                    self.in_transaction(statement, watch, &mut held, Held::Transaction)
                        .await
                }
                _ if statement.outside_only && watch => self.watched(statement).await.map(Some),
                _ if statement.outside_only => self.exec(&statement.sql).await.map(|()| None),
                _ => self.alone(statement, watch).await,
            }
            .map_err(|e| fail(statement.line, &e))?;
            observed.extend(seen);
        }
        if script.mode() == RunMode::OwnTransactions && in_block {
            self.exec("COMMIT").await.map_err(|e| fail(1, &e))?;
        }
        Ok(observed)
    }

    /// A statement of a file without a transaction, in a transaction of its own so that its
    /// locks can be read before they go: held until the statement ends.
    async fn alone(
        &mut self,
        statement: &Statement,
        watch: bool,
    ) -> Result<Option<Observed>, sqlx::Error> {
        self.exec("BEGIN").await?;
        let seen = self
            .in_transaction(statement, watch, &mut BTreeSet::new(), Held::Statement)
            .await;
        if seen.is_err() {
            self.exec("ROLLBACK").await?;
            return seen;
        }
        self.exec("COMMIT").await?;
        seen
    }

    async fn exec(&mut self, sql: &str) -> Result<(), sqlx::Error> {
        sqlx::raw_sql(AssertSqlSafe(sql.to_owned()))
            .execute(&mut self.conn)
            .await
            .map(drop)
    }

    /// Runs a statement inside the open transaction; with `watch`, returns the locks it added
    /// to `held` and what it rewrote or built.
    async fn in_transaction(
        &mut self,
        statement: &Statement,
        watch: bool,
        held: &mut BTreeSet<(String, String)>,
        until: Held,
    ) -> Result<Option<Observed>, sqlx::Error> {
        if !watch {
            self.exec(&statement.sql).await?;
            return Ok(None);
        }
        let before = storage(&mut self.conn).await?;
        let proven = not_null_proven(&mut self.conn, &statement.sql).await?;
        self.exec(&statement.sql).await?;
        let after = storage(&mut self.conn).await?;
        let now: BTreeSet<(String, String)> = locks_of(&mut self.conn, self.pid).await?;
        let new: Vec<(String, String)> = now.difference(held).cloned().collect();
        held.extend(new.iter().cloned());
        let mut seen = observed(statement, &new, &before, &after, until, false);
        if proven {
            seen.work.retain(|w| !matches!(w, Work::Scan(_)));
        }
        Ok(Some(seen))
    }

    /// Runs a statement that cannot be in a transaction, watched from a second session while
    /// a third holds an older snapshot for a moment.
    async fn watched(&mut self, statement: &Statement) -> Result<Observed, sqlx::Error> {
        let mut watcher = db::connect(self.settings)
            .await
            .map_err(|e| sqlx::Error::Protocol(e.to_string()))?;
        let mut holder = db::connect(self.settings)
            .await
            .map_err(|e| sqlx::Error::Protocol(e.to_string()))?;
        sqlx::raw_sql("BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT 1")
            .execute(&mut holder)
            .await?;
        let before = storage(&mut watcher).await?;
        let done = AtomicBool::new(false);
        let pid = self.pid;
        let sql = statement.sql.clone();
        let conn = &mut self.conn;
        let run = async {
            let result = sqlx::raw_sql(AssertSqlSafe(sql)).execute(conn).await;
            done.store(true, Ordering::SeqCst);
            result
        };
        let watch = async {
            let mut seen = BTreeSet::new();
            while !done.load(Ordering::SeqCst) {
                if let Ok(locks) = locks_of(&mut watcher, pid).await {
                    seen.extend(locks);
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            seen
        };
        let hold = async {
            tokio::time::sleep(Duration::from_millis(300)).await;
            sqlx::raw_sql("COMMIT").execute(&mut holder).await
        };
        let (result, seen, held) = tokio::join!(run, watch, hold);
        held?;
        result?;
        let after = storage(&mut watcher).await?;
        let _ = watcher.close().await;
        let _ = holder.close().await;
        let seen: Vec<(String, String)> = seen.into_iter().collect();
        Ok(observed(
            statement,
            &seen,
            &before,
            &after,
            Held::Statement,
            true,
        ))
    }
}

/// The relation locks `pid` holds on tables, materialized views and sequences outside the
/// system schemas, as (`schema.table`, mode).
async fn locks_of(
    conn: &mut PgConnection,
    pid: i32,
) -> Result<BTreeSet<(String, String)>, sqlx::Error> {
    let rows: Vec<(String, String)> = sqlx::query_as(
        "SELECT n.nspname || '.' || c.relname, l.mode
         FROM pg_locks l JOIN pg_class c ON c.oid = l.relation
         JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE l.pid = $1 AND l.locktype = 'relation' AND l.granted
           AND c.relkind IN ('r', 'p', 'm')
           AND n.nspname NOT IN ('pg_catalog', 'information_schema')
           AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp%'",
    )
    .bind(pid)
    .fetch_all(conn)
    .await?;
    Ok(rows.into_iter().collect())
}

/// Tables and indexes outside the system schemas, with their storage.
async fn storage(conn: &mut PgConnection) -> Result<BTreeMap<i64, Storage>, sqlx::Error> {
    let rows: Vec<Storage> = sqlx::query_as(
        "SELECT c.oid::int8 AS oid, n.nspname || '.' || c.relname AS name, c.relkind::text AS relkind,
                c.relfilenode::int8 AS relfilenode,
                (SELECT tn.nspname || '.' || t.relname FROM pg_index i
                   JOIN pg_class t ON t.oid = i.indrelid JOIN pg_namespace tn ON tn.oid = t.relnamespace
                  WHERE i.indexrelid = c.oid) AS table
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE c.relkind IN ('r', 'p', 'm', 'i')
           AND n.nspname NOT IN ('pg_catalog', 'information_schema')
           AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp%'",
    )
    .fetch_all(conn)
    .await?;
    Ok(rows.into_iter().map(|s| (s.oid, s)).collect())
}

fn observed(
    statement: &Statement,
    locks: &[(String, String)],
    before: &BTreeMap<i64, Storage>,
    after: &BTreeMap<i64, Storage>,
    held: Held,
    watched: bool,
) -> Observed {
    let mut work = Vec::new();
    for (oid, now) in after {
        match (before.get(oid), now.relkind.as_str()) {
            (Some(was), "r" | "p" | "m") if was.relfilenode != now.relfilenode => {
                work.push(Work::Rewrite(now.name.clone()));
            }
            (None, "i") => {
                if let Some(table) = &now.table
                    && before.values().any(|s| &s.name == table)
                {
                    work.push(Work::IndexBuild(table.clone()));
                }
            }
            _ => {}
        }
    }
    if work.is_empty()
        && let Some(table) = scanned(statement, locks)
    {
        work.push(Work::Scan(table));
    }
    Observed {
        line: statement.line,
        sql: statement.sql.clone(),
        locks: strongest(locks)
            .into_iter()
            .map(|(relation, mode)| Lock {
                relation: relation.clone(),
                mode: mode.clone(),
                blocks: Blocks::of(mode).0,
                held,
            })
            .collect(),
        work,
        watched,
    }
}

/// Whether `sql` sets a column NOT NULL that a validated `CHECK (column IS NOT NULL)` already
/// proves, so that PostgreSQL (12+) skips the scan, as sluice's contract migrations arrange.
async fn not_null_proven(conn: &mut PgConnection, sql: &str) -> Result<bool, sqlx::Error> {
    let (Some(table), Some(column)) = (altered_table(sql), not_null_column(sql)) else {
        return Ok(false);
    };
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT FROM pg_constraint WHERE conrelid = to_regclass($1)
                          AND contype = 'c' AND convalidated
                          AND pg_get_constraintdef(oid) = format('CHECK ((%s IS NOT NULL))', quote_ident($2)))",
    )
    .bind(table)
    .bind(column)
    .fetch_one(conn)
    .await
}

/// The column of `ALTER [COLUMN] <column> SET NOT NULL`, as the catalog names it.
fn not_null_column(sql: &str) -> Option<String> {
    let words: Vec<&str> = sql
        .split_whitespace()
        .map(|w| w.trim_end_matches([';', ',']))
        .collect();
    let at = words.windows(3).position(|w| {
        w[0].eq_ignore_ascii_case("SET")
            && w[1].eq_ignore_ascii_case("NOT")
            && w[2].eq_ignore_ascii_case("NULL")
    })?;
    let column = words.get(at.checked_sub(1)?)?;
    sluice_common::ident::Ident::parse(column)
        .ok()
        .map(|c| c.as_str().to_owned())
}

/// The table of an `ALTER TABLE [IF EXISTS] [ONLY] <table> ...`, as `schema.table`.
fn altered_table(sql: &str) -> Option<String> {
    let mut words = sql.split_whitespace();
    let (alter, table) = (words.next()?, words.next()?);
    if !(alter.eq_ignore_ascii_case("ALTER") && table.eq_ignore_ascii_case("TABLE")) {
        return None;
    }
    let name =
        words.find(|w| !matches!(w.to_ascii_uppercase().as_str(), "ONLY" | "IF" | "EXISTS"))?;
    let public = sluice_common::ident::Ident::new("public").ok()?;
    let name =
        sluice_common::ident::QualifiedName::parse(name.trim_end_matches(';'), &public).ok()?;
    Some(format!("{}.{}", name.schema.as_str(), name.name.as_str()))
}

/// The strongest mode taken on each relation (what the weaker ones block, it blocks too).
fn strongest(locks: &[(String, String)]) -> Vec<(&String, &String)> {
    let mut by_relation: BTreeMap<&String, &String> = BTreeMap::new();
    for (relation, mode) in locks {
        let stronger = by_relation
            .get(relation)
            .is_none_or(|held| Blocks::strength(mode) > Blocks::strength(held));
        if stronger {
            by_relation.insert(relation, mode);
        }
    }
    by_relation.into_iter().collect()
}

/// The table an `ALTER TABLE` reads in full without rewriting it: a constraint validated (now,
/// or as it is added without NOT VALID), a column set NOT NULL. Named by the statement, or
/// else the table it locks most strongly.
fn scanned(statement: &Statement, locks: &[(String, String)]) -> Option<String> {
    let words: Vec<String> = statement
        .sql
        .split_whitespace()
        .map(|w| w.trim_end_matches([';', ',']).to_ascii_uppercase())
        .collect();
    let text = format!(" {} ", words.join(" "));
    if !text.starts_with(" ALTER TABLE ") {
        return None;
    }
    let validates = text.contains(" VALIDATE CONSTRAINT ");
    let adds_checked = text.contains(" ADD ")
        && [" CHECK ", " CHECK(", " FOREIGN KEY", " REFERENCES "]
            .iter()
            .any(|k| text.contains(k))
        && !text.contains(" NOT VALID ");
    let not_null = text.contains(" SET NOT NULL ");
    if !(validates || adds_checked || not_null) {
        return None;
    }
    let named = altered_table(&statement.sql);
    named.or_else(|| {
        locks
            .iter()
            .max_by_key(|(_, mode)| Blocks::of(mode).0)
            .map(|(relation, _)| relation.clone())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::script::Script;

    fn statement(sql: &str) -> Statement {
        let script = Script::parse(std::path::Path::new("m.sql"), sql).unwrap();
        script.analyse().unwrap();
        script.statements().unwrap()[0].clone()
    }

    #[test]
    fn validations_and_not_null_read_the_table() {
        let locks = [(
            "public.big".to_owned(),
            "ShareUpdateExclusiveLock".to_owned(),
        )];
        for sql in [
            "ALTER TABLE big VALIDATE CONSTRAINT c;",
            "ALTER TABLE ONLY public.big ADD CONSTRAINT c CHECK (a > 0);",
            "ALTER TABLE big ALTER COLUMN a SET NOT NULL;",
            "alter table big add foreign key (p) references parent (id);",
        ] {
            assert_eq!(
                scanned(&statement(sql), &locks).as_deref(),
                Some("public.big"),
                "{sql}"
            );
        }
        assert_eq!(
            not_null_column("ALTER TABLE t ALTER COLUMN \"Email\" SET NOT NULL;").as_deref(),
            Some("Email")
        );
        assert_eq!(
            not_null_column("alter table t alter email set not null").as_deref(),
            Some("email")
        );
        assert_eq!(
            altered_table("ALTER TABLE IF EXISTS ONLY app.t ADD c int").as_deref(),
            Some("app.t")
        );
        assert_eq!(altered_table("CREATE TABLE t (a int)"), None);
        for sql in [
            "ALTER TABLE big ADD CONSTRAINT c CHECK (a > 0) NOT VALID;",
            "ALTER TABLE big ADD COLUMN c int;",
            "CREATE TABLE t (a int CHECK (a > 0));",
        ] {
            assert_eq!(scanned(&statement(sql), &locks), None, "{sql}");
        }
    }
}
