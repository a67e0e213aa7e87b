//! A PostgreSQL transaction for one migration, whose `BEGIN` and `COMMIT`
//! travel with the statements beside them.
//!
//! A migration through sqlx's own transaction costs four round trips:
//! `BEGIN`, the script, the history row, `COMMIT`. The server accepts
//! several statements in one simple query, and a `BEGIN` inside one opens
//! a transaction that outlives it, so here the `BEGIN` goes out with the
//! first statement and the history row with the `COMMIT`: two round trips
//! for a one-script migration, fewer than psql sends for the same file.
//!
//! Whether the transaction is open is known by this side alone, so a
//! connection dropped while it may be open is closed, never returned to the
//! pool: the server rolls back what it held.

use sqlx::pool::PoolConnection;
use sqlx::postgres::Postgres;

use crate::error::DbError;

/// Where the transaction stands, as far as this side has sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// Nothing sent yet: the `BEGIN` goes out with the first statement.
    Pending,
    /// A `BEGIN` went out (its transaction may have failed since).
    Open,
    /// Committed or rolled back: the connection is clean.
    Ended,
}

#[derive(Debug)]
pub(crate) struct PgTx {
    pub(crate) conn: PoolConnection<Postgres>,
    stage: Stage,
    /// After a failed batch that carried the `BEGIN`: whether it ran in
    /// part (and so aborted the transaction) rather than not at all, as
    /// `settle` found out on the way.
    ran: Option<bool>,
    /// What the first batch is prefixed with: the `BEGIN`, and the
    /// transaction's own settings.
    begin: String,
}

impl PgTx {
    /// A transaction yet to begin; `settings` (each a `SET LOCAL`) go out
    /// with its `BEGIN`, so they cost no round trip of their own.
    pub(crate) fn new(conn: PoolConnection<Postgres>, settings: &[String]) -> Self {
        let mut begin = "BEGIN;\n".to_owned();
        for setting in settings {
            begin.push_str(setting);
            begin.push_str(";\n");
        }
        PgTx {
            conn,
            stage: Stage::Pending,
            ran: None,
            begin,
        }
    }

    /// Sends the `BEGIN` on its own if it has not gone out yet: for
    /// statements that cannot carry it (bound parameters).
    pub(crate) async fn ready(&mut self) -> Result<(), DbError> {
        if self.stage == Stage::Pending {
            self.stage = Stage::Open;
            sqlx::Executor::execute(&mut *self.conn, self.begin.as_str())
                .await
                .map_err(|e| DbError::query("BEGIN", e))?;
        }
        Ok(())
    }

    /// `sql` as one simple query, the `BEGIN` in front of it if it has not
    /// gone out yet. A failure's position is within `sql`, as if it had
    /// gone alone; either way a transaction is open afterwards.
    pub(crate) async fn execute(&mut self, sql: &str, context: &str) -> Result<u64, DbError> {
        self.ran = None;
        if self.stage != Stage::Pending {
            return sqlx::Executor::execute(&mut *self.conn, sql)
                .await
                .map(|r| r.rows_affected())
                .map_err(|e| DbError::query(context, e));
        }
        self.stage = Stage::Open;
        let batch = format!("{}{sql}", self.begin);
        match sqlx::Executor::execute(&mut *self.conn, batch.as_str()).await {
            Ok(r) => Ok(r.rows_affected()),
            Err(e) => {
                let prefix = self.begin.len() as u32;
                let error = DbError::query(context, e).map_position(|p| p.map(|p| p.saturating_sub(prefix)));
                self.ran = Some(self.settle().await?);
                Err(error)
            }
        }
    }

