use std::path::PathBuf;

use waymark_db::DbError;
use waymark_host::{HostError, StepFailure};

use crate::engine::Applied;

/// A problem with the migrations folder. Nothing runs while one exists.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SourceError {
    /// A file or folder could not be read.
    #[error("{}: {message}", path.display())]
    Io {
        /// Which.
        path: PathBuf,
        /// What the OS said.
        message: String,
    },
    /// The folder of migrations is not there.
    #[error("{}: no such folder of migrations", dir.display())]
    NoFolder {
        /// The folder, as given.
        dir: PathBuf,
    },
    /// A name that is not `<version>_<name>`, or an unexpected file.
    #[error("{}: {reason}", path.display())]
    BadName {
        /// Which.
        path: PathBuf,
        /// Why it does not parse.
        reason: String,
    },
    /// Two migrations with one version.
    #[error("duplicate version {version}: {} and {}", first.display(), second.display())]
    Duplicate {
        /// The version.
        version: String,
        /// The first file with it.
        first: PathBuf,
        /// The second.
        second: PathBuf,
    },
    /// A migration folder (or flat `.down.sql`) without its up script.
    #[error("{}: no up.sql (a migration needs an up script; down is optional)", dir.display())]
    MissingUp {
        /// The folder or file.
        dir: PathBuf,
    },
    /// A `step.toml` that cannot be used.
    #[error("{}: {message}", path.display())]
    BadStep {
        /// Which.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A file that is not UTF-8.
    #[error("{}: not valid UTF-8 (first bad byte at offset {offset})", path.display())]
    NotUtf8 {
        /// Which.
        path: PathBuf,
        /// Byte offset of the first invalid sequence.
        offset: usize,
    },
    /// A file that holds a NUL byte: binary, or text that a server would
    /// cut short there (SQLite stops reading a statement at its first
    /// NUL) or refuse.
    #[error(
        "{}:{line}: a NUL byte (at offset {offset}); a text file never holds one: is it binary?",
        path.display()
    )]
    Binary {
        /// Which.
        path: PathBuf,
        /// The line of the first NUL, from 1.
        line: usize,
        /// Its byte offset.
        offset: usize,
    },
}

/// A migration that failed, and where.
#[derive(Debug, thiserror::Error)]
#[error(
    "migration {label} failed: {}{}{}",
    location(file, failure),
    failure,
    lock_wait.as_ref().map(|w| format!("; {w}")).unwrap_or_default()
)]
pub struct MigrationFailure {
    /// `<version>_<name>`.
    pub label: String,
    /// The script that ran.
    pub file: PathBuf,
    /// The step component that ran it (`sql` for SQL scripts).
    pub step: String,
    /// What went wrong.
    pub failure: StepFailure,
    /// Whether its effects were rolled back. `false` on MySQL/MariaDB (DDL
    /// commits as it runs) and for `-- no-transaction` scripts: the
    /// migration is then recorded as failed and needs `repair`.
    pub rolled_back: bool,
    /// Whether it is a batched step that stopped part-way: what it
    /// committed stays, with its checkpoint, and running the same command
    /// again goes on from there, with no repair.
    pub resumes: bool,
    /// When a statement gave up waiting for a lock: which, and the
    /// sessions that held it.
    pub lock_wait: Option<String>,
    /// Whether it failed reverting (its down script), not applying.
    pub down: bool,
}

impl MigrationFailure {
    /// What to do about a failure that was not rolled back: what stayed
    /// done, and the two ways out, each for the direction it failed in.
    fn repair_hint(&self) -> String {
        let version = self.label.split('_').next().unwrap_or_default();
        let file = self.file.display();
        let from = match &self.failure {
            StepFailure::Statement { line, .. } if *line > 0 => format!("line {line}"),
            _ => "the failing statement".to_owned(),
        };
        if self.down {
            format!(
                "{file} ran outside a transaction, so what it did before {from} stays done and {} is half reverted. \
                 Either finish the revert by hand ({file} from {from} on) and run `waymark repair --rolled-back \
                 --version {version}`, which records it as not applied; or undo what ran before {from} and run \
                 `waymark repair --applied --version {version}`, which records it as applied, for `waymark down` \
                 to try again",
                self.label
            )
        } else {
            format!(
                "{file} ran outside a transaction, so its statements before {from} stay applied. Either undo them \
                 by hand and run `waymark repair --rolled-back --version {version}`, then `waymark up` again; or \
                 apply the rest by hand ({file} from {from} on) and run `waymark repair --applied --version \
                 {version}`, which records it as applied"
            )
        }
    }
}

