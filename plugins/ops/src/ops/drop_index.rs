//! `drop_index`: an index the new version no longer needs, dropped
//! `CONCURRENTLY` by `complete` (the old version may still use it until
//! then), between two of the contract's transactions. The contract saves
//! its definition first; a revert builds it again from that, in the
//! revert's transaction (so not concurrently: writes to the table wait
//! for the build, as they do for any `CREATE INDEX`).

use super::{Cx, Operation};
use crate::catalog;
use crate::direct::{Change, DirectCx};
use crate::file::RawOp;
use crate::saved::Definition;

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

    fn saves(&self, cx: &Cx<'_>) -> Result<Option<Definition>, String> {
        Ok(catalog::index_definition(cx.schema, &self.name)
            .map_err(|e| e.message())?
            .map(Definition::Index))
    }

    fn revert(&self, cx: &Cx<'_>, saved: Option<&Definition>, out: &mut Vec<String>) -> Result<(), String> {
        match saved {
            Some(Definition::Index(create)) => out.push(create.clone()),
            _ if cx.catalog.is_none() => out.push(format!(
                "-- create index {} on {} again as complete saved it",
                self.name, self.table
            )),
            _ => {
                return Err(format!(
                    "drop_index {} cannot be undone: complete saved no definition of it (it was completed by a waymark that did not save them, or the index was gone already)",
                    self.name
                ));
            }
        }
        Ok(())
    }

    fn direct(&self, cx: &DirectCx, out: &mut Vec<Change>) -> Result<(), String> {
        out.push(super::create_index::drop_index(cx, &self.table, &self.name));
        Ok(())
    }

    fn direct_revert(&self, _cx: &DirectCx, _out: &mut Vec<Change>) -> Result<(), String> {
        Err(self.irreversible())
    }
}
