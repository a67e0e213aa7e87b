//! `cargo xtask bench-load`: the rehearsal's load generator
//! (`waymark-load`) against pgbench itself, on the same script, database,
//! clients and rate, in the same run: as fast as each goes (throughput),
//! and at a fixed rate (latency from the scheduled start, which both
//! measure the same way). The targets: at least 90 % of pgbench's
//! throughput on 2 cores, latencies within 10 %.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};

use crate::backup_bench::{PgBench, write_section};

const BEGIN: &str = "<!-- load-bench: written by `cargo xtask bench-load --write` -->";
const END: &str = "<!-- /load-bench -->";

/// pgbench's built-in TPC-B-like transaction, as a script file: both
/// tools read this same text.
const TPCB: &str = "\\set aid random(1, 100000 * :scale)\n\
\\set bid random(1, 1 * :scale)\n\
\\set tid random(1, 10 * :scale)\n\
\\set delta random(-5000, 5000)\n\
BEGIN;\n\
UPDATE pgbench_accounts SET abalance = abalance + :delta WHERE aid = :aid;\n\
SELECT abalance FROM pgbench_accounts WHERE aid = :aid;\n\
UPDATE pgbench_tellers SET tbalance = tbalance + :delta WHERE tid = :tid;\n\
UPDATE pgbench_branches SET bbalance = bbalance + :delta WHERE bid = :bid;\n\
INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES (:tid, :bid, :aid, :delta, CURRENT_TIMESTAMP);\n\
END;\n";

/// One run of one tool.
struct Measured {
    transactions: u64,
    failed: u64,
    tps: f64,
    p50_ms: f64,
    p99_ms: f64,
}

struct Settings {
    clients: u32,
    seconds: u64,
    rate: f64,
}

pub(crate) fn run(args: &[String]) -> anyhow::Result<()> {
    // Its own flags first, then PgBench's.
    let mut settings = Settings {
        clients: 4,
        seconds: 20,
        rate: 200.0,
    };
    let mut rest = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--clients" => settings.clients = crate::value(&mut it, "--clients N")?,
            "--seconds" => settings.seconds = crate::value(&mut it, "--seconds N")?,
            "--rate" => settings.rate = crate::value(&mut it, "--rate R")?,
            _ => rest.push(a.clone()),
        }
    }
    let mut bench = PgBench::parse("bench-load", &rest, 3)?;
    if !rest.iter().any(|a| a == "--scale") {
        bench.scale = 10;
    }
    let db = "wm_load_bench";
    eprintln!("pgbench -i -s {}", bench.scale);
    bench.init(db)?;
    let url = bench.url(db);
    let work = tempfile::tempdir()?;
    let script = work.path().join("tpcb.sql");
    std::fs::write(&script, TPCB)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    // (way, tool) → runs; the tools alternate so that the machine's drift
    // falls on both.
    let mut results: Vec<(&str, &str, Vec<Measured>)> = vec![
        ("as fast as they go", "pgbench", Vec::new()),
        ("as fast as they go", "waymark-load", Vec::new()),
        ("at a fixed rate", "pgbench", Vec::new()),
        ("at a fixed rate", "waymark-load", Vec::new()),
    ];
    for run in 0..bench.runs {
        for (i, rate) in [(0, None), (2, Some(settings.rate))] {
            // Each run starts after a checkpoint: the WAL of the run before
            // would otherwise end in one mid-run, a stall of a few hundred
            // milliseconds that lands on whichever tool is running and
            // decides its p99.
            bench.psql("CHECKPOINT")?;
            eprintln!("run {} of {}, {}: pgbench", run + 1, bench.runs, results[i].0);
            results[i].2.push(pgbench(&url, &script, &settings, rate, work.path())?);
            bench.psql("CHECKPOINT")?;
            eprintln!("run {} of {}, {}: waymark-load", run + 1, bench.runs, results[i].0);
            results[i + 1]
                .2
                .push(rt.block_on(generator(&url, &settings, rate, bench.scale))?);
        }
    }
    bench.psql(&format!("DROP DATABASE IF EXISTS {db}"))?;
    let out = render(&bench, &settings, &results);
    println!("{out}");
    if bench.write {
        write_section(BEGIN, END, &out)?;
    }
    Ok(())
}

