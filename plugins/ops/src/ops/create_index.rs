//! `create_index`: an index built `CONCURRENTLY` after the backfill, so
//! that it is built once, over the finished column, without a lock that
//! stops writes. It runs between two of the expand's transactions (the
//! host commits the one in progress first); a build a killed run left
//! invalid is dropped and built again on the resume.

use super::{Cx, Operation, ident};
use crate::catalog;
use crate::direct::{Change, DirectCx};
use crate::file::RawOp;
use crate::saved::Definition;

pub(crate) struct CreateIndex {
    table: String,
    name: String,
    columns: Vec<String>,
    unique: bool,
}

impl CreateIndex {
    pub(crate) fn from_raw(raw: &RawOp) -> Result<Self, String> {
        raw.only(&["table", "name", "columns", "unique"])?;
        let columns = raw.columns.clone().unwrap_or_default();
        if columns.iter().all(|c| c.trim().is_empty()) {
            return Err(
                "create_index needs `columns`, each a column or an expression such as \"lower(email)\"".to_owned(),
            );
        }
        Ok(CreateIndex {
            table: raw.required("table", &raw.table)?.to_owned(),
            name: raw.required("name", &raw.name)?.to_owned(),
            columns,
            unique: raw.unique.unwrap_or(false),
        })
    }

    fn unique(&self) -> &'static str {
        if self.unique { "UNIQUE " } else { "" }
    }
}

impl Operation for CreateIndex {
    fn table(&self) -> &str {
        &self.table
    }

    fn describe(&self) -> String {
        format!(
            "create {}index {} on {}",
            self.unique().to_lowercase(),
            self.name,
            self.table
        )
    }

    fn expand(&self, _cx: &Cx<'_>, _out: &mut Vec<String>) {}

    fn expand_online(&self, cx: &Cx<'_>, out: &mut Vec<String>) -> Result<(), String> {
        build_concurrently(
            cx,
            &self.name,
            format!(
                "CREATE {}INDEX CONCURRENTLY {} ON {} ({})",
                self.unique(),
                ident(&self.name),
                cx.table(&self.table),
                self.columns.join(", ")
            ),
            out,
        )
    }

    fn contract(&self, _cx: &Cx<'_>, _out: &mut Vec<String>) {}

    fn abort(&self, cx: &Cx<'_>, out: &mut Vec<String>) {
        out.push(format!("DROP INDEX IF EXISTS {}", cx.table(&self.name)));
    }

    fn revert(&self, cx: &Cx<'_>, _saved: Option<&Definition>, out: &mut Vec<String>) -> Result<(), String> {
        out.push(format!("DROP INDEX {}", cx.table(&self.name)));
        Ok(())
    }

    fn direct(&self, cx: &DirectCx, out: &mut Vec<Change>) -> Result<(), String> {
        let columns = self.columns.join(", ");
        out.push(match cx.dialect {
            waymark_plugin_sdk::Dialect::Mysql => Change::Alter {
                table: self.table.clone(),
                clause: format!("ADD {}INDEX {} ({columns})", self.unique(), cx.ident(&self.name)),
            },
            _ => Change::Plain(format!(
                "CREATE {}INDEX {} ON {} ({columns})",
                self.unique(),
                cx.ident(&self.name),
                cx.ident(&self.table)
            )),
        });
        Ok(())
    }

    fn direct_revert(&self, cx: &DirectCx, out: &mut Vec<Change>) -> Result<(), String> {
        out.push(drop_index(cx, &self.table, &self.name));
        Ok(())
    }
}

/// `create`, an index `name` built `CONCURRENTLY`, unless a valid one is
/// there already (a resume); an invalid one, a build a killed run or a
/// duplicate stopped, is dropped first. `cx.catalog` is `None` while
/// planning, which shows the build alone.
pub(super) fn build_concurrently(cx: &Cx<'_>, name: &str, create: String, out: &mut Vec<String>) -> Result<(), String> {
    if cx.catalog.is_some() {
        match catalog::index_valid(cx.schema, name).map_err(|e| e.message())? {
            Some(true) => return Ok(()),
            Some(false) => out.push(format!("DROP INDEX CONCURRENTLY IF EXISTS {}", cx.table(name))),
            None => {}
        }
    }
    out.push(create);
    Ok(())
}

/// `DROP INDEX` as each dialect takes it.
pub(super) fn drop_index(cx: &DirectCx, table: &str, name: &str) -> Change {
    match cx.dialect {
        waymark_plugin_sdk::Dialect::Mysql => Change::Alter {
            table: table.to_owned(),
            clause: format!("DROP INDEX {}", cx.ident(name)),
        },
        _ => Change::Plain(format!("DROP INDEX {}", cx.ident(name))),
    }
}
