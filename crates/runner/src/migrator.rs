//! The runner's entry points: `up`, `down` and `status` against one database.
//!
//! Each run takes the runner's advisory lock on a dedicated connection, creates sluice's
//! tables if needed, compares files with history, and applies or reverts one migration at a
//! time. The lock is released on every path; a shutdown request stops between migrations.

mod approvals;
mod post_apply;

use std::path::PathBuf;
use std::time::Duration;

use sluice_common::db::{self, ConnectSettings};
use sluice_common::ident::Ident;
use sluice_common::lock::{AdvisoryLock, DEFAULT_POLL_INTERVAL, LockRequest, lock_key};
use sluice_common::retry::{Transient, classify};
use sluice_common::shutdown::Shutdown;
use std::collections::{BTreeMap, BTreeSet};

use sluice_common::backfill_gate::{self, ClosedGate, Gate};
use sqlx::{Connection, PgConnection};

use crate::apply::{Session, open_migration_connection};
use crate::backup::{self, BackupSettings};
#[cfg(feature = "lint")]
use crate::baseline::Baseline;
use crate::dryrun;
use crate::error::RunnerError;
use crate::event::{Direction, Event};
use crate::guard::Guards;
use crate::history::{Applied, AppliedRepeatable, Found, History, Partial, Record, Who};
use crate::import::{self, Tool};
use crate::layout::{Choice, Layout};
#[cfg(feature = "lint")]
use crate::lint::{self, Finding};
use crate::plan::{self, Allow, DownTarget, Entry, PlanError, UpStep};
use crate::repeatable::{self, Repeatable};
use crate::rules::LintSettings;
#[cfg(feature = "lint")]
use crate::source::SourceError;
use crate::source::{self, Loaded, Migration, Version};
use crate::verify::Outcome;

pub use self::post_apply::PostApply;

/// Backoff between reads of history while the database is away.
const PREPARE_BACKOFF: sluice_common::retry::Backoff = sluice_common::retry::Backoff {
    initial: Duration::from_millis(200),
    max: Duration::from_secs(5),
};

/// Whether `up` or `down` changes the database or only shows, statement by statement, what
/// it would run (`--dry-run`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Execution {
    Apply,
    DryRun,
}

/// Default wait for another runner's lock.
pub const DEFAULT_LOCK_WAIT: Duration = Duration::from_secs(5 * 60);

/// Everything a run needs, resolved from flags, environment and `sluice.toml`.
#[derive(Debug, Clone)]
pub struct RunnerSettings {
    pub connect: ConnectSettings,
    pub schema: Ident,
    pub migrations_dir: PathBuf,
    /// The directory's layout: detected, or forced (`layout` in sluice.toml).
    pub layout: Choice,
    pub guards: Guards,
    pub lock_wait: Duration,
    pub allow: Allow,
    pub who: Who,
    pub lint: LintSettings,
    /// Apply despite blocking lint findings (logged loudly and audited).
    pub skip_lint: bool,
    /// Whether `up` lints at all (off only for scratch databases, e.g. `roundtrip`).
    pub lint_gate: bool,
    /// `up`/`down --backup`: dump the database before applying or reverting anything.
    pub backup: Option<BackupSettings>,
    /// `up --verify`, `--dump-schema`: what runs after the last migration.
    pub post_apply: PostApply,
    /// The environment whose `require_approval` holds: `up` applies approved migrations only.
    pub require_approval: Option<String>,
}

impl RunnerSettings {
    /// What an application embedding the runner starts from: the default guards and lock
    /// wait, the directory's layout detected, and none of the program's own steps (no lint
    /// gate, no backup, nothing after the last migration). Override what differs with
    /// `RunnerSettings { guards, ..RunnerSettings::new(...) }`.
    pub fn new(connect: ConnectSettings, schema: Ident, migrations_dir: PathBuf, who: Who) -> Self {
        Self {
            connect,
            schema,
            migrations_dir,
            layout: Choice::Auto,
            guards: Guards::default(),
            lock_wait: DEFAULT_LOCK_WAIT,
            allow: Allow::default(),
            who,
            lint: LintSettings::default(),
            skip_lint: false,
            lint_gate: false,
            backup: None,
            post_apply: PostApply::default(),
            require_approval: None,
        }
    }
}

