//! The permissions a `step.toml` grants, checked for every statement a
//! component step sends, before it reaches the database.
//!
//! A statement is parsed in the database's dialect and every statement in
//! it (common table expressions included) is classified: a read, a write to
//! named tables (INSERT, UPDATE, DELETE, MERGE, TRUNCATE), or anything else
//! (DDL, SET, CALL...). A restricted step may send only what its grant
//! covers; a statement that cannot be parsed cannot be checked and is
//! refused. Whatever its grant, no step may begin, commit or roll back:
//! the host owns the transaction. An unrestricted step's statement that
//! does not parse is let through once a scan of its words finds no
//! transaction control.
//!
//! What parsing cannot see, a function with side effects called from a
//! SELECT, the database must stop: on PostgreSQL a read-only step's
//! statements also run in a read-only transaction.

use std::ops::ControlFlow;

use sqlparser::ast::{
    FromTable, ObjectName, ObjectNamePart, SetExpr, Statement, TableFactor, TableObject, TableWithJoins,
    visit_statements,
};
use sqlparser::parser::Parser;
use sqlparser::tokenizer::Token;
use waymark_db::Dialect;

use super::drops;
use crate::source::Access;

/// What one statement does, as far as permissions go.
enum Effect {
    Read,
    /// Writes rows of these tables.
    Write(Vec<String>),
    /// Something other than reading or writing rows; its leading keywords.
    Other(String),
    /// Begins, commits or rolls back; its leading keywords.
    Transaction(String),
}

/// Checks `sql` against `access`. `Err` is the refusal, naming the
/// permission in `step.toml`.
pub(crate) fn check(access: &Access, dialect: Dialect, sql: &str) -> Result<(), String> {
    let grant = match access {
        Access::ReadWrite => "permissions.access = \"read-write\"".to_owned(),
        Access::ReadOnly => "permissions.access = \"read-only\" (the default)".to_owned(),
        Access::Tables(tables) => format!("permissions.write = [{}]", quoted_list(tables)),
    };
    let parsed = Parser::parse_sql(super::dialect(dialect), sql);
    let parsed = match (parsed, access) {
        (Ok(parsed), _) => parsed,
        (Err(_), Access::ReadWrite) => return scan_for_transaction_control(dialect, sql),
        (Err(e), _) => {
            return Err(format!(
                "step.toml grants {grant}, and the step sent a statement waymark cannot check against it \
                 ({e}): {}",
                excerpt(sql)
            ));
        }
    };
    let mut effects = Vec::new();
    let _ = visit_statements(&parsed, |statement| {
        effects.push(effect(statement));
        ControlFlow::<()>::Continue(())
    });
    for e in effects {
        match (e, access) {
            (Effect::Transaction(kind), _) => return Err(transaction_control(&kind, sql)),
            (Effect::Read, _) | (_, Access::ReadWrite) => {}
            (Effect::Write(tables), Access::ReadOnly) => {
                return Err(format!(
                    "step.toml grants {grant}, but the step tried to write {}: {}",
                    tables_phrase(&tables),
                    excerpt(sql)
                ));
            }
            (Effect::Write(tables), Access::Tables(granted)) => {
                if let Some(table) = tables.iter().find(|t| !granted.iter().any(|g| covers(g, t))) {
                    return Err(format!(
                        "step.toml grants {grant}, but the step tried to write table \"{table}\": {}",
                        excerpt(sql)
                    ));
                }
            }
            (Effect::Other(kind), Access::ReadOnly) => {
                return Err(format!(
                    "step.toml grants {grant}, but the step sent {kind}, which is not a read: {}",
                    excerpt(sql)
                ));
            }
            (Effect::Other(kind), _) => {
                return Err(format!(
                    "step.toml grants {grant}, which allows reads and INSERT, UPDATE, DELETE, MERGE and \
                     TRUNCATE on those tables, but the step sent {kind}; a step that needs it must be granted \
                     permissions.access = \"read-write\" without a list: {}",
                    excerpt(sql)
                ));
            }
        }
    }
    Ok(())
}

fn transaction_control(kind: &str, sql: &str) -> String {
    format!(
        "the step sent {kind}, but waymark owns the migration's transaction: a step never begins, commits or \
         rolls back (a step declared transaction = \"batches\" asks for commit points with `commit`): {}",
        excerpt(sql)
    )
}

