//! Moving traffic from the live server to the other one (`switch`, and
//! `rollback`, which is the same move back), finishing or undoing a move a
//! dead runner left, and removing replication at the end (`complete`).
//!
//! A move runs within one deadline. Its steps are recorded before and
//! after each is taken; until traffic points at the new server, any
//! failure (or the deadline) undoes the steps taken, in reverse, and
//! resumes traffic on the old server. Replication back into the old
//! server starts before traffic moves, from a slot made while writes are
//! held, so no acknowledged write is missed either way.
//!
//! Writes are held by PgBouncer's `PAUSE` when there is one; otherwise by
//! making the old server's database read-only and ending its sessions
//! (clients see errors, not a pause), and a route command moves traffic.
//! Then the server left stays read-only, so only the live one takes
//! writes.

use std::path::Path;
use std::time::{Duration, Instant};

use serde::Serialize;
use waymark_db::{ConnectOptions, Database};

use crate::compare::{CompareOptions, compare};
use crate::error::CutoverError;
use crate::pg::{OWN_SCHEMA, Server, literal};
use crate::prepare::drain;
use crate::state::{Move, Phase, RunnerLock, Side, State, Step, now_ms};
use crate::status::{Limits, check};

/// Starts a watcher over a move, given the state file's path.
pub type Guard = Box<dyn Fn(&Path) -> std::io::Result<()> + Send + Sync>;

/// How to move traffic.
pub struct SwitchOptions {
    /// The guardrails' limits.
    pub limits: Limits,
    /// Everything from pausing writes to resuming them must fit in this.
    pub deadline: Duration,
    /// Compare every table of the two servers while writes are held.
    pub final_check: bool,
    /// Starts a process that finishes or undoes the move if this runner
    /// dies while writes are held: called with the state file's path
    /// before anything is paused.
    pub guard: Option<Guard>,
}

impl std::fmt::Debug for SwitchOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SwitchOptions")
            .field("limits", &self.limits)
            .field("deadline", &self.deadline)
            .field("final_check", &self.final_check)
            .field("guard", &self.guard.is_some())
            .finish()
    }
}

/// A move done.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct SwitchReport {
    /// Where traffic goes now.
    pub live: Side,
    /// How long writes were held, in milliseconds.
    pub pause_ms: u64,
    /// Of which: waiting for the new server to apply the last writes.
    pub drain_ms: u64,
    /// Of which: the final comparison, if made.
    pub check_ms: Option<u64>,
    /// What a dead runner's move needed first: `finished` or `undone`.
    pub recovered: Option<String>,
    /// Whether replication back into the server left was running when the
    /// switch returned.
    pub replicating_back: bool,
}

/// Bytes of table a final comparison gets through per second, both
/// servers at once, as measured under load on 2 cores (pgbench scale 50:
/// 750 MB in 6.5 to 17 s; docs/BENCHMARKS.md; the slowest machine's rate,
/// so the estimate errs long): to tell before pausing whether it can fit
/// in the deadline.
const CHECK_RATE: f64 = 40e6;

/// How long a switch waits, after writes resume, for replication back to
/// start.
const BACK_STARTS: Duration = Duration::from_secs(15);