pub use crate::event::Done;

/// What a run did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Report {
    pub dry_run: bool,
    pub migrations: Vec<Done>,
    /// Post-apply verification checks, in order.
    pub checks: Vec<Outcome>,
}

/// The loaded migrations of a directory, ready to run against a database.
#[derive(Debug)]
pub struct Migrator {
    settings: RunnerSettings,
    history: History,
    layout: Layout,
    files: Vec<Migration>,
    repeatables: Vec<Repeatable>,
}

/// History as read from the database (empty when sluice's tables do not exist yet).
#[derive(Debug, Default)]
pub struct Recorded {
    pub applied: Vec<Applied>,
    pub partial: Vec<Partial>,
    /// Flyway's repeatable migrations as last applied.
    pub repeatables: Vec<AppliedRepeatable>,
    /// The closed backfill gates of each not-yet-applied migration, by version (none: open).
    pub blocked: BTreeMap<Version, Vec<ClosedGate>>,
    /// Every approval recorded (`sluice approve`), oldest first.
    pub approvals: Vec<crate::approval::Approval>,
}

impl Migrator {
    /// Loads and checks the migration files.
    pub fn load(settings: RunnerSettings) -> Result<Self, RunnerError> {
        let loaded = source::load(&settings.migrations_dir, settings.layout)?;
        Ok(Self::with_migrations(settings, loaded))
    }

    /// A migrator of migrations loaded elsewhere (embedded into a binary: [`source::load_files`]).
    pub fn with_migrations(settings: RunnerSettings, loaded: Loaded) -> Self {
        Self {
            history: History::new(settings.schema.clone()),
            settings,
            layout: loaded.layout,
            files: loaded.migrations,
            repeatables: loaded.repeatables,
        }
    }

    /// The layout the directory is read as.
    pub fn layout(&self) -> Layout {
        self.layout
    }

    pub fn files(&self) -> &[Migration] {
        &self.files
    }

    /// Flyway's repeatable migrations (`R__`), in the order they are applied.
    pub fn repeatables(&self) -> &[Repeatable] {
        &self.repeatables
    }

    pub fn settings(&self) -> &RunnerSettings {
        &self.settings
    }

    pub fn connect_settings(&self) -> &ConnectSettings {
        &self.settings.connect
    }

    pub fn history(&self) -> &History {
        &self.history
    }

    /// Reads history without creating anything.
    pub async fn recorded(&self) -> Result<Recorded, RunnerError> {
        let mut conn = db::connect(&self.settings.connect).await?;
        let mut recorded = self.read_history(&mut conn).await;
        if let Ok(recorded) = &mut recorded {
            let applied: BTreeSet<Version> = recorded.applied.iter().map(|a| a.version).collect();
            for migration in self.files.iter().filter(|m| !applied.contains(&m.version)) {
                let reasons = self.closed_gates(&mut conn, migration).await?;
                if !reasons.is_empty() {
                    recorded.blocked.insert(migration.version, reasons);
                }
            }
        }
        let _ = conn.close().await;
        recorded
    }

    /// Why `migration` may not run yet: the incomplete backfill jobs it requires.
    async fn closed_gates(
        &self,
        conn: &mut PgConnection,
        migration: &Migration,
    ) -> Result<Vec<ClosedGate>, RunnerError> {
        let mut closed = Vec::new();
        for job in &migration.up.directives.requires_backfill {
            let gate = backfill_gate::read_gate(conn, &self.settings.schema, job)
                .await
                .map_err(RunnerError::query(format!("reading backfill job {job}")))?;
            if let Gate::Closed(status) = gate {
                closed.push(ClosedGate {
                    job: job.clone(),
                    status,
                });
            }
        }
        Ok(closed)
    }

