//! Command-line interface of `sluice`: parses arguments, resolves settings, runs one command
//! of the engine, renders its events and maps the result to an exit code.

// Output goes through sluice_common::{outln, out, errln}, which survive a closed pipe.
#![deny(clippy::print_stdout, clippy::print_stderr)]

mod drift;
mod error;
mod lint;
mod metrics;
mod new;
mod render;
mod repeatables;
mod roundtrip;
mod scratch;
mod settings;
mod trace;

use std::process::ExitCode;

use crate::error::RunnerError;
use crate::layout::{Choice, Form};
use crate::migrator::{Execution, Migrator};
use crate::plan::{self, DownTarget};
use crate::scratch::ScratchServer;
use crate::source;
use crate::startup::Newer;
use clap::{Parser, Subcommand};
use sluice_common::cli::{Generated, GlobalArgs, render_config_rows};
use sluice_common::exit;
use sluice_common::redact::SecretUrl;
use sluice_common::{errln, out, outln};

use self::error::CliError;
use self::render::Renderer;
use self::settings::RunnerArgs;

const PROGRAM: &str = "sluice";

/// sluice: apply PostgreSQL schema migrations without downtime.
///
/// Migrations are SQL files in ./migrations (`<version>_<name>.sql`, or `.up.sql` with a
/// `.down.sql`). Each runs in its own transaction with its history row, under lock_timeout
/// and statement_timeout, one runner at a time.
#[derive(Debug, Parser)]
#[command(name = PROGRAM, version, propagate_version = true)]
struct Cli {
    #[command(flatten)]
    global: GlobalArgs,
    #[command(flatten)]
    runner: RunnerArgs,
    #[command(subcommand)]
    command: Command,
}

/// How `trace` judges and where it runs.
#[derive(Debug, Clone, clap::Args)]
pub struct TraceOptions {
    /// A blocking lock held while a table with more rows than this (the real database's
    /// estimate) is scanned or rewritten stops the trace with exit 8.
    #[arg(long, value_name = "ROWS", default_value_t = crate::trace::DEFAULT_MAX_ROWS)]
    pub max_rows: i64,
    #[command(flatten)]
    pub scratch: ScratchArgs,
}

/// Where `trace`, `roundtrip` and `drift` make their scratch database. Migrations run there
/// for real, so by default it is on a PostgreSQL server of sluice's own (started from the
/// installed server binaries, removed afterwards), never on the production cluster.
#[derive(Debug, Clone, clap::Args)]
pub struct ScratchArgs {
    /// Make the scratch database on this server instead of one of sluice's own: a URL whose
    /// database sluice connects to in order to create it. It must be another cluster than the
    /// real database's (sluice compares their system identifiers).
    #[arg(
        long,
        value_name = "URL",
        env = "SLUICE_SCRATCH_URL",
        hide_env_values = true,
        conflicts_with = "scratch_on_target"
    )]
    pub scratch_url: Option<String>,
    /// Make the scratch database on the real database's server (where no other server can
    /// be had): files with a statement that reaches beyond their database (roles, databases,
    /// tablespaces, server settings, other sessions, the host's files, other servers, DO
    /// blocks) are refused, exit 3.
    #[arg(long, env = "SLUICE_SCRATCH_ON_TARGET", value_parser = clap::builder::FalseyValueParser::new())]
    pub scratch_on_target: bool,
}

