//! `sluice import --from <tool>`: copies another tool's history into sluice's, so a team
//! switches with one command. The files stay where they are: sluice reads sqlx's flat layout,
//! golang-migrate's `N_name.up.sql`/`.down.sql`, diesel's `<version>_<name>/up.sql`
//! directories, the sectioned files of dbmate, goose and sql-migrate, and Flyway's `V`/`U`
//! files as they are. The other
//! tool's table is only read: never altered, emptied or dropped (a project's own migrations may
//! alter it, and keep doing so).

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha384};
use sqlx::PgConnection;

use crate::repeatable::Repeatable;
use crate::source::{Migration, Version};

/// Tools whose history sluice imports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tool {
    /// `_sqlx_migrations`: one row per migration, with sqlx's SHA-384 of the file.
    Sqlx,
    /// `schema_migrations`: the newest applied version and a dirty flag.
    GolangMigrate,
    /// `__diesel_schema_migrations`: one row per migration (version without dashes, run_on).
    Diesel,
    /// `schema_migrations` with a text `version` per applied migration (no dirty flag).
    Dbmate,
    /// `goose_db_version`: a row per up and per down; the newest row of a version says.
    Goose,
    /// `gorp_migrations`: one row per applied file, by file name.
    SqlMigrate,
    /// `flyway_schema_history`: a row per run (success or not), baseline, undo and delete.
    Flyway,
}

impl Tool {
    pub fn name(self) -> &'static str {
        match self {
            Self::Sqlx => "sqlx",
            Self::GolangMigrate => "golang-migrate",
            Self::Diesel => "diesel",
            Self::Dbmate => "dbmate",
            Self::Goose => "goose",
            Self::SqlMigrate => "sql-migrate",
            Self::Flyway => "Flyway",
        }
    }
}

/// One migration the other tool applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Imported {
    pub version: Version,
    pub applied_at: Option<DateTime<Utc>>,
    pub duration_ms: i64,
}

impl Imported {
    /// A migration the other tool applied at `applied_at`, its duration not recorded.
    fn at(version: Version, applied_at: Option<DateTime<Utc>>) -> Self {
        Self {
            version,
            applied_at,
            duration_ms: 0,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error(
        "no {table} table in this database: nothing was applied with {tool} here (check --database-url and the search_path)"
    )]
    NoTable {
        tool: &'static str,
        table: &'static str,
    },
    #[error(
        "{tool} recorded migration {version} as failed or dirty; repair it with {tool} first, then import"
    )]
    Dirty {
        tool: &'static str,
        version: Version,
    },
    #[error(
        "{tool} applied migration {id}, but there is no file with that {by} in the migrations \
         directory (nothing was imported); restore the file, or point --migrations at the \
         directory {tool} ran"
    )]
    MissingFile {
        tool: &'static str,
        id: String,
        /// What files are matched by: "version" or "name".
        by: &'static str,
    },
    #[error(
        "{table} here is {owner}'s ({why}), not {tool}'s: import it with --from {owner} \
         (nothing was imported)"
    )]
    OtherTool {
        tool: &'static str,
        owner: &'static str,
        table: &'static str,
        why: &'static str,
    },
    #[error(
        "{file}: edited since sqlx applied it (its SHA-384 no longer matches sqlx's); restore the \
         applied text, import, then put the change in a new migration"
    )]
    Edited { file: String },
    #[error(
        "{tool} recorded version `{version}`, which is not a number sluice can match to a file"
    )]
    BadVersion { tool: &'static str, version: String },
    #[error(
        "golang-migrate's schema_migrations holds {} rows (versions {}) where it keeps exactly \
         one: golang-migrate itself would read whichever row comes first, so which migrations \
         are applied is not known; find the version the database is really at, delete the \
         other rows, and import again (nothing was imported)",
        versions.len(),
        versions.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
    )]
    Ambiguous { versions: Vec<Version> },
    #[error(
        "Flyway recorded migration {version} ({script}) as failed in flyway_schema_history; \
         repair it with Flyway first (flyway repair, after fixing the schema), then import \
         (nothing was imported)"
    )]
    FlywayFailed { version: String, script: String },
    #[error("reading {table}: {}", sluice_common::db::explain(.error))]
    Query {
        table: &'static str,
        error: sqlx::Error,
    },
}

