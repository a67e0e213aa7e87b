//! More statements after one that took `ACCESS EXCLUSIVE` on an existing
//! table, in the same transaction.

use sqlparser::ast::Statement;

use super::POSTGRES;
use crate::sql::lint::{Claim, Context, Rule, Severity};

pub(crate) const RULE: Rule = Rule {
    id: "after-exclusive-lock",
    dialects: POSTGRES,
    severity: Severity::Warning,
    lock: "the earlier statement's ACCESS EXCLUSIVE, held until the migration commits",
    why: "an ACCESS EXCLUSIVE lock is held until the transaction ends, so every statement after it (a backfill \
          above all) runs while no query on that table gets through",
    fix: "end the migration after the statement that takes the lock, and put what follows in the next migration",
    once_per_migration: true,
    by_size: false,
    claims: &[Claim {
        example: "ALTER TABLE accounts ADD COLUMN active boolean;\nUPDATE accounts SET active = true;",
        mode: "ACCESS EXCLUSIVE",
        on: "accounts",
        rewrites: false,
    }],
    check,
    unparsed: None,
};

fn check(context: &Context<'_>, _: &Statement) -> Option<String> {
    let (line, table) = context.exclusive_before.as_ref()?;
    Some(format!(
        "this statement and those after it run while line {line}'s ACCESS EXCLUSIVE lock on {table} is held"
    ))
}

#[cfg(test)]
mod tests {
    use waymark_db::Dialect;

    use super::super::findings;

    #[test]
    fn fires_after_the_lock_in_a_transaction() {
        let script = "ALTER TABLE users ADD COLUMN nick text;\nUPDATE users SET nick = name;";
        assert!(findings(Dialect::Postgres, true, script).contains(&("after-exclusive-lock", 2)));
        assert!(!findings(Dialect::Postgres, true, script).contains(&("after-exclusive-lock", 1)));
        assert!(!findings(Dialect::Postgres, false, script).contains(&("after-exclusive-lock", 2)));
        // One statement alone is the safe way.
        assert!(findings(Dialect::Postgres, true, "ALTER TABLE users ADD COLUMN nick text;").is_empty());
    }
}
