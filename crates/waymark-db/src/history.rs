//! The history table: one row per migration that is applied, baselined,
//! failed or running, and an audit table of what `baseline` and `repair`
//! changed by hand.

use sqlx::Row;

use crate::conn::{Conn, ConnInner, Database, with_conn};
use crate::dialect::Dialect;
use crate::error::DbError;
use crate::value::Value;

/// Where the history is kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryTable {
    /// Table name; default `waymark_history`.
    pub name: String,
    /// PostgreSQL schema; `None` means the first schema on the search path.
    pub schema: Option<String>,
}

impl Default for HistoryTable {
    fn default() -> Self {
        HistoryTable {
            name: "waymark_history".to_owned(),
            schema: None,
        }
    }
}

impl HistoryTable {
    pub(crate) fn validate(&self) -> Result<(), DbError> {
        let plain = |s: &str| {
            !s.is_empty()
                && s.len() <= 48
                && s.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
                && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        };
        if !plain(&self.name) {
            return Err(DbError::Config(format!(
                "history table name {:?} must be a plain identifier (letters, digits, _; at most 48 characters)",
                self.name
            )));
        }
        if let Some(schema) = &self.schema
            && !plain(schema)
        {
            return Err(DbError::Config(format!(
                "history schema name {schema:?} must be a plain identifier (letters, digits, _)"
            )));
        }
        Ok(())
    }

    /// One of waymark's tables: the history's name with `suffix`, in the
    /// history's schema on PostgreSQL, quoted.
    pub(crate) fn quoted(&self, dialect: Dialect, suffix: &str) -> String {
        let table = dialect.quote_ident(&format!("{}{suffix}", self.name));
        match (dialect, &self.schema) {
            (Dialect::Postgres, Some(schema)) => format!("{}.{table}", dialect.quote_ident(schema)),
            _ => table,
        }
    }

    fn table(&self, dialect: Dialect) -> String {
        self.quoted(dialect, "")
    }

    fn audit(&self, dialect: Dialect) -> String {
        self.quoted(dialect, "_audit")
    }

    fn checkpoints(&self, dialect: Dialect) -> String {
        self.quoted(dialect, "_checkpoint")
    }

    pub(crate) fn preimages(&self, dialect: Dialect) -> String {
        self.quoted(dialect, "_preimage")
    }
}

/// A migration's state in the history table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Applied by waymark.
    Applied,
    /// Recorded by `baseline` as already present.
    Baseline,
    /// Broke part-way outside a transaction; needs `repair`.
    Failed,
    /// Being applied outside a transaction, or its runner died doing so.
    Running,
    /// Expanded by an expand/contract step: the old and the new shape side
    /// by side until `complete` contracts it.
    Expanded,
}

impl State {
    /// The name stored in the table.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Applied => "applied",
            State::Baseline => "baseline",
            State::Failed => "failed",
            State::Running => "running",
            State::Expanded => "expanded",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "applied" => State::Applied,
            "baseline" => State::Baseline,
            "failed" => State::Failed,
            "running" => State::Running,
            "expanded" => State::Expanded,
            _ => return None,
        })
    }
}

/// One row of the history table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryRow {
    /// The migration's version, as written in its file name.
    pub version: String,
    /// The migration's name.
    pub name: String,
    /// SHA-256 (hex) of the migration as it was applied.
    pub checksum: String,
    /// Its state.
    pub state: State,
    /// When it was recorded, RFC 3339 in UTC.
    pub applied_at: String,
    /// How long applying it took.
    pub duration_ms: i64,
    /// The operating-system user who applied it.
    pub applied_by: String,
    /// The host it was applied from.
    pub hostname: String,
    /// For a failed migration, what went wrong.
    pub error: Option<String>,
    /// The backup taken before it was applied (`up --backup`).
    pub backup_id: Option<String>,
}

/// A row to record.
#[derive(Debug, Clone)]
pub struct NewHistoryRow<'a> {
    /// Version.
    pub version: &'a str,
    /// Name.
    pub name: &'a str,
    /// Checksum.
    pub checksum: &'a str,
    /// State.
    pub state: State,
    /// Duration so far.
    pub duration_ms: i64,
    /// Error, for a failed migration.
    pub error: Option<&'a str>,
    /// The backup taken before it ran.
    pub backup_id: Option<&'a str>,
}

