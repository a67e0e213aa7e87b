//! What lint asks the catalog: how big tables are, as it estimates it (an
//! index built on a hundred rows blocks no one for long), and what type a
//! column has now (widening a varchar rewrites nothing).

use std::collections::HashMap;

use crate::conn::Database;
use crate::dialect::Dialect;
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
