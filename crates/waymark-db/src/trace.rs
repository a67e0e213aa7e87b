//! Observed locks (PostgreSQL): statements run in a transaction that is
//! always rolled back, and after each one the locks its session holds
//! (`pg_locks`) and every table's file (`pg_relation_filenode`, which a
//! rewrite replaces). What the lint rules claim, the server confirms here.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use crate::conn::{Conn, Database};
use crate::dialect::Dialect;
use crate::error::DbError;
use crate::value::Value;

/// A relation outside the system schemas, as `pg_class` has it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Relation {
    /// As `regclass` prints it: schema-qualified where not on the path.
    name: String,
    /// `pg_class.relkind`.
    kind: String,
    filenode: Option<i64>,
}

/// A lock a statement took.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct TracedLock {
    /// The mode as PostgreSQL's documentation names it: `ACCESS
    /// EXCLUSIVE`, `SHARE`, `ROW EXCLUSIVE`...
    pub mode: String,
    /// The relation, as `regclass` prints it.
    pub relation: String,
    /// `table`, `index`, `sequence`, `view` or the like.
    pub kind: &'static str,
}

/// What one statement did, as the server saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Traced {
    /// How long it took.
    pub duration: Duration,
    /// The locks it took that the transaction did not hold before it.
    pub locks: Vec<TracedLock>,
    /// The tables (and materialized views) whose file it replaced: it
    /// rewrote every row.
    pub rewritten: Vec<String>,
}

/// A transaction that runs statements and tells what each one locked and
/// rewrote, and is rolled back in the end whatever happens (dropping it
/// rolls it back too).
#[derive(Debug)]
pub struct Tracer {
    conn: Conn,
    held: HashSet<(i64, String)>,
    relations: HashMap<i64, Relation>,
}

/// Every relation outside the system schemas, by oid.
const RELATIONS: &str = "SELECT c.oid::int8, c.oid::regclass::text, c.relkind::text, \
     pg_relation_filenode(c.oid)::int8 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
     WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_toast%' \
     AND n.nspname NOT LIKE 'pg\\_temp%'";

/// The relation locks this session holds.
const LOCKS: &str = "SELECT l.relation::int8, l.mode::text FROM pg_locks l \
     WHERE l.pid = pg_backend_pid() AND l.locktype = 'relation' AND l.granted AND l.database = \
     (SELECT oid FROM pg_database WHERE datname = current_database())";

/// The relation locks this session holds, named: what a statement in a
/// transaction took shows as the difference before and after it.
const HELD: &str = "SELECT l.mode::text, l.relation::regclass::text, coalesce(c.relkind::text, '') FROM pg_locks l \
     LEFT JOIN pg_class c ON c.oid = l.relation \
     WHERE l.pid = pg_backend_pid() AND l.locktype = 'relation' AND l.granted AND l.database = \
     (SELECT oid FROM pg_database WHERE datname = current_database()) \
     AND l.relation NOT IN (SELECT oid FROM pg_class WHERE relnamespace = 'pg_catalog'::regnamespace)";

impl Conn {
    /// The relation locks this session holds (PostgreSQL; none elsewhere,
    /// where no catalog shows them without `performance_schema`). A
    /// relation dropped in the transaction is named by its oid.
    pub async fn held_locks(&mut self) -> Result<Vec<TracedLock>, DbError> {
        if self.dialect() != Dialect::Postgres {
            return Ok(Vec::new());
        }
        let rows = self.query_rows(HELD, &[], crate::dump::MANY).await?;
        let mut locks: Vec<TracedLock> = rows
            .rows
            .into_iter()
            .filter_map(|r| match r.as_slice() {
                [Value::Text(mode), Value::Text(relation), Value::Text(kind)] => Some(TracedLock {
                    mode: mode_name(mode),
                    relation: relation.clone(),
                    kind: kind_name(kind),
                }),
                _ => None,
            })
            .collect();
        locks.sort();
        locks.dedup();
        Ok(locks)
    }
}

