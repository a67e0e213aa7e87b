//! Backups of the engine's database: `backup create`, and the one `up
//! --backup` takes under the lock before anything is applied. The format,
//! its verification and restores are `waymark-backup`'s.

use std::path::PathBuf;

use waymark_backup::{CreateOptions, Estimate, Manifest, Progress};

use crate::engine::Engine;
use crate::error::Error;

impl Engine {
    /// Takes a backup of this engine's database, then verifies it.
    pub async fn backup(
        &self,
        options: &CreateOptions,
        progress: &mut (dyn FnMut(Progress<'_>) + Send),
    ) -> Result<(PathBuf, Manifest), Error> {
        Ok(waymark_backup::create_verified(self.database(), options, progress).await?)
    }

    /// What a backup of this engine's database would take, from the
    /// catalog and the earlier sets in `options.out`; reads no rows.
    pub async fn backup_estimate(&self, options: &CreateOptions) -> Result<Estimate, Error> {
        Ok(waymark_backup::estimate(self.database(), options).await?)
    }
}
