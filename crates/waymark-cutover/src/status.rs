//! Where a cutover stands: replication's lag and tables, long transactions
//! on the live server, and the guardrails a switch checks before it pauses
//! anything.

use std::path::Path;
use std::time::Duration;

use serde::Serialize;

use crate::error::CutoverError;
use crate::pg::Server;
use crate::state::{Move, Phase, Side, State};

/// The limits the guardrails hold a switch to.
#[derive(Debug, Clone)]
pub struct Limits {
    /// The most WAL the server moved to may have left to apply.
    pub max_lag_bytes: u64,
    /// The longest a writing transaction may have been open.
    pub max_transaction: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_lag_bytes: 16 * 1024 * 1024,
            max_transaction: Duration::from_secs(5),
        }
    }
}

/// One guardrail and whether it passes.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct Guardrail {
    /// What it checks.
    pub name: &'static str,
    /// Whether it passes.
    pub passed: bool,
    /// What was found.
    pub detail: String,
}

/// One table's state in replication.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct TableSync {
    /// `schema.table`.
    pub table: String,
    /// `ready` (copied, streaming), `copying`, `waiting` or the catalog's
    /// letter.
    pub state: String,
}

/// Where a cutover stands.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct Status {
    /// Its id.
    pub id: String,
    /// Its phase.
    pub phase: Phase,
    /// The server traffic goes to.
    pub live: Side,
    /// A move under way (or left by a runner that died).
    pub moving: Option<Move>,
    /// The source's URL, without its password.
    pub source: String,
    /// The target's URL, without its password.
    pub target: String,
    /// The server replication goes into.
    pub replicating_into: Option<Side>,
    /// WAL not yet confirmed by the subscriber, in bytes.
    pub lag_bytes: Option<i64>,
    /// The subscriber's apply lag, in seconds.
    pub lag_seconds: Option<f64>,
    /// Each replicated table.
    pub tables: Vec<TableSync>,
    /// Writing transactions open longer than the limit on the live server.
    pub long_transactions: Vec<String>,
    /// The guardrails of a switch to the other server.
    pub guardrails: Vec<Guardrail>,
}

impl Status {
    /// Whether every guardrail passes.
    pub fn ready(&self) -> bool {
        !self.guardrails.is_empty() && self.guardrails.iter().all(|g| g.passed)
    }

    /// Whether traffic should move but cannot now: the cutover replicates
    /// and a guardrail fails.
    pub fn blocked(&self) -> bool {
        self.phase == Phase::Replicating && !self.ready()
    }
}

/// The status of the cutover whose state is at `path`.
pub async fn status(path: &Path, limits: &Limits) -> Result<Status, CutoverError> {
    let state = State::load(path)?;
    let mut status = Status {
        id: state.id.clone(),
        phase: state.phase,
        live: state.live,
        moving: state.moving.clone(),
        source: waymark_db::redact(&state.source),
        target: waymark_db::redact(&state.target),
        replicating_into: None,
        lag_bytes: None,
        lag_seconds: None,
        tables: Vec::new(),
        long_transactions: Vec::new(),
        guardrails: Vec::new(),
    };
    if state.phase == Phase::Completed {
        return Ok(status);
    }
    let mut live = Server::connect(state.url(state.live)).await?;
    let mut other = Server::connect(state.url(state.live.other())).await?;
    status.replicating_into = Some(state.live.other());
    let checked = check(&state, &mut live, &mut other, limits).await?;
    status.lag_bytes = checked.lag_bytes;
    status.lag_seconds = checked.lag_seconds;
    status.tables = checked.tables;
    status.long_transactions = checked.long_transactions;
    status.guardrails = checked.guardrails;
    live.close().await;
    other.close().await;
    Ok(status)
}

pub(crate) struct Checked {
    pub(crate) lag_bytes: Option<i64>,
    pub(crate) lag_seconds: Option<f64>,
    pub(crate) tables: Vec<TableSync>,
    pub(crate) long_transactions: Vec<String>,
    pub(crate) guardrails: Vec<Guardrail>,
}

