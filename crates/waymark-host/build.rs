//! Builds the step components in `plugins/` for wasm32-wasip2, so that the
//! built-in SQL and ops steps can be embedded in the binary and the tests can load
//! the misbehaving test step and the example plugins.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

const TARGET: &str = "wasm32-wasip2";
const COMPONENTS: &[(&str, &str)] = &[
    ("waymark_sql_step", "sql.wasm"),
    ("waymark_ops_step", "ops.wasm"),
    ("waymark_test_steps", "test-steps.wasm"),
    ("waymark_backfill", "backfill.wasm"),
    ("waymark_seed", "seed.wasm"),
];

fn main() {
    let manifest_dir = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").unwrap());
    let root = manifest_dir.join("../..").canonicalize().unwrap();
    let plugins = root.join("plugins");
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").unwrap());

    for watched in [
        "wit",
        "plugins/Cargo.toml",
        "plugins/Cargo.lock",
        "plugins/sdk",
        "plugins/sql",
        "plugins/ops",
        "plugins/test-steps",
        "plugins/backfill",
        "plugins/seed",
    ] {
        println!("cargo:rerun-if-changed={}", root.join(watched).display());
    }

    let rustc = env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let sysroot = Command::new(&rustc)
        .args(["--print", "sysroot"])
        .output()
        .expect("running rustc --print sysroot");
    let sysroot = PathBuf::from(String::from_utf8(sysroot.stdout).unwrap().trim());
    if !sysroot.join("lib/rustlib").join(TARGET).exists() {
        panic!(
            "\n\nwaymark's step components need the {TARGET} target, which is not installed.\n\
             hint: rustup target add {TARGET}\n\n"
        );
    }

    // Shared by every profile of the host build, so switching between debug
    // and release does not rebuild the components; cargo's own lock on this
    // directory serialises concurrent builds.
    let target_dir = wasm_target_dir(&out_dir);
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut build = Command::new(cargo);
    build
        .args(["build", "--release", "--locked", "--target", TARGET, "--manifest-path"])
        .arg(plugins.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(&target_dir);
    // The outer build's settings describe the host target, not wasm.
    for (key, _) in env::vars_os() {
        let key = key.to_string_lossy();
        let keep = matches!(key.as_ref(), "CARGO_HOME" | "CARGO_NET_OFFLINE")
            || key.starts_with("CARGO_REGISTRIES_")
            || key.starts_with("CARGO_HTTP_")
            || key.starts_with("CARGO_NET_");
        if (key.starts_with("CARGO_") && !keep) || key == "RUSTFLAGS" || key == "RUSTC_WORKSPACE_WRAPPER" {
            build.env_remove(key.as_ref());
        }
    }
    let status = build.status().expect("running cargo to build plugins/");
    assert!(status.success(), "building the step components in plugins/ failed");

    for (artifact, name) in COMPONENTS {
        let built = target_dir.join(TARGET).join("release").join(format!("{artifact}.wasm"));
        std::fs::copy(&built, out_dir.join(name)).unwrap_or_else(|e| panic!("copying {}: {e}", built.display()));
    }
}

/// `<target>/wasm-steps`, found from `OUT_DIR` (`<target>/<profile>/build/<pkg>/out`).
fn wasm_target_dir(out_dir: &Path) -> PathBuf {
    out_dir
        .ancestors()
        .nth(4)
        .map(|target| target.join("wasm-steps"))
        .unwrap_or_else(|| out_dir.join("wasm-steps"))
}
