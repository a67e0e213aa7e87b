//! up, down, redo, status, plan, verify, baseline and repair on each dialect.

use crate::common::{Kind, Project, TestDb, each_dialect};

fn portable(p: &Project) {
    p.migration(
        "1_create_users",
        "-- users; with a comment holding a semicolon\n\
         CREATE TABLE users (id INTEGER PRIMARY KEY, email VARCHAR(200) NOT NULL, note VARCHAR(50) DEFAULT 'a;b');\n\
         CREATE INDEX users_email ON users (email);\n",
        Some("DROP INDEX users_email ON users;\nDROP TABLE users;\n"),
    );
    p.migration(
        "2_create_posts",
        "CREATE TABLE posts (id INTEGER PRIMARY KEY, user_id INTEGER NOT NULL, title VARCHAR(100));\n\
         INSERT INTO posts (id, user_id, title) VALUES (1, 1, 'it''s; fine');\n",
        Some("DROP TABLE posts;\n"),
    );
    p.migration(
        "10_add_tags",
        "CREATE TABLE tags (name VARCHAR(40) PRIMARY KEY);\n",
        Some("DROP TABLE tags;\n"),
    );
}

/// `DROP INDEX ... ON` is MySQL's syntax; the others drop the index with the
/// table.
fn fix_for(kind: Kind, p: &Project) {
    if kind != Kind::Mysql {
        p.migration(
            "1_create_users",
            &std::fs::read_to_string(p.migrations().join("1_create_users/up.sql")).unwrap(),
            Some("DROP TABLE users;\n"),
        );
    }
}

