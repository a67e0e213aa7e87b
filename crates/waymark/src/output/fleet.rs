//! `waymark fleet`: a line per target as the rollout goes (stderr), then
//! the matrix or the report, wave by wave (stdout).

use waymark_fleet::{Outcome, Update};

use super::Output;
use crate::json::{EventKind, FleetPlan, FleetRollout, FleetStatus};

/// A finished target's line: what was applied, or what went wrong.
fn finished_line(wave: &str, report: &waymark_fleet::TargetReport, again: bool) -> String {
    let took = format!("{:.2} s", report.duration.as_secs_f64());
    let what = match &report.outcome {
        Outcome::UpToDate => "up to date".to_owned(),
        Outcome::Applied(labels) => format!("applied {}", labels.join(", ")),
        Outcome::Reverted(labels) => format!("reverted {}", labels.join(", ")),
        Outcome::Locked(_) if again => "locked by another runner; trying again after the rest of the wave".to_owned(),
        Outcome::Failed { message, .. } => format!("FAILED: {message}"),
        other @ (Outcome::Skipped(why) | Outcome::Unreachable(why) | Outcome::Locked(why)) => {
            format!("{}: {why}", other.as_str().to_uppercase())
        }
    };
    format!("  {wave}: {} {what} ({took})", report.name)
}

fn totals(totals: &std::collections::BTreeMap<&'static str, usize>) -> String {
    totals
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(state, n)| format!("{n} {state}"))
        .collect::<Vec<_>>()
        .join(", ")
}

impl Output {
    /// One line per event of a rollout, on stderr. Each finished target
    /// says how it went, so a log of the run reads as its record.
    /// `view` is the terminal's, which then draws instead of the lines.
    pub(crate) fn fleet_update(&self, update: &Update<'_>, view: Option<&mut FleetView>) {
        if let Some(log) = &self.events {
            log_update(log, update);
        }
        if let Some(view) = view {
            view.update(update);
            return;
        }
        if self.quiet {
            return;
        }
        match update {
            Update::WaveStarted { wave, targets } => eprintln!("{wave}: {targets} target(s)"),
            Update::Started { .. } => {}
            Update::Finished { wave, report, again } => eprintln!("{}", finished_line(wave, report, *again)),
            Update::Gate { wave } => eprintln!("{wave}: gate"),
        }
    }

    pub(crate) fn fleet_rollout(&self, r: &FleetRollout, ok: bool) {
        if self.json {
            self.reply(ok, r);
            return;
        }
        let mut table = self.table(&["wave", "target", "outcome", "migrations", "time"]);
        for w in &r.waves {
            for t in &w.targets {
                table.add_row(vec![
                    w.name.clone(),
                    t.name.clone(),
                    t.outcome.to_owned(),
                    t.applied.join(", "),
                    format!("{:.2} s", t.duration_ms / 1000.0),
                ]);
            }
        }
        outln!("{table}");
        for w in &r.waves {
            let failures: Vec<&crate::json::FleetTarget> = w.targets.iter().filter(|t| t.error.is_some()).collect();
            outln!(
                "wave {}: {} ({} ran, {} failed of {} allowed, {} not started)",
                w.name,
                w.state,
                w.targets.len(),
                failures.len(),
                w.max_failures,
                w.not_started.len()
            );
            for t in failures {
                outln!("  {} {}: {}", t.outcome, t.name, t.error.as_deref().unwrap_or_default());
                if let Some(hint) = &t.hint {
                    outln!("    hint: {hint}");
                }
            }
            if let Some(gate) = &w.gate {
                match &gate.message {
                    Some(message) => outln!("  gate failed: {message}"),
                    None => outln!("  gate passed"),
                }
            }
        }
        outln!("totals: {}", totals(&r.totals));
        match &r.halted {
            Some(why) => outln!("halted: {why}; fix it and run the same command again to resume"),
            None => {
                let left: Vec<&str> = r
                    .waves
                    .iter()
                    .flat_map(|w| &w.targets)
                    .filter(|t| t.error.is_some())
                    .map(|t| t.name.as_str())
                    .collect();
                if left.is_empty() {
                    outln!("done in {:.1} s", r.duration_ms / 1000.0);
                } else {
                    outln!(
                        "every wave ran in {:.1} s, within its failure budget; not up to date: {}",
                        r.duration_ms / 1000.0,
                        left.join(", ")
                    );
                }
            }
        }
    }

