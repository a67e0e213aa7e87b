//! What can go wrong before a rollout starts.

use std::path::PathBuf;

/// A fleet that cannot be rolled out as given. Nothing has connected when
/// one of these is returned.
#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    /// The fleet file could not be read.
    #[error("{}: {source}", path.display())]
    Read {
        /// The fleet file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The fleet file says something waymark refuses, at this line.
    #[error("{}:{line}: {message}", path.display())]
    Invalid {
        /// The fleet file.
        path: PathBuf,
        /// The line, from 1.
        line: usize,
        /// What is wrong, naming the key or target.
        message: String,
    },
    /// A flag's value is not usable (`--shard 4/4`).
    #[error("{0}")]
    Usage(String),
}
