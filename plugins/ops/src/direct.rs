//! MySQL/MariaDB and SQLite: no version schemas and no triggers there, so
//! an `ops.toml` runs as one change, `up` to applied and `down` back, with
//! no `complete`. The old application sees the new shape at once; the
//! operations that would break it (a rename, a type change) are for a
//! release that stops the old version first.
//!
//! On MySQL/MariaDB every `ALTER TABLE` is sent with `ALGORITHM=INSTANT`
//! and, where the server says it cannot, again with `ALGORITHM=INPLACE,
//! LOCK=NONE`: the server itself then refuses what it could only do by
//! copying the table or by stopping writes, and that refusal comes back
//! with its reason and the alternative. Nothing falls through to a copy.
//! SQLite has no such clauses and locks the whole database for any write;
//! its `ALTER TABLE` adds, drops and renames, and the operations it can
//! only do by rebuilding the table are refused.

use waymark_plugin_sdk::{Dialect, StepError, Value, db, log};

/// One statement of a direct change.
pub(crate) enum Change {
    /// `ALTER TABLE <table> <clause>`, with the online algorithms on
    /// MySQL/MariaDB.
    Alter { table: String, clause: String },
    /// Run as written.
    Plain(String),
}

/// What an operation's direct change is made against.
pub(crate) struct DirectCx {
    pub(crate) dialect: Dialect,
    /// Whether the database may be read: `false` while planning, when a
    /// column's definition is shown as a placeholder.
    pub(crate) live: bool,
}

impl DirectCx {
    /// A name quoted for the dialect.
    pub(crate) fn ident(&self, name: &str) -> String {
        match self.dialect {
            Dialect::Mysql => format!("`{}`", name.replace('`', "``")),
            _ => crate::ops::ident(name),
        }
    }

    /// A refusal of what SQLite can only do by rebuilding the table.
    pub(crate) fn sqlite_rebuild(&self, what: &str) -> Result<(), String> {
        if self.dialect == Dialect::Sqlite {
            return Err(format!(
                "{what}: SQLite can do this only by rebuilding the table; write the migration as up.sql and down.sql that make the new table, copy the rows over, drop the old one and rename the new (SQLite's own twelve steps, https://sqlite.org/lang_altertable.html)"
            ));
        }
        Ok(())
    }

    /// `table.column` as MySQL/MariaDB's `SHOW CREATE TABLE` writes it,
    /// for a `MODIFY` that must repeat everything it keeps.
    pub(crate) fn column(&self, table: &str, column: &str) -> Result<ColumnDef, String> {
        if !self.live {
            return Ok(ColumnDef {
                type_: format!("<the type of {table}.{column}>"),
                rest: String::new(),
                nullable: true,
            });
        }
        let columns = db::query(
            "SELECT COLUMN_TYPE, IS_NULLABLE FROM information_schema.COLUMNS \
             WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = ? AND COLUMN_NAME = ?",
            &[Value::from(table), Value::from(column)],
        )
        .map_err(|e| e.message)?;
        let Some(row) = columns.rows.first() else {
            return Err(format!("table {table} has no column {column}"));
        };
        let text = |i: usize| row.get(i).and_then(Value::as_str).unwrap_or_default().to_owned();
        let (type_, nullable) = (text(0), text(1) == "YES");
        let created = db::query(&format!("SHOW CREATE TABLE {}", self.ident(table)), &[]).map_err(|e| e.message)?;
        let statement = created
            .rows
            .first()
            .and_then(|r| r.get(1))
            .and_then(Value::as_str)
            .unwrap_or_default();
        let definition = column_line(statement, column)
            .ok_or_else(|| format!("SHOW CREATE TABLE {table} does not list column {column}"))?;
        let rest = definition.strip_prefix(type_.as_str()).ok_or_else(|| {
            format!("{table}.{column}: SHOW CREATE TABLE writes {definition:?}, not starting with its type {type_}")
        })?;
        Ok(ColumnDef {
            type_,
            rest: rest.to_owned(),
            nullable,
        })
    }
}

/// A MySQL/MariaDB column's definition: its type and what follows it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ColumnDef {
    pub(crate) type_: String,
    /// ` CHARACTER SET ... NOT NULL DEFAULT ... COMMENT ...`, as written.
    pub(crate) rest: String,
    pub(crate) nullable: bool,
}

impl ColumnDef {
    /// The definition with its nullability changed and all else kept: the
    /// server takes the last `NULL`/`NOT NULL` written.
    pub(crate) fn with_not_null(&self, not_null: bool) -> String {
        let mut rest = self.rest.clone();
        if not_null {
            // `DEFAULT NULL` would contradict it.
            if let Some(at) = rest.find(" DEFAULT NULL") {
                rest.replace_range(at..at + " DEFAULT NULL".len(), "");
            }
        } else if !self.nullable
            && let Some(at) = rest.find(" NOT NULL")
        {
            rest.replace_range(at..at + " NOT NULL".len(), "");
        }
        format!("{}{rest} {}", self.type_, if not_null { "NOT NULL" } else { "NULL" })
    }

    /// The definition with another type: a character set and collation
    /// go with it only to another character type.
    pub(crate) fn with_type(&self, type_: &str) -> String {
        let mut rest = self.rest.as_str();
        let textual = [
            "char",
            "varchar",
            "text",
            "tinytext",
            "mediumtext",
            "longtext",
            "enum",
            "set",
        ]
        .iter()
        .any(|t| type_.to_ascii_lowercase().starts_with(t));
        if !textual {
            for clause in [" CHARACTER SET ", " COLLATE "] {
                if let Some(after) = rest.strip_prefix(clause) {
                    rest = after.find(' ').map_or("", |end| &after[end..]);
                }
            }
        }
        format!("{type_}{rest}")
    }
}

