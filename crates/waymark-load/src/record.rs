//! What the load recorded, per phase and over time. Every transaction is
//! kept as a sample (16 bytes and its error, if any) until the load
//! stops; the histograms and the windows of the chart are made from them
//! then, so that a phase's edges are the controller's, exact, and not
//! whatever a client had seen when it last looked.

use std::collections::BTreeMap;
use std::time::Duration;

use hdrhistogram::Histogram;

use crate::clock::{Phase, PhaseKind};
use crate::sampler::{Wait, Waits};

/// One transaction, as its client saw it.
#[derive(Debug, Clone)]
pub(crate) struct Sample {
    /// When it ended, from the clock's start, in microseconds.
    pub(crate) end_us: u64,
    /// From its scheduled start to its end.
    pub(crate) latency_us: u64,
    /// Its error: the code (SQLSTATE, MySQL's error number, `connection`,
    /// `script` or `unfinished`) and the message.
    pub(crate) error: Option<Box<(String, String)>>,
}

/// Latencies and errors of a set of transactions.
#[derive(Debug, Clone)]
pub struct Stats {
    /// Transactions that committed.
    pub transactions: u64,
    /// Their latencies, in microseconds, to 3 significant figures.
    pub latency: Histogram<u64>,
    /// Failed transactions by code, each with the first message seen.
    pub errors: BTreeMap<String, ErrorCount>,
}

/// How often one error code was seen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorCount {
    pub count: u64,
    /// The first message with this code.
    pub message: String,
}

impl Stats {
    fn new() -> Stats {
        Stats {
            transactions: 0,
            // 1 µs to an hour: anything a transaction can take.
            latency: Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid bounds"),
            errors: BTreeMap::new(),
        }
    }

    fn add(&mut self, sample: &Sample) {
        match &sample.error {
            None => {
                self.transactions += 1;
                self.latency.saturating_record(sample.latency_us.max(1));
            }
            Some(error) => {
                let (code, message) = &**error;
                self.errors
                    .entry(code.clone())
                    .or_insert_with(|| ErrorCount {
                        count: 0,
                        message: message.clone(),
                    })
                    .count += 1;
            }
        }
    }

    /// The latency at quantile `q` (0.99 for p99); `None` with no
    /// transaction.
    pub fn quantile(&self, q: f64) -> Option<Duration> {
        (self.transactions > 0).then(|| Duration::from_micros(self.latency.value_at_quantile(q)))
    }

    /// The longest latency.
    pub fn max(&self) -> Option<Duration> {
        (self.transactions > 0).then(|| Duration::from_micros(self.latency.max()))
    }

    /// Failed transactions.
    pub fn failed(&self) -> u64 {
        self.errors.values().map(|e| e.count).sum()
    }
}

/// One phase's figures.
#[derive(Debug, Clone)]
pub struct PhaseStats {
    pub phase: Phase,
    /// When it ended.
    pub end: Duration,
    pub stats: Stats,
    /// Lock waits of the workload that began in this phase.
    pub waits: Vec<Wait>,
}

impl PhaseStats {
    pub fn duration(&self) -> Duration {
        self.end.saturating_sub(self.phase.start)
    }

    /// Committed transactions per second.
    pub fn throughput(&self) -> f64 {
        let secs = self.duration().as_secs_f64();
        if secs > 0.0 {
            self.stats.transactions as f64 / secs
        } else {
            0.0
        }
    }
}

/// One slice of time on the chart.
#[derive(Debug, Clone, PartialEq)]
pub struct Window {
    pub start: Duration,
    pub transactions: u64,
    pub failed: u64,
    pub p50: Option<Duration>,
    pub p99: Option<Duration>,
    pub max: Option<Duration>,
}

/// Everything a load recorded.
#[derive(Debug, Clone)]
pub struct Recording {
    /// From the baseline to the end, in order.
    pub phases: Vec<PhaseStats>,
    /// The reporter's transactions over the whole run (kept apart: a
    /// reader that takes seconds by design would drown the workload's
    /// percentiles).
    pub reporter: Option<Stats>,
    /// Latency over time, for the chart.
    pub windows: Vec<Window>,
    /// How long the load ran.
    pub duration: Duration,
    /// Lock waits, or why they could not be sampled.
    pub waits: Waits,
}

