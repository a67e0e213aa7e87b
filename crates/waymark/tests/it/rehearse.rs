//! `waymark rehearse` end to end on PostgreSQL: a workload runs on a
//! copy of the database while the pending migrations are applied to it,
//! and the verdict tells a migration that would have stalled or broken
//! the application from one that would not.
//!
//! The index is built over `slow_key`, which sleeps half a millisecond a
//! row, so that a plain `CREATE INDEX` of 2000 rows holds its lock for a
//! second on any machine, while lint, which sees a small table, lets it
//! through: the rehearsal is what finds it.

use crate::common::{Kind, Project, Run, TestDb};

const ROWS: &str = "CREATE FUNCTION slow_key(int) RETURNS int LANGUAGE sql IMMUTABLE \
                    AS 'SELECT $1 + 0 FROM pg_sleep(0.0005)';\n\
                    CREATE TABLE accounts (id int PRIMARY KEY, balance int NOT NULL, note text);\n\
                    INSERT INTO accounts SELECT g, 0, 'n' || g FROM generate_series(1, 2000) g;\n\
                    ANALYZE accounts;\n";

const WORKLOAD: &str = "\\set id random(1, 2000)\n\
                        BEGIN;\n\
                        UPDATE accounts SET balance = balance + 1\n  WHERE id = :id;\n\
                        SELECT balance, note FROM accounts WHERE id = :id;\n\
                        END;\n";

/// A database to rehearse on, a copy of `source` made by the rehearsal
/// itself (`--template`), dropped when the test ends.
struct Scratch<'a> {
    source: &'a TestDb,
    name: String,
    url: String,
}

impl<'a> Scratch<'a> {
    fn of(source: &'a TestDb) -> Scratch<'a> {
        let name = format!("{}_rehearsal", source.name());
        let url = source.url.replace(source.name(), &name);
        Scratch { source, name, url }
    }

    fn exists(&self) -> bool {
        !self
            .source
            .rows(&format!(
                "SELECT datname::text FROM pg_database WHERE datname = '{}'",
                self.name
            ))
            .is_empty()
    }
}

impl Drop for Scratch<'_> {
    fn drop(&mut self) {
        self.source
            .execute(&format!("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)", self.name));
    }
}

fn project(migration: &str) -> Project {
    let project = Project::new();
    project.migration("1_change", migration, None);
    project.file("workload.sql", WORKLOAD);
    project
}

/// `rehearse --json` of the test's workload on a copy of `source`.
fn rehearse(project: &Project, source: &TestDb, scratch: &Scratch<'_>, extra: &[&str]) -> Run {
    let mut args = vec!["--json"];
    args.extend_from_slice(extra);
    on_the_terminal(project, source, scratch, &args)
}

/// The same without `--json`.
fn on_the_terminal(project: &Project, source: &TestDb, scratch: &Scratch<'_>, extra: &[&str]) -> Run {
    let mut args = vec![
        "rehearse",
        "--scratch",
        &scratch.url,
        "--template",
        source.name(),
        "--workload",
        "workload.sql",
        "--clients",
        "4",
        "--rate",
        "60",
        "--baseline",
        "3s",
        "--after",
        "2s",
        "--random-seed",
        "7",
    ];
    args.extend_from_slice(extra);
    project.run(source, &args)
}

fn check<'v>(report: &'v serde_json::Value, name: &str) -> &'v serde_json::Value {
    report["verdict"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["check"] == name)
        .unwrap_or_else(|| panic!("no {name} check in {report:#}"))
}

