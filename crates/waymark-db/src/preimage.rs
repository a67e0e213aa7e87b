//! Pre-images: copies of the data a migration is about to drop (a column,
//! a table), kept in the database beside the history, so that the
//! migration's `down` puts the rows back and not only the columns.
//!
//! A copy is a table `<history>_pre_<hash>`, made with `CREATE TABLE ...
//! AS SELECT` on the migration's own connection: on PostgreSQL and SQLite
//! it commits or rolls back with the drop it protects. `<history>_preimage`
//! lists the copies. A column's copy holds the table's primary key and the
//! column; a table's, every column that is not generated (those the
//! database computes again).

use sha2::{Digest, Sha256};
use sqlx::Row;

use crate::conn::{Conn, with_conn};
use crate::dialect::Dialect;
use crate::dump::{MANY, text_rows};
use crate::error::DbError;
use crate::value::Value;

/// A name as a statement wrote it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ident {
    /// The name without its quotes.
    pub value: String,
    /// Whether it was quoted (PostgreSQL folds unquoted names to lower case).
    pub quoted: bool,
}

/// A table, or one column of a table, as a statement names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectRef {
    /// The table's name, part by part (`schema.table` has two).
    pub table: Vec<Ident>,
    /// The column, for a column.
    pub column: Option<Ident>,
}

/// A copy kept for a migration's `down`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, schemars::JsonSchema)]
pub struct Preimage {
    /// The migration that dropped the data.
    pub version: String,
    /// `table` or `table.column`, as the catalog names them
    /// (schema-qualified on PostgreSQL).
    pub object: String,
    /// The table.
    pub table: String,
    /// The column, for a column.
    pub column: Option<String>,
    /// The table that holds the copy.
    pub kept_in: String,
    /// How many rows the copy holds.
    pub rows: u64,
    /// The copy's columns: the primary key and the column, or every column.
    #[serde(skip)]
    columns: Vec<String>,
}

impl Conn {
    /// Keeps a copy of what dropping `target` would lose, for `version`'s
    /// `down`. `None` when there is nothing to keep: no such table or
    /// column here (the statement will fail or skip it by itself), an
    /// empty table, a temporary table, or a copy this migration already
    /// kept.
    pub async fn keep_preimage(&mut self, version: &str, target: &ObjectRef) -> Result<Option<Preimage>, DbError> {
        let Some(table) = self.resolve_table(&target.table).await? else {
            return Ok(None);
        };
        // A drop from an empty table loses nothing: no copy to make (and
        // so no warning that one could not be matched back). A real
        // history drops many a table before it ever held a row.
        let any = format!("SELECT 1 FROM {} LIMIT 1", self.dialect().quote_table(&table));
        if self.query_rows(&any, &[], 1).await?.rows.is_empty() {
            return Ok(None);
        }
        let info = self.describe_table(table.clone()).await?;
        let (object, column, columns) = match &target.column {
            None => (table.clone(), None, info.columns.clone()),
            Some(wanted) => {
                let Some(column) = find_column(self.dialect(), &info.columns, wanted) else {
                    return Ok(None);
                };
                if info.primary_key.is_empty() {
                    return Err(DbError::Preimage(format!(
                        "dropping column {table}.{column} would lose its values for good: table {table} has no \
                         primary key, so waymark cannot keep them in a form that `down` can match back to their \
                         rows"
                    )));
                }
                if info.primary_key.contains(&column) {
                    return Err(DbError::Preimage(format!(
                        "dropping column {table}.{column} would lose its values for good: it is part of the \
                         primary key, so waymark cannot keep them in a form that `down` can match back to their \
                         rows"
                    )));
                }
                let mut columns = info.primary_key.clone();
                columns.push(column.clone());
                (format!("{table}.{column}"), Some(column), columns)
            }
        };
        if columns.is_empty() {
            return Ok(None);
        }
        let kept_in = format!(
            "{}_pre_{}",
            self.history.name,
            &hex::encode(Sha256::digest(format!("{version}\0{object}")))[..10]
        );
        let dialect = self.dialect();
        let registry = self.history.preimages(dialect);
        let already = self
            .query_rows(
                &format!("SELECT 1 FROM {registry} WHERE kept_in = {}", dialect.placeholder(1)),
                &[Value::Text(kept_in.clone())],
                1,
            )
            .await?;
        if !already.rows.is_empty() {
            return Ok(None);
        }
        let kept = self.history.quoted(dialect, &kept_in[self.history.name.len()..]);
        // MySQL would join the copy back row by row against every row
        // without a key to probe it by.
        let engine = match (&column, dialect) {
            (Some(_), Dialect::Mysql) => format!(
                " (PRIMARY KEY ({})) ENGINE=InnoDB",
                column_list(dialect, &columns[..columns.len() - 1])
            ),
            (None, Dialect::Mysql) => " ENGINE=InnoDB".to_owned(),
            _ => String::new(),
        };
        let context = || format!("keeping a copy of {object} in {kept_in}");
        // A copy the registry does not list was left by a run stopped
        // between the two (MySQL/MariaDB commits the copy at once): it is
        // this migration's, of an earlier attempt, and made again.
        self.execute(&format!("DROP TABLE IF EXISTS {kept}"))
            .await
            .map_err(|e| e.context(context()))?;
        self.execute(&format!(
            "CREATE TABLE {kept}{engine} AS SELECT {} FROM {}",
            column_list(dialect, &columns),
            dialect.quote_table(&table)
        ))
        .await
        .map_err(|e| e.context(context()))?;
        crate::crash_point("preimage-copied");
        let rows = self.count(&kept).await.map_err(|e| e.context(context()))?;
        let sql = format!(
            "INSERT INTO {registry} (kept_in, version, seq, object, table_name, column_name, columns, row_count, \
             taken_at) SELECT {}, {}, COALESCE(MAX(seq), 0) + 1, {}, {}, {}, {}, {}, {} FROM {registry} \
             WHERE version = {}",
            dialect.placeholder(1),
            dialect.placeholder(2),
            dialect.placeholder(3),
            dialect.placeholder(4),
            dialect.placeholder(5),
            dialect.placeholder(6),
            dialect.placeholder(7),
            dialect.now(),
            dialect.placeholder(8),
        );
        let params = [
            Value::Text(kept_in.clone()),
            Value::Text(version.to_owned()),
            Value::Text(object.clone()),
            Value::Text(table.clone()),
            column.clone().map_or(Value::Null, Value::Text),
            Value::Text(serde_json::to_string(&columns).expect("strings serialize")),
            Value::Int(i64::try_from(rows).unwrap_or(i64::MAX)),
            Value::Text(version.to_owned()),
        ];
        self.execute_with(&sql, &params)
            .await
            .map_err(|e| e.context(format!("listing the copy of {object} in {registry}")))?;
        tracing::debug!(version, object, rows, kept_in, "kept a pre-image");
        crate::crash_point("preimage-kept");
        Ok(Some(Preimage {
            version: version.to_owned(),
            object,
            table,
            column,
            kept_in,
            rows,
            columns,
        }))
    }

