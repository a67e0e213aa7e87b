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
//! MySQL/MariaDB have no `application_name`, and MariaDB ships with
//! `performance_schema`, which names metadata lock holders, turned off.
//! So there the workload's sessions are known by their `CONNECTION_ID()`
//! (registered as each connects, [`Sessions`]), and a wait is read from
//! `information_schema.PROCESSLIST` (a `Waiting for ... lock` state and
//! how long it has lasted) and, for row locks, `INNODB_TRX` with
//! `INNODB_LOCK_WAITS` naming the blocking session. A metadata lock wait
//! is attributed to the session in the scratch database that is not the
//! workload's and is running a statement: there, waymark's executor, so
//! the statement is the migration's. (The scratch database is the
//! rehearsal's own; another program using it would be taken for the
//! migration.) MySQL 8, which has no `TIME_MS` and no
//! `INNODB_LOCK_WAITS`, is read to the second and its row locks' blockers
//! are not named.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
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

impl Wait {
    /// A wait first seen `now`, `waited` long already, by a session of the
    /// workload named `session` (a client's or the reporter's).
    fn new(session: &str, query: &str, now: Duration, waited: Duration, blocker: Blocker) -> Wait {
        Wait {
            waiter: if session == REPORTER_NAME { "reporter" } else { "client" },
            query: query.trim().to_owned(),
            start: now.saturating_sub(waited),
            duration: waited,
            blocker,
        }
    }

