//! The crash matrix: a runner stopped dead (`abort`, as `kill -9` would) at
//! each of waymark's crash points (`waymark_db::crash_point`), then the
//! same command run again. The result must be a clean run's: the same
//! schema, rows and history, waymark's own tables as they would be, no
//! stray files, and the lock free.
//!
//! Where waymark cannot converge by itself, the matrix asserts what it
//! promises instead: MySQL/MariaDB commits DDL as it runs, so a runner
//! killed inside such a migration leaves it `running`, and the next run
//! stops, names it and says how to repair; a restore into a database that
//! it half-filled is refused, naming what is there.
//!
//! `docs/RELIABILITY.md` counts the points and runs.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use crate::common::{Kind, Project, Run, TestDb};

/// A command run with one crash point armed: `hit` is how many times the
/// point is passed before the crash (0: the first time).
fn crashed(p: &Project, db: &TestDb, args: &[&str], point: &str, hit: u32) -> Run {
    let armed = match hit {
        0 => format!("{point}=return"),
        n => format!("{point}={n}*off->return"),
    };
    let run = Run::from(
        p.command(db, args)
            .env("FAILPOINTS", armed)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .output()
            .unwrap(),
    );
    // Killed by SIGABRT: no exit code. A run that exited never reached
    // the point, and the case would prove nothing.
    assert!(
        run.code == -1 && run.stderr.contains(&format!("crash point {point} reached")),
        "{args:?} never reached {point} (hit {hit}); it exited {}:\n{}",
        run.code,
        run.stderr
    );
    run
}

/// What must be the same after a crash and a second run as after one
/// clean run.
#[derive(Debug, PartialEq)]
struct State {
    schema: String,
    rows: Vec<Vec<Vec<Option<String>>>>,
    history: Vec<(String, String)>,
    /// waymark's own tables (pre-image copies among them), by name.
    own_tables: Vec<String>,
    /// The schema versions waymark's tables were brought through.
    schema_versions: Vec<Vec<Option<String>>>,
    /// The audit log's actions, in order.
    audit: Vec<Vec<Option<String>>>,
    /// Every file under the project but its migrations, backups by kind.
    files: Vec<String>,
}

fn state(db: &TestDb, p: &Project) -> State {
    let tables = db.tables();
    let rows = tables
        .iter()
        .map(|t| {
            let columns: Vec<String> = db
                .rows(&column_names(db.kind, t))
                .into_iter()
                .map(|r| db.text(&r[0].clone().unwrap()))
                .collect();
            db.rows(&format!("SELECT {} FROM {t} ORDER BY 1", columns.join(", ")))
        })
        .collect();
    let own = match db.kind {
        Kind::Postgres => {
            "SELECT table_name::text FROM information_schema.tables WHERE table_schema = 'public' \
             AND table_name LIKE 'waymark%' ORDER BY 1"
        }
        Kind::Mysql => {
            "SELECT CAST(table_name AS CHAR) FROM information_schema.tables WHERE table_schema = DATABASE() \
             AND table_name LIKE 'waymark%' ORDER BY 1"
        }
        Kind::Sqlite => "SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE 'waymark%' ORDER BY 1",
    };
    // Pre-image copies are named by the time they were taken; only how
    // many there are, and of what, can match another run's.
    let own_tables: Vec<String> = db
        .rows(own)
        .into_iter()
        .filter_map(|r| r.into_iter().next().flatten())
        .map(|t| match t.find("_pre_") {
            Some(i) => format!("{}_pre_*", &t[..i]),
            None => t,
        })
        .collect();
    let own_rows = |sql: &str| {
        if own_tables.iter().any(|t: &String| sql.contains(&format!(" FROM {t} "))) {
            db.rows(sql)
        } else {
            Vec::new()
        }
    };
    State {
        schema: db.snapshot(),
        rows,
        history: db.history(),
        schema_versions: own_rows(&format!(
            "SELECT {} FROM waymark_history_schema ORDER BY 1",
            db.text("version")
        )),
        audit: own_rows("SELECT action, version FROM waymark_history_audit ORDER BY id"),
        own_tables,
        files: files(p.dir.path()),
    }
}

