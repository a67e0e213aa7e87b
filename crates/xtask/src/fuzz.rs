//! `cargo xtask fuzz`: feeds the parsers that read a user's files inputs
//! made from real migrations, cut and spliced with the tokens that matter
//! to them, and checks properties of what comes out, not only that
//! nothing panics. On stable Rust, with a seeded generator, so a run can
//! be repeated exactly.
//!
//! Targets:
//! - the statement splitter of each dialect (`plugins/sql/src/split.rs`,
//!   compiled here natively): it never panics; its statements are pieces
//!   of the input, in order, apart, none blank, each on the line it says;
//! - `Version::parse` and the order of versions: a version parsed is its
//!   own text, and the order is total (antisymmetric and transitive) over
//!   any mix of versions;
//! - a backup manifest (`Manifest::from_text`), its body mutated and signed
//!   again so that the parser, not only the digest, is reached: it never
//!   panics, and one that parses writes out as text that parses to the
//!   same text again.
//!
//! - the drop finder (`waymark_core::fuzzing::drops`): what it finds
//!   dropped its quick scan lets through, and each name it reports is in
//!   the text;
//! - the permission classifier (`waymark_core::fuzzing::permitted`): a
//!   statement a narrower grant allows, every wider grant allows (read-only,
//!   then writing one table, then read-write), and a refusal says why;
//! - chunk decoding (`records`, `split_rows`, `last_key`): records and
//!   runs of rows are pieces of the chunk that put together give it back,
//!   every run but the last is whole rows, and nothing panics on a
//!   damaged chunk;
//! - a folder of migrations (`discover`): file names in every layout's
//!   form and a `step.toml` and `ops.toml` mutated with TOML's tokens;
//!   what it reads is in strictly rising versions, and what it refuses
//!   names the folder or a file in it;
//! - `waymark.toml`, through its unit test in the binary
//!   (`config::tests::fuzz_waymark_toml`, run with the inputs to make):
//!   reading it never panics, and every refusal names the file.
//!
//! A failing input is written to `target/fuzz-findings/` and the run
//! exits non-zero.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use waymark_backup::Manifest;
use waymark_core::{Access, Dialect, Layout, Version};
use waymark_db::TableInfo;
use waymark_testkit::fuzz::{Rng, TOML_TOKENS, boundary, ceil_boundary, splice};

/// A real manifest (a SQLite set of the quickstart's migrations), the
/// manifest target's seed.
const MANIFEST_SEED: &str = include_str!("../fuzz-seeds/manifest.json");

/// What a manifest's JSON is made of.
const JSON_TOKENS: &[&str] = &[
    "\"",
    "{",
    "}",
    "[",
    "]",
    ",",
    ":",
    "null",
    "true",
    "0",
    "-1",
    "18446744073709551616",
    "1e400",
    "\"\"",
    "\\u0000",
    "\\ud800",
    "é",
    "\"format\": \"waymark-backup/9\"",
    "\"pages\": {}",
    "\"timing\": null",
    "\"rows_xxh3\": \"zz\"",
    "\"chunks\": []",
    "\"tables\": []",
    "\"extra\": 1",
    "\n",
];

// The splitter is the SQL step's, compiled for wasm in its own workspace;
// here it is the same file compiled natively.
#[allow(dead_code)]
#[path = "../../../plugins/sql/src/split.rs"]
mod split;

/// The dialects, for the targets that read SQL or rows of any.
const DIALECTS: [Dialect; 3] = [Dialect::Postgres, Dialect::Mysql, Dialect::Sqlite];

/// Fields of a row in MySQL's and SQLite's canonical form (SQL literals).
const LITERALS: &[&str] = &[
    "1", "-7", "NULL", "'a'", "'it''s'", "'\\''", "X'00ff'", "'é'", "1.5e3", "''", "'a,b'", "'('", "')'",
];

/// Fields of a row of PostgreSQL's `COPY` text.
const COPY_FIELDS: &[&str] = &["1", "\\N", "a\\tb", "\\\\", "é", "", "x\\", "\\x41", "'q'", "\\n"];

/// The pieces of a migration's file name, in every layout's form.
const NAME_VERSIONS: &[&str] = &[
    "1",
    "2",
    "001",
    "10",
    "20240101120000",
    "2024-01-01-120000",
    "V1",
    "V1.1",
    "V2",
    "U1",
    "R",
    "1.2",
    "0",
    "",
];
const NAME_SEPARATORS: &[&str] = &["_", "__", "-", "", "."];
const NAME_WORDS: &[&str] = &["init", "add_users", "é", "", "a.b", "up", "down", " "];
const NAME_ENDS: &[&str] = &[
    ".sql",
    ".up.sql",
    ".down.sql",
    "/up.sql",
    "/down.sql",
    "/step.toml",
    "/ops.toml",
    "",
    ".txt",
    "/",
];

