//! The tracing subscriber: human lines or JSON on stderr. Installed by the binaries only;
//! libraries just emit events with fields.

use std::io::{IsTerminal, Write};

use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// Installs the global subscriber. `RUST_LOG`, when set, wins over `verbosity`
/// (-2 errors only, -1 warnings, 0 info, 1 debug, 2 trace).
pub fn init(format: LogFormat, verbosity: i8) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| default_filter(verbosity));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(|| ScrubbedStderr)
        // Its own complaint about a failed write is an `eprintln!`, which panics on a closed
        // pipe (`sluice-backfill run job 2>&1 | head`) and would abort the run.
        .log_internal_errors(false)
        .with_target(false);
    // A second init (tests calling main twice) keeps the first subscriber.
    let _ = match format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Text if std::io::stderr().is_terminal() => {
            builder.without_time().with_ansi(true).try_init()
        }
        LogFormat::Text => builder.with_ansi(false).try_init(),
    };
}

fn default_filter(verbosity: i8) -> EnvFilter {
    let level = match verbosity {
        i8::MIN..=-2 => "error",
        -1 => "warn",
        0 => "info",
        1 => "debug",
        2..=i8::MAX => "trace",
    };
    // The driver's own chatter is noise unless asked for with -vv.
    let driver = if verbosity >= 2 { level } else { "warn" };
    EnvFilter::new(format!("{level},sqlx={driver}"))
}

/// stderr, with every registered password masked (see [`crate::redact`]). The formatter hands
/// over one whole event per write, so a password is never split between two writes.
struct ScrubbedStderr;

impl Write for ScrubbedStderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        let scrubbed =
            crate::redact::scrub_registered(&crate::display::escape_controls(&text)).into_owned();
        std::io::stderr().write_all(scrubbed.as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}
