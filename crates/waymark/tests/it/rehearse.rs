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
    let page = plain.dir.path().join("report.html");
    let run = rehearse(
        &plain,
        &source,
        &scratch,
        &["--max-lock-wait", "300ms", "--report", page.to_str().unwrap()],
    )
    .code(7);
    let report = run.json();
    assert_eq!(report["ok"], false, "{report:#}");
    // The statement, how long it ran, the lock it took until the commit,
    // and the waits behind it.
    let statements = report["statements"].as_array().unwrap();
    assert_eq!(statements.len(), 1, "{report:#}");
    let index = &statements[0];
    assert!(
        index["sql"].as_str().unwrap().starts_with("CREATE INDEX accounts_slow"),
        "{index:#}"
    );
    assert_eq!(index["migration"], "1_change");
    assert_eq!(index["in_transaction"], true);
    assert!(index["duration_ms"].as_f64().unwrap() >= 900.0, "{index:#}");
    assert!(
        index["locks"]
            .as_array()
            .unwrap()
            .contains(&serde_json::json!("SHARE on accounts (table)")),
        "{index:#}"
    );
    assert!(index["waits"].as_u64().unwrap() >= 1, "{index:#}");
    let start = index["start_ms"].as_f64().unwrap();
    let phase = &report["phases"][1];
    assert!(start >= phase["start_ms"].as_f64().unwrap(), "{report:#}");
    // The report as a browser draws it: the chart, its three series, and
    // the statement's mark where and as long as it ran.
    let end_ms = report["phases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["start_ms"].as_f64().unwrap() + p["duration_ms"].as_f64().unwrap())
        .fold(0.0, f64::max);
    let drawn = rendered(&page);
    let width = drawn["width"].as_f64().unwrap();
    assert!(width >= 600.0, "{drawn:#}");
    assert!(drawn["lines"].as_u64().unwrap() >= 3, "{drawn:#}");
    let texts = drawn["texts"].to_string();
    assert!(
        texts.contains("seconds from the start of the load") && texts.contains("1_change"),
        "{drawn:#}"
    );
    let marks = drawn["marks"].as_array().unwrap();
    assert_eq!(marks.len(), 1, "{drawn:#}");
    let [x, _, w, h] = [0, 1, 2, 3].map(|i| marks[0][i].as_f64().unwrap());
    assert!(h >= drawn["height"].as_f64().unwrap() / 2.0, "{drawn:#}");
    // The plot spans from the y labels (72 of 1000 pixels) to 12 from the
    // right edge: the mark's place and width are the statement's times.
    let scale = width / 1000.0;
    let plot = (1000.0 - 84.0) * scale;
    let at = (x - 72.0 * scale) / plot;
    assert!(
        (at - start / end_ms).abs() < 0.03,
        "{at} against {} in {drawn:#}",
        start / end_ms
    );
    let long = w / plot;
    let ran = index["duration_ms"].as_f64().unwrap() / end_ms;
    assert!((long - ran).abs() < 0.03, "{long} against {ran} in {drawn:#}");
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
    // Outside a transaction, no lock outlives the statement.
    let index = &report["statements"][0];
    assert_eq!(index["in_transaction"], false, "{report:#}");
    assert_eq!(index["locks"], serde_json::json!([]), "{report:#}");
    assert_eq!(index["waits"], 0, "{report:#}");
}

/// Measures, inside the page headless Chromium rendered, the chart's size,
/// its plotted lines, its texts and each statement mark's box (left, top,
/// width, height from the chart's corner), and writes them into the page.
const PROBE: &str = "const svg = document.querySelector('figure svg');\
    const box = svg.getBoundingClientRect();\
    const marks = [...svg.querySelectorAll('.marker')].map(g => { const b = g.getBoundingClientRect(); \
      return [b.left - box.left, b.top - box.top, b.width, b.height]; });\
    const lines = [...svg.querySelectorAll('polyline')].filter(p => p.getBoundingClientRect().width > 0).length;\
    const texts = [...svg.querySelectorAll('text')].map(t => t.textContent);\
    const pre = document.createElement('pre'); pre.id = 'rendered';\
    pre.textContent = JSON.stringify({width: box.width, height: box.height, lines, marks, texts});\
    document.body.appendChild(pre);";