fn column_names(kind: Kind, table: &str) -> String {
    match kind {
        Kind::Postgres => format!(
            "SELECT column_name::text FROM information_schema.columns WHERE table_schema = 'public' \
             AND table_name = '{table}' ORDER BY ordinal_position"
        ),
        Kind::Mysql => format!(
            "SELECT CAST(column_name AS CHAR) FROM information_schema.columns WHERE table_schema = DATABASE() \
             AND table_name = '{table}' ORDER BY ordinal_position"
        ),
        Kind::Sqlite => format!("SELECT name FROM pragma_table_info('{table}') ORDER BY cid"),
    }
}

/// The project's files, the migrations aside; a backup set's id (its
/// time) is written as `SET`, so that two runs' sets compare.
fn files(root: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let mut stack: Vec<PathBuf> = vec![root.to_owned()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            let relative = path.strip_prefix(root).unwrap().to_string_lossy().into_owned();
            if relative == "migrations" {
                continue;
            }
            let mut parts: Vec<&str> = relative.split('/').collect();
            if parts.len() > 1 && parts[0] == "backups" && !parts[1].starts_with('.') {
                parts[1] = "SET";
            }
            found.push(parts.join("/"));
            if path.is_dir() {
                stack.push(path);
            }
        }
    }
    found.sort();
    found.dedup();
    found
}

/// The state one run of `args` leaves on a fresh database.
fn clean_run(p: &Project, kind: Kind, args: &[&str]) -> State {
    let db = TestDb::new(kind);
    p.run(&db, args).ok();
    state(&db, p)
}

/// The lock is free: another runner takes it at once (and may then
/// refuse for a migration left `running`, or apply one: this is the last
/// look at each case's database).
#[track_caller]
fn lock_is_free(p: &Project, db: &TestDb) {
    let run = p.run(db, &["up", "--lock-timeout", "2s"]);
    assert!(
        run.code != 4 && !run.stderr.contains("could not get the migration lock"),
        "the lock is still held:\n{}",
        run.stderr
    );
}

fn project() -> Project {
    let p = Project::new();
    p.migration(
        "1_accounts",
        "CREATE TABLE accounts (id INTEGER PRIMARY KEY, name VARCHAR(40) NOT NULL, balance INTEGER NOT NULL);\n\
         INSERT INTO accounts VALUES (1, 'ada', 10), (2, 'bob', 20), (3, 'cy', 30);\n\
         UPDATE accounts SET balance = balance + 1;\n",
        Some("DROP TABLE accounts;"),
    );
    p.migration(
        "2_notes",
        "CREATE TABLE notes (id INTEGER PRIMARY KEY, account_id INTEGER NOT NULL, body VARCHAR(80));\n\
         INSERT INTO notes VALUES (1, 1, 'first'), (2, 3, 'second');\n",
        Some("DROP TABLE notes;"),
    );
    // Dropping a column with rows in it keeps a copy for `down`.
    p.migration(
        "3_drop_body",
        "ALTER TABLE notes DROP COLUMN body;\n",
        Some("ALTER TABLE notes ADD COLUMN body VARCHAR(80);"),
    );
    p
}

/// A migration that applies, then one that fails outside a transaction
/// after a statement that stays: `failed` is recorded after `running`.
fn failing_project() -> Project {
    let p = Project::new();
    p.migration("1_ok", "CREATE TABLE ok (id INTEGER);", None);
    p.migration(
        "2_bad",
        "-- no-transaction\nCREATE TABLE half (id INTEGER);\nINSERT INTO missing VALUES (1);\n",
        None,
    );
    p
}

