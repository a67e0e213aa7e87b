use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{Config, Engine, Store, Trap, UpdateDeadline};

use crate::cache;
use crate::error::{HostError, StepFailure};
use crate::sandbox::{Admit, HostState};

mod bindings {
    wasmtime::component::bindgen!({
        world: "step-plugin",
        path: "../../wit",
        imports: {
            "waymark:plugin/database.execute": async | trappable,
            "waymark:plugin/database.execute-script": async | trappable,
            default: trappable,
        },
        exports: { default: async },
    });
}

use bindings::waymark::plugin::{database, log, types};

/// How often the epoch advances, and so how finely CPU time is measured.
const TICK: Duration = Duration::from_millis(10);

/// The SQL dialect a step runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// PostgreSQL.
    Postgres,
    /// MySQL or MariaDB.
    Mysql,
    /// SQLite.
    Sqlite,
}

/// Which way a step runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Apply.
    Up,
    /// Revert.
    Down,
}

/// An error the database reported to a step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatabaseError {
    /// SQLSTATE, MySQL error number or SQLite result code.
    pub code: Option<String>,
    /// The database's message.
    pub message: String,
    /// 1-based character offset of the error in the statement, if known.
    pub position: Option<u32>,
}

/// A boxed future returned by [`StepDatabase`].
pub type StepFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The database as a step sees it: bound to one migration's transaction (or,
/// for a migration that runs outside one, to one connection). The caller
/// implements it; the host only forwards the step's calls.
pub trait StepDatabase: std::any::Any + Send {
    /// Runs one statement and returns the rows it affected.
    fn execute<'a>(&'a mut self, sql: &'a str) -> StepFuture<'a, Result<u64, DatabaseError>>;

    /// Whether the statements run inside a transaction.
    fn in_transaction(&self) -> bool;

    /// Runs several statements in one round trip, all or none (inside a
    /// savepoint); only inside a transaction.
    fn execute_script<'a>(&'a mut self, sql: &'a str) -> StepFuture<'a, Result<u64, DatabaseError>>;
}

/// One action from a step's plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Action {
    /// 1-based line of the step's input, 0 if none.
    pub line: u32,
    /// What would run.
    pub text: String,
}

/// The limits each step runs under.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Linear memory cap, in bytes.
    pub memory_bytes: usize,
    /// CPU time a step may spend in its own code (time waiting on the
    /// database does not count).
    pub timeout: Duration,
    /// Bytes of log messages a step may write; beyond this they are dropped.
    pub log_bytes: usize,
    /// Database calls a step may make. Time in the database does not count
    /// against `timeout`, so without this bound a step looping over cheap
    /// calls would run for ever.
    pub max_calls: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            memory_bytes: 64 * 1024 * 1024,
            timeout: Duration::from_secs(30),
            log_bytes: 1024 * 1024,
            max_calls: 1_000_000,
        }
    }
}

/// A compiled, pre-instantiated step component. Cheap to clone.
#[derive(Clone)]
pub struct StepComponent {
    name: Arc<str>,
    digest: Arc<str>,
    pre: bindings::StepPluginPre<HostState>,
}

impl std::fmt::Debug for StepComponent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StepComponent")
            .field("name", &self.name)
            .field("digest", &self.digest)
            .finish()
    }
}

impl StepComponent {
    /// The name the component was loaded under.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// SHA-256 of the component's bytes, in hex.
    pub fn digest(&self) -> &str {
        &self.digest
    }
}

/// Compiles and runs step components.
///
/// Follows wasmtime's advice for many short calls: one engine, components
/// compiled once (and cached on disk), pre-instantiated, and a fresh store
/// for every step, so nothing one step does can be seen by the next.
pub struct StepHost {
    engine: Engine,
    linker: Linker<HostState>,
    limits: Limits,
    cache_dir: Option<PathBuf>,
    sql: OnceLock<StepComponent>,
    ticker: Arc<AtomicBool>,
}

impl std::fmt::Debug for StepHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StepHost")
            .field("limits", &self.limits)
            .field("cache_dir", &self.cache_dir)
            .finish()
    }
}

impl Drop for StepHost {
    fn drop(&mut self) {
        self.ticker.store(true, Ordering::Relaxed);
    }
}

impl StepHost {
    /// A host whose steps run under `limits`, caching compiled components in
    /// the default cache folder.
    pub fn new(limits: Limits) -> Result<Self, HostError> {
        Self::with_cache_dir(limits, cache::default_dir())
    }

