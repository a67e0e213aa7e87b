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

// The WIT package is the documentation of these types; the obvious members
// (`value.null`, `column.name`) carry no comment there.
#[allow(missing_docs)]
pub(crate) mod bindings {
    wasmtime::component::bindgen!({
        world: "step-plugin",
        path: "../../wit",
        imports: {
            "waymark:plugin/database.execute": async | trappable,
            "waymark:plugin/database.query": async | trappable,
            "waymark:plugin/database.execute-script": async | trappable,
            "waymark:plugin/database.commit": async | trappable,
            "waymark:plugin/environment.pause": async | trappable,
            default: trappable,
        },
        exports: { default: async },
        additional_derives: [PartialEq],
    });
}

use bindings::waymark::plugin::{database, environment, log, types};
pub use types::{Action, Column, DatabaseError, Description, Dialect, Direction, Rows, Timestamp, Value};

/// How often the epoch advances, and so how finely CPU time is measured.
const TICK: Duration = Duration::from_millis(10);

/// A boxed future returned by [`StepEnv`].
pub type StepFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Why a database call did not succeed.
#[derive(Debug, Clone, PartialEq)]
pub enum CallError {
    /// The database (or the caller, for a call that cannot run here)
    /// reported an error; the step sees it and may handle it.
    Database(DatabaseError),
    /// The call oversteps the step's permissions. Nothing ran, and the step
    /// fails whatever it does next: the message names the permission.
    Denied(String),
}

impl From<DatabaseError> for CallError {
    fn from(e: DatabaseError) -> Self {
        CallError::Database(e)
    }
}

/// What a step reaches outside its sandbox: the database, bound to one
/// migration's transaction (or, for a migration that runs outside one, to
/// one connection), and the progress display. The caller implements it and
/// enforces the step's permissions; the host forwards the step's calls,
/// counts them and keeps their time off the step's CPU clock.
pub trait StepEnv: std::any::Any + Send {
    /// Runs one statement with `params` and returns the rows it affected.
    fn execute<'a>(&'a mut self, sql: &'a str, params: Vec<Value>) -> StepFuture<'a, Result<u64, CallError>>;

    /// Runs one statement with `params` and returns at most `max_rows` rows
    /// (more is an error).
    fn query<'a>(
        &'a mut self,
        sql: &'a str,
        params: Vec<Value>,
        max_rows: usize,
    ) -> StepFuture<'a, Result<Rows, CallError>> {
        let _ = (sql, params, max_rows);
        Box::pin(async { Err(CallError::Database(refusal("query is not available here"))) })
    }

    /// Whether the statements run inside a transaction.
    fn in_transaction(&self) -> bool;

    /// Runs several statements in one round trip, all or none (inside a
    /// savepoint); only inside a transaction.
    fn execute_script<'a>(&'a mut self, sql: &'a str) -> StepFuture<'a, Result<u64, CallError>> {
        let _ = sql;
        Box::pin(async { Err(CallError::Database(refusal("execute-script is not available here"))) })
    }

    /// Records `checkpoint` and commits the work done since the last commit
    /// point, for steps that commit in batches.
    fn commit<'a>(&'a mut self, checkpoint: &'a str) -> StepFuture<'a, Result<(), CallError>> {
        let _ = checkpoint;
        Box::pin(async {
            Err(CallError::Database(refusal(
                "commit points are only for steps declared transaction = \"batches\"",
            )))
        })
    }

    /// The step's progress report.
    fn progress(&mut self, done: u64, total: Option<u64>) {
        let _ = (done, total);
    }
}

/// What `inspect` found in a component.
#[derive(Debug, Clone)]
pub struct Inspection {
    /// SHA-256 of its bytes, in hex: what a `step.toml` pins.
    pub digest: String,
    /// Its size in bytes.
    pub size: usize,
    /// The `waymark:plugin` version whose `step` interface it exports.
    pub interface: Option<String>,
    /// The interfaces it imports.
    pub imports: Vec<String>,
    /// The interfaces it exports.
    pub exports: Vec<String>,
    /// What it says about itself, asked with an empty configuration.
    pub description: Result<Description, StepFailure>,
}

