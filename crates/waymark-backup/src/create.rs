//! Taking a backup: every table's rows from one consistent snapshot, in
//! primary-key order, into zstd-compressed chunks, each file hashed as it
//! is written; the manifest last, under a temporary name renamed into
//! place, so that a backup killed half-way never has one.

use std::fs::File as FsFile;
use std::io::Write;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use waymark_db::{Database, Dialect, SchemaItem, TableInfo};

use crate::error::BackupError;
use crate::manifest::{AppliedMigration, Chunk, FORMAT, File, MANIFEST, Manifest, Source, Table};

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
    /// Bytes expected in all, when known.
    pub total_bytes: Option<u64>,
}

/// A writer that hashes and counts what passes through it.
struct Hashing<W> {
    inner: W,
    hash: Sha256,
    bytes: u64,
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

/// Writes one table's rows as chunks.
struct ChunkWriter<'a> {
    dir: &'a Path,
    prefix: String,
    limit: u64,
    level: i32,
    open: Option<OpenChunk>,
    chunks: Vec<Chunk>,
    files: Vec<File>,
    table: Sha256,
}

struct OpenChunk {
    relative: String,
    encoder: zstd::Encoder<'static, Hashing<FsFile>>,
    raw: Sha256,
    raw_bytes: u64,
    rows: u64,
}

impl ChunkWriter<'_> {
    /// Takes whole rows; starts a new chunk once the current one is full.
    fn write(&mut self, piece: &[u8], rows: u64) -> std::io::Result<()> {
        if self.open.is_none() {
            let relative = format!("{}-{:05}.zst", self.prefix, self.chunks.len() + 1);
            let file = FsFile::create(self.dir.join(&relative))?;
            let hashing = Hashing {
                inner: file,
                hash: Sha256::new(),
                bytes: 0,
            };
            self.open = Some(OpenChunk {
                relative,
                encoder: zstd::Encoder::new(hashing, self.level)?,
                raw: Sha256::new(),
                raw_bytes: 0,
                rows: 0,
            });
        }
        let open = self.open.as_mut().expect("opened above");
        open.encoder.write_all(piece)?;
        open.raw.update(piece);
        open.raw_bytes += piece.len() as u64;
        open.rows += rows;
        self.table.update(piece);
        if open.raw_bytes >= self.limit {
            self.close()?;
        }
        Ok(())
    }

    /// The chunk being written (or about to be), for messages.
    fn current(&self) -> PathBuf {
        match &self.open {
            Some(open) => self.dir.join(&open.relative),
            None => self
                .dir
                .join(format!("{}-{:05}.zst", self.prefix, self.chunks.len() + 1)),
        }
    }

    fn close(&mut self) -> std::io::Result<()> {
        let Some(open) = self.open.take() else { return Ok(()) };
        let hashing = open.encoder.finish()?;
        hashing.inner.sync_all()?;
        self.files.push(File {
            path: open.relative.clone(),
            size: hashing.bytes,
            sha256: hex::encode(hashing.hash.finalize()),
        });
        self.chunks.push(Chunk {
            file: open.relative,
            rows: open.rows,
            raw_bytes: open.raw_bytes,
            raw_sha256: hex::encode(open.raw.finalize()),
        });
        Ok(())
    }
}

/// A new set's id: the time, to the second, in UTC; a suffix if two sets
/// are taken within a second.
fn new_id(out: &Path) -> String {
    let base = chrono::Utc::now().format("%Y%m%dT%H%M%SZ").to_string();
    let mut id = base.clone();
    let mut n = 1;
    while out.join(&id).exists() {
        n += 1;
        id = format!("{base}-{n}");
    }
    id
}

