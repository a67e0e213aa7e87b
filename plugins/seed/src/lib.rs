//! `seed`: loads reference data from its configuration, idempotently.
//!
//! Each row is upserted by its key, so running the step again (or after
//! someone added a row by hand) converges on the configured rows; `down`
//! deletes the configured keys. Grant it the table:
//!
//! ```toml
//! component = "seed.wasm"
//! sha256 = "..."
//!
//! [permissions]
//! write = ["roles"]
//!
//! [config]
//! table = "roles"
//! key = ["id"]
//! columns = ["id", "name", "admin"]
//! rows = [
//!   [1, "owner", true],
//!   [2, "editor", false],
//! ]
//! ```

use serde::Deserialize;
use serde_json::Value as Json;
use waymark_plugin_sdk::{Action, Description, Dialect, Direction, Step, StepError, Value, db, env, export_step};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    table: String,
    key: Vec<String>,
    columns: Vec<String>,
    rows: Vec<Vec<Json>>,
}

fn config() -> Result<Config, StepError> {
    let config: Config = env::config()?;
    if config.key.is_empty() {
        return Err(StepError::invalid(
            "step.toml [config] key: name at least one key column",
        ));
    }
    if let Some(k) = config.key.iter().find(|k| !config.columns.contains(k)) {
        return Err(StepError::invalid(format!(
            "step.toml [config] key column {k:?} is not among the columns"
        )));
    }
    if let Some((i, row)) = config
        .rows
        .iter()
        .enumerate()
        .find(|(_, r)| r.len() != config.columns.len())
    {
        return Err(StepError::invalid(format!(
            "step.toml [config] rows[{i}] has {} values for {} columns",
            row.len(),
            config.columns.len()
        )));
    }
    Ok(config)
}

fn value(json: &Json, row: usize) -> Result<Value, StepError> {
    Ok(match json {
        Json::Null => Value::Null,
        Json::Bool(b) => Value::Boolean(*b),
        Json::Number(n) => match n.as_i64() {
            Some(i) => Value::Integer(i),
            None => Value::Float(n.as_f64().unwrap_or(f64::NAN)),
        },
        Json::String(s) => Value::Text(s.clone()),
        other => {
            return Err(StepError::invalid(format!(
                "step.toml [config] rows[{row}]: {other} is neither null, a boolean, a number nor a string"
            )));
        }
    })
}

impl Config {
    fn upsert(&self) -> String {
        let table = db::quote_ident(&self.table);
        let columns: Vec<String> = self.columns.iter().map(|c| db::quote_ident(c)).collect();
        let placeholders: Vec<String> = (1..=columns.len()).map(db::placeholder).collect();
        let others: Vec<&String> = self.columns.iter().filter(|c| !self.key.contains(c)).collect();
        let conflict = match db::dialect() {
            Dialect::Mysql if others.is_empty() => {
                let k = db::quote_ident(&self.key[0]);
                format!("ON DUPLICATE KEY UPDATE {k} = {k}")
            }
            Dialect::Mysql => format!(
                "ON DUPLICATE KEY UPDATE {}",
                others
                    .iter()
                    .map(|c| format!("{0} = VALUES({0})", db::quote_ident(c)))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            _ => {
                let keys: Vec<String> = self.key.iter().map(|k| db::quote_ident(k)).collect();
                if others.is_empty() {
                    format!("ON CONFLICT ({}) DO NOTHING", keys.join(", "))
                } else {
                    format!(
                        "ON CONFLICT ({}) DO UPDATE SET {}",
                        keys.join(", "),
                        others
                            .iter()
                            .map(|c| format!("{0} = excluded.{0}", db::quote_ident(c)))
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                }
            }
        };
        format!(
            "INSERT INTO {table} ({}) VALUES ({}) {conflict}",
            columns.join(", "),
            placeholders.join(", ")
        )
    }

    fn delete(&self) -> String {
        let conditions: Vec<String> = self
            .key
            .iter()
            .enumerate()
            .map(|(i, k)| format!("{} = {}", db::quote_ident(k), db::placeholder(i + 1)))
            .collect();
        format!(
            "DELETE FROM {} WHERE {}",
            db::quote_ident(&self.table),
            conditions.join(" AND ")
        )
    }

    fn key_values(&self, row: &[Json], index: usize) -> Result<Vec<Value>, StepError> {
        self.key
            .iter()
            .map(|k| {
                let at = self.columns.iter().position(|c| c == k).expect("checked by config()");
                value(&row[at], index)
            })
            .collect()
    }
}

struct Seed;

impl Step for Seed {
    fn describe() -> Description {
        let summary = match config() {
            Ok(c) => format!(
                "Upserts {} rows into {} by ({})",
                c.rows.len(),
                c.table,
                c.key.join(", ")
            ),
            Err(_) => "Upserts reference rows from its configuration, by key.".to_owned(),
        };
        Description::new("seed", env!("CARGO_PKG_VERSION"), &summary)
    }

    fn plan(direction: Direction, _input: &str) -> Result<Vec<Action>, StepError> {
        let c = config()?;
        let text = match direction {
            Direction::Up => format!("{} (for each of {} rows)", c.upsert(), c.rows.len()),
            Direction::Down => format!("{} (for each of {} rows)", c.delete(), c.rows.len()),
        };
        Ok(vec![Action { line: 0, text }])
    }

    fn up(_input: &str) -> Result<(), StepError> {
        let c = config()?;
        let sql = c.upsert();
        for (i, row) in c.rows.iter().enumerate() {
            let params = row.iter().map(|v| value(v, i)).collect::<Result<Vec<_>, _>>()?;
            db::execute(&sql, &params)?;
            env::progress(i as u64 + 1, Some(c.rows.len() as u64));
        }
        Ok(())
    }

    fn down(_input: &str) -> Result<(), StepError> {
        let c = config()?;
        let sql = c.delete();
        for (i, row) in c.rows.iter().enumerate() {
            db::execute(&sql, &c.key_values(row, i)?)?;
        }
        Ok(())
    }
}

export_step!(Seed);
