//! Taking a backup: every table's rows from one consistent snapshot, in
//! primary-key order, into zstd-compressed chunks, each file hashed as it
//! is written; the manifest last, under a temporary name renamed into
//! place, so that a backup killed half-way never has one.

use std::fs::File as FsFile;
use std::io::Write;
use std::path::{Path, PathBuf};

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use waymark_db::{
    Conn, Database, Dialect, HeapPages, HistoryRow, KeyRange, SchemaItem, SequenceValue, ServerInfo, TableInfo,
};

use crate::chunks::{ChunkWriter, Chunks};
use crate::error::BackupError;
use crate::estimate::{Rates, Total};
use crate::manifest::{AppliedMigration, FORMAT, File, MANIFEST, Manifest, Pages, Source, Table, Timing, table_digest};
use crate::stored::KeyOrder;
use crate::writing::Writing;

/// How to take a backup.
#[derive(Debug, Clone)]
pub struct CreateOptions {
    /// The folder backup sets go in; the set is a new folder inside it.
    pub out: PathBuf,
    /// Only these tables (default: all of them).
    pub tables: Option<Vec<String>>,
    /// The database's URL, with its password, for `pg_dump`.
    pub url: String,
    /// Bytes of rows per chunk, before compression.
    pub chunk_bytes: u64,
    /// zstd level.
    pub level: i32,
    /// Take the backup in this snapshot, which another transaction
    /// exported and keeps open (PostgreSQL), rather than in one of its
    /// own: a cutover seeds its target from a snapshot matching a WAL
    /// position.
    pub snapshot: Option<String>,
    /// Copy a SQLite database's file page for page (`--pages`) rather
    /// than its tables' rows: at the pace of `sqlite3 .backup`, proving the
    /// file rather than each row.
    pub pages: bool,
    /// How many connections read a big table at once, sharing the
    /// snapshot (PostgreSQL): 1, or 2 for two parts of it. `None` chooses
    /// by this machine's cores ([`CreateOptions::reads`]).
    pub jobs: Option<u8>,
}

impl CreateOptions {
    /// How many connections read a big table: as asked, or 2 where this
    /// machine has more than two cores and 1 where it has two or fewer.
    /// On two, one server backend and waymark's own work on the rows
    /// already fill both, and a second read only adds work: two runs of
    /// pages cost the server a fifth to a third more than one scan, and
    /// waymark's threads spend time switching (design 0009, "Two cores, one
    /// thread").
    pub fn reads(&self) -> u8 {
        let default = if crate::chunks::cores_to_spare() { 2 } else { 1 };
        self.jobs.unwrap_or(default).clamp(1, 2)
    }
}

/// Progress of a backup or restore: rows and bytes so far, for one table
/// and for all of them.
#[derive(Debug, Clone, Copy)]
pub struct Progress<'a> {
    /// The table being copied.
    pub table: &'a str,
    /// Rows of that table so far.
    pub rows: u64,
    /// Bytes (uncompressed) so far, over every table.
    pub bytes: u64,
    /// Bytes expected in all, when known: exact for a restore; for a
    /// backup, the catalog's sizes at the pace of earlier sets, corrected
    /// as each table finishes.
    pub total_bytes: Option<u64>,
    /// How long the whole is expected to take, from its start, when an
    /// estimate was made: an ETA before the first rows arrive.
    pub expected: Option<Duration>,
}

