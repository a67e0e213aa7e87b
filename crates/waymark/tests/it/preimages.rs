//! Pre-images: `up` keeps the rows of every column and table it drops, and
//! `down` puts them back, on every dialect. What cannot be matched back is
//! dropped with a warning (refused under `preimages = "strict"`), and a
//! copy whose place a `down` does not make again waits, listed by
//! `status`, until a later `down` makes it.

use crate::common::{Kind, Project, TestDb, each_dialect};

fn schema(kind: Kind) -> &'static str {
    match kind {
        Kind::Postgres => {
            "CREATE TABLE users (id INT PRIMARY KEY, name TEXT NOT NULL, email TEXT NOT NULL, note TEXT);\n\
             INSERT INTO users SELECT g, 'u' || g, 'u' || g || E'@x.org\\t''q''', \
             CASE WHEN g % 3 = 0 THEN NULL ELSE 'n' || g END FROM generate_series(1, 500) g;\n\
             CREATE TABLE sessions (id BIGSERIAL PRIMARY KEY, user_id INT REFERENCES users (id), token TEXT, \
             at TIMESTAMPTZ);\n\
             INSERT INTO sessions (user_id, token, at) SELECT g, md5(g::text), \
             '2024-01-02 03:04:05.678901+00'::timestamptz + g * interval '1 min' FROM generate_series(1, 500) g;\n\
             CREATE TABLE session_notes (id INT PRIMARY KEY, session_id BIGINT REFERENCES sessions (id), body TEXT);\n\
             INSERT INTO session_notes SELECT g, g, 'body ' || g FROM generate_series(1, 200) g;\n"
        }
        Kind::Mysql => {
            "CREATE TABLE users (id INT PRIMARY KEY, name VARCHAR(40) NOT NULL, email VARCHAR(80) NOT NULL, \
             note TEXT);\n\
             INSERT INTO users WITH RECURSIVE s(g) AS (SELECT 1 UNION ALL SELECT g + 1 FROM s WHERE g < 500) \
             SELECT g, CONCAT('u', g), CONCAT('u', g, '@x.org\\t''q'''), IF(g % 3 = 0, NULL, CONCAT('n', g)) FROM s;\n\
             CREATE TABLE sessions (id BIGINT AUTO_INCREMENT PRIMARY KEY, user_id INT, token VARCHAR(40), \
             at DATETIME(6), FOREIGN KEY (user_id) REFERENCES users (id));\n\
             INSERT INTO sessions (user_id, token, at) SELECT id, MD5(id), \
             TIMESTAMP('2024-01-02 03:04:05.678901') + INTERVAL id MINUTE FROM users;\n\
             CREATE TABLE session_notes (id INT PRIMARY KEY, session_id BIGINT, body TEXT, \
             FOREIGN KEY (session_id) REFERENCES sessions (id));\n\
             INSERT INTO session_notes SELECT id, id, CONCAT('body ', id) FROM users WHERE id <= 200;\n"
        }
        Kind::Sqlite => {
            "CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT NOT NULL, email TEXT NOT NULL, note TEXT);\n\
             INSERT INTO users WITH RECURSIVE s(g) AS (SELECT 1 UNION ALL SELECT g + 1 FROM s WHERE g < 500) \
             SELECT g, 'u' || g, 'u' || g || '@x.org' || char(9) || '''q''', \
             CASE WHEN g % 3 = 0 THEN NULL ELSE 'n' || g END FROM s;\n\
             CREATE TABLE sessions (id INTEGER PRIMARY KEY AUTOINCREMENT, user_id INT REFERENCES users (id), \
             token TEXT, at TEXT);\n\
             INSERT INTO sessions (user_id, token, at) SELECT id, hex(randomblob(8)), '2024-01-02 03:04:05' \
             FROM users;\n\
             CREATE TABLE session_notes (id INTEGER PRIMARY KEY, session_id INT REFERENCES sessions (id), body TEXT);\n\
             INSERT INTO session_notes SELECT id, id, 'body ' || id FROM users WHERE id <= 200;\n"
        }
    }
}

