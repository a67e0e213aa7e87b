//! Plugin steps as their authors and operators meet them: the example
//! `seed` and `backfill` plugins on every dialect, typed rows and
//! parameters, permissions the host enforces, resumable batches, dry runs,
//! and `waymark plugin test` and `inspect`.

use std::time::{Duration, Instant};

use crate::common::{Kind, Project, TestDb, each_dialect};

fn pinned(p: &Project, name: &str, path: &str) -> String {
    let bytes = std::fs::read(path).unwrap();
    p.file(&format!("steps/{name}.wasm"), &bytes);
    waymark_host::digest(&bytes)
}

/// Writes migration `stem` as a step of plugin `name` with the rest of its
/// `step.toml` in `body`.
fn plugin_step(p: &Project, stem: &str, name: &str, path: &str, body: &str) {
    let digest = pinned(p, name, path);
    p.file(
        &format!("migrations/{stem}/step.toml"),
        format!("component = \"../../steps/{name}.wasm\"\nsha256 = \"{digest}\"\n{body}"),
    );
}

fn test_step(p: &Project, stem: &str, body: &str) {
    plugin_step(p, stem, "test-steps", waymark_host::TEST_STEPS_WASM_PATH, body);
}

fn seed_round_trip(kind: Kind) {
    let db = TestDb::new(kind);
    let p = Project::new();
    p.migration(
        "1_roles",
        "CREATE TABLE roles (id INTEGER PRIMARY KEY, name VARCHAR(40) NOT NULL, admin BOOLEAN, weight REAL);",
        Some("DROP TABLE roles;"),
    );
    plugin_step(
        &p,
        "2_seed_roles",
        "seed",
        waymark_host::SEED_WASM_PATH,
        r#"
[permissions]
write = ["roles"]

[config]
table = "roles"
key = ["id"]
columns = ["id", "name", "admin", "weight"]
rows = [[1, "owner", true, 1.5], [2, "editor's", false, 0.25], [3, "guest", false, 0, "extra"]]
"#,
    );
    // A malformed row: the step names it, and nothing is seeded.
    p.run(&db, &["up"])
        .code(1)
        .stderr_has("migration 2_seed_roles failed: migrations/2_seed_roles/step.toml: step.toml [config] rows[2] has 5 values for 4 columns");
    assert_eq!(db.rows("SELECT count(*) FROM roles"), [[Some("0".to_owned())]]);
    let fix = std::fs::read_to_string(p.migrations().join("2_seed_roles/step.toml"))
        .unwrap()
        .replace("\"guest\", false, 0, \"extra\"", "\"guest\", false, 0");
    p.file("migrations/2_seed_roles/step.toml", fix);
    p.run(&db, &["up"]).ok();
    let rows = |db: &TestDb| db.rows("SELECT id, name FROM roles ORDER BY id");
    let seeded = vec![
        vec![Some("1".to_owned()), Some("owner".to_owned())],
        vec![Some("2".to_owned()), Some("editor's".to_owned())],
        vec![Some("3".to_owned()), Some("guest".to_owned())],
    ];
    assert_eq!(rows(&db), seeded);
    assert_eq!(
        db.rows("SELECT count(*) FROM roles WHERE admin"),
        [[Some("1".to_owned())]]
    );
    // Idempotent: a row changed by hand converges back on redo.
    db.execute("UPDATE roles SET name = 'renamed' WHERE id = 2");
    p.run(&db, &["redo"]).ok();
    assert_eq!(rows(&db), seeded);
    p.run(&db, &["down"]).ok();
    assert_eq!(db.rows("SELECT count(*) FROM roles"), [[Some("0".to_owned())]]);
}

each_dialect!(seed_round_trip);

fn users_table(kind: Kind) -> String {
    let key = if kind == Kind::Sqlite { "INTEGER" } else { "BIGINT" };
    format!(
        "CREATE TABLE users (id {key} PRIMARY KEY, name VARCHAR(40) NOT NULL, email VARCHAR(40));\n\
         INSERT INTO users (id, name) \
         WITH RECURSIVE s(g) AS (SELECT 1 UNION ALL SELECT g + 1 FROM s WHERE g < 200) \
         SELECT (a.g - 1) * 100 + b.g, 'User' FROM s a JOIN s b ON b.g <= 100;\n"
    )
}

const BACKFILL: &str = r#"
transaction = "batches"

[permissions]
write = ["users"]

