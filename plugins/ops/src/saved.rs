//! Definitions `complete` destroys, saved for a `down` after it.
//!
//! A contract drops an old column (a type change's, a dropped column's)
//! and indexes. The host keeps a copy of a dropped column's values, but
//! not its type, default or `NOT NULL`, and nothing of an index. So the
//! contract's first transaction saves each op's definition in a table of
//! the ops step's own, `<history>_ops` beside the history (its name starts
//! with the history's, so the catalog and the snapshots leave it out), one
//! row per migration and op line; the revert reads it back, and the revert
//! and an abort forget the migration's rows.

use serde::{Deserialize, Serialize};
use waymark_plugin_sdk::{StepError, Value, db};

use crate::Config;
use crate::catalog::Column;
use crate::ops::ident;

/// What an op saves: a column as the catalog had it, or an index's
/// definition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Definition {
    Column {
        #[serde(rename = "type")]
        type_: String,
        default: Option<String>,
        not_null: bool,
    },
    /// `pg_get_indexdef`: a whole `CREATE [UNIQUE] INDEX` statement.
    Index(String),
}

impl Definition {
    pub(crate) fn of(column: &Column) -> Self {
        Definition::Column {
            type_: column.type_.clone(),
            default: column.default.clone(),
            not_null: column.not_null,
        }
    }
}

/// The table of saved definitions, in `schema`.
pub(crate) struct Saved<'a> {
    pub(crate) schema: &'a str,
    /// The history table's name.
    pub(crate) history: &'a str,
    pub(crate) version: &'a str,
}

impl<'a> Saved<'a> {
    /// The definitions of the migration `config` runs, in `schema`.
    pub(crate) fn of(config: &'a Config, schema: &'a str) -> Self {
        Saved {
            schema,
            history: &config.history,
            version: &config.version,
        }
    }

    fn table(&self) -> String {
        format!("{}.{}", ident(self.schema), ident(&format!("{}_ops", self.history)))
    }

    /// Saves `definition` for the op at `line`, over an earlier save.
    pub(crate) fn save(&self, line: u32, definition: &Definition) -> Result<(), StepError> {
        let table = self.table();
        db::execute(
            &format!(
                "CREATE TABLE IF NOT EXISTS {table} (version text NOT NULL, line integer NOT NULL, \
                 definition text NOT NULL, PRIMARY KEY (version, line))"
            ),
            &[],
        )?;
        let text = serde_json::to_string(definition).expect("a definition is plain data");
        db::execute(
            &format!(
                "INSERT INTO {table} (version, line, definition) VALUES ($1, $2, $3) \
                 ON CONFLICT (version, line) DO UPDATE SET definition = excluded.definition"
            ),
            &[
                Value::from(self.version),
                Value::from(i64::from(line)),
                Value::from(text),
            ],
        )?;
        Ok(())
    }

    /// The definitions saved for this migration, by op line.
    pub(crate) fn load(&self) -> Result<Vec<(u32, Definition)>, StepError> {
        if !self.exists()? {
            return Ok(Vec::new());
        }
        let rows = db::query(
            &format!(
                "SELECT line::int8, definition FROM {} WHERE version = $1 ORDER BY line",
                self.table()
            ),
            &[Value::from(self.version)],
        )?;
        let mut saved = Vec::new();
        for row in &rows.rows {
            let line = row.first().and_then(Value::as_i64).unwrap_or_default();
            let text = row.get(1).and_then(Value::as_str).unwrap_or_default();
            let definition = serde_json::from_str(text).map_err(|e| {
                StepError::other(format!(
                    "the definition {} saved for line {line} of version {} cannot be read: {e}",
                    self.table(),
                    self.version
                ))
            })?;
            saved.push((u32::try_from(line).unwrap_or_default(), definition));
        }
        Ok(saved)
    }

    /// Forgets this migration's definitions (after a revert, an abort).
    pub(crate) fn forget(&self) -> Result<(), StepError> {
        if self.exists()? {
            db::execute(
                &format!("DELETE FROM {} WHERE version = $1", self.table()),
                &[Value::from(self.version)],
            )?;
        }
        Ok(())
    }

    fn exists(&self) -> Result<bool, StepError> {
        let rows = db::query("SELECT to_regclass($1) IS NOT NULL", &[Value::from(self.table())])?;
        Ok(matches!(rows.scalar(), Some(Value::Boolean(true))))
    }
}
