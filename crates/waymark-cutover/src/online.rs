//! Comparing the two servers while the live one takes writes and
//! replication carries them over, exactly, as Vitess's VDiff does: each
//! table is compared between two snapshots that hold the same commits.
//!
//! For each table, writes to it on the live server are held for a moment
//! (`LOCK TABLE ... IN SHARE MODE`, which waits for writers in flight):
//! a snapshot is taken there, the marker is written and waited for on the
//! other server, and a snapshot is taken there too. Then the lock goes,
//! and both snapshots are read range by range at leisure. Writes to other
//! tables never stop; writes to the table stop for one replication round
//! trip.

use std::path::Path;
use std::time::Duration;

use waymark_db::{Conn, Database};

use crate::compare::{CompareOptions, CompareReport, compare_objects, compare_rows, match_tables, user_tables};
use crate::error::CutoverError;
use crate::pg::Server;
use crate::prepare::drain;
use crate::state::{Phase, Side, State};
use crate::switch::connect_options;

/// Compares the two servers of the cutover recorded at `path`, while
/// traffic goes on. Sequences are left out: they follow traffic only when
/// it moves.
pub async fn compare_online(path: &Path, options: &CompareOptions) -> Result<CompareReport, CutoverError> {
    let state = State::load(path)?;
    if state.phase != Phase::Replicating || state.moving.is_some() {
        return Err(CutoverError::State {
            path: path.to_owned(),
            message: "an online comparison needs replication running and no switch under way \
                      (give --source and --target to compare two quiet databases)"
                .into(),
        });
    }
    let source = Database::connect(&connect_options(&state.source)).await?;
    let target = Database::connect(&connect_options(&state.target)).await?;
    let mut live = Server::connect(state.url(state.live)).await?;
    let mut other = Server::connect(state.url(state.live.other())).await?;
    let (mut s, mut t) = (source.connection().await?, target.connection().await?);
    let (source_tables, target_tables) = (user_tables(&mut s).await?, user_tables(&mut t).await?);
    let (both, mut problems) = match_tables(&source_tables, &target_tables);
    problems.extend(compare_objects(&mut s, &mut t).await?);
    drop((s, t));
    let live_db = if state.live == Side::Source { &source } else { &target };
    let mut tables = Vec::new();
    for info in both {
        let mut lock = live_db.begin().await?;
        lock.execute("SET LOCAL lock_timeout = '10s'").await?;
        lock.execute(&format!(
            "LOCK TABLE {} IN SHARE MODE",
            live_db.dialect().quote_table(&info.name)
        ))
        .await?;
        let live_snapshot = snapshot(live_db).await?;
        drain(&mut live, &mut other, Duration::from_secs(60)).await?;
        let other_db = if state.live == Side::Source { &target } else { &source };
        let other_snapshot = snapshot(other_db).await?;
        lock.rollback().await?;
        let (mut s, mut t) = match state.live {
            Side::Source => (live_snapshot, other_snapshot),
            Side::Target => (other_snapshot, live_snapshot),
        };
        let compared = compare_rows(&mut s, &mut t, info, options).await?;
        problems.extend(compared.problems.iter().cloned());
        tables.push(compared);
        s.rollback().await?;
        t.rollback().await?;
    }
    live.close().await;
    other.close().await;
    source.close().await;
    target.close().await;
    Ok(CompareReport { tables, problems })
}

/// A snapshot taken now (a repeatable-read transaction takes its snapshot
/// at its first statement).
async fn snapshot(db: &Database) -> Result<Conn, CutoverError> {
    let mut conn = db.begin_snapshot().await?;
    conn.execute("SELECT 1").await?;
    Ok(conn)
}
