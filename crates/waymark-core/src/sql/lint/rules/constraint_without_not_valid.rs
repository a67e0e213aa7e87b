//! A foreign key or `CHECK` added to an existing table without `NOT VALID`,
//! or a unique or primary key constraint built in place instead of from an
//! index built concurrently (`USING INDEX`).

use sqlparser::ast::{AlterTableOperation, Statement, TableConstraint};

use super::POSTGRES;
use crate::sql::lint::{Claim, Context, Rule, Severity};

pub(crate) const RULE: Rule = Rule {
    id: "constraint-without-not-valid",
    dialects: POSTGRES,
    severity: Severity::Error,
    lock: "SHARE ROW EXCLUSIVE on both tables (a foreign key) or ACCESS EXCLUSIVE (a check, a unique or primary \
           key), while every row is read",
    why: "the constraint is checked against every existing row while the lock is held: writes (or, for a check, \
          every query) wait for the whole table to be read",
    fix: "ADD CONSTRAINT ... NOT VALID, then VALIDATE CONSTRAINT in a later migration (it takes a lock that lets \
          writes through); for UNIQUE or PRIMARY KEY, CREATE UNIQUE INDEX CONCURRENTLY first, then ADD CONSTRAINT \
          ... USING INDEX",
    once_per_migration: false,
    by_size: true,
    claims: &[
        Claim {
            example: "ALTER TABLE accounts ADD CONSTRAINT accounts_parent FOREIGN KEY (parent_id) REFERENCES parents (id);",
            mode: "SHARE ROW EXCLUSIVE",
            on: "accounts",
            rewrites: false,
        },
        Claim {
            example: "ALTER TABLE accounts ADD CONSTRAINT accounts_parent FOREIGN KEY (parent_id) REFERENCES parents (id);",
            mode: "SHARE ROW EXCLUSIVE",
            on: "parents",
            rewrites: false,
        },
        Claim {
            example: "ALTER TABLE accounts ADD CONSTRAINT accounts_age_positive CHECK (age > 0);",
            mode: "ACCESS EXCLUSIVE",
            on: "accounts",
            rewrites: false,
        },
    ],
    check,
};

fn check(context: &Context<'_>, statement: &Statement) -> Option<String> {
    let (name, operations) = super::altered(context, statement)?;
    operations.iter().find_map(|op| match op {
        AlterTableOperation::AddConstraint {
            constraint: TableConstraint::ForeignKey { .. },
            not_valid: false,
        } => Some(format!(
            "a foreign key added to {name} reads every row of it under the lock"
        )),
        AlterTableOperation::AddConstraint {
            constraint: TableConstraint::Check { .. },
            not_valid: false,
        } => Some(format!(
            "a CHECK added to {name} reads every row of it while no query gets through"
        )),
        AlterTableOperation::AddConstraint {
            constraint: c @ (TableConstraint::Unique { .. } | TableConstraint::PrimaryKey { .. }),
            ..
        } if !c.to_string().to_uppercase().contains("USING INDEX") => Some(format!(
            "a unique or primary key constraint added to {name} builds its index while no query gets through"
        )),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use waymark_db::Dialect;

    use super::super::findings;

    #[test]
    fn fires_without_not_valid_and_passes_with_it() {
        let rule = "constraint-without-not-valid";
        for sql in [
            "ALTER TABLE orders ADD CONSTRAINT orders_user FOREIGN KEY (user_id) REFERENCES users (id);",
            "ALTER TABLE orders ADD CONSTRAINT orders_total CHECK (total >= 0);",
            "ALTER TABLE orders ADD CONSTRAINT orders_code UNIQUE (code);",
        ] {
            assert_eq!(findings(Dialect::Postgres, true, sql), [(rule, 1)], "{sql}");
        }
        for sql in [
            "ALTER TABLE orders ADD CONSTRAINT orders_user FOREIGN KEY (user_id) REFERENCES users (id) NOT VALID;",
            "ALTER TABLE orders ADD CONSTRAINT orders_total CHECK (total >= 0) NOT VALID;",
        ] {
            assert!(
                findings(Dialect::Postgres, true, sql).iter().all(|(r, _)| *r != rule),
                "{sql}"
            );
        }
        let new_table = "CREATE TABLE orders (id int PRIMARY KEY, total int);\n\
                         ALTER TABLE orders ADD CONSTRAINT orders_total CHECK (total >= 0);";
        assert!(findings(Dialect::Postgres, true, new_table).is_empty());
    }
}
