//! Scaffolding for the common zero-downtime changes: the expand migration (new shape plus the
//! trigger that dual-writes), the backfill job, and the contract migration gated on it. Pure:
//! the files are returned as text for `sluice new --pattern` to write; engineers edit them.

mod copy_table;

use sluice_common::ident::{Ident, QualifiedName};
use sluice_common::jobspec::{JobFile, defaults};

/// The changes sluice scaffolds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pattern {
    /// A new column computed from the row: `--column`, `--type`, `--expression`.
    AddColumn,
    /// `--column` becomes `--to`: `--type` is the column's type.
    RenameColumn,
    /// `--column` gets `--type` (converted with `--expression`, default `column::type`).
    ChangeType,
    /// `--table` is copied into a new table `--to`, which then replaces it.
    CopyTable,
}

/// What the engineer asked for, validated: the change's name (its migrations' and its job's),
/// the table and its unique key, and what the pattern needs.
#[derive(Debug, Clone)]
pub struct Change {
    pub name: String,
    pub table: QualifiedName,
    /// The table's unique key, for the backfill.
    pub key: Vec<Ident>,
    pub edit: Edit,
}

/// Each pattern with what it takes (`None`: not given, which `render` names).
#[derive(Debug, Clone)]
pub enum Edit {
    /// A new column and its value, written in terms of the row.
    AddColumn {
        column: Ident,
        type_name: String,
        expression: Option<String>,
    },
    /// `column` (of `type_name`) becomes `to`.
    RenameColumn {
        column: Ident,
        type_name: String,
        to: Option<Ident>,
    },
    /// `column` gets `type_name`, converted with `expression` (default `column::type`).
    ChangeType {
        column: Ident,
        type_name: String,
        expression: Option<String>,
    },
    /// The table is copied into `into`, which then replaces it.
    CopyTable { into: Option<QualifiedName> },
}

impl Edit {
    pub fn pattern(&self) -> Pattern {
        match self {
            Self::AddColumn { .. } => Pattern::AddColumn,
            Self::RenameColumn { .. } => Pattern::RenameColumn,
            Self::ChangeType { .. } => Pattern::ChangeType,
            Self::CopyTable { .. } => Pattern::CopyTable,
        }
    }
}

/// The three files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Files {
    pub expand: String,
    pub job: String,
    pub contract: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("--pattern {pattern}: {message}")]
pub struct ScaffoldError {
    pub pattern: &'static str,
    pub message: String,
}

impl Pattern {
    pub fn name(self) -> &'static str {
        match self {
            Self::AddColumn => "add-column",
            Self::RenameColumn => "rename-column",
            Self::ChangeType => "change-type",
            Self::CopyTable => "copy-table",
        }
    }
}

/// Renders the files of `change`.
pub fn render(change: &Change) -> Result<Files, ScaffoldError> {
    let fail = |message: &str| ScaffoldError {
        pattern: change.edit.pattern().name(),
        message: message.to_owned(),
    };
    let typed = |type_name: &str| {
        if type_name.trim().is_empty() || type_name.contains(';') {
            return Err(fail("--type must be a column type, e.g. text or bigint"));
        }
        Ok(())
    };
    let parts = match &change.edit {
        Edit::CopyTable { into } => {
            let into = into
                .as_ref()
                .ok_or_else(|| fail("needs --to, the new table, e.g. public.accounts_new"))?;
            if into == &change.table {
                return Err(fail("--to must name another table than --table"));
            }
            return Ok(copy_table::render(change, into));
        }
        Edit::AddColumn {
            column,
            type_name,
            expression,
        } => {
            typed(type_name)?;
            let expression = expression.clone().ok_or_else(|| {
                fail("needs --expression, the new column's value, e.g. \"lower(email)\"")
            })?;
            add_column(change, &Column::new(column, type_name), &expression)
        }
        Edit::RenameColumn {
            column,
            type_name,
            to,
        } => {
            typed(type_name)?;
            let to = to
                .clone()
                .ok_or_else(|| fail("needs --to, the column's new name"))?;
            rename_column(change, &Column::new(column, type_name), &to)
        }
        Edit::ChangeType {
            column,
            type_name,
            expression,
        } => {
            typed(type_name)?;
            let expression = expression
                .clone()
                .unwrap_or_else(|| format!("{column}::{type_name}"));
            change_type(change, &Column::new(column, type_name), &expression)
        }
    };
    let spec = JobFile {
        set: Some(format!("{} = {}", parts.target, parts.value)),
        where_: Some(parts.needs_work.clone()),
        ..job_base(change)
    };
    Ok(Files {
        expand: parts.expand,
        job: job_file(
            &format!(
                "fills {}.{} for rows written before the expand migration's\n\
                 # trigger existed",
                change.table, parts.target
            ),
            change,
            &spec,
        ),
        contract: parts.contract,
    })
}

