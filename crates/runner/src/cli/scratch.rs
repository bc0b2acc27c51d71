//! What the CLI says about a scratch database (`roundtrip`, `drift`).

use sluice_common::{errln, outln};

/// "scratch database X dropped" (not in JSON output), or the error naming what to drop.
pub fn said(dropped: &Result<String, String>, json: bool) {
    match dropped {
        Ok(name) if !json => outln!("scratch database {name} created, used and dropped"),
        Ok(_) => {}
        Err(problem) => errln!("sluice: {problem}"),
    }
}
