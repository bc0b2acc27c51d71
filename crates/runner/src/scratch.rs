//! A scratch database for `trace`, `roundtrip` and `drift`, on a server that is never the
//! production cluster unless the operator says so.
//!
//! Migrations run there committed, and whatever they do to the cluster (roles, databases,
//! settings, other sessions, the host's files) happens for real on whichever server holds the
//! scratch database. So by default it lives on a server of sluice's own, started from the
//! installed PostgreSQL binaries and removed afterwards; `--scratch-url` names another server,
//! which must be a different cluster than the real database's (`system_identifier`); and
//! `--scratch-on-target` uses the real database's server only for files with no statement that
//! reaches beyond their database ([`crate::reach`]).

use std::path::PathBuf;

use sluice_common::db::{self, ConnectSettings, DbError, Endpoint};
use sluice_common::ident::quote_ident;
use sluice_common::redact::SecretUrl;
use sluice_common::{exit, scratch};
use sluice_throwaway::PrivateServer;
use sqlx::{AssertSqlSafe, Connection, PgConnection};

use crate::migrator::RunnerSettings;
use crate::reach;

/// Where scratch databases are made.
#[derive(Debug, Clone, Default)]
pub enum ScratchServer {
    /// A server of sluice's own, started from the installed PostgreSQL binaries for this run
    /// and removed afterwards (its roles mirror the real server's names, without rights).
    #[default]
    Own,
    /// A server the operator names (`--scratch-url`), another cluster than the real one.
    Url(SecretUrl),
    /// The real database's server (`--scratch-on-target`): files whose statements reach
    /// beyond their database are refused.
    Target,
}

/// A statement that may not run on a scratch database on the production server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    pub file: PathBuf,
    pub line: usize,
    pub reason: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ScratchError {
    #[error("{purpose} needs a URL-form database URL: {reason}")]
    NotAUrl { purpose: String, reason: String },
    #[error(
        "cannot create the scratch database {name}: {reason}; nothing was changed (the role \
         needs CREATEDB there)"
    )]
    Create { name: String, reason: String },
    #[error(
        "cannot start a PostgreSQL server of sluice's own for the scratch database: {reason}; \
         install PostgreSQL's server package (initdb, postgres), or name a server of your own \
         with --scratch-url, or use the real server with --scratch-on-target (files with \
         cluster-wide statements refused there); nothing was changed"
    )]
    NoOwnServer { reason: String },
    #[error(
        "--scratch-url names the real database's own cluster (system identifier {identifier}): \
         migrations run there would change the production cluster's roles, databases and \
         settings; name another server, or leave --scratch-url out to use a server of \
         sluice's own; nothing was changed"
    )]
    SameCluster { identifier: i64 },
    #[error(
        "a scratch database on the real database's server (--scratch-on-target) cannot run \
         statements that reach beyond it, and these do: {}; leave --scratch-on-target out to \
         use a server of sluice's own, or name one with --scratch-url; nothing was run",
        list(.refused)
    )]
    ReachesBeyond { refused: Vec<Refused> },
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("{what} failed: {}", db::explain(.error))]
    Query {
        what: &'static str,
        error: sqlx::Error,
    },
}

fn list(refused: &[Refused]) -> String {
    refused
        .iter()
        .map(|r| format!("{}:{} ({})", r.file.display(), r.line, r.reason))
        .collect::<Vec<_>>()
        .join(", ")
}

impl ScratchError {
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::NotAUrl { .. }
            | Self::NoOwnServer { .. }
            | Self::SameCluster { .. }
            | Self::ReachesBeyond { .. } => exit::INVALID_INPUT,
            Self::Create { .. } | Self::Query { .. } => exit::FAILED,
            Self::Db(e) => e.exit_code(),
        }
    }
}

/// The statements of `files` that may not run on the production server, for
/// [`ScratchServer::Target`].
pub fn refused<'f>(
    files: impl IntoIterator<Item = (&'f std::path::Path, &'f str)>,
) -> Vec<Refused> {
    files
        .into_iter()
        .flat_map(|(path, sql)| {
            reach::beyond_database(sql)
                .into_iter()
                .map(move |r| Refused {
                    file: path.to_path_buf(),
                    line: r.line,
                    reason: r.reason,
                })
        })
        .collect()
}

/// A created scratch database; [`Scratch::drop`] it when done.
#[derive(Debug)]
pub struct Scratch {
    admin: PgConnection,
    pub name: String,
    /// Runner settings pointing at the scratch database, lint, backups and checks off.
    pub settings: RunnerSettings,
    /// Where it is, in words, for every command that uses one to say.
    pub place: String,
    /// The server of sluice's own, stopped and removed when this is dropped.
    own: Option<PrivateServer>,
}