/// What `tool` says is applied, checked against the files.
pub async fn read(
    conn: &mut PgConnection,
    tool: Tool,
    files: &[Migration],
) -> Result<Vec<Imported>, ImportError> {
    match tool {
        Tool::Sqlx => read_sqlx(conn, files).await,
        Tool::GolangMigrate => read_golang_migrate(conn, files).await,
        Tool::Diesel => read_diesel(conn, files).await,
        Tool::Dbmate => read_dbmate(conn, files).await,
        Tool::Goose => read_goose(conn, files).await,
        Tool::SqlMigrate => read_sql_migrate(conn, files).await,
        Tool::Flyway => read_flyway(conn, files).await,
    }
}

/// Whether `table` (found on the search_path) has a column named `column`.
async fn has_column(
    conn: &mut PgConnection,
    table: &'static str,
    column: &str,
) -> Result<bool, ImportError> {
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT FROM pg_attribute \
         WHERE attrelid = to_regclass($1) AND attname = $2 AND attnum > 0 AND NOT attisdropped)",
    )
    .bind(table)
    .bind(column)
    .fetch_one(conn)
    .await
    .map_err(query_failed(table))
}

/// golang-migrate and dbmate both keep `schema_migrations`; golang-migrate's has `dirty`.
async fn require_schema_migrations_of(
    conn: &mut PgConnection,
    tool: Tool,
) -> Result<(), ImportError> {
    const TABLE: &str = "schema_migrations";
    require_table(conn, tool.name(), TABLE).await?;
    let golang_migrate = has_column(conn, TABLE, "dirty").await?;
    match (tool, golang_migrate) {
        (Tool::Dbmate, true) => Err(ImportError::OtherTool {
            tool: "dbmate",
            owner: "golang-migrate",
            table: TABLE,
            why: "it has golang-migrate's dirty column",
        }),
        (Tool::GolangMigrate, false) => Err(ImportError::OtherTool {
            tool: "golang-migrate",
            owner: "dbmate",
            table: TABLE,
            why: "it has no dirty column, which golang-migrate always writes",
        }),
        _ => Ok(()),
    }
}

/// The error of a failed read of `table`.
fn query_failed(table: &'static str) -> impl FnOnce(sqlx::Error) -> ImportError {
    move |error| ImportError::Query { table, error }
}

/// Fails with [`ImportError::NoTable`] when `tool`'s tracking `table` is not there.
async fn require_table(
    conn: &mut PgConnection,
    tool: &'static str,
    table: &'static str,
) -> Result<(), ImportError> {
    let exists: bool = sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL")
        .bind(table)
        .fetch_one(conn)
        .await
        .map_err(query_failed(table))?;
    if exists {
        Ok(())
    } else {
        Err(ImportError::NoTable { tool, table })
    }
}

/// A row of `_sqlx_migrations`.
#[derive(sqlx::FromRow)]
struct SqlxRow {
    version: i64,
    success: bool,
    checksum: Vec<u8>,
    installed_on: Option<DateTime<Utc>>,
    /// Nanoseconds.
    execution_time: i64,
}

async fn read_sqlx(
    conn: &mut PgConnection,
    files: &[Migration],
) -> Result<Vec<Imported>, ImportError> {
    const TABLE: &str = "_sqlx_migrations";
    require_table(conn, "sqlx", TABLE).await?;
    let rows: Vec<SqlxRow> = sqlx::query_as(
        "SELECT version, success, checksum, installed_on, execution_time FROM _sqlx_migrations ORDER BY version",
    )
    .fetch_all(conn)
    .await
    .map_err(query_failed(TABLE))?;
    rows.into_iter()
        .map(
            |SqlxRow {
                 version,
                 success,
                 checksum,
                 installed_on: applied_at,
                 execution_time: nanos,
             }| {
                if !success {
                    return Err(ImportError::Dirty {
                        tool: "sqlx",
                        version,
                    });
                }
                let file = find(files, version, "sqlx")?;
                // sqlx's checksum: SHA-384 of the file's text exactly as read.
                let text =
                    std::fs::read_to_string(&file.up.path).unwrap_or_else(|_| file.up.sql.clone());
                if Sha384::digest(text.as_bytes()).as_slice() != checksum.as_slice() {
                    return Err(ImportError::Edited {
                        file: file.up.path.display().to_string(),
                    });
                }
                Ok(Imported {
                    version,
                    applied_at,
                    duration_ms: nanos / 1_000_000,
                })
            },
        )
        .collect()
}

