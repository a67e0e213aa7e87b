//! Parameters and typed rows for steps' `execute` and `query`: values bound
//! to each driver's placeholders, and rows decoded column by column from
//! each driver's own types into a small set every step language can read.

use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, Utc};
use futures_util::TryStreamExt;
use sqlx::mysql::MySql;
use sqlx::postgres::{PgTypeInfo, PgTypeKind, Postgres};
use sqlx::sqlite::Sqlite;
use sqlx::{Column as _, Row, TypeInfo, ValueRef};

use crate::conn::{Conn, Driver};
use crate::error::DbError;

/// A value bound to a parameter or read from a row.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// SQL `NULL`.
    Null,
    /// A boolean.
    Bool(bool),
    /// An integer.
    Int(i64),
    /// A floating-point number.
    Float(f64),
    /// Text; also exact numerics, dates, times, UUIDs and enum labels.
    Text(String),
    /// Bytes.
    Bytes(Vec<u8>),
    /// JSON text.
    Json(String),
    /// A point in time in UTC.
    Timestamp {
        /// Seconds since the Unix epoch.
        seconds: i64,
        /// Nanoseconds within the second.
        nanos: u32,
    },
}

/// A column of a result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    /// Its name.
    pub name: String,
    /// The database's name for its type.
    pub type_name: String,
}

/// A query's result.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Rows {
    /// The columns.
    pub columns: Vec<Column>,
    /// Each row's values, in column order.
    pub rows: Vec<Vec<Value>>,
}

impl Value {
    fn timestamp(&self) -> Option<DateTime<Utc>> {
        match self {
            Value::Timestamp { seconds, nanos } => DateTime::from_timestamp(*seconds, *nanos),
            _ => None,
        }
    }
}

fn utc(t: DateTime<Utc>) -> Value {
    Value::Timestamp {
        seconds: t.timestamp(),
        nanos: t.timestamp_subsec_nanos(),
    }
}

fn param_error(index: usize, message: impl std::fmt::Display) -> DbError {
    DbError::Query {
        context: "binding parameters".to_owned(),
        code: None,
        message: format!("parameter {}: {message}", index + 1),
        position: None,
    }
}

/// A parameter of no declared type, so that PostgreSQL infers the type of a
/// `NULL` from where it stands, as it would for a literal `NULL`.
struct Untyped;

impl sqlx::Type<Postgres> for Untyped {
    fn type_info() -> PgTypeInfo {
        PgTypeInfo::with_oid(sqlx::postgres::types::Oid(0))
    }
}

impl sqlx::Encode<'_, Postgres> for Untyped {
    fn encode_by_ref(
        &self,
        _: &mut sqlx::postgres::PgArgumentBuffer,
    ) -> Result<sqlx::encode::IsNull, sqlx::error::BoxDynError> {
        Ok(sqlx::encode::IsNull::Yes)
    }
}

/// Binds `params` to a query of one driver. `$null` and `$json` say how the
/// two values whose encoding differs by driver are bound.
macro_rules! bind_all {
    ($query:expr, $params:expr, $null:expr, $json:expr) => {{
        let mut q = $query;
        for (i, p) in $params.iter().enumerate() {
            q = match p {
                Value::Null => q.bind($null),
                Value::Bool(b) => q.bind(*b),
                Value::Int(n) => q.bind(*n),
                Value::Float(f) => q.bind(*f),
                Value::Text(s) => q.bind(s.clone()),
                Value::Bytes(b) => q.bind(b.clone()),
                Value::Json(s) => q.bind(($json)(i, s)?),
                Value::Timestamp { .. } => q.bind(
                    p.timestamp()
                        .ok_or_else(|| param_error(i, "timestamp is out of range"))?,
                ),
            };
        }
        q
    }};
}

fn pg_json(i: usize, s: &str) -> Result<sqlx::types::Json<serde_json::Value>, DbError> {
    serde_json::from_str(s)
        .map(sqlx::types::Json)
        .map_err(|e| param_error(i, format!("not valid JSON: {e}")))
}

fn text_json(i: usize, s: &str) -> Result<String, DbError> {
    serde_json::from_str::<serde::de::IgnoredAny>(s).map_err(|e| param_error(i, format!("not valid JSON: {e}")))?;
    Ok(s.to_owned())
}

fn failed(e: sqlx::Error) -> DbError {
    DbError::query("statement failed", e)
}

