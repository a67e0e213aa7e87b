//! The JSON each command prints under `--json`: a typed shape per command,
//! serialized as it is and described by the JSON Schema generated from the
//! same type, so what pipelines parse changes only as a visible diff (in
//! `docs/json/` and in the snapshots of `tests/it/json_contract.rs`).
//!
//! Every reply is an object whose `ok` says whether the command did what
//! it was asked; a command that fails before it has anything to report
//! prints [`Failure`] instead.

mod backup;
mod cutover;
mod events;
mod fleet;
mod migrations;
mod plugin;
mod rehearse;

use schemars::JsonSchema;
#[cfg(test)]
use schemars::Schema;
use serde::Serialize;

pub(crate) use backup::{
    BackupCreated, BackupEstimate, BackupList, BackupRestored, BackupVerified, EstimatedTable, ListedBackup,
};
pub(crate) use cutover::{Compared, CutoverCompleted, CutoverPrepared, CutoverStatus, Switched};
pub(crate) use events::{EventKind, EventLine};
pub(crate) use fleet::{
    FleetGate, FleetPlan, FleetPlanGroup, FleetPlanned, FleetRollout, FleetStatus, FleetTarget, FleetTargetStatus,
    FleetWave,
};
pub(crate) use migrations::{
    Adopted, AppliedMigration, AppliedReply, Baselined, Created, DatabaseChanged, EntryJson, IgnoredFile, Linted,
    LintedMigration, PlanReply, Repaired, RepairedMigration, RuleJson, Rules, StatusReply, Verified,
};
pub(crate) use plugin::{Described, Inspected, PluginTested, TestStage};
pub(crate) use rehearse::{
    CheckJson, ErrorJson, LatencyJson, PhaseJson, Rehearsed, RehearsedMigration, RehearsedStatement, WaitJson,
    WindowJson,
};

