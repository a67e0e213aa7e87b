//! `waymark.toml` and how it combines with flags and the environment:
//! a flag (or its environment variable) wins over the file, which wins over
//! the defaults.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use waymark_core::{Layout, LockPolicy, PreimageMode};

use crate::cli::{Global, Wait, parse_wait};

/// The config file, as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    database_url: Option<String>,
    migrations: Option<PathBuf>,
    layout: Option<String>,
    #[serde(default)]
    init_sql: Vec<String>,
    lock_timeout: Option<String>,
    connect_timeout: Option<String>,
    #[serde(default)]
    history: HistoryFile,
    #[serde(default)]
    step: StepFile,
    #[serde(default)]
    backup: BackupFile,
    #[serde(default)]
    locks: LocksFile,
    #[serde(default)]
    lint: LintFile,
    /// `[fleet]`: read whole, with its lines, by `waymark-fleet` when a
    /// `fleet` command runs; here it is only let through.
    fleet: Option<toml::Value>,
}

/// `[lint]`: how findings are weighed.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct LintFile {
    small_table_rows: Option<u64>,
    /// `[lint.severity]`: rule id to `warning` or `error`.
    #[serde(default)]
    severity: std::collections::BTreeMap<String, String>,
}

/// `[locks]`: how migrations wait for other sessions' locks.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct LocksFile {
    timeout: Option<String>,
    first_timeout: Option<String>,
    retries: Option<u32>,
    max_wait: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct BackupFile {
    dir: Option<PathBuf>,
    #[serde(default)]
    before_up: bool,
    preimages: Option<PreimagesFile>,
    chunk_kib: Option<u64>,
    jobs: Option<u8>,
}

/// `[backup] preimages`: `true`, `false` or `"strict"`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum PreimagesFile {
    On(bool),
    Word(String),
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct HistoryFile {
    table: Option<String>,
    schema: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct StepFile {
    timeout: Option<String>,
    memory_mib: Option<usize>,
    statement_timeout: Option<String>,
    max_calls: Option<u64>,
    max_rows: Option<usize>,
}

/// Settings after combining everything.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub(crate) database_url: String,
    pub(crate) migrations: PathBuf,
    /// Whose layout the migrations folder is in.
    pub(crate) layout: Layout,
    pub(crate) init_sql: Vec<String>,
    pub(crate) lock_timeout: Duration,
    /// How long to try to reach the database; `None` is waymark-db's
    /// default.
    pub(crate) connect_timeout: Option<Duration>,
    pub(crate) history_table: String,
    pub(crate) history_schema: Option<String>,
    pub(crate) step_timeout: Duration,
    pub(crate) step_memory_mib: usize,
    pub(crate) step_statement_timeout: Duration,
    pub(crate) step_max_calls: u64,
    pub(crate) step_max_rows: usize,
    pub(crate) backup_dir: PathBuf,
    pub(crate) backup_before_up: bool,
    /// Whether `up` keeps a copy of dropped tables and columns for `down`,
    /// and whether it refuses a drop it cannot keep a copy of.
    pub(crate) preimages: PreimageMode,
    /// Bytes of rows per backup chunk, before compression.
    pub(crate) chunk_bytes: u64,
    /// Connections that read a big table at once in a backup (1 or 2);
    /// `None` lets the machine's cores choose.
    pub(crate) backup_jobs: Option<u8>,
    /// How migrations wait for locks.
    pub(crate) locks: LockPolicy,
    /// Below how many rows an error-level finding's lock is too brief to
    /// refuse `up` over.
    pub(crate) small_table_rows: u64,
    /// `[lint.severity]`.
    pub(crate) severities: HashMap<String, waymark_core::Severity>,
    /// The config file, when it has a `[fleet]` table.
    pub(crate) fleet_in: Option<PathBuf>,
}

/// A configuration problem: exit code 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct ConfigError(pub(crate) String);