/// pgbench itself: its per-transaction log gives each latency (from the
/// scheduled start under `-R`, as its documentation says).
fn pgbench(url: &str, script: &Path, s: &Settings, rate: Option<f64>, dir: &Path) -> anyhow::Result<Measured> {
    let prefix = dir.join("pgbench_log");
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("pgbench_log"))
        {
            std::fs::remove_file(path)?;
        }
    }
    let mut cmd = Command::new("pgbench");
    cmd.args([
        "-n",
        "-c",
        &s.clients.to_string(),
        "-j",
        "2",
        "-T",
        &s.seconds.to_string(),
        "-l",
    ])
    .arg(format!("--log-prefix={}", prefix.display()))
    .arg("-f")
    .arg(script);
    if let Some(rate) = rate {
        cmd.args(["-R", &rate.to_string()]);
    }
    cmd.arg(url);
    let out = cmd.output()?;
    if !out.status.success() {
        bail!("pgbench failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let mut latencies = Vec::new();
    let mut failed = 0;
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if !path
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("pgbench_log"))
        {
            continue;
        }
        for line in std::fs::read_to_string(&path)?.lines() {
            // client_id transaction_no time script_no time_epoch time_us [schedule_lag]
            match line.split_whitespace().nth(2) {
                Some("failed") | Some("skipped") => failed += 1,
                Some(us) => latencies.push(
                    us.parse::<u64>()
                        .with_context(|| format!("{}: {line}", path.display()))?,
                ),
                None => {}
            }
        }
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let tps = stdout
        .lines()
        .find_map(|l| l.strip_prefix("tps = "))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|t| t.parse().ok())
        .with_context(|| format!("no tps in pgbench's output:\n{stdout}"))?;
    latencies.sort_unstable();
    Ok(Measured {
        transactions: latencies.len() as u64,
        failed,
        tps,
        p50_ms: quantile(&latencies, 0.50),
        p99_ms: quantile(&latencies, 0.99),
    })
}

fn quantile(sorted: &[u64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i] as f64 / 1000.0
}

/// waymark's generator, as `rehearse` runs it, for the same time.
async fn generator(url: &str, s: &Settings, rate: Option<f64>, scale: u32) -> anyhow::Result<Measured> {
    let options = waymark_load::LoadOptions {
        url: url.to_owned(),
        clients: s.clients,
        rate,
        scripts: vec![waymark_load::Script::parse("tpcb.sql", TPCB, 1)?],
        reporter: None,
        scale: i64::from(scale),
        seed: 1,
    };
    let clock = Arc::new(waymark_load::Clock::start());
    let load = waymark_load::Load::start(&options, clock).await?;
    tokio::time::sleep(Duration::from_secs(s.seconds)).await;
    let recording = load.stop().await;
    let stats = &recording.phases[0].stats;
    let ms = |d: Option<Duration>| d.map_or(0.0, |d| d.as_secs_f64() * 1000.0);
    Ok(Measured {
        transactions: stats.transactions,
        failed: stats.failed(),
        tps: stats.transactions as f64 / recording.duration.as_secs_f64(),
        p50_ms: ms(stats.quantile(0.50)),
        p99_ms: ms(stats.quantile(0.99)),
    })
}

fn median(values: impl Iterator<Item = f64>) -> f64 {
    let mut v: Vec<f64> = values.collect();
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn render(bench: &PgBench, s: &Settings, results: &[(&str, &str, Vec<Measured>)]) -> String {
    let mut out = format!(
        "{BEGIN}\n### The rehearsal's load generator against pgbench\n\n\
         `cargo xtask bench-load --runs {}` on {}, {}: pgbench's TPC-B-like transaction as a script file, \
         read by both tools; pgbench scale {}, {} clients (pgbench `-j 2`, waymark-load on a 2-thread runtime), \
         {} s per run, each after a `CHECKPOINT`, the tools alternating; medians of {} runs. pgbench's figures come from its \
         per-transaction log (`-l`), its tps from its own summary; at a fixed rate (`-R {}`) both count latency \
         from the scheduled start. Release build.\n\n\
         | way | tool | transactions | failed | tps | p50 ms | p99 ms |\n|---|---|---:|---:|---:|---:|---:|\n",
        bench.runs,
        crate::machine(),
        chrono_date(),
        bench.scale,
        s.clients,
        s.seconds,
        bench.runs,
        s.rate,
    );
    for (way, tool, runs) in results {
        out.push_str(&format!(
            "| {way} | {tool} | {:.0} | {:.0} | {:.1} | {:.2} | {:.2} |\n",
            median(runs.iter().map(|m| m.transactions as f64)),
            median(runs.iter().map(|m| m.failed as f64)),
            median(runs.iter().map(|m| m.tps)),
            median(runs.iter().map(|m| m.p50_ms)),
            median(runs.iter().map(|m| m.p99_ms)),
        ));
    }
    let ratio =
        |i: usize, f: fn(&Measured) -> f64| median(results[i + 1].2.iter().map(f)) / median(results[i].2.iter().map(f));
    out.push_str(&format!(
        "\nwaymark-load against pgbench: throughput {:.2}× as fast as they go (target ≥ 0.90×); \
         at {} tps, p50 {:.2}× and p99 {:.2}× (target within 0.90–1.10×).\n{END}\n",
        ratio(0, |m| m.tps),
        s.rate,
        ratio(2, |m| m.p50_ms),
        ratio(2, |m| m.p99_ms),
    ));
    out
}

/// Today, as `date` gives it.
pub(crate) fn chrono_date() -> String {
    Command::new("date")
        .arg("+%Y-%m-%d")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}
