//! `--events FILE`: one JSON object per line, for every command, as things
//! happen. Each line has `ts` and `event`; the rest depends on the event.

use schemars::JsonSchema;
use serde::Serialize;

/// One line of an `--events` file.
#[derive(Debug, Serialize, JsonSchema)]
pub(crate) struct EventLine<'a> {
    /// When it happened, RFC 3339 in UTC with milliseconds.
    pub(crate) ts: String,
    /// The database: the fleet file's name for it under `fleet`, its URL
    /// without the password elsewhere. Absent for a wave's or the
    /// rollout's events.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) target: Option<&'a str>,
    /// What happened.
    #[serde(flatten)]
    pub(crate) what: EventKind<'a>,
}

/// What happened.
#[derive(Debug, Serialize, JsonSchema)]
#[serde(tag = "event", rename_all = "kebab-case")]
pub(crate) enum EventKind<'a> {
    /// A migration starts.
    MigrationStarted {
        /// `<version>_<name>`.
        migration: &'a str,
        /// `up` or `down`.
        direction: &'static str,
    },
    /// A migration ended well: `done` is `applied`, `reverted`, or an
    /// ops.toml migration's `expanded`, `completed` or `aborted`.
    MigrationFinished {
        /// `<version>_<name>`.
        migration: &'a str,
        /// What was done.
        done: &'static str,
        /// How long it took.
        duration_ms: f64,
        /// What it could not keep or put back.
        warnings: &'a [String],
    },
    /// Another runner applied (or reverted) the migration first.
    MigrationSkipped {
        /// `<version>_<name>`.
        migration: &'a str,
    },
    /// A migration failed; what was applied before it stays applied.
    MigrationFailed {
        /// `<version>_<name>`.
        migration: &'a str,
        /// The error.
        error: String,
    },
    /// A statement a step ran, once it ended.
    Statement {
        /// `<version>_<name>`.
        migration: &'a str,
        /// Its text.
        sql: &'a str,
        /// How long it ran, retries included.
        duration_ms: f64,
        /// What the database said, if it failed.
        error: Option<&'a str>,
        /// The relation locks it took (PostgreSQL, in a transaction), as
        /// `MODE on relation`.
        locks: Vec<String>,
    },
    /// A lock wait timed out and the statement or migration is tried
    /// again.
    LockRetry {
        /// `<version>_<name>`.
        migration: &'a str,
        /// The attempt that timed out, from 1.
        attempt: u32,
        /// The attempts allowed.
        budget: u32,
        /// What timed out and who held the lock.
        wait: &'a str,
        /// The longest pause before the next attempt.
        pause_ms: f64,
    },
    /// A backup was taken and verified before anything was applied.
    BackedUp {
        /// Its id.
        id: &'a str,
        /// Its size.
        bytes: u64,
    },
    /// A wave of a rollout starts.
    WaveStarted {
        /// The wave.
        wave: &'a str,
        /// Its targets (in this shard).
        targets: usize,
    },
    /// A target of a rollout starts.
    TargetStarted {
        /// The wave.
        wave: &'a str,
    },
    /// A target of a rollout ended.
    TargetFinished {
        /// The wave.
        wave: &'a str,
        /// `applied`, `reverted` (`fleet down`), `up-to-date`, `failed`,
        /// `skipped`, `unreachable` or `locked`.
        outcome: &'static str,
        /// Whether it is tried again at the end of the wave (it was locked).
        again: bool,
        /// What went wrong, if something did.
        error: Option<&'a str>,
        /// How long it took.
        duration_ms: f64,
    },
    /// A wave's gate starts.
    GateStarted {
        /// The wave.
        wave: &'a str,
    },
    /// A rollout ended.
    RolloutFinished {
        /// Why it halted, if it did.
        halted: Option<String>,
        /// How many targets ended in each outcome, and `not-started`.
        totals: &'a std::collections::BTreeMap<&'static str, usize>,
    },
}