    async fn read_history(&self, conn: &mut PgConnection) -> Result<Recorded, RunnerError> {
        let found = self
            .history
            .found(conn)
            .await
            .map_err(RunnerError::query("looking for sluice's history tables"))?;
        self.read_found(conn, found).await
    }

    async fn read_found(
        &self,
        conn: &mut PgConnection,
        found: Found,
    ) -> Result<Recorded, RunnerError> {
        let rows = self
            .history
            .read(conn, found)
            .await
            .map_err(RunnerError::query("reading the applied migrations"))?;
        Ok(Recorded {
            blocked: BTreeMap::new(),
            approvals: rows.approvals,
            repeatables: rows.repeatables,
            applied: rows.applied,
            partial: rows.partial,
        })
    }

    /// Applies pending migrations up to `target` (all when `None`).
    pub async fn up(
        &self,
        target: Option<Version>,
        execution: Execution,
        shutdown: &Shutdown,
        events: &mut dyn FnMut(Event),
    ) -> Result<Report, RunnerError> {
        if execution == Execution::DryRun {
            let recorded = self.recorded().await?;
            let entries = plan::status(
                &self.files,
                &recorded.applied,
                &recorded.partial,
                self.layout.order(),
            );
            let steps = plan::plan_up(&entries, target, self.settings.allow)?;
            let repeats = self.repeats_after(&entries, &steps, &recorded)?;
            let work = up_work(&steps, &repeats);
            source::analyse(work.iter().map(|w| &w.migration().up))?;
            self.lint_gate(work.iter().map(Work::migration), None)
                .await?;
            // A dry run shows what would run before the first closed gate, then says why it
            // would stop there.
            let gated = steps
                .iter()
                .position(|s| recorded.blocked.contains_key(&s.migration.version));
            let (approved, unapproved) = self.approved(&recorded.approvals, work.clone());
            let shown = gated.unwrap_or(work.len()).min(approved.len());
            let report = self.render(&work[..shown], events);
            if gated.is_none_or(|at| at >= approved.len())
                && let Some(error) = self.unapproved_error(unapproved, &Report::default())
            {
                return Err(error);
            }
            if let Some(at) = gated {
                let migration = steps[at].migration;
                return Err(RunnerError::Blocked {
                    migration: migration.id(),
                    reasons: messages(&recorded.blocked[&migration.version]),
                    done: Vec::new(),
                });
            }
            return Ok(report);
        }
        self.with_lock(shutdown, events, async |lock, events| {
            self.up_locked(lock, target, shutdown, events).await
        })
        .await
    }

    /// Reverts applied migrations, newest first.
    pub async fn down(
        &self,
        target: DownTarget,
        execution: Execution,
        shutdown: &Shutdown,
        events: &mut dyn FnMut(Event),
    ) -> Result<Report, RunnerError> {
        if execution == Execution::DryRun {
            let recorded = self.recorded().await?;
            let entries = plan::status(
                &self.files,
                &recorded.applied,
                &recorded.partial,
                self.layout.order(),
            );
            let steps =
                plan::plan_down(&entries, target, self.settings.allow, self.layout.order())?;
            source::analyse(steps.iter().filter_map(|m| m.down.as_ref()))?;
            let work: Vec<Work<'_>> = steps.into_iter().map(Work::Revert).collect();
            return Ok(self.render(&work, events));
        }
        self.with_lock(shutdown, events, async |lock, events| {
            self.down_locked(lock, target, shutdown, events).await
        })
        .await
    }

    /// Marks every migration up to `version` as applied without running it: for adopting a
    /// database whose schema already has them. Already recorded ones are left alone.
    pub async fn baseline(
        &self,
        version: Version,
        shutdown: &Shutdown,
        events: &mut dyn FnMut(Event),
    ) -> Result<Report, RunnerError> {
        if !self.files.iter().any(|m| m.version == version) {
            return Err(PlanError::UnknownTarget(version.to_string()).into());
        }
        self.with_lock(shutdown, events, async |lock, _| {
            let recorded = self.prepare(lock).await?;
            self.baseline_locked(lock.connection(), version, &recorded)
                .await
        })
        .await
    }

