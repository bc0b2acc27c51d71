//! Approvals: a person's sign-off on one pending migration's exact checksum, recorded in the
//! target database's audit table (`sluice approve`). In an environment with
//! `require_approval`, `up` applies migrations only while each is approved as its file is
//! now: an edit after the approval changes the checksum and voids it.
//!
//! The judgement is pure ([`standing`], [`gate`]); the rows are read and written by
//! [`History`](crate::history::History).

use std::fmt;

use chrono::{DateTime, Utc};

use crate::source::{Migration, Version};

/// One approval as the audit table keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Approval {
    pub version: Version,
    pub checksum: String,
    pub at: DateTime<Utc>,
    /// The actor, else the database role that recorded it.
    pub by: String,
    pub reason: String,
}

/// Where a pending migration stands with its approvals.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing<'a> {
    /// Approved with the checksum the file has now (the newest such approval).
    Approved(&'a Approval),
    /// Approved, but the file changed since: the newest approval, of another checksum.
    Voided(&'a Approval),
    Unapproved,
}

/// `migration`'s standing among `approvals` (in the order they were recorded).
pub fn standing<'a>(migration: &Migration, approvals: &'a [Approval]) -> Standing<'a> {
    let mine = || {
        approvals
            .iter()
            .rev()
            .filter(|a| a.version == migration.version)
    };
    if let Some(approval) = mine().find(|a| a.checksum == migration.up.checksum) {
        return Standing::Approved(approval);
    }
    mine().next().map_or(Standing::Unapproved, Standing::Voided)
}

/// A migration `up` may not apply for want of an approval.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unapproved {
    pub migration: String,
    pub version_shown: String,
    /// Approved once, but the file changed since.
    pub voided: bool,
}

impl fmt::Display for Unapproved {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.voided {
            write!(
                f,
                "{}: its approval is void, the file changed since it was approved",
                self.migration
            )
        } else {
            write!(f, "{}: not approved", self.migration)
        }
    }
}

/// How many of `pending` (in the order they would run) may run, the approved ones before the
/// first that is not, and every one that is not.
pub fn gate(pending: &[&Migration], approvals: &[Approval]) -> (usize, Vec<Unapproved>) {
    let unapproved: Vec<(usize, Unapproved)> = pending
        .iter()
        .enumerate()
        .filter_map(|(index, migration)| {
            let voided = match standing(migration, approvals) {
                Standing::Approved(_) => return None,
                Standing::Voided(_) => true,
                Standing::Unapproved => false,
            };
            Some((
                index,
                Unapproved {
                    migration: migration.id(),
                    version_shown: migration.version_text.clone(),
                    voided,
                },
            ))
        })
        .collect();
    let runnable = unapproved
        .first()
        .map_or(pending.len(), |(index, _)| *index);
    (runnable, unapproved.into_iter().map(|(_, u)| u).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::script::Script;
    use std::path::Path;

    /// Migration `version` whose file has `checksum`.
    fn migration_with_checksum(version: Version, checksum: &str) -> Migration {
        let mut up = Script::parse(Path::new("m.sql"), "SELECT 1;").unwrap();
        up.checksum = checksum.to_owned();
        Migration {
            version,
            version_text: version.to_string(),
            name: format!("m{version}"),
            up,
            down: None,
            form: crate::layout::Form::Flat,
        }
    }

    fn approval(version: Version, checksum: &str, by: &str) -> Approval {
        Approval {
            version,
            checksum: checksum.to_owned(),
            at: DateTime::UNIX_EPOCH,
            by: by.to_owned(),
            reason: "reviewed".to_owned(),
        }
    }

    #[test]
    fn an_approval_holds_for_its_checksum_only() {
        let m = migration_with_checksum(2, "bbb");
        let approvals = [approval(2, "aaa", "ann"), approval(3, "bbb", "bob")];
        assert_eq!(standing(&m, &approvals), Standing::Voided(&approvals[0]));
        let approvals = [approval(2, "aaa", "ann"), approval(2, "bbb", "cy")];
        assert_eq!(standing(&m, &approvals), Standing::Approved(&approvals[1]));
        assert_eq!(standing(&m, &[]), Standing::Unapproved);
    }

    #[test]
    fn up_runs_the_approved_prefix_and_names_every_unapproved_one() {
        let (one, two, three) = (
            migration_with_checksum(1, "a"),
            migration_with_checksum(2, "b"),
            migration_with_checksum(3, "c"),
        );
        let pending = [&one, &two, &three];
        let approvals = [
            approval(1, "a", "ann"),
            approval(2, "old", "ann"),
            approval(3, "c", "ann"),
        ];
        let (runnable, unapproved) = gate(&pending, &approvals);
        assert_eq!(runnable, 1);
        assert_eq!(unapproved.len(), 1);
        assert!(unapproved[0].voided);
        assert!(unapproved[0].to_string().contains("file changed since"));
        let (runnable, unapproved) = gate(&pending, &[]);
        assert_eq!((runnable, unapproved.len()), (0, 3));
        let all = [
            approval(1, "a", "x"),
            approval(2, "b", "x"),
            approval(3, "c", "x"),
        ];
        assert_eq!(gate(&pending, &all), (3, Vec::new()));
    }
}
