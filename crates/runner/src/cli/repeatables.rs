//! How `status` and `check` show Flyway's repeatable migrations.

use crate::repeatable::{Line, State};
use serde_json::json;
use sluice_common::outln;

use super::render::human_time;

fn label(state: State) -> &'static str {
    match state {
        State::New => "pending",
        State::Changed { .. } => "changed",
        State::Current { .. } => "applied",
        State::FileMissing { .. } => "file missing",
    }
}

fn applied_at(state: State) -> Option<chrono::DateTime<chrono::Utc>> {
    match state {
        State::New => None,
        State::Changed { applied_at }
        | State::Current { applied_at }
        | State::FileMissing { applied_at } => applied_at,
    }
}

/// The table of repeatable migrations under `status`'s own (nothing when there are none).
pub fn print(lines: &[Line<'_>]) {
    if lines.is_empty() {
        return;
    }
    outln!("\n{:<49} {:<13} APPLIED AT", "REPEATABLE", "STATE");
    for line in lines {
        outln!(
            "{:<49} {:<13} {}",
            format!("R__{}", line.description),
            label(line.state),
            applied_at(line.state).map(human_time).unwrap_or_default()
        );
    }
    let pending = lines.iter().filter(|l| l.state.is_pending()).count();
    outln!(
        "{} repeatable migration(s): {pending} to apply (new or changed) after the versioned ones",
        lines.len()
    );
}

/// `status --json`'s `repeatables`.
pub fn json(lines: &[Line<'_>]) -> serde_json::Value {
    lines
        .iter()
        .map(|line| {
            json!({
                "id": format!("R__{}", line.description),
                "description": line.description,
                "state": label(line.state),
                "file": line.file.map(|f| f.script().path.display().to_string()),
                "checksum": line.file.map(|f| f.script().checksum.clone()),
                "applied_at": applied_at(line.state).map(|t| t.to_rfc3339()),
            })
        })
        .collect()
}

/// `check`: each repeatable migration the next `up` applies, one line each; how many.
pub fn check(lines: &[Line<'_>]) -> usize {
    let pending: Vec<&Line<'_>> = lines.iter().filter(|l| l.state.is_pending()).collect();
    for line in &pending {
        let what = match line.state {
            State::Changed { .. } => "repeatable, changed since it was applied",
            _ => "repeatable, never applied",
        };
        outln!("R__{}: {what}", line.description);
    }
    pending.len()
}
