//! A statement that fails mid-file: all-or-nothing where DDL is
//! transactional, a recorded failure and `repair` where it is not.

use crate::common::{Kind, Project, TestDb};

const BROKEN: &str = "CREATE TABLE first_half (id INTEGER);\n\
                      INSERT INTO first_half (id) VALUES (1);\n\
                      \n\
                      -- the next statement refers to a table that does not exist\n\
                      INSERT INTO\n  no_such_table (id)\n  VALUES (1);\n\
                      CREATE TABLE never_created (id INTEGER);\n";

fn broken_project() -> Project {
    let p = Project::new();
    p.migration("1_ok", "CREATE TABLE ok (id INTEGER);", Some("DROP TABLE ok;"));
    p.migration("2_broken", BROKEN, Some("DROP TABLE first_half;"));
    p.migration(
        "3_after",
        "CREATE TABLE after_broken (id INTEGER);",
        Some("DROP TABLE after_broken;"),
    );
    p
}

fn transactional_rollback(kind: Kind, line: u32, message: &str) {
    let db = TestDb::new(kind);
    let p = broken_project();
    let run = p.run(&db, &["up"]).code(1);
    // The error names the file, the line of the failing statement (on
    // PostgreSQL, of the failing token within it) and the database's own
    // message.
    let expected = format!("migration 2_broken failed: migrations/2_broken/up.sql:{line}: ");
    assert!(
        run.stderr.contains(&expected),
        "expected {expected:?} in:\n{}",
        run.stderr
    );
    assert!(run.stderr.contains(message), "expected {message:?} in:\n{}", run.stderr);
    // 1 stays applied; nothing of 2 is left behind; 3 never ran.
    assert_eq!(db.tables(), ["ok"]);
    assert_eq!(db.history(), [("1".to_owned(), "applied".to_owned())]);

    // Fixed, the next run carries on.
    p.migration(
        "2_broken",
        "CREATE TABLE first_half (id INTEGER);",
        Some("DROP TABLE first_half;"),
    );
    p.run(&db, &["up"]).ok();
    assert_eq!(db.tables(), ["after_broken", "first_half", "ok"]);
}

#[test]
fn postgres_rolls_back_a_broken_migration() {
    transactional_rollback(Kind::Postgres, 6, "[42P01] relation \"no_such_table\" does not exist");
}

#[test]
fn sqlite_rolls_back_a_broken_migration() {
    transactional_rollback(Kind::Sqlite, 5, "no such table: no_such_table");
}

#[test]
fn postgres_syntax_error_points_at_the_offending_line() {
    let db = TestDb::new(Kind::Postgres);
    let p = Project::new();
    p.migration(
        "1_typo",
        "CREATE TABLE fine (id INTEGER);\nCREATE TABLE typo (\n  id INTEGER,\n  name TEXTT NOT NULL\n);\n",
        None,
    );
    let run = p.run(&db, &["up"]).code(1);
    let expected = "migrations/1_typo/up.sql:4: [42704]";
    assert!(
        run.stderr.contains(expected),
        "expected {expected:?} in:\n{}",
        run.stderr
    );
    assert!(run.stderr.contains("type \"textt\" does not exist"), "{}", run.stderr);
    assert!(db.tables().is_empty());
}

/// A parser error anywhere in a file sent as one script runs none of it,
/// the savepoint around it included: the error is the parser's, at its
/// line, not a "transaction is aborted" at line 1, and the next run, fixed,
/// goes on on a clean connection.
#[test]
fn postgres_parser_error_in_a_script_is_reported_as_itself() {
    let db = TestDb::new(Kind::Postgres);
    let p = Project::new();
    p.migration("1_ok", "CREATE TABLE ok (id INTEGER);", Some("DROP TABLE ok;"));
    p.migration(
        "2_typo",
        "CREATE TABLE fine (id INTEGER);\nCREATE TABL typo (id INTEGER);\nCREATE TABLE later (id INTEGER);\n",
        None,
    );
    p.run(&db, &["up"])
        .code(1)
        .stderr_has("migrations/2_typo/up.sql:2: [42601] syntax error at or near \"TABL\"");
    assert_eq!(db.tables(), ["ok"]);
    assert_eq!(db.history(), [("1".to_owned(), "applied".to_owned())]);

    p.migration(
        "2_typo",
        "CREATE TABLE fine (id INTEGER);\nCREATE TABLE typo (id INTEGER);\n",
        None,
    );
    p.run(&db, &["up"]).ok();
    assert_eq!(db.tables(), ["fine", "ok", "typo"]);
}

