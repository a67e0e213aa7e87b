//! The pure planner: from the migrations, the history and the options to a
//! [`Plan`], with every check that makes a command refuse, before any
//! database is touched. Steps are asked what they will do (their `plan`
//! export) only when the plan is to be shown or saved: a plan made to be
//! run at once needs no more than its strategies, and asking costs a step
//! call per migration.

use std::collections::HashSet;

use waymark_db::{Dialect, HistoryRow, Preimage, State as Recorded};
use waymark_host::{Call, Direction};

use super::{Basis, Plan, PlannedMigration, Strategy, Way};
use crate::engine::{DownTarget, PreimageMode, UpOptions, batched, config_of, failure, host_dialect, script_for};
use crate::error::Error;
use crate::source::{Access, Migration, MigrationSet, OpsPhase, Script, Step};
use crate::sql::{drops, lint};
use crate::status::{Entry, State, entries};
use crate::steps::Steps;
use crate::version::Version;

/// Makes plans for one dialect.
pub(crate) struct Planner<'a> {
    /// The step host, for components to be loaded and checked, and asked
    /// what they will do.
    pub(crate) steps: &'a Steps,
    /// The database's dialect.
    pub(crate) dialect: Dialect,
    /// What `up` does about dropped data.
    pub(crate) preimages: PreimageMode,
    /// Whether to ask each step for its statements.
    pub(crate) statements: Statements,
    /// The column types the plan's statements so far made, for lint to
    /// know a column's type when a later migration changes it.
    pub(crate) columns: std::sync::Mutex<lint::Columns>,
    /// Whether waymark bounds each statement's lock wait.
    pub(crate) lock_timeout: bool,
    /// The severities `[lint.severity]` gives rules, by id.
    pub(crate) severities: &'a std::collections::HashMap<String, lint::Severity>,
    /// The history table's name, which the ops step leaves out of its
    /// views.
    pub(crate) history: String,
}

/// Whether a plan knows its steps' statements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Statements {
    /// Not asked: the plan is carried out and not shown.
    No,
    /// Asked, to show or save the plan: a step that cannot say refuses.
    Shown,
    /// Asked, for `up` to weigh the lint findings: a step that cannot say
    /// is left to fail when it runs, as it would have.
    Weighed,
}

