//! `ALTER COLUMN ... SET NOT NULL` on an existing table.

use sqlparser::ast::{AlterColumnOperation, AlterTableOperation, Statement};

use super::POSTGRES;
use crate::sql::lint::{Claim, Context, Rule, Severity};

pub(crate) const RULE: Rule = Rule {
    id: "set-not-null",
    dialects: POSTGRES,
    severity: Severity::Warning,
    lock: "ACCESS EXCLUSIVE on the table, while every row is read",
    why: "PostgreSQL reads the whole table to prove no NULL is left, and no query gets through meanwhile, unless \
          a validated CHECK (column IS NOT NULL) already proves it",
    fix: "ADD CONSTRAINT ... CHECK (column IS NOT NULL) NOT VALID; VALIDATE CONSTRAINT in a later migration; then \
          SET NOT NULL (PostgreSQL 12 and later use the check and skip the scan) and drop the check",
    once_per_migration: false,
    by_size: true,
    claims: &[Claim {
        example: "ALTER TABLE accounts ALTER COLUMN email SET NOT NULL;",
        mode: "ACCESS EXCLUSIVE",
        on: "accounts",
        rewrites: false,
    }],
    check,
    unparsed: None,
};

fn check(context: &Context<'_>, statement: &Statement) -> Option<String> {
    let (name, operations) = super::altered(context, statement)?;
    operations.iter().find_map(|op| match op {
        AlterTableOperation::AlterColumn {
            column_name,
            op: AlterColumnOperation::SetNotNull,
        } => Some(format!(
            "SET NOT NULL on {name}.{column_name} reads every row while no query gets through"
        )),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use waymark_db::Dialect;

    use super::super::findings;

    #[test]
    fn fires_on_an_existing_table() {
        assert!(
            findings(
                Dialect::Postgres,
                true,
                "ALTER TABLE users ALTER COLUMN email SET NOT NULL;"
            )
            .contains(&("set-not-null", 1))
        );
        let new_table = "CREATE TABLE users (id int PRIMARY KEY, email text);\n\
                         ALTER TABLE users ALTER COLUMN email SET NOT NULL;";
        assert!(findings(Dialect::Postgres, true, new_table).is_empty());
        // The safe way's first step passes.
        assert!(
            findings(
                Dialect::Postgres,
                true,
                "ALTER TABLE users ADD CONSTRAINT users_email_nn CHECK (email IS NOT NULL) NOT VALID;"
            )
            .is_empty()
        );
    }
}
