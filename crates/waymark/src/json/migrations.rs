//! The migration commands' replies: `status`, `plan`, `up`, `down`,
//! `redo`, `verify`, `new`, `baseline` and `repair`.

use schemars::JsonSchema;
use serde::Serialize;
use waymark_core::{Applied, Entry, Preimage, SavedFinding, SavedPlan};

use super::ErrorBody;

/// One migration as `status` and `verify` describe it: its file, and its
/// history row when it has one.
#[derive(Debug, Serialize, JsonSchema)]
pub(crate) struct EntryJson<'a> {
    /// Its version, as written in its file name.
    pub(crate) version: &'a str,
    /// Its name.
    pub(crate) name: &'a str,
    /// `pending`, `applied`, `baseline`, `running`, `failed`, `modified`,
    /// `missing`, `out-of-order` or `expanded`.
    pub(crate) state: &'a str,
    /// Its up script (or `step.toml`), if a file has this version.
    pub(crate) file: Option<String>,
    /// The file's SHA-256.
    pub(crate) checksum: Option<&'a str>,
    /// The SHA-256 recorded when it was applied.
    pub(crate) applied_checksum: Option<&'a str>,
    /// When it was applied (RFC 3339).
    pub(crate) applied_at: Option<&'a str>,
    /// How long it took, in milliseconds.
    pub(crate) duration_ms: Option<i64>,
    /// The database user who applied it.
    pub(crate) applied_by: Option<&'a str>,
    /// The machine it was applied from.
    pub(crate) hostname: Option<&'a str>,
    /// Why it failed, for a failed one.
    pub(crate) error: Option<&'a str>,
    /// Whether it can be reverted; `null` for a plugin step, which says so
    /// only when loaded.
    pub(crate) reversible: Option<bool>,
    /// The verified backup taken before it ran, if any.
    pub(crate) backup_id: Option<&'a str>,
    /// Copies of dropped data kept for its `down`.
    pub(crate) preimages: Vec<&'a Preimage>,
    /// An expanded migration's version schema (PostgreSQL): the new
    /// application puts it first on its `search_path`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) version_schema: Option<&'a str>,
}

impl<'a> From<&'a Entry> for EntryJson<'a> {
    fn from(e: &'a Entry) -> Self {
        EntryJson {
            version: e.version.as_str(),
            name: &e.name,
            state: e.state.as_str(),
            file: e.migration.as_ref().map(|m| m.up.path.display().to_string()),
            checksum: e.migration.as_ref().map(|m| m.checksum.as_str()),
            applied_checksum: e.row.as_ref().map(|r| r.checksum.as_str()),
            applied_at: e.row.as_ref().map(|r| r.applied_at.as_str()),
            duration_ms: e.row.as_ref().map(|r| r.duration_ms),
            applied_by: e.row.as_ref().map(|r| r.applied_by.as_str()),
            hostname: e.row.as_ref().map(|r| r.hostname.as_str()),
            error: e.row.as_ref().and_then(|r| r.error.as_deref()),
            backup_id: e.row.as_ref().and_then(|r| r.backup_id.as_deref()),
            // A plugin step says whether it is reversible only when asked,
            // which `down` does; status does not load components.
            reversible: e.migration.as_ref().and_then(|m| match m.step {
                waymark_core::Step::Sql => Some(m.down.is_some()),
                waymark_core::Step::Component(_) => None,
                waymark_core::Step::Ops(_) => Some(true),
            }),
            preimages: Vec::new(),
            version_schema: None,
        }
    }
}

/// A file in the migrations folder that is not a migration.
#[derive(Debug, Serialize, JsonSchema)]
pub(crate) struct IgnoredFile {
    /// Its path.
    pub(crate) path: String,
    /// Why it is not a migration.
    pub(crate) reason: String,
    /// Whether it looks like a migration misnamed (also warned on stderr).
    pub(crate) suspicious: bool,
}

