//! Running one migration, or its revert, under the guards: each transactional migration in
//! one transaction together with its history row; a no-transaction migration statement by
//! statement with its progress recorded after each; transient failures retried with backoff
//! and an escalating `lock_timeout`.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use futures_util::TryStreamExt;
use sluice_common::db::{self, ConnectSettings};
use sluice_common::lock::{AdvisoryLock, LockError};
use sluice_common::retry::{Transient, classify, sqlstate_of};
use sluice_common::shutdown::Shutdown;
use sqlx::{AssertSqlSafe, Connection, PgConnection};

use crate::event::{Direction, Event};
use crate::guard::{Blocker, Guards, Timeouts, blockers_of};
use crate::history::{Action, History, Record, Took, Who};
use crate::index::drop_invalid_index;
use crate::repeatable::Repeatable;
use crate::script::{ConcurrentIndex, Script, ScriptError, Statement, prefix_checksum};
use crate::source::Migration;
use crate::steps::{self, Step};

/// Everything a migration runs with.
#[derive(Debug)]
pub struct Session<'a> {
    /// The migration connection.
    pub conn: PgConnection,
    /// Its backend pid, to ask who blocks it.
    pub pid: i32,
    /// The runner lock, whose connection also watches `pg_blocking_pids` and records the
    /// progress of no-transaction files. After any lost connection the lock is checked, and
    /// taken again on a new connection, before another statement runs.
    pub lock: &'a mut AdvisoryLock,
    pub connect: &'a ConnectSettings,
    pub history: &'a History,
    pub guards: Guards,
    pub who: &'a Who,
    pub shutdown: &'a Shutdown,
}

/// Why a migration did not finish.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("{0}")]
    Failed(Box<Failure>),
    #[error("interrupted during migration {id}: {state}; run the same command again to continue")]
    Interrupted { id: String, state: String },
    #[error(transparent)]
    Lock(Box<LockError>),
    #[error("cannot reconnect after losing the connection during migration {id}: {error}")]
    Reconnect { id: String, error: Box<db::DbError> },
}

/// A migration statement failed for good.
#[derive(Debug)]
pub struct Failure {
    pub id: String,
    pub direction: Direction,
    pub path: PathBuf,
    pub line: Option<usize>,
    pub statement: Option<String>,
    pub sqlstate: Option<String>,
    pub message: String,
    pub attempts: u32,
    /// What state the migration was left in.
    pub outcome: String,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let verb = match self.direction {
            Direction::Up => "migration",
            Direction::Down => "revert of migration",
            Direction::Repeat => "repeatable migration",
        };
        write!(f, "{verb} {} failed in {}", self.id, self.path.display())?;
        if let Some(line) = self.line {
            write!(f, " at line {line}")?;
        }
        if let Some(statement) = &self.statement {
            write!(f, ", statement `{}`", excerpt(statement))?;
        }
        if let Some(code) = &self.sqlstate {
            write!(f, ": SQLSTATE {code}")?;
        }
        write!(f, ": {}", self.message)?;
        if self.attempts > 1 {
            write!(f, " (after {} attempts)", self.attempts)?;
        }
        write!(f, "; {}", self.outcome)
    }
}

fn excerpt(sql: &str) -> String {
    let one_line = sql.split_whitespace().collect::<Vec<_>>().join(" ");
    match one_line.char_indices().nth(120) {
        Some((cut, _)) => format!("{}…", &one_line[..cut]),
        None => one_line,
    }
}

/// A failed attempt: the error, the statement it came from, and who blocked us.
struct AttemptError {
    error: sqlx::Error,
    statement: Option<(usize, String)>,
    /// The line of the file the server's error position points at, when it gave one.
    line: Option<usize>,
    blockers: Vec<Blocker>,
    /// Nothing of the file had run: the failure came while the session was made clean.
    before_the_file: bool,
}

/// How a migration's attempts ended, for the failure that reports it.
struct Ended {
    direction: Direction,
    attempt: u32,
    outcome: String,
    started: Instant,
}

impl AttemptError {
    /// What a watched statement's failure becomes: the error, statement `index` (`sql` as
    /// messages show it), and who blocked it.
    fn at(index: usize, sql: String) -> impl FnOnce((sqlx::Error, Vec<Blocker>)) -> Self {
        move |(error, blockers)| Self {
            error,
            statement: Some((index, sql)),
            line: None,
            blockers,
            before_the_file: false,
        }
    }
}

