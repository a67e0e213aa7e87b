//! A real project's history, as it is: crates.io's 285 diesel migrations
//! (`../shared/corpora/crates-io`, never edited), applied by waymark with
//! the default settings and by psql in diesel's order, compared schema for
//! schema; reverted as far as its `down.sql` files allow and applied again.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::{Kind, Project, TestDb};

/// The corpora: `WAYMARK_CORPORA`, or `shared/corpora` beside the checkout.
fn corpus() -> PathBuf {
    let dir = std::env::var_os("WAYMARK_CORPORA")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/corpora"))
        .join("crates-io/migrations");
    assert!(
        dir.join("00000000000000_diesel_initial_setup").is_dir(),
        "the crates.io corpus is required at {} (set WAYMARK_CORPORA)",
        dir.display()
    );
    dir
}

/// One diesel migration as psql will run it.
struct Folder {
    /// diesel's version: the name up to the first `_`, dashes removed.
    key: String,
    /// The name as written, up to the first `_`.
    version: String,
    path: PathBuf,
    transaction: bool,
}

/// The migration folders in diesel's order: versions compared as strings.
fn diesel_order(dir: &Path) -> Vec<Folder> {
    let mut folders: Vec<Folder> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("up.sql").is_file())
        .map(|path| {
            let name = path.file_name().unwrap().to_str().unwrap().to_owned();
            let version = name.split('_').next().unwrap().to_owned();
            let metadata = std::fs::read_to_string(path.join("metadata.toml")).unwrap_or_default();
            Folder {
                key: version.replace('-', ""),
                version,
                transaction: !metadata.replace(' ', "").contains("run_in_transaction=false"),
                path,
            }
        })
        .collect();
    folders.sort_by(|a, b| a.key.cmp(&b.key));
    folders
}