/// One line of the audit table.
#[derive(Debug, Clone)]
pub struct AuditEntry<'a> {
    /// What was done: `baseline`, `repair-rolled-back`, `repair-accept-checksum`.
    pub action: &'a str,
    /// Which migration.
    pub version: &'a str,
    /// Before and after, for a person.
    pub detail: &'a str,
}

/// The operating-system user and host recorded with every history row,
/// looked up once: they cannot change while waymark runs, and rows are
/// written on the hot path.
/// What waymark was doing when writing `version`'s history row failed.
fn recording(version: &str) -> String {
    format!("recording version {version} in the history table")
}

/// What waymark was doing when removing `version`'s history row failed.
fn removing(version: &str) -> String {
    format!("removing version {version} from the history table")
}

fn who() -> (&'static str, &'static str) {
    static WHO: std::sync::OnceLock<(String, String)> = std::sync::OnceLock::new();
    let (user, host) = WHO.get_or_init(|| {
        let user = std::env::var("USER")
            .or_else(|_| std::env::var("USERNAME"))
            .unwrap_or_else(|_| "unknown".to_owned());
        (user, gethostname::gethostname().to_string_lossy().into_owned())
    });
    (user, host)
}

impl Database {
    /// Drops the history, audit, checkpoint and pre-image tables (for
    /// scratch databases: `waymark plugin test`).
    pub async fn drop_history(&self) -> Result<(), DbError> {
        let dialect = self.dialect();
        let h = &self.history;
        let mut conn = self.connection().await?;
        // No list yet means no copies either.
        let kept = conn.preimages(None).await.unwrap_or_default();
        let copies = kept.iter().map(|p| h.quoted(dialect, &p.kept_in[h.name.len()..]));
        let own = [
            h.table(dialect),
            h.audit(dialect),
            h.checkpoints(dialect),
            h.preimages(dialect),
            h.quoted(dialect, "_schema"),
            // The ops step's saved definitions (plugins/ops/src/saved.rs).
            h.quoted(dialect, "_ops"),
        ];
        for table in copies.chain(own) {
            conn.execute(&format!("DROP TABLE IF EXISTS {table}")).await?;
        }
        Ok(())
    }

    /// Every history row, or none when the table does not exist yet.
    pub async fn history(&self) -> Result<Vec<HistoryRow>, DbError> {
        let mut conn = self.connection().await?;
        if !conn.history_exists().await? {
            return Ok(Vec::new());
        }
        // A history a newer waymark wrote may mean what this one cannot
        // read: refused, not misread.
        conn.schema_version().await?;
        conn.history_rows(None).await
    }

    /// Every copy of dropped data kept for a `down`, oldest first per
    /// migration; none when waymark has not made its tables yet.
    pub async fn preimages(&self) -> Result<Vec<crate::Preimage>, DbError> {
        let mut conn = self.connection().await?;
        if !conn.own_table_exists("_preimage").await? {
            return Ok(Vec::new());
        }
        conn.preimages(None).await
    }
}

impl Conn {
    async fn history_exists(&mut self) -> Result<bool, DbError> {
        self.own_table_exists("").await
    }

    /// Whether waymark's table `<history><suffix>` exists.
    pub(crate) async fn own_table_exists(&mut self, suffix: &str) -> Result<bool, DbError> {
        let h = self.history.clone();
        let dialect = self.dialect();
        let (sql, args): (String, Vec<String>) = match dialect {
            Dialect::Postgres => (
                "SELECT CAST(to_regclass($1) IS NOT NULL AS INTEGER)".to_owned(),
                vec![h.quoted(dialect, suffix)],
            ),
            Dialect::Mysql => (
                "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = DATABASE() AND table_name = ?"
                    .to_owned(),
                vec![format!("{}{suffix}", h.name)],
            ),
            Dialect::Sqlite => (
                "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = ?".to_owned(),
                vec![format!("{}{suffix}", h.name)],
            ),
        };
        let found: i64 = with_conn!(&mut self.inner, c => {
            let mut q = sqlx::query(&sql);
            for a in &args { q = q.bind(a); }
            q.fetch_one(c).await.and_then(|row| row.try_get::<i64, _>(0).or_else(|_| row.try_get::<i32, _>(0).map(i64::from)))
        })
        .map_err(|e| DbError::query("looking for the history table", e))?;
        Ok(found > 0)
    }

