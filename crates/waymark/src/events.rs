//! `--events FILE`: what happens, one JSON line each (`json::EventLine`),
//! for every command. Lines are appended and each is flushed as it is
//! written, so a `tail -f` sees it at once and a killed run leaves every
//! line it wrote; a resumed rollout adds to the same file.

use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex};

use waymark_core::{Event, LockRetry, OnLockRetry, OnStatement, StatementRun};

use crate::json::{EventKind, EventLine, ms};

/// An open events file, shared by everything that reports.
#[derive(Debug, Clone)]
pub(crate) struct EventLog {
    file: Arc<Mutex<std::fs::File>>,
}

impl EventLog {
    pub(crate) fn open(path: &Path) -> Result<EventLog, waymark_core::Error> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| waymark_core::Error::Usage(format!("--events {}: {e}", path.display())))?;
        Ok(EventLog {
            file: Arc::new(Mutex::new(file)),
        })
    }

    /// Writes one line. A line that cannot be written is logged, not
    /// fatal: the events file watches the work and must not stop it.
    pub(crate) fn write(&self, target: Option<&str>, what: EventKind<'_>) {
        let line = EventLine {
            ts: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            target,
            what,
        };
        let mut text = serde_json::to_string(&line).expect("event lines serialize");
        text.push('\n');
        // One write per line: appends of a line each never interleave.
        if let Err(e) = self.file.lock().unwrap().write_all(text.as_bytes()) {
            tracing::warn!("could not write to the events file: {e}");
        }
    }

    /// An engine's event, on `target`.
    pub(crate) fn engine(&self, target: &str, event: &Event<'_>) {
        let what = match event {
            Event::Started { label, down, .. } => EventKind::MigrationStarted {
                migration: label,
                direction: if *down { "down" } else { "up" },
            },
            Event::Finished {
                label,
                done,
                duration,
                warnings,
                ..
            } => EventKind::MigrationFinished {
                migration: label,
                done,
                duration_ms: ms(*duration),
                warnings,
            },
            Event::Skipped { label, .. } => EventKind::MigrationSkipped { migration: label },
            Event::BackedUp { id, bytes, .. } => EventKind::BackedUp { id, bytes: *bytes },
            // Findings are the plan's, printed before anything runs.
            Event::Finding { .. } => return,
        };
        self.write(Some(target), what);
    }

    /// The statement listener for an engine on `target`.
    pub(crate) fn statements(&self, target: &str) -> OnStatement {
        let (log, target) = (self.clone(), target.to_owned());
        Arc::new(move |run: &StatementRun<'_>| {
            log.write(
                Some(&target),
                EventKind::Statement {
                    migration: run.migration,
                    sql: run.sql,
                    duration_ms: ms(run.duration),
                    error: run.error.as_deref(),
                    locks: run
                        .locks
                        .iter()
                        .map(|l| format!("{} on {}", l.mode, l.relation))
                        .collect(),
                },
            );
        })
    }

    /// The lock-retry listener for an engine on `target`, telling `also`
    /// too.
    pub(crate) fn lock_retries(&self, target: &str, also: Option<OnLockRetry>) -> OnLockRetry {
        let (log, target) = (self.clone(), target.to_owned());
        Arc::new(move |r: &LockRetry| {
            log.write(
                Some(&target),
                EventKind::LockRetry {
                    migration: &r.label,
                    attempt: r.attempt,
                    budget: r.budget,
                    wait: &r.wait,
                    pause_ms: ms(r.pause),
                },
            );
            if let Some(also) = &also {
                also(r);
            }
        })
    }
}
