//! The embedded migrator: apply, status, check and the start-up policy.

use sluice_runner::migrator::Execution;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use sluice_common::config::{FILE_NAME, FileConfig, Origin};
use sluice_common::db::{ConnectSettings, Endpoint};
use sluice_common::environment::Rules;
use sluice_common::ident::Ident;
use sluice_common::redact::SecretUrl;
use sluice_common::shutdown::Shutdown;
use sluice_runner::error::RunnerError;
use sluice_runner::event::{Direction, Event};
use sluice_runner::guard::Guards;
use sluice_runner::history::Who;
use sluice_runner::migrator::{self as engine, RunnerSettings};
use sluice_runner::source::Loaded;
use sluice_runner::startup::Newer;
use sqlx::PgPool;
use sqlx::postgres::PgConnectOptions;

use crate::status::MigrationId;
use crate::{Embedded, Error, Policy, Status};

/// Where sluice connects: the options of an application's pool, or connect options.
///
/// sluice opens connections of its own with them (one holds the migration lock, one runs the
/// migrations) and never borrows one from the pool: its session settings (`lock_timeout`,
/// `statement_timeout`, `SET ROLE` in a file) and its advisory lock stay out of the
/// application's connections, and a pool sized for the application is not drained.
#[derive(Clone)]
pub struct Database(Arc<PgConnectOptions>);

/// Where it leads, never the password (the driver's options print it).
impl std::fmt::Debug for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let endpoint = Endpoint::Options(Arc::clone(&self.0));
        f.debug_tuple("Database").field(&endpoint).finish()
    }
}

impl Database {
    /// Options from a `postgres://` URL, checked as the CLI checks `DATABASE_URL`: a wrong
    /// scheme or a password character that must be percent-encoded is said plainly, and no
    /// message carries the password.
    pub fn from_url(url: &str) -> Result<Self, Error> {
        let settings = ConnectSettings::new(SecretUrl::new(url), "sluice-migrate");
        let options = settings
            .options()
            .map_err(|e| Error::Database(Box::new(e)))?;
        Ok(Self(Arc::new(options)))
    }

    /// The options, e.g. to build the application's pool with
    /// (`PgPoolOptions::new().connect_lazy_with(db.connect_options().clone())`).
    pub fn connect_options(&self) -> &PgConnectOptions {
        &self.0
    }
}

impl From<&PgPool> for Database {
    fn from(pool: &PgPool) -> Self {
        Self(pool.connect_options())
    }
}

impl From<PgConnectOptions> for Database {
    fn from(options: PgConnectOptions) -> Self {
        Self(Arc::new(options))
    }
}

/// What a run applied, and where the database stands after it.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    /// Migrations applied by this run, in order, with how long each took.
    pub applied: Vec<(MigrationId, Duration)>,
    pub status: Status,
}

/// The embedded migrations and how to run them. Cheap to keep for the life of the process.
///
/// Every run holds the same advisory lock as `sluice up` (so application instances starting
/// at once, and the CLI, apply each migration once), guards each statement with `lock_timeout`
/// and `statement_timeout` and retries lock timeouts with backoff, records history and audit
/// rows in sluice's schema, and does not run a migration whose backfill job is incomplete.
/// Nothing is printed: progress goes to `tracing` (target `sluice_migrate`).
///
/// Dropping a run's future stops it: sluice's connections close, and the server rolls back the
/// migration in flight and frees the lock when it notices (at the end of the running statement
/// at the latest); a migration run without a transaction resumes at its first unrecorded
/// statement next time.
#[derive(Debug, Clone)]
pub struct Migrator {
    migrations: Loaded,
    root: PathBuf,
    schema: Ident,
    guards: Guards,
    lock_wait: Duration,
    connect_wait: Duration,
    actor: Option<String>,
    application_name: String,
    newer: Newer,
    /// The environment chosen with [`Self::environment`], and its rules.
    environment: Option<(String, Rules)>,
}

