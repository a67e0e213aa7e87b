//! The state each step's store carries: its database handle, its limits,
//! and a WASI context that grants nothing.

use std::time::{Duration, Instant};

use wasmtime::ResourceLimiter;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::host::{Call, Dialect, Limits, StepEnv};

/// How much of a step's stderr is kept for error messages.
const STDERR_CAPACITY: usize = 16 * 1024;

pub(crate) struct HostState {
    /// `None` while planning: nothing may touch the database then.
    pub(crate) env: Option<Box<dyn StepEnv>>,
    pub(crate) dialect: Dialect,
    pub(crate) config: String,
    pub(crate) dry_run: bool,
    pub(crate) resume_from: Option<String>,
    pub(crate) max_rows: usize,
    /// Set when a call overstepped the step's permissions: the step fails
    /// with this message, whatever it returns.
    pub(crate) denied: Option<String>,
    pub(crate) step_name: String,
    pub(crate) limiter: MemoryLimiter,
    pub(crate) clock: GuestClock,
    pub(crate) stderr: MemoryOutputPipe,
    pub(crate) log: LogBudget,
    pub(crate) calls: CallBudget,
    wasi: WasiCtx,
    table: ResourceTable,
}

impl HostState {
    pub(crate) fn new(step_name: &str, call: &Call<'_>, env: Option<Box<dyn StepEnv>>, limits: &Limits) -> Self {
        let stderr = MemoryOutputPipe::new(STDERR_CAPACITY);
        // No preopened folders, no environment, no arguments, no stdin, no
        // network, no name lookup: WASI gives clocks and randomness only,
        // which language runtimes need to start.
        let wasi = WasiCtx::builder()
            .stderr(stderr.clone())
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .socket_addr_check(|_, _| Box::pin(async { false }))
            .build();
        HostState {
            env,
            dialect: call.dialect,
            config: call.config.to_owned(),
            dry_run: call.dry_run,
            resume_from: call.resume_from.map(str::to_owned),
            max_rows: limits.max_rows,
            denied: None,
            step_name: step_name.to_owned(),
            limiter: MemoryLimiter {
                limit_bytes: limits.memory_bytes,
                denied: false,
            },
            clock: GuestClock::new(limits.timeout),
            stderr,
            log: LogBudget {
                remaining: limits.log_bytes,
                truncated: false,
            },
            calls: CallBudget {
                limit: limits.max_calls,
                made: 0,
                exceeded: false,
            },
            wasi,
            table: ResourceTable::new(),
        }
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// Caps linear memory and remembers whether it had to refuse, so that the
/// trap that follows (an allocator's abort) is reported as what it is.
pub(crate) struct MemoryLimiter {
    pub(crate) limit_bytes: usize,
    pub(crate) denied: bool,
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        if desired > self.limit_bytes {
            self.denied = true;
            return Ok(false);
        }
        Ok(true)
    }

    fn table_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        Ok(desired <= 100_000)
    }
}

/// Measures the time a step spends running its own code.
///
/// Epochs tick in wall-clock time, but a step waiting on the database inside
/// a host call is not burning CPU, and a long `CREATE INDEX` must not count
/// against the step's limit. So the time spent in host calls is subtracted;
/// host calls themselves are bounded by the database's statement timeout.
pub(crate) struct GuestClock {
    started: Instant,
    in_host: Duration,
    pub(crate) limit: Duration,
    pub(crate) expired: bool,
}

impl GuestClock {
    fn new(limit: Duration) -> Self {
        GuestClock {
            started: Instant::now(),
            in_host: Duration::ZERO,
            limit,
            expired: false,
        }
    }

    pub(crate) fn add_host_time(&mut self, spent: Duration) {
        self.in_host += spent;
    }

    /// Called on every epoch tick that finds the step running wasm code.
    pub(crate) fn over_limit(&mut self) -> bool {
        let guest = self.started.elapsed().saturating_sub(self.in_host);
        self.expired = guest > self.limit;
        self.expired
    }
}

/// Bounds how much a step may log, so a runaway step cannot fill the disk.
pub(crate) struct LogBudget {
    remaining: usize,
    pub(crate) truncated: bool,
}

/// Whether a log message may be written.
pub(crate) enum Admit {
    Yes,
    /// The first message over budget: say once that the rest are dropped.
    FirstRefusal,
    No,
}

impl LogBudget {
    pub(crate) fn take(&mut self, len: usize) -> Admit {
        if self.truncated {
            return Admit::No;
        }
        if len > self.remaining {
            self.truncated = true;
            return Admit::FirstRefusal;
        }
        self.remaining -= len;
        Admit::Yes
    }
}

/// Bounds the number of database calls a step makes.
pub(crate) struct CallBudget {
    pub(crate) limit: u64,
    made: u64,
    pub(crate) exceeded: bool,
}

impl CallBudget {
    /// Counts one call; traps the step once the budget is spent.
    pub(crate) fn take(&mut self) -> wasmtime::Result<()> {
        self.made += 1;
        if self.made > self.limit {
            self.exceeded = true;
            return Err(wasmtime::format_err!(
                "step exceeded its limit of {} database calls",
                self.limit
            ));
        }
        Ok(())
    }
}
