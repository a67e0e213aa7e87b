//! What a new user meets in the first hour: `new` run twice in a second,
//! the down script it writes, a folder or database that is not there yet.
//! Each case asserts the message and what is left afterwards.

use crate::common::{Kind, Project, TestDb};

/// The migration folders `new` made, by name.
fn folders(p: &Project) -> Vec<String> {
    crate::common::names_in(&p.migrations())
}

#[test]
fn new_twice_in_a_second_takes_the_next_free_version() {
    let db = TestDb::new(Kind::Sqlite);
    let p = Project::new();
    // A colleague's clock ran ahead: the newest is later than now.
    p.migration("20991231235959_from_the_future", "SELECT 1;", None);
    p.run(&db, &["new", "first"]).ok();
    p.run(&db, &["new", "second"]).ok();
    assert_eq!(
        folders(&p),
        [
            "20991231235959_from_the_future",
            "21000101000000_first",
            "21000101000001_second"
        ]
    );

    // Without one ahead, two in one second still get two versions.
    let p = Project::new();
    p.run(&db, &["new", "a"]).ok();
    p.run(&db, &["new", "b"]).ok();
    let made = folders(&p);
    assert_eq!(made.len(), 2, "{made:?}");
    let version = |name: &str| name.split('_').next().unwrap().parse::<u64>().unwrap();
    assert!(version(&made[0]) < version(&made[1]), "{made:?}");
    assert!(made[0].ends_with("_a") && made[1].ends_with("_b"), "{made:?}");
    p.run(&db, &["status"]).ok();
}

#[test]
fn new_takes_a_version_and_refuses_one_that_is_taken() {
    let db = TestDb::new(Kind::Sqlite);
    let p = Project::new();
    p.migration("0001_a", "SELECT 1;", None);
    let run = p.run(&db, &["new", "b", "--version", "0005"]).ok();
    assert!(run.stdout.contains("0005_b/up.sql"), "{}", run.stdout);
    // The folder numbers on from it.
    p.run(&db, &["new", "c"]).ok();
    assert_eq!(folders(&p), ["0001_a", "0005_b", "0006_c"]);

    p.run(&db, &["new", "d", "--version", "5"])
        .code(2)
        .stderr_has("0005_b/up.sql: --version 5: migration 0005_b has that version already; pick another");
    p.run(&db, &["new", "d", "--version", "v7"])
        .code(2)
        .stderr_has("--version: version \"v7\" must be digits");
    assert_eq!(folders(&p), ["0001_a", "0005_b", "0006_c"], "nothing was written");
}

fn an_empty_down_script_is_no_down(kind: Kind) {
    let db = TestDb::new(kind);
    let p = Project::new();
    let run = p.run(&db, &["new", "people"]).ok();
    // As `new` printed them, relative to the project.
    let up = run.stdout.lines().find(|l| l.ends_with("up.sql")).unwrap().to_owned();
    let down = up.replace("up.sql", "down.sql");
    std::fs::write(
        p.dir.path().join(&up),
        "CREATE TABLE people (id INTEGER PRIMARY KEY);\n",
    )
    .unwrap();
    let written = std::fs::read_to_string(p.dir.path().join(&down)).unwrap();
    assert!(written.contains("waymark down` refuses"), "{written}");

    // `plan` says so before anything is applied.
    p.run(&db, &["plan"]).ok().stderr_has(&format!(
        "_people: its down script {down} holds no statement, so `waymark down` will refuse to revert it"
    ));
    // And in its JSON, for a pipeline to read.
    let planned = p.run(&db, &["plan", "--json"]).ok().json();
    crate::json_contract::conforms("plan", &planned);
    let warning = planned["warnings"][0].as_str().unwrap();
    assert!(
        warning.ends_with("until it holds one or a line `-- waymark:empty-down`"),
        "{warning}"
    );
    p.run(&db, &["up"]).ok();

    // `plan --down` and `down` refuse it, naming the file; nothing moves.
    for args in [&["plan", "--down"][..], &["down"]] {
        p.run(&db, args)
            .code(1)
            .stderr_has(&format!("its down script {down} holds no statement"))
            .stderr_has("add the line `-- waymark:empty-down`; nothing was reverted");
        assert_eq!(db.tables().iter().filter(|t| *t == "people").count(), 1);
        assert_eq!(db.history().len(), 1, "{:?}", db.history());
    }

    // Said on purpose, it reverts (nothing to run) and the history moves.
    std::fs::write(
        p.dir.path().join(&down),
        format!("{written}-- waymark:empty-down the table stays, by design\n"),
    )
    .unwrap();
    p.run(&db, &["plan", "--down"]).ok().stderr_has(&format!(
        "_people: its down script {down} holds no statement (-- waymark:empty-down): reverting it runs nothing, \
         and what its up did stays"
    ));
    p.run(&db, &["down"]).ok().stderr_has("reverted");
    assert!(db.history().is_empty(), "{:?}", db.history());
    // Pending again, its plan says nothing of its down: it is meant.
    let planned = p.run(&db, &["plan"]).ok();
    assert!(planned.stdout.contains("_people"), "{}", planned.stdout);
    assert!(!planned.stderr.contains("holds no statement"), "{}", planned.stderr);
    let planned = p.run(&db, &["plan", "--json"]).ok().json();
    assert!(planned.get("warnings").is_none(), "{planned}");
    assert_eq!(db.tables().iter().filter(|t| *t == "people").count(), 1);
}

