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

/// Where the scratch database is: every command that uses one says so (on stderr in JSON
/// output, which stays one document).
pub fn place(place: &str, json: bool) {
    if json {
        errln!("sluice: scratch database {place}");
    } else {
        outln!("scratch database {place}");
    }
}
