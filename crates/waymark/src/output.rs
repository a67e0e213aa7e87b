//! Everything the command prints. Data (tables, JSON) goes to stdout;
//! progress, logs and errors go to stderr.

use std::io::IsTerminal;
use std::path::PathBuf;

use crate::json;
use comfy_table::{Table, presets};
use serde::Serialize;
use waymark_backup::{
    Basis as BackupBasis, Estimate as BackupEstimate, Listed, Manifest, Progress as BackupProgress,
    Report as VerifyBackupReport, RestoreReport,
};
use waymark_core::{
    Applied, Entry, Error, Event, Finding, Inspection, Migration, MigrationSet, Plan, PluginTest, Preimage, Progress,
    RULES, RepairAction, SavedFinding, SavedPlan, Severity, Strategy, VerifyReport, Way, redact,
};
use waymark_cutover::{CompareReport, Prepared, Side, Status as CutoverStatus, SwitchReport, SyncProgress};

/// Progress as log lines, for stderr that is not a terminal: one every
/// 5 s at most, and the last, each with the rate and the time left at the
/// rate of the step's work so far.
#[derive(Default)]
struct ProgressLines {
    /// When the last line was written.
    last: Option<std::time::Instant>,
    /// The step reporting, when it began and where it began.
    run: Option<(String, std::time::Instant, u64)>,
}

impl ProgressLines {
    fn line(&mut self, label: &str, done: u64, total: Option<u64>, now: std::time::Instant) -> Option<String> {
        match &self.run {
            Some((l, _, from)) if l == label && *from <= done => {}
            _ => self.run = Some((label.to_owned(), now, done)),
        }
        let finished = total.is_some_and(|t| done >= t);
        if self.last.is_some_and(|at| now - at < std::time::Duration::from_secs(5)) && !finished {
            return None;
        }
        self.last = Some(now);
        let Some(t) = total.filter(|t| *t > 0) else {
            return Some(format!("{label}: {done}"));
        };
        let (_, began, from) = self.run.as_ref().expect("set above");
        let elapsed = (now - *began).as_secs_f64();
        let rate = (done - from) as f64 / elapsed;
        let pace = if elapsed >= 1.0 && rate > 0.0 && !finished {
            let left = t.saturating_sub(done) as f64 / rate;
            format!(
                ", {rate:.0}/s, eta {}",
                short_duration(std::time::Duration::from_secs_f64(left))
            )
        } else {
            String::new()
        };
        Some(format!("{label}: {done}/{t} ({}%{pace})", done * 100 / t))
    }
}

/// Puts a bar made by `bytes_bar` on the terminal, once its first update
/// has set every field it shows.
fn shown(bar: &indicatif::ProgressBar) {
    if bar.is_hidden() {
        bar.set_draw_target(indicatif::ProgressDrawTarget::stderr_with_hz(4));
    }
}

/// `1h02m`, `3m07s`, `42s`.
fn short_duration(d: std::time::Duration) -> String {
    let s = d.as_secs();
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
    }
}

/// A duration to a tenth of a second below a minute: what an estimate or
/// a record of a backup's time needs.
fn took(d: std::time::Duration) -> String {
    match d.as_secs_f64() {
        s if s < 1.0 => format!("{} ms", d.as_millis()),
        s if s < 60.0 => format!("{s:.1} s"),
        _ => short_duration(d),
    }
}

fn human_bytes(n: u64) -> String {
    match n {
        n if n >= 1 << 30 => format!("{:.1} GiB", n as f64 / f64::from(1u32 << 30)),
        n if n >= 1 << 20 => format!("{:.1} MiB", n as f64 / f64::from(1u32 << 20)),
        n if n >= 1 << 10 => format!("{:.1} KiB", n as f64 / 1024.0),
        n => format!("{n} B"),
    }
}

/// `println!` that ignores a closed stdout (`waymark status | head`) instead
/// of panicking.
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout().lock(), $($arg)*);
    }};
}

mod fleet;
mod running;
pub(crate) use fleet::FleetView;
mod rehearsal;

pub(crate) struct Output {
    json: bool,
    quiet: bool,
    /// `--events FILE`, which gets every event as a JSON line.
    pub(crate) events: Option<crate::events::EventLog>,
    /// The migration running now, once [`Output::show_running`] is called.
    running: std::sync::Arc<running::Running>,
}

impl Output {
    pub(crate) fn new(json: bool, quiet: bool) -> Self {
        Output {
            json,
            quiet,
            events: None,
            running: Default::default(),
        }
    }

    /// Shows each migration while it runs (not in quiet mode): a bar on a
    /// terminal, a line now and then elsewhere.
    pub(crate) fn show_running(&self) {
        if !self.quiet {
            self.running.enable(std::io::stderr().is_terminal());
        }
    }

    /// Prints a command's reply: `ok` and the command's fields.
    fn reply<T: Serialize>(&self, ok: bool, body: T) {
        outln!(
            "{}",
            serde_json::to_string_pretty(&json::Reply { ok, body }).expect("replies serialize")
        );
    }

    pub(crate) fn note(&self, line: &str) {
        if !self.quiet {
            self.running.println(line);
        }
    }

    fn table(&self, header: &[&str]) -> Table {
        let mut table = Table::new();
        table.load_preset(if std::io::stdout().is_terminal() {
            presets::UTF8_HORIZONTAL_ONLY
        } else {
            presets::NOTHING
        });
        table.set_header(header.to_vec());
        table
    }

    pub(crate) fn error(&self, error: &anyhow::Error, hint: Option<&str>) {
        self.running.clear();
        eprintln!("error: {error:#}");
        if let Some(hint) = hint {
            eprintln!("hint: {hint}");
        }
        if self.json {
            self.reply(
                false,
                json::Failure {
                    error: json::ErrorBody {
                        message: format!("{error:#}"),
                        hint: hint.map(str::to_owned),
                    },
                },
            );
        }
    }

