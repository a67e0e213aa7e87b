//! `cargo xtask bench-fleet`: `waymark fleet up` over many databases
//! against the shell loop a team would otherwise write (`waymark up` once
//! per database), on SQLite files and on PostgreSQL databases of one
//! server, with the runner's peak memory (GNU time's maximum RSS).
//!
//! Each measurement starts from a fleet that waymark already manages:
//! the SQLite files removed, the PostgreSQL databases dropped and made
//! again, then a first migration applied to every one of them (by `fleet
//! up`, unmeasured), so that waymark's own tables exist, as they do in a
//! live fleet. What is measured is the next migration (a table, an index,
//! a row) rolled out to all of them.

use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::backup_bench::{release_waymark, sh, write_section};

const BEGIN: &str = "<!-- fleet-bench: written by `cargo xtask bench-fleet --write` -->";
const END: &str = "<!-- /fleet-bench -->";
const USAGE: &str = "cargo xtask bench-fleet [--sqlite N] [--pg N] [--parallel 1,4,16,32] [--pg-url URL] [--write]";

/// Applied before each measurement: the fleet as it stood.
const BASE: &str = "CREATE TABLE tenants (id INT PRIMARY KEY);\n";

/// The migration rolled out.
const MIGRATION: &str = "CREATE TABLE tenant_settings (id INT PRIMARY KEY, name VARCHAR(100) NOT NULL, value TEXT);\n\
                         CREATE INDEX tenant_settings_name ON tenant_settings (name);\n\
                         INSERT INTO tenant_settings (id, name, value) VALUES (1, 'plan', 'free');\n";

struct Options {
    sqlite: usize,
    pg: usize,
    parallel: Vec<usize>,
    admin: String,
    write: bool,
}

fn parse(args: &[String]) -> anyhow::Result<Options> {
    let mut o = Options {
        sqlite: 1000,
        pg: 200,
        parallel: vec![1, 4, 16, 32],
        admin: crate::admin_url(),
        write: false,
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--sqlite" => o.sqlite = crate::value(&mut it, "--sqlite N")?,
            "--pg" => o.pg = crate::value(&mut it, "--pg N")?,
            "--parallel" => {
                o.parallel = it
                    .next()
                    .context("--parallel 1,4,16,32")?
                    .split(',')
                    .map(|p| p.trim().parse())
                    .collect::<Result<_, _>>()?;
            }
            "--pg-url" => o.admin = crate::value(&mut it, "--pg-url URL")?,
            "--write" => o.write = true,
            other => bail!("unknown argument {other}: {USAGE}"),
        }
    }
    Ok(o)
}

/// One measurement.
struct Row {
    kind: &'static str,
    runner: String,
    databases: usize,
    took: Duration,
    /// KiB.
    peak_rss: u64,
}