    /// History rows: all of them, or the one for `version`.
    pub async fn history_rows(&mut self, version: Option<&str>) -> Result<Vec<HistoryRow>, DbError> {
        let dialect = self.dialect();
        let mut sql = format!(
            "SELECT version, name, checksum, state, {} AS applied_at, duration_ms, applied_by, hostname, error, \
             backup_id FROM {}",
            dialect.time_text("applied_at"),
            self.history.table(dialect)
        );
        if version.is_some() {
            sql.push_str(&format!(" WHERE version = {}", dialect.placeholder(1)));
        }
        let rows = with_conn!(&mut self.inner, c => {
            let mut q = sqlx::query(&sql);
            if let Some(v) = version { q = q.bind(v); }
            q.fetch_all(c).await.and_then(|rows| rows.iter().map(|r| Ok((
                r.try_get::<String, _>("version")?,
                r.try_get::<String, _>("name")?,
                r.try_get::<String, _>("checksum")?,
                r.try_get::<String, _>("state")?,
                r.try_get::<Option<String>, _>("applied_at")?.unwrap_or_default(),
                r.try_get::<i64, _>("duration_ms")?,
                r.try_get::<String, _>("applied_by")?,
                r.try_get::<String, _>("hostname")?,
                r.try_get::<Option<String>, _>("error")?,
                r.try_get::<Option<String>, _>("backup_id")?,
            ))).collect::<Result<Vec<_>, sqlx::Error>>())
        })
        .map_err(|e| DbError::query(format!("reading the history table {}", self.history.table(dialect)), e))?;
        rows.into_iter()
            .map(
                |(version, name, checksum, state, applied_at, duration_ms, applied_by, hostname, error, backup_id)| {
                    let state = State::parse(&state).ok_or_else(|| {
                        DbError::Config(format!(
                            "history table {} has an unknown state {state:?} for version {version}",
                            self.history.table(dialect)
                        ))
                    })?;
                    Ok(HistoryRow {
                        version,
                        name,
                        checksum,
                        state,
                        applied_at,
                        duration_ms,
                        applied_by,
                        hostname,
                        error,
                        backup_id,
                    })
                },
            )
            .collect()
    }

    /// Records a migration, replacing any row of the same version, in one
    /// statement (it runs once per migration, on the hot path).
    pub async fn record(&mut self, row: &NewHistoryRow<'_>) -> Result<(), DbError> {
        let dialect = self.dialect();
        let (user, host) = who();
        let p: Vec<String> = (1..=9).map(|n| dialect.placeholder(n)).collect();
        let sql = self.record_sql(&p);
        with_conn!(&mut self.inner, c => sqlx::query(&sql)
            .bind(row.version).bind(row.name).bind(row.checksum).bind(row.state.as_str())
            .bind(row.duration_ms).bind(user).bind(host).bind(row.error).bind(row.backup_id)
            .execute(c).await.map(|r| r.rows_affected()))
        .map_err(|e| DbError::query(recording(row.version), e))?;
        Ok(())
    }

    /// Records a migration and commits its transaction: on PostgreSQL in
    /// one round trip, the row's values written as literals beside the
    /// `COMMIT` (`pg_tx.rs`).
    pub async fn record_and_commit(mut self, row: &NewHistoryRow<'_>) -> Result<(), DbError> {
        if matches!(self.inner, ConnInner::PgOwn(_))
            && let Some(sql) = self.record_literally(row)
            && let ConnInner::PgOwn(t) = &mut self.inner
        {
            return t.execute_and_commit(&sql, &recording(row.version)).await;
        }
        self.record(row).await?;
        self.commit().await
    }

    /// `record`'s statement with the row's values written as PostgreSQL
    /// literals; `None` when one cannot be (a NUL).
    fn record_literally(&self, row: &NewHistoryRow<'_>) -> Option<String> {
        let (user, host) = who();
        let text = |v: Option<&str>| match v {
            Some(v) => crate::pg_tx::literal(v),
            None => Some("NULL".to_owned()),
        };
        let values = [
            text(Some(row.version))?,
            text(Some(row.name))?,
            text(Some(row.checksum))?,
            text(Some(row.state.as_str()))?,
            row.duration_ms.to_string(),
            text(Some(user))?,
            text(Some(host))?,
            text(row.error)?,
            text(row.backup_id)?,
        ];
        Some(self.record_sql(&values))
    }

