//! Restoring a backup set into an empty database: verified first, schema,
//! then the rows, chunk by chunk in parallel (two chunks of one table at
//! once if need be), then sequences and what is better made after the rows
//! (indexes, constraints, triggers), and every restored row read back.
//!
//! A set of format 4 carries each table's order-independent sum of rows
//! ([`crate::rowsum`]): every table is read back by a plain scan and
//! summed, on PostgreSQL while its indexes are being built
//! (`waymark_db::PostData`), and only a table whose sum differs is read again
//! by key, chunk by chunk, to name the range. Older sets are checked by
//! key from the start, once the indexes are built.
//!
//! [`Verify::Count`] is the cheaper choice: no read-back, only each
//! chunk's rows counted as the database takes them. What each proves is in
//! docs/guide/backups.md.

use std::collections::VecDeque;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use waymark_db::{Checks, Conn, ConnectOptions, Database, Dialect, KeyRange, SchemaItem};

use crate::create::Progress;
use crate::error::BackupError;
use crate::manifest::{Manifest, Table};
use crate::rowsum::{RowSum, rows_of};
use crate::verify::{decode, verified};

/// How a restore proves that the database holds the backup's rows. Either
/// way the whole set is verified against its manifest before anything is
/// written, and each chunk is decoded from a file whose SHA-256 matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Verify {
    /// Every restored row read back and proven against the backup (each
    /// table's sum of rows, or each chunk's digest): finds a row the
    /// database changed, dropped or added as it stored them.
    #[default]
    Rows,
    /// The rows the database took from each chunk counted against the
    /// chunk's, and nothing read back: finds a row refused or skipped, not
    /// one stored changed (a trigger, a column default, a conversion).
    Count,
    /// A copy of a SQLite file's pages (`backup create --pages`): every
    /// byte proven against the pages' SHA-256, then SQLite's full
    /// `PRAGMA integrity_check` of the file (every index checked against its
    /// table's rows). What [`Verify::Rows`] means for a set of pages.
    Pages,
    /// As [`Verify::Pages`], with `PRAGMA quick_check`: the pages'
    /// structure checked, not each index against its table, in about a
    /// quarter of the time. What [`Verify::Count`] means for a set of pages.
    PagesQuick,
}

impl Verify {
    /// What this choice means for a set of pages.
    pub(crate) fn for_pages(self) -> Verify {
        match self {
            Verify::Count | Verify::PagesQuick => Verify::PagesQuick,
            Verify::Rows | Verify::Pages => Verify::Pages,
        }
    }

    /// What this choice means for a set of rows.
    fn for_rows(self) -> Verify {
        match self {
            Verify::Count | Verify::PagesQuick => Verify::Count,
            Verify::Rows | Verify::Pages => Verify::Rows,
        }
    }
}

impl Verify {
    /// Its name, as `--verify` takes it.
    pub fn name(self) -> &'static str {
        match self {
            Verify::Rows => "rows",
            Verify::Count => "count",
            Verify::Pages => "pages",
            Verify::PagesQuick => "pages-quick",
        }
    }
}

/// What a restore did.
#[derive(Debug, Clone)]
pub struct RestoreReport {
    /// The set restored.
    pub id: String,
    /// Tables restored, each checked against its digest.
    pub tables: usize,
    /// Rows restored.
    pub rows: u64,
    /// How long it took.
    pub duration: Duration,
    /// How the rows were proven.
    pub verify: Verify,
}

/// The key of each chunk's last row, by table and chunk, where it has one.
type LastKeys = Vec<Vec<Option<Vec<String>>>>;

/// The rows the database took from each chunk, by table and chunk.
type Tallies = Vec<Vec<u64>>;

/// How many chunks load at once.
const WORKERS: usize = 2;

