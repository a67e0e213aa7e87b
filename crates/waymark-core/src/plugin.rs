//! For plugin authors: scaffold a step crate, inspect a built component,
//! and test a step end to end against a scratch database.

use std::path::{Path, PathBuf};

use waymark_db::{ConnectOptions, Database, HistoryTable, Snapshot, differences};
use waymark_host::{Inspection, Limits, StepHost};

use crate::engine::{DownTarget, Engine, EngineOptions, UpOptions};
use crate::error::Error;
use crate::source::discover;

/// Compiles and inspects the component at `path`, without a database.
pub async fn inspect(path: &Path, limits: Limits) -> Result<Inspection, Error> {
    let bytes = std::fs::read(path).map_err(|e| Error::Usage(format!("{}: {e}", path.display())))?;
    let host = StepHost::new(limits)?;
    let name = path
        .file_name()
        .map_or_else(|| path.display().to_string(), |n| n.to_string_lossy().into_owned());
    Ok(host.inspect(&name, &bytes, waymark_host::Dialect::Sqlite).await?)
}

/// Where a scaffolded plugin gets the SDK from.
#[derive(Debug, Clone)]
pub enum Sdk {
    /// A copy written into the plugin's `vendor/` folder, so that it builds
    /// without the waymark sources at hand.
    Vendored,
    /// A path to `plugins/sdk` of a waymark checkout.
    Path(PathBuf),
}

const SDK_CARGO: &str = include_str!("../../../plugins/sdk/Cargo.toml");
const SDK_LIB: &str = include_str!("../../../plugins/sdk/src/lib.rs");
const WIT: &str = include_str!("../../../wit/plugin.wit");

/// Writes a new step plugin crate named `name` into `dir/name`. Refuses to
/// touch a folder that exists.
pub fn scaffold_plugin(dir: &Path, name: &str, sdk: &Sdk) -> Result<Vec<PathBuf>, Error> {
    let valid = !name.is_empty()
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if !valid {
        return Err(Error::Usage(format!(
            "plugin name {name:?}: use lower-case letters, digits, - and _, starting with a letter"
        )));
    }
    let root = dir.join(name);
    if root.exists() {
        return Err(Error::Usage(format!(
            "{} exists already; nothing was written",
            root.display()
        )));
    }
    let io = |path: &Path, e: std::io::Error| Error::Usage(format!("{}: {e}", path.display()));
    let dependency = match sdk {
        Sdk::Vendored => "{ path = \"vendor/waymark-plugin-sdk\" }".to_owned(),
        Sdk::Path(p) => {
            let p = std::path::absolute(p).map_err(|e| io(p, e))?;
            format!("{{ path = {:?} }}", p.display().to_string())
        }
    };
    let crate_name = name.replace('-', "_");
    let mut files: Vec<(PathBuf, String)> = vec![
        (
            root.join("Cargo.toml"),
            format!(
                "[package]\nname = \"{name}\"\nversion = \"0.1.0\"\nedition = \"2024\"\n\n\
                 [lib]\ncrate-type = [\"cdylib\"]\n\n\
                 [dependencies]\n\
                 # Until the SDK is published, it comes from a copy or a waymark checkout.\n\
                 waymark-plugin-sdk = {dependency}\n\
                 serde = {{ version = \"1\", features = [\"derive\"] }}\n\n\
                 # A workspace of its own, so it does not join one it is created inside.\n\
                 [workspace]\n\n\
                 [profile.release]\nopt-level = \"s\"\nlto = true\nstrip = true\npanic = \"abort\"\n"
            ),
        ),
        (root.join("src/lib.rs"), plugin_template(name)),
        // A migration folder that uses the step, for `plugin test` to run
        // as it is: after `cargo build --release --target wasm32-wasip2`,
        // `waymark plugin test example` passes.
        (
            root.join("example/step.toml"),
            format!(
                "# A migration that uses the step. `waymark plugin test example` runs it\n\
                 # against a scratch database made by setup.sql, and pins the component\n\
                 # built last. In a real migration folder, pin it: add the sha256 that\n\
                 # `waymark plugin inspect` prints, and give the component's path from there.\n\
                 component = \"../target/wasm32-wasip2/release/{crate_name}.wasm\"\n\n\
                 [permissions]\n\
                 # read-only unless granted; list the tables the step may write.\n\
                 write = [\"users\"]\n\n\
                 [config]\ntable = \"users\"\ncolumn = \"email\"\nvalue = \"admin@example.com\"\n"
            ),
        ),
        (
            root.join(format!("example/{SETUP}")),
            "-- What the example's step works on, made in the scratch database first.\n\
             CREATE TABLE users (id INTEGER PRIMARY KEY, email TEXT NOT NULL UNIQUE);\n"
                .to_owned(),
        ),
        (root.join(".gitignore"), "/target\n".to_owned()),
    ];
    if let Sdk::Vendored = sdk {
        let vendor = root.join("vendor/waymark-plugin-sdk");
        files.push((vendor.join("Cargo.toml"), vendored_sdk_manifest()));
        files.push((
            vendor.join("src/lib.rs"),
            SDK_LIB.replace("path: \"../../wit\"", "path: \"wit\""),
        ));
        files.push((vendor.join("wit/plugin.wit"), WIT.to_owned()));
    }
    for (path, text) in &files {
        std::fs::create_dir_all(path.parent().expect("files live in folders")).map_err(|e| io(path, e))?;
        std::fs::write(path, text).map_err(|e| io(path, e))?;
    }
    Ok(files.into_iter().map(|(p, _)| p).collect())
}

