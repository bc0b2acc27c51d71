//! `sluice drift`: the live schema against the schema its applied migrations produce on a
//! scratch database, or against a committed schema file loaded into one.

use std::path::Path;

use serde_json::json;
use sluice_common::exit;
use sluice_common::outln;
use sluice_common::shutdown::Shutdown;
use sluice_runner::migrator::{Migrator, RunnerSettings};
use sluice_runner::{catalog, schema_dump};

use super::scratch::Scratch;

pub async fn run(
    settings: RunnerSettings,
    json: bool,
    schema_file: Option<&Path>,
    shutdown: &Shutdown,
) -> anyhow::Result<u8> {
    // Read the file first: a wrong path should not cost a scratch database.
    let schema_sql = schema_file.map(read_schema_file).transpose()?;
    let exclude = [settings.schema.as_str()];
    let mut conn = sluice_common::db::connect(&settings.connect).await?;
    let live_schema = catalog::snapshot(&mut conn, &exclude).await?;
    let scratch = Scratch::create(&settings, "drift").await?;
    let expected = match &schema_sql {
        Some(sql) => loaded_schema(&scratch.settings, sql, &exclude).await,
        None => migrated_schema(&settings, &scratch.settings, &exclude, shutdown).await,
    };
    scratch.drop().await;
    let differences = catalog::diff(&expected?, &live_schema);
    let source = schema_file.map_or_else(
        || "what the applied migrations produce".to_owned(),
        |path| path.display().to_string(),
    );
    if json {
        outln!(
            "{}",
            json!({ "drift": !differences.is_empty(), "against": source, "differences": differences })
        );
    } else if differences.is_empty() {
        outln!("no drift: the live schema is {source}");
    } else {
        outln!("drift (- only in {source}, + only in the live database):");
        differences.iter().for_each(|line| outln!("  {line}"));
    }
    Ok(if differences.is_empty() {
        exit::OK
    } else {
        exit::SCHEMA_DRIFT
    })
}

fn read_schema_file(path: &Path) -> anyhow::Result<String> {
    std::fs::read_to_string(path).map_err(|e| {
        anyhow::anyhow!(
            "cannot read the schema file {}: {e}; write it with `sluice up --dump-schema {}`",
            path.display(),
            path.display()
        )
    })
}

/// Loads a schema file into the scratch database and snapshots it.
async fn loaded_schema(
    scratch: &RunnerSettings,
    sql: &str,
    exclude: &[&str],
) -> anyhow::Result<Vec<String>> {
    let mut conn = sluice_common::db::connect(&scratch.connect).await?;
    sqlx::raw_sql(sqlx::AssertSqlSafe(schema_dump::loadable(sql)))
        .execute(&mut conn)
        .await
        .map_err(|e| {
            anyhow::anyhow!("the schema file does not load into a scratch database: {e}")
        })?;
    Ok(catalog::snapshot(&mut conn, exclude).await?)
}

/// Applies the migrations the live database has applied (up to its newest) on the scratch
/// database and snapshots it.
async fn migrated_schema(
    live: &RunnerSettings,
    settings: &RunnerSettings,
    exclude: &[&str],
    shutdown: &Shutdown,
) -> anyhow::Result<Vec<String>> {
    let recorded = Migrator::load(live.clone())?.recorded().await?;
    let newest = recorded.applied.iter().map(|a| a.version).max();
    let migrator = Migrator::load(settings.clone())?;
    if let Some(newest) = newest {
        migrator
            .up(Some(newest), false, shutdown, &mut |_| {})
            .await?;
    }
    let mut conn = sluice_common::db::connect(migrator.connect_settings()).await?;
    Ok(catalog::snapshot(&mut conn, exclude).await?)
}
