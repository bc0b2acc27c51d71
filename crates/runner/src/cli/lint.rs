//! `sluice lint`: findings as `file:line:col rule: message` for people, JSON, or GitHub
//! workflow annotations.

use super::error::CliError;
use std::path::{Path, PathBuf};

use crate::baseline::Baseline;
use crate::error::RunnerError;
use crate::layout::Choice;
use crate::lint::{self, Finding, LintSettings, RULES, Severity};
use crate::script::Script;
use crate::source::{self, SourceError};
use serde_json::json;
use sluice_common::exit;
use sluice_common::outln;

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Format {
    Human,
    Json,
    Github,
}

/// What `sluice lint` was asked for.
#[derive(Debug, Clone, Copy)]
pub struct Ask {
    pub format: Format,
    pub rules: bool,
    pub write_baseline: bool,
}

pub fn run(
    (dir, layout): (&Path, Choice),
    files: &[PathBuf],
    ask: Ask,
    settings: &LintSettings,
) -> Result<u8, CliError> {
    if ask.rules {
        print_rules();
        return Ok(exit::OK);
    }
    let scripts = scripts(dir, layout, files)?;
    let mut findings: Vec<Finding> = Vec::new();
    if ask.write_baseline {
        let all: Vec<Finding> = scripts
            .iter()
            .flat_map(|s| lint::lint(s, settings))
            .collect();
        let baseline = Baseline::of(dir, &scripts, &all);
        let path = baseline.write(dir).map_err(CliError::Write)?;
        outln!(
            "{}: {} file(s) with findings accepted; commit it. New files, and edits of these, are linted as usual.",
            path.display(),
            baseline.files.len()
        );
        return Ok(exit::OK);
    }
    let baseline = Baseline::load(dir).map_err(|problem| {
        RunnerError::from(SourceError {
            problems: vec![problem],
        })
    })?;
    for script in &scripts {
        let mut found = lint::lint(script, settings);
        baseline.pass(dir, script, &mut found);
        findings.extend(found);
    }
    match ask.format {
        Format::Human => human(&findings, scripts.len()),
        Format::Json => outln!(
            "{}",
            json!({ "findings": findings, "files": scripts.len() })
        ),
        Format::Github => github(&findings),
    }
    Ok(if findings.iter().any(Finding::blocks) {
        exit::BLOCKED
    } else {
        exit::OK
    })
}

/// The named files, or every up and down script of the directory.
fn scripts(dir: &Path, layout: Choice, files: &[PathBuf]) -> Result<Vec<Script>, RunnerError> {
    if files.is_empty() {
        let loaded = source::load_checked(dir, layout)?;
        let repeatables = loaded.repeatables.iter().map(|r| r.script().clone());
        return Ok(loaded
            .migrations
            .iter()
            .flat_map(|m| std::iter::once(m.up.clone()).chain(m.down.clone()))
            .chain(repeatables)
            .collect());
    }
    let mut problems = Vec::new();
    let scripts: Vec<Script> = files
        .iter()
        .filter_map(|path| {
            let text = sluice_common::input::read_text(
                path,
                "SQL file",
                sluice_common::input::MAX_SQL_BYTES,
            )
            .map_err(|e| problems.push(e.to_string()))
            .ok()?;
            // A file with up and down sections is linted section by section, as it runs.
            source::file_scripts(path, &text)
                .map_err(|e| problems.push(e))
                .ok()
        })
        .flatten()
        .collect();
    // A file that does not parse cannot be linted: say so (exit 3) rather than pass it.
    if let Err(error) = source::analyse(&scripts) {
        problems.extend(error.problems);
    }
    if problems.is_empty() {
        Ok(scripts)
    } else {
        Err(SourceError { problems }.into())
    }
}

fn human(findings: &[Finding], files: usize) {
    for f in findings {
        let level = match (f.severity, &f.approved) {
            (_, Some(_)) => "approved",
            (Severity::Block, None) => "error",
            (Severity::Warn, None) => "warning",
        };
        outln!("{f} [{level}]");
        if let Some(help) = &f.help {
            outln!("  help: {help}");
        }
        if let Some(reason) = &f.approved {
            outln!("  approved: {reason}");
        }
    }
    let blocking = findings.iter().filter(|f| f.blocks()).count();
    outln!(
        "{files} file(s), {} finding(s), {blocking} blocking{}",
        findings.len(),
        if blocking > 0 {
            ": approve each with `-- sluice:approve <rule> reason: <why it is safe here>`"
        } else {
            ""
        }
    );
}

fn github(findings: &[Finding]) {
    for f in findings {
        let level = match (f.severity, &f.approved) {
            (Severity::Block, None) => "error",
            (Severity::Warn, None) => "warning",
            (_, Some(_)) => "notice",
        };
        let message = match &f.help {
            Some(help) => format!("{} ({help})", f.message),
            None => f.message.clone(),
        };
        outln!(
            "::{level} file={},line={},col={},title={}::{}",
            f.path.display(),
            f.line,
            f.column,
            f.rule,
            escape(&message)
        );
    }
}

/// GitHub's workflow-command escaping.
pub(super) fn escape(text: &str) -> String {
    text.replace('%', "%25")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}

fn print_rules() {
    for rule in RULES {
        let severity = match rule.severity {
            Severity::Block => "blocks",
            Severity::Warn => "warns",
        };
        outln!(
            "{} ({severity})\n  why: {}\n  instead: {}",
            rule.name,
            rule.why,
            rule.instead
        );
    }
}