/// The SDK's manifest, standing alone: the workspace's settings written out.
fn vendored_sdk_manifest() -> String {
    SDK_CARGO
        .lines()
        .map(|line| match line.split_once(".workspace = true") {
            Some(("version", _)) => format!("version = \"{}\"", env!("CARGO_PKG_VERSION")),
            Some(("edition", _)) => "edition = \"2024\"".to_owned(),
            Some(("license", _)) => "license = \"Apache-2.0\"".to_owned(),
            Some(("wit-bindgen", _)) => format!("wit-bindgen = {WIT_BINDGEN}"),
            _ => line.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("\n")
        + "\n"
}

/// The wit-bindgen the SDK is built with in `plugins/Cargo.toml`.
const WIT_BINDGEN: &str =
    "{ version = \"0.61\", default-features = false, features = [\"macros\", \"realloc\", \"std\"] }";

fn plugin_template(name: &str) -> String {
    include_str!("../templates/plugin_lib.rs").replace("{{name}}", name)
}

/// What `plugin test` saw at each stage.
#[derive(Debug, Clone)]
pub struct PluginTest {
    /// The scratch database, without a password.
    pub url: String,
    /// Each stage (`up`, `down`, `up again`, `down again`) and what changed
    /// in it, or how it failed.
    pub stages: Vec<Stage>,
    /// Problems that make the test fail.
    pub problems: Vec<String>,
}

/// One stage of a plugin test.
#[derive(Debug, Clone)]
pub struct Stage {
    /// `up`, `down`, ...
    pub name: &'static str,
    /// What changed, one line per change.
    pub changes: Vec<String>,
    /// How long it took.
    pub duration: std::time::Duration,
}

/// The SQL beside a migration folder's `step.toml` that `plugin test`
/// runs first when no `--setup` is given.
const SETUP: &str = "setup.sql";

/// How to run a plugin test.
#[derive(Debug, Clone)]
pub struct PluginTestOptions {
    /// A `.wasm` component, or a migration folder holding a `step.toml`.
    pub path: PathBuf,
    /// The scratch database; `None`: a new SQLite file.
    pub url: Option<String>,
    /// SQL run before the test, to create what the step works on;
    /// `None`: the folder's `setup.sql`, if it has one.
    pub setup: Option<PathBuf>,
    /// The limits a real run applies.
    pub limits: Limits,
}

/// Runs a step's up, down and up again (and down again, to leave the
/// database as it was) through the real runner, against a scratch database,
/// comparing the database after each stage.
pub async fn test_plugin(options: &PluginTestOptions) -> Result<PluginTest, Error> {
    let scratch = tempfile::tempdir().map_err(|e| Error::Usage(format!("creating a scratch folder: {e}")))?;
    let migrations = scratch.path().join("migrations");
    // Named after what the user gave, for the messages that name it.
    let stem: String = options
        .path
        .file_stem()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '_' })
        .collect();
    let folder = migrations.join(format!("1_{}", if stem.is_empty() { "plugin_test" } else { &stem }));
    std::fs::create_dir_all(&folder).map_err(|e| Error::Usage(format!("{}: {e}", folder.display())))?;
    let copy = folder.join("step.toml");
    std::fs::write(&copy, step_file(&options.path)?).map_err(|e| Error::Usage(format!("{}: {e}", folder.display())))?;
    // What is said of the copy is said of the user's own file.
    let users = match options.path.is_dir() {
        true => options.path.join("step.toml"),
        false => options.path.clone(),
    };
    let set = discover(&migrations, crate::source::Layout::Waymark).map_err(|e| {
        Error::Usage(
            e.to_string()
                .replace(&copy.display().to_string(), &users.display().to_string()),
        )
    })?;
    let setup = options
        .setup
        .clone()
        .or_else(|| Some(options.path.join(SETUP)).filter(|s| options.path.is_dir() && s.is_file()));

    let url = options
        .url
        .clone()
        .unwrap_or_else(|| format!("sqlite://{}", scratch.path().join("scratch.db").display()));
    let history = HistoryTable {
        name: "waymark_plugin_test".to_owned(),
        schema: None,
    };
    let connect = ConnectOptions {
        url: url.clone(),
        init_sql: Vec::new(),
        history: history.clone(),
        lock_timeout: std::time::Duration::from_secs(10),
        lock_wait: None,
        connect_timeout: None,
        create: true,
    };
    if let Some(setup) = &setup {
        let sql = std::fs::read_to_string(setup).map_err(|e| Error::Usage(format!("{}: {e}", setup.display())))?;
        let db = Database::connect(&connect).await?;
        let ran = async { db.connection().await?.execute(&sql).await }.await;
        db.close().await;
        ran.map_err(|e| Error::Usage(format!("{}: {e}", setup.display())))?;
    }
    let engine = Engine::connect(&EngineOptions {
        connect,
        limits: options.limits.clone(),
        cache_dir: None,
        preimages: crate::engine::PreimageMode::Keep,
        locks: crate::execute::LockPolicy::default(),
        small_table_rows: crate::engine::SMALL_TABLE_ROWS,
        severities: Default::default(),
    })
    .await?;
    let result = run_stages(&engine, &set, &history.name).await.map_err(|e| match e {
        // A bare component runs with no [config]: a step that needs one
        // (the scaffold's does) fails, and the way out is its example.
        Error::Migration { mut failure, .. } if !options.path.is_dir() => {
            failure.file = users.clone();
            Error::Refused {
                message: failure.to_string(),
                hint: Some(format!(
                    "{} ran with no [config] and read-write access; if the step needs a configuration, test a \
                     migration folder whose step.toml gives one (`waymark plugin new` writes one as example/)",
                    users.display()
                )),
            }
        }
        Error::Migration { mut failure, applied } => {
            if failure.file == set.migrations[0].up.path {
                failure.file = users.clone();
            }
            Error::Migration { failure, applied }
        }
        other => other,
    });
    if result.is_ok() {
        engine.drop_history().await?;
    }
    let redacted = engine.url().to_owned();
    engine.close().await;
    let (stages, problems) = result?;
    Ok(PluginTest {
        url: redacted,
        stages,
        problems,
    })
}

