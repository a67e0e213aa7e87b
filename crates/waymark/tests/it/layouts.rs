//! Other tools' migration folders, read as those tools read them, on every
//! dialect: each layout's fixture is detected (or named), applied, listed
//! with what it ignores, and reverted; the tool's own markers (diesel's
//! `metadata.toml`, dbmate's `transaction:false`, goose's statement blocks
//! and `NO TRANSACTION`, Flyway's undo files and `.sql.conf`) do what they
//! do there.

use crate::common::{Kind, Project, TestDb, each_dialect};

/// `status --json` of the project: its layout, versions in order, and the
/// paths (relative to the migrations folder) it ignored.
fn status(p: &Project, db: &TestDb, extra: &[&str]) -> (String, Vec<String>, Vec<String>) {
    let mut args = extra.to_vec();
    args.extend(["status", "--json"]);
    let s = p.run(db, &args).ok().json();
    let versions = s["migrations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["version"].as_str().unwrap().to_owned())
        .collect();
    let root = p.migrations();
    let mut ignored: Vec<String> = s["ignored"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            let path = std::path::Path::new(i["path"].as_str().unwrap());
            let path = path
                .strip_prefix(&root)
                .or_else(|_| path.strip_prefix("migrations"))
                .unwrap_or(path);
            path.display().to_string()
        })
        .collect();
    ignored.sort();
    (s["layout"].as_str().unwrap().to_owned(), versions, ignored)
}

fn versions(db: &TestDb) -> Vec<String> {
    db.history().into_iter().map(|(v, _)| v).collect()
}

/// diesel: folders only, version 0 an ordinary migration, mixed all-digit
/// and dashed versions in diesel's order, a name with a space, an empty
/// `down.sql` (refused, as diesel refuses an empty migration, until it
/// says it is meant), `run_in_transaction = false`; loose files are not
/// migrations. `down --to 0` keeps the initial setup; `down --all` reverts
/// it too.
fn diesel(kind: Kind) {
    let db = TestDb::new(kind);
    let p = Project::new();
    p.migration(
        "00000000000000_diesel_initial_setup",
        "CREATE TABLE setup (id INT PRIMARY KEY);\n",
        Some("DROP TABLE setup;\n"),
    )
    .migration(
        "20170101000000_create_a",
        "CREATE TABLE a (id INT PRIMARY KEY);\n",
        Some("DROP TABLE a;\n"),
    )
    .migration(
        "2019-02-26-002946_create b",
        "CREATE TABLE b (id INT PRIMARY KEY);\n",
        Some("DROP TABLE b;\n"),
    )
    // An empty down.sql: reverting by it would change nothing.
    .migration("2019-03-01-000000_seed_a", "INSERT INTO a (id) VALUES (1);\n", Some(""));
    let index = if kind == Kind::Postgres {
        "CREATE INDEX CONCURRENTLY b_id ON b (id);\n"
    } else {
        "CREATE INDEX b_id ON b (id);\n"
    };
    p.migration("2019-03-02-000000_index_b", index, Some("DROP INDEX b_id;\n"))
        .file(
            "migrations/2019-03-02-000000_index_b/metadata.toml",
            "run_in_transaction = false\n",
        );
    if kind == Kind::Mysql {
        p.file(
            "migrations/2019-03-02-000000_index_b/down.sql",
            "DROP INDEX b_id ON b;\n",
        );
    }
    p.file("migrations/README.md", "# our migrations\n");
    p.file("migrations/data_oauth.sql", "INSERT INTO a VALUES (99);\n");

    let (layout, order, ignored) = status(&p, &db, &[]);
    assert_eq!(layout, "diesel");
    assert_eq!(
        order,
        [
            "00000000000000",
            "20170101000000",
            "2019-02-26-002946",
            "2019-03-01-000000",
            "2019-03-02-000000"
        ]
    );
    assert_eq!(ignored, ["README.md", "data_oauth.sql"]);
    let text = p.run(&db, &["status", "-v"]).ok();
    assert!(text.stdout.contains("layout: diesel"), "{}", text.stdout);
    assert!(
        text.stdout.contains("ignored:") && text.stdout.contains("data_oauth.sql"),
        "{}",
        text.stdout
    );

    p.run(&db, &["up"]).ok();
    assert_eq!(db.tables(), ["a", "b", "setup"]);
    assert_eq!(
        db.rows("SELECT id FROM a"),
        [[Some("1".to_owned())]],
        "the loose data file did not run"
    );
    assert_eq!(versions(&db).len(), 5);

    p.run(&db, &["down", "--to", "0"])
        .code(1)
        .stderr_has("2019-03-01-000000_seed_a/down.sql holds no statement")
        .stderr_has("nothing was reverted");
    assert_eq!(versions(&db).len(), 5);
    p.file(
        "migrations/2019-03-01-000000_seed_a/down.sql",
        "-- waymark:empty-down: the row may stay\n",
    );
    p.run(&db, &["down", "--to", "0"]).ok();
    assert_eq!(db.tables(), ["setup"], "down --to 0 keeps version 0");
    assert_eq!(versions(&db), ["00000000000000"]);
    p.run(&db, &["down", "--all"]).ok();
    assert!(db.tables().is_empty());
    assert!(versions(&db).is_empty());
}

