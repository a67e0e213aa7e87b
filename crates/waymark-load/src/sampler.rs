//! Which workload sessions waited on a lock, on whom, and for how long:
//! sampled every 50 ms on a connection of the sampler's own. On
//! PostgreSQL each waiting client or reporter session is read from
//! `pg_locks` (its `waitstart`, PostgreSQL 14 and later, gives when the
//! wait began, so a wait's length does not depend on the sampling), with
//! `pg_blocking_pids` for the sessions it waits behind: a blocker that is
//! waymark's executor (`application_name` `waymark`) attributes the wait
//! to the statement that executor is running, or ran last in the
//! transaction that holds the lock. A wait shorter than the interval
//! between two samples can be missed; one that is seen is measured from
//! its start to the last sample that saw it.
//!
//! MySQL/MariaDB are not sampled yet: the report says so rather than
//! reporting no waits.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::clock::Clock;
use crate::conn::{CLIENT_NAME, Conn, REPORTER_NAME, SAMPLER_NAME};
use crate::error::LoadError;

/// How often the sampler looks.
pub const INTERVAL: Duration = Duration::from_millis(50);

/// One wait of a workload session.
#[derive(Debug, Clone, PartialEq)]
pub struct Wait {
    /// `client` or `reporter`.
    pub waiter: &'static str,
    /// What it was running.
    pub query: String,
    /// When the wait began, from the clock's start.
    pub start: Duration,
    /// How long it was seen waiting.
    pub duration: Duration,
    /// Whom it waited behind.
    pub blocker: Blocker,
}

/// Whom a wait was behind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Blocker {
    /// waymark's executor, running (or having run, in the transaction
    /// that holds the lock) this statement.
    Migration { statement: String },
    /// Another session of the workload (rows both write, say).
    Workload,
    /// A session of someone else.
    Other { application: String, statement: String },
}

/// The waits, or why there are none to show.
#[derive(Debug, Clone)]
pub enum Waits {
    Sampled(Vec<Wait>),
    /// Not sampled on this database, or the sampler failed: the reason.
    NotSampled(String),
}

#[derive(Debug)]
pub(crate) struct Sampler {
    stop: Option<watch::Sender<bool>>,
    task: Option<JoinHandle<Waits>>,
    not_sampled: Option<String>,
}

impl Sampler {
    pub(crate) async fn start(url: &str, clock: Arc<Clock>) -> Result<Sampler, LoadError> {
        let conn = Conn::open(url, SAMPLER_NAME).await?;
        if let Conn::MySql(_) = conn {
            conn.close().await;
            return Ok(Sampler {
                stop: None,
                task: None,
                not_sampled: Some(
                    "lock waits are not sampled on MySQL/MariaDB yet: the latencies show them, the report cannot name their blocker"
                        .to_owned(),
                ),
            });
        }
        let (stop, stopped) = watch::channel(false);
        Ok(Sampler {
            stop: Some(stop),
            task: Some(tokio::spawn(sample(conn, clock, stopped))),
            not_sampled: None,
        })
    }

    pub(crate) async fn stop(self) -> Waits {
        if let Some(reason) = self.not_sampled {
            return Waits::NotSampled(reason);
        }
        if let Some(stop) = self.stop {
            let _ = stop.send(true);
        }
        match self.task {
            Some(task) => task
                .await
                .unwrap_or_else(|e| Waits::NotSampled(format!("the lock sampler stopped: {e}"))),
            None => Waits::NotSampled("the lock sampler did not start".to_owned()),
        }
    }
}

const WAITING: &str = "SELECT w.pid, w.application_name::text, left(w.query, 300)::text, \
       extract(epoch FROM l.waitstart)::float8, \
       extract(epoch FROM clock_timestamp() - l.waitstart)::float8, \
       b.application_name::text, left(b.query, 1000)::text \
  FROM pg_stat_activity w \
  JOIN pg_locks l ON l.pid = w.pid AND NOT l.granted AND l.waitstart IS NOT NULL \
  CROSS JOIN LATERAL unnest(pg_blocking_pids(w.pid)) AS bp(pid) \
  JOIN pg_stat_activity b ON b.pid = bp.pid \
 WHERE w.datname = current_database() AND w.application_name IN ($1, $2)";

