//! Reading a database out and writing it back, for backups: the tables and
//! their keys, each table's rows in a canonical byte form (in primary-key
//! order, so a backup's digest can be compared with a live database), the
//! schema of MySQL and SQLite (PostgreSQL's comes from `pg_dump`), and
//! sequence positions.
//!
//! The canonical form of a table's rows is its dialect's own:
//! - PostgreSQL: `COPY ... TO STDOUT` text, one line per row, exact for
//!   every type and loaded back with `COPY ... FROM STDIN`;
//! - MySQL/MariaDB and SQLite: each row as the list of SQL literals the
//!   database's own `QUOTE()` gives, length-prefixed (a literal may hold a
//!   newline), loaded back with `INSERT ... VALUES`.

use futures_util::TryStreamExt;
use sha2::{Digest, Sha256};

use crate::conn::{Conn, ConnInner, Database, Driver, Pools};
use crate::dialect::Dialect;
use crate::error::DbError;
use crate::value::Value;

/// A stretch of a table's primary key: the rows after `after` up to and
/// including `upto`, each a key's values as SQL literals; `None` leaves
/// that end open. The default is the whole table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyRange {
    /// The key just before the range.
    pub after: Option<Vec<String>>,
    /// The range's last key.
    pub upto: Option<Vec<String>>,
}

impl KeyRange {
    /// ` WHERE ...` for the range, or nothing for the whole table.
    fn filter(&self, dialect: Dialect, key: &[String]) -> String {
        let key: Vec<String> = key.iter().map(|c| dialect.quote_ident(c)).collect();
        let mut conditions = Vec::new();
        for (bound, op, or_equal) in [(&self.after, ">", false), (&self.upto, "<", true)] {
            let Some(values) = bound else { continue };
            // A bound may give only the key's first columns.
            let key = &key[..values.len().min(key.len())];
            conditions.push(compare(dialect, key, op, or_equal, values));
        }
        if conditions.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", conditions.join(" AND "))
        }
    }
}

impl std::fmt::Display for KeyRange {
    /// `keys after ('1') up to ('2')`, with `the start` and `the end` for
    /// open ends.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let end = |key: &Option<Vec<String>>, open: &str| match key {
            Some(values) => format!("({})", values.join(", ")),
            None => open.to_owned(),
        };
        write!(
            f,
            "keys after {} up to {}",
            end(&self.after, "the start"),
            end(&self.upto, "the end")
        )
    }
}

/// `key op values` (lexicographic), written so that each dialect's planner
/// reads it as a range of the key's index: a row comparison, expanded on
/// MySQL/MariaDB, whose optimizer does not use an index for one.
fn compare(dialect: Dialect, key: &[String], op: &str, or_equal: bool, values: &[String]) -> String {
    let eq = if or_equal { "=" } else { "" };
    if dialect != Dialect::Mysql || key.len() == 1 {
        return format!("({}) {op}{eq} ({})", key.join(", "), values.join(", "));
    }
    let mut alternatives = Vec::new();
    for i in 0..key.len() {
        let mut parts: Vec<String> = (0..i).map(|j| format!("{} = {}", key[j], values[j])).collect();
        let last = i + 1 == key.len();
        let o = if last { format!("{op}{eq}") } else { op.to_owned() };
        parts.push(format!("{} {o} {}", key[i], values[i]));
        alternatives.push(format!("({})", parts.join(" AND ")));
    }
    format!("({})", alternatives.join(" OR "))
}

/// The rows of `raw` in the canonical form of MySQL and SQLite, each a
/// length (4 bytes, little-endian) and a record of that length: each
/// yielded whole, its length included (as `Conn::stream_rows` hands it
/// over); bytes that end before their length says, as an error, last.
pub fn records(mut raw: &[u8]) -> impl Iterator<Item = Result<&[u8], &[u8]>> {
    std::iter::from_fn(move || {
        if raw.is_empty() {
            return None;
        }
        let len = raw
            .get(..4)
            .map(|l| u32::from_le_bytes([l[0], l[1], l[2], l[3]]) as usize);
        match len.and_then(|len| raw.get(..4 + len)) {
            Some(row) => {
                raw = &raw[row.len()..];
                Some(Ok(row))
            }
            None => Some(Err(std::mem::take(&mut raw))),
        }
    })
}

/// `raw` (rows in the canonical form of `dialect`) cut into `parts` runs of
/// whole rows, of about equal size, so that several connections can load
/// one chunk. Fewer when there are fewer rows; one empty run for none.
pub fn split_rows(dialect: Dialect, raw: &[u8], parts: usize) -> Vec<&[u8]> {
    let want = (raw.len() / parts.max(1)).max(1);
    let mut runs = Vec::new();
    let mut start = 0;
    while start < raw.len() && runs.len() + 1 < parts {
        let from = (start + want).min(raw.len());
        // The end of the row that holds byte `from - 1`, the last of this
        // run's share.
        let end = match dialect {
            Dialect::Postgres => raw[from - 1..].iter().position(|b| *b == b'\n').map(|i| from + i),
            _ => {
                let mut end = start;
                for row in records(&raw[start..]) {
                    end += row.map_or_else(|rest| rest.len(), <[u8]>::len);
                    if end >= from {
                        break;
                    }
                }
                Some(end)
            }
        };
        let end = end.unwrap_or(raw.len()).min(raw.len());
        runs.push(&raw[start..end]);
        start = end;
    }
    if start < raw.len() || runs.is_empty() {
        runs.push(&raw[start..]);
    }
    runs
}

/// The primary-key values of the last row in `raw` (rows in the canonical
/// form of `dialect`), as SQL literals; `None` for a table without a key,
/// no rows, or a row that does not read.
pub fn last_key(dialect: Dialect, table: &TableInfo, raw: &[u8]) -> Option<Vec<String>> {
    let positions: Vec<usize> = table
        .primary_key
        .iter()
        .map(|k| table.columns.iter().position(|c| c == k))
        .collect::<Option<_>>()?;
    if positions.is_empty() {
        return None;
    }
    let fields: Vec<String> = match dialect {
        Dialect::Postgres => {
            let body = raw.strip_suffix(b"\n")?;
            let line = &body[body.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1)..];
            let line = std::str::from_utf8(line).ok()?;
            let fields: Vec<&str> = line.split('\t').collect();
            positions
                .iter()
                .map(|&i| {
                    let value = copy_unescape(fields.get(i)?)?;
                    Some(format!("'{}'", value.replace('\'', "''")))
                })
                .collect::<Option<_>>()?
        }
        _ => {
            let last = &records(raw).last()?.ok()?[4..];
            let literals = split_literals(std::str::from_utf8(last).ok()?, dialect == Dialect::Mysql)?;
            positions
                .iter()
                .map(|&i| literals.get(i).cloned())
                .collect::<Option<_>>()?
        }
    };
    Some(fields)
}

