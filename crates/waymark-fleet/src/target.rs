//! One target's run over `waymark-core`: look at its history, and when
//! something is pending, take its lock and apply.

use std::sync::Arc;
use std::time::Duration;

use waymark_core::{DbError, Engine, EngineOptions, Error, MigrationSet, Steps, UpOptions};

use crate::inventory::Target;
use crate::rollout::{Outcome, Runner};
use crate::status::Standing;

/// How long a first try waits for another runner's migration lock before
/// moving on to other targets. Not zero: SQLite's lock wait is also its
/// wait for a reader to finish, which a brief `status` elsewhere can need.
const FIRST_TRY_LOCK: Duration = Duration::from_secs(1);

/// The real [`Runner`]: an [`Engine`] per target, every engine sharing one
/// step host, so each component is loaded once for the whole fleet.
#[derive(Debug)]
pub struct EngineRunner<'a> {
    /// The migrations to apply.
    pub set: &'a MigrationSet,
    /// Everything but the URL, which each target sets.
    pub options: EngineOptions,
    /// The step host the engines share.
    pub steps: Arc<Steps>,
}

impl EngineRunner<'_> {
    async fn connect(&self, target: &Target, patient: bool) -> Result<Engine, Error> {
        let mut options = self.options.clone();
        options.connect.url = target.url.clone();
        if !patient {
            options.connect.lock_timeout = options.connect.lock_timeout.min(FIRST_TRY_LOCK);
        }
        Engine::connect_with(&options, self.steps.clone()).await
    }

    /// Where `target` stands against `set`.
    pub(crate) async fn standing(&self, target: &Target, set: &MigrationSet) -> Standing {
        let engine = match self.connect(target, true).await {
            Ok(engine) => engine,
            Err(e) => return Standing::of_error(&e),
        };
        let standing = match engine.status(set).await {
            Ok(entries) => Standing::of(&entries),
            Err(e) => Standing::of_error(&e),
        };
        engine.close().await;
        standing
    }
}

impl Runner for EngineRunner<'_> {
    async fn run(&self, target: &Target, patient: bool) -> Outcome {
        let engine = match self.connect(target, patient).await {
            Ok(engine) => engine,
            Err(e) => {
                return match Standing::of_error(&e) {
                    Standing::Unreachable(message) => Outcome::Unreachable(message),
                    _ => failed(&e, Vec::new()),
                };
            }
        };
        let outcome = apply(&engine, self.set).await;
        engine.close().await;
        outcome
    }
}

async fn apply(engine: &Engine, set: &MigrationSet) -> Outcome {
    // A look first: an up-to-date target costs one read and no lock.
    match engine.status(set).await.map(|entries| Standing::of(&entries)) {
        Ok(Standing::UpToDate { .. }) => return Outcome::UpToDate,
        Ok(Standing::NeedsRepair(state, versions)) => {
            return Outcome::Skipped(format!(
                "its history has {state} migration(s) {}; see `waymark status` and `waymark repair` for it",
                versions.join(", ")
            ));
        }
        Ok(_) => {}
        Err(e) => return failed(&e, Vec::new()),
    }
    match engine.up(set, &UpOptions::default(), &mut |_| {}).await {
        // Another runner got there between the look and the lock.
        Ok(applied) if applied.is_empty() => Outcome::UpToDate,
        Ok(applied) => Outcome::Applied(applied.iter().map(|a| format!("{}_{}", a.version, a.name)).collect()),
        Err(e @ Error::Db(DbError::LockTimeout { .. })) => Outcome::Locked(e.to_string()),
        Err(Error::Migration { failure, applied }) => {
            let applied = applied.iter().map(|a| format!("{}_{}", a.version, a.name)).collect();
            failed(
                &Error::Migration {
                    failure,
                    applied: Vec::new(),
                },
                applied,
            )
        }
        Err(e) => failed(&e, Vec::new()),
    }
}

fn failed(e: &Error, applied: Vec<String>) -> Outcome {
    Outcome::Failed {
        message: e.to_string(),
        hint: e.hint(),
        applied,
    }
}