async fn read_golang_migrate(
    conn: &mut PgConnection,
    files: &[Migration],
) -> Result<Vec<Imported>, ImportError> {
    const TABLE: &str = "schema_migrations";
    require_schema_migrations_of(conn, Tool::GolangMigrate).await?;
    // golang-migrate keeps one row (it truncates before each write) and reads it with LIMIT 1,
    // whichever row that finds: more than one cannot be read without guessing.
    let rows: Vec<(i64, bool)> =
        sqlx::query_as("SELECT version, dirty FROM schema_migrations ORDER BY version")
            .fetch_all(conn)
            .await
            .map_err(query_failed(TABLE))?;
    let (newest, dirty) = match rows.as_slice() {
        [] => return Ok(Vec::new()),
        [row] => *row,
        rows => {
            return Err(ImportError::Ambiguous {
                versions: rows.iter().map(|(version, _)| *version).collect(),
            });
        }
    };
    if dirty {
        return Err(ImportError::Dirty {
            tool: "golang-migrate",
            version: newest,
        });
    }
    find(files, newest, "golang-migrate")?;
    Ok(files
        .iter()
        .filter(|m| m.version <= newest)
        .map(|m| Imported::at(m.version, None))
        .collect())
}

async fn read_diesel(
    conn: &mut PgConnection,
    files: &[Migration],
) -> Result<Vec<Imported>, ImportError> {
    const TABLE: &str = "__diesel_schema_migrations";
    require_table(conn, "diesel", TABLE).await?;
    // run_on is a timestamp without time zone written by the server's clock in the session's
    // zone; read it back in that zone.
    let rows: Vec<(String, Option<DateTime<Utc>>)> = sqlx::query_as(
        "SELECT version::text, run_on AT TIME ZONE current_setting('TimeZone') \
         FROM __diesel_schema_migrations ORDER BY version",
    )
    .fetch_all(conn)
    .await
    .map_err(query_failed(TABLE))?;
    rows.into_iter()
        .map(|(text, applied_at)| {
            // diesel stores the directory's version without its dashes (for a name with no
            // `_`, the whole name: its leading digits are the version).
            let digits: String = text
                .chars()
                .filter(|c| *c != '-')
                .take_while(char::is_ascii_digit)
                .collect();
            let version = digits
                .parse::<Version>()
                .map_err(|_| ImportError::BadVersion {
                    tool: "diesel",
                    version: text.clone(),
                })?;
            find(files, version, "diesel")?;
            Ok(Imported::at(version, applied_at))
        })
        .collect()
}

fn find<'a>(
    files: &'a [Migration],
    version: Version,
    tool: &'static str,
) -> Result<&'a Migration, ImportError> {
    files
        .iter()
        .find(|m| m.version == version)
        .ok_or_else(|| ImportError::MissingFile {
            tool,
            id: version.to_string(),
            by: "version",
        })
}

/// dbmate records each applied file's version as text: the digits before the first `_`.
async fn read_dbmate(
    conn: &mut PgConnection,
    files: &[Migration],
) -> Result<Vec<Imported>, ImportError> {
    const TABLE: &str = "schema_migrations";
    require_schema_migrations_of(conn, Tool::Dbmate).await?;
    let versions: Vec<String> =
        sqlx::query_scalar("SELECT version::text FROM schema_migrations ORDER BY version")
            .fetch_all(conn)
            .await
            .map_err(query_failed(TABLE))?;
    versions
        .into_iter()
        .map(|text| {
            let file = files
                .iter()
                .find(|m| m.version_text == text)
                .or_else(|| {
                    let number = text.parse::<Version>().ok()?;
                    files.iter().find(|m| m.version == number)
                })
                .ok_or_else(|| ImportError::MissingFile {
                    tool: "dbmate",
                    id: text.clone(),
                    by: "version",
                })?;
            Ok(Imported::at(file.version, None))
        })
        .collect()
}

