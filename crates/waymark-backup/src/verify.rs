//! Checking a backup set against its manifest: every file's size and
//! SHA-256, files missing and files extra, the manifest's own digest and,
//! deep, every chunk decoded and every table's rows digested again (or a
//! copy of pages decoded and digested again).

use std::io::Read;
use std::path::Path;

use sha2::{Digest, Sha256};
use waymark_db::Dialect;

use crate::error::BackupError;
use crate::manifest::{MANIFEST, Manifest, table_digest};
use crate::rowsum::RowSum;

/// What `verify` found: one line per problem, each naming its file.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// Files checked.
    pub files: usize,
    /// Problems; empty when the set verifies.
    pub problems: Vec<String>,
}

/// Checks the set in `dir`. Errors only when there is nothing to check
/// against: no manifest (an incomplete backup), or one that fails its own
/// digest.
pub fn verify(dir: &Path, deep: bool) -> Result<(Manifest, Report), BackupError> {
    let manifest = Manifest::read(dir)?;
    let mut report = Report::default();
    for file in &manifest.files {
        report.files += 1;
        let path = dir.join(&file.path);
        match digest_file(&path) {
            Ok((size, _)) if size != file.size => report.problems.push(format!(
                "{}: {size} bytes, but the manifest says {} (truncated, or not this backup's file)",
                file.path, file.size
            )),
            Ok((_, sha)) if sha != file.sha256 => report.problems.push(format!(
                "{}: SHA-256 {sha}, but the manifest says {} (damaged, or not this backup's file)",
                file.path, file.sha256
            )),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                report.problems.push(format!("{}: missing", file.path));
            }
            Err(e) => report.problems.push(format!("{}: {e}", file.path)),
        }
    }
    for extra in extra_files(dir, &manifest) {
        report
            .problems
            .push(format!("{extra}: not in the manifest (an extra file)"));
    }
    if let (true, true, Some(pages)) = (deep, report.problems.is_empty(), &manifest.pages) {
        match crate::pages::decode_pages(dir, pages, &mut |_, _| Ok(())) {
            Ok(mut problems) => report.problems.append(&mut problems),
            Err(e) => report.problems.push(format!("{}: does not decode: {e}", pages.file)),
        }
    }
    if deep && report.problems.is_empty() {
        let kind = &manifest.database.server.dialect;
        let dialect = Dialect::parse(kind);
        if dialect.is_none() {
            report.problems.push(format!(
                "{MANIFEST}: a database of kind {kind:?}, which this waymark does not know"
            ));
        }
        for table in &manifest.tables {
            let mut rows = 0u64;
            let mut sum = RowSum::default();
            for chunk in &table.chunks {
                match decode(&dir.join(&chunk.file), chunk.raw_bytes) {
                    Ok(raw) => {
                        if let Some(dialect) = dialect {
                            sum.add_chunk(dialect, &raw);
                        }
                        let raw_sha = hex::encode(Sha256::digest(&raw));
                        if raw_sha != chunk.raw_sha256 || raw.len() as u64 != chunk.raw_bytes {
                            report.problems.push(format!(
                                "{}: its rows decode to SHA-256 {raw_sha}, but the manifest says {}",
                                chunk.file, chunk.raw_sha256
                            ));
                        }
                        rows += chunk.rows;
                    }
                    Err(e) => report.problems.push(format!("{}: does not decode: {e}", chunk.file)),
                }
            }
            let sha = table_digest(table.chunks.iter().map(|c| c.raw_sha256.as_str()));
            if sha != table.sha256 || rows != table.rows {
                report.problems.push(format!(
                    "table {}: its chunks hold {rows} rows with SHA-256 {sha}, but the manifest says {} rows with {}",
                    table.info.name, table.rows, table.sha256
                ));
            }
            if let (Some(expected), Some(_)) = (&table.rows_xxh3, dialect)
                && (sum.hex() != *expected || sum.rows() != table.rows)
            {
                report.problems.push(format!(
                    "table {}: its chunks hold {} rows summing to {}, but the manifest says {} rows summing to {expected}",
                    table.info.name,
                    sum.rows(),
                    sum.hex(),
                    table.rows
                ));
            }
        }
    }
    Ok((manifest, report))
}

/// The manifest of the set in `dir`, once every file has been checked
/// against it; any problem is an error, before anything is written.
pub(crate) fn verified(dir: &Path) -> Result<Manifest, BackupError> {
    let (manifest, report) = verify(dir, false)?;
    if !report.problems.is_empty() {
        return Err(BackupError::DoesNotVerify {
            dir: dir.to_owned(),
            problems: report.problems,
        });
    }
    Ok(manifest)
}

/// The most a chunk's decoding reserves up front (chunks are 64 MiB by
/// default, at most a row more).
const MAX_PREALLOCATED: u64 = 1 << 30;

/// Reads a chunk and decompresses it.
pub(crate) fn decode(path: &Path, raw_bytes: u64) -> std::io::Result<Vec<u8>> {
    let file = std::fs::File::open(path)?;
    // Room for exactly the size the manifest gives: a buffer grown by
    // doubling ends up to twice the chunk, and a restore holds one per
    // worker. A size past any chunk waymark writes is not trusted for it.
    let mut raw = Vec::with_capacity(usize::try_from(raw_bytes.min(MAX_PREALLOCATED)).unwrap_or(0));
    zstd::Decoder::new(file)?.read_to_end(&mut raw)?;
    Ok(raw)
}

fn digest_file(path: &Path) -> std::io::Result<(u64, String)> {
    let mut file = std::fs::File::open(path)?;
    let mut hash = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hash.update(&buf[..n]);
        size += n as u64;
    }
    Ok((size, hex::encode(hash.finalize())))
}

/// Files in the set that the manifest does not list.
fn extra_files(dir: &Path, manifest: &Manifest) -> Vec<String> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(folder) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&folder) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            let relative = path
                .strip_prefix(dir)
                .map(|p| p.to_string_lossy().replace('\\', "/"))
                .unwrap_or_default();
            if relative != MANIFEST && !manifest.files.iter().any(|f| f.path == relative) {
                found.push(relative);
            }
        }
    }
    found.sort();
    found
}