fn round_trip(kind: Kind) {
    let db = TestDb::new(kind);
    let p = Project::new();
    portable(&p);
    fix_for(kind, &p);
    let empty = db.snapshot();

    // Numeric order: 10 comes after 2.
    let plan = p.run(&db, &["plan", "--json"]).ok().json();
    let versions: Vec<&str> = plan["migrations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["version"].as_str().unwrap())
        .collect();
    assert_eq!(versions, ["1", "2", "10"]);
    assert!(db.history().is_empty(), "plan must not touch the database");

    p.run(&db, &["up"]).ok().stderr_has("applied 3 migration(s)");
    let applied = db.snapshot();
    assert_ne!(applied, empty);
    assert_eq!(db.tables(), ["posts", "tags", "users"]);
    let history = db.history();
    assert_eq!(
        history,
        [
            ("1".into(), "applied".into()),
            ("2".into(), "applied".into()),
            ("10".into(), "applied".into())
        ]
    );

    // redo proves the newest migration reversible and leaves the schema as it was.
    p.run(&db, &["redo"])
        .ok()
        .stderr_has("reverted 10_add_tags")
        .stderr_has("applied 10_add_tags")
        .stderr_has("redid 1 migration(s): reverted, then applied again");
    assert_eq!(db.snapshot(), applied);
    // Its JSON lists the migration twice, each time saying which way.
    let redone = p.run(&db, &["redo", "--json"]).ok().json();
    let done: Vec<(&str, &str)> = redone["done"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["version"].as_str().unwrap(), m["done"].as_str().unwrap()))
        .collect();
    assert_eq!(done, [("10", "reverted"), ("10", "applied")]);

    p.run(&db, &["down", "--steps", "2"]).ok();
    assert_eq!(db.tables(), ["users"]);
    p.run(&db, &["up", "--to", "2"]).ok();
    assert_eq!(db.tables(), ["posts", "users"]);
    p.run(&db, &["up"]).ok();
    assert_eq!(db.snapshot(), applied);

    // plan --down shows what down would run, newest first, touching nothing.
    let plan = p.run(&db, &["plan", "--down", "--to", "1", "--json"]).ok().json();
    assert_eq!(plan["direction"], "down");
    let reverts: Vec<(&str, &str)> = plan["migrations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["version"].as_str().unwrap(),
                m["actions"][0]["text"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(reverts, [("10", "DROP TABLE tags"), ("2", "DROP TABLE posts")]);
    assert!(
        plan["migrations"][0]["file"]
            .as_str()
            .unwrap()
            .ends_with("10_add_tags/down.sql")
    );
    assert_eq!(db.snapshot(), applied);

    p.run(&db, &["down", "--to", "1"]).ok();
    assert_eq!(db.tables(), ["users"]);
    p.run(&db, &["down", "--to", "0"])
        .ok()
        .stderr_has("reverted 1_create_users");
    assert_eq!(db.snapshot(), empty);
    assert!(db.history().is_empty());
    p.run(&db, &["down"]).ok().stderr_has("nothing to do");
}

fn status_states(kind: Kind) {
    let db = TestDb::new(kind);
    let p = Project::new();
    p.migration("1_a", "CREATE TABLE a (id INTEGER);", Some("DROP TABLE a;"));
    p.migration("3_c", "CREATE TABLE c (id INTEGER);", Some("DROP TABLE c;"));
    p.migration("4_d", "CREATE TABLE d (id INTEGER);", Some("DROP TABLE d;"));
    p.run(&db, &["up", "--to", "3"]).ok();

    // Edit an applied migration, remove another's file, add an older one.
    p.migration(
        "1_a",
        "CREATE TABLE a (id INTEGER, extra INTEGER);",
        Some("DROP TABLE a;"),
    );
    std::fs::remove_dir_all(p.migrations().join("3_c")).unwrap();
    p.migration("2_b", "CREATE TABLE b (id INTEGER);", Some("DROP TABLE b;"));
    // CRLF line endings alone do not count as a change.
    p.migration("4_d", "CREATE TABLE d (id INTEGER);\r\n", Some("DROP TABLE d;"));

    let status = p.run(&db, &["status", "--json"]).ok().json();
    let states: Vec<(String, String)> = status["migrations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["version"].as_str().unwrap().to_owned(),
                m["state"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        states,
        [
            ("1".into(), "modified".into()),
            ("2".into(), "out-of-order".into()),
            ("3".into(), "missing".into()),
            ("4".into(), "pending".into())
        ]
    );

    let verify = p.run(&db, &["verify"]).code(3);
    assert!(verify.stdout.contains("1_a: modified"), "{}", verify.stdout);
    assert!(verify.stdout.contains("3_c: missing"), "{}", verify.stdout);
    let verify_json = p.run(&db, &["verify", "--json"]).code(3).json();
    assert_eq!(verify_json["differences"].as_array().unwrap().len(), 2);

    // up refuses on drift, before running anything.
    p.run(&db, &["up"])
        .code(3)
        .stderr_has("changed since they were applied: 1_a")
        .stderr_has("hint:");
    assert_eq!(db.tables(), ["a", "c"]);

    p.run(&db, &["repair", "--accept-checksums"]).ok();
    p.run(&db, &["up"]).code(3).stderr_has("have no file: 3_c");
    p.run(&db, &["up"]).code(3);
    p.run(&db, &["up", "--ignore-missing"])
        .code(1)
        .stderr_has("older than the newest applied one: 2_b")
        .stderr_has("--allow-out-of-order");
    let repaired = p.run(&db, &["repair", "--forget-missing"]).ok();
    assert!(repaired.stdout.contains("forget-missing 3_c"), "{}", repaired.stdout);
    p.run(&db, &["up", "--allow-out-of-order"]).ok();
    p.run(&db, &["verify"]).ok();
    assert_eq!(db.tables(), ["a", "b", "c", "d"]);
    let audit = db.rows("SELECT action, version FROM waymark_history_audit ORDER BY id");
    assert_eq!(audit.len(), 2, "{audit:?}");
    assert_eq!(audit[0][0].as_deref(), Some("accept-checksum"));
}

fn baseline(kind: Kind) {
    let db = TestDb::new(kind);
    let p = Project::new();
    db.execute("CREATE TABLE legacy (id INTEGER)");
    p.migration(
        "1_legacy",
        "CREATE TABLE legacy (id INTEGER);",
        Some("DROP TABLE legacy;"),
    );
    p.migration("2_new", "CREATE TABLE fresh (id INTEGER);", Some("DROP TABLE fresh;"));
    p.run(&db, &["baseline", "1"]).ok();
    p.run(&db, &["baseline", "1"])
        .code(1)
        .stderr_has("already records 1 migration(s)");
    let status = p.run(&db, &["status", "--json"]).ok().json();
    assert_eq!(status["migrations"][0]["state"], "baseline");
    assert_eq!(status["migrations"][1]["state"], "pending");
    p.run(&db, &["up"]).ok();
    assert_eq!(db.tables(), ["fresh", "legacy"]);
}

fn irreversible_down_refuses(kind: Kind) {
    let db = TestDb::new(kind);
    let p = Project::new();
    p.migration("1_a", "CREATE TABLE a (id INTEGER);", None);
    p.migration("2_b", "CREATE TABLE b (id INTEGER);", Some("DROP TABLE b;"));
    p.run(&db, &["up"]).ok();
    p.run(&db, &["down", "--to", "0"])
        .code(1)
        .stderr_has("cannot revert 1_a: it has no down script, so it is irreversible");
    p.run(&db, &["plan", "--down", "--to", "0"])
        .code(1)
        .stderr_has("cannot revert 1_a");
    // Refused before doing anything: 2_b is still applied.
    assert_eq!(db.tables(), ["a", "b"]);
    assert_eq!(db.history().len(), 2);
}

each_dialect!(round_trip, status_states, baseline, irreversible_down_refuses);

#[test]
fn flat_layout_and_diesel_versions() {
    let db = TestDb::new(Kind::Sqlite);
    let p = Project::new();
    p.file(
        "migrations/2019-10-01-000000_second.up.sql",
        "CREATE TABLE second (id INTEGER);",
    );
    p.file("migrations/2019-10-01-000000_second.down.sql", "DROP TABLE second;");
    p.file(
        "migrations/2019-02-26-002946_first.up.sql",
        "CREATE TABLE first (id INTEGER);",
    );
    p.file("migrations/2019-02-26-002946_first.down.sql", "DROP TABLE first;");
    p.file("migrations/README.md", "not a migration");
    let plan = p.run(&db, &["plan", "--json"]).ok().json();
    let names: Vec<&str> = plan["migrations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["first", "second"]);
    p.run(&db, &["up"]).ok();
    p.run(&db, &["down"])
        .ok()
        .stderr_has("reverted 2019-10-01-000000_second");

    // `new` follows the folder's layout and version style.
    let created = p.run(&db, &["new", "third"]).ok();
    assert!(created.stdout.contains("_third.up.sql"), "{}", created.stdout);
    let name = created.stdout.lines().next().unwrap();
    let file = std::path::Path::new(name)
        .file_name()
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(&file[4..5], "-", "diesel-style version expected: {file}");
}

#[test]
fn long_integer_versions_order_numerically() {
    let db = TestDb::new(Kind::Sqlite);
    let p = Project::new();
    p.migration("99999999999999999999_last", "CREATE TABLE last_one (id INTEGER);", None);
    p.migration("9_early", "CREATE TABLE early (id INTEGER);", None);
    p.migration("10_later", "CREATE TABLE later (id INTEGER);", None);
    p.run(&db, &["up"]).ok();
    let status = p.run(&db, &["status", "--json"]).ok().json();
    let versions: Vec<&str> = status["migrations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["version"].as_str().unwrap())
        .collect();
    assert_eq!(versions, ["9", "10", "99999999999999999999"]);
}

#[test]
fn new_scaffolds_the_next_version() {
    let db = TestDb::new(Kind::Sqlite);
    let p = Project::new();
    p.migration("1_a", "SELECT 1;", None);
    let run = p.run(&db, &["new", "add_things"]).ok();
    assert!(run.stdout.contains("2_add_things/up.sql"), "{}", run.stdout);
    assert!(p.migrations().join("2_add_things/down.sql").exists());
    p.run(&db, &["new", "bad name"])
        .code(2)
        .stderr_has("only letters, digits");
}

#[test]
fn status_of_a_fresh_database_creates_nothing() {
    let db = TestDb::new(Kind::Postgres);
    let p = Project::new();
    p.migration("1_a", "CREATE TABLE a (id INTEGER);", None);
    let status = p.run(&db, &["status", "--json"]).ok().json();
    assert_eq!(status["migrations"][0]["state"], "pending");
    p.run(&db, &["verify"]).ok();
    assert!(
        db.rows("SELECT table_name::text FROM information_schema.tables WHERE table_schema = 'public'")
            .is_empty()
    );
}

/// Every event names the database it ran against, as the log shows, and
/// the name never carries the password.
#[test]
fn the_log_names_the_target_of_each_migration_without_its_password() {
    let db = TestDb::new(Kind::Postgres);
    let with_password = db
        .url
        .replacen("postgres://postgres@", "postgres://postgres:s3cret@", 1);
    assert_ne!(with_password, db.url, "the test URL has a user to add a password to");
    let p = Project::new();
    p.migration("1_a", "CREATE TABLE a (id INT PRIMARY KEY);", Some("DROP TABLE a;"));
    let mut cmd = p.command(&db, &["-v", "up"]);
    cmd.arg("--database-url").arg(&with_password);
    let run = crate::common::Run::from(cmd.output().unwrap()).ok();
    let shown = db.url.replacen("postgres://postgres@", "postgres://postgres:***@", 1);
    assert!(
        run.stderr.contains(&format!("applying 1_a on {shown}")),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains("s3cret"), "{}", run.stderr);
    let run = crate::common::Run::from(p.command(&db, &["-v", "down"]).output().unwrap()).ok();
    assert!(
        run.stderr.contains(&format!("reverting 1_a on {}", db.url)),
        "{}",
        run.stderr
    );
    assert!(db.tables().is_empty(), "{:?}", db.tables());
}
