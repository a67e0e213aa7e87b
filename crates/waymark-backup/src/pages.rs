//! A copy of a SQLite file's pages (`backup create --pages`) and its
//! restore: one compressed file of the database as it is on disk, its
//! SHA-256 before and after compression in the manifest. It goes at the
//! pace of `sqlite3 .backup`, which a backup of rows cannot, and proves
//! the file, not each row: a restore checks every byte against the digest
//! and then runs SQLite's `PRAGMA integrity_check`.
//!
//! A database in a rollback-journal mode is read from its own file while a
//! read transaction holds SHARED, under which no writer can commit. A WAL
//! database's file alone is not a snapshot (committed pages wait in the
//! `-wal` until a checkpoint), so SQLite copies it with `VACUUM INTO`, into
//! the set's folder, and that copy is read instead.

use std::fs::File as FsFile;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc::sync_channel;
use std::time::Instant;

use sha2::{Digest, Sha256};
use waymark_db::{ConnectOptions, Database, Dialect, sqlite_file};

use crate::create::{Contents, CreateOptions, Hashing, Progress, finish};
use crate::error::BackupError;
use crate::manifest::{File, Manifest, Pages};
use crate::restore::{RestoreReport, Verify};
use crate::verify;

/// The compressed pages' file in a set.
const PAGES_FILE: &str = "pages.zst";

/// Bytes read, hashed and compressed at a time.
const PIECE: usize = 1 << 20;

/// Every SQLite database file starts with these bytes.
const MAGIC: &[u8; 16] = b"SQLite format 3\0";

/// `row_format` of a set of pages.
pub(crate) const ROW_FORMAT: &str = "sqlite-pages";

