//! `waymark rehearse` (docs/design/0007-rehearse.md): the pending
//! migrations applied to a scratch database exactly as `up` would, while
//! a workload runs through a baseline, each migration and after; the
//! phases' latency, errors and lock waits, and a verdict against the
//! thresholds with its own exit code.
//!
//! The load runs on the runtime's worker threads; the migrations on this
//! task, as `up` runs them. The executor's events enter the phases on the
//! load's clock, so a phase's edges are the migration's own.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use waymark_core::{Error, Event, MigrationSet, UpOptions, redact};
use waymark_load::{Blocker, Clock, Load, LoadOptions, PhaseKind, Recording, Script, Waits};

use crate::cli::RehearseArgs;
use crate::config::Settings;
use crate::json::{
    CheckJson, ErrorBody, ErrorJson, LatencyJson, PhaseJson, Rehearsed, RehearsedMigration, RehearsedStatement,
    WaitJson, WindowJson, ms,
};
use crate::output::Output;

/// Reads and checks every script before anything connects: a workload
/// that cannot run is refused naming its file and line.
fn script(spec: &str) -> Result<Script, Error> {
    let (file, weight) = waymark_load::split_spec(spec).map_err(Error::Usage)?;
    let text = std::fs::read_to_string(file).map_err(|e| Error::Usage(format!("workload {file}: {e}")))?;
    Script::parse(file, &text, weight).map_err(|e| Error::Usage(format!("workload {e}")))
}

/// The parts of a database URL that say which database it is: the
/// scheme's family, the host (any loopback name is one), the port (the
/// default written out) and the database.
fn identity(url: &str) -> Option<(String, String, u16, String)> {
    let (scheme, rest) = url.split_once("://")?;
    let (family, default_port) = match scheme {
        "postgres" | "postgresql" => ("postgres", 5432),
        "mysql" | "mariadb" => ("mysql", 3306),
        _ => return None,
    };
    let rest = rest.split(['?', '#']).next().unwrap_or(rest);
    let rest = rest.rsplit_once('@').map_or(rest, |(_, r)| r);
    let (authority, database) = rest.split_once('/').unwrap_or((rest, ""));
    let (host, port) = match authority.strip_prefix('[') {
        // An IPv6 address, its colons inside the brackets.
        Some(bracketed) => {
            let (host, after) = bracketed.split_once(']')?;
            match after.strip_prefix(':') {
                Some(port) => (host, port.parse().ok()?),
                None => (host, default_port),
            }
        }
        None => match authority.rsplit_once(':') {
            Some((host, port)) => (host, port.parse().ok()?),
            None => (authority, default_port),
        },
    };
    let host = match host {
        "" | "localhost" | "127.0.0.1" | "::1" => "localhost".to_owned(),
        h => h.to_ascii_lowercase(),
    };
    Some((family.to_owned(), host, port, database.to_owned()))
}

