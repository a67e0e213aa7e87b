//! Flyway's layout: `V<version>__<description>.sql` applies a version,
//! `U<version>__<description>.sql` undoes it, anywhere below the folder
//! (Flyway scans its locations recursively). A version's parts are
//! separated by `.` or `_` (`V1_2__x.sql` is version 1.2) and compare
//! part by part as numbers. A script's `<file>.conf` with
//! `executeInTransaction=false` runs it outside a transaction. Files
//! without Flyway's prefixes are not migrations, as Flyway passes them
//! over.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::{Found, Script, file_name, read_sorted, read_text, sql_migration};
use crate::error::SourceError;
use crate::version::Version;

/// Whether `name` is one of Flyway's script names.
pub(super) fn is_flyway_name(name: &str) -> bool {
    name.ends_with(".sql")
        && (name.starts_with("R__")
            || ((name.starts_with('V') || name.starts_with('U'))
                && name[1..].starts_with(|c: char| c.is_ascii_digit())
                && name.contains("__")))
}

#[derive(Default)]
struct Pair {
    name: Option<String>,
    up: Option<PathBuf>,
    undo: Option<PathBuf>,
}

/// Reads `dir` and the folders below it.
pub(super) fn read(dir: &Path, found: &mut Found) -> Result<(), SourceError> {
    let mut pairs: BTreeMap<Version, Pair> = BTreeMap::new();
    walk(dir, found, &mut pairs)?;
    for (version, pair) in pairs {
        let Some(up) = pair.up else {
            let undo = pair.undo.expect("a pair has a file");
            return Err(SourceError::BadName {
                path: undo,
                reason: format!("an undo script for version {version}, which has no V{version}__ script"),
            });
        };
        let script = |path: PathBuf| -> Result<Script, SourceError> {
            let text = read_text(&path)?;
            let outside = !execute_in_transaction(&path)?;
            Ok(Script::new(path, text, outside))
        };
        let name = pair.name.expect("the V script names it");
        let migration = sql_migration(version, name, script(up.clone())?, pair.undo.map(script).transpose()?);
        found.add(up, migration)?;
    }
    Ok(())
}

fn walk(dir: &Path, found: &mut Found, pairs: &mut BTreeMap<Version, Pair>) -> Result<(), SourceError> {
    for path in read_sorted(dir)? {
        let name = file_name(&path)?;
        if name.starts_with('.') {
            continue;
        }
        if path.is_dir() {
            walk(&path, found, pairs)?;
            continue;
        }
        if name.ends_with(".sql.conf") {
            continue;
        }
        if !is_flyway_name(&name) {
            found.ignore(path, "not a Flyway script name (V<version>__, U<version>__ or R__)");
            continue;
        }
        if name.starts_with("R__") {
            return Err(SourceError::BadName {
                path,
                reason: "Flyway's repeatable migrations (R__) are not supported: waymark records a migration by \
                         its version; give it a version (V<n>__) and a down script instead"
                    .to_owned(),
            });
        }
        let stem = &name[1..name.len() - ".sql".len()];
        let (raw, description) = stem.split_once("__").expect("is_flyway_name checked");
        let version = Version::parse(&raw.replace('_', ".")).map_err(|reason| SourceError::BadName {
            path: path.clone(),
            reason,
        })?;
        if description.trim().is_empty() {
            return Err(SourceError::BadName {
                path,
                reason: "the description after the version is empty".to_owned(),
            });
        }
        let pair = pairs.entry(version.clone()).or_default();
        let slot = if name.starts_with('V') {
            &mut pair.up
        } else {
            &mut pair.undo
        };
        if let Some(first) = slot.replace(path.clone()) {
            return Err(SourceError::Duplicate {
                version: version.to_string(),
                first,
                second: path,
            });
        }
        if name.starts_with('V') {
            pair.name = Some(description.to_owned());
        }
    }
    Ok(())
}

/// Whether the script's `.conf` file lets it run in a transaction (the
/// default).
fn execute_in_transaction(script: &Path) -> Result<bool, SourceError> {
    let mut conf = script.as_os_str().to_owned();
    conf.push(".conf");
    let conf = PathBuf::from(conf);
    if !conf.exists() {
        return Ok(true);
    }
    let text = read_text(&conf)?;
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some((key, value)) = line.split_once('=')
            && key.trim() == "executeInTransaction"
        {
            return match value.trim() {
                "true" => Ok(true),
                "false" => Ok(false),
                other => Err(SourceError::BadName {
                    path: conf.clone(),
                    reason: format!("line {}: executeInTransaction={other}: expected true or false", i + 1),
                }),
            };
        }
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::is_flyway_name;

    #[test]
    fn flyway_names() {
        for yes in [
            "V1__init.sql",
            "V1_1__more.sql",
            "U2__undo.sql",
            "R__views.sql",
            "V2.0.1__x.sql",
        ] {
            assert!(is_flyway_name(yes), "{yes}");
        }
        for no in ["1_init.sql", "Vx__a.sql", "V1_init.sql", "README.md", "V1__a.txt"] {
            assert!(!is_flyway_name(no), "{no}");
        }
    }
}
