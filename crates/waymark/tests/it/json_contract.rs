//! What `--json` prints, pinned: each command's reply on a real database,
//! as a snapshot (`snapshots/`), so that a change to what a pipeline
//! parses is a diff in review. Only what differs from run to run is
//! redacted: times, durations, who and where, temporary paths.
//! `INSTA_UPDATE=always cargo test -p waymark --test it json_contract`
//! writes new snapshots; review them before committing.
//!
//! The shapes are documented as JSON Schemas in `docs/json/`, generated
//! from the same types (`src/json/`).

use serde_json::Value;

use crate::common::{Kind, Project, Run, TestDb};

/// Keys whose values differ between runs; a `null` stays visible.
const VARYING: &[&str] = &[
    "applied_at",
    "created_at",
    "duration_ms",
    "applied_by",
    "hostname",
    "backup_id",
    "bytes",
];

/// Asserts that `value` is what `docs/json/<schema>.schema.json` says the
/// command prints.
#[track_caller]
pub(crate) fn conforms(schema: &str, value: &Value) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../../docs/json/{schema}.schema.json"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let validator = jsonschema::validator_for(&serde_json::from_str(&text).unwrap())
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let errors: Vec<String> = validator
        .iter_errors(value)
        .map(|e| format!("{}: {e}", e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "not as {schema}.schema.json says: {errors:#?}\n{value:#}"
    );
}

/// The reply of `run`, checked against the command's `schema`, with its
/// varying parts named instead: each of `paths` (a temporary folder, a
/// URL) by its label, and [`VARYING`] keys.
#[track_caller]
fn reply(run: &Run, schema: &str, paths: &[(&str, &str)]) -> Value {
    conforms(schema, &run.json());
    let mut text = run.stdout.clone();
    for (path, label) in paths {
        text = text.replace(path, label);
    }
    let mut value: Value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{}", run.stdout));
    redact(&mut value);
    value
}