#[test]
fn a_plain_create_index_fails_the_verdict_with_the_waits_behind_it_and_concurrently_passes_postgres() {
    let source = TestDb::new(Kind::Postgres);
    source.execute(ROWS);

    let scratch = Scratch::of(&source);
    let plain = project("CREATE INDEX accounts_slow ON accounts ((slow_key(id)));\n");
    let run = rehearse(&plain, &source, &scratch, &["--max-lock-wait", "300ms"]).code(7);
    let report = run.json();
    assert_eq!(report["ok"], false, "{report:#}");
    let phases = report["phases"].as_array().unwrap();
    let names: Vec<&str> = phases.iter().map(|p| p["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["baseline", "1_change", "after"], "{report:#}");
    assert!(phases[0]["transactions"].as_u64().unwrap() > 50, "{report:#}");
    // The clients' updates queued behind the index build, and the sampler
    // says which statement held them.
    let waits = phases[1]["lock_waits"].as_array().unwrap();
    let behind: Vec<&serde_json::Value> = waits.iter().filter(|w| w["blocker"] == "migration").collect();
    assert!(!behind.is_empty(), "{report:#}");
    assert!(
        behind
            .iter()
            .all(|w| w["statement"].as_str().unwrap().contains("CREATE INDEX accounts_slow")),
        "{report:#}"
    );
    let longest = behind
        .iter()
        .map(|w| w["duration_ms"].as_f64().unwrap())
        .fold(0.0, f64::max);
    assert!(longest > 300.0, "{report:#}");
    assert_eq!(check(&report, "lock_wait")["passed"], false, "{report:#}");
    assert_eq!(check(&report, "errors")["passed"], true, "{report:#}");
    let p99 = report["verdict"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["check"] == "p99" && c["phase"] == "1_change")
        .unwrap();
    assert_eq!(p99["passed"], false, "{report:#}");
    // The rehearsal changed the copy only.
    assert!(scratch.exists());
    assert!(source.history().is_empty(), "the configured database was changed");
    assert_eq!(
        source.rows("SELECT count(*) FROM pg_indexes WHERE indexname = 'accounts_slow'"),
        [[Some("0".to_owned())]]
    );
    drop(scratch);

    // The same index built CONCURRENTLY: no client waits on it. Latency
    // is not checked: the tests running beside this one create and drop
    // databases, whose checkpoints stall every client on the server now
    // and then.
    let scratch = Scratch::of(&source);
    let concurrent =
        project("-- no-transaction\nCREATE INDEX CONCURRENTLY accounts_slow ON accounts ((slow_key(id)));\n");
    let run = rehearse(
        &concurrent,
        &source,
        &scratch,
        &["--max-lock-wait", "300ms", "--max-p99-increase", "off"],
    )
    .ok();
    let report = run.json();
    assert_eq!(report["ok"], true, "{report:#}");
    assert_eq!(check(&report, "lock_wait")["passed"], true, "{report:#}");
    assert!(
        report["verdict"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["check"] != "p99"),
        "{report:#}"
    );
    assert_eq!(report["migrations"][0]["name"], "change", "{report:#}");
}

#[test]
fn a_dropped_column_the_workload_reads_fails_the_verdict_by_sqlstate_postgres() {
    let source = TestDb::new(Kind::Postgres);
    source.execute(ROWS);
    let scratch = Scratch::of(&source);
    let project = project("ALTER TABLE accounts DROP COLUMN note;\n");
    let run = rehearse(&project, &source, &scratch, &[]).code(7);
    let report = run.json();
    crate::json_contract::conforms("rehearse", &report);
    let after = report["phases"].as_array().unwrap().last().unwrap();
    assert_eq!(after["name"], "after", "{report:#}");
    let error = &after["errors"][0];
    assert_eq!(error["code"], "42703", "{report:#}");
    assert!(error["count"].as_u64().unwrap() > 10, "{report:#}");
    assert!(error["message"].as_str().unwrap().contains("note"), "{report:#}");
    assert_eq!(check(&report, "errors")["passed"], false, "{report:#}");
    assert_eq!(report["phases"][0]["errors"], serde_json::json!([]), "{report:#}");

    // On the terminal: the table of phases, the error and the verdict.
    drop(scratch);
    let scratch = Scratch::of(&source);
    let run = on_the_terminal(&project, &source, &scratch, &[]).code(7);
    assert!(run.stdout.contains("after: 42703 × "), "{}", run.stdout);
    assert!(run.stdout.contains("verdict: FAILED"), "{}", run.stdout);
    assert!(run.stdout.contains("FAIL errors"), "{}", run.stdout);
}

#[test]
fn a_rehearsal_refuses_bad_workloads_databases_and_blocking_locks_with_nothing_applied_postgres() {
    let source = TestDb::new(Kind::Postgres);
    source.execute(ROWS);
    let scratch = Scratch::of(&source);
    let project = project("ALTER TABLE accounts ADD COLUMN flagged boolean;\n");

    // A workload that cannot run: its file and line, and no copy made.
    project.file("broken.sql", "\\set id random(1, 2000)\nSELECT 1;\n\\gset\n");
    project
        .run(
            &source,
            &[
                "rehearse",
                "--scratch",
                &scratch.url,
                "--template",
                source.name(),
                "--workload",
                "broken.sql",
            ],
        )
        .code(2)
        .stderr_has("broken.sql:3:");
    assert!(!scratch.exists());

    // The configured database is not a scratch database.
    let same = source.url.replace("127.0.0.1", "localhost");
    project
        .run(&source, &["rehearse", "--scratch", &same, "--workload", "workload.sql"])
        .code(2)
        .stderr_has("is the configured database");
    assert!(source.history().is_empty());

    // A database that holds tables is not changed without being told.
    let other = TestDb::new(Kind::Postgres);
    other.execute("CREATE TABLE keep_me (id int);");
    project
        .run(
            &source,
            &["rehearse", "--scratch", &other.url, "--workload", "workload.sql"],
        )
        .code(2)
        .stderr_has("holds 1 table(s) (public.keep_me)");
    assert!(other.history().is_empty());

    // Lint refuses a blocking index on a table it counts as big, weighed
    // on the copy: the rehearsal ends with exit 6 before any load ran, and
    // nothing applied to the copy.
    let scratch = Scratch::of(&source);
    let refused = self::project("CREATE INDEX accounts_balance ON accounts (balance);\n");
    refused.file("waymark.toml", "[lint]\nsmall_table_rows = 100\n");
    let run = on_the_terminal(&refused, &source, &scratch, &[]).code(6);
    assert!(run.stderr.contains("up refused"), "{}", run.stderr);
    assert!(run.stderr.contains("create-index"), "{}", run.stderr);
    assert!(!run.stderr.contains("rehearsal on"), "the load started: {}", run.stderr);
    assert_eq!(
        scratch_rows(
            &scratch,
            "SELECT count(*) FROM pg_indexes WHERE indexname = 'accounts_balance'"
        ),
        "0"
    );
    drop(scratch);

    // --template never replaces a database.
    project
        .run(
            &source,
            &[
                "rehearse",
                "--scratch",
                &other.url,
                "--template",
                source.name(),
                "--workload",
                "workload.sql",
            ],
        )
        .code(2)
        .stderr_has("exists already");
    assert_eq!(other.tables(), ["keep_me"]);
}

/// The example of `examples/rehearse`, run as its README says: the
/// application's three migrations applied, its rows, then its next
/// migration rehearsed under its workload and reporter.
#[test]
fn the_example_workload_rehearses_the_example_migration_postgres() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/rehearse");
    let migrations = format!("{example}/migrations");
    let source = TestDb::new(Kind::Postgres);
    let project = Project::new();
    project
        .run(&source, &["--migrations", &migrations, "up", "--to", "20260103000000"])
        .ok();
    source.execute(&std::fs::read_to_string(format!("{example}/seed.sql")).unwrap());
    let scratch = Scratch::of(&source);
    let run = project
        .run(
            &source,
            &[
                "--migrations",
                &migrations,
                "rehearse",
                "--json",
                "--scratch",
                &scratch.url,
                "--template",
                source.name(),
                "--workload",
                &format!("{example}/workload.sql"),
                "--reporter",
                &format!("{example}/report.sql"),
                "--every",
                "1s",
                "--rate",
                "50",
                "--baseline",
                "2s",
                "--after",
                "1s",
                // What this test proves is that nothing waits on the build
                // and nothing fails: latency on a server the other tests
                // share is not the example's.
                "--max-p99-increase",
                "off",
            ],
        )
        .ok();
    let report = run.json();
    assert_eq!(report["migrations"][0]["name"], "post_title_search", "{report:#}");
    assert_eq!(check(&report, "lock_wait")["passed"], true, "{report:#}");
    assert_eq!(
        check(&report, "errors")["measured"],
        "0 failed transaction(s)",
        "{report:#}"
    );
    assert!(report["reporter"]["max_ms"].as_f64().unwrap() >= 1000.0, "{report:#}");
    assert!(
        report["timeline"]
            .as_array()
            .unwrap()
            .iter()
            .any(|w| w["transactions"].as_u64().unwrap() > 0),
        "{report:#}"
    );
    assert_eq!(
        scratch_rows(
            &scratch,
            "SELECT count(*) FROM pg_indexes WHERE indexname = 'posts_by_title'"
        ),
        "1"
    );
}

fn scratch_rows(scratch: &Scratch<'_>, sql: &str) -> String {
    let url = scratch.url.clone();
    let sql = sql.to_owned();
    crate::common::block_on(async move {
        use sqlx::Connection;
        let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
        let n: i64 = sqlx::query_scalar(&sql).fetch_one(&mut conn).await.unwrap();
        conn.close().await.unwrap();
        n.to_string()
    })
}

/// A transaction still stuck 5 s after the load stopped is given up and
/// counted as failed, `unfinished`: the verdict cannot pass over it.
#[test]
fn a_transaction_still_running_after_the_stop_counts_as_unfinished_postgres() {
    let source = TestDb::new(Kind::Postgres);
    source.execute(ROWS);
    let scratch = Scratch::of(&source);
    let project = Project::new();
    project.migration("1_change", "ALTER TABLE accounts ADD COLUMN flagged boolean;\n", None);
    project.file("stuck.sql", "SELECT pg_sleep(60);\n");
    let run = project
        .run(
            &source,
            &[
                "rehearse",
                "--json",
                "--scratch",
                &scratch.url,
                "--template",
                source.name(),
                "--workload",
                "stuck.sql",
                "--clients",
                "1",
                "--baseline",
                "1s",
                "--after",
                "1s",
            ],
        )
        .code(7);
    let report = run.json();
    let failed: Vec<&serde_json::Value> = report["phases"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["errors"].as_array().unwrap())
        .collect();
    assert_eq!(failed.len(), 1, "{report:#}");
    assert_eq!(failed[0]["code"], "unfinished", "{report:#}");
    assert_eq!(failed[0]["count"], 1, "{report:#}");
    assert_eq!(check(&report, "errors")["passed"], false, "{report:#}");
    assert_eq!(report["migrations"][0]["name"], "change", "{report:#}");
}

/// On MariaDB, whose `performance_schema` is off by default: the clients'
/// wait behind an `ALTER TABLE` queued for the reporter's metadata lock
/// is still seen, and named by the migration's statement.
#[test]
fn a_metadata_lock_wait_on_mariadb_is_named_by_the_migrations_statement_mysql() {
    let source = TestDb::new(Kind::Mysql);
    // The scratch database, filled as a restore would fill it.
    let scratch = TestDb::new(Kind::Mysql);
    scratch.execute(
        "CREATE TABLE accounts (id int PRIMARY KEY, balance int NOT NULL, note text); \
         INSERT INTO accounts SELECT seq, 0, CONCAT('n', seq) FROM seq_1_to_2000",
    );
    let p = Project::new();
    p.migration("1_change", "ALTER TABLE accounts ADD COLUMN flag int;\n", None);
    p.file(
        "workload.sql",
        "\\set id random(1, 2000)\nBEGIN;\nUPDATE accounts SET balance = balance + 1 WHERE id = :id;\n\
         SELECT balance, note FROM accounts WHERE id = :id;\nCOMMIT;\n",
    );
    // A reader always in a transaction: the ALTER queues for its lock,
    // and the clients queue behind the ALTER.
    p.file(
        "report.sql",
        "BEGIN;\nSELECT count(*) FROM accounts;\nSELECT SLEEP(1.5);\nCOMMIT;\n",
    );
    let run = p
        .run(
            &source,
            &[
                "rehearse",
                "--json",
                "--scratch",
                &scratch.url,
                "--scratch-may-hold-data",
                "--workload",
                "workload.sql",
                "--reporter",
                "report.sql",
                "--every",
                "1s",
                "--clients",
                "2",
                "--rate",
                "40",
                "--baseline",
                "2s",
                "--after",
                "1s",
                "--max-lock-wait",
                "20ms",
                "--max-p99-increase",
                "off",
            ],
        )
        .code(7);
    let report = run.json();
    assert_eq!(report["lock_waits_not_sampled"], serde_json::Value::Null, "{report:#}");
    let phases = report["phases"].as_array().unwrap();
    let waits = phases[1]["lock_waits"].as_array().unwrap();
    let behind: Vec<&serde_json::Value> = waits.iter().filter(|w| w["blocker"] == "migration").collect();
    assert!(!behind.is_empty(), "{report:#}");
    assert!(
        behind.iter().all(|w| w["statement"]
            .as_str()
            .unwrap()
            .contains("ALTER TABLE accounts ADD COLUMN flag")),
        "{report:#}"
    );
    assert!(
        behind
            .iter()
            .any(|w| w["waiter"] == "client" && w["query"].as_str().unwrap().starts_with("UPDATE accounts")),
        "{report:#}"
    );
    assert_eq!(check(&report, "lock_wait")["passed"], false, "{report:#}");
    // The scratch database has the column; the configured one is untouched.
    assert_eq!(
        scratch.rows(
            "SELECT count(*) FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE() AND COLUMN_NAME = 'flag'"
        ),
        [[Some("1".to_owned())]]
    );
    assert!(source.history().is_empty());
}