/// What headless Chromium (Debian's `chromium`, which `.ci/run`
/// installs) rendered of a report. The probe goes into a copy: the report
/// itself runs no script.
fn rendered(page: &std::path::Path) -> serde_json::Value {
    let html = std::fs::read_to_string(page).unwrap();
    assert!(!html.contains("<script"), "the report runs a script");
    let probe = page.with_file_name("probe.html");
    std::fs::write(
        &probe,
        html.replace("</body>", &format!("<script>{PROBE}</script></body>")),
    )
    .unwrap();
    let out = std::process::Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--window-size=1280,2000",
            "--virtual-time-budget=5000",
            "--dump-dom",
        ])
        .arg(format!("file://{}", probe.display()))
        .output()
        .expect("chromium, which .ci/run installs");
    let dom = String::from_utf8_lossy(&out.stdout);
    let from = dom.find("<pre id=\"rendered\">").unwrap_or_else(|| {
        panic!(
            "no probe in what chromium rendered: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    }) + "<pre id=\"rendered\">".len();
    let to = from + dom[from..].find("</pre>").unwrap();
    let text = dom[from..to]
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
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
    // `rehearse --scratch URL`, copying the source by `--template` if asked.
    let rehearse = |scratch: &str, template: bool, rest: &[&str]| {
        let mut args = vec!["rehearse", "--scratch", scratch];
        if template {
            args.extend(["--template", source.name()]);
        }
        args.extend(rest);
        project.run(&source, &args)
    };

    // A workload that cannot run: its file and line, and no copy made.
    project.file("broken.sql", "\\set id random(1, 2000)\nSELECT 1;\n\\gset\n");
    rehearse(&scratch.url, true, &["--workload", "broken.sql"])
        .code(2)
        .stderr_has("broken.sql:3:");
    assert!(!scratch.exists());

    // So is a report that could not be written at the end.
    rehearse(
        &scratch.url,
        true,
        &["--workload", "workload.sql", "--report", "no/such/folder/report.html"],
    )
    .code(2)
    .stderr_has("--report no/such/folder/report.html: No such file or directory");
    assert!(!scratch.exists());

    // The configured database is not a scratch database.
    let same = source.url.replace("127.0.0.1", "localhost");
    rehearse(&same, false, &["--workload", "workload.sql", "--report", "report.html"])
        .code(2)
        .stderr_has("is the configured database");
    assert!(source.history().is_empty());
    assert!(
        !project.dir.path().join("report.html").exists(),
        "looking at --report left nothing"
    );

    // A database that holds tables is not changed without being told.
    let other = TestDb::new(Kind::Postgres);
    other.execute("CREATE TABLE keep_me (id int);");
    rehearse(&other.url, false, &["--workload", "workload.sql"])
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
    rehearse(&other.url, true, &["--workload", "workload.sql"])
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

/// The accounts of `ROWS` on MariaDB, filled as a restore would fill them.
const MYSQL_ROWS: &str = "CREATE TABLE accounts (id int PRIMARY KEY, balance int NOT NULL, note text); \
                          INSERT INTO accounts SELECT seq, 0, CONCAT('n', seq) FROM seq_1_to_2000";

/// `WORKLOAD`, ended by MariaDB's `COMMIT`.
const MYSQL_WORKLOAD: &str = "\\set id random(1, 2000)\nBEGIN;\nUPDATE accounts SET balance = balance + 1 WHERE id = :id;\n\
                              SELECT balance, note FROM accounts WHERE id = :id;\nCOMMIT;\n";

/// On MariaDB, whose `performance_schema` is off by default: the clients'
/// wait behind an `ALTER TABLE` queued for the reporter's metadata lock
/// is still seen, and named by the migration's statement.
#[test]
fn a_metadata_lock_wait_on_mariadb_is_named_by_the_migrations_statement_mysql() {
    let source = TestDb::new(Kind::Mysql);
    // The scratch database, filled as a restore would fill it.
    let scratch = TestDb::new(Kind::Mysql);
    scratch.execute(MYSQL_ROWS);
    let p = Project::new();
    p.migration("1_change", "ALTER TABLE accounts ADD COLUMN flag int;\n", None);
    p.file("workload.sql", MYSQL_WORKLOAD);
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

/// The other two of the cases on MariaDB: an index added online
/// (`ALGORITHM=INPLACE, LOCK=NONE`) passes, and a dropped column the
/// workload still reads fails by MariaDB's error number.
#[test]
fn an_online_index_passes_and_a_dropped_column_fails_by_error_number_mysql() {
    let source = TestDb::new(Kind::Mysql);
    let rehearse = |migration: &str, extra: &[&str]| {
        let scratch = TestDb::new(Kind::Mysql);
        scratch.execute(MYSQL_ROWS);
        let p = Project::new();
        p.migration("1_change", migration, None);
        p.file("workload.sql", MYSQL_WORKLOAD);
        let mut args = vec![
            "rehearse",
            "--json",
            "--scratch",
            &scratch.url,
            "--scratch-may-hold-data",
            "--workload",
            "workload.sql",
            "--clients",
            "2",
            "--rate",
            "40",
            "--baseline",
            "2s",
            "--after",
            "2s",
            "--max-lock-wait",
            "300ms",
            "--max-p99-increase",
            "off",
        ];
        args.extend_from_slice(extra);
        let run = p.run(&source, &args);
        (run, scratch)
    };

    let (run, scratch) = rehearse(
        "ALTER TABLE accounts ADD INDEX accounts_balance (balance), ALGORITHM=INPLACE, LOCK=NONE;\n",
        &[],
    );
    let report = run.ok().json();
    assert_eq!(report["ok"], true, "{report:#}");
    assert_eq!(check(&report, "lock_wait")["passed"], true, "{report:#}");
    let statements = report["statements"].as_array().unwrap();
    assert_eq!(statements.len(), 1, "{report:#}");
    assert!(
        statements[0]["sql"].as_str().unwrap().contains("ALGORITHM=INPLACE"),
        "{report:#}"
    );
    assert_eq!(
        scratch.rows(
            "SELECT count(*) FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = DATABASE() \
             AND INDEX_NAME = 'accounts_balance'"
        ),
        [[Some("1".to_owned())]]
    );

    let (run, scratch) = rehearse("ALTER TABLE accounts DROP COLUMN note;\n", &[]);
    let report = run.code(7).json();
    let after = report["phases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "after")
        .unwrap();
    let errors = after["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 1, "{report:#}");
    assert_eq!(errors[0]["code"], "1054", "{report:#}");
    assert!(errors[0]["message"].as_str().unwrap().contains("note"), "{report:#}");
    assert_eq!(check(&report, "errors")["passed"], false, "{report:#}");
    assert!(scratch.tables().contains(&"accounts".to_owned()));
    assert!(source.history().is_empty());
}

#[test]
fn a_rehearsal_from_a_backup_restores_it_checked_and_a_damaged_one_writes_nothing_postgres() {
    let source = TestDb::new(Kind::Postgres);
    source.execute(
        "CREATE TABLE accounts (id int PRIMARY KEY, balance int NOT NULL, note text);\n\
         INSERT INTO accounts SELECT g, 0, 'n' || g FROM generate_series(1, 2000) g;",
    );
    let project = project("ALTER TABLE accounts ADD COLUMN flagged boolean;\n");
    let sets = project.dir.path().join("sets");
    project
        .run(&source, &["backup", "create", "--out", sets.to_str().unwrap()])
        .ok();
    let set = std::fs::read_dir(&sets).unwrap().next().unwrap().unwrap().path();
    let from = |scratch: &TestDb, set: &std::path::Path, extra: &[&str]| {
        let mut args = vec![
            "rehearse",
            "--scratch",
            &scratch.url,
            "--from-backup",
            set.to_str().unwrap(),
            "--workload",
            "workload.sql",
            "--clients",
            "2",
            "--rate",
            "40",
            "--baseline",
            "2s",
            "--after",
            "1s",
            "--max-p99-increase",
            "off",
        ];
        args.extend_from_slice(extra);
        project.run(&source, &args)
    };

    // A database that holds a table is never restored over.
    let other = TestDb::new(Kind::Postgres);
    other.execute("CREATE TABLE keep_me (id int);");
    from(&other, &set, &[])
        .code(2)
        .stderr_has("holds 1 table(s) (public.keep_me): --from-backup restores only into an empty database");
    assert_eq!(other.tables(), ["keep_me"]);

    // A set that does not verify writes nothing, and says which chunk.
    let damaged = project.dir.path().join("damaged");
    for entry in walk(&set) {
        let to = damaged.join(entry.strip_prefix(&set).unwrap());
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(&entry, &to).unwrap();
    }
    let mut chunks: Vec<std::path::PathBuf> = std::fs::read_dir(damaged.join("data"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    chunks.sort();
    let mut bytes = std::fs::read(&chunks[0]).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x10;
    std::fs::write(&chunks[0], bytes).unwrap();
    let empty = TestDb::new(Kind::Postgres);
    let run = from(&empty, &damaged, &[]).code(3);
    assert!(run.stderr.contains("--from-backup"), "{}", run.stderr);
    assert!(run.stderr.contains("SHA-256"), "{}", run.stderr);
    assert!(!run.stderr.contains("rehearsal on"), "the load started: {}", run.stderr);
    assert!(empty.tables().is_empty(), "{:?}", empty.tables());

    // The set itself: restored, every row read back, then rehearsed; the
    // configured database is not touched.
    let report = from(&empty, &set, &["--json"]).ok().json();
    assert_eq!(report["ok"], true, "{report:#}");
    assert!(report["phases"][0]["transactions"].as_u64().unwrap() > 20, "{report:#}");
    assert_eq!(
        empty.rows("SELECT count(*), count(flagged) FROM accounts"),
        [[Some("2000".to_owned()), Some("0".to_owned())]]
    );
    assert_eq!(empty.history().len(), 1);
    assert!(source.history().is_empty());
    assert!(
        source
            .rows("SELECT column_name::text FROM information_schema.columns WHERE column_name = 'flagged'")
            .is_empty()
    );
}

/// Every file under `dir`.
fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}
