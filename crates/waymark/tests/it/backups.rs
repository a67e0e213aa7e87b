//! Backups: taken, listed, verified and restored on every dialect, with the
//! restored database compared to the original; every kind of damage found
//! by `verify` and refused by `restore` before any row is written; and
//! `up --backup`.

use std::path::{Path, PathBuf};

use crate::common::{Kind, Project, Run, TestDb, each_dialect, names_in, read_manifest, rewrite_manifest};

/// A schema with the types each dialect gets wrong if anything does:
/// quotes, tabs and newlines in text, bytes, exact numerics, time, NULLs,
/// keys, foreign keys, views, sequences.
fn schema(kind: Kind) -> &'static str {
    match kind {
        Kind::Postgres => {
            "CREATE TABLE parent (id BIGSERIAL PRIMARY KEY, name TEXT NOT NULL, data JSONB, at TIMESTAMPTZ, \
             n NUMERIC(10,2), raw BYTEA, f DOUBLE PRECISION);\n\
             CREATE TABLE child (id INT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, parent_id BIGINT REFERENCES parent (id), note TEXT);\n\
             CREATE TABLE nokey (a INT, b TEXT);\n\
             INSERT INTO parent (name, data, at, n, raw, f) SELECT 'p' || g || E'\\'s\\ttab\\nline', \
             jsonb_build_object('g', g), '2024-05-06 07:08:09.123456+00'::timestamptz + g * interval '1 s', g * 1.25, \
             '\\x00ff27'::bytea, 1.0 / g FROM generate_series(1, 3000) g;\n\
             INSERT INTO parent (name) VALUES ('nulls');\n\
             INSERT INTO child (parent_id, note) SELECT g, CASE WHEN g % 2 = 0 THEN NULL ELSE 'n' || g END FROM generate_series(1, 3000) g;\n\
             INSERT INTO nokey VALUES (1, 'x'), (1, 'x'), (NULL, NULL);\n\
             CREATE INDEX child_parent ON child (parent_id);\n\
             CREATE VIEW v AS SELECT p.name, c.note FROM parent p JOIN child c ON c.parent_id = p.id;\n\
             ANALYZE;\n"
        }
        Kind::Mysql => {
            "CREATE TABLE parent (id BIGINT AUTO_INCREMENT PRIMARY KEY, name VARCHAR(60) NOT NULL, data JSON, \
             at DATETIME(6), n DECIMAL(10,2), raw VARBINARY(20), f DOUBLE);\n\
             CREATE TABLE child (id INT AUTO_INCREMENT PRIMARY KEY, parent_id BIGINT, note TEXT, \
             FOREIGN KEY (parent_id) REFERENCES parent (id));\n\
             CREATE TABLE nokey (a INT, b TEXT);\n\
             INSERT INTO parent (name, data, at, n, raw, f) \
             WITH RECURSIVE s(g) AS (SELECT 1 UNION ALL SELECT g + 1 FROM s WHERE g < 300) \
             SELECT CONCAT('p', g, '\\'s\\ttab\\nline\\\\'), JSON_OBJECT('g', g), \
             TIMESTAMP('2024-05-06 07:08:09.123456') + INTERVAL g SECOND, g * 1.25, x'00ff27', 1.0e0 / g FROM s;\n\
             INSERT INTO parent (name) VALUES ('nulls');\n\
             INSERT INTO child (parent_id, note) SELECT id, IF(id % 2 = 0, NULL, CONCAT('n', id)) FROM parent;\n\
             INSERT INTO nokey VALUES (1, 'x'), (1, 'x'), (NULL, NULL);\n\
             CREATE VIEW v AS SELECT p.name, c.note FROM parent p JOIN child c ON c.parent_id = p.id;\n"
        }
        Kind::Sqlite => {
            "CREATE TABLE parent (id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL, data TEXT, at TEXT, \
             n NUMERIC, raw BLOB, f REAL);\n\
             CREATE TABLE child (id INTEGER PRIMARY KEY, parent_id INTEGER REFERENCES parent (id), note TEXT);\n\
             CREATE TABLE nokey (a INT, b TEXT);\n\
             INSERT INTO parent (name, data, at, n, raw, f) \
             WITH RECURSIVE s(g) AS (SELECT 1 UNION ALL SELECT g + 1 FROM s WHERE g < 3000) \
             SELECT 'p' || g || '''s' || char(9) || 'tab' || char(10) || 'line', json_object('g', g), \
             '2024-05-06 07:08:09', g * 1.25, x'00ff27', 1.0 / g FROM s;\n\
             INSERT INTO parent (name) VALUES ('nulls');\n\
             INSERT INTO child (parent_id, note) SELECT id, CASE WHEN id % 2 = 0 THEN NULL ELSE 'n' || id END FROM parent;\n\
             INSERT INTO nokey VALUES (1, 'x'), (1, 'x'), (NULL, NULL);\n\
             CREATE INDEX child_parent ON child (parent_id);\n\
             CREATE VIEW v AS SELECT p.name, c.note FROM parent p JOIN child c ON c.parent_id = p.id;\n"
        }
    }
}

