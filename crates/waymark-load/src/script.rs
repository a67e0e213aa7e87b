//! A workload script in pgbench's format: SQL commands ended by `;`
//! (over as many lines as they take; a last one may leave it out), and,
//! each on a line of its own, `\set name expression` and `\sleep n [us |
//! ms | s]`. `:name` in SQL or an expression reads a variable: one set
//! earlier in the script, or `scale`, `client_id` and `random_seed`, which
//! every client has. One run of the script is one transaction of the
//! workload, as in pgbench.
//!
//! Everything that could stop a rehearsal half-way is found while the
//! file is read, each with its line: an unknown meta-command (a rehearsal
//! that skipped half a script would measure nothing), a variable read
//! before it is set, an expression that does not parse. What is left for
//! a run is what depends on the draw: a division by zero, a range upside
//! down.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use crate::error::ScriptError;
use crate::expr::{self, Expr, Num};
use crate::random::Random;

/// The variables every client has before its script sets any.
const PREDEFINED: &[&str] = &["scale", "client_id", "random_seed"];

/// A script, read and checked.
#[derive(Debug, Clone)]
pub struct Script {
    /// The file as the user named it, for messages.
    pub file: String,
    /// How often it is drawn against the other scripts (`file@weight`).
    pub weight: u32,
    commands: Vec<Command>,
}

/// One command of a script and its line.
#[derive(Debug, Clone)]
struct Command {
    line: u32,
    kind: Kind,
}

#[derive(Debug, Clone)]
enum Kind {
    Sql(Vec<Segment>),
    Set(String, Expr),
    Sleep(Expr, Unit),
}

/// SQL text, and the variables spliced into it.
#[derive(Debug, Clone, PartialEq)]
enum Segment {
    Text(String),
    Var(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Unit {
    Micros,
    Millis,
    Seconds,
}

/// What one transaction of a script does, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sql {
    /// A statement to send, its variables spliced in.
    Statement { line: u32, text: String },
    /// A pause (`\sleep`).
    Sleep(Duration),
}

/// One client's variables.
#[derive(Debug, Clone)]
pub struct Vars {
    values: HashMap<String, Num>,
}

impl Vars {
    /// The predefined variables of client `client_id`.
    pub fn new(scale: i64, client_id: i64, random_seed: i64) -> Self {
        let values = [("scale", scale), ("client_id", client_id), ("random_seed", random_seed)]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), Num::Int(v)))
            .collect();
        Vars { values }
    }
}

/// Splits `file@weight` (pgbench's `-f`); the weight is 1 when not given.
pub fn split_spec(spec: &str) -> Result<(&str, u32), String> {
    match spec.rsplit_once('@') {
        Some((file, weight)) if !weight.is_empty() && weight.chars().all(|c| c.is_ascii_digit()) => {
            let weight: u32 = weight
                .parse()
                .map_err(|_| format!("{spec}: the weight after @ is too large"))?;
            if weight == 0 {
                return Err(format!("{spec}: a weight of 0 would never run the script"));
            }
            Ok((file, weight))
        }
        _ => Ok((spec, 1)),
    }
}

impl Script {
    /// Reads `text`, the content of `file`.
    pub fn parse(file: &str, text: &str, weight: u32) -> Result<Script, ScriptError> {
        let error = |line: u32, message: String| ScriptError {
            file: file.to_owned(),
            line,
            message,
        };
        let mut known: HashSet<String> = PREDEFINED.iter().map(|s| (*s).to_owned()).collect();
        let mut commands = Vec::new();
        let mut sql = SqlScanner::default();
        let lines: Vec<&str> = text.lines().collect();
        let mut i = 0;
        while i < lines.len() {
            let line = u32::try_from(i + 1).unwrap_or(u32::MAX);
            let trimmed = lines[i].trim_start();
            if sql.is_empty() && trimmed.starts_with('\\') {
                // A meta-command, continued over lines ending in '\'.
                let mut meta = trimmed.to_owned();
                while meta.ends_with('\\') && i + 1 < lines.len() {
                    meta.pop();
                    i += 1;
                    meta.push(' ');
                    meta.push_str(lines[i]);
                }
                let kind = meta_command(&meta, &mut known).map_err(|m| error(line, m))?;
                commands.push(Command { line, kind });
                i += 1;
                continue;
            }
            for (start, segments) in sql.feed(lines[i], line) {
                check_vars(&segments, &known).map_err(|m| error(start, m))?;
                commands.push(Command {
                    line: start,
                    kind: Kind::Sql(segments),
                });
            }
            i += 1;
        }
        if let Some(state) = sql.unterminated() {
            return Err(error(sql.start, format!("{state} is never closed")));
        }
        if let Some((start, segments)) = sql.finish() {
            check_vars(&segments, &known).map_err(|m| error(start, m))?;
            commands.push(Command {
                line: start,
                kind: Kind::Sql(segments),
            });
        }
        if !commands.iter().any(|c| matches!(c.kind, Kind::Sql(_))) {
            return Err(error(
                0,
                "no SQL command: a workload script sends at least one".to_owned(),
            ));
        }
        Ok(Script {
            file: file.to_owned(),
            weight,
            commands,
        })
    }

