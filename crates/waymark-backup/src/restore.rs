//! Restoring a backup set into an empty database: verified first, schema,
//! then the tables' rows in parallel, then sequences and what is better made
//! after the rows (indexes, constraints, triggers), then every table's
//! rows digested again and compared with the manifest.

use std::collections::VecDeque;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use waymark_db::{Conn, Database, Dialect, SchemaItem};

use crate::create::Progress;
use crate::error::BackupError;
use crate::manifest::Manifest;
use crate::verify::{decode, verify};

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
}

/// How many tables load at once.
const WORKERS: usize = 2;

/// Restores the set in `dir` into `db`, which must be empty.
pub async fn restore(
    dir: &Path,
    db: &Database,
    progress: &mut (dyn FnMut(Progress<'_>) + Send),
) -> Result<RestoreReport, BackupError> {
    let started = Instant::now();
    let (manifest, report) = verify(dir, false)?;
    if !report.problems.is_empty() {
        return Err(BackupError::DoesNotVerify {
            dir: dir.to_owned(),
            problems: report.problems,
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
    let schema_path = dir.join("schema.json");
    let schema: Vec<SchemaItem> = serde_json::from_slice(
        &std::fs::read(&schema_path).map_err(|e| BackupError::io(&schema_path, e))?,
    )
    .map_err(|e| BackupError::Manifest {
        path: schema_path.clone(),
        message: format!("it does not parse: {e}"),
    })?;
    // Tables are created in name order, before the tables their foreign
    // keys name, and loaded in parallel.
    if dialect == Dialect::Mysql {
        conn.execute("SET FOREIGN_KEY_CHECKS = 0").await?;
    }
    for item in schema.iter().filter(|i| !i.after_rows) {
        conn.execute(&item.sql).await?;
    }
    // The workers need the pool's connections (SQLite has one).
    drop(conn);

    let manifest = Arc::new(manifest);
    let queue = Arc::new(Mutex::new((0..manifest.tables.len()).collect::<VecDeque<_>>()));
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(usize, u64, u64)>();
    let mut workers = tokio::task::JoinSet::new();
    let parallel = if dialect == Dialect::Sqlite { 1 } else { WORKERS };
    for _ in 0..parallel.min(manifest.tables.len()) {
        let (db, manifest, queue, tx, dir) = (db.clone(), manifest.clone(), queue.clone(), tx.clone(), dir.to_owned());
        workers.spawn(async move {
            let mut conn = db.restore_connection().await?;
            match dialect {
                Dialect::Mysql => conn.execute("SET FOREIGN_KEY_CHECKS = 0, UNIQUE_CHECKS = 0").await?,
                Dialect::Sqlite => conn.execute("PRAGMA foreign_keys = OFF").await?,
                Dialect::Postgres => 0,
            };
            loop {
                let Some(index) = queue.lock().unwrap().pop_front() else {
                    break;
                };
                load_table(&mut conn, &dir, &manifest, index, &tx).await?;
            }
            match dialect {
                Dialect::Mysql => conn.execute("SET FOREIGN_KEY_CHECKS = 1, UNIQUE_CHECKS = 1").await?,
                Dialect::Sqlite => conn.execute("PRAGMA foreign_keys = ON").await?,
                Dialect::Postgres => 0,
            };
            Ok::<(), BackupError>(())
        });
    }
    drop(tx);
    let total: u64 = manifest
        .tables
        .iter()
        .flat_map(|t| &t.chunks)
        .map(|c| c.raw_bytes)
        .sum();
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

    let mut conn = db.restore_connection().await?;
    conn.set_sequences(&manifest.sequences).await?;
    for item in schema.iter().filter(|i| i.after_rows) {
        conn.execute(&item.sql).await?;
    }
    if dialect == Dialect::Mysql {
        conn.execute("SET FOREIGN_KEY_CHECKS = 1").await?;
    }
    let mismatches = check_restored(&mut conn, &manifest).await?;
    if !mismatches.is_empty() {
        return Err(BackupError::Mismatch { tables: mismatches });
    }
    Ok(RestoreReport {
        id: manifest.id.clone(),
        tables: manifest.tables.len(),
        rows: manifest.tables.iter().map(|t| t.rows).sum(),
        duration: started.elapsed(),
    })
}

async fn load_table(
    conn: &mut Conn,
    dir: &Path,
    manifest: &Manifest,
    index: usize,
    progress: &tokio::sync::mpsc::UnboundedSender<(usize, u64, u64)>,
) -> Result<(), BackupError> {
    let table = &manifest.tables[index];
    let mut hash = Sha256::new();
    for chunk in &table.chunks {
        let path = dir.join(&chunk.file);
        let raw = decode(&path).map_err(|e| BackupError::io(&path, e))?;
        if hex::encode(Sha256::digest(&raw)) != chunk.raw_sha256 {
            return Err(BackupError::DoesNotVerify {
                dir: dir.to_owned(),
                problems: vec![format!("{}: its rows do not match the manifest", chunk.file)],
            });
        }
        hash.update(&raw);
        conn.load_rows(&table.info, &raw).await?;
        let _ = progress.send((index, chunk.rows, chunk.raw_bytes));
    }
    if hex::encode(hash.finalize()) != table.sha256 {
        return Err(BackupError::DoesNotVerify {
            dir: dir.to_owned(),
            problems: vec![format!("table {}: its chunks do not match its digest", table.info.name)],
        });
    }
    Ok(())
}

/// Every restored table's rows, digested as the backup digested them.
async fn check_restored(conn: &mut Conn, manifest: &Manifest) -> Result<Vec<String>, BackupError> {
    let mut mismatches = Vec::new();
    for table in &manifest.tables {
        let (rows, sha) = conn.table_digest(&table.info).await?;
        if rows != table.rows || sha != table.sha256 {
            mismatches.push(format!(
                "{}: {rows} rows with SHA-256 {sha}, the backup has {} rows with {}",
                table.info.name, table.rows, table.sha256
            ));
        }
    }
    Ok(mismatches)
}
