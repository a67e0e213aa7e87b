//! `VALIDATE CONSTRAINT` in the same transaction as its `ADD ... NOT VALID`.

use sqlparser::ast::{AlterTableOperation, Statement};

use super::POSTGRES;
use crate::sql::lint::{Claim, Context, Rule, Severity};

pub(crate) const RULE: Rule = Rule {
    id: "validate-with-add",
    dialects: POSTGRES,
    severity: Severity::Warning,
    lock: "the ADD's lock (ACCESS EXCLUSIVE or SHARE ROW EXCLUSIVE), held while VALIDATE reads every row",
    why: "the ADD's strong lock is held until the transaction commits, so validating in the same transaction \
          reads the whole table under it, which NOT VALID was meant to avoid",
    fix: "VALIDATE CONSTRAINT in a later migration (or after `-- no-transaction`)",
    once_per_migration: false,
    by_size: false,
    claims: &[Claim {
        example: "ALTER TABLE accounts ADD CONSTRAINT accounts_age_positive CHECK (age > 0) NOT VALID;\n\
                  ALTER TABLE accounts VALIDATE CONSTRAINT accounts_age_positive;",
        mode: "ACCESS EXCLUSIVE",
        on: "accounts",
        rewrites: false,
    }],
    check,
    unparsed: None,
};

fn check(context: &Context<'_>, statement: &Statement) -> Option<String> {
    if !context.transactional {
        return None;
    }
    let Statement::AlterTable { operations, .. } = statement else {
        return None;
    };
    operations.iter().find_map(|op| match op {
        AlterTableOperation::ValidateConstraint { name } if context.not_valid.contains(&name.value.to_lowercase()) => {
            Some(format!("{name} is validated in the transaction that added it"))
        }
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use waymark_db::Dialect;

    use super::super::findings;

    #[test]
    fn fires_in_the_adding_transaction_only() {
        let add = "ALTER TABLE orders ADD CONSTRAINT orders_total CHECK (total >= 0) NOT VALID;";
        let validate = "ALTER TABLE orders VALIDATE CONSTRAINT orders_total;";
        let both = format!("{add}\n{validate}");
        assert!(findings(Dialect::Postgres, true, &both).contains(&("validate-with-add", 2)));
        assert!(!findings(Dialect::Postgres, true, validate).contains(&("validate-with-add", 1)));
        assert!(!findings(Dialect::Postgres, false, &both).contains(&("validate-with-add", 2)));
    }
}
