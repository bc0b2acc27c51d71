//! `sluice drift`: renders what the engine's drift check found.

use std::path::Path;

use crate::drift::{self, DriftError};
use crate::migrator::RunnerSettings;
use crate::scratch::ScratchServer;
use serde_json::json;
use sluice_common::exit;
use sluice_common::shutdown::Shutdown;
use sluice_common::{errln, outln};

pub async fn run(
    settings: RunnerSettings,
    json: bool,
    schema_file: Option<&Path>,
    server: &ScratchServer,
    shutdown: &Shutdown,
    metrics: &super::metrics::RunMetrics,
) -> Result<u8, DriftError> {
    shutdown.defer_second_signal();
    let report = drift::drift(&settings, schema_file, server, shutdown).await?;
    metrics.drift(report.differences.len());
    super::scratch::place(&report.place, json);
    super::scratch::said(&report.scratch, json);
    let (source, differences) = (&report.against, &report.differences);
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
    if let Err(problem) = &report.scratch {
        errln!("sluice: {problem}");
    }
    Ok(if differences.is_empty() {
        exit::OK
    } else {
        exit::SCHEMA_DRIFT
    })
}
