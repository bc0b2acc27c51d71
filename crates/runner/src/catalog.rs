//! Catalog snapshots: the schema as sorted text lines, to compare a database before and after
//! (`roundtrip`, tests). Covers tables, columns (type, nullability, default), indexes,
//! constraints, triggers and functions of every user schema except those excluded.

use sqlx::{Connection, PgConnection};

/// One sorted line per catalog object.
///
/// The `pg_get_*def` functions qualify only names outside the search_path, so the snapshot is
/// taken with search_path set to pg_catalog alone: every user object comes out qualified, the
/// same way whatever the session had (a loaded pg_dump file empties it, for one).
pub async fn snapshot(
    conn: &mut PgConnection,
    exclude: &[&str],
) -> Result<Vec<String>, sqlx::Error> {
    let exclude: Vec<String> = exclude.iter().map(|s| (*s).to_owned()).collect();
    let mut transaction = conn
        .begin_with("BEGIN READ ONLY; SET LOCAL search_path = pg_catalog")
        .await?;
    let lines = sqlx::query_scalar(
        "WITH ns AS (
             SELECT oid, nspname FROM pg_namespace
             WHERE nspname <> ALL ($1) AND nspname NOT IN ('pg_catalog', 'information_schema')
               AND nspname NOT LIKE 'pg\\_toast%' AND nspname NOT LIKE 'pg\\_temp%'
         )
         SELECT line FROM (
             SELECT format('table %I.%I (%s)', ns.nspname, c.relname, c.relkind) AS line
               FROM pg_class c JOIN ns ON ns.oid = c.relnamespace WHERE c.relkind IN ('r', 'p', 'v', 'm', 'S')
             UNION ALL
             SELECT format('column %I.%I.%I %s %s default %s', ns.nspname, c.relname, a.attname,
                           format_type(a.atttypid, a.atttypmod),
                           CASE WHEN a.attnotnull THEN 'not null' ELSE 'null' END,
                           coalesce(pg_get_expr(d.adbin, d.adrelid), '-'))
               FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN ns ON ns.oid = c.relnamespace
               LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
               WHERE c.relkind IN ('r', 'p', 'v', 'm') AND a.attnum > 0 AND NOT a.attisdropped
             UNION ALL
             SELECT format('index %s valid=%s', pg_get_indexdef(i.indexrelid), i.indisvalid)
               FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid JOIN ns ON ns.oid = c.relnamespace
             UNION ALL
             SELECT format('constraint %I on %s: %s', con.conname, con.conrelid::regclass, pg_get_constraintdef(con.oid))
               FROM pg_constraint con JOIN ns ON ns.oid = con.connamespace
             UNION ALL
             SELECT format('trigger %s', pg_get_triggerdef(t.oid))
               FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid JOIN ns ON ns.oid = c.relnamespace
               WHERE NOT t.tgisinternal
             UNION ALL
             SELECT format('function %s', pg_get_functiondef(p.oid))
               FROM pg_proc p JOIN ns ON ns.oid = p.pronamespace WHERE p.prokind IN ('f', 'p')
         ) s ORDER BY line",
    )
    .bind(exclude)
    .fetch_all(&mut *transaction)
    .await?;
    transaction.rollback().await?;
    Ok(lines)
}

/// Lines only in `before` (`- …`) and only in `after` (`+ …`).
pub fn diff(before: &[String], after: &[String]) -> Vec<String> {
    let gone = before
        .iter()
        .filter(|l| !after.contains(l))
        .map(|l| format!("- {l}"));
    let added = after
        .iter()
        .filter(|l| !before.contains(l))
        .map(|l| format!("+ {l}"));
    gone.chain(added).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diff_shows_both_sides() {
        let before = vec!["table a".to_owned(), "column a.x".to_owned()];
        let after = vec!["table a".to_owned(), "column a.y".to_owned()];
        assert_eq!(diff(&before, &after), vec!["- column a.x", "+ column a.y"]);
        assert!(diff(&before, &before).is_empty());
    }
}
