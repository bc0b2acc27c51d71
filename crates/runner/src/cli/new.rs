//! `sluice new`: a new, correctly named migration file with a header that documents the
//! directives.

use super::error::CliError;
use std::path::{Path, PathBuf};

use crate::flyway;
use crate::layout::{Choice, Layout};
use crate::scaffold::{self, Change, Edit};
use crate::source;
use sluice_common::exit;
use sluice_common::ident::{Ident, QualifiedName};
use sluice_common::outln;

const TEMPLATE_HEADER: &str = "\
-- Directives go here, before the first statement (remove the ones you do not need):
--   -- sluice:no-transaction        run statements one by one, outside a transaction
--                                   (needed for CREATE INDEX CONCURRENTLY)
--   -- sluice:lock-timeout 2s       this file's lock_timeout
--   -- sluice:statement-timeout 1h  this file's statement_timeout
";

/// The zero-downtime changes `new --pattern` scaffolds.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum PatternArg {
    /// A new column computed from the row (--column, --type, --expression).
    AddColumn,
    /// Rename --column to --to (--type is its type).
    RenameColumn,
    /// Give --column the type --type (converted with --expression, default column::type).
    ChangeType,
    /// Copy --table into a new table --to that then replaces it (mirroring trigger, copy job,
    /// atomic swap).
    CopyTable,
}

/// Options of `new --pattern`.
#[derive(Debug, Clone, clap::Args)]
pub struct ScaffoldArgs {
    /// Scaffold a zero-downtime change instead of an empty migration.
    #[arg(long, value_enum)]
    pub pattern: Option<PatternArg>,
    /// The table, e.g. public.accounts.
    #[arg(long, requires = "pattern")]
    pub table: Option<String>,
    /// The column added, renamed or retyped.
    #[arg(long, requires = "pattern")]
    pub column: Option<String>,
    /// The column's (new) type, e.g. text.
    #[arg(long = "type", value_name = "TYPE", requires = "pattern")]
    pub type_name: Option<String>,
    /// rename-column: the new name; copy-table: the new table, e.g. public.accounts_new.
    #[arg(long, requires = "pattern")]
    pub to: Option<String>,
    /// add-column: the value, e.g. "lower(email)"; change-type: the conversion.
    #[arg(long, requires = "pattern")]
    pub expression: Option<String>,
    /// The table's unique key, for the backfill (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "id")]
    pub key: Vec<String>,
    /// Where the backfill job spec goes [default: ./jobs, or `[backfill] jobs` in sluice.toml].
    #[arg(long, env = "SLUICE_JOBS", value_name = "DIR")]
    pub jobs: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum NewError {
    #[error(
        "invalid migration name `{0}`: use snake_case (lower-case letters, digits and _, \
         starting with a letter), e.g. add_users_email"
    )]
    Name(String),
    #[error("{0}")]
    Scaffold(String),
    #[error(
        "the newest migration in {} has version {newest}, the largest there is: no version \
         comes after it. Rename that file to a timestamp version (YYYYMMDDHHMMSS) or an \
         ordinal that leaves room",
        dir.display()
    )]
    NoVersionLeft { dir: PathBuf, newest: i64 },
    #[error("cannot create {}: {error}", path.display())]
    Write {
        path: PathBuf,
        error: std::io::Error,
    },
}

impl NewError {
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Name(_) | Self::Scaffold(_) => exit::USAGE,
            Self::NoVersionLeft { .. } => exit::INVALID_INPUT,
            Self::Write { .. } => exit::FAILED,
        }
    }
}

