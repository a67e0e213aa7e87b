//! Never queue behind a lock: a session holds a transaction open on a
//! table, `waymark up` alters that table, and an application keeps
//! querying it the whole time. The application's queries wait at most
//! about the lock timeout; waymark names the blocking session, pauses and
//! tries again, and succeeds once the blocker commits; with too small a
//! budget it fails naming the blocker, with nothing applied.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use sqlx::Connection;

use crate::common::{Kind, Project, Run, TestDb, block_on};

/// One connection of a test's own, as an application would hold it.
enum Client {
    Pg(sqlx::PgConnection),
    My(sqlx::MySqlConnection),
}

impl Client {
    async fn connect(kind: Kind, url: &str) -> Client {
        match kind {
            Kind::Postgres => Client::Pg(sqlx::PgConnection::connect(url).await.unwrap()),
            Kind::Mysql => Client::My(sqlx::MySqlConnection::connect(url).await.unwrap()),
            Kind::Sqlite => unreachable!("SQLite has no other sessions to wait for"),
        }
    }

    async fn run(&mut self, sql: &str) -> Result<(), sqlx::Error> {
        match self {
            Client::Pg(c) => sqlx::raw_sql(sql).execute(c).await.map(drop),
            Client::My(c) => sqlx::raw_sql(sql).execute(c).await.map(drop),
        }
    }

    async fn id(&mut self) -> i64 {
        match self {
            Client::Pg(c) => sqlx::query_scalar::<_, i32>("SELECT pg_backend_pid()")
                .fetch_one(c)
                .await
                .map(i64::from)
                .unwrap(),
            Client::My(c) => sqlx::query_scalar::<_, i64>("SELECT CAST(CONNECTION_ID() AS SIGNED)")
                .fetch_one(c)
                .await
                .unwrap(),
        }
    }
}

/// A session that reads `table` in a transaction it keeps open (holding
/// the lock every `ALTER TABLE` needs) until told to commit.
pub(crate) struct Blocker {
    pub(crate) id: i64,
    commit: mpsc::Sender<()>,
    thread: std::thread::JoinHandle<()>,
}

impl Blocker {
    fn start(db: &TestDb, table: &str) -> Blocker {
        Blocker::holding(db, &format!("SELECT * FROM {table}"))
    }

