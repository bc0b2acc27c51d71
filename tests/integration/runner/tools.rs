//! Directories as sqlx, golang-migrate, diesel, dbmate, goose, sql-migrate and Flyway users
//! write them (written here, modelled on their patterns), applied unedited by `sluice up` to an
//! empty database and compared with what each tool's own rule gives: the same files run on
//! another database the way the tool runs them. Where downs exist, a full `down` and `up` again
//! gives the same schema once more.

use sluice_common::exit;
use sluice_tests::{Project, TestDb, catalog};
use sqlx::{AssertSqlSafe, Connection, PgConnection};

/// How the tool runs one file.
#[derive(Clone, Copy)]
enum Rule {
    /// sqlx and diesel: in a transaction of the tool's.
    InTransaction,
    /// `-- no-transaction` (sqlx), `run_in_transaction = false` (diesel): as it is.
    AsItIs,
    /// golang-migrate: the whole file as one multi-statement exec (an implicit transaction
    /// unless the file writes its own BEGIN/COMMIT).
    MultiStatement,
}

/// The files, each with its tool's rule, applied the tool's way to a database of their own;
/// its schema.
async fn tools_schema(files: &[(&str, Rule)]) -> Vec<String> {
    let db = TestDb::new().await;
    let mut conn = db.connect().await;
    for (sql, rule) in files {
        match rule {
            Rule::InTransaction => {
                let mut tx = conn.begin().await.unwrap();
                sqlx::raw_sql(AssertSqlSafe(sql.to_string()))
                    .execute(&mut *tx)
                    .await
                    .unwrap();
                tx.commit().await.unwrap();
            }
            Rule::AsItIs | Rule::MultiStatement => {
                // One simple-query exec: what golang-migrate (and a driver given the file)
                // sends.
                sqlx::raw_sql(AssertSqlSafe(sql.to_string()))
                    .execute(&mut conn)
                    .await
                    .unwrap();
            }
        }
    }
    catalog::snapshot(&mut conn, "public").await
}

async fn sluice_schema(project: &Project) -> Vec<String> {
    let mut conn: PgConnection = project.db.connect().await;
    catalog::snapshot(&mut conn, "public").await
}

#[tokio::test]
async fn a_sqlx_directory_gives_the_schema_sqlx_gives() {
    let project = Project::new().await;
    let files = [
        (
            "20260101000000_[1.0.0]_init.up.sql",
            "CREATE TABLE accounts (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, email text NOT NULL);\n\
             CREATE FUNCTION touch() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END; $$;\n",
            Rule::InTransaction,
        ),
        (
            "20260101000000_[1.0.0]_init.down.sql",
            "DROP FUNCTION touch();\nDROP TABLE accounts;\n",
            Rule::InTransaction,
        ),
        (
            "20260102000000_Add.Email-Index.sql",
            "-- no-transaction\nCREATE INDEX CONCURRENTLY accounts_email ON accounts (email);\n",
            Rule::AsItIs,
        ),
    ];
    for (name, sql, _) in &files {
        project.write(name, sql);
    }
    project.run(&["up", "--skip-lint"]).expect_code(exit::OK);
    let ups: Vec<(&str, Rule)> = files
        .iter()
        .filter(|(name, ..)| !name.ends_with(".down.sql"))
        .map(|(_, sql, rule)| (*sql, *rule))
        .collect();
    assert_eq!(sluice_schema(&project).await, tools_schema(&ups).await);
}

