//! waymark's own tables (history, audit, checkpoints, copies of dropped
//! data) and their schema version, kept in `<history>_schema`: one row per
//! internal migration applied.
//!
//! The tables change only through internal migrations, run in order under
//! the migration lock by [`Database::ensure_history`]; each is written so
//! that running it again after a crash part-way does no harm (MySQL's DDL
//! commits as it runs). A history made by a waymark older than the
//! version table (made by the release before it) is read as version 1 and
//! upgraded in place. A waymark older than the history it finds refuses
//! it rather than misread it.

use crate::conn::{Conn, Database};
use crate::dialect::Dialect;
use crate::error::DbError;

/// The schema version of waymark's tables that this waymark writes.
pub const SCHEMA_VERSION: i64 = 3;

/// What each internal migration does, for the version table and messages.
const MIGRATIONS: [&str; SCHEMA_VERSION as usize] = [
    "history, audit, checkpoint and pre-image tables",
    "a checkpoint's direction in a column of its own",
    "a migration may be expanded: its expand done, its contract to come",
];

/// The column types of one dialect.
struct Types {
    text: &'static str,
    key: &'static str,
    ts: &'static str,
    big: &'static str,
    serial: &'static str,
    engine: &'static str,
}

fn types(dialect: Dialect) -> Types {
    match dialect {
        Dialect::Postgres => Types {
            text: "TEXT",
            key: "TEXT",
            ts: "TIMESTAMPTZ",
            big: "BIGINT",
            serial: "BIGSERIAL PRIMARY KEY",
            engine: "",
        },
        Dialect::Mysql => Types {
            text: "TEXT",
            key: "VARCHAR(191)",
            ts: "DATETIME(6)",
            big: "BIGINT",
            serial: "BIGINT AUTO_INCREMENT PRIMARY KEY",
            engine: " ENGINE=InnoDB",
        },
        Dialect::Sqlite => Types {
            text: "TEXT",
            key: "TEXT",
            ts: "TEXT",
            big: "INTEGER",
            serial: "INTEGER PRIMARY KEY AUTOINCREMENT",
            engine: "",
        },
    }
}

impl Database {
    /// Creates waymark's tables (and, on PostgreSQL, their schema) if
    /// needed, and brings them to [`SCHEMA_VERSION`]. Call it under the
    /// migration lock: two runners upgrading at once could collide.
    pub async fn ensure_history(&self) -> Result<(), DbError> {
        let found = self.connection().await?.schema_version().await?;
        if found == Some(SCHEMA_VERSION) {
            return Ok(());
        }
        // No version table: a history from before it existed (version 1,
        // whose tables the first migration finds and completes), or none.
        let from = found.unwrap_or(0);
        let dialect = self.dialect();
        let t = types(dialect);
        let h = &self.history;
        let versions = h.quoted(dialect, "_schema");
        let mut conn = self.connection().await?;
        if let (Dialect::Postgres, Some(schema)) = (dialect, &h.schema) {
            conn.execute(&format!("CREATE SCHEMA IF NOT EXISTS \"{schema}\""))
                .await?;
        }
        conn.execute(&format!(
            "CREATE TABLE IF NOT EXISTS {versions} (version {} NOT NULL PRIMARY KEY, what {} NOT NULL, at {} NOT NULL){}",
            t.big, t.text, t.ts, t.engine
        ))
        .await
        .map_err(|e| e.context(format!("creating the history table {versions}")))?;
        drop(conn);
        for version in from + 1..=SCHEMA_VERSION {
            let what = MIGRATIONS[version as usize - 1];
            // Where DDL is transactional, a migration and its version row
            // commit together; elsewhere each step is safe to repeat.
            let mut conn = if dialect.transactional_ddl() {
                self.begin().await?
            } else {
                self.connection().await?
            };
            let done = async {
                // SQLite has no session lock: two runners can get here at
                // once, and the write lock `BEGIN IMMEDIATE` took decides.
                if conn.schema_version().await?.is_some_and(|v| v >= version) {
                    return Ok(());
                }
                match version {
                    1 => conn.create_tables().await?,
                    2 => conn.checkpoint_direction_column().await?,
                    // The state is text: no column changes. The version
                    // makes an older waymark refuse a history it would
                    // misread.
                    3 => {}
                    _ => unreachable!("one arm per migration"),
                }
                crate::crash_point("schema-step-done");
                let sql = format!(
                    "INSERT INTO {versions} (version, what, at) VALUES ({}, {}, {})",
                    dialect.placeholder(1),
                    dialect.placeholder(2),
                    dialect.now()
                );
                conn.execute_with(&sql, &[crate::Value::Int(version), crate::Value::Text(what.to_owned())])
                    .await?;
                crate::crash_point("schema-version-recorded");
                Ok::<(), DbError>(())
            }
            .await;
            match done {
                Ok(()) if conn.in_transaction() => conn.commit().await?,
                Ok(()) => {}
                Err(e) => {
                    if conn.in_transaction() {
                        let _ = conn.rollback().await;
                    }
                    return Err(e.context(format!(
                        "upgrading waymark's tables to schema version {version} ({what})"
                    )));
                }
            }
            crate::crash_point("schema-upgraded");
            tracing::info!(version, "upgraded waymark's tables: {what}");
        }
        Ok(())
    }
}

