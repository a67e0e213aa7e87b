//! Splits SQL text into statements, as each dialect's own client does.
//!
//! What a statement boundary is differs by dialect, and getting it wrong
//! breaks real migration histories, so each rule below comes from the
//! dialect's documentation:
//!
//! - everywhere: `;` ends a statement outside strings, quoted identifiers and
//!   comments; `--` comments run to the end of the line, `/* */` comments
//!   may span lines; statements holding only comments are skipped.
//! - PostgreSQL: dollar quoting (`$$ ... $$`, `$tag$ ... $tag$`) for function
//!   bodies and `DO` blocks, `E'...'` strings with backslash escapes, nested
//!   block comments, and SQL-standard function bodies in `BEGIN ATOMIC ... END`.
//! - MySQL/MariaDB: `#` comments, `--` only when followed by white space,
//!   backslash escapes in strings, backtick identifiers, executable comments
//!   (`/*! ... */`) kept as statements, and the client's `DELIMITER` command
//!   for procedure and trigger bodies.
//! - SQLite: backtick and `[bracket]` identifiers, and trigger bodies
//!   (`CREATE TRIGGER ... BEGIN ...; END;`).
//! - goose's `-- +goose StatementBegin` and `-- +goose StatementEnd` lines,
//!   in every dialect: what lies between them is one statement, as goose
//!   sends it. goose users write a MySQL procedure this way instead of
//!   `DELIMITER`, and a history written for goose must split as it did.

/// The dialect whose rules apply.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Dialect {
    Postgres,
    Mysql,
    Sqlite,
}

/// One statement and the 1-based line on which it begins.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Statement<'a> {
    pub(crate) line: u32,
    pub(crate) text: &'a str,
}

/// Text that cannot be split, and where.
#[derive(Debug)]
pub(crate) struct SplitError {
    pub(crate) line: u32,
    pub(crate) message: String,
}

/// Number of line breaks before the 1-based character `position` of `text`.
pub(crate) fn lines_before(text: &str, position: u32) -> u32 {
    let before = text.chars().take(position.saturating_sub(1) as usize);
    before.filter(|c| *c == '\n').count() as u32
}

pub(crate) fn split(src: &str, dialect: Dialect) -> Result<Vec<Statement<'_>>, SplitError> {
    Splitter {
        src,
        bytes: src.as_bytes(),
        dialect,
        pos: 0,
        line: 1,
        delimiter: ";".to_owned(),
        out: Vec::new(),
    }
    .run()
}

struct Splitter<'a> {
    src: &'a str,
    bytes: &'a [u8],
    dialect: Dialect,
    pos: usize,
    line: u32,
    delimiter: String,
    out: Vec<Statement<'a>>,
}

/// What the words of the current statement have told us so far about blocks
/// whose inner `;` do not end it.
#[derive(Default)]
struct Words {
    /// The statement's leading words, upper-cased, up to four.
    leading: Vec<String>,
    /// The previous word, upper-cased.
    previous: String,
    /// Open `BEGIN`/`CASE` blocks inside a trigger or atomic body.
    depth: u32,
    /// Whether the statement opens a block body at all.
    has_body: bool,
}

impl Words {
    fn see(&mut self, dialect: Dialect, word: &str) {
        let word = word.to_ascii_uppercase();
        if self.leading.len() < 4 {
            self.leading.push(word.clone());
        }
        let lead = |i: usize| self.leading.get(i).map_or("", String::as_str);
        let is_trigger = dialect == Dialect::Sqlite
            && lead(0) == "CREATE"
            && (lead(1) == "TRIGGER" || (matches!(lead(1), "TEMP" | "TEMPORARY") && lead(2) == "TRIGGER"));
        match word.as_str() {
            "BEGIN" if is_trigger && self.depth == 0 => {
                self.depth = 1;
                self.has_body = true;
            }
            "ATOMIC" if dialect == Dialect::Postgres && self.previous == "BEGIN" => {
                self.depth += 1;
                self.has_body = true;
            }
            "CASE" if self.depth > 0 => self.depth += 1,
            "END" if self.depth > 0 => self.depth -= 1,
            _ => {}
        }
        self.previous = word;
    }