#[tokio::test]
async fn a_golang_migrate_directory_gives_the_schema_golang_migrate_gives() {
    let project = Project::new().await;
    let ups = [
        (
            "1_create_users.up.sql",
            "BEGIN;\nCREATE TABLE users (id bigint PRIMARY KEY, name text);\nCOMMIT;\n",
        ),
        (
            "2_add_flags.up.sql",
            "SET lock_timeout = '5s';\nBEGIN;\nALTER TABLE users ADD COLUMN flags bigint NOT NULL DEFAULT 0;\n\
             CREATE TABLE audit_log (id bigint PRIMARY KEY);\nCOMMIT;\n",
        ),
        (
            "3_index_users.up.sql",
            "CREATE INDEX CONCURRENTLY IF NOT EXISTS users_name ON users (name);\n",
        ),
        (
            "10_two_steps.up.sql",
            "BEGIN;\nCREATE TABLE a (id bigint PRIMARY KEY);\nCOMMIT;\n\
             BEGIN;\nCREATE TABLE b (id bigint PRIMARY KEY, a_id bigint REFERENCES a (id));\nCOMMIT;\n",
        ),
    ];
    let downs = [
        ("1_drop_users.down.sql", "DROP TABLE users;\n"),
        (
            "2_remove_flags.down.sql",
            "BEGIN;\nDROP TABLE audit_log;\nALTER TABLE users DROP COLUMN flags;\nCOMMIT;\n",
        ),
        (
            "3_index_users.down.sql",
            "DROP INDEX CONCURRENTLY IF EXISTS users_name;\n",
        ),
        ("10_two_steps.down.sql", "DROP TABLE b;\nDROP TABLE a;\n"),
    ];
    for (name, sql) in ups.iter().chain(&downs) {
        project.write(name, sql);
    }
    project.run(&["up", "--skip-lint"]).expect_code(exit::OK);
    let reference: Vec<(&str, Rule)> = ups
        .iter()
        .map(|(_, sql)| (*sql, Rule::MultiStatement))
        .collect();
    let expected = tools_schema(&reference).await;
    assert_eq!(sluice_schema(&project).await, expected);
    // A full down, then up again.
    project
        .run(&["down", "--to", "0", "--skip-lint"])
        .expect_code(exit::OK);
    assert_eq!(sluice_schema(&project).await, Vec::<String>::new());
    project.run(&["up", "--skip-lint"]).expect_code(exit::OK);
    assert_eq!(sluice_schema(&project).await, expected);
}

#[tokio::test]
async fn a_diesel_directory_gives_the_schema_diesel_gives() {
    let project = Project::new().await;
    let dirs = [
        (
            "2024-01-31-120000_create_posts",
            "CREATE TABLE posts (id bigint PRIMARY KEY, title text NOT NULL, body text);\n",
            "DROP TABLE posts;\n",
            None,
        ),
        (
            "2024-02-01-090000-index-posts",
            "CREATE INDEX CONCURRENTLY posts_title ON posts (title);\n",
            "DROP INDEX CONCURRENTLY posts_title;\n",
            Some("run_in_transaction = false\n"),
        ),
        (
            "2024-02-02-090000_add_published",
            "ALTER TABLE posts ADD COLUMN published boolean NOT NULL DEFAULT false;\n",
            "ALTER TABLE posts DROP COLUMN published;\n",
            None,
        ),
    ];
    for (dir, up, down, metadata) in &dirs {
        project.write(&format!("{dir}/up.sql"), up);
        project.write(&format!("{dir}/down.sql"), down);
        if let Some(metadata) = metadata {
            std::fs::write(
                project.migrations().join(dir).join("metadata.toml"),
                metadata,
            )
            .unwrap();
        }
    }
    project.run(&["up", "--skip-lint"]).expect_code(exit::OK);
    let reference: Vec<(&str, Rule)> = dirs
        .iter()
        .map(|(_, up, _, metadata)| {
            (
                *up,
                if metadata.is_some() {
                    Rule::AsItIs
                } else {
                    Rule::InTransaction
                },
            )
        })
        .collect();
    let expected = tools_schema(&reference).await;
    assert_eq!(sluice_schema(&project).await, expected);
    project
        .run(&["down", "--to", "0", "--skip-lint"])
        .expect_code(exit::OK);
    assert_eq!(sluice_schema(&project).await, Vec::<String>::new());
    project.run(&["up", "--skip-lint"]).expect_code(exit::OK);
    assert_eq!(sluice_schema(&project).await, expected);
}

