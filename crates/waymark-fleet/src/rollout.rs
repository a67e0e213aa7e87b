//! The rollout: waves in order, a few targets at a time within a wave,
//! halting when a wave has more failures than it allows or its gate fails.

use std::future::Future;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;

use crate::gate::GateReport;
use crate::inventory::{Inventory, Target, Wave};
use crate::shard::Shard;

/// What one target's run does.
pub trait Runner {
    /// Brings `target` up to date. Unless `patient`, a migration lock held
    /// by another runner is answered at once with [`Outcome::Locked`], so
    /// that this runner can do other targets meanwhile and come back.
    fn run(&self, target: &Target, patient: bool) -> impl Future<Output = Outcome>;
}

/// How one target's run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Nothing was pending, or (`fleet down`) nothing above the version
    /// was applied; or another runner did it first.
    UpToDate,
    /// These migrations were applied, in order.
    Applied(Vec<String>),
    /// These migrations were reverted, newest first (`fleet down`).
    Reverted(Vec<String>),
    /// Its history needs a person first (a failed, modified or missing
    /// migration); nothing was run.
    Skipped(String),
    /// A migration failed. `applied` were applied before it.
    Failed {
        /// The error.
        message: String,
        /// What to do about it.
        hint: Option<String>,
        /// Applied before the failure.
        applied: Vec<String>,
    },
    /// It could not be reached within the connect timeout.
    Unreachable(String),
    /// Another runner holds its migration lock.
    Locked(String),
}

impl Outcome {
    /// Whether it counts against the wave's budget.
    pub fn is_failure(&self) -> bool {
        !matches!(self, Outcome::UpToDate | Outcome::Applied(_) | Outcome::Reverted(_))
    }

    /// What went wrong, when something did.
    pub fn error(&self) -> Option<&str> {
        match self {
            Outcome::Failed { message, .. }
            | Outcome::Skipped(message)
            | Outcome::Unreachable(message)
            | Outcome::Locked(message) => Some(message),
            Outcome::UpToDate | Outcome::Applied(_) | Outcome::Reverted(_) => None,
        }
    }

    /// The migrations it applied or reverted, in order (before the
    /// failure, when it failed).
    pub fn migrations(&self) -> &[String] {
        match self {
            Outcome::Applied(labels) | Outcome::Reverted(labels) | Outcome::Failed { applied: labels, .. } => labels,
            _ => &[],
        }
    }

    /// The word reports use.
    pub fn as_str(&self) -> &'static str {
        match self {
            Outcome::UpToDate => "up-to-date",
            Outcome::Applied(_) => "applied",
            Outcome::Reverted(_) => "reverted",
            Outcome::Skipped(_) => "skipped",
            Outcome::Failed { .. } => "failed",
            Outcome::Unreachable(_) => "unreachable",
            Outcome::Locked(_) => "locked",
        }
    }
}

/// One target's part in a wave.
#[derive(Debug, Clone)]
pub struct TargetReport {
    /// The target's name.
    pub name: String,
    /// How it ended.
    pub outcome: Outcome,
    /// How long its run took (both tries, when it was locked at first).
    pub duration: Duration,
}

/// Where a wave got to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaveState {
    /// Every target ran and the wave was within its budget, and its gate
    /// (if any ran) passed.
    Done,
    /// More failures than its budget: the rollout stopped here.
    Failed,
    /// Its targets were within budget but its gate failed.
    GateFailed,
    /// Never started, because an earlier wave halted the rollout.
    NotStarted,
}

impl WaveState {
    /// The word reports use.
    pub fn as_str(self) -> &'static str {
        match self {
            WaveState::Done => "done",
            WaveState::Failed => "failed",
            WaveState::GateFailed => "gate-failed",
            WaveState::NotStarted => "not-started",
        }
    }
}

/// One wave of the rollout.
#[derive(Debug, Clone)]
pub struct WaveReport {
    /// The wave's name.
    pub name: String,
    /// Where it got to.
    pub state: WaveState,
    /// The targets that ran, in the order they finished.
    pub targets: Vec<TargetReport>,
    /// Its targets (in this shard) that were not started: the budget was
    /// spent, or the wave never began.
    pub not_started: Vec<String>,
    /// Failures allowed.
    pub allowed: usize,
    /// Its gate, if it ran.
    pub gate: Option<GateReport>,
}

impl WaveReport {
    /// How many of its targets failed.
    pub fn failures(&self) -> usize {
        self.targets.iter().filter(|t| t.outcome.is_failure()).count()
    }
}

