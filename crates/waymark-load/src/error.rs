use std::fmt;

/// Why a workload script cannot be run, and where: the file and the
/// 1-based line (0 when the problem is the whole file).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScriptError {
    /// The script as the user named it.
    pub file: String,
    pub line: u32,
    pub message: String,
}

impl fmt::Display for ScriptError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            0 => write!(f, "{}: {}", self.file, self.message),
            line => write!(f, "{}:{line}: {}", self.file, self.message),
        }
    }
}

impl std::error::Error for ScriptError {}

/// Why the load could not run.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// A client could not connect: found before the baseline starts.
    #[error("the workload could not connect to {url}: {message}")]
    Connect { url: String, message: String },
    /// The scratch database cannot be used or filled.
    #[error("scratch database {url}: {message}")]
    Scratch { url: String, message: String },
    /// Nothing to run.
    #[error("{0}")]
    Usage(String),
}