/// One file of a tool that writes both directions into one file: the text before the first
/// marker, the up marker and section, the down marker and section. The sections alone are
/// what the tool runs.
struct Sectioned {
    name: &'static str,
    preamble: &'static str,
    up_marker: &'static str,
    up: &'static str,
    down_marker: &'static str,
    down: &'static str,
    /// The tool runs this file outside a transaction.
    no_transaction: bool,
}

impl Sectioned {
    fn text(&self) -> String {
        format!(
            "{}{}\n{}{}\n{}",
            self.preamble, self.up_marker, self.up, self.down_marker, self.down
        )
    }

    fn rule(&self) -> Rule {
        if self.no_transaction {
            Rule::AsItIs
        } else {
            Rule::InTransaction
        }
    }
}

/// Applies `files` with sluice, compares with their up sections run the tool's way, then a full
/// down (every down section, newest first) leaves nothing and up again gives the same schema.
async fn sectioned_directory_matches_its_tool(files: &[Sectioned], layout: &str) {
    let project = Project::new().await;
    for file in files {
        project.write(file.name, &file.text());
    }
    project.write("README.md", "How to add a migration: see the wiki.\n");
    let validate = project.run(&["validate"]);
    validate.expect_code(exit::OK);
    assert!(
        validate
            .stdout()
            .contains(&format!("read as a {layout} directory")),
        "{}",
        validate.stdout()
    );
    // An empty down section is a tool's "nothing to revert", not a file that does nothing.
    assert!(
        !validate.stderr().contains("holds no statement"),
        "{}",
        validate.stderr()
    );
    project.run(&["up", "--skip-lint"]).expect_code(exit::OK);
    let reference: Vec<(&str, Rule)> = files.iter().map(|f| (f.up, f.rule())).collect();
    let expected = tools_schema(&reference).await;
    assert!(!expected.is_empty());
    assert_eq!(sluice_schema(&project).await, expected);
    project
        .run(&["down", "--to", "0", "--skip-lint"])
        .expect_code(exit::OK);
    assert_eq!(sluice_schema(&project).await, Vec::<String>::new());
    project.run(&["up", "--skip-lint"]).expect_code(exit::OK);
    assert_eq!(sluice_schema(&project).await, expected);
}

#[tokio::test]
async fn a_dbmate_directory_gives_the_schema_dbmate_gives() {
    let files = [
        Sectioned {
            name: "20240301090000_create_accounts.sql",
            preamble: "-- Accounts of the billing service.\n-- Owner: payments team\n\n",
            up_marker: "-- migrate:up",
            up: "CREATE TABLE accounts (\n  id bigserial PRIMARY KEY,\n  email text NOT NULL\n);\n\
                 CREATE TABLE invoices (id bigserial PRIMARY KEY, account_id bigint REFERENCES accounts (id));\n\n",
            down_marker: "-- migrate:down",
            down: "DROP TABLE invoices;\nDROP TABLE accounts;\n",
            no_transaction: false,
        },
        Sectioned {
            name: "20240302090000_index_email.sql",
            preamble: "",
            up_marker: "-- migrate:up transaction:false",
            up: "CREATE INDEX CONCURRENTLY accounts_email ON accounts (email);\n",
            down_marker: "-- migrate:down transaction:false",
            down: "DROP INDEX CONCURRENTLY accounts_email;\n",
            no_transaction: true,
        },
        Sectioned {
            name: "20240303090000_comment.sql",
            preamble: "",
            up_marker: "-- migrate:up",
            up: "COMMENT ON TABLE accounts IS 'billing accounts';\n",
            // An empty down: dbmate reverts nothing, and neither does sluice.
            down_marker: "-- migrate:down",
            down: "",
            no_transaction: false,
        },
    ];
    sectioned_directory_matches_its_tool(&files, "dbmate").await;
}

