//! PostgreSQL's post-data section (from `pg_dump`) cut in two for a
//! restore: the index builds, which take a `SHARE` lock that readers pass,
//! so the read-back of the rows runs beside them; and the rest, in
//! `pg_dump`'s order, run after.
//!
//! A primary key or unique constraint is built the same way: its index
//! first, with `CREATE UNIQUE INDEX` (readers pass), then the constraint
//! made from it with `ADD CONSTRAINT ... USING INDEX`, a moment's catalog
//! change. `ADD CONSTRAINT ... PRIMARY KEY (...)` would hold an
//! `ACCESS EXCLUSIVE` lock through the whole build, and the read-back of
//! the biggest table, which is the one worth overlapping, would wait it
//! out. Only plain tables take this path (`USING INDEX` is refused on a
//! partitioned one), and only constraints in the plain form
//! `pg_dump` writes for a key of columns; anything else is left as written.

use crate::dump::text_rows;
use crate::{Conn, DbError, Value};

impl Conn {
    /// Cuts PostgreSQL's post-data `section` for a restore into this
    /// database, whose tables (from the pre-data section) already exist:
    /// the server says which tables are plain.
    pub async fn cut_post_data(&mut self, section: &str) -> Result<PostData, DbError> {
        let plain = self.plain_tables(&key_tables(section)).await?;
        Ok(cut(section, &|t| plain.iter().any(|p| p == t)))
    }

    /// Which of `tables`, each written as SQL names it (quoted where need
    /// be, schema-qualified), are plain PostgreSQL tables: not partitioned,
    /// not views. What cannot be found is left out.
    async fn plain_tables(&mut self, tables: &[String]) -> Result<Vec<String>, DbError> {
        let mut plain = Vec::new();
        for table in tables {
            let found = self
                .query_rows(
                    "SELECT 1 FROM pg_class WHERE oid = to_regclass($1) AND relkind = 'r'",
                    &[Value::Text(table.clone())],
                    1,
                )
                .await?;
            if !text_rows(found).is_empty() {
                plain.push(table.clone());
            }
        }
        Ok(plain)
    }
}

/// One object of the section, as `pg_dump` heads it with a comment.
struct Block<'a> {
    /// The object's type from its heading: `INDEX`, `CONSTRAINT`, ...
    kind: &'a str,
    /// Heading and statements, as written.
    text: &'a str,
    /// The statements alone.
    body: &'a str,
    /// What follows them: blank lines, and after the last object the
    /// dump's closing comment.
    tail: &'a str,
}

/// A key constraint that can be built as an index first.
#[derive(Debug, PartialEq, Eq)]
struct Key<'a> {
    /// The table as `pg_dump` wrote it, quoted and schema-qualified.
    table: &'a str,
    /// The constraint's name, as written.
    name: &'a str,
    /// `PRIMARY KEY` or `UNIQUE`.
    what: &'a str,
    /// The column list, without its parentheses.
    columns: &'a str,
}

/// The section, cut for a restore.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct PostData {
    /// The statements to run before the index builds: the section's
    /// session settings.
    pub preamble: String,
    /// Index builds to run beside the read-back, each a block of
    /// statements.
    pub early: Vec<String>,
    /// The rest, to run after the rows are read back: the preamble, then
    /// every other object in order.
    pub rest: String,
}

/// The tables of the section's key constraints that could be built early,
/// as written: the restore asks the server which of them are plain tables.
fn key_tables(section: &str) -> Vec<String> {
    let (_, blocks) = blocks(section);
    let mut tables: Vec<String> = blocks
        .iter()
        .filter(|b| b.kind == "CONSTRAINT")
        .filter_map(|b| key(b.body))
        .map(|k| k.table.to_owned())
        .collect();
    tables.sort_unstable();
    tables.dedup();
    tables
}

