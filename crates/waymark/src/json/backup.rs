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
    /// How many tables it holds.
    pub(crate) tables: usize,
    /// How many rows, over all tables.
    pub(crate) rows: u64,
    /// Its size on disk, compressed.
    pub(crate) bytes: u64,
    /// The last migration applied when it was taken.
    pub(crate) migration: Option<&'a str>,
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
    /// Its size on disk.
    pub(crate) bytes: u64,
    /// How many tables it holds; complete sets only.
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
    /// How many rows, each read back and proven against its chunk's digest.
    pub(crate) rows: u64,
    /// Wall time, in milliseconds.
    pub(crate) duration_ms: u128,
}
