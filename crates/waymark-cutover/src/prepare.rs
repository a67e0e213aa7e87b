//! Preparing a cutover: the preconditions, checked on both servers and all
//! reported at once; the target's schema (and with `--seed` its rows)
//! from a verified backup of the source; then replication from the source
//! into the target and the wait until every table is copied and the
//! target has caught up.
//!
//! Every step is recorded in the state file and every object is made only
//! if missing, so a prepare that was killed resumes when run again.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use waymark_backup::{CreateOptions, Progress};
use waymark_db::{ConnectOptions, Database, crash_point};

use crate::error::CutoverError;
use crate::pg::{OWN_SCHEMA, Server, literal};
use crate::pgbouncer::PgBouncer;
use crate::state::{Phase, RunnerLock, Seed, Side, State};
use crate::switch::store;

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
) -> Result<Prepared, CutoverError> {
    let path = &options.state;
    if options.seed && options.from_backup.is_some() {
        return Err(CutoverError::Usage(
            "--seed takes a backup of its own, at a WAL position replication starts from; it cannot use \
             --from-backup"
                .into(),
        ));
    }
    let _lock = RunnerLock::take(path)?;
    let (mut state, resumed) = match State::load(path) {
        Ok(state) => {
            if state.phase != Phase::Preparing
                || state.source != options.source.url
                || state.target != options.target.url
            {
                return Err(CutoverError::Usage(format!(
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
        Err(CutoverError::NoCutover { .. }) => {
            for options in [&options.source, &options.target] {
                if !is_postgres(&options.url) {
                    return Err(CutoverError::Usage(format!(
                        "{}: cutover moves PostgreSQL databases only",
                        waymark_db::redact(&options.url)
                    )));
                }
            }
            let problems = preconditions(&options.source.url, &options.target.url).await?;
            if !problems.is_empty() {
                return Err(CutoverError::Refused {
                    what: "the cutover cannot be prepared".into(),
                    problems,
                });
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
        Err(e) => return Err(e),
    };
    let dir = match &state.backup {
        Some(dir) => dir.clone(),
        None => {
            let dir = match &options.from_backup {
                Some(dir) => dir.clone(),
                None if state.seed.is_some() => {
                    let point = seed_point(&state).await?;
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
    crash_point("prepare-backup");
    let target = Database::connect(&options.target).await?;
    let made = fill(&mut state, path, &dir, &target, backup_progress).await;
    target.close().await;
    made?;
    crash_point("prepare-schema");
    start_replication(&state).await?;
    crash_point("prepare-replication");
    wait_for_sync(&mut state, path, sync_progress).await?;
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
) -> Result<(), CutoverError> {
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
                return Err(CutoverError::Usage(format!(
                    "the target was being filled from the backup {} when prepare stopped, and may hold part \
                     of it: empty the target database (drop it and create it again) and run prepare again",
                    dir.display()
                )));
            }
            // A new primary is proven row by row.
            waymark_backup::restore(dir, target, waymark_backup::Verify::Rows, progress).await?;
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
) -> Result<PathBuf, CutoverError> {
    let options = CreateOptions {
        url: source.url.clone(),
        snapshot,
        ..options.clone()
    };
    let db = Database::connect(source).await?;
    let created = waymark_backup::create_verified(&db, &options, progress).await;
    db.close().await;
    Ok(created?.0)
}

fn is_postgres(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

/// Everything that stops a cutover from `source` to `target`, on either
/// server; empty when it can go ahead.
pub(crate) async fn preconditions(source: &str, target: &str) -> Result<Vec<String>, CutoverError> {
    let mut s = Server::connect(source).await?;
    let mut t = Server::connect(target).await?;
    let mut problems = Vec::new();
    let (s_major, t_major) = (s.major().await?, t.major().await?);
    if t_major < s_major {
        problems.push(format!(
            "the target runs PostgreSQL {t_major}, older than the source's {s_major}: logical replication \
             and the schema only move to the same major version or a newer one"
        ));
    }
    for (side, server, major) in [(Side::Source, &mut s, s_major), (Side::Target, &mut t, t_major)] {
        let side = side.name();
        let wal_level = server.setting("wal_level").await?;
        if wal_level != "logical" {
            problems.push(format!(
                "{side}: wal_level is {wal_level}; set wal_level = logical and restart the server \
                 (replication {} needs it)",
                if side == "source" {
                    "to the target"
                } else {
                    "back to the source, the way back,"
                }
            ));
        }
        let slots: i64 = server.setting("max_replication_slots").await?.parse().unwrap_or(0);
        let used = server
            .int(
                "counting replication slots",
                "SELECT count(*) FROM pg_replication_slots",
            )
            .await?;
        if slots <= used {
            problems.push(format!(
                "{side}: all {slots} replication slots (max_replication_slots) are taken; one more is needed"
            ));
        }
        let senders: i64 = server.setting("max_wal_senders").await?.parse().unwrap_or(0);
        if senders < 1 {
            problems.push(format!("{side}: max_wal_senders is 0; it must be at least 1"));
        }
        let (superuser, replication): (bool, bool) = role(server).await?;
        let can_subscribe = superuser
            || (major >= 16
                && server
                    .flag(
                        "reading the role",
                        "SELECT pg_has_role(current_user, $1, 'USAGE')",
                        "pg_create_subscription",
                    )
                    .await?);
        if !(superuser || replication) || !can_subscribe {
            problems.push(format!(
                "{side}: the user needs the REPLICATION attribute and the right to create subscriptions \
                 (a superuser{}), for replication each way",
                if major >= 16 {
                    ", or a member of pg_create_subscription"
                } else {
                    ""
                }
            ));
        }
    }
    for table in s.tables().await? {
        if table.unlogged {
            problems.push(format!(
                "table {} is unlogged: logical replication does not carry its rows",
                table.name
            ));
        } else if !table.identified {
            problems.push(format!(
                "table {} has no primary key or replica identity: replication cannot apply its updates and \
                 deletes; add a primary key, or ALTER TABLE ... REPLICA IDENTITY FULL",
                table.name
            ));
        }
    }
    let existing = t.tables().await?;
    if !existing.is_empty() {
        let names: Vec<&str> = existing.iter().take(5).map(|t| t.name.as_str()).collect();
        problems.push(format!(
            "the target must be an empty database, and it has {} table(s): {}",
            existing.len(),
            names.join(", ")
        ));
    }
    s.close().await;
    t.close().await;
    Ok(problems)
}

async fn role(server: &mut Server) -> Result<(bool, bool), CutoverError> {
    let rows: Vec<(bool, bool)> = server
        .rows(
            "reading the role",
            "SELECT rolsuper, rolreplication FROM pg_roles WHERE rolname = current_user",
            &[],
        )
        .await?;
    Ok(rows.into_iter().next().unwrap_or((false, false)))
}

/// Our schema and marker on `server`, and the publication of every table
/// (on the target, for the way back), if missing.
async fn publish(server: &mut Server, publication: &str) -> Result<(), CutoverError> {
    server.own_objects().await?;
    if !server.has_publication(publication).await? {
        let mut tables: Vec<String> = server.tables().await?.into_iter().map(|t| t.quoted).collect();
        tables.push(format!("{OWN_SCHEMA}.mark"));
        server
            .exec(
                "creating the publication",
                &format!("CREATE PUBLICATION {publication} FOR TABLE {}", tables.join(", ")),
            )
            .await?;
    }
    Ok(())
}

/// A snapshot of the source that holds exactly the commits before a WAL
/// position, exported for a backup to be taken in, and kept open until
/// [`SeedPoint::release`].
pub(crate) struct SeedPoint {
    /// The exported snapshot's name.
    pub snapshot: String,
    /// The WAL position it matches: replication into the target, seeded
    /// from a backup taken in the snapshot, starts there.
    pub lsn: String,
    holder: Server,
}

impl SeedPoint {
    /// Ends the snapshot's transaction, once the backup is taken.
    pub(crate) async fn release(self) {
        self.holder.close().await;
    }
}

impl std::fmt::Debug for SeedPoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SeedPoint")
            .field("snapshot", &self.snapshot)
            .field("lsn", &self.lsn)
            .finish()
    }
}

/// How long taking the seed point waits for writes in flight to finish.
const SEED_LOCK_TIMEOUT: &str = "10s";

/// Makes the source ready to be seeded from a backup: publishes it, makes
/// the target's replication slot (so the source keeps its WAL from now),
/// then takes a snapshot that matches a WAL position exactly. For that,
/// writes to every published table are held for a moment (`LOCK TABLE
/// ... IN SHARE MODE` in another session, which also waits for writes in
/// flight to commit): the snapshot then holds every commit to them before
/// the position read with it, and none after.
pub(crate) async fn seed_point(state: &State) -> Result<SeedPoint, CutoverError> {
    let mut s = Server::connect(&state.source).await?;
    let publication = state.publication();
    publish(&mut s, &publication).await?;
    s.set_mark().await?;
    let slot = state.subscription_into(Side::Target);
    if !s.has_slot(&slot).await? {
        s.exec(
            "creating the replication slot",
            &format!(
                "SELECT pg_create_logical_replication_slot({}, 'pgoutput')",
                literal(&slot)
            ),
        )
        .await?;
    }
    let tables: Vec<String> = s.tables().await?.into_iter().map(|t| t.quoted).collect();
    let mut lock = Server::connect(&state.source).await?;
    let held = if tables.is_empty() {
        Ok(())
    } else {
        lock.exec(
            "holding writes to take the seed's snapshot (a transaction that writes kept them too long?)",
            &format!(
                "BEGIN; SET LOCAL lock_timeout = '{SEED_LOCK_TIMEOUT}'; LOCK TABLE {}, {OWN_SCHEMA}.mark IN SHARE MODE",
                tables.join(", ")
            ),
        )
        .await
    };
    let point = match held {
        Ok(()) => snapshot_here(&mut s).await,
        Err(e) => Err(e),
    };
    lock.close().await;
    let (snapshot, lsn) = point?;
    Ok(SeedPoint {
        snapshot,
        lsn,
        holder: s,
    })
}

async fn snapshot_here(s: &mut Server) -> Result<(String, String), CutoverError> {
    s.exec(
        "beginning the seed's snapshot",
        "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY",
    )
    .await?;
    let rows: Vec<(String, String)> = s
        .rows(
            "exporting the seed's snapshot",
            // The insert position, not the write position: a commit the
            // snapshot holds may not be written out yet, and must fall
            // before it.
            "SELECT pg_export_snapshot(), pg_current_wal_insert_lsn()::text",
            &[],
        )
        .await?;
    Ok(rows.into_iter().next().unwrap_or_default())
}

/// Replication from the source into the target: our schema and marker on
/// both, a publication of every table on both (the target's for the way
/// back), and the target's subscription, which copies the rows, or, when
/// the target was seeded from a backup, starts from the backup's WAL
/// position with the slot made before it.
pub(crate) async fn start_replication(state: &State) -> Result<(), CutoverError> {
    let mut s = Server::connect(&state.source).await?;
    let mut t = Server::connect(&state.target).await?;
    let publication = state.publication();
    for server in [&mut s, &mut t] {
        publish(server, &publication).await?;
    }
    s.set_mark().await?;
    let subscription = state.subscription_into(Side::Target);
    let seeded_at = state.seed.as_ref().and_then(|seed| seed.lsn.as_deref());
    if !t.has_subscription(&subscription).await? {
        t.exec(
            "creating the subscription (the target connects to the source with the source's URL)",
            &format!(
                "CREATE SUBSCRIPTION {subscription} CONNECTION {} PUBLICATION {publication} WITH ({})",
                literal(&state.source),
                match seeded_at {
                    Some(_) => format!(
                        "create_slot = false, slot_name = {}, copy_data = false, enabled = false",
                        literal(&subscription)
                    ),
                    None => "copy_data = true".into(),
                }
            ),
        )
        .await?;
    }
    if let Some(lsn) = seeded_at {
        // The slot was made before the backup; what came before the
        // backup's position is in the target already.
        s.advance_slot(&subscription, lsn).await?;
        t.exec(
            "enabling the subscription",
            &format!("ALTER SUBSCRIPTION {subscription} ENABLE"),
        )
        .await?;
    }
    s.close().await;
    t.close().await;
    Ok(())
}

/// How far the initial copy has got.
#[derive(Debug, Clone, Copy)]
pub struct SyncProgress {
    /// Tables copied and streaming.
    pub ready: usize,
    /// Tables in all.
    pub tables: usize,
    /// Bytes of the tables copied (their size on the source).
    pub bytes: u64,
    /// Bytes of all the tables.
    pub total_bytes: u64,
}

/// Waits until every table is copied and the target has applied every
/// write the source had when the copy ended; then records the cutover as
/// replicating. Fails if the subscription's workers report errors.
pub(crate) async fn wait_for_sync(
    state: &mut State,
    path: &Path,
    progress: &mut (dyn FnMut(SyncProgress) + Send),
) -> Result<(), CutoverError> {
    let mut s = Server::connect(&state.source).await?;
    let mut t = Server::connect(&state.target).await?;
    let subscription = state.subscription_into(Side::Target);
    let sizes: Vec<(String, i64)> = s
        .rows(
            "reading table sizes",
            "SELECT schemaname || '.' || tablename, pg_table_size(format('%I.%I', schemaname, tablename))::bigint \
             FROM pg_publication_tables WHERE pubname = $1",
            &[&state.publication()],
        )
        .await?;
    let total_bytes: u64 = sizes.iter().map(|(_, b)| *b as u64).sum();
    let errors_before = t.subscription_errors(&subscription).await?;
    let started = Instant::now();
    loop {
        let states = t.sync_states(&subscription).await?;
        let ready: Vec<&String> = states.iter().filter(|(_, s)| s == "r").map(|(n, _)| n).collect();
        let copying: i64 = t
            .optional_int(
                "reading pg_stat_progress_copy",
                "SELECT sum(bytes_processed)::bigint FROM pg_stat_progress_copy WHERE command = 'COPY FROM'",
                &[],
            )
            .await?
            .unwrap_or(0);
        let bytes = sizes
            .iter()
            .filter(|(n, _)| ready.contains(&n))
            .map(|(_, b)| *b as u64)
            .sum::<u64>()
            + copying.max(0) as u64;
        progress(SyncProgress {
            ready: ready.len(),
            tables: states.len(),
            bytes: bytes.min(total_bytes),
            total_bytes,
        });
        if !states.is_empty() && ready.len() == states.len() {
            break;
        }
        let errors = t.subscription_errors(&subscription).await?;
        if errors > errors_before {
            let mut copying: Vec<&str> = states
                .iter()
                .filter(|(_, s)| s != "r")
                .map(|(n, _)| n.as_str())
                .collect();
            // waymark's own marker table waits behind the failing tables'
            // sync workers; naming it would only point away from the cause.
            let ours = format!("{OWN_SCHEMA}.");
            if copying.iter().any(|n| !n.starts_with(&ours)) {
                copying.retain(|n| !n.starts_with(&ours));
            }
            return Err(replication_failed(
                state,
                "copying the tables into",
                errors - errors_before,
                &format!("with {} still to copy", copying.join(", ")),
            ));
        }
        if started.elapsed() > Duration::from_secs(30) && states.is_empty() {
            return Err(CutoverError::Step(format!(
                "the subscription {subscription} has no tables after 30 s; the target server's log says why"
            )));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    // The target has caught up once it applies the source's latest commit.
    // An apply worker that keeps failing (a row applied twice, a
    // constraint only the target has) would keep it from ever doing so.
    let catching_up = Instant::now();
    loop {
        match drain(&mut s, &mut t, Duration::from_secs(2)).await {
            Ok(_) => break,
            Err(CutoverError::Step(late)) => {
                let errors = t.subscription_errors(&subscription).await?;
                if errors > errors_before {
                    return Err(replication_failed(
                        state,
                        "replication into",
                        errors - errors_before,
                        "while catching up",
                    ));
                }
                if catching_up.elapsed() > Duration::from_secs(3600) {
                    return Err(CutoverError::Step(late));
                }
            }
            Err(e) => return Err(e),
        }
    }
    if state.pgbouncer.is_none() && state.route.is_some() {
        // Only the live server takes writes, from now on: with no
        // PgBouncer to keep clients off the target, it is held read-only
        // until traffic moves to it. Replication applies all the same.
        t.fence(Duration::from_secs(2)).await?;
    }
    s.close().await;
    t.close().await;
    state.phase = Phase::Replicating;
    store(state, path).await
}

/// The subscription into the target reported `errors` (`what` the target,
/// `when`): where to look, and what happens next.
fn replication_failed(state: &State, what: &str, errors: i64, when: &str) -> CutoverError {
    CutoverError::Step(format!(
        "{what} {} failed: the subscription {} reported {errors} error(s) (pg_stat_subscription_stats) {when}, \
         and the target server's log says why; replication keeps retrying, and prepare, run again once it is \
         fixed, waits for it",
        waymark_db::redact(&state.target),
        state.subscription_into(Side::Target),
    ))
}

/// Writes a new token into the marker on `from` and waits until `to` has
/// applied it: replication applies commits in order, so `to` then has
/// every write `from` had committed.
pub(crate) async fn drain(from: &mut Server, to: &mut Server, within: Duration) -> Result<Duration, CutoverError> {
    let started = Instant::now();
    let token = from.set_mark().await?;
    loop {
        if to.has_mark(&token).await? {
            return Ok(started.elapsed());
        }
        if started.elapsed() > within {
            return Err(CutoverError::Step(format!(
                "{} had not applied the latest writes of {} after {} ms",
                waymark_db::redact(&to.url),
                waymark_db::redact(&from.url),
                within.as_millis()
            )));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
