//! Ten runners at once, a runner that gives up on the lock, and a runner
//! killed mid-migration.

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
fn lock_timeout_postgres() {
    second_runner_gives_up_after_the_lock_timeout(Kind::Postgres);
}

#[test]
fn lock_timeout_mysql() {
    second_runner_gives_up_after_the_lock_timeout(Kind::Mysql);
}

/// Ten processes started together: the even ones with a lock timeout
/// long enough to wait for all the others, the odd ones with one so short
/// that they may give up. Returns each one's run, in the order started.
fn ten_at_once(p: &Project, db: &TestDb, args: &[&str]) -> Vec<Run> {
    let children: Vec<Child> = (0..10)
        .map(|i| {
            let timeout = if i % 2 == 0 { "120s" } else { "100ms" };
            let mut args = args.to_vec();
            args.extend(["--lock-timeout", timeout]);
            spawn(p, db, &args)
        })
        .collect();
    children.into_iter().map(wait).collect()
}

/// Every runner finished, or (only one with the short timeout) gave up on
/// the lock with its own exit code and message and changed nothing.
#[track_caller]
fn each_finished_or_gave_up(runs: &[Run]) {
    for (i, r) in runs.iter().enumerate() {
        let gave_up = r.code == 4
            && r.stderr.contains("could not get the migration lock on ")
            && r.stderr.contains(" within 0.1 s: held by ");
        assert!(
            r.code == 0 || (i % 2 == 1 && gave_up),
            "runner {i} exited {}:\n{}",
            r.code,
            r.stderr
        );
    }
}

/// Lines of `done` migrations (`applied 3_t3 (12 ms)`) a runner printed.
fn done_lines(run: &Run, done: &str) -> Vec<String> {
    run.stderr
        .lines()
        .filter(|l| l.starts_with(&format!("{done} ")) && l.ends_with(" ms)"))
        .map(|l| l.split(' ').nth(1).unwrap_or_default().to_owned())
        .collect()
}

/// Ten `up` at once apply each migration exactly once, then ten `down` at
/// once revert one migration each, each a different one.
fn ten_runners_up_then_down(kind: Kind) {
    let db = TestDb::new(kind);
    let p = Project::new();
    // The first migration takes a while where the server can wait, so
    // that the others pile up behind the lock.
    let first = match kind {
        Kind::Sqlite => "CREATE TABLE t1 (id INTEGER);".to_owned(),
        _ => format!("CREATE TABLE t1 (id INTEGER);\n{};\n", sleep_sql(kind, 0.5)),
    };
    p.migration("1_t1", &first, Some("DROP TABLE t1;"));
    for i in 2..=12 {
        p.migration(
            &format!("{i}_t{i}"),
            &format!("CREATE TABLE t{i} (id INTEGER);\nINSERT INTO t{i} VALUES ({i});"),
            Some(&format!("DROP TABLE t{i};")),
        );
    }
    let ups = ten_at_once(&p, &db, &["up"]);
    each_finished_or_gave_up(&ups);
    let mut applied: Vec<String> = ups.iter().flat_map(|r| done_lines(r, "applied")).collect();
    applied.sort_by_key(|label| label.split('_').next().unwrap().parse::<u32>().unwrap());
    let every: Vec<String> = (1..=12).map(|i| format!("{i}_t{i}")).collect();
    assert_eq!(applied, every, "each migration applied exactly once");
    assert_eq!(db.history().len(), 12);
    assert!(db.history().iter().all(|(_, state)| state == "applied"));
    assert_eq!(db.tables().len(), 12);

    // Each `down` reverts the newest migration it finds. Under a session
    // lock (PostgreSQL, MySQL) it plans once it holds the lock, so each
    // reverts another; SQLite's runners plan first and each migration's
    // transaction checks again, so one that lost the race reverts nothing
    // and says so.
    let downs = ten_at_once(&p, &db, &["down"]);
    each_finished_or_gave_up(&downs);
    for (i, r) in downs.iter().enumerate() {
        let n = done_lines(r, "reverted").len();
        let lost = r.stderr.contains("another runner reverted it first");
        assert!(
            (r.code == 0 && (n == 1 || (n == 0 && lost))) || (r.code == 4 && n == 0),
            "runner {i} reverted {n}:\n{}",
            r.stderr
        );
    }
    let mut reverted: Vec<String> = downs.iter().flat_map(|r| done_lines(r, "reverted")).collect();
    let count = reverted.len();
    reverted.sort_by_key(|label| label.split('_').next().unwrap().parse::<u32>().unwrap());
    reverted.dedup();
    assert_eq!(reverted.len(), count, "a migration reverted twice: {reverted:?}");
    assert!(count >= 1);
    if kind != Kind::Sqlite {
        let finished = downs.iter().filter(|r| r.code == 0).count();
        assert_eq!(count, finished, "each runner that finished reverted one");
    }
    // The newest ones, in a row.
    assert_eq!(reverted, every[12 - count..], "{reverted:?}");
    let history = db.history();
    assert_eq!(history.len(), 12 - count, "{history:?}");
    assert_eq!(db.tables().len(), 12 - count);
}

/// Ten `backup create` at once on one database: ten sets, each complete
/// and verified, none in another's folder.
fn ten_backups_at_once(kind: Kind) {
    let db = TestDb::new(kind);
    let p = Project::new();
    p.migration(
        "1_t",
        "CREATE TABLE t (id INTEGER PRIMARY KEY, note VARCHAR(40));\n\
         INSERT INTO t VALUES (1, 'one'), (2, 'two'), (3, 'three');",
        None,
    );
    p.run(&db, &["up"]).ok();
    let children: Vec<Child> = (0..10)
        .map(|_| spawn(&p, &db, &["backup", "create", "--json"]))
        .collect();
    let runs: Vec<Run> = children.into_iter().map(wait).collect();
    let mut dirs: Vec<String> = runs
        .into_iter()
        .map(|r| r.ok().json()["dir"].as_str().unwrap().to_owned())
        .collect();
    dirs.sort();
    dirs.dedup();
    assert_eq!(dirs.len(), 10, "ten sets: {dirs:?}");
    let listed = p.run(&db, &["backup", "list", "--json"]).ok().json();
    let sets = listed["backups"].as_array().unwrap();
    assert_eq!(sets.len(), 10, "{listed}");
    // Oldest first, a set's suffix counted as a number (`-10` after `-9`).
    let ids: Vec<&str> = sets.iter().map(|s| s["id"].as_str().unwrap()).collect();
    let mut in_time = ids.clone();
    in_time.sort_by_key(|id| match id.rsplit_once('-') {
        Some((second, n)) => (second.to_owned(), n.parse::<u32>().unwrap()),
        None => (id.to_string(), 1),
    });
    assert_eq!(ids, in_time);
    for set in sets {
        assert_eq!(set["complete"], true, "{set}");
        assert_eq!(set["migration"], "1", "{set}");
    }
    for dir in &dirs {
        p.run(&db, &["backup", "verify", "--deep", dir]).ok();
    }
}

crate::common::each_dialect!(ten_runners_up_then_down, ten_backups_at_once);

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
