//! A migration's connection as its step sees it: every statement checked
//! against the step's permissions, copies of dropped data kept before the
//! statement that drops them and put back after the one that makes their
//! place again, commit points for batched steps, statement time bounded.

use std::time::Duration;

use waymark_db::{Conn, Database, DbError, Dialect};
use waymark_host::{CallError, DatabaseError, Rows, StepEnv, StepFailure, StepFuture, Value};

use super::RetryTeller;
use super::locks::{Attempts, LockPolicy, LockWait, Retried, Watch, watched};
use crate::engine::{OnStatement, PreimageNote, Progress, StatementRun};
use crate::error::Error;
use crate::source::{Access, Migration};
use crate::sql::{self, drops, permission};

/// Where a batched step's commit points go.
pub(super) struct Batches {
    pub(super) db: Database,
    pub(super) version: String,
    /// The run its checkpoints are saved under (`up`, `down`, `complete`).
    pub(super) run: &'static str,
    /// The bound on each batch's lock waits, where it is not the session's:
    /// the attempt's, carried into every transaction after a commit point.
    pub(super) lock_wait: Option<std::time::Duration>,
}

/// A migration's connection as a step sees it: each statement checked
/// against the step's permissions (`access`; none for the built-in SQL
/// step, whose scripts are the user's own), commit points for batched
/// steps, progress passed on.
pub(super) struct StepSession {
    /// `None` only if a commit point failed to open the next transaction.
    pub(super) conn: Option<Conn>,
    pub(super) access: Option<Access>,
    pub(super) dialect: Dialect,
    pub(super) batches: Option<Batches>,
    /// A dry run: one transaction, rolled back, that nothing may commit.
    pub(super) dry_run: bool,
    pub(super) progress: Option<Progress>,
    /// Told of each statement run, with the locks it took.
    pub(super) statements: Option<OnStatement>,
    /// Whether a whole script may go in one call. The built-in SQL step
    /// sends its file as one script, falling back to one statement at a
    /// time if the script fails (having run nothing); a listener that
    /// wants each statement's time and locks gets them by refusing the
    /// script, which sends the step down that path.
    pub(super) whole_scripts: bool,
    pub(super) label: String,
    /// How long one statement of a component step may run: epochs cannot
    /// interrupt a host call, so the database must.
    pub(super) statement_timeout: Option<Duration>,
    /// The session setting to put back after the step, where the bound is
    /// a session setting rather than a transaction's.
    pub(super) restore: Option<waymark_db::Restore>,
    /// How long a statement may wait for a lock, and how often it is tried
    /// again.
    pub(super) locks: LockPolicy,
    /// Who holds a lock a statement waits for is looked up from here.
    pub(super) watch: Option<Watch>,
    /// The last statement that gave up waiting for a lock.
    pub(super) lock_wait: Option<LockWait>,
    /// Set where a statement that timed out waiting for a lock is tried
    /// again on its own: outside a transaction.
    pub(super) retry_statements: Option<RetryTeller>,
    /// What happens to dropped data; `None` when nothing does.
    pub(super) preimages: Option<Preimages>,
    /// The copies kept or put back so far.
    pub(super) notes: Vec<PreimageNote>,
    /// What could not be kept, or has nowhere to go yet.
    pub(super) warnings: Vec<String>,
}

/// What a step did about dropped data.
#[derive(Debug, Default)]
pub(super) struct StepReport {
    pub(super) notes: Vec<PreimageNote>,
    pub(super) warnings: Vec<String>,
}

impl StepReport {
    /// This report, after the warnings of what happened before the step.
    pub(super) fn after(mut self, mut earlier: Vec<String>) -> Self {
        earlier.append(&mut self.warnings);
        self.warnings = earlier;
        self
    }
}

/// The copies a `down` of `m` puts back once their place exists: its own,
/// and those that earlier `down`s left waiting (their migration is no
/// longer applied), since a history often makes a column again in the
/// `down` of an earlier migration than the one that dropped it.
pub(super) async fn to_put_back(conn: &mut Conn, m: &Migration) -> Result<Vec<waymark_db::Preimage>, Error> {
    let copies = conn.preimages(None).await?;
    if copies.iter().all(|p| p.version == m.version.as_str()) {
        return Ok(copies);
    }
    let recorded: std::collections::HashSet<String> =
        conn.history_rows(None).await?.into_iter().map(|r| r.version).collect();
    Ok(copies
        .into_iter()
        .filter(|p| p.version == m.version.as_str() || !recorded.contains(&p.version))
        .collect())
}

