//! Expand/contract (`ops.toml`) on PostgreSQL, with an "old" and a "new"
//! application writing through their own shapes throughout: the old one
//! through the tables, the new one through its version schema. A
//! lifecycle harness in Reshape's manner: after the first migration,
//! with the second in flight, after `complete`, after an abort.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::common::{Kind, Project, TestDb, block_on};

const V2: &str = "public_v2";

fn tables(p: &Project, rows: u32) {
    p.migration(
        "1_tables",
        &format!(
            "CREATE TABLE users (id bigserial PRIMARY KEY, name text NOT NULL, amount integer NOT NULL DEFAULT 0, email text);\n\
             INSERT INTO users (name, amount, email) SELECT 'user ' || g, g, CASE WHEN g % 3 = 0 THEN NULL ELSE 'u' || g || '@x' END FROM generate_series(1, {rows}) g;\n\
             CREATE TABLE people (id bigserial PRIMARY KEY, name text NOT NULL);\n\
             INSERT INTO people (name) SELECT 'first' || g || ' last' || g FROM generate_series(1, {rows}) g;\n"
        ),
        Some("DROP TABLE people;\nDROP TABLE users;\n"),
    );
}

/// A rename, a type change, a NOT NULL with its fix for NULLs, a new
/// NOT NULL column with a default, and one column split into two.
const RESHAPE: &str = r#"[backfill]
batch_size = 250

[[op]]
op = "rename_column"
table = "users"
column = "name"
to = "full_name"

[[op]]
op = "alter_type"
table = "users"
column = "amount"
type = "numeric(12,2)"
up = "amount::numeric(12,2)"
down = "round(amount)::integer"

[[op]]
op = "set_not_null"
table = "users"
column = "email"
up = "coalesce(email, 'unknown')"

[[op]]
op = "add_column"
table = "users"
column = "active"
type = "boolean"
default = "true"
not_null = true

[[op]]
op = "add_column"
table = "people"
column = "first_name"
type = "text"
up = "split_part(name, ' ', 1)"

[[op]]
op = "add_column"
table = "people"
column = "last_name"
type = "text"
up = "split_part(name, ' ', 2)"

[[op]]
op = "drop_column"
table = "people"
column = "name"
down = "first_name || ' ' || last_name"
"#;

