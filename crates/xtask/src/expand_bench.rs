//! `cargo xtask bench-expand`: what expand/contract costs, beside pgroll's
//! published figures (backfill 9.4k rows/s on 300k rows; writes 4.4x
//! slower with its triggers installed). pgroll itself is a Go binary from
//! GitHub releases, not from the registries this project builds from, so
//! the comparison is with its published numbers, on the same kind of
//! table.
//!
//! Each run, on a fresh table of `--rows` rows (`accounts`: a key, a name,
//! an integer amount, a note):
//! - pgbench writes (an UPDATE of a random row and an INSERT per
//!   transaction, 2 clients, no rate limit) for a fixed time with no
//!   trigger: the baseline throughput;
//! - `waymark up` expands an `ops.toml` changing `amount` to `bigint`
//!   (a hidden column, the sync trigger, the backfill in batches of 1000
//!   keys, each committed): rows per second over the table's rows;
//! - the same pgbench run again with the trigger in place, once as the old
//!   application (plain `search_path`) and once as the new one (the
//!   version schema first): the write overhead is baseline throughput over
//!   each.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::backup_bench::{release_waymark, sh, write_section};

const BEGIN: &str = "<!-- expand-bench: written by `cargo xtask bench-expand --write` -->";
const END: &str = "<!-- /expand-bench -->";
const DB: &str = "waymark_bench_expand";
const PGBENCH_SECONDS: &str = "10";

/// The default pace (`nice_ratio = 3.0`); [`flat_out`] the other.
const OPS: &str = r#"[backfill]
batch_size = 1000

[[op]]
op = "alter_type"
table = "accounts"
column = "amount"
type = "bigint"
up = "amount::bigint"
down = "amount::integer"
"#;

/// The same change with the backfill pausing not at all.
fn flat_out() -> String {
    OPS.replace("batch_size = 1000\n", "batch_size = 1000\nnice_ratio = 0.0\n")
}

struct Options {
    rows: u64,
    runs: usize,
    admin: String,
    write: bool,
}

fn parse(args: &[String]) -> anyhow::Result<Options> {
    let mut o = Options {
        rows: 300_000,
        runs: 3,
        admin: crate::admin_url(),
        write: false,
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--rows" => o.rows = crate::value(&mut it, "--rows N")?,
            "--runs" => o.runs = crate::value(&mut it, "--runs N")?,
            "--pg-url" => o.admin = crate::value(&mut it, "--pg-url URL")?,
            "--write" => o.write = true,
            other => bail!(
                "unknown argument {other}: cargo xtask bench-expand [--rows N] [--runs N] [--pg-url URL] [--write]"
            ),
        }
    }
    Ok(o)
}

/// One run's figures.
struct Run {
    rows: u64,
    /// The whole `up` at the default pace, and with no pauses.
    backfill: Duration,
    flat_out: Duration,
    base_tps: f64,
    old_tps: f64,
    new_tps: f64,
}

pub(crate) fn run(args: &[String]) -> anyhow::Result<()> {
    let o = parse(args)?;
    let waymark = release_waymark()?;
    let url = format!(
        "{}/{DB}",
        &o.admin[..o.admin.rfind('/').context("a URL with a database")?]
    );
    let work = tempfile::tempdir()?;
    let script = work.path().join("writes.sql");
    std::fs::write(
        &script,
        format!(
            "\\set id random(1, {})\nUPDATE accounts SET amount = amount + 1 WHERE id = :id;\nINSERT INTO accounts (name, amount, note) VALUES ('bench', 1, 'n');\n",
            o.rows
        ),
    )?;
    let mut runs = Vec::new();
    for i in 0..o.runs {
        let run = once(&o, &url, &waymark, work.path(), &script)?;
        eprintln!(
            "run {}: backfill {:.0} rows/s ({:.0} flat out); writes {:.0} tps without the trigger, {:.0} as the old application, {:.0} as the new",
            i + 1,
            run.rows as f64 / run.backfill.as_secs_f64(),
            run.rows as f64 / run.flat_out.as_secs_f64(),
            run.base_tps,
            run.old_tps,
            run.new_tps
        );
        runs.push(run);
    }
    psql(&o.admin, &format!("DROP DATABASE IF EXISTS {DB}"))?;
    let date = String::from_utf8(Command::new("date").args(["-u", "+%Y-%m-%d"]).output()?.stdout)?;
    let out = render(&o, &runs, date.trim());
    print!("{out}");
    if o.write {
        write_section(BEGIN, END, &out)?;
    }
    Ok(())
}

fn once(o: &Options, url: &str, waymark: &Path, dir: &Path, script: &Path) -> anyhow::Result<Run> {
    fresh(o, url)?;
    let base_tps = pgbench(url, script, None)?;
    let rows = count(url)?;
    let backfill = expand(url, waymark, dir, OPS)?;
    let old_tps = pgbench(url, script, None)?;
    let new_tps = pgbench(url, script, Some("-c search_path=public_v1,public"))?;
    fresh(o, url)?;
    let flat_out = expand(url, waymark, dir, &flat_out())?;
    Ok(Run {
        rows,
        backfill,
        flat_out,
        base_tps,
        old_tps,
        new_tps,
    })
}

