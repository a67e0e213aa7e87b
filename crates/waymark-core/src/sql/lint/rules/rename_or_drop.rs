//! A rename or drop of a column or table that the running application may
//! still use.

use sqlparser::ast::{AlterTableOperation, ObjectType, Statement};
use waymark_db::Dialect;

use crate::sql::lint::{Claim, Context, Rule, Severity};

pub(crate) const RULE: Rule = Rule {
    id: "rename-or-drop",
    dialects: &[Dialect::Postgres, Dialect::Mysql, Dialect::Sqlite],
    severity: Severity::Warning,
    lock: "ACCESS EXCLUSIVE on the table (PostgreSQL), its metadata lock (MySQL), the write lock (SQLite)",
    why: "the application version still running during a deploy reads the old name, and fails from the moment \
          the migration commits",
    fix: "expand and contract: add the new column or table, write both from the application, backfill, move the \
          reads, and drop the old one only once no running version uses it",
    once_per_migration: false,
    by_size: false,
    claims: &[
        Claim {
            example: "ALTER TABLE accounts RENAME COLUMN email TO mail;",
            mode: "ACCESS EXCLUSIVE",
            on: "accounts",
            rewrites: false,
        },
        Claim {
            example: "ALTER TABLE accounts DROP COLUMN name;",
            mode: "ACCESS EXCLUSIVE",
            on: "accounts",
            rewrites: false,
        },
    ],
    check,
    unparsed: None,
};

fn check(context: &Context<'_>, statement: &Statement) -> Option<String> {
    match statement {
        Statement::AlterTable { name, operations, .. } if context.existing(name) => {
            operations.iter().find_map(|op| match op {
                AlterTableOperation::RenameColumn {
                    old_column_name,
                    new_column_name,
                } => Some(format!("renames {name}.{old_column_name} to {new_column_name}")),
                AlterTableOperation::RenameTable { table_name } => Some(format!("renames {name} to {table_name}")),
                AlterTableOperation::DropColumn { column_names, .. } => {
                    let list: Vec<String> = column_names.iter().map(|c| format!("{name}.{c}")).collect();
                    Some(format!("drops {}", list.join(", ")))
                }
                _ => None,
            })
        }
        Statement::Drop {
            object_type: ObjectType::Table,
            names,
            ..
        } => {
            let existing: Vec<String> = names
                .iter()
                .filter(|n| context.existing(n))
                .map(ToString::to_string)
                .collect();
            (!existing.is_empty()).then(|| format!("drops {}", existing.join(", ")))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use waymark_db::Dialect;

    use super::super::findings;

    #[test]
    fn fires_on_renames_and_drops_of_what_existed() {
        for dialect in [Dialect::Postgres, Dialect::Mysql, Dialect::Sqlite] {
            for sql in [
                "ALTER TABLE users RENAME COLUMN name TO full_name;",
                "ALTER TABLE users DROP COLUMN name;",
                "DROP TABLE users;",
            ] {
                assert!(
                    findings(dialect, false, sql).contains(&("rename-or-drop", 1)),
                    "{dialect:?} {sql}"
                );
            }
            // Adding the new column, the expand step, passes.
            assert!(
                !findings(dialect, false, "ALTER TABLE users ADD COLUMN full_name TEXT;")
                    .contains(&("rename-or-drop", 1))
            );
        }
        let scratch = "CREATE TABLE scratch (id int);\nDROP TABLE scratch;";
        assert!(findings(Dialect::Postgres, true, scratch).is_empty());
    }
}
