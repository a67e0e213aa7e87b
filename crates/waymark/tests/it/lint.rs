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

/// `--format sarif` writes a SARIF 2.1.0 log that the OASIS schema
/// accepts: every rule described, each finding on its file and line, an
/// allowed one as an in-source suppression with its reason.
#[test]
fn lint_writes_sarif_that_the_sarif_schema_accepts() {
    let p = Project::new();
    risky(&p);
    let run = lint(&p, "postgres://nobody@127.0.0.1:1/never", &["--format", "sarif"]).code(6);
    let log: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    let schema_path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/schemas/sarif-schema-2.1.0.json");
    let mut schema: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(schema_path).unwrap()).unwrap();
    // The published schema's language-tag pattern is no valid regular
    // expression in Unicode mode (a stray `]`), and jsonschema checks the
    // schema for that: read it as the language tag it means.
    fn mend(value: &mut serde_json::Value) -> usize {
        match value {
            serde_json::Value::Object(map) => {
                let mut mended = 0;
                if let Some(p) = map.get_mut("pattern")
                    && p == "^[a-zA-Z]{2}|^[a-zA-Z]{2}-[a-zA-Z]{2}]?$"
                {
                    *p = "^[a-zA-Z]{2}(-[a-zA-Z]{2})?$".into();
                    mended += 1;
                }
                mended + map.values_mut().map(mend).sum::<usize>()
            }
            serde_json::Value::Array(items) => items.iter_mut().map(mend).sum(),
            _ => 0,
        }
    }
    assert_eq!(mend(&mut schema), 2);
    let validator = jsonschema::validator_for(&schema).unwrap();
    let errors: Vec<String> = validator
        .iter_errors(&log)
        .map(|e| format!("{}: {e}", e.instance_path()))
        .collect();
    assert!(errors.is_empty(), "not SARIF 2.1.0: {errors:#?}\n{log:#}");
    // The schema is strict enough to refuse what is not SARIF.
    let mut broken = log.clone();
    broken["runs"][0]["results"][0]["level"] = "fatal".into();
    assert!(!validator.is_valid(&broken));

    assert_eq!(log["version"], "2.1.0");
    let run0 = &log["runs"][0];
    assert_eq!(run0["tool"]["driver"]["name"], "waymark");
    let rules = run0["tool"]["driver"]["rules"].as_array().unwrap();
    assert_eq!(rules.len(), waymark_core::RULES.len());
    let results = run0["results"].as_array().unwrap();
    let index = |r: &serde_json::Value| r["ruleIndex"].as_u64().unwrap() as usize;
    for r in results {
        assert_eq!(rules[index(r)]["id"], r["ruleId"]);
    }
    let blocking = results.iter().find(|r| r["ruleId"] == "create-index-blocking").unwrap();
    assert_eq!(blocking["level"], "error");
    let location = &blocking["locations"][0]["physicalLocation"];
    assert_eq!(location["artifactLocation"]["uri"], "migrations/4_lookup/up.sql");
    assert_eq!(location["region"]["startLine"], 1);
    let allowed = results.iter().find(|r| r["ruleId"] == "set-not-null").unwrap();
    assert_eq!(allowed["suppressions"][0]["kind"], "inSource");
    assert_eq!(allowed["suppressions"][0]["justification"], "users holds a dozen rows");
}

/// `[lint.severity]` makes a rule's findings warnings or errors; a rule
/// that does not exist, or a severity that is neither, is refused naming
/// the file; no severity silences a finding.
#[test]
fn severities_are_the_operators_to_set() {
    let p = Project::new();
    p.migration("1_users", "CREATE TABLE users (id int PRIMARY KEY, email text);", None);
    p.migration(
        "2_tighten",
        "ALTER TABLE users ALTER COLUMN email SET NOT NULL;\n",
        None,
    );
    let url = "postgres://nobody@127.0.0.1:1/never";
    lint(&p, url, &[]).ok().stdout.contains("warning[set-not-null]");
    p.file("waymark.toml", "[lint.severity]\nset-not-null = \"error\"\n");
    let run = lint(&p, url, &[]).code(6);
    assert!(
        run.stdout
            .contains("error[set-not-null]: migrations/2_tighten/up.sql:1:"),
        "{}",
        run.stdout
    );
    let rules = lint(&p, url, &["--rules", "--json"]).ok().json();
    let rule = rules["rules"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == "set-not-null")
        .unwrap();
    assert_eq!(rule["severity"], "error");

    p.file("waymark.toml", "[lint.severity]\nset-not-nul = \"error\"\n");
    lint(&p, url, &[]).code(2).stderr_has(
        "waymark.toml: [lint.severity] names \"set-not-nul\", which is no rule; `waymark lint --rules` lists them",
    );
    p.file("waymark.toml", "[lint.severity]\nset-not-null = \"off\"\n");
    lint(&p, url, &[]).code(2).stderr_has(
        "waymark.toml: [lint.severity] set-not-null = \"off\": expected \"warning\" or \"error\" (a finding is \
         silenced only in the script, with `-- waymark:allow set-not-null <reason>`)",
    );
}

