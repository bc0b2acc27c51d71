//! `sluice trace` (and `up --dry-run --trace`): which migrations to trace, and the trace as
//! text, JSON or GitHub annotations.

use super::error::CliError;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use crate::migrator::Migrator;
use crate::plan::State;
use crate::scratch::ScratchServer;
use crate::trace::{self, Held, Judged, RULE, Trace, Work};
use sluice_common::shutdown::Shutdown;
use sluice_common::{exit, outln};

use super::lint::{Format, escape};

/// What `trace` was asked for.
#[derive(Debug, Clone)]
pub struct Ask {
    pub files: Vec<PathBuf>,
    pub format: Format,
    pub max_rows: i64,
    pub scratch: ScratchServer,
}

pub async fn run(migrator: &Migrator, ask: &Ask, shutdown: &Shutdown) -> Result<u8, CliError> {
    let targets = match named(migrator, &ask.files) {
        Ok(Some(named)) => named,
        Ok(None) => pending(migrator).await?,
        Err(not_a_migration) => {
            sluice_common::errln!("sluice: {not_a_migration}; nothing was traced");
            return Ok(exit::INVALID_INPUT);
        }
    };
    if targets.is_empty() {
        outln!("nothing to trace: no migration is pending (name files to trace applied ones)");
        return Ok(exit::OK);
    }
    // The first signal ends the statement in flight; a second one must not exit before the
    // scratch database is dropped.
    shutdown.defer_second_signal();
    let traced = trace::run(
        migrator.files(),
        &targets,
        &ask.scratch,
        migrator.settings(),
        ask.max_rows,
        shutdown,
        &mut |place| super::scratch::place(place, !matches!(ask.format, Format::Human)),
    )
    .await;
    let traced = match traced {
        Ok(traced) => traced,
        Err(error) => {
            sluice_common::errln!("sluice: {error}");
            return Ok(error.exit_code());
        }
    };
    match ask.format {
        Format::Human => human(&traced),
        Format::Json => outln!("{}", serde_json::to_string(&traced)?),
        Format::Github => github(&traced),
    }
    Ok(if traced.blocked() {
        exit::BLOCKED
    } else {
        exit::OK
    })
}

/// The pending migrations.
async fn pending(migrator: &Migrator) -> Result<BTreeSet<i64>, CliError> {
    let recorded = migrator.recorded().await?;
    Ok(migrator
        .status(&recorded)
        .iter()
        .filter(|e| {
            matches!(
                e.state,
                State::Pending | State::OutOfOrder | State::Partial { .. }
            )
        })
        .map(|e| e.version)
        .collect())
}

/// The versions of the named files (pending or not); `None` when none is named; the error
/// names a file that is not an up file of the directory.
fn named(migrator: &Migrator, files: &[PathBuf]) -> Result<Option<BTreeSet<i64>>, String> {
    if files.is_empty() {
        return Ok(None);
    }
    files
        .iter()
        .map(|file| {
            migrator
                .files()
                .iter()
                .find(|m| same_file(&m.up.path, file))
                .map(|m| m.version)
                .ok_or_else(|| {
                    format!(
                        "{} is not an up file of the migrations directory {}",
                        file.display(),
                        migrator.settings().migrations_dir.display()
                    )
                })
        })
        .collect::<Result<_, _>>()
        .map(Some)
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

/// `AccessExclusiveLock` → `ACCESS EXCLUSIVE`.
fn mode_name(mode: &str) -> String {
    let mut words = Vec::new();
    let mut word = String::new();
    for c in mode.trim_end_matches("Lock").chars() {
        if c.is_uppercase() && !word.is_empty() {
            words.push(std::mem::take(&mut word));
        }
        word.push(c.to_ascii_uppercase());
    }
    words.push(word);
    words.join(" ")
}

fn held(held: Held) -> &'static str {
    match held {
        Held::Statement => "until the statement ends",
        Held::Transaction => "until the migration's transaction commits",
    }
}

fn human(traced: &Trace) {
    let mb = |rate: f64| rate / (1024.0 * 1024.0);
    outln!(
        "scratch server rates: scan {:.0} MB/s, rewrite {:.0} MB/s (estimates below use them; the real server may be faster or slower)",
        mb(traced.rates.scan_bytes_per_second),
        mb(traced.rates.rewrite_bytes_per_second)
    );
    for migration in &traced.migrations {
        outln!("");
        outln!("{} ({}): {}", migration.id, migration.runs, migration.file);
        for statement in &migration.statements {
            human_statement(statement, traced.max_rows);
        }
    }
    let blocking: usize = traced
        .migrations
        .iter()
        .flat_map(|m| &m.statements)
        .filter(|s| s.blocks_the_trace())
        .count();
    outln!("");
    if blocking == 0 {
        outln!(
            "{} migration(s) traced: no lock that blocks reads or writes is held while a table over {} rows is scanned or rewritten",
            traced.migrations.len(),
            traced.max_rows
        );
    } else {
        outln!(
            "{} migration(s) traced: {blocking} statement(s) would block reads or writes of a table over {} rows while it is scanned or rewritten; change them, or approve each file with `-- sluice:approve {RULE} reason: <why it is acceptable>`",
            traced.migrations.len(),
            traced.max_rows
        );
    }
}

