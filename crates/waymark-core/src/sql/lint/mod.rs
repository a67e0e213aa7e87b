//! Lint: the locks a migration's statements take, said before anything
//! runs. Each rule (one file in `rules/`) has a stable id, the dialects it
//! applies to, the lock the operation takes, why that hurts and the safe
//! way to write it; it reads one parsed statement with what came before it
//! in the same migration.
//!
//! A finding is silenced only in the script, next to its statement, with a
//! reason a reviewer reads: `-- waymark:allow <rule> <reason>` on the
//! statement's line or the line above it.

mod rules;

use std::collections::{HashMap, HashSet};

use sqlparser::ast::{ObjectName, Statement};
use sqlparser::parser::Parser;
use sqlparser::tokenizer::{Token, Tokenizer};
use waymark_db::Dialect;

pub use rules::RULES;
pub(crate) use rules::{rewrites, rewritten};

/// How much a finding matters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    /// Worth a look; nothing is refused.
    Warning,
    /// `up` refuses the migration unless the finding is silenced.
    Error,
}

impl Severity {
    /// `warning` or `error`.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Warning => "warning",
            Severity::Error => "error",
        }
    }
}

/// One rule of the catalogue.
#[derive(Debug)]
pub struct Rule {
    /// Its stable id, as `-- waymark:allow` names it.
    pub id: &'static str,
    /// The dialects it applies to.
    pub dialects: &'static [Dialect],
    /// How much its findings matter.
    pub severity: Severity,
    /// The lock the operation takes, and on what.
    pub lock: &'static str,
    /// Why that hurts.
    pub why: &'static str,
    /// The safe way to write it.
    pub fix: &'static str,
    /// Whether it is said once per migration, on the first statement it
    /// fires on, rather than on every one.
    pub once_per_migration: bool,
    /// Whether the harm grows with the table (a scan, a rewrite, a build),
    /// so that `up` weighs it by the table's size; the others hurt (or
    /// fail) whatever the size.
    pub by_size: bool,
    /// What a trace on PostgreSQL sees of examples that fire it: the
    /// lock claims the tests hold to the server's word.
    pub claims: &'static [Claim],
    /// What it says of `statement`, if it fires.
    pub(crate) check: fn(&Context<'_>, &Statement) -> Option<String>,
    /// What it says, reading the words of a statement sqlparser cannot
    /// parse, if it fires there: the message, and the table it weighs.
    pub(crate) unparsed: Option<Unparsed>,
}

/// A rule's reading of a statement from its tokens (whitespace and
/// comments left out).
pub(crate) type Unparsed = fn(&Context<'_>, &[Token]) -> Option<(String, String)>;

/// An example that fires a rule, and the lock a PostgreSQL trace of it
/// sees: every rule that claims a lock has one, and the tests trace it
/// on a database made by [`CLAIM_SETUP`].
#[derive(Debug)]
pub struct Claim {
    /// The statements, one per line, in one transaction.
    pub example: &'static str,
    /// A lock mode one of them takes, as PostgreSQL's documentation names
    /// it.
    pub mode: &'static str,
    /// The table it takes it on.
    pub on: &'static str,
    /// Whether the example rewrites that table.
    pub rewrites: bool,
}

/// The tables the claims' examples run against, with rows in them.
pub const CLAIM_SETUP: &str = "CREATE TABLE parents (id int PRIMARY KEY);\n\
     CREATE TABLE accounts (id int PRIMARY KEY, parent_id int, email text, name varchar(20), age int);\n\
     CREATE INDEX accounts_age ON accounts (age);\n\
     INSERT INTO parents SELECT g FROM generate_series(1, 50) g;\n\
     INSERT INTO accounts SELECT g, g % 50 + 1, 'a' || g, 'n' || g, g FROM generate_series(1, 500) g;\n";

/// What a rule knows of the statements before the one it reads.
#[derive(Debug)]
pub(crate) struct Context<'a> {
    pub(crate) dialect: Dialect,
    /// Whether the migration runs in a transaction.
    pub(crate) transactional: bool,
    /// Tables made earlier in the same migration (lower case, without
    /// schema): their locks block no one yet.
    pub(crate) created: &'a HashSet<String>,
    /// The statement before this one, in the same transaction, that took
    /// an `ACCESS EXCLUSIVE` lock on a table that existed before, with its
    /// line.
    pub(crate) exclusive_before: Option<(u32, String)>,
    /// Constraints added `NOT VALID` earlier in the same migration.
    pub(crate) not_valid: &'a HashSet<String>,
    /// The columns' types that earlier statements of the plan gave them.
    pub(crate) columns: &'a Columns,
    /// Why no lock timeout bounds this statement's wait, if none does.
    pub(crate) no_lock_timeout: Option<String>,
}

/// Column types by lower-case table (without schema) and column, as the
/// plan's statements made them, written as in the statement.
pub(crate) type Columns = HashMap<(String, String), String>;

impl Context<'_> {
    /// Whether `table` existed before this migration.
    pub(crate) fn existing(&self, table: &ObjectName) -> bool {
        !self.created.contains(&bare(table))
    }
}

