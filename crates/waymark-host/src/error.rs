use std::time::Duration;

/// The host could not prepare or start a step: the component is not a valid
/// step, or the engine could not be configured. Not the step's own failure.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HostError {
    /// The component could not be compiled or does not implement the
    /// `step-plugin` world.
    #[error("step component {name}: {message}")]
    InvalidComponent {
        /// The component's name, for the message.
        name: String,
        /// What wasmtime said.
        message: String,
    },
    /// The WebAssembly engine could not be set up.
    #[error("could not set up the WebAssembly engine: {0}")]
    Engine(String),
}

/// Why a step failed. Each variant fails its migration, whose transaction
/// then rolls back; none of them affects the host or the next step.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StepFailure {
    /// A statement failed in the database.
    // The line is not part of the message: whoever reports the failure
    // names the file and line together (`up.sql:12: ...`).
    #[error("{}{message}", code.as_ref().map(|c| format!("[{c}] ")).unwrap_or_default())]
    Statement {
        /// 1-based line of the step's input.
        line: u32,
        /// SQLSTATE, MySQL error number or SQLite result code.
        code: Option<String>,
        /// The database's message.
        message: String,
    },
    /// The step could not understand its input.
    #[error("{message}")]
    InvalidInput {
        /// 1-based line of the input, 0 when none applies.
        line: u32,
        /// What is wrong.
        message: String,
    },
    /// The step reported some other failure.
    #[error("{0}")]
    Other(String),
    /// The step ran longer than its CPU time limit and was stopped.
    #[error("step exceeded its time limit of {} ms and was stopped", limit.as_millis())]
    Timeout {
        /// The limit in force.
        limit: Duration,
    },
    /// The step tried to use more memory than its limit and was stopped.
    #[error("step exceeded its memory limit of {} MiB and was stopped", limit_bytes / (1024 * 1024))]
    MemoryLimit {
        /// The limit in force, in bytes.
        limit_bytes: usize,
    },
    /// The step made more database calls than its limit and was stopped.
    #[error("step exceeded its limit of {limit} database calls and was stopped")]
    CallLimit {
        /// The limit in force.
        limit: u64,
    },
    /// The step trapped (a panic, `unreachable`, a stack overflow...).
    #[error("step trapped: {message}{}", if stderr.is_empty() { String::new() } else { format!("\nstep stderr: {}", stderr.trim_end()) })]
    Trap {
        /// wasmtime's description of the trap.
        message: String,
        /// What the step wrote to stderr before it trapped (a Rust panic
        /// message, for example), truncated.
        stderr: String,
    },
    /// The step overstepped the permissions its `step.toml` grants.
    #[error("{0}")]
    Denied(String),
    /// The step returned something the host cannot accept.
    #[error("{0}")]
    InvalidOutput(String),
    /// The step could not be instantiated.
    #[error("step could not start: {0}")]
    Instantiate(String),
    /// A step ran while the database was not available to it.
    #[error("{0}")]
    Host(String),
}