    /// A host caching compiled components in `cache_dir` (`None`: no cache).
    pub fn with_cache_dir(limits: Limits, cache_dir: Option<PathBuf>) -> Result<Self, HostError> {
        let mut config = Config::new();
        config.epoch_interruption(true);
        config.wasm_component_model(true);
        let engine = Engine::new(&config).map_err(|e| HostError::Engine(e.to_string()))?;

        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(|e| HostError::Engine(e.to_string()))?;
        bindings::StepPlugin::add_to_linker::<_, HasSelf<HostState>>(&mut linker, |state| state)
            .map_err(|e| HostError::Engine(e.to_string()))?;

        // The epoch advances on its own thread so that a step spinning in a
        // loop is interrupted even when every runtime worker is busy.
        let stop = Arc::new(AtomicBool::new(false));
        let weak = engine.weak();
        let flag = stop.clone();
        std::thread::Builder::new()
            .name("waymark-epoch".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(TICK);
                    match weak.upgrade() {
                        Some(engine) => engine.increment_epoch(),
                        None => break,
                    }
                }
            })
            .map_err(|e| HostError::Engine(e.to_string()))?;

        Ok(StepHost {
            engine,
            linker,
            limits,
            cache_dir,
            sql: OnceLock::new(),
            ticker: stop,
        })
    }

    /// The limits steps run under.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// The built-in SQL step, compiled on first use.
    pub fn sql_step(&self) -> Result<StepComponent, HostError> {
        if let Some(step) = self.sql.get() {
            return Ok(step.clone());
        }
        let step = self.load("sql", SQL_STEP_BYTES)?;
        Ok(self.sql.get_or_init(|| step).clone())
    }

    /// Compiles (or loads from the cache) and pre-instantiates a component.
    pub fn load(&self, name: &str, bytes: &[u8]) -> Result<StepComponent, HostError> {
        let invalid = |e: wasmtime::Error| HostError::InvalidComponent {
            name: name.to_owned(),
            message: format!("{e:#}"),
        };
        let digest = cache::digest(bytes);
        let component: Component =
            cache::load(&self.engine, bytes, &digest, self.cache_dir.as_deref()).map_err(invalid)?;
        let pre = self.linker.instantiate_pre(&component).map_err(invalid)?;
        let pre = bindings::StepPluginPre::new(pre).map_err(invalid)?;
        Ok(StepComponent {
            name: name.into(),
            digest: digest.into(),
            pre,
        })
    }

    /// Asks the step what it would do, without database access.
    pub async fn plan(
        &self,
        step: &StepComponent,
        direction: Direction,
        dialect: Dialect,
        input: &str,
    ) -> Result<Vec<Action>, StepFailure> {
        let mut store = self.store(step, dialect, None, &self.limits);
        let result = async {
            let plugin = step.pre.instantiate_async(&mut store).await?;
            let exports = plugin.waymark_plugin_step();
            match direction {
                Direction::Up => exports.call_plan_up(&mut store, input).await,
                Direction::Down => exports.call_plan_down(&mut store, input).await,
            }
        }
        .await;
        match result {
            Ok(Ok(actions)) => Ok(actions
                .into_iter()
                .map(|a| Action {
                    line: a.line,
                    text: a.text,
                })
                .collect()),
            Ok(Err(e)) => Err(step_error(e)),
            Err(e) => Err(trap_failure(&store, e)),
        }
    }

    /// Runs the step's `up` or `down` with `input`, its database calls going
    /// to `db`. Returns `db` in every case, so the caller can commit or roll
    /// back the transaction behind it.
    pub async fn run(
        &self,
        step: &StepComponent,
        direction: Direction,
        dialect: Dialect,
        input: &str,
        db: Box<dyn StepDatabase>,
    ) -> (Box<dyn StepDatabase>, Result<(), StepFailure>) {
        self.run_limited(step, direction, dialect, input, db, &self.limits)
            .await
    }

    /// [`StepHost::run`] under `limits` instead of the host's defaults (a
    /// step that asks for less than the defaults gets less).
    pub async fn run_limited(
        &self,
        step: &StepComponent,
        direction: Direction,
        dialect: Dialect,
        input: &str,
        db: Box<dyn StepDatabase>,
        limits: &Limits,
    ) -> (Box<dyn StepDatabase>, Result<(), StepFailure>) {
        let mut store = self.store(step, dialect, Some(db), limits);
        let result = async {
            let plugin = step.pre.instantiate_async(&mut store).await?;
            let exports = plugin.waymark_plugin_step();
            match direction {
                Direction::Up => exports.call_up(&mut store, input).await,
                Direction::Down => exports.call_down(&mut store, input).await,
            }
        }
        .await;
        let outcome = match result {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(step_error(e)),
            Err(e) => Err(trap_failure(&store, e)),
        };
        let state = store.into_data();
        (state.db.expect("the database handle stays in the store"), outcome)
    }

    fn store(
        &self,
        step: &StepComponent,
        dialect: Dialect,
        db: Option<Box<dyn StepDatabase>>,
        limits: &Limits,
    ) -> Store<HostState> {
        let state = HostState::new(step.name(), dialect, db, limits);
        let mut store = Store::new(&self.engine, state);
        store.limiter(|state| &mut state.limiter);
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(|mut ctx| {
            if ctx.data_mut().clock.over_limit() {
                return Ok(UpdateDeadline::Interrupt);
            }
            // Yield at every tick so a busy step shares the runtime's thread.
            Ok(UpdateDeadline::Yield(1))
        });
        store
    }
}

