//! Folders waymark must refuse, naming the file, before running anything.

use crate::common::{Kind, Project, Run, TestDb};

#[track_caller]
fn refuses(p: &Project, needle: &str) {
    let db = TestDb::new(Kind::Sqlite);
    let run = p.run(&db, &["up"]).code(2);
    assert!(run.stderr.contains(needle), "expected {needle:?} in:\n{}", run.stderr);
    assert!(db.tables().is_empty(), "nothing may run");
    assert!(db.history().is_empty(), "nothing may be recorded");
}

fn valid(p: &Project) {
    p.migration("1_fine", "CREATE TABLE fine (id INTEGER);", None);
}

#[test]
fn duplicate_versions() {
    let p = Project::new();
    valid(&p);
    p.migration("001_again", "CREATE TABLE again (id INTEGER);", None);
    refuses(&p, "duplicate version 1:");
    refuses(&p, "001_again");
}

#[test]
fn names_that_do_not_parse() {
    let p = Project::new();
    valid(&p);
    p.migration("v2_oops", "SELECT 1;", None);
    refuses(&p, "v2_oops: version \"v2\" must be digits");

    let p = Project::new();
    valid(&p);
    p.file("migrations/2.up.sql", "SELECT 1;");
    refuses(&p, "2.up.sql: expected <version>_<name>");
}

#[test]
fn non_utf8_file() {
    let p = Project::new();
    valid(&p);
    p.file(
        "migrations/2_latin1/up.sql",
        b"INSERT INTO fine VALUES (1); -- caf\xe9\n",
    );
    refuses(&p, "2_latin1/up.sql: not valid UTF-8 (first bad byte at offset 35)");
}

#[test]
fn folder_without_up_and_stray_files() {
    let p = Project::new();
    valid(&p);
    p.file("migrations/2_empty/down.sql", "SELECT 1;");
    refuses(&p, "2_empty: no up.sql");

    // A stray script beside up.sql is likely a typo: it runs nothing, and
    // every command says so.
    let p = Project::new();
    valid(&p);
    p.file("migrations/2_typo/up.sql", "CREATE TABLE typo (id INTEGER);");
    p.file("migrations/2_typo/donw.sql", "DROP TABLE typo;");
    let db = TestDb::new(Kind::Sqlite);
    p.run(&db, &["up"])
        .ok()
        .stderr_has("2_typo/donw.sql: a migration folder's scripts are up.sql and down.sql; this file is not run");
    assert_eq!(
        db.history(),
        [
            ("1".to_owned(), "applied".to_owned()),
            ("2".to_owned(), "applied".to_owned())
        ]
    );
    p.run(&db, &["down", "--steps", "1"])
        .code(1)
        .stderr_has("cannot revert 2_typo: it has no down script");
    assert_eq!(db.history().len(), 2);

    let p = Project::new();
    valid(&p);
    p.file("migrations/2_orphan.down.sql", "SELECT 1;");
    refuses(&p, "2_orphan.down.sql: no up.sql");
}

#[test]
fn one_version_written_two_ways() {
    // diesel reads a version's digits: these two are one version.
    let p = Project::new();
    p.migration("2019-02-26-002946_dashed", "SELECT 1;", None);
    p.migration("20190226002946_digits", "SELECT 1;", None);
    refuses(&p, "duplicate version 20190226002946");
    refuses(&p, "2019-02-26-002946_dashed");
}

#[test]
fn unterminated_quote_is_an_input_error_with_its_line() {
    let db = TestDb::new(Kind::Postgres);
    let p = Project::new();
    p.migration(
        "1_a",
        "CREATE TABLE a (id INTEGER);\nCREATE FUNCTION f() RETURNS int AS $body$\n  SELECT 1;\n",
        None,
    );
    let run = p.run(&db, &["up"]).code(1);
    let expected =
        "migration 1_a failed: migrations/1_a/up.sql:2: unterminated dollar-quoted string (no closing $body$)";
    assert!(
        run.stderr.contains(expected),
        "expected {expected:?} in:\n{}",
        run.stderr
    );
    assert!(db.tables().is_empty());
    p.run(&db, &["plan"])
        .code(1)
        .stderr_has("unterminated dollar-quoted string");
}

#[test]
fn missing_migrations_folder() {
    let db = TestDb::new(Kind::Sqlite);
    let p = Project::new();
    p.run(&db, &["--migrations", "nowhere", "up"])
        .code(2)
        .stderr_has("nowhere: no such folder of migrations");
    // A file where the folder should be.
    p.file("schema.sql", "CREATE TABLE t (id INTEGER);\n");
    p.run(&db, &["--migrations", "schema.sql", "up"])
        .code(2)
        .stderr_has("schema.sql: not a folder; the migrations are a folder of them");
    assert!(db.tables().is_empty());
}

