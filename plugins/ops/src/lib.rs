//! waymark's built-in expand/contract step.
//!
//! The host hands it the text of a migration's `ops.toml` and, in its
//! configuration, which phase to run: `expand` (`waymark up`), `complete`
//! (`waymark complete`), `abort` (`waymark down` before `complete`) or
//! `revert` (`waymark down` after it). To the engine it is a step
//! component and its input like any other; what the operations mean
//! lives here, one file per operation (`ops/`).
//!
//! Expand (PostgreSQL): the operations' physical changes, a version schema
//! `<schema>_v<version>` holding the new version's view of every table, a
//! trigger per changed table keeping the old and the new shape in step,
//! committed together; then the backfill, batch by batch, each batch
//! committed with its checkpoint. See docs/design/0006-expand-contract.md.

mod backfill;
mod catalog;
mod direct;
mod file;
mod ops;
mod saved;
mod shape;
mod twin;

use serde::Deserialize;
use waymark_plugin_sdk::{Action, Description, Dialect, Direction, Step, StepError, Value, db, env, export_step, log};

use catalog::Catalog;
use direct::DirectCx;
use file::OpsFile;
use ops::{Cx, Operation, ident};
use saved::Saved;
use shape::{Sync, View};

/// What the engine tells the step.
#[derive(Debug, Deserialize)]
struct Config {
    /// The migration's version: names its version schema and triggers.
    version: String,
    /// `expand`, `complete`, `abort` or `revert` on PostgreSQL; `direct`
    /// or `revert` elsewhere.
    phase: String,
    /// The history table's name: tables starting with it are waymark's.
    #[serde(default)]
    history: String,
    /// Versions of the other migrations expanded and not completed.
    #[serde(default)]
    in_flight: Vec<String>,
}

fn config() -> Result<Config, StepError> {
    let config: Config = env::config()?;
    if !["expand", "complete", "abort", "revert", "direct"].contains(&config.phase.as_str()) {
        return Err(StepError::other(format!("unknown phase {:?}", config.phase)));
    }
    Ok(config)
}

fn read(input: &str) -> Result<OpsFile, StepError> {
    file::parse(input).map_err(|e| StepError::invalid_at(e.line, e.message))
}

struct Ops;

impl Step for Ops {
    fn describe() -> Description {
        Description::new(
            "ops",
            env!("CARGO_PKG_VERSION"),
            "Runs the operations of an ops.toml as expand and contract, the old and the new schema side by side.",
        )
    }

    fn plan(_direction: Direction, input: &str) -> Result<Vec<Action>, StepError> {
        let config = config()?;
        let file = read(input)?;
        if db::dialect() != Dialect::Postgres {
            return direct_plan(&config, &file);
        }
        postgres_phase(&config)?;
        plan(&config, &file)
    }

    fn up(input: &str) -> Result<(), StepError> {
        let config = config()?;
        let file = read(input)?;
        if db::dialect() != Dialect::Postgres {
            return direct_run(&config, &file, false);
        }
        match postgres_phase(&config)? {
            "expand" => expand(&config, &file),
            _ => complete(&config, &file),
        }
    }

    fn down(input: &str) -> Result<(), StepError> {
        let config = config()?;
        let file = read(input)?;
        if db::dialect() != Dialect::Postgres {
            return direct_run(&config, &file, true);
        }
        match postgres_phase(&config)? {
            "abort" => abort(&config, &file),
            _ => revert(&config, &file),
        }
    }
}

export_step!(Ops);

/// The phase on PostgreSQL, which has versions: not `direct`.
fn postgres_phase(config: &Config) -> Result<&str, StepError> {
    match config.phase.as_str() {
        "direct" => Err(StepError::other(
            "phase `direct` is for MySQL/MariaDB and SQLite; PostgreSQL expands",
        )),
        phase => Ok(phase),
    }
}

