//! Turning engine events and reports into output: lines for people (results on stdout,
//! progress on stderr) or one JSON document on stdout with `--json`.

use super::error::CliError;
use std::fmt::Write as _;
use std::time::Duration;

use crate::approval::{self, Approval, Standing};
use crate::error::RunnerError;
use crate::event::{Direction, Event};
use crate::migrator::{Migrator, Recorded, Report};
use crate::plan::{Entry, State};
use crate::repeatable;
use crate::startup::Newer;
use serde_json::json;
use sluice_common::exit;
use sluice_common::{errln, out, outln};

/// Renders one `up` or `down` run.
#[derive(Debug)]
pub struct Renderer {
    json: bool,
    dry_run: bool,
    planned: Vec<serde_json::Value>,
    checks: Vec<crate::verify::Outcome>,
    schema_file: Option<serde_json::Value>,
    direction: Direction,
}

impl Renderer {
    pub fn new(json: bool, dry_run: bool) -> Self {
        Self {
            json,
            dry_run,
            planned: Vec::new(),
            checks: Vec::new(),
            schema_file: None,
            direction: Direction::Up,
        }
    }

    pub fn event(&mut self, event: &Event) {
        match event {
            Event::Planned { id, direction, sql } => {
                self.direction = *direction;
                if self.json {
                    self.planned.push(json!({ "id": id, "sql": sql }));
                } else {
                    outln!("{sql}\n");
                }
            }
            Event::Started { direction, .. } => self.direction = *direction,
            Event::Checked(outcome) => {
                if !self.json {
                    outln!("{outcome}");
                }
                self.checks.push(outcome.clone());
            }
            Event::SchemaDumped { path, bytes } => {
                if !self.json {
                    outln!("schema written to {} ({bytes} bytes)", path.display());
                }
                self.schema_file = Some(json!({ "path": path, "bytes": bytes }));
            }
            Event::Finished {
                id,
                direction,
                duration,
            } if !self.json => {
                outln!("{} {id} ({})", verb(*direction), human(*duration));
            }
            Event::StatementDone {
                id,
                number,
                total,
                duration,
            } if !self.json => {
                errln!(
                    "  {id}: statement {number}/{total} done ({})",
                    human(*duration)
                );
            }
            _ => {}
        }
    }

    /// Prints the outcome and returns the exit code.
    pub fn finish(self, command: &str, result: Result<Report, RunnerError>) -> u8 {
        let code = result
            .as_ref()
            .map_or_else(RunnerError::exit_code, |_| exit::OK);
        if self.json {
            self.print_json(command, &result, code);
        } else {
            self.print_human(&result);
        }
        code
    }

    fn print_json(&self, command: &str, result: &Result<Report, RunnerError>, code: u8) {
        let (migrations, error) = match result {
            Ok(report) => (
                serde_json::to_value(&report.migrations).unwrap_or_default(),
                None,
            ),
            Err(error) => (
                serde_json::to_value(error.done()).unwrap_or_default(),
                Some(json!({ "message": error.to_string(), "exit_code": code })),
            ),
        };
        let document = json!({
            "command": command,
            "ok": result.is_ok(),
            "dry_run": self.dry_run,
            "migrations": migrations,
            "planned": self.planned,
            "checks": self.checks,
            "schema_file": self.schema_file,
            "error": error,
        });
        outln!("{document}");
    }

    fn print_human(&self, result: &Result<Report, RunnerError>) {
        let done = verb(self.direction);
        match result {
            Ok(report) if report.dry_run => outln!(
                "dry run: {} migration(s) would be {done}; nothing was changed",
                report.migrations.len()
            ),
            Ok(report) if report.migrations.is_empty() => {
                outln!("nothing to do: the database is up to date")
            }
            Ok(report) => {
                let total: u64 = report.migrations.iter().map(|m| m.duration_ms).sum();
                outln!(
                    "{done} {} migration(s) in {}",
                    report.migrations.len(),
                    human(Duration::from_millis(total))
                );
            }
            Err(error) => {
                errln!("sluice: error: {error}");
                if !error.done().is_empty() {
                    errln!(
                        "sluice: {done} before stopping: {}",
                        error
                            .done()
                            .iter()
                            .map(|d| d.id.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    );
                }
            }
        }
    }
}

fn verb(direction: Direction) -> &'static str {
    match direction {
        Direction::Up | Direction::Repeat => "applied",
        Direction::Down => "reverted",
    }
}

