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
            size: size_on_disk(&dir),
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
    sets.sort_by(|(a, _), (b, _)| order(a).cmp(&order(b)));
    Ok(sets)
}

/// A set's place in time: its id's second, then its suffix as a number,
/// so that `-10` comes after `-9` when ten sets share a second.
fn order(id: &str) -> (&str, u64) {
    id.rsplit_once('-')
        .and_then(|(second, n)| Some((second, n.parse().ok()?)))
        .unwrap_or((id, 1))
}

/// The bytes of every file in a set's folder, its manifest included: what
/// `backup list` and `backup create` report, and what the set costs.
pub fn size_on_disk(dir: &Path) -> u64 {
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

#[cfg(test)]
mod tests {
    #[test]
    fn sets_of_one_second_sort_by_their_suffix_as_a_number() {
        let dir = tempfile::tempdir().unwrap();
        let ids = [
            "20261206T021600Z-10",
            "20261206T021601Z",
            "20261206T021600Z-2",
            "20261206T021600Z",
        ];
        for id in ids {
            std::fs::create_dir(dir.path().join(id)).unwrap();
        }
        let sorted: Vec<String> = super::folders(dir.path())
            .unwrap()
            .into_iter()
            .map(|(id, _)| id)
            .collect();
        assert_eq!(
            sorted,
            [
                "20261206T021600Z",
                "20261206T021600Z-2",
                "20261206T021600Z-10",
                "20261206T021601Z"
            ]
        );
    }
}
