//! The executor: carries out a [`Plan`] against one database, with the
//! step host every executor of a run shares, and names that database in
//! every event it emits.
//!
//! A migration runs as its plan's strategy says:
//! - atomic: the step and its history row commit together in one
//!   transaction, or neither does;
//! - recorded: a `running` row is committed first and replaced by
//!   `applied` or `failed` afterwards, so a failure or a killed runner is
//!   visible and blocks further runs until `repair`;
//! - batched: as recorded, but the step runs in transactions that end at
//!   the commit points it asks for, each recording its checkpoint; a run
//!   that stops part-way is resumed from the last checkpoint by the next
//!   `up`;
//! - one transaction: the whole plan in one transaction, all of it or none
//!   (rolled back at the end for a dry run).
//!
//! The executor assumes the caller holds the migration lock and made (or
//! checked) the plan under it.

mod locks;
mod session;
mod trace;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use waymark_db::{AuditEntry, Conn, Database, NewHistoryRow, State as Recorded};
use waymark_host::{Call, CallError, Direction, StepFailure};

use self::locks::{Attempts, LockWait, Pause, Watch};
pub use self::locks::{LockPolicy, LockRetry, OnLockRetry, Retried};
use self::session::{Batches, Preimages, StepReport, StepSession, to_put_back};
pub(crate) use self::trace::trace;
pub use self::trace::{SeenLock, Trace, TraceStop, TracedMigration, TracedStatement};
use crate::engine::{
    Applied, Event, OnStatement, PreimageMode, Progress, batched, config_of, host_dialect, run_name, script_for,
};
use crate::error::Error;
use crate::plan::{Plan, Strategy, Way};
use crate::source::{Migration, OpsPhase, Step, Transaction};
use crate::steps::Steps;

/// One migration to run in one transaction, as often as its lock waits
/// need.
#[derive(Clone, Copy)]
struct Atomic<'a> {
    m: &'a Migration,
    direction: Direction,
    /// The migrations the plan has applied so far, for the failure.
    done: &'a [Applied],
    /// Copies of dropped data left by earlier `down`s.
    waiting: &'a HashSet<String>,
    mode: PreimageMode,
}

/// How an atomic attempt failed: by a lock wait that timed out (and may be
/// tried again), or otherwise.
enum Attempt {
    TimedOut(Box<crate::error::MigrationFailure>, Vec<Applied>, LockWait),
    Failed(Error),
}

impl<T: Into<Error>> From<T> for Attempt {
    fn from(e: T) -> Self {
        Attempt::Failed(e.into())
    }
}

/// Carries out plans against one database.
pub struct Executor<'a> {
    db: &'a Database,
    steps: &'a Steps,
    /// The database's name in events: its URL without a password, or the
    /// name a fleet gives it.
    target: &'a str,
    progress: Option<Progress>,
    statements: Option<OnStatement>,
    /// The backup taken before the plan ran, recorded with each migration
    /// applied.
    backup_id: Option<String>,
    /// How statements wait for locks.
    locks: LockPolicy,
    on_lock_retry: Option<OnLockRetry>,
    /// The versions a `redo` reverted and did not apply again (a runner
    /// stopped between the two), read when a plan starts. A `redo`'s down
    /// opens one and any `up` of it closes it, each with an audit entry in
    /// the transaction that records the migration, so that the next
    /// `redo` knows to apply it rather than revert one more.
    open_redos: std::sync::Mutex<HashSet<String>>,
    /// Whether the plan carried out is a `redo`'s.
    redoing: std::sync::atomic::AtomicBool,
}

impl std::fmt::Debug for Executor<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Executor").field("target", &self.target).finish()
    }
}

impl<'a> Executor<'a> {
    /// An executor against `db`, named `target` in events.
    pub fn new(db: &'a Database, steps: &'a Steps, target: &'a str) -> Self {
        Executor {
            db,
            steps,
            target,
            progress: None,
            statements: None,
            backup_id: None,
            locks: LockPolicy::default(),
            on_lock_retry: None,
            open_redos: Default::default(),
            redoing: Default::default(),
        }
    }

    /// Waits for locks as `locks` says, telling `on_retry` of each retry.
    pub fn with_locks(mut self, locks: LockPolicy, on_retry: Option<OnLockRetry>) -> Self {
        self.locks = locks;
        self.on_lock_retry = on_retry;
        self
    }