/// Where `up` can be stopped: each point, and how many times it is passed
/// first. MySQL/MariaDB runs the six statements one by one; in a
/// transaction the SQL step sends each script in one round trip (three).
fn up_points(kind: Kind) -> Vec<(&'static str, u32)> {
    let mut points = vec![
        ("lock-taken", 0),
        ("preimage-copied", 0),
        ("preimage-kept", 0),
        ("before-lock-release", 0),
    ];
    let statements = if kind == Kind::Mysql { 6 } else { 3 };
    points.extend((0..statements).map(|hit| ("statement-done", hit)));
    let per_migration: &[&str] = match kind {
        Kind::Mysql => &[
            "recorded-running-before-commit",
            "recorded-running-committed",
            "recorded-step-done",
            "recorded-finished",
        ],
        _ => &["atomic-step-done", "atomic-committed"],
    };
    for point in per_migration {
        points.extend((0..3).map(|hit| (*point, hit)));
    }
    points
}

/// Whether a crash at this point of `up` leaves a migration `running` on
/// MySQL/MariaDB: its DDL committed as it ran, so no run can tell how far
/// it got.
fn leaves_running(kind: Kind, point: &str) -> bool {
    kind == Kind::Mysql
        && matches!(
            point,
            "recorded-running-committed"
                | "recorded-step-done"
                | "statement-done"
                | "preimage-copied"
                | "preimage-kept"
        )
}

fn crash_during_up(kind: Kind) {
    let p = project();
    let clean = clean_run(&p, kind, &["up"]);
    assert_eq!(clean.history.len(), 3);
    assert!(clean.own_tables.iter().any(|t| t.ends_with("_pre_*")), "{clean:?}");
    let points = up_points(kind);
    for &(point, hit) in &points {
        let db = TestDb::new(kind);
        crashed(&p, &db, &["up"], point, hit);
        let again = p.run(&db, &["up"]);
        if leaves_running(kind, point) {
            let again = again.code(1);
            assert!(
                again
                    .stderr
                    .contains("was interrupted while running outside a transaction")
                    && again.stderr.contains("waymark repair"),
                "{point} (hit {hit}):\n{}",
                again.stderr
            );
            let history = db.history();
            let running: Vec<&(String, String)> = history.iter().filter(|(_, s)| s == "running").collect();
            assert_eq!(running.len(), 1, "{point} (hit {hit}): {history:?}");
            assert!(history.iter().all(|(_, s)| s == "running" || s == "applied"));
            // Stopped while keeping the copy, before the migration's own
            // statements: nothing to undo by hand, and the repair the
            // message names, then `up`, give the clean result.
            if point.starts_with("preimage-") {
                p.run(&db, &["repair", "--rolled-back"]).ok();
                p.run(&db, &["up"]).ok();
                let mut after = state(&db, &p);
                // The repair's audit entry is the one difference.
                after.audit.retain(|a| a[0].as_deref() != Some("rolled-back"));
                assert_eq!(after, clean, "{point} (hit {hit}), repaired");
            }
        } else {
            again.ok();
            assert_eq!(state(&db, &p), clean, "{point} (hit {hit})");
        }
        lock_is_free(&p, &db);
    }
    if kind == Kind::Mysql {
        // MySQL/MariaDB cannot roll DDL back: it has no single transaction.
        return;
    }
    let single = ["up", "--single-transaction"];
    for (point, hit) in [
        ("statement-done", 1),
        ("single-transaction-before-commit", 0),
        ("single-transaction-committed", 0),
    ] {
        let db = TestDb::new(kind);
        crashed(&p, &db, &single, point, hit);
        p.run(&db, &single).ok();
        assert_eq!(state(&db, &p), clean, "--single-transaction, {point} (hit {hit})");
        lock_is_free(&p, &db);
    }
}