/// The table, made afresh.
fn fresh(o: &Options, url: &str) -> anyhow::Result<()> {
    psql(&o.admin, &format!("DROP DATABASE IF EXISTS {DB}"))?;
    psql(&o.admin, &format!("CREATE DATABASE {DB}"))?;
    psql(
        url,
        &format!(
            "CREATE TABLE accounts (id bigserial PRIMARY KEY, name text NOT NULL, amount integer NOT NULL DEFAULT 0, note text); \
             INSERT INTO accounts (name, amount, note) SELECT 'account ' || g, g % 1000, 'note' FROM generate_series(1, {}) g;",
            o.rows
        ),
    )?;
    psql(url, "VACUUM ANALYZE accounts")
}

/// How long `waymark up` takes to expand `ops` and backfill.
fn expand(url: &str, waymark: &Path, dir: &Path, ops: &str) -> anyhow::Result<std::time::Duration> {
    let migrations = dir.join("migrations");
    let _ = std::fs::remove_dir_all(&migrations);
    std::fs::create_dir_all(migrations.join("1_amount"))?;
    std::fs::write(migrations.join("1_amount/ops.toml"), ops)?;
    let started = Instant::now();
    sh(Command::new(waymark)
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .args(["--database-url", url, "--quiet", "up"]))?;
    let backfill = started.elapsed();
    let left = scalar(url, "SELECT count(*) FROM accounts WHERE _waymark_new_amount IS NULL")?;
    if left != 0 {
        bail!("{left} rows were not backfilled");
    }
    Ok(backfill)
}

/// pgbench's throughput over `PGBENCH_SECONDS`, as `options` (PGOPTIONS)
/// sets its sessions up.
fn pgbench(url: &str, script: &Path, options: Option<&str>) -> anyhow::Result<f64> {
    let mut cmd = Command::new("pgbench");
    cmd.args(["-n", "-c", "2", "-j", "2", "-T", PGBENCH_SECONDS, "-f"])
        .arg(script)
        .arg(url);
    if let Some(options) = options {
        cmd.env("PGOPTIONS", options);
    }
    let out = cmd.output().with_context(|| format!("running {cmd:?}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!("{cmd:?} failed: {}{text}", String::from_utf8_lossy(&out.stderr));
    }
    let failed = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("number of failed transactions: "))
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or("0");
    if failed != "0" {
        bail!("pgbench saw {failed} failed transactions:\n{text}");
    }
    text.lines()
        .find_map(|l| l.strip_prefix("tps = "))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .with_context(|| format!("no tps in pgbench's output:\n{text}"))
}

fn count(url: &str) -> anyhow::Result<u64> {
    scalar(url, "SELECT count(*) FROM accounts")
}

fn scalar(url: &str, sql: &str) -> anyhow::Result<u64> {
    let out = Command::new("psql").args(["-qAt", "-d", url, "-c", sql]).output()?;
    if !out.status.success() {
        bail!("psql {sql}: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().parse()?)
}

fn psql(url: &str, sql: &str) -> anyhow::Result<()> {
    sh(Command::new("psql").args(["-q", "-d", url, "-c", sql]))
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn render(o: &Options, runs: &[Run], date: &str) -> String {
    let rate = median(runs.iter().map(|r| r.rows as f64 / r.backfill.as_secs_f64()).collect());
    let flat_out = median(runs.iter().map(|r| r.rows as f64 / r.flat_out.as_secs_f64()).collect());
    let base = median(runs.iter().map(|r| r.base_tps).collect());
    let old = median(runs.iter().map(|r| r.old_tps).collect());
    let new = median(runs.iter().map(|r| r.new_tps).collect());
    let rows = median(runs.iter().map(|r| r.rows as f64).collect());
    format!(
        "{BEGIN}\n\
         ## Expand/contract: backfill rate and the sync trigger's cost\n\n\
         `cargo xtask bench-expand --rows {} --runs {}` on {}, {}. An `ops.toml` changing \
         `accounts.amount` from `integer` to `bigint` on a table of {rows:.0} rows; medians of {} runs. \
         pgroll could not be run here (its binary comes from GitHub releases, not from the \
         registries this project uses): its figures are those it publishes.\n\n\
         | | waymark | pgroll (published) |\n\
         |---|---|---|\n\
         | backfill, rows/s (whole `up`: DDL, trigger, backfill in committed batches of 1000), default `nice_ratio = 3.0` | {rate:.0} | 9,400 |\n\
         | the same, `nice_ratio = 0.0` (no pause between batches) | {flat_out:.0} | |\n\
         | write throughput without the trigger (pgbench, 2 clients, UPDATE + INSERT) | {base:.0} tps | |\n\
         | with it, the old application writing | {old:.0} tps ({:.2}x slower) | 4.4x slower |\n\
         | with it, the new application writing through its version schema | {new:.0} tps ({:.2}x slower) | |\n\
         \n{END}\n",
        o.rows,
        o.runs,
        crate::machine(),
        date,
        runs.len(),
        base / old,
        base / new,
    )
}