/// The definition (after the name) of `column` in a `CREATE TABLE`
/// statement as `SHOW CREATE TABLE` prints it, one column a line.
fn column_line<'a>(statement: &'a str, column: &str) -> Option<&'a str> {
    let quoted = format!("`{}` ", column.replace('`', "``"));
    statement.lines().find_map(|line| {
        line.trim_start()
            .strip_prefix(quoted.as_str())
            .map(|rest| rest.trim_end().trim_end_matches(','))
    })
}

/// The statements of `changes` as they are first sent, for `plan`.
pub(crate) fn shown(cx: &DirectCx, changes: &[Change]) -> Vec<String> {
    changes
        .iter()
        .map(|c| match c {
            Change::Alter { table, clause } if cx.dialect == Dialect::Mysql => format!(
                "ALTER TABLE {} {clause}, ALGORITHM=INSTANT -- else ALGORITHM=INPLACE, LOCK=NONE; never a copy",
                cx.ident(table)
            ),
            Change::Alter { table, clause } => format!("ALTER TABLE {} {clause}", cx.ident(table)),
            Change::Plain(sql) => sql.clone(),
        })
        .collect()
}

/// MySQL/MariaDB's errors for an algorithm or lock level the operation
/// does not allow (`ER_ALTER_OPERATION_NOT_SUPPORTED`, `..._REASON`).
const NOT_SUPPORTED: [&str; 2] = ["1845", "1846"];

/// Runs `changes` in order for the op on `line` (`what` says what it
/// does), each `ALTER TABLE` on MySQL/MariaDB in the online ways only.
pub(crate) fn run(cx: &DirectCx, changes: &[Change], line: u32, what: &str) -> Result<(), StepError> {
    for change in changes {
        let (table, clause) = match change {
            Change::Alter { table, clause } if cx.dialect == Dialect::Mysql => (table, clause),
            Change::Alter { table, clause } => {
                execute(&format!("ALTER TABLE {} {clause}", cx.ident(table)), line)?;
                continue;
            }
            Change::Plain(sql) => {
                execute(sql, line)?;
                continue;
            }
        };
        let mut refused = String::new();
        let mut done = false;
        for algorithm in ["ALGORITHM=INSTANT", "ALGORITHM=INPLACE, LOCK=NONE"] {
            let sql = format!("ALTER TABLE {} {clause}, {algorithm}", cx.ident(table));
            log::debug(&sql);
            match db::execute(&sql, &[]) {
                Ok(_) => {
                    done = true;
                    break;
                }
                Err(e) if e.code.as_deref().is_some_and(|c| NOT_SUPPORTED.contains(&c)) => refused = e.message,
                Err(e) => return Err(StepError::at(line, e)),
            }
        }
        if !done {
            return Err(StepError::invalid_at(
                line,
                format!(
                    "{what}: MySQL/MariaDB can do this only by copying the table or blocking its writes, so waymark did not ask it to (the server said: {refused}); add a new column beside the old one, fill it in batches and move the application over before dropping the old, or use an online schema change tool such as gh-ost or pt-online-schema-change"
                ),
            ));
        }
    }
    Ok(())
}

/// `error` with `note` added to its message.
pub(crate) fn with_note(mut error: StepError, note: &str) -> StepError {
    match &mut error {
        StepError::Statement(s) => s.error.message.push_str(note),
        StepError::InvalidInput(i) => i.message.push_str(note),
        StepError::Other(m) => m.push_str(note),
    }
    error
}

fn execute(sql: &str, line: u32) -> Result<(), StepError> {
    log::debug(sql);
    db::execute(sql, &[]).map(drop).map_err(|e| StepError::at(line, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    const CREATED: &str = "CREATE TABLE `t` (\n  `id` int(11) NOT NULL,\n  `a` int(11) DEFAULT NULL,\n  `b` varchar(20) CHARACTER SET latin1 COLLATE latin1_swedish_ci NOT NULL DEFAULT 'x' COMMENT 'hi',\n  PRIMARY KEY (`id`)\n) ENGINE=InnoDB";

    fn def(column: &str, type_: &str, nullable: bool) -> ColumnDef {
        let line = column_line(CREATED, column).unwrap();
        ColumnDef {
            type_: type_.to_owned(),
            rest: line.strip_prefix(type_).unwrap().to_owned(),
            nullable,
        }
    }

    #[test]
    fn a_column_line_is_found_by_its_quoted_name_only() {
        assert_eq!(column_line(CREATED, "a"), Some("int(11) DEFAULT NULL"));
        assert_eq!(column_line(CREATED, "id"), Some("int(11) NOT NULL"));
        assert_eq!(column_line(CREATED, "c"), None);
    }

    #[test]
    fn nullability_changes_and_the_rest_stays() {
        assert_eq!(def("a", "int(11)", true).with_not_null(true), "int(11) NOT NULL");
        assert_eq!(
            def("b", "varchar(20)", false).with_not_null(false),
            "varchar(20) CHARACTER SET latin1 COLLATE latin1_swedish_ci DEFAULT 'x' COMMENT 'hi' NULL"
        );
    }

    #[test]
    fn a_new_type_keeps_the_character_set_only_if_it_is_textual() {
        let b = def("b", "varchar(20)", false);
        assert_eq!(
            b.with_type("varchar(40)"),
            "varchar(40) CHARACTER SET latin1 COLLATE latin1_swedish_ci NOT NULL DEFAULT 'x' COMMENT 'hi'"
        );
        assert_eq!(b.with_type("int"), "int NOT NULL DEFAULT 'x' COMMENT 'hi'");
    }
}