impl Conn {
    /// The schema version of waymark's tables: `None` without a version
    /// table. A version newer than this waymark's refuses.
    pub(crate) async fn schema_version(&mut self) -> Result<Option<i64>, DbError> {
        if !self.own_table_exists("_schema").await? {
            return Ok(None);
        }
        let dialect = self.dialect();
        let table = self.history.quoted(dialect, "_schema");
        let rows = self
            .query_rows(&format!("SELECT MAX(version) FROM {table}"), &[], 1)
            .await
            .map_err(|e| e.context(format!("reading the schema version in {table}")))?;
        let found = match rows.rows.first().and_then(|r| r.first()) {
            Some(crate::Value::Int(v)) => *v,
            _ => return Ok(Some(0)),
        };
        if found > SCHEMA_VERSION {
            return Err(DbError::NewerSchema {
                table: match &self.history.schema {
                    Some(schema) => format!("{schema}.{}_schema", self.history.name),
                    None => format!("{}_schema", self.history.name),
                },
                found,
                known: SCHEMA_VERSION,
            });
        }
        Ok(Some(found))
    }

    /// Version 1: the tables, as the releases before the version table
    /// made them; `backup_id` came later than the rest, so a history older
    /// still gets it now.
    async fn create_tables(&mut self) -> Result<(), DbError> {
        let dialect = self.dialect();
        let Types {
            text,
            key,
            ts,
            big,
            serial,
            engine,
        } = types(dialect);
        let h = self.history.clone();
        let statements = [
            format!(
                "CREATE TABLE IF NOT EXISTS {table} (\
                 version {key} NOT NULL PRIMARY KEY, \
                 name {text} NOT NULL, \
                 checksum {text} NOT NULL, \
                 state {text} NOT NULL, \
                 applied_at {ts} NOT NULL, \
                 duration_ms {big} NOT NULL, \
                 applied_by {text} NOT NULL, \
                 hostname {text} NOT NULL, \
                 error {text}, \
                 backup_id {text})\
                 {engine}",
                table = h.quoted(dialect, "")
            ),
            format!(
                "CREATE TABLE IF NOT EXISTS {audit} (\
                 id {serial}, \
                 at {ts} NOT NULL, \
                 action {text} NOT NULL, \
                 version {text} NOT NULL, \
                 detail {text} NOT NULL, \
                 actor {text} NOT NULL, \
                 hostname {text} NOT NULL)\
                 {engine}",
                audit = h.quoted(dialect, "_audit")
            ),
            format!(
                "CREATE TABLE IF NOT EXISTS {checkpoints} (\
                 version {key} NOT NULL PRIMARY KEY, \
                 checkpoint {text} NOT NULL, \
                 at {ts} NOT NULL)\
                 {engine}",
                checkpoints = h.quoted(dialect, "_checkpoint")
            ),
            format!(
                "CREATE TABLE IF NOT EXISTS {preimages} (\
                 kept_in {key} NOT NULL PRIMARY KEY, \
                 version {key} NOT NULL, \
                 seq {big} NOT NULL, \
                 object {text} NOT NULL, \
                 table_name {text} NOT NULL, \
                 column_name {text}, \
                 columns {text} NOT NULL, \
                 row_count {big} NOT NULL, \
                 taken_at {ts} NOT NULL)\
                 {engine}",
                preimages = h.quoted(dialect, "_preimage")
            ),
        ];
        for statement in &statements {
            self.execute(statement)
                .await
                .map_err(|e| e.context(format!("creating the history table {}", h.quoted(dialect, ""))))?;
        }
        if !self.own_column_exists("", "backup_id").await? {
            self.execute(&format!(
                "ALTER TABLE {} ADD COLUMN backup_id {text}",
                h.quoted(dialect, "")
            ))
            .await?;
        }
        Ok(())
    }

