//! `cargo xtask bench-cutover`: a whole cutover of a pgbench database
//! from a PostgreSQL 15 cluster to a newer one (18 from
//! `.ci/fetch-postgres`, else 15), with pgbench writing through PgBouncer
//! the whole time: time from `prepare` to in sync, an online `verify`
//! against `COPY ... TO` of the same tables, and the write pause of each
//! `switch` and `rollback`, as waymark measures it and as pgbench's
//! slowest transaction saw it. Written into docs/BENCHMARKS.md between
//! markers.

use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use waymark_testkit::{Bouncer, Cluster};

use crate::backup_bench::{PgBench, release_waymark, sh, timed, write_section};

const BEGIN: &str = "<!-- cutover-bench: written by `cargo xtask bench-cutover --write` -->";
const END: &str = "<!-- /cutover-bench -->";

/// Settings the benchmark's clusters run with: as a server of this size
/// would, durable (fsync on), with room for pgbench's writes.
const SETTINGS: &str = "-c shared_buffers=512MB -c max_wal_size=4GB";

pub(crate) fn run(args: &[String]) -> anyhow::Result<()> {
    let bench = PgBench::parse("bench-cutover", args, 3)?;
    let (scale, runs, write) = (bench.scale, bench.runs, bench.write);
    let waymark = release_waymark()?;
    let work = std::env::temp_dir().join(format!("waymark-cutover-bench-{}", std::process::id()));
    std::fs::create_dir_all(&work)?;
    let installed = waymark_testkit::installed_bin()?;
    let newer = waymark_testkit::newer_bin(&crate::root()).unwrap_or_else(|| {
        eprintln!("no newer PostgreSQL (run .ci/fetch-postgres): 15 to 15");
        installed.clone()
    });
    let old = Cluster::start(&installed, SETTINGS)?;
    let new = Cluster::start(&newer, SETTINGS)?;
    let (old_version, new_version) = (old.version.clone(), new.version.clone());
    eprintln!("{old_version} → {new_version}");
    eprintln!("pgbench -i -s {scale}");
    sh(Command::new("pgbench").args(["-i", "-q", "-s", &scale.to_string(), &old.url("app")]))?;
    // pgbench_history has no key, and logical replication cannot apply
    // updates or deletes to a table without one (prepare says so).
    old.try_execute("app", "ALTER TABLE pgbench_history ADD COLUMN id bigserial PRIMARY KEY")?;
    let bouncer = Bouncer::start(old.port)?;
    let result = measure(&waymark, &work, &old, &new, &bouncer, runs);
    drop((bouncer, old, new));
    let _ = std::fs::remove_dir_all(&work);
    let m = result?;

    let date = String::from_utf8(Command::new("date").args(["-u", "+%Y-%m-%d"]).output()?.stdout)?;
    let list = |v: &[u64]| v.iter().map(|x| format!("{x}")).collect::<Vec<_>>().join(", ");
    let max = |v: &[u64]| v.iter().copied().max().unwrap_or(0);
    let out = format!(
        "{BEGIN}\n## Cutover: prepare, verify online, switch and back, under pgbench\n\n\
         Measured {} on {}: pgbench scale {scale} on a throwaway {old_version} cluster, cut over to a throwaway \
         {new_version} cluster on the same machine, with `pgbench -c 2 -R 200` (TPC-B-like, simple protocol) \
         writing through PgBouncer 1.18 (transaction pooling) the whole time; {runs} switch(es) and rollback(s) \
         each way without the final comparison, one with it; release build. Rerun with \
         `cargo xtask bench-cutover --write` (after `.ci/fetch-postgres`).\n\n\
         | what | waymark | for comparison |\n|---|---|---|\n\
         | `prepare` to in sync (backup of the source, schema, initial copy, catch-up) | {:.1} s | \
         `pg_dump \\| psql` of the same database: {:.1} s |\n\
         | `prepare --seed` to in sync (backup at a WAL position, restored in full by waymark, catch-up) | {:.1} s \
         | |\n\
         | `verify` online, every table, writer running | {:.1} s | `COPY ... TO` of every table, both servers at \
         once: {:.1} s |\n\
         | write pause of `switch`/`rollback`, `--no-final-check` (waymark's measure) | {} ms (max {} ms) | cloud \
         blue/green switchovers: \"typically under a minute\" |\n\
         | write pause with the final comparison of every table | {} ms | |\n\
         | slowest pgbench transaction during those switches (from when `-R` scheduled it) | {} ms | |\n\
         | slowest pgbench transaction over the whole run | {} ms | |\n\
         | pgbench transactions failed | {} of {} | |\n{END}\n",
        date.trim(),
        crate::machine(),
        m.prepare.as_secs_f64(),
        m.dump_restore.as_secs_f64(),
        m.seeded_prepare.as_secs_f64(),
        m.verify.as_secs_f64(),
        m.copy_floor.as_secs_f64(),
        list(&m.pauses),
        max(&m.pauses),
        list(&m.checked_pauses),
        m.slowest_in_switches_ms,
        m.slowest_ms,
        m.failed,
        m.transactions,
    );
    println!("{out}");
    if write {
        write_section(BEGIN, END, &out)?;
    }
    if m.failed > 0 {
        bail!("pgbench saw {} failed transactions", m.failed);
    }
    Ok(())
}