[config]
table = "users"
key = "id"
set = "email = lower(name)"
where = "email IS NULL"
batch_size = 500
pause_ms = 40

[config.down]
set = "email = NULL"
"#;

fn count(db: &TestDb, sql: &str) -> i64 {
    db.rows(sql)[0][0].as_deref().unwrap().parse().unwrap()
}

/// The checkpoint a batched step recorded, if any.
fn checkpoint(db: &TestDb) -> Option<i64> {
    db.rows("SELECT checkpoint FROM waymark_history_checkpoint WHERE direction = 'up'")
        .first()
        .and_then(|row| row[0].as_deref()?.parse().ok())
}

fn backfill_resumes_after_a_kill(kind: Kind) {
    let db = TestDb::new(kind);
    let p = Project::new();
    p.migration("1_users", &users_table(kind), Some("DROP TABLE users;"));
    p.run(&db, &["up"]).ok();
    plugin_step(&p, "2_backfill", "backfill", waymark_host::BACKFILL_WASM_PATH, BACKFILL);
    assert!(p.run(&db, &["plan"]).ok().stdout.contains("UPDATE"));

    let mut runner = p.command(&db, &["up"]).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while checkpoint(&db).is_none_or(|key| key < 3000) {
        assert!(Instant::now() < deadline, "the backfill never reached key 3000");
        std::thread::sleep(Duration::from_millis(20));
    }
    runner.kill().unwrap();
    runner.wait().unwrap();

    // Every batch committed with its checkpoint: the rows done are exactly
    // those up to the checkpoint, so at most the batch in flight is lost.
    let key = checkpoint(&db).unwrap();
    let done = count(&db, "SELECT count(*) FROM users WHERE email IS NOT NULL");
    assert_eq!(done, key, "rows backfilled vs checkpoint");
    assert!(done < 20_000, "the runner was killed before the end");
    assert_eq!(
        count(
            &db,
            &format!("SELECT count(*) FROM users WHERE email IS NOT NULL AND id > {key}")
        ),
        0
    );
    let status = p.run(&db, &["status", "--json"]).ok().json();
    assert_eq!(status["migrations"][1]["state"], "failed");

    // The next run resumes after the checkpoint and finishes.
    let run = p.run(&db, &["-v", "up"]).ok();
    assert!(run.stderr.contains("resuming"), "{}", run.stderr);
    assert_eq!(count(&db, "SELECT count(*) FROM users WHERE email = 'user'"), 20_000);
    assert_eq!(
        db.rows("SELECT count(*) FROM waymark_history_checkpoint"),
        [[Some("0".to_owned())]]
    );
    let status = p.run(&db, &["status", "--json"]).ok().json();
    assert_eq!(status["migrations"][1]["state"], "applied");

    p.run(&db, &["down"]).ok();
    assert_eq!(count(&db, "SELECT count(*) FROM users WHERE email IS NOT NULL"), 0);
}

each_dialect!(backfill_resumes_after_a_kill);

/// On a terminal, a batched step's count shows in the running migration's
/// bar (one bar, not a second drawn over it).
#[test]
fn a_backfill_counts_its_rows_in_the_running_bar() {
    let db = TestDb::new(Kind::Sqlite);
    let p = Project::new();
    p.migration("1_users", &users_table(Kind::Sqlite), Some("DROP TABLE users;"));
    p.run(&db, &["up"]).ok();
    plugin_step(&p, "2_backfill", "backfill", waymark_host::BACKFILL_WASM_PATH, BACKFILL);
    let drawn = p.drawn_on_a_terminal(Some(&db.url), "up");
    let counts: Vec<u64> = drawn
        .split(['\r', '\n'])
        .filter_map(|l| l.split_once("] 0/1 applying 2_backfill: ")?.1.split_once('/'))
        .map(|(done, _)| done.parse().unwrap())
        .collect();
    assert!(counts.len() >= 2, "the count shows as it goes: {drawn}");
    assert!(counts.windows(2).all(|w| w[0] <= w[1]), "{counts:?}");
    assert!(drawn.contains("applied 2_backfill"), "{drawn}");
    assert_eq!(count(&db, "SELECT count(*) FROM users WHERE email = 'user'"), 20_000);
}

/// What holds back every write to `users` until its transaction ends: a
/// table lock on PostgreSQL, a row lock on every row on MySQL/MariaDB.
fn lock_users(kind: Kind) -> &'static str {
    match kind {
        Kind::Postgres => "LOCK TABLE users IN SHARE MODE",
        _ => "SELECT id FROM users FOR UPDATE",
    }
}