/// What a step's session does about dropped data.
pub(super) enum Preimages {
    /// `up`: keep a copy of each table and column before a statement
    /// drops it; `strict` refuses a drop that cannot be copied.
    Keep { version: String, strict: bool },
    /// `down` of `version`: put each copy back once a statement has made
    /// its table or column again.
    PutBack {
        version: String,
        pending: Vec<waymark_db::Preimage>,
    },
}

impl StepSession {
    /// Before a statement runs: keeps a copy of whatever it drops (`up`),
    /// or says whether it may have made a place for a copy to go back to
    /// (`down`). A script of several statements with such a statement
    /// among them is refused, so that it is sent again one statement at a
    /// time (as the SQL step does) and each copy is taken or put back at
    /// exactly its statement.
    async fn before(&mut self, sql: &str, script: bool) -> Result<bool, CallError> {
        let Some(preimages) = &self.preimages else {
            return Ok(false);
        };
        match preimages {
            Preimages::Keep { .. } if !drops::may_drop(sql) => return Ok(false),
            Preimages::PutBack { pending, .. } if pending.is_empty() => return Ok(false),
            _ => {}
        }
        let changes = drops::inspect(self.dialect, sql);
        let split = |why: &str| {
            CallError::Database(DatabaseError {
                code: None,
                message: format!("{why}, so such statements must come one at a time, through `execute`"),
                position: None,
            })
        };
        match preimages {
            Preimages::Keep { .. } if changes.drops.is_empty() => Ok(false),
            Preimages::Keep { .. } if script && changes.statements > 1 => {
                Err(split("waymark keeps a copy of each table and column a migration drops"))
            }
            Preimages::Keep { .. } => {
                self.keep_all(&changes.drops).await?;
                Ok(false)
            }
            Preimages::PutBack { pending, .. } if pending.is_empty() || !changes.creates => Ok(false),
            Preimages::PutBack { .. } if script && changes.statements > 1 => Err(split(
                "waymark puts this migration's kept data back as soon as its table or column exists again",
            )),
            Preimages::PutBack { .. } => Ok(true),
        }
    }

    /// After a statement: puts back what it made room for (`down`), or,
    /// when it failed, discards the copies kept for it since `mark`: it
    /// dropped nothing, and a copy left behind would later stand in for
    /// data that may change. (Inside a transaction the rollback that
    /// follows removes them anyway.)
    async fn after(&mut self, mark: usize, put_back: bool, succeeded: bool) -> Result<(), CallError> {
        if succeeded {
            if put_back {
                self.put_back_ready().await.map_err(step_error)?;
            }
            return Ok(());
        }
        let kept: Vec<String> = self.notes.drain(mark..).map(|n| n.kept_in).collect();
        if let Some(conn) = self.conn.as_mut() {
            for kept_in in kept {
                if let Err(e) = conn.discard_preimage(&kept_in).await {
                    tracing::debug!(kept_in, "discarding a copy after its statement failed: {e}");
                }
            }
        }
        Ok(())
    }

    /// Keeps a copy of each of `targets` (`up` only).
    pub(super) async fn keep_all(&mut self, targets: &[waymark_db::ObjectRef]) -> Result<(), CallError> {
        let Some(Preimages::Keep { version, strict }) = &self.preimages else {
            return Ok(());
        };
        let (version, strict) = (version.clone(), *strict);
        for target in targets {
            // `_waymark_` columns are the ops step's scaffolding (an old
            // shape renamed out of the way, a new one beside it): what they
            // hold is derived from a column that stays, so a copy would be
            // time spent under the contract's locks for data no `down` needs.
            if target.column.as_ref().is_some_and(|c| c.value.starts_with("_waymark_")) {
                continue;
            }
            let conn = self.conn.as_mut().ok_or_else(lost_connection)?;
            match conn.keep_preimage(&version, target).await {
                Ok(Some(kept)) => self.notes.push(PreimageNote {
                    object: kept.object,
                    kept_in: kept.kept_in,
                    rows: kept.rows,
                    put_back: None,
                }),
                Ok(None) => {}
                Err(DbError::Preimage(message)) if strict => {
                    return Err(CallError::Denied(format!(
                        "{message}; give the table a primary key first, or set `preimages = true` (keep what \
                         can be kept) or `false` under [backup] in waymark.toml"
                    )));
                }
                Err(DbError::Preimage(message)) => {
                    tracing::debug!("not kept: {message}");
                    self.warnings.push(format!(
                        "{message}; nothing of it is kept, and `down` will not give its values back \
                         (`preimages = \"strict\"` under [backup] refuses such a drop instead)"
                    ));
                }
                Err(e) => return Err(step_error(e).into()),
            }
        }
        Ok(())
    }

