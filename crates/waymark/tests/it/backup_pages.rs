//! `backup create --pages`: a SQLite file copied page for page, at the
//! pace of `sqlite3 .backup`. The copy restores byte for byte; a WAL
//! database's uncheckpointed commits are in it; damage is found by
//! `verify` and by the restore's integrity check, and the target is then
//! left as it was; and every target it cannot go into is refused before a
//! byte is written.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::common::{BIN, Kind, Project, Run, TestDb, block_on, cache_dir, names_in, read_manifest};
use crate::json_contract::conforms;

fn project() -> Project {
    let p = Project::new();
    p.migration(
        "1_items",
        "CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT NOT NULL);\nCREATE INDEX items_name ON items (name);\n",
        None,
    );
    p
}

/// `rows` rows of about 100 bytes in `items`.
fn fill(db: &TestDb, from: u64, rows: u64) {
    db.execute(&format!(
        "WITH RECURSIVE n(i) AS (SELECT {from} UNION ALL SELECT i + 1 FROM n WHERE i < {}) \
         INSERT INTO items (id, name) SELECT i, printf('%0100d', i) FROM n",
        from + rows - 1
    ));
}

/// Runs waymark in `p`'s folder against `url`, which no [`TestDb`] owns.
fn at(p: &Project, url: &str, args: &[&str]) -> Run {
    let mut cmd = std::process::Command::new(BIN);
    cmd.current_dir(p.dir.path())
        .env_remove("DATABASE_URL")
        .env("WAYMARK_CACHE_DIR", cache_dir())
        .env("NO_COLOR", "1")
        .arg("--database-url")
        .arg(url)
        .args(args);
    Run::from(cmd.output().unwrap())
}

fn file_of(db: &TestDb) -> PathBuf {
    PathBuf::from(db.url.strip_prefix("sqlite://").unwrap())
}

