//! The two shapes side by side: the new version's views, and the trigger
//! that keeps the old and the new columns in step.
//!
//! The old application keeps using the physical tables; the new one puts
//! the version schema first in its `search_path` and sees a view per
//! table, each a plain single-table view that PostgreSQL updates by
//! itself. The trigger tells the two writers apart by that same
//! `search_path`: a session whose first schema is this version's (or a
//! later one's) writes the new shape, any other the old.

use crate::catalog::Table;
use crate::ops::{cut, ident};

/// The new version's view of one table.
#[derive(Debug, Clone)]
pub(crate) struct View {
    /// The name it is seen under.
    pub(crate) name: String,
    /// The physical table under it.
    pub(crate) base: String,
    /// Its columns: the name the new version sees, and the physical column.
    pub(crate) columns: Vec<(String, String)>,
}

impl View {
    /// A view showing `table` as it is, hidden columns left out.
    pub(crate) fn of(table: &Table) -> Self {
        View {
            name: table.name.clone(),
            base: table.name.clone(),
            columns: table
                .columns
                .iter()
                .filter(|c| !c.name.starts_with("_waymark_"))
                .map(|c| (c.name.clone(), c.name.clone()))
                .collect(),
        }
    }

    /// Shows physical column `physical` under `logical` instead of
    /// whatever it showed there.
    pub(crate) fn show(&mut self, logical: &str, physical: &str) {
        match self.columns.iter_mut().find(|(l, _)| l == logical) {
            Some(slot) => slot.1 = physical.to_owned(),
            None => self.columns.push((logical.to_owned(), physical.to_owned())),
        }
    }

    /// Renames the column the view shows as `from`.
    pub(crate) fn rename(&mut self, from: &str, to: &str) {
        if let Some(slot) = self.columns.iter_mut().find(|(l, _)| l == from) {
            slot.0 = to.to_owned();
        }
    }

    /// Leaves the column shown as `logical` out.
    pub(crate) fn hide(&mut self, logical: &str) {
        self.columns.retain(|(l, _)| l != logical);
    }

    /// `CREATE VIEW` in `version_schema`.
    pub(crate) fn create(&self, schema: &str, version_schema: &str, invoker: bool) -> String {
        let columns: Vec<String> = self
            .columns
            .iter()
            .map(|(logical, physical)| {
                if logical == physical {
                    ident(physical)
                } else {
                    format!("{} AS {}", ident(physical), ident(logical))
                }
            })
            .collect();
        let options = if invoker { " WITH (security_invoker = true)" } else { "" };
        format!(
            "CREATE VIEW {}.{}{options} AS SELECT {} FROM {}.{}",
            ident(version_schema),
            ident(&self.name),
            columns.join(", "),
            ident(schema),
            ident(&self.base)
        )
    }
}

/// What the sync trigger of one table computes.
#[derive(Debug, Default, Clone)]
pub(crate) struct Sync {
    /// When the old version writes: physical column, and the expression
    /// (over the old shape's columns) it gets.
    pub(crate) from_old: Vec<(String, String)>,
    /// When the new version writes: physical column, and the expression
    /// (over the new shape's columns) it gets.
    pub(crate) from_new: Vec<(String, String)>,
    /// Columns that are NULL until the backfill reaches their row.
    pub(crate) backfilled: Vec<String>,
}

impl Sync {
    pub(crate) fn is_empty(&self) -> bool {
        self.from_old.is_empty() && self.from_new.is_empty()
    }
}

/// The trigger function's and the trigger's names for `version` on
/// `table`.
pub(crate) fn trigger_names(version: &str, table: &str) -> (String, String) {
    let tag = version_tag(version);
    (
        cut(&format!("_waymark_sync_{tag}_{table}")),
        cut(&format!("_waymark_sync_{tag}")),
    )
}

/// The version as it appears in names: lower case letters, digits and
/// `_`.
pub(crate) fn version_tag(version: &str) -> String {
    version
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect()
}

/// The version schema of `version` over `schema`: `<schema>_v<version>`,
/// cut to 63 bytes.
pub(crate) fn version_schema(schema: &str, version: &str) -> String {
    cut(&format!("{schema}_v{}", version_tag(version)))
}

