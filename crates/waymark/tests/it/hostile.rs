//! Hostile plugins against a real database: each one runs inside a real
//! migration after a write of its own, fails with a message that says what
//! it did, leaves the database as it found it, and leaves the next
//! migration to run normally.

use crate::common::{Kind, Project, TestDb, each_dialect};

const LIMITS: &str = "[step]\ntimeout = \"500ms\"\nmemory_mib = 16\nmax_calls = 500\nstatement_timeout = \"500ms\"\n";

fn hostile_steps_fail_alone(kind: Kind) {
    let db = TestDb::new(kind);
    let p = Project::new();
    p.file("waymark.toml", LIMITS);
    p.migration(
        "1_tables",
        "CREATE TABLE t (id INTEGER PRIMARY KEY); CREATE TABLE other (id INTEGER PRIMARY KEY);",
        Some("DROP TABLE other; DROP TABLE t;"),
    );
    p.run(&db, &["up"]).ok();
    let bytes = std::fs::read(waymark_host::TEST_STEPS_WASM_PATH).unwrap();
    p.file("steps/test-steps.wasm", &bytes);
    let digest = waymark_host::digest(&bytes);
    let snapshot = db.snapshot();

    let sleep = match kind {
        Kind::Postgres => Some(("SELECT pg_sleep(5)", "canceling statement due to statement timeout")),
        Kind::Mysql => Some(("SELECT SLEEP(5)", "max_statement_time exceeded")),
        // SQLite runs statements in waymark's own process; no bound.
        Kind::Sqlite => None,
    };
    let mut cases: Vec<(&str, String, &str)> = vec![
        (
            "loop",
            "sql:INSERT INTO t VALUES (1)|loop".into(),
            "step exceeded its time limit of 500 ms",
        ),
        (
            "oom",
            "sql:INSERT INTO t VALUES (1)|oom".into(),
            "step exceeded its memory limit of 16 MiB",
        ),
        (
            "recurse",
            "sql:INSERT INTO t VALUES (1)|recurse".into(),
            "call stack exhausted",
        ),
        (
            "panic",
            "sql:INSERT INTO t VALUES (1)|panic".into(),
            "the test step panicked on purpose",
        ),
        (
            "call-flood",
            "sql:INSERT INTO t VALUES (1)|call-flood".into(),
            "step exceeded its limit of 500 database calls",
        ),
        (
            "read-file",
            "sql:INSERT INTO t VALUES (1)|read-file".into(),
            "read-file: ",
        ),
        ("list-dir", "sql:INSERT INTO t VALUES (1)|list-dir".into(), "list-dir: "),
        (
            "env",
            "sql:INSERT INTO t VALUES (1)|env".into(),
            "env: 0 variables, 0 arguments",
        ),
        ("connect", "sql:INSERT INTO t VALUES (1)|connect".into(), "connect: "),
        (
            "ungranted",
            "sql:INSERT INTO t VALUES (1)|ignore:DELETE FROM other".into(),
            "but the step tried to write table \"other\"",
        ),
        (
            "huge-error",
            "sql:INSERT INTO t VALUES (1)|huge-error".into(),
            "more bytes)",
        ),
    ];
    if let Some((sql, says)) = sleep {
        cases.push((
            "slow-statement",
            format!("sql:INSERT INTO t VALUES (1)|sql:{sql}"),
            says,
        ));
    }
    for (name, up, says) in cases {
        let stem = format!("2_{}", name.replace('-', "_"));
        p.file(
            &format!("migrations/{stem}/step.toml"),
            format!(
                "component = \"../../steps/test-steps.wasm\"\nsha256 = \"{digest}\"\nup = {up:?}\n\
                 [permissions]\nwrite = [\"t\"]\n"
            ),
        );
        let run = p.run(&db, &["up"]).code(1);
        assert!(
            run.stderr.contains(&format!("migration {stem} failed")),
            "{name}: {}",
            run.stderr
        );
        assert!(
            run.stderr.contains(says),
            "{name}: expected {says:?} in\n{}",
            run.stderr
        );
        assert!(
            run.stderr.len() < 16 * 1024,
            "{name}: {} bytes of stderr",
            run.stderr.len()
        );
        // What the step got from the sandbox: nothing to read, list or
        // reach.
        let leak = match name {
            "read-file" => Some("bytes"),
            "list-dir" => Some("entries"),
            "connect" => Some("connect: connected"),
            _ => None,
        };
        if let Some(leak) = leak {
            assert!(!run.stderr.contains(leak), "{name}: {}", run.stderr);
        }
        assert_eq!(db.snapshot(), snapshot, "{name} changed the database");
        assert_eq!(db.history().len(), 1, "{name} left a history row");
        std::fs::remove_dir_all(p.migrations().join(&stem)).unwrap();
    }

    // The host is unharmed: the next migration runs.
    p.migration("2_healthy", "INSERT INTO t VALUES (42);", Some("DELETE FROM t;"));
    p.run(&db, &["up"]).ok();
    assert_eq!(db.rows("SELECT id FROM t"), [[Some("42".to_owned())]]);
}

each_dialect!(hostile_steps_fail_alone);

#[test]
fn a_log_flood_is_cut_off_and_the_step_goes_on() {
    let db = TestDb::new(Kind::Sqlite);
    let p = Project::new();
    p.migration("1_t", "CREATE TABLE t (id INTEGER PRIMARY KEY);", None);
    let bytes = std::fs::read(waymark_host::TEST_STEPS_WASM_PATH).unwrap();
    p.file("steps/test-steps.wasm", &bytes);
    p.file(
        "migrations/2_flood/step.toml",
        format!(
            "component = \"../../steps/test-steps.wasm\"\nsha256 = \"{}\"\nup = \"log-flood\"\n",
            waymark_host::digest(&bytes)
        ),
    );
    let run = p.run(&db, &["-v", "up"]).ok();
    assert!(
        run.stderr
            .contains("step exceeded its log budget; further messages are dropped")
    );
    // One MiB of messages, and not the 200 MB the step tried to write.
    assert!(
        run.stderr.len() < 2 * 1024 * 1024,
        "{} bytes of stderr",
        run.stderr.len()
    );
}