/// Drops two columns and two tables (a child first); `down` makes them
/// again and then tightens them, which only works once the rows are back:
/// NOT NULL on PostgreSQL and MySQL, a unique index everywhere.
fn drop_migration(kind: Kind) -> (&'static str, &'static str) {
    // SQLite drops no column an index uses; the others drop the index too.
    let up = match kind {
        Kind::Sqlite => {
            "DROP INDEX IF EXISTS users_email;\n\
                         ALTER TABLE users DROP COLUMN email;\n\
                         ALTER TABLE users DROP COLUMN note;\n\
                         DROP TABLE session_notes;\n\
                         DROP TABLE sessions;\n"
        }
        _ => {
            "ALTER TABLE users DROP COLUMN email;\n\
              ALTER TABLE users DROP COLUMN note;\n\
              DROP TABLE session_notes;\n\
              DROP TABLE sessions;\n"
        }
    };
    let down = match kind {
        Kind::Postgres => {
            "CREATE TABLE sessions (id BIGSERIAL PRIMARY KEY, user_id INT REFERENCES users (id), token TEXT, \
             at TIMESTAMPTZ);\n\
             CREATE TABLE session_notes (id INT PRIMARY KEY, session_id BIGINT REFERENCES sessions (id), body TEXT);\n\
             ALTER TABLE users ADD COLUMN email TEXT;\n\
             ALTER TABLE users ALTER COLUMN email SET NOT NULL;\n\
             ALTER TABLE users ADD COLUMN note TEXT;\n\
             CREATE UNIQUE INDEX users_email ON users (email);\n"
        }
        Kind::Mysql => {
            "CREATE TABLE sessions (id BIGINT AUTO_INCREMENT PRIMARY KEY, user_id INT, token VARCHAR(40), \
             at DATETIME(6), FOREIGN KEY (user_id) REFERENCES users (id));\n\
             CREATE TABLE session_notes (id INT PRIMARY KEY, session_id BIGINT, body TEXT, \
             FOREIGN KEY (session_id) REFERENCES sessions (id));\n\
             ALTER TABLE users ADD COLUMN email VARCHAR(80);\n\
             ALTER TABLE users MODIFY email VARCHAR(80) NOT NULL;\n\
             ALTER TABLE users ADD COLUMN note TEXT;\n\
             CREATE UNIQUE INDEX users_email ON users (email);\n"
        }
        Kind::Sqlite => {
            "CREATE TABLE sessions (id INTEGER PRIMARY KEY AUTOINCREMENT, user_id INT REFERENCES users (id), \
             token TEXT, at TEXT);\n\
             CREATE TABLE session_notes (id INTEGER PRIMARY KEY, session_id INT REFERENCES sessions (id), body TEXT);\n\
             ALTER TABLE users ADD COLUMN email TEXT;\n\
             ALTER TABLE users ADD COLUMN note TEXT;\n\
             CREATE UNIQUE INDEX users_email ON users (email);\n"
        }
    };
    (up, down)
}

/// Every row of the three tables, in key order.
fn contents(db: &TestDb) -> Vec<Vec<Vec<Option<String>>>> {
    let t = |c: &str| db.text(c);
    vec![
        db.rows(&format!("SELECT {}, name, email, note FROM users ORDER BY id", t("id"))),
        db.rows(&format!(
            "SELECT {}, {}, token, {} FROM sessions ORDER BY id",
            t("id"),
            t("user_id"),
            t("at")
        )),
        db.rows(&format!(
            "SELECT {}, {}, body FROM session_notes ORDER BY id",
            t("id"),
            t("session_id")
        )),
    ]
}

