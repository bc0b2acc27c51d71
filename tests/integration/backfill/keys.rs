//! Keys: composite, uuid and text keys work; keys that are not unique, not indexed or
//! nullable are refused with the reason; hostile names are quoted or refused.

use sluice_common::exit;
use sluice_tests::Project;

async fn run_and_check(project: &Project, table: &str, key: &str) {
    project.job(
        "touch",
        &format!("name = \"touch\"\ntable = '{table}'\nkey = {key}\nset = \"n = n + 1\"\nbatch_size = 7\nmin_batch_size = 7\nmax_batch_size = 7\n"),
    );
    let run = project.run_backfill(&["run", "touch"]);
    run.expect_code(exit::OK);
    let mut conn = project.db.connect().await;
    let wrong: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT count(*) FROM {table} WHERE n <> 1"
    )))
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!(wrong, 0, "rows of {table} not updated exactly once");
}

#[tokio::test]
async fn composite_keys_walk_in_row_order() {
    let project = Project::new().await;
    project
        .db
        .exec(
            "CREATE TABLE memberships (tenant text NOT NULL, id int NOT NULL, n int NOT NULL DEFAULT 0, PRIMARY KEY (tenant, id));
             INSERT INTO memberships (tenant, id) SELECT 't' || (g % 7), g FROM generate_series(1, 500) g;",
        )
        .await;
    run_and_check(&project, "memberships", "[\"tenant\", \"id\"]").await;
}

#[tokio::test]
async fn uuid_and_text_keys_work() {
    let project = Project::new().await;
    project
        .db
        .exec(
            "CREATE TABLE sessions (id uuid PRIMARY KEY DEFAULT gen_random_uuid(), n int NOT NULL DEFAULT 0);
             INSERT INTO sessions SELECT FROM generate_series(1, 300);
             CREATE TABLE tags (slug text PRIMARY KEY, n int NOT NULL DEFAULT 0);
             INSERT INTO tags SELECT 'tag-' || g || CASE WHEN g % 3 = 0 THEN ' é' ELSE '' END FROM generate_series(1, 300) g;",
        )
        .await;
    run_and_check(&project, "sessions", "[\"id\"]").await;
    project.db.exec("DELETE FROM sluice.backfill_jobs").await;
    run_and_check(&project, "tags", "[\"slug\"]").await;
}

#[tokio::test]
async fn keys_that_cannot_address_rows_once_are_refused_with_the_reason() {
    let project = Project::new().await;
    project
        .db
        .exec(
            "CREATE TABLE t (id int NOT NULL, maybe int, indexed int NOT NULL, a int NOT NULL, b int NOT NULL, n int NOT NULL DEFAULT 0);
             CREATE INDEX t_indexed ON t (indexed);
             CREATE UNIQUE INDEX t_ba ON t (b, a);",
        )
        .await;
    for (key, expected) in [
        ("[\"id\"]", "not indexed at all"),
        ("[\"maybe\"]", "is nullable"),
        (
            "[\"indexed\"]",
            "no unique index covers exactly these columns",
        ),
        ("[\"a\", \"b\"]", "has these columns in another order"),
        ("[\"missing\"]", "does not exist"),
    ] {
        project.job(
            "bad",
            &format!("name = \"bad\"\ntable = \"t\"\nkey = {key}\nset = \"n = 1\"\n"),
        );
        let run = project.run_backfill(&["run", "bad"]);
        run.expect_code(exit::INVALID_INPUT);
        assert!(
            run.stderr().contains(expected),
            "key {key}: {}",
            run.stderr()
        );
    }
    // The same key in index order works.
    project.job(
        "good",
        "name = \"good\"\ntable = \"t\"\nkey = [\"b\", \"a\"]\nset = \"n = 1\"\n",
    );
    project.run_backfill(&["run", "good"]).expect_code(exit::OK);
}

#[tokio::test]
async fn injection_shaped_names_are_quoted_or_refused() {
    let project = Project::new().await;
    project
        .db
        .exec(
            r#"CREATE TABLE victim (id int PRIMARY KEY);
               CREATE TABLE "x""; DROP TABLE victim; --" ("id""; --" int PRIMARY KEY, n int NOT NULL DEFAULT 0);
               INSERT INTO "x""; DROP TABLE victim; --" SELECT generate_series(1, 20);"#,
        )
        .await;
    // Unquoted, the name is refused before anything runs.
    project.job(
        "evil",
        "name = \"evil\"\ntable = \"x; DROP TABLE victim; --\"\nkey = [\"id\"]\nset = \"n = 1\"\n",
    );
    let run = project.run_backfill(&["run", "evil"]);
    run.expect_code(exit::INVALID_INPUT);
    assert!(run.stderr().contains("invalid name"), "{}", run.stderr());
    // Quoted, it names that odd table and nothing else.
    project.job(
        "odd",
        "name = \"odd\"\ntable = '\"x\"\"; DROP TABLE victim; --\"'\nkey = ['\"id\"\"; --\"']\nset = \"n = n + 1\"\n",
    );
    project.run_backfill(&["run", "odd"]).expect_code(exit::OK);
    let mut conn = project.db.connect().await;
    let victim: bool = sqlx::query_scalar("SELECT to_regclass('victim') IS NOT NULL")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert!(victim, "the victim table was dropped");
    let done: i64 =
        sqlx::query_scalar(r#"SELECT count(*) FROM "x""; DROP TABLE victim; --" WHERE n = 1"#)
            .fetch_one(&mut conn)
            .await
            .unwrap();
    assert_eq!(done, 20);
}
