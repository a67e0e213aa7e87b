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
//! A failing input is written to `target/fuzz-findings/` and the run
//! exits non-zero.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use waymark_backup::Manifest;
use waymark_core::Version;

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

/// xorshift64*: small, fast, and the same sequence for the same seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

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

/// The byte offset of a character boundary of `text`, at random.
fn boundary(rng: &mut Rng, text: &str) -> usize {
    let mut at = rng.below(text.len() + 1);
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    at
}

/// The first character boundary of `text` at or after `at` (its end at
/// most).
fn ceil_boundary(text: &str, at: usize) -> usize {
    (at.min(text.len())..=text.len())
        .find(|e| text.is_char_boundary(*e))
        .unwrap_or(text.len())
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
    let mut body = MANIFEST_SEED[..end].to_owned();
    for _ in 0..1 + rng.below(4) {
        let at = boundary(rng, &body);
        match rng.below(3) {
            0 => body.insert_str(at, rng.pick::<&str>(JSON_TOKENS)),
            1 => {
                let end = ceil_boundary(&body, at + 1 + rng.below(32));
                body.replace_range(at..end, "");
            }
            _ => {
                let from = boundary(rng, MANIFEST_SEED);
                let to = ceil_boundary(MANIFEST_SEED, from + 1 + rng.below(64));
                body.insert_str(at, &MANIFEST_SEED[from..to]);
            }
        }
    }
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
    let targets: [(&'static str, Target); 5] = [
        ("split (PostgreSQL)", Target::Split(split::Dialect::Postgres)),
        ("split (MySQL/MariaDB)", Target::Split(split::Dialect::Mysql)),
        ("split (SQLite)", Target::Split(split::Dialect::Sqlite)),
        ("versions and their order", Target::Versions),
        ("backup manifest", Target::Manifest),
    ];
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
    let tallies = fuzz(&corpora, Duration::from_secs(seconds), execs, seed);
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
        // Mutation reaches places a split must survive.
        let mut rng = Rng(3);
        let seeds = vec!["SELECT 1;".to_owned()];
        let mutated: Vec<String> = (0..200).map(|_| mutate(&mut rng, &seeds)).collect();
        assert!(mutated.iter().any(|m| m.contains("$$") || m.contains("/*")));
        assert!(mutated.iter().all(|m| m.is_char_boundary(m.len())));
    }
}