/// Starts `up` of a backfill of `users` and returns once it has
/// committed a few batches.
fn backfill_under_way(db: &TestDb, p: &Project, args: &[&str]) -> std::process::Child {
    p.migration("1_users", &users_table(db.kind), Some("DROP TABLE users;"));
    p.run(db, &["up"]).ok();
    plugin_step(p, "2_backfill", "backfill", waymark_host::BACKFILL_WASM_PATH, BACKFILL);
    let runner = p
        .command(db, args)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while checkpoint(db).is_none_or(|key| key < 3000) {
        assert!(Instant::now() < deadline, "the backfill never reached key 3000");
        std::thread::sleep(Duration::from_millis(20));
    }
    runner
}

/// A backfill batch that gives up waiting for a lock loses that batch
/// alone, rolled back with the locks it held: waymark waits the blocker
/// out, outside the lock's queue, and the backfill goes on from its last
/// commit point to the end.
fn a_backfill_waits_out_a_lock_from_its_last_commit_point(kind: Kind) {
    let db = TestDb::new(kind);
    let p = Project::new();
    let runner = backfill_under_way(&db, &p, &["up"]);
    let blocker = crate::lock_waits::Blocker::holding(&db, lock_users(kind));
    let held_from = checkpoint(&db).unwrap();
    std::thread::sleep(Duration::from_millis(2500));
    // Nothing was backfilled meanwhile, beyond the batch in flight.
    let held_to = checkpoint(&db).unwrap();
    assert!(
        held_to <= held_from + 500,
        "backfilled from {held_from} to {held_to} past a lock"
    );
    let blocker_id = blocker.id;
    blocker.commit();
    let run = crate::common::Run::from(runner.wait_with_output().unwrap()).ok();

    // PostgreSQL's batch waits the ramp's first 50 ms, as an atomic
    // migration's first attempt does; MySQL counts whole seconds. The
    // message gives the wait as measured, a few ms over the bound on a busy
    // machine (53 ms in one CI run): on PostgreSQL, 50 to 99 ms, never the
    // whole second of the timeout.
    if kind == Kind::Postgres {
        let at = run.stderr.find("gave up waiting for a lock after ").expect(&run.stderr)
            + "gave up waiting for a lock after ".len();
        let ms: u64 = run.stderr[at..].split(' ').next().unwrap().parse().expect(&run.stderr);
        assert!(
            (50..100).contains(&ms),
            "waited {ms} ms, not the ramp's first 50 ms:\n{}",
            run.stderr
        );
    }
    let (quote, holding, waited) = match kind {
        Kind::Postgres => ('"', String::new(), "gave up waiting for a lock after "),
        // MariaDB names the row lock's holder exactly from InnoDB's lock
        // waits.
        _ => (
            '`',
            format!("holding X row lock on `{}`.`users`)", db.name()),
            "gave up waiting for a lock after 1",
        ),
    };
    for part in [
        format!("warning: 2_backfill: attempt 1 of 21: `UPDATE {quote}users{quote} SET email = lower(name) WHERE"),
        waited.to_owned(),
        format!("it is held by pid {blocker_id} ("),
        holding,
    ] {
        assert!(run.stderr.contains(&part), "no {part:?} in\n{}", run.stderr);
    }
    crate::lock_waits::assert_waited_out(
        &run.stderr,
        blocker_id,
        "; its batch in flight rolled back, and tried again from its last commit point",
    );
    assert_eq!(count(&db, "SELECT count(*) FROM users WHERE email = 'user'"), 20_000);
    let status = p.run(&db, &["status", "--json"]).ok().json();
    assert_eq!(status["migrations"][1]["state"], "applied");
    assert_eq!(
        db.rows("SELECT count(*) FROM waymark_history_checkpoint"),
        [[Some("0".to_owned())]]
    );
}

#[test]
fn a_backfill_waits_out_a_lock_from_its_last_commit_point_postgres() {
    a_backfill_waits_out_a_lock_from_its_last_commit_point(Kind::Postgres);
}

#[test]
fn a_backfill_waits_out_a_lock_from_its_last_commit_point_mysql() {
    a_backfill_waits_out_a_lock_from_its_last_commit_point(Kind::Mysql);
}