    async fn baseline_locked(
        &self,
        conn: &mut PgConnection,
        version: Version,
        recorded: &Recorded,
    ) -> Result<Report, RunnerError> {
        let applied: BTreeSet<Version> = recorded.applied.iter().map(|a| a.version).collect();
        let marked: Vec<&Migration> = self
            .files
            .iter()
            .filter(|m| {
                self.layout.order().cmp(m.version, version).is_le() && !applied.contains(&m.version)
            })
            .collect();
        let who = &self.settings.who;
        let records: Vec<Record<'_>> = marked.iter().map(|m| Record::new(m, who, 0)).collect();
        self.history
            .record_baseline(conn, &records, who)
            .await
            .map_err(RunnerError::query(format!(
                "recording {} migrations up to {version} as applied",
                records.len()
            )))?;
        Ok(Report {
            migrations: marked.iter().map(|m| done(m, Duration::ZERO)).collect(),
            ..Report::default()
        })
    }

    /// The repeatable migrations an `up` applies after `steps`: those new or changed since
    /// they were applied, and only when `steps` leaves no versioned migration pending (a
    /// repeatable migration is written against the newest schema, not one on the way to it).
    fn repeats_after(
        &self,
        entries: &[Entry<'_>],
        steps: &[UpStep<'_>],
        recorded: &Recorded,
    ) -> Result<Vec<&Repeatable>, RunnerError> {
        let every = plan::plan_up(entries, None, self.settings.allow)?;
        if every.len() != steps.len() {
            return Ok(Vec::new());
        }
        Ok(repeatable::pending(
            &self.repeatables,
            &recorded.repeatables,
        ))
    }

    /// Copies the history of `tool` into sluice's (versions sluice already has are kept).
    pub async fn import(&self, tool: Tool, shutdown: &Shutdown) -> Result<Report, RunnerError> {
        self.with_lock(shutdown, &mut |_| {}, async |lock, _| {
            let recorded = self.prepare(lock).await?;
            self.import_locked(lock.connection(), tool, &recorded).await
        })
        .await
    }

    async fn import_locked(
        &self,
        conn: &mut PgConnection,
        tool: Tool,
        recorded: &Recorded,
    ) -> Result<Report, RunnerError> {
        let known: BTreeSet<Version> = recorded.applied.iter().map(|a| a.version).collect();
        let imported = import::read(conn, tool, &self.files).await?;
        let mut report = Report::default();
        for item in imported.iter().filter(|i| !known.contains(&i.version)) {
            let migration = self
                .files
                .iter()
                .find(|m| m.version == item.version)
                .expect("checked by import::read");
            let record = Record::new(migration, &self.settings.who, item.duration_ms);
            self.history
                .record_imported(conn, record, item.applied_at, tool.name())
                .await
                .map_err(RunnerError::query(format!("importing {}", migration.id())))?;
            report.migrations.push(done(
                migration,
                Duration::from_millis(u64::try_from(item.duration_ms).unwrap_or(0)),
            ));
        }
        if tool == Tool::Flyway {
            self.import_flyway_repeatables(conn, recorded, &mut report)
                .await?;
        }
        Ok(report)
    }

    /// Flyway's repeatable migrations applied as their files are now (and not already
    /// recorded so by sluice).
    async fn import_flyway_repeatables(
        &self,
        conn: &mut PgConnection,
        recorded: &Recorded,
        report: &mut Report,
    ) -> Result<(), RunnerError> {
        let pending = repeatable::pending(&self.repeatables, &recorded.repeatables);
        let imported = import::read_flyway_repeatables(conn, &self.repeatables).await?;
        for item in imported.iter().filter(|i| {
            pending
                .iter()
                .any(|p| p.description() == i.file.description())
        }) {
            let migration = item.file.as_migration();
            let record = Record::new(migration, &self.settings.who, item.duration_ms);
            self.history
                .record_imported_repeatable(conn, record, item.applied_at, Tool::Flyway.name())
                .await
                .map_err(RunnerError::query(format!("importing {}", item.file.id())))?;
            let took = Duration::from_millis(u64::try_from(item.duration_ms).unwrap_or(0));
            report.migrations.push(Work::Repeat(item.file).done(took));
        }
        Ok(())
    }

    /// Accepts the edited file of applied migration `version`, with a reason (audited).
    /// Returns the old and the new checksum.
    pub async fn repair(
        &self,
        version: Version,
        reason: &str,
        shutdown: &Shutdown,
    ) -> Result<(String, String), RunnerError> {
        let migration = self
            .files
            .iter()
            .find(|m| m.version == version)
            .ok_or_else(|| RunnerError::Plan(PlanError::UnknownTarget(version.to_string())))?;
        self.with_lock(shutdown, &mut |_| {}, async |lock, _| {
            self.prepare(lock).await?;
            let conn = lock.connection();
            let old = self
                .history
                .accept_checksum(
                    conn,
                    version,
                    &migration.up.checksum,
                    reason,
                    &self.settings.who,
                )
                .await
                .map_err(RunnerError::query(format!(
                    "accepting the checksum of {}",
                    migration.id()
                )))?;
            match old {
                Some(old) => Ok((old, migration.up.checksum.clone())),
                None => Err(RunnerError::NotApplied { id: migration.id() }),
            }
        })
        .await
    }

    /// Compares files with history.
    pub fn status<'a>(&'a self, recorded: &'a Recorded) -> Vec<Entry<'a>> {
        plan::status(
            &self.files,
            &recorded.applied,
            &recorded.partial,
            self.layout.order(),
        )
    }

    /// Runs `work` holding the runner lock, which is released on every path (the server frees
    /// it with the connection if even that fails).
    async fn with_lock<T>(
        &self,
        shutdown: &Shutdown,
        events: &mut dyn FnMut(Event),
        work: impl AsyncFnOnce(&mut AdvisoryLock, &mut dyn FnMut(Event)) -> Result<T, RunnerError>,
    ) -> Result<T, RunnerError> {
        let mut lock = self.acquire(shutdown, events).await?;
        let result = work(&mut lock, events).await;
        release(lock).await;
        result
    }

    /// Takes the runner lock on a connection of its own.
    async fn acquire(
        &self,
        shutdown: &Shutdown,
        events: &mut dyn FnMut(Event),
    ) -> Result<AdvisoryLock, RunnerError> {
        let conn = db::connect_primary(&self.settings.connect).await?;
        let request = LockRequest {
            name: format!("the migration lock of schema {}", self.settings.schema),
            key: lock_key(&format!("sluice:runner:{}", self.settings.schema.as_str())),
            wait: self.settings.lock_wait,
            poll: DEFAULT_POLL_INTERVAL,
        };
        let lock = AdvisoryLock::acquire(conn, &request, shutdown, |holder| {
            tracing::info!(
                holder = ?holder.map(ToString::to_string),
                "another runner holds the migration lock; waiting up to {}",
                humantime::format_duration(request.wait)
            );
            events(Event::LockWaiting {
                holder: holder.cloned(),
            });
        })
        .await?;
        events(Event::LockAcquired);
        Ok(lock)
    }

    async fn up_locked(
        &self,
        lock: &mut AdvisoryLock,
        target: Option<Version>,
        shutdown: &Shutdown,
        events: &mut dyn FnMut(Event),
    ) -> Result<Report, RunnerError> {
        let recorded = self.prepare(lock).await?;
        let entries = plan::status(
            &self.files,
            &recorded.applied,
            &recorded.partial,
            self.layout.order(),
        );
        let steps = plan::plan_up(&entries, target, self.settings.allow)?;
        let repeats = self.repeats_after(&entries, &steps, &recorded)?;
        let work = up_work(&steps, &repeats);
        // Every file about to run is checked before the first one runs.
        source::analyse(work.iter().map(|w| &w.migration().up))?;
        self.lint_gate(work.iter().map(Work::migration), Some(lock.connection()))
            .await?;
        for migration in work.iter().map(Work::migration).filter(|m| m.up.is_empty()) {
            tracing::warn!(
                migration = %migration.id(),
                "{} holds no statement (empty, or only comments); it will be recorded as applied \
                 with nothing run",
                migration.up.path.display()
            );
        }
        let (work, unapproved) = self.approved(&recorded.approvals, work);
        if !work.is_empty() {
            self.back_up(lock.connection()).await?;
        }
        let report = self.run_work(lock, &work, shutdown, events).await?;
        if let Some(error) = self.unapproved_error(unapproved, &report) {
            return Err(error);
        }
        self.post_apply(lock.connection(), report, events).await
    }

    async fn down_locked(
        &self,
        lock: &mut AdvisoryLock,
        target: DownTarget,
        shutdown: &Shutdown,
        events: &mut dyn FnMut(Event),
    ) -> Result<Report, RunnerError> {
        let recorded = self.prepare(lock).await?;
        let entries = plan::status(
            &self.files,
            &recorded.applied,
            &recorded.partial,
            self.layout.order(),
        );
        let steps = plan::plan_down(&entries, target, self.settings.allow, self.layout.order())?;
        source::analyse(steps.iter().filter_map(|m| m.down.as_ref()))?;
        // A revert drops what the migration added (columns and their data): back up first.
        if !steps.is_empty() {
            self.back_up(lock.connection()).await?;
        }
        let work: Vec<Work<'_>> = steps.into_iter().map(Work::Revert).collect();
        self.run_work(lock, &work, shutdown, events).await
    }

    /// Runs `work` one file at a time on a migration connection of its own, stopping between
    /// two at a shutdown request or, going up, at a closed backfill gate.
    async fn run_work(
        &self,
        lock: &mut AdvisoryLock,
        work: &[Work<'_>],
        shutdown: &Shutdown,
        events: &mut dyn FnMut(Event),
    ) -> Result<Report, RunnerError> {
        let mut report = Report::default();
        if work.is_empty() {
            return Ok(report);
        }
        let mut session = self.session(lock, shutdown).await?;
        for item in work {
            let migration = item.migration();
            if shutdown.is_requested() {
                return Err(RunnerError::Interrupted {
                    next: migration.id(),
                    done: ids(&report),
                });
            }
            if let Work::Apply(_) = item {
                let closed = self.closed_gates(&mut session.conn, migration).await?;
                if !closed.is_empty() {
                    return Err(RunnerError::Blocked {
                        migration: migration.id(),
                        reasons: messages(&closed),
                        done: ids(&report),
                    });
                }
            }
            let outcome = match item {
                Work::Apply(step) => session.apply(migration, step.resume_at, events).await,
                Work::Revert(_) => session.revert(migration, events).await,
                Work::Repeat(repeatable) => session.apply_repeatable(repeatable, events).await,
            };
            match outcome {
                Ok(duration) => report.migrations.push(item.done(duration)),
                Err(error) => {
                    return Err(RunnerError::Apply {
                        error,
                        done: ids(&report),
                    });
                }
            }
        }
        let _ = session.conn.close().await;
        Ok(report)
    }

    /// `--backup`: a checked dump before anything is applied or reverted, logged and audited.
    async fn back_up(&self, conn: &mut PgConnection) -> Result<(), RunnerError> {
        let Some(settings) = &self.settings.backup else {
            return Ok(());
        };
        let backup = backup::take(&self.settings.connect, settings).await?;
        let detail = format!(
            "path={} bytes={} duration_ms={}",
            backup.path.display(),
            backup.bytes,
            backup.duration.as_millis()
        );
        tracing::info!(path = %backup.path.display(), bytes = backup.bytes, duration_ms = u64::try_from(backup.duration.as_millis()).unwrap_or(u64::MAX), "backup taken and checked with pg_restore --list");
        self.history
            .record_backup(conn, &self.settings.who, &detail)
            .await
            .map_err(RunnerError::query("auditing the backup"))
    }

    /// An engine built without the `lint` feature (embedded in an application, which lints
    /// in CI) has no linter: it says so if asked to lint.
    #[cfg(not(feature = "lint"))]
    async fn lint_gate<'m>(
        &self,
        _migrations: impl Iterator<Item = &'m Migration>,
        _audit: Option<&mut PgConnection>,
    ) -> Result<(), RunnerError> {
        if self.settings.lint_gate {
            tracing::warn!(
                "this build of sluice's engine has no linter (feature `lint`): migrations are \
                 applied unlinted; lint them with `sluice lint`"
            );
        }
        Ok(())
    }

    /// Refuses migrations with unapproved blocking lint findings, unless `--skip-lint`, which
    /// is logged loudly and, when `audit` is given, written to the audit table.
    #[cfg(feature = "lint")]
    async fn lint_gate<'m>(
        &self,
        migrations: impl Iterator<Item = &'m Migration>,
        audit: Option<&mut PgConnection>,
    ) -> Result<(), RunnerError> {
        if !self.settings.lint_gate {
            return Ok(());
        }
        // In file order, so that a table created by an earlier pending migration is known
        // to be empty when a later one constrains or indexes it.
        let dir = &self.settings.migrations_dir;
        let baseline = Baseline::load(dir).map_err(|problem| SourceError {
            problems: vec![problem],
        })?;
        let mut created = std::collections::HashMap::new();
        let mut findings: Vec<Finding> = Vec::new();
        for migration in migrations {
            let mut found = lint::lint(&migration.up, &self.settings.lint);
            baseline.pass(dir, &migration.up, &mut found);
            lint::pass_new_tables(&mut found, &created);
            findings.extend(found);
            for table in lint::created_tables(&migration.up) {
                created.insert(table, migration.id());
            }
        }
        for finding in findings.iter().filter(|f| !f.blocks()) {
            tracing::info!(rule = %finding.rule, approved = ?finding.approved, "lint: {finding}");
        }
        let blocking: Vec<Finding> = findings.into_iter().filter(Finding::blocks).collect();
        if blocking.is_empty() {
            return Ok(());
        }
        if !self.settings.skip_lint {
            return Err(RunnerError::Lint { findings: blocking });
        }
        let detail = blocking
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n");
        tracing::warn!(
            findings = blocking.len(),
            actor = ?self.settings.who.actor,
            "--skip-lint: applying {} unapproved dangerous change(s) anyway; this is recorded in the audit table:\n{detail}",
            blocking.len()
        );
        if let Some(conn) = audit {
            self.history
                .record_skip_lint(conn, &self.settings.who, &detail)
                .await
                .map_err(RunnerError::query("auditing --skip-lint"))?;
        }
        Ok(())
    }

    /// Creates sluice's tables if needed and reads history, under the lock. A database that
    /// goes away meanwhile (a restart, a failover) is waited for, for as long as connecting
    /// waits (`connect_wait`), and the lock taken again on a new connection before reading
    /// once more: nothing has been changed yet.
    async fn prepare(&self, lock: &mut AdvisoryLock) -> Result<Recorded, RunnerError> {
        let started = std::time::Instant::now();
        let mut attempt = 0;
        loop {
            let error = match self.prepare_once(lock.connection()).await {
                Ok(recorded) => return Ok(recorded),
                Err(error) => error,
            };
            let lost = matches!(&error, RunnerError::Query { error, .. }
                if classify(error) == Some(Transient::ConnectionLost));
            if !lost || started.elapsed() >= self.settings.connect.wait {
                return Err(error);
            }
            let delay = PREPARE_BACKOFF.delay(attempt);
            tracing::warn!(
                "{error}; the database went away: reading again in {}ms",
                delay.as_millis()
            );
            tokio::time::sleep(delay).await;
            if !lock.is_held().await {
                let conn = db::connect_primary(&self.settings.connect).await?;
                lock.retake(conn).await?;
                tracing::warn!("the migration lock was taken again on a new connection");
            }
            attempt += 1;
        }
    }

    async fn prepare_once(&self, conn: &mut PgConnection) -> Result<Recorded, RunnerError> {
        let found = self
            .history
            .ensure(conn)
            .await
            .map_err(RunnerError::query(format!(
                "creating sluice's tables in schema {}",
                self.settings.schema
            )))?;
        self.read_found(conn, found).await
    }

    async fn session<'a>(
        &'a self,
        lock: &'a mut AdvisoryLock,
        shutdown: &'a Shutdown,
    ) -> Result<Session<'a>, RunnerError> {
        let (conn, pid) = open_migration_connection(&self.settings.connect).await?;
        Ok(Session {
            conn,
            pid,
            lock,
            connect: &self.settings.connect,
            history: &self.history,
            guards: self.settings.guards,
            who: &self.settings.who,
            shutdown,
        })
    }

    /// The dry run of `work`: the exact SQL of each file, as [`Event::Planned`].
    fn render(&self, work: &[Work<'_>], events: &mut dyn FnMut(Event)) -> Report {
        for item in work {
            let (migration, direction) = (item.migration(), item.direction());
            let script = match item {
                Work::Revert(_) => migration
                    .down
                    .as_ref()
                    .expect("planned reverts have down files"),
                Work::Apply(_) | Work::Repeat(_) => &migration.up,
            };
            let resume_at = match item {
                Work::Apply(step) => step.resume_at,
                Work::Revert(_) | Work::Repeat(_) => 0,
            };
            let timeouts = self.settings.guards.timeouts(&script.directives, 0);
            events(Event::Planned {
                id: migration.id(),
                direction,
                sql: dryrun::render(
                    migration,
                    script,
                    direction,
                    timeouts,
                    &self.history,
                    resume_at,
                ),
            });
        }
        Report {
            dry_run: true,
            migrations: work.iter().map(|w| w.done(Duration::ZERO)).collect(),
            checks: Vec::new(),
        }
    }
}