/// sqlx: flat files, a lone `<version>_<name>.sql` (irreversible) and an
/// `.up.sql`/`.down.sql` pair; folders and files without `_` are not
/// migrations.
fn sqlx(kind: Kind) {
    let db = TestDb::new(kind);
    let p = Project::new();
    p.file(
        "migrations/20240101000000_create_a.sql",
        "CREATE TABLE a (id INT PRIMARY KEY);\n",
    );
    p.file(
        "migrations/20240102000000_create_b.up.sql",
        "CREATE TABLE b (id INT PRIMARY KEY);\n",
    );
    p.file("migrations/20240102000000_create_b.down.sql", "DROP TABLE b;\n");
    p.file("migrations/schema.sql", "CREATE TABLE nope (id INT);\n");
    p.file("migrations/old/20230101000000_x.sql", "CREATE TABLE nope (id INT);\n");
    let (layout, order, ignored) = status(&p, &db, &["--layout", "sqlx"]);
    assert_eq!(layout, "sqlx");
    assert_eq!(order, ["20240101000000", "20240102000000"]);
    assert_eq!(ignored, ["old", "schema.sql"]);

    p.run(&db, &["--layout", "sqlx", "up"]).ok();
    assert_eq!(db.tables(), ["a", "b"]);
    p.run(&db, &["--layout", "sqlx", "down"]).ok();
    assert_eq!(db.tables(), ["a"]);
    // The lone file has no down: refused, naming it, and nothing changes.
    p.run(&db, &["--layout", "sqlx", "down"])
        .code(1)
        .stderr_has("20240101000000_create_a");
    assert_eq!(db.tables(), ["a"]);
    assert_eq!(versions(&db), ["20240101000000"]);
}

/// golang-migrate: `.up.sql` and `.down.sql` only; a lone `.sql` file is
/// not one of its migrations.
fn golang_migrate(kind: Kind) {
    let db = TestDb::new(kind);
    let p = Project::new();
    p.file(
        "migrations/000001_create_a.up.sql",
        "CREATE TABLE a (id INT PRIMARY KEY);\n",
    );
    p.file("migrations/000001_create_a.down.sql", "DROP TABLE a;\n");
    p.file(
        "migrations/000002_create_b.up.sql",
        "CREATE TABLE b (id INT PRIMARY KEY);\n",
    );
    p.file("migrations/000002_create_b.down.sql", "DROP TABLE b;\n");
    p.file("migrations/000003_notes.sql", "CREATE TABLE nope (id INT);\n");
    p.file("migrations/README.md", "how to migrate\n");
    let (layout, order, ignored) = status(&p, &db, &["--layout", "golang-migrate"]);
    assert_eq!(layout, "golang-migrate");
    assert_eq!(order, ["000001", "000002"]);
    assert_eq!(ignored, ["000003_notes.sql", "README.md"]);

    p.run(&db, &["--layout", "golang-migrate", "up"]).ok();
    assert_eq!(db.tables(), ["a", "b"]);
    p.run(&db, &["--layout", "golang-migrate", "down", "--all"]).ok();
    assert!(db.tables().is_empty());
    assert!(versions(&db).is_empty());
}