/// A backfill held back longer than its lock budget fails naming the
/// blocker, keeps what it committed with its checkpoint, and resumes from
/// there once the blocker is gone.
#[test]
fn a_backfill_held_back_past_its_budget_fails_and_resumes_postgres() {
    let db = TestDb::new(Kind::Postgres);
    let p = Project::new();
    p.file("waymark.toml", "[locks]\ntimeout = \"1s\"\nmax_wait = \"2s\"\n");
    let runner = backfill_under_way(&db, &p, &["up"]);
    let blocker = crate::lock_waits::Blocker::holding(&db, lock_users(Kind::Postgres));
    let run = crate::common::Run::from(runner.wait_with_output().unwrap()).code(1);
    let blocker_id = blocker.id;
    blocker.commit();

    for part in [
        "error: migration 2_backfill failed: ".to_owned(),
        format!("it is held by pid {blocker_id} ("),
        "; waymark gave up after 2 attempts in ".to_owned(),
        "hint: the step's batches up to its last commit point stay applied, with its checkpoint; run the same \
         command again to go on from there"
            .to_owned(),
    ] {
        assert!(run.stderr.contains(&part), "no {part:?} in\n{}", run.stderr);
    }
    // Both attempts timed out on the same batch: one stretch, told once
    // before the second attempt.
    assert_eq!(
        run.stderr.matches("warning: 2_backfill: attempt ").count(),
        1,
        "{}",
        run.stderr
    );
    let key = checkpoint(&db).unwrap();
    assert_eq!(count(&db, "SELECT count(*) FROM users WHERE email IS NOT NULL"), key);
    let status = p.run(&db, &["status", "--json"]).ok().json();
    assert_eq!(status["migrations"][1]["state"], "failed");

    let run = p.run(&db, &["-v", "up"]).ok();
    assert!(run.stderr.contains("resuming"), "{}", run.stderr);
    assert_eq!(count(&db, "SELECT count(*) FROM users WHERE email = 'user'"), 20_000);
}

fn permissions(kind: Kind) {
    let db = TestDb::new(kind);
    let p = Project::new();
    p.migration(
        "1_tables",
        "CREATE TABLE t (id INTEGER PRIMARY KEY); CREATE TABLE other (id INTEGER PRIMARY KEY);",
        Some("DROP TABLE other; DROP TABLE t;"),
    );
    p.run(&db, &["up"]).ok();
    let snapshot = db.snapshot();
    let refused = |stem: &str, body: &str, says: &[&str]| {
        test_step(&p, stem, body);
        let run = p.run(&db, &["up"]).code(1);
        for s in says {
            assert!(run.stderr.contains(s), "{stem}: expected {s:?} in\n{}", run.stderr);
        }
        assert_eq!(db.snapshot(), snapshot, "{stem} changed the database");
        // Only a read-write step on MySQL leaves a failed record behind (its
        // DDL, had it run any, could not have rolled back).
        p.run(&db, &["repair", "--rolled-back"]).ok();
        std::fs::remove_dir_all(p.migrations().join(stem)).unwrap();
    };
    // Writing a table the grant does not list, even after a granted write,
    // and even when the step ignores the refusal.
    refused(
        "2_other",
        "up = \"sql:INSERT INTO t VALUES (1)|ignore:INSERT INTO other VALUES (1)\"\n[permissions]\nwrite = [\"t\"]\n",
        &[
            "step.toml grants permissions.write = [\"t\"], but the step tried to write table \"other\"",
            "INSERT INTO other VALUES (1)",
        ],
    );
    // Read-only by default.
    refused(
        "2_default",
        "up = \"query:SELECT count(*) FROM t|sql:DELETE FROM t\"\n",
        &["permissions.access = \"read-only\" (the default), but the step tried to write table \"t\""],
    );
    // DDL under a table list.
    refused(
        "2_ddl",
        "up = \"sql:DROP TABLE t\"\n[permissions]\nwrite = [\"t\"]\n",
        &["sent DROP TABLE", "permissions.access = \"read-write\" without a list"],
    );
    // The transaction is the host's, whatever the grant.
    refused(
        "2_commit",
        "up = \"sql:INSERT INTO t VALUES (1)|sql:COMMIT|sql:INSERT INTO t VALUES (2)\"\n[permissions]\naccess = \"read-write\"\n",
        &["the step sent COMMIT, but waymark owns the migration's transaction"],
    );
    if kind == Kind::Postgres {
        // What parsing cannot see, the read-only transaction stops: a
        // sequence advanced by a function called from a SELECT.
        db.execute("CREATE SEQUENCE s");
        let snapshot_with_sequence = db.snapshot();
        test_step(&p, "2_nextval", "up = \"query:SELECT nextval('s')\"\n");
        p.run(&db, &["up"])
            .code(1)
            .stderr_has("cannot execute nextval() in a read-only transaction");
        assert_eq!(db.snapshot(), snapshot_with_sequence);
        std::fs::remove_dir_all(p.migrations().join("2_nextval")).unwrap();
    }
    // A granted step runs, and the next migration is unaffected.
    test_step(
        &p,
        "2_granted",
        "up = \"query:SELECT count(*) FROM other|sql:INSERT INTO t VALUES (7)\"\ndown = \"sql:DELETE FROM t\"\n[permissions]\nwrite = [\"t\"]\n",
    );
    p.run(&db, &["up"]).ok();
    assert_eq!(db.rows("SELECT id FROM t"), [[Some("7".to_owned())]]);
}

