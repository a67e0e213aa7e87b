//! `manifest.json`: what a backup set holds, with a SHA-256 of every file
//! and, as its last member, a SHA-256 of itself (of every byte before that
//! member), as PostgreSQL's backup manifests carry.

use std::path::Path;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use waymark_db::{SequenceValue, ServerInfo, TableInfo};

use crate::error::BackupError;

/// The format this crate writes. Format 3 added [`Manifest::timing`];
/// format 4, [`Table::rows_xxh3`]; format 5, [`Manifest::pages`].
pub const FORMAT: &str = "waymark-backup/5";

/// Every format this crate reads: sets written by an older waymark still
/// verify and restore.
pub const READS: [&str; 4] = ["waymark-backup/2", "waymark-backup/3", "waymark-backup/4", FORMAT];

/// The name of the manifest in a backup set.
pub const MANIFEST: &str = "manifest.json";

const CHECKSUM_KEY: &str = ",\n  \"manifest_sha256\": \"";

/// A backup set's manifest.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// [`FORMAT`].
    pub format: String,
    /// The set's id: its folder's name.
    pub id: String,
    /// When it was taken, RFC 3339 in UTC.
    pub created_at: String,
    /// The database it was taken from.
    pub database: Source,
    /// The migrations applied when it was taken.
    pub history: Vec<AppliedMigration>,
    /// `zstd`.
    pub compression: String,
    /// How rows are written: `postgres-copy-text` or `sql-literals`.
    pub row_format: String,
    /// The sequences' positions.
    pub sequences: Vec<SequenceValue>,
    /// Every table, with its rows' digest.
    pub tables: Vec<Table>,
    /// Every file of the set but the manifest.
    pub files: Vec<File>,
    /// How long it took, against how big the catalog said the tables
    /// were: what the next estimate stands on. Absent from format 2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timing: Option<Timing>,
    /// A copy of a SQLite file's pages (`backup create --pages`), in place
    /// of tables' rows: such a set lists no tables. Absent before format 5.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pages: Option<Pages>,
}

/// A SQLite database file, copied page for page into one compressed file.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Pages {
    /// The compressed file, relative to the set's folder.
    pub file: String,
    /// The database's page size.
    pub page_size: u64,
    /// How many pages.
    pub pages: u64,
    /// Bytes of pages before compression: the database file's size.
    pub raw_bytes: u64,
    /// SHA-256 of those bytes: of the database file as restored.
    pub raw_sha256: String,
    /// How the pages were read: `file` (the database's own file, under a
    /// read transaction's lock) or `vacuum-into` (a WAL database, whose
    /// file alone is not a snapshot, copied by SQLite's `VACUUM INTO`).
    pub copied_by: String,
}
/// How long a backup took to take, and what it read.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Timing {
    /// Milliseconds from the start until the manifest was written.
    pub took_ms: u64,
    /// The tables' bytes on disk when it started, as the catalog had them
    /// (indexes aside: a backup reads rows, not indexes).
    pub data_bytes: u64,
}

/// Where a backup came from.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Source {
    /// The server.
    #[serde(flatten)]
    pub server: ServerInfo,
    /// The URL, without its password.
    pub url: String,
}

/// A migration applied when the backup was taken.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct AppliedMigration {
    /// Its version.
    pub version: String,
    /// Its name.
    pub name: String,
    /// Its checksum.
    pub checksum: String,
}

/// One table of a backup.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Table {
    /// Name, columns, key.
    #[serde(flatten)]
    pub info: TableInfo,
    /// How many rows it held.
    pub rows: u64,
    /// The table's content digest: [`table_digest`] of its chunks, each the
    /// SHA-256 of a run of its rows in canonical form, in primary-key
    /// order. A live table holding the same rows has the same digest when
    /// its rows, read in that order, are cut into runs of the chunks' row
    /// counts; and one that differs is found different run by run.
    pub sha256: String,
    /// The sum, modulo 2^128, of the XXH3-128 of each of its rows in
    /// canonical form, as 32 hex digits: a digest that does not depend on
    /// the rows' order, so a restore can check the table by reading it in
    /// any order, before its key's index exists. Absent before format 4.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rows_xxh3: Option<String>,
    /// Its chunks, in order.
    pub chunks: Vec<Chunk>,
}

