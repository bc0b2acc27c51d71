//! A scratch database beside the configured one, for `roundtrip` and `drift`: created with a
//! unique name, dropped whatever happens.

use sluice_common::db::{self, ConnectSettings};
use sluice_common::redact::SecretUrl;
use sluice_common::{errln, outln};
use sluice_runner::migrator::RunnerSettings;
use sqlx::{AssertSqlSafe, Connection, PgConnection};

/// A created scratch database; call [`Scratch::drop`] when done.
#[derive(Debug)]
pub struct Scratch {
    admin: PgConnection,
    pub name: String,
    /// Runner settings pointing at the scratch database, lint off.
    pub settings: RunnerSettings,
}

impl Scratch {
    pub async fn create(settings: &RunnerSettings, purpose: &str) -> anyhow::Result<Self> {
        let name = format!(
            "sluice_{purpose}_{}_{:04x}",
            std::process::id(),
            fastrand::u16(..)
        );
        let mut url = url::Url::parse(settings.connect.url.expose())
            .map_err(|e| anyhow::anyhow!("{purpose} needs a URL-form database URL: {e}"))?;
        url.set_path(&format!("/{name}"));
        let mut admin = db::connect(&settings.connect).await?;
        sqlx::raw_sql(AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
            .execute(&mut admin)
            .await
            .map_err(|e| {
                anyhow::anyhow!(
                    "cannot create the scratch database {name} (the role needs CREATEDB): {e}"
                )
            })?;
        outln!("scratch database {name} created");
        let settings = RunnerSettings {
            connect: ConnectSettings {
                url: SecretUrl::new(url.to_string()),
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

    pub async fn drop(mut self) {
        let dropped = sqlx::raw_sql(AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)",
            self.name
        )))
        .execute(&mut self.admin)
        .await;
        let _ = self.admin.close().await;
        match dropped {
            Ok(_) => outln!("scratch database {} dropped", self.name),
            Err(e) => errln!(
                "sluice: could not drop the scratch database {}: {e}; drop it by hand",
                self.name
            ),
        }
    }
}