pub(crate) fn load(global: &Global) -> anyhow::Result<Settings> {
    let (path, required) = match &global.config {
        Some(p) => (p.clone(), true),
        None => (PathBuf::from("waymark.toml"), false),
    };
    let file = read(&path, required)?;
    let duration = |value: Option<&String>, key: &str| -> anyhow::Result<Option<Duration>> {
        value
            .map(|v| {
                humantime::parse_duration(v).map_err(|e| {
                    ConfigError(format!(
                        "{}: {key} = {v:?}: {e} (write it like 30s or 2m)",
                        path.display()
                    ))
                })
            })
            .transpose()
            .map_err(Into::into)
    };
    let file_lock = duration(file.lock_timeout.as_ref(), "lock_timeout")?;
    let file_connect = duration(file.connect_timeout.as_ref(), "connect_timeout")?;
    let file_step = duration(file.step.timeout.as_ref(), "step.timeout")?;
    let file_statement = duration(file.step.statement_timeout.as_ref(), "step.statement_timeout")?;
    let file_lock_wait = file
        .locks
        .timeout
        .as_deref()
        .map(|v| {
            parse_wait(v)
                .map_err(|e| ConfigError(format!("{}: [locks] timeout = {v:?}: {e}, or \"off\"", path.display())))
        })
        .transpose()?;
    let defaults_locks = LockPolicy::default();
    let locks = LockPolicy {
        timeout: match global.lock_wait.or(file_lock_wait) {
            None => defaults_locks.timeout,
            Some(Wait::Off) => None,
            Some(Wait::For(d)) => Some(d),
        },
        retries: global
            .lock_retries
            .or(file.locks.retries)
            .unwrap_or(defaults_locks.retries),
        first_timeout: duration(file.locks.first_timeout.as_ref(), "[locks] first_timeout")?
            .unwrap_or(defaults_locks.first_timeout),
        max_wait: duration(file.locks.max_wait.as_ref(), "[locks] max_wait")?.unwrap_or(defaults_locks.max_wait),
    };
    // The default first timeout is cut to a shorter timeout; one written
    // longer than the timeout is a mistake.
    if let Some(timeout) = locks.timeout
        && file.locks.first_timeout.is_some()
        && locks.first_timeout > timeout
    {
        return Err(ConfigError(format!(
            "{}: [locks] first_timeout ({}) is longer than the timeout it ramps up to ({}); make it shorter, or \
             equal for every attempt to wait the same",
            path.display(),
            humantime::format_duration(locks.first_timeout),
            humantime::format_duration(timeout)
        ))
        .into());
    }
    if locks.first_timeout.is_zero() {
        return Err(ConfigError(format!(
            "{}: [locks] first_timeout must be longer than 0",
            path.display()
        ))
        .into());
    }
    let defaults = waymark_core::Limits::default();
    let mut init_sql = file.init_sql;
    init_sql.extend(global.init_sql.iter().cloned());
    // Each refusal names where the value came from: the flag, or the file.
    let step_memory_mib = global.step_memory_mib.or(file.step.memory_mib).unwrap_or(64);
    if step_memory_mib == 0 {
        return Err(ConfigError(match global.step_memory_mib {
            Some(_) => "--step-memory-mib must be at least 1".to_owned(),
            None => format!("{}: [step] memory_mib must be at least 1", path.display()),
        })
        .into());
    }
    let layout = match (global.layout.as_deref(), file.layout.as_deref()) {
        (Some(name), _) => Layout::parse(name).map_err(|e| ConfigError(format!("--layout: {e}")))?,
        (None, Some(name)) => {
            Layout::parse(name).map_err(|e| ConfigError(format!("{}: layout: {e}", path.display())))?
        }
        (None, None) => Layout::Auto,
    };
    let preimages = match file.backup.preimages {
        None | Some(PreimagesFile::On(true)) => PreimageMode::Keep,
        Some(PreimagesFile::On(false)) => PreimageMode::Off,
        Some(PreimagesFile::Word(w)) if w == "strict" => PreimageMode::Strict,
        Some(PreimagesFile::Word(w)) => {
            return Err(ConfigError(format!(
                "{}: [backup] preimages = {w:?}: expected true, false or \"strict\"",
                path.display()
            ))
            .into());
        }
    };
    Ok(Settings {
        layout,
        database_url: global
            .database_url
            .clone()
            .or(file.database_url)
            .unwrap_or_else(|| "sqlite://waymark.db".to_owned()),
        migrations: global
            .migrations
            .clone()
            .or(file.migrations)
            .unwrap_or_else(|| PathBuf::from("migrations")),
        init_sql,
        lock_timeout: global.lock_timeout.or(file_lock).unwrap_or(Duration::from_secs(60)),
        connect_timeout: match (global.connect_timeout, file_connect) {
            (Some(d), _) if d.is_zero() => {
                return Err(ConfigError("--connect-timeout must be longer than 0".to_owned()).into());
            }
            (None, Some(d)) if d.is_zero() => {
                return Err(ConfigError(format!("{}: connect_timeout must be longer than 0", path.display())).into());
            }
            (cli, file) => cli.or(file),
        },
        history_table: global
            .history_table
            .clone()
            .or(file.history.table)
            .unwrap_or_else(|| "waymark_history".to_owned()),
        history_schema: global.history_schema.clone().or(file.history.schema),
        step_timeout: global.step_timeout.or(file_step).unwrap_or(Duration::from_secs(30)),
        step_memory_mib,
        step_statement_timeout: file_statement
            .or(defaults.statement_timeout)
            .unwrap_or(Duration::from_secs(300)),
        step_max_calls: file.step.max_calls.unwrap_or(defaults.max_calls),
        step_max_rows: file.step.max_rows.unwrap_or(defaults.max_rows),
        backup_dir: file.backup.dir.unwrap_or_else(|| PathBuf::from("backups")),
        backup_before_up: file.backup.before_up,
        preimages,
        chunk_bytes: match file.backup.chunk_kib {
            Some(0) => {
                return Err(ConfigError(format!("{}: [backup] chunk_kib must be at least 1", path.display())).into());
            }
            Some(kib) => kib.checked_mul(1024).ok_or_else(|| {
                ConfigError(format!(
                    "{}: [backup] chunk_kib = {kib} is more bytes than a number holds",
                    path.display()
                ))
            })?,
            None => 64 * 1024 * 1024,
        },
        backup_jobs: match file.backup.jobs {
            Some(jobs) if !(1..=2).contains(&jobs) => {
                return Err(
                    ConfigError(format!("{}: [backup] jobs = {jobs}: it must be 1 or 2", path.display())).into(),
                );
            }
            jobs => jobs,
        },
        locks,
        small_table_rows: file.lint.small_table_rows.unwrap_or(waymark_core::SMALL_TABLE_ROWS),
        severities: severities(&path, &file.lint.severity)?,
        fleet_in: file.fleet.is_some().then(|| path.clone()),
    })
}

