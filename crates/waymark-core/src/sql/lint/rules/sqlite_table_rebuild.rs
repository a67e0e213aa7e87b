//! SQLite's table rebuild: the twelve-step `ALTER` its documentation
//! gives for what `ALTER TABLE` cannot do (make a new table, copy every
//! row into it, drop the old one, rename the new one), and `DROP COLUMN`,
//! which rewrites the table too. Either holds the database's one write
//! lock while every row is copied.

use sqlparser::ast::{AlterTableOperation, SetExpr, Statement, TableFactor, TableObject};
use waymark_db::Dialect;

use crate::sql::lint::{Context, Rule, Severity, bare};

pub(crate) const RULE: Rule = Rule {
    id: "sqlite-table-rebuild",
    dialects: &[Dialect::Sqlite],
    severity: Severity::Error,
    lock: "the database's write lock, while every row is copied",
    why: "SQLite has one writer: while a table is copied row by row every other write to the database waits, \
          and on a big table that is longer than an application's busy timeout",
    fix: "rebuild a big table while writers are stopped, or in steps: a new table filled in batches by a \
          batched step, then a short migration that swaps the names",
    once_per_migration: false,
    by_size: true,
    claims: &[],
    check,
    unparsed: None,
};

fn check(context: &Context<'_>, statement: &Statement) -> Option<String> {
    if let Some((name, operations)) = super::altered(context, statement)
        && operations
            .iter()
            .any(|op| matches!(op, AlterTableOperation::DropColumn { .. }))
    {
        return Some(format!("DROP COLUMN rewrites every row of {name}"));
    }
    let (into, from) = copied(statement)?;
    (context.created.contains(&into) && !context.created.contains(&from))
        .then(|| format!("copies every row of {from} into the new table {into}: a table rebuild"))
}

/// For `INSERT INTO a SELECT ... FROM b`: `a` and `b`, bare.
pub(crate) fn copied(statement: &Statement) -> Option<(String, String)> {
    let Statement::Insert(insert) = statement else {
        return None;
    };
    let TableObject::TableName(into) = &insert.table else {
        return None;
    };
    let SetExpr::Select(select) = insert.source.as_ref()?.body.as_ref() else {
        return None;
    };
    let TableFactor::Table { name: from, .. } = &select.from.first()?.relation else {
        return None;
    };
    Some((bare(into), bare(from)))
}

#[cfg(test)]
mod tests {
    use waymark_db::Dialect;

    use super::super::findings;

    #[test]
    fn fires_on_a_rebuild_of_an_existing_table() {
        let rebuild = "CREATE TABLE new_users (id INTEGER PRIMARY KEY, email TEXT NOT NULL);\n\
                       INSERT INTO new_users (id, email) SELECT id, email FROM users;\n\
                       DROP TABLE users;\n\
                       ALTER TABLE new_users RENAME TO users;";
        assert!(findings(Dialect::Sqlite, true, rebuild).contains(&("sqlite-table-rebuild", 2)));
        assert!(
            findings(Dialect::Sqlite, true, "ALTER TABLE users DROP COLUMN email;")
                .contains(&("sqlite-table-rebuild", 1))
        );
        // Copying between two new tables, or adding a column, rebuilds
        // nothing that anyone waits on.
        let new = "CREATE TABLE a (id INTEGER);\nCREATE TABLE b (id INTEGER);\nINSERT INTO b SELECT id FROM a;";
        assert!(!findings(Dialect::Sqlite, true, new).contains(&("sqlite-table-rebuild", 3)));
        assert!(findings(Dialect::Sqlite, true, "ALTER TABLE users ADD COLUMN age INTEGER;").is_empty());
    }
}
