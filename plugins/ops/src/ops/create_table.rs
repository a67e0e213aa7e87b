//! `create_table`: a table the old version does not know, made at once
//! (nothing of the old shape changes), seen by the new version's view.

use super::{Cx, Operation};
use crate::direct::{Change, DirectCx};
use crate::file::RawOp;
use crate::saved::Definition;

pub(crate) struct CreateTable {
    table: String,
    columns: Vec<String>,
}

impl CreateTable {
    pub(crate) fn from_raw(raw: &RawOp) -> Result<Self, String> {
        raw.only(&["table", "columns"])?;
        let columns = raw.columns.clone().unwrap_or_default();
        if columns.iter().all(|c| c.trim().is_empty()) {
            return Err(
                "create_table needs `columns`, each a column definition such as \"id bigint PRIMARY KEY\"".to_owned(),
            );
        }
        Ok(CreateTable {
            table: raw.required("table", &raw.table)?.to_owned(),
            columns,
        })
    }
}

impl Operation for CreateTable {
    fn table(&self) -> &str {
        &self.table
    }

    fn describe(&self) -> String {
        format!("create table {}", self.table)
    }

    fn check(&self, cx: &Cx<'_>) -> Result<(), String> {
        match cx.catalog {
            Some(c) if c.table(&self.table).is_some() => Err(format!("a table {} exists already", self.table)),
            _ => Ok(()),
        }
    }

    fn expand(&self, cx: &Cx<'_>, out: &mut Vec<String>) {
        out.push(format!(
            "CREATE TABLE {} ({})",
            cx.table(&self.table),
            self.columns.join(", ")
        ));
    }

    fn contract(&self, _cx: &Cx<'_>, _out: &mut Vec<String>) {}

    fn abort(&self, cx: &Cx<'_>, out: &mut Vec<String>) {
        out.push(format!("DROP TABLE IF EXISTS {}", cx.table(&self.table)));
    }

    fn revert(&self, cx: &Cx<'_>, _saved: Option<&Definition>, out: &mut Vec<String>) -> Result<(), String> {
        out.push(format!("DROP TABLE {}", cx.table(&self.table)));
        Ok(())
    }

    fn direct(&self, cx: &DirectCx, out: &mut Vec<Change>) -> Result<(), String> {
        out.push(Change::Plain(format!(
            "CREATE TABLE {} ({})",
            cx.ident(&self.table),
            self.columns.join(", ")
        )));
        Ok(())
    }

    fn direct_revert(&self, cx: &DirectCx, out: &mut Vec<Change>) -> Result<(), String> {
        out.push(Change::Plain(format!("DROP TABLE {}", cx.ident(&self.table))));
        Ok(())
    }

    fn creates_table(&self) -> bool {
        true
    }
}