    /// Puts back every copy whose table or column exists now (`down`).
    async fn put_back_ready(&mut self) -> Result<(), DbError> {
        let Some(Preimages::PutBack { pending, .. }) = &mut self.preimages else {
            return Ok(());
        };
        let Some(conn) = self.conn.as_mut() else { return Ok(()) };
        let mut still = Vec::new();
        for preimage in std::mem::take(pending) {
            match conn.restore_preimage(&preimage).await? {
                Some(written) => self.notes.push(PreimageNote {
                    object: preimage.object.clone(),
                    kept_in: preimage.kept_in.clone(),
                    rows: preimage.rows,
                    put_back: Some(written),
                }),
                None => still.push(preimage),
            }
        }
        *pending = still;
        Ok(())
    }

    /// After a `down` step: puts back what no statement of it was seen to
    /// make room for. A copy of this migration's that still has nowhere to
    /// go waits, kept, for a later `down` (of an earlier migration, in this
    /// run or another) to make its place again; `status` lists it.
    pub(super) async fn put_back_the_rest(&mut self, label: &str) -> Result<(), StepFailure> {
        self.put_back_ready()
            .await
            .map_err(|e| StepFailure::Host(e.to_string()))?;
        let Some(Preimages::PutBack { version, pending }) = &self.preimages else {
            return Ok(());
        };
        for copy in pending.iter().filter(|p| &p.version == version) {
            let what = if copy.column.is_some() { "column" } else { "table" };
            self.warnings.push(format!(
                "the down step of {label} did not make {what} {} again (with the columns its copy needs): its {} \
                 rows wait in {} and go back when a later down makes it again; `waymark status` lists them",
                copy.object, copy.rows, copy.kept_in
            ));
        }
        Ok(())
    }

    /// Bounds each statement by `statement_timeout` (again after each
    /// commit point, where the bound is the transaction's), to be put back
    /// after the step where it is the session's.
    pub(super) async fn bound_statements(&mut self) -> Result<(), Error> {
        let (Some(timeout), Some(conn)) = (self.statement_timeout, self.conn.as_mut()) else {
            return Ok(());
        };
        if let Some(restore) = conn.bound_statements(timeout).await? {
            self.restore = Some(restore);
        }
        Ok(())
    }

    pub(super) fn in_transaction(&self) -> bool {
        self.conn.as_ref().is_some_and(Conn::in_transaction)
    }

    /// Runs one statement, watched: a statement that gives up waiting for
    /// a lock is remembered with who held it, and where it did nothing
    /// and holds nothing (outside a transaction) it is tried again after
    /// its blockers' end or a pause, within the lock policy's budget.
    async fn attempt(&mut self, op: Op<'_>) -> Result<Done, CallError> {
        let Some(tell) = self.statements.clone() else {
            return self.attempt_unwatched(op).await;
        };
        let in_transaction = self.in_transaction();
        let before = match in_transaction {
            true => self.held_locks().await,
            false => None,
        };
        let started = std::time::Instant::now();
        let result = self.attempt_unwatched(op).await;
        let duration = started.elapsed();
        // After a failure the transaction is aborted (PostgreSQL): nothing
        // more can be asked of it.
        let locks = match (&before, &result) {
            (Some(before), Ok(_)) => self
                .held_locks()
                .await
                .map(|after| after.into_iter().filter(|l| !before.contains(l)).collect())
                .unwrap_or_default(),
            _ => Vec::new(),
        };
        tell(&StatementRun {
            migration: &self.label,
            sql: op.sql(),
            started,
            duration,
            error: result.as_ref().err().map(|e| match e {
                CallError::Database(e) => e.message.clone(),
                CallError::Denied(message) => message.clone(),
            }),
            in_transaction,
            locks: &locks,
        });
        result
    }

    /// The relation locks the session's transaction holds, where they can
    /// be seen; a failure to look is no failure of the step's.
    async fn held_locks(&mut self) -> Option<Vec<waymark_db::TracedLock>> {
        match self.conn.as_mut()?.held_locks().await {
            Ok(locks) => Some(locks),
            Err(e) => {
                tracing::debug!("reading the session's locks: {e}");
                None
            }
        }
    }

