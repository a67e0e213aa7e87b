//! `cargo xtask bench-verify`: `waymark cutover verify` of two identical
//! pgbench databases against reading the same tables out of both with
//! plain `COPY ... TO` (the floor: every row read once per side, both sides
//! at once), in the same run, written into docs/BENCHMARKS.md between
//! markers.

use std::process::Command;
use std::time::Duration;

use anyhow::bail;

use crate::backup_bench::{PgBench, release_waymark, sh, timed, write_section};

const BEGIN: &str = "<!-- verify-bench: written by `cargo xtask bench-verify --write` -->";
const END: &str = "<!-- /verify-bench -->";
const TABLES: [&str; 4] = [
    "pgbench_accounts",
    "pgbench_branches",
    "pgbench_history",
    "pgbench_tellers",
];

pub(crate) fn run(args: &[String]) -> anyhow::Result<()> {
    let bench = PgBench::parse("bench-verify", args, 3)?;
    let (scale, runs, write) = (bench.scale, bench.runs, bench.write);
    let waymark = release_waymark()?;
    let url = |db: &str| bench.url(db);
    let psql = |sql: &str| bench.psql(sql);

    eprintln!("pgbench -i -s {scale}, and a copy of it");
    psql("DROP DATABASE IF EXISTS wm_verify_dst")?;
    bench.init("wm_verify_src")?;
    psql("CREATE DATABASE wm_verify_dst TEMPLATE wm_verify_src")?;
    let copy_all = |db: &str| {
        TABLES
            .iter()
            .map(|t| format!("psql -q -d {} -c 'COPY {t} TO STDOUT'", url(db)))
            .collect::<Vec<_>>()
            .join("; ")
    };
    let measured = |script: String| -> anyhow::Result<String> {
        let out = Command::new("sh").arg("-c").arg(script).output()?;
        if !out.status.success() {
            bail!("{}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(String::from_utf8(out.stdout)?.trim().to_owned())
    };
    let bytes: f64 = measured(format!("({}) | wc -c", copy_all("wm_verify_src")))?.parse()?;
    let rows: f64 = measured(format!(
        "psql -At -d {} -c \"SELECT {}\"",
        url("wm_verify_src"),
        TABLES
            .iter()
            .map(|t| format!("(SELECT count(*) FROM {t})"))
            .collect::<Vec<_>>()
            .join(" + ")
    ))?
    .parse()?;

    let mut ours = Vec::new();
    let mut floor = Vec::new();
    for run in 0..runs {
        eprintln!("run {} of {runs}", run + 1);
        ours.push(timed(|| {
            sh(Command::new(&waymark).args([
                "-q",
                "cutover",
                "verify",
                "--source",
                &url("wm_verify_src"),
                "--target",
                &url("wm_verify_dst"),
            ]))
        })?);
        floor.push(timed(|| {
            sh(Command::new("sh").arg("-c").arg(format!(
                "({}) > /dev/null & ({}) > /dev/null & wait",
                copy_all("wm_verify_src"),
                copy_all("wm_verify_dst")
            )))
        })?);
    }
    psql("DROP DATABASE wm_verify_src WITH (FORCE)")?;
    psql("DROP DATABASE wm_verify_dst WITH (FORCE)")?;

    let date = String::from_utf8(Command::new("date").args(["-u", "+%Y-%m-%d"]).output()?.stdout)?;
    let median = |times: &[Duration]| {
        let mut t = times.to_vec();
        t.sort();
        t[t.len() / 2].as_secs_f64()
    };
    let row = |name: &str, times: &[Duration]| {
        let m = median(times);
        format!(
            "| {name} | {m:.1} s | {:.2} M rows/s | {:.0} MB/s | {} |\n",
            rows / m / 1e6,
            bytes / m / 1e6,
            times
                .iter()
                .map(|d| format!("{:.1} s", d.as_secs_f64()))
                .collect::<Vec<_>>()
                .join(", ")
        )
    };
    let out = format!(
        "{BEGIN}\n## Comparing two servers: `cutover verify` against `COPY ... TO`\n\n\
         Measured {} on {}, two identical pgbench databases at scale {scale} ({:.0} M rows, {:.0} MB as COPY \
         text per side) on one server, {runs} run(s), taking turns; release build. Rows/s and MB/s count one \
         side. Rerun with `cargo xtask bench-verify --write`.\n\n\
         | operation | median | rows/s | MB/s | runs |\n|---|---|---|---|---|\n{}{}{END}\n",
        date.trim(),
        crate::machine(),
        rows / 1e6,
        bytes / 1e6,
        row(
            "waymark cutover verify (ranges of 100,000 keys, both sides at once, digests compared)",
            &ours
        ),
        row(
            "COPY ... TO /dev/null of every table, both databases at once (the floor)",
            &floor
        ),
    );
    println!("{out}");
    if write {
        write_section(BEGIN, END, &out)?;
    }
    Ok(())
}
