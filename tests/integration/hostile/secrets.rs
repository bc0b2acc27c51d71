//! No password in any output, whatever the shape of the URL it came in.

use sluice_common::exit;
use sluice_tests::{Project, Run};

/// URLs a careless operator writes; each one's password contains `Leak`.
const BAD_URLS: &[&str] = &[
    "postgres://u:Pw/Leak@127.0.0.1/x",
    "postgres://u:Pw#Leak@127.0.0.1/x",
    "postgres://u:Pw?Leak@127.0.0.1/x",
    "postgres//u:PwLeak@127.0.0.1/db",
    "u:PwLeak@127.0.0.1/db",
];

fn assert_no_leak(run: &Run, url: &str) {
    let all = format!("{}{}", run.stdout(), run.stderr());
    assert!(!all.contains("Leak"), "{url} leaked:\n{all}");
}

#[tokio::test]
async fn config_and_errors_never_print_a_malformed_urls_password() {
    let project = Project::new().await;
    for url in BAD_URLS {
        let config = Run(project
            .sluice()
            .env("DATABASE_URL", url)
            .arg("config")
            .output()
            .unwrap());
        config.expect_code(exit::OK);
        assert_no_leak(&config, url);
        assert!(config.stdout().contains("***"), "{}", config.stdout());

        let backfill_config = Run(project
            .backfill()
            .env("DATABASE_URL", url)
            .arg("config")
            .output()
            .unwrap());
        assert_no_leak(&backfill_config, url);

        for args in [&["status"][..], &["up", "--json"][..]] {
            let status = Run(project
                .sluice()
                .env("DATABASE_URL", url)
                .args(args)
                .output()
                .unwrap());
            status.expect_code(exit::INVALID_INPUT);
            assert_no_leak(&status, url);
            let said = format!("{}{}", status.stdout(), status.stderr());
            assert!(said.contains("invalid database URL"), "{said}");
        }
    }
}

#[tokio::test]
async fn an_unencoded_password_character_is_named_not_blamed_on_the_port() {
    let project = Project::new().await;
    let run = Run(project
        .sluice()
        .env("DATABASE_URL", "postgres://u:Pw/Leak@127.0.0.1/x")
        .arg("status")
        .output()
        .unwrap());
    assert!(run.stderr().contains("%2F"), "{}", run.stderr());
    assert!(!run.stderr().contains("port"), "{}", run.stderr());
}

#[tokio::test]
async fn an_empty_database_url_is_no_database_url() {
    let project = Project::new().await;
    let run = Run(project
        .sluice()
        .env("DATABASE_URL", "")
        .arg("status")
        .output()
        .unwrap());
    run.expect_code(exit::USAGE);
    assert!(run.stderr().contains("no database URL"), "{}", run.stderr());
}

#[tokio::test]
async fn replica_urls_with_commas_in_passwords_are_neither_split_nor_printed() {
    let project = Project::new().await;
    project.write(
        "0001_items.sql",
        "CREATE TABLE items (id bigint PRIMARY KEY, n int);
         INSERT INTO items SELECT g, 0 FROM generate_series(1, 100) g;",
    );
    project.run(&["up"]).expect_code(exit::OK);
    project.job(
        "bump",
        "name = \"bump\"\ntable = \"items\"\nkey = [\"id\"]\nset = \"n = n + 1\"\n\
         max_replication_lag = \"10s\"\n",
    );
    // Port 1 refuses: the replica cannot be watched, so the run must not start.
    // A replica that cannot be reached is the database's fault, not the spec's: exit 4, which
    // a Job retries (exit 3 would fail it for good while a replica restarts); a URL that is
    // not one (an unencoded `/` in the password) is bad input: exit 3.
    let lists = [
        (
            "postgres://u:Rep,Leak@127.0.0.1:1/x",
            exit::DATABASE_UNAVAILABLE,
        ),
        (
            "postgres://u:Rep/Leak@127.0.0.1:1/x,postgres://u:Two,Leak@127.0.0.1:1/y",
            exit::INVALID_INPUT,
        ),
    ];
    for (list, code) in lists {
        let run = Run(project
            .backfill()
            .env("SLUICE_REPLICA_URLS", list)
            .env("SLUICE_CONNECT_TIMEOUT", "2s")
            .env("SLUICE_CONNECT_WAIT", "1s")
            .args(["run", "bump"])
            .output()
            .unwrap());
        assert_no_leak(&run, list);
        run.expect_code(code);
        assert!(run.stderr().contains("replica"), "{}", run.stderr());
    }
    let mut conn = project.db.connect().await;
    let untouched: i64 = sqlx::query_scalar("SELECT count(*) FROM items WHERE n = 0")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(
        untouched, 100,
        "a run whose lag guard cannot work changes nothing"
    );
}