#[tokio::test]
async fn a_goose_directory_gives_the_schema_goose_gives() {
    let files = [
        Sectioned {
            name: "00001_create_widgets.sql",
            preamble: "",
            up_marker: "-- +goose Up",
            up: "CREATE TABLE widgets (id bigint PRIMARY KEY, name text, updated_at timestamptz);\n\
                 -- +goose StatementBegin\n\
                 CREATE FUNCTION widgets_touch() RETURNS trigger LANGUAGE plpgsql AS $$\n\
                 BEGIN\n  NEW.updated_at := now();\n  RETURN NEW;\nEND;\n$$;\n\
                 -- +goose StatementEnd\n\
                 CREATE TRIGGER widgets_touch BEFORE UPDATE ON widgets FOR EACH ROW EXECUTE FUNCTION widgets_touch();\n",
            down_marker: "-- +goose Down",
            down: "DROP TRIGGER widgets_touch ON widgets;\nDROP FUNCTION widgets_touch();\nDROP TABLE widgets;\n",
            no_transaction: false,
        },
        Sectioned {
            name: "00002_index_widgets.sql",
            preamble: "-- +goose NO TRANSACTION\n",
            up_marker: "-- +goose Up",
            up: "CREATE INDEX CONCURRENTLY widgets_name ON widgets (name);\n",
            down_marker: "-- +goose Down",
            down: "DROP INDEX CONCURRENTLY widgets_name;\n",
            no_transaction: true,
        },
        Sectioned {
            name: "00004_gap_is_fine.sql",
            preamble: "",
            up_marker: "-- +goose Up",
            up: "ALTER TABLE widgets ADD COLUMN size integer;\n",
            down_marker: "-- +goose Down",
            down: "ALTER TABLE widgets DROP COLUMN size;\n",
            no_transaction: false,
        },
    ];
    sectioned_directory_matches_its_tool(&files, "goose").await;
}

#[tokio::test]
async fn a_sql_migrate_directory_gives_the_schema_sql_migrate_gives() {
    let files = [
        Sectioned {
            name: "1_initial.sql",
            preamble: "",
            up_marker: "-- +migrate Up",
            up: "CREATE TABLE people (id int PRIMARY KEY, name text);\n\
                 -- +migrate StatementBegin\n\
                 CREATE FUNCTION people_count() RETURNS bigint LANGUAGE plpgsql AS $$\n\
                 DECLARE n bigint;\nBEGIN\n  SELECT count(*) INTO n FROM people;\n  RETURN n;\nEND;\n$$;\n\
                 -- +migrate StatementEnd\n",
            down_marker: "-- +migrate Down",
            down: "DROP FUNCTION people_count();\nDROP TABLE people;\n",
            no_transaction: false,
        },
        Sectioned {
            name: "2_index_people.sql",
            preamble: "",
            up_marker: "-- +migrate Up notransaction",
            up: "CREATE INDEX CONCURRENTLY people_name ON people (name);\n",
            down_marker: "-- +migrate Down notransaction",
            down: "DROP INDEX CONCURRENTLY people_name;\n",
            no_transaction: true,
        },
    ];
    sectioned_directory_matches_its_tool(&files, "sql-migrate").await;
}

