//! Connections to PostgreSQL: a pool for ordinary work and dedicated connections for locks.
//!
//! Connecting retries only what may pass by itself (a server that refuses connections, is
//! starting up or is full), with backoff and a bound; a wrong password or an unknown database
//! fails at once with a message that says what to fix. No message carries the password.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::TryStreamExt;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, PgConnection, PgPool};

use crate::config::{
    CommonConfig, DEFAULT_CONNECT_ATTEMPTS, DEFAULT_CONNECT_TIMEOUT, DEFAULT_CONNECT_WAIT,
};
use crate::redact::{SecretUrl, scrub, unencoded_in_userinfo};
use crate::retry::{Backoff, sqlstate};

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error(
        "no database URL: set DATABASE_URL, pass --database-url, or set database_url in sluice.toml"
    )]
    MissingUrl,
    #[error("invalid database URL {url}: {reason}")]
    InvalidUrl { url: String, reason: String },
    #[error(
        "cannot reach PostgreSQL at {target} after {attempts} attempt(s) over {elapsed}: \
         {reason}; {hint}"
    )]
    Unreachable {
        target: String,
        attempts: u32,
        elapsed: String,
        reason: String,
        /// What the last failure means and what to do about it.
        hint: String,
    },
    #[error(
        "PostgreSQL at {target} refused the login of role \"{user}\": {reason}; check the user \
         and password in the database URL"
    )]
    LoginRefused {
        target: String,
        user: String,
        reason: String,
    },
    #[error(
        "database \"{database}\" does not exist on {target}; create it or fix the database name \
         in the database URL"
    )]
    UnknownDatabase { target: String, database: String },
    #[error("cannot connect to PostgreSQL at {target}: {reason}")]
    Connect { target: String, reason: String },
}

impl DbError {
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::MissingUrl => crate::exit::USAGE,
            Self::InvalidUrl { .. } => crate::exit::INVALID_INPUT,
            _ => crate::exit::DATABASE_UNAVAILABLE,
        }
    }
}

/// Where to connect.
#[derive(Clone)]
pub enum Endpoint {
    /// A URL from a flag, the environment or `sluice.toml`.
    Url(SecretUrl),
    /// The options of an application's own pool ([`PgPool::connect_options`]): sluice opens
    /// connections of its own with them, so its session settings and advisory locks never reach
    /// the application's connections.
    Options(Arc<PgConnectOptions>),
}

impl Endpoint {
    /// The URL, when there is one: tools that take a URL (`pg_dump`, scratch databases) need it.
    pub fn url(&self) -> Option<&SecretUrl> {
        match self {
            Self::Url(url) => Some(url),
            Self::Options(_) => None,
        }
    }

    /// `text` with the URL's password masked (options carry no text to mask).
    pub fn scrub(&self, text: &str) -> String {
        match self {
            Self::Url(url) => scrub(text, url.expose()),
            Self::Options(_) => text.to_owned(),
        }
    }
}

/// Never the password: a URL prints redacted, options print only where they lead.
impl fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Url(url) => fmt::Debug::fmt(url, f),
            Self::Options(options) => write!(
                f,
                "Options(user {:?} at {} database {:?})",
                options.get_username(),
                describe_target(options),
                options.get_database()
            ),
        }
    }
}

/// How to connect.
#[derive(Debug, Clone)]
pub struct ConnectSettings {
    pub endpoint: Endpoint,
    /// Shown in `pg_stat_activity`, so an operator can tell who holds a lock.
    pub application_name: String,
    /// Longest wait for one connection attempt.
    pub connect_timeout: Duration,
    /// Attempts before giving up on a transient failure.
    pub attempts: u32,
    /// How long to keep trying a transient failure, in all.
    pub wait: Duration,
    pub backoff: Backoff,
}

impl ConnectSettings {
    pub fn new(url: SecretUrl, application_name: &str) -> Self {
        Self::to(Endpoint::Url(url), application_name)
    }

    /// Settings that connect with `options`, e.g. an application pool's
    /// ([`PgPool::connect_options`]).
    pub fn with_options(options: Arc<PgConnectOptions>, application_name: &str) -> Self {
        Self::to(Endpoint::Options(options), application_name)
    }