/// Cuts `section`, building early the keys of the tables for which `plain`
/// holds.
fn cut(section: &str, plain: &dyn Fn(&str) -> bool) -> PostData {
    let (preamble, blocks) = blocks(section);
    let mut cut = PostData {
        preamble: preamble.to_owned(),
        early: Vec::new(),
        rest: preamble.to_owned(),
    };
    for block in blocks {
        match block.kind {
            "INDEX" if one_statement_per_line(block.body) => {
                cut.early.push(block.body.trim().to_owned());
                cut.rest.push_str(block.tail);
            }
            "CONSTRAINT" => match key(block.body).filter(|k| plain(k.table)) {
                Some(k) => {
                    cut.early.push(format!(
                        "CREATE UNIQUE INDEX {} ON {} ({});",
                        k.name, k.table, k.columns
                    ));
                    cut.rest.push_str(&format!(
                        "ALTER TABLE ONLY {}\n    ADD CONSTRAINT {} {} USING INDEX {};\n",
                        k.table, k.name, k.what, k.name
                    ));
                    cut.rest.push_str(block.tail);
                }
                None => cut.rest.push_str(block.text),
            },
            _ => cut.rest.push_str(block.text),
        }
    }
    cut
}

/// The text before the first object, and the objects.
fn blocks(section: &str) -> (&str, Vec<Block<'_>>) {
    // Each object is headed "--\n-- Name: ...; Type: KIND; ...\n--\n".
    let mut starts = Vec::new();
    let mut at = 0;
    while let Some(found) = section[at..].find("--\n-- Name: ") {
        let start = at + found;
        if start == 0 || section.as_bytes()[start - 1] == b'\n' {
            starts.push(start);
        }
        at = start + 3;
    }
    let preamble = &section[..starts.first().copied().unwrap_or(section.len())];
    let mut blocks = Vec::new();
    for (i, &start) in starts.iter().enumerate() {
        let end = starts.get(i + 1).copied().unwrap_or(section.len());
        let text = &section[start..end];
        let heading = text[3..].lines().next().unwrap_or_default();
        let kind = heading
            .split("; ")
            .find_map(|part| part.strip_prefix("Type: "))
            .unwrap_or_default();
        // The statements follow the heading's closing "--" line, and end
        // where a comment begins: the dump's closing words follow the last.
        let body = text[3..].split_once("\n--\n").map(|(_, body)| body).unwrap_or_default();
        let (body, tail) = body.split_at(body.find("\n--").unwrap_or(body.len()));
        blocks.push(Block { kind, text, body, tail });
    }
    (preamble, blocks)
}

/// Whether every line of `body` is a whole statement (`pg_dump` writes an
/// index and its settings a line each), so that nothing in it is cut.
fn one_statement_per_line(body: &str) -> bool {
    let mut lines = body.lines().filter(|l| !l.trim().is_empty()).peekable();
    lines.peek().is_some_and(|first| first.starts_with("CREATE ")) && lines.all(|l| l.ends_with(';'))
}

