//! Waiting for another session's lock: a bound on how long a statement may
//! wait for one, and who holds it when it does.
//!
//! A DDL statement that waits for a table lock makes every later query on
//! that table wait behind it: PostgreSQL queues lock requests in order, and
//! MySQL/MariaDB queue metadata-lock requests the same way (with
//! `lock_wait_timeout` at its default of a year). A short bound turns that
//! queue into a failed attempt that can be retried later.

use std::fmt;
use std::time::Duration;

use crate::conn::{Conn, Database};
use crate::dialect::Dialect;
use crate::error::DbError;
use crate::value::Value;

/// A session that held a lock another one waited for.
#[derive(Debug, Clone, PartialEq)]
pub struct Blocker {
    /// Its server process (PostgreSQL) or connection (MySQL) id.
    pub pid: i64,
    /// The user it is connected as.
    pub user: Option<String>,
    /// The application name it gave (PostgreSQL) or the host it connects
    /// from (MySQL).
    pub application: Option<String>,
    /// `active`, `idle in transaction`, ...
    pub state: Option<String>,
    /// The start of its current or last query.
    pub query: Option<String>,
    /// How long its transaction has been open.
    pub transaction_for: Option<Duration>,
    /// Which transaction it was in (its start, as the server keeps it), to
    /// tell when that one has ended: the session may go on to another.
    pub transaction: Option<String>,
    /// The lock it was seen holding, where the server lists it (MySQL's
    /// and MariaDB's `performance_schema.metadata_locks`, and MariaDB's
    /// `INNODB_LOCKS` for a row lock).
    pub holds: Option<String>,
    /// Whether the server itself said this session held what was waited
    /// for (PostgreSQL's `pg_blocking_pids`; MySQL's metadata-lock table
    /// and InnoDB's lock waits),
    /// rather than waymark guessing it from an open transaction: only then
    /// is waiting for its transaction to end a wait for the lock.
    pub exact: bool,
}

impl fmt::Display for Blocker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "pid {}", self.pid)?;
        let mut about = Vec::new();
        if let Some(user) = &self.user {
            about.push(format!("user {user}"));
        }
        if let Some(app) = self.application.as_deref().filter(|a| !a.is_empty()) {
            about.push(format!("application {app:?}"));
        }
        if let Some(state) = &self.state {
            about.push(state.clone());
        }
        if let Some(open) = self.transaction_for {
            about.push(format!("transaction open {:.1} s", open.as_secs_f64()));
        }
        if let Some(holds) = &self.holds {
            about.push(format!("holding {holds}"));
        }
        if !about.is_empty() {
            write!(f, " ({})", about.join(", "))?;
        }
        if let Some(query) = self.query.as_deref().map(str::trim).filter(|q| !q.is_empty()) {
            write!(f, ": {}", one_line(query, 120))?;
        }
        Ok(())
    }
}

/// `text` on one line, cut at `max` characters.
pub fn one_line(text: &str, max: usize) -> String {
    let flat = text.split_whitespace().collect::<Vec<_>>().join(" ");
    match flat.char_indices().nth(max) {
        Some((at, _)) => format!("{}...", &flat[..at]),
        None => flat,
    }
}

impl DbError {
    /// Whether a statement gave up waiting for another session's lock
    /// (PostgreSQL's `lock_timeout`, MySQL's `lock_wait_timeout` and
    /// `innodb_lock_wait_timeout`): nothing it would have done is done, so
    /// it can be tried again.
    pub fn is_lock_timeout(&self) -> bool {
        matches!(self, DbError::Query { code: Some(code), .. } if code == "55P03" || code == "1205")
    }

    /// Whether the server broke a deadlock by rolling this statement's
    /// transaction back (PostgreSQL's `40P01`, MySQL's 1213): nothing of
    /// it stayed, so the transaction can be run again.
    pub fn is_deadlock(&self) -> bool {
        matches!(self, DbError::Query { code: Some(code), .. } if code == "40P01" || code == "1213")
    }
}