struct Measured {
    prepare: Duration,
    seeded_prepare: Duration,
    dump_restore: Duration,
    verify: Duration,
    copy_floor: Duration,
    pauses: Vec<u64>,
    checked_pauses: Vec<u64>,
    slowest_ms: u64,
    /// Over the switches without the final comparison only.
    slowest_in_switches_ms: u64,
    window: (std::time::SystemTime, std::time::SystemTime),
    failed: u64,
    transactions: u64,
}

fn measure(
    waymark: &Path,
    work: &Path,
    old: &Cluster,
    new: &Cluster,
    bouncer: &Bouncer,
    runs: usize,
) -> anyhow::Result<Measured> {
    let pgbench_dir = work.join("pgbench");
    std::fs::create_dir_all(&pgbench_dir)?;
    let mut writer: Child = Command::new("pgbench")
        .current_dir(&pgbench_dir)
        .args([
            "-n",
            "-c",
            "2",
            "-j",
            "1",
            "-R",
            "200",
            "-T",
            "3600",
            "-l",
            "-h",
            "127.0.0.1",
            "-p",
        ])
        .arg(bouncer.port.to_string())
        .args(["-U", "postgres", "app"])
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(work.join("pgbench.err"))?)
        .spawn()?;
    let outcome = (|| -> anyhow::Result<Measured> {
        std::thread::sleep(Duration::from_secs(2));
        let state = work.join("cutover.json");
        let state_arg = state.display().to_string();
        let wm = |args: &[&str]| -> anyhow::Result<String> {
            let out = Command::new(waymark).current_dir(work).args(args).output()?;
            if !out.status.success() {
                bail!("waymark {args:?}: {}", String::from_utf8_lossy(&out.stderr));
            }
            Ok(String::from_utf8(out.stdout)?)
        };
        eprintln!("prepare");
        let prepare = timed(|| {
            wm(&[
                "-q",
                "cutover",
                "prepare",
                "--source",
                &old.url("app"),
                "--target",
                &new.url("app"),
                "--pgbouncer",
                &bouncer.admin_url(),
                "--pgbouncer-ini",
                &bouncer.ini.display().to_string(),
                "--pgbouncer-database",
                "app",
                "--state",
                &state_arg,
            ])
            .map(drop)
        })?;
        eprintln!("verify online");
        let verify = timed(|| wm(&["-q", "cutover", "verify", "--state", &state_arg]).map(drop))?;
        let tables = [
            "pgbench_accounts",
            "pgbench_branches",
            "pgbench_history",
            "pgbench_tellers",
        ];
        let copy_all = |url: String| {
            tables
                .iter()
                .map(|t| format!("psql -q -d {url} -c 'COPY {t} TO STDOUT' > /dev/null"))
                .collect::<Vec<_>>()
                .join("; ")
        };
        let copy_floor = timed(|| {
            sh(Command::new("sh").arg("-c").arg(format!(
                "({}) & ({}) & wait",
                copy_all(old.url("app")),
                copy_all(new.url("app"))
            )))
        })?;
        // Before each move, replication back must be running (PostgreSQL
        // 15 starts a new subscription's worker up to 5 s late).
        let ready = || -> anyhow::Result<()> {
            let started = Instant::now();
            while !Command::new(waymark)
                .current_dir(work)
                .args(["-q", "cutover", "status", "--state", &state_arg])
                .stdout(std::process::Stdio::null())
                .status()?
                .success()
            {
                if started.elapsed() > Duration::from_secs(60) {
                    bail!("the guardrails did not pass within 60 s");
                }
                std::thread::sleep(Duration::from_millis(200));
            }
            Ok(())
        };
        let pause_of = |json: &str| -> anyhow::Result<u64> {
            let v: serde_json::Value = serde_json::from_str(json)?;
            v["switch"]["pause_ms"].as_u64().context("pause_ms")
        };
        let mut pauses = Vec::new();
        let window_start = std::time::SystemTime::now();
        for run in 0..runs {
            eprintln!("switch and rollback {} of {runs}", run + 1);
            for command in ["switch", "rollback"] {
                ready()?;
                pauses.push(pause_of(&wm(&[
                    "--json",
                    "cutover",
                    command,
                    "--no-final-check",
                    "--state",
                    &state_arg,
                ])?)?);
                eprintln!("{command}: write pause {:?} ms", pauses.last());
            }
        }
        let window = (window_start, std::time::SystemTime::now());
        eprintln!("switch and rollback with the final comparison");
        let mut checked_pauses = Vec::new();
        for command in ["switch", "rollback"] {
            ready()?;
            // The comparison of every table takes seconds at this scale:
            // a deadline to match.
            checked_pauses.push(pause_of(&wm(&[
                "--json",
                "cutover",
                command,
                "--deadline",
                "120s",
                "--state",
                &state_arg,
            ])?)?);
            eprintln!("pause with the final comparison: {:?} ms", checked_pauses.last());
        }
        wm(&["-q", "cutover", "complete", "--state", &state_arg])?;
        // Once more, filled from the backup instead of by the initial
        // copy, into a database of its own, pgbench still writing.
        eprintln!("prepare --seed");
        sh(Command::new("psql").args(["-q", "-d", &new.url("postgres"), "-c", "CREATE DATABASE seeded"]))?;
        let seeded_state = work.join("seeded.json").display().to_string();
        let seeded_prepare = timed(|| {
            wm(&[
                "-q",
                "cutover",
                "prepare",
                "--seed",
                "--source",
                &old.url("app"),
                "--target",
                &new.url("seeded"),
                "--state",
                &seeded_state,
            ])
            .map(drop)
        })?;
        wm(&["-q", "cutover", "complete", "--state", &seeded_state])?;
        eprintln!("pg_dump | psql, for comparison");
        sh(Command::new("psql").args(["-q", "-d", &new.url("postgres"), "-c", "CREATE DATABASE copy"]))?;
        let dump_restore = timed(|| {
            sh(Command::new("sh").arg("-c").arg(format!(
                "pg_dump {} | psql -q -d {} > /dev/null",
                old.url("app"),
                new.url("copy")
            )))
        })?;
        Ok(Measured {
            prepare,
            seeded_prepare,
            dump_restore,
            verify,
            copy_floor,
            pauses,
            checked_pauses,
            slowest_ms: 0,
            slowest_in_switches_ms: 0,
            window,
            failed: 0,
            transactions: 0,
        })
    })();
    let _ = Command::new("kill").args(["-INT", &writer.id().to_string()]).status();
    let started = Instant::now();
    while writer.try_wait()?.is_none() && started.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = writer.kill();
    let mut m = outcome?;
    // pgbench -l: one line per transaction, its latency in microseconds in
    // the third field.
    for entry in std::fs::read_dir(&pgbench_dir)? {
        let text = std::fs::read_to_string(entry?.path())?;
        for line in text.lines() {
            let fields: Vec<&str> = line.split_whitespace().collect();
            // The last lines may be cut short by the interrupt.
            if fields.len() < 6 {
                continue;
            }
            m.transactions += 1;
            let Ok(latency) = fields[2].parse::<u64>() else {
                m.failed += 1;
                continue;
            };
            m.slowest_ms = m.slowest_ms.max(latency / 1000);
            // Fields 5 and 6: when it ended, in seconds and microseconds.
            let ended = fields[4]
                .parse::<u64>()
                .ok()
                .zip(fields[5].parse::<u64>().ok())
                .map(|(s, us)| std::time::UNIX_EPOCH + Duration::from_secs(s) + Duration::from_micros(us));
            if ended.is_some_and(|t| t >= m.window.0 && t <= m.window.1) {
                m.slowest_in_switches_ms = m.slowest_in_switches_ms.max(latency / 1000);
            }
        }
    }
    Ok(m)
}
