//! `up --backup <dir>`: a `pg_dump -Fc` of the database before anything is applied, checked
//! with `pg_restore --list`. If either fails, nothing is applied.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use sluice_common::db::ConnectSettings;

/// Where backups go and which programs take and check them.
#[derive(Debug, Clone)]
pub struct BackupSettings {
    pub dir: PathBuf,
    /// `pg_dump` (override with `SLUICE_PG_DUMP`).
    pub pg_dump: PathBuf,
    /// `pg_restore` (override with `SLUICE_PG_RESTORE`).
    pub pg_restore: PathBuf,
}

/// A checked backup.
#[derive(Debug, Clone)]
pub struct Backup {
    pub path: PathBuf,
    pub bytes: u64,
    pub duration: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("cannot create the backup directory {}: {error}", dir.display())]
    Directory { dir: PathBuf, error: std::io::Error },
    #[error("{} failed, so nothing was applied: {}", .0.program, .0.message)]
    Tool(ToolFailure),
    #[error(
        "a backup runs pg_dump, which needs a database URL; these settings carry connection \
         options only, so nothing was applied"
    )]
    NoUrl,
}

/// A PostgreSQL client program that could not run or exited non-zero, with its scrubbed
/// stderr.
#[derive(Debug, Clone)]
pub struct ToolFailure {
    pub program: String,
    pub message: String,
}

/// Dumps the database of `connect` into `settings.dir` and checks the archive.
pub async fn take(
    connect: &ConnectSettings,
    settings: &BackupSettings,
) -> Result<Backup, BackupError> {
    std::fs::create_dir_all(&settings.dir).map_err(|error| BackupError::Directory {
        dir: settings.dir.clone(),
        error,
    })?;
    let url = connect.endpoint.url().ok_or(BackupError::NoUrl)?;
    let (url, password) = without_password(url.expose());
    let database = url::Url::parse(&url)
        .ok()
        .map(|u| u.path().trim_start_matches('/').to_owned())
        .unwrap_or_default();
    let database = if database.is_empty() {
        "database"
    } else {
        &database
    };
    let path = new_backup_file(&settings.dir, database)?;
    let started = Instant::now();
    let mut dump = tokio::process::Command::new(&settings.pg_dump);
    dump.arg("--format=custom")
        .arg("--file")
        .arg(&path)
        .arg("--dbname")
        .arg(&url);
    run(dump, &password, &settings.pg_dump, connect)
        .await
        .map_err(BackupError::Tool)?;
    let mut list = tokio::process::Command::new(&settings.pg_restore);
    list.arg("--list").arg(&path);
    run(
        list,
        &ClientSecrets::default(),
        &settings.pg_restore,
        connect,
    )
    .await
    .map_err(BackupError::Tool)?;
    let bytes = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    Ok(Backup {
        path,
        bytes,
        duration: started.elapsed(),
    })
}

/// Creates `<database>-<UTC time with milliseconds>.dump` in `dir`, never an existing file:
/// the file checked after the dump is always this dump's, not an earlier backup that happened
/// to get the same name.
fn new_backup_file(dir: &Path, database: &str) -> Result<PathBuf, BackupError> {
    let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%S%.3fZ");
    let mut n = 1;
    loop {
        let suffix = if n == 1 {
            String::new()
        } else {
            format!("-{n}")
        };
        let path = dir.join(format!("{database}-{stamp}{suffix}.dump"));
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
        {
            Ok(_) => return Ok(path),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => n += 1,
            Err(error) => {
                return Err(BackupError::Directory {
                    dir: dir.to_path_buf(),
                    error,
                });
            }
        }
    }
}

/// The secrets of a connection, kept off a client program's command line (where `ps` shows
/// them): the password goes to `PGPASSWORD`, a client key's passphrase to a private service
/// file (libpq has no variable for it).
#[derive(Debug, Default)]
pub(crate) struct ClientSecrets {
    password: Option<String>,
    sslpassword: Option<String>,
}

