//! Project chores. `cargo xtask bench` measures what docs/BENCHMARKS.md
//! reports and rewrites that file.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

mod backup_bench;
mod corpus_bench;
mod cutover_bench;
mod expand_bench;
mod fleet_bench;
mod fuzz;
mod load_bench;
mod online_bench;
mod tidy;
mod verify_bench;
use waymark_host::{Call, CallError, Dialect, Direction, Limits, StepEnv, StepFuture, StepHost, Value};

const USAGE: &str = "usage: cargo xtask bench [--migrations N] [--runs N] [--pg-url URL] [--write]\n       cargo xtask bench-backup [--scale N] [--runs N] [--pg-url URL] [--write]\n       cargo xtask bench-verify [--scale N] [--runs N] [--pg-url URL] [--write]\n       cargo xtask bench-cutover [--scale N] [--runs N] [--write]\n       cargo xtask bench-corpus [--runs N] [--pg-url URL] [--corpus DIR] [--write]\n       cargo xtask bench-online [--scale N] [--runs N] [--pg-url URL] [--write | --only WAY]\n       cargo xtask bench-expand [--rows N] [--runs N] [--pg-url URL] [--write]\n       cargo xtask bench-load [--clients N] [--seconds N] [--rate R] [--scale N] [--runs N] [--pg-url URL] [--write]\n       cargo xtask bench-fleet [--sqlite N] [--pg N] [--parallel 1,4,16,32] [--pg-url URL] [--write]\n       cargo xtask fuzz [--seconds N] [--execs N] [--seed N] [--corpus DIR]";

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("bench") => bench(&args[1..]),
        Some("bench-backup") => backup_bench::run(&args[1..]),
        Some("fuzz") => fuzz::run(&args[1..]),
        Some("bench-corpus") => corpus_bench::run(&args[1..]),
        Some("bench-verify") => verify_bench::run(&args[1..]),
        Some("bench-cutover") => cutover_bench::run(&args[1..]),
        Some("bench-online") => online_bench::run(&args[1..]),
        Some("bench-expand") => expand_bench::run(&args[1..]),
        Some("bench-load") => load_bench::run(&args[1..]),
        Some("bench-fleet") => fleet_bench::run(&args[1..]),
        _ => bail!("{USAGE}"),
    }
}

const NOTES_MARKER: &str = "<!-- Notes below this line are kept by `cargo xtask bench --write`. -->";

/// Builds a tool's command line for a database URL.
type Tool = Box<dyn Fn(&str) -> Command>;

struct Options {
    migrations: usize,
    runs: usize,
    pg_url: String,
    write: bool,
}

fn parse(args: &[String]) -> anyhow::Result<Options> {
    let mut o = Options {
        migrations: 1000,
        runs: 5,
        pg_url: crate::admin_url(),
        write: false,
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--migrations" => o.migrations = crate::value(&mut it, USAGE)?,
            "--runs" => o.runs = crate::value(&mut it, USAGE)?,
            "--pg-url" => o.pg_url = crate::value(&mut it, USAGE)?,
            "--write" => o.write = true,
            other => bail!("unknown argument {other}\n{USAGE}"),
        }
    }
    Ok(o)
}

pub(crate) fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

