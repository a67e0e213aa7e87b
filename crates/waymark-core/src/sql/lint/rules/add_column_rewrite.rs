//! A column added with what makes PostgreSQL rewrite the table: a volatile
//! default, `serial`, an identity, a stored generated column.

use sqlparser::ast::{AlterTableOperation, ColumnOption, Statement};

use super::POSTGRES;
use crate::sql::lint::{Claim, Context, Rule, Severity};

pub(crate) const RULE: Rule = Rule {
    id: "add-column-rewrite",
    dialects: POSTGRES,
    severity: Severity::Error,
    lock: "ACCESS EXCLUSIVE on the table, while every row is rewritten",
    why: "a constant default is stored once (PostgreSQL 11 and later), but a volatile one, a serial or identity \
          column or a stored generated column is computed for every row, by rewriting the whole table while no \
          query gets through",
    fix: "add the column without a default (or with a constant one), set the default for new rows, and backfill \
          the old rows in batches",
    once_per_migration: false,
    by_size: true,
    claims: &[
        Claim {
            example: "ALTER TABLE accounts ADD COLUMN token uuid DEFAULT gen_random_uuid();",
            mode: "ACCESS EXCLUSIVE",
            on: "accounts",
            rewrites: true,
        },
        Claim {
            example: "ALTER TABLE accounts ADD COLUMN n bigserial;",
            mode: "ACCESS EXCLUSIVE",
            on: "accounts",
            rewrites: true,
        },
        Claim {
            example: "ALTER TABLE accounts ADD COLUMN total int GENERATED ALWAYS AS (age * 2) STORED;",
            mode: "ACCESS EXCLUSIVE",
            on: "accounts",
            rewrites: true,
        },
    ],
    check,
    unparsed: None,
};

/// Functions whose value differs per row, as a default.
const VOLATILE: &[&str] = &[
    "random(",
    "gen_random_uuid(",
    "uuid_generate_v1(",
    "uuid_generate_v4(",
    "clock_timestamp(",
    "timeofday(",
    "nextval(",
];

fn check(context: &Context<'_>, statement: &Statement) -> Option<String> {
    let (name, operations) = super::altered(context, statement)?;
    operations.iter().find_map(|op| {
        let AlterTableOperation::AddColumn { column_def, .. } = op else {
            return None;
        };
        let column = &column_def.name;
        let data_type = column_def.data_type.to_string().to_lowercase();
        if data_type.contains("serial") {
            return Some(format!(
                "{name}.{column} is a {data_type}: every row is rewritten to number it"
            ));
        }
        column_def.options.iter().find_map(|o| match &o.option {
            ColumnOption::Default(e) => {
                let text = e.to_string().to_lowercase();
                VOLATILE
                    .iter()
                    .any(|f| text.contains(f))
                    .then(|| format!("{name}.{column} has the volatile default {e}: every row is rewritten to hold it"))
            }
            ColumnOption::Identity(_) => Some(format!("{name}.{column} is an identity: every row is rewritten")),
            ColumnOption::Generated { generated_as, .. } => {
                let stored = o.option.to_string().to_uppercase().contains("STORED");
                let identity = !matches!(generated_as, sqlparser::ast::GeneratedAs::ExpStored) && !stored;
                (stored || identity).then(|| format!("{name}.{column} is generated: every row is rewritten"))
            }
            _ => None,
        })
    })
}

#[cfg(test)]
mod tests {
    use waymark_db::Dialect;

    use super::super::findings;

    #[test]
    fn fires_on_what_rewrites_and_not_on_a_constant_default() {
        for sql in [
            "ALTER TABLE users ADD COLUMN token uuid DEFAULT gen_random_uuid();",
            "ALTER TABLE users ADD COLUMN n bigserial;",
            "ALTER TABLE users ADD COLUMN n int GENERATED ALWAYS AS IDENTITY;",
            "ALTER TABLE users ADD COLUMN total int GENERATED ALWAYS AS (a + b) STORED;",
        ] {
            assert!(
                findings(Dialect::Postgres, true, sql).contains(&("add-column-rewrite", 1)),
                "{sql}"
            );
        }
        for sql in [
            "ALTER TABLE users ADD COLUMN active boolean DEFAULT true NOT NULL;",
            "ALTER TABLE users ADD COLUMN created timestamptz DEFAULT now();",
            "ALTER TABLE users ADD COLUMN token uuid;",
        ] {
            assert!(
                !findings(Dialect::Postgres, true, sql).contains(&("add-column-rewrite", 1)),
                "{sql}"
            );
        }
    }
}
