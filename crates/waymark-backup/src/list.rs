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
    let entries = match std::fs::read_dir(out) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(BackupError::io(out, e)),
    };
    let mut sets = Vec::new();
    for entry in entries.flatten() {
        let dir = entry.path();
        if !dir.is_dir() {
            continue;
        }
        sets.push(Listed {
            id: entry.file_name().to_string_lossy().into_owned(),
            manifest: Manifest::read(&dir).map_err(|e| match e {
                BackupError::Incomplete { .. } => "incomplete: no manifest.json".to_owned(),
                other => other.to_string(),
            }),
            size: size_of(&dir),
            dir,
        });
    }
    sets.sort_by(|a, b| a.id.cmp(&b.id));
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
