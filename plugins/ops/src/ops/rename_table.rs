//! `rename_table`: the new version sees the table under its new name
//! through its view; the physical table is renamed by `complete`.

use super::{Cx, Operation, ident};
use crate::direct::{Change, DirectCx};
use crate::file::RawOp;
use crate::saved::Definition;
use crate::shape::View;

pub(crate) struct RenameTable {
    table: String,
    to: String,
}

impl RenameTable {
    pub(crate) fn from_raw(raw: &RawOp) -> Result<Self, String> {
        raw.only(&["table", "to"])?;
        Ok(RenameTable {
            table: raw.required("table", &raw.table)?.to_owned(),
            to: raw.required("to", &raw.to)?.to_owned(),
        })
    }
}

impl Operation for RenameTable {
    fn table(&self) -> &str {
        &self.table
    }

    fn describe(&self) -> String {
        format!("rename table {} to {}", self.table, self.to)
    }

    fn check(&self, cx: &Cx<'_>) -> Result<(), String> {
        match cx.catalog {
            Some(c) if c.table(&self.to).is_some() => Err(format!("a table {} exists already", self.to)),
            _ => Ok(()),
        }
    }

    fn expand(&self, _cx: &Cx<'_>, _out: &mut Vec<String>) {}

    fn reshape(&self, view: &mut View) {
        view.name = self.to.clone();
    }

    fn contract(&self, cx: &Cx<'_>, out: &mut Vec<String>) {
        out.push(format!(
            "ALTER TABLE {} RENAME TO {}",
            cx.table(&self.table),
            ident(&self.to)
        ));
    }

    fn abort(&self, _cx: &Cx<'_>, _out: &mut Vec<String>) {}

    fn revert(&self, cx: &Cx<'_>, _saved: Option<&Definition>, out: &mut Vec<String>) -> Result<(), String> {
        out.push(format!(
            "ALTER TABLE {} RENAME TO {}",
            cx.table(&self.to),
            ident(&self.table)
        ));
        Ok(())
    }

    fn direct(&self, cx: &DirectCx, out: &mut Vec<Change>) -> Result<(), String> {
        out.push(Change::Alter {
            table: self.table.clone(),
            clause: format!("RENAME TO {}", cx.ident(&self.to)),
        });
        Ok(())
    }

    fn direct_revert(&self, cx: &DirectCx, out: &mut Vec<Change>) -> Result<(), String> {
        out.push(Change::Alter {
            table: self.to.clone(),
            clause: format!("RENAME TO {}", cx.ident(&self.table)),
        });
        Ok(())
    }
}
