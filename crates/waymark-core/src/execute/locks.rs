//! Never queue behind a lock: every statement of a migration waits for a
//! lock at most [`LockPolicy::timeout`]; one that times out is tried again
//! within a budget of attempts and time, and each timed-out attempt names
//! the sessions it waited for.
//!
//! While waymark waits for a lock, every later query on the table waits
//! behind it, so each wait costs the application as long as it lasts.
//! Hence three habits:
//!
//! - A migration that runs in one transaction waits briefly at first
//!   ([`LockPolicy::first_timeout`], 50 ms) and twice as long on each
//!   attempt after, up to the timeout: most locks are held by short
//!   transactions that end within the first wait, and a long one costs
//!   the application one short wait, not a long one.
//! - Between attempts waymark waits *outside* the queue. Where the server
//!   names exactly who held the lock (PostgreSQL's `pg_blocking_pids`;
//!   MySQL's and MariaDB's `performance_schema.metadata_locks` where its
//!   instrument is on), it waits until each of those transactions has
//!   ended, then tries again at once: the moment the lock is free, not a
//!   guess. Elsewhere it pauses for a growing, jittered time.
//! - What is tried again is what left nothing behind: a whole migration
//!   that runs in one transaction (rolled back with the locks it held), or
//!   one statement run outside a transaction (which did nothing, having
//!   never got its lock).

use std::time::{Duration, Instant};

use waymark_db::{Blocker, Database, DbError, Dialect};

/// How migrations wait for locks (`[locks]` in waymark.toml).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockPolicy {
    /// How long one statement may wait for a lock; `None` leaves the
    /// server's own setting (PostgreSQL: forever, unless `lock_timeout` is
    /// set; MySQL: `lock_wait_timeout`, a year by default).
    pub timeout: Option<Duration>,
    /// How long the first attempt of a migration that runs in one
    /// transaction waits, on PostgreSQL; each later attempt waits twice as
    /// long as the one before, up to `timeout`. (MySQL counts its lock
    /// wait in whole seconds, and a statement outside a transaction keeps
    /// its session's bound: those wait `timeout` every time.)
    pub first_timeout: Duration,
    /// How many times a migration or statement is tried again after its
    /// lock wait timed out.
    pub retries: u32,
    /// The longest a migration spends on all its attempts together,
    /// pauses included.
    pub max_wait: Duration,
}

impl Default for LockPolicy {
    /// One second at most per attempt, as Reshape waits, from 50 ms at
    /// first; twenty attempts within two minutes.
    fn default() -> Self {
        LockPolicy {
            timeout: Some(Duration::from_secs(1)),
            first_timeout: Duration::from_millis(50),
            retries: 20,
            max_wait: Duration::from_secs(120),
        }
    }
}

/// A lock wait that timed out and is tried again, as it is told.
#[derive(Debug, Clone)]
pub struct LockRetry {
    /// The database.
    pub target: String,
    /// The migration.
    pub label: String,
    /// The attempt that timed out, from 1.
    pub attempt: u32,
    /// How many attempts the budget allows.
    pub budget: u32,
    /// What timed out and who held the lock.
    pub wait: String,
    /// The longest the pause before the next attempt lasts.
    pub pause: Duration,
    /// The sessions whose transactions the pause waits out, if it does:
    /// the next attempt starts as soon as they have all ended.
    pub until_ended: Vec<i64>,
    /// What the next attempt runs again.
    pub retried: Retried,
}

/// What is tried again after a lock wait timed out: what left nothing
/// behind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Retried {
    /// The statement alone, which ran outside a transaction and never got
    /// its lock.
    Statement,
    /// The whole migration, whose transaction was rolled back.
    Migration,
    /// A batched step from its last commit point: the batch in flight was
    /// rolled back, and what was committed before it stays.
    FromCheckpoint,
}

/// Hears of each lock wait that timed out and is tried again.
pub type OnLockRetry = std::sync::Arc<dyn Fn(&LockRetry) + Send + Sync>;

/// The first pause where blockers cannot be waited out, before it doubles.
const FIRST_PAUSE: Duration = Duration::from_millis(250);
/// The longest such pause.
const LONGEST_PAUSE: Duration = Duration::from_secs(10);

