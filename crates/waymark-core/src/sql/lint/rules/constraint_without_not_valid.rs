//! A foreign key or `CHECK` added to an existing table without `NOT VALID`,
//! a unique or primary key constraint built in place instead of from an
//! index built concurrently (`USING INDEX`), or an exclusion constraint,
//! which has neither.

use sqlparser::ast::{AlterTableOperation, Statement, TableConstraint};
use sqlparser::tokenizer::Token;

use super::POSTGRES;
use crate::sql::lint::{Claim, Context, Rule, Severity};

pub(crate) const RULE: Rule = Rule {
    id: "constraint-without-not-valid",
    dialects: POSTGRES,
    severity: Severity::Error,
    lock: "SHARE ROW EXCLUSIVE on both tables (a foreign key) or ACCESS EXCLUSIVE (a check, a unique, primary \
           key or exclusion constraint), while every row is read",
    why: "the constraint is checked against every existing row while the lock is held: writes (or, for a check, \
          every query) wait for the whole table to be read",
    fix: "ADD CONSTRAINT ... NOT VALID, then VALIDATE CONSTRAINT in a later migration (it takes a lock that lets \
          writes through); for UNIQUE or PRIMARY KEY, CREATE UNIQUE INDEX CONCURRENTLY first, then ADD CONSTRAINT \
          ... USING INDEX; an exclusion constraint has no such form: add it while the table is new or small, or \
          move the rows to a new table that has it",
    once_per_migration: false,
    by_size: true,
    claims: &[
        Claim {
            example: "ALTER TABLE accounts ADD CONSTRAINT accounts_parent FOREIGN KEY (parent_id) REFERENCES parents (id);",
            mode: "SHARE ROW EXCLUSIVE",
            on: "accounts",
            rewrites: false,
        },
        Claim {
            example: "ALTER TABLE accounts ADD CONSTRAINT accounts_parent FOREIGN KEY (parent_id) REFERENCES parents (id);",
            mode: "SHARE ROW EXCLUSIVE",
            on: "parents",
            rewrites: false,
        },
        Claim {
            example: "ALTER TABLE accounts ADD CONSTRAINT accounts_age_positive CHECK (age > 0);",
            mode: "ACCESS EXCLUSIVE",
            on: "accounts",
            rewrites: false,
        },
        Claim {
            example: "ALTER TABLE accounts ADD CONSTRAINT accounts_one_email EXCLUDE USING btree (email WITH =);",
            mode: "ACCESS EXCLUSIVE",
            on: "accounts",
            rewrites: false,
        },
    ],
    check,
    unparsed: Some(exclusion),
};

/// `ALTER TABLE [IF EXISTS] [ONLY] <table> [*] ... ADD [CONSTRAINT <name>]
/// EXCLUDE ...` on a table that existed before: sqlparser does not read
/// exclusion constraints, so their words are read instead.
fn exclusion(context: &Context<'_>, tokens: &[Token]) -> Option<(String, String)> {
    let is = |t: Option<&Token>, keyword: &str| matches!(t, Some(Token::Word(w)) if w.quote_style.is_none() && w.value.eq_ignore_ascii_case(keyword));
    if !(is(tokens.first(), "ALTER") && is(tokens.get(1), "TABLE")) {
        return None;
    }
    let mut at = 2;
    if is(tokens.get(at), "IF") && is(tokens.get(at + 1), "EXISTS") {
        at += 2;
    }
    if is(tokens.get(at), "ONLY") {
        at += 1;
    }
    // A name of dotted parts; the last is the table's.
    let mut table = None;
    while let Some(Token::Word(part)) = tokens.get(at) {
        table = Some(if part.quote_style.is_none() {
            part.value.to_lowercase()
        } else {
            part.value.clone()
        });
        at += 1;
        if tokens.get(at) != Some(&Token::Period) {
            break;
        }
        at += 1;
    }
    let table = table?;
    if context.created.contains(&table) {
        return None;
    }
    let adds_exclusion = (at..tokens.len()).any(|i| {
        let named = is(tokens.get(i + 1), "CONSTRAINT");
        is(tokens.get(i), "ADD") && is(tokens.get(if named { i + 3 } else { i + 1 }), "EXCLUDE")
    });
    adds_exclusion.then(|| {
        (
            format!("an exclusion constraint added to {table} builds its index and checks every row while no query gets through"),
            table,
        )
    })
}

