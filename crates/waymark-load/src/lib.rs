//! The workload a rehearsal runs (docs/design/0007-rehearse.md): scripts
//! in pgbench's format, read as they are, checked before anything runs
//! (an error names the file and line), and evaluated per transaction.
//!
//! This crate knows nothing of migrations or databases: it turns a
//! script into the SQL one client sends for one transaction.

mod error;
mod expr;
mod random;
mod script;

pub use error::ScriptError;
pub use random::Random;
pub use script::{Script, Sql, Vars, split_spec};
