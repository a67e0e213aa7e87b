//! `cutover prepare`, `status`, `switch`, `rollback` and `complete` on
//! throwaway clusters behind a real PgBouncer, with a writer writing
//! through it the whole time: every acknowledged write must end up on the
//! live server, and the writer must see a pause, never an error. Without
//! PgBouncer, the writer follows a route command's file and may see writes
//! refused while traffic moves, but never a write lost.

use std::collections::HashSet;
use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::clusters::{Bouncer, Cluster, Seen, Writer, installed_bin, newer_bin};
use crate::common::{BIN, Run};

const SCHEMA: &str = "CREATE TABLE accounts (id INT PRIMARY KEY, owner TEXT, balance INT CHECK (balance >= -1));\n\
    INSERT INTO accounts SELECT g, 'owner ' || g, g * 10 FROM generate_series(1, 20000) g;\n\
    CREATE INDEX accounts_owner ON accounts (owner);\n\
    CREATE VIEW rich AS SELECT id, owner FROM accounts WHERE balance > 1000;\n\
    CREATE FUNCTION touch() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$;\n\
    CREATE TRIGGER accounts_touch BEFORE UPDATE ON accounts FOR EACH ROW EXECUTE FUNCTION touch();\n\
    CREATE TABLE writes (id BIGSERIAL PRIMARY KEY, n BIGINT NOT NULL UNIQUE, at TIMESTAMPTZ NOT NULL DEFAULT now());\n";

/// The `FAILPOINTS` that stops the runner dead right after `step` (the
/// cutover's steps are crash points: `waymark_db::crash_point`).
fn crash_after(step: &str) -> String {
    format!("{step}=return")
}

fn waymark<S: AsRef<std::ffi::OsStr>>(dir: &Path, args: &[S], env: &[(&str, &str)]) -> Run {
    let mut cmd = Command::new(BIN);
    cmd.current_dir(dir)
        .env_remove("DATABASE_URL")
        .env("NO_COLOR", "1")
        .args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    Run::from(cmd.output().unwrap())
}

/// Two clusters (the target on the newer major version when there is
/// one), the schema on the source, and PgBouncer in front of it.
fn servers() -> (Cluster, Cluster, Bouncer) {
    servers_with("")
}

/// [`servers`], with settings of the source's own.
fn servers_with(settings: &str) -> (Cluster, Cluster, Bouncer) {
    let old = Cluster::start_with(&installed_bin(), settings);
    let new = Cluster::start(&newer_bin());
    let _ = writeln!(
        std::io::stderr(),
        "cutover test from PostgreSQL {} to {}",
        old.major,
        new.major
    );
    old.execute("app", SCHEMA);
    let bouncer = Bouncer::start(old.port);
    (old, new, bouncer)
}

/// `cutover prepare` from `old`'s `app` to `new`'s, through `bouncer`,
/// with `more` arguments.
fn prepare_args(old: &Cluster, new: &Cluster, bouncer: &Bouncer, more: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = [
        "cutover",
        "prepare",
        "--source",
        &old.url("app"),
        "--target",
        &new.url("app"),
    ]
    .map(String::from)
    .into();
    args.extend(bouncer.args());
    args.extend(more.iter().map(|a| a.to_string()));
    args
}

fn prepare(dir: &Path, old: &Cluster, new: &Cluster, bouncer: &Bouncer) -> Run {
    let run = waymark(dir, &prepare_args(old, new, bouncer, &["--json"]), &[]);
    assert_eq!(
        run.code,
        0,
        "prepare failed:\n{}\nsource log:\n{}\ntarget log:\n{}",
        run.stderr,
        old.log(),
        new.log()
    );
    run
}

fn state(dir: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(dir.join(".waymark/cutover.json")).unwrap()).unwrap()
}