/// The statement that bounds a session's lock waits to `wait`, or lets
/// them last as long as they take (`None`). MySQL counts whole seconds, so
/// a bound is rounded up; its "unbounded" is its default, a year. SQLite's
/// writers wait for each other on the connection's busy timeout instead.
fn lock_wait_sql(dialect: Dialect, wait: Option<Duration>) -> Option<String> {
    match (dialect, wait) {
        (Dialect::Postgres, Some(wait)) => Some(format!("SET lock_timeout = {}", wait.as_millis().max(1))),
        (Dialect::Postgres, None) => Some("SET lock_timeout = 0".to_owned()),
        // A table's metadata lock and InnoDB's row locks are waited for
        // under two settings; a DML statement that waits on a row holds
        // the rows it already changed, so both are bounded alike.
        (Dialect::Mysql, Some(wait)) => {
            let seconds = (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1);
            Some(format!(
                "SET SESSION lock_wait_timeout = {seconds}, SESSION innodb_lock_wait_timeout = {seconds}"
            ))
        }
        (Dialect::Mysql, None) => {
            Some("SET SESSION lock_wait_timeout = 31536000, SESSION innodb_lock_wait_timeout = DEFAULT".to_owned())
        }
        (Dialect::Sqlite, _) => None,
    }
}

/// The statement that bounds a PostgreSQL transaction's lock waits to
/// `wait`, until it ends.
pub(crate) fn transaction_lock_wait_sql(wait: Duration) -> String {
    format!("SET LOCAL lock_timeout = {}", wait.as_millis().max(1))
}

/// The session setup that bounds every statement's lock waits to `wait`,
/// for a database's connections.
pub(crate) fn bound_on_connect(dialect: Dialect, wait: Option<Duration>) -> Option<String> {
    wait.and_then(|w| lock_wait_sql(dialect, Some(w)))
}

/// Whether the user's init SQL changed the lock-wait bound waymark set on
/// connect, read back from a PostgreSQL session once the init SQL has run
/// (`bound`: what waymark set). Only PostgreSQL's transactions get a bound
/// of their own, so only there does it matter.
pub(crate) async fn init_sql_changed_bound(
    pool: &sqlx::Pool<sqlx::Postgres>,
    bound: Duration,
) -> Result<bool, DbError> {
    // `setting` is the value in milliseconds whatever unit it was set in.
    let set: i64 = sqlx::query_scalar("SELECT setting::int8 FROM pg_settings WHERE name = 'lock_timeout'")
        .fetch_one(pool)
        .await
        .map_err(|e| DbError::query("reading lock_timeout", e))?;
    Ok(u128::try_from(set).ok() != Some(bound.as_millis().max(1)))
}

impl Conn {
    /// Bounds how long each statement of this session waits for a lock to
    /// `wait`, or lets it wait as long as it takes (`None`): for a
    /// statement such as `CREATE INDEX CONCURRENTLY`, whose waits for old
    /// transactions block no application query and which, cut short,
    /// leaves an invalid index behind.
    pub async fn set_lock_wait(&mut self, wait: Option<Duration>) -> Result<(), DbError> {
        if let Some(sql) = lock_wait_sql(self.dialect(), wait) {
            self.execute(&sql).await?;
        }
        Ok(())
    }
}

impl Database {
    /// The sessions that hold a lock one of this database's sessions (a
    /// migration's) waits for, oldest transaction first.
    ///
    /// PostgreSQL knows exactly: `pg_blocking_pids` of the waiting
    /// `waymark` sessions. MySQL/MariaDB know exactly where
    /// performance_schema's metadata-lock instrument is on (MySQL 8's
    /// default; MariaDB ships with performance_schema off): the sessions
    /// granted a lock on the object a session of this database waits for;
    /// and, for a row lock, from InnoDB's lock waits (MariaDB's
    /// `INNODB_LOCK_WAITS`). Otherwise the best guess is every other
    /// session with an open InnoDB transaction that is not itself waiting:
    /// the sessions that hold a table's metadata lock until they commit.
    pub async fn lock_blockers(&self) -> Result<Vec<Blocker>, DbError> {
        let mut conn = self.connection().await?;
        let (sql, exact) = match self.dialect() {
            Dialect::Postgres => (PG_BLOCKERS, true),
            Dialect::Mysql => {
                // A server without the instrument (or that does not let
                // this user read performance_schema) names no one by
                // metadata lock; one without InnoDB's lock tables (MySQL 8
                // moved them to performance_schema.data_lock_waits) no
                // one by row lock.
                for (sql, what) in [
                    (MYSQL_MDL_BLOCKERS, "performance_schema.metadata_locks"),
                    (MYSQL_ROW_BLOCKERS, "information_schema.INNODB_LOCK_WAITS"),
                ] {
                    match conn.query_rows(sql, &[], 40).await {
                        Ok(rows) if !rows.rows.is_empty() => return Ok(blockers(&rows.rows, true)),
                        Ok(_) => {}
                        Err(e) => tracing::debug!("reading {what}: {e}"),
                    }
                }
                (MYSQL_TRX_BLOCKERS, false)
            }
            Dialect::Sqlite => return Ok(Vec::new()),
        };
        let rows = conn.query_rows(sql, &[], 10).await?;
        Ok(blockers(&rows.rows, exact))
    }