    /// Version 2: a checkpoint's direction, which version 1 packed into
    /// the checkpoint as `up:` or `down:`, gets a column of its own.
    async fn checkpoint_direction_column(&mut self) -> Result<(), DbError> {
        let dialect = self.dialect();
        let table = self.history.quoted(dialect, "_checkpoint");
        if !self.own_column_exists("_checkpoint", "direction").await? {
            // Every checkpoint of version 1 that lacks a prefix was of `up`.
            self.execute(&format!(
                "ALTER TABLE {table} ADD COLUMN direction {} NOT NULL DEFAULT 'up'",
                if dialect == Dialect::Mysql {
                    "VARCHAR(8)"
                } else {
                    "TEXT"
                }
            ))
            .await?;
        }
        let packed = self
            .query_rows(
                &format!(
                    "SELECT version, checkpoint FROM {table} WHERE checkpoint LIKE 'up:%' OR checkpoint LIKE 'down:%'"
                ),
                &[],
                usize::MAX,
            )
            .await?;
        for row in packed.rows {
            let (Some(crate::Value::Text(version)), Some(crate::Value::Text(checkpoint))) = (row.first(), row.get(1))
            else {
                continue;
            };
            let (direction, rest) = checkpoint.split_once(':').expect("selected for its prefix");
            self.execute_with(
                &format!(
                    "UPDATE {table} SET direction = {}, checkpoint = {} WHERE version = {}",
                    dialect.placeholder(1),
                    dialect.placeholder(2),
                    dialect.placeholder(3)
                ),
                &[
                    crate::Value::Text(direction.to_owned()),
                    crate::Value::Text(rest.to_owned()),
                    crate::Value::Text(version.clone()),
                ],
            )
            .await?;
        }
        Ok(())
    }

    /// Whether waymark's table `<history><suffix>` has `column`.
    async fn own_column_exists(&mut self, suffix: &str, column: &str) -> Result<bool, DbError> {
        let dialect = self.dialect();
        let h = self.history.clone();
        let name = format!("{}{suffix}", h.name);
        let (sql, args) = match dialect {
            Dialect::Postgres => (
                format!(
                    "SELECT count(*) FROM information_schema.columns WHERE table_schema = {} AND table_name = $1 \
                     AND column_name = $2",
                    h.schema
                        .as_ref()
                        .map_or("current_schema()".to_owned(), |s| format!("'{s}'"))
                ),
                vec![name, column.to_owned()],
            ),
            Dialect::Mysql => (
                "SELECT count(*) FROM information_schema.columns WHERE table_schema = DATABASE() AND table_name = ? \
                 AND column_name = ?"
                    .to_owned(),
                vec![name, column.to_owned()],
            ),
            Dialect::Sqlite => (
                "SELECT count(*) FROM pragma_table_info(?) WHERE name = ?".to_owned(),
                vec![name, column.to_owned()],
            ),
        };
        let args: Vec<crate::Value> = args.into_iter().map(crate::Value::Text).collect();
        let found = self.query_rows(&sql, &args, 1).await?;
        Ok(!matches!(
            found.rows.first().and_then(|r| r.first()),
            Some(crate::Value::Int(0))
        ))
    }
}