/// dbmate: one file per migration with `-- migrate:up` and `-- migrate:down`
/// sections, detected from the markers; `transaction:false` runs a section
/// outside a transaction; a failing statement is reported at its line in
/// the file.
fn dbmate(kind: Kind) {
    let db = TestDb::new(kind);
    let p = Project::new();
    p.file(
        "migrations/20240101000000_create_a.sql",
        "-- migrate:up\nCREATE TABLE a (id INT PRIMARY KEY);\nINSERT INTO a (id) VALUES (1);\n\n\
         -- migrate:down\nDROP TABLE a;\n",
    );
    p.file(
        "migrations/20240102000000_create_b.sql",
        "-- migrate:up transaction:false\nCREATE TABLE b (id INT PRIMARY KEY);\n\n-- migrate:down\nDROP TABLE b;\n",
    );
    p.file("migrations/notes.md", "dbmate keeps db/schema.sql elsewhere\n");
    let (layout, order, ignored) = status(&p, &db, &[]);
    assert_eq!(layout, "dbmate");
    assert_eq!(order, ["20240101000000", "20240102000000"]);
    assert_eq!(ignored, ["notes.md"]);

    let up = p.run(&db, &["up", "--json"]).ok().json();
    let done = up["done"].as_array().unwrap();
    assert_eq!(done[1]["transactional"], false, "transaction:false is honoured");
    assert_eq!(done[0]["transactional"], kind != Kind::Mysql);
    assert_eq!(db.tables(), ["a", "b"]);
    assert_eq!(db.rows("SELECT id FROM a"), [[Some("1".to_owned())]]);
    p.run(&db, &["down", "--all"]).ok();
    assert!(db.tables().is_empty());

    // The down section's statement fails: named at its line of the file.
    p.file(
        "migrations/20240103000000_broken.sql",
        "-- migrate:up\nCREATE TABLE c (id INT PRIMARY KEY);\n-- migrate:down\nDROP TABLE no_such_table;\n",
    );
    p.run(&db, &["up"]).ok();
    p.run(&db, &["down", "--steps", "1"])
        .code(1)
        .stderr_has("20240103000000_broken.sql:4");
    assert_eq!(db.tables(), ["a", "b", "c"]);
}

/// The body of a trigger that copies each new row of `a` into `log`, as
/// goose users write it between `StatementBegin` and `StatementEnd`.
fn trigger(kind: Kind) -> &'static str {
    match kind {
        Kind::Postgres => {
            "CREATE FUNCTION log_a() RETURNS trigger LANGUAGE plpgsql AS $$\n\
             BEGIN\n  INSERT INTO log (id) VALUES (NEW.id);\n  RETURN NEW;\nEND;\n$$;\n\
             -- +goose StatementEnd\n-- +goose StatementBegin\n\
             CREATE TRIGGER a_log AFTER INSERT ON a FOR EACH ROW EXECUTE FUNCTION log_a();\n"
        }
        // Without goose's markers, the `;` inside would end the statement.
        Kind::Mysql | Kind::Sqlite => {
            "CREATE TRIGGER a_log AFTER INSERT ON a FOR EACH ROW\nBEGIN\n  INSERT INTO log (id) VALUES (NEW.id);\n  \
             INSERT INTO log (id) VALUES (NEW.id + 1000);\nEND;\n"
        }
    }
}