    /// How often to ask [`Database::still_open`] while waiting for
    /// blockers' transactions to end. InnoDB refreshes the table that
    /// MySQL and MariaDB answer from (`INNODB_TRX`) only once it has gone
    /// unread for 100 ms: asked more often, it never changes, and a
    /// transaction long committed looks open for as long as it is asked.
    pub fn still_open_every(&self) -> Duration {
        match self.dialect() {
            Dialect::Mysql => Duration::from_millis(150),
            _ => Duration::from_millis(20),
        }
    }

    /// Which of `blockers` are still in the transaction they were seen in:
    /// once none is, what they held is free. A blocker seen outside a
    /// transaction counts as ended.
    pub async fn still_open(&self, blockers: &[Blocker]) -> Result<Vec<i64>, DbError> {
        let watched: Vec<&Blocker> = blockers.iter().filter(|b| b.transaction.is_some()).collect();
        if watched.is_empty() {
            return Ok(Vec::new());
        }
        // Process ids are numbers: written into the statement, they cannot
        // change its meaning.
        let pids = watched.iter().map(|b| b.pid.to_string()).collect::<Vec<_>>().join(", ");
        let sql = match self.dialect() {
            Dialect::Postgres => {
                format!("SELECT pid::int8, xact_start::text FROM pg_stat_activity WHERE pid IN ({pids})")
            }
            Dialect::Mysql => format!(
                "SELECT CAST(trx_mysql_thread_id AS SIGNED), CONCAT(trx_id, '@', trx_started) \
                 FROM information_schema.INNODB_TRX WHERE trx_mysql_thread_id IN ({pids})"
            ),
            Dialect::Sqlite => return Ok(Vec::new()),
        };
        let mut conn = self.connection().await?;
        let rows = conn.query_rows(&sql, &[], watched.len() + 10).await?;
        let open: Vec<(i64, String)> = rows
            .rows
            .iter()
            .filter_map(|r| match (r.first(), r.get(1)) {
                (Some(Value::Int(pid)), started) => Some((*pid, text(started)?)),
                _ => None,
            })
            .collect();
        Ok(watched
            .iter()
            .filter(|b| {
                open.iter()
                    .any(|(pid, started)| *pid == b.pid && b.transaction.as_ref() == Some(started))
            })
            .map(|b| b.pid)
            .collect())
    }
}

/// The sessions `pg_blocking_pids` names for the waiting `waymark`
/// sessions of this database.
const PG_BLOCKERS: &str = "SELECT b.pid::int8, b.usename::text, b.application_name::text, b.state::text, \
     left(b.query, 300), extract(epoch FROM now() - b.xact_start)::float8, b.xact_start::text \
     FROM pg_stat_activity b WHERE b.pid IN ( \
       SELECT unnest(pg_blocking_pids(w.pid)) FROM pg_stat_activity w \
       WHERE w.application_name = 'waymark' AND w.datname = current_database() \
       AND w.wait_event_type = 'Lock' AND w.pid <> pg_backend_pid()) \
     ORDER BY b.xact_start NULLS LAST LIMIT 10";