/// A field of `COPY ... TO STDOUT` text, unescaped; `None` for NULL.
fn copy_unescape(field: &str) -> Option<String> {
    if field == "\\N" {
        return None;
    }
    let mut out = Vec::with_capacity(field.len());
    let bytes = field.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'\\' || i + 1 == bytes.len() {
            out.push(bytes[i]);
            i += 1;
            continue;
        }
        i += 1;
        let c = bytes[i];
        i += 1;
        match c {
            b'b' => out.push(8),
            b'f' => out.push(12),
            b'n' => out.push(b'\n'),
            b'r' => out.push(b'\r'),
            b't' => out.push(b'\t'),
            b'v' => out.push(11),
            b'x' => {
                let end = (i..bytes.len().min(i + 2))
                    .take_while(|&j| bytes[j].is_ascii_hexdigit())
                    .last()?
                    + 1;
                out.push(u8::from_str_radix(std::str::from_utf8(&bytes[i..end]).ok()?, 16).ok()?);
                i = end;
            }
            b'0'..=b'7' => {
                let start = i - 1;
                let end = (start..bytes.len().min(start + 3))
                    .take_while(|&j| (b'0'..=b'7').contains(&bytes[j]))
                    .last()?
                    + 1;
                out.push(u8::from_str_radix(std::str::from_utf8(&bytes[start..end]).ok()?, 8).ok()?);
                i = end;
            }
            other => out.push(other),
        }
    }
    String::from_utf8(out).ok()
}

/// A record of comma-separated SQL literals, split into them: quoted
/// strings (`''` inside, and `\` escapes on MySQL), `X'..'`, numbers, NULL.
fn split_literals(record: &str, backslash: bool) -> Option<Vec<String>> {
    let mut out = Vec::new();
    let mut current = String::new();
    let mut quoted = false;
    let mut chars = record.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\'' if quoted && chars.peek() == Some(&'\'') => {
                current.push_str("''");
                chars.next();
            }
            '\'' => {
                quoted = !quoted;
                current.push(c);
            }
            '\\' if quoted && backslash => {
                current.push(c);
                current.push(chars.next()?);
            }
            ',' if !quoted => out.push(std::mem::take(&mut current)),
            _ => current.push(c),
        }
    }
    if quoted {
        return None;
    }
    out.push(current);
    Some(out)
}

/// The bytes of rows `Conn::stream_range` hands its sink at a time, at
/// least (PostgreSQL; elsewhere a row at a time).
const RUN: usize = 128 * 1024;

/// The order `Conn::stream_range` reads rows in.
#[derive(Clone, Copy)]
enum RowOrder {
    /// The primary key's (every column's, without one).
    Key,
    /// The pages'.
    Any,
    /// The pages', of heap pages `from` up to `upto` only (PostgreSQL).
    Stored(HeapPages),
}

/// A run of a PostgreSQL table's heap pages: `from` up to, not including,
/// `upto`; `None` leaves the end open, so that pages a writer adds after
/// the count was taken are read too (their rows, being newer than the
/// snapshot, are not seen, but nothing is missed).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HeapPages {
    /// The first page.
    pub from: u64,
    /// The page after the last.
    pub upto: Option<u64>,
}

impl HeapPages {
    /// ` WHERE ctid ...`: a TID range scan on PostgreSQL 14 and later,
    /// which reads those pages and no others.
    fn filter(&self) -> String {
        let mut conditions = Vec::new();
        if self.from > 0 {
            conditions.push(format!("ctid >= '({},0)'::tid", self.from));
        }
        if let Some(upto) = self.upto {
            conditions.push(format!("ctid < '({upto},0)'::tid"));
        }
        if conditions.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", conditions.join(" AND "))
        }
    }
}

/// A table to back up.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TableInfo {
    /// Its name: `schema.table` on PostgreSQL, the bare name elsewhere.
    pub name: String,
    /// Its columns, in order.
    pub columns: Vec<String>,
    /// Each column's type, as the catalog names it.
    pub types: Vec<String>,
    /// Its primary key's columns; empty when it has none (rows are then
    /// ordered by every column).
    pub primary_key: Vec<String>,
}

/// A sequence's position.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SequenceValue {
    /// `schema.sequence` on PostgreSQL; the table name for SQLite's
    /// `AUTOINCREMENT` counters.
    pub name: String,
    /// Its last value.
    pub value: i64,
    /// Whether `value` was handed out (PostgreSQL's `is_called`).
    pub is_called: bool,
}

/// One statement of a MySQL or SQLite schema.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SchemaItem {
    /// The table (or view) it belongs to.
    pub table: String,
    /// Whether it runs after the rows are loaded.
    pub after_rows: bool,
    /// The statement.
    pub sql: String,
}

/// Which database a backup came from.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ServerInfo {
    /// `postgres`, `mysql` or `sqlite`.
    pub dialect: String,
    /// The server's version string.
    pub version: String,
    /// The database's name (the file's, for SQLite).
    pub database: String,
}

pub(crate) fn text_rows(rows: crate::value::Rows) -> Vec<Vec<String>> {
    rows.rows
        .into_iter()
        .map(|r| {
            r.into_iter()
                .map(|v| match v {
                    Value::Text(s) => s,
                    Value::Int(n) => n.to_string(),
                    Value::Bytes(b) => String::from_utf8_lossy(&b).into_owned(),
                    Value::Null => String::new(),
                    other => format!("{other:?}"),
                })
                .collect()
        })
        .collect()
}

pub(crate) const MANY: usize = 10_000_000;

