//! One target's run over `waymark-core`: look at its history, and when
//! something is pending, take its lock and apply.

use std::sync::Arc;
use std::time::Duration;

use waymark_core::{DbError, DownTarget, Engine, EngineOptions, Error, Event, MigrationSet, Steps, UpOptions, Version};

use crate::inventory::Target;
use crate::rollout::{Outcome, Runner};
use crate::status::{Look, Standing};

/// How long a first try waits for another runner's migration lock before
/// moving on to other targets. Not zero: SQLite's lock wait is also its
/// wait for a reader to finish, which a brief `status` elsewhere can need.
const FIRST_TRY_LOCK: Duration = Duration::from_secs(1);

/// Sets a target's engine up before it runs, given the target's name:
/// listeners that name the target in what they report.
pub type Prepare = Arc<dyn Fn(&str, &mut Engine) + Send + Sync>;

/// Receives each engine event of a target, with the target's name.
pub type OnEvent = Arc<dyn Fn(&str, &Event<'_>) + Send + Sync>;

/// The real [`Runner`]: an [`Engine`] per target, every engine sharing one
/// step host, so each component is loaded once for the whole fleet.
pub struct EngineRunner<'a> {
    /// The migrations to apply.
    pub set: &'a MigrationSet,
    /// Everything but the URL, which each target sets.
    pub options: EngineOptions,
    /// The step host the engines share.
    pub steps: Arc<Steps>,
    /// Run on each engine before it applies anything.
    pub prepare: Option<Prepare>,
    /// Told of each migration's start and end on each target.
    pub on_event: Option<OnEvent>,
    /// `fleet down --to V`: revert every migration newer than `V` instead
    /// of applying. One version for every target, never a count of steps:
    /// targets at different versions would each lose different
    /// migrations.
    pub down_to: Option<Version>,
}

impl std::fmt::Debug for EngineRunner<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EngineRunner")
            .field("migrations", &self.set.migrations.len())
            .field("options", &self.options)
            .field("prepare", &self.prepare.is_some())
            .field("on_event", &self.on_event.is_some())
            .finish_non_exhaustive()
    }
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
    pub(crate) async fn standing(&self, target: &Target, set: &MigrationSet, look: Look) -> Standing {
        let engine = match self.connect(target, true).await {
            Ok(engine) => engine,
            Err(e) => return Standing::of_error(&e),
        };
        let standing = match look {
            Look::Status => engine.status(set).await.map(|entries| Standing::of(&entries)),
            Look::Verify => engine.verify(set).await.map(|report| match report.differences.first() {
                None => Standing::Verified {
                    checked: report.checked,
                },
                Some(first) => Standing::NeedsRepair(
                    first.state.as_str(),
                    report.differences.iter().map(|e| e.version.to_string()).collect(),
                ),
            }),
        };
        let standing = standing.unwrap_or_else(|e| Standing::of_error(&e));
        engine.close().await;
        standing
    }

    /// What `up` would do on `target`, with each migration's findings
    /// weighed by its tables' sizes there.
    pub(crate) async fn plan(&self, target: &Target, set: &MigrationSet) -> Result<waymark_core::Plan, String> {
        let engine = self.connect(target, true).await.map_err(|e| e.to_string())?;
        let plan = engine.plan_weighed(set, &UpOptions::default()).await;
        engine.close().await;
        plan.map_err(|e| e.to_string())
    }
}

impl Runner for EngineRunner<'_> {
    async fn run(&self, target: &Target, patient: bool) -> Outcome {
        let mut engine = match self.connect(target, patient).await {
            Ok(engine) => engine,
            Err(e) => {
                return match Standing::of_error(&e) {
                    Standing::Unreachable(message) => Outcome::Unreachable(message),
                    _ => failed(&e, Vec::new()),
                };
            }
        };
        if let Some(prepare) = &self.prepare {
            prepare(&target.name, &mut engine);
        }
        let tell = self.on_event.clone();
        let name = target.name.as_str();
        let mut on_event = move |event: Event<'_>| {
            if let Some(tell) = &tell {
                tell(name, &event);
            }
        };
        let outcome = match &self.down_to {
            None => apply(&engine, self.set, &mut on_event).await,
            Some(to) => revert(&engine, self.set, to, &mut on_event).await,
        };
        engine.close().await;
        outcome
    }
}

async fn apply(engine: &Engine, set: &MigrationSet, on_event: &mut (dyn FnMut(Event<'_>) + Send)) -> Outcome {
    // A look first: an up-to-date target costs one read and no lock.
    match engine.status(set).await.map(|entries| Standing::of(&entries)) {
        Ok(Standing::UpToDate { .. }) => return Outcome::UpToDate,
        Ok(Standing::NeedsRepair(state, versions)) => return skipped(state, &versions),
        Ok(_) => {}
        Err(e) => return failed(&e, Vec::new()),
    }
    ended(engine.up(set, &UpOptions::default(), on_event).await, Outcome::Applied)
}

async fn revert(
    engine: &Engine,
    set: &MigrationSet,
    to: &Version,
    on_event: &mut (dyn FnMut(Event<'_>) + Send),
) -> Outcome {
    match engine.status(set).await {
        Ok(entries) => {
            if let Standing::NeedsRepair(state, versions) = Standing::of(&entries) {
                return skipped(state, &versions);
            }
            if !entries.iter().any(|e| e.state.is_applied() && &e.version > to) {
                return Outcome::UpToDate;
            }
        }
        Err(e) => return failed(&e, Vec::new()),
    }
    ended(
        engine.down(set, &DownTarget::To(to.clone()), on_event).await,
        Outcome::Reverted,
    )
}

fn skipped(state: &str, versions: &[String]) -> Outcome {
    Outcome::Skipped(format!(
        "its history has {state} migration(s) {}; see `waymark status` and `waymark repair` for it",
        versions.join(", ")
    ))
}

/// How an `up` or a `down` under the target's lock ended.
fn ended(result: Result<Vec<waymark_core::Applied>, Error>, done: fn(Vec<String>) -> Outcome) -> Outcome {
    match result {
        // Another runner got there between the look and the lock.
        Ok(migrations) if migrations.is_empty() => Outcome::UpToDate,
        Ok(migrations) => done(labels(&migrations)),
        Err(e @ Error::Db(DbError::LockTimeout { .. })) => Outcome::Locked(e.to_string()),
        Err(Error::Migration { failure, applied }) => failed(
            &Error::Migration {
                failure,
                applied: Vec::new(),
            },
            labels(&applied),
        ),
        Err(e) => failed(&e, Vec::new()),
    }
}

fn labels(done: &[waymark_core::Applied]) -> Vec<String> {
    done.iter().map(|a| format!("{}_{}", a.version, a.name)).collect()
}

fn failed(e: &Error, applied: Vec<String>) -> Outcome {
    Outcome::Failed {
        message: e.to_string(),
        hint: e.hint(),
        applied,
    }
}
