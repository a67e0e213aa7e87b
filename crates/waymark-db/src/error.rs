use std::time::Duration;

/// What went wrong talking to the database.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DbError {
    /// The URL or connection settings are not usable.
    #[error("invalid database URL {url}: {message}")]
    InvalidUrl {
        /// The URL, with any password removed.
        url: String,
        /// What is wrong with it.
        message: String,
    },
    /// A setting is not usable (a history table name that is not a plain
    /// identifier, say).
    #[error("{0}")]
    Config(String),
    /// The server could not be reached or refused the connection.
    #[error("could not connect to {url}: {message}")]
    Connect {
        /// The URL, with any password removed.
        url: String,
        /// What the driver said.
        message: String,
    },
    /// The server answered, but the database the URL names is not there
    /// (or, for a command that creates nothing, the SQLite file).
    #[error("could not connect to {url}: {message}")]
    NoDatabase {
        /// The URL, with any password removed.
        url: String,
        /// What is missing, as the server (or the file system) said.
        message: String,
        /// Whether it is a SQLite file, which `up` would create.
        file: bool,
    },
    /// Another runner held the migration lock for longer than allowed.
    #[error("could not get the migration lock on {url} within {} s: {holder}", timeout.as_secs_f64())]
    LockTimeout {
        /// The URL, with any password removed.
        url: String,
        /// How long waymark waited.
        timeout: Duration,
        /// Who holds the lock, as far as the server can tell.
        holder: String,
    },
    /// waymark's tables were written by a newer waymark, whose schema this
    /// one does not know.
    #[error(
        "{table} says waymark's tables have schema version {found}, written by a newer waymark; this one knows \
         versions up to {known} and will not read or change them"
    )]
    NewerSchema {
        /// The version table.
        table: String,
        /// The version found.
        found: i64,
        /// The newest version this waymark knows.
        known: i64,
    },
    /// The data a statement would drop cannot be kept for `down`.
    #[error("{0}")]
    Preimage(String),
    /// A statement failed.
    #[error("{context}: {message}")]
    Query {
        /// What waymark was doing.
        context: String,
        /// SQLSTATE, MySQL error number or SQLite result code.
        code: Option<String>,
        /// The database's message.
        message: String,
        /// 1-based character position of the error in the statement.
        position: Option<u32>,
    },
}

impl DbError {
    /// The same error with its position in the statement changed by `f`.
    pub(crate) fn map_position(mut self, f: impl FnOnce(Option<u32>) -> Option<u32>) -> Self {
        if let DbError::Query { position, .. } = &mut self {
            *position = f(*position);
        }
        self
    }

    /// The same error, saying it happened while doing `context`.
    pub(crate) fn context(mut self, context: String) -> Self {
        if let DbError::Query { context: doing, .. } = &mut self {
            *doing = context;
        }
        self
    }

    /// What the user can do about it, where the error alone does not say.
    pub fn hint(&self) -> Option<String> {
        match self {
            DbError::NoDatabase { file: true, .. } => Some(
                "`waymark up` (or `waymark database create`) creates the file; status, plan and verify only read, \
                 so they create nothing; check the path in the URL"
                    .to_owned(),
            ),
            DbError::NoDatabase { file: false, .. } => Some(
                "create it with `waymark database create` (the URL's user needs the right to), or check the \
                 database name in the URL"
                    .to_owned(),
            ),
            DbError::Connect { message, .. } if message.contains("Connection refused") => Some(
                "nothing listens at that host and port: is the server running, and is the URL's port its port? \
                 (--database-url or DATABASE_URL)"
                    .to_owned(),
            ),
            DbError::Connect { message, .. } if message.contains("the connect timeout") => Some(
                "the host did not answer: check the host in the URL and any firewall between, or allow longer \
                 with --connect-timeout"
                    .to_owned(),
            ),
            _ => None,
        }
    }

    pub(crate) fn query(context: impl Into<String>, error: sqlx::Error) -> Self {
        let (code, message, position) = describe(&error);
        DbError::Query {
            context: context.into(),
            code,
            message,
            position,
        }
    }
}

/// The code, message and error position of a driver error.
pub(crate) fn describe(error: &sqlx::Error) -> (Option<String>, String, Option<u32>) {
    match error {
        sqlx::Error::Database(db) => {
            if let Some(pg) = db.try_downcast_ref::<sqlx::postgres::PgDatabaseError>() {
                let position = match pg.position() {
                    Some(sqlx::postgres::PgErrorPosition::Original(p)) => u32::try_from(p).ok(),
                    _ => None,
                };
                let mut message = pg.message().to_owned();
                if let Some(detail) = pg.detail() {
                    message.push_str(&format!(" (detail: {detail})"));
                }
                return (Some(pg.code().to_owned()), message, position);
            }
            if let Some(my) = db.try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>() {
                return (Some(my.number().to_string()), my.message().to_owned(), None);
            }
            (db.code().map(|c| c.into_owned()), db.message().to_owned(), None)
        }
        other => (None, other.to_string(), None),
    }
}
