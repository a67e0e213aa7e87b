//! `DROP INDEX` without `CONCURRENTLY`.

use sqlparser::ast::{ObjectType, Statement};

use super::POSTGRES;
use crate::sql::lint::{Claim, Context, Rule, Severity};

pub(crate) const RULE: Rule = Rule {
    id: "drop-index-blocking",
    dialects: POSTGRES,
    severity: Severity::Warning,
    lock: "ACCESS EXCLUSIVE on the index's table",
    why: "the drop itself is quick, but its request waits behind every open transaction on the table, and every \
          query on the table queues behind it",
    fix: "DROP INDEX CONCURRENTLY, alone in a `-- no-transaction` migration",
    once_per_migration: false,
    by_size: false,
    claims: &[Claim {
        example: "DROP INDEX accounts_age;",
        mode: "ACCESS EXCLUSIVE",
        on: "accounts",
        rewrites: false,
    }],
    check,
    unparsed: None,
};

fn check(_: &Context<'_>, statement: &Statement) -> Option<String> {
    match statement {
        Statement::Drop {
            object_type: ObjectType::Index,
            names,
            ..
        } => {
            let concurrently = statement.to_string().to_uppercase().contains(" CONCURRENTLY ");
            (!concurrently).then(|| {
                let list: Vec<String> = names.iter().map(ToString::to_string).collect();
                format!("DROP INDEX {} locks its table against every query", list.join(", "))
            })
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use waymark_db::Dialect;

    use super::super::findings;

    #[test]
    fn fires_without_concurrently() {
        assert_eq!(
            findings(Dialect::Postgres, true, "DROP INDEX users_email;"),
            [("drop-index-blocking", 1)]
        );
        assert!(findings(Dialect::Postgres, false, "DROP INDEX CONCURRENTLY users_email;").is_empty());
    }
}