/// Writes in a loop through one shape until told to stop, counting what
/// it wrote and what failed.
struct Writer {
    stop: Arc<AtomicBool>,
    writes: Arc<AtomicU64>,
    errors: Arc<std::sync::Mutex<Vec<String>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Writer {
    /// `new`: writes the new shape through the version schema.
    fn start(url: &str, new: bool) -> Writer {
        let stop = Arc::new(AtomicBool::new(false));
        let writes = Arc::new(AtomicU64::new(0));
        let errors = Arc::new(std::sync::Mutex::new(Vec::new()));
        let (url, s, w, e) = (url.to_owned(), stop.clone(), writes.clone(), errors.clone());
        let thread = std::thread::spawn(move || {
            block_on(async move {
                use sqlx::Connection;
                let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
                if new {
                    sqlx::query(&format!("SET search_path = {V2}, public"))
                        .execute(&mut conn)
                        .await
                        .unwrap();
                }
                let mut n: u64 = 0;
                while !s.load(Ordering::Relaxed) {
                    n += 1;
                    let statements = if new {
                        [
                            format!(
                                "INSERT INTO users (full_name, amount, email) VALUES ('new {n}', {n}.5, 'new{n}@x')"
                            ),
                            format!("INSERT INTO people (first_name, last_name) VALUES ('nf{n}', 'nl{n}')"),
                            format!("UPDATE users SET amount = amount + 1 WHERE id = {}", n % 50 + 1),
                        ]
                    } else {
                        [
                            format!("INSERT INTO users (name, amount, email) VALUES ('old {n}', {n}, NULL)"),
                            format!("INSERT INTO people (name) VALUES ('of{n} ol{n}')"),
                            format!("UPDATE users SET amount = amount + 1 WHERE id = {}", n % 50 + 51),
                        ]
                    };
                    for sql in statements {
                        match sqlx::query(&sql).execute(&mut conn).await {
                            Ok(_) => {
                                w.fetch_add(1, Ordering::Relaxed);
                            }
                            Err(err) => e.lock().unwrap().push(format!("{sql}: {err}")),
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
            })
        });
        Writer {
            stop,
            writes,
            errors,
            thread: Some(thread),
        }
    }

    /// Stops, and returns how many statements it ran, none of which failed.
    fn finish(mut self, who: &str) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take().unwrap().join().unwrap();
        let errors = self.errors.lock().unwrap();
        assert!(
            errors.is_empty(),
            "the {who} application's writes failed: {:?}",
            &errors[..errors.len().min(5)]
        );
        let writes = self.writes.load(Ordering::Relaxed);
        assert!(writes > 30, "the {who} application wrote only {writes} statements");
        writes
    }

    /// Waits until it has written a little more.
    fn wait_for_more(&self) {
        let from = self.writes.load(Ordering::Relaxed);
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.writes.load(Ordering::Relaxed) < from + 30 {
            assert!(Instant::now() < deadline, "the writer stopped writing");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

fn count(db: &TestDb, sql: &str) -> u64 {
    db.rows(sql)[0][0].as_deref().unwrap().parse().unwrap()
}

fn columns(db: &TestDb, schema: &str, table: &str) -> Vec<String> {
    db.rows(&format!(
        "SELECT column_name::text FROM information_schema.columns WHERE table_schema = '{schema}' AND table_name = '{table}' ORDER BY ordinal_position"
    ))
    .into_iter()
    .map(|r| r[0].clone().unwrap())
    .collect()
}

/// Every row of both tables, in the old shape and the new one, agrees
/// with the operations' expressions.
fn both_shapes_agree(db: &TestDb) {
    let disagree = count(
        db,
        &format!(
            "SELECT count(*) FROM users o JOIN {V2}.users n USING (id) \
             WHERE o.name <> n.full_name OR o.amount <> round(n.amount) \
                OR coalesce(o.email, 'unknown') <> n.email OR n.email IS NULL OR n.active IS NULL"
        ),
    );
    assert_eq!(disagree, 0, "rows whose old and new users shapes disagree");
    let disagree = count(
        db,
        &format!(
            "SELECT count(*) FROM people o JOIN {V2}.people n USING (id) \
             WHERE o.name <> n.first_name || ' ' || n.last_name OR n.first_name IS NULL OR n.last_name IS NULL"
        ),
    );
    assert_eq!(disagree, 0, "rows whose old and new people shapes disagree");
}

#[test]
fn old_and_new_applications_write_through_expand_backfill_and_complete_postgres() {
    let db = TestDb::new(Kind::Postgres);
    let p = Project::new();
    tables(&p, 3000);
    p.run(&db, &["up"]).ok();
    let before_users = count(&db, "SELECT count(*) FROM users");
    let before = db.snapshot();

    p.file("migrations/2_reshape/ops.toml", RESHAPE);
    let plan = p.run(&db, &["plan"]).ok();
    assert!(
        plan.stdout
            .contains("ALTER TABLE \"users\" ADD COLUMN \"_waymark_new_amount\" numeric(12,2)"),
        "{}",
        plan.stdout
    );

    let old = Writer::start(&db.url, false);
    old.wait_for_more();
    let up = p.run(&db, &["up"]).ok();
    assert!(up.stderr.contains("2_reshape"), "{}", up.stderr);
    let status = p.run(&db, &["status", "--json"]).ok().json();
    assert_eq!(status["migrations"][1]["state"], "expanded");
    // Status names the schema the new application selects.
    assert_eq!(status["migrations"][1]["version_schema"], V2);
    assert!(status["migrations"][0].get("version_schema").is_none(), "{status:#}");
    let shown = p.run(&db, &["status"]).ok();
    assert!(
        shown.stdout.contains(
            "2_reshape is expanded: its new version reads and writes through schema public_v2, first on its search_path"
        ),
        "{}",
        shown.stdout
    );

    // Both applications write side by side.
    let new = Writer::start(&db.url, true);
    new.wait_for_more();
    old.wait_for_more();
    both_shapes_agree(&db);
    assert_eq!(
        count(&db, "SELECT count(*) FROM users WHERE _waymark_new_amount IS NULL"),
        0
    );

    // The contract, shown first: the scans before the locks, and no
    // finding of lint's against it (SET NOT NULL follows a validated
    // check, so it scans nothing).
    let shown = p.run(&db, &["plan", "--complete", "--json"]).ok().json();
    let contract = &shown["migrations"][0];
    assert_eq!(contract["version"], "2");
    let texts: Vec<&str> = contract["actions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["text"].as_str().unwrap())
        .collect();
    let validate = texts
        .iter()
        .position(|t| t.contains("VALIDATE CONSTRAINT \"_waymark_nn_email\""))
        .unwrap();
    let drop = texts
        .iter()
        .position(|t| t.contains("DROP COLUMN \"name\"") || t.contains("DROP COLUMN \"_waymark_old_amount\""))
        .unwrap();
    assert!(validate < drop, "{texts:?}");
    // Each check is added in a brief transaction, and validated in
    // another: ADD CONSTRAINT's lock is not held through the scan.
    let added = texts
        .iter()
        .position(|t| t.contains("ADD CONSTRAINT \"_waymark_nn_email\""))
        .unwrap();
    assert!(texts[added..validate].contains(&"-- commit"), "{texts:?}");
    let errors: Vec<&serde_json::Value> = contract["findings"]
        .as_array()
        .map_or(Vec::new(), |f| f.iter().filter(|f| f["severity"] == "error").collect());
    assert!(errors.is_empty(), "{errors:?}");

    // The old application is gone; the new one writes on through complete.
    let old_writes = old.finish("old");
    both_shapes_agree(&db);
    p.run(&db, &["complete"]).ok().stderr_has("completed 1 migration(s)");
    new.wait_for_more();
    let new_writes = new.finish("new");
    assert!(old_writes > 0 && new_writes > 0);

    let status = p.run(&db, &["status", "--json"]).ok().json();
    assert_eq!(status["migrations"][1]["state"], "applied");
    assert_eq!(
        columns(&db, "public", "users"),
        ["id", "full_name", "amount", "email", "active"]
    );
    assert_eq!(columns(&db, "public", "people"), ["id", "first_name", "last_name"]);
    assert_eq!(
        db.rows("SELECT format_type(atttypid, atttypmod), attnotnull::text FROM pg_attribute WHERE attrelid = 'users'::regclass AND attname IN ('amount', 'email', 'active') ORDER BY attname"),
        [
            [Some("boolean".to_owned()), Some("true".to_owned())],
            [Some("numeric(12,2)".to_owned()), Some("true".to_owned())],
            [Some("text".to_owned()), Some("true".to_owned())],
        ]
    );
    // Every row either application wrote is there, in the new shape.
    let users = count(&db, "SELECT count(*) FROM users");
    assert!(users > before_users, "{users} users after, {before_users} before");
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM users WHERE full_name LIKE 'old %' AND email = 'unknown'"
        ),
        count(&db, "SELECT count(*) FROM users WHERE full_name LIKE 'old %'")
    );
    // What the new application wrote kept its precision through the
    // backfill and the contract.
    assert!(count(&db, "SELECT count(*) FROM users WHERE full_name LIKE 'new %'") > 0);
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM users WHERE full_name LIKE 'new %' AND amount <> (split_part(full_name, ' ', 2) || '.5')::numeric"
        ),
        0
    );
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM people WHERE first_name LIKE 'of%' AND last_name LIKE 'ol%'"
        ),
        count(&db, "SELECT count(*) FROM people WHERE first_name LIKE 'of%'")
    );
    // The version schema is gone too: the new application's search_path
    // falls through to the tables, which have its shape now (it wrote on
    // through the contract), and no view stops a later migration's DDL.
    // No trigger or hidden column is left.
    assert_eq!(
        count(&db, "SELECT count(*) FROM pg_namespace WHERE nspname = 'public_v2'"),
        0
    );
    db.execute("ALTER TABLE users ALTER COLUMN email TYPE varchar(200)");
    assert_eq!(
        count(&db, "SELECT count(*) FROM pg_trigger WHERE tgname LIKE '_waymark%'"),
        0
    );
    assert_eq!(
        count(&db, "SELECT count(*) FROM pg_proc WHERE proname LIKE '_waymark%'"),
        0
    );

    // After complete, `down` gives the old shape back from the definitions
    // complete saved: the dropped column with its type and NOT NULL, its
    // kept values put back and `down` computed for the rows written since;
    // the type changed back and its default restored.
    db.execute("INSERT INTO people (first_name, last_name) VALUES ('after', 'complete')");
    let plan = p.run(&db, &["plan", "--down"]).ok();
    assert!(
        plan.stdout
            .contains("-- add column people.name back as complete saved it; the host puts its kept values back"),
        "{}",
        plan.stdout
    );
    p.run(&db, &["down"]).ok();
    // (email's varchar is the test's own change after complete, above.)
    assert_eq!(
        db.snapshot(),
        before.replace("users.email text YES", "users.email character varying YES")
    );
    assert_eq!(db.history(), vec![("1".to_owned(), "applied".to_owned())]);
    assert_eq!(
        db.rows("SELECT name FROM people WHERE id IN (1, (SELECT max(id) FROM people)) ORDER BY id"),
        vec![vec![Some("first1 last1".into())], vec![Some("after complete".into())]]
    );
    assert_eq!(count(&db, "SELECT count(*) FROM waymark_history_ops"), 0);
    // And up again: the same migration expands afresh.
    p.run(&db, &["up"]).ok();
    assert_eq!(db.history().last().unwrap(), &("2".to_owned(), "expanded".to_owned()));
}

#[test]
fn down_before_complete_gives_back_the_old_shape_with_what_both_wrote_postgres() {
    let db = TestDb::new(Kind::Postgres);
    let p = Project::new();
    tables(&p, 500);
    p.run(&db, &["up"]).ok();
    let before = db.snapshot();
    p.file("migrations/2_reshape/ops.toml", RESHAPE);
    p.run(&db, &["up"]).ok();

    let old = Writer::start(&db.url, false);
    let new = Writer::start(&db.url, true);
    old.wait_for_more();
    new.wait_for_more();
    old.finish("old");
    new.finish("new");
    let written = count(&db, "SELECT count(*) FROM users");

    let plan = p.run(&db, &["plan", "--down"]).ok();
    assert!(
        plan.stdout.contains("DROP COLUMN IF EXISTS \"_waymark_new_amount\""),
        "{}",
        plan.stdout
    );
    p.run(&db, &["down"]).ok().stderr_has("reverted 1 migration(s)");

    // The old shape, exactly, with every row either version wrote.
    assert_eq!(columns(&db, "public", "users"), ["id", "name", "amount", "email"]);
    assert_eq!(columns(&db, "public", "people"), ["id", "name"]);
    assert_eq!(count(&db, "SELECT count(*) FROM users"), written);
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM users WHERE name LIKE 'new %' AND email LIKE 'new%@x'"
        ),
        count(&db, "SELECT count(*) FROM users WHERE name LIKE 'new %'")
    );
    assert!(count(&db, "SELECT count(*) FROM people WHERE name LIKE 'nf% nl%'") > 0);
    assert_eq!(
        count(&db, "SELECT count(*) FROM pg_namespace WHERE nspname = 'public_v2'"),
        0
    );
    assert_eq!(
        count(&db, "SELECT count(*) FROM pg_trigger WHERE tgname LIKE '_waymark%'"),
        0
    );
    assert_eq!(db.history().len(), 1);

    // Without the writers' rows the database is as it was.
    db.execute("DELETE FROM users WHERE name LIKE 'new %' OR name LIKE 'old %'");
    db.execute("DELETE FROM people WHERE id > 500");
    db.execute("UPDATE users SET amount = id WHERE id <= 100");
    assert_eq!(db.snapshot(), before);
}

