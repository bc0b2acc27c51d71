//! `sluice_common::db` against a real server: application_name, login failures, unknown
//! databases, and passwords kept out of every message.

use sluice_common::db::{ConnectSettings, DbError, connect, pool};
use sluice_common::redact::SecretUrl;
use sluice_tests::TestDb;

fn settings(url: &str) -> ConnectSettings {
    let mut settings = ConnectSettings::new(SecretUrl::new(url), "sluice-test-app");
    settings.attempts = 2;
    settings
}

fn with_user(url: &str, user: &str, password: &str, database: Option<&str>) -> String {
    let mut url = url::Url::parse(url).unwrap();
    url.set_username(user).unwrap();
    url.set_password(Some(password)).unwrap();
    if let Some(database) = database {
        url.set_path(&format!("/{database}"));
    }
    url.to_string()
}

#[tokio::test]
async fn connections_carry_the_program_name() {
    let db = TestDb::new().await;
    let mut conn = connect(&settings(&db.url)).await.unwrap();
    let name: String = sqlx::query_scalar("SELECT current_setting('application_name')")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(name, "sluice-test-app");

    let pool = pool(&settings(&db.url), 2).await.unwrap();
    let from_pool: String = sqlx::query_scalar("SELECT current_setting('application_name')")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(from_pool, "sluice-test-app");
}

#[tokio::test]
async fn a_refused_login_fails_at_once_without_the_password() {
    let db = TestDb::new().await;
    db.exec("CREATE ROLE cannot_login NOLOGIN PASSWORD 'pw-that-must-not-leak'")
        .await;
    let url = with_user(&db.url, "cannot_login", "pw-that-must-not-leak", None);
    let started = std::time::Instant::now();
    let err = connect(&settings(&url)).await.unwrap_err();
    assert!(matches!(err, DbError::LoginRefused { .. }), "{err:?}");
    let message = err.to_string();
    assert!(message.contains("cannot_login"), "{message}");
    assert!(!message.contains("pw-that-must-not-leak"), "{message}");
    assert!(!format!("{err:?}").contains("pw-that-must-not-leak"));
    // Permanent failures are not retried: no backoff sleep happened.
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
    db.exec("DROP ROLE cannot_login").await;
}

#[tokio::test]
async fn an_unknown_database_is_named_in_the_error() {
    let db = TestDb::new().await;
    let url = url::Url::parse(&db.url).unwrap();
    let mut missing = url.clone();
    missing.set_path("/no_such_database_here");
    let err = connect(&settings(missing.as_str())).await.unwrap_err();
    assert!(matches!(err, DbError::UnknownDatabase { .. }), "{err:?}");
    assert!(err.to_string().contains("no_such_database_here"));
    if let Some(password) = url.password() {
        assert!(!err.to_string().contains(password));
    }
}
