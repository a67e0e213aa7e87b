//! The `waymark` command. The only crate that knows clap, the config file
//! and output formats. Migration commands go through `waymark-core`;
//! backup and cutover commands through `waymark-backup` and
//! `waymark-cutover`, whose workflows they are.

#![forbid(unsafe_code)]

mod cli;
mod config;
mod events;
mod fleet;
mod json;
mod manual;
mod metrics;
mod output;
mod rehearse;
mod report;
mod sarif;

use std::io::IsTerminal;
use std::process::ExitCode;

use anyhow::anyhow;
use clap::Parser;
use waymark_core::{
    ConnectOptions, DownTarget, Engine, EngineOptions, Error, Event, HistoryTable, Limits, PluginTestOptions,
    RepairOptions, Sdk, UpOptions, Version, discover, redact, scaffold,
};

use waymark_backup::BackupError;
use waymark_cutover::CutoverError;

use crate::cli::{BackupCommand, Cli, Command, CutoverCommand, DatabaseCommand, PluginCommand};
use crate::config::{ConfigError, Settings};
use crate::output::Output;

/// Exit codes, as documented in the README.
mod exit {
    pub(crate) const FAILED: u8 = 1;
    pub(crate) const USAGE: u8 = 2;
    pub(crate) const DIFFERENCES: u8 = 3;
    pub(crate) const LOCK: u8 = 4;
    pub(crate) const REFUSED: u8 = 5;
    pub(crate) const LINT: u8 = 6;
    pub(crate) const VERDICT: u8 = 7;
}

fn main() -> ExitCode {
    waymark_core::arm_crash_points();
    let cli = Cli::parse();
    init_tracing(&cli);
    let mut out = Output::new(cli.global.json, cli.global.quiet);
    if let Some(path) = &cli.global.events {
        match events::EventLog::open(path) {
            Ok(log) => out.events = Some(log),
            Err(e) => {
                out.error(&e.into(), None);
                return ExitCode::from(exit::USAGE);
            }
        }
    }
    // Neither reads the configuration: a broken waymark.toml must not
    // keep a shell from completing the command that would fix it.
    match &cli.command {
        Command::Completions { shell } => {
            manual::completions(*shell);
            return ExitCode::SUCCESS;
        }
        Command::Man { out: dir } => {
            return match manual::man(dir.as_deref()) {
                Ok(written) => {
                    if dir.is_some() {
                        out.created(&written);
                    }
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    out.error(&e, None);
                    ExitCode::from(exit::FAILED)
                }
            };
        }
        _ => {}
    }
    let result = config::load(&cli.global).and_then(|settings| {
        let runtime =
            runtime_for(&cli.command, &settings).map_err(|e| anyhow!("could not start the async runtime: {e}"))?;
        runtime.block_on(run(&cli, &settings, &out))
    });
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            let code = exit_code(&e);
            out.error(&e, hint(&e).as_deref());
            ExitCode::from(code)
        }
    }
}

/// The async runtime a command needs. A migration waits on one connection
/// at a time, and a runtime on this thread reads each reply itself instead
/// of being woken by a worker thread that did: a quarter less CPU per
/// migration on the crates.io corpus. Backups and cutovers load, read back
/// and digest on both cores.
fn runtime_for(command: &Command, settings: &Settings) -> std::io::Result<tokio::runtime::Runtime> {
    let parallel = match command {
        Command::Backup(_) | Command::Cutover(_) | Command::Rehearse(_) | Command::Fleet(_) => true,
        Command::Up(args) => args.up.backup || settings.backup_before_up,
        _ => false,
    };
    if parallel {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_current_thread().enable_all().build()
    }
}