impl Conn {
    /// Runs one statement with `params` bound to its placeholders and
    /// returns the rows it affected. Without parameters it runs as plain
    /// text, like [`Conn::execute`].
    pub async fn execute_with(&mut self, sql: &str, params: &[Value]) -> Result<u64, DbError> {
        if params.is_empty() {
            return self.execute(sql).await;
        }
        self.inner.ready().await?;
        let done = match self.inner.driver() {
            Driver::Pg(c) => bind_all!(sqlx::query::<Postgres>(sql), params, Untyped, pg_json)
                .execute(c)
                .await
                .map(|r| r.rows_affected()),
            Driver::My(c) => bind_all!(sqlx::query::<MySql>(sql), params, None::<String>, text_json)
                .execute(c)
                .await
                .map(|r| r.rows_affected()),
            Driver::Lite(c) => bind_all!(sqlx::query::<Sqlite>(sql), params, None::<String>, text_json)
                .execute(c)
                .await
                .map(|r| r.rows_affected()),
        };
        done.map_err(failed)
    }

    /// Runs one statement with `params` and returns its rows, failing when
    /// it would return more than `max_rows`.
    pub async fn query_rows(&mut self, sql: &str, params: &[Value], max_rows: usize) -> Result<Rows, DbError> {
        self.inner.ready().await?;
        match self.inner.driver() {
            Driver::Pg(c) => {
                let q = bind_all!(sqlx::query::<Postgres>(sql), params, Untyped, pg_json);
                collect(q.fetch(c), max_rows, pg_value).await
            }
            Driver::My(c) => {
                let q = bind_all!(sqlx::query::<MySql>(sql), params, None::<String>, text_json);
                collect(q.fetch(c), max_rows, my_value).await
            }
            Driver::Lite(c) => {
                let q = bind_all!(sqlx::query::<Sqlite>(sql), params, None::<String>, text_json);
                collect(q.fetch(c), max_rows, lite_value).await
            }
        }
    }
}

async fn collect<'c, R: Row>(
    mut stream: futures_util::stream::BoxStream<'c, Result<R, sqlx::Error>>,
    max_rows: usize,
    decode: fn(&R, usize) -> Result<Value, DbError>,
) -> Result<Rows, DbError> {
    let mut out = Rows::default();
    while let Some(row) = stream.try_next().await.map_err(failed)? {
        if out.columns.is_empty() {
            out.columns = row
                .columns()
                .iter()
                .map(|c| Column {
                    name: c.name().to_owned(),
                    type_name: c.type_info().name().to_owned(),
                })
                .collect();
        }
        if out.rows.len() == max_rows {
            return Err(DbError::Query {
                context: "query".to_owned(),
                code: None,
                message: format!(
                    "the query returned more than {max_rows} rows, the most one query may return to a step; \
                     read in batches by key"
                ),
                position: None,
            });
        }
        let values = (0..row.columns().len())
            .map(|i| decode(&row, i))
            .collect::<Result<Vec<_>, _>>()?;
        out.rows.push(values);
    }
    Ok(out)
}

fn unsupported(row_column: &str, type_name: &str) -> DbError {
    DbError::Query {
        context: "query".to_owned(),
        code: None,
        message: format!(
            "column {row_column:?} has type {type_name}, which a step cannot read; cast it to text in the query"
        ),
        position: None,
    }
}

fn decode_error(column: &str, e: sqlx::Error) -> DbError {
    DbError::Query {
        context: "query".to_owned(),
        code: None,
        message: format!("reading column {column:?}: {e}"),
        position: None,
    }
}

/// Decodes column `i` of `row` as `T`, `NULL` as [`Value::Null`].
fn get<'r, R: Row, T>(row: &'r R, i: usize, map: impl FnOnce(T) -> Value) -> Result<Value, DbError>
where
    T: sqlx::Decode<'r, R::Database>,
    usize: sqlx::ColumnIndex<R>,
{
    let name = row.columns()[i].name().to_owned();
    if row.try_get_raw(i).map_err(|e| decode_error(&name, e))?.is_null() {
        return Ok(Value::Null);
    }
    row.try_get_unchecked::<T, _>(i)
        .map(map)
        .map_err(|e| decode_error(&name, e))
}

fn pg_value(row: &sqlx::postgres::PgRow, i: usize) -> Result<Value, DbError> {
    let column = &row.columns()[i];
    let mut info = column.type_info().clone();
    while let PgTypeKind::Domain(base) = info.kind() {
        info = base.clone();
    }
    if let PgTypeKind::Enum(_) = info.kind() {
        return get(row, i, Value::Text);
    }
    match info.name() {
        "BOOL" => get(row, i, Value::Bool),
        "INT2" => get(row, i, |n: i16| Value::Int(n.into())),
        "INT4" => get(row, i, |n: i32| Value::Int(n.into())),
        "INT8" => get(row, i, Value::Int),
        "OID" => get(row, i, |n: sqlx::postgres::types::Oid| Value::Int(n.0.into())),
        "FLOAT4" => get(row, i, |f: f32| Value::Float(f.into())),
        "FLOAT8" => get(row, i, Value::Float),
        "TEXT" | "VARCHAR" | "BPCHAR" | "NAME" | "UNKNOWN" | "CITEXT" => get(row, i, Value::Text),
        "BYTEA" => get(row, i, Value::Bytes),
        "JSON" | "JSONB" => get(row, i, |j: sqlx::types::Json<serde_json::Value>| {
            Value::Json(j.0.to_string())
        }),
        "TIMESTAMPTZ" => get(row, i, utc),
        "TIMESTAMP" => get(row, i, |t: NaiveDateTime| utc(t.and_utc())),
        "NUMERIC" => pg_numeric(row, i),
        "DATE" => get(row, i, |d: NaiveDate| Value::Text(d.to_string())),
        "TIME" => get(row, i, |t: NaiveTime| Value::Text(t.to_string())),
        "UUID" => get(row, i, |u: sqlx::types::Uuid| Value::Text(u.to_string())),
        "VOID" => Ok(Value::Null),
        other => Err(unsupported(column.name(), other)),
    }
}