/// `down` of the migration that dropped a column: the column is made
/// again and the copy's values put back.
fn crash_during_down(kind: Kind) {
    let p = project();
    let clean = {
        let db = TestDb::new(kind);
        p.run(&db, &["up"]).ok();
        p.run(&db, &["down", "--to", "2"]).ok();
        state(&db, &p)
    };
    assert_eq!(clean.history.len(), 2);
    assert_eq!(clean.rows[1][0][2].as_deref(), Some("first"), "{clean:?}");
    let mut points = vec![
        ("statement-done", 0),
        ("preimage-written-back", 0),
        ("preimage-discarded", 0),
    ];
    points.push(match kind {
        Kind::Mysql => ("recorded-finished", 0),
        _ => ("atomic-committed", 0),
    });
    for (point, hit) in points {
        let db = TestDb::new(kind);
        p.run(&db, &["up"]).ok();
        // `--to`: run again, it reverts what is left, never one more.
        crashed(&p, &db, &["down", "--to", "2"], point, hit);
        let again = p.run(&db, &["down", "--to", "2"]);
        if kind == Kind::Mysql && point != "recorded-finished" {
            let again = again.code(1);
            assert!(
                again.stderr.contains("migration 3_drop_body") && again.stderr.contains("waymark repair"),
                "{point}:\n{}",
                again.stderr
            );
            assert!(
                db.history().contains(&("3".to_owned(), "running".to_owned())),
                "{point}: {:?}",
                db.history()
            );
        } else {
            again.ok();
            assert_eq!(state(&db, &p), clean, "{point} (hit {hit})");
        }
        lock_is_free(&p, &db);
    }
}

/// `backup create`: a set is complete only once its manifest is in place;
/// what a killed run left is removed by the next, which writes its own.
fn crash_during_backup(kind: Kind) {
    let p = project();
    p.file("waymark.toml", "[backup]\nchunk_kib = 1\n");
    let clean = {
        let db = TestDb::new(kind);
        p.run(&db, &["up"]).ok();
        p.run(&db, &["backup", "create"]).ok();
        let state = state(&db, &p);
        std::fs::remove_dir_all(p.dir.path().join("backups")).unwrap();
        state
    };
    for (point, hit) in [
        ("backup-schema-written", 0),
        ("backup-chunk-written", 0),
        ("backup-chunk-written", 2),
        ("backup-manifest-before-rename", 0),
        ("backup-manifest-written", 0),
    ] {
        let db = TestDb::new(kind);
        p.run(&db, &["up"]).ok();
        crashed(&p, &db, &["backup", "create"], point, hit);
        let again = p.run(&db, &["backup", "create"]).ok();
        let listed = p.run(&db, &["backup", "list", "--json"]).ok().json();
        let sets = listed["backups"].as_array().unwrap();
        if point == "backup-manifest-written" {
            // The first set was complete: two sets, both whole.
            assert_eq!(sets.len(), 2, "{listed}");
        } else {
            assert!(
                again.stderr.contains("removed the unfinished backup"),
                "{point} (hit {hit}):\n{}",
                again.stderr
            );
            assert_eq!(sets.len(), 1, "{point} (hit {hit}): {listed}");
            assert_eq!(state(&db, &p), clean, "{point} (hit {hit})");
        }
        assert!(sets.iter().all(|s| s["complete"] == true), "{listed}");
        let stray: Vec<String> = files(p.dir.path())
            .into_iter()
            .filter(|f| f.starts_with("backups/.") || f.ends_with(".tmp"))
            .collect();
        assert!(stray.is_empty(), "{point} (hit {hit}): {stray:?}");
        for set in sets {
            let dir = p.dir.path().join("backups").join(set["id"].as_str().unwrap());
            p.run(&db, &["backup", "verify", "--deep", dir.to_str().unwrap()]).ok();
        }
        std::fs::remove_dir_all(p.dir.path().join("backups")).unwrap();
    }
}