    fn to(endpoint: Endpoint, application_name: &str) -> Self {
        Self {
            endpoint,
            application_name: application_name.to_owned(),
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            attempts: DEFAULT_CONNECT_ATTEMPTS,
            wait: DEFAULT_CONNECT_WAIT,
            backoff: Backoff {
                initial: Duration::from_millis(250),
                max: Duration::from_secs(5),
            },
        }
    }

    /// Settings from resolved configuration; fails when no URL was given anywhere.
    pub fn from_config(config: &CommonConfig, application_name: &str) -> Result<Self, DbError> {
        let url = config.database_url.as_ref().ok_or(DbError::MissingUrl)?;
        Ok(Self {
            connect_timeout: config.connect_timeout.value,
            attempts: config.connect_attempts.value.max(1),
            wait: config.connect_wait.value,
            ..Self::new(url.value.clone(), application_name)
        })
    }

    /// Parsed driver options, with sluice's session defaults.
    pub fn options(&self) -> Result<PgConnectOptions, DbError> {
        let url = match &self.endpoint {
            Endpoint::Url(url) => url,
            Endpoint::Options(options) => return Ok(self.defaults_for(options)),
        };
        let invalid = |reason: String| DbError::InvalidUrl {
            url: url.redacted(),
            reason,
        };
        let url = url.expose();
        check_url_shape(url).map_err(invalid)?;
        check_url_params(url).map_err(invalid)?;
        let mut options =
            PgConnectOptions::from_str(url).map_err(|e| invalid(scrub(&e.to_string(), url)))?;
        if !url_sets_application_name(url) {
            options = options.application_name(&self.application_name);
        }
        // sluice logs what it runs itself, at the right level and without bind values.
        Ok(options.disable_statement_logging())
    }

    /// An application's options, named as sluice's sessions unless the application named them.
    fn defaults_for(&self, options: &PgConnectOptions) -> PgConnectOptions {
        // sluice logs what it runs itself, as for a URL.
        let options = options.clone().disable_statement_logging();
        match options.get_application_name() {
            Some(_) => options,
            None => options.application_name(&self.application_name),
        }
    }

    /// `host:port`, or the socket path: where we are trying to connect, for messages.
    pub fn target(&self) -> String {
        match self.options() {
            Ok(options) => describe_target(&options),
            Err(_) => match &self.endpoint {
                Endpoint::Url(url) => url.redacted(),
                Endpoint::Options(options) => describe_target(options),
            },
        }
    }
}

/// What the driver would misread in a URL, said plainly before it gets the chance: a scheme
/// other than `postgres://` (a URL without one was read as a database name that quoted the
/// password), or a password character that must be percent-encoded (read as the end of the
/// host, then blamed on the "port number").
fn check_url_shape(url: &str) -> Result<(), String> {
    let scheme = url.find("://").map(|end| &url[..end]);
    if !matches!(scheme, Some("postgres" | "postgresql")) {
        return Err(
            "a database URL starts with postgres:// or postgresql://, e.g. \
                    postgres://app:password@db.internal:5432/prod"
                .to_owned(),
        );
    }
    if let Some(c) = unencoded_in_userinfo(url) {
        let encoded = format!("%{:02X}", u32::from(c));
        return Err(format!(
            "the user name or password contains '{c}', which a URL must percent-encode: \
             write it as {encoded}"
        ));
    }
    if several_hosts(url) {
        return Err(
            "it names several hosts (host1:port,host2:port), which sluice does not read yet; \
             give the one name that follows the primary (a Patroni or CloudNativePG -rw \
             service, a managed database's endpoint)"
                .to_owned(),
        );
    }
    Ok(())
}

/// A libpq multi-host URL: a comma in the host part (after the user info, before the path).
fn several_hosts(url: &str) -> bool {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = rest.split(['/', '?']).next().unwrap_or_default();
    let hosts = authority
        .rsplit_once('@')
        .map_or(authority, |(_, hosts)| hosts);
    hosts.contains(',')
}

