//! Database connections, the migration lock and the history table.
//!
//! Internal to waymark and exempt from semver. This is the only crate that
//! knows sqlx and the SQL of each dialect's catalog; it knows nothing of
//! migrations files or of WebAssembly. Every connection it opens runs the
//! configured session setup first, and no URL it prints carries a password.

#![deny(missing_docs)]
#![forbid(unsafe_code)]

mod admin;
mod conn;
mod crash;
mod dialect;
mod dump;
mod error;
mod foreign;
mod history;
mod lock;
mod pages;
mod pg_tx;
mod post_data;
mod preimage;
mod schema;
mod session;
mod sizes;
mod snapshot;
mod trace;
mod url;
mod value;
mod waits;

pub use admin::{DatabaseChange, create_database, drop_database};
pub use conn::{Conn, ConnectOptions, Database};
pub use crash::{arm_crash_points, crash_point};
pub use dialect::Dialect;
pub use dump::{HeapPages, KeyRange, SchemaItem, SequenceValue, ServerInfo, TableInfo, last_key, records, split_rows};
pub use error::DbError;
pub use foreign::{OtherHistory, OtherTool};
pub use history::{AuditEntry, HistoryRow, HistoryTable, NewHistoryRow, State};
pub use lock::Lock;
pub use pages::{FileCheck, PageSource, sqlite_file};
pub use post_data::PostData;
pub use preimage::{Ident, ObjectRef, Preimage};
pub use schema::SCHEMA_VERSION;
pub use session::{Checks, Restore};
pub use sizes::Footprint;
pub use snapshot::{Snapshot, TableSnapshot, differences};
pub use trace::{Traced, TracedLock, Tracer};
pub use url::redact;
pub use value::{Column, Rows, Value};
pub use waits::{Blocker, one_line};