    /// After a failed batch that carried the `BEGIN`: either it ran (the
    /// transaction is open, and aborted by the failure) or nothing ran (a
    /// syntax error anywhere in a simple query stops all of it). A second
    /// `BEGIN` opens one in the second case and is refused with 25P02 in
    /// the first, so a transaction is open either way, as it would be had
    /// the `BEGIN` gone alone (its settings with it). Returns whether the
    /// batch ran.
    async fn settle(&mut self) -> Result<bool, DbError> {
        match sqlx::Executor::execute(&mut *self.conn, self.begin.as_str()).await {
            Ok(_) => Ok(false),
            Err(e) if is_aborted(&e) => Ok(true),
            Err(e) => Err(DbError::query("BEGIN", e)),
        }
    }

    /// Whether the last failed batch ran in part, so that the savepoint it
    /// began with exists: known already if it carried the `BEGIN`, asked
    /// of the server otherwise.
    pub(crate) async fn batch_ran(&mut self) -> Result<bool, DbError> {
        match self.ran.take() {
            Some(ran) => Ok(ran),
            None => aborted(&mut self.conn).await,
        }
    }

    /// `sql` and then `COMMIT`, in one round trip. If `sql` fails, nothing
    /// is committed and the connection is closed when dropped.
    pub(crate) async fn execute_and_commit(&mut self, sql: &str, context: &str) -> Result<(), DbError> {
        let begin = if self.stage == Stage::Pending {
            self.begin.as_str()
        } else {
            ""
        };
        self.stage = Stage::Open;
        let batch = format!("{begin}{sql};\nCOMMIT");
        sqlx::Executor::execute(&mut *self.conn, batch.as_str())
            .await
            .map_err(|e| DbError::query(context, e))?;
        self.stage = Stage::Ended;
        Ok(())
    }

    /// Ends the transaction with `COMMIT` or `ROLLBACK`.
    pub(crate) async fn end(&mut self, statement: &str) -> Result<(), DbError> {
        if self.stage == Stage::Open {
            sqlx::Executor::execute(&mut *self.conn, statement)
                .await
                .map_err(|e| DbError::query(statement, e))?;
        }
        self.stage = Stage::Ended;
        Ok(())
    }
}

impl Drop for PgTx {
    fn drop(&mut self) {
        if self.stage == Stage::Open {
            self.conn.close_on_drop();
        }
    }
}

/// After a failed batch inside a transaction: whether it aborted the
/// transaction (it ran, in part) or left it as it was (a syntax error
/// anywhere in a simple query runs none of it). `SELECT 1` changes nothing
/// either way and fails only in an aborted transaction.
pub(crate) async fn aborted(conn: &mut sqlx::PgConnection) -> Result<bool, DbError> {
    match sqlx::Executor::execute(&mut *conn, "SELECT 1").await {
        Ok(_) => Ok(false),
        Err(e) if is_aborted(&e) => Ok(true),
        Err(e) => Err(DbError::query("SELECT 1", e)),
    }
}

/// 25P02: the transaction is aborted, commands are ignored until its end.
fn is_aborted(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.code().as_deref() == Some("25P02"))
}

/// `s` as a PostgreSQL string literal, right whatever
/// `standard_conforming_strings` says (`E''` when it holds a backslash), as
/// libpq's `PQescapeLiteral` writes it. `None` for text PostgreSQL cannot
/// hold (a NUL).
pub(crate) fn literal(s: &str) -> Option<String> {
    if s.contains('\0') {
        return None;
    }
    let quoted = s.replace('\'', "''");
    Some(if s.contains('\\') {
        format!("E'{}'", quoted.replace('\\', "\\\\"))
    } else {
        format!("'{quoted}'")
    })
}

#[cfg(test)]
mod tests {
    use super::literal;

    #[test]
    fn literals_escape_quotes_and_backslashes() {
        assert_eq!(literal("plain").unwrap(), "'plain'");
        assert_eq!(literal("it's").unwrap(), "'it''s'");
        assert_eq!(literal(r"a\b'c").unwrap(), r"E'a\\b''c'");
        assert!(literal("nul\0").is_none());
    }
}
