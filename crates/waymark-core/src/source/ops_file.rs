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
