//! The rule catalogue: one file per rule, each with its tests (one that
//! fires it, one that shows the safe rewrite passing).

mod add_column_rewrite;
mod after_exclusive_lock;
mod alter_column_type;
mod concurrently_in_transaction;
mod constraint_without_not_valid;
mod create_index_blocking;
mod drop_index_blocking;
mod mysql_alter_algorithm;
mod no_lock_timeout;
mod rename_or_drop;
mod set_not_null;
mod sqlite_table_rebuild;
mod validate_with_add;

use sqlparser::ast::{AlterTableOperation, ObjectName, Statement, TableConstraint};
use waymark_db::Dialect;

use super::{Context, Rule};

/// Every rule, in the order findings are listed.
pub const RULES: &[Rule] = &[
    no_lock_timeout::RULE,
    create_index_blocking::RULE,
    drop_index_blocking::RULE,
    concurrently_in_transaction::RULE,
    constraint_without_not_valid::RULE,
    validate_with_add::RULE,
    set_not_null::RULE,
    add_column_rewrite::RULE,
    alter_column_type::RULE,
    after_exclusive_lock::RULE,
    rename_or_drop::RULE,
    mysql_alter_algorithm::RULE,
    sqlite_table_rebuild::RULE,
];

const POSTGRES: &[Dialect] = &[Dialect::Postgres];

/// The type-change rule's id: its findings may need the catalog.
pub(crate) const ALTER_COLUMN_TYPE: &str = alter_column_type::RULE.id;
pub(crate) use alter_column_type::{rewrites, rewritten, unseen_type};
pub(crate) use no_lock_timeout::set_by;
pub(crate) use sqlite_table_rebuild::copied;

/// An `ALTER TABLE` of a table that existed before the migration: its
/// name and operations.
pub(crate) fn altered<'a>(
    context: &Context<'_>,
    statement: &'a Statement,
) -> Option<(&'a ObjectName, &'a [AlterTableOperation])> {
    match statement {
        Statement::AlterTable { name, operations, .. } if context.existing(name) => Some((name, operations)),
        _ => None,
    }
}

/// A constraint's name, in lower case, if it has one.
pub(crate) fn constraint_name(c: &TableConstraint) -> Option<String> {
    let name = match c {
        TableConstraint::Unique { name, .. }
        | TableConstraint::PrimaryKey { name, .. }
        | TableConstraint::ForeignKey { name, .. }
        | TableConstraint::Check { name, .. } => name.as_ref(),
        _ => None,
    };
    name.map(|n| n.value.to_lowercase())
}

/// Whether an `ALTER TABLE` operation takes PostgreSQL's `ACCESS
/// EXCLUSIVE` lock: all but the few that take a weaker one.
pub(crate) fn access_exclusive(op: &AlterTableOperation) -> bool {
    !matches!(
        op,
        AlterTableOperation::ValidateConstraint { .. }
            | AlterTableOperation::AddConstraint {
                constraint: TableConstraint::ForeignKey { .. },
                ..
            }
    )
}

#[cfg(test)]
pub(crate) use super::tests::findings;
