//! {{name}}: a waymark migration step.
//!
//! It inserts one row, named in its configuration, and `down` deletes it
//! again. Replace the body with your own step; `waymark plugin test`
//! checks that `down` undoes `up`.

use serde::Deserialize;
use waymark_plugin_sdk::{Action, Description, Direction, Step, StepError, Value, db, env, export_step, log};

/// The `[config]` table of the step's `step.toml`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    table: String,
    column: String,
    value: String,
}

impl Config {
    fn insert(&self) -> String {
        format!(
            "INSERT INTO {} ({}) VALUES ({})",
            db::quote_ident(&self.table),
            db::quote_ident(&self.column),
            db::placeholder(1)
        )
    }

    fn delete(&self) -> String {
        format!(
            "DELETE FROM {} WHERE {} = {}",
            db::quote_ident(&self.table),
            db::quote_ident(&self.column),
            db::placeholder(1)
        )
    }
}

struct Plugin;

impl Step for Plugin {
    fn describe() -> Description {
        Description::new(
            "{{name}}",
            env!("CARGO_PKG_VERSION"),
            "Inserts the configured row; down deletes it.",
        )
    }

    fn plan(direction: Direction, _input: &str) -> Result<Vec<Action>, StepError> {
        let config: Config = env::config()?;
        let text = match direction {
            Direction::Up => config.insert(),
            Direction::Down => config.delete(),
        };
        Ok(vec![Action { line: 0, text }])
    }

    fn up(_input: &str) -> Result<(), StepError> {
        let config: Config = env::config()?;
        let count = format!(
            "SELECT count(*) FROM {} WHERE {} = {}",
            db::quote_ident(&config.table),
            db::quote_ident(&config.column),
            db::placeholder(1)
        );
        let present = db::query(&count, &[Value::from(config.value.as_str())])?;
        if present.scalar().and_then(Value::as_i64).unwrap_or(0) > 0 {
            return Err(StepError::other(format!("{:?} is in {} already", config.value, config.table)));
        }
        db::execute(&config.insert(), &[Value::from(config.value.as_str())])?;
        log::info(&format!("inserted {:?} into {}", config.value, config.table));
        Ok(())
    }

    fn down(_input: &str) -> Result<(), StepError> {
        let config: Config = env::config()?;
        db::execute(&config.delete(), &[Value::from(config.value.as_str())])?;
        Ok(())
    }
}

export_step!(Plugin);