    /// The copies kept for `version` (every copy, without one), in the
    /// order they were taken.
    pub async fn preimages(&mut self, version: Option<&str>) -> Result<Vec<Preimage>, DbError> {
        let dialect = self.dialect();
        let mut sql = format!(
            "SELECT version, object, table_name, column_name, kept_in, row_count, columns FROM {}",
            self.history.preimages(dialect)
        );
        if version.is_some() {
            sql.push_str(&format!(" WHERE version = {}", dialect.placeholder(1)));
        }
        sql.push_str(" ORDER BY version, seq");
        let rows = with_conn!(&mut self.inner, c => {
            let mut q = sqlx::query(&sql);
            if let Some(v) = version {
                q = q.bind(v);
            }
            q.fetch_all(c).await.and_then(|rows| {
                rows.iter()
                    .map(|r| {
                        Ok((
                            r.try_get::<String, _>(0)?,
                            r.try_get::<String, _>(1)?,
                            r.try_get::<String, _>(2)?,
                            r.try_get::<Option<String>, _>(3)?,
                            r.try_get::<String, _>(4)?,
                            r.try_get::<i64, _>(5)?,
                            r.try_get::<String, _>(6)?,
                        ))
                    })
                    .collect::<Result<Vec<_>, sqlx::Error>>()
            })
        })
        .map_err(|e| DbError::query("reading the list of pre-images", e))?;
        Ok(rows
            .into_iter()
            .map(|(version, object, table, column, kept_in, rows, columns)| Preimage {
                version,
                object,
                table,
                column,
                kept_in,
                rows: u64::try_from(rows).unwrap_or(0),
                columns: serde_json::from_str(&columns).unwrap_or_default(),
            })
            .collect())
    }