/// A key constraint in the form `pg_dump` writes for a plain list of
/// columns:
/// `ALTER TABLE ONLY t\n    ADD CONSTRAINT n PRIMARY KEY (a, b);`.
fn key(body: &str) -> Option<Key<'_>> {
    let mut lines = body.trim().lines();
    let table = lines.next()?.strip_prefix("ALTER TABLE ONLY ")?;
    let add = lines.next()?.strip_prefix("    ADD CONSTRAINT ")?;
    if lines.next().is_some() {
        return None;
    }
    let (name, what, rest) = ["PRIMARY KEY", "UNIQUE"].iter().find_map(|what| {
        let (name, rest) = add.split_once(&format!(" {what} ("))?;
        Some((name, *what, rest))
    })?;
    let columns = rest.strip_suffix(");")?;
    if columns.contains(['(', ')']) {
        return None;
    }
    Some(Key {
        table,
        name,
        what,
        columns,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shape of `pg_dump --section post-data --no-owner`'s output.
    const SECTION: &str = "--\n-- PostgreSQL database dump\n--\n\nSET statement_timeout = 0;\n\
SELECT pg_catalog.set_config('search_path', '', false);\n\n\
--\n-- Name: accounts accounts_pkey; Type: CONSTRAINT; Schema: public; Owner: -\n--\n\n\
ALTER TABLE ONLY public.accounts\n    ADD CONSTRAINT accounts_pkey PRIMARY KEY (aid);\n\n\n\
--\n-- Name: events events_pkey; Type: CONSTRAINT; Schema: public; Owner: -\n--\n\n\
ALTER TABLE ONLY public.events\n    ADD CONSTRAINT events_pkey PRIMARY KEY (id, at);\n\n\n\
--\n-- Name: \"Odd\" \"Odd key\"; Type: CONSTRAINT; Schema: public; Owner: -\n--\n\n\
ALTER TABLE ONLY public.\"Odd\"\n    ADD CONSTRAINT \"Odd key\" UNIQUE (\"a b\");\n\n\n\
--\n-- Name: accounts accounts_later; Type: CONSTRAINT; Schema: public; Owner: -\n--\n\n\
ALTER TABLE ONLY public.accounts\n    ADD CONSTRAINT accounts_later UNIQUE (bid) DEFERRABLE INITIALLY DEFERRED;\n\n\n\
--\n-- Name: accounts_bid; Type: INDEX; Schema: public; Owner: -\n--\n\n\
CREATE INDEX accounts_bid ON public.accounts USING btree (bid);\n\
ALTER TABLE public.accounts CLUSTER ON accounts_bid;\n\n\n\
--\n-- Name: accounts accounts_bid_fkey; Type: FK CONSTRAINT; Schema: public; Owner: -\n--\n\n\
ALTER TABLE ONLY public.accounts\n    ADD CONSTRAINT accounts_bid_fkey FOREIGN KEY (bid) REFERENCES public.branches(bid);\n\n\n\
--\n-- Name: accounts_abalance; Type: INDEX; Schema: public; Owner: -\n--\n\n\
CREATE INDEX accounts_abalance ON public.accounts USING btree (abalance);\n\n\n\
--\n-- PostgreSQL database dump complete\n--\n\n";

    #[test]
    fn index_builds_go_early_and_keys_become_indexes_then_constraints() {
        assert_eq!(
            key_tables(SECTION),
            ["public.\"Odd\"", "public.accounts", "public.events"]
        );
        // `events` is partitioned, say: its key stays as written.
        let cut = cut(SECTION, &|t| t != "public.events");
        assert!(
            cut.preamble.starts_with("--\n-- PostgreSQL database dump"),
            "{}",
            cut.preamble
        );
        assert!(cut.preamble.ends_with("false);\n\n"), "{}", cut.preamble);
        assert_eq!(
            cut.early,
            [
                "CREATE UNIQUE INDEX accounts_pkey ON public.accounts (aid);",
                "CREATE UNIQUE INDEX \"Odd key\" ON public.\"Odd\" (\"a b\");",
                "CREATE INDEX accounts_bid ON public.accounts USING btree (bid);\n\
                 ALTER TABLE public.accounts CLUSTER ON accounts_bid;",
                // The last object, with the dump's closing words after it.
                "CREATE INDEX accounts_abalance ON public.accounts USING btree (abalance);",
            ]
        );
        let rest = &cut.rest;
        assert!(rest.starts_with(&cut.preamble));
        let order: Vec<usize> = [
            "ADD CONSTRAINT accounts_pkey PRIMARY KEY USING INDEX accounts_pkey;",
            "ADD CONSTRAINT events_pkey PRIMARY KEY (id, at);",
            "ADD CONSTRAINT \"Odd key\" UNIQUE USING INDEX \"Odd key\";",
            "UNIQUE (bid) DEFERRABLE INITIALLY DEFERRED;",
            "FOREIGN KEY (bid) REFERENCES public.branches(bid);",
            "dump complete",
        ]
        .iter()
        .map(|s| rest.find(s).unwrap_or_else(|| panic!("{s} is not in {rest}")))
        .collect();
        assert!(order.is_sorted(), "{order:?} in {rest}");
        assert!(!rest.contains("CREATE INDEX"), "{rest}");
    }

    #[test]
    fn a_section_without_objects_is_all_preamble() {
        let text = "SET statement_timeout = 0;\n";
        assert_eq!(
            cut(text, &|_| true),
            PostData {
                preamble: text.to_owned(),
                early: Vec::new(),
                rest: text.to_owned(),
            }
        );
        assert!(key_tables(text).is_empty());
    }
}