/// A `step.toml` and an `ops.toml` as written, the seeds of the folder
/// target's mutated ones.
const STEP_SEED: &str = "component = \"../../steps/greet.wasm\"\nsha256 = \"00\"\nup = \"hello\"\n\
    transaction = \"migration\"\n\n[permissions]\naccess = \"read-write\"\nwrite = [\"users\"]\n\n\
    [limits]\nmemory_mib = 64\ntimeout = \"30s\"\n\n[drops]\ntables = [\"old\"]\ncolumns = [\"users.note\"]\n";
const OPS_SEED: &str = "[backfill]\nbatch_size = 100\n\n[[op]]\nop = \"add_column\"\ntable = \"users\"\n\
    column = \"note\"\ntype = \"text\"\n\n[[op]]\nop = \"rename_column\"\ntable = \"users\"\nfrom = \"a\"\nto = \"b\"\n";

/// The keys and values of `step.toml` and `ops.toml`, on top of TOML's
/// own tokens.
const TOML_KEYS: &[&str] = &[
    "op = \"sql\"",
    "[permissions]",
    "access = \"tables\"",
    "timeout = \"1y\"",
    "memory_mib = 0",
];

/// What a statement boundary hangs on, in one dialect or another.
const TOKENS: &[&str] = &[
    ";",
    ";",
    "\n",
    " ",
    "'",
    "''",
    "\"",
    "`",
    "$$",
    "$body$",
    "$1",
    "--",
    "-- ",
    "#",
    "/*",
    "*/",
    "/*!",
    "*/;",
    "\\",
    "\\'",
    "E'",
    "e'\\n'",
    "[",
    "]",
    "BEGIN",
    "BEGIN ATOMIC",
    "END",
    "END;",
    "CASE",
    "END CASE",
    "IF",
    "END IF",
    "CREATE TRIGGER t AFTER INSERT ON a FOR EACH ROW BEGIN ",
    "CREATE FUNCTION f() RETURNS int AS ",
    "DELIMITER //\n",
    "DELIMITER ;\n",
    "//",
    "-- +goose StatementBegin\n",
    "-- +goose StatementEnd\n",
    "-- +goose Up\n",
    "DO $$ BEGIN ",
    "LANGUAGE plpgsql",
    "SELECT 1",
    "é",
    "日本",
    "😀",
    "\r\n",
    "\t",
    "\u{feff}",
    "x",
    "a_b",
];

/// Starting points: the real migrations under `corpora` (each at most
/// 64 KiB, at most `limit` of them), and a few written here.
fn seeds(corpora: &Path, limit: usize) -> Vec<String> {
    let mut found = vec![
        String::new(),
        "CREATE TABLE a (id int);\nINSERT INTO a VALUES (1);\n".to_owned(),
        "CREATE FUNCTION f() RETURNS trigger AS $$ BEGIN RETURN NEW; END $$ LANGUAGE plpgsql;\n".to_owned(),
        "DELIMITER //\nCREATE PROCEDURE p() BEGIN SELECT 1; END//\nDELIMITER ;\n".to_owned(),
        "CREATE TRIGGER t AFTER INSERT ON a BEGIN UPDATE a SET id = 1; END;\n".to_owned(),
    ];
    let mut stack = vec![corpora.to_owned()];
    let mut files: Vec<PathBuf> = Vec::new();
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "sql") {
                files.push(path);
            }
        }
    }
    files.sort();
    // Spread over the corpora, not the first few projects.
    let step = (files.len() / limit.max(1)).max(1);
    for path in files.iter().step_by(step).take(limit) {
        if let Ok(text) = std::fs::read_to_string(path)
            && text.len() <= 64 * 1024
        {
            found.push(text);
        }
    }
    found
}

/// A seed cut and spliced: tokens put in, stretches taken out or
/// repeated, pieces of another seed grafted on.
fn mutate(rng: &mut Rng, seeds: &[String]) -> String {
    let mut text = rng.pick(seeds).clone();
    for _ in 0..1 + rng.below(8) {
        let at = boundary(rng, &text);
        match rng.below(5) {
            0 | 1 => text.insert_str(at, rng.pick::<&str>(TOKENS)),
            2 => {
                let end = ceil_boundary(&text, boundary(rng, &text).clamp(at, at + 64));
                text.replace_range(at..end, "");
            }
            3 => {
                let end = ceil_boundary(&text, boundary(rng, &text).clamp(at, at + 64));
                let piece = text[at..end].to_owned();
                text.insert_str(at, &piece);
            }
            _ => {
                let other = rng.pick(seeds);
                let from = boundary(rng, other);
                let to = ceil_boundary(other, from + 1 + rng.below(128));
                text.insert_str(at, &other[from..to]);
            }
        }
    }
    text
}