/// A Flyway directory: dotted and underscored versions ordered part by part (1.2 before 1.10,
/// 2 before 10, which text order would swap and fail on), a file with a statement PostgreSQL
/// refuses inside a transaction run outside one as Flyway runs it, `U` files as downs, and
/// files that are not SQL left alone.
#[tokio::test]
async fn a_flyway_directory_gives_the_schema_flyway_gives() {
    let project = Project::new().await;
    let files = [
        (
            "V1__create_users.sql",
            "CREATE TABLE users (id bigint PRIMARY KEY, email text NOT NULL);\n",
        ),
        (
            "V1.1__add_name.sql",
            "ALTER TABLE users ADD COLUMN name text;\n",
        ),
        (
            "V1_2__orders.sql",
            "CREATE TABLE orders (id bigint PRIMARY KEY, user_id bigint REFERENCES users (id));\n",
        ),
        (
            "V1.10__index_orders.sql",
            "CREATE INDEX CONCURRENTLY orders_user ON orders (user_id);\n",
        ),
        (
            "V2__audit.sql",
            "CREATE TABLE audit (id bigint, at timestamptz);\nCREATE INDEX CONCURRENTLY audit_at ON audit (at);\n",
        ),
        (
            "V10__audit_who.sql",
            "ALTER TABLE audit ADD COLUMN who text;\n",
        ),
    ];
    for (name, sql) in files {
        project.write(name, sql);
    }
    project.write("U10__audit_who.sql", "ALTER TABLE audit DROP COLUMN who;\n");
    project.write(
        "U2__audit.sql",
        "DROP INDEX CONCURRENTLY audit_at;\nDROP TABLE audit;\n",
    );
    project.write("flyway.conf", "flyway.locations=filesystem:migrations\n");
    project.write("README.md", "Migrations run by Flyway in CI.\n");
    // A repeatable migration on the versioned tables, applied after all of them.
    let views = "CREATE OR REPLACE VIEW user_orders AS \
                 SELECT u.id, u.name, count(o.id) AS orders \
                 FROM users u LEFT JOIN orders o ON o.user_id = u.id GROUP BY u.id, u.name;\n";
    project.write("R__user_orders.sql", views);

    let validate = project.run(&["validate"]);
    validate.expect_code(exit::OK);
    assert!(
        validate.stdout().contains("read as a Flyway directory"),
        "{}",
        validate.stdout()
    );
    project.run(&["up", "--skip-lint"]).expect_code(exit::OK);
    // Flyway runs each file in a transaction, or statement by statement when one of its
    // statements cannot run inside one.
    let expected = tools_schema(&[
        (files[0].1, Rule::InTransaction),
        (files[1].1, Rule::InTransaction),
        (files[2].1, Rule::InTransaction),
        (files[3].1, Rule::AsItIs),
        (
            "CREATE TABLE audit (id bigint, at timestamptz)",
            Rule::AsItIs,
        ),
        (
            "CREATE INDEX CONCURRENTLY audit_at ON audit (at)",
            Rule::AsItIs,
        ),
        (files[5].1, Rule::InTransaction),
        (views, Rule::InTransaction),
    ])
    .await;
    assert_eq!(sluice_schema(&project).await, expected);
    let status = project.run(&["status"]);
    status.expect_code(exit::OK);
    // Versions as written, in Flyway's order.
    let versions: Vec<String> = status
        .stdout()
        .lines()
        .skip(1)
        .take_while(|line| !line.is_empty())
        .map(|line| {
            line.split_whitespace()
                .next()
                .unwrap_or_default()
                .to_owned()
        })
        .collect();
    assert_eq!(
        versions,
        ["1", "1.1", "1_2", "1.10", "2", "10"],
        "{}",
        status.stdout()
    );

    // The U files revert, newest first; up again gives the same schema.
    project
        .run(&["down", "--steps", "2", "--skip-lint"])
        .expect_code(exit::OK);
    let mut conn = project.db.connect().await;
    let audit: bool = sqlx::query_scalar("SELECT to_regclass('audit') IS NOT NULL")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert!(!audit, "U2 dropped the audit table");
    project.run(&["up", "--skip-lint"]).expect_code(exit::OK);
    assert_eq!(sluice_schema(&project).await, expected);

    // A new migration is written as Flyway names them, after the newest version.
    let new = project.run(&["new", "audit_source", "--reversible"]);
    new.expect_code(exit::OK);
    for file in ["V11__audit_source.sql", "U11__audit_source.sql"] {
        assert!(
            project.migrations().join(file).is_file(),
            "{}",
            new.stdout()
        );
    }
    // A flat file beside Flyway's would be read by neither tool's rules alone.
    project.write("12_flat.sql", "SELECT 1;\n");
    let mixed = project.run(&["validate"]);
    mixed.expect_code(exit::INVALID_INPUT);
    assert!(
        mixed.stderr().contains("Flyway files:") && mixed.stderr().contains("12_flat.sql"),
        "{}",
        mixed.stderr()
    );
}

