//! `waymark fleet status --json` and `waymark fleet up --json`.

use schemars::JsonSchema;
use serde::Serialize;

/// Where each target of the fleet stands (`ok` is `true` when every
/// target is up to date), or under `fleet verify` whether its applied
/// migrations' files are unchanged (`ok` when every target is verified).
#[derive(Debug, Serialize, JsonSchema)]
pub(crate) struct FleetStatus {
    /// The fleet file.
    pub(crate) fleet: String,
    /// Each target, in file order.
    pub(crate) targets: Vec<FleetTargetStatus>,
    /// How many targets are in each state, by state.
    pub(crate) totals: std::collections::BTreeMap<&'static str, usize>,
}

/// One target of `fleet status`.
#[derive(Debug, Serialize, JsonSchema)]
pub(crate) struct FleetTargetStatus {
    /// Its name in the fleet file.
    pub(crate) name: String,
    /// The wave it belongs to.
    pub(crate) wave: String,
    /// `up-to-date`, `pending`, `failed`, `modified`, `missing`,
    /// `out-of-order`, `unreachable` or `error`; under `fleet verify`,
    /// `verified`, `modified`, `missing`, `unreachable` or `error`.
    pub(crate) state: &'static str,
    /// Pending migrations (`pending`), the versions at fault (`failed`,
    /// `modified`, `missing`, `out-of-order`).
    pub(crate) migrations: Vec<String>,
    /// The count applied (`up-to-date`) or checked (`verified`), the
    /// cause (`unreachable`, `error`).
    pub(crate) detail: String,
    /// How long the look took.
    pub(crate) duration_ms: f64,
}

/// A rollout, wave by wave (`ok` is `false` when it halted).
#[derive(Debug, Serialize, JsonSchema)]
pub(crate) struct FleetRollout {
    /// The fleet file.
    pub(crate) fleet: String,
    /// The shard this runner took (`i/N`), if it took one.
    pub(crate) shard: Option<String>,
    /// Every wave, including those not started.
    pub(crate) waves: Vec<FleetWave>,
    /// Why it stopped early, if it did.
    pub(crate) halted: Option<String>,
    /// How many targets ended in each outcome, and `not-started`.
    pub(crate) totals: std::collections::BTreeMap<&'static str, usize>,
    /// How long it took.
    pub(crate) duration_ms: f64,
}

/// One wave of a rollout.
#[derive(Debug, Serialize, JsonSchema)]
pub(crate) struct FleetWave {
    /// Its name.
    pub(crate) name: String,
    /// `done`, `failed` (over its budget), `gate-failed` or `not-started`.
    pub(crate) state: &'static str,
    /// Failures it allows.
    pub(crate) max_failures: usize,
    /// Its targets that ran, in the order they finished.
    pub(crate) targets: Vec<FleetTarget>,
    /// Its targets that were not started.
    pub(crate) not_started: Vec<String>,
    /// Its gate, if it ran.
    pub(crate) gate: Option<FleetGate>,
}

/// One target's run.
#[derive(Debug, Serialize, JsonSchema)]
pub(crate) struct FleetTarget {
    /// Its name.
    pub(crate) name: String,
    /// `applied` (`reverted` under `fleet down`), `up-to-date`, `failed`,
    /// `skipped` (its history needs repair), `unreachable` or `locked`
    /// (another runner held it throughout).
    pub(crate) outcome: &'static str,
    /// The migrations applied, in order (under `fleet down`, reverted,
    /// newest first), before the failure when it failed.
    pub(crate) applied: Vec<String>,
    /// What went wrong, when something did.
    pub(crate) error: Option<String>,
    /// What to do about it, when waymark knows.
    pub(crate) hint: Option<String>,
    /// How long it took.
    pub(crate) duration_ms: f64,
}

/// A wave's gate.
#[derive(Debug, Serialize, JsonSchema)]
pub(crate) struct FleetGate {
    /// Whether the next wave could start.
    pub(crate) passed: bool,
    /// How long it paused.
    pub(crate) paused_ms: f64,
    /// The check's exit code, if it exited.
    pub(crate) code: Option<i32>,
    /// Why it failed.
    pub(crate) message: Option<String>,
}

/// The fleet's targets grouped by where they stand, with one plan per
/// pending group (`ok` is `false` when a group's plan could not be made,
/// for instance because `up` would refuse it).
#[derive(Debug, Serialize, JsonSchema)]
pub(crate) struct FleetPlan {
    /// The fleet file.
    pub(crate) fleet: String,
    /// Each group, in the order of its first target in the file.
    pub(crate) groups: Vec<FleetPlanGroup>,
}

/// Targets that stand alike.
#[derive(Debug, Serialize, JsonSchema)]
pub(crate) struct FleetPlanGroup {
    /// Their state, as `fleet status` says it.
    pub(crate) state: &'static str,
    /// The pending migrations (`pending`), or the versions at fault.
    pub(crate) migrations: Vec<String>,
    /// Their names.
    pub(crate) targets: Vec<String>,
    /// The target the plan was made on (a pending group's first).
    pub(crate) planned_on: Option<String>,
    /// What `up` would run there, in order (a pending group).
    pub(crate) plan: Vec<FleetPlanned>,
    /// Why the plan could not be made, or what the state's cause is.
    pub(crate) error: Option<String>,
}

/// One migration of a group's plan.
#[derive(Debug, Serialize, JsonSchema)]
pub(crate) struct FleetPlanned {
    /// `<version>_<name>`.
    pub(crate) migration: String,
    /// `atomic`, `recorded`, `batched` or `one-transaction`.
    pub(crate) strategy: &'static str,
    /// The lint findings on it, as `rule severity line: message`.
    pub(crate) findings: Vec<String>,
}