    fn inside_body(&self) -> bool {
        self.has_body && self.depth > 0
    }
}

impl<'a> Splitter<'a> {
    fn run(mut self) -> Result<Vec<Statement<'a>>, SplitError> {
        // Byte offset and line of the first significant character of the
        // statement being read; `None` while only white space and comments
        // have been seen.
        let mut start: Option<(usize, u32)> = None;
        let mut words = Words::default();
        let mut at_line_start = true;

        while self.pos < self.bytes.len() {
            if at_line_start && start.is_none() && self.dialect == Dialect::Mysql && self.delimiter_command()? {
                continue;
            }
            at_line_start = false;
            let b = self.bytes[self.pos];

            if self.bytes[self.pos..].starts_with(self.delimiter.as_bytes()) && !words.inside_body() {
                if let Some((from, line)) = start.take() {
                    self.push(from, self.pos, line);
                }
                self.pos += self.delimiter.len();
                words = Words::default();
                continue;
            }
            match b {
                b'\n' => {
                    self.line += 1;
                    self.pos += 1;
                    at_line_start = true;
                }
                b' ' | b'\t' | b'\r' | 0x0c => self.pos += 1,
                b'-' if self.peek(1) == Some(b'-') && self.line_comment_allowed() => {
                    if start.is_none() && goose_marker(self.rest_of_line()) == Some(true) {
                        self.goose_statement()?;
                    } else {
                        self.skip_line();
                    }
                }
                b'#' if self.dialect == Dialect::Mysql => self.skip_line(),
                b'/' if self.peek(1) == Some(b'*') => {
                    let executable = self.dialect == Dialect::Mysql && matches!(self.peek(2), Some(b'!' | b'+'));
                    if executable {
                        start.get_or_insert((self.pos, self.line));
                    }
                    self.block_comment()?;
                }
                b'\'' => {
                    start.get_or_insert((self.pos, self.line));
                    let backslash = self.dialect == Dialect::Mysql || self.is_escape_string();
                    self.quoted(b'\'', backslash, "string")?;
                }
                b'"' => {
                    start.get_or_insert((self.pos, self.line));
                    let (backslash, what) = match self.dialect {
                        Dialect::Mysql => (true, "string"),
                        _ => (false, "quoted identifier"),
                    };
                    self.quoted(b'"', backslash, what)?;
                }
                b'`' if self.dialect != Dialect::Postgres => {
                    start.get_or_insert((self.pos, self.line));
                    self.quoted(b'`', false, "quoted identifier")?;
                }
                b'[' if self.dialect == Dialect::Sqlite => {
                    start.get_or_insert((self.pos, self.line));
                    self.bracketed()?;
                }
                b'$' if self.dialect == Dialect::Postgres && self.dollar_quote()? => {
                    start.get_or_insert((self.pos, self.line));
                }
                _ if is_word_start(b) => {
                    start.get_or_insert((self.pos, self.line));
                    let from = self.pos;
                    // A custom delimiter may follow a word directly (`END$$`).
                    while self.pos < self.bytes.len()
                        && is_word_char(self.bytes[self.pos])
                        && !(self.delimiter != ";" && self.bytes[self.pos..].starts_with(self.delimiter.as_bytes()))
                    {
                        self.pos += 1;
                    }
                    words.see(self.dialect, &self.src[from..self.pos]);
                }
                _ => {
                    start.get_or_insert((self.pos, self.line));
                    // Step over a whole UTF-8 sequence so slices stay on
                    // character boundaries.
                    self.pos += utf8_len(b);
                }
            }
        }
        if let Some((from, line)) = start {
            if words.inside_body() {
                return Err(SplitError {
                    line,
                    message: "statement ends inside a BEGIN ... END body (missing END?)".to_owned(),
                });
            }
            self.push(from, self.bytes.len(), line);
        }
        Ok(self.out)
    }

    fn push(&mut self, from: usize, to: usize, line: u32) {
        let text = self.src[from..to].trim_end();
        if !text.is_empty() {
            self.out.push(Statement { line, text });
        }
    }

    fn peek(&self, ahead: usize) -> Option<u8> {
        self.bytes.get(self.pos + ahead).copied()
    }

    /// MySQL only treats `--` as a comment when white space follows it.
    fn line_comment_allowed(&self) -> bool {
        self.dialect != Dialect::Mysql || self.peek(2).is_none_or(|c| c.is_ascii_whitespace())
    }

    fn rest_of_line(&self) -> &'a str {
        let end = self.src[self.pos..].find('\n').map_or(self.src.len(), |i| self.pos + i);
        &self.src[self.pos..end]
    }

    /// At a `-- +goose StatementBegin` line: the lines up to the next
    /// `-- +goose StatementEnd` are one statement, less a final delimiter
    /// (goose users end the block with one, and MySQL runs a statement
    /// without it).
    fn goose_statement(&mut self) -> Result<(), SplitError> {
        let begin = self.line;
        self.skip_line();
        let mut from = None;
        while self.pos < self.bytes.len() {
            // At a line break: step over it to the next line.
            self.pos += 1;
            self.line += 1;
            let line = self.rest_of_line();
            if goose_marker(line.trim_start()) == Some(false) {
                let to = self.pos;
                self.skip_line();
                if let Some((from, first)) = from {
                    let text = self.src[from..to].trim_end();
                    let text = text.strip_suffix(self.delimiter.as_str()).unwrap_or(text).trim_end();
                    if !text.is_empty() {
                        self.out.push(Statement { line: first, text });
                    }
                }
                return Ok(());
            }
            if from.is_none() && !line.trim().is_empty() {
                let indent = line.len() - line.trim_start().len();
                from = Some((self.pos + indent, self.line));
            }
            self.skip_line();
        }
        Err(SplitError {
            line: begin,
            message: "`-- +goose StatementBegin` without a `-- +goose StatementEnd` after it".to_owned(),
        })
    }

    fn skip_line(&mut self) {
        while self.pos < self.bytes.len() && self.bytes[self.pos] != b'\n' {
            self.pos += 1;
        }
    }

    fn block_comment(&mut self) -> Result<(), SplitError> {
        let line = self.line;
        // PostgreSQL nests block comments; the others end at the first `*/`.
        let nests = self.dialect == Dialect::Postgres;
        let mut depth = 0usize;
        while self.pos < self.bytes.len() {
            if self.bytes[self.pos..].starts_with(b"/*") && (depth == 0 || nests) {
                depth += 1;
                self.pos += 2;
            } else if self.bytes[self.pos..].starts_with(b"*/") {
                depth -= 1;
                self.pos += 2;
                if depth == 0 {
                    return Ok(());
                }
            } else {
                if self.bytes[self.pos] == b'\n' {
                    self.line += 1;
                }
                self.pos += 1;
            }
        }
        Err(SplitError {
            line,
            message: "unterminated block comment".to_owned(),
        })
    }

    /// Whether the `'` at `pos` opens a PostgreSQL `E'...'` string.
    fn is_escape_string(&self) -> bool {
        if self.dialect != Dialect::Postgres || self.pos == 0 {
            return false;
        }
        let prefix = self.bytes[self.pos - 1];
        let before_prefix = self.pos.checked_sub(2).map(|i| self.bytes[i]);
        matches!(prefix, b'E' | b'e') && !before_prefix.is_some_and(is_word_char)
    }

    fn quoted(&mut self, quote: u8, backslash: bool, what: &str) -> Result<(), SplitError> {
        let line = self.line;
        self.pos += 1;
        while self.pos < self.bytes.len() {
            let b = self.bytes[self.pos];
            if b == b'\n' {
                self.line += 1;
            }
            if backslash && b == b'\\' {
                if self.peek(1) == Some(b'\n') {
                    self.line += 1;
                }
                self.pos += 2;
                continue;
            }
            self.pos += 1;
            if b == quote {
                // A doubled quote is an escaped quote, not the end.
                if self.bytes.get(self.pos) == Some(&quote) {
                    self.pos += 1;
                    continue;
                }
                return Ok(());
            }
        }
        Err(SplitError {
            line,
            message: format!("unterminated {what}"),
        })
    }

    fn bracketed(&mut self) -> Result<(), SplitError> {
        let line = self.line;
        while self.pos < self.bytes.len() {
            let b = self.bytes[self.pos];
            self.pos += 1;
            match b {
                b']' => return Ok(()),
                b'\n' => self.line += 1,
                _ => {}
            }
        }
        Err(SplitError {
            line,
            message: "unterminated [identifier]".to_owned(),
        })
    }

    /// Reads a dollar-quoted string if one opens at `pos`. Returns whether it
    /// did: a `$` can also be a positional parameter (`$1`) or part of a word.
    fn dollar_quote(&mut self) -> Result<bool, SplitError> {
        if self.pos > 0 && is_word_char(self.bytes[self.pos - 1]) {
            return Ok(false);
        }
        let rest = &self.bytes[self.pos + 1..];
        let tag_len = rest.iter().take_while(|b| is_word_char(**b) && **b != b'$').count();
        if rest.get(tag_len) != Some(&b'$') || rest.first().is_some_and(u8::is_ascii_digit) {
            return Ok(false);
        }
        let opener = &self.bytes[self.pos..self.pos + tag_len + 2];
        let line = self.line;
        let body_start = self.pos + opener.len();
        match find(&self.bytes[body_start..], opener) {
            Some(offset) => {
                let end = body_start + offset + opener.len();
                self.line += count_newlines(&self.bytes[self.pos..end]);
                self.pos = end;
                Ok(true)
            }
            None => Err(SplitError {
                line,
                message: format!(
                    "unterminated dollar-quoted string (no closing {})",
                    String::from_utf8_lossy(opener)
                ),
            }),
        }
    }

    /// Handles the MySQL client's `DELIMITER` command when it starts the line
    /// at `pos`. Returns whether it did.
    fn delimiter_command(&mut self) -> Result<bool, SplitError> {
        let line_end = self.bytes[self.pos..]
            .iter()
            .position(|b| *b == b'\n')
            .map_or(self.bytes.len(), |i| self.pos + i);
        let text = self.src[self.pos..line_end].trim();
        let Some(keyword) = text.get(..9) else {
            return Ok(false);
        };
        if !keyword.eq_ignore_ascii_case("delimiter") || !text[9..].starts_with([' ', '\t']) {
            return Ok(false);
        }
        let new = text[9..].trim();
        if new.is_empty() || new.contains(char::is_whitespace) || new.contains('\\') {
            return Err(SplitError {
                line: self.line,
                message: format!("DELIMITER needs one delimiter without spaces or backslashes, got {new:?}"),
            });
        }
        self.delimiter = new.to_owned();
        self.pos = line_end;
        Ok(true)
    }
}

fn is_word_start(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'_' || b >= 0x80
}

fn is_word_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'$' || b >= 0x80
}

/// `Some(true)` for a `-- +goose StatementBegin` line, `Some(false)` for
/// `-- +goose StatementEnd` (goose reads its annotations in any case).
fn goose_marker(line: &str) -> Option<bool> {
    let rest = line
        .trim_end()
        .strip_prefix("--")?
        .trim_start()
        .strip_prefix("+goose")?;
    match rest.trim().to_ascii_lowercase().as_str() {
        "statementbegin" => Some(true),
        "statementend" => Some(false),
        _ => None,
    }
}

fn utf8_len(first: u8) -> usize {
    match first {
        0xf0.. => 4,
        0xe0.. => 3,
        0xc0.. => 2,
        _ => 1,
    }
}

fn count_newlines(bytes: &[u8]) -> u32 {
    bytes.iter().filter(|b| **b == b'\n').count() as u32
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}
