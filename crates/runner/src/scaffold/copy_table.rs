//! `--pattern copy-table`: a table copied into a new one that then takes its place (a new key
//! type, partitioning, a cleaned-up shape). The expand migration creates the new table and a
//! trigger that mirrors every write of the old one into it; the copy job copies the rows that
//! existed before; the contract migration ends the mirror and swaps the names in one
//! transaction, so the application, which names the table, goes on writing the new one.

use sluice_common::ident::{Ident, QualifiedName};
use sluice_common::jobspec::{ActionKind, JobFile, OnConflict};

use super::{Change, Files, job_base, job_file};

pub(super) fn render(change: &Change, into: &QualifiedName) -> Files {
    // The trigger and its function share a name; the function lives in the table's schema.
    let trigger = Ident::new(format!("{}_mirror", change.name))
        .map_or_else(|_| "\"mirror\"".to_owned(), |i| i.quoted());
    let function = format!("{}.{trigger}", change.table.schema);
    let spec = JobFile {
        action: Some(ActionKind::Copy),
        into: Some(format!("{}.{}", into.schema, into.name)),
        on_conflict: Some(OnConflict::Skip),
        ..job_base(change)
    };
    Files {
        expand: expand(change, into, &function, &trigger),
        job: job_file(
            &format!(
                "copies the rows of {} that existed before the expand migration's\n\
                 # mirroring trigger into {into} (rows the trigger wrote since are skipped)",
                change.table
            ),
            change,
            &spec,
        ),
        contract: contract(change, into, &function, &trigger),
    }
}

/// `("id") = (OLD."id")`: the row of the new table with the old row's key.
fn key_match(change: &Change, row: &str) -> String {
    let columns: Vec<String> = change.key.iter().map(Ident::quoted).collect();
    let values: Vec<String> = change
        .key
        .iter()
        .map(|k| format!("{row}.{}", k.quoted()))
        .collect();
    format!("({}) = ({})", columns.join(", "), values.join(", "))
}

fn expand(change: &Change, into: &QualifiedName, function: &str, trigger: &str) -> String {
    let table = &change.table;
    format!(
        "-- Expand (copy-table): {table} is copied into {into}, which replaces it in the contract\n\
         -- step.\n\
         --\n\
         -- The new table starts as the old one's twin (columns in the same order, defaults,\n\
         -- constraints, indexes, identity); change its shape here before applying, keeping the\n\
         -- columns in the same order (the trigger copies whole rows), or list them in the job's\n\
         -- `columns` and `values` and in the trigger's INSERT. It is created empty, so its\n\
         -- indexes cost nothing now.\n\
         --\n\
         -- From this migration on, every row the application writes to {table} is mirrored into\n\
         -- {into} by the trigger in the same transaction; the copy job {name} copies the rows\n\
         -- that existed before, skipping those the trigger already wrote.\n\n\
         CREATE TABLE {into} (LIKE {table} INCLUDING ALL);\n\n\
         CREATE FUNCTION {function}() RETURNS trigger\n    LANGUAGE plpgsql AS $$\nBEGIN\n\
         \x20   -- An update may change the key: the row under its old key goes, and comes back\n\
         \x20   -- under the new one.\n\
         \x20   IF TG_OP IN ('UPDATE', 'DELETE') THEN\n\
         \x20       DELETE FROM {into} WHERE {old};\n\
         \x20   END IF;\n\
         \x20   IF TG_OP IN ('INSERT', 'UPDATE') THEN\n\
         \x20       INSERT INTO {into} OVERRIDING SYSTEM VALUE SELECT (NEW).*;\n\
         \x20   END IF;\n\
         \x20   RETURN NULL;\n\
         END\n$$;\n\n\
         CREATE TRIGGER {trigger}\n    AFTER INSERT OR UPDATE OR DELETE ON {table}\n    \
         FOR EACH ROW EXECUTE FUNCTION {function}();\n",
        name = change.name,
        old = key_match(change, "OLD"),
    )
}

