//! What a statement reaches beyond the database it runs in: the cluster's roles, databases,
//! tablespaces and settings, other sessions, the host's files and programs, other servers.
//!
//! A scratch database on the production server shares all of that with production, so
//! `trace`, `drift` and `roundtrip` refuse such statements there (`--scratch-on-target`).
//! Decided on squawk's parse tree, never on text patterns: a keyword inside a string or a
//! comment is not a statement.

use squawk_syntax::ast::{self, AstNode};
use squawk_syntax::{SyntaxKind, SyntaxNode};

/// Functions that act on the server or the host rather than on the database they are called
/// in. Names match whole; entries ending in `_` match as a prefix.
const CLUSTER_FUNCTIONS: &[&str] = &[
    // Other sessions, the server's configuration and its WAL.
    "pg_terminate_backend",
    "pg_cancel_backend",
    "pg_reload_conf",
    "pg_rotate_logfile",
    "pg_promote",
    "pg_switch_wal",
    "pg_create_restore_point",
    "pg_log_backend_memory_contexts",
    "pg_backup_",
    "pg_start_backup",
    "pg_stop_backup",
    "pg_wal_replay_",
    "pg_create_physical_replication_slot",
    "pg_create_logical_replication_slot",
    "pg_drop_replication_slot",
    "pg_copy_",
    "pg_replication_origin_",
    "pg_stat_reset_",
    // The host's files.
    "pg_read_file",
    "pg_read_binary_file",
    "pg_ls_",
    "pg_file_",
    "lo_import",
    "lo_export",
    // Other databases and servers.
    "dblink",
];

/// One statement that reaches outside its database, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reach {
    /// 1-based line of the statement in its file.
    pub line: usize,
    pub reason: String,
}

/// Every statement of `sql` that reaches beyond its database. Text that does not parse is
/// reported too: what cannot be read cannot be cleared.
pub fn beyond_database(sql: &str) -> Vec<Reach> {
    let parse = squawk_syntax::SourceFile::parse(sql);
    if let Some(error) = parse.errors().first() {
        return vec![Reach {
            line: line_at(sql, usize::from(error.range().start())),
            reason: format!(
                "it does not parse ({}), so it cannot be cleared",
                error.message()
            ),
        }];
    }
    parse
        .tree()
        .stmts()
        .filter_map(|stmt| {
            let reason = statement_reason(&stmt).or_else(|| called_function(stmt.syntax()))?;
            Some(Reach {
                line: line_at(sql, usize::from(stmt.syntax().text_range().start())),
                reason,
            })
        })
        .collect()
}

/// Statements whose kind alone reaches beyond the database.
fn statement_reason(stmt: &ast::Stmt) -> Option<String> {
    use ast::Stmt as S;
    let says = |what: &str| Some(what.to_owned());
    match stmt {
        S::CreateRole(_) | S::AlterRole(_) | S::DropRole(_) => says("roles belong to the cluster"),
        S::CreateUser(_) | S::AlterUser(_) | S::DropUser(_) => says("roles belong to the cluster"),
        S::CreateGroup(_) | S::AlterGroup(_) | S::DropGroup(_) => {
            says("roles belong to the cluster")
        }
        S::CreateDatabase(_) | S::AlterDatabase(_) | S::DropDatabase(_) => {
            says("databases belong to the cluster")
        }
        S::CreateTablespace(_) | S::AlterTablespace(_) | S::DropTablespace(_) => {
            says("tablespaces belong to the cluster")
        }
        S::AlterSystem(_) => says("ALTER SYSTEM changes the server's configuration"),
        S::Checkpoint(_) => says("a checkpoint is the whole server's"),
        S::Load(_) => says("LOAD runs a shared library's code in the server"),
        S::DropOwned(_) | S::Reassign(_) => {
            says("it also changes the role's privileges on or ownership of shared objects")
        }
        S::CreateSubscription(_) | S::AlterSubscription(_) | S::DropSubscription(_) => {
            says("a subscription connects to another server")
        }
        S::CreateServer(_)
        | S::AlterServer(_)
        | S::CreateUserMapping(_)
        | S::AlterUserMapping(_)
        | S::ImportForeignSchema(_) => says("a foreign server reaches another database"),
        S::Do(_) => says("a DO block can run any statement (EXECUTE), which cannot be checked"),
        S::Call(_) => says("a procedure can run any statement, which cannot be checked"),
        S::Grant(grant) => privileges_reason(grant.on_privilege_objects_clause()),
        S::Revoke(revoke) => privileges_reason(revoke.on_privilege_objects_clause()),
        S::CommentOn(_) | S::SecurityLabel(_) => on_shared_object(stmt.syntax()),
        S::Copy(copy) => copy_reason(copy),
        _ => None,
    }
}

