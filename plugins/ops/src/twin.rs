//! Indexes carried over to a column's new shape.
//!
//! A type change or a new `NOT NULL` gives a column a hidden twin
//! (`_waymark_new_<column>`) that `complete` renames into place, dropping
//! the old column and with it every index that reads it. So each such
//! index is built again over the twin, `CONCURRENTLY`, after the backfill
//! (a "twin index", `_waymark_ix_<name>`), and `complete` gives it the old
//! index's name once the old one is gone. The new application has its
//! indexes from the end of `up`; the old one keeps its own until
//! `complete`.
//!
//! The twin's definition is the old one's (`pg_get_indexdef`) with every
//! column that has a twin replaced by its twin: key columns, `INCLUDE`
//! columns, expressions and the predicate alike, so `lower(email)` and
//! `WHERE deleted_at IS NULL` carry over. Only identifiers are replaced,
//! never a string literal, a function's name or a type after `::`.

use crate::catalog::{Index, Table};
use crate::ops::{cut, ident, shadow};

/// An index to build again over the columns' twins.
pub(crate) struct Twin<'a> {
    pub(crate) of: &'a Index,
    /// `_waymark_ix_<name>`.
    pub(crate) name: String,
    /// `CREATE [UNIQUE] INDEX CONCURRENTLY <name> ON ...`.
    pub(crate) create: String,
}

/// The twin index's name for index `name`.
pub(crate) fn name(index: &str) -> String {
    cut(&format!("_waymark_ix_{index}"))
}

/// The indexes of `table` that read `column` and that `column`'s op builds
/// again: every such index not behind a constraint (a constraint is
/// refused before anything runs), each built by the op of the first of
/// its columns that has a twin, so that an index over two changed columns
/// is built once, over both twins.
pub(crate) fn of<'a>(table: &'a Table, column: &str) -> Result<Vec<Twin<'a>>, String> {
    let twinned: Vec<(String, String)> = table
        .columns
        .iter()
        .filter(|c| table.column(&shadow(&c.name)).is_some())
        .map(|c| (c.name.clone(), shadow(&c.name)))
        .collect();
    let mut twins = Vec::new();
    for index in &table.indexes {
        if index.constraint.is_some() || index.name.starts_with("_waymark_") {
            continue;
        }
        let first_twinned = index.columns.iter().find(|c| twinned.iter().any(|(old, _)| old == *c));
        if first_twinned.map(String::as_str) != Some(column) {
            continue;
        }
        let name = name(&index.name);
        let create = rewrite(&index.definition, &name, &twinned).ok_or_else(|| {
            format!(
                "index {} on {}.{} cannot be built again over the column's new shape: its definition {:?} is not one waymark can read",
                index.name, table.name, column, index.definition
            )
        })?;
        twins.push(Twin {
            of: index,
            name,
            create,
        });
    }
    Ok(twins)
}

/// `definition` (`pg_get_indexdef`) as a concurrent build of index `name`
/// with each `(old, twin)` column replaced; `None` for a text that does
/// not read as `CREATE [UNIQUE] INDEX name ON table USING ...`.
fn rewrite(definition: &str, name: &str, renames: &[(String, String)]) -> Option<String> {
    let tokens = lex(definition);
    let words: Vec<&str> = tokens
        .iter()
        .filter(|t| t.kind != Kind::Space)
        .map(|t| t.text)
        .collect();
    let unique = match words.as_slice() {
        ["CREATE", "UNIQUE", "INDEX", ..] => true,
        ["CREATE", "INDEX", ..] => false,
        _ => return None,
    };
    let on = tokens.iter().position(|t| t.kind == Kind::Word && t.text == "ON")?;
    let using = tokens.iter().position(|t| t.kind == Kind::Word && t.text == "USING")?;
    if using < on {
        return None;
    }
    let table: String = tokens[on + 1..using].iter().map(|t| t.text).collect();
    let mut tail = String::new();
    for (i, token) in tokens.iter().enumerate().skip(using) {
        let value = match token.kind {
            Kind::Word => Some(token.text.to_owned()),
            Kind::Quoted => Some(token.text[1..token.text.len() - 1].replace("\"\"", "\"")),
            _ => None,
        };
        let renamed = value.and_then(|v| renames.iter().find(|(old, _)| *old == v));
        let before = tail.trim_end();
        let after = tokens[i + 1..].iter().find(|t| t.kind != Kind::Space).map(|t| t.text);
        // A column, not a qualified name's part, a type or a function.
        let column = !before.ends_with('.') && !before.ends_with("::") && !matches!(after, Some("(" | "."));
        match renamed {
            Some((_, twin)) if column => tail.push_str(&ident(twin)),
            _ => tail.push_str(token.text),
        }
    }
    Some(format!(
        "CREATE {}INDEX CONCURRENTLY {} ON {} {}",
        if unique { "UNIQUE " } else { "" },
        ident(name),
        table.trim(),
        tail
    ))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Word,
    Quoted,
    Literal,
    Space,
    Other,
}

struct Token<'a> {
    kind: Kind,
    text: &'a str,
}

