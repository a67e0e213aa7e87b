//! What lint and the backup estimate ask the catalog: how big tables are,
//! as it estimates it (an index built on a hundred rows blocks no one for
//! long; a backup of 700 MB of rows takes seconds, not milliseconds), and
//! what type a column has now (widening a varchar rewrites nothing).

use std::collections::HashMap;

use crate::conn::{Conn, Database};
use crate::dialect::Dialect;
use crate::dump::TableInfo;
use crate::error::DbError;
use crate::value::Value;

impl Database {
    /// The estimated row count of each of `tables` (bare names, lower
    /// case) that exists, by lower-case name: PostgreSQL's `reltuples`
    /// (for a table never analyzed, its size at an assumed 40 bytes a row,
    /// which errs large), MySQL's `TABLE_ROWS`, SQLite's exact count. A
    /// table missing from the answer does not exist yet.
    pub async fn table_rows(&self, tables: &[String]) -> Result<HashMap<String, u64>, DbError> {
        let mut rows = HashMap::new();
        if tables.is_empty() {
            return Ok(rows);
        }
        let mut conn = self.connection().await?;
        let names: Vec<Value> = tables.iter().map(|t| Value::Text(t.clone())).collect();
        let list = self.placeholders(names.len());
        match self.dialect() {
            Dialect::Postgres | Dialect::Mysql => {
                let sql = if self.dialect() == Dialect::Postgres {
                    format!(
                        "SELECT lower(c.relname)::text, (CASE WHEN c.reltuples < 0 THEN pg_relation_size(c.oid) / 40 \
                         ELSE c.reltuples END)::int8 FROM pg_class c \
                         WHERE c.relkind IN ('r', 'p') AND pg_table_is_visible(c.oid) AND lower(c.relname) IN ({list})"
                    )
                } else {
                    format!(
                        "SELECT LOWER(TABLE_NAME), CAST(COALESCE(TABLE_ROWS, 0) AS SIGNED) FROM information_schema.TABLES \
                         WHERE TABLE_SCHEMA = DATABASE() AND TABLE_TYPE = 'BASE TABLE' AND LOWER(TABLE_NAME) IN ({list})"
                    )
                };
                for row in conn.query_rows(&sql, &names, crate::dump::MANY).await?.rows {
                    if let [Value::Text(name), Value::Int(n)] = row.as_slice() {
                        rows.insert(name.clone(), u64::try_from(*n).unwrap_or(0));
                    }
                }
            }
            Dialect::Sqlite => {
                for table in tables {
                    let sql = format!("SELECT count(*) FROM {}", Dialect::Sqlite.quote_ident(table));
                    if let Ok(result) = conn.query_rows(&sql, &[], 1).await
                        && let Some(Value::Int(n)) = result.rows.first().and_then(|r| r.first())
                    {
                        rows.insert(table.clone(), u64::try_from(*n).unwrap_or(0));
                    }
                }
            }
        }
        Ok(rows)
    }
}

impl Database {
    /// The current type of each of `columns` (bare table and column names,
    /// lower case) that exists, as PostgreSQL's `format_type` writes it
    /// (`character varying(10)`): what lint needs to tell a type change
    /// that rewrites the table from one that does not. Empty elsewhere.
    pub async fn column_types(
        &self,
        columns: &[(String, String)],
    ) -> Result<HashMap<(String, String), String>, DbError> {
        let mut types = HashMap::new();
        if columns.is_empty() || self.dialect() != Dialect::Postgres {
            return Ok(types);
        }
        let names: Vec<Value> = columns.iter().map(|(t, c)| Value::Text(format!("{t}.{c}"))).collect();
        let sql = format!(
            "SELECT lower(c.relname)::text, lower(a.attname)::text, format_type(a.atttypid, a.atttypmod) \
             FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid \
             WHERE c.relkind IN ('r', 'p') AND pg_table_is_visible(c.oid) AND a.attnum > 0 AND NOT a.attisdropped \
             AND lower(c.relname) || '.' || lower(a.attname) IN ({})",
            self.placeholders(names.len())
        );
        let mut conn = self.connection().await?;
        for row in conn.query_rows(&sql, &names, crate::dump::MANY).await?.rows {
            if let [Value::Text(table), Value::Text(column), Value::Text(ty)] = row.as_slice() {
                types.insert((table.clone(), column.clone()), ty.clone());
            }
        }
        Ok(types)
    }