/// Every row of the tables, in key order, as text: what must survive.
fn contents(db: &TestDb) -> Vec<Vec<Vec<Option<String>>>> {
    let cast = |c: &str| db.text(c);
    let raw = match db.kind {
        Kind::Postgres => "encode(raw, 'hex')".to_owned(),
        _ => "HEX(raw)".to_owned(),
    };
    vec![
        db.rows(&format!(
            "SELECT {}, name, {}, {}, {}, {raw}, {} FROM parent ORDER BY id",
            cast("id"),
            cast("data"),
            cast("at"),
            cast("n"),
            cast("f")
        )),
        db.rows(&format!(
            "SELECT {}, {}, note FROM child ORDER BY id",
            cast("id"),
            cast("parent_id")
        )),
        db.rows(&format!("SELECT {}, b FROM nokey ORDER BY 1, 2", cast("a"))),
        db.rows("SELECT name, note FROM v ORDER BY name, note"),
    ]
}

fn project(kind: Kind) -> Project {
    let p = Project::new();
    p.migration("1_schema", schema(kind), None);
    p
}

/// The one backup set under `backups/`.
fn only_set(p: &Project) -> PathBuf {
    let sets = only_sets(p);
    assert_eq!(sets.len(), 1, "{sets:?}");
    sets.into_iter().next().unwrap()
}

