//! Which statements drop a table or a column, and which make one: what
//! the engine needs to know to keep a pre-image of dropped data during
//! `up` and to put it back as soon as `down` has made its place again.
//!
//! This works on tokens, not on a full parse, so that it reads every
//! statement the database would accept whether or not sqlparser can parse
//! it; the tokenizer still knows strings, comments, quoted names and
//! PostgreSQL's dollar quoting, so a `DROP` inside a string or a function
//! body is not taken for one. A drop made by code the statement only calls
//! (a `DO` block, a procedure) is not seen: a component step declares
//! such drops in `step.toml` (`[drops]`).

use sqlparser::tokenizer::{Token, Tokenizer};
use waymark_db::{Dialect, Ident, ObjectRef};

/// What a piece of SQL (one statement or several) drops and makes.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Changes {
    /// The tables and columns it drops, in order.
    pub(crate) drops: Vec<ObjectRef>,
    /// Whether it creates a table or adds to one.
    pub(crate) creates: bool,
    /// How many statements it holds.
    pub(crate) statements: usize,
}

/// Words after `ALTER TABLE t DROP` that drop something other than a column.
const NOT_A_COLUMN: &[&str] = &[
    "CONSTRAINT",
    "DEFAULT",
    "NOT",
    "INDEX",
    "KEY",
    "PRIMARY",
    "FOREIGN",
    "CHECK",
    "PARTITION",
    "IDENTITY",
    "EXPRESSION",
    "SYSTEM",
    "PERIOD",
    "UNIQUE",
    "FULLTEXT",
    "SPATIAL",
];

/// Whether `sql` may drop a table or column: only a `DROP` word does, and
/// most migrations' statements hold none, so this saves tokenizing them
/// (the larger part of the check on a real history).
pub(crate) fn may_drop(sql: &str) -> bool {
    sql.as_bytes().windows(4).any(|w| w.eq_ignore_ascii_case(b"drop"))
}

pub(crate) fn inspect(dialect: Dialect, sql: &str) -> Changes {
    let mut changes = Changes::default();
    // What the tokenizer cannot read, the database will not run either.
    for statement in statements(dialect, sql).unwrap_or_default() {
        changes.statements += 1;
        read_statement(&statement, &mut changes);
    }
    changes
}

/// The statements in `sql`, each as its tokens without whitespace and
/// comments; `None` when `sql` cannot be tokenized.
pub(crate) fn statements(dialect: Dialect, sql: &str) -> Option<Vec<Vec<Token>>> {
    let tokens = Tokenizer::new(super::dialect(dialect), sql).tokenize().ok()?;
    let mut out = Vec::new();
    let mut statement = Vec::new();
    let significant = tokens.into_iter().filter(|t| !matches!(t, Token::Whitespace(_)));
    for token in significant.chain([Token::SemiColon]) {
        if token == Token::SemiColon {
            if !statement.is_empty() {
                out.push(std::mem::take(&mut statement));
            }
        } else {
            statement.push(token);
        }
    }
    Some(out)
}

fn read_statement(tokens: &[Token], changes: &mut Changes) {
    let mut at = Cursor { tokens, i: 0 };
    if at.eat("DROP") {
        if !at.eat("TABLE") {
            return;
        }
        at.eat_all(&["IF", "EXISTS"]);
        while let Some(table) = at.name() {
            changes.drops.push(ObjectRef { table, column: None });
            if !at.eat_token(&Token::Comma) {
                break;
            }
        }
    } else if at.eat("ALTER") {
        if !at.eat("TABLE") {
            return;
        }
        at.eat_all(&["IF", "EXISTS"]);
        at.eat("ONLY");
        let Some(table) = at.name() else { return };
        at.eat_token(&Token::Mul);
        loop {
            if at.eat("ADD") {
                changes.creates = true;
            } else if at.eat("DROP") {
                let column_word = at.eat("COLUMN");
                at.eat_all(&["IF", "EXISTS"]);
                let excluded = !column_word && at.keyword().is_some_and(|k| NOT_A_COLUMN.contains(&k.as_str()));
                if !excluded && let Some(column) = at.ident() {
                    changes.drops.push(ObjectRef {
                        table: table.clone(),
                        column: Some(column),
                    });
                }
            }
            if !at.skip_to_next_action() {
                break;
            }
        }
    } else if at.eat("CREATE") {
        at.eat_all(&["OR", "REPLACE"]);
        for modifier in ["GLOBAL", "LOCAL", "TEMPORARY", "TEMP", "UNLOGGED"] {
            at.eat(modifier);
        }
        if at.eat("TABLE") {
            changes.creates = true;
        }
    }
}

struct Cursor<'a> {
    tokens: &'a [Token],
    i: usize,
}

