//! Ways in for `cargo xtask fuzz` to what this crate keeps to itself: the
//! drop finder and the permission classifier. Not an API: hidden from the
//! docs, and called by nothing but `crates/xtask/src/fuzz.rs`.

use waymark_db::{Dialect, ObjectRef};

use crate::source::Access;

/// What the drop finder makes of `sql`: whether its quick scan lets the
/// SQL through to the tokenizer at all, the tables and columns dropped,
/// and how many statements were read.
pub fn drops(dialect: Dialect, sql: &str) -> (bool, Vec<ObjectRef>, usize) {
    let changes = crate::sql::drops::inspect(dialect, sql);
    (crate::sql::drops::may_drop(sql), changes.drops, changes.statements)
}

/// A component step's statement checked against a `step.toml` grant: the
/// refusal, naming the permission, or `Ok`.
pub fn permitted(access: &Access, dialect: Dialect, sql: &str) -> Result<(), String> {
    crate::sql::permission::check(access, dialect, sql)
}
