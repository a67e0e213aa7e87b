use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

/// What `waymark --version` says: the release, the commit it was built
/// from (build.rs) and the plugin interface its host serves, the three
/// things a bug report or a plugin author needs.
static VERSION: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "{} (commit {}, plugin interface {})",
        env!("CARGO_PKG_VERSION"),
        env!("WAYMARK_COMMIT"),
        waymark_core::INTERFACE_VERSION
    )
});

/// Versioned, transactional schema migrations for PostgreSQL, MySQL/MariaDB
/// and SQLite, every step run as a sandboxed WebAssembly component.
///
/// Exit codes: 0 ok, 1 a migration or step failed (or was refused), 2 usage
/// or configuration error, 3 verification found differences, 4 could not
/// get the lock in time, 5 a cutover refused, 6 a lint error not allowed,
/// 7 a rehearsal's verdict failed.
#[derive(Debug, Parser)]
#[command(name = "waymark", version = VERSION.as_str(), max_term_width = 100)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
    #[command(flatten)]
    pub(crate) global: Global,
}

#[derive(Debug, Args)]
pub(crate) struct Global {
    /// Database URL: postgres://, mysql://, mariadb:// or sqlite://.
    /// Default: sqlite://waymark.db (created if missing).
    #[arg(long, env = "DATABASE_URL", global = true, hide_env_values = true)]
    pub(crate) database_url: Option<String>,
    /// Folder of migrations. Default: migrations/
    #[arg(long, env = "WAYMARK_MIGRATIONS", global = true, hide_env_values = true)]
    pub(crate) migrations: Option<PathBuf>,
    /// Whose layout the migrations folder is in: auto (default), waymark,
    /// diesel, sqlx, golang-migrate, dbmate, goose or flyway.
    #[arg(long, env = "WAYMARK_LAYOUT", global = true, hide_env_values = true)]
    pub(crate) layout: Option<String>,
    /// Config file. Default: waymark.toml, if present.
    #[arg(long, env = "WAYMARK_CONFIG", global = true, hide_env_values = true)]
    pub(crate) config: Option<PathBuf>,
    /// SQL run on every connection waymark opens, before anything else
    /// (repeatable), e.g. "SET lock_timeout = '5s'".
    #[arg(long = "init-sql", global = true)]
    pub(crate) init_sql: Vec<String>,
    /// How long to wait for another runner's lock, e.g. 30s. Default: 60s.
    #[arg(long, value_parser = parse_duration, global = true)]
    pub(crate) lock_timeout: Option<Duration>,
    /// How long to try to reach the database before giving up with the
    /// cause, e.g. 10s. Default: 5s.
    #[arg(
        long,
        value_name = "DUR",
        env = "WAYMARK_CONNECT_TIMEOUT",
        value_parser = parse_duration,
        global = true,
        hide_env_values = true
    )]
    pub(crate) connect_timeout: Option<Duration>,
    /// History table name. Default: waymark_history.
    #[arg(long, global = true)]
    pub(crate) history_table: Option<String>,
    /// History table schema (PostgreSQL). Default: the search path's first.
    #[arg(long, global = true)]
    pub(crate) history_schema: Option<String>,
    /// CPU time a step may use, e.g. 30s (time waiting on the database does
    /// not count).
    #[arg(long, value_parser = parse_duration, global = true)]
    pub(crate) step_timeout: Option<Duration>,
    /// Memory a step may use, in MiB. Default: 64.
    #[arg(long, global = true)]
    pub(crate) step_memory_mib: Option<usize>,
    /// The longest each statement of a migration may wait for a lock
    /// another session holds before waymark lets go, waits outside the
    /// queue and tries again, so the application's queries never queue
    /// behind it for long; `off` waits as the server does. Default: 1s
    /// (a transaction's first attempt waits [locks] first_timeout, 50ms).
    #[arg(long, value_name = "DUR", value_parser = parse_wait, global = true)]
    pub(crate) lock_wait: Option<Wait>,
    /// How many times a migration (or statement) whose lock wait timed out
    /// is tried again. Default: 20, within [locks] max_wait (2m).
    #[arg(long, value_name = "N", global = true)]
    pub(crate) lock_retries: Option<u32>,
    /// Print machine-readable JSON on stdout.
    #[arg(long, global = true)]
    pub(crate) json: bool,
    /// Append what happens to FILE as it happens, one JSON object per line
    /// (docs/json/events.schema.json): each migration's start and end, each
    /// statement with its time and locks, each lock retry, and under
    /// `fleet` each wave and target. Costs a look at pg_locks around each
    /// statement in a transaction on PostgreSQL.
    #[arg(long, value_name = "FILE", global = true)]
    pub(crate) events: Option<PathBuf>,
    /// More detail on stderr (-v, -vv, -vvv).
    #[arg(short, long, action = clap::ArgAction::Count, global = true, conflicts_with = "quiet")]
    pub(crate) verbose: u8,
    /// Only errors on stderr.
    #[arg(short, long, global = true)]
    pub(crate) quiet: bool,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Every migration with its state: applied, baseline, pending,
    /// out-of-order, failed, modified, missing or expanded (an ops.toml
    /// migration waiting for `complete`).
    Status,
    /// Exactly what `up` (or, with --down, `down`) would run, in order,
    /// without touching the schema.
    Plan(PlanArgs),
    /// Apply pending migrations.
    Up(UpRunArgs),
    /// Revert applied migrations, newest first (default: the newest one).
    Down(DownArgs),
    /// Contract expanded migrations (ops.toml): drop the old shape, its
    /// version schema and the sync triggers, once no application of the
    /// old version runs; what is dropped is kept for `down`.
    Complete {
        /// Complete only the expanded migrations up to this version.
        #[arg(long)]
        to: Option<String>,
    },
    /// Revert the newest migration and apply it again.
    Redo,
    /// The locks each migration's statements take, said before anything
    /// runs: every finding with its rule, file, line, lock and fix. Needs no
    /// database (the URL's scheme gives the dialect). Exit 6 on an error
    /// not allowed with `-- waymark:allow <rule> <reason>`.
    Lint {
        /// Lint only these migrations (versions); default: all of them.
        versions: Vec<String>,
        /// List the rules instead.
        #[arg(long)]
        rules: bool,
        /// How to print the findings: text, json (as --json) or sarif (a
        /// SARIF 2.1.0 log, for code scanning to show them on a pull
        /// request).
        #[arg(long, value_enum, default_value_t = LintFormat::Text)]
        format: LintFormat,
    },
    /// Compare every applied migration's checksum with its file; exit 3 on
    /// any difference.
    Verify,
    /// Create a new migration with up.sql and down.sql.
    New {
        /// Name, e.g. create_users.
        name: String,
        /// Write an ops.toml holding this expand/contract operation
        /// (create_table, add_column, drop_column, rename_column,
        /// rename_table, alter_type, set_not_null, drop_not_null, sql).
        #[arg(long)]
        op: Option<String>,
        /// Its version. Default: the next of a numbered folder, else the
        /// UTC time (one second after the newest if that is not earlier).
        #[arg(long)]
        version: Option<String>,
    },
    /// Record every migration up to VERSION as applied without running it,
    /// to adopt a database whose schema already exists; or, with --from,
    /// exactly those that another tool's history table records.
    Baseline {
        /// The newest version already present in the database.
        #[arg(required_unless_present = "from", conflicts_with = "from")]
        version: Option<String>,
        /// Adopt the history of diesel, sqlx, golang-migrate, dbmate, goose
        /// or flyway from its own table in this database (only read).
        #[arg(long, value_name = "TOOL", value_parser = parse_tool)]
        from: Option<waymark_core::OtherTool>,
    },
    /// Fix the history by hand, with an audit record: each action needs its
    /// own flag.
    Repair(RepairArgs),
    /// Write, test and inspect step plugins.
    #[command(subcommand)]
    Plugin(PluginCommand),
    /// Take, verify, restore and list checksummed backups.
    #[command(subcommand)]
    Backup(BackupCommand),
    /// Move to another server with a way back (PostgreSQL).
    #[command(subcommand)]
    Cutover(CutoverCommand),
    /// Roll the migrations out to a fleet of databases, wave by wave, as a
    /// fleet file describes (docs/guide/fleet.md).
    #[command(subcommand)]
    Fleet(FleetCommand),
    /// Rehearse the pending migrations on a scratch database under a
    /// workload: a baseline, each migration, and after, with latency,
    /// errors and lock waits per phase and a verdict (exit 7 when it fails).
    Rehearse(RehearseArgs),
    /// Create or drop the database the URL names (for SQLite, its file),
    /// as the URL's user. Both do nothing, and say so, when it already is
    /// as asked.
    #[command(subcommand)]
    Database(DatabaseCommand),
    /// Print the completion script of a shell (bash, zsh, fish, elvish,
    /// powershell), e.g. `waymark completions bash >
    /// ~/.local/share/bash-completion/completions/waymark`.
    Completions {
        /// Which shell.
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff), e.g. `waymark man | man -l -`; with
    /// --out, write it and one page per command into a folder.
    Man {
        /// The folder for waymark.1 and a waymark-<command>.1 per command.
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum DatabaseCommand {
    /// Create it, connecting to the server's maintenance database
    /// (PostgreSQL's `postgres`) or to the server alone (MySQL).
    Create,
    /// Drop it and everything in it; asks for --yes, since nothing brings
    /// it back but a backup.
    Drop {
        /// Drop it: without this, nothing is dropped.
        #[arg(long, short = 'y')]
        yes: bool,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum FleetCommand {
    /// Where each target stands: up to date, pending, needing repair (its
    /// history has a failed, modified, missing or out-of-order migration),
    /// or unreachable. Exit 3 when any target is not up to date.
    Status(FleetArgs),
    /// Check every target's applied migrations against their files, as
    /// `waymark verify` does. Exit 3 when any target differs or could not
    /// be checked.
    Verify(FleetArgs),
    /// The targets grouped by where they stand, and for each group with
    /// migrations pending the plan `up` would follow, made once, on its
    /// first target. Exit 1 when a group's plan could not be made (`up`
    /// would refuse it).
    Plan(FleetArgs),
    /// Apply the pending migrations, wave by wave: up to `parallel` targets
    /// of a wave at once, then its gate. Halts (exit 1) when a wave has
    /// more failures than its max_failures or its gate fails, saying what
    /// was done, what failed and what is left. Run it again to resume.
    /// Exit 3 when every wave ran but a target failed within its wave's
    /// budget.
    Up(FleetRunArgs),
    /// Revert every migration newer than --to on each target, the waves in
    /// reverse order (the widest first, the canary last), with the same
    /// budgets and gates as `up`.
    Down(FleetDownArgs),
}

#[derive(Debug, Args)]
pub(crate) struct FleetRunArgs {
    #[command(flatten)]
    pub(crate) fleet: FleetArgs,
    /// Keep FILE up to date with the rollout in Prometheus text format
    /// (each target's state, duration and migrations applied), for the node
    /// exporter's textfile collector; name it `*.prom` there.
    #[arg(long, value_name = "FILE")]
    pub(crate) metrics_file: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub(crate) struct FleetDownArgs {
    #[command(flatten)]
    pub(crate) run: FleetRunArgs,
    /// Revert every migration newer than this version (0: all). A version,
    /// never a count: targets at different versions would each lose
    /// different migrations.
    #[arg(long, value_name = "VERSION")]
    pub(crate) to: String,
}

#[derive(Debug, Args)]
pub(crate) struct FleetArgs {
    /// The fleet file. Default: fleet.toml, or the [fleet] table of
    /// waymark.toml.
    #[arg(long, env = "WAYMARK_FLEET", hide_env_values = true)]
    pub(crate) fleet: Option<PathBuf>,
    /// Take only the targets of shard i of N (i counts from 0), for N
    /// runners sharing the fleet: a Kubernetes indexed Job, a CI matrix.
    #[arg(long, value_name = "i/N")]
    pub(crate) shard: Option<String>,
    /// How many targets `status`, `verify` and `plan` look at at once.
    #[arg(long, value_name = "N", default_value_t = 8)]
    pub(crate) parallel: usize,
}

#[derive(Debug, Args)]
pub(crate) struct RehearseArgs {
    /// The database to rehearse on, which waymark may change: never the
    /// configured one unless --scratch-is-the-database.
    #[arg(long, value_name = "URL")]
    pub(crate) scratch: String,
    /// First fill the scratch database as a copy of this database of the
    /// same PostgreSQL server (CREATE DATABASE ... TEMPLATE, which needs
    /// nobody else connected to it); the scratch database must not exist.
    #[arg(long, value_name = "DATABASE", conflicts_with = "from_backup")]
    pub(crate) template: Option<String>,
    /// First fill the scratch database from this backup set, verified
    /// before a row is written and every row read back after, as `backup
    /// restore` does; the scratch database must exist and be empty.
    #[arg(long, value_name = "DIR", conflicts_with = "scratch_may_hold_data")]
    pub(crate) from_backup: Option<PathBuf>,
    /// Rehearse on a scratch database that already holds tables (a copy
    /// you restored yourself), without --template.
    #[arg(long)]
    pub(crate) scratch_may_hold_data: bool,
    /// Let --scratch be the configured database itself.
    #[arg(long)]
    pub(crate) scratch_is_the_database: bool,
    /// A workload script in pgbench's format, FILE or FILE@WEIGHT
    /// (repeatable): each run of a script is one transaction.
    #[arg(long = "workload", value_name = "FILE[@WEIGHT]", required = true)]
    pub(crate) workloads: Vec<String>,
    /// A long reading transaction, a script in the same format, run every
    /// --every on a connection of its own: long readers are what make a
    /// migration's locks queue.
    #[arg(long, value_name = "FILE")]
    pub(crate) reporter: Option<PathBuf>,
    /// How often the reporter starts.
    #[arg(long, value_parser = parse_duration, default_value = "3s")]
    pub(crate) every: Duration,
    /// Connections running the workload.
    #[arg(long, default_value_t = 4)]
    pub(crate) clients: u32,
    /// Transactions per second over all clients, arriving as pgbench -R
    /// schedules them (a transaction a busy client starts late counts from
    /// its schedule); without it, as fast as the clients go.
    #[arg(long)]
    pub(crate) rate: Option<f64>,
    /// How long the workload runs alone first.
    #[arg(long, value_parser = parse_duration, default_value = "10s")]
    pub(crate) baseline: Duration,
    /// How long it runs after the last migration.
    #[arg(long, value_parser = parse_duration, default_value = "10s")]
    pub(crate) after: Duration,
    /// Fail when a phase's p99 latency exceeds the baseline's by more than
    /// this, e.g. 20%; `off` checks no latency (on a machine too noisy for
    /// it, gate on errors and lock waits alone).
    #[arg(long, value_parser = parse_percent, default_value = "20%")]
    pub(crate) max_p99_increase: f64,
    /// Fail when more workload transactions than this fail.
    #[arg(long, default_value_t = 0)]
    pub(crate) max_errors: u64,
    /// Fail when a workload session waits longer than this on a lock a
    /// migration holds or queues for.
    #[arg(long, value_parser = parse_duration, default_value = "1s")]
    pub(crate) max_lock_wait: Duration,
    /// `:scale` in the workload scripts.
    #[arg(long, default_value_t = 1)]
    pub(crate) scale: i64,
    /// Seeds the workload's random draws, to run it again the same way.
    #[arg(long)]
    pub(crate) random_seed: Option<u64>,
    /// Rehearse only the migrations up to and including this version.
    #[arg(long)]
    pub(crate) to: Option<String>,
    /// Also write the report as one self-contained HTML file: latency over
    /// time with each migration statement marked, and the tables.
    #[arg(long, value_name = "FILE")]
    pub(crate) report: Option<PathBuf>,
}

/// A percentage, or `off` (infinite: never exceeded).
fn parse_percent(s: &str) -> Result<f64, String> {
    if s.trim() == "off" {
        return Ok(f64::INFINITY);
    }
    let number = s.trim().strip_suffix('%').unwrap_or(s.trim());
    match number.parse::<f64>() {
        Ok(p) if p >= 0.0 && p.is_finite() => Ok(p),
        _ => Err("write it as a percentage, like 20%, or off".to_owned()),
    }
}

#[derive(Debug, Subcommand)]
pub(crate) enum CutoverCommand {
    /// Check both servers (wal_level, keys, privileges, versions; every
    /// problem at once), make the target's schema from a verified backup
    /// of the source, replicate the source into it, and wait until it has
    /// caught up. Run again after an interruption, it resumes.
    Prepare {
        /// The database moved from (PostgreSQL).
        #[arg(long)]
        source: String,
        /// The empty database moved to (PostgreSQL, same major version or
        /// newer).
        #[arg(long)]
        target: String,
        /// Take the schema from this backup set (it must verify) instead of
        /// taking a new backup.
        #[arg(long)]
        from_backup: Option<PathBuf>,
        /// PgBouncer's admin console, through which `switch` holds writes
        /// and moves traffic: postgres://user@host:6432/pgbouncer.
        #[arg(long, requires_all = ["pgbouncer_ini", "pgbouncer_database"])]
        pgbouncer: Option<String>,
        /// PgBouncer's configuration file, whose [databases] line for the
        /// database `switch` rewrites.
        #[arg(long)]
        pgbouncer_ini: Option<PathBuf>,
        /// The database's name in PgBouncer.
        #[arg(long)]
        pgbouncer_database: Option<String>,
        /// A shell command that points the application at a server, run by
        /// `switch` and `rollback` with the server's URL in
        /// WAYMARK_CUTOVER_LIVE_URL (and `source` or `target` in
        /// WAYMARK_CUTOVER_LIVE); it must be safe to run again. Without
        /// --pgbouncer, writes are then held by making the server moved
        /// from read-only and ending its sessions; the server not live stays
        /// read-only (the target from the end of prepare).
        #[arg(long)]
        route_command: Option<String>,
        /// Fill the target from the backup's rows, loaded by waymark, with
        /// replication starting at the WAL position the backup's snapshot
        /// matches (writes to the tables wait a moment while it is taken),
        /// rather than by PostgreSQL's initial copy.
        #[arg(long, conflicts_with = "from_backup")]
        seed: bool,
        #[command(flatten)]
        state: StateArg,
    },
    /// Where the cutover stands: the live server, replication's lag in
    /// bytes and seconds, each table's state, long transactions, and the
    /// guardrails a switch checks. Exit 5 if a guardrail fails.
    Status {
        #[command(flatten)]
        state: StateArg,
        #[command(flatten)]
        limits: LimitArgs,
    },
    /// Compare the target's contents with the source's: tables, columns,
    /// rows range by range of the primary key (row counts and digests,
    /// with sample keys where a range differs), sequences. Exit 3 on any
    /// difference. With --source and --target: exact when neither changes
    /// while it runs. Without them, the prepared cutover's two servers,
    /// online: each table between two snapshots holding the same commits,
    /// writes to it held for one replication round trip.
    Verify {
        /// The database moved from.
        #[arg(long, requires = "target")]
        source: Option<String>,
        /// The database moved to.
        #[arg(long, requires = "source")]
        target: Option<String>,
        /// Rows per range of a table's key.
        #[arg(long, default_value_t = 100_000)]
        range_rows: u64,
        #[command(flatten)]
        state: StateArg,
    },
    /// Move traffic to the target within one deadline: guardrails, hold
    /// writes (PgBouncer's PAUSE, or the source made read-only), wait for
    /// the target to apply the last of them, compare, carry sequences
    /// over, replicate the target back into the source, repoint PgBouncer
    /// or run the route command, resume. Undone if anything fails first.
    Switch(SwitchArgs),
    /// Move traffic back to the source, the same way, over the reverse
    /// replication: no acknowledged write is lost.
    Rollback(SwitchArgs),
    /// Remove replication both ways (subscriptions, slots, publications)
    /// once the live server is to stay.
    Complete {
        #[command(flatten)]
        state: StateArg,
    },
    /// Watch a switch for its runner (started by `switch` itself).
    #[command(hide = true)]
    Guard {
        #[command(flatten)]
        state: StateArg,
    },
}

#[derive(Debug, Args)]
pub(crate) struct StateArg {
    /// The cutover's state file.
    #[arg(long = "state", default_value = ".waymark/cutover.json")]
    pub(crate) path: PathBuf,
}

#[derive(Debug, Args)]
pub(crate) struct LimitArgs {
    /// The most WAL, in bytes, the server moved to may have left to apply.
    #[arg(long, default_value_t = 16 * 1024 * 1024)]
    pub(crate) max_lag_bytes: u64,
    /// The longest a writing transaction may have been open on the live
    /// server, e.g. 5s.
    #[arg(long, value_parser = parse_duration, default_value = "5s")]
    pub(crate) max_transaction: Duration,
}

#[derive(Debug, Args)]
pub(crate) struct SwitchArgs {
    #[command(flatten)]
    pub(crate) state: StateArg,
    #[command(flatten)]
    pub(crate) limits: LimitArgs,
    /// From holding writes to resuming them, everything must fit in this;
    /// past it the switch is undone.
    #[arg(long, value_parser = parse_duration, default_value = "10s")]
    pub(crate) deadline: Duration,
    /// Skip comparing every table while writes are held (run `cutover
    /// verify` beforehand instead): the pause is then the time to drain
    /// replication and move it.
    #[arg(long)]
    pub(crate) no_final_check: bool,
}

#[derive(Debug, Subcommand)]
pub(crate) enum BackupCommand {
    /// Back up the database (schema, rows, sequences, the migrations
    /// applied) into a new folder, with a manifest of every file's SHA-256
    /// and every table's content digest; then verify it.
    Create {
        /// Only these tables (comma-separated).
        #[arg(long, value_delimiter = ',')]
        tables: Option<Vec<String>>,
        /// Folder to put the backup in. Default: backups/ (or [backup] dir).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Take no backup: say how big it would be and how long it would
        /// take, from the catalog's table sizes and the pace of the earlier
        /// sets in the folder (or the documented defaults, if none).
        #[arg(long)]
        estimate: bool,
        /// SQLite: copy the database's file page for page, as `sqlite3
        /// .backup` does, rather than its tables' rows. Much faster; the
        /// set proves the file (every byte digested, SQLite's integrity
        /// check on restore), not each row, and restores only into a new
        /// SQLite file.
        #[arg(long, conflicts_with_all = ["tables", "estimate"])]
        pages: bool,
        /// PostgreSQL: how many connections read a big table at once, 1 or
        /// 2 (or [backup] jobs). Default: 2 on a machine with more than two
        /// cores, else 1: there the server and waymark already fill the
        /// cores, and a second read only adds work.
        #[arg(long, value_parser = clap::value_parser!(u8).range(1..=2))]
        jobs: Option<u8>,
    },
    /// Check a backup against its manifest: every file's size and SHA-256,
    /// missing and extra files, the manifest's own digest. Exit 3 on any
    /// problem.
    Verify {
        /// The backup's folder.
        dir: PathBuf,
        /// Also decode every chunk and recompute every table's digest.
        #[arg(long)]
        deep: bool,
    },
    /// Restore a backup into an empty database, after verifying it; succeed
    /// only when the restored rows are proven to be the backup's (exit 3
    /// when they differ).
    Restore {
        /// The backup's folder.
        dir: PathBuf,
        /// The database to restore into (it must be empty; for a set of
        /// pages, a SQLite file that does not exist yet, or is empty).
        #[arg(long)]
        to: String,
        /// How the restored rows are proven: `rows` reads every row back
        /// and checks it against the backup; `count` only counts the rows
        /// the database takes from each chunk, which is faster and misses a
        /// row stored changed (by a trigger, a default, a conversion). A
        /// set of pages (`create --pages`) is proven by its pages' SHA-256
        /// either way, then by `PRAGMA integrity_check` (`rows`) or
        /// `PRAGMA quick_check` (`count`).
        #[arg(long, value_enum, default_value_t = RestoreVerify::Rows)]
        verify: RestoreVerify,
    },
    /// The backups in a folder, oldest first, complete or not.
    List {
        /// The folder. Default: backups/ (or [backup] dir).
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum PluginCommand {
    /// Create a step plugin crate, which builds with
    /// `cargo build --release --target wasm32-wasip2`.
    New {
        /// Crate name, e.g. lowercase-emails.
        name: String,
        /// Folder to create it in. Default: the current folder.
        #[arg(long, default_value = ".")]
        dir: PathBuf,
        /// Use the SDK of a waymark checkout (its plugins/sdk) instead of a
        /// copy in the crate's vendor/ folder.
        #[arg(long)]
        sdk_path: Option<PathBuf>,
    },
    /// Run a step's up, down, up again and down again against a scratch
    /// database, under the limits a real run applies, and report what each
    /// changed; fail if down does not restore what up found, or if a second
    /// up differs from the first.
    Test {
        /// A migration folder holding step.toml (its configuration and
        /// permissions apply), or a .wasm component (read-write, no
        /// configuration).
        path: PathBuf,
        /// The scratch database. Default: a new SQLite file. Never taken
        /// from DATABASE_URL, so a test cannot reach a real database by
        /// accident.
        #[arg(long)]
        scratch_url: Option<String>,
        /// SQL file run first, to create what the step works on.
        #[arg(long)]
        setup: Option<PathBuf>,
    },
    /// Print a component's SHA-256 (what step.toml pins), interface version
    /// and description.
    Inspect {
        /// The .wasm component.
        path: PathBuf,
    },
}

#[derive(Debug, Args)]
pub(crate) struct UpArgs {
    /// Stop after this version.
    #[arg(long)]
    pub(crate) to: Option<String>,
    /// Apply the whole batch in one transaction, all or nothing
    /// (PostgreSQL, SQLite).
    #[arg(long)]
    pub(crate) single_transaction: bool,
    /// Apply pending migrations older than the newest applied one.
    #[arg(long)]
    pub(crate) allow_out_of_order: bool,
    /// Proceed although some applied migrations have no file.
    #[arg(long)]
    pub(crate) ignore_missing: bool,
    /// Apply everything in one transaction, then roll it back: proof that
    /// the migrations run, keeping nothing (PostgreSQL, SQLite).
    #[arg(long, conflicts_with = "single_transaction")]
    pub(crate) dry_run: bool,
    /// Take and verify a backup first (into [backup] dir, default
    /// backups/), and record its id with each migration applied.
    #[arg(long, conflicts_with = "dry_run")]
    pub(crate) backup: bool,
}

#[derive(Debug, Args)]
pub(crate) struct UpRunArgs {
    #[command(flatten)]
    pub(crate) up: UpArgs,
    /// Apply exactly this saved plan (written by `waymark plan --out`),
    /// after checking that the history and every migration file are as
    /// they were when it was made; exit 3, naming what changed, if not.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["to", "single_transaction", "allow_out_of_order", "ignore_missing", "dry_run"])]
    pub(crate) plan: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub(crate) struct PlanArgs {
    /// Plan `down` instead: what it would revert (default: the newest
    /// migration; --to V reverts everything after V, --steps N the newest N).
    #[arg(long, conflicts_with_all = ["single_transaction", "allow_out_of_order", "ignore_missing", "dry_run", "backup"])]
    pub(crate) down: bool,
    /// Plan `complete` instead: the contract of each expanded migration
    /// (up to --to). Shown only: a contract is not saved for `up --plan`.
    #[arg(long, conflicts_with_all = ["down", "out", "single_transaction", "allow_out_of_order", "ignore_missing", "dry_run", "backup"])]
    pub(crate) complete: bool,
    /// With --down: revert this many migrations.
    #[arg(long, requires = "down", conflicts_with = "to")]
    pub(crate) steps: Option<usize>,
    /// With --down: revert every applied migration, a version-0 one too.
    #[arg(long, requires = "down", conflicts_with_all = ["to", "steps"])]
    pub(crate) all: bool,
    /// Also write the plan to FILE (JSON), for `waymark up --plan FILE`
    /// (or `down --plan FILE`) to apply exactly what was reviewed.
    #[arg(long, value_name = "FILE")]
    pub(crate) out: Option<PathBuf>,
    /// Also run the plan's statements (PostgreSQL) in a transaction that is
    /// always rolled back, and say what each one locked, rewrote and took,
    /// as the server saw it. On the target each statement waits for a lock
    /// at most the lock timeout ([locks] timeout, 1 s) and runs at most
    /// twice that, so the trace holds no lock longer than the timeout; exit
    /// 1 if a statement fails or cannot get its lock.
    #[arg(long)]
    pub(crate) trace: bool,
    /// With --trace: run the statements on this database instead, a copy of
    /// the target in the same state (a restored backup, say), where they run
    /// as long as they take.
    #[arg(long, value_name = "URL", requires = "trace")]
    pub(crate) scratch_url: Option<String>,
    #[command(flatten)]
    pub(crate) up: UpArgs,
}

#[derive(Debug, Args)]
pub(crate) struct DownArgs {
    /// Revert every migration applied after this version (0: all but a
    /// version-0 migration, such as diesel's initial setup).
    #[arg(long, conflicts_with_all = ["steps", "all"])]
    pub(crate) to: Option<String>,
    /// Revert this many migrations.
    #[arg(long, conflicts_with = "all")]
    pub(crate) steps: Option<usize>,
    /// Revert every applied migration, a version-0 one too.
    #[arg(long)]
    pub(crate) all: bool,
    /// Revert exactly this saved plan (written by `waymark plan --down
    /// --out`), after checking that nothing changed since it was made.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["to", "steps", "all"])]
    pub(crate) plan: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub(crate) struct RepairArgs {
    /// Forget failed or interrupted migrations, after undoing their partial
    /// effects by hand; `up` runs them again.
    #[arg(long, conflicts_with = "applied")]
    pub(crate) rolled_back: bool,
    /// Record failed or interrupted migrations as applied, after finishing
    /// by hand what a failed up left undone, or undoing what a failed down
    /// did; `down` can then revert them.
    #[arg(long)]
    pub(crate) applied: bool,
    /// Record the current checksum of modified migrations.
    #[arg(long)]
    pub(crate) accept_checksums: bool,
    /// Forget applied migrations whose files are gone.
    #[arg(long)]
    pub(crate) forget_missing: bool,
    /// Only this version.
    #[arg(long)]
    pub(crate) version: Option<String>,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("{e} (write it like 30s, 500ms or 2m)"))
}

/// A bound on a wait, or none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Wait {
    Off,
    For(Duration),
}

pub(crate) fn parse_wait(s: &str) -> Result<Wait, String> {
    match s {
        "off" | "0" => Ok(Wait::Off),
        _ => match parse_duration(s)? {
            d if d.is_zero() => Ok(Wait::Off),
            d => Ok(Wait::For(d)),
        },
    }
}

fn parse_tool(name: &str) -> Result<waymark_core::OtherTool, String> {
    waymark_core::OtherTool::parse(name)
}

/// `waymark backup restore --verify`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum RestoreVerify {
    /// Every restored row read back and proven against the backup.
    Rows,
    /// Each chunk's rows counted as the database takes them; nothing read
    /// back.
    Count,
}

impl From<RestoreVerify> for waymark_backup::Verify {
    fn from(v: RestoreVerify) -> Self {
        match v {
            RestoreVerify::Rows => waymark_backup::Verify::Rows,
            RestoreVerify::Count => waymark_backup::Verify::Count,
        }
    }
}

/// `waymark lint --format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum LintFormat {
    /// Readable text.
    Text,
    /// The `--json` reply.
    Json,
    /// A SARIF 2.1.0 log.
    Sarif,
}