/// Waits up to `within` for the subscription's apply worker to run.
async fn wait_running(server: &mut Server, subscription: &str, within: Duration) -> Result<bool, CutoverError> {
    let started = Instant::now();
    loop {
        if server.subscription_running(subscription).await? {
            return Ok(true);
        }
        if started.elapsed() > within {
            return Ok(false);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Moves traffic to `to`.
pub async fn switch(path: &Path, to: Side, options: &SwitchOptions) -> Result<SwitchReport, CutoverError> {
    let _lock = RunnerLock::take(path)?;
    let mut state = State::load(path)?;
    let recovered = recover(&mut state, path).await?;
    if state.phase != Phase::Replicating {
        return Err(CutoverError::State {
            path: path.to_owned(),
            message: format!(
                "the cutover is {}: traffic moves only while replication runs",
                serde_json::to_value(state.phase).unwrap_or_default()
            ),
        });
    }
    if state.live == to {
        if recovered.as_deref() == Some("finished") {
            let mut old = Server::connect(state.url(to.other())).await?;
            let replicating_back = wait_running(&mut old, &state.subscription_into(to.other()), BACK_STARTS).await?;
            old.close().await;
            return Ok(SwitchReport {
                live: to,
                pause_ms: 0,
                drain_ms: 0,
                check_ms: None,
                recovered,
                replicating_back,
            });
        }
        return Err(CutoverError::State {
            path: path.to_owned(),
            message: format!("traffic already goes to the {}", to.name()),
        });
    }
    if state.pgbouncer.is_none() && state.route.is_none() {
        return Err(CutoverError::State {
            path: path.to_owned(),
            message: "neither PgBouncer nor a route command was given at prepare, so there is no way to \
                      move traffic; prepare again with --pgbouncer or --route-command"
                .into(),
        });
    }
    let from = to.other();
    let mut old = Server::connect(state.url(from)).await?;
    let mut new = Server::connect(state.url(to)).await?;
    let mut failed: Vec<String> = check(&state, &mut old, &mut new, &options.limits)
        .await?
        .guardrails
        .into_iter()
        .filter(|g| !g.passed)
        .map(|g| format!("{}: {}", g.name, g.detail))
        .collect();
    if options.final_check {
        let bytes = old.published_bytes(&state.publication()).await?;
        let estimate = Duration::from_secs_f64(bytes as f64 / CHECK_RATE);
        if estimate > options.deadline / 2 {
            failed.push(format!(
                "final check: comparing {} MB of tables while writes are held would take about {:.1} s, more \
                 than half the deadline of {:?}; run `waymark cutover verify` (online) first and switch with \
                 --no-final-check, or give a longer --deadline",
                bytes / 1_000_000,
                estimate.as_secs_f64(),
                options.deadline
            ));
        }
    }
    if !failed.is_empty() {
        return Err(CutoverError::Refused {
            what: format!("switch to the {} refused, and nothing was paused", to.name()),
            problems: failed,
        });
    }
    let mut console = open_console(&state).await?;
    state.moving = Some(Move {
        to,
        step: Step::Started,
        deadline_ms: now_ms() + options.deadline.as_millis() as u64,
        runner: std::process::id(),
    });
    store_with(&state, path, target_of(to, &mut old, &mut new)).await?;
    if let Some(guard) = &options.guard {
        guard(path).map_err(|e| CutoverError::io(path, e))?;
    }
    waymark_db::crash_point(Step::Started.name());

    let paused_at = Instant::now();
    let mut timings = (0u64, None);
    let steps = take_steps(
        &mut state,
        path,
        &mut console,
        &mut old,
        &mut new,
        options,
        &mut timings,
    );
    let outcome = match tokio::time::timeout(options.deadline, steps).await {
        Ok(result) => result,
        Err(_) => Err(CutoverError::Step(format!(
            "the switch did not finish within its deadline of {:?}",
            options.deadline
        ))),
    };
    match outcome {
        Ok(()) => {
            release(console.as_mut(), &mut new).await?;
            let pause_ms = paused_at.elapsed().as_millis() as u64;
            state.moving = None;
            store_with(&state, path, target_of(to, &mut old, &mut new)).await?;
            close_console(console).await;
            // Writes to the new server wait in the new slot whatever
            // happens; but the next move's guardrails want replication back
            // running, and PostgreSQL 15's launcher starts at most one
            // worker per wal_retrieve_retry_interval (5 s by default).
            let replicating_back = wait_running(&mut old, &state.subscription_into(from), BACK_STARTS).await?;
            old.close().await;
            new.close().await;
            Ok(SwitchReport {
                live: to,
                pause_ms,
                drain_ms: timings.0,
                check_ms: timings.1,
                recovered,
                replicating_back,
            })
        }
        Err(cause) => {
            let cause = cause.to_string();
            tracing::warn!("switch failed, undoing it: {cause}");
            match undo(&mut state, path).await {
                Ok(()) => Err(CutoverError::Undone {
                    cause,
                    live: from.name(),
                    pause_ms: paused_at.elapsed().as_millis() as u64,
                }),
                Err(e) => Err(CutoverError::UndoFailed {
                    cause,
                    undo: e.to_string(),
                }),
            }
        }
    }
}

/// The steps of a move, from pausing to repointing, each recorded.
async fn take_steps(
    state: &mut State,
    path: &Path,
    console: &mut Option<crate::pgbouncer::Console>,
    old: &mut Server,
    new: &mut Server,
    options: &SwitchOptions,
    timings: &mut (u64, Option<u64>),
) -> Result<(), CutoverError> {
    let to = state.moving.as_ref().expect("a move is under way").to;
    let from = to.other();

    match console {
        Some(console) => console.pause().await?,
        None => {
            let ended = old.fence(options.deadline / 5).await?;
            tracing::info!("the {} is read-only; {ended} session(s) ended", from.name());
        }
    }
    step(state, path, target_of(to, old, new), Step::Paused).await?;

    timings.0 = drain(old, new, options.deadline).await?.as_millis() as u64;
    step(state, path, target_of(to, old, new), Step::Drained).await?;

    let old_db = Database::connect(&connect_options(state.url(from))).await?;
    let new_db = Database::connect(&connect_options(state.url(to))).await?;
    let sequences = old_db.connection().await?.sequences().await?;
    new_db.connection().await?.set_sequences(&sequences).await?;
    if options.final_check {
        let started = Instant::now();
        let report = compare(&old_db, &new_db, &CompareOptions::default()).await;
        timings.1 = Some(started.elapsed().as_millis() as u64);
        let report = report?;
        if !report.matches() {
            old_db.close().await;
            new_db.close().await;
            return Err(CutoverError::Step(format!(
                "the final comparison found the {} differs from the {}:\n  - {}\n",
                to.name(),
                from.name(),
                report.problems.join("\n  - ")
            )));
        }
    }
    old_db.close().await;
    new_db.close().await;

    let into_new = state.subscription_into(to);
    new.exec("dropping the subscription", &format!("DROP SUBSCRIPTION {into_new}"))
        .await?;
    step(state, path, target_of(to, old, new), Step::OldSubscriptionDropped).await?;

    subscribe(state, old, from).await?;
    step(state, path, target_of(to, old, new), Step::NewSubscriptionCreated).await?;

    point_traffic(state, console.as_mut(), to).await?;
    state.live = to;
    step(state, path, target_of(to, old, new), Step::Repointed).await?;
    Ok(())
}

/// Points PgBouncer, and the route command if there is one, at `side`.
/// Writes stay held.
async fn point_traffic(
    state: &State,
    console: Option<&mut crate::pgbouncer::Console>,
    side: Side,
) -> Result<(), CutoverError> {
    if let (Some(bouncer), Some(console)) = (&state.pgbouncer, console) {
        bouncer.repoint(state.url(side))?;
        console.reload().await?;
    }
    if let Some(command) = &state.route {
        crate::route::route(command, side, state.url(side)).await?;
    }
    Ok(())
}

/// PgBouncer's console, when traffic goes through PgBouncer.
async fn open_console(state: &State) -> Result<Option<crate::pgbouncer::Console>, CutoverError> {
    match &state.pgbouncer {
        Some(bouncer) => Ok(Some(bouncer.console().await?)),
        None => Ok(None),
    }
}

async fn close_console(console: Option<crate::pgbouncer::Console>) {
    if let Some(console) = console {
        console.close().await;
    }
}

/// Lets writes go on at the live server: PgBouncer resumes, or, without
/// one, the live server (`live`, connected) stops being read-only if a
/// move left it so.
async fn release(console: Option<&mut crate::pgbouncer::Console>, live: &mut Server) -> Result<(), CutoverError> {
    match console {
        Some(console) => console.resume().await,
        None => live.unfence().await.map(drop),
    }
}

/// Creates the subscription into `side` (on `server`, which is that side),
/// from a slot made now on the other server, without copying: writes are
/// held, so nothing falls between the two.
async fn subscribe(state: &State, server: &mut Server, side: Side) -> Result<(), CutoverError> {
    let other = side.other();
    let name = state.subscription_into(side);
    if server.has_subscription(&name).await? {
        return Ok(());
    }
    let mut publisher = Server::connect(state.url(other)).await?;
    // PostgreSQL 16 can leave out what a subscription itself applied; on
    // older servers the subscription the other way is gone by now, so
    // nothing loops.
    let both_16 = server.major().await? >= 16 && publisher.major().await? >= 16;
    if publisher.has_slot(&name).await? {
        publisher
            .exec(
                "dropping a slot left by an earlier subscription",
                &format!("SELECT pg_drop_replication_slot({})", literal(&name)),
            )
            .await?;
    }
    publisher.close().await;
    server
        .exec(
            "creating the subscription",
            &format!(
                "CREATE SUBSCRIPTION {name} CONNECTION {} PUBLICATION {} WITH (copy_data = false{})",
                literal(state.url(other)),
                state.publication(),
                if both_16 { ", origin = none" } else { "" }
            ),
        )
        .await
}

/// Records `step` of the move; a crash point of the same name follows
/// (`waymark_db::crash_point`), where the tests stop the process as a
/// kill would.
async fn step(state: &mut State, path: &Path, target: &mut Server, step: Step) -> Result<(), CutoverError> {
    if let Some(m) = &mut state.moving {
        m.step = step;
    }
    store_with(state, path, target).await?;
    waymark_db::crash_point(step.name());
    Ok(())
}

/// Writes the state file, then its mirror into `server`, the target.
async fn store_with(state: &State, path: &Path, server: &mut Server) -> Result<(), CutoverError> {
    state.store(path)?;
    let json = serde_json::to_string(&state.redacted()).expect("the state serializes");
    server.mirror(&state.id, &json).await
}

/// Of the servers moved from and to, the target.
fn target_of<'a>(to: Side, old: &'a mut Server, new: &'a mut Server) -> &'a mut Server {
    match to {
        Side::Target => new,
        Side::Source => old,
    }
}

/// Writes the state file and its mirror in the target.
pub(crate) async fn store(state: &State, path: &Path) -> Result<(), CutoverError> {
    let mut target = Server::connect(&state.target).await?;
    let result = store_with(state, path, &mut target).await;
    target.close().await;
    result
}

/// Finishes or undoes a move a runner left: finished if PgBouncer already
/// points at the new server, undone otherwise. Returns what was done.
pub async fn recover(state: &mut State, path: &Path) -> Result<Option<String>, CutoverError> {
    let Some(moving) = state.moving.clone() else {
        return Ok(None);
    };
    if moving.step >= Step::Repointed {
        tracing::warn!("finishing the switch to the {} that a runner left", moving.to.name());
        match open_console(state).await? {
            Some(mut console) => {
                console.resume().await?;
                console.close().await;
            }
            // Without PgBouncer, the live server stops being read-only if
            // a move left it so.
            None => {
                let mut live = Server::connect(state.url(moving.to)).await?;
                let released = live.unfence().await;
                live.close().await;
                released?;
            }
        }
        state.moving = None;
        store(state, path).await?;
        Ok(Some("finished".into()))
    } else {
        tracing::warn!(
            "undoing the switch to the {} that a runner left after step {}",
            moving.to.name(),
            moving.step.name()
        );
        undo(state, path).await?;
        Ok(Some("undone".into()))
    }
}

/// Undoes the steps of an unfinished move, newest first, and resumes
/// traffic on the server it was leaving. Each undo is safe to repeat.
async fn undo(state: &mut State, path: &Path) -> Result<(), CutoverError> {
    let moving = state.moving.clone().expect("a move to undo");
    let (to, from) = (moving.to, moving.to.other());
    let mut old = Server::connect(state.url(from)).await?;
    let mut new = Server::connect(state.url(to)).await?;
    if moving.step >= Step::NewSubscriptionCreated || old.has_subscription(&state.subscription_into(from)).await? {
        old.exec(
            "dropping the subscription back",
            &format!("DROP SUBSCRIPTION IF EXISTS {}", state.subscription_into(from)),
        )
        .await?;
    }
    // Replication into the new server, from now on: writes were held all
    // the while, so nothing happened on the old one since it stopped.
    subscribe(state, &mut new, to).await?;
    // The launcher starts the subscription's worker a moment after the
    // commit, and a switch run right after this undo checks that it runs:
    // wait for it, a while at most (if it never starts, the readiness
    // check says so).
    let subscription = state.subscription_into(to);
    let waiting = std::time::Instant::now();
    while !new.subscription_running(&subscription).await? && waiting.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    state.live = from;
    let mut console = open_console(state).await?;
    point_traffic(state, console.as_mut(), from).await?;
    release(console.as_mut(), &mut old).await?;
    close_console(console).await;
    state.moving = None;
    store_with(state, path, target_of(to, &mut old, &mut new)).await?;
    old.close().await;
    new.close().await;
    Ok(())
}

/// Watches over a move for its runner: once the runner has died, or the
/// deadline is two seconds past, finishes or undoes the move, so writes
/// are never held much longer than the deadline.
pub async fn guard(path: &Path) -> Result<Option<String>, CutoverError> {
    let Some(watched) = State::load(path)?.moving else {
        return Ok(None);
    };
    loop {
        let mut state = State::load(path)?;
        match &state.moving {
            Some(m) if m.runner == watched.runner => {}
            _ => return Ok(None),
        }
        if !alive(watched.runner) || now_ms() > watched.deadline_ms + 2000 {
            return recover(&mut state, path).await;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Whether the process runs (and is not a zombie waiting to be reaped).
fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

/// Removes replication in both directions, once the live server is to
/// stay: subscriptions (with their slots), publications and our schema
/// (with the state's mirror; the state file remains).
pub async fn complete(path: &Path) -> Result<Side, CutoverError> {
    let _lock = RunnerLock::take(path)?;
    let mut state = State::load(path)?;
    recover(&mut state, path).await?;
    if state.phase == Phase::Completed {
        return Ok(state.live);
    }
    // Subscriptions first, on both servers: each drops its slot on the
    // other, which needs the publication's server still answering.
    let mut servers = [
        (Side::Source, Server::connect(&state.source).await?),
        (Side::Target, Server::connect(&state.target).await?),
    ];
    let removals = |side: Side| {
        [
            (
                "dropping the subscription",
                format!("DROP SUBSCRIPTION IF EXISTS {}", state.subscription_into(side)),
            ),
            (
                "dropping the publication",
                format!("DROP PUBLICATION IF EXISTS {}", state.publication()),
            ),
            (
                "dropping the waymark_cutover schema",
                format!("DROP SCHEMA IF EXISTS {OWN_SCHEMA} CASCADE"),
            ),
        ]
    };
    for step in 0..3 {
        for (side, server) in &mut servers {
            let (what, sql) = &removals(*side)[step];
            server.exec(what, sql).await?;
        }
    }
    // A slot no subscription took over: made for seeding by a prepare
    // that stopped before subscribing. Left, it would keep WAL forever.
    for (side, server) in &mut servers {
        server
            .exec(
                "dropping a replication slot left unused",
                &format!(
                    "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots \
                     WHERE slot_name = {} AND NOT active",
                    literal(&state.subscription_into(side.other()))
                ),
            )
            .await?;
    }
    for (_, server) in servers {
        server.close().await;
    }
    state.phase = Phase::Completed;
    state.store(path)?;
    Ok(state.live)
}

pub(crate) fn connect_options(url: &str) -> ConnectOptions {
    ConnectOptions {
        url: url.to_owned(),
        // Sequences are set on a server held read-only.
        init_sql: vec!["SET default_transaction_read_only = off".into()],
        history: Default::default(),
        lock_timeout: Duration::from_secs(10),
        lock_wait: None,
        connect_timeout: None,
        create: true,
    }
}