fn backup_round_trip(kind: Kind) {
    let source = TestDb::new(kind);
    let p = project(kind);
    // Small chunks: several per table, loaded and checked in parallel; a
    // big table read on two connections, whatever this machine's cores.
    p.file("waymark.toml", "[backup]\nchunk_kib = 16\njobs = 2\n");
    p.run(&source, &["up"]).ok();
    let created = p.run(&source, &["backup", "create", "--json"]).ok().json();
    // parent, child, nokey, and waymark's history, audit, checkpoint,
    // pre-image and schema-version tables: a restored database can still be
    // migrated down.
    assert_eq!(created["tables"], 8, "{created}");
    let set = only_set(&p);
    assert!(
        created["dir"]
            .as_str()
            .unwrap()
            .ends_with(set.file_name().unwrap().to_str().unwrap())
    );
    assert_eq!(created["migration"], "1");

    let listed = p.run(&source, &["backup", "list", "--json"]).ok().json();
    assert_eq!(listed["backups"][0]["complete"], true);
    assert_eq!(listed["backups"][0]["tables"], 8);
    p.run(&source, &["backup", "verify", "--deep", set.to_str().unwrap()])
        .ok();
    let manifest = read_manifest(&set);
    let parent = manifest["tables"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"].as_str().unwrap().ends_with("parent"))
        .unwrap();
    assert!(parent["chunks"].as_array().unwrap().len() > 2, "{parent}");
    if kind == Kind::Postgres {
        // Big enough to be read in two halves at once (its statistics give
        // the split), and still one table in key order.
        let halves = parent["chunks"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["file"].as_str().unwrap().contains("b-"))
            .count();
        assert!(halves > 0, "{parent}");
    }

    let target = TestDb::new(kind);
    let run = p
        .run(
            &source,
            &["backup", "restore", set.to_str().unwrap(), "--to", &target.url],
        )
        .ok();
    assert!(
        run.stderr.contains("every table's digest matches the backup"),
        "{}",
        run.stderr
    );
    assert_eq!(contents(&target), contents(&source));
    // Counting instead of reading back restores the same rows, and says
    // so; and a set of one big chunk (the default size here) loads that
    // chunk in runs on several connections, read back (`rows`) or not.
    p.file("waymark.toml", "");
    let whole = p.run(&source, &["backup", "create", "--json"]).ok().json();
    let whole = whole["dir"].as_str().unwrap().to_owned();
    for verify in ["count", "rows"] {
        let counted = TestDb::new(kind);
        let run = p
            .command(
                &source,
                &[
                    "--json",
                    "backup",
                    "restore",
                    &whole,
                    "--to",
                    &counted.url,
                    "--verify",
                    verify,
                ],
            )
            .env("WAYMARK_LOG", "waymark_backup=debug")
            .output()
            .unwrap();
        let run = Run::from(run).ok();
        if kind != Kind::Sqlite {
            assert!(run.stderr.contains("a chunk loads in runs at once"), "{}", run.stderr);
        }
        let reply = run.json();
        crate::json_contract::conforms("backup-restore", &reply);
        assert_eq!(reply["verify"], verify, "{reply}");
        assert_eq!(contents(&counted), contents(&source));
    }
    // SQLite keeps a statement's text as written, trailing whitespace aside.
    let schema = |db: &TestDb| -> Vec<String> {
        db.snapshot()
            .lines()
            .map(|l| l.trim_end().to_owned())
            .filter(|l| !l.is_empty())
            .collect()
    };
    assert_eq!(schema(&target), schema(&source));
    assert_eq!(target.history(), source.history());
    // Sequences and counters carry on where they were.
    let next = "INSERT INTO parent (name) VALUES ('after')";
    source.execute(next);
    target.execute(next);
    let id = "SELECT max(id) FROM parent";
    assert_eq!(target.rows(id), source.rows(id));
    // A database that is not empty is refused, and left alone.
    let before = contents(&target);
    let run = p
        .run(
            &source,
            &["backup", "restore", set.to_str().unwrap(), "--to", &target.url],
        )
        .code(1);
    assert!(run.stderr.contains("restore needs an empty database"), "{}", run.stderr);
    assert_eq!(contents(&target), before);
}

each_dialect!(backup_round_trip);

/// Something done to a copy of a good backup set.
type Damage<'a> = Box<dyn Fn(&Path) + 'a>;

fn corrupt(path: &Path, f: impl FnOnce(&mut Vec<u8>)) {
    let mut bytes = std::fs::read(path).unwrap();
    f(&mut bytes);
    std::fs::write(path, bytes).unwrap();
}

fn first_chunk(set: &Path) -> PathBuf {
    let mut chunks: Vec<PathBuf> = std::fs::read_dir(set.join("data"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    chunks.sort();
    chunks.remove(0)
}

#[test]
fn every_kind_of_damage_is_found_and_nothing_is_restored() {
    let kind = Kind::Sqlite;
    let source = TestDb::new(kind);
    let p = project(kind);
    p.run(&source, &["up"]).ok();
    p.run(&source, &["backup", "create"]).ok();
    let good = only_set(&p);
    // A second backup, for a chunk from another set.
    source.execute("INSERT INTO nokey VALUES (2, 'y')");
    let other = p.dir.path().join("other");
    p.run(&source, &["backup", "create", "--out", other.to_str().unwrap()])
        .ok();
    let other_set = std::fs::read_dir(&other).unwrap().next().unwrap().unwrap().path();

    let chunk_name = first_chunk(&good).file_name().unwrap().to_owned();
    let cases: Vec<(&str, Damage<'_>, String)> = vec![
        (
            "bit flip",
            Box::new(|set: &Path| {
                corrupt(&first_chunk(set), |b| {
                    let middle = b.len() / 2;
                    b[middle] ^= 0x10;
                })
            }),
            format!("data/{}: SHA-256", chunk_name.to_string_lossy()),
        ),
        (
            "truncated chunk",
            Box::new(|set: &Path| corrupt(&first_chunk(set), |b| b.truncate(b.len() - 7))),
            "bytes, but the manifest says".to_owned(),
        ),
        (
            "missing file",
            Box::new(|set: &Path| std::fs::remove_file(set.join("schema.json")).unwrap()),
            "schema.json: missing".to_owned(),
        ),
        (
            "extra file",
            Box::new(|set: &Path| std::fs::write(set.join("data/9999-00001.zst"), b"surprise").unwrap()),
            "data/9999-00001.zst: not in the manifest (an extra file)".to_owned(),
        ),
        (
            "chunk from another backup",
            // The second table, nokey, is the one that changed.
            Box::new(|set: &Path| {
                std::fs::copy(other_set.join("data/0002-00001.zst"), set.join("data/0002-00001.zst")).unwrap();
            }),
            "not this backup's file".to_owned(),
        ),
        (
            "edited manifest",
            Box::new(|set: &Path| {
                let text = std::fs::read_to_string(set.join("manifest.json")).unwrap();
                std::fs::write(
                    set.join("manifest.json"),
                    text.replacen("\"rows\": 3", "\"rows\": 4", 1),
                )
                .unwrap();
            }),
            "manifest.json: its own SHA-256 is".to_owned(),
        ),
        (
            "killed half-way",
            Box::new(|set: &Path| std::fs::remove_file(set.join("manifest.json")).unwrap()),
            "incomplete: it has no manifest.json".to_owned(),
        ),
    ];
    for (name, damage, says) in cases {
        let set = p.dir.path().join(format!("damaged/{}", name.replace(' ', "-")));
        copy_dir(&good, &set);
        damage(&set);
        let verify = p.run(&source, &["backup", "verify", set.to_str().unwrap()]);
        assert_eq!(verify.code, 3, "{name}: {verify:?}");
        let all = format!("{}{}", verify.stdout, verify.stderr);
        assert!(all.contains(&says), "{name}: expected {says:?} in\n{all}");

        let target = TestDb::new(kind);
        let restore = p.run(
            &source,
            &["backup", "restore", set.to_str().unwrap(), "--to", &target.url],
        );
        assert_eq!(restore.code, 3, "{name}: {restore:?}");
        assert!(
            restore.stderr.contains(&says),
            "{name}: expected {says:?} in\n{}",
            restore.stderr
        );
        assert!(
            target.tables().is_empty(),
            "{name}: restore wrote {:?}",
            target.tables()
        );
    }
    // The undamaged set still verifies, deep.
    p.run(&source, &["backup", "verify", "--deep", good.to_str().unwrap()])
        .ok();
    // An incomplete set lists as such.
    let partial = p.dir.path().join("backups/20000101T000000Z");
    copy_dir(&good, &partial);
    std::fs::remove_file(partial.join("manifest.json")).unwrap();
    let listed = p.run(&source, &["backup", "list", "--json"]).ok().json();
    assert_eq!(listed["backups"][0]["complete"], false);
    assert!(
        listed["backups"][0]["problem"].as_str().unwrap().contains("incomplete"),
        "{listed}"
    );
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let dest = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_dir(&entry.path(), &dest);
        } else {
            std::fs::copy(entry.path(), dest).unwrap();
        }
    }
}

#[test]
fn up_with_backup_records_the_backup_with_each_migration() {
    let db = TestDb::new(Kind::Postgres);
    let p = project(Kind::Postgres);
    p.run(&db, &["up"]).ok();
    p.migration(
        "2_more",
        "ALTER TABLE parent ADD COLUMN extra INT;",
        Some("ALTER TABLE parent DROP COLUMN extra;"),
    );
    p.migration(
        "3_more",
        "CREATE TABLE more (id INT PRIMARY KEY);",
        Some("DROP TABLE more;"),
    );
    let run = p.run(&db, &["up", "--backup"]).ok();
    assert!(
        run.stderr.contains("and verified; recorded as backup"),
        "{}",
        run.stderr
    );
    let set = only_set(&p);
    let id = set.file_name().unwrap().to_str().unwrap();
    let recorded = db.rows("SELECT version, backup_id FROM waymark_history ORDER BY version");
    assert_eq!(
        recorded,
        [
            [Some("1".to_owned()), None],
            [Some("2".to_owned()), Some(id.to_owned())],
            [Some("3".to_owned()), Some(id.to_owned())],
        ]
    );
    // The backup holds the state before them: restoring it gives version 1.
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(set.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["history"].as_array().unwrap().len(), 1);
    // Nothing pending: no backup is taken.
    p.run(&db, &["up", "--backup"]).ok();
    assert_eq!(std::fs::read_dir(p.dir.path().join("backups")).unwrap().count(), 1);
    // A backup that cannot be written stops the run before anything is
    // applied.
    p.migration("4_more", "CREATE TABLE more4 (id INT PRIMARY KEY);", None);
    p.file(
        "waymark.toml",
        "[backup]\nbefore_up = true\ndir = \"waymark.toml/backups\"\n",
    );
    let run: Run = p.run(&db, &["up"]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stderr.contains("waymark.toml/backups"), "{}", run.stderr);
    assert!(db.tables().iter().all(|t| t != "more4"));
}

/// A folder on a file system with almost no room: a tmpfs of 256 KiB where
/// the tests run as root (as CI does), unmounted when dropped. Elsewhere
/// `None`, and the caller limits the file size instead.
struct SmallDisk {
    dir: tempfile::TempDir,
    mounted: bool,
}

impl SmallDisk {
    fn new() -> SmallDisk {
        let dir = tempfile::tempdir().unwrap();
        let mounted = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=256k", "tmpfs"])
            .arg(dir.path())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        SmallDisk { dir, mounted }
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        if self.mounted {
            let _ = std::process::Command::new("umount").arg(self.dir.path()).status();
        }
    }
}

/// A disk that fills up part-way: a clear error naming the chunk being
/// written, and no folder left that could be taken for a backup.
#[test]
fn a_full_disk_fails_the_backup_and_leaves_nothing_behind() {
    let db = TestDb::new(Kind::Postgres);
    let p = Project::new();
    // Rows that do not compress: a few megabytes of chunks.
    p.migration(
        "1_big",
        "CREATE TABLE big (id INT PRIMARY KEY, a TEXT, b TEXT);\n\
         INSERT INTO big SELECT g, md5(g::text) || md5((g * 7)::text), md5((g * 13)::text) \
         FROM generate_series(1, 60000) g;\n",
        None,
    );
    p.run(&db, &["up"]).ok();
    let disk = SmallDisk::new();
    let out = disk.dir.path().to_str().unwrap().to_owned();
    let run = if disk.mounted {
        Run::from(p.command(&db, &["backup", "create", "--out", &out]).output().unwrap())
    } else {
        // Without the right to mount, a file size limit makes writes fail
        // the same way part-way (EFBIG instead of ENOSPC).
        let cmd = p.command(&db, &["backup", "create", "--out", &out]);
        let program = cmd.get_program().to_owned();
        let args: Vec<_> = cmd.get_args().map(|a| a.to_owned()).collect();
        let mut shell = std::process::Command::new("bash");
        shell
            .arg("-c")
            .arg("trap '' XFSZ; ulimit -f 256; exec \"$@\"")
            .arg("bash")
            .arg(program)
            .args(args)
            .current_dir(p.dir.path());
        for (k, v) in cmd.get_envs() {
            match v {
                Some(v) => shell.env(k, v),
                None => shell.env_remove(k),
            };
        }
        Run::from(shell.output().unwrap())
    };
    let run = run.code(1);
    let full = if disk.mounted {
        "No space left on device"
    } else {
        "File too large"
    };
    assert!(run.stderr.contains(full), "{}", run.stderr);
    assert!(run.stderr.contains("/data/0001-0"), "names the chunk: {}", run.stderr);
    assert!(run.stderr.contains("was removed"), "{}", run.stderr);
    let left: Vec<_> = std::fs::read_dir(disk.dir.path()).unwrap().collect();
    assert!(left.is_empty(), "nothing half-written stays: {left:?}");
    let listed = p.run(&db, &["backup", "list", "--out", &out, "--json"]).ok().json();
    assert_eq!(listed["backups"].as_array().unwrap().len(), 0, "{listed}");
}

/// A table dropped while a backup starts: the backup holds every table
/// once it has listed them, so the drop either waits for the backup or,
/// landing in between, fails it with a message naming the table.
/// pg_dump runs beside the rows' read. One that fails (here, as it does
/// when it is older than the server) fails the backup with its own words,
/// and the set's folder is removed: nothing half-written is left to be
/// taken for a backup.
#[test]
fn a_pg_dump_that_fails_fails_the_backup_and_leaves_no_set_postgres() {
    let db = TestDb::new(Kind::Postgres);
    let p = project(Kind::Postgres);
    p.run(&db, &["up"]).ok();
    let tools = tempfile::tempdir().unwrap();
    let fake = tools.path().join("pg_dump");
    std::fs::write(
        &fake,
        "#!/bin/sh\necho 'pg_dump: error: aborting because of server version mismatch' >&2\nexit 1\n",
    )
    .unwrap();
    std::fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let path = format!("{}:{}", tools.path().display(), std::env::var("PATH").unwrap());
    let run = Run::from(
        p.command(&db, &["backup", "create"])
            .env("PATH", path)
            .output()
            .unwrap(),
    )
    .code(1)
    .stderr_has("pg_dump: pg_dump: error: aborting because of server version mismatch")
    .stderr_has("was removed");
    assert!(names_in(&p.dir.path().join("backups")).is_empty(), "{}", run.stderr);
    // With the real pg_dump the same database backs up.
    p.run(&db, &["backup", "create"]).ok();
    assert_eq!(names_in(&p.dir.path().join("backups")).len(), 1);
}

#[test]
fn a_table_dropped_as_the_backup_starts_fails_it_by_name() {
    for kind in [Kind::Postgres, Kind::Mysql] {
        let db = TestDb::new(kind);
        let p = Project::new();
        p.migration(
            "1_two",
            "CREATE TABLE keep_me (id INT PRIMARY KEY);\nCREATE TABLE drop_me (id INT PRIMARY KEY);\n\
             INSERT INTO drop_me VALUES (1), (2);\n",
            None,
        );
        p.run(&db, &["up"]).ok();
        // Another session holds drop_me, so the backup waits on it right
        // after listing the tables; then that session drops it.
        let (hold, waiting) = match kind {
            Kind::Postgres => (
                "BEGIN; LOCK TABLE drop_me IN ACCESS EXCLUSIVE MODE",
                "SELECT count(*)::text FROM pg_locks WHERE NOT granted AND relation = 'drop_me'::regclass",
            ),
            _ => (
                "LOCK TABLES drop_me WRITE",
                "SELECT CAST(count(*) AS CHAR) FROM information_schema.processlist \
                 WHERE state LIKE 'Waiting for table metadata lock'",
            ),
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let mut session = rt.block_on(Session::open(&db));
        rt.block_on(session.run(hold));
        let child = p
            .command(&db, &["backup", "create"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let started = std::time::Instant::now();
        while db.rows(waiting)[0][0].as_deref() != Some("1") {
            assert!(started.elapsed().as_secs() < 60, "the backup never waited on drop_me");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        match kind {
            Kind::Postgres => rt.block_on(session.run("DROP TABLE drop_me; COMMIT")),
            _ => rt.block_on(session.run("DROP TABLE drop_me; UNLOCK TABLES")),
        }
        let run = Run::from(child.wait_with_output().unwrap());
        let run = run.code(1).stderr_has("locking the tables to back up");
        let named = match kind {
            Kind::Postgres => "relation \"public.drop_me\" does not exist",
            _ => "drop_me' doesn't exist",
        };
        assert!(run.stderr.contains(named), "{kind:?}: {}", run.stderr);
        assert!(run.stderr.contains("was removed"), "{}", run.stderr);
        assert!(!p.dir.path().join("backups").exists() || only_sets(&p).is_empty());
        // The next backup, of what is there now, works.
        p.run(&db, &["backup", "create"]).ok();
        assert_eq!(only_sets(&p).len(), 1);
    }
}

fn only_sets(p: &Project) -> Vec<PathBuf> {
    std::fs::read_dir(p.dir.path().join("backups"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect()
}

/// One connection the test keeps, with its own transaction or locks.
enum Session {
    Pg(sqlx::PgConnection),
    My(sqlx::MySqlConnection),
}

impl Session {
    async fn open(db: &TestDb) -> Session {
        use sqlx::Connection;
        match db.kind {
            Kind::Postgres => Session::Pg(sqlx::PgConnection::connect(&db.url).await.unwrap()),
            _ => Session::My(sqlx::MySqlConnection::connect(&db.url).await.unwrap()),
        }
    }

    async fn run(&mut self, sql: &str) {
        match self {
            Session::Pg(c) => {
                sqlx::raw_sql(sql).execute(&mut *c).await.unwrap();
            }
            Session::My(c) => {
                for statement in sql.split(';') {
                    sqlx::raw_sql(statement).execute(&mut *c).await.unwrap();
                }
            }
        }
    }
}

/// A PostgreSQL database migrated and backed up in chunks of 16 KiB, so
/// that each table has several: the source, its project, and the set.
fn backed_up_in_small_chunks() -> (TestDb, Project, PathBuf) {
    let source = TestDb::new(Kind::Postgres);
    let p = project(Kind::Postgres);
    p.file("waymark.toml", "[backup]\nchunk_kib = 16\n");
    p.run(&source, &["up"]).ok();
    p.run(&source, &["backup", "create"]).ok();
    let set = only_set(&p);
    (source, p, set)
}

/// A database that changes rows as they are restored (here a trigger an
/// event trigger puts on each table as it is made): the check afterwards
/// reports the one chunk whose rows differ, by its keys where the table
/// has a key, by its place in the table's order where it has none.
#[test]
fn a_row_changed_during_restore_is_narrowed_to_its_chunk() {
    let (source, p, set) = backed_up_in_small_chunks();
    let target = TestDb::new(Kind::Postgres);
    tamper_as_restored(
        &target,
        "IF TG_TABLE_NAME = 'nokey' THEN NEW.b := 'changed'; \
         ELSIF NEW.id = 2500 THEN NEW.name := 'tampered'; END IF;",
        "'public.parent', 'public.nokey'",
    );
    let run = p
        .run(
            &source,
            &["backup", "restore", set.to_str().unwrap(), "--to", &target.url],
        )
        .code(3)
        .stderr_has("restored, but 2 table(s) differ from the backup: public.nokey: the rows of data/0002-00001.zst: ")
        .stderr_has("; public.parent: the rows of data/0003");
    assert_eq!(run.stderr.matches("public.parent:").count(), 1, "{}", run.stderr);
    let range = run.stderr.split("keys after ").nth(1).unwrap_or_default();
    let bounds: Vec<i64> = range
        .split(['(', ')', '\''])
        .filter_map(|s| s.parse().ok())
        .take(2)
        .collect();
    assert!(
        bounds.len() == 2 && bounds[0] < 2500 && 2500 <= bounds[1],
        "the range holds key 2500: {}",
        run.stderr
    );
    target.execute("DROP EVENT TRIGGER arm");
}

/// `--verify count` proves what it says and no more: a row the database
/// skipped as it loaded is found, by its chunk, and a row it stored changed
/// is not (the read-back of `--verify rows` finds both).
#[test]
fn a_restore_that_counts_finds_a_skipped_row_but_not_a_changed_one() {
    let (source, p, set) = backed_up_in_small_chunks();
    let tamper = "IF TG_TABLE_NAME = 'child' AND NEW.id = 2000 THEN RETURN NULL; \
                  ELSIF TG_TABLE_NAME = 'parent' AND NEW.id = 7 THEN NEW.name := 'tampered'; END IF;";
    let tables = "'public.parent', 'public.child'";
    let restore = |target: &TestDb, verify: &str| {
        p.run(
            &source,
            &[
                "backup",
                "restore",
                set.to_str().unwrap(),
                "--to",
                &target.url,
                "--verify",
                verify,
            ],
        )
    };
    let counted = TestDb::new(Kind::Postgres);
    tamper_as_restored(&counted, tamper, tables);
    let run = restore(&counted, "count")
        .code(3)
        .stderr_has("restored, but 1 table(s) differ from the backup: public.child: the rows of data/");
    let after = run.stderr.split("the database took ").nth(1).unwrap_or_default();
    let (took, rest) = after.split_once(" rows, the backup has ").unwrap_or_default();
    let has: String = rest.chars().take_while(char::is_ascii_digit).collect();
    assert_eq!(
        took.parse::<u64>().ok().map(|n| n + 1),
        has.parse().ok(),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains("public.parent"), "{}", run.stderr);
    // The rows and the rest of the schema stay, to look at.
    counted.execute("DROP EVENT TRIGGER arm");
    let counts = "SELECT (SELECT count(*) FROM parent), (SELECT count(*) FROM child)";
    assert_eq!(
        counted.rows(counts),
        [[Some("3001".to_owned()), Some("2999".to_owned())]]
    );
    assert_eq!(
        counted.rows("SELECT name FROM parent WHERE id = 7"),
        [[Some("tampered".to_owned())]]
    );
    assert_eq!(
        counted.rows("SELECT count(*) FROM pg_constraint WHERE conname = 'child_pkey'"),
        [[Some("1".to_owned())]]
    );

    let read_back = TestDb::new(Kind::Postgres);
    tamper_as_restored(&read_back, tamper, tables);
    let run = restore(&read_back, "rows")
        .code(3)
        .stderr_has("restored, but 2 table(s) differ from the backup: public.child: ")
        .stderr_has("; public.parent: the rows of data/");
    assert_eq!(run.stderr.matches("public.child:").count(), 1, "{}", run.stderr);
    read_back.execute("DROP EVENT TRIGGER arm");

    let unknown = TestDb::new(Kind::Postgres);
    restore(&unknown, "digest")
        .code(2)
        .stderr_has("invalid value 'digest' for '--verify <VERIFY>'");
    assert!(
        unknown
            .rows("SELECT 1 FROM pg_tables WHERE schemaname = 'public'")
            .is_empty()
    );
}

/// Arms `db` so that the restore's own inserts into `tables` (SQL
/// literals, comma-separated) pass through `change`, a PL/pgSQL `IF` on
/// `NEW`: the tables are created by the restore, so an event trigger adds
/// the row trigger as each is made. Drop the event trigger `arm` after.
fn tamper_as_restored(db: &TestDb, change: &str, tables: &str) {
    db.execute(&format!(
        "CREATE FUNCTION tamper() RETURNS trigger LANGUAGE plpgsql AS $$ \
         BEGIN {change} RETURN NEW; END $$;\n\
         CREATE FUNCTION arm() RETURNS event_trigger LANGUAGE plpgsql AS $$ \
         DECLARE r record; BEGIN \
         FOR r IN SELECT * FROM pg_event_trigger_ddl_commands() WHERE command_tag = 'CREATE TABLE' LOOP \
         IF r.object_identity IN ({tables}) THEN \
         EXECUTE format('CREATE TRIGGER tamper BEFORE INSERT ON %s FOR EACH ROW EXECUTE FUNCTION public.tamper()', \
         r.object_identity); \
         END IF; END LOOP; END $$;\n\
         CREATE EVENT TRIGGER arm ON ddl_command_end EXECUTE FUNCTION arm();"
    ));
}

/// A set's sum of a table's rows that differs from what came back, with
/// every chunk of that table matching, beside a table where a chunk
/// differs: each is reported, the first by its sum (the check by key finds
/// no chunk to name), the second by its chunk.
#[test]
fn a_sum_of_rows_that_differs_fails_the_restore_even_when_every_chunk_matches() {
    let source = TestDb::new(Kind::Postgres);
    let p = project(Kind::Postgres);
    p.run(&source, &["up"]).ok();
    p.run(&source, &["backup", "create"]).ok();
    let set = only_set(&p);
    let mut manifest = read_manifest(&set);
    let object = manifest.as_object_mut().unwrap();
    object.remove("manifest_sha256");
    let child = object["tables"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|t| t["name"] == "public.child")
        .unwrap();
    let real = child["rows_xxh3"].as_str().unwrap().to_owned();
    child["rows_xxh3"] = "0".repeat(32).into();
    rewrite_manifest(&set, &manifest);
    // A deep verify sums the chunks' rows again, and finds it out.
    let verify = p
        .run(&source, &["backup", "verify", "--deep", set.to_str().unwrap()])
        .code(3)
        .stderr_has("1 problem(s)");
    let problem = format!(
        "table public.child: its chunks hold 3000 rows summing to {real}, \
         but the manifest says 3000 rows summing to {}",
        "0".repeat(32)
    );
    assert!(verify.stdout.contains(&problem), "{}", verify.stdout);

    let target = TestDb::new(Kind::Postgres);
    tamper_as_restored(
        &target,
        "IF NEW.id = 7 THEN NEW.name := 'tampered'; END IF;",
        "'public.parent'",
    );
    let run = p
        .run(
            &source,
            &["backup", "restore", set.to_str().unwrap(), "--to", &target.url],
        )
        .code(3)
        .stderr_has(&format!(
            "restored, but 2 table(s) differ from the backup: public.child: all rows: 3000 rows summing to {real}, \
             the backup has 3000 rows summing to {}; public.parent: the rows of data/",
            "0".repeat(32)
        ));
    assert_eq!(run.stderr.matches("public.parent:").count(), 1, "{}", run.stderr);
    // The rows and the rest of the schema are there, to look at: the
    // restore ran to its end before it judged.
    target.execute("DROP EVENT TRIGGER arm");
    let tampered = "SELECT name FROM parent WHERE id = 7";
    assert_eq!(target.rows(tampered), [[Some("tampered".to_owned())]]);
    let counts = "SELECT (SELECT count(*) FROM parent), (SELECT count(*) FROM child), (SELECT count(*) FROM nokey)";
    assert_eq!(target.rows(counts), source.rows(counts));

    // A kind of database this waymark does not know: no rows to sum, and
    // said so.
    manifest["database"]["dialect"] = "oracle".into();
    rewrite_manifest(&set, &manifest);
    let verify = p
        .run(&source, &["backup", "verify", "--deep", set.to_str().unwrap()])
        .code(3);
    assert!(
        verify
            .stdout
            .contains("manifest.json: a database of kind \"oracle\", which this waymark does not know"),
        "{}",
        verify.stdout
    );
}

/// The chunk files of `table` in a manifest, in order.
fn chunk_files(manifest: &serde_json::Value, table: &str) -> Vec<String> {
    let table = manifest["tables"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == table)
        .unwrap();
    table["chunks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["file"].as_str().unwrap().to_owned())
        .collect()
}

/// A PostgreSQL table is read as its heap pages hold it when that is its
/// key's order, and by key when it is not (a table filled backwards, one
/// whose updated row moved). Either way each chunk holds exactly the rows
/// of its key range in key order: a set without its sums is checked by
/// key, chunk by chunk, against what the database gives `ORDER BY` the
/// key.
#[test]
fn chunks_read_as_the_pages_lie_are_their_key_ranges_postgres() {
    let source = TestDb::new(Kind::Postgres);
    let p = project(Kind::Postgres);
    p.file("waymark.toml", "[backup]\nchunk_kib = 16\n");
    p.run(&source, &["up"]).ok();
    // A backup reads with one connection or two.
    p.run(&source, &["backup", "create", "--jobs", "3"])
        .code(2)
        .stderr_has("invalid value '3' for '--jobs <JOBS>': 3 is not in 1..=2");
    assert!(!p.dir.path().join("backups").exists(), "no folder was made");
    source.execute(
        "CREATE TABLE backwards (id INT PRIMARY KEY, pad TEXT); \
         INSERT INTO backwards SELECT g, repeat('x', 100) FROM generate_series(3000, 1, -1) g; \
         UPDATE child SET note = 'moved' WHERE id = 10; ANALYZE",
    );
    let run = p
        .command(&source, &["--json", "backup", "create", "--jobs", "2"])
        .env("WAYMARK_LOG", "waymark_backup=debug")
        .output()
        .unwrap();
    let run = Run::from(run).ok();
    let by_key: Vec<&str> = run
        .stderr
        .lines()
        .filter_map(|l| l.strip_suffix(": its heap pages do not hold its rows in key order; reading it by key"))
        .filter_map(|l| l.rsplit(' ').next())
        .collect();
    assert_eq!(by_key, ["public.backwards", "public.child"], "{}", run.stderr);
    let set = p.dir.path().join(run.json()["dir"].as_str().unwrap());
    let mut manifest = read_manifest(&set);
    // `parent` fills several chunks: read in two runs of pages at once,
    // the second's chunks after the first's.
    let parent = chunk_files(&manifest, "public.parent");
    assert!(
        parent.iter().any(|f| f.contains("b-")) && !parent[0].contains("b-"),
        "{parent:?}"
    );
    // With one job it is one run of pages.
    let one = p
        .run(&source, &["--json", "backup", "create", "--jobs", "1"])
        .ok()
        .json();
    let one = read_manifest(&p.dir.path().join(one["dir"].as_str().unwrap()));
    let one = chunk_files(&one, "public.parent");
    assert!(one.len() > 2 && one.iter().all(|f| !f.contains("b-")), "{one:?}");
    assert!(chunk_files(&manifest, "public.backwards").len() > 2);
    // No sums: the restore checks each chunk by its key range.
    for table in manifest["tables"].as_array_mut().unwrap() {
        table.as_object_mut().unwrap().remove("rows_xxh3");
    }
    manifest.as_object_mut().unwrap().remove("manifest_sha256");
    rewrite_manifest(&set, &manifest);
    let target = TestDb::new(Kind::Postgres);
    p.run(
        &source,
        &["backup", "restore", set.to_str().unwrap(), "--to", &target.url],
    )
    .ok()
    .stderr_has("every table's digest matches the backup");
    assert_eq!(contents(&target), contents(&source));
    let backwards = "SELECT count(*), sum(id), string_agg(DISTINCT pad, ',') FROM backwards";
    assert_eq!(target.rows(backwards), source.rows(backwards));
}

/// The keys a PostgreSQL restore builds beside its read-back (a unique
/// index, then the constraint made from it) come out as the source has
/// them, and those it must build as written (a partitioned table's, a
/// deferrable one) come out too.
#[test]
fn keys_built_as_indexes_first_restore_the_same_constraints_postgres() {
    let source = TestDb::new(Kind::Postgres);
    let p = Project::new();
    p.migration(
        "1_keys",
        "CREATE TABLE events (id INT, at DATE, note TEXT, PRIMARY KEY (id, at)) PARTITION BY RANGE (at);\n\
         CREATE TABLE events_2024 PARTITION OF events FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');\n\
         INSERT INTO events SELECT g, '2024-03-01'::date + g % 200, 'n' || g FROM generate_series(1, 2000) g;\n\
         CREATE TABLE \"Codes\" (id INT PRIMARY KEY, \"the code\" TEXT, later INT, \
         CONSTRAINT \"Codes code\" UNIQUE (\"the code\"), CONSTRAINT codes_later UNIQUE (later) DEFERRABLE);\n\
         INSERT INTO \"Codes\" SELECT g, 'c' || g, g FROM generate_series(1, 2000) g;\n\
         CREATE INDEX codes_lower ON \"Codes\" (lower(\"the code\"));\n\
         CREATE TABLE refs (id INT PRIMARY KEY, code TEXT REFERENCES \"Codes\" (\"the code\"));\n\
         INSERT INTO refs SELECT g, 'c' || g FROM generate_series(1, 100) g;\n",
        None,
    );
    p.run(&source, &["up"]).ok();
    p.run(&source, &["backup", "create"]).ok();
    let set = only_set(&p);
    let target = TestDb::new(Kind::Postgres);
    p.run(
        &source,
        &["backup", "restore", set.to_str().unwrap(), "--to", &target.url],
    )
    .ok()
    .stderr_has("every table's digest matches the backup");
    let constraints = "SELECT conrelid::regclass || ' ' || conname || ' ' || pg_get_constraintdef(oid) || ' ' \
                       || coalesce(conindid::regclass::text, '-') || ' ' || condeferrable \
                       FROM pg_constraint WHERE connamespace = 'public'::regnamespace ORDER BY 1";
    let found = target.rows(constraints);
    assert_eq!(found, source.rows(constraints));
    assert!(
        found
            .iter()
            .any(|r| r[0].as_deref() == Some("\"Codes\" Codes code UNIQUE (\"the code\") \"Codes code\" false")),
        "{found:?}"
    );
    let primary = "SELECT i.indexrelid::regclass::text FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid \
                   WHERE i.indisprimary AND c.relnamespace = 'public'::regnamespace \
                   AND c.relname NOT LIKE 'waymark%' ORDER BY 1";
    let keys = target.rows(primary);
    assert_eq!(keys, source.rows(primary));
    assert_eq!(keys.len(), 4, "{keys:?}");
    assert_eq!(target.snapshot(), source.snapshot());
    let rows = "SELECT (SELECT string_agg(id || at::text || note, ',' ORDER BY id) FROM events), \
                (SELECT string_agg(id || \"the code\" || later, ',' ORDER BY id) FROM \"Codes\"), \
                (SELECT string_agg(id || code, ',' ORDER BY id) FROM refs)";
    assert_eq!(target.rows(rows), source.rows(rows));
}

/// MariaDB loads an empty table under a table lock when its key checks are
/// off, as a restore turns them; two workers loading the halves of one
/// table at once can deadlock on that lock, and the server rolls one
/// insert back. The insert is sent again: thirty restores of three
/// tables, each cut between the two workers, all succeed, with every row.
#[test]
fn restores_into_mariadb_send_a_deadlocked_insert_again() {
    let p = Project::new();
    let mut script = String::new();
    for t in ["a", "b", "c"] {
        script += &format!("CREATE TABLE {t} (id INTEGER PRIMARY KEY, v VARCHAR(20));\n");
        let rows: Vec<String> = (1..=40).map(|i| format!("({i}, 'row {i}')")).collect();
        script += &format!("INSERT INTO {t} VALUES {};\n", rows.join(", "));
    }
    p.migration("1_tables", &script, None);
    let source = TestDb::new(Kind::Mysql);
    p.run(&source, &["up"]).ok();
    let set = p.run(&source, &["backup", "create", "--json"]).ok().json()["dir"]
        .as_str()
        .unwrap()
        .to_owned();
    for round in 0..30 {
        let db = TestDb::new(Kind::Mysql);
        p.run(&db, &["backup", "restore", "--to", &db.url, &set]).ok();
        for t in ["a", "b", "c"] {
            assert_eq!(
                db.rows(&format!("SELECT CAST(COUNT(*) AS CHAR) FROM {t}")),
                [[Some("40".to_owned())]],
                "round {round}, table {t}"
            );
        }
    }
}
