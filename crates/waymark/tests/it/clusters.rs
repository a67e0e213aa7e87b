//! Throwaway PostgreSQL clusters and a real PgBouncer in front of them
//! (from `waymark-testkit`, which the cutover benchmark starts too), and a
//! writer that writes through it (or to the server a file names) the whole
//! time and remembers every write it saw acknowledged.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sqlx::Row;

use crate::common::block_on;

/// The folder of the installed PostgreSQL's server programs.
pub(crate) fn installed_bin() -> PathBuf {
    waymark_testkit::installed_bin().unwrap()
}

/// The newer major version's server programs that `.ci/fetch-postgres`
/// unpacks; the installed ones, with a note saying so, where it is missing.
pub(crate) fn newer_bin() -> PathBuf {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    if let Some(dir) = waymark_testkit::newer_bin(&workspace) {
        return dir;
    }
    // Straight to stderr: the test harness shows what `eprintln!` prints
    // only when a test fails, and this is to be seen either way.
    let _ = writeln!(
        std::io::stderr(),
        "note: no newer PostgreSQL (run .ci/fetch-postgres): testing the cutover from the installed version to \
         the same version"
    );
    installed_bin()
}

/// A throwaway cluster (`waymark_testkit::Cluster`) with the tests' fast
/// settings, whose failures fail the test.
pub(crate) struct Cluster(waymark_testkit::Cluster);

impl std::ops::Deref for Cluster {
    type Target = waymark_testkit::Cluster;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl Cluster {
    pub(crate) fn start(bin: &Path) -> Cluster {
        Cluster::start_with(bin, "")
    }

    /// A cluster with `-c` settings of its own (they come last, so they win).
    pub(crate) fn start_with(bin: &Path, settings: &str) -> Cluster {
        Cluster(waymark_testkit::Cluster::start(bin, &format!("{} {settings}", waymark_testkit::FAST)).unwrap())
    }

    pub(crate) fn execute(&self, db: &str, sql: &str) {
        self.try_execute(db, sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    /// Runs `sql` in a new session; the error as text if it fails.
    pub(crate) fn try_execute(&self, db: &str, sql: &str) -> Result<(), String> {
        self.0.try_execute(db, sql).map_err(|e| e.to_string())
    }

    /// The first column of every row, as text.
    pub(crate) fn column(&self, sql: &str) -> Vec<String> {
        self.0.column(sql).unwrap()
    }
}

/// A PgBouncer (`waymark_testkit::Bouncer`) whose failures fail the test.
pub(crate) struct Bouncer(waymark_testkit::Bouncer);

impl std::ops::Deref for Bouncer {
    type Target = waymark_testkit::Bouncer;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl Bouncer {
    pub(crate) fn start(server_port: u16) -> Bouncer {
        Bouncer(waymark_testkit::Bouncer::start(server_port).unwrap())
    }

    /// The port `app` goes to and whether it is paused.
    pub(crate) fn show(&self) -> (u16, bool) {
        self.0.show().unwrap()
    }

    pub(crate) fn restart(&self) {
        self.0.restart().unwrap();
    }
}

enum Aim {
    Url(String),
    File(PathBuf),
}

/// What the writer saw.
#[derive(Debug, Default)]
pub(crate) struct Seen {
    /// `(n, id)` of every insert acknowledged.
    pub(crate) acked: Vec<(i64, i64)>,
    /// Every error.
    pub(crate) errors: Vec<String>,
    /// The longest a write took.
    pub(crate) longest: Duration,
}

/// Inserts into `writes`, one transaction per row, until stopped: through
/// PgBouncer, or straight to the server whose URL a file names (which a
/// route command rewrites).
pub(crate) struct Writer {
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<Seen>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Writer {
    pub(crate) fn start(url: String) -> Writer {
        Writer::spawn(Aim::Url(url))
    }

    /// A writer to the URL in `file`, read before every write.
    pub(crate) fn following(file: PathBuf) -> Writer {
        Writer::spawn(Aim::File(file))
    }

    fn spawn(aim: Aim) -> Writer {
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(Mutex::new(Seen::default()));
        let (s, w) = (stop.clone(), seen.clone());
        let thread = std::thread::spawn(move || {
            block_on(async move {
                let mut current: Option<(String, sqlx::PgPool)> = None;
                let mut n = 0i64;
                while !s.load(Ordering::Relaxed) {
                    let url = match &aim {
                        Aim::Url(url) => url.clone(),
                        Aim::File(file) => std::fs::read_to_string(file).unwrap().trim().to_owned(),
                    };
                    if current.as_ref().is_none_or(|(at, _)| *at != url) {
                        if let Some((_, pool)) = current.take() {
                            pool.close().await;
                        }
                        // PgBouncer's default configuration refuses the
                        // extra_float_digits sqlx sends unless told not to.
                        let options: sqlx::postgres::PgConnectOptions = url.parse().unwrap();
                        let pool = sqlx::postgres::PgPoolOptions::new()
                            .max_connections(2)
                            .connect_lazy_with(options.extra_float_digits(None));
                        current = Some((url, pool));
                    }
                    let pool = &current.as_ref().unwrap().1;
                    n += 1;
                    let started = Instant::now();
                    // The simple protocol: PgBouncer 1.18 in transaction
                    // mode cannot keep prepared statements.
                    let result = sqlx::raw_sql(&format!("INSERT INTO writes (n) VALUES ({n}) RETURNING id"))
                        .fetch_one(pool)
                        .await;
                    let took = started.elapsed();
                    {
                        let mut seen = w.lock().unwrap();
                        seen.longest = seen.longest.max(took);
                        match result {
                            Ok(row) => seen.acked.push((n, row.get::<i64, _>(0))),
                            Err(e) => seen.errors.push(format!("write {n}: {e}")),
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(3)).await;
                }
                if let Some((_, pool)) = current {
                    pool.close().await;
                }
            });
        });
        Writer {
            stop,
            seen,
            thread: Some(thread),
        }
    }

    /// Acknowledged writes so far.
    pub(crate) fn acked(&self) -> usize {
        self.seen.lock().unwrap().acked.len()
    }

    /// Waits until `more` further writes are acknowledged.
    pub(crate) fn wait_for(&self, more: usize) {
        let goal = self.acked() + more;
        let started = Instant::now();
        while self.acked() < goal {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "the writer is stuck: {:?}",
                self.seen.lock().unwrap().errors
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub(crate) fn stop(mut self) -> Seen {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take().unwrap().join().unwrap();
        std::mem::take(&mut *self.seen.lock().unwrap())
    }
}
