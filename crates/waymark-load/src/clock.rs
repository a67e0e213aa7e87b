//! The rehearsal's one clock: when the load started, and which phase it
//! is in. The controller enters phases (baseline, each migration, after)
//! as the executor's events arrive; once the load stops, each transaction
//! is put in the phase it was scheduled in (`record.rs`).

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A phase as the controller entered it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Phase {
    /// `baseline`, a migration's label, `after`.
    pub name: String,
    /// What kind of phase, for the verdict.
    pub kind: PhaseKind,
    /// When it began, from the clock's start.
    pub start: Duration,
}

/// What a phase measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PhaseKind {
    /// The load alone: what the others are compared with.
    Baseline,
    /// A migration running.
    Migration,
    /// Between migrations, or after the last one.
    Between,
}

/// Shared by the controller, the clients and the sampler.
#[derive(Debug)]
pub struct Clock {
    start: Instant,
    phases: Mutex<Vec<Phase>>,
}

impl Clock {
    /// A clock started now, in its baseline phase.
    pub fn start() -> Clock {
        Clock {
            start: Instant::now(),
            phases: Mutex::new(vec![Phase {
                name: "baseline".to_owned(),
                kind: PhaseKind::Baseline,
                start: Duration::ZERO,
            }]),
        }
    }

    /// Time since the start.
    pub fn elapsed(&self) -> Duration {
        self.start.elapsed()
    }

    /// When it started.
    pub fn started(&self) -> Instant {
        self.start
    }

    /// The instant of an offset from the start.
    pub(crate) fn at(&self, offset: Duration) -> Instant {
        self.start + offset
    }

    /// Ends the current phase and begins `name`; returns its index.
    pub fn enter(&self, name: impl Into<String>, kind: PhaseKind) -> usize {
        let mut phases = self.phases.lock().unwrap_or_else(|e| e.into_inner());
        phases.push(Phase {
            name: name.into(),
            kind,
            start: self.elapsed(),
        });
        phases.len() - 1
    }

    /// Every phase entered, in order.
    pub fn phases(&self) -> Vec<Phase> {
        self.phases.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases_follow_one_another_from_the_baseline() {
        let clock = Clock::start();
        assert_eq!(clock.enter("1_index", PhaseKind::Migration), 1);
        assert_eq!(clock.enter("after", PhaseKind::Between), 2);
        let phases = clock.phases();
        let names: Vec<&str> = phases.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["baseline", "1_index", "after"]);
        assert!(phases.windows(2).all(|w| w[0].start <= w[1].start));
        assert_eq!(phases[1].kind, PhaseKind::Migration);
    }
}
