//! A plan written to a file (`plan --out`) and applied later (`up --plan`),
//! as Terraform's saved plans are: the plan is reviewed, and exactly what
//! was reviewed runs, or nothing does.
//!
//! The file records what the plan was made from (every history row and
//! every migration file's checksum) and the options it was made with.
//! Before it runs, under the migration lock, the history and the files are
//! compared with that record, and the plan is made again from them and
//! compared migration by migration; any difference refuses, naming it.

use std::path::{Path, PathBuf};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use waymark_db::Dialect;

use super::{Basis, Plan, Strategy};
use crate::engine::{DownTarget, PreimageMode, UpOptions};
use crate::error::Error;
use crate::version::Version;

/// The version of the file format this waymark writes and reads.
pub const PLAN_FORMAT: u32 = 1;

/// A plan as written to a file and printed by `plan --json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SavedPlan {
    /// The file format's version ([`PLAN_FORMAT`]).
    pub waymark_plan: u32,
    /// `up` or `down`.
    pub direction: String,
    /// The dialect it was made for: `postgres`, `mysql` or `sqlite`.
    pub dialect: String,
    /// The database it was made against, without its password; another
    /// database in the same state may apply it.
    pub made_against: String,
    /// Whether the batch runs in one transaction.
    pub single_transaction: bool,
    /// Whether that transaction is rolled back at the end.
    pub dry_run: bool,
    /// What happens to dropped data: `off`, `keep` or `strict`.
    pub preimages: String,
    /// The options it was made with, to make it again from.
    pub options: SavedOptions,
    /// In order.
    pub migrations: Vec<SavedMigration>,
    /// The history it was made from.
    pub history: Vec<SavedRow>,
    /// Every migration file it was made from.
    pub files: Vec<SavedFile>,
}

/// The options a plan was made with.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SavedOptions {
    /// `up --to`, or for `down`, `--to`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    /// `down --steps`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub steps: Option<usize>,
    /// `down --all`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub all: bool,
    /// `--allow-out-of-order`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_out_of_order: bool,
    /// `--ignore-missing`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub ignore_missing: bool,
}

/// One migration of a saved plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SavedMigration {
    /// Its version.
    pub version: String,
    /// Its name.
    pub name: String,
    /// `up` or `down`.
    pub direction: String,
    /// The script that runs.
    pub file: PathBuf,
    /// SHA-256 of that script.
    pub checksum: String,
    /// `atomic`, `recorded`, `batched` or `one-transaction`.
    pub strategy: String,
    /// Whether it runs in a transaction.
    pub transactional: bool,
    /// The step component that runs it.
    pub step: String,
    /// What the step says it will do.
    pub actions: Vec<SavedAction>,
    /// The tables and columns whose data it keeps a copy of, or the copies
    /// it puts back.
    #[serde(default)]
    pub keeps: Vec<String>,
    /// Whether it resumes an interrupted batched run.
    #[serde(default)]
    pub resumes: bool,
    /// What the lint rules say of its statements.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub findings: Vec<SavedFinding>,
}

/// A lint rule firing on one statement (`waymark lint` lists the rules).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SavedFinding {
    /// The rule's stable id, as `-- waymark:allow <rule> <reason>` names it.
    pub rule: String,
    /// `warning`, or `error`: `up` refuses an error unless it is allowed.
    pub severity: String,
    /// The statement's 1-based line in its script.
    pub line: u32,
    /// What the rule says of the statement.
    pub message: String,
    /// The lock the operation takes.
    pub lock: String,
    /// The safe way to write it.
    pub fix: String,
    /// The reason given where the finding is allowed; an allowed finding
    /// refuses nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed: Option<String>,
}

impl From<&crate::sql::lint::Finding> for SavedFinding {
    fn from(f: &crate::sql::lint::Finding) -> Self {
        SavedFinding {
            rule: f.rule.to_owned(),
            severity: f.severity.as_str().to_owned(),
            line: f.line,
            message: f.message.clone(),
            lock: f.lock.to_owned(),
            fix: f.fix.to_owned(),
            allowed: f.allowed.clone(),
        }
    }
}

/// One statement (or sentence) a step says it will run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SavedAction {
    /// Its 1-based line in the script, 0 if none.
    pub line: u32,
    /// The statement.
    pub text: String,
}

/// A history row a plan was made from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SavedRow {
    /// The version.
    pub version: String,
    /// `applied`, `baseline`, `running` or `failed`.
    pub state: String,
    /// The recorded checksum.
    pub checksum: String,
}

/// A migration file a plan was made from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SavedFile {
    /// The migration's version.
    pub version: String,
    /// Its up script (or `step.toml`).
    pub path: PathBuf,
    /// The migration's checksum.
    pub checksum: String,
}