    pub(crate) fn progress(&self, event: &Event<'_>) {
        if let Some(log) = &self.events {
            let (Event::Started { target, .. }
            | Event::Finished { target, .. }
            | Event::Skipped { target, .. }
            | Event::Finding { target, .. }
            | Event::BackedUp { target, .. }) = event;
            log.engine(target, event);
        }
        match event {
            // The target is the one database a command runs against; the
            // log names it so that lines from several runs can be told apart.
            Event::Started {
                target,
                label,
                down,
                position,
                of,
            } => {
                tracing::info!("{} {label} on {target}", if *down { "reverting" } else { "applying" });
                self.running.started(label, *down, *position, *of);
            }
            Event::Finished {
                label,
                done,
                duration,
                preimages,
                warnings,
                ..
            } => {
                self.running.ended();
                self.note(&format!("{done} {label} ({} ms)", duration.as_millis()));
                for p in preimages.iter() {
                    self.note(&match p.put_back {
                        None => format!("  kept {} ({} rows) in {} for down", p.object, p.rows, p.kept_in),
                        Some(written) => format!("  put back {} ({written} of {} rows kept)", p.object, p.rows),
                    });
                }
                for w in warnings.iter() {
                    self.note(&format!("warning: {label}: {w}"));
                }
            }
            Event::Finding { file, finding, .. } => {
                self.note(finding_text(file, finding).lines().next().unwrap_or_default());
            }
            Event::Skipped { label, down, .. } => {
                self.running.ended();
                self.note(&format!(
                    "skipped {label}: another runner {} it first",
                    if *down { "reverted" } else { "applied" }
                ));
            }
            Event::BackedUp {
                id, dir, tables, bytes, ..
            } => self.note(&format!(
                "backed up to {} ({tables} tables, {}) and verified; recorded as backup {id}",
                dir.display(),
                human_bytes(*bytes)
            )),
        }
    }

    /// Says, as it happens, each lock wait that timed out and what comes
    /// next: the application's queries went through meanwhile.
    pub(crate) fn lock_retries(&self) -> waymark_core::OnLockRetry {
        let quiet = self.quiet;
        let running = self.running.clone();
        std::sync::Arc::new(move |r: &waymark_core::LockRetry| {
            if quiet {
                return;
            }
            let again = match r.retried {
                waymark_core::Retried::Migration => "rolled back, and tried again",
                waymark_core::Retried::FromCheckpoint => {
                    "its batch in flight rolled back, and tried again from its last commit point"
                }
                _ => "tried again",
            };
            let when = match r.until_ended.as_slice() {
                [] => format!("in {:.1} s", r.pause.as_secs_f64()),
                [pid] => format!(
                    "as soon as pid {pid}'s transaction has ended (waiting at most {:.1} s, outside the lock's \
                     queue)",
                    r.pause.as_secs_f64()
                ),
                pids => format!(
                    "as soon as the transactions of pids {} have ended (waiting at most {:.1} s, outside the \
                     lock's queue)",
                    pids.iter().map(ToString::to_string).collect::<Vec<_>>().join(", "),
                    r.pause.as_secs_f64()
                ),
            };
            // Above the running migration's bar, when there is one.
            running.println(&format!(
                "warning: {}: attempt {} of {}: {}; {again} {when}",
                r.label, r.attempt, r.budget, r.wait
            ));
        })
    }

    /// Warns about what discovery skipped that looks like a mistake; the
    /// rest is logged, and listed by `status -v`.
    pub(crate) fn ignored(&self, set: &MigrationSet) {
        for i in &set.ignored {
            if i.suspicious {
                self.note(&format!("warning: {}: {}", i.path.display(), i.reason));
            } else {
                tracing::debug!("{}: {}", i.path.display(), i.reason);
            }
        }
    }

    pub(crate) fn status(
        &self,
        set: &MigrationSet,
        entries: &[Entry],
        kept: &[Preimage],
        schemas: &[(String, String)],
        verbose: bool,
    ) {
        let schema_of = |e: &Entry| {
            schemas
                .iter()
                .find(|(v, _)| v == e.version.as_str())
                .map(|(_, s)| s.as_str())
        };
        let kept_by =
            |e: &Entry| -> Vec<&Preimage> { kept.iter().filter(|p| p.version == e.version.as_str()).collect() };
        // A copy whose migration is no longer applied was left by a `down`
        // that did not make its place again.
        let waiting: Vec<&Preimage> = kept
            .iter()
            .filter(|p| {
                !entries
                    .iter()
                    .any(|e| e.version.as_str() == p.version && e.row.is_some())
            })
            .collect();
        if self.json {
            let migrations = entries
                .iter()
                .map(|e| json::EntryJson {
                    preimages: kept_by(e).into_iter().filter(|p| !waiting.contains(p)).collect(),
                    version_schema: schema_of(e),
                    ..json::EntryJson::from(e)
                })
                .collect();
            let ignored = set
                .ignored
                .iter()
                .map(|i| json::IgnoredFile {
                    path: i.path.display().to_string(),
                    reason: i.reason.clone(),
                    suspicious: i.suspicious,
                })
                .collect();
            self.reply(
                true,
                json::StatusReply {
                    layout: set.layout.as_str(),
                    migrations,
                    waiting: waiting.clone(),
                    ignored,
                },
            );
            return;
        }
        if verbose {
            outln!("layout: {} ({})", set.layout, set.dir.display());
            for i in &set.ignored {
                outln!("ignored: {}: {}", i.path.display(), i.reason);
            }
        }
        if entries.is_empty() {
            self.note("no migrations");
            self.waiting(&waiting);
            return;
        }
        let mut table = self.table(&["VERSION", "NAME", "STATE", "APPLIED AT", "DURATION"]);
        for e in entries {
            table.add_row(vec![
                e.version.to_string(),
                e.name.clone(),
                e.state.as_str().to_owned(),
                e.row.as_ref().map(|r| r.applied_at.clone()).unwrap_or_default(),
                e.row
                    .as_ref()
                    .map(|r| format!("{} ms", r.duration_ms))
                    .unwrap_or_default(),
            ]);
        }
        outln!("{table}");
        for e in entries {
            if let Some(schema) = schema_of(e) {
                outln!(
                    "{} is expanded: its new version reads and writes through schema {schema}, first on its \
                     search_path; `waymark complete` contracts it",
                    e.label()
                );
            }
        }
        for e in entries {
            let copies: Vec<&Preimage> = kept_by(e).into_iter().filter(|p| !waiting.contains(p)).collect();
            if copies.is_empty() {
                continue;
            }
            let list: Vec<String> = copies
                .iter()
                .map(|p| format!("{} ({} rows, in {})", p.object, p.rows, p.kept_in))
                .collect();
            outln!("{} keeps what it dropped, for its down: {}", e.label(), list.join(", "));
        }
        self.waiting(&waiting);
    }

