//! The plan: what a command will do, made once as data, then shown,
//! saved, checked and carried out exactly.
//!
//! The planner (`planner.rs`) is pure: it takes the migrations, the
//! history and the options and touches no database, so the same plan can
//! be shown by `plan`, written by `plan --out` (`saved.rs`) and run by an
//! executor against one database or many.

mod planner;
mod saved;

use std::path::PathBuf;

use waymark_db::{Dialect, HistoryRow};
use waymark_host::Action;

use crate::engine::PreimageMode;
use crate::source::Migration;

pub(crate) use planner::{Planner, Statements};
pub use saved::{
    PLAN_FORMAT, SavedAction, SavedFile, SavedFinding, SavedMigration, SavedOptions, SavedPlan, SavedRow, read_saved,
};

/// How a migration is carried out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    /// The step and its history row commit in one transaction, or neither
    /// does.
    Atomic,
    /// Outside one transaction (MySQL/MariaDB DDL, `-- no-transaction`): a
    /// `running` row is committed first and replaced by `applied` or
    /// `failed` after, so a failure or a dead runner is seen.
    Recorded,
    /// As `Recorded`, with the step's work committed at the commit points
    /// it asks for, each with a checkpoint it resumes from.
    Batched,
    /// Inside the plan's one transaction (`--single-transaction`,
    /// `--dry-run`), with every other migration of the plan.
    OneTransaction,
}

impl Strategy {
    /// The name in plans and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Strategy::Atomic => "atomic",
            Strategy::Recorded => "recorded",
            Strategy::Batched => "batched",
            Strategy::OneTransaction => "one-transaction",
        }
    }

    pub(crate) fn parse(name: &str) -> Option<Self> {
        [
            Strategy::Atomic,
            Strategy::Recorded,
            Strategy::Batched,
            Strategy::OneTransaction,
        ]
        .into_iter()
        .find(|s| s.as_str() == name)
    }

    /// Whether the migration's work rolls back as a whole on failure.
    pub fn transactional(self) -> bool {
        matches!(self, Strategy::Atomic | Strategy::OneTransaction)
    }
}

/// Which way a plan (or one migration of it) goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Way {
    /// Applies.
    Up,
    /// Reverts.
    Down,
    /// Reverts the newest migration and applies it again.
    Redo,
    /// Contracts expanded migrations (`waymark complete`).
    Complete,
}

impl Way {
    /// The command's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Way::Up => "up",
            Way::Down => "down",
            Way::Redo => "redo",
            Way::Complete => "complete",
        }
    }
}

/// One migration of a plan.
#[derive(Debug, Clone)]
pub struct PlannedMigration {
    /// The migration.
    pub migration: Migration,
    /// Whether it is reverted rather than applied.
    pub down: bool,
    /// The script that will run (`up.sql`, `down.sql` or `step.toml`).
    pub file: PathBuf,
    /// SHA-256 of that script's text, so a saved plan of a `down` knows
    /// its down script too (a migration's checksum covers its up script).
    pub script_checksum: String,
    /// How it is carried out.
    pub strategy: Strategy,
    /// The step component that runs it.
    pub step: String,
    /// What the step says it will do, statement by statement with its
    /// line; empty unless the plan was made to be shown or saved.
    pub actions: Vec<Action>,
    /// The tables and columns whose data it keeps a copy of (`up`: what a
    /// component step declares, and what the SQL step's statements drop,
    /// known when the statements are), or the kept copies it puts back
    /// (`down`).
    pub keeps: Vec<String>,
    /// Whether it resumes an interrupted batched run from its checkpoint.
    pub resumes: bool,
    /// What the lint rules say of its statements (known when they are).
    pub findings: Vec<crate::sql::lint::Finding>,
}

impl PlannedMigration {
    /// Whether it runs in a transaction.
    pub fn transactional(&self) -> bool {
        self.strategy.transactional()
    }
}

/// What a command will do, in order.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The command.
    pub way: Way,
    /// The dialect it was made for: strategies depend on it.
    pub dialect: Dialect,
    /// In order.
    pub migrations: Vec<PlannedMigration>,
    /// Whether the batch runs in one transaction.
    pub single_transaction: bool,
    /// Whether that transaction is rolled back at the end.
    pub dry_run: bool,
    /// What happens to dropped data.
    pub preimages: PreimageMode,
    /// What the plan was made from, for a saved plan to check against
    /// before it runs.
    pub basis: Basis,
}

impl Plan {
    /// What is worth a word before the plan runs, though nothing refuses
    /// it: a migration about to be applied whose down script holds no
    /// statement (`down` will refuse to revert it), and one about to be
    /// reverted by a script that says it runs nothing on purpose.
    pub fn warnings(&self) -> Vec<String> {
        let mut said = Vec::new();
        for p in &self.migrations {
            let m = &p.migration;
            if p.down {
                if let Some(down) = m.down_runs_nothing() {
                    said.push(format!(
                        "{}: its down script {} holds no statement ({}): reverting it runs nothing, and what its \
                         up did stays",
                        m.label(),
                        down.path.display(),
                        crate::source::EMPTY_DOWN
                    ));
                }
            } else if let Some(path) = m.empty_down() {
                said.push(format!(
                    "{}: its down script {} holds no statement, so `waymark down` will refuse to revert it until \
                     it holds one or a line `{}`",
                    m.label(),
                    path.display(),
                    crate::source::EMPTY_DOWN
                ));
            }
        }
        said
    }
}

/// The state a plan was made from: the history and every migration file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Basis {
    /// Each history row: version, state and checksum.
    pub history: Vec<(String, String, String)>,
    /// Each migration: version, up script and checksum.
    pub files: Vec<(String, PathBuf, String)>,
}

impl Basis {
    pub(crate) fn of(set: &crate::source::MigrationSet, history: &[HistoryRow]) -> Self {
        let mut rows: Vec<(String, String, String)> = history
            .iter()
            .map(|r| (r.version.clone(), r.state.as_str().to_owned(), r.checksum.clone()))
            .collect();
        rows.sort();
        Basis {
            history: rows,
            files: set
                .migrations
                .iter()
                .map(|m| (m.version.to_string(), m.up.path.clone(), m.checksum.clone()))
                .collect(),
        }
    }
}
