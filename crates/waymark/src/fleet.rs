//! `waymark fleet`: the fleet file's targets, through `waymark-fleet`.

use std::collections::BTreeMap;
use std::sync::Arc;

use waymark_core::{MigrationSet, Steps};
use waymark_fleet::{EngineRunner, FleetError, Inventory, Look, Outcome, Rollout, Shard, Standing};

use crate::cli::{FleetArgs, FleetCommand, FleetDownArgs, FleetRunArgs};
use crate::config::Settings;
use crate::exit;
use crate::json::{
    EventKind, FleetGate, FleetPlan, FleetPlanGroup, FleetPlanned, FleetRollout, FleetStatus, FleetTarget,
    FleetTargetStatus, FleetWave, ms,
};
use crate::metrics::Metrics;
use crate::output::{FleetView, Output};

pub(crate) async fn fleet(
    command: &FleetCommand,
    settings: &Settings,
    set: &MigrationSet,
    out: &Output,
) -> anyhow::Result<u8> {
    let (FleetCommand::Status(args)
    | FleetCommand::Verify(args)
    | FleetCommand::Plan(args)
    | FleetCommand::Up(FleetRunArgs { fleet: args, .. })
    | FleetCommand::Down(FleetDownArgs {
        run: FleetRunArgs { fleet: args, .. },
        ..
    })) = command;
    // Everything is checked before anything connects.
    let mut inventory = inventory(args, settings)?;
    let down_to = match command {
        FleetCommand::Down(FleetDownArgs { to, .. }) => match crate::down_target(Some(to), None, false)? {
            waymark_core::DownTarget::To(version) => Some(version),
            _ => unreachable!("--to gives a version"),
        },
        _ => None,
    };
    if down_to.is_some() {
        // The widest wave first, the canary last: the reverse of `up`.
        inventory.waves.reverse();
    }
    let shard = args.shard.as_deref().map(Shard::parse).transpose()?;
    // Only a rollout writes, and so may create a SQLite target's file.
    let options = crate::engine_options(settings, matches!(command, FleetCommand::Up(_) | FleetCommand::Down(_)));
    let mut runner = EngineRunner {
        set,
        steps: Arc::new(Steps::new(options.limits.clone(), options.cache_dir.clone())?),
        options,
        prepare: None,
        on_event: None,
        down_to,
    };
    if let Some(log) = &out.events {
        let (for_engine, for_events) = (log.clone(), log.clone());
        runner.prepare = Some(Arc::new(move |target: &str, engine: &mut waymark_core::Engine| {
            engine.on_statement(for_engine.statements(target));
            engine.on_lock_retry(for_engine.lock_retries(target, None));
        }));
        runner.on_event = Some(Arc::new(move |target: &str, event: &waymark_core::Event<'_>| {
            for_events.engine(target, event);
        }));
    }
    match command {
        FleetCommand::Status(_) => status(args, &inventory, shard, set, &runner, out, Look::Status).await,
        FleetCommand::Verify(_) => status(args, &inventory, shard, set, &runner, out, Look::Verify).await,
        FleetCommand::Plan(_) => {
            let groups = waymark_fleet::plan(&inventory, shard, set, &runner, args.parallel).await;
            let reply = FleetPlan {
                fleet: inventory.path.display().to_string(),
                groups: groups.into_iter().map(plan_group).collect(),
            };
            let ok = reply.groups.iter().all(|g| g.state != "pending" || g.error.is_none());
            out.fleet_plan(&reply, ok);
            Ok(if ok { 0 } else { exit::FAILED })
        }
        FleetCommand::Up(run) | FleetCommand::Down(FleetDownArgs { run, .. }) => {
            let mut metrics = run
                .metrics_file
                .as_deref()
                .map(|path| Metrics::start(path, &inventory, shard))
                .transpose()?;
            let targets = inventory.taken(shard).count();
            let mut view = FleetView::new(out, targets as u64);
            let rollout = waymark_fleet::roll_out(&inventory, shard, &runner, &mut |u| {
                out.fleet_update(&u, view.as_mut());
                if let Some(metrics) = metrics.as_mut() {
                    metrics.update(&u);
                }
            })
            .await;
            if let Some(metrics) = metrics.as_mut() {
                metrics.finish(&rollout);
            }
            if let Some(view) = view {
                view.finish();
            }
            let reply = rollout_json(args, &inventory, &rollout);
            if let Some(log) = &out.events {
                log.write(
                    None,
                    EventKind::RolloutFinished {
                        halted: reply.halted.clone(),
                        totals: &reply.totals,
                    },
                );
            }
            // A failure within a wave's budget let the rollout go on, but
            // that target is still not up to date: a pipeline must see it.
            let failed = rollout.waves.iter().any(|w| w.failures() > 0);
            out.fleet_rollout(&reply, rollout.halted.is_none() && !failed);
            Ok(match (&rollout.halted, failed) {
                (Some(_), _) => exit::FAILED,
                (None, true) => exit::DIFFERENCES,
                (None, false) => 0,
            })
        }
    }
}

