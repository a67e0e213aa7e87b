//! DDL that would wait for its lock without a lock timeout: waymark bounds
//! every statement's wait itself (`[locks] timeout`), unless the setting
//! is off or the script turns the server's bound off.

use sqlparser::ast::Statement;

use crate::sql::lint::{Context, Rule, Severity};
use waymark_db::Dialect;

pub(crate) const RULE: Rule = Rule {
    id: "no-lock-timeout",
    dialects: &[Dialect::Postgres, Dialect::Mysql],
    severity: Severity::Warning,
    lock: "whatever the statement needs, waited for without end",
    why: "a DDL statement waiting for its lock behind one long transaction queues every later query on the \
          table behind itself, for as long as it waits: without a lock timeout, that is until the other \
          transaction ends",
    fix: "leave [locks] timeout on (waymark then retries a timed-out migration with backoff), and do not set \
          lock_timeout (PostgreSQL) or lock_wait_timeout (MySQL) off in the script",
    once_per_migration: true,
    by_size: false,
    claims: &[],
    check,
    unparsed: None,
};

fn check(context: &Context<'_>, statement: &Statement) -> Option<String> {
    let why = context.no_lock_timeout.as_deref()?;
    let what = match statement {
        Statement::AlterTable { name, .. } if context.existing(name) => format!("ALTER TABLE {name}"),
        Statement::CreateIndex(index) if !index.concurrently && context.existing(&index.table_name) => {
            format!("CREATE INDEX on {}", index.table_name)
        }
        Statement::Drop { names, .. } if names.iter().any(|n| context.existing(n)) => "DROP".to_owned(),
        Statement::Truncate { .. } => "TRUNCATE".to_owned(),
        _ => return None,
    };
    Some(format!(
        "{what} waits for its lock without a timeout ({why}), and every query on the table queues behind it \
         meanwhile"
    ))
}

/// What a `SET` statement does to the lock timeout: `Some(None)` turns it
/// on, `Some(Some(why))` turns it off, saying how; `None` if it is not
/// about it.
pub(crate) fn set_by(dialect: Dialect, statement: &Statement, line: u32) -> Option<Option<String>> {
    let Statement::Set(_) = statement else {
        return None;
    };
    let text = statement.to_string().to_lowercase();
    let variable = match dialect {
        Dialect::Postgres => "lock_timeout",
        _ => "lock_wait_timeout",
    };
    let (_, value) = text.split_once(variable)?;
    let value = value
        .trim_start()
        .trim_start_matches(['=', ' '])
        .trim_start_matches("to ")
        .trim()
        .trim_matches(['\'', '"', ';']);
    let off = match dialect {
        // 0 waits forever, as does the default a role or server has not
        // changed.
        Dialect::Postgres => value == "0" || value == "default",
        // In seconds; the default is a year. A minute is as good as off.
        _ => value == "default" || value.parse::<u64>().is_ok_and(|s| s >= 60),
    };
    Some(off.then(|| format!("line {line} sets {variable} to {value}")))
}

#[cfg(test)]
mod tests {
    use waymark_db::Dialect;

    use super::super::findings;
    use crate::sql::lint::Columns;

    #[test]
    fn fires_where_the_script_turns_the_timeout_off() {
        let off = "SET lock_timeout = 0;\nALTER TABLE users ADD COLUMN a int;\nALTER TABLE users ADD COLUMN b int;";
        assert_eq!(
            findings(Dialect::Postgres, true, off)
                .into_iter()
                .filter(|f| f.0 == "no-lock-timeout")
                .collect::<Vec<_>>(),
            [("no-lock-timeout", 2)]
        );
        let on_again = "SET lock_timeout = 0;\nSET lock_timeout = '2s';\nALTER TABLE users ADD COLUMN a int;";
        assert!(findings(Dialect::Postgres, true, on_again).is_empty());
        let mysql = "SET SESSION lock_wait_timeout = 31536000;\nALTER TABLE users ADD COLUMN a int, ALGORITHM=INSTANT;";
        assert!(findings(Dialect::Mysql, false, mysql).contains(&("no-lock-timeout", 2)));
        assert!(
            !findings(
                Dialect::Mysql,
                false,
                "SET SESSION lock_wait_timeout = 5;\nALTER TABLE users ADD COLUMN a int, ALGORITHM=INSTANT;"
            )
            .contains(&("no-lock-timeout", 2))
        );
    }

    #[test]
    fn fires_where_the_setting_is_off() {
        let sql = "ALTER TABLE users ADD COLUMN a int;";
        let all = crate::sql::lint::lint_with(Dialect::Postgres, true, &[(1, sql)], sql, &mut Columns::new(), false);
        let f = all.iter().find(|f| f.rule == "no-lock-timeout").expect("fires");
        assert!(f.message.contains("[locks] timeout is off"), "{}", f.message);
        // A new table has no one waiting on it.
        let sql = "CREATE TABLE t (id int);\nALTER TABLE t ADD COLUMN a int;";
        let statements = [(1, "CREATE TABLE t (id int)"), (2, "ALTER TABLE t ADD COLUMN a int")];
        let all = crate::sql::lint::lint_with(Dialect::Postgres, true, &statements, sql, &mut Columns::new(), false);
        assert!(all.is_empty(), "{all:?}");
    }
}
