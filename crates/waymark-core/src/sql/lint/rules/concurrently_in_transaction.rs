//! A `CONCURRENTLY` statement in a migration that runs in a transaction.

use sqlparser::ast::Statement;

use super::POSTGRES;
use crate::sql::lint::{Context, Rule, Severity};

pub(crate) const RULE: Rule = Rule {
    id: "concurrently-in-transaction",
    dialects: POSTGRES,
    severity: Severity::Error,
    lock: "none: PostgreSQL refuses it",
    why: "CREATE INDEX CONCURRENTLY and its kin cannot run inside a transaction block, so the migration fails",
    fix: "put `-- no-transaction` on the script's first line, with the statement alone in its migration",
    once_per_migration: false,
    by_size: false,
    claims: &[],
    check,
    unparsed: None,
};

fn check(context: &Context<'_>, statement: &Statement) -> Option<String> {
    if !context.transactional {
        return None;
    }
    let concurrently = match statement {
        Statement::CreateIndex(index) => index.concurrently,
        other => crate::sql::concurrently(context.dialect, &other.to_string()),
    };
    concurrently.then(|| "CONCURRENTLY in a migration that runs in a transaction fails".to_owned())
}

#[cfg(test)]
mod tests {
    use waymark_db::Dialect;

    use super::super::findings;

    #[test]
    fn fires_in_a_transaction_only() {
        assert_eq!(
            findings(
                Dialect::Postgres,
                true,
                "CREATE INDEX CONCURRENTLY users_email ON users (email);"
            ),
            [("concurrently-in-transaction", 1)]
        );
        assert!(
            findings(
                Dialect::Postgres,
                false,
                "CREATE INDEX CONCURRENTLY users_email ON users (email);"
            )
            .is_empty()
        );
    }
}