/// Flyway's repeatable migrations: applied after every versioned one, in description order,
/// again whenever the file changes and never otherwise, not while a versioned migration is
/// left pending, and not recorded when they fail.
#[tokio::test]
async fn flyway_repeatable_migrations_run_last_and_again_when_they_change() {
    let project = Project::new().await;
    project.write(
        "V1__users.sql",
        "CREATE TABLE users (id bigint PRIMARY KEY, email text NOT NULL);\n",
    );
    project.write("V2__name.sql", "ALTER TABLE users ADD COLUMN name text;\n");
    // Written against V2's schema: it fails if it runs before V2.
    project.write(
        "R__views.sql",
        "CREATE OR REPLACE VIEW user_names AS SELECT id, name FROM users;\n",
    );
    project.write(
        "R__b_counts.sql",
        "CREATE OR REPLACE FUNCTION user_count() RETURNS bigint LANGUAGE sql AS $$ SELECT count(*) FROM users $$;\n",
    );
    let validate = project.run(&["validate"]);
    validate.expect_code(exit::OK);
    assert!(
        validate
            .stdout()
            .contains("2 repeatable migration(s) are valid (R__b_counts, R__views)"),
        "{}",
        validate.stdout()
    );
    let up = project.run(&["up"]);
    up.expect_code(exit::OK);
    let out = up.stdout();
    let at = |id: &str| {
        out.find(&format!("applied {id} "))
            .unwrap_or_else(|| panic!("{id} applied: {out}"))
    };
    assert!(
        at("2_name") < at("R__b_counts") && at("R__b_counts") < at("R__views"),
        "{out}"
    );
    assert_eq!(
        project
            .db
            .scalar("SELECT count(*) FROM sluice.repeatables")
            .await,
        2
    );
    let applied_at = "SELECT (extract(epoch FROM applied_at) * 1e6)::bigint \
                      FROM sluice.repeatables WHERE description = 'views'";
    let first = project.db.scalar(applied_at).await;

    // Unchanged files are not applied again.
    let again = project.run(&["up"]);
    again.expect_code(exit::OK);
    assert!(
        again.stdout().contains("nothing to do"),
        "{}",
        again.stdout()
    );
    assert_eq!(project.db.scalar(applied_at).await, first);
    project.run(&["check"]).expect_code(exit::OK);

    // An edited one is: status and check say so, the dry run shows only it, `up` applies it.
    project.write(
        "R__views.sql",
        "CREATE OR REPLACE VIEW user_names AS SELECT id, name, email FROM users;\n",
    );
    let status = project.run(&["status"]);
    status.expect_code(exit::OK);
    let line = status
        .stdout()
        .lines()
        .find(|l| l.starts_with("R__views"))
        .map(str::to_owned)
        .unwrap_or_default();
    assert!(line.contains("changed"), "{}", status.stdout());
    let check = project.run(&["check"]);
    check.expect_code(exit::PENDING);
    assert!(
        check
            .stdout()
            .contains("R__views: repeatable, changed since it was applied"),
        "{}",
        check.stdout()
    );
    let dry = project.run(&["up", "--dry-run"]);
    dry.expect_code(exit::OK);
    assert!(
        dry.stdout().contains("SELECT id, name, email FROM users")
            && !dry.stdout().contains("user_count")
            && dry.stdout().contains("1 migration(s) would be applied"),
        "{}",
        dry.stdout()
    );
    project.run(&["up"]).expect_code(exit::OK);
    assert_eq!(
        project
            .db
            .scalar(
                "SELECT count(*) FROM information_schema.columns WHERE table_name = 'user_names'"
            )
            .await,
        3
    );
    assert_eq!(
        project
            .db
            .scalar(
                "SELECT count(*) FROM sluice.audit WHERE action = 'apply' AND name = 'R__views'"
            )
            .await,
        2
    );

    // Not while a versioned migration is left pending: the view would meet an older schema.
    project.write(
        "V3__phone.sql",
        "ALTER TABLE users ADD COLUMN phone text;\n",
    );
    project.write(
        "R__views.sql",
        "CREATE OR REPLACE VIEW user_names AS SELECT id, name, email, phone FROM users;\n",
    );
    let short = project.run(&["up", "--to", "2"]);
    short.expect_code(exit::OK);
    assert!(
        short.stdout().contains("nothing to do"),
        "{}",
        short.stdout()
    );
    let up = project.run(&["up"]);
    up.expect_code(exit::OK);
    assert!(
        up.stdout().find("applied 3_phone") < up.stdout().find("applied R__views"),
        "{}",
        up.stdout()
    );

    // A failing one is rolled back and not recorded; fixed, it is applied.
    project.write(
        "R__c_broken.sql",
        "CREATE VIEW broken AS SELECT * FROM nowhere;\n",
    );
    let failed = project.run(&["up"]);
    failed.expect_code(exit::FAILED);
    assert!(
        failed
            .stderr()
            .contains("repeatable migration R__c_broken failed"),
        "{}",
        failed.stderr()
    );
    assert_eq!(
        project
            .db
            .scalar("SELECT count(*) FROM sluice.repeatables")
            .await,
        2
    );
    project.write(
        "R__c_broken.sql",
        "CREATE OR REPLACE VIEW broken AS SELECT 1 AS one;\n",
    );
    project.run(&["up"]).expect_code(exit::OK);
    assert_eq!(
        project
            .db
            .scalar("SELECT count(*) FROM sluice.repeatables")
            .await,
        3
    );
    // `down` reverts versioned migrations only.
    project.write(
        "U3__phone.sql",
        "ALTER TABLE users DROP COLUMN phone CASCADE;\n",
    );
    let down = project.run(&["down"]);
    down.expect_code(exit::OK);
    assert!(
        down.stdout().contains("reverted 3_phone"),
        "{}",
        down.stdout()
    );
    assert!(!down.stdout().contains("R__"), "{}", down.stdout());
}