impl Planner<'_> {
    /// What `up` applies.
    pub(crate) async fn up(
        &self,
        set: &MigrationSet,
        history: &[HistoryRow],
        options: &UpOptions,
    ) -> Result<Plan, Error> {
        let status = entries(set, history.to_vec());
        let mut pending = self.pending(&status, options)?;
        // Elsewhere an ops migration is applied whole and leaves nothing in
        // flight: two on one table are just two migrations.
        if self.dialect == Dialect::Postgres {
            pending = in_flight_beside(&status, pending)?;
        }
        let one = options.single_transaction || options.dry_run;
        let mut plan = self.empty(Way::Up, set, history, one, options.dry_run);
        for mut m in pending {
            self.to_apply(&mut m);
            let resumes = batched(&m) && history.iter().any(|r| r.version == m.version.as_str());
            plan.migrations
                .push(self.planned(m, Direction::Up, one, resumes, &[]).await?);
        }
        Ok(plan)
    }

    /// What `down` reverts, newest first.
    pub(crate) async fn down(
        &self,
        set: &MigrationSet,
        history: &[HistoryRow],
        kept: &[Preimage],
        target: &DownTarget,
    ) -> Result<Plan, Error> {
        let status = entries(set, history.to_vec());
        let targets = self.down_targets(&status, target)?;
        let targets = targets
            .into_iter()
            .map(|mut m| {
                let expanded = status
                    .iter()
                    .any(|e| e.version == m.version && e.state == State::Expanded);
                let others = expanded_ops(&status, Some(&m.version));
                if let Step::Ops(o) = &mut m.step {
                    o.phase = if expanded { OpsPhase::Abort } else { OpsPhase::Revert };
                    o.in_flight = others.into_iter().map(|(v, _)| v).collect();
                }
                m
            })
            .collect::<Vec<_>>();
        let mut plan = self.empty(Way::Down, set, history, false, false);
        for m in targets {
            self.reversible(&m).await?;
            let back = put_back(kept, history, &m);
            plan.migrations
                .push(self.planned(m, Direction::Down, false, false, &back).await?);
        }
        Ok(plan)
    }

    /// What `complete` contracts: every expanded migration up to `to`, in
    /// version order.
    pub(crate) async fn complete(
        &self,
        set: &MigrationSet,
        history: &[HistoryRow],
        to: Option<&Version>,
    ) -> Result<Plan, Error> {
        let status = entries(set, history.to_vec());
        let mut plan = self.empty(Way::Complete, set, history, false, false);
        // Those completed earlier in this plan are in flight no longer.
        let mut in_flight: Vec<String> = expanded_ops(&status, None).into_iter().map(|(v, _)| v).collect();
        for e in status.iter().filter(|e| within(&e.version, to)) {
            match (e.state, &e.migration) {
                (State::Expanded, Some(m)) => {
                    let mut m = m.clone();
                    in_flight.retain(|v| v != m.version.as_str());
                    if let Step::Ops(o) = &mut m.step {
                        o.phase = OpsPhase::Complete;
                        o.in_flight = in_flight.clone();
                    }
                    plan.migrations
                        .push(self.planned(m, Direction::Up, false, false, &[]).await?);
                }
                (State::Modified, Some(m)) if m.step.has_contract() => {
                    let expanded = e.row.as_ref().is_some_and(|r| r.state == Recorded::Expanded);
                    if expanded {
                        return Err(Error::Drift {
                            message: format!(
                                "cannot complete {}: its ops.toml changed since it was expanded",
                                e.label()
                            ),
                            hint: Some(
                                "put the file back as it was expanded: complete runs the contract of what ran"
                                    .to_owned(),
                            ),
                        });
                    }
                }
                _ => {}
            }
        }
        if let Some(to) = to
            && !status.iter().any(|e| e.version == *to)
        {
            return Err(Error::Usage(format!("--to {to}: no migration has that version")));
        }
        Ok(plan)
    }

    /// What `redo` does: the newest migration reverted, then applied again.
    /// A redo stopped between the two (`open` holds what it reverted) is
    /// finished instead: its migration applied, and nothing more reverted.
    pub(crate) async fn redo(
        &self,
        set: &MigrationSet,
        history: &[HistoryRow],
        kept: &[Preimage],
        open: &HashSet<String>,
    ) -> Result<Plan, Error> {
        let stopped = set
            .migrations
            .iter()
            .find(|m| open.contains(m.version.as_str()) && !history.iter().any(|r| r.version == m.version.as_str()));
        if let Some(m) = stopped {
            tracing::warn!(
                "the last redo of {} stopped after reverting it; this one applies it again and reverts nothing",
                m.label()
            );
            let mut plan = self.empty(Way::Redo, set, history, false, false);
            let mut m = m.clone();
            self.to_apply(&mut m);
            plan.migrations
                .push(self.planned(m, Direction::Up, false, false, &[]).await?);
            return Ok(plan);
        }
        let mut plan = self.down(set, history, kept, &DownTarget::Steps(1)).await?;
        plan.way = Way::Redo;
        let again: Vec<Migration> = plan.migrations.iter().map(|p| p.migration.clone()).collect();
        for mut m in again {
            self.to_apply(&mut m);
            plan.migrations
                .push(self.planned(m, Direction::Up, false, false, &[]).await?);
        }
        Ok(plan)
    }

    /// An ops step's `up` phase: an expand on PostgreSQL; elsewhere, with
    /// no version schemas, the whole change at once.
    fn up_phase(&self) -> OpsPhase {
        if self.dialect == Dialect::Postgres {
            OpsPhase::Expand
        } else {
            OpsPhase::Direct
        }
    }

    /// Sets an ops step's phase for `up`.
    fn to_apply(&self, m: &mut Migration) {
        if let Step::Ops(o) = &mut m.step {
            o.phase = self.up_phase();
        }
    }

    /// Whether `m`'s `up` commits in batches here, before
    /// [`Self::to_apply`] has set its phase.
    fn batched_up(&self, m: &Migration) -> bool {
        match &m.step {
            Step::Ops(_) => self.up_phase().batched(),
            _ => batched(m),
        }
    }

    fn empty(&self, way: Way, set: &MigrationSet, history: &[HistoryRow], one: bool, dry_run: bool) -> Plan {
        Plan {
            way,
            dialect: self.dialect,
            migrations: Vec::new(),
            single_transaction: one && !dry_run,
            dry_run,
            preimages: self.preimages,
            basis: Basis::of(set, history),
        }
    }

    async fn planned(
        &self,
        m: Migration,
        direction: Direction,
        one_transaction: bool,
        resumes: bool,
        put_back: &[String],
    ) -> Result<PlannedMigration, Error> {
        // Loaded now, before anything runs: a component that does not
        // match its pin refuses the whole command.
        self.steps.load(&m)?;
        let script = script_for(&m, direction);
        let strategy = if one_transaction {
            Strategy::OneTransaction
        } else if batched(&m) {
            Strategy::Batched
        } else if self.atomic(&m, script) {
            Strategy::Atomic
        } else {
            Strategy::Recorded
        };
        let (step, _) = self.steps.component(&m)?;
        // An ops.toml is read by its component: asked even for a plan that
        // is not shown, a malformed one refuses before anything runs.
        let actions = if self.statements == Statements::No && !matches!(m.step, Step::Ops(_)) {
            Vec::new()
        } else {
            let call = Call {
                config: &config_of(&m, &self.history),
                ..Call::new(direction, host_dialect(self.dialect), &script.text)
            };
            match self.steps.host().plan(&step, &call).await {
                Ok(actions) => actions,
                Err(f) if self.statements == Statements::Weighed => {
                    tracing::debug!(migration = %m.label(), "its step cannot say its statements: {f}");
                    Vec::new()
                }
                Err(f) => return Err(failure(&m, script, f, true, Vec::new())),
            }
        };
        let keeps = match direction {
            Direction::Down => put_back.to_vec(),
            Direction::Up => self.kept_copies(&m, &actions),
        };
        let statements: Vec<(u32, &str)> = actions.iter().map(|a| (a.line, a.text.as_str())).collect();
        // An ops step's contract, abort and revert are its own statements,
        // written to the safe patterns lint asks for (a NOT NULL through a
        // validated check, renames and drops once the old application is
        // gone, of its own scaffolding): lint would only flag the design.
        // Its expand is linted, with the user's types, defaults and `sql`.
        let generated = matches!(
            m.step.ops_phase(),
            Some(OpsPhase::Complete | OpsPhase::Abort | OpsPhase::Revert)
        );
        let findings = if generated {
            Vec::new()
        } else {
            let mut columns = self.columns.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            lint::lint_with(
                self.dialect,
                strategy.transactional(),
                &statements,
                &script.text,
                &mut columns,
                self.lock_timeout,
            )
        };
        let findings = findings
            .into_iter()
            .map(|mut f| {
                if let Some(&severity) = self.severities.get(f.rule) {
                    f.severity = severity;
                }
                f
            })
            .collect();
        Ok(PlannedMigration {
            down: direction == Direction::Down,
            file: script.path.clone(),
            script_checksum: crate::source::checksum(&script.text),
            strategy,
            step: step.name().to_owned(),
            actions,
            keeps,
            resumes,
            findings,
            migration: m,
        })
    }

    /// What `up` keeps a copy of: what the step declares it drops, and
    /// what the SQL step's statements drop.
    fn kept_copies(&self, m: &Migration, actions: &[waymark_host::Action]) -> Vec<String> {
        if self.preimages == PreimageMode::Off {
            return Vec::new();
        }
        let mut objects = match &m.step {
            Step::Component(c) => c.drops.clone(),
            Step::Sql | Step::Ops(_) => Vec::new(),
        };
        if let Step::Sql = &m.step {
            for a in actions.iter().filter(|a| drops::may_drop(&a.text)) {
                objects.extend(drops::inspect(self.dialect, &a.text).drops);
            }
        }
        objects.iter().map(object_name).collect()
    }

    /// A component step that says it cannot be reverted refuses `down`.
    async fn reversible(&self, m: &Migration) -> Result<(), Error> {
        let Step::Component(c) = &m.step else { return Ok(()) };
        self.steps.load(m)?;
        let (step, _) = self.steps.component(m)?;
        let description = self
            .steps
            .host()
            .describe(&step, host_dialect(self.dialect), &c.config)
            .await
            .map_err(|f| failure(m, &m.up, f, true, Vec::new()))?;
        if !description.reversible {
            return Err(Error::Refused {
                message: format!(
                    "cannot revert {}: its step {} {} says it is irreversible",
                    m.label(),
                    description.name,
                    description.version
                ),
                hint: Some("nothing was reverted".to_owned()),
            });
        }
        Ok(())
    }

    /// Whether a migration's step and its history row commit together. A
    /// component step without `access = "read-write"` cannot run DDL (its
    /// permissions are checked per statement), so even on MySQL/MariaDB
    /// everything it does is transactional.
    fn atomic(&self, m: &Migration, script: &Script) -> bool {
        if script.no_transaction || batched(m) {
            return false;
        }
        self.dialect.transactional_ddl() || matches!(&m.step, Step::Component(c) if c.access != Access::ReadWrite)
    }

    /// What `up` would apply, after the checks that make it refuse.
    fn pending(&self, status: &[Entry], options: &UpOptions) -> Result<Vec<Migration>, Error> {
        let failed: Vec<&Entry> = status.iter().filter(|e| e.state == State::Failed).collect();
        // A step that commits in batches picks up where it stopped, if its
        // migration is unchanged: its checkpoint says where that is.
        let resumable = |e: &Entry| {
            e.migration
                .as_ref()
                .zip(e.row.as_ref())
                .is_some_and(|(m, row)| self.batched_up(m) && row.checksum == m.checksum)
        };
        if let [only] = failed.as_slice()
            && resumable(only)
            && !options.dry_run
        {
            let earlier_pending = status
                .iter()
                .any(|e| e.version < only.version && matches!(e.state, State::Pending | State::OutOfOrder));
            if !earlier_pending {
                drift_check(status, options.ignore_missing)?;
                let mut pending = vec![only.migration.clone().expect("resumable implies a migration")];
                pending.extend(
                    self.pending(
                        &status
                            .iter()
                            .filter(|e| e.version != only.version)
                            .cloned()
                            .collect::<Vec<_>>(),
                        options,
                    )?,
                );
                return Ok(pending);
            }
        }
        if let Some(first) = failed.first() {
            let row = first.row.as_ref().expect("failed implies a history row");
            let what = match row.state {
                Recorded::Running => "was interrupted while running outside a transaction".to_owned(),
                _ => {
                    let error = row.error.as_deref().unwrap_or("no error recorded");
                    // The recorded error names the migration already.
                    let prefix = format!("migration {} failed: ", first.label());
                    format!("failed: {}", error.strip_prefix(&prefix).unwrap_or(error))
                }
            };
            return Err(Error::Refused {
                message: format!(
                    "migration {} {what}; nothing will run until it is repaired",
                    first.label()
                ),
                hint: Some(format!(
                    "its statements before the failure may have taken effect: undo them by hand and run \
                     `waymark repair --rolled-back --version {v}` (it is then not applied), or finish it by hand \
                     and run `waymark repair --applied --version {v}` (it is then applied)",
                    v = first.version
                )),
            });
        }
        drift_check(status, options.ignore_missing)?;
        let out_of_order: Vec<String> = status
            .iter()
            .filter(|e| e.state == State::OutOfOrder && within(&e.version, options.to.as_ref()))
            .map(Entry::label)
            .collect();
        if !out_of_order.is_empty() && !options.allow_out_of_order {
            return Err(Error::Refused {
                message: format!(
                    "pending migration(s) older than the newest applied one: {}",
                    out_of_order.join(", ")
                ),
                hint: Some("pass --allow-out-of-order to apply them anyway".to_owned()),
            });
        }
        if let Some(to) = &options.to
            && !to.is_zero()
            && !status.iter().any(|e| e.version == *to)
        {
            return Err(Error::Usage(format!("--to {to}: no migration has that version")));
        }
        let pending: Vec<Migration> = status
            .iter()
            .filter(|e| {
                matches!(e.state, State::Pending | State::OutOfOrder) && within(&e.version, options.to.as_ref())
            })
            .filter_map(|e| e.migration.clone())
            .collect();
        if options.single_transaction || options.dry_run {
            let flag = if options.dry_run {
                "--dry-run"
            } else {
                "--single-transaction"
            };
            if !self.dialect.transactional_ddl() {
                return Err(Error::Usage(format!(
                    "{flag} is not possible on MySQL/MariaDB: DDL commits as it runs"
                )));
            }
            if let Some(m) = pending.iter().find(|m| m.up.no_transaction) {
                return Err(Error::Usage(format!(
                    "{flag} cannot include {}: it runs outside a transaction",
                    m.label()
                )));
            }
            if options.single_transaction
                && let Some(m) = pending.iter().find(|m| self.batched_up(m))
            {
                return Err(Error::Usage(format!(
                    "{flag} cannot include {}: its step commits in batches",
                    m.label()
                )));
            }
        }
        Ok(pending)
    }

    fn down_targets(&self, status: &[Entry], target: &DownTarget) -> Result<Vec<Migration>, Error> {
        if let Some(failed) = status.iter().find(|e| e.state == State::Failed) {
            return Err(Error::Refused {
                message: format!(
                    "migration {} is in a failed state; repair it before reverting anything",
                    failed.label()
                ),
                hint: Some(format!(
                    "if what it did is undone (or, for a failed down, finished) by hand: `waymark repair \
                     --rolled-back --version {v}`; if it stands applied: `waymark repair --applied --version {v}`",
                    v = failed.version
                )),
            });
        }
        let applied: Vec<&Entry> = status.iter().rev().filter(|e| e.state.is_applied()).collect();
        let chosen: Vec<&Entry> = match target {
            DownTarget::Steps(n) => applied.into_iter().take(*n).collect(),
            DownTarget::All => applied,
            DownTarget::To(v) => {
                if !v.is_zero() && !status.iter().any(|e| e.version == *v) {
                    return Err(Error::Usage(format!("--to {v}: no migration has that version")));
                }
                applied.into_iter().filter(|e| e.version > *v).collect()
            }
        };
        let mut out = Vec::new();
        for e in chosen {
            match (e.state, &e.migration) {
                (State::Missing, _) | (_, None) => {
                    return Err(Error::Drift {
                        message: format!("cannot revert {}: its migration file is missing", e.label()),
                        hint: Some("restore the file, or run `waymark repair --forget-missing`".to_owned()),
                    });
                }
                (State::Modified, _) => {
                    return Err(Error::Drift {
                        message: format!(
                            "cannot revert {}: it changed since it was applied, so its down script may not match",
                            e.label()
                        ),
                        hint: Some(format!(
                            "check the change, then run `waymark repair --accept-checksums --version {}`",
                            e.version
                        )),
                    });
                }
                (_, Some(m)) if m.down.is_none() => {
                    return Err(Error::Refused {
                        message: format!(
                            "cannot revert {}: it has no down script, so it is irreversible",
                            m.label()
                        ),
                        hint: Some("nothing was reverted".to_owned()),
                    });
                }
                (_, Some(m)) => {
                    if let Some(path) = m.empty_down() {
                        let path = path.display();
                        return Err(Error::Refused {
                            message: format!(
                                "cannot revert {}: its down script {path} holds no statement, so reverting it would change nothing",
                                m.label()
                            ),
                            hint: Some(format!(
                                "write the statements that undo it in {path}; if undoing it needs none, add the line `{}`; nothing was reverted",
                                crate::source::EMPTY_DOWN
                            )),
                        });
                    }
                    out.push(m.clone());
                }
            }
        }
        Ok(out)
    }
}

