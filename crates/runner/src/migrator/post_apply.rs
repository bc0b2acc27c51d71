//! What `up` does after its migrations: the verification checks (`--verify`, audited) and the
//! schema file (`--dump-schema`), still under the runner's lock so no other runner changes
//! the schema in between.

use sqlx::PgConnection;

use super::{Migrator, Report, ids};
use crate::error::RunnerError;
use crate::event::Event;
use crate::schema_dump::{self, DumpSettings};
use crate::verify::{self, Check, Outcome};

/// `up`'s work after the last migration.
#[derive(Debug, Clone, Default)]
pub struct PostApply {
    /// `--verify` / `--verify-file`: queries that must return true.
    pub checks: Vec<Check>,
    /// `--dump-schema`: where to write the schema.
    pub dump_schema: Option<DumpSettings>,
}

impl Migrator {
    /// Runs every check (each audited), writes the schema file, then fails the run if a check
    /// did not pass: the migrations stay applied, and the output says which check and why.
    pub(super) async fn post_apply(
        &self,
        conn: &mut PgConnection,
        mut report: Report,
        events: &mut dyn FnMut(Event),
    ) -> Result<Report, RunnerError> {
        let post = &self.settings.post_apply;
        for check in &post.checks {
            let outcome = self.check(conn, check).await?;
            events(Event::Checked(outcome.clone()));
            report.checks.push(outcome);
        }
        if let Some(dump) = &post.dump_schema {
            let bytes = schema_dump::dump(&self.settings.connect, &self.settings.schema, dump)
                .await
                .map_err(|e| RunnerError::Dump {
                    error: e,
                    done: ids(&report),
                })?;
            tracing::info!(path = %dump.path.display(), bytes, "schema written");
            events(Event::SchemaDumped {
                path: dump.path.clone(),
                bytes,
            });
        }
        let failed: Vec<Outcome> = report
            .checks
            .iter()
            .filter(|o| !o.passed)
            .cloned()
            .collect();
        if failed.is_empty() {
            Ok(report)
        } else {
            Err(RunnerError::Verification {
                failed,
                done: ids(&report),
            })
        }
    }

    async fn check(&self, conn: &mut PgConnection, check: &Check) -> Result<Outcome, RunnerError> {
        let outcome = verify::run(conn, check, self.settings.guards.statement_timeout).await;
        if outcome.passed {
            tracing::info!(check = %outcome.name, duration_ms = outcome.duration_ms, "check passed");
        } else {
            tracing::warn!(check = %outcome.name, problem = ?outcome.problem, "check failed");
        }
        self.history
            .record_check(conn, &self.settings.who, &outcome.to_string())
            .await
            .map_err(RunnerError::query("auditing a verification check"))?;
        Ok(outcome)
    }
}
