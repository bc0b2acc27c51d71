//! `trace`, `roundtrip` and `drift` run migrations on a scratch database: whatever those do to
//! the cluster must never reach the production cluster (issue "Do no harm", point 1), and a
//! signal ends the statement in flight and drops the scratch database (point 2).

use std::process::Stdio;
use std::time::{Duration, Instant};

use sluice_common::exit;
use sluice_tests::{PrivateServer, Project};
use sqlx::{Connection, PgConnection};

fn private_server() -> PrivateServer {
    PrivateServer::start().unwrap_or_else(|e| panic!("cannot start a private server: {e}"))
}

/// What a hostile migration could change in a cluster: roles (with their password hashes),
/// memberships, databases, per-database settings, tablespaces, `ALTER SYSTEM`'s file.
async fn cluster_state(admin_url: &str) -> Vec<String> {
    let mut conn = PgConnection::connect(admin_url).await.unwrap();
    let mut state = Vec::new();
    for query in [
        "SELECT rolname || ' ' || rolsuper || rolcreaterole || rolcanlogin || ' ' \
         || coalesce(rolpassword, '-') FROM pg_authid ORDER BY 1",
        "SELECT r.rolname || ' in ' || g.rolname FROM pg_auth_members m \
         JOIN pg_roles r ON r.oid = m.member JOIN pg_roles g ON g.oid = m.roleid ORDER BY 1",
        "SELECT datname FROM pg_database WHERE datname NOT LIKE 'sluice_test_%' ORDER BY 1",
        "SELECT setdatabase || ' ' || setrole || ' ' || array_to_string(setconfig, ',') \
         FROM pg_db_role_setting ORDER BY 1",
        "SELECT spcname FROM pg_tablespace ORDER BY 1",
        "SELECT pg_read_file('postgresql.auto.conf')",
    ] {
        let rows: Vec<String> = sqlx::query_scalar(query)
            .fetch_all(&mut conn)
            .await
            .unwrap();
        state.extend(rows);
    }
    state
}

#[tokio::test]
async fn scratch_commands_never_change_the_production_cluster() {
    let production = private_server();
    let admin = production.admin_url();
    let project = Project::on(&admin).await;
    let mut setup = PgConnection::connect(&admin).await.unwrap();
    for sql in [
        "CREATE ROLE victim LOGIN PASSWORD 'first'",
        "CREATE DATABASE bystander",
        "CREATE ROLE doomed",
    ] {
        sqlx::raw_sql(sql).execute(&mut setup).await.unwrap();
    }
    // Applied for real, as `up` does: then the DBA rotates the password.
    project.write("0001_t.sql", "CREATE TABLE t (id bigint PRIMARY KEY);\n");
    project.write("0002_role.sql", "ALTER ROLE victim PASSWORD 'old';\n");
    project.run(&["up"]).expect_code(exit::OK);
    sqlx::raw_sql("ALTER ROLE victim PASSWORD 'rotated'")
        .execute(&mut setup)
        .await
        .unwrap();
    // A session of another application that a migration would terminate.
    let mut bystander = PgConnection::connect(&admin.replace("/postgres", "/bystander"))
        .await
        .unwrap();
    let before = cluster_state(&admin).await;
    for (file, sql) in [
        (
            "0003_drop_db.sql",
            "DROP DATABASE IF EXISTS bystander WITH (FORCE);\n",
        ),
        (
            "0004_roles.sql",
            "CREATE ROLE intruder SUPERUSER LOGIN PASSWORD 'x';\nGRANT pg_read_server_files TO victim;\nDROP ROLE doomed;\nALTER DATABASE postgres SET work_mem = '77MB';\n",
        ),
        ("0005_system.sql", "ALTER SYSTEM SET work_mem = '99MB';\n"),
        (
            "0006_kill.sql",
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = 'bystander';\n",
        ),
    ] {
        project.write(file, sql);
    }
    let trace = project.run(&["trace"]);
    let trace_out = trace.stdout();
    assert!(
        trace_out.contains("server of sluice's own, removed afterwards"),
        "{trace_out}\n{}",
        trace.stderr()
    );
    let roundtrip = project.run(&["roundtrip"]);
    assert!(
        roundtrip.stdout().contains("server of sluice's own"),
        "{}",
        roundtrip.stdout()
    );
    let drift = project.run(&["drift"]);
    assert!(
        drift.stdout().contains("server of sluice's own"),
        "{}",
        drift.stdout()
    );
    let dry = project.run(&["up", "--dry-run", "--trace", "--skip-lint"]);
    assert!(
        dry.stdout().contains("server of sluice's own"),
        "{}",
        dry.stdout()
    );

    assert_eq!(
        cluster_state(&admin).await,
        before,
        "the production cluster changed"
    );
    sqlx::query("SELECT 1")
        .execute(&mut bystander)
        .await
        .expect("the bystander's session was terminated");
    let left: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_database WHERE datname LIKE 'sluice\\_%\\_%\\_%' \
         AND datname NOT LIKE 'sluice_test_%'",
    )
    .fetch_one(&mut setup)
    .await
    .unwrap();
    assert_eq!(
        left, 0,
        "a scratch database was made on the production server"
    );
}

