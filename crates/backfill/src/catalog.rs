//! Checking a job's table and key against the catalog before anything runs.
//!
//! Keyset batches need a key that is NOT NULL (every row has a place in the order), unique
//! (each row is addressed once) and backed by a btree index in key order (each batch is an
//! index range scan, not a table scan).

use sluice_common::ident::{Ident, QualifiedName};
use sqlx::PgConnection;

use crate::copy_target::{self, CopyTarget};
use crate::job::{Action, Job};

/// A key column and its SQL type, as the catalog spells it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyColumn {
    pub name: Ident,
    /// `format_type` output, e.g. `bigint`, `uuid`, `character varying(20)`.
    pub type_name: String,
}

/// A job's target, checked.
#[derive(Debug, Clone)]
pub struct Target {
    pub table: QualifiedName,
    pub key: Vec<KeyColumn>,
    /// The unique index the batches walk.
    pub index: String,
    /// The planner's row estimate (`pg_class.reltuples`), for progress.
    pub estimated_rows: i64,
    /// A copy job's target table, resolved.
    pub copy: Option<CopyTarget>,
}

#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("table {0} does not exist (or this role cannot see it)")]
    NoTable(String),
    #[error("key column {column} does not exist in table {table}")]
    NoColumn { table: String, column: String },
    #[error(
        "key column {column} of table {table} is nullable: a backfill key must be NOT NULL, so \
         that every row has a place in the key order"
    )]
    Nullable { table: String, column: String },
    #[error(
        "key ({key}) of table {table} is not unique{why}: the backfill needs a unique key, \
         backed by a btree index in key order, to address each row exactly once"
    )]
    NotUnique {
        table: String,
        key: String,
        why: String,
    },
    #[error("copy job {job}: {message}")]
    Copy { job: String, message: String },
    #[error("reading the catalog for table {table} failed: {}", sluice_common::db::explain(.error))]
    Query { table: String, error: sqlx::Error },
}

#[derive(sqlx::FromRow)]
struct ColumnRow {
    attname: String,
    attnum: i16,
    type_name: String,
    attnotnull: bool,
}

/// Checks `job`'s table and key; returns the key's types and the index to walk.
pub async fn inspect(conn: &mut PgConnection, job: &Job) -> Result<Target, CatalogError> {
    let table = job.table.to_string();
    let shown = table.clone();
    let query_error = |error| CatalogError::Query {
        table: shown.clone(),
        error,
    };
    let found: Option<(i64, f32)> = sqlx::query_as(
        "SELECT c.oid::int8, c.reltuples FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind IN ('r', 'p')",
    )
    .bind(job.table.schema.as_str())
    .bind(job.table.name.as_str())
    .fetch_optional(&mut *conn)
    .await
    .map_err(&query_error)?;
    let Some((oid, reltuples)) = found else {
        return Err(CatalogError::NoTable(table));
    };
    let names: Vec<&str> = job.key.iter().map(Ident::as_str).collect();
    let columns: Vec<ColumnRow> = sqlx::query_as(
        "SELECT attname::text, attnum, format_type(atttypid, atttypmod) AS type_name, attnotnull \
         FROM pg_attribute WHERE attrelid = $1::oid AND attname = ANY($2) AND attnum > 0 AND NOT attisdropped",
    )
    .bind(oid)
    .bind(&names)
    .fetch_all(&mut *conn)
    .await
    .map_err(&query_error)?;
    let ordered = order_columns(&table, &job.key, &columns)?;
    let attnums: Vec<String> = ordered.iter().map(|c| c.attnum.to_string()).collect();
    let index = unique_index(conn, oid, &attnums)
        .await
        .map_err(&query_error)?;
    let Some(index) = index else {
        return Err(CatalogError::NotUnique {
            table,
            key: job.key_list(),
            why: not_unique_reason(conn, oid, &attnums)
                .await
                .map_err(&query_error)?,
        });
    };
    let copy = match &job.action {
        Action::Copy(spec) => Some(copy_target::inspect(conn, &job.table, spec).await.map_err(
            |problem| match problem {
                copy_target::CopyProblem::Invalid(message) => CatalogError::Copy {
                    job: job.name.clone(),
                    message,
                },
                copy_target::CopyProblem::Query(error) => CatalogError::Query {
                    table: spec.into.to_string(),
                    error,
                },
            },
        )?),
        _ => None,
    };
    Ok(Target {
        copy,
        table: job.table.clone(),
        key: ordered
            .into_iter()
            .zip(&job.key)
            .map(|(c, name)| KeyColumn {
                name: name.clone(),
                type_name: c.type_name.clone(),
            })
            .collect(),
        index,
        estimated_rows: estimate(reltuples),
    })
}

