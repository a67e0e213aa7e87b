//! Backups through the engine: taken from the engine's database (and, for
//! `up --backup`, before anything is applied), restored into another.

use std::path::{Path, PathBuf};

use waymark_backup::{BackupError, CreateOptions, Manifest, Progress, RestoreReport};
use waymark_db::{ConnectOptions, Database};

use crate::engine::Engine;
use crate::error::Error;

impl Engine {
    /// Takes a backup of this engine's database, then verifies it.
    pub async fn backup(
        &self,
        options: &CreateOptions,
        progress: &mut (dyn FnMut(Progress<'_>) + Send),
    ) -> Result<(PathBuf, Manifest), Error> {
        create_verified(self.database(), options, progress).await
    }
}

/// Takes a backup of `db`, then verifies it.
pub(crate) async fn create_verified(
    db: &Database,
    options: &CreateOptions,
    progress: &mut (dyn FnMut(Progress<'_>) + Send),
) -> Result<(PathBuf, Manifest), Error> {
    let (dir, manifest) = waymark_backup::create(db, options, progress).await?;
    let (_, report) = waymark_backup::verify(&dir, false)?;
    if !report.problems.is_empty() {
        return Err(BackupError::DoesNotVerify {
            dir,
            problems: report.problems,
        }
        .into());
    }
    Ok((dir, manifest))
}

/// Restores the set in `dir` into the (empty) database `target`.
pub async fn restore(
    dir: &Path,
    target: &ConnectOptions,
    progress: &mut (dyn FnMut(Progress<'_>) + Send),
) -> Result<RestoreReport, Error> {
    let db = Database::connect(target).await?;
    let result = waymark_backup::restore(dir, &db, progress).await;
    db.close().await;
    Ok(result?)
}