/// Writes the set of `db`'s pages into `dir`, which exists and is empty.
pub(crate) async fn write_pages(
    db: &Database,
    options: &CreateOptions,
    (id, dir, started): (&str, &Path, Instant),
    progress: &mut (dyn FnMut(Progress<'_>) + Send),
) -> Result<Manifest, BackupError> {
    let history = db.history().await?;
    let mut conn = db.begin_snapshot().await?;
    let server = conn.server_info().await?;
    let source = conn.page_source().await?;
    if source.path.as_os_str().is_empty() {
        return Err(BackupError::Refused {
            message: format!("--pages copies a database file, and {} is in memory", db.url()),
        });
    }
    let name = format!("{}'s pages", source.path.display());
    let copied = if source.file_is_snapshot() {
        // The file is opened here and closed only once the transaction has
        // ended: closing any descriptor of a file drops every POSIX lock
        // the process holds on it, and SQLite's SHARED lock is one.
        let opened = FsFile::open(&source.path).map_err(|e| BackupError::io(&source.path, e))?;
        let copied = copy_pages(&opened, &source.path, dir, options.level, &name, progress);
        conn.rollback().await?;
        drop(opened);
        copied?
    } else {
        conn.rollback().await?;
        let copy = dir.join("pages.vacuum");
        db.vacuum_into(&copy).await?;
        waymark_db::crash_point("pages-vacuumed");
        let opened = FsFile::open(&copy).map_err(|e| BackupError::io(&copy, e))?;
        let copied = copy_pages(&opened, &copy, dir, options.level, &name, progress)?;
        drop(opened);
        std::fs::remove_file(&copy).map_err(|e| BackupError::io(&copy, e))?;
        copied
    };
    let page_size = source.page_size.max(1);
    let pages = Pages {
        file: PAGES_FILE.to_owned(),
        page_size,
        pages: copied.raw_bytes / page_size,
        raw_bytes: copied.raw_bytes,
        raw_sha256: copied.raw_sha256,
        copied_by: if source.file_is_snapshot() {
            "file"
        } else {
            "vacuum-into"
        }
        .to_owned(),
    };
    finish(
        db,
        (id, dir, started),
        (server, history),
        Contents {
            row_format: ROW_FORMAT,
            sequences: Vec::new(),
            tables: Vec::new(),
            files: vec![copied.file],
            data_bytes: pages.raw_bytes,
            pages: Some(pages),
        },
    )
}

/// What [`copy_pages`] wrote.
struct Copied {
    /// Bytes of pages read.
    raw_bytes: u64,
    /// Their SHA-256.
    raw_sha256: String,
    /// The compressed file, as the manifest lists it.
    file: File,
}

/// Reads `source` (named `path` in messages) to its end into the set's
/// compressed pages file: SHA-256 on one thread, zstd on this one.
fn copy_pages(
    mut source: &FsFile,
    path: &Path,
    dir: &Path,
    level: i32,
    name: &str,
    progress: &mut (dyn FnMut(Progress<'_>) + Send),
) -> Result<Copied, BackupError> {
    let total = source.metadata().map_err(|e| BackupError::io(path, e))?.len();
    let out = dir.join(PAGES_FILE);
    let file = FsFile::create(&out).map_err(|e| BackupError::io(&out, e))?;
    let hashing = Hashing {
        inner: file,
        hash: Sha256::new(),
        bytes: 0,
    };
    let mut encoder = zstd::Encoder::new(hashing, level).map_err(|e| BackupError::io(&out, e))?;
    let (send, receive) = sync_channel::<Arc<Vec<u8>>>(4);
    let (raw_sha256, read) = std::thread::scope(|scope| {
        let hasher = scope.spawn(move || {
            let mut hash = Sha256::new();
            for piece in receive {
                hash.update(&piece[..]);
            }
            hex::encode(hash.finalize())
        });
        let read = (|| -> Result<u64, BackupError> {
            let mut bytes = 0u64;
            loop {
                let mut piece = vec![0u8; PIECE];
                let n = read_full(&mut source, &mut piece).map_err(|e| BackupError::io(path, e))?;
                if n == 0 {
                    break;
                }
                piece.truncate(n);
                if bytes == 0 && n >= MAGIC.len() && &piece[..MAGIC.len()] != MAGIC {
                    return Err(BackupError::Refused {
                        message: format!("{}: not a SQLite database file", path.display()),
                    });
                }
                let piece = Arc::new(piece);
                // The hasher ends only when this sender does.
                send.send(Arc::clone(&piece))
                    .expect("the hasher runs until the pieces end");
                encoder.write_all(&piece).map_err(|e| BackupError::io(&out, e))?;
                bytes += n as u64;
                progress(Progress {
                    table: name,
                    rows: 0,
                    bytes,
                    total_bytes: Some(total.max(bytes)),
                    expected: None,
                });
            }
            Ok(bytes)
        })();
        drop(send);
        (hasher.join().expect("hashing does not panic"), read)
    });
    let raw_bytes = read?;
    let hashing = encoder.finish().map_err(|e| BackupError::io(&out, e))?;
    hashing.inner.sync_all().map_err(|e| BackupError::io(&out, e))?;
    Ok(Copied {
        raw_bytes,
        raw_sha256,
        file: File {
            path: PAGES_FILE.to_owned(),
            size: hashing.bytes,
            sha256: hex::encode(hashing.hash.finalize()),
        },
    })
}

/// Reads until `buf` is full or the input ends; returns how much it read.
fn read_full(source: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match source.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// Decodes the set's pages, calling `each` with every piece in order, and
/// checks them against the manifest: their size, their SHA-256 and the
/// file's first bytes. Returns what does not match, naming the file.
pub(crate) fn decode_pages(
    dir: &Path,
    pages: &Pages,
    each: &mut dyn FnMut(&[u8], u64) -> std::io::Result<()>,
) -> Result<Vec<String>, std::io::Error> {
    let file = FsFile::open(dir.join(&pages.file))?;
    let mut decoder = zstd::Decoder::new(file)?;
    let mut hash = Sha256::new();
    let mut bytes = 0u64;
    let mut head = Vec::new();
    let mut piece = vec![0u8; PIECE];
    loop {
        let n = read_full(&mut decoder, &mut piece)?;
        if n == 0 {
            break;
        }
        if head.len() < MAGIC.len() {
            head.extend_from_slice(&piece[..n.min(MAGIC.len() - head.len())]);
        }
        hash.update(&piece[..n]);
        bytes += n as u64;
        each(&piece[..n], bytes)?;
    }
    let sha = hex::encode(hash.finalize());
    let mut problems = Vec::new();
    if bytes != pages.raw_bytes || sha != pages.raw_sha256 {
        problems.push(format!(
            "{}: its pages decode to {bytes} bytes with SHA-256 {sha}, but the manifest says {} bytes with {}",
            pages.file, pages.raw_bytes, pages.raw_sha256
        ));
    } else if bytes > 0 && head != MAGIC {
        problems.push(format!("{}: its pages are not a SQLite database file", pages.file));
    }
    Ok(problems)
}

/// Restores the pages of the set in `dir` as the SQLite file `target`
/// names, which must not exist or be empty: written beside it under a
/// temporary name, checked byte for byte and by SQLite, then given the
/// target's name. On any failure the target is as it was.
pub(crate) async fn restore_pages(
    dir: &Path,
    manifest: &Manifest,
    target: &ConnectOptions,
    verify: Verify,
    progress: &mut (dyn FnMut(Progress<'_>) + Send),
) -> Result<RestoreReport, BackupError> {
    let started = Instant::now();
    let pages = manifest.pages.as_ref().expect("a set of pages");
    verify::verified(dir)?;
    let url = waymark_db::redact(&target.url);
    let refused = |message: String| BackupError::Refused { message };
    let dialect = Dialect::of_url(&target.url);
    if dialect != Some(Dialect::Sqlite) {
        return Err(refused(format!(
            "{} is a copy of a SQLite file's pages, which restores only into SQLite, and {url} is {}; nothing was restored",
            dir.display(),
            dialect.map_or("not a database URL waymark knows", |d| d.name()),
        )));
    }
    let path = sqlite_file(&target.url)?.ok_or_else(|| {
        refused(format!(
            "{url} is in memory: a copy of pages restores into a file; nothing was restored"
        ))
    })?;
    let existing = match std::fs::metadata(&path) {
        Ok(meta) if meta.len() > 0 => {
            return Err(refused(format!(
                "{}: restore needs a new (or empty) file, and it holds {} bytes; nothing was restored",
                path.display(),
                meta.len()
            )));
        }
        Ok(_) => true,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
        Err(e) => return Err(BackupError::io(&path, e)),
    };
    // SQLite would take a journal left beside the file for one a crash
    // left, and play it into the restored pages.
    for suffix in ["-journal", "-wal"] {
        let leftover = with_suffix(&path, suffix);
        if leftover.exists() {
            return Err(refused(format!(
                "{}: a leftover of another database lies beside the target, and SQLite would apply it to the restored file; remove it first; nothing was restored",
                leftover.display()
            )));
        }
    }
    let temporary = with_suffix(&path, ".waymark-restore");
    let name = format!("{}'s pages", path.display());
    // Made here, so that a failure removes only a file this restore made;
    // locked while this restore lives, so that one killed part-way is
    // told from one still running.
    let (out, _held) = claim_temporary(&temporary)?;
    let quick = verify == Verify::PagesQuick;
    let result = write_and_check(dir, pages, (out, &temporary, &name), (target, quick), progress).await;
    let placed = result.and_then(|(tables, rows)| {
        waymark_db::crash_point("pages-restore-checked");
        place(&temporary, &path, existing).map_err(|e| BackupError::io(&path, e))?;
        waymark_db::crash_point("pages-restore-placed");
        Ok((tables, rows))
    });
    let (tables, rows) = match placed {
        Ok(found) => found,
        Err(e) => {
            for suffix in ["", "-journal", "-wal", "-shm"] {
                let _ = std::fs::remove_file(with_suffix(&temporary, suffix));
            }
            return Err(e);
        }
    };
    Ok(RestoreReport {
        id: manifest.id.clone(),
        tables,
        rows,
        duration: started.elapsed(),
        verify,
    })
}

/// Makes `temporary` for this restore, locked (`flock`) for as long as the
/// second file returned is open. A file of that name whose lock is free
/// was left by a restore that stopped, and is removed first; one whose
/// lock is held belongs to a restore still running, and is refused.
fn claim_temporary(temporary: &Path) -> Result<(FsFile, FsFile), BackupError> {
    // Locked under a name of its own, then linked into place, which fails
    // if the name is taken: no other restore ever sees it unlocked.
    let own = with_suffix(temporary, &format!(".{}", std::process::id()));
    let made = (|| {
        let out = FsFile::options().write(true).create_new(true).open(&own)?;
        out.lock()?;
        let held = out.try_clone()?;
        Ok::<_, std::io::Error>((out, held))
    })();
    let (out, held) = made.map_err(|e| BackupError::io(&own, e))?;
    let linked = loop {
        match std::fs::hard_link(&own, temporary) {
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && left_by_a_stopped_restore(temporary) => {
                tracing::warn!("removed {}, left by a restore that stopped", temporary.display());
            }
            other => break other,
        }
    };
    let _ = std::fs::remove_file(&own);
    linked.map_err(|e| match e.kind() {
        std::io::ErrorKind::AlreadyExists => BackupError::Refused {
            message: format!(
                "{}: another restore into this file is running; nothing was restored",
                temporary.display()
            ),
        },
        _ => BackupError::io(temporary, e),
    })?;
    Ok((out, held))
}

/// Whether `temporary` is unlocked, and so left by a restore that
/// stopped; if so it has been removed, with what SQLite made beside it.
fn left_by_a_stopped_restore(temporary: &Path) -> bool {
    let Some(_held) = crate::writing::unheld(temporary) else {
        return false;
    };
    for suffix in ["-journal", "-wal", "-shm"] {
        let _ = std::fs::remove_file(with_suffix(temporary, suffix));
    }
    std::fs::remove_file(temporary).is_ok()
}

/// Writes the pages to `temporary`, checking them as they go, then has
/// SQLite check the file (`quick`ly, or in full) and count its tables and
/// rows.
async fn write_and_check(
    dir: &Path,
    pages: &Pages,
    (mut out, temporary, name): (FsFile, &Path, &str),
    (target, quick): (&ConnectOptions, bool),
    progress: &mut (dyn FnMut(Progress<'_>) + Send),
) -> Result<(usize, u64), BackupError> {
    let mut write_failed = None;
    let problems = decode_pages(dir, pages, &mut |piece, bytes| {
        out.write_all(piece)
            .inspect_err(|e| write_failed = Some(e.to_string()))?;
        progress(Progress {
            table: name,
            rows: 0,
            bytes,
            total_bytes: Some(pages.raw_bytes.max(bytes)),
            expected: None,
        });
        Ok(())
    });
    if let Some(message) = write_failed {
        return Err(BackupError::Io {
            path: temporary.to_owned(),
            message,
        });
    }
    let problems = problems.map_err(|e| BackupError::io(&dir.join(&pages.file), e))?;
    if !problems.is_empty() {
        return Err(BackupError::DoesNotVerify {
            dir: dir.to_owned(),
            problems,
        });
    }
    out.sync_all().map_err(|e| BackupError::io(temporary, e))?;
    drop(out);

    let db = Database::connect(&ConnectOptions {
        url: format!("sqlite://{}?mode=rw", escape(temporary)),
        ..target.clone()
    })
    .await?;
    let checked = match db.connection().await {
        Ok(mut conn) => conn.check_file(quick).await,
        Err(e) => Err(e),
    };
    db.close().await;
    let checked = checked?;
    if !checked.problems.is_empty() {
        return Err(BackupError::DoesNotVerify {
            dir: dir.to_owned(),
            problems: vec![format!(
                "{}: SQLite's {} of its pages says: {}",
                pages.file,
                if quick { "quick check" } else { "integrity check" },
                checked.problems.join("; ")
            )],
        });
    }
    Ok((checked.tables, checked.rows))
}

/// Gives the checked file the target's name: a rename over an empty file
/// that was there, or else a link that fails if a file has appeared there
/// since it was checked, so nothing is ever replaced that was not empty.
fn place(temporary: &Path, path: &Path, existing: bool) -> std::io::Result<()> {
    if existing {
        std::fs::rename(temporary, path)?;
    } else {
        std::fs::hard_link(temporary, path)?;
        std::fs::remove_file(temporary)?;
    }
    let folder = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    };
    FsFile::open(folder)?.sync_all()
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// A path as the database part of a `sqlite://` URL, which sqlx
/// percent-decodes.
fn escape(path: &Path) -> String {
    path.to_string_lossy()
        .replace('%', "%25")
        .replace('?', "%3F")
        .replace('#', "%23")
}
