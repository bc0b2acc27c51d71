//! `sluice roundtrip`: on a scratch database, apply every migration in order, and for each
//! reversible one revert it and apply it again, comparing catalog snapshots: the rollback test
//! operators are told to run before production, as one command.

use crate::migrator::Execution;
use sluice_common::shutdown::Shutdown;

use crate::catalog;
use crate::error::RunnerError;
use crate::event::Event;
use crate::migrator::Migrator;
use crate::plan::DownTarget;

/// What the round trip found for one migration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Down restored the schema, and up ran again to the same schema.
    Sound,
    /// No down file: applied, not reverted.
    Irreversible,
    /// The first apply failed: the round trip stops here.
    UpFailed(String),
    DownFailed(String),
    /// Down ran but left the schema different from before the up: the difference.
    DownMismatch(Vec<String>),
    ReapplyFailed(String),
    /// Up ran again but produced a different schema: the difference.
    ReapplyMismatch(Vec<String>),
}

impl Verdict {
    pub fn is_failure(&self) -> bool {
        !matches!(self, Self::Sound | Self::Irreversible)
    }
}

/// Runs the round trip with `migrator`, whose settings point at an empty scratch database.
pub async fn roundtrip(
    migrator: &Migrator,
    shutdown: &Shutdown,
) -> Result<Vec<(String, Verdict)>, RunnerError> {
    let exclude = [migrator.history().schema().as_str()];
    let mut conn = sluice_common::db::connect(migrator.connect_settings()).await?;
    let mut verdicts = Vec::new();
    let quiet = &mut |_: Event| {};
    for migration in migrator.files() {
        let id = migration.id();
        let before = snapshot(&mut conn, &exclude).await?;
        if let Err(e) = migrator
            .up(Some(migration.version), Execution::Apply, shutdown, quiet)
            .await
        {
            verdicts.push((id, Verdict::UpFailed(e.to_string())));
            break;
        }
        if migration.down.is_none() {
            verdicts.push((id, Verdict::Irreversible));
            continue;
        }
        let after = snapshot(&mut conn, &exclude).await?;
        if let Err(e) = migrator
            .down(DownTarget::Steps(1), Execution::Apply, shutdown, quiet)
            .await
        {
            verdicts.push((id, Verdict::DownFailed(e.to_string())));
            break;
        }
        let reverted = snapshot(&mut conn, &exclude).await?;
        let mut down_diff = catalog::diff(&before, &reverted);
        let reapplied = migrator
            .up(Some(migration.version), Execution::Apply, shutdown, quiet)
            .await;
        let verdict = match reapplied {
            // The down's difference is the cause; a failing second up is its consequence.
            Err(e) if !down_diff.is_empty() => {
                down_diff.push(format!("(and up cannot run again: {e})"));
                verdicts.push((id, Verdict::DownMismatch(down_diff)));
                break;
            }
            Err(e) => {
                verdicts.push((id, Verdict::ReapplyFailed(e.to_string())));
                break;
            }
            Ok(_) if !down_diff.is_empty() => Verdict::DownMismatch(down_diff),
            Ok(_) => {
                let up_diff = catalog::diff(&after, &snapshot(&mut conn, &exclude).await?);
                if up_diff.is_empty() {
                    Verdict::Sound
                } else {
                    Verdict::ReapplyMismatch(up_diff)
                }
            }
        };
        verdicts.push((id, verdict));
    }
    Ok(verdicts)
}

async fn snapshot(
    conn: &mut sqlx::PgConnection,
    exclude: &[&str],
) -> Result<Vec<String>, RunnerError> {
    catalog::snapshot(conn, exclude)
        .await
        .map_err(RunnerError::query("taking a catalog snapshot"))
}
