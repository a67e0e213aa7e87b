//! `cargo xtask bench-backup`: waymark's backups against PostgreSQL's own
//! tools on pgbench data, in the same run, written into the notes of
//! docs/BENCHMARKS.md between markers.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

const BEGIN: &str = "<!-- backup-bench: written by `cargo xtask bench-backup --write` -->";
const END: &str = "<!-- /backup-bench -->";

/// The arguments the pgbench benchmarks share.
pub(crate) struct PgBench {
    pub(crate) scale: u32,
    pub(crate) runs: usize,
    pub(crate) admin: String,
    pub(crate) write: bool,
}

impl PgBench {
    /// `[--scale N] [--runs N] [--pg-url URL] [--write]`.
    pub(crate) fn parse(command: &str, args: &[String], runs: usize) -> anyhow::Result<PgBench> {
        let mut bench = PgBench {
            scale: 50,
            runs,
            admin: std::env::var("WAYMARK_TEST_PG_URL")
                .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into()),
            write: false,
        };
        let mut it = args.iter();
        while let Some(a) = it.next() {
            match a.as_str() {
                "--scale" => bench.scale = it.next().context("--scale N")?.parse()?,
                "--runs" => bench.runs = it.next().context("--runs N")?.parse()?,
                "--pg-url" => bench.admin = it.next().context("--pg-url URL")?.clone(),
                "--write" => bench.write = true,
                other => bail!(
                    "unknown argument {other}: cargo xtask {command} [--scale N] [--runs N] [--pg-url URL] [--write]"
                ),
            }
        }
        Ok(bench)
    }

    /// The URL of database `db` on the server.
    pub(crate) fn url(&self, db: &str) -> String {
        format!("{}/{db}", &self.admin[..self.admin.rfind('/').unwrap()])
    }

    /// Runs `sql` with psql on the admin database.
    pub(crate) fn psql(&self, sql: &str) -> anyhow::Result<()> {
        sh(Command::new("psql").args(["-q", "-d", &self.admin, "-c", sql]))
    }

    /// Makes database `db` afresh and fills it with pgbench data.
    pub(crate) fn init(&self, db: &str) -> anyhow::Result<()> {
        self.psql(&format!("DROP DATABASE IF EXISTS {db}"))?;
        self.psql(&format!("CREATE DATABASE {db}"))?;
        sh(Command::new("pgbench").args(["-i", "-q", "-s", &self.scale.to_string(), &self.url(db)]))
    }
}

/// Builds the release binary and returns its path.
pub(crate) fn release_waymark() -> anyhow::Result<std::path::PathBuf> {
    let root = crate::root();
    sh(Command::new(env!("CARGO"))
        .args(["build", "--release", "-p", "waymark"])
        .current_dir(&root))?;
    Ok(root.join("target/release/waymark"))
}

/// Puts `out` between `begin` and `end` in docs/BENCHMARKS.md (at its end
/// the first time).
pub(crate) fn write_section(begin: &str, end: &str, out: &str) -> anyhow::Result<()> {
    let path = crate::root().join("docs/BENCHMARKS.md");
    let old = std::fs::read_to_string(&path)?;
    let new = match (old.find(begin), old.find(end)) {
        (Some(a), Some(b)) => format!("{}{}{}", &old[..a], out.trim_end(), &old[b + end.len()..]),
        _ => format!("{}\n{out}", old.trim_end()),
    };
    std::fs::write(&path, new)?;
    eprintln!("wrote docs/BENCHMARKS.md");
    Ok(())
}