#[test]
fn single_transaction_applies_all_or_nothing() {
    let db = TestDb::new(Kind::Postgres);
    let p = broken_project();
    let run = p.run(&db, &["up", "--single-transaction", "--json"]).code(1);
    let json = run.json();
    assert_eq!(json["ok"], false);
    assert_eq!(json["done"].as_array().unwrap().len(), 0);
    assert!(db.tables().is_empty(), "{:?}", db.tables());
    assert!(db.history().is_empty());

    let mysql = TestDb::new(Kind::Mysql);
    p.run(&mysql, &["up", "--single-transaction"])
        .code(2)
        .stderr_has("not possible on MySQL/MariaDB");
    assert!(mysql.tables().is_empty());
}

#[test]
fn mariadb_records_a_failure_and_needs_repair() {
    let db = TestDb::new(Kind::Mysql);
    let p = broken_project();
    let run = p.run(&db, &["up"]).code(1);
    let expected = "migrations/2_broken/up.sql:5: [1146]";
    assert!(run.stderr.contains(expected), "{}", run.stderr);
    assert!(run.stderr.contains("[1146]"), "{}", run.stderr);
    assert!(
        run.stderr.contains(
            "hint: migrations/2_broken/up.sql ran outside a transaction, so its statements before line 5 stay \
             applied. Either undo them by hand and run `waymark repair --rolled-back --version 2`, then `waymark up` \
             again; or apply the rest by hand (migrations/2_broken/up.sql from line 5 on) and run `waymark repair \
             --applied --version 2`"
        ),
        "{}",
        run.stderr
    );
    // DDL auto-committed: the first half is there, and the failure is recorded.
    assert_eq!(db.tables(), ["first_half", "ok"]);
    assert_eq!(
        db.history(),
        [
            ("1".to_owned(), "applied".to_owned()),
            ("2".to_owned(), "failed".to_owned())
        ]
    );
    let status = p.run(&db, &["status", "--json"]).ok().json();
    assert_eq!(status["migrations"][1]["state"], "failed");
    assert!(
        status["migrations"][1]["error"]
            .as_str()
            .unwrap()
            .contains("no_such_table")
    );

    // Nothing runs until repaired, and the message says what to do.
    p.run(&db, &["up"])
        .code(1)
        .stderr_has("migration 2_broken failed")
        .stderr_has("waymark repair --rolled-back --version 2");
    p.run(&db, &["down"]).code(1).stderr_has("failed state");
    p.run(&db, &["repair"]).code(2).stderr_has("--rolled-back");
    assert_eq!(db.tables(), ["first_half", "ok"]);

    // The operator undoes the partial work, repairs, fixes the file, re-runs.
    db.execute("DROP TABLE first_half");
    let repaired = p.run(&db, &["repair", "--rolled-back"]).ok();
    assert!(repaired.stdout.contains("rolled-back 2_broken"), "{}", repaired.stdout);
    p.migration(
        "2_broken",
        "CREATE TABLE first_half (id INTEGER);",
        Some("DROP TABLE first_half;"),
    );
    p.run(&db, &["up"]).ok();
    assert_eq!(db.tables(), ["after_broken", "first_half", "ok"]);
    let audit = db.rows("SELECT action FROM waymark_history_audit");
    assert_eq!(audit, [[Some("rolled-back".to_owned())]]);
}

