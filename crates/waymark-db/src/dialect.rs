//! The three dialects, and the SQL fragments every module composes its
//! statements from: identifier quoting, bind parameters, the time. Each is
//! written here once, with every dialect's form side by side; a module's
//! own catalog queries stay beside the code that reads their rows.

/// The database's dialect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// PostgreSQL.
    Postgres,
    /// MySQL or MariaDB.
    Mysql,
    /// SQLite.
    Sqlite,
}

impl Dialect {
    /// Whether the migration lock is a session lock held for the whole run
    /// (PostgreSQL, MySQL), rather than each migration's own write lock
    /// (SQLite).
    pub fn session_lock(self) -> bool {
        !matches!(self, Dialect::Sqlite)
    }

    /// Whether DDL is transactional, so a migration can be all-or-nothing.
    pub fn transactional_ddl(self) -> bool {
        !matches!(self, Dialect::Mysql)
    }

    /// The dialect of a [`Dialect::name`].
    pub fn parse(name: &str) -> Option<Self> {
        [Dialect::Postgres, Dialect::Mysql, Dialect::Sqlite]
            .into_iter()
            .find(|d| d.name() == name)
    }

    /// The dialect of a database URL, by its scheme: `postgres://`,
    /// `mysql://` or `mariadb://`, `sqlite:`.
    pub fn of_url(url: &str) -> Option<Self> {
        let scheme = url.split(':').next().unwrap_or_default().to_ascii_lowercase();
        match scheme.as_str() {
            "postgres" | "postgresql" => Some(Dialect::Postgres),
            "mysql" | "mariadb" => Some(Dialect::Mysql),
            "sqlite" => Some(Dialect::Sqlite),
            _ => None,
        }
    }

    /// The dialect's name as users write it.
    pub fn name(self) -> &'static str {
        match self {
            Dialect::Postgres => "postgres",
            Dialect::Mysql => "mysql",
            Dialect::Sqlite => "sqlite",
        }
    }

    /// `name` as an identifier: in double quotes (backticks on MySQL), with
    /// the quote inside doubled.
    pub fn quote_ident(self, name: &str) -> String {
        match self {
            Dialect::Mysql => format!("`{}`", name.replace('`', "``")),
            Dialect::Postgres | Dialect::Sqlite => format!("\"{}\"", name.replace('"', "\"\"")),
        }
    }

    /// A table's name as the catalog lists it (`schema.table` on
    /// PostgreSQL, the bare name elsewhere), quoted part by part.
    pub fn quote_table(self, name: &str) -> String {
        match self {
            Dialect::Postgres => name
                .splitn(2, '.')
                .map(|p| self.quote_ident(p))
                .collect::<Vec<_>>()
                .join("."),
            Dialect::Mysql | Dialect::Sqlite => self.quote_ident(name),
        }
    }

    /// The `n`th (1-based) bind parameter: `$n` on PostgreSQL, `?`
    /// elsewhere.
    pub(crate) fn placeholder(self, n: usize) -> String {
        match self {
            Dialect::Postgres => format!("${n}"),
            Dialect::Mysql | Dialect::Sqlite => "?".to_owned(),
        }
    }

    /// The current time in UTC, as the history's columns store it.
    pub(crate) fn now(self) -> &'static str {
        match self {
            Dialect::Postgres => "now()",
            Dialect::Mysql => "UTC_TIMESTAMP(6)",
            Dialect::Sqlite => "strftime('%Y-%m-%dT%H:%M:%fZ', 'now')",
        }
    }

    /// A stored UTC time `column` as RFC 3339 text with milliseconds (SQLite
    /// stores it so).
    pub(crate) fn time_text(self, column: &str) -> String {
        match self {
            Dialect::Postgres => format!(r#"to_char({column} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')"#),
            Dialect::Mysql => format!("DATE_FORMAT({column}, '%Y-%m-%dT%H:%i:%s.%fZ')"),
            Dialect::Sqlite => column.to_owned(),
        }
    }

    /// The value of `expr`, which is not null, as an SQL literal that
    /// reads back as the same value.
    pub(crate) fn literal_of(self, expr: &str) -> String {
        match self {
            Dialect::Postgres => format!("quote_literal({expr}::text)"),
            Dialect::Mysql => format!("QUOTE({expr})"),
            Dialect::Sqlite => format!("quote({expr})"),
        }
    }
}