impl SavedPlan {
    /// The saved form of `plan`, made with `options` against `target`.
    pub fn new(plan: &Plan, options: SavedOptions, target: &str) -> Self {
        SavedPlan {
            waymark_plan: PLAN_FORMAT,
            direction: plan.way.as_str().to_owned(),
            dialect: plan.dialect.name().to_owned(),
            made_against: target.to_owned(),
            single_transaction: plan.single_transaction,
            dry_run: plan.dry_run,
            preimages: preimage_name(plan.preimages).to_owned(),
            options,
            migrations: plan
                .migrations
                .iter()
                .map(|p| SavedMigration {
                    version: p.migration.version.to_string(),
                    name: p.migration.name.clone(),
                    direction: if p.down { "down" } else { "up" }.to_owned(),
                    file: p.file.clone(),
                    checksum: p.script_checksum.clone(),
                    strategy: p.strategy.as_str().to_owned(),
                    transactional: p.transactional(),
                    step: p.step.clone(),
                    actions: p
                        .actions
                        .iter()
                        .map(|a| SavedAction {
                            line: a.line,
                            text: a.text.clone(),
                        })
                        .collect(),
                    keeps: p.keeps.clone(),
                    resumes: p.resumes,
                    findings: p.findings.iter().map(SavedFinding::from).collect(),
                })
                .collect(),
            history: plan
                .basis
                .history
                .iter()
                .map(|(version, state, checksum)| SavedRow {
                    version: version.clone(),
                    state: state.clone(),
                    checksum: checksum.clone(),
                })
                .collect(),
            files: plan
                .basis
                .files
                .iter()
                .map(|(version, path, checksum)| SavedFile {
                    version: version.clone(),
                    path: path.clone(),
                    checksum: checksum.clone(),
                })
                .collect(),
        }
    }

    /// Writes it to `path`, whole or not at all.
    pub fn write(&self, path: &Path) -> Result<(), Error> {
        let text = serde_json::to_string_pretty(self).expect("a plan serializes");
        let dir = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let fail = |e: std::io::Error| Error::Usage(format!("{}: cannot write the plan: {e}", path.display()));
        let mut file = tempfile::NamedTempFile::new_in(dir).map_err(fail)?;
        std::io::Write::write_all(&mut file, format!("{text}\n").as_bytes()).map_err(fail)?;
        file.persist(path).map_err(|e| fail(e.error))?;
        Ok(())
    }

    /// The options of `up` it was made with.
    pub(crate) fn up_options(&self) -> Result<UpOptions, Error> {
        Ok(UpOptions {
            to: self.options.to.as_deref().map(Version::from_history),
            single_transaction: self.single_transaction,
            allow_out_of_order: self.options.allow_out_of_order,
            ignore_missing: self.options.ignore_missing,
            dry_run: self.dry_run,
            backup: None,
        })
    }

    /// The target of `down` it was made with.
    pub(crate) fn down_target(&self) -> DownTarget {
        match (&self.options.to, self.options.steps, self.options.all) {
            (_, _, true) => DownTarget::All,
            (Some(to), _, _) => DownTarget::To(Version::from_history(to)),
            (None, Some(n), _) => DownTarget::Steps(n),
            (None, None, _) => DownTarget::Steps(1),
        }
    }

    pub(crate) fn preimage_mode(&self) -> PreimageMode {
        match self.preimages.as_str() {
            "off" => PreimageMode::Off,
            "strict" => PreimageMode::Strict,
            _ => PreimageMode::Keep,
        }
    }

    /// What differs between the state this plan was made from and `now`
    /// (the same plan made again from the database's history and the
    /// files as they are), each named; empty when it may run.
    pub(crate) fn differences(&self, now: &Plan) -> Vec<String> {
        let mut out = Vec::new();
        if self.dialect != now.dialect.name() {
            out.push(format!(
                "the plan was made for {}, and this database is {}",
                self.dialect,
                now.dialect.name()
            ));
            return out;
        }
        history_differences(&self.history, &now.basis, &mut out);
        file_differences(&self.files, &now.basis, &mut out);
        if !out.is_empty() {
            return out;
        }
        // The same state gives the same plan; a plan that differs was
        // edited, or made by a waymark that plans differently.
        let again = SavedPlan::new(now, self.options.clone(), &self.made_against);
        let said: Vec<String> = self.migrations.iter().map(summary).collect();
        let would: Vec<String> = again.migrations.iter().map(summary).collect();
        if said != would {
            out.push(format!(
                "the plan says [{}], but from this state waymark would run [{}]",
                said.join(", "),
                would.join(", ")
            ));
        }
        for (saved, now) in self.migrations.iter().zip(&again.migrations) {
            if saved.checksum != now.checksum {
                out.push(format!(
                    "{} changed since the plan was made (SHA-256 {} then, {} now)",
                    now.file.display(),
                    short(&saved.checksum),
                    short(&now.checksum)
                ));
            }
        }
        out
    }
}

fn summary(m: &SavedMigration) -> String {
    format!("{} {}_{} {}", m.direction, m.version, m.name, m.strategy)
}

