//! `plan --trace`: the plan's statements run on PostgreSQL in one
//! transaction that is always rolled back, with what each one locked,
//! rewrote and took, as the server saw it (`waymark_db::Tracer`). It is the
//! observed half of lint: the rules say what a statement will lock, the
//! trace shows it.
//!
//! It runs the statements each step's `plan` lists, in order, so a later
//! migration sees what an earlier one made. A migration that does not run
//! in a transaction (`-- no-transaction`, batched steps) cannot be rolled
//! back and is not run: the trace says so and goes on. A statement that
//! fails (a lock it could not get within the timeout, an error) ends the
//! trace there, since the transaction is aborted.

use std::time::Duration;

use schemars::JsonSchema;
use serde::Serialize;
use waymark_db::{Database, DbError, one_line};

use crate::plan::Plan;

/// What the plan's statements did, as the server saw it.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct Trace {
    /// The database it ran on, without its password.
    pub target: String,
    /// How long a statement waited for a lock at most, in milliseconds.
    pub lock_timeout_ms: u64,
    /// How long a statement could run at most, in milliseconds, where the
    /// trace ran on the target itself (a lock it took was held no longer);
    /// none on a scratch database.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub statement_timeout_ms: Option<u64>,
    /// Each migration of the plan, in order, up to where the trace ended.
    pub migrations: Vec<TracedMigration>,
    /// Why the trace ended before the plan's end, if it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stopped: Option<TraceStop>,
}

/// One migration, traced.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct TracedMigration {
    /// Its version.
    pub version: String,
    /// Its name.
    pub name: String,
    /// The script whose statements ran.
    pub file: String,
    /// Why its statements were not run, if they were not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub skipped: Option<String>,
    /// Each statement that ran, in order.
    pub statements: Vec<TracedStatement>,
}

/// One statement, traced.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct TracedStatement {
    /// Its 1-based line in the script.
    pub line: u32,
    /// Its start, on one line.
    pub sql: String,
    /// How long it took, in milliseconds.
    pub duration_ms: f64,
    /// The locks it took that the transaction did not hold already.
    pub locks: Vec<SeenLock>,
    /// The tables whose every row it rewrote (their file was replaced).
    pub rewritten: Vec<String>,
}

/// A lock a statement took.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
pub struct SeenLock {
    /// The mode, as PostgreSQL's documentation names it (`ACCESS
    /// EXCLUSIVE`, `SHARE`...).
    pub mode: String,
    /// The relation.
    pub relation: String,
    /// `table`, `index`, `sequence`, `view`...
    pub kind: String,
}

/// Where and why a trace ended early.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
pub struct TraceStop {
    /// The migration's version.
    pub version: String,
    /// The script.
    pub file: String,
    /// The statement's line.
    pub line: u32,
    /// What the server said.
    pub message: String,
    /// Whether it was a lock the statement could not get in time.
    pub lock_timeout: bool,
    /// The sessions that held the lock it waited for, as seen while it
    /// waited: process id, user, application, state, transaction age and
    /// query.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub held_by: Vec<String>,
}

/// Runs `plan`'s statements on `db` in a transaction that is rolled back,
/// each waiting at most `lock_wait` for a lock and, with `bound`, running
/// at most that long.
pub(crate) async fn trace(
    db: &Database,
    plan: &Plan,
    lock_wait: Duration,
    bound: Option<Duration>,
) -> Result<Trace, DbError> {
    let mut tracer = db.tracer(lock_wait, bound).await?;
    // Who holds what a statement waits for is looked up from another
    // connection while it waits, as `up` does.
    let watch = super::locks::Watch::of(db, Some(lock_wait));
    let mut trace = Trace {
        target: db.url().to_owned(),
        lock_timeout_ms: millis(lock_wait),
        statement_timeout_ms: bound.map(millis),
        migrations: Vec::new(),
        stopped: None,
    };
    'plan: for p in &plan.migrations {
        let mut traced = TracedMigration {
            version: p.migration.version.to_string(),
            name: p.migration.name.clone(),
            file: p.file.display().to_string(),
            skipped: None,
            statements: Vec::new(),
        };
        if !p.transactional() {
            traced.skipped = Some(
                "it runs outside a transaction, so its statements cannot be rolled back; later migrations \
                 that need what it makes will fail here"
                    .to_owned(),
            );
        } else if p.actions.is_empty() {
            traced.skipped = Some("its step lists no statements".to_owned());
        }
        if traced.skipped.is_some() {
            trace.migrations.push(traced);
            continue;
        }
        for a in &p.actions {
            let (result, blockers) = super::locks::watched(tracer.run(&a.text), watch.as_ref()).await;
            match result {
                Ok(seen) => traced.statements.push(TracedStatement {
                    line: a.line,
                    sql: one_line(&a.text, 120),
                    duration_ms: seen.duration.as_secs_f64() * 1000.0,
                    locks: seen
                        .locks
                        .into_iter()
                        .map(|l| SeenLock {
                            mode: l.mode,
                            relation: l.relation,
                            kind: l.kind.to_owned(),
                        })
                        .collect(),
                    rewritten: seen.rewritten,
                }),
                Err(e) => {
                    trace.stopped = Some(TraceStop {
                        version: traced.version.clone(),
                        file: traced.file.clone(),
                        line: a.line,
                        lock_timeout: e.is_lock_timeout(),
                        message: e.to_string(),
                        held_by: blockers.iter().map(ToString::to_string).collect(),
                    });
                    trace.migrations.push(traced);
                    break 'plan;
                }
            }
        }
        trace.migrations.push(traced);
    }
    tracer.rollback().await?;
    Ok(trace)
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