/// waymark's copies: the tables that hold them and the rows listed.
fn copies(db: &TestDb) -> (Vec<String>, i64) {
    let tables = match db.kind {
        Kind::Postgres => {
            "SELECT table_name::text FROM information_schema.tables WHERE table_schema = 'public' \
                           AND table_name LIKE 'waymark\\_history\\_pre\\_%' ORDER BY 1"
        }
        Kind::Mysql => {
            "SELECT CAST(table_name AS CHAR) FROM information_schema.tables \
                        WHERE table_schema = DATABASE() AND table_name LIKE 'waymark\\_history\\_pre\\_%' ORDER BY 1"
        }
        Kind::Sqlite => {
            "SELECT name FROM sqlite_master WHERE type = 'table' \
                         AND name LIKE 'waymark!_history!_pre!_%' ESCAPE '!' ORDER BY 1"
        }
    };
    let tables = db
        .rows(tables)
        .into_iter()
        .filter_map(|r| r.into_iter().next().flatten())
        .collect();
    let listed = db.rows(&format!("SELECT {} FROM waymark_history_preimage", db.text("COUNT(*)")));
    let listed = listed[0][0].as_deref().unwrap().parse().unwrap();
    (tables, listed)
}

each_dialect!(
    up_then_down_gives_back_the_dropped_rows,
    a_column_without_a_key_to_match_is_dropped_with_a_warning,
    a_down_that_does_not_make_room_leaves_the_copy_waiting,
    a_waiting_copy_goes_back_in_the_down_that_makes_its_place
);

fn up_then_down_gives_back_the_dropped_rows(kind: Kind) {
    let db = TestDb::new(kind);
    let p = Project::new();
    let (up, down) = drop_migration(kind);
    p.migration("1_schema", schema(kind), None);
    p.run(&db, &["up"]).ok();
    let before = contents(&db);
    assert_eq!(before[0].len(), 500);
    assert!(before[0].iter().any(|r| r[3].is_none()), "some notes are NULL");

    p.migration("2_drop", up, Some(down));
    let run = p.run(&db, &["up", "--json"]).ok();
    for object in ["users.email", "users.note", "session_notes", "sessions"] {
        assert!(
            run.stderr.contains(&format!("{object} (")),
            "kept {object}:\n{}",
            run.stderr
        );
    }
    let json = run.json();
    let kept = &json["done"][0]["preimages"];
    assert_eq!(kept.as_array().unwrap().len(), 4, "{json}");
    assert_eq!(kept[0]["rows"], 500);
    assert_eq!(kept[2]["rows"], 200);
    assert!(kept[0]["put_back"].is_null());
    assert_eq!(columns_of(&db, "users"), ["id", "name"]);
    assert_eq!(db.tables(), ["users"]);
    assert_eq!(copies(&db).0.len(), 4);
    assert_eq!(copies(&db).1, 4);
    // `status` says which migration keeps what.
    let status = p.run(&db, &["status", "--json"]).ok().json();
    let listed = &status["migrations"][1]["preimages"];
    assert_eq!(listed.as_array().unwrap().len(), 4, "{status}");
    assert_eq!(listed[0]["rows"], 500);
    assert!(status["migrations"][0]["preimages"].as_array().unwrap().is_empty());
    let shown = p.run(&db, &["status"]).ok();
    assert!(
        shown.stdout.contains("2_drop keeps what it dropped, for its down: ")
            && shown.stdout.contains(".email (500 rows, in waymark_history_pre_"),
        "{}",
        shown.stdout
    );

    let run = p.run(&db, &["down", "--json"]).ok();
    assert!(
        run.stderr.contains("put back sessions (500 of 500 rows kept)")
            || run.stderr.contains("put back public.sessions (500 of 500 rows kept)"),
        "{}",
        run.stderr
    );
    assert_eq!(run.json()["done"][0]["preimages"].as_array().unwrap().len(), 4);
    assert_eq!(contents(&db), before, "the same rows, not only the same columns");
    assert_eq!(copies(&db), (vec![], 0), "copies are removed once put back");
    let shown = p.run(&db, &["status"]).ok();
    assert!(!shown.stdout.contains("keeps what it dropped"), "{}", shown.stdout);

    // The sequence behind a restored key is past the restored values.
    db.execute("INSERT INTO sessions (user_id, token) VALUES (1, 'after')");
    let newest = db.rows(&format!("SELECT {} FROM sessions WHERE token = 'after'", db.text("id")));
    assert_eq!(newest, [[Some("501".to_owned())]]);
    db.execute("DELETE FROM sessions WHERE token = 'after'");

    // Again: a second round keeps and puts back as well as the first.
    p.run(&db, &["up"]).ok();
    p.run(&db, &["redo"]).ok();
    p.run(&db, &["down"]).ok();
    assert_eq!(contents(&db), before);
    assert_eq!(copies(&db), (vec![], 0));
}

