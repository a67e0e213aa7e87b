//! `cargo xtask bench-backup`: waymark's backups against each database's
//! own tools in the same run, the tools taking turns: PostgreSQL's
//! `pg_dump`/`pg_restore` on pgbench data at two scales (with the estimate
//! beside each create), `mariadb-dump | zstd` and its reload, and
//! `sqlite3 .backup`; written into docs/BENCHMARKS.md between markers.

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
            admin: crate::admin_url(),
            write: false,
        };
        let mut it = args.iter();
        while let Some(a) = it.next() {
            match a.as_str() {
                "--scale" => bench.scale = crate::value(&mut it, "--scale N")?,
                "--runs" => bench.runs = crate::value(&mut it, "--runs N")?,
                "--pg-url" => bench.admin = crate::value(&mut it, "--pg-url URL")?,
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

/// One line of the results: what ran, on what data, each run's time and
/// peak RSS (waymark's own runs only).
struct Row {
    data: String,
    operation: &'static str,
    times: Vec<Duration>,
    rss_kib: Vec<u64>,
}

impl Row {
    fn new(data: &str, operation: &'static str) -> Row {
        Row {
            data: data.to_owned(),
            operation,
            times: Vec::new(),
            rss_kib: Vec::new(),
        }
    }

    /// One run's time and peak RSS.
    fn add(&mut self, (took, rss): (Duration, u64)) {
        self.times.push(took);
        self.rss_kib.push(rss);
    }

    fn median(&self) -> Duration {
        let mut t = self.times.clone();
        t.sort();
        t[t.len() / 2]
    }
}

/// Runs `cmd` under GNU time: how long it took and its peak RSS in KiB.
fn timed_rss(cmd: &mut Command) -> anyhow::Result<(Duration, u64)> {
    let report = tempfile::NamedTempFile::new()?;
    let program = cmd.get_program().to_owned();
    let mut wrapped = Command::new("/usr/bin/time");
    wrapped
        .arg("-f")
        .arg("%M")
        .arg("-o")
        .arg(report.path())
        .arg(program)
        .args(cmd.get_args());
    for (key, value) in cmd.get_envs() {
        match value {
            Some(value) => wrapped.env(key, value),
            None => wrapped.env_remove(key),
        };
    }
    let started = Instant::now();
    let out = wrapped
        .output()
        .with_context(|| format!("running {cmd:?} under /usr/bin/time"))?;
    let took = started.elapsed();
    if !out.status.success() {
        bail!(
            "{cmd:?} failed: {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let rss = std::fs::read_to_string(report.path())?
        .lines()
        .last()
        .and_then(|l| l.trim().parse().ok())
        .context("GNU time wrote no peak RSS")?;
    Ok((took, rss))
}

/// `waymark backup create` of `url` into `sets`: its time and peak RSS.
fn waymark_create(waymark: &Path, sets: &Path, url: &str) -> anyhow::Result<(Duration, u64)> {
    timed_rss(
        Command::new(waymark)
            .args(["-q", "backup", "create", "--out"])
            .arg(sets)
            .args(["--database-url", url]),
    )
}

/// The results so far: a line per operation, a note per kind of data.
#[derive(Default)]
struct Record {
    rows: Vec<Row>,
    notes: Vec<String>,
}

impl Record {
    /// Adds a line for each of `operations` on `data`; returns the first's
    /// index.
    fn lines(&mut self, data: &str, operations: &[&'static str]) -> usize {
        let first = self.rows.len();
        self.rows.extend(operations.iter().map(|op| Row::new(data, op)));
        first
    }

    /// The ratio of line `a`'s median to line `b`'s.
    fn ratio(&self, a: usize, b: usize) -> f64 {
        self.rows[a].median().as_secs_f64() / self.rows[b].median().as_secs_f64()
    }
}

/// `waymark backup create --estimate --json`'s expected duration.
fn estimate(waymark: &Path, out: &Path, url: &str) -> anyhow::Result<Duration> {
    let run = Command::new(waymark)
        .args(["backup", "create", "--estimate", "--json", "--out"])
        .arg(out)
        .args(["--database-url", url])
        .output()?;
    if !run.status.success() {
        bail!(
            "waymark backup create --estimate: {}",
            String::from_utf8_lossy(&run.stderr)
        );
    }
    let reply: serde_json::Value = serde_json::from_slice(&run.stdout)?;
    let ms = reply["duration_ms"]
        .as_u64()
        .context("the estimate has no duration_ms")?;
    Ok(Duration::from_millis(ms))
}

/// The newest set in `out`.
fn newest_set(out: &Path) -> anyhow::Result<std::path::PathBuf> {
    let mut sets: Vec<_> = std::fs::read_dir(out)?.flatten().map(|e| e.path()).collect();
    sets.sort();
    sets.pop().context("no backup set")
}

fn query(cmd: &mut Command) -> anyhow::Result<String> {
    let out = cmd.output()?;
    if !out.status.success() {
        bail!("{cmd:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8(out.stdout)?.trim().to_owned())
}

/// `[--scale N]...` (default 50 and 200) `[--runs N] [--pg-url URL]
/// [--mysql-rows N] [--sqlite-rows N] [--write]`.
pub(crate) fn run(args: &[String]) -> anyhow::Result<()> {
    let mut scales = Vec::new();
    let mut mysql_rows = 1_000_000u64;
    let mut sqlite_rows = 2_000_000u64;
    let mut rest = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--scale" => scales.push(crate::value::<u32>(&mut it, "--scale N")?),
            "--mysql-rows" => mysql_rows = crate::value(&mut it, "--mysql-rows N")?,
            "--sqlite-rows" => sqlite_rows = crate::value(&mut it, "--sqlite-rows N")?,
            _ => rest.push(a.clone()),
        }
    }
    if scales.is_empty() {
        scales = vec![50, 200];
    }
    let mut bench = PgBench::parse("bench-backup", &rest, 2)?;
    let (runs, write) = (bench.runs, bench.write);
    let waymark = release_waymark()?;
    let work = tempfile::tempdir()?;
    // One folder of sets for every PostgreSQL run, so each estimate learns
    // from the runs before it, as a DBA's folder would.
    let pg_sets = work.path().join("pg-sets");
    let mut record = Record::default();

    for &scale in &scales {
        bench.scale = scale;
        eprintln!("pgbench -i -s {scale}");
        bench.init("wm_bench_src")?;
        // Plain sockets on every side: TLS over loopback measures the
        // cipher, not the backup (the tools get PGSSLMODE=disable).
        let url = |db: &str| format!("{}?sslmode=disable", bench.url(db));
        let size = query(Command::new("psql").args([
            "-At",
            "-d",
            &url("wm_bench_src"),
            "-c",
            "SELECT pg_size_pretty(pg_database_size(current_database()))",
        ]))?;
        let data = format!("pgbench scale {scale} ({size})");
        let first = record.lines(
            &data,
            &[
                "waymark backup create --estimate: the duration it expects",
                "waymark backup create (zstd, SHA-256 of every file and every table's rows, verified)",
                "pg_dump -Fd -j 2, then sha256sum of its files",
                "waymark backup restore (verified first, every row read back and digested after)",
                "... of which the indexes and the read-back of every row, after the load",
                "waymark backup restore --verify count (verified first, each chunk's rows counted as loaded)",
                "pg_restore -j 2 (no checksums)",
            ],
        );
        let mut set_size = 0;
        let mut dump_size = 0;
        for run in 0..runs {
            eprintln!("scale {scale}: run {} of {runs}", run + 1);
            let theirs = work.path().join(format!("pgdump-{scale}-{run}"));
            record.rows[first]
                .times
                .push(estimate(&waymark, &pg_sets, &url("wm_bench_src"))?);
            record.rows[first + 1].add(waymark_create(&waymark, &pg_sets, &url("wm_bench_src"))?);
            record.rows[first + 2].times.push(timed(|| {
                sh(Command::new("pg_dump")
                    .env("PGSSLMODE", "disable")
                    .args(["-Fd", "-j", "2", "-f"])
                    .arg(&theirs)
                    .args(["-d", &url("wm_bench_src")]))?;
                sh(Command::new("sh")
                    .arg("-c")
                    .arg(format!("sha256sum {}/* > /dev/null", theirs.display())))
            })?);
            let set = newest_set(&pg_sets)?;
            set_size = dir_size(&set);
            dump_size = dir_size(&theirs);
            bench.psql("DROP DATABASE IF EXISTS wm_bench_dst")?;
            bench.psql("CREATE DATABASE wm_bench_dst")?;
            let log = work.path().join("restore.log");
            record.rows[first + 3].add(timed_rss(
                Command::new("sh")
                    .arg("-c")
                    .arg("WAYMARK_LOG=waymark_backup=debug exec \"$0\" -q backup restore \"$1\" --to \"$2\" 2> \"$3\"")
                    .arg(&waymark)
                    .arg(&set)
                    .arg(url("wm_bench_dst"))
                    .arg(&log),
            )?);
            let log = std::fs::read_to_string(&log)?;
            let check = phase(&log, "digested every restored table")? - phase(&log, "loaded the rows")?;
            record.rows[first + 4].times.push(Duration::from_secs_f64(check));
            bench.psql("DROP DATABASE wm_bench_dst WITH (FORCE)")?;
            bench.psql("CREATE DATABASE wm_bench_dst")?;
            record.rows[first + 5].add(timed_rss(
                Command::new(&waymark)
                    .args(["-q", "backup", "restore"])
                    .arg(&set)
                    .args(["--to", &url("wm_bench_dst"), "--verify", "count"]),
            )?);
            bench.psql("DROP DATABASE wm_bench_dst WITH (FORCE)")?;
            bench.psql("CREATE DATABASE wm_bench_dst")?;
            record.rows[first + 6].times.push(timed(|| {
                sh(Command::new("pg_restore")
                    .env("PGSSLMODE", "disable")
                    .args(["-j", "2", "-d", &url("wm_bench_dst")])
                    .arg(&theirs))
            })?);
            bench.psql("DROP DATABASE wm_bench_dst WITH (FORCE)")?;
            std::fs::remove_dir_all(&theirs)?;
        }
        bench.psql("DROP DATABASE wm_bench_src WITH (FORCE)")?;
        record.notes.push(format!(
            "- {data}: create {:.2}× of pg_dump + sha256sum (target ≤ 0.70×), restore {:.2}× of pg_restore \
             (target ≤ 0.70×; {:.2}× with --verify count), the estimate {:.2}× of the create it preceded. Size \
             on disk: waymark {:.0} MB (zstd level 3), pg_dump -Fd {:.0} MB (gzip).",
            record.ratio(first + 1, first + 2),
            record.ratio(first + 3, first + 6),
            record.ratio(first + 5, first + 6),
            record.ratio(first, first + 1),
            set_size as f64 / 1e6,
            dump_size as f64 / 1e6
        ));
    }

    mariadb(&waymark, work.path(), mysql_rows, runs, &mut record)?;
    sqlite(&waymark, work.path(), sqlite_rows, runs, &mut record)?;

    let date = query(Command::new("date").args(["-u", "+%Y-%m-%d"]))?;
    let mut out = format!(
        "{BEGIN}\n## Backups against the databases' own tools\n\n\
         Measured {date} on {}; MariaDB {}; SQLite {}. {runs} run(s) of each, the tools taking turns; release \
         build; peak RSS of waymark's own process by GNU time. Every side connects without TLS (`sslmode=disable`): \
         libpq's default, which waymark's follows, would encrypt over loopback, which cost `pg_dump` about 5 % \
         of its time. Rerun with `cargo xtask bench-backup --write`.\n\n\
         | data | operation | median | runs | peak RSS |\n|---|---|---|---|---|\n",
        crate::machine(),
        query(Command::new("mariadb").arg("--version"))?,
        query(Command::new("sqlite3").arg("--version"))?
            .split_whitespace()
            .next()
            .unwrap_or("?"),
    );
    for row in &record.rows {
        let rss = match row.rss_kib.iter().max() {
            Some(kib) => format!("{:.0} MiB", *kib as f64 / 1024.0),
            None => String::new(),
        };
        out.push_str(&format!(
            "| {} | {} | {:.2} s | {} | {rss} |\n",
            row.data,
            // A shell pipe in a table cell is a column break in Markdown.
            row.operation.replace('|', "\\|"),
            row.median().as_secs_f64(),
            row.times
                .iter()
                .map(|d| format!("{:.2} s", d.as_secs_f64()))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    out.push('\n');
    for note in &record.notes {
        out.push_str(note);
        out.push('\n');
    }
    out.push_str(END);
    out.push('\n');
    println!("{out}");
    if write {
        write_section(BEGIN, END, &out)?;
    }
    Ok(())
}

/// When the restore's debug log says a phase ended, in seconds.
fn phase(log: &str, name: &str) -> anyhow::Result<f64> {
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
}

/// MariaDB: waymark against `mariadb-dump --single-transaction | zstd` and
/// its reload with `mariadb`, on a pgbench-shaped table.
fn mariadb(waymark: &Path, work: &Path, n: u64, runs: usize, record: &mut Record) -> anyhow::Result<()> {
    let admin = |sql: &str| sh(Command::new("mariadb").args(["-h", "127.0.0.1", "-u", "root", "-e", sql]));
    let url = |db: &str| format!("mysql://root@127.0.0.1:3306/{db}");
    eprintln!("MariaDB: {n} rows");
    admin("DROP DATABASE IF EXISTS wm_bench_my; CREATE DATABASE wm_bench_my")?;
    admin(&format!(
        "USE wm_bench_my; CREATE TABLE accounts (aid INT PRIMARY KEY, bid INT NOT NULL, abalance INT NOT NULL, \
         filler CHAR(84), KEY accounts_bid (bid)); INSERT INTO accounts SELECT seq, seq DIV 100000 + 1, 0, '' \
         FROM seq_1_to_{n}; ANALYZE TABLE accounts"
    ))?;
    let data = format!("MariaDB, {n} pgbench-shaped rows");
    let first = record.lines(
        &data,
        &[
            "waymark backup create",
            "mariadb-dump --single-transaction | zstd -3",
            "waymark backup restore (every row read back and digested)",
            "waymark backup restore --verify count",
            "zstd -dc | mariadb (no checks)",
        ],
    );
    let sets = work.join("my-sets");
    for run in 0..runs {
        eprintln!("MariaDB: run {} of {runs}", run + 1);
        record.rows[first].add(waymark_create(waymark, &sets, &url("wm_bench_my"))?);
        let dump = work.join(format!("my-{run}.sql.zst"));
        record.rows[first + 1].times.push(timed(|| {
            sh(Command::new("sh").arg("-c").arg(format!(
                "mariadb-dump -h 127.0.0.1 -u root --single-transaction wm_bench_my | zstd -q -3 -o {}",
                dump.display()
            )))
        })?);
        admin("DROP DATABASE IF EXISTS wm_bench_my_dst; CREATE DATABASE wm_bench_my_dst")?;
        record.rows[first + 2].add(timed_rss(
            Command::new(waymark)
                .args(["-q", "backup", "restore"])
                .arg(newest_set(&sets)?)
                .args(["--to", &url("wm_bench_my_dst")]),
        )?);
        admin("DROP DATABASE wm_bench_my_dst; CREATE DATABASE wm_bench_my_dst")?;
        record.rows[first + 3].add(timed_rss(
            Command::new(waymark)
                .args(["-q", "backup", "restore"])
                .arg(newest_set(&sets)?)
                .args(["--to", &url("wm_bench_my_dst"), "--verify", "count"]),
        )?);
        admin("DROP DATABASE wm_bench_my_dst; CREATE DATABASE wm_bench_my_dst")?;
        record.rows[first + 4].times.push(timed(|| {
            sh(Command::new("sh").arg("-c").arg(format!(
                "zstd -q -dc {} | mariadb -h 127.0.0.1 -u root wm_bench_my_dst",
                dump.display()
            )))
        })?);
        admin("DROP DATABASE wm_bench_my_dst")?;
    }
    admin("DROP DATABASE wm_bench_my")?;
    record.notes.push(format!(
        "- {data}: create {:.2}× of mariadb-dump | zstd (target < 1), restore {:.2}× of its reload (target < 1; \
         {:.2}× with --verify count).",
        record.ratio(first, first + 1),
        record.ratio(first + 2, first + 4),
        record.ratio(first + 3, first + 4)
    ));
    Ok(())
}

/// SQLite: waymark against `sqlite3 .backup`, which copies pages and
/// checks nothing; a backup of rows, and one of pages (`--pages`) of a
/// rollback-journal file and of the same file in WAL mode; and the
/// restore of pages against `sqlite3 .restore`.
fn sqlite(waymark: &Path, work: &Path, n: u64, runs: usize, record: &mut Record) -> anyhow::Result<()> {
    eprintln!("SQLite: {n} rows");
    let source = work.join("source.db");
    sh(Command::new("sqlite3").arg(&source).arg(format!(
        "CREATE TABLE accounts (aid INTEGER PRIMARY KEY, bid INT NOT NULL, abalance INT NOT NULL, filler TEXT); \
         WITH RECURSIVE s(g) AS (SELECT 1 UNION ALL SELECT g + 1 FROM s WHERE g < {n}) \
         INSERT INTO accounts SELECT g, g / 100000 + 1, 0, printf('%84s', '') FROM s; \
         CREATE INDEX accounts_bid ON accounts (bid);"
    )))?;
    let wal = work.join("wal.db");
    std::fs::copy(&source, &wal)?;
    sh(Command::new("sqlite3").arg(&wal).arg("PRAGMA journal_mode = WAL;"))?;
    let mb = std::fs::metadata(&source)?.len() as f64 / 1e6;
    let data = format!("SQLite, {n} pgbench-shaped rows ({mb:.0} MB)");
    let first = record.lines(
        &data,
        &[
            "waymark backup create",
            "waymark backup create --pages",
            "waymark backup create --pages, WAL mode",
            "sqlite3 .backup (pages, no checks)",
            "waymark backup restore of pages (digest, integrity check)",
            "waymark backup restore of pages --verify count (digest, quick check)",
            "sqlite3 .restore (no checks)",
        ],
    );
    let sets = work.join("lite-sets");
    let url = format!("sqlite://{}", source.display());
    let pages = |url: &str| {
        timed_rss(
            Command::new(waymark)
                .args(["-q", "backup", "create", "--pages", "--out"])
                .arg(&sets)
                .args(["--database-url", url]),
        )
    };
    for run in 0..runs {
        eprintln!("SQLite: run {} of {runs}", run + 1);
        record.rows[first].add(waymark_create(waymark, &sets, &url)?);
        record.rows[first + 1].add(pages(&url)?);
        let set = newest_set(&sets)?;
        record.rows[first + 2].add(pages(&format!("sqlite://{}", wal.display()))?);
        let copy = work.join(format!("copy-{run}.db"));
        record.rows[first + 3].times.push(timed(|| {
            sh(Command::new("sqlite3")
                .arg(&source)
                .arg(format!(".backup '{}'", copy.display())))
        })?);
        let restored = work.join(format!("restored-{run}.db"));
        record.rows[first + 4].add(timed_rss(
            Command::new(waymark)
                .args(["-q", "backup", "restore"])
                .arg(&set)
                .arg("--to")
                .arg(format!("sqlite://{}", restored.display())),
        )?);
        let quick = work.join(format!("quick-{run}.db"));
        record.rows[first + 5].add(timed_rss(
            Command::new(waymark)
                .args(["-q", "backup", "restore", "--verify", "count"])
                .arg(&set)
                .arg("--to")
                .arg(format!("sqlite://{}", quick.display())),
        )?);
        let reloaded = work.join(format!("reloaded-{run}.db"));
        record.rows[first + 6].times.push(timed(|| {
            sh(Command::new("sqlite3")
                .arg(&reloaded)
                .arg(format!(".restore '{}'", copy.display())))
        })?);
        for file in [copy, restored, quick, reloaded] {
            std::fs::remove_file(file)?;
        }
    }
    record.notes.push(format!(
        "- {data}: create {:.2}× of sqlite3 .backup, and with --pages {:.2}× (WAL mode {:.2}×) (target ≤ 1.5×); \
         restore of pages {:.2}× of sqlite3 .restore ({:.2}× with the quick check).",
        record.ratio(first, first + 3),
        record.ratio(first + 1, first + 3),
        record.ratio(first + 2, first + 3),
        record.ratio(first + 4, first + 6),
        record.ratio(first + 5, first + 6),
    ));
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