/// One file a run applies, reverts or applies again.
#[derive(Debug, Clone, Copy)]
enum Work<'m> {
    Apply(UpStep<'m>),
    Revert(&'m Migration),
    Repeat(&'m Repeatable),
}

impl<'m> Work<'m> {
    fn migration(&self) -> &'m Migration {
        match self {
            Self::Apply(step) => step.migration,
            Self::Revert(migration) => migration,
            Self::Repeat(repeatable) => repeatable.as_migration(),
        }
    }

    fn direction(&self) -> Direction {
        match self {
            Self::Apply(_) => Direction::Up,
            Self::Revert(_) => Direction::Down,
            Self::Repeat(_) => Direction::Repeat,
        }
    }

    fn done(&self, duration: Duration) -> Done {
        let mut done = done(self.migration(), duration);
        if let Self::Repeat(_) = self {
            done.version = None;
        }
        done
    }
}

/// An `up`: the versioned steps, then the repeatable migrations.
fn up_work<'m>(steps: &[UpStep<'m>], repeats: &[&'m Repeatable]) -> Vec<Work<'m>> {
    steps
        .iter()
        .copied()
        .map(Work::Apply)
        .chain(repeats.iter().copied().map(Work::Repeat))
        .collect()
}

/// Releases the runner lock; a failure to unlock still closes the connection, which frees it.
async fn release(lock: AdvisoryLock) {
    if let Err(error) = lock.release().await {
        tracing::warn!("{error}; the lock was freed by closing its connection");
    }
}

fn done(migration: &Migration, duration: Duration) -> Done {
    Done {
        id: migration.id(),
        version: Some(migration.version),
        duration_ms: u64::try_from(duration.as_millis()).unwrap_or(u64::MAX),
    }
}

fn messages(gates: &[ClosedGate]) -> Vec<String> {
    gates.iter().map(ToString::to_string).collect()
}

fn ids(report: &Report) -> Vec<Done> {
    report.migrations.clone()
}
