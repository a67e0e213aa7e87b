//! Everything the command prints. Data (tables, JSON) goes to stdout;
//! progress, logs and errors go to stderr.

use std::io::IsTerminal;
use std::path::PathBuf;

use comfy_table::{Table, presets};
use serde::Serialize;
use serde_json::json;
use waymark_core::{Applied, Entry, Error, Event, Migration, Plan, RepairAction, VerifyReport};

/// `println!` that ignores a closed stdout (`waymark status | head`) instead
/// of panicking.
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout().lock(), $($arg)*);
    }};
}

pub(crate) struct Output {
    json: bool,
    quiet: bool,
}

/// One migration in JSON output.
#[derive(Serialize)]
struct EntryJson<'a> {
    version: &'a str,
    name: &'a str,
    state: &'a str,
    file: Option<String>,
    checksum: Option<&'a str>,
    applied_checksum: Option<&'a str>,
    applied_at: Option<&'a str>,
    duration_ms: Option<i64>,
    applied_by: Option<&'a str>,
    hostname: Option<&'a str>,
    error: Option<&'a str>,
    reversible: Option<bool>,
}

impl<'a> From<&'a Entry> for EntryJson<'a> {
    fn from(e: &'a Entry) -> Self {
        EntryJson {
            version: e.version.as_str(),
            name: &e.name,
            state: e.state.as_str(),
            file: e.migration.as_ref().map(|m| m.up.path.display().to_string()),
            checksum: e.migration.as_ref().map(|m| m.checksum.as_str()),
            applied_checksum: e.row.as_ref().map(|r| r.checksum.as_str()),
            applied_at: e.row.as_ref().map(|r| r.applied_at.as_str()),
            duration_ms: e.row.as_ref().map(|r| r.duration_ms),
            applied_by: e.row.as_ref().map(|r| r.applied_by.as_str()),
            hostname: e.row.as_ref().map(|r| r.hostname.as_str()),
            error: e.row.as_ref().and_then(|r| r.error.as_deref()),
            reversible: e.migration.as_ref().map(|m| m.down.is_some()),
        }
    }
}

#[derive(Serialize)]
struct AppliedJson<'a> {
    version: &'a str,
    name: &'a str,
    duration_ms: u128,
    transactional: bool,
}

fn applied_json(done: &[Applied]) -> Vec<AppliedJson<'_>> {
    done.iter()
        .map(|a| AppliedJson {
            version: a.version.as_str(),
            name: &a.name,
            duration_ms: a.duration.as_millis(),
            transactional: a.transactional,
        })
        .collect()
}

impl Output {
    pub(crate) fn new(json: bool, quiet: bool) -> Self {
        Output { json, quiet }
    }

    fn print_json(&self, value: &serde_json::Value) {
        outln!(
            "{}",
            serde_json::to_string_pretty(value).expect("JSON values serialise")
        );
    }