    async fn attempt_unwatched(&mut self, op: Op<'_>) -> Result<Done, CallError> {
        // `CREATE INDEX CONCURRENTLY` (and its kin) waits for every older
        // transaction to end, which blocks no application query; cut short
        // by the lock timeout it would leave an invalid index behind. It
        // waits as long as it takes, watched all the same. (Inside a
        // transaction it fails anyway, with the server's own message.)
        let unbounded =
            self.locks.timeout.is_some() && !self.in_transaction() && sql::concurrently(self.dialect, op.sql());
        if unbounded {
            self.conn()?
                .set_lock_wait(None)
                .await
                .map_err(|e| CallError::Database(step_error(e)))?;
        }
        let result = self.attempt_bounded(op).await;
        if unbounded && let Some(conn) = self.conn.as_mut() {
            let bound = conn.set_lock_wait(self.locks.timeout).await;
            if result.is_ok() {
                bound.map_err(|e| CallError::Database(step_error(e)))?;
            }
        }
        result
    }

    async fn attempt_bounded(&mut self, op: Op<'_>) -> Result<Done, CallError> {
        let mut attempts = Attempts::new(&self.locks);
        loop {
            let started = std::time::Instant::now();
            let watch = self.watch.clone();
            let conn = self.conn()?;
            let (result, blockers) = match op {
                Op::Execute(sql, params) => {
                    let (r, b) = watched(conn.execute_with(sql, params), watch.as_ref()).await;
                    (r.map(Done::Count), b)
                }
                Op::Query(sql, params, max_rows) => {
                    let (r, b) = watched(conn.query_rows(sql, params, max_rows), watch.as_ref()).await;
                    (r.map(Done::Rows), b)
                }
                Op::Script(sql) => {
                    let (r, b) = watched(conn.execute_script(sql), watch.as_ref()).await;
                    (r.map(Done::Count), b)
                }
            };
            if result.is_ok() {
                waymark_db::crash_point("statement-done");
            }
            let error = match result {
                Err(e) if e.is_lock_timeout() => e,
                other => return other.map_err(|e| CallError::Database(step_error(e))),
            };
            let mut wait = LockWait {
                statement: waymark_db::one_line(op.sql(), 80),
                waited: started.elapsed(),
                blockers,
                tried: None,
            };
            let attempt = attempts.attempt;
            if let Some(teller) = self.retry_statements.clone()
                && !self.in_transaction()
                && let Some(pause) = attempts.next(&wait)
            {
                teller.tell(
                    attempt,
                    attempts.budget(),
                    &wait.to_string(),
                    &pause,
                    Retried::Statement,
                );
                match &self.watch {
                    Some(watch) => pause.wait(&watch.db).await,
                    None => tokio::time::sleep(pause.at_most).await,
                }
                continue;
            }
            if attempt > 1 {
                wait.tried = Some((attempt, attempts.elapsed()));
            }
            self.lock_wait = Some(wait);
            return Err(CallError::Database(step_error(error)));
        }
    }

    /// A batched step's statement that cannot run in a transaction
    /// (`CREATE INDEX CONCURRENTLY` and its kin), run between two: the
    /// transaction in progress commits, under the last commit point's
    /// checkpoint (so a step sends it right after a commit point, or its
    /// work since then commits with it and is done again on a resume);
    /// the statement runs on a connection of its own, its lock waits
    /// unbounded as `attempt` has them; the next transaction begins.
    async fn between_transactions(&mut self, sql: &str, params: Vec<Value>) -> Result<u64, CallError> {
        let Some(batches) = &self.batches else {
            return Err(lost_connection());
        };
        let (db, lock_wait) = (batches.db.clone(), batches.lock_wait);
        let conn = self.conn.take().ok_or_else(lost_connection)?;
        conn.commit().await.map_err(step_error)?;
        self.conn = Some(db.connection().await.map_err(step_error)?);
        let params: Vec<waymark_db::Value> = params.into_iter().map(to_db).collect();
        let result = self.attempt(Op::Execute(sql, &params)).await;
        // Back to the pool before the next is taken: a pool of one must do.
        self.conn = None;
        self.conn = Some(db.begin_migration(lock_wait).await.map_err(step_error)?);
        if self.restore.is_none() {
            self.bound_statements().await.map_err(host_error)?;
        }
        Ok(result?.count())
    }

