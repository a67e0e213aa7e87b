//! `repair`: the explicit, audited way out of a failed or drifted state,
//! each action behind its own flag.

use waymark_db::{AuditEntry, NewHistoryRow, State as Recorded};

use crate::engine::{Engine, RepairAction, RepairOptions, release};
use crate::error::Error;
use crate::source::MigrationSet;
use crate::status::State;

impl Engine {
    /// The explicit, audited way out of a failed or drifted state.
    pub async fn repair(&self, set: &MigrationSet, options: &RepairOptions) -> Result<Vec<RepairAction>, Error> {
        if !(options.rolled_back || options.applied || options.accept_checksums || options.forget_missing) {
            return Err(Error::Usage(
                "repair needs to be told what to do: --rolled-back, --applied, --accept-checksums or --forget-missing"
                    .to_owned(),
            ));
        }
        if options.rolled_back && options.applied {
            return Err(Error::Usage(
                "--rolled-back and --applied say opposite things of a failed migration; give one".to_owned(),
            ));
        }
        let lock = self.lock_for_change().await?;
        let result = async {
            let status = self.status(set).await?;
            let mut conn = self.database().begin().await?;
            let mut actions = Vec::new();
            for e in &status {
                if options.version.as_ref().is_some_and(|v| *v != e.version) {
                    continue;
                }
                let Some(row) = &e.row else { continue };
                let (action, detail) = match e.state {
                    State::Failed if options.rolled_back => {
                        conn.forget(&row.version).await?;
                        (
                            "rolled-back",
                            format!(
                                "removed the {} record; `up` will run it again (it failed with: {})",
                                row.state.as_str(),
                                row.error.as_deref().unwrap_or("its runner stopped before finishing")
                            ),
                        )
                    }
                    State::Failed if options.applied => {
                        conn.record(&NewHistoryRow {
                            version: &row.version,
                            name: &row.name,
                            checksum: &row.checksum,
                            state: Recorded::Applied,
                            duration_ms: row.duration_ms,
                            error: None,
                            backup_id: row.backup_id.as_deref(),
                        })
                        .await?;
                        (
                            "applied",
                            format!(
                                "recorded as applied; `down` will revert it (it failed with: {})",
                                row.error.as_deref().unwrap_or("its runner stopped before finishing")
                            ),
                        )
                    }
                    State::Modified if options.accept_checksums => {
                        let new = &e.migration.as_ref().expect("modified implies a file").checksum;
                        conn.set_checksum(&row.version, new).await?;
                        ("accept-checksum", format!("checksum {} -> {new}", row.checksum))
                    }
                    State::Missing if options.forget_missing => {
                        conn.forget(&row.version).await?;
                        (
                            "forget-missing",
                            "removed the record of a migration whose file is gone".to_owned(),
                        )
                    }
                    _ => continue,
                };
                conn.audit(&AuditEntry {
                    action,
                    version: &row.version,
                    detail: &detail,
                })
                .await?;
                tracing::info!("repair {action} {}: {detail}", e.label());
                actions.push(RepairAction {
                    action,
                    label: e.label(),
                    detail,
                });
            }
            waymark_db::crash_point("repair-recorded");
            conn.commit().await?;
            waymark_db::crash_point("repair-committed");
            Ok(actions)
        }
        .await;
        release(lock, result).await
    }
}
