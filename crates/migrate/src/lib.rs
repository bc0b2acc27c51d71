//! sluice's schema runner inside an application: the migrations directory compiled into the
//! binary, applied or checked at start-up on the application's own database.
//!
//! The history it writes is the `sluice` CLI's (same tables, same checksums), so an
//! application and `sluice up`/`sluice status` can take turns on one database. A run holds the
//! CLI's advisory lock, guards every statement with `lock_timeout` and `statement_timeout`,
//! retries lock timeouts, writes history and audit rows, and does not run a contract migration
//! before its backfill job is complete and verified.
//!
//! # Embedding
//!
//! ```no_run
//! static MIGRATIONS: sluice_migrate::Embedded = sluice_migrate::embed_migrations!("migrations");
//! ```
//!
//! The path is relative to the crate's `Cargo.toml`. Edited files are picked up by the next
//! build; for added or removed files to be seen too, give the crate a `build.rs`:
//!
//! ```text
//! // build.rs
//! fn main() {
//!     println!("cargo::rerun-if-changed=migrations");
//! }
//! ```
//!
//! # At start-up
//!
//! Either apply pending migrations (small deployments), or refuse to start while anything is
//! pending (migrations run by a Job or a pipeline), chosen by an environment variable:
//!
//! ```no_run
//! # static MIGRATIONS: sluice_migrate::Embedded = sluice_migrate::embed_migrations!("migrations");
//! # async fn start(pool: sqlx::PgPool) -> Result<(), sluice_migrate::Error> {
//! use sluice_migrate::{Migrator, Policy};
//!
//! let report = Migrator::new(&MIGRATIONS)?
//!     .startup(&pool, Policy::from_env("AUTO_MIGRATE")?)
//!     .await?;
//! tracing::info!("schema: {}", report.status);
//! # Ok(()) }
//! ```
//!
//! With `AUTO_MIGRATE` unset or false, a start-up against a database that misses a migration
//! fails with [`Error::Pending`], naming them; an applied migration whose file changed fails
//! with [`Error::Drift`]. A contract migration whose backfill job is incomplete does not stop
//! a start-up (the running application is what that gate protects): it is reported in
//! [`Status::deferred`] with the job's progress, and applied by a later start or `sluice up`.
//!
//! # Rolling the application back
//!
//! An older build started on a database a newer build migrated finds migrations it does not
//! embed, and refuses ([`Error::Drift`]) by default. After an expand migration the old code
//! still works by design, so a rollback of the application should start: allow it with
//! [`Migrator::allow_newer`] (the unknown migrations are listed in [`Status::newer`], and
//! nothing is applied). A migration this build does not know ordered between ones it does is
//! still refused: its history is then not the database's.
//!
//! ```no_run
//! # static MIGRATIONS: sluice_migrate::Embedded = sluice_migrate::embed_migrations!("migrations");
//! # async fn start(pool: sqlx::PgPool) -> Result<(), sluice_migrate::Error> {
//! use sluice_migrate::{Migrator, Policy, flag_from_env};
//!
//! Migrator::new(&MIGRATIONS)?
//!     .allow_newer(flag_from_env("ALLOW_NEWER_MIGRATIONS")?)
//!     .startup(&pool, Policy::from_env("AUTO_MIGRATE")?)
//!     .await?;
//! # Ok(()) }
//! ```
//!
//! The parts, one at a time:
//!
//! ```no_run
//! # static MIGRATIONS: sluice_migrate::Embedded = sluice_migrate::embed_migrations!("migrations");
//! # async fn parts(pool: sqlx::PgPool) -> Result<(), sluice_migrate::Error> {
//! use std::time::Duration;
//! use sluice_migrate::Migrator;
//!
//! let migrator = Migrator::new(&MIGRATIONS)?
//!     .lock_timeout(Duration::from_secs(1))
//!     .actor("deploy 2026-11-30");
//! let status = migrator.status(&pool).await?; // changes nothing
//! if !status.is_current() {
//!     let report = migrator.run(&pool).await?; // as `sluice up`
//!     for (migration, took) in &report.applied {
//!         tracing::info!("applied {migration} in {took:?}");
//!     }
//! }
//! migrator.check(&pool).await?; // Err(Error::Pending { .. }) while anything is pending
//! # Ok(()) }
//! ```
//!
//! # What is compiled in
//!
//! The runner's engine, sqlx and tracing: no argument parser, linter, progress bars, rate limiter,
//! metrics exporter or backfill engine.

// The macro expands to `::sluice_migrate::...` paths; this lets the crate's own tests use it.
extern crate self as sluice_migrate;

mod embedded;
mod error;
mod migrator;
mod policy;
mod status;

pub use embedded::{Embedded, EmbeddedFile};
pub use error::Error;
pub use migrator::{Database, Migrator, Report};
pub use policy::{Policy, flag_from_env};
pub use status::{Backfill, Deferred, MigrationId, Status};

/// Embeds a migrations directory into the binary, as an [`Embedded`]:
/// `embed_migrations!("migrations")`, the path relative to the crate's `Cargo.toml`
/// (`"migrations"` when omitted). A directory that cannot be read, or holds no migration
/// file, is a compile error naming it.
pub use sluice_migrate_macros::embed_migrations;

#[cfg(test)]
mod tests {
    static MIGRATIONS: crate::Embedded = crate::embed_migrations!();

    #[test]
    fn invalid_embedded_files_are_a_typed_error_naming_them() {
        static BAD: crate::Embedded = crate::Embedded::__from_macro(
            "migrations",
            &[
                crate::EmbeddedFile {
                    path: "0001_a.down.sql",
                    text: "DROP TABLE a;",
                },
                crate::EmbeddedFile {
                    path: "0002_b.sql",
                    text: "-- sluice:requires-backfill\nSELECT 1;",
                },
            ],
        );
        let Err(crate::Error::Invalid { problems }) = crate::Migrator::new(&BAD) else {
            panic!("expected Error::Invalid");
        };
        let text = problems.join("\n");
        assert!(
            text.contains("migrations/0001_a.down.sql: a down file without its up file"),
            "{text}"
        );
        assert!(text.contains("migrations/0002_b.sql"), "{text}");
        assert_eq!(
            crate::Migrator::new(&BAD).unwrap_err().exit_code(),
            sluice_common::exit::INVALID_INPUT
        );
    }

    #[test]
    fn embeds_what_the_cli_reads_with_the_same_checksums() {
        let migrator = crate::Migrator::new(&MIGRATIONS).unwrap();
        let embedded: Vec<(String, String)> = migrator
            .migrations()
            .map(|(id, checksum)| (id.id, checksum.to_owned()))
            .collect();
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations");
        let from_disk: Vec<(String, String)> =
            sluice_runner::source::load(&dir, sluice_runner::layout::Choice::Auto)
                .unwrap()
                .migrations
                .iter()
                .map(|m| (m.id(), m.up.checksum.clone()))
                .collect();
        assert_eq!(embedded, from_disk);
        assert_eq!(embedded.len(), 2);
        let paths: Vec<&str> = MIGRATIONS.files().iter().map(|f| f.path).collect();
        assert_eq!(
            paths,
            [
                "0001_create_notes.sql",
                "0002_notes_created_at.down.sql",
                "0002_notes_created_at.up.sql"
            ]
        );
    }
}