/// A table's name without schema or quotes, in lower case.
pub(crate) fn bare(name: &ObjectName) -> String {
    name.0
        .last()
        .map(|p| p.to_string().trim_matches(['"', '`']).to_lowercase())
        .unwrap_or_default()
}

/// One rule firing on one statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// The rule's id.
    pub rule: &'static str,
    /// How much it matters.
    pub severity: Severity,
    /// The statement's 1-based line in its script.
    pub line: u32,
    /// What the rule says of this statement.
    pub message: String,
    /// The lock the operation takes.
    pub lock: &'static str,
    /// The safe way to write it.
    pub fix: &'static str,
    /// The reason given where the finding is silenced; a silenced finding
    /// refuses nothing and is still listed.
    pub allowed: Option<String>,
    /// The table whose size it is weighed by (lower case, without
    /// schema), for a rule whose harm grows with the table.
    pub table: Option<String>,
    /// For a type change whose old type lint could not see: the column
    /// (lower case) and its new type, for the catalog to settle.
    pub unseen_type: Option<(String, String)>,
}

/// The table a statement locks, for the rules that weigh its size.
fn table_of(statement: &Statement) -> Option<String> {
    match statement {
        // A copy weighs by the table copied from.
        Statement::Insert(_) => rules::copied(statement).map(|(_, from)| from),
        Statement::CreateIndex(index) => Some(bare(&index.table_name)),
        Statement::AlterTable { name, .. } => Some(bare(name)),
        _ => None,
    }
}

/// The findings on a migration's statements (each with its 1-based line),
/// from the script whose text is `script` (for the silencing comments),
/// knowing the column types earlier migrations of the plan made, and
/// adding the ones these statements make.
#[cfg(test)]
pub(crate) fn lint(
    dialect: Dialect,
    transactional: bool,
    statements: &[(u32, &str)],
    script: &str,
    columns: &mut Columns,
) -> Vec<Finding> {
    lint_with(dialect, transactional, statements, script, columns, true)
}

/// [`lint`], saying whether waymark bounds each statement's lock wait
/// (`[locks] timeout` on).
pub(crate) fn lint_with(
    dialect: Dialect,
    transactional: bool,
    statements: &[(u32, &str)],
    script: &str,
    columns: &mut Columns,
    lock_timeout: bool,
) -> Vec<Finding> {
    let mut no_lock_timeout = (!lock_timeout).then(|| "[locks] timeout is off".to_owned());
    let mut created = HashSet::new();
    let mut not_valid = HashSet::new();
    let mut exclusive_before: Option<(u32, String)> = None;
    let mut findings = Vec::new();
    let lines: Vec<&str> = script.lines().collect();
    let applies = |rule: &&Rule| rule.dialects.contains(&dialect);
    for &(line, text) in statements {
        // What the statements before this one told (a macro, not a
        // closure: they change between two statements of one text).
        macro_rules! context {
            () => {
                Context {
                    dialect,
                    transactional,
                    created: &created,
                    exclusive_before: exclusive_before.clone(),
                    not_valid: &not_valid,
                    columns: &*columns,
                    no_lock_timeout: no_lock_timeout.clone(),
                }
            };
        }
        let finding = |rule: &Rule, message, table| Finding {
            table: if rule.by_size { table } else { None },
            rule: rule.id,
            severity: rule.severity,
            line,
            message,
            lock: rule.lock,
            fix: rule.fix,
            allowed: allowance(&lines, line, rule.id),
            unseen_type: None,
        };
        let Ok(parsed) = Parser::parse_sql(super::dialect(dialect), text) else {
            // sqlparser cannot read every statement the servers accept (an
            // exclusion constraint, for one). The rules that know such a
            // statement read its words; the rest leave it to the database.
            let Ok(tokens) = Tokenizer::new(super::dialect(dialect), text).tokenize() else {
                continue;
            };
            let tokens: Vec<Token> = tokens
                .into_iter()
                .filter(|t| !matches!(t, Token::Whitespace(_)))
                .collect();
            let context = context!();
            for rule in RULES.iter().filter(applies) {
                if let Some((message, table)) = rule.unparsed.and_then(|read| read(&context, &tokens)) {
                    findings.push(finding(rule, message, Some(table)));
                }
            }
            continue;
        };
        for statement in &parsed {
            let context = context!();
            for rule in RULES.iter().filter(applies) {
                if rule.once_per_migration && findings.iter().any(|f: &Finding| f.rule == rule.id) {
                    continue;
                }
                if let Some(message) = (rule.check)(&context, statement) {
                    findings.push(Finding {
                        unseen_type: if rule.id == rules::ALTER_COLUMN_TYPE {
                            rules::unseen_type(&context, statement)
                        } else {
                            None
                        },
                        ..finding(rule, message, table_of(statement))
                    });
                }
            }
            if let Some(set) = rules::set_by(dialect, statement, line) {
                no_lock_timeout = set;
            }
            remember(
                statement,
                dialect,
                transactional,
                &mut Memory {
                    created: &mut created,
                    not_valid: &mut not_valid,
                    exclusive_before: &mut exclusive_before,
                    columns,
                },
                line,
            );
        }
    }
    findings
}