/// The expanded `ops.toml` migrations (but `except`), with their tables.
fn expanded_ops(status: &[Entry], except: Option<&Version>) -> Vec<(String, Vec<String>)> {
    status
        .iter()
        .filter(|e| e.state == State::Expanded && Some(&e.version) != except)
        .filter_map(|e| match e.migration.as_ref().map(|m| &m.step) {
            Some(Step::Ops(o)) => Some((e.version.to_string(), o.tables.clone())),
            _ => None,
        })
        .collect()
}

/// Tells each pending `ops.toml` migration which others are in flight
/// beside it (expanded, or expanded earlier in this plan), and refuses
/// two in flight on one table, naming both and the table: their triggers
/// and views would each see only half of the other's change.
fn in_flight_beside(status: &[Entry], pending: Vec<Migration>) -> Result<Vec<Migration>, Error> {
    let mut in_flight = expanded_ops(status, None);
    let mut out = Vec::with_capacity(pending.len());
    for mut m in pending {
        let label = m.label();
        if let Step::Ops(o) = &mut m.step {
            for (version, tables) in &in_flight {
                if let Some(table) = o.tables.iter().find(|t| tables.contains(t)) {
                    let other = status
                        .iter()
                        .find(|e| e.version.as_str() == version)
                        .map_or_else(|| version.clone(), Entry::label);
                    return Err(Error::Refused {
                        message: format!(
                            "migration {label} changes table {table}, which migration {other} changes too, and {other} is not completed"
                        ),
                        hint: Some(format!(
                            "run `waymark complete` for {other} first (once the application versions before it are gone); nothing ran"
                        )),
                    });
                }
            }
            o.in_flight = in_flight.iter().map(|(v, _)| v.clone()).collect();
            in_flight.push((m.version.to_string(), o.tables.clone()));
        }
        out.push(m);
    }
    Ok(out)
}

