//! `validate --since <git-ref>`: migrations are immutable once merged. Compares the
//! migrations directory with its state at a git ref and reports files that were edited,
//! renamed or deleted since, and new files older than the newest one at that ref.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::layout::Order;
use crate::script::checksum;
use crate::source::{self, Version};

/// One way the directory broke immutability.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Edited {
        file: String,
    },
    Renamed {
        from: String,
        to: String,
    },
    Deleted {
        file: String,
    },
    /// A new file whose version is not newer than the newest file at the ref.
    OlderThanMerged {
        file: String,
        newest: String,
    },
}

impl std::fmt::Display for Change {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Edited { file } => write!(
                f,
                "{file}: edited after it was merged; put the change in a new migration"
            ),
            Self::Renamed { from, to } => write!(
                f,
                "{to}: renamed from {from} after it was merged; rename it back"
            ),
            Self::Deleted { file } => write!(f, "{file}: deleted after it was merged; restore it"),
            Self::OlderThanMerged { file, newest } => write!(
                f,
                "{file}: new, but its version is not newer than {newest}, already merged; give it a newer version (sluice new)"
            ),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SinceError {
    #[error("git {args}: {message}")]
    Git { args: String, message: String },
    #[error("{} is not inside a git repository: {message}", dir.display())]
    NotARepository { dir: PathBuf, message: String },
}

/// A migration file's name and text.
type Files = BTreeMap<String, String>;

/// Compares `dir` now with `dir` at `git_ref`.
pub fn changes_since(dir: &Path, git_ref: &str) -> Result<Vec<Change>, SinceError> {
    let top =
        git(dir, &["rev-parse", "--show-toplevel"]).map_err(|e| SinceError::NotARepository {
            dir: dir.to_path_buf(),
            message: e.to_string(),
        })?;
    let top = PathBuf::from(top.trim());
    let absolute = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
    let relative = absolute
        .strip_prefix(&top)
        .unwrap_or(&absolute)
        .to_path_buf();
    // From the repository's top: git resolves some paths relative to the working directory.
    git(
        &top,
        &[
            "rev-parse",
            "--verify",
            "--quiet",
            &format!("{git_ref}^{{commit}}"),
        ],
    )
    .map_err(|_| SinceError::Git {
        args: format!("rev-parse {git_ref}"),
        message: format!("`{git_ref}` is not a commit, branch or tag of this repository"),
    })?;
    let then = files_at(&top, git_ref, &relative)?;
    let now = files_now(dir);
    Ok(compare(&then, &now))
}

/// Pure: what changed between two sets of files.
pub fn compare(then: &Files, now: &Files) -> Vec<Change> {
    let mut changes = Vec::new();
    let gone: Vec<(&String, &String)> = then
        .iter()
        .filter(|(name, _)| !now.contains_key(*name))
        .collect();
    let added: Vec<(&String, &String)> = now
        .iter()
        .filter(|(name, _)| !then.contains_key(*name))
        .collect();
    for (name, text) in then {
        if let Some(current) = now.get(name)
            && checksum(current) != checksum(text)
        {
            changes.push(Change::Edited { file: name.clone() });
        }
    }
    let mut renamed_to = Vec::new();
    for (name, text) in &gone {
        match added.iter().find(|(_, t)| checksum(t) == checksum(text)) {
            Some((to, _)) => {
                renamed_to.push((*to).clone());
                changes.push(Change::Renamed {
                    from: (*name).clone(),
                    to: (*to).clone(),
                });
            }
            None => changes.push(Change::Deleted {
                file: (*name).clone(),
            }),
        }
    }
    // diesel's directories run in text order, every other layout's files in numeric order.
    let order = if then.keys().any(|n| n.contains('/')) {
        Order::Text
    } else {
        Order::Numeric
    };
    let newest = then
        .keys()
        .filter_map(|n| version_of(n).map(|v| (v, n)))
        .max_by(|(a, _), (b, _)| order.cmp(*a, *b));
    if let Some((newest_version, newest_name)) = newest {
        for (name, _) in added.iter().filter(|(n, _)| !renamed_to.contains(n)) {
            if version_of(name).is_some_and(|v| order.cmp(v, newest_version).is_le()) {
                changes.push(Change::OlderThanMerged {
                    file: (*name).clone(),
                    newest: newest_name.clone(),
                });
            }
        }
    }
    changes
}

/// The version of a migration file: `0001_a.sql`, or diesel's `2024-01-31-120000_a/up.sql`.
fn version_of(name: &str) -> Option<Version> {
    match name.split_once('/') {
        Some((dir, file)) => ["up.sql", "down.sql"]
            .contains(&file)
            .then(|| source::parse_directory_name(dir).ok())
            .flatten()
            .map(|(version, _, _)| version),
        None => source::parse_file_name(name)
            .ok()
            .flatten()
            .map(|f| f.version),
    }
}

/// Files are named by their path under the migrations directory: `0001_a.sql` or
/// `2024-01-31-120000_a/up.sql`.
fn is_migration(name: &str) -> bool {
    version_of(name).is_some()
}

fn files_now(dir: &Path) -> Files {
    let mut files = Files::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        let path = entry.path();
        let names: Vec<String> = if path.is_dir() {
            ["up.sql", "down.sql"]
                .iter()
                .map(|file| format!("{name}/{file}"))
                .collect()
        } else {
            vec![name]
        };
        for name in names.into_iter().filter(|n| is_migration(n)) {
            if let Ok(text) = std::fs::read_to_string(dir.join(&name)) {
                files.insert(name, text);
            }
        }
    }
    files
}

