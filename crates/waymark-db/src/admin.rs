//! `waymark database create|drop`: the database a URL names, made or
//! removed from the server's side, or for SQLite its file. Both are
//! idempotent, so a pipeline can run them every time: a database that is
//! there already is not created again, one that is gone is not dropped.

use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use sqlx::Connection;
use sqlx::mysql::{MySqlConnectOptions, MySqlConnection};
use sqlx::postgres::{PgConnectOptions, PgConnection};

use crate::conn::ConnectOptions;
use crate::dialect::Dialect;
use crate::error::DbError;
use crate::url::redact;

/// What `create_database` or `drop_database` found and did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatabaseChange {
    /// The database's name (for SQLite, its file).
    pub name: String,
    /// Whether it was created or dropped; `false` when it already was as
    /// asked (there, for create; gone, for drop).
    pub changed: bool,
}

/// Creates the database `options.url` names, connecting to the server's
/// maintenance database (PostgreSQL's `postgres`, else `template1`; MySQL
/// with none) as the URL's user.
pub async fn create_database(options: &ConnectOptions) -> Result<DatabaseChange, DbError> {
    change(options, true).await
}

/// Drops the database `options.url` names, and everything in it. A
/// PostgreSQL database others are connected to is refused by the server,
/// which says so.
pub async fn drop_database(options: &ConnectOptions) -> Result<DatabaseChange, DbError> {
    change(options, false).await
}

async fn change(options: &ConnectOptions, create: bool) -> Result<DatabaseChange, DbError> {
    let url = redact(&options.url);
    let reach = options.connect_timeout.unwrap_or(crate::conn::DEFAULT_CONNECT_TIMEOUT);
    let invalid = |e: sqlx::Error| DbError::InvalidUrl {
        url: url.clone(),
        message: e.to_string(),
    };
    let dialect = Dialect::of_url(&options.url);
    let (mut server, name) = match dialect {
        Some(Dialect::Postgres) => {
            let opts = PgConnectOptions::from_str(&options.url).map_err(invalid)?;
            let name = named(opts.get_database(), &url)?;
            let conn = match reached(
                &url,
                reach,
                PgConnection::connect_with(&opts.clone().database("postgres")),
            )
            .await
            {
                // A server without `postgres` still has `template1`.
                Err(DbError::NoDatabase { .. }) => {
                    reached(&url, reach, PgConnection::connect_with(&opts.database("template1"))).await?
                }
                other => other?,
            };
            (Server::Postgres(conn), name)
        }
        Some(Dialect::Mysql) => {
            let url_mysql = options.url.replacen("mariadb://", "mysql://", 1);
            let name = named(
                MySqlConnectOptions::from_str(&url_mysql)
                    .map_err(invalid)?
                    .get_database(),
                &url,
            )?;
            let opts = MySqlConnectOptions::from_str(&without_database(&url_mysql))
                .map_err(invalid)?
                .pipes_as_concat(false)
                .no_engine_substitution(false)
                .timezone(None);
            (
                Server::Mysql(reached(&url, reach, MySqlConnection::connect_with(&opts)).await?),
                name,
            )
        }
        Some(Dialect::Sqlite) => return change_file(options, create, &url).await,
        None => {
            return Err(DbError::InvalidUrl {
                url,
                message: "unsupported scheme: use postgres://, mysql://, mariadb:// or sqlite://".to_owned(),
            });
        }
    };
    let result = async {
        let changed = server.exists(&name, &url).await? != create;
        if changed {
            let verb = if create { "CREATE" } else { "DROP" };
            let quoted = dialect.expect("a server's dialect").quote_ident(&name);
            server.execute(&format!("{verb} DATABASE {quoted}"), &url).await?;
        }
        Ok(DatabaseChange { name, changed })
    }
    .await;
    server.close().await;
    result
}

/// A connection to a server, not to the database it creates or drops.
enum Server {
    Postgres(PgConnection),
    Mysql(MySqlConnection),
}

impl Server {
    async fn exists(&mut self, name: &str, url: &str) -> Result<bool, DbError> {
        let failed = |e| DbError::query(format!("looking for database {name} on {url}"), e);
        match self {
            Server::Postgres(c) => sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
                .bind(name)
                .fetch_one(c)
                .await
                .map_err(failed),
            Server::Mysql(c) => {
                sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM information_schema.schemata WHERE schema_name = ?")
                    .bind(name)
                    .fetch_one(c)
                    .await
                    .map(|n| n > 0)
                    .map_err(failed)
            }
        }
    }