impl From<sqlx::Error> for AttemptError {
    fn from(error: sqlx::Error) -> Self {
        Self {
            error,
            statement: None,
            line: None,
            blockers: Vec::new(),
            before_the_file: false,
        }
    }
}

/// What to do after an attempt failed.
enum Next {
    Retry,
    Fail(AttemptError),
}

impl Session<'_> {
    /// Applies `migration`, skipping the first `resume_at` statements of a no-transaction
    /// migration that already ran.
    pub async fn apply(
        &mut self,
        migration: &Migration,
        resume_at: usize,
        events: &mut dyn FnMut(Event),
    ) -> Result<Duration, ApplyError> {
        self.run_script(migration, Direction::Up, resume_at, events)
            .await
    }

    /// Reverts `migration` with its down script.
    pub async fn revert(
        &mut self,
        migration: &Migration,
        events: &mut dyn FnMut(Event),
    ) -> Result<Duration, ApplyError> {
        self.run_script(migration, Direction::Down, 0, events).await
    }

    /// Applies a repeatable migration (again), recording it by description.
    pub async fn apply_repeatable(
        &mut self,
        repeatable: &Repeatable,
        events: &mut dyn FnMut(Event),
    ) -> Result<Duration, ApplyError> {
        self.run_script(repeatable.as_migration(), Direction::Repeat, 0, events)
            .await
    }

    /// Runs the up or down script of `migration` from a clean session, in its transaction
    /// mode, reporting its start and end.
    async fn run_script(
        &mut self,
        migration: &Migration,
        direction: Direction,
        resume_at: usize,
        events: &mut dyn FnMut(Event),
    ) -> Result<Duration, ApplyError> {
        let script = match direction {
            Direction::Up | Direction::Repeat => &migration.up,
            Direction::Down => migration
                .down
                .as_ref()
                .expect("the plan only reverts reversible migrations"),
        };
        script
            .analyse()
            .map_err(|error| unplannable(migration, script, &error))?;
        emit_started(events, migration, direction, script, resume_at);
        let duration = if !script.mode().is_atomic() {
            self.reset_session(migration).await?;
            self.no_transaction(migration, script, direction, resume_at, events)
                .await?
        } else {
            self.transactional(migration, script, direction, events)
                .await?
        };
        events(Event::Finished {
            id: migration.id(),
            direction,
            duration,
        });
        Ok(duration)
    }

    async fn transactional(
        &mut self,
        migration: &Migration,
        script: &Script,
        direction: Direction,
        events: &mut dyn FnMut(Event),
    ) -> Result<Duration, ApplyError> {
        let started = Instant::now();
        let (mut attempt, mut reconnected) = (0, false);
        loop {
            let timeouts = self.guards.timeouts(&script.directives, attempt);
            let result = self
                .attempt_transaction(migration, script, direction, timeouts, started)
                .await;
            let Err(failed) = result else {
                return Ok(started.elapsed());
            };
            // The server restarted between two migrations: a new session (and the lock made
            // sure of) before this one starts, without counting it as an attempt.
            if failed.before_the_file
                && classify(&failed.error) == Some(Transient::ConnectionLost)
                && !std::mem::replace(&mut reconnected, true)
            {
                self.reconnect(migration).await?;
                continue;
            }
            self.end_open_block().await;
            match self
                .after_failure(migration, script, attempt, failed, events)
                .await?
            {
                Next::Retry => attempt += 1,
                Next::Fail(failed) => {
                    let outcome = if classify(&failed.error).is_some() {
                        "the migration was rolled back: nothing of it is applied; it kept \
                         failing on what passes by itself (a lock held elsewhere, a deadlock), \
                         so run the same command again when that is gone"
                    } else {
                        "the migration was rolled back: nothing of it is applied; fix the file \
                         and run the same command again"
                    }
                    .to_owned();
                    let ended = Ended {
                        direction,
                        attempt,
                        outcome,
                        started,
                    };
                    return Err(self.fail(migration, script, failed, ended).await);
                }
            }
        }
    }

    /// One attempt at a transactional file: its steps (the clean session, `BEGIN` and the
    /// guards, every statement, the history row, `COMMIT`) in one message, one round trip.
    async fn attempt_transaction(
        &mut self,
        migration: &Migration,
        script: &Script,
        direction: Direction,
        timeouts: Timeouts,
        started: Instant,
    ) -> Result<(), AttemptError> {
        // The message's DEALLOCATE ALL drops what sqlx prepared on this connection (an
        // INVALID index lookup of an earlier file): forget those first, or a later use would
        // name one that is gone.
        if self.conn.cached_statements_size() > 0 {
            self.conn.clear_cached_statements().await?;
        }
        let plan = steps::of(script, direction, 0, timeouts);
        let record = record(migration, script, self.who, 0);
        let took = Took::ThisMessage {
            before_ms: elapsed_ms(started),
        };
        let message = Message::of(&plan, |step| match step {
            Step::Record(direction) => self.history.record_sql(*direction, &record, took),
            other => other.fixed_sql().unwrap_or_default(),
        });
        let mut completed = 0;
        let work = async {
            let mut results =
                sqlx::raw_sql(AssertSqlSafe(message.sql.clone())).execute_many(&mut self.conn);
            while results.try_next().await?.is_some() {
                completed += 1;
            }
            Ok(())
        };
        let outcome = watched(
            self.lock.connection(),
            self.pid,
            timeouts.lock_timeout,
            self.shutdown,
            work,
        )
        .await;
        outcome.map_err(|(error, blockers)| message.failure(&plan, completed, error, blockers))
    }

    /// Runs a no-transaction migration statement by statement. Progress is recorded (on the
    /// lock's connection, whose session the file cannot change) whenever the session is
    /// outside a transaction block: a file that opens its own `BEGIN ... COMMIT` has the block
    /// recorded when it commits, and a failure inside it rolls the block back and resumes at
    /// its start, so the history never claims statements the database rolled back.
    async fn no_transaction(
        &mut self,
        migration: &Migration,
        script: &Script,
        direction: Direction,
        resume_at: usize,
        events: &mut dyn FnMut(Event),
    ) -> Result<Duration, ApplyError> {
        let started = Instant::now();
        let statements = script.statements().unwrap_or_default();
        let total = statements.len();
        let tracked = direction == Direction::Up;
        if tracked {
            let record = record(migration, script, self.who, 0);
            let total = i32::try_from(total).unwrap_or(i32::MAX);
            let history = self.history;
            self.on_lock_connection(migration, async |conn| {
                history.start_partial(conn, record, total).await
            })
            .await?;
        }
        let (mut index, mut committed, mut attempt) = (resume_at, resume_at, 0);
        while index < total {
            if index == committed && self.shutdown.is_requested() {
                return Err(ApplyError::Interrupted {
                    id: migration.id(),
                    state: format!("{committed} of {total} statements ran and are recorded"),
                });
            }
            let statement_started = Instant::now();
            let timeouts = self.guards.timeouts(&script.directives, attempt);
            let result = self
                .attempt_statement(
                    migration,
                    &steps::statement_steps(statements, index, direction, timeouts),
                    timeouts,
                    events,
                )
                .await;
            if let Err(failed) = result {
                // A failure inside the file's own block rolled the whole block back.
                self.end_aborted_block().await;
                match self
                    .after_failure(migration, script, attempt, failed, events)
                    .await?
                {
                    Next::Retry => {
                        attempt += 1;
                        index = committed;
                        continue;
                    }
                    Next::Fail(failed) => {
                        let outcome = self
                            .partial_outcome(migration, direction, committed, total, &failed)
                            .await;
                        let ended = Ended {
                            direction,
                            attempt,
                            outcome,
                            started,
                        };
                        return Err(self.fail(migration, script, failed, ended).await);
                    }
                }
            }
            index += 1;
            events(Event::StatementDone {
                id: migration.id(),
                number: index,
                total,
                duration: statement_started.elapsed(),
            });
            if self
                .in_block()
                .await
                .map_err(|e| history_failed(migration, self.history, e))?
            {
                continue;
            }
            committed = index;
            attempt = 0;
            if tracked {
                let done = i32::try_from(index).unwrap_or(i32::MAX);
                let done_checksum = prefix_checksum(statements, index);
                let history = self.history;
                self.on_lock_connection(migration, async |conn| {
                    history
                        .advance_partial(conn, migration.version, done, &done_checksum)
                        .await
                })
                .await?;
            }
        }
        if committed < total {
            self.end_open_block().await;
            return Err(unclosed_block(migration, script, committed));
        }
        let record = record(migration, script, self.who, elapsed_ms(started));
        let history = self.history;
        self.on_lock_connection(migration, async |conn| {
            history.record(conn, direction, record).await
        })
        .await?;
        Ok(started.elapsed())
    }

    /// What a failed no-transaction migration leaves: the statements recorded, from what was
    /// committed, and the error stored with its progress.
    async fn partial_outcome(
        &mut self,
        migration: &Migration,
        direction: Direction,
        committed: usize,
        total: usize,
        failed: &AttemptError,
    ) -> String {
        let failing = failed.statement.as_ref().map_or(committed, |(i, _)| *i) + 1;
        let rolled_back = if failing > committed + 1 {
            format!(
                "; statements {} to {} ran in the file's own transaction block, which was \
                 rolled back",
                committed + 1,
                failing - 1
            )
        } else {
            String::new()
        };
        match direction {
            Direction::Up => {
                let _ = self
                    .history
                    .partial_failed(
                        self.lock.connection(),
                        migration.version,
                        &db::explain(&failed.error),
                    )
                    .await;
                let recorded = match committed {
                    0 => format!("none of its {total} statements is recorded as run"),
                    n => format!("statements 1 to {n} ran and are recorded (of {total})"),
                };
                // Out of retries on a lock or a deadlock: nothing to fix in the file.
                let remedy = match classify(&failed.error) {
                    Some(_) => format!(
                        "statement {failing} kept failing on what passes by itself (see the \
                         sessions that blocked it above); run `sluice up` again to resume at \
                         statement {}",
                        committed + 1
                    ),
                    None => format!(
                        "fix statement {failing} and run `sluice up` to resume at statement {}",
                        committed + 1
                    ),
                };
                format!("{recorded}{rolled_back}; {remedy}")
            }
            Direction::Down => format!(
                "{committed} of {total} statements of the down file ran{rolled_back}; the \
                 migration is still recorded as applied"
            ),
            Direction::Repeat => format!(
                "{committed} of {total} statements ran{rolled_back}; it is not recorded as \
                 applied, so the next `sluice up` runs it again from its first statement"
            ),
        }
    }

    /// Every migration starts from a clean session: what an earlier file set with `SET`
    /// (search_path, role), temporary tables, cursors and listens end here. The connection's
    /// own settings come back with it.
    async fn reset_session(&mut self, migration: &Migration) -> Result<(), ApplyError> {
        self.end_open_block().await;
        let mut reset = self.send_reset().await;
        // The server restarted between two migrations: a new session (and the lock made
        // sure of) before this one starts.
        if matches!(&reset, Err(e) if classify(e) == Some(Transient::ConnectionLost)) {
            self.reconnect(migration).await?;
            reset = self.send_reset().await;
        }
        reset.map_err(|error| {
            bookkeeping_failed(
                migration,
                "resetting the session before it",
                &error,
                "nothing of it ran; run the same command again",
            )
        })
    }

    async fn send_reset(&mut self) -> Result<(), sqlx::Error> {
        sqlx::raw_sql(AssertSqlSafe(steps::session_reset_sql()))
            .execute(&mut self.conn)
            .await?;
        // DEALLOCATE ALL also dropped the statements sqlx prepared on this connection (the
        // history row's): forget them, or the next use would name one that is gone.
        if self.conn.cached_statements_size() > 0 {
            self.conn.clear_cached_statements().await?;
        }
        Ok(())
    }

    /// Whether the migration's session is inside a transaction block the file opened: in one,
    /// the transaction began at an earlier statement than this one.
    /// Sent as a simple query: in the extended protocol the two timestamps differ anyway.
    async fn in_block(&mut self) -> Result<bool, sqlx::Error> {
        use sqlx::Row;
        sqlx::raw_sql("SELECT transaction_timestamp() < statement_timestamp()")
            .fetch_one(&mut self.conn)
            .await?
            .try_get(0)
    }

    /// Rolls back the file's own transaction block if a failure left it aborted.
    async fn end_aborted_block(&mut self) {
        db::end_failed_transaction(&mut self.conn).await;
    }

    /// Rolls back a transaction block the file opened and never closed.
    async fn end_open_block(&mut self) {
        if self.in_block().await.unwrap_or(true) {
            let _ = sqlx::raw_sql("ROLLBACK").execute(&mut self.conn).await;
        }
    }

    /// Statement `index` of a file outside a transaction, with its steps before it (the
    /// guards, an INVALID index's drop); its progress is the caller's, once it knows whether
    /// the file's own block is still open.
    async fn attempt_statement(
        &mut self,
        migration: &Migration,
        steps: &[Step<'_>],
        timeouts: Timeouts,
        events: &mut dyn FnMut(Event),
    ) -> Result<(), AttemptError> {
        for step in steps {
            match step {
                Step::DropInvalidIndex(spec) => {
                    self.drop_invalid_index(migration, steps, spec, timeouts, events)
                        .await?;
                }
                Step::Run { index, statement } => {
                    let work =
                        sqlx::raw_sql(AssertSqlSafe(statement.sql.clone())).execute(&mut self.conn);
                    watched(
                        self.lock.connection(),
                        self.pid,
                        timeouts.lock_timeout,
                        self.shutdown,
                        work,
                    )
                    .await
                    .map_err(AttemptError::at(*index, statement.sql.clone()))?;
                }
                Step::Progress { .. } => {}
                other => {
                    let sql = other.fixed_sql().unwrap_or_default();
                    sqlx::raw_sql(AssertSqlSafe(sql))
                        .execute(&mut self.conn)
                        .await?;
                }
            }
        }
        Ok(())
    }

    /// Drops the INVALID index an earlier failed build of the statement in `steps` left.
    /// Watched like the statement itself: the drop waits for whatever still uses the index
    /// (an orphaned build among them), and a lock timeout must name it.
    async fn drop_invalid_index(
        &mut self,
        migration: &Migration,
        steps: &[Step<'_>],
        spec: &ConcurrentIndex,
        timeouts: Timeouts,
        events: &mut dyn FnMut(Event),
    ) -> Result<(), AttemptError> {
        let Some((index, statement)) = steps.iter().find_map(|step| match step {
            Step::Run { index, statement } => Some((*index, *statement)),
            _ => None,
        }) else {
            return Ok(());
        };
        let drop = drop_invalid_index(&mut self.conn, spec);
        let dropped = watched(
            self.lock.connection(),
            self.pid,
            timeouts.lock_timeout,
            self.shutdown,
            drop,
        )
        .await
        .map_err(AttemptError::at(
            index,
            format!(
                "DROP INDEX CONCURRENTLY of the INVALID index {} before {}",
                spec.name, statement.sql
            ),
        ))?;
        if let Some(dropped) = dropped {
            tracing::warn!(
                migration = %migration.id(),
                index = %dropped,
                "dropped INVALID index {dropped}, left by an earlier failed CREATE INDEX CONCURRENTLY, before building it again"
            );
            events(Event::InvalidIndexDropped {
                id: migration.id(),
                index: dropped,
            });
        }
        Ok(())
    }

    /// Decides whether to retry a failed attempt, and waits the backoff if so.
    async fn after_failure(
        &mut self,
        migration: &Migration,
        script: &Script,
        attempt: u32,
        failed: AttemptError,
        events: &mut dyn FnMut(Event),
    ) -> Result<Next, ApplyError> {
        // Stopped on request: the statement in flight was cancelled and rolled back.
        if self.shutdown.is_requested() {
            let detail = format!(
                "interrupted: its statement in flight was cancelled and rolled back ({})",
                db::explain(&failed.error)
            );
            let record = record(migration, script, self.who, 0);
            let _ = self
                .history
                .record_interrupted(self.lock.connection(), record, &detail)
                .await;
            return Err(ApplyError::Interrupted {
                id: migration.id(),
                state: "its statement in flight was cancelled and rolled back".to_owned(),
            });
        }
        // A statement that ran into its own statement_timeout would only run as long again:
        // it fails now, with advice, rather than repeat for hours.
        let transient = classify(&failed.error).filter(|k| *k != Transient::StatementTimeout);
        let Some(kind) = transient.filter(|_| attempt < self.guards.max_retries) else {
            return Ok(Next::Fail(failed));
        };
        let delay = self.guards.backoff.delay(attempt);
        let next_lock_timeout = self
            .guards
            .timeouts(&script.directives, attempt + 1)
            .lock_timeout;
        let blockers: Vec<String> = failed.blockers.iter().map(ToString::to_string).collect();
        tracing::warn!(
            migration = %migration.id(),
            attempt = attempt + 1,
            max_retries = self.guards.max_retries,
            retry_in_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
            next_lock_timeout_ms = u64::try_from(next_lock_timeout.as_millis()).unwrap_or(u64::MAX),
            blocked_by = ?blockers,
            "{}: {}; rolled back, retrying",
            kind.as_str(),
            db::explain(&failed.error)
        );
        events(Event::Retrying {
            id: migration.id(),
            attempt: attempt + 1,
            max_retries: self.guards.max_retries,
            delay,
            next_lock_timeout,
            reason: db::explain(&failed.error),
            blockers: failed.blockers,
        });
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = self.shutdown.requested() => {
                return Err(ApplyError::Interrupted {
                    id: migration.id(),
                    state: "it was rolled back while waiting to retry".to_owned(),
                });
            }
        }
        if kind == Transient::ConnectionLost {
            self.reconnect(migration).await?;
        }
        Ok(Next::Retry)
    }

    async fn fail(
        &mut self,
        migration: &Migration,
        script: &Script,
        failed: AttemptError,
        ended: Ended,
    ) -> ApplyError {
        let Ended {
            direction,
            attempt,
            outcome,
            started,
        } = ended;
        let (line, statement) = locate(script, &failed);
        let mut message = failed.error.as_database_error().map_or_else(
            || failed.error.to_string(),
            |e| {
                // The server's words quote data (a unique violation names the duplicate key):
                // one line, control characters escaped.
                let detail = e
                    .try_downcast_ref::<sqlx::postgres::PgDatabaseError>()
                    .and_then(|pg| pg.detail())
                    .map(|d| format!(" ({})", sluice_common::display::one_line(d)))
                    .unwrap_or_default();
                format!("{}{detail}", sluice_common::display::one_line(e.message()))
            },
        );
        if classify(&failed.error) == Some(Transient::StatementTimeout) {
            let limit = self
                .guards
                .timeouts(&script.directives, attempt)
                .statement_timeout;
            message.push_str(&format!(
                " (it ran longer than its statement_timeout of {}, so it was not retried: raise \
                 the limit for this file with `-- sluice:statement-timeout <duration>` or \
                 --statement-timeout, or make the statement cheaper)",
                humantime::format_duration(limit)
            ));
        }
        let failure = Failure {
            id: migration.id(),
            direction,
            path: script.path.clone(),
            line,
            statement,
            sqlstate: sqlstate_of(&failed.error),
            message,
            attempts: attempt + 1,
            outcome,
        };
        let record = record(migration, script, self.who, elapsed_ms(started));
        let action = match direction {
            Direction::Up | Direction::Repeat => Action::Apply,
            Direction::Down => Action::Revert,
        };
        let detail = failure.to_string();
        if let Err(error) = self
            .history
            // On the lock's connection: the migration's session may be in an aborted
            // transaction, or under a role the file set, and the audit row of a failure is
            // never lost.
            .record_failure(self.lock.connection(), record, action, &detail)
            .await
        {
            tracing::warn!(
                "could not write the failure of {} to the audit table: {}",
                migration.id(),
                db::explain(&error)
            );
        }
        ApplyError::Failed(Box::new(failure))
    }

    /// A new migration connection after the old one was lost, and the lock made sure of
    /// before anything else runs.
    async fn reconnect(&mut self, migration: &Migration) -> Result<(), ApplyError> {
        let (conn, pid) = open_migration_connection(self.connect)
            .await
            .map_err(|error| ApplyError::Reconnect {
                id: migration.id(),
                error: Box::new(error),
            })?;
        self.conn = conn;
        self.pid = pid;
        self.ensure_lock(migration).await
    }

    /// One runner at a time, through restarts: a restart frees every session's advisory
    /// locks, and a second runner may take the lock the moment the server is back. So after
    /// any lost connection the lock is checked and, if it went with its connection, taken
    /// again on a new one; if another session has it, this run stops.
    async fn ensure_lock(&mut self, migration: &Migration) -> Result<(), ApplyError> {
        if self.lock.is_held().await {
            return Ok(());
        }
        let conn =
            db::connect_primary(self.connect)
                .await
                .map_err(|error| ApplyError::Reconnect {
                    id: migration.id(),
                    error: Box::new(error),
                })?;
        self.lock
            .retake(conn)
            .await
            .map_err(|e| ApplyError::Lock(Box::new(e)))?;
        tracing::warn!(
            migration = %migration.id(),
            "the connection holding the migration lock was lost; the lock was taken again on a \
             new connection before going on"
        );
        Ok(())
    }

    /// A history write on the lock's connection. When that connection was lost (a database
    /// restart), the lock is taken again on a new one and the write made once more: the
    /// work it records is done and must not be run again.
    async fn on_lock_connection<T>(
        &mut self,
        migration: &Migration,
        mut write: impl AsyncFnMut(&mut PgConnection) -> Result<T, sqlx::Error>,
    ) -> Result<T, ApplyError> {
        match write(self.lock.connection()).await {
            Err(error) if classify(&error) == Some(Transient::ConnectionLost) => {
                self.ensure_lock(migration).await?;
                write(self.lock.connection())
                    .await
                    .map_err(|e| history_failed(migration, self.history, e))
            }
            other => other.map_err(|e| history_failed(migration, self.history, e)),
        }
    }
}