impl ScratchArgs {
    pub fn server(&self) -> ScratchServer {
        match (&self.scratch_url, self.scratch_on_target) {
            (Some(url), _) => ScratchServer::Url(SecretUrl::new(url.clone())),
            (None, true) => ScratchServer::Target,
            (None, false) => ScratchServer::Own,
        }
    }
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create a new migration file: migrations/<UTC timestamp>_<name>.sql; or, with
    /// --pattern, scaffold a zero-downtime change (expand migration with its dual-write
    /// trigger, backfill job, contract migration gated on the job).
    New {
        /// snake_case name, e.g. add_users_email (also the backfill job's name).
        name: String,
        /// Create <name>.up.sql and <name>.down.sql, so `sluice down` can revert it.
        #[arg(long, conflicts_with = "pattern")]
        reversible: bool,
        #[command(flatten)]
        scaffold: new::ScaffoldArgs,
    },
    /// Apply pending migrations in version order.
    Up {
        /// Apply up to and including this version only.
        #[arg(long, value_name = "VERSION")]
        to: Option<String>,
        /// Print the exact SQL and settings that would run; change nothing.
        #[arg(long)]
        dry_run: bool,
        /// With --dry-run: also trace the pending migrations' locks and rewrites on a scratch
        /// database (as `sluice trace`).
        #[arg(long, requires = "dry_run")]
        trace: bool,
        #[command(flatten)]
        trace_options: TraceOptions,
        /// Print the result as one JSON document on stdout.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        post_apply: settings::PostApplyArgs,
    },
    /// Revert applied migrations, newest first, with their .down.sql files.
    Down {
        /// Revert this many migrations [default: 1].
        #[arg(long, value_name = "N", conflicts_with = "to")]
        steps: Option<usize>,
        /// Revert every migration newer than this version.
        #[arg(long, value_name = "VERSION")]
        to: Option<String>,
        /// Print the exact SQL and settings that would run; change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Print the result as one JSON document on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Show applied, pending, edited and missing migrations.
    Status {
        /// Print one JSON document on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Exit non-zero when anything is pending (7), or edited, missing or out of order (6):
    /// for CI and for applications that refuse to start against an unmigrated database.
    Check {
        /// Judge as an application start-up does (an init container): a contract migration
        /// waiting for its backfill job is reported, with the job's progress, but does not
        /// count as pending; anything ordered after it still does.
        #[arg(long)]
        startup: bool,
        /// With --startup: let an older build start on a database a newer build migrated,
        /// when every migration it does not know is newer than all it knows (an application
        /// rolled back after an expand migration). One between known ones still refuses.
        #[arg(long, requires = "startup")]
        allow_newer: bool,
    },
    /// Check the migration files without a database: names, versions, pairs, directives;
    /// with --since, also that no migration merged at that git ref was edited, renamed or
    /// deleted, and that new ones are newer than the newest merged one (exit 6 otherwise).
    Validate {
        /// A git ref (branch, tag, commit) whose migrations are immutable, e.g. origin/main.
        #[arg(long, value_name = "GIT_REF")]
        since: Option<String>,
    },
    /// Find dangerous operations with a PostgreSQL parser (squawk's rules and sluice's own);
    /// exits 8 when one is not approved by its file.
    Lint {
        /// Files to lint [default: every migration, up and down, in the migrations directory].
        files: Vec<std::path::PathBuf>,
        /// human, json, or github (workflow annotations).
        #[arg(long, value_enum, default_value = "human")]
        format: lint::Format,
        /// List the rules: why each matters, what to do instead, and whether it blocks.
        #[arg(long)]
        rules: bool,
        /// Accept every blocking finding of the directory as it is now, in
        /// migrations/sluice-lint-baseline.toml (commit it): for adopting an existing history.
        #[arg(long, conflicts_with_all = ["files", "rules"])]
        write_baseline: bool,
    },
    /// The rollback test, as one command: on a scratch database (created and dropped on the
    /// server), apply every migration, revert each reversible one and apply it again,
    /// comparing catalogs; names each migration whose down or second up differs.
    Roundtrip {
        #[command(flatten)]
        scratch: ScratchArgs,
    },
    /// What each pending migration (or each named file) would lock and rewrite: run on a
    /// scratch database statement by statement, sized against the real tables (catalog
    /// statistics only; the real database is not changed or locked). Exit 8 when a lock that
    /// blocks reads or writes is held while a table over --max-rows is scanned or rewritten,
    /// unless the file approves blocking-lock-on-large-table.
    Trace {
        /// Up files to trace, pending or not [default: every pending migration].
        files: Vec<std::path::PathBuf>,
        /// human, json, or github (workflow annotations).
        #[arg(long, value_enum, default_value = "human")]
        format: lint::Format,
        /// Same as --format json.
        #[arg(long, conflicts_with = "format")]
        json: bool,
        #[command(flatten)]
        options: TraceOptions,
    },
    /// Compare the live schema with the one its applied migrations produce (on a scratch
    /// database), or with a committed schema file: tables, columns, types, defaults,
    /// indexes, constraints, triggers, functions; exit 9 when they differ.
    Drift {
        /// Print one JSON document on stdout.
        #[arg(long)]
        json: bool,
        /// Compare with this schema file (written by `sluice up --dump-schema`) instead of
        /// applying the migrations.
        #[arg(long, value_name = "FILE")]
        schema_file: Option<std::path::PathBuf>,
        #[command(flatten)]
        scratch: ScratchArgs,
    },
    /// Mark an existing database as migrated up to VERSION without running any file (for
    /// adopting sluice on a database whose schema already has those migrations).
    #[command(disable_version_flag = true)]
    Baseline {
        #[arg(long, value_name = "VERSION")]
        version: String,
    },
    /// Approve pending migrations as their files are now, recorded in the database's audit
    /// table: in an environment with require_approval, `up` applies only approved ones, and
    /// an edit to the file after its approval voids it.
    Approve {
        /// Versions (or whole names) of the pending migrations to approve.
        #[arg(required = true, value_name = "VERSION")]
        versions: Vec<String>,
        /// What was reviewed and why it may run (required; recorded with the actor).
        #[arg(long, value_parser = non_empty)]
        reason: String,
    },
    /// Accept an intentionally edited migration that is already applied: its recorded
    /// checksum becomes the file's, with the reason and actor in the audit table.
    Repair {
        #[arg(long, value_name = "VERSION")]
        accept_checksum: String,
        /// Why the edit is safe (required; recorded).
        #[arg(long, value_parser = non_empty)]
        reason: String,
    },
    /// Copy another tool's migration history into sluice's, so a team switches with one
    /// command (the files stay where they are).
    Import {
        #[arg(long, value_enum)]
        from: ImportFrom,
    },
    /// Show the effective settings and where each comes from.
    Config,
    /// Print a completion script for a shell: `source <(sluice completions bash)`, or write it
    /// where the shell looks (the image installs bash, zsh and fish ones).
    Completions {
        #[arg(value_enum)]
        shell: sluice_common::cli::Shell,
    },
    /// Print the manual page (roff): `sluice man > /usr/local/share/man/man1/sluice.1`.
    Man,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum ImportFrom {
    /// `_sqlx_migrations` (checksums verified against the files).
    Sqlx,
    /// `schema_migrations` (newest version; a dirty one is refused).
    GolangMigrate,
    /// `__diesel_schema_migrations` (diesel's `<version>_<name>/up.sql` directories).
    Diesel,
    /// `schema_migrations` with dbmate's text versions (no dirty column).
    Dbmate,
    /// `goose_db_version` (the newest row of each version says whether it is applied).
    Goose,
    /// `gorp_migrations` (applied files by name).
    SqlMigrate,
    /// `flyway_schema_history` (successful rows; a failed one is refused; a baseline counts).
    Flyway,
}

fn non_empty(text: &str) -> Result<String, String> {
    if text.trim().is_empty() {
        Err("must not be empty".into())
    } else {
        Ok(text.trim().to_owned())
    }
}

pub fn main() -> ExitCode {
    sluice_common::cli::main::<Cli, _>(PROGRAM, run, exit_code_of)
}

/// Runs the command; with `--json`, an error that stops it before its own document is
/// written (no database URL, an invalid setting) still comes out as one JSON document.
async fn run(cli: Cli, matches: &clap::ArgMatches) -> Result<u8, CliError> {
    let json = cli.command.json_name();
    match (run_command(cli, matches).await, json) {
        (Err(error), Some(command)) => {
            let code = exit_code_of(&error);
            let mut document = serde_json::json!({
                "command": command,
                "ok": false,
                "error": {
                    "message": sluice_common::cli::error_chain(&error),
                    "exit_code": code,
                },
            });
            if matches!(command, "up" | "down") {
                document["migrations"] = serde_json::json!([]);
            }
            outln!("{document}");
            Ok(code)
        }
        (result, _) => result,
    }
}

impl Command {
    /// Whether the command connects as soon as its files are read: `Some(true)` to a primary
    /// (it takes the migration lock), `Some(false)` to any server.
    fn connects_first(&self) -> Option<bool> {
        match self {
            _ if self.changes_schema() => Some(true),
            Self::Status { .. } => Some(false),
            _ => None,
        }
    }

    /// `up` or `down` for real: what an environment's backup and approval rules guard.
    fn changes_schema(&self) -> bool {
        matches!(
            self,
            Self::Up { dry_run: false, .. } | Self::Down { dry_run: false, .. }
        )
    }

    /// The command's name when it was asked for JSON output.
    fn json_name(&self) -> Option<&'static str> {
        match self {
            Self::Up { json: true, .. } => Some("up"),
            Self::Down { json: true, .. } => Some("down"),
            Self::Status { json: true } => Some("status"),
            Self::Drift { json: true, .. } => Some("drift"),
            _ => None,
        }
    }
}

async fn run_command(cli: Cli, matches: &clap::ArgMatches) -> Result<u8, CliError> {
    // Read nothing, connect nowhere: printed from the definition of the command line.
    let generated = match cli.command {
        Command::Completions { shell } => Some(Generated::Completions(shell)),
        Command::Man => Some(Generated::Man),
        _ => None,
    };
    if let Some(generated) = generated {
        generated
            .print::<Cli>()
            .map_err(|e| CliError::Write(format!("cannot print it: {e}")))?;
        return Ok(exit::OK);
    }
    let startup = sluice_common::cli::start(&cli.global, matches, PROGRAM)?;
    let resolved = settings::resolve(&cli.runner, matches, &startup)?;
    match cli.command {
        Command::Config => {
            let rows = settings::config_rows(&startup, &resolved);
            out!("{}", render_config_rows(&startup, &rows));
            Ok(exit::OK)
        }
        Command::New {
            name,
            reversible,
            scaffold,
        } => match scaffold.pattern {
            Some(_) => {
                let jobs_dir = scaffold
                    .jobs
                    .clone()
                    .or_else(|| startup.file.backfill.jobs.clone())
                    .unwrap_or_else(|| "jobs".into());
                new::scaffold(&resolved.migrations_dir, &jobs_dir, &name, &scaffold)
            }
            None => new::create(&resolved.migrations_dir, &name, reversible, resolved.layout),
        },
        Command::Validate { since } => {
            startup.shutdown.stop_at_once();
            validate(&resolved.migrations_dir, resolved.layout, since.as_deref())
        }
        Command::Lint {
            files,
            format,
            rules,
            write_baseline,
        } => {
            startup.shutdown.stop_at_once();
            lint::run(
                (&resolved.migrations_dir, resolved.layout),
                &files,
                lint::Ask {
                    format,
                    rules,
                    write_baseline,
                },
                &resolved.lint,
            )
        }
        Command::Roundtrip { scratch } => {
            roundtrip::run(
                resolved.into_runner(&startup)?,
                &scratch.server(),
                &startup.shutdown,
            )
            .await
        }
        Command::Drift {
            json,
            schema_file,
            scratch,
        } => drift::run(
            resolved.into_runner(&startup)?,
            json,
            schema_file.as_deref(),
            &scratch.server(),
            &startup.shutdown,
            &metrics::RunMetrics::start(cli.runner.metrics_file.clone())?,
        )
        .await
        .map_err(CliError::from),
        command => {
            let mut runner = resolved.into_runner(&startup)?;
            if command.changes_schema() {
                sluice_common::environment::check_backup(
                    startup.environment.as_ref(),
                    runner.backup.as_ref().map(|b| &b.dir),
                )
                .map_err(sluice_common::config::ConfigError::Environment)?;
            }
            if let Command::Up { post_apply, .. } = &command {
                runner.post_apply = post_apply.resolve().map_err(RunnerError::from)?;
            }
            let metrics = metrics::RunMetrics::start(cli.runner.metrics_file.clone())?;
            // The first connection is made while the files are read.
            if let Some(primary) = command.connects_first() {
                sluice_common::db::open_ahead(&runner.connect, primary);
            }
            let migrator = tokio::task::spawn_blocking(move || Migrator::load(runner))
                .await
                .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))?;
            run_against_database(
                &migrator,
                command,
                &startup,
                &metrics,
                cli.runner.max_runtime,
            )
            .await
        }
    }
}