    fn waiting(&self, waiting: &[&Preimage]) {
        for p in waiting {
            outln!(
                "waiting: {} ({} rows, in {}), dropped by {} and not made again by its down; it goes back when a \
                 down makes it again",
                p.object,
                p.rows,
                p.kept_in,
                p.version
            );
        }
    }

    /// A plan: in JSON, the document `plan --out` writes (with `"ok"`).
    pub(crate) fn plan(
        &self,
        plan: &Plan,
        saved: &SavedPlan,
        written: Option<&std::path::Path>,
        trace: Option<&waymark_core::Trace>,
    ) {
        let ok = trace.is_none_or(|t| t.stopped.is_none());
        // Said before the plan, while a file can still be mended.
        let warnings = plan.warnings();
        for w in &warnings {
            self.note(&format!("warning: {w}"));
        }
        if self.json {
            self.reply(
                ok,
                json::PlanReply {
                    plan: saved,
                    warnings: (!warnings.is_empty()).then_some(&warnings[..]),
                    trace,
                },
            );
        } else {
            self.plan_text(plan);
            if let Some(trace) = trace {
                self.trace_text(trace);
            }
        }
        if let Some(path) = written {
            self.note(&format!(
                "wrote the plan to {}; `waymark {} --plan {}` applies exactly it",
                path.display(),
                if plan.way == Way::Down { "down" } else { "up" },
                path.display()
            ));
        }
    }

    fn plan_text(&self, plan: &Plan) {
        if plan.migrations.is_empty() {
            outln!(
                "{}",
                if plan.way == Way::Down {
                    "nothing to revert"
                } else {
                    "nothing to apply"
                }
            );
            return;
        }
        for p in &plan.migrations {
            let how = match p.strategy {
                _ if plan.single_transaction => "in the batch's single transaction",
                Strategy::OneTransaction if plan.dry_run => "in the dry run's transaction, rolled back",
                Strategy::Batched => "in batches, each committed with its checkpoint",
                _ if p.transactional() => "in a transaction",
                _ => "outside a transaction",
            };
            outln!(
                "{} {} ({}, {how}, step {}){}",
                if p.down { "revert" } else { "apply" },
                p.migration.label(),
                p.file.display(),
                p.step,
                if p.resumes {
                    ", resuming from its checkpoint"
                } else {
                    ""
                }
            );
            for a in &p.actions {
                let text = a.text.replace('\n', "\n      ");
                outln!("  {:>4}  {text}", a.line);
            }
            if !p.keeps.is_empty() {
                outln!(
                    "        {}: {}",
                    if p.down {
                        "puts back the kept copies of"
                    } else {
                        "keeps a copy of"
                    },
                    p.keeps.join(", ")
                );
            }
            for f in &p.findings {
                outln!("{}", finding_text(&p.file, f).replace('\n', "\n  "));
            }
        }
    }

    fn trace_text(&self, trace: &waymark_core::Trace) {
        outln!(
            "\ntrace on {} (rolled back; lock timeout {} ms{}):",
            trace.target,
            trace.lock_timeout_ms,
            match trace.statement_timeout_ms {
                Some(ms) => format!(", statement timeout {ms} ms"),
                None => String::new(),
            }
        );
        for m in &trace.migrations {
            outln!("{}_{} ({})", m.version, m.name, m.file);
            if let Some(why) = &m.skipped {
                outln!("  not run: {why}");
            }
            for s in &m.statements {
                let locks: Vec<String> = s
                    .locks
                    .iter()
                    .map(|l| format!("{} on {} {}", l.mode, l.kind, l.relation))
                    .collect();
                outln!("  {:>4}  {:>9.1} ms  {}", s.line, s.duration_ms, s.sql);
                outln!(
                    "                    locks: {}",
                    if locks.is_empty() {
                        "none new".to_owned()
                    } else {
                        locks.join(", ")
                    }
                );
                if !s.rewritten.is_empty() {
                    outln!("                    rewrote: {}", s.rewritten.join(", "));
                }
            }
        }
        if let Some(stop) = &trace.stopped {
            let hint = if stop.lock_timeout {
                "another session holds a lock it needs; `up` would wait and retry within [locks] budget"
            } else if stop.message.contains("statement timeout") {
                "on the target a traced statement may hold its lock only this long; trace on a copy with \
                 --scratch-url to see it run to the end"
            } else {
                "`up` would fail here too"
            };
            eprintln!("error: trace stopped at {}:{}: {}", stop.file, stop.line, stop.message);
            for blocker in &stop.held_by {
                eprintln!("  held by {blocker}");
            }
            eprintln!("hint: {hint}");
        }
    }