pub fn create(dir: &Path, name: &str, reversible: bool, choice: Choice) -> Result<u8, CliError> {
    if !is_snake_case(name) {
        return Err(NewError::Name(name.to_owned()).into());
    }
    // A new file is written the way the directory's tool writes its own: a flat file in a
    // diesel directory would make it a mixed one, which sluice refuses.
    let loaded = source::load(dir, choice).ok();
    let layout = match (&loaded, choice) {
        (Some(loaded), _) => loaded.layout,
        (None, Choice::Forced(layout)) => layout,
        (None, Choice::Auto) => Layout::Flat,
    };
    let now = chrono::Utc::now();
    let files: Vec<(PathBuf, String)> = match layout {
        Layout::Flat => {
            let version = next_version(dir, now, 1)?;
            flat_files(dir, version, name, reversible)
        }
        Layout::Diesel => {
            let newest = loaded.and_then(|l| l.migrations.last().map(|m| m.version));
            let version = diesel_version(now, newest);
            let dir = dir.join(format!("{version}_{name}"));
            vec![
                (dir.join("up.sql"), format!("-- {name}\n")),
                (
                    dir.join("down.sql"),
                    format!("-- Reverts {name}: undo exactly what up.sql does.\n"),
                ),
            ]
        }
        Layout::Flyway => {
            let newest = loaded.and_then(|l| l.migrations.last().map(|m| m.version_text.clone()));
            let version = flyway_version(now, newest.as_deref());
            let mut files = vec![(
                dir.join(format!("V{version}__{name}.sql")),
                format!("-- {name}\n"),
            )];
            if reversible {
                files.push((
                    dir.join(format!("U{version}__{name}.sql")),
                    format!("-- Reverts {name}: undo exactly what V{version}__{name}.sql does.\n"),
                ));
            }
            files
        }
        Layout::Dbmate | Layout::Goose | Layout::SqlMigrate => {
            let version = next_version(dir, now, 1)?;
            vec![(
                dir.join(format!("{version}_{name}.sql")),
                sectioned_template(layout, name),
            )]
        }
    };
    if let Some(parent) = files.first().and_then(|(path, _)| path.parent()) {
        std::fs::create_dir_all(parent).map_err(|error| NewError::Write {
            path: parent.to_path_buf(),
            error,
        })?;
    }
    for (path, text) in &files {
        write_new(path, text)?;
        outln!("created {}", path.display());
    }
    Ok(exit::OK)
}

/// sluice's own files: `<version>_<name>.sql`, or `.up.sql` and `.down.sql`.
fn flat_files(dir: &Path, version: i64, name: &str, reversible: bool) -> Vec<(PathBuf, String)> {
    if reversible {
        vec![
            (
                dir.join(format!("{version}_{name}.up.sql")),
                format!("-- {name}\n{TEMPLATE_HEADER}\n"),
            ),
            (
                dir.join(format!("{version}_{name}.down.sql")),
                format!("-- Reverts {name}: undo exactly what the .up.sql file does.\n"),
            ),
        ]
    } else {
        vec![(
            dir.join(format!("{version}_{name}.sql")),
            format!("-- {name}\n{TEMPLATE_HEADER}\n"),
        )]
    }
}

/// diesel's `YYYY-MM-DD-HHMMSS`, or, when the newest version is not older than now (a clock
/// behind, a hand-made version), the next number after it: diesel orders versions as text.
fn diesel_version(now: chrono::DateTime<chrono::Utc>, newest: Option<i64>) -> String {
    let stamp = now.format("%Y%m%d%H%M%S").to_string();
    match newest {
        Some(newest) if newest.to_string() >= stamp => (newest + 1).to_string(),
        _ => now.format("%Y-%m-%d-%H%M%S").to_string(),
    }
}

/// The next Flyway version after `newest`: the next number where versions are plain numbers
/// (`7` → `8`), else a UTC timestamp, or, when that would not come after `newest` (a version
/// from the future), `newest`'s first part plus one.
fn flyway_version(now: chrono::DateTime<chrono::Utc>, newest: Option<&str>) -> String {
    let stamp = now.format("%Y%m%d%H%M%S").to_string();
    let Some(newest) = newest else {
        return stamp;
    };
    let first: Option<u64> = newest.split(['.', '_']).next().and_then(|p| p.parse().ok());
    let plain = newest.len() < 14 && newest.bytes().all(|b| b.is_ascii_digit());
    match (first, plain) {
        (Some(n), true) => (n + 1).to_string(),
        (Some(n), false)
            if flyway::version_key(&stamp).ok() <= flyway::version_key(newest).ok() =>
        {
            (n + 1).to_string()
        }
        _ => stamp,
    }
}

