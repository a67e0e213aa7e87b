//! Write waymark migration steps in Rust.
//!
//! A step is a type implementing [`Step`], exported with [`export_step!`]
//! and built for `wasm32-wasip2`:
//!
//! ```ignore
//! use waymark_plugin_sdk::{db, export_step, Description, Step, StepError, Value};
//!
//! struct Lowercase;
//!
//! impl Step for Lowercase {
//!     fn describe() -> Description {
//!         Description::new("lowercase", env!("CARGO_PKG_VERSION"), "Lower-cases users.email.")
//!     }
//!
//!     fn up(_input: &str) -> Result<(), StepError> {
//!         db::execute("UPDATE users SET email = lower(email)", &[])?;
//!         Ok(())
//!     }
//! }
//!
//! export_step!(Lowercase);
//! ```
//!
//! Everything a step can reach is here: [`db`] (bound to its migration's
//! transaction and checked against the permissions its `step.toml`
//! grants), [`env`] (its configuration, the dry-run flag, the checkpoint
//! to resume from, progress) and [`log`]. There is no filesystem, network
//! or environment: the host grants none.

#[doc(hidden)]
pub mod bindings {
    wit_bindgen::generate!({
        world: "step-plugin",
        path: "../../wit",
        pub_export_macro: true,
        export_macro_name: "__export_step_plugin",
        default_bindings_module: "waymark_plugin_sdk::bindings",
    });
}

pub use bindings::waymark::plugin::types::{
    Action, Column, DatabaseError, Description, Dialect, Direction, InputError, Rows, StatementError, StepError,
    Timestamp, Value,
};

/// The interface version this SDK builds against.
pub const INTERFACE_VERSION: &str = "waymark:plugin@0.1.0";

/// A migration step.
///
/// `up` and `down` get the step's input (the `up` and `down` strings of its
/// `step.toml`, empty when absent); configuration comes from
/// [`env::config`]. Return an error to fail the migration: the host rolls
/// back its transaction.
pub trait Step {
    /// What the step is: its name, version, a summary, and whether `down`
    /// undoes `up` (the host refuses to revert it otherwise).
    fn describe() -> Description;

    /// What `up` or `down` would do, for `waymark plan`; no database access.
    /// By default, the description's summary.
    fn plan(direction: Direction, input: &str) -> Result<Vec<Action>, StepError> {
        let _ = input;
        let d = Self::describe();
        let text = match direction {
            Direction::Up => d.summary,
            Direction::Down => format!("revert: {}", d.summary),
        };
        Ok(vec![Action { line: 0, text }])
    }

    /// Applies the step.
    fn up(input: &str) -> Result<(), StepError>;

    /// Reverts the step. By default it cannot be reverted.
    fn down(input: &str) -> Result<(), StepError> {
        let _ = input;
        Err(StepError::Other(format!(
            "{} cannot be reverted",
            Self::describe().name
        )))
    }
}

/// Exports a [`Step`] as the component's `step` interface.
#[macro_export]
macro_rules! export_step {
    ($step:ty) => {
        const _: () = {
            struct WaymarkStepExport;

            impl $crate::bindings::exports::waymark::plugin::step::Guest for WaymarkStepExport {
                fn describe() -> $crate::Description {
                    <$step as $crate::Step>::describe()
                }

                fn plan(
                    direction: $crate::Direction,
                    input: ::std::string::String,
                ) -> ::std::result::Result<::std::vec::Vec<$crate::Action>, $crate::StepError> {
                    <$step as $crate::Step>::plan(direction, &input)
                }

                fn up(input: ::std::string::String) -> ::std::result::Result<(), $crate::StepError> {
                    <$step as $crate::Step>::up(&input)
                }

                fn down(input: ::std::string::String) -> ::std::result::Result<(), $crate::StepError> {
                    <$step as $crate::Step>::down(&input)
                }
            }

    $crate::bindings::__export_step_plugin!(WaymarkStepExport with_types_in $crate::bindings);
        };
    };
}

impl Description {
    /// A reversible step's description.
    pub fn new(name: &str, version: &str, summary: &str) -> Self {
        Description {
            name: name.to_owned(),
            version: version.to_owned(),
            summary: summary.to_owned(),
            reversible: true,
        }
    }

    /// The same description, for a step that cannot be reverted.
    pub fn irreversible(self) -> Self {
        Description {
            reversible: false,
            ..self
        }
    }
}

impl From<DatabaseError> for StepError {
    /// A failed statement that does not come from a line of the input.
    fn from(error: DatabaseError) -> Self {
        StepError::Statement(StatementError { line: 0, error })
    }
}

impl StepError {
    /// A problem with the step's input or configuration.
    pub fn invalid(message: impl Into<String>) -> Self {
        StepError::InvalidInput(InputError {
            line: 0,
            message: message.into(),
        })
    }

    /// A problem with line `line` of the step's input.
    pub fn invalid_at(line: u32, message: impl Into<String>) -> Self {
        StepError::InvalidInput(InputError {
            line,
            message: message.into(),
        })
    }

    /// A statement that failed, made from line `line` of the input.
    pub fn at(line: u32, error: DatabaseError) -> Self {
        StepError::Statement(StatementError { line, error })
    }

    /// Any other failure.
    pub fn other(message: impl Into<String>) -> Self {
        StepError::Other(message.into())
    }