/// The phase elsewhere, which has no versions: `direct` up, `revert`
/// down; an expand/contract phase there is the engine's mistake.
fn direct_phase(config: &Config, down: bool) -> Result<(), StepError> {
    let expected = if down { "revert" } else { "direct" };
    if config.phase != expected {
        let name = if db::dialect() == Dialect::Mysql {
            "MySQL/MariaDB"
        } else {
            "SQLite"
        };
        return Err(StepError::other(format!(
            "phase `{}` needs PostgreSQL's version schemas and triggers; on {name} an ops.toml is applied at once (`{expected}`)",
            config.phase
        )));
    }
    Ok(())
}

/// MySQL/MariaDB and SQLite: every operation's change made (or, `down`,
/// undone, in reverse order). What the dialect cannot do without a copy
/// is refused before anything runs, since MySQL/MariaDB's DDL commits
/// statement by statement.
fn direct_run(config: &Config, file: &OpsFile, down: bool) -> Result<(), StepError> {
    direct_phase(config, down)?;
    let dialect = db::dialect();
    let checking = DirectCx { dialect, live: false };
    for located in in_order(file, down) {
        direct_changes(located, &checking, down)?;
    }
    // Each op's change is made from the catalog as the ops before it left it.
    let cx = DirectCx { dialect, live: true };
    let mut done: Vec<String> = Vec::new();
    for located in in_order(file, down) {
        let made = direct_changes(located, &cx, down)
            .and_then(|changes| direct::run(&cx, &changes, located.line, &located.op.describe()));
        if let Err(e) = made {
            // SQLite rolls back; MySQL/MariaDB's DDL has committed as it ran,
            // and whoever repairs the migration needs to know how far.
            return Err(match dialect {
                Dialect::Mysql if !done.is_empty() => direct::with_note(
                    e,
                    &format!(
                        "; these ops before it are done and stay (MySQL/MariaDB commits each ALTER): {}",
                        done.join("; ")
                    ),
                ),
                _ => e,
            });
        }
        done.push(format!("ops.toml:{} {}", located.line, located.op.describe()));
    }
    Ok(())
}

/// The ops in the order a run takes them: the file's up, reversed down.
fn in_order(file: &OpsFile, down: bool) -> Vec<&file::Located> {
    let mut ordered: Vec<&file::Located> = file.ops.iter().collect();
    if down {
        ordered.reverse();
    }
    ordered
}

/// One op's direct change, or its undoing, or why the dialect cannot make it.
fn direct_changes(located: &file::Located, cx: &DirectCx, down: bool) -> Result<Vec<direct::Change>, StepError> {
    let mut out = Vec::new();
    let made = if down {
        located.op.direct_revert(cx, &mut out)
    } else {
        located.op.direct(cx, &mut out)
    };
    made.map(|()| out).map_err(|m| StepError::invalid_at(located.line, m))
}

/// What `direct_run` would send, for `waymark plan`; a refusal refuses
/// the plan.
fn direct_plan(config: &Config, file: &OpsFile) -> Result<Vec<Action>, StepError> {
    let down = config.phase == "revert";
    direct_phase(config, down)?;
    let cx = DirectCx {
        dialect: db::dialect(),
        live: false,
    };
    let mut actions = Vec::new();
    for located in in_order(file, down) {
        let changes = direct_changes(located, &cx, down)?;
        actions.push(Action {
            line: located.line,
            text: format!("-- {}", located.op.describe()),
        });
        for text in direct::shown(&cx, &changes) {
            actions.push(Action {
                line: located.line,
                text,
            });
        }
    }
    Ok(actions)
}

/// The schema the tables live in.
fn current_schema() -> Result<String, StepError> {
    let rows = db::query("SELECT current_schema()::text", &[])?;
    rows.scalar()
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| StepError::other("the connection has no current schema"))
}

/// Runs `statements` in order, naming the op's line on failure.
fn run(statements: &[String], line: u32) -> Result<(), StepError> {
    for sql in statements {
        log::debug(sql);
        db::execute(sql, &[]).map_err(|error| StepError::at(line, error))?;
    }
    Ok(())
}

