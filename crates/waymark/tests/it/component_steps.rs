//! Migrations whose step is a component named by `step.toml`: stopped when
//! they loop or trap, rolled back with their migration, pinned by digest.

use crate::common::{Kind, Project, TestDb};

fn test_steps() -> Vec<u8> {
    std::fs::read(waymark_host::TEST_STEPS_WASM_PATH).unwrap()
}

/// Copies the test component into the project and writes a `step.toml`
/// granting it writes to `t`, unless `extra` says otherwise.
fn step(p: &Project, stem: &str, up: &str, down: Option<&str>, extra: &str) -> String {
    let bytes = test_steps();
    p.file("steps/test-steps.wasm", &bytes);
    let digest = waymark_host::digest(&bytes);
    let down = down.map(|d| format!("down = {d:?}\n")).unwrap_or_default();
    let grant = if extra.contains("[permissions]") {
        ""
    } else {
        "\n[permissions]\nwrite = [\"t\"]\n"
    };
    p.file(
        &format!("migrations/{stem}/step.toml"),
        format!(
            "component = \"../../steps/test-steps.wasm\"\nsha256 = \"{digest}\"\nup = {up:?}\n{down}{extra}{grant}"
        ),
    );
    digest
}

fn project() -> Project {
    let p = Project::new();
    p.migration("1_t", "CREATE TABLE t (id INTEGER PRIMARY KEY);", Some("DROP TABLE t;"));
    p
}

#[test]
fn a_looping_step_is_stopped_and_its_migration_rolled_back() {
    let db = TestDb::new(Kind::Postgres);
    let p = project();
    step(
        &p,
        "2_loop",
        "sql:INSERT INTO t VALUES (1)|loop",
        None,
        "[limits]\ntimeout = \"300ms\"\n",
    );
    let run = p.run(&db, &["up"]).code(1);
    assert!(
        run.stderr
            .contains("migration 2_loop failed: migrations/2_loop/step.toml: step exceeded its time limit of 300 ms"),
        "{}",
        run.stderr
    );
    // The row the step inserted before looping went with the transaction.
    assert_eq!(db.rows("SELECT count(*)::text FROM t"), [[Some("0".to_owned())]]);
    assert_eq!(db.history(), [("1".to_owned(), "applied".to_owned())]);
}

#[test]
fn a_panicking_step_fails_its_migration_with_its_message() {
    let db = TestDb::new(Kind::Sqlite);
    let p = project();
    step(&p, "2_panic", "sql:INSERT INTO t VALUES (1)|panic", None, "");
    let run = p.run(&db, &["up"]).code(1);
    assert!(
        run.stderr
            .contains("migration 2_panic failed: migrations/2_panic/step.toml: step trapped"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("the test step panicked on purpose"),
        "{}",
        run.stderr
    );
    assert_eq!(db.rows("SELECT count(*) FROM t"), [[Some("0".to_owned())]]);
    // The next migration run is healthy.
    step(
        &p,
        "2_panic",
        "sql:INSERT INTO t VALUES (1)",
        Some("sql:DELETE FROM t WHERE id = 1"),
        "",
    );
    p.run(&db, &["up"]).ok();
    p.run(&db, &["redo"]).ok();
    assert_eq!(db.rows("SELECT count(*) FROM t"), [[Some("1".to_owned())]]);
}

#[test]
fn a_component_that_differs_from_its_pin_refuses_everything() {
    let db = TestDb::new(Kind::Sqlite);
    let p = project();
    let digest = step(&p, "2_step", "sql:INSERT INTO t VALUES (1)", None, "");
    let wrong = "0".repeat(64);
    let toml = std::fs::read_to_string(p.migrations().join("2_step/step.toml"))
        .unwrap()
        .replace(&digest, &wrong);
    p.file("migrations/2_step/step.toml", toml);
    let run = p.run(&db, &["up"]).code(1);
    let expected = format!("has SHA-256 {digest}, but migrations/2_step/step.toml pins {wrong}");
    assert!(
        run.stderr.contains(&expected),
        "expected {expected:?} in:\n{}",
        run.stderr
    );
    // Refused before anything ran, including migration 1.
    assert!(db.tables().is_empty());
    p.run(&db, &["plan"]).code(1).stderr_has("pins 0000");
}

#[test]
fn swapping_the_component_shows_as_modified() {
    let db = TestDb::new(Kind::Sqlite);
    let p = project();
    let digest = step(&p, "2_step", "sql:INSERT INTO t VALUES (1)", None, "");
    p.run(&db, &["up"]).ok();
    p.run(&db, &["verify"]).ok();
    // Same step file, another component pinned.
    p.file("steps/other.wasm", waymark_host::SQL_STEP_WASM);
    let other = waymark_host::digest(waymark_host::SQL_STEP_WASM);
    let toml = std::fs::read_to_string(p.migrations().join("2_step/step.toml"))
        .unwrap()
        .replace(&digest, &other)
        .replace("test-steps.wasm", "other.wasm");
    p.file("migrations/2_step/step.toml", toml);
    let status = p.run(&db, &["status", "--json"]).ok().json();
    assert_eq!(status["migrations"][1]["state"], "modified");
    p.run(&db, &["verify"]).code(3);
}

#[test]
fn limits_above_the_ceiling_are_refused() {
    let db = TestDb::new(Kind::Sqlite);
    let p = project();
    step(&p, "2_greedy", "", None, "[limits]\nmemory_mib = 1024\n");
    p.run(&db, &["up"])
        .code(1)
        .stderr_has("migration 2_greedy: step asks for 1024 MiB of memory; the ceiling is 64 MiB");
    assert!(db.tables().is_empty());
    p.run(&db, &["--step-memory-mib", "2048", "up"]).ok();
}

#[test]
fn malformed_step_files_name_the_problem() {
    let db = TestDb::new(Kind::Sqlite);
    let p = project();
    p.file(
        "migrations/2_bad/step.toml",
        "component = \"x.wasm\"\nsha256 = \"abc\"\nup = \"\"\n",
    );
    p.run(&db, &["up"])
        .code(2)
        .stderr_has("2_bad/step.toml: sha256 = \"abc\" is not a SHA-256");
    p.file("migrations/2_bad/step.toml", "component = \"x.wasm\"\nup = \"\"\n");
    p.run(&db, &["up"]).code(2).stderr_has("missing field `sha256`");
    p.file("migrations/2_bad/up.sql", "SELECT 1;");
    p.run(&db, &["up"])
        .code(2)
        .stderr_has("either SQL (up.sql, down.sql) or a component step (step.toml)");
    assert!(db.tables().is_empty());
}
