//! Migrations: discovery, planning and the runner. Backups and cutovers
//! are their own crates' workflows; the engine only takes a backup before
//! `up` when asked.
//!
//! Internal to waymark and exempt from semver. The engine knows migrations
//! and their states; it never special-cases SQL: a step is a component plus
//! its input, run by `waymark-host` against a transaction that
//! `waymark-db` opened. It knows neither sqlx nor wasmtime, nor any output
//! format.

#![deny(missing_docs)]
#![forbid(unsafe_code)]

mod backup;
mod baseline;
mod engine;
mod error;
mod execute;
#[doc(hidden)]
pub mod fuzzing;
mod plan;
mod plugin;
mod repair;
mod source;
mod sql;
mod status;
mod steps;
mod version;

pub use engine::{
    Applied, DownTarget, Engine, EngineOptions, Event, OnStatement, PreimageMode, PreimageNote, Progress, RepairAction,
    RepairOptions, SMALL_TABLE_ROWS, StatementRun, UpOptions, VerifyReport, lint,
};
pub use error::{Error, MigrationFailure, SourceError};
pub use execute::{
    Executor, LockPolicy, LockRetry, OnLockRetry, Retried, SeenLock, Trace, TraceStop, TracedMigration, TracedStatement,
};
pub use plan::{
    Basis, PLAN_FORMAT, Plan, PlannedMigration, SavedAction, SavedFile, SavedFinding, SavedMigration, SavedOptions,
    SavedPlan, SavedRow, Strategy, Way, read_saved,
};
pub use plugin::{PluginTest, PluginTestOptions, Sdk, Stage, inspect, scaffold_plugin, test_plugin};
pub use source::{
    Access, ComponentStep, EMPTY_DOWN, Ignored, Layout, Migration, MigrationSet, Script, Step, Transaction, checksum,
    discover, scaffold,
};
pub use sql::lint::{CLAIM_SETUP, Claim, Finding, RULES, Rule, Severity};
pub use status::{Entry, State};
pub use steps::Steps;
pub use version::Version;
pub use waymark_db::{
    ConnectOptions, DatabaseChange, DbError, Dialect, HistoryTable, OtherTool, Preimage, arm_crash_points, crash_point,
    create_database, drop_database, redact,
};
pub use waymark_host::{Action, Description, INTERFACE_VERSION, Inspection, Limits, StepFailure};