/// The column of a column pattern, and its (new) type.
struct Column<'a> {
    name: &'a Ident,
    type_name: &'a str,
}

impl<'a> Column<'a> {
    fn new(name: &'a Ident, type_name: &'a str) -> Self {
        Self { name, type_name }
    }
}

struct Parts {
    expand: String,
    contract: String,
    /// The column the backfill fills, its value, and the rows that still need it.
    target: Ident,
    value: String,
    needs_work: String,
}

fn names(change: &Change) -> (String, String, String) {
    let table = change.table.to_string();
    let function = Ident::new(format!("{}_sync", change.name))
        .map_or_else(|_| "\"sync\"".to_owned(), |i| i.quoted());
    let qualified_function = format!("{}.{function}", change.table.schema);
    (table, function, qualified_function)
}

fn trigger_sql(change: &Change, events: &str, body: &str) -> String {
    let (table, trigger, function) = names(change);
    format!(
        "CREATE FUNCTION {function}() RETURNS trigger\n    LANGUAGE plpgsql AS $$\nBEGIN\n{body}    RETURN NEW;\nEND\n$$;\n\n\
         CREATE TRIGGER {trigger}\n    BEFORE {events} ON {table}\n    FOR EACH ROW EXECUTE FUNCTION {function}();\n"
    )
}

/// Sets `NEW.target` to `expression`, written in terms of the row's columns: the row is
/// exposed as a one-row table so the expression reads exactly as in the backfill's `set`.
fn row_expression(target: &Ident, expression: &str) -> String {
    format!("    SELECT {expression} INTO NEW.{target} FROM (SELECT (NEW).*) AS \"row\";\n")
}

fn drop_trigger_sql(change: &Change) -> String {
    let (table, trigger, function) = names(change);
    format!(
        "DROP TRIGGER IF EXISTS {trigger} ON {table};\n\nDROP FUNCTION IF EXISTS {function}();\n"
    )
}

fn not_null_sql(change: &Change, column: &Ident) -> String {
    let table = change.table.to_string();
    let check = Ident::new(format!("{}_not_null", change.name))
        .map_or_else(|_| "\"not_null\"".to_owned(), |i| i.quoted());
    format!(
        "-- NOT NULL without a long ACCESS EXCLUSIVE lock (remove these four statements if the\n\
         -- column may stay NULL): the CHECK is added NOT VALID (brief lock, no scan), VALIDATE\n\
         -- scans without blocking writes, SET NOT NULL then trusts the validated CHECK (no scan,\n\
         -- PostgreSQL 12+), and the CHECK goes.\n\
         ALTER TABLE {table} ADD CONSTRAINT {check} CHECK ({column} IS NOT NULL) NOT VALID;\n\n\
         ALTER TABLE {table} VALIDATE CONSTRAINT {check};\n\n\
         ALTER TABLE {table} ALTER COLUMN {column} SET NOT NULL;\n\n\
         ALTER TABLE {table} DROP CONSTRAINT IF EXISTS {check};\n\n"
    )
}

