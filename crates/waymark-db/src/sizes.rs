//! How big tables are, as the catalog estimates it: what lint weighs a
//! lock by (an index built on a hundred rows blocks no one for long).

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
        match self.dialect() {
            Dialect::Postgres | Dialect::Mysql => {
                let sql = if self.dialect() == Dialect::Postgres {
                    "SELECT lower(c.relname)::text, (CASE WHEN c.reltuples < 0 THEN pg_relation_size(c.oid) / 40 \
                     ELSE c.reltuples END)::int8 FROM pg_class c \
                     WHERE c.relkind IN ('r', 'p') AND pg_table_is_visible(c.oid)"
                } else {
                    "SELECT LOWER(TABLE_NAME), CAST(COALESCE(TABLE_ROWS, 0) AS SIGNED) FROM information_schema.TABLES \
                     WHERE TABLE_SCHEMA = DATABASE() AND TABLE_TYPE = 'BASE TABLE'"
                };
                for row in conn.query_rows(sql, &[], crate::dump::MANY).await?.rows {
                    if let [Value::Text(name), Value::Int(n)] = row.as_slice()
                        && tables.contains(name)
                    {
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
