//! Config file, session setup, exit codes for usage errors, and passwords.

use crate::common::{Kind, Project, TestDb};

#[test]
fn init_sql_runs_on_every_connection_postgres() {
    let db = TestDb::new(Kind::Postgres);
    let p = Project::new();
    p.migration(
        "1_seen",
        "CREATE TABLE seen AS SELECT current_setting('lock_timeout') AS lock_timeout;",
        Some("DROP TABLE seen;"),
    );
    p.run(&db, &["--init-sql", "SET lock_timeout = '4321ms'", "up"]).ok();
    assert_eq!(db.rows("SELECT lock_timeout FROM seen"), [[Some("4321ms".to_owned())]]);

    // Without it, a migration's transaction waits [locks] first_timeout
    // on its first attempt; with an init SQL that leaves the bound alone,
    // too.
    p.run(&db, &["down", "--to", "0"]).ok();
    p.run(&db, &["--init-sql", "SET application_name = 'mine'", "up"]).ok();
    assert_eq!(db.rows("SELECT lock_timeout FROM seen"), [[Some("50ms".to_owned())]]);
}

#[test]
fn init_sql_from_config_mariadb() {
    let db = TestDb::new(Kind::Mysql);
    let p = Project::new();
    // Double-quoted identifiers only parse with ANSI_QUOTES.
    p.migration("1_quoted", "CREATE TABLE \"quoted\" (\"id\" INTEGER);", None);
    p.file(
        "waymark.toml",
        "init_sql = [\"SET SESSION sql_mode = 'ANSI_QUOTES'\"]\n",
    );
    p.run(&db, &["up"]).ok();
    assert_eq!(db.tables(), ["quoted"]);
}

#[test]
fn failing_init_sql_names_the_statement() {
    let db = TestDb::new(Kind::Postgres);
    let p = Project::new();
    p.run(&db, &["--init-sql", "SET no_such_setting = 1", "status"])
        .code(1)
        .stderr_has("session setup statement \"SET no_such_setting = 1\" failed");
}

#[test]
fn config_file_sets_the_history_table_and_schema() {
    let db = TestDb::new(Kind::Postgres);
    let p = Project::new();
    p.migration("1_a", "CREATE TABLE a (id INTEGER);", None);
    p.file(
        "custom.toml",
        format!(
            "database_url = \"{}\"\nlock_timeout = \"5s\"\n[history]\ntable = \"schema_log\"\nschema = \"ops\"\n",
            db.url
        ),
    );
    let mut cmd = std::process::Command::new(crate::common::BIN);
    let out = cmd
        .current_dir(p.dir.path())
        .env_remove("DATABASE_URL")
        .env("WAYMARK_CACHE_DIR", crate::common::cache_dir())
        .args(["--config", "custom.toml", "up"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(db.rows("SELECT version FROM ops.schema_log"), [[Some("1".to_owned())]]);
}

#[test]
fn config_errors_name_the_file_and_line() {
    let db = TestDb::new(Kind::Sqlite);
    let p = Project::new();
    p.file("waymark.toml", "migrations = \"migrations\"\nlock_timout = \"5s\"\n");
    let run = p.run(&db, &["status"]).code(2);
    assert!(
        run.stderr.contains("waymark.toml: TOML parse error at line 2"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("unknown field `lock_timout`"), "{}", run.stderr);

    p.file("waymark.toml", "lock_timeout = \"soon\"\n");
    p.run(&db, &["status"]).code(2).stderr_has("lock_timeout = \"soon\"");
    p.run(&db, &["--config", "absent.toml", "status"])
        .code(2)
        .stderr_has("absent.toml");
    std::fs::remove_file(p.dir.path().join("waymark.toml")).unwrap();
    p.run(&db, &["--history-table", "bad-name", "status"])
        .code(2)
        .stderr_has("must be a plain identifier");
}

#[test]
fn usage_errors_exit_2() {
    let db = TestDb::new(Kind::Sqlite);
    let p = Project::new();
    p.run(&db, &["up", "--no-such-flag"]).code(2);
    p.run(&db, &["down", "--steps", "0"])
        .code(2)
        .stderr_has("--steps must be at least 1");
    p.run(&db, &["up", "--to", "abc"])
        .code(2)
        .stderr_has("--to: version \"abc\"");
    p.run(&db, &["up", "--to", "77"])
        .code(2)
        .stderr_has("--to 77: no migration has that version");
    let run = p.run(&db, &["--json", "up", "--to", "77"]).code(2);
    assert_eq!(run.json()["ok"], false);
}

#[test]
fn unsupported_url_scheme_is_a_usage_error() {
    let mut db = TestDb::new(Kind::Sqlite);
    db.url = "oracle://scott:tiger@db/orcl".to_owned();
    let p = Project::new();
    let run = p.run(&db, &["status"]).code(2);
    assert!(run.stderr.contains("unsupported scheme \"oracle\""), "{}", run.stderr);
    assert!(!run.stderr.contains("tiger"), "{}", run.stderr);
}

#[test]
fn passwords_never_appear_in_output() {
    // Trust authentication accepts any password, so the run succeeds with one
    // in the URL; at the most verbose level it must still not be printed.
    let mut db = TestDb::new(Kind::Postgres);
    db.url = db.url.replacen("postgres@", "postgres:s3cretpw@", 1);
    assert!(db.url.contains("s3cretpw"));
    let p = Project::new();
    p.migration("1_a", "CREATE TABLE a (id INTEGER);", None);
    for args in [&["-vvv", "up"][..], &["-vvv", "status", "--json"], &["-vvv", "plan"]] {
        let run = p.run(&db, args).ok();
        assert!(
            !run.stdout.contains("s3cretpw") && !run.stderr.contains("s3cretpw"),
            "{args:?}:\n{}\n{}",
            run.stdout,
            run.stderr
        );
    }

    // A refused connection names the server but not the password.
    let mut mysql = TestDb::new(Kind::Mysql);
    mysql.url = mysql.url.replacen("root@", "nobody:hunter2pw@", 1);
    let run = p.run(&mysql, &["-vvv", "status"]).code(1);
    assert!(
        run.stderr.contains("could not connect to mysql://nobody:***@"),
        "{}",
        run.stderr
    );
    assert!(
        !run.stderr.contains("hunter2pw") && !run.stdout.contains("hunter2pw"),
        "{}",
        run.stderr
    );
}