#[test]
fn an_empty_down_script_is_no_down_sqlite() {
    an_empty_down_script_is_no_down(Kind::Sqlite);
}

#[test]
fn an_empty_down_script_is_no_down_postgres() {
    an_empty_down_script_is_no_down(Kind::Postgres);
}

#[test]
fn a_missing_migrations_folder_is_named_with_a_hint() {
    let db = TestDb::new(Kind::Sqlite);
    let p = Project::new();
    std::fs::remove_dir(p.migrations()).unwrap();
    for args in [&["status"][..], &["up"], &["--migrations", "db/migrate", "plan"]] {
        let folder = if args.len() > 1 && args[0] == "--migrations" {
            "db/migrate"
        } else {
            "migrations"
        };
        p.run(&db, args)
            .code(2)
            .stderr_has(&format!("error: {folder}: no such folder of migrations"))
            .stderr_has(
                "hint: create the first migration with `waymark new <name>`, or name the folder with --migrations",
            );
    }
    // Nothing was made: no folder, and `up` refused before it connected.
    assert!(!p.migrations().exists());
    assert!(db.tables().is_empty() && db.history().is_empty());
    // `new` makes the folder.
    p.run(&db, &["new", "first"]).ok();
    p.run(&db, &["status"]).ok();
}

#[test]
fn read_only_commands_create_no_sqlite_file_and_sqlx_urls_work() {
    let p = Project::new();
    p.migration("1_t", "CREATE TABLE t (id INTEGER);", Some("DROP TABLE t;"));
    let file = p.dir.path().join("app.db");
    for url in ["sqlite://app.db", "sqlite:app.db"] {
        for command in ["status", "plan", "verify"] {
            let run = p.run_at(url, &[command]);
            run.code(1)
                .stderr_has(&format!("could not connect to {url}: no database file app.db"))
                .stderr_has("hint: `waymark up` (or `waymark database create`) creates the file");
            assert!(!file.exists(), "{command} made {}", file.display());
        }
    }
    // sqlx's form works for the commands that write, and then for reads.
    p.run_at("sqlite:app.db", &["up"]).ok();
    assert!(file.exists());
    let status = p.run_at("sqlite:app.db", &["status", "--json"]).ok().json();
    assert_eq!(status["migrations"][0]["state"], "applied");
}

