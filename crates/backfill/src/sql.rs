//! The SQL of a job, built once from its checked target. Pure, so the exact text is tested.
//!
//! Keys travel as text (`key::text` out, `$n::type` in), which round-trips every key type and
//! keeps composite keys simple. Ranges are keyset ranges over the unique key: (cursor, end].

use sluice_common::ident::quote_literal;

use sluice_common::ident::Ident;

use crate::catalog::Target;
use crate::copy_target::CopyTarget;
use crate::fragment;
use crate::job::{Action, Job, OnConflict};

/// Every statement a job runs. `*_from` variants have a lower bound (the cursor); the others
/// start at the beginning of the table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobSql {
    /// The greatest key: `$` none.
    pub max_key: String,
    /// The smallest key: `$` none.
    pub min_key: String,
    /// The key `$offset` rows past the start, within the upper bound:
    /// `$1..$k` upper bound, `$k+1` offset.
    pub end_key: String,
    /// Same, after the cursor: `$1..$k` cursor, `$k+1..$2k` upper bound, `$2k+1` offset.
    pub end_key_from: String,
    /// The batch's statement alone (for `plan`'s EXPLAIN): `$1..$k` end key.
    pub batch: String,
    /// The batch after the cursor: `$1..$k` cursor, `$k+1..$2k` end key.
    pub batch_from: String,
    /// Keys in a range (the size of a short last batch): parameters as for the batches.
    pub count_range: String,
    pub count_range_from: String,
    /// Rows of a range that verification finds: those still matching `where` (update,
    /// delete), or source rows matching it that are not in the target (copy). Parameters as for
    /// the batches; `None`: nothing to verify (an update without `where`).
    pub count_remaining: Option<String>,
    pub count_remaining_from: Option<String>,
    /// The first such key.
    pub first_remaining: Option<String>,
    pub first_remaining_from: Option<String>,
    /// Rows no range holds because a key column is NULL (its NOT NULL was dropped while the
    /// job ran), among those the job would change: no parameters.
    pub count_null_keys: String,
    /// Split keys for `$N` ranges (the last parameter): keys at even quantiles of a
    /// `TABLESAMPLE SYSTEM ($1)` sample of the keys below the upper bound ($2..), picked by
    /// the server so that only the split keys cross the wire.
    pub split_keys: String,
    /// Pieces of the per-batch statements, which carry their values as quoted literals.
    literal: Literal,
}

/// What the batch statements are built from.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Literal {
    table: String,
    dml: Dml,
    filter: String,
    /// Quoted column names and their types.
    key: Vec<(String, String)>,
    jobs_table: String,
    ranges_table: String,
}

/// The statement a batch runs over the rows of its range, by action.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Dml {
    Update {
        set: String,
    },
    Delete,
    Copy {
        into: String,
        columns: String,
        values: String,
        overriding: bool,
        on_conflict: String,
    },
}

impl Dml {
    fn of(job: &Job, target: &Target) -> Self {
        match (&job.action, &target.copy) {
            (Action::Update { set }, _) => Self::Update {
                set: fragment::inline(set),
            },
            (Action::Delete, _) => Self::Delete,
            (Action::Copy(_), Some(copy)) => Self::copy(copy),
            (Action::Copy(_), None) => unreachable!("the catalog resolves a copy job's target"),
        }
    }

    fn copy(copy: &CopyTarget) -> Self {
        let list = |items: Vec<String>| items.join(", ");
        let key: Vec<String> = copy.key.iter().map(|k| k.column.quoted()).collect();
        let updates: Vec<String> = copy
            .columns
            .iter()
            .filter(|c| !copy.key.iter().any(|k| &k.column == *c))
            .map(|c| format!("{0} = EXCLUDED.{0}", c.quoted()))
            .collect();
        let on_conflict = match copy.on_conflict {
            OnConflict::Update if !updates.is_empty() => format!(
                "ON CONFLICT ({}) DO UPDATE SET {}",
                list(key),
                list(updates)
            ),
            _ => format!("ON CONFLICT ({}) DO NOTHING", list(key)),
        };
        Self::Copy {
            into: copy.table.to_string(),
            columns: list(copy.columns.iter().map(Ident::quoted).collect()),
            values: list(copy.values.clone()),
            overriding: copy.overriding,
            on_conflict,
        }
    }

