//! What a page copy of a SQLite file (`backup create --pages`) needs from
//! the database: where its file is, whether that file alone is a snapshot,
//! and a copy made by SQLite itself when it is not. The copying and the
//! set's format belong to `waymark-backup`.

use std::path::{Path, PathBuf};
use std::str::FromStr;

use sqlx::sqlite::SqliteConnectOptions;

use crate::conn::{Conn, Database};
use crate::dialect::Dialect;
use crate::dump::text_rows;
use crate::error::DbError;
use crate::url::redact;

/// A SQLite database's main file, as a read transaction sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageSource {
    /// The main database's file.
    pub path: PathBuf,
    /// `PRAGMA journal_mode`, lower case: `delete`, `truncate`,
    /// `persist`, `memory`, `off` or `wal`.
    pub journal_mode: String,
    /// `PRAGMA page_size`.
    pub page_size: u64,
    /// `PRAGMA page_count`.
    pub page_count: u64,
}

impl PageSource {
    /// Whether the main file alone holds the snapshot while a read
    /// transaction lasts. In rollback-journal modes the transaction's
    /// SHARED lock keeps every writer from committing, so the file cannot
    /// change under it; in WAL mode committed pages live in the `-wal`
    /// file until a checkpoint copies them, which readers do not stop.
    pub fn file_is_snapshot(&self) -> bool {
        self.journal_mode != "wal"
    }
}

impl Conn {
    /// On SQLite, in a transaction ([`Database::begin_snapshot`]): the
    /// main database's file, journal mode and size. Its first read takes
    /// the transaction's SHARED lock, held until it ends.
    pub async fn page_source(&mut self) -> Result<PageSource, DbError> {
        if self.dialect() != Dialect::Sqlite {
            return Err(DbError::Config(format!(
                "a copy of pages is of a SQLite file, and this database is {}",
                self.dialect().name()
            )));
        }
        // The count reads the schema's pages, which is what takes the lock
        // in a deferred transaction; the pragmas alone may not.
        let sql = "SELECT (SELECT file FROM pragma_database_list WHERE name = 'main'), \
                   (SELECT journal_mode FROM pragma_journal_mode), \
                   (SELECT page_size FROM pragma_page_size), \
                   (SELECT page_count FROM pragma_page_count), \
                   (SELECT count(*) FROM sqlite_schema)";
        let row = text_rows(self.query_rows(sql, &[], 1).await?)
            .into_iter()
            .next()
            .unwrap_or_default();
        let field = |i: usize| row.get(i).cloned().unwrap_or_default();
        let number = |i: usize| field(i).parse::<u64>().unwrap_or(0);
        Ok(PageSource {
            path: PathBuf::from(field(0)),
            journal_mode: field(1).to_ascii_lowercase(),
            page_size: number(2),
            page_count: number(3),
        })
    }
}

/// What SQLite's own check of a database file found, and what it holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FileCheck {
    /// The check's findings (the first 20); none when it says `ok`.
    pub problems: Vec<String>,
    /// Its tables, SQLite's own aside; counted only when it checks.
    pub tables: usize,
    /// Rows over those tables; counted only when it checks.
    pub rows: u64,
}

impl Conn {
    /// Runs SQLite's check of the whole file, `PRAGMA integrity_check` or,
    /// `quick`, `PRAGMA quick_check` (which does not check each index
    /// against its table's rows, and takes a quarter of the time), and,
    /// when it passes, counts the tables and their rows.
    pub async fn check_file(&mut self, quick: bool) -> Result<FileCheck, DbError> {
        if self.dialect() != Dialect::Sqlite {
            return Err(DbError::Config(format!(
                "PRAGMA integrity_check is SQLite's, and this database is {}",
                self.dialect().name()
            )));
        }
        // Pages damaged badly enough fail the check itself, as SQLite's
        // CORRUPT or NOTADB, rather than being listed by it: a finding too.
        match self.check_and_count(quick).await {
            Err(DbError::Query {
                code: Some(code),
                message,
                ..
            }) if code.parse::<i32>().is_ok_and(|c| matches!(c & 0xff, 11 | 26)) => Ok(FileCheck {
                problems: vec![message],
                ..FileCheck::default()
            }),
            other => other,
        }
    }

    async fn check_and_count(&mut self, quick: bool) -> Result<FileCheck, DbError> {
        let check = if quick {
            "PRAGMA quick_check(20)"
        } else {
            "PRAGMA integrity_check(20)"
        };
        let verdict: Vec<String> = text_rows(self.query_rows(check, &[], 20).await?)
            .into_iter()
            .filter_map(|row| row.into_iter().next())
            .collect();
        if verdict != ["ok"] {
            // Counting rows in damaged pages would only fail less clearly.
            return Ok(FileCheck {
                problems: verdict,
                ..FileCheck::default()
            });
        }
        let tables = self.tables().await?;
        let mut rows = 0;
        for table in &tables {
            let sql = format!("SELECT count(*) FROM {}", Dialect::Sqlite.quote_table(&table.name));
            let counted = text_rows(self.query_rows(&sql, &[], 1).await?);
            rows += counted
                .first()
                .and_then(|r| r.first())
                .and_then(|n| n.parse::<u64>().ok())
                .unwrap_or(0);
        }
        Ok(FileCheck {
            problems: Vec::new(),
            tables: tables.len(),
            rows,
        })
    }
}

impl Database {
    /// Writes a copy of the database to the new file `path` with
    /// `VACUUM INTO`, which reads one snapshot of its own. It must run
    /// outside a transaction, so it takes a connection of its own.
    pub async fn vacuum_into(&self, path: &Path) -> Result<(), DbError> {
        if self.dialect() != Dialect::Sqlite {
            return Err(DbError::Config(format!(
                "VACUUM INTO is SQLite's, and this database is {}",
                self.dialect().name()
            )));
        }
        let text = path
            .to_str()
            .ok_or_else(|| DbError::Config(format!("{}: SQLite takes a file name in UTF-8", path.display())))?;
        let mut conn = self.connection().await?;
        conn.execute(&format!("VACUUM INTO '{}'", text.replace('\'', "''")))
            .await
            .map_err(|e| e.context(format!("copying the database into {} (VACUUM INTO)", path.display())))?;
        Ok(())
    }
}

/// The file a `sqlite://` URL names, found without opening it (opening
/// creates it); `None` when the database lives in memory.
pub fn sqlite_file(url: &str) -> Result<Option<PathBuf>, DbError> {
    let options = SqliteConnectOptions::from_str(url).map_err(|e| DbError::InvalidUrl {
        url: redact(url),
        message: e.to_string(),
    })?;
    let path = options.get_filename();
    // sqlx names an in-memory database `file:sqlx-in-memory-N`.
    let in_memory = url.contains("mode=memory") || path.to_string_lossy().starts_with("file:sqlx-in-memory-");
    Ok((!in_memory).then(|| path.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sqlite_url_names_its_file_or_none_in_memory() {
        let file = |url: &str| sqlite_file(url).unwrap();
        assert_eq!(file("sqlite://app.db"), Some(PathBuf::from("app.db")));
        assert_eq!(
            file("sqlite:///tmp/a%20b.db?mode=rwc"),
            Some(PathBuf::from("/tmp/a b.db"))
        );
        assert_eq!(file("sqlite::memory:"), None);
        assert_eq!(file("sqlite://x.db?mode=memory"), None);
        assert!(sqlite_file("sqlite://x.db?mode=sideways").is_err());
    }
}
