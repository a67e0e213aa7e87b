use std::str::FromStr;
use std::time::Duration;

use sqlx::mysql::{MySql, MySqlConnectOptions, MySqlPoolOptions};
use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions, Postgres};
use sqlx::sqlite::{Sqlite, SqliteConnectOptions, SqlitePoolOptions};
use sqlx::{Pool, Transaction};

use crate::dialect::Dialect;
use crate::error::{DbError, describe};
use crate::history::HistoryTable;
use crate::pg_tx::PgTx;
use crate::url::redact;

/// How to connect.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    /// `postgres://`, `mysql://`/`mariadb://` or `sqlite://` URL.
    pub url: String,
    /// Statements run on every new connection before anything else (for
    /// example `SET lock_timeout = '5s'`).
    pub init_sql: Vec<String>,
    /// Where the history is kept.
    pub history: HistoryTable,
    /// How long to wait for the migration lock (and, on SQLite, for the
    /// write lock of each migration).
    pub lock_timeout: Duration,
    /// How long any statement on these connections may wait for another
    /// session's lock (PostgreSQL's `lock_timeout`, MySQL's
    /// `lock_wait_timeout`), set before `init_sql` so that the user's own
    /// setting there wins; `None` leaves the server's.
    pub lock_wait: Option<Duration>,
    /// How long to keep trying to reach a server before giving up with
    /// the cause; `None` waits 5 s. A server that does not answer at all
    /// (a dropped packet, a listener that never speaks) then fails in
    /// seconds, not minutes.
    pub connect_timeout: Option<Duration>,
    /// Whether a SQLite file that is not there is created (`up` and the
    /// other commands that write). Read-only commands leave it `false`, so
    /// a mistyped path is an error naming it, not a new empty database.
    pub create: bool,
}

#[derive(Debug, Clone)]
pub(crate) enum Pools {
    Postgres(Pool<Postgres>),
    Mysql(Pool<MySql>),
    Sqlite(Pool<Sqlite>),
}

/// A connected database.
#[derive(Debug, Clone)]
pub struct Database {
    pub(crate) pools: Pools,
    pub(crate) history: HistoryTable,
    pub(crate) url: String,
    pub(crate) lock_timeout: Duration,
    /// Whether the user's init SQL set its own lock-wait bound, which then
    /// wins over waymark's for transactions too.
    pub(crate) init_sql_bounds_lock_wait: bool,
}

/// A connection bound to one unit of work: either a transaction or, for
/// work that must run outside one, a plain connection that commits each
/// statement as it runs.
#[derive(Debug)]
pub struct Conn {
    pub(crate) inner: ConnInner,
    pub(crate) history: HistoryTable,
}

