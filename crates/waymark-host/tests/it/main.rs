//! The step host: the sandbox's limits with a misbehaving step, and the
//! built-in SQL step's statement splitting, seen through its `plan` export.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use waymark_host::{
    Call, CallError, DatabaseError, Dialect, Direction, Limits, StepEnv, StepFailure, StepFuture, StepHost, Value,
};

/// Records the statements a step runs; fails any containing `fail`.
#[derive(Clone, Default)]
struct Recorder(Arc<Mutex<Vec<String>>>);

impl StepEnv for Recorder {
    fn execute<'a>(&'a mut self, sql: &'a str, _: Vec<Value>) -> StepFuture<'a, Result<u64, CallError>> {
        Box::pin(async move {
            if sql.contains("fail") {
                return Err(CallError::Database(DatabaseError {
                    code: Some("XX000".into()),
                    message: "refused".into(),
                    position: None,
                }));
            }
            self.0.lock().unwrap().push(sql.to_owned());
            Ok(1)
        })
    }

    fn in_transaction(&self) -> bool {
        false
    }

    fn execute_script<'a>(&'a mut self, _: &'a str) -> StepFuture<'a, Result<u64, CallError>> {
        unreachable!("never offered outside a transaction")
    }
}

fn host(limits: Limits) -> StepHost {
    let cache = tempfile::tempdir().unwrap().keep();
    StepHost::with_cache_dir(limits, Some(cache)).unwrap()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn misbehave(host: &StepHost, input: &str) -> (Vec<String>, Result<(), StepFailure>) {
    let bytes = std::fs::read(waymark_host::TEST_STEPS_WASM_PATH).unwrap();
    let step = host.load("test-steps", &bytes).unwrap();
    let recorder = Recorder::default();
    let (_, outcome) = runtime().block_on(host.run(
        &step,
        &Call::new(Direction::Up, Dialect::Sqlite, input),
        Box::new(recorder.clone()),
    ));
    let statements = recorder.0.lock().unwrap().clone();
    (statements, outcome)
}

fn small_limits() -> Limits {
    Limits {
        memory_bytes: 16 * 1024 * 1024,
        timeout: Duration::from_millis(500),
        log_bytes: 64 * 1024,
        ..Limits::default()
    }
}

#[test]
fn an_infinite_loop_is_stopped_at_the_deadline() {
    let host = host(small_limits());
    let started = Instant::now();
    let (statements, outcome) = misbehave(&host, "sql:INSERT INTO t VALUES (1)|loop");
    assert_eq!(
        outcome,
        Err(StepFailure::Timeout {
            limit: Duration::from_millis(500)
        })
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "stopped promptly: {:?}",
        started.elapsed()
    );
    // The statement ran before the loop; the caller rolls it back.
    assert_eq!(statements, ["INSERT INTO t VALUES (1)"]);
    // The host is healthy afterwards: the next step runs normally.
    assert_eq!(misbehave(&host, "sql:SELECT 1").1, Ok(()));
}

#[test]
fn time_waiting_on_the_database_does_not_count() {
    struct Slow;
    impl StepEnv for Slow {
        fn execute<'a>(&'a mut self, _: &'a str, _: Vec<Value>) -> StepFuture<'a, Result<u64, CallError>> {
            Box::pin(async {
                tokio::time::sleep(Duration::from_millis(800)).await;
                Ok(0)
            })
        }

        fn in_transaction(&self) -> bool {
            false
        }

        fn execute_script<'a>(&'a mut self, sql: &'a str) -> StepFuture<'a, Result<u64, CallError>> {
            self.execute(sql, Vec::new())
        }
    }
    let host = host(small_limits());
    let bytes = std::fs::read(waymark_host::TEST_STEPS_WASM_PATH).unwrap();
    let step = host.load("test-steps", &bytes).unwrap();
    let (_, outcome) = runtime().block_on(host.run(
        &step,
        &Call::new(Direction::Up, Dialect::Sqlite, "sql:SELECT pg_sleep(0.8)"),
        Box::new(Slow),
    ));
    assert_eq!(outcome, Ok(()));
}

#[test]
fn traps_and_panics_fail_the_step() {
    let host = host(small_limits());
    match misbehave(&host, "trap").1 {
        Err(StepFailure::Trap { message, .. }) => assert!(message.contains("unreachable"), "{message}"),
        other => panic!("expected a trap, got {other:?}"),
    }
    match misbehave(&host, "panic").1 {
        Err(StepFailure::Trap { stderr, .. }) => {
            assert!(stderr.contains("the test step panicked on purpose"), "{stderr}")
        }
        other => panic!("expected a trap, got {other:?}"),
    }
    match misbehave(&host, "recurse").1 {
        Err(StepFailure::Trap { message, .. }) => assert!(message.contains("call stack exhausted"), "{message}"),
        other => panic!("expected a stack overflow, got {other:?}"),
    }
}

#[test]
fn a_memory_bomb_hits_the_cap() {
    let host = host(small_limits());
    assert_eq!(
        misbehave(&host, "oom").1,
        Err(StepFailure::MemoryLimit {
            limit_bytes: 16 * 1024 * 1024
        })
    );
}

#[test]
fn step_errors_and_database_errors_come_back_typed() {
    let host = host(small_limits());
    assert_eq!(
        misbehave(&host, "fail").1,
        Err(StepFailure::Other("the test step failed on purpose".into()))
    );
    assert_eq!(
        misbehave(&host, "sql:please fail").1,
        Err(StepFailure::Statement {
            line: 1,
            code: Some("XX000".into()),
            message: "refused".into()
        })
    );
}

#[test]
fn log_floods_are_bounded() {
    let host = host(Limits {
        timeout: Duration::from_secs(20),
        ..small_limits()
    });
    assert_eq!(misbehave(&host, "log-flood").1, Ok(()));
}

#[test]
fn compiled_components_are_cached_on_disk() {
    let cache = tempfile::tempdir().unwrap();
    let first = StepHost::with_cache_dir(Limits::default(), Some(cache.path().to_owned())).unwrap();
    first.sql_step().unwrap();
    let artifacts: Vec<_> = std::fs::read_dir(cache.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(artifacts.len(), 1, "{artifacts:?}");
    // A second host (a second process, in real use) loads the artifact.
    let second = StepHost::with_cache_dir(Limits::default(), Some(cache.path().to_owned())).unwrap();
    let step = second.sql_step().unwrap();
    assert_eq!(step.digest().len(), 64);
    drop((step, second));
    // A corrupt artifact is recompiled, not trusted.
    let path = cache.path().join(&artifacts[0]);
    std::fs::write(&path, b"garbage").unwrap();
    StepHost::with_cache_dir(Limits::default(), Some(cache.path().to_owned()))
        .unwrap()
        .sql_step()
        .unwrap();
    assert_ne!(std::fs::read(&path).unwrap(), b"garbage");
}

#[test]
fn a_component_that_is_not_a_step_is_refused() {
    let host = host(Limits::default());
    let err = host.load("junk", b"\0asm\x01\0\0\0").unwrap_err();
    assert!(err.to_string().starts_with("step component junk:"), "{err}");
}

/// What the built-in SQL step would run for `input`: `(line, statement)`.
fn split(dialect: Dialect, input: &str) -> Result<Vec<(u32, String)>, StepFailure> {
    let host = host(Limits::default());
    let step = host.sql_step().unwrap();
    let actions = runtime().block_on(host.plan(&step, &Call::new(Direction::Up, dialect, input)))?;
    Ok(actions.into_iter().map(|a| (a.line, a.text)).collect())
}

#[track_caller]
fn check(dialect: Dialect, input: &str, expected: &[(u32, &str)]) {
    let got = split(dialect, input).unwrap();
    let got: Vec<(u32, &str)> = got.iter().map(|(l, t)| (*l, t.as_str())).collect();
    assert_eq!(got, expected, "input:\n{input}");
}

#[test]
fn splits_postgres() {
    check(
        Dialect::Postgres,
        "SELECT 1; SELECT 2;",
        &[(1, "SELECT 1"), (1, "SELECT 2")],
    );
    check(Dialect::Postgres, "-- only; a comment\n/* and; another */\n", &[]);
    check(
        Dialect::Postgres,
        "CREATE FUNCTION f() RETURNS int AS $$ SELECT 1; $$ LANGUAGE sql;\nDO $x$ BEGIN PERFORM 1; END $x$;",
        &[
            (1, "CREATE FUNCTION f() RETURNS int AS $$ SELECT 1; $$ LANGUAGE sql"),
            (2, "DO $x$ BEGIN PERFORM 1; END $x$"),
        ],
    );
    check(
        Dialect::Postgres,
        "SELECT 'a;''b';\nSELECT E'\\';';",
        &[(1, "SELECT 'a;''b'"), (2, "SELECT E'\\';'")],
    );
    check(
        Dialect::Postgres,
        "/* a /* nested; */ ; */ SELECT \"semi;colon\";",
        &[(1, "SELECT \"semi;colon\"")],
    );
    check(
        Dialect::Postgres,
        "PREPARE p AS SELECT $1;\nSELECT a$b FROM t;",
        &[(1, "PREPARE p AS SELECT $1"), (2, "SELECT a$b FROM t")],
    );
    check(
        Dialect::Postgres,
        "CREATE FUNCTION g() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT CASE WHEN true THEN 1 END; SELECT 2; END;\nSELECT 3",
        &[
            (
                1,
                "CREATE FUNCTION g() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT CASE WHEN true THEN 1 END; SELECT 2; END",
            ),
            (2, "SELECT 3"),
        ],
    );
}

#[test]
fn splits_mysql() {
    check(
        Dialect::Mysql,
        "# hash; comment\nSELECT 1;-- x\nSELECT 2--1;",
        &[(2, "SELECT 1"), (3, "SELECT 2--1")],
    );
    check(
        Dialect::Mysql,
        "SELECT 'it\\'s;', \"a;b\", `c;d`;",
        &[(1, "SELECT 'it\\'s;', \"a;b\", `c;d`")],
    );
    check(
        Dialect::Mysql,
        "/*!40101 SET x = 1 */;\nSELECT 1;",
        &[(1, "/*!40101 SET x = 1 */"), (2, "SELECT 1")],
    );
    check(
        Dialect::Mysql,
        "DELIMITER //\nCREATE PROCEDURE p() BEGIN SELECT 1; SELECT 2; END//\ndelimiter ;\nCALL p();",
        &[
            (2, "CREATE PROCEDURE p() BEGIN SELECT 1; SELECT 2; END"),
            (4, "CALL p()"),
        ],
    );
}

#[test]
fn splits_sqlite() {
    check(
        Dialect::Sqlite,
        "CREATE TEMP TRIGGER t AFTER INSERT ON a BEGIN\n  UPDATE a SET x = CASE WHEN 1 THEN 2 END;\n  DELETE FROM b;\nEND;\nSELECT [odd;name] FROM `t;`;",
        &[
            (
                1,
                "CREATE TEMP TRIGGER t AFTER INSERT ON a BEGIN\n  UPDATE a SET x = CASE WHEN 1 THEN 2 END;\n  DELETE FROM b;\nEND",
            ),
            (5, "SELECT [odd;name] FROM `t;`"),
        ],
    );
    check(
        Dialect::Sqlite,
        "BEGIN; SELECT 1; COMMIT;",
        &[(1, "BEGIN"), (1, "SELECT 1"), (1, "COMMIT")],
    );
}

#[test]
fn reports_unterminated_input_with_its_line() {
    for (dialect, input, line, message) in [
        (Dialect::Postgres, "SELECT 1;\nSELECT 'open", 2, "unterminated string"),
        (
            Dialect::Postgres,
            "SELECT 1;\n\n/* open",
            3,
            "unterminated block comment",
        ),
        (Dialect::Mysql, "DELIMITER\n", 0, ""),
        (
            Dialect::Sqlite,
            "CREATE TRIGGER t AFTER INSERT ON a BEGIN SELECT 1;",
            1,
            "missing END",
        ),
    ] {
        match split(dialect, input) {
            Err(StepFailure::InvalidInput { line: l, message: m }) => {
                assert_eq!(l, line, "{input}");
                assert!(m.contains(message), "{m}");
            }
            // A lone `DELIMITER` is not the command: it is passed on as SQL.
            Ok(actions) if line == 0 => assert_eq!(actions, [(1, "DELIMITER".to_owned())]),
            other => panic!("{input}: {other:?}"),
        }
    }
}

/// Inside a transaction, like PostgreSQL: scripts are offered, and a script
/// containing `fail` fails as a whole.
#[derive(Clone, Default)]
struct InTransaction(Arc<Mutex<Vec<String>>>);

impl StepEnv for InTransaction {
    fn execute<'a>(&'a mut self, sql: &'a str, _: Vec<Value>) -> StepFuture<'a, Result<u64, CallError>> {
        Box::pin(async move {
            if sql.contains("fail") {
                return Err(CallError::Database(DatabaseError {
                    code: Some("42601".into()),
                    message: "nope".into(),
                    position: None,
                }));
            }
            self.0.lock().unwrap().push(format!("statement: {sql}"));
            Ok(1)
        })
    }

    fn in_transaction(&self) -> bool {
        true
    }

    fn execute_script<'a>(&'a mut self, sql: &'a str) -> StepFuture<'a, Result<u64, CallError>> {
        Box::pin(async move {
            if sql.contains("fail") {
                return Err(CallError::Database(DatabaseError {
                    code: Some("42601".into()),
                    message: "nope".into(),
                    position: None,
                }));
            }
            self.0.lock().unwrap().push(format!("script: {sql}"));
            Ok(3)
        })
    }
}

#[test]
fn sql_step_sends_one_script_and_replays_it_to_find_a_failing_line() {
    let host = host(Limits::default());
    let step = host.sql_step().unwrap();
    let rt = runtime();
    let db = InTransaction::default();
    let input = "CREATE TABLE a (id int); -- trailing comment\nINSERT INTO a VALUES (1);\n";
    let (_, outcome) = rt.block_on(host.run(
        &step,
        &Call::new(Direction::Up, Dialect::Postgres, input),
        Box::new(db.clone()),
    ));
    assert_eq!(outcome, Ok(()));
    assert_eq!(
        db.0.lock().unwrap().as_slice(),
        ["script: CREATE TABLE a (id int)\n;\nINSERT INTO a VALUES (1)"]
    );

    let db = InTransaction::default();
    let input = "CREATE TABLE b (id int);\n\nSELECT fail;\nSELECT 3;\n";
    let (_, outcome) = rt.block_on(host.run(
        &step,
        &Call::new(Direction::Up, Dialect::Postgres, input),
        Box::new(db.clone()),
    ));
    assert_eq!(
        outcome,
        Err(StepFailure::Statement {
            line: 3,
            code: Some("42601".into()),
            message: "nope".into()
        })
    );
    // The failed script left nothing (the host's savepoint); the replay ran
    // statements one by one up to the failing one.
    assert_eq!(db.0.lock().unwrap().as_slice(), ["statement: CREATE TABLE b (id int)"]);
}

#[test]
fn a_flood_of_database_calls_is_cut_off() {
    let host = host(Limits {
        max_calls: 1_000,
        ..small_limits()
    });
    let (statements, outcome) = misbehave(&host, "call-flood");
    assert_eq!(outcome, Err(StepFailure::CallLimit { limit: 1_000 }));
    assert_eq!(statements.len(), 1_000);
}

#[test]
fn the_sandbox_grants_no_files_network_or_environment() {
    let host = host(small_limits());
    let failure = |input: &str| match misbehave(&host, input).1 {
        Err(StepFailure::Other(message)) => message,
        other => panic!("{input}: {other:?}"),
    };
    // No preopened folders: nothing on the host's filesystem can be named.
    let read = failure("read-file");
    assert!(read.starts_with("read-file: ") && !read.contains("bytes"), "{read}");
    let list = failure("list-dir");
    assert!(list.starts_with("list-dir: ") && !list.contains("entries"), "{list}");
    assert_eq!(failure("env"), "env: 0 variables, 0 arguments");
    let connect = failure("connect");
    assert!(
        connect.starts_with("connect: ") && connect != "connect: connected",
        "{connect}"
    );
}

/// The built-in ops step's own unit tests (its file reading, names, views
/// and trigger text) run natively, in a target folder of their own so as
/// not to wait on this build's lock. The plugins are a workspace apart,
/// which `cargo test --workspace` does not reach.
#[test]
fn the_ops_step_passes_its_unit_tests() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut cargo = std::process::Command::new(env!("CARGO"));
    cargo
        .args([
            "test",
            "--locked",
            "--quiet",
            "-p",
            "waymark-ops-step",
            "--manifest-path",
        ])
        .arg(root.join("plugins/Cargo.toml"))
        .arg("--target-dir")
        .arg(root.join("target/plugin-unit-tests"));
    // The outer test run's settings describe its own build.
    for (key, _) in std::env::vars_os() {
        let key = key.to_string_lossy().into_owned();
        if (key.starts_with("CARGO_") && key != "CARGO_HOME") || key == "RUSTFLAGS" {
            cargo.env_remove(key);
        }
    }
    let out = cargo.output().unwrap();
    assert!(
        out.status.success(),
        "the ops step's unit tests failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