/// The approval a contract needs to drop the old column: written by the scaffold, to be
/// confirmed (or its reason rewritten) by the engineer in review.
fn drop_approval(old: &Ident, new: &Ident) -> String {
    format!(
        "-- sluice:approve ban-drop-column reason: {old} was replaced by {new}, kept in sync by the \
         expand trigger and backfilled; no deployed application version reads {old} (confirm in review)\n"
    )
}

fn contract_header(change: &Change, what: &str) -> String {
    format!(
        "-- Contract ({pattern}): {what}\n\
         --\n\
         -- sluice runs this only once the backfill job {name} is complete and verified.\n\
         -- Deploy the application version that no longer needs the old shape first.\n\
         -- No transaction: each step holds its lock for itself alone, guarded by lock_timeout.\n\
         --\n\
         -- sluice:requires-backfill {name}\n\
         -- sluice:no-transaction\n\
         -- sluice:statement-timeout 1h\n\n",
        pattern = change.edit.pattern().name(),
        name = change.name
    )
}

fn add_column(change: &Change, column: &Column<'_>, expression: &str) -> Parts {
    let (table, ty, column) = (change.table.to_string(), column.type_name, column.name);
    let expand = format!(
        "-- Expand (add-column): {table}.{column} {ty} = {expression}\n\
         --\n\
         -- The column is added nullable and without a default: a catalog-only change, its\n\
         -- brief ACCESS EXCLUSIVE lock guarded by lock_timeout, no table rewrite. The trigger\n\
         -- computes it for every row the running application writes, so only rows that existed\n\
         -- before this migration are left for the backfill job {name}.\n\n\
         ALTER TABLE {table} ADD COLUMN {column} {ty};\n\n{trigger}",
        name = change.name,
        trigger = trigger_sql(
            change,
            "INSERT OR UPDATE",
            &row_expression(column, expression)
        ),
    );
    let contract = format!(
        "{}{}-- The application writes the column itself now: the trigger goes.\n{}",
        contract_header(
            change,
            &format!("{table}.{column} becomes NOT NULL; the sync trigger goes.")
        ),
        not_null_sql(change, column),
        drop_trigger_sql(change)
    );
    Parts {
        expand,
        contract,
        target: column.clone(),
        value: expression.to_owned(),
        needs_work: format!("{column} IS DISTINCT FROM ({expression})"),
    }
}

fn rename_column(change: &Change, column: &Column<'_>, to: &Ident) -> Parts {
    let (table, ty, old) = (change.table.to_string(), column.type_name, column.name);
    let body = format!(
        "    -- Old application versions write {old}, new ones {to}: keep both equal.\n\
         \x20   IF TG_OP = 'INSERT' THEN\n\
         \x20       NEW.{to} := coalesce(NEW.{to}, NEW.{old});\n\
         \x20       NEW.{old} := coalesce(NEW.{old}, NEW.{to});\n\
         \x20   ELSIF NEW.{to} IS DISTINCT FROM OLD.{to} THEN\n\
         \x20       NEW.{old} := NEW.{to};\n\
         \x20   ELSE\n\
         \x20       NEW.{to} := NEW.{old};\n\
         \x20   END IF;\n"
    );
    let expand = format!(
        "-- Expand (rename-column): {table}.{old} becomes {to}\n\
         --\n\
         -- A rename in place would break every running application instance at once. Instead the\n\
         -- new column is added (nullable, no default: no rewrite), a trigger keeps the two equal\n\
         -- whichever one an application version writes, and the backfill job {name} copies\n\
         -- the rows that existed before.\n\n\
         ALTER TABLE {table} ADD COLUMN {to} {ty};\n\n{trigger}",
        name = change.name,
        trigger = trigger_sql(change, "INSERT OR UPDATE", &body),
    );
    let contract = format!(
        "{}{}-- No application version reads {old} any more: the trigger and the old column go.\n{}\n\
         ALTER TABLE {table} DROP COLUMN IF EXISTS {old};\n",
        contract_header(change, &format!("{table}.{old} is gone; {to} replaces it.")).replace(
            "-- sluice:no-transaction\n",
            &format!("-- sluice:no-transaction\n{}", drop_approval(old, to)),
        ),
        not_null_sql(change, to),
        drop_trigger_sql(change)
    );
    Parts {
        expand,
        contract,
        target: to.clone(),
        value: old.to_string(),
        needs_work: format!("{to} IS DISTINCT FROM {old}"),
    }
}