each_dialect!(permissions);

fn typed_rows(kind: Kind) {
    let db = TestDb::new(kind);
    let p = Project::new();
    let query = match kind {
        Kind::Postgres => {
            "SELECT 42 AS i, 2.5::float8 AS f, 'x' AS t, true AS b, NULL::int AS n, '\\\\x0102'::bytea AS y, \
             '{\\\"a\\\": 1}'::jsonb AS j, '2024-05-06T07:08:09Z'::timestamptz AS ts, 12.50::numeric AS d"
        }
        Kind::Mysql => {
            "SELECT 42 AS i, 2.5e0 AS f, 'x' AS t, true AS b, NULL AS n, x'0102' AS y, \
             CAST('2024-05-06 07:08:09' AS DATETIME) AS ts, 12.50 AS d"
        }
        Kind::Sqlite => "SELECT 42 AS i, 2.5 AS f, 'x' AS t, NULL AS n, x'0102' AS y",
    };
    test_step(&p, "1_echo", &format!("up = \"echo-query:{query}\"\n"));
    let run = p.run(&db, &["up"]).code(1);
    let mut expected = vec![
        "Integer(42)",
        "Float(2.5)",
        "Text(\"x\")",
        "Null",
        "Bytes([1, 2])",
        "name: \"i\"",
    ];
    match kind {
        Kind::Postgres => expected.extend([
            "Boolean(true)",
            "Json(\"{\\\"a\\\":1}\")",
            "Timestamp(Timestamp { seconds: 1714979289, nanoseconds: 0 })",
            "Text(\"12.50\")",
            "type-name: \"INT4\"",
        ]),
        Kind::Mysql => expected.extend([
            "Integer(1)",
            "Timestamp(Timestamp { seconds: 1714979289, nanoseconds: 0 })",
            "Text(\"12.50\")",
        ]),
        Kind::Sqlite => {}
    }
    for e in expected {
        assert!(run.stderr.contains(e), "expected {e} in\n{}", run.stderr);
    }
    // More rows than one query may return.
    let many = match kind {
        Kind::Postgres => "SELECT g FROM generate_series(1, 10001) g",
        _ => {
            "WITH RECURSIVE s(g) AS (SELECT 1 UNION ALL SELECT g + 1 FROM s WHERE g < 101) \
             SELECT a.g FROM s a JOIN s b ON 1 = 1"
        }
    };
    test_step(&p, "1_echo", &format!("up = \"query:{many}\"\n"));
    p.run(&db, &["repair", "--rolled-back"]).ok();
    p.run(&db, &["up"])
        .code(1)
        .stderr_has("returned more than 10000 rows, the most one query may return to a step");
}

each_dialect!(typed_rows);

