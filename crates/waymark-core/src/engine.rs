//! The runner: status, plan, up, down, redo, verify, baseline and repair.
//!
//! Every operation that changes anything takes the migration lock first and
//! reads the history only after, so two runners never act on the same
//! stale picture. A migration runs in one of two ways:
//! - atomic (PostgreSQL and SQLite, unless the script says
//!   `-- no-transaction`): the step and its history row commit together in
//!   one transaction, or neither does;
//! - non-atomic (MySQL/MariaDB, whose DDL commits as it runs, and
//!   `-- no-transaction` scripts): a `running` row is committed first and
//!   replaced by `applied` or `failed` afterwards, so a failure or a killed
//!   runner is visible and blocks further runs until `repair`.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use waymark_db::{
    AuditEntry, Conn, ConnectOptions, Database, DbError, Dialect, Lock, NewHistoryRow, State as Recorded,
};
use waymark_host::{
    Action, DatabaseError, Direction, Limits, StepComponent, StepDatabase, StepFailure, StepFuture, StepHost,
};

use crate::error::{Error, MigrationFailure};
use crate::source::{Migration, MigrationSet, Script, Step};
use crate::status::{Entry, State, entries};
use crate::version::Version;

/// How the engine is set up.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// Where and how to connect.
    pub connect: ConnectOptions,
    /// Limits for every step.
    pub limits: Limits,
    /// Where compiled components are cached; `None` uses the default.
    pub cache_dir: Option<PathBuf>,
}

/// A migration applied or reverted.
#[derive(Debug, Clone)]
pub struct Applied {
    /// Version.
    pub version: Version,
    /// Name.
    pub name: String,
    /// Wall time it took, including the database's work.
    pub duration: Duration,
    /// Whether it ran in a transaction.
    pub transactional: bool,
}

/// Progress, for the caller to show.
#[derive(Debug, Clone)]
pub enum Event<'a> {
    /// A migration is starting.
    Started {
        /// Which.
        label: &'a str,
        /// Up or down.
        down: bool,
    },
    /// A migration finished.
    Finished {
        /// Which.
        label: &'a str,
        /// Up or down.
        down: bool,
        /// How long it took.
        duration: Duration,
    },
    /// A migration was skipped because another runner applied (or
    /// reverted) it first.
    Skipped {
        /// Which.
        label: &'a str,
        /// Up or down.
        down: bool,
    },
}

/// Options of `up`.
#[derive(Debug, Clone, Default)]
pub struct UpOptions {
    /// Apply only migrations up to and including this version.
    pub to: Option<Version>,
    /// Apply the whole batch in one transaction, all or nothing.
    pub single_transaction: bool,
    /// Apply pending migrations older than the newest applied one.
    pub allow_out_of_order: bool,
    /// Proceed although applied migrations have no file.
    pub ignore_missing: bool,
}

/// What `down` reverts.
#[derive(Debug, Clone)]
pub enum DownTarget {
    /// The newest N applied migrations.
    Steps(usize),
    /// Every applied migration newer than this version (`0`: all).
    To(Version),
}

/// One migration of a plan.
#[derive(Debug, Clone)]
pub struct PlannedMigration {
    /// The migration.
    pub migration: Migration,
    /// The script that will run (`up.sql`, `down.sql` or `step.toml`).
    pub file: PathBuf,
    /// Whether it will run in a transaction.
    pub transactional: bool,
    /// The step component that will run it.
    pub step: String,
    /// What the step will do.
    pub actions: Vec<Action>,
}

/// What `up` (or `down`) would do.
#[derive(Debug, Clone)]
pub struct Plan {
    /// In order.
    pub migrations: Vec<PlannedMigration>,
    /// Whether the batch runs in one transaction.
    pub single_transaction: bool,
}

/// The outcome of `verify`.
#[derive(Debug, Clone)]
pub struct VerifyReport {
    /// How many applied migrations were compared.
    pub checked: usize,
    /// The ones that differ (modified or missing).
    pub differences: Vec<Entry>,
}