/// `text` as words, quoted identifiers, string literals, spaces and single
/// other characters; joined, the tokens give back `text`.
fn lex(text: &str) -> Vec<Token<'_>> {
    let mut tokens = Vec::new();
    let mut chars = text.char_indices().peekable();
    while let Some((start, c)) = chars.next() {
        let kind = match c {
            '"' | '\'' => {
                // To the closing quote; a doubled quote is one inside.
                loop {
                    match chars.next() {
                        Some((_, q)) if q == c => {
                            if chars.peek().is_some_and(|&(_, n)| n == c) {
                                chars.next();
                            } else {
                                break;
                            }
                        }
                        Some(_) => {}
                        None => break,
                    }
                }
                if c == '"' { Kind::Quoted } else { Kind::Literal }
            }
            c if c.is_alphabetic() || c == '_' => {
                while chars
                    .next_if(|&(_, n)| n.is_alphanumeric() || n == '_' || n == '$')
                    .is_some()
                {}
                Kind::Word
            }
            c if c.is_whitespace() => {
                while chars.next_if(|&(_, n)| n.is_whitespace()).is_some() {}
                Kind::Space
            }
            _ => Kind::Other,
        };
        let end = chars.peek().map_or(text.len(), |&(i, _)| i);
        tokens.push(Token {
            kind,
            text: &text[start..end],
        });
    }
    tokens
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::Column;

    fn renames(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(a, b)| ((*a).to_owned(), (*b).to_owned())).collect()
    }

    #[test]
    fn the_tokens_give_back_the_text() {
        let text = "CREATE INDEX \"a\"\"b\" ON public.t USING btree (lower((x)::text)) WHERE (y = 'it''s \"x\"')";
        let joined: String = lex(text).iter().map(|t| t.text).collect();
        assert_eq!(joined, text);
    }

    #[test]
    fn key_columns_expressions_and_predicates_are_carried_over() {
        let twins = renames(&[("email", "_waymark_new_email")]);
        assert_eq!(
            rewrite(
                "CREATE UNIQUE INDEX users_email ON public.users USING btree (email) INCLUDE (id)",
                "_waymark_ix_users_email",
                &twins
            )
            .unwrap(),
            "CREATE UNIQUE INDEX CONCURRENTLY \"_waymark_ix_users_email\" ON public.users USING btree (\"_waymark_new_email\") INCLUDE (id)"
        );
        assert_eq!(
            rewrite(
                "CREATE INDEX i ON public.users USING btree (lower(email), email DESC NULLS LAST) WHERE (email <> 'email'::email)",
                "t",
                &twins
            )
            .unwrap(),
            "CREATE INDEX CONCURRENTLY \"t\" ON public.users USING btree (lower(\"_waymark_new_email\"), \"_waymark_new_email\" DESC NULLS LAST) WHERE (\"_waymark_new_email\" <> 'email'::email)"
        );
    }

    #[test]
    fn a_quoted_column_and_a_function_of_the_same_name() {
        let twins = renames(&[("Total", "_waymark_new_Total"), ("total", "_waymark_new_total")]);
        assert_eq!(
            rewrite(
                "CREATE INDEX i ON \"My Schema\".\"t USING x\" USING btree (\"Total\", total(total), s.total)",
                "t",
                &twins
            )
            .unwrap(),
            "CREATE INDEX CONCURRENTLY \"t\" ON \"My Schema\".\"t USING x\" USING btree (\"_waymark_new_Total\", total(\"_waymark_new_total\"), s.total)"
        );
    }

    #[test]
    fn a_text_that_is_no_index_definition_is_refused() {
        assert!(rewrite("ALTER TABLE t ADD c int", "t", &[]).is_none());
    }

    fn column(name: &str) -> Column {
        Column {
            name: name.to_owned(),
            type_: "integer".to_owned(),
            not_null: false,
            default: None,
        }
    }

    fn index(name: &str, columns: &[&str], constraint: Option<&str>) -> Index {
        Index {
            name: name.to_owned(),
            definition: format!("CREATE INDEX {name} ON public.t USING btree ({})", columns.join(", ")),
            columns: columns.iter().map(|c| (*c).to_owned()).collect(),
            constraint: constraint.map(str::to_owned),
        }
    }

    #[test]
    fn an_index_over_two_changed_columns_is_built_once_over_both_twins() {
        let table = Table {
            name: "t".to_owned(),
            columns: ["a", "b", "c", "_waymark_new_a", "_waymark_new_b"]
                .into_iter()
                .map(column)
                .collect(),
            indexes: vec![
                index("t_ab", &["a", "b"], None),
                index("t_b", &["b"], None),
                index("t_c", &["c"], None),
                index("t_pkey", &["a"], Some("t_pkey")),
                index("_waymark_ix_t_b", &["_waymark_new_b"], None),
            ],
        };
        let names = |column: &str| -> Vec<String> { of(&table, column).unwrap().into_iter().map(|t| t.name).collect() };
        assert_eq!(names("a"), ["_waymark_ix_t_ab"]);
        assert_eq!(names("b"), ["_waymark_ix_t_b"]);
        assert!(names("c").is_empty());
        assert_eq!(
            of(&table, "a").unwrap()[0].create,
            "CREATE INDEX CONCURRENTLY \"_waymark_ix_t_ab\" ON public.t USING btree (\"_waymark_new_a\", \"_waymark_new_b\")"
        );
    }
}
