//! Moving to another PostgreSQL server: the engine's side of
//! `waymark-cutover`, which needs a backup to make the target's schema
//! from.

use std::path::{Path, PathBuf};

use waymark_backup::{CreateOptions, Progress};
use waymark_cutover::{CompareOptions, CompareReport, PgBouncer, Phase, Seed, Side, State, SyncProgress};
use waymark_db::{ConnectOptions, Database};

use crate::backup::create_verified;
use crate::error::Error;

/// Compares the contents of `target` with `source`: tables, columns, rows
/// range by range, sequences.
pub async fn compare(
    source: &ConnectOptions,
    target: &ConnectOptions,
    options: &CompareOptions,
) -> Result<CompareReport, Error> {
    let source = Database::connect(source).await?;
    let target = Database::connect(target).await?;
    if source.dialect() != target.dialect() {
        let message = format!(
            "{} is {} and {} is {}: only two databases of the same kind compare",
            source.url(),
            source.dialect().name(),
            target.url(),
            target.dialect().name()
        );
        source.close().await;
        target.close().await;
        return Err(Error::Usage(message));
    }
    let report = waymark_cutover::compare(&source, &target, options).await;
    source.close().await;
    target.close().await;
    Ok(report?)
}

/// How to prepare a cutover.
#[derive(Debug)]
pub struct PrepareOptions {
    /// The database moved from.
    pub source: ConnectOptions,
    /// The (empty) database moved to.
    pub target: ConnectOptions,
    /// A verified backup of the source to take the schema from; by
    /// default one is taken now, with `backup`'s options.
    pub from_backup: Option<PathBuf>,
    /// How to take that backup (its URL is the source's).
    pub backup: CreateOptions,
    /// The PgBouncer traffic goes through.
    pub pgbouncer: Option<PgBouncer>,
    /// A shell command that points traffic at a server, for `switch`.
    pub route: Option<String>,
    /// Fill the target from the backup's rows, with replication starting
    /// at the backup's WAL position, rather than by replication's initial
    /// copy.
    pub seed: bool,
    /// The state file.
    pub state: PathBuf,
}

/// What prepare did.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// The cutover's state.
    pub state: State,
    /// Whether an earlier, interrupted prepare was resumed.
    pub resumed: bool,
}

