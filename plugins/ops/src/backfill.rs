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
//! `rows_per_second` and waits while a replica is further behind than
//! `max_replica_lag_ms`.

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
            pause(pace, touched, started.elapsed())?;
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

/// How long to pause after a batch that touched `touched` rows in `took`:
/// the longer of the rate's and the nice ratio's, at most a minute.
fn pause_ms(pace: &Backfill, touched: u64, took: std::time::Duration) -> u32 {
    // The batch's own time is not subtracted from the rate's pause: the
    // rate is an upper bound.
    let rate_ms = match pace.rows_per_second {
        0 => 0,
        rate => touched.saturating_mul(1000) / u64::from(rate),
    };
    let nice_ms = (took.as_secs_f64() * 1000.0 * pace.nice_ratio.max(0.0)) as u64;
    u32::try_from(rate_ms.max(nice_ms).min(60_000)).unwrap_or(60_000)
}

/// Keeps to the rate and the nice ratio, then waits out replica lag.
fn pause(pace: &Backfill, touched: u64, took: std::time::Duration) -> Result<(), StepError> {
    let ms = pause_ms(pace, touched, took);
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

    #[test]
    fn the_pause_is_the_longer_of_the_rate_and_the_nice_ratio() {
        let pace = |rows_per_second, nice_ratio| Backfill {
            rows_per_second,
            nice_ratio,
            ..Backfill::default()
        };
        let took = Duration::from_millis(40);
        assert_eq!(pause_ms(&pace(0, 0.0), 1000, took), 0);
        assert_eq!(pause_ms(&pace(10_000, 0.0), 1000, took), 100);
        assert_eq!(pause_ms(&pace(0, 1.5), 1000, took), 60);
        assert_eq!(pause_ms(&pace(100_000, 1.5), 1000, took), 60);
        assert_eq!(pause_ms(&pace(0, -1.0), 1000, took), 0);
        assert_eq!(pause_ms(&pace(1, 0.0), 1000, took), 60_000);
    }
}