const SQL_STEP_BYTES: &[u8] = crate::SQL_STEP_WASM;

fn step_error(e: types::StepError) -> StepFailure {
    match e {
        types::StepError::Statement(s) => StepFailure::Statement {
            line: s.line,
            code: s.error.code,
            message: s.error.message,
        },
        types::StepError::InvalidInput(i) => StepFailure::InvalidInput {
            line: i.line,
            message: i.message,
        },
        types::StepError::Other(message) => StepFailure::Other(message),
    }
}

fn trap_failure(store: &Store<HostState>, error: wasmtime::Error) -> StepFailure {
    let state = store.data();
    if state.clock.expired || matches!(error.downcast_ref::<Trap>(), Some(Trap::Interrupt)) {
        return StepFailure::Timeout {
            limit: state.clock.limit,
        };
    }
    if state.calls.exceeded {
        return StepFailure::CallLimit {
            limit: state.calls.limit,
        };
    }
    if state.limiter.denied {
        return StepFailure::MemoryLimit {
            limit_bytes: state.limiter.limit_bytes,
        };
    }
    let stderr = String::from_utf8_lossy(&state.stderr.contents()).into_owned();
    match error.downcast_ref::<Trap>() {
        Some(trap) => StepFailure::Trap {
            message: trap.to_string(),
            stderr,
        },
        None => StepFailure::Trap {
            message: format!("{error:#}"),
            stderr,
        },
    }
}

fn wit_error(e: DatabaseError) -> types::DatabaseError {
    types::DatabaseError {
        code: e.code,
        message: e.message,
        position: e.position,
    }
}

/// An error from the host itself, not from the database: nothing ran.
fn refusal(message: &str) -> types::DatabaseError {
    types::DatabaseError {
        code: None,
        message: message.to_owned(),
        position: None,
    }
}

impl types::Host for HostState {}

impl database::Host for HostState {
    fn current_dialect(&mut self) -> wasmtime::Result<types::Dialect> {
        Ok(match self.dialect {
            Dialect::Postgres => types::Dialect::Postgres,
            Dialect::Mysql => types::Dialect::Mysql,
            Dialect::Sqlite => types::Dialect::Sqlite,
        })
    }

    async fn execute(&mut self, sql: String) -> wasmtime::Result<Result<u64, types::DatabaseError>> {
        self.database_call(&sql, false).await
    }

    fn in_transaction(&mut self) -> wasmtime::Result<bool> {
        Ok(self.db.as_ref().is_some_and(|db| db.in_transaction()))
    }

    async fn execute_script(&mut self, sql: String) -> wasmtime::Result<Result<u64, types::DatabaseError>> {
        self.database_call(&sql, true).await
    }
}

impl HostState {
    /// One `execute` or `execute-script`: refused while planning (and, for a
    /// script, outside a transaction), counted against the call budget, and
    /// its time kept off the step's CPU clock.
    async fn database_call(&mut self, sql: &str, script: bool) -> wasmtime::Result<Result<u64, types::DatabaseError>> {
        let Some(db) = self.db.as_mut() else {
            return Ok(Err(refusal("the database is not available while planning")));
        };
        if script && !db.in_transaction() {
            return Ok(Err(refusal("execute-script runs only inside a transaction")));
        }
        self.calls.take()?;
        let started = Instant::now();
        let result = if script {
            db.execute_script(sql).await
        } else {
            db.execute(sql).await
        };
        self.clock.add_host_time(started.elapsed());
        Ok(result.map_err(wit_error))
    }
}

impl log::Host for HostState {
    fn log(&mut self, level: log::Level, message: String) -> wasmtime::Result<()> {
        let step = &self.step_name;
        match self.log.take(message.len()) {
            Admit::Yes => {}
            Admit::FirstRefusal => {
                tracing::warn!(target: "waymark::step", step, "step exceeded its log budget; further messages are dropped");
                return Ok(());
            }
            Admit::No => return Ok(()),
        }
        match level {
            log::Level::Trace => tracing::trace!(target: "waymark::step", step, "{message}"),
            log::Level::Debug => tracing::debug!(target: "waymark::step", step, "{message}"),
            log::Level::Info => tracing::info!(target: "waymark::step", step, "{message}"),
            log::Level::Warn => tracing::warn!(target: "waymark::step", step, "{message}"),
            log::Level::Error => tracing::error!(target: "waymark::step", step, "{message}"),
        }
        Ok(())
    }
}