/// The history record of `migration`, in the transaction mode of the `script` that ran (its
/// up or its down file).
fn record<'r>(
    migration: &'r Migration,
    script: &Script,
    who: &'r Who,
    duration_ms: i64,
) -> Record<'r> {
    Record {
        no_transaction: !script.mode().is_atomic(),
        ..Record::new(migration, who, duration_ms)
    }
}

/// A no-transaction file that opens a transaction block and never commits it: what it did in
/// the block is rolled back, never recorded as applied.
fn unclosed_block(migration: &Migration, script: &Script, committed: usize) -> ApplyError {
    let statements = script.statements().unwrap_or_default();
    let line = statements.get(committed).map(|s| s.line);
    ApplyError::Failed(Box::new(Failure {
        id: migration.id(),
        direction: Direction::Up,
        path: script.path.clone(),
        line,
        statement: statements.get(committed).map(|s| s.sql.clone()),
        sqlstate: None,
        message: "the file opens a transaction block here and never commits it".to_owned(),
        attempts: 1,
        outcome: format!(
            "the block was rolled back; {committed} of {} statements ran and are recorded; add \
             the COMMIT and run `sluice up` again",
            statements.len()
        ),
    }))
}

/// A file that does not parse never starts (validation refuses it before any file runs).
fn unplannable(migration: &Migration, script: &Script, error: &ScriptError) -> ApplyError {
    ApplyError::Failed(Box::new(Failure {
        id: migration.id(),
        direction: Direction::Up,
        path: script.path.clone(),
        line: None,
        statement: None,
        sqlstate: None,
        message: error.to_string(),
        attempts: 0,
        outcome: "nothing of it ran; fix the file and run the same command again".to_owned(),
    }))
}