    /// The statement recording a row, given each value's SQL (placeholders
    /// or literals) in the order of `record`'s columns.
    fn record_sql(&self, values: &[String]) -> String {
        let dialect = self.dialect();
        let columns = [
            "name",
            "checksum",
            "state",
            "applied_at",
            "duration_ms",
            "applied_by",
            "hostname",
            "error",
            "backup_id",
        ];
        let upsert = match dialect {
            Dialect::Mysql => format!(
                "ON DUPLICATE KEY UPDATE {}",
                columns.map(|c| format!("{c} = VALUES({c})")).join(", ")
            ),
            _ => format!(
                "ON CONFLICT (version) DO UPDATE SET {}",
                columns.map(|c| format!("{c} = excluded.{c}")).join(", ")
            ),
        };
        format!(
            "INSERT INTO {} (version, name, checksum, state, applied_at, duration_ms, applied_by, hostname, error, \
             backup_id) VALUES ({}, {}, {}, {}, {}, {}, {}, {}, {}, {}) {upsert}",
            self.history.table(dialect),
            values[0],
            values[1],
            values[2],
            values[3],
            dialect.now(),
            values[4],
            values[5],
            values[6],
            values[7],
            values[8]
        )
    }

    /// Removes a migration's row and commits its transaction, in one round
    /// trip on PostgreSQL.
    pub async fn forget_and_commit(mut self, version: &str) -> Result<(), DbError> {
        let table = self.history.table(Dialect::Postgres);
        let sql = crate::pg_tx::literal(version).map(|v| format!("DELETE FROM {table} WHERE version = {v}"));
        if let (ConnInner::PgOwn(t), Some(sql)) = (&mut self.inner, sql) {
            return t.execute_and_commit(&sql, &removing(version)).await;
        }
        self.forget(version).await?;
        self.commit().await
    }

    /// Removes a migration's row.
    pub async fn forget(&mut self, version: &str) -> Result<u64, DbError> {
        let dialect = self.dialect();
        let sql = format!(
            "DELETE FROM {} WHERE version = {}",
            self.history.table(dialect),
            dialect.placeholder(1)
        );
        let done = with_conn!(&mut self.inner, c => sqlx::query(&sql).bind(version).execute(c).await.map(|r| r.rows_affected()))
            .map_err(|e| DbError::query(removing(version), e))?;
        Ok(done)
    }

    /// Replaces the recorded checksum of a migration.
    pub async fn set_checksum(&mut self, version: &str, checksum: &str) -> Result<(), DbError> {
        let dialect = self.dialect();
        let sql = format!(
            "UPDATE {} SET checksum = {} WHERE version = {}",
            self.history.table(dialect),
            dialect.placeholder(1),
            dialect.placeholder(2)
        );
        with_conn!(&mut self.inner, c => sqlx::query(&sql).bind(checksum).bind(version).execute(c).await.map(|r| r.rows_affected()))
            .map_err(|e| DbError::query(format!("updating the checksum of version {version}"), e))?;
        Ok(())
    }

    /// Appends to the audit table.
    pub async fn audit(&mut self, entry: &AuditEntry<'_>) -> Result<(), DbError> {
        let dialect = self.dialect();
        let (user, host) = who();
        let sql = format!(
            "INSERT INTO {} (at, action, version, detail, actor, hostname) VALUES ({}, {}, {}, {}, {}, {})",
            self.history.audit(dialect),
            dialect.now(),
            dialect.placeholder(1),
            dialect.placeholder(2),
            dialect.placeholder(3),
            dialect.placeholder(4),
            dialect.placeholder(5)
        );
        with_conn!(&mut self.inner, c => sqlx::query(&sql)
            .bind(entry.action).bind(entry.version).bind(entry.detail).bind(user).bind(host)
            .execute(c).await.map(|r| r.rows_affected()))
        .map_err(|e| DbError::query("writing the audit table", e))?;
        Ok(())
    }

    /// The versions a `redo` reverted and has not applied again: each one's
    /// newest `redo` or `redone` audit entry is `redo` (see
    /// `waymark-core`'s executor, which writes both in the transactions
    /// that revert and apply it).
    pub async fn open_redos(&mut self) -> Result<std::collections::HashSet<String>, DbError> {
        let dialect = self.dialect();
        let sql = format!(
            "SELECT version, action FROM {} WHERE action IN ('redo', 'redone') ORDER BY id",
            self.history.audit(dialect)
        );
        let rows: Vec<(String, String)> = with_conn!(&mut self.inner, c => {
            sqlx::query(&sql).fetch_all(c).await.and_then(|rows| rows.iter()
                .map(|r| Ok((r.try_get::<String, _>("version")?, r.try_get::<String, _>("action")?)))
                .collect::<Result<Vec<_>, sqlx::Error>>())
        })
        .map_err(|e| DbError::query("reading the audit table", e))?;
        let mut open = std::collections::HashSet::new();
        for (version, action) in rows {
            if action == "redo" {
                open.insert(version);
            } else {
                open.remove(&version);
            }
        }
        Ok(open)
    }