/// A down that fails half-way on MariaDB: the hint's two ways out each
/// work, one recording the migration as still applied (and `down` then
/// reverts it), the other as reverted.
#[test]
fn mariadb_repairs_a_failed_down_either_way() {
    let db = TestDb::new(Kind::Mysql);
    let p = Project::new();
    let down = "DROP TABLE a;\nDROP TABLE no_such_table;\nDROP TABLE b;\n";
    p.migration("1_one", "CREATE TABLE one (id INTEGER);", Some("DROP TABLE one;"));
    p.migration(
        "2_pair",
        "CREATE TABLE a (id INTEGER);\nCREATE TABLE b (id INTEGER);",
        Some(down),
    );
    p.run(&db, &["up"]).ok();

    let failed = p.run(&db, &["down"]).code(1);
    let failed = failed.stderr_has("migrations/2_pair/down.sql:2: [1051]").stderr_has(
        "hint: migrations/2_pair/down.sql ran outside a transaction, so what it did before line 2 stays done and \
             2_pair is half reverted. Either finish the revert by hand (migrations/2_pair/down.sql from line 2 on) \
             and run `waymark repair --rolled-back --version 2`, which records it as not applied; or undo what ran \
             before line 2 and run `waymark repair --applied --version 2`, which records it as applied, for \
             `waymark down` to try again",
    );
    drop(failed);
    assert_eq!(db.tables(), ["b", "one"]);
    assert_eq!(db.history()[1], ("2".to_owned(), "failed".to_owned()));
    p.run(&db, &["down"])
        .code(1)
        .stderr_has("failed state")
        .stderr_has("`waymark repair --applied --version 2`");
    p.run(&db, &["repair", "--rolled-back", "--applied"])
        .code(2)
        .stderr_has("cannot be used with");

    // Undo what ran, say it stands applied: the fixed down then reverts it.
    db.execute("CREATE TABLE a (id INTEGER)");
    let repaired = p.run(&db, &["repair", "--applied", "--version", "2"]).ok();
    assert!(repaired.stdout.contains("applied 2_pair"), "{}", repaired.stdout);
    assert_eq!(db.history()[1], ("2".to_owned(), "applied".to_owned()));
    p.migration(
        "2_pair",
        "CREATE TABLE a (id INTEGER);\nCREATE TABLE b (id INTEGER);",
        Some("DROP TABLE a;\nDROP TABLE b;\n"),
    );
    p.run(&db, &["down"]).ok().stderr_has("reverted 2_pair");
    assert_eq!(db.tables(), ["one"]);
    assert_eq!(db.history().len(), 1);

    // The other way: fail again, finish the revert by hand, say so.
    p.run(&db, &["up"]).ok();
    p.migration(
        "2_pair",
        "CREATE TABLE a (id INTEGER);\nCREATE TABLE b (id INTEGER);",
        Some(down),
    );
    p.run(&db, &["down"]).code(1);
    db.execute("DROP TABLE b");
    p.run(&db, &["repair", "--rolled-back", "--version", "2"]).ok();
    assert_eq!(db.tables(), ["one"]);
    let status = p.run(&db, &["status", "--json"]).ok().json();
    assert_eq!(status["migrations"][1]["state"], "pending");
    let audit = db.rows("SELECT action FROM waymark_history_audit ORDER BY id");
    let audit: Vec<&str> = audit.iter().map(|r| r[0].as_deref().unwrap()).collect();
    assert_eq!(audit, ["applied", "rolled-back"]);
}

#[test]
fn no_transaction_marker_runs_outside_a_transaction() {
    let db = TestDb::new(Kind::Postgres);
    let p = Project::new();
    p.migration("1_t", "CREATE TABLE t (id INTEGER);", Some("DROP TABLE t;"));
    // CREATE INDEX CONCURRENTLY fails inside a transaction block.
    p.migration(
        "2_index",
        "-- no-transaction\nCREATE INDEX CONCURRENTLY t_id ON t (id);\n",
        Some("-- no-transaction\nDROP INDEX CONCURRENTLY t_id;\n"),
    );
    let plan = p.run(&db, &["plan", "--json"]).ok().json();
    assert_eq!(plan["migrations"][1]["transactional"], false);
    p.run(&db, &["up"]).ok();
    assert_eq!(
        db.rows("SELECT indexname::text FROM pg_indexes WHERE tablename = 't'"),
        [[Some("t_id".to_owned())]]
    );
    p.run(&db, &["down"]).ok();
    assert!(
        db.rows("SELECT indexname::text FROM pg_indexes WHERE tablename = 't'")
            .is_empty()
    );

    // Without the marker PostgreSQL would refuse it; lint says so before
    // anything runs (exit 6), and nothing is recorded.
    p.migration("2_index", "CREATE INDEX CONCURRENTLY t_id ON t (id);\n", None);
    p.run(&db, &["up"]).code(6).stderr_has(
        "migrations/2_index/up.sql:1: [concurrently-in-transaction] CONCURRENTLY in a migration that runs in a \
         transaction fails; fix: put `-- no-transaction` on the script's first line",
    );
    assert_eq!(db.history().len(), 1);
    // Allowed anyway, PostgreSQL refuses it, and still nothing is recorded.
    p.migration(
        "2_index",
        "CREATE INDEX CONCURRENTLY t_id ON t (id); -- waymark:allow concurrently-in-transaction to see it fail\n",
        None,
    );
    p.run(&db, &["up"])
        .code(1)
        .stderr_has("cannot run inside a transaction block");
    assert_eq!(db.history().len(), 1);
}