/// `12ms`, `1.52s`, `3m 4s`.
pub fn human(duration: Duration) -> String {
    if duration < Duration::from_secs(1) {
        format!("{}ms", duration.as_millis())
    } else if duration < Duration::from_secs(60) {
        format!("{:.2}s", duration.as_secs_f64())
    } else {
        humantime::format_duration(Duration::from_secs(duration.as_secs())).to_string()
    }
}

/// `sluice status`.
pub fn status(
    migrator: &Migrator,
    entries: &[Entry<'_>],
    recorded: &Recorded,
    json: bool,
) -> Result<(), CliError> {
    let blocked = &recorded.blocked;
    let repeatables = repeatable::status(migrator.repeatables(), &recorded.repeatables);
    if json {
        status_document(migrator, entries, recorded, &repeatables);
        return Ok(());
    }
    let required = migrator.settings().require_approval.is_some();
    // One write for the table: a line per write costs a system call each.
    let mut table = format!(
        "{:<16} {:<32} {:<13} {:<24} {:>9}  BY\n",
        "VERSION", "NAME", "STATE", "APPLIED AT", "DURATION"
    );
    for entry in entries {
        let applied = entry.applied;
        let version = entry
            .file
            .map_or_else(|| entry.version.to_string(), |f| f.version_text.clone());
        let state = match entry.state {
            State::Partial { done, total } => format!("partial {done}/{total}"),
            _ if blocked.contains_key(&entry.version) => "blocked".to_owned(),
            ref other => other.label().to_owned(),
        };
        let _ = writeln!(
            table,
            "{:<16} {:<32} {:<13} {:<24} {:>9}  {}",
            version,
            entry.name,
            state,
            applied
                .and_then(|a| a.applied_at)
                .map(human_time)
                .unwrap_or_default(),
            applied
                .map(|a| human(Duration::from_millis(
                    u64::try_from(a.duration_ms).unwrap_or(0)
                )))
                .unwrap_or_default(),
            applied.map(applied_by).unwrap_or_default()
        );
        for reason in blocked.get(&entry.version).into_iter().flatten() {
            let _ = writeln!(table, "{:<16} └ {reason}", "");
        }
        if let Some(line) = approval_line(entry, &recorded.approvals, required) {
            let _ = writeln!(table, "{:<16} └ {line}", "");
        }
    }
    out!("{table}");
    let counts = summary_counts(entries);
    let parts: Vec<String> = counts
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(_, n)| n.as_u64().unwrap_or(0) > 0)
        .map(|(state, n)| format!("{n} {state}"))
        .collect();
    outln!(
        "\n{} migration(s): {}",
        entries.len(),
        if parts.is_empty() {
            "none".to_owned()
        } else {
            parts.join(", ")
        }
    );
    super::repeatables::print(&repeatables);
    outln!(
        "{} read as {}",
        migrator.settings().migrations_dir.display(),
        migrator.layout().describe()
    );
    Ok(())
}

/// A pending migration's approval, for the table: shown when there is one (valid or void),
/// and its absence where approvals are required.
fn approval_line(entry: &Entry<'_>, approvals: &[Approval], required: bool) -> Option<String> {
    let file = entry.file.filter(|_| entry.applied.is_none())?;
    match approval::standing(file, approvals) {
        Standing::Approved(a) => Some(format!(
            "approved by {} at {}: {}",
            a.by,
            human_time(a.at),
            sluice_common::display::one_line(&a.reason)
        )),
        Standing::Voided(a) => Some(format!(
            "approval void: the file changed since {} approved it at {}",
            a.by,
            human_time(a.at)
        )),
        Standing::Unapproved if required => {
            Some("not approved (this environment requires it): sluice approve".to_owned())
        }
        Standing::Unapproved => None,
    }
}