    /// Records the checkpoint of a step that commits in batches, in the
    /// transaction that commits the batch.
    /// `direction` is `up` or `down`: a run is resumed only the way it went.
    pub async fn save_checkpoint(&mut self, version: &str, direction: &str, checkpoint: &str) -> Result<(), DbError> {
        let dialect = self.dialect();
        let upsert = match dialect {
            Dialect::Mysql => {
                "ON DUPLICATE KEY UPDATE direction = VALUES(direction), checkpoint = VALUES(checkpoint), at = VALUES(at)"
            }
            _ => {
                "ON CONFLICT (version) DO UPDATE SET direction = excluded.direction, checkpoint = excluded.checkpoint, \
                 at = excluded.at"
            }
        };
        let sql = format!(
            "INSERT INTO {} (version, direction, checkpoint, at) VALUES ({}, {}, {}, {}) {upsert}",
            self.history.checkpoints(dialect),
            dialect.placeholder(1),
            dialect.placeholder(2),
            dialect.placeholder(3),
            dialect.now()
        );
        with_conn!(&mut self.inner, c => sqlx::query(&sql).bind(version).bind(direction).bind(checkpoint).execute(c).await.map(|r| r.rows_affected()))
            .map_err(|e| DbError::query(format!("recording the checkpoint of version {version}"), e))?;
        Ok(())
    }

    /// The last checkpoint of a step that commits in batches, if any: its
    /// direction and the checkpoint.
    pub async fn checkpoint(&mut self, version: &str) -> Result<Option<(String, String)>, DbError> {
        let dialect = self.dialect();
        let sql = format!(
            "SELECT direction, checkpoint FROM {} WHERE version = {}",
            self.history.checkpoints(dialect),
            dialect.placeholder(1)
        );
        with_conn!(&mut self.inner, c => sqlx::query_as::<_, (String, String)>(&sql).bind(version).fetch_optional(c).await)
            .map_err(|e| DbError::query(format!("reading the checkpoint of version {version}"), e))
    }

    /// Forgets a step's checkpoint, once its migration is finished.
    pub async fn clear_checkpoint(&mut self, version: &str) -> Result<(), DbError> {
        let dialect = self.dialect();
        let sql = format!(
            "DELETE FROM {} WHERE version = {}",
            self.history.checkpoints(dialect),
            dialect.placeholder(1)
        );
        with_conn!(&mut self.inner, c => sqlx::query(&sql).bind(version).execute(c).await.map(|r| r.rows_affected()))
            .map_err(|e| DbError::query(format!("removing the checkpoint of version {version}"), e))?;
        Ok(())
    }
}

impl Database {
    /// The version schemas of the expand/contract migrations `versions`
    /// (PostgreSQL; none elsewhere): each version whose schema exists, and
    /// the schema's name. The ops step names it `<current schema>_v<the
    /// version, lower case, each character not [a-z0-9] as _>`, cut to 63
    /// bytes (plugins/ops/src/shape.rs); only a schema that exists is
    /// named, so a mismatch shows as a missing name, which the
    /// expand/contract tests would see.
    pub async fn version_schemas(&self, versions: &[&str]) -> Result<Vec<(String, String)>, DbError> {
        if self.dialect() != Dialect::Postgres || versions.is_empty() {
            return Ok(Vec::new());
        }
        let mut conn = self.connection().await?;
        let schema = conn.query_rows("SELECT current_schema()::text", &[], 1).await?;
        let Some(Value::Text(schema)) = schema.rows.first().and_then(|r| r.first()) else {
            return Ok(Vec::new());
        };
        let mut found = Vec::new();
        for version in versions {
            let tag: String = version
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() {
                        c.to_ascii_lowercase()
                    } else {
                        '_'
                    }
                })
                .collect();
            let mut name = format!("{schema}_v{tag}");
            let mut end = name.len().min(63);
            while !name.is_char_boundary(end) {
                end -= 1;
            }
            name.truncate(end);
            let exists = conn
                .query_rows(
                    "SELECT 1 FROM pg_namespace WHERE nspname = $1",
                    &[Value::Text(name.clone())],
                    1,
                )
                .await?;
            if !exists.rows.is_empty() {
                found.push(((*version).to_owned(), name));
            }
        }
        Ok(found)
    }
}