/// The fleet: `--fleet FILE`, else `fleet.toml`, else the `[fleet]`
/// table of the config file; both of the last two is a choice waymark
/// does not make for the user.
fn inventory(args: &FleetArgs, settings: &Settings) -> Result<Inventory, FleetError> {
    let default = std::path::Path::new("fleet.toml");
    match (&args.fleet, default.exists(), &settings.fleet_in) {
        (Some(path), _, _) => Inventory::load(path),
        (None, true, Some(config)) => Err(FleetError::Usage(format!(
            "there is a fleet.toml and a [fleet] table in {}: keep one, or name the file with --fleet",
            config.display()
        ))),
        (None, true, None) => Inventory::load(default),
        (None, false, Some(config)) => Inventory::load_section(config),
        (None, false, None) => Err(FleetError::Usage(
            "no fleet: write fleet.toml (docs/guide/fleet.md), name one with --fleet FILE, or put [fleet] in \
             waymark.toml"
                .to_owned(),
        )),
    }
}

async fn status(
    args: &FleetArgs,
    inventory: &Inventory,
    shard: Option<Shard>,
    set: &MigrationSet,
    runner: &EngineRunner<'_>,
    out: &Output,
    look: Look,
) -> anyhow::Result<u8> {
    let seen = waymark_fleet::status(inventory, shard, set, runner, args.parallel, look).await;
    let mut totals = BTreeMap::new();
    let targets: Vec<FleetTargetStatus> = seen
        .into_iter()
        .map(|t| {
            *totals.entry(t.standing.as_str()).or_insert(0) += 1;
            let (migrations, detail) = match &t.standing {
                Standing::Pending(labels) => (labels.clone(), String::new()),
                Standing::NeedsRepair(_, versions) => (versions.clone(), String::new()),
                other => (Vec::new(), other.detail()),
            };
            FleetTargetStatus {
                name: t.name,
                wave: t.wave,
                state: t.standing.as_str(),
                migrations,
                detail,
                duration_ms: ms(t.duration),
            }
        })
        .collect();
    let good = match look {
        Look::Status => "up-to-date",
        Look::Verify => "verified",
    };
    let all_up_to_date = targets.iter().all(|t| t.state == good);
    out.fleet_status(
        &FleetStatus {
            fleet: inventory.path.display().to_string(),
            targets,
            totals,
        },
        all_up_to_date,
    );
    Ok(if all_up_to_date { 0 } else { exit::DIFFERENCES })
}

fn plan_group(g: waymark_fleet::PlanGroup) -> FleetPlanGroup {
    let (migrations, mut error) = match &g.standing {
        Standing::Pending(labels) => (labels.clone(), None),
        Standing::NeedsRepair(_, versions) => (versions.clone(), None),
        Standing::Unreachable(cause) | Standing::Error(cause) => (Vec::new(), Some(cause.clone())),
        Standing::UpToDate { .. } | Standing::Verified { .. } => (Vec::new(), None),
    };
    let planned_on = g.plan.as_ref().map(|_| g.targets[0].clone());
    let plan = match g.plan {
        Some(Ok(plan)) => plan
            .migrations
            .iter()
            .map(|p| FleetPlanned {
                migration: p.migration.label(),
                strategy: p.strategy.as_str(),
                findings: p
                    .findings
                    .iter()
                    .map(|f| format!("{} {} line {}: {}", f.rule, f.severity.as_str(), f.line, f.message))
                    .collect(),
            })
            .collect(),
        Some(Err(e)) => {
            error = Some(e);
            Vec::new()
        }
        None => Vec::new(),
    };
    FleetPlanGroup {
        state: g.standing.as_str(),
        migrations,
        targets: g.targets,
        planned_on,
        plan,
        error,
    }
}

fn rollout_json(args: &FleetArgs, fleet: &Inventory, rollout: &Rollout) -> FleetRollout {
    let mut totals = BTreeMap::new();
    let waves = rollout
        .waves
        .iter()
        .map(|w| {
            *totals.entry("not-started").or_insert(0) += w.not_started.len();
            FleetWave {
                name: w.name.clone(),
                state: w.state.as_str(),
                max_failures: w.allowed,
                targets: w
                    .targets
                    .iter()
                    .map(|t| {
                        *totals.entry(t.outcome.as_str()).or_insert(0) += 1;
                        FleetTarget {
                            name: t.name.clone(),
                            outcome: t.outcome.as_str(),
                            applied: t.outcome.migrations().to_vec(),
                            error: t.outcome.error().map(str::to_owned),
                            hint: match &t.outcome {
                                Outcome::Failed { hint, .. } => hint.clone(),
                                _ => None,
                            },
                            duration_ms: ms(t.duration),
                        }
                    })
                    .collect(),
                not_started: w.not_started.clone(),
                gate: w.gate.as_ref().map(|g| FleetGate {
                    passed: g.passed,
                    paused_ms: ms(g.paused),
                    code: g.code,
                    message: g.message.clone(),
                }),
            }
        })
        .collect();
    FleetRollout {
        fleet: fleet.path.display().to_string(),
        shard: args.shard.clone(),
        waves,
        halted: rollout.halted.as_ref().map(ToString::to_string),
        totals,
        duration_ms: ms(rollout.duration),
    }
}