impl Database {
    /// A transaction that sees one consistent state of the whole database
    /// for as long as it lasts, and may not write. Dropping it rolls it
    /// back, so its locks never outlive it.
    pub async fn begin_snapshot(&self) -> Result<Conn, DbError> {
        let failed = |e| DbError::query("beginning the backup's snapshot", e);
        let inner = match &self.pools {
            Pools::Postgres(p) => ConnInner::PgTx(
                p.begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
                    .await
                    .map_err(failed)?,
            ),
            Pools::Mysql(p) => ConnInner::MyTx(
                p.begin_with("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY")
                    .await
                    .map_err(failed)?,
            ),
            Pools::Sqlite(p) => ConnInner::LiteTx(p.begin().await.map_err(failed)?),
        };
        Ok(Conn {
            inner,
            history: self.history.clone(),
        })
    }

    /// A second transaction on the snapshot another exported
    /// ([`Conn::export_snapshot`]; PostgreSQL only), to read some of the
    /// same tables in parallel and see exactly what the first sees.
    pub async fn join_snapshot(&self, snapshot: &str) -> Result<Conn, DbError> {
        let failed = |e| DbError::query("joining the backup's snapshot", e);
        let Pools::Postgres(p) = &self.pools else {
            return Err(DbError::Config(
                "only PostgreSQL shares a snapshot between connections".to_owned(),
            ));
        };
        let mut tx = p
            .begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            .await
            .map_err(failed)?;
        let set = format!("SET TRANSACTION SNAPSHOT '{}'", snapshot.replace('\'', "''"));
        sqlx::Executor::execute(&mut *tx, set.as_str()).await.map_err(failed)?;
        Ok(Conn {
            inner: ConnInner::PgTx(tx),
            history: self.history.clone(),
        })
    }

    /// A plain connection, for restoring.
    pub async fn restore_connection(&self) -> Result<Conn, DbError> {
        self.connection().await
    }
}

impl Conn {
    /// The connection's dialect.
    pub fn dialect(&self) -> Dialect {
        match self.inner {
            ConnInner::PgTx(_) | ConnInner::PgOwn(_) | ConnInner::Pg(_) => Dialect::Postgres,
            ConnInner::MyTx(_) | ConnInner::My(_) => Dialect::Mysql,
            ConnInner::LiteTx(_) | ConnInner::Lite(_) => Dialect::Sqlite,
        }
    }

    /// The server, its version and the database's name.
    pub async fn server_info(&mut self) -> Result<ServerInfo, DbError> {
        let dialect = self.dialect();
        let sql = match dialect {
            Dialect::Postgres => "SELECT version(), current_database()",
            Dialect::Mysql => "SELECT VERSION(), DATABASE()",
            Dialect::Sqlite => "SELECT sqlite_version(), (SELECT file FROM pragma_database_list WHERE name = 'main')",
        };
        let rows = text_rows(self.query_rows(sql, &[], 1).await?);
        let row = rows.into_iter().next().unwrap_or_default();
        Ok(ServerInfo {
            dialect: dialect.name().to_owned(),
            version: row.first().cloned().unwrap_or_default(),
            database: row.get(1).cloned().unwrap_or_default(),
        })
    }

    /// Every base table, with its columns and primary key, in name order.
    pub async fn tables(&mut self) -> Result<Vec<TableInfo>, DbError> {
        let list = match self.dialect() {
            Dialect::Postgres => {
                "SELECT n.nspname || '.' || c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
                 WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition \
                 AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%' \
                 ORDER BY 1"
            }
            Dialect::Mysql => {
                "SELECT table_name FROM information_schema.tables \
                 WHERE table_schema = DATABASE() AND table_type = 'BASE TABLE' ORDER BY 1"
            }
            Dialect::Sqlite => {
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY 1"
            }
        };
        let names = text_rows(self.query_rows(list, &[], MANY).await?);
        let mut out = Vec::new();
        for row in names {
            let name = row.into_iter().next().unwrap_or_default();
            out.push(self.describe_table(name).await?);
        }
        Ok(out)
    }

    /// The columns (generated ones left out) and primary key of the table
    /// `name`, as [`Conn::tables`] names it.
    pub(crate) async fn describe_table(&mut self, name: String) -> Result<TableInfo, DbError> {
        let dialect = self.dialect();
        let (columns, key) = match dialect {
            Dialect::Postgres => (
                "SELECT a.attname::text, format_type(a.atttypid, a.atttypmod) FROM pg_attribute a \
                 WHERE a.attrelid = $1::regclass AND a.attnum > 0 \
                 AND NOT a.attisdropped AND a.attgenerated = '' ORDER BY a.attnum",
                "SELECT a.attname::text FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid \
                 AND a.attnum = ANY(i.indkey) WHERE i.indrelid = $1::regclass AND i.indisprimary \
                 ORDER BY array_position(i.indkey::int2[], a.attnum)",
            ),
            Dialect::Mysql => (
                "SELECT column_name, data_type FROM information_schema.columns WHERE table_schema = DATABASE() \
                 AND table_name = ? AND extra NOT LIKE '%GENERATED%' ORDER BY ordinal_position",
                "SELECT column_name FROM information_schema.key_column_usage WHERE table_schema = DATABASE() \
                 AND table_name = ? AND constraint_name = 'PRIMARY' ORDER BY ordinal_position",
            ),
            Dialect::Sqlite => (
                "SELECT name, type FROM pragma_table_xinfo(?) WHERE hidden = 0 ORDER BY cid",
                "SELECT name FROM pragma_table_info(?) WHERE pk > 0 ORDER BY pk",
            ),
        };
        let arg = match dialect {
            Dialect::Postgres => dialect.quote_table(&name),
            _ => name.clone(),
        };
        let described = text_rows(self.query_rows(columns, &[Value::Text(arg.clone())], MANY).await?);
        let types = described
            .iter()
            .map(|r| r.get(1).cloned().unwrap_or_default())
            .collect();
        let columns = described.into_iter().filter_map(|r| r.into_iter().next()).collect();
        let primary_key = text_rows(self.query_rows(key, &[Value::Text(arg)], MANY).await?)
            .into_iter()
            .filter_map(|r| r.into_iter().next())
            .collect();
        Ok(TableInfo {
            name,
            columns,
            types,
            primary_key,
        })
    }