#[test]
fn a_step_cannot_flood_the_history_or_lie_about_itself() {
    let db = TestDb::new(Kind::Sqlite);
    let p = Project::new();
    p.migration("1_t", "CREATE TABLE t (id INTEGER PRIMARY KEY);", Some("DROP TABLE t;"));
    test_step(&p, "2_huge", "up = \"huge-error\"\n");
    let run = p.run(&db, &["up"]).code(1);
    assert!(
        run.stderr.contains("more bytes)"),
        "{}",
        &run.stderr[..200.min(run.stderr.len())]
    );
    assert!(
        run.stderr.len() < 10_000,
        "the error was not cut: {} bytes",
        run.stderr.len()
    );

    test_step(
        &p,
        "2_huge",
        "up = \"\"\n[config.describe]\nname = \"\"\nreversible = true\n",
    );
    p.run(&db, &["up"]).ok();
    p.run(&db, &["down"])
        .code(1)
        .stderr_has("the step's description has an invalid name \"\"");
    assert_eq!(db.history().len(), 2, "nothing was reverted");

    test_step(&p, "2_huge", "up = \"\"\n[config.describe]\nreversible = false\n");
    p.run(&db, &["repair", "--accept-checksums"]).ok();
    p.run(&db, &["down"])
        .code(1)
        .stderr_has("cannot revert 2_huge: its step test-steps 0.1.0 says it is irreversible");
}

#[test]
fn dry_run_applies_then_rolls_back() {
    let db = TestDb::new(Kind::Postgres);
    let p = Project::new();
    p.migration("1_t", "CREATE TABLE t (id INTEGER PRIMARY KEY);", Some("DROP TABLE t;"));
    plugin_step(
        &p,
        "2_seed",
        "seed",
        waymark_host::SEED_WASM_PATH,
        "[permissions]\nwrite = [\"t\"]\n[config]\ntable = \"t\"\nkey = [\"id\"]\ncolumns = [\"id\"]\nrows = [[1], [2]]\n",
    );
    let run = p.run(&db, &["up", "--dry-run", "--json"]).ok();
    assert_eq!(run.json()["done"].as_array().unwrap().len(), 2);
    assert!(
        run.stderr.contains("applied and rolled back (dry run) 2 migration(s)"),
        "{}",
        run.stderr
    );
    assert!(db.tables().iter().all(|t| t != "t"), "{:?}", db.tables());
    assert!(db.history().is_empty());
    // A failing migration fails the dry run, naming it.
    p.migration("3_bad", "INSERT INTO missing VALUES (1);", None);
    p.run(&db, &["up", "--dry-run"])
        .code(1)
        .stderr_has("migration 3_bad failed");

    let mysql = TestDb::new(Kind::Mysql);
    p.run(&mysql, &["up", "--dry-run"])
        .code(2)
        .stderr_has("--dry-run is not possible on MySQL/MariaDB");
    assert!(mysql.tables().is_empty(), "{:?}", mysql.tables());
}

/// A `roles` table for `plugin test --setup`, and `1_seed`, a seed step
/// that writes two rows into it: (the setup file, the step's folder).
pub(crate) fn seeded_roles(p: &Project) -> (std::path::PathBuf, std::path::PathBuf) {
    let setup = p.file("setup.sql", "CREATE TABLE roles (id INTEGER PRIMARY KEY, name TEXT);");
    plugin_step(
        p,
        "1_seed",
        "seed",
        waymark_host::SEED_WASM_PATH,
        "[permissions]\nwrite = [\"roles\"]\n[config]\ntable = \"roles\"\nkey = [\"id\"]\ncolumns = [\"id\", \"name\"]\nrows = [[1, \"a\"], [2, \"b\"]]\n",
    );
    (setup, p.migrations().join("1_seed"))
}