/// A `numeric` as PostgreSQL prints it: with its declared scale, which the
/// decimal type does not keep (`12.50`, not `12.5000`).
fn pg_numeric(row: &sqlx::postgres::PgRow, i: usize) -> Result<Value, DbError> {
    let name = row.columns()[i].name().to_owned();
    let raw = row.try_get_raw(i).map_err(|e| decode_error(&name, e))?;
    if raw.is_null() {
        return Ok(Value::Null);
    }
    // Binary format: ndigits, weight, sign, dscale (each 16 bits), digits.
    let scale = match raw.format() {
        sqlx::postgres::PgValueFormat::Binary => raw
            .as_bytes()
            .ok()
            .and_then(|b| b.get(6..8))
            .map(|b| i64::from(u16::from_be_bytes([b[0], b[1]]))),
        sqlx::postgres::PgValueFormat::Text => None,
    };
    get(row, i, |d: sqlx::types::BigDecimal| {
        Value::Text(match scale {
            Some(scale) => d.with_scale(scale).to_string(),
            None => d.to_string(),
        })
    })
}

fn my_value(row: &sqlx::mysql::MySqlRow, i: usize) -> Result<Value, DbError> {
    let column = &row.columns()[i];
    let type_name = column.type_info().name();
    match type_name {
        "NULL" => Ok(Value::Null),
        "BOOLEAN" => get(row, i, |n: i64| Value::Bool(n != 0)),
        "TINYINT" | "SMALLINT" | "MEDIUMINT" | "INT" | "BIGINT" | "YEAR" | "TINYINT UNSIGNED" | "SMALLINT UNSIGNED"
        | "MEDIUMINT UNSIGNED" | "INT UNSIGNED" => get(row, i, Value::Int),
        "BIGINT UNSIGNED" | "BIT" => get(row, i, |n: u64| match i64::try_from(n) {
            Ok(n) => Value::Int(n),
            Err(_) => Value::Text(n.to_string()),
        }),
        "FLOAT" => get(row, i, |f: f32| Value::Float(f.into())),
        "DOUBLE" => get(row, i, Value::Float),
        "DECIMAL" | "CHAR" | "VARCHAR" | "TEXT" | "TINYTEXT" | "MEDIUMTEXT" | "LONGTEXT" | "ENUM" | "SET" => {
            get(row, i, Value::Text)
        }
        "JSON" => get(row, i, Value::Json),
        "BLOB" | "TINYBLOB" | "MEDIUMBLOB" | "LONGBLOB" | "BINARY" | "VARBINARY" => get(row, i, Value::Bytes),
        "TIMESTAMP" => get(row, i, utc),
        "DATETIME" => get(row, i, |t: NaiveDateTime| utc(t.and_utc())),
        "DATE" => get(row, i, |d: NaiveDate| Value::Text(d.to_string())),
        "TIME" => get(row, i, |t: NaiveTime| Value::Text(t.to_string())),
        other => Err(unsupported(column.name(), other)),
    }
}

/// SQLite types values, not columns: each value is read as the storage
/// class it has, except that a column declared `BOOLEAN` reads as booleans.
fn lite_value(row: &sqlx::sqlite::SqliteRow, i: usize) -> Result<Value, DbError> {
    let column = &row.columns()[i];
    let raw = row.try_get_raw(i).map_err(|e| decode_error(column.name(), e))?;
    if raw.is_null() {
        return Ok(Value::Null);
    }
    let storage = raw.type_info().name().to_owned();
    match storage.as_str() {
        "INTEGER" if column.type_info().name() == "BOOLEAN" => get(row, i, Value::Bool),
        "INTEGER" => get(row, i, Value::Int),
        "REAL" => get(row, i, Value::Float),
        "TEXT" => get(row, i, Value::Text),
        "BLOB" => get(row, i, Value::Bytes),
        other => Err(unsupported(column.name(), other)),
    }
}
