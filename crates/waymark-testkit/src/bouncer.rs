//! A real PgBouncer in front of one cluster.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use sqlx::{Connection, Row};

use crate::{Error, as_server_user, block_on, server_dir, spare_port};

/// A PgBouncer in transaction pooling mode with one database, `app`, on
/// the server at `server_port`; stopped on drop.
#[derive(Debug)]
pub struct Bouncer {
    /// Its port on 127.0.0.1.
    pub port: u16,
    /// Its configuration file, whose `[databases]` line a cutover rewrites.
    pub ini: PathBuf,
    dir: tempfile::TempDir,
}

impl Bouncer {
    /// Starts one in front of the server at `server_port`, and waits until
    /// it listens.
    pub fn start(server_port: u16) -> Result<Bouncer, Error> {
        let dir = server_dir()?;
        let port = spare_port()?;
        let ini = dir.path().join("pgbouncer.ini");
        let write = |path: &Path, text: String| {
            std::fs::write(path, text).map_err(|e| Error::new(format!("{}: {e}", path.display())))
        };
        write(&dir.path().join("users.txt"), "\"postgres\" \"\"\n".to_owned())?;
        write(
            &ini,
            format!(
                "[databases]\napp = host=127.0.0.1 port={server_port} dbname=app\n\n[pgbouncer]\n\
                 listen_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\nauth_type = trust\n\
                 auth_file = {d}/users.txt\nadmin_users = postgres\npool_mode = transaction\n\
                 max_client_conn = 200\ndefault_pool_size = 10\nserver_login_retry = 1\n\
                 logfile = {d}/pgbouncer.log\npidfile = {d}/pgbouncer.pid\n",
                d = dir.path().display()
            ),
        )?;
        let bouncer = Bouncer { port, ini, dir };
        bouncer.restart()?;
        Ok(bouncer)
    }

    /// Starts it (again, after [`Bouncer::stop`]) and waits until it
    /// listens.
    pub fn restart(&self) -> Result<(), Error> {
        let out = as_server_user(Path::new("pgbouncer"))
            .arg("-d")
            .arg(&self.ini)
            .output()
            .map_err(|e| Error::new(format!("pgbouncer is required (Debian package pgbouncer): {e}")))?;
        if !out.status.success() {
            return Err(Error::new(format!(
                "pgbouncer: {}",
                String::from_utf8_lossy(&out.stderr)
            )));
        }
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if started.elapsed() > Duration::from_secs(10) {
                return Err(Error::new("pgbouncer did not start listening within 10 s"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    /// The URL of `app` through it.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/app", self.port)
    }

    /// The URL of its admin console.
    pub fn admin_url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/pgbouncer", self.port)
    }

    /// `--pgbouncer ... --pgbouncer-ini ... --pgbouncer-database app`, for
    /// `waymark cutover prepare`.
    pub fn args(&self) -> Vec<String> {
        vec![
            "--pgbouncer".into(),
            self.admin_url(),
            "--pgbouncer-ini".into(),
            self.ini.display().to_string(),
            "--pgbouncer-database".into(),
            "app".into(),
        ]
    }

    /// The port `app` goes to, and whether it is paused.
    pub fn show(&self) -> Result<(u16, bool), Error> {
        let options: sqlx::postgres::PgConnectOptions = self
            .admin_url()
            .parse()
            .map_err(|e| Error::new(format!("{}: {e}", self.admin_url())))?;
        block_on(async {
            let mut conn = sqlx::PgConnection::connect_with(&options.extra_float_digits(None))
                .await
                .map_err(|e| Error::new(format!("the PgBouncer console: {e}")))?;
            let rows = sqlx::raw_sql("SHOW DATABASES")
                .fetch_all(&mut conn)
                .await
                .map_err(|e| Error::new(format!("SHOW DATABASES: {e}")))?;
            let row = rows
                .iter()
                .find(|r| r.try_get::<String, _>("name").is_ok_and(|n| n == "app"))
                .ok_or_else(|| Error::new("PgBouncer does not know app"))?;
            let port: i32 = row.try_get("port").map_err(|e| Error::new(e.to_string()))?;
            let paused: i32 = row.try_get("paused").map_err(|e| Error::new(e.to_string()))?;
            Ok((u16::try_from(port).unwrap_or_default(), paused != 0))
        })
    }

    /// Stops it and waits until it no longer listens.
    pub fn stop(&self) {
        let pid = std::fs::read_to_string(self.dir.path().join("pgbouncer.pid")).unwrap_or_default();
        let _ = Command::new("kill").arg(pid.trim()).status();
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok()
            && started.elapsed() < Duration::from_secs(5)
        {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Bouncer {
    fn drop(&mut self) {
        self.stop();
    }
}
