//! `waymark lint --format sarif`: the findings as a SARIF 2.1.0 log, the
//! format code-scanning services (GitHub's among them) read, so a pull
//! request shows each finding on its line. An allowed finding is a result
//! with an in-source suppression carrying its reason, as SARIF models it.

use serde::Serialize;
use waymark_core::{Finding, Plan, RULES, Severity};

/// The whole log: one run of one tool.
#[derive(Debug, Serialize)]
pub(crate) struct Log {
    #[serde(rename = "$schema")]
    schema: &'static str,
    version: &'static str,
    runs: Vec<Run>,
}

#[derive(Debug, Serialize)]
struct Run {
    tool: Tool,
    results: Vec<SarifResult>,
}

#[derive(Debug, Serialize)]
struct Tool {
    driver: Driver,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Driver {
    name: &'static str,
    version: &'static str,
    /// Where the tool is documented, where the package says so.
    #[serde(skip_serializing_if = "Option::is_none")]
    information_uri: Option<&'static str>,
    rules: Vec<RuleDescriptor>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct RuleDescriptor {
    id: &'static str,
    short_description: Text,
    full_description: Text,
    help: Text,
    default_configuration: Configuration,
    properties: RuleProperties,
}

#[derive(Debug, Serialize)]
struct RuleProperties {
    lock: &'static str,
    dialects: Vec<&'static str>,
}

#[derive(Debug, Serialize)]
struct Configuration {
    level: &'static str,
}

#[derive(Debug, Serialize)]
struct Text {
    text: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct SarifResult {
    rule_id: &'static str,
    rule_index: usize,
    level: &'static str,
    message: Text,
    locations: Vec<Location>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    suppressions: Vec<Suppression>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Location {
    physical_location: PhysicalLocation,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct PhysicalLocation {
    artifact_location: ArtifactLocation,
    region: Region,
}

#[derive(Debug, Serialize)]
struct ArtifactLocation {
    uri: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Region {
    start_line: u32,
}

#[derive(Debug, Serialize)]
struct Suppression {
    kind: &'static str,
    justification: String,
}

fn level(severity: Severity) -> &'static str {
    match severity {
        Severity::Warning => "warning",
        Severity::Error => "error",
    }
}

/// The log of `plan`'s findings, with every rule of the catalogue at the
/// severity `severity_of` gives it.
pub(crate) fn log(plan: &Plan, severity_of: impl Fn(&waymark_core::Rule) -> Severity) -> Log {
    let rules = RULES
        .iter()
        .map(|r| RuleDescriptor {
            id: r.id,
            short_description: Text {
                text: format!("{}: {}", r.id, r.lock),
            },
            full_description: Text { text: r.why.to_owned() },
            help: Text {
                text: format!("{} (lock: {})", r.fix, r.lock),
            },
            default_configuration: Configuration {
                level: level(severity_of(r)),
            },
            properties: RuleProperties {
                lock: r.lock,
                dialects: r.dialects.iter().map(|d| d.name()).collect(),
            },
        })
        .collect();
    let results = plan
        .migrations
        .iter()
        .flat_map(|p| p.findings.iter().map(move |f| result(&p.file, f)))
        .collect();
    Log {
        schema: "https://json.schemastore.org/sarif-2.1.0.json",
        version: "2.1.0",
        runs: vec![Run {
            tool: Tool {
                driver: Driver {
                    name: "waymark",
                    version: env!("CARGO_PKG_VERSION"),
                    information_uri: Some(env!("CARGO_PKG_REPOSITORY")).filter(|u| !u.is_empty()),
                    rules,
                },
            },
            results,
        }],
    }
}

fn result(file: &std::path::Path, f: &Finding) -> SarifResult {
    SarifResult {
        rule_id: f.rule,
        rule_index: RULES.iter().position(|r| r.id == f.rule).unwrap_or(0),
        level: level(f.severity),
        message: Text {
            text: format!("{}. Fix: {}", f.message, f.fix),
        },
        locations: vec![Location {
            physical_location: PhysicalLocation {
                // Forward slashes, relative to where waymark ran: the
                // repository's root in CI.
                artifact_location: ArtifactLocation {
                    uri: file
                        .components()
                        .map(|c| c.as_os_str().to_string_lossy())
                        .collect::<Vec<_>>()
                        .join("/"),
                },
                region: Region {
                    start_line: f.line.max(1),
                },
            },
        }],
        suppressions: f
            .allowed
            .iter()
            .map(|reason| Suppression {
                kind: "inSource",
                justification: reason.clone(),
            })
            .collect(),
    }
}
