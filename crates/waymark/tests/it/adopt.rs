//! `baseline --from TOOL`: a database another tool migrated is adopted
//! from that tool's own history table, exactly what it applied and no
//! more, with nothing run; every disagreement refuses with the full list,
//! and nothing is recorded.

use sha2::{Digest, Sha384};

use crate::common::{Kind, Project, TestDb, each_dialect};

/// The other tool's history table, as that tool makes it (the columns
/// waymark reads, and enough of the rest to look the part).
fn tool_table(kind: Kind, tool: &str) -> String {
    let ts = match kind {
        Kind::Mysql => "DATETIME",
        _ => "TIMESTAMP",
    };
    match tool {
        "diesel" => format!(
            "CREATE TABLE __diesel_schema_migrations (version VARCHAR(50) PRIMARY KEY NOT NULL, \
             run_on {ts} NOT NULL DEFAULT CURRENT_TIMESTAMP)"
        ),
        "sqlx" => format!(
            "CREATE TABLE _sqlx_migrations (version BIGINT PRIMARY KEY, description TEXT NOT NULL, \
             installed_on {ts} NOT NULL DEFAULT CURRENT_TIMESTAMP, success BOOLEAN NOT NULL, checksum {} NOT NULL, \
             execution_time BIGINT NOT NULL)",
            if kind == Kind::Postgres { "BYTEA" } else { "BLOB" }
        ),
        "golang-migrate" => {
            "CREATE TABLE schema_migrations (version BIGINT NOT NULL PRIMARY KEY, dirty BOOLEAN NOT NULL)".to_owned()
        }
        "dbmate" => "CREATE TABLE schema_migrations (version VARCHAR(128) NOT NULL PRIMARY KEY)".to_owned(),
        "goose" => format!(
            "CREATE TABLE goose_db_version (id INT PRIMARY KEY, version_id BIGINT NOT NULL, is_applied BOOLEAN NOT NULL, \
             tstamp {ts} NULL DEFAULT CURRENT_TIMESTAMP)"
        ),
        "flyway" => format!(
            "CREATE TABLE flyway_schema_history (installed_rank INT PRIMARY KEY, version VARCHAR(50), \
             description VARCHAR(200) NOT NULL, type VARCHAR(20) NOT NULL, script VARCHAR(1000) NOT NULL, checksum INT, \
             installed_by VARCHAR(100) NOT NULL, installed_on {ts} NOT NULL DEFAULT CURRENT_TIMESTAMP, \
             execution_time INT NOT NULL, success BOOLEAN NOT NULL)"
        ),
        other => panic!("no table for {other}"),
    }
}

fn history(db: &TestDb) -> Vec<(String, String)> {
    let mut rows = db.history();
    rows.sort();
    rows
}

/// Adopts `tool`'s history on a database whose schema that tool made:
/// `rows` are its history rows, `applied` the versions it says are
/// applied (their tables exist), `pending` the folder's others. Then `up`
/// runs only the pending ones.
fn adopt(
    kind: Kind,
    tool: &str,
    files: &[(&str, &str)],
    rows: &[&str],
    applied: &[&str],
    pending: &[&str],
    out_of_order: bool,
) {
    let db = TestDb::new(kind);
    let p = Project::new();
    for (path, text) in files {
        p.file(&format!("migrations/{path}"), text);
    }
    db.execute(&tool_table(kind, tool));
    for row in rows {
        db.execute(row);
    }
    for v in applied {
        db.execute(&format!(
            "CREATE TABLE t_{} (id INT PRIMARY KEY)",
            v.replace(['-', '.'], "_")
        ));
    }
    let before = db.tables();

    let out = p.run(&db, &["baseline", "--from", tool, "--json"]).ok().json();
    let adopted: Vec<&str> = out["baselined"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["version"].as_str().unwrap())
        .collect();
    assert_eq!(adopted, applied);
    let mut recorded: Vec<(String, String)> = applied
        .iter()
        .map(|v| ((*v).to_owned(), "baseline".to_owned()))
        .collect();
    recorded.sort();
    assert_eq!(history(&db), recorded);
    assert_eq!(db.tables(), before, "nothing ran, and {tool}'s table is left as it was");

    // A second adoption is refused: waymark's history is no longer empty.
    p.run(&db, &["baseline", "--from", tool])
        .code(1)
        .stderr_has("already records");

    // A pending migration older than an adopted one (dbmate applies out
    // of order) waits for the flag that allows it, as after any history.
    let mut up_args = vec!["up", "--json"];
    if out_of_order {
        p.run(&db, &up_args)
            .code(1)
            .stderr_has("older than the newest applied one");
        up_args.push("--allow-out-of-order");
    }
    let up = p.run(&db, &up_args).ok().json();
    let ran: Vec<&str> = up["done"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["version"].as_str().unwrap())
        .collect();
    assert_eq!(ran, pending);
    let status = p.run(&db, &["status", "--json"]).ok().json();
    assert!(
        status["migrations"]
            .as_array()
            .unwrap()
            .iter()
            .all(|m| m["state"] == "baseline" || m["state"] == "applied"),
        "{status}"
    );
}