fn database_create_and_drop(kind: Kind) {
    let db = TestDb::new(kind);
    let name = format!("{}_made", db.name());
    let url = db.url.replace(db.name(), &name);
    let exists = || match kind {
        Kind::Postgres => db
            .rows(&format!("SELECT 1 FROM pg_database WHERE datname = '{name}'"))
            .len(),
        _ => db
            .rows(&format!(
                "SELECT 1 FROM information_schema.schemata WHERE schema_name = '{name}'"
            ))
            .len(),
    };
    let p = Project::new();
    p.migration("1_t", "CREATE TABLE t (id INTEGER);", None);

    // A database that is not there: said so, with the way to make it.
    let run = p.run_at(&url, &["status"]).code(1);
    run.stderr_has(&format!("could not connect to {url}"))
        .stderr_has("hint: create it with `waymark database create`");

    let run = p.run_at(&url, &["database", "create"]).ok();
    run.stderr_has(&format!("created database {name}"));
    assert_eq!(exists(), 1);
    p.run_at(&url, &["up"]).ok();
    // Again: nothing changes, and a pipeline can run it every time.
    let again = p.run_at(&url, &["database", "create", "--json"]).ok().json();
    crate::json_contract::conforms("database-create", &again);
    assert_eq!(again["changed"], false, "{again}");
    assert_eq!(again["database"], name.as_str());

    // Drop asks for --yes, and without it leaves everything.
    p.run_at(&url, &["database", "drop"])
        .code(2)
        .stderr_has("run it again with --yes");
    assert_eq!(exists(), 1);
    p.run_at(&url, &["database", "drop", "--yes"])
        .ok()
        .stderr_has(&format!("dropped database {name}"));
    assert_eq!(exists(), 0);
    p.run_at(&url, &["database", "drop", "-y"])
        .ok()
        .stderr_has("does not exist");
}

#[test]
fn database_create_and_drop_postgres() {
    database_create_and_drop(Kind::Postgres);
}

#[test]
fn database_create_and_drop_mysql() {
    database_create_and_drop(Kind::Mysql);
}

#[test]
fn database_create_and_drop_a_sqlite_file() {
    let p = Project::new();
    let file = p.dir.path().join("new.db");
    let run = |args: &[&str]| p.run_at("sqlite://new.db", args);
    run(&["database", "create"]).ok().stderr_has("created database new.db");
    assert!(file.exists());
    run(&["database", "create"]).ok().stderr_has("exists already");
    run(&["database", "drop", "--yes"]).ok();
    assert!(!file.exists());
}

#[test]
fn a_refused_port_says_what_to_check() {
    let p = Project::new();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("postgres://app@127.0.0.1:{port}/app");
    p.run_at(&url, &["status", "--connect-timeout", "1s"])
        .code(1)
        .stderr_has("Connection refused")
        .stderr_has("hint: nothing listens at that host and port");
}

#[test]
fn version_completions_and_manual() {
    let bin = crate::common::BIN;
    let version = std::process::Command::new(bin).arg("--version").output().unwrap();
    let version = String::from_utf8(version.stdout).unwrap();
    let head = std::process::Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    let head = String::from_utf8(head.stdout).unwrap();
    assert_eq!(
        version.trim(),
        format!(
            "waymark {} (commit {}, plugin interface {})",
            env!("CARGO_PKG_VERSION"),
            head.trim(),
            waymark_host::INTERFACE_VERSION
        )
    );

    // Completions name every command; bash reads the script back whole.
    let script = std::process::Command::new(bin)
        .args(["completions", "bash"])
        .output()
        .unwrap();
    assert!(script.status.success());
    let script = String::from_utf8(script.stdout).unwrap();
    for command in ["status", "plan", "up", "backup", "database", "completions"] {
        assert!(script.contains(command), "bash completions lack {command}");
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("waymark.bash");
    std::fs::write(&path, &script).unwrap();
    let checked = std::process::Command::new("bash")
        .arg("-n")
        .arg(&path)
        .output()
        .unwrap();
    assert!(checked.status.success(), "{}", String::from_utf8_lossy(&checked.stderr));
    let bad = std::process::Command::new(bin)
        .args(["completions", "tcsh"])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));

    // The manual: one page on stdout, or one per command in a folder.
    let page = std::process::Command::new(bin).arg("man").output().unwrap();
    let page = String::from_utf8(page.stdout).unwrap();
    assert!(
        page.starts_with(".ie \\n(.g .ds Aq") || page.contains(".TH waymark 1"),
        "{page}"
    );
    assert!(page.contains("database"), "the page lists the commands");
    let folder = dir.path().join("man1");
    let written = std::process::Command::new(bin)
        .args(["man", "--out"])
        .arg(&folder)
        .output()
        .unwrap();
    assert!(written.status.success());
    for name in [
        "waymark.1",
        "waymark-up.1",
        "waymark-backup-create.1",
        "waymark-database-drop.1",
    ] {
        let text = std::fs::read_to_string(folder.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(text.contains(".TH"), "{name}");
    }
}

