//! `backfill`: a batched, resumable data backfill.
//!
//! Updates a table in batches of keys, `UPDATE <table> SET <set> WHERE <key>
//! > last AND <key> <= batch end`, committing each batch with the last key
//! as its checkpoint, so a runner killed part-way loses at most one batch
//! and the next `waymark up` carries on from there. Declare it with
//! `transaction = "batches"` and grant it the table:
//!
//! ```toml
//! component = "backfill.wasm"
//! sha256 = "..."
//! transaction = "batches"
//!
//! [permissions]
//! write = ["users"]
//!
//! [config]
//! table = "users"
//! key = "id"                          # an integer key, unique
//! set = "email_lower = lower(email)"  # what `up` sets
//! where = "email_lower IS NULL"       # optional: only these rows
//! batch_size = 1000                   # default 1000
//! pause_ms = 0                        # wait between batches
//!
//! [config.down]
//! set = "email_lower = NULL"          # what `down` sets; without it the
//!                                     # step is irreversible
//! ```

use serde::Deserialize;
use waymark_plugin_sdk::{Action, Description, Direction, Step, StepError, Value, db, env, export_step, log};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    table: String,
    key: String,
    set: String,
    #[serde(rename = "where")]
    filter: Option<String>,
    #[serde(default = "default_batch_size")]
    batch_size: u32,
    #[serde(default)]
    pause_ms: u32,
    down: Option<Down>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Down {
    set: String,
    #[serde(rename = "where")]
    filter: Option<String>,
}

fn default_batch_size() -> u32 {
    1000
}

fn config() -> Result<Config, StepError> {
    let config: Config = env::config()?;
    if config.batch_size == 0 || config.batch_size > 100_000 {
        return Err(StepError::invalid(format!(
            "step.toml [config] batch_size = {}: it must be between 1 and 100000",
            config.batch_size
        )));
    }
    Ok(config)
}

/// One direction's work: the SET clause and the optional filter.
struct Pass<'a> {
    set: &'a str,
    filter: Option<&'a str>,
}

impl Config {
    fn pass(&self, direction: Direction) -> Option<Pass<'_>> {
        match direction {
            Direction::Up => Some(Pass {
                set: &self.set,
                filter: self.filter.as_deref(),
            }),
            Direction::Down => self.down.as_ref().map(|d| Pass {
                set: &d.set,
                filter: d.filter.as_deref(),
            }),
        }
    }

    fn statements(&self, pass: &Pass<'_>) -> (String, String, String) {
        let table = db::quote_ident(&self.table);
        let key = db::quote_ident(&self.key);
        let filter = pass.filter.map(|f| format!(" AND ({f})")).unwrap_or_default();
        let (p1, p2) = (db::placeholder(1), db::placeholder(2));
        let count = format!("SELECT count(*) FROM {table} WHERE {key} > {p1}{filter}");
        let next = format!(
            "SELECT {key} FROM {table} WHERE {key} > {p1}{filter} ORDER BY {key} LIMIT {}",
            self.batch_size
        );
        let update = format!(
            "UPDATE {table} SET {} WHERE {key} > {p1} AND {key} <= {p2}{filter}",
            pass.set
        );
        (count, next, update)
    }
}

struct Backfill;

impl Step for Backfill {
    fn describe() -> Description {
        let (summary, reversible) = match config() {
            Ok(c) => (
                format!(
                    "Backfills {} in batches of {} keys: SET {}{}",
                    c.table,
                    c.batch_size,
                    c.set,
                    c.filter.as_ref().map(|f| format!(" WHERE {f}")).unwrap_or_default()
                ),
                c.down.is_some(),
            ),
            Err(_) => ("Backfills a table in batches of keys, resumably.".to_owned(), false),
        };
        let description = Description::new("backfill", env!("CARGO_PKG_VERSION"), &summary);
        if reversible {
            description
        } else {
            description.irreversible()
        }
    }

    fn plan(direction: Direction, _input: &str) -> Result<Vec<Action>, StepError> {
        let config = config()?;
        let Some(pass) = config.pass(direction) else {
            return Err(StepError::other("backfill has no [config.down]: it cannot be reverted"));
        };
        let (_, next, update) = config.statements(&pass);
        Ok(vec![
            Action {
                line: 0,
                text: format!("repeat until no keys are left: {next}"),
            },
            Action { line: 0, text: update },
            Action {
                line: 0,
                text: "commit, recording the batch's last key as the checkpoint".to_owned(),
            },
        ])
    }

    fn up(_input: &str) -> Result<(), StepError> {
        run(Direction::Up)
    }

    fn down(_input: &str) -> Result<(), StepError> {
        run(Direction::Down)
    }
}

export_step!(Backfill);

fn run(direction: Direction) -> Result<(), StepError> {
    let config = config()?;
    let Some(pass) = config.pass(direction) else {
        return Err(StepError::other("backfill has no [config.down]: it cannot be reverted"));
    };
    let mut last = match env::resume_from() {
        Some(checkpoint) => {
            let key = checkpoint
                .parse::<i64>()
                .map_err(|_| StepError::other(format!("checkpoint {checkpoint:?} is not a key")))?;
            log::info(&format!("resuming after key {key}"));
            key
        }
        None => i64::MIN,
    };
    let (count, next, update) = config.statements(&pass);
    let total = db::query(&count, &[Value::from(last)])?
        .scalar()
        .and_then(|v| v.as_i64().or_else(|| v.as_str().and_then(|s| s.parse().ok())))
        .unwrap_or(0);
    let total = u64::try_from(total).unwrap_or(0);
    let mut done = 0u64;
    env::progress(0, Some(total));
    loop {
        let keys = db::query(&next, &[Value::from(last)])?;
        let Some(end) = keys.rows.last().and_then(|row| row.first()).and_then(Value::as_i64) else {
            break;
        };
        db::execute(&update, &[Value::from(last), Value::from(end)])?;
        done += keys.rows.len() as u64;
        last = end;
        db::commit(&last.to_string())?;
        env::progress(done, Some(total.max(done)));
        if config.pause_ms > 0 {
            env::pause(config.pause_ms);
        }
    }
    log::info(&format!("backfilled {done} rows of {}", config.table));
    Ok(())
}
