//! Where each target stands, read from its history: `fleet status`, and
//! the first look a rollout takes at a target before it takes its lock.

use std::time::Duration;

use futures_util::StreamExt;
use waymark_core::{Entry, Error, MigrationSet, State};

use crate::inventory::{Inventory, Target};
use crate::shard::Shard;
use crate::target::EngineRunner;

/// Where a target stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Standing {
    /// `verify`: every applied migration's file is as it was applied.
    Verified {
        /// How many applied migrations were compared.
        checked: usize,
    },
    /// Every migration applied.
    UpToDate {
        /// How many are applied.
        applied: usize,
    },
    /// `up` would apply these, in order.
    Pending(Vec<String>),
    /// Needs a person before `up` may run: failed, modified, missing or
    /// out-of-order migrations (the state, then the versions).
    NeedsRepair(&'static str, Vec<String>),
    /// The server did not answer within the connect timeout.
    Unreachable(String),
    /// Anything else that stopped the look (a refused login, a history
    /// written by a newer waymark).
    Error(String),
}

impl Standing {
    /// The word reports use.
    pub fn as_str(&self) -> &'static str {
        match self {
            Standing::Verified { .. } => "verified",
            Standing::UpToDate { .. } => "up-to-date",
            Standing::Pending(_) => "pending",
            Standing::NeedsRepair(state, _) => state,
            Standing::Unreachable(_) => "unreachable",
            Standing::Error(_) => "error",
        }
    }

    /// What the word leaves out, for a report's detail column.
    pub fn detail(&self) -> String {
        match self {
            Standing::Verified { checked } => format!("{checked} checked"),
            Standing::UpToDate { applied } => format!("{applied} applied"),
            Standing::Pending(labels) => format!("{} pending, next {}", labels.len(), labels[0]),
            Standing::NeedsRepair(_, versions) => versions.join(", "),
            Standing::Unreachable(message) | Standing::Error(message) => message.clone(),
        }
    }

    /// From `status`'s entries. The states that need a person are checked
    /// in the order `up` refuses them.
    pub(crate) fn of(entries: &[Entry]) -> Standing {
        let with = |state: State| -> Vec<String> {
            entries
                .iter()
                .filter(|e| e.state == state)
                .map(|e| e.version.to_string())
                .collect()
        };
        for state in [State::Failed, State::Modified, State::Missing, State::OutOfOrder] {
            let versions = with(state);
            if !versions.is_empty() {
                return Standing::NeedsRepair(state.as_str(), versions);
            }
        }
        let pending: Vec<String> = entries
            .iter()
            .filter(|e| e.state == State::Pending)
            .map(Entry::label)
            .collect();
        if pending.is_empty() {
            Standing::UpToDate {
                applied: entries.iter().filter(|e| e.state.is_applied()).count(),
            }
        } else {
            Standing::Pending(pending)
        }
    }

    pub(crate) fn of_error(error: &Error) -> Standing {
        match error {
            Error::Db(waymark_core::DbError::Connect { .. }) => Standing::Unreachable(error.to_string()),
            other => Standing::Error(other.to_string()),
        }
    }
}

/// What a look at each target asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Look {
    /// Where it stands (`fleet status`).
    Status,
    /// Whether its applied migrations' files are unchanged (`fleet
    /// verify`): `Verified`, or `NeedsRepair` with `modified` or
    /// `missing` and the versions.
    Verify,
}

/// One line of `fleet status`.
#[derive(Debug, Clone)]
pub struct TargetStatus {
    /// The target's name.
    pub name: String,
    /// The wave it belongs to.
    pub wave: String,
    /// Where it stands.
    pub standing: Standing,
    /// How long the look took.
    pub duration: Duration,
}

/// Looks at every target (of `shard`), `parallel` at a time, in file
/// order. Read-only: creates no history table.
pub async fn status(
    fleet: &Inventory,
    shard: Option<Shard>,
    set: &MigrationSet,
    runner: &EngineRunner<'_>,
    parallel: usize,
    look: Look,
) -> Vec<TargetStatus> {
    let mut targets: Vec<(&Target, &str)> = fleet.taken(shard).map(|(w, t)| (t, w.name.as_str())).collect();
    targets.sort_by_key(|(t, _)| t.line);
    futures_util::stream::iter(targets)
        .map(|(target, wave)| async move {
            let started = std::time::Instant::now();
            let standing = runner.standing(target, set, look).await;
            TargetStatus {
                name: target.name.clone(),
                wave: wave.to_owned(),
                standing,
                duration: started.elapsed(),
            }
        })
        .buffered(parallel.max(1))
        .collect()
        .await
}