/// `GRANT role TO role` (no `ON`) changes memberships; `ON DATABASE`, `ON TABLESPACE` and
/// `ON PARAMETER` change shared objects.
fn privileges_reason(on: Option<ast::OnPrivilegeObjectsClause>) -> Option<String> {
    let Some(on) = on else {
        return Some("role membership belongs to the cluster".to_owned());
    };
    let first = keywords(on.syntax()).nth(1)?;
    matches!(first.as_str(), "DATABASE" | "TABLESPACE" | "PARAMETER").then(|| {
        format!(
            "privileges on a {} belong to the cluster",
            first.to_lowercase()
        )
    })
}

/// `COMMENT ON ROLE|DATABASE|TABLESPACE`, `SECURITY LABEL ON ROLE|...`.
fn on_shared_object(node: &SyntaxNode) -> Option<String> {
    let words: Vec<String> = keywords(node).collect();
    let at = words.iter().position(|w| w == "ON")?;
    let object = words.get(at + 1)?;
    matches!(object.as_str(), "ROLE" | "DATABASE" | "TABLESPACE")
        .then(|| format!("a {} belongs to the cluster", object.to_lowercase()))
}

/// `COPY ... TO|FROM PROGRAM` runs a shell command on the host; `COPY ... 'file'` reads or
/// writes the host's files.
fn copy_reason(copy: &ast::Copy) -> Option<String> {
    let tokens: Vec<_> = copy
        .syntax()
        .descendants_with_tokens()
        .filter_map(|element| element.into_token())
        .filter(|token| !token.kind().is_trivia())
        .collect();
    let direction = tokens
        .iter()
        .position(|t| matches!(t.kind(), SyntaxKind::FROM_KW | SyntaxKind::TO_KW))?;
    let next = tokens.get(direction + 1)?;
    match next.kind() {
        SyntaxKind::PROGRAM_KW => {
            Some("COPY ... PROGRAM runs a shell command on the database host".to_owned())
        }
        SyntaxKind::STRING => {
            Some("COPY with a file name reads or writes the database host's files".to_owned())
        }
        _ => None,
    }
}

/// The first call, anywhere in the statement, of a function that acts beyond the database.
fn called_function(node: &SyntaxNode) -> Option<String> {
    node.descendants()
        .filter_map(ast::CallExpr::cast)
        .filter_map(|call| call.expr())
        .map(|callee| function_name(&callee.syntax().text().to_string()))
        .find(|name| {
            CLUSTER_FUNCTIONS
                .iter()
                .any(|known| match known.strip_suffix('_') {
                    Some(_) => name.starts_with(known),
                    None => name == known || (*known == "dblink" && name.starts_with("dblink")),
                })
        })
        .map(|name| format!("{name}() acts on the server, the host or another database"))
}

/// `pg_catalog."pg_terminate_backend"` → `pg_terminate_backend`.
fn function_name(callee: &str) -> String {
    let last = callee.rsplit('.').next().unwrap_or(callee).trim();
    match last.strip_prefix('"').and_then(|s| s.strip_suffix('"')) {
        Some(quoted) => quoted.to_owned(),
        None => last.to_ascii_lowercase(),
    }
}

