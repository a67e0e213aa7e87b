//! Comparing two databases' contents: which tables each has, their columns
//! and keys, their other schema objects (indexes, constraints, views,
//! triggers, functions), their rows, and their sequences. Rows are compared range by
//! range of the primary key (every `range_rows` keys), each range as a row
//! count and a SHA-256 of its rows in the canonical form backups use, read
//! on both sides at once. A range that differs is read again on both sides
//! to name sample keys: missing on the target, only on the target, or
//! different. Each side is read in one snapshot of its own; the result is
//! exact when neither changes meanwhile. The cutover's own schema
//! (`waymark_cutover`) is left out.

use std::collections::{BTreeMap, HashMap};

use waymark_db::{Conn, ConnectOptions, Database, DbError, Dialect, KeyRange, TableInfo, last_key};

use crate::error::CutoverError;
use crate::pg::OWN_SCHEMA;

/// How to compare.
#[derive(Debug, Clone)]
pub struct CompareOptions {
    /// Rows per range of a table's key.
    pub range_rows: u64,
    /// Sample keys to name per kind of difference in a range.
    pub samples: usize,
}

impl Default for CompareOptions {
    fn default() -> Self {
        CompareOptions {
            range_rows: 100_000,
            samples: 5,
        }
    }
}

/// One table compared.
#[derive(Debug, Clone, serde::Serialize, schemars::JsonSchema)]
pub struct TableComparison {
    /// Its name (schema-qualified on PostgreSQL).
    pub table: String,
    /// Rows on the source.
    pub rows: u64,
    /// Ranges compared.
    pub ranges: usize,
    /// What differs, each naming the range and sample keys.
    pub problems: Vec<String>,
}

/// Two databases compared.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CompareReport {
    /// Each table both have, with the same columns.
    pub tables: Vec<TableComparison>,
    /// Every difference: tables on one side only or with other columns,
    /// ranges of rows, sequences.
    pub problems: Vec<String>,
}

