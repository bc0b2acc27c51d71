//! A database of its own for each test, so tests run in parallel without seeing each other.

use std::sync::atomic::{AtomicU32, Ordering};

use sluice_common::scratch;
use sqlx::{AssertSqlSafe, Connection, PgConnection, PgPool};

use crate::server;

static NEXT: AtomicU32 = AtomicU32::new(0);

/// A fresh, empty database, dropped when the value is dropped (also when the test panics).
#[derive(Debug)]
pub struct TestDb {
    pub name: String,
    /// A URL for this database with the server's superuser.
    pub url: String,
    /// The server's superuser URL, to drop the database with.
    admin_url: String,
}

impl TestDb {
    pub async fn new() -> Self {
        Self::on(&server().admin_url).await
    }

    /// A fresh database on the server of `admin_url` (a test's private server).
    pub async fn on(admin_url: &str) -> Self {
        let name = format!(
            "sluice_test_{}_{}_{:04x}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::SeqCst),
            fastrand::u16(..)
        );
        let mut admin = PgConnection::connect(admin_url)
            .await
            .unwrap_or_else(|e| panic!("cannot connect to the test server: {e}"));
        scratch::create_database(&mut admin, &name)
            .await
            .unwrap_or_else(|e| {
                panic!("cannot create test database {name} (the role needs CREATEDB): {e}")
            });
        let _ = admin.close().await;
        let url = url_for_database(admin_url, &name);
        Self {
            name,
            url,
            admin_url: admin_url.to_owned(),
        }
    }

    pub async fn connect(&self) -> PgConnection {
        PgConnection::connect(&self.url)
            .await
            .unwrap_or_else(|e| panic!("cannot connect to {}: {e}", self.name))
    }

    pub async fn pool(&self) -> PgPool {
        sqlx::postgres::PgPoolOptions::new()
            .max_connections(10)
            .connect(&self.url)
            .await
            .unwrap_or_else(|e| panic!("cannot connect to {}: {e}", self.name))
    }

    /// The one `bigint` a query returns (a count), panicking with the error if it fails.
    pub async fn scalar(&self, sql: &str) -> i64 {
        let mut connection = self.connect().await;
        let value = sqlx::query_scalar(AssertSqlSafe(sql.to_owned()))
            .fetch_one(&mut connection)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        let _ = connection.close().await;
        value
    }

    /// Runs SQL (several statements allowed) and panics with the error if it fails.
    /// The benchmarks' table: `t (id bigint primary key, a int, b text)` with `rows` rows,
    /// `b` empty, vacuumed, analysed and checkpointed, so each method starts alike.
    pub async fn bench_table(&self, rows: i64) {
        self.exec(&format!(
            "CREATE TABLE t (id bigint PRIMARY KEY, a int NOT NULL, b text);
             INSERT INTO t (id, a) SELECT g, g FROM generate_series(1, {rows}) g;"
        ))
        .await;
        // Each on its own: VACUUM cannot run in the implicit transaction of a multi-statement
        // query.
        self.exec("VACUUM ANALYZE t").await;
        self.exec("CHECKPOINT").await;
    }

    /// `psql` on this database: quiet, no psqlrc, stopping at the first error.
    pub fn psql(&self) -> std::process::Command {
        let mut command = std::process::Command::new("psql");
        command.args([
            "--quiet",
            "--no-psqlrc",
            "-v",
            "ON_ERROR_STOP=1",
            "-d",
            &self.url,
        ]);
        command
    }

    pub async fn exec(&self, sql: &str) {
        let mut connection = self.connect().await;
        sqlx::raw_sql(AssertSqlSafe(sql.to_owned()))
            .execute(&mut connection)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        let _ = connection.close().await;
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let admin_url = self.admin_url.clone();
        let name = self.name.clone();
        // Drop may run inside the test's runtime, which cannot be blocked on; use a thread
        // with a runtime of its own.
        let dropper = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            runtime.block_on(async {
                let mut admin = PgConnection::connect(&admin_url).await.ok()?;
                scratch::drop_database(&mut admin, &name).await.ok()?;
                admin.close().await.ok()
            })
        });
        let _ = dropper.join();
    }
}

/// The server URL with its database replaced.
fn url_for_database(server_url: &str, database: &str) -> String {
    scratch::url_with_database(server_url, database)
        .unwrap_or_else(|e| panic!("DATABASE_URL is not a URL the tests can use: {e}"))
}
