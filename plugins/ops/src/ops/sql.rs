//! `sql`: raw SQL for what no operation covers, run by the expand, its
//! `down` by an abort or a revert. It changes no shape: both versions see
//! what it makes.

use super::{Cx, Operation};
use crate::direct::{Change, DirectCx};
use crate::file::RawOp;
use crate::saved::Definition;

pub(crate) struct Sql {
    up: String,
    down: String,
}

impl Sql {
    pub(crate) fn from_raw(raw: &RawOp) -> Result<Self, String> {
        raw.only(&["up", "down"])?;
        Ok(Sql {
            up: raw.required("up", &raw.up)?.to_owned(),
            down: raw
                .required("down", &raw.down)
                .map_err(|e| format!("{e}: an abort runs it to undo `up`"))?
                .to_owned(),
        })
    }
}

impl Operation for Sql {
    fn table(&self) -> &str {
        ""
    }

    fn describe(&self) -> String {
        "run SQL".to_owned()
    }

    fn expand(&self, _cx: &Cx<'_>, out: &mut Vec<String>) {
        out.push(self.up.clone());
    }

    fn contract(&self, _cx: &Cx<'_>, _out: &mut Vec<String>) {}

    fn abort(&self, _cx: &Cx<'_>, out: &mut Vec<String>) {
        out.push(self.down.clone());
    }

    fn revert(&self, _cx: &Cx<'_>, _saved: Option<&Definition>, out: &mut Vec<String>) -> Result<(), String> {
        out.push(self.down.clone());
        Ok(())
    }

    fn direct(&self, _cx: &DirectCx, out: &mut Vec<Change>) -> Result<(), String> {
        out.push(Change::Plain(self.up.clone()));
        Ok(())
    }

    fn direct_revert(&self, _cx: &DirectCx, out: &mut Vec<Change>) -> Result<(), String> {
        out.push(Change::Plain(self.down.clone()));
        Ok(())
    }
}