fn bench(args: &[String]) -> anyhow::Result<()> {
    let o = parse(args)?;
    let root = root();
    eprintln!("building the release binary");
    let status = Command::new(env!("CARGO"))
        .args(["build", "--release", "-p", "waymark"])
        .current_dir(&root)
        .status()?;
    if !status.success() {
        bail!("cargo build failed");
    }
    let waymark = root.join("target/release/waymark");

    let dir = tempfile::tempdir()?;
    generate(dir.path(), o.migrations)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;

    // Each tool is a name and a command line taking the database URL last.
    let mut tools: Vec<(String, Tool)> = Vec::new();

    // The floor: the same SQL through psql, one transaction per file, in
    // one session. Whatever a migration tool adds sits on top of this.
    if which("psql") {
        let script = dir.path().join("all.sql");
        let mut text = String::new();
        for i in 1..=o.migrations {
            text.push_str("BEGIN;\n");
            text.push_str(&std::fs::read_to_string(
                dir.path().join(format!("migrations/{}", up_name(i))),
            )?);
            text.push_str("\nCOMMIT;\n");
        }
        std::fs::write(&script, text)?;
        tools.push((
            "psql -f (same SQL, no bookkeeping)".into(),
            Box::new(move |url| {
                let mut c = Command::new("psql");
                c.args(["-q", "-v", "ON_ERROR_STOP=1", "-f"])
                    .arg(&script)
                    .args(["-d", url]);
                c
            }),
        ));
    }
    let migrations = dir.path().join("migrations");
    let cache = dir.path().join("cache");
    {
        let migrations = migrations.clone();
        tools.push((
            format!("waymark up ({} migrations)", o.migrations),
            Box::new(move |url| {
                let mut c = Command::new(&waymark);
                c.env("WAYMARK_CACHE_DIR", &cache)
                    .arg("--migrations")
                    .arg(&migrations)
                    .args(["up", "-q", "--database-url", url]);
                c
            }),
        ));
    }
    match Command::new("sqlx")
        .arg("--version")
        .output()
        .ok()
        .filter(|o| o.status.success())
    {
        Some(v) => tools.push((
            format!("sqlx migrate run ({})", String::from_utf8_lossy(&v.stdout).trim()),
            Box::new(move |url| {
                let mut c = Command::new("sqlx");
                c.args(["migrate", "run", "--source"])
                    .arg(&migrations)
                    .args(["--database-url", url]);
                c
            }),
        )),
        None => eprintln!(
            "sqlx-cli not installed: `cargo install sqlx-cli --no-default-features --features postgres,rustls` to compare"
        ),
    }

    // Round-robin, so a slow stretch of the disk (fsync dominates) falls on
    // every tool alike rather than on whichever ran then.
    let mut times: Vec<Vec<Duration>> = vec![Vec::new(); tools.len()];
    for run in 0..o.runs {
        for (i, (name, command)) in tools.iter().enumerate() {
            eprintln!("run {} of {}: {name}", run + 1, o.runs);
            times[i].push(timed(&rt, &o.pg_url, |url| self::run(&mut command(url)))?);
        }
    }
    let rows: Vec<(String, Vec<Duration>)> = tools.into_iter().map(|(name, _)| name).zip(times).collect();

    eprintln!("measuring the steps' own cost");
    let sql_input = "CREATE TABLE t (id integer PRIMARY KEY, label text);\nINSERT INTO t (id) VALUES (1);\nCREATE INDEX t_label ON t (label);\n";
    let sql = step_overhead(&rt, None, sql_input, "{}")?;
    let seed_bytes = std::fs::read(waymark_host::SEED_WASM_PATH)?;
    let seed_config =
        r#"{"table":"roles","key":["id"],"columns":["id","name"],"rows":[[1,"owner"],[2,"editor"],[3,"guest"]]}"#;
    let seed = step_overhead(&rt, Some(&seed_bytes), "", seed_config)?;
    eprintln!("measuring host calls");
    let calls = host_call_cost(&rt, &root.join("target/release/waymark"), &o.pg_url, o.runs)?;
    let report = render(
        &o,
        &rows,
        &[
            ("built-in SQL step (three statements)", &sql),
            ("seed plugin (three rows, with its configuration)", &seed),
        ],
        &calls,
    );
    println!("{report}");
    if o.write {
        // Notes written by hand below the marker survive a rerun.
        let path = root.join("docs/BENCHMARKS.md");
        let notes = std::fs::read_to_string(&path)
            .ok()
            .and_then(|old| old.find(NOTES_MARKER).map(|i| old[i..].to_owned()))
            .unwrap_or_else(|| format!("{NOTES_MARKER}\n"));
        std::fs::write(&path, format!("{report}\n{notes}"))?;
        eprintln!("wrote docs/BENCHMARKS.md");
    }
    Ok(())
}

fn up_name(i: usize) -> String {
    format!("{i:05}_m{i}.up.sql")
}

