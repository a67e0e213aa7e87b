//! `add_column`: a column the old version does not know. With `up`, an
//! expression over the old shape's columns, rows the old version writes
//! get it computed and the rows already there are backfilled; `not_null`
//! is validated and set by `complete`, once the old version is gone.
//! With a constant `default` and no `up`, `NOT NULL` comes with the
//! column: PostgreSQL 11 and later fill the rows there are from the
//! default without a rewrite or a scan, and the old version, which does
//! not know the column, cannot write a NULL into it.

use super::{Cx, NotNull, Operation, ident};
use crate::direct::{Change, DirectCx};
use crate::file::RawOp;
use crate::saved::Definition;
use crate::shape::{Sync, View};

pub(crate) struct AddColumn {
    table: String,
    column: String,
    type_: String,
    default: Option<String>,
    not_null: bool,
    up: Option<String>,
}

impl AddColumn {
    pub(crate) fn from_raw(raw: &RawOp) -> Result<Self, String> {
        raw.only(&["table", "column", "type", "default", "not_null", "up"])?;
        let op = AddColumn {
            table: raw.required("table", &raw.table)?.to_owned(),
            column: raw.required("column", &raw.column)?.to_owned(),
            type_: raw.required("type", &raw.type_)?.to_owned(),
            default: raw.default.clone(),
            not_null: raw.not_null.unwrap_or(false),
            up: raw.up.clone(),
        };
        if op.not_null && op.default.is_none() && op.up.is_none() {
            return Err(format!(
                "add_column {}.{}: not_null needs `default` or `up`, a value for the rows there are and those the old version writes",
                op.table, op.column
            ));
        }
        Ok(op)
    }

    /// Whether `NOT NULL` waits for `complete`: with `up`, the backfill
    /// must fill the column first; without a default, it cannot be.
    fn not_null_at_complete(&self) -> bool {
        self.not_null && (self.up.is_some() || self.default.is_none())
    }

    fn not_null_of<'a>(&'a self, table: &'a str) -> NotNull<'a> {
        NotNull {
            table,
            checked: &self.column,
            column: &self.column,
        }
    }
}

impl Operation for AddColumn {
    fn table(&self) -> &str {
        &self.table
    }

    fn describe(&self) -> String {
        format!("add column {}.{} {}", self.table, self.column, self.type_)
    }

    fn check(&self, cx: &Cx<'_>) -> Result<(), String> {
        match cx.catalog.and_then(|c| c.table(&self.table)) {
            Some(t) if t.column(&self.column).is_some() => {
                Err(format!("table {} already has a column {}", self.table, self.column))
            }
            _ => Ok(()),
        }
    }

    fn expand(&self, cx: &Cx<'_>, out: &mut Vec<String>) {
        let table = cx.table(&self.table);
        let column = ident(&self.column);
        match (&self.default, &self.up) {
            // The rows there are get their value from the backfill, so the
            // default is for new rows only.
            (Some(default), Some(_)) => {
                out.push(format!("ALTER TABLE {table} ADD COLUMN {column} {}", self.type_));
                out.push(format!(
                    "ALTER TABLE {table} ALTER COLUMN {column} SET DEFAULT {default}"
                ));
            }
            // A constant default fills the rows there are without a rewrite
            // (PostgreSQL 11 and later).
            (Some(default), None) => {
                let not_null = if self.not_null { " NOT NULL" } else { "" };
                out.push(format!(
                    "ALTER TABLE {table} ADD COLUMN {column} {} DEFAULT {default}{not_null}",
                    self.type_
                ));
            }
            (None, _) => out.push(format!("ALTER TABLE {table} ADD COLUMN {column} {}", self.type_)),
        }
    }

    fn reshape(&self, view: &mut View) {
        view.show(&self.column, &self.column);
    }

    fn sync(&self, sync: &mut Sync) {
        if let Some(up) = &self.up {
            sync.from_old.push((self.column.clone(), up.clone()));
            sync.backfilled.push(self.column.clone());
        }
    }

    fn validate(&self, cx: &Cx<'_>, add: &mut Vec<String>, validate: &mut Vec<String>) {
        if self.not_null_at_complete() {
            self.not_null_of(&cx.table(&self.table)).validate(add, validate);
        }
    }

    fn contract(&self, cx: &Cx<'_>, out: &mut Vec<String>) {
        if self.not_null_at_complete() {
            self.not_null_of(&cx.table(&self.table)).set(out);
        }
    }

    fn abort(&self, cx: &Cx<'_>, out: &mut Vec<String>) {
        out.push(format!(
            "ALTER TABLE {} DROP COLUMN IF EXISTS {}",
            cx.table(&self.table),
            ident(&self.column)
        ));
    }

    fn revert(&self, cx: &Cx<'_>, _saved: Option<&Definition>, out: &mut Vec<String>) -> Result<(), String> {
        out.push(format!(
            "ALTER TABLE {} DROP COLUMN {}",
            cx.table(&self.table),
            ident(&self.column)
        ));
        Ok(())
    }

    fn direct(&self, cx: &DirectCx, out: &mut Vec<Change>) -> Result<(), String> {
        if self.up.is_some() {
            return Err(format!(
                "add_column {}.{}: `up` is kept computed by a trigger while both versions run, which only PostgreSQL's expand/contract has; here add the column with a `default` and fill it in a batched migration of its own",
                self.table, self.column
            ));
        }
        let mut clause = format!("ADD COLUMN {} {}", cx.ident(&self.column), self.type_);
        if let Some(default) = &self.default {
            clause.push_str(&format!(" DEFAULT {default}"));
        }
        if self.not_null {
            clause.push_str(" NOT NULL");
        }
        out.push(Change::Alter {
            table: self.table.clone(),
            clause,
        });
        Ok(())
    }

    fn direct_revert(&self, cx: &DirectCx, out: &mut Vec<Change>) -> Result<(), String> {
        out.push(Change::Alter {
            table: self.table.clone(),
            clause: format!("DROP COLUMN {}", cx.ident(&self.column)),
        });
        Ok(())
    }
}
