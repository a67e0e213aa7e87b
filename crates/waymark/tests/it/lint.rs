//! `waymark lint` and the findings in `plan`: each rule's finding named
//! with its file, line, lock and fix; silenced only inline with a reason;
//! exit 6 while an error stands. No database is needed to lint.

use crate::common::{Kind, Project, Run, TestDb};

fn risky(p: &Project) {
    p.migration(
        "1_users",
        "CREATE TABLE users (id int PRIMARY KEY, email text);\nCREATE INDEX users_email ON users (email);\n",
        Some("DROP TABLE users;"),
    );
    p.migration(
        "2_orders",
        "CREATE TABLE orders (id int PRIMARY KEY, user_id int);\n\
         ALTER TABLE orders ADD CONSTRAINT orders_user FOREIGN KEY (user_id) REFERENCES users (id) NOT VALID;\n",
        Some("DROP TABLE orders;"),
    );
    p.migration(
        "3_tighten",
        "-- waymark:allow set-not-null users holds a dozen rows\n\
         ALTER TABLE users ALTER COLUMN email SET NOT NULL;\n",
        Some("ALTER TABLE users ALTER COLUMN email DROP NOT NULL;"),
    );
    p.migration(
        "4_lookup",
        "CREATE INDEX orders_user ON orders (user_id);\n",
        Some("DROP INDEX orders_user;"),
    );
}

/// `waymark lint` against a URL nothing listens on: only its scheme counts.
fn lint(p: &Project, url: &str, args: &[&str]) -> Run {
    let mut cmd = std::process::Command::new(crate::common::BIN);
    cmd.current_dir(p.dir.path())
        .env_remove("DATABASE_URL")
        .env("WAYMARK_CACHE_DIR", crate::common::cache_dir())
        .args(["--database-url", url, "lint"])
        .args(args);
    Run::from(cmd.output().unwrap())
}

#[test]
fn lint_names_each_finding_and_exits_6_on_an_error() {
    let p = Project::new();
    risky(&p);
    let run = lint(&p, "postgres://nobody@127.0.0.1:1/never", &[]).code(6);
    // A new table's index blocks no one; an existing table's does.
    assert!(!run.stdout.contains("1_users/up.sql:2"), "{}", run.stdout);
    assert!(
        run.stdout.contains(
            "error[create-index-blocking]: migrations/4_lookup/up.sql:1: CREATE INDEX on orders blocks its writes \
             until the index is built\n  lock: SHARE on the table, for the whole build\n  fix:  CREATE INDEX \
             CONCURRENTLY, alone in a `-- no-transaction` migration"
        ),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains(
            "allowed[set-not-null]: migrations/3_tighten/up.sql:2: SET NOT NULL on users.email reads every row \
             while no query gets through (allowed: users holds a dozen rows)"
        ),
        "{}",
        run.stdout
    );
    assert!(
        run.stderr
            .contains("4 migration(s) linted: 1 error(s), 0 warning(s), 1 allowed"),
        "{}",
        run.stderr
    );

    // The safe rewrite passes.
    p.migration(
        "4_lookup",
        "-- no-transaction\nCREATE INDEX CONCURRENTLY orders_user ON orders (user_id);\n",
        Some("-- no-transaction\nDROP INDEX CONCURRENTLY orders_user;"),
    );
    let run = lint(&p, "postgres://nobody@127.0.0.1:1/never", &[]).ok();
    assert!(
        run.stdout.trim_start().starts_with("allowed[set-not-null]"),
        "{}",
        run.stdout
    );
    assert!(
        run.stderr.contains("0 error(s), 0 warning(s), 1 allowed"),
        "{}",
        run.stderr
    );

    // In JSON, as its schema says.
    let run = lint(&p, "postgres://nobody@127.0.0.1:1/never", &["--json"]).ok();
    let json = run.json();
    crate::json_contract::conforms("lint", &json);
    assert_eq!(json["errors"], 0);
    assert_eq!(json["migrations"][2]["findings"][0]["rule"], "set-not-null");
    assert_eq!(
        json["migrations"][2]["findings"][0]["allowed"],
        "users holds a dozen rows"
    );
}

#[test]
fn each_dialect_gets_its_own_rules() {
    let p = Project::new();
    p.migration(
        "1_users",
        "CREATE TABLE users (id INT PRIMARY KEY, nick VARCHAR(40));",
        None,
    );
    p.migration(
        "2_nick",
        "ALTER TABLE users ADD COLUMN bio TEXT;\nCREATE INDEX users_nick ON users (nick);\n",
        None,
    );
    let mysql = lint(&p, "mysql://root@127.0.0.1:1/never", &[]).ok();
    assert!(
        mysql
            .stdout
            .contains("warning[mysql-alter-algorithm]: migrations/2_nick/up.sql:1:"),
        "{}",
        mysql.stdout
    );
    assert!(!mysql.stdout.contains("create-index-blocking"), "{}", mysql.stdout);
    let postgres = lint(&p, "postgres://nobody@127.0.0.1:1/never", &[]).code(6);
    assert!(
        !postgres.stdout.contains("mysql-alter-algorithm"),
        "{}",
        postgres.stdout
    );
    assert!(
        postgres
            .stdout
            .contains("error[create-index-blocking]: migrations/2_nick/up.sql:2:"),
        "{}",
        postgres.stdout
    );
    // Only the versions named.
    let one = lint(&p, "postgres://nobody@127.0.0.1:1/never", &["1"]).ok();
    assert!(
        one.stderr.contains("1 migration(s) linted: 0 error(s)"),
        "{}",
        one.stderr
    );
    // The catalogue, with its schema.
    let rules = lint(&p, "sqlite://x.db", &["--rules", "--json"]).ok().json();
    crate::json_contract::conforms("lint-rules", &rules);
    assert!(rules["rules"].as_array().unwrap().len() >= 10);
    assert!(!p.dir.path().join("x.db").exists(), "lint made a database file");
}

