//! Moving a PostgreSQL database to another server with a way back:
//! preparing the target and replicating into it (`prepare`), watching
//! replication and the guardrails (`status`), comparing the two servers'
//! contents range by range (`compare`), moving traffic through PgBouncer
//! or a route command (`route`) within a deadline and back again
//! (`switch`), and removing replication
//! at the end (`complete`). Each step is recorded in a state file
//! (`state`), so a runner killed at any point can be re-run.
//!
//! It owns the whole workflow, `prepare` included: the backup it starts
//! from comes from `waymark-backup`, and `waymark-core` (migrations) has no
//! part in it.
//!
//! Internal to waymark and exempt from semver. Rows are read only through
//! `waymark-db`; this crate talks to PostgreSQL's replication catalog and
//! to PgBouncer's console through sqlx directly, since that is
//! PostgreSQL's alone.

#![deny(missing_docs)]
#![forbid(unsafe_code)]

mod compare;
mod error;
mod online;
mod pg;
mod pgbouncer;
mod prepare;
mod route;
mod state;
mod status;
mod switch;

pub use compare::{CompareOptions, CompareReport, TableComparison, compare, compare_databases};
pub use error::CutoverError;
pub use online::compare_online;
pub use pg::OWN_SCHEMA;
pub use pgbouncer::PgBouncer;
pub use prepare::{PrepareOptions, Prepared, SyncProgress, prepare};
pub use state::{Move, Phase, RunnerLock, Seed, Side, State, Step, state_path};
pub use status::{Guardrail, Limits, Status, TableSync, status};
pub use switch::{Guard, SwitchOptions, SwitchReport, complete, guard, recover, switch};