/// Statements, each with the line of the op that wrote it.
type Lines = Vec<(u32, String)>;

/// What `phase` writes for each of `ops`, in order, each statement with
/// its op's line: what a run sends and what `plan` shows.
fn written<'a>(
    ops: impl IntoIterator<Item = &'a file::Located>,
    phase: impl Fn(&dyn Operation, &mut Vec<String>),
) -> Lines {
    let mut out = Vec::new();
    for located in ops {
        let mut statements = Vec::new();
        phase(located.op.as_ref(), &mut statements);
        out.extend(statements.into_iter().map(|s| (located.line, s)));
    }
    out
}

/// The statements an online phase (`expand_online`, `contract_online`)
/// writes for `ops`, or the first op's refusal, naming its line.
fn written_online<'a>(
    ops: impl IntoIterator<Item = &'a file::Located>,
    phase: impl Fn(&dyn Operation, &mut Vec<String>) -> Result<(), String>,
) -> Result<Lines, StepError> {
    let mut out = Vec::new();
    for located in ops {
        let mut statements = Vec::new();
        phase(located.op.as_ref(), &mut statements).map_err(|m| StepError::invalid_at(located.line, m))?;
        out.extend(statements.into_iter().map(|s| (located.line, s)));
    }
    Ok(out)
}

/// Runs `written` statements in order, each naming its op's line.
fn run_written(statements: &Lines) -> Result<(), StepError> {
    for (line, sql) in statements {
        run(std::slice::from_ref(sql), *line)?;
    }
    Ok(())
}

/// The contract's checks: those added `NOT VALID`, and their validations.
fn checks(file: &OpsFile, cx: &Cx<'_>) -> (Lines, Lines) {
    let (mut add, mut validate) = (Vec::new(), Vec::new());
    for located in &file.ops {
        let (mut a, mut v) = (Vec::new(), Vec::new());
        located.op.validate(cx, &mut a, &mut v);
        add.extend(a.into_iter().map(|s| (located.line, s)));
        validate.extend(v.into_iter().map(|s| (located.line, s)));
    }
    (add, validate)
}

/// A table the file changes.
struct Changed<'a> {
    name: &'a str,
    /// The line of its first op, for the errors about the table as a whole.
    line: u32,
    /// What its trigger computes, from every op on it.
    sync: Sync,
}

/// The tables the file changes, each once, in file order.
fn changed_tables(file: &OpsFile) -> Vec<Changed<'_>> {
    let mut tables: Vec<Changed<'_>> = Vec::new();
    for located in &file.ops {
        let name = located.op.table();
        if name.is_empty() {
            continue;
        }
        let at = match tables.iter().position(|t| t.name == name) {
            Some(at) => at,
            None => {
                tables.push(Changed {
                    name,
                    line: located.line,
                    sync: Sync::default(),
                });
                tables.len() - 1
            }
        };
        located.op.sync(&mut tables[at].sync);
    }
    tables
}

