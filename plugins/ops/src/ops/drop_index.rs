//! `drop_index`: an index the new version no longer needs, dropped
//! `CONCURRENTLY` by `complete` (the old version may still use it until
//! then), between two of the contract's transactions.

use super::{Cx, Operation};
use crate::direct::{Change, DirectCx};
use crate::file::RawOp;

pub(crate) struct DropIndex {
    table: String,
    name: String,
}

impl DropIndex {
    pub(crate) fn from_raw(raw: &RawOp) -> Result<Self, String> {
        raw.only(&["table", "name"])?;
        Ok(DropIndex {
            table: raw.required("table", &raw.table)?.to_owned(),
            name: raw.required("name", &raw.name)?.to_owned(),
        })
    }

    fn irreversible(&self) -> String {
        format!(
            "drop_index {} cannot be undone yet: its definition is gone with it; make it again with create_index",
            self.name
        )
    }
}

impl Operation for DropIndex {
    fn table(&self) -> &str {
        &self.table
    }

    fn describe(&self) -> String {
        format!("drop index {} on {}", self.name, self.table)
    }

    fn expand(&self, _cx: &Cx<'_>, _out: &mut Vec<String>) {}

    fn contract_online(&self, cx: &Cx<'_>, out: &mut Vec<String>) -> Result<(), String> {
        out.push(format!("DROP INDEX CONCURRENTLY IF EXISTS {}", cx.table(&self.name)));
        Ok(())
    }

    fn contract(&self, _cx: &Cx<'_>, _out: &mut Vec<String>) {}

    fn abort(&self, _cx: &Cx<'_>, _out: &mut Vec<String>) {}

    fn revert(&self, _cx: &Cx<'_>, _out: &mut Vec<String>) -> Result<(), String> {
        Err(self.irreversible())
    }

    fn direct(&self, cx: &DirectCx, out: &mut Vec<Change>) -> Result<(), String> {
        out.push(super::create_index::drop_index(cx, &self.table, &self.name));
        Ok(())
    }

    fn direct_revert(&self, _cx: &DirectCx, _out: &mut Vec<Change>) -> Result<(), String> {
        Err(self.irreversible())
    }
}