async fn run_against_database(
    migrator: &Migrator,
    command: Command,
    startup: &sluice_common::cli::Startup,
    metrics: &metrics::RunMetrics,
    max_runtime: Option<std::time::Duration>,
) -> Result<u8, CliError> {
    let shutdown = &startup.shutdown;
    if let Some(limit) = max_runtime {
        let deadline = shutdown.clone();
        tokio::spawn(async move {
            tokio::time::sleep(limit).await;
            tracing::warn!(
                "--max-runtime {} reached: stopping; a statement in flight is cancelled and \
                 rolls back, and the same command continues later",
                humantime::format_duration(limit)
            );
            deadline.trigger();
        });
    }
    match command {
        Command::Up {
            to,
            dry_run,
            json,
            trace,
            trace_options,
            ..
        } => {
            let target = to
                .as_deref()
                .map(|v| parse_version(migrator, v))
                .transpose()?;
            let mut renderer = Renderer::new(json, dry_run);
            let result = migrator
                .up(target, run_mode(dry_run), shutdown, &mut |e| {
                    metrics.event(&e);
                    renderer.event(&e);
                })
                .await;
            metrics.finish("up", result.as_ref().err());
            let code = renderer.finish("up", result);
            if !trace {
                return Ok(code);
            }
            outln!("");
            let ask = trace::Ask {
                files: Vec::new(),
                format: if json {
                    lint::Format::Json
                } else {
                    lint::Format::Human
                },
                max_rows: trace_options.max_rows,
                scratch: trace_options.scratch.server(),
            };
            let traced = trace::run(migrator, &ask, shutdown).await?;
            Ok(if code == exit::OK { traced } else { code })
        }
        Command::Trace {
            files,
            format,
            json,
            options,
        } => {
            let ask = trace::Ask {
                files,
                format: if json { lint::Format::Json } else { format },
                max_rows: options.max_rows,
                scratch: options.scratch.server(),
            };
            trace::run(migrator, &ask, shutdown).await
        }
        Command::Down {
            steps,
            to,
            dry_run,
            json,
        } => {
            let target = match to {
                Some(v) => DownTarget::To(parse_version(migrator, &v)?),
                None => DownTarget::Steps(steps.unwrap_or(1)),
            };
            let mut renderer = Renderer::new(json, dry_run);
            let result = migrator
                .down(target, run_mode(dry_run), shutdown, &mut |e| {
                    metrics.event(&e);
                    renderer.event(&e);
                })
                .await;
            metrics.finish("down", result.as_ref().err());
            Ok(renderer.finish("down", result))
        }
        Command::Status { json } => {
            let recorded = migrator.recorded().await?;
            let entries = migrator.status(&recorded);
            render::status(migrator, &entries, &recorded, json)?;
            Ok(exit::OK)
        }
        Command::Baseline { version } => {
            let report = migrator
                .baseline(parse_version(migrator, &version)?, shutdown, &mut |_| {})
                .await?;
            for done in &report.migrations {
                outln!("recorded as applied (not run): {}", done.id);
            }
            outln!(
                "baseline at {version}: {} migration(s) recorded",
                report.migrations.len()
            );
            Ok(exit::OK)
        }
        Command::Approve { versions, reason } => {
            let approved = migrator
                .approve(&versions, &reason, shutdown, &mut |_| {})
                .await?;
            for id in &approved {
                outln!("approved {id} as its file is now");
            }
            outln!(
                "{} migration(s) approved; an edit to a file voids its approval",
                approved.len()
            );
            Ok(exit::OK)
        }
        Command::Repair {
            accept_checksum,
            reason,
        } => {
            let (old, new) = migrator
                .repair(
                    parse_version(migrator, &accept_checksum)?,
                    &reason,
                    shutdown,
                )
                .await?;
            outln!(
                "accepted the edited file of migration {accept_checksum}: checksum {old} -> {new} (audited)"
            );
            Ok(exit::OK)
        }
        Command::Import { from } => {
            let tool = match from {
                ImportFrom::Sqlx => crate::import::Tool::Sqlx,
                ImportFrom::GolangMigrate => crate::import::Tool::GolangMigrate,
                ImportFrom::Diesel => crate::import::Tool::Diesel,
                ImportFrom::Dbmate => crate::import::Tool::Dbmate,
                ImportFrom::Goose => crate::import::Tool::Goose,
                ImportFrom::SqlMigrate => crate::import::Tool::SqlMigrate,
                ImportFrom::Flyway => crate::import::Tool::Flyway,
            };
            let report = migrator.import(tool, shutdown).await?;
            for done in &report.migrations {
                outln!("imported {}", done.id);
            }
            outln!(
                "imported {} migration(s) from {}'s history",
                report.migrations.len(),
                tool.name()
            );
            Ok(exit::OK)
        }
        Command::Check {
            startup,
            allow_newer,
        } => {
            let recorded = migrator.recorded().await?;
            let entries = migrator.status(&recorded);
            metrics.check(&entries);
            if startup {
                let newer = if allow_newer {
                    Newer::Allow
                } else {
                    Newer::Refuse
                };
                return Ok(render::check_startup(migrator, &entries, &recorded, newer));
            }
            Ok(render::check(migrator, &entries, &recorded))
        }
        Command::New { .. }
        | Command::Validate { .. }
        | Command::Lint { .. }
        | Command::Roundtrip { .. }
        | Command::Drift { .. }
        | Command::Config
        | Command::Completions { .. }
        | Command::Man => {
            unreachable!("handled offline")
        }
    }
}