pub(crate) async fn rehearse(
    args: &RehearseArgs,
    settings: &Settings,
    set: &MigrationSet,
    out: &Output,
) -> anyhow::Result<u8> {
    let scripts = args
        .workloads
        .iter()
        .map(|w| script(w))
        .collect::<Result<Vec<_>, _>>()?;
    let reporter = match &args.reporter {
        Some(path) => Some((script(&path.display().to_string())?, args.every)),
        None => None,
    };
    let to = args.to.as_deref().map(|v| crate::version(v, "--to")).transpose()?;
    // A report that cannot be written is found now, not after the whole
    // rehearsal has run, and nothing is left there by looking.
    if let Some(path) = &args.report {
        let existed = path.exists();
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| Error::Usage(format!("--report {}: {e}", path.display())))?;
        if !existed {
            let _ = std::fs::remove_file(path);
        }
    }
    let scratch = redact(&args.scratch);
    if identity(&args.scratch).is_none() {
        return Err(Error::Usage(format!(
            "--scratch {scratch}: a rehearsal runs on PostgreSQL or MySQL/MariaDB (postgres:// or mysql://)"
        ))
        .into());
    }
    if !args.scratch_is_the_database && identity(&args.scratch) == identity(&settings.database_url) {
        return Err(Error::Usage(format!(
            "--scratch {scratch} is the configured database: a rehearsal changes its scratch database, so name a copy \
             (or say --scratch-is-the-database if changing this one is what you want)"
        ))
        .into());
    }
    if let Some(template) = &args.template {
        waymark_load::create_from_template(&args.scratch, template).await?;
        out.note(&format!("rehearsal: {scratch} created as a copy of \"{template}\""));
    } else if !args.scratch_may_hold_data {
        // A restore needs an empty database too: said here in the
        // rehearsal's words, before the restore says it in its own.
        let (count, some) = waymark_load::tables(&args.scratch).await?;
        if count > 0 {
            let some = format!(
                "{}{}",
                some.join(", "),
                if count > some.len() as u64 { ", ..." } else { "" }
            );
            return Err(Error::Usage(match args.from_backup {
                Some(_) => format!(
                    "--scratch {scratch} holds {count} table(s) ({some}): --from-backup restores only into an \
                     empty database, and a rehearsal never replaces one"
                ),
                None => format!(
                    "--scratch {scratch} holds {count} table(s) ({some}): a rehearsal may change them; say \
                     --scratch-may-hold-data if it is a copy made for this, or fill a new database with \
                     --template or --from-backup"
                ),
            })
            .into());
        }
    }
    if let Some(dir) = &args.from_backup {
        let mut progress = out.backup_progress();
        let restored = waymark_backup::restore_to(
            dir,
            &crate::connect_options(settings, &args.scratch),
            waymark_backup::Verify::Rows,
            &mut *progress,
        )
        .await
        .with_context(|| {
            format!(
                "--from-backup {} (the scratch database {scratch} is left as the restore left it)",
                dir.display()
            )
        })?;
        drop(progress);
        out.note(&format!(
            "rehearsal: {scratch} restored from backup {} ({} table(s), {} row(s), each read back and checked)",
            restored.id, restored.tables, restored.rows
        ));
    }
    let mut engine = crate::connect(
        &Settings {
            database_url: args.scratch.clone(),
            ..settings.clone()
        },
        true,
    )
    .await?;
    let seen = Arc::new(Mutex::new(Vec::new()));
    let tell = seen.clone();
    engine.on_statement(Arc::new(move |s: &waymark_core::StatementRun<'_>| {
        tell.lock().unwrap_or_else(|e| e.into_inner()).push(Statement {
            migration: s.migration.to_owned(),
            sql: one_line(s.sql, 300),
            started: s.started,
            duration: s.duration,
            error: s.error.clone(),
            in_transaction: s.in_transaction,
            locks: s
                .locks
                .iter()
                .map(|l| format!("{} on {} ({})", l.mode, l.relation, l.kind))
                .collect(),
        });
    }));
    let result = run(args, &engine, set, out, scripts, reporter, to, &seen).await;
    engine.close().await;
    result
}

/// A statement the executor ran, as it told of it.
struct Statement {
    migration: String,
    sql: String,
    started: Instant,
    duration: Duration,
    error: Option<String>,
    in_transaction: bool,
    locks: Vec<String>,
}

