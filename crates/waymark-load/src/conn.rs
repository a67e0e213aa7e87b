//! One workload connection, PostgreSQL or MySQL/MariaDB, sending text as
//! it is (the simple query protocol, as pgbench does by default): a
//! rehearsal measures the application's statements, not waymark's way of
//! preparing them.

use std::future::Future;
use std::pin::Pin;
use std::str::FromStr;

use sqlx::{ConnectOptions, Connection};

use crate::error::LoadError;
/// `url` without its password (in the userinfo or a `password` query
/// parameter), for messages: the one every waymark message uses.
pub(crate) use waymark_db::redact;

type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The `application_name` of the workload's clients, by which the
/// sampler tells them from the executor (`waymark`) and everyone else.
pub const CLIENT_NAME: &str = "waymark-rehearse";
/// The reporter's.
pub const REPORTER_NAME: &str = "waymark-rehearse-reporter";
/// The sampler's own connection.
pub(crate) const SAMPLER_NAME: &str = "waymark-rehearse-sampler";

#[derive(Debug)]
pub(crate) enum Conn {
    Pg(sqlx::PgConnection),
    MySql(sqlx::MySqlConnection),
}

/// How a statement failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Failure {
    /// The SQLSTATE on PostgreSQL, the error number on MySQL/MariaDB, or
    /// `connection` when the connection itself failed.
    pub(crate) code: String,
    pub(crate) message: String,
    /// The connection is gone and must be opened again.
    pub(crate) lost: bool,
}

impl Conn {
    pub(crate) fn open<'a>(url: &'a str, name: &'a str) -> BoxFuture<'a, Result<Conn, LoadError>> {
        Box::pin(Self::connect(url, name))
    }

    async fn connect(url: &str, name: &str) -> Result<Conn, LoadError> {
        let failed = |e: sqlx::Error| LoadError::Connect {
            url: redact(url),
            message: e.to_string(),
        };
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let options = sqlx::postgres::PgConnectOptions::from_str(url)
                .map_err(failed)?
                .application_name(name)
                .statement_cache_capacity(0);
            Ok(Conn::Pg(options.connect().await.map_err(failed)?))
        } else if url.starts_with("mysql://") || url.starts_with("mariadb://") {
            let url = url.replacen("mariadb://", "mysql://", 1);
            let options = sqlx::mysql::MySqlConnectOptions::from_str(&url)
                .map_err(failed)?
                .statement_cache_capacity(0);
            Ok(Conn::MySql(options.connect().await.map_err(failed)?))
        } else {
            Err(LoadError::Connect {
                url: redact(url),
                message: "a rehearsal's workload runs on PostgreSQL or MySQL/MariaDB".to_owned(),
            })
        }
    }

    /// Sends `sql` and reads every result. Boxed as `Send` here, where
    /// its lifetimes are plain: the clients' tasks await it inside a
    /// `select!`, where rustc cannot prove sqlx's futures `Send` for every
    /// lifetime at once.
    pub(crate) fn execute<'a>(&'a mut self, sql: &'a str) -> BoxFuture<'a, Result<(), Failure>> {
        Box::pin(async move {
            let result = match self {
                // A `&str` with no arguments goes as a simple query (the
                // text protocol), several statements at once if it holds them.
                Conn::Pg(c) => sqlx::Executor::execute(&mut *c, sql).await.map(drop),
                Conn::MySql(c) => sqlx::Executor::execute(&mut *c, sql).await.map(drop),
            };
            result.map_err(failure)
        })
    }

    pub(crate) async fn close(self) {
        let _ = match self {
            Conn::Pg(c) => c.close().await,
            Conn::MySql(c) => c.close().await,
        };
    }

    /// MySQL/MariaDB's `CONNECTION_ID()`, by which the sampler tells the
    /// workload's sessions from the rest (MySQL has no
    /// `application_name`); `None` on PostgreSQL.
    pub(crate) async fn mysql_id(&mut self) -> Result<Option<u64>, Failure> {
        match self {
            Conn::Pg(_) => Ok(None),
            Conn::MySql(c) => sqlx::query_scalar::<_, u64>("SELECT CONNECTION_ID()")
                .fetch_one(&mut *c)
                .await
                .map(Some)
                .map_err(failure),
        }
    }

    pub(crate) fn mysql(&mut self) -> Option<&mut sqlx::MySqlConnection> {
        match self {
            Conn::MySql(c) => Some(c),
            Conn::Pg(_) => None,
        }
    }

    pub(crate) fn pg(&mut self) -> Option<&mut sqlx::PgConnection> {
        match self {
            Conn::Pg(c) => Some(c),
            Conn::MySql(_) => None,
        }
    }
}

fn failure(e: sqlx::Error) -> Failure {
    match &e {
        sqlx::Error::Database(db) => {
            let code = match db.try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>() {
                Some(my) => my.number().to_string(),
                None => db
                    .code()
                    .map(|c| c.into_owned())
                    .unwrap_or_else(|| "unknown".to_owned()),
            };
            Failure {
                code,
                message: db.message().to_owned(),
                lost: false,
            }
        }
        _ => Failure {
            code: "connection".to_owned(),
            message: e.to_string(),
            lost: true,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_never_reaches_a_message() {
        assert_eq!(redact("postgres://u:secret@h/db"), "postgres://u:***@h/db");
        assert_eq!(redact("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(redact("mysql://h/db"), "mysql://h/db");
    }
}
