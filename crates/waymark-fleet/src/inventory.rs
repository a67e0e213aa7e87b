//! The fleet file: targets with labels, and the waves that take them.
//!
//! Everything is checked before anything connects, and each refusal names
//! the file, the line and the key: a rollout that starts and then finds a
//! typo half-way has already changed part of the fleet.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use crate::error::FleetError;
use crate::gate::Gate;
use crate::shard::Shard;

/// A checked fleet: every target in exactly one wave.
#[derive(Debug, Clone)]
pub struct Inventory {
    /// The file it was read from.
    pub path: PathBuf,
    /// In file order.
    pub targets: Vec<Target>,
    /// In the order they run; the first is the canary.
    pub waves: Vec<Wave>,
}

/// One database of the fleet.
#[derive(Debug, Clone)]
pub struct Target {
    /// Its name, unique in the fleet: what every report calls it.
    pub name: String,
    /// Its URL, read from the file or from the environment.
    pub url: String,
    /// Its labels, which waves select by.
    pub labels: BTreeMap<String, String>,
    /// Where it is written.
    pub line: usize,
}

/// Targets that run together, and what must hold before the next wave.
#[derive(Debug, Clone)]
pub struct Wave {
    /// Its name (`wave N` when the file gives none).
    pub name: String,
    /// Indexes into [`Inventory::targets`], in file order.
    pub targets: Vec<usize>,
    /// How many of its targets run at once.
    pub parallel: usize,
    /// How many of its targets may fail before the rollout halts.
    pub max_failures: Budget,
    /// What runs before the next wave.
    pub gate: Option<Gate>,
}

/// How many failures a wave tolerates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Budget {
    /// At most this many.
    Count(usize),
    /// At most this share of the wave's targets, in percent, rounded down.
    Percent(u8),
}

impl Budget {
    /// The failures allowed in a wave of `targets` targets.
    pub fn allowed(self, targets: usize) -> usize {
        match self {
            Budget::Count(n) => n,
            Budget::Percent(p) => targets * usize::from(p) / 100,
        }
    }
}

impl std::fmt::Display for Budget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Budget::Count(n) => write!(f, "{n}"),
            Budget::Percent(p) => write!(f, "{p}%"),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileRaw {
    #[serde(default)]
    target: Vec<Spanned<TargetRaw>>,
    #[serde(default)]
    wave: Vec<Spanned<WaveRaw>>,
}

