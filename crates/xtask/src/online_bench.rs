//! `cargo xtask bench-online`: what the application feels while risky
//! schema changes are applied. pgbench (TPC-B-like, fixed rate) writes to
//! a pgbench database while a reporting transaction reads the big tables
//! for a few seconds every few seconds (the long reader that makes DDL
//! queue), and a set of changes (an index, a foreign key, `NOT NULL`, a
//! column with a default, a type change) is applied five ways in the same
//! run, each on a fresh copy of the same data:
//!
//! - nothing applied: the baseline;
//! - the naive files through psql;
//! - the same files through waymark (its lock timeout and retry; lint's
//!   refusal lifted, to measure the retry alone);
//! - the safe rewrites lint suggests, through waymark;
//! - the changes as expand/contract (an `ops.toml`), expanded, backfilled
//!   and contracted by waymark while pgbench writes.
//!
//! For each: failed transactions and latency percentiles from pgbench's
//! per-transaction log (with `-R`, latency counts from when the
//! transaction was due, so a queued one shows its wait), and the longest
//! any pgbench session was seen waiting on a lock, from sampling
//! `pg_stat_activity` every 50 ms. Written into docs/BENCHMARKS.md between
//! markers.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::backup_bench::{PgBench, release_waymark, sh, write_section};

const BEGIN: &str = "<!-- online-bench: written by `cargo xtask bench-online --write` -->";
const END: &str = "<!-- /online-bench -->";

/// pgbench's rate, clients and the reader's rhythm.
const RATE: &str = "200";
const CLIENTS: &str = "4";
/// The reporting transaction: reads the two tables the changes touch,
/// then holds its locks a while, as a long report does.
const READER: &str = "BEGIN; SELECT sum(abalance) FROM pgbench_accounts; SELECT count(*) FROM pgbench_history; \
                      SELECT pg_sleep(2); COMMIT;";
/// Quiet time before the changes.
const SETTLE: Duration = Duration::from_secs(5);
/// The stretch of the baseline's run compared with the others' changes.
const BASELINE_WINDOW: Duration = Duration::from_secs(5);
/// How long each way's workload runs in all, changes included, so that
/// every way's percentiles are over the same number of transactions.
const RUN: Duration = Duration::from_secs(45);

/// The risky changes as people write them: one migration each.
const NAIVE: &[(&str, &str)] = &[
    (
        "1_index",
        "CREATE INDEX pgbench_accounts_abalance ON pgbench_accounts (abalance);\n",
    ),
    (
        "2_foreign_key",
        "ALTER TABLE pgbench_accounts ADD CONSTRAINT pgbench_accounts_branch FOREIGN KEY (bid) REFERENCES \
         pgbench_branches (bid);\n",
    ),
    (
        "3_not_null",
        "ALTER TABLE pgbench_accounts ALTER COLUMN abalance SET NOT NULL;\n",
    ),
    (
        "4_default",
        "ALTER TABLE pgbench_accounts ADD COLUMN flagged boolean NOT NULL DEFAULT false;\n",
    ),
    (
        "5_type",
        "ALTER TABLE pgbench_history ALTER COLUMN delta TYPE bigint;\n",
    ),
];

/// The index and the foreign key as lint's fixes write them, which the
/// expand/contract way runs after its `ops.toml` too.
const INDEX_CONCURRENTLY: &str =
    "-- no-transaction\nCREATE INDEX CONCURRENTLY pgbench_accounts_abalance ON pgbench_accounts (abalance);\n";
const FOREIGN_KEY_NOT_VALID: &str = "ALTER TABLE pgbench_accounts ADD CONSTRAINT pgbench_accounts_branch FOREIGN KEY (bid) \
     REFERENCES pgbench_branches (bid) NOT VALID;\n";
const VALIDATE_FOREIGN_KEY: &str = "ALTER TABLE pgbench_accounts VALIDATE CONSTRAINT pgbench_accounts_branch;\n";