/// What `repair` may do; each action needs its own flag.
#[derive(Debug, Clone, Default)]
pub struct RepairOptions {
    /// Remove the rows of failed (or interrupted) migrations, once their
    /// partial effects have been undone by hand.
    pub rolled_back: bool,
    /// Record the current checksum of modified migrations.
    pub accept_checksums: bool,
    /// Remove the rows of applied migrations whose files are gone.
    pub forget_missing: bool,
    /// Only this version.
    pub version: Option<Version>,
}

/// One change `repair` made.
#[derive(Debug, Clone)]
pub struct RepairAction {
    /// `rolled-back`, `accept-checksum` or `forget-missing`.
    pub action: &'static str,
    /// Which migration.
    pub label: String,
    /// Before and after.
    pub detail: String,
}

/// Runs migrations against one database.
#[derive(Debug)]
pub struct Engine {
    db: Database,
    host: StepHost,
    /// Component steps loaded by `prepare`, by pinned digest.
    components: std::sync::Mutex<std::collections::HashMap<String, StepComponent>>,
}

impl Engine {
    /// Connects and prepares the step host.
    pub async fn connect(options: &EngineOptions) -> Result<Self, Error> {
        let db = Database::connect(&options.connect).await?;
        let host = match &options.cache_dir {
            Some(dir) => StepHost::with_cache_dir(options.limits.clone(), Some(dir.clone()))?,
            None => StepHost::new(options.limits.clone())?,
        };
        Ok(Engine {
            db,
            host,
            components: Default::default(),
        })
    }

    /// The database's dialect.
    pub fn dialect(&self) -> Dialect {
        self.db.dialect()
    }

    /// The database URL, without its password.
    pub fn url(&self) -> &str {
        self.db.url()
    }

    /// Closes the connections.
    pub async fn close(self) {
        self.db.close().await;
    }

    /// Every migration with its state. Read-only: does not create the
    /// history table.
    pub async fn status(&self, set: &MigrationSet) -> Result<Vec<Entry>, Error> {
        Ok(entries(set, self.db.history().await?))
    }

    /// What `up` would run, checked exactly as `up` checks it.
    pub async fn plan(&self, set: &MigrationSet, options: &UpOptions) -> Result<Plan, Error> {
        let status = self.status(set).await?;
        let pending = self.pending(&status, options)?;
        self.plan_each(pending, Direction::Up, options.single_transaction).await
    }

    /// What `down` would revert, newest first, checked exactly as `down`
    /// checks it.
    pub async fn plan_down(&self, set: &MigrationSet, target: &DownTarget) -> Result<Plan, Error> {
        let status = self.status(set).await?;
        let targets = self.down_targets(&status, target)?;
        self.plan_each(targets, Direction::Down, false).await
    }

    async fn plan_each(&self, migrations: Vec<Migration>, direction: Direction, single: bool) -> Result<Plan, Error> {
        self.prepare(&migrations)?;
        let mut planned = Vec::new();
        for m in migrations {
            let (step, _) = self.component(&m)?;
            let script = script_for(&m, direction);
            let actions = self
                .host
                .plan(&step, direction, self.host_dialect(), &script.text)
                .await
                .map_err(|failure| self.failure(&m, script, failure, true, Vec::new()))?;
            planned.push(PlannedMigration {
                transactional: single || self.atomic(script),
                file: script.path.clone(),
                step: step.name().to_owned(),
                migration: m,
                actions,
            });
        }
        Ok(Plan {
            migrations: planned,
            single_transaction: single,
        })
    }

    /// Compares every applied migration's checksum with its file.
    pub async fn verify(&self, set: &MigrationSet) -> Result<VerifyReport, Error> {
        let status = self.status(set).await?;
        let checked = status.iter().filter(|e| e.row.is_some()).count();
        let differences = status
            .into_iter()
            .filter(|e| matches!(e.state, State::Modified | State::Missing))
            .collect();
        Ok(VerifyReport { checked, differences })
    }