/// `waymark status`.
#[derive(Debug, Serialize, JsonSchema)]
pub(crate) struct StatusReply<'a> {
    /// The layout the folder is read as: `waymark` (which reads diesel's,
    /// sqlx's and golang-migrate's folders as they are), `diesel`, `sqlx`,
    /// `golang-migrate`, `dbmate`, `goose` or `flyway`.
    pub(crate) layout: &'a str,
    /// Every migration in version order: the files and the history rows.
    pub(crate) migrations: Vec<EntryJson<'a>>,
    /// Copies of dropped data whose migration was reverted without making
    /// its table or column again; each goes back when a `down` does.
    pub(crate) waiting: Vec<&'a Preimage>,
    /// Files in the folder that are not migrations.
    pub(crate) ignored: Vec<IgnoredFile>,
}

/// `waymark plan`: the plan as `plan --out` writes it and `up --plan`
/// reads it (its format's version is `waymark_plan`), with `ok`.
#[derive(Debug, Serialize, JsonSchema)]
pub(crate) struct PlanReply<'a> {
    #[serde(flatten)]
    pub(crate) plan: &'a SavedPlan,
    /// What is worth a word though nothing refuses the plan (a migration
    /// whose down script holds no statement), as stderr says it; absent
    /// when there is nothing to say. Not part of the saved plan.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) warnings: Option<&'a [String]>,
    /// With `--trace`: what each statement locked, rewrote and took, as
    /// the server saw it, in a transaction that was rolled back.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) trace: Option<&'a waymark_core::Trace>,
}

/// What happened to dropped data while a migration ran.
#[derive(Debug, Serialize, JsonSchema)]
pub(crate) struct KeptCopy<'a> {
    /// `table` or `table.column` (schema-qualified on PostgreSQL).
    pub(crate) object: &'a str,
    /// The table that holds (or held) the copy.
    pub(crate) kept_in: &'a str,
    /// The rows the copy holds.
    pub(crate) rows: u64,
    /// For `down`, the rows written back; `null` for `up`, which kept it.
    pub(crate) put_back: Option<u64>,
}

/// A migration applied or reverted.
#[derive(Debug, Serialize, JsonSchema)]
pub(crate) struct AppliedMigration<'a> {
    /// Its version.
    pub(crate) version: &'a str,
    /// Its name.
    pub(crate) name: &'a str,
    /// What was done, which says the direction: `applied`, `reverted`, or
    /// an ops.toml migration's `expanded`, `completed` or `aborted`. A
    /// `redo` lists its migration twice: `reverted`, then `applied`.
    pub(crate) done: &'a str,
    /// Wall time it took, in milliseconds.
    pub(crate) duration_ms: u128,
    /// Whether it ran in a transaction.
    pub(crate) transactional: bool,
    /// Dropped data it kept (`up`) or put back (`down`).
    pub(crate) preimages: Vec<KeptCopy<'a>>,
    /// What it could not keep or put back.
    pub(crate) warnings: &'a [String],
}

impl<'a> From<&'a Applied> for AppliedMigration<'a> {
    fn from(a: &'a Applied) -> Self {
        AppliedMigration {
            version: a.version.as_str(),
            name: &a.name,
            done: a.done,
            duration_ms: a.duration.as_millis(),
            transactional: a.transactional,
            preimages: a
                .preimages
                .iter()
                .map(|p| KeptCopy {
                    object: &p.object,
                    kept_in: &p.kept_in,
                    rows: p.rows,
                    put_back: p.put_back,
                })
                .collect(),
            warnings: &a.warnings,
        }
    }
}

/// `waymark up`, `down` and `redo`: what was done, and what stopped it.
#[derive(Debug, Serialize, JsonSchema)]
pub(crate) struct AppliedReply<'a> {
    /// `up`, `up --dry-run`, `down` or `redo`.
    pub(crate) command: &'a str,
    /// The migrations done, in order, before any failure.
    pub(crate) done: Vec<AppliedMigration<'a>>,
    /// The failure that stopped it; `null` when all went through.
    pub(crate) error: Option<ErrorBody>,
}

