//! waymark's own tables have a schema version: a history made by the
//! previous release (`tests/fixtures/schema-v1`, dumped from databases its
//! binary migrated; `make.sh` there makes them again) is upgraded in place
//! under the lock, and a history from a newer waymark is refused.

use std::path::Path;

use crate::common::{Kind, Project, TestDb, each_dialect};

fn fixture() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/schema-v1"))
}

/// A database as the previous release left it, and its migrations folder.
fn previous_release(kind: Kind) -> (TestDb, Project) {
    let db = TestDb::new(kind);
    let dump = match kind {
        Kind::Sqlite => "sqlite.sql",
        Kind::Postgres => "postgres.sql",
        Kind::Mysql => "mysql.sql",
    };
    db.execute(&std::fs::read_to_string(fixture().join(dump)).unwrap());
    let p = Project::new();
    for m in ["1_users", "2_drop_nick", "3_posts"] {
        for file in ["up.sql", "down.sql"] {
            p.file(
                &format!("migrations/{m}/{file}"),
                std::fs::read(fixture().join("migrations").join(m).join(file)).unwrap(),
            );
        }
    }
    (db, p)
}

fn texts(rows: Vec<Vec<Option<String>>>) -> Vec<Vec<String>> {
    rows.into_iter()
        .map(|r| r.into_iter().map(Option::unwrap_or_default).collect())
        .collect()
}

fn upgrades_in_place(kind: Kind) {
    let (db, p) = previous_release(kind);
    // A checkpoint as the previous release wrote one, its direction packed
    // in front. (Its batched steps cannot be part of the fixture: their
    // components' digests differ from build to build.)
    db.execute(
        "INSERT INTO waymark_history_checkpoint (version, checkpoint, at) VALUES ('9', 'down:1200', '2026-01-01 00:00:00')",
    );

    // Read-only commands read the old tables as they are and change nothing.
    let status = p.run(&db, &["status", "--json"]).ok().json();
    let states: Vec<&str> = status["migrations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["state"].as_str().unwrap())
        .collect();
    assert_eq!(states, ["applied", "applied", "applied"]);
    assert!(!has_versions(&db), "status must not upgrade anything");

    // The first changing command upgrades, then does its work.
    p.run(&db, &["down"]).ok().stderr_has("reverted 3_posts");
    assert_eq!(
        texts(db.rows("SELECT version, what FROM waymark_history_schema ORDER BY version")),
        [
            ["1", "history, audit, checkpoint and pre-image tables"],
            ["2", "a checkpoint's direction in a column of its own"],
            [
                "3",
                "a migration may be expanded: its expand done, its contract to come"
            ],
        ]
    );
    assert_eq!(
        texts(db.rows("SELECT version, direction, checkpoint FROM waymark_history_checkpoint")),
        [["9", "down", "1200"]]
    );
    // The previous release's audit row and its copy of users.nick are
    // read by this one: the down of 2 puts the values back.
    assert_eq!(
        db.rows("SELECT action FROM waymark_history_audit"),
        [[Some("accept-checksum".to_owned())]]
    );
    p.run(&db, &["down"]).ok().stderr_has("put back");
    assert_eq!(
        texts(db.rows("SELECT id, nick FROM users ORDER BY id")),
        [["1", "ann"], ["2", "bob"]]
    );
    p.run(&db, &["up"]).ok().stderr_has("applied 2 migration(s)");
    assert_eq!(db.history().len(), 3);
    // Upgraded once: a second run finds the current version.
    p.run(&db, &["down"]).ok();
    assert_eq!(
        db.rows("SELECT COUNT(*) FROM waymark_history_schema"),
        [[Some("3".to_owned())]]
    );
}

fn has_versions(db: &TestDb) -> bool {
    let sql = match db.kind {
        Kind::Postgres => "SELECT COUNT(*) FROM pg_tables WHERE tablename = 'waymark_history_schema'",
        Kind::Mysql => {
            "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = DATABASE() AND table_name = 'waymark_history_schema'"
        }
        Kind::Sqlite => "SELECT COUNT(*) FROM sqlite_master WHERE name = 'waymark_history_schema'",
    };
    db.rows(sql) != [[Some("0".to_owned())]]
}

fn newer_schema_refuses(kind: Kind) {
    let db = TestDb::new(kind);
    let p = Project::new();
    p.migration(
        "1_a",
        "CREATE TABLE a (id INTEGER PRIMARY KEY);\n",
        Some("DROP TABLE a;\n"),
    );
    p.migration(
        "2_b",
        "CREATE TABLE b (id INTEGER PRIMARY KEY);\n",
        Some("DROP TABLE b;\n"),
    );
    p.run(&db, &["up", "--to", "1"]).ok();
    db.execute(
        "INSERT INTO waymark_history_schema (version, what, at) VALUES (4, 'from the future', '2026-01-01 00:00:00')",
    );
    let said = "waymark_history_schema says waymark's tables have schema version 4, written by a newer waymark; this \
                one knows versions up to 3 and will not read or change them";
    for command in [&["status"][..], &["up"], &["down"], &["plan"]] {
        p.run(&db, command).code(1).stderr_has(said);
    }
    assert_eq!(db.history(), [("1".to_owned(), "applied".to_owned())]);
    assert_eq!(db.tables(), ["a"]);
}

each_dialect!(upgrades_in_place, newer_schema_refuses);
