//! The operations, one file each, all behind one trait: the rest of the
//! component knows [`Operation`], never a particular operation.
//!
//! An operation says what each phase does to its table:
//! - `expand` (on `waymark up`): the physical changes both versions can
//!   live with (new columns, new tables), how the new version's view of the
//!   table differs from the old shape (`reshape`), and what the sync
//!   trigger computes for each side (`sync`);
//! - `contract` (on `waymark complete`): what the old version needed and
//!   the new one does not, dropped; `validate` runs first, in a
//!   transaction of its own, for the scans that must not hold the
//!   contract's locks;
//! - `abort` (on `waymark down` before `complete`): the expand undone;
//! - `revert` (on `waymark down` after `complete`): the whole change
//!   undone, where that can be done from what is left.

mod add_column;
mod add_constraint;
mod alter_column;
mod create_index;
mod create_table;
mod drop_column;
mod drop_index;
mod rename_column;
mod rename_table;
mod sql;

use crate::catalog::{Catalog, Column};
use crate::direct::{Change, DirectCx};
use crate::file::RawOp;
use crate::saved::Definition;
use crate::shape::{Sync, View};

/// What an operation runs against.
pub(crate) struct Cx<'a> {
    /// The schema the tables live in (`current_schema()`).
    pub(crate) schema: &'a str,
    /// The tables as they are now; `None` while planning, which has no
    /// database access.
    pub(crate) catalog: Option<&'a Catalog>,
}

impl<'a> Cx<'a> {
    /// `table.column` as the catalog has it; `None` while planning.
    pub(crate) fn column(&self, table: &str, column: &str) -> Option<&'a Column> {
        self.catalog.and_then(|c| c.table(table)).and_then(|t| t.column(column))
    }

    /// `schema.table`, quoted; only `table` while planning, when the
    /// connection's schema is not known.
    pub(crate) fn table(&self, table: &str) -> String {
        if self.schema.is_empty() {
            return ident(table);
        }
        format!("{}.{}", ident(self.schema), ident(table))
    }
}