fn check(context: &Context<'_>, statement: &Statement) -> Option<String> {
    let (name, operations) = super::altered(context, statement)?;
    operations.iter().find_map(|op| match op {
        AlterTableOperation::AddConstraint {
            constraint: TableConstraint::ForeignKey { .. },
            not_valid: false,
        } => Some(format!(
            "a foreign key added to {name} reads every row of it under the lock"
        )),
        AlterTableOperation::AddConstraint {
            constraint: TableConstraint::Check { .. },
            not_valid: false,
        } => Some(format!(
            "a CHECK added to {name} reads every row of it while no query gets through"
        )),
        AlterTableOperation::AddConstraint {
            constraint: c @ (TableConstraint::Unique { .. } | TableConstraint::PrimaryKey { .. }),
            ..
        } if !c.to_string().to_uppercase().contains("USING INDEX") => Some(format!(
            "a unique or primary key constraint added to {name} builds its index while no query gets through"
        )),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use waymark_db::Dialect;

    use super::super::findings;

    #[test]
    fn fires_without_not_valid_and_passes_with_it() {
        let rule = "constraint-without-not-valid";
        for sql in [
            "ALTER TABLE orders ADD CONSTRAINT orders_user FOREIGN KEY (user_id) REFERENCES users (id);",
            "ALTER TABLE orders ADD CONSTRAINT orders_total CHECK (total >= 0);",
            "ALTER TABLE orders ADD CONSTRAINT orders_code UNIQUE (code);",
        ] {
            assert_eq!(findings(Dialect::Postgres, true, sql), [(rule, 1)], "{sql}");
        }
        for sql in [
            "ALTER TABLE orders ADD CONSTRAINT orders_user FOREIGN KEY (user_id) REFERENCES users (id) NOT VALID;",
            "ALTER TABLE orders ADD CONSTRAINT orders_total CHECK (total >= 0) NOT VALID;",
        ] {
            assert!(
                findings(Dialect::Postgres, true, sql).iter().all(|(r, _)| *r != rule),
                "{sql}"
            );
        }
        let new_table = "CREATE TABLE orders (id int PRIMARY KEY, total int);\n\
                         ALTER TABLE orders ADD CONSTRAINT orders_total CHECK (total >= 0);";
        assert!(findings(Dialect::Postgres, true, new_table).is_empty());
    }

    #[test]
    fn an_exclusion_constraint_fires_though_the_parser_cannot_read_it() {
        let rule = "constraint-without-not-valid";
        for sql in [
            "ALTER TABLE bookings ADD CONSTRAINT no_overlap EXCLUDE USING gist (room WITH =, during WITH &&);",
            "alter table if exists only app.\"Bookings\" add exclude using gist (during with &&);",
            "ALTER TABLE bookings ADD COLUMN note text, ADD CONSTRAINT one_note EXCLUDE (note WITH =);",
        ] {
            assert_eq!(findings(Dialect::Postgres, true, sql), [(rule, 1)], "{sql}");
        }
        let lines = super::super::super::lint(
            Dialect::Postgres,
            true,
            &[(
                1,
                "ALTER TABLE app.\"Bookings\" ADD EXCLUDE USING gist (during WITH &&)",
            )],
            "",
            &mut Default::default(),
        );
        assert_eq!(lines[0].table.as_deref(), Some("Bookings"));
        assert!(
            lines[0].message.contains("an exclusion constraint added to Bookings"),
            "{}",
            lines[0].message
        );
        for sql in [
            // A table the migration makes blocks no one yet.
            "CREATE TABLE bookings (room int, during tsrange);\n\
             ALTER TABLE bookings ADD CONSTRAINT no_overlap EXCLUDE USING gist (room WITH =, during WITH &&);",
            // Other statements the parser cannot read, and the word where
            // it is no keyword.
            "ALTER TABLE bookings ADD CONSTRAINT \"exclude\" UNIQUE USING INDEX bookings_room;",
            "SELECT 'ALTER TABLE bookings ADD EXCLUDE' ???;",
        ] {
            assert!(
                findings(Dialect::Postgres, true, sql).iter().all(|(r, _)| *r != rule),
                "{sql}"
            );
        }
        assert!(findings(Dialect::Mysql, false, "ALTER TABLE b ADD EXCLUDE (a WITH =);").is_empty());
    }
}