    pub(crate) fn fleet_plan(&self, p: &FleetPlan, ok: bool) {
        if self.json {
            self.reply(ok, p);
            return;
        }
        for g in &p.groups {
            let shown: Vec<&str> = g.targets.iter().take(10).map(String::as_str).collect();
            let more = g.targets.len().saturating_sub(shown.len());
            let more = if more > 0 {
                format!(" and {more} more")
            } else {
                String::new()
            };
            let what = if g.migrations.is_empty() {
                g.state.to_owned()
            } else {
                format!("{} {}", g.state, g.migrations.join(", "))
            };
            outln!("{} target(s) {what}: {}{more}", g.targets.len(), shown.join(", "));
            if let Some(on) = &g.planned_on {
                outln!("  planned on {on}:");
            }
            for m in &g.plan {
                outln!("    {} ({})", m.migration, m.strategy);
                for f in &m.findings {
                    outln!("      {f}");
                }
            }
            if let Some(e) = &g.error {
                outln!("  {e}");
            }
        }
    }

    pub(crate) fn fleet_status(&self, s: &FleetStatus, ok: bool) {
        if self.json {
            self.reply(ok, s);
            return;
        }
        let mut table = self.table(&["target", "wave", "state", "detail"]);
        for t in &s.targets {
            let detail = if t.migrations.is_empty() {
                t.detail.clone()
            } else {
                t.migrations.join(", ")
            };
            table.add_row(vec![t.name.clone(), t.wave.clone(), t.state.to_owned(), detail]);
        }
        outln!("{table}");
        outln!("totals: {}", totals(&s.totals));
    }
}

/// A rollout's update as an event line.
fn log_update(log: &crate::events::EventLog, update: &Update<'_>) {
    match update {
        Update::WaveStarted { wave, targets } => log.write(
            None,
            EventKind::WaveStarted {
                wave,
                targets: *targets,
            },
        ),
        Update::Started { wave, target } => log.write(Some(&target.name), EventKind::TargetStarted { wave }),
        Update::Finished { wave, report, again } => {
            log.write(
                Some(&report.name),
                EventKind::TargetFinished {
                    wave,
                    outcome: report.outcome.as_str(),
                    again: *again,
                    error: report.outcome.error(),
                    duration_ms: crate::json::ms(report.duration),
                },
            );
        }
        Update::Gate { wave } => log.write(None, EventKind::GateStarted { wave }),
    }
}

/// The rollout on a terminal: a bar over every target with the time left
/// at the pace so far, a line per target in flight with its time, and each
/// finished target's line printed above them, so the scrollback keeps the
/// record that a log would.
pub(crate) struct FleetView {
    multi: indicatif::MultiProgress,
    total: indicatif::ProgressBar,
    running: std::collections::HashMap<String, indicatif::ProgressBar>,
}

impl FleetView {
    /// On a terminal, unless the output is JSON or quiet.
    pub(crate) fn new(out: &Output, targets: u64) -> Option<FleetView> {
        use std::io::IsTerminal;
        if out.json || out.quiet || !std::io::stderr().is_terminal() {
            return None;
        }
        let multi = indicatif::MultiProgress::with_draw_target(indicatif::ProgressDrawTarget::stderr_with_hz(8));
        let total = multi.add(indicatif::ProgressBar::new(targets));
        total.set_style(
            indicatif::ProgressStyle::with_template(
                "{msg} [{bar:30}] {pos}/{len} targets, {elapsed} so far, eta {eta}",
            )
            .expect("the template is valid")
            .progress_chars("=> "),
        );
        Some(FleetView {
            multi,
            total,
            running: std::collections::HashMap::new(),
        })
    }

    pub(crate) fn update(&mut self, update: &Update<'_>) {
        match update {
            Update::WaveStarted { wave, .. } => self.total.set_message(format!("wave {wave}")),
            Update::Started { wave, target } => {
                let line = self.multi.add(indicatif::ProgressBar::new_spinner());
                line.set_style(
                    indicatif::ProgressStyle::with_template("  {spinner} {msg} {elapsed}")
                        .expect("the template is valid"),
                );
                line.set_message(format!("{wave}: {} running", target.name));
                line.enable_steady_tick(std::time::Duration::from_millis(250));
                self.running.insert(target.name.clone(), line);
            }
            Update::Finished { wave, report, again } => {
                if let Some(line) = self.running.remove(&report.name) {
                    line.finish_and_clear();
                    self.multi.remove(&line);
                }
                let _ = self.multi.println(finished_line(wave, report, *again));
                if !again {
                    self.total.inc(1);
                }
            }
            Update::Gate { wave } => self.total.set_message(format!("wave {wave}: gate")),
        }
    }

    /// Clears the bar, so the report follows the finished lines.
    pub(crate) fn finish(self) {
        self.total.finish_and_clear();
    }
}