    pub(super) async fn unbound_statements(&mut self) -> Result<(), Error> {
        if let (Some(restore), Some(conn)) = (self.restore.take(), self.conn.as_mut()) {
            // On an aborted PostgreSQL transaction this fails, and the
            // rollback that follows undoes the setting anyway.
            if let Err(e) = conn.restore(restore).await {
                tracing::debug!("restoring the statement timeout: {e}");
            }
        }
        Ok(())
    }

    fn check(&self, sql: &str) -> Result<(), CallError> {
        match &self.access {
            Some(access) => permission::check(access, self.dialect, sql).map_err(CallError::Denied),
            None => Ok(()),
        }
    }

    fn conn(&mut self) -> Result<&mut Conn, CallError> {
        self.conn.as_mut().ok_or_else(lost_connection)
    }

    /// What the parser cannot see, the database stops: a read-only step
    /// runs under the connection's read-only guard where it has one.
    /// Returns whether the guard is up.
    pub(super) async fn guard_read_only(&mut self) -> Result<bool, Error> {
        if self.access != Some(Access::ReadOnly) || self.batches.is_some() {
            return Ok(false);
        }
        match self.conn.as_mut() {
            Some(conn) => Ok(conn.guard_read_only().await?),
            None => Ok(false),
        }
    }

    pub(super) async fn unguard_read_only(&mut self) -> Result<(), Error> {
        if let Some(conn) = self.conn.as_mut() {
            conn.unguard_read_only().await?;
        }
        Ok(())
    }
}

impl StepEnv for StepSession {
    fn execute<'a>(&'a mut self, sql: &'a str, params: Vec<Value>) -> StepFuture<'a, Result<u64, CallError>> {
        Box::pin(async move {
            self.check(sql)?;
            if self.batches.is_some() && self.in_transaction() && sql::concurrently(self.dialect, sql) {
                if self.dry_run {
                    return Err(CallError::Database(DatabaseError {
                        code: None,
                        message: format!(
                            "a dry run cannot run `{}`: it runs everything in one transaction that is rolled back, and this runs only outside one; `waymark plan` shows it",
                            waymark_db::one_line(sql, 60)
                        ),
                        position: None,
                    }));
                }
                return self.between_transactions(sql, params).await;
            }
            let mark = self.notes.len();
            let put_back = self.before(sql, false).await?;
            let params: Vec<waymark_db::Value> = params.into_iter().map(to_db).collect();
            let result = self.attempt(Op::Execute(sql, &params)).await;
            self.after(mark, put_back, result.is_ok()).await?;
            Ok(result?.count())
        })
    }

    fn query<'a>(
        &'a mut self,
        sql: &'a str,
        params: Vec<Value>,
        max_rows: usize,
    ) -> StepFuture<'a, Result<Rows, CallError>> {
        Box::pin(async move {
            self.check(sql)?;
            let mark = self.notes.len();
            let put_back = self.before(sql, false).await?;
            let params: Vec<waymark_db::Value> = params.into_iter().map(to_db).collect();
            let result = self.attempt(Op::Query(sql, &params, max_rows)).await;
            self.after(mark, put_back, result.is_ok()).await?;
            let rows = result?.rows();
            Ok(Rows {
                columns: rows
                    .columns
                    .into_iter()
                    .map(|c| waymark_host::Column {
                        name: c.name,
                        type_name: c.type_name,
                    })
                    .collect(),
                rows: rows
                    .rows
                    .into_iter()
                    .map(|row| row.into_iter().map(from_db).collect())
                    .collect(),
            })
        })
    }

    fn in_transaction(&self) -> bool {
        StepSession::in_transaction(self)
    }

    fn execute_script<'a>(&'a mut self, sql: &'a str) -> StepFuture<'a, Result<u64, CallError>> {
        Box::pin(async move {
            self.check(sql)?;
            if !self.whole_scripts {
                return Err(CallError::Database(DatabaseError {
                    code: None,
                    message: "each statement is watched: send them one at a time".to_owned(),
                    position: None,
                }));
            }
            let mark = self.notes.len();
            let put_back = self.before(sql, true).await?;
            let result = self.attempt(Op::Script(sql)).await;
            self.after(mark, put_back, result.is_ok()).await?;
            Ok(result?.count())
        })
    }

    fn commit<'a>(&'a mut self, checkpoint: &'a str) -> StepFuture<'a, Result<(), CallError>> {
        Box::pin(async move {
            let Some(batches) = &self.batches else {
                return Err(CallError::Database(DatabaseError {
                    code: None,
                    message: "commit points are only for steps declared transaction = \"batches\" in step.toml"
                        .to_owned(),
                    position: None,
                }));
            };
            let direction = batches.run;
            let version = batches.version.clone();
            let db = batches.db.clone();
            // After a commit point that failed to open the next transaction
            // there is none to commit: the step hears so; the host goes on.
            let mut conn = self.conn.take().ok_or_else(lost_connection)?;
            if let Err(e) = conn.save_checkpoint(&version, direction, checkpoint).await {
                self.conn = Some(conn);
                return Err(step_error(e).into());
            }
            waymark_db::crash_point("batch-before-commit");
            conn.commit().await.map_err(step_error)?;
            waymark_db::crash_point("batch-committed");
            tracing::debug!(migration = %self.label, checkpoint, "committed a batch");
            self.conn = Some(db.begin_migration(batches.lock_wait).await.map_err(step_error)?);
            // A bound that is the transaction's ended with it; one that is
            // the session's (something to restore) still holds.
            if self.restore.is_none() {
                self.bound_statements().await.map_err(host_error)?;
            }
            Ok(())
        })
    }

    fn progress(&mut self, done: u64, total: Option<u64>) {
        if let Some(progress) = &self.progress {
            progress(&self.label, done, total);
        }
    }
}