/// A duration as the JSON replies give it: milliseconds, to the
/// microsecond.
pub(crate) fn ms(d: std::time::Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

/// A command's reply: `ok` and the command's own fields beside it.
#[derive(Debug, Serialize, JsonSchema)]
pub(crate) struct Reply<T> {
    /// Whether the command did what it was asked. A command that exits
    /// with a non-zero code says `false`.
    pub(crate) ok: bool,
    #[serde(flatten)]
    pub(crate) body: T,
}

/// What went wrong, with what to do about it.
#[derive(Debug, Serialize, JsonSchema)]
pub(crate) struct ErrorBody {
    /// The error and its causes, as stderr shows them.
    pub(crate) message: String,
    /// What to do about it, when waymark knows.
    pub(crate) hint: Option<String>,
}

/// The reply of any command that failed before it had anything to report
/// (`ok` is `false`).
#[derive(Debug, Serialize, JsonSchema)]
pub(crate) struct Failure {
    /// The failure.
    pub(crate) error: ErrorBody,
}

/// Each command's reply shape, by the name of its schema file: the
/// command's words joined by `-`.
#[cfg(test)]
fn schemas() -> Vec<(&'static str, &'static str, Schema)> {
    // The reply's description is its body's: what the command reports.
    fn of<T: JsonSchema>() -> Schema {
        let mut schema = schemars::schema_for!(Reply<T>);
        if let Some(about) = schemars::schema_for!(T).get("description") {
            schema.insert("description".to_owned(), about.clone());
        }
        schema
    }
    vec![
        ("status", "waymark status --json", of::<StatusReply<'static>>()),
        (
            "plan",
            "waymark plan --json (and the file plan --out writes)",
            of::<PlanReply<'static>>(),
        ),
        ("up", "waymark up --json", of::<AppliedReply<'static>>()),
        ("down", "waymark down --json", of::<AppliedReply<'static>>()),
        ("redo", "waymark redo --json", of::<AppliedReply<'static>>()),
        ("complete", "waymark complete --json", of::<AppliedReply<'static>>()),
        ("verify", "waymark verify --json", of::<Verified<'static>>()),
        ("lint", "waymark lint --json", of::<Linted<'static>>()),
        ("lint-rules", "waymark lint --rules --json", of::<Rules>()),
        ("new", "waymark new --json", of::<Created>()),
        ("baseline", "waymark baseline --json", of::<Baselined<'static>>()),
        ("repair", "waymark repair --json", of::<Repaired<'static>>()),
        (
            "database-create",
            "waymark database create --json",
            of::<DatabaseChanged<'static>>(),
        ),
        (
            "database-drop",
            "waymark database drop --json",
            of::<DatabaseChanged<'static>>(),
        ),
        ("plugin-new", "waymark plugin new --json", of::<Created>()),
        (
            "plugin-inspect",
            "waymark plugin inspect --json",
            of::<Inspected<'static>>(),
        ),
        (
            "plugin-test",
            "waymark plugin test --json",
            of::<PluginTested<'static>>(),
        ),
        (
            "backup-create",
            "waymark backup create --json",
            of::<BackupCreated<'static>>(),
        ),
        (
            "backup-estimate",
            "waymark backup create --estimate --json",
            of::<BackupEstimate<'static>>(),
        ),
        (
            "backup-verify",
            "waymark backup verify --json",
            of::<BackupVerified<'static>>(),
        ),
        ("backup-list", "waymark backup list --json", of::<BackupList<'static>>()),
        (
            "backup-restore",
            "waymark backup restore --json",
            of::<BackupRestored<'static>>(),
        ),
        ("fleet-status", "waymark fleet status --json", of::<FleetStatus>()),
        ("fleet-verify", "waymark fleet verify --json", of::<FleetStatus>()),
        ("fleet-plan", "waymark fleet plan --json", of::<FleetPlan>()),
        (
            "events",
            "each line of an --events file",
            schemars::schema_for!(EventLine<'static>),
        ),
        ("fleet-up", "waymark fleet up --json", of::<FleetRollout>()),
        ("fleet-down", "waymark fleet down --json", of::<FleetRollout>()),
        (
            "cutover-verify",
            "waymark cutover verify --json",
            of::<Compared<'static>>(),
        ),
        (
            "cutover-prepare",
            "waymark cutover prepare --json",
            of::<CutoverPrepared<'static>>(),
        ),
        (
            "cutover-status",
            "waymark cutover status --json",
            of::<CutoverStatus<'static>>(),
        ),
        (
            "cutover-switch",
            "waymark cutover switch --json",
            of::<Switched<'static>>(),
        ),
        (
            "cutover-rollback",
            "waymark cutover rollback --json",
            of::<Switched<'static>>(),
        ),
        (
            "cutover-complete",
            "waymark cutover complete --json",
            of::<CutoverCompleted>(),
        ),
        ("rehearse", "waymark rehearse --json", of::<Rehearsed>()),
        (
            "error",
            "what any command prints with --json when it fails before it has a report",
            of::<Failure>(),
        ),
    ]
}

/// The schema files' text, by file name, as `docs/json/` holds them.
#[cfg(test)]
fn schema_files() -> Vec<(String, String)> {
    let mut files = Vec::new();
    let mut index = String::from(
        "# What `--json` prints\n\nGenerated from the types the commands serialize (`crates/waymark/src/json/`) by \
         `WAYMARK_BLESS=1 cargo test -p waymark json::`; a test fails when these files and the types differ. Every \
         reply is one object on stdout whose `ok` is `false` exactly when the command exits with a non-zero code; a \
         command that fails before it has a report prints [`error`](error.schema.json) instead.\n\n| command | schema \
         |\n|---|---|\n",
    );
    for (name, title, mut schema) in schemas() {
        schema.insert(
            "$id".to_owned(),
            format!("https://waymark.invalid/json/{name}.schema.json").into(),
        );
        schema.insert("title".to_owned(), title.into());
        let mut value = schema.to_value();
        unwrap_descriptions(&mut value);
        let mut text = serde_json::to_string_pretty(&value).expect("a schema serializes");
        text.push('\n');
        files.push((format!("{name}.schema.json"), text));
        let command = if title.starts_with("waymark") {
            format!("`{title}`")
        } else {
            title.to_owned()
        };
        index.push_str(&format!("| {command} | [{name}.schema.json]({name}.schema.json) |\n"));
    }
    files.push(("README.md".to_owned(), index));
    files
}

/// Joins the lines of every description that a doc comment wrapped.
#[cfg(test)]
fn unwrap_descriptions(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, v) in map.iter_mut() {
                match v {
                    serde_json::Value::String(text) if key == "description" => {
                        *text = text
                            .split("\n\n")
                            .map(|para| para.split('\n').collect::<Vec<_>>().join(" "))
                            .collect::<Vec<_>>()
                            .join("\n\n");
                    }
                    _ => unwrap_descriptions(v),
                }
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(unwrap_descriptions),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The schemas under `docs/json/` are the ones the types make;
    /// `WAYMARK_BLESS=1` writes them.
    #[test]
    fn the_documented_schemas_are_the_types_the_commands_print() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/json");
        let bless = std::env::var_os("WAYMARK_BLESS").is_some();
        let mut stale = Vec::new();
        let files = schema_files();
        for (name, text) in &files {
            let path = dir.join(name);
            if std::fs::read_to_string(&path).ok().as_deref() == Some(text.as_str()) {
                continue;
            }
            if bless {
                std::fs::create_dir_all(&dir).unwrap();
                std::fs::write(&path, text).unwrap();
            } else {
                stale.push(name.clone());
            }
        }
        for entry in std::fs::read_dir(&dir).into_iter().flatten() {
            let name = entry.unwrap().file_name().to_string_lossy().into_owned();
            if !files.iter().any(|(n, _)| *n == name) {
                if bless {
                    std::fs::remove_file(dir.join(&name)).unwrap();
                } else {
                    stale.push(format!("{name} (no command prints it)"));
                }
            }
        }
        assert!(
            stale.is_empty(),
            "docs/json differs from the types for {}: run `WAYMARK_BLESS=1 cargo test -p waymark json::` and \
             review the diff",
            stale.join(", ")
        );
    }

    #[test]
    fn every_reply_says_ok_and_documents_its_fields() {
        for (name, _, schema) in schemas() {
            let value = schema.as_value();
            let required = value["required"]
                .as_array()
                .unwrap_or_else(|| panic!("{name}: no required fields"));
            // An events line is not a reply: it reports, it does not answer.
            if name != "events" {
                assert!(required.iter().any(|r| r == "ok"), "{name}: `ok` is not required");
            }
            // A field without a description is a field a pipeline author
            // has to guess at.
            let mut undocumented = Vec::new();
            undocumented_fields(value, name, &mut undocumented);
            assert!(
                undocumented.is_empty(),
                "fields without a description: {undocumented:?}"
            );
        }
    }

    fn undocumented_fields(value: &serde_json::Value, at: &str, out: &mut Vec<String>) {
        if let Some(props) = value.get("properties").and_then(|p| p.as_object()) {
            for (field, schema) in props {
                if schema.get("description").is_none() {
                    out.push(format!("{at}.{field}"));
                }
            }
        }
        for key in ["$defs"] {
            if let Some(defs) = value.get(key).and_then(|d| d.as_object()) {
                for (name, def) in defs {
                    undocumented_fields(def, &format!("{at}#{name}"), out);
                }
            }
        }
    }
}