#[allow(clippy::too_many_arguments)]
async fn run(
    args: &RehearseArgs,
    engine: &waymark_core::Engine,
    set: &MigrationSet,
    out: &Output,
    scripts: Vec<Script>,
    reporter: Option<(Script, Duration)>,
    to: Option<waymark_core::Version>,
    seen: &Mutex<Vec<Statement>>,
) -> anyhow::Result<u8> {
    let scratch = redact(&args.scratch);
    let up = UpOptions {
        to,
        ..UpOptions::default()
    };
    // What the plan refuses (a failed or modified migration, one out of
    // order, lint's refusal of a lock on a table big enough for it to
    // hurt) is refused here, before any load. `up` weighs the findings
    // again under its lock, as it always does.
    let plan = engine.plan_weighed(set, &up).await?;
    if plan.migrations.is_empty() {
        return Err(Error::Usage(format!(
            "nothing to rehearse: {scratch} has every migration applied{}",
            if up.to.is_some() { " up to --to" } else { "" }
        ))
        .into());
    }
    let options = LoadOptions {
        url: args.scratch.clone(),
        clients: args.clients,
        rate: args.rate,
        scripts,
        reporter,
        scale: args.scale,
        seed: args.random_seed.unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64)
        }),
    };
    let clock = Arc::new(Clock::start());
    let load = Load::start(&options, clock.clone()).await?;
    out.note(&format!(
        "rehearsal on {scratch}: {} client(s){}, baseline {}",
        args.clients,
        args.rate
            .map(|r| format!(" at {r} transaction(s)/s"))
            .unwrap_or_default(),
        humantime::format_duration(args.baseline)
    ));
    let interrupted = tokio::select! {
        () = tokio::time::sleep(args.baseline) => false,
        _ = tokio::signal::ctrl_c() => true,
    };
    let mut result = Ok(Vec::new());
    if !interrupted {
        let phases = clock.clone();
        let mut on_event = |event: Event<'_>| {
            if let Event::Started { label, .. } = &event {
                phases.enter(*label, PhaseKind::Migration);
            }
            out.progress(&event);
        };
        let applying = engine.up(set, &up, &mut on_event);
        result = tokio::select! {
            r = applying => r,
            _ = tokio::signal::ctrl_c() => {
                let recording = load.stop().await;
                drop(recording);
                return Err(interrupted_error(&scratch));
            }
        };
        clock.enter("after", PhaseKind::Between);
        // A refusal applied nothing: there is no after to watch.
        let refused = matches!(&result, Err(e) if !matches!(e, Error::Migration { .. }));
        if !refused {
            tokio::select! {
                () = tokio::time::sleep(args.after) => {}
                _ = tokio::signal::ctrl_c() => {
                    load.stop().await;
                    return Err(interrupted_error(&scratch));
                }
            }
        }
    }
    let recording = load.stop().await;
    if interrupted {
        return Err(interrupted_error(&scratch));
    }
    let (applied, failure) = match result {
        Ok(applied) => (applied, None),
        Err(Error::Migration { failure, applied }) => {
            let error = Error::Migration {
                failure,
                applied: Vec::new(),
            };
            let body = ErrorBody {
                message: error.to_string(),
                hint: error.hint(),
            };
            (applied, Some(body))
        }
        // Refused before anything ran (lint on a big table, the lock):
        // nothing was rehearsed.
        Err(e) => return Err(e.into()),
    };
    let seen = std::mem::take(&mut *seen.lock().unwrap_or_else(|e| e.into_inner()));
    let report = report(args, &scratch, &recording, &clock, &applied, &seen, failure);
    let passed = report.failure.is_none() && report.verdict.iter().all(|c| c.passed);
    if let Some(path) = &args.report {
        std::fs::write(path, crate::report::html(&report, passed))
            .map_err(|e| Error::Usage(format!("--report {}: {e}", path.display())))?;
    }
    out.rehearsal(&report, passed);
    Ok(if report.failure.is_some() {
        crate::exit::FAILED
    } else if passed {
        0
    } else {
        crate::exit::VERDICT
    })
}

/// Transactions a phase needs for its own p99 check.
const MEANINGFUL: u64 = 100;

fn interrupted_error(scratch: &str) -> anyhow::Error {
    Error::Usage(format!(
        "rehearsal interrupted: the scratch database {scratch} is left as it is, for inspection"
    ))
    .into()
}

fn latency(stats: &waymark_load::Stats) -> LatencyJson {
    LatencyJson {
        p50_ms: stats.quantile(0.50).map(ms),
        p95_ms: stats.quantile(0.95).map(ms),
        p99_ms: stats.quantile(0.99).map(ms),
        max_ms: stats.max().map(ms),
    }
}