    /// The statements and pauses of one transaction, drawn with `random`
    /// and `vars`, which keep what `\set` assigns (as pgbench's clients
    /// keep their variables from one transaction to the next).
    pub fn transaction(&self, vars: &mut Vars, random: &mut Random) -> Result<Vec<Sql>, ScriptError> {
        let error = |line: u32, message: String| ScriptError {
            file: self.file.clone(),
            line,
            message,
        };
        let mut out = Vec::new();
        for c in &self.commands {
            match &c.kind {
                Kind::Set(name, expr) => {
                    let value = expr.eval(&vars.values, random).map_err(|m| error(c.line, m))?;
                    vars.values.insert(name.clone(), value);
                }
                Kind::Sleep(amount, unit) => {
                    let n = match expr_int(amount.eval(&vars.values, random).map_err(|m| error(c.line, m))?) {
                        Some(n) if n >= 0 => n as u64,
                        _ => return Err(error(c.line, "\\sleep needs a whole number of 0 or more".to_owned())),
                    };
                    out.push(Sql::Sleep(match unit {
                        Unit::Micros => Duration::from_micros(n),
                        Unit::Millis => Duration::from_millis(n),
                        Unit::Seconds => Duration::from_secs(n),
                    }));
                }
                Kind::Sql(segments) => {
                    let mut text = String::new();
                    for s in segments {
                        match s {
                            Segment::Text(t) => text.push_str(t),
                            Segment::Var(name) => match vars.values.get(name) {
                                Some(v) => text.push_str(&v.text()),
                                None => return Err(error(c.line, format!(":{name} is not set"))),
                            },
                        }
                    }
                    out.push(Sql::Statement { line: c.line, text });
                }
            }
        }
        Ok(out)
    }
}

fn expr_int(n: Num) -> Option<i64> {
    match n {
        Num::Int(i) => Some(i),
        Num::Double(_) => None,
    }
}

/// `\set` or `\sleep`; anything else is refused, naming what is taken.
fn meta_command(text: &str, known: &mut HashSet<String>) -> Result<Kind, String> {
    let body = &text[1..];
    let (name, rest) = body.split_once(char::is_whitespace).unwrap_or((body, ""));
    let rest = rest.trim();
    match name {
        "set" => {
            let (var, expression) = rest
                .split_once(char::is_whitespace)
                .ok_or("\\set needs a name and an expression")?;
            if !var.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(format!("\\set {var}: a variable's name is letters, digits and _"));
            }
            let expr = expr::parse(expression).map_err(|m| format!("\\set {var}: {m}"))?;
            let mut read = Vec::new();
            expr.vars(&mut read);
            if let Some(unknown) = read.iter().find(|v| !known.contains(*v)) {
                return Err(format!("\\set {var}: :{unknown} is read before it is set"));
            }
            known.insert(var.to_owned());
            Ok(Kind::Set(var.to_owned(), expr))
        }
        "sleep" => {
            let mut words = rest.split_whitespace();
            let amount = words.next().ok_or("\\sleep needs a duration, such as \\sleep 10 ms")?;
            let unit = match words.next() {
                None | Some("s") => Unit::Seconds,
                Some("ms") => Unit::Millis,
                Some("us") => Unit::Micros,
                Some(other) => return Err(format!("\\sleep's unit is us, ms or s, not {other}")),
            };
            if let Some(extra) = words.next() {
                return Err(format!(
                    "\\sleep takes a duration and a unit; {extra:?} is one word too many"
                ));
            }
            let expr = expr::parse(amount).map_err(|m| format!("\\sleep: {m}"))?;
            let mut read = Vec::new();
            expr.vars(&mut read);
            if let Some(unknown) = read.iter().find(|v| !known.contains(*v)) {
                return Err(format!("\\sleep: :{unknown} is read before it is set"));
            }
            Ok(Kind::Sleep(expr, unit))
        }
        other => Err(format!(
            "\\{other} is not a meta-command waymark's load generator runs; it runs \\set and \\sleep (see docs/design/0007-rehearse.md)"
        )),
    }
}

