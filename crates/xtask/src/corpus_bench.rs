//! `cargo xtask bench-corpus`: a real project's history (crates.io's 285
//! diesel migrations, `../shared/corpora/crates-io`) applied by `waymark
//! up` with the default settings and by psql in diesel's order, one
//! transaction per migration as diesel runs them (psql keeps no history:
//! it is the floor), on fresh databases, taking turns; written into
//! docs/BENCHMARKS.md between markers. The corpus test
//! (`crates/waymark/tests/it/corpus.rs`) proves both give one schema.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::bail;

use crate::backup_bench::{release_waymark, sh, timed, write_section};

const BEGIN: &str = "<!-- corpus-bench: written by `cargo xtask bench-corpus --write` -->";
const END: &str = "<!-- /corpus-bench -->";
const USAGE: &str = "cargo xtask bench-corpus [--runs N] [--pg-url URL] [--corpus DIR] [--write]";

pub(crate) fn run(args: &[String]) -> anyhow::Result<()> {
    let mut runs = 9;
    let mut admin = crate::admin_url();
    let mut corpus = crate::root().join("../shared/corpora/crates-io/migrations");
    let mut write = false;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--runs" => runs = crate::value(&mut it, USAGE)?,
            "--pg-url" => admin = crate::value(&mut it, USAGE)?,
            "--corpus" => corpus = crate::value(&mut it, USAGE)?,
            "--write" => write = true,
            other => bail!("unknown argument {other}: {USAGE}"),
        }
    }
    if !corpus.join("00000000000000_diesel_initial_setup").is_dir() {
        bail!("no crates.io corpus at {} (--corpus DIR)", corpus.display());
    }
    let waymark = release_waymark()?;
    let dir = tempfile::tempdir()?;
    let (script, count) = psql_script(&corpus, dir.path())?;
    let url = |db: &str| format!("{}/{db}", &admin[..admin.rfind('/').unwrap()]);
    let psql = |sql: &str| sh(Command::new("psql").args(["-X", "-q", "-d", &admin, "-c", sql]));
    // Commit fsyncs on this machine's disk vary by tens of percent from
    // minute to minute; every tool gets the same setting, as in `bench`.
    let fresh = |db: &str| -> anyhow::Result<()> {
        psql(&format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"))?;
        psql(&format!("CREATE DATABASE {db}"))?;
        psql(&format!("ALTER DATABASE {db} SET synchronous_commit = off"))
    };
    let cache = dir.path().join("cache");
    let mut ours = Vec::new();
    let mut floor = Vec::new();
    for run in 0..runs {
        eprintln!("run {} of {runs}", run + 1);
        fresh("wm_corpus_psql")?;
        floor.push(timed(|| {
            let out = Command::new("psql")
                .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", &url("wm_corpus_psql"), "-f"])
                .arg(&script)
                .env("PGOPTIONS", "-c client_min_messages=warning")
                .output()?;
            if !out.status.success() {
                bail!("psql: {}", String::from_utf8_lossy(&out.stderr));
            }
            Ok(())
        })?);
        fresh("wm_corpus_waymark")?;
        ours.push(timed(|| {
            sh(Command::new(&waymark)
                .env("WAYMARK_CACHE_DIR", &cache)
                .arg("--migrations")
                .arg(&corpus)
                .args(["up", "-q", "--database-url", &url("wm_corpus_waymark")]))
        })?);
    }
    psql("DROP DATABASE wm_corpus_psql WITH (FORCE)")?;
    psql("DROP DATABASE wm_corpus_waymark WITH (FORCE)")?;

    let date = String::from_utf8(Command::new("date").args(["-u", "+%Y-%m-%d"]).output()?.stdout)?;
    let median = |times: &[Duration]| {
        let mut t = times.to_vec();
        t.sort();
        t[t.len() / 2].as_secs_f64()
    };
    let (m_ours, m_floor) = (median(&ours), median(&floor));
    let row = |name: &str, times: &[Duration]| {
        let m = median(times);
        let (lo, hi) = (times.iter().min().unwrap(), times.iter().max().unwrap());
        format!(
            "| {name} | {:.0} ms | {:.0}–{:.0} ms | {:.2} ms | {:.2}× |\n",
            m * 1e3,
            lo.as_secs_f64() * 1e3,
            hi.as_secs_f64() * 1e3,
            m * 1e3 / count as f64,
            m / m_floor
        )
    };
    let out = format!(
        "{BEGIN}\n## A real history: crates.io's {count} diesel migrations\n\n\
         Measured {} on {}, {runs} runs taking turns, each on a fresh database (`synchronous_commit = off`, as \
         above); release build, default settings (copies of dropped data on). psql runs the same files in diesel's \
         order, each in a transaction unless its `metadata.toml` says otherwise, and keeps no history. Rerun with \
         `cargo xtask bench-corpus --write`. Target (issue 11): waymark within 1.10× of psql.\n\n\
         | tool | median | range | per migration | × psql |\n|---|---|---|---|---|\n{}{}\n\
         waymark / psql, median: **{:.2}×**.\n{END}\n",
        date.trim(),
        crate::machine(),
        row("psql -f, one transaction per migration (the floor)", &floor),
        row("waymark up", &ours),
        m_ours / m_floor,
    );
    println!("{out}");
    if write {
        write_section(BEGIN, END, &out)?;
    }
    Ok(())
}

/// One psql script running every migration's `up.sql` in diesel's order
/// (versions as strings, dashes removed), and the number of migrations.
fn psql_script(corpus: &Path, dir: &Path) -> anyhow::Result<(PathBuf, usize)> {
    let mut folders: Vec<(String, PathBuf, bool)> = Vec::new();
    for entry in std::fs::read_dir(corpus)? {
        let path = entry?.path();
        if !path.join("up.sql").is_file() {
            continue;
        }
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let key = name.split('_').next().unwrap_or_default().replace('-', "");
        let metadata = std::fs::read_to_string(path.join("metadata.toml")).unwrap_or_default();
        let transaction = !metadata.replace(' ', "").contains("run_in_transaction=false");
        folders.push((key, path, transaction));
    }
    folders.sort();
    let mut text = String::new();
    for (_, path, transaction) in &folders {
        let include = format!(
            "\\i '{}'\n",
            path.join("up.sql").display().to_string().replace('\'', "''")
        );
        if *transaction {
            text.push_str(&format!("BEGIN;\n{include}COMMIT;\n"));
        } else {
            text.push_str(&include);
        }
    }
    let script = dir.join("corpus.sql");
    std::fs::write(&script, text)?;
    Ok((script, folders.len()))
}