/// For text that does not parse: refuses it if any statement in it starts
/// with a transaction-control keyword. Statements are found by the
/// tokenizer, so the `END` of a body in a string or between `$$` does not
/// count; text it cannot tokenize is split on every `;`.
fn scan_for_transaction_control(dialect: Dialect, sql: &str) -> Result<(), String> {
    const CONTROL: &[&str] = &[
        "BEGIN",
        "START",
        "COMMIT",
        "END",
        "ROLLBACK",
        "ABORT",
        "SAVEPOINT",
        "RELEASE",
        "PREPARE",
    ];
    let firsts: Vec<String> = match drops::statements(dialect, sql) {
        Some(statements) => statements
            .iter()
            .map(|tokens| match tokens.first() {
                Some(Token::Word(w)) if w.quote_style.is_none() => w.value.to_ascii_uppercase(),
                _ => String::new(),
            })
            .collect(),
        None => sql
            .split(';')
            .map(|statement| {
                statement
                    .lines()
                    .map(|l| l.split("--").next().unwrap_or_default().trim())
                    .find(|l| !l.is_empty())
                    .and_then(|l| l.split_whitespace().next())
                    .unwrap_or_default()
                    .to_ascii_uppercase()
            })
            .collect(),
    };
    match firsts.into_iter().find(|first| CONTROL.contains(&first.as_str())) {
        Some(first) => Err(transaction_control(&first, sql)),
        None => Ok(()),
    }
}

fn effect(statement: &Statement) -> Effect {
    match statement {
        Statement::Query(query) => match select_into(&query.body) {
            true => Effect::Other("SELECT ... INTO".to_owned()),
            false => Effect::Read,
        },
        Statement::Insert(insert) => match &insert.table {
            TableObject::TableName(name) => Effect::Write(vec![name_of(name)]),
            TableObject::TableFunction(_) => Effect::Other("INSERT INTO a table function".to_owned()),
        },
        Statement::Update { table, .. } => Effect::Write(joined_tables(std::slice::from_ref(table))),
        Statement::Delete(delete) => {
            let from = match &delete.from {
                FromTable::WithFromKeyword(t) | FromTable::WithoutKeyword(t) => t,
            };
            let mut tables: Vec<String> = delete.tables.iter().map(name_of).collect();
            tables.extend(joined_tables(from));
            Effect::Write(tables)
        }
        Statement::Merge { table, .. } => Effect::Write(factor_tables(table)),
        Statement::Truncate { table_names, .. } => {
            Effect::Write(table_names.iter().map(|t| name_of(&t.name)).collect())
        }
        // The statement explained is visited on its own, and classified.
        Statement::Explain { analyze: false, .. } | Statement::ExplainTable { .. } => Effect::Read,
        Statement::StartTransaction { .. }
        | Statement::Commit { .. }
        | Statement::Rollback { .. }
        | Statement::Savepoint { .. }
        | Statement::ReleaseSavepoint { .. } => Effect::Transaction(leading_keywords(&statement.to_string())),
        other => Effect::Other(leading_keywords(&other.to_string())),
    }
}

/// Whether a query creates a table (`SELECT ... INTO new_table`).
fn select_into(body: &SetExpr) -> bool {
    match body {
        SetExpr::Select(select) => select.into.is_some(),
        SetExpr::Query(query) => select_into(&query.body),
        SetExpr::SetOperation { left, right, .. } => select_into(left) || select_into(right),
        _ => false,
    }
}

/// Every table an UPDATE or DELETE names: MySQL may write any table of a
/// join, so all of them count as written.
fn joined_tables(tables: &[TableWithJoins]) -> Vec<String> {
    tables
        .iter()
        .flat_map(|t| {
            factor_tables(&t.relation)
                .into_iter()
                .chain(t.joins.iter().flat_map(|j| factor_tables(&j.relation)))
        })
        .collect()
}

fn factor_tables(factor: &TableFactor) -> Vec<String> {
    match factor {
        TableFactor::Table { name, .. } => vec![name_of(name)],
        TableFactor::NestedJoin { table_with_joins, .. } => joined_tables(std::slice::from_ref(table_with_joins)),
        _ => Vec::new(),
    }
}

/// A table's name as granted names are written: quoted parts as they are,
/// others in lower case, parts joined by dots.
fn name_of(name: &ObjectName) -> String {
    name.0
        .iter()
        .map(|part| match part {
            ObjectNamePart::Identifier(ident) if ident.quote_style.is_some() => ident.value.clone(),
            ObjectNamePart::Identifier(ident) => ident.value.to_lowercase(),
            ObjectNamePart::Function(f) => f.to_string(),
        })
        .collect::<Vec<_>>()
        .join(".")
}

/// Whether the grant `granted` covers `table`: equal names, or a grant
/// without a schema naming the table in any schema.
fn covers(granted: &str, table: &str) -> bool {
    granted == table || (!granted.contains('.') && table.rsplit('.').next() == Some(granted))
}

fn leading_keywords(text: &str) -> String {
    let words: Vec<&str> = text
        .split_whitespace()
        .take_while(|w| w.chars().all(|c| c.is_ascii_uppercase() || c == '_'))
        .take(3)
        .collect();
    if words.is_empty() {
        "a statement".to_owned()
    } else {
        words.join(" ")
    }
}

fn tables_phrase(tables: &[String]) -> String {
    match tables {
        [one] => format!("table \"{one}\""),
        many => format!("tables {}", quoted_list(many)),
    }
}