    /// `n` placeholders, comma-separated.
    fn placeholders(&self, n: usize) -> String {
        (1..=n)
            .map(|i| self.dialect().placeholder(i))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// How big a table is, as the catalog has it: no rows are read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Footprint {
    /// Its rows, as estimated (exact on SQLite).
    pub rows: u64,
    /// Bytes of its rows on disk (PostgreSQL's TOAST included).
    pub data_bytes: u64,
    /// Bytes of its indexes on disk.
    pub index_bytes: u64,
}

impl Conn {
    /// The [`Footprint`] of each of `tables`, in their order: PostgreSQL's
    /// `reltuples`, `pg_table_size` and `pg_indexes_size`; MySQL's
    /// `TABLE_ROWS`, `DATA_LENGTH` and `INDEX_LENGTH`; SQLite's exact count
    /// and its pages from `dbstat`. A table the catalog does not know (just
    /// dropped) counts as empty, since an estimate is no place to fail.
    pub async fn footprints(&mut self, tables: &[TableInfo]) -> Result<Vec<Footprint>, DbError> {
        let dialect = self.dialect();
        let mut out = Vec::with_capacity(tables.len());
        for table in tables {
            let (sql, arg) = match dialect {
                // A table never analyzed has reltuples -1: its size at an
                // assumed 40 bytes a row stands in.
                Dialect::Postgres => (
                    "SELECT (CASE WHEN c.reltuples < 0 THEN pg_relation_size(c.oid) / 40 ELSE c.reltuples END)::int8, \
                     pg_table_size(c.oid)::int8, pg_indexes_size(c.oid)::int8 FROM pg_class c WHERE c.oid = $1::regclass",
                    dialect.quote_table(&table.name),
                ),
                Dialect::Mysql => (
                    "SELECT CAST(COALESCE(TABLE_ROWS, 0) AS SIGNED), CAST(COALESCE(DATA_LENGTH, 0) AS SIGNED), \
                     CAST(COALESCE(INDEX_LENGTH, 0) AS SIGNED) FROM information_schema.TABLES \
                     WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = ?",
                    table.name.clone(),
                ),
                Dialect::Sqlite => (
                    "SELECT 0, COALESCE((SELECT sum(pgsize) FROM dbstat WHERE name = ?1), 0), \
                     COALESCE((SELECT sum(d.pgsize) FROM dbstat d JOIN sqlite_master m ON m.name = d.name \
                     WHERE m.type = 'index' AND m.tbl_name = ?1), 0)",
                    table.name.clone(),
                ),
            };
            let found = self.query_rows(sql, &[Value::Text(arg)], 1).await?;
            let number = |v: Option<&Value>| match v {
                Some(Value::Int(n)) => u64::try_from(*n).unwrap_or(0),
                _ => 0,
            };
            let mut footprint = match found.rows.first() {
                Some(row) => Footprint {
                    rows: number(row.first()),
                    data_bytes: number(row.get(1)),
                    index_bytes: number(row.get(2)),
                },
                None => Footprint::default(),
            };
            if dialect == Dialect::Sqlite {
                let count = format!("SELECT count(*) FROM {}", dialect.quote_ident(&table.name));
                footprint.rows = number(
                    self.query_rows(&count, &[], 1)
                        .await?
                        .rows
                        .first()
                        .and_then(|r| r.first()),
                );
            }
            out.push(footprint);
        }
        Ok(out)
    }
}