fn contract(change: &Change, into: &QualifiedName, function: &str, trigger: &str) -> String {
    let table = &change.table;
    let retired = Ident::new(format!("{}_retired", table.name.as_str()))
        .map_or_else(|_| "\"retired\"".to_owned(), |i| i.quoted());
    let into_literal = sluice_common::ident::quote_literal(&into.to_string());
    format!(
        "-- Contract (copy-table): {into} takes the place of {table}.\n\
         --\n\
         -- sluice runs this only once the copy job {name} is complete and verified: every row\n\
         -- of {table} is in {into}, and the trigger has mirrored every write since.\n\
         -- One transaction: the mirror ends and the names swap at the same instant, so no write\n\
         -- lands in between; the application, which names the table, writes the new one from\n\
         -- the next statement on. The renames take brief ACCESS EXCLUSIVE locks, guarded by\n\
         -- lock_timeout and retried.\n\
         --\n\
         -- Before applying: foreign keys that reference {table} follow it under its new name\n\
         -- {retired}; re-point them to {into} first (ADD CONSTRAINT ... NOT VALID, then\n\
         -- VALIDATE). A sequence the old table owns (serial) still feeds the new table's\n\
         -- default; move it (ALTER SEQUENCE ... OWNED BY) before the old table is dropped.\n\
         --\n\
         -- sluice:requires-backfill {name}\n\
         -- sluice:approve renaming-table reason: the copy job verified that {into} holds every \
         row of {table}, and the trigger mirrored every write since; the application names the \
         table and continues on the new one (confirm in review)\n\n\
         DROP TRIGGER {trigger} ON {table};\n\n\
         DROP FUNCTION {function}();\n\n\
         -- Identity columns of the new table continue after the copied values.\n\
         DO $$\n\
         DECLARE\n\
         \x20   col text;\n\
         BEGIN\n\
         \x20   FOR col IN SELECT attname FROM pg_attribute\n\
         \x20              WHERE attrelid = {into_literal}::regclass AND attidentity <> '' AND NOT attisdropped\n\
         \x20   LOOP\n\
         \x20       EXECUTE format('SELECT setval(pg_get_serial_sequence(%L, %L), coalesce(max(%I), 0) + 1, false) FROM %s',\n\
         \x20                      {into_literal}, col, col, {into_literal});\n\
         \x20   END LOOP;\n\
         END\n\
         $$;\n\n\
         ALTER TABLE {table} RENAME TO {retired};\n\n\
         ALTER TABLE {into} RENAME TO {short};\n\n\
         -- The old rows stay in {schema}.{retired} until nothing needs them; drop it in a later\n\
         -- migration (DROP TABLE needs an approval).\n",
        name = change.name,
        schema = table.schema,
        short = table.name,
    )
}

#[cfg(test)]
mod tests {
    use super::super::{Edit, render};
    use super::*;

    fn change() -> Change {
        let public = Ident::new("public").unwrap();
        Change {
            name: "accounts_copy".into(),
            table: QualifiedName::parse("accounts", &public).unwrap(),
            key: vec![Ident::parse("id").unwrap()],
            edit: Edit::CopyTable {
                into: Some(QualifiedName::parse("accounts_new", &public).unwrap()),
            },
        }
    }

    #[test]
    fn mirrors_copies_and_swaps() {
        let files = render(&change()).unwrap();
        assert!(files.expand.contains(
            "CREATE TABLE \"public\".\"accounts_new\" (LIKE \"public\".\"accounts\" INCLUDING ALL);"
        ));
        assert!(
            files
                .expand
                .contains("DELETE FROM \"public\".\"accounts_new\" WHERE (\"id\") = (OLD.\"id\");"),
            "{}",
            files.expand
        );
        assert!(
            files
                .expand
                .contains("AFTER INSERT OR UPDATE OR DELETE ON \"public\".\"accounts\"")
        );
        let job: JobFile = toml::from_str(&files.job).unwrap();
        assert_eq!(job.action, Some(ActionKind::Copy));
        assert!(job.into.as_deref().unwrap().contains("accounts_new"));
        assert_eq!(job.set, None);
        assert!(
            files
                .contract
                .contains("-- sluice:requires-backfill accounts_copy")
        );
        assert!(
            !files.contract.contains("no-transaction"),
            "the swap is atomic"
        );
        let swap = files
            .contract
            .find("RENAME TO \"accounts_retired\"")
            .expect("the old table is renamed");
        let drop = files.contract.find("DROP TRIGGER").unwrap();
        assert!(
            drop < swap,
            "the mirror ends before the swap, in the same transaction"
        );
        assert!(
            files
                .contract
                .contains("ALTER TABLE \"public\".\"accounts_new\" RENAME TO \"accounts\";")
        );
    }

    #[test]
    fn needs_another_table() {
        let mut c = change();
        c.edit = Edit::CopyTable { into: None };
        assert!(render(&c).unwrap_err().to_string().contains("--to"));
        c.edit = Edit::CopyTable {
            into: Some(c.table.clone()),
        };
        assert!(
            render(&c)
                .unwrap_err()
                .to_string()
                .contains("another table")
        );
    }
}