fn expand(config: &Config, file: &OpsFile) -> Result<(), StepError> {
    let resume = env::resume_from();
    let schema = current_schema()?;
    let tables = changed_tables(file);
    if resume.is_none() {
        let before = Catalog::read(&schema, &config.history)?;
        let cx = Cx {
            schema: &schema,
            catalog: Some(&before),
        };
        // Every check before anything runs.
        for located in &file.ops {
            if !located.op.creates_table()
                && !located.op.table().is_empty()
                && before.table(located.op.table()).is_none()
            {
                return Err(StepError::invalid_at(
                    located.line,
                    format!("{}: there is no table {}", located.op.describe(), located.op.table()),
                ));
            }
            located
                .op
                .check(&cx)
                .map_err(|m| StepError::invalid_at(located.line, m))?;
        }
        for table in tables.iter().filter(|t| !t.sync.backfilled.is_empty()) {
            backfill::check_key(&cx.table(table.name)).map_err(|m| StepError::invalid_at(table.line, m))?;
        }
        run_written(&written(&file.ops, |op, out| op.expand(&cx, out)))?;
        let after = Catalog::read(&schema, &config.history)?;
        make_version_schema(config, file, &schema, &after)?;
        for table in tables.iter().filter(|t| !t.sync.is_empty()) {
            // An `sql` op of the same file may have dropped or renamed it.
            let physical = after.table(table.name).ok_or_else(|| {
                StepError::invalid_at(
                    table.line,
                    format!(
                        "table {} is gone after the expand's statements ran; an `sql` op took it away",
                        table.name
                    ),
                )
            })?;
            let old = View::of(physical);
            let mut new = old.clone();
            for located in file.ops.iter().filter(|l| l.op.table() == table.name) {
                located.op.reshape(&mut new);
            }
            run(
                &shape::trigger(
                    &schema,
                    &config.version,
                    table.name,
                    &table.sync,
                    &old.columns,
                    &new.columns,
                ),
                0,
            )?;
        }
        // The triggers commit before the backfill reads its range: every row
        // written from here on is in both shapes already.
        db::commit(&backfill::Checkpoint::start().encode())?;
    }
    let checkpoint = match resume {
        Some(text) => backfill::Checkpoint::decode(&text)?,
        None => backfill::Checkpoint::start(),
    };
    let work: Vec<(String, Vec<String>)> = tables
        .into_iter()
        .filter(|t| !t.sync.backfilled.is_empty())
        .map(|t| (t.name.to_owned(), t.sync.backfilled))
        .collect();
    backfill::run(&schema, &work, &file.backfill, checkpoint)?;
    // Then the indexes, built once over the finished columns, each between
    // two transactions (the host commits the one in progress, which holds
    // nothing since the backfill's last commit point). A resume comes back
    // here and builds what is missing or was left invalid.
    let catalog = Catalog::read(&schema, &config.history)?;
    let cx = Cx {
        schema: &schema,
        catalog: Some(&catalog),
    };
    run_written(&written_online(&file.ops, |op, out| op.expand_online(&cx, out))?)
}

/// The version schema and one view per table of `schema` in it.
fn make_version_schema(config: &Config, file: &OpsFile, schema: &str, catalog: &Catalog) -> Result<(), StepError> {
    let version_schema = shape::version_schema(schema, &config.version);
    let invoker = server_version()? >= 150_000;
    run(&[format!("CREATE SCHEMA {}", ident(&version_schema))], 0)?;
    let changed = changed_tables(file);
    let in_flight: Vec<String> = config
        .in_flight
        .iter()
        .map(|v| shape::version_schema(schema, v))
        .collect();
    for table in &catalog.tables {
        if !changed.iter().any(|c| c.name == table.name)
            && let Some(definition) = in_flight_view(&in_flight, &table.name)?
        {
            // A table another migration in flight changes is seen here as
            // that migration's new version sees it.
            let options = if invoker { " WITH (security_invoker = true)" } else { "" };
            run(
                &[format!(
                    "CREATE VIEW {}.{}{options} AS {definition}",
                    ident(&version_schema),
                    ident(&table.name)
                )],
                0,
            )?;
            continue;
        }
        let mut view = View::of(table);
        for located in file.ops.iter().filter(|l| l.op.table() == table.name) {
            located.op.reshape(&mut view);
        }
        run(&[view.create(schema, &version_schema, invoker)], 0)?;
    }
    Ok(())
}

/// The definition of the newest in-flight version's view of `table`.
fn in_flight_view(version_schemas: &[String], table: &str) -> Result<Option<String>, StepError> {
    for schema in version_schemas.iter().rev() {
        let rows = db::query(
            "SELECT pg_get_viewdef(c.oid) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind = 'v'",
            &[Value::from(schema.as_str()), Value::from(table)],
        )?;
        if let Some(definition) = rows.scalar().and_then(Value::as_str) {
            return Ok(Some(definition.trim_end_matches(';').to_owned()));
        }
    }
    Ok(None)
}