    /// The positions of sequences: PostgreSQL's sequences, SQLite's
    /// `AUTOINCREMENT` counters. MySQL keeps `AUTO_INCREMENT` in the table's
    /// DDL, which the schema carries.
    pub async fn sequences(&mut self) -> Result<Vec<SequenceValue>, DbError> {
        match self.dialect() {
            Dialect::Postgres => {
                let names = text_rows(
                    self.query_rows(
                        "SELECT schemaname || '.' || sequencename FROM pg_sequences ORDER BY 1",
                        &[],
                        MANY,
                    )
                    .await?,
                );
                let mut out = Vec::new();
                for name in names.into_iter().filter_map(|r| r.into_iter().next()) {
                    let q = Dialect::Postgres.quote_table(&name);
                    let rows = self
                        .query_rows(&format!("SELECT last_value, is_called FROM {q}"), &[], 1)
                        .await?;
                    if let Some([Value::Int(value), Value::Bool(is_called)]) = rows.rows.first().map(Vec::as_slice) {
                        out.push(SequenceValue {
                            name,
                            value: *value,
                            is_called: *is_called,
                        });
                    }
                }
                Ok(out)
            }
            Dialect::Sqlite => {
                let exists = self
                    .query_rows("SELECT 1 FROM sqlite_master WHERE name = 'sqlite_sequence'", &[], 1)
                    .await?;
                if exists.rows.is_empty() {
                    return Ok(Vec::new());
                }
                let rows = self
                    .query_rows("SELECT name, seq FROM sqlite_sequence ORDER BY name", &[], MANY)
                    .await?;
                Ok(rows
                    .rows
                    .into_iter()
                    .filter_map(|r| match r.as_slice() {
                        [Value::Text(name), Value::Int(value)] => Some(SequenceValue {
                            name: name.clone(),
                            value: *value,
                            is_called: true,
                        }),
                        _ => None,
                    })
                    .collect())
            }
            Dialect::Mysql => Ok(Vec::new()),
        }
    }

    /// The schema's other objects, as `(kind, name, definition)` in name
    /// order: indexes, constraints (but `NOT NULL`, which PostgreSQL 18
    /// lists as constraints and older versions do not), views, triggers and
    /// functions on PostgreSQL; indexes, views and triggers elsewhere.
    /// Definitions are as the server prints them, whitespace collapsed,
    /// but a PostgreSQL view's is its columns and their types: servers of
    /// different major versions print the same view's query differently.
    /// Schemas named in `skip` are left out.
    pub async fn schema_objects(&mut self, skip: &str) -> Result<Vec<(String, String, String)>, DbError> {
        let (sql, params): (&str, Vec<Value>) = match self.dialect() {
            Dialect::Postgres => (
                "WITH ns AS (SELECT oid, nspname FROM pg_namespace WHERE nspname NOT IN ('pg_catalog', \
                 'information_schema', $1) AND nspname NOT LIKE 'pg_toast%' AND nspname NOT LIKE 'pg_temp%') \
                 SELECT 'index', schemaname || '.' || indexname, indexdef FROM pg_indexes \
                   WHERE schemaname IN (SELECT nspname FROM ns) \
                 UNION ALL SELECT 'constraint', ns.nspname || '.' || c.relname || '.' || con.conname, \
                   pg_get_constraintdef(con.oid) FROM pg_constraint con JOIN pg_class c ON c.oid = con.conrelid \
                   JOIN ns ON ns.oid = c.relnamespace WHERE con.contype <> 'n' \
                 UNION ALL SELECT CASE c.relkind WHEN 'v' THEN 'view' ELSE 'materialized view' END, \
                   ns.nspname || '.' || c.relname, string_agg(a.attname || ' ' || \
                   format_type(a.atttypid, a.atttypmod), ', ' ORDER BY a.attnum) FROM pg_class c \
                   JOIN ns ON ns.oid = c.relnamespace JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 \
                   WHERE c.relkind IN ('v', 'm') GROUP BY c.relkind, ns.nspname, c.relname \
                 UNION ALL SELECT 'trigger', ns.nspname || '.' || c.relname || '.' || t.tgname, pg_get_triggerdef(t.oid) \
                   FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid JOIN ns ON ns.oid = c.relnamespace \
                   WHERE NOT t.tgisinternal \
                 UNION ALL SELECT 'function', ns.nspname || '.' || p.proname || '(' || \
                   pg_get_function_identity_arguments(p.oid) || ')', pg_get_functiondef(p.oid) \
                   FROM pg_proc p JOIN ns ON ns.oid = p.pronamespace WHERE p.prokind IN ('f', 'p') \
                   AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_proc'::regclass \
                   AND d.objid = p.oid AND d.deptype = 'e') \
                 ORDER BY 1, 2",
                vec![Value::Text(skip.to_owned())],
            ),
            Dialect::Mysql => (
                "SELECT 'index', CONCAT(table_name, '.', index_name), \
                   CONCAT(IF(MAX(non_unique) = 0, 'UNIQUE ', ''), '(', \
                   GROUP_CONCAT(column_name ORDER BY seq_in_index SEPARATOR ', '), ')') \
                   FROM information_schema.statistics WHERE table_schema = DATABASE() GROUP BY table_name, index_name \
                 UNION ALL SELECT 'view', table_name, view_definition FROM information_schema.views \
                   WHERE table_schema = DATABASE() \
                 UNION ALL SELECT 'trigger', trigger_name, CONCAT(action_timing, ' ', event_manipulation, ' ON ', \
                   event_object_table, ' ', action_statement) FROM information_schema.triggers \
                   WHERE trigger_schema = DATABASE() \
                 ORDER BY 1, 2",
                Vec::new(),
            ),
            Dialect::Sqlite => (
                "SELECT type, name, sql FROM sqlite_master WHERE type IN ('index', 'view', 'trigger') \
                 AND sql IS NOT NULL AND name NOT LIKE 'sqlite_%' ORDER BY 1, 2",
                Vec::new(),
            ),
        };
        let rows = text_rows(self.query_rows(sql, &params, MANY).await?);
        Ok(rows
            .into_iter()
            .filter_map(|r| match <[String; 3]>::try_from(r) {
                Ok([kind, name, def]) => Some((kind, name, def.split_whitespace().collect::<Vec<_>>().join(" "))),
                Err(_) => None,
            })
            .collect())
    }