/// The figures, and each threshold checked against them.
fn report(
    args: &RehearseArgs,
    scratch: &str,
    recording: &Recording,
    clock: &Clock,
    applied: &[waymark_core::Applied],
    seen: &[Statement],
    failure: Option<ErrorBody>,
) -> Rehearsed {
    let phases: Vec<PhaseJson> = recording
        .phases
        .iter()
        .map(|p| PhaseJson {
            name: p.phase.name.clone(),
            kind: match p.phase.kind {
                PhaseKind::Baseline => "baseline",
                PhaseKind::Migration => "migration",
                PhaseKind::Between => "after",
            },
            start_ms: ms(p.phase.start),
            duration_ms: ms(p.duration()),
            transactions: p.stats.transactions,
            throughput: (p.throughput() * 10.0).round() / 10.0,
            latency: latency(&p.stats),
            errors: p
                .stats
                .errors
                .iter()
                .map(|(code, e)| ErrorJson {
                    code: code.clone(),
                    count: e.count,
                    message: e.message.clone(),
                })
                .collect(),
            lock_waits: p
                .waits
                .iter()
                .map(|w| {
                    let (blocker, statement, application) = match &w.blocker {
                        Blocker::Migration { statement } => ("migration", Some(statement.clone()), None),
                        Blocker::Workload => ("workload", None, None),
                        Blocker::Other { application, statement } => {
                            ("other", Some(statement.clone()), Some(application.clone()))
                        }
                    };
                    WaitJson {
                        waiter: w.waiter,
                        query: w.query.clone(),
                        start_ms: ms(w.start),
                        duration_ms: ms(w.duration),
                        blocker,
                        statement,
                        application,
                    }
                })
                .collect(),
        })
        .collect();
    let mut verdict = Vec::new();
    let baseline = recording
        .of_kind(PhaseKind::Baseline)
        .next()
        .and_then(|p| p.stats.quantile(0.99));
    if args.max_p99_increase.is_finite() {
        // A p99 of a few transactions is their max, and a run of many
        // short migrations would each roll that die: phases with fewer
        // than MEANINGFUL transactions are judged together, as one.
        let (full, short): (Vec<_>, Vec<_>) = recording
            .phases
            .iter()
            .filter(|p| p.phase.kind != PhaseKind::Baseline && p.stats.transactions > 0)
            .partition(|p| p.stats.transactions >= MEANINGFUL);
        let mut judged: Vec<(String, waymark_load::Stats)> =
            full.iter().map(|p| (p.phase.name.clone(), p.stats.clone())).collect();
        if let Some((first, rest)) = short.split_first() {
            let mut pooled = first.stats.clone();
            for p in rest {
                pooled.transactions += p.stats.transactions;
                // Both histograms have the same bounds: adding cannot fail.
                let _ = pooled.latency.add(&p.stats.latency);
            }
            let names: Vec<&str> = short.iter().map(|p| p.phase.name.as_str()).collect();
            judged.push((names.join(", "), pooled));
        }
        for (phase, stats) in judged {
            let Some(p99) = stats.quantile(0.99) else {
                continue;
            };
            let limit = format!("+{}% over the baseline", args.max_p99_increase);
            let (measured, passed) = match baseline {
                Some(base) => {
                    let increase = (p99.as_secs_f64() / base.as_secs_f64().max(1e-6) - 1.0) * 100.0;
                    (
                        format!("{:.1} ms, {increase:+.0}% against {:.1} ms", ms(p99), ms(base)),
                        increase <= args.max_p99_increase,
                    )
                }
                None => (
                    format!(
                        "{:.1} ms, and no transaction committed in the baseline to compare with",
                        ms(p99)
                    ),
                    false,
                ),
            };
            verdict.push(CheckJson {
                check: "p99",
                phase: Some(phase),
                measured,
                limit,
                passed,
            });
        }
    }
    let errors: u64 = recording.phases.iter().map(|p| p.stats.failed()).sum();
    verdict.push(CheckJson {
        check: "errors",
        phase: None,
        measured: format!("{errors} failed transaction(s)"),
        limit: format!("{}", args.max_errors),
        passed: errors <= args.max_errors,
    });
    let not_sampled = match &recording.waits {
        Waits::Sampled(_) => None,
        Waits::NotSampled(why) => Some(why.clone()),
    };
    if not_sampled.is_none() {
        let longest = recording
            .phases
            .iter()
            .flat_map(|p| &p.waits)
            .filter(|w| matches!(w.blocker, Blocker::Migration { .. }))
            .max_by_key(|w| w.duration);
        verdict.push(CheckJson {
            check: "lock_wait",
            phase: None,
            measured: match longest {
                Some(w) => match &w.blocker {
                    Blocker::Migration { statement } => format!(
                        "{:.0} ms behind the migration's \"{}\"",
                        ms(w.duration),
                        one_line(statement, 80)
                    ),
                    _ => unreachable!("filtered"),
                },
                None => "no workload session seen waiting on a migration".to_owned(),
            },
            limit: humantime::format_duration(args.max_lock_wait).to_string(),
            passed: longest.is_none_or(|w| w.duration <= args.max_lock_wait),
        });
    }
    let statements = statements(seen, clock, &phases);
    Rehearsed {
        scratch: scratch.to_owned(),
        clients: args.clients,
        rate: args.rate,
        phases,
        reporter: recording.reporter.as_ref().map(latency),
        lock_waits_not_sampled: not_sampled,
        migrations: applied
            .iter()
            .map(|a| RehearsedMigration {
                version: a.version.to_string(),
                name: a.name.clone(),
                duration_ms: ms(a.duration),
            })
            .collect(),
        statements,
        failure,
        verdict,
        timeline: recording
            .windows
            .iter()
            .map(|w| WindowJson {
                start_ms: ms(w.start),
                transactions: w.transactions,
                failed: w.failed,
                p50_ms: w.p50.map(ms),
                p99_ms: w.p99.map(ms),
                max_ms: w.max.map(ms),
            })
            .collect(),
    }
}