fn estimate(reltuples: f32) -> i64 {
    // -1 means "never analysed"; callers treat 0 as unknown.
    if reltuples.is_finite() && reltuples > 0.0 {
        format!("{reltuples:.0}").parse().unwrap_or(0)
    } else {
        0
    }
}

fn order_columns<'a>(
    table: &str,
    key: &[Ident],
    columns: &'a [ColumnRow],
) -> Result<Vec<&'a ColumnRow>, CatalogError> {
    key.iter()
        .map(|name| {
            let column = columns
                .iter()
                .find(|c| c.attname == name.as_str())
                .ok_or_else(|| CatalogError::NoColumn {
                    table: table.to_owned(),
                    column: name.to_string(),
                })?;
            if !column.attnotnull {
                return Err(CatalogError::Nullable {
                    table: table.to_owned(),
                    column: name.to_string(),
                });
            }
            Ok(column)
        })
        .collect()
}

/// A valid, non-partial unique btree index whose key columns are exactly the key, in order.
async fn unique_index(
    conn: &mut PgConnection,
    oid: i64,
    attnums: &[String],
) -> Result<Option<String>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT i.indexrelid::regclass::text FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid \
         JOIN pg_am am ON am.oid = ic.relam \
         WHERE i.indrelid = $1::oid AND i.indisunique AND i.indisvalid AND i.indpred IS NULL \
           AND i.indexprs IS NULL AND am.amname = 'btree' AND i.indnkeyatts = $2 \
           AND (string_to_array(i.indkey::text, ' '))[1:$2] = $3::text[] \
         ORDER BY i.indisprimary DESC LIMIT 1",
    )
    .bind(oid)
    .bind(i32::try_from(attnums.len()).unwrap_or(i32::MAX))
    .bind(attnums)
    .fetch_optional(conn)
    .await
}

/// Why no index qualifies, for the error message.
async fn not_unique_reason(
    conn: &mut PgConnection,
    oid: i64,
    attnums: &[String],
) -> Result<String, sqlx::Error> {
    let (unique_other_order, any_index): (bool, bool) = sqlx::query_as(
        "SELECT coalesce(bool_or(i.indisunique AND i.indnkeyatts = $2 \
                    AND (SELECT array_agg(x ORDER BY x) FROM unnest((string_to_array(i.indkey::text, ' '))[1:$2]) x) \
                        = (SELECT array_agg(x ORDER BY x) FROM unnest($3::text[]) x)), false), \
                coalesce(bool_or((string_to_array(i.indkey::text, ' '))[1:$2] = $3::text[]), false) \
         FROM pg_index i WHERE i.indrelid = $1::oid AND i.indisvalid",
    )
    .bind(oid)
    .bind(i32::try_from(attnums.len()).unwrap_or(i32::MAX))
    .bind(attnums)
    .fetch_one(conn)
    .await?;
    Ok(if unique_other_order {
        " in this order: a unique index has these columns in another order; list `key` in the index's column order".into()
    } else if any_index {
        ": it is indexed, but no unique index covers exactly these columns".into()
    } else {
        ": no unique index covers exactly these columns (it is not indexed at all)".into()
    })
}