/// One message of many steps, and where each step's SQL starts in it.
struct Message {
    sql: String,
    starts: Vec<usize>,
}

impl Message {
    /// The SQL of each step of `plan` (as `sql_of` gives it), one after the other. Each ends
    /// on a line of its own, so that a file's last line comment cannot swallow the next.
    fn of(plan: &[Step<'_>], mut sql_of: impl FnMut(&Step<'_>) -> String) -> Self {
        let (mut sql, mut starts) = (String::new(), Vec::with_capacity(plan.len()));
        for step in plan {
            starts.push(sql.len());
            sql.push_str(&sql_of(step));
            sql.push_str("\n;\n");
        }
        Self { sql, starts }
    }

    /// The failure of the message after `completed` of its statements completed: the step the
    /// server's error position points into, else the step whose statement was running.
    fn failure(
        &self,
        plan: &[Step<'_>],
        completed: usize,
        error: sqlx::Error,
        blockers: Vec<Blocker>,
    ) -> AttemptError {
        let at = error_position(&error).and_then(|chars| {
            self.sql
                .char_indices()
                .nth(chars.saturating_sub(1))
                .map(|(byte, _)| byte)
        });
        let by_position = at.and_then(|byte| self.starts.iter().rposition(|&s| s <= byte));
        let by_count = plan
            .iter()
            .scan(0, |seen, step| {
                *seen += step.commands();
                Some(*seen)
            })
            .position(|seen| seen > completed);
        let failing = by_position.or(by_count);
        let mut failed = AttemptError::from(error);
        failed.blockers = blockers;
        match failing.map(|i| (&plan[i], self.starts[i])) {
            Some((Step::Run { index, statement }, start)) => {
                failed.statement = Some((*index, statement.sql.clone()));
                failed.line = at.filter(|&byte| byte >= start).map(|byte| {
                    let within = &self.sql[start..byte];
                    statement.line + within.matches('\n').count()
                });
            }
            Some((Step::Reset, _)) => failed.before_the_file = true,
            _ => {}
        }
        failed
    }
}

/// The character position (1-based) in the query the server's error points at.
fn error_position(error: &sqlx::Error) -> Option<usize> {
    let pg = error
        .as_database_error()?
        .try_downcast_ref::<sqlx::postgres::PgDatabaseError>()?;
    match pg.position()? {
        sqlx::postgres::PgErrorPosition::Original(position) => Some(position),
        sqlx::postgres::PgErrorPosition::Internal { .. } => None,
    }
}

/// A history write outside a migration transaction failed: the migration fails with it.
fn history_failed(migration: &Migration, history: &History, error: sqlx::Error) -> ApplyError {
    bookkeeping_failed(
        migration,
        &format!("recording progress in {}", history.migrations_table()),
        &error,
        "see `sluice status` for what is recorded",
    )
}

/// The runner's own work around a migration (`what`) failed, not one of its statements.
fn bookkeeping_failed(
    migration: &Migration,
    what: &str,
    error: &sqlx::Error,
    outcome: &str,
) -> ApplyError {
    ApplyError::Failed(Box::new(Failure {
        id: migration.id(),
        direction: Direction::Up,
        path: migration.up.path.clone(),
        line: None,
        statement: None,
        sqlstate: sqlstate_of(error),
        message: format!("{what}: {}", db::explain(error)),
        attempts: 1,
        outcome: outcome.to_owned(),
    }))
}

/// Opens the connection migrations run on, and returns it with its backend pid.
pub async fn open_migration_connection(
    settings: &ConnectSettings,
) -> Result<(PgConnection, i32), db::DbError> {
    let mut conn = db::connect_primary(settings).await?;
    // A simple query: a prepared one would be cached, and the first migration's DEALLOCATE
    // ALL would cost a round trip to forget it.
    let pid = sqlx::raw_sql(AssertSqlSafe(format!(
        "SELECT pg_backend_pid() FROM ({}) AS s",
        steps::CONNECTION_CHECK
    )))
    .fetch_one(&mut conn)
    .await
    .and_then(|row| sqlx::Row::try_get(&row, 0))
    .map_err(|e| db::DbError::Connect {
        target: settings.target(),
        reason: db::explain(&e),
    })?;
    Ok((conn, pid))
}

fn emit_started(
    events: &mut dyn FnMut(Event),
    migration: &Migration,
    direction: Direction,
    script: &Script,
    resume_at: usize,
) {
    events(Event::Started {
        id: migration.id(),
        direction,
        no_transaction: !script.mode().is_atomic(),
        statements: script.statements().map_or(1, <[Statement]>::len),
        resume_at,
    });
}

/// The line and text of the failing statement.
fn locate(script: &Script, failed: &AttemptError) -> (Option<usize>, Option<String>) {
    let Some((index, sql)) = &failed.statement else {
        return (None, None);
    };
    match script.statements() {
        Some(statements) => (
            failed.line.or(statements.get(*index).map(|s| s.line)),
            Some(sql.clone()),
        ),
        // The whole file went as one: PostgreSQL's error position, if any, gives the line.
        None => {
            let position = failed.error.as_database_error().and_then(|e| {
                e.try_downcast_ref::<sqlx::postgres::PgDatabaseError>()
                    .and_then(|pg| match pg.position() {
                        Some(sqlx::postgres::PgErrorPosition::Original(p)) => Some(p),
                        _ => None,
                    })
            });
            let line = position.map(|chars| {
                let byte = script
                    .sql
                    .char_indices()
                    .nth(chars.saturating_sub(1))
                    .map_or(script.sql.len(), |(b, _)| b);
                script.line_of(byte)
            });
            (line, None)
        }
    }
}

/// Runs `work`, sampling `pg_blocking_pids` of `pid` on `probe` while it waits, so a lock
/// timeout can say who held the lock. A shutdown request (SIGTERM, `--max-runtime`) cancels
/// the statement on the server (it rolls back), so the run stops within seconds instead of
/// being killed mid-statement when a pod's grace period ends.
async fn watched<T>(
    probe: &mut PgConnection,
    pid: i32,
    lock_timeout: Duration,
    shutdown: &Shutdown,
    work: impl Future<Output = Result<T, sqlx::Error>>,
) -> Result<T, (sqlx::Error, Vec<Blocker>)> {
    tokio::pin!(work);
    let mut seen = Vec::new();
    let mut wait = (lock_timeout / 2).max(Duration::from_millis(20));
    let mut cancelled = false;
    loop {
        tokio::select! {
            result = &mut work => return result.map_err(|e| (e, seen)),
            () = shutdown.requested(), if !cancelled => {
                cancelled = true;
                let _ = sqlx::query("SELECT pg_cancel_backend($1)")
                    .bind(pid)
                    .execute(&mut *probe)
                    .await;
            }
            () = tokio::time::sleep(wait) => {
                if let Ok(now) = blockers_of(probe, pid).await
                    && !now.is_empty()
                {
                    seen = now;
                }
                wait = (wait * 2).min(Duration::from_secs(2));
            }
        }
    }
}

fn elapsed_ms(started: Instant) -> i64 {
    i64::try_from(started.elapsed().as_millis()).unwrap_or(i64::MAX)
}
