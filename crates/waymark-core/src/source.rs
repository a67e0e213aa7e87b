//! Reading migrations from disk.
//!
//! Two layouts, detected per entry so a team can move to waymark without
//! renaming anything:
//! - native: a folder `<version>_<name>/` holding `up.sql` and, optionally,
//!   `down.sql`;
//! - flat (sqlx, golang-migrate): `<version>_<name>.up.sql` with an optional
//!   `<version>_<name>.down.sql`, or a lone `<version>_<name>.sql`.
//!
//! A migration folder may hold a `step.toml` instead of `up.sql`: the
//! migration's step is then a component of the user's, pinned by SHA-256.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::error::SourceError;
use crate::version::Version;

/// The first-line marker that runs a script outside a transaction
/// (sqlx's convention), for statements such as `CREATE INDEX CONCURRENTLY`.
const NO_TRANSACTION: &str = "-- no-transaction";

/// One script of a migration.
#[derive(Debug, Clone)]
pub struct Script {
    /// Where it was read from.
    pub path: PathBuf,
    /// Its text.
    pub text: String,
    /// Whether its first line asks to run outside a transaction.
    pub no_transaction: bool,
}

impl Script {
    fn read(path: PathBuf) -> Result<Self, SourceError> {
        let bytes = std::fs::read(&path).map_err(|e| SourceError::Io {
            path: path.clone(),
            message: e.to_string(),
        })?;
        let text = String::from_utf8(bytes).map_err(|e| SourceError::NotUtf8 {
            path: path.clone(),
            offset: e.utf8_error().valid_up_to(),
        })?;
        let no_transaction = text
            .trim_start_matches('\u{feff}')
            .lines()
            .next()
            .is_some_and(|first| first.trim_end() == NO_TRANSACTION);
        Ok(Script {
            path,
            text,
            no_transaction,
        })
    }
}

/// Which component runs a migration's step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// The built-in SQL step; the scripts are SQL files.
    Sql,
    /// A component named by `step.toml`.
    Component(ComponentStep),
}

/// A component step, as `step.toml` declares it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComponentStep {
    /// The component file, resolved against the migration folder.
    pub path: PathBuf,
    /// The SHA-256 the file must have (hex, lower case).
    pub sha256: String,
    /// The `[config]` table, as JSON.
    pub config: String,
    /// What the step may do to the database.
    pub access: Access,
    /// How the step's work is committed.
    pub transaction: Transaction,
    /// Memory the step asks for, in MiB; the operator's setting caps it.
    pub memory_mib: Option<usize>,
    /// CPU time the step asks for; the operator's setting caps it.
    pub timeout: Option<std::time::Duration>,
    /// Tables and columns the step drops in ways its statements do not
    /// show (`[drops]`): `up` keeps a copy of each before the step runs.
    pub drops: Vec<waymark_db::ObjectRef>,
}

/// What a component step may do to the database (`[permissions]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Access {
    /// Only read: the default, so a step can do no more than its
    /// `step.toml` says.
    ReadOnly,
    /// Anything the connection's role may do.
    ReadWrite,
    /// Read anything; insert, update, delete and truncate only these tables
    /// (lower case unless they were quoted in `step.toml`).
    Tables(Vec<String>),
}

/// How a component step's work is committed (`transaction`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Transaction {
    /// In one transaction with the history row, where the dialect allows.
    #[default]
    Migration,
    /// In batches: the step asks for a commit point after each, and a run
    /// that stops part-way resumes from the last one.
    Batches,
    /// Outside any transaction: each statement commits as it runs.
    None,
}

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

/// A migration as found on disk.
#[derive(Debug, Clone)]
pub struct Migration {
    /// Its version.
    pub version: Version,
    /// Its name (the part after the first `_`).
    pub name: String,
    /// What applies it.
    pub up: Script,
    /// What reverts it; `None` makes it irreversible.
    pub down: Option<Script>,
    /// SHA-256 (hex) of `up.sql` (or of `step.toml`, which pins its
    /// component's digest), line endings normalised.
    pub checksum: String,
    /// What runs the scripts.
    pub step: Step,
}

impl Migration {
    /// `<version>_<name>`, as users see it.
    pub fn label(&self) -> String {
        format!("{}_{}", self.version, self.name)
    }
}

/// Every migration in a folder, in version order.
#[derive(Debug, Clone)]
pub struct MigrationSet {
    /// The folder.
    pub dir: PathBuf,
    /// The migrations, sorted by version.
    pub migrations: Vec<Migration>,
    /// Whether any migration uses the flat layout (so `new` follows it).
    pub flat: bool,
}

/// SHA-256 of `text` with a byte-order mark dropped and every line ending
/// made `\n`, so a checkout on another OS does not look modified.
pub fn checksum(text: &str) -> String {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut hasher = Sha256::new();
    let mut rest = text;
    while let Some(i) = rest.find('\r') {
        hasher.update(&rest.as_bytes()[..i]);
        hasher.update(b"\n");
        rest = &rest[i + 1..];
        if rest.starts_with('\n') {
            rest = &rest[1..];
        }
    }
    hasher.update(rest.as_bytes());
    hex::encode(hasher.finalize())
}

