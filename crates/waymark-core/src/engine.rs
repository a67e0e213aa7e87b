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
//!   runner is visible and blocks further runs until `repair`;
//! - in batches (component steps declared `transaction = "batches"`): as
//!   non-atomic, but the step runs in transactions that end at the commit
//!   points it asks for, each recording its checkpoint. A run that stops
//!   part-way is resumed from the last checkpoint by the next `up`.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use waymark_db::{
    AuditEntry, Conn, ConnectOptions, Database, DbError, Dialect, Lock, NewHistoryRow, State as Recorded,
};
use waymark_host::{
    Action, Call, CallError, DatabaseError, Direction, Limits, Rows, StepComponent, StepEnv, StepFailure, StepFuture,
    StepHost, Value,
};

use crate::error::{Error, MigrationFailure};
use crate::source::{Access, Migration, MigrationSet, Script, Step, Transaction};
use crate::status::{Entry, State, entries};
use crate::version::Version;
use crate::{drops, permission};

/// How the engine is set up.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// Where and how to connect.
    pub connect: ConnectOptions,
    /// Limits for every step.
    pub limits: Limits,
    /// Where compiled components are cached; `None` uses the default.
    pub cache_dir: Option<PathBuf>,
    /// Whether `up` keeps a copy of each table and column it drops, for
    /// `down` to put back (`[backup] preimages`).
    pub preimages: PreimageMode,
}

/// What `up` does about the data a migration drops (`[backup] preimages`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum PreimageMode {
    /// Drops without a copy.
    Off,
    /// Keeps a copy of what can be matched back to its rows; where nothing
    /// can (a dropped key column, a column of a table without a key), warns
    /// with what `down` will not give back and goes on. Every other runner
    /// applies such a migration, so refusing it would only make people turn
    /// the copies off.
    #[default]
    Keep,
    /// Keeps a copy as `Keep` does, and refuses a drop it cannot copy.
    Strict,
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
    /// Dropped data it kept (`up`) or put back (`down`).
    pub preimages: Vec<PreimageNote>,
    /// What it could not keep or put back, said once for the user.
    pub warnings: Vec<String>,
}

/// Dropped data a migration kept for its `down`, or that `down` put back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreimageNote {
    /// `table` or `table.column` (schema-qualified on PostgreSQL).
    pub object: String,
    /// The table that holds (or held) the copy.
    pub kept_in: String,
    /// The rows the copy holds.
    pub rows: u64,
    /// For `down`, the rows written back: fewer than `rows` when rows were
    /// deleted since.
    pub put_back: Option<u64>,
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
        /// Dropped data it kept or put back.
        preimages: &'a [PreimageNote],
        /// What it could not keep or put back.
        warnings: &'a [String],
    },
    /// A migration was skipped because another runner applied (or
    /// reverted) it first.
    Skipped {
        /// Which.
        label: &'a str,
        /// Up or down.
        down: bool,
    },
    /// A backup was taken and verified before anything was applied.
    BackedUp {
        /// Its id.
        id: &'a str,
        /// Its folder.
        dir: &'a std::path::Path,
        /// Tables in it.
        tables: usize,
        /// Its size.
        bytes: u64,
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
    /// Applies everything in one transaction and rolls it back: proof that
    /// the migrations run, without keeping their effects.
    pub dry_run: bool,
    /// Takes and verifies a backup before applying anything, and records
    /// its id with each migration applied.
    pub backup: Option<waymark_backup::CreateOptions>,
}

/// What `down` reverts.
#[derive(Debug, Clone)]
pub enum DownTarget {
    /// The newest N applied migrations.
    Steps(usize),
    /// Every applied migration newer than this version (`0`: all but a
    /// migration whose version is zero).
    To(Version),
    /// Every applied migration, a version-zero one too (diesel's
    /// `00000000000000_diesel_initial_setup`).
    All,
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
pub struct Engine {
    db: Database,
    host: StepHost,
    /// Component steps loaded by `prepare`, by pinned digest.
    components: std::sync::Mutex<std::collections::HashMap<String, StepComponent>>,
    progress: Option<Progress>,
    /// The backup `up --backup` took, recorded with each migration applied.
    backup_id: std::sync::Mutex<Option<String>>,
    /// What `up` does about dropped data.
    preimages: PreimageMode,
    /// The migrations (not applied) whose copies an earlier `down` left
    /// waiting, read once per `up`: only those need `retire_waiting`.
    waiting: std::sync::Mutex<std::collections::HashSet<String>>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("db", &self.db)
            .field("host", &self.host)
            .finish()
    }
}

