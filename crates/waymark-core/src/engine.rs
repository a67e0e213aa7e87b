//! The engine: every migration command against one database, each made of
//! the same parts. A changing command takes the migration lock, reads the
//! history under it (so two runners never act on the same stale picture),
//! has the planner (`plan/`) make a plan from it, and has an executor
//! (`execute/`) carry the plan out. `plan` makes the same plan without the
//! lock and shows or saves it; `up --plan` checks a saved plan against the
//! state under the lock and carries it out only if nothing changed.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use waymark_db::{ConnectOptions, Database, Dialect, Lock};
use waymark_host::{Direction, Limits, StepFailure};

use crate::error::{Error, MigrationFailure};
use crate::execute::{Executor, LockPolicy, OnLockRetry, Trace};
use crate::plan::{Plan, Planner, SavedOptions, SavedPlan, Statements, Way};
use crate::source::{Migration, MigrationSet, OpsPhase, Script, Step, Transaction};
use crate::sql::lint::Severity;
use crate::status::{Entry, State, entries};
use crate::steps::{Steps, step_name};
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
    /// Whether `up` keeps a copy of each table and column it drops, for
    /// `down` to put back (`[backup] preimages`).
    pub preimages: PreimageMode,
    /// How migrations' statements wait for locks (`[locks]`).
    pub locks: LockPolicy,
    /// Below how many rows a table's lock is too brief to refuse `up` over
    /// (`[lint] small_table_rows`).
    pub small_table_rows: u64,
    /// Rules whose findings have another severity than the catalogue's
    /// (`[lint.severity]`), by id.
    pub severities: HashMap<String, Severity>,
}

/// `[lint] small_table_rows`' default: an index on ten thousand rows is
/// built, or a column checked, in tens of milliseconds.
pub const SMALL_TABLE_ROWS: u64 = 10_000;

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
    /// What was done, which says the direction too: `applied`,
    /// `reverted`, or an ops.toml migration's `expanded`, `completed` or
    /// `aborted` (a `redo` lists its migration twice, reverted then
    /// applied).
    pub done: &'static str,
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

/// Progress, for the caller to show. Each event names the database it
/// happened on (`target`), so that events of several databases can share
/// one stream.
#[derive(Debug, Clone)]
pub enum Event<'a> {
    /// A migration is starting.
    Started {
        /// The database.
        target: &'a str,
        /// Which.
        label: &'a str,
        /// Up or down.
        down: bool,
        /// Its place in the batch, from 1.
        position: usize,
        /// How many the batch holds.
        of: usize,
    },
    /// A migration finished.
    Finished {
        /// The database.
        target: &'a str,
        /// Which.
        label: &'a str,
        /// What was done, which says the direction too: `applied`,
        /// `reverted`, or an ops.toml migration's `expanded`, `completed`
        /// or `aborted`.
        done: &'static str,
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
        /// The database.
        target: &'a str,
        /// Which.
        label: &'a str,
        /// Up or down.
        down: bool,
    },
    /// A lint finding on a migration about to run, which does not refuse
    /// it (a warning, or an error on a table too small for its lock to
    /// hurt).
    Finding {
        /// The database.
        target: &'a str,
        /// The migration's script.
        file: &'a std::path::Path,
        /// The finding.
        finding: &'a crate::sql::lint::Finding,
    },
    /// A backup was taken and verified before anything was applied.
    BackedUp {
        /// The database.
        target: &'a str,
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
    /// Record failed (or interrupted) migrations as applied, once what
    /// they left half done has been finished (an up) or undone (a down)
    /// by hand.
    pub applied: bool,
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

/// Every migration of `set` as `up` would plan it on an empty database of
/// `dialect`, with what the lint rules say of each statement: no database
/// is needed, only the steps (each asked for its statements). With
/// `lock_timeout`, waymark bounds each statement's lock wait.
pub async fn lint(
    set: &MigrationSet,
    dialect: Dialect,
    limits: Limits,
    lock_timeout: bool,
    severities: &HashMap<String, Severity>,
) -> Result<Plan, Error> {
    let steps = Steps::new(limits, None)?;
    let planner = Planner {
        steps: &steps,
        dialect,
        preimages: PreimageMode::Off,
        statements: Statements::Shown,
        columns: Default::default(),
        lock_timeout,
        severities,
        history: waymark_db::HistoryTable::default().name,
    };
    planner.up(set, &[], &UpOptions::default()).await
}

/// Whether a finding refuses `up` as it stands.
fn refuses(f: &crate::sql::lint::Finding) -> bool {
    f.severity == Severity::Error && f.allowed.is_none()
}

/// Runs migrations against one database.
pub struct Engine {
    db: Database,
    steps: Arc<Steps>,
    progress: Option<Progress>,
    statements: Option<OnStatement>,
    /// What `up` does about dropped data.
    preimages: PreimageMode,
    locks: LockPolicy,
    on_lock_retry: Option<OnLockRetry>,
    small_table_rows: u64,
    severities: HashMap<String, Severity>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("db", &self.db)
            .field("steps", &self.steps)
            .finish()
    }
}