/// Why a rollout stopped before its last wave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Halt {
    /// The wave had more failures than it allows.
    Failures {
        /// The wave.
        wave: String,
        /// Its failures.
        failures: usize,
        /// Its budget.
        allowed: usize,
    },
    /// The wave's gate failed.
    Gate {
        /// The wave.
        wave: String,
        /// Why.
        message: String,
    },
}

impl std::fmt::Display for Halt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Halt::Failures {
                wave,
                failures,
                allowed,
            } => write!(f, "wave {wave:?} had {failures} failed target(s) and allows {allowed}"),
            Halt::Gate { wave, message } => write!(f, "the gate after wave {wave:?} failed: {message}"),
        }
    }
}

/// A whole rollout.
#[derive(Debug, Clone)]
pub struct Rollout {
    /// Every wave, including those never started.
    pub waves: Vec<WaveReport>,
    /// Why it stopped early, if it did.
    pub halted: Option<Halt>,
    /// How long it took.
    pub duration: Duration,
}

/// What a rollout tells its watcher as it goes.
#[derive(Debug)]
pub enum Update<'a> {
    /// A wave begins with this many targets.
    WaveStarted {
        /// The wave.
        wave: &'a str,
        /// Its targets in this shard.
        targets: usize,
    },
    /// A target's run begins.
    Started {
        /// The wave.
        wave: &'a str,
        /// The target.
        target: &'a Target,
    },
    /// A target's run ended.
    Finished {
        /// The wave.
        wave: &'a str,
        /// How it went.
        report: &'a TargetReport,
        /// Whether it will be tried again at the end of the wave (it was
        /// locked by another runner).
        again: bool,
    },
    /// A wave's gate begins.
    Gate {
        /// The wave.
        wave: &'a str,
    },
}