fn validate(dir: &std::path::Path, layout: Choice, since: Option<&str>) -> Result<u8, CliError> {
    let loaded = source::load_checked(dir, layout).map_err(RunnerError::from)?;
    let migrations = &loaded.migrations;
    // An empty down section is how dbmate, goose and sql-migrate files say "nothing to
    // revert"; an empty file of its own is more likely a mistake.
    let own_down = |m: &&source::Migration| !matches!(m.form, Form::Sections(_));
    for script in migrations
        .iter()
        .flat_map(|m| {
            std::iter::once(&m.up).chain(Some(m).filter(own_down).and_then(|m| m.down.as_ref()))
        })
        .filter(|s| s.is_empty())
    {
        errln!(
            "sluice: warning: {} holds no statement (empty, or only comments); applying it \
             records a migration that did nothing",
            script.path.display()
        );
    }
    if let Some(git_ref) = since {
        let changes = crate::since::changes_since(dir, git_ref)?;
        if !changes.is_empty() {
            for change in &changes {
                errln!("sluice: {}/{change}", dir.display());
            }
            errln!(
                "sluice: {} migration file(s) changed since {git_ref}; merged migrations are immutable",
                changes.len()
            );
            return Ok(exit::HISTORY_DRIFT);
        }
        outln!("no merged migration changed since {git_ref}");
    }
    match (migrations.first(), migrations.last()) {
        (Some(first), Some(last)) => outln!(
            "{} migrations in {} are valid ({} to {}), read as {}",
            migrations.len(),
            dir.display(),
            first.id(),
            last.id(),
            loaded.layout.describe()
        ),
        _ if loaded.repeatables.is_empty() => outln!("{} holds no migrations", dir.display()),
        _ => {}
    }
    if !loaded.repeatables.is_empty() {
        outln!(
            "{} repeatable migration(s) are valid ({}), applied after the versioned ones",
            loaded.repeatables.len(),
            loaded
                .repeatables
                .iter()
                .map(|r| r.id())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    Ok(exit::OK)
}

fn parse_version(migrator: &Migrator, text: &str) -> Result<source::Version, CliError> {
    source::version_named(migrator.files(), migrator.layout(), text).ok_or_else(|| {
        CliError::Runner(RunnerError::Plan(plan::PlanError::UnknownTarget(
            text.to_owned(),
        )))
    })
}

fn run_mode(dry_run: bool) -> Execution {
    if dry_run {
        Execution::DryRun
    } else {
        Execution::Apply
    }
}

fn exit_code_of(error: &CliError) -> u8 {
    error.exit_code()
}
