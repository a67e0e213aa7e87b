//! `ALTER COLUMN ... TYPE` that rewrites the table. PostgreSQL keeps the
//! table's file only where the old values are valid bits of the new type
//! (a `varchar` made longer or unbounded, `varchar` to `text`, a `numeric`
//! given more precision at the same scale); anything else rewrites every
//! row and rebuilds every index under `ACCESS EXCLUSIVE`.
//!
//! The column's current type comes from earlier statements of the plan, or
//! from the database's catalog where there is one (the engine asks it); a
//! change whose old type neither knows is said as a rewrite unless it
//! only widens, and says that lint could not see the old type.

use sqlparser::ast::{AlterColumnOperation, AlterTableOperation, Statement};

use super::POSTGRES;
use crate::sql::lint::{Claim, Context, Rule, Severity, bare};

pub(crate) const RULE: Rule = Rule {
    id: "alter-column-type",
    dialects: POSTGRES,
    severity: Severity::Error,
    lock: "ACCESS EXCLUSIVE on the table, while every row is rewritten and every index rebuilt",
    why: "a type change whose old values are not already valid as the new type rewrites the whole table and \
          rebuilds its indexes, and no query gets through meanwhile; widening a varchar or a numeric, or varchar \
          to text, does not",
    fix: "add a column of the new type, keep it in step with a trigger, backfill it in batches, then switch \
          readers over and drop the old column (expand/contract)",
    once_per_migration: false,
    by_size: true,
    claims: &[Claim {
        example: "ALTER TABLE accounts ALTER COLUMN age TYPE bigint;",
        mode: "ACCESS EXCLUSIVE",
        on: "accounts",
        rewrites: true,
    }],
    check,
    unparsed: None,
};

fn check(context: &Context<'_>, statement: &Statement) -> Option<String> {
    let (name, operations) = super::altered(context, statement)?;
    operations.iter().find_map(|op| {
        let AlterTableOperation::AlterColumn {
            column_name,
            op: AlterColumnOperation::SetDataType { data_type, using, .. },
        } = op
        else {
            return None;
        };
        let to = data_type.to_string();
        let from = context.columns.get(&(bare(name), column_name.value.to_lowercase()));
        match from {
            Some(from) if using.is_none() && !rewrites(from, &to) => None,
            Some(from) => Some(rewritten(name, column_name, from, &to)),
            None => Some(format!(
                "{name}.{column_name} changes to {to}{}: every row is rewritten unless the old type is a narrower \
                 varchar or numeric (lint cannot see its current type here)",
                if using.is_some() { " with USING" } else { "" }
            )),
        }
    })
}

/// What the rule says of a change whose old type is known.
pub(crate) fn rewritten(table: &dyn std::fmt::Display, column: &dyn std::fmt::Display, from: &str, to: &str) -> String {
    format!("{table}.{column} changes from {from} to {to}: every row is rewritten")
}

/// The column and new type of a type change (without `USING`) whose old
/// type the plan's statements do not say.
pub(crate) fn unseen_type(context: &Context<'_>, statement: &Statement) -> Option<(String, String)> {
    let (name, operations) = super::altered(context, statement)?;
    operations.iter().find_map(|op| match op {
        AlterTableOperation::AlterColumn {
            column_name,
            op: AlterColumnOperation::SetDataType {
                data_type, using: None, ..
            },
        } => {
            let column = column_name.value.to_lowercase();
            (!context.columns.contains_key(&(bare(name), column.clone()))).then(|| (column, data_type.to_string()))
        }
        _ => None,
    })
}

/// A type's base name and its modifiers, in one spelling: `character
/// varying(10)` and `VARCHAR(10)` both read `("varchar", [10])`.
fn parse(ty: &str) -> (String, Vec<u32>) {
    let ty = ty.trim().to_lowercase();
    let (base, args) = match ty.split_once('(') {
        Some((base, rest)) => (base.trim(), rest.trim_end_matches(')')),
        None => (ty.as_str(), ""),
    };
    let base = match base {
        "character varying" => "varchar",
        "int" | "int4" | "integer" => "integer",
        "int8" => "bigint",
        "int2" => "smallint",
        "decimal" => "numeric",
        "timestamp with time zone" => "timestamptz",
        "bit varying" => "varbit",
        other => other,
    };
    let args = args.split(',').filter_map(|a| a.trim().parse().ok()).collect();
    (base.to_owned(), args)
}