/// The URL without its password (user info or `password=`) and `sslpassword=`, and those
/// secrets.
pub(crate) fn without_password(url: &str) -> (String, ClientSecrets) {
    let Ok(mut parsed) = url::Url::parse(url) else {
        return (url.to_owned(), ClientSecrets::default());
    };
    let decode = |p: &str| {
        url::form_urlencoded::parse(format!("p={p}").as_bytes())
            .next()
            .map_or_else(|| p.to_owned(), |(_, v)| v.into_owned())
    };
    let mut secrets = ClientSecrets {
        password: parsed.password().map(decode),
        sslpassword: None,
    };
    let _ = parsed.set_password(None);
    let mut kept = Vec::new();
    for (key, value) in parsed.query_pairs() {
        match key.as_ref() {
            "password" => secrets.password = Some(value.into_owned()),
            "sslpassword" => secrets.sslpassword = Some(value.into_owned()),
            _ => kept.push((key.into_owned(), value.into_owned())),
        }
    }
    if kept.is_empty() {
        parsed.set_query(None);
    } else {
        parsed.query_pairs_mut().clear().extend_pairs(kept);
    }
    (parsed.to_string(), secrets)
}

/// Runs a client program with the secrets out of its arguments; returns its stdout.
pub(crate) async fn run(
    mut command: tokio::process::Command,
    secrets: &ClientSecrets,
    program: &Path,
    connect: &ConnectSettings,
) -> Result<Vec<u8>, ToolFailure> {
    let name = program.display().to_string();
    if let Some(password) = &secrets.password {
        command.env("PGPASSWORD", password);
    }
    let service = match &secrets.sslpassword {
        Some(passphrase) => {
            let file = private_service_file(passphrase).map_err(|e| ToolFailure {
                program: name.clone(),
                message: format!("cannot write its private service file: {e}"),
            })?;
            command
                .env("PGSERVICEFILE", &file)
                .env("PGSERVICE", SERVICE);
            Some(file)
        }
        None => None,
    };
    let output = command.output().await;
    if let Some(file) = service {
        let _ = std::fs::remove_file(file);
    }
    let output = output.map_err(|e| ToolFailure {
        program: name.clone(),
        message: format!("cannot run it: {e}; install the PostgreSQL client tools or set SLUICE_PG_DUMP/SLUICE_PG_RESTORE"),
    })?;
    if output.status.success() {
        return Ok(output.stdout);
    }
    Err(ToolFailure {
        program: name,
        message: connect
            .endpoint
            .scrub(String::from_utf8_lossy(&output.stderr).trim()),
    })
}

const SERVICE: &str = "sluice";

/// A service file only this user can read, holding the client key's passphrase.
fn private_service_file(passphrase: &str) -> std::io::Result<PathBuf> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let path = std::env::temp_dir().join(format!(
        "sluice-service-{}-{:08x}.conf",
        std::process::id(),
        fastrand::u32(..)
    ));
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)?;
    writeln!(file, "[{SERVICE}]\nsslpassword={passphrase}")?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_password_leaves_the_url() {
        let (url, password) =
            without_password("postgres://app:s%40cret@db:5432/prod?sslmode=require");
        assert_eq!(url, "postgres://app@db:5432/prod?sslmode=require");
        assert_eq!(password.password.as_deref(), Some("s@cret"));
        assert_eq!(without_password("postgres://db/prod").1.password, None);
        let (url, secrets) = without_password(
            "postgres://app@db/prod?sslmode=verify-full&sslpassword=k3y&password=pw",
        );
        assert_eq!(url, "postgres://app@db/prod?sslmode=verify-full");
        assert_eq!(secrets.sslpassword.as_deref(), Some("k3y"));
        assert_eq!(secrets.password.as_deref(), Some("pw"));
    }
}