impl Migrator {
    /// The migrations of `embedded`, checked as `sluice validate` checks a directory's names,
    /// pairs and directives.
    pub fn new(embedded: &Embedded) -> Result<Self, Error> {
        let migrations = embedded.load().map_err(|e| Error::Invalid {
            problems: e.problems,
        })?;
        Ok(Self {
            migrations,
            root: PathBuf::from(embedded.root()),
            schema: Ident::new(sluice_common::config::DEFAULT_SCHEMA).expect("a valid name"),
            guards: Guards::default(),
            lock_wait: engine::DEFAULT_LOCK_WAIT,
            connect_wait: sluice_common::config::DEFAULT_CONNECT_WAIT,
            actor: None,
            application_name: "sluice-migrate".to_owned(),
            newer: Newer::Refuse,
            environment: None,
        })
    }

    /// The schema of sluice's history tables, written as in SQL (`sluice`, `"Ops"`); the same
    /// as the CLI's `--schema`. Default `sluice`.
    pub fn schema(mut self, schema: &str) -> Result<Self, Error> {
        self.schema = Ident::parse(schema).map_err(|e| Error::Schema(e.to_string()))?;
        Ok(self)
    }

    /// The first `lock_timeout` of each statement (default 2 s); retries raise it.
    pub fn lock_timeout(mut self, timeout: Duration) -> Self {
        self.guards.lock_timeout = timeout;
        self
    }

    /// The `statement_timeout` of each statement, unless its file sets another.
    pub fn statement_timeout(mut self, timeout: Duration) -> Self {
        self.guards.statement_timeout = timeout;
        self
    }

    /// How many times a statement that timed out waiting for a lock is retried.
    pub fn max_retries(mut self, retries: u32) -> Self {
        self.guards.max_retries = retries;
        self
    }

    /// How long to wait for another runner's lock before [`Error::Locked`] (default 5 min).
    pub fn lock_wait(mut self, wait: Duration) -> Self {
        self.lock_wait = wait;
        self
    }

    /// How long to keep trying a database that refuses connections, is starting up or is
    /// full, before [`Error::Database`] (default as the CLI's `--connect-wait`). A wrong
    /// password or an unknown database fails at once.
    pub fn connect_wait(mut self, wait: Duration) -> Self {
        self.connect_wait = wait;
        self
    }

    /// Who is applying, recorded with each history row (a deploy id, a pod name).
    pub fn actor(mut self, actor: impl Into<String>) -> Self {
        self.actor = Some(actor.into());
        self
    }

    /// The `application_name` of sluice's sessions when the pool's options set none.
    pub fn application_name(mut self, name: impl Into<String>) -> Self {
        self.application_name = name.into();
        self
    }

    /// Runs as environment `name` of a `sluice.toml` (its text: `include_str!` it, or read
    /// it at start-up): the environment's and the file's `schema`, `connect_wait` and
    /// `[runner]` `lock_timeout`, `statement_timeout`, `max_retries`, `lock_wait` and `actor`
    /// apply, and its rules: where `auto_apply = false`, or a backup or an approval is
    /// required (which an application cannot give), [`Self::startup`] with
    /// [`Policy::Apply`] checks instead of applying, and says so. Unknown environments and
    /// keys are [`Error::Config`].
    pub fn environment(mut self, name: &str, sluice_toml: &str) -> Result<Self, Error> {
        let file = FileConfig::parse(sluice_toml, std::path::Path::new(FILE_NAME))
            .map_err(Error::Config)?;
        let (file, chosen) = file
            .for_environment(name, Origin::Flag, None)
            .map_err(Error::Config)?;
        if let Some(schema) = &file.schema {
            self = self.schema(schema)?;
        }
        let runner = &file.runner;
        self.guards.lock_timeout = runner.lock_timeout.unwrap_or(self.guards.lock_timeout);
        self.guards.statement_timeout = runner
            .statement_timeout
            .unwrap_or(self.guards.statement_timeout);
        self.guards.max_retries = runner.max_retries.unwrap_or(self.guards.max_retries);
        self.lock_wait = runner.lock_wait.unwrap_or(self.lock_wait);
        self.connect_wait = file.connect_wait.unwrap_or(self.connect_wait);
        if let Some(actor) = &runner.actor {
            self.actor = Some(actor.clone());
        }
        self.environment = Some((chosen.name, chosen.rules));
        Ok(self)
    }