/// `backup restore`: a restore stopped part-way leaves a database that
/// holds some of the set; the next restore into it is refused, naming
/// what is there, and one into an empty database gives the clean result.
fn crash_during_restore(kind: Kind) {
    let p = project();
    let source = TestDb::new(kind);
    p.run(&source, &["up"]).ok();
    let created = p.run(&source, &["backup", "create", "--json"]).ok().json();
    let set = created["dir"].as_str().unwrap().to_owned();
    let clean = {
        let db = TestDb::new(kind);
        p.run(&db, &["backup", "restore", "--to", &db.url, &set]).ok();
        state(&db, &p)
    };
    for point in [
        "restore-tables-made",
        "restore-rows-loaded",
        "restore-indexes-built",
        "restore-checked",
    ] {
        let db = TestDb::new(kind);
        let restore = ["backup", "restore", "--to", &db.url, &set];
        crashed(&p, &db, &restore, point, 0);
        let before = state(&db, &p);
        p.run(&db, &restore)
            .code(1)
            .stderr_has("restore needs an empty database");
        assert_eq!(state(&db, &p), before, "{point}: the refusal changed nothing");
        let fresh = TestDb::new(kind);
        p.run(&fresh, &["backup", "restore", "--to", &fresh.url, &set]).ok();
        assert_eq!(state(&fresh, &p), clean, "{point}");
    }
}

/// A migration that fails outside a transaction: `failed` is recorded
/// after its `running` row. Run again, the clean run refuses it as
/// failed; a run killed before `failed` was written leaves it `running`,
/// which the next run refuses as interrupted.
fn crash_while_recording_a_failure(kind: Kind) {
    let p = failing_project();
    let (clean, clean_again) = {
        let db = TestDb::new(kind);
        p.run(&db, &["up"]).code(1);
        let state = state(&db, &p);
        // MySQL names a table with its database's name.
        (state, p.run(&db, &["up"]).code(1).stderr.replace(db.name(), "DB"))
    };
    assert_eq!(
        clean.history,
        [
            ("1".to_owned(), "applied".to_owned()),
            ("2".to_owned(), "failed".to_owned())
        ]
    );
    for point in ["recorded-failed-before-record", "recorded-failed-committed"] {
        let db = TestDb::new(kind);
        crashed(&p, &db, &["up"], point, 0);
        let again = p.run(&db, &["up"]).code(1);
        if point == "recorded-failed-committed" {
            assert_eq!(state(&db, &p), clean, "{point}");
            assert_eq!(again.stderr.replace(db.name(), "DB"), clean_again, "{point}");
        } else {
            again.stderr_has("migration 2_bad was interrupted while running outside a transaction");
            assert_eq!(db.history()[1], ("2".to_owned(), "running".to_owned()));
        }
        lock_is_free(&p, &db);
    }
}

/// An expand whose backfill commits in batches, each with its checkpoint:
/// killed before or after any commit, the next `up` resumes from the last
/// checkpoint and ends as a clean run does.
#[test]
fn crash_during_a_backfill_postgres() {
    let kind = Kind::Postgres;
    let p = Project::new();
    p.migration(
        "1_accounts",
        "CREATE TABLE accounts (id INTEGER PRIMARY KEY, name TEXT NOT NULL, balance INTEGER NOT NULL);\n\
         INSERT INTO accounts SELECT g, 'n' || g, g FROM generate_series(1, 1000) g;\n",
        None,
    );
    p.file(
        "migrations/2_money/ops.toml",
        "[backfill]\nbatch_size = 100\n\n[[op]]\nop = \"alter_type\"\ntable = \"accounts\"\ncolumn = \"balance\"\n\
         type = \"numeric(12,2)\"\nup = \"balance::numeric(12,2)\"\ndown = \"round(balance)::integer\"\n",
    );
    let clean = clean_run(&p, kind, &["up"]);
    assert_eq!(clean.history[1], ("2".to_owned(), "expanded".to_owned()));
    for (point, hit) in [
        ("batch-before-commit", 0),
        ("batch-committed", 0),
        ("batch-before-commit", 4),
        ("batch-committed", 4),
    ] {
        let db = TestDb::new(kind);
        crashed(&p, &db, &["up"], point, hit);
        p.run(&db, &["up"]).ok();
        assert_eq!(state(&db, &p), clean, "{point} (hit {hit})");
        lock_is_free(&p, &db);
    }
}