/// goose: `-- +goose Up`/`Down`, statement blocks kept whole (a MySQL
/// trigger body among them, which only the markers keep in one piece),
/// `NO TRANSACTION`; `.go` migrations are an error naming the file.
fn goose(kind: Kind) {
    let db = TestDb::new(kind);
    let p = Project::new();
    let drop_trigger = match kind {
        Kind::Postgres => "DROP TRIGGER a_log ON a;\nDROP FUNCTION log_a();\n",
        _ => "DROP TRIGGER a_log;\n",
    };
    p.file(
        "migrations/00001_create_a.sql",
        "-- +goose Up\nCREATE TABLE a (id INT PRIMARY KEY);\nCREATE TABLE log (id INT);\n\n\
         -- +goose Down\nDROP TABLE log;\nDROP TABLE a;\n",
    );
    p.file(
        "migrations/00002_trigger.sql",
        format!(
            "-- +goose Up\n-- +goose StatementBegin\n{}-- +goose StatementEnd\n\n-- +goose Down\n{drop_trigger}",
            trigger(kind)
        ),
    );
    p.file(
        "migrations/00003_index.sql",
        "-- +goose NO TRANSACTION\n-- +goose Up\nCREATE INDEX a_id ON a (id);\n\n-- +goose Down\n-- +goose StatementBegin\n"
            .to_owned()
            + if kind == Kind::Mysql { "DROP INDEX a_id ON a;\n" } else { "DROP INDEX a_id;\n" }
            + "-- +goose StatementEnd\n",
    );
    p.file("migrations/dbconf.yml", "development: {}\n");
    let (layout, order, ignored) = status(&p, &db, &[]);
    assert_eq!(layout, "goose");
    assert_eq!(order, ["00001", "00002", "00003"]);
    assert_eq!(ignored, ["dbconf.yml"]);

    let up = p.run(&db, &["up", "--json"]).ok().json();
    assert_eq!(up["done"][2]["transactional"], false, "NO TRANSACTION is honoured");
    db.execute("INSERT INTO a (id) VALUES (7)");
    let mut logged = db.rows("SELECT id FROM log ORDER BY id");
    logged.sort();
    let expected: &[&str] = if kind == Kind::Postgres { &["7"] } else { &["1007", "7"] };
    assert_eq!(
        logged,
        expected.iter().map(|v| vec![Some((*v).to_owned())]).collect::<Vec<_>>(),
        "the trigger body ran whole"
    );
    p.run(&db, &["down", "--all"]).ok();
    assert!(db.tables().is_empty());

    // A Go migration cannot run here: refused before anything runs.
    p.file("migrations/00004_backfill.go", "package migrations\n");
    p.run(&db, &["up"]).code(2).stderr_has("00004_backfill.go");
    assert!(db.tables().is_empty());
}

/// Flyway: `V<version>__` scripts anywhere below the folder, `_` in a
/// version read as `.` and ordered numerically, `U<version>__` undo
/// scripts as downs, `executeInTransaction=false` in a `.sql.conf`;
/// repeatable `R__` scripts are refused, naming the file.
fn flyway(kind: Kind) {
    let db = TestDb::new(kind);
    let p = Project::new();
    p.file("migrations/V1__create_a.sql", "CREATE TABLE a (id INT PRIMARY KEY);\n");
    p.file("migrations/U1__create_a.sql", "DROP TABLE a;\n");
    p.file(
        "migrations/V1_2__create_b.sql",
        "CREATE TABLE b (id INT PRIMARY KEY);\n",
    );
    p.file("migrations/U1_2__create_b.sql", "DROP TABLE b;\n");
    p.file(
        "migrations/later/V1_10__create_c.sql",
        "CREATE TABLE c (id INT PRIMARY KEY);\n",
    );
    p.file(
        "migrations/later/V1_10__create_c.sql.conf",
        "executeInTransaction=false\n",
    );
    p.file("migrations/later/U1_10__create_c.sql", "DROP TABLE c;\n");
    p.file("migrations/flyway.conf", "flyway.locations=filesystem:migrations\n");
    let (layout, order, ignored) = status(&p, &db, &[]);
    assert_eq!(layout, "flyway");
    assert_eq!(order, ["1", "1.2", "1.10"]);
    assert_eq!(ignored, ["flyway.conf"]);

    let up = p.run(&db, &["up", "--json"]).ok().json();
    assert_eq!(
        up["done"][2]["transactional"], false,
        "executeInTransaction=false is honoured"
    );
    assert_eq!(db.tables(), ["a", "b", "c"]);
    p.run(&db, &["down", "--steps", "2"]).ok();
    assert_eq!(db.tables(), ["a"]);
    assert_eq!(versions(&db), ["1"]);

    p.file("migrations/R__views.sql", "CREATE VIEW v AS SELECT id FROM a;\n");
    p.run(&db, &["up"]).code(2).stderr_has("R__views.sql");
    assert_eq!(db.tables(), ["a"]);
    assert_eq!(versions(&db), ["1"]);
}

each_dialect!(diesel, sqlx, golang_migrate, dbmate, goose, flyway);
