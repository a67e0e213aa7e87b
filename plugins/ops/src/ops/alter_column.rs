//! `alter_type`, `set_not_null` and `drop_not_null`: a column whose new
//! shape the old version could not live with. The new shape is a hidden
//! column beside the old one (`_waymark_new_<column>`), kept in step by
//! the trigger both ways (`up` computes it from the old shape, `down` the
//! old column from the new shape) and backfilled; `complete` drops the
//! old column and gives the hidden one its name, having saved the old
//! column's definition. The column's indexes are built again over the
//! hidden column, concurrently, after the backfill (`twin`), and take the
//! old ones' names at `complete`. A revert after `complete` changes the type back
//! (each value computed by `down`, a rewrite of the table under its
//! lock: a way back, not an online change) and restores the default.

use super::create_index::build_concurrently;
use super::{Cx, NotNull, Operation, cut, ident, shadow};
use crate::catalog;
use crate::direct::{Change, DirectCx};
use crate::file::RawOp;
use crate::saved::Definition;
use crate::shape::{Sync, View};
use crate::twin;

pub(crate) struct AlterColumn {
    op: String,
    table: String,
    column: String,
    /// The new type; `None`: the column's own.
    type_: Option<String>,
    default: Option<String>,
    /// `Some(true)`: set, `Some(false)`: dropped, `None`: as the column is.
    not_null: Option<bool>,
    up: String,
    down: String,
}

impl AlterColumn {
    pub(crate) fn from_raw(raw: &RawOp) -> Result<Self, String> {
        let table = raw.required("table", &raw.table)?.to_owned();
        let column = raw.required("column", &raw.column)?.to_owned();
        let (type_, not_null, up, down) = match raw.op.as_str() {
            "alter_type" => {
                raw.only(&["table", "column", "type", "default", "up", "down"])?;
                (
                    Some(raw.required("type", &raw.type_)?.to_owned()),
                    None,
                    raw.required("up", &raw.up)?.to_owned(),
                    raw.required("down", &raw.down)?.to_owned(),
                )
            }
            "set_not_null" => {
                raw.only(&["table", "column", "up", "down"])?;
                let up = raw.required("up", &raw.up).map_err(|e| {
                    format!("{e}, the value for NULLs the old version writes, such as coalesce({column}, '')")
                })?;
                (
                    None,
                    Some(true),
                    up.to_owned(),
                    raw.down.clone().unwrap_or_else(|| ident(&column)),
                )
            }
            _ => {
                raw.only(&["table", "column", "up", "down"])?;
                let down = raw
                    .required("down", &raw.down)
                    .map_err(|e| format!("{e}, the value the old version reads for NULLs the new one writes"))?;
                (
                    None,
                    Some(false),
                    raw.up.clone().unwrap_or_else(|| ident(&column)),
                    down.to_owned(),
                )
            }
        };
        Ok(AlterColumn {
            op: raw.op.clone(),
            table,
            column,
            type_,
            default: raw.default.clone(),
            not_null,
            up,
            down,
        })
    }

    fn shadow(&self) -> String {
        shadow(&self.column)
    }

    fn not_null_of<'a>(&'a self, table: &'a str, shadow: &'a str) -> NotNull<'a> {
        NotNull {
            table,
            checked: shadow,
            column: &self.column,
        }
    }

    fn irreversible(&self) -> String {
        format!(
            "alter_type {}.{} cannot be undone yet: its old type is gone with it",
            self.table, self.column
        )
    }

    fn unsaved(&self) -> String {
        format!(
            "alter_type {}.{} cannot be undone: complete saved no definition of its old column (it was completed by a waymark that did not save them)",
            self.table, self.column
        )
    }

    /// MySQL/MariaDB's `MODIFY COLUMN`, which restates the whole column.
    fn modify(&self, cx: &DirectCx, definition: String) -> Change {
        Change::Alter {
            table: self.table.clone(),
            clause: format!("MODIFY COLUMN {} {definition}", cx.ident(&self.column)),
        }
    }

    /// The column's indexes, built again over its hidden column unless a
    /// valid build is there (a resume).
    /// `planned` says what it does while planning, when the indexes are
    /// not known.
    fn build_twins(&self, cx: &Cx<'_>, out: &mut Vec<String>, planned: &str) -> Result<(), String> {
        let Some(physical) = cx.catalog.and_then(|c| c.table(&self.table)) else {
            out.push(format!(
                "-- the indexes that read {}.{}, {planned}",
                self.table, self.column
            ));
            return Ok(());
        };
        for twin in twin::of(physical, &self.column)? {
            build_concurrently(cx, &twin.name, twin.create, out)?;
        }
        Ok(())
    }

    /// Whether the new shape is NOT NULL, as asked or as the column is.
    fn not_null(&self, cx: &Cx<'_>) -> bool {
        self.not_null
            .unwrap_or_else(|| cx.column(&self.table, &self.column).is_some_and(|c| c.not_null))
    }
}

