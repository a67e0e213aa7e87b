//! `waymark rehearse`: the phases as a table, the waits and errors under
//! it, then the verdict, each threshold on its line.

use super::Output;
use crate::json::{self, Rehearsed};
use crate::rehearse::one_line;

fn cell(ms: Option<f64>) -> String {
    match ms {
        None => "-".to_owned(),
        Some(ms) if ms >= 1000.0 => format!("{:.2} s", ms / 1000.0),
        Some(ms) => format!("{ms:.1} ms"),
    }
}

impl Output {
    pub(crate) fn rehearsal(&self, r: &Rehearsed, passed: bool) {
        if self.json {
            self.reply(passed, r);
            return;
        }
        let mut table = self.table(&[
            "phase",
            "time",
            "tx",
            "tx/s",
            "p50",
            "p95",
            "p99",
            "max",
            "errors",
            "lock waits",
        ]);
        for p in &r.phases {
            let failed: u64 = p.errors.iter().map(|e| e.count).sum();
            table.add_row(vec![
                p.name.clone(),
                cell(Some(p.duration_ms)),
                p.transactions.to_string(),
                format!("{:.1}", p.throughput),
                cell(p.latency.p50_ms),
                cell(p.latency.p95_ms),
                cell(p.latency.p99_ms),
                cell(p.latency.max_ms),
                failed.to_string(),
                match p.lock_waits.iter().map(|w| w.duration_ms).reduce(f64::max) {
                    None => "0".to_owned(),
                    Some(longest) => format!("{}, longest {}", p.lock_waits.len(), cell(Some(longest))),
                },
            ]);
        }
        outln!("{table}");
        if let Some(reporter) = &r.reporter {
            outln!("reporter: p50 {}, max {}", cell(reporter.p50_ms), cell(reporter.max_ms));
        }
        for p in &r.phases {
            for e in &p.errors {
                outln!("{}: {} × {}: {}", p.name, e.code, e.count, one_line(&e.message, 120));
            }
            // The waits behind a migration, longest first, each statement once.
            let mut behind: Vec<&json::WaitJson> = p.lock_waits.iter().filter(|w| w.blocker == "migration").collect();
            behind.sort_by(|a, b| b.duration_ms.total_cmp(&a.duration_ms));
            let mut said = Vec::new();
            for w in behind {
                let statement = w.statement.as_deref().unwrap_or("");
                if said.contains(&statement) {
                    continue;
                }
                said.push(statement);
                let count = p
                    .lock_waits
                    .iter()
                    .filter(|x| x.statement.as_deref() == Some(statement))
                    .count();
                outln!(
                    "{}: {count} wait(s) behind \"{}\", longest {}",
                    p.name,
                    one_line(statement, 100),
                    cell(Some(w.duration_ms))
                );
            }
        }
        statements(r);
        if let Some(why) = &r.lock_waits_not_sampled {
            outln!("lock waits: not measured: {why}");
        }
        if let Some(failure) = &r.failure {
            outln!("migration failed: {}", failure.message);
        }
        outln!("verdict: {}", if passed { "passed" } else { "FAILED" });
        for c in &r.verdict {
            outln!(
                "  {} {}{}: {} (limit {})",
                if c.passed { "ok  " } else { "FAIL" },
                c.check,
                c.phase.as_deref().map(|p| format!(" in {p}")).unwrap_or_default(),
                c.measured,
                c.limit
            );
        }
    }
}

/// Lines shown of the statements that mattered; all are in `--json` and
/// `--report`.
const STATEMENTS_SHOWN: usize = 10;

/// Modes that stop the application's writes (or more) while held.
const BLOCKING: [&str; 4] = [
    "SHARE on",
    "SHARE ROW EXCLUSIVE on",
    "EXCLUSIVE on",
    "ACCESS EXCLUSIVE on",
];

/// The statements that mattered: slow, failed, or holding a lock that
/// stops writes until their migration commits (the waits behind them are
/// on the lines above).
fn statements(r: &Rehearsed) {
    let notable: Vec<&json::RehearsedStatement> = r
        .statements
        .iter()
        .filter(|s| {
            s.duration_ms >= 100.0
                || s.error.is_some()
                || s.locks.iter().any(|l| BLOCKING.iter().any(|b| l.starts_with(b)))
        })
        .collect();
    for s in notable.iter().take(STATEMENTS_SHOWN) {
        let mut line = format!(
            "{}: \"{}\" {}",
            s.migration,
            one_line(&s.sql, 80),
            cell(Some(s.duration_ms))
        );
        let blocking: Vec<&str> = s
            .locks
            .iter()
            .filter(|l| BLOCKING.iter().any(|b| l.starts_with(b)))
            .map(String::as_str)
            .collect();
        if !blocking.is_empty() {
            line.push_str(&format!(", took {}", blocking.join(", ")));
        }
        if s.error.is_some() {
            line.push_str(", failed");
        }
        outln!("{line}");
    }
    if notable.len() > STATEMENTS_SHOWN {
        outln!(
            "... and {} more statement(s) that were slow or locked: --json or --report lists them all",
            notable.len() - STATEMENTS_SHOWN
        );
    }
}