fn quoted_list(tables: &[String]) -> String {
    tables.iter().map(|t| format!("\"{t}\"")).collect::<Vec<_>>().join(", ")
}

/// The statement, shortened for a message.
fn excerpt(sql: &str) -> String {
    let one_line = sql.split_whitespace().collect::<Vec<_>>().join(" ");
    match one_line.char_indices().nth(120) {
        Some((cut, _)) => format!("{}...", &one_line[..cut]),
        None => one_line,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tables(names: &[&str]) -> Access {
        Access::Tables(names.iter().map(|s| s.to_string()).collect())
    }

    #[test]
    fn reads_pass_a_read_only_grant_and_writes_do_not() {
        let ro = Access::ReadOnly;
        for sql in [
            "SELECT id FROM users WHERE id > $1 ORDER BY id LIMIT 100",
            "WITH x AS (SELECT 1) SELECT * FROM x",
            "EXPLAIN SELECT 1",
        ] {
            assert_eq!(check(&ro, Dialect::Postgres, sql), Ok(()), "{sql}");
        }
        for (sql, says) in [
            ("UPDATE users SET a = 1", "tried to write table \"users\""),
            (
                "WITH d AS (DELETE FROM users RETURNING id) SELECT * FROM d",
                "table \"users\"",
            ),
            ("CREATE TABLE t (id int)", "sent CREATE TABLE, which is not a read"),
            ("SELECT * INTO copy FROM users", "SELECT ... INTO"),
            ("SET session_replication_role = replica", "sent SET"),
            ("this is not sql", "cannot check"),
        ] {
            let refusal = check(&ro, Dialect::Postgres, sql).unwrap_err();
            assert!(refusal.contains(says), "{sql}: {refusal}");
            assert!(refusal.contains("permissions.access = \"read-only\""), "{refusal}");
        }
    }

    #[test]
    fn a_table_list_allows_writes_to_those_tables_only() {
        let grant = tables(&["users", "audit.log"]);
        for sql in [
            "UPDATE users SET email = lower(email) WHERE id BETWEEN 1 AND 100",
            "UPDATE public.Users SET a = 1",
            "INSERT INTO audit.log (x) VALUES (1)",
            "DELETE FROM users WHERE id = 3",
            "TRUNCATE users",
        ] {
            assert_eq!(check(&grant, Dialect::Postgres, sql), Ok(()), "{sql}");
        }
        for (sql, table) in [
            ("UPDATE orders SET a = 1", "orders"),
            ("INSERT INTO other.log VALUES (1)", "other.log"),
            ("UPDATE \"Users\" SET a = 1", "Users"),
        ] {
            let refusal = check(&grant, Dialect::Postgres, sql).unwrap_err();
            assert!(
                refusal.contains(&format!("write table \"{table}\"")),
                "{sql}: {refusal}"
            );
            assert!(
                refusal.contains("permissions.write = [\"users\", \"audit.log\"]"),
                "{refusal}"
            );
        }
        // MySQL may write any table of a join.
        let refusal = check(
            &grant,
            Dialect::Mysql,
            "UPDATE users u JOIN orders o ON o.user_id = u.id SET o.total = 0",
        )
        .unwrap_err();
        assert!(refusal.contains("\"orders\""), "{refusal}");
        let refusal = check(&grant, Dialect::Sqlite, "DROP TABLE users").unwrap_err();
        assert!(refusal.contains("sent DROP TABLE"), "{refusal}");
    }

    #[test]
    fn no_grant_lets_a_step_end_the_transaction() {
        for access in [Access::ReadWrite, Access::ReadOnly, tables(&["users"])] {
            for sql in [
                "COMMIT",
                "SELECT 1; ROLLBACK",
                "BEGIN",
                "SAVEPOINT a",
                "RELEASE SAVEPOINT a",
            ] {
                let refusal = check(&access, Dialect::Postgres, sql).unwrap_err();
                assert!(
                    refusal.contains("waymark owns the migration's transaction"),
                    "{sql}: {refusal}"
                );
            }
        }
        // Text the parser does not know passes an unrestricted grant, unless
        // a statement in it ends the transaction.
        let odd = "CREATE STATISTICS s (dependencies) ON a, b FROM t";
        assert_eq!(check(&Access::ReadWrite, Dialect::Postgres, odd), Ok(()));
        let refusal = check(
            &Access::ReadWrite,
            Dialect::Postgres,
            &format!("{odd};\n-- done\ncommit"),
        )
        .unwrap_err();
        assert!(refusal.contains("sent COMMIT"), "{refusal}");
        // The END of a body between dollar quotes ends no transaction.
        let body = "DO $$ BEGIN EXECUTE 'SELECT 1'; END $$";
        assert_eq!(check(&Access::ReadWrite, Dialect::Postgres, body), Ok(()));
        let refusal = check(&Access::ReadWrite, Dialect::Postgres, &format!("{body}; END")).unwrap_err();
        assert!(refusal.contains("sent END"), "{refusal}");
    }
}