/// A file with the up and down markers of the directory's tool.
fn sectioned_template(layout: Layout, name: &str) -> String {
    let (up, down, outside) = match layout {
        Layout::Dbmate => (
            "-- migrate:up",
            "-- migrate:down",
            "write `-- migrate:up transaction:false`",
        ),
        Layout::Goose => (
            "-- +goose Up",
            "-- +goose Down",
            "add `-- +goose NO TRANSACTION` above the Up marker",
        ),
        _ => (
            "-- +migrate Up",
            "-- +migrate Down",
            "write `-- +migrate Up notransaction`",
        ),
    };
    format!(
        "-- {name}\n-- To run outside a transaction (CREATE INDEX CONCURRENTLY), {outside}.\n\
         {up}\n\n{down}\n"
    )
}

/// `new --pattern`: the expand migration, the backfill job and the contract migration.
pub fn scaffold(
    dir: &Path,
    jobs_dir: &Path,
    name: &str,
    args: &ScaffoldArgs,
) -> Result<u8, CliError> {
    let change = change(name, args)?;
    let files = scaffold::render(&change).map_err(|e| NewError::Scaffold(e.to_string()))?;
    let version = next_version(dir, chrono::Utc::now(), 2)?;
    let targets = [
        (
            dir.join(format!("{version}_{name}_expand.sql")),
            files.expand,
        ),
        (jobs_dir.join(format!("{name}.toml")), files.job),
        (
            dir.join(format!("{}_{name}_contract.sql", version + 1)),
            files.contract,
        ),
    ];
    if let Some((existing, _)) = targets.iter().find(|(path, _)| path.exists()) {
        return Err(NewError::Scaffold(format!(
            "{} already exists; pick another name",
            existing.display()
        ))
        .into());
    }
    for (path, text) in &targets {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|error| NewError::Write {
                path: parent.to_path_buf(),
                error,
            })?;
        }
        write_new(path, text)?;
        outln!("created {}", path.display());
    }
    outln!(
        "next: review the files, `sluice up` (applies the expand step, then stops at the contract \
         until the job is done), `sluice-backfill run {name}`, deploy, `sluice up`"
    );
    Ok(exit::OK)
}

fn change(name: &str, args: &ScaffoldArgs) -> Result<Change, NewError> {
    if !is_snake_case(name) {
        return Err(NewError::Name(name.to_owned()));
    }
    let need = |value: &Option<String>, flag: &str| {
        value
            .clone()
            .ok_or_else(|| NewError::Scaffold(format!("--pattern needs {flag}")))
    };
    let ident = |text: &str, flag: &str| {
        Ident::parse(text).map_err(|e| NewError::Scaffold(format!("{flag}: {e}")))
    };
    let public = Ident::new("public").expect("valid");
    let table = QualifiedName::parse(&need(&args.table, "--table")?, &public)
        .map_err(|e| NewError::Scaffold(format!("--table: {e}")))?;
    let column = || ident(&need(&args.column, "--column")?, "--column");
    let type_name = || need(&args.type_name, "--type");
    let edit = match args.pattern {
        Some(PatternArg::AddColumn) | None => Edit::AddColumn {
            column: column()?,
            type_name: type_name()?,
            expression: args.expression.clone(),
        },
        Some(PatternArg::RenameColumn) => Edit::RenameColumn {
            column: column()?,
            type_name: type_name()?,
            to: args.to.as_deref().map(|to| ident(to, "--to")).transpose()?,
        },
        Some(PatternArg::ChangeType) => Edit::ChangeType {
            column: column()?,
            type_name: type_name()?,
            expression: args.expression.clone(),
        },
        Some(PatternArg::CopyTable) => Edit::CopyTable {
            into: args
                .to
                .as_deref()
                .map(|to| {
                    QualifiedName::parse(to, &table.schema)
                        .map_err(|e| NewError::Scaffold(format!("--to: {e}")))
                })
                .transpose()?,
        },
    };
    Ok(Change {
        name: name.to_owned(),
        table,
        key: args
            .key
            .iter()
            .map(|k| ident(k, "--key"))
            .collect::<Result<_, _>>()?,
        edit,
    })
}

