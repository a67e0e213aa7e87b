//! One MariaDB server of its own, for what the shared server on 3306 must
//! not be changed for: settings that need a restart, such as
//! performance_schema.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sqlx::Connection;

use crate::{Error, block_on, is_root, owned_dir, spare_port};

/// A MariaDB server on a spare port of 127.0.0.1, `root` without a
/// password; stopped and removed on drop.
#[derive(Debug)]
pub struct Mariadb {
    /// Its port on 127.0.0.1.
    pub port: u16,
    server: Child,
    dir: tempfile::TempDir,
}

impl Mariadb {
    /// Starts a server with its data in a new folder and `settings`
    /// (`--name=value` options of `mariadbd`) after waymark's own.
    pub fn start(settings: &[&str]) -> Result<Mariadb, Error> {
        let dir = owned_dir("waymark-mariadb", "mysql")?;
        // mariadbd will not run as root unless told to; as root it runs as
        // `mysql`, who owns the folder.
        let user: &[&str] = if is_root() { &["--user=mysql"] } else { &[] };
        let data = dir.path().join("data");
        let out = Command::new("mariadb-install-db")
            .arg("--no-defaults")
            .args(user)
            .arg(format!("--datadir={}", data.display()))
            .args(["--auth-root-authentication-method=normal", "--skip-test-db"])
            .output()
            .map_err(|e| Error::new(format!("mariadb-install-db: {e}")))?;
        if !out.status.success() {
            return Err(Error::new(format!(
                "mariadb-install-db: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )));
        }
        let port = spare_port()?;
        let server = Command::new(mariadbd())
            .arg("--no-defaults")
            .args(user)
            .arg(format!("--datadir={}", data.display()))
            .arg(format!("--port={port}"))
            .arg("--bind-address=127.0.0.1")
            .arg(format!("--socket={}", dir.path().join("sock").display()))
            .arg(format!("--pid-file={}", dir.path().join("pid").display()))
            .arg(format!("--log-error={}", dir.path().join("log").display()))
            // A test server: small, and no durability to pay for.
            .args([
                "--innodb-buffer-pool-size=32M",
                "--innodb-flush-log-at-trx-commit=0",
                "--skip-log-bin",
            ])
            .args(settings)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| Error::new(format!("mariadbd: {e}")))?;
        let mut server = Mariadb { port, server, dir };
        server.wait_ready()?;
        Ok(server)
    }

    /// The URL of its database `db`.
    pub fn url(&self, db: &str) -> String {
        format!("mysql://root@127.0.0.1:{}/{db}", self.port)
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("log")).unwrap_or_default()
    }

    fn wait_ready(&mut self) -> Result<(), Error> {
        let url = self.url("mysql");
        let started = Instant::now();
        loop {
            if block_on(sqlx::MySqlConnection::connect(&url)).is_ok() {
                return Ok(());
            }
            if let Ok(Some(status)) = self.server.try_wait() {
                return Err(Error::new(format!("mariadbd exited with {status}: {}", self.log())));
            }
            if started.elapsed() > Duration::from_secs(60) {
                return Err(Error::new(format!("mariadbd did not start in 60 s: {}", self.log())));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// `mariadbd`, which Debian installs outside a user's PATH.
fn mariadbd() -> &'static Path {
    ["/usr/sbin/mariadbd", "/usr/sbin/mysqld"]
        .into_iter()
        .map(Path::new)
        .find(|p| p.is_file())
        .unwrap_or(Path::new("mariadbd"))
}

impl Drop for Mariadb {
    fn drop(&mut self) {
        // Asked to stop, it stops at once: nothing in it is worth keeping.
        let _ = Command::new("kill").arg(self.server.id().to_string()).status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.server.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.server.kill();
        let _ = self.server.wait();
    }
}
