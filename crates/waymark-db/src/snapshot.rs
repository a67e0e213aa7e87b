//! A picture of a database's tables, columns and contents, to tell what a
//! step changed: `waymark plugin test` compares one taken before `up`,
//! after it, after `down` and after `up` again.

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};

use crate::conn::Database;
use crate::dialect::Dialect;
use crate::error::DbError;
use crate::value::Value;

/// The most rows a snapshot reads from one table: snapshots are for scratch
/// databases, not production ones.
const MAX_ROWS: usize = 1_000_000;

/// One table as a snapshot saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableSnapshot {
    /// `name type` of each column, in order.
    pub columns: Vec<String>,
    /// How many rows it held.
    pub rows: u64,
    /// SHA-256 of its rows, independent of their order.
    pub digest: String,
}

/// Every table of a database (schema-qualified on PostgreSQL).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Snapshot {
    /// Tables by name.
    pub tables: BTreeMap<String, TableSnapshot>,
}

impl Database {
    /// Reads every base table except those whose name starts with `skip`
    /// (waymark's own).
    pub async fn snapshot(&self, skip: &str) -> Result<Snapshot, DbError> {
        let mut conn = self.connection().await?;
        let (list, columns) = match self.dialect() {
            Dialect::Postgres => (
                "SELECT table_schema || '.' || table_name FROM information_schema.tables \
                 WHERE table_type = 'BASE TABLE' AND table_schema NOT IN ('pg_catalog', 'information_schema') \
                 ORDER BY 1",
                "SELECT column_name || ' ' || data_type FROM information_schema.columns \
                 WHERE table_schema || '.' || table_name = $1 ORDER BY ordinal_position",
            ),
            Dialect::Mysql => (
                "SELECT table_name FROM information_schema.tables \
                 WHERE table_type = 'BASE TABLE' AND table_schema = DATABASE() ORDER BY 1",
                "SELECT CONCAT(column_name, ' ', column_type) FROM information_schema.columns \
                 WHERE table_schema = DATABASE() AND table_name = ? ORDER BY ordinal_position",
            ),
            Dialect::Sqlite => (
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY 1",
                "SELECT name || ' ' || type FROM pragma_table_info(?) ORDER BY cid",
            ),
        };
        let names = conn.query_rows(list, &[], MAX_ROWS).await?;
        let mut snapshot = Snapshot::default();
        for row in names.rows {
            let Some(Value::Text(name)) = row.into_iter().next() else {
                continue;
            };
            let bare = name.rsplit('.').next().unwrap_or(&name);
            if bare.starts_with(skip) {
                continue;
            }
            let described = conn.query_rows(columns, &[Value::Text(name.clone())], MAX_ROWS).await?;
            let columns: Vec<String> = described
                .rows
                .into_iter()
                .filter_map(|r| match r.into_iter().next() {
                    Some(Value::Text(c)) => Some(c),
                    _ => None,
                })
                .collect();
            let quoted = self.dialect().quote_table(&name);
            let contents = conn
                .query_rows(&format!("SELECT * FROM {quoted}"), &[], MAX_ROWS)
                .await?;
            let mut lines: Vec<String> = contents.rows.iter().map(|r| format!("{r:?}")).collect();
            lines.sort_unstable();
            let mut hash = Sha256::new();
            for line in &lines {
                hash.update(line.as_bytes());
                hash.update(b"\n");
            }
            snapshot.tables.insert(
                name,
                TableSnapshot {
                    columns,
                    rows: lines.len() as u64,
                    digest: hex::encode(hash.finalize()),
                },
            );
        }
        Ok(snapshot)
    }
}

/// What changed from one snapshot to another, one line per change.
pub fn differences(before: &Snapshot, after: &Snapshot) -> Vec<String> {
    let mut out = Vec::new();
    for (name, table) in &after.tables {
        match before.tables.get(name) {
            None => out.push(format!("created table {name} ({} rows)", table.rows)),
            Some(old) => {
                for c in table.columns.iter().filter(|c| !old.columns.contains(c)) {
                    out.push(format!("{name}: added column {c}"));
                }
                for c in old.columns.iter().filter(|c| !table.columns.contains(c)) {
                    out.push(format!("{name}: dropped column {c}"));
                }
                if old.rows != table.rows {
                    out.push(format!("{name}: {} rows -> {} rows", old.rows, table.rows));
                } else if old.digest != table.digest {
                    out.push(format!("{name}: contents changed ({} rows)", table.rows));
                }
            }
        }
    }
    for name in before.tables.keys().filter(|n| !after.tables.contains_key(*n)) {
        out.push(format!("dropped table {name}"));
    }
    out
}