/// SQLite's copy of pages: a create killed part-way is removed by the
/// next; a restore killed before its file took the target's name leaves
/// only its temporary file, which the next restore removes (its lock is
/// free) before writing its own; one killed after is refused, as the
/// target then holds the database.
#[test]
fn crash_during_a_copy_of_pages_sqlite() {
    let kind = Kind::Sqlite;
    let p = project();
    let source = TestDb::new(kind);
    p.run(&source, &["up"]).ok();
    for (point, hit) in [("backup-manifest-before-rename", 0), ("backup-manifest-written", 0)] {
        crashed(&p, &source, &["backup", "create", "--pages"], point, hit);
        p.run(&source, &["backup", "create", "--pages"]).ok();
        let listed = p.run(&source, &["backup", "list", "--json"]).ok().json();
        let sets = listed["backups"].as_array().unwrap();
        let whole = if point == "backup-manifest-written" { 2 } else { 1 };
        assert_eq!(sets.len(), whole, "{point}: {listed}");
        assert!(
            sets.iter().all(|s| s["complete"] == true && s["kind"] == "pages"),
            "{listed}"
        );
        std::fs::remove_dir_all(p.dir.path().join("backups")).unwrap();
    }
    // A database in WAL mode is copied by `VACUUM INTO` a file in the set,
    // as big as the database: a run stopped after it leaves that file,
    // which the next run removes with the rest of the unfinished set.
    let wal = TestDb::new(kind);
    p.run(&wal, &["up"]).ok();
    wal.execute("PRAGMA journal_mode = WAL");
    crashed(&p, &wal, &["backup", "create", "--pages"], "pages-vacuumed", 0);
    p.run(&wal, &["backup", "create", "--pages"])
        .ok()
        .stderr_has("removed the unfinished backup");
    let left = files(p.dir.path());
    assert!(!left.iter().any(|f| f.ends_with("pages.vacuum")), "{left:?}");
    let listed = p.run(&wal, &["backup", "list", "--json"]).ok().json();
    assert_eq!(listed["backups"].as_array().unwrap().len(), 1, "{listed}");
    std::fs::remove_dir_all(p.dir.path().join("backups")).unwrap();

    let created = p.run(&source, &["backup", "create", "--pages", "--json"]).ok().json();
    let set = created["dir"].as_str().unwrap().to_owned();
    let folder = tempfile::tempdir().unwrap();
    for point in ["pages-restore-checked", "pages-restore-placed"] {
        let target = folder.path().join(format!("{point}.db"));
        let url = format!("sqlite://{}", target.display());
        let restore = ["backup", "restore", &set, "--to", &url];
        crashed(&p, &source, &restore, point, 0);
        let again = p.run(&source, &restore);
        if point == "pages-restore-checked" {
            again.ok().stderr_has("left by a restore that stopped");
        } else {
            again.code(1).stderr_has("restore needs a new (or empty) file");
        }
        assert_eq!(
            std::fs::read(&target).unwrap(),
            std::fs::read(source.url.strip_prefix("sqlite://").unwrap()).unwrap(),
            "{point}: the restored file is the source's, byte for byte"
        );
        let mut left: Vec<String> = std::fs::read_dir(folder.path())
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(point))
            .collect();
        left.sort();
        assert_eq!(left, [format!("{point}.db")], "{point}: nothing else is left");
    }
}

