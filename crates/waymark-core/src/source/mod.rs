//! Reading migrations from disk, in the layout of the tool that wrote them.
//!
//! A team moves to waymark without renaming anything: each layout is read
//! as its own tool reads it (`layout.rs` says which and how it is
//! detected), one file per layout:
//! - `native.rs`: waymark's own and diesel's folder per migration
//!   (`<version>_<name>/up.sql`, `down.sql`, diesel's `metadata.toml`),
//!   and the flat files of sqlx and golang-migrate
//!   (`<version>_<name>.up.sql` with `.down.sql`, or a lone `.sql`);
//! - `sections.rs`: dbmate's and goose's one file per migration, with its
//!   up and down as marked sections;
//! - `flyway.rs`: Flyway's `V1__name.sql`, `U1__name.sql` and
//!   `R__name.sql`.
//!
//! A migration folder may hold a `step.toml` instead of `up.sql`: the
//! migration's step is then a component of the user's, pinned by SHA-256
//! (`step_file.rs`). Or an `ops.toml`: expand/contract operations, run by
//! the built-in ops component (`ops_file.rs`). Files a layout does not read as migrations are
//! listed in [`MigrationSet::ignored`], never silently lost; only real
//! ambiguity (two migrations with one version) is an error.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::error::SourceError;
use crate::version::Version;

mod flyway;
mod layout;
mod native;
mod ops_file;
mod scaffold;
mod sections;
mod step_file;

pub use layout::Layout;
pub use scaffold::scaffold;

/// One script of a migration.
#[derive(Debug, Clone)]
pub struct Script {
    /// Where it was read from.
    pub path: PathBuf,
    /// Its text. A section of a bigger file (dbmate, goose) keeps the
    /// file's other lines as empty lines, so that line numbers in messages
    /// are the file's.
    pub text: String,
    /// Whether it runs outside a transaction.
    pub no_transaction: bool,
}

impl Script {
    /// A script made of text read from `path`.
    pub(crate) fn new(path: PathBuf, text: String, no_transaction: bool) -> Self {
        Script {
            path,
            text,
            no_transaction,
        }
    }
}

/// Reads a file as UTF-8, naming it when that fails. Only a regular file
/// (or a link to one) is read: a FIFO would block the read for ever and a
/// link to `/dev/zero` would never end, so either is refused by its kind.
pub(crate) fn read_text(path: &Path) -> Result<String, SourceError> {
    let failed = |message: String| SourceError::Io {
        path: path.to_owned(),
        message,
    };
    let kind = std::fs::metadata(path).map_err(|e| failed(e.to_string()))?.file_type();
    if !kind.is_file() {
        return Err(failed(format!(
            "not a regular file ({}); a migration's scripts must be files",
            file_kind(kind)
        )));
    }
    let bytes = std::fs::read(path).map_err(|e| failed(e.to_string()))?;
    if let Some(offset) = bytes.iter().position(|b| *b == 0) {
        return Err(SourceError::Binary {
            path: path.to_owned(),
            line: 1 + bytes[..offset].iter().filter(|b| **b == b'\n').count(),
            offset,
        });
    }
    String::from_utf8(bytes).map_err(|e| SourceError::NotUtf8 {
        path: path.to_owned(),
        offset: e.utf8_error().valid_up_to(),
    })
}

/// What a file that is not a regular file is, for messages.
fn file_kind(kind: std::fs::FileType) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if kind.is_fifo() {
            return "a FIFO";
        }
        if kind.is_char_device() || kind.is_block_device() {
            return "a device";
        }
        if kind.is_socket() {
            return "a socket";
        }
    }
    if kind.is_dir() { "a folder" } else { "not a file" }
}

/// Which component runs a migration's step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// The built-in SQL step; the scripts are SQL files.
    Sql,
    /// A component named by `step.toml`.
    Component(ComponentStep),
    /// The built-in expand/contract step; the script is `ops.toml`. Its
    /// `up` expands, `waymark complete` contracts, and its `down` aborts
    /// (before `complete`) or reverts (after).
    Ops(OpsStep),
}

impl Step {
    /// Whether `up` leaves the migration expanded, for `complete` to finish.
    pub fn has_contract(&self) -> bool {
        matches!(self, Step::Ops(_))
    }

    /// The phase an ops step's run carries out; `None` for other steps.
    pub fn ops_phase(&self) -> Option<OpsPhase> {
        match self {
            Step::Ops(o) => Some(o.phase),
            _ => None,
        }
    }
}

/// An `ops.toml` migration, as far as the engine reads it, and what the
/// planner tells its component for one run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpsStep {
    /// The tables its operations name, each once, in file order.
    pub tables: Vec<String>,
    /// Which phase a run carries out ([`OpsPhase::Expand`] as read).
    pub phase: OpsPhase,
    /// Versions of the other migrations expanded and not completed when
    /// the run was planned: their version schemas stay, and a table one of
    /// them changes is seen as its new version sees it.
    pub in_flight: Vec<String>,
}

