//! `rename_column`: the new version sees the column under its new name
//! through its view; the physical column is renamed by `complete`.

use super::{Cx, Operation, ident};
use crate::direct::{Change, DirectCx};
use crate::file::RawOp;
use crate::saved::Definition;
use crate::shape::View;

pub(crate) struct RenameColumn {
    table: String,
    column: String,
    to: String,
}

impl RenameColumn {
    pub(crate) fn from_raw(raw: &RawOp) -> Result<Self, String> {
        raw.only(&["table", "column", "to"])?;
        Ok(RenameColumn {
            table: raw.required("table", &raw.table)?.to_owned(),
            column: raw.required("column", &raw.column)?.to_owned(),
            to: raw.required("to", &raw.to)?.to_owned(),
        })
    }
}

impl Operation for RenameColumn {
    fn table(&self) -> &str {
        &self.table
    }

    fn describe(&self) -> String {
        format!("rename column {}.{} to {}", self.table, self.column, self.to)
    }

    fn check(&self, cx: &Cx<'_>) -> Result<(), String> {
        let Some(table) = cx.catalog.and_then(|c| c.table(&self.table)) else {
            return Ok(());
        };
        if table.column(&self.column).is_none() {
            return Err(format!("table {} has no column {}", self.table, self.column));
        }
        if table.column(&self.to).is_some() {
            return Err(format!("table {} already has a column {}", self.table, self.to));
        }
        Ok(())
    }

    fn expand(&self, _cx: &Cx<'_>, _out: &mut Vec<String>) {}

    fn reshape(&self, view: &mut View) {
        view.rename(&self.column, &self.to);
    }

    fn contract(&self, cx: &Cx<'_>, out: &mut Vec<String>) {
        out.push(format!(
            "ALTER TABLE {} RENAME COLUMN {} TO {}",
            cx.table(&self.table),
            ident(&self.column),
            ident(&self.to)
        ));
    }

    fn abort(&self, _cx: &Cx<'_>, _out: &mut Vec<String>) {}

    fn revert(&self, cx: &Cx<'_>, _saved: Option<&Definition>, out: &mut Vec<String>) -> Result<(), String> {
        out.push(format!(
            "ALTER TABLE {} RENAME COLUMN {} TO {}",
            cx.table(&self.table),
            ident(&self.to),
            ident(&self.column)
        ));
        Ok(())
    }

    fn direct(&self, cx: &DirectCx, out: &mut Vec<Change>) -> Result<(), String> {
        out.push(Change::Alter {
            table: self.table.clone(),
            clause: format!("RENAME COLUMN {} TO {}", cx.ident(&self.column), cx.ident(&self.to)),
        });
        Ok(())
    }

    fn direct_revert(&self, cx: &DirectCx, out: &mut Vec<Change>) -> Result<(), String> {
        out.push(Change::Alter {
            table: self.table.clone(),
            clause: format!("RENAME COLUMN {} TO {}", cx.ident(&self.to), cx.ident(&self.column)),
        });
        Ok(())
    }
}