    async fn execute(&mut self, sql: &str, url: &str) -> Result<(), DbError> {
        let done = match self {
            Server::Postgres(c) => sqlx::raw_sql(sql).execute(c).await.map(drop),
            Server::Mysql(c) => sqlx::raw_sql(sql).execute(c).await.map(drop),
        };
        done.map_err(|e| DbError::query(format!("{sql} on {url}"), e))
    }

    async fn close(self) {
        drop(match self {
            Server::Postgres(c) => c.close().await,
            Server::Mysql(c) => c.close().await,
        });
    }
}

/// A SQLite database's file, made (by opening it) or removed with its
/// journals.
async fn change_file(options: &ConnectOptions, create: bool, url: &str) -> Result<DatabaseChange, DbError> {
    let file = crate::pages::sqlite_file(&options.url)?.ok_or_else(|| {
        DbError::Config(format!(
            "{url} is an in-memory database, which has no file to create or drop"
        ))
    })?;
    let exists = file.exists();
    if create && !exists {
        let db = crate::Database::connect(&ConnectOptions {
            create: true,
            ..options.clone()
        })
        .await?;
        db.close().await;
    } else if !create && exists {
        for path in companions(&file) {
            match std::fs::remove_file(&path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(DbError::Config(format!("could not remove {}: {e}", path.display())));
                }
                _ => {}
            }
        }
    }
    Ok(DatabaseChange {
        name: file.display().to_string(),
        changed: exists != create,
    })
}

/// The database name a URL gives, or why there is none to create.
fn named(database: Option<&str>, url: &str) -> Result<String, DbError> {
    database
        .filter(|d| !d.is_empty())
        .map(str::to_owned)
        .ok_or_else(|| DbError::InvalidUrl {
            url: url.to_owned(),
            message: "it names no database (the part after the host's `/`)".to_owned(),
        })
}

/// A connection made within `reach`, its failure said as connecting is.
async fn reached<C>(
    url: &str,
    reach: Duration,
    connect: impl std::future::Future<Output = Result<C, sqlx::Error>>,
) -> Result<C, DbError> {
    match tokio::time::timeout(reach, connect).await {
        Ok(Ok(conn)) => Ok(conn),
        Ok(Err(e)) => Err(crate::conn::connect_error(url, &e)),
        Err(_) => Err(DbError::Connect {
            url: url.to_owned(),
            message: format!("no answer within {}s (the connect timeout)", reach.as_secs_f64()),
        }),
    }
}

/// `mysql://user@host:3306/app?ssl-mode=disabled` without `/app`: the
/// server, for creating the database the URL names.
fn without_database(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let (before_query, query) = match rest.split_once('?') {
        Some((before, query)) => (before, Some(query)),
        None => (rest, None),
    };
    let authority = before_query.split('/').next().unwrap_or_default();
    match query {
        Some(query) => format!("{scheme}://{authority}?{query}"),
        None => format!("{scheme}://{authority}"),
    }
}

/// A SQLite database's file and the journal files beside it.
fn companions(file: &std::path::Path) -> Vec<PathBuf> {
    let mut paths = vec![file.to_owned()];
    for suffix in ["-wal", "-shm", "-journal"] {
        let mut name = file.as_os_str().to_owned();
        name.push(suffix);
        paths.push(PathBuf::from(name));
    }
    paths
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mysql_url_without_its_database_keeps_the_rest() {
        assert_eq!(
            without_database("mysql://root:pw@127.0.0.1:3306/app?ssl-mode=disabled"),
            "mysql://root:pw@127.0.0.1:3306?ssl-mode=disabled"
        );
        assert_eq!(without_database("mysql://root@db/app"), "mysql://root@db");
        assert_eq!(without_database("mysql://root@db"), "mysql://root@db");
    }

    #[test]
    fn a_url_without_a_database_is_refused_by_name() {
        let e = named(Some(""), "mysql://root@db").unwrap_err().to_string();
        assert_eq!(
            e,
            "invalid database URL mysql://root@db: it names no database (the part after the host's `/`)"
        );
    }
}
