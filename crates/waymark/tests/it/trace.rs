//! `waymark plan --trace` on PostgreSQL: the plan's statements run in a
//! transaction that is rolled back, and the server's `pg_locks` and
//! `relfilenode` say what each one locked and rewrote. Every lint rule's
//! lock claim is checked here against such a trace, so a rule cannot say a
//! lock the server does not take.

use serde_json::Value;
use waymark_core::{CLAIM_SETUP, RULES};

use crate::common::{Kind, Project, TestDb};
use crate::json_contract::conforms;
use crate::lock_waits::Blocker;

/// A project whose first migration makes the claims' tables, applied, and
/// whose second, pending, is `example`.
fn with_example(db: &TestDb, example: &str) -> Project {
    let p = Project::new();
    p.migration("1_setup", CLAIM_SETUP, None);
    p.migration("2_example", example, None);
    // Lint refuses `up` of an error finding on a big table only; the
    // setup's tables are small, and this is about the trace.
    p.run(db, &["up", "--to", "1"]).ok();
    p
}

/// The trace of `plan --trace --json`, checked against its schema.
fn trace(p: &Project, db: &TestDb, args: &[&str]) -> (i32, Value) {
    let mut all = vec!["plan", "--trace", "--json"];
    all.extend_from_slice(args);
    let run = p.run(db, &all);
    let reply = run.json();
    conforms("plan", &reply);
    (run.code, reply)
}