impl Recording {
    pub(crate) fn new(
        phases: Vec<Phase>,
        duration: Duration,
        samples: Vec<Sample>,
        reporter: Vec<Sample>,
        waits: Waits,
    ) -> Recording {
        let mut stats: Vec<PhaseStats> = phases
            .iter()
            .enumerate()
            .map(|(i, phase)| PhaseStats {
                phase: phase.clone(),
                end: phases.get(i + 1).map_or(duration, |next| next.start),
                stats: Stats::new(),
                waits: Vec::new(),
            })
            .collect();
        // A transaction belongs to the phase it was scheduled in: one
        // that queued behind a migration's lock counts against that
        // migration even when the lock's release, which ends it, also
        // ends the migration.
        for sample in &samples {
            let scheduled = Duration::from_micros(sample.end_us.saturating_sub(sample.latency_us));
            let at = stats.iter().rposition(|p| p.phase.start <= scheduled).unwrap_or(0);
            stats[at].stats.add(sample);
        }
        if let Waits::Sampled(waits) = &waits {
            for wait in waits {
                let at = stats.iter().rposition(|p| p.phase.start <= wait.start).unwrap_or(0);
                stats[at].waits.push(wait.clone());
            }
        }
        let reporter = (!reporter.is_empty()).then(|| {
            let mut s = Stats::new();
            for sample in &reporter {
                s.add(sample);
            }
            s
        });
        Recording {
            windows: windows(&samples, duration),
            phases: stats,
            reporter,
            duration,
            waits,
        }
    }

    /// The phases of `kind`.
    pub fn of_kind(&self, kind: PhaseKind) -> impl Iterator<Item = &PhaseStats> {
        self.phases.iter().filter(move |p| p.phase.kind == kind)
    }
}

/// The chart's slices: about 200 over the run, none under 100 ms.
fn windows(samples: &[Sample], duration: Duration) -> Vec<Window> {
    let width_us = (duration.as_micros() as u64 / 200).max(100_000);
    let count = (duration.as_micros() as u64 / width_us + 1) as usize;
    let mut slices: Vec<Stats> = (0..count).map(|_| Stats::new()).collect();
    for sample in samples {
        let i = ((sample.end_us / width_us) as usize).min(count - 1);
        slices[i].add(sample);
    }
    slices
        .into_iter()
        .enumerate()
        .map(|(i, s)| Window {
            start: Duration::from_micros(i as u64 * width_us),
            transactions: s.transactions,
            failed: s.failed(),
            p50: s.quantile(0.50),
            p99: s.quantile(0.99),
            max: s.max(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(end_ms: u64, latency_ms: u64, error: Option<&str>) -> Sample {
        Sample {
            end_us: end_ms * 1000,
            latency_us: latency_ms * 1000,
            error: error.map(|code| Box::new((code.to_owned(), format!("{code} happened")))),
        }
    }

    #[test]
    fn each_transaction_counts_in_the_phase_it_was_scheduled_in_and_errors_by_code() {
        let phases = vec![
            Phase {
                name: "baseline".into(),
                kind: PhaseKind::Baseline,
                start: Duration::ZERO,
            },
            Phase {
                name: "1_index".into(),
                kind: PhaseKind::Migration,
                start: Duration::from_secs(2),
            },
        ];
        let mut samples: Vec<Sample> = (1..=100).map(|i| sample(i * 10, 2, None)).collect();
        // Scheduled at 2.1 s, in the migration, ended after it.
        samples.push(sample(3000, 900, None));
        samples.push(sample(2600, 5, Some("42703")));
        samples.push(sample(2700, 5, Some("42703")));
        let r = Recording::new(
            phases,
            Duration::from_millis(3100),
            samples,
            Vec::new(),
            Waits::Sampled(Vec::new()),
        );
        let (baseline, index) = (&r.phases[0].stats, &r.phases[1].stats);
        assert_eq!(baseline.transactions, 100);
        assert_eq!(baseline.quantile(0.99), Some(Duration::from_millis(2)));
        assert_eq!(index.transactions, 1);
        assert_eq!(index.max().map(|d| d.as_millis()), Some(900));
        assert_eq!(index.errors["42703"].count, 2);
        assert_eq!(index.errors["42703"].message, "42703 happened");
        assert_eq!(r.phases[1].duration(), Duration::from_millis(1100));
        assert!((r.phases[0].throughput() - 50.0).abs() < 1e-9);
        // The chart: 100 ms slices by the end; the failed ones counted apart.
        assert_eq!(r.windows.len(), 32);
        assert_eq!(r.windows[30].max.map(|d| d.as_millis()), Some(900));
        assert_eq!(r.windows[26].failed, 1);
        assert_eq!(r.windows[26].transactions, 0);
    }
}