/// A migration `lint` read.
#[derive(Debug, Serialize, JsonSchema)]
pub(crate) struct LintedMigration<'a> {
    /// Its version.
    pub(crate) version: &'a str,
    /// Its name.
    pub(crate) name: &'a str,
    /// The script read.
    pub(crate) file: String,
    /// What the rules say of its statements, in order.
    pub(crate) findings: Vec<SavedFinding>,
}

/// `waymark lint`.
#[derive(Debug, Serialize, JsonSchema)]
pub(crate) struct Linted<'a> {
    /// Every migration read, in order, with its findings.
    pub(crate) migrations: Vec<LintedMigration<'a>>,
    /// Error-level findings not allowed: `up` refuses them (exit 6).
    pub(crate) errors: usize,
    /// Warnings not allowed.
    pub(crate) warnings: usize,
    /// Findings allowed in the script, with a reason.
    pub(crate) allowed: usize,
}

/// One rule of the catalogue.
#[derive(Debug, Serialize, JsonSchema)]
pub(crate) struct RuleJson {
    /// Its stable id.
    pub(crate) id: &'static str,
    /// The dialects it applies to.
    pub(crate) dialects: Vec<&'static str>,
    /// `warning` or `error`.
    pub(crate) severity: &'static str,
    /// The lock the operation takes.
    pub(crate) lock: &'static str,
    /// Why that hurts.
    pub(crate) why: &'static str,
    /// The safe way to write it.
    pub(crate) fix: &'static str,
}

/// `waymark lint --rules`.
#[derive(Debug, Serialize, JsonSchema)]
pub(crate) struct Rules {
    /// Every rule.
    pub(crate) rules: Vec<RuleJson>,
}

/// `waymark verify`.
#[derive(Debug, Serialize, JsonSchema)]
pub(crate) struct Verified<'a> {
    /// How many applied migrations were checked.
    pub(crate) checked: usize,
    /// The applied migrations whose file changed or is gone.
    pub(crate) differences: Vec<EntryJson<'a>>,
}

/// `waymark new` and `waymark plugin new`.
#[derive(Debug, Serialize, JsonSchema)]
pub(crate) struct Created {
    /// The files written, in order.
    pub(crate) created: Vec<String>,
}

/// `waymark database create` and `waymark database drop`.
#[derive(Debug, Serialize, JsonSchema)]
pub(crate) struct DatabaseChanged<'a> {
    /// The database's name (for SQLite, its file).
    pub(crate) database: &'a str,
    /// Whether it was created (dropped); `false` when it already existed
    /// (was already gone) and nothing changed.
    pub(crate) changed: bool,
}

/// A migration recorded by `baseline`.
#[derive(Debug, Serialize, JsonSchema)]
pub(crate) struct Adopted<'a> {
    /// Its version.
    pub(crate) version: &'a str,
    /// Its name.
    pub(crate) name: &'a str,
}

/// `waymark baseline`.
#[derive(Debug, Serialize, JsonSchema)]
pub(crate) struct Baselined<'a> {
    /// The migrations recorded as already applied, in order.
    pub(crate) baselined: Vec<Adopted<'a>>,
}

/// One change `repair` made.
#[derive(Debug, Serialize, JsonSchema)]
pub(crate) struct RepairedMigration<'a> {
    /// What it did: `rolled-back`, `accept-checksum` or `forget-missing`.
    pub(crate) action: &'a str,
    /// The migration, as `version name`.
    pub(crate) migration: &'a str,
    /// What was changed.
    pub(crate) detail: &'a str,
}

/// `waymark repair`.
#[derive(Debug, Serialize, JsonSchema)]
pub(crate) struct Repaired<'a> {
    /// Each change made to the history, in order; empty when nothing
    /// needed repair.
    pub(crate) repaired: Vec<RepairedMigration<'a>>,
}