fn redact(value: &mut Value) {
    match value {
        Value::Object(map) => {
            for (key, v) in map.iter_mut() {
                if VARYING.contains(&key.as_str()) && !v.is_null() {
                    *v = Value::String(format!("[{key}]"));
                } else {
                    redact(v);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(redact),
        _ => {}
    }
}

/// The migration commands, each in the states a pipeline meets: pending,
/// applied, reverted, modified, failed and repaired.
#[test]
fn migration_commands() {
    let db = TestDb::new(Kind::Sqlite);
    let p = Project::new();
    let dir = p.dir.path().to_str().unwrap().to_owned();
    let at = [(dir.as_str(), "[project]"), (db.url.as_str(), "[database]")];
    p.migration(
        "001_people",
        "CREATE TABLE people (id INTEGER PRIMARY KEY, name TEXT, nickname TEXT);\n\
         INSERT INTO people VALUES (1, 'Ada', 'countess');",
        Some("DROP TABLE people;"),
    );
    p.migration(
        "002_no_nicknames",
        "ALTER TABLE people DROP COLUMN nickname;",
        Some("ALTER TABLE people ADD COLUMN nickname TEXT;"),
    );
    p.file("migrations/README.md", "notes");

    insta::assert_json_snapshot!(
        "status_pending",
        reply(&p.run(&db, &["--json", "status"]).ok(), "status", &at)
    );
    insta::assert_json_snapshot!("plan_up", reply(&p.run(&db, &["--json", "plan"]).ok(), "plan", &at));
    insta::assert_json_snapshot!("up", reply(&p.run(&db, &["--json", "up"]).ok(), "up", &at));
    insta::assert_json_snapshot!(
        "status_applied",
        reply(&p.run(&db, &["--json", "status"]).ok(), "status", &at)
    );
    insta::assert_json_snapshot!("verify", reply(&p.run(&db, &["--json", "verify"]).ok(), "verify", &at));
    insta::assert_json_snapshot!(
        "plan_down",
        reply(&p.run(&db, &["--json", "plan", "--down"]).ok(), "plan", &at)
    );
    insta::assert_json_snapshot!("redo", reply(&p.run(&db, &["--json", "redo"]).ok(), "redo", &at));
    insta::assert_json_snapshot!("down", reply(&p.run(&db, &["--json", "down"]).ok(), "down", &at));

    // A file changed after it ran: verify says which, and exits 3.
    p.migration(
        "001_people",
        "CREATE TABLE people (id INTEGER PRIMARY KEY, name TEXT, nickname TEXT, born INTEGER);",
        Some("DROP TABLE people;"),
    );
    insta::assert_json_snapshot!(
        "verify_modified",
        reply(&p.run(&db, &["--json", "verify"]).code(3), "verify", &at)
    );
    insta::assert_json_snapshot!(
        "repair",
        reply(
            &p.run(&db, &["--json", "repair", "--accept-checksums"]).ok(),
            "repair",
            &at
        )
    );

    // A failing migration: what was done, and the error with its hint.
    p.migration("003_broken", "INSERT INTO nowhere VALUES (1);", None);
    insta::assert_json_snapshot!("up_failed", reply(&p.run(&db, &["--json", "up"]).code(1), "up", &at));

    // A command that fails before it has a report.
    insta::assert_json_snapshot!(
        "error",
        reply(&p.run(&db, &["--json", "down", "--to", "999"]).code(2), "error", &at)
    );
    let fresh = TestDb::new(Kind::Sqlite);
    let at_fresh = [(dir.as_str(), "[project]"), (fresh.url.as_str(), "[database]")];
    insta::assert_json_snapshot!(
        "baseline",
        reply(
            &p.run(&fresh, &["--json", "baseline", "002"]).ok(),
            "baseline",
            &at_fresh
        )
    );
    assert_eq!(fresh.history().len(), 2, "{:?}", fresh.history());
}

/// `new` names its files by the time; the snapshot names the version.
#[test]
fn new_names_the_files_it_wrote() {
    let db = TestDb::new(Kind::Sqlite);
    let p = Project::new();
    let run = p.run(&db, &["--json", "new", "add_people"]).ok();
    let folder = std::fs::read_dir(p.migrations()).unwrap().next().unwrap().unwrap();
    let folder = folder.file_name().into_string().unwrap();
    let version = folder.strip_suffix("_add_people").unwrap().to_owned();
    let dir = p.dir.path().to_str().unwrap().to_owned();
    insta::assert_json_snapshot!(
        "new",
        reply(
            &run,
            "new",
            &[(dir.as_str(), "[project]"), (version.as_str(), "[version]")]
        )
    );
}

#[test]
fn backup_commands() {
    let db = TestDb::new(Kind::Sqlite);
    let p = Project::new();
    let dir = p.dir.path().to_str().unwrap().to_owned();
    p.migration(
        "001_people",
        "CREATE TABLE people (id INTEGER PRIMARY KEY, name TEXT);\n\
         INSERT INTO people VALUES (1, 'Ada'), (2, 'Grace');",
        None,
    );
    p.run(&db, &["up"]).ok();
    let created = p.run(&db, &["--json", "backup", "create"]).ok();
    let id = created.json()["id"].as_str().unwrap().to_owned();
    let at = [
        (dir.as_str(), "[project]"),
        (db.url.as_str(), "[database]"),
        (id.as_str(), "[id]"),
    ];
    insta::assert_json_snapshot!("backup_create", reply(&created, "backup-create", &at));
    let set = format!("{dir}/backups/{id}");
    insta::assert_json_snapshot!(
        "backup_verify",
        reply(
            &p.run(&db, &["--json", "backup", "verify", &set, "--deep"]).ok(),
            "backup-verify",
            &at
        )
    );
    std::fs::create_dir(format!("{dir}/backups/20200101T000000Z-unfinished")).unwrap();
    insta::assert_json_snapshot!(
        "backup_list",
        reply(&p.run(&db, &["--json", "backup", "list"]).ok(), "backup-list", &at)
    );
    let to = TestDb::new(Kind::Sqlite);
    let at_to = [
        (dir.as_str(), "[project]"),
        (to.url.as_str(), "[target]"),
        (id.as_str(), "[id]"),
    ];
    insta::assert_json_snapshot!(
        "backup_restore",
        reply(
            &p.run(&db, &["--json", "backup", "restore", &set, "--to", &to.url]).ok(),
            "backup-restore",
            &at_to
        )
    );
    assert_eq!(to.rows("SELECT name FROM people ORDER BY id").len(), 2);

    // Damage to the people's rows (whose size, unlike the history's, is
    // the same every run): verify names it, says ok false and exits 3.
    let manifest: Value = serde_json::from_slice(&std::fs::read(format!("{set}/manifest.json")).unwrap()).unwrap();
    let people = manifest["tables"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "people" || t["info"]["name"] == "people")
        .unwrap_or_else(|| panic!("no people in {manifest}"));
    let chunk = people["chunks"][0]["file"].as_str().unwrap();
    std::fs::write(format!("{set}/{chunk}"), b"not zstd").unwrap();
    insta::assert_json_snapshot!(
        "backup_verify_damaged",
        reply(
            &p.run(&db, &["--json", "backup", "verify", &set]).code(3),
            "backup-verify",
            &at
        )
    );
}

#[test]
fn cutover_verify_compares_two_databases() {
    let source = TestDb::new(Kind::Postgres);
    let target = TestDb::new(Kind::Postgres);
    for db in [&source, &target] {
        db.execute("CREATE TABLE items (id INT PRIMARY KEY, name TEXT); INSERT INTO items SELECT g, 'i' || g FROM generate_series(1, 10) g;");
    }
    target.execute("UPDATE items SET name = 'changed' WHERE id = 7;");
    let p = Project::new();
    let at = [(source.url.as_str(), "[source]"), (target.url.as_str(), "[target]")];
    let run = p
        .run(
            &source,
            &[
                "--json",
                "cutover",
                "verify",
                "--source",
                &source.url,
                "--target",
                &target.url,
            ],
        )
        .code(3);
    insta::assert_json_snapshot!("cutover_verify", reply(&run, "cutover-verify", &at));
}

#[test]
fn plugin_commands() {
    let run = Run::from(
        std::process::Command::new(crate::common::BIN)
            .args(["--json", "plugin", "inspect", waymark_host::SEED_WASM_PATH])
            .env("WAYMARK_CACHE_DIR", crate::common::cache_dir())
            .output()
            .unwrap(),
    )
    .ok();
    // The component is built from source here; its digest, its size and
    // the WASI interfaces it imports are the toolchain's.
    let mut value = reply(&run, "plugin-inspect", &[(waymark_host::SEED_WASM_PATH, "[seed.wasm]")]);
    value["sha256"] = "[sha256]".into();
    value["size"] = "[size]".into();
    let imports = value["imports"].as_array_mut().unwrap();
    assert!(
        imports.iter().any(|i| i.as_str().unwrap().starts_with("wasi:")),
        "{imports:?}"
    );
    imports.retain(|i| i.as_str().unwrap().starts_with("waymark:"));
    insta::assert_json_snapshot!("plugin_inspect", value);

    let p = Project::new();
    let (setup, folder) = crate::plugins::seeded_roles(&p);
    let run = crate::plugins::plugin_test(
        &p,
        &[folder.to_str().unwrap(), "--setup", setup.to_str().unwrap(), "--json"],
    );
    let dir = p.dir.path().to_str().unwrap().to_owned();
    let mut value = reply(&run.ok(), "plugin-test", &[(dir.as_str(), "[project]")]);
    assert!(value["database"].as_str().unwrap().ends_with("scratch.db"), "{value}");
    value["database"] = "[scratch]".into();
    insta::assert_json_snapshot!("plugin_test", value);
}

/// The schema check itself catches a reply unlike its schema: a missing
/// field, a field of another type, a field no schema names.
#[test]
fn a_reply_unlike_its_schema_is_refused() {
    let good = serde_json::json!({ "ok": true, "created": ["migrations/1_a/up.sql"] });
    conforms("new", &good);
    for bad in [
        serde_json::json!({ "ok": true }),
        serde_json::json!({ "ok": "yes", "created": [] }),
        serde_json::json!({ "ok": true, "created": [1] }),
    ] {
        let refused = std::panic::catch_unwind(|| conforms("new", &bad));
        assert!(refused.is_err(), "{bad} passed as a `new` reply");
    }
    let plan_with_extra = serde_json::json!({ "ok": true, "waymark_plan": 1, "surprise": 1 });
    assert!(std::panic::catch_unwind(|| conforms("plan", &plan_with_extra)).is_err());
}
