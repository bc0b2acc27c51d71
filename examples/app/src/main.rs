//! An application that owns its schema with sluice-migrate: the repository's `migrations/` are
//! compiled in, so it runs from any directory.
//!
//! `AUTO_MIGRATE=true` applies pending migrations at start-up (under sluice's lock, so many
//! instances starting at once apply each migration once); otherwise it refuses to start while
//! anything is pending, naming what, with sluice's exit code. A contract migration waiting for
//! its backfill does not stop it. `ALLOW_NEWER_MIGRATIONS=true` lets it start on a database a
//! newer build migrated (rolling the application back after an expand migration). When it may
//! start, it prints one line and exits 0 (a real application would go on to serve).
//! `SLUICE_ENV=<name>` runs it as that environment of `sluice.toml` (`SLUICE_CONFIG`, else the
//! working directory's): where `auto_apply = false`, `AUTO_MIGRATE` only checks.

use std::process::ExitCode;

use sluice_migrate::{Database, Embedded, Error, Migrator, Policy};
use sqlx::postgres::PgPoolOptions;

static MIGRATIONS: Embedded = sluice_migrate::embed_migrations!("../../migrations");

/// sluice's exit code for a missing setting.
const USAGE: u8 = 2;

#[tokio::main]
async fn main() -> ExitCode {
    // Logs (sluice's progress among them) go to stderr; RUST_LOG=debug shows more.
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let Some(url) = std::env::var("DATABASE_URL").ok().filter(|u| !u.is_empty()) else {
        eprintln!("sluice-example-app: not starting: set DATABASE_URL to the database to use");
        return ExitCode::from(USAGE);
    };
    match start(&url).await {
        Ok(line) => {
            println!("{line}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("sluice-example-app: not starting: {error}");
            ExitCode::from(error.exit_code())
        }
    }
}

/// The `sluice.toml` an environment is read from: `SLUICE_CONFIG`, else the working
/// directory's.
fn read_config() -> Result<String, Error> {
    let path = std::env::var("SLUICE_CONFIG").unwrap_or_else(|_| "sluice.toml".to_owned());
    std::fs::read_to_string(&path).map_err(|e| Error::Setting {
        name: "SLUICE_CONFIG".to_owned(),
        value: path,
        expected: format!("cannot be read ({e}): SLUICE_ENV names an environment of that file"),
    })
}

async fn start(url: &str) -> Result<String, Error> {
    let db = Database::from_url(url)?;
    // The application's own pool; sluice connects with its options, on connections of its own.
    let pool = PgPoolOptions::new()
        .max_connections(4)
        .connect_lazy_with(db.connect_options().clone());
    let mut migrator = Migrator::new(&MIGRATIONS)?
        .actor(format!("sluice-example-app pid {}", std::process::id()))
        .allow_newer(sluice_migrate::flag_from_env("ALLOW_NEWER_MIGRATIONS")?);
    if let Some(env) = std::env::var("SLUICE_ENV").ok().filter(|e| !e.is_empty()) {
        migrator = migrator.environment(&env, &read_config()?)?;
    }
    let report = migrator
        .startup(&pool, Policy::from_env("AUTO_MIGRATE")?)
        .await?;
    let accounts: i64 = sqlx::query_scalar("SELECT count(*) FROM accounts")
        .fetch_one(&pool)
        .await
        .map_err(|e| Error::Database(e.into()))?;
    Ok(format!(
        "sluice-example-app: started: applied {} migration(s) now; {}; {accounts} account(s)",
        report.applied.len(),
        report.status
    ))
}
