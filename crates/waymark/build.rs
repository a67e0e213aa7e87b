//! Gives `waymark --version` the commit it was built from: `WAYMARK_COMMIT`
//! if set (a container build without `.git`), else the checkout's HEAD,
//! else `unknown` (a build from a source archive).

use std::path::Path;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=WAYMARK_COMMIT");
    let git = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.git");
    // Built again when HEAD moves: a commit changes the branch's ref file
    // (or packed-refs), a checkout changes HEAD.
    if git.is_dir() {
        println!("cargo:rerun-if-changed={}", git.join("HEAD").display());
        let head = std::fs::read_to_string(git.join("HEAD")).unwrap_or_default();
        if let Some(branch) = head.trim().strip_prefix("ref: ") {
            let file = git.join(branch);
            if file.exists() {
                println!("cargo:rerun-if-changed={}", file.display());
            }
        }
        if git.join("packed-refs").exists() {
            println!("cargo:rerun-if-changed={}", git.join("packed-refs").display());
        }
    }
    let commit = std::env::var("WAYMARK_COMMIT")
        .ok()
        .filter(|c| !c.is_empty())
        .or_else(|| {
            let out = Command::new("git")
                .args(["rev-parse", "--short=12", "HEAD"])
                .current_dir(env!("CARGO_MANIFEST_DIR"))
                .output()
                .ok()?;
            out.status
                .success()
                .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
        })
        .unwrap_or_else(|| "unknown".to_owned());
    println!("cargo:rustc-env=WAYMARK_COMMIT={commit}");
}