    /// The same wait seen again: it lasted at least `waited`, and a sample
    /// that saw the executor among its blockers puts it down to the
    /// migration.
    fn seen_again(&mut self, waited: Duration, blocker: Blocker) {
        self.duration = self.duration.max(waited);
        if matches!(blocker, Blocker::Migration { .. }) && !matches!(self.blocker, Blocker::Migration { .. }) {
            self.blocker = blocker;
        }
    }
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

/// The workload's MySQL/MariaDB sessions by `CONNECTION_ID()`, and
/// whether each is a client or the reporter; a client that reconnects
/// adds its new session.
#[derive(Debug, Default)]
pub(crate) struct Sessions(Mutex<HashMap<u64, &'static str>>);

impl Sessions {
    pub(crate) fn add(&self, id: u64, name: &'static str) {
        self.0.lock().expect("never poisoned").insert(id, name);
    }

    fn name(&self, id: u64) -> Option<&'static str> {
        self.0.lock().expect("never poisoned").get(&id).copied()
    }
}

#[derive(Debug)]
pub(crate) struct Sampler {
    stop: Option<watch::Sender<bool>>,
    task: Option<JoinHandle<Waits>>,
    not_sampled: Option<String>,
}

impl Sampler {
    pub(crate) async fn start(url: &str, clock: Arc<Clock>, sessions: Arc<Sessions>) -> Result<Sampler, LoadError> {
        let conn = Conn::open(url, SAMPLER_NAME).await?;
        let (stop, stopped) = watch::channel(false);
        let task = match conn {
            Conn::Pg(_) => tokio::spawn(sample(conn, clock, stopped)),
            Conn::MySql(_) => tokio::spawn(sample_mysql(conn, clock, sessions, stopped)),
        };
        Ok(Sampler {
            stop: Some(stop),
            task: Some(task),
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
            waits
                .entry(key)
                .or_insert_with(|| Wait::new(&application, &query, now, waited, blocker.clone()))
                .seen_again(waited, blocker);
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

/// The sessions of the scratch database but the sampler's: id, state,
/// milliseconds in that state, statement, command.
const MARIADB_SESSIONS: &str = "SELECT CAST(ID AS SIGNED), CAST(COALESCE(STATE, '') AS CHAR), \
       CAST(TIME_MS AS DOUBLE), CAST(LEFT(COALESCE(INFO, ''), 1000) AS CHAR), CAST(COMMAND AS CHAR) \
  FROM information_schema.PROCESSLIST WHERE DB <=> DATABASE() AND ID <> CONNECTION_ID()";
const MYSQL_SESSIONS: &str = "SELECT CAST(ID AS SIGNED), CAST(COALESCE(STATE, '') AS CHAR), \
       CAST(TIME AS DOUBLE) * 1000, CAST(LEFT(COALESCE(INFO, ''), 1000) AS CHAR), CAST(COMMAND AS CHAR) \
  FROM information_schema.PROCESSLIST WHERE DB <=> DATABASE() AND ID <> CONNECTION_ID()";

/// The transactions waiting for a row lock: the waiting session, seconds
/// waited, its statement and the blocking session.
const MARIADB_ROW_WAITS: &str = "SELECT CAST(r.trx_mysql_thread_id AS SIGNED), \
       CAST(TIMESTAMPDIFF(MICROSECOND, r.trx_wait_started, NOW(6)) AS DOUBLE) / 1e6, \
       CAST(LEFT(COALESCE(r.trx_query, ''), 300) AS CHAR), CAST(b.trx_mysql_thread_id AS SIGNED) \
  FROM information_schema.INNODB_TRX r \
  LEFT JOIN information_schema.INNODB_LOCK_WAITS w ON w.requesting_trx_id = r.trx_id \
  LEFT JOIN information_schema.INNODB_TRX b ON b.trx_id = w.blocking_trx_id \
 WHERE r.trx_state = 'LOCK WAIT'";
const MYSQL_ROW_WAITS: &str = "SELECT CAST(r.trx_mysql_thread_id AS SIGNED), \
       CAST(TIMESTAMPDIFF(MICROSECOND, r.trx_wait_started, NOW(6)) AS DOUBLE) / 1e6, \
       CAST(LEFT(COALESCE(r.trx_query, ''), 300) AS CHAR), CAST(NULL AS SIGNED) \
  FROM information_schema.INNODB_TRX r WHERE r.trx_state = 'LOCK WAIT'";

type Session = (i64, String, f64, String, String);
type RowWait = (i64, f64, String, Option<i64>);

/// What the sampler has seen of the MySQL/MariaDB sessions so far.
#[derive(Default)]
struct MySqlWaits {
    waits: Vec<Wait>,
    /// The wait each session is in, as an index into `waits`.
    ongoing: HashMap<i64, usize>,
    /// The last statement each session outside the workload ran: the
    /// one its transaction holds the lock for, when it is idle now.
    last: HashMap<i64, String>,
}

impl MySqlWaits {
    /// One sample, taken `now` on the clock.
    fn sample(&mut self, now: Duration, sessions: &Sessions, all: &[Session], rows: &[RowWait]) {
        for (id, _, _, info, _) in all {
            if sessions.name(*id as u64).is_none() && !info.is_empty() {
                self.last.insert(*id, own_statement(info).to_owned());
            }
        }
        // The executor: the session outside the workload running a
        // statement, or else holding one in an open transaction.
        let migration = all
            .iter()
            .filter(|(id, ..)| sessions.name(*id as u64).is_none())
            .min_by_key(|(_, _, _, info, command)| (command == "Sleep", info.is_empty()))
            .and_then(|(id, ..)| self.last.get(id))
            .map(|statement| Blocker::Migration {
                statement: statement.clone(),
            });
        let mut waiting: Vec<(i64, &'static str, &str, Duration, Blocker)> = Vec::new();
        for (id, state, ms, info, _) in all {
            let Some(name) = sessions.name(*id as u64) else {
                continue;
            };
            if state.starts_with("Waiting for") && state.contains("lock") {
                let blocker = migration.clone().unwrap_or(Blocker::Workload);
                waiting.push((*id, name, info, Duration::from_secs_f64(ms.max(0.0) / 1000.0), blocker));
            }
        }
        for (id, seconds, query, blocking) in rows {
            let Some(name) = sessions.name(*id as u64) else {
                continue;
            };
            let blocker = match blocking {
                Some(b) if sessions.name(*b as u64).is_some() => Blocker::Workload,
                Some(b) => Blocker::Migration {
                    statement: self.last.get(b).cloned().unwrap_or_default(),
                },
                None => Blocker::Other {
                    application: "a session MySQL does not name".to_owned(),
                    statement: String::new(),
                },
            };
            waiting.push((*id, name, query, Duration::from_secs_f64(seconds.max(0.0)), blocker));
        }
        let mut still: HashMap<i64, usize> = HashMap::new();
        for (id, name, query, waited, blocker) in waiting {
            let start = now.saturating_sub(waited);
            // The same wait as the last sample's if it began at about the
            // same time (the server's clock and ours read apart).
            let same = self.ongoing.get(&id).copied().filter(|&i| {
                let w = &self.waits[i];
                w.query == query.trim() && w.start.abs_diff(start) < INTERVAL * 2
            });
            let index = match same {
                Some(i) => i,
                None => {
                    self.waits.push(Wait::new(name, query, now, waited, blocker.clone()));
                    self.waits.len() - 1
                }
            };
            self.waits[index].seen_again(waited, blocker);
            still.insert(id, index);
        }
        self.ongoing = still;
    }
}

async fn sample_mysql(
    mut conn: Conn,
    clock: Arc<Clock>,
    sessions: Arc<Sessions>,
    mut stopped: watch::Receiver<bool>,
) -> Waits {
    let mut seen = MySqlWaits::default();
    let mut ticks = tokio::time::interval(INTERVAL);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let failure = async {
        let my = conn.mysql().ok_or("not a MySQL/MariaDB connection".to_owned())?;
        let version: String = sqlx::query_scalar("SELECT CAST(VERSION() AS CHAR)")
            .fetch_one(&mut *my)
            .await
            .map_err(|e| format!("the lock sampler could not read the server's version: {e}"))?;
        let (all_sql, rows_sql) = if version.contains("MariaDB") {
            (MARIADB_SESSIONS, MARIADB_ROW_WAITS)
        } else {
            (MYSQL_SESSIONS, MYSQL_ROW_WAITS)
        };
        loop {
            tokio::select! {
                _ = ticks.tick() => {}
                _ = stopped.changed() => return Ok(()),
            }
            let now = clock.elapsed();
            let all: Vec<Session> = sqlx::query_as(all_sql)
                .fetch_all(&mut *my)
                .await
                .map_err(|e| format!("the lock sampler's query failed: {e}"))?;
            let rows: Vec<RowWait> = sqlx::query_as(rows_sql)
                .fetch_all(&mut *my)
                .await
                .map_err(|e| format!("the lock sampler's query failed: {e}"))?;
            seen.sample(now, &sessions, &all, &rows);
        }
    }
    .await
    .err();
    conn.close().await;
    match failure {
        Some(reason) => Waits::NotSampled(reason),
        None => {
            let mut waits = seen.waits;
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

    #[test]
    fn a_mysql_wait_behind_the_executor_is_the_migrations_and_lasts_across_samples() {
        let sessions = Sessions::default();
        sessions.add(11, CLIENT_NAME);
        sessions.add(12, REPORTER_NAME);
        let mut seen = MySqlWaits::default();
        let session = |id: i64, state: &str, ms: f64, info: &str, command: &str| {
            (id, state.to_owned(), ms, info.to_owned(), command.to_owned())
        };
        let reading = session(12, "User sleep", 900.0, "SELECT SLEEP(2)", "Query");
        let alter = session(
            40,
            "Waiting for table metadata lock",
            200.0,
            "ALTER TABLE accounts ADD COLUMN c int",
            "Query",
        );
        let queued = |ms| {
            session(
                11,
                "Waiting for table metadata lock",
                ms,
                "UPDATE accounts SET balance = 1",
                "Query",
            )
        };
        let lock_runner = session(41, "", 5000.0, "", "Sleep");
        let at = Duration::from_millis;
        seen.sample(
            at(1000),
            &sessions,
            &[reading.clone(), alter.clone(), queued(100.0), lock_runner.clone()],
            &[],
        );
        seen.sample(
            at(1050),
            &sessions,
            &[reading, alter, queued(151.0), lock_runner.clone()],
            &[],
        );
        // The alter is done: the client's wait is over; a row lock behind
        // another client follows.
        seen.sample(
            at(1100),
            &sessions,
            &[lock_runner],
            &[(11, 0.02, "UPDATE accounts SET balance = 2".to_owned(), Some(12))],
        );
        assert_eq!(seen.waits.len(), 2, "{:#?}", seen.waits);
        let first = &seen.waits[0];
        assert_eq!(first.waiter, "client");
        assert_eq!(first.start, at(900));
        assert_eq!(first.duration, at(151));
        assert_eq!(
            first.blocker,
            Blocker::Migration {
                statement: "ALTER TABLE accounts ADD COLUMN c int".to_owned()
            }
        );
        assert_eq!(seen.waits[1].blocker, Blocker::Workload);
        assert_eq!(seen.waits[1].query, "UPDATE accounts SET balance = 2");
    }
}