fn a_column_without_a_key_to_match_is_dropped_with_a_warning(kind: Kind) {
    let db = TestDb::new(kind);
    let p = Project::new();
    p.migration(
        "1_loose",
        "CREATE TABLE loose (a INT, b TEXT);\nINSERT INTO loose VALUES (1, 'one'), (1, 'one'), (2, NULL);\n\
         CREATE TABLE keyed (id INT PRIMARY KEY, v TEXT);\nINSERT INTO keyed VALUES (1, 'x'), (2, 'y');\n",
        None,
    );
    p.run(&db, &["up"]).ok();
    p.migration(
        "2_drop_b",
        "CREATE TABLE made_first (id INT);\nALTER TABLE loose DROP COLUMN b;\n",
        Some("ALTER TABLE loose ADD COLUMN b TEXT;\nDROP TABLE made_first;\n"),
    );

    // `strict` refuses what cannot be kept, before anything is dropped.
    p.file("waymark.toml", "[backup]\npreimages = \"strict\"\n");
    let run = p
        .run(&db, &["up"])
        .code(1)
        .stderr_has("migration 2_drop_b failed")
        .stderr_has("loose.b would lose its values for good: table ")
        .stderr_has("loose has no primary key")
        .stderr_has("preimages = true");
    let b = db.rows("SELECT b FROM loose ORDER BY a, b");
    assert_eq!(
        b,
        [vec![Some("one".to_owned())], vec![Some("one".to_owned())], vec![None]],
        "{}",
        run.stderr
    );
    assert_eq!(copies(&db), (vec![], 0));
    if kind == Kind::Mysql {
        // DDL commits as it runs: the table made first stays, and the
        // failure is recorded for the operator to repair.
        assert_eq!(db.tables(), ["keyed", "loose", "made_first"]);
        db.execute("DROP TABLE made_first");
        p.run(&db, &["repair", "--rolled-back"]).ok();
    } else {
        assert_eq!(db.tables(), ["keyed", "loose"]);
    }

    // By default the drop goes ahead, and the warning says what `down`
    // will not give back.
    std::fs::remove_file(p.dir.path().join("waymark.toml")).unwrap();
    let run = p
        .run(&db, &["up", "--json"])
        .ok()
        .stderr_has("warning: 2_drop_b: dropping column ")
        .stderr_has("loose.b would lose its values for good")
        .stderr_has("nothing of it is kept, and `down` will not give its values back");
    let warnings = &run.json()["done"][0]["warnings"];
    assert_eq!(warnings.as_array().map(Vec::len), Some(1), "{}", run.stdout);
    assert_eq!(columns_of(&db, "loose"), ["a"]);
    assert_eq!(copies(&db), (vec![], 0));

    // A dropped key column cannot be matched back either (SQLite cannot
    // drop a key column at all).
    if kind != Kind::Sqlite {
        p.migration(
            "3_drop_key",
            "ALTER TABLE keyed DROP COLUMN id;\n",
            Some("ALTER TABLE keyed ADD COLUMN id INT;\n"),
        );
        p.run(&db, &["up"])
            .ok()
            .stderr_has("keyed.id would lose its values for good: it is part of the primary key")
            .stderr_has("`down` will not give its values back");
        assert_eq!(columns_of(&db, "keyed"), ["v"]);
        assert_eq!(copies(&db), (vec![], 0));
    }

    // `down` goes back through both, as the warnings said: the columns
    // return empty.
    p.run(&db, &["down", "--to", "1"]).ok();
    assert_eq!(db.rows("SELECT b FROM loose"), [[None], [None], [None]]);
    assert_eq!(db.history(), [("1".to_owned(), "applied".to_owned())]);

    // `false` drops without a copy, and without a warning about one (lint
    // still says, as `warning[rename-or-drop]`, that a column goes).
    p.file("waymark.toml", "[backup]\npreimages = false\n");
    let run = p.run(&db, &["up"]).ok();
    assert!(
        !run.stderr.contains("kept")
            && !run.stderr.contains("warning: ")
            && run.stderr.contains("warning[rename-or-drop]"),
        "{}",
        run.stderr
    );
    assert_eq!(columns_of(&db, "loose"), ["a"]);
}