/// A version-like string: digits and the separators, mostly, with now and
/// then something that is not a version at all.
fn version_text(rng: &mut Rng) -> String {
    const PARTS: &[&str] = &[
        "0",
        "1",
        "2",
        "9",
        "10",
        "001",
        "20240101",
        "2024-01-01-120000",
        "-",
        ".",
        "_",
        "x",
        "",
    ];
    let mut text = String::new();
    for _ in 0..1 + rng.below(6) {
        text.push_str(rng.pick::<&str>(PARTS));
        if rng.below(4) == 0 {
            text.push_str(&rng.below(100_000_000_000).to_string());
        }
    }
    text
}

/// The properties of one split; an error says which failed. `true` when
/// the text was split, `false` when it was refused.
fn check_split(src: &str, dialect: split::Dialect) -> Result<bool, String> {
    let statements = match std::panic::catch_unwind(|| split::split(src, dialect)) {
        Err(panic) => return Err(format!("panicked: {}", panic_text(&panic))),
        // Text that cannot be split is refused with its line: fine.
        Ok(Err(e)) => {
            let lines = src.matches('\n').count() as u32 + 1;
            return match e.line {
                0 => Err(format!("refused at line 0: {}", e.message)),
                n if n > lines => Err(format!("refused at line {n} of {lines}: {}", e.message)),
                _ => Ok(false),
            };
        }
        Ok(Ok(statements)) => statements,
    };
    check_statements(src, &statements).map(|()| true)
}

