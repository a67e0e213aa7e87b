//! A step that misbehaves on request, for waymark's sandbox tests.
//!
//! The input names the behaviour: `loop`, `trap`, `panic`, `oom`, `recurse`,
//! `log-flood`, `call-flood`, `read-file`, `list-dir`, `env`, `connect`,
//! `fail`, `huge-error`, `config` (fails with its configuration as the
//! message), or a call followed by more behaviour after a `|`:
//! `sql:<statement>` (runs it; fails on error), `ignore:<statement>` (runs
//! it and ignores an error), `query:<statement>` (runs it; fails on error),
//! `commit:<checkpoint>`; `repeat:<n>:<statement>` runs the statement n
//! times (for benchmarks); `echo-query:<statement>` fails with the rows the
//! query returned as its message. Its description comes from its configuration's
//! `describe` member when there is one, so a test can make it say anything.

wit_bindgen::generate!({
    world: "step-plugin",
    path: "../../wit",
});

use exports::waymark::plugin::step::Guest;
use waymark::plugin::types::{Action, Description, Direction, StatementError, StepError};
use waymark::plugin::{database, environment, log};

struct TestStep;

impl Guest for TestStep {
    fn describe() -> Description {
        let config = environment::config();
        // `{"describe": {"name": ..., "version": ..., "reversible": ...}}`,
        // read without a JSON parser to keep the component small.
        let field = |key: &str| {
            let start = config.find(&format!("\"{key}\":"))? + key.len() + 3;
            let rest = config[start..].trim_start();
            let end = rest.find([',', '}'])?;
            Some(rest[..end].trim().trim_matches('"').to_owned())
        };
        Description {
            name: field("name").unwrap_or_else(|| "test-steps".to_owned()),
            version: field("version").unwrap_or_else(|| "0.1.0".to_owned()),
            summary: "Misbehaves on request, for waymark's sandbox tests.".to_owned(),
            reversible: field("reversible").is_none_or(|r| r == "true"),
        }
    }

    fn plan(_: Direction, input: String) -> Result<Vec<Action>, StepError> {
        Ok(vec![Action {
            line: 0,
            text: format!("misbehave: {input}"),
        }])
    }

    fn up(input: String) -> Result<(), StepError> {
        behave(&input)
    }

    fn down(input: String) -> Result<(), StepError> {
        behave(&input)
    }
}

export!(TestStep);

fn behave(input: &str) -> Result<(), StepError> {
    let input = input.trim();
    let failed = |error| StepError::Statement(StatementError { line: 1, error });
    if let Some(rest) = input.strip_prefix("repeat:") {
        let (n, statement) = rest.split_once(':').unwrap_or(("0", ""));
        for _ in 0..n.parse::<u64>().unwrap_or(0) {
            database::execute(statement, &[]).map_err(failed)?;
        }
        return Ok(());
    }
    for (prefix, call) in [
        ("sql:", Call::Execute),
        ("ignore:", Call::Ignore),
        ("query:", Call::Query),
        ("commit:", Call::Commit),
        ("echo-query:", Call::Echo),
    ] {
        if let Some(rest) = input.strip_prefix(prefix) {
            let (argument, then) = rest.split_once('|').unwrap_or((rest, ""));
            match call {
                Call::Execute => drop(database::execute(argument, &[]).map_err(failed)?),
                Call::Ignore => drop(database::execute(argument, &[])),
                Call::Query => drop(database::query(argument, &[]).map_err(failed)?),
                Call::Commit => database::commit(argument).map_err(failed)?,
                Call::Echo => {
                    let rows = database::query(argument, &[]).map_err(failed)?;
                    return Err(StepError::Other(format!("{rows:?}")));
                }
            }
            return behave(then);
        }
    }
    match input {
        "" => Ok(()),
        "loop" => {
            let mut n: u64 = 0;
            loop {
                n = std::hint::black_box(n.wrapping_add(1));
            }
        }
        "trap" => core::arch::wasm32::unreachable(),
        "panic" => panic!("the test step panicked on purpose"),
        "oom" => {
            let mut hoard: Vec<Vec<u8>> = Vec::new();
            loop {
                hoard.push(vec![1u8; 1 << 20]);
                std::hint::black_box(&hoard);
            }
        }
        "recurse" => {
            #[allow(unconditional_recursion)]
            fn deeper(n: u64) -> u64 {
                std::hint::black_box(deeper(std::hint::black_box(n) + 1)) + 1
            }
            deeper(0);
            Ok(())
        }
        "log-flood" => {
            for i in 0..1_000_000u32 {
                log::log(log::Level::Info, &format!("flood line {i} {}", "x".repeat(200)));
            }
            Ok(())
        }
        "call-flood" => {
            for _ in 0..10_000_000u32 {
                database::execute("SELECT 1", &[])
                    .map_err(|error| StepError::Statement(StatementError { line: 1, error }))?;
            }
            Ok(())
        }
        // Each of these reports what it got; the sandbox tests assert that
        // it got nothing.
        "read-file" => match std::fs::read_to_string("/etc/passwd") {
            Ok(text) => Err(StepError::Other(format!("read-file: read {} bytes", text.len()))),
            Err(e) => Err(StepError::Other(format!("read-file: {e}"))),
        },
        "list-dir" => match std::fs::read_dir("/") {
            Ok(entries) => Err(StepError::Other(format!(
                "list-dir: listed {} entries",
                entries.count()
            ))),
            Err(e) => Err(StepError::Other(format!("list-dir: {e}"))),
        },
        "env" => Err(StepError::Other(format!(
            "env: {} variables, {} arguments",
            std::env::vars().count(),
            std::env::args().count()
        ))),
        "connect" => match std::net::TcpStream::connect("127.0.0.1:5432") {
            Ok(_) => Err(StepError::Other("connect: connected".to_owned())),
            Err(e) => Err(StepError::Other(format!("connect: {e}"))),
        },
        "fail" => Err(StepError::Other("the test step failed on purpose".to_owned())),
        "huge-error" => Err(StepError::Other("x".repeat(8 << 20))),
        "config" => Err(StepError::Other(environment::config())),
        other => Err(StepError::Other(format!("unknown behaviour {other:?}"))),
    }
}

enum Call {
    Execute,
    Ignore,
    Query,
    Commit,
    Echo,
}
