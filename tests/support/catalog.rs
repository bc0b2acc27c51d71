//! A text snapshot of a schema's catalog, to compare schemas before and after.

use sqlx::PgConnection;

/// Tables, columns (type, nullability, default), indexes, constraints, triggers and functions
/// of `schema`, one sorted line each.
pub async fn snapshot(conn: &mut PgConnection, schema: &str) -> Vec<String> {
    sqlx::query_scalar(
        "SELECT line FROM (
            SELECT format('table %s', c.relname) AS line FROM pg_class c
              WHERE c.relnamespace = (SELECT oid FROM pg_namespace WHERE nspname = $1) AND c.relkind IN ('r', 'p', 'v', 'm')
            UNION ALL
            SELECT format('column %s.%s %s %s default %s', c.relname, a.attname,
                          format_type(a.atttypid, a.atttypmod),
                          CASE WHEN a.attnotnull THEN 'not null' ELSE 'null' END,
                          pg_get_expr(d.adbin, d.adrelid))
              FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
              LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
              WHERE c.relnamespace = (SELECT oid FROM pg_namespace WHERE nspname = $1) AND c.relkind IN ('r', 'p')
                AND a.attnum > 0 AND NOT a.attisdropped
            UNION ALL
            SELECT format('index %s valid=%s', pg_get_indexdef(i.indexrelid), i.indisvalid)
              FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
              WHERE c.relnamespace = (SELECT oid FROM pg_namespace WHERE nspname = $1)
            UNION ALL
            SELECT format('constraint %s on %s: %s', conname, conrelid::regclass, pg_get_constraintdef(oid))
              FROM pg_constraint WHERE connamespace = (SELECT oid FROM pg_namespace WHERE nspname = $1)
            UNION ALL
            SELECT format('trigger %s', pg_get_triggerdef(t.oid))
              FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
              WHERE c.relnamespace = (SELECT oid FROM pg_namespace WHERE nspname = $1) AND NOT t.tgisinternal
            UNION ALL
            SELECT format('function %s', pg_get_functiondef(p.oid))
              FROM pg_proc p WHERE p.pronamespace = (SELECT oid FROM pg_namespace WHERE nspname = $1)
         ) s ORDER BY line",
    )
    .bind(schema)
    .fetch_all(conn)
    .await
    .expect("catalog snapshot")
}
