//! `baseline`: record migrations as present without running them, for a
//! database whose schema exists already: every one up to a version, or
//! exactly those another tool's history table says it applied.
//!
//! Either way it is all or nothing: refused, with every reason at once,
//! unless waymark's own history is empty and (with `--from`) the other
//! tool's history agrees with the folder. The other tool's table is only
//! read, so the team can go back to that tool until it drops the table.

use sha2::{Digest, Sha384};
use waymark_db::{AuditEntry, NewHistoryRow, OtherTool, State as Recorded};

use crate::engine::{Engine, release};
use crate::error::Error;
use crate::source::{Migration, MigrationSet};
use crate::version::Version;

impl Engine {
    /// Records every migration up to `version` as already applied. Only on
    /// an empty history.
    pub async fn baseline(&self, set: &MigrationSet, version: &Version) -> Result<Vec<Migration>, Error> {
        let lock = self.lock_for_change().await?;
        let result = async {
            self.refuse_unless_new().await?;
            let adopted: Vec<Migration> = set
                .migrations
                .iter()
                .filter(|m| m.version <= *version)
                .cloned()
                .collect();
            if adopted.is_empty() {
                return Err(Error::Refused {
                    message: format!(
                        "cannot baseline at {version}: no migration in {} has a version up to it",
                        set.dir.display()
                    ),
                    hint: None,
                });
            }
            self.record_baseline(&adopted, "recorded as present without running it")
                .await?;
            Ok(adopted)
        }
        .await;
        release(lock, result).await
    }

    /// Records as applied exactly the migrations that `tool`'s history
    /// table says it applied, matching its versions with the folder's as
    /// that tool wrote them (diesel without dashes, golang-migrate without
    /// leading zeros). Only on an empty history; refused with the full list
    /// of disagreements: a version the tool applied that the folder lacks,
    /// a migration the tool marks failed or dirty.
    pub async fn baseline_from(&self, set: &MigrationSet, tool: OtherTool) -> Result<Vec<Migration>, Error> {
        let lock = self.lock_for_change().await?;
        let result = async {
            self.refuse_unless_new().await?;
            let table = tool.table();
            let other = self
                .database()
                .connection()
                .await?
                .other_history(tool)
                .await
                .map_err(|e| Error::Refused {
                    message: format!("cannot baseline from {tool}: {e}"),
                    hint: Some(format!(
                        "--from names the tool whose history table ({table}) is in this database"
                    )),
                })?;
            let find = |v: &str| {
                let v = Version::from_history(v);
                set.migrations.iter().find(|m| m.version == v)
            };
            let folder = set.dir.display();
            let mut problems: Vec<String> = other
                .failed
                .iter()
                .map(|(v, what)| format!("{tool} records {v} as {what}: finish or repair it with {tool} first"))
                .collect();
            let mut adopted: Vec<Migration> = Vec::new();
            for v in &other.applied {
                match find(v) {
                    Some(m) => adopted.push(m.clone()),
                    None => problems.push(format!("{tool} applied version {v}, which {folder} does not hold")),
                }
            }
            // sqlx refuses to go on when a file it applied has changed
            // since; adopting the changed file would record it as run.
            for (v, sum) in &other.checksums {
                let Some(m) = find(v) else { continue };
                let path = &m.up.path;
                let now = std::fs::read(path).map(|bytes| Sha384::digest(bytes).to_vec());
                if now.as_deref().ok() != Some(sum.as_slice()) {
                    problems.push(format!(
                        "{tool} applied {v} from a different {}: the checksum it recorded does not match the file \
                         (changed since)",
                        path.display()
                    ));
                }
            }
            if let Some(up_to) = &other.up_to {
                // golang-migrate's one row is its newest applied version,
                // which must be in the folder; Flyway's baseline version
                // need not be.
                if tool == OtherTool::GolangMigrate && find(up_to).is_none() {
                    problems.push(format!("{tool} is at version {up_to}, which {folder} does not hold"));
                }
                let bound = Version::from_history(up_to);
                for m in set.migrations.iter().filter(|m| m.version <= bound) {
                    if !adopted.iter().any(|a| a.version == m.version) {
                        adopted.push(m.clone());
                    }
                }
            }
            if !problems.is_empty() {
                return Err(Error::Refused {
                    message: format!(
                        "cannot baseline from {tool}: its history ({table}) and {folder} disagree; nothing was \
                         recorded:\n  - {}",
                        problems.join("\n  - ")
                    ),
                    hint: Some(format!(
                        "point --migrations at the folder {tool} runs, or settle the history with {tool} first"
                    )),
                });
            }
            if adopted.is_empty() {
                return Err(Error::Refused {
                    message: format!("cannot baseline from {tool}: {table} records no applied migration"),
                    hint: Some("on a database no tool has migrated yet, run `waymark up`".to_owned()),
                });
            }
            adopted.sort_by(|a, b| a.version.cmp(&b.version));
            self.record_baseline(&adopted, &format!("adopted from {tool}'s {table} without running it"))
                .await?;
            Ok(adopted)
        }
        .await;
        release(lock, result).await
    }

    /// Refuses unless waymark has never migrated this database.
    async fn refuse_unless_new(&self) -> Result<(), Error> {
        let history = self.database().history().await?;
        if history.is_empty() {
            return Ok(());
        }
        Err(Error::Refused {
            message: format!(
                "cannot baseline: the history table already records {} migration(s)",
                history.len()
            ),
            hint: Some("baseline adopts a database that waymark has never migrated".to_owned()),
        })
    }

    /// Records each of `adopted` as a baseline row with its checksum, and
    /// an audit entry saying how, in one transaction.
    async fn record_baseline(&self, adopted: &[Migration], how: &str) -> Result<(), Error> {
        let mut conn = self.database().begin().await?;
        for m in adopted {
            conn.record(&NewHistoryRow {
                version: m.version.as_str(),
                name: &m.name,
                checksum: &m.checksum,
                state: Recorded::Baseline,
                duration_ms: 0,
                error: None,
                backup_id: None,
            })
            .await?;
            conn.audit(&AuditEntry {
                action: "baseline",
                version: m.version.as_str(),
                detail: &format!("{}: {how}", m.label()),
            })
            .await?;
        }
        waymark_db::crash_point("baseline-recorded");
        conn.commit().await?;
        waymark_db::crash_point("baseline-committed");
        Ok(())
    }
}
