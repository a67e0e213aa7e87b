//! Other migration tools' history tables, read (never written) so that
//! `baseline --from` can adopt what they applied.
//!
//! Each tool keeps its own shape, and its own idea of "applied":
//! - diesel: a row per applied migration in `__diesel_schema_migrations`,
//!   the version without its dashes;
//! - sqlx: a row per migration in `_sqlx_migrations`, `success = false`
//!   for one that failed part-way (MySQL);
//! - golang-migrate: one row in `schema_migrations`, the newest version
//!   applied, `dirty` while one failed part-way;
//! - dbmate: a row per applied migration in `schema_migrations`, without
//!   golang-migrate's `dirty` column;
//! - goose: a log in `goose_db_version`, one row per apply and per revert;
//!   the newest row of a version says whether it is applied; version 0 is
//!   goose's own first row;
//! - Flyway: `flyway_schema_history`, one row per script run, `success`
//!   false for a failed one, `UNDO_SQL` rows reverting a version, a
//!   `BASELINE` row standing for every version up to its own, and `SCHEMA`
//!   and `DELETE` rows of its own bookkeeping.

use std::fmt;

use crate::{Conn, DbError, Dialect, Value};

/// A migration tool whose history waymark can adopt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum OtherTool {
    /// diesel.
    Diesel,
    /// sqlx-cli and `sqlx::migrate!`.
    Sqlx,
    /// golang-migrate.
    GolangMigrate,
    /// dbmate.
    Dbmate,
    /// goose.
    Goose,
    /// Flyway.
    Flyway,
}

impl OtherTool {
    /// Every tool, for messages.
    pub const ALL: [OtherTool; 6] = [
        OtherTool::Diesel,
        OtherTool::Sqlx,
        OtherTool::GolangMigrate,
        OtherTool::Dbmate,
        OtherTool::Goose,
        OtherTool::Flyway,
    ];

    /// The tool's name on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            OtherTool::Diesel => "diesel",
            OtherTool::Sqlx => "sqlx",
            OtherTool::GolangMigrate => "golang-migrate",
            OtherTool::Dbmate => "dbmate",
            OtherTool::Goose => "goose",
            OtherTool::Flyway => "flyway",
        }
    }

    /// The table in which the tool records its history.
    pub fn table(self) -> &'static str {
        match self {
            OtherTool::Diesel => "__diesel_schema_migrations",
            OtherTool::Sqlx => "_sqlx_migrations",
            OtherTool::GolangMigrate | OtherTool::Dbmate => "schema_migrations",
            OtherTool::Goose => "goose_db_version",
            OtherTool::Flyway => "flyway_schema_history",
        }
    }

    /// Parses a name given by [`OtherTool::as_str`].
    pub fn parse(name: &str) -> Result<Self, String> {
        OtherTool::ALL.into_iter().find(|t| t.as_str() == name).ok_or_else(|| {
            let names: Vec<&str> = OtherTool::ALL.iter().map(|t| t.as_str()).collect();
            format!("unknown tool {name:?}: expected one of {}", names.join(", "))
        })
    }
}

impl fmt::Display for OtherTool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What another tool's history says, in the tool's own terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OtherHistory {
    /// Versions applied, as the tool wrote them, oldest first.
    pub applied: Vec<String>,
    /// For golang-migrate: every version up to this one is applied (it
    /// records only the newest); for Flyway: its `BASELINE` row's version.
    pub up_to: Option<String>,
    /// Versions the tool marks as failed part-way (dirty, `success =
    /// false`), with its words for it.
    pub failed: Vec<(String, String)>,
    /// sqlx's checksum of each version's file as it applied it (SHA-384 of
    /// the file's bytes), to tell a file changed since.
    pub checksums: Vec<(String, Vec<u8>)>,
}