    fn note(&self, line: &str) {
        if !self.quiet {
            eprintln!("{line}");
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
        eprintln!("error: {error:#}");
        if let Some(hint) = hint {
            eprintln!("hint: {hint}");
        }
        if self.json {
            self.print_json(&json!({ "ok": false, "error": { "message": format!("{error:#}"), "hint": hint } }));
        }
    }

    pub(crate) fn progress(&self, event: &Event<'_>) {
        match event {
            Event::Started { label, down } => {
                tracing::info!("{} {label}", if *down { "reverting" } else { "applying" });
            }
            Event::Finished { label, down, duration } => {
                self.note(&format!(
                    "{} {label} ({} ms)",
                    if *down { "reverted" } else { "applied" },
                    duration.as_millis()
                ));
            }
            Event::Skipped { label, down } => self.note(&format!(
                "skipped {label}: another runner {} it first",
                if *down { "reverted" } else { "applied" }
            )),
        }
    }

    pub(crate) fn status(&self, entries: &[Entry]) {
        if self.json {
            let list: Vec<EntryJson<'_>> = entries.iter().map(EntryJson::from).collect();
            self.print_json(&json!({ "ok": true, "migrations": list }));
            return;
        }
        if entries.is_empty() {
            self.note("no migrations");
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
    }

    pub(crate) fn plan(&self, plan: &Plan, down: bool) {
        if self.json {
            let list: Vec<serde_json::Value> = plan
                .migrations
                .iter()
                .map(|p| {
                    json!({
                        "version": p.migration.version.as_str(),
                        "name": p.migration.name,
                        "file": p.file.display().to_string(),
                        "transactional": p.transactional,
                        "step": p.step,
                        "actions": p.actions.iter().map(|a| json!({ "line": a.line, "text": a.text })).collect::<Vec<_>>(),
                    })
                })
                .collect();
            self.print_json(&json!({
                "ok": true,
                "direction": if down { "down" } else { "up" },
                "single_transaction": plan.single_transaction,
                "migrations": list,
            }));
            return;
        }
        if plan.migrations.is_empty() {
            outln!("{}", if down { "nothing to revert" } else { "nothing to apply" });
            return;
        }
        for p in &plan.migrations {
            let how = if plan.single_transaction {
                "in the batch's single transaction"
            } else if p.transactional {
                "in a transaction"
            } else {
                "outside a transaction"
            };
            outln!(
                "{} {} ({}, {how}, step {})",
                if down { "revert" } else { "apply" },
                p.migration.label(),
                p.file.display(),
                p.step
            );
            for a in &p.actions {
                let text = a.text.replace('\n', "\n      ");
                outln!("  {:>4}  {text}", a.line);
            }
        }
    }

    pub(crate) fn applied(&self, command: &str, done: &[Applied], failure: Option<(&Error, Option<String>)>) {
        let verb = if command == "down" { "reverted" } else { "applied" };
        if let Some((error, hint)) = &failure {
            eprintln!("error: {error}");
            if let Some(hint) = hint {
                eprintln!("hint: {hint}");
            }
        } else if done.is_empty() {
            self.note(&format!(
                "nothing to do: no migration {}",
                if command == "down" { "to revert" } else { "pending" }
            ));
        } else {
            self.note(&format!("{verb} {} migration(s)", done.len()));
        }
        if self.json {
            let error = failure.map(|(e, hint)| json!({ "message": e.to_string(), "hint": hint }));
            self.print_json(&json!({
                "ok": error.is_none(),
                "command": command,
                "done": applied_json(done),
                "error": error,
            }));
        }
    }

    pub(crate) fn verify(&self, report: &VerifyReport) {
        if self.json {
            let list: Vec<EntryJson<'_>> = report.differences.iter().map(EntryJson::from).collect();
            self.print_json(
                &json!({ "ok": report.differences.is_empty(), "checked": report.checked, "differences": list }),
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
            let list: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
            self.print_json(&json!({ "ok": true, "created": list }));
        } else {
            for p in paths {
                outln!("{}", p.display());
            }
        }
    }

    pub(crate) fn baseline(&self, adopted: &[Migration]) {
        if self.json {
            let list: Vec<serde_json::Value> = adopted
                .iter()
                .map(|m| json!({ "version": m.version.as_str(), "name": m.name }))
                .collect();
            self.print_json(&json!({ "ok": true, "baselined": list }));
        } else {
            for m in adopted {
                outln!("{}", m.label());
            }
            self.note(&format!("recorded {} migration(s) as baseline", adopted.len()));
        }
    }

    pub(crate) fn repair(&self, actions: &[RepairAction]) {
        if self.json {
            let list: Vec<serde_json::Value> = actions
                .iter()
                .map(|a| json!({ "action": a.action, "migration": a.label, "detail": a.detail }))
                .collect();
            self.print_json(&json!({ "ok": true, "repaired": list }));
            return;
        }
        for a in actions {
            outln!("{} {}: {}", a.action, a.label, a.detail);
        }
        if actions.is_empty() {
            self.note("nothing to repair");
        }
    }
}