fn init_tracing(cli: &Cli) {
    let level = match (cli.global.quiet, cli.global.verbose) {
        (true, _) => "error",
        (false, 0) => "warn",
        (false, 1) => "info",
        (false, 2) => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("WAYMARK_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(format!("{level},sqlx=error")));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none())
        .with_target(false)
        .without_time()
        .init();
}

/// What the user can do about `e`, from whichever crate's error it is.
fn hint(e: &anyhow::Error) -> Option<String> {
    if let Some(e) = e.downcast_ref::<Error>() {
        return e.hint();
    }
    let db = match (e.downcast_ref::<BackupError>(), e.downcast_ref::<CutoverError>()) {
        (Some(BackupError::Db(db)), _)
        | (_, Some(CutoverError::Db(db) | CutoverError::Backup(BackupError::Db(db)))) => Some(db),
        _ => e.downcast_ref::<waymark_core::DbError>(),
    };
    db.and_then(waymark_core::DbError::hint)
}

fn exit_code(e: &anyhow::Error) -> u8 {
    if e.downcast_ref::<ConfigError>().is_some() || e.downcast_ref::<waymark_fleet::FleetError>().is_some() {
        return exit::USAGE;
    }
    if let Some(e) = e.downcast_ref::<BackupError>() {
        return backup_code(e);
    }
    if let Some(e) = e.downcast_ref::<waymark_load::LoadError>() {
        return match e {
            waymark_load::LoadError::Connect { .. } => exit::FAILED,
            waymark_load::LoadError::Scratch { .. } | waymark_load::LoadError::Usage(_) => exit::USAGE,
        };
    }
    if let Some(e) = e.downcast_ref::<CutoverError>() {
        return match e {
            CutoverError::Refused { .. } => exit::REFUSED,
            CutoverError::Busy { .. } => exit::LOCK,
            CutoverError::Usage(_) => exit::USAGE,
            CutoverError::Backup(e) => backup_code(e),
            CutoverError::Db(e) => db_code(e),
            _ => exit::FAILED,
        };
    }
    match e.downcast_ref::<Error>() {
        Some(Error::Usage(_) | Error::Source(_)) => exit::USAGE,
        Some(Error::Backup(e)) => backup_code(e),
        Some(Error::Drift { .. } | Error::StalePlan { .. }) => exit::DIFFERENCES,
        Some(Error::Lint { .. }) => exit::LINT,
        Some(Error::Db(e)) => db_code(e),
        _ => exit::FAILED,
    }
}

/// A backup that does not verify is a difference, not a failure to run.
fn backup_code(e: &BackupError) -> u8 {
    match e {
        BackupError::DoesNotVerify { .. }
        | BackupError::Mismatch { .. }
        | BackupError::Manifest { .. }
        | BackupError::Incomplete { .. } => exit::DIFFERENCES,
        _ => exit::FAILED,
    }
}

fn db_code(e: &waymark_core::DbError) -> u8 {
    match e {
        waymark_core::DbError::LockTimeout { .. } => exit::LOCK,
        waymark_core::DbError::InvalidUrl { .. } | waymark_core::DbError::Config(_) => exit::USAGE,
        _ => exit::FAILED,
    }
}

fn version(raw: &str, flag: &str) -> anyhow::Result<Version> {
    Version::parse(raw).map_err(|e| Error::Usage(format!("{flag}: {e}")).into())
}

async fn run(cli: &Cli, settings: &Settings, out: &Output) -> anyhow::Result<u8> {
    if let Command::New {
        name,
        op,
        version: chosen,
    } = &cli.command
    {
        let chosen = chosen.as_deref().map(|v| version(v, "--version")).transpose()?;
        let paths = scaffold(
            &settings.migrations,
            name,
            settings.layout,
            op.as_deref(),
            chosen.as_ref(),
        )
        .map_err(Error::from)?;
        out.created(&paths);
        return Ok(0);
    }
    if let Command::Plugin(command) = &cli.command {
        return plugin(command, settings, out).await;
    }
    // No backup command reads the migrations: a database can be backed up
    // from a folder that has none.
    if let Command::Backup(command) = &cli.command {
        return backup(command, settings, out).await;
    }
    if let Command::Cutover(command) = &cli.command {
        return cutover(command, settings, out).await;
    }
    if let Command::Database(command) = &cli.command {
        return database(command, settings, out).await;
    }
    if let Command::Lint { rules: true, .. } = &cli.command {
        out.rules(&settings.severities);
        return Ok(0);
    }
    let set = discover(&settings.migrations, settings.layout).map_err(Error::from)?;
    out.ignored(&set);
    if let Command::Lint { versions, format, .. } = &cli.command {
        return lint(&set, versions, settings, out, *format).await;
    }
    if let Command::Rehearse(args) = &cli.command {
        return rehearse::rehearse(args, settings, &set, out).await;
    }
    if let Command::Fleet(command) = &cli.command {
        return fleet::fleet(command, settings, &set, out).await;
    }
    let mut engine = connect(settings, writes(&cli.command)).await?;
    if let Some(progress) = out.step_progress() {
        engine.on_progress(progress);
    }
    match &out.events {
        Some(log) => {
            engine.on_lock_retry(log.lock_retries(engine.url(), Some(out.lock_retries())));
            engine.on_statement(log.statements(engine.url()));
        }
        None => engine.on_lock_retry(out.lock_retries()),
    }
    tracing::info!("database {} ({})", engine.url(), engine.dialect().name());
    let result = dispatch(cli, settings, out, &engine, &set).await;
    engine.close().await;
    result
}

/// `waymark lint`: every migration planned as on an empty database of the
/// URL's dialect, and what the rules say of it.
async fn lint(
    set: &waymark_core::MigrationSet,
    versions: &[String],
    settings: &Settings,
    out: &Output,
    format: cli::LintFormat,
) -> anyhow::Result<u8> {
    let dialect = waymark_core::Dialect::of_url(&settings.database_url).ok_or_else(|| {
        Error::Usage(format!(
            "{}: the dialect to lint for comes from the database URL's scheme (postgres://, mysql://, sqlite:)",
            redact(&settings.database_url)
        ))
    })?;
    let wanted: Vec<Version> = versions
        .iter()
        .map(|v| version(v, "VERSION"))
        .collect::<Result<_, _>>()?;
    for v in &wanted {
        if !set.migrations.iter().any(|m| &m.version == v) {
            return Err(Error::Usage(format!("no migration has version {v}")).into());
        }
    }
    let mut plan = waymark_core::lint(
        set,
        dialect,
        limits(settings),
        settings.locks.timeout.is_some(),
        &settings.severities,
    )
    .await?;
    if !wanted.is_empty() {
        plan.migrations.retain(|p| wanted.contains(&p.migration.version));
    }
    let refused = out.lint(&plan, format, &settings.severities);
    Ok(if refused { exit::LINT } else { 0 })
}

async fn plugin(command: &PluginCommand, settings: &Settings, out: &Output) -> anyhow::Result<u8> {
    match command {
        PluginCommand::New { name, dir, sdk_path } => {
            let sdk = sdk_path.clone().map_or(Sdk::Vendored, Sdk::Path);
            let paths = waymark_core::scaffold_plugin(dir, name, &sdk)?;
            out.created(&paths);
            let root = dir.join(name);
            out.note(&format!(
                "next: cargo build --release --target wasm32-wasip2 --manifest-path {}, then waymark plugin test {}",
                root.join("Cargo.toml").display(),
                root.join("example").display()
            ));
            Ok(0)
        }
        PluginCommand::Inspect { path } => {
            let inspection = waymark_core::inspect(path, limits(settings)).await?;
            out.inspection(path, &inspection);
            Ok(if inspection.description.is_ok() && inspection.interface.is_some() {
                0
            } else {
                exit::FAILED
            })
        }
        PluginCommand::Test {
            path,
            scratch_url,
            setup,
        } => {
            let report = waymark_core::test_plugin(&PluginTestOptions {
                path: path.clone(),
                url: scratch_url.clone(),
                setup: setup.clone(),
                limits: limits(settings),
            })
            .await?;
            out.plugin_test(&report);
            Ok(if report.problems.is_empty() { 0 } else { exit::FAILED })
        }
    }
}

fn backup_options(
    settings: &Settings,
    tables: Option<Vec<String>>,
    out: Option<std::path::PathBuf>,
) -> waymark_backup::CreateOptions {
    waymark_backup::CreateOptions {
        out: out.unwrap_or_else(|| settings.backup_dir.clone()),
        tables,
        url: settings.database_url.clone(),
        chunk_bytes: settings.chunk_bytes,
        level: 3,
        snapshot: None,
        pages: false,
        jobs: settings.backup_jobs,
    }
}

/// The backup commands: none reads the migrations, and only `create`
/// connects to the migrated database.
async fn backup(command: &BackupCommand, settings: &Settings, out: &Output) -> anyhow::Result<u8> {
    match command {
        BackupCommand::Verify { dir, deep } => {
            let (manifest, report) = waymark_backup::verify(dir, *deep)?;
            out.backup_verified(dir, &manifest, &report, *deep);
            Ok(if report.problems.is_empty() {
                0
            } else {
                exit::DIFFERENCES
            })
        }
        BackupCommand::List { out: dir } => {
            let dir = dir.clone().unwrap_or_else(|| settings.backup_dir.clone());
            let sets = waymark_backup::list(&dir)?;
            out.backup_list(&dir, &sets);
            Ok(0)
        }
        BackupCommand::Restore { dir, to, verify } => {
            let target = connect_options(settings, to);
            let mut progress = out.backup_progress();
            let report = waymark_backup::restore_to(dir, &target, (*verify).into(), &mut *progress).await?;
            out.backup_restored(&report, &redact(to));
            Ok(0)
        }
        BackupCommand::Create {
            tables,
            out: dir,
            estimate,
            pages,
            jobs,
        } => {
            let engine = connect(settings, false).await?;
            let defaults = backup_options(settings, tables.clone(), dir.clone());
            let options = waymark_backup::CreateOptions {
                pages: *pages,
                jobs: jobs.or(defaults.jobs),
                ..defaults
            };
            let result = if *estimate {
                engine
                    .backup_estimate(&options)
                    .await
                    .map(|estimate| out.backup_estimate(&options.out, &estimate))
            } else {
                let mut progress = out.backup_progress();
                engine
                    .backup(&options, &mut *progress)
                    .await
                    .map(|(dir, manifest)| out.backup_created(&dir, &manifest))
            };
            engine.close().await;
            result?;
            Ok(0)
        }
    }
}

/// `database create|drop`: needs no migrations folder.
async fn database(command: &DatabaseCommand, settings: &Settings, out: &Output) -> anyhow::Result<u8> {
    let options = connect_options(settings, &settings.database_url);
    let url = redact(&settings.database_url);
    let change = match command {
        DatabaseCommand::Create => waymark_core::create_database(&options).await?,
        DatabaseCommand::Drop { yes: false } => {
            return Err(Error::Usage(format!(
                "`database drop` drops the database {url} names and everything in it; run it again with --yes to \
                 drop it"
            ))
            .into());
        }
        DatabaseCommand::Drop { yes: true } => waymark_core::drop_database(&options).await?,
    };
    out.database(matches!(command, DatabaseCommand::Create), &change, &url);
    Ok(0)
}

/// How waymark connects to `url` for a backup's restore or a cutover.
fn connect_options(settings: &Settings, url: &str) -> ConnectOptions {
    ConnectOptions {
        url: url.to_owned(),
        init_sql: settings.init_sql.clone(),
        history: HistoryTable {
            name: settings.history_table.clone(),
            schema: settings.history_schema.clone(),
        },
        lock_timeout: settings.lock_timeout,
        lock_wait: None,
        connect_timeout: settings.connect_timeout,
        create: true,
    }
}

async fn cutover(command: &CutoverCommand, settings: &Settings, out: &Output) -> anyhow::Result<u8> {
    let connect = |url: &str| connect_options(settings, url);
    match command {
        CutoverCommand::Verify {
            source,
            target,
            range_rows,
            state,
        } => {
            let options = waymark_cutover::CompareOptions {
                range_rows: *range_rows,
                ..Default::default()
            };
            let offline = source.is_some();
            let (report, source, target) = match (source, target) {
                (Some(source), Some(target)) => (
                    waymark_cutover::compare_databases(&connect(source), &connect(target), &options).await?,
                    redact(source),
                    redact(target),
                ),
                _ => {
                    let recorded = waymark_cutover::State::load(&state.path)?;
                    (
                        waymark_cutover::compare_online(&state.path, &options).await?,
                        redact(&recorded.source),
                        redact(&recorded.target),
                    )
                }
            };
            out.compared(&report, &source, &target, offline);
            Ok(if report.matches() { 0 } else { exit::DIFFERENCES })
        }
        CutoverCommand::Prepare {
            source,
            target,
            from_backup,
            pgbouncer,
            pgbouncer_ini,
            pgbouncer_database,
            route_command,
            seed,
            state,
        } => {
            let pgbouncer = match (pgbouncer, pgbouncer_ini, pgbouncer_database) {
                (Some(admin), Some(ini), Some(database)) => Some(waymark_cutover::PgBouncer {
                    admin: admin.clone(),
                    ini: std::path::absolute(ini).unwrap_or_else(|_| ini.clone()),
                    database: database.clone(),
                }),
                _ => None,
            };
            let options = waymark_cutover::PrepareOptions {
                source: connect(source),
                target: connect(target),
                from_backup: from_backup.clone(),
                backup: backup_options(settings, None, None),
                pgbouncer,
                route: route_command.clone(),
                seed: *seed,
                state: waymark_cutover::state_path(&state.path),
            };
            let prepared =
                waymark_cutover::prepare(&options, &mut *out.backup_progress(), &mut *out.sync_progress()).await?;
            out.cutover_prepared(&prepared);
            Ok(0)
        }
        CutoverCommand::Status { state, limits } => {
            let status = waymark_cutover::status(&state.path, &cutover_limits(limits)).await?;
            out.cutover_status(&status);
            Ok(if status.blocked() { exit::REFUSED } else { 0 })
        }
        CutoverCommand::Switch(args) | CutoverCommand::Rollback(args) => {
            let to = match command {
                CutoverCommand::Switch(_) => waymark_cutover::Side::Target,
                _ => waymark_cutover::Side::Source,
            };
            let path = waymark_cutover::state_path(&args.state.path);
            let options = waymark_cutover::SwitchOptions {
                limits: cutover_limits(&args.limits),
                deadline: args.deadline,
                final_check: !args.no_final_check,
                // The tests turn the guard off to drive the recovery that a
                // re-run does.
                guard: match std::env::var_os("WAYMARK_CUTOVER_NO_GUARD") {
                    Some(_) => None,
                    None => Some(Box::new(start_guard)),
                },
            };
            let report = waymark_cutover::switch(&path, to, &options).await?;
            out.switched(&report);
            Ok(0)
        }
        CutoverCommand::Complete { state } => {
            let live = waymark_cutover::complete(&state.path).await?;
            out.cutover_completed(live);
            Ok(0)
        }
        CutoverCommand::Guard { state } => {
            if let Some(done) = waymark_cutover::guard(&state.path).await? {
                tracing::warn!("the runner of the switch stopped; its switch was {done}");
            }
            Ok(0)
        }
    }
}

fn cutover_limits(args: &cli::LimitArgs) -> waymark_cutover::Limits {
    waymark_cutover::Limits {
        max_lag_bytes: args.max_lag_bytes,
        max_transaction: args.max_transaction,
    }
}

/// Starts `waymark cutover guard` for the state file at `path`, in a
/// process group of its own so that whatever stops this runner does not
/// stop it too. It logs beside the state file.
fn start_guard(path: &std::path::Path) -> std::io::Result<()> {
    use std::os::unix::process::CommandExt;
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path.with_extension("guard.log"))?;
    std::process::Command::new(std::env::current_exe()?)
        .args(["cutover", "guard", "--state"])
        .arg(path)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(log)
        .process_group(0)
        .spawn()
        .map(drop)
}

/// The step limits the operator set: the ceiling every step runs under.
fn limits(settings: &Settings) -> Limits {
    Limits {
        memory_bytes: settings.step_memory_mib * 1024 * 1024,
        timeout: settings.step_timeout,
        statement_timeout: Some(settings.step_statement_timeout),
        max_calls: settings.step_max_calls,
        max_rows: settings.step_max_rows,
        ..Limits::default()
    }
}

/// Whether a command writes, and so may create the SQLite file it is
/// pointed at: one that only reads (`status`, `plan`, `verify`) refuses a
/// file that is not there rather than leave an empty one behind.
fn writes(command: &Command) -> bool {
    matches!(
        command,
        Command::Up(_)
            | Command::Down(_)
            | Command::Redo
            | Command::Complete { .. }
            | Command::Baseline { .. }
            | Command::Repair(_)
    )
}

/// The engine on the configured database; `create` as [`writes`] says.
async fn connect(settings: &Settings, create: bool) -> anyhow::Result<Engine> {
    let options = engine_options(settings, create);
    tracing::debug!("connecting to {}", redact(&settings.database_url));
    Ok(Engine::connect(&options).await?)
}

/// How the engine connects to the configured database and runs its steps.
fn engine_options(settings: &Settings, create: bool) -> EngineOptions {
    EngineOptions {
        connect: ConnectOptions {
            url: settings.database_url.clone(),
            init_sql: settings.init_sql.clone(),
            history: HistoryTable {
                name: settings.history_table.clone(),
                schema: settings.history_schema.clone(),
            },
            lock_timeout: settings.lock_timeout,
            lock_wait: settings.locks.timeout,
            connect_timeout: settings.connect_timeout,
            create,
        },
        limits: limits(settings),
        cache_dir: None,
        preimages: settings.preimages,
        locks: settings.locks.clone(),
        small_table_rows: settings.small_table_rows,
        severities: settings.severities.clone(),
    }
}

async fn dispatch(
    cli: &Cli,
    settings: &Settings,
    out: &Output,
    engine: &Engine,
    set: &waymark_core::MigrationSet,
) -> anyhow::Result<u8> {
    if writes(&cli.command) {
        out.show_running();
    }
    let mut progress = |event: Event<'_>| out.progress(&event);
    match &cli.command {
        Command::Status => {
            let entries = engine.status(set).await?;
            let kept = engine.preimages().await?;
            let schemas = engine.version_schemas(&entries).await?;
            out.status(set, &entries, &kept, &schemas, cli.global.verbose > 0);
            Ok(0)
        }
        Command::Plan(args) => {
            let (plan, options) = if args.complete {
                let to = args.up.to.as_deref().map(|v| version(v, "--to")).transpose()?;
                (engine.plan_complete(set, to.as_ref()).await?, Default::default())
            } else if args.down {
                let target = down_target(args.up.to.as_deref(), args.steps, args.all)?;
                let options = waymark_core::SavedOptions {
                    to: args
                        .up
                        .to
                        .as_deref()
                        .map(|v| version(v, "--to").map(|v| v.to_string()))
                        .transpose()?,
                    steps: args.steps,
                    all: args.all,
                    ..Default::default()
                };
                (engine.plan_down(set, &target).await?, options)
            } else {
                let up = up_options(&args.up)?;
                let options = waymark_core::SavedOptions {
                    to: up.to.as_ref().map(ToString::to_string),
                    allow_out_of_order: up.allow_out_of_order,
                    ignore_missing: up.ignore_missing,
                    ..Default::default()
                };
                (engine.plan(set, &up).await?, options)
            };
            let saved = engine.save(&plan, options);
            if let Some(path) = &args.out {
                saved.write(path)?;
            }
            let trace = if args.trace {
                let scratch = match &args.scratch_url {
                    Some(url) => Some(
                        connect(
                            &Settings {
                                database_url: url.clone(),
                                ..settings.clone()
                            },
                            false,
                        )
                        .await?,
                    ),
                    None => None,
                };
                let trace = engine.trace(&plan, scratch.as_ref()).await;
                if let Some(scratch) = scratch {
                    scratch.close().await;
                }
                Some(trace?)
            } else {
                None
            };
            out.plan(&plan, &saved, args.out.as_deref(), trace.as_ref());
            Ok(if trace.is_some_and(|t| t.stopped.is_some()) {
                exit::FAILED
            } else {
                0
            })
        }
        Command::Up(cli::UpRunArgs { up, plan: Some(path) }) => {
            let saved = saved_plan(path, "up")?;
            let backup = (up.backup || settings.backup_before_up).then(|| backup_options(settings, None, None));
            let result = engine.apply_saved(set, &saved, backup.as_ref(), &mut progress).await;
            finish(out, engine.url(), "up", result)
        }
        Command::Up(cli::UpRunArgs { up: args, plan: None }) => {
            let mut options = up_options(args)?;
            if args.backup || settings.backup_before_up {
                options.backup = Some(backup_options(settings, None, None));
            }
            let result = engine.up(set, &options, &mut progress).await;
            finish(
                out,
                engine.url(),
                if args.dry_run { "up --dry-run" } else { "up" },
                result,
            )
        }
        Command::Down(cli::DownArgs { plan: Some(path), .. }) => {
            let saved = saved_plan(path, "down")?;
            let result = engine.apply_saved(set, &saved, None, &mut progress).await;
            finish(out, engine.url(), "down", result)
        }
        Command::Down(args) => {
            let target = down_target(args.to.as_deref(), args.steps, args.all)?;
            let result = engine.down(set, &target, &mut progress).await;
            finish(out, engine.url(), "down", result)
        }
        Command::Complete { to } => {
            let to = to.as_deref().map(|v| version(v, "--to")).transpose()?;
            let result = engine.complete(set, to.as_ref(), &mut progress).await;
            finish(out, engine.url(), "complete", result)
        }
        Command::Redo => {
            let result = engine.redo(set, &mut progress).await;
            finish(out, engine.url(), "redo", result)
        }
        Command::Verify => {
            let report = engine.verify(set).await?;
            out.verify(&report);
            Ok(if report.differences.is_empty() {
                0
            } else {
                exit::DIFFERENCES
            })
        }
        Command::Baseline { version: v, from } => {
            let adopted = match (from, v) {
                (Some(tool), _) => engine.baseline_from(set, *tool).await?,
                (None, Some(v)) => engine.baseline(set, &version(v, "baseline")?).await?,
                (None, None) => unreachable!("clap requires VERSION or --from"),
            };
            out.baseline(&adopted);
            Ok(0)
        }
        Command::Repair(args) => {
            let options = RepairOptions {
                rolled_back: args.rolled_back,
                applied: args.applied,
                accept_checksums: args.accept_checksums,
                forget_missing: args.forget_missing,
                version: args.version.as_deref().map(|v| version(v, "--version")).transpose()?,
            };
            let actions = engine.repair(set, &options).await?;
            out.repair(&actions);
            Ok(0)
        }
        Command::New { .. }
        | Command::Lint { .. }
        | Command::Plugin(_)
        | Command::Backup(_)
        | Command::Cutover(_)
        | Command::Fleet(_)
        | Command::Rehearse(_)
        | Command::Database(_)
        | Command::Completions { .. }
        | Command::Man { .. } => {
            unreachable!("handled before connecting")
        }
    }
}

pub(crate) fn down_target(to: Option<&str>, steps: Option<usize>, all: bool) -> anyhow::Result<DownTarget> {
    if all {
        return Ok(DownTarget::All);
    }
    Ok(match (to, steps) {
        (Some(to), _) if to.trim_start_matches('0').is_empty() => DownTarget::To(Version::from_history("0")),
        (Some(to), _) => DownTarget::To(version(to, "--to")?),
        (None, Some(0)) => return Err(Error::Usage("--steps must be at least 1".to_owned()).into()),
        (None, Some(n)) => DownTarget::Steps(n),
        (None, None) => DownTarget::Steps(1),
    })
}

/// Reads a saved plan for `command` (`up` or `down`): a plan of the other
/// direction is a mistake to name, not to carry out.
fn saved_plan(path: &std::path::Path, command: &str) -> anyhow::Result<waymark_core::SavedPlan> {
    let saved = waymark_core::read_saved(path)?;
    if saved.direction != command {
        let flag = if saved.direction == "down" { " --down" } else { "" };
        return Err(Error::Usage(format!(
            "{}: a plan of `{}`, not of `{command}`; apply it with `waymark {} --plan {}` (it was made by `waymark \
             plan{flag}`)",
            path.display(),
            saved.direction,
            saved.direction,
            path.display()
        ))
        .into());
    }
    Ok(saved)
}

fn up_options(args: &cli::UpArgs) -> anyhow::Result<UpOptions> {
    Ok(UpOptions {
        to: args.to.as_deref().map(|v| version(v, "--to")).transpose()?,
        single_transaction: args.single_transaction,
        allow_out_of_order: args.allow_out_of_order,
        ignore_missing: args.ignore_missing,
        dry_run: args.dry_run,
        backup: None,
    })
}

/// Reports a run, including what was done before a failure.
fn finish(
    out: &Output,
    target: &str,
    command: &str,
    result: Result<Vec<waymark_core::Applied>, Error>,
) -> anyhow::Result<u8> {
    match result {
        Ok(done) => {
            out.applied(command, &done, None);
            Ok(0)
        }
        Err(Error::Migration { failure, applied }) => {
            let label = failure.label.clone();
            let error = Error::Migration {
                failure,
                applied: Vec::new(),
            };
            if let Some(log) = &out.events {
                log.write(
                    Some(target),
                    crate::json::EventKind::MigrationFailed {
                        migration: &label,
                        error: error.to_string(),
                    },
                );
            }
            out.applied(command, &applied, Some((&error, error.hint())));
            Ok(exit::FAILED)
        }
        Err(e) => Err(e.into()),
    }
}