impl Conn {
    /// Reads `tool`'s history table. An error names the table when it is
    /// not there, or when it is not the tool's (dbmate's and
    /// golang-migrate's tables share a name).
    pub async fn other_history(&mut self, tool: OtherTool) -> Result<OtherHistory, DbError> {
        let table = tool.table();
        let columns = self.columns_of(table).await?;
        if columns.is_empty() {
            return Err(DbError::Config(format!(
                "no {tool} history here: the database has no table {table}"
            )));
        }
        let has = |c: &str| columns.iter().any(|x| x.eq_ignore_ascii_case(c));
        match tool {
            OtherTool::GolangMigrate if !has("dirty") => {
                return Err(DbError::Config(format!(
                    "{table} has no `dirty` column, so it is not golang-migrate's (dbmate's has the same name: \
                     try --from dbmate)"
                )));
            }
            OtherTool::Dbmate if has("dirty") => {
                return Err(DbError::Config(format!(
                    "{table} has a `dirty` column, so it is golang-migrate's, not dbmate's: try --from golang-migrate"
                )));
            }
            _ => {}
        }
        let text = match self.dialect() {
            Dialect::Mysql => "CHAR",
            _ => "TEXT",
        };
        let flag = |c: &str| format!("CASE WHEN {c} THEN 1 ELSE 0 END");
        let sql = match tool {
            OtherTool::Diesel | OtherTool::Dbmate => {
                format!("SELECT CAST(version AS {text}), 1, '', NULL FROM {table} ORDER BY version")
            }
            OtherTool::Sqlx => format!(
                "SELECT CAST(version AS {text}), {}, '', checksum FROM {table} ORDER BY version",
                flag("success")
            ),
            OtherTool::GolangMigrate => {
                format!(
                    "SELECT CAST(version AS {text}), {}, '', NULL FROM {table}",
                    flag("NOT dirty")
                )
            }
            OtherTool::Goose => format!(
                "SELECT CAST(version_id AS {text}), {}, '', NULL FROM {table} ORDER BY id",
                flag("is_applied")
            ),
            OtherTool::Flyway => format!(
                "SELECT CAST(version AS {text}), {}, type, NULL FROM {table} ORDER BY installed_rank",
                flag("success")
            ),
        };
        let rows = self.query_rows(&sql, &[], usize::MAX).await.map_err(|e| match e {
            DbError::Query { message, .. } => {
                DbError::Config(format!("{table} is not the shape {tool} writes: {message}"))
            }
            other => other,
        })?;
        let mut checksums = Vec::new();
        let rows: Vec<(Option<String>, bool, String)> = rows
            .rows
            .into_iter()
            .map(|r| {
                let mut r = r.into_iter();
                let version = match r.next() {
                    Some(Value::Text(v)) => Some(v),
                    Some(Value::Int(v)) => Some(v.to_string()),
                    _ => None,
                };
                let ok = matches!(r.next(), Some(Value::Int(1)) | Some(Value::Bool(true)));
                let kind = match r.next() {
                    Some(Value::Text(t)) => t,
                    _ => String::new(),
                };
                if let (Some(v), Some(Value::Bytes(sum))) = (&version, r.next()) {
                    checksums.push((v.clone(), sum));
                }
                (version, ok, kind)
            })
            .collect();
        Ok(OtherHistory {
            checksums,
            ..fold(tool, rows)
        })
    }

    /// The column names of `table`, none when it does not exist.
    async fn columns_of(&mut self, table: &str) -> Result<Vec<String>, DbError> {
        let sql = match self.dialect() {
            Dialect::Postgres => {
                "SELECT CAST(attname AS TEXT) FROM pg_attribute WHERE attrelid = to_regclass($1) AND attnum > 0 \
                 AND NOT attisdropped"
            }
            Dialect::Mysql => {
                "SELECT CAST(column_name AS CHAR) FROM information_schema.columns WHERE table_schema = DATABASE() \
                 AND table_name = ?"
            }
            Dialect::Sqlite => "SELECT name FROM pragma_table_info(?)",
        };
        let rows = self
            .query_rows(sql, &[Value::Text(table.to_owned())], usize::MAX)
            .await?;
        Ok(rows
            .rows
            .into_iter()
            .filter_map(|r| match r.into_iter().next() {
                Some(Value::Text(c)) => Some(c),
                _ => None,
            })
            .collect())
    }
}