/// Each statement on the load's clock, with the workload's waits behind
/// it: a wait is the statement's when the sampler saw the executor
/// running (or last to run) that text, in that migration's phase.
fn statements(seen: &[Statement], clock: &Clock, phases: &[PhaseJson]) -> Vec<RehearsedStatement> {
    let same = |a: &str, b: &str| one_line(a, 200) == one_line(b, 200);
    seen.iter()
        .map(|s| {
            let waits: Vec<&WaitJson> = phases
                .iter()
                .filter(|p| p.name == s.migration)
                .flat_map(|p| &p.lock_waits)
                .filter(|w| w.blocker == "migration" && w.statement.as_deref().is_some_and(|t| same(t, &s.sql)))
                .collect();
            RehearsedStatement {
                migration: s.migration.clone(),
                sql: s.sql.clone(),
                start_ms: ms(s.started.saturating_duration_since(clock.started())),
                duration_ms: ms(s.duration),
                in_transaction: s.in_transaction,
                locks: s.locks.clone(),
                error: s.error.clone(),
                waits: waits.len() as u64,
                longest_wait_ms: waits.iter().map(|w| w.duration_ms).reduce(f64::max),
            }
        })
        .collect()
}

/// `text` on one line, cut to `max` characters.
pub(crate) fn one_line(text: &str, max: usize) -> String {
    let line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if line.chars().count() > max {
        format!("{}...", line.chars().take(max).collect::<String>())
    } else {
        line
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_database_is_known_under_its_other_names() {
        let a = identity("postgres://u:p@localhost/app");
        assert_eq!(a, identity("postgresql://other@127.0.0.1:5432/app?sslmode=disable"));
        assert_ne!(a, identity("postgres://localhost/app_rehearsal"));
        assert_ne!(a, identity("postgres://localhost:5433/app"));
        assert_ne!(a, identity("mysql://localhost/app"));
        assert_eq!(
            identity("mariadb://root@127.0.0.1/test"),
            identity("mysql://localhost:3306/test")
        );
        assert_eq!(identity("sqlite://waymark.db"), None);
        assert_eq!(identity("postgres://[::1]/app"), a);
        assert_eq!(identity("postgres://u@[::1]:5432/app"), a);
        assert_ne!(identity("postgres://[fe80::1]:5433/app"), a);
    }
}
