//! A copy job's target, checked against the catalog: which target columns get which source
//! values, the target key that says whether a row was copied, and whether the insert must
//! override an identity column.
//!
//! The key matters twice: `ON CONFLICT` needs it to skip (or update) rows a mirroring trigger
//! already wrote, and verification looks each source row up by it in the target.

use sluice_common::ident::{Ident, QualifiedName};
use sqlx::PgConnection;

use crate::job::{CopySpec, OnConflict};

/// A copy target, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyTarget {
    pub table: QualifiedName,
    /// Target columns, in insert order.
    pub columns: Vec<Ident>,
    /// The source expression of each column.
    pub values: Vec<String>,
    /// The target's unique key: its columns, their types, and the source expressions that fill
    /// them.
    pub key: Vec<KeyPart>,
    /// A column is `GENERATED ALWAYS AS IDENTITY`: the insert says `OVERRIDING SYSTEM VALUE`,
    /// so the copied rows keep their source values.
    pub overriding: bool,
    pub on_conflict: OnConflict,
}

/// One column of the target's unique key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyPart {
    pub column: Ident,
    pub type_name: String,
    pub value: String,
}

/// A target table's column, as the catalog has it.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct TargetColumn {
    pub name: String,
    pub type_name: String,
    /// `attgenerated = 's'`: computed, cannot be inserted.
    pub generated: bool,
    /// `attidentity = 'a'`: `GENERATED ALWAYS AS IDENTITY`.
    pub identity_always: bool,
}

/// Resolves `spec` against the catalog's view of both tables. `unique_keys` are the target's
/// unique keys (column names), the primary key first. Pure, so every case is unit-tested.
pub fn resolve(
    spec: &CopySpec,
    source_columns: &[String],
    target_columns: &[TargetColumn],
    unique_keys: &[Vec<String>],
) -> Result<CopyTarget, String> {
    let into = &spec.into;
    let target = |name: &str| target_columns.iter().find(|c| c.name == name);
    let columns: Vec<Ident> = match &spec.columns {
        Some(columns) => {
            for column in columns {
                match target(column.as_str()) {
                    None => return Err(format!("`columns`: {into} has no column {column}")),
                    Some(c) if c.generated => {
                        return Err(format!(
                            "`columns`: column {column} of {into} is generated; leave it out"
                        ));
                    }
                    Some(_) => {}
                }
            }
            columns.clone()
        }
        None => target_columns
            .iter()
            .filter(|c| !c.generated && source_columns.contains(&c.name))
            .map(|c| Ident::new(c.name.clone()).expect("a catalog name is valid"))
            .collect(),
    };
    if columns.is_empty() {
        return Err(format!(
            "{into} has no column that the source also has; list them in `columns` (and \
             their source expressions in `values`)"
        ));
    }
    let values: Vec<String> = match &spec.values {
        // Comments out: a value cannot comment out the rest of the batch's statement.
        Some(values) => values.iter().map(|v| crate::fragment::inline(v)).collect(),
        None => {
            if let Some(missing) = columns
                .iter()
                .find(|c| !source_columns.iter().any(|s| s == c.as_str()))
            {
                return Err(format!(
                    "`columns`: the source table has no column {missing}; give its value in \
                     `values`"
                ));
            }
            columns.iter().map(Ident::quoted).collect()
        }
    };
    let key = unique_keys
        .iter()
        .find(|key| key.iter().all(|k| columns.iter().any(|c| c.as_str() == k)))
        .ok_or_else(|| {
            format!(
                "{into} has no primary key or unique index whose columns are all copied: the \
                 copy needs one to skip rows that are already there and to verify that every \
                 row arrived; copy its key columns (or add a unique index)"
            )
        })?;
    let key = key
        .iter()
        .map(|name| {
            let at = columns
                .iter()
                .position(|c| c.as_str() == name)
                .expect("checked");
            KeyPart {
                column: columns[at].clone(),
                type_name: target(name).expect("a target column").type_name.clone(),
                value: values[at].clone(),
            }
        })
        .collect();
    let overriding = columns
        .iter()
        .any(|c| target(c.as_str()).is_some_and(|t| t.identity_always));
    Ok(CopyTarget {
        table: into.clone(),
        columns,
        values,
        key,
        overriding,
        on_conflict: spec.on_conflict,
    })
}

