//! An on-disk cache of compiled components.
//!
//! Compiling a component with Cranelift takes tens of milliseconds; loading a
//! compiled artifact takes well under one. The artifact's name is derived
//! from the component's SHA-256 and from the engine's compatibility hash, so
//! a new wasmtime or different engine settings never load a stale artifact.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

/// The default cache folder: `$WAYMARK_CACHE_DIR`, else `$XDG_CACHE_HOME/waymark`,
/// else `$HOME/.cache/waymark`.
pub(crate) fn default_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("WAYMARK_CACHE_DIR") {
        return Some(PathBuf::from(dir));
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache")))?;
    Some(base.join("waymark"))
}

/// SHA-256 of `bytes`, in lower-case hex: how components are pinned.
pub fn digest(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Loads `bytes` as a component, from the cache when a matching artifact is
/// there, compiling and storing it otherwise. A cache that cannot be read or
/// written only costs time: the component is compiled in memory instead.
pub(crate) fn load(engine: &Engine, bytes: &[u8], digest: &str, dir: Option<&Path>) -> wasmtime::Result<Component> {
    let Some(dir) = dir else {
        return Component::new(engine, bytes);
    };
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut hasher);
    let path = dir.join(format!("{digest}-{:016x}.cwasm", hasher.finish()));

    // Read into memory rather than mapped with `deserialize_file`: a mapped
    // file that something truncates under a running waymark kills it with
    // SIGBUS. The copy costs well under a millisecond.
    if let Ok(artifact) = std::fs::read(&path) {
        // SAFETY: the file was written by `store` below, from
        // `Engine::precompile_component`, under a name that binds it to this
        // component's digest and to this engine's compatibility hash, in a
        // folder that belongs to the user running waymark. wasmtime checks
        // the artifact's header and rejects one it did not produce.
        #[allow(unsafe_code)]
        match unsafe { Component::deserialize(engine, &artifact) } {
            Ok(component) => return Ok(component),
            Err(e) => tracing::debug!("ignoring unusable cached artifact {}: {e}", path.display()),
        }
    }
    let compiled = engine.precompile_component(bytes)?;
    if let Err(e) = store(dir, &path, &compiled) {
        tracing::debug!("could not cache compiled step in {}: {e}", dir.display());
    }
    // SAFETY: `compiled` was produced just above by this engine.
    #[allow(unsafe_code)]
    unsafe {
        Component::deserialize(engine, &compiled)
    }
}

/// Writes atomically, so a concurrent reader never sees half an artifact.
fn store(dir: &Path, path: &Path, compiled: &[u8]) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(
        ".{}.{}.tmp",
        std::process::id(),
        path.file_name().unwrap().to_string_lossy()
    ));
    std::fs::write(&tmp, compiled)?;
    std::fs::rename(&tmp, path)
}