/// A table's content digest from its chunks' digests: the SHA-256 of
/// their hex digests, one per line. Hashing the rows once, chunk by chunk,
/// lets chunks be written, restored and checked in parallel.
pub fn table_digest<'a>(chunk_digests: impl IntoIterator<Item = &'a str>) -> String {
    let mut hash = Sha256::new();
    for digest in chunk_digests {
        hash.update(digest.as_bytes());
        hash.update(b"\n");
    }
    hex::encode(hash.finalize())
}

/// A piece of a table's rows, compressed into one file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Chunk {
    /// The file, relative to the set's folder.
    pub file: String,
    /// Rows in it.
    pub rows: u64,
    /// Bytes of rows before compression.
    pub raw_bytes: u64,
    /// SHA-256 of those bytes.
    pub raw_sha256: String,
}

/// A file of the set.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct File {
    /// Relative to the set's folder, `/`-separated.
    pub path: String,
    /// Its size in bytes.
    pub size: u64,
    /// SHA-256 of its bytes.
    pub sha256: String,
}

/// A manifest's text from its `body` (its JSON without the closing brace):
/// the SHA-256 of every byte of the body appended as the last member.
pub fn signed(body: &str) -> String {
    let digest = hex::encode(Sha256::digest(body.as_bytes()));
    format!("{body}{CHECKSUM_KEY}{digest}\"\n}}\n")
}

impl Manifest {
    /// The manifest's text: pretty JSON whose last member is the SHA-256 of
    /// every byte before it.
    pub fn to_text(&self) -> String {
        let body = serde_json::to_string_pretty(self).expect("manifests serialise");
        signed(body.strip_suffix("\n}").expect("a JSON object ends in a brace"))
    }

    /// Reads and checks a manifest. A manifest whose own digest does not
    /// match is an error: nothing it says can be trusted.
    pub fn read(dir: &Path) -> Result<Manifest, BackupError> {
        let path = dir.join(MANIFEST);
        let text = std::fs::read_to_string(&path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => BackupError::Incomplete { dir: dir.to_owned() },
            _ => BackupError::io(&path, e),
        })?;
        Manifest::from_text(&text, &path)
    }

    /// Checks and parses a manifest's `text`, read from `path` (named in
    /// errors), as [`Manifest::read`] does.
    pub fn from_text(text: &str, path: &Path) -> Result<Manifest, BackupError> {
        let bad = |message: String| BackupError::Manifest {
            path: path.to_owned(),
            message,
        };
        let at = text
            .rfind(CHECKSUM_KEY)
            .ok_or_else(|| bad("it has no manifest_sha256 of itself".to_owned()))?;
        let (body, rest) = text.split_at(at);
        let recorded = rest[CHECKSUM_KEY.len()..].split('"').next().unwrap_or_default();
        let actual = hex::encode(Sha256::digest(body.as_bytes()));
        if recorded != actual {
            return Err(bad(format!(
                "its own SHA-256 is {actual}, but it records {recorded}: it was edited or damaged"
            )));
        }
        let manifest: Manifest =
            serde_json::from_str(&format!("{body}\n}}")).map_err(|e| bad(format!("it does not parse: {e}")))?;
        if !READS.contains(&manifest.format.as_str()) {
            return Err(bad(format!(
                "format {:?}: this waymark reads {} and {}",
                manifest.format,
                READS[..READS.len() - 1].join(", "),
                READS[READS.len() - 1]
            )));
        }
        Ok(manifest)
    }

    /// The set's total size, manifest aside.
    pub fn size(&self) -> u64 {
        self.files.iter().map(|f| f.size).sum()
    }

    /// Bytes before compression: of rows, over every table, or of pages.
    pub fn raw_bytes(&self) -> u64 {
        let rows: u64 = self.tables.iter().flat_map(|t| &t.chunks).map(|c| c.raw_bytes).sum();
        rows + self.pages.as_ref().map_or(0, |p| p.raw_bytes)
    }
}