impl CompareReport {
    /// Whether the two hold the same.
    pub fn matches(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Rows read per side to name sample keys; a range with more is reported
/// without them.
const SAMPLE_ROWS: usize = 200_000;

/// Compares `target` with `source`.
pub async fn compare(
    source: &Database,
    target: &Database,
    options: &CompareOptions,
) -> Result<CompareReport, CutoverError> {
    let mut s = source.begin_snapshot().await?;
    let mut t = target.begin_snapshot().await?;
    let source_tables = user_tables(&mut s).await?;
    let target_tables = user_tables(&mut t).await?;
    let (both, mut problems) = match_tables(&source_tables, &target_tables);
    problems.extend(compare_objects(&mut s, &mut t).await?);
    let mut tables = Vec::new();
    for info in both {
        let compared = compare_rows(&mut s, &mut t, info, options).await?;
        problems.extend(compared.problems.iter().cloned());
        tables.push(compared);
    }
    let source_sequences = s.sequences().await?;
    let target_sequences: BTreeMap<String, i64> = t.sequences().await?.into_iter().map(|q| (q.name, q.value)).collect();
    for q in &source_sequences {
        match target_sequences.get(&q.name) {
            None => problems.push(format!("sequence {}: missing on the target", q.name)),
            Some(value) if *value != q.value => problems.push(format!(
                "sequence {}: at {} on the source, {value} on the target",
                q.name, q.value
            )),
            Some(_) => {}
        }
    }
    for name in target_sequences.keys() {
        if !source_sequences.iter().any(|q| &q.name == name) {
            problems.push(format!("sequence {name}: only on the target"));
        }
    }
    s.rollback().await?;
    t.rollback().await?;
    Ok(CompareReport { tables, problems })
}

/// The database's tables, the cutover's own left out.
pub(crate) async fn user_tables(conn: &mut Conn) -> Result<Vec<TableInfo>, DbError> {
    let ours = format!("{OWN_SCHEMA}.");
    Ok(conn
        .tables()
        .await?
        .into_iter()
        .filter(|i| !i.name.starts_with(&ours))
        .collect())
}

/// The tables both sides have with the same columns and key; and a
/// problem for every other.
pub(crate) fn match_tables<'a>(
    source_tables: &'a [TableInfo],
    target_tables: &[TableInfo],
) -> (Vec<&'a TableInfo>, Vec<String>) {
    let on_target: HashMap<&str, &TableInfo> = target_tables.iter().map(|i| (i.name.as_str(), i)).collect();
    let mut problems = Vec::new();
    for info in target_tables {
        if !source_tables.iter().any(|s| s.name == info.name) {
            problems.push(format!("table {}: only on the target", info.name));
        }
    }
    let mut both = Vec::new();
    for info in source_tables {
        match on_target.get(info.name.as_str()) {
            None => problems.push(format!("table {}: missing on the target", info.name)),
            Some(other) if *other != info => problems.push(format!(
                "table {}: its columns differ: the source has {}, the target {}",
                info.name,
                shape(info),
                shape(other)
            )),
            Some(_) => both.push(info),
        }
    }
    (both, problems)
}

/// Indexes, constraints, views, triggers and functions on one side only,
/// or defined differently.
pub(crate) async fn compare_objects(s: &mut Conn, t: &mut Conn) -> Result<Vec<String>, DbError> {
    let on = |objects: Vec<(String, String, String)>| -> BTreeMap<(String, String), String> {
        objects
            .into_iter()
            .map(|(kind, name, def)| ((kind, name), def))
            .collect()
    };
    let ours = on(s.schema_objects(OWN_SCHEMA).await?);
    let theirs = on(t.schema_objects(OWN_SCHEMA).await?);
    let cut = |def: &str| -> String {
        match def.char_indices().nth(160) {
            Some((i, _)) => format!("{}...", &def[..i]),
            None => def.to_owned(),
        }
    };
    let mut problems = Vec::new();
    for ((kind, name), def) in &ours {
        match theirs.get(&(kind.clone(), name.clone())) {
            None => problems.push(format!("{kind} {name}: missing on the target")),
            Some(other) if other != def => problems.push(format!(
                "{kind} {name}: defined differently: the source has `{}`, the target `{}`",
                cut(def),
                cut(other)
            )),
            Some(_) => {}
        }
    }
    for (kind, name) in theirs.keys() {
        if !ours.contains_key(&(kind.clone(), name.clone())) {
            problems.push(format!("{kind} {name}: only on the target"));
        }
    }
    Ok(problems)
}

/// `(a integer, b text) key (a)`.
fn shape(info: &TableInfo) -> String {
    let columns: Vec<String> = info
        .columns
        .iter()
        .zip(&info.types)
        .map(|(c, t)| format!("{c} {t}"))
        .collect();
    format!("({}) key ({})", columns.join(", "), info.primary_key.join(", "))
}

pub(crate) async fn compare_rows(
    s: &mut Conn,
    t: &mut Conn,
    info: &TableInfo,
    options: &CompareOptions,
) -> Result<TableComparison, DbError> {
    let bounds = s.key_boundaries(info, options.range_rows.max(1)).await?;
    let mut ranges = Vec::new();
    let mut after = None;
    for bound in bounds {
        ranges.push(KeyRange {
            after: after.take(),
            upto: Some(bound.clone()),
        });
        after = Some(bound);
    }
    ranges.push(KeyRange { after, upto: None });
    let mut rows = 0;
    let mut problems = Vec::new();
    for range in &ranges {
        let (ours, theirs) = tokio::join!(s.range_digest(info, range), t.range_digest(info, range));
        let (ours, theirs) = (ours?, theirs?);
        rows += ours.0;
        if ours == theirs {
            continue;
        }
        let what = if info.primary_key.is_empty() {
            "all rows (it has no primary key)".to_owned()
        } else {
            format!("rows with {range}")
        };
        let counts = if ours.0 == theirs.0 {
            format!("{} rows on each side, with different contents", ours.0)
        } else {
            format!("{} rows on the source, {} on the target", ours.0, theirs.0)
        };
        let samples = samples(s, t, info, range, options.samples).await?;
        problems.push(format!("table {}: {what}: {counts}{samples}", info.name));
    }
    Ok(TableComparison {
        table: info.name.clone(),
        rows,
        ranges: ranges.len(),
        problems,
    })
}

/// `; missing on the target: ('7'); different: ('9')`, from both sides'
/// rows in `range`; empty where the range is too big to read or the table
/// has no key to name rows by.
async fn samples(
    s: &mut Conn,
    t: &mut Conn,
    info: &TableInfo,
    range: &KeyRange,
    limit: usize,
) -> Result<String, DbError> {
    if info.primary_key.is_empty() || limit == 0 {
        return Ok(String::new());
    }
    let (ours, theirs) = tokio::join!(rows_by_key(s, info, range), rows_by_key(t, info, range));
    let (Some(ours), Some(theirs)) = (ours?, theirs?) else {
        return Ok(String::new());
    };
    let pick = |keys: Vec<&String>| -> Option<String> {
        let n = keys.len();
        if n == 0 {
            return None;
        }
        let shown: Vec<&str> = keys.iter().take(limit).map(|k| k.as_str()).collect();
        let more = if n > limit {
            format!(" and {} more", n - limit)
        } else {
            String::new()
        };
        Some(format!("{}{more}", shown.join(", ")))
    };
    let missing = pick(ours.keys().filter(|k| !theirs.contains_key(*k)).collect());
    let extra = pick(theirs.keys().filter(|k| !ours.contains_key(*k)).collect());
    let changed = pick(
        ours.iter()
            .filter(|(k, row)| theirs.get(*k).is_some_and(|other| other != *row))
            .map(|(k, _)| k)
            .collect(),
    );
    let mut out = String::new();
    for (label, keys) in [
        ("missing on the target", missing),
        ("only on the target", extra),
        ("different", changed),
    ] {
        if let Some(keys) = keys {
            out.push_str(&format!("; {label}: {keys}"));
        }
    }
    Ok(out)
}

/// The rows of `range`, by their key as text; `None` past [`SAMPLE_ROWS`].
async fn rows_by_key(
    conn: &mut Conn,
    info: &TableInfo,
    range: &KeyRange,
) -> Result<Option<BTreeMap<String, Vec<u8>>>, DbError> {
    let dialect = conn.dialect();
    let mut rows = Vec::new();
    let mut too_many = false;
    conn.stream_rows_in(info, range, &mut |piece, _| {
        if rows.len() >= SAMPLE_ROWS {
            too_many = true;
            return Ok(());
        }
        match dialect {
            Dialect::Postgres => rows.extend(piece.split_inclusive(|b| *b == b'\n').map(<[u8]>::to_vec)),
            _ => rows.push(piece.to_vec()),
        }
        Ok(())
    })
    .await?;
    if too_many {
        return Ok(None);
    }
    Ok(Some(
        rows.into_iter()
            .filter_map(|row| {
                let key = last_key(dialect, info, &row)?;
                Some((format!("({})", key.join(", ")), row))
            })
            .collect(),
    ))
}

/// Connects to both databases and compares them as [`compare`] does;
/// they must be of one dialect.
pub async fn compare_databases(
    source: &ConnectOptions,
    target: &ConnectOptions,
    options: &CompareOptions,
) -> Result<CompareReport, CutoverError> {
    let source = Database::connect(source).await?;
    let target = Database::connect(target).await?;
    if source.dialect() != target.dialect() {
        let message = format!(
            "{} is {} and {} is {}: only two databases of the same kind compare",
            source.url(),
            source.dialect().name(),
            target.url(),
            target.dialect().name()
        );
        source.close().await;
        target.close().await;
        return Err(CutoverError::Usage(message));
    }
    let report = compare(&source, &target, options).await;
    source.close().await;
    target.close().await;
    report
}