/// One operation of an `ops.toml`.
pub(crate) trait Operation {
    /// The physical table it changes (for `create_table`, the one it makes).
    fn table(&self) -> &str;
    /// A sentence for `plan`.
    fn describe(&self) -> String;
    /// Checks against the catalog before anything runs; the message says
    /// what to write instead.
    fn check(&self, _cx: &Cx<'_>) -> Result<(), String> {
        Ok(())
    }
    /// The expand's statements.
    fn expand(&self, cx: &Cx<'_>, out: &mut Vec<String>);
    /// The new version's view of the table.
    fn reshape(&self, _view: &mut View) {}
    /// What the sync trigger computes.
    fn sync(&self, _sync: &mut Sync) {}
    /// The contract's checks: added `NOT VALID` (a brief lock that stops
    /// writes) into `add`, and validated (a scan that does not) into
    /// `validate`; each group commits on its own, before the contract's DDL.
    fn validate(&self, _cx: &Cx<'_>, _add: &mut Vec<String>, _validate: &mut Vec<String>) {}
    /// Statements the expand runs after the backfill, each outside any
    /// transaction (an index built `CONCURRENTLY`); `cx.catalog` is
    /// `None` while planning. Safe to run again on a resume.
    fn expand_online(&self, _cx: &Cx<'_>, _out: &mut Vec<String>) -> Result<(), String> {
        Ok(())
    }
    /// Statements the contract runs after its validations, each outside
    /// any transaction; `cx.catalog` is `None` while planning. Safe to run
    /// again on a resume.
    fn contract_online(&self, _cx: &Cx<'_>, _out: &mut Vec<String>) -> Result<(), String> {
        Ok(())
    }
    /// The contract's statements.
    fn contract(&self, cx: &Cx<'_>, out: &mut Vec<String>);
    /// The abort's statements.
    fn abort(&self, cx: &Cx<'_>, out: &mut Vec<String>);
    /// What its contract destroys that `revert` needs (the host keeps a
    /// dropped column's values, not its definition), read just before the
    /// contract's first transaction, which saves it.
    fn saves(&self, _cx: &Cx<'_>) -> Result<Option<Definition>, String> {
        Ok(None)
    }
    /// The statements undoing a completed operation, or why it cannot be.
    /// `saved` is what `saves` read; `None` while planning (`cx.catalog`
    /// is `None` then too), which says in words what it will run.
    fn revert(&self, cx: &Cx<'_>, saved: Option<&Definition>, out: &mut Vec<String>) -> Result<(), String>;
    /// Whether its contract drops data the host keeps a copy of: such a
    /// contract runs first, so that the copy is read before any other
    /// statement of the contract locks the table.
    fn contract_first(&self) -> bool {
        false
    }
    /// MySQL/MariaDB and SQLite, which run no versions: the change made at
    /// once (`up`), or why the dialect cannot make it without a copy.
    fn direct(&self, cx: &DirectCx, out: &mut Vec<Change>) -> Result<(), String>;
    /// ... and undone (`down`).
    fn direct_revert(&self, cx: &DirectCx, out: &mut Vec<Change>) -> Result<(), String>;
    /// Whether it makes a new table rather than changing one.
    fn creates_table(&self) -> bool {
        false
    }
}

/// Reads one `[[op]]`.
pub(crate) fn from_raw(raw: &RawOp) -> Result<Box<dyn Operation>, String> {
    Ok(match raw.op.as_str() {
        "create_table" => Box::new(create_table::CreateTable::from_raw(raw)?),
        "add_column" => Box::new(add_column::AddColumn::from_raw(raw)?),
        "add_constraint" => Box::new(add_constraint::AddConstraint::from_raw(raw)?),
        "drop_column" => Box::new(drop_column::DropColumn::from_raw(raw)?),
        "rename_column" => Box::new(rename_column::RenameColumn::from_raw(raw)?),
        "rename_table" => Box::new(rename_table::RenameTable::from_raw(raw)?),
        "alter_type" | "set_not_null" | "drop_not_null" => Box::new(alter_column::AlterColumn::from_raw(raw)?),
        "create_index" => Box::new(create_index::CreateIndex::from_raw(raw)?),
        "drop_index" => Box::new(drop_index::DropIndex::from_raw(raw)?),
        "sql" => Box::new(sql::Sql::from_raw(raw)?),
        other => {
            return Err(format!("unknown op {other:?}; the operations are {}", NAMES.join(", ")));
        }
    })
}

/// Every operation's name, as `op = "..."` takes it.
pub(crate) const NAMES: &[&str] = &[
    "create_table",
    "add_column",
    "drop_column",
    "rename_column",
    "rename_table",
    "alter_type",
    "set_not_null",
    "drop_not_null",
    "add_constraint",
    "create_index",
    "drop_index",
    "sql",
];

/// A `NOT NULL` made without a scan under a lock that stops writes: a
/// check added `NOT VALID` and validated (by `complete`, in a transaction
/// of its own), then `SET NOT NULL`, which trusts the validated check, and
/// the check dropped.
pub(crate) struct NotNull<'a> {
    /// The table, quoted.
    pub(crate) table: &'a str,
    /// The column the check reads (before the contract renames it).
    pub(crate) checked: &'a str,
    /// The column that becomes NOT NULL (after the contract's renames).
    pub(crate) column: &'a str,
}

impl NotNull<'_> {
    fn constraint(&self) -> String {
        cut(&format!("_waymark_nn_{}", self.column))
    }

    /// The check, added (into `add`) and validated (into `validate`).
    /// Committed apart: `ADD CONSTRAINT` holds ACCESS EXCLUSIVE until its
    /// transaction ends, and in one with the validation that would stop
    /// every write for the whole scan.
    pub(crate) fn validate(&self, add: &mut Vec<String>, validate: &mut Vec<String>) {
        let (table, constraint) = (self.table, ident(&self.constraint()));
        add.push(format!(
            "ALTER TABLE {table} ADD CONSTRAINT {constraint} CHECK ({} IS NOT NULL) NOT VALID",
            ident(self.checked)
        ));
        validate.push(format!("ALTER TABLE {table} VALIDATE CONSTRAINT {constraint}"));
    }

    /// `SET NOT NULL`, and the check dropped.
    pub(crate) fn set(&self, out: &mut Vec<String>) {
        let table = self.table;
        out.push(format!(
            "ALTER TABLE {table} ALTER COLUMN {} SET NOT NULL",
            ident(self.column)
        ));
        out.push(format!(
            "ALTER TABLE {table} DROP CONSTRAINT {}",
            ident(&self.constraint())
        ));
    }
}

/// `name` quoted as a PostgreSQL identifier.
pub(crate) fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The hidden column holding `column`'s new shape while both versions
/// run. One migration in flight per table, so one name per column is
/// enough; cut to PostgreSQL's 63 bytes.
pub(crate) fn shadow(column: &str) -> String {
    cut(&format!("_waymark_new_{column}"))
}

/// `name` cut to 63 bytes at a character boundary.
pub(crate) fn cut(name: &str) -> String {
    let mut end = name.len().min(63);
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    name[..end].to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(op: &str) -> RawOp {
        RawOp {
            op: op.to_owned(),
            table: Some("users".to_owned()),
            ..RawOp::default()
        }
    }

    #[test]
    fn an_unknown_op_lists_the_known_ones() {
        let e = from_raw(&raw("rename_colum")).err().unwrap();
        assert!(
            e.starts_with("unknown op \"rename_colum\"; the operations are create_table,"),
            "{e}"
        );
    }

    #[test]
    fn a_missing_or_misplaced_field_is_named() {
        let e = from_raw(&raw("rename_column")).err().unwrap();
        assert_eq!(e, "rename_column needs `column`");
        let mut r = raw("drop_column");
        r.column = Some("c".to_owned());
        r.to = Some("d".to_owned());
        assert_eq!(from_raw(&r).err().unwrap(), "drop_column does not take `to`");
    }

    #[test]
    fn shadow_names_fit_postgres() {
        assert_eq!(shadow("amount"), "_waymark_new_amount");
        assert_eq!(shadow(&format!("a{}", "é".repeat(40))).len(), 62);
    }
}