/// A phase of an `ops.toml` migration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpsPhase {
    /// `up`: both shapes side by side, backfilled.
    Expand,
    /// `complete`: the old shape dropped.
    Complete,
    /// `down` before `complete`: the expand undone.
    Abort,
    /// `down` after `complete`, or after `Direct`: the whole change undone.
    Revert,
    /// `up` on MySQL/MariaDB and SQLite, which have no version schemas:
    /// the whole change at once, applied with nothing to complete.
    Direct,
}

impl OpsPhase {
    /// The name the component and checkpoints use.
    pub fn as_str(self) -> &'static str {
        match self {
            OpsPhase::Expand => "expand",
            OpsPhase::Complete => "complete",
            OpsPhase::Abort => "abort",
            OpsPhase::Revert => "revert",
            OpsPhase::Direct => "direct",
        }
    }

    /// Whether a run of the phase commits in batches: an expand commits its
    /// triggers before its backfill, a contract its scans before its DDL.
    pub fn batched(self) -> bool {
        matches!(self, OpsPhase::Expand | OpsPhase::Complete)
    }

    /// What a run of the phase did, as the terminal says it.
    pub fn done(self) -> &'static str {
        match self {
            OpsPhase::Expand => "expanded",
            OpsPhase::Complete => "completed",
            OpsPhase::Abort => "aborted",
            OpsPhase::Revert => "reverted",
            OpsPhase::Direct => "applied",
        }
    }
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

/// A migration as found on disk.
#[derive(Debug, Clone)]
pub struct Migration {
    /// Its version.
    pub version: Version,
    /// Its name (the part after the version).
    pub name: String,
    /// What applies it.
    pub up: Script,
    /// What reverts it; `None` makes it irreversible.
    pub down: Option<Script>,
    /// SHA-256 (hex) of the up script (or of `step.toml`, which pins its
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

    /// The down script of a SQL migration when it holds no statement (only
    /// comments, blank lines and `;`) and no line saying
    /// [`EMPTY_DOWN`]. `new` writes such a file, and running it would
    /// revert nothing while the history said "reverted", so `down` takes
    /// it for no down at all.
    pub fn empty_down(&self) -> Option<&Path> {
        let down = self.down_runs_nothing()?;
        let meant = down.text.lines().any(|l| l.trim_start().starts_with(EMPTY_DOWN));
        (!meant).then_some(down.path.as_path())
    }

    /// The down script of a SQL migration when it holds no statement,
    /// whether or not it says so on purpose: reverting by it runs nothing.
    pub fn down_runs_nothing(&self) -> Option<&Script> {
        self.down
            .as_ref()
            .filter(|down| matches!(self.step, Step::Sql) && !holds_statement(&down.text))
    }
}

/// The comment by which a down script with no statements says that
/// reverting its migration needs none.
pub const EMPTY_DOWN: &str = "-- waymark:empty-down";

/// Whether SQL text holds anything but comments (`--`, `#`, `/* */`),
/// whitespace and `;`. Whatever else starts a statement, in any dialect.
fn holds_statement(text: &str) -> bool {
    let mut rest = text.trim_start_matches('\u{feff}');
    loop {
        rest = rest.trim_start_matches(|c: char| c.is_whitespace() || c == ';');
        if rest.starts_with("--") || rest.starts_with('#') {
            rest = rest.split_once('\n').map_or("", |(_, after)| after);
        } else if let Some(after) = rest.strip_prefix("/*") {
            match after.split_once("*/") {
                Some((_, after)) => rest = after,
                // An unclosed comment is for the database to refuse.
                None => return true,
            }
        } else {
            return !rest.is_empty();
        }
    }
}

/// A file or folder beside the migrations that is not one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ignored {
    /// Which.
    pub path: PathBuf,
    /// Why it is not read.
    pub reason: String,
    /// Whether it looks like a mistake (a `.sql` file in a migration
    /// folder that is neither script), worth a warning on every run.
    pub suspicious: bool,
}

/// Every migration in a folder, in version order.
#[derive(Debug, Clone)]
pub struct MigrationSet {
    /// The folder.
    pub dir: PathBuf,
    /// The layout it was read in (never [`Layout::Auto`]).
    pub layout: Layout,
    /// The migrations, sorted by version.
    pub migrations: Vec<Migration>,
    /// Whether any migration uses the flat layout (so `new` follows it).
    pub flat: bool,
    /// What was found beside the migrations and not read as one.
    pub ignored: Vec<Ignored>,
}