/// A statement that gave up waiting for a lock, and whom it waited for.
#[derive(Debug, Clone)]
pub(crate) struct LockWait {
    /// The statement, on one line.
    pub(crate) statement: String,
    /// How long it waited.
    pub(crate) waited: Duration,
    /// The sessions holding what it waited for, as seen while it waited.
    pub(crate) blockers: Vec<Blocker>,
    /// When it was tried more than once: how often, and for how long.
    pub(crate) tried: Option<(u32, Duration)>,
}

impl std::fmt::Display for LockWait {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "`{}` gave up waiting for a lock after {} ms",
            self.statement,
            self.waited.as_millis()
        )?;
        match self.blockers.as_slice() {
            [] => write!(f, " (the session holding it had gone before it could be named)")?,
            [one] => write!(f, "; it is held by {one}")?,
            many => {
                let list: Vec<String> = many.iter().map(ToString::to_string).collect();
                write!(f, "; it is held by {}", list.join("; and by "))?;
            }
        }
        match self.tried {
            Some((attempts, took)) => write!(f, "{}", gave_up(attempts, took)),
            None => Ok(()),
        }
    }
}

/// What a lock wait adds once the budget of attempts is spent.
pub(crate) fn gave_up(attempts: u32, took: Duration) -> String {
    format!(
        "; waymark gave up after {attempts} attempts in {:.1} s",
        took.as_secs_f64()
    )
}

/// The attempts of one migration or statement: how long each may wait
/// for a lock, and when the next may start.
#[derive(Debug)]
pub(crate) struct Attempts {
    started: Instant,
    retries_left: u32,
    max_wait: Duration,
    next_pause: Duration,
    /// 1 for the first attempt.
    pub(crate) attempt: u32,
    seed: u64,
    /// This attempt's bound on a lock wait, where it is not the session's.
    lock_wait: Option<Duration>,
    /// The longest any attempt waits: the policy's timeout.
    timeout: Option<Duration>,
}

/// What comes between two attempts.
#[derive(Debug, Clone)]
pub(crate) struct Pause {
    /// The longest it lasts.
    pub(crate) at_most: Duration,
    /// The sessions whose transactions it waits out; none: it lasts
    /// `at_most`.
    pub(crate) until_ended: Vec<Blocker>,
    /// How long it lasts if asking whether they have ended fails.
    backoff: Duration,
}