#[test]
fn lint_refuses_what_it_cannot_lint_naming_it() {
    let p = Project::new();
    p.migration("1_users", "CREATE TABLE users (id INT PRIMARY KEY);", None);
    lint(&p, "postgres://nobody@127.0.0.1:1/never", &["7"])
        .code(2)
        .stderr_has("error: no migration has version 7");
    lint(&p, "oracle://scott@db/orcl", &[])
        .code(2)
        .stderr_has("oracle://scott@db/orcl: the dialect to lint for comes from the database URL's scheme");
}

/// `plan` shows the same findings, under each statement's migration, and
/// `plan --json` carries them.
#[test]
fn plan_shows_the_findings() {
    let db = TestDb::new(Kind::Postgres);
    let p = Project::new();
    risky(&p);
    p.run(&db, &["up", "--to", "3"]).ok();
    let run = p.run(&db, &["plan"]).ok();
    assert!(
        run.stdout.contains("apply 4_lookup")
            && run
                .stdout
                .contains("error[create-index-blocking]: migrations/4_lookup/up.sql:1:"),
        "{}",
        run.stdout
    );
    let json = p.run(&db, &["plan", "--json"]).ok().json();
    crate::json_contract::conforms("plan", &json);
    assert_eq!(json["migrations"][0]["findings"][0]["rule"], "create-index-blocking");
    assert_eq!(json["migrations"][0]["findings"][0]["severity"], "error");
}

/// `up` weighs each error by the table's real size: on a big table it
/// refuses (exit 6) naming the file, line, rule and fix, and applies
/// nothing; on a small one, or where the script allows it with a reason,
/// it applies.
#[test]
fn up_refuses_a_blocking_lock_on_a_big_table() {
    let db = TestDb::new(Kind::Postgres);
    let p = Project::new();
    p.migration(
        "1_orders",
        "CREATE TABLE orders (id int PRIMARY KEY, user_id int);\n\
         INSERT INTO orders SELECT g, g % 100 FROM generate_series(1, 30000) g;\n\
         CREATE TABLE tags (id int PRIMARY KEY, name text);\n\
         INSERT INTO tags VALUES (1, 'a'), (2, 'b');\n",
        Some("DROP TABLE orders; DROP TABLE tags;"),
    );
    p.run(&db, &["up"]).ok();
    p.migration(
        "2_index",
        "CREATE INDEX orders_user ON orders (user_id);\n",
        Some("DROP INDEX orders_user;"),
    );
    let run = p.run(&db, &["up"]).code(6);
    assert!(
        run.stderr.contains(
            "error: up refused: 1 statement(s) would take a lock that blocks the application:\n  \
             migrations/2_index/up.sql:1: [create-index-blocking] CREATE INDEX on orders blocks its writes until the \
             index is built (the table holds about "
        ),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("fix: CREATE INDEX CONCURRENTLY"), "{}", run.stderr);
    assert!(run.stderr.contains("hint: nothing was applied"), "{}", run.stderr);
    assert_eq!(db.history().len(), 1, "{:?}", db.history());
    assert!(
        db.rows("SELECT indexname::text FROM pg_indexes WHERE indexname = 'orders_user'")
            .is_empty()
    );
    // The saved plan's way is refused alike.
    p.run(&db, &["plan", "--out", "plan.json"]).ok();
    p.run(&db, &["up", "--plan", "plan.json"])
        .code(6)
        .stderr_has("up refused");

    // Allowed beside the statement, with a reason: applied.
    p.migration(
        "2_index",
        "-- waymark:allow create-index-blocking built during the maintenance window\n\
         CREATE INDEX orders_user ON orders (user_id);\n",
        Some("DROP INDEX orders_user;"),
    );
    p.run(&db, &["up"]).ok();
    assert_eq!(db.history().len(), 2);

    // On a small table the lock is brief: applied.
    p.migration(
        "3_tag_names",
        "CREATE INDEX tags_name ON tags (name);\n",
        Some("DROP INDEX tags_name;"),
    );
    let run = p.run(&db, &["up"]).ok();
    assert_eq!(db.history().len(), 3);
    // And said, before it runs.
    assert!(
        run.stderr.contains(
            "warning[create-index-blocking]: migrations/3_tag_names/up.sql:1: CREATE INDEX on tags blocks its writes \
             until the index is built (the table holds about "
        ) && run.stderr.contains("rows: the lock is brief)"),
        "{}",
        run.stderr
    );

    // The threshold is the operator's.
    p.migration("4_more", "CREATE INDEX orders_id_user ON orders (id, user_id);\n", None);
    p.file("waymark.toml", "[lint]\nsmall_table_rows = 1000000\n");
    p.run(&db, &["up"]).ok();
    assert_eq!(db.history().len(), 4);
}