/// Whether changing a column from `from` to `to` rewrites the table on
/// PostgreSQL (as `ATColumnChangeRequiresRewrite` decides, for the changes
/// people make).
pub(crate) fn rewrites(from: &str, to: &str) -> bool {
    let (from, was) = parse(from);
    let (to, is) = parse(to);
    let widens = |i: usize| match (was.get(i), is.get(i)) {
        (_, None) => true,
        (None, Some(_)) => false,
        (Some(a), Some(b)) => b >= a,
    };
    let same = |i: usize| was.get(i) == is.get(i);
    !match (from.as_str(), to.as_str()) {
        (a, b) if a == b && was == is => true,
        ("varchar", "varchar") | ("varbit", "varbit") => widens(0),
        ("varchar", "text") | ("text", "varchar") => is.is_empty(),
        ("numeric", "numeric") => is.is_empty() || (widens(0) && same(1) && !was.is_empty()),
        ("cidr", "inet") => true,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use waymark_db::Dialect;

    use super::super::findings;
    use super::rewrites;

    #[test]
    fn knows_what_rewrites() {
        for (from, to) in [
            ("integer", "bigint"),
            ("character varying(20)", "varchar(10)"),
            ("text", "varchar(10)"),
            ("numeric(10,2)", "numeric(12,3)"),
            ("timestamp without time zone", "timestamptz"),
            ("integer", "text"),
            ("numeric", "numeric(10,2)"),
        ] {
            assert!(rewrites(from, to), "{from} -> {to}");
        }
        for (from, to) in [
            ("character varying(10)", "VARCHAR(20)"),
            ("varchar(10)", "varchar"),
            ("character varying(10)", "TEXT"),
            ("text", "character varying"),
            ("numeric(10,2)", "NUMERIC(12,2)"),
            ("numeric(10,2)", "numeric"),
            ("cidr", "inet"),
            ("integer", "INT"),
        ] {
            assert!(!rewrites(from, to), "{from} -> {to}");
        }
    }

    #[test]
    fn fires_on_a_rewrite_and_not_on_a_widening_it_can_see() {
        let made = "CREATE TABLE users (id int PRIMARY KEY, name varchar(10), age int);\n";
        // The table is new in the same migration: nothing to weigh.
        assert!(
            findings(
                Dialect::Postgres,
                true,
                &format!("{made}ALTER TABLE users ALTER COLUMN age TYPE bigint;")
            )
            .is_empty()
        );
        // Unknown old type: said, with why.
        assert!(
            findings(
                Dialect::Postgres,
                true,
                "ALTER TABLE users ALTER COLUMN age TYPE bigint;"
            )
            .contains(&("alter-column-type", 1))
        );
        // An earlier migration of the plan made the table: its types are known.
        let mut columns = crate::sql::lint::Columns::new();
        crate::sql::lint::lint(Dialect::Postgres, true, &[(1, made.trim())], made, &mut columns);
        let later = |sql: &str| {
            crate::sql::lint::lint(Dialect::Postgres, true, &[(1, sql)], sql, &mut columns.clone())
                .into_iter()
                .map(|f| f.rule)
                .collect::<Vec<_>>()
        };
        assert!(later("ALTER TABLE users ALTER COLUMN name TYPE varchar(40);").is_empty());
        assert!(later("ALTER TABLE users ALTER COLUMN name TYPE text;").is_empty());
        assert_eq!(
            later("ALTER TABLE users ALTER COLUMN age TYPE bigint;"),
            ["alter-column-type"]
        );
        assert_eq!(
            later("ALTER TABLE users ALTER COLUMN name TYPE varchar(5);"),
            ["alter-column-type"]
        );
    }
}
