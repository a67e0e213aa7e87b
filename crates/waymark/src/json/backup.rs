//! The backup commands' replies.

use schemars::JsonSchema;
use serde::Serialize;

/// `waymark backup create`.
#[derive(Debug, Serialize, JsonSchema)]
pub(crate) struct BackupCreated<'a> {
    /// The backup set's folder.
    pub(crate) dir: String,
    /// Its id, as `status` and `backup list` name it.
    pub(crate) id: &'a str,
    /// What it holds: `rows` (each table's rows) or `pages` (a SQLite
    /// file's pages, `--pages`).
    pub(crate) kind: &'static str,
    /// How many tables it holds (none listed in a set of pages).
    pub(crate) tables: usize,
    /// How many rows, over all tables.
    pub(crate) rows: u64,
    /// Its size on disk, compressed, every file of its folder counted (as
    /// `backup list` counts it).
    pub(crate) bytes: u64,
    /// The last migration applied when it was taken.
    pub(crate) migration: Option<&'a str>,
    /// Milliseconds it took to take, before its check.
    pub(crate) duration_ms: Option<u64>,
}

/// `waymark backup create --estimate`.
#[derive(Debug, Serialize, JsonSchema)]
pub(crate) struct BackupEstimate<'a> {
    /// The folder whose earlier sets set the pace.
    pub(crate) dir: String,
    /// Each table, with what the catalog says of it.
    pub(crate) tables: Vec<EstimatedTable<'a>>,
    /// Rows over every table (estimated by the catalog; exact on SQLite).
    pub(crate) rows: u64,
    /// Bytes of rows on disk, over every table.
    pub(crate) data_bytes: u64,
    /// Bytes of indexes on disk, which a backup does not copy.
    pub(crate) index_bytes: u64,
    /// Bytes of rows to read, before compression.
    pub(crate) raw_bytes: u64,
    /// Expected size of the set on disk.
    pub(crate) set_bytes: u64,
    /// Expected milliseconds for `backup create`, its check included.
    pub(crate) duration_ms: u64,
    /// `earlier` (paces learned from earlier sets) or `assumed` (the
    /// documented defaults).
    pub(crate) basis: &'static str,
    /// How many earlier sets the paces come from.
    pub(crate) sets: usize,
    /// The newest of them.
    pub(crate) newest: Option<&'a str>,
    /// Bytes of rows on disk read per second.
    pub(crate) data_bytes_per_sec: u64,
    /// Milliseconds that do not grow with the rows.
    pub(crate) fixed_ms: u64,
}

/// One table of a backup estimate.
#[derive(Debug, Serialize, JsonSchema)]
pub(crate) struct EstimatedTable<'a> {
    /// Its name.
    pub(crate) name: &'a str,
    /// Its rows, as the catalog estimates them.
    pub(crate) rows: u64,
    /// Bytes of its rows on disk.
    pub(crate) data_bytes: u64,
    /// Bytes of its indexes on disk.
    pub(crate) index_bytes: u64,
}

/// `waymark backup verify`.
#[derive(Debug, Serialize, JsonSchema)]
pub(crate) struct BackupVerified<'a> {
    /// The backup set's folder.
    pub(crate) dir: String,
    /// Its id.
    pub(crate) id: &'a str,
    /// How many files were checked against their digests.
    pub(crate) files: usize,
    /// Whether every table's rows were decoded and digested again
    /// (`--deep`).
    pub(crate) deep: bool,
    /// Each problem found, naming the file, chunk or row range.
    pub(crate) problems: &'a [String],
}

/// One backup set in a folder.
#[derive(Debug, Serialize, JsonSchema)]
pub(crate) struct ListedBackup<'a> {
    /// Its id (its folder's name).
    pub(crate) id: &'a str,
    /// Whether its manifest was written, which is the last step of a
    /// backup; an incomplete set cannot be restored.
    pub(crate) complete: bool,
    /// When it was taken (RFC 3339); complete sets only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) created_at: Option<&'a str>,
    /// Its size on disk, every file of its folder counted (as `backup
    /// create` counts it).
    pub(crate) bytes: u64,
    /// Milliseconds it took to take; complete sets written by a waymark
    /// that records it (backup format 3).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) duration_ms: Option<u64>,
    /// What it holds, `rows` or `pages`; complete sets only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) kind: Option<&'static str>,
    /// How many tables it holds; complete sets only (a set of pages lists
    /// none).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) tables: Option<usize>,
    /// The last migration applied when it was taken; complete sets only,
    /// and `null` when none was.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) migration: Option<Option<&'a str>>,
    /// What is wrong with it; incomplete sets only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) problem: Option<&'a str>,
}

/// `waymark backup list`.
#[derive(Debug, Serialize, JsonSchema)]
pub(crate) struct BackupList<'a> {
    /// The folder listed.
    pub(crate) dir: String,
    /// Its backup sets, oldest first.
    pub(crate) backups: Vec<ListedBackup<'a>>,
}

/// `waymark backup restore`.
#[derive(Debug, Serialize, JsonSchema)]
pub(crate) struct BackupRestored<'a> {
    /// The backup set restored.
    pub(crate) id: &'a str,
    /// The database restored into, without its password.
    pub(crate) to: &'a str,
    /// How many tables were restored.
    pub(crate) tables: usize,
    /// How many rows.
    pub(crate) rows: u64,
    /// How they were proven: `rows` (each read back and checked against
    /// the backup), `count` (each chunk's rows counted as the database
    /// took them; none read back), or for a copy of a SQLite file, `pages`
    /// (every byte against its SHA-256, then `PRAGMA integrity_check`) or
    /// `pages-quick` (`PRAGMA quick_check` instead, with `--verify count`).
    pub(crate) verify: &'static str,
    /// Wall time, in milliseconds.
    pub(crate) duration_ms: u128,
}