    /// Puts a copy back into the table or column it was taken from, then
    /// removes the copy. `None` (and nothing done) while the table or
    /// column, or a column the copy needs to match rows, does not exist.
    /// Returns the rows written: fewer than the copy holds when rows were
    /// deleted since the column was dropped.
    pub async fn restore_preimage(&mut self, preimage: &Preimage) -> Result<Option<u64>, DbError> {
        let dialect = self.dialect();
        let Some(table) = self.existing_table(&preimage.table).await? else {
            return Ok(None);
        };
        let info = self.describe_table(table.clone()).await?;
        if preimage.columns.iter().any(|c| {
            find_column(
                dialect,
                &info.columns,
                &Ident {
                    value: c.clone(),
                    quoted: true,
                },
            )
            .is_none()
        }) {
            return Ok(None);
        }
        let kept = self
            .history
            .quoted(dialect, &preimage.kept_in[self.history.name.len()..]);
        let target = dialect.quote_table(&table);
        let context = || format!("putting back {} from {}", preimage.object, preimage.kept_in);
        let written = match &preimage.column {
            Some(column) => {
                let key = &preimage.columns[..preimage.columns.len() - 1];
                let c = dialect.quote_ident(column);
                let on = key
                    .iter()
                    .map(|k| {
                        let k = dialect.quote_ident(k);
                        format!("{target}.{k} = waymark_kept.{k}")
                    })
                    .collect::<Vec<_>>()
                    .join(" AND ");
                let sql = match dialect {
                    Dialect::Mysql => {
                        format!(
                            "UPDATE {target} JOIN {kept} AS waymark_kept ON {on} SET {target}.{c} = waymark_kept.{c}"
                        )
                    }
                    _ => format!("UPDATE {target} SET {c} = waymark_kept.{c} FROM {kept} AS waymark_kept WHERE {on}"),
                };
                self.execute(&sql).await.map_err(|e| e.context(context()))?
            }
            None => {
                let columns = column_list(dialect, &preimage.columns);
                let overriding = if dialect == Dialect::Postgres {
                    " OVERRIDING SYSTEM VALUE"
                } else {
                    ""
                };
                let rows = self
                    .execute(&format!(
                        "INSERT INTO {target} ({columns}){overriding} SELECT {columns} FROM {kept}"
                    ))
                    .await
                    .map_err(|e| e.context(context()))?;
                if dialect == Dialect::Postgres {
                    self.advance_sequences(&target)
                        .await
                        .map_err(|e| e.context(context()))?;
                }
                rows
            }
        };
        crate::crash_point("preimage-written-back");
        self.discard_preimage(&preimage.kept_in)
            .await
            .map_err(|e| e.context(context()))?;
        crate::crash_point("preimage-discarded");
        tracing::debug!(object = preimage.object, written, "put back a pre-image");
        Ok(Some(written))
    }

    /// Whether the table (or column) a copy was taken of exists now.
    pub async fn preimage_object_exists(&mut self, preimage: &Preimage) -> Result<bool, DbError> {
        let Some(table) = self.existing_table(&preimage.table).await? else {
            return Ok(false);
        };
        let Some(column) = &preimage.column else {
            return Ok(true);
        };
        let info = self.describe_table(table).await?;
        let wanted = Ident {
            value: column.clone(),
            quoted: true,
        };
        Ok(find_column(self.dialect(), &info.columns, &wanted).is_some())
    }

    /// Removes a copy that is no longer wanted, and its listing.
    pub async fn discard_preimage(&mut self, kept_in: &str) -> Result<(), DbError> {
        let dialect = self.dialect();
        let kept = self.history.quoted(dialect, &kept_in[self.history.name.len()..]);
        self.execute(&format!("DROP TABLE IF EXISTS {kept}")).await?;
        self.execute_with(
            &format!(
                "DELETE FROM {} WHERE kept_in = {}",
                self.history.preimages(dialect),
                dialect.placeholder(1)
            ),
            &[Value::Text(kept_in.to_owned())],
        )
        .await?;
        Ok(())
    }

    /// Moves the sequences that feed `table`'s columns past the values now
    /// in them, so the next insert does not collide with a restored row.
    async fn advance_sequences(&mut self, table: &str) -> Result<(), DbError> {
        let owned = text_rows(
            self.query_rows(
                "SELECT a.attname::text, pg_get_serial_sequence($1, a.attname) FROM pg_attribute a \
                 WHERE a.attrelid = $1::regclass AND a.attnum > 0 AND NOT a.attisdropped \
                 AND pg_get_serial_sequence($1, a.attname) IS NOT NULL",
                &[Value::Text(table.to_owned())],
                MANY,
            )
            .await?,
        );
        for row in owned {
            if let [column, sequence] = row.as_slice() {
                self.execute_with(
                    &format!(
                        "SELECT setval($1, max({})) FROM {table} HAVING max({}) IS NOT NULL",
                        Dialect::Postgres.quote_ident(column),
                        Dialect::Postgres.quote_ident(column)
                    ),
                    &[Value::Text(sequence.clone())],
                )
                .await?;
            }
        }
        Ok(())
    }

