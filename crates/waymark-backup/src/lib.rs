//! Checksummed backup sets: create, verify, restore, list.
//!
//! Internal to waymark and exempt from semver. A backup set is a folder: a
//! `schema.json`, each table's rows in zstd-compressed chunks under
//! `data/`, and a `manifest.json` written last, listing every file with its
//! size and SHA-256, each table's row count and content digest (of its rows
//! in primary-key order, comparable with a live database), the migrations
//! applied, and a SHA-256 of itself. This crate owns the format; the rows
//! themselves come from and go to `waymark-db`.

#![deny(missing_docs)]

mod chunks;
mod create;
mod error;
mod estimate;
mod list;
mod manifest;
mod pages;
mod restore;
mod rowsum;
mod stored;
mod verify;
mod writing;

pub use create::{CreateOptions, Progress, create, create_verified};
pub use error::BackupError;
pub use estimate::{Basis, Estimate, Rates, TIMED_MIN_BYTES, estimate};
pub use list::{Listed, list, size_on_disk};
pub use manifest::{
    AppliedMigration, Chunk, FORMAT, File, MANIFEST, Manifest, Pages, READS, Table, Timing, signed, table_digest,
};
pub use restore::{RestoreReport, Verify, restore, restore_schema, restore_to};
pub use verify::{Report, verify};
