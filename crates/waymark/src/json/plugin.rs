//! The plugin commands' replies (`plugin new` replies as `new` does).

use schemars::JsonSchema;
use serde::Serialize;

/// What a component's `describe` said of itself.
#[derive(Debug, Serialize, JsonSchema)]
pub(crate) struct Described<'a> {
    /// The step's name.
    pub(crate) name: &'a str,
    /// The step's own version.
    pub(crate) version: &'a str,
    /// One line on what it does.
    pub(crate) summary: &'a str,
    /// Whether it has a `down`.
    pub(crate) reversible: bool,
}

/// `waymark plugin inspect`.
#[derive(Debug, Serialize, JsonSchema)]
pub(crate) struct Inspected<'a> {
    /// The component file.
    pub(crate) path: String,
    /// Its SHA-256, to pin in `step.toml`.
    pub(crate) sha256: &'a str,
    /// Its size in bytes.
    pub(crate) size: usize,
    /// The `waymark:plugin/step` interface version it exports; `null` if
    /// it exports none.
    pub(crate) interface: Option<&'a str>,
    /// The interfaces it imports.
    pub(crate) imports: &'a [String],
    /// The interfaces it exports.
    pub(crate) exports: &'a [String],
    /// What it says of itself; `null` if `describe` failed.
    pub(crate) description: Option<Described<'a>>,
    /// Why `describe` failed.
    pub(crate) error: Option<String>,
}

/// One stage of `plugin test`.
#[derive(Debug, Serialize, JsonSchema)]
pub(crate) struct TestStage<'a> {
    /// `up`, `down`, `up again` or `down again`.
    pub(crate) stage: &'a str,
    /// Wall time, in milliseconds.
    pub(crate) duration_ms: u128,
    /// What the stage changed in the scratch database's catalog.
    pub(crate) changes: &'a [String],
}

/// `waymark plugin test`.
#[derive(Debug, Serialize, JsonSchema)]
pub(crate) struct PluginTested<'a> {
    /// The scratch database, without its password.
    pub(crate) database: &'a str,
    /// Each stage, in order.
    pub(crate) stages: Vec<TestStage<'a>>,
    /// What did not hold: a `down` that left changes, an `up` that does
    /// not repeat.
    pub(crate) problems: &'a [String],
}