/// Small migrations in the flat layout, which waymark and sqlx both read.
fn generate(dir: &Path, n: usize) -> anyhow::Result<()> {
    let m = dir.join("migrations");
    std::fs::create_dir_all(&m)?;
    for i in 1..=n {
        std::fs::write(
            m.join(up_name(i)),
            format!(
                "-- migration {i}\nCREATE TABLE t{i} (id integer PRIMARY KEY, label text NOT NULL DEFAULT 'x;y');\n\
                 INSERT INTO t{i} (id) VALUES (1);\nCREATE INDEX t{i}_label ON t{i} (label);\n"
            ),
        )?;
        std::fs::write(m.join(format!("{i:05}_m{i}.down.sql")), format!("DROP TABLE t{i};\n"))?;
    }
    Ok(())
}

fn which(tool: &str) -> bool {
    Command::new(tool)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

fn run(cmd: &mut Command) -> anyhow::Result<()> {
    let out = cmd.output()?;
    if !out.status.success() {
        bail!("{:?} failed: {}", cmd, String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}

/// Runs `f` against a freshly created database and returns its wall time.
fn timed(
    rt: &tokio::runtime::Runtime,
    admin_url: &str,
    f: impl Fn(&str) -> anyhow::Result<()>,
) -> anyhow::Result<Duration> {
    let name = format!("wm_bench_{}", std::process::id());
    rt.block_on(admin(admin_url, &format!("DROP DATABASE IF EXISTS {name}")))?;
    rt.block_on(admin(admin_url, &format!("CREATE DATABASE {name}")))?;
    // Commit fsyncs dominate and vary by tens of percent on a shared disk,
    // burying what the tools themselves cost; every tool gets the same
    // setting through the database.
    rt.block_on(admin(
        admin_url,
        &format!("ALTER DATABASE {name} SET synchronous_commit = off"),
    ))?;
    let url = format!("{}/{name}", &admin_url[..admin_url.rfind('/').unwrap()]);
    let started = Instant::now();
    let result = f(&url);
    let elapsed = started.elapsed();
    rt.block_on(admin(admin_url, &format!("DROP DATABASE {name} WITH (FORCE)")))?;
    result.map(|()| elapsed)
}

async fn admin(url: &str, sql: &str) -> anyhow::Result<()> {
    let pool = sqlx::PgPool::connect(url).await?;
    sqlx::query(sql).execute(&pool).await?;
    pool.close().await;
    Ok(())
}

struct NoDb;

impl StepEnv for NoDb {
    fn execute<'a>(&'a mut self, _: &'a str, _: Vec<Value>) -> StepFuture<'a, Result<u64, CallError>> {
        Box::pin(async { Ok(0) })
    }

    // As in a real migration on PostgreSQL: the step sends its statements as
    // one script.
    fn in_transaction(&self) -> bool {
        true
    }

    fn execute_script<'a>(&'a mut self, _: &'a str) -> StepFuture<'a, Result<u64, CallError>> {
        Box::pin(async { Ok(0) })
    }
}

/// Per-step costs of one component, without a database.
struct StepNumbers {
    warm: Duration,
    cold_cached: Duration,
    cold_uncached: Duration,
}

/// The Wasm side of a step, without a database: a fresh store,
/// instantiation from the pre-instantiated component, the `up` call, the
/// return. Cold: a new host, loading the component (from the artifact
/// cache, or compiling it).
fn step_overhead(
    rt: &tokio::runtime::Runtime,
    bytes: Option<&[u8]>,
    input: &str,
    config: &str,
) -> anyhow::Result<StepNumbers> {
    let cache = tempfile::tempdir()?;
    let call = Call {
        config,
        ..Call::new(Direction::Up, Dialect::Postgres, input)
    };
    let load = |host: &StepHost| match bytes {
        Some(b) => host.load("bench", b),
        None => host.sql_step(),
    };
    let cold = |dir: &Path| -> anyhow::Result<Duration> {
        let started = Instant::now();
        let host = StepHost::with_cache_dir(Limits::default(), Some(dir.to_owned()))?;
        let step = load(&host)?;
        let (_, r) = rt.block_on(host.run(&step, &call, Box::new(NoDb)));
        r?;
        Ok(started.elapsed())
    };
    let cold_uncached = cold(cache.path())?;
    let cold_cached = (0..10)
        .map(|_| cold(cache.path()))
        .collect::<anyhow::Result<Vec<_>>>()?
        .into_iter()
        .min()
        .unwrap();

    let host = StepHost::with_cache_dir(Limits::default(), Some(cache.path().to_owned()))?;
    let step = load(&host)?;
    let n = 5000;
    let warm = rt.block_on(async {
        for _ in 0..100 {
            let (_, r) = host.run(&step, &call, Box::new(NoDb)).await;
            r.unwrap();
        }
        let started = Instant::now();
        for _ in 0..n {
            let (_, r) = host.run(&step, &call, Box::new(NoDb)).await;
            r.unwrap();
        }
        started.elapsed() / n
    });
    Ok(StepNumbers {
        warm,
        cold_cached,
        cold_uncached,
    })
}

/// What one host call costs over the statement itself: a plugin step that
/// runs `SELECT 1` `calls` times in a real migration (through the binary,
/// permission checks included), less the same step running it never,
/// against the same statement sent as often through sqlx on one
/// connection.
struct HostCallNumbers {
    calls: u32,
    through_step: Vec<Duration>,
    through_sqlx: Vec<Duration>,
}

fn host_call_cost(
    rt: &tokio::runtime::Runtime,
    waymark: &Path,
    pg_url: &str,
    runs: usize,
) -> anyhow::Result<HostCallNumbers> {
    let calls = 10_000u32;
    let dir = tempfile::tempdir()?;
    let wasm = std::fs::read(waymark_host::TEST_STEPS_WASM_PATH)?;
    let digest = waymark_host::digest(&wasm);
    std::fs::write(dir.path().join("steps.wasm"), &wasm)?;
    let project = |n: u32| -> anyhow::Result<PathBuf> {
        let folder = dir.path().join(format!("m{n}/1_calls"));
        std::fs::create_dir_all(&folder)?;
        std::fs::write(
            folder.join("step.toml"),
            format!("component = \"../../steps.wasm\"\nsha256 = \"{digest}\"\nup = \"repeat:{n}:SELECT 1\"\n"),
        )?;
        Ok(dir.path().join(format!("m{n}")))
    };
    let (none, many) = (project(0)?, project(calls)?);
    let cache = dir.path().join("cache");
    let up = |migrations: &Path, url: &str| -> anyhow::Result<()> {
        run(Command::new(waymark)
            .env("WAYMARK_CACHE_DIR", &cache)
            .arg("--migrations")
            .arg(migrations)
            .args(["up", "-q", "--database-url", url]))
    };
    let mut through_step = Vec::new();
    let mut through_sqlx = Vec::new();
    for _ in 0..runs {
        let empty = timed(rt, pg_url, |url| up(&none, url))?;
        let full = timed(rt, pg_url, |url| up(&many, url))?;
        through_step.push(full.saturating_sub(empty));
        through_sqlx.push(rt.block_on(async {
            let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(pg_url).await?;
            let mut tx = sqlx::Connection::begin(&mut conn).await?;
            let started = Instant::now();
            for _ in 0..calls {
                sqlx::Executor::execute(&mut *tx, "SELECT 1").await?;
            }
            let took = started.elapsed();
            tx.rollback().await?;
            anyhow::Ok(took)
        })?);
    }
    Ok(HostCallNumbers {
        calls,
        through_step,
        through_sqlx,
    })
}

fn median(times: &[Duration]) -> Duration {
    let mut t = times.to_vec();
    t.sort();
    t[t.len() / 2]
}

/// The PostgreSQL server the benchmarks use, as a URL of its `postgres`
/// database: `WAYMARK_TEST_PG_URL`, as the tests take it, or the local one.
pub(crate) fn admin_url() -> String {
    std::env::var("WAYMARK_TEST_PG_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// The value after a flag, parsed; `what` names it in the error when it is
/// missing (`--runs N`).
pub(crate) fn value<T>(it: &mut std::slice::Iter<'_, String>, what: &str) -> anyhow::Result<T>
where
    T: std::str::FromStr,
    T::Err: std::error::Error + Send + Sync + 'static,
{
    Ok(it.next().with_context(|| what.to_owned())?.parse()?)
}

pub(crate) fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    let pg = Command::new("psql")
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    format!("{cores} cores ({cpu}); PostgreSQL: {pg} on 127.0.0.1")
}

fn render(
    o: &Options,
    rows: &[(String, Vec<Duration>)],
    steps: &[(&str, &StepNumbers)],
    calls: &HostCallNumbers,
) -> String {
    let date = Command::new("date")
        .args(["-u", "+%Y-%m-%d"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    let n = o.migrations as f64;
    let floor = rows
        .iter()
        .find(|(name, _)| name.starts_with("psql"))
        .map(|(_, t)| median(t));
    let mut out = String::new();
    out.push_str("# Benchmarks\n\n");
    out.push_str(&format!("Measured {date} on {}.\n\n", machine()));
    out.push_str(
        "Rerun with `cargo xtask bench --write` (PostgreSQL at `WAYMARK_TEST_PG_URL`, default \
                   `postgres://postgres@127.0.0.1:5432/postgres`; sqlx-cli is compared when `sqlx` is on PATH). \
                   Wall times, median of the runs, each on a freshly created database, the tools taking turns run by run; release build. The benchmark databases run with `synchronous_commit = off` (for every tool alike): commit fsyncs on this machine's disk vary by tens of percent from minute to minute and would bury the per-migration cost of the tools themselves.\n\n",
    );
    out.push_str(&format!(
        "## Applying {} small migrations to PostgreSQL\n\n",
        o.migrations
    ));
    out.push_str(
        "Each migration creates a table, inserts a row and creates an index (flat layout, read by both tools).\n\n",
    );
    out.push_str(&format!(
        "| tool | total (median of {}) | range | per migration | over the psql floor, per migration |\n|---|---|---|---|---|\n",
        o.runs
    ));
    for (name, times) in rows {
        let m = median(times);
        let over = floor
            .map(|f| format!("{:.3} ms", (m.as_secs_f64() - f.as_secs_f64()) * 1000.0 / n))
            .unwrap_or_default();
        let (lo, hi) = (times.iter().min().unwrap(), times.iter().max().unwrap());
        out.push_str(&format!(
            "| {name} | {:.2} s | {:.2}–{:.2} s | {:.3} ms | {over} |\n",
            m.as_secs_f64(),
            lo.as_secs_f64(),
            hi.as_secs_f64(),
            m.as_secs_f64() * 1000.0 / n
        ));
    }
    out.push_str("\n## The Wasm step's share\n\n");
    out.push_str(
        "Each step run in-process against a database that does nothing, so only the Wasm side is \
         measured: a fresh store, instantiation from the pre-instantiated component, the `up` call and the \
         return. Cold: a new host loading the component, from the compiled-artifact cache or compiling it \
         with Cranelift.\n\n",
    );
    out.push_str(
        "| step | warm, per step (mean of 5,000) | cold, cache hot (best of 10) | cold, cache empty |\n|---|---|---|---|\n",
    );
    for (name, n) in steps {
        out.push_str(&format!(
            "| {name} | {:.1} µs | {:.2} ms | {:.1} ms |\n",
            n.warm.as_secs_f64() * 1e6,
            n.cold_cached.as_secs_f64() * 1e3,
            n.cold_uncached.as_secs_f64() * 1e3
        ));
    }
    out.push_str("\nTargets (issue 3): warm under 0.1 ms, cold with the cache hot under 5 ms.\n");
    out.push_str("\n## A host call against the statement itself\n\n");
    out.push_str(&format!(
        "A plugin step running `SELECT 1` {} times through `execute` inside a real migration (`waymark up`, \
         release build, permission check of every statement included; the time of the same migration \
         running it no times subtracted), against the same statement sent as often through sqlx on one \
         connection in one transaction. {} runs each.\n\n",
        calls.calls, o.runs
    ));
    let per = |t: &[Duration]| median(t).as_secs_f64() * 1e6 / f64::from(calls.calls);
    let (step, direct) = (per(&calls.through_step), per(&calls.through_sqlx));
    out.push_str("| path | per statement (median) |\n|---|---|\n");
    out.push_str(&format!("| plugin `execute` through the host | {step:.1} µs |\n"));
    out.push_str(&format!("| sqlx `execute` directly | {direct:.1} µs |\n"));
    out.push_str(&format!(
        "| the host's share | {:.1} µs ({:.0}%) |\n",
        step - direct,
        (step - direct) / direct * 100.0
    ));
    out
}