fn server_version() -> Result<i64, StepError> {
    let rows = db::query("SELECT current_setting('server_version_num')::int8", &[])?;
    Ok(rows.scalar().and_then(Value::as_i64).unwrap_or(0))
}

/// Drops a version schema and its views, if it is there.
fn drop_version_schema(name: &str) -> Result<(), StepError> {
    let views = db::query(
        "SELECT viewname::text FROM pg_views WHERE schemaname = $1",
        &[Value::from(name)],
    )?;
    let mut statements: Vec<String> = views
        .rows
        .iter()
        .filter_map(|r| r.first().and_then(Value::as_str))
        .map(|v| format!("DROP VIEW {}.{}", ident(name), ident(v)))
        .collect();
    statements.push(format!("DROP SCHEMA IF EXISTS {}", ident(name)));
    run(&statements, 0)
}

fn complete(config: &Config, file: &OpsFile) -> Result<(), StepError> {
    let schema = current_schema()?;
    let catalog = Catalog::read(&schema, &config.history)?;
    let cx = Cx {
        schema: &schema,
        catalog: Some(&catalog),
    };
    let resume = env::resume_from();
    let (add, validate) = checks(file, &cx);
    if resume.is_none() {
        // What the contract destroys and a revert needs, saved first ...
        let saved = Saved::of(config, &schema);
        for located in &file.ops {
            let definition = located
                .op
                .saves(&cx)
                .map_err(|m| StepError::invalid_at(located.line, m))?;
            if let Some(definition) = definition {
                saved.save(located.line, &definition)?;
            }
        }
        // ... with the checks, added in a brief transaction of their own ...
        run_written(&add)?;
        db::commit("checks added")?;
    }
    if resume.as_deref() != Some("validated") {
        // ... then validated in another: the scans take no lock that stops
        // writes, and the contract's locks are not held while they read.
        run_written(&validate)?;
        db::commit("validated")?;
    }
    // Indexes the old version may have used, dropped concurrently, and
    // unique constraints' indexes, built concurrently, each between two
    // transactions; on a resume, what is done is not done again.
    run_written(&written_online(&file.ops, |op, out| op.contract_online(&cx, out))?)?;
    // The version schemas of the migrations still in flight stay; the
    // others go, this one's too. Its application's search_path then falls
    // through to the tables, which have its shape from here on, and no view
    // is left to stop a later migration's DDL on them.
    let keep: Vec<String> = config
        .in_flight
        .iter()
        .map(|v| shape::version_schema(&schema, v))
        .collect();
    let older = db::query(
        "SELECT nspname::text FROM pg_namespace WHERE left(nspname, length($1)) = $1 ORDER BY 1",
        &[Value::from(format!("{schema}_v"))],
    )?;
    for name in older.rows.iter().filter_map(|r| r.first().and_then(Value::as_str)) {
        if !keep.iter().any(|k| k == name) {
            drop_version_schema(name)?;
        }
    }
    // The contracts that drop data first, so that the host copies it for
    // `down` before any statement here locks its table; the triggers last.
    run_written(&written(contract_order(file), |op, out| op.contract(&cx, out)))?;
    for table in changed_tables(file) {
        run(&shape::drop_trigger(&schema, &config.version, table.name), 0)?;
    }
    Ok(())
}

/// The contracts that drop data the host copies first, then the rest, each
/// group in file order.
fn contract_order(file: &OpsFile) -> impl Iterator<Item = &file::Located> {
    let first = file.ops.iter().filter(|l| l.op.contract_first());
    first.chain(file.ops.iter().filter(|l| !l.op.contract_first()))
}

