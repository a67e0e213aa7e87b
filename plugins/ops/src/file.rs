//! `ops.toml`: a migration written as operations.
//!
//! ```toml
//! [backfill]
//! batch_size = 1000           # keys per batch (default 1000)
//! rows_per_second = 0         # 0: as fast as the database goes
//! nice_ratio = 3.0            # pause this many times each batch's time
//! max_replica_lag_ms = 10000  # wait while a replica is further behind
//!
//! [[op]]
//! op = "rename_column"
//! table = "users"
//! column = "name"
//! to = "full_name"
//! ```
//!
//! Every error names the line of the `[[op]]` it is about, so a review
//! comment and the error point at the same place.

use serde::Deserialize;
use toml::Spanned;

use crate::ops::{self, Operation};

/// The file, read and checked.
pub(crate) struct OpsFile {
    pub(crate) ops: Vec<Located>,
    pub(crate) backfill: Backfill,
}

/// One operation and the line its `[[op]]` starts on.
pub(crate) struct Located {
    pub(crate) line: u32,
    pub(crate) op: Box<dyn Operation>,
}

/// How the backfill paces itself.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Backfill {
    #[serde(default = "default_batch_size")]
    pub(crate) batch_size: u32,
    #[serde(default)]
    pub(crate) rows_per_second: u32,
    /// After each batch, a pause of this many times the batch's own time
    /// (gh-ost's `--nice-ratio`): 3.0 leaves the database three quarters
    /// of its time for the application, whatever the hardware, where a
    /// fixed rate would be too slow on a large server and too fast on a
    /// small one. 3.0 by default: under pgbench on 2 cores, 1.0 and 2.0
    /// left the application's p99 45-107 % over its baseline through a
    /// 5M-row backfill, 3.0 12-30 % (median 15 % of 5 runs), still
    /// backfilling at 4x pgroll's published rate (docs/BENCHMARKS.md).
    #[serde(default = "default_nice_ratio")]
    pub(crate) nice_ratio: f64,
    #[serde(default = "default_max_lag")]
    pub(crate) max_replica_lag_ms: u64,
}

impl Default for Backfill {
    fn default() -> Self {
        Backfill {
            batch_size: default_batch_size(),
            rows_per_second: 0,
            nice_ratio: default_nice_ratio(),
            max_replica_lag_ms: default_max_lag(),
        }
    }
}

fn default_batch_size() -> u32 {
    1000
}

fn default_nice_ratio() -> f64 {
    3.0
}

fn default_max_lag() -> u64 {
    10_000
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    #[serde(default)]
    op: Vec<Spanned<RawOp>>,
    backfill: Option<Backfill>,
}

/// An `[[op]]` table as written: every field any operation takes, each
/// operation checking that it got what it needs and nothing else.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawOp {
    pub(crate) op: String,
    pub(crate) table: Option<String>,
    pub(crate) column: Option<String>,
    pub(crate) to: Option<String>,
    #[serde(rename = "type")]
    pub(crate) type_: Option<String>,
    pub(crate) default: Option<String>,
    pub(crate) not_null: Option<bool>,
    pub(crate) up: Option<String>,
    pub(crate) down: Option<String>,
    pub(crate) columns: Option<Vec<String>>,
    pub(crate) name: Option<String>,
    pub(crate) check: Option<String>,
    pub(crate) references: Option<String>,
    pub(crate) unique: Option<bool>,
}

/// Why the file cannot be read, and the line to look at (0: none).
#[derive(Debug)]
pub(crate) struct FileError {
    pub(crate) line: u32,
    pub(crate) message: String,
}

impl RawOp {
    /// The field `name` an operation requires.
    pub(crate) fn required<'a>(&self, name: &str, value: &'a Option<String>) -> Result<&'a str, String> {
        match value.as_deref().map(str::trim) {
            Some(v) if !v.is_empty() => Ok(v),
            _ => Err(format!("{} needs `{name}`", self.op)),
        }
    }

    /// Refuses fields the operation does not take, so a misplaced `up`
    /// is not silently ignored.
    pub(crate) fn only(&self, allowed: &[&str]) -> Result<(), String> {
        let given = [
            ("table", self.table.is_some()),
            ("column", self.column.is_some()),
            ("to", self.to.is_some()),
            ("type", self.type_.is_some()),
            ("default", self.default.is_some()),
            ("not_null", self.not_null.is_some()),
            ("up", self.up.is_some()),
            ("down", self.down.is_some()),
            ("columns", self.columns.is_some()),
            ("name", self.name.is_some()),
            ("check", self.check.is_some()),
            ("references", self.references.is_some()),
            ("unique", self.unique.is_some()),
        ];
        for (name, present) in given {
            if present && !allowed.contains(&name) {
                return Err(format!("{} does not take `{name}`", self.op));
            }
        }
        Ok(())
    }
}

/// Reads `text`, the content of `ops.toml`.
pub(crate) fn parse(text: &str) -> Result<OpsFile, FileError> {
    let raw: Raw = toml::from_str(text).map_err(|e| FileError {
        line: e.span().map_or(0, |s| line_of(text, s.start)),
        message: e.message().to_owned(),
    })?;
    if raw.op.is_empty() {
        return Err(FileError {
            line: 0,
            message: "no [[op]]: an ops.toml lists at least one operation".to_owned(),
        });
    }
    let backfill = raw.backfill.unwrap_or_default();
    if backfill.batch_size == 0 || backfill.batch_size > 100_000 {
        return Err(FileError {
            line: 0,
            message: format!(
                "[backfill] batch_size = {}: it must be between 1 and 100000",
                backfill.batch_size
            ),
        });
    }
    let mut ops = Vec::new();
    for spanned in raw.op {
        let line = line_of(text, spanned.span().start);
        let raw = spanned.into_inner();
        let op = ops::from_raw(&raw).map_err(|message| FileError { line, message })?;
        ops.push(Located { line, op });
    }
    Ok(OpsFile { ops, backfill })
}

/// The 1-based line of byte `offset`.
fn line_of(text: &str, offset: usize) -> u32 {
    let offset = offset.min(text.len());
    u32::try_from(text[..offset].matches('\n').count() + 1).unwrap_or(u32::MAX)
}
