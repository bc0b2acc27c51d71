//! `up --dump-schema`: the schema after a run, as a committed `schema.sql` that reviewers read
//! in diffs and `sluice drift --schema-file` compares a live database with.
//!
//! The file is `pg_dump --schema-only` without owners, privileges and sluice's own schema,
//! made deterministic: pg_dump's version lines and its per-dump `\restrict` keys would change
//! the file on every run without any schema change.

use std::path::{Path, PathBuf};

use sluice_common::db::ConnectSettings;
use sluice_common::ident::Ident;

use crate::backup::{self, ToolFailure};

/// Where the schema goes and which pg_dump writes it.
#[derive(Debug, Clone)]
pub struct DumpSettings {
    pub path: PathBuf,
    /// `pg_dump` (override with `SLUICE_PG_DUMP`).
    pub pg_dump: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum DumpError {
    #[error(
        "the migrations were applied, but {} failed, so {} was not updated: {}; fix that and run `sluice up --dump-schema` again",
        failure.program, path.display(), failure.message
    )]
    Tool { path: PathBuf, failure: ToolFailure },
    #[error(
        "the migrations were applied, but {} could not be written: {error}; run `sluice up --dump-schema` again",
        path.display()
    )]
    Write {
        path: PathBuf,
        error: std::io::Error,
    },
}

const HEADER: &str = "-- The schema the migrations produce, maintained by `sluice up --dump-schema`.\n\
     -- Do not edit: change a migration instead. `sluice drift --schema-file` compares a\n\
     -- database with it.\n";

/// Dumps the schema of `connect` (without sluice's schema) to `settings.path`, atomically.
/// Returns the file's size in bytes.
pub async fn dump(
    connect: &ConnectSettings,
    sluice_schema: &Ident,
    settings: &DumpSettings,
) -> Result<u64, DumpError> {
    let url = connect.endpoint.url().ok_or_else(|| DumpError::Tool {
        path: settings.path.clone(),
        failure: ToolFailure {
            program: settings.pg_dump.display().to_string(),
            message: "pg_dump needs a database URL, and these settings carry connection options \
                      only"
                .to_owned(),
        },
    })?;
    let (url, password) = backup::without_password(url.expose());
    let mut command = tokio::process::Command::new(&settings.pg_dump);
    command
        .arg("--schema-only")
        .arg("--no-owner")
        .arg("--no-privileges")
        // A quoted pattern matches the name exactly, whatever its case or characters.
        .arg(format!("--exclude-schema={}", sluice_schema.quoted()))
        .arg("--dbname")
        .arg(&url);
    let output = backup::run(command, &password, &settings.pg_dump, connect)
        .await
        .map_err(|failure| DumpError::Tool {
            path: settings.path.clone(),
            failure,
        })?;
    let text = normalise(&String::from_utf8_lossy(&output));
    write_atomically(&settings.path, &text).map_err(|error| DumpError::Write {
        path: settings.path.clone(),
        error,
    })?;
    Ok(text.len() as u64)
}

/// pg_dump's output without what changes between runs of an unchanged schema.
pub fn normalise(dump: &str) -> String {
    let mut text = String::from(HEADER);
    let mut blank = true;
    for line in dump.lines() {
        let noise = line.starts_with("-- Dumped from database version")
            || line.starts_with("-- Dumped by pg_dump version")
            || is_meta_command(line);
        if noise || (blank && line.is_empty()) {
            continue;
        }
        blank = line.is_empty();
        text.push_str(line);
        text.push('\n');
    }
    text
}

/// The SQL of a schema file without psql meta-commands (`\restrict`, `\connect`), which the
/// server would reject, so it can be loaded over a plain connection.
#[cfg(feature = "cli")]
pub fn loadable(text: &str) -> String {
    text.lines()
        .filter(|line| !is_meta_command(line))
        .collect::<Vec<_>>()
        .join("\n")
}

fn is_meta_command(line: &str) -> bool {
    line.starts_with('\\')
}

fn write_atomically(path: &Path, text: &str) -> std::io::Result<()> {
    let temporary = path.with_extension("sql.partial");
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(&temporary, text)?;
    std::fs::rename(&temporary, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DUMP: &str = "--\n-- PostgreSQL database dump\n--\n\n\\restrict AbC123\n\n\
        -- Dumped from database version 15.18\n-- Dumped by pg_dump version 15.18\n\n\
        SET statement_timeout = 0;\n\n\nCREATE TABLE public.a (\n    id bigint\n);\n\n\
        \\unrestrict AbC123\n";

    #[test]
    fn normalising_drops_versions_restrict_keys_and_repeated_blank_lines() {
        let text = normalise(DUMP);
        assert!(text.starts_with(HEADER));
        assert!(
            !text.contains("15.18") && !text.contains("restrict"),
            "{text}"
        );
        assert!(!text.contains("\n\n\n"), "{text}");
        assert!(text.contains("CREATE TABLE public.a (\n    id bigint\n);\n"));
        // Another dump of the same schema with another key gives the same file.
        assert_eq!(text, normalise(&DUMP.replace("AbC123", "XyZ789")));
    }

    #[test]
    #[cfg(feature = "cli")]
    fn loadable_text_has_no_meta_commands() {
        let sql = loadable(DUMP);
        assert!(!sql.contains('\\'), "{sql}");
        assert!(sql.contains("CREATE TABLE public.a"));
    }
}
