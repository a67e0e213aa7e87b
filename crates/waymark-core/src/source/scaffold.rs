//! `waymark new`: an empty migration in the folder's own layout.

use std::path::{Path, PathBuf};

use super::{Layout, discover};
use crate::error::SourceError;
use crate::version::Version;

/// Creates a new, empty migration named `name` in `dir` and returns the paths
/// it wrote. The version follows the folder's style: the next integer for a
/// sequence (`1`, `2`, ...), a UTC timestamp otherwise; the files follow
/// the folder's layout (flat files if it already uses them; dbmate's and
/// goose's sections; Flyway's `V`/`U` pair, numbered on from the last).
///
/// With `op`, the migration is an `ops.toml` holding that expand/contract
/// operation with its fields commented (waymark's folder layout only).
pub fn scaffold(dir: &Path, name: &str, layout: Layout, op: Option<&str>) -> Result<Vec<PathBuf>, SourceError> {
    let op = match op {
        None => None,
        Some(op) => Some(super::ops_file::template(op).ok_or_else(|| SourceError::BadName {
            path: dir.join(name),
            reason: format!(
                "--op {op}: no such operation; the operations are {}",
                super::ops_file::OPERATIONS.join(", ")
            ),
        })?),
    };
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
    let set = discover(dir, layout)?;
    let now = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
    let stamp: String = now.chars().filter(char::is_ascii_digit).collect();
    let last = set.migrations.last().map(|m| m.version.clone());
    let version = match &last {
        Some(v) if v.as_str().contains('-') => {
            // diesel style: YYYY-MM-DD-HHMMSS
            format!("{}-{}-{}-{}", &stamp[0..4], &stamp[4..6], &stamp[6..8], &stamp[8..14])
        }
        Some(v) if v.is_integer() && v.as_str().len() < 10 => {
            let next = v.as_str().parse::<u64>().unwrap_or(0) + 1;
            format!("{next:0width$}", width = v.as_str().len())
        }
        Some(v) if v.is_integer() && Version::parse(&stamp).unwrap() <= *v => {
            return Err(SourceError::BadName {
                path: dir.to_owned(),
                reason: format!("the newest version {v} is later than the current time; name the version by hand"),
            });
        }
        _ => stamp,
    };
    let stem = format!("{version}_{name}");
    if let Some(template) = op {
        if !matches!(set.layout, Layout::Waymark | Layout::Diesel) || set.flat {
            return Err(SourceError::BadName {
                path: dir.to_owned(),
                reason: format!(
                    "an ops.toml migration is a folder of waymark's layout, and this folder is in {}'s",
                    set.layout.as_str()
                ),
            });
        }
        let folder = dir.join(&stem);
        let path = folder.join("ops.toml");
        std::fs::create_dir(&folder)
            .and_then(|()| {
                std::fs::write(
                    &path,
                    format!(
                        "# {stem}: `waymark up` expands, `waymark complete` contracts once the old\n\
                         # version of the application is gone, `waymark down` before that aborts.\n\n\
                         [[op]]\n{template}"
                    ),
                )
            })
            .map_err(|e| SourceError::Io {
                path: path.clone(),
                message: e.to_string(),
            })?;
        return Ok(vec![path]);
    }
    let header = |direction: &str| format!("-- {stem}: {direction}\n");
    let written = if set.layout == Layout::Flyway {
        let next = last.map_or(1, |v| {
            v.as_str()
                .split('.')
                .next()
                .and_then(|major| major.parse::<u64>().ok())
                .unwrap_or(0)
                + 1
        });
        vec![
            (
                dir.join(format!("V{next}__{name}.sql")),
                format!("-- V{next}__{name}: up\n"),
            ),
            (
                dir.join(format!("U{next}__{name}.sql")),
                format!("-- U{next}__{name}: undoes V{next}\n"),
            ),
        ]
    } else if set.layout == Layout::Dbmate {
        vec![(
            dir.join(format!("{stem}.sql")),
            "-- migrate:up\n\n\n-- migrate:down\n\n".to_owned(),
        )]
    } else if set.layout == Layout::Goose {
        vec![(
            dir.join(format!("{stem}.sql")),
            "-- +goose Up\n\n\n-- +goose Down\n\n".to_owned(),
        )]
    } else if set.flat && set.layout != Layout::Diesel {
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
