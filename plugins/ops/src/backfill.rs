//! The backfill: every row that was there before the triggers, touched
//! once so that the trigger computes its new shape.
//!
//! It ends under any insert rate because its range is fixed: the triggers
//! committed before it read the key's maximum, so every row written since
//! is in both shapes already and only keys up to that maximum are walked.
//! It walks them in key order, a batch of keys at a time, each batch
//! committed with the last key as its checkpoint, and touches only rows
//! whose new columns are still NULL, so that a row the new version wrote
//! meanwhile is left as it wrote it. Between batches it keeps to
//! `rows_per_second` and `nice_ratio`, backs off further while its batches
//! run slower than they can (see [`Pacer`]), and waits while a replica is
//! further behind than `max_replica_lag_ms`.

use serde::{Deserialize, Serialize};
use waymark_plugin_sdk::{StepError, Value, db, env, log};

use crate::catalog;
use crate::file::Backfill;
use crate::ops::ident;

/// Where a backfill stands.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct Checkpoint {
    /// Index of the table being backfilled, in file order.
    table: usize,
    /// The last key done in it; `None`: none yet.
    after: Option<serde_json::Value>,
    /// The greatest key when it started.
    until: Option<serde_json::Value>,
}

impl Checkpoint {
    pub(crate) fn start() -> Self {
        Checkpoint::default()
    }

    pub(crate) fn encode(&self) -> String {
        serde_json::to_string(self).expect("a checkpoint is plain data")
    }

    pub(crate) fn decode(text: &str) -> Result<Self, StepError> {
        serde_json::from_str(text)
            .map_err(|e| StepError::other(format!("checkpoint {text:?} is not the ops step's: {e}")))
    }
}

/// Key types the backfill can walk: their values come back as integers
/// or text and are bound again with a cast.
const KEY_TYPES: &[&str] = &["smallint", "integer", "bigint", "text", "uuid"];

/// Refuses a table the backfill cannot walk by key, saying why.
pub(crate) fn check_key(qualified: &str) -> Result<(), String> {
    match catalog::single_key(qualified).map_err(|e| e.message())? {
        None => Err(format!(
            "table {qualified} needs a backfill, which walks the table by its primary key, and it has no single-column primary key"
        )),
        Some((key, type_)) if !KEY_TYPES.contains(&type_.as_str()) && !type_.starts_with("character varying") => {
            Err(format!(
                "table {qualified} needs a backfill, which walks the table by its primary key, and its key {key} is of type {type_}; the backfill walks keys of type {} or varchar",
                KEY_TYPES.join(", ")
            ))
        }
        Some(_) => Ok(()),
    }
}

/// Backfills each `(table, columns)` from `checkpoint` on.
pub(crate) fn run(
    schema: &str,
    work: &[(String, Vec<String>)],
    pace: &Backfill,
    mut checkpoint: Checkpoint,
) -> Result<(), StepError> {
    let total: u64 = work
        .iter()
        .skip(checkpoint.table)
        .map(|(t, _)| estimate(&format!("{}.{}", ident(schema), ident(t))))
        .sum();
    let mut done = 0u64;
    let mut pacer = Pacer::new(pace);
    env::progress(0, Some(total));
    while let Some((table, columns)) = work.get(checkpoint.table) {
        let qualified = format!("{}.{}", ident(schema), ident(table));
        let (key, type_) = catalog::single_key(&qualified)?
            .ok_or_else(|| StepError::other(format!("table {qualified} lost its primary key during the backfill")))?;
        let k = ident(&key);
        if checkpoint.until.is_none() {
            let max = db::query(&format!("SELECT max({k}) FROM {qualified}"), &[])?;
            checkpoint.until = max.scalar().and_then(to_json);
        }
        let Some(until) = checkpoint.until.clone() else {
            // An empty table: nothing to walk.
            checkpoint = next_table(&checkpoint);
            continue;
        };
        let pending: Vec<String> = columns.iter().map(|c| format!("{} IS NULL", ident(c))).collect();
        let pending = pending.join(" OR ");
        let bound = |n: usize| format!("${n}::{type_}");
        loop {
            let started = std::time::Instant::now();
            let (lower, mut params) = match &checkpoint.after {
                Some(after) => (format!("{k} > {} AND ", bound(1)), vec![from_json(after)]),
                None => (String::new(), Vec::new()),
            };
            let n = params.len() + 1;
            params.push(from_json(&until));
            let end = db::query(
                &format!(
                    "SELECT {k} FROM {qualified} WHERE {lower}{k} <= {} ORDER BY {k} OFFSET {} LIMIT 1",
                    bound(n),
                    pace.batch_size - 1
                ),
                &params,
            )?;
            let end = end.scalar().and_then(to_json).unwrap_or_else(|| until.clone());
            let last = params.len() - 1;
            params[last] = from_json(&end);
            let touched = db::execute(
                &format!(
                    "UPDATE {qualified} SET {k} = {k} WHERE {lower}{k} <= {} AND ({pending})",
                    bound(n)
                ),
                &params,
            )?;
            done += touched;
            checkpoint.after = Some(end.clone());
            let finished = end == until;
            if finished {
                checkpoint = next_table(&checkpoint);
            }
            db::commit(&checkpoint.encode())?;
            env::progress(done, Some(total.max(done)));
            if finished {
                log::info(&format!("backfilled {qualified}"));
                break;
            }
            pause(pace, pacer.pause_ms(touched, started.elapsed()))?;
        }
    }
    Ok(())
}