/// A statement a step sends, as [`StepSession::attempt`] runs it.
#[derive(Clone, Copy)]
enum Op<'a> {
    Execute(&'a str, &'a [waymark_db::Value]),
    Query(&'a str, &'a [waymark_db::Value], usize),
    Script(&'a str),
}

impl Op<'_> {
    fn sql(&self) -> &str {
        match self {
            Op::Execute(sql, _) | Op::Query(sql, ..) | Op::Script(sql) => sql,
        }
    }
}

/// What a statement gave back.
enum Done {
    Count(u64),
    Rows(waymark_db::Rows),
}

impl Done {
    fn count(self) -> u64 {
        match self {
            Done::Count(n) => n,
            Done::Rows(rows) => rows.rows.len() as u64,
        }
    }

    fn rows(self) -> waymark_db::Rows {
        match self {
            Done::Rows(rows) => rows,
            Done::Count(_) => waymark_db::Rows::default(),
        }
    }
}

pub(super) fn lost_connection() -> CallError {
    CallError::Database(DatabaseError {
        code: None,
        message: "the connection was lost at the last commit point".to_owned(),
        position: None,
    })
}

fn to_db(v: Value) -> waymark_db::Value {
    match v {
        Value::Null => waymark_db::Value::Null,
        Value::Boolean(b) => waymark_db::Value::Bool(b),
        Value::Integer(n) => waymark_db::Value::Int(n),
        Value::Float(f) => waymark_db::Value::Float(f),
        Value::Text(s) => waymark_db::Value::Text(s),
        Value::Bytes(b) => waymark_db::Value::Bytes(b),
        Value::Json(s) => waymark_db::Value::Json(s),
        Value::Timestamp(t) => waymark_db::Value::Timestamp {
            seconds: t.seconds,
            nanos: t.nanoseconds,
        },
    }
}

fn from_db(v: waymark_db::Value) -> Value {
    match v {
        waymark_db::Value::Null => Value::Null,
        waymark_db::Value::Bool(b) => Value::Boolean(b),
        waymark_db::Value::Int(n) => Value::Integer(n),
        waymark_db::Value::Float(f) => Value::Float(f),
        waymark_db::Value::Text(s) => Value::Text(s),
        waymark_db::Value::Bytes(b) => Value::Bytes(b),
        waymark_db::Value::Json(s) => Value::Json(s),
        waymark_db::Value::Timestamp { seconds, nanos } => Value::Timestamp(waymark_host::Timestamp {
            seconds,
            nanoseconds: nanos,
        }),
    }
}

pub(super) fn step_error(e: DbError) -> DatabaseError {
    match e {
        DbError::Query {
            code,
            message,
            position,
            ..
        } => DatabaseError {
            code,
            message,
            position,
        },
        other => DatabaseError {
            code: None,
            message: other.to_string(),
            position: None,
        },
    }
}

/// A host-side failure, as the step hears it.
fn host_error(e: Error) -> CallError {
    CallError::Database(DatabaseError {
        code: None,
        message: e.to_string(),
        position: None,
    })
}