/// Runs `script` of each folder in one psql session, each in a transaction
/// unless its metadata says otherwise, as diesel runs them.
fn psql(db: &TestDb, folders: &[&Folder], script: &str) -> Duration {
    let mut text = String::new();
    for f in folders {
        let file = f.path.join(script);
        let include = format!("\\i '{}'\n", file.display().to_string().replace('\'', "''"));
        if f.transaction {
            text.push_str(&format!("BEGIN;\n{include}COMMIT;\n"));
        } else {
            text.push_str(&include);
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("all.sql");
    std::fs::write(&path, text).unwrap();
    let started = Instant::now();
    let out = Command::new("psql")
        .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", &db.url, "-f"])
        .arg(&path)
        .env("PGOPTIONS", "-c client_min_messages=warning")
        .output()
        .expect("psql is required");
    let took = started.elapsed();
    assert!(out.status.success(), "psql: {}", String::from_utf8_lossy(&out.stderr));
    took
}

/// The schema as pg_dump writes it, without waymark's own tables.
fn schema(db: &TestDb) -> String {
    let out = Command::new("pg_dump")
        .args([
            "--schema-only",
            "--no-owner",
            "--no-privileges",
            "-T",
            "waymark_history*",
            "-d",
            &db.url,
        ])
        .output()
        .expect("pg_dump is required");
    assert!(
        out.status.success(),
        "pg_dump: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with("-- Dumped") && !l.starts_with("\\restrict") && !l.starts_with("\\unrestrict"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[track_caller]
fn same_schema(a: &TestDb, b: &TestDb, when: &str) {
    let (a, b) = (schema(a), schema(b));
    if a != b {
        let first = a
            .lines()
            .zip(b.lines())
            .position(|(x, y)| x != y)
            .unwrap_or(a.lines().count().min(b.lines().count()));
        let around = |s: &str| {
            s.lines()
                .skip(first.saturating_sub(3))
                .take(8)
                .collect::<Vec<_>>()
                .join("\n")
        };
        panic!(
            "{when}: the schemas differ from line {}\nwaymark:\n{}\npsql:\n{}",
            first + 1,
            around(&a),
            around(&b)
        );
    }
}

/// The migration whose `down.sql` cannot run as written: its up creates a
/// unique *index* (concurrently), and its down drops a *constraint* of that
/// name, which PostgreSQL refuses ("constraint ... does not exist"), under
/// psql as under waymark. Reverting stops after the migrations above it.
const DOWN_STOPS_AT: &str = "2024-10-25-112826";

#[test]
fn crates_io_history_runs_as_it_is() {
    let dir = corpus();
    let folders = diesel_order(&dir);
    assert_eq!(folders.len(), 285);
    let migrations = dir.to_str().unwrap();
    let (mine, theirs) = (TestDb::new(Kind::Postgres), TestDb::new(Kind::Postgres));
    let p = Project::new();

    // Read as diesel reads it: its layout detected, the README and the
    // loose data file ignored, and the same order.
    let status = p
        .run(&mine, &["--migrations", migrations, "status", "--json"])
        .ok()
        .json();
    assert_eq!(status["layout"], "diesel");
    let ignored: Vec<&str> = status["ignored"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["path"].as_str().unwrap())
        .collect();
    assert!(
        ignored.iter().any(|i| i.ends_with("README.md"))
            && ignored.iter().any(|i| i.ends_with("data_oauth_github.sql")),
        "{ignored:?}"
    );
    let order: Vec<&str> = status["migrations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["version"].as_str().unwrap())
        .collect();
    let expected: Vec<&str> = folders.iter().map(|f| f.version.as_str()).collect();
    assert_eq!(order, expected, "waymark's order is diesel's");

    let all: Vec<&Folder> = folders.iter().collect();
    let by_psql = psql(&theirs, &all, "up.sql");
    let started = Instant::now();
    p.run(&mine, &["--migrations", migrations, "up", "-q"]).ok();
    let by_waymark = started.elapsed();
    assert_eq!(mine.history().len(), 285);
    same_schema(&mine, &theirs, "after up");
    eprintln!(
        "crates.io up: waymark {} ms, psql {} ms ({:.2}x)",
        by_waymark.as_millis(),
        by_psql.as_millis(),
        by_waymark.as_secs_f64() / by_psql.as_secs_f64()
    );

    // Down as far as the down.sql files allow, on both sides.
    let stop = folders.iter().position(|f| f.version == DOWN_STOPS_AT).unwrap();
    let above: Vec<&Folder> = folders[stop + 1..].iter().rev().collect();
    assert!(above.len() >= 50, "{}", above.len());
    let run = p
        .run(&mine, &["--migrations", migrations, "down", "--to", DOWN_STOPS_AT])
        .ok();
    assert_eq!(mine.history().len(), 285 - above.len(), "{}", run.stderr);
    psql(&theirs, &above, "down.sql");
    same_schema(&mine, &theirs, "after down");
    // What the down steps made again went back, and none of it waits.
    let waiting = p
        .run(&mine, &["--migrations", migrations, "status", "--json"])
        .ok()
        .json();
    assert_eq!(waiting["waiting"], serde_json::json!([]), "{}", run.stderr);

    // The next down is the one that cannot run: it fails naming its file
    // and line, and nothing else changes.
    p.run(&mine, &["--migrations", migrations, "down", "--steps", "1"])
        .code(1)
        .stderr_has(&format!("{DOWN_STOPS_AT}_make-unique-version-unique/down.sql:1"))
        .stderr_has("[42704]");
    same_schema(&mine, &theirs, "after the failed down");
    p.run(
        &mine,
        &[
            "--migrations",
            migrations,
            "repair",
            "--rolled-back",
            "--version",
            DOWN_STOPS_AT,
        ],
    )
    .ok();

    // Up again: identical again.
    let again: Vec<&Folder> = folders[stop..].iter().collect();
    psql(&theirs, &again, "up.sql");
    p.run(&mine, &["--migrations", migrations, "up", "-q"]).ok();
    assert_eq!(mine.history().len(), 285);
    same_schema(&mine, &theirs, "after up again");
}
