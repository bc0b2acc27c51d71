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
use sqlx::{ConnectOptions, Connection, PgConnection, PgPool, Row};

use crate::config::{
    CommonConfig, DEFAULT_CONNECT_ATTEMPTS, DEFAULT_CONNECT_TIMEOUT, DEFAULT_CONNECT_WAIT,
};
use crate::hosts::{self, SessionAttrs};
use crate::redact::{SecretUrl, scrub, unencoded_in_userinfo};
use crate::retry::{Backoff, sqlstate};

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error(
        "no database URL: set {variable}, pass --database-url, or set database_url in sluice.toml"
    )]
    MissingUrl {
        /// The variable the URL is read from: `DATABASE_URL`, or the environment's.
        variable: String,
    },
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
    #[error(
        "{target} is a connection pooler in transaction pooling mode (PgBouncer or alike): it runs \
         each transaction of a client on whichever server connection is free, so sluice's \
         session lock and prepared statements would land on connections other clients use. \
         Nothing was run. {remedy}"
    )]
    TransactionPooler {
        target: String,
        /// What to give instead: a direct URL, said the way the caller takes its URL.
        remedy: &'static str,
    },
}

impl DbError {
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::MissingUrl { .. } => crate::exit::USAGE,
            Self::InvalidUrl { .. } | Self::TransactionPooler { .. } => crate::exit::INVALID_INPUT,
            Self::Unreachable { .. }
            | Self::LoginRefused { .. }
            | Self::UnknownDatabase { .. }
            | Self::Connect { .. } => crate::exit::DATABASE_UNAVAILABLE,
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
    /// How to reach PostgreSQL directly instead of through a transaction pooler: a URL for a
    /// command line, a pool for an application.
    fn direct_remedy(&self) -> &'static str {
        match self {
            Self::Url(_) => {
                "Give sluice a URL that reaches PostgreSQL directly, or a pooler port in session \
                 pooling mode: SLUICE_DIRECT_URL (or --direct-url, or direct_url under [runner] \
                 in sluice.toml), which sluice uses instead of DATABASE_URL"
            }
            Self::Options(_) => {
                "Give the migrator a pool whose connections reach PostgreSQL directly, or a \
                 pooler port in session pooling mode (the application's own pool may keep \
                 using the pooler)"
            }
        }
    }

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
    /// What the sessions may meet between them and PostgreSQL.
    pub pooling: Pooling,
}

