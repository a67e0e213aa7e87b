//! waymark's built-in SQL step.
//!
//! The host hands this component the text of `up.sql` or `down.sql`; the
//! component splits it into statements the way the dialect's own client
//! would, and runs each through the host's `execute`, which is bound to the
//! migration's transaction. Splitting happens here rather than in the host so
//! that the engine never special-cases SQL: to the engine this is just a step
//! component and its input.

mod split;

use split::{Dialect, Statement};

wit_bindgen::generate!({
    world: "step-plugin",
    path: "../../wit",
});

use exports::waymark::plugin::step::Guest;
use waymark::plugin::database;
use waymark::plugin::types::{self, Action, Description, Direction, InputError, StatementError, StepError};

struct SqlStep;

impl Guest for SqlStep {
    fn describe() -> Description {
        Description {
            name: "sql".to_owned(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            summary: "Runs a SQL script, statement by statement as the dialect's own client splits it.".to_owned(),
            // Reversible when the migration has a down script; the host
            // knows whether it does.
            reversible: true,
        }
    }

    fn plan(_: Direction, input: String) -> Result<Vec<Action>, StepError> {
        plan(&input)
    }

    fn up(input: String) -> Result<(), StepError> {
        run(&input)
    }

    fn down(input: String) -> Result<(), StepError> {
        run(&input)
    }
}

export!(SqlStep);

fn dialect() -> Dialect {
    match database::current_dialect() {
        types::Dialect::Postgres => Dialect::Postgres,
        types::Dialect::Mysql => Dialect::Mysql,
        types::Dialect::Sqlite => Dialect::Sqlite,
    }
}

fn statements(input: &str) -> Result<Vec<Statement<'_>>, StepError> {
    split::split(input, dialect()).map_err(|e| {
        StepError::InvalidInput(InputError {
            line: e.line,
            message: e.message,
        })
    })
}

fn plan(input: &str) -> Result<Vec<Action>, StepError> {
    Ok(statements(input)?
        .into_iter()
        .map(|s| Action {
            line: s.line,
            text: s.text.to_owned(),
        })
        .collect())
}

fn run(input: &str) -> Result<(), StepError> {
    let statements = statements(input)?;
    // Inside a transaction, send the whole file in one round trip, as a
    // database client would. If it fails, the host's savepoint has undone
    // all of it, and running the statements one by one finds the failing
    // one, so the error can name its line. (A host that times each
    // statement, as a rehearsal does, refuses the script to get here.)
    if statements.len() > 1 && database::in_transaction() {
        let script: Vec<&str> = statements.iter().map(|s| s.text).collect();
        // Each delimiter on a line of its own: a statement may end in a
        // `--` comment.
        if database::execute_script(&script.join("\n;\n")).is_ok() {
            return Ok(());
        }
    }
    for statement in statements {
        if let Err(error) = database::execute(statement.text, &[]) {
            // A reported position points at the failing token, which may sit
            // several lines below the statement's first line.
            let line = match error.position {
                Some(pos) => statement.line + split::lines_before(statement.text, pos),
                None => statement.line,
            };
            return Err(StepError::Statement(StatementError { line, error }));
        }
    }
    Ok(())
}