/// Prepares a cutover: checks the preconditions, makes the target's
/// schema (and with `seed` its rows) from a verified backup of the
/// source, starts replication into it and waits until it has caught up.
/// Run again after an interruption, it resumes where the state file says
/// it stopped.
pub async fn prepare(
    options: &PrepareOptions,
    backup_progress: &mut (dyn FnMut(Progress<'_>) + Send),
    sync_progress: &mut (dyn FnMut(SyncProgress) + Send),
) -> Result<Prepared, Error> {
    let path = &options.state;
    if options.seed && options.from_backup.is_some() {
        return Err(Error::Usage(
            "--seed takes a backup of its own, at a WAL position replication starts from; it cannot use \
             --from-backup"
                .into(),
        ));
    }
    let _lock = waymark_cutover::RunnerLock::take(path)?;
    let (mut state, resumed) = match State::load(path) {
        Ok(state) => {
            if state.phase != Phase::Preparing
                || state.source != options.source.url
                || state.target != options.target.url
            {
                return Err(Error::Usage(format!(
                    "a cutover from {} to {} is already recorded in {} ({}); finish it with `waymark cutover \
                     complete`, or give another --state file",
                    waymark_db::redact(&state.source),
                    waymark_db::redact(&state.target),
                    path.display(),
                    serde_json::to_value(state.phase).unwrap_or_default()
                )));
            }
            (state, true)
        }
        Err(waymark_cutover::CutoverError::NoCutover { .. }) => {
            for options in [&options.source, &options.target] {
                if !is_postgres(&options.url) {
                    return Err(Error::Usage(format!(
                        "{}: cutover moves PostgreSQL databases only",
                        waymark_db::redact(&options.url)
                    )));
                }
            }
            let problems = waymark_cutover::preconditions(&options.source.url, &options.target.url).await?;
            if !problems.is_empty() {
                return Err(waymark_cutover::CutoverError::Refused {
                    what: "the cutover cannot be prepared".into(),
                    problems,
                }
                .into());
            }
            let state = State {
                id: State::new_id(),
                source: options.source.url.clone(),
                target: options.target.url.clone(),
                backup: None,
                pgbouncer: options.pgbouncer.clone(),
                route: options.route.clone(),
                seed: options.seed.then(Default::default),
                phase: Phase::Preparing,
                live: Side::Source,
                moving: None,
            };
            state.store(path)?;
            (state, false)
        }
        Err(e) => return Err(e.into()),
    };
    let dir = match &state.backup {
        Some(dir) => dir.clone(),
        None => {
            let dir = match &options.from_backup {
                Some(dir) => dir.clone(),
                None if state.seed.is_some() => {
                    let point = waymark_cutover::seed_point(&state).await?;
                    let taken = take_backup(
                        &options.source,
                        &options.backup,
                        Some(point.snapshot.clone()),
                        backup_progress,
                    )
                    .await;
                    let lsn = point.lsn.clone();
                    point.release().await;
                    let dir = taken?;
                    state.seed = Some(Seed {
                        lsn: Some(lsn),
                        filled: false,
                    });
                    dir
                }
                None => take_backup(&options.source, &options.backup, None, backup_progress).await?,
            };
            let dir = std::path::absolute(&dir).unwrap_or(dir);
            state.backup = Some(dir.clone());
            state.store(path)?;
            dir
        }
    };
    waymark_cutover::crash_point("prepare-backup");
    let target = Database::connect(&options.target).await?;
    let made = fill(&mut state, path, &dir, &target, backup_progress).await;
    target.close().await;
    made?;
    waymark_cutover::crash_point("prepare-schema");
    waymark_cutover::start_replication(&state).await?;
    waymark_cutover::crash_point("prepare-replication");
    waymark_cutover::wait_for_sync(&mut state, path, sync_progress).await?;
    Ok(Prepared { state, resumed })
}

/// Makes the target's schema from the backup in `dir`, and, when seeding,
/// loads its rows too.
async fn fill(
    state: &mut State,
    path: &Path,
    dir: &Path,
    target: &Database,
    progress: &mut (dyn FnMut(Progress<'_>) + Send),
) -> Result<(), Error> {
    let empty = target.connection().await?.tables().await?.is_empty();
    match &mut state.seed {
        // The schema is made in one transaction, so a target with no
        // tables has none of it yet.
        None if empty => {
            waymark_backup::restore_schema(dir, target).await?;
        }
        None => {}
        Some(seed) if !seed.filled => {
            if !empty {
                return Err(Error::Usage(format!(
                    "the target was being filled from the backup {} when prepare stopped, and may hold part \
                     of it: empty the target database (drop it and create it again) and run prepare again",
                    dir.display()
                )));
            }
            waymark_backup::restore(dir, target, progress).await?;
            seed.filled = true;
            state.store(path)?;
        }
        Some(_) => {}
    }
    Ok(())
}

async fn take_backup(
    source: &ConnectOptions,
    options: &CreateOptions,
    snapshot: Option<String>,
    progress: &mut (dyn FnMut(Progress<'_>) + Send),
) -> Result<PathBuf, Error> {
    let options = CreateOptions {
        url: source.url.clone(),
        snapshot,
        ..options.clone()
    };
    let db = Database::connect(source).await?;
    let created = create_verified(&db, &options, progress).await;
    db.close().await;
    Ok(created?.0)
}

fn is_postgres(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

/// The state file's path, made absolute so that a guard process started
/// elsewhere finds it.
pub fn state_path(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_owned())
}

/// Compares the two servers of the cutover recorded at `path` while
/// traffic goes on, each table between snapshots holding the same commits.
pub async fn compare_online(path: &Path, options: &CompareOptions) -> Result<CompareReport, Error> {
    Ok(waymark_cutover::compare_online(path, options).await?)
}

/// Where the cutover recorded at `path` stands, with its guardrails.
pub async fn cutover_status(path: &Path, limits: &waymark_cutover::Limits) -> Result<waymark_cutover::Status, Error> {
    Ok(waymark_cutover::status(path, limits).await?)
}

/// Moves traffic to `to` (the target for `switch`, the source for
/// `rollback`), finishing or undoing first what a dead runner left.
pub async fn switch(
    path: &Path,
    to: Side,
    options: &waymark_cutover::SwitchOptions,
) -> Result<waymark_cutover::SwitchReport, Error> {
    Ok(waymark_cutover::switch(path, to, options).await?)
}

/// Removes replication both ways; returns the server that stays live.
pub async fn complete_cutover(path: &Path) -> Result<Side, Error> {
    Ok(waymark_cutover::complete(path).await?)
}

/// Watches a move for its runner, and finishes or undoes it if the runner
/// dies or overruns its deadline.
pub async fn guard_cutover(path: &Path) -> Result<Option<String>, Error> {
    Ok(waymark_cutover::guard(path).await?)
}