/// Waits until no move is recorded (a guard finished or undid it).
fn wait_until_settled(dir: &Path) -> serde_json::Value {
    let started = Instant::now();
    loop {
        let s = state(dir);
        if s["moving"].is_null() {
            return s;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the move was never finished or undone: {s}\nguard log:\n{}",
            std::fs::read_to_string(dir.join(".waymark/cutover.guard.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Runs `cutover verify` until the two servers hold the same rows (the
/// reverse stream may still be applying the last writes); returns its
/// last report.
fn verify_until_equal(dir: &Path, old: &Cluster, new: &Cluster) -> serde_json::Value {
    let started = Instant::now();
    loop {
        let run = waymark(
            dir,
            &[
                "--json",
                "cutover",
                "verify",
                "--source",
                &old.url("app"),
                "--target",
                &new.url("app"),
            ],
            &[],
        );
        let report = run.json();
        // Sequences move only with traffic: the server not live keeps the
        // positions it had when traffic left it.
        let rows_differ = report["problems"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| !p.as_str().unwrap().starts_with("sequence "));
        if !rows_differ {
            return report;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the servers never matched: {report}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Asserts that every write the writer saw acknowledged is on `server`;
/// returns how many writes the server holds.
fn assert_acked_on(server: &Cluster, seen: &Seen) -> usize {
    let held: HashSet<String> = server.column("SELECT n || ':' || id FROM writes").into_iter().collect();
    let missing: Vec<&(i64, i64)> = seen
        .acked
        .iter()
        .filter(|(n, id)| !held.contains(&format!("{n}:{id}")))
        .collect();
    assert!(
        missing.is_empty(),
        "{} acknowledged writes missing on port {}: {:?}",
        missing.len(),
        server.port,
        &missing[..missing.len().min(5)]
    );
    held.len()
}

/// The names of the guardrails in `cutover status --json`'s output.
fn guardrail_names(status: &serde_json::Value) -> Vec<&str> {
    status["status"]["guardrails"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["name"].as_str().unwrap())
        .collect()
}

fn no_replication_left(server: &Cluster) {
    let left = server.column(
        "SELECT 'subscription ' || subname FROM pg_subscription UNION ALL \
         SELECT 'publication ' || pubname FROM pg_publication UNION ALL \
         SELECT 'slot ' || slot_name FROM pg_replication_slots UNION ALL \
         SELECT 'schema ' || nspname FROM pg_namespace WHERE nspname = 'waymark_cutover'",
    );
    assert!(left.is_empty(), "left behind on port {}: {left:?}", server.port);
}

#[test]
fn switch_rollback_and_switch_again_under_a_writer() {
    // PostgreSQL's default: its launcher then starts a subscription's
    // worker up to 5 s after the last one, which the switch waits for.
    let (old, new, bouncer) = servers_with("-c wal_retrieve_retry_interval=5s");
    let dir = tempfile::tempdir().unwrap();
    let writer = Writer::start(bouncer.url());
    writer.wait_for(20);

    let run = prepare(dir.path(), &old, &new, &bouncer);
    assert!(run.stderr.contains("caught up"), "{}", run.stderr);
    crate::json_contract::conforms("cutover-prepare", &run.json());
    let backup = state(dir.path())["backup"].as_str().unwrap().to_owned();
    assert!(
        Path::new(&backup).join("manifest.json").is_file(),
        "the seed backup is kept"
    );

    let status = waymark(dir.path(), &["--json", "cutover", "status"], &[]).ok().json();
    crate::json_contract::conforms("cutover-status", &status);
    assert_eq!(status["ready"], true, "{status}");
    assert_eq!(status["status"]["live"], "source");
    let tables: Vec<&str> = status["status"]["tables"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["table"].as_str().unwrap())
        .collect();
    assert_eq!(tables, ["public.accounts", "public.writes", "waymark_cutover.mark"]);
    assert!(
        status["status"]["tables"]
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t["state"] == "ready")
    );
    assert_eq!(
        guardrail_names(&status),
        ["replication", "lag", "transactions", "schema", "backup", "pgbouncer"]
    );

    // Online, with the writer writing: exact, table by table.
    writer.wait_for(20);
    let report = waymark(dir.path(), &["--json", "cutover", "verify"], &[]).ok().json();
    crate::json_contract::conforms("cutover-verify", &report);
    assert_eq!(report["problems"], serde_json::json!([]), "{report}");
    let rows: Vec<u64> = report["tables"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["rows"].as_u64().unwrap())
        .collect();
    assert_eq!(rows[0], 20000, "{report}");
    assert!(rows[1] >= 20, "{report}");

    let mut pauses = Vec::new();
    for (command, port) in [("switch", new.port), ("rollback", old.port), ("switch", new.port)] {
        writer.wait_for(30);
        let report = waymark(dir.path(), &["--json", "cutover", command], &[]).ok().json();
        crate::json_contract::conforms(&format!("cutover-{command}"), &report);
        pauses.push(report["switch"]["pause_ms"].as_u64().unwrap());
        assert_eq!(report["switch"]["replicating_back"], true, "{report}");
        assert_eq!(bouncer.show(), (port, false), "after {command}");
        let s = state(dir.path());
        assert!(s["moving"].is_null(), "{s}");
        writer.wait_for(30);
    }
    eprintln!("write pauses: {pauses:?} ms");

    let seen = writer.stop();
    assert!(seen.errors.is_empty(), "the writer saw errors: {:?}", seen.errors);
    assert!(
        seen.longest < Duration::from_secs(10),
        "a write took {:?}",
        seen.longest
    );

    // Every acknowledged write is on the live server, and, once the reverse
    // stream has applied it, on the other one.
    assert_eq!(
        assert_acked_on(&new, &seen),
        seen.acked.len(),
        "no write the writer did not see acknowledged"
    );
    let report = verify_until_equal(dir.path(), &old, &new);
    assert_eq!(report["tables"].as_array().unwrap().len(), 2, "{report}");

    // The new primary hands out keys past every one used.
    let max_id = seen.acked.iter().map(|(_, id)| *id).max().unwrap();
    let next: i64 = new.column("SELECT nextval('writes_id_seq')::text")[0].parse().unwrap();
    assert!(next > max_id, "nextval {next} is not past {max_id}");

    let run = waymark(dir.path(), &["--json", "cutover", "complete"], &[]).ok();
    assert!(run.stderr.contains("the target stays live"), "{}", run.stderr);
    crate::json_contract::conforms("cutover-complete", &run.json());
    assert_eq!(run.json()["live"], "target");
    no_replication_left(&old);
    no_replication_left(&new);
    assert_eq!(state(dir.path())["phase"], "completed");
    // The old server no longer follows the new one.
    new.execute("app", "INSERT INTO writes (n) VALUES (-1)");
    std::thread::sleep(Duration::from_millis(300));
    assert!(old.column("SELECT n::text FROM writes WHERE n = -1").is_empty());
}

#[test]
fn a_runner_killed_at_any_step_is_finished_or_undone() {
    let (old, new, bouncer) = servers();
    let dir = tempfile::tempdir().unwrap();
    let writer = Writer::start(bouncer.url());

    // Prepare, killed after making the schema and again after starting
    // replication, resumes when run again.
    for point in ["prepare-schema", "prepare-replication"] {
        let args = prepare_args(&old, &new, &bouncer, &[]);
        let run = waymark(dir.path(), &args, &[("FAILPOINTS", &crash_after(point))]);
        assert_ne!(run.code, 0, "{point}: {}", run.stderr);
        assert_eq!(state(dir.path())["phase"], "preparing");
    }
    let run = prepare(dir.path(), &old, &new, &bouncer);
    assert!(run.stderr.contains("(resumed)"), "{}", run.stderr);

    // The guard finishes a switch whose runner died once PgBouncer points
    // at the target, and undoes it before.
    let steps = [
        "started",
        "paused",
        "drained",
        "old-subscription-dropped",
        "new-subscription-created",
        "repointed",
    ];
    for step in steps {
        writer.wait_for(20);
        let run = waymark(
            dir.path(),
            &["cutover", "switch"],
            &[("FAILPOINTS", &crash_after(step))],
        );
        assert_ne!(run.code, 0, "{step}: {}", run.stderr);
        let s = wait_until_settled(dir.path());
        let finished = step == "repointed";
        assert_eq!(
            s["live"],
            if finished { "target" } else { "source" },
            "after {step}: {s}"
        );
        let port = if finished { new.port } else { old.port };
        assert_eq!(bouncer.show(), (port, false), "after {step}");
        writer.wait_for(20);
        // Replication runs again, into the other server.
        let status = waymark(dir.path(), &["--json", "cutover", "status"], &[]);
        assert_eq!(status.json()["ready"], true, "after {step}: {}", status.stdout);
        if finished {
            waymark(dir.path(), &["cutover", "rollback"], &[]).ok();
        }
    }

    // Without a guard, running the command again undoes what the dead
    // runner left, then switches.
    let run = waymark(
        dir.path(),
        &["cutover", "switch"],
        &[
            ("FAILPOINTS", &crash_after("new-subscription-created")),
            ("WAYMARK_CUTOVER_NO_GUARD", "1"),
        ],
    );
    assert_ne!(run.code, 0);
    let status = waymark(dir.path(), &["cutover", "status"], &[]);
    assert!(
        status.stdout.contains("stopped after step new-subscription-created"),
        "{}",
        status.stdout
    );
    assert!(bouncer.show().1, "writes are still held");
    let run = waymark(dir.path(), &["cutover", "switch"], &[("WAYMARK_CUTOVER_NO_GUARD", "1")]).ok();
    assert!(
        run.stderr.contains("a switch a runner left was undone first"),
        "{}",
        run.stderr
    );
    assert_eq!(bouncer.show(), (new.port, false));

    let seen = writer.stop();
    assert!(seen.errors.is_empty(), "the writer saw errors: {:?}", seen.errors);
    assert_acked_on(&new, &seen);
    verify_until_equal(dir.path(), &old, &new);
}

#[test]
fn switch_refuses_what_is_not_ready_and_undoes_a_failed_final_check() {
    let (old, new, bouncer) = servers();
    let dir = tempfile::tempdir().unwrap();
    prepare(dir.path(), &old, &new, &bouncer);
    let id = state(dir.path())["id"].as_str().unwrap().to_owned();

    // One runner at a time.
    let lock = std::fs::File::create(dir.path().join(".waymark/cutover.lock")).unwrap();
    lock.try_lock().unwrap();
    waymark(dir.path(), &["cutover", "switch"], &[])
        .code(4)
        .stderr_has("another waymark runner is working on this cutover");
    drop(lock);

    // A final comparison that cannot fit in the deadline is refused before
    // anything is paused.
    waymark(dir.path(), &["cutover", "switch", "--deadline", "20ms"], &[])
        .code(5)
        .stderr_has("final check: comparing ")
        .stderr_has("more than half the deadline of 20ms; run `waymark cutover verify` (online) first");
    assert_eq!(bouncer.show(), (old.port, false));
    let writer = Writer::start(bouncer.url());
    writer.wait_for(20);

    // The target falls behind: the switch refuses and pauses nothing.
    new.execute("app", &format!("ALTER SUBSCRIPTION waymark_{id}_to_target DISABLE"));
    old.execute(
        "app",
        "INSERT INTO accounts SELECT g, 'late ' || g, 0 FROM generate_series(100001, 130000) g",
    );
    let run = waymark(dir.path(), &["cutover", "switch", "--max-lag-bytes", "1000000"], &[])
        .code(5)
        .stderr_has("switch to the target refused, and nothing was paused")
        .stderr_has(&format!(
            "replication: the subscription waymark_{id}_to_target on the target is disabled"
        ))
        .stderr_has("lag: ");
    assert!(!run.stderr.contains("pgbouncer:"), "PgBouncer passes: {}", run.stderr);
    assert_eq!(bouncer.show(), (old.port, false));
    let s = state(dir.path());
    assert_eq!((s["live"].as_str(), s["moving"].is_null()), (Some("source"), true));
    let status = waymark(dir.path(), &["cutover", "status", "--max-lag-bytes", "1000000"], &[]).code(5);
    assert!(status.stdout.contains("FAIL replication"), "{}", status.stdout);
    assert!(status.stdout.contains("FAIL lag"), "{}", status.stdout);
    writer.wait_for(20);

    // Caught up again, it would pass.
    new.execute("app", &format!("ALTER SUBSCRIPTION waymark_{id}_to_target ENABLE"));
    let started = Instant::now();
    while waymark(dir.path(), &["cutover", "status"], &[]).code != 0 {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "replication never caught up"
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    // A row changed on the target behind replication's back: verify names
    // it, and the switch's final comparison undoes the switch.
    new.execute("app", "UPDATE accounts SET balance = -1 WHERE id = 7");
    writer.wait_for(10);
    let report = waymark(dir.path(), &["--json", "cutover", "verify"], &[])
        .code(3)
        .json();
    let problems = report["problems"].as_array().unwrap();
    assert_eq!(
        problems.len(),
        1,
        "only the changed row, although the writer writes: {report}"
    );
    let problem = problems[0].as_str().unwrap();
    assert!(
        problem.starts_with("table public.accounts: rows with") && problem.ends_with("different: ('7')"),
        "{problem}"
    );
    waymark(dir.path(), &["cutover", "switch"], &[])
        .code(1)
        .stderr_has("the final comparison found the target differs from the source")
        .stderr_has("different: ('7')")
        .stderr_has("the switch was undone: traffic resumed on the source after a write pause of");
    assert_eq!(bouncer.show(), (old.port, false));
    let s = state(dir.path());
    assert_eq!((s["live"].as_str(), s["moving"].is_null()), (Some("source"), true));
    writer.wait_for(20);
    let status = waymark(dir.path(), &["--json", "cutover", "status"], &[]).ok().json();
    assert_eq!(status["status"]["live"], "source");
    let seen = writer.stop();
    assert!(seen.errors.is_empty(), "the writer saw errors: {:?}", seen.errors);

    // PgBouncer unreachable: refused before anything is paused.
    bouncer.stop();
    waymark(dir.path(), &["cutover", "switch"], &[])
        .code(5)
        .stderr_has("pgbouncer: PgBouncer: cannot reach its console at postgres://postgres@127.0.0.1:");
    let s = state(dir.path());
    assert_eq!((s["live"].as_str(), s["moving"].is_null()), (Some("source"), true));
    old.execute("app", "INSERT INTO writes (n) VALUES (-5)");
    bouncer.restart();
    assert_eq!(bouncer.show(), (old.port, false));
}

#[test]
fn prepare_names_every_problem_and_changes_nothing() {
    let old = Cluster::start(&installed_bin());
    let new = Cluster::start_with(&installed_bin(), "-c wal_level=replica");
    old.execute(
        "app",
        "CREATE TABLE accounts (id INT PRIMARY KEY, owner TEXT);\n\
         CREATE TABLE notes (a INT, b TEXT);\n\
         CREATE UNLOGGED TABLE scratch (id INT PRIMARY KEY);\n\
         CREATE TABLE logged (at TIMESTAMPTZ, what TEXT);\n\
         ALTER TABLE logged REPLICA IDENTITY FULL;",
    );
    new.execute("app", "CREATE TABLE leftover (id INT)");
    let dir = tempfile::tempdir().unwrap();
    let run = waymark(
        dir.path(),
        &[
            "cutover",
            "prepare",
            "--source",
            &old.url("app"),
            "--target",
            &new.url("app"),
        ],
        &[],
    )
    .code(5)
    .stderr_has("the cutover cannot be prepared:")
    .stderr_has("table public.notes has no primary key or replica identity")
    .stderr_has("table public.scratch is unlogged: logical replication does not carry its rows")
    .stderr_has("the target must be an empty database, and it has 1 table(s): public.leftover")
    .stderr_has(
        "target: wal_level is replica; set wal_level = logical and restart the server (replication back to the \
         source, the way back, needs it)",
    )
    .stderr_has("nothing was changed");
    assert!(
        !run.stderr.contains("public.logged"),
        "REPLICA IDENTITY FULL is enough: {}",
        run.stderr
    );
    assert!(!run.stderr.contains("public.accounts"), "{}", run.stderr);
    assert!(!run.stderr.contains("source: wal_level"), "{}", run.stderr);
    assert!(!dir.path().join(".waymark/cutover.json").exists());
    assert!(!dir.path().join("backups").exists());
    assert!(old.column("SELECT pubname::text FROM pg_publication").is_empty());
    assert_eq!(
        new.column("SELECT relname::text FROM pg_class WHERE relkind = 'r' AND relnamespace = 'public'::regnamespace"),
        ["leftover"]
    );

    // Not PostgreSQL: a usage error.
    waymark(
        dir.path(),
        &[
            "cutover",
            "prepare",
            "--source",
            "sqlite://x.db",
            "--target",
            &new.url("app"),
        ],
        &[],
    )
    .code(2)
    .stderr_has("sqlite://x.db: cutover moves PostgreSQL databases only");
}

#[test]
fn a_prepare_that_fails_half_way_leaves_the_target_empty_and_runs_again() {
    let old = Cluster::start(&installed_bin());
    let new = Cluster::start(&installed_bin());
    old.execute(
        "app",
        "CREATE TABLE accounts (id INT PRIMARY KEY, owner TEXT);\n\
         INSERT INTO accounts SELECT g, 'owner ' || g FROM generate_series(1, 100) g;\n\
         CREATE VIEW report AS SELECT count(*) AS n FROM accounts;",
    );
    // Not a table, so the target passes as empty; but the source's primary
    // key, made after its tables and views, cannot take the name.
    new.execute("app", "CREATE VIEW accounts_pkey AS SELECT 1 AS x");
    let dir = tempfile::tempdir().unwrap();
    let (source, target) = (old.url("app"), new.url("app"));
    let args = ["cutover", "prepare", "--source", &source, "--target", &target];
    waymark(dir.path(), &args, &[])
        .code(1)
        .stderr_has("relation \"accounts_pkey\" already exists");
    let objects =
        new.column("SELECT relname::text FROM pg_class WHERE relnamespace = 'public'::regnamespace ORDER BY 1");
    assert_eq!(
        objects,
        ["accounts_pkey"],
        "the table and view made before the failure were rolled back"
    );
    let s = state(dir.path());
    assert_eq!(s["phase"], "preparing", "{s}");
    let backup = s["backup"].as_str().unwrap().to_owned();

    new.execute("app", "DROP VIEW accounts_pkey");
    // Made this time, and then the initial copy fails: prepare stops and
    // says where to look; run again once it is fixed, it goes on.
    let run = waymark(dir.path(), &args, &[("FAILPOINTS", &crash_after("prepare-schema"))]);
    assert_ne!(run.code, 0, "{}", run.stderr);
    new.execute(
        "app",
        "ALTER TABLE accounts ADD CONSTRAINT nobody CHECK (owner IS NULL)",
    );
    waymark(dir.path(), &args, &[])
        .code(1)
        .stderr_has("copying the tables into postgres://postgres@127.0.0.1:")
        .stderr_has("with public.accounts still to copy, and the target server's log says why");
    assert_eq!(state(dir.path())["phase"], "preparing");
    assert!(
        new.log().contains("violates check constraint \"nobody\""),
        "{}",
        new.log()
    );
    new.execute("app", "ALTER TABLE accounts DROP CONSTRAINT nobody");
    let run = waymark(dir.path(), &args, &[]).ok();
    assert!(run.stderr.contains("(resumed)"), "{}", run.stderr);
    assert_eq!(
        state(dir.path())["backup"],
        backup.as_str(),
        "the same backup, not a second one"
    );
    assert_eq!(std::fs::read_dir(dir.path().join("backups")).unwrap().count(), 1);
    assert_eq!(new.column("SELECT count(*)::text FROM accounts"), ["100"]);
    assert_eq!(new.column("SELECT n::text FROM report"), ["100"]);

    // Prepared without PgBouncer or a route command, traffic cannot move.
    waymark(dir.path(), &["cutover", "switch"], &[])
        .code(1)
        .stderr_has("neither PgBouncer nor a route command was given at prepare, so there is no way to move traffic");
    assert!(new.try_execute("app", "INSERT INTO accounts VALUES (0, 'x')").is_ok());
    assert!(old.try_execute("app", "INSERT INTO accounts VALUES (-1, 'x')").is_ok());
}

#[test]
fn without_pgbouncer_the_server_left_is_read_only_and_a_route_command_moves_traffic() {
    let old = Cluster::start(&installed_bin());
    let new = Cluster::start(&newer_bin());
    old.execute("app", SCHEMA);
    let dir = tempfile::tempdir().unwrap();
    // The application finds its server in a file, which the route command
    // rewrites (atomically: the writer reads it before every write). It
    // refuses to route to the target while `refuse` exists.
    let live = dir.path().join("live-url");
    std::fs::write(&live, old.url("app")).unwrap();
    let command = format!(
        "if [ -e {refuse} ] && [ \"$WAYMARK_CUTOVER_LIVE\" = target ]; then echo 'no route to the new host' >&2; \
         exit 3; fi; printf %s \"$WAYMARK_CUTOVER_LIVE_URL\" > {live}.tmp && mv {live}.tmp {live}",
        refuse = dir.path().join("refuse").display(),
        live = live.display()
    );
    let writer = Writer::following(live.clone());
    writer.wait_for(20);
    let (source, target) = (old.url("app"), new.url("app"));
    let args = [
        "cutover",
        "prepare",
        "--source",
        &source,
        "--target",
        &target,
        "--route-command",
        &command,
    ];
    waymark(dir.path(), &args, &[]).ok();
    let status = waymark(dir.path(), &["--json", "cutover", "status"], &[]).ok().json();
    assert_eq!(
        guardrail_names(&status),
        ["replication", "lag", "transactions", "schema", "backup", "read-only"]
    );
    // A user who may neither own the target's database nor end sessions
    // there could not hold writes on it: the guardrail says so.
    new.execute(
        "app",
        "BEGIN READ WRITE; CREATE ROLE mover LOGIN REPLICATION; \
         GRANT USAGE ON SCHEMA waymark_cutover TO mover; COMMIT",
    );
    let mut other = state(dir.path());
    other["target"] = serde_json::Value::from(new.url("app").replace("postgres@", "mover@"));
    std::fs::write(dir.path().join("mover.json"), other.to_string()).unwrap();
    let status = waymark(dir.path(), &["cutover", "status", "--state", "mover.json"], &[]).code(5);
    let line = status
        .stdout
        .lines()
        .find(|l| l.starts_with("FAIL read-only"))
        .unwrap_or_default();
    assert!(
        line.ends_with("target: the user must own the database (or be a superuser) to make it read-only"),
        "{}",
        status.stdout
    );
    let takes_writes = |server: &Cluster| server.try_execute("app", "INSERT INTO writes (n) VALUES (-random() * 1e9)");
    // The target's mirror of the state leaves the command out: it may
    // carry credentials.
    assert_eq!(
        new.column("SELECT state->>'route' FROM waymark_cutover.state"),
        ["(kept in the state file only)"]
    );
    assert_eq!(state(dir.path())["route"], command.as_str());
    // Before any switch, the target is read-only too: only the live server
    // takes writes.
    let refused = takes_writes(&new).unwrap_err();
    assert!(refused.contains("read-only transaction"), "{refused}");

    // The route command fails: the switch is undone, the source takes
    // writes again and the application still points at it.
    std::fs::write(dir.path().join("refuse"), "").unwrap();
    writer.wait_for(20);
    waymark(dir.path(), &["cutover", "switch"], &[])
        .code(1)
        .stderr_has("the route command `")
        .stderr_has("pointing traffic at the target, failed (exit status: 3): no route to the new host")
        .stderr_has("the switch was undone: traffic resumed on the source");
    assert_eq!(std::fs::read_to_string(&live).unwrap(), old.url("app"));
    takes_writes(&old).unwrap();
    let s = state(dir.path());
    assert_eq!((s["live"].as_str(), s["moving"].is_null()), (Some("source"), true));
    std::fs::remove_file(dir.path().join("refuse")).unwrap();

    // A runner killed while the source is read-only: the guard undoes the
    // move and the source takes writes again.
    writer.wait_for(20);
    let run = waymark(
        dir.path(),
        &["cutover", "switch"],
        &[("FAILPOINTS", &crash_after("drained"))],
    );
    assert_ne!(run.code, 0, "{}", run.stderr);
    assert_eq!(wait_until_settled(dir.path())["live"], "source");
    takes_writes(&old).unwrap();

    for (command, to, left) in [("switch", &new, &old), ("rollback", &old, &new)] {
        writer.wait_for(30);
        let report = waymark(dir.path(), &["--json", "cutover", command], &[]).ok().json();
        eprintln!("{command}: writes held {} ms", report["switch"]["pause_ms"]);
        assert_eq!(std::fs::read_to_string(&live).unwrap(), to.url("app"));
        // Only the live server takes writes.
        takes_writes(to).unwrap();
        let refused = takes_writes(left).unwrap_err();
        assert!(refused.contains("read-only transaction"), "{command}: {refused}");
        writer.wait_for(30);
    }

    // The writer saw writes refused and its sessions ended (or cut off
    // mid-write) while the move ran, and nothing else; every write it saw
    // acknowledged is on the live server.
    let seen = writer.stop();
    let unexpected: Vec<&String> = seen
        .errors
        .iter()
        .filter(|e| {
            !(e.contains("read-only transaction")
                || e.contains("terminating connection")
                || e.contains("error communicating with database"))
        })
        .collect();
    assert!(unexpected.is_empty(), "the writer saw {unexpected:?}");
    eprintln!(
        "the writer saw {} writes acknowledged and {} refused or cut off",
        seen.acked.len(),
        seen.errors.len()
    );
    assert_acked_on(&old, &seen);
    verify_until_equal(dir.path(), &old, &new);

    // Complete leaves the server not live read-only.
    waymark(dir.path(), &["cutover", "complete"], &[]).ok();
    assert!(takes_writes(&new).unwrap_err().contains("read-only transaction"));
    takes_writes(&old).unwrap();
}

#[test]
fn a_seeded_prepare_fills_the_target_from_the_backup_and_replicates_from_its_position() {
    let (old, new, bouncer) = servers();
    let dir = tempfile::tempdir().unwrap();
    let writer = Writer::start(bouncer.url());
    writer.wait_for(20);
    let args = prepare_args(&old, &new, &bouncer, &["--seed"]);

    waymark(
        dir.path(),
        &prepare_args(&old, &new, &bouncer, &["--seed", "--from-backup", "x"]),
        &[],
    )
    .code(2)
    .stderr_has("--seed");

    // A seeded prepare abandoned after its backup leaves a slot holding
    // the source's WAL; complete removes it with the rest.
    let abandoned = prepare_args(&old, &new, &bouncer, &["--seed", "--state", "abandoned.json"]);
    let run = waymark(
        dir.path(),
        &abandoned,
        &[("FAILPOINTS", &crash_after("prepare-backup"))],
    );
    assert_ne!(run.code, 0, "{}", run.stderr);
    assert_eq!(old.column("SELECT count(*)::text FROM pg_replication_slots"), ["1"]);
    waymark(dir.path(), &["cutover", "complete", "--state", "abandoned.json"], &[]).ok();
    no_replication_left(&old);

    // Killed after the backup, and the target then holding part of it:
    // prepare refuses until the target is emptied, then goes on with the
    // same backup and position.
    let run = waymark(dir.path(), &args, &[("FAILPOINTS", &crash_after("prepare-backup"))]);
    assert_ne!(run.code, 0, "{}", run.stderr);
    let seed = state(dir.path())["seed"].clone();
    let lsn = seed["lsn"].as_str().unwrap().to_owned();
    assert_eq!(seed["filled"], false, "{seed}");
    new.execute("app", "CREATE TABLE accounts (id INT PRIMARY KEY)");
    waymark(dir.path(), &args, &[])
        .code(2)
        .stderr_has("the target was being filled from the backup ")
        .stderr_has("empty the target database (drop it and create it again) and run prepare again");
    new.execute("app", "DROP TABLE accounts");
    writer.wait_for(50);
    // Filled, and then the writes since the backup cannot be applied:
    // prepare says so rather than wait.
    let run = waymark(dir.path(), &args, &[("FAILPOINTS", &crash_after("prepare-schema"))]);
    assert_ne!(run.code, 0, "{}", run.stderr);
    assert_eq!(state(dir.path())["seed"]["filled"], true);
    new.execute(
        "app",
        "ALTER TABLE writes ADD CONSTRAINT nobody CHECK (n < 0) NOT VALID",
    );
    waymark(dir.path(), &args, &[])
        .code(1)
        .stderr_has("replication into postgres://postgres@127.0.0.1:")
        .stderr_has("error(s) (pg_stat_subscription_stats) while catching up, and the target server's log says why");
    assert!(
        new.log().contains("violates check constraint \"nobody\""),
        "{}",
        new.log()
    );
    new.execute("app", "ALTER TABLE writes DROP CONSTRAINT nobody");
    let run = waymark(dir.path(), &args, &[]).ok();
    assert!(
        run.stderr.contains(&format!(
            "schema and rows from {}",
            state(dir.path())["backup"].as_str().unwrap()
        )),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr
            .contains(&format!("replicating from its position {lsn} (resumed)")),
        "{}",
        run.stderr
    );
    assert_eq!(state(dir.path())["seed"]["filled"], true);
    // Replication copied nothing: every table was ready from the start.
    assert_eq!(
        new.column("SELECT count(*)::text FROM pg_subscription_rel WHERE srsublsn IS NOT NULL"),
        ["0"]
    );

    // The rows written while the backup was taken, and since, arrived
    // once each.
    writer.wait_for(50);
    let report = waymark(dir.path(), &["--json", "cutover", "verify"], &[]).ok().json();
    assert_eq!(report["problems"], serde_json::json!([]), "{report}");
    let seen = writer.stop();
    assert!(seen.errors.is_empty(), "{:?}", seen.errors);
    verify_until_equal(dir.path(), &old, &new);
    assert_eq!(assert_acked_on(&new, &seen), seen.acked.len());
    assert!(
        !new.log().contains("duplicate key"),
        "a row was applied twice:\n{}",
        new.log()
    );
}