fn approval_json(entry: &Entry<'_>, approvals: &[Approval]) -> serde_json::Value {
    let Some(file) = entry.file.filter(|_| entry.applied.is_none()) else {
        return serde_json::Value::Null;
    };
    let (state, approval) = match approval::standing(file, approvals) {
        Standing::Approved(a) => ("approved", Some(a)),
        Standing::Voided(a) => ("void", Some(a)),
        Standing::Unapproved => ("none", None),
    };
    json!({
        "state": state,
        "by": approval.map(|a| &a.by),
        "at": approval.map(|a| a.at.to_rfc3339()),
        "reason": approval.map(|a| &a.reason),
        "checksum": approval.map(|a| &a.checksum),
    })
}

/// A moment as `status` shows it.
pub fn human_time(at: chrono::DateTime<chrono::Utc>) -> String {
    at.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

fn applied_by(applied: &crate::history::Applied) -> String {
    let mut by = applied.applied_by_role.clone();
    if let Some(host) = &applied.applied_by_host {
        by.push_str(&format!("@{host}"));
    }
    if let Some(actor) = &applied.actor {
        by.push_str(&format!(" ({})", sluice_common::display::one_line(actor)));
    }
    by
}

/// Why gated migrations are blocked, by version.
pub type Blocked = std::collections::BTreeMap<
    crate::source::Version,
    Vec<sluice_common::backfill_gate::ClosedGate>,
>;

/// `status --json`, written a migration at a time: the document of 10,000 migrations is never
/// held whole, so it takes no more memory than the table. Its keys are in the order a
/// `serde_json` map keeps them (sorted), as when it was built whole.
fn status_document(
    migrator: &Migrator,
    entries: &[Entry<'_>],
    recorded: &Recorded,
    repeatables: &[repeatable::Line<'_>],
) {
    let layout = json!(migrator.layout().to_string());
    out!("{{\"layout\":{layout},\"migrations\":[");
    let mut chunk = String::new();
    for (n, entry) in entries.iter().enumerate() {
        if n > 0 {
            chunk.push(',');
        }
        let mut line = status_json(entry, &recorded.blocked);
        line["approval"] = approval_json(entry, &recorded.approvals);
        chunk.push_str(&line.to_string());
        if chunk.len() > 64 * 1024 {
            out!("{chunk}");
            chunk.clear();
        }
    }
    out!("{chunk}");
    let tail = json!({
        "repeatables": super::repeatables::json(repeatables),
        "schema": migrator.history().schema().as_str(),
        "summary": summary_counts(entries),
    });
    let tail = tail.to_string();
    outln!("],{}", &tail[1..]);
}

fn status_json(entry: &Entry<'_>, blocked: &Blocked) -> serde_json::Value {
    let applied = entry.applied;
    json!({
        "version": entry.file.map_or_else(|| entry.version.to_string(), |f| f.version_text.clone()),
        "name": entry.name,
        "state": entry.state.label(),
        "file": entry.file.map(|f| f.up.path.display().to_string()),
        "reversible": entry.file.map(|f| f.down.is_some()),
        // How a file still to run will run (files already applied are not parsed again).
        "runs": entry
            .file
            .filter(|_| applied.is_none())
            .map(|f| f.up.mode_of_listing().describe()),
        "checksum": {
            "file": entry.file.map(|f| f.up.checksum.clone()),
            "applied": applied.map(|a| a.checksum.clone()),
        },
        "applied_at": applied.and_then(|a| a.applied_at).map(|t| t.to_rfc3339()),
        "duration_ms": applied.map(|a| a.duration_ms),
        "applied_by": applied.map(|a| json!({
            "role": a.applied_by_role,
            "host": a.applied_by_host,
            "program": a.applied_by_program,
            "actor": a.actor,
        })),
        "blocked_by": blocked
            .get(&entry.version)
            .map(|gates| gates.iter().map(ToString::to_string).collect::<Vec<_>>()),
        "progress": entry.partial.map(|p| json!({
            "statements_done": p.statements_done,
            "statements_total": p.statements_total,
            "last_error": p.last_error,
        })),
    })
}

fn summary_counts(entries: &[Entry<'_>]) -> serde_json::Value {
    let count = |label: &str| entries.iter().filter(|e| e.state.label() == label).count();
    json!({
        "applied": count("applied"),
        "pending": count("pending"),
        "partial": count("partial"),
        "edited": count("edited"),
        "missing": count("missing"),
        "out-of-order": count("out-of-order"),
    })
}

/// `sluice check`: prints problems and returns the exit code.
pub fn check(migrator: &Migrator, entries: &[Entry<'_>], recorded: &Recorded) -> u8 {
    let blocked = &recorded.blocked;
    let drift: Vec<&Entry<'_>> = entries
        .iter()
        .filter(|e| {
            matches!(
                e.state,
                State::Edited { .. } | State::Missing | State::OutOfOrder
            )
        })
        .collect();
    let pending: Vec<&Entry<'_>> = entries
        .iter()
        .filter(|e| matches!(e.state, State::Pending | State::Partial { .. }))
        .collect();
    for entry in drift.iter().chain(&pending) {
        outln!("{}: {}", entry.id(), entry.state.label());
        for reason in blocked.get(&entry.version).into_iter().flatten() {
            outln!("  blocked: {reason}");
        }
    }
    if !drift.is_empty() {
        errln!(
            "sluice: history and files disagree ({} migration(s)); see `sluice status`",
            drift.len()
        );
        return exit::HISTORY_DRIFT;
    }
    let repeats = repeatable::status(migrator.repeatables(), &recorded.repeatables);
    let pending = pending.len() + super::repeatables::check(&repeats);
    if pending > 0 {
        errln!("sluice: {pending} migration(s) pending; run `sluice up`");
        return exit::PENDING;
    }
    let applied = entries.iter().filter(|e| e.state == State::Applied).count();
    outln!("up to date: {applied} migration(s) applied, none pending");
    exit::OK
}

/// `sluice check --startup`: what an application start-up would make of the database.
pub fn check_startup(
    migrator: &Migrator,
    entries: &[Entry<'_>],
    recorded: &Recorded,
    newer: Newer,
) -> u8 {
    let blocked = &recorded.blocked;
    let view = crate::startup::view(entries, blocked, newer);
    let show = |entry: &Entry<'_>, what: &str| {
        outln!("{}: {what}", entry.id());
        for gate in blocked.get(&entry.version).into_iter().flatten() {
            outln!("  waiting for: {gate}");
        }
    };
    for entry in &view.drift {
        show(entry, entry.state.label());
    }
    for entry in &view.pending {
        show(entry, entry.state.label());
    }
    for entry in &view.deferred {
        show(entry, "waiting for its backfill (does not stop a start-up)");
    }
    for entry in &view.behind_gate {
        show(
            entry,
            "pending behind a migration that waits for its backfill",
        );
    }
    for entry in &view.newer {
        show(
            entry,
            "applied by a newer build (allowed: --allow-newer; does not stop a start-up)",
        );
    }
    if !view.drift.is_empty() {
        errln!(
            "sluice: history and files disagree ({} migration(s)); see `sluice status`{}",
            view.drift.len(),
            if newer == Newer::Refuse && only_newer_unknown(entries) {
                ". If an older build is starting on a database a newer one migrated (an \
                 application rollback after an expand migration), --allow-newer lets it"
            } else {
                ""
            }
        );
        return exit::HISTORY_DRIFT;
    }
    let repeats = repeatable::status(migrator.repeatables(), &recorded.repeatables);
    let blocking =
        view.pending.len() + view.behind_gate.len() + super::repeatables::check(&repeats);
    if blocking > 0 {
        errln!(
            "sluice: {blocking} migration(s) pending; run `sluice up`{}",
            if view.behind_gate.is_empty() {
                ""
            } else {
                " once the backfill it waits for completes"
            }
        );
        return exit::PENDING;
    }
    outln!(
        "ready to start: {} migration(s) applied{}{}",
        view.applied.len(),
        match view.deferred.len() {
            0 => String::new(),
            n => format!(", {n} waiting for a backfill"),
        },
        match view.newer.len() {
            0 => String::new(),
            n => format!(", {n} newer than this directory (allowed)"),
        }
    );
    exit::OK
}

/// Whether the only disagreement is history newer than every file: what `--allow-newer` is
/// for.
fn only_newer_unknown(entries: &[Entry<'_>]) -> bool {
    let allowed = crate::startup::view(entries, &Default::default(), Newer::Allow);
    allowed.drift.is_empty() && !allowed.newer.is_empty()
}
