//! Which sets are still being written. A `backup create` holds an
//! exclusive lock on `OUT/.ID.lock` while it writes set `ID`, so that a set
//! without its manifest can be told apart:
//! - its lock is free: the run that wrote it stopped (killed, or the
//!   machine went down), and the next backup removes it;
//! - its lock is held: another process is writing it, and it is left alone.
//!
//! The lock is on the open file, so the kernel lets go of it when the
//! process dies, however it dies.

use std::fs::{File, TryLockError};
use std::path::{Path, PathBuf};

use crate::error::BackupError;

/// The lock of one set being written; [`Writing::done`] removes it.
/// `None` where the folder's file system cannot lock files (some network
/// file systems): the set is written all the same, and only a killed
/// run's folder is then left for the operator.
pub(crate) struct Writing(Option<(PathBuf, File)>);

fn lock_path(out: &Path, id: &str) -> PathBuf {
    out.join(format!(".{id}.lock"))
}

impl Writing {
    /// Takes the lock for set `id`. The file is locked under a name of its
    /// own and only then renamed into place, so that no other process ever
    /// finds it under its real name unlocked.
    pub(crate) fn start(out: &Path, id: &str) -> Result<Writing, BackupError> {
        let path = lock_path(out, id);
        let temporary = out.join(format!(".{id}.lock.tmp-{}", std::process::id()));
        let file = File::create(&temporary).map_err(|e| BackupError::io(&temporary, e))?;
        if let Err(e) = file.lock() {
            drop(file);
            let _ = std::fs::remove_file(&temporary);
            tracing::warn!(
                "cannot lock files in {} ({e}); if this backup is killed, remove its folder {id} by hand",
                out.display()
            );
            return Ok(Writing(None));
        }
        std::fs::rename(&temporary, &path).map_err(|e| BackupError::io(&path, e))?;
        Ok(Writing(Some((path, file))))
    }

    /// The set is complete, or was removed: its lock file goes (unlinked
    /// while still held, then let go).
    pub(crate) fn done(self) {
        if let Some((path, _held)) = self.0
            && let Err(e) = std::fs::remove_file(&path)
        {
            tracing::warn!("removing {}: {e}", path.display());
        }
    }
}

/// Removes from `out` every set that a run which stopped left without its
/// manifest, and the lock files such runs left; returns the folders
/// removed. A set another process is writing is left alone.
pub(crate) fn sweep(out: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(out) else {
        return Vec::new();
    };
    let mut removed = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix('.') else { continue };
        let path = entry.path();
        let id = match (rest.strip_suffix(".lock"), rest.split_once(".lock.tmp-")) {
            (Some(id), _) => Some(id.to_owned()),
            // A lock that died before it was renamed into place: its set
            // never began, and only the file itself goes, once it is old
            // enough that no run can still be about to lock it.
            (None, Some(_)) if younger_than_a_minute(&path) => continue,
            (None, Some(_)) => None,
            (None, None) => continue,
        };
        // Held until the set and the lock file are gone.
        let Some(_file) = unheld(&path) else { continue };
        if let Some(id) = id {
            let dir = out.join(&id);
            if dir.is_dir() && !dir.join(crate::manifest::MANIFEST).exists() {
                match std::fs::remove_dir_all(&dir) {
                    Ok(()) => {
                        tracing::warn!(
                            "removed the unfinished backup {}, left by a run that stopped",
                            dir.display()
                        );
                        removed.push(dir);
                    }
                    Err(e) => {
                        tracing::warn!("removing the unfinished backup {}: {e}", dir.display());
                        continue;
                    }
                }
            }
        }
        if let Err(e) = std::fs::remove_file(&path) {
            tracing::debug!("{}: {e}", path.display());
        }
    }
    removed
}

fn younger_than_a_minute(path: &Path) -> bool {
    std::fs::metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.elapsed().ok())
        .is_none_or(|age| age < std::time::Duration::from_secs(60))
}

/// `path`, open and locked here, when no other process holds its lock
/// (it was left by a run that stopped); `None` when one does, or it is
/// gone, or cannot be locked. The name is checked to still lead to the
/// file locked: another process may have removed it, and a new run made
/// its own under the same name, between the open and the lock.
pub(crate) fn unheld(path: &Path) -> Option<File> {
    let file = File::open(path).ok()?;
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => return None,
        Err(TryLockError::Error(e)) => {
            tracing::debug!("{}: {e}", path.display());
            return None;
        }
    }
    same_file(&file, path).then_some(file)
}

/// Whether `path` still names the file open as `file`.
#[cfg(unix)]
fn same_file(file: &File, path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (file.metadata(), std::fs::metadata(path)) {
        (Ok(held), Ok(named)) => held.dev() == named.dev() && held.ino() == named.ino(),
        _ => false,
    }
}

#[cfg(not(unix))]
fn same_file(_: &File, path: &Path) -> bool {
    path.exists()
}

#[cfg(test)]
mod tests {
    use super::{Writing, sweep};

    #[test]
    fn a_set_whose_lock_is_held_stays_and_one_whose_lock_is_free_goes() {
        let out = tempfile::tempdir().unwrap();
        let out = out.path();
        for id in ["live", "dead", "done"] {
            std::fs::create_dir(out.join(id)).unwrap();
        }
        std::fs::write(out.join("done").join(crate::manifest::MANIFEST), "{}").unwrap();
        let live = Writing::start(out, "live").unwrap();
        // A run that stopped: its lock file is there, and held by no one.
        drop(Writing::start(out, "dead").unwrap());
        drop(Writing::start(out, "done").unwrap());
        std::fs::write(out.join(".gone.lock.tmp-1"), "").unwrap();
        // One a minute old: no run can still be about to lock it.
        let old = std::fs::File::options()
            .write(true)
            .open(out.join(".gone.lock.tmp-1"))
            .unwrap();
        old.set_modified(std::time::SystemTime::now() - std::time::Duration::from_secs(120))
            .unwrap();
        std::fs::write(out.join(".new.lock.tmp-2"), "").unwrap();

        let removed = sweep(out);
        assert_eq!(removed, [out.join("dead")]);
        assert!(out.join("live").is_dir() && out.join(".live.lock").exists());
        // A complete set stays; only its stray lock file goes.
        assert!(out.join("done").is_dir() && !out.join(".done.lock").exists());
        assert!(!out.join(".dead.lock").exists() && !out.join(".gone.lock.tmp-1").exists());
        assert!(
            out.join(".new.lock.tmp-2").exists(),
            "a lock being made this minute stays"
        );

        live.done();
        assert!(!out.join(".live.lock").exists());
        assert!(
            sweep(out).is_empty(),
            "a set without its manifest and without a lock is left alone"
        );
        assert!(out.join("live").is_dir());
    }
}