/// `[lint.severity]`, each rule and severity checked.
fn severities(
    path: &Path,
    table: &std::collections::BTreeMap<String, String>,
) -> anyhow::Result<HashMap<String, waymark_core::Severity>> {
    let mut severities = HashMap::new();
    for (rule, severity) in table {
        if !waymark_core::RULES.iter().any(|r| r.id == rule) {
            return Err(ConfigError(format!(
                "{}: [lint.severity] names {rule:?}, which is no rule; `waymark lint --rules` lists them",
                path.display()
            ))
            .into());
        }
        let severity = match severity.as_str() {
            "warning" => waymark_core::Severity::Warning,
            "error" => waymark_core::Severity::Error,
            other => {
                return Err(ConfigError(format!(
                    "{}: [lint.severity] {rule} = {other:?}: expected \"warning\" or \"error\" (a finding is \
                     silenced only in the script, with `-- waymark:allow {rule} <reason>`)",
                    path.display()
                ))
                .into());
            }
        };
        severities.insert(rule.clone(), severity);
    }
    Ok(severities)
}

fn read(path: &Path, required: bool) -> anyhow::Result<File> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => return Ok(File::default()),
        Err(e) => return Err(ConfigError(format!("{}: {e}", path.display())).into()),
    };
    // toml's message carries the line, the column and the offending text.
    toml::from_str(&text).map_err(|e| ConfigError(format!("{}: {}", path.display(), e.to_string().trim_end())).into())
}

#[cfg(test)]
mod tests {
    use clap::Parser as _;
    use waymark_testkit::fuzz::{Rng, TOML_TOKENS, splice};