    /// `waymark lint`: each finding on stdout, a count on stderr. Returns
    /// whether an error-level finding is not allowed.
    pub(crate) fn lint(
        &self,
        plan: &Plan,
        format: crate::cli::LintFormat,
        severities: &std::collections::HashMap<String, Severity>,
    ) -> bool {
        let all = || plan.migrations.iter().flat_map(|p| &p.findings);
        let refusing = |f: &&Finding| f.severity == Severity::Error && f.allowed.is_none();
        let errors = all().filter(refusing).count();
        let warnings = all().filter(|f| f.allowed.is_none()).count() - errors;
        let allowed = all().filter(|f| f.allowed.is_some()).count();
        if format == crate::cli::LintFormat::Sarif {
            let log = crate::sarif::log(plan, |r| severities.get(r.id).copied().unwrap_or(r.severity));
            outln!("{}", serde_json::to_string_pretty(&log).expect("the log serializes"));
        } else if self.json || format == crate::cli::LintFormat::Json {
            let migrations = plan
                .migrations
                .iter()
                .map(|p| json::LintedMigration {
                    version: p.migration.version.as_str(),
                    name: &p.migration.name,
                    file: p.file.display().to_string(),
                    findings: p.findings.iter().map(SavedFinding::from).collect(),
                })
                .collect();
            self.reply(
                errors == 0,
                json::Linted {
                    migrations,
                    errors,
                    warnings,
                    allowed,
                },
            );
        } else {
            for p in &plan.migrations {
                for f in &p.findings {
                    outln!("{}\n", finding_text(&p.file, f));
                }
            }
        }
        self.note(&format!(
            "{} migration(s) linted: {errors} error(s), {warnings} warning(s), {allowed} allowed",
            plan.migrations.len()
        ));
        errors > 0
    }

    /// `waymark lint --rules`: the catalogue.
    /// The rule catalogue, each rule at the severity `[lint.severity]`
    /// gives it.
    pub(crate) fn rules(&self, severities: &std::collections::HashMap<String, Severity>) {
        let severity = |r: &waymark_core::Rule| severities.get(r.id).copied().unwrap_or(r.severity).as_str();
        if self.json {
            let rules = RULES
                .iter()
                .map(|r| json::RuleJson {
                    id: r.id,
                    dialects: r.dialects.iter().map(|d| d.name()).collect(),
                    severity: severity(r),
                    lock: r.lock,
                    why: r.why,
                    fix: r.fix,
                })
                .collect();
            self.reply(true, json::Rules { rules });
            return;
        }
        for r in RULES {
            let dialects: Vec<&str> = r.dialects.iter().map(|d| d.name()).collect();
            outln!("{} ({}, {})", r.id, severity(r), dialects.join(", "));
            outln!("  lock: {}\n  why:  {}\n  fix:  {}\n", r.lock, r.why, r.fix);
        }
    }