    /// The schema of a MySQL or SQLite database, as statements, each with
    /// the table it belongs to and whether it is better made after the rows
    /// are loaded (indexes, views, triggers) than before (tables).
    pub async fn schema(&mut self) -> Result<Vec<SchemaItem>, DbError> {
        let mut items = Vec::new();
        match self.dialect() {
            Dialect::Sqlite => {
                let rows = self
                    .query_rows(
                        "SELECT type, tbl_name, sql FROM sqlite_master WHERE sql IS NOT NULL \
                         AND name NOT LIKE 'sqlite_%' \
                         ORDER BY CASE type WHEN 'table' THEN 0 WHEN 'index' THEN 1 WHEN 'view' THEN 2 ELSE 3 END, rowid",
                        &[],
                        MANY,
                    )
                    .await?;
                for row in text_rows(rows) {
                    if let [kind, table, sql] = row.as_slice() {
                        items.push(SchemaItem {
                            table: table.clone(),
                            after_rows: kind != "table",
                            sql: sql.clone(),
                        });
                    }
                }
            }
            Dialect::Mysql => {
                let tables = text_rows(
                    self.query_rows(
                        "SELECT table_name, table_type FROM information_schema.tables \
                         WHERE table_schema = DATABASE() ORDER BY table_type = 'VIEW', table_name",
                        &[],
                        MANY,
                    )
                    .await?,
                );
                for row in tables {
                    let [name, kind] = row.as_slice() else { continue };
                    let q = Dialect::Mysql.quote_ident(name);
                    let view = kind == "VIEW";
                    let sql = if view {
                        format!("SHOW CREATE VIEW {q}")
                    } else {
                        format!("SHOW CREATE TABLE {q}")
                    };
                    let ddl = text_rows(self.query_rows(&sql, &[], 1).await?);
                    if let Some(text) = ddl.into_iter().next().and_then(|r| r.into_iter().nth(1)) {
                        items.push(SchemaItem {
                            table: name.clone(),
                            after_rows: view,
                            sql: text,
                        });
                    }
                }
                let triggers = text_rows(self.query_rows("SHOW TRIGGERS", &[], MANY).await?);
                for row in triggers {
                    let (Some(trigger), Some(table)) = (row.first(), row.get(2)) else {
                        continue;
                    };
                    let q = Dialect::Mysql.quote_ident(trigger);
                    let ddl = text_rows(self.query_rows(&format!("SHOW CREATE TRIGGER {q}"), &[], 1).await?);
                    if let Some(text) = ddl.into_iter().next().and_then(|r| r.into_iter().nth(2)) {
                        items.push(SchemaItem {
                            table: table.clone(),
                            after_rows: true,
                            sql: text,
                        });
                    }
                }
            }
            Dialect::Postgres => {
                return Err(DbError::Config(
                    "the PostgreSQL schema comes from pg_dump, not from here".to_owned(),
                ));
            }
        }
        Ok(items)
    }