/// The sessions granted a metadata lock on an object that a session using
/// this database waits for a metadata lock on, and not waiting themselves:
/// the application's queries that queue behind a migration's pending lock
/// wait on what the migration's session was granted (its upgradable lock),
/// and the migration is not its own blocker. A session holding several
/// locks on the object comes once per lock.
const MYSQL_MDL_BLOCKERS: &str = "SELECT CAST(p.ID AS SIGNED), p.USER, p.HOST, \
     IF(p.COMMAND = 'Sleep', IF(t.trx_id IS NULL, 'idle', 'idle in transaction'), LOWER(p.COMMAND)), \
     LEFT(COALESCE(p.INFO, ''), 300), \
     CAST(TIMESTAMPDIFF(MICROSECOND, t.trx_started, NOW(6)) AS DOUBLE) / 1e6, \
     CONCAT(t.trx_id, '@', t.trx_started), \
     CONCAT(g.LOCK_TYPE, ' on ', g.OBJECT_TYPE, ' ', \
            CONCAT_WS('.', CONCAT('`', g.OBJECT_SCHEMA, '`'), CONCAT('`', g.OBJECT_NAME, '`'))) \
     FROM performance_schema.metadata_locks w \
     JOIN performance_schema.threads wt ON wt.THREAD_ID = w.OWNER_THREAD_ID \
     JOIN performance_schema.metadata_locks g ON g.OBJECT_TYPE = w.OBJECT_TYPE \
       AND g.OBJECT_SCHEMA <=> w.OBJECT_SCHEMA AND g.OBJECT_NAME <=> w.OBJECT_NAME \
       AND g.LOCK_STATUS = 'GRANTED' AND g.OWNER_THREAD_ID <> w.OWNER_THREAD_ID \
     JOIN performance_schema.threads gt ON gt.THREAD_ID = g.OWNER_THREAD_ID \
     JOIN information_schema.PROCESSLIST p ON p.ID = gt.PROCESSLIST_ID \
     LEFT JOIN information_schema.INNODB_TRX t ON t.trx_mysql_thread_id = p.ID \
     WHERE w.LOCK_STATUS = 'PENDING' AND wt.PROCESSLIST_DB <=> DATABASE() \
       AND wt.PROCESSLIST_ID <> CONNECTION_ID() \
       AND NOT EXISTS (SELECT 1 FROM performance_schema.metadata_locks x \
         WHERE x.OWNER_THREAD_ID = g.OWNER_THREAD_ID AND x.LOCK_STATUS = 'PENDING') \
     ORDER BY t.trx_started IS NULL, t.trx_started LIMIT 40";

/// The transactions holding a row lock that a transaction of a session
/// using this database waits for (MariaDB, and MySQL before 8.0).
const MYSQL_ROW_BLOCKERS: &str = "SELECT CAST(p.ID AS SIGNED), p.USER, p.HOST, \
     IF(p.COMMAND = 'Sleep', 'idle in transaction', LOWER(p.COMMAND)), \
     LEFT(COALESCE(p.INFO, ''), 300), \
     CAST(TIMESTAMPDIFF(MICROSECOND, b.trx_started, NOW(6)) AS DOUBLE) / 1e6, \
     CONCAT(b.trx_id, '@', b.trx_started), \
     CONCAT(l.lock_mode, ' row lock on ', l.lock_table) \
     FROM information_schema.INNODB_LOCK_WAITS w \
     JOIN information_schema.INNODB_TRX r ON r.trx_id = w.requesting_trx_id \
     JOIN information_schema.INNODB_TRX b ON b.trx_id = w.blocking_trx_id \
     JOIN information_schema.PROCESSLIST p ON p.ID = b.trx_mysql_thread_id \
     JOIN information_schema.PROCESSLIST rp ON rp.ID = r.trx_mysql_thread_id \
     LEFT JOIN information_schema.INNODB_LOCKS l ON l.lock_id = w.blocking_lock_id \
     WHERE rp.DB <=> DATABASE() AND rp.ID <> CONNECTION_ID() \
     ORDER BY b.trx_started LIMIT 40";

