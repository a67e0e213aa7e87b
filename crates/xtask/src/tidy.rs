//! Checks of the tree itself, run by `cargo test --workspace` as
//! rust-analyzer runs its own: they fail when the code drifts from what
//! ARCHITECTURE.md says of it.

/// Which of waymark's crates each crate may depend on, and which outside
/// crates it must not, as ARCHITECTURE.md's code map says: sqlx only in
/// `waymark-db` (and `waymark-cutover`'s replication catalog), wasmtime
/// only in `waymark-host`, clap and anyhow only in the binary.
#[cfg(test)]
const CODE_MAP: &[(&str, &[&str], &[&str])] = &[
    ("waymark-db", &[], &["wasmtime", "wasmtime-wasi", "anyhow", "clap"]),
    ("waymark-host", &[], &["sqlx", "anyhow", "clap"]),
    (
        "waymark-backup",
        &["waymark-db"],
        &["sqlx", "wasmtime", "anyhow", "clap"],
    ),
    (
        "waymark-cutover",
        &["waymark-db", "waymark-backup"],
        &["wasmtime", "anyhow", "clap"],
    ),
    (
        "waymark-core",
        &["waymark-db", "waymark-host", "waymark-backup"],
        &["sqlx", "wasmtime", "wasmtime-wasi", "anyhow", "clap"],
    ),
    (
        "waymark",
        &[
            "waymark-core",
            "waymark-backup",
            "waymark-cutover",
            "waymark-load",
            "waymark-fleet",
        ],
        &["sqlx", "wasmtime", "wasmtime-wasi"],
    ),
    (
        "waymark-fleet",
        &["waymark-core"],
        &["sqlx", "wasmtime", "wasmtime-wasi", "anyhow", "clap"],
    ),
    ("waymark-testkit", &[], &["wasmtime", "anyhow", "clap"]),
    ("waymark-load", &["waymark-db"], &["wasmtime", "anyhow", "clap"]),
    (
        "xtask",
        &[
            "waymark-host",
            "waymark-core",
            "waymark-db",
            "waymark-backup",
            "waymark-testkit",
            "waymark-load",
        ],
        &[],
    ),
];

/// Each crate's name and the names of its (non-dev) dependencies.
#[cfg(test)]
fn dependencies() -> Vec<(String, Vec<String>)> {
    let crates = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let mut out = Vec::new();
    for entry in std::fs::read_dir(crates).unwrap() {
        let manifest = entry.unwrap().path().join("Cargo.toml");
        let Ok(text) = std::fs::read_to_string(&manifest) else {
            continue;
        };
        let doc: toml::Table = text.parse().unwrap_or_else(|e| panic!("{}: {e}", manifest.display()));
        let name = doc["package"]["name"].as_str().unwrap().to_owned();
        let deps = doc
            .get("dependencies")
            .and_then(|d| d.as_table())
            .map(|t| t.keys().cloned().collect())
            .unwrap_or_default();
        out.push((name, deps));
    }
    out.sort();
    out
}

/// The name of every `crash_point("...")` in the crates' sources, with
/// the file it is in.
#[cfg(test)]
fn crash_points() -> Vec<(String, std::path::PathBuf)> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut found = Vec::new();
    let mut stack = vec![root.join("crates")];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                // Sources only: the tests arm the points, they do not
                // make them, and xtask only reads them.
                if !path.ends_with("tests") && !path.ends_with("xtask") {
                    stack.push(path);
                }
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") || path.ends_with("crash.rs") {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            // The cutover names its steps' points by `Step::name`.
            for piece in text.split("crash_point(\"").skip(1) {
                let name = piece.split('"').next().unwrap_or_default();
                found.push((name.to_owned(), path.clone()));
            }
        }
    }
    found.sort();
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A crash point the matrix never arms proves nothing: each one must
    /// be named in `tests/it/crash_points.rs` (which fails when an armed
    /// point is never reached) or, for the cutover's steps, in
    /// `tests/it/switchover.rs`.
    #[test]
    fn every_crash_point_is_in_the_crash_matrix() {
        let points = crash_points();
        assert!(points.len() >= 26, "the sources hold {} crash points", points.len());
        // The cutover's steps are stopped at by the tests that run it
        // against real servers and PgBouncer.
        let tests = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../waymark/tests/it");
        let matrix = ["crash_points.rs", "switchover.rs"]
            .map(|file| std::fs::read_to_string(tests.join(file)).unwrap())
            .concat();
        let missing: Vec<String> = points
            .iter()
            .filter(|(name, _)| !matrix.contains(&format!("\"{name}\"")))
            .map(|(name, path)| format!("{name} ({})", path.display()))
            .collect();
        assert!(missing.is_empty(), "crash points the matrix never arms: {missing:?}");
    }

    /// The binary turns the `crash-points` feature on for the one build
    /// that `cargo run` and `cargo test` share; what keeps the points out
    /// of a release is that every piece of them is also behind
    /// `debug_assertions`.
    #[test]
    fn crash_points_are_left_out_of_release_builds() {
        let crash = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../waymark-db/src/crash.rs");
        let text = std::fs::read_to_string(crash).unwrap();
        let gates: Vec<&str> = text.lines().filter(|l| l.contains("crash-points")).collect();
        assert!(gates.len() >= 3, "{gates:?}");
        for gate in gates.iter().filter(|l| l.trim_start().starts_with("#[cfg(")) {
            assert!(
                gate.contains("debug_assertions"),
                "a crash-point gate without debug_assertions: {gate}"
            );
        }
    }

    #[test]
    fn every_crate_depends_only_on_what_the_code_map_allows() {
        let mut problems = Vec::new();
        for (name, deps) in dependencies() {
            let Some((_, ours, forbidden)) = CODE_MAP.iter().find(|(n, ..)| *n == name) else {
                problems.push(format!(
                    "{name} is not in the code map: add it to ARCHITECTURE.md and to CODE_MAP"
                ));
                continue;
            };
            for dep in &deps {
                if dep.starts_with("waymark") && !ours.contains(&dep.as_str()) {
                    problems.push(format!("{name} depends on {dep}, which the code map does not allow it"));
                }
                if forbidden.contains(&dep.as_str()) {
                    problems.push(format!("{name} depends on {dep}, which the code map keeps out of it"));
                }
            }
        }
        assert!(problems.is_empty(), "{}", problems.join("\n"));
    }

    #[test]
    fn the_check_sees_a_forbidden_dependency() {
        // The check reads real manifests: the binary does depend on clap,
        // which every library is kept from.
        let deps = dependencies();
        let (_, bin) = deps.iter().find(|(n, _)| n == "waymark").unwrap();
        assert!(bin.iter().any(|d| d == "clap"));
        let (_, _, core_forbids) = CODE_MAP.iter().find(|(n, ..)| *n == "waymark-core").unwrap();
        assert!(core_forbids.contains(&"clap"));
    }
}
