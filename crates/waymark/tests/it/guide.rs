//! The plugin authors' guide, run: every ```sh block of
//! `docs/guide/first-step-plugin.md` in order, every file block written
//! where it says, in a fresh folder with the binary under test on `PATH`.

use std::path::Path;
use std::process::Command;

use crate::common::{BIN, cache_dir};

enum Block {
    Shell(String),
    File { path: String, text: String },
}

fn blocks(guide: &str) -> Vec<Block> {
    let mut out = Vec::new();
    let mut lines = guide.lines();
    while let Some(line) = lines.next() {
        let Some(info) = line.strip_prefix("```") else { continue };
        let body: Vec<&str> = lines.by_ref().take_while(|l| !l.starts_with("```")).collect();
        let text = body.join("\n") + "\n";
        match info.split_once(" file=") {
            Some((_, path)) => out.push(Block::File {
                path: path.to_owned(),
                text,
            }),
            None if info == "sh" => out.push(Block::Shell(text)),
            None => {}
        }
    }
    out
}

#[test]
fn the_first_step_plugin_guide_works() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let guide = std::fs::read_to_string(root.join("docs/guide/first-step-plugin.md")).unwrap();
    let work = tempfile::tempdir().unwrap();
    let bin_dir = Path::new(BIN).parent().unwrap();
    let path = format!("{}:{}", bin_dir.display(), std::env::var("PATH").unwrap_or_default());

    let blocks = blocks(&guide);
    assert!(blocks.len() >= 8, "the guide lost its blocks: {}", blocks.len());
    for block in blocks {
        match block {
            Block::File { path: file, text } => {
                let dest = work.path().join(&file);
                std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
                let text = match text.contains("PASTE-THE-SHA256-FROM-INSPECT") {
                    true => {
                        let component = text
                            .lines()
                            .find_map(|l| l.strip_prefix("component = "))
                            .unwrap()
                            .trim_matches('"');
                        let bytes = std::fs::read(dest.parent().unwrap().join(component)).unwrap();
                        text.replace("PASTE-THE-SHA256-FROM-INSPECT", &waymark_host::digest(&bytes))
                    }
                    false => text,
                };
                std::fs::write(dest, text).unwrap();
            }
            Block::Shell(script) => {
                let mut cmd = Command::new("bash");
                cmd.args(["-euo", "pipefail", "-c", &script])
                    .current_dir(work.path())
                    .env("PATH", &path)
                    .env("WAYMARK_CACHE_DIR", cache_dir())
                    .env_remove("DATABASE_URL");
                // The outer cargo's settings describe this test's build.
                for (key, _) in std::env::vars_os() {
                    let key = key.to_string_lossy().into_owned();
                    if (key.starts_with("CARGO_") && key != "CARGO_HOME") || key == "RUSTFLAGS" {
                        cmd.env_remove(&key);
                    }
                }
                let out = cmd.output().unwrap();
                assert!(
                    out.status.success(),
                    "guide block failed:\n{script}\nstdout:\n{}\nstderr:\n{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                );
            }
        }
    }

    // What the guide says a component imports is what inspect lists.
    let inspected = Command::new(BIN)
        .args([
            "plugin",
            "inspect",
            "--json",
            "greet/target/wasm32-wasip2/release/greet.wasm",
        ])
        .current_dir(work.path())
        .env("WAYMARK_CACHE_DIR", cache_dir())
        .output()
        .unwrap();
    let inspected: serde_json::Value = serde_json::from_slice(&inspected.stdout).unwrap();
    for import in inspected["imports"].as_array().unwrap() {
        let import = import.as_str().unwrap();
        let family = format!("`{}/*`", import.split('/').next().unwrap());
        assert!(guide.contains(&family), "the guide does not name {family} ({import})");
    }

    // The bare component has no [config]: its test fails saying where the
    // configured example is, and names the user's file.
    let bare = Command::new(BIN)
        .args(["plugin", "test", "greet/target/wasm32-wasip2/release/greet.wasm"])
        .current_dir(work.path())
        .env("WAYMARK_CACHE_DIR", cache_dir())
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&bare.stderr);
    assert_eq!(bare.status.code(), Some(1), "{said}");
    assert!(
        said.contains("migration 1_greet failed: greet/target/wasm32-wasip2/release/greet.wasm"),
        "{said}"
    );
    assert!(
        said.contains("ran with no [config]") && said.contains("writes one as example/"),
        "{said}"
    );

    let status = Command::new(BIN)
        .args(["status", "--json"])
        .current_dir(work.path())
        .env_remove("DATABASE_URL")
        .env("WAYMARK_CACHE_DIR", cache_dir())
        .output()
        .unwrap();
    let json: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    let states: Vec<&str> = json["migrations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["state"].as_str().unwrap())
        .collect();
    assert_eq!(states, ["applied", "applied"]);
}