/// `baseline --from` is refused, naming each of `expected`, and records
/// nothing.
fn refused(kind: Kind, tool: &str, files: &[(&str, &str)], rows: &[&str], expected: &[&str]) {
    let db = TestDb::new(kind);
    let p = Project::new();
    for (path, text) in files {
        p.file(&format!("migrations/{path}"), text);
    }
    if !rows.is_empty() {
        db.execute(&tool_table(kind, tool));
    }
    for row in rows {
        db.execute(row);
    }
    let mut run = p.run(&db, &["baseline", "--from", tool]).code(1);
    for e in expected {
        run = run.stderr_has(e);
    }
    assert!(history(&db).is_empty(), "{}", run.stderr);
}

fn create(v: &str) -> String {
    format!("CREATE TABLE t_{} (id INT PRIMARY KEY);\n", v.replace(['-', '.'], "_"))
}

fn diesel(kind: Kind) {
    let files = [
        ("00000000000000_diesel_initial_setup/up.sql", create("00000000000000")),
        ("2019-02-26-002946_a/up.sql", create("2019-02-26-002946")),
        ("20190301000000_b/up.sql", create("20190301000000")),
        ("2019-03-02-000000_c/up.sql", create("2019-03-02-000000")),
    ];
    let files: Vec<(&str, &str)> = files.iter().map(|(a, b)| (*a, b.as_str())).collect();
    // diesel writes versions without their dashes.
    let rows = [
        "INSERT INTO __diesel_schema_migrations (version) VALUES ('00000000000000'), ('20190226002946'), ('20190301000000')",
    ];
    adopt(
        kind,
        "diesel",
        &files,
        &rows,
        &["00000000000000", "2019-02-26-002946", "20190301000000"],
        &["2019-03-02-000000"],
        false,
    );
    refused(
        kind,
        "diesel",
        &files,
        &[
            "INSERT INTO __diesel_schema_migrations (version) VALUES ('00000000000000'), ('20200101000000'), ('20210101000000')",
        ],
        &[
            "20200101000000",
            "20210101000000",
            "does not hold",
            "nothing was recorded",
        ],
    );
    // No diesel table at all.
    refused(
        kind,
        "diesel",
        &files,
        &[],
        &["no diesel history here", "__diesel_schema_migrations"],
    );
}

