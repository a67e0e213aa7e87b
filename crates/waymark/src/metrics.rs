//! `fleet up --metrics-file FILE`: the rollout as Prometheus text, for the
//! node exporter's textfile collector (or anything that reads the format).
//! The file is written whole to a temporary file beside it and renamed
//! over it, so a scrape never reads half a file; at most once a second as
//! targets change, and once more at the end.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use waymark_fleet::{Inventory, Rollout, Shard, Update};

/// Every state a target can be shown in, so each has a line (0 or 1), as
/// a state set is written.
const STATES: [&str; 9] = [
    "pending",
    "running",
    "applied",
    "reverted",
    "up-to-date",
    "failed",
    "skipped",
    "unreachable",
    "locked",
];

const EVERY: Duration = Duration::from_secs(1);

#[derive(Debug)]
struct Seen {
    wave: String,
    state: &'static str,
    seconds: f64,
    applied: usize,
}

/// The rollout as it stands, and where to write it.
#[derive(Debug)]
pub(crate) struct Metrics {
    path: PathBuf,
    fleet: String,
    targets: BTreeMap<String, Seen>,
    halted: bool,
    written: Option<Instant>,
}

impl Metrics {
    /// Every target of `shard` pending, written at once: a path that
    /// cannot be written is refused before anything runs.
    pub(crate) fn start(path: &Path, fleet: &Inventory, shard: Option<Shard>) -> Result<Metrics, waymark_core::Error> {
        let targets = fleet
            .taken(shard)
            .map(|(wave, t)| {
                let seen = Seen {
                    wave: wave.name.clone(),
                    state: "pending",
                    seconds: 0.0,
                    applied: 0,
                };
                (t.name.clone(), seen)
            })
            .collect();
        let mut metrics = Metrics {
            path: path.to_owned(),
            fleet: fleet.path.display().to_string(),
            targets,
            halted: false,
            written: None,
        };
        metrics
            .write()
            .map_err(|e| waymark_core::Error::Usage(format!("--metrics-file {}: {e}", path.display())))?;
        Ok(metrics)
    }

    /// Takes in a rollout's update; writes when a second has passed since
    /// the last write.
    pub(crate) fn update(&mut self, update: &Update<'_>) {
        match update {
            Update::Started { target, .. } => {
                if let Some(seen) = self.targets.get_mut(&target.name) {
                    seen.state = "running";
                }
            }
            Update::Finished { report, .. } => {
                if let Some(seen) = self.targets.get_mut(&report.name) {
                    seen.state = report.outcome.as_str();
                    seen.seconds = report.duration.as_secs_f64();
                    seen.applied = report.outcome.migrations().len();
                }
            }
            Update::WaveStarted { .. } | Update::Gate { .. } => {}
        }
        if self.written.is_none_or(|at| at.elapsed() >= EVERY) {
            self.write_or_warn();
        }
    }

    /// The last write, once the rollout has ended.
    pub(crate) fn finish(&mut self, rollout: &Rollout) {
        self.halted = rollout.halted.is_some();
        self.write_or_warn();
    }

    fn write_or_warn(&mut self) {
        if let Err(e) = self.write() {
            tracing::warn!("could not write the metrics file {}: {e}", self.path.display());
        }
    }

    fn write(&mut self) -> std::io::Result<()> {
        let text = self.render();
        // The collector reads only `*.prom`; a name of another ending
        // beside it is never read half-written.
        let tmp = self.path.with_extension(format!("prom.{}.tmp", std::process::id()));
        std::fs::write(&tmp, text)?;
        std::fs::rename(&tmp, &self.path)?;
        self.written = Some(Instant::now());
        Ok(())
    }

    fn render(&self) -> String {
        let fleet = escape(&self.fleet);
        let mut out = String::new();
        let name = "waymark_fleet_target_state";
        let _ = writeln!(
            out,
            "# HELP {name} Where each target of the rollout stands: 1 for its state, 0 for the others.\n# TYPE \
             {name} gauge"
        );
        for (target, seen) in &self.targets {
            for state in STATES {
                let _ = writeln!(
                    out,
                    "{name}{{fleet=\"{fleet}\",target=\"{}\",wave=\"{}\",state=\"{state}\"}} {}",
                    escape(target),
                    escape(&seen.wave),
                    u8::from(seen.state == state)
                );
            }
        }
        let mut per_target = |name: &str, help: &str, value: &dyn Fn(&Seen) -> String| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
            for (target, seen) in &self.targets {
                let _ = writeln!(
                    out,
                    "{name}{{fleet=\"{fleet}\",target=\"{}\",wave=\"{}\"}} {}",
                    escape(target),
                    escape(&seen.wave),
                    value(seen)
                );
            }
        };
        per_target(
            "waymark_fleet_target_duration_seconds",
            "How long the target's run took, once it ended.",
            &|s| format!("{:.3}", s.seconds),
        );
        per_target(
            "waymark_fleet_target_migrations_applied",
            "Migrations the rollout applied (under `fleet down`, reverted) on the target.",
            &|s| s.applied.to_string(),
        );
        let _ = writeln!(
            out,
            "# HELP waymark_fleet_halted 1 when the rollout halted (a wave over its budget, a failed gate).\n# TYPE \
             waymark_fleet_halted gauge\nwaymark_fleet_halted{{fleet=\"{fleet}\"}} {}",
            u8::from(self.halted)
        );
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs_f64();
        let _ = writeln!(
            out,
            "# HELP waymark_fleet_last_update_timestamp_seconds When this file was written.\n# TYPE \
             waymark_fleet_last_update_timestamp_seconds gauge\nwaymark_fleet_last_update_timestamp_seconds{{fleet=\"\
             {fleet}\"}} {now:.3}"
        );
        out
    }
}

/// A label value as the text format wants it.
fn escape(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