#[test]
fn a_runner_killed_mid_backfill_resumes_and_finishes_postgres() {
    let db = TestDb::new(Kind::Postgres);
    let p = Project::new();
    tables(&p, 60_000);
    p.run(&db, &["up"]).ok();
    p.file(
        "migrations/2_reshape/ops.toml",
        RESHAPE.replace("batch_size = 250", "batch_size = 100"),
    );
    let mut runner = p.command(&db, &["up"]).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let progressed = |db: &TestDb| {
        db.rows("SELECT checkpoint FROM waymark_history_checkpoint")
            .first()
            .and_then(|r| r[0].clone())
            .is_some_and(|c| c.contains("\"after\":") && !c.contains("\"after\":null"))
    };
    while !progressed(&db) {
        assert!(Instant::now() < deadline, "the backfill never committed a batch");
        std::thread::sleep(Duration::from_millis(20));
    }
    runner.kill().unwrap();
    runner.wait().unwrap();
    let left = count(&db, "SELECT count(*) FROM users WHERE _waymark_new_amount IS NULL");
    assert!(left > 0, "the runner was killed after the backfill ended");
    let status = p.run(&db, &["status", "--json"]).ok().json();
    assert_eq!(status["migrations"][1]["state"], "failed");

    let run = p.run(&db, &["-v", "up"]).ok();
    assert!(run.stderr.contains("resuming"), "{}", run.stderr);
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM users WHERE _waymark_new_amount IS NULL OR _waymark_new_email IS NULL"
        ),
        0
    );
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM people WHERE first_name IS NULL OR last_name IS NULL"
        ),
        0
    );
    let status = p.run(&db, &["status", "--json"]).ok().json();
    assert_eq!(status["migrations"][1]["state"], "expanded");
    p.run(&db, &["complete"]).ok();
    assert_eq!(count(&db, "SELECT count(*) FROM users WHERE email = 'unknown'"), 20_000);
}

