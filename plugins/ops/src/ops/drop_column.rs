//! `drop_column`: the new version no longer sees the column; `complete`
//! drops it (the host keeps a copy of its data for `down`, and the
//! contract saves its definition). With `down`, an expression over the new
//! shape's columns, rows the new version writes get a value the old
//! version can read, then and after a revert.
//!
//! A revert after `complete` adds the column back as it was (type,
//! default) and the host puts its kept values back. A `NOT NULL` column's
//! rows written since `complete` get `down` (or the default), and it is
//! made `NOT NULL` again; a nullable one's are left NULL (or the default),
//! since a kept NULL and a row written since look alike by then.

use super::{Cx, Operation, ident};
use crate::direct::{Change, DirectCx};
use crate::file::RawOp;
use crate::saved::Definition;
use crate::shape::{Sync, View};

pub(crate) struct DropColumn {
    table: String,
    column: String,
    down: Option<String>,
}

impl DropColumn {
    pub(crate) fn from_raw(raw: &RawOp) -> Result<Self, String> {
        raw.only(&["table", "column", "down"])?;
        Ok(DropColumn {
            table: raw.required("table", &raw.table)?.to_owned(),
            column: raw.required("column", &raw.column)?.to_owned(),
            down: raw.down.clone(),
        })
    }
}

impl DropColumn {
    fn irreversible(&self) -> String {
        format!(
            "drop_column {}.{} cannot be undone yet: its column's type is gone with it",
            self.table, self.column
        )
    }

    fn unsaved(&self) -> String {
        format!(
            "drop_column {}.{} cannot be undone: complete saved no definition of the column (it was completed by a waymark that did not save them)",
            self.table, self.column
        )
    }
}

impl Operation for DropColumn {
    fn table(&self) -> &str {
        &self.table
    }

    fn describe(&self) -> String {
        format!("drop column {}.{}", self.table, self.column)
    }

    fn check(&self, cx: &Cx<'_>) -> Result<(), String> {
        let Some(table) = cx.catalog.and_then(|c| c.table(&self.table)) else {
            return Ok(());
        };
        let Some(column) = table.column(&self.column) else {
            return Err(format!("table {} has no column {}", self.table, self.column));
        };
        if column.not_null && column.default.is_none() && self.down.is_none() {
            return Err(format!(
                "drop_column {}.{}: the column is NOT NULL without a default, so the new version could not insert a row; give `down`, the value the old version reads for rows the new one writes",
                self.table, self.column
            ));
        }
        Ok(())
    }

    fn expand(&self, _cx: &Cx<'_>, _out: &mut Vec<String>) {}

    fn reshape(&self, view: &mut View) {
        view.hide(&self.column);
    }

    fn sync(&self, sync: &mut Sync) {
        if let Some(down) = &self.down {
            sync.from_new.push((self.column.clone(), down.clone()));
        }
    }

    fn contract(&self, cx: &Cx<'_>, out: &mut Vec<String>) {
        out.push(format!(
            "ALTER TABLE {} DROP COLUMN {}",
            cx.table(&self.table),
            ident(&self.column)
        ));
    }

    fn contract_first(&self) -> bool {
        true
    }

    fn abort(&self, _cx: &Cx<'_>, _out: &mut Vec<String>) {}

    fn saves(&self, cx: &Cx<'_>) -> Result<Option<Definition>, String> {
        Ok(cx.column(&self.table, &self.column).map(Definition::of))
    }

    fn revert(&self, cx: &Cx<'_>, saved: Option<&Definition>, out: &mut Vec<String>) -> Result<(), String> {
        let (table, column) = (cx.table(&self.table), ident(&self.column));
        let Some(Definition::Column {
            type_,
            default,
            not_null,
        }) = saved
        else {
            if cx.catalog.is_none() {
                out.push(format!(
                    "-- add column {}.{} back as complete saved it; the host puts its kept values back",
                    self.table, self.column
                ));
                return Ok(());
            }
            return Err(self.unsaved());
        };
        let default_clause = default.as_ref().map(|d| format!(" DEFAULT {d}")).unwrap_or_default();
        // The host puts the kept values back as soon as this has run.
        out.push(format!(
            "ALTER TABLE {table} ADD COLUMN {column} {type_}{default_clause}"
        ));
        if *not_null {
            if let Some(down) = &self.down {
                // Rows written since complete, which no copy holds.
                out.push(format!("UPDATE {table} SET {column} = ({down}) WHERE {column} IS NULL"));
            }
            out.push(format!("ALTER TABLE {table} ALTER COLUMN {column} SET NOT NULL"));
        }
        Ok(())
    }

    fn direct(&self, cx: &DirectCx, out: &mut Vec<Change>) -> Result<(), String> {
        out.push(Change::Alter {
            table: self.table.clone(),
            clause: format!("DROP COLUMN {}", cx.ident(&self.column)),
        });
        Ok(())
    }

    fn direct_revert(&self, _cx: &DirectCx, _out: &mut Vec<Change>) -> Result<(), String> {
        Err(self.irreversible())
    }
}