impl Database {
    /// Begins a trace (PostgreSQL only). Its statements wait at most
    /// `lock_wait` for a lock, whatever the session's setting; with
    /// `bound`, each may also run only that long, so that a lock it gets
    /// is held no longer than that on a database others use.
    pub async fn tracer(&self, lock_wait: Duration, bound: Option<Duration>) -> Result<Tracer, DbError> {
        if self.dialect() != Dialect::Postgres {
            return Err(DbError::Config(format!(
                "a lock trace needs PostgreSQL; {} is {}",
                self.url(),
                self.dialect().name()
            )));
        }
        let mut conn = self.begin().await?;
        conn.execute(&format!("SET LOCAL lock_timeout = {}", lock_wait.as_millis().max(1)))
            .await?;
        if let Some(bound) = bound {
            conn.execute(&format!("SET LOCAL statement_timeout = {}", bound.as_millis().max(1)))
                .await?;
        }
        let mut tracer = Tracer {
            conn,
            held: HashSet::new(),
            relations: HashMap::new(),
        };
        tracer.held = tracer.locks().await?;
        tracer.relations = tracer.relations().await?;
        Ok(tracer)
    }
}

impl Tracer {
    /// Runs `sql` and says what it locked and rewrote. A failure aborts
    /// the transaction: nothing more runs in it.
    pub async fn run(&mut self, sql: &str) -> Result<Traced, DbError> {
        let started = Instant::now();
        self.conn.execute(sql).await?;
        let duration = started.elapsed();
        let held = self.locks().await?;
        let after = self.relations().await?;
        let mut locks: Vec<TracedLock> = held
            .difference(&self.held)
            .filter_map(|(oid, mode)| {
                // A relation the statement dropped is named as it was.
                let relation = after.get(oid).or_else(|| self.relations.get(oid))?;
                Some(TracedLock {
                    mode: mode_name(mode),
                    relation: relation.name.clone(),
                    kind: kind_name(&relation.kind),
                })
            })
            .collect();
        locks.sort();
        let mut rewritten: Vec<String> = self
            .relations
            .iter()
            .filter(|(_, r)| matches!(r.kind.as_str(), "r" | "m"))
            .filter_map(|(oid, before)| {
                let now = after.get(oid)?;
                (now.filenode != before.filenode).then(|| now.name.clone())
            })
            .collect();
        rewritten.sort();
        self.held = held;
        self.relations = after;
        Ok(Traced {
            duration,
            locks,
            rewritten,
        })
    }

    /// Rolls everything back.
    pub async fn rollback(self) -> Result<(), DbError> {
        self.conn.rollback().await
    }

    async fn locks(&mut self) -> Result<HashSet<(i64, String)>, DbError> {
        let rows = self.conn.query_rows(LOCKS, &[], crate::dump::MANY).await?;
        Ok(rows
            .rows
            .into_iter()
            .filter_map(|r| match r.as_slice() {
                [Value::Int(oid), Value::Text(mode)] => Some((*oid, mode.clone())),
                _ => None,
            })
            .collect())
    }

    async fn relations(&mut self) -> Result<HashMap<i64, Relation>, DbError> {
        let rows = self.conn.query_rows(RELATIONS, &[], crate::dump::MANY).await?;
        Ok(rows
            .rows
            .into_iter()
            .filter_map(|r| match r.as_slice() {
                [Value::Int(oid), Value::Text(name), Value::Text(kind), filenode] => Some((
                    *oid,
                    Relation {
                        name: name.clone(),
                        kind: kind.clone(),
                        filenode: match filenode {
                            Value::Int(n) => Some(*n),
                            _ => None,
                        },
                    },
                )),
                _ => None,
            })
            .collect())
    }
}

/// `AccessExclusiveLock` as the documentation writes it: `ACCESS
/// EXCLUSIVE`.
fn mode_name(mode: &str) -> String {
    let mode = mode.strip_suffix("Lock").unwrap_or(mode);
    let mut name = String::new();
    for c in mode.chars() {
        if c.is_uppercase() && !name.is_empty() {
            name.push(' ');
        }
        name.push(c.to_ascii_uppercase());
    }
    name
}

fn kind_name(relkind: &str) -> &'static str {
    match relkind {
        "r" | "p" => "table",
        "i" | "I" => "index",
        "S" => "sequence",
        "v" => "view",
        "m" => "materialized view",
        "f" => "foreign table",
        _ => "relation",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_are_named_as_the_documentation_names_them() {
        assert_eq!(mode_name("AccessExclusiveLock"), "ACCESS EXCLUSIVE");
        assert_eq!(mode_name("ShareLock"), "SHARE");
        assert_eq!(mode_name("ShareUpdateExclusiveLock"), "SHARE UPDATE EXCLUSIVE");
        assert_eq!(mode_name("RowExclusiveLock"), "ROW EXCLUSIVE");
    }
}
