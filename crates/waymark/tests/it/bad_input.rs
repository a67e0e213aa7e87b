//! Folders waymark must refuse, naming the file, before running anything.

use crate::common::{Kind, Project, TestDb};

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
        .stderr_has("nowhere: No such file or directory");
}