/// What the rules of later statements are told.
struct Memory<'a> {
    created: &'a mut HashSet<String>,
    not_valid: &'a mut HashSet<String>,
    exclusive_before: &'a mut Option<(u32, String)>,
    columns: &'a mut Columns,
}

/// What a statement tells the rules of the ones after it.
fn remember(statement: &Statement, dialect: Dialect, transactional: bool, memory: &mut Memory<'_>, line: u32) {
    let Memory {
        created,
        not_valid,
        exclusive_before,
        columns,
    } = memory;
    match statement {
        Statement::CreateTable(t) => {
            created.insert(bare(&t.name));
            for c in &t.columns {
                columns.insert((bare(&t.name), c.name.value.to_lowercase()), c.data_type.to_string());
            }
        }
        Statement::AlterTable { name, operations, .. } => {
            for op in operations {
                use sqlparser::ast::{AlterColumnOperation, AlterTableOperation};
                match op {
                    AlterTableOperation::AddColumn { column_def, .. } => {
                        columns.insert(
                            (bare(name), column_def.name.value.to_lowercase()),
                            column_def.data_type.to_string(),
                        );
                    }
                    AlterTableOperation::AlterColumn {
                        column_name,
                        op: AlterColumnOperation::SetDataType { data_type, .. },
                    } => {
                        columns.insert((bare(name), column_name.value.to_lowercase()), data_type.to_string());
                    }
                    _ => {}
                }
                if let sqlparser::ast::AlterTableOperation::AddConstraint {
                    constraint,
                    not_valid: true,
                } = op
                    && let Some(n) = rules::constraint_name(constraint)
                {
                    not_valid.insert(n);
                }
            }
            if transactional
                && dialect == Dialect::Postgres
                && !created.contains(&bare(name))
                && operations.iter().any(rules::access_exclusive)
                && exclusive_before.is_none()
            {
                **exclusive_before = Some((line, bare(name)));
            }
        }
        _ => {}
    }
}

/// The reason of a `-- waymark:allow <rule> <reason>` for `rule` on the
/// statement's line or the line above it.
fn allowance(lines: &[&str], line: u32, rule: &str) -> Option<String> {
    let at = usize::try_from(line).ok()?.checked_sub(1)?;
    [Some(at), at.checked_sub(1)]
        .into_iter()
        .flatten()
        .filter_map(|i| lines.get(i))
        .find_map(|l| {
            let (_, after) = l.split_once("-- waymark:allow ")?;
            let (id, reason) = after.trim().split_once(char::is_whitespace)?;
            (id == rule && !reason.trim().is_empty()).then(|| reason.trim().to_owned())
        })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// The findings on `script`, split one statement per line.
    pub(crate) fn findings(dialect: Dialect, transactional: bool, script: &str) -> Vec<(&'static str, u32)> {
        let statements: Vec<(u32, &str)> = script
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty() && !l.trim_start().starts_with("--"))
            .map(|(i, l)| (i as u32 + 1, l))
            .collect();
        lint(dialect, transactional, &statements, script, &mut Columns::new())
            .into_iter()
            .filter(|f| f.allowed.is_none())
            .map(|f| (f.rule, f.line))
            .collect()
    }

    #[test]
    fn rule_ids_are_unique_and_every_rule_is_documented() {
        let mut ids = HashSet::new();
        for rule in RULES {
            assert!(ids.insert(rule.id), "{} twice", rule.id);
            assert!(
                !rule.why.is_empty() && !rule.fix.is_empty() && !rule.lock.is_empty(),
                "{}",
                rule.id
            );
            assert!(!rule.dialects.is_empty(), "{}", rule.id);
        }
    }

    #[test]
    fn a_finding_is_silenced_only_with_a_reason() {
        let script = "-- waymark:allow create-index-blocking the table has 12 rows\n\
                      CREATE INDEX a_b ON a (b);\n\
                      -- waymark:allow create-index-blocking\n\
                      CREATE INDEX a_c ON a (c);\n\
                      CREATE INDEX a_d ON a (d); -- waymark:allow create-index-blocking built at night\n";
        assert_eq!(
            findings(Dialect::Postgres, true, script),
            [("create-index-blocking", 4)]
        );
        let statements = [(2, "CREATE INDEX a_b ON a (b)")];
        let all = lint(Dialect::Postgres, true, &statements, script, &mut Columns::new());
        assert_eq!(all[0].allowed.as_deref(), Some("the table has 12 rows"));
    }

    #[test]
    fn what_cannot_be_parsed_is_not_judged() {
        assert!(findings(Dialect::Postgres, true, "CREATE INDEX WITH NO SENSE;").is_empty());
    }
}