    /// Sends steps' progress reports to `progress`.
    pub fn with_progress(mut self, progress: Option<Progress>) -> Self {
        self.progress = progress;
        self
    }

    /// Tells `tell` of each statement a step runs.
    pub fn with_statements(mut self, tell: Option<OnStatement>) -> Self {
        self.statements = tell;
        self
    }

    /// Records `id` as the backup taken before each migration it applies.
    pub fn with_backup(mut self, id: Option<String>) -> Self {
        self.backup_id = id;
        self
    }

    /// Carries out `plan`; on a failure, the error lists what was done
    /// before it.
    pub async fn run(&self, plan: &Plan, on_event: &mut (dyn FnMut(Event<'_>) + Send)) -> Result<Vec<Applied>, Error> {
        if !plan.migrations.is_empty() {
            *self.open_redos.lock().unwrap() = self.db.connection().await?.open_redos().await?;
        }
        self.redoing
            .store(plan.way == Way::Redo, std::sync::atomic::Ordering::Relaxed);
        if plan.single_transaction || plan.dry_run {
            self.apply_batch(plan, on_event).await
        } else {
            self.run_each(plan, on_event).await
        }
    }

    /// Which migrations have copies waiting, read before the first `up` of
    /// a run (and again after a `down`, which may leave some): only those
    /// need `retire_waiting`.
    async fn read_waiting(&self) -> Result<HashSet<String>, Error> {
        let mut conn = self.db.connection().await?;
        let copies = conn.preimages(None).await?;
        let mut waiting = HashSet::new();
        if !copies.is_empty() {
            let recorded: HashSet<String> = conn.history_rows(None).await?.into_iter().map(|r| r.version).collect();
            waiting.extend(copies.into_iter().map(|c| c.version).filter(|v| !recorded.contains(v)));
        }
        Ok(waiting)
    }

    /// Before `m` is applied afresh (it has no history row, so this is not a
    /// resumed run): a copy that an earlier `down` of `m` left waiting, and
    /// whose table or column exists again, holds data older than what is there
    /// now. `up` is about to drop that place again and keeps a copy of what is
    /// there now; the old copy would stand in for it and put stale values
    /// back, so it goes, with a warning.
    async fn retire_waiting(
        &self,
        conn: &mut Conn,
        m: &Migration,
        direction: Direction,
        waiting: &HashSet<String>,
    ) -> Result<Vec<String>, Error> {
        if direction == Direction::Down
            || !waiting.contains(m.version.as_str())
            || !conn.history_rows(Some(m.version.as_str())).await?.is_empty()
        {
            return Ok(Vec::new());
        }
        let mut warnings = Vec::new();
        for copy in conn.preimages(Some(m.version.as_str())).await? {
            if conn.preimage_object_exists(&copy).await? {
                conn.discard_preimage(&copy.kept_in).await?;
                warnings.push(format!(
                    "discarded the copy of {} ({} rows) that waited since an earlier down of {}: {} exists again, \
                     and a copy of what it holds now replaces the old one",
                    copy.object,
                    copy.rows,
                    m.label(),
                    copy.object
                ));
            }
        }
        Ok(warnings)
    }

    /// Carries out each migration of the plan in turn, stopping at the
    /// first failure.
    async fn run_each(&self, plan: &Plan, on_event: &mut (dyn FnMut(Event<'_>) + Send)) -> Result<Vec<Applied>, Error> {
        let target = self.target;
        // Read before the first `up`, and again after a `down` (a redo's),
        // which may have left copies waiting.
        let mut waiting: Option<HashSet<String>> = None;
        let mut done = Vec::new();
        let of = plan.migrations.len();
        for (i, p) in plan.migrations.iter().enumerate() {
            let (m, down) = (&p.migration, p.down);
            let direction = if down { Direction::Down } else { Direction::Up };
            let waiting = if down {
                waiting = None;
                &HashSet::new()
            } else {
                match &mut waiting {
                    Some(w) => &*w,
                    slot => &*slot.insert(self.read_waiting().await?),
                }
            };
            let label = m.label();
            on_event(Event::Started {
                target,
                label: &label,
                down,
                position: i + 1,
                of,
            });
            let started = Instant::now();
            let ran = match p.strategy {
                Strategy::Atomic => {
                    self.run_atomic_retrying(Atomic {
                        m,
                        direction,
                        done: &done,
                        waiting,
                        mode: plan.preimages,
                    })
                    .await
                }
                _ => self.run_recorded(m, direction, &done, waiting, plan.preimages).await,
            };
            let report = match ran {
                Ok(Some(report)) => report,
                Ok(None) => {
                    on_event(Event::Skipped {
                        target,
                        label: &label,
                        down,
                    });
                    continue;
                }
                Err(e) => return Err(with_applied(e, done)),
            };
            done.push(finished(target, m, down, started, p.transactional(), report, on_event));
            if down && plan.way == Way::Redo {
                waymark_db::crash_point("redo-reverted");
            } else if !down {
                self.open_redos.lock().unwrap().remove(m.version.as_str());
            }
        }
        Ok(done)
    }

    /// Whether another runner applied (or reverted) `m` since the status was
    /// read. On SQLite there is no session lock, and re-reading the row under
    /// the transaction's write lock is what keeps a second runner from
    /// applying the same migration. Elsewhere the session lock, taken before
    /// the status was read, already does, and the round trip would be spent
    /// on every migration.
    async fn already_done(&self, conn: &mut Conn, m: &Migration, direction: Direction) -> Result<bool, Error> {
        if self.db.dialect().session_lock() {
            return Ok(false);
        }
        let rows = conn.history_rows(Some(m.version.as_str())).await?;
        let present = match direction {
            Direction::Up => rows
                .iter()
                .any(|r| matches!(r.state, Recorded::Applied | Recorded::Baseline)),
            // A `running` or `failed` row is the interrupted run this one
            // resumes; only no row at all means it was reverted.
            Direction::Down => !rows.is_empty(),
        };
        Ok(present == (direction == Direction::Up))
    }

    /// [`Executor::run_atomic`], again each time a statement of it gave up
    /// waiting for a lock (the rollback released every lock it held, and
    /// the application's queries went through), after the blockers' end or
    /// a pause, within the lock policy's budget. Each attempt's lock wait
    /// is its own (`locks.rs`).
    async fn run_atomic_retrying(&self, run: Atomic<'_>) -> Result<Option<StepReport>, Error> {
        // A bound the user's init SQL set wins over the ramp, as it does
        // over the session's bound.
        let mut attempts = if self.db.init_sql_bounds_lock_wait() {
            Attempts::new(&self.locks)
        } else {
            Attempts::ramped(&self.locks, self.db.dialect())
        };
        loop {
            let (mut failure, applied, wait) = match self.run_atomic(&run, attempts.lock_wait()).await {
                Err(Attempt::TimedOut(failure, applied, wait)) => (failure, applied, wait),
                Err(Attempt::Failed(e)) => return Err(e),
                Ok(done) => return Ok(done),
            };
            let attempt = attempts.attempt;
            if let Some(pause) = attempts.next(&wait) {
                self.retry_teller(run.m).tell(
                    attempt,
                    attempts.budget(),
                    &wait.to_string(),
                    &pause,
                    Retried::Migration,
                );
                pause.wait(self.db).await;
                continue;
            }
            let mut wait = wait;
            if attempt > 1 {
                wait.tried = Some((attempt, attempts.elapsed()));
            }
            failure.lock_wait = Some(wait.to_string());
            return Err(Error::Migration { failure, applied });
        }
    }

    /// Who hears of `m`'s lock waits tried again.
    fn retry_teller(&self, m: &Migration) -> RetryTeller {
        RetryTeller {
            target: self.target.to_owned(),
            label: m.label(),
            tell: self.on_lock_retry.clone(),
        }
    }

    /// Runs one migration and its history change in one transaction,
    /// whose lock waits are bounded by `lock_wait` where it is not the
    /// session's bound. Returns `None` when another runner got there
    /// first, or the dropped data it kept or put back.
    async fn run_atomic(&self, run: &Atomic<'_>, lock_wait: Option<Duration>) -> Result<Option<StepReport>, Attempt> {
        let Atomic {
            m,
            direction,
            done,
            waiting,
            mode,
        } = *run;
        let started = Instant::now();
        let mut conn = self.db.begin_migration(lock_wait).await?;
        if self.already_done(&mut conn, m, direction).await? {
            conn.rollback().await?;
            return Ok(None);
        }
        let retired = self.retire_waiting(&mut conn, m, direction, waiting).await?;
        let script = script_for(m, direction);
        let (mut conn, outcome, timed_out) = self.run_step(conn, m, direction, false, None, mode, lock_wait).await?;
        let preimages = match outcome {
            Ok(report) => report.after(retired),
            Err(failure) => {
                // The step's failure is what the user needs; if the rollback
                // fails too (a lost connection), the server rolls back anyway.
                if let Err(e) = conn.rollback().await {
                    tracing::warn!("rolling back {}: {e}", m.label());
                }
                let failure = crate::engine::failure(m, script, failure, true, done.to_vec());
                return Err(match (failure, timed_out) {
                    (Error::Migration { failure, applied }, Some(wait)) => Attempt::TimedOut(failure, applied, wait),
                    (other, _) => Attempt::Failed(other),
                });
            }
        };
        // The history change travels with the COMMIT. (A batched step is
        // never atomic: it commits at its own points.)
        let duration_ms = millis(started.elapsed());
        waymark_db::crash_point("atomic-step-done");
        self.note_redo(&mut conn, m, direction).await?;
        match direction {
            Direction::Up => {
                let backup = self.backup_id.clone();
                conn.record_and_commit(&applied_row(m, duration_ms, backup.as_deref()))
                    .await?
            }
            Direction::Down => {
                // An ops migration's abort may follow a contract that
                // stopped part-way: its checkpoint goes with the abort, or
                // the next `up` would take it for a contract to finish.
                if matches!(m.step, Step::Ops(_)) {
                    conn.clear_checkpoint(m.version.as_str()).await?;
                }
                conn.forget_and_commit(m.version.as_str()).await?
            }
        }
        waymark_db::crash_point("atomic-committed");
        Ok(Some(preimages))
    }

    /// In the transaction that records `m` applied or reverted: a `redo`'s
    /// down opens a redo of `m` (audit `redo`), and an `up` of a migration
    /// with one open closes it (`redone`). A redo's down adds `m` to the
    /// open ones at once, for the up that follows it, in the same
    /// transaction or not; an up's closing is taken out of the set only
    /// once committed (`run_each`), so that an attempt rolled back for a
    /// lock and tried again writes it again.
    async fn note_redo(&self, conn: &mut Conn, m: &Migration, direction: Direction) -> Result<(), Error> {
        let version = m.version.as_str();
        let (action, detail) = match direction {
            Direction::Up if self.open_redos.lock().unwrap().contains(version) => {
                ("redone", "applied again after a redo reverted it")
            }
            Direction::Down if self.redoing.load(std::sync::atomic::Ordering::Relaxed) => {
                self.open_redos.lock().unwrap().insert(version.to_owned());
                ("redo", "reverted by a redo, to be applied again")
            }
            _ => return Ok(()),
        };
        conn.audit(&AuditEntry {
            action,
            version,
            detail,
        })
        .await?;
        Ok(())
    }

    /// Records a migration as applied, or forgets it once reverted.
    async fn finish(
        &self,
        conn: &mut Conn,
        m: &Migration,
        direction: Direction,
        duration_ms: i64,
    ) -> Result<(), Error> {
        self.note_redo(conn, m, direction).await?;
        match direction {
            Direction::Up => {
                let backup = self.backup_id.clone();
                conn.record(&applied_row(m, duration_ms, backup.as_deref())).await?;
            }
            Direction::Down => {
                conn.forget(m.version.as_str()).await?;
            }
        }
        // An ops migration's abort is not batched, but may follow a contract
        // that stopped part-way: its checkpoint goes too.
        if batched(m) || matches!(m.step, Step::Ops(_)) {
            conn.clear_checkpoint(m.version.as_str()).await?;
        }
        Ok(())
    }

    /// Runs one migration outside a single transaction, with a `running`
    /// record committed first so that a failure or a killed runner is
    /// visible. A step that commits in batches runs in a transaction that
    /// its commit points end, the last of which also records the result.
    async fn run_recorded(
        &self,
        m: &Migration,
        direction: Direction,
        done: &[Applied],
        waiting: &HashSet<String>,
        mode: PreimageMode,
    ) -> Result<Option<StepReport>, Error> {
        let backup = self.backup_id.clone();
        let started = Instant::now();
        let mut claim = self.db.begin().await?;
        if self.already_done(&mut claim, m, direction).await? {
            claim.rollback().await?;
            return Ok(None);
        }
        let mut resume_from = if batched(m) {
            self.checkpoint_to_resume(&mut claim, m, direction).await?
        } else {
            None
        };
        let retired = self.retire_waiting(&mut claim, m, direction, waiting).await?;
        // A contract leaves its migration `expanded` until it is done: the
        // expanded state, with its checkpoint, is what `complete` resumes
        // from, and a contract that fails leaves both versions working.
        let contract = m.step.ops_phase() == Some(OpsPhase::Complete);
        if !contract {
            claim
                .record(&NewHistoryRow {
                    version: m.version.as_str(),
                    name: &m.name,
                    checksum: &m.checksum,
                    state: Recorded::Running,
                    duration_ms: 0,
                    error: None,
                    backup_id: backup.as_deref(),
                })
                .await?;
        }
        waymark_db::crash_point("recorded-running-before-commit");
        claim.commit().await?;
        waymark_db::crash_point("recorded-running-committed");

        let script = script_for(m, direction);
        // A batched step's work commits at its commit points. A component
        // step that may run DDL on MySQL/MariaDB still runs in a transaction,
        // so that its row changes roll back on failure even though its DDL
        // cannot; SQL scripts run as the user's client would run them.
        let in_transaction =
            batched(m) || matches!(&m.step, Step::Component(c) if c.transaction == Transaction::Migration);
        // A batched step's lock budget is for one stretch of timeouts: a
        // long backfill that commits between two of them starts afresh,
        // its hours of work counting against no one's budget.
        // Its lock waits ramp as an atomic migration's do, each stretch
        // from the first timeout up: a DDL statement of its first batch
        // queues the application behind it for 50 ms, not for the whole
        // timeout, before it steps aside and waits outside the queue.
        let fresh = || {
            if self.db.init_sql_bounds_lock_wait() {
                Attempts::new(&self.locks)
            } else {
                Attempts::ramped(&self.locks, self.db.dialect())
            }
        };
        let mut attempts: Option<(Attempts, Option<String>)> = None;
        let (failure, lock_wait) = loop {
            let bound = match &attempts {
                _ if !batched(m) => None,
                Some((stretch, _)) => stretch.lock_wait(),
                None => fresh().lock_wait(),
            };
            let conn = if in_transaction {
                self.db.begin_migration(bound).await?
            } else {
                self.db.connection().await?
            };
            let (mut conn, outcome, lock_wait) = self
                .run_step(conn, m, direction, false, resume_from.as_deref(), mode, bound)
                .await?;
            if outcome.is_ok() {
                waymark_db::crash_point("recorded-step-done");
            }
            let failure = match outcome {
                Ok(report) if conn.in_transaction() => {
                    self.finish(&mut conn, m, direction, millis(started.elapsed())).await?;
                    conn.commit().await?;
                    waymark_db::crash_point("recorded-finished");
                    return Ok(Some(report.after(retired)));
                }
                Ok(report) => {
                    drop(conn);
                    let mut finish = self.db.begin().await?;
                    self.finish(&mut finish, m, direction, millis(started.elapsed()))
                        .await?;
                    finish.commit().await?;
                    waymark_db::crash_point("recorded-finished");
                    return Ok(Some(report.after(retired)));
                }
                Err(failure) => failure,
            };
            if let Err(e) = conn.rollback().await {
                tracing::warn!("rolling back {}: {e}", m.label());
            }
            // A batched step whose statement gave up waiting for a lock has
            // just lost only its batch in flight, with every lock it held;
            // what it committed is checkpointed, so it goes on from there.
            // (Any other step here ran either outside a transaction, where
            // its session tried the statement again itself, or in one on
            // MySQL/MariaDB whose DDL committed as it ran: not to be run
            // again whole.)
            let mut wait = match lock_wait {
                Some(wait) if batched(m) => wait,
                other => break (failure, other),
            };
            let mut read = self.db.begin().await?;
            let reached = self.checkpoint_to_resume(&mut read, m, direction).await?;
            read.rollback().await?;
            // The same stretch while no batch commits between timeouts.
            let mut stretch = match attempts.take() {
                Some((stretch, from)) if from == reached => stretch,
                _ => fresh(),
            };
            let attempt = stretch.attempt;
            let Some(pause) = stretch.next(&wait) else {
                if attempt > 1 {
                    wait.tried = Some((attempt, stretch.elapsed()));
                }
                break (failure, Some(wait));
            };
            self.retry_teller(m).tell(
                attempt,
                stretch.budget(),
                &wait.to_string(),
                &pause,
                Retried::FromCheckpoint,
            );
            pause.wait(self.db).await;
            attempts = Some((stretch, reached.clone()));
            resume_from = reached;
        };
        // An expand that failed before its first commit point left nothing
        // (its checks run first, its DDL and triggers commit together):
        // its row goes, and the command can simply be run again once the
        // file is fixed.
        let untouched = if matches!(m.step, Step::Ops(_)) && !contract {
            let mut read = self.db.begin().await?;
            let reached = read.checkpoint(m.version.as_str()).await?;
            if reached.is_none() {
                read.forget(m.version.as_str()).await?;
                read.commit().await?;
            } else {
                read.rollback().await?;
            }
            reached.is_none()
        } else {
            false
        };
        let mut error = with_lock_wait(
            crate::engine::failure(m, script, failure, untouched, done.to_vec()),
            lock_wait,
        );
        if let Error::Migration { failure, .. } = &mut error {
            failure.down = direction == Direction::Down;
        }
        if contract || untouched {
            return Err(error);
        }
        let message = match &error {
            Error::Migration { failure, .. } => failure.to_string(),
            other => other.to_string(),
        };
        waymark_db::crash_point("recorded-failed-before-record");
        let mut finish = self.db.begin().await?;
        finish
            .record(&NewHistoryRow {
                version: m.version.as_str(),
                name: &m.name,
                checksum: &m.checksum,
                state: Recorded::Failed,
                duration_ms: millis(started.elapsed()),
                error: Some(&message),
                backup_id: backup.as_deref(),
            })
            .await?;
        finish.commit().await?;
        waymark_db::crash_point("recorded-failed-committed");
        Err(error)
    }

    /// The checkpoint an interrupted run of a batched step left, for a run
    /// in the same direction; a checkpoint of the other direction refuses.
    async fn checkpoint_to_resume(
        &self,
        conn: &mut Conn,
        m: &Migration,
        direction: Direction,
    ) -> Result<Option<String>, Error> {
        let Some((saved_direction, checkpoint)) = conn.checkpoint(m.version.as_str()).await? else {
            return Ok(None);
        };
        if saved_direction != run_name(m, direction) {
            return Err(Error::Refused {
                message: format!(
                    "migration {} stopped part-way through its {saved_direction} step; it cannot {} from there",
                    m.label(),
                    run_name(m, direction)
                ),
                hint: Some(format!(
                    "run `waymark {saved_direction}` to finish it, or undo its effects and run `waymark repair --rolled-back --version {}`",
                    m.version
                )),
            });
        }
        tracing::info!(migration = %m.label(), checkpoint, "resuming from the last checkpoint");
        Ok(Some(checkpoint.to_owned()))
    }

    /// Applies a batch in one transaction: all of it or none of it. A dry
    /// run rolls it back at the end.
    async fn apply_batch(
        &self,
        plan: &Plan,
        on_event: &mut (dyn FnMut(Event<'_>) + Send),
    ) -> Result<Vec<Applied>, Error> {
        let (target, dry_run) = (self.target, plan.dry_run);
        let backup = self.backup_id.clone();
        let waiting = self.read_waiting().await?;
        let mut conn = self.db.begin().await?;
        let mut done = Vec::new();
        let of = plan.migrations.len();
        for (i, m) in plan.migrations.iter().map(|p| &p.migration).enumerate() {
            let label = m.label();
            on_event(Event::Started {
                target,
                label: &label,
                down: false,
                position: i + 1,
                of,
            });
            let started = Instant::now();
            let retired = self.retire_waiting(&mut conn, m, Direction::Up, &waiting).await?;
            let (back, outcome, lock_wait) = self
                .run_step(conn, m, Direction::Up, dry_run, None, plan.preimages, None)
                .await?;
            conn = back;
            let report = match outcome {
                Ok(report) => report.after(retired),
                Err(failure) => {
                    if let Err(e) = conn.rollback().await {
                        tracing::warn!("rolling back the batch: {e}");
                    }
                    // Nothing of the batch stays: report none of it as applied.
                    return Err(with_lock_wait(
                        crate::engine::failure(m, &m.up, failure, true, Vec::new()),
                        lock_wait,
                    ));
                }
            };
            conn.record(&NewHistoryRow {
                version: m.version.as_str(),
                name: &m.name,
                checksum: &m.checksum,
                state: Recorded::Applied,
                duration_ms: millis(started.elapsed()),
                error: None,
                backup_id: backup.as_deref(),
            })
            .await?;
            done.push(finished(target, m, false, started, true, report, on_event));
        }
        if dry_run {
            conn.rollback().await?;
        } else {
            waymark_db::crash_point("single-transaction-before-commit");
            conn.commit().await?;
            waymark_db::crash_point("single-transaction-committed");
        }
        Ok(done)
    }

    /// Runs a migration's step on `conn`. For `up`, a copy of each table
    /// and column the step drops is kept first; for `down`, each copy the
    /// migration kept is put back as soon as its place exists again, and
    /// by the end of the step at the latest. `lock_wait` is the bound on
    /// its lock waits where it is not the session's (an atomic attempt's).
    /// Returns the connection, the outcome, and the lock wait that failed
    /// the step, if one did.
    #[allow(clippy::too_many_arguments)]
    async fn run_step(
        &self,
        conn: Conn,
        m: &Migration,
        direction: Direction,
        dry_run: bool,
        resume_from: Option<&str>,
        mode: PreimageMode,
        lock_wait: Option<Duration>,
    ) -> Result<(Conn, Result<StepReport, StepFailure>, Option<LockWait>), Error> {
        let script = script_for(m, direction);
        let (step, limits) = self.steps.component(m)?;
        tracing::debug!(migration = %m.label(), step = step.name(), file = %script.path.display(), "running step");
        let mut conn = conn;
        let preimages = match (direction, mode) {
            (Direction::Up, PreimageMode::Off) => None,
            (Direction::Up, mode) => Some(Preimages::Keep {
                version: m.version.to_string(),
                strict: mode == PreimageMode::Strict,
            }),
            (Direction::Down, _) => {
                let pending = to_put_back(&mut conn, m).await?;
                (!pending.is_empty()).then(|| Preimages::PutBack {
                    version: m.version.to_string(),
                    pending,
                })
            }
        };
        let access = match &m.step {
            Step::Sql | Step::Ops(_) => None,
            Step::Component(c) => Some(c.access.clone()),
        };
        let mut session = StepSession {
            conn: Some(conn),
            access,
            dialect: self.db.dialect(),
            batches: batched(m).then(|| Batches {
                db: self.db.clone(),
                version: m.version.to_string(),
                run: run_name(m, direction),
                lock_wait,
            }),
            dry_run,
            progress: self.progress.clone(),
            statements: self.statements.clone(),
            whole_scripts: self.statements.is_none() || !matches!(m.step, Step::Sql),
            label: m.label(),
            statement_timeout: None,
            restore: None,
            locks: self.locks.clone(),
            watch: Watch::of(self.db, lock_wait.or(self.locks.timeout)),
            lock_wait: None,
            retry_statements: None,
            preimages,
            notes: Vec::new(),
            warnings: Vec::new(),
        };
        if let Step::Component(_) = &m.step {
            session.statement_timeout = limits.statement_timeout;
        }
        // What the step says it drops, beyond what its statements show.
        if let (Step::Component(c), Direction::Up) = (&m.step, direction)
            && let Err(e) = session.keep_all(&c.drops).await
        {
            let failure = match e {
                CallError::Denied(message) => StepFailure::Denied(message),
                CallError::Database(e) => StepFailure::Host(e.message),
            };
            let conn = session.conn.take().expect("no commit point has run yet");
            return Ok((conn, Err(failure), None));
        }
        let guarded = session.guard_read_only().await?;
        session.bound_statements().await?;
        // A statement that timed out waiting for a lock is tried again on
        // its own only where it did nothing and holds nothing: outside a
        // transaction (a migration's own transaction is tried again whole).
        if !session.in_transaction() {
            session.retry_statements = Some(self.retry_teller(m));
        }
        let call = Call {
            config: &config_of(m, &self.db.history_table().name),
            dry_run,
            resume_from,
            ..Call::new(direction, host_dialect(self.db.dialect()), &script.text)
        };
        let (env, outcome) = self
            .steps
            .host()
            .run_limited(&step, &call, Box::new(session), &limits)
            .await;
        let env: Box<dyn std::any::Any + Send> = env;
        let mut session = env
            .downcast::<StepSession>()
            .expect("the host returns the environment it was given");
        if guarded {
            session.unguard_read_only().await?;
        }
        session.unbound_statements().await?;
        let outcome = match outcome {
            Ok(()) => session.put_back_the_rest(&m.label()).await,
            Err(failure) => Err(failure),
        };
        let report = StepReport {
            notes: std::mem::take(&mut session.notes),
            warnings: std::mem::take(&mut session.warnings),
        };
        // A lock wait is what failed the step only if the step failed.
        let lock_wait = session.lock_wait.take().filter(|_| outcome.is_err());
        let conn = session.conn.take().ok_or_else(|| Error::Refused {
            message: format!("migration {}: its connection was lost at a commit point", m.label()),
            hint: None,
        });
        Ok((conn?, outcome.map(|()| report), lock_wait))
    }
}

/// Reports a migration done, and what is said of it afterwards.
fn finished(
    target: &str,
    m: &Migration,
    down: bool,
    started: Instant,
    transactional: bool,
    report: StepReport,
    on_event: &mut (dyn FnMut(Event<'_>) + Send),
) -> Applied {
    let duration = started.elapsed();
    let done = match (m.step.ops_phase(), down) {
        (Some(phase), _) => phase.done(),
        (None, true) => "reverted",
        (None, false) => "applied",
    };
    on_event(Event::Finished {
        target,
        label: &m.label(),
        done,
        duration,
        preimages: &report.notes,
        warnings: &report.warnings,
    });
    Applied {
        version: m.version.clone(),
        name: m.name.clone(),
        done,
        duration,
        transactional,
        preimages: report.notes,
        warnings: report.warnings,
    }
}

/// The history row of a migration just applied.
fn applied_row<'a>(m: &'a Migration, duration_ms: i64, backup: Option<&'a str>) -> NewHistoryRow<'a> {
    // An expand leaves its migration half-way, for `complete` to finish.
    let state = match m.step.ops_phase() {
        Some(OpsPhase::Expand) => Recorded::Expanded,
        _ => Recorded::Applied,
    };
    NewHistoryRow {
        version: m.version.as_str(),
        name: &m.name,
        checksum: &m.checksum,
        state,
        duration_ms,
        error: None,
        backup_id: backup,
    }
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// `error`, saying what lock wait failed it.
fn with_lock_wait(error: Error, lock_wait: Option<LockWait>) -> Error {
    match error {
        Error::Migration { mut failure, applied } if lock_wait.is_some() => {
            failure.lock_wait = lock_wait.map(|w| w.to_string());
            Error::Migration { failure, applied }
        }
        other => other,
    }
}

/// Who hears of a statement tried again, for a step's session.
#[derive(Clone)]
pub(super) struct RetryTeller {
    pub(super) target: String,
    pub(super) label: String,
    pub(super) tell: Option<OnLockRetry>,
}

impl RetryTeller {
    /// Tells of `attempt` (of `budget`) ended by `wait`, tried again
    /// after `pause`, as `retried` says.
    pub(super) fn tell(&self, attempt: u32, budget: u32, wait: &str, pause: &Pause, retried: Retried) {
        if let Some(tell) = &self.tell {
            tell(&LockRetry {
                target: self.target.clone(),
                label: self.label.clone(),
                attempt,
                budget,
                wait: wait.to_owned(),
                pause: pause.at_most,
                until_ended: pause.pids(),
                retried,
            });
        }
    }
}

fn with_applied(error: Error, done: Vec<Applied>) -> Error {
    match error {
        Error::Migration { failure, .. } => Error::Migration { failure, applied: done },
        other => other,
    }
}
