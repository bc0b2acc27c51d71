//! A scratch database beside the configured one, for `roundtrip` and `drift`: created with a
//! unique name on the same server, dropped by its owner when done.

use sluice_common::db::{self, ConnectSettings, DbError, Endpoint};
use sluice_common::redact::SecretUrl;
use sluice_common::{exit, scratch};
use sqlx::{Connection, PgConnection};

use crate::migrator::RunnerSettings;

#[derive(Debug, thiserror::Error)]
pub enum ScratchError {
    #[error("{purpose} needs a URL-form database URL: {reason}")]
    NotAUrl { purpose: String, reason: String },
    #[error(
        "cannot create the scratch database {name} (the role needs CREATEDB): {reason}; nothing \
         was changed"
    )]
    Create { name: String, reason: String },
    #[error(transparent)]
    Db(#[from] DbError),
}

impl ScratchError {
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::NotAUrl { .. } => exit::INVALID_INPUT,
            Self::Create { .. } => exit::FAILED,
            Self::Db(e) => e.exit_code(),
        }
    }
}

/// A created scratch database; [`Scratch::drop`] it when done.
#[derive(Debug)]
pub struct Scratch {
    admin: PgConnection,
    pub name: String,
    /// Runner settings pointing at the scratch database, lint, backups and checks off.
    pub settings: RunnerSettings,
}

impl Scratch {
    pub async fn create(settings: &RunnerSettings, purpose: &str) -> Result<Self, ScratchError> {
        let name = scratch::unique_name(purpose);
        let not_a_url = |reason: String| ScratchError::NotAUrl {
            purpose: purpose.to_owned(),
            reason,
        };
        let base = settings.connect.endpoint.url().ok_or_else(|| {
            not_a_url("these settings carry connection options, not a URL".to_owned())
        })?;
        let url = scratch::url_with_database(base.expose(), &name).map_err(not_a_url)?;
        let mut admin = db::connect(&settings.connect).await?;
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
        })
    }

    /// Drops the database; the error says what to drop by hand.
    pub async fn drop(mut self) -> Result<String, String> {
        let dropped = scratch::drop_database(&mut self.admin, &self.name).await;
        let _ = self.admin.close().await;
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
