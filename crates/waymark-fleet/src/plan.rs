//! `fleet plan`: the targets grouped by where they stand, and one plan for
//! each group with something pending, so two hundred tenants at the same
//! version show one plan, not two hundred.

use waymark_core::{MigrationSet, Plan};

use crate::inventory::Inventory;
use crate::shard::Shard;
use crate::status::{Look, Standing, status};
use crate::target::EngineRunner;

/// Targets that stand alike.
#[derive(Debug)]
pub struct PlanGroup {
    /// Where they stand (the first target's standing; targets are grouped
    /// by state and migrations, so the rest differ at most in a cause's
    /// wording).
    pub standing: Standing,
    /// Their names, in file order.
    pub targets: Vec<String>,
    /// For a pending group, the plan made on its first target, or why it
    /// could not be made.
    pub plan: Option<Result<Plan, String>>,
}

/// Groups every target (of `shard`) by its standing and plans each pending
/// group once, on its first target.
pub async fn plan(
    fleet: &Inventory,
    shard: Option<Shard>,
    set: &MigrationSet,
    runner: &EngineRunner<'_>,
    parallel: usize,
) -> Vec<PlanGroup> {
    let seen = status(fleet, shard, set, runner, parallel, Look::Status).await;
    let mut groups: Vec<(String, PlanGroup)> = Vec::new();
    for t in seen {
        let key = match &t.standing {
            Standing::Pending(labels) => format!("pending {}", labels.join(" ")),
            Standing::NeedsRepair(state, versions) => format!("{state} {}", versions.join(" ")),
            other => other.as_str().to_owned(),
        };
        match groups.iter_mut().find(|(k, _)| *k == key) {
            Some((_, group)) => group.targets.push(t.name),
            None => groups.push((
                key,
                PlanGroup {
                    standing: t.standing,
                    targets: vec![t.name],
                    plan: None,
                },
            )),
        }
    }
    let mut out = Vec::with_capacity(groups.len());
    for (_, mut group) in groups {
        if matches!(group.standing, Standing::Pending(_)) {
            let first = fleet
                .targets
                .iter()
                .find(|t| t.name == group.targets[0])
                .expect("grouped from the fleet's targets");
            group.plan = Some(runner.plan(first, set).await);
        }
        out.push(group);
    }
    out
}