/// waymark's own tables, made on a database's first `up` and brought
/// through each schema version: killed after any version's step, before
/// or after its version row is written, the next run finishes the
/// upgrade. MySQL/MariaDB commits the step without its row, and the next
/// run does the step again, which each step allows.
fn crash_during_first_use(kind: Kind) {
    let p = project();
    let clean = clean_run(&p, kind, &["up"]);
    let versions = clean.schema_versions.len() as u32;
    assert!(versions >= 3, "{clean:?}");
    for point in ["schema-step-done", "schema-version-recorded", "schema-upgraded"] {
        for hit in 0..versions {
            let db = TestDb::new(kind);
            crashed(&p, &db, &["up"], point, hit);
            p.run(&db, &["up"]).ok();
            assert_eq!(state(&db, &p), clean, "{point} (hit {hit})");
            lock_is_free(&p, &db);
        }
    }
}

/// `repair --rolled-back`: the forgotten record and its audit entry go in
/// one transaction. Killed before the commit, the next repair does it
/// all; killed after, the next finds nothing left to repair.
fn crash_during_repair(kind: Kind) {
    let p = failing_project();
    let repair = ["repair", "--rolled-back"];
    let clean = {
        let db = TestDb::new(kind);
        p.run(&db, &["up"]).code(1);
        p.run(&db, &repair).ok();
        state(&db, &p)
    };
    assert_eq!(clean.history, [("1".to_owned(), "applied".to_owned())]);
    assert_eq!(clean.audit, [[Some("rolled-back".to_owned()), Some("2".to_owned())]]);
    for point in ["repair-recorded", "repair-committed"] {
        let db = TestDb::new(kind);
        p.run(&db, &["up"]).code(1);
        crashed(&p, &db, &repair, point, 0);
        let again = p.run(&db, &repair).ok();
        if point == "repair-committed" {
            again.stderr_has("nothing to repair");
        }
        assert_eq!(state(&db, &p), clean, "{point}");
        lock_is_free(&p, &db);
    }
}

/// `baseline`: every row and its audit entry in one transaction. Killed
/// before the commit, the next baseline records them all; killed after,
/// the next is refused, the history being there.
fn crash_during_baseline(kind: Kind) {
    let p = project();
    let baseline = ["baseline", "2"];
    let clean = clean_run(&p, kind, &baseline);
    assert_eq!(clean.history.len(), 2, "{clean:?}");
    assert_eq!(clean.audit.len(), 2, "{clean:?}");
    for point in ["baseline-recorded", "baseline-committed"] {
        let db = TestDb::new(kind);
        crashed(&p, &db, &baseline, point, 0);
        let again = p.run(&db, &baseline);
        if point == "baseline-committed" {
            again
                .code(1)
                .stderr_has("cannot baseline: the history table already records 2 migration(s)");
        } else {
            again.ok();
        }
        assert_eq!(state(&db, &p), clean, "{point}");
        lock_is_free(&p, &db);
    }
}

/// `redo` of the migration that dropped a column: killed after its down
/// committed, the next `redo` applies that migration again and reverts
/// nothing more (it used to revert the one before it too); killed after
/// its up, the next redoes it once more. Either way the end is a clean
/// redo's, and a later `redo` redoes the newest migration as always.
fn crash_during_redo(kind: Kind) {
    let p = project();
    let clean = {
        let db = TestDb::new(kind);
        p.run(&db, &["up"]).ok();
        p.run(&db, &["redo"]).ok();
        state(&db, &p)
    };
    assert_eq!(clean.history.len(), 3);
    let finished = match kind {
        Kind::Mysql => "recorded-finished",
        _ => "atomic-committed",
    };
    for (point, hit) in [("redo-reverted", 0), (finished, 1)] {
        let db = TestDb::new(kind);
        p.run(&db, &["up"]).ok();
        crashed(&p, &db, &["redo"], point, hit);
        let again = p.run(&db, &["redo"]).ok();
        let mut after = state(&db, &p);
        if point == "redo-reverted" {
            again.stderr_has("the last redo of 3_drop_body stopped after reverting it");
            assert_eq!(after, clean, "{point}");
        } else {
            // Redone twice: two pairs of audit entries where a clean run has one.
            assert_eq!(after.audit.len(), clean.audit.len() * 2, "{after:?}");
            after.audit.truncate(clean.audit.len());
            assert_eq!(after, clean, "{point} (hit {hit})");
        }
        let redone = p.run(&db, &["redo", "--json"]).ok().json();
        assert_eq!(redone["done"].as_array().unwrap().len(), 2, "{redone}");
        assert_eq!(db.history().len(), 3);
        lock_is_free(&p, &db);
    }
}