/// URL parameters the driver understands.
const DRIVER_PARAMS: &[&str] = &[
    "sslmode",
    "ssl-mode",
    "sslrootcert",
    "ssl-root-cert",
    "ssl-ca",
    "sslcert",
    "ssl-cert",
    "sslkey",
    "ssl-key",
    "statement-cache-capacity",
    "host",
    "hostaddr",
    "port",
    "dbname",
    "user",
    "password",
    "application_name",
    "options",
];

/// libpq parameters the driver ignores that change nothing about where, as whom or how safely
/// sluice connects (sluice has its own connect timeout).
const HARMLESS_PARAMS: &[&str] = &[
    "connect_timeout",
    "keepalives",
    "keepalives_idle",
    "keepalives_interval",
    "keepalives_count",
    "tcp_user_timeout",
    "fallback_application_name",
];

/// Refuses a libpq parameter the driver would ignore with a warning (quoting its value) while
/// connecting somewhere else, as someone else or less safely than the URL says: `service=`
/// (sluice would go to localhost:5432), `passfile=`, `sslpassword=`, `target_session_attrs=`,
/// `gssencmode=`, `sslcrl=`, ...
fn check_url_params(url: &str) -> Result<(), String> {
    let Ok(parsed) = url::Url::parse(url) else {
        return Ok(());
    };
    for (key, _) in parsed.query_pairs() {
        let known = DRIVER_PARAMS.contains(&key.as_ref())
            || HARMLESS_PARAMS.contains(&key.as_ref())
            || key.starts_with("options[");
        if known {
            continue;
        }
        let remedy = match key.as_ref() {
            "service" => "name host, port, user and dbname in the URL itself",
            "passfile" => "set PGPASSFILE to the file instead (or use ~/.pgpass)",
            "sslpassword" => {
                "decrypt the client key (openssl pkey -in key -out key.plain) and protect the \
                 file instead"
            }
            _ => "remove it",
        };
        return Err(format!(
            "the URL parameter `{key}` is not supported by sluice's PostgreSQL driver, which \
             would ignore it and connect without it; {remedy}"
        ));
    }
    Ok(())
}

fn url_sets_application_name(url: &str) -> bool {
    url::Url::parse(url)
        .map(|u| u.query_pairs().any(|(k, _)| k == "application_name"))
        .unwrap_or(false)
}

fn describe_target(options: &PgConnectOptions) -> String {
    match options.get_socket() {
        Some(socket) => format!("{} (socket)", socket.display()),
        None => format!("{}:{}", options.get_host(), options.get_port()),
    }
}

/// A connection of its own, outside any pool: for advisory locks and `SET` that must not leak
/// to other work.
pub async fn connect(settings: &ConnectSettings) -> Result<PgConnection, DbError> {
    connect_to(settings, Needs::Any).await
}