    /// A session that runs `query` in a transaction it keeps open.
    pub(crate) fn holding(db: &TestDb, query: &str) -> Blocker {
        let (id_tx, id_rx) = mpsc::channel();
        let (commit, commit_rx) = mpsc::channel::<()>();
        let (kind, url) = (db.kind, db.url.clone());
        let query = query.to_owned();
        let thread = std::thread::spawn(move || {
            block_on(async {
                let mut client = Client::connect(kind, &url).await;
                let id = client.id().await;
                client.run("BEGIN").await.unwrap();
                client.run(&query).await.unwrap();
                id_tx.send(id).unwrap();
                // Held until told, or until the test is gone.
                while let Err(mpsc::TryRecvError::Empty) = commit_rx.try_recv() {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                client.run("COMMIT").await.unwrap();
            })
        });
        Blocker {
            id: id_rx.recv_timeout(Duration::from_secs(30)).unwrap(),
            commit,
            thread,
        }
    }

    pub(crate) fn commit(self) {
        self.commit.send(()).unwrap();
        self.thread.join().unwrap();
    }
}

/// An application querying `table` over and over, each query timed.
struct App {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<(usize, Duration, Vec<String>)>,
}

impl App {
    fn start(db: &TestDb, table: &str) -> App {
        let stop = Arc::new(AtomicBool::new(false));
        let (kind, url) = (db.kind, db.url.clone());
        let query = format!("SELECT count(*) FROM {table}");
        let stopping = stop.clone();
        let thread = std::thread::spawn(move || {
            block_on(async {
                let mut client = Client::connect(kind, &url).await;
                let (mut count, mut longest, mut errors) = (0, Duration::ZERO, Vec::new());
                while !stopping.load(Ordering::Relaxed) {
                    let started = Instant::now();
                    if let Err(e) = client.run(&query).await {
                        errors.push(e.to_string());
                    }
                    longest = longest.max(started.elapsed());
                    count += 1;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                (count, longest, errors)
            })
        });
        App { stop, thread }
    }

    /// The queries run, the longest one, and the errors seen.
    fn stop(self) -> (usize, Duration, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap()
    }
}

fn project() -> Project {
    let p = Project::new();
    p.migration(
        "1_accounts",
        "CREATE TABLE accounts (id INT PRIMARY KEY, name VARCHAR(40));\n\
         INSERT INTO accounts VALUES (1, 'a'), (2, 'b');",
        Some("DROP TABLE accounts;"),
    );
    p.migration(
        "2_add_email",
        "ALTER TABLE accounts ADD COLUMN email VARCHAR(80);",
        Some("ALTER TABLE accounts DROP COLUMN email;"),
    );
    p.file("waymark.toml", "[locks]\ntimeout = \"1s\"\n");
    p
}

/// The longest one attempt of `project`'s migration waits for a lock:
/// PostgreSQL's first attempt waits 50 ms of the 1 s timeout, and a later
/// one as long, having waited the blocker out; MySQL counts its lock wait in
/// whole seconds, and waits the timeout each time.
fn attempt_waits(kind: Kind) -> Duration {
    if kind == Kind::Mysql {
        Duration::from_secs(1)
    } else {
        Duration::from_millis(50)
    }
}

/// The application saw no error, and none of its queries waited longer
/// than one attempt's lock wait (and a margin): it never queued behind
/// waymark for longer.
fn assert_never_queued(kind: Kind, errors: &[String], longest: Duration, stderr: &str) {
    assert!(errors.is_empty(), "the application saw errors: {errors:?}");
    assert!(
        longest < attempt_waits(kind) + Duration::from_millis(450),
        "an application query waited {longest:?} (an attempt waits {:?})\n{stderr}",
        attempt_waits(kind)
    );
}

fn has_email(db: &TestDb) -> bool {
    let sql = match db.kind {
        Kind::Postgres => {
            "SELECT column_name::text FROM information_schema.columns WHERE table_name = 'accounts' AND \
             column_name = 'email'"
        }
        _ => {
            "SELECT column_name FROM information_schema.columns WHERE table_schema = DATABASE() AND \
              table_name = 'accounts' AND column_name = 'email'"
        }
    };
    !db.rows(sql).is_empty()
}

fn waits_then_succeeds(kind: Kind) {
    let db = TestDb::new(kind);
    let p = project();
    p.run(&db, &["up", "--to", "1"]).ok();
    let blocker = Blocker::start(&db, "accounts");
    let app = App::start(&db, "accounts");
    std::thread::sleep(Duration::from_millis(200));
    let child = p
        .command(&db, &["up"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Long enough for several attempts, each of which would have queued
    // the application for the whole time without the lock timeout.
    std::thread::sleep(Duration::from_secs(3));
    blocker_still_blocks(&db);
    let blocker_id = blocker.id;
    blocker.commit();
    let run = Run::from(child.wait_with_output().unwrap()).ok();
    let (queries, longest, errors) = app.stop();

    assert!(queries > 20, "only {queries} application queries ran");
    assert_never_queued(kind, &errors, longest, &run.stderr);
    assert!(
        run.stderr.contains("warning: 2_add_email: attempt 1 of 21: `ALTER TABLE accounts ADD COLUMN email VARCHAR(80)` gave up waiting for a lock after"),
        "{}",
        run.stderr
    );
    if kind == Kind::Postgres {
        // The server names the blocker exactly: waymark waits for its
        // transaction to end, outside the queue, and tries once more when
        // it has; one attempt timed out, not one every pause.
        assert_waited_out(&run.stderr, blocker_id, "; rolled back, and tried again");
    } else {
        // MySQL's DDL commits itself: the statement alone is tried again,
        // after a pause (its list of blockers is only a guess).
        assert!(run.stderr.contains("; tried again in "), "{}", run.stderr);
    }
    assert!(
        run.stderr.contains(&format!("held by pid {blocker_id} (")),
        "{}",
        run.stderr
    );
    if kind == Kind::Postgres {
        // PostgreSQL shows the idle transaction's last query.
        assert!(
            run.stderr.contains("idle in transaction, transaction open")
                && run.stderr.contains("): SELECT * FROM accounts"),
            "{}",
            run.stderr
        );
    } else {
        assert!(run.stderr.contains("idle in transaction"), "{}", run.stderr);
    }
    assert!(run.stderr.contains("applied 2_add_email"), "{}", run.stderr);
    assert!(has_email(&db));
    assert_eq!(db.history().len(), 2, "{:?}", db.history());
}

/// `stderr` tells of one attempt that gave up waiting for a lock, after
/// which the blocker was waited out: the next attempt began (`again`) as
/// soon as `blocker_id`'s transaction had ended, not after a guessed pause.
pub(crate) fn assert_waited_out(stderr: &str, blocker_id: i64, again: &str) {
    let waited = format!("{again} as soon as pid {blocker_id}'s transaction has ended (waiting at most ");
    assert!(stderr.contains(&waited), "no {waited:?} in\n{stderr}");
    assert_eq!(stderr.matches("gave up waiting for a lock").count(), 1, "{stderr}");
}

/// The blocker still holds its transaction open (the test's own check
/// that the situation it measures is real).
fn blocker_still_blocks(db: &TestDb) {
    let sql = match db.kind {
        Kind::Postgres => {
            "SELECT count(*)::text FROM pg_stat_activity WHERE state = 'idle in transaction' AND datname = current_database()"
        }
        _ => "SELECT CAST(count(*) AS CHAR) FROM information_schema.INNODB_TRX",
    };
    let open = db.rows(sql);
    assert_ne!(open[0][0].as_deref(), Some("0"), "no transaction is open");
}

fn gives_up_within_its_budget(kind: Kind) {
    let db = TestDb::new(kind);
    let p = project();
    // PostgreSQL waits for the blocker's end as long as the budget allows:
    // a short one.
    if kind == Kind::Postgres {
        p.file("waymark.toml", "[locks]\ntimeout = \"1s\"\nmax_wait = \"2s\"\n");
    }
    p.run(&db, &["up", "--to", "1"]).ok();
    let blocker = Blocker::start(&db, "accounts");
    let app = App::start(&db, "accounts");
    let started = Instant::now();
    let run = p.run(&db, &["--lock-retries", "2", "up"]).code(1);
    let took = started.elapsed();
    let (_, longest, errors) = app.stop();
    let blocker_id = blocker.id;
    blocker.commit();

    assert_never_queued(kind, &errors, longest, &run.stderr);
    assert!(took < Duration::from_secs(20), "it took {took:?} to give up");
    // Two attempts within PostgreSQL's 2 s (the blocker waited out
    // between them), three at MySQL's retry count.
    let attempts = if kind == Kind::Postgres { 2 } else { 3 };
    if kind == Kind::Postgres {
        assert!(took >= Duration::from_millis(1900), "it gave up after {took:?}");
    }
    assert!(
        run.stderr
            .contains("error: migration 2_add_email failed: migrations/2_add_email/up.sql:1:"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains(&format!("it is held by pid {blocker_id} (")),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr
            .contains(&format!("waymark gave up after {attempts} attempts in ")),
        "{}",
        run.stderr
    );
    assert_eq!(
        run.stderr.matches("warning: 2_add_email: attempt ").count(),
        attempts - 1,
        "{}",
        run.stderr
    );
    // Nothing of it is applied.
    assert!(!has_email(&db));
    let history = db.history();
    assert_eq!(history[0], ("1".to_owned(), "applied".to_owned()), "{history:?}");
    match kind {
        // One transaction, rolled back whole: no record of it.
        Kind::Postgres => assert_eq!(history.len(), 1, "{history:?}"),
        // Outside a transaction it is recorded as failed, for `repair`.
        _ => assert_eq!(history[1], ("2".to_owned(), "failed".to_owned()), "{history:?}"),
    }
}

/// Where performance_schema lists metadata locks (MySQL 8's default; here
/// a MariaDB server of the test's own with the instrument on), the server
/// names exactly who holds the lock: waymark names that session alone, not
/// every open transaction, with the lock it holds, and waits for its
/// transaction to end rather than for a guessed time.
#[test]
fn metadata_locks_name_the_blocker_exactly_mariadb() {
    let server = waymark_testkit::Mariadb::start(&[
        "--performance-schema=ON",
        "--performance-schema-instrument=wait/lock/metadata/sql/mdl=ON",
    ])
    .unwrap();
    let db = TestDb::mysql_at(&server.url("mysql"));
    let p = project();
    p.run(&db, &["up", "--to", "1"]).ok();
    db.execute("CREATE TABLE other (id INT PRIMARY KEY)");
    // A transaction open on another table: a guess from open transactions
    // would name it too.
    let bystander = Blocker::start(&db, "other");
    let blocker = Blocker::start(&db, "accounts");
    let app = App::start(&db, "accounts");
    let started = Instant::now();
    let child = p
        .command(&db, &["up"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(3));
    let blocker_id = blocker.id;
    blocker.commit();
    let run = Run::from(child.wait_with_output().unwrap()).ok();
    let took = started.elapsed();
    let (_, longest, errors) = app.stop();
    let bystander_id = bystander.id;
    bystander.commit();

    assert_never_queued(Kind::Mysql, &errors, longest, &run.stderr);
    for part in [
        format!("it is held by pid {blocker_id} (user root, application \""),
        "idle in transaction, transaction open ".to_owned(),
        format!(" s, holding SHARED_READ on TABLE `{}`.`accounts`)", db.name()),
    ] {
        assert!(run.stderr.contains(&part), "no {part:?} in\n{}", run.stderr);
    }
    assert!(
        !run.stderr.contains(&format!("pid {bystander_id} ")),
        "the bystander was named\n{}",
        run.stderr
    );
    assert_waited_out(&run.stderr, blocker_id, "; tried again");
    assert!(has_email(&db));
    assert_eq!(db.history().len(), 2, "{:?}", db.history());
    // Tried again as the blocker committed, not at the end of the wait.
    assert!(took < Duration::from_secs(10), "up took {took:?}\n{}", run.stderr);
}

#[test]
fn waits_then_succeeds_postgres() {
    waits_then_succeeds(Kind::Postgres);
}

#[test]
fn waits_then_succeeds_mysql() {
    waits_then_succeeds(Kind::Mysql);
}

#[test]
fn gives_up_within_its_budget_postgres() {
    gives_up_within_its_budget(Kind::Postgres);
}

#[test]
fn gives_up_within_its_budget_mysql() {
    gives_up_within_its_budget(Kind::Mysql);
}

/// A first timeout longer than the timeout it ramps up to is refused,
/// naming the file, before anything runs.
#[test]
fn a_first_timeout_longer_than_the_timeout_is_refused() {
    let db = TestDb::new(Kind::Postgres);
    let p = project();
    p.file("waymark.toml", "[locks]\ntimeout = \"1s\"\nfirst_timeout = \"2s\"\n");
    let run = p.run(&db, &["up"]).code(2);
    assert!(
        run.stderr.contains(
            "waymark.toml: [locks] first_timeout (2s) is longer than the timeout it ramps up to (1s); make it \
             shorter, or equal for every attempt to wait the same"
        ),
        "{}",
        run.stderr
    );
    assert!(db.history().is_empty(), "{:?}", db.history());
    assert!(!db.tables().iter().any(|t| t == "accounts"), "{:?}", db.tables());
    // A shorter `--lock-wait` than the default first timeout cuts it.
    p.file("waymark.toml", "");
    p.run(&db, &["--lock-wait", "20ms", "up"]).ok();
    assert_eq!(db.history().len(), 2);
}

/// Without the lock timeout the application queues behind the `ALTER`
/// for as long as the blocker holds its transaction: what the tests above
/// measure is what the timeout prevents.
#[test]
fn without_the_timeout_the_application_queues() {
    let db = TestDb::new(Kind::Postgres);
    let p = project();
    p.run(&db, &["up", "--to", "1"]).ok();
    let blocker = Blocker::start(&db, "accounts");
    let app = App::start(&db, "accounts");
    std::thread::sleep(Duration::from_millis(200));
    let child = p
        .command(&db, &["--lock-wait", "off", "up"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(2));
    blocker.commit();
    let run = Run::from(child.wait_with_output().unwrap()).ok();
    let (_, longest, _) = app.stop();
    assert!(
        longest > Duration::from_millis(1500),
        "the longest query took {longest:?}"
    );
    assert!(!run.stderr.contains("attempt 1"), "{}", run.stderr);
    assert!(has_email(&db));
}

/// `CREATE INDEX CONCURRENTLY` waits for older transactions, which blocks
/// no application query; cut short by the lock timeout it would leave an
/// invalid index behind, so it waits as long as it takes.
#[test]
fn a_concurrent_index_waits_for_old_transactions_as_long_as_they_last() {
    let db = TestDb::new(Kind::Postgres);
    let p = project();
    p.run(&db, &["up", "--to", "1"]).ok();
    std::fs::remove_dir_all(p.migrations().join("2_add_email")).unwrap();
    p.migration(
        "3_index_names",
        "-- no-transaction\nCREATE INDEX CONCURRENTLY accounts_name ON accounts (name);",
        Some("-- no-transaction\nDROP INDEX CONCURRENTLY accounts_name;"),
    );
    // A writer's open transaction: the index build waits for it to end.
    let blocker = Blocker::holding(&db, "UPDATE accounts SET name = name WHERE id = 1");
    let app = App::start(&db, "accounts");
    let child = p
        .command(&db, &["up"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(2));
    blocker_still_blocks(&db);
    blocker.commit();
    let run = Run::from(child.wait_with_output().unwrap()).ok();
    let (_, longest, errors) = app.stop();
    assert!(errors.is_empty(), "{errors:?}");
    assert!(
        longest < Duration::from_secs(1),
        "an application query waited {longest:?}"
    );
    assert!(!run.stderr.contains("attempt 1"), "{}", run.stderr);
    let valid = db.rows("SELECT indisvalid::text FROM pg_index WHERE indexrelid = 'accounts_name'::regclass");
    assert_eq!(valid, [[Some("true".to_owned())]]);
    // And the bound is back for what follows: the down's drop, under a
    // reader, gives up and names it.
    let reader = Blocker::start(&db, "accounts");
    p.migration(
        "4_add_email",
        "ALTER TABLE accounts ADD COLUMN email VARCHAR(80);",
        Some("ALTER TABLE accounts DROP COLUMN email;"),
    );
    let run = p.run(&db, &["--lock-retries", "0", "up"]).code(1);
    assert!(
        run.stderr.contains(&format!("it is held by pid {} (", reader.id)),
        "{}",
        run.stderr
    );
    reader.commit();
}
