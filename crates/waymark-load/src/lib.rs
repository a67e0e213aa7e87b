//! The workload a rehearsal runs (docs/design/0007-rehearse.md): scripts
//! in pgbench's format, read as they are, checked before anything runs
//! (an error names the file and line), run by clients at a rate or as
//! fast as they go, their latencies recorded per phase in HDR histograms
//! and their lock waits sampled with whom they waited behind.
//!
//! This crate knows nothing of migrations: a controller enters the
//! phases on the [`Clock`] as its migrations start and end.

mod clock;
mod conn;
mod error;
mod expr;
mod random;
mod record;
mod run;
mod sampler;
mod scratch;
mod script;
mod timer;

pub use clock::{Clock, Phase, PhaseKind};
pub use conn::{CLIENT_NAME, REPORTER_NAME};
pub use error::{LoadError, ScriptError};
pub use random::Random;
pub use record::{ErrorCount, PhaseStats, Recording, Stats, Window};
pub use run::{Load, LoadOptions};
pub use sampler::{Blocker, INTERVAL as SAMPLE_INTERVAL, Wait, Waits};
pub use scratch::{create_from_template, tables};
pub use script::{Script, Sql, Vars, split_spec};