/// Runs the waves of `fleet` (the targets `shard` takes, or all) with
/// `runner`, telling `watch` as it goes.
pub async fn roll_out<R: Runner>(
    fleet: &Inventory,
    shard: Option<Shard>,
    runner: &R,
    watch: &mut dyn FnMut(Update<'_>),
) -> Rollout {
    let started = Instant::now();
    let mut waves = Vec::with_capacity(fleet.waves.len());
    let mut halted = None;
    for (n, wave) in fleet.waves.iter().enumerate() {
        let mine: Vec<&Target> = fleet.members(wave, shard).collect();
        if halted.is_some() {
            waves.push(WaveReport {
                name: wave.name.clone(),
                state: WaveState::NotStarted,
                targets: Vec::new(),
                not_started: mine.iter().map(|t| t.name.clone()).collect(),
                allowed: wave.max_failures.allowed(mine.len()),
                gate: None,
            });
            continue;
        }
        let mut report = run_wave(wave, &mine, runner, watch).await;
        waymark_core::crash_point("fleet-wave-done");
        if report.failures() > report.allowed {
            report.state = WaveState::Failed;
            halted = Some(Halt::Failures {
                wave: wave.name.clone(),
                failures: report.failures(),
                allowed: report.allowed,
            });
        } else if let Some(gate) = wave.gate.as_ref().filter(|_| n + 1 < fleet.waves.len()) {
            watch(Update::Gate { wave: &wave.name });
            let names: Vec<&str> = mine.iter().map(|t| t.name.as_str()).collect();
            let changed = report.targets.iter().any(|t| t.outcome != Outcome::UpToDate);
            let passed = gate.pass(&wave.name, &names, changed).await;
            if !passed.passed {
                report.state = WaveState::GateFailed;
                halted = Some(Halt::Gate {
                    wave: wave.name.clone(),
                    message: passed.message.clone().unwrap_or_default(),
                });
            }
            report.gate = Some(passed);
            waymark_core::crash_point("fleet-gate-done");
        }
        waves.push(report);
    }
    Rollout {
        waves,
        halted,
        duration: started.elapsed(),
    }
}

/// One wave: up to `parallel` targets at once; a target locked by another
/// runner is tried again, patiently, once the rest are done; no new target
/// starts once the failures exceed the budget, but none running is
/// interrupted (a migration is never cut off half-way).
async fn run_wave<R: Runner>(
    wave: &Wave,
    targets: &[&Target],
    runner: &R,
    watch: &mut dyn FnMut(Update<'_>),
) -> WaveReport {
    watch(Update::WaveStarted {
        wave: &wave.name,
        targets: targets.len(),
    });
    let allowed = wave.max_failures.allowed(targets.len());
    let mut queue: std::collections::VecDeque<(&Target, bool, Duration)> =
        targets.iter().map(|t| (*t, false, Duration::ZERO)).collect();
    let mut deferred = Vec::new();
    let mut done: Vec<TargetReport> = Vec::new();
    let mut running = FuturesUnordered::new();
    let failures = |done: &[TargetReport]| done.iter().filter(|t| t.outcome.is_failure()).count();
    loop {
        while running.len() < wave.parallel && failures(&done) <= allowed {
            let Some((target, patient, before)) = queue.pop_front() else {
                break;
            };
            watch(Update::Started {
                wave: &wave.name,
                target,
            });
            running.push(async move {
                let started = Instant::now();
                let outcome = runner.run(target, patient).await;
                (target, patient, before + started.elapsed(), outcome)
            });
        }
        let Some((target, patient, took, outcome)) = running.next().await else {
            if !deferred.is_empty() && failures(&done) <= allowed {
                queue.extend(deferred.drain(..));
                continue;
            }
            break;
        };
        waymark_core::crash_point("fleet-target-done");
        let again = matches!(outcome, Outcome::Locked(_)) && !patient;
        let report = TargetReport {
            name: target.name.clone(),
            outcome,
            duration: took,
        };
        watch(Update::Finished {
            wave: &wave.name,
            report: &report,
            again,
        });
        if again {
            deferred.push((target, true, took));
        } else {
            done.push(report);
        }
    }
    let not_started = queue
        .iter()
        .chain(deferred.iter())
        .map(|(t, _, _)| t.name.clone())
        .collect();
    WaveReport {
        name: wave.name.clone(),
        state: WaveState::Done,
        targets: done,
        not_started,
        allowed,
        gate: None,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::path::Path;
    use std::sync::Mutex;

    use super::*;

    /// Answers from a table, by target name and try, and records the
    /// order of the calls.
    struct Scripted {
        answers: HashMap<&'static str, Vec<Outcome>>,
        calls: Mutex<Vec<(String, bool)>>,
        running: Mutex<(usize, usize)>,
    }

    impl Scripted {
        fn new(answers: &[(&'static str, Vec<Outcome>)]) -> Scripted {
            Scripted {
                answers: answers.iter().cloned().collect(),
                calls: Mutex::new(Vec::new()),
                running: Mutex::new((0, 0)),
            }
        }
    }

    impl Runner for Scripted {
        async fn run(&self, target: &Target, patient: bool) -> Outcome {
            let tries = {
                let mut calls = self.calls.lock().unwrap();
                calls.push((target.name.clone(), patient));
                calls.iter().filter(|(n, _)| *n == target.name).count()
            };
            {
                let mut r = self.running.lock().unwrap();
                r.0 += 1;
                r.1 = r.1.max(r.0);
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
            self.running.lock().unwrap().0 -= 1;
            self.answers
                .get(target.name.as_str())
                .and_then(|a| a.get(tries - 1).or(a.last()))
                .cloned()
                .unwrap_or_else(|| Outcome::Applied(vec!["1_a".to_owned()]))
        }
    }

    fn fleet(text: &str) -> Inventory {
        Inventory::parse(Path::new("fleet.toml"), text, |_| None).unwrap()
    }

    fn targets(names: &[&str], labels: &str) -> String {
        names
            .iter()
            .map(|n| format!("[[target]]\nname = \"{n}\"\nurl = \"sqlite://{n}.db\"\nlabels = {labels}\n"))
            .collect()
    }

    fn failed() -> Outcome {
        Outcome::Failed {
            message: "boom".to_owned(),
            hint: None,
            applied: Vec::new(),
        }
    }

    #[tokio::test]
    async fn a_wave_over_budget_halts_and_the_next_never_starts() {
        let text = format!(
            "{}{}[[wave]]\nname = \"canary\"\nselect = {{ tier = \"canary\" }}\n[[wave]]\nname = \"rest\"\nselect = \"*\"\nparallel = 2\n",
            targets(&["c"], "{ tier = \"canary\" }"),
            targets(&["a", "b", "d"], "{}")
        );
        let fleet = fleet(&text.replace(
            "[[wave]]\nname = \"rest\"",
            "[[wave]]\nname = \"rest\"\nmax_failures = 0",
        ));
        let runner = Scripted::new(&[("c", vec![failed()])]);
        let rollout = roll_out(&fleet, None, &runner, &mut |_| {}).await;
        assert_eq!(
            rollout.halted,
            Some(Halt::Failures {
                wave: "canary".to_owned(),
                failures: 1,
                allowed: 0
            })
        );
        assert_eq!(rollout.waves[1].state, WaveState::NotStarted);
        assert_eq!(rollout.waves[1].not_started, vec!["a", "b", "d"]);
        assert_eq!(runner.calls.lock().unwrap().len(), 1);
    }

    #[tokio::test]
    async fn once_the_budget_is_spent_no_new_target_starts_but_running_ones_finish() {
        let names = ["a", "b", "c", "d", "e", "f"];
        let text = format!(
            "{}[[wave]]\nselect = \"*\"\nparallel = 2\nmax_failures = 1\n",
            targets(&names, "{}")
        );
        let runner = Scripted::new(&[
            ("a", vec![failed()]),
            ("b", vec![Outcome::Unreachable("refused".into())]),
        ]);
        let rollout = roll_out(&fleet(&text), None, &runner, &mut |_| {}).await;
        let wave = &rollout.waves[0];
        assert_eq!(wave.state, WaveState::Failed);
        assert_eq!(wave.failures(), 2);
        // `a` failed within the budget, so `c` took its place; `b`'s
        // failure spent it, so nothing after `c` started.
        assert_eq!(wave.targets.len(), 3, "{wave:?}");
        assert_eq!(wave.targets[2].outcome, Outcome::Applied(vec!["1_a".to_owned()]));
        assert_eq!(wave.not_started, vec!["d", "e", "f"]);
        assert_eq!(runner.running.lock().unwrap().1, 2, "two at once");
    }

    #[tokio::test]
    async fn a_locked_target_is_tried_again_patiently_after_the_rest() {
        let text = format!("{}[[wave]]\nselect = \"*\"\n", targets(&["a", "b", "c"], "{}"));
        let runner = Scripted::new(&[("a", vec![Outcome::Locked("held".into()), Outcome::UpToDate])]);
        let rollout = roll_out(&fleet(&text), None, &runner, &mut |_| {}).await;
        assert_eq!(rollout.halted, None);
        let calls = runner.calls.lock().unwrap().clone();
        let expected: Vec<(String, bool)> = [("a", false), ("b", false), ("c", false), ("a", true)]
            .iter()
            .map(|(n, p)| ((*n).to_owned(), *p))
            .collect();
        assert_eq!(calls, expected);
        assert_eq!(rollout.waves[0].targets.last().unwrap().outcome, Outcome::UpToDate);
    }

    #[tokio::test]
    async fn a_failing_gate_halts_and_the_last_waves_gate_does_not_run() {
        let text = format!(
            "{}{}[[wave]]\nname = \"one\"\nselect = {{ w = \"1\" }}\ngate = {{ check = \"exit 4\" }}\n[[wave]]\nname = \"two\"\nselect = \"*\"\ngate = {{ check = \"exit 5\" }}\n",
            targets(&["a"], "{ w = \"1\" }"),
            targets(&["b"], "{}")
        );
        let runner = Scripted::new(&[]);
        let rollout = roll_out(&fleet(&text), None, &runner, &mut |_| {}).await;
        assert_eq!(
            rollout.halted,
            Some(Halt::Gate {
                wave: "one".to_owned(),
                message: "`exit 4` exited with 4".to_owned()
            })
        );
        assert_eq!(rollout.waves[0].state, WaveState::GateFailed);
        assert_eq!(rollout.waves[1].state, WaveState::NotStarted);

        let text = text.replace("exit 4", "exit 0");
        let rollout = roll_out(&fleet(&text), None, &runner, &mut |_| {}).await;
        assert_eq!(rollout.halted, None);
        assert!(rollout.waves[1].gate.is_none(), "no wave follows the last");
    }

    #[tokio::test]
    async fn a_shard_runs_only_its_targets() {
        let names: Vec<String> = (0..20).map(|i| format!("t{i}")).collect();
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        let text = format!("{}[[wave]]\nselect = \"*\"\nparallel = 4\n", targets(&names, "{}"));
        let fleet = fleet(&text);
        let mut seen = Vec::new();
        for i in 0..3 {
            let runner = Scripted::new(&[]);
            roll_out(&fleet, Some(Shard { index: i, count: 3 }), &runner, &mut |_| {}).await;
            seen.extend(runner.calls.lock().unwrap().iter().map(|(n, _)| n.clone()));
        }
        seen.sort();
        let mut all: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        all.sort();
        assert_eq!(seen, all);
    }
}