#[tokio::test]
async fn on_the_target_server_files_reaching_beyond_their_database_are_refused() {
    let project = Project::new().await;
    project.write("0001_t.sql", "CREATE TABLE t (id bigint PRIMARY KEY);\n");
    project.run(&["up"]).expect_code(exit::OK);
    project.write(
        "0002_role.sql",
        "ALTER TABLE t ADD COLUMN n int;\n-- ALTER ROLE in a comment is not a statement\nALTER ROLE current_user SET work_mem = '1GB';\n",
    );
    let databases = "SELECT count(*) FROM pg_database WHERE datname LIKE 'sluice\\_trace\\_%' \
                     OR datname LIKE 'sluice\\_drift\\_%' OR datname LIKE 'sluice\\_roundtrip\\_%'";
    for args in [
        &["trace", "--scratch-on-target"][..],
        &["roundtrip", "--scratch-on-target"],
        &["up", "--dry-run", "--trace", "--scratch-on-target"],
    ] {
        let run = project.run(args);
        let err = run.stderr();
        assert!(
            err.contains("0002_role.sql:3 (roles belong to the cluster)"),
            "{args:?}: {err}"
        );
        assert!(err.contains("nothing was run"), "{err}");
    }
    project
        .run(&["trace", "--scratch-on-target"])
        .expect_code(exit::INVALID_INPUT);
    // drift runs the applied files only: the pending one does not refuse it.
    let drift = project.run(&["drift", "--scratch-on-target"]);
    drift.expect_code(exit::OK);
    assert!(
        drift.stdout().contains("on the real database's server"),
        "{}",
        drift.stdout()
    );
    // A file that stays inside its database traces there, and says where it ran.
    project.write("0002_role.sql", "ALTER TABLE t ADD COLUMN n int;\n");
    let trace = project.run(&["trace", "--scratch-on-target"]);
    trace.expect_code(exit::OK);
    assert!(
        trace.stdout().contains("functions the migrations call run"),
        "{}",
        trace.stdout()
    );
    assert_eq!(project.db.scalar(databases).await, 0);
}

#[tokio::test]
async fn a_scratch_url_must_be_another_cluster() {
    let project = Project::new().await;
    project.write("0001_t.sql", "CREATE TABLE t (id bigint PRIMARY KEY);\n");
    let same = sluice_tests::server().admin_url.clone();
    for command in ["trace", "roundtrip", "drift"] {
        let run = project.run(&[command, "--scratch-url", &same]);
        run.expect_code(exit::INVALID_INPUT);
        assert!(
            run.stderr()
                .contains("names the real database's own cluster"),
            "{command}: {}",
            run.stderr()
        );
        assert!(!run.stderr().contains("throwaway-pw"), "{}", run.stderr());
    }
    let other = private_server();
    let trace = project.run(&["trace", "--scratch-url", &other.admin_url()]);
    trace.expect_code(exit::OK);
    let out = trace.stdout();
    assert!(out.contains("on the scratch server postgres://"), "{out}");
    assert!(!out.contains("throwaway-pw"), "{out}");
}

#[tokio::test]
async fn a_signal_ends_the_traced_statement_and_drops_the_scratch_database() {
    let project = Project::new().await;
    project.write("0001_sleep.sql", "SELECT pg_sleep(600);\n");
    let scratch = private_server();
    let scratch_url = scratch.admin_url();
    for second_signal in [false, true] {
        let child = project
            .sluice()
            .args(["trace", "--scratch-url", &scratch_url])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut watch = PgConnection::connect(&scratch_url).await.unwrap();
        let sleeping =
            "SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'SELECT pg_sleep(600)%'";
        let started = Instant::now();
        while sqlx::query_scalar::<_, i64>(sleeping)
            .fetch_one(&mut watch)
            .await
            .unwrap()
            == 0
        {
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "the trace never ran"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let signalled = Instant::now();
        signal(&child, libc::SIGTERM);
        if second_signal {
            tokio::time::sleep(Duration::from_millis(20)).await;
            signal(&child, libc::SIGINT);
        }
        let output = child.wait_with_output().unwrap();
        // A safety bound far from the failure case (the statement would run ten minutes).
        assert!(signalled.elapsed() < Duration::from_secs(10));
        let err = String::from_utf8_lossy(&output.stderr);
        assert_eq!(
            output.status.code(),
            Some(i32::from(exit::INTERRUPTED)),
            "{err}"
        );
        assert!(err.contains("scratch database dropped"), "{err}");
        assert_eq!(
            sqlx::query_scalar::<_, i64>(sleeping)
                .fetch_one(&mut watch)
                .await
                .unwrap(),
            0,
            "the statement runs on"
        );
        let left: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_database WHERE datname LIKE 'sluice\\_trace\\_%'",
        )
        .fetch_one(&mut watch)
        .await
        .unwrap();
        assert_eq!(left, 0, "the scratch database was left behind");
    }
}

fn signal(child: &std::process::Child, signal: libc::c_int) {
    #[expect(unsafe_code, reason = "kill(2) has no safe wrapper in std")]
    // SAFETY: kill has no memory-safety preconditions; the pid is our own child's.
    unsafe {
        libc::kill(i32::try_from(child.id()).unwrap(), signal);
    }
}