async fn run_stages(
    engine: &Engine,
    set: &crate::source::MigrationSet,
    skip: &str,
) -> Result<(Vec<Stage>, Vec<String>), Error> {
    let mut stages = Vec::new();
    let mut problems = Vec::new();
    let snapshot = || engine.snapshot(skip);
    let before = snapshot().await?;
    let mut stage = |name: &'static str, from: &Snapshot, to: &Snapshot, duration| {
        stages.push(Stage {
            name,
            changes: differences(from, to),
            duration,
        });
    };

    let started = std::time::Instant::now();
    engine.up(set, &UpOptions::default(), &mut |_| {}).await?;
    let after_up = snapshot().await?;
    stage("up", &before, &after_up, started.elapsed());

    let started = std::time::Instant::now();
    match engine.down(set, &DownTarget::Steps(1), &mut |_| {}).await {
        Ok(_) => {}
        Err(Error::Refused { message, .. }) if message.contains("irreversible") => {
            stages.push(Stage {
                name: "down",
                changes: vec![format!("not run: {message}")],
                duration: started.elapsed(),
            });
            return Ok((stages, problems));
        }
        Err(e) => return Err(e),
    }
    let after_down = snapshot().await?;
    stage("down", &after_up, &after_down, started.elapsed());
    let left = differences(&before, &after_down);
    if !left.is_empty() {
        problems.push(format!(
            "down did not restore the database as up found it: {}",
            left.join("; ")
        ));
    }

    let started = std::time::Instant::now();
    engine.up(set, &UpOptions::default(), &mut |_| {}).await?;
    let again = snapshot().await?;
    stage("up again", &after_down, &again, started.elapsed());
    let drift = differences(&after_up, &again);
    if !drift.is_empty() {
        problems.push(format!(
            "up run a second time left the database different from the first time: {}",
            drift.join("; ")
        ));
    }

    let started = std::time::Instant::now();
    engine.down(set, &DownTarget::Steps(1), &mut |_| {}).await?;
    let end = snapshot().await?;
    stage("down again", &again, &end, started.elapsed());
    Ok((stages, problems))
}

