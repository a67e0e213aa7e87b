//! `add_constraint`: a check, a foreign key or a unique constraint the
//! new version relies on. Enforced from `complete`, once the old version
//! (which may write rows that break it) is gone:
//! - a check or a foreign key is added `NOT VALID` in a brief
//!   transaction, so that only new writes are checked, then validated in
//!   another, a scan that stops no writes;
//! - a unique constraint has no `NOT VALID`: its index is built
//!   `CONCURRENTLY` between two transactions, then made the constraint
//!   (`USING INDEX`, no scan) in the contract's own.
//!
//! A `complete` whose validation or build fails leaves both versions
//! working and names the constraint; fix the rows and run it again (an
//! invalid build it left is dropped and built again).

use super::{Cx, Operation, ident};
use crate::direct::{Change, DirectCx};
use crate::file::RawOp;
use crate::saved::Definition;

pub(crate) struct AddConstraint {
    table: String,
    name: String,
    kind: Kind,
}

enum Kind {
    /// `CHECK (<expression>)`.
    Check(String),
    /// `FOREIGN KEY (<columns>) REFERENCES <references>`.
    ForeignKey { columns: Vec<String>, references: String },
    /// `UNIQUE (<columns>)`.
    Unique(Vec<String>),
}

impl AddConstraint {
    pub(crate) fn from_raw(raw: &RawOp) -> Result<Self, String> {
        raw.only(&["table", "name", "check", "columns", "references", "unique"])?;
        let table = raw.required("table", &raw.table)?.to_owned();
        let name = raw.required("name", &raw.name)?.to_owned();
        let columns = raw.columns.as_ref().filter(|c| !c.is_empty());
        let kind = match (&raw.check, columns, &raw.references, raw.unique) {
            (Some(check), None, None, None) => Kind::Check(check.trim().to_owned()),
            (None, Some(columns), Some(references), None) => Kind::ForeignKey {
                columns: columns.clone(),
                references: references.trim().to_owned(),
            },
            (None, Some(columns), None, Some(true)) => Kind::Unique(columns.clone()),
            _ => {
                return Err(format!(
                    "add_constraint {name} needs one of `check` (an expression), `columns` and `references` (\"accounts (id)\"), or `columns` and `unique = true`"
                ));
            }
        };
        Ok(AddConstraint { table, name, kind })
    }

    /// The constraint's definition after its name.
    fn definition(&self, quote: impl Fn(&str) -> String) -> String {
        match &self.kind {
            Kind::Check(check) => format!("CHECK ({check})"),
            Kind::ForeignKey { columns, references } => {
                format!("FOREIGN KEY ({}) REFERENCES {references}", list(columns, &quote))
            }
            Kind::Unique(columns) => format!("UNIQUE ({})", list(columns, &quote)),
        }
    }

    fn columns(&self) -> &[String] {
        match &self.kind {
            Kind::Check(_) => &[],
            Kind::ForeignKey { columns, .. } | Kind::Unique(columns) => columns,
        }
    }
}

fn list(columns: &[String], quote: impl Fn(&str) -> String) -> String {
    columns.iter().map(|c| quote(c)).collect::<Vec<_>>().join(", ")
}

impl Operation for AddConstraint {
    fn table(&self) -> &str {
        &self.table
    }

    fn describe(&self) -> String {
        let kind = match self.kind {
            Kind::Check(_) => "check",
            Kind::ForeignKey { .. } => "foreign key",
            Kind::Unique(_) => "unique constraint",
        };
        format!("add {kind} {} on {}", self.name, self.table)
    }

    fn check(&self, cx: &Cx<'_>) -> Result<(), String> {
        let Some(table) = cx.catalog.and_then(|c| c.table(&self.table)) else {
            return Ok(());
        };
        if let Some(missing) = self.columns().iter().find(|c| table.column(c).is_none()) {
            return Err(format!("table {} has no column {missing}", self.table));
        }
        Ok(())
    }