#[test]
fn two_migrations_in_flight_on_one_table_are_refused_naming_both_postgres() {
    let db = TestDb::new(Kind::Postgres);
    let p = Project::new();
    tables(&p, 10);
    p.run(&db, &["up"]).ok();
    p.file(
        "migrations/2_rename/ops.toml",
        "[[op]]\nop = \"rename_column\"\ntable = \"users\"\ncolumn = \"name\"\nto = \"full_name\"\n",
    );
    p.run(&db, &["up"]).ok();
    p.file(
        "migrations/3_email/ops.toml",
        "[[op]]\nop = \"drop_column\"\ntable = \"users\"\ncolumn = \"email\"\n",
    );
    p.run(&db, &["up"]).code(1).stderr_has(
        "migration 3_email changes table users, which migration 2_rename changes too, and 2_rename is not completed",
    );
    assert_eq!(
        count(&db, "SELECT count(*) FROM pg_namespace WHERE nspname = 'public_v3'"),
        0
    );
    assert_eq!(db.history().len(), 2);

    // Another table may change meanwhile; its version sees the first
    // migration's rename too.
    std::fs::remove_dir_all(p.migrations().join("3_email")).unwrap();
    p.file(
        "migrations/3_people/ops.toml",
        "[[op]]\nop = \"rename_column\"\ntable = \"people\"\ncolumn = \"name\"\nto = \"label\"\n",
    );
    p.run(&db, &["up"]).ok();
    assert_eq!(columns(&db, "public_v3", "people"), ["id", "label"]);
    assert_eq!(
        columns(&db, "public_v3", "users"),
        ["id", "full_name", "amount", "email"]
    );
    let status = p.run(&db, &["status", "--json"]).ok().json();
    assert_eq!(status["migrations"][1]["state"], "expanded");
    assert_eq!(status["migrations"][2]["state"], "expanded");
    // Completing the first leaves the second's views working, over the
    // renamed column.
    p.run(&db, &["complete", "--to", "2"])
        .ok()
        .stderr_has("completed 1 migration(s)");
    assert_eq!(
        columns(&db, "public_v3", "users"),
        ["id", "full_name", "amount", "email"]
    );
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM public_v3.users WHERE full_name LIKE 'user %'"
        ),
        10
    );
    assert_eq!(
        count(&db, "SELECT count(*) FROM pg_namespace WHERE nspname = 'public_v2'"),
        0
    );
    p.run(&db, &["complete"]).ok().stderr_has("completed 1 migration(s)");
    assert_eq!(columns(&db, "public", "users"), ["id", "full_name", "amount", "email"]);
    assert_eq!(columns(&db, "public", "people"), ["id", "label"]);
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'public%' AND nspname <> 'public'"
        ),
        0
    );
}

