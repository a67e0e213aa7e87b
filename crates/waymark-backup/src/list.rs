//! The backup sets in a folder, complete or not.

use std::path::{Path, PathBuf};

use crate::error::BackupError;
use crate::manifest::Manifest;

/// One backup set in a folder.
#[derive(Debug, Clone)]
pub struct Listed {
    /// Its folder.
    pub dir: PathBuf,
    /// Its id (the folder's name).
    pub id: String,
    /// Its manifest, when it has one that checks; otherwise why not.
    pub manifest: Result<Manifest, String>,
    /// Bytes on disk.
    pub size: u64,
}

/// Every set in `out`, oldest first (ids sort by time).
pub fn list(out: &Path) -> Result<Vec<Listed>, BackupError> {
    Ok(folders(out)?
        .into_iter()
        .map(|(id, dir)| Listed {
            manifest: Manifest::read(&dir).map_err(|e| match e {
                BackupError::Incomplete { .. } => "incomplete: no manifest.json".to_owned(),
                other => other.to_string(),
            }),
            size: size_of(&dir),
            id,
            dir,
        })
        .collect())
}

/// The id and folder of every set in `out`, oldest first, nothing read
/// from inside them; none when `out` does not exist.
pub(crate) fn folders(out: &Path) -> Result<Vec<(String, PathBuf)>, BackupError> {
    let entries = match std::fs::read_dir(out) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(BackupError::io(out, e)),
    };
    let mut sets: Vec<(String, PathBuf)> = entries
        .flatten()
        .map(|entry| (entry.file_name().to_string_lossy().into_owned(), entry.path()))
        .filter(|(_, dir)| dir.is_dir())
        .collect();
    sets.sort();
    Ok(sets)
}

fn size_of(dir: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![dir.to_owned()];
    while let Some(folder) = stack.pop() {
        for entry in std::fs::read_dir(&folder).into_iter().flatten().flatten() {
            match entry.metadata() {
                Ok(m) if m.is_dir() => stack.push(entry.path()),
                Ok(m) => total += m.len(),
                Err(_) => {}
            }
        }
    }
    total
}
