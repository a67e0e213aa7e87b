//! A migration's state, from its file and its history row.

use std::collections::BTreeMap;

use waymark_db::{HistoryRow, State as Recorded};

use crate::source::{Migration, MigrationSet};
use crate::version::Version;

/// What `status` reports for a migration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Applied, and its file is unchanged.
    Applied,
    /// Recorded by `baseline`, and its file is unchanged.
    Baseline,
    /// Not applied; `up` will apply it.
    Pending,
    /// Not applied, but older than the newest applied migration.
    OutOfOrder,
    /// Broke part-way outside a transaction, or its runner died doing so;
    /// needs `repair`.
    Failed,
    /// Applied, but its file has changed since.
    Modified,
    /// Applied, but its file is gone.
    Missing,
    /// Expanded (an `ops.toml` migration): the old and the new shape side
    /// by side, until `complete`.
    Expanded,
}

impl State {
    /// The name shown to users.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Applied => "applied",
            State::Baseline => "baseline",
            State::Pending => "pending",
            State::OutOfOrder => "out-of-order",
            State::Failed => "failed",
            State::Modified => "modified",
            State::Missing => "missing",
            State::Expanded => "expanded",
        }
    }

    /// Whether the database holds this migration's changes.
    pub fn is_applied(self) -> bool {
        matches!(
            self,
            State::Applied | State::Baseline | State::Modified | State::Missing | State::Expanded
        )
    }
}

/// One line of `status`.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Version.
    pub version: Version,
    /// Name, from the file or (for a missing one) the history.
    pub name: String,
    /// State.
    pub state: State,
    /// The file, if there is one.
    pub migration: Option<Migration>,
    /// The history row, if there is one.
    pub row: Option<HistoryRow>,
}

impl Entry {
    /// `<version>_<name>`.
    pub fn label(&self) -> String {
        format!("{}_{}", self.version, self.name)
    }
}

/// Joins files and history, in version order.
pub(crate) fn entries(set: &MigrationSet, history: Vec<HistoryRow>) -> Vec<Entry> {
    let mut rows: BTreeMap<Version, HistoryRow> = history
        .into_iter()
        .map(|r| (Version::from_history(&r.version), r))
        .collect();
    let newest_applied = rows
        .iter()
        .filter(|(_, r)| matches!(r.state, Recorded::Applied | Recorded::Baseline | Recorded::Expanded))
        .map(|(v, _)| v.clone())
        .max();
    let mut out = Vec::new();
    for m in &set.migrations {
        let row = rows.remove(&m.version);
        let state = match &row {
            Some(r) => match r.state {
                Recorded::Failed | Recorded::Running => State::Failed,
                _ if r.checksum != m.checksum => State::Modified,
                Recorded::Baseline => State::Baseline,
                Recorded::Applied => State::Applied,
                Recorded::Expanded => State::Expanded,
            },
            None if newest_applied.as_ref().is_some_and(|n| m.version < *n) => State::OutOfOrder,
            None => State::Pending,
        };
        out.push(Entry {
            version: m.version.clone(),
            name: m.name.clone(),
            state,
            migration: Some(m.clone()),
            row,
        });
    }
    for (version, row) in rows {
        let state = match row.state {
            Recorded::Failed | Recorded::Running => State::Failed,
            _ => State::Missing,
        };
        out.push(Entry {
            version,
            name: row.name.clone(),
            state,
            migration: None,
            row: Some(row),
        });
    }
    out.sort_by(|a, b| a.version.cmp(&b.version));
    out
}