pub(crate) fn run(args: &[String]) -> anyhow::Result<()> {
    let bench = PgBench::parse("bench-backup", args, 2)?;
    let (scale, runs, write) = (bench.scale, bench.runs, bench.write);
    let waymark = release_waymark()?;
    let url = |db: &str| bench.url(db);
    let psql = |sql: &str| bench.psql(sql);

    eprintln!("pgbench -i -s {scale}");
    bench.init("wm_bench_src")?;
    let size = String::from_utf8(
        Command::new("psql")
            .args([
                "-At",
                "-d",
                &url("wm_bench_src"),
                "-c",
                "SELECT pg_size_pretty(pg_database_size(current_database()))",
            ])
            .output()?
            .stdout,
    )?;

    let work = tempfile::tempdir()?;
    let mut rows: Vec<(&str, Vec<Duration>)> = vec![
        (
            "waymark backup create (zstd, SHA-256 of every file and every table's rows, verified)",
            Vec::new(),
        ),
        ("pg_dump -Fd -j 2, then sha256sum of its files", Vec::new()),
        (
            "waymark backup restore (verified first, chunks loaded in parallel, every row read back and digested after)",
            Vec::new(),
        ),
        ("... of which the read-back and digest of every row", Vec::new()),
        ("pg_restore -j 2 (no checksums)", Vec::new()),
    ];
    for run in 0..runs {
        eprintln!("run {} of {runs}", run + 1);
        let ours = work.path().join(format!("waymark-{run}"));
        let theirs = work.path().join(format!("pgdump-{run}"));
        rows[0].1.push(timed(|| {
            sh(Command::new(&waymark)
                .args(["-q", "backup", "create", "--out"])
                .arg(&ours)
                .args(["--database-url", &url("wm_bench_src")]))
        })?);
        rows[1].1.push(timed(|| {
            sh(Command::new("pg_dump")
                .args(["-Fd", "-j", "2", "-f"])
                .arg(&theirs)
                .args(["-d", &url("wm_bench_src")]))?;
            sh(Command::new("sh")
                .arg("-c")
                .arg(format!("sha256sum {}/* > /dev/null", theirs.display())))
        })?);
        let set = std::fs::read_dir(&ours)?.next().context("no backup set")??.path();
        psql("DROP DATABASE IF EXISTS wm_bench_dst")?;
        psql("CREATE DATABASE wm_bench_dst")?;
        let started = Instant::now();
        let restored = Command::new(&waymark)
            .env("WAYMARK_LOG", "waymark_backup=debug")
            .args(["-q", "backup", "restore"])
            .arg(&set)
            .args(["--to", &url("wm_bench_dst")])
            .output()?;
        rows[2].1.push(started.elapsed());
        let log = String::from_utf8_lossy(&restored.stderr);
        if !restored.status.success() {
            bail!("waymark backup restore failed:\n{log}");
        }
        // The restore logs when each phase ends.
        let phase = |name: &str| {
            log.lines()
                .find(|l| l.contains(name))
                .and_then(|l| l.split("elapsed=").nth(1))
                .and_then(|e| {
                    // `Duration`'s debug form: 7.5s, 980.1ms, 12.3µs.
                    let e = e.trim();
                    let (number, scale) = [("ms", 1e-3), ("µs", 1e-6), ("ns", 1e-9), ("s", 1.0)]
                        .iter()
                        .find_map(|(unit, scale)| e.strip_suffix(unit).map(|n| (n, *scale)))?;
                    number.parse::<f64>().ok().map(|n| n * scale)
                })
                .context("the restore's debug log lacks its phases")
        };
        let check = phase("digested every restored table")? - phase("made indexes")?;
        rows[3].1.push(Duration::from_secs_f64(check));
        psql("DROP DATABASE wm_bench_dst WITH (FORCE)")?;
        psql("CREATE DATABASE wm_bench_dst")?;
        rows[4].1.push(timed(|| {
            sh(Command::new("pg_restore")
                .args(["-j", "2", "-d", &url("wm_bench_dst")])
                .arg(&theirs))
        })?);
        psql("DROP DATABASE wm_bench_dst WITH (FORCE)")?;
        eprintln!(
            "sizes: waymark {} bytes, pg_dump {} bytes",
            dir_size(&set),
            dir_size(&theirs)
        );
    }
    let ours_size = dir_size(
        &std::fs::read_dir(work.path().join("waymark-0"))?
            .next()
            .context("no set")??
            .path(),
    );
    let theirs_size = dir_size(&work.path().join("pgdump-0"));
    psql("DROP DATABASE wm_bench_src WITH (FORCE)")?;

    let date = String::from_utf8(Command::new("date").args(["-u", "+%Y-%m-%d"]).output()?.stdout)?;
    let mut out = format!(
        "{BEGIN}\n## Backups against pg_dump and pg_restore\n\n\
         Measured {} on {}, pgbench data at scale {scale} ({} on disk), {runs} run(s), the tools taking turns; \
         release build. Rerun with `cargo xtask bench-backup --write`.\n\n\
         | operation | median | runs |\n|---|---|---|\n",
        date.trim(),
        crate::machine(),
        size.trim()
    );
    for (name, times) in &rows {
        let mut t = times.clone();
        t.sort();
        out.push_str(&format!(
            "| {name} | {:.1} s | {} |\n",
            t[t.len() / 2].as_secs_f64(),
            times
                .iter()
                .map(|d| format!("{:.1} s", d.as_secs_f64()))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    out.push_str(&format!(
        "\nSize on disk: waymark {:.0} MB (zstd level 3), pg_dump -Fd {:.0} MB (gzip).\n{END}\n",
        ours_size as f64 / 1e6,
        theirs_size as f64 / 1e6
    ));
    println!("{out}");
    if write {
        write_section(BEGIN, END, &out)?;
    }
    Ok(())
}

pub(crate) fn timed(f: impl FnOnce() -> anyhow::Result<()>) -> anyhow::Result<Duration> {
    let started = Instant::now();
    f()?;
    Ok(started.elapsed())
}

pub(crate) fn sh(cmd: &mut Command) -> anyhow::Result<()> {
    let status = cmd.status().with_context(|| format!("running {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed: {status}");
    }
    Ok(())
}

fn dir_size(dir: &Path) -> u64 {
    let mut total = 0;
    for entry in walk(dir) {
        total += std::fs::metadata(entry).map(|m| m.len()).unwrap_or(0);
    }
    total
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}
