//! Never queue behind a lock: every statement of a migration waits for a
//! lock at most [`LockPolicy::timeout`]; one that times out is tried again
//! after a growing, jittered pause, within a budget of attempts and time,
//! and each timed-out attempt names the sessions it waited for.
//!
//! The pause lets the application's queries through: while waymark waits
//! for a lock, every later query on the table waits behind it, so waymark
//! waits briefly and often rather than long and once. What is tried again
//! is what left nothing behind: a whole migration that runs in one
//! transaction (rolled back with the locks it held), or one statement run
//! outside a transaction (which did nothing, having never got its lock).

use std::time::{Duration, Instant};

use waymark_db::{Blocker, Database, DbError};

/// How migrations wait for locks (`[locks]` in waymark.toml).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockPolicy {
    /// How long one statement may wait for a lock; `None` leaves the
    /// server's own setting (PostgreSQL: forever, unless `lock_timeout` is
    /// set; MySQL: `lock_wait_timeout`, a year by default).
    pub timeout: Option<Duration>,
    /// How many times a migration or statement is tried again after its
    /// lock wait timed out.
    pub retries: u32,
    /// The longest a migration spends on all its attempts together,
    /// pauses included.
    pub max_wait: Duration,
}

impl Default for LockPolicy {
    /// One second per attempt, as Reshape waits; twenty attempts within
    /// two minutes, pauses growing from a quarter of a second to ten.
    fn default() -> Self {
        LockPolicy {
            timeout: Some(Duration::from_secs(1)),
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
    /// The pause before the next attempt.
    pub pause: Duration,
    /// Whether the next attempt runs the whole migration again (its
    /// transaction was rolled back), rather than the statement alone.
    pub whole_migration: bool,
}

/// Hears of each lock wait that timed out and is tried again.
pub type OnLockRetry = std::sync::Arc<dyn Fn(&LockRetry) + Send + Sync>;

/// The first pause, before it doubles.
const FIRST_PAUSE: Duration = Duration::from_millis(250);
/// The longest pause.
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

/// The attempts of one migration or statement: when the next may start.
#[derive(Debug)]
pub(crate) struct Attempts {
    started: Instant,
    retries_left: u32,
    max_wait: Duration,
    next_pause: Duration,
    /// 1 for the first attempt.
    pub(crate) attempt: u32,
    seed: u64,
}

impl Attempts {
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
        }
    }

    /// The pause before the next attempt, or `None` when the budget is
    /// spent. Half of each pause is fixed and half random ("equal
    /// jitter"), so that runners that collided do not collide again.
    pub(crate) fn next_pause(&mut self) -> Option<Duration> {
        if self.retries_left == 0 {
            return None;
        }
        let half = self.next_pause / 2;
        let pause = half + half.mul_f64(self.random());
        if self.started.elapsed() + pause >= self.max_wait {
            return None;
        }
        self.retries_left -= 1;
        self.attempt += 1;
        self.next_pause = (self.next_pause * 2).min(LONGEST_PAUSE);
        Some(pause)
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

/// Where a statement's wait is watched from: another of the database's
/// connections.
#[derive(Debug, Clone)]
pub(crate) struct Watch {
    pub(crate) db: Database,
    /// How long a statement runs before its blockers are looked up: most
    /// of the timeout, so that they are seen while still blocking.
    pub(crate) after: Duration,
}

impl Watch {
    /// A watch of statements on `db` whose lock waits end after `timeout`.
    /// SQLite has no other sessions to name (and its one connection is the
    /// migration's).
    pub(crate) fn of(db: &Database, timeout: Option<Duration>) -> Option<Watch> {
        if db.dialect() == waymark_db::Dialect::Sqlite {
            return None;
        }
        timeout.map(|timeout| Watch {
            db: db.clone(),
            after: timeout.mul_f64(0.7),
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

    #[test]
    fn pauses_grow_with_jitter_and_stop_at_the_budget() {
        let policy = LockPolicy {
            timeout: Some(Duration::from_secs(1)),
            retries: 8,
            max_wait: Duration::from_secs(3600),
        };
        let mut attempts = Attempts::new(&policy);
        assert_eq!(attempts.budget(), 9);
        let pauses: Vec<Duration> = std::iter::from_fn(|| attempts.next_pause()).collect();
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
        let (pa, pb): (Vec<_>, Vec<_>) = (0..4).map(|_| (a.next_pause(), b.next_pause())).unzip();
        assert_ne!(pa, pb);
    }

    #[test]
    fn the_time_budget_ends_the_attempts_before_the_count_does() {
        let policy = LockPolicy {
            timeout: Some(Duration::from_secs(1)),
            retries: 100,
            max_wait: Duration::from_millis(300),
        };
        let mut attempts = Attempts::new(&policy);
        // 125..250 ms fits in 300 ms; the next, 250..500 ms, may not.
        assert!(attempts.next_pause().is_some());
        let mut more = 0;
        while attempts.next_pause().is_some() {
            more += 1;
        }
        assert!(more <= 1, "{more} more pauses within 300 ms");
        let none = LockPolicy { retries: 0, ..policy };
        assert_eq!(Attempts::new(&none).next_pause(), None);
    }

    #[test]
    fn a_lock_wait_names_each_blocker() {
        let blocker = |pid| Blocker {
            pid,
            user: Some("app".into()),
            application: None,
            state: Some("idle in transaction".into()),
            query: Some("SELECT 1".into()),
            transaction_for: None,
        };
        let wait = LockWait {
            statement: "ALTER TABLE t ADD c int".into(),
            waited: Duration::from_millis(1003),
            blockers: vec![blocker(1), blocker(2)],
            tried: None,
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