/// Whether sluice's sessions may pass through a pooler in transaction pooling mode
/// (PgBouncer's `pool_mode = transaction`), which hands each transaction of a client to any of
/// its server connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pooling {
    /// The session must stay one server session (a session advisory lock, cached statements,
    /// session settings): a transaction pooler is refused at connect
    /// ([`DbError::TransactionPooler`]). The runner's and the embedded migrator's.
    Session,
    /// Nothing outlives a transaction: statements are unnamed (parsed again with their
    /// arguments, see `vendor/README.md`), settings are `SET LOCAL`, locks are transaction
    /// locks. The backfill's.
    Transaction,
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
            pooling: Pooling::Session,
        }
    }

    /// Settings from resolved configuration; fails when no URL was given anywhere.
    pub fn from_config(config: &CommonConfig, application_name: &str) -> Result<Self, DbError> {
        let url = config
            .database_url
            .as_ref()
            .ok_or_else(|| DbError::MissingUrl {
                variable: config.url_variable.clone(),
            })?;
        Ok(Self {
            connect_timeout: config.connect_timeout.value,
            attempts: config.connect_attempts.value.max(1),
            wait: config.connect_wait.value,
            ..Self::new(url.value.clone(), application_name)
        })
    }

    /// Parsed driver options, with sluice's session defaults: one host's. A connection string
    /// naming several hosts is refused here (a driver's pool cannot follow them); sluice's own
    /// connections read every host ([`Self::hosts`]).
    pub fn options(&self) -> Result<PgConnectOptions, DbError> {
        let (mut hosts, attrs) = self.hosts()?;
        if hosts.len() > 1 || attrs != SessionAttrs::Any {
            return Err(self.invalid(
                "it names several hosts or target_session_attrs, which an application's \
                 connection pool cannot follow; give the one name that follows the primary"
                    .to_owned(),
            ));
        }
        Ok(hosts.remove(0))
    }

    /// The driver options of each host, in the order to try them, and what the session must
    /// be (libpq's multi-host strings, see [`crate::hosts`]).
    pub fn hosts(&self) -> Result<(Vec<PgConnectOptions>, SessionAttrs), DbError> {
        let url = match &self.endpoint {
            Endpoint::Url(url) => url,
            Endpoint::Options(options) => {
                return Ok((vec![self.defaults_for(options)], SessionAttrs::Any));
            }
        };
        let text = url.expose();
        if !hosts::is_key_value(text) {
            check_url_shape(text).map_err(|reason| self.invalid(reason))?;
        }
        let split = hosts::split(text).map_err(|reason| self.invalid(reason))?;
        let options = split
            .urls
            .iter()
            .map(|one| self.host_options(one))
            .collect::<Result<Vec<_>, _>>()?;
        Ok((options, split.attrs))
    }

    fn host_options(&self, url: &str) -> Result<PgConnectOptions, DbError> {
        check_url_shape(url).map_err(|reason| self.invalid(reason))?;
        check_url_params(url).map_err(|reason| self.invalid(reason))?;
        let mut options = PgConnectOptions::from_str(url)
            .map_err(|e| self.invalid(self.endpoint.scrub(&scrub(&e.to_string(), url))))?;
        if !url_sets_application_name(url) {
            options = options.application_name(&self.application_name);
        }
        Ok(self.for_pooling(options))
    }

    fn invalid(&self, reason: String) -> DbError {
        DbError::InvalidUrl {
            url: match &self.endpoint {
                Endpoint::Url(url) => url.redacted(),
                Endpoint::Options(options) => describe_target(options),
            },
            reason,
        }
    }

    /// An application's options, named as sluice's sessions unless the application named them.
    fn defaults_for(&self, options: &PgConnectOptions) -> PgConnectOptions {
        let options = match options.get_application_name() {
            Some(_) => options.clone(),
            None => options.clone().application_name(&self.application_name),
        };
        self.for_pooling(options)
    }

    fn for_pooling(&self, options: PgConnectOptions) -> PgConnectOptions {
        // sluice logs what it runs itself, at the right level and without bind values. The
        // driver's `extra_float_digits` startup parameter is left out: a stock PgBouncer
        // refuses any parameter not in its `ignore_startup_parameters`, and PostgreSQL 12 and
        // later print floats exactly without it.
        let options = options.disable_statement_logging().extra_float_digits(None);
        match self.pooling {
            Pooling::Session => options,
            // No statement is named, so none outlives the transaction on a pooled server.
            Pooling::Transaction => options.statement_cache_capacity(0),
        }
    }

    /// `host:port`, or the socket path: where we are trying to connect, for messages (every
    /// host of a multi-host string, comma-separated).
    pub fn target(&self) -> String {
        match self.hosts() {
            Ok((hosts, _)) => hosts
                .iter()
                .map(describe_target)
                .collect::<Vec<_>>()
                .join(","),
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
    Ok(())
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
/// (sluice would go to localhost:5432), `passfile=`, `sslpassword=`,
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
    Ok(connect_to(settings, Needs::Any).await?.connection)
}

/// A connection to a server that takes writes: one in recovery (a standby, or a primary
/// that is being replaced in a failover) is named and waited out within `connect_wait`, then
/// the error says so (exit 4). For sluice's own writes: the runner's lock and migrations, the
/// backfill's batches.
pub async fn connect_primary(settings: &ConnectSettings) -> Result<PgConnection, DbError> {
    Ok(connect_to(settings, Needs::Primary).await?.connection)
}

/// [`connect_primary`], saying whether the connection goes through a transaction pooler
/// (only ever with [`Pooling::Transaction`]): session settings must then not be made on it.
pub async fn connect_primary_routed(settings: &ConnectSettings) -> Result<Connected, DbError> {
    connect_to(settings, Needs::Primary).await
}

/// A new connection, and whether a transaction pooler is between it and PostgreSQL.
#[derive(Debug)]
pub struct Connected {
    pub connection: PgConnection,
    pub pooled: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Needs {
    Any,
    Primary,
}

/// A connection opened ahead of its use, while the program does other work (reading a
/// thousand migration files takes as long as a new server session): the next connection made
/// with the same settings takes it.
struct Ahead {
    key: String,
    primary: bool,
    connected: tokio::task::JoinHandle<Option<Connected>>,
}

static AHEAD: std::sync::Mutex<Option<Ahead>> = std::sync::Mutex::new(None);

fn ahead_key(settings: &ConnectSettings) -> String {
    format!(
        "{}|{}|{:?}",
        settings.target(),
        settings.application_name,
        settings.pooling
    )
}

/// Starts opening the connection the program's first [`connect`] (or, with `primary`,
/// [`connect_primary`]) will ask for. One try, silent: when it fails, the connection is made
/// as usual, with its retries and its messages. Needs a Tokio runtime that runs it while the
/// caller works (the work on a blocking thread).
pub fn open_ahead(settings: &ConnectSettings, primary: bool) {
    let Ok((hosts, attrs)) = settings.hosts() else {
        return;
    };
    let key = ahead_key(settings);
    let settings = settings.clone();
    let needs = if primary { Needs::Primary } else { Needs::Any };
    let connected =
        tokio::spawn(async move { try_hosts(&settings, &hosts, attrs, needs).await.ok() });
    if let Ok(mut ahead) = AHEAD.lock() {
        *ahead = Some(Ahead {
            key,
            primary,
            connected,
        });
    }
}

/// The connection opened ahead for `settings`, if it suits `needs` and it was made.
async fn take_ahead(settings: &ConnectSettings, needs: Needs) -> Option<Connected> {
    let ahead = {
        let mut slot = AHEAD.lock().ok()?;
        let suits = slot
            .as_ref()
            .is_some_and(|a| a.key == ahead_key(settings) && (a.primary || needs == Needs::Any));
        if !suits {
            return None;
        }
        slot.take()?
    };
    ahead.connected.await.ok().flatten()
}

async fn connect_to(settings: &ConnectSettings, needs: Needs) -> Result<Connected, DbError> {
    if let Some(connected) = take_ahead(settings, needs).await {
        return Ok(connected);
    }
    let (hosts, attrs) = settings.hosts()?;
    let target = settings.target();
    let started = Instant::now();
    let mut attempt = 0;
    loop {
        attempt += 1;
        let failure = match try_hosts(settings, &hosts, attrs, needs).await {
            Ok(connection) => return Ok(connection),
            Err(failure) => failure,
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
/// [`connect`], so a wrong URL fails here rather than at first use. A pool reaches one host
/// (a multi-host string is refused by [`ConnectSettings::options`]).
pub async fn pool(settings: &ConnectSettings, max_connections: u32) -> Result<PgPool, DbError> {
    let options = settings.options()?;
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
        .connect_lazy_with(options))
}

/// One try of each host in order (two passes for `prefer-standby`: standbys first): the first
/// session that is what `attrs` and `needs` ask for. With several hosts, the chosen one is
/// logged (at info when another was passed over), and a failure names every host's reason.
async fn try_hosts(
    settings: &ConnectSettings,
    hosts: &[PgConnectOptions],
    attrs: SessionAttrs,
    needs: Needs,
) -> Result<Connected, Failure> {
    let passes: &[bool] = if attrs == SessionAttrs::PreferStandby {
        &[true, false]
    } else {
        &[true]
    };
    let mut failures = Vec::new();
    for &first_pass in passes {
        for options in hosts {
            let target = describe_target(options);
            let want = Want {
                needs,
                attrs,
                first_pass,
            };
            match try_host(settings, options, &target, want).await {
                Ok(connected) => {
                    // Worth an operator's eye when another host was passed over (a
                    // failover); every connection to the first one is routine.
                    if hosts.len() > 1 && failures.is_empty() {
                        tracing::debug!(host = %target, target_session_attrs = %attrs, "connected to {target}");
                    } else if hosts.len() > 1 {
                        tracing::info!(host = %target, target_session_attrs = %attrs, "connected to {target}");
                    }
                    return Ok(connected);
                }
                Err(failure) if hosts.len() == 1 => return Err(failure),
                Err(failure) => failures.push((target, failure)),
            }
        }
    }
    Err(several_failed(failures))
}

/// What a session must be.
#[derive(Debug, Clone, Copy)]
struct Want {
    needs: Needs,
    attrs: SessionAttrs,
    first_pass: bool,
}

async fn try_host(
    settings: &ConnectSettings,
    options: &PgConnectOptions,
    target: &str,
    want: Want,
) -> Result<Connected, Failure> {
    let first = tokio::time::timeout(settings.connect_timeout, options.connect());
    let known = crate::pooler::known(options);
    let (first, pooled) = match known {
        Some(pooled) => (first.await, Ok(pooled)),
        None => {
            let (first, second) =
                tokio::join!(first, crate::pooler::open_second(options, settings));
            (first, Err(second))
        }
    };
    match first {
        Ok(Ok(connection)) => checked(connection, settings, options, target, want, pooled).await,
        Ok(Err(error)) => {
            close_unused(pooled).await;
            Err(classify_connect_error(&error, settings, options, target))
        }
        Err(_) => {
            close_unused(pooled).await;
            Err(Failure::Transient(
                format!(
                    "no answer within {}",
                    humantime::format_duration(settings.connect_timeout)
                ),
                HINT_UNREACHABLE,
            ))
        }
    }
}

/// Whether the target goes through a transaction pooler, as this process knows already, or
/// else the second client opened to find out.
type PoolerCheck = Result<bool, Result<PgConnection, String>>;

/// The second client of a pooler check the first connection did not live to make.
async fn close_unused(pooled: PoolerCheck) {
    if let Err(Ok(second)) = pooled {
        let _ = second.close().await;
    }
}

/// Every host failed: transient when any host's failure may pass (each host's reason named),
/// else the first host's permanent failure.
fn several_failed(mut failures: Vec<(String, Failure)>) -> Failure {
    let hint = failures.iter().find_map(|(_, failure)| match failure {
        Failure::Transient(_, hint) => Some(*hint),
        Failure::Permanent(_) => None,
    });
    let Some(hint) = hint else {
        return failures.remove(0).1;
    };
    let reasons = failures
        .iter()
        .map(|(target, failure)| match failure {
            // A host's own refusal names it already.
            Failure::Transient(reason, _) if reason.starts_with(target.as_str()) => reason.clone(),
            Failure::Transient(reason, _) => format!("{target}: {reason}"),
            Failure::Permanent(error) => format!("{target}: {error}"),
        })
        .collect::<Vec<_>>()
        .join("; ");
    Failure::Transient(format!("no host would do ({reasons})"), hint)
}

enum Failure {
    /// May pass by itself: the reason, and what it means.
    Transient(String, &'static str),
    Permanent(DbError),
}

/// `connection` back when it is what `settings` and `needs` ask for: not through a
/// transaction pooler where the session must stay one ([`Pooling::Session`]), and to a server
/// that takes writes where sluice writes. The checks run as simple queries, which leave no
/// statement behind on a pooled server connection.
async fn checked(
    mut connection: PgConnection,
    settings: &ConnectSettings,
    options: &PgConnectOptions,
    target: &str,
    want: Want,
    pooled: PoolerCheck,
) -> Result<Connected, Failure> {
    let pooled = match pooled {
        Ok(known) => Ok(known),
        Err(second) => crate::pooler::transaction_pooled(&mut connection, options, second).await,
    };
    let pooled = match pooled {
        Ok(pooled) => pooled,
        Err(reason) => {
            return Err(Failure::Transient(
                settings.endpoint.scrub(&reason),
                HINT_UNREACHABLE,
            ));
        }
    };
    if pooled && settings.pooling == Pooling::Session {
        let _ = connection.close().await;
        return Err(Failure::Permanent(DbError::TransactionPooler {
            target: target.to_owned(),
            remedy: settings.endpoint.direct_remedy(),
        }));
    }
    if want.needs == Needs::Any && want.attrs == SessionAttrs::Any {
        return Ok(Connected { connection, pooled });
    }
    let (in_recovery, read_only) = match role(&mut connection).await {
        Ok(role) => role,
        Err(error) => return Err(Failure::Transient(explain(&error), HINT_UNREACHABLE)),
    };
    let refused = if !want.attrs.accepts(in_recovery, read_only, want.first_pass) {
        let what = if in_recovery {
            "a standby"
        } else if read_only {
            "read-only"
        } else {
            "a primary"
        };
        Some(Failure::Transient(
            format!(
                "{target} is {what}, not what target_session_attrs={} asks for",
                want.attrs
            ),
            HINT_SESSION_ATTRS,
        ))
    } else if want.needs == Needs::Primary && in_recovery {
        Some(Failure::Transient(
            format!("{target} is a standby (read-only); waiting for a primary"),
            HINT_STANDBY,
        ))
    } else {
        None
    };
    match refused {
        None => Ok(Connected { connection, pooled }),
        Some(failure) => {
            let _ = connection.close().await;
            Err(failure)
        }
    }
}

/// Whether the server is in recovery, and whether its sessions are read-only by default (as
/// libpq's `read-write` check reads it).
async fn role(connection: &mut PgConnection) -> Result<(bool, bool), sqlx::Error> {
    let row = sqlx::raw_sql(
        "SELECT pg_is_in_recovery(), current_setting('transaction_read_only') = 'on'",
    )
    .fetch_one(connection)
    .await?;
    Ok((row.try_get(0)?, row.try_get(1)?))
}

const HINT_STANDBY: &str = "sluice writes (its history, its lock, the batches): point the \
                            database URL at the primary, or wait for the failover to promote \
                            this server (raise --connect-wait to wait longer)";
const HINT_SESSION_ATTRS: &str = "no host listed is what target_session_attrs asks for yet; \
                                  in a failover one becomes it when the standby is promoted \
                                  (raise --connect-wait to wait longer)";
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
) -> Result<Vec<sqlx::postgres::PgRow>, sqlx::Error> {
    let mut stream = sqlx::query(sqlx::AssertSqlSafe(query.to_owned())).fetch(conn);
    let mut rows = Vec::new();
    while rows.len() < limit {
        match stream.try_next().await? {
            Some(row) => rows.push(row),
            None => break,
        }
    }
    Ok(rows)
}

/// The exit code of a query that failed for good: the database unavailable (4) when it went
/// away, else a failure (1); never bad input (3), which a Job's `podFailurePolicy` would not
/// retry.
pub fn query_exit_code(error: &sqlx::Error) -> u8 {
    match crate::retry::classify(error) {
        Some(crate::retry::Transient::ConnectionLost) => crate::exit::DATABASE_UNAVAILABLE,
        _ => crate::exit::FAILED,
    }
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
    fn a_multi_host_url_is_read_host_by_host_and_refused_for_a_pool() {
        let settings = ConnectSettings::new(
            SecretUrl::new(
                "postgres://app:se,cret@db1:5432,db2:5433/prod?target_session_attrs=read-write",
            ),
            "sluice",
        );
        let (hosts, attrs) = settings.hosts().unwrap();
        let hosts: Vec<_> = hosts.iter().map(describe_target).collect();
        assert_eq!(hosts, ["db1:5432", "db2:5433"]);
        assert_eq!(attrs, SessionAttrs::ReadWrite);
        assert_eq!(settings.target(), "db1:5432,db2:5433");
        let err = settings.options().unwrap_err().to_string();
        assert!(err.contains("several hosts"), "{err}");
        assert!(!err.contains("se,cret"), "{err}");
        // A comma in the password is not a second host.
        let one = ConnectSettings::new(SecretUrl::new("postgres://app:se,cret@db1:5432/prod"), "s");
        assert_eq!(one.hosts().unwrap().0.len(), 1);
        // The key/value form, its password masked in a refusal.
        let kv = ConnectSettings::new(
            SecretUrl::new(
                "host=db1,db2 port=5432 user=app password=kv-s3cret dbname=prod target_session_attrs=primary",
            ),
            "sluice",
        );
        assert_eq!(kv.target(), "db1:5432,db2:5432");
        let bad = ConnectSettings::new(
            SecretUrl::new("host=db1,db2 port=1,2,3 password=kv-s3cret"),
            "sluice",
        );
        let err = bad.hosts().unwrap_err().to_string();
        assert!(
            err.contains("2 hosts but 3 ports") && !err.contains("kv-s3cret"),
            "{err}"
        );
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
                "postgres://u@db/x?target_session_attrs=master",
                "`master` is not one libpq knows",
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
            "postgres://u@db/x?sslmode=require&target_session_attrs=any",
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