impl Attempts {
    /// The attempts of one statement outside a transaction: each waits as
    /// long as its session's bound.
    pub(crate) fn new(policy: &LockPolicy) -> Self {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64)
            ^ u64::from(std::process::id()).rotate_left(32);
        Attempts {
            started: Instant::now(),
            retries_left: policy.retries,
            max_wait: policy.max_wait,
            next_pause: FIRST_PAUSE,
            attempt: 1,
            seed: seed | 1,
            lock_wait: None,
            timeout: policy.timeout,
        }
    }

    /// The attempts of a whole migration in one transaction, whose lock
    /// waits grow from the policy's first timeout to its timeout, on
    /// PostgreSQL (whose bound can be the transaction's own).
    pub(crate) fn ramped(policy: &LockPolicy, dialect: Dialect) -> Self {
        let mut attempts = Attempts::new(policy);
        if dialect == Dialect::Postgres {
            attempts.lock_wait = policy.timeout.map(|t| policy.first_timeout.min(t));
        }
        attempts
    }

    /// This attempt's bound on a lock wait, where it is not the session's.
    pub(crate) fn lock_wait(&self) -> Option<Duration> {
        self.lock_wait
    }

    /// How long this attempt may wait for a lock, as far as is known.
    pub(crate) fn waits(&self) -> Option<Duration> {
        self.lock_wait.or(self.timeout)
    }

    /// After an attempt gave up `wait`ing for a lock: the pause before the
    /// next attempt, or `None` when the budget is spent.
    ///
    /// Where the server named who held the lock, the pause waits for their
    /// transactions to end, for as long as the budget leaves room for one
    /// more attempt. Otherwise it lasts a growing time, half fixed and half
    /// random ("equal jitter"), so that runners that collided do not
    /// collide again.
    pub(crate) fn next(&mut self, wait: &LockWait) -> Option<Pause> {
        if self.retries_left == 0 {
            return None;
        }
        let half = self.next_pause / 2;
        let backoff = half + half.mul_f64(self.random());
        let this_wait = self.waits().unwrap_or_default();
        // A wait that ended because an old transaction held the lock says
        // nothing of how long the next should be; one that ended while
        // only young ones did was too short for the traffic.
        let explained = wait
            .blockers
            .iter()
            .any(|b| b.transaction_for.is_some_and(|open| open >= this_wait));
        let next_wait = match (self.lock_wait, self.timeout) {
            (Some(w), Some(cap)) if !explained => Some((w * 2).min(cap)),
            (w, _) => w,
        };
        let elapsed = self.started.elapsed();
        // Only a blocker the server named can be waited out: a guessed one
        // may not hold the lock at all.
        let until_ended: Vec<Blocker> = wait
            .blockers
            .iter()
            .filter(|b| b.exact && b.transaction.is_some())
            .cloned()
            .collect();
        let at_most = if until_ended.is_empty() {
            backoff
        } else {
            // Room for the next attempt's own wait.
            let next_takes = next_wait.or(self.timeout).unwrap_or_default();
            self.max_wait.saturating_sub(elapsed + next_takes)
        };
        if at_most.is_zero() || elapsed + at_most >= self.max_wait {
            return None;
        }
        self.retries_left -= 1;
        self.attempt += 1;
        self.next_pause = (self.next_pause * 2).min(LONGEST_PAUSE);
        self.lock_wait = next_wait;
        Some(Pause {
            at_most,
            backoff: backoff.min(at_most),
            until_ended,
        })
    }

    /// How many attempts there may be in all.
    pub(crate) fn budget(&self) -> u32 {
        self.attempt + self.retries_left
    }

    /// How long the attempts have taken so far.
    pub(crate) fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// A number in [0, 1) (xorshift64*: no dependency for a pause).
    fn random(&mut self) -> f64 {
        self.seed ^= self.seed >> 12;
        self.seed ^= self.seed << 25;
        self.seed ^= self.seed >> 27;
        (self.seed.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11) as f64 / (1u64 << 53) as f64
    }
}

