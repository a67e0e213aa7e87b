//! Folders and flat files: waymark's own layout, diesel's, sqlx's and
//! golang-migrate's.
//!
//! - A folder `<version>_<name>/` holds `up.sql` (or `step.toml`) and,
//!   optionally, `down.sql`; diesel's `metadata.toml` with
//!   `run_in_transaction = false` runs both outside a transaction. Like
//!   diesel, the version is the name up to the first `_`, and the name may
//!   hold spaces.
//! - A flat file is `<version>_<name>.up.sql` with an optional
//!   `<version>_<name>.down.sql`, or a lone `<version>_<name>.sql` (sqlx's
//!   irreversible form; golang-migrate does not read it).
//!
//! What each tool does not read is not a migration here either: diesel
//! reads only folders, sqlx and golang-migrate only files, and waymark's
//! own layout reads both but, as diesel does, passes over top-level files
//! whose names do not start with a digit (a README, diesel's data files).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::{Found, Layout, Script, file_name, ops_file, parse_stem, read_sorted, read_text, sql_migration, step_file};
use crate::error::SourceError;
use crate::version::Version;

/// The first-line marker that runs a script outside a transaction
/// (sqlx's convention), for statements such as `CREATE INDEX CONCURRENTLY`.
const NO_TRANSACTION: &str = "-- no-transaction";

/// A flat migration's files, paired by version and name.
struct Flat {
    name: String,
    up: Option<PathBuf>,
    down: Option<PathBuf>,
    origin: PathBuf,
}

/// Reads `dir` in `layout`; returns whether any migration is flat.
pub(super) fn read(dir: &Path, layout: Layout, found: &mut Found) -> Result<bool, SourceError> {
    let folders = matches!(layout, Layout::Waymark | Layout::Diesel);
    let mut flat: BTreeMap<Version, Flat> = BTreeMap::new();
    for path in read_sorted(dir)? {
        let name = file_name(&path)?;
        if name.starts_with('.') {
            continue;
        }
        if path.is_dir() {
            if !folders {
                found.ignore(path, &format!("{layout} reads only files, not folders"));
                continue;
            }
            read_folder(path, &name, found)?;
            continue;
        }
        if layout == Layout::Diesel {
            found.ignore(path, "diesel reads only folders as migrations");
            continue;
        }
        let Some(stem) = name.strip_suffix(".sql") else {
            found.ignore(path, "not a .sql file");
            continue;
        };
        let (stem, up) = if let Some(s) = stem.strip_suffix(".up") {
            (s, true)
        } else if let Some(s) = stem.strip_suffix(".down") {
            (s, false)
        } else if layout == Layout::GolangMigrate {
            found.ignore(path, "golang-migrate reads only <version>_<name>.up.sql and .down.sql");
            continue;
        } else {
            (stem, true)
        };
        let ignored_reason = match layout {
            // sqlx passes over names without `_`, and fails on the rest
            // that do not parse.
            Layout::Sqlx if !stem.contains('_') => Some("sqlx reads only <version>_<name>.sql files"),
            _ if !stem.starts_with(|c: char| c.is_ascii_digit()) => {
                Some("the name does not start with a version, so it is not a migration")
            }
            _ => None,
        };
        if let Some(reason) = ignored_reason {
            found.ignore(path, reason);
            continue;
        }
        let (version, name) = parse_stem(stem, "_", &path)?;
        match flat.get_mut(&version) {
            Some(existing) if existing.name == name => {
                let slot = if up { &mut existing.up } else { &mut existing.down };
                if let Some(first) = slot.replace(path.clone()) {
                    return Err(SourceError::Duplicate {
                        version: version.to_string(),
                        first,
                        second: path,
                    });
                }
            }
            Some(existing) => {
                return Err(SourceError::Duplicate {
                    version: version.to_string(),
                    first: existing.origin.clone(),
                    second: path,
                });
            }
            None => {
                let (up_path, down_path) = if up {
                    (Some(path.clone()), None)
                } else {
                    (None, Some(path.clone()))
                };
                flat.insert(
                    version,
                    Flat {
                        name,
                        up: up_path,
                        down: down_path,
                        origin: path,
                    },
                );
            }
        }
    }
    let any_flat = !flat.is_empty();
    for (version, parts) in flat {
        let Some(up) = parts.up else {
            return Err(SourceError::MissingUp { dir: parts.origin });
        };
        let up = script(up, false)?;
        let down = parts.down.map(|d| script(d, false)).transpose()?;
        found.add(parts.origin, sql_migration(version, parts.name, up, down))?;
    }
    Ok(any_flat)
}

