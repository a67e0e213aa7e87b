//! `CREATE INDEX` without `CONCURRENTLY` on a table that already exists.

use sqlparser::ast::Statement;

use super::POSTGRES;
use crate::sql::lint::{Claim, Context, Rule, Severity};

pub(crate) const RULE: Rule = Rule {
    id: "create-index-blocking",
    dialects: POSTGRES,
    severity: Severity::Error,
    lock: "SHARE on the table, for the whole build",
    why: "every INSERT, UPDATE and DELETE on the table waits until the index is built, which on a big table \
          takes minutes",
    fix: "CREATE INDEX CONCURRENTLY, alone in a `-- no-transaction` migration",
    once_per_migration: false,
    by_size: true,
    claims: &[Claim {
        example: "CREATE INDEX accounts_email ON accounts (email);",
        mode: "SHARE",
        on: "accounts",
        rewrites: false,
    }],
    check,
    unparsed: None,
};

fn check(context: &Context<'_>, statement: &Statement) -> Option<String> {
    let Statement::CreateIndex(index) = statement else {
        return None;
    };
    (!index.concurrently && context.existing(&index.table_name)).then(|| {
        format!(
            "CREATE INDEX on {} blocks its writes until the index is built",
            index.table_name
        )
    })
}

#[cfg(test)]
mod tests {
    use waymark_db::Dialect;

    use super::super::findings;

    #[test]
    fn fires_on_an_existing_table_and_not_concurrently_or_on_a_new_one() {
        assert_eq!(
            findings(Dialect::Postgres, true, "CREATE INDEX users_email ON users (email);"),
            [("create-index-blocking", 1)]
        );
        assert!(
            findings(
                Dialect::Postgres,
                false,
                "CREATE INDEX CONCURRENTLY users_email ON users (email);"
            )
            .is_empty()
        );
        assert!(
            findings(
                Dialect::Postgres,
                true,
                "CREATE TABLE notes (id int PRIMARY KEY, body text);\nCREATE INDEX notes_body ON notes (body);"
            )
            .is_empty()
        );
    }
}