    /// Applies pending migrations in order.
    pub async fn up(
        &self,
        set: &MigrationSet,
        options: &UpOptions,
        on_event: &mut (dyn FnMut(Event<'_>) + Send),
    ) -> Result<Vec<Applied>, Error> {
        let lock = self.lock_for_change().await?;
        let result = async {
            let status = self.status(set).await?;
            let pending = self.pending(&status, options)?;
            self.prepare(&pending)?;
            if options.single_transaction {
                self.apply_batch(pending, on_event).await
            } else {
                self.run_each(pending, Direction::Up, on_event).await
            }
        }
        .await;
        release(lock, result).await
    }

    /// Reverts applied migrations, newest first.
    pub async fn down(
        &self,
        set: &MigrationSet,
        target: &DownTarget,
        on_event: &mut (dyn FnMut(Event<'_>) + Send),
    ) -> Result<Vec<Applied>, Error> {
        let lock = self.lock_for_change().await?;
        let result = async {
            let status = self.status(set).await?;
            let targets = self.down_targets(&status, target)?;
            self.prepare(&targets)?;
            self.run_each(targets, Direction::Down, on_event).await
        }
        .await;
        release(lock, result).await
    }

    /// Reverts the newest applied migration and applies it again: proof that
    /// its down restores what its up changed.
    pub async fn redo(
        &self,
        set: &MigrationSet,
        on_event: &mut (dyn FnMut(Event<'_>) + Send),
    ) -> Result<Vec<Applied>, Error> {
        let lock = self.lock_for_change().await?;
        let result = async {
            let status = self.status(set).await?;
            let targets = self.down_targets(&status, &DownTarget::Steps(1))?;
            self.prepare(&targets)?;
            let again: Vec<Migration> = targets.clone();
            let mut done = self.run_each(targets, Direction::Down, on_event).await?;
            match self.run_each(again, Direction::Up, on_event).await {
                Ok(more) => {
                    done.extend(more);
                    Ok(done)
                }
                Err(Error::Migration { failure, mut applied }) => {
                    done.append(&mut applied);
                    Err(Error::Migration { failure, applied: done })
                }
                Err(e) => Err(e),
            }
        }
        .await;
        release(lock, result).await
    }

    /// Records every migration up to `version` as already applied, for a
    /// database whose schema exists already. Only on an empty history.
    pub async fn baseline(&self, set: &MigrationSet, version: &Version) -> Result<Vec<Migration>, Error> {
        let lock = self.lock_for_change().await?;
        let result = async {
            let history = self.db.history().await?;
            if !history.is_empty() {
                return Err(Error::Refused {
                    message: format!(
                        "cannot baseline: the history table already records {} migration(s)",
                        history.len()
                    ),
                    hint: Some("baseline adopts a database that waymark has never migrated".to_owned()),
                });
            }
            let adopted: Vec<Migration> = set
                .migrations
                .iter()
                .filter(|m| m.version <= *version)
                .cloned()
                .collect();
            if adopted.is_empty() {
                return Err(Error::Refused {
                    message: format!(
                        "cannot baseline at {version}: no migration in {} has a version up to it",
                        set.dir.display()
                    ),
                    hint: None,
                });
            }
            let mut conn = self.db.begin().await?;
            for m in &adopted {
                conn.record(&NewHistoryRow {
                    version: m.version.as_str(),
                    name: &m.name,
                    checksum: &m.checksum,
                    state: Recorded::Baseline,
                    duration_ms: 0,
                    error: None,
                })
                .await?;
                conn.audit(&AuditEntry {
                    action: "baseline",
                    version: m.version.as_str(),
                    detail: &format!("recorded {} as present without running it", m.label()),
                })
                .await?;
            }
            conn.commit().await?;
            Ok(adopted)
        }
        .await;
        release(lock, result).await
    }

    /// The explicit, audited way out of a failed or drifted state.
    pub async fn repair(&self, set: &MigrationSet, options: &RepairOptions) -> Result<Vec<RepairAction>, Error> {
        if !(options.rolled_back || options.accept_checksums || options.forget_missing) {
            return Err(Error::Usage(
                "repair needs to be told what to do: --rolled-back, --accept-checksums or --forget-missing".to_owned(),
            ));
        }
        let lock = self.lock_for_change().await?;
        let result = async {
            let status = self.status(set).await?;
            let mut conn = self.db.begin().await?;
            let mut actions = Vec::new();
            for e in &status {
                if options.version.as_ref().is_some_and(|v| *v != e.version) {
                    continue;
                }
                let Some(row) = &e.row else { continue };
                let (action, detail) = match e.state {
                    State::Failed if options.rolled_back => {
                        conn.forget(&row.version).await?;
                        (
                            "rolled-back",
                            format!(
                                "removed the {} record; `up` will run it again (it failed with: {})",
                                row.state.as_str(),
                                row.error.as_deref().unwrap_or("its runner stopped before finishing")
                            ),
                        )
                    }
                    State::Modified if options.accept_checksums => {
                        let new = &e.migration.as_ref().expect("modified implies a file").checksum;
                        conn.set_checksum(&row.version, new).await?;
                        ("accept-checksum", format!("checksum {} -> {new}", row.checksum))
                    }
                    State::Missing if options.forget_missing => {
                        conn.forget(&row.version).await?;
                        (
                            "forget-missing",
                            "removed the record of a migration whose file is gone".to_owned(),
                        )
                    }
                    _ => continue,
                };
                conn.audit(&AuditEntry {
                    action,
                    version: &row.version,
                    detail: &detail,
                })
                .await?;
                tracing::info!("repair {action} {}: {detail}", e.label());
                actions.push(RepairAction {
                    action,
                    label: e.label(),
                    detail,
                });
            }
            conn.commit().await?;
            Ok(actions)
        }
        .await;
        release(lock, result).await
    }

    async fn lock_for_change(&self) -> Result<Lock, Error> {
        let lock = self.db.lock().await?;
        // Created under the lock: two runners creating it at once can
        // collide in PostgreSQL's catalog.
        if let Err(e) = self.db.ensure_history().await {
            let _ = lock.release().await;
            return Err(e.into());
        }
        Ok(lock)
    }

    /// Loads every component step among `migrations`, before any of them
    /// runs: a component whose digest differs from its pin, or that asks
    /// for more than the operator allows, refuses the whole operation.
    fn prepare(&self, migrations: &[Migration]) -> Result<(), Error> {
        for m in migrations {
            let Step::Component(c) = &m.step else { continue };
            self.limits_for(m)?;
            if self.components.lock().unwrap().contains_key(&c.sha256) {
                continue;
            }
            let bytes = std::fs::read(&c.path).map_err(|e| Error::Refused {
                message: format!(
                    "migration {}: cannot read its component {}: {e}",
                    m.label(),
                    c.path.display()
                ),
                hint: None,
            })?;
            let actual = waymark_host::digest(&bytes);
            if actual != c.sha256 {
                return Err(Error::Refused {
                    message: format!(
                        "migration {}: component {} has SHA-256 {actual}, but {} pins {}",
                        m.label(),
                        c.path.display(),
                        m.up.path.display(),
                        c.sha256
                    ),
                    hint: Some("nothing ran; pin the component you mean to run".to_owned()),
                });
            }
            let component = self.host.load(&step_name(m), &bytes)?;
            self.components.lock().unwrap().insert(c.sha256.clone(), component);
        }
        Ok(())
    }

    /// The limits a migration's step runs under: what it asks for, capped
    /// by the operator's settings, which are also the defaults.
    fn limits_for(&self, m: &Migration) -> Result<Limits, Error> {
        let ceiling = self.host.limits().clone();
        let Step::Component(c) = &m.step else {
            return Ok(ceiling);
        };
        let mut limits = ceiling.clone();
        if let Some(mib) = c.memory_mib {
            let ceiling_mib = ceiling.memory_bytes / (1024 * 1024);
            if mib > ceiling_mib {
                return Err(Error::Refused {
                    message: format!(
                        "migration {}: step asks for {mib} MiB of memory; the ceiling is {ceiling_mib} MiB",
                        m.label()
                    ),
                    hint: Some("raise --step-memory-mib (or [step] memory_mib) if the step needs it".to_owned()),
                });
            }
            limits.memory_bytes = mib * 1024 * 1024;
        }
        if let Some(timeout) = c.timeout {
            if timeout > ceiling.timeout {
                return Err(Error::Refused {
                    message: format!(
                        "migration {}: step asks for {} of CPU time; the ceiling is {}",
                        m.label(),
                        humantime::format_duration(timeout),
                        humantime::format_duration(ceiling.timeout)
                    ),
                    hint: Some("raise --step-timeout (or [step] timeout) if the step needs it".to_owned()),
                });
            }
            limits.timeout = timeout;
        }
        Ok(limits)
    }

    /// The loaded component of a migration, and its limits.
    fn component(&self, m: &Migration) -> Result<(StepComponent, Limits), Error> {
        let step = match &m.step {
            Step::Sql => self.host.sql_step()?,
            Step::Component(c) => self
                .components
                .lock()
                .unwrap()
                .get(&c.sha256)
                .cloned()
                .expect("prepare loads every component step before it runs"),
        };
        Ok((step, self.limits_for(m)?))
    }

    fn host_dialect(&self) -> waymark_host::Dialect {
        match self.db.dialect() {
            Dialect::Postgres => waymark_host::Dialect::Postgres,
            Dialect::Mysql => waymark_host::Dialect::Mysql,
            Dialect::Sqlite => waymark_host::Dialect::Sqlite,
        }
    }

    fn atomic(&self, script: &Script) -> bool {
        self.db.dialect().transactional_ddl() && !script.no_transaction
    }

    /// What `up` would apply, after the checks that make it refuse.
    fn pending(&self, status: &[Entry], options: &UpOptions) -> Result<Vec<Migration>, Error> {
        let failed: Vec<&Entry> = status.iter().filter(|e| e.state == State::Failed).collect();
        if let Some(first) = failed.first() {
            let row = first.row.as_ref().expect("failed implies a history row");
            let what = match row.state {
                Recorded::Running => "was interrupted while running outside a transaction".to_owned(),
                _ => format!("failed: {}", row.error.as_deref().unwrap_or("no error recorded")),
            };
            return Err(Error::Refused {
                message: format!(
                    "migration {} {what}; nothing will run until it is repaired",
                    first.label()
                ),
                hint: Some(format!(
                    "its statements before the failure may have taken effect; undo them by hand, then run \
                     `waymark repair --rolled-back --version {}`",
                    first.version
                )),
            });
        }
        drift_check(status, options.ignore_missing)?;
        let out_of_order: Vec<String> = status
            .iter()
            .filter(|e| e.state == State::OutOfOrder && within(&e.version, options.to.as_ref()))
            .map(Entry::label)
            .collect();
        if !out_of_order.is_empty() && !options.allow_out_of_order {
            return Err(Error::Refused {
                message: format!(
                    "pending migration(s) older than the newest applied one: {}",
                    out_of_order.join(", ")
                ),
                hint: Some("pass --allow-out-of-order to apply them anyway".to_owned()),
            });
        }
        if let Some(to) = &options.to
            && !to.is_zero()
            && !status.iter().any(|e| e.version == *to)
        {
            return Err(Error::Usage(format!("--to {to}: no migration has that version")));
        }
        let pending: Vec<Migration> = status
            .iter()
            .filter(|e| {
                matches!(e.state, State::Pending | State::OutOfOrder) && within(&e.version, options.to.as_ref())
            })
            .filter_map(|e| e.migration.clone())
            .collect();
        if options.single_transaction {
            if !self.db.dialect().transactional_ddl() {
                return Err(Error::Usage(
                    "--single-transaction is not possible on MySQL/MariaDB: DDL commits as it runs".to_owned(),
                ));
            }
            if let Some(m) = pending.iter().find(|m| m.up.no_transaction) {
                return Err(Error::Usage(format!(
                    "--single-transaction cannot include {}: it is marked no-transaction",
                    m.label()
                )));
            }
        }
        Ok(pending)
    }

    fn down_targets(&self, status: &[Entry], target: &DownTarget) -> Result<Vec<Migration>, Error> {
        if let Some(failed) = status.iter().find(|e| e.state == State::Failed) {
            return Err(Error::Refused {
                message: format!(
                    "migration {} is in a failed state; repair it before reverting anything",
                    failed.label()
                ),
                hint: Some(format!("waymark repair --rolled-back --version {}", failed.version)),
            });
        }
        let applied: Vec<&Entry> = status.iter().rev().filter(|e| e.state.is_applied()).collect();
        let chosen: Vec<&Entry> = match target {
            DownTarget::Steps(n) => applied.into_iter().take(*n).collect(),
            DownTarget::To(v) => {
                if !v.is_zero() && !status.iter().any(|e| e.version == *v) {
                    return Err(Error::Usage(format!("--to {v}: no migration has that version")));
                }
                applied.into_iter().filter(|e| e.version > *v).collect()
            }
        };
        let mut out = Vec::new();
        for e in chosen {
            match (e.state, &e.migration) {
                (State::Missing, _) | (_, None) => {
                    return Err(Error::Drift {
                        message: format!("cannot revert {}: its migration file is missing", e.label()),
                        hint: Some("restore the file, or run `waymark repair --forget-missing`".to_owned()),
                    });
                }
                (State::Modified, _) => {
                    return Err(Error::Drift {
                        message: format!(
                            "cannot revert {}: it changed since it was applied, so its down script may not match",
                            e.label()
                        ),
                        hint: Some(format!(
                            "check the change, then run `waymark repair --accept-checksums --version {}`",
                            e.version
                        )),
                    });
                }
                (_, Some(m)) if m.down.is_none() => {
                    return Err(Error::Refused {
                        message: format!(
                            "cannot revert {}: it has no down script, so it is irreversible",
                            m.label()
                        ),
                        hint: Some("nothing was reverted".to_owned()),
                    });
                }
                (_, Some(m)) => out.push(m.clone()),
            }
        }
        Ok(out)
    }

    /// Applies (`Up`) or reverts (`Down`) each migration in turn, stopping
    /// at the first failure.
    async fn run_each(
        &self,
        migrations: Vec<Migration>,
        direction: Direction,
        on_event: &mut (dyn FnMut(Event<'_>) + Send),
    ) -> Result<Vec<Applied>, Error> {
        let down = direction == Direction::Down;
        let mut done = Vec::new();
        for m in migrations {
            let label = m.label();
            on_event(Event::Started { label: &label, down });
            let started = Instant::now();
            let atomic = self.atomic(script_for(&m, direction));
            let ran = if atomic {
                self.run_atomic(&m, direction, &done).await
            } else {
                self.run_recorded(&m, direction, &done).await
            };
            match ran {
                Ok(true) => {}
                Ok(false) => {
                    on_event(Event::Skipped { label: &label, down });
                    continue;
                }
                Err(e) => return Err(with_applied(e, done)),
            }
            let duration = started.elapsed();
            on_event(Event::Finished {
                label: &label,
                down,
                duration,
            });
            done.push(Applied {
                version: m.version.clone(),
                name: m.name.clone(),
                duration,
                transactional: atomic,
            });
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
        let present = !conn.history_rows(Some(m.version.as_str())).await?.is_empty();
        Ok(present == (direction == Direction::Up))
    }

    /// Runs one migration and its history change in one transaction.
    /// Returns `false` when another runner got there first.
    async fn run_atomic(&self, m: &Migration, direction: Direction, done: &[Applied]) -> Result<bool, Error> {
        let started = Instant::now();
        let mut conn = self.db.begin().await?;
        if self.already_done(&mut conn, m, direction).await? {
            conn.rollback().await?;
            return Ok(false);
        }
        let script = script_for(m, direction);
        let (conn, outcome) = self.run_step(conn, m, script, direction).await?;
        let mut conn = conn;
        if let Err(failure) = outcome {
            // The step's failure is what the user needs; if the rollback
            // fails too (a lost connection), the server rolls back anyway.
            if let Err(e) = conn.rollback().await {
                tracing::warn!("rolling back {}: {e}", m.label());
            }
            return Err(self.failure(m, script, failure, true, done.to_vec()));
        }
        match direction {
            Direction::Up => {
                conn.record(&NewHistoryRow {
                    version: m.version.as_str(),
                    name: &m.name,
                    checksum: &m.checksum,
                    state: Recorded::Applied,
                    duration_ms: millis(started.elapsed()),
                    error: None,
                })
                .await?;
            }
            Direction::Down => {
                conn.forget(m.version.as_str()).await?;
            }
        }
        conn.commit().await?;
        Ok(true)
    }

    /// Runs one migration outside a transaction, with a `running` record
    /// committed first so that a failure or a killed runner is visible.
    async fn run_recorded(&self, m: &Migration, direction: Direction, done: &[Applied]) -> Result<bool, Error> {
        let started = Instant::now();
        let mut claim = self.db.begin().await?;
        if self.already_done(&mut claim, m, direction).await? {
            claim.rollback().await?;
            return Ok(false);
        }
        claim
            .record(&NewHistoryRow {
                version: m.version.as_str(),
                name: &m.name,
                checksum: &m.checksum,
                state: Recorded::Running,
                duration_ms: 0,
                error: None,
            })
            .await?;
        claim.commit().await?;

        let script = script_for(m, direction);
        let conn = self.db.connection().await?;
        let (conn, outcome) = self.run_step(conn, m, script, direction).await?;
        drop(conn);
        let mut finish = self.db.begin().await?;
        match outcome {
            Ok(()) => {
                match direction {
                    Direction::Up => {
                        finish
                            .record(&NewHistoryRow {
                                version: m.version.as_str(),
                                name: &m.name,
                                checksum: &m.checksum,
                                state: Recorded::Applied,
                                duration_ms: millis(started.elapsed()),
                                error: None,
                            })
                            .await?;
                    }
                    Direction::Down => {
                        finish.forget(m.version.as_str()).await?;
                    }
                }
                finish.commit().await?;
                Ok(true)
            }
            Err(failure) => {
                let error = self.failure(m, script, failure, false, done.to_vec());
                let message = match &error {
                    Error::Migration { failure, .. } => failure.to_string(),
                    other => other.to_string(),
                };
                finish
                    .record(&NewHistoryRow {
                        version: m.version.as_str(),
                        name: &m.name,
                        checksum: &m.checksum,
                        state: Recorded::Failed,
                        duration_ms: millis(started.elapsed()),
                        error: Some(&message),
                    })
                    .await?;
                finish.commit().await?;
                Err(error)
            }
        }
    }

    /// Applies a batch in one transaction: all of it or none of it.
    async fn apply_batch(
        &self,
        pending: Vec<Migration>,
        on_event: &mut (dyn FnMut(Event<'_>) + Send),
    ) -> Result<Vec<Applied>, Error> {
        let mut conn = self.db.begin().await?;
        let mut done = Vec::new();
        for m in &pending {
            let label = m.label();
            on_event(Event::Started {
                label: &label,
                down: false,
            });
            let started = Instant::now();
            let (back, outcome) = self.run_step(conn, m, &m.up, Direction::Up).await?;
            conn = back;
            if let Err(failure) = outcome {
                if let Err(e) = conn.rollback().await {
                    tracing::warn!("rolling back the batch: {e}");
                }
                // Nothing of the batch stays: report none of it as applied.
                return Err(self.failure(m, &m.up, failure, true, Vec::new()));
            }
            conn.record(&NewHistoryRow {
                version: m.version.as_str(),
                name: &m.name,
                checksum: &m.checksum,
                state: Recorded::Applied,
                duration_ms: millis(started.elapsed()),
                error: None,
            })
            .await?;
            let duration = started.elapsed();
            on_event(Event::Finished {
                label: &label,
                down: false,
                duration,
            });
            done.push(Applied {
                version: m.version.clone(),
                name: m.name.clone(),
                duration,
                transactional: true,
            });
        }
        conn.commit().await?;
        Ok(done)
    }

    async fn run_step(
        &self,
        conn: Conn,
        m: &Migration,
        script: &Script,
        direction: Direction,
    ) -> Result<(Conn, Result<(), StepFailure>), Error> {
        let (step, limits) = self.component(m)?;
        tracing::debug!(migration = %m.label(), step = step.name(), file = %script.path.display(), "running step");
        let (db, outcome) = self
            .host
            .run_limited(
                &step,
                direction,
                self.host_dialect(),
                &script.text,
                Box::new(StepConn(conn)),
                &limits,
            )
            .await;
        let db: Box<dyn std::any::Any + Send> = db;
        let conn = db
            .downcast::<StepConn>()
            .expect("the host returns the database it was given")
            .0;
        Ok((conn, outcome))
    }

    fn failure(
        &self,
        m: &Migration,
        script: &Script,
        failure: StepFailure,
        rolled_back: bool,
        applied: Vec<Applied>,
    ) -> Error {
        Error::Migration {
            failure: Box::new(MigrationFailure {
                label: m.label(),
                file: script.path.clone(),
                step: step_name(m),
                failure,
                rolled_back,
            }),
            applied,
        }
    }
}

/// The step's name in messages: `sql`, or the component's file name.
fn step_name(m: &Migration) -> String {
    match &m.step {
        Step::Sql => "sql".to_owned(),
        Step::Component(c) => c
            .path
            .file_name()
            .map_or_else(|| c.path.display().to_string(), |n| n.to_string_lossy().into_owned()),
    }
}

fn script_for(m: &Migration, direction: Direction) -> &Script {
    match direction {
        Direction::Up => &m.up,
        Direction::Down => m.down.as_ref().expect("reverted migrations have down scripts"),
    }
}

fn within(version: &Version, to: Option<&Version>) -> bool {
    to.is_none_or(|to| version <= to)
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

fn with_applied(error: Error, done: Vec<Applied>) -> Error {
    match error {
        Error::Migration { failure, .. } => Error::Migration { failure, applied: done },
        other => other,
    }
}

fn drift_check(status: &[Entry], ignore_missing: bool) -> Result<(), Error> {
    let modified: Vec<String> = status
        .iter()
        .filter(|e| e.state == State::Modified)
        .map(Entry::label)
        .collect();
    if !modified.is_empty() {
        return Err(Error::Drift {
            message: format!(
                "applied migration(s) changed since they were applied: {}",
                modified.join(", ")
            ),
            hint: Some(
                "restore the original files, or accept the change with `waymark repair --accept-checksums`".to_owned(),
            ),
        });
    }
    let missing: Vec<String> = status
        .iter()
        .filter(|e| e.state == State::Missing)
        .map(Entry::label)
        .collect();
    if !missing.is_empty() && !ignore_missing {
        return Err(Error::Drift {
            message: format!("applied migration(s) have no file: {}", missing.join(", ")),
            hint: Some("restore the files, pass --ignore-missing, or run `waymark repair --forget-missing`".to_owned()),
        });
    }
    Ok(())
}

async fn release<T>(lock: Lock, result: Result<T, Error>) -> Result<T, Error> {
    let released = lock.release().await;
    let value = result?;
    released?;
    Ok(value)
}

/// A migration's connection as a step sees it.
struct StepConn(Conn);

impl StepDatabase for StepConn {
    fn execute<'a>(&'a mut self, sql: &'a str) -> StepFuture<'a, Result<u64, DatabaseError>> {
        Box::pin(async move { self.0.execute(sql).await.map_err(step_error) })
    }

    fn in_transaction(&self) -> bool {
        self.0.in_transaction()
    }

    fn execute_script<'a>(&'a mut self, sql: &'a str) -> StepFuture<'a, Result<u64, DatabaseError>> {
        Box::pin(async move { self.0.execute_script(sql).await.map_err(step_error) })
    }
}

fn step_error(e: DbError) -> DatabaseError {
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