type Row = (i32, String, String, f64, f64, String, String);

/// The migration's statement in what the executor sent: an atomic
/// attempt's first statement goes with the `BEGIN` and the `SET LOCAL
/// lock_timeout` that open its transaction, which are waymark's, not the
/// migration's.
fn own_statement(sent: &str) -> &str {
    let mut rest = sent.trim();
    loop {
        let lower = rest.get(..24).unwrap_or(rest).to_ascii_lowercase();
        let cut = if lower.starts_with("begin;") {
            "begin;".len()
        } else if lower.starts_with("set local lock_timeout") {
            match rest.find(';') {
                Some(end) => end + 1,
                None => return rest,
            }
        } else {
            return rest;
        };
        rest = rest[cut..].trim_start();
    }
}

async fn sample(mut conn: Conn, clock: Arc<Clock>, mut stopped: watch::Receiver<bool>) -> Waits {
    // A wait is one (session, start) pair; its blocker is the executor if
    // any sample saw the executor among its blockers.
    let mut waits: HashMap<(i32, i64), Wait> = HashMap::new();
    let mut ticks = tokio::time::interval(INTERVAL);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let failure = loop {
        tokio::select! {
            _ = ticks.tick() => {}
            _ = stopped.changed() => break None,
        }
        let Some(pg) = conn.pg() else { break None };
        let now = clock.elapsed();
        let rows: Vec<Row> = match sqlx::query_as(WAITING)
            .bind(CLIENT_NAME)
            .bind(REPORTER_NAME)
            .fetch_all(&mut *pg)
            .await
        {
            Ok(rows) => rows,
            Err(e) => break Some(format!("the lock sampler's query failed: {e}")),
        };
        for (pid, application, query, started_epoch, waited, blocker_app, blocker_query) in rows {
            let waited = Duration::from_secs_f64(waited.max(0.0));
            let blocker = if blocker_app == "waymark" {
                Blocker::Migration {
                    statement: own_statement(&blocker_query).to_owned(),
                }
            } else if blocker_app == CLIENT_NAME || blocker_app == REPORTER_NAME {
                Blocker::Workload
            } else {
                Blocker::Other {
                    application: blocker_app,
                    statement: blocker_query.trim().to_owned(),
                }
            };
            let key = (pid, (started_epoch * 1e6) as i64);
            let wait = waits.entry(key).or_insert_with(|| Wait {
                waiter: if application == REPORTER_NAME {
                    "reporter"
                } else {
                    "client"
                },
                query: query.trim().to_owned(),
                start: now.saturating_sub(waited),
                duration: waited,
                blocker: blocker.clone(),
            });
            wait.duration = wait.duration.max(waited);
            if matches!(blocker, Blocker::Migration { .. }) && !matches!(wait.blocker, Blocker::Migration { .. }) {
                wait.blocker = blocker;
            }
        }
    };
    conn.close().await;
    match failure {
        Some(reason) => Waits::NotSampled(reason),
        None => {
            let mut waits: Vec<Wait> = waits.into_values().collect();
            waits.sort_by_key(|w| w.start);
            Waits::Sampled(waits)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wait_is_attributed_to_the_migrations_statement_not_to_the_transaction_around_it() {
        assert_eq!(
            own_statement("BEGIN; SET LOCAL lock_timeout = 50; CREATE INDEX i ON t (a)"),
            "CREATE INDEX i ON t (a)"
        );
        assert_eq!(
            own_statement("  ALTER TABLE t ADD COLUMN b int"),
            "ALTER TABLE t ADD COLUMN b int"
        );
        assert_eq!(own_statement("begin;\nSET LOCAL lock_timeout = '1s';"), "");
        assert_eq!(own_statement("BEGINNING"), "BEGINNING");
    }
}