/// Turns the tool's rows (version, success, Flyway's row type) into what
/// it considers applied and failed.
fn fold(tool: OtherTool, rows: Vec<(Option<String>, bool, String)>) -> OtherHistory {
    let mut history = OtherHistory {
        applied: Vec::new(),
        up_to: None,
        failed: Vec::new(),
        checksums: Vec::new(),
    };
    let failed = |v: &str| match tool {
        OtherTool::GolangMigrate => (v.to_owned(), "dirty".to_owned()),
        _ => (v.to_owned(), "failed".to_owned()),
    };
    match tool {
        OtherTool::Diesel | OtherTool::Dbmate | OtherTool::Sqlx => {
            for (version, ok, _) in rows {
                let Some(v) = version else { continue };
                if ok {
                    history.applied.push(v);
                } else {
                    history.failed.push(failed(&v));
                }
            }
        }
        OtherTool::GolangMigrate => {
            for (version, ok, _) in rows {
                let Some(v) = version else { continue };
                if !ok {
                    history.failed.push(failed(&v));
                }
                history.up_to = Some(v);
            }
        }
        OtherTool::Goose => {
            // The newest row of each version decides; the order of first
            // appearance is the order applied.
            for (version, applied, _) in rows {
                let Some(v) = version else { continue };
                if v == "0" {
                    continue;
                }
                history.applied.retain(|a| *a != v);
                if applied {
                    history.applied.push(v);
                }
            }
        }
        OtherTool::Flyway => {
            for (version, ok, kind) in rows {
                let kind = kind.to_ascii_uppercase();
                let Some(v) = version else {
                    // A repeatable migration: it has no version.
                    if kind != "SCHEMA" {
                        history.failed.push((
                            "(repeatable)".to_owned(),
                            "a repeatable migration (R__), which waymark cannot adopt".to_owned(),
                        ));
                    }
                    continue;
                };
                match kind.as_str() {
                    "SCHEMA" | "DELETE" => {}
                    "BASELINE" => history.up_to = Some(v),
                    "UNDO_SQL" | "UNDO_JDBC" | "UNDO_SCRIPT" => {
                        if ok {
                            history.applied.retain(|a| *a != v);
                        } else {
                            history.failed.push((v, "failed while being undone".to_owned()));
                        }
                    }
                    _ if ok => {
                        history.applied.retain(|a| *a != v);
                        history.applied.push(v);
                    }
                    _ => history.failed.push(failed(&v)),
                }
            }
        }
    }
    history
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(v: &str, ok: bool, kind: &str) -> (Option<String>, bool, String) {
        (Some(v.to_owned()), ok, kind.to_owned())
    }

    #[test]
    fn goose_keeps_the_newest_row_of_each_version() {
        let h = fold(
            OtherTool::Goose,
            vec![
                row("0", true, ""),
                row("1", true, ""),
                row("2", true, ""),
                row("2", false, ""),
                row("3", true, ""),
            ],
        );
        assert_eq!(h.applied, ["1", "3"]);
        assert!(h.failed.is_empty());
    }

    #[test]
    fn flyway_reads_baseline_undo_failure_and_its_own_rows() {
        let h = fold(
            OtherTool::Flyway,
            vec![
                row("0", true, "SCHEMA"),
                row("1", true, "BASELINE"),
                row("1.1", true, "SQL"),
                row("1.2", true, "SQL"),
                row("1.2", true, "UNDO_SQL"),
                row("1.3", false, "SQL"),
            ],
        );
        assert_eq!(h.up_to.as_deref(), Some("1"));
        assert_eq!(h.applied, ["1.1"]);
        assert_eq!(h.failed, [("1.3".to_owned(), "failed".to_owned())]);
    }

    #[test]
    fn golang_migrate_records_only_the_newest_version() {
        let h = fold(OtherTool::GolangMigrate, vec![row("7", false, "")]);
        assert_eq!(h.up_to.as_deref(), Some("7"));
        assert_eq!(h.failed, [("7".to_owned(), "dirty".to_owned())]);
    }
}
