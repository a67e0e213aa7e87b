//! `ops.toml`: a migration written as expand/contract operations, run by
//! the built-in ops component (`plugins/ops`), which reads the file whole
//! and reports its errors by line. The engine reads only the tables each
//! operation names, to refuse two migrations in flight on one table before
//! anything runs.

use std::path::PathBuf;

use super::{OpsPhase, OpsStep, Script, Step, checksum};
use crate::error::SourceError;

#[derive(serde::Deserialize)]
struct OpsFile {
    #[serde(default)]
    op: Vec<toml::Table>,
}

/// Reads `ops.toml`: its checksum, the script handed to the component in
/// both directions, and the step with the tables it touches.
pub(super) fn read_ops(path: PathBuf) -> Result<(String, Script, Step), SourceError> {
    let text = super::read_text(&path)?;
    let parsed: OpsFile = toml::from_str(&text).map_err(|e| SourceError::BadStep {
        path: path.clone(),
        message: e.to_string().trim_end().to_owned(),
    })?;
    let mut tables: Vec<String> = Vec::new();
    for op in &parsed.op {
        // `rename_table` touches both names: an in-flight migration on
        // either would see the other's view.
        for key in ["table", "to"] {
            let is_table = key == "table" || op.get("op").and_then(toml::Value::as_str) == Some("rename_table");
            if let (true, Some(name)) = (is_table, op.get(key).and_then(toml::Value::as_str))
                && !tables.iter().any(|t| t == name)
            {
                tables.push(name.to_owned());
            }
        }
    }
    Ok((
        checksum(&text),
        Script::new(path, text, false),
        Step::Ops(OpsStep {
            tables,
            phase: OpsPhase::Expand,
            in_flight: Vec::new(),
        }),
    ))
}

/// What `waymark new NAME --op OP` writes: the operation's fields, each
/// with a line on what it takes.
pub(super) fn template(op: &str) -> Option<&'static str> {
    Some(match op {
        "create_table" => {
            "op = \"create_table\"\ntable = \"accounts\"\n# Column definitions, as CREATE TABLE takes them.\ncolumns = [\"id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY\", \"name text NOT NULL\"]\n"
        }
        "add_column" => {
            "op = \"add_column\"\ntable = \"users\"\ncolumn = \"active\"\ntype = \"boolean\"\n# For rows the new version inserts without it.\ndefault = \"true\"\n# Set by `waymark complete`, after a validated check.\nnot_null = true\n# Optional: computed from the old shape's columns for the rows there\n# are (backfilled) and those the old version writes.\n# up = \"email IS NOT NULL\"\n"
        }
        "drop_column" => {
            "op = \"drop_column\"\ntable = \"users\"\ncolumn = \"legacy\"\n# Needed when the column is NOT NULL without a default: the value the\n# old version reads for rows the new one writes.\n# down = \"''\"\n"
        }
        "rename_column" => "op = \"rename_column\"\ntable = \"users\"\ncolumn = \"name\"\nto = \"full_name\"\n",
        "rename_table" => "op = \"rename_table\"\ntable = \"users\"\nto = \"accounts\"\n",
        "alter_type" => {
            "op = \"alter_type\"\ntable = \"users\"\ncolumn = \"amount\"\ntype = \"numeric(12,2)\"\n# The new value from the old shape's columns, and the old from the new.\nup = \"amount::numeric(12,2)\"\ndown = \"round(amount)::integer\"\n"
        }
        "set_not_null" => {
            "op = \"set_not_null\"\ntable = \"users\"\ncolumn = \"email\"\n# The value for NULLs the old version has written or still writes.\nup = \"coalesce(email, 'unknown')\"\n# What the old version reads, and what a `down` after `complete` puts\n# back: without it, the NULLs stay as `up` made them.\n# down = \"nullif(email, 'unknown')\"\n"
        }
        "drop_not_null" => {
            "op = \"drop_not_null\"\ntable = \"users\"\ncolumn = \"email\"\n# The value the old version reads for NULLs the new one writes.\ndown = \"coalesce(email, '')\"\n"
        }
        "add_constraint" => {
            "op = \"add_constraint\"\ntable = \"orders\"\nname = \"orders_amount_positive\"\n# Enforced from `waymark complete`: added NOT VALID, then validated.\ncheck = \"amount > 0\"\n# Or a foreign key:\n# columns = [\"customer_id\"]\n# references = \"customers (id)\"\n"
        }
        "create_index" => {
            "op = \"create_index\"\ntable = \"users\"\nname = \"users_email\"\n# Columns or expressions; built CONCURRENTLY after the backfill.\ncolumns = [\"lower(email)\"]\nunique = false\n"
        }
        "drop_index" => {
            "op = \"drop_index\"\ntable = \"users\"\n# Dropped CONCURRENTLY by `waymark complete`: the old version may use it until then.\nname = \"users_legacy\"\n"
        }
        "sql" => {
            "op = \"sql\"\nup = \"CREATE INDEX CONCURRENTLY ...\"\n# Run by an abort or a revert.\ndown = \"DROP INDEX ...\"\n"
        }
        _ => return None,
    })
}

/// Every operation `--op` takes, in the order the docs list them.
pub(super) const OPERATIONS: &[&str] = &[
    "create_table",
    "add_column",
    "drop_column",
    "rename_column",
    "rename_table",
    "alter_type",
    "set_not_null",
    "drop_not_null",
    "add_constraint",
    "create_index",
    "drop_index",
    "sql",
];