#[test]
fn bad_operations_are_refused_with_their_line_and_nothing_changes_postgres() {
    let db = TestDb::new(Kind::Postgres);
    let p = Project::new();
    tables(&p, 10);
    p.run(&db, &["up"]).ok();
    let before = db.snapshot();
    let cases = [
        (
            "[[op]]\nop = \"rename_colum\"\ntable = \"users\"\n",
            "ops.toml:1: unknown op \"rename_colum\"; the operations are create_table,",
        ),
        (
            "[[op]]\nop = \"rename_column\"\ntable = \"users\"\ncolumn = \"name\"\nto = \"x\"\n\n[[op]]\nop = \"drop_column\"\ntable = \"users\"\ncolumn = \"name\"\n",
            "ops.toml:7: drop_column users.name: the column is NOT NULL without a default, so the new version could not insert a row; give `down`",
        ),
        (
            "[[op]]\nop = \"add_column\"\ntable = \"nope\"\ncolumn = \"c\"\ntype = \"int\"\n",
            "ops.toml:1: add column nope.c int: there is no table nope",
        ),
    ];
    for (ops, message) in cases {
        p.file("migrations/2_bad/ops.toml", ops);
        let run = p.run(&db, &["up"]).code(1);
        assert!(run.stderr.contains(message), "expected {message:?} in:\n{}", run.stderr);
        assert!(run.stderr.contains("2_bad"), "{}", run.stderr);
        // Refused before anything ran: nothing changed, and no history row
        // asks for a repair.
        assert_eq!(db.snapshot(), before, "after {ops}");
        assert_eq!(db.history().len(), 1, "after {ops}");
    }
}

/// MySQL/MariaDB and SQLite refuse an ops.toml before anything runs.
#[test]
fn new_op_scaffolds_each_operation_as_a_file_the_ops_step_reads_postgres() {
    let db = TestDb::new(Kind::Postgres);
    let p = Project::new();
    // The operations `new` knows and those the ops step knows are two
    // lists, one in each crate: each names them in its error, and they
    // must agree.
    let listed = |text: &str| -> Vec<String> {
        let after = &text[text.find("the operations are ").expect(text) + "the operations are ".len()..];
        after
            .lines()
            .next()
            .unwrap()
            .split(", ")
            .map(|s| s.trim_end_matches('.').to_owned())
            .collect()
    };
    let refused = p.run(&db, &["new", "change", "--op", "rename_colum"]).code(2);
    assert!(
        refused
            .stderr
            .contains("--op rename_colum: no such operation; the operations are create_table, add_column,"),
        "{}",
        refused.stderr
    );
    let known = listed(&refused.stderr);
    p.file("migrations/1_unknown/ops.toml", "[[op]]\nop = \"rename_colum\"\n");
    let step = p.run(&db, &["plan"]).code(1);
    assert_eq!(listed(&step.stderr), known, "{}", step.stderr);
    std::fs::remove_dir_all(p.migrations()).unwrap();

    for op in &known {
        let run = p.run(&db, &["new", "change", "--op", op]).ok();
        let path = run.stdout.trim().to_owned();
        assert!(path.ends_with("_change/ops.toml"), "{path}");
        let text = std::fs::read_to_string(p.migrations().parent().unwrap().join(&path)).unwrap();
        assert!(text.contains(&format!("op = \"{op}\"")), "{text}");
        // The ops step reads what was written: plan shows its operation.
        let plan = p.run(&db, &["plan"]).ok();
        assert!(plan.stdout.contains("_change"), "{op}: {}", plan.stdout);
        std::fs::remove_dir_all(p.migrations()).unwrap();
    }
}