#[derive(Debug)]
pub(crate) enum ConnInner {
    PgTx(Transaction<'static, Postgres>),
    /// One migration's transaction, driven by waymark (`pg_tx.rs`).
    PgOwn(PgTx),
    Pg(PoolConnection<Postgres>),
    MyTx(Transaction<'static, MySql>),
    My(PoolConnection<MySql>),
    LiteTx(Transaction<'static, Sqlite>),
    Lite(PoolConnection<Sqlite>),
}

/// The connection under a [`ConnInner`], by driver, for code whose queries
/// are typed per driver (bound parameters, decoded rows).
pub(crate) enum Driver<'a> {
    Pg(&'a mut sqlx::PgConnection),
    My(&'a mut sqlx::MySqlConnection),
    Lite(&'a mut sqlx::SqliteConnection),
}

impl ConnInner {
    pub(crate) fn driver(&mut self) -> Driver<'_> {
        match self {
            ConnInner::PgTx(t) => Driver::Pg(t),
            ConnInner::PgOwn(t) => Driver::Pg(&mut t.conn),
            ConnInner::Pg(p) => Driver::Pg(p),
            ConnInner::MyTx(t) => Driver::My(t),
            ConnInner::My(p) => Driver::My(p),
            ConnInner::LiteTx(t) => Driver::Lite(t),
            ConnInner::Lite(p) => Driver::Lite(p),
        }
    }

    /// Sends a transaction's `BEGIN` if it is still waiting to go out with
    /// a statement: before anything that cannot carry it.
    pub(crate) async fn ready(&mut self) -> Result<(), DbError> {
        match self {
            ConnInner::PgOwn(t) => t.ready().await,
            _ => Ok(()),
        }
    }
}

/// Runs `$body` with `$c` bound to the underlying `&mut XConnection`, for
/// whichever driver `$conn` holds. The body is written once and compiled for
/// each driver.
macro_rules! with_conn {
    ($conn:expr, $c:ident => $body:expr) => {{
        let inner: &mut $crate::conn::ConnInner = $conn;
        inner.ready().await?;
        match inner {
            $crate::conn::ConnInner::PgTx(t) => {
                let $c = &mut **t;
                $body
            }
            $crate::conn::ConnInner::PgOwn(t) => {
                let $c = &mut *t.conn;
                $body
            }
            $crate::conn::ConnInner::Pg(p) => {
                let $c = &mut **p;
                $body
            }
            $crate::conn::ConnInner::MyTx(t) => {
                let $c = &mut **t;
                $body
            }
            $crate::conn::ConnInner::My(p) => {
                let $c = &mut **p;
                $body
            }
            $crate::conn::ConnInner::LiteTx(t) => {
                let $c = &mut **t;
                $body
            }
            $crate::conn::ConnInner::Lite(p) => {
                let $c = &mut **p;
                $body
            }
        }
    }};
}
pub(crate) use with_conn;

/// How long a pool's later acquire waits while both of its connections are
/// busy: a long statement on one must not fail a short one queued for the
/// other, whatever the connect timeout.
const BUSY_POOL: Duration = Duration::from_secs(30);

/// The pool's first connection, within the connect timeout: the pool's own
/// wait also covers acquiring a busy connection later, which is given
/// longer ([`BUSY_POOL`]).
async fn first_connection<P>(
    connect: impl std::future::Future<Output = Result<P, sqlx::Error>>,
    reach: Duration,
) -> Result<P, sqlx::Error> {
    tokio::time::timeout(reach, connect)
        .await
        .unwrap_or(Err(sqlx::Error::PoolTimedOut))
}

/// A pool's connect, with the cause where it only timed out: the pool
/// retries connection errors until its timeout and then says only that it
/// timed out, so one direct attempt, made only on this failure path, finds
/// the cause ("Connection refused", a bad password) for the message.
async fn with_cause<C: sqlx::Connection, P>(
    connected: Result<P, sqlx::Error>,
    options: &C::Options,
    reach: Duration,
) -> Result<P, sqlx::Error> {
    match connected {
        Err(sqlx::Error::PoolTimedOut) => Err(cause::<C>(options, reach).await),
        other => other,
    }
}

async fn cause<C: sqlx::Connection>(options: &C::Options, reach: Duration) -> sqlx::Error {
    // A refusal or a bad password answers in milliseconds; a host that does
    // not answer at all has had its `reach` already.
    match tokio::time::timeout(Duration::from_secs(1), C::connect_with(options)).await {
        Ok(Err(e)) => e,
        Ok(Ok(conn)) => {
            // It answered now; the pool's own attempts still timed out.
            drop(conn.close().await);
            sqlx::Error::PoolTimedOut
        }
        Err(_) => sqlx::Error::Protocol(format!(
            "no answer within {}s (the connect timeout)",
            reach.as_secs_f64()
        )),
    }
}

/// A failure to connect to `url` (redacted), said as what it is: a
/// database that is not there, or the driver's cause.
pub(crate) fn connect_error(url: &str, e: &sqlx::Error) -> DbError {
    let (code, message, _) = describe(e);
    // PostgreSQL's invalid_catalog_name; MySQL's ER_BAD_DB_ERROR.
    if matches!(code.as_deref(), Some("3D000" | "1049")) {
        return DbError::NoDatabase {
            url: url.to_owned(),
            message,
            file: false,
        };
    }
    DbError::Connect {
        url: url.to_owned(),
        message,
    }
}

/// How long a connect may take when [`ConnectOptions::connect_timeout`]
/// is not given: a server that answers at all answers well within it.
pub(crate) const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

impl Database {
    /// Connects, running `init_sql` on the first connection so a bad setup
    /// statement fails here, with its text in the message.
    pub async fn connect(options: &ConnectOptions) -> Result<Self, DbError> {
        options.history.validate()?;
        let url = redact(&options.url);
        let invalid = |e: sqlx::Error| DbError::InvalidUrl {
            url: url.clone(),
            message: e.to_string(),
        };
        let reach = options.connect_timeout.unwrap_or(DEFAULT_CONNECT_TIMEOUT);
        let connect_error = |e: sqlx::Error| connect_error(&url, &e);
        // `sqlite://app.db`, and sqlx's own `sqlite:app.db`.
        let scheme = options.url.split(':').next().unwrap_or_default().to_ascii_lowercase();
        let dialect = Dialect::of_url(&options.url).unwrap_or(Dialect::Sqlite);
        let init: Vec<String> = crate::waits::bound_on_connect(dialect, options.lock_wait)
            .into_iter()
            .chain(options.init_sql.iter().cloned())
            .collect();
        // sqlx's error for a missing file says only "No such file or
        // directory", and not which.
        for (key, path) in crate::url::tls_files(&options.url) {
            if !std::path::Path::new(&path).is_file() {
                let system = match path.as_str() {
                    "system" => " (libpq's `system` is not read here: without it, the system's roots are used)",
                    _ => "",
                };
                return Err(DbError::InvalidUrl {
                    url,
                    message: format!("{key} names {path}, which is not a file{system}"),
                });
            }
        }
        let pools = match scheme.as_str() {
            "postgres" | "postgresql" => {
                let opts = PgConnectOptions::from_str(&options.url)
                    .map_err(invalid)?
                    .application_name("waymark");
                let pool = PgPoolOptions::new()
                    .max_connections(2)
                    // A ping before every acquire costs a round trip per
                    // migration; a dead connection fails the next statement
                    // clearly anyway.
                    .test_before_acquire(false)
                    .acquire_timeout(reach.max(BUSY_POOL))
                    .after_connect(move |conn, _| {
                        let init = init.clone();
                        Box::pin(async move { init_pg(conn, &init).await })
                    })
                    .connect_with(opts.clone());
                let pool = first_connection(pool, reach).await;
                let pool = with_cause::<sqlx::PgConnection, _>(pool, &opts, reach)
                    .await
                    .map_err(connect_error)?;
                Pools::Postgres(pool)
            }
            "mysql" | "mariadb" => {
                let opts = MySqlConnectOptions::from_str(&options.url.replacen("mariadb://", "mysql://", 1))
                    .map_err(invalid)?
                    // sqlx adjusts sql_mode and the time zone by default;
                    // a migration tool must leave the session as the server
                    // (or the user's init SQL) sets it.
                    .pipes_as_concat(false)
                    .no_engine_substitution(false)
                    .timezone(None);
                let pool = MySqlPoolOptions::new()
                    .max_connections(2)
                    .test_before_acquire(false)
                    .acquire_timeout(reach.max(BUSY_POOL))
                    .after_connect(move |conn, _| {
                        let init = init.clone();
                        Box::pin(async move { init_mysql(conn, &init).await })
                    })
                    .connect_with(opts.clone());
                let pool = first_connection(pool, reach).await;
                let pool = with_cause::<sqlx::MySqlConnection, _>(pool, &opts, reach)
                    .await
                    .map_err(connect_error)?;
                Pools::Mysql(pool)
            }
            "sqlite" => {
                let opts = SqliteConnectOptions::from_str(&options.url)
                    .map_err(invalid)?
                    .create_if_missing(options.create)
                    .busy_timeout(options.lock_timeout);
                if !options.create {
                    let missing = crate::pages::sqlite_file(&options.url)?.filter(|file| !file.exists());
                    if let Some(file) = missing {
                        return Err(DbError::NoDatabase {
                            url,
                            message: format!("no database file {}", file.display()),
                            file: true,
                        });
                    }
                }
                // One connection: SQLite serialises writers anyway, and one
                // connection cannot wait on a lock its sibling holds.
                let pool = SqlitePoolOptions::new()
                    .max_connections(1)
                    .test_before_acquire(false)
                    .acquire_timeout(options.lock_timeout.max(Duration::from_secs(30)))
                    .after_connect(move |conn, _| {
                        let init = init.clone();
                        Box::pin(async move { init_sqlite(conn, &init).await })
                    })
                    .connect_with(opts)
                    .await
                    .map_err(connect_error)?;
                Pools::Sqlite(pool)
            }
            other => {
                return Err(DbError::InvalidUrl {
                    url,
                    message: format!(
                        "unsupported scheme {other:?}: use postgres://, mysql://, mariadb:// or sqlite://"
                    ),
                });
            }
        };
        // Only an init SQL can have changed the bound, so only then is it
        // worth a round trip to read it back.
        let init_sql_bounds_lock_wait = match (&pools, options.lock_wait) {
            (Pools::Postgres(pool), Some(bound)) if !options.init_sql.is_empty() => {
                crate::waits::init_sql_changed_bound(pool, bound).await?
            }
            _ => false,
        };
        Ok(Database {
            pools,
            history: options.history.clone(),
            url,
            lock_timeout: options.lock_timeout,
            init_sql_bounds_lock_wait,
        })
    }

    /// The dialect.
    pub fn dialect(&self) -> Dialect {
        match self.pools {
            Pools::Postgres(_) => Dialect::Postgres,
            Pools::Mysql(_) => Dialect::Mysql,
            Pools::Sqlite(_) => Dialect::Sqlite,
        }
    }

    /// Whether the user's init SQL bounds lock waits itself (PostgreSQL's
    /// `lock_timeout` set to other than the bound waymark set on connect):
    /// then no transaction of a migration gets a bound of its own, and the
    /// user's holds throughout.
    pub fn init_sql_bounds_lock_wait(&self) -> bool {
        self.init_sql_bounds_lock_wait
    }

    /// The URL without its password, for messages.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Where the history is kept.
    pub fn history_table(&self) -> &HistoryTable {
        &self.history
    }

    /// Begins a transaction. On SQLite this takes the write lock at once
    /// (`BEGIN IMMEDIATE`), waiting up to the lock timeout for it: that lock
    /// is what keeps two runners apart on SQLite.
    pub async fn begin(&self) -> Result<Conn, DbError> {
        let inner = match &self.pools {
            Pools::Postgres(p) => ConnInner::PgTx(p.begin().await.map_err(|e| DbError::query("BEGIN", e))?),
            Pools::Mysql(p) => ConnInner::MyTx(p.begin().await.map_err(|e| DbError::query("BEGIN", e))?),
            Pools::Sqlite(p) => match p.begin_with("BEGIN IMMEDIATE").await {
                Ok(tx) => ConnInner::LiteTx(tx),
                Err(e) if is_sqlite_busy(&e) => {
                    return Err(DbError::LockTimeout {
                        url: self.url.clone(),
                        timeout: self.lock_timeout,
                        holder: "held by another connection, which has SQLite's write lock".to_owned(),
                    });
                }
                Err(e) => return Err(DbError::query("BEGIN IMMEDIATE", e)),
            },
        };
        Ok(Conn {
            inner,
            history: self.history.clone(),
        })
    }

    /// Begins one migration's transaction. On PostgreSQL nothing is sent
    /// yet: the `BEGIN` goes out with the first statement, and
    /// [`Conn::record_and_commit`] sends the history row with the `COMMIT`
    /// (`pg_tx.rs`). Elsewhere, [`Database::begin`].
    ///
    /// `lock_wait`, on PostgreSQL, bounds this transaction's lock waits
    /// (`SET LOCAL lock_timeout`, sent with the `BEGIN`) in place of the
    /// session's bound; elsewhere the session's bound holds.
    pub async fn begin_migration(&self, lock_wait: Option<Duration>) -> Result<Conn, DbError> {
        let Pools::Postgres(p) = &self.pools else {
            return self.begin().await;
        };
        let conn = p
            .acquire()
            .await
            .map_err(|e| DbError::query("acquiring a connection", e))?;
        let settings: Vec<String> = lock_wait
            .map(crate::waits::transaction_lock_wait_sql)
            .into_iter()
            .collect();
        Ok(Conn {
            inner: ConnInner::PgOwn(PgTx::new(conn, &settings)),
            history: self.history.clone(),
        })
    }

    /// A plain connection, outside any transaction.
    pub async fn connection(&self) -> Result<Conn, DbError> {
        let acquire = |e| DbError::query("acquiring a connection", e);
        let inner = match &self.pools {
            Pools::Postgres(p) => ConnInner::Pg(p.acquire().await.map_err(acquire)?),
            Pools::Mysql(p) => ConnInner::My(p.acquire().await.map_err(acquire)?),
            Pools::Sqlite(p) => ConnInner::Lite(p.acquire().await.map_err(acquire)?),
        };
        Ok(Conn {
            inner,
            history: self.history.clone(),
        })
    }

    /// Closes every connection.
    pub async fn close(&self) {
        match &self.pools {
            Pools::Postgres(p) => p.close().await,
            Pools::Mysql(p) => p.close().await,
            Pools::Sqlite(p) => p.close().await,
        }
    }
}

fn is_sqlite_busy(e: &sqlx::Error) -> bool {
    match e {
        // SQLITE_BUSY and its extended codes (SQLITE_BUSY_SNAPSHOT, ...).
        sqlx::Error::Database(db) => db.code().is_some_and(|c| c.parse::<i32>().is_ok_and(|n| n & 0xff == 5)),
        _ => false,
    }
}

/// Defines a function that runs the session setup on one driver's
/// connection. Concrete per driver: sqlx's generic executors do not satisfy
/// the higher-ranked bounds of `after_connect`.
macro_rules! init_fn {
    ($name:ident, $conn:ty) => {
        async fn $name(conn: &mut $conn, init: &[String]) -> Result<(), sqlx::Error> {
            for statement in init {
                sqlx::Executor::execute(&mut *conn, statement.as_str())
                    .await
                    .map_err(|e| init_failed(statement, &e))?;
            }
            Ok(())
        }
    };
}
init_fn!(init_pg, sqlx::PgConnection);
init_fn!(init_mysql, sqlx::MySqlConnection);
init_fn!(init_sqlite, sqlx::SqliteConnection);

fn init_failed(statement: &str, e: &sqlx::Error) -> sqlx::Error {
    let (_, message, _) = describe(e);
    sqlx::Error::Configuration(format!("session setup statement {statement:?} failed: {message}").into())
}

impl Conn {
    /// Whether this connection holds a transaction.
    pub fn in_transaction(&self) -> bool {
        matches!(
            self.inner,
            ConnInner::PgTx(_) | ConnInner::PgOwn(_) | ConnInner::MyTx(_) | ConnInner::LiteTx(_)
        )
    }

    /// Runs `sql` as text. Without arguments sqlx sends it unprepared (the
    /// simple query protocol on PostgreSQL, `COM_QUERY` on MySQL), so any
    /// statement the database accepts can run, including those that cannot
    /// be prepared. Returns the rows affected.
    pub async fn execute(&mut self, sql: &str) -> Result<u64, DbError> {
        if let ConnInner::PgOwn(t) = &mut self.inner {
            return t.execute(sql, "statement failed").await;
        }
        let result = with_conn!(&mut self.inner, c => sqlx::Executor::execute(c, sql).await.map(|r| r.rows_affected()));
        result.map_err(|e| DbError::query("statement failed", e))
    }

    /// Runs several statements in one round trip, all or none: inside a
    /// savepoint, rolled back to on failure so the transaction can go on.
    /// Only inside a transaction.
    pub async fn execute_script(&mut self, sql: &str) -> Result<u64, DbError> {
        if !self.in_transaction() {
            return Err(DbError::Query {
                context: "execute-script".to_owned(),
                code: None,
                message: "a script runs only inside a transaction".to_owned(),
                position: None,
            });
        }
        // Delimiters on lines of their own: the script may end in a comment.
        let batch = format!("SAVEPOINT waymark_script;\n{sql}\n;\nRELEASE SAVEPOINT waymark_script");
        match self.execute(&batch).await {
            Ok(rows) => Ok(rows),
            Err(e) => {
                // On PostgreSQL a syntax error anywhere in the batch runs
                // none of it, the savepoint included, and rolling back to a
                // savepoint that does not exist would abort the transaction.
                let ran = match &mut self.inner {
                    ConnInner::PgOwn(t) => t.batch_ran().await?,
                    ConnInner::PgTx(t) => crate::pg_tx::aborted(t).await?,
                    _ => true,
                };
                if ran {
                    self.execute("ROLLBACK TO SAVEPOINT waymark_script; RELEASE SAVEPOINT waymark_script")
                        .await?;
                }
                // The position, if any, is within the batch, not a statement.
                Err(e.map_position(|_| None))
            }
        }
    }

    /// Commits the transaction, if there is one.
    pub async fn commit(self) -> Result<(), DbError> {
        let commit = |e| DbError::query("COMMIT", e);
        match self.inner {
            ConnInner::PgTx(t) => t.commit().await.map_err(commit),
            ConnInner::PgOwn(mut t) => t.end("COMMIT").await,
            ConnInner::MyTx(t) => t.commit().await.map_err(commit),
            ConnInner::LiteTx(t) => t.commit().await.map_err(commit),
            ConnInner::Pg(_) | ConnInner::My(_) | ConnInner::Lite(_) => Ok(()),
        }
    }

    /// Rolls the transaction back, if there is one.
    pub async fn rollback(self) -> Result<(), DbError> {
        let rollback = |e| DbError::query("ROLLBACK", e);
        match self.inner {
            ConnInner::PgTx(t) => t.rollback().await.map_err(rollback),
            ConnInner::PgOwn(mut t) => t.end("ROLLBACK").await,
            ConnInner::MyTx(t) => t.rollback().await.map_err(rollback),
            ConnInner::LiteTx(t) => t.rollback().await.map_err(rollback),
            ConnInner::Pg(_) | ConnInner::My(_) | ConnInner::Lite(_) => Ok(()),
        }
    }
}