pub(crate) fn run(args: &[String]) -> anyhow::Result<()> {
    let o = parse(args)?;
    let waymark = release_waymark()?;
    let work = tempfile::tempdir()?;
    std::fs::create_dir_all(work.path().join("migrations/1_tenants"))?;
    std::fs::write(work.path().join("migrations/1_tenants/up.sql"), BASE)?;
    let next = work.path().join("migrations/2_tenant_settings");
    let base = &o.admin[..o.admin.rfind('/').context("a URL with a database")?];
    let pg_names: Vec<String> = (0..o.pg).map(|i| format!("wm_bench_fleet_{i}")).collect();
    let lite_dir = work.path().join("lite");
    let kinds: [(&'static str, Vec<String>); 2] = [
        (
            "SQLite",
            (0..o.sqlite)
                .map(|i| format!("sqlite://{}/t{i}.db", lite_dir.display()))
                .collect(),
        ),
        ("PostgreSQL", pg_names.iter().map(|n| format!("{base}/{n}")).collect()),
    ];
    let fresh = |kind: &str| -> anyhow::Result<()> {
        if kind == "SQLite" {
            let _ = std::fs::remove_dir_all(&lite_dir);
            std::fs::create_dir_all(&lite_dir)?;
            return Ok(());
        }
        let mut script = String::from("SET client_min_messages = warning;\n");
        for n in &pg_names {
            let _ = writeln!(script, "DROP DATABASE IF EXISTS {n};\nCREATE DATABASE {n};");
        }
        let file = work.path().join("reset.sql");
        std::fs::write(&file, script)?;
        sh(Command::new("psql").args(["-q", "-d", &o.admin, "-f"]).arg(&file))
    };

    // The fleet as it stood: every database at the first migration, the
    // second not yet in the folder.
    let reset = |kind: &str, urls: &[String]| -> anyhow::Result<()> {
        fresh(kind)?;
        let _ = std::fs::remove_dir_all(&next);
        std::fs::write(work.path().join("prepare.toml"), fleet_file(urls, 16))?;
        timed(
            work.path(),
            Command::new(&waymark).args(["fleet", "up", "-q", "--fleet", "prepare.toml"]),
        )?;
        std::fs::create_dir_all(&next)?;
        std::fs::write(next.join("up.sql"), MIGRATION)?;
        Ok(())
    };

    // Compile the built-in SQL step into the cache once, so that no
    // measurement pays for it.
    timed(
        work.path(),
        Command::new(&waymark).args(["-q", "--database-url", "sqlite://warm.db", "up"]),
    )?;
    let mut rows = Vec::new();
    for (kind, urls) in &kinds {
        if urls.is_empty() {
            continue;
        }
        // The shell loop first.
        reset(kind, urls)?;
        let list = work.path().join("urls.txt");
        std::fs::write(&list, urls.join("\n") + "\n")?;
        let script = format!(
            "while read -r url; do {} -q --database-url \"$url\" up || exit 1; done < {}",
            waymark.display(),
            list.display()
        );
        let (took, rss) = timed(work.path(), Command::new("bash").args(["-c", &script]))?;
        eprintln!(
            "{kind}: shell loop {:.1} s ({:.0} db/s)",
            took.as_secs_f64(),
            urls.len() as f64 / took.as_secs_f64()
        );
        rows.push(Row {
            kind,
            runner: "shell loop of `waymark up`".into(),
            databases: urls.len(),
            took,
            peak_rss: rss,
        });
        for p in &o.parallel {
            reset(kind, urls)?;
            std::fs::write(work.path().join("fleet.toml"), fleet_file(urls, *p))?;
            let (took, rss) = timed(
                work.path(),
                Command::new(&waymark).args(["fleet", "up", "-q", "--json"]),
            )?;
            eprintln!(
                "{kind}: fleet up, parallel {p}: {:.1} s ({:.0} db/s), peak RSS {} MiB",
                took.as_secs_f64(),
                urls.len() as f64 / took.as_secs_f64(),
                rss / 1024
            );
            rows.push(Row {
                kind,
                runner: format!("`fleet up`, parallel {p}"),
                databases: urls.len(),
                took,
                peak_rss: rss,
            });
        }
        // Leave the server as it was found.
        if *kind == "PostgreSQL" {
            let drop: String = pg_names
                .iter()
                .map(|n| format!("DROP DATABASE IF EXISTS {n};\n"))
                .collect();
            let file = work.path().join("drop.sql");
            std::fs::write(&file, drop)?;
            sh(Command::new("psql").args(["-q", "-d", &o.admin, "-f"]).arg(&file))?;
        }
    }
    let out = render(&rows, &o);
    println!("{out}");
    if o.write {
        write_section(BEGIN, END, &out)?;
    }
    Ok(())
}

/// A fleet file of `urls`, one wave of `parallel` at a time.
fn fleet_file(urls: &[String], parallel: usize) -> String {
    let mut fleet = String::new();
    for (i, url) in urls.iter().enumerate() {
        let _ = writeln!(fleet, "[[target]]\nname = \"t{i}\"\nurl = \"{url}\"\n");
    }
    let _ = writeln!(fleet, "[[wave]]\nselect = \"*\"\nparallel = {parallel}\n");
    fleet
}

/// Runs `cmd` in `dir` under GNU time: its wall time and peak RSS (KiB;
/// for the shell loop, the largest of its processes).
fn timed(dir: &Path, cmd: &mut Command) -> anyhow::Result<(Duration, u64)> {
    let mut timed = Command::new("/usr/bin/time");
    timed
        .arg("-f")
        .arg("%M")
        .arg(cmd.get_program())
        .args(cmd.get_args())
        .current_dir(dir)
        .env("WAYMARK_CACHE_DIR", dir.join("cache"))
        .stdout(std::process::Stdio::null());
    let started = Instant::now();
    let output = timed.output().context("running /usr/bin/time (Debian's `time`)")?;
    let took = started.elapsed();
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !output.status.success() {
        bail!("{cmd:?} failed: {}\n{stderr}", output.status);
    }
    let rss = stderr
        .lines()
        .last()
        .and_then(|l| l.trim().parse().ok())
        .with_context(|| format!("no peak RSS in {stderr}"))?;
    Ok((took, rss))
}

fn render(rows: &[Row], o: &Options) -> String {
    let mut out = format!(
        "{BEGIN}\n### Fleet rollout: `fleet up` against a shell loop of `waymark up`\n\n{}, {}; `cargo xtask bench-fleet{}`; release build. Each line rolls out one small migration (a table, an index, a row) to a fleet that waymark already manages: before each, every database is made afresh and given a first migration by an unmeasured `fleet up`, so waymark's own tables exist, as in a live fleet. Peak RSS is GNU time's maximum resident set size of the runner (for the loop, of its largest process).\n\n| databases | runner | time | databases/s | × the loop | peak RSS |\n|---|---|---|---|---|---|\n",
        crate::machine(),
        crate::load_bench::chrono_date(),
        if o.write { " --write" } else { "" }
    );
    for kind in ["SQLite", "PostgreSQL"] {
        let of_kind: Vec<&Row> = rows.iter().filter(|r| r.kind == kind).collect();
        let Some(lp) = of_kind.iter().find(|r| r.runner.starts_with("shell")) else {
            continue;
        };
        for r in &of_kind {
            let _ = writeln!(
                out,
                "| {} {} | {} | {:.1} s | {:.0} | {:.1}× | {:.0} MiB |",
                r.databases,
                r.kind,
                r.runner,
                r.took.as_secs_f64(),
                r.databases as f64 / r.took.as_secs_f64(),
                lp.took.as_secs_f64() / r.took.as_secs_f64(),
                r.peak_rss as f64 / 1024.0
            );
        }
        // What each target in flight costs: the growth of the peak from
        // the fewest to the most at once.
        let fleet: Vec<(usize, &&Row)> = o.parallel.iter().copied().zip(of_kind.iter().skip(1)).collect();
        if let (Some((p0, r0)), Some((p1, r1))) = (fleet.first(), fleet.last())
            && p1 > p0
        {
            let per = (r1.peak_rss as f64 - r0.peak_rss as f64) / 1024.0 / (p1 - p0) as f64;
            let _ = writeln!(
                out,
                "| {kind} | memory per target in flight, from parallel {p0} to {p1} | | | | {per:.2} MiB |"
            );
        }
    }
    let _ = writeln!(out, "\n{END}");
    out
}