    /// Why the chosen environment does not let a start-up apply, if it does not.
    fn may_not_apply(&self) -> Option<String> {
        let (name, rules) = self.environment.as_ref()?;
        let rule = if !rules.auto_apply {
            "auto_apply = false"
        } else if rules.require_backup {
            "require_backup = true: an application takes no backup"
        } else if rules.require_approval {
            "require_approval = true: approved migrations are applied by `sluice up`"
        } else {
            return None;
        };
        Some(format!(
            "environment {name} does not let an application apply migrations ({rule}); \
             checking instead: apply them with `sluice up --env {name}`"
        ))
    }

    /// Let this build start on a database a newer build migrated: applied migrations it does
    /// not embed are tolerated ([`Status::newer`]) when every one of them is newer than all it
    /// embeds, so rolling the application back after an expand migration works. An unknown
    /// migration ordered between embedded ones is still [`Error::Drift`]. Default `false`:
    /// allow it where old and new builds run side by side by design (expand/contract), not
    /// where a newer build's migrations may break this one.
    pub fn allow_newer(mut self, allow: bool) -> Self {
        self.newer = if allow { Newer::Allow } else { Newer::Refuse };
        self
    }

    /// The embedded migrations, in version order, with their checksums (the CLI's).
    pub fn migrations(&self) -> impl Iterator<Item = (MigrationId, &str)> {
        self.migrations.migrations.iter().map(|m| {
            (
                MigrationId {
                    version: m.version,
                    id: m.id(),
                },
                m.up.checksum.as_str(),
            )
        })
    }

    /// Applies every pending migration, as `sluice up` does. A migration whose backfill job is
    /// incomplete stops the run there without an error: it is [`Status::deferred`] in the
    /// report, and what is ordered after it stays pending.
    pub async fn run(&self, db: impl Into<Database>) -> Result<Report, Error> {
        if let Some(actor) = &self.actor {
            sluice_common::config::check_actor(actor).map_err(|expected| Error::Setting {
                name: "actor".to_owned(),
                value: sluice_common::display::one_line(
                    &actor.chars().take(40).collect::<String>(),
                )
                .into_owned(),
                expected,
            })?;
        }
        let engine = self.engine(db.into());
        if self.newer == Newer::Allow {
            // A newer build's history: nothing embedded here can be applied after it (any
            // pending file is out of order), so leave the database as that build left it.
            let status = status_of(&engine, self.newer).await?;
            if !status.newer.is_empty() {
                return Ok(Report {
                    applied: Vec::new(),
                    status,
                });
            }
        }
        let mut events = log_event;
        let outcome = engine
            .up(None, Execution::Apply, &Shutdown::never(), &mut events)
            .await;
        let applied = match outcome {
            Ok(report) => report.migrations,
            Err(RunnerError::Blocked { done, .. }) => done,
            Err(error) if Error::is_drift(&error) => {
                return Err(status_of(&engine, self.newer).await?.drift_error());
            }
            Err(error) => return Err(Error::from_runner(error)),
        };
        let status = status_of(&engine, self.newer).await?;
        Ok(Report {
            applied: applied
                .into_iter()
                .map(|done| {
                    let id = MigrationId {
                        version: done.version.unwrap_or(0),
                        id: done.id,
                    };
                    (id, Duration::from_millis(done.duration_ms))
                })
                .collect(),
            status,
        })
    }

    /// Where the database stands; changes nothing (sluice's tables are not even created).
    pub async fn status(&self, db: impl Into<Database>) -> Result<Status, Error> {
        status_of(&self.engine(db.into()), self.newer).await
    }