fn location(file: &std::path::Path, failure: &StepFailure) -> String {
    match failure {
        StepFailure::Statement { line, .. } | StepFailure::InvalidInput { line, .. } if *line > 0 => {
            format!("{}:{line}: ", file.display())
        }
        _ => format!("{}: ", file.display()),
    }
}

/// Why an engine operation stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The migrations folder has a problem.
    #[error(transparent)]
    Source(#[from] SourceError),
    /// The database could not be reached or a query of waymark's failed.
    #[error(transparent)]
    Db(#[from] DbError),
    /// The step host could not be prepared.
    #[error(transparent)]
    Host(#[from] HostError),
    /// A backup could not be taken, verified or restored.
    #[error(transparent)]
    Backup(#[from] waymark_backup::BackupError),
    /// A migration failed. `applied` lists what was done before it.
    #[error("{failure}")]
    Migration {
        /// The failure.
        failure: Box<MigrationFailure>,
        /// What was applied (or reverted) before it, and stays so.
        applied: Vec<Applied>,
    },
    /// The operation was refused before anything ran, for a reason the
    /// message gives (an irreversible migration, a failed one awaiting
    /// repair, out-of-order migrations, ...).
    #[error("{message}")]
    Refused {
        /// Why.
        message: String,
        /// What to do about it.
        hint: Option<String>,
    },
    /// Applied migrations differ from their files (modified or missing);
    /// the operation was refused before anything ran.
    #[error("{message}")]
    Drift {
        /// Which migrations differ.
        message: String,
        /// What to do about it.
        hint: Option<String>,
    },
    /// A saved plan no longer matches the database's history or the
    /// migration files it was made from; nothing ran.
    #[error("{message}")]
    StalePlan {
        /// What changed.
        message: String,
        /// What to do about it.
        hint: Option<String>,
    },
    /// The arguments make no sense together.
    #[error("{0}")]
    Usage(String),
    /// `up` refused: a statement would take a lock that hurts, on a table
    /// big enough for it to, and no `-- waymark:allow` says it is meant.
    #[error("{message}")]
    Lint {
        /// Each finding, with its file, line and fix.
        message: String,
    },
}

impl Error {
    /// What to do about it, when waymark knows.
    pub fn hint(&self) -> Option<String> {
        match self {
            Error::Refused { hint, .. } | Error::Drift { hint, .. } | Error::StalePlan { hint, .. } => hint.clone(),
            Error::Migration { failure, .. } if failure.resumes => Some(
                "the step's batches up to its last commit point stay applied, with its checkpoint; run the same \
                 command again to go on from there"
                    .to_owned(),
            ),
            Error::Migration { failure, .. } if !failure.rolled_back => Some(failure.repair_hint()),
            Error::Db(DbError::NewerSchema { .. }) => Some(
                "run the waymark release that wrote this history (or a newer one); nothing was read or changed"
                    .to_owned(),
            ),
            Error::Lint { .. } => Some(
                "nothing was applied; write it the safe way each fix says, or, if the lock is meant, say so beside \
                 the statement: `-- waymark:allow <rule> <reason>` (`waymark lint --rules` explains each rule)"
                    .to_owned(),
            ),
            Error::Source(SourceError::NoFolder { .. }) => Some(
                "create the first migration with `waymark new <name>`, or name the folder with --migrations \
                 (or WAYMARK_MIGRATIONS, or migrations = \"...\" in waymark.toml)"
                    .to_owned(),
            ),
            Error::Db(DbError::LockTimeout { .. }) => {
                Some("another runner is migrating this database; wait for it, or raise --lock-timeout".to_owned())
            }
            Error::Db(e) | Error::Backup(waymark_backup::BackupError::Db(e)) => e.hint(),
            _ => None,
        }
    }
}