impl Operation for AlterColumn {
    fn table(&self) -> &str {
        &self.table
    }

    fn describe(&self) -> String {
        match &self.type_ {
            Some(t) => format!("change the type of {}.{} to {t}", self.table, self.column),
            None => format!("{} on {}.{}", self.op, self.table, self.column),
        }
    }

    fn check(&self, cx: &Cx<'_>) -> Result<(), String> {
        let Some(table) = cx.catalog.and_then(|c| c.table(&self.table)) else {
            return Ok(());
        };
        if table.column(&self.column).is_none() {
            return Err(format!("table {} has no column {}", self.table, self.column));
        }
        let constraints = catalog::constraints_on(&cx.table(&self.table), &self.column).map_err(|e| e.message())?;
        if !constraints.is_empty() {
            return Err(format!(
                "{} {}.{}: constraints {} name the column, and constraints are not carried over to its new shape yet (its indexes are); drop them in a migration before this one and add them again after `complete`",
                self.op,
                self.table,
                self.column,
                constraints.join(", ")
            ));
        }
        Ok(())
    }

    fn expand(&self, cx: &Cx<'_>, out: &mut Vec<String>) {
        let table = cx.table(&self.table);
        let old = cx
            .catalog
            .and_then(|c| c.table(&self.table))
            .and_then(|t| t.column(&self.column));
        let type_ = match (&self.type_, old) {
            (Some(t), _) => t.clone(),
            (None, Some(c)) => c.type_.clone(),
            (None, None) => format!("<the type of {}>", self.column),
        };
        out.push(format!(
            "ALTER TABLE {table} ADD COLUMN {} {type_}",
            ident(&self.shadow())
        ));
        // The default goes with the column when its type stays.
        let default = match (&self.default, &self.type_) {
            (Some(d), _) => Some(d.clone()),
            (None, None) => old.and_then(|c| c.default.clone()),
            (None, Some(_)) => None,
        };
        if let Some(default) = default {
            out.push(format!(
                "ALTER TABLE {table} ALTER COLUMN {} SET DEFAULT {default}",
                ident(&self.shadow())
            ));
        }
    }

    fn reshape(&self, view: &mut View) {
        view.show(&self.column, &self.shadow());
    }

    fn expand_online(&self, cx: &Cx<'_>, out: &mut Vec<String>) -> Result<(), String> {
        self.build_twins(
            cx,
            out,
            "built again over its new shape, one at a time, without stopping writes",
        )
    }

    /// Again before the contract drops the old column, which drops the
    /// old indexes: a twin that is missing or invalid by then is built.
    fn contract_online(&self, cx: &Cx<'_>, out: &mut Vec<String>) -> Result<(), String> {
        self.build_twins(cx, out, "built again over its new shape where up left none valid")
    }

    fn sync(&self, sync: &mut Sync) {
        sync.from_old.push((self.shadow(), self.up.clone()));
        sync.from_new.push((self.column.clone(), self.down.clone()));
        sync.backfilled.push(self.shadow());
    }

    fn validate(&self, cx: &Cx<'_>, add: &mut Vec<String>, validate: &mut Vec<String>) {
        if self.not_null(cx) {
            let (table, shadow) = (cx.table(&self.table), self.shadow());
            self.not_null_of(&table, &shadow).validate(add, validate);
        }
    }

    fn contract(&self, cx: &Cx<'_>, out: &mut Vec<String>) {
        let table = cx.table(&self.table);
        // Renamed out of the way before it is dropped: its values are the
        // new column's, converted, so the host keeps no copy of them.
        let old = cut(&format!("_waymark_old_{}", self.column));
        out.push(format!(
            "ALTER TABLE {table} RENAME COLUMN {} TO {}",
            ident(&self.column),
            ident(&old)
        ));
        out.push(format!(
            "ALTER TABLE {table} RENAME COLUMN {} TO {}",
            ident(&self.shadow()),
            ident(&self.column)
        ));
        out.push(format!("ALTER TABLE {table} DROP COLUMN {}", ident(&old)));
        // The old indexes went with the old column; the twins take their
        // names.
        match cx.catalog.and_then(|c| c.table(&self.table)) {
            Some(physical) => {
                // `contract_online`, which ran first, refused an index
                // whose definition it could not rewrite.
                for twin in twin::of(physical, &self.column).unwrap_or_default() {
                    out.push(format!(
                        "ALTER INDEX {} RENAME TO {}",
                        cx.table(&twin.name),
                        ident(&twin.of.name)
                    ));
                }
            }
            None => out.push(format!(
                "-- the indexes built again over {}'s new shape renamed to the old indexes' names",
                self.column
            )),
        }
        if self.not_null(cx) {
            let shadow = self.shadow();
            self.not_null_of(&table, &shadow).set(out);
        }
    }