/// Receives steps' progress reports: the migration's label, the work done
/// and the total, when the step knows it.
pub type Progress = Arc<dyn Fn(&str, u64, Option<u64>) + Send + Sync>;

/// Receives each statement a step ran, once it ended.
pub type OnStatement = Arc<dyn Fn(&StatementRun<'_>) + Send + Sync>;

/// One statement a step ran, as the executor saw it.
#[derive(Debug)]
pub struct StatementRun<'a> {
    /// The migration's label.
    pub migration: &'a str,
    /// The statement as the step sent it.
    pub sql: &'a str,
    /// When it was sent (the first time, where a lock wait had it tried
    /// again).
    pub started: std::time::Instant,
    /// Until it ended, its retries included.
    pub duration: Duration,
    /// What the database said, if it failed.
    pub error: Option<String>,
    /// Whether it ran inside a transaction, which holds its locks until
    /// the end; outside one they ended with it.
    pub in_transaction: bool,
    /// The relation locks it took that its transaction did not hold
    /// before (PostgreSQL, inside a transaction; empty elsewhere).
    pub locks: &'a [waymark_db::TracedLock],
}

impl Engine {
    /// Connects and prepares the step host.
    pub async fn connect(options: &EngineOptions) -> Result<Self, Error> {
        let steps = Arc::new(Steps::new(options.limits.clone(), options.cache_dir.clone())?);
        Self::connect_with(options, steps).await
    }

    /// Connects, sharing `steps` (the step host and the components loaded
    /// into it) with other engines.
    pub async fn connect_with(options: &EngineOptions, steps: Arc<Steps>) -> Result<Self, Error> {
        let db = Database::connect(&options.connect).await?;
        Ok(Engine {
            db,
            steps,
            progress: None,
            statements: None,
            preimages: options.preimages,
            locks: options.locks.clone(),
            on_lock_retry: None,
            small_table_rows: options.small_table_rows,
            severities: options.severities.clone(),
        })
    }

    /// Sends steps' progress reports to `progress`.
    pub fn on_progress(&mut self, progress: Progress) {
        self.progress = Some(progress);
    }

    /// Tells `tell` of each statement a step runs, with the locks it took
    /// (which costs a look at `pg_locks` before and after each statement
    /// inside a transaction).
    pub fn on_statement(&mut self, tell: OnStatement) {
        self.statements = Some(tell);
    }

    /// Tells `tell` of each lock wait that timed out and is tried again.
    pub fn on_lock_retry(&mut self, tell: OnLockRetry) {
        self.on_lock_retry = Some(tell);
    }

    /// The database's dialect.
    pub fn dialect(&self) -> Dialect {
        self.db.dialect()
    }

    /// The database URL, without its password: its name in events.
    pub fn url(&self) -> &str {
        self.db.url()
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

    fn planner(&self, preimages: PreimageMode, statements: Statements) -> Planner<'_> {
        Planner {
            steps: &self.steps,
            dialect: self.db.dialect(),
            preimages,
            statements,
            columns: Default::default(),
            lock_timeout: self.locks.timeout.is_some(),
            severities: &self.severities,
            history: self.db.history_table().name.clone(),
        }
    }