/// Every other session with an open InnoDB transaction that is not itself
/// waiting: where metadata locks are not listed, the likely holders.
const MYSQL_TRX_BLOCKERS: &str = "SELECT CAST(p.ID AS SIGNED), p.USER, p.HOST, \
     IF(p.COMMAND = 'Sleep', 'idle in transaction', LOWER(p.COMMAND)), \
     LEFT(COALESCE(p.INFO, ''), 300), \
     CAST(TIMESTAMPDIFF(MICROSECOND, t.trx_started, NOW(6)) AS DOUBLE) / 1e6, \
     CONCAT(t.trx_id, '@', t.trx_started) \
     FROM information_schema.INNODB_TRX t \
     JOIN information_schema.PROCESSLIST p ON p.ID = t.trx_mysql_thread_id \
     WHERE p.ID <> CONNECTION_ID() AND COALESCE(p.STATE, '') NOT LIKE 'Waiting for%' \
     ORDER BY t.trx_started LIMIT 10";

/// The blockers in `rows` (pid, user, application, state, query, seconds
/// the transaction has been open, its start, and the lock held where
/// known), each session once and at most ten.
fn blockers(rows: &[Vec<Value>], exact: bool) -> Vec<Blocker> {
    let mut found: Vec<Blocker> = Vec::new();
    for r in rows {
        let Some(Value::Int(pid)) = r.first() else { continue };
        if found.len() == 10 || found.iter().any(|b| b.pid == *pid) {
            continue;
        }
        found.push(Blocker {
            pid: *pid,
            user: text(r.get(1)),
            application: text(r.get(2)),
            state: text(r.get(3)),
            query: text(r.get(4)),
            transaction_for: match r.get(5) {
                Some(Value::Float(s)) if *s >= 0.0 => Some(Duration::from_secs_f64(*s)),
                _ => None,
            },
            transaction: text(r.get(6)),
            holds: text(r.get(7)),
            exact,
        });
    }
    found
}

/// A text column, as MySQL may send it (bytes) or PostgreSQL does.
fn text(v: Option<&Value>) -> Option<String> {
    match v {
        Some(Value::Text(s)) => Some(s.clone()),
        Some(Value::Bytes(b)) => Some(String::from_utf8_lossy(b).into_owned()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_blocker_is_named_on_one_line() {
        let b = Blocker {
            pid: 4242,
            user: Some("app".into()),
            application: Some("psql".into()),
            state: Some("idle in transaction".into()),
            query: Some("SELECT *\n  FROM accounts\n WHERE id = 1".into()),
            transaction_for: Some(Duration::from_millis(12_340)),
            transaction: Some("2026-12-03 10:00:00.1+00".into()),
            holds: None,
            exact: true,
        };
        assert_eq!(
            b.to_string(),
            "pid 4242 (user app, application \"psql\", idle in transaction, transaction open 12.3 s): \
             SELECT * FROM accounts WHERE id = 1"
        );
        let bare = Blocker {
            pid: 7,
            user: None,
            application: Some(String::new()),
            state: None,
            query: None,
            transaction_for: None,
            transaction: None,
            holds: None,
            exact: false,
        };
        assert_eq!(bare.to_string(), "pid 7");
        let mysql = Blocker {
            holds: Some("SHARED_READ on TABLE `app`.`accounts`".into()),
            ..bare
        };
        assert_eq!(
            mysql.to_string(),
            "pid 7 (holding SHARED_READ on TABLE `app`.`accounts`)"
        );
        assert_eq!(one_line(&"x".repeat(130), 120), format!("{}...", "x".repeat(120)));
    }

    #[test]
    fn only_lock_waits_count_as_lock_timeouts_and_only_deadlocks_as_deadlocks() {
        let query = |code: &str| DbError::Query {
            context: "running".into(),
            code: Some(code.into()),
            message: "m".into(),
            position: None,
        };
        assert!(query("55P03").is_lock_timeout());
        assert!(query("1205").is_lock_timeout());
        assert!(!query("40P01").is_lock_timeout());
        assert!(!query("42P01").is_lock_timeout());
        assert!(query("40P01").is_deadlock());
        assert!(query("1213").is_deadlock());
        assert!(!query("1205").is_deadlock());
    }
}