fn change_type(change: &Change, column: &Column<'_>, expression: &str) -> Parts {
    let (table, ty, old) = (change.table.to_string(), column.type_name, column.name);
    let new = Ident::new(format!("{}_new", old.as_str())).unwrap_or_else(|_| old.clone());
    let expand = format!(
        "-- Expand (change-type): {table}.{old} becomes {ty}\n\
         --\n\
         -- ALTER COLUMN ... TYPE rewrites the table under an ACCESS EXCLUSIVE lock. Instead a new\n\
         -- column {new} {ty} is added (no rewrite), the trigger converts every value the\n\
         -- application writes, and the backfill job {name} converts the rows that existed before.\n\n\
         ALTER TABLE {table} ADD COLUMN {new} {ty};\n\n{trigger}",
        name = change.name,
        trigger = trigger_sql(
            change,
            "INSERT OR UPDATE",
            &row_expression(&new, expression)
        ),
    );
    let contract = format!(
        "{}{}-- The application reads and writes {new} now: the trigger and the old column go.\n{}\n\
         ALTER TABLE {table} DROP COLUMN IF EXISTS {old};\n\n\
         -- To give {new} the old name, coordinate a rename with the application separately:\n\
         -- ALTER TABLE {table} RENAME COLUMN {new} TO {old};\n",
        contract_header(change, &format!("{table}.{old} is replaced by {new} {ty}.")),
        not_null_sql(change, &new),
        drop_trigger_sql(change)
    );
    Parts {
        expand,
        contract,
        needs_work: format!("{new} IS DISTINCT FROM ({expression})"),
        value: expression.to_owned(),
        target: new,
    }
}

/// A job spec for `change` with the engine's own defaults written out, so that the operator
/// sees every knob and no value disagrees with what the engine would use; the pattern adds
/// what its batches do.
fn job_base(change: &Change) -> JobFile {
    JobFile {
        name: change.name.clone(),
        table: format!("{}.{}", change.table.schema, change.table.name),
        key: change
            .key
            .iter()
            .map(|k| k.to_string().trim_matches('"').to_owned())
            .collect(),
        batch_size: Some(defaults::BATCH_SIZE),
        min_batch_size: Some(defaults::MIN_BATCH_SIZE),
        max_batch_size: Some(defaults::MAX_BATCH_SIZE),
        target_batch_time: Some(defaults::TARGET_BATCH_TIME),
        max_rows_per_second: Some(defaults::MAX_ROWS_PER_SECOND),
        pause: Some(defaults::PAUSE),
        lock_timeout: Some(defaults::LOCK_TIMEOUT),
        statement_timeout: Some(defaults::STATEMENT_TIMEOUT),
        max_retries: Some(defaults::MAX_RETRIES),
        ..JobFile::default()
    }
}

