//! `waymark new`: an empty migration in the folder's own layout.

use std::path::{Path, PathBuf};

use super::{Layout, discover};
use crate::error::SourceError;
use crate::version::Version;

/// Creates a new, empty migration named `name` in `dir` and returns the paths
/// it wrote. The version is `version` if given (refused if a migration has
/// it), else it follows the folder's style: the next integer for a
/// sequence (`1`, `2`, ...), a UTC timestamp otherwise, one second after
/// the newest when that is not earlier than now (two `new` in one second,
/// or a clock behind a colleague's); the files follow the folder's layout
/// (flat files if it already uses them; dbmate's and goose's sections;
/// Flyway's `V`/`U` pair, numbered on from the last).
///
/// With `op`, the migration is an `ops.toml` holding that expand/contract
/// operation with its fields commented (waymark's folder layout only).
pub fn scaffold(
    dir: &Path,
    name: &str,
    layout: Layout,
    op: Option<&str>,
    version: Option<&Version>,
) -> Result<Vec<PathBuf>, SourceError> {
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
    let chosen = version.is_some();
    let last = set.migrations.last().map(|m| m.version.clone());
    let version = match version {
        Some(v) => {
            if let Some(taken) = set.migrations.iter().find(|m| m.version == *v) {
                return Err(SourceError::BadName {
                    path: taken.up.path.clone(),
                    reason: format!(
                        "--version {v}: migration {} has that version already; pick another",
                        taken.label()
                    ),
                });
            }
            v.to_string()
        }
        None => next_version(dir, last.as_ref(), std::time::SystemTime::now())?,
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
        // Flyway's versions are its own (`V1_2__`): --version is taken as
        // written, else the next major version.
        let next = if chosen {
            version.replace('.', "_")
        } else {
            last.map_or(1, |v| {
                v.as_str()
                    .split('.')
                    .next()
                    .and_then(|major| major.parse::<u64>().ok())
                    .unwrap_or(0)
                    + 1
            })
            .to_string()
        };
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
        vec![(up, header("up")), (down, down_template(&header("down (reverts up)")))]
    } else {
        let folder = dir.join(&stem);
        std::fs::create_dir(&folder).map_err(|e| SourceError::Io {
            path: folder.clone(),
            message: e.to_string(),
        })?;
        vec![
            (folder.join("up.sql"), header("up")),
            (folder.join("down.sql"), down_template(&header("down (reverts up)"))),
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

/// A down script as `new` writes it: no statement yet, and a word on
/// what `down` does with none.
fn down_template(header: &str) -> String {
    format!(
        "{header}-- Until this file holds a statement, `waymark down` refuses to revert the\n\
         -- migration. If reverting it needs none, say so with a line that reads\n\
         -- `{}`.\n",
        super::EMPTY_DOWN
    )
}

/// The version `new` gives a migration after `last`, made at `now`: the
/// next integer of a sequence, else a UTC timestamp in the folder's style
/// (diesel's `YYYY-MM-DD-HHMMSS` when the last has dashes), one second
/// after the last when `now` is not later than it.
fn next_version(dir: &Path, last: Option<&Version>, now: std::time::SystemTime) -> Result<String, SourceError> {
    let dashed = last.is_some_and(|v| v.as_str().contains('-'));
    if let Some(v) = last.filter(|v| !dashed && v.is_integer() && v.as_str().len() < 10) {
        let next = v.as_str().parse::<u64>().unwrap_or(0) + 1;
        return Ok(format!("{next:0width$}", width = v.as_str().len()));
    }
    let stamp = |t: std::time::SystemTime| {
        let digits: String = humantime::format_rfc3339_seconds(t)
            .to_string()
            .chars()
            .filter(char::is_ascii_digit)
            .collect();
        if dashed {
            format!(
                "{}-{}-{}-{}",
                &digits[0..4],
                &digits[4..6],
                &digits[6..8],
                &digits[8..14]
            )
        } else {
            digits
        }
    };
    let at_now = stamp(now);
    let Some(last) = last else { return Ok(at_now) };
    if Version::parse(&at_now).is_ok_and(|v| v > *last) {
        return Ok(at_now);
    }
    // The newest is now or later: one second after it, read as a time.
    let digits: String = last.as_str().chars().filter(char::is_ascii_digit).collect();
    let after = digits
        .get(0..14)
        .map(|d| {
            format!(
                "{}-{}-{}T{}:{}:{}Z",
                &d[0..4],
                &d[4..6],
                &d[6..8],
                &d[8..10],
                &d[10..12],
                &d[12..14]
            )
        })
        .and_then(|t| humantime::parse_rfc3339(&t).ok())
        .map(|t| stamp(t + std::time::Duration::from_secs(1)))
        .filter(|next| Version::parse(next).is_ok_and(|v| v > *last));
    after.ok_or_else(|| SourceError::BadName {
        path: dir.to_owned(),
        reason: format!(
            "the newest version {last} is not a time, and a timestamp now would sort before it; give one with --version"
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(rfc3339: &str) -> std::time::SystemTime {
        humantime::parse_rfc3339(rfc3339).unwrap()
    }

    fn next(last: Option<&str>, now: &str) -> Result<String, SourceError> {
        let last = last.map(|v| Version::parse(v).unwrap());
        next_version(Path::new("m"), last.as_ref(), at(now))
    }

    #[test]
    fn a_timestamp_is_now_unless_the_newest_is_not_earlier() {
        assert_eq!(next(None, "2026-12-06T09:15:00Z").unwrap(), "20261206091500");
        assert_eq!(
            next(Some("20261206091459"), "2026-12-06T09:15:00Z").unwrap(),
            "20261206091500"
        );
        // Two in one second, and a newest from a clock ahead (a day's end).
        assert_eq!(
            next(Some("20261206091500"), "2026-12-06T09:15:00Z").unwrap(),
            "20261206091501"
        );
        assert_eq!(
            next(Some("20261231235959"), "2026-12-06T09:15:00Z").unwrap(),
            "20270101000000"
        );
    }

    #[test]
    fn diesel_style_stays_dashed_and_passes_a_more_precise_newest() {
        assert_eq!(
            next(Some("2026-12-06-091500"), "2026-12-06T09:15:00Z").unwrap(),
            "2026-12-06-091501"
        );
        // crates.io's `-0000` suffix sorts after the same second without it.
        assert_eq!(
            next(Some("2026-12-06-091500-0000"), "2026-12-06T09:15:00Z").unwrap(),
            "2026-12-06-091501"
        );
        assert_eq!(
            next(Some("2019-02-26-002946"), "2026-12-06T09:15:00Z").unwrap(),
            "2026-12-06-091500"
        );
    }

    #[test]
    fn a_sequence_counts_on_and_a_newest_that_is_no_time_is_refused() {
        assert_eq!(next(Some("0042"), "2026-12-06T09:15:00Z").unwrap(), "0043");
        let e = next(Some("99999999999999999"), "2026-12-06T09:15:00Z")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("99999999999999999 is not a time") && e.contains("--version"),
            "{e}"
        );
    }
}
