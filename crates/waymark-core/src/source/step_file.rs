//! `step.toml`: a migration whose step is a component of the user's.

use std::path::PathBuf;

use super::{Access, ComponentStep, Script, Step, Transaction, checksum};
use crate::error::SourceError;

/// `step.toml`, as written.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct StepFile {
    component: PathBuf,
    sha256: String,
    up: Option<String>,
    down: Option<String>,
    #[serde(default)]
    transaction: Transaction,
    #[serde(default)]
    config: toml::Table,
    #[serde(default)]
    permissions: StepPermissions,
    #[serde(default)]
    limits: StepLimits,
    #[serde(default)]
    drops: StepDrops,
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct StepDrops {
    #[serde(default)]
    tables: Vec<String>,
    #[serde(default)]
    columns: Vec<String>,
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct StepPermissions {
    access: Option<String>,
    write: Option<Vec<String>>,
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct StepLimits {
    memory_mib: Option<usize>,
    timeout: Option<String>,
}

/// Reads `step.toml`: the scripts handed to the component, and the
/// component itself. The checksum covers the file, and so the pinned digest:
/// swapping the component shows as `modified`.
pub(super) fn read_step(path: PathBuf) -> Result<(String, Script, Option<Script>, Step), SourceError> {
    let text = super::read_text(&path)?;
    let bad = |message: String| SourceError::BadStep {
        path: path.clone(),
        message,
    };
    let parsed: StepFile = toml::from_str(&text).map_err(|e| bad(e.to_string().trim_end().to_owned()))?;
    let sha256 = parsed.sha256.to_ascii_lowercase();
    if sha256.len() != 64 || !sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(bad(format!(
            "sha256 = {:?} is not a SHA-256 in hex (64 characters)",
            parsed.sha256
        )));
    }
    let timeout = parsed
        .limits
        .timeout
        .as_deref()
        .map(|t| humantime::parse_duration(t).map_err(|e| bad(format!("limits.timeout = {t:?}: {e}"))))
        .transpose()?;
    let access = match (parsed.permissions.access.as_deref(), parsed.permissions.write) {
        (Some("read-only"), Some(_)) => {
            return Err(bad(
                "permissions.write lists tables to write, but permissions.access is \"read-only\"".to_owned(),
            ));
        }
        (_, Some(tables)) if tables.is_empty() => {
            return Err(bad(
                "permissions.write is empty; a step that writes nothing needs no list (it is read-only by default)"
                    .to_owned(),
            ));
        }
        (None | Some("read-write"), Some(tables)) => Access::Tables(tables.iter().map(|t| table_name(t)).collect()),
        (None | Some("read-only"), None) => Access::ReadOnly,
        (Some("read-write"), None) => Access::ReadWrite,
        (Some(other), _) => {
            return Err(bad(format!(
                "permissions.access = {other:?}: expected \"read-only\" or \"read-write\""
            )));
        }
    };
    let mut drops = Vec::new();
    for table in &parsed.drops.tables {
        drops.push(waymark_db::ObjectRef {
            table: name_parts(table).ok_or_else(|| bad(format!("drops.tables: {table:?} is not a table name")))?,
            column: None,
        });
    }
    for column in &parsed.drops.columns {
        let mut parts = name_parts(column).unwrap_or_default();
        let last = parts.pop().filter(|_| !parts.is_empty()).ok_or_else(|| {
            bad(format!(
                "drops.columns: {column:?} is not a column; name it as table.column"
            ))
        })?;
        drops.push(waymark_db::ObjectRef {
            table: parts,
            column: Some(last),
        });
    }
    let folder = path.parent().expect("step.toml lives in a migration folder");
    let step = Step::Component(ComponentStep {
        path: folder.join(&parsed.component),
        sha256,
        config: toml_to_json(toml::Value::Table(parsed.config)).to_string(),
        access,
        transaction: parsed.transaction,
        memory_mib: parsed.limits.memory_mib,
        timeout,
        drops,
    });
    let script = |text: String| Script {
        path: path.clone(),
        text,
        no_transaction: parsed.transaction == Transaction::None,
    };
    // Whether the step can be reverted is the component's to say
    // (`describe`); the host asks before it runs a `down`.
    let down = script(parsed.down.unwrap_or_default());
    Ok((checksum(&text), script(parsed.up.unwrap_or_default()), Some(down), step))
}

/// A table name as `permissions.write` gives it: quoted parts keep their
/// case, others are folded to lower case, as the statements' names are.
fn table_name(name: &str) -> String {
    name.split('.')
        .map(|part| match part.strip_prefix('"').and_then(|p| p.strip_suffix('"')) {
            Some(quoted) => quoted.to_owned(),
            None => part.trim_matches('`').to_lowercase(),
        })
        .collect::<Vec<_>>()
        .join(".")
}

/// A possibly qualified name as `[drops]` gives it, part by part: quoted
/// parts (`"Name"`) as written, others as SQL reads unquoted names.
fn name_parts(name: &str) -> Option<Vec<waymark_db::Ident>> {
    name.split('.')
        .map(|part| {
            let (value, quoted) = match part.strip_prefix('"').and_then(|p| p.strip_suffix('"')) {
                Some(q) => (q, true),
                None => (part.trim_matches('`'), false),
            };
            (!value.is_empty()).then(|| waymark_db::Ident {
                value: value.to_owned(),
                quoted,
            })
        })
        .collect()
}

/// `[config]` as the step reads it: JSON, with dates as their TOML text.
fn toml_to_json(value: toml::Value) -> serde_json::Value {
    match value {
        toml::Value::String(s) => s.into(),
        toml::Value::Integer(n) => n.into(),
        toml::Value::Float(f) => f.into(),
        toml::Value::Boolean(b) => b.into(),
        toml::Value::Datetime(d) => d.to_string().into(),
        toml::Value::Array(items) => items.into_iter().map(toml_to_json).collect(),
        toml::Value::Table(table) => table.into_iter().map(|(k, v)| (k, toml_to_json(v))).collect(),
    }
}