fn next_table(checkpoint: &Checkpoint) -> Checkpoint {
    Checkpoint {
        table: checkpoint.table + 1,
        after: None,
        until: None,
    }
}

/// The pause after each batch, backing off while the database is busy.
///
/// A batch that takes longer per row than the backfill's fastest recent
/// batches is competing with the application for the same CPU, disk or
/// locks: the nice ratio's pause is then stretched by that slowdown, so a
/// batch twice as slow as it can be is followed by a pause four times its
/// floor. The signal is the backfill's own timing, which needs no
/// privilege and no guess at the server's size; where gh-ost counts the
/// server's running threads against a threshold the user must choose,
/// this adapts to whatever the server is. The floor rises by 1 % a batch,
/// so one lucky batch (a warm cache, a quiet moment) is forgotten within
/// a few dozen, and only batches that touched at least half a batch of
/// rows count: a batch of keys the new version already wrote is cheap for
/// a reason that says nothing about load.
pub(crate) struct Pacer<'a> {
    pace: &'a Backfill,
    /// The fastest recent time per touched row, in microseconds.
    floor_us: Option<f64>,
}

impl<'a> Pacer<'a> {
    pub(crate) fn new(pace: &'a Backfill) -> Self {
        Pacer { pace, floor_us: None }
    }

    /// How long to pause after a batch that touched `touched` rows in
    /// `took`: the longer of the rate's and the nice ratio's (stretched by
    /// the slowdown), at most a minute.
    pub(crate) fn pause_ms(&mut self, touched: u64, took: std::time::Duration) -> u32 {
        // The batch's own time is not subtracted from the rate's pause:
        // the rate is an upper bound.
        let rate_ms = match self.pace.rows_per_second {
            0 => 0,
            rate => touched.saturating_mul(1000) / u64::from(rate),
        };
        let took_ms = took.as_secs_f64() * 1000.0;
        let slowdown = self.slowdown(touched, took_ms);
        let nice_ms = (took_ms * self.pace.nice_ratio.max(0.0) * slowdown) as u64;
        u32::try_from(rate_ms.max(nice_ms).min(60_000)).unwrap_or(60_000)
    }

    /// How many times slower per row this batch ran than the floor (1 at
    /// least), updating the floor.
    fn slowdown(&mut self, touched: u64, took_ms: f64) -> f64 {
        if touched == 0 || touched < u64::from(self.pace.batch_size) / 2 {
            return 1.0;
        }
        let per_row = took_ms * 1000.0 / touched as f64;
        let floor = match self.floor_us {
            Some(floor) => (floor * 1.01).min(per_row),
            None => per_row,
        };
        self.floor_us = Some(floor);
        if floor <= 0.0 { 1.0 } else { (per_row / floor).max(1.0) }
    }
}