fn abort(config: &Config, file: &OpsFile) -> Result<(), StepError> {
    let schema = current_schema()?;
    let catalog = Catalog::read(&schema, &config.history)?;
    let cx = Cx {
        schema: &schema,
        catalog: Some(&catalog),
    };
    drop_version_schema(&shape::version_schema(&schema, &config.version))?;
    for table in changed_tables(file) {
        run(&shape::drop_trigger(&schema, &config.version, table.name), 0)?;
    }
    run_written(&written(file.ops.iter().rev(), |op, out| op.abort(&cx, out)))?;
    // An abort may follow a contract that saved definitions and failed.
    Saved::of(config, &schema).forget()
}

fn revert(config: &Config, file: &OpsFile) -> Result<(), StepError> {
    let schema = current_schema()?;
    let catalog = Catalog::read(&schema, &config.history)?;
    let cx = Cx {
        schema: &schema,
        catalog: Some(&catalog),
    };
    let saved = Saved::of(config, &schema);
    let definitions = saved.load()?;
    // Every op's statements first, so that one that cannot be undone
    // refuses before any runs.
    let mut all = Vec::new();
    for located in file.ops.iter().rev() {
        let mut statements = Vec::new();
        let definition = definitions.iter().find(|(l, _)| *l == located.line).map(|(_, d)| d);
        located
            .op
            .revert(&cx, definition, &mut statements)
            .map_err(|m| StepError::invalid_at(located.line, m))?;
        all.push((statements, located.line));
    }
    for (statements, line) in all {
        run(&statements, line)?;
    }
    saved.forget()
}