/// Receives steps' progress reports: the migration's label, the work done
/// and the total, when the step knows it.
pub type Progress = std::sync::Arc<dyn Fn(&str, u64, Option<u64>) + Send + Sync>;

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
            progress: None,
            backup_id: Default::default(),
            preimages: options.preimages,
            waiting: Default::default(),
        })
    }

    /// Sends steps' progress reports to `progress`.
    pub fn on_progress(&mut self, progress: Progress) {
        self.progress = Some(progress);
    }

    /// The database's dialect.
    pub fn dialect(&self) -> Dialect {
        self.db.dialect()
    }

    /// The database URL, without its password.
    pub fn url(&self) -> &str {
        self.db.url()
    }

    fn current_backup(&self) -> Option<String> {
        self.backup_id.lock().unwrap().clone()
    }

    /// The engine's database.
    pub(crate) fn database(&self) -> &Database {
        &self.db
    }

    /// Every table's columns and contents, except those whose name starts
    /// with `skip`.
    pub(crate) async fn snapshot(&self, skip: &str) -> Result<waymark_db::Snapshot, Error> {
        Ok(self.db.snapshot(skip).await?)
    }

    /// Drops the history tables.
    pub(crate) async fn drop_history(&self) -> Result<(), Error> {
        Ok(self.db.drop_history().await?)
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

    /// The copies of dropped data that applied migrations keep for their
    /// `down`.
    pub async fn preimages(&self) -> Result<Vec<waymark_db::Preimage>, Error> {
        Ok(self.db.preimages().await?)
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
        self.prepare(&migrations, direction).await?;
        let mut planned = Vec::new();
        for m in migrations {
            let (step, _) = self.component(&m)?;
            let script = script_for(&m, direction);
            let call = Call {
                config: config_of(&m),
                ..Call::new(direction, self.host_dialect(), &script.text)
            };
            let actions = self
                .host
                .plan(&step, &call)
                .await
                .map_err(|failure| self.failure(&m, script, failure, true, Vec::new()))?;
            planned.push(PlannedMigration {
                transactional: single || self.atomic(&m, script),
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
        if !self.db.dialect().transactional_ddl() && (options.dry_run || options.single_transaction) {
            let flag = if options.dry_run {
                "--dry-run"
            } else {
                "--single-transaction"
            };
            return Err(Error::Usage(format!(
                "{flag} is not possible on MySQL/MariaDB: DDL commits as it runs"
            )));
        }
        let lock = self.lock_for_change().await?;
        let result = async {
            let status = self.status(set).await?;
            let pending = self.pending(&status, options)?;
            self.prepare(&pending, Direction::Up).await?;
            if let Some(backup) = options
                .backup
                .as_ref()
                .filter(|_| !pending.is_empty() && !options.dry_run)
            {
                // Under the lock: the backup is of exactly the state the
                // migrations are applied to.
                let (dir, manifest) = self.backup(backup, &mut |_| {}).await?;
                on_event(Event::BackedUp {
                    id: &manifest.id,
                    dir: &dir,
                    tables: manifest.tables.len(),
                    bytes: manifest.size(),
                });
                *self.backup_id.lock().unwrap() = Some(manifest.id);
            }
            if options.single_transaction || options.dry_run {
                self.apply_batch(pending, options.dry_run, on_event).await
            } else {
                self.run_each(pending, Direction::Up, on_event).await
            }
        }
        .await;
        self.backup_id.lock().unwrap().take();
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
            self.prepare(&targets, Direction::Down).await?;
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
            self.prepare(&targets, Direction::Down).await?;
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

    pub(crate) async fn lock_for_change(&self) -> Result<Lock, Error> {
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
    /// runs: a component whose digest differs from its pin, that asks for
    /// more than the operator allows or, for `down`, that says it cannot be
    /// reverted, refuses the whole operation.
    async fn prepare(&self, migrations: &[Migration], direction: Direction) -> Result<(), Error> {
        for m in migrations {
            let Step::Component(c) = &m.step else { continue };
            self.limits_for(m)?;
            if !self.components.lock().unwrap().contains_key(&c.sha256) {
                self.load_component(m, c)?;
            }
            if direction == Direction::Down {
                let (step, _) = self.component(m)?;
                let description = self
                    .host
                    .describe(&step, self.host_dialect(), &c.config)
                    .await
                    .map_err(|failure| self.failure(m, &m.up, failure, true, Vec::new()))?;
                if !description.reversible {
                    return Err(Error::Refused {
                        message: format!(
                            "cannot revert {}: its step {} {} says it is irreversible",
                            m.label(),
                            description.name,
                            description.version
                        ),
                        hint: Some("nothing was reverted".to_owned()),
                    });
                }
            }
        }
        Ok(())
    }

    fn load_component(&self, m: &Migration, c: &crate::source::ComponentStep) -> Result<(), Error> {
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

    /// Whether a migration's step and its history row commit together. A
    /// component step without `access = "read-write"` cannot run DDL (its
    /// permissions are checked per statement), so even on MySQL/MariaDB
    /// everything it does is transactional.
    fn atomic(&self, m: &Migration, script: &Script) -> bool {
        if script.no_transaction || batched(m) {
            return false;
        }
        self.db.dialect().transactional_ddl() || matches!(&m.step, Step::Component(c) if c.access != Access::ReadWrite)
    }

    /// What `up` would apply, after the checks that make it refuse.
    fn pending(&self, status: &[Entry], options: &UpOptions) -> Result<Vec<Migration>, Error> {
        let failed: Vec<&Entry> = status.iter().filter(|e| e.state == State::Failed).collect();
        // A step that commits in batches picks up where it stopped, if its
        // migration is unchanged: its checkpoint says where that is.
        let resumable = |e: &Entry| {
            e.migration
                .as_ref()
                .zip(e.row.as_ref())
                .is_some_and(|(m, row)| batched(m) && row.checksum == m.checksum)
        };
        if let [only] = failed.as_slice()
            && resumable(only)
            && !options.dry_run
        {
            let earlier_pending = status
                .iter()
                .any(|e| e.version < only.version && matches!(e.state, State::Pending | State::OutOfOrder));
            if !earlier_pending {
                drift_check(status, options.ignore_missing)?;
                let mut pending = vec![only.migration.clone().expect("resumable implies a migration")];
                pending.extend(
                    self.pending(
                        &status
                            .iter()
                            .filter(|e| e.version != only.version)
                            .cloned()
                            .collect::<Vec<_>>(),
                        options,
                    )?,
                );
                return Ok(pending);
            }
        }
        if let Some(first) = failed.first() {
            let row = first.row.as_ref().expect("failed implies a history row");
            let what = match row.state {
                Recorded::Running => "was interrupted while running outside a transaction".to_owned(),
                _ => {
                    let error = row.error.as_deref().unwrap_or("no error recorded");
                    // The recorded error names the migration already.
                    let prefix = format!("migration {} failed: ", first.label());
                    format!("failed: {}", error.strip_prefix(&prefix).unwrap_or(error))
                }
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
        if options.single_transaction || options.dry_run {
            let flag = if options.dry_run {
                "--dry-run"
            } else {
                "--single-transaction"
            };
            if !self.db.dialect().transactional_ddl() {
                return Err(Error::Usage(format!(
                    "{flag} is not possible on MySQL/MariaDB: DDL commits as it runs"
                )));
            }
            if let Some(m) = pending.iter().find(|m| m.up.no_transaction) {
                return Err(Error::Usage(format!(
                    "{flag} cannot include {}: it runs outside a transaction",
                    m.label()
                )));
            }
            if options.single_transaction
                && let Some(m) = pending.iter().find(|m| batched(m))
            {
                return Err(Error::Usage(format!(
                    "{flag} cannot include {}: its step commits in batches",
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
            DownTarget::All => applied,
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

    /// Reads which migrations have copies waiting, before an `up`. A run
    /// of `up` leaves none waiting itself, so once is enough.
    async fn read_waiting(&self) -> Result<(), Error> {
        let mut conn = self.db.connection().await?;
        let copies = conn.preimages(None).await?;
        let mut waiting = std::collections::HashSet::new();
        if !copies.is_empty() {
            let recorded: std::collections::HashSet<String> =
                conn.history_rows(None).await?.into_iter().map(|r| r.version).collect();
            waiting.extend(copies.into_iter().map(|c| c.version).filter(|v| !recorded.contains(v)));
        }
        *self.waiting.lock().unwrap() = waiting;
        Ok(())
    }

    /// Before `m` is applied afresh (it has no history row, so this is not a
    /// resumed run): a copy that an earlier `down` of `m` left waiting, and
    /// whose table or column exists again, holds data older than what is there
    /// now. `up` is about to drop that place again and keeps a copy of what is
    /// there now; the old copy would stand in for it and put stale values
    /// back, so it goes, with a warning.
    async fn retire_waiting(&self, conn: &mut Conn, m: &Migration, direction: Direction) -> Result<Vec<String>, Error> {
        if direction == Direction::Down
            || !self.waiting.lock().unwrap().contains(m.version.as_str())
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

    /// Applies (`Up`) or reverts (`Down`) each migration in turn, stopping
    /// at the first failure.
    async fn run_each(
        &self,
        migrations: Vec<Migration>,
        direction: Direction,
        on_event: &mut (dyn FnMut(Event<'_>) + Send),
    ) -> Result<Vec<Applied>, Error> {
        let down = direction == Direction::Down;
        if !down {
            self.read_waiting().await?;
        }
        let mut done = Vec::new();
        for m in migrations {
            let label = m.label();
            on_event(Event::Started { label: &label, down });
            let started = Instant::now();
            let atomic = self.atomic(&m, script_for(&m, direction));
            let ran = if atomic {
                self.run_atomic(&m, direction, &done).await
            } else {
                self.run_recorded(&m, direction, &done).await
            };
            let report = match ran {
                Ok(Some(report)) => report,
                Ok(None) => {
                    on_event(Event::Skipped { label: &label, down });
                    continue;
                }
                Err(e) => return Err(with_applied(e, done)),
            };
            let duration = started.elapsed();
            on_event(Event::Finished {
                label: &label,
                down,
                duration,
                preimages: &report.notes,
                warnings: &report.warnings,
            });
            done.push(Applied {
                version: m.version.clone(),
                name: m.name.clone(),
                duration,
                transactional: atomic,
                preimages: report.notes,
                warnings: report.warnings,
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

    /// Runs one migration and its history change in one transaction.
    /// Returns `None` when another runner got there first, or the dropped
    /// data it kept or put back.
    async fn run_atomic(
        &self,
        m: &Migration,
        direction: Direction,
        done: &[Applied],
    ) -> Result<Option<StepReport>, Error> {
        let started = Instant::now();
        let mut conn = self.db.begin_migration().await?;
        if self.already_done(&mut conn, m, direction).await? {
            conn.rollback().await?;
            return Ok(None);
        }
        let retired = self.retire_waiting(&mut conn, m, direction).await?;
        let script = script_for(m, direction);
        let (conn, outcome) = self.run_step(conn, m, script, direction, false, None).await?;
        let preimages = match outcome {
            Ok(report) => report.after(retired),
            Err(failure) => {
                // The step's failure is what the user needs; if the rollback
                // fails too (a lost connection), the server rolls back anyway.
                if let Err(e) = conn.rollback().await {
                    tracing::warn!("rolling back {}: {e}", m.label());
                }
                return Err(self.failure(m, script, failure, true, done.to_vec()));
            }
        };
        // The history change travels with the COMMIT. (A batched step is
        // never atomic: it commits at its own points.)
        let duration_ms = millis(started.elapsed());
        match direction {
            Direction::Up => {
                let backup = self.current_backup();
                conn.record_and_commit(&applied_row(m, duration_ms, backup.as_deref()))
                    .await?
            }
            Direction::Down => conn.forget_and_commit(m.version.as_str()).await?,
        }
        Ok(Some(preimages))
    }

    /// Records a migration as applied, or forgets it once reverted.
    async fn finish(
        &self,
        conn: &mut Conn,
        m: &Migration,
        direction: Direction,
        duration_ms: i64,
    ) -> Result<(), Error> {
        match direction {
            Direction::Up => {
                let backup = self.current_backup();
                conn.record(&applied_row(m, duration_ms, backup.as_deref())).await?
            }
            Direction::Down => {
                conn.forget(m.version.as_str()).await?;
            }
        }
        if batched(m) {
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
    ) -> Result<Option<StepReport>, Error> {
        let backup = self.current_backup();
        let started = Instant::now();
        let mut claim = self.db.begin().await?;
        if self.already_done(&mut claim, m, direction).await? {
            claim.rollback().await?;
            return Ok(None);
        }
        let resume_from = if batched(m) {
            self.checkpoint_to_resume(&mut claim, m, direction).await?
        } else {
            None
        };
        let retired = self.retire_waiting(&mut claim, m, direction).await?;
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
        claim.commit().await?;

        let script = script_for(m, direction);
        // A batched step's work commits at its commit points. A component
        // step that may run DDL on MySQL/MariaDB still runs in a transaction,
        // so that its row changes roll back on failure even though its DDL
        // cannot; SQL scripts run as the user's client would run them.
        let in_transaction =
            batched(m) || matches!(&m.step, Step::Component(c) if c.transaction == Transaction::Migration);
        let conn = if in_transaction {
            self.db.begin().await?
        } else {
            self.db.connection().await?
        };
        let (mut conn, outcome) = self
            .run_step(conn, m, script, direction, false, resume_from.as_deref())
            .await?;
        let failure = match outcome {
            Ok(report) if conn.in_transaction() => {
                self.finish(&mut conn, m, direction, millis(started.elapsed())).await?;
                conn.commit().await?;
                return Ok(Some(report.after(retired)));
            }
            Ok(report) => {
                drop(conn);
                let mut finish = self.db.begin().await?;
                self.finish(&mut finish, m, direction, millis(started.elapsed()))
                    .await?;
                finish.commit().await?;
                return Ok(Some(report.after(retired)));
            }
            Err(failure) => failure,
        };
        if let Err(e) = conn.rollback().await {
            tracing::warn!("rolling back {}: {e}", m.label());
        }
        let error = self.failure(m, script, failure, false, done.to_vec());
        let message = match &error {
            Error::Migration { failure, .. } => failure.to_string(),
            other => other.to_string(),
        };
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
        let Some(saved) = conn.checkpoint(m.version.as_str()).await? else {
            return Ok(None);
        };
        let (saved_direction, checkpoint) = saved.split_once(':').unwrap_or(("up", saved.as_str()));
        if saved_direction != direction_name(direction) {
            return Err(Error::Refused {
                message: format!(
                    "migration {} stopped part-way through its {saved_direction} step; it cannot {} from there",
                    m.label(),
                    direction_name(direction)
                ),
                hint: Some(format!(
                    "run `waymark {saved_direction}` to finish it, or undo its effects and run                      `waymark repair --rolled-back --version {}`",
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
        pending: Vec<Migration>,
        dry_run: bool,
        on_event: &mut (dyn FnMut(Event<'_>) + Send),
    ) -> Result<Vec<Applied>, Error> {
        let backup = self.current_backup();
        self.read_waiting().await?;
        let mut conn = self.db.begin().await?;
        let mut done = Vec::new();
        for m in &pending {
            let label = m.label();
            on_event(Event::Started {
                label: &label,
                down: false,
            });
            let started = Instant::now();
            let retired = self.retire_waiting(&mut conn, m, Direction::Up).await?;
            let (back, outcome) = self.run_step(conn, m, &m.up, Direction::Up, dry_run, None).await?;
            conn = back;
            let report = match outcome {
                Ok(report) => report.after(retired),
                Err(failure) => {
                    if let Err(e) = conn.rollback().await {
                        tracing::warn!("rolling back the batch: {e}");
                    }
                    // Nothing of the batch stays: report none of it as applied.
                    return Err(self.failure(m, &m.up, failure, true, Vec::new()));
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
            let duration = started.elapsed();
            on_event(Event::Finished {
                label: &label,
                down: false,
                duration,
                preimages: &report.notes,
                warnings: &report.warnings,
            });
            done.push(Applied {
                version: m.version.clone(),
                name: m.name.clone(),
                duration,
                transactional: true,
                preimages: report.notes,
                warnings: report.warnings,
            });
        }
        if dry_run {
            conn.rollback().await?;
        } else {
            conn.commit().await?;
        }
        Ok(done)
    }

    /// Runs a migration's step on `conn`. For `up`, a copy of each table
    /// and column the step drops is kept first; for `down`, each copy the
    /// migration kept is put back as soon as its place exists again, and
    /// by the end of the step at the latest.
    async fn run_step(
        &self,
        conn: Conn,
        m: &Migration,
        script: &Script,
        direction: Direction,
        dry_run: bool,
        resume_from: Option<&str>,
    ) -> Result<(Conn, Result<StepReport, StepFailure>), Error> {
        let (step, limits) = self.component(m)?;
        tracing::debug!(migration = %m.label(), step = step.name(), file = %script.path.display(), "running step");
        let mut conn = conn;
        let preimages = match (direction, self.preimages) {
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
            Step::Sql => None,
            Step::Component(c) => Some(c.access.clone()),
        };
        let mut session = StepSession {
            conn: Some(conn),
            access,
            dialect: self.db.dialect(),
            batches: batched(m).then(|| Batches {
                db: self.db.clone(),
                version: m.version.to_string(),
                direction,
            }),
            progress: self.progress.clone(),
            label: m.label(),
            statement_timeout: None,
            restore: None,
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
            return Ok((conn, Err(failure)));
        }
        let guarded = session.guard_read_only().await?;
        session.bound_statements().await?;
        let call = Call {
            config: config_of(m),
            dry_run,
            resume_from,
            ..Call::new(direction, self.host_dialect(), &script.text)
        };
        let (env, outcome) = self.host.run_limited(&step, &call, Box::new(session), &limits).await;
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
        let conn = session.conn.take().ok_or_else(|| Error::Refused {
            message: format!("migration {}: its connection was lost at a commit point", m.label()),
            hint: None,
        });
        Ok((conn?, outcome.map(|()| report)))
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
/// The history row of a migration just applied.
fn applied_row<'a>(m: &'a Migration, duration_ms: i64, backup: Option<&'a str>) -> NewHistoryRow<'a> {
    NewHistoryRow {
        version: m.version.as_str(),
        name: &m.name,
        checksum: &m.checksum,
        state: Recorded::Applied,
        duration_ms,
        error: None,
        backup_id: backup,
    }
}

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

pub(crate) async fn release<T>(lock: Lock, result: Result<T, Error>) -> Result<T, Error> {
    let released = lock.release().await;
    let value = result?;
    released?;
    Ok(value)
}

/// Whether a migration's step commits in batches.
fn batched(m: &Migration) -> bool {
    matches!(&m.step, Step::Component(c) if c.transaction == Transaction::Batches)
}

fn config_of(m: &Migration) -> &str {
    match &m.step {
        Step::Sql => "{}",
        Step::Component(c) => &c.config,
    }
}

fn direction_name(direction: Direction) -> &'static str {
    match direction {
        Direction::Up => "up",
        Direction::Down => "down",
    }
}

/// Where a batched step's commit points go.
struct Batches {
    db: Database,
    version: String,
    direction: Direction,
}

/// A migration's connection as a step sees it: each statement checked
/// against the step's permissions (`access`; none for the built-in SQL
/// step, whose scripts are the user's own), commit points for batched
/// steps, progress passed on.
struct StepSession {
    /// `None` only if a commit point failed to open the next transaction.
    conn: Option<Conn>,
    access: Option<Access>,
    dialect: Dialect,
    batches: Option<Batches>,
    progress: Option<Progress>,
    label: String,
    /// How long one statement of a component step may run: epochs cannot
    /// interrupt a host call, so the database must.
    statement_timeout: Option<Duration>,
    /// The session setting to put back after the step, where the bound is
    /// a session setting rather than a transaction's.
    restore: Option<String>,
    /// What happens to dropped data; `None` when nothing does.
    preimages: Option<Preimages>,
    /// The copies kept or put back so far.
    notes: Vec<PreimageNote>,
    /// What could not be kept, or has nowhere to go yet.
    warnings: Vec<String>,
}

/// What a step did about dropped data.
#[derive(Debug, Default)]
struct StepReport {
    notes: Vec<PreimageNote>,
    warnings: Vec<String>,
}

impl StepReport {
    /// This report, after the warnings of what happened before the step.
    fn after(mut self, mut earlier: Vec<String>) -> Self {
        earlier.append(&mut self.warnings);
        self.warnings = earlier;
        self
    }
}

/// The copies a `down` of `m` puts back once their place exists: its own,
/// and those that earlier `down`s left waiting (their migration is no
/// longer applied), since a history often makes a column again in the
/// `down` of an earlier migration than the one that dropped it.
async fn to_put_back(conn: &mut Conn, m: &Migration) -> Result<Vec<waymark_db::Preimage>, Error> {
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
enum Preimages {
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
    async fn keep_all(&mut self, targets: &[waymark_db::ObjectRef]) -> Result<(), CallError> {
        let Some(Preimages::Keep { version, strict }) = &self.preimages else {
            return Ok(());
        };
        let (version, strict) = (version.clone(), *strict);
        for target in targets {
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
    async fn put_back_the_rest(&mut self, label: &str) -> Result<(), StepFailure> {
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

    /// Bounds each statement by `statement_timeout`: `SET LOCAL` inside a
    /// PostgreSQL transaction (again after each commit point), a session
    /// setting elsewhere, put back afterwards. SQLite runs statements in
    /// this process and has no such setting.
    async fn bound_statements(&mut self) -> Result<(), Error> {
        let Some(timeout) = self.statement_timeout else {
            return Ok(());
        };
        let Some(conn) = self.conn.as_mut() else { return Ok(()) };
        let ms = timeout.as_millis();
        match self.dialect {
            Dialect::Postgres if conn.in_transaction() => {
                conn.execute(&format!("SET LOCAL statement_timeout = {ms}")).await?;
            }
            Dialect::Postgres => {
                let previous = conn
                    .query_rows("SELECT current_setting('statement_timeout')", &[], 1)
                    .await?;
                if let Some(Some(waymark_db::Value::Text(v))) = previous.rows.first().map(|r| r.first()) {
                    self.restore = Some(format!("SET statement_timeout = '{}'", v.replace('\'', "''")));
                }
                conn.execute(&format!("SET statement_timeout = {ms}")).await?;
            }
            Dialect::Mysql => {
                // MariaDB counts in seconds; MySQL has only a SELECT bound.
                let seconds = timeout.as_secs_f64();
                match conn
                    .execute(&format!(
                        "SET @waymark_mst = @@max_statement_time, max_statement_time = {seconds}"
                    ))
                    .await
                {
                    Ok(_) => self.restore = Some("SET max_statement_time = @waymark_mst".to_owned()),
                    Err(_) => {
                        conn.execute(&format!(
                            "SET @waymark_met = @@max_execution_time, max_execution_time = {ms}"
                        ))
                        .await?;
                        self.restore = Some("SET max_execution_time = @waymark_met".to_owned());
                    }
                }
            }
            Dialect::Sqlite => {}
        }
        Ok(())
    }

    async fn unbound_statements(&mut self) -> Result<(), Error> {
        if let (Some(restore), Some(conn)) = (self.restore.take(), self.conn.as_mut()) {
            // On an aborted PostgreSQL transaction this fails, and the
            // rollback that follows undoes the setting anyway.
            if let Err(e) = conn.execute(&restore).await {
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
    /// runs in a read-only savepoint on PostgreSQL and with `query_only` on
    /// SQLite. Returns whether the guard is up.
    async fn guard_read_only(&mut self) -> Result<bool, Error> {
        if self.access != Some(Access::ReadOnly) || self.batches.is_some() {
            return Ok(false);
        }
        let Some(conn) = self.conn.as_mut() else {
            return Ok(false);
        };
        match self.dialect {
            Dialect::Postgres if conn.in_transaction() => {
                conn.execute("SAVEPOINT waymark_read_only; SET LOCAL transaction_read_only = on")
                    .await?;
            }
            Dialect::Sqlite => {
                conn.execute("PRAGMA query_only = ON").await?;
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    async fn unguard_read_only(&mut self) -> Result<(), Error> {
        let Some(conn) = self.conn.as_mut() else { return Ok(()) };
        match self.dialect {
            Dialect::Postgres => {
                // After an error the transaction is aborted and rolls back
                // anyway; the savepoint's rollback must not hide that error.
                let _ = conn
                    .execute("ROLLBACK TO SAVEPOINT waymark_read_only; RELEASE SAVEPOINT waymark_read_only")
                    .await;
            }
            _ => {
                conn.execute("PRAGMA query_only = OFF").await?;
            }
        }
        Ok(())
    }
}

impl StepEnv for StepSession {
    fn execute<'a>(&'a mut self, sql: &'a str, params: Vec<Value>) -> StepFuture<'a, Result<u64, CallError>> {
        Box::pin(async move {
            self.check(sql)?;
            let mark = self.notes.len();
            let put_back = self.before(sql, false).await?;
            let params: Vec<waymark_db::Value> = params.into_iter().map(to_db).collect();
            let result = self.conn()?.execute_with(sql, &params).await;
            self.after(mark, put_back, result.is_ok()).await?;
            Ok(result.map_err(step_error)?)
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
            let result = self.conn()?.query_rows(sql, &params, max_rows).await;
            self.after(mark, put_back, result.is_ok()).await?;
            let rows = result.map_err(step_error)?;
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
        self.conn.as_ref().is_some_and(Conn::in_transaction)
    }

    fn execute_script<'a>(&'a mut self, sql: &'a str) -> StepFuture<'a, Result<u64, CallError>> {
        Box::pin(async move {
            self.check(sql)?;
            let mark = self.notes.len();
            let put_back = self.before(sql, true).await?;
            let result = self.conn()?.execute_script(sql).await;
            self.after(mark, put_back, result.is_ok()).await?;
            Ok(result.map_err(step_error)?)
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
            let saved = format!("{}:{checkpoint}", direction_name(batches.direction));
            let version = batches.version.clone();
            let db = batches.db.clone();
            // After a commit point that failed to open the next transaction
            // there is none to commit: the step hears so; the host goes on.
            let mut conn = self.conn.take().ok_or_else(lost_connection)?;
            if let Err(e) = conn.save_checkpoint(&version, &saved).await {
                self.conn = Some(conn);
                return Err(step_error(e).into());
            }
            conn.commit().await.map_err(step_error)?;
            tracing::debug!(migration = %self.label, checkpoint, "committed a batch");
            self.conn = Some(db.begin().await.map_err(step_error)?);
            if self.dialect == Dialect::Postgres {
                self.bound_statements().await.map_err(|e| {
                    CallError::Database(DatabaseError {
                        code: None,
                        message: e.to_string(),
                        position: None,
                    })
                })?;
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

fn lost_connection() -> CallError {
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