/// The same changes as lint's fixes write them.
const SAFE: &[(&str, &str)] = &[
    ("1_index", INDEX_CONCURRENTLY),
    ("2_foreign_key", FOREIGN_KEY_NOT_VALID),
    ("3_validate_foreign_key", VALIDATE_FOREIGN_KEY),
    (
        "4_check_not_null",
        "ALTER TABLE pgbench_accounts ADD CONSTRAINT pgbench_accounts_abalance_nn CHECK (abalance IS NOT NULL) \
         NOT VALID;\n",
    ),
    (
        "5_validate_check",
        "ALTER TABLE pgbench_accounts VALIDATE CONSTRAINT pgbench_accounts_abalance_nn;\n",
    ),
    (
        "6_not_null",
        "ALTER TABLE pgbench_accounts ALTER COLUMN abalance SET NOT NULL;\n\
         ALTER TABLE pgbench_accounts DROP CONSTRAINT pgbench_accounts_abalance_nn;\n",
    ),
    (
        "7_default",
        "ALTER TABLE pgbench_accounts ADD COLUMN flagged boolean NOT NULL DEFAULT false;\n",
    ),
    // The type change, expanded: a new column kept in step by a trigger
    // and backfilled; switching readers over and dropping the old column
    // is the application's next deploy.
    (
        "8_expand_type",
        "ALTER TABLE pgbench_history ADD COLUMN delta_big bigint;\n",
    ),
    (
        "9_keep_in_step",
        "CREATE FUNCTION pgbench_history_delta_big() RETURNS trigger LANGUAGE plpgsql AS $$\n\
         BEGIN NEW.delta_big := NEW.delta; RETURN NEW; END\n$$;\n\
         CREATE TRIGGER pgbench_history_delta_big BEFORE INSERT OR UPDATE ON pgbench_history FOR EACH ROW \
         EXECUTE FUNCTION pgbench_history_delta_big();\n",
    ),
    (
        "10_backfill",
        "UPDATE pgbench_history SET delta_big = delta WHERE delta_big IS NULL;\n",
    ),
];

/// The changes as expand/contract: an `ops.toml` whose expand runs first
/// and whose contract (`waymark complete`) follows at once (pgbench writes
/// through the tables, the "old" application, whose shape the changes keep:
/// `abalance` stays `abalance`, `bbalance` stays an integer column to it),
/// then the index and the foreign key, which need no second shape. The type
/// change is on `pgbench_branches.bbalance`, which every transaction
/// updates: `pgbench_history` has no primary key for the backfill to walk.
const EXPAND: &[(&str, &str)] = &[
    (
        "1_reshape",
        "[[op]]\nop = \"set_not_null\"\ntable = \"pgbench_accounts\"\ncolumn = \"abalance\"\n\
         up = \"coalesce(abalance, 0)\"\n\n\
         [[op]]\nop = \"add_column\"\ntable = \"pgbench_accounts\"\ncolumn = \"flagged\"\ntype = \"boolean\"\n\
         default = \"false\"\nnot_null = true\n\n\
         [[op]]\nop = \"alter_type\"\ntable = \"pgbench_branches\"\ncolumn = \"bbalance\"\ntype = \"bigint\"\n\
         up = \"bbalance::bigint\"\ndown = \"bbalance::integer\"\n",
    ),
    ("2_index", INDEX_CONCURRENTLY),
    ("3_foreign_key", FOREIGN_KEY_NOT_VALID),
    ("4_validate_foreign_key", VALIDATE_FOREIGN_KEY),
];

/// How a way applies the changes.
enum Way {
    Baseline,
    Psql,
    /// The files, and `[locks] timeout` if not the default.
    Waymark(&'static [(&'static str, &'static str)], Option<&'static str>),
    /// [`EXPAND`]: `up --to 1` (the expand and its backfill), `complete`,
    /// then `up`; with `[backfill]` settings other than the defaults.
    ExpandContract(Option<String>),
}

struct Measured {
    name: &'static str,
    /// How long applying took (none for the baseline).
    applied_in: Option<Duration>,
    transactions: u64,
    failed: u64,
    p50_ms: f64,
    p99_ms: f64,
    /// p99 of the transactions that ended while the changes were applied.
    p99_applying_ms: Option<f64>,
    max_ms: f64,
    longest_lock_wait_ms: u64,
    /// What waymark said of its lock waits: the retries.
    retries: usize,
}