/// goose appends a row for each up (`is_applied`) and, in older versions, each down (not
/// `is_applied`; newer ones delete the row): a version is applied when its newest row says so.
/// Version 0 is the row goose writes when it creates the table.
async fn read_goose(
    conn: &mut PgConnection,
    files: &[Migration],
) -> Result<Vec<Imported>, ImportError> {
    const TABLE: &str = "goose_db_version";
    require_table(conn, "goose", TABLE).await?;
    let rows: Vec<(i64, bool, Option<DateTime<Utc>>)> = sqlx::query_as(
        "SELECT version_id, is_applied, tstamp AT TIME ZONE current_setting('TimeZone') \
         FROM (SELECT DISTINCT ON (version_id) version_id, is_applied, tstamp \
               FROM goose_db_version ORDER BY version_id, id DESC) newest \
         WHERE version_id <> 0 ORDER BY version_id",
    )
    .fetch_all(conn)
    .await
    .map_err(query_failed(TABLE))?;
    rows.into_iter()
        .filter(|(_, is_applied, _)| *is_applied)
        .map(|(version, _, applied_at)| {
            find(files, version, "goose")?;
            Ok(Imported::at(version, applied_at))
        })
        .collect()
}

/// sql-migrate records each applied file by its name (`1_init.sql`).
async fn read_sql_migrate(
    conn: &mut PgConnection,
    files: &[Migration],
) -> Result<Vec<Imported>, ImportError> {
    const TABLE: &str = "gorp_migrations";
    require_table(conn, "sql-migrate", TABLE).await?;
    let rows: Vec<(String, Option<DateTime<Utc>>)> =
        sqlx::query_as("SELECT id, applied_at::timestamptz FROM gorp_migrations ORDER BY id")
            .fetch_all(conn)
            .await
            .map_err(query_failed(TABLE))?;
    rows.into_iter()
        .map(|(id, applied_at)| {
            let file = files
                .iter()
                .find(|m| m.up.path.file_name().is_some_and(|name| *name == *id))
                .ok_or_else(|| ImportError::MissingFile {
                    tool: "sql-migrate",
                    id: id.clone(),
                    by: "name",
                })?;
            Ok(Imported::at(file.version, applied_at))
        })
        .collect()
}

/// A row of `flyway_schema_history`, in the order Flyway wrote them.
#[derive(sqlx::FromRow)]
struct FlywayRow {
    version: Option<String>,
    kind: String,
    script: String,
    success: bool,
    installed_on: Option<DateTime<Utc>>,
    /// Milliseconds.
    execution_time: i64,
}

/// Flyway appends a row per versioned migration it runs (`SQL`), its baseline (`BASELINE`:
/// every version up to it counts as applied), undo (`UNDO_SQL`) and repair's deletions
/// (`DELETE`); repeatable migrations have no version ([`read_flyway_repeatables`]). A failed
/// row stops the import: Flyway itself refuses to go on until repaired.
async fn read_flyway(
    conn: &mut PgConnection,
    files: &[Migration],
) -> Result<Vec<Imported>, ImportError> {
    const TABLE: &str = "flyway_schema_history";
    require_table(conn, "Flyway", TABLE).await?;
    let rows: Vec<FlywayRow> = sqlx::query_as(
        "SELECT version, type AS kind, script, success, \
                installed_on AT TIME ZONE current_setting('TimeZone') AS installed_on, \
                coalesce(execution_time, 0)::bigint AS execution_time \
         FROM flyway_schema_history ORDER BY installed_rank",
    )
    .fetch_all(conn)
    .await
    .map_err(query_failed(TABLE))?;
    let mut applied: std::collections::BTreeMap<Version, Imported> = Default::default();
    for row in rows {
        if !row.success {
            return Err(ImportError::FlywayFailed {
                version: row.version.unwrap_or_default(),
                script: row.script,
            });
        }
        apply_flyway_row(&mut applied, row, files)?;
    }
    Ok(applied.into_values().collect())
}