fn history_differences(saved: &[SavedRow], now: &Basis, out: &mut Vec<String>) {
    for row in saved {
        match now.history.iter().find(|(v, ..)| *v == row.version) {
            None => out.push(format!(
                "migration {} was {} when the plan was made and has no history row now (another runner reverted \
                 or repaired it)",
                row.version, row.state
            )),
            Some((_, state, _)) if *state != row.state => out.push(format!(
                "migration {} was {} when the plan was made and is {state} now",
                row.version, row.state
            )),
            Some((_, _, checksum)) if *checksum != row.checksum => out.push(format!(
                "migration {}'s recorded checksum changed since the plan was made (repaired)",
                row.version
            )),
            Some(_) => {}
        }
    }
    for (version, state, _) in &now.history {
        if !saved.iter().any(|r| r.version == *version) {
            out.push(format!(
                "migration {version} is {state} now and had no history row when the plan was made (it ran since: \
                 another runner got there first, or this plan was applied already)"
            ));
        }
    }
}

fn file_differences(saved: &[SavedFile], now: &Basis, out: &mut Vec<String>) {
    for file in saved {
        match now.files.iter().find(|(v, ..)| *v == file.version) {
            None => out.push(format!("{} is gone since the plan was made", file.path.display())),
            Some((_, path, checksum)) if *checksum != file.checksum => out.push(format!(
                "{} changed since the plan was made (SHA-256 {} then, {} now)",
                path.display(),
                short(&file.checksum),
                short(checksum)
            )),
            Some(_) => {}
        }
    }
    for (version, path, _) in &now.files {
        if !saved.iter().any(|f| f.version == *version) {
            out.push(format!(
                "{} (version {version}) is new since the plan was made",
                path.display()
            ));
        }
    }
}

fn short(sha: &str) -> &str {
    &sha[..sha.len().min(12)]
}

fn preimage_name(mode: PreimageMode) -> &'static str {
    match mode {
        PreimageMode::Off => "off",
        PreimageMode::Keep => "keep",
        PreimageMode::Strict => "strict",
    }
}

/// Reads a plan written by `plan --out`, naming the file in any error.
pub fn read_saved(path: &Path) -> Result<SavedPlan, Error> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::Usage(format!("{}: cannot read the plan: {e}", path.display())))?;
    // The format's version first, so that a newer file says so rather than
    // failing on a field this waymark does not know.
    #[derive(Deserialize)]
    struct Head {
        waymark_plan: Option<u32>,
    }
    let not_a_plan = |e: serde_json::Error| {
        Error::Usage(format!(
            "{}:{}:{}: not a waymark plan: {e}",
            path.display(),
            e.line(),
            e.column()
        ))
    };
    let head: Head = serde_json::from_str(&text).map_err(not_a_plan)?;
    match head.waymark_plan {
        None => {
            return Err(Error::Usage(format!(
                "{}: not a waymark plan (no `waymark_plan` field); write one with `waymark plan --out`",
                path.display()
            )));
        }
        Some(v) if v > PLAN_FORMAT => {
            return Err(Error::Usage(format!(
                "{}: written by a newer waymark (plan format {v}; this one reads {PLAN_FORMAT})",
                path.display()
            )));
        }
        Some(_) => {}
    }
    let saved: SavedPlan = serde_json::from_str(&text).map_err(not_a_plan)?;
    if Dialect::parse(&saved.dialect).is_none() {
        return Err(Error::Usage(format!(
            "{}: unknown dialect {:?} (postgres, mysql or sqlite)",
            path.display(),
            saved.dialect
        )));
    }
    if let Some(m) = saved.migrations.iter().find(|m| Strategy::parse(&m.strategy).is_none()) {
        return Err(Error::Usage(format!(
            "{}: migration {}_{} has unknown strategy {:?}",
            path.display(),
            m.version,
            m.name,
            m.strategy
        )));
    }
    if !["up", "down"].contains(&saved.direction.as_str()) {
        return Err(Error::Usage(format!(
            "{}: unknown direction {:?} (up or down)",
            path.display(),
            saved.direction
        )));
    }
    Ok(saved)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_from_a_newer_waymark_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("plan.json");
        std::fs::write(&path, r#"{"waymark_plan": 9, "something": "new"}"#).unwrap();
        let e = read_saved(&path).unwrap_err().to_string();
        assert!(
            e.contains("plan.json: written by a newer waymark (plan format 9; this one reads 1)"),
            "{e}"
        );
    }

    #[test]
    fn a_file_that_is_not_a_plan_is_named_with_its_position() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("plan.json");
        std::fs::write(&path, "{\n  \"waymark_plan\": 1,\n  oops\n}").unwrap();
        let e = read_saved(&path).unwrap_err().to_string();
        assert!(e.contains("plan.json:3:"), "{e}");
        std::fs::write(&path, "{}").unwrap();
        let e = read_saved(&path).unwrap_err().to_string();
        assert!(e.contains("no `waymark_plan` field"), "{e}");
    }
}