    /// The failure for a person, as a step passes it on inside its own
    /// message: the database's words with its code, or the step's.
    pub fn message(&self) -> String {
        match self {
            StepError::Statement(StatementError { error, .. }) => match &error.code {
                Some(code) => format!("{} ({code})", error.message),
                None => error.message.clone(),
            },
            StepError::InvalidInput(InputError { message, .. }) | StepError::Other(message) => message.clone(),
        }
    }
}

impl From<i64> for Value {
    fn from(n: i64) -> Self {
        Value::Integer(n)
    }
}

impl From<i32> for Value {
    fn from(n: i32) -> Self {
        Value::Integer(n.into())
    }
}

impl From<bool> for Value {
    fn from(b: bool) -> Self {
        Value::Boolean(b)
    }
}

impl From<f64> for Value {
    fn from(f: f64) -> Self {
        Value::Float(f)
    }
}

impl From<&str> for Value {
    fn from(s: &str) -> Self {
        Value::Text(s.to_owned())
    }
}

impl From<String> for Value {
    fn from(s: String) -> Self {
        Value::Text(s)
    }
}

impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(v: Option<T>) -> Self {
        v.map_or(Value::Null, Into::into)
    }
}

impl Value {
    /// The integer, if this is one.
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Value::Integer(n) => Some(*n),
            _ => None,
        }
    }

    /// The text (or JSON text), if this is text.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Text(s) | Value::Json(s) => Some(s),
            _ => None,
        }
    }

    /// Whether this is `NULL`.
    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }
}

impl Rows {
    /// The index of the column named `name`.
    pub fn column(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c.name == name)
    }

    /// The first row's first value, for queries such as `SELECT count(*)`.
    pub fn scalar(&self) -> Option<&Value> {
        self.rows.first().and_then(|row| row.first())
    }
}

/// The database, bound to the running migration's transaction.
pub mod db {
    use super::bindings::waymark::plugin::database;
    use super::{DatabaseError, Dialect, Rows, Value};

    /// The dialect of the database behind the step.
    pub fn dialect() -> Dialect {
        database::current_dialect()
    }

    /// Runs one statement with `params` bound to its placeholders (`$1` on
    /// PostgreSQL, `?` elsewhere; see [`placeholder`]) and returns the rows
    /// it affected.
    pub fn execute(sql: &str, params: &[Value]) -> Result<u64, DatabaseError> {
        database::execute(sql, params)
    }

    /// Runs one statement and returns its rows (at most the host's row
    /// limit, 10 000 by default: read large tables in batches by key).
    pub fn query(sql: &str, params: &[Value]) -> Result<Rows, DatabaseError> {
        database::query(sql, params)
    }

    /// Runs several statements in one round trip, all or none; only inside
    /// a transaction.
    pub fn execute_script(sql: &str) -> Result<u64, DatabaseError> {
        database::execute_script(sql)
    }

    /// Whether the step's statements run inside a transaction.
    pub fn in_transaction() -> bool {
        database::in_transaction()
    }

    /// A commit point, for steps declared `transaction = "batches"`:
    /// commits the work so far together with `checkpoint`, which a resumed
    /// run gets back from [`super::env::resume_from`].
    pub fn commit(checkpoint: &str) -> Result<(), DatabaseError> {
        database::commit(checkpoint)
    }

    /// The `n`th (1-based) placeholder in the dialect's syntax.
    pub fn placeholder(n: usize) -> String {
        match dialect() {
            Dialect::Postgres => format!("${n}"),
            Dialect::Mysql | Dialect::Sqlite => "?".to_owned(),
        }
    }

    /// `name` quoted as an identifier in the dialect's syntax.
    pub fn quote_ident(name: &str) -> String {
        match dialect() {
            Dialect::Mysql => format!("`{}`", name.replace('`', "``")),
            Dialect::Postgres | Dialect::Sqlite => format!("\"{}\"", name.replace('"', "\"\"")),
        }
    }
}

/// What the step runs with, besides its input.
pub mod env {
    use super::StepError;
    use super::bindings::waymark::plugin::environment;

    /// The step's `[config]` table, deserialised into `T`. A configuration
    /// that does not fit is an input error naming what is wrong.
    pub fn config<T: serde::de::DeserializeOwned>() -> Result<T, StepError> {
        serde_json::from_str(&environment::config()).map_err(|e| StepError::invalid(format!("step.toml [config]: {e}")))
    }

    /// The `[config]` table as JSON text.
    pub fn config_json() -> String {
        environment::config()
    }

    /// Whether the host will roll back whatever this run does.
    pub fn dry_run() -> bool {
        environment::dry_run()
    }

    /// The checkpoint of an interrupted run being resumed.
    pub fn resume_from() -> Option<String> {
        environment::resume_from()
    }

    /// Reports progress: `done` out of `total`, when known.
    pub fn progress(done: u64, total: Option<u64>) {
        environment::progress(done, total)
    }

    /// Waits `milliseconds` (at most 60 000) without using the step's CPU
    /// time, to throttle batched work; a dry run does not wait.
    pub fn pause(milliseconds: u32) {
        environment::pause(milliseconds)
    }
}

/// Logging into waymark's log.
pub mod log {
    use super::bindings::waymark::plugin::log::{self as wit, Level};

    /// Logs at debug level.
    pub fn debug(message: &str) {
        wit::log(Level::Debug, message)
    }

    /// Logs at info level.
    pub fn info(message: &str) {
        wit::log(Level::Info, message)
    }

    /// Logs at warn level.
    pub fn warn(message: &str) {
        wit::log(Level::Warn, message)
    }

    /// Logs at error level.
    pub fn error(message: &str) {
        wit::log(Level::Error, message)
    }
}