fn check_vars(segments: &[Segment], known: &HashSet<String>) -> Result<(), String> {
    for s in segments {
        if let Segment::Var(name) = s
            && !known.contains(name)
        {
            return Err(format!(":{name} is read before it is set"));
        }
    }
    Ok(())
}

/// Where the scanner is within the SQL text.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
enum State {
    #[default]
    Normal,
    /// In '...'; `true` for an E'...' string, where a backslash escapes.
    Quoted(bool),
    /// In "...".
    Identifier,
    /// In /* ... */, nested this deep.
    Comment(u32),
    /// In $tag$ ... $tag$.
    Dollar(String),
}

/// Splits SQL into commands at the `;` that ends each, across lines,
/// minding strings, quoted names, comments and dollar quotes, and finds
/// the `:name` references outside them (`::` is a cast).
#[derive(Debug, Default)]
struct SqlScanner {
    state: State,
    segments: Vec<Segment>,
    text: String,
    /// The line the command in progress started on.
    start: u32,
}

impl SqlScanner {
    fn is_empty(&self) -> bool {
        self.state == State::Normal && self.text.trim().is_empty() && self.segments.is_empty()
    }

    fn unterminated(&self) -> Option<&'static str> {
        match self.state {
            State::Normal => None,
            State::Quoted(_) => Some("a quoted string"),
            State::Identifier => Some("a quoted name"),
            State::Comment(_) => Some("a /* comment"),
            State::Dollar(_) => Some("a dollar-quoted string"),
        }
    }

    /// Takes one line; returns the commands it ended.
    fn feed(&mut self, line: &str, number: u32) -> Vec<(u32, Vec<Segment>)> {
        let mut done = Vec::new();
        let chars: Vec<char> = line.chars().collect();
        let mut i = 0;
        if self.is_empty() {
            self.start = number;
        }
        while i < chars.len() {
            let c = chars[i];
            let next = chars.get(i + 1).copied();
            match &mut self.state {
                State::Normal => match c {
                    '-' if next == Some('-') => break,
                    '/' if next == Some('*') => {
                        self.state = State::Comment(1);
                        i += 2;
                        continue;
                    }
                    '\'' => {
                        let escaped = matches!(self.text.chars().last(), Some('E' | 'e'));
                        self.state = State::Quoted(escaped);
                    }
                    '"' => self.state = State::Identifier,
                    '$' => {
                        // $tag$ where tag is empty or a name not starting with a digit.
                        let tag: String = chars[i + 1..]
                            .iter()
                            .take_while(|c| c.is_ascii_alphanumeric() || **c == '_')
                            .collect();
                        let tag_ok = !tag.starts_with(|c: char| c.is_ascii_digit());
                        if tag_ok && chars.get(i + 1 + tag.chars().count()) == Some(&'$') {
                            let opener = format!("${tag}$");
                            self.text.push_str(&opener);
                            i += opener.chars().count();
                            self.state = State::Dollar(opener);
                            continue;
                        }
                    }
                    ':' if next == Some(':') => {
                        self.text.push_str("::");
                        i += 2;
                        continue;
                    }
                    ':' if next.is_some_and(|n| n.is_ascii_alphanumeric() || n == '_') => {
                        let name: String = chars[i + 1..]
                            .iter()
                            .take_while(|c| c.is_ascii_alphanumeric() || **c == '_')
                            .collect();
                        i += 1 + name.chars().count();
                        self.segments.push(Segment::Text(std::mem::take(&mut self.text)));
                        self.segments.push(Segment::Var(name));
                        continue;
                    }
                    ';' => {
                        if let Some(command) = self.take() {
                            done.push((self.start, command));
                        }
                        self.start = number;
                        i += 1;
                        continue;
                    }
                    _ => {}
                },
                State::Quoted(escaped) => match c {
                    '\\' if *escaped => {
                        self.text.push(c);
                        if let Some(n) = next {
                            self.text.push(n);
                        }
                        i += 2;
                        continue;
                    }
                    '\'' if next == Some('\'') => {
                        self.text.push_str("''");
                        i += 2;
                        continue;
                    }
                    '\'' => self.state = State::Normal,
                    _ => {}
                },
                State::Identifier => {
                    if c == '"' {
                        self.state = State::Normal;
                    }
                }
                State::Comment(depth) => {
                    if c == '*' && next == Some('/') {
                        *depth -= 1;
                        if *depth == 0 {
                            self.state = State::Normal;
                        }
                        i += 2;
                    } else if c == '/' && next == Some('*') {
                        *depth += 1;
                        i += 2;
                    } else {
                        i += 1;
                    }
                    continue;
                }
                State::Dollar(opener) => {
                    let closer: String = opener.clone();
                    if chars[i..]
                        .iter()
                        .take(closer.chars().count())
                        .copied()
                        .eq(closer.chars())
                    {
                        self.text.push_str(&closer);
                        i += closer.chars().count();
                        self.state = State::Normal;
                        continue;
                    }
                }
            }
            self.text.push(c);
            i += 1;
        }
        if !self.is_empty() {
            self.text.push('\n');
        }
        done
    }

    /// The command in progress, if it holds anything but space.
    fn take(&mut self) -> Option<Vec<Segment>> {
        let mut segments = std::mem::take(&mut self.segments);
        segments.push(Segment::Text(std::mem::take(&mut self.text)));
        segments.retain(|s| !matches!(s, Segment::Text(t) if t.is_empty()));
        let blank = segments
            .iter()
            .all(|s| matches!(s, Segment::Text(t) if t.trim().is_empty()));
        if blank {
            return None;
        }
        // Trim the command's ends, as it is sent.
        if let Some(Segment::Text(t)) = segments.first_mut() {
            *t = t.trim_start().to_owned();
        }
        if let Some(Segment::Text(t)) = segments.last_mut() {
            *t = t.trim_end().to_owned();
        }
        Some(segments)
    }

    /// The last command, left without its `;`.
    fn finish(&mut self) -> Option<(u32, Vec<Segment>)> {
        let start = self.start;
        self.take().map(|s| (start, s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// pgbench's built-in TPC-B-like transaction, as a file would hold it.
    const TPCB: &str = r"\set aid random(1, 100000 * :scale)
\set bid random(1, 1 * :scale)
\set tid random(1, 10 * :scale)
\set delta random(-5000, 5000)
BEGIN;
UPDATE pgbench_accounts SET abalance = abalance + :delta WHERE aid = :aid;
SELECT abalance FROM pgbench_accounts WHERE aid = :aid;
UPDATE pgbench_tellers SET tbalance = tbalance + :delta WHERE tid = :tid;
UPDATE pgbench_branches SET bbalance = bbalance + :delta WHERE bid = :bid;
INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES (:tid, :bid, :aid, :delta, CURRENT_TIMESTAMP);
END;
";

    fn statements(script: &Script, seed: u64) -> Vec<Sql> {
        script
            .transaction(&mut Vars::new(2, 0, 0), &mut Random::seeded(seed))
            .unwrap()
    }

    #[test]
    fn pgbenchs_own_transaction_reads_and_runs() {
        let script = Script::parse("tpcb.sql", TPCB, 1).unwrap();
        let sent = statements(&script, 5);
        assert_eq!(sent.len(), 7);
        assert_eq!(
            sent[0],
            Sql::Statement {
                line: 5,
                text: "BEGIN".to_owned()
            }
        );
        let Sql::Statement { line, text } = &sent[2] else {
            panic!()
        };
        assert_eq!(*line, 7);
        let aid: i64 = text
            .strip_prefix("SELECT abalance FROM pgbench_accounts WHERE aid = ")
            .unwrap()
            .parse()
            .unwrap();
        assert!((1..=200_000).contains(&aid), "{text}");
        // The same draw gives the same key to both statements that read it.
        let Sql::Statement { text: update, .. } = &sent[1] else {
            panic!()
        };
        assert!(update.ends_with(&format!("WHERE aid = {aid}")), "{update}");
        // Another seed, another key; the same seed, the same.
        assert_eq!(statements(&script, 5), sent);
        assert_ne!(statements(&script, 6), sent);
    }

    #[test]
    fn commands_span_lines_and_share_them_and_quotes_hide_what_they_hold() {
        let text = "-- a comment; not a command\nSELECT 'a;b', \"c;d\", $f$ :x; $f$,\n  1::int /* :y; */\n  , :n;\nBEGIN; SELECT E'\\'';\nSELECT 2";
        let script = Script::parse("w.sql", &format!("\\set n 3\n{text}"), 1).unwrap();
        let sent = statements(&script, 1);
        assert_eq!(
            sent,
            vec![
                Sql::Statement {
                    line: 3,
                    text: "SELECT 'a;b', \"c;d\", $f$ :x; $f$,\n  1::int \n  , 3".to_owned()
                },
                Sql::Statement {
                    line: 6,
                    text: "BEGIN".to_owned()
                },
                Sql::Statement {
                    line: 6,
                    text: "SELECT E'\\''".to_owned()
                },
                Sql::Statement {
                    line: 7,
                    text: "SELECT 2".to_owned()
                },
            ]
        );
    }

    #[test]
    fn sleeps_and_continued_lines() {
        let script = Script::parse(
            "w.sql",
            "\\set pause 2 \\\n  * 5\n\\sleep :pause ms\n\\sleep 3 us\n\\sleep 1\nSELECT 1;",
            1,
        )
        .unwrap();
        assert_eq!(
            statements(&script, 1),
            vec![
                Sql::Sleep(Duration::from_millis(10)),
                Sql::Sleep(Duration::from_micros(3)),
                Sql::Sleep(Duration::from_secs(1)),
                Sql::Statement {
                    line: 6,
                    text: "SELECT 1".to_owned()
                },
            ]
        );
    }

    #[test]
    fn what_cannot_run_is_refused_with_its_file_and_line() {
        let refused = |text: &str| Script::parse("w.sql", text, 1).unwrap_err().to_string();
        assert_eq!(
            refused("SELECT 1;\n\\gset"),
            "w.sql:2: \\gset is not a meta-command waymark's load generator runs; it runs \\set and \\sleep (see docs/design/0007-rehearse.md)"
        );
        assert_eq!(refused("SELECT :aid;"), "w.sql:1: :aid is read before it is set");
        assert_eq!(
            refused("\\set a :b + 1\nSELECT 1;"),
            "w.sql:1: \\set a: :b is read before it is set"
        );
        assert_eq!(
            refused("SELECT 1;\n\\set a random(1,\nSELECT 2;"),
            "w.sql:2: \\set a: an expression ends too soon"
        );
        assert_eq!(
            refused("\\sleep 1 minute\nSELECT 1;"),
            "w.sql:1: \\sleep's unit is us, ms or s, not minute"
        );
        assert_eq!(refused("SELECT 'open;\n"), "w.sql:1: a quoted string is never closed");
        assert_eq!(
            refused("-- only a comment\n"),
            "w.sql: no SQL command: a workload script sends at least one"
        );
        // What depends on the draw fails the transaction, with its line.
        let script = Script::parse("w.sql", "\\set z 0\n\\set q 1 / :z\nSELECT :q;", 1).unwrap();
        let e = script
            .transaction(&mut Vars::new(1, 0, 0), &mut Random::seeded(1))
            .unwrap_err();
        assert_eq!(e.to_string(), "w.sql:2: division by zero");
    }

    #[test]
    fn a_spec_gives_its_weight() {
        assert_eq!(split_spec("tpcb.sql@9"), Ok(("tpcb.sql", 9)));
        assert_eq!(split_spec("a@b.sql"), Ok(("a@b.sql", 1)));
        assert_eq!(split_spec("r.sql"), Ok(("r.sql", 1)));
        assert_eq!(
            split_spec("r.sql@0"),
            Err("r.sql@0: a weight of 0 would never run the script".to_owned())
        );
    }
}