#[test]
fn constraints_are_enforced_from_complete_and_a_failed_validation_keeps_both_versions_postgres() {
    let db = TestDb::new(Kind::Postgres);
    let p = Project::new();
    tables(&p, 50);
    p.run(&db, &["up"]).ok();
    db.execute("CREATE TABLE teams (id bigint PRIMARY KEY); INSERT INTO teams VALUES (1); ALTER TABLE people ADD COLUMN team bigint");
    p.file(
        "migrations/2_rules/ops.toml",
        r#"[[op]]
op = "add_constraint"
table = "users"
name = "users_amount_positive"
check = "amount >= 0"

[[op]]
op = "add_constraint"
table = "people"
name = "people_team"
columns = ["team"]
references = "teams (id)"
"#,
    );
    let plan = p.run(&db, &["plan", "--complete"]);
    assert_eq!(plan.code, 0, "{}", plan.stderr);
    p.run(&db, &["up"]).ok();
    // Expanded: the old version may still write what breaks the rules.
    db.execute("INSERT INTO users (name, amount) VALUES ('old', -5)");
    db.execute("UPDATE people SET team = 9 WHERE id = 1");
    let plan = p.run(&db, &["plan", "--complete"]).ok();
    assert!(
        plan.stdout
            .contains("ALTER TABLE \"users\" ADD CONSTRAINT \"users_amount_positive\" CHECK (amount >= 0) NOT VALID"),
        "{}",
        plan.stdout
    );

    // The validation names the rule the rows break; both versions still work.
    p.run(&db, &["complete"]).code(1).stderr_has("users_amount_positive");
    assert_eq!(db.history().last().unwrap(), &("2".to_owned(), "expanded".to_owned()));
    assert_eq!(
        count(&db, "SELECT count(*) FROM pg_namespace WHERE nspname = 'public_v2'"),
        1
    );

    db.execute("UPDATE users SET amount = 0 WHERE amount < 0; UPDATE people SET team = 1 WHERE team = 9");
    p.run(&db, &["complete"]).ok();
    assert_eq!(db.history().last().unwrap(), &("2".to_owned(), "applied".to_owned()));
    assert_eq!(
        db.rows("SELECT conname::text, convalidated::text FROM pg_constraint WHERE conname IN ('users_amount_positive', 'people_team') ORDER BY 1"),
        vec![
            vec![Some("people_team".into()), Some("true".into())],
            vec![Some("users_amount_positive".into()), Some("true".into())],
        ]
    );

    // `down` after complete drops them.
    p.run(&db, &["down"]).ok();
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM pg_constraint WHERE conname IN ('users_amount_positive', 'people_team')"
        ),
        0
    );
}

#[test]
fn indexes_are_built_after_the_backfill_and_dropped_by_complete_concurrently_postgres() {
    let db = TestDb::new(Kind::Postgres);
    let p = Project::new();
    tables(&p, 300);
    p.run(&db, &["up"]).ok();
    db.execute("CREATE INDEX users_name ON users (name)");
    // A build a killed run left invalid, under the name the op uses: the
    // expand drops it and builds it again.
    db.execute("CREATE UNIQUE INDEX people_name ON people (id); UPDATE pg_index SET indisvalid = false WHERE indexrelid = 'people_name'::regclass");
    p.file(
        "migrations/2_indexes/ops.toml",
        r#"[[op]]
op = "add_column"
table = "users"
column = "domain"
type = "text"
up = "split_part(email, '@', 2)"

[[op]]
op = "create_index"
table = "users"
name = "users_domain"
columns = ["domain", "lower(name)"]

[[op]]
op = "create_index"
table = "people"
name = "people_name"
columns = ["name"]
unique = true

[[op]]
op = "drop_index"
table = "users"
name = "users_name"
"#,
    );
    let plan = p.run(&db, &["plan"]).ok();
    assert!(
        plan.stdout.contains(
            "CREATE INDEX CONCURRENTLY \"users_domain\" ON \"users\" (domain, lower(name)) -- between transactions"
        ),
        "{}",
        plan.stdout
    );
    p.run(&db, &["up"]).ok();
    let valid = |db: &TestDb| {
        db.rows(
            "SELECT c.relname::text, i.indisvalid::text, pg_get_indexdef(i.indexrelid) FROM pg_index i \
             JOIN pg_class c ON c.oid = i.indexrelid WHERE c.relname IN ('users_domain', 'people_name', 'users_name') ORDER BY 1",
        )
    };
    assert_eq!(
        valid(&db),
        vec![
            vec![
                Some("people_name".into()),
                Some("true".into()),
                Some("CREATE UNIQUE INDEX people_name ON public.people USING btree (name)".into())
            ],
            vec![
                Some("users_domain".into()),
                Some("true".into()),
                Some("CREATE INDEX users_domain ON public.users USING btree (domain, lower(name))".into())
            ],
            // The old version may still use it: it goes with `complete`.
            vec![
                Some("users_name".into()),
                Some("true".into()),
                Some("CREATE INDEX users_name ON public.users USING btree (name)".into())
            ],
        ]
    );
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM users WHERE domain IS NULL AND email IS NOT NULL"
        ),
        0
    );

    let plan = p.run(&db, &["plan", "--complete"]).ok();
    assert!(
        plan.stdout
            .contains("DROP INDEX CONCURRENTLY IF EXISTS \"users_name\" -- between transactions"),
        "{}",
        plan.stdout
    );
    p.run(&db, &["complete"]).ok();
    assert_eq!(valid(&db).len(), 2, "{:?}", valid(&db));

    // After complete, `down` builds the dropped index again as complete
    // saved it, and drops those the migration made.
    p.run(&db, &["down"]).ok();
    assert_eq!(
        valid(&db),
        vec![vec![
            Some("users_name".into()),
            Some("true".into()),
            Some("CREATE INDEX users_name ON public.users USING btree (name)".into())
        ]]
    );

    // A definition complete did not save (a migration completed by an
    // older waymark) refuses the revert before any statement runs.
    p.run(&db, &["up"]).ok();
    p.run(&db, &["complete"]).ok();
    db.execute("DELETE FROM waymark_history_ops");
    let after = db.snapshot();
    p.run(&db, &["down"])
        .code(1)
        .stderr_has("ops.toml:21: drop_index users_name cannot be undone: complete saved no definition of it");
    assert_eq!(db.snapshot(), after);
    assert_eq!(db.history().last().unwrap(), &("2".to_owned(), "applied".to_owned()));
}