/// Splits `<version>_<name>` and checks both parts.
fn parse_stem(stem: &str, path: &Path) -> Result<(Version, String), SourceError> {
    let bad = |reason: String| SourceError::BadName {
        path: path.to_owned(),
        reason,
    };
    let (version, name) = stem
        .split_once('_')
        .ok_or_else(|| bad("expected <version>_<name>, for example 20240101120000_create_users".to_owned()))?;
    let version = Version::parse(version).map_err(bad)?;
    if version.is_zero() {
        return Err(bad(
            "version 0 is reserved: it means \"before every migration\" in `down --to 0`".to_owned(),
        ));
    }
    if name.trim().is_empty() {
        return Err(bad("the name after the version is empty".to_owned()));
    }
    Ok((version, name.to_owned()))
}

#[derive(Default)]
struct Parts {
    up: Option<PathBuf>,
    step: Option<PathBuf>,
    down: Option<PathBuf>,
    name: String,
    /// The entry that introduced this version, for duplicate messages.
    origin: PathBuf,
    flat: bool,
}

/// Reads every migration in `dir`. Fails on the first problem, naming the
/// file, so that nothing runs from a folder that is not fully understood.
pub fn discover(dir: &Path) -> Result<MigrationSet, SourceError> {
    let paths = read_sorted(dir)?;
    let mut found: BTreeMap<Version, Parts> = BTreeMap::new();
    for path in paths {
        let Some(file_name) = path.file_name().and_then(|n| n.to_str()).map(str::to_owned) else {
            return Err(SourceError::BadName {
                path,
                reason: "the name is not valid UTF-8".to_owned(),
            });
        };
        if file_name.starts_with('.') {
            continue;
        }
        if path.is_dir() {
            let (version, name) = parse_stem(&file_name, &path)?;
            let mut parts = Parts {
                name,
                origin: path.clone(),
                ..Parts::default()
            };
            for inner in read_sorted(&path)? {
                let inner_name = inner
                    .file_name()
                    .and_then(|n| n.to_str())
                    .unwrap_or_default()
                    .to_owned();
                match inner_name.as_str() {
                    "up.sql" => parts.up = Some(inner),
                    "down.sql" => parts.down = Some(inner),
                    "step.toml" => parts.step = Some(inner),
                    n if n.ends_with(".sql") => {
                        return Err(SourceError::BadName {
                            path: inner,
                            reason: "a migration folder holds up.sql and down.sql; this file would be ignored"
                                .to_owned(),
                        });
                    }
                    _ => {}
                }
            }
            match (&parts.up, &parts.step, &parts.down) {
                (None, None, _) => return Err(SourceError::MissingUp { dir: path }),
                (Some(_), Some(step), _) | (None, Some(step), Some(_)) => {
                    return Err(SourceError::BadStep {
                        path: step.clone(),
                        message: "a migration is either SQL (up.sql, down.sql) or a component step (step.toml), \
                                  not both"
                            .to_owned(),
                    });
                }
                _ => {}
            }
            insert(&mut found, version, parts)?;
            continue;
        }
        let Some(stem) = file_name.strip_suffix(".sql") else {
            // READMEs, .gitkeep and the like live beside migrations.
            continue;
        };
        let (stem, kind) = if let Some(s) = stem.strip_suffix(".up") {
            (s, "up")
        } else if let Some(s) = stem.strip_suffix(".down") {
            (s, "down")
        } else {
            (stem, "up")
        };
        let (version, name) = parse_stem(stem, &path)?;
        match found.get_mut(&version) {
            Some(parts) if parts.flat && parts.name == name => {
                let slot = if kind == "up" { &mut parts.up } else { &mut parts.down };
                if slot.is_some() {
                    return Err(SourceError::Duplicate {
                        version: version.to_string(),
                        first: slot.clone().unwrap(),
                        second: path,
                    });
                }
                *slot = Some(path);
            }
            _ => {
                let mut parts = Parts {
                    name,
                    origin: path.clone(),
                    flat: true,
                    ..Parts::default()
                };
                if kind == "up" {
                    parts.up = Some(path);
                } else {
                    parts.down = Some(path);
                }
                insert(&mut found, version, parts)?;
            }
        }
    }

    let integer = found.keys().filter(|v| v.is_integer()).count();
    if integer != 0 && integer != found.len() {
        let odd = found
            .iter()
            .find(|(v, _)| v.is_integer() != (integer * 2 > found.len()))
            .map(|(_, p)| p.origin.clone())
            .unwrap();
        return Err(SourceError::BadName {
            path: odd,
            reason:
                "mixes integer versions and dashed (timestamp) versions in one folder; their order would be ambiguous"
                    .to_owned(),
        });
    }

    let mut migrations = Vec::with_capacity(found.len());
    let mut flat = false;
    for (version, parts) in found {
        flat |= parts.flat;
        if let Some(step) = parts.step {
            let (checksum, up, down, step) = read_step(step)?;
            migrations.push(Migration {
                checksum,
                version,
                name: parts.name,
                up,
                down,
                step,
            });
            continue;
        }
        let Some(up) = parts.up else {
            return Err(SourceError::MissingUp { dir: parts.origin });
        };
        let up = Script::read(up)?;
        let down = parts.down.map(Script::read).transpose()?;
        migrations.push(Migration {
            checksum: checksum(&up.text),
            version,
            name: parts.name,
            up,
            down,
            step: Step::Sql,
        });
    }
    Ok(MigrationSet {
        dir: dir.to_owned(),
        migrations,
        flat,
    })
}