/// Pauses `ms`, then waits out replica lag.
fn pause(pace: &Backfill, ms: u32) -> Result<(), StepError> {
    if ms > 0 {
        env::pause(ms);
    }
    loop {
        let lag = db::query(
            "SELECT coalesce(max(extract(epoch FROM replay_lag) * 1000), 0)::int8 FROM pg_stat_replication",
            &[],
        )?;
        let lag = lag.scalar().and_then(Value::as_i64).unwrap_or(0);
        if u64::try_from(lag).unwrap_or(0) <= pace.max_replica_lag_ms {
            return Ok(());
        }
        log::info(&format!(
            "a replica is {lag} ms behind, over max_replica_lag_ms = {}: waiting",
            pace.max_replica_lag_ms
        ));
        env::pause(1000);
    }
}

/// The planner's estimate of a table's rows: cheap, and enough for an ETA.
fn estimate(qualified: &str) -> u64 {
    db::query(
        "SELECT greatest(reltuples, 0)::int8 FROM pg_class WHERE oid = $1::regclass",
        &[Value::from(qualified)],
    )
    .ok()
    .and_then(|r| r.scalar().and_then(Value::as_i64))
    .and_then(|n| u64::try_from(n).ok())
    .unwrap_or(0)
}

fn to_json(value: &Value) -> Option<serde_json::Value> {
    match value {
        Value::Integer(n) => Some(serde_json::Value::from(*n)),
        Value::Text(s) => Some(serde_json::Value::from(s.as_str())),
        _ => None,
    }
}

fn from_json(value: &serde_json::Value) -> Value {
    match value {
        serde_json::Value::Number(n) => Value::Integer(n.as_i64().unwrap_or_default()),
        serde_json::Value::String(s) => Value::Text(s.clone()),
        _ => Value::Null,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn pace(rows_per_second: u32, nice_ratio: f64) -> Backfill {
        Backfill {
            rows_per_second,
            nice_ratio,
            ..Backfill::default()
        }
    }

    #[test]
    fn the_pause_is_the_longer_of_the_rate_and_the_nice_ratio() {
        let took = Duration::from_millis(40);
        let first = |pace: Backfill, touched| Pacer::new(&pace).pause_ms(touched, took);
        assert_eq!(first(pace(0, 0.0), 1000), 0);
        assert_eq!(first(pace(10_000, 0.0), 1000), 100);
        assert_eq!(first(pace(0, 1.5), 1000), 60);
        assert_eq!(first(pace(100_000, 1.5), 1000), 60);
        assert_eq!(first(pace(0, -1.0), 1000), 0);
        assert_eq!(first(pace(1, 0.0), 1000), 60_000);
    }

    #[test]
    fn a_batch_slower_than_the_floor_stretches_the_pause_by_its_slowdown() {
        let pace = pace(0, 1.0);
        let mut pacer = Pacer::new(&pace);
        let ms = Duration::from_millis;
        assert_eq!(pacer.pause_ms(1000, ms(40)), 40);
        // Twice as slow per row (against a floor risen 1 %): twice the
        // time, and nearly twice again the pause.
        assert_eq!(pacer.pause_ms(1000, ms(80)), 158);
        // As fast as the floor again: the plain nice ratio.
        assert_eq!(pacer.pause_ms(1000, ms(40)), 40);
        // A batch of mostly rows already written says nothing of load,
        // and does not lower the floor.
        assert_eq!(pacer.pause_ms(10, ms(1)), 1);
        assert_eq!(pacer.pause_ms(1000, ms(40)), 40);
        // Flat out stays flat out, however slow.
        let flat = self::pace(0, 0.0);
        let mut pacer = Pacer::new(&flat);
        pacer.pause_ms(1000, ms(40));
        assert_eq!(pacer.pause_ms(1000, ms(400)), 0);
    }

    #[test]
    fn a_lucky_batch_is_forgotten_as_the_floor_rises() {
        let pace = pace(0, 1.0);
        let mut pacer = Pacer::new(&pace);
        let ms = Duration::from_millis;
        pacer.pause_ms(1000, ms(20));
        // Batches that take 40 ms look twice as slow at first; within
        // 70 batches the floor has risen to meet them.
        assert_eq!(pacer.pause_ms(1000, ms(40)), 79);
        let last = (0..70).map(|_| pacer.pause_ms(1000, ms(40))).last().unwrap();
        assert_eq!(last, 40);
    }
}