/// The statements split from `src` are pieces of it, in order, apart,
/// none blank, each on the line it says.
fn check_statements(src: &str, statements: &[split::Statement<'_>]) -> Result<(), String> {
    let base = src.as_ptr() as usize;
    let mut end = 0;
    for s in statements {
        let start = (s.text.as_ptr() as usize).wrapping_sub(base);
        if start > src.len() || start + s.text.len() > src.len() {
            return Err(format!("statement {:?} is not a piece of the input", s.text));
        }
        if start < end {
            return Err(format!("statement {:?} overlaps the one before", s.text));
        }
        if s.text.trim().is_empty() {
            return Err(format!("a blank statement at line {}", s.line));
        }
        let line = 1 + src[..start].matches('\n').count() as u32;
        if s.line != line {
            return Err(format!(
                "statement {:?} says line {}, but starts on line {line}",
                s.text, s.line
            ));
        }
        end = start + s.text.len();
    }
    Ok(())
}

/// The manifest seed's body (its text without its own digest), mutated
/// with JSON's tokens and pieces of itself, then signed again.
fn manifest_text(rng: &mut Rng) -> String {
    let end = MANIFEST_SEED
        .rfind(",\n  \"manifest_sha256\"")
        .expect("the seed is signed");
    let rounds = 1 + rng.below(4);
    let body = splice(rng, &MANIFEST_SEED[..end], JSON_TOKENS, rounds, (32, 64));
    waymark_backup::signed(&body)
}

/// A manifest that parses writes out as text that parses, and writes out
/// as the same text again. `true` when it parsed.
fn check_manifest(text: &str) -> Result<bool, String> {
    let path = Path::new("manifest.json");
    let parsed = std::panic::catch_unwind(|| Manifest::from_text(text, path))
        .map_err(|panic| format!("panicked: {}", panic_text(&panic)))?;
    let Ok(manifest) = parsed else { return Ok(false) };
    let written = manifest.to_text();
    let again = Manifest::from_text(&written, path).map_err(|e| format!("its own text does not parse: {e}"))?;
    if again.to_text() != written {
        return Err("written twice, it differs".to_owned());
    }
    Ok(true)
}

/// The properties of versions: each parsed one is its own text, and the
/// order is antisymmetric and transitive over `a`, `b` and `c`. `true`
/// when all three parsed.
fn check_versions(a: &str, b: &str, c: &str) -> Result<bool, String> {
    let parsed = std::panic::catch_unwind(|| [a, b, c].map(|raw| Version::parse(raw).ok()))
        .map_err(|panic| format!("panicked: {}", panic_text(&panic)))?;
    for (raw, v) in [a, b, c].iter().zip(&parsed) {
        if let Some(v) = v
            && v.as_str() != *raw
        {
            return Err(format!("{raw:?} parsed as {:?}", v.as_str()));
        }
    }
    let [Some(a), Some(b), Some(c)] = parsed else {
        return Ok(false);
    };
    if a.cmp(&b) != b.cmp(&a).reverse() {
        return Err(format!("{a} and {b} compare both ways"));
    }
    if a <= b && b <= c && a > c {
        return Err(format!("{a} <= {b} <= {c}, but {a} > {c}"));
    }
    Ok(true)
}

/// The drop finder never panics; what it finds dropped, its quick scan
/// lets through (or `up` would skip the statement and keep no copy); and
/// each name it reports is in the text, but for a quoted name with its
/// quote doubled inside. `true` when it found something dropped.
fn check_drops(sql: &str, dialect: Dialect) -> Result<bool, String> {
    let (may_drop, drops, _) = std::panic::catch_unwind(|| waymark_core::fuzzing::drops(dialect, sql))
        .map_err(|panic| format!("panicked: {}", panic_text(&panic)))?;
    if !drops.is_empty() && !may_drop {
        return Err(format!("finds {drops:?} dropped, which its quick scan passes over"));
    }
    let text = sql.to_lowercase();
    for ident in drops.iter().flat_map(|d| d.table.iter().chain(&d.column)) {
        if !ident.value.contains(['"', '`']) && !text.contains(&ident.value.to_lowercase()) {
            return Err(format!("reports {:?} dropped, which is not in the text", ident.value));
        }
    }
    Ok(!drops.is_empty())
}

/// The permission classifier never panics; what a narrower grant allows,
/// a wider one allows (read-only, then writing `table`, then read-write);
/// a refusal says why. `true` when read-only allows it.
fn check_permissions(sql: &str, dialect: Dialect, table: &str) -> Result<bool, String> {
    let grants = [
        Access::ReadOnly,
        Access::Tables(vec![table.to_owned()]),
        Access::ReadWrite,
    ];
    let verdicts = std::panic::catch_unwind(|| {
        grants
            .each_ref()
            .map(|g| waymark_core::fuzzing::permitted(g, dialect, sql))
    })
    .map_err(|panic| format!("panicked: {}", panic_text(&panic)))?;
    for (i, pair) in verdicts.windows(2).enumerate() {
        if let (Ok(()), Err(refusal)) = (&pair[0], &pair[1]) {
            return Err(format!(
                "allowed under {:?}, refused under the wider {:?}: {refusal}",
                grants[i],
                grants[i + 1]
            ));
        }
    }
    if let Some(Err(blank)) = verdicts.iter().find(|v| v.as_ref().is_err_and(|e| e.trim().is_empty())) {
        return Err(format!("refused without a reason: {blank:?}"));
    }
    Ok(verdicts[0].is_ok())
}

/// A word of `text` to grant writes to, or a name of its own.
fn a_word(rng: &mut Rng, text: &str) -> String {
    let words: Vec<&str> = text
        .split(|c: char| !c.is_ascii_alphanumeric() && c != '_')
        .filter(|w| !w.is_empty())
        .collect();
    if words.is_empty() || rng.below(4) == 0 {
        return "users".to_owned();
    }
    rng.pick(&words).to_lowercase()
}

/// Rows in `dialect`'s canonical form, then damaged: cut, a bit flipped,
/// a byte put in or overwritten.
fn chunk_bytes(rng: &mut Rng, dialect: Dialect) -> Vec<u8> {
    let mut raw = Vec::new();
    for _ in 0..rng.below(8) {
        let fields = 1 + rng.below(4);
        if dialect == Dialect::Postgres {
            let row: Vec<&str> = (0..fields).map(|_| *rng.pick(COPY_FIELDS)).collect();
            raw.extend_from_slice(row.join("\t").as_bytes());
            raw.push(b'\n');
        } else {
            let row: Vec<&str> = (0..fields).map(|_| *rng.pick(LITERALS)).collect();
            let body = row.join(",");
            raw.extend_from_slice(&(body.len() as u32).to_le_bytes());
            raw.extend_from_slice(body.as_bytes());
        }
    }
    for _ in 0..rng.below(3) {
        if raw.is_empty() {
            break;
        }
        let at = rng.below(raw.len());
        match rng.below(4) {
            0 => raw.truncate(at),
            1 => raw[at] ^= 1 << rng.below(8),
            2 => raw.insert(at, rng.next_u64() as u8),
            _ => raw[at] = 0xff,
        }
    }
    raw
}

/// Records and runs of rows are pieces of the chunk that put together
/// give it back; only the last record may be cut short; every run but the
/// last is whole rows; nothing panics, the last key included. `true` when
/// the chunk is whole rows.
fn check_chunk(raw: &[u8], dialect: Dialect) -> Result<bool, String> {
    let table = TableInfo {
        name: "t".to_owned(),
        columns: (0..4).map(|i| format!("c{i}")).collect(),
        types: vec!["text".to_owned(); 4],
        primary_key: vec!["c0".to_owned(), "c2".to_owned()],
    };
    let checked = std::panic::catch_unwind(|| {
        let records: Vec<Result<&[u8], &[u8]>> = waymark_db::records(raw).collect();
        let runs: Vec<Vec<&[u8]>> = (1..=3)
            .map(|parts| waymark_db::split_rows(dialect, raw, parts))
            .collect();
        let _ = waymark_db::last_key(dialect, &table, raw);
        (records, runs)
    });
    let (records, runs) = checked.map_err(|panic| format!("panicked: {}", panic_text(&panic)))?;
    let whole = if dialect == Dialect::Postgres {
        raw.is_empty() || raw.ends_with(b"\n")
    } else {
        let joined: Vec<u8> = records
            .iter()
            .flat_map(|r| r.unwrap_or_else(|cut| cut))
            .copied()
            .collect();
        if joined != raw {
            return Err("the records put together are not the chunk".to_owned());
        }
        if let Some(i) = records.iter().position(Result::is_err)
            && i + 1 != records.len()
        {
            return Err(format!("record {i} is cut short but not the last"));
        }
        for (i, record) in records.iter().enumerate() {
            if let Ok(r) = record
                && r.len() != 4 + u32::from_le_bytes([r[0], r[1], r[2], r[3]]) as usize
            {
                return Err(format!("record {i} is not as long as it says"));
            }
        }
        records.iter().all(Result::is_ok)
    };
    for (parts, runs) in (1..=3).zip(&runs) {
        if runs.concat() != raw {
            return Err(format!("the {parts} run(s) put together are not the chunk"));
        }
        if runs.is_empty() || runs.len() > parts {
            return Err(format!("{} run(s) for {parts} part(s)", runs.len()));
        }
        for (i, run) in runs.iter().enumerate().take(runs.len() - 1) {
            let ends_a_row = match dialect {
                Dialect::Postgres => run.ends_with(b"\n"),
                _ => waymark_db::records(run).all(|r| r.is_ok()),
            };
            if !ends_a_row {
                return Err(format!("run {i} of {parts} ends inside a row"));
            }
        }
    }
    Ok(whole)
}

/// One to four files of a migrations folder: each a name in some layout's
/// form, and its text (a `step.toml` or `ops.toml` mutated with TOML's
/// tokens).
fn folder_files(rng: &mut Rng) -> Vec<(String, String)> {
    (0..1 + rng.below(4))
        .map(|_| {
            let end = *rng.pick(NAME_ENDS);
            let name = format!(
                "{}{}{}{end}",
                rng.pick(NAME_VERSIONS),
                rng.pick(NAME_SEPARATORS),
                rng.pick(NAME_WORDS)
            );
            let text = match end {
                "/step.toml" => toml_text(rng, STEP_SEED),
                "/ops.toml" => toml_text(rng, OPS_SEED),
                _ => "SELECT 1;\n".to_owned(),
            };
            (name, text)
        })
        .collect()
}

/// `seed` cut and spliced with TOML's tokens and pieces of itself.
fn toml_text(rng: &mut Rng, seed: &str) -> String {
    let tokens: Vec<&str> = TOML_TOKENS.iter().chain(TOML_KEYS).copied().collect();
    let rounds = rng.below(4);
    splice(rng, seed, &tokens, rounds, (24, 40))
}

/// `files` written into a fresh `scratch/migrations` and read as a
/// folder of migrations: nothing panics; what is read is in strictly
/// rising versions; a refusal names the folder or a file in it. `true`
/// when the folder was read.
fn check_folder(scratch: &Path, files: &[(String, String)]) -> Result<bool, String> {
    let dir = scratch.join("migrations");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| format!("making {}: {e}", dir.display()))?;
    for (name, text) in files {
        let path = dir.join(name);
        if name.ends_with('/') {
            let _ = std::fs::create_dir_all(&path);
            continue;
        }
        if let Some(parent) = path.parent() {
            let _ = std::fs::create_dir_all(parent);
        }
        // A name another file's folder already took is skipped.
        let _ = std::fs::write(&path, text);
    }
    let read = std::panic::catch_unwind(|| waymark_core::discover(&dir, Layout::Auto))
        .map_err(|panic| format!("panicked: {}", panic_text(&panic)))?;
    match read {
        Ok(set) => {
            for pair in set.migrations.windows(2) {
                if pair[0].version >= pair[1].version {
                    return Err(format!(
                        "read {} before {}",
                        pair[0].version.as_str(),
                        pair[1].version.as_str()
                    ));
                }
            }
            Ok(true)
        }
        Err(e) => {
            let message = e.to_string();
            if message.contains(&*dir.to_string_lossy()) {
                Ok(false)
            } else {
                Err(format!("refused naming no file: {message}"))
            }
        }
    }
}