#[test]
fn an_abort_drops_the_indexes_the_expand_built_postgres() {
    let db = TestDb::new(Kind::Postgres);
    let p = Project::new();
    tables(&p, 50);
    p.run(&db, &["up"]).ok();
    let before = db.snapshot();
    p.file(
        "migrations/2_index/ops.toml",
        "[[op]]\nop = \"create_index\"\ntable = \"users\"\nname = \"users_email\"\ncolumns = [\"email\"]\n",
    );
    // A dry run, one transaction rolled back, cannot build it: lint says so
    // before anything runs (and the session would refuse to commit the
    // dry run's transaction for it), committing nothing.
    p.run(&db, &["up", "--dry-run"])
        .code(6)
        .stderr_has("migrations/2_index/ops.toml:1: [concurrently-in-transaction]");
    assert_eq!(db.snapshot(), before);
    assert_eq!(db.history().len(), 1);
    p.run(&db, &["up"]).ok();
    assert_eq!(
        count(&db, "SELECT count(*) FROM pg_indexes WHERE indexname = 'users_email'"),
        1
    );
    p.run(&db, &["down"]).ok();
    assert_eq!(db.snapshot(), before);
}

#[test]
fn a_unique_constraint_is_built_concurrently_by_complete_and_a_duplicate_keeps_both_versions_postgres() {
    let db = TestDb::new(Kind::Postgres);
    let p = Project::new();
    tables(&p, 50);
    p.run(&db, &["up"]).ok();
    p.file(
        "migrations/2_unique/ops.toml",
        "[[op]]\nop = \"add_constraint\"\ntable = \"users\"\nname = \"users_email_unique\"\ncolumns = [\"email\"]\nunique = true\n",
    );
    let index = |db: &TestDb| {
        db.rows(
            "SELECT i.indisvalid::text, coalesce(k.contype::text, '-') FROM pg_index i \
             JOIN pg_class c ON c.oid = i.indexrelid LEFT JOIN pg_constraint k ON k.conindid = i.indexrelid \
             WHERE c.relname = 'users_email_unique'",
        )
    };
    p.run(&db, &["up"]).ok();
    let plan = p.run(&db, &["plan", "--complete"]).ok();
    for shown in [
        "CREATE UNIQUE INDEX CONCURRENTLY \"users_email_unique\" ON \"users\" (\"email\") -- between transactions",
        "ALTER TABLE \"users\" ADD CONSTRAINT \"users_email_unique\" UNIQUE USING INDEX \"users_email_unique\"",
    ] {
        assert!(plan.stdout.contains(shown), "{shown}\n{}", plan.stdout);
    }
    // Expanded: the old version may still write a duplicate; nothing
    // enforces the rule yet.
    db.execute("INSERT INTO users (name, email) VALUES ('again', 'u1@x')");
    assert!(index(&db).is_empty(), "{:?}", index(&db));

    // The build fails on the duplicate, names the constraint, and leaves
    // both versions working; its invalid build stays until the next try.
    p.run(&db, &["complete"])
        .code(1)
        .stderr_has("ops.toml:1")
        .stderr_has("could not create unique index \"users_email_unique\"");
    assert_eq!(db.history().last().unwrap(), &("2".to_owned(), "expanded".to_owned()));
    assert_eq!(
        count(&db, "SELECT count(*) FROM pg_namespace WHERE nspname = 'public_v2'"),
        1
    );
    assert_eq!(index(&db), vec![vec![Some("false".into()), Some("-".into())]]);

    // An abort then takes the invalid build away too.
    p.run(&db, &["down"]).ok();
    assert!(index(&db).is_empty(), "{:?}", index(&db));
    p.run(&db, &["up"]).ok();
    db.execute("DELETE FROM users WHERE name = 'again'");
    p.run(&db, &["complete"]).ok();
    assert_eq!(db.history().last().unwrap(), &("2".to_owned(), "applied".to_owned()));
    assert_eq!(index(&db), vec![vec![Some("true".into()), Some("u".into())]]);

    // `down` after complete drops the constraint and its index.
    p.run(&db, &["down"]).ok();
    assert!(index(&db).is_empty(), "{:?}", index(&db));
}