/// Reads one migration folder. A folder whose name is not a version and
/// that holds no script is not a migration (diesel keeps none such, but
/// a team may keep a `templates/` beside its migrations).
fn read_folder(path: PathBuf, name: &str, found: &mut Found) -> Result<(), SourceError> {
    let mut up = None;
    let mut down = None;
    let mut step = None;
    let mut ops = None;
    let mut metadata = None;
    let mut stray = Vec::new();
    for inner in read_sorted(&path)? {
        match file_name(&inner)?.as_str() {
            "up.sql" => up = Some(inner),
            "down.sql" => down = Some(inner),
            "step.toml" => step = Some(inner),
            "ops.toml" => ops = Some(inner),
            "metadata.toml" => metadata = Some(inner),
            n if n.ends_with(".sql") => stray.push(inner),
            _ => {}
        }
    }
    if up.is_none() && step.is_none() && ops.is_none() && !name.starts_with(|c: char| c.is_ascii_digit()) {
        found.ignore(path, "a folder without up.sql whose name is not a version");
        return Ok(());
    }
    let (version, name) = parse_stem(name, "_", &path)?;
    for inner in stray {
        found.suspect(
            inner,
            "a migration folder's scripts are up.sql and down.sql; this file is not run",
        );
    }
    let no_transaction = match &metadata {
        Some(file) => !diesel_metadata(file)?,
        None => false,
    };
    if let Some(ops) = ops {
        if let Some(other) = up.or(step).or(down) {
            return Err(SourceError::BadStep {
                path: ops,
                message: format!(
                    "a migration of operations (ops.toml) has no other script; {} is one",
                    other.display()
                ),
            });
        }
        let (checksum, script, step) = ops_file::read_ops(ops)?;
        return found.add(
            path,
            super::Migration {
                version,
                name,
                up: script.clone(),
                down: Some(script),
                checksum,
                step,
            },
        );
    }
    let migration = match (up, step, down) {
        (None, None, _) => return Err(SourceError::MissingUp { dir: path }),
        (Some(_), Some(step), _) | (None, Some(step), Some(_)) => {
            return Err(SourceError::BadStep {
                path: step,
                message: "a migration is either SQL (up.sql, down.sql) or a component step (step.toml), not both"
                    .to_owned(),
            });
        }
        (None, Some(step), None) => {
            let (checksum, up, down, step) = step_file::read_step(step)?;
            super::Migration {
                version,
                name,
                up,
                down,
                checksum,
                step,
            }
        }
        (Some(up), None, down) => {
            let up = script(up, no_transaction)?;
            let down = down.map(|d| script(d, no_transaction)).transpose()?;
            sql_migration(version, name, up, down)
        }
    };
    found.add(path, migration)
}

/// A SQL script; `outside` when the migration runs outside a transaction
/// anyway, else when its first line says `-- no-transaction`.
fn script(path: PathBuf, outside: bool) -> Result<Script, SourceError> {
    let text = read_text(&path)?;
    let no_transaction = outside
        || text
            .trim_start_matches('\u{feff}')
            .lines()
            .next()
            .is_some_and(|first| first.trim_end() == NO_TRANSACTION);
    Ok(Script::new(path, text, no_transaction))
}

/// diesel's `metadata.toml`: whether the migration runs in a transaction
/// (`run_in_transaction`, default true). Other keys are diesel's to add and
/// ours to pass over, as diesel passes over keys it does not know.
fn diesel_metadata(path: &Path) -> Result<bool, SourceError> {
    let text = read_text(path)?;
    let table: toml::Table = toml::from_str(&text).map_err(|e| SourceError::BadStep {
        path: path.to_owned(),
        message: e.to_string().trim_end().to_owned(),
    })?;
    match table.get("run_in_transaction") {
        None => Ok(true),
        Some(toml::Value::Boolean(b)) => Ok(*b),
        Some(other) => Err(SourceError::BadStep {
            path: path.to_owned(),
            message: format!("run_in_transaction = {other}: expected true or false"),
        }),
    }
}