/// The spec serialised from the job file type itself, under a header saying what it does.
fn job_file(what: &str, change: &Change, spec: &JobFile) -> String {
    let body = toml::to_string(spec).unwrap_or_else(|e| format!("# cannot write the spec: {e}\n"));
    format!(
        "# Backfill for {name}: {what}. The contract migration waits until this job is\n\
         # complete and verified.\n\
         {body}",
        name = change.name,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(edit: Edit) -> Change {
        let public = Ident::new("public").unwrap();
        Change {
            name: "accounts_email_normalized".into(),
            table: QualifiedName::parse("accounts", &public).unwrap(),
            key: vec![Ident::parse("id").unwrap()],
            edit,
        }
    }

    fn ident(text: &str) -> Ident {
        Ident::parse(text).unwrap()
    }

    fn add_column(expression: Option<&str>, type_name: &str) -> Change {
        change(Edit::AddColumn {
            column: ident("email_normalized"),
            type_name: type_name.into(),
            expression: expression.map(str::to_owned),
        })
    }

    #[test]
    fn add_column_writes_the_three_steps() {
        let files = render(&add_column(Some("lower(email)"), "text")).unwrap();
        assert!(
            files.expand.contains(
                "ALTER TABLE \"public\".\"accounts\" ADD COLUMN \"email_normalized\" text;"
            )
        );
        assert!(files.expand.contains("SELECT lower(email) INTO NEW.\"email_normalized\" FROM (SELECT (NEW).*) AS \"row\";"), "{}", files.expand);
        assert!(
            files
                .expand
                .contains("BEFORE INSERT OR UPDATE ON \"public\".\"accounts\"")
        );
        assert!(
            files
                .contract
                .contains("-- sluice:requires-backfill accounts_email_normalized")
        );
        assert!(
            files
                .contract
                .contains("CHECK (\"email_normalized\" IS NOT NULL) NOT VALID")
        );
        assert!(files.contract.contains("VALIDATE CONSTRAINT"));
        assert!(files.contract.contains("SET NOT NULL"));
        assert!(files.contract.contains("DROP TRIGGER IF EXISTS"));
        let job = spec(&files.job);
        assert_eq!(
            job.set.as_deref(),
            Some("\"email_normalized\" = lower(email)")
        );
        assert_eq!(job.key, ["id"]);
        // The engine's own defaults, never a number of the scaffold's.
        assert_eq!(job.max_batch_size, Some(defaults::MAX_BATCH_SIZE));
        assert_eq!(job.lock_timeout, Some(defaults::LOCK_TIMEOUT));
    }

    /// The scaffolded job spec as the engine reads it.
    fn spec(text: &str) -> JobFile {
        toml::from_str(text).unwrap_or_else(|e| panic!("{e}\n{text}"))
    }

    #[test]
    fn rename_column_syncs_both_ways_and_drops_the_old_column() {
        let c = change(Edit::RenameColumn {
            column: ident("email"),
            type_name: "text".into(),
            to: Some(ident("contact_email")),
        });
        let files = render(&c).unwrap();
        assert!(
            files.expand.contains(
                "NEW.\"contact_email\" := coalesce(NEW.\"contact_email\", NEW.\"email\");"
            )
        );
        assert!(files.contract.contains("DROP COLUMN IF EXISTS \"email\""));
        assert_eq!(
            spec(&files.job).where_.as_deref(),
            Some("\"contact_email\" IS DISTINCT FROM \"email\"")
        );
    }

    #[test]
    fn change_type_adds_a_converted_column() {
        let c = change(Edit::ChangeType {
            column: ident("amount"),
            type_name: "bigint".into(),
            expression: None,
        });
        let files = render(&c).unwrap();
        assert!(files.expand.contains("ADD COLUMN \"amount_new\" bigint;"));
        assert!(files.expand.contains("SELECT \"amount\"::bigint INTO NEW.\"amount_new\" FROM (SELECT (NEW).*) AS \"row\";"), "{}", files.expand);
        assert!(files.contract.contains("DROP COLUMN IF EXISTS \"amount\""));
    }

    #[test]
    fn missing_options_say_what_is_needed() {
        let c = add_column(None, "text");
        assert!(render(&c).unwrap_err().to_string().contains("--expression"));
        let rename = change(Edit::RenameColumn {
            column: ident("email"),
            type_name: "text".into(),
            to: None,
        });
        assert!(render(&rename).unwrap_err().to_string().contains("--to"));
        let bad_type = add_column(Some("lower(email)"), "text; DROP TABLE x");
        assert!(render(&bad_type).is_err());
    }
}
