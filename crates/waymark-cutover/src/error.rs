use std::path::{Path, PathBuf};

use waymark_db::DbError;

/// What went wrong comparing or switching servers.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CutoverError {
    /// A database failed.
    #[error(transparent)]
    Db(#[from] DbError),
    /// The backup a cutover starts from could not be taken, verified or
    /// restored.
    #[error(transparent)]
    Backup(#[from] waymark_backup::BackupError),
    /// The arguments make no sense together, or do not fit the recorded
    /// cutover.
    #[error("{0}")]
    Usage(String),
    /// A statement on one of the servers failed.
    #[error("{what} on {server}: {source}")]
    Server {
        /// What was being done.
        what: String,
        /// The server's URL, without its password.
        server: String,
        /// Why it failed.
        source: sqlx::Error,
    },
    /// Conditions for the command are not met; nothing was changed.
    #[error("{what}:\n  - {}\nnothing was changed", problems.join("\n  - "))]
    Refused {
        /// The command refused.
        what: String,
        /// Every problem found.
        problems: Vec<String>,
    },
    /// A step of a move found something wrong.
    #[error("{0}")]
    Step(String),
    /// PgBouncer failed or could not be reached.
    #[error("PgBouncer: {0}")]
    PgBouncer(String),
    /// There is no cutover state where one was expected.
    #[error("no cutover is under way: {} does not exist (run `waymark cutover prepare` first)", path.display())]
    NoCutover {
        /// The state file.
        path: PathBuf,
    },
    /// The state file is damaged or does not fit the command.
    #[error("cutover state {}: {message}", path.display())]
    State {
        /// The state file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// Another runner works on this cutover.
    #[error("another waymark runner is working on this cutover (it holds {}); wait for it to finish", lock.display())]
    Busy {
        /// The lock file.
        lock: PathBuf,
    },
    /// A file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A step of the move failed or ran out of time before traffic moved;
    /// the move was undone and traffic resumed on the server it was on.
    #[error("{cause}; the switch was undone: traffic resumed on the {live} after a write pause of {pause_ms} ms")]
    Undone {
        /// What failed.
        cause: String,
        /// `source` or `target`: where traffic is.
        live: &'static str,
        /// How long writes were held.
        pause_ms: u64,
    },
    /// The move failed and so did its undo: an operator must look.
    #[error("{cause}; undoing it failed too: {undo}. Run the command again to finish the undo")]
    UndoFailed {
        /// What failed.
        cause: String,
        /// Why the undo failed.
        undo: String,
    },
}

impl CutoverError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        CutoverError::Io {
            path: path.to_owned(),
            source,
        }
    }

    pub(crate) fn server(what: impl Into<String>, url: &str, source: sqlx::Error) -> Self {
        CutoverError::Server {
            what: what.into(),
            server: waymark_db::redact(url),
            source,
        }
    }
}
