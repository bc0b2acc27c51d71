//! `sluice drift`: the live schema against the schema its applied migrations produce on a
//! scratch database.

use serde_json::json;
use sluice_common::exit;
use sluice_common::shutdown::Shutdown;
use sluice_runner::catalog;
use sluice_runner::migrator::{Migrator, RunnerSettings};

use super::scratch::Scratch;

pub async fn run(settings: RunnerSettings, json: bool, shutdown: &Shutdown) -> anyhow::Result<u8> {
    let live = Migrator::load(settings.clone())?;
    let recorded = live.recorded().await?;
    let newest = recorded.applied.iter().map(|a| a.version).max();
    let exclude = [live.history().schema().as_str()];
    let mut conn = sluice_common::db::connect(live.connect_settings()).await?;
    let live_schema = catalog::snapshot(&mut conn, &exclude).await?;
    let scratch = Scratch::create(&settings, "drift").await?;
    let expected = expected_schema(&scratch.settings, newest, &exclude, shutdown).await;
    scratch.drop().await;
    let differences = catalog::diff(&expected?, &live_schema);
    if json {
        println!(
            "{}",
            json!({ "drift": !differences.is_empty(), "differences": differences })
        );
    } else if differences.is_empty() {
        println!("no drift: the live schema is what the applied migrations produce");
    } else {
        println!("drift (- only in what the migrations produce, + only in the live database):");
        differences.iter().for_each(|line| println!("  {line}"));
    }
    Ok(if differences.is_empty() {
        exit::OK
    } else {
        exit::SCHEMA_DRIFT
    })
}

/// Applies the migrations up to `newest` (what the live database has applied) on the scratch
/// database and snapshots it.
async fn expected_schema(
    settings: &RunnerSettings,
    newest: Option<i64>,
    exclude: &[&str],
    shutdown: &Shutdown,
) -> anyhow::Result<Vec<String>> {
    let migrator = Migrator::load(settings.clone())?;
    if let Some(newest) = newest {
        migrator
            .up(Some(newest), false, shutdown, &mut |_| {})
            .await?;
    }
    let mut conn = sluice_common::db::connect(migrator.connect_settings()).await?;
    Ok(catalog::snapshot(&mut conn, exclude).await?)
}
