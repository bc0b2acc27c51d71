//! `sluice roundtrip`: creates a scratch database next to the configured one, runs the round
//! trip there, reports, and drops the scratch database whatever happened.

use sluice_common::db::{self, ConnectSettings};
use sluice_common::exit;
use sluice_common::redact::SecretUrl;
use sluice_common::shutdown::Shutdown;
use sluice_runner::migrator::{Migrator, RunnerSettings};
use sluice_runner::roundtrip::{self, Verdict};
use sqlx::{AssertSqlSafe, Connection};

pub async fn run(settings: RunnerSettings, shutdown: &Shutdown) -> anyhow::Result<u8> {
    let name = format!(
        "sluice_roundtrip_{}_{:04x}",
        std::process::id(),
        fastrand::u16(..)
    );
    let mut admin = db::connect(&settings.connect).await?;
    sqlx::raw_sql(AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
        .execute(&mut admin)
        .await
        .map_err(|e| {
            anyhow::anyhow!(
                "cannot create the scratch database {name} (the role needs CREATEDB): {e}"
            )
        })?;
    println!("scratch database {name} created");
    let result = check(&settings, &name, shutdown).await;
    let dropped = sqlx::raw_sql(AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
    )))
    .execute(&mut admin)
    .await;
    let _ = admin.close().await;
    match dropped {
        Ok(_) => println!("scratch database {name} dropped"),
        Err(e) => {
            eprintln!("sluice: could not drop the scratch database {name}: {e}; drop it by hand")
        }
    }
    result
}

async fn check(settings: &RunnerSettings, name: &str, shutdown: &Shutdown) -> anyhow::Result<u8> {
    let mut url = url::Url::parse(settings.connect.url.expose())
        .map_err(|e| anyhow::anyhow!("roundtrip needs a URL-form database URL: {e}"))?;
    url.set_path(&format!("/{name}"));
    let scratch = RunnerSettings {
        connect: ConnectSettings {
            url: SecretUrl::new(url.to_string()),
            ..settings.connect.clone()
        },
        lint_gate: false,
        ..settings.clone()
    };
    let migrator = Migrator::load(scratch)?;
    let verdicts = roundtrip::roundtrip(&migrator, shutdown).await?;
    let mut failures = 0;
    for (id, verdict) in &verdicts {
        if verdict.is_failure() {
            failures += 1;
        }
        match verdict {
            Verdict::Sound => println!("ok        {id}: down restores the schema, up runs again"),
            Verdict::Irreversible => println!("skipped   {id}: no down file"),
            Verdict::UpFailed(e) => println!("FAILED    {id}: up failed: {e}"),
            Verdict::DownFailed(e) => println!("FAILED    {id}: down failed: {e}"),
            Verdict::ReapplyFailed(e) => {
                println!("FAILED    {id}: up cannot run again after down: {e}")
            }
            Verdict::DownMismatch(diff) => {
                println!(
                    "FAILED    {id}: down does not restore the schema (- before up, + after down):"
                );
                diff.iter().for_each(|line| println!("            {line}"));
            }
            Verdict::ReapplyMismatch(diff) => {
                println!(
                    "FAILED    {id}: up run again gives another schema (- first up, + second up):"
                );
                diff.iter().for_each(|line| println!("            {line}"));
            }
        }
    }
    println!("{} migration(s) checked, {failures} failed", verdicts.len());
    Ok(if failures == 0 {
        exit::OK
    } else {
        exit::FAILED
    })
}