/// `waymark.toml`, of which only `[fleet]` is read here; the binary checks
/// the rest.
#[derive(Deserialize)]
struct ConfigRaw {
    fleet: FileRaw,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TargetRaw {
    name: Spanned<String>,
    url: Option<String>,
    url_env: Option<Spanned<String>>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WaveRaw {
    name: Option<Spanned<String>>,
    select: Option<Spanned<SelectRaw>>,
    parallel: Option<Spanned<i64>>,
    max_failures: Option<Spanned<BudgetRaw>>,
    gate: Option<Spanned<GateRaw>>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum SelectRaw {
    Everything(String),
    Labels(BTreeMap<String, String>),
}

#[derive(Deserialize)]
#[serde(untagged)]
enum BudgetRaw {
    Count(i64),
    Share(String),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GateRaw {
    check: Option<String>,
    pause: Option<String>,
    timeout: Option<String>,
}

/// How long a gate's check may run when the file does not say.
const CHECK_TIMEOUT: Duration = Duration::from_secs(300);

impl Inventory {
    /// Reads and checks the fleet file at `path`, taking `url_env`
    /// variables from the process's environment.
    pub fn load(path: &Path) -> Result<Inventory, FleetError> {
        let text = std::fs::read_to_string(path).map_err(|source| FleetError::Read {
            path: path.to_owned(),
            source,
        })?;
        Inventory::parse(path, &text, |name| std::env::var(name).ok())
    }

    /// Reads and checks the `[fleet]` table of the config file at `path`
    /// (`[[fleet.target]]`, `[[fleet.wave]]`), naming its lines in that file.
    pub fn load_section(path: &Path) -> Result<Inventory, FleetError> {
        let text = std::fs::read_to_string(path).map_err(|source| FleetError::Read {
            path: path.to_owned(),
            source,
        })?;
        Inventory::parse_section(path, &text, |name| std::env::var(name).ok())
    }

    /// Checks the `[fleet]` table of `text`, the config file at `path`.
    pub fn parse_section(
        path: &Path,
        text: &str,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Inventory, FleetError> {
        Inventory::check(path, text, true, env)
    }

    /// The targets of `wave` that `shard` takes (every one without a
    /// shard), in file order.
    pub fn members<'a>(&'a self, wave: &'a Wave, shard: Option<Shard>) -> impl Iterator<Item = &'a Target> {
        wave.targets
            .iter()
            .map(|i| &self.targets[*i])
            .filter(move |t| shard.is_none_or(|s| s.takes(&t.name)))
    }

    /// Every target that `shard` takes, with its wave, wave by wave.
    pub fn taken(&self, shard: Option<Shard>) -> impl Iterator<Item = (&Wave, &Target)> {
        self.waves
            .iter()
            .flat_map(move |w| self.members(w, shard).map(move |t| (w, t)))
    }

    /// Checks `text`, the fleet file at `path`, with `env` for `url_env`.
    pub fn parse(path: &Path, text: &str, env: impl Fn(&str) -> Option<String>) -> Result<Inventory, FleetError> {
        Inventory::check(path, text, false, env)
    }

    fn check(
        path: &Path,
        text: &str,
        section: bool,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Inventory, FleetError> {
        let line_of = |offset: usize| text[..offset.min(text.len())].matches('\n').count() + 1;
        let invalid = |offset: usize, message: String| FleetError::Invalid {
            path: path.to_owned(),
            line: line_of(offset),
            message,
        };
        let parsed = if section {
            toml::from_str::<ConfigRaw>(text).map(|c| c.fleet)
        } else {
            toml::from_str::<FileRaw>(text)
        };
        let raw = parsed.map_err(|e| invalid(e.span().map_or(0, |s| s.start), e.message().trim_end().to_owned()))?;
        if raw.target.is_empty() {
            return Err(invalid(0, "no [[target]]: a fleet needs at least one".to_owned()));
        }

        let mut targets = Vec::with_capacity(raw.target.len());
        let mut seen: HashMap<String, usize> = HashMap::new();
        for spanned in &raw.target {
            let at = spanned.span().start;
            let t = spanned.get_ref();
            let name = t.name.get_ref().trim();
            let name_at = t.name.span().start;
            if name.is_empty() || name.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return Err(invalid(
                    name_at,
                    format!("target name {:?}: a name is one word, without spaces", t.name.get_ref()),
                ));
            }
            if let Some(first) = seen.insert(name.to_owned(), line_of(name_at)) {
                return Err(invalid(
                    name_at,
                    format!("target {name:?} is named twice (first at line {first})"),
                ));
            }
            let url = match (&t.url, &t.url_env) {
                (Some(url), None) => url.clone(),
                (None, Some(var)) => env(var.get_ref()).filter(|v| !v.is_empty()).ok_or_else(|| {
                    invalid(
                        var.span().start,
                        format!(
                            "target {name:?}: url_env = {:?}, but that environment variable is not set",
                            var.get_ref()
                        ),
                    )
                })?,
                (Some(_), Some(_)) => {
                    return Err(invalid(
                        at,
                        format!("target {name:?} has both url and url_env; give one"),
                    ));
                }
                (None, None) => {
                    return Err(invalid(
                        at,
                        format!(
                            "target {name:?} has neither url nor url_env; give one (url_env keeps a password out of the file)"
                        ),
                    ));
                }
            };
            targets.push(Target {
                name: name.to_owned(),
                url,
                labels: t.labels.clone(),
                line: line_of(at),
            });
        }

        let mut waves: Vec<Wave> = Vec::new();
        let mut taken: Vec<Option<usize>> = vec![None; targets.len()];
        let raw_waves: Vec<(usize, Option<&WaveRaw>)> = if raw.wave.is_empty() {
            // No waves: one wave of everything, one target at a time.
            vec![(0, None)]
        } else {
            raw.wave.iter().map(|w| (w.span().start, Some(w.get_ref()))).collect()
        };
        for (n, (at, w)) in raw_waves.into_iter().enumerate() {
            let name = match w.and_then(|w| w.name.as_ref()) {
                Some(name) => name.get_ref().trim().to_owned(),
                None => format!("wave {}", n + 1),
            };
            if waves.iter().any(|other| other.name == name) {
                return Err(invalid(at, format!("wave {name:?} is named twice")));
            }
            let select = w.and_then(|w| w.select.as_ref());
            let labels = match select.map(Spanned::get_ref) {
                None => None,
                Some(SelectRaw::Everything(s)) if s == "*" => None,
                Some(SelectRaw::Everything(s)) => {
                    return Err(invalid(
                        select.expect("matched").span().start,
                        format!(
                            "wave {name:?}: select = {s:?}; write \"*\" for every target left, or a table of labels such as {{ tier = \"canary\" }}"
                        ),
                    ));
                }
                Some(SelectRaw::Labels(labels)) => Some(labels),
            };
            let parallel = match w.and_then(|w| w.parallel.as_ref()) {
                None => 1,
                Some(p) => usize::try_from(*p.get_ref()).ok().filter(|p| *p >= 1).ok_or_else(|| {
                    invalid(
                        p.span().start,
                        format!("wave {name:?}: parallel = {}; it must be at least 1", p.get_ref()),
                    )
                })?,
            };
            let max_failures = match w.and_then(|w| w.max_failures.as_ref()) {
                None => Budget::Count(0),
                Some(b) => budget(b.get_ref())
                    .map_err(|why| invalid(b.span().start, format!("wave {name:?}: max_failures {why}")))?,
            };
            let gate = match w.and_then(|w| w.gate.as_ref()) {
                None => None,
                Some(g) => Some(
                    gate(g.get_ref()).map_err(|why| invalid(g.span().start, format!("wave {name:?}: gate {why}")))?,
                ),
            };
            let index = waves.len();
            let mut members = Vec::new();
            for (i, target) in targets.iter().enumerate() {
                let selected = labels.is_none_or(|labels| labels.iter().all(|(k, v)| target.labels.get(k) == Some(v)));
                if selected && taken[i].is_none() {
                    taken[i] = Some(index);
                    members.push(i);
                }
            }
            if members.is_empty() {
                return Err(invalid(
                    at,
                    format!("wave {name:?} selects no target (a target belongs to the first wave that selects it)"),
                ));
            }
            waves.push(Wave {
                name,
                targets: members,
                parallel,
                max_failures,
                gate,
            });
        }
        if let Some(i) = taken.iter().position(Option::is_none) {
            let t = &targets[i];
            return Err(FleetError::Invalid {
                path: path.to_owned(),
                line: t.line,
                message: format!(
                    "target {:?} is in no wave; select it in one (select = \"*\" takes every target left)",
                    t.name
                ),
            });
        }
        Ok(Inventory {
            path: path.to_owned(),
            targets,
            waves,
        })
    }
}

fn budget(raw: &BudgetRaw) -> Result<Budget, String> {
    match raw {
        BudgetRaw::Count(n) => usize::try_from(*n)
            .map(Budget::Count)
            .map_err(|_| format!("= {n}; give a count of 0 or more, or a share such as \"5%\"")),
        BudgetRaw::Share(s) => {
            let p = s
                .trim()
                .strip_suffix('%')
                .and_then(|p| p.trim().parse::<u8>().ok())
                .ok_or_else(|| format!("= {s:?}; give a count, or a share such as \"5%\""))?;
            if p > 100 {
                return Err(format!("= {s:?}; a share is at most 100%"));
            }
            Ok(Budget::Percent(p))
        }
    }
}

fn gate(raw: &GateRaw) -> Result<Gate, String> {
    let duration = |key: &str, value: &Option<String>| -> Result<Option<Duration>, String> {
        value
            .as_deref()
            .map(|v| humantime::parse_duration(v).map_err(|e| format!("{key} = {v:?}: {e}")))
            .transpose()
    };
    let pause = duration("pause", &raw.pause)?;
    let timeout = duration("timeout", &raw.timeout)?;
    if raw.check.is_none() && pause.is_none() {
        return Err("has neither check nor pause".to_owned());
    }
    if raw.check.as_deref().is_some_and(|c| c.trim().is_empty()) {
        return Err("check is empty".to_owned());
    }
    Ok(Gate {
        check: raw.check.clone(),
        pause,
        timeout: timeout.unwrap_or(CHECK_TIMEOUT),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Inventory, String> {
        Inventory::parse(Path::new("fleet.toml"), text, |v| {
            (v == "SET").then(|| "postgres://u:secret@h/db".to_owned())
        })
        .map_err(|e| e.to_string())
    }

    const FLEET: &str = r#"
[[target]]
name = "a"
url = "sqlite://a.db"
labels = { tier = "canary" }

[[target]]
name = "b"
url_env = "SET"
labels = { region = "eu" }

[[target]]
name = "c"
url = "sqlite://c.db"

[[wave]]
name = "canary"
select = { tier = "canary" }

[[wave]]
select = "*"
parallel = 8
max_failures = "50%"
gate = { check = "true", pause = "2s" }
"#;

    #[test]
    fn targets_go_to_the_first_wave_that_selects_them() {
        let fleet = parse(FLEET).unwrap();
        assert_eq!(fleet.targets[1].url, "postgres://u:secret@h/db");
        assert_eq!(fleet.targets[2].line, 12);
        assert_eq!(fleet.waves.len(), 2);
        assert_eq!(fleet.waves[0].name, "canary");
        assert_eq!(fleet.waves[0].targets, vec![0]);
        assert_eq!(fleet.waves[1].name, "wave 2");
        assert_eq!(fleet.waves[1].targets, vec![1, 2]);
        assert_eq!(fleet.waves[1].parallel, 8);
        assert_eq!(fleet.waves[1].max_failures.allowed(2), 1);
        let gate = fleet.waves[1].gate.as_ref().unwrap();
        assert_eq!(gate.pause, Some(Duration::from_secs(2)));
        assert_eq!(gate.timeout, CHECK_TIMEOUT);
    }

    #[test]
    fn a_fleet_without_waves_is_one_wave_of_everything() {
        let fleet = parse("[[target]]\nname = \"a\"\nurl = \"sqlite://a.db\"\n").unwrap();
        assert_eq!(fleet.waves.len(), 1);
        assert_eq!(fleet.waves[0].targets, vec![0]);
        assert_eq!(fleet.waves[0].parallel, 1);
        assert_eq!(fleet.waves[0].max_failures, Budget::Count(0));
    }

    #[test]
    fn each_refusal_names_the_line_and_what_is_wrong() {
        let cases: &[(&str, &str, &str)] = &[
            (
                "name = \"a\"",
                "name = \"a\"\nport = 5",
                "fleet.toml:4: unknown field `port`",
            ),
            (
                "name = \"c\"",
                "name = \"a\"",
                "fleet.toml:13: target \"a\" is named twice (first at line 3)",
            ),
            (
                "url_env = \"SET\"",
                "url_env = \"UNSET\"",
                "fleet.toml:9: target \"b\": url_env = \"UNSET\", but that environment variable is not set",
            ),
            (
                "max_failures = \"50%\"",
                "max_failures = \"150%\"",
                "fleet.toml:23: wave \"wave 2\": max_failures = \"150%\"; a share is at most 100%",
            ),
            (
                "parallel = 8",
                "parallel = 0",
                "fleet.toml:22: wave \"wave 2\": parallel = 0; it must be at least 1",
            ),
            (
                "select = \"*\"",
                "select = { region = \"eu\" }",
                "fleet.toml:12: target \"c\" is in no wave",
            ),
            (
                "select = { tier = \"canary\" }",
                "select = { tier = \"canery\" }",
                "fleet.toml:16: wave \"canary\" selects no target",
            ),
            (
                "url = \"sqlite://c.db\"",
                "url = \"sqlite://c.db\"\nurl_env = \"SET\"",
                "fleet.toml:12: target \"c\" has both url and url_env",
            ),
            (
                "pause = \"2s\"",
                "pause = \"two\"",
                "fleet.toml:24: wave \"wave 2\": gate pause = \"two\"",
            ),
            (
                "labels = { tier = \"canary\" }",
                "labels = { tier = 1 }",
                "fleet.toml:5:",
            ),
        ];
        for (from, to, expected) in cases {
            assert!(FLEET.contains(from), "{from}");
            let e = parse(&FLEET.replacen(from, to, 1)).unwrap_err();
            assert!(e.starts_with(expected), "{to}: {e}");
        }
        assert_eq!(
            parse("").unwrap_err(),
            "fleet.toml:1: no [[target]]: a fleet needs at least one"
        );
    }

    #[test]
    fn the_fleet_table_of_a_config_file_is_read_with_that_files_lines() {
        let config = format!(
            "database_url = \"sqlite://x.db\"\n\n[lint]\nsmall_table_rows = 5\n{}",
            FLEET
                .replace("[[target]]", "[[fleet.target]]")
                .replace("[[wave]]", "[[fleet.wave]]")
        );
        let env = |v: &str| (v == "SET").then(|| "postgres://h/db".to_owned());
        let path = Path::new("waymark.toml");
        let fleet = Inventory::parse_section(path, &config, env);
        let twice = Inventory::parse_section(path, &config.replacen("name = \"c\"", "name = \"a\"", 1), env)
            .unwrap_err()
            .to_string();
        let fleet = fleet.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(fleet.targets.len(), 3);
        assert_eq!(fleet.waves[1].targets, vec![1, 2]);
        assert_eq!(fleet.targets[2].line, 16, "the config file's line");
        assert_eq!(twice, "waymark.toml:17: target \"a\" is named twice (first at line 7)");
    }

    #[test]
    fn budgets_count_or_share() {
        assert_eq!(Budget::Percent(5).allowed(199), 9);
        assert_eq!(Budget::Percent(100).allowed(3), 3);
        assert_eq!(Budget::Count(2).allowed(1), 2);
    }
}
