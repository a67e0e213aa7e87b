//! `add_constraint`: a check or a foreign key the new version relies on.
//! Enforced from `complete`, once the old version (which may write rows
//! that break it) is gone: added `NOT VALID` in a brief transaction, so
//! that only new writes are checked, then validated in another, a scan
//! that stops no writes. A `complete` whose validation fails leaves both
//! versions working and names the constraint; fix the rows and run it
//! again.

use super::{Cx, Operation, ident};
use crate::direct::{Change, DirectCx};
use crate::file::RawOp;

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
}

impl AddConstraint {
    pub(crate) fn from_raw(raw: &RawOp) -> Result<Self, String> {
        raw.only(&["table", "name", "check", "columns", "references"])?;
        let table = raw.required("table", &raw.table)?.to_owned();
        let name = raw.required("name", &raw.name)?.to_owned();
        let kind = match (&raw.check, &raw.columns, &raw.references) {
            (Some(check), None, None) => Kind::Check(check.trim().to_owned()),
            (None, Some(columns), Some(references)) if !columns.is_empty() => Kind::ForeignKey {
                columns: columns.clone(),
                references: references.trim().to_owned(),
            },
            _ => {
                return Err(format!(
                    "add_constraint {name} needs either `check` (an expression) or `columns` and `references` (\"accounts (id)\"), not both"
                ));
            }
        };
        Ok(AddConstraint { table, name, kind })
    }

    /// The constraint's definition after its name.
    fn definition(&self, quote: impl Fn(&str) -> String) -> String {
        match &self.kind {
            Kind::Check(check) => format!("CHECK ({check})"),
            Kind::ForeignKey { columns, references } => format!(
                "FOREIGN KEY ({}) REFERENCES {references}",
                columns.iter().map(|c| quote(c)).collect::<Vec<_>>().join(", ")
            ),
        }
    }
}

impl Operation for AddConstraint {
    fn table(&self) -> &str {
        &self.table
    }

    fn describe(&self) -> String {
        let kind = match self.kind {
            Kind::Check(_) => "check",
            Kind::ForeignKey { .. } => "foreign key",
        };
        format!("add {kind} {} on {}", self.name, self.table)
    }

    fn check(&self, cx: &Cx<'_>) -> Result<(), String> {
        let Some(table) = cx.catalog.and_then(|c| c.table(&self.table)) else {
            return Ok(());
        };
        if let Kind::ForeignKey { columns, .. } = &self.kind
            && let Some(missing) = columns.iter().find(|c| table.column(c).is_none())
        {
            return Err(format!("table {} has no column {missing}", self.table));
        }
        Ok(())
    }

    fn expand(&self, _cx: &Cx<'_>, _out: &mut Vec<String>) {}

    fn validate(&self, cx: &Cx<'_>, add: &mut Vec<String>, validate: &mut Vec<String>) {
        let (table, name) = (cx.table(&self.table), ident(&self.name));
        add.push(format!(
            "ALTER TABLE {table} ADD CONSTRAINT {name} {} NOT VALID",
            self.definition(ident)
        ));
        validate.push(format!("ALTER TABLE {table} VALIDATE CONSTRAINT {name}"));
    }

    fn contract(&self, _cx: &Cx<'_>, _out: &mut Vec<String>) {}

    /// An abort may follow a `complete` that added the constraint and
    /// failed to validate it.
    fn abort(&self, cx: &Cx<'_>, out: &mut Vec<String>) {
        out.push(format!(
            "ALTER TABLE {} DROP CONSTRAINT IF EXISTS {}",
            cx.table(&self.table),
            ident(&self.name)
        ));
    }

    fn revert(&self, cx: &Cx<'_>, out: &mut Vec<String>) -> Result<(), String> {
        out.push(format!(
            "ALTER TABLE {} DROP CONSTRAINT {}",
            cx.table(&self.table),
            ident(&self.name)
        ));
        Ok(())
    }

    fn direct(&self, cx: &DirectCx, out: &mut Vec<Change>) -> Result<(), String> {
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
        };
        out.push(Change::Alter {
            table: self.table.clone(),
            clause: format!("DROP {what} {}", cx.ident(&self.name)),
        });
        Ok(())
    }
}