/// Reads `step.toml`: the scripts handed to the component, and the
/// component itself. The checksum covers the file, and so the pinned digest:
/// swapping the component shows as `modified`.
fn read_step(path: PathBuf) -> Result<(String, Script, Option<Script>, Step), SourceError> {
    let file = Script::read(path.clone())?;
    let bad = |message: String| SourceError::BadStep {
        path: path.clone(),
        message,
    };
    let parsed: StepFile = toml::from_str(&file.text).map_err(|e| bad(e.to_string().trim_end().to_owned()))?;
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
    Ok((
        checksum(&file.text),
        script(parsed.up.unwrap_or_default()),
        Some(down),
        step,
    ))
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

fn insert(found: &mut BTreeMap<Version, Parts>, version: Version, parts: Parts) -> Result<(), SourceError> {
    if let Some(existing) = found.get(&version) {
        return Err(SourceError::Duplicate {
            version: version.to_string(),
            first: existing.origin.clone(),
            second: parts.origin,
        });
    }
    found.insert(version, parts);
    Ok(())
}

fn read_sorted(dir: &Path) -> Result<Vec<PathBuf>, SourceError> {
    let io = |e: std::io::Error| SourceError::Io {
        path: dir.to_owned(),
        message: e.to_string(),
    };
    let mut paths = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io)? {
        paths.push(entry.map_err(io)?.path());
    }
    paths.sort();
    Ok(paths)
}

/// Creates a new, empty migration named `name` in `dir` and returns the paths
/// it wrote. The version follows the folder's style: the next integer for a
/// sequence (`1`, `2`, ...), a UTC timestamp otherwise; the layout follows
/// the folder's (flat files if it already uses them).
pub fn scaffold(dir: &Path, name: &str) -> Result<Vec<PathBuf>, SourceError> {
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
        return Err(SourceError::BadName {
            path: dir.join(name),
            reason: "a migration name may hold only letters, digits, _ and -".to_owned(),
        });
    }
    std::fs::create_dir_all(dir).map_err(|e| SourceError::Io {
        path: dir.to_owned(),
        message: e.to_string(),
    })?;
    let set = discover(dir)?;
    let now = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
    let stamp: String = now.chars().filter(char::is_ascii_digit).collect();
    let last = set.migrations.last().map(|m| m.version.clone());
    let version = match &last {
        Some(v) if !v.is_integer() => {
            // diesel style: YYYY-MM-DD-HHMMSS
            format!("{}-{}-{}-{}", &stamp[0..4], &stamp[4..6], &stamp[6..8], &stamp[8..14])
        }
        Some(v) if v.as_str().len() < 10 => {
            let next = v.as_str().parse::<u64>().unwrap_or(0) + 1;
            format!("{next:0width$}", width = v.as_str().len())
        }
        Some(v) if Version::parse(&stamp).unwrap() <= *v => {
            return Err(SourceError::BadName {
                path: dir.to_owned(),
                reason: format!("the newest version {v} is later than the current time; name the version by hand"),
            });
        }
        _ => stamp,
    };
    let stem = format!("{version}_{name}");
    let header = |direction: &str| format!("-- {stem}: {direction}\n");
    let written = if set.flat {
        let up = dir.join(format!("{stem}.up.sql"));
        let down = dir.join(format!("{stem}.down.sql"));
        vec![(up, header("up")), (down, header("down (reverts up)"))]
    } else {
        let folder = dir.join(&stem);
        std::fs::create_dir(&folder).map_err(|e| SourceError::Io {
            path: folder.clone(),
            message: e.to_string(),
        })?;
        vec![
            (folder.join("up.sql"), header("up")),
            (folder.join("down.sql"), header("down (reverts up)")),
        ]
    };
    let mut paths = Vec::new();
    for (path, text) in written {
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .and_then(|mut f| std::io::Write::write_all(&mut f, text.as_bytes()))
            .map_err(|e| SourceError::Io {
                path: path.clone(),
                message: e.to_string(),
            })?;
        paths.push(path);
    }
    Ok(paths)
}

#[cfg(test)]
mod tests {
    use super::checksum;

    #[test]
    fn checksum_ignores_line_endings_and_bom() {
        let unix = checksum("CREATE TABLE a (id int);\nSELECT 1;\n");
        assert_eq!(unix, checksum("CREATE TABLE a (id int);\r\nSELECT 1;\r\n"));
        assert_eq!(unix, checksum("\u{feff}CREATE TABLE a (id int);\rSELECT 1;\r"));
        assert_ne!(unix, checksum("CREATE TABLE a (id bigint);\nSELECT 1;\n"));
    }
}