    /// The statement over the rows of `table` that satisfy `condition`.
    fn over(&self, table: &str, condition: &str) -> String {
        match self {
            Self::Update { set } => format!("UPDATE {table} SET {set} WHERE {condition}"),
            Self::Delete => format!("DELETE FROM {table} WHERE {condition}"),
            Self::Copy {
                into,
                columns,
                values,
                overriding,
                on_conflict,
            } => format!(
                // FOR SHARE: a row the application deletes or updates while the batch copies it
                // waits for the batch, so that its mirroring trigger then sees (and deletes or
                // replaces) the copy; a row it changed first is copied as changed, or skipped if
                // deleted. Without it a deleted row could be copied after its trigger ran.
                "INSERT INTO {into} ({columns}){} SELECT {values} FROM {table} WHERE {condition} FOR SHARE {on_conflict}",
                if *overriding {
                    " OVERRIDING SYSTEM VALUE"
                } else {
                    ""
                }
            ),
        }
    }
}

/// Whose lease a batch runs under, and the range's upper bound as the worker knows it: the
/// range's row is locked and both are checked in the batch, so a batch whose lease was taken
/// over, or whose range was split meanwhile, changes nothing.
#[derive(Debug, Clone, Copy)]
pub struct LeaseOf<'a> {
    pub job: &'a str,
    pub range_no: i32,
    pub owner: &'a str,
    pub upper: &'a [String],
    /// The range's cursor as last committed (`None` before its first batch): a batch whose
    /// commit was in fact applied, but whose answer was lost with the connection, changes
    /// nothing when it is sent again.
    pub cursor: Option<&'a [String]>,
}

#[derive(Debug, Clone, Copy)]
pub struct Progress<'a> {
    pub lease: LeaseOf<'a>,
    pub cursor: &'a [String],
    pub rows_updated: u64,
    pub rows_scanned: u64,
    /// The batch finishes its range.
    pub last: bool,
    /// How long the lease lasts from this commit.
    pub lease_for: std::time::Duration,
    pub throttled_seconds: f64,
}

impl JobSql {
    /// `jobs_table` is the qualified name of sluice's jobs table.
    pub fn new(job: &Job, target: &Target, jobs_table: &str, ranges_table: &str) -> Self {
        let k = target.key.len();
        let table = target.table.to_string();
        let columns = column_list(target);
        let row = format!("({columns})");
        // Aliased: `ORDER BY "id"` must sort by the column, not by a text output column that
        // would also be called "id".
        let as_text = target
            .key
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{}::text AS key_{}", c.name, i + 1))
            .collect::<Vec<_>>()
            .join(", ");
        let asc = columns.clone();
        let desc = target
            .key
            .iter()
            .map(|c| format!("{} DESC", c.name))
            .collect::<Vec<_>>()
            .join(", ");
        let params = |first: usize| params(target, first);
        // Comments out: a fragment cannot comment out the range and lease conditions after it.
        let condition = job.where_.as_deref().map(fragment::inline);
        let filter = condition
            .as_ref()
            .map(|w| format!(" AND ({w})"))
            .unwrap_or_default();

        let end_key = |lower: &str, upper_first: usize| {
            format!(
                "SELECT {as_text} FROM {table} WHERE {lower}{row} <= {} ORDER BY {asc} LIMIT 1 OFFSET ${}",
                params(upper_first),
                upper_first + k
            )
        };
        let after_cursor = format!("{row} > {} AND ", params(1));
        let range =
            |lower: &str, end_first: usize| format!("{lower}{row} <= {}", params(end_first));
        let remaining = |select: &str, tail: &str, lower: &str, end_first: usize| {
            let range = range(lower, end_first);
            match &target.copy {
                Some(copy) => Some(not_copied(copy, &table, &range, &filter, select, tail)),
                None => condition
                    .as_ref()
                    .map(|w| format!("SELECT {select} FROM {table} WHERE {range} AND ({w}){tail}")),
            }
        };
        let first_tail = format!(" ORDER BY {asc} LIMIT 1");
        let dml = Dml::of(job, target);
        Self {
            literal: Literal {
                table: table.clone(),
                dml: dml.clone(),
                filter: filter.clone(),
                key: target
                    .key
                    .iter()
                    .map(|c| (c.name.quoted(), c.type_name.clone()))
                    .collect(),
                jobs_table: jobs_table.to_owned(),
                ranges_table: ranges_table.to_owned(),
            },
            split_keys: split_keys_sql(&as_text, &columns, &table, &row, &params(2), k + 2),
            count_null_keys: format!(
                "SELECT count(*) FROM {table} WHERE ({}){filter}",
                target
                    .key
                    .iter()
                    .map(|c| format!("{} IS NULL", c.name))
                    .collect::<Vec<_>>()
                    .join(" OR ")
            ),
            max_key: format!("SELECT {as_text} FROM {table} ORDER BY {desc} LIMIT 1"),
            min_key: format!("SELECT {as_text} FROM {table} ORDER BY {asc} LIMIT 1"),
            end_key: end_key("", 1),
            end_key_from: end_key(&after_cursor, k + 1),
            batch: dml.over(&table, &format!("{}{filter}", range("", 1))),
            batch_from: dml.over(&table, &format!("{}{filter}", range(&after_cursor, k + 1))),
            count_range: format!("SELECT count(*) FROM {table} WHERE {}", range("", 1)),
            count_range_from: format!(
                "SELECT count(*) FROM {table} WHERE {}",
                range(&after_cursor, k + 1)
            ),
            count_remaining: remaining("count(*)", "", "", 1),
            count_remaining_from: remaining("count(*)", "", &after_cursor, k + 1),
            first_remaining: remaining(&as_text, &first_tail, "", 1),
            first_remaining_from: remaining(&as_text, &first_tail, &after_cursor, k + 1),
        }
    }
}