/// A type change and a `NOT NULL` on indexed columns: every index that
/// reads them (a plain one, a unique one over two columns, an expression
/// with a predicate reading both) is built again over the hidden columns
/// by `up`, takes its old name at `complete`, and survives a revert; an
/// abort leaves none behind. A constraint on a changed column is still
/// refused, naming it.
#[test]
fn a_changed_columns_indexes_are_built_again_over_its_new_shape_postgres() {
    let db = TestDb::new(Kind::Postgres);
    let p = Project::new();
    tables(&p, 300);
    p.run(&db, &["up"]).ok();
    db.execute(
        "CREATE INDEX users_amount ON users (amount); \
         CREATE UNIQUE INDEX users_name_amount ON users (name, amount); \
         CREATE INDEX users_email_lower ON users (lower(email)) WHERE amount > 10; \
         ALTER TABLE people ADD CONSTRAINT people_name_long CHECK (length(name) > 1)",
    );
    let before = db.snapshot();
    let indexes = |db: &TestDb| {
        db.rows(
            "SELECT c.relname::text, i.indisvalid::text, pg_get_indexdef(i.indexrelid) FROM pg_index i \
             JOIN pg_class c ON c.oid = i.indexrelid WHERE i.indrelid = 'users'::regclass \
             AND NOT i.indisprimary ORDER BY 1",
        )
        .into_iter()
        .map(|r| {
            r.into_iter()
                .map(Option::unwrap_or_default)
                .collect::<Vec<_>>()
                .join(" | ")
        })
        .collect::<Vec<_>>()
    };

    // A constraint is not carried over: refused before anything runs.
    p.file(
        "migrations/2_reshape/ops.toml",
        "[[op]]\nop = \"alter_type\"\ntable = \"people\"\ncolumn = \"name\"\ntype = \"varchar(200)\"\nup = \"name\"\ndown = \"name\"\n",
    );
    p.run(&db, &["up"]).code(1).stderr_has(
        "ops.toml:1: alter_type people.name: constraints people_name_long name the column, and constraints are not carried over to its new shape yet (its indexes are)",
    );
    assert_eq!(db.snapshot(), before);
    assert_eq!(db.history().len(), 1);

    p.file(
        "migrations/2_reshape/ops.toml",
        r#"[[op]]
op = "alter_type"
table = "users"
column = "amount"
type = "bigint"
up = "(amount / 10)::bigint"
down = "(amount * 10)::integer"

[[op]]
op = "set_not_null"
table = "users"
column = "email"
up = "coalesce(email, 'none')"
down = "nullif(email, 'none')"
"#,
    );
    let plan = p.run(&db, &["plan"]).ok();
    assert!(
        plan.stdout
            .contains("-- the indexes that read users.amount, built again over its new shape"),
        "{}",
        plan.stdout
    );

    // Expanded: the old indexes as they were, and their twins over the
    // hidden columns, valid; an index over both changed columns once.
    p.run(&db, &["up"]).ok();
    let twins = [
        "_waymark_ix_users_amount | true | CREATE INDEX _waymark_ix_users_amount ON public.users USING btree (_waymark_new_amount)",
        "_waymark_ix_users_email_lower | true | CREATE INDEX _waymark_ix_users_email_lower ON public.users USING btree (lower(_waymark_new_email)) WHERE (_waymark_new_amount > 10)",
        "_waymark_ix_users_name_amount | true | CREATE UNIQUE INDEX _waymark_ix_users_name_amount ON public.users USING btree (name, _waymark_new_amount)",
    ];
    let old = [
        "users_amount | true | CREATE INDEX users_amount ON public.users USING btree (amount)",
        "users_email_lower | true | CREATE INDEX users_email_lower ON public.users USING btree (lower(email)) WHERE (amount > 10)",
        "users_name_amount | true | CREATE UNIQUE INDEX users_name_amount ON public.users USING btree (name, amount)",
    ];
    assert_eq!(indexes(&db), [twins.as_slice(), old.as_slice()].concat());
    // The unique twin holds for the old application's writes too: 7 and 8
    // are both 0 in the new shape.
    db.execute("INSERT INTO users (name, amount, email) VALUES ('twin', 7, 'a@x')");
    let duplicate = std::process::Command::new("psql")
        .args(["-X", "-q", "-d", &db.url, "-c"])
        .arg("INSERT INTO users (name, amount, email) VALUES ('twin', 8, 'b@x')")
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&duplicate.stderr).contains("_waymark_ix_users_name_amount"),
        "{duplicate:?}"
    );
    db.execute("DELETE FROM users WHERE name = 'twin'");

    // Aborted: no twin is left, and the database is as it was.
    p.run(&db, &["down"]).ok();
    assert_eq!(indexes(&db), old);
    assert_eq!(db.snapshot(), before);

    // Completed: the twins under the old names, over the new columns.
    p.run(&db, &["up"]).ok();
    let plan = p.run(&db, &["plan", "--complete"]).ok();
    assert!(
        plan.stdout
            .contains("-- the indexes built again over amount's new shape renamed to the old indexes' names"),
        "{}",
        plan.stdout
    );
    p.run(&db, &["complete"]).ok();
    assert_eq!(indexes(&db), old);
    assert_eq!(
        db.rows("SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = 'users'::regclass AND attname = 'amount'"),
        vec![vec![Some("bigint".to_owned())]]
    );
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM users WHERE amount > 10 AND lower(email) = 'u200@x'"
        ),
        1
    );

    assert_eq!(count(&db, "SELECT count(*) FROM users WHERE email = 'none'"), 100);

    // Reverted: the old type back, the indexes with it, and the NULLs
    // `set_not_null` replaced put back by its `down`.
    p.run(&db, &["down"]).ok();
    assert_eq!(indexes(&db), old);
    assert_eq!(db.snapshot(), before);
    assert_eq!(count(&db, "SELECT count(*) FROM users WHERE email IS NULL"), 100);
}
