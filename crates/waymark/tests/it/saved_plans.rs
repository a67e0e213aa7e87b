//! Saved plans: `plan --out` writes one, `up --plan` (or `down --plan`)
//! applies exactly it, and refuses with exit 3, naming what changed, when
//! the history or the files are no longer what it was made from.

use crate::common::{Kind, Project, TestDb, each_dialect};

fn two(p: &Project) {
    p.migration(
        "1_users",
        "CREATE TABLE users (id INTEGER PRIMARY KEY, email VARCHAR(100));\n",
        Some("DROP TABLE users;\n"),
    );
    p.migration(
        "2_posts",
        "CREATE TABLE posts (id INTEGER PRIMARY KEY, title VARCHAR(100));\nINSERT INTO posts (id, title) VALUES (1, 'a');\n",
        Some("DROP TABLE posts;\n"),
    );
}

fn read(p: &Project, name: &str) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(p.dir.path().join(name)).unwrap()).unwrap()
}

/// Plan, review, apply: exactly the plan runs, and the same plan cannot
/// run twice.
fn plan_then_apply(kind: Kind) {
    let db = TestDb::new(kind);
    let p = Project::new();
    two(&p);
    p.run(&db, &["up", "--to", "1"]).ok();

    let shown = p.run(&db, &["plan", "--out", "plan.json", "--json"]).ok();
    let shown = shown.json();
    let saved = read(&p, "plan.json");
    assert_eq!(shown["ok"], true);
    assert_eq!(saved["waymark_plan"], 1);
    assert_eq!(saved["direction"], "up");
    let dialect = match kind {
        Kind::Sqlite => "sqlite",
        Kind::Postgres => "postgres",
        Kind::Mysql => "mysql",
    };
    assert_eq!(saved["dialect"], dialect);
    let migrations = saved["migrations"].as_array().unwrap();
    assert_eq!(migrations.len(), 1);
    assert_eq!(migrations[0]["version"], "2");
    // MariaDB's DDL commits as it runs, so the migration is recorded
    // rather than atomic.
    let strategy = if kind == Kind::Mysql { "recorded" } else { "atomic" };
    assert_eq!(migrations[0]["strategy"], strategy);
    let actions: Vec<(u64, &str)> = migrations[0]["actions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| (a["line"].as_u64().unwrap(), a["text"].as_str().unwrap()))
        .collect();
    assert_eq!(actions.len(), 2, "{actions:?}");
    assert_eq!(actions[1].0, 2);
    assert!(actions[1].1.starts_with("INSERT INTO posts"), "{actions:?}");
    assert_eq!(saved["history"].as_array().unwrap().len(), 1);
    assert_eq!(saved["files"].as_array().unwrap().len(), 2);
    assert_eq!(db.history().len(), 1, "plan must not touch the database");

    p.run(&db, &["up", "--plan", "plan.json"])
        .ok()
        .stderr_has("applied 1 migration(s)");
    assert_eq!(db.history().len(), 2);
    assert_eq!(db.rows("SELECT title FROM posts"), [[Some("a".to_owned())]]);

    // The plan was made before 2 was applied: it is stale now.
    p.run(&db, &["up", "--plan", "plan.json"])
        .code(3)
        .stderr_has("migration 2 is applied now and had no history row when the plan was made")
        .stderr_has("nothing was applied");
    assert_eq!(db.history().len(), 2);
    assert_eq!(db.rows("SELECT COUNT(*) FROM posts"), [[Some("1".to_owned())]]);
}

/// A file changed after the plan was made: nothing runs, and the file is
/// named.
fn changed_file_refuses(kind: Kind) {
    let db = TestDb::new(kind);
    let p = Project::new();
    two(&p);
    p.run(&db, &["plan", "--out", "plan.json"]).ok();
    p.migration(
        "2_posts",
        "CREATE TABLE posts (id INTEGER PRIMARY KEY, title VARCHAR(100), body VARCHAR(100));\n",
        Some("DROP TABLE posts;\n"),
    );
    p.migration("3_tags", "CREATE TABLE tags (name VARCHAR(20) PRIMARY KEY);\n", None);
    let run = p
        .run(&db, &["up", "--plan", "plan.json"])
        .code(3)
        .stderr_has("2_posts/up.sql changed since the plan was made (SHA-256 ")
        .stderr_has("3_tags/up.sql (version 3) is new since the plan was made");
    assert!(!run.stderr.contains("1_users"), "{}", run.stderr);
    assert!(db.history().is_empty());
    assert!(
        !db.tables().iter().any(|t| t == "users" || t == "posts"),
        "{:?}",
        db.tables()
    );
}

/// Another runner applied the plan's migrations first: the plan refuses
/// instead of skipping silently or running them again.
fn another_runner_first(kind: Kind) {
    let db = TestDb::new(kind);
    let p = Project::new();
    two(&p);
    p.run(&db, &["plan", "--out", "plan.json"]).ok();
    p.run(&db, &["up", "--to", "1"]).ok();
    p.run(&db, &["up", "--plan", "plan.json"]).code(3).stderr_has(
        "migration 1 is applied now and had no history row when the plan was made (it ran since: another runner \
         got there first, or this plan was applied already)",
    );
    assert_eq!(db.history().len(), 1);
    assert!(!db.tables().iter().any(|t| t == "posts"));
}

each_dialect!(plan_then_apply, changed_file_refuses, another_runner_first);

#[test]
fn a_down_plan_reverts_exactly_and_only_through_down() {
    let db = TestDb::new(Kind::Sqlite);
    let p = Project::new();
    two(&p);
    p.run(&db, &["up"]).ok();
    let shown = p
        .run(&db, &["plan", "--down", "--steps", "2", "--out", "down.json"])
        .ok();
    assert!(shown.stdout.contains("revert 2_posts"), "{}", shown.stdout);
    assert!(
        shown
            .stderr
            .contains("`waymark down --plan down.json` applies exactly it"),
        "{}",
        shown.stderr
    );
    assert_eq!(read(&p, "down.json")["options"]["steps"], 2);

    p.run(&db, &["up", "--plan", "down.json"])
        .code(2)
        .stderr_has("down.json: a plan of `down`, not of `up`; apply it with `waymark down --plan down.json`");
    assert_eq!(db.history().len(), 2);

    // A down script is part of what was reviewed too.
    let down = p.migrations().join("2_posts/down.sql");
    std::fs::write(&down, "DROP TABLE posts;\nDROP TABLE users;\n").unwrap();
    p.run(&db, &["down", "--plan", "down.json"])
        .code(3)
        .stderr_has("2_posts/down.sql changed since the plan was made");
    assert_eq!(db.history().len(), 2);
    assert_eq!(db.tables(), ["posts", "users"]);

    std::fs::write(&down, "DROP TABLE posts;\n").unwrap();
    p.run(&db, &["down", "--plan", "down.json"])
        .ok()
        .stderr_has("reverted 2 migration(s)");
    assert!(db.history().is_empty());
    assert!(db.tables().is_empty(), "{:?}", db.tables());
}

#[test]
fn a_plan_for_another_dialect_or_edited_by_hand_refuses() {
    let lite = TestDb::new(Kind::Sqlite);
    let pg = TestDb::new(Kind::Postgres);
    let p = Project::new();
    two(&p);
    p.run(&lite, &["plan", "--out", "plan.json"]).ok();
    p.run(&pg, &["up", "--plan", "plan.json"])
        .code(3)
        .stderr_has("the plan was made for sqlite, and this database is postgres");
    assert!(pg.history().is_empty());

    // Edited to run a migration outside its transaction: waymark would not
    // plan that, so it does not run it.
    p.run(&pg, &["plan", "--out", "plan.json"]).ok();
    let text = std::fs::read_to_string(p.dir.path().join("plan.json")).unwrap();
    std::fs::write(
        p.dir.path().join("plan.json"),
        text.replacen("\"strategy\": \"atomic\"", "\"strategy\": \"recorded\"", 1),
    )
    .unwrap();
    p.run(&pg, &["up", "--plan", "plan.json"])
        .code(3)
        .stderr_has("the plan says [up 1_users recorded, up 2_posts atomic], but from this state waymark would run [up 1_users atomic, up 2_posts atomic]");
    assert!(pg.history().is_empty());
    assert!(pg.tables().is_empty());
}

#[test]
fn a_file_that_is_not_a_plan_is_refused_by_name() {
    let db = TestDb::new(Kind::Sqlite);
    let p = Project::new();
    two(&p);
    p.file("plan.json", "{\n  \"waymark_plan\": 1,\n  \"direction\": \"up\"\n}\n");
    p.run(&db, &["up", "--plan", "plan.json"])
        .code(2)
        .stderr_has("plan.json:4:1: not a waymark plan: missing field `dialect`");
    p.file("plan.json", "{\"waymark_plan\": 7}");
    p.run(&db, &["up", "--plan", "plan.json"])
        .code(2)
        .stderr_has("plan.json: written by a newer waymark (plan format 7; this one reads 1)");
    p.run(&db, &["up", "--plan", "missing.json"])
        .code(2)
        .stderr_has("missing.json: cannot read the plan:");
    p.run(&db, &["up", "--plan", "plan.json", "--to", "1"]).code(2);
    assert!(db.history().is_empty());
    assert!(db.tables().is_empty());
}