/// Runs `up` and fails the test, rather than hanging it, if it has not
/// exited within a minute: a read that blocks is what is being tested.
#[track_caller]
fn refuses_promptly(p: &Project, needle: &str) {
    let db = TestDb::new(Kind::Sqlite);
    let mut child = p
        .command(&db, &["up"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            child.kill().unwrap();
            panic!("`up` still running after a minute; it waits on {needle:?}");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let run = Run::from(child.wait_with_output().unwrap()).code(2);
    assert!(run.stderr.contains(needle), "expected {needle:?} in:\n{}", run.stderr);
    assert!(db.tables().is_empty(), "nothing may run");
    assert!(db.history().is_empty(), "nothing may be recorded");
}

#[test]
fn binary_garbage_is_refused_at_its_first_nul() {
    // Bytes from a fixed-seed xorshift: the same garbage every run.
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let garbage: Vec<u8> = (0..4096)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect();
    let first_nul = garbage
        .iter()
        .position(|b| *b == 0)
        .expect("4 KiB of garbage holds a NUL");
    let line = 1 + garbage[..first_nul].iter().filter(|b| **b == b'\n').count();
    let p = Project::new();
    valid(&p);
    p.file("migrations/2_garbage/up.sql", &garbage);
    refuses(
        &p,
        &format!("2_garbage/up.sql:{line}: a NUL byte (at offset {first_nul}); a text file never holds one"),
    );

    // One NUL in good SQL: SQLite would stop reading the statement there
    // and silently skip the rest.
    let p = Project::new();
    valid(&p);
    p.file(
        "migrations/2_nul/up.sql",
        b"CREATE TABLE a (id INTEGER);\nINSERT INTO fine VALUES (1);\0 DROP TABLE fine;\n",
    );
    refuses(&p, "2_nul/up.sql:2: a NUL byte (at offset 57)");
}

#[test]
fn a_fifo_a_device_a_link_loop_or_a_dangling_link_is_named_not_read() {
    use std::os::unix::fs::symlink;

    // A FIFO: reading it would wait for a writer for ever.
    let p = Project::new();
    valid(&p);
    std::fs::create_dir(p.migrations().join("2_fifo")).unwrap();
    let made = std::process::Command::new("mkfifo")
        .arg(p.migrations().join("2_fifo/up.sql"))
        .status()
        .unwrap();
    assert!(made.success());
    refuses_promptly(&p, "2_fifo/up.sql: not a regular file (a FIFO)");

    // A link to /dev/zero: a read that never ends.
    let p = Project::new();
    valid(&p);
    std::fs::create_dir(p.migrations().join("2_zero")).unwrap();
    symlink("/dev/zero", p.migrations().join("2_zero/up.sql")).unwrap();
    refuses_promptly(&p, "2_zero/up.sql: not a regular file (a device)");

    // Two links that name each other.
    let p = Project::new();
    valid(&p);
    std::fs::create_dir(p.migrations().join("2_loop")).unwrap();
    symlink("down.sql", p.migrations().join("2_loop/up.sql")).unwrap();
    symlink("up.sql", p.migrations().join("2_loop/down.sql")).unwrap();
    refuses_promptly(&p, "2_loop/up.sql: Too many levels of symbolic links");

    // A link to nothing.
    let p = Project::new();
    valid(&p);
    std::fs::create_dir(p.migrations().join("2_gone")).unwrap();
    symlink("elsewhere.sql", p.migrations().join("2_gone/up.sql")).unwrap();
    refuses_promptly(&p, "2_gone/up.sql: No such file or directory");

    // A folder where a script should be. (A file without read permission
    // cannot be tested here: the tests run as root, who reads anything.)
    let p = Project::new();
    valid(&p);
    std::fs::create_dir_all(p.migrations().join("2_folder/up.sql")).unwrap();
    refuses_promptly(&p, "2_folder/up.sql: not a regular file (a folder)");

    // A migration folder that links back to the migrations folder: read
    // once as a migration (it has no up.sql), never walked into again.
    let p = Project::new();
    valid(&p);
    symlink(".", p.migrations().join("2_again")).unwrap();
    refuses_promptly(&p, "2_again: no up.sql");
}

#[test]
fn a_50_mb_migration_is_applied_whole() {
    let db = TestDb::new(Kind::Sqlite);
    let p = Project::new();
    let mut sql = String::from("CREATE TABLE big (id INTEGER PRIMARY KEY, note TEXT NOT NULL);\n");
    let note = "x".repeat(100);
    let mut rows = 0u64;
    while sql.len() < 50 * 1024 * 1024 {
        // Statements of a thousand rows, as a data load would be written.
        sql.push_str("INSERT INTO big (id, note) VALUES\n");
        let values: Vec<String> = (0..1000)
            .map(|_| {
                rows += 1;
                format!("  ({rows}, '{note}')")
            })
            .collect();
        sql.push_str(&values.join(",\n"));
        sql.push_str(";\n");
    }
    p.migration("1_big", &sql, None);
    p.run(&db, &["up"]).ok().stderr_has("applied 1_big");
    assert_eq!(
        db.rows("SELECT CAST(count(*) AS TEXT), CAST(sum(length(note)) AS TEXT) FROM big"),
        [[Some(rows.to_string()), Some((rows * 100).to_string())]]
    );
    assert_eq!(db.history(), [("1".to_owned(), "applied".to_owned())]);
    p.run(&db, &["verify"]).ok();
}