pub(crate) fn run(args: &[String]) -> anyhow::Result<()> {
    // `--only TEXT` keeps the baseline and the ways whose names hold TEXT,
    // to look again at one way without the half hour the rest take; such a
    // partial table is not written to BENCHMARKS.md.
    let (only, args) = take(args, "--only", "TEXT")?;
    // `--backfill "nice_ratio = 2.0"` gives the expand/contract way's
    // backfill other settings than the defaults the table is about; such a
    // run is not written to BENCHMARKS.md either.
    let (backfill, args) = take(&args, "--backfill", "TOML")?;
    let bench = PgBench::parse("bench-online", &args, 1)?;
    if (only.is_some() || backfill.is_some()) && bench.write {
        bail!("--only and --backfill measure what the table is not about: they do not --write");
    }
    let waymark = release_waymark()?;
    let work = std::env::temp_dir().join(format!("waymark-online-bench-{}", std::process::id()));
    std::fs::create_dir_all(&work)?;
    eprintln!("pgbench -i -s {}", bench.scale);
    bench.init("wm_online_base")?;
    let mut ways: Vec<(&'static str, Way)> = vec![
        ("no change (baseline)", Way::Baseline),
        ("naive files, psql", Way::Psql),
        ("naive files, waymark", Way::Waymark(NAIVE, None)),
        ("lint's safe rewrites, waymark", Way::Waymark(SAFE, None)),
        (
            "lint's safe rewrites, waymark, `[locks] timeout = \"200ms\"`",
            Way::Waymark(SAFE, Some("200ms")),
        ),
        (
            "expand/contract (ops.toml), waymark: up, complete",
            Way::ExpandContract(backfill),
        ),
    ];
    if let Some(only) = &only {
        ways.retain(|(name, way)| matches!(way, Way::Baseline) || name.contains(only.as_str()));
    }
    let mut rows = Vec::new();
    for _ in 0..bench.runs {
        for (name, way) in &ways {
            eprintln!("{name}");
            rows.push(measure(&bench, &waymark, &work, name, way)?);
        }
    }
    let _ = bench.psql("DROP DATABASE IF EXISTS wm_online_base");
    let _ = bench.psql("DROP DATABASE IF EXISTS wm_online WITH (FORCE)");
    // `WAYMARK_BENCH_KEEP=1` keeps each way's pgbench log and waymark's
    // stderr, to see where the time went.
    if std::env::var_os("WAYMARK_BENCH_KEEP").is_some() {
        eprintln!("kept the logs in {}", work.display());
    } else {
        let _ = std::fs::remove_dir_all(&work);
    }

    let date = String::from_utf8(Command::new("date").args(["-u", "+%Y-%m-%d"]).output()?.stdout)?;
    let baseline_p99 = rows.first().map_or(0.0, |m| m.p99_ms);
    let mut table = String::new();
    for m in &rows {
        table.push_str(&format!(
            "| {} | {} | {} of {} | {:.1} | {:.1} ({:+.0} %) | {} | {:.0} | {} | {} |\n",
            m.name,
            m.applied_in
                .map_or("–".to_owned(), |d| format!("{:.1} s", d.as_secs_f64())),
            m.failed,
            m.transactions,
            m.p50_ms,
            m.p99_ms,
            (m.p99_ms / baseline_p99 - 1.0) * 100.0,
            m.p99_applying_ms.map_or("–".to_owned(), |p| format!("{p:.1}")),
            m.max_ms,
            m.longest_lock_wait_ms,
            m.retries,
        ));
    }
    // With more than one run, each way's median, so that one stall of the
    // server (which alone sets a 45 s run's p99) does not decide.
    let mut medians = String::new();
    if bench.runs > 1 {
        medians.push_str(&format!(
            "\nMedian of the {} runs, each way:\n\n| way | p99 ms | p99 while applying ms | longest lock wait ms |\n\
             |---|---|---|---|\n",
            bench.runs
        ));
        for (name, _) in &ways {
            let of: Vec<&Measured> = rows.iter().filter(|m| m.name == *name).collect();
            let median = |mut v: Vec<f64>| {
                v.sort_by(f64::total_cmp);
                v[v.len() / 2]
            };
            let applying: Vec<f64> = of.iter().filter_map(|m| m.p99_applying_ms).collect();
            medians.push_str(&format!(
                "| {name} | {:.1} | {} | {:.0} |\n",
                median(of.iter().map(|m| m.p99_ms).collect()),
                if applying.is_empty() {
                    "–".to_owned()
                } else {
                    format!("{:.1}", median(applying))
                },
                median(of.iter().map(|m| m.longest_lock_wait_ms as f64).collect()),
            ));
        }
    }
    let out = format!(
        "{BEGIN}\n## Online schema changes: what the application feels\n\n\
         Measured {} on {}: pgbench scale {} (`pgbench_accounts` {} rows), `pgbench -c {CLIENTS} -j 2 -R {RATE}` \
         (TPC-B-like) writing throughout, and a reporting transaction (`sum` over `pgbench_accounts`, a count of \
         `pgbench_history`, then 2 s more with its locks held) started every 3 s, while five risky changes (an \
         index, a foreign key, `SET NOT NULL`, a column with a default, a type change) are applied; each way on a \
         fresh copy of the same data, the changes starting after {} s of a {} s run; waymark with its defaults (`[locks] timeout \
         = 1s`, `first_timeout = 50ms`, 20 retries within 2 min) and, for the naive files, `[lint] small_table_rows` raised so that lint \
         lets them through. Latency counts from when `-R` scheduled the transaction, so one that queued shows its \
         wait; the lock wait is the longest any pgbench session was seen waiting on a lock in `pg_stat_activity` \
         (sampled every 50 ms). \"p99 while applying\" is over the transactions that ended while the changes were \
         being applied (for the baseline: the same 5 s after the quiet start). \"waymark's retries\" counts the attempts that gave up waiting for a lock and \
         were tried again. The expand/contract way runs `up --to 1` (an `ops.toml`: `set_not_null` on \
         `abalance`, the new column, and the type change on `pgbench_branches.bbalance`, which every transaction \
         updates, since `pgbench_history` has no key for a backfill; its backfill at the default `nice_ratio = 3.0`), `complete` at once, then the index and the \
         foreign key; pgbench is its old application throughout. Release build. Rerun with `cargo xtask bench-online --write`.\n\n\
         | way | applied in | failed transactions | p50 ms | p99 ms (vs baseline) | p99 while applying ms | max ms \
         | longest lock wait ms | waymark's retries |\n|---|---|---|---|---|---|---|---|---|\n{table}{medians}\n\
         Target for the waymark runs: 0 failed, p99 within +20 % of the baseline, no wait longer than the lock \
         timeout.\n{END}\n",
        date.trim(),
        crate::machine(),
        bench.scale,
        bench.scale as u64 * 100_000,
        SETTLE.as_secs(),
        RUN.as_secs(),
    );
    println!("{out}");
    if bench.write {
        write_section(BEGIN, END, &out)?;
    }
    Ok(())
}