impl Scratch {
    /// Creates a scratch database on `server` for `purpose`. `files` are what will run there:
    /// on the production server ([`ScratchServer::Target`]) any statement that reaches beyond
    /// its database refuses the whole run before anything is created.
    pub async fn create<'f>(
        settings: &RunnerSettings,
        purpose: &str,
        server: &ScratchServer,
        files: impl IntoIterator<Item = (&'f std::path::Path, &'f str)>,
    ) -> Result<Self, ScratchError> {
        let (base, own, place) = match server {
            ScratchServer::Target => {
                let refused = refused(files);
                if !refused.is_empty() {
                    return Err(ScratchError::ReachesBeyond { refused });
                }
                let base = settings.connect.endpoint.url().cloned();
                let base = base.ok_or_else(|| ScratchError::NotAUrl {
                    purpose: purpose.to_owned(),
                    reason: "these settings carry connection options, not a URL".to_owned(),
                })?;
                let place = "on the real database's server (--scratch-on-target; statements \
                             reaching beyond the database were refused before the run, but \
                             functions the migrations call run with the role's rights there)"
                    .to_owned();
                (base, None, place)
            }
            ScratchServer::Url(url) => {
                different_cluster(&settings.connect, url).await?;
                let place = format!("on the scratch server {}", url.redacted());
                (url.clone(), None, place)
            }
            ScratchServer::Own => {
                let (server, place) = start_own(&settings.connect).await?;
                (SecretUrl::new(server.admin_url()), Some(server), place)
            }
        };
        let name = scratch::unique_name(purpose);
        let url = scratch::url_with_database(base.expose(), &name).map_err(|reason| {
            ScratchError::NotAUrl {
                purpose: purpose.to_owned(),
                reason,
            }
        })?;
        let admin_settings = ConnectSettings {
            endpoint: Endpoint::Url(base),
            ..settings.connect.clone()
        };
        let mut admin = db::connect(&admin_settings).await?;
        scratch::create_database(&mut admin, &name)
            .await
            .map_err(|e| ScratchError::Create {
                name: name.clone(),
                reason: db::explain(&e),
            })?;
        let settings = RunnerSettings {
            connect: ConnectSettings {
                endpoint: Endpoint::Url(SecretUrl::new(url)),
                ..settings.connect.clone()
            },
            lint_gate: false,
            backup: None,
            post_apply: Default::default(),
            ..settings.clone()
        };
        Ok(Self {
            admin,
            name,
            settings,
            place,
            own,
        })
    }

    /// Drops the database (and stops a server of sluice's own); the error says what to drop by
    /// hand.
    pub async fn drop(mut self) -> Result<String, String> {
        let dropped = scratch::drop_database(&mut self.admin, &self.name).await;
        let _ = self.admin.close().await;
        if let Some(server) = self.own.take() {
            // Stopping waits for the server to exit: not on the runtime's threads.
            let _ = tokio::task::spawn_blocking(move || drop(server)).await;
        }
        match dropped {
            Ok(()) => Ok(self.name),
            Err(e) => Err(format!(
                "could not drop the scratch database {}: {}; drop it by hand",
                self.name,
                db::explain(&e)
            )),
        }
    }
}

/// Refuses a scratch server that is the real database's own cluster.
async fn different_cluster(
    real: &ConnectSettings,
    scratch: &SecretUrl,
) -> Result<(), ScratchError> {
    let scratch_settings = ConnectSettings {
        endpoint: Endpoint::Url(scratch.clone()),
        ..real.clone()
    };
    let real_id = system_identifier(real).await?;
    let scratch_id = system_identifier(&scratch_settings).await?;
    if real_id == scratch_id {
        return Err(ScratchError::SameCluster {
            identifier: real_id,
        });
    }
    Ok(())
}

async fn system_identifier(settings: &ConnectSettings) -> Result<i64, ScratchError> {
    let mut conn = db::connect(settings).await?;
    let id = sqlx::query_scalar("SELECT system_identifier FROM pg_control_system()")
        .fetch_one(&mut conn)
        .await
        .map_err(|error| ScratchError::Query {
            what: "reading the cluster's system identifier",
            error,
        });
    let _ = conn.close().await;
    id
}

/// Starts a server of sluice's own and gives it the real server's role names (without rights
/// or passwords), so that `GRANT ... TO app` and `OWNER TO app` run there as they would in
/// production. The description names both versions.
async fn start_own(real: &ConnectSettings) -> Result<(PrivateServer, String), ScratchError> {
    let server = tokio::task::spawn_blocking(PrivateServer::start)
        .await
        .map_err(|e| ScratchError::NoOwnServer {
            reason: e.to_string(),
        })?
        .map_err(|reason| ScratchError::NoOwnServer { reason })?;
    let own = ConnectSettings {
        endpoint: Endpoint::Url(SecretUrl::new(server.admin_url())),
        ..real.clone()
    };
    let mut real_conn = db::connect(real).await?;
    let roles: Result<(Vec<String>, String), sqlx::Error> = async {
        let roles = sqlx::query_scalar(
            "SELECT rolname FROM pg_roles WHERE rolname !~ '^pg_' ORDER BY rolname",
        )
        .fetch_all(&mut real_conn)
        .await?;
        let version = sqlx::query_scalar("SHOW server_version")
            .fetch_one(&mut real_conn)
            .await?;
        Ok((roles, version))
    }
    .await;
    let _ = real_conn.close().await;
    let (roles, real_version) = roles.map_err(|error| ScratchError::Query {
        what: "reading the real server's role names",
        error,
    })?;
    let mut conn = db::connect(&own).await?;
    let mirrored: Result<String, sqlx::Error> = async {
        for role in &roles {
            let exists: bool =
                sqlx::query_scalar("SELECT EXISTS (SELECT FROM pg_roles WHERE rolname = $1)")
                    .bind(role)
                    .fetch_one(&mut conn)
                    .await?;
            if !exists {
                sqlx::raw_sql(AssertSqlSafe(format!(
                    "CREATE ROLE {} NOLOGIN",
                    quote_ident(role)
                )))
                .execute(&mut conn)
                .await?;
            }
        }
        sqlx::query_scalar("SHOW server_version")
            .fetch_one(&mut conn)
            .await
    }
    .await;
    let _ = conn.close().await;
    let own_version = mirrored.map_err(|error| ScratchError::Query {
        what: "giving the scratch server the real server's role names",
        error,
    })?;
    let place = format!(
        "on a PostgreSQL {own_version} server of sluice's own, removed afterwards (the real \
         server runs {real_version})"
    );
    Ok((server, place))
}