fn columns_of(db: &TestDb, table: &str) -> Vec<String> {
    let sql = match db.kind {
        Kind::Postgres => format!(
            "SELECT column_name::text FROM information_schema.columns WHERE table_name = '{table}' \
             ORDER BY ordinal_position"
        ),
        Kind::Mysql => format!(
            "SELECT CAST(column_name AS CHAR) FROM information_schema.columns \
             WHERE table_schema = DATABASE() AND table_name = '{table}' ORDER BY ordinal_position"
        ),
        Kind::Sqlite => format!("SELECT name FROM pragma_table_info('{table}') ORDER BY cid"),
    };
    db.rows(&sql)
        .into_iter()
        .filter_map(|r| r.into_iter().next().flatten())
        .collect()
}

fn a_down_that_does_not_make_room_leaves_the_copy_waiting(kind: Kind) {
    let db = TestDb::new(kind);
    let p = Project::new();
    p.migration(
        "1_t",
        "CREATE TABLE t (id INT PRIMARY KEY, v TEXT);\nINSERT INTO t VALUES (1, 'a'), (2, 'b');\n",
        None,
    );
    p.migration(
        "2_drop_t",
        "DROP TABLE t;\n",
        Some("CREATE TABLE elsewhere (id INT);\n"),
    );
    p.run(&db, &["up"]).ok();
    let (kept, _) = copies(&db);
    assert_eq!(kept.len(), 1);
    let run = p
        .run(&db, &["down"])
        .ok()
        .stderr_has("warning: 2_drop_t: the down step of 2_drop_t did not make table ")
        .stderr_has(&format!(
            "its 2 rows wait in {} and go back when a later down makes it again",
            kept[0]
        ));
    let rows = db.rows(&format!("SELECT v FROM {} ORDER BY id", kept[0]));
    assert_eq!(rows, [[Some("a".to_owned())], [Some("b".to_owned())]], "{}", run.stderr);
    assert_eq!(copies(&db).1, 1, "still listed");
    assert_eq!(db.history(), [("1".to_owned(), "applied".to_owned())]);
    assert_eq!(db.tables(), ["elsewhere"]);
    let status = p.run(&db, &["status"]).ok();
    assert!(
        status.stdout.contains(&format!(
            "waiting: {}",
            if kind == Kind::Postgres { "public.t" } else { "t" }
        )) && status.stdout.contains("(2 rows, in "),
        "{}",
        status.stdout
    );
    let json = p.run(&db, &["status", "--json"]).ok().json();
    assert_eq!(json["waiting"][0]["kept_in"], kept[0].as_str());
    assert_eq!(json["waiting"][0]["version"], "2");
}