    /// Where steps' progress reports go: a bar on a terminal, a log line
    /// at most every few seconds elsewhere, nothing in JSON or quiet mode.
    pub(crate) fn step_progress(&self) -> Option<Progress> {
        if self.json || self.quiet {
            return None;
        }
        if std::io::stderr().is_terminal() {
            // The running migration's bar, when there is one, shows the
            // step's count; a second bar would draw over it.
            let running = self.running.clone();
            let bar = indicatif::ProgressBar::hidden();
            bar.set_draw_target(indicatif::ProgressDrawTarget::stderr_with_hz(4));
            bar.set_style(
                indicatif::ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} ({per_sec}, eta {eta})")
                    .expect("the template is valid")
                    .progress_chars("=> "),
            );
            let bar = std::sync::Mutex::new(bar);
            return Some(std::sync::Arc::new(
                move |label: &str, done: u64, total: Option<u64>| {
                    if running.step(label, done, total) {
                        return;
                    }
                    let bar = bar.lock().unwrap();
                    if bar.message() != label {
                        bar.reset();
                        bar.set_message(label.to_owned());
                    }
                    bar.set_length(total.unwrap_or(done));
                    bar.set_position(done);
                    if total.is_some_and(|t| done >= t) {
                        bar.finish_and_clear();
                    }
                },
            ));
        }
        let lines = std::sync::Mutex::new(ProgressLines::default());
        Some(std::sync::Arc::new(
            move |label: &str, done: u64, total: Option<u64>| {
                if let Some(line) = lines
                    .lock()
                    .unwrap()
                    .line(label, done, total, std::time::Instant::now())
                {
                    eprintln!("{line}");
                }
            },
        ))
    }

    pub(crate) fn inspection(&self, path: &std::path::Path, i: &Inspection) {
        let description = i.description.as_ref().ok();
        if self.json {
            self.reply(
                description.is_some() && i.interface.is_some(),
                json::Inspected {
                    path: path.display().to_string(),
                    sha256: &i.digest,
                    size: i.size,
                    interface: i.interface.as_deref(),
                    imports: &i.imports,
                    exports: &i.exports,
                    description: description.map(|d| json::Described {
                        name: &d.name,
                        version: &d.version,
                        summary: &d.summary,
                        reversible: d.reversible,
                    }),
                    error: i.description.as_ref().err().map(ToString::to_string),
                },
            );
            return;
        }
        outln!("component  {}", path.display());
        outln!("sha256     {}", i.digest);
        outln!("size       {} bytes", i.size);
        outln!(
            "interface  {}",
            i.interface
                .as_deref()
                .unwrap_or("none: it exports no waymark:plugin/step")
        );
        match &i.description {
            Ok(d) => {
                outln!("step       {} {}", d.name, d.version);
                outln!("summary    {}", d.summary);
                outln!("reversible {}", if d.reversible { "yes" } else { "no" });
            }
            Err(e) => outln!("describe   failed: {e}"),
        }
        outln!("imports    {}", i.imports.join(", "));
        outln!("\npin it in step.toml:\n  sha256 = \"{}\"", i.digest);
    }

    pub(crate) fn plugin_test(&self, report: &PluginTest) {
        if self.json {
            let stages = report
                .stages
                .iter()
                .map(|s| json::TestStage {
                    stage: s.name,
                    duration_ms: s.duration.as_millis(),
                    changes: &s.changes,
                })
                .collect();
            self.reply(
                report.problems.is_empty(),
                json::PluginTested {
                    database: &report.url,
                    stages,
                    problems: &report.problems,
                },
            );
        } else {
            outln!("scratch database {}", report.url);
            for stage in &report.stages {
                outln!("{} ({} ms):", stage.name, stage.duration.as_millis());
                if stage.changes.is_empty() {
                    outln!("  no changes");
                }
                for change in &stage.changes {
                    outln!("  {change}");
                }
            }
        }
        if report.problems.is_empty() {
            self.note("ok: down restored what up found, and up repeated gives the same result");
        }
        for problem in &report.problems {
            eprintln!("error: {problem}");
        }
    }

    pub(crate) fn applied(&self, command: &str, done: &[Applied], failure: Option<(&Error, Option<String>)>) {
        self.running.clear();
        let verb = match command {
            "down" => "reverted",
            "complete" => "completed",
            "up --dry-run" => "applied and rolled back (dry run)",
            _ => "applied",
        };
        if let Some((error, hint)) = &failure {
            eprintln!("error: {error}");
            if let Some(hint) = hint {
                eprintln!("hint: {hint}");
            }
        } else if done.is_empty() {
            self.note(&format!(
                "nothing to do: no migration {}",
                match command {
                    "down" => "to revert",
                    "complete" => "expanded",
                    _ => "pending",
                }
            ));
        } else if command == "redo" {
            // Each migration is listed twice, reverted then applied.
            let mut redone: Vec<&str> = done.iter().map(|a| a.version.as_str()).collect();
            redone.dedup();
            let how = if done.iter().any(|a| a.done == "reverted") {
                "reverted, then applied again"
            } else {
                "applied again, the revert of an interrupted redo having run before"
            };
            self.note(&format!("redid {} migration(s): {how}", redone.len()));
        } else {
            self.note(&format!("{verb} {} migration(s)", done.len()));
        }
        if self.json {
            let error = failure.map(|(e, hint)| json::ErrorBody {
                message: e.to_string(),
                hint,
            });
            self.reply(
                error.is_none(),
                json::AppliedReply {
                    command,
                    done: done.iter().map(json::AppliedMigration::from).collect(),
                    error,
                },
            );
        }
    }

    pub(crate) fn verify(&self, report: &VerifyReport) {
        if self.json {
            self.reply(
                report.differences.is_empty(),
                json::Verified {
                    checked: report.checked,
                    differences: report.differences.iter().map(json::EntryJson::from).collect(),
                },
            );
        } else {
            for e in &report.differences {
                let row = e.row.as_ref();
                match &e.migration {
                    Some(m) => outln!(
                        "{}: modified: applied with checksum {}, file {} has {}",
                        e.label(),
                        row.map(|r| r.checksum.as_str()).unwrap_or_default(),
                        m.up.path.display(),
                        m.checksum
                    ),
                    None => outln!("{}: missing: applied, but no file has this version", e.label()),
                }
            }
        }
        if report.differences.is_empty() {
            self.note(&format!(
                "verified {} applied migration(s): all match their files",
                report.checked
            ));
        } else {
            eprintln!(
                "error: {} of {} applied migration(s) differ from their files",
                report.differences.len(),
                report.checked
            );
        }
    }

    pub(crate) fn created(&self, paths: &[PathBuf]) {
        if self.json {
            let created = paths.iter().map(|p| p.display().to_string()).collect();
            self.reply(true, json::Created { created });
        } else {
            for p in paths {
                outln!("{}", p.display());
            }
        }
    }

    /// `database create` (`created`) or `database drop`.
    pub(crate) fn database(&self, created: bool, change: &waymark_core::DatabaseChange, url: &str) {
        if self.json {
            self.reply(
                true,
                json::DatabaseChanged {
                    database: &change.name,
                    changed: change.changed,
                },
            );
            return;
        }
        let said = match (created, change.changed) {
            (true, true) => format!("created database {} ({url})", change.name),
            (true, false) => format!("database {} exists already ({url}); nothing changed", change.name),
            (false, true) => format!("dropped database {} ({url})", change.name),
            (false, false) => format!("database {} does not exist ({url}); nothing dropped", change.name),
        };
        self.note(&said);
    }

    pub(crate) fn baseline(&self, adopted: &[Migration]) {
        if self.json {
            let baselined = adopted
                .iter()
                .map(|m| json::Adopted {
                    version: m.version.as_str(),
                    name: &m.name,
                })
                .collect();
            self.reply(true, json::Baselined { baselined });
        } else {
            for m in adopted {
                outln!("{}", m.label());
            }
            self.note(&format!("recorded {} migration(s) as baseline", adopted.len()));
        }
    }

    pub(crate) fn repair(&self, actions: &[RepairAction]) {
        if self.json {
            let repaired = actions
                .iter()
                .map(|a| json::RepairedMigration {
                    action: a.action,
                    migration: &a.label,
                    detail: &a.detail,
                })
                .collect();
            self.reply(true, json::Repaired { repaired });
            return;
        }
        for a in actions {
            outln!("{} {}: {}", a.action, a.label, a.detail);
        }
        if actions.is_empty() {
            self.note("nothing to repair");
        }
    }

    /// A progress display for backups and restores: a bar of bytes with
    /// rate and ETA on a terminal, nothing otherwise. Until a second of
    /// rows has been seen the ETA is the estimate's; then it is the pace
    /// so far, so it corrects itself as the work goes. The last frame is
    /// cleared when the display is dropped.
    pub(crate) fn backup_progress(&self) -> Box<dyn FnMut(BackupProgress<'_>) + Send> {
        let Some(bar) = self.bytes_bar("{prefix}", "{msg}") else {
            return Box::new(|_| {});
        };
        let started = std::time::Instant::now();
        Box::new(move |p: BackupProgress<'_>| {
            let total = p.total_bytes.unwrap_or(p.bytes).max(p.bytes);
            // A copy of pages counts bytes, not rows.
            bar.set_prefix(match p.rows {
                0 => p.table.to_owned(),
                rows => format!("{} ({rows} rows)", p.table),
            });
            let elapsed = started.elapsed();
            let left = match p.expected {
                Some(expected) if elapsed < std::time::Duration::from_secs(1) || p.bytes == 0 => {
                    Some(expected.saturating_sub(elapsed))
                }
                _ if p.bytes == 0 => None,
                _ => Some(elapsed.mul_f64(total.saturating_sub(p.bytes) as f64 / p.bytes as f64)),
            };
            bar.set_message(left.map_or_else(|| "?".to_owned(), short_duration));
            // Last: setting the position may draw, and the frame should
            // already name the table and the time left.
            bar.set_length(total);
            bar.set_position(p.bytes);
            shown(&bar);
        })
    }

    pub(crate) fn backup_estimate(&self, dir: &std::path::Path, e: &BackupEstimate) {
        let totals = e.totals();
        let (basis, sets, newest) = match &e.basis {
            BackupBasis::Earlier { sets, newest } => ("earlier", *sets, Some(newest.as_str())),
            BackupBasis::Assumed => ("assumed", 0, None),
        };
        if self.json {
            let tables = e
                .tables
                .iter()
                .map(|(name, f)| json::EstimatedTable {
                    name,
                    rows: f.rows,
                    data_bytes: f.data_bytes,
                    index_bytes: f.index_bytes,
                })
                .collect();
            self.reply(
                true,
                json::BackupEstimate {
                    dir: dir.display().to_string(),
                    tables,
                    rows: totals.rows,
                    data_bytes: totals.data_bytes,
                    index_bytes: totals.index_bytes,
                    raw_bytes: e.raw_bytes,
                    set_bytes: e.set_bytes,
                    duration_ms: u64::try_from(e.duration.as_millis()).unwrap_or(u64::MAX),
                    basis,
                    sets,
                    newest,
                    data_bytes_per_sec: e.rates.data_per_sec as u64,
                    fixed_ms: u64::try_from(e.rates.fixed.as_millis()).unwrap_or(u64::MAX),
                },
            );
            return;
        }
        let mut table = self.table(&["TABLE", "ROWS", "DATA", "INDEXES"]);
        for (name, f) in &e.tables {
            table.add_row(vec![
                name.clone(),
                f.rows.to_string(),
                human_bytes(f.data_bytes),
                human_bytes(f.index_bytes),
            ]);
        }
        outln!("{table}");
        outln!(
            "expect a set of about {} ({} of rows to read), taken in about {}",
            human_bytes(e.set_bytes),
            human_bytes(e.raw_bytes),
            took(e.duration)
        );
        let pace = format!(
            "{}/s of table data, plus {}",
            human_bytes(e.rates.data_per_sec as u64),
            took(e.rates.fixed)
        );
        match newest {
            Some(newest) => outln!(
                "pace: {pace}, from the {sets} newest timed set(s) in {} (newest {newest})",
                dir.display()
            ),
            None => outln!(
                "pace: {pace}, assumed: {} holds no timed set of this kind of database over {}, so the documented \
                 defaults stand in (docs/guide/backups.md)",
                dir.display(),
                human_bytes(waymark_backup::TIMED_MIN_BYTES)
            ),
        }
    }

    pub(crate) fn backup_created(&self, dir: &std::path::Path, m: &Manifest) {
        let rows: u64 = m.tables.iter().map(|t| t.rows).sum();
        // As `backup list` counts it: the folder on disk, manifest and all.
        let size = waymark_backup::size_on_disk(dir);
        if self.json {
            self.reply(
                true,
                json::BackupCreated {
                    dir: dir.display().to_string(),
                    id: &m.id,
                    kind: set_kind(m),
                    tables: m.tables.len(),
                    rows,
                    bytes: size,
                    migration: m.history.last().map(|h| h.version.as_str()),
                    duration_ms: m.timing.map(|t| t.took_ms),
                },
            );
        } else {
            outln!("{}", dir.display());
        }
        let duration = m
            .timing
            .map(|t| format!(" in {}", took(std::time::Duration::from_millis(t.took_ms))))
            .unwrap_or_default();
        match &m.pages {
            Some(p) => self.note(&format!(
                "copied {} pages of {} ({}, {} compressed){duration} and verified",
                p.pages,
                human_bytes(p.page_size),
                human_bytes(p.raw_bytes),
                human_bytes(size)
            )),
            None => self.note(&format!(
                "backed up {} tables ({rows} rows, {}){duration} and verified",
                m.tables.len(),
                human_bytes(size)
            )),
        }
    }

    pub(crate) fn backup_verified(&self, dir: &std::path::Path, m: &Manifest, report: &VerifyBackupReport, deep: bool) {
        if self.json {
            self.reply(
                report.problems.is_empty(),
                json::BackupVerified {
                    dir: dir.display().to_string(),
                    id: &m.id,
                    files: report.files,
                    deep,
                    problems: &report.problems,
                },
            );
        } else {
            for p in &report.problems {
                outln!("{p}");
            }
        }
        if report.problems.is_empty() {
            self.note(&format!(
                "{}: {} files verified{}",
                dir.display(),
                report.files,
                if deep && m.pages.is_some() {
                    ", every page digested again"
                } else if deep {
                    ", every table's rows digested again"
                } else {
                    ""
                }
            ));
        } else {
            eprintln!("error: {}: {} problem(s)", dir.display(), report.problems.len());
        }
    }

    pub(crate) fn backup_list(&self, dir: &std::path::Path, sets: &[Listed]) {
        if self.json {
            let backups = sets
                .iter()
                .map(|s| {
                    let manifest = s.manifest.as_ref().ok();
                    json::ListedBackup {
                        id: &s.id,
                        complete: manifest.is_some(),
                        created_at: manifest.map(|m| m.created_at.as_str()),
                        bytes: s.size,
                        duration_ms: manifest.and_then(|m| m.timing).map(|t| t.took_ms),
                        kind: manifest.map(set_kind),
                        tables: manifest.map(|m| m.tables.len()),
                        migration: manifest.map(|m| m.history.last().map(|h| h.version.as_str())),
                        problem: s.manifest.as_ref().err().map(String::as_str),
                    }
                })
                .collect();
            self.reply(
                true,
                json::BackupList {
                    dir: dir.display().to_string(),
                    backups,
                },
            );
            return;
        }
        if sets.is_empty() {
            self.note(&format!("no backups in {}", dir.display()));
            return;
        }
        let mut table = self.table(&["ID", "STATE", "AGE", "SIZE", "TOOK", "TABLES", "MIGRATION"]);
        let now = chrono::Utc::now();
        for s in sets {
            match &s.manifest {
                Ok(m) => table.add_row(vec![
                    s.id.clone(),
                    "complete".to_owned(),
                    age(&m.created_at, now),
                    human_bytes(s.size),
                    m.timing
                        .map(|t| took(std::time::Duration::from_millis(t.took_ms)))
                        .unwrap_or_else(|| "-".to_owned()),
                    match m.pages {
                        Some(_) => "pages".to_owned(),
                        None => m.tables.len().to_string(),
                    },
                    m.history
                        .last()
                        .map(|h| h.version.clone())
                        .unwrap_or_else(|| "-".to_owned()),
                ]),
                Err(why) => table.add_row(vec![
                    s.id.clone(),
                    why.clone(),
                    String::new(),
                    human_bytes(s.size),
                    String::new(),
                    String::new(),
                    String::new(),
                ]),
            };
        }
        outln!("{table}");
    }

    pub(crate) fn compared(&self, report: &CompareReport, source: &str, target: &str, sequences: bool) {
        let rows: u64 = report.tables.iter().map(|t| t.rows).sum();
        let ranges: usize = report.tables.iter().map(|t| t.ranges).sum();
        if self.json {
            self.reply(
                report.matches(),
                json::Compared {
                    source,
                    target,
                    tables: &report.tables,
                    problems: &report.problems,
                },
            );
        } else {
            for problem in &report.problems {
                outln!("{problem}");
            }
        }
        if report.matches() {
            self.note(&format!(
                "{target} holds the same as {source}: {} tables, {rows} rows in {ranges} key ranges{}",
                report.tables.len(),
                if sequences {
                    ", and the sequences"
                } else {
                    " (online: sequences follow traffic, at switch time)"
                }
            ));
        } else {
            eprintln!(
                "error: {target} differs from {source} in {} way(s)",
                report.problems.len()
            );
        }
    }

    /// A bar of bytes with rate and ETA (`eta`: indicatif's `{eta}`, or a
    /// placeholder the caller fills), after `label`, on a terminal; `None`
    /// where nothing should be drawn. Its last frame goes when it does.
    fn bytes_bar(&self, label: &str, eta: &str) -> Option<indicatif::ProgressBar> {
        if self.json || self.quiet || !std::io::stderr().is_terminal() {
            return None;
        }
        // Hidden until its first update has set every field ([`shown`]):
        // a frame drawn half set says `0 B/0 B` or an empty ETA.
        let bar = indicatif::ProgressBar::hidden().with_finish(indicatif::ProgressFinish::AndClear);
        bar.set_style(
            indicatif::ProgressStyle::with_template(&format!(
                "{label} [{{bar:30}}] {{bytes}}/{{total_bytes}} ({{bytes_per_sec}}, eta {eta})"
            ))
            .expect("the template is valid")
            .progress_chars("=> "),
        );
        Some(bar)
    }

    /// A progress display for a cutover's initial copy: tables ready and
    /// bytes copied, on a terminal.
    pub(crate) fn sync_progress(&self) -> Box<dyn FnMut(SyncProgress) + Send> {
        let Some(bar) = self.bytes_bar("copying {msg}", "{eta}") else {
            return Box::new(|_| {});
        };
        Box::new(move |p: SyncProgress| {
            bar.set_message(format!("{}/{} tables ready", p.ready, p.tables));
            bar.set_length(p.total_bytes);
            bar.set_position(p.bytes);
            shown(&bar);
        })
    }

    pub(crate) fn cutover_prepared(&self, p: &Prepared) {
        let s = &p.state;
        let backup = s.backup.as_ref().map(|b| b.display().to_string()).unwrap_or_default();
        if self.json {
            self.reply(
                true,
                json::CutoverPrepared {
                    id: &s.id,
                    resumed: p.resumed,
                    backup: backup.clone(),
                    source: redact(&s.source),
                    target: redact(&s.target),
                    seeded_at: s.seed.as_ref().and_then(|seed| seed.lsn.as_deref()),
                },
            );
        }
        let filled = match s.seed.as_ref().and_then(|seed| seed.lsn.as_deref()) {
            Some(lsn) => format!("schema and rows from {backup}, replicating from its position {lsn}"),
            None => format!("schema from {backup}"),
        };
        self.note(&format!(
            "{} replicates into {}, caught up; {filled}{}. Next: `waymark cutover verify`, then `switch`",
            redact(&s.source),
            redact(&s.target),
            if p.resumed { " (resumed)" } else { "" }
        ));
    }

    pub(crate) fn cutover_status(&self, st: &CutoverStatus) {
        if self.json {
            // A switch's guardrails failing exits 5, so `ok` says so too.
            self.reply(
                !st.blocked(),
                json::CutoverStatus {
                    ready: st.ready(),
                    status: st,
                },
            );
            return;
        }
        let phase = serde_json::to_value(st.phase).unwrap_or_default();
        outln!("cutover   {} ({})", st.id, phase.as_str().unwrap_or_default());
        outln!(
            "live      {} ({})",
            st.live.name(),
            if st.live == Side::Source {
                &st.source
            } else {
                &st.target
            }
        );
        if let Some(m) = &st.moving {
            outln!(
                "moving    to the {}, stopped after step {} (run switch or rollback again to finish or undo it)",
                m.to.name(),
                m.step.name()
            );
        }
        if let Some(into) = st.replicating_into {
            outln!(
                "lag       {} bytes, {:.1} s, into the {}",
                st.lag_bytes.map_or("?".into(), |b| b.to_string()),
                st.lag_seconds.unwrap_or(0.0),
                into.name()
            );
        }
        if !st.tables.is_empty() {
            let mut table = self.table(&["TABLE", "STATE"]);
            for t in &st.tables {
                table.add_row(vec![t.table.clone(), t.state.clone()]);
            }
            outln!("{table}");
        }
        for g in &st.guardrails {
            outln!("{} {:<12} {}", if g.passed { "ok  " } else { "FAIL" }, g.name, g.detail);
        }
    }

    pub(crate) fn switched(&self, r: &SwitchReport) {
        if self.json {
            self.reply(true, json::Switched { switch: r });
        }
        if let Some(what) = &r.recovered {
            self.note(&format!("a switch a runner left was {what} first"));
        }
        if r.pause_ms > 0 {
            self.note(&format!(
                "traffic goes to the {}; writes were held for {} ms (drain {} ms{})",
                r.live.name(),
                r.pause_ms,
                r.drain_ms,
                r.check_ms
                    .map(|c| format!(", final comparison {c} ms"))
                    .unwrap_or_default()
            ));
        } else {
            self.note(&format!("traffic goes to the {}", r.live.name()));
        }
        if !r.replicating_back {
            eprintln!(
                "warning: replication back to the {} has not started yet; its writes wait in the replication slot, \
                 and `waymark cutover status` shows when it runs",
                r.live.other().name()
            );
        }
    }

    pub(crate) fn cutover_completed(&self, live: Side) {
        if self.json {
            self.reply(true, json::CutoverCompleted { live });
        }
        self.note(&format!(
            "replication removed both ways; the {} stays live",
            live.name()
        ));
    }

    pub(crate) fn backup_restored(&self, r: &RestoreReport, url: &str) {
        if self.json {
            self.reply(
                true,
                json::BackupRestored {
                    id: &r.id,
                    to: url,
                    tables: r.tables,
                    rows: r.rows,
                    verify: r.verify.name(),
                    duration_ms: r.duration.as_millis(),
                },
            );
        }
        let proof = match r.verify {
            waymark_backup::Verify::Rows => "every table's digest matches the backup",
            waymark_backup::Verify::Count => {
                "the database took every chunk's rows, counted (none read back: --verify rows does)"
            }
            waymark_backup::Verify::Pages => {
                "every page matches the backup's SHA-256 and SQLite's integrity check passed"
            }
            waymark_backup::Verify::PagesQuick => {
                "every page matches the backup's SHA-256 and SQLite's quick check passed (--verify rows runs the full integrity check)"
            }
        };
        self.note(&format!(
            "restored {} into {url}: {} tables, {} rows, {proof} ({} ms)",
            r.id,
            r.tables,
            r.rows,
            r.duration.as_millis()
        ));
    }
}