    fn executor(&self) -> Executor<'_> {
        Executor::new(&self.db, &self.steps, self.db.url())
            .with_progress(self.progress.clone())
            .with_statements(self.statements.clone())
            .with_locks(self.locks.clone(), self.on_lock_retry.clone())
    }

    /// Every migration with its state. Read-only: does not create the
    /// history table.
    pub async fn status(&self, set: &MigrationSet) -> Result<Vec<Entry>, Error> {
        Ok(entries(set, self.db.history().await?))
    }

    /// The version schema of each expanded migration of `entries`
    /// (PostgreSQL): `(version, schema)`, for the new application's
    /// `search_path`.
    pub async fn version_schemas(&self, entries: &[Entry]) -> Result<Vec<(String, String)>, Error> {
        let expanded: Vec<&str> = entries
            .iter()
            .filter(|e| e.state == crate::State::Expanded)
            .map(|e| e.version.as_str())
            .collect();
        Ok(self.db.version_schemas(&expanded).await?)
    }

    /// The copies of dropped data that applied migrations keep for their
    /// `down`.
    pub async fn preimages(&self) -> Result<Vec<waymark_db::Preimage>, Error> {
        Ok(self.db.preimages().await?)
    }

    /// What `up` would run, checked exactly as `up` checks it, with each
    /// step's statements. Read-only.
    pub async fn plan(&self, set: &MigrationSet, options: &UpOptions) -> Result<Plan, Error> {
        let history = self.db.history().await?;
        let plan = self
            .planner(self.preimages, Statements::Shown)
            .up(set, &history, options)
            .await?;
        self.settle_types(plan).await
    }

    /// [`plan`](Self::plan), then weighed as `up` weighs it: an
    /// error-level finding on a table big enough for its lock to hurt
    /// refuses it here, before anything runs. Read-only.
    pub async fn plan_weighed(&self, set: &MigrationSet, options: &UpOptions) -> Result<Plan, Error> {
        let plan = self.plan(set, options).await?;
        self.weigh(plan).await
    }

    /// Settles the type changes whose old type lint could not see, from
    /// the catalog: a change that rewrites nothing (a varchar widened) is
    /// no finding; one that rewrites says from what.
    async fn settle_types(&self, mut plan: Plan) -> Result<Plan, Error> {
        let unseen: Vec<(String, String)> = plan
            .migrations
            .iter()
            .flat_map(|p| &p.findings)
            .filter_map(|f| Some((f.table.clone()?, f.unseen_type.as_ref()?.0.clone())))
            .collect();
        let types = self.db.column_types(&unseen).await?;
        for p in &mut plan.migrations {
            p.findings.retain_mut(|f| {
                let (Some(table), Some((column, to))) = (&f.table, &f.unseen_type) else {
                    return true;
                };
                let Some(from) = types.get(&(table.clone(), column.clone())) else {
                    return true;
                };
                if !crate::sql::lint::rewrites(from, to) {
                    return false;
                }
                f.message = crate::sql::lint::rewritten(table, column, from, to);
                f.unseen_type = None;
                true
            });
        }
        Ok(plan)
    }

    /// What `down` would revert, newest first, checked exactly as `down`
    /// checks it. Read-only.
    pub async fn plan_down(&self, set: &MigrationSet, target: &DownTarget) -> Result<Plan, Error> {
        let history = self.db.history().await?;
        let kept = self.db.preimages().await?;
        self.planner(self.preimages, Statements::Shown)
            .down(set, &history, &kept, target)
            .await
    }

    /// Runs `plan`'s statements in a transaction that is rolled back and
    /// says what each locked, rewrote and took (PostgreSQL). On this
    /// database each statement waits for a lock at most the lock timeout
    /// (one second where it is off) and runs at most twice that, wait
    /// included, so the trace holds no lock longer than the timeout; on
    /// `scratch` (a copy of this database in the same state, whose history
    /// must match) statements run as long as they take, so its timings are
    /// the real ones.
    pub async fn trace(&self, plan: &Plan, scratch: Option<&Engine>) -> Result<Trace, Error> {
        let lock_wait = self.locks.timeout.unwrap_or(Duration::from_secs(1));
        let Some(scratch) = scratch else {
            return Ok(crate::execute::trace(&self.db, plan, lock_wait, Some(lock_wait * 2)).await?);
        };
        let applied = |rows: Vec<waymark_db::HistoryRow>| -> Vec<(String, String)> {
            rows.into_iter()
                .filter(|r| {
                    matches!(
                        r.state,
                        waymark_db::State::Applied | waymark_db::State::Baseline | waymark_db::State::Expanded
                    )
                })
                .map(|r| (r.version, r.checksum))
                .collect()
        };
        let ours = applied(self.db.history().await?);
        let theirs = applied(scratch.db.history().await?);
        if ours != theirs {
            let versions = |rows: &[(String, String)]| match rows.last() {
                Some((v, _)) => format!("{} applied, the newest {v}", rows.len()),
                None => "none applied".to_owned(),
            };
            return Err(Error::Usage(format!(
                "the scratch database {} is not in the target's state: the target has {}, the scratch database \
                 {} (or their checksums differ); restore a backup of the target into it first",
                scratch.url(),
                versions(&ours),
                versions(&theirs)
            )));
        }
        Ok(crate::execute::trace(&scratch.db, plan, lock_wait, None).await?)
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
        self.under_lock(options.backup.as_ref(), on_event, async |history| {
            let plan = self
                .planner(self.preimages, Statements::Weighed)
                .up(set, history, options)
                .await?;
            self.weigh(self.settle_types(plan).await?).await
        })
        .await
    }

    /// Refuses an `up` plan with an error-level finding that nothing
    /// allows, on a table big enough for its lock to hurt. A finding on a
    /// table of fewer than `[lint] small_table_rows` rows, or on one that
    /// does not exist yet (an earlier migration of the plan makes it), is
    /// a warning: the lock is brief.
    async fn weigh(&self, mut plan: Plan) -> Result<Plan, Error> {
        let tables: Vec<String> = plan
            .migrations
            .iter()
            .flat_map(|p| &p.findings)
            .filter(|f| refuses(f))
            .filter_map(|f| f.table.clone())
            .collect();
        if !plan.migrations.iter().flat_map(|p| &p.findings).any(refuses) {
            return Ok(plan);
        }
        let rows = self.db.table_rows(&tables).await?;
        let mut refused = Vec::new();
        for p in &mut plan.migrations {
            for f in p.findings.iter_mut().filter(|f| refuses(f)) {
                let size = f.table.as_ref().map(|t| rows.get(t).copied());
                match size {
                    Some(None) => {
                        f.severity = Severity::Warning;
                        f.message
                            .push_str(" (the table is made by this plan: nothing waits on it yet)");
                    }
                    Some(Some(n)) if n < self.small_table_rows => {
                        f.severity = Severity::Warning;
                        f.message
                            .push_str(&format!(" (the table holds about {n} rows: the lock is brief)"));
                    }
                    Some(Some(n)) => f.message.push_str(&format!(" (the table holds about {n} rows)")),
                    None => {}
                }
                if f.severity == Severity::Error {
                    refused.push(format!(
                        "{}:{}: [{}] {}; fix: {}",
                        p.file.display(),
                        f.line,
                        f.rule,
                        f.message,
                        f.fix
                    ));
                }
            }
        }
        if refused.is_empty() {
            return Ok(plan);
        }
        Err(Error::Lint {
            message: format!(
                "up refused: {} statement(s) would take a lock that blocks the application:\n  {}",
                refused.len(),
                refused.join("\n  ")
            ),
        })
    }

    /// Reverts applied migrations, newest first.
    pub async fn down(
        &self,
        set: &MigrationSet,
        target: &DownTarget,
        on_event: &mut (dyn FnMut(Event<'_>) + Send),
    ) -> Result<Vec<Applied>, Error> {
        self.under_lock(None, on_event, async |history| {
            let kept = self.db.preimages().await?;
            self.planner(self.preimages, Statements::No)
                .down(set, history, &kept, target)
                .await
        })
        .await
    }

    /// Contracts every expanded migration up to `to`: the old shape, its
    /// version schema and the sync triggers dropped (what is dropped kept
    /// for `down`), each migration then `applied`.
    pub async fn complete(
        &self,
        set: &MigrationSet,
        to: Option<&Version>,
        on_event: &mut (dyn FnMut(Event<'_>) + Send),
    ) -> Result<Vec<Applied>, Error> {
        self.under_lock(None, on_event, async |history| {
            self.planner(self.preimages, Statements::No)
                .complete(set, history, to)
                .await
        })
        .await
    }

    /// What `complete` would contract, for `plan --complete`.
    pub async fn plan_complete(&self, set: &MigrationSet, to: Option<&Version>) -> Result<Plan, Error> {
        let history = self.db.history().await?;
        self.planner(self.preimages, Statements::Shown)
            .complete(set, &history, to)
            .await
    }

    /// Reverts the newest applied migration and applies it again: proof that
    /// its down restores what its up changed.
    pub async fn redo(
        &self,
        set: &MigrationSet,
        on_event: &mut (dyn FnMut(Event<'_>) + Send),
    ) -> Result<Vec<Applied>, Error> {
        self.under_lock(None, on_event, async |history| {
            let kept = self.db.preimages().await?;
            let open = self.db.connection().await?.open_redos().await?;
            self.planner(self.preimages, Statements::No)
                .redo(set, history, &kept, &open)
                .await
        })
        .await
    }

    /// Carries out a saved plan (`up --plan`, `down --plan`), after
    /// checking under the lock that the history and every file are as they
    /// were when it was made, and that the same plan would be made from
    /// them; refuses, naming each difference, if not.
    pub async fn apply_saved(
        &self,
        set: &MigrationSet,
        saved: &SavedPlan,
        backup: Option<&waymark_backup::CreateOptions>,
        on_event: &mut (dyn FnMut(Event<'_>) + Send),
    ) -> Result<Vec<Applied>, Error> {
        self.under_lock(backup, on_event, async |history| {
            let statements = match saved.direction.as_str() {
                "down" => Statements::No,
                _ => Statements::Weighed,
            };
            let planner = self.planner(saved.preimage_mode(), statements);
            let now = match saved.direction.as_str() {
                "down" => {
                    let kept = self.db.preimages().await?;
                    planner.down(set, history, &kept, &saved.down_target()).await
                }
                _ => planner.up(set, history, &saved.up_options()?).await,
            };
            // A plan that can no longer be made (a migration failed since,
            // a file is gone) is as stale as one that differs.
            let differences = match &now {
                Ok(now) => saved.differences(now),
                Err(e) => vec![format!("the plan cannot be made again from this state: {e}")],
            };
            if !differences.is_empty() {
                return Err(Error::StalePlan {
                    message: format!(
                        "the saved plan does not match this database and its migrations any more: {}",
                        differences.join("; ")
                    ),
                    hint: Some(
                        "nothing was applied; make a new plan with `waymark plan --out`, review it, and apply that"
                            .to_owned(),
                    ),
                });
            }
            // Exactly the reviewed plan, and still weighed as `up` weighs.
            match now {
                Ok(now) if now.way == Way::Up => self.weigh(self.settle_types(now).await?).await,
                other => other,
            }
        })
        .await
    }

    /// The saved form of `plan`, with the options it was made with.
    pub fn save(&self, plan: &Plan, options: SavedOptions) -> SavedPlan {
        SavedPlan::new(plan, options, self.db.url())
    }

    /// Takes the lock, reads the history, has `make` plan from it, takes
    /// the backup if asked (under the lock: it is of exactly the state the
    /// plan changes) and carries the plan out.
    async fn under_lock(
        &self,
        backup: Option<&waymark_backup::CreateOptions>,
        on_event: &mut (dyn FnMut(Event<'_>) + Send),
        make: impl AsyncFnOnce(&[waymark_db::HistoryRow]) -> Result<Plan, Error>,
    ) -> Result<Vec<Applied>, Error> {
        let lock = self.lock_for_change().await?;
        waymark_db::crash_point("lock-taken");
        let result = async {
            // `lock_for_change` has just made waymark's tables and checked
            // their schema version: the rows are read without asking again.
            let history = self.db.connection().await?.history_rows(None).await?;
            let plan = make(&history).await?;
            // What lint says and does not refuse is said before anything
            // runs.
            for p in &plan.migrations {
                for finding in p.findings.iter().filter(|f| f.allowed.is_none()) {
                    on_event(Event::Finding {
                        target: self.db.url(),
                        file: &p.file,
                        finding,
                    });
                }
            }
            let mut backup_id = None;
            if let Some(backup) = backup.filter(|_| !plan.migrations.is_empty() && !plan.dry_run && plan.way == Way::Up)
            {
                let (dir, manifest) = self.backup(backup, &mut |_| {}).await?;
                on_event(Event::BackedUp {
                    target: self.db.url(),
                    id: &manifest.id,
                    dir: &dir,
                    tables: manifest.tables.len(),
                    bytes: manifest.size(),
                });
                backup_id = Some(manifest.id);
                waymark_db::crash_point("backed-up-before-up");
            }
            self.executor().with_backup(backup_id).run(&plan, on_event).await
        }
        .await;
        waymark_db::crash_point("before-lock-release");
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
}

pub(crate) async fn release<T>(lock: Lock, result: Result<T, Error>) -> Result<T, Error> {
    let released = lock.release().await;
    let value = result?;
    released?;
    Ok(value)
}

/// The error of a migration whose step failed.
pub(crate) fn failure(
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
            resumes: !rolled_back && batched(m),
            lock_wait: None,
            down: false,
        }),
        applied,
    }
}

pub(crate) fn script_for(m: &Migration, direction: Direction) -> &Script {
    match direction {
        Direction::Up => &m.up,
        Direction::Down => m.down.as_ref().expect("reverted migrations have down scripts"),
    }
}

/// Whether a migration's step commits in batches. The ops step's expand
/// commits its triggers before its backfill, and its complete its scans
/// before its contract.
pub(crate) fn batched(m: &Migration) -> bool {
    match &m.step {
        Step::Component(c) => c.transaction == Transaction::Batches,
        Step::Ops(o) => o.phase.batched(),
        Step::Sql => false,
    }
}

/// The configuration a migration's step runs with: a component's
/// `[config]`, or what the ops step is told of its run.
pub(crate) fn config_of<'a>(m: &'a Migration, history: &str) -> std::borrow::Cow<'a, str> {
    match &m.step {
        Step::Sql => "{}".into(),
        Step::Component(c) => c.config.as_str().into(),
        Step::Ops(o) => serde_json::json!({
            "version": m.version.as_str(),
            "phase": o.phase.as_str(),
            "history": history,
            "in_flight": o.in_flight,
        })
        .to_string()
        .into(),
    }
}

/// The name a run's checkpoint is saved under: its direction, or
/// `complete` for a contract, which runs `up` too.
pub(crate) fn run_name(m: &Migration, direction: Direction) -> &'static str {
    match m.step.ops_phase() {
        Some(OpsPhase::Complete) => "complete",
        _ => direction_name(direction),
    }
}

pub(crate) fn direction_name(direction: Direction) -> &'static str {
    match direction {
        Direction::Up => "up",
        Direction::Down => "down",
    }
}

pub(crate) fn host_dialect(dialect: Dialect) -> waymark_host::Dialect {
    match dialect {
        Dialect::Postgres => waymark_host::Dialect::Postgres,
        Dialect::Mysql => waymark_host::Dialect::Mysql,
        Dialect::Sqlite => waymark_host::Dialect::Sqlite,
    }
}
