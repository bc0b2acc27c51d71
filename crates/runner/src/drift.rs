//! `sluice drift`: the live schema against the schema its applied migrations produce on a
//! scratch database, or against a committed schema file loaded into one.

use crate::migrator::Execution;
use std::path::{Path, PathBuf};

use sluice_common::db::{self, DbError};
use sluice_common::exit;
use sluice_common::shutdown::Shutdown;

use crate::catalog;
use crate::error::RunnerError;
use crate::migrator::{Migrator, RunnerSettings};
use crate::schema_dump;
use crate::scratch::{Scratch, ScratchError, ScratchServer};

/// What `drift` found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DriftReport {
    /// What the live schema was compared with, in words.
    pub against: String,
    /// `- ...` only in what the migrations (or the file) produce, `+ ...` only live.
    pub differences: Vec<String>,
    /// The scratch database used, and whether it was dropped (the error when not).
    pub scratch: Result<String, String>,
    /// Where the scratch database was ([`Scratch::place`]).
    pub place: String,
}

#[derive(Debug, thiserror::Error)]
pub enum DriftError {
    #[error(
        "{error}; write it with `sluice up --dump-schema {}`",
        path.display()
    )]
    ReadSchemaFile {
        path: PathBuf,
        error: sluice_common::input::InputError,
    },
    #[error(
        "the schema file {} does not load into a scratch database: {reason}; write it again \
         with `sluice up --dump-schema {}`",
        path.display(),
        path.display()
    )]
    SchemaFileDoesNotLoad { path: PathBuf, reason: String },
    #[error("reading a schema failed: {}", db::explain(.error))]
    Snapshot { error: sqlx::Error },
    #[error(
        "interrupted: the statement in flight was ended and the scratch database dropped; \
         nothing was changed"
    )]
    Interrupted,
    #[error(transparent)]
    Scratch(#[from] ScratchError),
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(transparent)]
    Runner(#[from] RunnerError),
}

impl DriftError {
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::ReadSchemaFile { .. } | Self::SchemaFileDoesNotLoad { .. } => exit::INVALID_INPUT,
            Self::Snapshot { .. } => exit::FAILED,
            Self::Interrupted => exit::INTERRUPTED,
            Self::Scratch(e) => e.exit_code(),
            Self::Db(e) => e.exit_code(),
            Self::Runner(e) => e.exit_code(),
        }
    }
}

/// Compares the live schema with what the applied migrations (or `schema_file`) produce, on a
/// scratch database made on `server`.
pub async fn drift(
    settings: &RunnerSettings,
    schema_file: Option<&Path>,
    server: &ScratchServer,
    shutdown: &Shutdown,
) -> Result<DriftReport, DriftError> {
    // Read the file first: a wrong path should not cost a scratch database.
    let schema_sql = schema_file
        .map(|path| {
            sluice_common::input::read_text(
                path,
                "schema file",
                sluice_common::input::MAX_SQL_BYTES,
            )
            .map_err(|error| DriftError::ReadSchemaFile {
                path: path.to_path_buf(),
                error,
            })
        })
        .transpose()?;
    let exclude = [settings.schema.as_str()];
    let mut conn = db::connect(&settings.connect).await?;
    let live = snapshot(&mut conn, &exclude).await?;
    let live_migrator = Migrator::load(settings.clone())?;
    let newest = live_migrator
        .recorded()
        .await?
        .applied
        .iter()
        .map(|a| a.version)
        .max();
    // What will run on the scratch database: the schema file, or the applied migrations.
    let runs: Vec<(&Path, &str)> = match (&schema_sql, schema_file) {
        (Some(sql), Some(path)) => vec![(path, sql.as_str())],
        _ => live_migrator
            .files()
            .iter()
            .filter(|m| newest.is_some_and(|newest| m.version <= newest))
            .map(|m| (m.up.path.as_path(), m.up.sql.as_str()))
            .collect(),
    };
    let scratch = Scratch::create(settings, "drift", server, runs).await?;
    // A shutdown ends the statement in flight at once: the scratch database is dropped
    // under it.
    let expected = tokio::select! {
        expected = async {
            match (&schema_sql, schema_file) {
                (Some(sql), Some(path)) => {
                    loaded_schema(&scratch.settings, path, sql, &exclude).await
                }
                _ => migrated_schema(&scratch.settings, newest, &exclude, shutdown).await,
            }
        } => Some(expected),
        () = shutdown.requested() => None,
    };
    let place = scratch.place.clone();
    let dropped = scratch.drop().await;
    let expected = expected.ok_or(DriftError::Interrupted)?;
    Ok(DriftReport {
        against: schema_file.map_or_else(
            || "what the applied migrations produce".to_owned(),
            |path| path.display().to_string(),
        ),
        differences: catalog::diff(&expected?, &live),
        scratch: dropped,
        place,
    })
}

async fn snapshot(
    conn: &mut sqlx::PgConnection,
    exclude: &[&str],
) -> Result<Vec<String>, DriftError> {
    catalog::snapshot(conn, exclude)
        .await
        .map_err(|error| DriftError::Snapshot { error })
}

/// Loads a schema file into the scratch database and snapshots it.
async fn loaded_schema(
    scratch: &RunnerSettings,
    path: &Path,
    sql: &str,
    exclude: &[&str],
) -> Result<Vec<String>, DriftError> {
    let mut conn = db::connect(&scratch.connect).await?;
    sqlx::raw_sql(sqlx::AssertSqlSafe(schema_dump::loadable(sql)))
        .execute(&mut conn)
        .await
        .map_err(|e| DriftError::SchemaFileDoesNotLoad {
            path: path.to_path_buf(),
            reason: db::explain(&e),
        })?;
    snapshot(&mut conn, exclude).await
}

/// Applies the migrations the live database has applied (up to its newest) on the scratch
/// database and snapshots it.
async fn migrated_schema(
    settings: &RunnerSettings,
    newest: Option<crate::source::Version>,
    exclude: &[&str],
    shutdown: &Shutdown,
) -> Result<Vec<String>, DriftError> {
    let migrator = Migrator::load(settings.clone())?;
    if let Some(newest) = newest {
        migrator
            .up(Some(newest), Execution::Apply, shutdown, &mut |_| {})
            .await?;
    }
    let mut conn = db::connect(migrator.connect_settings()).await?;
    snapshot(&mut conn, exclude).await
}
