//! Moving a database to another server with a way back: comparing the two
//! servers' contents (`compare`), table by table and range by range.
//!
//! Internal to waymark and exempt from semver. It reads and writes rows
//! only through `waymark-db`.

#![deny(missing_docs)]
#![forbid(unsafe_code)]

mod compare;
mod error;

pub use compare::{CompareOptions, CompareReport, TableComparison, compare};
pub use error::CutoverError;