/// A history that makes a dropped column again in the down of an earlier
/// migration, as real projects split a change: 2 copies `extra` into
/// `extra2`, 3 drops `extra` with an empty down, and 2's down makes
/// `extra` again. The copy waits after 3's down and goes back in 2's, in a
/// later run.
fn a_waiting_copy_goes_back_in_the_down_that_makes_its_place(kind: Kind) {
    let db = TestDb::new(kind);
    let p = Project::new();
    p.migration(
        "1_t",
        "CREATE TABLE t (id INT PRIMARY KEY, extra TEXT);\nINSERT INTO t VALUES (1, 'a'), (2, NULL), (3, 'c');\n",
        Some("DROP TABLE t;\n"),
    );
    p.migration(
        "2_copy_extra",
        "ALTER TABLE t ADD COLUMN extra2 TEXT;\nUPDATE t SET extra2 = 'new ' || id;\n",
        Some("ALTER TABLE t ADD COLUMN extra TEXT;\nALTER TABLE t DROP COLUMN extra2;\n"),
    );
    p.migration(
        "3_drop_extra",
        "ALTER TABLE t DROP COLUMN extra;\n",
        Some("-- waymark:empty-down: made again by 2's down\n"),
    );
    if kind == Kind::Mysql {
        p.migration(
            "2_copy_extra",
            "ALTER TABLE t ADD COLUMN extra2 TEXT;\nUPDATE t SET extra2 = CONCAT('new ', id);\n",
            Some("ALTER TABLE t ADD COLUMN extra TEXT;\nALTER TABLE t DROP COLUMN extra2;\n"),
        );
    }
    p.run(&db, &["up"]).ok().stderr_has("kept ");
    let before = db.rows("SELECT id FROM t ORDER BY id");
    p.run(&db, &["down", "--steps", "1"])
        .ok()
        .stderr_has("the down step of 3_drop_extra did not make column ")
        .stderr_has("its 3 rows wait in");
    assert_eq!(copies(&db).1, 1);
    p.run(&db, &["status"]).ok();
    let run = p
        .run(&db, &["down", "--steps", "1"])
        .ok()
        .stderr_has("put back ")
        .stderr_has("(3 of 3 rows kept)");
    assert!(!run.stderr.contains("warning"), "{}", run.stderr);
    assert_eq!(
        db.rows("SELECT extra FROM t ORDER BY id"),
        [[Some("a".to_owned())], [None], [Some("c".to_owned())]]
    );
    assert_eq!(db.rows("SELECT id FROM t ORDER BY id"), before);
    assert_eq!(copies(&db), (vec![], 0));
    assert_eq!(columns_of(&db, "t"), ["id", "extra"]);

    // Down and up through all of it leaves no copy behind, and a second
    // round keeps and waits as the first did.
    p.run(&db, &["down", "--to", "0"]).ok();
    p.run(&db, &["up"]).ok();
    p.run(&db, &["down", "--to", "1"]).ok();
    assert_eq!(
        db.rows("SELECT extra FROM t ORDER BY id"),
        [[Some("a".to_owned())], [None], [Some("c".to_owned())]]
    );
    assert_eq!(copies(&db), (vec![], 0));
}

/// Writes a component step running `up` (and `down`) through the test
/// component, with `extra` appended to its `step.toml`.
fn component_step(p: &Project, stem: &str, up: &str, down: &str, extra: &str) {
    let bytes = std::fs::read(waymark_host::TEST_STEPS_WASM_PATH).unwrap();
    p.file("steps/test-steps.wasm", &bytes);
    p.file(
        &format!("migrations/{stem}/step.toml"),
        format!(
            "component = \"../../steps/test-steps.wasm\"\nsha256 = \"{}\"\nup = {up:?}\ndown = {down:?}\n\
             [permissions]\naccess = \"read-write\"\n{extra}",
            waymark_host::digest(&bytes)
        ),
    );
}

/// A drop the statements do not show (dynamic SQL in a `DO` block) is kept
/// when the step declares it in `[drops]`, and only then.
#[test]
fn a_step_declares_the_drops_its_statements_hide() {
    let db = TestDb::new(Kind::Postgres);
    let p = Project::new();
    p.migration(
        "1_t",
        "CREATE TABLE t (id INT PRIMARY KEY, v TEXT, w TEXT);\n\
         INSERT INTO t SELECT g, 'v' || g, 'w' || g FROM generate_series(1, 50) g;\n",
        None,
    );
    let hidden = |column: &str| format!("sql:DO $$ BEGIN EXECUTE 'ALTER TABLE t DROP COLUMN {column}'; END $$");
    component_step(
        &p,
        "2_drop_v",
        &hidden("v"),
        "sql:ALTER TABLE t ADD COLUMN v TEXT",
        "[drops]\ncolumns = [\"t.v\"]\n",
    );
    component_step(&p, "3_drop_w", &hidden("w"), "sql:ALTER TABLE t ADD COLUMN w TEXT", "");
    let run = p.run(&db, &["up"]).ok();
    assert!(run.stderr.contains("kept public.t.v (50 rows)"), "{}", run.stderr);
    assert!(!run.stderr.contains("public.t.w"), "undeclared, unseen: {}", run.stderr);
    p.run(&db, &["down", "--to", "1"]).ok();
    let rows = db.rows("SELECT v, w FROM t WHERE id IN (1, 50) ORDER BY id");
    assert_eq!(rows, [[Some("v1".to_owned()), None], [Some("v50".to_owned()), None]]);
}