    /// A `waymark.toml` that sets every key, the fuzzing's seed.
    const SEED: &str = "database_url = \"sqlite://app.db\"\nmigrations = \"db\"\nlayout = \"sqlx\"\n\
        init_sql = [\"SET x = 1\"]\nlock_timeout = \"30s\"\nconnect_timeout = \"5s\"\n\n\
        [history]\ntable = \"h\"\nschema = \"s\"\n\n\
        [step]\ntimeout = \"10s\"\nmemory_mib = 64\nstatement_timeout = \"1m\"\nmax_calls = 10\nmax_rows = 10\n\n\
        [backup]\ndir = \"b\"\nbefore_up = true\npreimages = \"strict\"\nchunk_kib = 64\njobs = 2\n\n\
        [locks]\ntimeout = \"2s\"\nfirst_timeout = \"50ms\"\nretries = 3\nmax_wait = \"1m\"\n\n\
        [lint]\nsmall_table_rows = 10\n\n[lint.severity]\nadd-column-rewrite = \"error\"\n\n\
        [fleet]\nparallel = 2\n";

    /// These keys' values, on top of TOML's own tokens.
    const KEYS: &[&str] = &[
        "\"0s\"",
        "\"off\"",
        "\"1y\"",
        "\"-1s\"",
        "[step]",
        "[locks]",
        "\"weird-layout\"",
        "\"warning\"",
        "\"no-such-rule\"",
    ];

    /// `waymark.toml` fuzzed, as `cargo xtask fuzz` fuzzes the parsers of
    /// the library crates (this one is the binary's own): `load` never
    /// panics, and every refusal names the file, so that the operator
    /// knows where to look. `WAYMARK_FUZZ_EXECS` sets how many inputs (for
    /// a long run: `WAYMARK_FUZZ_EXECS=1000000 cargo test -p waymark --bin
    /// waymark fuzz_waymark_toml`).
    #[test]
    fn fuzz_waymark_toml() {
        let execs: u64 = std::env::var("WAYMARK_FUZZ_EXECS")
            .ok()
            .and_then(|n| n.parse().ok())
            .unwrap_or(20_000);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("waymark.toml");
        let cli = crate::cli::Cli::try_parse_from(["waymark", "--config", path.to_str().unwrap(), "status"]).unwrap();
        // The seed itself is accepted: the mutations start from a file
        // that reaches every key's own check.
        std::fs::write(&path, SEED).unwrap();
        super::load(&cli.global).unwrap();
        // What the fuzzing found, each refused naming the file: a layout
        // and a memory the file got wrong (they named neither), and a chunk
        // size whose bytes overflow (a panic); and backup jobs out of range.
        for (text, said) in [
            ("layout = \"nope\"\n", "layout: unknown layout"),
            ("[step]\nmemory_mib = 0\n", "[step] memory_mib must be at least 1"),
            ("[backup]\njobs = 3\n", "[backup] jobs = 3: it must be 1 or 2"),
            (
                "[backup]\nchunk_kib = 9223372036854775807\n",
                "is more bytes than a number holds",
            ),
        ] {
            std::fs::write(&path, text).unwrap();
            let refusal = super::load(&cli.global).unwrap_err().to_string();
            assert!(refusal.starts_with(&format!("{}: ", path.display())), "{refusal}");
            assert!(refusal.contains(said), "{refusal}");
        }
        let tokens: Vec<&str> = TOML_TOKENS.iter().chain(KEYS).copied().collect();
        let mut rng = Rng(0x5EED);
        let mut accepted = 0u64;
        for _ in 0..execs {
            let rounds = 1 + rng.below(4);
            let text = splice(&mut rng, SEED, &tokens, rounds, (24, 48));
            std::fs::write(&path, &text).unwrap();
            let loaded = std::panic::catch_unwind(|| super::load(&cli.global))
                .unwrap_or_else(|_| panic!("load panicked on:\n{text}"));
            match loaded {
                Ok(_) => accepted += 1,
                Err(e) => assert!(
                    e.to_string().contains(&*path.to_string_lossy()),
                    "a refusal that names no file: {e}\non:\n{text}"
                ),
            }
        }
        eprintln!("waymark.toml: {execs} inputs, {accepted} accepted");
        assert!(
            accepted > 0,
            "no input was accepted: the fuzzing reaches only the parser's errors"
        );
    }
}