/// Takes a backup of `db` into a new folder under `options.out`. On any
/// failure the folder is removed; a runner killed part-way leaves one
/// without a manifest, which never verifies and lists as incomplete.
pub async fn create(
    db: &Database,
    options: &CreateOptions,
    progress: &mut (dyn FnMut(Progress<'_>) + Send),
) -> Result<(PathBuf, Manifest), BackupError> {
    std::fs::create_dir_all(&options.out).map_err(|e| BackupError::io(&options.out, e))?;
    let id = new_id(&options.out);
    let dir = options.out.join(&id);
    std::fs::create_dir(&dir).map_err(|e| BackupError::io(&dir, e))?;
    match write_set(db, options, &id, &dir, progress).await {
        Ok(manifest) => Ok((dir, manifest)),
        Err(e) => {
            let removed = match std::fs::remove_dir_all(&dir) {
                Ok(()) => true,
                Err(cleanup) => {
                    tracing::warn!("removing the unfinished backup {}: {cleanup}", dir.display());
                    false
                }
            };
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
    id: &str,
    dir: &Path,
    progress: &mut (dyn FnMut(Progress<'_>) + Send),
) -> Result<Manifest, BackupError> {
    let dialect = db.dialect();
    let history = db.history().await?;
    let mut conn = db.begin_snapshot().await?;
    let server = conn.server_info().await?;
    let mut tables = conn.tables().await?;
    if let Some(wanted) = &options.tables {
        let matches = |t: &TableInfo, w: &str| t.name == w || t.name.rsplit('.').next() == Some(w);
        if let Some(missing) = wanted.iter().find(|w| !tables.iter().any(|t| matches(t, w))) {
            return Err(BackupError::Refused {
                message: format!("--tables: there is no table {missing:?}"),
            });
        }
        tables.retain(|t| wanted.iter().any(|w| matches(t, w)));
    }
    // From here until the snapshot ends no table can be dropped or altered.
    conn.hold_tables(&tables).await?;
    let sequences = conn.sequences().await?;

    // The schema, before and after the rows.
    let schema: Vec<SchemaItem> = match dialect {
        Dialect::Postgres => {
            let snapshot = conn.export_snapshot().await?;
            let mut items = Vec::new();
            for (section, after_rows) in [("pre-data", false), ("post-data", true)] {
                items.push(SchemaItem {
                    table: String::new(),
                    after_rows,
                    sql: pg_dump(
                        &options.url,
                        section,
                        &snapshot,
                        options.tables.as_ref().map(|_| &tables),
                    )?,
                });
            }
            items
        }
        _ => {
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
    let mut files = Vec::new();
    let schema_text = serde_json::to_vec_pretty(&schema).expect("schema items serialise");
    files.push(write_file(dir, "schema.json", &schema_text)?);

    std::fs::create_dir(dir.join("data")).map_err(|e| BackupError::io(dir, e))?;
    let mut done_tables = Vec::new();
    let mut bytes_so_far = 0u64;
    for (index, info) in tables.into_iter().enumerate() {
        let mut writer = ChunkWriter {
            dir,
            prefix: format!("data/{:04}", index + 1),
            limit: options.chunk_bytes,
            level: options.level,
            open: None,
            chunks: Vec::new(),
            files: Vec::new(),
            table: Sha256::new(),
        };
        let mut rows_so_far = 0u64;
        let mut failed: Option<(PathBuf, std::io::Error)> = None;
        let name = info.name.clone();
        let rows = conn
            .stream_rows(&info, &mut |piece| {
                let rows = match dialect {
                    Dialect::Postgres => piece.iter().filter(|b| **b == b'\n').count() as u64,
                    _ => 1,
                };
                rows_so_far += rows;
                bytes_so_far += piece.len() as u64;
                if rows_so_far % 10_000 < rows {
                    progress(Progress {
                        table: &name,
                        rows: rows_so_far,
                        bytes: bytes_so_far,
                        total_bytes: None,
                    });
                }
                writer.write(piece, rows).inspect_err(|e| {
                    failed = Some((writer.current(), std::io::Error::new(e.kind(), e.to_string())));
                })
            })
            .await
            .map_err(|e| match failed.take() {
                Some((path, io)) => BackupError::io(&path, io),
                None => BackupError::Db(e),
            })?;
        let last = writer.current();
        writer.close().map_err(|e| BackupError::io(&last, e))?;
        progress(Progress {
            table: &name,
            rows,
            bytes: bytes_so_far,
            total_bytes: None,
        });
        files.append(&mut writer.files);
        done_tables.push(Table {
            info,
            rows,
            sha256: hex::encode(writer.table.finalize()),
            chunks: writer.chunks,
        });
    }
    // The snapshot ends here: everything above saw the same database.
    conn.rollback().await?;

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
        row_format: match dialect {
            Dialect::Postgres => "postgres-copy-text",
            _ => "sql-literals",
        }
        .to_owned(),
        sequences,
        tables: done_tables,
        files,
    };
    let temporary = dir.join(format!("{MANIFEST}.tmp"));
    let written = (|| {
        let mut file = FsFile::create(&temporary)?;
        file.write_all(manifest.to_text().as_bytes())?;
        file.sync_all()?;
        std::fs::rename(&temporary, dir.join(MANIFEST))?;
        FsFile::open(dir)?.sync_all()
    })();
    written.map_err(|e| BackupError::io(&dir.join(MANIFEST), e))?;
    Ok(manifest)
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
        cmd.arg("--table")
            .arg(waymark_db::quote_table(Dialect::Postgres, &t.name));
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