/// `flag VALUE` taken out of `args`, if there: its value and the rest.
fn take(args: &[String], flag: &str, value: &str) -> anyhow::Result<(Option<String>, Vec<String>)> {
    Ok(match args.iter().position(|a| a == flag) {
        Some(i) => {
            let text = args.get(i + 1).with_context(|| format!("{flag} {value}"))?.clone();
            let rest = args[..i].iter().chain(&args[i + 2..]).cloned().collect();
            (Some(text), rest)
        }
        None => (None, args.to_vec()),
    })
}

fn measure(bench: &PgBench, waymark: &Path, work: &Path, name: &'static str, way: &Way) -> anyhow::Result<Measured> {
    let db = "wm_online";
    // A reader of the last way may still be in its transaction.
    bench.psql(&format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"))?;
    bench.psql(&format!("CREATE DATABASE {db} TEMPLATE wm_online_base"))?;
    // The copy went through the WAL: without a checkpoint now, the one it
    // brings on stalls the first seconds of the workload, whichever way.
    bench.psql("CHECKPOINT")?;
    let url = bench.url(db);
    let run_dir = work.join(
        name.chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect::<String>(),
    );
    let _ = std::fs::remove_dir_all(&run_dir);
    std::fs::create_dir_all(&run_dir)?;
    let project = match way {
        Way::Waymark(files, timeout) => Some(project(&run_dir, files, std::ptr::eq(*files, NAIVE), *timeout)?),
        Way::Psql => Some(project(&run_dir, NAIVE, false, None)?),
        Way::ExpandContract(None) => Some(project(&run_dir, EXPAND, false, None)?),
        Way::ExpandContract(Some(backfill)) => {
            let first = format!("[backfill]\n{backfill}\n\n{}", EXPAND[0].1);
            let mut files = vec![(EXPAND[0].0, first.as_str())];
            files.extend_from_slice(&EXPAND[1..]);
            Some(project(&run_dir, &files, false, None)?)
        }
        Way::Baseline => None,
    };

    let logs = run_dir.join("pgbench");
    std::fs::create_dir_all(&logs)?;
    let mut writer = Command::new("pgbench")
        .current_dir(&logs)
        .args(["-n", "-c", CLIENTS, "-j", "2", "-R", RATE, "-T", "3600", "-l", &url])
        .stdout(std::fs::File::create(run_dir.join("pgbench.out"))?)
        .stderr(std::fs::File::create(run_dir.join("pgbench.err"))?)
        .spawn()?;
    let mut reader = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "while true; do psql -q -X -d '{url}' -c '{READER}' >/dev/null 2>&1; sleep 1; done"
        ))
        .spawn()?;
    let mut sampler = sampler(&url, &run_dir.join("waits.txt"))?;
    let began = Instant::now();
    let mut applying = (0, 0);
    let outcome = (|| -> anyhow::Result<(Option<Duration>, usize)> {
        std::thread::sleep(SETTLE);
        let started = Instant::now();
        applying.0 = epoch_us();
        let retries = match (way, &project) {
            (Way::Baseline, _) | (_, None) => {
                // The baseline's "while applying" is the same stretch of
                // its run as the changes take in the others, about.
                std::thread::sleep(BASELINE_WINDOW);
                applying.1 = epoch_us();
                std::thread::sleep(RUN.saturating_sub(began.elapsed()));
                return Ok((None, 0));
            }
            (Way::Psql, Some(p)) => {
                for (stem, _) in NAIVE {
                    sh(Command::new("psql")
                        .args(["-q", "-X", "-v", "ON_ERROR_STOP=1", "-d", &url, "-f"])
                        .arg(p.join("migrations").join(stem).join("up.sql"))
                        .stdout(Stdio::null()))?;
                }
                0
            }
            (Way::Waymark(..), Some(p)) => {
                let stderr = run_waymark(waymark, p, &url, &["up"], &run_dir)?;
                stderr.matches("gave up waiting for a lock").count()
            }
            (Way::ExpandContract(_), Some(p)) => {
                let mut stderr = String::new();
                for args in [&["up", "--to", "1"][..], &["complete"], &["up"]] {
                    stderr.push_str(&run_waymark(waymark, p, &url, args, &run_dir)?);
                }
                std::fs::write(run_dir.join("waymark.err"), &stderr)?;
                stderr.matches("gave up waiting for a lock").count()
            }
        };
        let applied = started.elapsed();
        applying.1 = epoch_us();
        // At least a few quiet seconds after, and the same run length as
        // every other way.
        std::thread::sleep(RUN.saturating_sub(began.elapsed()).max(SETTLE));
        Ok((Some(applied), retries))
    })();
    let _ = Command::new("kill").args(["-INT", &writer.id().to_string()]).status();
    stop(&mut writer);
    let _ = reader.kill();
    let _ = sampler.kill();
    let _ = reader.wait();
    let _ = sampler.wait();
    let (applied_in, retries) = outcome?;

    let mut latencies = Vec::new();
    let mut during = Vec::new();
    let mut failed = 0;
    for entry in std::fs::read_dir(&logs)? {
        for line in std::fs::read_to_string(entry?.path())?.lines() {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.len() < 6 {
                continue;
            }
            // pgbench writes `failed` (or `skipped`) where the latency is.
            match fields[2].parse::<u64>() {
                Ok(us) => {
                    latencies.push(us);
                    // Fields 4 and 5: when it ended, in seconds and
                    // microseconds since the epoch.
                    let ended =
                        fields[4].parse::<u64>().unwrap_or(0) * 1_000_000 + fields[5].parse::<u64>().unwrap_or(0);
                    if applying.1 > 0 && (applying.0..=applying.1).contains(&ended) {
                        during.push(us);
                    }
                }
                Err(_) => failed += 1,
            }
        }
    }
    // A client pgbench aborted on an error stops logging: count it too.
    let summary = std::fs::read_to_string(run_dir.join("pgbench.out")).unwrap_or_default()
        + &std::fs::read_to_string(run_dir.join("pgbench.err")).unwrap_or_default();
    failed += summary.matches("aborted in command").count() as u64;
    if latencies.is_empty() {
        bail!("pgbench logged no transactions: {summary}");
    }
    latencies.sort_unstable();
    during.sort_unstable();
    let quantile = |of: &[u64], q: f64| of[((of.len() - 1) as f64 * q).round() as usize] as f64 / 1000.0;
    let at = |q: f64| quantile(&latencies, q);
    let longest_lock_wait_ms = std::fs::read_to_string(run_dir.join("waits.txt"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse::<u64>().ok())
        .max()
        .unwrap_or(0);
    Ok(Measured {
        name,
        applied_in,
        transactions: latencies.len() as u64 + failed,
        failed,
        p50_ms: at(0.5),
        p99_ms: at(0.99),
        p99_applying_ms: (!during.is_empty()).then(|| quantile(&during, 0.99)),
        max_ms: at(1.0),
        longest_lock_wait_ms,
        retries,
    })
}