impl Pause {
    /// Waits it out: until the blockers' transactions have all ended (or
    /// `at_most`), or for `at_most` where there are none to wait for.
    pub(crate) async fn wait(&self, db: &Database) {
        if self.until_ended.is_empty() {
            tokio::time::sleep(self.at_most).await;
            return;
        }
        let deadline = Instant::now() + self.at_most;
        loop {
            match db.still_open(&self.until_ended).await {
                Ok(open) if open.is_empty() => return,
                Ok(_) => {}
                Err(e) => {
                    tracing::debug!("asking whether the sessions holding a lock have finished: {e}");
                    tokio::time::sleep(self.backoff).await;
                    return;
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return;
            }
            tokio::time::sleep(db.still_open_every().min(left)).await;
        }
    }

    /// The process ids it waits for.
    pub(crate) fn pids(&self) -> Vec<i64> {
        self.until_ended.iter().map(|b| b.pid).collect()
    }
}

/// Where a statement's wait is watched from: another of the database's
/// connections.
#[derive(Debug, Clone)]
pub(crate) struct Watch {
    pub(crate) db: Database,
    /// How long a statement runs before its blockers are looked up: most
    /// of its lock wait, so that they are seen while still blocking, and
    /// early enough that the lookup is back before the wait ends.
    pub(crate) after: Duration,
}

impl Watch {
    /// A watch of statements on `db` whose lock waits end after `wait`.
    /// SQLite has no other sessions to name (and its one connection is the
    /// migration's).
    pub(crate) fn of(db: &Database, wait: Option<Duration>) -> Option<Watch> {
        if db.dialect() == waymark_db::Dialect::Sqlite {
            return None;
        }
        wait.map(|wait| Watch {
            db: db.clone(),
            after: wait
                .mul_f64(0.7)
                .min(wait.saturating_sub(Duration::from_millis(30)))
                .max(wait / 3),
        })
    }
}

/// Runs `statement`, and if it is still running when the watch says,
/// looks up the sessions it waits for. A lookup that fails, or that cannot
/// get a connection at once, names no one: it never holds the statement up.
pub(crate) async fn watched<T>(
    statement: impl std::future::Future<Output = Result<T, DbError>>,
    watch: Option<&Watch>,
) -> (Result<T, DbError>, Vec<Blocker>) {
    let Some(watch) = watch else {
        return (statement.await, Vec::new());
    };
    tokio::pin!(statement);
    tokio::select! {
        done = &mut statement => (done, Vec::new()),
        () = tokio::time::sleep(watch.after) => {
            let lookup = tokio::time::timeout(Duration::from_millis(500), watch.db.lock_blockers());
            let blockers = match lookup.await {
                Ok(Ok(blockers)) => blockers,
                Ok(Err(e)) => {
                    tracing::debug!("looking up who holds a lock: {e}");
                    Vec::new()
                }
                Err(_) => Vec::new(),
            };
            (statement.await, blockers)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blocker(pid: i64, open: Option<Duration>) -> Blocker {
        Blocker {
            pid,
            user: Some("app".into()),
            application: None,
            state: Some("idle in transaction".into()),
            query: Some("SELECT 1".into()),
            transaction_for: open,
            transaction: open.map(|_| format!("begun by {pid}")),
            holds: None,
            exact: true,
        }
    }

    fn timed_out(blockers: Vec<Blocker>) -> LockWait {
        LockWait {
            statement: "ALTER TABLE t ADD c int".into(),
            waited: Duration::from_millis(50),
            blockers,
            tried: None,
        }
    }

    fn policy(retries: u32, max_wait: Duration) -> LockPolicy {
        LockPolicy {
            retries,
            max_wait,
            ..LockPolicy::default()
        }
    }

    #[test]
    fn pauses_grow_with_jitter_and_stop_at_the_budget() {
        let policy = policy(8, Duration::from_secs(3600));
        // Nobody named, so each pause is a time.
        let mut attempts = Attempts::new(&policy);
        assert_eq!(attempts.budget(), 9);
        let unnamed = timed_out(Vec::new());
        let pauses: Vec<Duration> = std::iter::from_fn(|| attempts.next(&unnamed).map(|p| p.at_most)).collect();
        assert_eq!(pauses.len(), 8, "{pauses:?}");
        assert_eq!(attempts.attempt, 9);
        let mut base = FIRST_PAUSE;
        for pause in &pauses {
            assert!(
                *pause >= base / 2 && *pause <= base,
                "{pause:?} outside [{:?}, {base:?}]",
                base / 2
            );
            base = (base * 2).min(LONGEST_PAUSE);
        }
        // The longest pause is reached and kept.
        assert!(pauses[7] >= LONGEST_PAUSE / 2, "{pauses:?}");
        // Two runners do not pause alike.
        let mut a = Attempts::new(&policy);
        let mut b = Attempts::new(&policy);
        b.seed = b.seed.wrapping_add(0x9e37_79b9);
        let (pa, pb): (Vec<_>, Vec<_>) = (0..4)
            .map(|_| (a.next(&unnamed).map(|p| p.at_most), b.next(&unnamed).map(|p| p.at_most)))
            .unzip();
        assert_ne!(pa, pb);
        // MySQL's whole seconds: no ramp, every attempt waits the session's
        // bound.
        assert_eq!(Attempts::ramped(&policy, Dialect::Mysql).lock_wait(), None);
    }

    #[test]
    fn the_time_budget_ends_the_attempts_before_the_count_does() {
        let policy = policy(100, Duration::from_millis(300));
        let unnamed = timed_out(Vec::new());
        let mut attempts = Attempts::new(&policy);
        // 125..250 ms fits in 300 ms; the next, 250..500 ms, may not.
        assert!(attempts.next(&unnamed).is_some());
        let mut more = 0;
        while attempts.next(&unnamed).is_some() {
            more += 1;
        }
        assert!(more <= 1, "{more} more pauses within 300 ms");
        let none = LockPolicy { retries: 0, ..policy };
        assert!(Attempts::new(&none).next(&unnamed).is_none());
    }

    #[test]
    fn lock_waits_ramp_up_unless_an_old_transaction_explains_the_timeout() {
        let policy = policy(10, Duration::from_secs(3600));
        let mut attempts = Attempts::ramped(&policy, Dialect::Postgres);
        assert_eq!(attempts.lock_wait(), Some(Duration::from_millis(50)));
        // Only young transactions held the lock: the wait was too short.
        let young = timed_out(vec![blocker(1, Some(Duration::from_millis(5)))]);
        let mut waits = Vec::new();
        for _ in 0..6 {
            attempts.next(&young).unwrap();
            waits.push(attempts.lock_wait().unwrap().as_millis());
        }
        assert_eq!(waits, [100, 200, 400, 800, 1000, 1000]);
        // An old one did: waited out, the next attempt waits no longer.
        let mut attempts = Attempts::ramped(&policy, Dialect::Postgres);
        let old = timed_out(vec![blocker(7, Some(Duration::from_secs(3)))]);
        let pause = attempts.next(&old).unwrap();
        assert_eq!(attempts.lock_wait(), Some(Duration::from_millis(50)));
        assert_eq!(pause.pids(), [7]);
        // It waits for that transaction as long as the budget leaves room
        // for one more attempt.
        assert!(pause.at_most > Duration::from_secs(3599), "{:?}", pause.at_most);
        // A first timeout above the timeout is the timeout.
        let flat = LockPolicy {
            first_timeout: Duration::from_secs(5),
            ..policy.clone()
        };
        assert_eq!(
            Attempts::ramped(&flat, Dialect::Postgres).lock_wait(),
            Some(Duration::from_secs(1))
        );
        // Statements alone keep their session's bound.
        assert_eq!(Attempts::new(&policy).lock_wait(), None);
        assert_eq!(Attempts::new(&policy).waits(), Some(Duration::from_secs(1)));
    }

    #[test]
    fn waiting_out_a_blocker_leaves_room_for_the_last_attempt() {
        let policy = policy(10, Duration::from_secs(2));
        let mut attempts = Attempts::ramped(&policy, Dialect::Postgres);
        let old = timed_out(vec![blocker(7, Some(Duration::from_secs(30)))]);
        let pause = attempts.next(&old).unwrap();
        // 2 s, less the next attempt's 50 ms, less what has passed.
        assert!(pause.at_most <= Duration::from_millis(1950), "{:?}", pause.at_most);
        assert!(pause.at_most > Duration::from_millis(1900), "{:?}", pause.at_most);
        // One seen outside any transaction cannot be waited out: a time.
        let mut attempts = Attempts::ramped(&policy, Dialect::Postgres);
        let pause = attempts.next(&timed_out(vec![blocker(8, None)])).unwrap();
        assert!(pause.until_ended.is_empty());
        assert!(pause.at_most <= FIRST_PAUSE, "{:?}", pause.at_most);
        // One only guessed at (MySQL without its metadata-lock table, every
        // open transaction) is not waited out either.
        let mut attempts = Attempts::ramped(&policy, Dialect::Mysql);
        let guessed = Blocker {
            exact: false,
            ..blocker(9, Some(Duration::from_secs(30)))
        };
        let pause = attempts.next(&timed_out(vec![guessed])).unwrap();
        assert!(pause.until_ended.is_empty());
        assert!(pause.at_most <= FIRST_PAUSE, "{:?}", pause.at_most);
        // With no room left, no more attempts.
        let tight = LockPolicy {
            max_wait: Duration::from_millis(40),
            ..policy
        };
        assert!(Attempts::ramped(&tight, Dialect::Postgres).next(&old).is_none());
    }

    #[test]
    fn a_lock_wait_names_each_blocker() {
        let wait = LockWait {
            waited: Duration::from_millis(1003),
            ..timed_out(vec![blocker(1, None), blocker(2, None)])
        };
        assert_eq!(
            wait.to_string(),
            "`ALTER TABLE t ADD c int` gave up waiting for a lock after 1003 ms; it is held by pid 1 (user app, idle \
             in transaction): SELECT 1; and by pid 2 (user app, idle in transaction): SELECT 1"
        );
        let spent = LockWait {
            blockers: Vec::new(),
            tried: Some((3, Duration::from_millis(2500))),
            ..wait
        };
        assert_eq!(
            spent.to_string(),
            "`ALTER TABLE t ADD c int` gave up waiting for a lock after 1003 ms (the session holding it had gone \
             before it could be named); waymark gave up after 3 attempts in 2.5 s"
        );
    }
}