#[test]
fn a_long_migration_is_shown_while_it_runs() {
    let db = TestDb::new(Kind::Postgres);
    let p = Project::new();
    p.migration("1_fast", "CREATE TABLE fast (id INTEGER);", Some("DROP TABLE fast;"));
    p.migration("2_slow", "SELECT pg_sleep(5.5);", Some("SELECT 1;"));

    // On a terminal (`script` gives the command one and copies what it
    // drew): a bar over the batch, the running migration, its seconds.
    let drawn = p.drawn_on_a_terminal(Some(&db.url), "up");
    let seconds: Vec<f64> = drawn
        .split(['\r', '\n'])
        .filter_map(|l| l.split_once("] 1/2 applying 2_slow (")?.1.split_once(" s)"))
        .map(|(secs, _)| secs.parse().unwrap())
        .collect();
    assert!(seconds.len() >= 5, "a frame at least each second: {drawn}");
    assert!(seconds.windows(2).all(|w| w[0] <= w[1]), "{seconds:?}");
    assert!(*seconds.last().unwrap() >= 4.0, "{seconds:?}");
    // The bar goes before the summary, which is the last thing printed.
    let summary = drawn.rfind("applied 2 migration(s)").expect(&drawn);
    assert!(!drawn[summary..].contains("applying"), "{drawn}");

    // Elsewhere: a line once it has run 5 s, none for the quick one.
    p.run(&db, &["down", "--all"]).ok();
    let run = p.run(&db, &["up"]).ok().stderr_has("still applying 2_slow (2/2): 5 s");
    assert!(!run.stderr.contains("still applying 1_fast"), "{}", run.stderr);
    assert_eq!(db.history().len(), 2);
}

#[test]
fn backup_create_and_list_count_a_set_alike() {
    let db = TestDb::new(Kind::Sqlite);
    let p = Project::new();
    p.migration("1_t", "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT);", None);
    p.run(&db, &["up"]).ok();
    db.execute("INSERT INTO t (v) VALUES ('a'), ('b')");
    let created = p.run(&db, &["backup", "create", "--json"]).ok().json();
    let listed = p.run(&db, &["backup", "list", "--json"]).ok().json();
    assert_eq!(listed["backups"][0]["id"], created["id"]);
    assert_eq!(listed["backups"][0]["bytes"], created["bytes"], "{created}\n{listed}");
    // And both are the folder's bytes, the manifest's included.
    let dir = p.dir.path().join(created["dir"].as_str().unwrap());
    let manifest = std::fs::metadata(dir.join("manifest.json")).unwrap().len();
    assert!(created["bytes"].as_u64().unwrap() > manifest);
}

#[test]
fn help_names_each_variable_without_a_stray_equals_sign() {
    for args in [&["--help"][..], &["fleet", "up", "--help"]] {
        let help = std::process::Command::new(crate::common::BIN)
            .args(args)
            .env_remove("DATABASE_URL")
            .output()
            .unwrap();
        // As one line: clap wraps the text at any space.
        let help = String::from_utf8(help.stdout)
            .unwrap()
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        assert!(!help.contains("=]"), "{help}");
        for variable in ["DATABASE_URL", "WAYMARK_MIGRATIONS", "WAYMARK_CONNECT_TIMEOUT"] {
            assert!(help.contains(&format!("[env: {variable}]")), "{variable}: {help}");
        }
        // Every exit code the binary uses is listed.
        if args[0] == "--help" {
            assert!(
                help.contains("6 a lint error not allowed, 7 a rehearsal's verdict failed"),
                "{help}"
            );
        }
    }
}