#[test]
fn a_drops_entry_that_names_no_column_is_refused() {
    let db = TestDb::new(Kind::Sqlite);
    let p = Project::new();
    component_step(
        &p,
        "1_bad",
        "sql:SELECT 1",
        "sql:SELECT 1",
        "[drops]\ncolumns = [\"users\"]\n",
    );
    p.run(&db, &["up"])
        .code(2)
        .stderr_has("1_bad/step.toml: drops.columns: \"users\" is not a column; name it as table.column");
    component_step(
        &p,
        "1_bad",
        "sql:SELECT 1",
        "sql:SELECT 1",
        "[drops]\ntables = [\"a..b\"]\n",
    );
    p.run(&db, &["up"])
        .code(2)
        .stderr_has("1_bad/step.toml: drops.tables: \"a..b\" is not a table name");
    assert!(db.history().is_empty());
}

/// A drop that fails (a foreign key needs the column) keeps no copy: it
/// dropped nothing, and a stale copy would later stand in for live data.
fn a_failed_drop_leaves_no_copy(kind: Kind) {
    let db = TestDb::new(kind);
    let p = Project::new();
    p.migration(
        "1_t",
        "CREATE TABLE t (id INT PRIMARY KEY, v INT UNIQUE);\n\
         CREATE TABLE c (id INT PRIMARY KEY, t_v INT REFERENCES t (v));\n\
         INSERT INTO t VALUES (1, 10), (2, 20);\nINSERT INTO c VALUES (1, 10);\n",
        None,
    );
    p.run(&db, &["up"]).ok();
    p.migration("2_drop_v", "ALTER TABLE t DROP COLUMN v;\n", None);
    p.run(&db, &["up"]).code(1).stderr_has("migration 2_drop_v failed");
    assert_eq!(copies(&db), (vec![], 0));
    assert_eq!(columns_of(&db, "t"), ["id", "v"]);
}

each_dialect!(a_failed_drop_leaves_no_copy);

/// Dropping from a table that holds no rows loses nothing: no copy is
/// kept, and even under `strict` a column without a key to match it back
/// by is no reason to refuse. `down` makes the column again, empty.
fn a_drop_from_an_empty_table_keeps_nothing_and_warns_of_nothing(kind: Kind) {
    let db = TestDb::new(kind);
    let p = Project::new();
    p.file("waymark.toml", "[backup]\npreimages = \"strict\"\n");
    p.migration(
        "1_loose",
        "CREATE TABLE loose (a INT, b TEXT);\nCREATE TABLE gone (id INT);\n",
        None,
    );
    p.migration(
        "2_drop",
        "ALTER TABLE loose DROP COLUMN b;\nDROP TABLE gone;\n",
        Some("CREATE TABLE gone (id INT);\nALTER TABLE loose ADD COLUMN b TEXT;\n"),
    );
    let run = p.run(&db, &["up", "--json"]).ok();
    let up = run.json();
    assert_eq!(up["done"][1]["preimages"], serde_json::json!([]), "{}", run.stdout);
    assert_eq!(up["done"][1]["warnings"], serde_json::json!([]), "{}", run.stdout);
    assert_eq!(copies(&db), (vec![], 0));
    assert_eq!(db.tables(), ["loose"]);
    p.run(&db, &["down"]).ok();
    assert_eq!(db.tables(), ["gone", "loose"]);
    assert!(db.rows("SELECT b FROM loose").is_empty());
    assert_eq!(copies(&db), (vec![], 0));
}

each_dialect!(a_drop_from_an_empty_table_keeps_nothing_and_warns_of_nothing);