#[test]
fn plugin_test_reports_changes_and_catches_a_down_that_does_not_restore() {
    let p = Project::new();
    let (setup, folder) = seeded_roles(&p);
    let run = plugin_test(&p, &[folder.to_str().unwrap(), "--setup", setup.to_str().unwrap()]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stdout.contains("up ("), "{}", run.stdout);
    assert!(run.stdout.contains("roles: 0 rows -> 2 rows"), "{}", run.stdout);
    assert!(run.stderr.contains("ok: down restored what up found"), "{}", run.stderr);

    // A step whose down forgets part of what up did.
    let leaky = p.migrations().join("2_leaky");
    test_step(
        &p,
        "2_leaky",
        "up = \"sql:INSERT OR REPLACE INTO roles VALUES (1, 'a')|sql:INSERT OR REPLACE INTO roles VALUES (2, 'b')\"\ndown = \"sql:DELETE FROM roles WHERE id = 1\"\n[permissions]\nwrite = [\"roles\"]\n",
    );
    let run = plugin_test(
        &p,
        &[leaky.to_str().unwrap(), "--setup", setup.to_str().unwrap(), "--json"],
    );
    assert_eq!(run.code, 1, "{}", run.stderr);
    let report: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(report["ok"], false);
    let problem = report["problems"][0].as_str().unwrap();
    assert!(
        problem.contains("down did not restore the database as up found it: roles: 0 rows -> 1 rows"),
        "{problem}"
    );

    // Against PostgreSQL, by URL; the scratch history is dropped after.
    let db = TestDb::new(Kind::Postgres);
    let run = plugin_test(
        &p,
        &[
            folder.to_str().unwrap(),
            "--setup",
            setup.to_str().unwrap(),
            "--scratch-url",
            &db.url,
        ],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(db.tables(), ["roles"]);
}

pub(crate) fn plugin_test(p: &Project, args: &[&str]) -> crate::common::Run {
    let mut cmd = std::process::Command::new(crate::common::BIN);
    cmd.current_dir(p.dir.path())
        .env("DATABASE_URL", "postgres://nobody@127.0.0.1:1/never-used")
        .env("WAYMARK_CACHE_DIR", crate::common::cache_dir())
        .args(["plugin", "test"])
        .args(args);
    crate::common::Run::from(cmd.output().unwrap())
}

#[test]
fn plugin_inspect_prints_the_pin_and_refuses_what_is_not_a_step() {
    let p = Project::new();
    let run = crate::common::Run::from(
        std::process::Command::new(crate::common::BIN)
            .args(["plugin", "inspect", waymark_host::BACKFILL_WASM_PATH, "--json"])
            .env("WAYMARK_CACHE_DIR", crate::common::cache_dir())
            .output()
            .unwrap(),
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    let json = run.json();
    let bytes = std::fs::read(waymark_host::BACKFILL_WASM_PATH).unwrap();
    assert_eq!(json["sha256"], waymark_host::digest(&bytes));
    assert_eq!(json["interface"], "waymark:plugin@0.1.0");
    assert_eq!(json["description"]["name"], "backfill");
    // Without its configuration the backfill cannot say how to revert.
    assert_eq!(json["description"]["reversible"], false);

    let junk = p.file("junk.wasm", b"\0asm not really");
    let run = crate::common::Run::from(
        std::process::Command::new(crate::common::BIN)
            .args(["plugin", "inspect", junk.to_str().unwrap()])
            .output()
            .unwrap(),
    );
    assert_eq!(run.code, 1);
    assert!(run.stderr.contains("step component junk.wasm"), "{}", run.stderr);
}

/// `componentize-py`, pinned: from `WAYMARK_COMPONENTIZE_PY`, or installed
/// into a virtual environment under the target folder on first use.
fn componentize_py() -> std::path::PathBuf {
    if let Some(path) = std::env::var_os("WAYMARK_COMPONENTIZE_PY") {
        return path.into();
    }
    let venv = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("componentize-py-0.25.1");
    let tool = venv.join("bin/componentize-py");
    if !tool.exists() {
        let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".to_owned());
        let status = std::process::Command::new(&python)
            .args(["-m", "venv"])
            .arg(&venv)
            .status()
            .unwrap_or_else(|e| panic!("the Python example plugin needs {python} (3.10 or later): {e}"));
        assert!(status.success(), "creating a virtual environment at {}", venv.display());
        let status = std::process::Command::new(venv.join("bin/pip"))
            .args(["install", "--quiet", "componentize-py==0.25.1"])
            .status()
            .unwrap();
        assert!(status.success(), "pip install componentize-py==0.25.1 failed");
    }
    tool
}

#[test]
fn a_step_written_in_python_masks_personal_data() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let wasm = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("mask.wasm");
    let built = std::process::Command::new(componentize_py())
        .arg("-d")
        .arg(root.join("wit"))
        .args(["-w", "step-plugin", "componentize", "--stub-wasi", "-p"])
        .arg(root.join("plugins/mask-py"))
        .arg("app")
        .arg("-o")
        .arg(&wasm)
        .output()
        .unwrap();
    assert!(built.status.success(), "{}", String::from_utf8_lossy(&built.stderr));

    let db = TestDb::new(Kind::Postgres);
    let p = Project::new();
    p.migration(
        "1_users",
        "CREATE TABLE users (id BIGINT PRIMARY KEY, name TEXT, email TEXT UNIQUE, phone TEXT);\n\
         INSERT INTO users SELECT g, 'Person ' || g, 'person' || g || '@mail.example', '+1 555 ' || g \
         FROM generate_series(1, 1000) g;",
        Some("DROP TABLE users;"),
    );
    plugin_step(
        &p,
        "2_mask",
        "mask",
        wasm.to_str().unwrap(),
        "transaction = \"batches\"\n[permissions]\nwrite = [\"users\"]\n\
         [config]\ntable = \"users\"\nkey = \"id\"\nbatch_size = 100\n\
         [config.columns]\nemail = \"email\"\nname = \"redact\"\nphone = \"null\"\n",
    );
    let plan = p.run(&db, &["plan"]).ok();
    assert!(
        plan.stdout
            .contains("UPDATE \"users\" SET \"email\" = 'user' || \"id\""),
        "{}",
        plan.stdout
    );
    p.run(&db, &["up"]).ok();
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM users WHERE email LIKE 'person%' OR phone IS NOT NULL"
        ),
        0
    );
    assert_eq!(
        count(&db, "SELECT count(DISTINCT email) FROM users WHERE name = 'redacted'"),
        1000
    );
    p.run(&db, &["down"])
        .code(1)
        .stderr_has("cannot revert 2_mask: its step mask 0.1.0 says it is irreversible");

    // Its configuration is checked by the step itself, in its own words.
    let toml = std::fs::read_to_string(p.migrations().join("2_mask/step.toml"))
        .unwrap()
        .replace("phone = \"null\"", "phone = \"scramble\"");
    let p2 = Project::new();
    p2.file("migrations/1_mask/step.toml", toml);
    p2.file("steps/mask.wasm", std::fs::read(&wasm).unwrap());
    let fresh = TestDb::new(Kind::Sqlite);
    p2.run(&fresh, &["up"])
        .code(1)
        .stderr_has("step.toml [config.columns] phone = 'scramble': expected one of email, redact, null");
}

