//! `waymark fleet`: one fleet file over SQLite, PostgreSQL and MariaDB
//! databases, rolled out wave by wave with the real binary.

use std::io::BufRead;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{BIN, Kind, Project, Run, TestDb, cache_dir};

/// The migrations every fleet test applies. The second inserts one row,
/// so a count of its rows says how many times it ran.
fn project() -> Project {
    let p = Project::new();
    p.migration(
        "1_accounts",
        "CREATE TABLE accounts (id INT PRIMARY KEY, name VARCHAR(50));",
        Some("DROP TABLE accounts;"),
    );
    p.migration(
        "2_rollout_log",
        "CREATE TABLE rollout_log (id INT);\nINSERT INTO rollout_log (id) VALUES (1);",
        Some("DROP TABLE rollout_log;"),
    );
    p
}

fn fleet(p: &Project, args: &[&str]) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.current_dir(p.dir.path())
        .env_remove("DATABASE_URL")
        .env("WAYMARK_CACHE_DIR", cache_dir())
        .env("NO_COLOR", "1")
        .arg("fleet")
        .args(args);
    cmd
}

fn run(p: &Project, args: &[&str]) -> Run {
    Run::from(fleet(p, args).output().unwrap())
}

fn target(name: &str, db: &TestDb, labels: &str) -> String {
    format!(
        "[[target]]\nname = \"{name}\"\nurl = \"{}\"\nlabels = {labels}\n\n",
        db.url
    )
}

/// How many times the second migration ran on `db`: its row count, or 0
/// when its table is not there.
fn runs_of_log(db: &TestDb) -> usize {
    if !db.tables().iter().any(|t| t == "rollout_log") {
        return 0;
    }
    db.rows("SELECT COUNT(*) FROM rollout_log")[0][0]
        .as_deref()
        .unwrap()
        .parse()
        .unwrap()
}

fn versions(db: &TestDb) -> Vec<String> {
    db.history().into_iter().map(|(v, _)| v).collect()
}

fn wave<'a>(json: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    json["waves"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["name"] == name)
        .unwrap()
}