/// Reads both tables' columns and the target's unique keys, then [`resolve`]s.
pub async fn inspect(
    conn: &mut PgConnection,
    source: &QualifiedName,
    spec: &CopySpec,
) -> Result<CopyTarget, CopyProblem> {
    let exists: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind IN ('r', 'p'))",
    )
    .bind(spec.into.schema.as_str())
    .bind(spec.into.name.as_str())
    .fetch_one(&mut *conn)
    .await
    .map_err(CopyProblem::Query)?;
    if !exists {
        return Err(CopyProblem::Invalid(format!(
            "`into`: table {} does not exist (or this role cannot see it); create it in the \
             expand migration first",
            spec.into
        )));
    }
    let source_columns: Vec<String> = sqlx::query_scalar(
        "SELECT attname::text FROM pg_attribute WHERE attrelid = to_regclass($1) \
         AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
    )
    .bind(source.to_string())
    .fetch_all(&mut *conn)
    .await
    .map_err(CopyProblem::Query)?;
    let target_columns: Vec<TargetColumn> = sqlx::query_as(
        "SELECT attname::text AS name, format_type(atttypid, atttypmod) AS type_name, \
                attgenerated <> '' AS generated, attidentity = 'a' AS identity_always \
         FROM pg_attribute WHERE attrelid = to_regclass($1) AND attnum > 0 AND NOT attisdropped \
         ORDER BY attnum",
    )
    .bind(spec.into.to_string())
    .fetch_all(&mut *conn)
    .await
    .map_err(CopyProblem::Query)?;
    // Valid, non-partial unique indexes on plain columns, the primary key first.
    let unique_keys: Vec<Vec<String>> = sqlx::query_scalar(
        "SELECT array_agg(a.attname::text ORDER BY k.ord) \
         FROM pg_index i \
         CROSS JOIN LATERAL unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord) \
         JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum \
         WHERE i.indrelid = to_regclass($1) AND i.indisunique AND i.indisvalid \
           AND i.indpred IS NULL AND i.indexprs IS NULL AND k.ord <= i.indnkeyatts \
         GROUP BY i.indexrelid, i.indisprimary ORDER BY i.indisprimary DESC, i.indexrelid",
    )
    .bind(spec.into.to_string())
    .fetch_all(&mut *conn)
    .await
    .map_err(CopyProblem::Query)?;
    resolve(spec, &source_columns, &target_columns, &unique_keys).map_err(CopyProblem::Invalid)
}

/// Why a copy's target cannot be used.
#[derive(Debug)]
pub enum CopyProblem {
    /// The spec and the target table do not fit: the operator's to fix.
    Invalid(String),
    /// Reading the catalog failed.
    Query(sqlx::Error),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn column(name: &str, type_name: &str) -> TargetColumn {
        TargetColumn {
            name: name.into(),
            type_name: type_name.into(),
            generated: false,
            identity_always: false,
        }
    }

    fn spec(columns: Option<&[&str]>, values: Option<&[&str]>) -> CopySpec {
        let public = Ident::new("public").unwrap();
        CopySpec {
            into: QualifiedName::parse("accounts_new", &public).unwrap(),
            columns: columns.map(|c| c.iter().map(|c| Ident::parse(c).unwrap()).collect()),
            values: values.map(|v| v.iter().map(|v| (*v).to_owned()).collect()),
            on_conflict: OnConflict::Skip,
        }
    }

    fn names(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn defaults_to_the_shared_columns_in_target_order() {
        let target = [
            column("id", "bigint"),
            column("email", "text"),
            TargetColumn {
                generated: true,
                ..column("email_lower", "text")
            },
            column("note", "text"),
        ];
        let resolved = resolve(
            &spec(None, None),
            &names(&["email", "id", "legacy"]),
            &target,
            &[names(&["id"])],
        )
        .unwrap();
        let columns: Vec<&str> = resolved.columns.iter().map(Ident::as_str).collect();
        assert_eq!(
            columns,
            ["id", "email"],
            "generated and target-only columns left out"
        );
        assert_eq!(resolved.values, ["\"id\"", "\"email\""]);
        assert_eq!(resolved.key[0].value, "\"id\"");
        assert_eq!(resolved.key[0].type_name, "bigint");
        assert!(!resolved.overriding);
    }

    #[test]
    fn values_fill_the_key_and_identity_columns_are_overridden() {
        let target = [
            TargetColumn {
                identity_always: true,
                ..column("id", "bigint")
            },
            column("tenant", "uuid"),
        ];
        let resolved = resolve(
            &spec(
                Some(&["tenant", "id"]),
                Some(&["tenant_id::uuid", "id::bigint"]),
            ),
            &names(&["id", "tenant_id"]),
            &target,
            &[names(&["tenant", "id"])],
        )
        .unwrap();
        assert!(resolved.overriding);
        let key: Vec<(&str, &str)> = resolved
            .key
            .iter()
            .map(|k| (k.column.as_str(), k.value.as_str()))
            .collect();
        assert_eq!(key, [("tenant", "tenant_id::uuid"), ("id", "id::bigint")]);
    }

    #[test]
    fn says_what_does_not_fit() {
        let target = [column("id", "bigint"), column("body", "text")];
        let source = names(&["id", "body"]);
        let keys = [names(&["id"])];
        let error = |spec: CopySpec, keys: &[Vec<String>]| {
            resolve(&spec, &source, &target, keys).unwrap_err()
        };
        assert!(error(spec(Some(&["nope"]), None), &keys).contains("has no column \"nope\""));
        assert!(
            error(spec(Some(&["body"]), None), &keys).contains("no primary key or unique index"),
            "the key is not copied"
        );
        assert!(error(spec(None, None), &[]).contains("no primary key or unique index"));
        let other_source = names(&["x"]);
        assert!(
            resolve(&spec(None, None), &other_source, &target, &keys)
                .unwrap_err()
                .contains("no column that the source also has")
        );
        let renamed = [column("id", "bigint"), column("text", "text")];
        assert!(
            resolve(&spec(Some(&["id", "text"]), None), &source, &renamed, &keys)
                .unwrap_err()
                .contains("the source table has no column \"text\"")
        );
    }
}