#[test]
fn plugin_test_names_the_users_own_step_file() {
    let db = TestDb::new(Kind::Sqlite);
    let p = Project::new();
    let pin = "0".repeat(64);
    p.file(
        "example/step.toml",
        format!("component = \"nope.wasm\"\nsha256 = \"{pin}\"\n[permisions]\nwrite = [\"a\"]\n"),
    );
    let run = p.run(&db, &["plugin", "test", "example"]).code(2);
    let run = run.stderr_has("error: example/step.toml: TOML parse error at line 4");
    assert!(!run.stderr.contains("1_plugin_test"), "{}", run.stderr);
    assert!(
        !run.stderr.contains(std::env::temp_dir().to_str().unwrap()),
        "{}",
        run.stderr
    );
    // Without a pin, the test pins what is built; with nothing built, it
    // names the component it looked for.
    p.file("example/step.toml", "component = \"target/none.wasm\"\n");
    p.run(&db, &["plugin", "test", "example"])
        .code(2)
        .stderr_has("example: component ")
        .stderr_has("example/target/none.wasm: No such file or directory");
}

#[test]
fn the_ci_template_runs_only_what_waymark_accepts() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let template = std::fs::read_to_string(root.join("docs/ci/github-actions.yml")).unwrap();
    let commands: Vec<Vec<&str>> = template
        .lines()
        .map(|l| l.trim().trim_start_matches("run: "))
        .filter_map(|l| l.strip_prefix("waymark "))
        .map(|l| {
            l.split_whitespace()
                .take_while(|word| !matches!(*word, ">" | "|" | "&&" | "2>&1"))
                .collect()
        })
        .collect();
    assert!(commands.len() >= 7, "the template lost its commands: {commands:?}");
    for args in commands {
        // clap checks every flag and value before it prints the help.
        let run = std::process::Command::new(crate::common::BIN)
            .args(&args)
            .arg("--help")
            .output()
            .unwrap();
        assert!(
            run.status.success(),
            "waymark {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&run.stderr)
        );
    }
}

/// The README's "Your first migration", run as written: after the
/// quickstart's `up` of the bundled migrations, each `waymark` line in
/// order, the SQL block split into the new migration's two files.
#[test]
fn the_readmes_first_migration_works_as_written() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let section = readme
        .split_once("### Your first migration")
        .and_then(|(_, rest)| rest.split_once("**On PostgreSQL"))
        .expect("the README has its first migration")
        .0;
    let mut commands = Vec::new();
    let mut sql = String::new();
    let mut block: Option<&str> = None;
    for line in section.lines() {
        match (line.strip_prefix("```"), block) {
            (Some(kind), None) => block = Some(kind),
            (Some(_), Some(_)) => block = None,
            (None, Some("sh")) => {
                let command = line.split(" #").next().unwrap().trim();
                commands.push(command.strip_prefix("waymark ").expect(line).to_owned());
            }
            (None, Some("sql")) => sql.push_str(&format!("{line}\n")),
            _ => {}
        }
    }
    let (up, down) = sql.split_once("-- down.sql").expect("the SQL block has both files");

    let db = TestDb::new(Kind::Sqlite);
    let p = Project::new();
    for bundled in crate::common::names_in(&root.join("migrations")) {
        for file in ["up.sql", "down.sql"] {
            let text = std::fs::read_to_string(root.join("migrations").join(&bundled).join(file)).unwrap();
            p.file(&format!("migrations/{bundled}/{file}"), text);
        }
    }
    p.run(&db, &["up"]).ok();
    let (first, rest) = commands.split_first().expect("the section has commands");
    assert!(first.starts_with("new "), "{first}");
    let made = p.run(&db, &first.split_whitespace().collect::<Vec<_>>()).ok();
    let up_path = made.stdout.lines().find(|l| l.ends_with("up.sql")).unwrap();
    std::fs::write(p.dir.path().join(up_path), up).unwrap();
    std::fs::write(p.dir.path().join(up_path.replace("up.sql", "down.sql")), down).unwrap();
    assert_eq!(rest.len(), 4, "{rest:?}");
    for command in rest {
        p.run(&db, &command.split_whitespace().collect::<Vec<_>>()).ok();
        if command == "up" {
            assert!(db.tables().contains(&"teams".to_owned()), "{:?}", db.tables());
        }
    }
    assert!(!db.tables().contains(&"teams".to_owned()), "down reverted it");
    assert_eq!(db.history().len(), 3);
}