/// The trigger function and the trigger keeping `table`'s two shapes in
/// step. `old` and `new` are the two shapes' columns (name seen, physical
/// column); each branch declares as variables only the columns its
/// expressions name, so an expression reads `amount`, not `NEW.amount`,
/// and the trigger does no work for the rest.
pub(crate) fn trigger(
    schema: &str,
    version: &str,
    table: &str,
    sync: &Sync,
    old: &[(String, String)],
    new: &[(String, String)],
) -> Vec<String> {
    let (function, trigger) = trigger_names(version, table);
    let qualified = format!("{}.{}", ident(schema), ident(table));
    let branch = |assignments: &[(String, String)], shape: &[(String, String)]| -> String {
        if assignments.is_empty() {
            return "NULL;".to_owned();
        }
        let words: Vec<&str> = assignments.iter().flat_map(|(_, e)| words(e)).collect();
        let declare: Vec<String> = shape
            .iter()
            .filter(|(logical, _)| words.contains(&logical.as_str()))
            .map(|(logical, physical)| {
                format!(
                    "{} {qualified}.{}%TYPE := NEW.{};",
                    ident(logical),
                    ident(physical),
                    ident(physical)
                )
            })
            .collect();
        let set: Vec<String> = assignments
            .iter()
            .map(|(target, expr)| format!("NEW.{} := ({expr});", ident(target)))
            .collect();
        format!("DECLARE {} BEGIN {} END;", declare.join(" "), set.join(" "))
    };
    // The first schema of the writer's search_path names its version; a
    // version schema of this migration or a later one writes the new shape.
    // Versions compare by length, then text: numeric versions in order.
    let prefix = format!("{schema}_v");
    let tag = version_tag(version);
    let body = format!(
        "DECLARE writer text := btrim(split_part(current_setting('search_path'), ',', 1), ' \"'); \
         v text; \
         BEGIN \
         IF left(writer, {plen}) = {prefix_lit} THEN v := substr(writer, {start}); END IF; \
         IF v IS NOT NULL AND (length(v), v) >= ({tlen}, {tag_lit}) THEN {new_branch} \
         ELSE {old_branch} END IF; \
         RETURN NEW; END",
        plen = prefix.chars().count(),
        prefix_lit = literal(&prefix),
        start = prefix.chars().count() + 1,
        tlen = tag.chars().count(),
        tag_lit = literal(&tag),
        new_branch = branch(&sync.from_new, new),
        old_branch = branch(&sync.from_old, old),
    );
    vec![
        format!(
            "CREATE FUNCTION {}.{}() RETURNS trigger LANGUAGE plpgsql AS $waymark$ {body} $waymark$",
            ident(schema),
            ident(&function)
        ),
        format!(
            "CREATE TRIGGER {} BEFORE INSERT OR UPDATE ON {qualified} FOR EACH ROW EXECUTE FUNCTION {}.{}()",
            ident(&trigger),
            ident(schema),
            ident(&function)
        ),
    ]
}

/// Drops what [`trigger`] made, if it is there.
pub(crate) fn drop_trigger(schema: &str, version: &str, table: &str) -> Vec<String> {
    let (function, trigger) = trigger_names(version, table);
    vec![
        format!(
            "DROP TRIGGER IF EXISTS {} ON {}.{}",
            ident(&trigger),
            ident(schema),
            ident(table)
        ),
        format!("DROP FUNCTION IF EXISTS {}.{}()", ident(schema), ident(&function)),
    ]
}

/// The identifiers an expression may name, lower-cased as PostgreSQL folds
/// unquoted names; quoted names are taken as written.
fn words(expr: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let bytes = expr.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        if c == b'\'' {
            // A string literal names no column.
            i += 1;
            while i < bytes.len() && bytes[i] != b'\'' {
                i += 1;
            }
            i += 1;
        } else if c == b'"' {
            let start = i + 1;
            i = start;
            while i < bytes.len() && bytes[i] != b'"' {
                i += 1;
            }
            out.push(&expr[start..i.min(expr.len())]);
            i += 1;
        } else if c.is_ascii_alphabetic() || c == b'_' {
            let start = i;
            while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_') {
                i += 1;
            }
            out.push(&expr[start..i]);
        } else {
            i += 1;
        }
    }
    out
}

/// A SQL string literal.
pub(crate) fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_skip_literals_and_keep_quoted_names() {
        assert_eq!(
            words("coalesce(\"Name\", 'x y') || first_name::text"),
            ["coalesce", "Name", "first_name", "text"]
        );
    }

    #[test]
    fn version_schemas_are_named_and_cut() {
        assert_eq!(version_schema("public", "20261204120000"), "public_v20261204120000");
        assert_eq!(version_schema("public", "1.2"), "public_v1_2");
        assert_eq!(version_schema(&"s".repeat(70), "1").len(), 63);
    }

    #[test]
    fn a_trigger_declares_only_what_its_expressions_read() {
        let sync = Sync {
            from_old: vec![("_waymark_new_amount".into(), "amount * 100".into())],
            from_new: vec![("amount".into(), "amount / 100".into())],
            backfilled: vec!["_waymark_new_amount".into()],
        };
        let old = vec![("id".into(), "id".into()), ("amount".into(), "amount".into())];
        let new = vec![
            ("id".into(), "id".into()),
            ("amount".into(), "_waymark_new_amount".into()),
        ];
        let sql = trigger("public", "7", "t", &sync, &old, &new);
        assert!(
            sql[0].contains("\"amount\" \"public\".\"t\".\"_waymark_new_amount\"%TYPE := NEW.\"_waymark_new_amount\";"),
            "{}",
            sql[0]
        );
        assert!(!sql[0].contains("\"id\" \"public\""), "{}", sql[0]);
        assert!(sql[1].starts_with("CREATE TRIGGER \"_waymark_sync_7\" BEFORE INSERT OR UPDATE ON \"public\".\"t\""));
    }
}