/// Reads replication's state and checks every guardrail of moving traffic
/// from `live` to `other`.
pub(crate) async fn check(
    state: &State,
    live: &mut Server,
    other: &mut Server,
    limits: &Limits,
) -> Result<Checked, CutoverError> {
    let into = state.live.other();
    let subscription = state.subscription_into(into);
    let mut guardrails = Vec::new();

    let tables: Vec<TableSync> = other
        .sync_states(&subscription)
        .await?
        .into_iter()
        .map(|(table, s)| TableSync {
            table,
            state: match s.as_str() {
                "r" => "ready".into(),
                "d" | "f" | "s" => "copying".into(),
                "i" => "waiting".into(),
                other => other.into(),
            },
        })
        .collect();
    let exists = other.has_subscription(&subscription).await?;
    let running = exists && other.subscription_running(&subscription).await?;
    let not_ready: Vec<&str> = tables
        .iter()
        .filter(|t| t.state != "ready")
        .map(|t| t.table.as_str())
        .collect();
    guardrails.push(Guardrail {
        name: "replication",
        passed: running && not_ready.is_empty() && !tables.is_empty(),
        detail: if !exists {
            format!("the subscription {subscription} is missing on the {}", into.name())
        } else if !running {
            format!(
                "the subscription {subscription} on the {} is disabled or its worker is not running",
                into.name()
            )
        } else if !not_ready.is_empty() {
            format!("still copying: {}", not_ready.join(", "))
        } else {
            format!("{} tables streaming into the {}", tables.len(), into.name())
        },
    });

    let lag_bytes = live.slot_lag(&subscription).await?;
    let lag_seconds = live.replay_lag(&subscription).await?;
    guardrails.push(Guardrail {
        name: "lag",
        passed: lag_bytes.is_some_and(|b| b as u64 <= limits.max_lag_bytes),
        detail: match lag_bytes {
            None => format!(
                "the replication slot {subscription} is missing on the {}",
                state.live.name()
            ),
            Some(b) => format!("{b} bytes behind (limit {})", limits.max_lag_bytes),
        },
    });

    let long_transactions = live.long_transactions(limits.max_transaction.as_secs_f64()).await?;
    guardrails.push(Guardrail {
        name: "transactions",
        passed: long_transactions.is_empty(),
        detail: if long_transactions.is_empty() {
            format!(
                "no writing transaction open longer than {} s",
                limits.max_transaction.as_secs_f64()
            )
        } else {
            long_transactions.join("; ")
        },
    });

    let ddl = live.ddl_in_flight().await?;
    let published = live.published(&state.publication()).await?;
    let unpublished: Vec<String> = live
        .tables()
        .await?
        .into_iter()
        .map(|t| t.name)
        .filter(|n| !published.contains(n))
        .collect();
    guardrails.push(Guardrail {
        name: "schema",
        passed: ddl.is_empty() && unpublished.is_empty(),
        detail: if !ddl.is_empty() {
            format!("schema change in flight: {}", ddl.join("; "))
        } else if !unpublished.is_empty() {
            format!(
                "made since prepare, so not replicated: {} (replication carries no DDL)",
                unpublished.join(", ")
            )
        } else {
            "no schema change in flight or since prepare".into()
        },
    });

    if let Some(dir) = &state.backup {
        let detail = match waymark_backup::verify(dir, false) {
            Ok((_, report)) if report.problems.is_empty() => Ok(format!("{} verifies", dir.display())),
            Ok((_, report)) => Err(format!("{}: {}", dir.display(), report.problems.join("; "))),
            Err(e) => Err(e.to_string()),
        };
        guardrails.push(Guardrail {
            name: "backup",
            passed: detail.is_ok(),
            detail: detail.unwrap_or_else(|e| e),
        });
    }

    if let Some(bouncer) = &state.pgbouncer {
        let detail = match bouncer.console().await {
            Ok(mut console) => {
                let shown = console.show().await;
                console.close().await;
                match shown {
                    Ok(Some((host, port, false))) => Ok(format!("database {} → {host}:{port}", bouncer.database)),
                    Ok(Some((_, _, true))) => Err(format!("database {} is paused", bouncer.database)),
                    Ok(None) => Err(format!("PgBouncer has no database {}", bouncer.database)),
                    Err(e) => Err(e.to_string()),
                }
            }
            Err(e) => Err(e.to_string()),
        };
        guardrails.push(Guardrail {
            name: "pgbouncer",
            passed: detail.is_ok(),
            detail: detail.unwrap_or_else(|e| e),
        });
    }

    if state.pgbouncer.is_none() && state.route.is_some() {
        let mut problems = Vec::new();
        for (side, server) in [(state.live, &mut *live), (into, &mut *other)] {
            if let Some(problem) = server.cannot_fence().await? {
                problems.push(format!("{}: {problem}", side.name()));
            }
        }
        guardrails.push(Guardrail {
            name: "read-only",
            passed: problems.is_empty(),
            detail: if problems.is_empty() {
                "without PgBouncer, writes are held by making the live server read-only and ending its \
                 sessions; the route command moves traffic"
                    .into()
            } else {
                problems.join("; ")
            },
        });
    }

    Ok(Checked {
        lag_bytes,
        lag_seconds,
        tables,
        long_transactions,
        guardrails,
    })
}