/// The `step.toml` of the test migration: the folder's own, with the
/// component's path made absolute, or, for a bare component, one that pins
/// it and grants it read-write access with no configuration.
fn step_file(path: &Path) -> Result<String, Error> {
    let usage = |message: String| Error::Usage(format!("{}: {message}", path.display()));
    if path.is_dir() {
        let step = path.join("step.toml");
        let text = std::fs::read_to_string(&step).map_err(|e| usage(format!("step.toml: {e}")))?;
        let mut table: toml::Table = text
            .parse()
            .map_err(|e: toml::de::Error| usage(format!("step.toml: {}", e.to_string().trim_end())))?;
        if let Some(toml::Value::String(component)) = table.get("component") {
            let absolute = std::path::absolute(path.join(component)).map_err(|e| usage(e.to_string()))?;
            // A test pins the component as built now, when the folder
            // has no pin yet (the scaffold's example).
            if !table.contains_key("sha256") {
                let bytes =
                    std::fs::read(&absolute).map_err(|e| usage(format!("component {}: {e}", absolute.display())))?;
                table.insert("sha256".to_owned(), toml::Value::String(waymark_host::digest(&bytes)));
            }
            table.insert(
                "component".to_owned(),
                toml::Value::String(absolute.display().to_string()),
            );
        }
        return Ok(table.to_string());
    }
    let bytes = std::fs::read(path).map_err(|e| usage(e.to_string()))?;
    let absolute = std::path::absolute(path).map_err(|e| usage(e.to_string()))?;
    Ok(format!(
        "component = {:?}\nsha256 = \"{}\"\n\n[permissions]\naccess = \"read-write\"\n",
        absolute.display().to_string(),
        waymark_host::digest(&bytes)
    ))
}