#[test]
fn a_fleet_of_three_dialects_goes_in_waves_halts_on_one_failure_and_resumes_after_the_fix() {
    let p = project();
    let sqlite: Vec<TestDb> = (0..50).map(|_| TestDb::new(Kind::Sqlite)).collect();
    let pg: Vec<TestDb> = (0..10).map(|_| TestDb::new(Kind::Postgres)).collect();
    let my: Vec<TestDb> = (0..5).map(|_| TestDb::new(Kind::Mysql)).collect();
    let mut file = String::new();
    for (i, db) in sqlite.iter().enumerate() {
        let labels = if i == 0 {
            "{ tier = \"canary\" }"
        } else {
            "{ kind = \"sqlite\" }"
        };
        file += &target(&format!("lite-{i}"), db, labels);
    }
    for (i, db) in pg.iter().enumerate() {
        file += &target(&format!("pg-{i}"), db, "{ kind = \"postgres\" }");
    }
    for (i, db) in my.iter().enumerate() {
        file += &target(&format!("maria-{i}"), db, "{ kind = \"mariadb\" }");
    }
    file += r#"
[[wave]]
name = "canary"
select = { tier = "canary" }
gate = { check = "test \"$WAYMARK_FLEET_WAVE $WAYMARK_FLEET_TARGETS\" = 'canary lite-0'" }

[[wave]]
name = "postgres"
select = { kind = "postgres" }

[[wave]]
name = "rest"
select = "*"
parallel = 8
max_failures = "10%"
"#;
    p.file("fleet.toml", &file);
    // One PostgreSQL target of the second wave already has the table the
    // second migration creates, so that migration fails there (and rolls
    // back, PostgreSQL's DDL being transactional).
    pg[6].execute("CREATE TABLE rollout_log (id INT)");

    let first = run(&p, &["up", "--json"]).code(1);
    let json = first.json();
    assert_eq!(json["ok"], false);
    assert_eq!(
        json["halted"], "wave \"postgres\" had 1 failed target(s) and allows 0",
        "{}",
        first.stderr
    );
    let canary = wave(&json, "canary");
    assert_eq!(canary["state"], "done");
    assert_eq!(
        canary["targets"][0]["applied"],
        serde_json::json!(["1_accounts", "2_rollout_log"])
    );
    assert_eq!(canary["gate"]["passed"], true);
    let second = wave(&json, "postgres");
    assert_eq!(second["state"], "failed");
    let failed: Vec<&serde_json::Value> = second["targets"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["outcome"] != "applied")
        .collect();
    assert_eq!(failed.len(), 1, "{second:#}");
    assert_eq!(failed[0]["name"], "pg-6");
    assert_eq!(failed[0]["outcome"], "failed");
    assert_eq!(failed[0]["applied"], serde_json::json!(["1_accounts"]));
    let error = failed[0]["error"].as_str().unwrap();
    assert!(
        error.contains("2_rollout_log") && error.contains("already exists"),
        "{error}"
    );
    // One at a time in this wave, so exactly the targets after pg-6 were
    // left; that targets already running finish is rollout.rs's test.
    let ran = second["targets"].as_array().unwrap().len();
    assert_eq!(ran, 7);
    assert_eq!(second["not_started"], serde_json::json!(["pg-7", "pg-8", "pg-9"]));
    let rest = wave(&json, "rest");
    assert_eq!(rest["state"], "not-started");
    assert_eq!(rest["not_started"].as_array().unwrap().len(), 54);
    assert!(first.stderr.contains("pg-6 FAILED: "), "{}", first.stderr);
    // The third wave was not touched; the failing target kept its first
    // migration and nothing of its second.
    for db in sqlite[1..].iter().chain(&my) {
        assert!(versions(db).is_empty(), "{}", db.url);
    }
    assert_eq!(versions(&pg[6]), vec!["1"]);

    // The matrix says the same.
    let status = run(&p, &["status", "--json"]).code(3);
    let status = status.json();
    assert_eq!(status["totals"]["pending"], 65 - 1 - ran + 1);
    assert_eq!(status["totals"]["up-to-date"], 1 + ran - 1);
    let pg6 = status["targets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "pg-6")
        .unwrap();
    assert_eq!(pg6["state"], "pending");
    assert_eq!(pg6["migrations"], serde_json::json!(["2_rollout_log"]));

    // One plan per group of targets that stand alike, not one per target.
    let plan = run(&p, &["plan", "--json"]).ok().json();
    let groups = plan["groups"].as_array().unwrap();
    let shape: Vec<(String, usize, String)> = groups
        .iter()
        .map(|g| {
            (
                format!("{} {}", g["state"].as_str().unwrap(), g["migrations"]),
                g["targets"].as_array().unwrap().len(),
                g["planned_on"].as_str().unwrap_or("-").to_owned(),
            )
        })
        .collect();
    assert_eq!(
        shape,
        [
            ("up-to-date []".to_owned(), 7, "-".to_owned()),
            (
                "pending [\"1_accounts\",\"2_rollout_log\"]".to_owned(),
                57,
                "lite-1".to_owned()
            ),
            ("pending [\"2_rollout_log\"]".to_owned(), 1, "pg-6".to_owned()),
        ]
    );
    let planned: Vec<&str> = groups[1]["plan"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["migration"].as_str().unwrap())
        .collect();
    assert_eq!(planned, ["1_accounts", "2_rollout_log"]);

    // The fix, and the same command again: every target ends with each
    // migration applied once.
    pg[6].execute("DROP TABLE rollout_log");
    let again = run(&p, &["up", "--json"]).ok();
    let json = again.json();
    assert_eq!(json["halted"], serde_json::Value::Null);
    assert_eq!(wave(&json, "canary")["targets"][0]["outcome"], "up-to-date");
    assert_eq!(json["totals"]["applied"], 65 - 1 - ran + 1, "{}", again.stdout);
    for db in sqlite.iter().chain(&pg).chain(&my) {
        assert_eq!(versions(db), vec!["1", "2"], "{}", db.url);
        assert_eq!(runs_of_log(db), 1, "{}", db.url);
    }
    run(&p, &["status"]).ok();
}

/// A fleet file of 16 new SQLite and 4 new PostgreSQL databases, `t0`
/// to `t19`, in one wave of four at a time.
fn twenty_targets(p: &Project) -> Vec<TestDb> {
    let dbs: Vec<TestDb> = (0..16)
        .map(|_| TestDb::new(Kind::Sqlite))
        .chain((0..4).map(|_| TestDb::new(Kind::Postgres)))
        .collect();
    let file: String = dbs
        .iter()
        .enumerate()
        .map(|(i, db)| target(&format!("t{i}"), db, "{}"))
        .collect();
    p.file("fleet.toml", format!("{file}[[wave]]\nselect = \"*\"\nparallel = 4\n"));
    dbs
}

#[test]
fn two_runners_together_and_four_shards_each_apply_every_migration_once() {
    let p = project();
    let dbs = twenty_targets(&p);
    let runners: Vec<_> = (0..2)
        .map(|_| {
            fleet(&p, &["up", "--json"])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for r in runners {
        Run::from(r.wait_with_output().unwrap()).ok();
    }
    for db in &dbs {
        assert_eq!(runs_of_log(db), 1, "{}", db.url);
    }

    // Four shards on a fresh fleet: together they take every target once.
    let dbs = twenty_targets(&p);
    let shards: Vec<_> = (0..4)
        .map(|i| {
            fleet(&p, &["up", "--json", "--shard", &format!("{i}/4")])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut taken: Vec<String> = Vec::new();
    for s in shards {
        let run = Run::from(s.wait_with_output().unwrap()).ok();
        for t in run.json()["waves"][0]["targets"].as_array().unwrap() {
            assert_eq!(t["outcome"], "applied", "{t}");
            taken.push(t["name"].as_str().unwrap().to_owned());
        }
    }
    taken.sort();
    let mut all: Vec<String> = (0..20).map(|i| format!("t{i}")).collect();
    all.sort();
    assert_eq!(taken, all);
    for db in &dbs {
        assert_eq!(runs_of_log(db), 1, "{}", db.url);
    }
}

#[test]
fn a_runner_killed_mid_wave_and_run_again_applies_each_migration_once() {
    let p = project();
    // Slow enough that the kill lands with targets left.
    p.migration("3_slow", "SELECT pg_sleep(0.4);", None);
    let dbs: Vec<TestDb> = (0..8).map(|_| TestDb::new(Kind::Postgres)).collect();
    let file: String = dbs
        .iter()
        .enumerate()
        .map(|(i, db)| target(&format!("t{i}"), db, "{}"))
        .collect();
    p.file("fleet.toml", format!("{file}[[wave]]\nselect = \"*\"\nparallel = 2\n"));
    let mut child = fleet(&p, &["up"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    for line in stderr.lines() {
        if line.unwrap().contains(" applied ") {
            break;
        }
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let done = dbs.iter().filter(|db| versions(db) == ["1", "2", "3"]).count();
    assert!(
        (1..8).contains(&done),
        "killed after the first target: {done} of 8 done"
    );

    let again = run(&p, &["up", "--json"]).ok();
    let json = again.json();
    assert_eq!(json["totals"]["up-to-date"], done, "{}", again.stdout);
    for db in &dbs {
        assert_eq!(versions(db), vec!["1", "2", "3"], "{}", db.url);
        assert_eq!(runs_of_log(db), 1, "{}", db.url);
    }
}

#[test]
fn an_unreachable_target_is_a_counted_failure_within_the_connect_timeout_and_a_failing_gate_halts() {
    let p = project();
    let first: Vec<TestDb> = (0..2).map(|_| TestDb::new(Kind::Sqlite)).collect();
    let last = TestDb::new(Kind::Sqlite);
    let mut file: String = first
        .iter()
        .enumerate()
        .map(|(i, db)| target(&format!("a{i}"), db, "{ w = \"1\" }"))
        .collect();
    file += "[[target]]\nname = \"gone\"\nurl = \"postgres://postgres@127.0.0.1:1/gone\"\nlabels = { w = \"1\" }\n\n";
    file += &target("b", &last, "{}");
    file += "[[wave]]\nname = \"first\"\nselect = { w = \"1\" }\nparallel = 3\nmax_failures = 1\ngate = { check = \"echo probing; echo 'error rate 7%' >&2; exit 2\" }\n\n[[wave]]\nname = \"second\"\nselect = \"*\"\n";
    p.file("fleet.toml", &file);
    let started = Instant::now();
    let out = run(&p, &["up", "--json", "--connect-timeout", "2s"]).code(1);
    assert!(started.elapsed() < Duration::from_secs(20), "{:?}", started.elapsed());
    let json = out.json();
    let w = wave(&json, "first");
    assert_eq!(w["state"], "gate-failed");
    let gone = w["targets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "gone")
        .unwrap();
    assert_eq!(gone["outcome"], "unreachable");
    let error = gone["error"].as_str().unwrap();
    assert!(
        error.starts_with("could not connect to postgres://postgres@127.0.0.1:1/gone: ") && error.contains("refused"),
        "{error}"
    );
    assert_eq!(w["gate"]["code"], 2);
    assert_eq!(
        json["halted"],
        "the gate after wave \"first\" failed: `echo probing; echo 'error rate 7%' >&2; exit 2` exited with 2: error rate 7%"
    );
    assert_eq!(wave(&json, "second")["not_started"], serde_json::json!(["b"]));
    for db in &first {
        assert_eq!(versions(db), vec!["1", "2"]);
    }
    assert!(versions(&last).is_empty());

    let status = run(&p, &["status", "--connect-timeout", "2s"]).code(3);
    assert!(
        status.stdout.contains("gone") && status.stdout.contains("unreachable"),
        "{}",
        status.stdout
    );
    assert!(
        status.stdout.contains("totals: 1 pending, 1 unreachable, 2 up-to-date"),
        "{}",
        status.stdout
    );

    // With a gate that passes, every wave runs; the unreachable target is
    // within its wave's budget, but the fleet is not up to date, and the
    // exit code says so.
    p.file("fleet.toml", file.replace("exit 2", "exit 0"));
    let out = run(&p, &["up", "--connect-timeout", "2s"]).code(3);
    assert!(
        out.stdout.contains("within its failure budget; not up to date: gone"),
        "{}",
        out.stdout
    );
    assert_eq!(versions(&last), vec!["1", "2"]);
}

#[test]
fn a_bad_fleet_file_is_refused_by_line_before_anything_connects() {
    let p = project();
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("never.db").display());
    let good = format!("[[target]]\nname = \"a\"\nurl = \"{url}\"\n\n[[wave]]\nselect = \"*\"\n");
    let cases = [
        (
            good.replace("[[wave]]", "[[wave]]\nparalel = 2"),
            "fleet.toml:6: unknown field `paralel`",
        ),
        (
            good.replace(&format!("url = \"{url}\""), "url_env = \"WAYMARK_TEST_NO_SUCH_URL\""),
            "fleet.toml:3: target \"a\": url_env = \"WAYMARK_TEST_NO_SUCH_URL\", but that environment variable is not set",
        ),
        (
            good.replace("select = \"*\"", "select = { tier = \"canary\" }"),
            "fleet.toml:5: wave \"wave 1\" selects no target",
        ),
        (
            format!("{good}max_failures = \"120%\"\n"),
            "fleet.toml:7: wave \"wave 1\": max_failures = \"120%\"; a share is at most 100%",
        ),
    ];
    for (file, message) in cases {
        p.file("fleet.toml", &file);
        run(&p, &["up"]).code(2).stderr_has(&format!("error: {message}"));
    }
    run(&p, &["up", "--fleet", "elsewhere.toml"])
        .code(2)
        .stderr_has("error: elsewhere.toml: No such file");
    p.file("fleet.toml", &good);
    run(&p, &["up", "--shard", "2/2"])
        .code(2)
        .stderr_has("--shard 2/2: the index counts from 0");
    assert!(!dir.path().join("never.db").exists(), "nothing connected");
}

fn event_lines(path: &std::path::Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

#[test]
fn the_events_and_metrics_files_follow_a_rollout_and_events_follow_any_command() {
    let p = project();
    let lite = TestDb::new(Kind::Sqlite);
    let pg = TestDb::new(Kind::Postgres);
    let file = target("lite", &lite, "{}") + &target("pg", &pg, "{}") + "[[wave]]\nname = \"all\"\nselect = \"*\"\n";
    p.file("fleet.toml", &file);
    let events = p.dir.path().join("events.jsonl");
    let metrics = p.dir.path().join("textfile/fleet.prom");
    // A path that cannot be written is refused before anything runs.
    run(&p, &["up", "--metrics-file", metrics.to_str().unwrap()])
        .code(2)
        .stderr_has(&format!(
            "--metrics-file {}: No such file or directory",
            metrics.display()
        ));
    // Only a rollout keeps a metrics file; a look is not a rollout.
    run(&p, &["status", "--metrics-file", "fleet.prom"])
        .code(2)
        .stderr_has("unexpected argument '--metrics-file'");
    run(&p, &["up", "--events", "no/such/events.jsonl"])
        .code(2)
        .stderr_has("--events no/such/events.jsonl: No such file or directory");
    assert!(versions(&lite).is_empty() && versions(&pg).is_empty());

    std::fs::create_dir(metrics.parent().unwrap()).unwrap();
    let args = [
        "up",
        "--events",
        events.to_str().unwrap(),
        "--metrics-file",
        metrics.to_str().unwrap(),
    ];
    run(&p, &args).ok();
    let lines = event_lines(&events);
    assert!(lines.iter().all(|l| l["ts"].as_str().is_some_and(|t| t.ends_with('Z'))));
    let of = |target: &str| -> Vec<String> {
        lines
            .iter()
            .filter(|l| l["target"] == target)
            .map(|l| match l["event"].as_str().unwrap() {
                "statement" => format!("statement {}", l["sql"].as_str().unwrap()),
                "migration-started" | "migration-finished" => {
                    format!("{} {}", l["event"].as_str().unwrap(), l["migration"].as_str().unwrap())
                }
                "target-finished" => format!("target-finished {}", l["outcome"].as_str().unwrap()),
                other => other.to_owned(),
            })
            .collect()
    };
    assert_eq!(
        of("pg"),
        [
            "target-started",
            "migration-started 1_accounts",
            "statement CREATE TABLE accounts (id INT PRIMARY KEY, name VARCHAR(50))",
            "migration-finished 1_accounts",
            "migration-started 2_rollout_log",
            "statement CREATE TABLE rollout_log (id INT)",
            "statement INSERT INTO rollout_log (id) VALUES (1)",
            "migration-finished 2_rollout_log",
            "target-finished applied",
        ]
    );
    let create = lines
        .iter()
        .find(|l| l["target"] == "pg" && l["event"] == "statement")
        .unwrap();
    assert!(
        create["locks"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l == "ACCESS EXCLUSIVE on accounts"),
        "{create}"
    );
    assert_eq!(of("lite").len(), 9);
    assert_eq!(lines[0]["event"], "wave-started");
    let last = lines.last().unwrap();
    assert_eq!(last["event"], "rollout-finished");
    assert_eq!(last["totals"]["applied"], 2);

    let text = std::fs::read_to_string(&metrics).unwrap();
    for state in ["applied", "pending", "failed"] {
        let line =
            format!("waymark_fleet_target_state{{fleet=\"fleet.toml\",target=\"pg\",wave=\"all\",state=\"{state}\"}}");
        let expected = if state == "applied" { " 1" } else { " 0" };
        assert!(
            text.contains(&format!("{line}{expected}\n")),
            "{line}{expected}:\n{text}"
        );
    }
    assert!(
        text.contains("waymark_fleet_target_migrations_applied{fleet=\"fleet.toml\",target=\"lite\",wave=\"all\"} 2\n")
    );
    assert!(text.contains("waymark_fleet_halted{fleet=\"fleet.toml\"} 0\n"));
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let (series, value) = line.rsplit_once(' ').unwrap();
        assert!(series.starts_with("waymark_fleet_") && series.ends_with('}'), "{line}");
        value.parse::<f64>().unwrap_or_else(|_| panic!("{line}"));
    }
    let beside: Vec<_> = std::fs::read_dir(metrics.parent().unwrap()).unwrap().collect();
    assert_eq!(beside.len(), 1, "no temporary file is left beside it");

    // Any command: a failing `up` on one database, appended to the same file.
    let single = TestDb::new(Kind::Postgres);
    single.execute("CREATE TABLE rollout_log (id INT)");
    p.run(&single, &["up", "--events", events.to_str().unwrap()]).code(1);
    let lines = event_lines(&events);
    let failed = lines.last().unwrap();
    assert_eq!(failed["event"], "migration-failed");
    assert_eq!(failed["migration"], "2_rollout_log");
    assert!(failed["target"].as_str().unwrap().ends_with(single.name()), "{failed}");
    assert!(failed["error"].as_str().unwrap().contains("already exists"), "{failed}");
    let statement = &lines[lines.len() - 2];
    assert_eq!(statement["event"], "statement");
    assert!(
        statement["error"].as_str().unwrap().contains("already exists"),
        "{statement}"
    );
}

#[test]
fn a_migration_changed_after_it_was_applied_fails_fleet_verify_and_fleet_up_skips_the_targets() {
    let p = project();
    let dbs = [TestDb::new(Kind::Sqlite), TestDb::new(Kind::Mysql)];
    let file = target("lite", &dbs[0], "{}")
        + &target("maria", &dbs[1], "{}")
        + "[[wave]]\nselect = \"*\"\nparallel = 2\nmax_failures = 1\n";
    p.file("fleet.toml", &file);
    run(&p, &["up"]).ok();
    let verified = run(&p, &["verify", "--json"]).ok().json();
    assert_eq!(verified["totals"]["verified"], 2);
    assert_eq!(verified["targets"][0]["detail"], "2 checked");

    // The file of an applied migration changes, and a new one is added.
    p.migration(
        "2_rollout_log",
        "CREATE TABLE rollout_log (id INT, note TEXT);\nINSERT INTO rollout_log (id) VALUES (1);",
        None,
    );
    p.migration("3_more", "CREATE TABLE more_things (id INT);", None);
    let differs = run(&p, &["verify", "--json"]).code(3).json();
    for t in differs["targets"].as_array().unwrap() {
        assert_eq!(t["state"], "modified", "{t}");
        assert_eq!(t["migrations"], serde_json::json!(["2"]));
    }
    // Each target is skipped and named, nothing runs on it, and the two
    // skips exceed the wave's budget of one.
    let up = run(&p, &["up", "--json"]).code(1);
    let json = up.json();
    assert_eq!(json["halted"], "wave \"wave 1\" had 2 failed target(s) and allows 1");
    for t in json["waves"][0]["targets"].as_array().unwrap() {
        assert_eq!(t["outcome"], "skipped", "{t}");
        assert_eq!(
            t["error"],
            "its history has modified migration(s) 2; see `waymark status` and `waymark repair` for it"
        );
    }
    for db in &dbs {
        assert_eq!(versions(db), vec!["1", "2"], "{}", db.url);
        assert!(!db.tables().iter().any(|t| t == "more_things"));
    }
}

#[test]
fn fleet_down_reverts_to_a_version_widest_wave_first_and_again_finds_nothing_to_do() {
    let p = project();
    let dbs = [
        TestDb::new(Kind::Sqlite),
        TestDb::new(Kind::Postgres),
        TestDb::new(Kind::Sqlite),
    ];
    let file = target("canary", &dbs[0], "{ tier = \"canary\" }")
        + &target("pg", &dbs[1], "{}")
        + &target("lite", &dbs[2], "{}")
        + "[[wave]]\nname = \"canary\"\nselect = { tier = \"canary\" }\n\n[[wave]]\nname = \"rest\"\nselect = \"*\"\nparallel = 2\n";
    p.file("fleet.toml", &file);
    run(&p, &["up"]).ok();
    // A count of steps is refused: targets at different versions would
    // each lose different migrations.
    run(&p, &["down"]).code(2).stderr_has("--to <VERSION>");

    let down = run(&p, &["down", "--to", "1", "--json"]).ok();
    let json = down.json();
    let order: Vec<&str> = json["waves"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["name"].as_str().unwrap())
        .collect();
    assert_eq!(order, ["rest", "canary"]);
    for w in json["waves"].as_array().unwrap() {
        for t in w["targets"].as_array().unwrap() {
            assert_eq!(t["outcome"], "reverted", "{t}");
            assert_eq!(t["applied"], serde_json::json!(["2_rollout_log"]));
        }
    }
    assert!(
        down.stderr.contains("  rest: pg reverted 2_rollout_log"),
        "{}",
        down.stderr
    );
    for db in &dbs {
        assert_eq!(versions(db), vec!["1"], "{}", db.url);
        assert_eq!(runs_of_log(db), 0, "{}", db.url);
    }
    let again = run(&p, &["down", "--to", "1", "--json"]).ok().json();
    assert_eq!(again["totals"]["up-to-date"], 3);
    // And up brings every target back.
    run(&p, &["up"]).ok();
    for db in &dbs {
        assert_eq!(runs_of_log(db), 1, "{}", db.url);
    }
}

#[test]
fn on_a_terminal_the_rollout_shows_a_bar_with_the_time_left_and_each_target_in_flight() {
    let p = project();
    let dbs: Vec<TestDb> = (0..3).map(|_| TestDb::new(Kind::Sqlite)).collect();
    let file: String = dbs
        .iter()
        .enumerate()
        .map(|(i, db)| target(&format!("t{i}"), db, "{}"))
        .collect();
    p.file(
        "fleet.toml",
        file + "[[wave]]\nname = \"all\"\nselect = \"*\"\nparallel = 2\n",
    );
    let drawn = p.drawn_on_a_terminal(None, "fleet up");
    assert!(drawn.contains("wave all ["), "{drawn}");
    assert!(
        drawn.contains("/3 targets, ") && drawn.contains(" so far, eta "),
        "{drawn}"
    );
    assert!(
        drawn.contains("all: t0 running"),
        "a line per target in flight: {drawn}"
    );
    assert!(
        drawn.contains("  all: t2 applied 1_accounts, 2_rollout_log ("),
        "{drawn}"
    );
    assert!(drawn.contains("3/3 targets"), "{drawn}");
    assert!(drawn.contains("done in "), "{drawn}");
    // Away from a terminal the same run is plain lines, with no bar.
    for db in &dbs {
        assert_eq!(runs_of_log(db), 1);
    }
    let again = run(&p, &["up"]).ok();
    assert!(!again.stderr.contains("targets, "), "{}", again.stderr);
    assert!(again.stderr.contains("  all: t0 up to date ("), "{}", again.stderr);
}

#[test]
fn the_fleet_can_live_in_waymark_toml_and_a_missing_or_doubled_one_is_refused() {
    let p = project();
    run(&p, &["status"])
        .code(2)
        .stderr_has("error: no fleet: write fleet.toml (docs/guide/fleet.md), name one with --fleet FILE");
    let db = TestDb::new(Kind::Sqlite);
    let fleet =
        target("only", &db, "{}").replace("[[target]]", "[[fleet.target]]") + "[[fleet.wave]]\nselect = \"*\"\n";
    p.file("waymark.toml", format!("lock_timeout = \"10s\"\n\n{fleet}"));
    let up = run(&p, &["up", "--json"]).ok().json();
    assert_eq!(up["fleet"], "waymark.toml");
    assert_eq!(up["waves"][0]["targets"][0]["outcome"], "applied");
    assert_eq!(versions(&db), vec!["1", "2"]);
    // Lines are the config file's.
    p.file(
        "waymark.toml",
        format!(
            "lock_timeout = \"10s\"\n\n{}",
            fleet.replace("labels = {}", "labels = {}\nport = 1")
        ),
    );
    run(&p, &["status"])
        .code(2)
        .stderr_has("error: waymark.toml:7: unknown field `port`");
    p.file("waymark.toml", format!("lock_timeout = \"10s\"\n\n{fleet}"));
    p.file("fleet.toml", target("only", &db, "{}"));
    run(&p, &["status"]).code(2).stderr_has(
        "there is a fleet.toml and a [fleet] table in waymark.toml: keep one, or name the file with --fleet",
    );
    run(&p, &["status", "--fleet", "fleet.toml"]).ok();
}