    async fn count(&mut self, table: &str) -> Result<u64, DbError> {
        let rows = self
            .query_rows(&format!("SELECT COUNT(*) FROM {table}"), &[], 1)
            .await?;
        Ok(match rows.rows.first().and_then(|r| r.first()) {
            Some(Value::Int(n)) => u64::try_from(*n).unwrap_or(0),
            _ => 0,
        })
    }

    /// The table a statement's name means here, named as [`Conn::tables`]
    /// names it; `None` when there is none or it is temporary.
    async fn resolve_table(&mut self, name: &[Ident]) -> Result<Option<String>, DbError> {
        let dialect = self.dialect();
        let (qualifier, bare) = match name {
            [bare] => (None, bare),
            [qualifier, bare] => (Some(qualifier), bare),
            _ if dialect == Dialect::Postgres => (None, name.last().expect("a name has parts")),
            _ => return Ok(None),
        };
        let found = match dialect {
            Dialect::Postgres => {
                let written = name
                    .iter()
                    .map(|p| {
                        if p.quoted {
                            dialect.quote_ident(&p.value)
                        } else {
                            p.value.clone()
                        }
                    })
                    .collect::<Vec<_>>()
                    .join(".");
                self.query_rows(
                    "SELECT n.nspname || '.' || c.relname FROM pg_class c \
                     JOIN pg_namespace n ON n.oid = c.relnamespace \
                     WHERE c.oid = to_regclass($1) AND c.relkind IN ('r', 'p') AND c.relpersistence <> 't'",
                    &[Value::Text(written)],
                    1,
                )
                .await?
            }
            Dialect::Mysql => {
                if let Some(q) = qualifier {
                    let current = text_rows(self.query_rows("SELECT DATABASE()", &[], 1).await?);
                    if current.first().and_then(|r| r.first()) != Some(&q.value) {
                        return Err(DbError::Preimage(format!(
                            "waymark keeps copies of dropped data only for the migrated database's own tables, \
                             and {}.{} is in another database",
                            q.value, bare.value
                        )));
                    }
                }
                self.query_rows(
                    "SELECT table_name FROM information_schema.tables WHERE table_schema = DATABASE() \
                     AND table_type = 'BASE TABLE' AND table_name = ?",
                    &[Value::Text(bare.value.clone())],
                    1,
                )
                .await?
            }
            Dialect::Sqlite => {
                match qualifier.map(|q| q.value.to_ascii_lowercase()) {
                    None => {}
                    Some(q) if q == "main" => {}
                    Some(q) if q == "temp" => return Ok(None),
                    Some(q) => {
                        return Err(DbError::Preimage(format!(
                            "waymark keeps copies of dropped data only for the main database's tables, and \
                             {q}.{} is in an attached one",
                            bare.value
                        )));
                    }
                }
                // A temporary table of the same name hides the main one.
                let temp = self
                    .query_rows(
                        "SELECT 1 FROM sqlite_temp_master WHERE type = 'table' AND name = ? COLLATE NOCASE",
                        &[Value::Text(bare.value.clone())],
                        1,
                    )
                    .await?;
                if qualifier.is_none() && !temp.rows.is_empty() {
                    return Ok(None);
                }
                self.query_rows(
                    "SELECT name FROM sqlite_master WHERE type = 'table' AND name = ? COLLATE NOCASE",
                    &[Value::Text(bare.value.clone())],
                    1,
                )
                .await?
            }
        };
        Ok(text_rows(found).into_iter().next().and_then(|r| r.into_iter().next()))
    }

    /// `table` (as [`Conn::tables`] names it), if it exists now.
    async fn existing_table(&mut self, table: &str) -> Result<Option<String>, DbError> {
        let parts = match self.dialect() {
            Dialect::Postgres => table.splitn(2, '.').collect::<Vec<_>>(),
            _ => vec![table],
        };
        let name: Vec<Ident> = parts
            .into_iter()
            .map(|p| Ident {
                value: p.to_owned(),
                quoted: true,
            })
            .collect();
        self.resolve_table(&name).await
    }
}

/// The column of `columns` a statement's name means: exactly, for a quoted
/// name or anywhere but PostgreSQL, ignoring case; in lower case for an
/// unquoted name on PostgreSQL.
fn find_column(dialect: Dialect, columns: &[String], wanted: &Ident) -> Option<String> {
    columns
        .iter()
        .find(|c| match dialect {
            Dialect::Postgres if wanted.quoted => **c == wanted.value,
            Dialect::Postgres => **c == wanted.value.to_lowercase(),
            _ => c.eq_ignore_ascii_case(&wanted.value),
        })
        .cloned()
}

fn column_list(dialect: Dialect, columns: &[String]) -> String {
    columns
        .iter()
        .map(|c| dialect.quote_ident(c))
        .collect::<Vec<_>>()
        .join(", ")
}