fn write_new(path: &Path, text: &str) -> Result<(), NewError> {
    use std::io::Write;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(|error| NewError::Write {
            path: path.to_path_buf(),
            error,
        })?;
    file.write_all(text.as_bytes())
        .map_err(|error| NewError::Write {
            path: path.to_path_buf(),
            error,
        })
}

fn is_snake_case(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && !name.ends_with('_')
        && !name.contains("__")
}

/// The current UTC time as `YYYYMMDDHHMMSS`, or one past the newest existing version when that
/// is not older (two files in one second, or a clock behind the repository); `needed`
/// versions from there must exist.
fn next_version(
    dir: &Path,
    now: chrono::DateTime<chrono::Utc>,
    needed: i64,
) -> Result<i64, NewError> {
    let stamp: i64 = now.format("%Y%m%d%H%M%S").to_string().parse().unwrap_or(0);
    let newest = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            source::parse_file_name(e.file_name().to_str()?)
                .ok()
                .flatten()
        })
        .map(|f| f.version)
        .max();
    let next = match newest {
        Some(newest) if newest >= stamp => newest.checked_add(1),
        _ => Some(stamp),
    };
    next.filter(|v| v.checked_add(needed - 1).is_some())
        .ok_or_else(|| NewError::NoVersionLeft {
            dir: dir.to_path_buf(),
            newest: newest.unwrap_or(stamp),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snake_case_names_only() {
        for good in ["add_users", "a", "add_email2", "v2_backfill"] {
            assert!(is_snake_case(good), "{good}");
        }
        for bad in [
            "AddUsers",
            "add-users",
            "add users",
            "_x",
            "x_",
            "2x",
            "",
            "a__b",
            "drop;table",
        ] {
            assert!(!is_snake_case(bad), "{bad}");
        }
    }

    #[test]
    fn versions_are_utc_timestamps_that_never_go_backwards() {
        let dir = tempfile::tempdir().unwrap();
        let now = chrono::DateTime::parse_from_rfc3339("2026-11-21T10:20:30Z")
            .unwrap()
            .to_utc();
        assert_eq!(next_version(dir.path(), now, 1).unwrap(), 20261121102030);
        std::fs::write(dir.path().join("20261121102030_a.sql"), "").unwrap();
        assert_eq!(next_version(dir.path(), now, 1).unwrap(), 20261121102031);
    }

    #[test]
    fn no_version_after_the_largest_is_an_error_not_a_wrap() {
        let dir = tempfile::tempdir().unwrap();
        let now = chrono::Utc::now();
        std::fs::write(dir.path().join(format!("{}_last.sql", i64::MAX - 1)), "").unwrap();
        assert_eq!(next_version(dir.path(), now, 1).unwrap(), i64::MAX);
        assert!(next_version(dir.path(), now, 2).is_err());
        std::fs::write(dir.path().join(format!("{}_max.sql", i64::MAX)), "").unwrap();
        let err = next_version(dir.path(), now, 1).unwrap_err();
        assert!(
            err.to_string().contains("no version comes after it"),
            "{err}"
        );
        assert_eq!(err.exit_code(), exit::INVALID_INPUT);
    }
}