impl Cursor<'_> {
    /// The next token's word in upper case, if it is an unquoted word.
    fn keyword(&self) -> Option<String> {
        match self.tokens.get(self.i) {
            Some(Token::Word(w)) if w.quote_style.is_none() => Some(w.value.to_ascii_uppercase()),
            _ => None,
        }
    }

    fn eat(&mut self, word: &str) -> bool {
        if self.keyword().as_deref() == Some(word) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    /// Eats `words` if all of them come next, in order.
    fn eat_all(&mut self, words: &[&str]) -> bool {
        let start = self.i;
        if words.iter().all(|w| self.eat(w)) {
            true
        } else {
            self.i = start;
            false
        }
    }

    fn eat_token(&mut self, token: &Token) -> bool {
        if self.tokens.get(self.i) == Some(token) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    fn ident(&mut self) -> Option<Ident> {
        match self.tokens.get(self.i) {
            Some(Token::Word(w)) => {
                self.i += 1;
                Some(Ident {
                    value: w.value.clone(),
                    quoted: w.quote_style.is_some(),
                })
            }
            _ => None,
        }
    }

    /// A possibly qualified name: `a`, `a.b`, `"A".b`.
    fn name(&mut self) -> Option<Vec<Ident>> {
        let mut parts = vec![self.ident()?];
        while self.eat_token(&Token::Period) {
            parts.push(self.ident()?);
        }
        Some(parts)
    }

    /// Moves past the comma that ends this `ALTER TABLE` action (commas
    /// inside parentheses belong to the action); `false` at the end.
    fn skip_to_next_action(&mut self) -> bool {
        let mut depth = 0usize;
        while let Some(token) = self.tokens.get(self.i) {
            self.i += 1;
            match token {
                Token::LParen => depth += 1,
                Token::RParen => depth = depth.saturating_sub(1),
                Token::Comma if depth == 0 => return true,
                _ => {}
            }
        }
        false
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn only_text_with_a_drop_word_may_drop() {
        assert!(super::may_drop("ALTER TABLE t Drop COLUMN c"));
        assert!(super::may_drop("drop table t"));
        assert!(!super::may_drop(
            "CREATE TABLE t (id int); ALTER TABLE t ADD COLUMN c int"
        ));
        // Whatever the full check finds dropped, the quick one lets through.
        for sql in [
            "DROP TABLE t",
            "ALTER TABLE t DROP COLUMN c",
            "alter table t drop c",
            "DrOp TABLE IF EXISTS x",
        ] {
            let found = super::inspect(waymark_db::Dialect::Postgres, sql).drops;
            assert!(!found.is_empty() && super::may_drop(sql), "{sql}");
        }
    }

    use super::*;

    fn plain(value: &str) -> Ident {
        Ident {
            value: value.to_owned(),
            quoted: false,
        }
    }

    fn table(parts: &[&str]) -> ObjectRef {
        ObjectRef {
            table: parts.iter().map(|p| plain(p)).collect(),
            column: None,
        }
    }

    fn column(parts: &[&str], column: &str) -> ObjectRef {
        ObjectRef {
            column: Some(plain(column)),
            ..table(parts)
        }
    }

    #[test]
    fn finds_dropped_tables_and_columns() {
        let found = inspect(
            Dialect::Postgres,
            "DROP TABLE IF EXISTS a, public.b CASCADE;\n\
             ALTER TABLE ONLY c DROP COLUMN IF EXISTS x, ADD COLUMN y int, DROP z;\n\
             ALTER TABLE d ALTER COLUMN q DROP DEFAULT, DROP CONSTRAINT d_pk, DROP COLUMN \"Mixed\"",
        );
        assert_eq!(
            found.drops,
            vec![
                table(&["a"]),
                table(&["public", "b"]),
                column(&["c"], "x"),
                column(&["c"], "z"),
                ObjectRef {
                    table: vec![plain("d")],
                    column: Some(Ident {
                        value: "Mixed".to_owned(),
                        quoted: true
                    }),
                },
            ]
        );
        assert!(found.creates);
        assert_eq!(found.statements, 3);
    }

    #[test]
    fn mysql_forms_and_what_is_not_a_column() {
        let found = inspect(
            Dialect::Mysql,
            "ALTER TABLE `t` DROP INDEX i, DROP PRIMARY KEY, DROP FOREIGN KEY f, DROP `key`, DROP c, \
             ADD INDEX j (a, b), DROP COLUMN d",
        );
        let cols: Vec<_> = found
            .drops
            .iter()
            .map(|d| d.column.as_ref().unwrap().value.clone())
            .collect();
        assert_eq!(cols, ["key", "c", "d"]);
        assert_eq!(found.drops[0].table[0].value, "t");
        assert!(found.drops[0].table[0].quoted);
        assert!(inspect(Dialect::Mysql, "DROP TEMPORARY TABLE t").drops.is_empty());
    }

    #[test]
    fn ignores_drops_in_strings_comments_and_bodies() {
        let sql = "-- DROP TABLE a;\n/* ALTER TABLE b DROP COLUMN c */\n\
                   INSERT INTO log VALUES ('DROP TABLE d; ALTER TABLE e DROP f');\n\
                   CREATE FUNCTION g() RETURNS void AS $$ BEGIN DROP TABLE h; END $$ LANGUAGE plpgsql;\n\
                   DROP INDEX i; DROP VIEW j";
        let found = inspect(Dialect::Postgres, sql);
        assert_eq!(found.drops, vec![]);
        assert!(!found.creates);
        assert_eq!(found.statements, 4);
    }

    #[test]
    fn sees_what_makes_a_table_or_column() {
        for sql in [
            "CREATE TABLE t (id int)",
            "create unlogged table if not exists t (id int)",
            "CREATE TEMPORARY TABLE t (id int)",
            "ALTER TABLE t ADD COLUMN c int",
            "ALTER TABLE t ADD c int",
        ] {
            assert!(inspect(Dialect::Postgres, sql).creates, "{sql}");
        }
        for sql in ["CREATE INDEX i ON t (c)", "CREATE VIEW v AS SELECT 1", "SELECT 1"] {
            assert!(!inspect(Dialect::Postgres, sql).creates, "{sql}");
        }
    }
}