/// `service=`, `passfile=` and friends were ignored with a warning and sluice went to
/// localhost:5432; `sslpassword` was printed by that warning and by `config` (issue "Do no
/// harm", points 15 and 16).
#[tokio::test]
async fn parameters_the_driver_would_ignore_are_refused_and_secrets_masked() {
    let project = Project::new().await;
    let base = project.db.url.clone();
    let sep = if base.contains('?') { '&' } else { '?' };
    for (param, says) in [
        ("service=prod", "`service`"),
        ("passfile=/run/secrets/pgpass", "PGPASSFILE"),
        ("sslpassword=KeyLeak99", "decrypt the client key"),
    ] {
        let url = format!("{base}{sep}{param}");
        for extra in [&[][..], &["-q"], &["--log-format", "json"]] {
            let run = Run(project
                .sluice()
                .env("DATABASE_URL", &url)
                .args(extra)
                .arg("status")
                .output()
                .unwrap());
            run.expect_code(exit::INVALID_INPUT);
            assert!(run.stderr().contains(says), "{param}: {}", run.stderr());
            let all = format!("{}{}", run.stdout(), run.stderr());
            assert!(!all.contains("KeyLeak99"), "{all}");
        }
        let config = Run(project
            .sluice()
            .env("DATABASE_URL", &url)
            .arg("config")
            .output()
            .unwrap());
        assert!(
            !config.stdout().contains("KeyLeak99"),
            "{}",
            config.stdout()
        );
    }
}

/// Passwords psql accepts though SASLprep refuses them (an emoji, a newline): PostgreSQL
/// stores the verifier of the raw password then, and sluice logs in with it as libpq does
/// (issue "Do no harm", point 17; the driver is patched, vendor/README.md).
#[tokio::test]
async fn passwords_saslprep_refuses_log_in_as_with_psql() {
    let project = Project::new().await;
    project.write("0001_t.sql", "CREATE TABLE t (id int);\n");
    for (n, password) in ["pässwörd€🔑X", "two\nlines\tand\u{7f}"]
        .into_iter()
        .enumerate()
    {
        let role = format!("sasl_{n}_{}", std::process::id());
        project
            .db
            .exec(&format!(
                "CREATE ROLE {role} LOGIN PASSWORD {}; GRANT ALL ON SCHEMA public TO {role}; \
                 GRANT CREATE ON DATABASE \"{}\" TO {role}",
                sluice_common::ident::quote_literal(password),
                project.db.name
            ))
            .await;
        let mut url = url::Url::parse(&project.db.url).unwrap();
        url.set_username(&role).unwrap();
        url.set_password(Some(password)).unwrap();
        let run = Run(project
            .sluice()
            .env("DATABASE_URL", url.as_str())
            .args(["--schema", &format!("s{n}"), "up"])
            .output()
            .unwrap());
        let all = format!("{}{}", run.stdout(), run.stderr());
        run.expect_code(exit::OK);
        for part in ["🔑", "pässwörd", "lines"] {
            assert!(!all.contains(part), "{part} in {all}");
        }
        project
            .db
            .exec(&format!(
                "DROP OWNED BY {role} CASCADE; DROP ROLE {role}; DROP TABLE IF EXISTS t"
            ))
            .await;
    }
}