impl JobSql {
    /// The batch's statement over the range (cursor, end], values inlined as quoted literals.
    ///
    /// Sent as a simple query together with `BEGIN` and the guards: one round trip, as a
    /// hand-written loop would, where a prepared statement would cost one more.
    pub fn batch_with(
        &self,
        lease: LeaseOf<'_>,
        cursor: Option<&[String]>,
        end: &[String],
    ) -> String {
        let l = &self.literal;
        let row = format!(
            "({})",
            l.key
                .iter()
                .map(|(name, _)| name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
        let lower = cursor
            .map(|c| format!("{row} > {} AND ", self.values(c)))
            .unwrap_or_default();
        // The range's row is locked first: a worker taking over an expired lease waits for
        // this batch, and a batch whose lease was taken over changes nothing.
        let condition = format!(
            "EXISTS (SELECT FROM sluice_lease) AND {lower}{row} <= {}{}",
            self.values(end),
            l.filter
        );
        format!(
            "WITH sluice_lease AS MATERIALIZED (SELECT FROM {} WHERE {} FOR UPDATE) {}",
            l.ranges_table,
            lease_condition(lease),
            l.dml.over(&l.table, &condition)
        )
    }

    /// The range's progress, committed with its batch; returns the job's control request, or
    /// no row when the lease is no longer this worker's (the batch then changed nothing).
    pub fn progress_and_commit(&self, p: Progress<'_>) -> String {
        let cursor = text_array(p.cursor);
        format!(
            "WITH progress AS (UPDATE {} SET cursor = {cursor}, \
             rows_updated = rows_updated + {}, rows_scanned = rows_scanned + {}, batches = batches + 1, \
             throttled_seconds = throttled_seconds + {:.6}, \
             work_seconds = work_seconds + extract(epoch FROM clock_timestamp() - transaction_timestamp())::float8, \
             state = {}, lease_until = now() + interval '{} milliseconds', updated_at = now() \
             WHERE {} RETURNING 1) \
             SELECT control FROM {} WHERE name = {} AND EXISTS (SELECT FROM progress); COMMIT",
            self.literal.ranges_table,
            p.rows_updated,
            p.rows_scanned,
            p.throttled_seconds.max(0.0),
            if p.last { "'done'" } else { "state" },
            p.lease_for.as_millis(),
            lease_condition(p.lease),
            self.literal.jobs_table,
            quote_literal(p.lease.job)
        )
    }

    fn values(&self, values: &[String]) -> String {
        let list: Vec<String> = self
            .literal
            .key
            .iter()
            .zip(values)
            .map(|((_, type_name), value)| format!("{}::{type_name}", quote_literal(value)))
            .collect();
        format!("({})", list.join(", "))
    }
}

/// Source rows of `range` (matching the filter) whose key is not in the copy's target: each
/// row's target key is computed from its source expressions in a derived table first, so that
/// a source column never resolves to the target's column of the same name.
fn not_copied(
    copy: &CopyTarget,
    table: &str,
    range: &str,
    filter: &str,
    select: &str,
    tail: &str,
) -> String {
    let computed: Vec<String> = copy
        .key
        .iter()
        .enumerate()
        .map(|(i, k)| {
            format!(
                "CAST(({}) AS {}) AS sluice_target_{}",
                k.value,
                k.type_name,
                i + 1
            )
        })
        .collect();
    let target_key: Vec<String> = copy
        .key
        .iter()
        .map(|k| format!("sluice_target.{}", k.column.quoted()))
        .collect();
    let source_key: Vec<String> = (1..=copy.key.len())
        .map(|i| format!("sluice_source.sluice_target_{i}"))
        .collect();
    // OFFSET 0 keeps the lookup a probe of the target's key index for each source row: as an
    // anti-join the planner hashes the whole target for every chunk verified.
    format!(
        "SELECT {select} FROM (SELECT *, {} FROM {table} WHERE {range}{filter}) sluice_source \
         WHERE NOT EXISTS (SELECT FROM {} sluice_target WHERE ({}) = ({}) OFFSET 0){tail}",
        computed.join(", "),
        copy.table,
        target_key.join(", "),
        source_key.join(", ")
    )
}

/// A key as a `text[]` literal, as the ranges table stores keys.
fn text_array(key: &[String]) -> String {
    let items: Vec<String> = key.iter().map(|v| quote_literal(v)).collect();
    format!("ARRAY[{}]::text[]", items.join(", "))
}

fn lease_condition(lease: LeaseOf<'_>) -> String {
    let upper = text_array(lease.upper);
    let cursor = lease.cursor.map_or_else(
        || "cursor IS NULL".to_owned(),
        |c| format!("cursor = {}", text_array(c)),
    );
    format!(
        "job = {} AND range_no = {} AND owner = {} AND upper = {upper} AND {cursor}",
        quote_literal(lease.job),
        lease.range_no,
        quote_literal(lease.owner)
    )
}

fn column_list(target: &Target) -> String {
    target
        .key
        .iter()
        .map(|c| c.name.quoted())
        .collect::<Vec<_>>()
        .join(", ")
}

/// `($n::type1, $n+1::type2)`.
/// The sample's rows are numbered in key order (`sluice_index`, from 0); with `n` sampled
/// and `parts = min(ranges - 1, n) + 1`, split `i` (1 to parts - 1) is the row at index
/// `floor(i * n / parts)`. A row is one when `i = ceil(index * parts / n)` gives it back, so
/// each row is checked with arithmetic alone.
fn split_keys_sql(
    as_text: &str,
    columns: &str,
    table: &str,
    row: &str,
    upper: &str,
    ranges_param: usize,
) -> String {
    format!(
        "WITH sluice_sample AS (\
             SELECT {columns}, row_number() OVER (ORDER BY {columns}) - 1 AS sluice_index, \
                    count(*) OVER () AS sluice_sampled \
             FROM {table} TABLESAMPLE SYSTEM ($1::float4) WHERE {row} < {upper}), \
         sluice_parts AS (\
             SELECT *, least(${ranges_param}::int8 - 1, sluice_sampled) + 1 AS sluice_parts \
             FROM sluice_sample), \
         sluice_split AS (\
             SELECT *, (sluice_index * sluice_parts + sluice_sampled - 1) / sluice_sampled AS sluice_split \
             FROM sluice_parts) \
         SELECT {as_text} FROM sluice_split \
         WHERE sluice_split BETWEEN 1 AND sluice_parts - 1 \
           AND sluice_split * sluice_sampled / sluice_parts = sluice_index \
         ORDER BY {columns}"
    )
}

fn params(target: &Target, first: usize) -> String {
    let list: Vec<String> = target
        .key
        .iter()
        .enumerate()
        .map(|(i, c)| format!("${}::{}", first + i, c.type_name))
        .collect();
    format!("({})", list.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::KeyColumn;
    use crate::job::{JobFile, Overrides};
    use sluice_common::ident::Ident;

    const UPPER: &[String] = &[];
    const LEASE: LeaseOf<'static> = LeaseOf {
        job: "j",
        range_no: 0,
        owner: "w",
        upper: UPPER,
        cursor: None,
    };
    const GUARD: &str = "WITH sluice_lease AS MATERIALIZED (SELECT FROM ranges WHERE job = 'j' AND range_no = 0 AND owner = 'w' AND upper = ARRAY[]::text[] AND cursor IS NULL FOR UPDATE)";

    fn job(key: &[&str], where_: Option<&str>) -> Job {
        let file = JobFile {
            name: "j".into(),
            table: "app.items".into(),
            key: key.iter().map(|k| (*k).to_owned()).collect(),
            set: Some("n = n + 1".into()),
            where_: where_.map(str::to_owned),
            batch_size: None,
            min_batch_size: None,
            max_batch_size: None,
            target_batch_time: None,
            max_rows_per_second: None,
            pause: None,
            lock_timeout: None,
            statement_timeout: None,
            max_retries: None,
            ..JobFile::default()
        };
        Job::from_file(file, &Overrides::default()).unwrap()
    }

    fn target(job: &Job, types: &[&str]) -> Target {
        Target {
            table: job.table.clone(),
            key: job
                .key
                .iter()
                .zip(types)
                .map(|(name, t)| KeyColumn {
                    name: name.clone(),
                    type_name: (*t).to_owned(),
                })
                .collect(),
            index: "items_pkey".into(),
            estimated_rows: 0,
            copy: None,
        }
    }

    #[test]
    fn single_column_key() {
        let job = job(&["id"], Some("n < 10"));
        let sql = JobSql::new(
            &job,
            &target(&job, &["bigint"]),
            "\"sluice\".\"backfill_jobs\"",
            "ranges",
        );
        assert_eq!(
            sql.max_key,
            r#"SELECT "id"::text AS key_1 FROM "app"."items" ORDER BY "id" DESC LIMIT 1"#
        );
        assert_eq!(
            sql.end_key_from,
            r#"SELECT "id"::text AS key_1 FROM "app"."items" WHERE ("id") > ($1::bigint) AND ("id") <= ($2::bigint) ORDER BY "id" LIMIT 1 OFFSET $3"#
        );
        assert_eq!(
            sql.batch_from,
            r#"UPDATE "app"."items" SET n = n + 1 WHERE ("id") > ($1::bigint) AND ("id") <= ($2::bigint) AND (n < 10)"#
        );
        assert_eq!(
            sql.batch,
            r#"UPDATE "app"."items" SET n = n + 1 WHERE ("id") <= ($1::bigint) AND (n < 10)"#
        );
        assert_eq!(
            sql.batch_with(LEASE, Some(&["10".into()]), &["20".into()]),
            format!(
                r#"{GUARD} UPDATE "app"."items" SET n = n + 1 WHERE EXISTS (SELECT FROM sluice_lease) AND ("id") > ('10'::bigint) AND ("id") <= ('20'::bigint) AND (n < 10)"#
            )
        );
        assert_eq!(
            sql.batch_with(LEASE, None, &["20".into()]),
            format!(
                r#"{GUARD} UPDATE "app"."items" SET n = n + 1 WHERE EXISTS (SELECT FROM sluice_lease) AND ("id") <= ('20'::bigint) AND (n < 10)"#
            )
        );
        assert!(
            sql.split_keys.starts_with(
                r#"WITH sluice_sample AS (SELECT "id", row_number() OVER (ORDER BY "id") - 1 AS sluice_index, count(*) OVER () AS sluice_sampled FROM "app"."items" TABLESAMPLE SYSTEM ($1::float4) WHERE ("id") < ($2::bigint)), sluice_parts AS (SELECT *, least($3::int8 - 1"#
            ),
            "{}",
            sql.split_keys
        );
        assert_eq!(
            sql.count_range_from,
            r#"SELECT count(*) FROM "app"."items" WHERE ("id") > ($1::bigint) AND ("id") <= ($2::bigint)"#
        );
        assert_eq!(
            sql.count_remaining_from.unwrap(),
            r#"SELECT count(*) FROM "app"."items" WHERE ("id") > ($1::bigint) AND ("id") <= ($2::bigint) AND (n < 10)"#
        );
    }

    #[test]
    fn composite_key_uses_row_comparison() {
        let job = job(&["tenant", "\"Id\""], None);
        let sql = JobSql::new(&job, &target(&job, &["text", "uuid"]), "jobs", "ranges");
        assert_eq!(
            sql.end_key,
            r#"SELECT "tenant"::text AS key_1, "Id"::text AS key_2 FROM "app"."items" WHERE ("tenant", "Id") <= ($1::text, $2::uuid) ORDER BY "tenant", "Id" LIMIT 1 OFFSET $3"#
        );
        assert_eq!(
            sql.batch_from,
            r#"UPDATE "app"."items" SET n = n + 1 WHERE ("tenant", "Id") > ($1::text, $2::uuid) AND ("tenant", "Id") <= ($3::text, $4::uuid)"#
        );
        assert!(
            sql.count_remaining.is_none(),
            "nothing to verify without `where`"
        );
    }

    #[test]
    fn progress_quotes_every_value() {
        let job = job(&["tenant", "id"], None);
        let sql = JobSql::new(
            &job,
            &target(&job, &["text", "int"]),
            "\"sluice\".\"backfill_jobs\"",
            "\"sluice\".\"backfill_ranges\"",
        );
        let upper = ["it's".to_owned(), "9".to_owned()];
        let was = ["it's".to_owned(), "5".to_owned()];
        let lease = LeaseOf {
            job: "j'x",
            range_no: 3,
            owner: "pod-1/42/w0",
            upper: &upper,
            cursor: Some(&was),
        };
        let text = sql.progress_and_commit(Progress {
            lease,
            cursor: &["it's".into(), "7".into()],
            rows_updated: 3,
            rows_scanned: 5,
            last: true,
            lease_for: std::time::Duration::from_secs(30),
            throttled_seconds: 0.25,
        });
        assert!(text.starts_with(r#"WITH progress AS (UPDATE "sluice"."backfill_ranges" SET cursor = ARRAY['it''s', '7']::text[], rows_updated = rows_updated + 3, rows_scanned = rows_scanned + 5,"#), "{text}");
        assert!(
            text.contains("state = 'done', lease_until = now() + interval '30000 milliseconds'"),
            "{text}"
        );
        assert!(
            text.ends_with(r#"WHERE job = 'j''x' AND range_no = 3 AND owner = 'pod-1/42/w0' AND upper = ARRAY['it''s', '9']::text[] AND cursor = ARRAY['it''s', '5']::text[] RETURNING 1) SELECT control FROM "sluice"."backfill_jobs" WHERE name = 'j''x' AND EXISTS (SELECT FROM progress); COMMIT"#),
            "{text}"
        );
        assert_eq!(
            sql.batch_with(
                lease,
                Some(&["a'b".into(), "1".into()]),
                &["c".into(), "2".into()]
            ),
            r#"WITH sluice_lease AS MATERIALIZED (SELECT FROM "sluice"."backfill_ranges" WHERE job = 'j''x' AND range_no = 3 AND owner = 'pod-1/42/w0' AND upper = ARRAY['it''s', '9']::text[] AND cursor = ARRAY['it''s', '5']::text[] FOR UPDATE) UPDATE "app"."items" SET n = n + 1 WHERE EXISTS (SELECT FROM sluice_lease) AND ("tenant", "id") > ('a''b'::text, '1'::int) AND ("tenant", "id") <= ('c'::text, '2'::int)"#
        );
    }

    #[test]
    fn hostile_names_stay_quoted() {
        let mut job = job(&["id"], None);
        job.table.name = Ident::new("x\"; DROP TABLE users; --").unwrap();
        let sql = JobSql::new(&job, &target(&job, &["int"]), "jobs", "ranges");
        assert!(
            sql.batch.contains(r#""app"."x""; DROP TABLE users; --""#),
            "{}",
            sql.batch
        );
    }

    #[test]
    fn a_delete_batch_deletes_the_matching_rows_of_its_range() {
        let mut job = job(&["id"], Some("at < '2026-01-01'"));
        job.action = Action::Delete;
        let sql = JobSql::new(&job, &target(&job, &["bigint"]), "jobs", "ranges");
        assert_eq!(
            sql.batch_with(LEASE, Some(&["10".into()]), &["20".into()]),
            format!(
                r#"{GUARD} DELETE FROM "app"."items" WHERE EXISTS (SELECT FROM sluice_lease) AND ("id") > ('10'::bigint) AND ("id") <= ('20'::bigint) AND (at < '2026-01-01')"#
            )
        );
        assert_eq!(
            sql.count_remaining_from.unwrap(),
            r#"SELECT count(*) FROM "app"."items" WHERE ("id") > ($1::bigint) AND ("id") <= ($2::bigint) AND (at < '2026-01-01')"#
        );
    }

    fn copy_target(on_conflict: OnConflict, overriding: bool) -> CopyTarget {
        let public = Ident::new("public").unwrap();
        let id = Ident::new("id").unwrap();
        CopyTarget {
            table: sluice_common::ident::QualifiedName::parse("archive.items", &public).unwrap(),
            columns: vec![id.clone(), Ident::new("Body").unwrap()],
            values: vec!["\"id\"".into(), "upper(body)".into()],
            key: vec![crate::copy_target::KeyPart {
                column: id,
                type_name: "bigint".into(),
                value: "\"id\"".into(),
            }],
            overriding,
            on_conflict,
        }
    }

    #[test]
    fn a_copy_batch_inserts_its_range_and_verification_looks_each_row_up() {
        let mut job = job(&["id"], Some("n > 0"));
        let mut target = target(&job, &["int"]);
        target.copy = Some(copy_target(OnConflict::Skip, false));
        job.action = Action::Copy(crate::job::CopySpec {
            into: target.copy.as_ref().unwrap().table.clone(),
            columns: None,
            values: None,
            on_conflict: OnConflict::Skip,
        });
        let sql = JobSql::new(&job, &target, "jobs", "ranges");
        assert_eq!(
            sql.batch_with(LEASE, None, &["20".into()]),
            format!(
                r#"{GUARD} INSERT INTO "archive"."items" ("id", "Body") SELECT "id", upper(body) FROM "app"."items" WHERE EXISTS (SELECT FROM sluice_lease) AND ("id") <= ('20'::int) AND (n > 0) FOR SHARE ON CONFLICT ("id") DO NOTHING"#
            )
        );
        assert_eq!(
            sql.count_remaining_from.as_deref().unwrap(),
            r#"SELECT count(*) FROM (SELECT *, CAST(("id") AS bigint) AS sluice_target_1 FROM "app"."items" WHERE ("id") > ($1::int) AND ("id") <= ($2::int) AND (n > 0)) sluice_source WHERE NOT EXISTS (SELECT FROM "archive"."items" sluice_target WHERE (sluice_target."id") = (sluice_source.sluice_target_1) OFFSET 0)"#
        );
        assert!(
            sql.first_remaining
                .as_deref()
                .unwrap()
                .ends_with(r#"= (sluice_source.sluice_target_1) OFFSET 0) ORDER BY "id" LIMIT 1"#),
            "{:?}",
            sql.first_remaining
        );

        target.copy = Some(copy_target(OnConflict::Update, true));
        let sql = JobSql::new(&job, &target, "jobs", "ranges");
        assert!(
            sql.batch.starts_with(
                r#"INSERT INTO "archive"."items" ("id", "Body") OVERRIDING SYSTEM VALUE SELECT"#
            ),
            "{}",
            sql.batch
        );
        assert!(
            sql.batch
                .ends_with(r#"ON CONFLICT ("id") DO UPDATE SET "Body" = EXCLUDED."Body""#),
            "{}",
            sql.batch
        );
        // Without `where`, a copy still verifies every row of its range.
        job.where_ = None;
        let sql = JobSql::new(&job, &target, "jobs", "ranges");
        assert!(sql.count_remaining.is_some());
    }
}