#[test]
fn transaction_modes_and_bad_grants() {
    let db = TestDb::new(Kind::Postgres);
    let p = Project::new();
    p.migration("1_t", "CREATE TABLE t (id INTEGER PRIMARY KEY);", Some("DROP TABLE t;"));
    p.run(&db, &["up"]).ok();

    // A commit point outside a batched step is an error the step sees.
    test_step(&p, "2_commit", "up = \"commit:x\"\n[permissions]\nwrite = [\"t\"]\n");
    p.run(&db, &["up"])
        .code(1)
        .stderr_has("commit points are only for steps declared transaction = \"batches\" in step.toml");
    std::fs::remove_dir_all(p.migrations().join("2_commit")).unwrap();

    // transaction = "none": each statement commits as it runs, so a failure
    // leaves what ran before it and is recorded as failed.
    test_step(
        &p,
        "2_none",
        "up = \"sql:INSERT INTO t VALUES (1)|fail\"\ntransaction = \"none\"\n[permissions]\nwrite = [\"t\"]\n",
    );
    p.run(&db, &["up"])
        .code(1)
        .stderr_has("the test step failed on purpose");
    assert_eq!(db.rows("SELECT id FROM t"), [[Some("1".to_owned())]]);
    let status = p.run(&db, &["status", "--json"]).ok().json();
    assert_eq!(status["migrations"][1]["state"], "failed");
    p.run(&db, &["up"]).code(1).stderr_has(
        "migration 2_none failed: migrations/2_none/step.toml: the test step failed on purpose; nothing will run",
    );

    // Grants that make no sense are refused before anything runs, naming
    // the file.
    for (grant, says) in [
        (
            "access = \"admin\"",
            "permissions.access = \"admin\": expected \"read-only\" or \"read-write\"",
        ),
        (
            "access = \"read-only\"\nwrite = [\"t\"]",
            "permissions.write lists tables to write, but permissions.access is \"read-only\"",
        ),
        ("write = []", "permissions.write is empty"),
        ("tables = [\"t\"]", "unknown field `tables`"),
    ] {
        let q = Project::new();
        test_step(&q, "1_bad", &format!("up = \"\"\n[permissions]\n{grant}\n"));
        let run = q.run(&db, &["up"]).code(2);
        assert!(run.stderr.contains("1_bad/step.toml"), "{}", run.stderr);
        assert!(run.stderr.contains(says), "expected {says:?} in {}", run.stderr);
    }
    let q = Project::new();
    test_step(&q, "1_bad", "up = \"\"\ntransaction = \"sometimes\"\n");
    q.run(&db, &["up"]).code(2).stderr_has("unknown variant `sometimes`");
}