/// A connection to a server that takes writes: one in recovery (a standby, or a primary
/// that is being replaced in a failover) is named and waited out within `connect_wait`, then
/// the error says so (exit 4). For sluice's own writes: the runner's lock and migrations, the
/// backfill's batches.
pub async fn connect_primary(settings: &ConnectSettings) -> Result<PgConnection, DbError> {
    connect_to(settings, Needs::Primary).await
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Needs {
    Any,
    Primary,
}

async fn connect_to(settings: &ConnectSettings, needs: Needs) -> Result<PgConnection, DbError> {
    let options = settings.options()?;
    let target = describe_target(&options);
    let started = Instant::now();
    let mut attempt = 0;
    loop {
        attempt += 1;
        let outcome = tokio::time::timeout(settings.connect_timeout, options.connect()).await;
        let failure = match outcome {
            Ok(Ok(connection)) if needs == Needs::Any => return Ok(connection),
            Ok(Ok(connection)) => match standby(connection, &target).await {
                Ok(connection) => return Ok(connection),
                Err(failure) => failure,
            },
            Ok(Err(error)) => classify_connect_error(&error, settings, &options, &target),
            Err(_) => Failure::Transient(
                format!(
                    "no answer within {}",
                    humantime::format_duration(settings.connect_timeout)
                ),
                HINT_UNREACHABLE,
            ),
        };
        let (reason, hint) = match failure {
            Failure::Permanent(error) => return Err(error),
            Failure::Transient(reason, hint) => (reason, hint),
        };
        let delay = settings.backoff.delay(attempt - 1);
        let left = settings.wait.saturating_sub(started.elapsed());
        if attempt >= settings.attempts || left.is_zero() {
            return Err(DbError::Unreachable {
                target,
                attempts: attempt,
                elapsed: format_elapsed(started.elapsed()),
                reason,
                hint: hint.to_owned(),
            });
        }
        let delay = delay.min(left);
        tracing::warn!(
            target = %target,
            attempt,
            retry_in = %format_elapsed(delay),
            gives_up_in = %format_elapsed(left),
            "cannot connect to PostgreSQL: {reason}; retrying"
        );
        tokio::time::sleep(delay).await;
    }
}

/// A pool of up to `max_connections`. One connection is opened first, with the retries of
/// [`connect`], so a wrong URL fails here rather than at first use.
pub async fn pool(settings: &ConnectSettings, max_connections: u32) -> Result<PgPool, DbError> {
    connect(settings)
        .await?
        .close()
        .await
        .map_err(|e| DbError::Connect {
            target: settings.target(),
            reason: settings.endpoint.scrub(&explain(&e)),
        })?;
    Ok(PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(settings.connect_timeout)
        .connect_lazy_with(settings.options()?))
}

enum Failure {
    /// May pass by itself: the reason, and what it means.
    Transient(String, &'static str),
    Permanent(DbError),
}

/// `connection` back when its server takes writes; a transient failure naming it when it is
/// in recovery.
async fn standby(mut connection: PgConnection, target: &str) -> Result<PgConnection, Failure> {
    match sqlx::query_scalar::<_, bool>("SELECT pg_is_in_recovery()")
        .fetch_one(&mut connection)
        .await
    {
        Ok(false) => Ok(connection),
        Ok(true) => {
            let _ = connection.close().await;
            Err(Failure::Transient(
                format!("{target} is a standby (read-only); waiting for a primary"),
                HINT_STANDBY,
            ))
        }
        Err(error) => Err(Failure::Transient(explain(&error), HINT_UNREACHABLE)),
    }
}

const HINT_STANDBY: &str = "sluice writes (its history, its lock, the batches): point the \
                            database URL at the primary, or wait for the failover to promote \
                            this server (raise --connect-wait to wait longer)";
const HINT_UNREACHABLE: &str = "check that the server is running and that the host and port in \
                                the database URL are right";
const HINT_FULL: &str = "the server has no free connection slot (max_connections): wait for \
                         sessions to end, use fewer workers, or raise max_connections";
const HINT_STARTING: &str = "the server is starting up or recovering after a crash or \
                             failover; it accepts connections when recovery ends (raise \
                             --connect-wait to wait longer)";
const HINT_SHUTTING_DOWN: &str = "the server is shutting down or restarting; raise \
                                  --connect-wait to wait for it to come back";

fn classify_connect_error(
    error: &sqlx::Error,
    settings: &ConnectSettings,
    options: &PgConnectOptions,
    target: &str,
) -> Failure {
    let reason = settings.endpoint.scrub(&explain(error));
    match error {
        sqlx::Error::Io(_) => Failure::Transient(reason, HINT_UNREACHABLE),
        sqlx::Error::Database(db) => match db.code().as_deref() {
            Some(sqlstate::CANNOT_CONNECT_NOW) => Failure::Transient(reason, HINT_STARTING),
            Some(sqlstate::TOO_MANY_CONNECTIONS) => Failure::Transient(reason, HINT_FULL),
            Some(sqlstate::ADMIN_SHUTDOWN | sqlstate::CRASH_SHUTDOWN) => {
                Failure::Transient(reason, HINT_SHUTTING_DOWN)
            }
            Some(sqlstate::INVALID_PASSWORD | sqlstate::INVALID_AUTHORIZATION) => {
                Failure::Permanent(DbError::LoginRefused {
                    target: target.to_owned(),
                    user: options.get_username().to_owned(),
                    reason,
                })
            }
            Some(sqlstate::INVALID_CATALOG_NAME) => Failure::Permanent(DbError::UnknownDatabase {
                target: target.to_owned(),
                database: options
                    .get_database()
                    .unwrap_or(options.get_username())
                    .to_owned(),
            }),
            _ => Failure::Permanent(DbError::Connect {
                target: target.to_owned(),
                reason,
            }),
        },
        _ => Failure::Permanent(DbError::Connect {
            target: target.to_owned(),
            reason,
        }),
    }
}

fn format_elapsed(duration: Duration) -> String {
    humantime::format_duration(Duration::from_millis(
        u64::try_from(duration.as_millis()).unwrap_or(u64::MAX),
    ))
    .to_string()
}

/// Up to `limit` rows of a user's `query` (a check, a throttle query), however many it
/// selects: enough to tell "exactly one" apart without reading a whole table.
pub async fn first_rows(
    conn: &mut PgConnection,
    query: &str,
    limit: usize,
) -> Result<Vec<sqlx::postgres::PgRow>, String> {
    let mut stream = sqlx::query(sqlx::AssertSqlSafe(query.to_owned())).fetch(conn);
    let mut rows = Vec::new();
    while rows.len() < limit {
        match stream.try_next().await.map_err(|e| explain(&e))? {
            Some(row) => rows.push(row),
            None => break,
        }
    }
    Ok(rows)
}

/// Rolls back the transaction a failed statement left aborted on `conn`, if it did (a
/// statement that failed before its `BEGIN` ran left none, and a `ROLLBACK` then would only
/// warn "there is no transaction in progress").
pub async fn end_failed_transaction(conn: &mut PgConnection) {
    if let Err(error) = sqlx::query("SELECT 1").execute(&mut *conn).await
        && crate::retry::sqlstate_of(&error).as_deref() == Some(IN_FAILED_TRANSACTION)
    {
        let _ = sqlx::raw_sql("ROLLBACK").execute(conn).await;
    }
}

/// SQLSTATE 25P02: a statement was sent to a transaction that an error aborted.
const IN_FAILED_TRANSACTION: &str = "25P02";

/// A query's error as users should read it. sqlx shows a database error's message followed
/// by " at line N", where N is a line of PostgreSQL's own C source (1188 of its SQL scanner
/// for a syntax error), which reads as a line of the user's SQL. This gives the message, the
/// SQLSTATE, and the server's detail and hint instead; other errors as sqlx words them.
pub fn explain(error: &sqlx::Error) -> String {
    let Some(db) = error.as_database_error() else {
        return error.to_string();
    };
    // The server's words quote data (a unique violation quotes the row): one line, escaped.
    let one_line = crate::display::one_line;
    let mut text = one_line(db.message()).into_owned();
    if let Some(code) = db.code() {
        text.push_str(&format!(" (SQLSTATE {code})"));
    }
    if let Some(pg) = db.try_downcast_ref::<sqlx::postgres::PgDatabaseError>() {
        if let Some(detail) = pg.detail() {
            text.push_str(&format!("; detail: {}", one_line(detail)));
        }
        if let Some(hint) = pg.hint() {
            text.push_str(&format!("; hint: {}", one_line(hint)));
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_invalid_url_error_hides_the_password() {
        let settings = ConnectSettings::new(
            SecretUrl::new("postgres://app:hunter2@db:notaport/prod"),
            "sluice",
        );
        let err = settings.options().unwrap_err().to_string();
        assert!(err.contains("invalid database URL"), "{err}");
        assert!(!err.contains("hunter2"), "{err}");
    }

    #[test]
    fn a_multi_host_url_is_refused_naming_what_to_give_instead() {
        let settings = ConnectSettings::new(
            SecretUrl::new(
                "postgres://app:se,cret@db1:5432,db2:5432/prod?target_session_attrs=read-write",
            ),
            "sluice",
        );
        let err = settings.options().unwrap_err().to_string();
        assert!(err.contains("names several hosts"), "{err}");
        assert!(!err.contains("se,cret"), "{err}");
        // A comma in the password is not a second host.
        assert!(!several_hosts("postgres://app:se,cret@db1:5432/prod"));
        assert!(several_hosts("postgresql://db1,db2/prod"));
    }

    #[test]
    fn parameters_the_driver_would_ignore_are_refused_unless_harmless() {
        for (url, says) in [
            ("postgres://u@db/x?service=prod", "`service`"),
            ("postgres://u@db/x?passfile=/secrets/pgpass", "PGPASSFILE"),
            (
                "postgres://u@db/x?sslmode=require&sslpassword=k3y-s3cret",
                "decrypt the client key",
            ),
            (
                "postgres://u@db/x?target_session_attrs=read-write",
                "`target_session_attrs`",
            ),
        ] {
            let settings = ConnectSettings::new(SecretUrl::new(url), "sluice");
            let err = settings.options().unwrap_err().to_string();
            assert!(err.contains(says), "{url}: {err}");
            assert!(!err.contains("k3y-s3cret"), "{err}");
        }
        for url in [
            "postgres://u@db/x?sslmode=require&connect_timeout=5&application_name=a",
            "postgres://u@db/x?options[statement_timeout]=5s",
        ] {
            ConnectSettings::new(SecretUrl::new(url), "sluice")
                .options()
                .unwrap_or_else(|e| panic!("{url}: {e}"));
        }
    }

    #[test]
    fn a_url_the_driver_would_misread_is_refused_saying_why() {
        for (url, says) in [
            ("postgres://u:Pw/Leak@h/x", "write it as %2F"),
            ("postgres://u:Pw#Leak@h/x", "write it as %23"),
            ("postgres//u:LeakPw@h/db", "starts with postgres://"),
            ("u:LeakPw@h/db", "starts with postgres://"),
            ("mysql://u:LeakPw@h/db", "starts with postgres://"),
        ] {
            let settings = ConnectSettings::new(SecretUrl::new(url), "sluice");
            let err = settings.options().unwrap_err();
            assert_eq!(err.exit_code(), crate::exit::INVALID_INPUT);
            let message = err.to_string();
            assert!(message.contains(says), "{url}: {message}");
            assert!(!message.contains("Leak"), "{url}: {message}");
        }
        let encoded = ConnectSettings::new(SecretUrl::new("postgres://u:Pw%2FOk@h/x"), "s");
        assert!(encoded.options().is_ok());
    }

    #[test]
    fn application_name_defaults_to_the_program() {
        let settings = ConnectSettings::new(SecretUrl::new("postgres://db/prod"), "sluice");
        let options = settings.options().unwrap();
        assert_eq!(options.get_application_name(), Some("sluice"));
        let custom = ConnectSettings::new(
            SecretUrl::new("postgres://db/prod?application_name=deploy"),
            "sluice",
        );
        assert_eq!(
            custom.options().unwrap().get_application_name(),
            Some("deploy")
        );
    }

    #[test]
    fn target_names_host_and_port_only() {
        let settings =
            ConnectSettings::new(SecretUrl::new("postgres://u:pw@db.internal:6432/x"), "s");
        assert_eq!(settings.target(), "db.internal:6432");
    }

    #[tokio::test]
    async fn an_unreachable_server_fails_after_bounded_retries_naming_host_and_port() {
        // Bind then drop a listener: the port is free, so connecting is refused.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut settings = ConnectSettings::new(
            SecretUrl::new(format!("postgres://app:hunter2@127.0.0.1:{port}/prod")),
            "sluice",
        );
        settings.attempts = 3;
        settings.backoff = Backoff {
            initial: Duration::from_millis(1),
            max: Duration::from_millis(2),
        };
        let err = connect(&settings).await.unwrap_err();
        assert!(
            matches!(err, DbError::Unreachable { attempts: 3, .. }),
            "{err:?}"
        );
        let message = err.to_string();
        assert!(message.contains(&format!("127.0.0.1:{port}")), "{message}");
        assert!(!message.contains("hunter2"), "{message}");
        assert!(
            message.contains("check that the server is running"),
            "{message}"
        );

        // Without a count, the wait bounds the retries.
        settings.attempts = DEFAULT_CONNECT_ATTEMPTS;
        settings.wait = Duration::from_millis(200);
        let started = Instant::now();
        let err = connect(&settings).await.unwrap_err();
        assert!(matches!(err, DbError::Unreachable { .. }), "{err:?}");
        assert!(started.elapsed() < Duration::from_secs(5));
    }
}
