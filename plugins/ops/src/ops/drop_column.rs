//! `drop_column`: the new version no longer sees the column; `complete`
//! drops it (the host keeps a copy of its data for `down`). With `down`,
//! an expression over the new shape's columns, rows the new version
//! writes get a value the old version can read.

use super::{Cx, Operation, ident};
use crate::direct::{Change, DirectCx};
use crate::file::RawOp;
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

    fn revert(&self, _cx: &Cx<'_>, _out: &mut Vec<String>) -> Result<(), String> {
        Err(self.irreversible())
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
