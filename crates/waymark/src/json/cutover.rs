//! The cutover commands' replies.

use schemars::JsonSchema;
use serde::Serialize;
use waymark_cutover::{Side, Status, SwitchReport, TableComparison};

/// `waymark cutover verify`.
#[derive(Debug, Serialize, JsonSchema)]
pub(crate) struct Compared<'a> {
    /// The source, without its password.
    pub(crate) source: &'a str,
    /// The target, without its password.
    pub(crate) target: &'a str,
    /// Each table both have, with the same columns.
    pub(crate) tables: &'a [TableComparison],
    /// Every difference found, each naming the table and key range.
    pub(crate) problems: &'a [String],
}

/// `waymark cutover prepare`.
#[derive(Debug, Serialize, JsonSchema)]
pub(crate) struct CutoverPrepared<'a> {
    /// The cutover's id; replication objects are named `waymark_<id>`.
    pub(crate) id: &'a str,
    /// Whether an earlier, interrupted prepare was carried on.
    pub(crate) resumed: bool,
    /// The backup set the target's schema (and, seeded, its rows) came
    /// from.
    pub(crate) backup: String,
    /// The source, without its password.
    pub(crate) source: String,
    /// The target, without its password.
    pub(crate) target: String,
    /// The source's WAL position replication started from, when the
    /// target was seeded from the backup's rows.
    pub(crate) seeded_at: Option<&'a str>,
}

/// `waymark cutover status`.
#[derive(Debug, Serialize, JsonSchema)]
pub(crate) struct CutoverStatus<'a> {
    /// Whether every guardrail of a switch passes now.
    pub(crate) ready: bool,
    /// Where the cutover stands.
    pub(crate) status: &'a Status,
}

/// `waymark cutover switch` and `rollback`.
#[derive(Debug, Serialize, JsonSchema)]
pub(crate) struct Switched<'a> {
    /// The move done.
    pub(crate) switch: &'a SwitchReport,
}

/// `waymark cutover complete`.
#[derive(Debug, Serialize, JsonSchema)]
pub(crate) struct CutoverCompleted {
    /// The server that stays live.
    pub(crate) live: Side,
}