/// SQLite's table rebuild (copy every row into a new table) holds the
/// database's one write lock: `up` refuses it on a big table, with nothing
/// applied, and lets it through on a small one.
#[test]
fn up_refuses_a_sqlite_rebuild_of_a_big_table() {
    let db = TestDb::new(Kind::Sqlite);
    let p = Project::new();
    p.migration(
        "1_users",
        "CREATE TABLE users (id INTEGER PRIMARY KEY, email TEXT);\n\
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 20000) \
         INSERT INTO users SELECT i, 'u' || i FROM n;\n\
         CREATE TABLE tags (id INTEGER PRIMARY KEY, name TEXT);\n\
         INSERT INTO tags VALUES (1, 'a');\n",
        None,
    );
    p.run(&db, &["up"]).ok();
    p.migration(
        "2_rebuild_users",
        "CREATE TABLE users_new (id INTEGER PRIMARY KEY, email TEXT NOT NULL);\n\
         INSERT INTO users_new (id, email) SELECT id, email FROM users;\n\
         DROP TABLE users;\n\
         ALTER TABLE users_new RENAME TO users;\n",
        None,
    );
    p.run(&db, &["up"]).code(6).stderr_has(
        "migrations/2_rebuild_users/up.sql:2: [sqlite-table-rebuild] copies every row of users into the new table \
         users_new: a table rebuild (the table holds about 20000 rows)",
    );
    assert_eq!(db.history().len(), 1);
    assert!(!db.tables().contains(&"users_new".to_owned()));
    p.migration(
        "2_rebuild_users",
        "CREATE TABLE tags_new (id INTEGER PRIMARY KEY, name TEXT NOT NULL);\n\
         INSERT INTO tags_new (id, name) SELECT id, name FROM tags;\n\
         DROP TABLE tags;\n\
         ALTER TABLE tags_new RENAME TO tags;\n",
        None,
    );
    p.run(&db, &["up"]).ok().stderr_has("warning[sqlite-table-rebuild]");
    assert_eq!(db.history().len(), 2);
}

/// With the lock timeout turned off, or a script that turns the server's
/// off, each migration's first DDL on an existing table is warned about.
#[test]
fn ddl_without_a_lock_timeout_is_warned_about() {
    let p = Project::new();
    p.migration("1_users", "CREATE TABLE users (id int PRIMARY KEY);", None);
    p.migration(
        "2_more",
        "ALTER TABLE users ADD COLUMN a int;\nALTER TABLE users ADD COLUMN b int;\n",
        None,
    );
    let url = "postgres://nobody@127.0.0.1:1/never";
    assert!(!lint(&p, url, &[]).ok().stdout.contains("no-lock-timeout"));
    let run = lint(&p, url, &["--lock-wait", "off"]).ok();
    assert!(
        run.stdout.contains(
            "warning[no-lock-timeout]: migrations/2_more/up.sql:1: ALTER TABLE users waits for its lock without a \
             timeout ([locks] timeout is off)"
        ),
        "{}",
        run.stdout
    );
    assert_eq!(run.stdout.matches("no-lock-timeout").count(), 1, "{}", run.stdout);
    p.migration(
        "3_off",
        "SET lock_timeout = 0;\nALTER TABLE users ADD COLUMN c int;\n",
        None,
    );
    let run = lint(&p, url, &["3"]).ok();
    assert!(
        run.stdout.contains("warning[no-lock-timeout]: migrations/3_off/up.sql:2: ALTER TABLE users waits for its lock without a timeout (line 1 sets lock_timeout to 0)"),
        "{}",
        run.stdout
    );
}
