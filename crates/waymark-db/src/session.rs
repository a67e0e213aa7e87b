//! Session settings other crates ask for by what they mean, each
//! dialect's SQL for them kept here: a bound on each statement's time, a
//! read-only guard, and constraint checks held off while rows are loaded.

use std::time::Duration;

use crate::conn::Conn;
use crate::dialect::Dialect;
use crate::error::DbError;
use crate::value::Value;

/// Which checks a restore holds off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Checks {
    /// Foreign keys, while tables are made before the tables they name.
    ForeignKeys,
    /// Foreign keys (and MySQL's unique checks), while rows are loaded in
    /// an order their keys do not follow.
    WhileLoading,
}

/// What puts a session setting back after [`Conn::bound_statements`].
#[derive(Debug)]
pub struct Restore(String);

impl Conn {
    /// Bounds each statement to `timeout`: `SET LOCAL` inside a PostgreSQL
    /// transaction (call it again after each commit), a session setting
    /// elsewhere, whose previous value [`Conn::restore`] puts back. SQLite
    /// runs statements in this process and has no such setting.
    pub async fn bound_statements(&mut self, timeout: Duration) -> Result<Option<Restore>, DbError> {
        let ms = timeout.as_millis();
        match self.dialect() {
            Dialect::Postgres if self.in_transaction() => {
                self.execute(&format!("SET LOCAL statement_timeout = {ms}")).await?;
                Ok(None)
            }
            Dialect::Postgres => {
                let previous = self
                    .query_rows("SELECT current_setting('statement_timeout')", &[], 1)
                    .await?;
                let restore = match previous.rows.first().map(|r| r.first()) {
                    Some(Some(Value::Text(v))) => {
                        Some(Restore(format!("SET statement_timeout = '{}'", v.replace('\'', "''"))))
                    }
                    _ => None,
                };
                self.execute(&format!("SET statement_timeout = {ms}")).await?;
                Ok(restore)
            }
            Dialect::Mysql => {
                // MariaDB counts in seconds; MySQL has only a SELECT bound.
                let seconds = timeout.as_secs_f64();
                match self
                    .execute(&format!(
                        "SET @waymark_mst = @@max_statement_time, max_statement_time = {seconds}"
                    ))
                    .await
                {
                    Ok(_) => Ok(Some(Restore("SET max_statement_time = @waymark_mst".to_owned()))),
                    Err(_) => {
                        self.execute(&format!(
                            "SET @waymark_met = @@max_execution_time, max_execution_time = {ms}"
                        ))
                        .await?;
                        Ok(Some(Restore("SET max_execution_time = @waymark_met".to_owned())))
                    }
                }
            }
            Dialect::Sqlite => Ok(None),
        }
    }

    /// Puts back what [`Conn::bound_statements`] changed.
    pub async fn restore(&mut self, restore: Restore) -> Result<(), DbError> {
        self.execute(&restore.0).await.map(drop)
    }

    /// Makes the database refuse writes until [`Conn::unguard_read_only`]:
    /// a read-only savepoint inside a PostgreSQL transaction, `query_only`
    /// on SQLite. Returns whether the guard is up (MySQL has none that a
    /// transaction can take and drop).
    pub async fn guard_read_only(&mut self) -> Result<bool, DbError> {
        match self.dialect() {
            Dialect::Postgres if self.in_transaction() => {
                self.execute("SAVEPOINT waymark_read_only; SET LOCAL transaction_read_only = on")
                    .await?;
            }
            Dialect::Sqlite => {
                self.execute("PRAGMA query_only = ON").await?;
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// Takes the guard of [`Conn::guard_read_only`] down.
    pub async fn unguard_read_only(&mut self) -> Result<(), DbError> {
        match self.dialect() {
            Dialect::Postgres => {
                // After an error the transaction is aborted and rolls back
                // anyway; the savepoint's rollback must not hide that error.
                let _ = self
                    .execute("ROLLBACK TO SAVEPOINT waymark_read_only; RELEASE SAVEPOINT waymark_read_only")
                    .await;
            }
            _ => {
                self.execute("PRAGMA query_only = OFF").await?;
            }
        }
        Ok(())
    }

    /// Holds off (`on = false`) or brings back checks on this connection
    /// while a backup is restored (see [`Checks`]).
    pub async fn set_checks(&mut self, checks: Checks, on: bool) -> Result<(), DbError> {
        let v = u8::from(on);
        match (self.dialect(), checks) {
            (Dialect::Mysql, Checks::ForeignKeys) => self.execute(&format!("SET FOREIGN_KEY_CHECKS = {v}")).await?,
            (Dialect::Mysql, Checks::WhileLoading) => {
                self.execute(&format!("SET FOREIGN_KEY_CHECKS = {v}, UNIQUE_CHECKS = {v}"))
                    .await?
            }
            (Dialect::Sqlite, Checks::WhileLoading) => {
                self.execute(&format!("PRAGMA foreign_keys = {}", if on { "ON" } else { "OFF" }))
                    .await?
            }
            // PostgreSQL's keys are made after the rows; SQLite checks no
            // key when a table is made.
            _ => 0,
        };
        Ok(())
    }
}