    fn expand(&self, _cx: &Cx<'_>, _out: &mut Vec<String>) {}

    fn validate(&self, cx: &Cx<'_>, add: &mut Vec<String>, validate: &mut Vec<String>) {
        if let Kind::Unique(_) = self.kind {
            return;
        }
        let (table, name) = (cx.table(&self.table), ident(&self.name));
        add.push(format!(
            "ALTER TABLE {table} ADD CONSTRAINT {name} {} NOT VALID",
            self.definition(ident)
        ));
        validate.push(format!("ALTER TABLE {table} VALIDATE CONSTRAINT {name}"));
    }

    /// A unique constraint's index, built where a build is allowed to
    /// take long: without a lock that stops writes. A duplicate fails the
    /// build and leaves it invalid; the next `complete` drops that and
    /// builds again.
    fn contract_online(&self, cx: &Cx<'_>, out: &mut Vec<String>) -> Result<(), String> {
        let Kind::Unique(columns) = &self.kind else {
            return Ok(());
        };
        super::create_index::build_concurrently(
            cx,
            &self.name,
            format!(
                "CREATE UNIQUE INDEX CONCURRENTLY {} ON {} ({})",
                ident(&self.name),
                cx.table(&self.table),
                list(columns, ident)
            ),
            out,
        )
    }

    /// The built index made the constraint: a catalog change, no scan.
    fn contract(&self, cx: &Cx<'_>, out: &mut Vec<String>) {
        if let Kind::Unique(_) = self.kind {
            let name = ident(&self.name);
            out.push(format!(
                "ALTER TABLE {} ADD CONSTRAINT {name} UNIQUE USING INDEX {name}",
                cx.table(&self.table)
            ));
        }
    }

    /// An abort may follow a `complete` that added the constraint and
    /// failed to validate it, or built a unique constraint's index and
    /// failed after.
    fn abort(&self, cx: &Cx<'_>, out: &mut Vec<String>) {
        out.push(format!(
            "ALTER TABLE {} DROP CONSTRAINT IF EXISTS {}",
            cx.table(&self.table),
            ident(&self.name)
        ));
        if let Kind::Unique(_) = self.kind {
            out.push(format!("DROP INDEX IF EXISTS {}", cx.table(&self.name)));
        }
    }

    fn revert(&self, cx: &Cx<'_>, _saved: Option<&Definition>, out: &mut Vec<String>) -> Result<(), String> {
        out.push(format!(
            "ALTER TABLE {} DROP CONSTRAINT {}",
            cx.table(&self.table),
            ident(&self.name)
        ));
        Ok(())
    }

    fn direct(&self, cx: &DirectCx, out: &mut Vec<Change>) -> Result<(), String> {
        if let (Kind::Unique(columns), waymark_plugin_sdk::Dialect::Sqlite) = (&self.kind, cx.dialect) {
            // SQLite cannot add a constraint without rebuilding the table;
            // a unique index enforces the same rule.
            out.push(Change::Plain(format!(
                "CREATE UNIQUE INDEX {} ON {} ({})",
                cx.ident(&self.name),
                cx.ident(&self.table),
                list(columns, |c| cx.ident(c))
            )));
            return Ok(());
        }
        cx.sqlite_rebuild(&self.describe())?;
        out.push(Change::Alter {
            table: self.table.clone(),
            clause: format!(
                "ADD CONSTRAINT {} {}",
                cx.ident(&self.name),
                self.definition(|c| cx.ident(c))
            ),
        });
        Ok(())
    }

    fn direct_revert(&self, cx: &DirectCx, out: &mut Vec<Change>) -> Result<(), String> {
        let what = match self.kind {
            Kind::Check(_) => "CONSTRAINT",
            Kind::ForeignKey { .. } => "FOREIGN KEY",
            // MySQL's unique constraint is its index; SQLite's is one.
            Kind::Unique(_) => {
                out.push(super::create_index::drop_index(cx, &self.table, &self.name));
                return Ok(());
            }
        };
        out.push(Change::Alter {
            table: self.table.clone(),
            clause: format!("DROP {what} {}", cx.ident(&self.name)),
        });
        Ok(())
    }
}
