//! Jobs that delete and jobs that copy into another table: exactly once under SIGKILL, with
//! writers going through a mirroring trigger, verified before they say "completed".

use sluice_common::exit;
use sluice_tests::Project;
use sqlx::PgPool;

use super::{Workload, Writers, fingerprint, kill_repeatedly};

const ROWS: i64 = 30_000;
const KILLS: usize = 6;

/// Small batches, so that a run lasts long enough to be killed several times.
const SLOW: &str = "batch_size = 100\nmin_batch_size = 100\nmax_batch_size = 100\npause = \"5ms\"\n\
                    lease = \"2s\"\npace = \"max\"\n";

#[tokio::test]
async fn a_delete_job_killed_again_and_again_leaves_exactly_the_rows_that_stay() {
    let project = Project::new().await;
    project
        .db
        .exec(&format!(
            "CREATE TABLE events (id bigint PRIMARY KEY, day int NOT NULL, body text NOT NULL);
             INSERT INTO events SELECT g, g % 100, md5(g::text) FROM generate_series(1, {ROWS}) g;
             CREATE TABLE expected AS SELECT * FROM events WHERE day >= 30;"
        ))
        .await;
    project.job(
        "purge",
        &format!(
            "name = \"purge\"\naction = \"delete\"\ntable = \"events\"\nkey = [\"id\"]\n\
             where = \"day < 30\"\n{SLOW}"
        ),
    );
    let (kills, _) = kill_repeatedly(&project, "purge", KILLS, 11).await;
    assert!(kills >= KILLS, "only {kills} kills before the job finished");
    let last = project.run_backfill(&["run", "purge", "--workers", "3"]);
    last.expect_code(exit::OK);
    assert!(
        last.stdout().contains("completed and verified") && last.stdout().contains("deleted"),
        "{}",
        last.stdout()
    );
    let mut conn = project.db.connect().await;
    assert_eq!(
        fingerprint(&mut conn, "events").await,
        fingerprint(&mut conn, "expected").await,
        "exactly the rows not matching `where` stay, untouched"
    );
    let deleted: i64 = sqlx::query_scalar(
        "SELECT sum(rows_updated)::bigint FROM sluice.backfill_ranges WHERE job = 'purge'",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!(
        deleted,
        ROWS * 30 / 100,
        "each row deleted once, counted once"
    );
    let status = project.run_backfill(&["status", "purge"]);
    assert!(
        status.stdout().contains("delete table"),
        "{}",
        status.stdout()
    );
}

/// `src` and its twin `dst`, and the trigger that mirrors every write of `src` into `dst`.
async fn source_and_mirror(project: &Project) {
    project
        .db
        .exec(&format!(
            "CREATE TABLE src (id bigint PRIMARY KEY, v int NOT NULL, note text);
             INSERT INTO src SELECT g, g, md5(g::text) FROM generate_series(1, {ROWS}) g;
             CREATE TABLE dst (LIKE src INCLUDING ALL);
             CREATE FUNCTION mirror() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN
                 IF TG_OP IN ('UPDATE', 'DELETE') THEN
                     DELETE FROM dst WHERE id = OLD.id;
                 END IF;
                 IF TG_OP IN ('INSERT', 'UPDATE') THEN
                     INSERT INTO dst SELECT (NEW).*;
                 END IF;
                 RETURN NULL;
             END $$;
             CREATE TRIGGER mirror AFTER INSERT OR UPDATE OR DELETE ON src
                 FOR EACH ROW EXECUTE FUNCTION mirror();"
        ))
        .await;
}

/// Rows in one table and not the other, both ways.
async fn difference(pool: &PgPool) -> (i64, i64) {
    sqlx::query_as(
        "SELECT (SELECT count(*) FROM (SELECT * FROM src EXCEPT ALL SELECT * FROM dst) a),
                (SELECT count(*) FROM (SELECT * FROM dst EXCEPT ALL SELECT * FROM src) b)",
    )
    .fetch_one(pool)
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_copy_job_killed_again_and_again_under_writers_leaves_the_target_equal() {
    let project = Project::new().await;
    source_and_mirror(&project).await;
    project.job(
        "copy_src",
        &format!(
            "name = \"copy_src\"\naction = \"copy\"\ntable = \"src\"\nkey = [\"id\"]\n\
             into = \"dst\"\n{SLOW}"
        ),
    );
    let pool = project.db.pool().await;
    let writers = Writers::start(
        pool.clone(),
        Workload {
            insert: "INSERT INTO src VALUES ($1, $1, 'new')",
            update: "UPDATE src SET v = v + 1, note = md5(random()::text) WHERE id = $1",
            // A new key, inside the first range (it has no lower bound).
            rekey: Some("UPDATE src SET id = -id WHERE id = $1"),
            delete: "DELETE FROM src WHERE id = $1",
            keys: ROWS,
        },
    );
    let (kills, _) = kill_repeatedly(&project, "copy_src", KILLS, 5).await;
    assert!(kills >= KILLS, "only {kills} kills before the job finished");
    let last = project.run_backfill(&["run", "copy_src", "--workers", "3"]);
    let (writes, errors) = writers.stop().await;
    last.expect_code(exit::OK);
    assert!(
        last.stdout().contains("completed and verified") && last.stdout().contains("copied"),
        "{}",
        last.stdout()
    );
    assert!(errors.is_empty(), "the application saw errors: {errors:?}");
    assert!(writes > 100, "the writers barely ran: {writes}");
    assert_eq!(
        difference(&pool).await,
        (0, 0),
        "row for row, no gap, no extra"
    );
    let (rows, distinct): (i64, i64) =
        sqlx::query_as("SELECT count(*), count(DISTINCT id) FROM dst")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(rows, distinct);
}

#[tokio::test]
async fn a_copy_maps_columns_overrides_identity_and_updates_on_conflict() {
    let project = Project::new().await;
    project
        .db
        .exec(
            "CREATE TABLE people (id int PRIMARY KEY, name text NOT NULL, born date);
             INSERT INTO people SELECT g, 'p' || g, date '2000-01-01' + g FROM generate_series(1, 2000) g;
             CREATE TABLE people_v2 (
                 id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                 display_name text NOT NULL,
                 name_length int GENERATED ALWAYS AS (length(display_name)) STORED
             );
             INSERT INTO people_v2 (id, display_name) OVERRIDING SYSTEM VALUE VALUES (7, 'stale');",
        )
        .await;
    project.job(
        "people_v2",
        "name = \"people_v2\"\naction = \"copy\"\ntable = \"people\"\nkey = [\"id\"]\n\
         into = \"people_v2\"\ncolumns = [\"id\", \"display_name\"]\n\
         values = [\"id\", \"upper(name)\"]\non_conflict = \"update\"\nwhere = \"born IS NOT NULL\"\n",
    );
    let plan = project.run_backfill(&["plan", "people_v2"]);
    plan.expect_code(exit::OK);
    assert!(
        plan.stdout().contains(
            "INSERT INTO \"public\".\"people_v2\" (\"id\", \"display_name\") OVERRIDING SYSTEM VALUE SELECT id, upper(name)"
        ),
        "{}",
        plan.stdout()
    );
    project
        .run_backfill(&["run", "people_v2"])
        .expect_code(exit::OK);
    let mut conn = project.db.connect().await;
    let (rows, wrong, seven): (i64, i64, String) = sqlx::query_as(
        "SELECT count(*), count(*) FILTER (WHERE display_name <> upper('p' || id) OR name_length <> length(display_name)),
                (SELECT display_name FROM people_v2 WHERE id = 7)
         FROM people_v2",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!(
        (rows, wrong, seven.as_str()),
        (2000, 0, "P7"),
        "on_conflict = update replaced the stale row"
    );
}

#[tokio::test]
async fn rows_that_did_not_arrive_or_did_not_go_fail_verification() {
    let project = Project::new().await;
    project
        .db
        .exec(
            "CREATE TABLE src (id bigint PRIMARY KEY, v int NOT NULL, note text);
             INSERT INTO src SELECT g, g, 'x' FROM generate_series(1, 3000) g;
             CREATE TABLE dst (LIKE src INCLUDING ALL);
             -- Something in the way: a trigger that silently drops some rows.
             CREATE FUNCTION swallow() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NULL; END $$;
             CREATE TRIGGER swallow BEFORE INSERT ON dst FOR EACH ROW WHEN (NEW.id % 500 = 0)
                 EXECUTE FUNCTION swallow();
             CREATE TRIGGER keep BEFORE DELETE ON src FOR EACH ROW WHEN (OLD.id % 700 = 0)
                 EXECUTE FUNCTION swallow();",
        )
        .await;
    project.job(
        "copy_src",
        "name = \"copy_src\"\naction = \"copy\"\ntable = \"src\"\nkey = [\"id\"]\ninto = \"dst\"\n",
    );
    let copy = project.run_backfill(&["run", "copy_src"]);
    copy.expect_code(exit::FAILED);
    assert!(
        copy.stderr()
            .contains("6 row(s) in its key range are not in \"public\".\"dst\"")
            && copy.stderr().contains("mirroring trigger"),
        "{}",
        copy.stderr()
    );
    assert!(!copy.stdout().contains("completed"), "{}", copy.stdout());

    project.job(
        "purge",
        "name = \"purge\"\naction = \"delete\"\ntable = \"src\"\nkey = [\"id\"]\nwhere = \"v > 0\"\n",
    );
    let purge = project.run_backfill(&["run", "purge"]);
    purge.expect_code(exit::FAILED);
    assert!(
        purge
            .stderr()
            .contains("4 row(s) in its key range still match `where`"),
        "{}",
        purge.stderr()
    );
}

#[tokio::test]
async fn specs_that_do_not_fit_their_action_are_refused_naming_key_and_file() {
    let project = Project::new().await;
    project
        .db
        .exec("CREATE TABLE src (id bigint PRIMARY KEY, v int); CREATE TABLE other (x int);")
        .await;
    for (spec, expected) in [
        (
            "action = \"delete\"\n",
            "`where` is required for action = \"delete\"",
        ),
        (
            "action = \"delete\"\nwhere = \"v > 1\"\nset = \"v = 1\"\n",
            "`set` does not apply",
        ),
        ("action = \"copy\"\n", "`into` is required"),
        ("action = \"truncate\"\n", "`action` = \"truncate\""),
    ] {
        project.job(
            "bad",
            &format!("name = \"bad\"\ntable = \"src\"\nkey = [\"id\"]\n{spec}"),
        );
        let run = project.run_backfill(&["run", "bad"]);
        run.expect_code(exit::INVALID_INPUT);
        assert!(
            run.stderr().contains(expected) && run.stderr().contains("jobs/bad.toml"),
            "{spec}: {}",
            run.stderr()
        );
    }
    // A target without a key the copy could skip and verify by is refused before anything runs.
    project.job(
        "bad",
        "name = \"bad\"\naction = \"copy\"\ntable = \"src\"\nkey = [\"id\"]\ninto = \"other\"\n",
    );
    let run = project.run_backfill(&["run", "bad"]);
    run.expect_code(exit::INVALID_INPUT);
    assert!(
        run.stderr().contains("no column that the source also has"),
        "{}",
        run.stderr()
    );
    assert_eq!(
        project
            .db
            .scalar("SELECT count(*) FROM sluice.backfill_jobs")
            .await,
        0,
        "nothing was registered"
    );
}