/// One call of a step's `up` or `down`: what it runs with.
#[derive(Debug, Clone, Copy)]
pub struct Call<'a> {
    /// Which way it runs.
    pub direction: Direction,
    /// The database's dialect.
    pub dialect: Dialect,
    /// The step's input (for SQL steps, the script).
    pub input: &'a str,
    /// The step's configuration, as JSON.
    pub config: &'a str,
    /// Whether whatever the step does will be rolled back.
    pub dry_run: bool,
    /// The checkpoint an interrupted run of this step left, when resuming.
    pub resume_from: Option<&'a str>,
}

impl<'a> Call<'a> {
    /// A call with no configuration, not a dry run, not resuming.
    pub fn new(direction: Direction, dialect: Dialect, input: &'a str) -> Self {
        Call {
            direction,
            dialect,
            input,
            config: "{}",
            dry_run: false,
            resume_from: None,
        }
    }
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
    /// Rows one query may return to a step.
    pub max_rows: usize,
    /// How long one statement of a plugin step may run in the database. The
    /// host cannot interrupt a step waiting in a host call, so the caller
    /// has the database enforce this; `None`: no bound.
    pub statement_timeout: Option<Duration>,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            memory_bytes: 64 * 1024 * 1024,
            timeout: Duration::from_secs(30),
            log_bytes: 1024 * 1024,
            max_calls: 1_000_000,
            max_rows: 10_000,
            statement_timeout: Some(Duration::from_secs(300)),
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
    ops: OnceLock<StepComponent>,
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
            ops: OnceLock::new(),
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

