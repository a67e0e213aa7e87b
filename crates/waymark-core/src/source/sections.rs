//! One file per migration, its up and down as marked sections: dbmate's
//! `-- migrate:up` / `-- migrate:down` and goose's `-- +goose Up` /
//! `-- +goose Down`.
//!
//! Each section becomes a script holding the whole file with every line
//! outside the section left empty, so a failing statement is reported at
//! its line in the file. The markers are SQL comments, and goose's
//! `StatementBegin`/`StatementEnd` need nothing more: the SQL step already
//! keeps function bodies, dollar quotes and trigger bodies whole.
//!
//! - dbmate reads `<version>_<name>.sql`; `transaction:false` after a
//!   marker runs that section outside a transaction; a file without
//!   `-- migrate:up` is an error, as it is for dbmate.
//! - goose reads `<version>_<name>.sql` (and Go files, which waymark cannot
//!   run: an error naming the file); `-- +goose NO TRANSACTION` runs both
//!   sections outside a transaction; a file without `-- +goose Up` is an
//!   error, as it is for goose.

use std::path::Path;

use super::{Found, Layout, Script, file_name, parse_stem, read_sorted, read_text, sql_migration};
use crate::error::SourceError;

/// A marker line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Marker {
    /// `-- migrate:up` (`true`) or `-- migrate:down`, and whether
    /// `transaction:false` follows it.
    Dbmate(bool, bool),
    /// A goose annotation.
    Goose(Goose),
}

/// goose's annotations that matter here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Goose {
    Up,
    Down,
    NoTransaction,
    /// `StatementBegin`, `StatementEnd`, `ENVSUB ON`: comments to us.
    Other,
}

/// The marker on `line`, if it is one.
pub(super) fn marker(line: &str) -> Option<Marker> {
    let line = line.trim();
    let rest = line.strip_prefix("--")?.trim_start();
    if let Some(goose) = rest.strip_prefix("+goose") {
        // goose matches its annotations without regard to case.
        let goose = goose.trim().to_ascii_lowercase();
        return Some(Marker::Goose(match goose.as_str() {
            "up" => Goose::Up,
            "down" => Goose::Down,
            "no transaction" => Goose::NoTransaction,
            _ => Goose::Other,
        }));
    }
    let (direction, options) = match rest.split_once(char::is_whitespace) {
        Some((d, o)) => (d, o),
        None => (rest, ""),
    };
    let up = match direction {
        "migrate:up" => true,
        "migrate:down" => false,
        _ => return None,
    };
    let outside = options.split_whitespace().any(|o| o == "transaction:false");
    Some(Marker::Dbmate(up, outside))
}

/// Reads `dir` as dbmate or goose files.
pub(super) fn read(dir: &Path, layout: Layout, found: &mut Found) -> Result<(), SourceError> {
    for path in read_sorted(dir)? {
        let name = file_name(&path)?;
        if name.starts_with('.') {
            continue;
        }
        if path.is_dir() {
            found.ignore(path, &format!("{layout} reads only the folder's own files"));
            continue;
        }
        if layout == Layout::Goose && name.ends_with(".go") && name.starts_with(|c: char| c.is_ascii_digit()) {
            return Err(SourceError::BadName {
                path,
                reason: "a goose migration written in Go cannot be run by waymark; write it as SQL, or as a \
                         waymark step component"
                    .to_owned(),
            });
        }
        let Some(stem) = name.strip_suffix(".sql") else {
            found.ignore(path, "not a .sql file");
            continue;
        };
        if !stem.starts_with(|c: char| c.is_ascii_digit()) {
            found.ignore(path, "the name does not start with a version, so it is not a migration");
            continue;
        }
        let (version, name) = parse_stem(stem, "_", &path)?;
        let text = read_text(&path)?;
        let (up, down) = split(&path, &text, layout)?;
        found.add(path.clone(), sql_migration(version, name, up, down))?;
    }
    Ok(())
}