/// What Flyway does that sluice does not is refused by file name, before anything runs.
#[tokio::test]
async fn flyway_files_sluice_cannot_run_as_flyway_does_are_refused_by_name() {
    for (file, sql, says) in [
        (
            "V1__grants.sql",
            "CREATE TABLE t (id int);\nGRANT SELECT ON t TO ${reader};\n",
            "V1__grants.sql:2: the Flyway placeholder ${reader}",
        ),
        (
            "afterMigrate.sql",
            "ANALYZE;\n",
            "afterMigrate.sql: a Flyway callback",
        ),
        (
            "V20240131120000.1__long.sql",
            "SELECT 1;\n",
            "`20240131120000.1` is too long",
        ),
    ] {
        let project = Project::new().await;
        project.write("V0_1__first.sql", "CREATE TABLE first (id int);\n");
        project.write(file, sql);
        for command in [&["validate"][..], &["up", "--skip-lint"]] {
            let run = project.run(command);
            run.expect_code(exit::INVALID_INPUT);
            assert!(run.stderr().contains(says), "{command:?}: {}", run.stderr());
        }
        assert_eq!(
            project
                .db
                .scalar("SELECT count(*) FROM pg_class WHERE relname = 'first'")
                .await,
            0,
            "nothing ran"
        );
    }
    // `1` and `1.0` are one version to Flyway.
    let project = Project::new().await;
    project.write("V1__a.sql", "SELECT 1;\n");
    project.write("V1.0__b.sql", "SELECT 1;\n");
    let run = project.run(&["validate"]);
    run.expect_code(exit::INVALID_INPUT);
    assert!(
        run.stderr().contains("several migrations have version"),
        "{}",
        run.stderr()
    );
}