/// The node's keyword and name tokens, upper-cased, in order.
fn keywords(node: &SyntaxNode) -> impl Iterator<Item = String> {
    node.descendants_with_tokens()
        .filter_map(|element| element.into_token())
        .filter(|token| !token.kind().is_trivia())
        .map(|token| token.text().to_ascii_uppercase())
}

fn line_at(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reasons(sql: &str) -> Vec<String> {
        beyond_database(sql).into_iter().map(|r| r.reason).collect()
    }

    fn refused(sql: &str) -> bool {
        !beyond_database(sql).is_empty()
    }

    #[test]
    fn cluster_statements_are_found() {
        for sql in [
            "DROP DATABASE other WITH (FORCE);",
            "CREATE DATABASE x;",
            "ALTER DATABASE prod SET work_mem = '1GB';",
            "CREATE ROLE r;",
            "ALTER ROLE app PASSWORD 'old';",
            "ALTER USER app WITH SUPERUSER;",
            "DROP ROLE IF EXISTS r;",
            "GRANT pg_read_server_files TO app;",
            "REVOKE pg_read_server_files FROM app;",
            "GRANT CONNECT ON DATABASE prod TO app;",
            "GRANT CREATE ON TABLESPACE fast TO app;",
            "ALTER SYSTEM SET work_mem = '1GB';",
            "CREATE TABLESPACE fast LOCATION '/tmp/x';",
            "COPY t TO PROGRAM 'rm -rf /';",
            "COPY t FROM '/etc/passwd';",
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity;",
            "SELECT pg_catalog.pg_reload_conf();",
            "SELECT dblink_exec('dbname=prod', 'DELETE FROM users');",
            "DO $$ BEGIN EXECUTE 'ALTER ROLE app SUPERUSER'; END $$;",
            "CALL cleanup();",
            "COMMENT ON ROLE app IS 'x';",
            "REASSIGN OWNED BY app TO postgres;",
            "DROP OWNED BY app;",
            "CREATE SERVER prod FOREIGN DATA WRAPPER postgres_fdw;",
            "CREATE SUBSCRIPTION s CONNECTION 'host=x' PUBLICATION p;",
            "CHECKPOINT;",
            "SELECT lo_export(1, '/tmp/x');",
            "SELECT pg_read_file('/etc/shadow');",
            "CREATE TABLE t AS SELECT pg_ls_dir('.');",
        ] {
            assert!(refused(sql), "not refused: {sql}");
        }
    }

    #[test]
    fn database_local_statements_pass() {
        for sql in [
            "CREATE TABLE users (id bigint PRIMARY KEY, email text);",
            "GRANT SELECT ON users TO app;",
            "REVOKE ALL ON ALL TABLES IN SCHEMA public FROM app;",
            "ALTER DEFAULT PRIVILEGES GRANT SELECT ON TABLES TO app;",
            "COPY t TO STDOUT;",
            "COMMENT ON TABLE users IS 'ALTER ROLE app; pg_terminate_backend';",
            "CREATE INDEX CONCURRENTLY i ON users (email);",
            "CREATE FUNCTION f() RETURNS int LANGUAGE sql AS 'SELECT 1';",
            "SELECT lower(email), now(), gen_random_uuid() FROM users;",
            "-- ALTER ROLE app PASSWORD 'x'\nSELECT 1;",
            "CREATE EXTENSION IF NOT EXISTS pgcrypto;",
            "ALTER TABLE users ADD COLUMN n int DEFAULT 0;",
        ] {
            assert_eq!(reasons(sql), Vec::<String>::new(), "{sql}");
        }
    }

    #[test]
    fn findings_name_the_line_and_why() {
        let found = beyond_database("CREATE TABLE t (id int);\n\nALTER ROLE app PASSWORD 'x';\n");
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].line, 3);
        assert!(found[0].reason.contains("roles"), "{:?}", found[0]);
        let quoted = beyond_database("SELECT \"pg_terminate_backend\"(1);");
        assert!(quoted[0].reason.starts_with("pg_terminate_backend()"));
    }
}