    /// The start-up check: `Ok` when the application may start (every migration applied but
    /// those waiting for their backfill), [`Error::Pending`] naming what is not applied, or
    /// [`Error::Drift`] naming what was edited or is missing. Changes nothing.
    pub async fn check(&self, db: impl Into<Database>) -> Result<Status, Error> {
        let status = self.status(db).await?;
        match status.refusal("apply them first: `sluice up`, or the application's auto-migrate") {
            Some(error) => Err(error),
            None => Ok(status),
        }
    }

    /// Start-up in one call: with [`Policy::Apply`], [`run`](Self::run) then refuse if
    /// anything the application needs is still not applied; with [`Policy::Check`],
    /// [`check`](Self::check).
    pub async fn startup(&self, db: impl Into<Database>, policy: Policy) -> Result<Report, Error> {
        let policy = match (policy, self.may_not_apply()) {
            (Policy::Apply, Some(reason)) => {
                tracing::warn!("{reason}");
                Policy::Check
            }
            (policy, _) => policy,
        };
        match policy {
            Policy::Apply => {
                let report = self.run(db).await?;
                match report.status.refusal(
                    "they wait for a backfill: run it, then start again or run `sluice up`",
                ) {
                    Some(error) => Err(error),
                    None => Ok(report),
                }
            }
            Policy::Check => Ok(Report {
                applied: Vec::new(),
                status: self.check(db).await?,
            }),
        }
    }

    fn engine(&self, db: Database) -> engine::Migrator {
        let connect = ConnectSettings {
            wait: self.connect_wait,
            ..ConnectSettings::with_options(db.0, &self.application_name)
        };
        let who = Who {
            program: format!("sluice-migrate {}", env!("CARGO_PKG_VERSION")),
            actor: self.actor.clone(),
        };
        // Lint runs where the migration is written (`sluice lint` in CI); a start-up is not
        // where a rule finding should keep an application down: the defaults have no gate.
        let settings = RunnerSettings {
            guards: self.guards,
            lock_wait: self.lock_wait,
            ..RunnerSettings::new(connect, self.schema.clone(), self.root.clone(), who)
        };
        engine::Migrator::with_migrations(settings, self.migrations.clone())
    }
}

async fn status_of(engine: &engine::Migrator, newer: Newer) -> Result<Status, Error> {
    let recorded = engine.recorded().await.map_err(Error::from_runner)?;
    let mut status = Status::of(&engine.status(&recorded), &recorded.blocked, newer);
    // Flyway's repeatable migrations, new or changed: the next run applies them, so an
    // application that needs them (a view, a function) does not start before.
    status.pending.extend(
        sluice_runner::repeatable::pending(engine.repeatables(), &recorded.repeatables)
            .into_iter()
            .map(|r| MigrationId {
                version: 0,
                id: r.id(),
            }),
    );
    Ok(status)
}

/// The engine's progress, as `tracing` events.
fn log_event(event: Event) {
    match event {
        Event::LockWaiting { holder } => tracing::info!(
            holder = ?holder.map(|h| h.to_string()),
            "another runner holds the migration lock; waiting"
        ),
        Event::LockAcquired => tracing::debug!("migration lock acquired"),
        Event::Started {
            id,
            direction: Direction::Up | Direction::Repeat,
            ..
        } => tracing::info!(migration = %id, "applying"),
        Event::Finished { id, duration, .. } => tracing::info!(
            migration = %id,
            duration_ms = u64::try_from(duration.as_millis()).unwrap_or(u64::MAX),
            "applied"
        ),
        Event::Retrying {
            id,
            attempt,
            max_retries,
            reason,
            ..
        } => tracing::warn!(migration = %id, attempt, max_retries, "retrying: {reason}"),
        Event::InvalidIndexDropped { id, index } => tracing::warn!(
            migration = %id,
            index = %index,
            "dropped the INVALID index a failed CREATE INDEX CONCURRENTLY left, to build it again"
        ),
        Event::StatementDone {
            id, number, total, ..
        } => tracing::debug!(migration = %id, number, total, "statement done"),
        other => tracing::debug!(event = ?other, "sluice"),
    }
}
