//! One PostgreSQL cluster of its own.

use std::path::{Path, PathBuf};

use sqlx::{Connection, Row};

use crate::{Error, as_server_user, block_on, server_dir, spare_port};

/// Settings for a cluster that only tests use: durability traded for
/// speed, and replication that notices a dead peer within seconds.
pub const FAST: &str = "-c fsync=off -c synchronous_commit=off -c full_page_writes=off -c wal_sender_timeout=5s \
                        -c wal_receiver_timeout=5s -c wal_retrieve_retry_interval=200ms";

/// A PostgreSQL cluster on a spare port, with a database `app`, ready for
/// logical replication; stopped and removed on drop.
#[derive(Debug)]
pub struct Cluster {
    /// Its port on 127.0.0.1.
    pub port: u16,
    /// Its major version.
    pub major: u32,
    /// `postgres --version`.
    pub version: String,
    bin: PathBuf,
    dir: tempfile::TempDir,
}

impl Cluster {
    /// Starts a cluster of the server programs in `bin`, with `settings`
    /// (`-c name=value ...`, e.g. [`FAST`]) after waymark's own, so that
    /// they win.
    pub fn start(bin: &Path, settings: &str) -> Result<Cluster, Error> {
        let dir = server_dir()?;
        let data = dir.path().join("data");
        let out = as_server_user(&bin.join("initdb"))
            .args(["-D"])
            .arg(&data)
            .args(["-U", "postgres", "-A", "trust", "--no-sync", "-E", "UTF8", "--locale=C"])
            .output()
            .map_err(|e| Error::new(format!("initdb: {e}")))?;
        if !out.status.success() {
            return Err(Error::new(format!("initdb: {}", String::from_utf8_lossy(&out.stderr))));
        }
        let port = spare_port()?;
        let options = format!(
            "-p {port} -k {} -c listen_addresses=127.0.0.1 -c wal_level=logical -c max_replication_slots=10 \
             -c max_wal_senders=10 {settings}",
            dir.path().display()
        );
        let out = as_server_user(&bin.join("pg_ctl"))
            .arg("-D")
            .arg(&data)
            .arg("-l")
            .arg(dir.path().join("log"))
            .args(["-o", &options, "-w", "-t", "60", "start"])
            .output()
            .map_err(|e| Error::new(format!("pg_ctl start: {e}")))?;
        if !out.status.success() {
            return Err(Error::new(format!(
                "pg_ctl start: {}{}",
                String::from_utf8_lossy(&out.stderr),
                std::fs::read_to_string(dir.path().join("log")).unwrap_or_default()
            )));
        }
        let version = std::process::Command::new(bin.join("postgres"))
            .arg("--version")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .unwrap_or_default();
        let major = version
            .split_whitespace()
            .find_map(|w| w.split('.').next()?.parse().ok())
            .unwrap_or(0);
        let cluster = Cluster {
            port,
            major,
            version,
            bin: bin.to_owned(),
            dir,
        };
        cluster.try_execute("postgres", "CREATE DATABASE app")?;
        Ok(cluster)
    }

    /// The URL of its database `db`.
    pub fn url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }

    /// Runs `sql` in a new session on `db`.
    pub fn try_execute(&self, db: &str, sql: &str) -> Result<(), Error> {
        let url = self.url(db);
        block_on(async {
            let mut conn = sqlx::PgConnection::connect(&url)
                .await
                .map_err(|e| Error::new(format!("connecting to {url}: {e}")))?;
            sqlx::raw_sql(sql)
                .execute(&mut conn)
                .await
                .map(drop)
                .map_err(|e| Error::new(e.to_string()))
        })
    }

    /// The first column of every row `sql` returns in `app`, as text.
    pub fn column(&self, sql: &str) -> Result<Vec<String>, Error> {
        let url = self.url("app");
        block_on(async {
            let mut conn = sqlx::PgConnection::connect(&url)
                .await
                .map_err(|e| Error::new(format!("connecting to {url}: {e}")))?;
            let rows = sqlx::raw_sql(sql)
                .fetch_all(&mut conn)
                .await
                .map_err(|e| Error::new(format!("{sql}: {e}")))?;
            rows.iter()
                .map(|r| r.try_get::<String, _>(0).map_err(|e| Error::new(format!("{sql}: {e}"))))
                .collect()
        })
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("log")).unwrap_or_default()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = as_server_user(&self.bin.join("pg_ctl"))
            .arg("-D")
            .arg(self.dir.path().join("data"))
            .args(["-m", "immediate", "stop"])
            .output();
    }
}