fn human_statement(statement: &Judged, max_rows: i64) {
    let o = &statement.observed;
    let first_line = o.sql.lines().next().unwrap_or_default();
    outln!("  line {}: {first_line}", o.line);
    if o.locks.is_empty() {
        outln!(
            "    {}",
            if o.watched {
                "no lock seen (it ran outside a transaction and ended before it could be watched)"
            } else {
                "no table lock"
            }
        );
    }
    for lock in &o.locks {
        let (_, blocks) = trace::Blocks::of(&lock.mode);
        outln!(
            "    {} on {} {}: blocks {blocks}",
            mode_name(&lock.mode),
            lock.relation,
            held(lock.held)
        );
    }
    for work in &o.work {
        let size = statement.sizes.get(work.relation()).map_or_else(
            || "new, empty in the real database".to_owned(),
            |s| {
                format!(
                    "{} rows, {} MB in the real database",
                    s.rows,
                    s.bytes / (1024 * 1024)
                )
            },
        );
        let what = match work {
            Work::Rewrite(r) => format!("rewrites {r}"),
            Work::Scan(r) => format!("reads all of {r}"),
            Work::IndexBuild(r) => format!("builds an index on {r}"),
        };
        outln!("    {what} ({size})");
    }
    match statement.estimate_seconds {
        Some(seconds) => outln!(
            "    about {} on the real tables (an estimate)",
            seconds_text(seconds)
        ),
        None if o.work.is_empty() && !o.locks.is_empty() => {
            outln!("    no rewrite or scan: the locks are brief");
        }
        None => {}
    }
    for lock in &statement.too_long {
        let verdict = if statement.approved {
            "approved"
        } else {
            "BLOCKING"
        };
        outln!(
            "    {verdict}: {} on {} is held while a table over {max_rows} rows is scanned or rewritten",
            mode_name(&lock.mode),
            lock.relation
        );
    }
}

fn github(traced: &Trace) {
    for migration in &traced.migrations {
        for statement in &migration.statements {
            let o = &statement.observed;
            for lock in &o.locks {
                let (category, blocks) = trace::Blocks::of(&lock.mode);
                let too_long = statement.too_long.contains(lock);
                let level = match (too_long, statement.approved, category.hurts()) {
                    (true, false, _) => "error",
                    (true, true, _) | (false, _, true) => "warning",
                    (false, _, false) => "notice",
                };
                let estimate = statement
                    .estimate_seconds
                    .map(|s| format!("; about {} on the real tables (estimate)", seconds_text(s)))
                    .unwrap_or_default();
                outln!(
                    "::{level} file={},line={},title={RULE}::{}",
                    migration.file,
                    o.line,
                    escape(&format!(
                        "{} on {} {}: blocks {blocks}{estimate}",
                        mode_name(&lock.mode),
                        lock.relation,
                        held(lock.held)
                    ))
                );
            }
        }
    }
}

/// `0.04` → `40ms`, `12.3` → `12.3s`, `5000` → `1h 23m`.
fn seconds_text(seconds: f64) -> String {
    if seconds < 1.0 {
        format!("{:.0}ms", (seconds * 1000.0).max(1.0))
    } else if seconds < 600.0 {
        format!("{seconds:.1}s")
    } else {
        #[expect(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            reason = "minutes"
        )]
        let minutes = (seconds / 60.0).round() as u64;
        format!("{}h {}m", minutes / 60, minutes % 60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn estimates_read_in_units_that_fit() {
        assert_eq!(seconds_text(0.04), "40ms");
        assert_eq!(seconds_text(12.34), "12.3s");
        assert_eq!(seconds_text(5000.0), "1h 23m");
    }

    #[test]
    fn lock_modes_read_as_postgresql_documents_them() {
        assert_eq!(mode_name("AccessExclusiveLock"), "ACCESS EXCLUSIVE");
        assert_eq!(
            mode_name("ShareUpdateExclusiveLock"),
            "SHARE UPDATE EXCLUSIVE"
        );
        assert_eq!(mode_name("ShareLock"), "SHARE");
    }
}
