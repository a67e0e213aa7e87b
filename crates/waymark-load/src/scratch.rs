//! The scratch database a rehearsal changes: what it holds, and, on
//! PostgreSQL, filling it as a copy of another database of the same
//! server (`CREATE DATABASE ... TEMPLATE`).

use std::str::FromStr;

use sqlx::{ConnectOptions, Connection};

use crate::conn::{Conn, redact};
use crate::error::LoadError;

/// Up to five of the tables `url`'s database holds (schema-qualified on
/// PostgreSQL), and how many there are.
pub async fn tables(url: &str) -> Result<(u64, Vec<String>), LoadError> {
    let mut conn = Conn::open(url, "waymark-rehearse").await?;
    let failed = |e: sqlx::Error| LoadError::Connect {
        url: redact(url),
        message: e.to_string(),
    };
    let rows: Vec<(String,)> = match &mut conn {
        Conn::Pg(c) => sqlx::query_as(
            "SELECT (table_schema || '.' || table_name)::text FROM information_schema.tables \
              WHERE table_schema NOT IN ('pg_catalog', 'information_schema') ORDER BY 1",
        )
        .fetch_all(c)
        .await
        .map_err(failed)?,
        Conn::MySql(c) => sqlx::query_as(
            "SELECT CAST(table_name AS CHAR) FROM information_schema.tables \
              WHERE table_schema = DATABASE() ORDER BY 1",
        )
        .fetch_all(c)
        .await
        .map_err(failed)?,
    };
    conn.close().await;
    let count = rows.len() as u64;
    Ok((count, rows.into_iter().take(5).map(|(t,)| t).collect()))
}

/// Creates `url`'s database as a copy of `template`, a database of the
/// same PostgreSQL server. Refused if it exists already: a rehearsal
/// never replaces a database.
pub async fn create_from_template(url: &str, template: &str) -> Result<(), LoadError> {
    let refuse = |message: String| LoadError::Scratch {
        url: redact(url),
        message,
    };
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        return Err(refuse(
            "--template copies a PostgreSQL database; on MySQL/MariaDB restore a copy into the scratch database first"
                .to_owned(),
        ));
    }
    let options = sqlx::postgres::PgConnectOptions::from_str(url).map_err(|e| refuse(e.to_string()))?;
    let name = options
        .get_database()
        .map(str::to_owned)
        .ok_or_else(|| refuse("the URL names no database".to_owned()))?;
    let mut admin = options
        .database("postgres")
        .application_name("waymark-rehearse")
        .connect()
        .await
        .map_err(|e| refuse(e.to_string()))?;
    let exists: Option<(i32,)> = sqlx::query_as("SELECT 1 FROM pg_database WHERE datname = $1")
        .bind(&name)
        .fetch_optional(&mut admin)
        .await
        .map_err(|e| refuse(e.to_string()))?;
    if exists.is_some() {
        let _ = admin.close().await;
        return Err(refuse(format!(
            "database \"{name}\" exists already, and --template never replaces a database: drop it, or leave out --template to rehearse on it as it is"
        )));
    }
    let quote = |s: &str| format!("\"{}\"", s.replace('"', "\"\""));
    let result = sqlx::raw_sql(&format!(
        "CREATE DATABASE {} TEMPLATE {}",
        quote(&name),
        quote(template)
    ))
    .execute(&mut admin)
    .await;
    let _ = admin.close().await;
    result.map(drop).map_err(|e| {
        let message = match &e {
            sqlx::Error::Database(db) if db.code().as_deref() == Some("55006") => format!(
                "{} (PostgreSQL copies a database only while nobody else is connected to it: use a backup, or a moment when \"{template}\" is idle)",
                db.message()
            ),
            sqlx::Error::Database(db) => db.message().to_owned(),
            _ => e.to_string(),
        };
        refuse(format!("could not copy \"{template}\" into \"{name}\": {message}"))
    })
}
