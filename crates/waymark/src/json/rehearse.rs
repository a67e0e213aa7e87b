//! `waymark rehearse --json`.

use schemars::JsonSchema;
use serde::Serialize;

use super::ErrorBody;

/// What a rehearsal measured, phase by phase, and its verdict against the
/// thresholds (`ok` is the verdict, and `false` too when a migration
/// failed).
#[derive(Debug, Serialize, JsonSchema)]
pub(crate) struct Rehearsed {
    /// The scratch database, without its password.
    pub(crate) scratch: String,
    /// Workload connections.
    pub(crate) clients: u32,
    /// The scheduled rate in transactions per second, if one was set.
    pub(crate) rate: Option<f64>,
    /// Baseline, each migration (from its start to the next one's), after.
    pub(crate) phases: Vec<PhaseJson>,
    /// The reporter's transactions over the whole run, if it ran.
    pub(crate) reporter: Option<LatencyJson>,
    /// Why lock waits were not sampled, if they were not: no wait is
    /// then reported, which does not mean there was none.
    pub(crate) lock_waits_not_sampled: Option<String>,
    /// The migrations applied, in order.
    pub(crate) migrations: Vec<RehearsedMigration>,
    /// Each statement the migrations' steps ran, in order.
    pub(crate) statements: Vec<RehearsedStatement>,
    /// The migration that failed, if one did.
    pub(crate) failure: Option<ErrorBody>,
    /// Each threshold checked.
    pub(crate) verdict: Vec<CheckJson>,
    /// Latency over time, in slices of equal length.
    pub(crate) timeline: Vec<WindowJson>,
}

/// One phase.
#[derive(Debug, Serialize, JsonSchema)]
pub(crate) struct PhaseJson {
    /// `baseline`, the migration's label, or `after`.
    pub(crate) name: String,
    /// `baseline`, `migration` or `after`.
    pub(crate) kind: &'static str,
    /// When it began, in milliseconds from the start of the load.
    pub(crate) start_ms: f64,
    /// How long it lasted, in milliseconds.
    pub(crate) duration_ms: f64,
    /// Committed workload transactions scheduled in it.
    pub(crate) transactions: u64,
    /// Of those, per second.
    pub(crate) throughput: f64,
    #[serde(flatten)]
    pub(crate) latency: LatencyJson,
    /// Failed transactions by code (SQLSTATE on PostgreSQL, the error
    /// number on MySQL/MariaDB, `connection`, `script`, or `unfinished`:
    /// still running 5 s after the load stopped).
    pub(crate) errors: Vec<ErrorJson>,
    /// Lock waits of workload sessions that began in it.
    pub(crate) lock_waits: Vec<WaitJson>,
}

/// Latency percentiles, in milliseconds; absent with no transaction.
#[derive(Debug, Serialize, JsonSchema)]
pub(crate) struct LatencyJson {
    /// The median.
    pub(crate) p50_ms: Option<f64>,
    /// The 95th percentile.
    pub(crate) p95_ms: Option<f64>,
    /// The 99th percentile, which the verdict compares.
    pub(crate) p99_ms: Option<f64>,
    /// The longest.
    pub(crate) max_ms: Option<f64>,
}

/// One error code.
#[derive(Debug, Serialize, JsonSchema)]
pub(crate) struct ErrorJson {
    /// The SQLSTATE, MySQL's error number, `connection`, `script` or
    /// `unfinished`.
    pub(crate) code: String,
    /// Failed transactions with this code.
    pub(crate) count: u64,
    /// The first message seen with this code.
    pub(crate) message: String,
}

/// One lock wait of a workload session.
#[derive(Debug, Serialize, JsonSchema)]
pub(crate) struct WaitJson {
    /// `client` or `reporter`.
    pub(crate) waiter: &'static str,
    /// What it was running.
    pub(crate) query: String,
    /// When the wait began, in milliseconds from the start of the load.
    pub(crate) start_ms: f64,
    /// How long it was seen waiting, in milliseconds.
    pub(crate) duration_ms: f64,
    /// `migration` (waymark's executor), `workload` (another client), or
    /// `other`.
    pub(crate) blocker: &'static str,
    /// The blocker's statement: for a migration, the one it was running
    /// or ran last in the transaction that held the lock.
    pub(crate) statement: Option<String>,
    /// The blocker's application name, for `other`.
    pub(crate) application: Option<String>,
}

/// A migration the rehearsal applied.
#[derive(Debug, Serialize, JsonSchema)]
pub(crate) struct RehearsedMigration {
    /// Its version.
    pub(crate) version: String,
    /// Its name.
    pub(crate) name: String,
    /// How long it took, in milliseconds.
    pub(crate) duration_ms: f64,
}

/// One statement a migration's step ran.
#[derive(Debug, Serialize, JsonSchema)]
pub(crate) struct RehearsedStatement {
    /// The migration's label.
    pub(crate) migration: String,
    /// The statement, on one line (cut at 300 characters).
    pub(crate) sql: String,
    /// When it was sent, in milliseconds from the start of the load.
    pub(crate) start_ms: f64,
    /// How long it ran, its lock waits and retries included, in
    /// milliseconds.
    pub(crate) duration_ms: f64,
    /// Whether it ran in a transaction, which held its locks until the
    /// migration's commit; outside one they ended with the statement.
    pub(crate) in_transaction: bool,
    /// The relation locks it took that its transaction did not hold
    /// before: `ACCESS EXCLUSIVE on accounts (table)` (PostgreSQL, in a
    /// transaction; empty elsewhere).
    pub(crate) locks: Vec<String>,
    /// What the database said, if it failed.
    pub(crate) error: Option<String>,
    /// Workload lock waits seen behind it.
    pub(crate) waits: u64,
    /// The longest of them, in milliseconds.
    pub(crate) longest_wait_ms: Option<f64>,
}

/// One threshold.
#[derive(Debug, Serialize, JsonSchema)]
pub(crate) struct CheckJson {
    /// `p99`, `errors` or `lock_wait`.
    pub(crate) check: &'static str,
    /// The phase it is about, for `p99`.
    pub(crate) phase: Option<String>,
    /// What was measured, in words with its unit.
    pub(crate) measured: String,
    /// The threshold.
    pub(crate) limit: String,
    /// Whether the measure is within the threshold.
    pub(crate) passed: bool,
}

/// One slice of the timeline.
#[derive(Debug, Serialize, JsonSchema)]
pub(crate) struct WindowJson {
    /// When the slice begins, in milliseconds from the start of the load.
    pub(crate) start_ms: f64,
    /// Committed transactions that ended in it.
    pub(crate) transactions: u64,
    /// Failed transactions that ended in it.
    pub(crate) failed: u64,
    /// Their median latency.
    pub(crate) p50_ms: Option<f64>,
    /// Their 99th percentile.
    pub(crate) p99_ms: Option<f64>,
    /// The longest.
    pub(crate) max_ms: Option<f64>,
}