fn apply_flyway_row(
    applied: &mut std::collections::BTreeMap<Version, Imported>,
    row: FlywayRow,
    files: &[Migration],
) -> Result<(), ImportError> {
    // A repeatable migration's row: read by `read_flyway_repeatables`.
    let Some(text) = row.version else {
        return Ok(());
    };
    let key = crate::flyway::version_key(&text).map_err(|_| ImportError::BadVersion {
        tool: "Flyway",
        version: text.clone(),
    })?;
    match row.kind.as_str() {
        "BASELINE" => {
            for file in files.iter().filter(|m| m.version <= key) {
                applied.insert(file.version, Imported::at(file.version, row.installed_on));
            }
        }
        "UNDO_SQL" | "DELETE" => {
            applied.remove(&key);
        }
        // The schema Flyway created: not a migration.
        "SCHEMA" => {}
        _ => {
            let file = files.iter().find(|m| m.version == key).ok_or_else(|| {
                ImportError::MissingFile {
                    tool: "Flyway",
                    id: format!("{text} ({})", row.script),
                    by: "version",
                }
            })?;
            applied.insert(
                file.version,
                Imported {
                    version: file.version,
                    applied_at: row.installed_on,
                    duration_ms: row.execution_time,
                },
            );
        }
    }
    Ok(())
}

/// The newest successful run of a repeatable migration in `flyway_schema_history`: script,
/// checksum, when, how long (ms).
type FlywayRepeatableRow = (String, Option<i32>, Option<DateTime<Utc>>, i64);

/// A repeatable migration Flyway applied as the file is now.
#[derive(Debug, Clone)]
pub struct ImportedRepeatable<'a> {
    pub file: &'a Repeatable,
    pub applied_at: Option<DateTime<Utc>>,
    pub duration_ms: i64,
}

/// The repeatable migrations whose newest successful run in `flyway_schema_history` has the
/// checksum of the file as it is now. One whose file changed since is not imported: the next
/// `sluice up` applies it, as Flyway's next `migrate` would.
pub async fn read_flyway_repeatables<'a>(
    conn: &mut PgConnection,
    files: &'a [Repeatable],
) -> Result<Vec<ImportedRepeatable<'a>>, ImportError> {
    const TABLE: &str = "flyway_schema_history";
    let rows: Vec<FlywayRepeatableRow> = sqlx::query_as(
        "SELECT DISTINCT ON (script) script, checksum, \
                installed_on AT TIME ZONE current_setting('TimeZone'), \
                coalesce(execution_time, 0)::bigint \
         FROM flyway_schema_history \
         WHERE version IS NULL AND success AND type = 'SQL' \
         ORDER BY script, installed_rank DESC",
    )
    .fetch_all(conn)
    .await
    .map_err(query_failed(TABLE))?;
    let mut imported = Vec::new();
    for (script, checksum, applied_at, duration_ms) in rows {
        // Flyway names the file relative to its location: `R__views.sql`, `views/R__v.sql`.
        let name = script.rsplit('/').next().unwrap_or(&script);
        let Some(file) = files.iter().find(|f| {
            f.script()
                .path
                .file_name()
                .is_some_and(|file_name| *file_name == *name)
        }) else {
            tracing::warn!(script = %script, "Flyway applied the repeatable migration {script}, which is not in the directory: not imported");
            continue;
        };
        if checksum == Some(file.flyway_checksum()) {
            imported.push(ImportedRepeatable {
                file,
                applied_at,
                duration_ms,
            });
        } else {
            tracing::warn!(script = %script, "{} changed since Flyway applied it: not imported, so the next `sluice up` applies it again", file.id());
        }
    }
    Ok(imported)
}
