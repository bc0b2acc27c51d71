//! `sluice roundtrip`: runs the round trip on a scratch database and reports.

use super::error::CliError;
use crate::migrator::{Migrator, RunnerSettings};
use crate::roundtrip::{self, Verdict};
use sluice_common::exit;
use sluice_common::shutdown::Shutdown;
use sluice_common::{errln, outln};

use crate::scratch::{Scratch, ScratchServer};

pub async fn run(
    settings: RunnerSettings,
    server: &ScratchServer,
    shutdown: &Shutdown,
) -> Result<u8, CliError> {
    // Every file runs there, ups and downs: all of them are checked before anything runs.
    let files = Migrator::load(settings.clone())?;
    let scripts = files
        .files()
        .iter()
        .flat_map(|m| std::iter::once(&m.up).chain(&m.down))
        .map(|s| (s.path.as_path(), s.sql.as_str()));
    shutdown.defer_second_signal();
    let scratch = Scratch::create(&settings, "roundtrip", server, scripts).await?;
    super::scratch::place(&scratch.place, false);
    // A shutdown ends the statement in flight at once: the scratch database is dropped under
    // it.
    let result = tokio::select! {
        result = check(&scratch.settings, shutdown) => result,
        () = shutdown.requested() => {
            errln!("sluice: interrupted: the scratch database is dropped; nothing was changed");
            Ok(exit::INTERRUPTED)
        }
    };
    super::scratch::said(&scratch.drop().await, false);
    result
}

async fn check(settings: &RunnerSettings, shutdown: &Shutdown) -> Result<u8, CliError> {
    let migrator = Migrator::load(settings.clone())?;
    let verdicts = roundtrip::roundtrip(&migrator, shutdown).await?;
    let mut failures = 0;
    for (id, verdict) in &verdicts {
        if verdict.is_failure() {
            failures += 1;
        }
        match verdict {
            Verdict::Sound => {
                outln!("ok        {id}: down restores the schema, up runs again")
            }
            Verdict::Irreversible => outln!("skipped   {id}: no down file"),
            Verdict::UpFailed(e) => outln!("FAILED    {id}: up failed: {e}"),
            Verdict::DownFailed(e) => outln!("FAILED    {id}: down failed: {e}"),
            Verdict::ReapplyFailed(e) => {
                outln!("FAILED    {id}: up cannot run again after down: {e}")
            }
            Verdict::DownMismatch(diff) => {
                outln!(
                    "FAILED    {id}: down does not restore the schema (- before up, + after down):"
                );
                diff.iter().for_each(|line| outln!("            {line}"));
            }
            Verdict::ReapplyMismatch(diff) => {
                outln!(
                    "FAILED    {id}: up run again gives another schema (- first up, + second up):"
                );
                diff.iter().for_each(|line| outln!("            {line}"));
            }
        }
    }
    outln!("{} migration(s) checked, {failures} failed", verdicts.len());
    Ok(if failures == 0 {
        exit::OK
    } else {
        exit::FAILED
    })
}