/// Reads every migration in `dir` in `layout` ([`Layout::Auto`] detects
/// it). Fails on the first problem, naming the file, so that nothing runs
/// from a folder that is not fully understood.
pub fn discover(dir: &Path, layout: Layout) -> Result<MigrationSet, SourceError> {
    match std::fs::metadata(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(SourceError::NoFolder { dir: dir.to_owned() });
        }
        Ok(m) if !m.is_dir() => {
            return Err(SourceError::Io {
                path: dir.to_owned(),
                message: "not a folder; the migrations are a folder of them".to_owned(),
            });
        }
        _ => {}
    }
    let layout = match layout {
        Layout::Auto => layout::detect(dir)?,
        other => other,
    };
    let mut found = Found::default();
    let flat = match layout {
        Layout::Auto => unreachable!("detected above"),
        Layout::Waymark | Layout::Diesel | Layout::Sqlx | Layout::GolangMigrate => {
            native::read(dir, layout, &mut found)?
        }
        Layout::Dbmate | Layout::Goose => {
            sections::read(dir, layout, &mut found)?;
            true
        }
        Layout::Flyway => {
            flyway::read(dir, &mut found)?;
            true
        }
    };
    Ok(MigrationSet {
        dir: dir.to_owned(),
        layout,
        migrations: found.migrations.into_values().map(|(_, m)| m).collect(),
        flat,
        ignored: found.ignored,
    })
}

/// What a layout's reader collects.
#[derive(Default)]
pub(crate) struct Found {
    /// Each migration with the file or folder it came from.
    migrations: BTreeMap<Version, (PathBuf, Migration)>,
    ignored: Vec<Ignored>,
}

impl Found {
    /// Adds a migration; two with one version are an error naming both.
    pub(crate) fn add(&mut self, origin: PathBuf, migration: Migration) -> Result<(), SourceError> {
        if let Some((first, _)) = self.migrations.get(&migration.version) {
            return Err(SourceError::Duplicate {
                version: migration.version.to_string(),
                first: first.clone(),
                second: origin,
            });
        }
        self.migrations.insert(migration.version.clone(), (origin, migration));
        Ok(())
    }

    /// Notes an entry that is not a migration.
    pub(crate) fn ignore(&mut self, path: PathBuf, reason: &str) {
        self.ignored.push(Ignored {
            path,
            reason: reason.to_owned(),
            suspicious: false,
        });
    }

    /// Notes an entry that is not read but looks meant to be.
    pub(crate) fn suspect(&mut self, path: PathBuf, reason: &str) {
        self.ignored.push(Ignored {
            path,
            reason: reason.to_owned(),
            suspicious: true,
        });
    }
}

/// A migration run by the built-in SQL step.
pub(crate) fn sql_migration(version: Version, name: String, up: Script, down: Option<Script>) -> Migration {
    Migration {
        checksum: checksum(&up.text),
        version,
        name,
        up,
        down,
        step: Step::Sql,
    }
}

/// Splits `<version><separator><name>` and checks both parts.
pub(crate) fn parse_stem(stem: &str, separator: &str, path: &Path) -> Result<(Version, String), SourceError> {
    let bad = |reason: String| SourceError::BadName {
        path: path.to_owned(),
        reason,
    };
    let (version, name) = stem.split_once(separator).ok_or_else(|| {
        bad(format!(
            "expected <version>{separator}<name>, for example 20240101120000{separator}create_users"
        ))
    })?;
    let version = Version::parse(version).map_err(bad)?;
    if name.trim().is_empty() {
        return Err(bad("the name after the version is empty".to_owned()));
    }
    Ok((version, name.to_owned()))
}

/// The file name of `path` as UTF-8, or an error naming it.
pub(crate) fn file_name(path: &Path) -> Result<String, SourceError> {
    path.file_name()
        .and_then(|n| n.to_str())
        .map(str::to_owned)
        .ok_or_else(|| SourceError::BadName {
            path: path.to_owned(),
            reason: "the name is not valid UTF-8".to_owned(),
        })
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

pub(crate) fn read_sorted(dir: &Path) -> Result<Vec<PathBuf>, SourceError> {
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

#[cfg(test)]
mod tests {
    use super::{checksum, holds_statement};

    #[test]
    fn a_script_of_comments_holds_no_statement() {
        for empty in [
            "",
            "-- 1_a: down (reverts up)\n",
            "\u{feff}\n  ;\n-- Not reversible",
            "/* nothing\n to undo */ ;\n# MySQL's comment\n",
            "-- +goose Down\n-- +goose StatementBegin\n-- +goose StatementEnd\n",
        ] {
            assert!(!holds_statement(empty), "{empty:?}");
        }
        for statement in [
            "DROP TABLE a;",
            "-- x\nDROP TABLE a",
            "/* x */ SELECT 1",
            "/* unclosed",
            "'--'",
        ] {
            assert!(holds_statement(statement), "{statement:?}");
        }
    }

    #[test]
    fn checksum_ignores_line_endings_and_bom() {
        let unix = checksum("CREATE TABLE a (id int);\nSELECT 1;\n");
        assert_eq!(unix, checksum("CREATE TABLE a (id int);\r\nSELECT 1;\r\n"));
        assert_eq!(unix, checksum("\u{feff}CREATE TABLE a (id int);\rSELECT 1;\r"));
        assert_ne!(unix, checksum("CREATE TABLE a (id bigint);\nSELECT 1;\n"));
    }
}