    /// The built-in expand/contract step, compiled on first use.
    pub fn ops_step(&self) -> Result<StepComponent, HostError> {
        if let Some(step) = self.ops.get() {
            return Ok(step.clone());
        }
        let step = self.load("ops", crate::OPS_STEP_WASM)?;
        Ok(self.ops.get_or_init(|| step).clone())
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

    /// What a component is: its digest, the interfaces it imports and
    /// exports, and, when it is a step, what it says about itself.
    pub async fn inspect(&self, name: &str, bytes: &[u8], dialect: Dialect) -> Result<Inspection, HostError> {
        let invalid = |e: wasmtime::Error| HostError::InvalidComponent {
            name: name.to_owned(),
            message: format!("{e:#}"),
        };
        let digest = cache::digest(bytes);
        let component = cache::load(&self.engine, bytes, &digest, self.cache_dir.as_deref()).map_err(invalid)?;
        let ty = component.component_type();
        let imports: Vec<String> = ty.imports(&self.engine).map(|(n, _)| n.to_owned()).collect();
        let exports: Vec<String> = ty.exports(&self.engine).map(|(n, _)| n.to_owned()).collect();
        let interface = exports
            .iter()
            .find_map(|e| e.strip_prefix("waymark:plugin/step@"))
            .map(|v| format!("waymark:plugin@{v}"));
        let step = self.load(name, bytes)?;
        let description = self.describe(&step, dialect, "{}").await;
        Ok(Inspection {
            digest,
            size: bytes.len(),
            interface,
            imports,
            exports,
            description,
        })
    }

    /// What the step says about itself, asked without database access.
    pub async fn describe(
        &self,
        step: &StepComponent,
        dialect: Dialect,
        config: &str,
    ) -> Result<Description, StepFailure> {
        let call = Call {
            config,
            ..Call::new(Direction::Up, dialect, "")
        };
        let mut store = self.store(step, &call, None, &self.limits);
        let result = async {
            let plugin = step.pre.instantiate_async(&mut store).await?;
            plugin.waymark_plugin_step().call_describe(&mut store).await
        }
        .await;
        let description = result.map_err(|e| trap_failure(&store, e))?;
        check_description(&description).map_err(StepFailure::InvalidOutput)?;
        Ok(description)
    }

    /// Asks the step what `call` would do, without database access.
    pub async fn plan(&self, step: &StepComponent, call: &Call<'_>) -> Result<Vec<Action>, StepFailure> {
        let mut store = self.store(step, call, None, &self.limits);
        let result = async {
            let plugin = step.pre.instantiate_async(&mut store).await?;
            plugin
                .waymark_plugin_step()
                .call_plan(&mut store, call.direction, call.input)
                .await
        }
        .await;
        match result {
            Ok(Ok(actions)) => Ok(actions),
            Ok(Err(e)) => Err(step_error(e)),
            Err(e) => Err(trap_failure(&store, e)),
        }
    }

    /// Runs the step's `up` or `down`, its calls going to `env`. Returns
    /// `env` in every case, so the caller can commit or roll back the
    /// transaction behind it.
    pub async fn run(
        &self,
        step: &StepComponent,
        call: &Call<'_>,
        env: Box<dyn StepEnv>,
    ) -> (Box<dyn StepEnv>, Result<(), StepFailure>) {
        self.run_limited(step, call, env, &self.limits).await
    }

    /// [`StepHost::run`] under `limits` instead of the host's defaults (a
    /// step that asks for less than the defaults gets less).
    pub async fn run_limited(
        &self,
        step: &StepComponent,
        call: &Call<'_>,
        env: Box<dyn StepEnv>,
        limits: &Limits,
    ) -> (Box<dyn StepEnv>, Result<(), StepFailure>) {
        let mut store = self.store(step, call, Some(env), limits);
        let result = async {
            let plugin = step.pre.instantiate_async(&mut store).await?;
            let exports = plugin.waymark_plugin_step();
            match call.direction {
                Direction::Up => exports.call_up(&mut store, call.input).await,
                Direction::Down => exports.call_down(&mut store, call.input).await,
            }
        }
        .await;
        let outcome = match result {
            // A step that swallowed a refusal still fails.
            _ if store.data().denied.is_some() => {
                Err(StepFailure::Denied(store.data().denied.clone().unwrap_or_default()))
            }
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(step_error(e)),
            Err(e) => Err(trap_failure(&store, e)),
        };
        let state = store.into_data();
        (state.env.expect("the environment stays in the store"), outcome)
    }

    fn store(
        &self,
        step: &StepComponent,
        call: &Call<'_>,
        env: Option<Box<dyn StepEnv>>,
        limits: &Limits,
    ) -> Store<HostState> {
        let state = HostState::new(step.name(), call, env, limits);
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

/// The longest message from a step that is passed on; a step cannot flood
/// the terminal or the history table through its error.
const MAX_MESSAGE: usize = 4096;

fn bounded(mut message: String) -> String {
    if message.len() > MAX_MESSAGE {
        let mut cut = MAX_MESSAGE;
        while !message.is_char_boundary(cut) {
            cut -= 1;
        }
        let dropped = message.len() - cut;
        message.truncate(cut);
        message.push_str(&format!("... ({dropped} more bytes)"));
    }
    message
}

fn step_error(e: types::StepError) -> StepFailure {
    match e {
        types::StepError::Statement(s) => StepFailure::Statement {
            line: s.line,
            code: s.error.code.map(bounded),
            message: bounded(s.error.message),
        },
        types::StepError::InvalidInput(i) => StepFailure::InvalidInput {
            line: i.line,
            message: bounded(i.message),
        },
        types::StepError::Other(message) => StepFailure::Other(bounded(message)),
    }
}

/// What a description must be for waymark to show it and rely on it.
fn check_description(d: &Description) -> Result<(), String> {
    let plain = |s: &str| !s.is_empty() && s.len() <= 64 && !s.chars().any(char::is_control);
    if !plain(&d.name) {
        return Err(format!(
            "the step's description has an invalid name {:?}: it must be 1 to 64 printable characters",
            bounded(d.name.clone())
        ));
    }
    if !plain(&d.version) {
        return Err(format!(
            "the step's description has an invalid version {:?}: it must be 1 to 64 printable characters",
            bounded(d.version.clone())
        ));
    }
    if d.summary.len() > MAX_MESSAGE {
        return Err(format!(
            "the step's summary is {} bytes long; at most {MAX_MESSAGE} are allowed",
            d.summary.len()
        ));
    }
    Ok(())
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

/// An error from the host itself, not from the database: nothing ran.
fn refusal(message: &str) -> DatabaseError {
    DatabaseError {
        code: None,
        message: message.to_owned(),
        position: None,
    }
}

/// One database call: refused while planning, counted against the call
/// budget, its time kept off the step's CPU clock.
macro_rules! database_call {
    ($state:ident, |$env:ident| $call:expr) => {{
        let Some($env) = $state.env.as_mut() else {
            return Ok(Err(refusal(
                "the database is not available while planning or describing",
            )));
        };
        $state.calls.take()?;
        let started = Instant::now();
        let result = $call.await;
        $state.clock.add_host_time(started.elapsed());
        $state.outcome(result)
    }};
}

impl types::Host for HostState {}

impl database::Host for HostState {
    fn current_dialect(&mut self) -> wasmtime::Result<Dialect> {
        Ok(self.dialect)
    }

    async fn execute(&mut self, sql: String, params: Vec<Value>) -> wasmtime::Result<Result<u64, DatabaseError>> {
        database_call!(self, |env| env.execute(&sql, params))
    }

    async fn query(&mut self, sql: String, params: Vec<Value>) -> wasmtime::Result<Result<Rows, DatabaseError>> {
        let max_rows = self.max_rows;
        database_call!(self, |env| env.query(&sql, params, max_rows))
    }

    async fn execute_script(&mut self, sql: String) -> wasmtime::Result<Result<u64, DatabaseError>> {
        if self.env.as_ref().is_some_and(|env| !env.in_transaction()) {
            return Ok(Err(refusal("execute-script runs only inside a transaction")));
        }
        database_call!(self, |env| env.execute_script(&sql))
    }

    fn in_transaction(&mut self) -> wasmtime::Result<bool> {
        Ok(self.env.as_ref().is_some_and(|env| env.in_transaction()))
    }

    async fn commit(&mut self, checkpoint: String) -> wasmtime::Result<Result<(), DatabaseError>> {
        if self.dry_run {
            // Nothing may be committed in a dry run; the step goes on as if
            // the commit point had passed.
            return Ok(Ok(()));
        }
        database_call!(self, |env| env.commit(&checkpoint))
    }
}

impl HostState {
    /// What the step sees of a call's result. A denial traps the step, so
    /// that it fails even if it would ignore the error.
    fn outcome<T>(&mut self, result: Result<T, CallError>) -> wasmtime::Result<Result<T, DatabaseError>> {
        match result {
            Ok(value) => Ok(Ok(value)),
            Err(CallError::Database(e)) => Ok(Err(e)),
            Err(CallError::Denied(message)) => {
                self.denied = Some(message.clone());
                Err(wasmtime::format_err!("{message}"))
            }
        }
    }
}

impl environment::Host for HostState {
    fn config(&mut self) -> wasmtime::Result<String> {
        Ok(self.config.clone())
    }

    fn dry_run(&mut self) -> wasmtime::Result<bool> {
        Ok(self.dry_run)
    }

    fn resume_from(&mut self) -> wasmtime::Result<Option<String>> {
        Ok(self.resume_from.clone())
    }

    async fn pause(&mut self, milliseconds: u32) -> wasmtime::Result<()> {
        self.calls.take()?;
        if self.dry_run || self.env.is_none() {
            return Ok(());
        }
        let wait = Duration::from_millis(milliseconds.min(60_000).into());
        tokio::time::sleep(wait).await;
        self.clock.add_host_time(wait);
        Ok(())
    }

    fn progress(&mut self, done: u64, total: Option<u64>) -> wasmtime::Result<()> {
        self.calls.take()?;
        if let Some(env) = self.env.as_mut() {
            env.progress(done, total);
        }
        Ok(())
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