fn files_at(top: &Path, git_ref: &str, relative: &Path) -> Result<Files, SinceError> {
    let spec = format!("{git_ref}:{}", relative.display());
    let listing = git(
        top,
        &[
            "ls-tree",
            "-r",
            "--name-only",
            &format!("{git_ref}:{}", relative.display()),
        ],
    );
    let names = match listing {
        Ok(names) => names,
        // The directory did not exist at that ref: everything is new.
        Err(SinceError::Git { message, .. })
            if message.contains("Not a valid object name")
                || message.contains("does not exist") =>
        {
            return Ok(Files::new());
        }
        Err(e) => return Err(e),
    };
    names
        .lines()
        .filter(|name| is_migration(name))
        .map(|name| {
            let text = git(top, &["show", &format!("{spec}/{name}")])?;
            Ok((name.to_owned(), text))
        })
        .collect()
}

fn git(dir: &Path, args: &[&str]) -> Result<String, SinceError> {
    let output = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .output()
        .map_err(|e| SinceError::Git {
            args: args.join(" "),
            message: format!("cannot run git: {e}"),
        })?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(SinceError::Git {
            args: args.join(" "),
            message: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(list: &[(&str, &str)]) -> Files {
        list.iter()
            .map(|(n, t)| ((*n).to_owned(), (*t).to_owned()))
            .collect()
    }

    #[test]
    fn unchanged_files_are_fine_and_newer_files_are_welcome() {
        let then = files(&[("0001_a.sql", "SELECT 1;")]);
        let now = files(&[("0001_a.sql", "SELECT 1;"), ("0002_b.sql", "SELECT 2;")]);
        assert!(compare(&then, &now).is_empty());
    }

    #[test]
    fn diesel_directories_are_compared_like_files() {
        let then = files(&[
            ("2024-01-01-000000_a/up.sql", "SELECT 1;"),
            ("2024-01-01-000000_a/down.sql", "SELECT -1;"),
            ("2024-02-01-000000_b/up.sql", "SELECT 2;"),
        ]);
        let now = files(&[
            ("2024-01-01-000000_a/up.sql", "SELECT 10;"),
            ("2024-01-01-000000_a/down.sql", "SELECT -1;"),
            ("2024-02-01-000000_bee/up.sql", "SELECT 2;"),
            ("2024-01-15-000000_late/up.sql", "SELECT 3;"),
            ("2024-03-01-000000_new/up.sql", "SELECT 4;"),
        ]);
        assert_eq!(
            compare(&then, &now),
            vec![
                Change::Edited {
                    file: "2024-01-01-000000_a/up.sql".into()
                },
                Change::Renamed {
                    from: "2024-02-01-000000_b/up.sql".into(),
                    to: "2024-02-01-000000_bee/up.sql".into()
                },
                Change::OlderThanMerged {
                    file: "2024-01-15-000000_late/up.sql".into(),
                    newest: "2024-02-01-000000_b/up.sql".into()
                },
            ]
        );
        assert!(!is_migration("k8s/job.sql"));
        assert!(!is_migration("2024-01-01-000000_a/seed.sql"));
    }

    #[test]
    fn line_endings_alone_are_not_an_edit() {
        let then = files(&[("0001_a.sql", "SELECT 1;\n")]);
        let now = files(&[("0001_a.sql", "SELECT 1;\r\n")]);
        assert!(compare(&then, &now).is_empty());
    }

    #[test]
    fn reports_edits_renames_deletions_and_late_versions() {
        let then = files(&[
            ("0001_a.sql", "SELECT 1;"),
            ("0002_b.sql", "SELECT 2;"),
            ("0003_c.sql", "SELECT 3;"),
            ("0005_e.sql", "SELECT 5;"),
        ]);
        let now = files(&[
            ("0001_a.sql", "SELECT 10;"),
            ("0002_bee.sql", "SELECT 2;"),
            ("0005_e.sql", "SELECT 5;"),
            ("0004_d.sql", "SELECT 4;"),
            ("0006_f.sql", "SELECT 6;"),
        ]);
        let changes = compare(&then, &now);
        assert!(
            changes.contains(&Change::Edited {
                file: "0001_a.sql".into()
            }),
            "{changes:?}"
        );
        assert!(
            changes.contains(&Change::Renamed {
                from: "0002_b.sql".into(),
                to: "0002_bee.sql".into()
            }),
            "{changes:?}"
        );
        assert!(
            changes.contains(&Change::Deleted {
                file: "0003_c.sql".into()
            }),
            "{changes:?}"
        );
        assert!(
            changes.contains(&Change::OlderThanMerged {
                file: "0004_d.sql".into(),
                newest: "0005_e.sql".into()
            }),
            "{changes:?}"
        );
        assert_eq!(changes.len(), 4, "{changes:?}");
    }
}
