//! Which tool's layout a migrations folder is in.

use std::fmt;
use std::path::Path;

use super::{file_name, read_sorted, read_text};
use crate::error::SourceError;

/// The layout of a migrations folder: whose rules name, order and split
/// its migrations, and which files are not migrations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Layout {
    /// Detect it from the folder: Flyway's `V1__`/`R__` files, goose's
    /// `-- +goose Up` or dbmate's `-- migrate:up` in a top-level `.sql`
    /// file; otherwise waymark's own, which reads diesel's, sqlx's and
    /// golang-migrate's folders as they are.
    #[default]
    Auto,
    /// A folder per migration (`up.sql`, `down.sql`, `step.toml`, diesel's
    /// `metadata.toml`), and flat `<version>_<name>[.up|.down].sql` files
    /// beside them. Top-level files whose names do not start with a digit
    /// are not migrations.
    Waymark,
    /// diesel: only folders are migrations; every top-level file is not.
    Diesel,
    /// sqlx: only flat `<version>_<name>.sql` and `.up.sql`/`.down.sql`
    /// files; folders and names without `_` are not migrations.
    Sqlx,
    /// golang-migrate: only `<version>_<name>.up.sql` and `.down.sql`;
    /// every other file is not a migration.
    GolangMigrate,
    /// dbmate: `<version>_<name>.sql` with `-- migrate:up` and
    /// `-- migrate:down` sections.
    Dbmate,
    /// goose: `<version>_<name>.sql` with `-- +goose Up` and
    /// `-- +goose Down` sections.
    Goose,
    /// Flyway: `V<version>__<name>.sql`, `U<version>__<name>.sql` (its
    /// undo), anywhere below the folder.
    Flyway,
}

impl Layout {
    /// Every layout but `Auto`, for messages and documentation.
    pub const ALL: [Layout; 7] = [
        Layout::Waymark,
        Layout::Diesel,
        Layout::Sqlx,
        Layout::GolangMigrate,
        Layout::Dbmate,
        Layout::Goose,
        Layout::Flyway,
    ];

    /// The name used in `waymark.toml`, on the command line and in output.
    pub fn as_str(self) -> &'static str {
        match self {
            Layout::Auto => "auto",
            Layout::Waymark => "waymark",
            Layout::Diesel => "diesel",
            Layout::Sqlx => "sqlx",
            Layout::GolangMigrate => "golang-migrate",
            Layout::Dbmate => "dbmate",
            Layout::Goose => "goose",
            Layout::Flyway => "flyway",
        }
    }

    /// Parses a name given by [`Layout::as_str`].
    pub fn parse(name: &str) -> Result<Self, String> {
        if name == "auto" {
            return Ok(Layout::Auto);
        }
        Layout::ALL.into_iter().find(|l| l.as_str() == name).ok_or_else(|| {
            let names: Vec<&str> = Layout::ALL.iter().map(|l| l.as_str()).collect();
            format!("unknown layout {name:?}: expected auto, {}", names.join(", "))
        })
    }
}

impl fmt::Display for Layout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Detects the layout from the folder's top level. Only a marker that the
/// other layouts never hold counts, so detection cannot misread a folder
/// that one of them reads.
pub(super) fn detect(dir: &Path) -> Result<Layout, SourceError> {
    let mut dbmate = false;
    let mut diesel = false;
    for path in read_sorted(dir)? {
        let name = file_name(&path)?;
        if path.is_dir() {
            // Every diesel project starts with its initial setup; its
            // metadata.toml is diesel's alone.
            diesel |= name.ends_with("_diesel_initial_setup") || path.join("metadata.toml").is_file();
            continue;
        }
        if super::flyway::is_flyway_name(&name) {
            return Ok(Layout::Flyway);
        }
        if !name.ends_with(".sql") || !name.starts_with(|c: char| c.is_ascii_digit()) {
            continue;
        }
        let text = read_text(&path)?;
        for line in text.lines() {
            match super::sections::marker(line) {
                Some(super::sections::Marker::Goose(_)) => return Ok(Layout::Goose),
                Some(super::sections::Marker::Dbmate(..)) => dbmate = true,
                None => {}
            }
        }
    }
    Ok(if dbmate {
        Layout::Dbmate
    } else if diesel {
        Layout::Diesel
    } else {
        Layout::Waymark
    })
}
