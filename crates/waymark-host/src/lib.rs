//! Runs migration steps as sandboxed WebAssembly components.
//!
//! Internal to waymark and exempt from semver. This is the only crate that
//! knows wasmtime: it compiles components (once, through an on-disk cache of
//! compiled artifacts), pre-instantiates them, and runs each step in a fresh
//! store with a memory cap and a CPU deadline. Database access reaches the
//! step through [`StepEnv`], which the caller implements over its own
//! transaction; this crate never opens a connection.

#![deny(missing_docs)]

mod cache;
mod error;
mod host;
mod sandbox;

pub use cache::digest;
pub use error::{HostError, StepFailure};
pub use host::{
    Action, Call, CallError, Column, DatabaseError, Description, Dialect, Direction, Inspection, Limits, Rows,
    StepComponent, StepEnv, StepFuture, StepHost, Timestamp, Value,
};

/// The built-in SQL step, built from `plugins/sql`.
pub const SQL_STEP_WASM: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/sql.wasm"));

/// The built-in expand/contract step, built from `plugins/ops`: runs the
/// operations of an `ops.toml`.
pub const OPS_STEP_WASM: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/ops.wasm"));

/// The interface version of `wit/plugin.wit` this host implements.
pub const INTERFACE_VERSION: &str = "waymark:plugin@0.1.0";

#[doc(hidden)]
/// Path of the misbehaving test step, for the sandbox tests of this
/// workspace. Not part of the shipped binary.
pub const TEST_STEPS_WASM_PATH: &str = concat!(env!("OUT_DIR"), "/test-steps.wasm");

#[doc(hidden)]
/// Path of the example `backfill` plugin, built from `plugins/backfill`.
pub const BACKFILL_WASM_PATH: &str = concat!(env!("OUT_DIR"), "/backfill.wasm");

#[doc(hidden)]
/// Path of the example `seed` plugin, built from `plugins/seed`.
pub const SEED_WASM_PATH: &str = concat!(env!("OUT_DIR"), "/seed.wasm");