/// A waymark project of `files`, one migration each; `lifted` lets lint's
/// refusal through, for the naive files; `timeout` is `[locks] timeout`.
/// Runs one waymark command in the project; its stderr, also kept.
fn run_waymark(waymark: &Path, project: &Path, url: &str, args: &[&str], run_dir: &Path) -> anyhow::Result<String> {
    let out = Command::new(waymark)
        .current_dir(project)
        .args(["--database-url", url])
        .args(args)
        .output()?;
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    std::fs::write(run_dir.join("waymark.err"), &stderr)?;
    if !out.status.success() {
        bail!("waymark {} failed: {stderr}", args.join(" "));
    }
    Ok(stderr)
}

fn project(dir: &Path, files: &[(&str, &str)], lifted: bool, timeout: Option<&str>) -> anyhow::Result<PathBuf> {
    let root = dir.join("project");
    for (stem, text) in files {
        let folder = root.join("migrations").join(stem);
        std::fs::create_dir_all(&folder)?;
        // A file of operations is an ops.toml; the rest are SQL.
        let file = if text.starts_with("[[op]]") || text.starts_with("[backfill]") {
            "ops.toml"
        } else {
            "up.sql"
        };
        std::fs::write(folder.join(file), text)?;
    }
    let mut config = String::new();
    if lifted {
        config.push_str("[lint]\nsmall_table_rows = 1000000000000\n");
    }
    if let Some(timeout) = timeout {
        config.push_str(&format!("[locks]\ntimeout = \"{timeout}\"\n"));
    }
    std::fs::write(root.join("waymark.toml"), config)?;
    Ok(root)
}

/// psql printing, every 50 ms, how long the longest-waiting pgbench
/// session has waited on a lock (its statement's age), in milliseconds.
fn sampler(url: &str, out: &Path) -> anyhow::Result<Child> {
    let mut child = Command::new("psql")
        .args(["-q", "-X", "-At", "-d", url])
        .stdin(Stdio::piped())
        .stdout(std::fs::File::create(out)?)
        .stderr(Stdio::null())
        .spawn()?;
    use std::io::Write;
    child.stdin.as_mut().context("psql's stdin")?.write_all(
        b"SELECT coalesce(max((extract(epoch FROM clock_timestamp() - query_start) * 1000)::int8), 0) \
          FROM pg_stat_activity WHERE application_name = 'pgbench' AND wait_event_type = 'Lock' \\watch 0.05\n",
    )?;
    Ok(child)
}

/// Microseconds since the epoch, as pgbench's log counts them.
fn epoch_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

fn stop(child: &mut Child) {
    let started = Instant::now();
    while matches!(child.try_wait(), Ok(None)) && started.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    let _ = child.wait();
}