/// How long loading a set's rows takes, per unit of the time the set took
/// to take, as measured at pgbench scale 50 on 2 cores (docs/BENCHMARKS.md):
/// the ETA a restore's bar shows before its own pace is known.
const LOAD_PER_CREATE: f64 = 1.5;

/// Restores the set in `dir` into the (empty) database `target`,
/// connecting to it for the restore.
pub async fn restore_to(
    dir: &Path,
    target: &ConnectOptions,
    verify: Verify,
    progress: &mut (dyn FnMut(Progress<'_>) + Send),
) -> Result<RestoreReport, BackupError> {
    // A copy of pages becomes the target's file; connecting first would
    // make that file.
    let manifest = Manifest::read(dir)?;
    if manifest.pages.is_some() {
        return crate::pages::restore_pages(dir, &manifest, target, verify.for_pages(), progress).await;
    }
    let db = Database::connect(target).await?;
    let result = restore(dir, &db, verify, progress).await;
    db.close().await;
    result
}

/// Restores the set in `dir` into `db`, which must be empty.
pub async fn restore(
    dir: &Path,
    db: &Database,
    verify: Verify,
    progress: &mut (dyn FnMut(Progress<'_>) + Send),
) -> Result<RestoreReport, BackupError> {
    let started = Instant::now();
    let (manifest, schema) = open(dir, db).await?;
    let verify = verify.for_rows();
    let dialect = db.dialect();
    let mut conn = db.restore_connection().await?;
    // Tables are created in name order, before the tables their foreign
    // keys name, and loaded in parallel.
    conn.set_checks(Checks::ForeignKeys, false).await?;
    for item in schema.iter().filter(|i| !i.after_rows) {
        conn.execute(&item.sql).await?;
    }
    // The workers need the pool's connections (SQLite has one).
    drop(conn);
    tracing::debug!(elapsed = ?started.elapsed(), "verified and made the tables");
    waymark_db::crash_point("restore-tables-made");

    // Chunks load in parallel, two of one table at once if need be: a
    // database that is mostly one big table loads as fast as one of many.
    // A chunk that holds more than a quarter of the set's rows (by bytes)
    // is cut into runs of rows, one per worker, loaded at once: a table of
    // one chunk would otherwise load on one connection, the others idle.
    // Each worker decodes the chunk for itself, which costs a small part of
    // loading it.
    // Each chunk's last key is kept, to find its rows again afterwards.
    let manifest = Arc::new(manifest);
    let parallel = if dialect == Dialect::Sqlite { 1 } else { WORKERS };
    let total: u64 = manifest
        .tables
        .iter()
        .flat_map(|t| &t.chunks)
        .map(|c| c.raw_bytes)
        .sum();
    let mut work = VecDeque::new();
    for (t, table) in manifest.tables.iter().enumerate() {
        for (c, chunk) in table.chunks.iter().enumerate() {
            let parts = if chunk.raw_bytes * 4 > total { parallel } else { 1 };
            if parts > 1 {
                tracing::debug!(chunk = %chunk.file, parts, "a chunk loads in runs at once");
            }
            work.extend((0..parts).map(|part| (t, c, part, parts)));
        }
    }
    let workers_wanted = parallel.min(work.len());
    let queue = Arc::new(Mutex::new(work));
    let last_keys: Arc<Mutex<LastKeys>> = Arc::new(Mutex::new(
        manifest.tables.iter().map(|t| vec![None; t.chunks.len()]).collect(),
    ));
    let tallies: Arc<Mutex<Tallies>> = Arc::new(Mutex::new(
        manifest.tables.iter().map(|t| vec![0; t.chunks.len()]).collect(),
    ));
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(usize, u64, u64)>();
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..workers_wanted {
        let (db, manifest, queue, tx, dir, last_keys, tallies) = (
            db.clone(),
            manifest.clone(),
            queue.clone(),
            tx.clone(),
            dir.to_owned(),
            last_keys.clone(),
            tallies.clone(),
        );
        workers.spawn(async move {
            let mut conn = db.restore_connection().await?;
            conn.set_checks(Checks::WhileLoading, false).await?;
            loop {
                let Some((t, c, part, parts)) = queue.lock().unwrap().pop_front() else {
                    break;
                };
                let table = &manifest.tables[t];
                let chunk = &table.chunks[c];
                let raw = decode_chunk(&dir, chunk)?;
                // Fewer runs than parts when the chunk has few rows.
                let run = waymark_db::split_rows(dialect, &raw, parts).get(part).copied();
                let took = match run {
                    Some(run) => conn.load_rows(&table.info, run).await?,
                    None => 0,
                };
                if verify == Verify::Rows && part + 1 == parts {
                    last_keys.lock().unwrap()[t][c] = waymark_db::last_key(dialect, &table.info, &raw);
                }
                tallies.lock().unwrap()[t][c] += took;
                let _ = tx.send((t, took, run.map_or(0, |r| r.len() as u64)));
            }
            conn.set_checks(Checks::WhileLoading, true).await?;
            Ok::<(), BackupError>(())
        });
    }
    drop(tx);
    let expected = manifest
        .timing
        .map(|t| Duration::from_millis(t.took_ms).mul_f64(LOAD_PER_CREATE));
    let mut rows_by_table = vec![0u64; manifest.tables.len()];
    let mut bytes = 0u64;
    while let Some((index, rows, chunk_bytes)) = rx.recv().await {
        rows_by_table[index] += rows;
        bytes += chunk_bytes;
        progress(Progress {
            table: &manifest.tables[index].info.name,
            rows: rows_by_table[index],
            bytes,
            total_bytes: Some(total),
            expected,
        });
    }
    let mut first_error = None;
    while let Some(joined) = workers.join_next().await {
        let result = joined.map_err(|e| BackupError::Refused {
            message: format!("a restore worker stopped: {e}"),
        });
        if let Err(e) = result.and_then(|r| r)
            && first_error.is_none()
        {
            first_error = Some(e);
        }
    }
    if let Some(e) = first_error {
        return Err(e);
    }
    let last_keys = std::mem::take(&mut *last_keys.lock().unwrap());
    // The chunks the database did not take all of.
    let mut miscounted = Vec::new();
    if verify == Verify::Count {
        for (table, took) in manifest.tables.iter().zip(tallies.lock().unwrap().iter()) {
            for (chunk, took) in table
                .chunks
                .iter()
                .zip(took)
                .filter(|(chunk, took)| **took != chunk.rows)
            {
                miscounted.push(format!(
                    "{}: the rows of {}: the database took {took} rows, the backup has {}",
                    table.info.name, chunk.file, chunk.rows
                ));
            }
        }
    }

    tracing::debug!(elapsed = ?started.elapsed(), "loaded the rows");
    waymark_db::crash_point("restore-rows-loaded");
    let mut conn = db.restore_connection().await?;
    conn.set_sequences(&manifest.sequences).await?;
    let after: Vec<&str> = schema.iter().filter(|i| i.after_rows).map(|i| i.sql.as_str()).collect();
    let by_sums = manifest.tables.iter().all(|t| t.rows_xxh3.is_some());
    // `for_rows` left Rows or Count.
    let mut mismatches = if verify == Verify::Count {
        // Nothing to read back: the index builds get every connection.
        let (early, rest) = cut_after(&mut conn, &after).await?;
        drop(conn);
        build_early(db, early, parallel).await?;
        run_the_rest(&mut db.restore_connection().await?, &rest).await?;
        tracing::debug!(elapsed = ?started.elapsed(), "made indexes, constraints, views and triggers");
        Vec::new()
    } else if by_sums {
        check_by_sums(db, conn, &manifest, &after, last_keys, (parallel, started)).await?
    } else {
        run_the_rest(&mut conn, &after).await?;
        tracing::debug!(elapsed = ?started.elapsed(), "made indexes, constraints, views and triggers");
        drop(conn);
        let every: Vec<usize> = (0..manifest.tables.len()).collect();
        check_restored(db, &manifest, last_keys, parallel, &every).await?
    };
    mismatches.extend(miscounted);
    mismatches.sort();
    tracing::debug!(elapsed = ?started.elapsed(), "digested every restored table");
    waymark_db::crash_point("restore-checked");
    if !mismatches.is_empty() {
        return Err(BackupError::Mismatch { tables: mismatches });
    }
    Ok(RestoreReport {
        id: manifest.id.clone(),
        tables: manifest.tables.len(),
        rows: manifest.tables.iter().map(|t| t.rows).sum(),
        duration: started.elapsed(),
        verify,
    })
}

/// Verifies the set in `dir` and checks that it can go into `db` (same
/// kind, no tables yet); returns its manifest and schema.
async fn open(dir: &Path, db: &Database) -> Result<(Manifest, Vec<SchemaItem>), BackupError> {
    let manifest = verified(dir)?;
    if manifest.pages.is_some() {
        return Err(BackupError::Refused {
            message: format!(
                "{} is a copy of a SQLite file's pages: it restores into a new file, with `waymark backup restore {} --to sqlite://FILE`, not into {}; nothing was restored",
                dir.display(),
                dir.display(),
                db.url()
            ),
        });
    }
    let dialect = db.dialect();
    if manifest.database.server.dialect != dialect.name() {
        return Err(BackupError::Refused {
            message: format!(
                "the backup is of a {} database; {} is {}",
                manifest.database.server.dialect,
                db.url(),
                dialect.name()
            ),
        });
    }
    let mut conn = db.restore_connection().await?;
    let existing = conn.tables().await?;
    if !existing.is_empty() {
        let names: Vec<&str> = existing.iter().take(5).map(|t| t.name.as_str()).collect();
        return Err(BackupError::Refused {
            message: format!(
                "restore needs an empty database, and {} has {} table(s): {}; nothing was restored",
                db.url(),
                existing.len(),
                names.join(", ")
            ),
        });
    }
    drop(conn);
    let schema_path = dir.join("schema.json");
    let schema: Vec<SchemaItem> = serde_json::from_slice(
        &std::fs::read(&schema_path).map_err(|e| BackupError::io(&schema_path, e))?,
    )
    .map_err(|e| BackupError::Manifest {
        path: schema_path.clone(),
        message: format!("it does not parse: {e}"),
    })?;
    Ok((manifest, schema))
}

/// Makes the schema of the set in `dir` (tables, indexes, constraints,
/// views, triggers, sequences at their recorded values) in the empty
/// database `db`, without rows: for a server that replication will fill.
/// The set is verified first.
pub async fn restore_schema(dir: &Path, db: &Database) -> Result<Manifest, BackupError> {
    let (manifest, schema) = open(dir, db).await?;
    // All or nothing where DDL is transactional, so that a statement that
    // fails leaves the database empty, ready for another try.
    let mut conn = if db.dialect().transactional_ddl() {
        db.begin().await?
    } else {
        let mut conn = db.restore_connection().await?;
        conn.set_checks(Checks::ForeignKeys, false).await?;
        conn
    };
    for item in schema.iter().filter(|i| !i.after_rows) {
        conn.execute(&item.sql).await?;
    }
    conn.set_sequences(&manifest.sequences).await?;
    for item in schema.iter().filter(|i| i.after_rows) {
        conn.execute(&item.sql).await?;
    }
    if conn.in_transaction() {
        conn.commit().await?;
    }
    Ok(manifest)
}

/// Decodes one chunk of the set in `dir`. The compressed file's SHA-256
/// was checked before anything was written, and decompression is
/// deterministic: its rows are the backup's.
fn decode_chunk(dir: &Path, chunk: &crate::manifest::Chunk) -> Result<Vec<u8>, BackupError> {
    let path = dir.join(&chunk.file);
    let raw = decode(&path, chunk.raw_bytes).map_err(|e| BackupError::io(&path, e))?;
    if raw.len() as u64 != chunk.raw_bytes {
        return Err(BackupError::DoesNotVerify {
            dir: dir.to_owned(),
            problems: vec![format!("{}: its rows do not match the manifest", chunk.file)],
        });
    }
    Ok(raw)
}

/// The rest of a restore of a set of format 4, after the rows are loaded:
/// each table read back in any order and summed, which needs no index, so
/// on PostgreSQL beside the index builds; then the rest of the schema; then
/// the tables whose sums differ read again by key to name the range.
/// Returns what differs.
async fn check_by_sums(
    db: &Database,
    mut conn: Conn,
    manifest: &Arc<Manifest>,
    after: &[&str],
    last_keys: LastKeys,
    (parallel, started): (usize, Instant),
) -> Result<Vec<String>, BackupError> {
    let (early, rest) = cut_after(&mut conn, after).await?;
    // SQLite has one connection, which the read-back needs.
    drop(conn);
    let (built, summed) = tokio::join!(
        async {
            let built = build_early(db, early, 1).await;
            tracing::debug!(elapsed = ?started.elapsed(), "built the indexes");
            built
        },
        async {
            let summed = sum_tables(db, manifest, parallel).await;
            tracing::debug!(elapsed = ?started.elapsed(), "summed every restored table");
            summed
        }
    );
    built?;
    let differ = summed?;
    waymark_db::crash_point("restore-indexes-built");
    run_the_rest(&mut db.restore_connection().await?, &rest).await?;
    if differ.is_empty() {
        return Ok(Vec::new());
    }
    // Name the ranges that differ, chunk by chunk, by key; a table where no
    // chunk differs keeps its sum's message.
    let wanted: Vec<usize> = differ.iter().map(|(t, _)| *t).collect();
    let mut found = check_restored(db, manifest, last_keys, parallel, &wanted).await?;
    for (t, message) in differ {
        let named = format!("{}: ", manifest.tables[t].info.name);
        if !found.iter().any(|m| m.starts_with(&named)) {
            found.push(message);
        }
    }
    found.sort();
    Ok(found)
}

/// What is made after the rows, cut for speed: on PostgreSQL each
/// post-data section's session settings and index builds (keys built as
/// unique indexes), and the rest of it; elsewhere, where the indexes came
/// with the tables, it is run here and nothing is left.
async fn cut_after(conn: &mut Conn, after: &[&str]) -> Result<(Vec<(String, Vec<String>)>, Vec<String>), BackupError> {
    let mut early = Vec::new();
    let mut rest = Vec::new();
    for sql in after {
        if conn.dialect() == Dialect::Postgres {
            let cut = conn.cut_post_data(sql).await?;
            early.push((cut.preamble, cut.early));
            rest.push(cut.rest);
        } else {
            conn.execute(sql).await?;
        }
    }
    Ok((early, rest))
}

/// Runs what is left of the schema after the rows, in order, then turns
/// the foreign-key checks back on.
async fn run_the_rest(conn: &mut Conn, statements: &[impl AsRef<str>]) -> Result<(), BackupError> {
    for sql in statements {
        conn.execute(sql.as_ref()).await?;
    }
    conn.set_checks(Checks::ForeignKeys, true).await?;
    Ok(())
}

/// Runs each part's index builds, each after its part's session settings,
/// on `connections` connections at once.
async fn build_early(db: &Database, parts: Vec<(String, Vec<String>)>, connections: usize) -> Result<(), BackupError> {
    let queue: VecDeque<(usize, String)> = parts
        .iter()
        .enumerate()
        .flat_map(|(p, (_, early))| early.iter().map(move |sql| (p, sql.clone())))
        .collect();
    if queue.is_empty() {
        return Ok(());
    }
    let preambles: Arc<Vec<String>> = Arc::new(parts.into_iter().map(|(preamble, _)| preamble).collect());
    let queue = Arc::new(Mutex::new(queue));
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..connections.max(1) {
        let (db, queue, preambles) = (db.clone(), queue.clone(), preambles.clone());
        workers.spawn(async move {
            let mut conn = db.restore_connection().await?;
            let mut settled = None;
            loop {
                let Some((p, sql)) = queue.lock().unwrap().pop_front() else {
                    break;
                };
                if settled != Some(p) {
                    conn.execute(&preambles[p]).await?;
                    settled = Some(p);
                }
                conn.execute(&sql).await?;
            }
            Ok::<_, BackupError>(())
        });
    }
    while let Some(joined) = workers.join_next().await {
        joined.map_err(|e| BackupError::Refused {
            message: format!("an index build stopped: {e}"),
        })??;
    }
    Ok(())
}

/// Reads every restored table back in any order, on `parallel`
/// connections, and sums its rows as the backup did; returns the tables
/// whose sums differ, each with what differs.
///
/// A big table is read on one connection, not cut by pages across two: on
/// 2 cores the index builds beside it take the other, and cutting it made
/// the restore no faster at pgbench scale 50 (docs/design/0009).
async fn sum_tables(
    db: &Database,
    manifest: &Arc<Manifest>,
    parallel: usize,
) -> Result<Vec<(usize, String)>, BackupError> {
    let queue = Arc::new(Mutex::new((0..manifest.tables.len()).collect::<VecDeque<_>>()));
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..parallel {
        let (db, manifest, queue) = (db.clone(), manifest.clone(), queue.clone());
        workers.spawn(async move {
            let mut conn = db.restore_connection().await?;
            let dialect = conn.dialect();
            let mut differ = Vec::new();
            loop {
                let Some(t) = queue.lock().unwrap().pop_front() else {
                    break;
                };
                let table = &manifest.tables[t];
                let mut sum = RowSum::default();
                conn.stream_rows_any_order(&table.info, &mut |piece, _| {
                    sum.add(dialect, piece);
                    Ok(())
                })
                .await?;
                let expected = table.rows_xxh3.as_deref().unwrap_or_default();
                if sum.rows() != table.rows || sum.hex() != expected {
                    let message = format!(
                        "{}: all rows: {} rows summing to {}, the backup has {} rows summing to {expected}",
                        table.info.name,
                        sum.rows(),
                        sum.hex(),
                        table.rows
                    );
                    differ.push((t, message));
                }
            }
            Ok::<_, BackupError>(differ)
        });
    }
    let mut differ = Vec::new();
    while let Some(joined) = workers.join_next().await {
        differ.extend(joined.map_err(|e| BackupError::Refused {
            message: format!("a restore check stopped: {e}"),
        })??);
    }
    differ.sort();
    Ok(differ)
}

/// What to read back from the restored database and compare.
enum Check {
    /// The rows of one chunk, found by their keys.
    Chunk {
        table: usize,
        chunk: usize,
        range: KeyRange,
    },
    /// A whole table: one without a primary key, or without rows.
    Table { table: usize },
}

/// Reads the restored rows of the `wanted` tables back, digested as the
/// backup digested them: chunk by chunk, by key range, in parallel, so a
/// mismatch is narrowed to the keys of one chunk; whole tables where there
/// is no key to range by.
/// The ranges of a table leave no gap (the first starts at its beginning,
/// the last runs to its end), so a row that should not be there is found
/// as surely as one that is missing.
async fn check_restored(
    db: &Database,
    manifest: &Arc<Manifest>,
    last_keys: LastKeys,
    parallel: usize,
    wanted: &[usize],
) -> Result<Vec<String>, BackupError> {
    let mut checks = VecDeque::new();
    for (t, keys) in last_keys.into_iter().enumerate() {
        if !wanted.contains(&t) {
            continue;
        }
        let keys: Option<Vec<Vec<String>>> = keys.into_iter().collect();
        match keys {
            Some(keys) if !keys.is_empty() => {
                for c in 0..keys.len() {
                    checks.push_back(Check::Chunk {
                        table: t,
                        chunk: c,
                        range: KeyRange {
                            after: c.checked_sub(1).map(|p| keys[p].clone()),
                            upto: (c + 1 < keys.len()).then(|| keys[c].clone()),
                        },
                    });
                }
            }
            _ => checks.push_back(Check::Table { table: t }),
        }
    }
    let queue = Arc::new(Mutex::new(checks));
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..parallel {
        let (db, manifest, queue) = (db.clone(), manifest.clone(), queue.clone());
        workers.spawn(async move {
            let mut conn = db.restore_connection().await?;
            let mut mismatches = Vec::new();
            loop {
                let Some(check) = queue.lock().unwrap().pop_front() else {
                    break;
                };
                if let Check::Table { table } = &check {
                    mismatches.extend(check_whole_table(&mut conn, &manifest.tables[*table]).await?);
                    continue;
                }
                let (t, range, what, rows, sha) = match &check {
                    Check::Chunk { table, chunk, range } => {
                        let c = &manifest.tables[*table].chunks[*chunk];
                        let what = format!("the rows of {} ({range})", c.file);
                        (*table, range.clone(), what, c.rows, &c.raw_sha256)
                    }
                    Check::Table { .. } => unreachable!("checked above"),
                };
                let info = &manifest.tables[t].info;
                let (found, digest) = conn.range_digest(info, &range).await?;
                if found != rows || &digest != sha {
                    mismatches.push(format!(
                        "{}: {what}: {found} rows with SHA-256 {digest}, the backup has {rows} rows with {sha}",
                        info.name
                    ));
                }
            }
            Ok::<_, BackupError>(mismatches)
        });
    }
    let mut mismatches = Vec::new();
    while let Some(joined) = workers.join_next().await {
        let found = joined.map_err(|e| BackupError::Refused {
            message: format!("a restore check stopped: {e}"),
        })??;
        mismatches.extend(found);
    }
    mismatches.sort();
    Ok(mismatches)
}

/// A table read back whole (it has no key to range by, or no rows), in
/// its canonical order, cut into runs of its chunks' row counts, each run
/// digested and compared with its chunk.
async fn check_whole_table(conn: &mut Conn, table: &Table) -> Result<Vec<String>, BackupError> {
    let dialect = conn.dialect();
    let counts: Vec<u64> = table.chunks.iter().map(|c| c.rows).collect();
    let mut digests = Vec::new();
    let mut run = Sha256::new();
    let mut in_run = 0u64;
    let mut rows = 0u64;
    let mut take = |row: &[u8]| {
        run.update(row);
        in_run += 1;
        rows += 1;
        if counts.get(digests.len()) == Some(&in_run) {
            digests.push(hex::encode(std::mem::take(&mut run).finalize()));
            in_run = 0;
        }
    };
    conn.stream_rows(&table.info, &mut |piece, _| {
        rows_of(dialect, piece).for_each(&mut take);
        Ok(())
    })
    .await?;
    let mut problems = Vec::new();
    if rows != table.rows {
        problems.push(format!(
            "{}: all rows: {rows} rows, the backup has {}",
            table.info.name, table.rows
        ));
    }
    if let Some((chunk, found)) = table
        .chunks
        .iter()
        .zip(&digests)
        .find(|(chunk, found)| **found != chunk.raw_sha256)
    {
        problems.push(format!(
            "{}: the rows of {}: SHA-256 {found}, the backup has {}",
            table.info.name, chunk.file, chunk.raw_sha256
        ));
    }
    Ok(problems)
}