fn sha256(path: &Path) -> String {
    Sha256::digest(std::fs::read(path).unwrap())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Every table of `db`, waymark's own too.
fn all_tables(db: &TestDb) -> Vec<String> {
    db.rows("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")
        .into_iter()
        .map(|r| r[0].clone().unwrap())
        .collect()
}

/// Rows over `tables` of `db`.
fn rows_in(db: &TestDb, tables: &[String]) -> u64 {
    tables
        .iter()
        .map(|t| {
            db.rows(&format!("SELECT count(*) FROM \"{t}\""))[0][0]
                .as_ref()
                .unwrap()
                .parse::<u64>()
                .unwrap()
        })
        .sum()
}

/// The files of a folder, by name.
#[test]
fn a_copy_of_pages_restores_byte_for_byte_and_refuses_every_target_it_cannot_go_into() {
    let source = TestDb::new(Kind::Sqlite);
    let p = project();
    p.run(&source, &["up"]).ok();
    fill(&source, 1, 5_000);

    let created = p.run(&source, &["backup", "create", "--pages", "--json"]).ok();
    let reply = created.json();
    conforms("backup-create", &reply);
    assert_eq!(reply["kind"], "pages", "{reply}");
    assert_eq!(reply["tables"], 0, "a set of pages lists no tables: {reply}");
    assert!(
        created.stderr.contains(" pages of 4.0 KiB (") && created.stderr.contains("and verified"),
        "{}",
        created.stderr
    );
    let set = p.dir.path().join(reply["dir"].as_str().unwrap());
    assert_eq!(names_in(&set), ["manifest.json", "pages.zst"]);
    let m = read_manifest(&set);
    assert_eq!(m["format"], "waymark-backup/5");
    assert_eq!(m["row_format"], "sqlite-pages");
    let pages = &m["pages"];
    assert_eq!(
        pages["copied_by"], "file",
        "a rollback-journal file is read under its lock: {m}"
    );
    let file = file_of(&source);
    let size = std::fs::metadata(&file).unwrap().len();
    assert_eq!(pages["raw_bytes"].as_u64(), Some(size));
    assert_eq!(pages["pages"].as_u64(), Some(size / 4096));
    assert_eq!(pages["raw_sha256"].as_str(), Some(sha256(&file).as_str()));
    assert_eq!(m["history"][0]["version"], "1", "{m}");

    let verified = p
        .run(&source, &["backup", "verify", "--deep", set.to_str().unwrap()])
        .ok();
    assert!(
        verified.stderr.contains("every page digested again"),
        "{}",
        verified.stderr
    );
    let listed = p.run(&source, &["backup", "list", "--json"]).ok().json();
    conforms("backup-list", &listed);
    assert_eq!(listed["backups"][0]["kind"], "pages", "{listed}");
    let text = p.run(&source, &["backup", "list"]).ok();
    assert!(
        text.stdout.contains(" pages "),
        "the TABLES column says pages:\n{}",
        text.stdout
    );

    // Restored into a new file: the same bytes, counted and checked.
    let out = tempfile::tempdir().unwrap();
    let target = out.path().join("restored.db");
    let to = format!("sqlite://{}", target.display());
    let restored = p
        .run(
            &source,
            &["backup", "restore", set.to_str().unwrap(), "--to", &to, "--json"],
        )
        .ok();
    let reply = restored.json();
    conforms("backup-restore", &reply);
    assert_eq!(reply["verify"], "pages", "{reply}");
    let tables = all_tables(&source);
    assert_eq!(reply["tables"], tables.len(), "items and waymark's own: {reply}");
    assert_eq!(reply["rows"], rows_in(&source, &tables), "{reply}");
    assert!(
        restored
            .stderr
            .contains("every page matches the backup's SHA-256 and SQLite's integrity check passed"),
        "{}",
        restored.stderr
    );
    assert_eq!(
        sha256(&target),
        sha256(&file),
        "the restored file is the source's, byte for byte"
    );
    assert_eq!(names_in(out.path()), ["restored.db"], "no temporary file is left");
    let status = at(&p, &to, &["status", "--json"]).ok().json();
    assert_eq!(status["migrations"][0]["state"], "applied", "{status}");

    // The quick check, asked for with --verify count, says so.
    let quick = out.path().join("quick.db");
    let reply = p
        .run(
            &source,
            &[
                "backup",
                "restore",
                set.to_str().unwrap(),
                "--to",
                &format!("sqlite://{}", quick.display()),
                "--verify",
                "count",
                "--json",
            ],
        )
        .ok()
        .json();
    assert_eq!(reply["verify"], "pages-quick", "{reply}");
    assert_eq!(sha256(&quick), sha256(&file));
    std::fs::remove_file(&quick).unwrap();

    // Not over a file that holds anything: it is left as it was.
    let before = sha256(&target);
    p.run(&source, &["backup", "restore", set.to_str().unwrap(), "--to", &to])
        .code(1)
        .stderr_has(&format!(
            "{}: restore needs a new (or empty) file, and it holds {size} bytes; nothing was restored",
            target.display()
        ));
    assert_eq!(sha256(&target), before);

    // Not beside a journal SQLite would play into the restored pages.
    let fresh = out.path().join("fresh.db");
    let journal = out.path().join("fresh.db-journal");
    std::fs::write(&journal, b"left by a crash").unwrap();
    p.run(
        &source,
        &[
            "backup",
            "restore",
            set.to_str().unwrap(),
            "--to",
            &format!("sqlite://{}", fresh.display()),
        ],
    )
    .code(1)
    .stderr_has(&format!(
        "{}: a leftover of another database lies beside the target",
        journal.display()
    ));
    assert!(!fresh.exists(), "nothing was written");
    assert_eq!(std::fs::read(&journal).unwrap(), b"left by a crash");

    // Not over the temporary file of a restore still running (its lock
    // held, here by this test), which is left alone. (One whose lock is
    // free was left by a restore that stopped: tests/it/crash_points.rs.)
    let live = out.path().join("fresh.db.waymark-restore");
    std::fs::remove_file(&journal).unwrap();
    std::fs::write(&live, b"another restore's").unwrap();
    let held = std::fs::File::open(&live).unwrap();
    held.lock().unwrap();
    p.run(
        &source,
        &[
            "backup",
            "restore",
            set.to_str().unwrap(),
            "--to",
            &format!("sqlite://{}", fresh.display()),
        ],
    )
    .code(1)
    .stderr_has(&format!(
        "{}: another restore into this file is running; nothing was restored",
        live.display()
    ));
    assert!(!fresh.exists(), "nothing was written");
    assert_eq!(std::fs::read(&live).unwrap(), b"another restore's");
    drop(held);
    std::fs::remove_file(&live).unwrap();

    // Not into memory, nor into another kind of database.
    p.run(
        &source,
        &["backup", "restore", set.to_str().unwrap(), "--to", "sqlite::memory:"],
    )
    .code(1)
    .stderr_has("sqlite::memory: is in memory: a copy of pages restores into a file; nothing was restored");
    let pg = TestDb::new(Kind::Postgres);
    p.run(&source, &["backup", "restore", set.to_str().unwrap(), "--to", &pg.url])
        .code(1)
        .stderr_has("is a copy of a SQLite file's pages, which restores only into SQLite, and postgres://")
        .stderr_has(" is postgres; nothing was restored");
    assert!(
        pg.tables().is_empty(),
        "nothing was written to PostgreSQL: {:?}",
        pg.tables()
    );
}

#[test]
fn pages_are_refused_where_they_cannot_be_taken_and_nothing_is_written() {
    let pg = TestDb::new(Kind::Postgres);
    let p = project();
    p.run(&pg, &["backup", "create", "--pages"])
        .code(1)
        .stderr_has("--pages copies a SQLite database's file, and postgres://")
        .stderr_has(" is postgres; nothing was written");
    assert!(!p.dir.path().join("backups").exists(), "no folder was made");

    let lite = TestDb::new(Kind::Sqlite);
    p.run(&lite, &["up"]).ok();
    let both = p
        .run(&lite, &["backup", "create", "--pages", "--tables", "items"])
        .code(2);
    assert!(both.stderr.contains("cannot be used with"), "{}", both.stderr);
    assert!(!p.dir.path().join("backups").exists(), "no folder was made");
}

/// A WAL database's last commits may live only in its `-wal` file: the
/// copy is SQLite's own (`VACUUM INTO`), so they are in it.
#[test]
fn a_wal_database_is_copied_with_its_uncheckpointed_commits() {
    let source = TestDb::new(Kind::Sqlite);
    let p = project();
    p.run(&source, &["up"]).ok();
    fill(&source, 1, 2_000);
    source.execute("PRAGMA journal_mode = WAL");
    let file = file_of(&source);
    let wal = PathBuf::from(format!("{}-wal", file.display()));

    // A writer that keeps its connection, and so its commits in the WAL.
    let set = block_on(async {
        use sqlx::Connection;
        let mut writer = sqlx::SqliteConnection::connect(&source.url).await.unwrap();
        sqlx::query("PRAGMA wal_autocheckpoint = 0")
            .execute(&mut writer)
            .await
            .unwrap();
        sqlx::query(
            "WITH RECURSIVE n(i) AS (SELECT 2001 UNION ALL SELECT i + 1 FROM n WHERE i < 3000) \
             INSERT INTO items (id, name) SELECT i, printf('%0100d', i) FROM n",
        )
        .execute(&mut writer)
        .await
        .unwrap();
        assert!(
            std::fs::metadata(&wal).unwrap().len() > 0,
            "the commit waits in the WAL"
        );
        let reply = p.run(&source, &["backup", "create", "--pages", "--json"]).ok().json();
        writer.close().await.unwrap();
        p.dir.path().join(reply["dir"].as_str().unwrap())
    });
    let m = read_manifest(&set);
    assert_eq!(m["pages"]["copied_by"], "vacuum-into", "{m}");
    assert_eq!(
        names_in(&set),
        ["manifest.json", "pages.zst"],
        "SQLite's copy is not left in the set"
    );

    let out = tempfile::tempdir().unwrap();
    let target = out.path().join("restored.db");
    let to = format!("sqlite://{}", target.display());
    let reply = p
        .run(
            &source,
            &["backup", "restore", set.to_str().unwrap(), "--to", &to, "--json"],
        )
        .ok()
        .json();
    assert_eq!(
        reply["rows"],
        rows_in(&source, &all_tables(&source)),
        "every committed item, and waymark's rows: {reply}"
    );
    let counted: (i64, i64) = block_on(async {
        use sqlx::Connection;
        let mut conn = sqlx::SqliteConnection::connect(&to).await.unwrap();
        let counted = sqlx::query_as("SELECT count(*), max(id) FROM items")
            .fetch_one(&mut conn)
            .await
            .unwrap();
        conn.close().await.unwrap();
        counted
    });
    assert_eq!(counted, (3_000, 3_000));
}

/// A byte of the compressed file changed is found by `verify` and stops
/// the restore; a source whose pages were already damaged copies
/// faithfully, and SQLite's integrity check stops the restore of it.
#[test]
fn damaged_pages_restore_nothing() {
    let source = TestDb::new(Kind::Sqlite);
    let p = project();
    p.run(&source, &["up"]).ok();
    fill(&source, 1, 5_000);
    let reply = p.run(&source, &["backup", "create", "--pages", "--json"]).ok().json();
    let set = p.dir.path().join(reply["dir"].as_str().unwrap());
    let pages = set.join("pages.zst");
    let good = std::fs::read(&pages).unwrap();
    let mut bad = good.clone();
    let middle = bad.len() / 2;
    bad[middle] ^= 0xff;
    std::fs::write(&pages, &bad).unwrap();
    p.run(&source, &["backup", "verify", set.to_str().unwrap()])
        .code(3)
        .stderr_has("1 problem(s)");
    let out = tempfile::tempdir().unwrap();
    let target = out.path().join("restored.db");
    let to = format!("sqlite://{}", target.display());
    let refused = p
        .run(&source, &["backup", "restore", set.to_str().unwrap(), "--to", &to])
        .code(3)
        .stderr_has("does not verify (1 problem(s)); nothing was restored");
    assert!(refused.stderr.contains("pages.zst: SHA-256 "), "{}", refused.stderr);
    assert!(
        names_in(out.path()).is_empty(),
        "nothing was written: {:?}",
        names_in(out.path())
    );
    std::fs::write(&pages, &good).unwrap();

    // Damage one of the table's pages in the source itself (not the
    // first, which holds the schema): the copy is faithful to it.
    let file = file_of(&source);
    let mut bytes = std::fs::read(&file).unwrap();
    let page = bytes.len() / 4096 / 2;
    bytes[page * 4096..(page + 1) * 4096].fill(0xa5);
    std::fs::write(&file, &bytes).unwrap();
    let reply = p.run(&source, &["backup", "create", "--pages", "--json"]).ok().json();
    let damaged = p.dir.path().join(reply["dir"].as_str().unwrap());
    p.run(&source, &["backup", "verify", "--deep", damaged.to_str().unwrap()])
        .ok();
    let refused = p
        .run(&source, &["backup", "restore", damaged.to_str().unwrap(), "--to", &to])
        .code(3)
        .stderr_has("pages.zst: SQLite's integrity check of its pages says: ");
    assert!(refused.stderr.contains("nothing was restored"), "{}", refused.stderr);
    assert!(
        names_in(out.path()).is_empty(),
        "nothing was left: {:?}",
        names_in(out.path())
    );
}