/// The up and down sections of one file.
fn split(path: &Path, text: &str, layout: Layout) -> Result<(Script, Option<Script>), SourceError> {
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    // For each line, the section it belongs to: None before the first marker.
    let mut section: Option<bool> = None;
    let mut owner = Vec::with_capacity(lines.len());
    let (mut up_outside, mut down_outside, mut no_transaction) = (false, false, false);
    let (mut saw_up, mut saw_down) = (false, false);
    for (i, line) in lines.iter().enumerate() {
        let mark = marker(line);
        match (layout, mark) {
            (Layout::Dbmate, Some(Marker::Dbmate(up, outside))) => {
                let seen = if up { &mut saw_up } else { &mut saw_down };
                if *seen {
                    return Err(duplicate_marker(
                        path,
                        i + 1,
                        if up { "-- migrate:up" } else { "-- migrate:down" },
                    ));
                }
                *seen = true;
                *(if up { &mut up_outside } else { &mut down_outside }) = outside;
                section = Some(up);
                owner.push(None);
                continue;
            }
            (Layout::Goose, Some(Marker::Goose(g @ (Goose::Up | Goose::Down)))) => {
                let up = g == Goose::Up;
                let seen = if up { &mut saw_up } else { &mut saw_down };
                if *seen {
                    return Err(duplicate_marker(
                        path,
                        i + 1,
                        if up { "-- +goose Up" } else { "-- +goose Down" },
                    ));
                }
                *seen = true;
                section = Some(up);
                owner.push(None);
                continue;
            }
            (Layout::Goose, Some(Marker::Goose(Goose::NoTransaction))) => no_transaction = true,
            _ => {}
        }
        owner.push(section);
    }
    if !saw_up {
        let marker = if layout == Layout::Dbmate {
            "-- migrate:up"
        } else {
            "-- +goose Up"
        };
        return Err(SourceError::BadName {
            path: path.to_owned(),
            reason: format!("a {layout} migration needs a `{marker}` line before its statements"),
        });
    }
    let keep = |up: bool| -> String {
        lines
            .iter()
            .zip(&owner)
            .map(|(line, owner)| {
                if *owner == Some(up) {
                    (*line).to_owned()
                } else if line.ends_with('\n') {
                    "\n".to_owned()
                } else {
                    String::new()
                }
            })
            .collect()
    };
    let up = Script::new(path.to_owned(), keep(true), no_transaction || up_outside);
    let down = saw_down.then(|| Script::new(path.to_owned(), keep(false), no_transaction || down_outside));
    Ok((up, down))
}

fn duplicate_marker(path: &Path, line: usize, marker: &str) -> SourceError {
    SourceError::BadName {
        path: path.to_owned(),
        reason: format!("line {line}: a second `{marker}`; a migration has one up and one down section"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dbmate_sections_keep_their_lines() {
        let text = "-- migrate:up\nCREATE TABLE a (id int);\n\n-- migrate:down transaction:false\nDROP TABLE a;\n";
        let (up, down) = split(Path::new("1_a.sql"), text, Layout::Dbmate).unwrap();
        assert_eq!(up.text, "\nCREATE TABLE a (id int);\n\n\n\n");
        assert!(!up.no_transaction);
        let down = down.unwrap();
        assert_eq!(down.text, "\n\n\n\nDROP TABLE a;\n");
        assert!(down.no_transaction);
    }

    #[test]
    fn goose_sections_and_no_transaction() {
        let text = "-- +goose NO TRANSACTION\n-- +goose Up\n-- +goose StatementBegin\nCREATE INDEX CONCURRENTLY i ON a (id);\n-- +goose StatementEnd\n";
        let (up, down) = split(Path::new("1_a.sql"), text, Layout::Goose).unwrap();
        assert!(up.no_transaction);
        assert!(up.text.contains("CONCURRENTLY"));
        assert!(down.is_none(), "no down section: irreversible");
    }

    #[test]
    fn a_file_without_its_up_marker_is_an_error() {
        let e = split(Path::new("1_a.sql"), "CREATE TABLE a (id int);\n", Layout::Goose).unwrap_err();
        assert!(e.to_string().contains("needs a `-- +goose Up` line"), "{e}");
        let e = split(Path::new("1_a.sql"), "-- migrate:up\n-- migrate:up\n", Layout::Dbmate).unwrap_err();
        assert!(e.to_string().contains("line 2: a second `-- migrate:up`"), "{e}");
    }
}