/// Bytes as hex, for a finding's file.
fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn panic_text(panic: &Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
        .unwrap_or_else(|| "a panic without a message".to_owned())
}

/// What is fed.
#[derive(Clone, Copy)]
enum Target {
    Split(split::Dialect),
    Versions,
    Manifest,
    Drops,
    Permissions,
    Chunks,
    Folder,
}

/// What a run did, per target.
pub(crate) struct Tally {
    pub(crate) target: &'static str,
    pub(crate) execs: u64,
    /// Inputs the code under test accepted (split, parsed), not refused.
    pub(crate) accepted: u64,
    pub(crate) findings: Vec<(String, String)>,
}

/// Runs every target in turn for `budget` each (or until `execs` inputs),
/// from `seed`.
pub(crate) fn fuzz(corpora: &Path, budget: Duration, execs: u64, seed: u64) -> Vec<Tally> {
    let seeds = seeds(corpora, 2000);
    // The panics of the code under test are caught and reported; their
    // default message would only bury the summary. Any other panic (of
    // this file's own code) is shown again once the hook is put back.
    let _quiet = QuietPanics::new();
    let mut tallies = Vec::new();
    let targets: [(&'static str, Target); 9] = [
        ("split (PostgreSQL)", Target::Split(split::Dialect::Postgres)),
        ("split (MySQL/MariaDB)", Target::Split(split::Dialect::Mysql)),
        ("split (SQLite)", Target::Split(split::Dialect::Sqlite)),
        ("versions and their order", Target::Versions),
        ("backup manifest", Target::Manifest),
        ("drop finder", Target::Drops),
        ("permission classifier", Target::Permissions),
        ("chunk decoding", Target::Chunks),
        ("migration folders", Target::Folder),
    ];
    // The folder target's scratch folder, made afresh for each input.
    let scratch = tempfile::tempdir().expect("a temporary folder");
    for (i, (target, kind)) in targets.into_iter().enumerate() {
        let mut rng = Rng(seed.wrapping_add(i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
        let mut tally = Tally {
            target,
            execs: 0,
            accepted: 0,
            findings: Vec::new(),
        };
        let started = Instant::now();
        while tally.execs < execs && started.elapsed() < budget && tally.findings.len() < 10 {
            // The clock is read once per thousand inputs.
            for _ in 0..1000 {
                let (input, checked) = match kind {
                    Target::Split(d) => {
                        let input = mutate(&mut rng, &seeds);
                        let checked = check_split(&input, d);
                        (input, checked)
                    }
                    Target::Versions => {
                        let [a, b, c] = [(); 3].map(|_| version_text(&mut rng));
                        let checked = check_versions(&a, &b, &c);
                        (format!("{a}\n{b}\n{c}"), checked)
                    }
                    Target::Manifest => {
                        let input = manifest_text(&mut rng);
                        let checked = check_manifest(&input);
                        (input, checked)
                    }
                    Target::Drops => {
                        let input = mutate(&mut rng, &seeds);
                        let dialect = *rng.pick(&DIALECTS);
                        let checked = check_drops(&input, dialect);
                        (format!("{dialect:?}\n{input}"), checked)
                    }
                    Target::Permissions => {
                        let input = mutate(&mut rng, &seeds);
                        let dialect = *rng.pick(&DIALECTS);
                        let table = a_word(&mut rng, &input);
                        let checked = check_permissions(&input, dialect, &table);
                        (format!("{dialect:?} {table}\n{input}"), checked)
                    }
                    Target::Chunks => {
                        let dialect = *rng.pick(&DIALECTS);
                        let raw = chunk_bytes(&mut rng, dialect);
                        let checked = check_chunk(&raw, dialect);
                        (format!("{dialect:?}\n{}", hex(&raw)), checked)
                    }
                    Target::Folder => {
                        let files = folder_files(&mut rng);
                        let checked = check_folder(scratch.path(), &files);
                        let listing: Vec<String> = files.iter().map(|(n, t)| format!("== {n}\n{t}")).collect();
                        (listing.join("\n"), checked)
                    }
                };
                tally.execs += 1;
                match checked {
                    Ok(accepted) => tally.accepted += u64::from(accepted),
                    Err(problem) => {
                        tally.findings.push((input, problem));
                        break;
                    }
                }
            }
        }
        tallies.push(tally);
    }
    tallies
}

/// A panic hook, as `std::panic::take_hook` gives it back.
type Hook = Box<dyn Fn(&std::panic::PanicHookInfo<'_>) + Sync + Send + 'static>;

/// Silences the panic hook until dropped, then puts the previous one back.
struct QuietPanics(Option<Hook>);

impl QuietPanics {
    fn new() -> Self {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(|_| {}));
        QuietPanics(Some(previous))
    }
}

impl Drop for QuietPanics {
    fn drop(&mut self) {
        if let Some(previous) = self.0.take() {
            std::panic::set_hook(previous);
        }
    }
}

/// `waymark.toml`'s reader is the binary's own, out of this crate's
/// reach: its fuzzing is a unit test there (`config::tests`), run here
/// with the inputs to make, and its count read from what it prints.
fn waymark_toml(root: &Path, execs: u64) -> anyhow::Result<Tally> {
    let out = std::process::Command::new(env!("CARGO"))
        .current_dir(root)
        .args(["test", "-q", "-p", "waymark", "--bin", "waymark", "--", "--exact"])
        .args(["config::tests::fuzz_waymark_toml", "--nocapture"])
        .env("WAYMARK_FUZZ_EXECS", execs.to_string())
        .output()
        .context("running waymark.toml's fuzzing")?;
    let printed = String::from_utf8_lossy(&out.stderr);
    let counted = printed
        .lines()
        .find_map(|l| l.strip_prefix("waymark.toml: "))
        .and_then(|l| {
            let (inputs, rest) = l.split_once(" inputs, ")?;
            Some((inputs.parse().ok()?, rest.strip_suffix(" accepted")?.parse().ok()?))
        });
    let mut tally = Tally {
        target: "waymark.toml",
        execs: 0,
        accepted: 0,
        findings: Vec::new(),
    };
    match counted {
        Some((inputs, accepted)) if out.status.success() => (tally.execs, tally.accepted) = (inputs, accepted),
        _ => tally.findings.push((
            String::new(),
            format!("its test failed:\n{printed}{}", String::from_utf8_lossy(&out.stdout)),
        )),
    }
    Ok(tally)
}

/// `cargo xtask fuzz [--seconds N] [--execs N] [--seed N] [--corpus DIR]`.
pub(crate) fn run(args: &[String]) -> anyhow::Result<()> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let (mut seconds, mut execs, mut seed) = (30u64, u64::MAX, 1u64);
    let mut corpora = root.join("../shared/corpora");
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        let mut value = || args.next().with_context(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--seconds" => seconds = value()?.parse().context("--seconds")?,
            "--execs" => execs = value()?.parse().context("--execs")?,
            "--seed" => seed = value()?.parse().context("--seed")?,
            "--corpus" => corpora = PathBuf::from(value()?),
            other => bail!("cargo xtask fuzz: unknown argument {other}"),
        }
    }
    let started = Instant::now();
    let mut tallies = fuzz(&corpora, Duration::from_secs(seconds), execs, seed);
    tallies.push(waymark_toml(&root, execs.min(seconds.saturating_mul(5_000)))?);
    let findings_dir = root.join("target/fuzz-findings");
    let mut total = (0u64, 0usize);
    println!("| target | execs | accepted | findings |\n|---|---|---|---|");
    for t in &tallies {
        println!("| {} | {} | {} | {} |", t.target, t.execs, t.accepted, t.findings.len());
        total.0 += t.execs;
        total.1 += t.findings.len();
        for (n, (input, problem)) in t.findings.iter().enumerate() {
            std::fs::create_dir_all(&findings_dir)?;
            let name = format!("{}-{n}.txt", t.target.split(' ').next().unwrap_or("target"));
            let path = findings_dir.join(name);
            std::fs::write(&path, input)?;
            eprintln!("{}: {problem} (input in {})", t.target, path.display());
        }
    }
    println!(
        "| **total** | **{}** | | **{}** |\n\nseed {seed}, {:.0} s, {} ({} cores)",
        total.0,
        total.1,
        started.elapsed().as_secs_f64(),
        std::env::consts::ARCH,
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    if total.1 > 0 {
        bail!("{} finding(s); each input is in {}", total.1, findings_dir.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A short run of every target on the real corpora finds nothing; the
    /// long run is `cargo xtask fuzz`.
    #[test]
    fn a_short_fuzz_run_finds_nothing() {
        let corpora = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/corpora");
        for t in fuzz(&corpora, Duration::from_secs(5), 20_000, 7) {
            assert!(t.execs >= 1000, "{}: only {} inputs", t.target, t.execs);
            assert!(t.findings.is_empty(), "{}: {:?}", t.target, t.findings);
        }
    }

    /// The checks fail where they should: a statement out of order, one
    /// that is not a piece of its input, a blank one and a wrong line are
    /// each found.
    #[test]
    fn the_properties_catch_what_they_are_for() {
        use split::Statement;
        let src = "SELECT 1;\nSELECT 2;";
        // Owned, so the compiler cannot fold it into `src`'s bytes.
        let elsewhere = String::from("SELECT 1");
        assert!(check_split(src, split::Dialect::Postgres).is_ok());
        let first = Statement {
            line: 1,
            text: &src[..8],
        };
        let second = Statement {
            line: 2,
            text: &src[10..18],
        };
        assert!(check_statements(src, &[first, second]).is_ok());
        let cases: [(Vec<Statement<'_>>, &str); 4] = [
            (
                vec![
                    Statement {
                        line: 2,
                        text: &src[10..18],
                    },
                    Statement {
                        line: 1,
                        text: &src[..8],
                    },
                ],
                "overlaps",
            ),
            (
                vec![Statement {
                    line: 1,
                    text: &elsewhere,
                }],
                "not a piece",
            ),
            (
                vec![Statement {
                    line: 1,
                    text: &src[9..10],
                }],
                "blank",
            ),
            (
                vec![Statement {
                    line: 1,
                    text: &src[10..18],
                }],
                "says line 1, but starts on line 2",
            ),
        ];
        for (statements, problem) in cases {
            let found = check_statements(src, &statements).unwrap_err();
            assert!(found.contains(problem), "{found}");
        }
        // The manifest seed parses and writes out as itself.
        let seed = Manifest::from_text(MANIFEST_SEED, Path::new("seed")).unwrap();
        assert_eq!(seed.to_text(), MANIFEST_SEED);
        assert!(check_manifest(MANIFEST_SEED).is_ok());
        assert!(check_versions("1", "2", "10").is_ok());
        assert!(check_versions("1", "1.0", "01").is_ok());
        // The new targets' checks pass what they should, and say so.
        assert_eq!(check_drops("DROP TABLE users;", Dialect::Postgres), Ok(true));
        assert_eq!(check_drops("SELECT 'drop table x';", Dialect::Mysql), Ok(false));
        assert_eq!(check_permissions("SELECT 1", Dialect::Postgres, "users"), Ok(true));
        assert_eq!(
            check_permissions("INSERT INTO users VALUES (1)", Dialect::Postgres, "users"),
            Ok(false)
        );
        let row = |body: &str| [&(body.len() as u32).to_le_bytes()[..], body.as_bytes()].concat();
        let two = [row("1,'a'"), row("2,'b'")].concat();
        assert_eq!(check_chunk(&two, Dialect::Sqlite), Ok(true));
        assert_eq!(check_chunk(&two[..two.len() - 1], Dialect::Mysql), Ok(false));
        assert_eq!(check_chunk(b"1\ta\n2\tb\n", Dialect::Postgres), Ok(true));
        let scratch = tempfile::tempdir().unwrap();
        let file = |name: &str, text: &str| (name.to_owned(), text.to_owned());
        assert_eq!(
            check_folder(
                scratch.path(),
                &[file("1_a.sql", "SELECT 1;"), file("2_b.sql", "SELECT 2;")]
            ),
            Ok(true)
        );
        // Two files of one version: refused, naming both.
        assert_eq!(
            check_folder(
                scratch.path(),
                &[file("1_a.sql", "SELECT 1;"), file("01_b.sql", "SELECT 2;")]
            ),
            Ok(false)
        );
        // Mutation reaches places a split must survive.
        let mut rng = Rng(3);
        let seeds = vec!["SELECT 1;".to_owned()];
        let mutated: Vec<String> = (0..200).map(|_| mutate(&mut rng, &seeds)).collect();
        assert!(mutated.iter().any(|m| m.contains("$$") || m.contains("/*")));
        assert!(mutated.iter().all(|m| m.is_char_boundary(m.len())));
    }
}