/// Every `(mode, table)` the trace's statements took, and the tables
/// they rewrote.
fn seen(reply: &Value) -> (Vec<(String, String)>, Vec<String>) {
    let statements = || {
        reply["trace"]["migrations"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|m| m["statements"].as_array().unwrap().iter())
    };
    let locks = statements()
        .flat_map(|s| s["locks"].as_array().unwrap().iter())
        .filter(|l| l["kind"] == "table")
        .map(|l| {
            (
                l["mode"].as_str().unwrap().to_owned(),
                l["relation"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let rewritten = statements()
        .flat_map(|s| s["rewritten"].as_array().unwrap().iter())
        .map(|t| t.as_str().unwrap().to_owned())
        .collect();
    (locks, rewritten)
}

#[test]
fn every_lock_a_rule_claims_is_seen_in_a_trace() {
    let mut checked = 0;
    for rule in RULES {
        for claim in rule.claims {
            let db = TestDb::new(Kind::Postgres);
            let p = with_example(&db, claim.example);
            let (code, reply) = trace(&p, &db, &[]);
            let context = format!("{} on {:?}\n{reply:#}", rule.id, claim.example);
            assert_eq!(code, 0, "{context}");
            // The rule fires on its example...
            let fired = reply["migrations"][0]["findings"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|f| f["rule"] == rule.id);
            assert!(fired, "the rule does not fire on its own example: {context}");
            // ...says the lock it claims...
            assert!(
                rule.lock.contains(claim.mode),
                "{}'s lock text does not say {}",
                rule.id,
                claim.mode
            );
            // ...and the server took it, and rewrote the table or not.
            let (locks, rewritten) = seen(&reply);
            assert!(
                locks.contains(&(claim.mode.to_owned(), claim.on.to_owned())),
                "the trace does not see {} on {}: {locks:?}\n{context}",
                claim.mode,
                claim.on
            );
            assert_eq!(
                rewritten.contains(&claim.on.to_owned()),
                claim.rewrites,
                "rewritten: {rewritten:?}\n{context}"
            );
            // Rolled back: the example left nothing behind.
            assert_eq!(db.history().len(), 1);
            checked += 1;
        }
    }
    // Each PostgreSQL rule that claims a lock has at least one example.
    for rule in RULES
        .iter()
        .filter(|r| r.dialects.contains(&waymark_core::Dialect::Postgres))
    {
        assert!(
            !rule.claims.is_empty() || ["concurrently-in-transaction", "no-lock-timeout"].contains(&rule.id),
            "{} claims a lock ({}) no trace checks",
            rule.id,
            rule.lock
        );
    }
    assert!(checked >= 12, "{checked} claims checked");
}

#[test]
fn a_trace_says_what_each_statement_did_and_changes_nothing() {
    let db = TestDb::new(Kind::Postgres);
    let p = with_example(
        &db,
        "ALTER TABLE accounts ALTER COLUMN name TYPE varchar(40);\n\
         ALTER TABLE accounts ALTER COLUMN age TYPE bigint;\n",
    );
    p.migration(
        "3_concurrent",
        "-- no-transaction\nCREATE INDEX CONCURRENTLY accounts_email ON accounts (email);\n",
        None,
    );
    let before = db.snapshot();
    let (code, reply) = trace(&p, &db, &[]);
    assert_eq!(code, 0, "{reply:#}");
    let m = &reply["trace"]["migrations"];
    let widen = &m[0]["statements"][0];
    let retype = &m[0]["statements"][1];
    assert_eq!(widen["line"], 1);
    // Widening a varchar keeps the table's file; lint, reading the
    // catalog's type, says nothing of it.
    assert_eq!(widen["rewritten"], serde_json::json!([]), "{reply:#}");
    assert!(retype["rewritten"] == serde_json::json!(["accounts"]), "{reply:#}");
    let findings: Vec<&Value> = reply["migrations"][0]["findings"].as_array().unwrap().iter().collect();
    let types: Vec<&Value> = findings
        .iter()
        .filter(|f| f["rule"] == "alter-column-type")
        .copied()
        .collect();
    assert_eq!(types.len(), 1, "{findings:#?}");
    assert_eq!(types[0]["line"], 2);
    assert!(
        types[0]["message"]
            .as_str()
            .unwrap()
            .contains("changes from integer to BIGINT"),
        "{types:#?}"
    );
    // On the target itself each statement waits at most the lock timeout
    // and holds what it got no longer.
    assert_eq!(reply["trace"]["lock_timeout_ms"], 1000);
    assert_eq!(reply["trace"]["statement_timeout_ms"], 2000);
    // A migration outside a transaction cannot be rolled back: not run.
    assert_eq!(m[1]["version"], "3");
    assert!(
        m[1]["skipped"].as_str().unwrap().contains("outside a transaction"),
        "{reply:#}"
    );
    assert_eq!(db.snapshot(), before, "the trace changed the database");
    assert_eq!(db.history().len(), 1);

    // The text says the same, per statement.
    let run = p.run(&db, &["plan", "--trace"]).ok();
    assert!(
        run.stdout.contains("locks: ACCESS EXCLUSIVE on table accounts"),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("rewrote: accounts"), "{}", run.stdout);
    assert!(
        run.stdout.contains("not run: it runs outside a transaction"),
        "{}",
        run.stdout
    );
}

#[test]
fn a_trace_never_waits_behind_a_lock_and_says_where_it_stopped() {
    let db = TestDb::new(Kind::Postgres);
    let p = with_example(&db, "CREATE INDEX accounts_email ON accounts (email);\n");
    p.file("waymark.toml", "[locks]\ntimeout = \"200ms\"\n");
    // A writer holds ROW EXCLUSIVE, which CREATE INDEX's SHARE waits for.
    let blocker = Blocker::holding(&db, "UPDATE accounts SET age = age WHERE id = 1");
    let blocker_id = blocker.id;
    let started = std::time::Instant::now();
    let run = p.run(&db, &["plan", "--trace"]);
    let took = started.elapsed();
    blocker.commit();
    let run = run
        .code(1)
        .stderr_has("error: trace stopped at migrations/2_example/up.sql:1: ")
        .stderr_has("lock timeout")
        .stderr_has(&format!("  held by pid {blocker_id} ("))
        .stderr_has("idle in transaction")
        .stderr_has("UPDATE accounts SET age = age WHERE id = 1")
        .stderr_has("hint: another session holds a lock it needs");
    assert!(
        took < std::time::Duration::from_secs(5),
        "waited {took:?}: {}",
        run.stderr
    );
    // The same in JSON, with ok false as the exit code says.
    let blocker = Blocker::holding(&db, "UPDATE accounts SET age = age WHERE id = 1");
    let blocker_id = blocker.id;
    let (code, reply) = trace(&p, &db, &[]);
    blocker.commit();
    assert_eq!(code, 1);
    assert_eq!(reply["ok"], false);
    assert_eq!(reply["trace"]["stopped"]["lock_timeout"], true, "{reply:#}");
    assert_eq!(reply["trace"]["stopped"]["line"], 1);
    let held_by = reply["trace"]["stopped"]["held_by"][0].as_str().unwrap_or_default();
    assert!(held_by.starts_with(&format!("pid {} (", blocker_id)), "{reply:#}");
    assert!(
        db.rows("SELECT indexname::text FROM pg_indexes WHERE indexname = 'accounts_email'")
            .is_empty()
    );
}

#[test]
fn a_trace_runs_on_a_scratch_copy_only_in_the_same_state() {
    let db = TestDb::new(Kind::Postgres);
    let scratch = TestDb::new(Kind::Postgres);
    let p = with_example(&db, "ALTER TABLE accounts ALTER COLUMN email SET NOT NULL;\n");
    // The scratch database is behind the target: refused, naming both.
    p.run(&db, &["plan", "--trace", "--scratch-url", &scratch.url])
        .code(2)
        .stderr_has(&format!(
            "the scratch database {} is not in the target's state: the target has 1 applied, the newest 1, the \
             scratch database none applied",
            waymark_core::redact(&scratch.url)
        ));
    // Brought to the same state, it is traced without the target's bound.
    p.run(&scratch, &["up", "--to", "1"]).ok();
    let (code, reply) = trace(&p, &db, &["--scratch-url", &scratch.url]);
    assert_eq!(code, 0, "{reply:#}");
    assert_eq!(reply["trace"]["target"], waymark_core::redact(&scratch.url));
    assert!(reply["trace"].get("statement_timeout_ms").is_none(), "{reply:#}");
    let (locks, _) = seen(&reply);
    assert!(locks.contains(&("ACCESS EXCLUSIVE".to_owned(), "accounts".to_owned())));
    assert_eq!(scratch.history().len(), 1);
}

#[test]
fn a_trace_needs_postgresql() {
    let db = TestDb::new(Kind::Sqlite);
    let p = Project::new();
    p.migration("1_a", "CREATE TABLE a (id int);", None);
    p.run(&db, &["plan", "--trace"])
        .code(2)
        .stderr_has("a lock trace needs PostgreSQL; ");
    assert!(db.tables().is_empty() || !db.tables().contains(&"a".to_owned()));
}