/// A writer that hashes and counts what passes through it.
pub(crate) struct Hashing<W> {
    pub(crate) inner: W,
    pub(crate) hash: Sha256,
    pub(crate) bytes: u64,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hash.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Which of a table's rows to read, and how.
enum Read {
    /// A range of its key, in key order.
    Keyed(KeyRange),
    /// A run of its heap pages as they lie (PostgreSQL), its writer
    /// checking that every key rises.
    Stored(HeapPages),
}

/// Streams `read`'s rows of a table into `writer`, counting rows and
/// bytes (over every table) in `counters` for progress.
async fn copy_rows(
    conn: &mut Conn,
    info: &TableInfo,
    read: Read,
    writer: ChunkWriter,
    (rows_so_far, bytes_so_far): (&AtomicU64, &AtomicU64),
    total: &Total,
    progress: &mut (dyn FnMut(Progress<'_>) + Send),
) -> Result<(u64, ChunkWriter), BackupError> {
    let mut chunks = Chunks::start(writer);
    let mut sink = |piece: &[u8], rows: u64| -> std::io::Result<()> {
        let table_rows = rows_so_far.fetch_add(rows, Ordering::Relaxed) + rows;
        let bytes = bytes_so_far.fetch_add(piece.len() as u64, Ordering::Relaxed) + piece.len() as u64;
        if table_rows % 10_000 < rows {
            progress(Progress {
                table: &info.name,
                rows: table_rows,
                bytes,
                total_bytes: Some(total.bytes(bytes)),
                expected: Some(total.expected),
            });
        }
        chunks.push(piece, rows)
    };
    let streamed = match read {
        Read::Stored(pages) => conn.stream_rows_stored(info, pages, &mut sink).await,
        Read::Keyed(range) => conn.stream_rows_in(info, &range, &mut sink).await,
    };
    // A writer that stopped stopped the read: its error is the cause.
    let writer = chunks.finish()?;
    Ok((streamed?, writer))
}

/// Makes a new set's folder and returns its id: the time, to the second,
/// in UTC, with a suffix (`-2`, `-3`, ...) if that name is taken. The
/// folder is claimed by creating it, not by looking first: two backups
/// started in the same second by two processes would otherwise both pick
/// the free name and one would fail.
fn new_set_dir(out: &Path) -> Result<(String, PathBuf), BackupError> {
    let base = chrono::Utc::now().format("%Y%m%dT%H%M%SZ").to_string();
    let mut n = 1;
    loop {
        let id = match n {
            1 => base.clone(),
            n => format!("{base}-{n}"),
        };
        let dir = out.join(&id);
        match std::fs::create_dir(&dir) {
            Ok(()) => return Ok((id, dir)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => n += 1,
            Err(e) => return Err(BackupError::io(&dir, e)),
        }
    }
}

/// Takes a backup of `db`, then verifies it: a set that does not verify
/// is an error, never a backup.
pub async fn create_verified(
    db: &Database,
    options: &CreateOptions,
    progress: &mut (dyn FnMut(Progress<'_>) + Send),
) -> Result<(PathBuf, Manifest), BackupError> {
    let (dir, manifest) = create(db, options, progress).await?;
    crate::verify::verified(&dir)?;
    Ok((dir, manifest))
}

/// Takes a backup of `db` into a new folder under `options.out`. On any
/// failure the folder is removed. A runner killed part-way leaves one
/// without a manifest, which never verifies and lists as incomplete until
/// the next backup into `options.out` removes it (`writing.rs`).
pub async fn create(
    db: &Database,
    options: &CreateOptions,
    progress: &mut (dyn FnMut(Progress<'_>) + Send),
) -> Result<(PathBuf, Manifest), BackupError> {
    let started = Instant::now();
    if options.snapshot.is_some() && db.dialect() != Dialect::Postgres {
        return Err(BackupError::Refused {
            message: format!(
                "only PostgreSQL backups can be taken in a snapshot another transaction exported, and {} is {}",
                db.url(),
                db.dialect().name()
            ),
        });
    }
    if options.pages {
        let why = if db.dialect() != Dialect::Sqlite {
            Some(format!("{} is {}", db.url(), db.dialect().name()))
        } else if options.tables.is_some() {
            Some("--tables picks tables, and pages hold them all".to_owned())
        } else if options.snapshot.is_some() {
            Some("it reads SQLite's own snapshot".to_owned())
        } else if waymark_db::sqlite_file(&options.url)?.is_none() {
            Some(format!("{} is in memory", db.url()))
        } else {
            None
        };
        if let Some(why) = why {
            return Err(BackupError::Refused {
                message: format!("--pages copies a SQLite database's file, and {why}; nothing was written"),
            });
        }
    }
    std::fs::create_dir_all(&options.out).map_err(|e| BackupError::io(&options.out, e))?;
    crate::writing::sweep(&options.out);
    let (id, dir) = new_set_dir(&options.out)?;
    let writing = match Writing::start(&options.out, &id) {
        Ok(writing) => writing,
        Err(e) => {
            drop(std::fs::remove_dir(&dir));
            return Err(e);
        }
    };
    let written = if options.pages {
        crate::pages::write_pages(db, options, (&id, &dir, started), progress).await
    } else {
        write_set(db, options, (&id, &dir, started), progress).await
    };
    match written {
        Ok(manifest) => {
            writing.done();
            Ok((dir, manifest))
        }
        Err(e) => {
            let removed = match std::fs::remove_dir_all(&dir) {
                Ok(()) => true,
                Err(cleanup) => {
                    tracing::warn!("removing the unfinished backup {}: {cleanup}", dir.display());
                    false
                }
            };
            // A folder that could not be removed keeps its lock file, so
            // that the next backup tries again.
            if removed {
                writing.done();
            }
            Err(BackupError::Unfinished {
                dir,
                removed,
                cause: Box::new(e),
            })
        }
    }
}

async fn write_set(
    db: &Database,
    options: &CreateOptions,
    (id, dir, started): (&str, &Path, Instant),
    progress: &mut (dyn FnMut(Progress<'_>) + Send),
) -> Result<Manifest, BackupError> {
    let dialect = db.dialect();
    let history = db.history().await?;
    let mut conn = match &options.snapshot {
        Some(snapshot) => db.join_snapshot(snapshot).await?,
        None => db.begin_snapshot().await?,
    };
    let server = conn.server_info().await?;
    let tables = select_tables(conn.tables().await?, options.tables.as_deref())?;
    // From here until the snapshot ends no table can be dropped or altered.
    conn.hold_tables(&tables).await?;
    let sequences = conn.sequences().await?;
    // The bar's total from the first second: the catalog's sizes, at the
    // pace of the sets already in the folder.
    let footprints = conn.footprints(&tables).await?;
    let data_bytes: u64 = footprints.iter().map(|f| f.data_bytes).sum();
    let (rates, _) = Rates::learned(&options.out, dialect)?;
    let total = Total::new(&footprints, rates);

    let snapshot = match dialect {
        Dialect::Postgres => Some(conn.export_snapshot().await?),
        _ => None,
    };

    // The schema, before and after the rows. PostgreSQL's comes from two
    // runs of pg_dump in the snapshot, read beside the rows: together they
    // take a tenth of a second or more, mostly pg_dump starting, which
    // would otherwise come before the first row.
    let pg_dumps = snapshot.as_ref().map(|snapshot| {
        let only = options.tables.as_ref().map(|_| tables.clone());
        [("pre-data", false), ("post-data", true)].map(|(section, after_rows)| {
            let (url, snapshot, only) = (options.url.clone(), snapshot.clone(), only.clone());
            let dump = tokio::task::spawn_blocking(move || pg_dump(&url, section, &snapshot, only.as_ref()));
            (dump, after_rows)
        })
    });
    // MySQL's and SQLite's schema is read on the connection, first.
    let schema = match &pg_dumps {
        Some(_) => Vec::new(),
        None => {
            let items = conn.schema().await?;
            match &options.tables {
                Some(_) => items
                    .into_iter()
                    .filter(|i| tables.iter().any(|t| t.name == i.table))
                    .collect(),
                None => items,
            }
        }
    };

    std::fs::create_dir(dir.join("data")).map_err(|e| BackupError::io(dir, e))?;
    // With two reads, a big table is read in two parts (runs of its pages,
    // or halves of its key) on two connections sharing the snapshot, so
    // the server formats rows on two cores.
    let mut helper = match &snapshot {
        Some(id) if options.reads() == 2 => Some(db.join_snapshot(id).await?),
        _ => None,
    };
    let mut files = Vec::new();
    let mut done_tables = Vec::new();
    let bytes_so_far = AtomicU64::new(0);
    let rows = async {
        for (index, (info, footprint)) in tables.iter().zip(&footprints).enumerate() {
            let prefix = format!("data/{:04}", index + 1);
            let before = bytes_so_far.load(Ordering::Relaxed);
            let (to, so_far) = ((dir, prefix.as_str(), options), (&bytes_so_far, &total));
            let stored = read_stored((&mut conn, helper.as_mut()), info, to, so_far, progress).await?;
            let (rows, writer) = match stored {
                Some(read) => read,
                None => {
                    // What the read as stored counted is read again.
                    bytes_so_far.store(before, Ordering::Relaxed);
                    read_keyed((&mut conn, helper.as_mut()), info, to, so_far, progress).await?
                }
            };
            let bytes = bytes_so_far.load(Ordering::Relaxed);
            total.finished(footprint, bytes);
            progress(Progress {
                table: &info.name,
                rows,
                bytes,
                total_bytes: Some(total.bytes(bytes)),
                expected: Some(total.expected),
            });
            let mut writer = writer;
            files.append(&mut writer.files);
            done_tables.push(Table {
                info: info.clone(),
                rows,
                sha256: table_digest(writer.chunks.iter().map(|c| c.raw_sha256.as_str())),
                rows_xxh3: Some(writer.sum.hex()),
                chunks: writer.chunks,
            });
        }
        Ok::<_, BackupError>(())
    };
    // A pg_dump that fails stops the rows at once, and the other way round.
    let schema = match pg_dumps {
        Some(dumps) => tokio::try_join!(rows, pg_schema(dumps))?.1,
        None => {
            rows.await?;
            schema
        }
    };
    let schema_text = serde_json::to_vec_pretty(&schema).expect("schema items serialise");
    files.insert(0, write_file(dir, "schema.json", &schema_text)?);
    waymark_db::crash_point("backup-schema-written");
    if let Some(second) = helper {
        second.rollback().await?;
    }
    // The snapshot ends here: everything above saw the same database.
    conn.rollback().await?;

    finish(
        db,
        (id, dir, started),
        (server, history),
        Contents {
            row_format: match dialect {
                Dialect::Postgres => "postgres-copy-text",
                _ => "sql-literals",
            },
            sequences,
            tables: done_tables,
            files,
            data_bytes,
            pages: None,
        },
    )
}

/// Where a table's chunks go: the set's folder, their names' start, and
/// their size and compression.
type Destination<'d> = (&'d Path, &'d str, &'d CreateOptions);

/// Reads a PostgreSQL table's rows as its heap pages hold them, when its
/// key is one [`KeyOrder`] can follow (`None` at once elsewhere): in two
/// runs of pages at once when it fills two chunks and a second connection
/// shares the snapshot. The rows and their chunks, if every key rose from
/// the first row to the last; `None`, with whatever was written removed,
/// if one did not.
async fn read_stored(
    (conn, second): (&mut Conn, Option<&mut Conn>),
    info: &TableInfo,
    to: Destination<'_>,
    so_far: (&AtomicU64, &Total),
    progress: &mut (dyn FnMut(Progress<'_>) + Send),
) -> Result<Option<(u64, ChunkWriter)>, BackupError> {
    if conn.dialect() != Dialect::Postgres || KeyOrder::of(info).is_none() {
        return Ok(None);
    }
    let (pages, page_bytes) = conn.heap_pages(info).await?;
    let big = pages.saturating_mul(page_bytes) >= 2 * to.2.chunk_bytes;
    let reads = match second.filter(|_| big) {
        Some(second) => {
            let middle = pages / 2;
            let first = Read::Stored(HeapPages {
                from: 0,
                upto: Some(middle),
            });
            let then = Read::Stored(HeapPages {
                from: middle,
                upto: None,
            });
            (first, Some((then, second)))
        }
        None => (Read::Stored(HeapPages::default()), None),
    };
    let (rows, writer, in_order) = read_in(conn, info, reads, to, so_far, progress).await?;
    if in_order {
        return Ok(Some((rows, writer)));
    }
    tracing::debug!(
        "{}: its heap pages do not hold its rows in key order; reading it by key",
        info.name
    );
    for file in &writer.files {
        let path = to.0.join(&file.path);
        std::fs::remove_file(&path).map_err(|e| BackupError::io(&path, e))?;
    }
    Ok(None)
}

/// Reads a table's rows in key order: in two halves of its key at once
/// when it fills two chunks, the planner's statistics give a middle, and
/// a second connection shares the snapshot.
async fn read_keyed(
    (conn, second): (&mut Conn, Option<&mut Conn>),
    info: &TableInfo,
    to: Destination<'_>,
    so_far: (&AtomicU64, &Total),
    progress: &mut (dyn FnMut(Progress<'_>) + Send),
) -> Result<(u64, ChunkWriter), BackupError> {
    let split = match &second {
        Some(_) => conn.split_key(info, 2 * to.2.chunk_bytes).await?,
        None => None,
    };
    let reads = match split.zip(second) {
        Some((mid, second)) => (
            Read::Keyed(KeyRange {
                after: None,
                upto: Some(mid.clone()),
            }),
            Some((
                Read::Keyed(KeyRange {
                    after: Some(mid),
                    upto: None,
                }),
                second,
            )),
        ),
        None => (Read::Keyed(KeyRange::default()), None),
    };
    let (rows, writer, _) = read_in(conn, info, reads, to, so_far, progress).await?;
    Ok((rows, writer))
}

/// Reads a table's rows into chunks: in one read, or in two at once, the
/// second on its own connection (sharing the snapshot), whose chunks come
/// after the first's. Also whether the rows came in key order, one read
/// after the other: always, for reads by key.
async fn read_in(
    conn: &mut Conn,
    info: &TableInfo,
    reads: (Read, Option<(Read, &mut Conn)>),
    (dir, prefix, options): Destination<'_>,
    (bytes_so_far, total): (&AtomicU64, &Total),
    progress: &mut (dyn FnMut(Progress<'_>) + Send),
) -> Result<(u64, ChunkWriter, bool), BackupError> {
    let rows_so_far = AtomicU64::new(0);
    let counters = (&rows_so_far, bytes_so_far);
    let dialect = conn.dialect();
    let writer = |read: &Read, prefix: String| {
        let mut writer = ChunkWriter::new(dir, prefix, options, dialect);
        writer.order = matches!(read, Read::Stored(_)).then(|| KeyOrder::of(info)).flatten();
        writer
    };
    match reads {
        (first, Some((then, second))) => {
            let (a, b) = (writer(&first, prefix.to_owned()), writer(&then, format!("{prefix}b")));
            // One half reports progress for both: the counters are shared.
            let mut quiet = |_: Progress<'_>| {};
            let (ra, rb) = tokio::join!(
                copy_rows(conn, info, first, a, counters, total, progress),
                copy_rows(second, info, then, b, counters, total, &mut quiet),
            );
            let ((rows_a, mut a), (rows_b, mut b)) = (ra?, rb?);
            let in_order = match (&a.order, &b.order) {
                (Some(x), Some(y)) => x.precedes(y),
                _ => true,
            };
            a.chunks.append(&mut b.chunks);
            a.files.append(&mut b.files);
            a.sum = a.sum.merge(b.sum);
            Ok((rows_a + rows_b, a, in_order))
        }
        (whole, None) => {
            let a = writer(&whole, prefix.to_owned());
            let (rows, a) = copy_rows(conn, info, whole, a, counters, total, progress).await?;
            let in_order = a.order.as_ref().is_none_or(KeyOrder::rising);
            Ok((rows, a, in_order))
        }
    }
}

/// What a set holds, for its manifest.
pub(crate) struct Contents {
    /// How its rows are written (`Manifest::row_format`).
    pub(crate) row_format: &'static str,
    pub(crate) sequences: Vec<SequenceValue>,
    pub(crate) tables: Vec<Table>,
    pub(crate) files: Vec<File>,
    /// The bytes the catalog gave the tables when it started.
    pub(crate) data_bytes: u64,
    pub(crate) pages: Option<Pages>,
}

/// Writes the set's manifest, its last step: under a temporary name,
/// synced, then renamed into place and the folder synced, so that a set
/// has a manifest only once everything it lists is on disk.
pub(crate) fn finish(
    db: &Database,
    (id, dir, started): (&str, &Path, Instant),
    (server, history): (ServerInfo, Vec<HistoryRow>),
    contents: Contents,
) -> Result<Manifest, BackupError> {
    let manifest = Manifest {
        format: FORMAT.to_owned(),
        id: id.to_owned(),
        created_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        database: Source {
            server,
            url: db.url().to_owned(),
        },
        history: history
            .into_iter()
            .filter(|r| matches!(r.state, waymark_db::State::Applied | waymark_db::State::Baseline))
            .map(|r| AppliedMigration {
                version: r.version,
                name: r.name,
                checksum: r.checksum,
            })
            .collect(),
        compression: "zstd".to_owned(),
        row_format: contents.row_format.to_owned(),
        sequences: contents.sequences,
        tables: contents.tables,
        files: contents.files,
        timing: Some(Timing {
            took_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
            data_bytes: contents.data_bytes,
        }),
        pages: contents.pages,
    };
    let temporary = dir.join(format!("{MANIFEST}.tmp"));
    let written = (|| {
        let mut file = FsFile::create(&temporary)?;
        file.write_all(manifest.to_text().as_bytes())?;
        file.sync_all()?;
        waymark_db::crash_point("backup-manifest-before-rename");
        std::fs::rename(&temporary, dir.join(MANIFEST))?;
        FsFile::open(dir)?.sync_all()
    })();
    waymark_db::crash_point("backup-manifest-written");
    written.map_err(|e| BackupError::io(&dir.join(MANIFEST), e))?;
    Ok(manifest)
}

/// The tables of `all` that `wanted` names (by `schema.table` or by bare
/// name), or all of them; naming one that does not exist is refused.
pub(crate) fn select_tables(mut all: Vec<TableInfo>, wanted: Option<&[String]>) -> Result<Vec<TableInfo>, BackupError> {
    let Some(wanted) = wanted else { return Ok(all) };
    let matches = |t: &TableInfo, w: &str| t.name == w || t.name.rsplit('.').next() == Some(w);
    if let Some(missing) = wanted.iter().find(|w| !all.iter().any(|t| matches(t, w))) {
        return Err(BackupError::Refused {
            message: format!("--tables: there is no table {missing:?}"),
        });
    }
    all.retain(|t| wanted.iter().any(|w| matches(t, w)));
    Ok(all)
}

fn write_file(dir: &Path, relative: &str, bytes: &[u8]) -> Result<File, BackupError> {
    let path = dir.join(relative);
    let written = (|| {
        let mut file = FsFile::create(&path)?;
        file.write_all(bytes)?;
        file.sync_all()
    })();
    written.map_err(|e| BackupError::io(&path, e))?;
    Ok(File {
        path: relative.to_owned(),
        size: bytes.len() as u64,
        sha256: hex::encode(Sha256::digest(bytes)),
    })
}

/// The schema items of pg_dump's runs, as each ends.
async fn pg_schema(
    dumps: [(tokio::task::JoinHandle<Result<String, BackupError>>, bool); 2],
) -> Result<Vec<SchemaItem>, BackupError> {
    let mut items = Vec::new();
    for (dump, after_rows) in dumps {
        let sql = dump
            .await
            .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))?;
        items.push(SchemaItem {
            table: String::new(),
            after_rows,
            sql,
        });
    }
    Ok(items)
}

/// One section of the PostgreSQL schema, from `pg_dump`, at `snapshot`.
fn pg_dump(url: &str, section: &str, snapshot: &str, tables: Option<&Vec<TableInfo>>) -> Result<String, BackupError> {
    let mut cmd = std::process::Command::new("pg_dump");
    cmd.args([
        "--schema-only",
        "--no-owner",
        "--no-privileges",
        "--section",
        section,
        "--snapshot",
        snapshot,
    ]);
    for t in tables.into_iter().flatten() {
        cmd.arg("--table").arg(Dialect::Postgres.quote_table(&t.name));
    }
    // The password goes by environment, not on a command line others can
    // read.
    let (url, password) = split_password(url);
    if let Some(password) = password {
        cmd.env("PGPASSWORD", password);
    }
    let out = cmd.arg("--dbname").arg(url).output().map_err(|e| BackupError::Tool {
        tool: "pg_dump".to_owned(),
        message: format!("{e} (waymark reads the PostgreSQL schema with pg_dump, which must be on PATH)"),
    })?;
    if !out.status.success() {
        return Err(BackupError::Tool {
            tool: "pg_dump".to_owned(),
            message: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        });
    }
    let text = String::from_utf8(out.stdout).map_err(|_| BackupError::Tool {
        tool: "pg_dump".to_owned(),
        message: "its output is not UTF-8".to_owned(),
    })?;
    // psql meta-commands (`\restrict`, which recent pg_dump releases write
    // around a dump) are for psql; waymark runs the SQL itself.
    Ok(text
        .lines()
        .filter(|line| !line.starts_with('\\'))
        .collect::<Vec<_>>()
        .join("\n"))
}

/// `scheme://user:password@host/db` as the URL without the password, and
/// the password (percent-decoding aside, which libpq does not need here).
fn split_password(url: &str) -> (String, Option<String>) {
    let Some((scheme, rest)) = url.split_once("://") else {
        return (url.to_owned(), None);
    };
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let Some(at) = rest[..authority_end].rfind('@') else {
        return (url.to_owned(), None);
    };
    match rest[..at].split_once(':') {
        Some((user, password)) => (
            format!("{scheme}://{user}@{}", &rest[at + 1..]),
            Some(password.to_owned()),
        ),
        None => (url.to_owned(), None),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use waymark_db::{ConnectOptions, Database};

    use super::*;

    /// One read or two, as asked (a number out of range is brought into
    /// it); unasked, two only where the machine has cores to spare.
    #[test]
    fn reads_are_as_asked_or_follow_the_cores() {
        let reads = |jobs| {
            CreateOptions {
                out: PathBuf::new(),
                tables: None,
                url: String::new(),
                chunk_bytes: 1 << 20,
                level: 3,
                snapshot: None,
                pages: false,
                jobs,
            }
            .reads()
        };
        assert_eq!([0, 1, 2, 9].map(|j| reads(Some(j))), [1, 1, 2, 2]);
        let cores = std::thread::available_parallelism().unwrap().get();
        assert_eq!(reads(None), if cores > 2 { 2 } else { 1 });
    }

    #[tokio::test]
    async fn a_snapshot_from_elsewhere_is_refused_outside_postgresql_and_nothing_is_written() {
        let dir = std::env::temp_dir().join(format!("waymark-backup-snapshot-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let url = format!("sqlite://{}?mode=rwc", dir.join("app.db").display());
        let db = Database::connect(&ConnectOptions {
            url: url.clone(),
            init_sql: Vec::new(),
            history: Default::default(),
            lock_timeout: Duration::from_secs(5),
            lock_wait: None,
            connect_timeout: None,
            create: true,
        })
        .await
        .unwrap();
        let options = CreateOptions {
            out: dir.join("backups"),
            tables: None,
            url,
            chunk_bytes: 1 << 20,
            level: 3,
            snapshot: Some("00000003-00000002-1".into()),
            pages: false,
            jobs: None,
        };
        let err = create(&db, &options, &mut |_| {}).await.unwrap_err();
        db.close().await;
        let message = err.to_string();
        assert!(
            message.starts_with("only PostgreSQL backups can be taken in a snapshot another transaction exported")
                && message.ends_with("app.db?mode=rwc is sqlite"),
            "{message}"
        );
        assert!(!options.out.exists(), "no backup folder was made");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
