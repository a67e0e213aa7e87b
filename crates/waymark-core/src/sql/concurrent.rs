//! Which statements wait for older transactions rather than for a table's
//! lock: PostgreSQL's `CONCURRENTLY` forms (`CREATE INDEX`, `DROP INDEX`,
//! `REINDEX`, `REFRESH MATERIALIZED VIEW`, `DETACH PARTITION`). Their
//! waits block no application query, and one cut short by a lock timeout
//! leaves an invalid index (or a half-detached partition) behind, so they
//! wait as long as they take.

use sqlparser::tokenizer::{Token, Tokenizer};
use waymark_db::Dialect;

/// Whether `sql` holds a `CONCURRENTLY` statement: the word itself, not
/// inside a string, a comment or a quoted name.
pub(crate) fn concurrently(dialect: Dialect, sql: &str) -> bool {
    if dialect != Dialect::Postgres || !contains_word(sql) {
        return false;
    }
    match Tokenizer::new(super::dialect(dialect), sql).tokenize() {
        Ok(tokens) => tokens.iter().any(
            |t| matches!(t, Token::Word(w) if w.quote_style.is_none() && w.value.eq_ignore_ascii_case("concurrently")),
        ),
        // What the tokenizer cannot read, the word alone decides: waiting
        // longer is the safe side.
        Err(_) => true,
    }
}

/// Most statements hold no such word: this saves tokenizing them.
fn contains_word(sql: &str) -> bool {
    sql.as_bytes()
        .windows(12)
        .any(|w| w.eq_ignore_ascii_case(b"concurrently"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_concurrent_forms_are_found_and_nothing_else() {
        for sql in [
            "CREATE INDEX CONCURRENTLY i ON t (a)",
            "create unique index concurrently if not exists i on t (a)",
            "DROP INDEX CONCURRENTLY i",
            "REINDEX INDEX CONCURRENTLY i",
            "REFRESH MATERIALIZED VIEW CONCURRENTLY v",
            "ALTER TABLE p DETACH PARTITION c CONCURRENTLY",
        ] {
            assert!(concurrently(Dialect::Postgres, sql), "{sql}");
        }
        for sql in [
            "CREATE INDEX i ON t (a)",
            "INSERT INTO notes VALUES ('build it concurrently')",
            "-- concurrently\nCREATE INDEX i ON t (a)",
            "CREATE TABLE \"concurrently\" (a int)",
        ] {
            assert!(!concurrently(Dialect::Postgres, sql), "{sql}");
        }
        assert!(!concurrently(Dialect::Mysql, "CREATE INDEX CONCURRENTLY i ON t (a)"));
    }
}
