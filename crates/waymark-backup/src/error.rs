use std::path::{Path, PathBuf};

use waymark_db::DbError;

/// What went wrong with a backup set.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BackupError {
    /// Reading or writing a file failed.
    #[error("{}: {message}", path.display())]
    Io {
        /// Which file.
        path: PathBuf,
        /// What the OS said.
        message: String,
    },
    /// A folder without a manifest: a backup that did not finish.
    #[error("{}: incomplete: it has no manifest.json, so the backup that wrote it did not finish", dir.display())]
    Incomplete {
        /// The folder.
        dir: PathBuf,
    },
    /// A manifest that cannot be trusted.
    #[error("{}: {message}", path.display())]
    Manifest {
        /// The manifest.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// Verification found problems; nothing was restored.
    #[error("{} does not verify ({} problem(s)); nothing was restored:\n{}", dir.display(), problems.len(), problems.join("\n"))]
    DoesNotVerify {
        /// The set.
        dir: PathBuf,
        /// Each problem, naming its file.
        problems: Vec<String>,
    },
    /// The operation cannot go ahead.
    #[error("{message}")]
    Refused {
        /// Why.
        message: String,
    },
    /// The database failed.
    #[error(transparent)]
    Db(#[from] DbError),
    /// A tool waymark runs (pg_dump) failed.
    #[error("{tool}: {message}")]
    Tool {
        /// Which.
        tool: String,
        /// What it said.
        message: String,
    },
    /// A backup failed part-way; its folder was removed (unless `removed`
    /// says otherwise), so nothing half-written is taken for a backup.
    #[error("{cause}\nthe unfinished backup {} {}", dir.display(), if *removed { "was removed" } else { "could not be removed; it has no manifest, so it never verifies and lists as incomplete" })]
    Unfinished {
        /// Its folder.
        dir: PathBuf,
        /// Whether the folder is gone.
        removed: bool,
        /// What went wrong.
        cause: Box<BackupError>,
    },
    /// A restored table's rows differ from the backup's.
    #[error("restored, but {} table(s) differ from the backup: {}", distinct_tables(tables), tables.join("; "))]
    Mismatch {
        /// Each difference, led by its table's name and a colon; a table
        /// may have several (one per chunk).
        tables: Vec<String>,
    },
}

/// How many tables the differences name.
fn distinct_tables(differences: &[String]) -> usize {
    let mut names: Vec<&str> = differences.iter().map(|d| d.split(": ").next().unwrap_or(d)).collect();
    names.sort_unstable();
    names.dedup();
    names.len()
}

impl BackupError {
    pub(crate) fn io(path: &Path, e: std::io::Error) -> Self {
        BackupError::Io {
            path: path.to_owned(),
            message: e.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mismatch_counts_tables_not_chunks() {
        let e = BackupError::Mismatch {
            tables: vec![
                "public.a: the rows of data/0001-00001.zst: x".into(),
                "public.a: the rows of data/0001-00002.zst: y".into(),
                "public.b: all rows: z".into(),
            ],
        };
        assert!(
            e.to_string()
                .starts_with("restored, but 2 table(s) differ from the backup: public.a: "),
            "{e}"
        );
    }
}
