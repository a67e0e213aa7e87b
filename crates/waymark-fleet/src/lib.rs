//! Rolling migrations out to a fleet of databases (design 0008).
//!
//! The fleet file names the targets and the waves that take them in turn;
//! [`roll_out`] runs the waves, a few targets at a time, halting when a
//! wave has more failures than it allows or its gate fails. There is no
//! state of its own: each target's history says where it stands, and its
//! migration lock keeps two runners from applying the same migration
//! twice, so a halted or killed rollout resumes by running again, and
//! several runners (`--shard`) share one without a coordinator.
//!
//! What one target's run does is a [`Runner`]: [`EngineRunner`] is the
//! real one, over `waymark-core`; the wave logic's tests use their own.

#![deny(missing_docs)]
#![forbid(unsafe_code)]

mod error;
mod gate;
mod inventory;
mod plan;
mod rollout;
mod shard;
mod status;
mod target;

pub use error::FleetError;
pub use gate::{Gate, GateReport};
pub use inventory::{Budget, Inventory, Target, Wave};
pub use plan::{PlanGroup, plan};
pub use rollout::{Halt, Outcome, Rollout, Runner, TargetReport, Update, WaveReport, WaveState, roll_out};
pub use shard::Shard;
pub use status::{Look, Standing, TargetStatus, status};
pub use target::{EngineRunner, OnEvent, Prepare};