    fn abort(&self, cx: &Cx<'_>, out: &mut Vec<String>) {
        out.push(format!(
            "ALTER TABLE {} DROP COLUMN IF EXISTS {}",
            cx.table(&self.table),
            ident(&self.shadow())
        ));
    }

    fn saves(&self, cx: &Cx<'_>) -> Result<Option<Definition>, String> {
        if self.type_.is_none() {
            return Ok(None);
        }
        Ok(cx.column(&self.table, &self.column).map(Definition::of))
    }

    fn revert(&self, cx: &Cx<'_>, saved: Option<&Definition>, out: &mut Vec<String>) -> Result<(), String> {
        let table = cx.table(&self.table);
        let column = ident(&self.column);
        if self.type_.is_some() {
            match saved {
                Some(Definition::Column { type_, default, .. }) => {
                    // The new default may not convert to the old type.
                    out.push(format!("ALTER TABLE {table} ALTER COLUMN {column} DROP DEFAULT"));
                    out.push(format!(
                        "ALTER TABLE {table} ALTER COLUMN {column} TYPE {type_} USING ({})",
                        self.down
                    ));
                    if let Some(default) = default {
                        out.push(format!("ALTER TABLE {table} ALTER COLUMN {column} SET DEFAULT {default}"));
                    }
                }
                _ if cx.catalog.is_none() => out.push(format!(
                    "-- change {}.{} back to its type before complete, as complete saved it, each value computed by `down`",
                    self.table, self.column
                )),
                _ => return Err(self.unsaved()),
            }
        }
        match self.not_null {
            Some(true) => {
                out.push(format!("ALTER TABLE {table} ALTER COLUMN {column} DROP NOT NULL"));
                // The old column, and with it which values were NULL, is
                // gone; a `down` given (`nullif(email, 'unknown')`) says
                // how to tell them, and puts them back.
                if self.down != column {
                    out.push(format!(
                        "UPDATE {table} SET {column} = ({down}) WHERE {column} IS DISTINCT FROM ({down})",
                        down = self.down
                    ));
                }
            }
            Some(false) => out.push(format!(
                "UPDATE {table} SET {col} = ({down}) WHERE {col} IS NULL",
                col = ident(&self.column),
                down = self.down
            )),
            None => {}
        }
        if self.not_null == Some(false) {
            out.push(format!(
                "ALTER TABLE {table} ALTER COLUMN {} SET NOT NULL",
                ident(&self.column)
            ));
        }
        Ok(())
    }

    fn direct(&self, cx: &DirectCx, out: &mut Vec<Change>) -> Result<(), String> {
        cx.sqlite_rebuild(&self.describe())?;
        let def = cx.column(&self.table, &self.column)?;
        let definition = match (&self.type_, self.not_null) {
            (Some(type_), _) => {
                let mut d = def.with_type(type_);
                if let Some(default) = &self.default {
                    d.push_str(&format!(" DEFAULT {default}"));
                }
                d
            }
            (None, Some(true)) => {
                // The NULLs there are, fixed first: the server refuses
                // NOT NULL over them.
                out.push(Change::Plain(format!(
                    "UPDATE {table} SET {col} = ({up}) WHERE {col} IS NULL",
                    table = cx.ident(&self.table),
                    col = cx.ident(&self.column),
                    up = self.up
                )));
                def.with_not_null(true)
            }
            (None, _) => def.with_not_null(false),
        };
        out.push(self.modify(cx, definition));
        Ok(())
    }

    fn direct_revert(&self, cx: &DirectCx, out: &mut Vec<Change>) -> Result<(), String> {
        cx.sqlite_rebuild(&self.describe())?;
        let def = cx.column(&self.table, &self.column)?;
        match self.not_null {
            Some(true) => out.push(self.modify(cx, def.with_not_null(false))),
            Some(false) => {
                out.push(Change::Plain(format!(
                    "UPDATE {table} SET {col} = ({down}) WHERE {col} IS NULL",
                    table = cx.ident(&self.table),
                    col = cx.ident(&self.column),
                    down = self.down
                )));
                out.push(self.modify(cx, def.with_not_null(true)));
            }
            None => return Err(self.irreversible()),
        }
        Ok(())
    }
}