fn sqlx(kind: Kind) {
    let files = [
        ("20240101000000_a.sql", create("20240101000000")),
        ("20240102000000_b.up.sql", create("20240102000000")),
        ("20240102000000_b.down.sql", "DROP TABLE t_20240102000000;\n".to_owned()),
        ("20240103000000_c.sql", create("20240103000000")),
    ];
    let files: Vec<(&str, &str)> = files.iter().map(|(a, b)| (*a, b.as_str())).collect();
    // sqlx's checksum: SHA-384 of the (up) file as it applied it.
    let sum = |file: &str| {
        let text = files.iter().find(|(p, _)| *p == file).unwrap().1;
        let hex: String = Sha384::digest(text.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        match kind {
            Kind::Postgres => format!("decode('{hex}', 'hex')"),
            _ => format!("X'{hex}'"),
        }
    };
    let row = |v: &str, ok: bool, checksum: String| {
        format!(
            "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
             VALUES ({v}, 'm', {ok}, {checksum}, 1)"
        )
    };
    let (a, b) = (sum("20240101000000_a.sql"), sum("20240102000000_b.up.sql"));
    adopt(
        kind,
        "sqlx",
        &files,
        &[
            &row("20240101000000", true, a.clone()),
            &row("20240102000000", true, b.clone()),
        ],
        &["20240101000000", "20240102000000"],
        &["20240103000000"],
        false,
    );
    refused(
        kind,
        "sqlx",
        &files,
        &[
            &row("20240101000000", true, a.clone()),
            &row("20240102000000", false, b),
        ],
        &["sqlx records 20240102000000 as failed"],
    );
    // The file of 20240102000000 changed after sqlx applied it.
    refused(
        kind,
        "sqlx",
        &files,
        &[&row("20240101000000", true, a.clone()), &row("20240102000000", true, a)],
        &[
            "sqlx applied 20240102000000 from a different",
            "20240102000000_b.up.sql",
        ],
    );
}

fn golang_migrate(kind: Kind) {
    let files = [
        ("000001_a.up.sql", create("000001")),
        ("000001_a.down.sql", "DROP TABLE t_000001;\n".to_owned()),
        ("000002_b.up.sql", create("000002")),
        ("000002_b.down.sql", "DROP TABLE t_000002;\n".to_owned()),
        ("000003_c.up.sql", create("000003")),
        ("000003_c.down.sql", "DROP TABLE t_000003;\n".to_owned()),
    ];
    let files: Vec<(&str, &str)> = files.iter().map(|(a, b)| (*a, b.as_str())).collect();
    // golang-migrate keeps one row: the newest version, without zeros.
    adopt(
        kind,
        "golang-migrate",
        &files,
        &["INSERT INTO schema_migrations (version, dirty) VALUES (2, FALSE)"],
        &["000001", "000002"],
        &["000003"],
        false,
    );
    refused(
        kind,
        "golang-migrate",
        &files,
        &["INSERT INTO schema_migrations (version, dirty) VALUES (2, TRUE)"],
        &["golang-migrate records 2 as dirty"],
    );
    refused(
        kind,
        "golang-migrate",
        &files,
        &["INSERT INTO schema_migrations (version, dirty) VALUES (9, FALSE)"],
        &["is at version 9"],
    );
}

fn dbmate(kind: Kind) {
    let section = |v: &str| format!("-- migrate:up\n{}\n-- migrate:down\nDROP TABLE t_{v};\n", create(v));
    let files = [
        ("20240101000000_a.sql", section("20240101000000")),
        ("20240102000000_b.sql", section("20240102000000")),
        ("20240103000000_c.sql", section("20240103000000")),
    ];
    let files: Vec<(&str, &str)> = files.iter().map(|(a, b)| (*a, b.as_str())).collect();
    // dbmate records each version; an out-of-order one stays pending.
    adopt(
        kind,
        "dbmate",
        &files,
        &["INSERT INTO schema_migrations (version) VALUES ('20240101000000'), ('20240103000000')"],
        &["20240101000000", "20240103000000"],
        &["20240102000000"],
        true,
    );
    // golang-migrate's table of the same name is told apart.
    let db = TestDb::new(kind);
    let p = Project::new();
    for (path, text) in &files {
        p.file(&format!("migrations/{path}"), text);
    }
    db.execute(&tool_table(kind, "golang-migrate"));
    p.run(&db, &["baseline", "--from", "dbmate"])
        .code(1)
        .stderr_has("try --from golang-migrate");
    assert!(history(&db).is_empty());
}

fn goose(kind: Kind) {
    let section = |v: &str| format!("-- +goose Up\n{}\n-- +goose Down\nDROP TABLE t_{v};\n", create(v));
    let files = [
        ("00001_a.sql", section("00001")),
        ("00002_b.sql", section("00002")),
        ("00003_c.sql", section("00003")),
    ];
    let files: Vec<(&str, &str)> = files.iter().map(|(a, b)| (*a, b.as_str())).collect();
    let row = |id: u32, v: u32, applied: bool| {
        format!("INSERT INTO goose_db_version (id, version_id, is_applied) VALUES ({id}, {v}, {applied})")
    };
    // goose's own row 0, three applies and a revert of 3: 1 and 2 stand.
    adopt(
        kind,
        "goose",
        &files,
        &[
            &row(1, 0, true),
            &row(2, 1, true),
            &row(3, 2, true),
            &row(4, 3, true),
            &row(5, 3, false),
        ],
        &["00001", "00002"],
        &["00003"],
        false,
    );
    refused(
        kind,
        "goose",
        &files,
        &[&row(1, 0, true), &row(2, 1, true), &row(3, 7, true)],
        &["goose applied version 7"],
    );
}

fn flyway(kind: Kind) {
    let files = [
        ("V1__a.sql", create("1")),
        ("V1_1__b.sql", create("1.1")),
        ("V1_2__c.sql", create("1.2")),
        ("V1_3__d.sql", create("1.3")),
    ];
    let files: Vec<(&str, &str)> = files.iter().map(|(a, b)| (*a, b.as_str())).collect();
    let row = |rank: u32, v: &str, kind: &str, ok: bool| {
        let v = if v.is_empty() {
            "NULL".to_owned()
        } else {
            format!("'{v}'")
        };
        format!(
            "INSERT INTO flyway_schema_history (installed_rank, version, description, type, script, installed_by, \
             execution_time, success) VALUES ({rank}, {v}, 'd', '{kind}', 's', 'flyway', 1, {ok})"
        )
    };
    // A baseline at 1, 1.1 applied, 1.2 applied and undone.
    adopt(
        kind,
        "flyway",
        &files,
        &[
            &row(1, "1", "BASELINE", true),
            &row(2, "1.1", "SQL", true),
            &row(3, "1.2", "SQL", true),
            &row(4, "1.2", "UNDO_SQL", true),
        ],
        &["1", "1.1"],
        &["1.2", "1.3"],
        false,
    );
    refused(
        kind,
        "flyway",
        &files,
        &[
            &row(1, "1", "SQL", true),
            &row(2, "1.1", "SQL", false),
            &row(3, "", "SQL", true),
        ],
        &["flyway records 1.1 as failed", "repeatable migration (R__)"],
    );
}

each_dialect!(diesel, sqlx, golang_migrate, dbmate, goose, flyway);
