//! The migration lock: one runner at a time per database and history table.
//!
//! PostgreSQL and MySQL use a session-level lock (advisory lock, `GET_LOCK`)
//! held on a connection of its own, so the server releases it the moment the
//! runner's connection goes away, even after SIGKILL: there is never a stale
//! lock row to clean up. SQLite has no session locks; there each migration's
//! transaction takes the write lock (`BEGIN IMMEDIATE`) and re-reads the
//! history inside it, which keeps runners apart just as well.

use std::time::{Duration, Instant};

use sqlx::Connection;
use sqlx::mysql::MySqlConnection;
use sqlx::postgres::PgConnection;

use crate::conn::{Database, Pools};
use crate::error::DbError;

const POLL: Duration = Duration::from_millis(100);

/// A held migration lock. Released on [`Lock::release`], or when dropped (the
/// connection closes), or when the process dies.
#[derive(Debug)]
pub struct Lock {
    inner: Held,
}

#[derive(Debug)]
enum Held {
    Postgres(PgConnection, String),
    Mysql(MySqlConnection, String),
    /// SQLite locks per migration; see the module documentation.
    Sqlite,
}

impl Database {
    /// Takes the migration lock, waiting up to the lock timeout.
    pub async fn lock(&self) -> Result<Lock, DbError> {
        let key = format!("{:?}.{}", self.history.schema, self.history.name);
        let deadline = Instant::now() + self.lock_timeout;
        let inner = match &self.pools {
            Pools::Postgres(pool) => {
                let mut conn = pool
                    .acquire()
                    .await
                    .map_err(|e| DbError::query("acquiring a connection for the lock", e))?
                    .detach();
                loop {
                    let got: bool = sqlx::query_scalar(
                        "SELECT pg_try_advisory_lock(hashtextextended('waymark:' || current_database() || ':' || $1, 0))",
                    )
                    .bind(&key)
                    .fetch_one(&mut conn)
                    .await
                    .map_err(|e| DbError::query("taking the advisory lock", e))?;
                    if got {
                        break Held::Postgres(conn, key);
                    }
                    if Instant::now() >= deadline {
                        let holder = pg_holder(&mut conn, &key).await;
                        return Err(self.lock_timeout_error(holder));
                    }
                    tokio::time::sleep(POLL).await;
                }
            }
            Pools::Mysql(pool) => {
                let mut conn = pool
                    .acquire()
                    .await
                    .map_err(|e| DbError::query("acquiring a connection for the lock", e))?
                    .detach();
                let name: String =
                    sqlx::query_scalar("SELECT CONCAT('waymark:', LEFT(SHA2(CONCAT(DATABASE(), ':', ?), 256), 48))")
                        .bind(&key)
                        .fetch_one(&mut conn)
                        .await
                        .map_err(|e| DbError::query("naming the lock", e))?;
                loop {
                    let got: Option<i64> = sqlx::query_scalar("SELECT GET_LOCK(?, 0)")
                        .bind(&name)
                        .fetch_one(&mut conn)
                        .await
                        .map_err(|e| DbError::query("taking the lock with GET_LOCK", e))?;
                    if got == Some(1) {
                        break Held::Mysql(conn, name);
                    }
                    if Instant::now() >= deadline {
                        let holder: Option<i64> = sqlx::query_scalar("SELECT IS_USED_LOCK(?)")
                            .bind(&name)
                            .fetch_one(&mut conn)
                            .await
                            .unwrap_or(None);
                        let holder = match holder {
                            Some(id) => format!("held by connection {id} (another waymark runner)"),
                            None => "held by another runner".to_owned(),
                        };
                        return Err(self.lock_timeout_error(holder));
                    }
                    tokio::time::sleep(POLL).await;
                }
            }
            Pools::Sqlite(_) => Held::Sqlite,
        };
        Ok(Lock { inner })
    }

    fn lock_timeout_error(&self, holder: String) -> DbError {
        DbError::LockTimeout {
            url: self.url.clone(),
            timeout: self.lock_timeout,
            holder,
        }
    }
}

async fn pg_holder(conn: &mut PgConnection, key: &str) -> String {
    let row: Option<(i32, Option<String>, Option<String>)> = sqlx::query_as(
        "SELECT a.pid, a.application_name, host(a.client_addr) FROM pg_locks l \
         JOIN pg_stat_activity a ON a.pid = l.pid \
         WHERE l.locktype = 'advisory' AND l.granted \
           AND (l.classid::bigint << 32 | l.objid::bigint) = \
               hashtextextended('waymark:' || current_database() || ':' || $1, 0) \
         LIMIT 1",
    )
    .bind(key)
    .fetch_optional(&mut *conn)
    .await
    .unwrap_or(None);
    match row {
        Some((pid, app, addr)) => format!(
            "held by server process {pid} ({}{})",
            app.filter(|a| !a.is_empty())
                .unwrap_or_else(|| "unknown application".to_owned()),
            addr.map(|a| format!(" from {a}")).unwrap_or_default()
        ),
        None => "held by another runner".to_owned(),
    }
}

impl Lock {
    /// Releases the lock and closes its connection.
    pub async fn release(self) -> Result<(), DbError> {
        match self.inner {
            Held::Postgres(mut conn, key) => {
                sqlx::query(
                    "SELECT pg_advisory_unlock(hashtextextended('waymark:' || current_database() || ':' || $1, 0))",
                )
                .bind(&key)
                .execute(&mut conn)
                .await
                .map_err(|e| DbError::query("releasing the advisory lock", e))?;
                let _ = conn.close().await;
            }
            Held::Mysql(mut conn, name) => {
                sqlx::query("SELECT RELEASE_LOCK(?)")
                    .bind(&name)
                    .execute(&mut conn)
                    .await
                    .map_err(|e| DbError::query("releasing the lock with RELEASE_LOCK", e))?;
                let _ = conn.close().await;
            }
            Held::Sqlite => {}
        }
        Ok(())
    }
}