    /// Takes a shared lock on each of `tables` until this snapshot ends, as
    /// `pg_dump` does, so that none is dropped or altered while the backup
    /// reads it: a `DROP TABLE` from elsewhere waits for the backup. A
    /// table dropped after the backup listed it and before this lock fails
    /// the backup, naming the table. (SQLite's read transaction already
    /// keeps its view of every table.)
    pub async fn hold_tables(&mut self, tables: &[TableInfo]) -> Result<(), DbError> {
        let dialect = self.dialect();
        let context = "locking the tables to back up (was one dropped or renamed as the backup began?)";
        match dialect {
            Dialect::Postgres if !tables.is_empty() => {
                let names: Vec<String> = tables.iter().map(|t| dialect.quote_table(&t.name)).collect();
                self.execute(&format!("LOCK TABLE {} IN ACCESS SHARE MODE", names.join(", ")))
                    .await
                    .map_err(|e| e.context(context.to_owned()))?;
            }
            Dialect::Mysql => {
                // Touching a table inside the transaction holds its
                // metadata lock until the transaction ends.
                for t in tables {
                    self.execute(&format!("SELECT 1 FROM {} LIMIT 0", dialect.quote_table(&t.name)))
                        .await
                        .map_err(|e| e.context(context.to_owned()))?;
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// Exports the snapshot of this transaction (PostgreSQL), so that
    /// `pg_dump --snapshot` sees exactly what this transaction sees.
    pub async fn export_snapshot(&mut self) -> Result<String, DbError> {
        let rows = text_rows(self.query_rows("SELECT pg_export_snapshot()", &[], 1).await?);
        Ok(rows
            .into_iter()
            .next()
            .and_then(|r| r.into_iter().next())
            .unwrap_or_default())
    }

    /// Streams `table`'s rows in canonical form, in primary-key order, to
    /// `sink`, one or more whole rows at a time with their number. Returns
    /// the number of rows.
    pub async fn stream_rows(
        &mut self,
        table: &TableInfo,
        sink: &mut (dyn FnMut(&[u8], u64) -> std::io::Result<()> + Send),
    ) -> Result<u64, DbError> {
        self.stream_range(table, &KeyRange::default(), RowOrder::Key, sink)
            .await
    }

    /// [`Conn::stream_rows`] in whatever order the table's pages hold them:
    /// a plain scan, which needs no index and sorts nothing, for a digest
    /// that does not depend on the order.
    pub async fn stream_rows_any_order(
        &mut self,
        table: &TableInfo,
        sink: &mut (dyn FnMut(&[u8], u64) -> std::io::Result<()> + Send),
    ) -> Result<u64, DbError> {
        self.stream_range(table, &KeyRange::default(), RowOrder::Any, sink)
            .await
    }

    /// [`Conn::stream_rows`] of the rows in some of a PostgreSQL table's
    /// heap pages, in the order they lie there: no index, no sort. A
    /// table filled in key order (any table whose key is a sequence and
    /// whose rows are seldom updated) gives them in key order; the caller
    /// checks.
    pub async fn stream_rows_stored(
        &mut self,
        table: &TableInfo,
        pages: HeapPages,
        sink: &mut (dyn FnMut(&[u8], u64) -> std::io::Result<()> + Send),
    ) -> Result<u64, DbError> {
        if self.dialect() != Dialect::Postgres {
            return Err(DbError::Config(format!(
                "{} is not a PostgreSQL table: only PostgreSQL's rows are read by heap page",
                table.name
            )));
        }
        self.stream_range(table, &KeyRange::default(), RowOrder::Stored(pages), sink)
            .await
    }

    /// How many heap pages a PostgreSQL table has now, and their size in
    /// bytes (none for a partitioned table's parent, whose rows live in
    /// its partitions).
    pub async fn heap_pages(&mut self, table: &TableInfo) -> Result<(u64, u64), DbError> {
        let found = self
            .query_rows(
                "SELECT pg_relation_size($1::regclass)::text, current_setting('block_size')",
                &[Value::Text(Dialect::Postgres.quote_table(&table.name))],
                1,
            )
            .await?;
        let row = text_rows(found).into_iter().next().unwrap_or_default();
        let number = |i: usize| row.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        let page = number(1).max(1);
        Ok((number(0) / page, page))
    }

    /// A key that splits a big table (PostgreSQL, at least `min_bytes` on
    /// disk) into two halves of about equal size, from
    /// the planner's statistics of its key's first column: a split point
    /// for reading it on two connections. `None` when there are no
    /// statistics, no key, or too few rows to be worth it.
    pub async fn split_key(&mut self, table: &TableInfo, min_bytes: u64) -> Result<Option<Vec<String>>, DbError> {
        let Some(first) = table.primary_key.first() else {
            return Ok(None);
        };
        if self.dialect() != Dialect::Postgres {
            return Ok(None);
        }
        let (schema, name) = table.name.split_once('.').unwrap_or(("public", &table.name));
        let found = self
            .query_rows(
                "SELECT b[array_length(b, 1) / 2 + 1] FROM pg_class c                  JOIN pg_namespace n ON n.oid = c.relnamespace                  JOIN pg_stats s ON s.schemaname = n.nspname AND s.tablename = c.relname AND s.attname = $3,                  LATERAL (SELECT s.histogram_bounds::text::text[] AS b) h                  WHERE n.nspname = $1 AND c.relname = $2 AND pg_relation_size(c.oid) >= $4 \
                 AND array_length(b, 1) > 2",
                &[
                    Value::Text(schema.to_owned()),
                    Value::Text(name.to_owned()),
                    Value::Text(first.clone()),
                    Value::Int(i64::try_from(min_bytes).unwrap_or(i64::MAX)),
                ],
                1,
            )
            .await?;
        Ok(text_rows(found)
            .into_iter()
            .next()
            .and_then(|r| r.into_iter().next())
            .filter(|v| !v.is_empty())
            .map(|v| vec![format!("'{}'", v.replace('\'', "''"))]))
    }

    /// Every `every`-th key of `table` in key order, as SQL literals: the
    /// ends of ranges of `every` rows each, to compare a table range by
    /// range. One pass over the key's index; none for a table without a
    /// key.
    pub async fn key_boundaries(&mut self, table: &TableInfo, every: u64) -> Result<Vec<Vec<String>>, DbError> {
        if table.primary_key.is_empty() {
            return Ok(Vec::new());
        }
        let dialect = self.dialect();
        let key: Vec<String> = table.primary_key.iter().map(|c| dialect.quote_ident(c)).collect();
        let literals: Vec<String> = (0..key.len())
            .map(|i| dialect.literal_of(&format!("waymark_k{i}")))
            .collect();
        let aliased: Vec<String> = key
            .iter()
            .enumerate()
            .map(|(i, k)| format!("{k} AS waymark_k{i}"))
            .collect();
        let sql = format!(
            "SELECT {} FROM (SELECT {}, ROW_NUMBER() OVER (ORDER BY {}) AS waymark_rn FROM {}) waymark_keys \
             WHERE waymark_rn % {every} = 0 ORDER BY waymark_rn",
            literals.join(", "),
            aliased.join(", "),
            key.join(", "),
            dialect.quote_table(&table.name)
        );
        Ok(text_rows(self.query_rows(&sql, &[], MANY).await?))
    }

    /// [`Conn::stream_rows`] for the rows of one key range.
    pub async fn stream_rows_in(
        &mut self,
        table: &TableInfo,
        range: &KeyRange,
        sink: &mut (dyn FnMut(&[u8], u64) -> std::io::Result<()> + Send),
    ) -> Result<u64, DbError> {
        self.stream_range(table, range, RowOrder::Key, sink).await
    }

    /// The row count and SHA-256 of the rows of `table` in `range` (of its
    /// primary key), in the canonical form and order of
    /// [`Conn::stream_rows`]: what one chunk of a backup holds.
    pub async fn range_digest(&mut self, table: &TableInfo, range: &KeyRange) -> Result<(u64, String), DbError> {
        let mut hash = Sha256::new();
        let rows = self
            .stream_range(table, range, RowOrder::Key, &mut |bytes, _| {
                hash.update(bytes);
                Ok(())
            })
            .await?;
        Ok((rows, hex::encode(hash.finalize())))
    }

    async fn stream_range(
        &mut self,
        table: &TableInfo,
        range: &KeyRange,
        order: RowOrder,
        sink: &mut (dyn FnMut(&[u8], u64) -> std::io::Result<()> + Send),
    ) -> Result<u64, DbError> {
        let dialect = self.dialect();
        let filter = match order {
            RowOrder::Stored(pages) => pages.filter(),
            _ => range.filter(dialect, &table.primary_key),
        };
        let key: Vec<String> = if table.primary_key.is_empty() {
            table.columns.iter().map(|c| dialect.quote_ident(c)).collect()
        } else {
            table.primary_key.iter().map(|c| dialect.quote_ident(c)).collect()
        };
        let order = match order {
            RowOrder::Key => format!(" ORDER BY {}", key.join(", ")),
            RowOrder::Any | RowOrder::Stored(_) => String::new(),
        };
        let columns: Vec<String> = table.columns.iter().map(|c| dialect.quote_ident(c)).collect();
        let from = dialect.quote_table(&table.name);
        let io = |e: std::io::Error| DbError::Config(format!("writing the rows of {}: {e}", table.name));
        let failed = |e: sqlx::Error| DbError::query(format!("reading the rows of {}", table.name), e);
        let mut rows = 0u64;
        self.inner.ready().await?;
        match self.inner.driver() {
            Driver::Pg(c) => {
                let sql = format!(
                    "COPY (SELECT {} FROM {from}{filter}{order}) TO STDOUT",
                    columns.join(", "),
                );
                let mut stream = c.copy_out_raw(&sql).await.map_err(failed)?;
                // The server sends a message per row. Handed on in runs of
                // rows instead, so that what the sink does per call (count,
                // hash, compress) is done per 128 KiB, not per 100 bytes.
                let mut run = Vec::with_capacity(RUN + (RUN >> 3));
                let mut run_rows = 0;
                while let Some(bytes) = stream.try_next().await.map_err(failed)? {
                    run_rows += memchr::memchr_iter(b'\n', &bytes).count() as u64;
                    run.extend_from_slice(&bytes);
                    if run.len() >= RUN {
                        sink(&run, run_rows).map_err(io)?;
                        rows += run_rows;
                        run.clear();
                        run_rows = 0;
                    }
                }
                if !run.is_empty() {
                    sink(&run, run_rows).map_err(io)?;
                    rows += run_rows;
                }
            }
            driver => {
                // Binary values as hex literals, so the statements that load
                // them back are text.
                let binary = |t: &str| {
                    let t = t.to_ascii_lowercase();
                    t.contains("binary") || t.contains("blob") || t == "bit"
                };
                let literal: Vec<String> = match dialect {
                    Dialect::Mysql => columns
                        .iter()
                        .zip(&table.types)
                        .map(|(c, t)| match binary(t) {
                            true => format!("IF({c} IS NULL, 'NULL', CONCAT('X''', HEX({c}), ''''))"),
                            false => format!("QUOTE({c})"),
                        })
                        .collect(),
                    _ => columns.iter().map(|c| format!("quote({c})")).collect(),
                };
                let joined = match dialect {
                    Dialect::Mysql => format!("CONCAT_WS(',', {})", literal.join(", ")),
                    _ => literal.join(" || ',' || "),
                };
                let sql = format!("SELECT {joined} FROM {from}{filter}{order}");
                // One call per row, so a chunk never ends inside one.
                let mut buffer = Vec::new();
                let mut emit = |record: &[u8]| -> Result<(), DbError> {
                    let len = u32::try_from(record.len())
                        .map_err(|_| DbError::Config(format!("a row of {} is over 4 GiB", table.name)))?;
                    buffer.clear();
                    buffer.extend_from_slice(&len.to_le_bytes());
                    buffer.extend_from_slice(record);
                    sink(&buffer, 1).map_err(io)
                };
                match driver {
                    Driver::My(c) => {
                        let mut stream = sqlx::query(&sql).fetch(c);
                        while let Some(row) = stream.try_next().await.map_err(failed)? {
                            let record: Vec<u8> = sqlx::Row::try_get_unchecked(&row, 0).map_err(failed)?;
                            emit(&record)?;
                            rows += 1;
                        }
                    }
                    Driver::Lite(c) => {
                        let mut stream = sqlx::query_scalar::<_, String>(&sql).fetch(c);
                        while let Some(record) = stream.try_next().await.map_err(failed)? {
                            emit(record.as_bytes())?;
                            rows += 1;
                        }
                    }
                    Driver::Pg(_) => unreachable!("handled above"),
                }
            }
        }
        Ok(rows)
    }

    /// Loads rows in canonical form (whole records, as [`Conn::stream_rows`]
    /// wrote them) into `table`. Returns the number of rows the database
    /// reports it took (`COPY`'s count, or the inserts' rows affected).
    pub async fn load_rows(&mut self, table: &TableInfo, data: &[u8]) -> Result<u64, DbError> {
        let dialect = self.dialect();
        let columns: Vec<String> = table.columns.iter().map(|c| dialect.quote_ident(c)).collect();
        let into = dialect.quote_table(&table.name);
        let failed = |e: sqlx::Error| DbError::query(format!("loading the rows of {}", table.name), e);
        self.inner.ready().await?;
        if let Driver::Pg(c) = self.inner.driver() {
            let sql = format!("COPY {into} ({}) FROM STDIN", columns.join(", "));
            let mut copy = c.copy_in_raw(&sql).await.map_err(failed)?;
            // In pieces: each is copied into the connection's buffer before
            // it is sent, and a whole chunk there would hold it twice.
            // `COPY` takes its data cut anywhere.
            for piece in data.chunks(1 << 20) {
                copy.send(piece).await.map_err(failed)?;
            }
            return copy.finish().await.map_err(failed);
        }
        let head = format!("INSERT INTO {into} ({}) VALUES ", columns.join(", "));
        let mut statement = head.clone().into_bytes();
        let mut pending = 0u64;
        let mut loaded = 0u64;
        let mut rows = records(data).peekable();
        while let Some(row) = rows.next() {
            let row = row.map_err(|_| DbError::Config(format!("the rows of {} are cut short", table.name)))?;
            if pending > 0 {
                statement.push(b',');
            }
            statement.push(b'(');
            statement.extend_from_slice(&row[4..]);
            statement.push(b')');
            pending += 1;
            if statement.len() > 1 << 20 || rows.peek().is_none() {
                let sql = String::from_utf8(std::mem::replace(&mut statement, head.clone().into_bytes()))
                    .map_err(|_| DbError::Config(format!("the rows of {} are not valid text", table.name)))?;
                // What the database says it took, which a trigger that
                // skips a row makes fewer than were sent.
                loaded += self.insert_past_deadlocks(&sql).await?;
                pending = 0;
            }
        }
        Ok(loaded)
    }

    /// Runs one autocommitted `INSERT` of a restore, again if the server
    /// chose it as a deadlock's victim. MariaDB loads an empty table with
    /// its key checks off under a table lock, and two workers loading one
    /// table can each hold the lock the other's first insert upgrades to;
    /// the victim's statement was rolled back whole, so it is sent again.
    async fn insert_past_deadlocks(&mut self, sql: &str) -> Result<u64, DbError> {
        const TRIES: u32 = 5;
        let mut tried = 1;
        loop {
            match self.execute(sql).await {
                Err(e) if e.is_deadlock() && tried < TRIES => {
                    tracing::debug!(tried, "a restore insert was a deadlock's victim; sending it again");
                    tokio::time::sleep(std::time::Duration::from_millis(10 * u64::from(tried))).await;
                    tried += 1;
                }
                done => return done,
            }
        }
    }

    /// Puts sequences back where a backup found them.
    pub async fn set_sequences(&mut self, sequences: &[SequenceValue]) -> Result<(), DbError> {
        match self.dialect() {
            Dialect::Postgres => {
                for s in sequences {
                    let q = Dialect::Postgres.quote_table(&s.name).replace('\'', "''");
                    self.execute(&format!("SELECT setval('{q}', {}, {})", s.value, s.is_called))
                        .await?;
                }
            }
            Dialect::Sqlite if !sequences.is_empty() => {
                self.execute("DELETE FROM sqlite_sequence").await?;
                for s in sequences {
                    self.execute_with(
                        "INSERT INTO sqlite_sequence (name, seq) VALUES (?, ?)",
                        &[Value::Text(s.name.clone()), Value::Int(s.value)],
                    )
                    .await?;
                }
            }
            _ => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(columns: &[&str], key: &[&str]) -> TableInfo {
        TableInfo {
            name: "t".to_owned(),
            columns: columns.iter().map(|c| (*c).to_owned()).collect(),
            types: columns.iter().map(|_| "text".to_owned()).collect(),
            primary_key: key.iter().map(|c| (*c).to_owned()).collect(),
        }
    }

    #[test]
    fn records_come_whole_with_their_length_and_a_cut_one_last_as_an_error() {
        let raw: &[u8] = b"\x01\x00\x00\x00a\x02\x00\x00\x00bc\x05\x00\x00\x00de";
        let rows: Vec<Result<&[u8], &[u8]>> = records(raw).collect();
        assert_eq!(
            rows,
            [
                Ok(&b"\x01\x00\x00\x00a"[..]),
                Ok(&b"\x02\x00\x00\x00bc"[..]),
                Err(&b"\x05\x00\x00\x00de"[..])
            ]
        );
        assert_eq!(records(b"\x01\x00").collect::<Vec<_>>(), [Err(&b"\x01\x00"[..])]);
        assert_eq!(records(b"").count(), 0);
    }

    #[test]
    fn rows_split_into_runs_of_whole_rows() {
        let lines = b"1\ta\n22\tbb\n333\tccc\n4\td\n";
        let runs = split_rows(Dialect::Postgres, lines, 2);
        assert_eq!(runs, [&b"1\ta\n22\tbb\n333\tccc\n"[..], &b"4\td\n"[..]]);
        assert_eq!(split_rows(Dialect::Postgres, lines, 1), [&lines[..]]);
        // More runs wanted than rows: one row each.
        assert_eq!(split_rows(Dialect::Postgres, b"1\n2\n", 5), [&b"1\n"[..], &b"2\n"[..]]);
        assert_eq!(split_rows(Dialect::Postgres, b"", 2), [&b""[..]]);

        let raw: &[u8] = b"\x01\x00\x00\x00a\x02\x00\x00\x00bc\x03\x00\x00\x00def\x01\x00\x00\x00g";
        let runs = split_rows(Dialect::Mysql, raw, 2);
        assert_eq!(runs, [&raw[..11], &raw[11..]]);
        assert_eq!(runs.concat(), raw);
        assert!(runs.iter().all(|run| records(run).all(|r| r.is_ok())));
        assert_eq!(split_rows(Dialect::Sqlite, raw, 3).concat(), raw);
        assert_eq!(split_rows(Dialect::Sqlite, raw, 9).len(), 4);
    }

    #[test]
    fn the_last_key_of_copy_text_comes_back_as_literals() {
        let t = table(&["note", "a", "b"], &["b", "a"]);
        let raw = b"x\t1\tfirst\ny\\tz\t2\tit's\\ttab\\\\\\101\\x42\n";
        assert_eq!(
            last_key(Dialect::Postgres, &t, raw),
            Some(vec!["'it''s\ttab\\AB'".to_owned(), "'2'".to_owned()])
        );
        assert_eq!(last_key(Dialect::Postgres, &t, b""), None);
        assert_eq!(last_key(Dialect::Postgres, &table(&["a"], &[]), b"1\n"), None);
    }

    #[test]
    fn the_last_key_of_literal_records_is_taken_as_written() {
        let record = |s: &str| {
            let mut out = (s.len() as u32).to_le_bytes().to_vec();
            out.extend_from_slice(s.as_bytes());
            out
        };
        let t = table(&["a", "b", "c"], &["c", "a"]);
        let mut raw = record("1,'x',NULL");
        raw.extend(record(r"'k,1','it\'s, ''so''',X'00FF'"));
        assert_eq!(
            last_key(Dialect::Mysql, &t, &raw),
            Some(vec!["X'00FF'".to_owned(), "'k,1'".to_owned()])
        );
        let mut raw = record("1,'a'',b',2.5");
        raw.extend(record("7,'it''s',NULL"));
        assert_eq!(
            last_key(Dialect::Sqlite, &t, &raw),
            Some(vec!["NULL".to_owned(), "7".to_owned()])
        );
        // A record cut short does not read.
        assert_eq!(last_key(Dialect::Sqlite, &t, &raw[..raw.len() - 2]), None);
    }

    #[test]
    fn ranges_are_written_for_each_planner() {
        let key = ["a".to_owned(), "b".to_owned()];
        let range = KeyRange {
            after: Some(vec!["1".to_owned(), "'x'".to_owned()]),
            upto: Some(vec!["2".to_owned(), "'y'".to_owned()]),
        };
        assert_eq!(
            range.filter(Dialect::Postgres, &key),
            " WHERE (\"a\", \"b\") > (1, 'x') AND (\"a\", \"b\") <= (2, 'y')"
        );
        assert_eq!(
            range.filter(Dialect::Mysql, &key),
            " WHERE ((`a` > 1) OR (`a` = 1 AND `b` > 'x')) AND ((`a` < 2) OR (`a` = 2 AND `b` <= 'y'))"
        );
        assert_eq!(KeyRange::default().filter(Dialect::Sqlite, &key), "");
    }
}