/// What a backup set holds: `rows` (tables' rows in chunks) or `pages` (a
/// copy of a SQLite file).
fn set_kind(m: &Manifest) -> &'static str {
    match m.pages {
        Some(_) => "pages",
        None => "rows",
    }
}

/// A finding as text: what, where, the lock and the fix.
fn finding_text(file: &std::path::Path, f: &Finding) -> String {
    let head = match &f.allowed {
        Some(reason) => format!(
            "allowed[{}]: {}:{}: {} (allowed: {reason})",
            f.rule,
            file.display(),
            f.line,
            f.message
        ),
        None => format!(
            "{}[{}]: {}:{}: {}",
            f.severity.as_str(),
            f.rule,
            file.display(),
            f.line,
            f.message
        ),
    };
    format!("{head}\n  lock: {}\n  fix:  {}", f.lock, f.fix)
}

/// How long ago an RFC 3339 time was.
fn age(created: &str, now: chrono::DateTime<chrono::Utc>) -> String {
    let Ok(then) = chrono::DateTime::parse_from_rfc3339(created) else {
        return created.to_owned();
    };
    match (now - then.to_utc()).num_seconds().max(0) {
        s if s < 120 => format!("{s} s"),
        s if s < 7200 => format!("{} min", s / 60),
        s if s < 172_800 => format!("{} h", s / 3600),
        s => format!("{} days", s / 86_400),
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::ProgressLines;

    #[test]
    fn progress_lines_say_the_rate_and_the_time_left_at_most_every_5_s() {
        let mut lines = ProgressLines::default();
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        assert_eq!(
            lines.line("1_reshape", 0, Some(1000), at(0)).unwrap(),
            "1_reshape: 0/1000 (0%)"
        );
        assert_eq!(lines.line("1_reshape", 50, Some(1000), at(2)), None);
        assert_eq!(
            lines.line("1_reshape", 100, Some(1000), at(10)).unwrap(),
            "1_reshape: 100/1000 (10%, 10/s, eta 1m30s)"
        );
        // The last is always said, without an eta.
        assert_eq!(
            lines.line("1_reshape", 1000, Some(1000), at(11)).unwrap(),
            "1_reshape: 1000/1000 (100%)"
        );
        // Another step starts its own count and clock.
        assert_eq!(
            lines.line("2_more", 10, Some(20), at(20)).unwrap(),
            "2_more: 10/20 (50%)"
        );
        assert_eq!(
            lines.line("2_more", 15, Some(20), at(25)).unwrap(),
            "2_more: 15/20 (75%, 1/s, eta 5s)"
        );
        assert_eq!(lines.line("3_open", 7, None, at(40)).unwrap(), "3_open: 7");
    }
}
