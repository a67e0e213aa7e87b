//! A cutover's durable state: where it stands, which server is live, and,
//! while traffic moves, the last step taken. It is written to a local file
//! (atomically, fsynced, mode 0600 since the URLs carry passwords) before
//! and after every step, and mirrored without passwords into the target's
//! `waymark_cutover.state`, so that a runner killed at any point can be
//! re-run and find out what to finish or undo.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::CutoverError;
use crate::pgbouncer::PgBouncer;

/// One of the two servers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    /// The server moved from.
    Source,
    /// The server moved to.
    Target,
}

impl Side {
    /// The other one.
    pub fn other(self) -> Side {
        match self {
            Side::Source => Side::Target,
            Side::Target => Side::Source,
        }
    }

    /// `source` or `target`.
    pub fn name(self) -> &'static str {
        match self {
            Side::Source => "source",
            Side::Target => "target",
        }
    }
}

/// Where a cutover stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    /// Schema made on the target; replication set up and copying.
    Preparing,
    /// The live server replicates into the other one.
    Replicating,
    /// Replication removed; the live server stands alone.
    Completed,
}

/// The steps of moving traffic, in order. Before `Repointed` a move is
/// undone if interrupted; from `Repointed` on it is finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Step {
    /// Guardrails passed; nothing changed yet.
    Started,
    /// PgBouncer holds new transactions.
    Paused,
    /// The server moved to has applied every write of the one moved from.
    Drained,
    /// Replication into the server moved to is gone.
    OldSubscriptionDropped,
    /// Replication back into the server moved from runs.
    NewSubscriptionCreated,
    /// PgBouncer points at the server moved to.
    Repointed,
}

impl Step {
    /// Its name, which is also the name of the crash point after it.
    pub fn name(self) -> &'static str {
        match self {
            Step::Started => "started",
            Step::Paused => "paused",
            Step::Drained => "drained",
            Step::OldSubscriptionDropped => "old-subscription-dropped",
            Step::NewSubscriptionCreated => "new-subscription-created",
            Step::Repointed => "repointed",
        }
    }
}

/// Filling the target from the backup: where replication takes over.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Seed {
    /// The source's WAL position the backup's snapshot matches exactly;
    /// set once the backup is taken.
    pub lsn: Option<String>,
    /// Whether the backup's rows are all in the target.
    pub filled: bool,
}

/// A move of traffic under way.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Move {
    /// The server traffic moves to.
    pub to: Side,
    /// The last step completed.
    pub step: Step,
    /// When the move must be over, as milliseconds since the Unix epoch.
    pub deadline_ms: u64,
    /// The runner's process id.
    pub runner: u32,
}

/// A cutover's state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    /// Names the replication objects: `waymark_<id>`.
    pub id: String,
    /// The source's URL.
    pub source: String,
    /// The target's URL.
    pub target: String,
    /// The backup set the target's schema came from.
    pub backup: Option<PathBuf>,
    /// The PgBouncer in front of the servers, if traffic goes through one.
    pub pgbouncer: Option<PgBouncer>,
    /// A shell command that points traffic at a server (given as
    /// `WAYMARK_CUTOVER_LIVE_URL`), run when traffic moves. Without
    /// PgBouncer, writes are held by making the server read-only.
    #[serde(default)]
    pub route: Option<String>,
    /// Set when the target is filled from the backup's rows rather than
    /// by replication's initial copy.
    #[serde(default)]
    pub seed: Option<Seed>,
    /// Where it stands.
    pub phase: Phase,
    /// The server traffic goes to.
    pub live: Side,
    /// A move under way.
    pub moving: Option<Move>,
}

impl State {
    /// A new cutover's id: eight hex digits, naming its replication
    /// objects.
    pub fn new_id() -> String {
        format!("{:08x}", crate::pg::rand_u64() as u32)
    }

    /// The URL of `side`.
    pub fn url(&self, side: Side) -> &str {
        match side {
            Side::Source => &self.source,
            Side::Target => &self.target,
        }
    }

    /// The publication, of the same name on both servers.
    pub fn publication(&self) -> String {
        format!("waymark_{}", self.id)
    }

    /// The subscription on `side` (and its slot on the other server).
    pub fn subscription_into(&self, side: Side) -> String {
        format!("waymark_{}_to_{}", self.id, side.name())
    }

    /// Reads the state file at `path`.
    pub fn load(path: &Path) -> Result<State, CutoverError> {
        let bytes = std::fs::read(path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                CutoverError::NoCutover { path: path.to_owned() }
            } else {
                CutoverError::io(path, e)
            }
        })?;
        serde_json::from_slice(&bytes).map_err(|e| CutoverError::State {
            path: path.to_owned(),
            message: format!("it does not parse: {e}"),
        })
    }

    /// Writes the state file at `path`: to a temporary file beside it,
    /// fsynced, then renamed over it, so a crash leaves the old state or
    /// the new one.
    pub fn store(&self, path: &Path) -> Result<(), CutoverError> {
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
            _ => PathBuf::from("."),
        };
        std::fs::create_dir_all(&dir).map_err(|e| CutoverError::io(&dir, e))?;
        let tmp = dir.join(format!(
            ".{}.tmp",
            path.file_name().and_then(|n| n.to_str()).unwrap_or("cutover")
        ));
        let json = serde_json::to_vec_pretty(self).expect("the state serializes");
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(&tmp).map_err(|e| CutoverError::io(&tmp, e))?;
        file.write_all(&json)
            .and_then(|()| file.sync_all())
            .map_err(|e| CutoverError::io(&tmp, e))?;
        std::fs::rename(&tmp, path).map_err(|e| CutoverError::io(path, e))?;
        if let Ok(d) = std::fs::File::open(&dir) {
            let _ = d.sync_all();
        }
        Ok(())
    }

    /// The state as the target's mirror keeps it: without passwords, and
    /// without the route command, which may carry credentials of its own.
    pub fn redacted(&self) -> State {
        let mut copy = self.clone();
        copy.source = waymark_db::redact(&self.source);
        copy.target = waymark_db::redact(&self.target);
        if let Some(b) = &mut copy.pgbouncer {
            b.admin = waymark_db::redact(&b.admin);
        }
        if let Some(route) = &mut copy.route {
            *route = "(kept in the state file only)".into();
        }
        copy
    }
}

/// Held by the one runner working on a cutover: a lock on a file beside
/// the state file, which the system releases when the runner dies.
#[derive(Debug)]
pub struct RunnerLock {
    _file: std::fs::File,
}

impl RunnerLock {
    /// Takes the lock of the state file at `path`, or fails at once
    /// naming the lock file if another runner has it.
    pub fn take(path: &Path) -> Result<RunnerLock, CutoverError> {
        let lock = path.with_extension("lock");
        if let Some(dir) = lock.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| CutoverError::io(dir, e))?;
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock)
            .map_err(|e| CutoverError::io(&lock, e))?;
        match file.try_lock() {
            Ok(()) => Ok(RunnerLock { _file: file }),
            Err(std::fs::TryLockError::WouldBlock) => Err(CutoverError::Busy { lock }),
            Err(std::fs::TryLockError::Error(e)) => Err(CutoverError::io(&lock, e)),
        }
    }
}

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The state file's path, made absolute so that a guard process started
/// elsewhere finds it.
pub fn state_path(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_owned())
}