/// The copies a `down` of `m` puts back once their place exists: its own,
/// and those that earlier `down`s left waiting (their migration is no
/// longer applied).
fn put_back(kept: &[Preimage], history: &[HistoryRow], m: &Migration) -> Vec<String> {
    kept.iter()
        .filter(|p| p.version == m.version.as_str() || !history.iter().any(|r| r.version == p.version))
        .map(|p| p.object.clone())
        .collect()
}

fn object_name(o: &waymark_db::ObjectRef) -> String {
    let mut parts: Vec<&str> = o.table.iter().map(|i| i.value.as_str()).collect();
    if let Some(c) = &o.column {
        parts.push(&c.value);
    }
    parts.join(".")
}

fn within(version: &Version, to: Option<&Version>) -> bool {
    to.is_none_or(|to| version <= to)
}

fn drift_check(status: &[Entry], ignore_missing: bool) -> Result<(), Error> {
    let modified: Vec<String> = status
        .iter()
        .filter(|e| e.state == State::Modified)
        .map(Entry::label)
        .collect();
    if !modified.is_empty() {
        return Err(Error::Drift {
            message: format!(
                "applied migration(s) changed since they were applied: {}",
                modified.join(", ")
            ),
            hint: Some(
                "restore the original files, or accept the change with `waymark repair --accept-checksums`".to_owned(),
            ),
        });
    }
    let missing: Vec<String> = status
        .iter()
        .filter(|e| e.state == State::Missing)
        .map(Entry::label)
        .collect();
    if !missing.is_empty() && !ignore_missing {
        return Err(Error::Drift {
            message: format!("applied migration(s) have no file: {}", missing.join(", ")),
            hint: Some("restore the files, pass --ignore-missing, or run `waymark repair --forget-missing`".to_owned()),
        });
    }
    Ok(())
}