/// `up --backup` killed after its backup and before the first migration:
/// the next takes a backup of its own and applies them all; both sets are
/// whole.
fn crash_after_the_backup_of_up(kind: Kind) {
    let p = project();
    let up = ["up", "--backup"];
    let clean = {
        let db = TestDb::new(kind);
        p.run(&db, &up).ok();
        let state = state(&db, &p);
        std::fs::remove_dir_all(p.dir.path().join("backups")).unwrap();
        state
    };
    let db = TestDb::new(kind);
    crashed(&p, &db, &up, "backed-up-before-up", 0);
    p.run(&db, &up).ok();
    assert_eq!(state(&db, &p), clean);
    let listed = p.run(&db, &["backup", "list", "--json"]).ok().json();
    let sets = listed["backups"].as_array().unwrap();
    assert_eq!(sets.len(), 2, "{listed}");
    assert!(sets.iter().all(|s| s["complete"] == true), "{listed}");
    lock_is_free(&p, &db);
}

/// `fleet up` killed after any target of a wave, or after a wave and
/// before its gate: run again, each target ends as a plain `up` leaves
/// it, and the first wave's gate is run (again) before the second wave.
#[test]
fn crash_during_a_fleet_rollout() {
    let p = project();
    let clean = clean_run(&p, Kind::Sqlite, &["up"]);
    let gate_log = p.dir.path().join("gate.log");
    for (point, hit) in [
        ("fleet-target-done", 0),
        ("fleet-target-done", 1),
        ("fleet-wave-done", 0),
        ("fleet-wave-done", 1),
        ("fleet-gate-done", 0),
    ] {
        let dbs: Vec<TestDb> = (0..3).map(|_| TestDb::new(Kind::Sqlite)).collect();
        let mut file = String::new();
        for (i, db) in dbs.iter().enumerate() {
            let tier = if i == 0 { "canary" } else { "rest" };
            file += &format!(
                "[[target]]\nname = \"t{i}\"\nurl = \"{}\"\nlabels = {{ tier = \"{tier}\" }}\n\n",
                db.url
            );
        }
        file += "[[wave]]\nname = \"canary\"\nselect = { tier = \"canary\" }\n\
                 gate = { check = \"echo gate >> gate.log\" }\n\n\
                 [[wave]]\nname = \"rest\"\nselect = \"*\"\n";
        p.file("fleet.toml", &file);
        crashed(&p, &dbs[0], &["fleet", "up"], point, hit);
        let _ = std::fs::remove_file(&gate_log);
        p.run(&dbs[0], &["fleet", "up"]).ok();
        for db in &dbs {
            // Beyond a plain `up`'s files: the fleet file and the gate's log.
            let mut after = state(db, &p);
            after.files.retain(|f| f != "gate.log" && f != "fleet.toml");
            assert_eq!(after, clean, "{point} (hit {hit})");
        }
        let gates = std::fs::read_to_string(&gate_log).unwrap_or_default();
        assert_eq!(
            gates, "gate\n",
            "{point} (hit {hit}): the second run runs the gate once"
        );
    }
}

crate::common::each_dialect!(
    crash_during_first_use,
    crash_during_repair,
    crash_during_baseline,
    crash_during_redo,
    crash_after_the_backup_of_up,
    crash_while_recording_a_failure,
    crash_during_up,
    crash_during_down,
    crash_during_backup,
    crash_during_restore
);