/// What a phase would do, for `waymark plan`: the statements that need no
/// catalog as SQL, the rest as sentences.
fn plan(config: &Config, file: &OpsFile) -> Result<Vec<Action>, StepError> {
    let cx = Cx {
        schema: "",
        catalog: None,
    };
    let mut actions = Vec::new();
    let mut say = |line: u32, text: String| actions.push(Action { line, text });
    match config.phase.as_str() {
        "expand" => {
            for located in &file.ops {
                say(located.line, format!("-- {}", located.op.describe()));
                let mut statements = Vec::new();
                located.op.expand(&cx, &mut statements);
                for s in statements {
                    say(located.line, s);
                }
            }
            say(
                0,
                format!(
                    "-- create schema <schema>_v{} with a view of every table as the new version sees it",
                    shape::version_tag(&config.version)
                ),
            );
            for Changed { name: table, sync, .. } in changed_tables(file) {
                if !sync.is_empty() {
                    say(
                        0,
                        format!("-- create the trigger keeping {table}'s old and new columns in step"),
                    );
                }
                if !sync.backfilled.is_empty() {
                    say(
                        0,
                        format!(
                            "-- commit; backfill {table} in batches of {} keys: {}",
                            file.backfill.batch_size,
                            sync.backfilled.join(", ")
                        ),
                    );
                }
            }
            for (line, s) in written_online(&file.ops, |op, out| op.expand_online(&cx, out))? {
                say(line, format!("{s} -- between transactions"));
            }
        }
        "complete" => {
            let (add, validate) = checks(file, &cx);
            for (line, s) in add {
                say(line, s);
            }
            say(0, "-- commit".to_owned());
            for (line, s) in validate {
                say(line, s);
            }
            for (line, s) in written_online(&file.ops, |op, out| op.contract_online(&cx, out))? {
                say(line, format!("{s} -- between transactions"));
            }
            say(
                0,
                "-- commit; drop this version's schema and those before it not in flight".to_owned(),
            );
            for (line, s) in written(contract_order(file), |op, out| op.contract(&cx, out)) {
                say(line, s);
            }
            for table in changed_tables(file) {
                say(0, format!("-- drop {}'s sync trigger", table.name));
            }
        }
        "abort" => {
            say(
                0,
                format!(
                    "-- drop schema <schema>_v{} and the sync triggers",
                    shape::version_tag(&config.version)
                ),
            );
            for (line, s) in written(file.ops.iter().rev(), |op, out| op.abort(&cx, out)) {
                say(line, s);
            }
        }
        _ => {
            for located in file.ops.iter().rev() {
                let mut statements = Vec::new();
                match located.op.revert(&cx, None, &mut statements) {
                    Ok(()) => statements.into_iter().for_each(|s| say(located.line, s)),
                    Err(m) => say(located.line, format!("-- cannot be reverted: {m}")),
                }
            }
        }
    }
    Ok(actions)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(phase: &str) -> Config {
        Config {
            version: "20261204000001".to_owned(),
            phase: phase.to_owned(),
            history: String::new(),
            in_flight: Vec::new(),
        }
    }

    const SPLIT: &str = r#"
[[op]]
op = "add_column"
table = "users"
column = "first_name"
type = "text"
up = "split_part(name, ' ', 1)"

[[op]]
op = "drop_column"
table = "users"
column = "name"
down = "first_name"
"#;

    #[test]
    fn the_plan_of_each_phase_names_its_statements() {
        let file = file::parse(SPLIT).unwrap();
        let expand: Vec<String> = plan(&config("expand"), &file)
            .unwrap()
            .into_iter()
            .map(|a| a.text)
            .collect();
        assert!(
            expand.contains(&"ALTER TABLE \"users\" ADD COLUMN \"first_name\" text".to_owned()),
            "{expand:?}"
        );
        assert!(
            expand
                .iter()
                .any(|a| a.contains("backfill users in batches of 1000 keys: first_name")),
            "{expand:?}"
        );
        let complete: Vec<String> = plan(&config("complete"), &file)
            .unwrap()
            .into_iter()
            .map(|a| a.text)
            .collect();
        assert!(
            complete.contains(&"ALTER TABLE \"users\" DROP COLUMN \"name\"".to_owned()),
            "{complete:?}"
        );
        let revert: Vec<String> = plan(&config("revert"), &file)
            .unwrap()
            .into_iter()
            .map(|a| a.text)
            .collect();
        assert_eq!(
            revert[0],
            "-- add column users.name back as complete saved it; the host puts its kept values back",
        );
    }

    #[test]
    fn a_not_null_column_with_a_constant_default_needs_no_check_at_complete() {
        let text = |up: &str| {
            format!(
                "[[op]]\nop = \"add_column\"\ntable = \"t\"\ncolumn = \"c\"\ntype = \"int\"\ndefault = \"0\"\nnot_null = true\n{up}"
            )
        };
        let phases = |text: &str| {
            let file = file::parse(text).unwrap();
            let phase =
                |p: &str| -> Vec<String> { plan(&config(p), &file).unwrap().into_iter().map(|a| a.text).collect() };
            (phase("expand"), phase("complete"))
        };
        let (expand, complete) = phases(&text(""));
        assert!(
            expand.contains(&"ALTER TABLE \"t\" ADD COLUMN \"c\" int DEFAULT 0 NOT NULL".to_owned()),
            "{expand:?}"
        );
        assert!(!complete.iter().any(|s| s.contains("_waymark_nn_c")), "{complete:?}");
        // With `up`, the backfill fills it first: NOT NULL waits.
        let (expand, complete) = phases(&text("up = \"1\"\n"));
        assert!(
            expand.contains(&"ALTER TABLE \"t\" ADD COLUMN \"c\" int".to_owned()),
            "{expand:?}"
        );
        assert!(
            complete.contains(&"ALTER TABLE \"t\" ALTER COLUMN \"c\" SET NOT NULL".to_owned()),
            "{complete:?}"
        );
    }

    #[test]
    fn errors_name_the_line_of_their_op() {
        let e = file::parse("[[op]]\nop = \"add_column\"\ntable = \"t\"\ncolumn = \"c\"\ntype = \"int\"\n\n[[op]]\nop = \"rename_column\"\ntable = \"t\"\n")
            .err()
            .unwrap();
        assert_eq!((e.line, e.message.as_str()), (7, "rename_column needs `column`"));
    }
}
