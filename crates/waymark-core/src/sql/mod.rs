//! What SQL means, as far as the host needs to know: one home for the
//! analysis of statements, on sqlparser.
//!
//! - `permission.rs`: what a statement does to the database (reads, writes
//!   rows of named tables, anything else, transaction control), parsed into
//!   a syntax tree, for the permissions a plugin step is granted;
//! - `drops.rs`: which tables and columns a statement drops or makes, on
//!   tokens, so that it reads statements the parser cannot, for the copies
//!   of dropped data;
//! - `concurrent.rs`: which statements wait for older transactions rather
//!   than for a lock (`CONCURRENTLY`), and so are not cut short by the lock
//!   timeout;
//! - `lint/`: the locks statements take, rule by rule, said before anything
//!   runs.
//!
//! The analysis never changes what runs: the step component splits and
//! sends the statements; the host only classifies them.

mod concurrent;
pub(crate) mod drops;
pub(crate) mod lint;
pub(crate) mod permission;

pub(crate) use concurrent::concurrently;
use sqlparser::dialect::{Dialect as SqlDialect, MySqlDialect, PostgreSqlDialect, SQLiteDialect};
use waymark_db::Dialect;

/// sqlparser's dialect for a database's: the one mapping between them.
pub(crate) fn dialect(dialect: Dialect) -> &'static dyn SqlDialect {
    match dialect {
        Dialect::Postgres => &PostgreSqlDialect {},
        Dialect::Mysql => &MySqlDialect {},
        Dialect::Sqlite => &SQLiteDialect {},
    }
}
