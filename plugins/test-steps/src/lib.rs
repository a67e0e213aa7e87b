//! A step that misbehaves on request, for waymark's sandbox tests.
//!
//! The input names the behaviour: `loop`, `trap`, `panic`, `oom`, `recurse`,
//! `log-flood`, `call-flood`, `read-file`, `list-dir`, `env`, `connect`, or
//! `sql:<statement>` (runs the statement, then behaves as the text after a
//! `|`, if any: `sql:INSERT ...|loop`).

wit_bindgen::generate!({
    world: "step-plugin",
    path: "../../wit",
});

use exports::waymark::plugin::step::Guest;
use waymark::plugin::types::{Action, StatementError, StepError};
use waymark::plugin::{database, log};

struct TestStep;

impl Guest for TestStep {
    fn plan_up(input: String) -> Result<Vec<Action>, StepError> {
        Ok(vec![Action {
            line: 0,
            text: format!("misbehave: {input}"),
        }])
    }

    fn plan_down(input: String) -> Result<Vec<Action>, StepError> {
        Self::plan_up(input)
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
    if let Some(rest) = input.strip_prefix("sql:") {
        let (statement, then) = rest.split_once('|').unwrap_or((rest, ""));
        database::execute(statement).map_err(|error| StepError::Statement(StatementError { line: 1, error }))?;
        return behave(then);
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
                database::execute("SELECT 1")
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
        other => Err(StepError::Other(format!("unknown behaviour {other:?}"))),
    }
}
