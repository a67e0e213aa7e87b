//! MySQL/MariaDB: an `ALTER TABLE` that does not ask for an online
//! algorithm, so the server may copy the table and block writes.

use sqlparser::ast::{AlterTableAlgorithm, AlterTableLock, AlterTableOperation, Statement};
use waymark_db::Dialect;

use crate::sql::lint::{Context, Rule, Severity};

pub(crate) const RULE: Rule = Rule {
    id: "mysql-alter-algorithm",
    dialects: &[Dialect::Mysql],
    severity: Severity::Warning,
    lock: "a metadata lock, and with ALGORITHM=COPY a table copy that blocks writes",
    why: "without ALGORITHM=INSTANT or INPLACE and LOCK=NONE the server picks the algorithm, and for many \
          changes (a type change, a primary key, some column orders) it copies the whole table while writes wait",
    fix: "say ALGORITHM=INSTANT (or INPLACE), LOCK=NONE: the server then refuses at once what it cannot do \
          online, instead of copying the table",
    once_per_migration: false,
    by_size: false,
    claims: &[],
    check,
    unparsed: None,
};

fn check(context: &Context<'_>, statement: &Statement) -> Option<String> {
    let (name, operations) = super::altered(context, statement)?;
    let online_algorithm = operations.iter().any(|op| {
        matches!(
            op,
            AlterTableOperation::Algorithm {
                algorithm: AlterTableAlgorithm::Instant | AlterTableAlgorithm::Inplace,
                ..
            }
        )
    });
    let no_lock = operations.iter().any(|op| {
        matches!(
            op,
            AlterTableOperation::Lock {
                lock: AlterTableLock::None,
                ..
            }
        )
    });
    let instant = operations.iter().any(|op| {
        matches!(
            op,
            AlterTableOperation::Algorithm {
                algorithm: AlterTableAlgorithm::Instant,
                ..
            }
        )
    });
    (!(instant || online_algorithm && no_lock))
        .then(|| format!("ALTER TABLE {name} lets the server choose to copy the table"))
}

#[cfg(test)]
mod tests {
    use waymark_db::Dialect;

    use super::super::findings;

    #[test]
    fn fires_without_an_online_algorithm() {
        assert!(
            findings(Dialect::Mysql, false, "ALTER TABLE users ADD COLUMN nick VARCHAR(40);")
                .contains(&("mysql-alter-algorithm", 1))
        );
        for sql in [
            "ALTER TABLE users ADD COLUMN nick VARCHAR(40), ALGORITHM=INSTANT;",
            "ALTER TABLE users ADD INDEX users_nick (nick), ALGORITHM=INPLACE, LOCK=NONE;",
        ] {
            assert!(
                !findings(Dialect::Mysql, false, sql).contains(&("mysql-alter-algorithm", 1)),
                "{sql}"
            );
        }
        assert!(findings(Dialect::Postgres, false, "ALTER TABLE users ADD COLUMN nick text;").is_empty());
    }
}
