//! Two runners at once, and a runner killed mid-migration.

use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use crate::common::{Kind, Project, Run, TestDb};

fn spawn(p: &Project, db: &TestDb, args: &[&str]) -> Child {
    p.command(db, args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn wait(child: Child) -> Run {
    Run::from(child.wait_with_output().unwrap())
}

/// Waits until the server shows a statement containing `needle` running.
fn wait_for_statement(db: &TestDb, needle: &str) {
    let sql = match db.kind {
        Kind::Postgres => {
            format!("SELECT pid::text FROM pg_stat_activity WHERE query ILIKE '%{needle}%' AND pid <> pg_backend_pid()")
        }
        Kind::Mysql => format!(
            "SELECT CAST(id AS CHAR) FROM information_schema.processlist WHERE info LIKE '%{needle}%' AND id <> CONNECTION_ID()"
        ),
        Kind::Sqlite => unreachable!(),
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while db.rows(&sql).is_empty() {
        assert!(Instant::now() < deadline, "{needle} never started");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn sleep_sql(kind: Kind, seconds: f64) -> String {
    match kind {
        Kind::Postgres => format!("SELECT pg_sleep({seconds})"),
        Kind::Mysql => format!("SELECT SLEEP({seconds})"),
        Kind::Sqlite => unreachable!(),
    }
}

fn two_runners_apply_each_migration_once(kind: Kind) {
    let db = TestDb::new(kind);
    let p = Project::new();
    p.migration(
        "1_slow",
        &format!("CREATE TABLE slow (id INTEGER);\n{};\n", sleep_sql(kind, 1.0)),
        None,
    );
    p.migration("2_next", "CREATE TABLE next_one (id INTEGER);", None);
    let a = spawn(&p, &db, &["up", "--lock-timeout", "30s"]);
    let b = spawn(&p, &db, &["up", "--lock-timeout", "30s"]);
    let (a, b) = (wait(a).ok(), wait(b).ok());
    let applied = [&a, &b].iter().filter(|r| r.stderr.contains("applied 1_slow")).count();
    assert_eq!(applied, 1, "exactly one runner applies it:\n{}\n{}", a.stderr, b.stderr);
    assert_eq!(
        db.history(),
        [
            ("1".to_owned(), "applied".to_owned()),
            ("2".to_owned(), "applied".to_owned())
        ]
    );
}

fn second_runner_gives_up_after_the_lock_timeout(kind: Kind) {
    let db = TestDb::new(kind);
    let p = Project::new();
    p.migration(
        "1_slow",
        &format!("{};\nCREATE TABLE slow (id INTEGER);\n", sleep_sql(kind, 3.0)),
        None,
    );
    let a = spawn(&p, &db, &["up"]);
    wait_for_statement(&db, "SLEEP(3");
    let b = p.run(&db, &["up", "--lock-timeout", "300ms", "--json"]).code(4);
    assert!(b.stderr.contains("could not get the migration lock"), "{}", b.stderr);
    assert!(b.stderr.contains("within 0.3 s"), "{}", b.stderr);
    assert_eq!(b.json()["ok"], false);
    wait(a).ok();
    assert_eq!(db.history(), [("1".to_owned(), "applied".to_owned())]);
}

#[test]
fn two_runners_postgres() {
    two_runners_apply_each_migration_once(Kind::Postgres);
}

#[test]
fn two_runners_mysql() {
    two_runners_apply_each_migration_once(Kind::Mysql);
}

#[test]
fn lock_timeout_postgres() {
    second_runner_gives_up_after_the_lock_timeout(Kind::Postgres);
}

#[test]
fn lock_timeout_mysql() {
    second_runner_gives_up_after_the_lock_timeout(Kind::Mysql);
}

#[test]
fn two_runners_sqlite() {
    let db = TestDb::new(Kind::Sqlite);
    let p = Project::new();
    for i in 1..=20 {
        p.migration(
            &format!("{i}_t{i}"),
            &format!("CREATE TABLE t{i} (id INTEGER);\nINSERT INTO t{i} VALUES ({i});"),
            None,
        );
    }
    let a = spawn(&p, &db, &["up", "--lock-timeout", "30s"]);
    let b = spawn(&p, &db, &["up", "--lock-timeout", "30s"]);
    let (a, b) = (wait(a).ok(), wait(b).ok());
    let applied = |r: &Run| {
        r.stderr
            .lines()
            .filter(|l| l.starts_with("applied ") && l.ends_with(" ms)"))
            .count()
    };
    // Each migration applied by exactly one of them.
    assert_eq!(applied(&a) + applied(&b), 20, "{}\n{}", a.stderr, b.stderr);
    assert_eq!(db.history().len(), 20);
    assert_eq!(db.tables().len(), 20);
}

#[test]
fn sigkill_mid_migration_postgres() {
    let db = TestDb::new(Kind::Postgres);
    let p = Project::new();
    p.migration("1_first", "CREATE TABLE first (id INTEGER);", None);
    p.migration(
        "2_killed",
        "CREATE TABLE half (id INTEGER);\nSELECT pg_sleep(2.5);\nCREATE TABLE other_half (id INTEGER);\n",
        None,
    );
    let mut runner = spawn(&p, &db, &["up"]);
    wait_for_statement(&db, "pg_sleep(2.5");
    runner.kill().unwrap();
    runner.wait().unwrap();
    // Before migration 2, not half-way through it.
    assert_eq!(db.history(), [("1".to_owned(), "applied".to_owned())]);
    assert_eq!(db.tables(), ["first"]);
    // The next run waits for the dead runner's session to end, then carries on.
    p.run(&db, &["up", "--lock-timeout", "30s"]).ok();
    assert_eq!(db.tables(), ["first", "half", "other_half"]);
    assert_eq!(db.history().len(), 2);
}

#[test]
fn sigkill_mid_migration_mysql_is_visible_and_repairable() {
    let db = TestDb::new(Kind::Mysql);
    let p = Project::new();
    p.migration(
        "1_killed",
        "CREATE TABLE half (id INTEGER);\nSELECT SLEEP(2.5);\nCREATE TABLE other_half (id INTEGER);\n",
        None,
    );
    let mut runner = spawn(&p, &db, &["up"]);
    wait_for_statement(&db, "SLEEP(2.5");
    runner.kill().unwrap();
    runner.wait().unwrap();
    // MySQL committed the first CREATE; the interrupted run is on record.
    assert_eq!(db.history(), [("1".to_owned(), "running".to_owned())]);
    p.run(&db, &["up", "--lock-timeout", "30s"])
        .code(1)
        .stderr_has("migration 1_killed was interrupted while running outside a transaction");
    db.execute("DROP TABLE half");
    p.run(&db, &["repair", "--rolled-back", "--lock-timeout", "30s"]).ok();
    p.run(&db, &["up"]).ok();
    assert_eq!(db.tables(), ["half", "other_half"]);
}

#[test]
fn sigkill_mid_migration_sqlite() {
    let db = TestDb::new(Kind::Sqlite);
    let p = Project::new();
    p.migration("1_first", "CREATE TABLE first (id INTEGER);", None);
    // A statement that keeps SQLite busy for several seconds.
    let slow = "CREATE TABLE half (id INTEGER);\n\
                WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c LIMIT 200000000) SELECT count(*) FROM c;\n\
                CREATE TABLE other_half (id INTEGER);\n";
    p.migration("2_killed", slow, None);
    let mut runner = spawn(&p, &db, &["up"]);
    // Wait until migration 1 is committed, then a little longer so the
    // runner is inside migration 2's long statement.
    let deadline = Instant::now() + Duration::from_secs(30);
    while db.history().is_empty() {
        assert!(Instant::now() < deadline, "migration 1 never committed");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(500));
    runner.kill().unwrap();
    runner.wait().unwrap();
    assert_eq!(db.history(), [("1".to_owned(), "applied".to_owned())]);
    assert_eq!(db.tables(), ["first"]);
    // The file may change before a re-run: migration 2 was never applied.
    p.migration(
        "2_killed",
        "CREATE TABLE half (id INTEGER);\nCREATE TABLE other_half (id INTEGER);\n",
        None,
    );
    p.run(&db, &["up"]).ok();
    assert_eq!(db.tables(), ["first", "half", "other_half"]);
}
